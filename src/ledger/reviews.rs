//! The review loop in the ledger: each change of an event's review state, recorded and queued
//! for the broker in one transaction (like event messages), and the suppressions that false
//! alarms of the "wrong object" kind leave on a camera.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::{params, OptionalExtension};

use super::{Ledger, LedgerError};
use crate::review::{
    self, Actor, EventFacts, FalseAlarmReason, ReviewChange, ReviewError, ReviewMessage,
    ReviewPhoto, ReviewRequest, ReviewState,
};

/// One recorded review change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReviewRecord {
    /// The event.
    pub event_id: String,
    /// 1, 2, ... per event.
    pub seq: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Their role (wire name).
    pub role: String,
    /// From (wire name).
    pub from: String,
    /// To (wire name).
    pub to: String,
    /// False-alarm reason (wire name).
    pub reason: Option<String>,
    /// Note.
    pub note: String,
    /// Unit dispatched.
    pub unit: Option<String>,
    /// Due by (RFC 3339).
    pub due: Option<String>,
    /// Photo file.
    pub photo_path: Option<String>,
}

/// A thing at a place that the camera leaves alone while it stays: an operator said its event
/// was a false alarm of the "wrong object" kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Suppression {
    /// Its id.
    pub id: i64,
    /// Camera id.
    pub camera: String,
    /// Zone id.
    pub zone: String,
    /// The event that was rejected.
    pub event_id: String,
    /// Its kind.
    pub kind: String,
    /// Detector label (or `static_object`) of the thing.
    pub label: String,
    /// Its place, normalized `[x1, y1, x2, y2]`.
    pub bbox: [f64; 4],
    /// Who rejected it.
    pub by: String,
    /// Since when.
    pub created: DateTime<Utc>,
    /// When it ended (the thing left, or someone removed it).
    pub ended: Option<DateTime<Utc>>,
    /// `object_left` or `removed`.
    pub end_reason: Option<String>,
}

/// A cleared event whose camera has not re-checked it yet.
#[derive(Debug, Clone, PartialEq)]
pub struct AwaitingRecheck {
    /// The event.
    pub event_id: String,
    /// Its zone.
    pub zone: String,
    /// Where its thing was, normalized.
    pub bbox: [f64; 4],
    /// When it was marked cleared.
    pub cleared: DateTime<Utc>,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Ledger {
    /// What a review change needs to know of an event; None when there is no such event.
    pub fn event_facts(&self, event_id: &str) -> Result<Option<EventFacts>, LedgerError> {
        self.conn
            .query_row(
                "SELECT kind, camera, zone, grid, responsible_unit, review_state FROM incidents
                 WHERE event_id = ?1",
                params![event_id],
                |r| {
                    let state: String = r.get(5)?;
                    Ok(EventFacts {
                        kind: r.get(0)?,
                        camera: r.get(1)?,
                        zone: r.get(2)?,
                        grid: r.get(3)?,
                        responsible_unit: r.get(4)?,
                        state: ReviewState::parse(&state).unwrap_or(ReviewState::Pending),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Checks and records a review change by `actor` at `at`: the review row, the event's new
    /// state, a state change in its history, and (when delivering) the message in the outbox,
    /// all in one transaction, so two people acting at once cannot both move it from the same
    /// state. Returns the message published and the change made.
    pub fn apply_review(
        &self,
        event_id: &str,
        req: &ReviewRequest,
        actor: &Actor,
        at: DateTime<Utc>,
        tz: Tz,
        photo: Option<ReviewPhoto>,
    ) -> Result<(ReviewMessage, ReviewChange), ReviewError> {
        let storage = |e: LedgerError| ReviewError::Storage(e.to_string());
        let sql = |e: rusqlite::Error| storage(self.err(e));
        // IMMEDIATE: take the write lock before reading the state, so the check holds.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        let result = (|| {
            let facts = self
                .event_facts(event_id)
                .map_err(storage)?
                .ok_or_else(|| ReviewError::NotFound(event_id.to_string()))?;
            let change = review::check(&facts, req, actor)?;
            let seq: u32 = self
                .conn
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM reviews WHERE event_id = ?1",
                    params![event_id],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            let msg = ReviewMessage {
                schema: review::SCHEMA.to_string(),
                event_id: event_id.to_string(),
                seq,
                kind: facts.kind.clone(),
                camera: facts.camera.clone(),
                zone: facts.zone.clone(),
                grid: facts.grid.clone(),
                from: change.from,
                state: change.to,
                by: actor.name.clone(),
                role: actor.role,
                at: crate::event::local_time(at, tz),
                reason: change.reason,
                note: change.note.clone(),
                unit: change.unit.clone(),
                due: change.due.clone(),
                photo: photo.clone(),
            };
            let reason = change.reason.map(FalseAlarmReason::as_str);
            self.conn
                .execute(
                    "INSERT INTO reviews (event_id, seq, at_ms, by_name, by_role, from_state,
                        to_state, reason, note, unit, due, photo_path, photo_sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        event_id,
                        seq,
                        at.timestamp_millis(),
                        actor.name,
                        actor.role.as_str(),
                        change.from.as_str(),
                        change.to.as_str(),
                        reason,
                        change.note,
                        change.unit,
                        change.due,
                        photo.as_ref().map(|p| p.path.as_str()),
                        photo.as_ref().map(|p| p.sha256.as_str()),
                    ],
                )
                .map_err(sql)?;
            self.conn
                .execute(
                    "UPDATE incidents SET review_state = ?2 WHERE event_id = ?1",
                    params![event_id, change.to.as_str()],
                )
                .map_err(sql)?;
            if let Some(p) = &photo {
                self.conn
                    .execute(
                        "INSERT OR IGNORE INTO evidence (path, event_id, seq, kind, sha256, created_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            p.path,
                            event_id,
                            seq,
                            format!("review_{}", change.to.as_str()),
                            p.sha256,
                            at.timestamp_millis()
                        ],
                    )
                    .map_err(sql)?;
            }
            let detail = format!("{} → {} by {}", change.from, change.to, actor.name);
            Self::insert_change(&self.conn, event_id, at, "review", &detail).map_err(sql)?;
            if self.deliver {
                let payload =
                    serde_json::to_string(&msg).map_err(|e| ReviewError::Storage(e.to_string()))?;
                self.conn
                    .execute(
                        "INSERT INTO outbox (event_id, seq, type, kind, camera, payload, queued_ms)
                         VALUES (?1, ?2, 'review', ?3, ?4, ?5, ?6)",
                        params![
                            event_id,
                            seq,
                            facts.kind,
                            facts.camera,
                            payload,
                            Utc::now().timestamp_millis()
                        ],
                    )
                    .map_err(sql)?;
            }
            Ok((msg, change))
        })();
        match result {
            Ok(done) => {
                self.conn.execute_batch("COMMIT").map_err(sql)?;
                Ok(done)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The review changes of an event, oldest first.
    pub fn reviews_of(&self, event_id: &str) -> Result<Vec<ReviewRecord>, LedgerError> {
        self.reviews_where("event_id = ?1 ORDER BY seq", params![event_id])
    }

    /// The review changes of the events that started in `[since, until)`, in order.
    pub fn reviews_of_events_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ReviewRecord>, LedgerError> {
        self.reviews_where(
            "event_id IN (SELECT event_id FROM incidents WHERE start_ms >= ?1 AND start_ms < ?2)
             ORDER BY event_id, seq",
            params![since.timestamp_millis(), until.timestamp_millis()],
        )
    }

    /// Review changes not yet in the city ledger, oldest first, `limit` at most.
    pub fn unshipped_reviews(&self, limit: usize) -> Result<Vec<ReviewRecord>, LedgerError> {
        self.reviews_where("shipped = 0 ORDER BY id LIMIT ?1", params![limit as i64])
    }

    /// Marks review changes as in the city ledger.
    pub fn mark_reviews_shipped(&self, keys: &[(String, u32)]) -> Result<(), LedgerError> {
        self.set_shipped("reviews", keys)
    }

    /// Records a review change made on another node (from the city ledger) unless it is here
    /// already; the event's review state follows its latest change, and so does the thing's
    /// suppression: made when the latest change is a "wrong object" false alarm, ended when it
    /// is a verdict taken back. True when it was added.
    pub fn import_review(&self, r: &ReviewRecord) -> Result<bool, LedgerError> {
        let added = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO reviews (event_id, seq, at_ms, by_name, by_role, from_state,
                    to_state, reason, note, unit, due, photo_path, shipped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1)",
                params![
                    r.event_id,
                    r.seq,
                    r.at.timestamp_millis(),
                    r.by,
                    r.role,
                    r.from,
                    r.to,
                    r.reason,
                    r.note,
                    r.unit,
                    r.due,
                    r.photo_path,
                ],
            )
            .map_err(|e| self.err(e))?
            == 1;
        if added {
            self.conn
                .execute(
                    "UPDATE incidents SET review_state = ?2 WHERE event_id = ?1
                     AND NOT EXISTS (SELECT 1 FROM reviews WHERE event_id = ?1 AND seq > ?3)",
                    params![r.event_id, r.to, r.seq],
                )
                .map_err(|e| self.err(e))?;
            let latest = self.reviews_of(&r.event_id)?.last().map(|l| l.seq) == Some(r.seq);
            let wrong_object = r.to == ReviewState::FalseAlarm.as_str()
                && r.reason.as_deref() == Some(FalseAlarmReason::WrongObject.as_str());
            let suppressions = self.suppressions_where("event_id = ?1", params![r.event_id])?;
            if latest && wrong_object && suppressions.is_empty() {
                self.add_suppression(&r.event_id, &r.by, r.at)?;
            } else if latest && r.to == ReviewState::Pending.as_str() {
                for s in suppressions.iter().filter(|s| s.ended.is_none()) {
                    self.end_suppression(s.id, r.at, "removed")?;
                }
            }
        }
        Ok(added)
    }

    fn reviews_where(
        &self,
        condition: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<ReviewRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT event_id, seq, at_ms, by_name, by_role, from_state, to_state, reason, note,
                    unit, due, photo_path FROM reviews WHERE {condition}"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(ReviewRecord {
                    event_id: r.get(0)?,
                    seq: r.get(1)?,
                    at: time(r.get(2)?),
                    by: r.get(3)?,
                    role: r.get(4)?,
                    from: r.get(5)?,
                    to: r.get(6)?,
                    reason: r.get(7)?,
                    note: r.get(8)?,
                    unit: r.get(9)?,
                    due: r.get(10)?,
                    photo_path: r.get(11)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Events of `camera` marked cleared and not re-checked yet, for a camera that restarts
    /// during a re-check.
    pub fn awaiting_recheck(&self, camera: &str) -> Result<Vec<AwaitingRecheck>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.event_id, i.zone, i.x1, i.y1, i.x2, i.y2,
                    (SELECT MAX(at_ms) FROM reviews r WHERE r.event_id = i.event_id AND r.to_state = 'cleared')
                 FROM incidents i WHERE i.camera = ?1 AND i.review_state = 'cleared'",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![camera], |r| {
                Ok(AwaitingRecheck {
                    event_id: r.get(0)?,
                    zone: r.get(1)?,
                    bbox: [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                    cleared: time(r.get::<_, Option<i64>>(6)?.unwrap_or_default()),
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Records a suppression of the thing of `event_id` and returns it.
    pub fn add_suppression(
        &self,
        event_id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Suppression>, LedgerError> {
        let Some(inc) = self.incident(event_id)? else {
            return Ok(None);
        };
        self.conn
            .execute(
                "INSERT INTO suppressions (camera, zone, event_id, kind, label, x1, y1, x2, y2,
                    by_name, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    inc.camera,
                    inc.zone,
                    event_id,
                    inc.kind,
                    inc.label,
                    inc.bbox[0],
                    inc.bbox[1],
                    inc.bbox[2],
                    inc.bbox[3],
                    by,
                    at.timestamp_millis()
                ],
            )
            .map_err(|e| self.err(e))?;
        let id = self.conn.last_insert_rowid();
        Ok(self.suppressions_where("id = ?1", params![id])?.pop())
    }

    /// Ends a suppression (`object_left`, `removed`); false when it was not active.
    pub fn end_suppression(
        &self,
        id: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, LedgerError> {
        self.conn
            .execute(
                "UPDATE suppressions SET ended_ms = ?2, end_reason = ?3 WHERE id = ?1 AND ended_ms IS NULL",
                params![id, at.timestamp_millis(), reason],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// One suppression.
    pub fn suppression(&self, id: i64) -> Result<Option<Suppression>, LedgerError> {
        Ok(self.suppressions_where("id = ?1", params![id])?.pop())
    }

    /// Active suppressions (of one camera, or all), oldest first.
    pub fn active_suppressions(
        &self,
        camera: Option<&str>,
    ) -> Result<Vec<Suppression>, LedgerError> {
        self.suppressions_where(
            "ended_ms IS NULL AND (?1 IS NULL OR camera = ?1) ORDER BY id",
            params![camera],
        )
    }

    fn suppressions_where(
        &self,
        condition: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Suppression>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, camera, zone, event_id, kind, label, x1, y1, x2, y2, by_name,
                    created_ms, ended_ms, end_reason FROM suppressions WHERE {condition}"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(Suppression {
                    id: r.get(0)?,
                    camera: r.get(1)?,
                    zone: r.get(2)?,
                    event_id: r.get(3)?,
                    kind: r.get(4)?,
                    label: r.get(5)?,
                    bbox: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
                    by: r.get(10)?,
                    created: time(r.get(11)?),
                    ended: r.get::<_, Option<i64>>(12)?.map(time),
                    end_reason: r.get(13)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Role;

    /// A ledger with one recorded event, as the camera would leave it.
    fn ledger_with_event(dir: &std::path::Path) -> Ledger {
        let l = Ledger::open(dir).unwrap();
        l.conn
            .execute(
                "INSERT INTO incidents (event_id, camera, zone, kind, start_ms, last_seen_ms, x1, y1,
                    x2, y2, grid, responsible_unit, label)
                 VALUES ('e1', 'cam', 'z', 'illegal_parking', 0, 1000, 0.1, 0.5, 0.3, 0.9,
                    '第八网格', '中队', 'car')",
                [],
            )
            .unwrap();
        l
    }

    fn op() -> Actor {
        Actor {
            name: "wang".into(),
            role: Role::Operator,
            grids: vec![],
        }
    }

    fn req(state: &str) -> ReviewRequest {
        ReviewRequest {
            state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_change_is_recorded_queued_and_numbered_or_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = ledger_with_event(dir.path());
        l.set_delivery(true);
        let tz = chrono_tz::Asia::Shanghai;
        let now = Utc::now();
        let (m1, _) = l
            .apply_review("e1", &req("confirmed"), &op(), now, tz, None)
            .unwrap();
        let (m2, _) = l
            .apply_review("e1", &req("dispatched"), &op(), now, tz, None)
            .unwrap();
        assert_eq!((m1.seq, m2.seq), (1, 2));
        assert_eq!(m2.unit.as_deref(), Some("中队"));
        // Refused: nothing recorded, nothing queued.
        let refused = l.apply_review("e1", &req("confirmed"), &op(), now, tz, None);
        assert!(matches!(refused, Err(ReviewError::Conflict(_))));
        assert!(matches!(
            l.apply_review("nope", &req("confirmed"), &op(), now, tz, None),
            Err(ReviewError::NotFound(_))
        ));
        let history = l.reviews_of("e1").unwrap();
        let states: Vec<&str> = history.iter().map(|r| r.to.as_str()).collect();
        assert_eq!(states, ["confirmed", "dispatched"]);
        assert_eq!(
            l.incident("e1").unwrap().unwrap().review_state,
            "dispatched"
        );
        let queued = l.outbox_after(0, 10).unwrap();
        assert_eq!(queued.len(), 2);
        assert!(queued
            .iter()
            .all(|q| q.message_type == "review" && q.camera == "cam"));
        let sent: ReviewMessage = serde_json::from_str(&queued[1].payload).unwrap();
        assert_eq!(sent, m2);
        // A worker's wrong-object verdict leaves a suppression of the thing at its place.
        l.apply_review(
            "e1",
            &ReviewRequest {
                reason: Some(FalseAlarmReason::WrongObject),
                ..req("false_alarm")
            },
            &op(),
            now,
            tz,
            None,
        )
        .unwrap();
        let s = l.add_suppression("e1", "wang", now).unwrap().unwrap();
        assert_eq!(
            (s.zone.as_str(), s.kind.as_str(), s.bbox),
            ("z", "illegal_parking", [0.1, 0.5, 0.3, 0.9])
        );
        assert_eq!(l.active_suppressions(Some("cam")).unwrap().len(), 1);
        assert!(l.end_suppression(s.id, now, "removed").unwrap());
        assert!(!l.end_suppression(s.id, now, "removed").unwrap());
        assert!(l.active_suppressions(None).unwrap().is_empty());
    }

    /// Another node's review changes, imported in order, leave the same state and suppression
    /// as if made here; importing them again changes nothing.
    #[test]
    fn imported_review_changes_carry_the_state_and_the_suppression() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (made, taken) = (ledger_with_event(from.path()), ledger_with_event(to.path()));
        let tz = chrono_tz::Asia::Shanghai;
        let now = Utc::now();
        made.apply_review("e1", &req("confirmed"), &op(), now, tz, None)
            .unwrap();
        let wrong = ReviewRequest {
            reason: Some(FalseAlarmReason::WrongObject),
            ..req("false_alarm")
        };
        made.apply_review("e1", &wrong, &op(), now, tz, None)
            .unwrap();
        let changes = made.reviews_of("e1").unwrap();
        for r in &changes {
            assert!(taken.import_review(r).unwrap());
        }
        assert!(!taken.import_review(&changes[1]).unwrap());
        assert_eq!(
            taken.incident("e1").unwrap().unwrap().review_state,
            "false_alarm"
        );
        let active = taken.active_suppressions(Some("cam")).unwrap();
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(active[0].event_id, "e1");
        assert!(
            taken.unshipped_reviews(10).unwrap().is_empty(),
            "imported ones are shipped"
        );
        // The verdict taken back on the first node: the suppression ends here too.
        made.apply_review("e1", &req("pending"), &op(), now, tz, None)
            .unwrap();
        let back = made.reviews_of("e1").unwrap().pop().unwrap();
        assert!(taken.import_review(&back).unwrap());
        assert!(taken.active_suppressions(Some("cam")).unwrap().is_empty());
        assert_eq!(
            taken.incident("e1").unwrap().unwrap().review_state,
            "pending"
        );
    }
}
