//! Test harness shared by the integration tests: a real `mosquitto` broker on a free loopback
//! port, an MQTT subscriber that records what it receives, and paths of fetched assets.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Waits until something accepts TCP connections on the port.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A mosquitto broker process, killed on drop.
pub struct Mosquitto {
    /// Its port.
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts `mosquitto` on a free port (anonymous access, loopback only).
    pub fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let bin = ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("-h")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            .expect("mosquitto is not installed: run `make setup`");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mosquitto");
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "mosquitto did not start on {port}"
        );
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One received MQTT message.
#[derive(Debug, Clone)]
pub struct Received {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Retain flag.
    pub retain: bool,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// Payload as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// Payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is not JSON")
    }
}

/// A subscriber recording every message on its filters, in arrival order.
pub struct Subscriber {
    /// What arrived so far.
    pub messages: Arc<Mutex<Vec<Received>>>,
    client: Client,
}

impl Subscriber {
    /// Connects to the broker and subscribes (QoS 1); returns once the broker acknowledged.
    pub fn connect(port: u16, filters: &[&str]) -> Self {
        let mut opts = MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(opts, 100);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).unwrap();
        }
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = messages.clone();
        let want = filters.len();
        thread::spawn(move || {
            let mut acks = 0;
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == want {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                        })
                    }
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscription not acknowledged");
        Self { messages, client }
    }

    /// Messages so far whose topic starts with `prefix`.
    pub fn on(&self, prefix: &str) -> Vec<Received> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds over all messages, or the timeout.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Received]) -> bool) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if pred(&self.messages.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// The crate root (tests run with it as the working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of the `streetwatch` binary built for the tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_streetwatch"))
}

/// An asset (from the cache or `$STREETWATCH_ASSETS`), failing with the set-up hint.
pub fn asset(rel: &str) -> PathBuf {
    streetwatch::assets::find(rel).unwrap_or_else(|e| panic!("{e}"))
}

/// Where tests keep artifacts worth looking at afterwards (screenshots, evidence, event logs).
pub fn artifacts_dir(test: &str) -> PathBuf {
    let d = root().join("target").join("test-artifacts").join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `streetwatch replay` of `clip` as `camera` with `config`, writing `out`; with `publish`
/// the messages also go to the config's broker. Returns the messages written.
pub fn replay(
    config: &std::path::Path,
    camera: &str,
    clip: &std::path::Path,
    out: &std::path::Path,
    publish: bool,
) -> Vec<serde_json::Value> {
    replay_with(config, camera, clip, out, publish, &[])
}

/// [`replay`] with more arguments (e.g. `--start-time`).
pub fn replay_with(
    config: &std::path::Path,
    camera: &str,
    clip: &std::path::Path,
    out: &std::path::Path,
    publish: bool,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(binary());
    cmd.current_dir(root())
        .args(["replay", "--camera", camera, "--config"])
        .arg(config)
        .arg("--input")
        .arg(clip)
        .arg("--events-out")
        .arg(out);
    if !publish {
        cmd.arg("--no-mqtt");
    }
    cmd.args(extra);
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "replay failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    read_jsonl(out)
}

/// The JSON values of a JSON Lines file.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An RFC 3339 time from a JSON string.
pub fn time(v: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Renders `configs/scenarios/{name}.toml` into `dir/{name}.mp4`; returns the clip and its truth.
pub fn render_scenario(
    name: &str,
    dir: &std::path::Path,
) -> (PathBuf, streetwatch::compose::GroundTruth) {
    let sc =
        streetwatch::compose::load_scenario(&root().join(format!("configs/scenarios/{name}.toml")))
            .unwrap_or_else(|e| panic!("{e}"));
    let clip = dir.join(format!("{name}.mp4"));
    let truth = streetwatch::compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    (clip, truth)
}

/// The event schema kept in the repository, compiled.
pub fn event_schema() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/schema/event.schema.json")).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Asserts every message is valid against the event schema.
pub fn assert_schema_valid(messages: &[serde_json::Value]) {
    let validator = event_schema();
    for m in messages {
        let errors: Vec<String> = validator.iter_errors(m).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{m:#}\n{errors:#?}");
    }
}
