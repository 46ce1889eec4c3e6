//! Ledger: every incident and every message sent for it, in SQLite under `storage.dir`.
//! It answers the relapse question (how often this place fills again), and keeps the closed
//! loop: review changes (`reviews.rs`), console accounts (`accounts.rs`) and suppressions.

mod accounts;
mod reviews;

pub use reviews::{AwaitingRecheck, ReviewRecord, Suppression};

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

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

/// Versioned schema steps; index + 1 is the version after the step. Never edit a step that has
/// shipped: add one.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // v2: every field of the incident (who is responsible, what was seen, its recurrence), its
    // evidence files and its state changes; filled in for v1 incidents from their latest message.
    r#"
    ALTER TABLE incidents ADD COLUMN camera_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN zone_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN grid TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN responsible_unit TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN road_section TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN shop TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN contact TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN category_code TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN category_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN label TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN score REAL NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN track_id INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN relapse INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN count_7d INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN count_30d INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN previous_end TEXT;
    UPDATE incidents SET
        (camera_name, zone_name, grid, responsible_unit, road_section, shop, contact,
         category_code, category_name, label, score, track_id, last_seq, relapse, count_7d,
         count_30d, previous_end) =
        (SELECT json_extract(m.payload, '$.camera.name'), json_extract(m.payload, '$.zone.name'),
                json_extract(m.payload, '$.zone.grid'), json_extract(m.payload, '$.zone.responsible_unit'),
                coalesce(json_extract(m.payload, '$.zone.road_section'), ''),
                coalesce(json_extract(m.payload, '$.zone.shop'), ''),
                coalesce(json_extract(m.payload, '$.zone.contact'), ''),
                json_extract(m.payload, '$.category.code'), json_extract(m.payload, '$.category.name'),
                json_extract(m.payload, '$.object.label'), json_extract(m.payload, '$.object.score'),
                json_extract(m.payload, '$.object.track_id'), m.seq,
                coalesce(json_extract(m.payload, '$.recurrence.relapse'), 0),
                coalesce(json_extract(m.payload, '$.recurrence.count_7d'), 0),
                coalesce(json_extract(m.payload, '$.recurrence.count_30d'), 0),
                json_extract(m.payload, '$.recurrence.previous_end')
         FROM messages m WHERE m.event_id = incidents.event_id ORDER BY m.seq DESC LIMIT 1)
        WHERE EXISTS (SELECT 1 FROM messages m WHERE m.event_id = incidents.event_id);
    -- v1 wrote reasons in Rust's spelling; the wire name is what every reader expects.
    UPDATE incidents SET end_reason = CASE end_reason
        WHEN 'ObjectLeft' THEN 'object_left' WHEN 'ScheduleEnded' THEN 'schedule_ended'
        WHEN 'ZoneDisabled' THEN 'zone_disabled' WHEN 'StreamEnded' THEN 'stream_ended'
        WHEN 'Interrupted' THEN 'interrupted' ELSE end_reason END;
    CREATE INDEX incidents_start ON incidents (start_ms);
    CREATE TABLE evidence (
        path TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        deleted_ms INTEGER
    );
    CREATE INDEX evidence_event ON evidence (event_id);
    CREATE TABLE state_changes (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX state_changes_event ON state_changes (event_id, id);
"#,
    // v3: the outbox, in the same file so a message is recorded and queued in one transaction:
    // no message is ever in the ledger but not on its way to the broker.
    r#"
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        kind TEXT NOT NULL,
        camera TEXT NOT NULL,
        payload TEXT NOT NULL,
        queued_ms INTEGER NOT NULL
    );
    CREATE INDEX outbox_event ON outbox (event_id, seq);
"#,
    // v4: the closed loop. Each event's review state and every change of it; console accounts
    // and their sessions (secrets as digests only); things an operator said are not what the
    // event claimed, which the camera then leaves alone while they stay.
    r#"
    ALTER TABLE incidents ADD COLUMN review_state TEXT NOT NULL DEFAULT 'pending';
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        by_name TEXT NOT NULL,
        by_role TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        reason TEXT,
        note TEXT NOT NULL DEFAULT '',
        unit TEXT,
        due TEXT,
        photo_path TEXT,
        photo_sha256 TEXT,
        UNIQUE (event_id, seq)
    );
    CREATE INDEX reviews_at ON reviews (at_ms);
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        grids TEXT NOT NULL DEFAULT '[]',
        password_hash TEXT NOT NULL,
        token_digest TEXT UNIQUE,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        digest TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        zone TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        by_name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT
    );
    CREATE INDEX suppressions_camera ON suppressions (camera, ended_ms);
"#,
];

/// A message waiting in the outbox for the broker's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Position in the outbox (sending order).
    pub id: i64,
    /// Event kind (for the topic).
    pub kind: String,
    /// Camera id (for the topic).
    pub camera: String,
    /// Event id.
    pub event_id: String,
    /// Message seq.
    pub seq: u32,
    /// `new`, `update`, `end` (event messages) or `review` (a review change).
    pub message_type: String,
    /// The message JSON.
    pub payload: String,
}

/// How many messages wait in the outbox and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Messages waiting.
    pub messages: u64,
    /// When the oldest was queued (wall clock), if any.
    pub oldest: Option<DateTime<Utc>>,
}

impl Backlog {
    /// How long the oldest waiting message has waited at `now`, seconds; None when none waits.
    pub fn oldest_age_seconds(&self, now: DateTime<Utc>) -> Option<f64> {
        self.oldest
            .map(|t| ((now - t).num_milliseconds() as f64 / 1000.0).max(0.0))
    }
}

/// The ledger database.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: String,
    /// Whether recorded messages are also queued in the outbox for the broker.
    deliver: bool,
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

/// An evidence file known to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceFile {
    /// Path as written in the event message.
    pub path: String,
    /// The incident it shows.
    pub event_id: String,
}

/// An evidence file of an incident, as the ledger lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    /// Path as written in the message.
    pub path: String,
    /// `frame` or `crop`.
    pub kind: String,
    /// Message that brought it.
    pub seq: u32,
    /// sha256, hex.
    pub sha256: String,
    /// Deleted by retention.
    pub deleted: bool,
}

/// One incident as the ledger keeps it (for reports).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    /// Event id.
    pub event_id: String,
    /// Camera id.
    pub camera: String,
    /// Camera name.
    pub camera_name: String,
    /// Zone id.
    pub zone: String,
    /// Zone name.
    pub zone_name: String,
    /// Event kind, e.g. `illegal_parking`.
    pub kind: String,
    /// Case category code sent.
    pub category_code: String,
    /// Case category name sent.
    pub category_name: String,
    /// Grid (网格).
    pub grid: String,
    /// Responsible unit.
    pub responsible_unit: String,
    /// Road section (路段).
    pub road_section: String,
    /// Shop responsible for a frontage.
    pub shop: String,
    /// Who to call.
    pub contact: String,
    /// Detector label of the object.
    pub label: String,
    /// Latest score.
    pub score: f64,
    /// When the object came to rest.
    pub start: DateTime<Utc>,
    /// Last sighting.
    pub last_seen: DateTime<Utc>,
    /// End, if ended.
    pub end: Option<DateTime<Utc>>,
    /// Why it ended (wire name), if ended.
    pub end_reason: Option<String>,
    /// Whether it was a relapse.
    pub relapse: bool,
    /// Earlier events there in the 7 days before.
    pub count_7d: u32,
    /// Earlier events there in the 30 days before.
    pub count_30d: u32,
    /// End of the previous event there (RFC 3339), if any.
    pub previous_end: Option<String>,
    /// Normalized box.
    pub bbox: [f64; 4],
    /// Latest crop still on disk.
    pub crop: Option<String>,
    /// Where it stands in the review loop (wire name: `pending`, `confirmed`, ...).
    pub review_state: String,
}

impl IncidentRecord {
    /// Seconds from rest to last sighting.
    pub fn dwell_seconds(&self) -> f64 {
        ((self.last_seen - self.start).num_milliseconds() as f64 / 1000.0).max(0.0)
    }
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
                "INSERT OR REPLACE INTO messages (event_id, seq, type, payload) VALUES (?1, ?2, ?3, ?4)",
                params![msg.event_id, msg.seq, msg.phase.as_str(), payload],
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

    /// The state changes of an incident, oldest first: `(at, state, detail)`.
    pub fn state_changes(
        &self,
        event_id: &str,
    ) -> Result<Vec<(DateTime<Utc>, String, String)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, state, detail FROM state_changes WHERE event_id=?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![event_id], |r| {
                Ok((
                    DateTime::from_timestamp_millis(r.get(0)?).unwrap_or_default(),
                    r.get(1)?,
                    r.get(2)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Evidence files past retention: not yet deleted, of incidents that ended before `cutoff`.
    /// Files of open incidents are never listed, however old.
    pub fn expired_evidence(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<EvidenceFile>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT e.path, e.event_id FROM evidence e JOIN incidents i ON i.event_id = e.event_id
                 WHERE e.deleted_ms IS NULL AND i.end_ms IS NOT NULL AND i.end_ms < ?1
                 ORDER BY i.end_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![cutoff.timestamp_millis()], |r| {
                Ok(EvidenceFile {
                    path: r.get(0)?,
                    event_id: r.get(1)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
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

    /// Every incident that started in `[since, until)`, oldest first, with its latest crop
    /// still on disk (for reports).
    pub fn incidents_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<IncidentRecord>, LedgerError> {
        self.incidents_where(
            "start_ms >= ?1 AND start_ms < ?2 ORDER BY start_ms, event_id",
            params![since.timestamp_millis(), until.timestamp_millis()],
        )
    }

    /// One incident, if the ledger has it.
    pub fn incident(&self, event_id: &str) -> Result<Option<IncidentRecord>, LedgerError> {
        Ok(self
            .incidents_where("event_id = ?1", params![event_id])?
            .pop())
    }

    fn incidents_where(
        &self,
        condition: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<IncidentRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT event_id, camera, camera_name, zone, zone_name, kind, category_code,
                    category_name, grid, responsible_unit, road_section, shop, contact, label,
                    score, start_ms, last_seen_ms, end_ms, end_reason, relapse, count_7d,
                    count_30d, previous_end, x1, y1, x2, y2,
                    (SELECT path FROM evidence e WHERE e.event_id = i.event_id AND e.kind = 'crop'
                     AND e.deleted_ms IS NULL ORDER BY seq DESC LIMIT 1), review_state
                 FROM incidents i WHERE {condition}"
            ))
            .map_err(|e| self.err(e))?;
        let time = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let rows = stmt
            .query_map(args, |r| {
                Ok(IncidentRecord {
                    event_id: r.get(0)?,
                    camera: r.get(1)?,
                    camera_name: r.get(2)?,
                    zone: r.get(3)?,
                    zone_name: r.get(4)?,
                    kind: r.get(5)?,
                    category_code: r.get(6)?,
                    category_name: r.get(7)?,
                    grid: r.get(8)?,
                    responsible_unit: r.get(9)?,
                    road_section: r.get(10)?,
                    shop: r.get(11)?,
                    contact: r.get(12)?,
                    label: r.get(13)?,
                    score: r.get(14)?,
                    start: time(r.get(15)?),
                    last_seen: time(r.get(16)?),
                    end: r.get::<_, Option<i64>>(17)?.map(time),
                    end_reason: r.get(18)?,
                    relapse: r.get(19)?,
                    count_7d: r.get(20)?,
                    count_30d: r.get(21)?,
                    previous_end: r.get(22)?,
                    bbox: [r.get(23)?, r.get(24)?, r.get(25)?, r.get(26)?],
                    crop: r.get(27)?,
                    review_state: r.get(28)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// The evidence files of an incident, oldest first (deleted ones too, marked).
    pub fn evidence_of(&self, event_id: &str) -> Result<Vec<EvidenceRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, kind, seq, sha256, deleted_ms IS NOT NULL FROM evidence
                 WHERE event_id = ?1 ORDER BY seq, kind",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![event_id], |r| {
                Ok(EvidenceRecord {
                    path: r.get(0)?,
                    kind: r.get(1)?,
                    seq: r.get(2)?,
                    sha256: r.get(3)?,
                    deleted: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Every message sent for an incident, in `seq` order, as JSON.
    pub fn messages_of(&self, event_id: &str) -> Result<Vec<serde_json::Value>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT payload FROM messages WHERE event_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![event_id], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .filter_map(|p| p.ok().and_then(|p| serde_json::from_str(&p).ok()))
            .collect();
        Ok(rows)
    }

    /// Incidents with no end (for tests and the restart check).
    pub fn open_count(&self) -> Result<u64, LedgerError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM incidents WHERE end_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` queued messages after outbox position `after`, in sending order.
    pub fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<Queued>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, kind, camera, event_id, seq, type, payload FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok(Queued {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    camera: r.get(2)?,
                    event_id: r.get(3)?,
                    seq: r.get(4)?,
                    message_type: r.get(5)?,
                    payload: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// The broker acknowledged the queued message `id`: it leaves the outbox.
    pub fn outbox_ack(&self, id: i64) -> Result<(), LedgerError> {
        self.conn
            .execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Messages waiting and the age of the oldest.
    pub fn outbox_backlog(&self) -> Result<Backlog, LedgerError> {
        self.conn
            .query_row("SELECT COUNT(*), MIN(queued_ms) FROM outbox", [], |r| {
                Ok(Backlog {
                    messages: r.get(0)?,
                    oldest: r
                        .get::<_, Option<i64>>(1)?
                        .and_then(DateTime::from_timestamp_millis),
                })
            })
            .map_err(|e| self.err(e))
    }

    /// Keeps the outbox within bounds: `update`s queued before `too_old` go; then, while more
    /// than `max_messages` wait, superseded `update`s (a later message of the same event waits
    /// too) go oldest first, then the other `update`s. A `new` or `end` is never dropped.
    /// Returns how many messages were dropped.
    pub fn outbox_trim(
        &self,
        max_messages: u64,
        too_old: DateTime<Utc>,
    ) -> Result<u64, LedgerError> {
        let run = || -> rusqlite::Result<u64> {
            let mut dropped = self.conn.execute(
                "DELETE FROM outbox WHERE type = 'update' AND queued_ms < ?1",
                params![too_old.timestamp_millis()],
            )? as u64;
            let count: u64 = self
                .conn
                .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
            let mut excess = count.saturating_sub(max_messages);
            for superseded_only in [true, false] {
                if excess == 0 {
                    break;
                }
                let n = self.conn.execute(
                    "DELETE FROM outbox WHERE id IN (
                        SELECT o.id FROM outbox o WHERE o.type = 'update' AND (?1 = 0 OR EXISTS
                            (SELECT 1 FROM outbox l WHERE l.event_id = o.event_id AND l.seq > o.seq))
                        ORDER BY o.id LIMIT ?2)",
                    params![superseded_only as i64, excess as i64],
                )? as u64;
                dropped += n;
                excess -= n.min(excess);
            }
            Ok(dropped)
        };
        run().map_err(|e| self.err(e))
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

    #[test]
    fn the_outbox_drops_superseded_updates_first_and_never_a_new_or_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.set_delivery(true);
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let msg = |id: &str, seq: u32, phase: &str| -> EventMessage {
            serde_json::from_value(serde_json::json!({
                "schema": "streetwatch.event/1", "type": phase, "event_id": id, "seq": seq,
                "kind": "illegal_parking", "category": {"code": "05-05", "name": "机动车乱停放"},
                "camera": {"id": "cam", "name": ""},
                "zone": {"id": "z", "name": "", "grid": "", "responsible_unit": ""},
                "object": {"label": "car", "score": 0.8, "track_id": 1, "bbox": [0.1, 0.5, 0.3, 0.9]},
                "start_time": "2026-11-22T09:00:00.000+08:00", "last_seen": "2026-11-22T09:05:00.000+08:00",
                "end_time": null, "end_reason": null, "dwell_seconds": 300.0,
                "recurrence": {"count_7d": 0, "count_30d": 0, "previous_end": null, "relapse": false},
                "evidence": []
            }))
            .unwrap()
        };
        // Event A: new, 3 updates, end. Event B: new, 2 updates (still open).
        for (id, seq, phase) in [
            ("A", 0, "new"),
            ("A", 1, "update"),
            ("B", 0, "new"),
            ("A", 2, "update"),
            ("B", 1, "update"),
            ("A", 3, "update"),
            ("A", 4, "end"),
            ("B", 2, "update"),
        ] {
            ledger.record(&msg(id, seq, phase), t, t, None).unwrap();
        }
        let left = |l: &Ledger| -> Vec<(String, u32)> {
            l.outbox_after(0, 100)
                .unwrap()
                .into_iter()
                .map(|q| (q.event_id, q.seq))
                .collect()
        };
        let old = Utc::now() - chrono::Duration::days(1);
        // Over by 2: the two oldest superseded updates go (A1, A2).
        assert_eq!(ledger.outbox_trim(6, old).unwrap(), 2);
        let s = |v: &[(&str, u32)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), *b))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            left(&ledger),
            s(&[("A", 0), ("B", 0), ("B", 1), ("A", 3), ("A", 4), ("B", 2)])
        );
        // Over by 4: superseded B1 and A3 first, then the latest update B2; the new and end
        // messages stay even though the outbox is still over its bound.
        assert_eq!(ledger.outbox_trim(2, old).unwrap(), 3);
        assert_eq!(left(&ledger), s(&[("A", 0), ("B", 0), ("A", 4)]));
        // Below any bound, nothing more goes: a new or an end is never dropped.
        assert_eq!(
            ledger
                .outbox_trim(0, Utc::now() + chrono::Duration::days(1))
                .unwrap(),
            0
        );
        assert_eq!(left(&ledger).len(), 3);
        // Acknowledged messages leave.
        let first = ledger.outbox_after(0, 1).unwrap()[0].id;
        ledger.outbox_ack(first).unwrap();
        assert_eq!(left(&ledger), s(&[("B", 0), ("A", 4)]));
        assert_eq!(ledger.outbox_backlog().unwrap().messages, 2);
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
