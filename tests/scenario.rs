//! The illegal-parking acceptance scenario, end to end through the real binary.
//!
//! `configs/scenarios/parking-basic.toml` is rendered from real street photos: car-1 rests 30 s
//! inside a no-parking strip, car-2 stops there 5 s, a cyclist passes in front of the parked car.
//! `streetwatch replay` with a 15 s dwell, detecting once per second, must report exactly one
//! `illegal_parking` event (new, any updates, end) for car-1, starting within one detection
//! interval of its arrival, and publish the same messages to a real mosquitto, each valid
//! against `docs/schema/event.schema.json`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use streetwatch::compose::{self, GroundTruth};

/// Seconds between sampled frames in this test's camera.
const DETECT_EVERY: f64 = 1.0;
const DWELL: f64 = 15.0;
const END_AFTER: f64 = 10.0;
const POLYGON: [[f64; 2]; 4] = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]];

fn render(dir: &Path) -> (PathBuf, GroundTruth) {
    let sc = compose::load_scenario(&support::root().join("configs/scenarios/parking-basic.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let clip = dir.join("parking-basic.mp4");
    let truth = compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    (clip, truth)
}

fn write_config(dir: &Path, storage: &str, mqtt_url: &str, full_detect: f64) -> PathBuf {
    let poly = POLYGON
        .iter()
        .map(|p| format!("[{}, {}]", p[0], p[1]))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"[node]
id = "test-node"

[mqtt]
url = "{mqtt_url}"

[storage]
dir = "{storage}"

[incidents]
end_after_seconds = {END_AFTER}

[[cameras]]
id = "cam-test"
name = "测试路口"
url = "unused-in-replay.mp4"
detect_every_seconds = {DETECT_EVERY}
full_detect_seconds = {full_detect}

  [[cameras.zones]]
  id = "south-strip"
  name = "南侧人行道"
  kind = "no_parking"
  polygon = [{poly}]
  dwell_seconds = {DWELL}
  grid = "第八网格"
  responsible_unit = "解放路街道城管中队"
"#
    );
    let path = dir.join(format!("{storage}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn inside(poly: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut c = false;
    let n = poly.len();
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + n - 1) % n]);
        if (a[1] > y) != (b[1] > y) && x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]) + a[0] {
            c = !c;
        }
    }
    c
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

fn bbox(m: &Value) -> [f64; 4] {
    let b: Vec<f64> = m["object"]["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    [b[0], b[1], b[2], b[3]]
}

#[test]
fn parked_car_yields_exactly_one_illegal_parking_event() {
    let dir = support::artifacts_dir("scenario-parking-basic");
    let (clip, truth) = render(&dir);
    let car1 = truth.object("car-1").unwrap();
    let rest = &car1.rests[0];
    assert!(
        rest.seconds() >= 30.0,
        "the scenario must park car-1 for 30 s"
    );
    let car2 = truth.object("car-2").unwrap();
    assert!(car2.rests[0].seconds() < DWELL);

    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/events/#"]);
    let config = write_config(&dir, "data", &broker.url(), 0.0);
    let events_out = dir.join("events.jsonl");
    let messages = support::replay(&config, "cam-test", &clip, &events_out, true);

    // Exactly one event: new, updates, end, all for car-1.
    assert!(messages.len() >= 2, "expected new + end, got {messages:#?}");
    let id = messages[0]["event_id"].as_str().unwrap();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m["event_id"], id, "a second event appeared: {m:#}");
        assert_eq!(m["seq"], i as u64);
        assert_eq!(m["kind"], "illegal_parking");
        assert_eq!(m["category"]["code"], "05-05");
        assert_eq!(m["category"]["name"], "机动车乱停放");
        assert_eq!(m["camera"]["id"], "cam-test");
        assert_eq!(m["zone"]["id"], "south-strip");
        assert_eq!(m["zone"]["grid"], "第八网格");
        assert_eq!(m["zone"]["responsible_unit"], "解放路街道城管中队");
        let expected_type = match i {
            0 => "new",
            _ if i == messages.len() - 1 => "end",
            _ => "update",
        };
        assert_eq!(m["type"], expected_type, "message {i}: {m:#}");
        // The box is car-1's, inside the polygon.
        let b = bbox(m);
        assert!(
            iou(b, rest.bbox) > 0.5,
            "box {b:?} is not car-1's {:?}",
            rest.bbox
        );
        for (x, y) in [(b[0], b[1]), (b[2], b[1]), (b[0], b[3]), (b[2], b[3])] {
            assert!(
                inside(&POLYGON, x, y),
                "box corner ({x}, {y}) outside the zone"
            );
        }
    }

    // Times: start within one detection interval of the arrival; `new` once the dwell is reached;
    // `end` after car-1 left, when it has been gone `end_after_seconds`.
    let t0 = truth.start_time;
    let at = |s: f64| t0 + chrono::Duration::milliseconds((s * 1000.0) as i64);
    let new = &messages[0];
    let start = support::time(&new["start_time"]);
    let arrival = at(rest.start);
    let off = (start - arrival).num_milliseconds().abs() as f64 / 1000.0;
    assert!(
        off <= DETECT_EVERY,
        "start_time {start} is {off} s from the arrival {arrival}"
    );
    let new_at = support::time(&new["last_seen"]);
    let dwell_reached = (new_at - start).num_milliseconds() as f64 / 1000.0;
    assert!((DWELL..=DWELL + 2.0 * DETECT_EVERY).contains(&dwell_reached));
    assert!(new["end_time"].is_null());
    let end = messages.last().unwrap();
    assert_eq!(end["end_reason"], "object_left");
    let ended = support::time(&end["end_time"]);
    let left = at(rest.end);
    let off = (ended - left).num_milliseconds().abs() as f64 / 1000.0;
    assert!(
        off <= 2.0 * DETECT_EVERY,
        "end_time {ended} is {off} s from the departure {left}"
    );
    let dwell = end["dwell_seconds"].as_f64().unwrap();
    assert!(
        (dwell - rest.seconds()).abs() <= 2.0 * DETECT_EVERY,
        "dwell {dwell}"
    );

    // Evidence: the new message carries the frame of when the car came to rest and the frame
    // of when the dwell was reached (the pair enforcement needs), and a crop, on disk with
    // their sha256 and times.
    let evidence = new["evidence"].as_array().unwrap();
    let kinds: Vec<&str> = evidence
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rest_start", "frame", "crop"]);
    let taken = |e: &Value| support::time(&e["time"]);
    assert_eq!(
        taken(&evidence[0]),
        support::time(&new["start_time"]),
        "the rest-start photo is of the start"
    );
    let apart = (taken(&evidence[1]) - taken(&evidence[0])).num_milliseconds() as f64 / 1000.0;
    assert!(
        (DWELL..=DWELL + DETECT_EVERY).contains(&apart),
        "the two photos are {apart} s apart, the dwell is {DWELL} s"
    );
    assert_eq!(taken(&evidence[1]), taken(&evidence[2]));
    for e in evidence {
        let path = PathBuf::from(e["path"].as_str().unwrap());
        let path = if path.is_absolute() {
            path
        } else {
            dir.join("data").join(path)
        };
        let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            e["sha256"].as_str().unwrap()
        );
        image::load_from_memory(&bytes).expect("evidence is a picture");
    }

    // Every message is valid against the schema kept in the repo.
    support::assert_schema_valid(&messages);

    // The subscriber received the same messages, in order, on the event topic.
    assert!(
        sub.wait_until(Duration::from_secs(20), |r| r.len() >= messages.len()),
        "the subscriber got {} of {} messages",
        sub.on("streetwatch/events/").len(),
        messages.len()
    );
    sub.assert_payloads_valid();
    let received = sub.on("streetwatch/events/");
    assert_eq!(received.len(), messages.len());
    for (r, m) in received.iter().zip(&messages) {
        assert_eq!(r.topic, "streetwatch/events/illegal_parking/cam-test");
        assert!(!r.retain);
        assert_eq!(&r.json(), m);
    }

    // The same clip gives the same events every time (on a fresh ledger), here with the
    // deployment's own case code for the kind.
    let config2 = write_config(&dir, "data-again", &broker.url(), 0.0);
    let mut text = std::fs::read_to_string(&config2).unwrap();
    text.push_str("\n[categories]\nillegal_parking = { code = \"0505\", name = \"机动车违停\" }\n");
    std::fs::write(&config2, text).unwrap();
    let again = dir.join("events-again.jsonl");
    let again = support::replay(&config2, "cam-test", &clip, &again, false);
    for m in &again {
        assert_eq!(
            m["category"],
            serde_json::json!({"code": "0505", "name": "机动车违停"})
        );
    }
    let strip = |ms: Vec<Value>| -> Vec<Value> {
        ms.into_iter()
            .map(|mut m| {
                // Evidence paths are relative to each run's storage dir; the rest must match.
                m["evidence"] = Value::Null;
                m["category"] = Value::Null;
                m
            })
            .collect()
    };
    assert_eq!(strip(again), strip(messages));
}

/// Replays the clip with `full_detect_seconds = full`; returns the messages and on how many
/// sampled frames the model ran (from the replay's summary line).
fn replay_counting(dir: &Path, clip: &Path, full: f64) -> (Vec<Value>, u64, u64) {
    let name = format!("full-{full}");
    let config = write_config(dir, &name, "mqtt://127.0.0.1:1", full);
    let out = dir.join(format!("{name}.jsonl"));
    let o = std::process::Command::new(support::binary())
        .current_dir(support::root())
        .args(["replay", "--camera", "cam-test", "--no-mqtt", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(clip)
        .arg("--events-out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "replay failed:\n{stderr}");
    // "replay: 56 frames (the model ran on 20), ..." (after the plain progress lines)
    let line = stderr
        .lines()
        .find(|l| l.starts_with("replay: ") && l.contains(" frames (the model ran on "))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    let number = |after: &str| -> u64 {
        let rest = &line[line.find(after).unwrap() + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        support::read_jsonl(&out),
        number("replay: "),
        number("the model ran on "),
    )
}

/// `full_detect_seconds`: on the frames where nothing changed in the zone the model is skipped,
/// and the scenario still gives the same single event, starting and ending within one
/// detection interval of the every-frame run.
#[test]
fn skipping_the_model_on_a_still_street_gives_the_same_event() {
    let dir = support::artifacts_dir("scenario-full-detect");
    let (clip, _) = render(&dir);
    let (every, frames, ran_every) = replay_counting(&dir, &clip, 0.0);
    let (skipping, frames_skipping, ran_skipping) = replay_counting(&dir, &clip, 10.0);
    assert_eq!(
        ran_every, frames,
        "without full_detect_seconds the model runs on every frame"
    );
    assert_eq!(frames_skipping, frames);
    assert!(
        (ran_skipping as f64) < 0.8 * frames as f64,
        "the model ran on {ran_skipping} of {frames} frames: a parked car and a still street \
         should let it skip more"
    );
    let types = |m: &[Value]| m.iter().map(|m| m["type"].to_string()).collect::<Vec<_>>();
    let ends = |m: &[Value]| m.iter().filter(|m| m["type"] == "end").count();
    assert_eq!(every.iter().filter(|m| m["type"] == "new").count(), 1);
    assert_eq!(
        skipping.iter().filter(|m| m["type"] == "new").count(),
        1,
        "with skipping: {:?}",
        types(&skipping)
    );
    assert_eq!(ends(&skipping), 1);
    for field in ["start_time", "end_time"] {
        let at = |m: &[Value]| {
            let m = m.iter().find(|m| m["type"] == "end").unwrap();
            support::time(&m[field])
        };
        let apart = (at(&skipping) - at(&every)).num_milliseconds().abs() as f64 / 1000.0;
        assert!(
            apart <= DETECT_EVERY,
            "{field} {apart} s from the every-frame run's"
        );
    }
}
