//! MQTT: the command center's view. Events go out through the durable outbox (QoS 1), with
//! node availability (last will), retained camera status and zone state, statistics, and
//! commands in (zone switches, config reload).
//!
//! `link.rs` runs the connection; `options.rs` turns the config into client options
//! (credentials, TLS); `commands.rs` reads incoming commands; `broker.rs` is the embedded broker.

mod broker;
mod commands;
mod link;
mod options;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::event::EventMessage;
use crate::ledger::Ledger;
use crate::source::CameraState;

pub use crate::domain::address::{BrokerAddress, UrlError};
pub use broker::start_embedded_broker;
pub use commands::{parse as parse_command, Command, CommandError};
pub use link::{start_link, Link, LinkError, WINDOW};
pub use options::{client_options, password, OptionsError};

/// Topic names under a prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    node: String,
}

impl Topics {
    /// Topics for a prefix and node id.
    pub fn new(prefix: &str, node: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
            node: node.to_string(),
        }
    }

    /// `{p}/events/{kind}/{camera}`.
    pub fn event(&self, kind: &str, camera: &str) -> String {
        format!("{}/events/{kind}/{camera}", self.prefix)
    }

    /// `{p}/reviews/{kind}/{camera}`.
    pub fn review(&self, kind: &str, camera: &str) -> String {
        format!("{}/reviews/{kind}/{camera}", self.prefix)
    }

    /// `{p}/events/+/review/set`: review changes from a city platform.
    pub fn review_set_filter(&self) -> String {
        format!("{}/events/+/review/set", self.prefix)
    }

    /// `{p}/events/{event_id}/review/set`.
    pub fn review_set(&self, event_id: &str) -> String {
        format!("{}/events/{event_id}/review/set", self.prefix)
    }

    /// The event id of a `{p}/events/{event_id}/review/set` topic.
    pub fn parse_review_set<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let id = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/events/")?
            .strip_suffix("/review/set")?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }

    /// `{p}/events/#`.
    pub fn all_events(&self) -> String {
        format!("{}/events/#", self.prefix)
    }

    /// `{p}/nodes/{node}/available`.
    pub fn available(&self) -> String {
        format!("{}/nodes/{}/available", self.prefix, self.node)
    }

    /// `{p}/cameras/{camera}/status`.
    pub fn camera_status(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/status", self.prefix)
    }

    /// `{p}/cameras/{camera}/`: the start of every topic of one camera.
    pub fn camera_topics(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/", self.prefix)
    }

    /// `{p}/cameras/{camera}/zones/{zone}/state`.
    pub fn zone_state(&self, camera: &str, zone: &str) -> String {
        format!("{}/cameras/{camera}/zones/{zone}/state", self.prefix)
    }

    /// `{p}/stats`.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.prefix)
    }

    /// `{p}/cameras/+/zones/+/set`: zone switches from the command center.
    pub fn zone_set_filter(&self) -> String {
        format!("{}/cameras/+/zones/+/set", self.prefix)
    }

    /// `{p}/nodes/{node}/reload`: re-read the config file.
    pub fn reload(&self) -> String {
        format!("{}/nodes/{}/reload", self.prefix, self.node)
    }

    /// `{p}/nodes/{node}/errors`: why a command was refused.
    pub fn errors(&self) -> String {
        format!("{}/nodes/{}/errors", self.prefix, self.node)
    }

    /// The camera and zone of a `{p}/cameras/{camera}/zones/{zone}/set` topic.
    pub fn parse_zone_set<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/cameras/")?;
        let (camera, rest) = rest.split_once("/zones/")?;
        let zone = rest.strip_suffix("/set")?;
        (!camera.is_empty() && !zone.is_empty() && !zone.contains('/') && !camera.contains('/'))
            .then_some((camera, zone))
    }
}

/// The retained status of a camera.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CameraStatus {
    /// online / reconnecting / offline.
    pub state: CameraState,
    /// Sampled frames per second over the last status period.
    pub fps: f64,
    /// Stream time of the latest frame (RFC 3339).
    pub last_frame_time: Option<String>,
    /// Why the camera is not online.
    pub error: Option<String>,
    /// Why evidence photos cannot be written (full disk, permissions); null when they can.
    pub storage_error: Option<String>,
    /// With `detect_url`: why the main stream gave no evidence photo (they come from the detect
    /// stream meanwhile); null when it works or the camera has one stream.
    pub main_stream_error: Option<String>,
    /// The node running the camera (`[node] id`).
    pub node: String,
}

/// Something to publish.
// Events are most of the traffic, so boxing the large variant would only add an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Outbound {
    /// An event message, already recorded and queued in the outbox: tells the link to send.
    Event(EventMessage),
    /// A camera's status changed.
    CameraStatus {
        /// Camera id.
        camera: String,
        /// The status.
        status: CameraStatus,
    },
    /// A zone's armed state (`ON`/`OFF`).
    ZoneState {
        /// Camera id.
        camera: String,
        /// Zone id.
        zone: String,
        /// Armed.
        on: bool,
    },
    /// Periodic statistics (the link adds the outbox's figures).
    Stats(serde_json::Value),
    /// A command was refused: published on `{p}/nodes/{node}/errors`.
    CommandError(CommandError),
    /// A camera went to another node (cluster): its retained status and zone states are that
    /// node's to publish, so this node stops re-publishing them.
    Released {
        /// Camera id.
        camera: String,
    },
}

/// What the link has delivered, shared with whoever waits for delivery.
#[derive(Debug)]
pub struct Delivery {
    /// The outbox, read to know what still waits.
    ledger: Mutex<Ledger>,
    /// Messages outside the outbox (status, zone state, availability) handed to the client.
    pub untracked_sent: AtomicU64,
    /// Of those, acknowledged by the broker.
    pub untracked_acked: AtomicU64,
    /// Outbox messages acknowledged by the broker since start.
    pub acked: AtomicU64,
    /// Outbox messages dropped by the overflow policy since start.
    pub dropped: AtomicU64,
    /// Whether the link is connected now.
    pub connected: AtomicBool,
}

impl Delivery {
    /// A record of delivery over `ledger`'s outbox (the link's, or a console's run without one).
    pub fn new(ledger: Ledger) -> Self {
        Self {
            ledger: Mutex::new(ledger),
            untracked_sent: AtomicU64::new(0),
            untracked_acked: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        }
    }

    /// Messages waiting in the outbox now.
    pub fn backlog(&self) -> crate::ledger::Backlog {
        self.ledger
            .lock()
            .ok()
            .and_then(|l| l.outbox_backlog().ok())
            .unwrap_or_default()
    }

    /// Waits until the outbox is empty and every other QoS 1 message is acknowledged, or `timeout`.
    pub async fn wait_acked(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let others_done = self.untracked_acked.load(Ordering::SeqCst)
                >= self.untracked_sent.load(Ordering::SeqCst);
            if others_done && self.backlog().messages == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            BrokerAddress::parse("mqtt://10.1.2.3:1884").unwrap(),
            BrokerAddress {
                host: "10.1.2.3".into(),
                port: 1884,
                tls: false,
            }
        );
        assert_eq!(BrokerAddress::parse("mqtt://broker").unwrap().port, 1883);
        assert!(BrokerAddress::parse("http://x").is_err());
        assert!(BrokerAddress::parse("mqtt://x:notaport").is_err());
    }

    #[test]
    fn parses_tls_urls() {
        let a = BrokerAddress::parse("mqtts://broker.city.gov.cn").unwrap();
        assert_eq!((a.port, a.tls), (8883, true));
        assert!(!BrokerAddress::parse("mqtt://b:1884").unwrap().tls);
    }

    #[test]
    fn zone_set_topics() {
        let t = Topics::new("sw", "n1");
        assert_eq!(
            t.parse_zone_set("sw/cameras/c1/zones/z-2/set"),
            Some(("c1", "z-2"))
        );
        assert_eq!(t.parse_zone_set("sw/cameras/c1/zones/z/state"), None);
        assert_eq!(t.parse_zone_set("sw/cameras//zones/z/set"), None);
        assert_eq!(t.parse_zone_set("other/cameras/c/zones/z/set"), None);
        assert_eq!(t.reload(), "sw/nodes/n1/reload");
        assert_eq!(t.errors(), "sw/nodes/n1/errors");
    }

    #[test]
    fn topic_names() {
        let t = Topics::new("sw/", "n1");
        assert_eq!(
            t.event("illegal_parking", "cam"),
            "sw/events/illegal_parking/cam"
        );
        assert_eq!(t.available(), "sw/nodes/n1/available");
        assert_eq!(t.review("garbage", "cam"), "sw/reviews/garbage/cam");
        assert_eq!(
            t.parse_review_set("sw/events/cam-z-1-2/review/set"),
            Some("cam-z-1-2")
        );
        assert_eq!(t.parse_review_set("sw/events/a/b/review/set"), None);
        assert_eq!(t.parse_review_set(&t.review_set("e-1")), Some("e-1"));
        assert_eq!(t.parse_review_set("sw/events//review/set"), None);
        assert_eq!(t.zone_state("c", "z"), "sw/cameras/c/zones/z/state");
    }
}
