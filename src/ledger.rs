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
    /// Incidents that started in the 7 days before.
    pub count_7d: u32,
    /// Incidents that started in the 30 days before.
    pub count_30d: u32,
    /// End of the latest earlier incident.
    pub previous_end: Option<DateTime<Utc>>,
    /// An incident at the same place (same zone, overlapping box) ended within the relapse
    /// window before this one started: the place filled again (反弹).
    pub relapse: bool,
}

/// Where and when a new incident is, for its history.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// Camera id.
    pub camera: &'a str,
    /// Zone id.
    pub zone: &'a str,
    /// Event kind.
    pub kind: &'a str,
    /// Normalized box `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
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

    /// Earlier incidents of the same kind in this camera's zone before `start`; a relapse is
    /// one whose box overlaps `place.bbox` and that ended at most `relapse_window` before.
    pub fn history(
        &self,
        place: Place<'_>,
        start: DateTime<Utc>,
        relapse_window: chrono::Duration,
    ) -> Result<PlaceHistory, LedgerError> {
        let start_ms = start.timestamp_millis();
        let day_ms = 24 * 3600 * 1000;
        let count = |days: i64| -> Result<u32, LedgerError> {
            self.conn
                .query_row(
                    "SELECT COUNT(*) FROM incidents WHERE camera=?1 AND zone=?2 AND kind=?3 AND start_ms>=?4 AND start_ms<?5",
                    params![place.camera, place.zone, place.kind, start_ms - days * day_ms, start_ms],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))
        };
        let previous_end: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(end_ms) FROM incidents WHERE camera=?1 AND zone=?2 AND kind=?3 AND end_ms IS NOT NULL AND end_ms<=?4",
                params![place.camera, place.zone, place.kind, start_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        let mut recent = self
            .conn
            .prepare(
                "SELECT x1, y1, x2, y2 FROM incidents WHERE camera=?1 AND zone=?2 AND kind=?3
                 AND end_ms IS NOT NULL AND end_ms<=?4 AND end_ms>=?5",
            )
            .map_err(|e| self.err(e))?;
        let window_ms = relapse_window.num_milliseconds();
        let boxes = recent
            .query_map(
                params![
                    place.camera,
                    place.zone,
                    place.kind,
                    start_ms,
                    start_ms - window_ms
                ],
                |r| Ok([r.get::<_, f64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
            )
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let b = place.bbox.map(f64::from);
        let relapse = boxes
            .iter()
            .any(|o| o[0] < b[2] && b[0] < o[2] && o[1] < b[3] && b[1] < o[3]);
        Ok(PlaceHistory {
            count_7d: count(7)?,
            count_30d: count(30)?,
            previous_end: previous_end.and_then(DateTime::from_timestamp_millis),
            relapse,
        })
    }

    /// The latest message of each incident of `camera` still open in the ledger: events the
    /// process did not end because it was stopped (crash, power cut, kill).
    pub fn unfinished(&self, camera: &str) -> Result<Vec<String>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.payload FROM incidents i JOIN messages m ON m.event_id = i.event_id
                 WHERE i.camera = ?1 AND i.end_ms IS NULL
                 AND m.seq = (SELECT MAX(seq) FROM messages WHERE event_id = i.event_id)
                 ORDER BY i.start_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![camera], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
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

    #[test]
    fn history_counts_and_relapses() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let h = |hours: i64| (now - chrono::Duration::hours(hours)).timestamp_millis();
        let insert = |id: &str, zone: &str, start: i64, end: i64, b: [f64; 4]| {
            ledger
                .conn
                .execute(
                    "INSERT INTO incidents (event_id, camera, zone, kind, start_ms, last_seen_ms, end_ms, x1, y1, x2, y2)
                     VALUES (?1, 'cam', ?2, 'exposed_garbage', ?3, ?4, ?4, ?5, ?6, ?7, ?8)",
                    params![id, zone, start, end, b[0], b[1], b[2], b[3]],
                )
                .unwrap();
        };
        insert("a", "z", h(72), h(48), [0.1, 0.1, 0.3, 0.3]);
        insert("b", "z", h(10), h(5), [0.2, 0.2, 0.4, 0.4]);
        insert("c", "other", h(10), h(5), [0.2, 0.2, 0.4, 0.4]);
        insert("d", "z", h(20 * 24), h(19 * 24), [0.8, 0.8, 0.9, 0.9]);
        let place = |bbox| Place {
            camera: "cam",
            zone: "z",
            kind: "exposed_garbage",
            bbox,
        };
        let day = chrono::Duration::hours(24);
        let same = ledger
            .history(place([0.25, 0.25, 0.35, 0.35]), now, day)
            .unwrap();
        assert_eq!((same.count_7d, same.count_30d), (2, 3));
        assert_eq!(same.previous_end.map(|t| t.timestamp_millis()), Some(h(5)));
        assert!(same.relapse, "b ended 5 h ago at an overlapping place");
        let elsewhere = ledger
            .history(place([0.6, 0.1, 0.7, 0.2]), now, day)
            .unwrap();
        assert!(!elsewhere.relapse, "no overlapping box");
        let short = chrono::Duration::hours(1);
        assert!(
            !ledger
                .history(place([0.25, 0.25, 0.35, 0.35]), now, short)
                .unwrap()
                .relapse
        );
    }
}
