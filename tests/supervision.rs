//! A camera whose analysis panics (a fault injected at its 20th sampled frame with
//! `STREETWATCH_FAULT_PANIC`), or whose decoder hangs (`STREETWATCH_FAULT_STALL`: the decoding
//! thread stops giving frames, as one stuck inside a call does), is caught by the node: it is
//! reported `offline` with the reason, started again after a second, and its open event is
//! carried on (the same event, next `seq`), while the other camera of the node never stops. Its
//! stats count the restart.

mod support;

use std::time::Duration;

use serde_json::Value;
use streetwatch::compose;
use support::{Daemon, Received};

fn status(r: &[Received], camera: &str) -> Vec<Value> {
    r.iter()
        .filter(|m| m.topic == format!("streetwatch/cameras/{camera}/status"))
        .map(Received::json)
        .collect()
}

fn events(r: &[Received], camera: &str) -> Vec<Value> {
    r.iter()
        .filter(|m| m.topic.starts_with("streetwatch/events/") && m.topic.ends_with(camera))
        .map(Received::json)
        .collect()
}

/// Two cameras on the parking street with car-1 parked from the first frame to the last, at
/// real time as live cameras; returns the broker, a subscriber and the config.
fn two_cameras(
    name: &str,
    camera: &str,
) -> (
    std::path::PathBuf,
    support::Mosquitto,
    support::Subscriber,
    std::path::PathBuf,
) {
    let dir = support::artifacts_dir(name);
    // The parking street with car-1 parked from the first frame to the last.
    let mut sc =
        compose::load_scenario(&support::root().join("configs/scenarios/parking-basic.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
    sc.name = "parked".into();
    sc.duration_seconds = 90.0;
    sc.lighting.clear();
    sc.objects.retain(|o| o.id == "car-1");
    sc.objects[0].path = vec![[0.0, 0.33, 0.86]];
    let clip = dir.join("parked.mp4");
    compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));

    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let config = dir.join("config.toml");
    support::StreetCamera {
        mqtt: &format!("url = \"{}\"\nstats_every_seconds = 2", broker.url()),
        sections: "[incidents]\nend_after_seconds = 10\nupdate_every_seconds = 4",
        id: "cam-a",
        clip: &clip,
        // Real time, as live cameras.
        pace: 1.0,
        camera,
        dwell: 6.0,
        zones: "",
    }
    .write(&config);
    // A second camera on the same street.
    let text = std::fs::read_to_string(&config).unwrap();
    let second = text[text.find("[[cameras]]").unwrap()..].replace("cam-a", "cam-b");
    std::fs::write(&config, format!("{text}\n{second}")).unwrap();

    (dir, broker, sub, config)
}

#[test]
fn a_panicking_camera_is_restarted_with_its_event_and_the_others_run_on() {
    restarted_after(
        "supervision",
        "STREETWATCH_FAULT_PANIC",
        "",
        "injected fault",
    );
}

#[test]
fn a_stalled_decoder_is_noticed_and_its_camera_restarted() {
    // The decoder hangs at frame 20 (20 s in); 5 s without a frame while online is a stall.
    restarted_after(
        "supervision-stall",
        "STREETWATCH_FAULT_STALL",
        "stall_seconds = 5",
        "no frame for 5 s while online",
    );
}

/// Runs two cameras with `fault` armed on cam-a's 20th frame and checks that cam-a is reported
/// offline with `reason`, restarted with its event carried on, and that cam-b never noticed.
fn restarted_after(name: &str, fault: &str, camera: &str, reason: &str) {
    let (dir, _broker, sub, config) = two_cameras(name, camera);
    let daemon = Daemon::start(&config, &dir.join("daemon.log"), &[(fault, "cam-a:20")]);
    let wait = |what: &str, pred: &dyn Fn(&[Received]) -> bool| {
        assert!(
            sub.wait_until(Duration::from_secs(90), pred),
            "{what}:\n{}",
            daemon.log_text()
        );
    };
    wait("cam-a offline with the reason", &|r| {
        status(r, "cam-a").iter().any(|s| {
            s["state"] == "offline"
                && s["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(reason) && e.contains("restarting"))
        })
    });
    let at_failure = sub.all().len();
    wait(
        "cam-a online again, its event carried on, cam-a's restart counted",
        &|r| {
            let after = &r[at_failure.min(r.len())..];
            let online = status(after, "cam-a")
                .iter()
                .any(|s| s["state"] == "online");
            let carried = !events(after, "cam-a").is_empty();
            let counted = after
                .iter()
                .filter(|m| m.topic == "streetwatch/stats")
                .any(|m| m.json()["cameras"]["cam-a"]["restarts"] == 1);
            online && carried && counted
        },
    );
    // cam-b keeps sending while cam-a restarts.
    wait("cam-b's updates after cam-a failed", &|r| {
        let after = &r[at_failure.min(r.len())..];
        events(after, "cam-b").iter().any(|m| m["type"] == "update")
    });
    let received = sub.all();
    support::assert_payloads_valid(&received);

    // One event per camera; cam-a's continues under its id with the next seq.
    let a = events(&received, "cam-a");
    let news: Vec<&Value> = a.iter().filter(|m| m["type"] == "new").collect();
    assert_eq!(news.len(), 1, "cam-a raised its car twice: {a:#?}");
    let id = &news[0]["event_id"];
    let seqs: Vec<u64> = a
        .iter()
        .filter(|m| &m["event_id"] == id)
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "cam-a's event seqs {seqs:?}"
    );
    let after = &received[at_failure..];
    assert!(
        events(after, "cam-a").iter().all(|m| &m["event_id"] == id),
        "cam-a's event after the restart is the same one"
    );
    let b = events(&received, "cam-b");
    assert_eq!(b.iter().filter(|m| m["type"] == "new").count(), 1);
    assert!(
        status(&received, "cam-b")
            .iter()
            .all(|s| s["state"] != "offline" || s["error"].is_null()),
        "cam-b was never failed"
    );
    assert!(daemon.log_text().contains("restarting in 1 s"));
}
