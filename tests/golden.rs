//! YOLOX-Nano through `ort` matches the reference outputs computed with ONNX Runtime's Python API
//! (`models/golden/golden_outputs.json` in the shared assets).
//!
//! Tolerances (from the assets' notes): constant-input output statistics within 1e-3 relative;
//! on the photo the same labels, IoU > 0.9 and |score difference| < 0.03 (JPEG decoding and
//! resizing differ slightly between libraries).

use std::path::Path;

use serde_json::Value;
use streetwatch::detector::Detector;
use streetwatch::geometry::BBox;

fn golden() -> Value {
    let path = streetwatch::assets::find("models/golden/golden_outputs.json")
        .expect("golden outputs (run `make setup`)");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn yolox() -> Detector {
    Detector::load(Path::new("models"), "yolox-nano-coco", 1).expect("load yolox-nano-coco")
}

fn close(ours: f64, theirs: f64, rel: f64) -> bool {
    (ours - theirs).abs() <= rel * theirs.abs().max(1e-6)
}

#[test]
fn constant_input_statistics_match_reference() {
    let g = &golden()["yolox_nano"]["constant_input"];
    let value = g["value"].as_f64().unwrap() as f32;
    let det = yolox();
    let out = det.infer(&vec![value; 3 * 416 * 416]).unwrap();
    let reference = &g["outputs"][0];
    let shape: Vec<u64> = reference["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(out.len() as u64, shape.iter().product::<u64>());
    let sum: f64 = out.iter().map(|&v| v as f64).sum();
    let mean = sum / out.len() as f64;
    let min = out.iter().cloned().fold(f32::INFINITY, f32::min) as f64;
    let max = out.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    for (name, ours, key) in [
        ("sum", sum, "sum"),
        ("mean", mean, "mean"),
        ("min", min, "min"),
        ("max", max, "max"),
    ] {
        let theirs = reference[key].as_f64().unwrap();
        assert!(
            close(ours, theirs, 1e-3),
            "{name}: ours {ours}, reference {theirs}"
        );
    }
    for (i, v) in reference["first8"].as_array().unwrap().iter().enumerate() {
        let theirs = v.as_f64().unwrap();
        assert!(
            (out[i] as f64 - theirs).abs() <= 1e-3 * theirs.abs().max(1e-2),
            "value {i}: ours {}, reference {theirs}",
            out[i]
        );
    }
}

#[test]
fn photo_detections_match_reference() {
    let g = &golden()["yolox_nano"]["image"];
    let threshold = g["score_threshold"].as_f64().unwrap() as f32;
    let photo = streetwatch::assets::find(g["path"].as_str().unwrap()).unwrap();
    let img = image::open(&photo).unwrap().to_rgb8();
    let ours: Vec<_> = yolox()
        .detect(&img)
        .unwrap()
        .into_iter()
        .filter(|d| d.score >= threshold)
        .collect();
    let reference = g["detections"].as_array().unwrap();
    let mut ours_labels: Vec<&str> = ours.iter().map(|d| d.label.as_str()).collect();
    let mut ref_labels: Vec<&str> = reference
        .iter()
        .map(|d| d["class_name"].as_str().unwrap())
        .collect();
    ours_labels.sort();
    ref_labels.sort();
    assert_eq!(ours_labels, ref_labels, "labels differ: ours {ours:?}");
    for r in reference {
        let b: Vec<f32> = r["box_xyxy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let rb = BBox::new(b[0], b[1], b[2], b[3]);
        let label = r["class_name"].as_str().unwrap();
        let score = r["score"].as_f64().unwrap() as f32;
        let best = ours
            .iter()
            .filter(|d| d.label == label)
            .max_by(|a, b| a.bbox.iou(&rb).total_cmp(&b.bbox.iou(&rb)))
            .unwrap();
        assert!(
            best.bbox.iou(&rb) > 0.9,
            "{label} {rb:?}: best IoU {} ({:?})",
            best.bbox.iou(&rb),
            best.bbox
        );
        assert!(
            (best.score - score).abs() < 0.03,
            "{label} {rb:?}: score {} vs {score}",
            best.score
        );
    }
}
