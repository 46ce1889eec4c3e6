//! A daemon killed (SIGKILL) with an event open leaves no event open forever, and reports a car
//! that stayed parked through the restart once, not twice:
//!
//! 1. run 1 on a clip where a car parks and stays: `new`, then SIGKILL;
//! 2. run 2 on the same place with the car still there (the clip picks up where the street
//!    was): the same event continues, an `update` with seq one past the last message, the same
//!    `start_time`, fresh evidence; the ledger notes `resumed`; then SIGKILL again;
//! 3. run 3 on the street with the car gone: the event gets its `end`, reason `interrupted`, at
//!    its last sighting, seq one past the last message; after SIGTERM the ledger has no incident
//!    without an end, and no other event was ever raised.

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

/// The street of parking-basic with only car-1, parked at its spot along `path`.
fn render(
    dir: &std::path::Path,
    name: &str,
    path: Option<Vec<[f64; 3]>>,
    seconds: f64,
) -> std::path::PathBuf {
    let mut sc =
        compose::load_scenario(&support::root().join("configs/scenarios/parking-basic.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
    sc.name = name.into();
    sc.duration_seconds = seconds;
    sc.lighting.clear();
    sc.objects.retain(|o| o.id == "car-1");
    match path {
        Some(p) => sc.objects[0].path = p,
        None => sc.objects.clear(),
    }
    let clip = dir.join(format!("{name}.mp4"));
    compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    clip
}

fn write_config(config: &std::path::Path, broker: &str, clip: &std::path::Path) {
    support::StreetCamera {
        mqtt: &format!("url = \"{broker}\""),
        sections: "[incidents]\nend_after_seconds = 10",
        id: "cam-restart",
        clip,
        // Real time, as a live camera: stream time follows the wall clock across restarts.
        pace: 1.0,
        camera: "",
        dwell: 6.0,
        zones: "",
    }
    .write(config);
}

fn kill(d: &mut Daemon) {
    d.0.kill().unwrap();
    d.0.wait().unwrap();
}

#[test]
fn an_event_open_at_a_kill_continues_if_in_place_and_ends_with_a_reason_if_not() {
    let dir = support::artifacts_dir("restart");
    let parks = render(
        &dir,
        "parks",
        Some(vec![
            [0.0, -0.25, 0.86],
            [3.0, 0.33, 0.86],
            [120.0, 0.33, 0.86],
        ]),
        120.0,
    );
    let still_there = render(&dir, "still-there", Some(vec![[0.0, 0.33, 0.86]]), 120.0);
    let gone = render(&dir, "gone", None, 120.0);
    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let config = dir.join("config.toml");

    // Run 1: the car parks; after its `new`, the daemon is killed without warning.
    write_config(&config, &broker.url(), &parks);
    let mut first = start(&config, &dir.join("run1.log"));
    assert!(
        sub.wait_until(Duration::from_secs(90), |r| support::received_events(r)
            .iter()
            .any(|(_, m)| m["type"] == "new")),
        "no event from the first run"
    );
    kill(&mut first);
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

    // Run 2: the car is still there; the same event continues.
    write_config(&config, &broker.url(), &still_there);
    let mut second = start(&config, &dir.join("run2.log"));
    let seq_after = |seq: u64| {
        let id = id.clone();
        move |r: &[support::Received]| {
            support::received_events(r)
                .iter()
                .any(|(_, j)| j["event_id"] == id && j["seq"].as_u64() == Some(seq))
        }
    };
    let resumed_seq = last["seq"].as_u64().unwrap() + 1;
    assert!(
        sub.wait_until(Duration::from_secs(60), seq_after(resumed_seq)),
        "the event was not continued after the restart:\n{:#?}",
        events(&sub)
    );
    kill(&mut second);
    let resumed = events(&sub)
        .into_iter()
        .find(|m| m["event_id"] == id && m["seq"] == resumed_seq)
        .unwrap();
    assert_eq!(resumed["type"], "update");
    assert_eq!(resumed["start_time"], open["start_time"]);
    assert!(support::time(&resumed["last_seen"]) > support::time(&last["last_seen"]));
    assert_eq!(
        resumed["evidence"].as_array().unwrap().len(),
        2,
        "fresh evidence of the car still there"
    );
    assert!(
        resumed["dwell_seconds"].as_f64() > last["dwell_seconds"].as_f64(),
        "the dwell counts from the original start"
    );
    let latest = events(&sub)
        .into_iter()
        .filter(|m| m["event_id"] == id)
        .max_by_key(|m| m["seq"].as_u64())
        .unwrap();
    assert_ne!(latest["type"], "end");

    // Run 3: the car is gone; the event ends as interrupted at its last sighting.
    write_config(&config, &broker.url(), &gone);
    let third = start(&config, &dir.join("run3.log"));
    let end_seq = latest["seq"].as_u64().unwrap() + 1;
    assert!(
        sub.wait_until(Duration::from_secs(60), seq_after(end_seq)),
        "the open event was not ended after the second restart"
    );
    let end = events(&sub)
        .into_iter()
        .find(|m| m["event_id"] == id && m["seq"] == end_seq)
        .unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["end_reason"], "interrupted");
    assert_eq!(end["end_time"], latest["last_seen"]);
    assert_eq!(end["start_time"], open["start_time"]);

    // A clean stop; one event in all, ended; the ledger has no incident without an end and
    // tells the story.
    let status = Command::new("kill")
        .args(["-TERM", &third.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut third = third;
    let code = third.0.wait().unwrap();
    assert!(code.success(), "the third run exited with {code}");
    let ids: std::collections::BTreeSet<String> = events(&sub)
        .iter()
        .map(|m| m["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "the parked car is one event: {ids:?}");
    let ledger = streetwatch::ledger::Ledger::open(&dir.join("data")).unwrap();
    assert_eq!(ledger.open_count().unwrap(), 0);
    let states: Vec<String> = ledger
        .state_changes(id.as_str().unwrap())
        .unwrap()
        .into_iter()
        .map(|(_, s, _)| s)
        .collect();
    assert_eq!(states, ["new", "resumed", "end"]);
    sub.assert_payloads_valid();
}
