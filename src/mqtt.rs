//! MQTT: the command center's view. Events (QoS 1), node availability with a last will,
//! retained camera status and zone state; an optional in-process broker for demos.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::MqttConfig;
use crate::event::EventMessage;
use crate::source::CameraState;

/// Host and port of a broker, from `mqtt://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A broker url that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad MQTT url {url:?}: {why}; expected mqtt://HOST:PORT")]
pub struct UrlError {
    url: String,
    why: String,
}

impl BrokerAddress {
    /// Parses `mqtt://host[:port]` (port 1883 by default).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let err = |why: &str| UrlError {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| err("only mqtt:// is supported in this version"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| err("the port is not a number"))?,
            ),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

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

    /// `{p}/cameras/{camera}/zones/{zone}/state`.
    pub fn zone_state(&self, camera: &str, zone: &str) -> String {
        format!("{}/cameras/{camera}/zones/{zone}/state", self.prefix)
    }

    /// `{p}/stats`.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.prefix)
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
}

/// A running publisher: where to send, what was acknowledged, and its task.
pub type Publisher = (
    mpsc::UnboundedSender<Outbound>,
    Arc<Delivery>,
    tokio::task::JoinHandle<()>,
);

/// Something to publish.
// Events are most of the traffic, so boxing the large variant would only add an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Outbound {
    /// An event message.
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
    /// Periodic statistics.
    Stats(serde_json::Value),
}

/// Counters of the publisher, shared with whoever waits for delivery.
#[derive(Debug, Default)]
pub struct Delivery {
    /// QoS 1 messages handed to the client.
    pub sent: AtomicU64,
    /// QoS 1 messages the broker acknowledged.
    pub acked: AtomicU64,
}

impl Delivery {
    /// Waits until every QoS 1 message sent so far is acknowledged, or `timeout`.
    pub async fn wait_acked(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.acked.load(Ordering::SeqCst) >= self.sent.load(Ordering::SeqCst) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Connects to the broker and publishes what arrives on the returned sender until it closes.
///
/// Returns the sender, the delivery counters and the task (which ends after publishing
/// `offline` and disconnecting once every sender is dropped).
pub fn start_publisher(cfg: &MqttConfig, node_id: &str) -> Result<Publisher, UrlError> {
    let addr = BrokerAddress::parse(&cfg.url)?;
    let topics = Topics::new(&cfg.topic_prefix, node_id);
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("streetwatch-{node_id}"));
    let mut opts = MqttOptions::new(client_id, addr.host, addr.port);
    opts.set_keep_alive(Duration::from_secs(15));
    opts.set_last_will(LastWill::new(
        topics.available(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let delivery = Arc::new(Delivery::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(drive(
        eventloop,
        client.clone(),
        topics.clone(),
        delivery.clone(),
    ));
    let task = tokio::spawn(forward(rx, client, topics, delivery.clone(), driver));
    Ok((tx, delivery, task))
}

/// Publishes each outbound message; at the end says `offline` and disconnects.
async fn forward(
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    client: AsyncClient,
    topics: Topics,
    delivery: Arc<Delivery>,
    driver: tokio::task::JoinHandle<()>,
) {
    while let Some(out) = rx.recv().await {
        let (topic, payload, qos, retain) = match &out {
            Outbound::Event(m) => (
                topics.event(&m.kind, &m.camera.id),
                serde_json::to_vec(m).unwrap_or_default(),
                QoS::AtLeastOnce,
                false,
            ),
            Outbound::CameraStatus { camera, status } => (
                topics.camera_status(camera),
                serde_json::to_vec(status).unwrap_or_default(),
                QoS::AtLeastOnce,
                true,
            ),
            Outbound::ZoneState { camera, zone, on } => (
                topics.zone_state(camera, zone),
                if *on { b"ON".to_vec() } else { b"OFF".to_vec() },
                QoS::AtLeastOnce,
                true,
            ),
            Outbound::Stats(v) => (
                topics.stats(),
                serde_json::to_vec(v).unwrap_or_default(),
                QoS::AtMostOnce,
                false,
            ),
        };
        if qos == QoS::AtLeastOnce {
            delivery.sent.fetch_add(1, Ordering::SeqCst);
        }
        // The client queues while disconnected; this only fails once the event loop is gone.
        if let Err(e) = client.publish(topic, qos, retain, payload).await {
            tracing::error!("MQTT client stopped, message not queued: {e}");
        }
    }
    delivery.sent.fetch_add(1, Ordering::SeqCst);
    let _ = client
        .publish(topics.available(), QoS::AtLeastOnce, true, "offline")
        .await;
    delivery.wait_acked(Duration::from_secs(5)).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
}

/// Runs the MQTT event loop: reconnects with backoff, announces `online` on every connect.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    topics: Topics,
    delivery: Arc<Delivery>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("connected to the MQTT broker");
                backoff = Duration::from_millis(500);
                delivery.sent.fetch_add(1, Ordering::SeqCst);
                let _ = client.try_publish(topics.available(), QoS::AtLeastOnce, true, "online");
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                delivery.acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(e) => {
                tracing::warn!("MQTT connection: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Starts an in-process MQTT broker listening on `addr` (for `mqtt.embedded = true`).
pub fn start_embedded_broker(addr: &BrokerAddress) -> Result<(), String> {
    let listen = format!("{}:{}", addr.host, addr.port);
    let config = serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 100,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 104857600,
            "max_segment_count": 10
        },
        "v4": {
            "1": {
                "name": "v4-1",
                "listen": listen,
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 60000,
                    "max_payload_size": 1048576,
                    "max_inflight_count": 200,
                    "dynamic_filters": true
                }
            }
        }
    });
    let config: rumqttd::Config =
        serde_json::from_value(config).map_err(|e| format!("broker config: {e}"))?;
    // Fail early (and clearly) if the port is taken, instead of inside the broker's thread.
    std::net::TcpListener::bind(&listen)
        .map_err(|e| format!("cannot listen on {listen} for the embedded broker: {e}"))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| format!("cannot start the broker thread: {e}"))?;
    Ok(())
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
                port: 1884
            }
        );
        assert_eq!(BrokerAddress::parse("mqtt://broker").unwrap().port, 1883);
        assert!(BrokerAddress::parse("http://x").is_err());
        assert!(BrokerAddress::parse("mqtt://x:notaport").is_err());
    }

    #[test]
    fn topic_names() {
        let t = Topics::new("sw/", "n1");
        assert_eq!(
            t.event("illegal_parking", "cam"),
            "sw/events/illegal_parking/cam"
        );
        assert_eq!(t.available(), "sw/nodes/n1/available");
        assert_eq!(t.zone_state("c", "z"), "sw/cameras/c/zones/z/state");
    }
}
