//! Per-frame costs of the detection path on a real street photo: preprocessing (letterbox into
//! the model input), the whole detection (preprocess + ONNX Runtime + decode + NMS), and the
//! tracker and zone rules for one frame's detections.
//!
//! `make bench` (or `cargo bench --bench pipeline`); needs `make setup` for the model and photo.

use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use streetwatch::config::{self, TrackerConfig};
use streetwatch::detector::{preprocess, Detector};
use streetwatch::scene::Scene;
use streetwatch::tracker::Tracker;

const PHOTO: &str =
    "images/amsterdam_garbage/garbage/mdc_photo_mdc_65dc0a_cdv_photo_001_1465665061856.jpg";

fn photo() -> image::RgbImage {
    let path = streetwatch::assets::find(PHOTO).unwrap_or_else(|e| panic!("{e}"));
    image::open(path)
        .map(|i| i.to_rgb8())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn detection(c: &mut Criterion) {
    let img = photo();
    let det =
        Detector::load(Path::new("models"), "yolox-nano-coco", 1).unwrap_or_else(|e| panic!("{e}"));
    let spec = det.manifest().input.clone();
    let label = format!("{}x{}", img.width(), img.height());
    let mut buf = Vec::new();
    c.bench_function(&format!("preprocess/letterbox {label} -> 416"), |b| {
        b.iter(|| preprocess::prepare(&img, &spec, &mut buf))
    });
    c.bench_function(&format!("detect/yolox-nano-coco {label}, 1 thread"), |b| {
        b.iter(|| det.detect(&img).map(|d| d.len()))
    });

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
                let mut scene =
                    Scene::new(&cfg.config.cameras[0], tz).unwrap_or_else(|e| panic!("{e}"));
                let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
                let mut armed = 0;
                for i in 0..60 {
                    let now = t0 + chrono::Duration::seconds(i);
                    let tracks = tracker.update(now, &detections);
                    armed += scene.evaluate(now, &tracks, w, h).violations.len();
                }
                armed
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = detection
}
criterion_main!(benches);
