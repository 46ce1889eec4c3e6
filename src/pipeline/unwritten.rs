//! Messages the ledger refused (disk full, the database busy past its timeout). The ledger
//! write also queues the message for MQTT (the outbox), so a message that is not written is
//! not sent either: it waits here, oldest first, and is written again with backoff before
//! anything newer, so nothing is dropped and each event's messages keep their `seq` order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::event::EventMessage;
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
