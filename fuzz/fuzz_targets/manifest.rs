//! Model manifests: parsed and validated, then what a detector does with one that passed:
//! thresholds per label, a decoding plan for outputs of its layout, and preparing a frame.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use streetwatch::detector::decode::{plan, OutputInfo};
use streetwatch::detector::manifest::Manifest;
use streetwatch::detector::preprocess::prepare;

/// Output shapes of each supported layout, as exported models declare them.
fn outputs(classes: i64) -> Vec<Vec<Vec<i64>>> {
    vec![
        vec![vec![1, 3549, 5 + classes]],
        vec![vec![1, 4 + classes, 8400]],
        vec![vec![1, 3598, classes + 32]],
        vec![vec![1, 5 + classes, 22, 22]],
        vec![vec![1, 100, 4], vec![1, 100, classes + 1]],
        vec![vec![1, -1, -1]],
    ]
}

fuzz_target!(|data: &[u8]| {
    let dir = common::work_dir("manifest");
    let text = String::from_utf8_lossy(data);
    let path = dir.join("model.toml");
    let Ok(m) = Manifest::parse(&path, &text) else {
        return;
    };
    // labels_file is read from the assets folder; only inline labels are taken here.
    let labels = m.labels.clone().unwrap_or_default();
    for l in &labels {
        let _ = m.threshold(l);
    }
    for shapes in outputs(labels.len() as i64) {
        let outs: Vec<OutputInfo> = shapes
            .into_iter()
            .enumerate()
            .map(|(i, shape)| OutputInfo {
                name: format!("out{i}"),
                shape,
                integer: false,
            })
            .collect();
        let _ = plan(m.layout, &outs, labels.len(), m.input.size, &m.decode);
    }
    // A small frame, and one the model input is far from.
    let mut input = Vec::new();
    for (w, h) in [(64, 48), (7, 300)] {
        let frame = image::RgbImage::from_pixel(w, h, image::Rgb([90, 120, 200]));
        let _ = prepare(&frame, &m.input, &mut input);
    }
});
