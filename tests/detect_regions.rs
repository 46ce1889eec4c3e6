//! Zone-focused inference on a far camera: `configs/scenarios/small-car.toml` parks a car only
//! ~190 pixels wide on a 1920-pixel frame inside a no-parking zone for 40 s. Fitted whole into
//! YOLOX-Nano's 416-pixel input it is ~40 pixels wide and missed: no event with
//! `detect_regions = "frame"`. With `"zones"` the zone is cropped at full resolution and the car
//! is found: exactly one `illegal_parking` event, starting when it came to rest.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use streetwatch::compose;

fn replay(dir: &Path, clip: &Path, mode: &str) -> Vec<Value> {
    let config = dir.join(format!("{mode}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[mqtt]
[storage]
dir = "data-{mode}"
[incidents]
end_after_seconds = 10
[[cameras]]
id = "cam-far"
url = "unused-in-replay.mp4"
detect_every_seconds = 1.0
detect_regions = "{mode}"
  [[cameras.zones]]
  id = "far-strip"
  kind = "no_parking"
  polygon = [[0.45, 0.68], [0.80, 0.68], [0.80, 0.90], [0.45, 0.90]]
  dwell_seconds = 15
"#
        ),
    )
    .unwrap();
    let out = dir.join(format!("events-{mode}.jsonl"));
    support::replay(&config, "cam-far", clip, &out, false)
}

#[test]
fn a_small_far_car_is_found_only_with_zone_crops() {
    let dir = support::artifacts_dir("detect-regions-small-car");
    let sc = compose::load_scenario(&support::root().join("configs/scenarios/small-car.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let clip: PathBuf = dir.join("small-car.mp4");
    let truth = compose::render(&sc, &clip).unwrap_or_else(|e| panic!("{e}"));
    let rest = truth.object("small-car").unwrap().rests[0].clone();

    let frame = replay(&dir, &clip, "frame");
    assert!(
        frame.is_empty(),
        "full-frame detection should miss the small car: {frame:#?}"
    );

    let zones = replay(&dir, &clip, "zones");
    let types: Vec<&str> = zones.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"new"), "{zones:#?}");
    assert_eq!(types.last(), Some(&"end"));
    let id = &zones[0]["event_id"];
    assert!(zones
        .iter()
        .all(|m| &m["event_id"] == id && m["kind"] == "illegal_parking"));
    let arrival = truth.start_time + chrono::Duration::milliseconds((rest.start * 1000.0) as i64);
    let off = (support::time(&zones[0]["start_time"]) - arrival)
        .num_milliseconds()
        .abs();
    assert!(
        off <= 2000,
        "start {} vs arrival {arrival}",
        zones[0]["start_time"]
    );
    // One box for the whole car, not two pieces from neighbouring tiles.
    let b: Vec<f64> = zones[0]["object"]["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let iou = {
        let r = rest.bbox;
        let ix = (b[2].min(r[2]) - b[0].max(r[0])).max(0.0);
        let iy = (b[3].min(r[3]) - b[1].max(r[1])).max(0.0);
        let inter = ix * iy;
        inter / ((b[2] - b[0]) * (b[3] - b[1]) + (r[2] - r[0]) * (r[3] - r[1]) - inter)
    };
    assert!(iou > 0.6, "box {b:?} vs truth {:?}", rest.bbox);
}
