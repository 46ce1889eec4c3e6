//! Messages the ledger refused (disk full, the database busy past its timeout). The ledger
//! write also queues the message for MQTT (the outbox), so a message that is not written is
//! not sent either: it waits here, oldest first, and is written again with backoff before
//! anything newer, so nothing is dropped and each event's messages keep their `seq` order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use std::sync::Arc;

use crate::domain::custody::{Custody, Verdict};
use crate::event::EventMessage;
use crate::incidents::Phase;
use crate::ledger::Ledger;

/// First wait after a failed write; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One message with the incident times the ledger keeps beside it.
struct Waiting {
    msg: EventMessage,
    start: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

/// The camera's queue of messages not yet in the ledger.
#[derive(Default)]
pub struct Unwritten {
    waiting: VecDeque<Waiting>,
    /// Why the last attempt failed, for the camera's status; None when all is written.
    error: Option<String>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    /// In a cluster: asked before each write whether this node still holds the camera.
    custody: Option<Arc<dyn Custody>>,
    /// Set once custody refused: the camera is another node's now.
    refused: Option<String>,
}

impl Unwritten {
    /// Writes `msg` after everything still waiting (now, unless an earlier write is backing off).
    pub fn write(
        &mut self,
        ledger: &Ledger,
        camera: &str,
        msg: &EventMessage,
        start: DateTime<Utc>,
        last_seen: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) {
        self.waiting.push_back(Waiting {
            msg: msg.clone(),
            start,
            last_seen,
            end,
        });
        self.retry(ledger, camera, false);
    }

    /// Writes what waits, oldest first, when its backoff has passed (or now when `now_anyway`),
    /// stopping at the first failure.
    pub fn retry(&mut self, ledger: &Ledger, camera: &str, now_anyway: bool) {
        if self.waiting.is_empty()
            || (!now_anyway && self.next_attempt.is_some_and(|t| Instant::now() < t))
        {
            return;
        }
        while let Some(w) = self.waiting.front() {
            if let Some(why) = self.refused_by_custody(camera, &w.msg) {
                tracing::error!(
                    camera,
                    "{} message(s) not written: {why}",
                    self.waiting.len()
                );
                self.waiting.clear();
                self.refused = Some(why);
                return;
            }
            match ledger.record(&w.msg, w.start, w.last_seen, w.end) {
                Ok(()) => {
                    self.waiting.pop_front();
                }
                Err(e) => {
                    self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    self.next_attempt = Some(Instant::now() + self.backoff);
                    let why = format!(
                        "{e}; {} message(s) wait to be written and sent, next attempt in {} s",
                        self.waiting.len(),
                        self.backoff.as_secs()
                    );
                    tracing::error!(camera, "{why}");
                    self.error = Some(why);
                    return;
                }
            }
        }
        if self.error.take().is_some() {
            tracing::info!(
                camera,
                "the ledger takes messages again: every waiting one is written"
            );
        }
        self.next_attempt = None;
        self.backoff = Duration::ZERO;
    }

    /// Has every write asked `custody` first (cluster mode).
    pub fn set_custody(&mut self, custody: Arc<dyn Custody>) {
        self.custody = Some(custody);
    }

    /// Why custody refused a write, once it has: this node no longer holds the camera.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Asks custody about `msg`; Some(why) when it must not be written.
    fn refused_by_custody(&self, camera: &str, msg: &EventMessage) -> Option<String> {
        let custody = self.custody.as_ref()?;
        let payload = match serde_json::to_string(msg) {
            Ok(p) => p,
            Err(e) => return Some(format!("the message cannot be serialized: {e}")),
        };
        let open = msg.phase != Phase::End;
        match custody.before_write(camera, &msg.event_id, &payload, open) {
            Verdict::Write => None,
            Verdict::WriteLocally(why) => {
                tracing::warn!(
                    camera,
                    event_id = %msg.event_id,
                    "written to this node's ledger only ({why}): a node taking the camera over now would not continue this message"
                );
                None
            }
            Verdict::Refuse(why) => Some(why),
        }
    }

    /// Why messages are waiting, if any are.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// How many messages wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether every message is written.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}
