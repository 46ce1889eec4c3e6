//! Dual streams: detection on a camera's sub-stream (`detect_url`), evidence from its main
//! stream (`url`), both served over RTSP by real server processes.
//!
//! `configs/scenarios/parking-basic.toml` is rendered twice, at 800×596 (the main stream) and
//! 400×298 (the sub-stream): car-1 rests 30 s in the no-parking strip. Two cameras watch the same
//! sub-stream; `cam-dual`'s main stream stays up, `cam-nomain`'s server is killed (SIGKILL) before
//! the event. The real daemon publishes to a real mosquitto. The test checks:
//!
//! - `cam-dual`'s `new` event: its `frame` photo is 800×596 (the main stream's), its crop is as
//!   wide as the car at that resolution, the box is where the car rests (IoU > 0.5 with the
//!   scenario's truth), `evidence_missing` is null;
//! - `cam-nomain`'s `new` event: its photos are the sub-stream's (400×298), `evidence_missing`
//!   says the main stream failed and that the photos come from the detect stream, and the
//!   camera's status topic carries `main_stream_error`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::rtsp::start_rtsp_server;
use support::{Mosquitto, Received, Subscriber};

const PREFIX: &str = "swtest-dual";
const MAIN: [u32; 2] = [800, 596];
const SUB: [u32; 2] = [400, 298];
/// The event comes ~23 s into the stream (car-1 arrives at 8 s, 15 s dwell); generous for a
/// loaded two-core machine.
const WITHIN: Duration = Duration::from_secs(120);

fn render(dir: &Path, size: [u32; 2]) -> (PathBuf, streetwatch::compose::GroundTruth) {
    let path = support::root().join("configs/scenarios/parking-basic.toml");
    let mut sc = streetwatch::compose::load_scenario(&path).unwrap_or_else(|e| panic!("{e}"));
    sc.size = Some(size);
    let clip = dir.join(format!("parking-{}x{}.mp4", size[0], size[1]));
    let truth = streetwatch::compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    (clip, truth)
}

fn write_config(dir: &Path, broker: &str, main: u16, main2: u16, sub: u16) -> PathBuf {
    let camera = |id: &str, main_port: u16| {
        format!(
            r#"
[[cameras]]
id = "{id}"
url = "rtsp://127.0.0.1:{main_port}/cam"
detect_url = "rtsp://127.0.0.1:{sub}/cam"
detect_every_seconds = 1.0

  [[cameras.zones]]
  id = "kerb"
  kind = "no_parking"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 15
"#
        )
    };
    let config = format!(
        r#"[node]
id = "dual-test"

[mqtt]
url = "{broker}"
topic_prefix = "{PREFIX}"

[storage]
dir = "{storage}"

[incidents]
end_after_seconds = 10
{dual}{nomain}"#,
        storage = dir.join("data").display(),
        dual = camera("cam-dual", main),
        nomain = camera("cam-nomain", main2),
    );
    let path = dir.join("dual.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The first `new` event of a camera among `messages`.
fn new_event(messages: &[Received], camera: &str) -> Option<Value> {
    messages
        .iter()
        .filter(|m| m.topic.starts_with(&format!("{PREFIX}/events/")))
        .map(|m| m.json())
        .find(|e| e["camera"]["id"] == camera && e["type"] == "new")
}

/// The photo of kind `kind` of an event, decoded.
fn photo(dir: &Path, event: &Value, kind: &str) -> image::RgbImage {
    let e = event["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} photo in {event}"));
    let path = PathBuf::from(e["path"].as_str().unwrap());
    let path = if path.is_absolute() {
        path
    } else {
        dir.join("data").join(path)
    };
    image::open(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .to_rgb8()
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

#[test]
fn evidence_comes_from_the_main_stream_and_falls_back_to_the_detect_stream() {
    let dir = support::artifacts_dir("dual_stream");
    let (main_clip, truth) = render(&dir, MAIN);
    let (sub_clip, _) = render(&dir, SUB);
    let car = truth.object("car-1").expect("car-1 in the truth");
    let rest = car
        .rests
        .iter()
        .max_by(|a, b| a.seconds().total_cmp(&b.seconds()));
    let rest_box = rest.expect("car-1 rests").bbox;

    let broker = Mosquitto::start();
    let (main_port, main2_port, sub_port) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let _main = start_rtsp_server(main_port, &main_clip, &dir.join("rtsp-main.log"));
    let mut main2 = start_rtsp_server(main2_port, &main_clip, &dir.join("rtsp-main2.log"));
    let _sub = start_rtsp_server(sub_port, &sub_clip, &dir.join("rtsp-sub.log"));
    // The second camera's main stream is gone before anything asks it for a photo.
    main2.kill();

    let sub = Subscriber::connect(broker.port, &[&format!("{PREFIX}/#")]);
    let config = write_config(&dir, &broker.url(), main_port, main2_port, sub_port);
    let mut daemon = support::Daemon::start(&config, &dir.join("daemon.log"), &[]);
    let both = sub.wait_until(WITHIN, |seen| {
        new_event(seen, "cam-dual").is_some() && new_event(seen, "cam-nomain").is_some()
    });
    assert!(
        both,
        "no `new` event from both cameras within {WITHIN:?}; daemon log:\n{}",
        daemon.log_text()
    );

    // The main stream's photos, the box where the car is.
    let dual = new_event(&sub.all(), "cam-dual").unwrap();
    assert_eq!(dual["evidence_missing"], Value::Null, "{dual}");
    let frame = photo(&dir, &dual, "frame");
    assert_eq!(
        frame.dimensions(),
        (MAIN[0], MAIN[1]),
        "cam-dual frame photo"
    );
    let bbox: Vec<f64> = dual["object"]["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let bbox = [bbox[0], bbox[1], bbox[2], bbox[3]];
    let overlap = iou(bbox, rest_box);
    assert!(
        overlap > 0.5,
        "event box {bbox:?} is not where car-1 rests {rest_box:?} (IoU {overlap:.2})"
    );
    let crop = photo(&dir, &dual, "crop");
    let car_px = (bbox[2] - bbox[0]) * MAIN[0] as f64;
    assert!(
        crop.width() as f64 >= 0.8 * car_px,
        "crop {}px wide, the car is {car_px:.0}px wide on the main stream",
        crop.width()
    );

    // The killed main stream: the detect stream's photos, and why.
    let nomain = new_event(&sub.all(), "cam-nomain").unwrap();
    let missing = nomain["evidence_missing"].as_str().unwrap_or_default();
    assert!(
        missing.contains("main stream unavailable") && missing.contains("detect stream"),
        "evidence_missing should say the main stream failed: {nomain}"
    );
    let frame = photo(&dir, &nomain, "frame");
    assert_eq!(
        frame.dimensions(),
        (SUB[0], SUB[1]),
        "cam-nomain frame photo"
    );
    let status_topic = format!("{PREFIX}/cameras/cam-nomain/status");
    let said = sub.wait_until(Duration::from_secs(10), |seen| {
        seen.iter()
            .any(|m| m.topic == status_topic && m.json()["main_stream_error"].is_string())
    });
    assert!(said, "cam-nomain's status never carried main_stream_error");
    support::assert_payloads_valid(&sub.all());
    daemon.stop();
}
