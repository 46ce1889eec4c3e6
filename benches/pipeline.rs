//! Per-frame costs on a real street photo (800x597), one ONNX Runtime thread, for every model
//! manifest whose weights are present: preprocessing (fit into the model input), inference
//! alone, decode + NMS, and the whole detection; then the tracker and zone rules for one frame.
//!
//! `make bench` (or `cargo bench --bench pipeline`); needs `make setup` for the models and photo.
//! `scripts/bench_python_ort.py` measures ONNX Runtime's Python API on the same models for the
//! README's comparison table.

use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use streetwatch::config::{self, TrackerConfig};
use streetwatch::detector::{preprocess, Detector};
use streetwatch::scene::Scene;
use streetwatch::tracker::Tracker;

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
        preprocess::prepare(&img, &spec, &mut input);
        c.bench_function(&format!("{name}/inference"), |b| {
            b.iter(|| det.infer(&input).map(|o| o.len()))
        });
        let raw = det.infer(&input).unwrap_or_else(|e| panic!("{e}"));
        c.bench_function(&format!("{name}/decode+nms"), |b| {
            b.iter(|| det.decode_outputs(&raw).len())
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
                    let tracks = tracker.update(now, &detections);
                    armed += scene.evaluate(now, &tracks, &[], w, h).violations.len();
                }
                armed
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = detection, rules
}
criterion_main!(benches);
