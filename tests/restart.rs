//! A daemon killed (SIGKILL) while an event is open leaves no event open forever: when the
//! camera starts again, the event gets an `end` with reason `interrupted` at its last sighting
//! (seq one past the last message sent), and the ledger has no incident without an end.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use streetwatch::compose;

/// Kills the daemon if the test fails half-way.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &std::path::Path, log: &std::path::Path) -> Daemon {
    Daemon(
        Command::new(support::binary())
            .current_dir(support::root())
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn events(sub: &support::Subscriber) -> Vec<Value> {
    sub.on("streetwatch/events/")
        .iter()
        .map(|r| r.json())
        .collect()
}

#[test]
fn an_event_left_open_by_a_killed_daemon_is_ended_on_restart() {
    let dir = support::artifacts_dir("restart");
    let sc = compose::load_scenario(&support::root().join("configs/scenarios/parking-basic.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let clip = dir.join("parking-basic.mp4");
    compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/events/#"]);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[mqtt]
url = "{url}"
[storage]
dir = "data"
[incidents]
end_after_seconds = 10
[[cameras]]
id = "cam-restart"
url = "{clip}"
detect_every_seconds = 1.0
pace = 4.0
  [[cameras.zones]]
  id = "south-strip"
  kind = "no_parking"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 15
"#,
            url = broker.url(),
            clip = clip.display()
        ),
    )
    .unwrap();

    // First run: wait for the parked car's `new`, then kill the daemon without warning.
    let mut first = start(&config, &dir.join("first.log"));
    assert!(
        sub.wait_until(Duration::from_secs(90), |r| r
            .iter()
            .any(|m| m.json()["type"] == "new")),
        "no event from the first run"
    );
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let before = events(&sub);
    let open = before.iter().find(|m| m["type"] == "new").unwrap().clone();
    let id = open["event_id"].clone();
    let last = before
        .iter()
        .rfind(|m| m["event_id"] == id)
        .unwrap()
        .clone();
    assert_ne!(
        last["type"], "end",
        "the kill came too late to leave the event open"
    );

    // Second run: the event is ended first thing, as interrupted, at its last sighting.
    let second = start(&config, &dir.join("second.log"));
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| r.iter().any(|m| {
            let j = m.json();
            j["event_id"] == id && j["type"] == "end"
        })),
        "the open event was not ended after the restart"
    );
    let end = events(&sub)
        .into_iter()
        .find(|m| m["event_id"] == id && m["type"] == "end")
        .unwrap();
    assert_eq!(end["end_reason"], "interrupted");
    assert_eq!(end["seq"], last["seq"].as_u64().unwrap() + 1);
    assert_eq!(end["end_time"], last["last_seen"]);
    assert_eq!(end["start_time"], open["start_time"]);

    // A clean stop ends what the second run opened; no incident is left without an end.
    let status = Command::new("kill")
        .args(["-TERM", &second.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut second = second;
    let code = second.0.wait().unwrap();
    assert!(code.success(), "the second run exited with {code}");
    let ledger = rusqlite::Connection::open(dir.join("data/ledger.sqlite")).unwrap();
    let orphans: i64 = ledger
        .query_row(
            "SELECT COUNT(*) FROM incidents WHERE end_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
}
