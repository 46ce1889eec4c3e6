//! Ledger: every incident and every message sent for it, in SQLite under `storage.dir`.
//! It answers the relapse question (how often this place fills again).

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::event::EventMessage;

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
#[error("ledger {path}: {why}")]
pub struct LedgerError {
    /// Database file.
    pub path: String,
    /// SQLite's message.
    pub why: String,
}

/// Versioned schema steps; index + 1 is the version after the step.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE incidents (
        event_id TEXT PRIMARY KEY,
        camera TEXT NOT NULL,
        zone TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        end_ms INTEGER,
        end_reason TEXT,
        x1 REAL, y1 REAL, x2 REAL, y2 REAL
    );
    CREATE INDEX incidents_place ON incidents (camera, zone, kind, start_ms);
    CREATE TABLE messages (
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (event_id, seq)
    );
"#];

/// The ledger database.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: String,
}

/// Earlier incidents at a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaceHistory {
    /// Incidents that started in the 30 days before.
    pub count_30d: u32,
    /// End of the latest earlier incident.
    pub previous_end: Option<DateTime<Utc>>,
}

impl Ledger {
    /// Opens (creating and migrating as needed) `ledger.sqlite` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        let path = dir.join("ledger.sqlite");
        let name = path.display().to_string();
        let err = |e: rusqlite::Error| LedgerError {
            path: name.clone(),
            why: e.to_string(),
        };
        let conn = Connection::open(&path).map_err(err)?;
        // The busy timeout first: cameras starting together open the same file, and without it
        // the second one's WAL switch or migration fails at once with "database is locked".
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // Migrate inside a write transaction, re-reading the version there, so two processes
        // or threads never apply the same step twice.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let migrated = (|| {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                conn.execute_batch(&format!("{step}; PRAGMA user_version = {};", i + 1))?;
            }
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = migrated {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(err(e));
        }
        Ok(Self { conn, path: name })
    }

    fn err(&self, e: rusqlite::Error) -> LedgerError {
        LedgerError {
            path: self.path.clone(),
            why: e.to_string(),
        }
    }

    /// Earlier incidents of `kind` in this camera's zone before `start`.
    pub fn history(
        &self,
        camera: &str,
        zone: &str,
        kind: &str,
        start: DateTime<Utc>,
    ) -> Result<PlaceHistory, LedgerError> {
        let start_ms = start.timestamp_millis();
        let since_ms = start_ms - 30 * 24 * 3600 * 1000;
        let count: u32 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM incidents WHERE camera=?1 AND zone=?2 AND kind=?3 AND start_ms>=?4 AND start_ms<?5",
                params![camera, zone, kind, since_ms, start_ms],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let previous_end: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(end_ms) FROM incidents WHERE camera=?1 AND zone=?2 AND kind=?3 AND end_ms IS NOT NULL AND end_ms<=?4",
                params![camera, zone, kind, start_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        Ok(PlaceHistory {
            count_30d: count,
            previous_end: previous_end.and_then(DateTime::from_timestamp_millis),
        })
    }

    /// Records a message and the incident state it carries.
    pub fn record(
        &self,
        msg: &EventMessage,
        start: DateTime<Utc>,
        last_seen: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<(), LedgerError> {
        let payload = serde_json::to_string(msg).map_err(|e| LedgerError {
            path: self.path.clone(),
            why: e.to_string(),
        })?;
        let b = msg.object.bbox;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO incidents (event_id, camera, zone, kind, start_ms, last_seen_ms, end_ms, end_reason, x1, y1, x2, y2)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(event_id) DO UPDATE SET last_seen_ms=excluded.last_seen_ms, end_ms=excluded.end_ms,
                end_reason=excluded.end_reason, x1=excluded.x1, y1=excluded.y1, x2=excluded.x2, y2=excluded.y2",
            params![
                msg.event_id,
                msg.camera.id,
                msg.zone.id,
                msg.kind,
                start.timestamp_millis(),
                last_seen.timestamp_millis(),
                end.map(|e| e.timestamp_millis()),
                msg.end_reason.map(|r| format!("{r:?}")),
                b[0], b[1], b[2], b[3]
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO messages (event_id, seq, type, payload) VALUES (?1, ?2, ?3, ?4)",
            params![msg.event_id, msg.seq, format!("{:?}", msg.phase).to_lowercase(), payload],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Number of messages recorded (for tests and stats).
    pub fn message_count(&self) -> Result<u64, LedgerError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_opening_a_new_ledger_together_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let results: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Ledger::open(dir.path()).is_ok()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(|ok| *ok), "{results:?}");
        let conn = Connection::open(dir.path().join("ledger.sqlite")).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
