//! Ledger: every incident and every message sent for it, in SQLite under `storage.dir`.
//! `mod.rs` opens and migrates it (`schema.rs`) and writes what the cameras record; `outbox.rs`
//! queues messages for the broker; `queries.rs` answers recurrence, reports and the console;
//! `reviews.rs` keeps the closed loop (review changes, suppressions) and `accounts.rs` the
//! console's accounts and sessions.

mod accounts;
mod outbox;
mod queries;
mod reviews;
mod schema;

pub use outbox::{Backlog, Queued};
pub use queries::{EvidenceFile, EvidenceRecord, IncidentRecord, Place, PlaceHistory, ShipRow};
pub use reviews::{AwaitingRecheck, ReviewRecord, Suppression};

use schema::MIGRATIONS;

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use crate::event::EventMessage;
use crate::incidents::Phase;

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
#[error("ledger {path}: {why}")]
pub struct LedgerError {
    /// Database file.
    pub path: String,
    /// SQLite's message.
    pub why: String,
}

/// The ledger database.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: String,
    /// Whether recorded messages are also queued in the outbox for the broker.
    deliver: bool,
}

impl Ledger {
    /// Opens (creating and migrating as needed) `ledger.sqlite` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        // The daemon makes its storage folder here, on first use: `check` only looks.
        std::fs::create_dir_all(dir).map_err(|e| LedgerError {
            path: dir.display().to_string(),
            why: format!("cannot create the storage folder: {e}"),
        })?;
        Self::open_file(&dir.join("ledger.sqlite"))
    }

    /// Opens (creating and migrating as needed) a ledger file.
    pub fn open_file(path: &Path) -> Result<Self, LedgerError> {
        let name = path.display().to_string();
        let err = |e: rusqlite::Error| LedgerError {
            path: name.clone(),
            why: e.to_string(),
        };
        let conn = Connection::open(path).map_err(err)?;
        // The busy timeout first: cameras starting together open the same file, and without it
        // the second one's WAL switch or migration fails at once with "database is locked".
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // Migrate inside a write transaction, re-reading the version there, so two processes
        // or threads never apply the same step twice.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        // The inner result is the newer schema version when the file is ahead of this build.
        let migrated = (|| -> Result<Result<(), i64>, rusqlite::Error> {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > MIGRATIONS.len() as i64 {
                return Ok(Err(version));
            }
            for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                conn.execute_batch(&format!("{step}; PRAGMA user_version = {};", i + 1))?;
            }
            conn.execute_batch("COMMIT")?;
            Ok(Ok(()))
        })();
        match migrated {
            Ok(Ok(())) => {}
            Ok(Err(newer)) => {
                let _ = conn.execute_batch("ROLLBACK");
                // A downgraded package meets the newer ledger here: refuse rather than write
                // rows an older schema does not know.
                return Err(LedgerError {
                    path: name,
                    why: format!(
                        "this ledger was written by a newer streetwatch (schema {newer}; this \
                         build knows up to {}), so it is left untouched: install that version \
                         or a newer one again",
                        MIGRATIONS.len()
                    ),
                });
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err(e));
            }
        }
        Ok(Self {
            conn,
            path: name,
            deliver: false,
        })
    }

    /// From now on, every recorded message is also queued in the outbox (daemon, publishing
    /// replays); without it messages are only recorded (`replay --no-mqtt`).
    pub fn set_delivery(&mut self, deliver: bool) {
        self.deliver = deliver;
    }

    fn err(&self, e: rusqlite::Error) -> LedgerError {
        LedgerError {
            path: self.path.clone(),
            why: e.to_string(),
        }
    }

    /// Records a message and the incident state it carries: every field of the incident, the
    /// message itself, its evidence files, and a state change for `new` and `end`.
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
        let (z, r) = (&msg.zone, &msg.recurrence);
        let end_reason = msg.end_reason.map(|r| r.as_str());
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let step = || -> rusqlite::Result<()> {
            tx.execute(
                "INSERT INTO incidents (event_id, camera, zone, kind, start_ms, last_seen_ms, end_ms,
                    end_reason, x1, y1, x2, y2, camera_name, zone_name, grid, responsible_unit,
                    road_section, shop, contact, category_code, category_name, label, score,
                    track_id, last_seq, relapse, count_7d, count_30d, previous_end)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)
                 ON CONFLICT(event_id) DO UPDATE SET last_seen_ms=excluded.last_seen_ms,
                    end_ms=excluded.end_ms, end_reason=excluded.end_reason, x1=excluded.x1,
                    y1=excluded.y1, x2=excluded.x2, y2=excluded.y2, label=excluded.label,
                    score=excluded.score, track_id=excluded.track_id,
                    last_seq=max(last_seq, excluded.last_seq)",
                params![
                    msg.event_id,
                    msg.camera.id,
                    z.id,
                    msg.kind,
                    start.timestamp_millis(),
                    last_seen.timestamp_millis(),
                    end.map(|e| e.timestamp_millis()),
                    end_reason,
                    b[0],
                    b[1],
                    b[2],
                    b[3],
                    msg.camera.name,
                    z.name,
                    z.grid,
                    z.responsible_unit,
                    z.road_section,
                    z.shop,
                    z.contact,
                    msg.category.code,
                    msg.category.name,
                    msg.object.label,
                    msg.object.score,
                    msg.object.track_id as i64,
                    msg.seq,
                    r.relapse,
                    r.count_7d,
                    r.count_30d,
                    r.previous_end,
                ],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO messages (event_id, seq, type, payload, written_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    msg.event_id,
                    msg.seq,
                    msg.phase.as_str(),
                    payload,
                    Utc::now().timestamp_millis()
                ],
            )?;
            for e in &msg.evidence {
                tx.execute(
                    "INSERT OR IGNORE INTO evidence (path, event_id, seq, kind, sha256, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        e.path,
                        msg.event_id,
                        msg.seq,
                        e.kind,
                        e.sha256,
                        last_seen.timestamp_millis()
                    ],
                )?;
            }
            let change = match msg.phase {
                Phase::New => Some(("new", String::new())),
                Phase::End => Some(("end", end_reason.unwrap_or_default().to_string())),
                Phase::Update => None,
            };
            if let Some((state, detail)) = change {
                let at = end.unwrap_or(last_seen);
                Self::insert_change(&tx, &msg.event_id, at, state, &detail)?;
            }
            if let Some(why) = &msg.evidence_missing {
                Self::insert_change(&tx, &msg.event_id, last_seen, "evidence_missing", why)?;
            }
            if self.deliver {
                tx.execute(
                    "INSERT INTO outbox (event_id, seq, type, kind, camera, payload, queued_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        msg.event_id,
                        msg.seq,
                        msg.phase.as_str(),
                        msg.kind,
                        msg.camera.id,
                        payload,
                        Utc::now().timestamp_millis()
                    ],
                )?;
            }
            Ok(())
        };
        step().map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn insert_change(
        conn: &Connection,
        event_id: &str,
        at: DateTime<Utc>,
        state: &str,
        detail: &str,
    ) -> rusqlite::Result<()> {
        conn.execute(
            "INSERT INTO state_changes (event_id, at_ms, state, detail) VALUES (?1, ?2, ?3, ?4)",
            params![event_id, at.timestamp_millis(), state, detail],
        )
        .map(|_| ())
    }

    /// Notes a state change of an incident that no message carries (`resumed` after a restart,
    /// `evidence_deleted` by retention).
    pub fn note(
        &self,
        event_id: &str,
        at: DateTime<Utc>,
        state: &str,
        detail: &str,
    ) -> Result<(), LedgerError> {
        Self::insert_change(&self.conn, event_id, at, state, detail).map_err(|e| self.err(e))
    }

    /// Marks an evidence file deleted (it stays listed, so the report can say it is gone).
    pub fn mark_evidence_deleted(&self, path: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE evidence SET deleted_ms = ?2 WHERE path = ?1",
                params![path, at.timestamp_millis()],
            )
            .map(|_| ())
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
    fn the_storage_folder_is_made_on_first_open() {
        // `check` only looks, so the daemon's first open must make the folder (nested too).
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data").join("node-1");
        Ledger::open(&storage).unwrap();
        assert!(storage.join("ledger.sqlite").is_file());
        let blocked = dir.path().join("a-file");
        std::fs::write(&blocked, b"").unwrap();
        let err = Ledger::open(&blocked.join("data")).unwrap_err().to_string();
        assert!(err.contains("cannot create the storage folder"), "{err}");
    }

    #[test]
    fn a_ledger_from_a_newer_build_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        drop(Ledger::open(dir.path()).unwrap());
        let path = dir.path().join("ledger.sqlite");
        let newer = MIGRATIONS.len() as i64 + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let err = Ledger::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("written by a newer streetwatch"), "{err}");
        assert!(err.contains(&format!("schema {newer}")), "{err}");
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, newer);
    }

    #[test]
    fn a_version_1_ledger_is_migrated_with_its_incidents_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        {
            let v1 = Connection::open(&path).unwrap();
            v1.execute_batch(&format!("{}; PRAGMA user_version = 1;", MIGRATIONS[0]))
                .unwrap();
            let payload = serde_json::json!({
                "schema": "streetwatch.event/1", "type": "end", "event_id": "01JD0000000000000000000000",
                "seq": 3, "kind": "illegal_parking",
                "category": {"code": "05-05", "name": "机动车乱停放"},
                "camera": {"id": "cam", "name": "解放路东口"},
                "zone": {"id": "z", "name": "南侧", "grid": "第八网格", "responsible_unit": "中队"},
                "object": {"label": "car", "score": 0.8, "track_id": 4, "bbox": [0.1, 0.5, 0.3, 0.9]},
                "start_time": "2026-11-22T09:00:00.000+08:00", "last_seen": "2026-11-22T09:05:00.000+08:00",
                "end_time": "2026-11-22T09:05:00.000+08:00", "end_reason": "object_left", "dwell_seconds": 300.0,
                "recurrence": {"count_7d": 2, "count_30d": 5, "previous_end": null, "relapse": true},
                "evidence": []
            });
            v1.execute(
                "INSERT INTO incidents (event_id, camera, zone, kind, start_ms, last_seen_ms, end_ms, end_reason, x1, y1, x2, y2)
                 VALUES ('01JD0000000000000000000000', 'cam', 'z', 'illegal_parking', 0, 300000, 300000, 'ObjectLeft', 0.1, 0.5, 0.3, 0.9)",
                [],
            )
            .unwrap();
            v1.execute(
                "INSERT INTO messages (event_id, seq, type, payload) VALUES ('01JD0000000000000000000000', 3, 'end', ?1)",
                [payload.to_string()],
            )
            .unwrap();
        }
        let ledger = Ledger::open(dir.path()).unwrap();
        let all = ledger
            .incidents_between(
                DateTime::from_timestamp(0, 0).unwrap(),
                DateTime::from_timestamp(1000, 0).unwrap(),
            )
            .unwrap();
        assert_eq!(all.len(), 1);
        let i = &all[0];
        assert_eq!(
            (i.grid.as_str(), i.responsible_unit.as_str()),
            ("第八网格", "中队")
        );
        assert_eq!(
            (i.camera_name.as_str(), i.zone_name.as_str()),
            ("解放路东口", "南侧")
        );
        assert_eq!(i.category_code, "05-05");
        assert_eq!((i.relapse, i.count_7d, i.count_30d), (true, 2, 5));
        assert_eq!(i.end_reason.as_deref(), Some("object_left"));
        assert_eq!(i.dwell_seconds(), 300.0);
    }
}
