//! Delivery that loses nothing (issue 6), against a real mosquitto on loopback. Each test counts
//! the messages the daemon sent (its ledger) against the messages a separate subscriber
//! received, and asserts they are the same (at least once: a duplicate is an exact copy, and
//! per event the first arrivals are in `seq` order).
//!
//! - the broker stopped for 60 s while events happen: all arrive after it returns;
//! - the daemon killed (SIGKILL) while messages are unacknowledged (the broker frozen): after a
//!   restart everything arrives;
//! - wrong credentials: a clear error, retries with backoff, no crash, the password never in the
//!   log; with the right password the whole backlog arrives;
//! - a broker that accepts but never acknowledges: the backlog grows on disk, at most the send
//!   window is in flight, the stats say so, memory stays bounded.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{Daemon, Received};

/// A camera that keeps producing events: parking-basic looped at 4x, a 6 s dwell and an
/// `update` every 2 s of video, about one message a second.
fn setup(test: &str, mqtt: &str) -> (PathBuf, PathBuf) {
    let dir = support::artifacts_dir(test);
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let config = dir.join("config.toml");
    support::StreetCamera {
        mqtt: &format!("{mqtt}\nstats_every_seconds = 1"),
        sections: "[incidents]\nend_after_seconds = 5\nupdate_every_seconds = 2",
        id: "cam-a",
        clip: &clip,
        pace: 4.0,
        camera: "repeat = true",
        dwell: 6.0,
        zones: "",
    }
    .write(&config);
    (dir.clone(), config)
}

fn event_count(sub: &support::Subscriber) -> usize {
    sub.on("streetwatch/events/").len()
}

/// Waits until the subscriber has every message of the ledger (or the timeout), then asserts it.
fn assert_all_arrive(storage: &Path, sub: &support::Subscriber) -> (usize, usize) {
    let sent = support::ledger_messages(storage).len();
    sub.wait_until(Duration::from_secs(40), |r| {
        let got: std::collections::BTreeSet<_> = support::received_events(r)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        got.len() >= sent
    });
    let all = sub.all();
    support::assert_payloads_valid(&all);
    support::assert_delivered(storage, &all)
}

#[test]
fn a_broker_down_for_a_minute_loses_no_event() {
    let broker = support::Mosquitto::start_with(|port, dir| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.display()
        )
    });
    let (dir, config) = setup("mqtt-broker-down", &format!("url = \"{}\"", broker.url()));
    let mut broker = broker;
    // A persistent session: the broker keeps what arrives for the subscriber across its restart.
    let sub =
        support::Subscriber::connect_as(broker.port, &["streetwatch/#"], "test-receiver", false);
    let mut daemon = Daemon::start(&config, &dir.join("daemon.log"), &[]);
    assert!(
        sub.wait_until(Duration::from_secs(90), |r| support::received_events(r)
            .len()
            >= 3),
        "no events before the outage:\n{}",
        daemon.log_text()
    );
    let storage = dir.join("data");
    let before = support::ledger_messages(&storage).len();
    broker.stop();
    thread::sleep(Duration::from_secs(60));
    let during = support::ledger_messages(&storage).len() - before;
    assert!(
        during >= 10,
        "only {during} messages happened while the broker was down"
    );
    let waiting = support::outbox_backlog(&storage);
    assert!(
        waiting >= during as u64 / 2,
        "outbox backlog {waiting} while {during} were recorded"
    );
    broker.restart();
    thread::sleep(Duration::from_secs(10));
    daemon.stop();
    let (distinct, duplicates) = assert_all_arrive(&storage, &sub);
    assert_eq!(support::outbox_backlog(&storage), 0, "the outbox drained");
    eprintln!(
        "broker down 60 s: {during} messages recorded during the outage; {distinct} delivered, {duplicates} duplicate(s)"
    );
}

#[test]
fn a_daemon_killed_with_messages_unacknowledged_delivers_them_after_restart() {
    let broker = support::Mosquitto::start();
    let (dir, config) = setup("mqtt-kill-unacked", &format!("url = \"{}\"", broker.url()));
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let mut first = Daemon::start(&config, &dir.join("run1.log"), &[]);
    assert!(
        sub.wait_until(Duration::from_secs(90), |r| support::received_events(r)
            .len()
            >= 2),
        "no events from the first run:\n{}",
        first.log_text()
    );
    // Frozen, the broker takes publishes into its socket but acknowledges none.
    broker.pause();
    thread::sleep(Duration::from_secs(5));
    let storage = dir.join("data");
    let unacked = support::outbox_backlog(&storage);
    first.kill();
    broker.resume();
    assert!(
        unacked >= 2,
        "only {unacked} message(s) were waiting at the kill"
    );
    let mut second = Daemon::start(&config, &dir.join("run2.log"), &[]);
    thread::sleep(Duration::from_secs(8));
    second.stop();
    let (distinct, duplicates) = assert_all_arrive(&storage, &sub);
    assert_eq!(support::outbox_backlog(&storage), 0);
    eprintln!(
        "killed with {unacked} unacknowledged: {distinct} delivered, {duplicates} duplicate(s)"
    );
}

#[test]
fn wrong_credentials_are_explained_retried_and_never_logged() {
    const RIGHT: &str = "Str33t-Pa55-right";
    const WRONG: &str = "Wr0ng-Pa55-x9q";
    let broker = support::Mosquitto::start_with(|port, dir| {
        let passwd = dir.join("passwd");
        let ok = std::process::Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args(["streetwatch", RIGHT])
            .status()
            .expect("mosquitto_passwd (Debian package mosquitto)")
            .success();
        assert!(ok);
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwd.display()
        )
    });
    let (dir, config) = setup(
        "mqtt-credentials",
        &format!(
            "url = \"{}\"\nusername = \"streetwatch\"\npassword_env = \"SW_TEST_MQTT_PASSWORD\"",
            broker.url()
        ),
    );
    let sub = support::Subscriber::connect_with(
        broker.port,
        &["streetwatch/#"],
        "test-receiver",
        true,
        Some(("streetwatch", RIGHT)),
    );
    let env = [("SW_TEST_MQTT_PASSWORD", WRONG)];
    let mut refused = Daemon::start(&config, &dir.join("wrong.log"), &env);
    thread::sleep(Duration::from_secs(20));
    assert!(
        refused.running(),
        "the daemon died:\n{}",
        refused.log_text()
    );
    let log = refused.log_text();
    let attempts = log.matches("the broker refused the connection").count();
    assert!(
        (3..=8).contains(&attempts),
        "{attempts} refused attempts in 20 s: expected retries with a growing backoff\n{log}"
    );
    assert!(
        log.contains("check [mqtt] username and password_file / password_env"),
        "{log}"
    );
    assert!(!log.contains(WRONG), "the password is in the log");
    let storage = dir.join("data");
    let waiting = support::outbox_backlog(&storage);
    assert!(
        waiting > 0,
        "events happened while refused and wait in the outbox"
    );
    refused.stop();
    assert_eq!(event_count(&sub), 0);

    // The right password, from a file this time: the backlog and new events arrive.
    let secret = dir.join("mqtt-password");
    std::fs::write(&secret, format!("{RIGHT}\n")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "password_env = \"SW_TEST_MQTT_PASSWORD\"",
        &format!("password_file = \"{}\"", secret.display()),
    );
    std::fs::write(&config, text).unwrap();
    let mut accepted = Daemon::start(&config, &dir.join("right.log"), &[]);
    thread::sleep(Duration::from_secs(8));
    accepted.stop();
    assert!(
        !accepted.log_text().contains(RIGHT),
        "the password is in the log"
    );
    let (distinct, _) = assert_all_arrive(&storage, &sub);
    assert!(distinct as u64 >= waiting);
}

/// A broker that accepts connections and subscriptions, answers pings, records what is
/// published and never acknowledges anything: a fault mosquitto cannot be made to show.
struct SilentBroker {
    port: u16,
    published: Arc<Mutex<Vec<Received>>>,
}

impl SilentBroker {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let published = Arc::new(Mutex::new(Vec::new()));
        let sink = published.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                thread::spawn(move || serve_silently(stream, sink));
            }
        });
        Self { port, published }
    }
}

fn serve_silently(mut s: TcpStream, sink: Arc<Mutex<Vec<Received>>>) {
    let mut byte = [0u8; 1];
    loop {
        if s.read_exact(&mut byte).is_err() {
            return;
        }
        let kind = byte[0] >> 4;
        let flags = byte[0] & 0x0f;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            if s.read_exact(&mut byte).is_err() {
                return;
            }
            len |= ((byte[0] & 0x7f) as usize) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let reply: &[u8] = match kind {
            1 => &[0x20, 0x02, 0x00, 0x00],
            12 => &[0xd0, 0x00],
            3 => {
                let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                let topic = String::from_utf8_lossy(&body[2..2 + topic_len]).into_owned();
                let qos = (flags >> 1) & 3;
                let start = 2 + topic_len + if qos > 0 { 2 } else { 0 };
                sink.lock().unwrap().push(Received {
                    topic,
                    payload: body[start..].to_vec(),
                    retain: flags & 1 == 1,
                    at: Instant::now(),
                });
                &[]
            }
            14 => return,
            _ => &[],
        };
        if !reply.is_empty() && s.write_all(reply).is_err() {
            return;
        }
    }
}

#[test]
fn a_broker_that_never_acknowledges_grows_the_backlog_not_the_memory() {
    let broker = SilentBroker::start();
    let (dir, config) = setup(
        "mqtt-never-acks",
        &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
    );
    let mut daemon = Daemon::start(&config, &dir.join("daemon.log"), &[]);
    let stats = |p: &Arc<Mutex<Vec<Received>>>| -> Vec<serde_json::Value> {
        p.lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic == "streetwatch/stats")
            .map(|m| m.json())
            .collect()
    };
    thread::sleep(Duration::from_secs(12));
    let rss_early = daemon.rss_kib();
    let early = stats(&broker.published)
        .last()
        .cloned()
        .expect("stats are published");
    thread::sleep(Duration::from_secs(30));
    let rss_late = daemon.rss_kib();
    let late = stats(&broker.published).last().cloned().unwrap();
    assert!(daemon.running(), "{}", daemon.log_text());

    let published = broker.published.lock().unwrap().clone();
    support::assert_payloads_valid(&published);
    let in_flight = published
        .iter()
        .filter(|m| m.topic.contains("/events/"))
        .count();
    let backlog = |v: &serde_json::Value| v["outbox"]["backlog"].as_u64().unwrap();
    assert!(
        in_flight <= streetwatch::mqtt::WINDOW as usize,
        "{in_flight} event messages sent without acknowledgement (window {})",
        streetwatch::mqtt::WINDOW
    );
    assert!(
        backlog(&late) > backlog(&early),
        "backlog {} then {}",
        backlog(&early),
        backlog(&late)
    );
    assert!(backlog(&late) > in_flight as u64, "the rest waits on disk");
    assert_eq!(late["outbox"]["connected"], true);
    assert!(
        late["outbox"]["oldest_age_seconds"].as_f64().unwrap() > 20.0,
        "{late}"
    );
    let storage = dir.join("data");
    assert_eq!(
        support::outbox_backlog(&storage) as usize,
        support::ledger_messages(&storage).len(),
        "nothing left the outbox without an acknowledgement"
    );
    // Bounded: the backlog is on disk; memory after 30 more seconds of events stays put.
    let growth_mib = rss_late.saturating_sub(rss_early) as f64 / 1024.0;
    eprintln!(
        "never-acking broker: backlog {} -> {}, {in_flight} in flight, RSS {} -> {} KiB",
        backlog(&early),
        backlog(&late),
        rss_early,
        rss_late
    );
    assert!(
        growth_mib < 32.0,
        "RSS grew {growth_mib:.1} MiB while the backlog grew"
    );
    daemon.stop();
}

#[test]
fn a_ledger_locked_past_its_timeout_holds_messages_back_and_loses_none() {
    let broker = support::Mosquitto::start();
    let (dir, config) = setup("ledger-locked", &format!("url = \"{}\"", broker.url()));
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let mut daemon = Daemon::start(&config, &dir.join("daemon.log"), &[]);
    let status = "streetwatch/cameras/cam-a/status";
    assert!(
        sub.wait_until(Duration::from_secs(90), |r| support::received_events(r)
            .len()
            >= 2),
        "no events before the lock:\n{}",
        daemon.log_text()
    );
    // Another process holds the ledger's write lock longer than the daemon's busy timeout
    // (10 s): a real SQLITE_BUSY, as a stuck backup or a slow disk gives.
    let storage = dir.join("data");
    let locker = rusqlite::Connection::open(storage.join("ledger.sqlite")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked_at = Instant::now();
    let said_so = sub.wait_until(Duration::from_secs(60), |r| {
        r.iter().filter(|m| m.topic == status).any(|m| {
            m.json()["storage_error"]
                .as_str()
                .is_some_and(|e| e.contains("wait to be written"))
        })
    });
    // Held a little longer, so messages pile up behind the first refusal.
    thread::sleep(Duration::from_secs(8));
    locker.execute_batch("ROLLBACK").unwrap();
    let held = locked_at.elapsed();
    drop(locker);
    assert!(
        said_so,
        "no storage_error on {status}:\n{}",
        daemon.log_text()
    );
    // Once written, the status clears.
    let cleared = sub.wait_until(Duration::from_secs(60), |r| {
        r.iter()
            .rev()
            .find(|m| m.topic == status)
            .is_some_and(|m| m.json()["storage_error"].is_null())
    });
    assert!(
        cleared,
        "storage_error never cleared:\n{}",
        daemon.log_text()
    );
    thread::sleep(Duration::from_secs(4));
    daemon.stop();
    // Nothing dropped: every event's messages are in the ledger without a gap in seq, and the
    // subscriber has exactly the ledger's messages.
    let mut seqs: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (id, seq) in support::ledger_messages(&storage).into_keys() {
        seqs.entry(id).or_default().push(seq);
    }
    for (id, s) in &seqs {
        assert!(
            s.windows(2).all(|w| w[1] == w[0] + 1),
            "event {id}: a message is missing from the ledger: seqs {s:?}"
        );
    }
    let (distinct, duplicates) = assert_all_arrive(&storage, &sub);
    let log = daemon.log_text();
    assert!(log.contains("the ledger takes messages again"), "{log}");
    eprintln!(
        "ledger locked {:.0} s: {distinct} messages delivered ({duplicates} duplicate(s)), {} events, none missing",
        held.as_secs_f64(),
        seqs.len()
    );
}
