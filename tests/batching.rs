//! Batched inference across cameras: with `batch_size` > 1 and a model whose batch axis is
//! dynamic (`tests/models/yolo_v8_dynbatch.onnx`, made by `scripts/make_batch_test_model.py`),
//! frames from cameras inferring at the same time go through one inference, and each camera gets
//! its own answer back: the graph's one box is 8 + 40 × (mean of that camera's input) wide.

use std::path::Path;
use std::time::Duration;

use streetwatch::detector::manifest::Manifest;
use streetwatch::detector::{Detector, RuntimeOptions};

fn load(batch_size: usize) -> Detector {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
    let path = dir.join("yolo_v8_dynbatch.toml");
    let mut m = Manifest::load(&path).unwrap();
    m.file = dir.join(&m.file).display().to_string();
    let runtime = RuntimeOptions {
        batch_size,
        batch_wait: Duration::from_millis(200),
        ..RuntimeOptions::cpu(1)
    };
    Detector::from_manifest_with(m, &path, &runtime).unwrap_or_else(|e| panic!("{e}"))
}

/// Width of the one box found on a 64x64 frame of grey level `v`.
fn width(det: &Detector, v: u8) -> f32 {
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([v, v, v]));
    let found = det.detect(&img).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].label, "stall");
    found[0].bbox.width()
}

#[test]
fn cameras_inferring_together_share_a_batch_and_get_their_own_answers() {
    let det = load(4);
    let levels = [0u8, 128, 255, 64];
    let widths: Vec<f32> = std::thread::scope(|s| {
        let handles: Vec<_> = levels
            .iter()
            .map(|&v| {
                let det = &det;
                s.spawn(move || width(det, v))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (v, w) in levels.iter().zip(&widths) {
        let want = 8.0 + 40.0 * (*v as f32 / 255.0);
        assert!(
            (w - want).abs() < 1e-3,
            "level {v}: width {w}, expected {want}"
        );
    }
    let (runs, inputs) = det
        .batch_stats()
        .expect("batching is on for a dynamic batch axis");
    assert_eq!(inputs, 4);
    assert!(
        runs < 4,
        "{inputs} inputs in {runs} inferences: nothing was batched"
    );
}

#[test]
fn batch_size_one_runs_each_camera_alone() {
    let det = load(1);
    assert!(det.batch_stats().is_none());
    assert!((width(&det, 255) - 48.0).abs() < 1e-3);
}
