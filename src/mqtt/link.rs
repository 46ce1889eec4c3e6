//! The link to the broker. Event messages wait in the outbox (SQLite, written by the camera in
//! the same transaction as the ledger record) until the broker acknowledges them: a message
//! leaves the outbox only on its PUBACK, so a broker outage or a killed process loses nothing.
//!
//! Each connection is a fresh client with a clean session: whatever was not acknowledged is sent
//! again from the outbox, in outbox order (so per event, in `seq` order), never by the client
//! library on its own. Receivers de-duplicate by `event_id` + `seq` (at least once).
//!
//! Acknowledgements carry packet ids, not outbox rows. The client assigns ids in the order
//! publishes are handed to it and reports each as `Outgoing::Publish(pkid)` in that order, so a
//! FIFO of what was handed over (outbox row or not) maps each id back to its row.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, Outgoing, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::commands::{self, Command, CommandError};
use super::{Delivery, Outbound, Topics};
use crate::config::LoadedConfig;
use crate::ledger::{Ledger, LedgerError};

/// Outbox messages handed to the client and not yet acknowledged, at most: bounds the memory a
/// broker that never acknowledges can take.
pub const WINDOW: u16 = 32;

/// How long the link keeps trying to empty the outbox at shutdown.
const DRAIN_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Why the link cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The outbox cannot be opened.
    #[error("outbox: {0}")]
    Outbox(LedgerError),
    /// The url is not usable.
    #[error(transparent)]
    Url(#[from] super::UrlError),
}

// By hand, not `#[from]`: the message already holds the cause, and a `source` would print it
// twice in an error chain ("outbox: ledger …: why: ledger …: why").
impl From<LedgerError> for LinkError {
    fn from(e: LedgerError) -> Self {
        Self::Outbox(e)
    }
}

/// Commands from the broker that may wait for the supervisor; beyond, one is refused on the
/// errors topic instead of growing a queue without bound.
pub const COMMAND_QUEUE: usize = 256;

/// A running link.
#[derive(Debug)]
pub struct Link {
    /// Where to send what should be published.
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// What was delivered; `wait_acked` waits for the outbox to empty.
    pub delivery: Arc<Delivery>,
    /// Commands received from the command center (at most [`COMMAND_QUEUE`] waiting).
    pub commands: mpsc::Receiver<Command>,
    /// Set while a reload waits in `commands`: more reloads are folded into it. The receiver
    /// clears it when it starts the reload (so one arriving meanwhile reads the file again).
    pub reload_queued: Arc<AtomicBool>,
    /// The task; it ends after `offline` once every sender is dropped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the link of this node (inside a tokio runtime).
pub fn start_link(loaded: &LoadedConfig) -> Result<Link, LinkError> {
    super::BrokerAddress::parse(&loaded.config.mqtt.url)?;
    let storage = loaded.storage_dir();
    let ledger = Ledger::open(&storage)?;
    let delivery = Arc::new(Delivery::new(Ledger::open(&storage)?));
    let (tx, rx) = mpsc::unbounded_channel();
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let reload_queued = Arc::new(AtomicBool::new(false));
    let state = LinkState {
        loaded: loaded.clone(),
        topics: Topics::new(&loaded.config.mqtt.topic_prefix, &loaded.config.node.id),
        ledger,
        delivery: delivery.clone(),
        commands: commands_tx,
        reload_queued: reload_queued.clone(),
        retained: BTreeMap::new(),
        closing: None,
    };
    let task = tokio::spawn(state.run(rx));
    Ok(Link {
        tx,
        delivery,
        commands,
        reload_queued,
        task,
    })
}

/// What a handed-over publish was: an outbox row, or something outside the outbox.
type Tag = Option<i64>;

/// One connection's bookkeeping; dropped with the connection.
struct Session {
    client: AsyncClient,
    connected: bool,
    /// Handed to the client, packet id not yet known, in order.
    awaiting_id: VecDeque<Tag>,
    /// Sent, waiting for PUBACK.
    in_flight: HashMap<u16, Tag>,
    /// Last outbox row handed over in this session.
    last_row: i64,
    /// Outbox rows handed over and not yet acknowledged.
    rows_out: usize,
}

struct LinkState {
    loaded: LoadedConfig,
    topics: Topics,
    ledger: Ledger,
    delivery: Arc<Delivery>,
    commands: mpsc::Sender<Command>,
    reload_queued: Arc<AtomicBool>,
    /// Latest retained payload per topic (camera status, zone state), re-published on connect.
    retained: BTreeMap<String, Vec<u8>>,
    /// Set when every sender is gone: until when to keep draining the outbox.
    closing: Option<Instant>,
}

impl LinkState {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Outbound>) {
        let mut backoff = Duration::from_millis(500);
        let limits = self.loaded.config.outbox.clone();
        let mut next_trim = Instant::now();
        loop {
            let opts = match super::client_options(&self.loaded) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::error!("MQTT: {e}; retrying in {backoff:?}");
                    None
                }
            };
            if let Some(opts) = opts {
                let (client, mut eventloop) = AsyncClient::new(opts, 256);
                let mut s = Session {
                    client,
                    connected: false,
                    awaiting_id: VecDeque::new(),
                    in_flight: HashMap::new(),
                    last_row: 0,
                    rows_out: 0,
                };
                loop {
                    if Instant::now() >= next_trim {
                        self.trim(&limits);
                        next_trim = Instant::now() + Duration::from_secs(10);
                    }
                    if s.connected {
                        self.fill_window(&mut s);
                    }
                    if let Some(deadline) = self.closing {
                        let drained = self.ledger.outbox_backlog().map(|b| b.messages == 0);
                        if drained.unwrap_or(true) || Instant::now() >= deadline {
                            self.say_offline(&mut s, &mut eventloop).await;
                            return;
                        }
                    }
                    tokio::select! {
                        ev = eventloop.poll() => match ev {
                            Ok(ev) => {
                                if self.on_event(&mut s, ev) {
                                    backoff = Duration::from_millis(500);
                                }
                            }
                            Err(e) => {
                                self.delivery.connected.store(false, Ordering::SeqCst);
                                log_connection_error(&e, backoff);
                                break;
                            }
                        },
                        msg = rx.recv(), if self.closing.is_none() => self.on_outbound(Some(&mut s), msg),
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            }
            // Wait before the next attempt, still taking what the cameras send.
            let until = Instant::now() + backoff;
            loop {
                if let Some(deadline) = self.closing {
                    if Instant::now() >= deadline {
                        return;
                    }
                }
                tokio::select! {
                    msg = rx.recv(), if self.closing.is_none() => self.on_outbound(None, msg),
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Hands outbox rows to the client up to the window.
    fn fill_window(&mut self, s: &mut Session) {
        let room = (WINDOW as usize).saturating_sub(s.rows_out);
        if room == 0 {
            return;
        }
        let rows = match self.ledger.outbox_after(s.last_row, room) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        for row in rows {
            let topic = if row.message_type == "review" {
                self.topics.review(&row.kind, &row.camera)
            } else {
                self.topics.event(&row.kind, &row.camera)
            };
            match s
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, row.payload.into_bytes())
            {
                Ok(()) => {
                    s.awaiting_id.push_back(Some(row.id));
                    s.last_row = row.id;
                    s.rows_out += 1;
                }
                // The client's queue is full: the rest waits for the next round.
                Err(_) => return,
            }
        }
    }

    /// Handles a client event; true when the connection was (re)established.
    fn on_event(&mut self, s: &mut Session, ev: Event) -> bool {
        match ev {
            Event::Incoming(Packet::ConnAck(_)) => {
                tracing::info!("connected to the MQTT broker");
                s.connected = true;
                self.delivery.connected.store(true, Ordering::SeqCst);
                self.publish_untracked(s, self.topics.available(), true, b"online".to_vec());
                let retained: Vec<(String, Vec<u8>)> = self
                    .retained
                    .iter()
                    .map(|(t, p)| (t.clone(), p.clone()))
                    .collect();
                for (topic, payload) in retained {
                    self.publish_untracked(s, topic, true, payload);
                }
                for filter in [
                    self.topics.zone_set_filter(),
                    self.topics.reload(),
                    self.topics.review_set_filter(),
                ] {
                    if let Err(e) = s.client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::error!("cannot subscribe to commands: {e}");
                    }
                }
                return true;
            }
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                let tag = s.awaiting_id.pop_front().flatten();
                s.in_flight.insert(pkid, tag);
            }
            Event::Incoming(Packet::PubAck(ack)) => match s.in_flight.remove(&ack.pkid) {
                Some(Some(row)) => {
                    s.rows_out = s.rows_out.saturating_sub(1);
                    if let Err(e) = self.ledger.outbox_ack(row) {
                        tracing::error!("{e}");
                    }
                    self.delivery.acked.fetch_add(1, Ordering::SeqCst);
                }
                Some(None) => {
                    self.delivery.untracked_acked.fetch_add(1, Ordering::SeqCst);
                }
                None => {}
            },
            Event::Incoming(Packet::Publish(p)) => {
                match commands::parse(&self.topics, &p.topic, &p.payload) {
                    Ok(Command::Reload) if self.reload_queued.swap(true, Ordering::SeqCst) => {
                        tracing::info!(topic = %p.topic, "reload received: one is already waiting, it reads the file");
                    }
                    Ok(cmd) => {
                        tracing::info!(topic = %p.topic, "command received: {cmd:?}");
                        let reload = matches!(cmd, Command::Reload);
                        if self.commands.try_send(cmd).is_err() {
                            if reload {
                                self.reload_queued.store(false, Ordering::SeqCst);
                            }
                            let why = format!(
                                "the node is busy: {COMMAND_QUEUE} commands wait already; this one was dropped, send it again"
                            );
                            self.refuse(s, CommandError::new(&p.topic, &p.payload, why));
                        }
                    }
                    Err(e) => self.refuse(s, e),
                }
            }
            _ => {}
        }
        false
    }

    /// Publishes a refused command's explanation on the errors topic.
    fn refuse(&mut self, s: &mut Session, e: CommandError) {
        tracing::warn!(topic = %e.topic, "command refused: {}", e.error);
        if let Ok(payload) = serde_json::to_vec(&e) {
            self.publish_untracked(s, self.topics.errors(), false, payload);
        }
    }

    /// A QoS 1 publish outside the outbox (status, zone state, availability, errors).
    fn publish_untracked(
        &mut self,
        s: &mut Session,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) {
        if s.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_ok()
        {
            s.awaiting_id.push_back(None);
            self.delivery.untracked_sent.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Takes what the node wants published; `s` is the session, if there is one. Event
    /// messages are already in the outbox; retained state is remembered for the next connection.
    fn on_outbound(&mut self, s: Option<&mut Session>, msg: Option<Outbound>) {
        let Some(msg) = msg else {
            self.closing = Some(Instant::now() + DRAIN_AT_SHUTDOWN);
            return;
        };
        let s = s.filter(|s| s.connected);
        match (msg, s) {
            // Already in the outbox; the next round sends it.
            (Outbound::Event(_), _) => {}
            (Outbound::Stats(v), Some(s)) => {
                let payload = serde_json::to_vec(&self.with_outbox_stats(v)).unwrap_or_default();
                let _ = s
                    .client
                    .try_publish(self.topics.stats(), QoS::AtMostOnce, false, payload);
            }
            (Outbound::Stats(_), None) => {}
            (Outbound::CommandError(e), Some(s)) => self.refuse(s, e),
            (Outbound::CommandError(e), None) => {
                tracing::warn!(topic = %e.topic, "command refused: {}", e.error)
            }
            (Outbound::Released { camera }, _) => {
                let start = self.topics.camera_topics(&camera);
                self.retained.retain(|topic, _| !topic.starts_with(&start));
            }
            (other, s) => {
                if let (Some((topic, payload)), Some(s)) = (self.remember(other), s) {
                    self.publish_untracked(s, topic, true, payload);
                }
            }
        }
    }

    /// Keeps the latest retained payload of status and zone-state messages.
    fn remember(&mut self, msg: Outbound) -> Option<(String, Vec<u8>)> {
        let (topic, payload) = match msg {
            Outbound::CameraStatus { camera, status } => (
                self.topics.camera_status(&camera),
                serde_json::to_vec(&status).unwrap_or_default(),
            ),
            Outbound::ZoneState { camera, zone, on } => (
                self.topics.zone_state(&camera, &zone),
                if on { b"ON".to_vec() } else { b"OFF".to_vec() },
            ),
            _ => return None,
        };
        self.retained.insert(topic.clone(), payload.clone());
        Some((topic, payload))
    }

    /// Adds the outbox's figures to a stats snapshot.
    fn with_outbox_stats(&self, mut v: serde_json::Value) -> serde_json::Value {
        let backlog = self.ledger.outbox_backlog().unwrap_or_default();
        let age = backlog.oldest_age_seconds(chrono::Utc::now());
        v["outbox"] = serde_json::json!({
            "backlog": backlog.messages,
            "oldest_age_seconds": age,
            "acked": self.delivery.acked.load(Ordering::SeqCst),
            "dropped": self.delivery.dropped.load(Ordering::SeqCst),
            "connected": self.delivery.connected.load(Ordering::SeqCst),
        });
        v
    }

    /// Applies the outbox bounds.
    fn trim(&mut self, limits: &crate::config::OutboxConfig) {
        let too_old = chrono::Utc::now()
            - chrono::Duration::milliseconds((limits.max_age_seconds * 1000.0) as i64);
        match self.ledger.outbox_trim(limits.max_messages, too_old) {
            Ok(0) => {}
            Ok(n) => {
                self.delivery.dropped.fetch_add(n, Ordering::SeqCst);
                tracing::warn!(
                    "outbox over its bounds: dropped {n} update message(s) (superseded first; never a new or end)"
                );
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Says `offline` and disconnects cleanly (best effort, bounded).
    async fn say_offline(&mut self, s: &mut Session, eventloop: &mut rumqttc::EventLoop) {
        if !s.connected {
            return;
        }
        self.publish_untracked(s, self.topics.available(), true, b"offline".to_vec());
        let _ = s.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// Logs a connection failure in words an operator can act on.
fn log_connection_error(e: &ConnectionError, backoff: Duration) {
    let hint = match e {
        ConnectionError::ConnectionRefused(code) => format!(
            "the broker refused the connection ({code:?}): check [mqtt] username and password_file / password_env"
        ),
        ConnectionError::Tls(t) => format!(
            "TLS failed ({t}): check [mqtt] ca_file (the CA that signed the broker's certificate), client_cert_file and client_key_file"
        ),
        other => other.to_string(),
    };
    tracing::warn!("MQTT connection: {hint}; retrying in {backoff:?}");
}
