//! What the ledger answers: a place's history (recurrence), incidents for reports and the
//! console, their evidence, messages and state changes, and what retention may delete.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{Ledger, LedgerError};

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

    /// Up to `limit` messages not yet in the city ledger, oldest first.
    pub fn unshipped(&self, limit: usize) -> Result<Vec<ShipRow>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.event_id, m.seq, m.type, i.camera, i.kind, coalesce(m.written_ms, 0), m.payload
                 FROM messages m JOIN incidents i ON i.event_id = m.event_id
                 WHERE m.shipped = 0 ORDER BY m.rowid LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(ShipRow {
                    event_id: r.get(0)?,
                    seq: r.get(1)?,
                    message_type: r.get(2)?,
                    camera: r.get(3)?,
                    kind: r.get(4)?,
                    written_ms: r.get(5)?,
                    payload: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Marks messages as in the city ledger.
    pub fn mark_shipped(&self, keys: &[(String, u32)]) -> Result<(), LedgerError> {
        self.set_shipped("messages", keys)
    }

    /// Marks rows of `table` (`messages` or `reviews`, keyed by event id and seq) as in the
    /// city ledger.
    pub(super) fn set_shipped(
        &self,
        table: &str,
        keys: &[(String, u32)],
    ) -> Result<(), LedgerError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let sql = format!("UPDATE {table} SET shipped = 1 WHERE event_id = ?1 AND seq = ?2");
        for (event_id, seq) in keys {
            tx.execute(&sql, params![event_id, seq])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Whether message `seq` of `event_id` is in the ledger.
    pub fn has_message(&self, event_id: &str, seq: u32) -> Result<bool, LedgerError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE event_id = ?1 AND seq = ?2)",
                params![event_id, seq],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Closes an incident this node left open when its camera went to another node, which
    /// carries it on (or ended it): no message, `end_reason` `handed_over` at its last sighting.
    pub fn close_handed_over(&self, event_id: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE incidents SET end_ms = last_seen_ms, end_reason = 'handed_over'
                 WHERE event_id = ?1 AND end_ms IS NULL",
                params![event_id],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

/// A message on its way to the city ledger.
#[derive(Debug, Clone)]
pub struct ShipRow {
    /// Event id.
    pub event_id: String,
    /// Its seq.
    pub seq: u32,
    /// `new`, `update` or `end`.
    pub message_type: String,
    /// Camera id.
    pub camera: String,
    /// Event kind.
    pub kind: String,
    /// When the node wrote it (Unix ms; 0 for messages older than schema 5).
    pub written_ms: i64,
    /// The message (JSON).
    pub payload: String,
}
