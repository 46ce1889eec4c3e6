//! Per-frame costs on a real street photo (800x597), one ONNX Runtime thread, for every model
//! manifest whose weights are present: preprocessing (fit into the model input), inference
//! alone, decode + NMS, and the whole detection; then the tracker and zone rules for one frame;
//! then what recording one event message costs in the ledger, without and with the outbox
//! (a real SQLite file in WAL mode, synchronous commits).
//!
//! `make bench` (or `cargo bench --bench pipeline`); needs `make setup` for the models and photo.
//! `scripts/bench_python_ort.py` measures ONNX Runtime's Python API on the same models for the
//! README's comparison table.

use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use streetwatch::change::{ChangeConfig, FrameContext, StaticChangeMap};
use streetwatch::config::{self, TrackerConfig};
use streetwatch::detector::{preprocess, Detector};
use streetwatch::scene::Scene;
use streetwatch::tracker::{Sight, Tracker};

const PHOTO: &str =
    "images/amsterdam_garbage/garbage/mdc_photo_mdc_65dc0a_cdv_photo_001_1465665061856.jpg";

/// The models of the README table.
const MODELS: [&str; 4] = [
    "yolox-nano-coco",
    "nanodet-m-416-coco",
    "picodet-s-416-coco",
    "fastestdet-352-coco",
];

fn photo() -> image::RgbImage {
    let path = streetwatch::assets::find(PHOTO).unwrap_or_else(|e| panic!("{e}"));
    image::open(path)
        .map(|i| i.to_rgb8())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn detection(c: &mut Criterion) {
    let img = photo();
    for name in MODELS {
        let det = match Detector::load(Path::new("models"), name, 1) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                continue;
            }
        };
        let spec = det.manifest().input.clone();
        let mut input = Vec::new();
        c.bench_function(&format!("{name}/preprocess"), |b| {
            b.iter(|| preprocess::prepare(&img, &spec, &mut input))
        });
        preprocess::prepare(&img, &spec, &mut input).unwrap_or_else(|e| panic!("{e}"));
        c.bench_function(&format!("{name}/inference"), |b| {
            b.iter(|| det.infer(&input).map(|o| o.len()))
        });
        let raw = det.infer(&input).unwrap_or_else(|e| panic!("{e}"));
        c.bench_function(&format!("{name}/decode+nms"), |b| {
            b.iter(|| det.decode_outputs(&raw).map(|c| c.len()).unwrap_or(0))
        });
        c.bench_function(&format!("{name}/detect"), |b| {
            b.iter(|| det.detect(&img).map(|d| d.len()))
        });
    }
}

fn rules(c: &mut Criterion) {
    let img = photo();
    let det =
        Detector::load(Path::new("models"), "yolox-nano-coco", 1).unwrap_or_else(|e| panic!("{e}"));
    let detections = det.detect(&img).unwrap_or_default();
    let cfg = config::parse(
        Path::new("bench.toml"),
        r#"
[mqtt]
[storage]
dir = "/tmp"
[[cameras]]
id = "bench"
url = "bench.mp4"
  [[cameras.zones]]
  id = "z"
  kind = "no_parking"
  polygon = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tz = chrono_tz::Asia::Shanghai;
    let (w, h) = img.dimensions();
    c.bench_function(
        &format!("track+rules/{} detections, 60 frames", detections.len()),
        |b| {
            b.iter(|| {
                let mut tracker = Tracker::new(TrackerConfig::default());
                let mut scene = Scene::new(&cfg.config.cameras[0], tz, &Default::default())
                    .unwrap_or_else(|e| panic!("{e}"));
                let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
                let mut armed = 0;
                for i in 0..60 {
                    let now = t0 + chrono::Duration::seconds(i);
                    let sight = Sight {
                        picture: &img,
                        motion: None,
                        camera_shift: (0.0, 0.0),
                    };
                    let tracks = tracker.update(now, &detections, Some(sight));
                    armed += scene.evaluate(now, &tracks, &[], w, h).violations.len();
                }
                armed
            })
        },
    );
}

fn change_map(c: &mut Criterion) {
    let img = photo();
    let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let mut map = StaticChangeMap::new(ChangeConfig::default());
    let mut i = 0;
    c.bench_function("change map/one frame", |b| {
        b.iter(|| {
            i += 1;
            map.update(
                t0 + chrono::Duration::seconds(i),
                &img,
                FrameContext::default(),
            )
            .map(|o| o.len())
        })
    });
}

fn ledger(c: &mut Criterion) {
    let message = |seq: u32| -> streetwatch::event::EventMessage {
        serde_json::from_value(serde_json::json!({
            "schema": "streetwatch.event/1", "type": if seq == 0 { "new" } else { "update" },
            "event_id": "01JD0000000000000000000000", "seq": seq, "kind": "illegal_parking",
            "category": {"code": "05-05", "name": "机动车乱停放"},
            "camera": {"id": "cam-jiefang-01", "name": "解放路东口"},
            "zone": {"id": "east", "name": "南侧人行道", "grid": "第八网格", "responsible_unit": "解放路街道城管中队"},
            "object": {"label": "car", "score": 0.8, "track_id": 1, "bbox": [0.1, 0.5, 0.3, 0.9]},
            "start_time": "2026-11-22T09:00:00.000+08:00", "last_seen": "2026-11-22T09:05:00.000+08:00",
            "end_time": null, "end_reason": null, "dwell_seconds": 300.0,
            "recurrence": {"count_7d": 1, "count_30d": 3, "previous_end": null, "relapse": true},
            "evidence": [{"kind": "frame", "path": "/var/lib/streetwatch/evidence/a.jpg", "sha256": "00"}]
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let t = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    for deliver in [false, true] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut ledger =
            streetwatch::ledger::Ledger::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        ledger.set_delivery(deliver);
        let mut seq = 0;
        let name = if deliver {
            "ledger/record one message + queue in the outbox"
        } else {
            "ledger/record one message"
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                seq += 1;
                ledger.record(&message(seq), t, t, None)
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = detection, rules, change_map, ledger
}
criterion_main!(benches);
