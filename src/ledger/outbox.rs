//! The outbox: messages recorded in the ledger and queued, in the same transaction, until the
//! broker acknowledges them; bounded by `[outbox]` (superseded `update`s go first).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Ledger, LedgerError};

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

impl Ledger {
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
    use crate::event::EventMessage;

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
}
