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

pub mod rtsp;

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
    child: Option<Child>,
    conf: PathBuf,
    dir: tempfile::TempDir,
}

fn mosquitto_binary() -> &'static str {
    ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("mosquitto is not installed: run `make setup`")
}

impl Mosquitto {
    /// Starts `mosquitto` on a free port (anonymous access, loopback only).
    pub fn start() -> Self {
        Self::start_with(|port, _| {
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        })
    }

    /// Starts `mosquitto` on a free port with the config `conf(port, folder)` returns (the
    /// folder is the broker's own, for password files, certificates, persistence).
    pub fn start_with(conf: impl FnOnce(u16, &std::path::Path) -> String) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, conf(port, dir.path())).unwrap();
        // Started as root, mosquitto drops to its own user: it must still read its files
        // (keys, password file) and write its persistence file here.
        use std::os::unix::fs::PermissionsExt;
        let open = |p: &std::path::Path, mode| {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        };
        open(dir.path(), 0o777);
        for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
            open(&entry.path(), 0o644);
        }
        let mut m = Self {
            port,
            child: None,
            conf: path,
            dir,
        };
        m.launch();
        m
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start mosquitto");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "mosquitto did not start on {}: {}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
        );
    }

    /// The broker's own folder.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the broker cleanly (SIGTERM: it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "STOP");
        }
    }

    /// Thaws a paused broker (SIGCONT).
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "CONT");
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

/// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{name} {pid} failed");
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
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
        Self::connect_as(port, filters, &format!("test-sub-{}", free_port()), true)
    }

    /// Like [`connect`](Self::connect) with a fixed client id; with `clean_session = false` the
    /// broker keeps the subscription and queues QoS 1 messages while the subscriber is away
    /// (it reconnects by itself), across broker restarts with persistence.
    pub fn connect_as(port: u16, filters: &[&str], id: &str, clean_session: bool) -> Self {
        Self::connect_with(port, filters, id, clean_session, None)
    }

    /// Like [`connect_as`](Self::connect_as), logging in with a user name and password.
    pub fn connect_with(
        port: u16,
        filters: &[&str],
        id: &str,
        clean_session: bool,
        credentials: Option<(&str, &str)>,
    ) -> Self {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(clean_session);
        if let Some((user, password)) = credentials {
            opts.set_credentials(user, password);
        }
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

    /// Every message received so far.
    pub fn all(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Asserts every message received so far is valid against the schema of its topic.
    pub fn assert_payloads_valid(&self) {
        assert_payloads_valid(&self.all());
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

/// The schema file (under docs/schema) for a topic, and whether its payload is plain text.
fn schema_for(topic: &str) -> Option<(&'static str, bool)> {
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        [_, "events", _, _] => Some(("event.schema.json", false)),
        [_, "reviews", _, _] => Some(("review.schema.json", false)),
        [_, "cameras", _, "status"] => Some(("camera-status.schema.json", false)),
        [_, "cameras", _, "zones", _, "state"] => Some(("zone-state.schema.json", true)),
        [_, "stats"] => Some(("stats.schema.json", false)),
        [_, "nodes", _, "available"] => Some(("available.schema.json", true)),
        [_, "nodes", _, "errors"] => Some(("command-error.schema.json", false)),
        _ => None,
    }
}

/// Asserts every message is valid against the schema of its topic (docs/schema/); a topic
/// without a schema fails too, so a new payload cannot go undocumented.
pub fn assert_payloads_valid(messages: &[Received]) {
    let mut validators = std::collections::HashMap::new();
    // Commands are what the tests send (some malformed on purpose), not what the node publishes.
    let is_command = |t: &str| t.ends_with("/set") || t.ends_with("/reload");
    for m in messages.iter().filter(|m| !is_command(&m.topic)) {
        let (file, text) = schema_for(&m.topic)
            .unwrap_or_else(|| panic!("no schema for topic {} (add one in docs/schema)", m.topic));
        let v = validators.entry(file).or_insert_with(|| {
            let schema: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(root().join("docs/schema").join(file)).unwrap(),
            )
            .unwrap();
            jsonschema::validator_for(&schema).unwrap()
        });
        let value = if text {
            serde_json::Value::String(m.text())
        } else {
            m.json()
        };
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {value:#}\n{errors:#?}", m.topic);
    }
}

/// A `streetwatch run` process, killed on drop.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `streetwatch run --config CONFIG` with extra environment variables.
    pub fn start(config: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let child = Command::new(binary())
            .current_dir(root())
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Kills it without warning (SIGKILL).
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops it (SIGTERM) and asserts it exits 0.
    pub fn stop(&mut self) {
        signal(self.child.id(), "TERM");
        let code = self.child.wait().unwrap();
        assert!(
            code.success(),
            "the daemon exited with {code}:\n{}",
            self.log_text()
        );
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory, KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(event_id, seq)` of every message in a ledger, with its payload.
pub fn ledger_messages(
    storage: &std::path::Path,
) -> std::collections::BTreeMap<(String, u64), String> {
    let db = rusqlite::Connection::open(storage.join("ledger.sqlite")).unwrap();
    let mut stmt = db
        .prepare("SELECT event_id, seq, payload FROM messages")
        .unwrap();
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Messages waiting in a ledger's outbox.
pub fn outbox_backlog(storage: &std::path::Path) -> u64 {
    let db = rusqlite::Connection::open(storage.join("ledger.sqlite")).unwrap();
    db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap()
}

/// Event messages received, as `(event_id, seq)` in arrival order with payloads.
pub fn received_events(messages: &[Received]) -> Vec<((String, u64), serde_json::Value)> {
    messages
        .iter()
        // Not the commands (`…/review/set`) a test published there.
        .filter(|m| m.topic.contains("/events/") && !m.topic.ends_with("/set"))
        .map(|m| {
            let j = m.json();
            (
                (
                    j["event_id"].as_str().unwrap().to_string(),
                    j["seq"].as_u64().unwrap(),
                ),
                j,
            )
        })
        .collect()
}

/// Asserts at-least-once delivery: every message in the ledger was received, nothing else was,
/// a message received twice is the same message both times, and within each event the first
/// arrivals are in `seq` order. Returns (distinct, duplicates).
pub fn assert_delivered(storage: &std::path::Path, received: &[Received]) -> (usize, usize) {
    let sent = ledger_messages(storage);
    let got = received_events(received);
    let mut first: std::collections::BTreeMap<(String, u64), serde_json::Value> =
        std::collections::BTreeMap::new();
    let mut order: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
    let mut duplicates = 0;
    for (key, payload) in &got {
        match first.get(key) {
            Some(p) => {
                assert_eq!(
                    p, payload,
                    "a duplicate of {key:?} differs from the first copy"
                );
                duplicates += 1;
            }
            None => {
                first.insert(key.clone(), payload.clone());
                order.entry(key.0.clone()).or_default().push(key.1);
            }
        }
    }
    let sent_keys: Vec<&(String, u64)> = sent.keys().collect();
    let got_keys: Vec<&(String, u64)> = first.keys().collect();
    let missing: Vec<_> = sent_keys
        .iter()
        .filter(|k| !first.contains_key(**k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} message(s) in the ledger never arrived: {missing:?}",
        missing.len()
    );
    assert_eq!(
        got_keys, sent_keys,
        "received messages the ledger does not have"
    );
    for (key, payload) in &first {
        let recorded: serde_json::Value = serde_json::from_str(&sent[key]).unwrap();
        assert_eq!(
            &recorded, payload,
            "{key:?} arrived different from the ledger's copy"
        );
    }
    for (event, seqs) in &order {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "event {event}: first arrivals out of order: {seqs:?}"
        );
    }
    (first.len(), duplicates)
}

/// The one camera most daemon tests run: `clip` (a scenario street) with a no-parking strip
/// over its lower paving, storing in `data/` beside the config.
pub struct StreetCamera<'a> {
    /// Lines of the `[mqtt]` table (`url = "…"`, credentials, TLS files).
    pub mqtt: &'a str,
    /// More tables before the camera (`[incidents]`, `[evidence]`, …).
    pub sections: &'a str,
    /// Camera id.
    pub id: &'a str,
    /// The clip it watches.
    pub clip: &'a std::path::Path,
    /// File pace (1 = real time, as a live camera).
    pub pace: f64,
    /// More lines of the camera table (`repeat = true`, …).
    pub camera: &'a str,
    /// The strip's dwell.
    pub dwell: f64,
    /// More zones, as `[[cameras.zones]]` tables.
    pub zones: &'a str,
}

impl StreetCamera<'_> {
    /// Writes the config to `path`.
    pub fn write(&self, path: &std::path::Path) {
        let text = format!(
            r#"[mqtt]
{mqtt}
[storage]
dir = "data"
{sections}
[[cameras]]
id = "{id}"
url = "{clip}"
detect_every_seconds = 1.0
pace = {pace:?}
{camera}
  [[cameras.zones]]
  id = "south-strip"
  kind = "no_parking"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = {dwell:?}
{zones}"#,
            mqtt = self.mqtt,
            sections = self.sections,
            id = self.id,
            clip = self.clip.display(),
            pace = self.pace,
            camera = self.camera,
            dwell = self.dwell,
            zones = self.zones,
        );
        std::fs::write(path, text).unwrap();
    }
}

/// `curl` an URL: (status, body). `body` is sent with `method` when given.
pub fn curl(method: &str, url: &str, headers: &[&str], body: Option<&[u8]>) -> (u16, Vec<u8>) {
    let (status, _, body) = curl_full(method, url, headers, body);
    (status, body)
}

/// `curl` an URL: (status, response headers, body).
pub fn curl_full(
    method: &str,
    url: &str,
    headers: &[&str],
    body: Option<&[u8]>,
) -> (u16, String, Vec<u8>) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let head = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-g", "--path-as-is", "-X", method, "-o"])
        .arg(out.path())
        .arg("-D")
        .arg(head.path())
        .args(["-w", "%{http_code}"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let input = tempfile::NamedTempFile::new().unwrap();
    if let Some(b) = body {
        std::fs::write(input.path(), b).unwrap();
        cmd.arg("--data-binary")
            .arg(format!("@{}", input.path().display()));
    }
    let o = cmd.arg(url).output().expect("curl (Debian package curl)");
    let status = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        status,
        std::fs::read_to_string(head.path()).unwrap_or_default(),
        std::fs::read(out.path()).unwrap_or_default(),
    )
}

/// Adds a console account with `streetwatch user add` (password through the environment).
pub fn add_user(config: &std::path::Path, name: &str, role: &str, grids: &[&str], password: &str) {
    let mut cmd = Command::new(binary());
    cmd.current_dir(root())
        .args(["user", "--config"])
        .arg(config)
        .args(["add", name, "--role", role])
        .env("STREETWATCH_PASSWORD", password);
    for g in grids {
        cmd.args(["--grid", g]);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A new API token for an account (`streetwatch user token`).
pub fn user_token(config: &std::path::Path, name: &str) -> String {
    let o = Command::new(binary())
        .current_dir(root())
        .args(["user", "--config"])
        .arg(config)
        .args(["token", name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Publishes one message with QoS 1 (a command, as the command center or a platform sends it)
/// and waits for the broker's acknowledgement.
pub fn publish(port: u16, topic: &str, payload: &str) {
    let mut opts = MqttOptions::new(format!("test-pub-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .unwrap();
    for ev in conn.iter() {
        if let Ok(Event::Incoming(Packet::PubAck(_))) = ev {
            break;
        }
    }
    let _ = client.disconnect();
}

/// Runs the console's browser script (`tests/console/e2e.mjs`, headless Chromium driven by
/// playwright-core) with `args`; returns the JSON line it printed.
pub fn browser(args: &[&str]) -> serde_json::Value {
    let script = root().join("tests/console/e2e.mjs");
    assert!(
        root()
            .join("tests/console/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `make setup` (npm ci in tests/console)"
    );
    let o = Command::new("node")
        .arg(&script)
        .args(args)
        .output()
        .expect("node (Node.js) runs the browser script");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "browser script {args:?} failed ({}):\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}
