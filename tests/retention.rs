//! Evidence retention on a clock the test controls, and a full evidence disk.
//!
//! - Retention: a replayed event's photos survive a sweep at 89 days after it ended and are
//!   deleted at 91 (90-day retention); the photos of an event still open are never deleted,
//!   however old; the ledger keeps the record and notes `evidence_deleted`; the report then
//!   says the photo is no longer kept.
//! - Full disk: the daemon writes evidence to a 16 KiB tmpfs (a real ENOSPC, in a private mount
//!   namespace): the event still goes out over MQTT, without photos and with `evidence_missing`
//!   saying why; the camera's retained status carries `storage_error`; the log says it too.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use streetwatch::event::EventMessage;
use streetwatch::evidence::{Annotation, EventFiles, EvidenceStore, Shot};
use streetwatch::geometry::BBox;
use streetwatch::ledger::Ledger;
use streetwatch::retention;

fn config(dir: &Path, extra: &str, url: &str) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    support::StreetCamera {
        mqtt: url,
        sections: &format!("{extra}\n[incidents]\nend_after_seconds = 10"),
        id: "cam-test",
        clip: &dir.join("parking-basic.mp4"),
        pace: 4.0,
        camera: "",
        dwell: 15.0,
        zones: "",
    }
    .write(&config);
    config
}

fn exists(path: &str) -> bool {
    support::root().join(path).exists()
}

#[test]
fn photos_go_after_the_retention_period_but_never_while_the_event_is_open() {
    let dir = support::artifacts_dir("retention");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let config = config(&dir, "", "");
    let messages = support::replay(&config, "cam-test", &clip, &dir.join("events.jsonl"), false);
    let end = messages
        .iter()
        .find(|m| m["type"] == "end")
        .expect("an event that ended");
    let ended_at = support::time(&end["end_time"]);
    let ended_files: Vec<String> = messages
        .iter()
        .flat_map(|m| m["evidence"].as_array().unwrap().iter())
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(ended_files.len() >= 2);
    assert!(ended_files.iter().all(|p| exists(p)));

    // An event still open, whose photos are a year older than the ended one's.
    let storage = dir.join("data");
    let ledger = Ledger::open(&storage).unwrap();
    let store = EvidenceStore::new(storage.join("evidence"));
    let photo = image::open(support::asset(
        "images/amsterdam_garbage/garbage/mdc_photo_mdc_65dc0a_cdv_photo_001_1465665061856.jpg",
    ))
    .unwrap()
    .to_rgb8();
    let zone = [
        streetwatch::geometry::Point { x: 0.05, y: 0.62 },
        streetwatch::geometry::Point { x: 0.95, y: 0.62 },
        streetwatch::geometry::Point { x: 0.95, y: 0.99 },
    ];
    let mut open: EventMessage = serde_json::from_value(messages[0].clone()).unwrap();
    open.event_id = "01JD0000000000000000000000".into();
    let long_ago = ended_at - chrono::Duration::days(365);
    open.evidence = store
        .save(
            Shot {
                frame: &photo,
                time: "2025-11-23T09:00:00.000+08:00",
            },
            EventFiles {
                camera_id: "cam-test",
                day: "2025-11-23",
                event_id: &open.event_id,
                seq: 0,
            },
            &Annotation {
                zone: &zone,
                bbox: BBox::new(0.1, 0.6, 0.4, 0.9),
                text: "car".into(),
                stamp: "2025-11-23 09:00:00 cam-test".into(),
            },
        )
        .unwrap();
    ledger.record(&open, long_ago, long_ago, None).unwrap();
    let open_files: Vec<String> = open.evidence.iter().map(|e| e.path.clone()).collect();

    let day = chrono::Duration::days(1);
    let retention = day * 90;
    let sweep = |now: DateTime<Utc>| retention::sweep(&ledger, now, retention).unwrap();

    let early = sweep(ended_at + day * 89);
    assert_eq!(early.deleted, 0, "nothing is past 90 days yet");
    assert!(ended_files.iter().chain(&open_files).all(|p| exists(p)));

    let due = sweep(ended_at + day * 91);
    assert_eq!(due.deleted, ended_files.len(), "{due:?}");
    assert!(due.freed_bytes > 10_000);
    assert!(
        ended_files.iter().all(|p| !exists(p)),
        "the ended event's photos are gone"
    );
    assert!(
        open_files.iter().all(|p| exists(p)),
        "the open event's photos stay"
    );

    let again = sweep(ended_at + day * 400);
    assert_eq!(
        again.deleted, 0,
        "the open event's photos stay, however old"
    );
    assert!(open_files.iter().all(|p| exists(p)));

    let event_id = end["event_id"].as_str().unwrap();
    let states: Vec<String> = ledger
        .state_changes(event_id)
        .unwrap()
        .into_iter()
        .map(|(_, s, _)| s)
        .collect();
    assert_eq!(states, ["new", "end", "evidence_deleted"]);

    // The report no longer offers the deleted photo.
    let o = Command::new(support::binary())
        .current_dir(support::root())
        .args([
            "report",
            "--format",
            "json",
            "--since",
            "2026-01-01",
            "--until",
            "2027-01-01",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let spot = &r["hotspots"][0];
    assert_eq!(spot["count"], 1);
    assert!(spot["crop"].is_null(), "{spot}");
}

#[test]
fn a_full_evidence_disk_does_not_stop_events() {
    let dir = support::artifacts_dir("evidence-disk-full");
    support::render_scenario("parking-basic", &dir);
    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(
        broker.port,
        &["streetwatch/events/#", "streetwatch/cameras/+/status"],
    );
    let evidence = dir.join("evidence-volume");
    std::fs::create_dir_all(&evidence).unwrap();
    let config = config(
        &dir,
        &format!("[evidence]\ndir = \"{}\"", evidence.display()),
        &format!("url = \"{}\"", broker.url()),
    );
    // A 16 KiB tmpfs over the evidence folder, in a mount namespace of the daemon's own: the
    // first photo (about 100 KB) hits a real "No space left on device".
    let script = format!(
        "mount -t tmpfs -o size=16k tmpfs '{ev}' && exec '{bin}' run --config '{cfg}'",
        ev = evidence.display(),
        bin = support::binary().display(),
        cfg = config.display()
    );
    let log = dir.join("daemon.log");
    let mut daemon = Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c", &script])
        .current_dir(support::root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux) runs the daemon in its own mount namespace");
    let ended = sub.wait_until(Duration::from_secs(90), |r| {
        r.iter()
            .any(|m| m.topic.starts_with("streetwatch/events/") && m.json()["type"] == "end")
    });
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let code = daemon.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(ended, "no event completed with the disk full; log:\n{text}");
    assert!(
        code.success(),
        "the daemon exited with {code}; log:\n{text}"
    );

    let events: Vec<Value> = sub
        .on("streetwatch/events/")
        .iter()
        .map(|m| m.json())
        .collect();
    sub.assert_payloads_valid();
    let types: Vec<&str> = events.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"new"));
    assert_eq!(types.last(), Some(&"end"));
    for m in &events {
        assert!(m["evidence"].as_array().unwrap().is_empty());
        let why = m["evidence_missing"].as_str().unwrap_or_default();
        assert!(why.contains("No space left on device"), "{m:#}");
    }
    let status: Vec<Value> = sub
        .on("streetwatch/cameras/cam-test/status")
        .iter()
        .map(|m| m.json())
        .collect();
    assert!(
        status.iter().any(|s| s["storage_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left on device"))),
        "{status:#?}"
    );
    assert!(
        text.contains("No space left on device"),
        "the log says why:\n{text}"
    );
    // The ledger (on the main disk) has the whole event.
    let ledger = Ledger::open(&dir.join("data")).unwrap();
    assert_eq!(ledger.open_count().unwrap(), 0);
    assert!(ledger.message_count().unwrap() >= events.len() as u64);
}
