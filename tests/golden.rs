//! The real models through `ort` match the reference outputs computed with ONNX Runtime's Python
//! API (`models/golden/golden_outputs.json` in the shared assets): YOLOX-Nano, NanoDet-m,
//! PP-PicoDet-S and FastestDet, each read by its own layout's decoder.
//!
//! Tolerances (from the assets' notes): constant-input output statistics within 1e-3 relative;
//! on the photo the same labels, IoU > 0.9 and |score difference| < 0.03 (JPEG decoding and
//! resizing differ slightly between libraries).

use std::path::Path;

use serde_json::Value;
use streetwatch::detector::manifest::Layout;
use streetwatch::detector::Detector;
use streetwatch::geometry::BBox;

/// Golden key, manifest name, layout its outputs must be read with.
const MODELS: [(&str, &str, Layout); 4] = [
    ("yolox_nano", "yolox-nano-coco", Layout::Yolox),
    ("nanodet_m_416", "nanodet-m-416-coco", Layout::Gfl),
    ("picodet_s_416_coco", "picodet-s-416-coco", Layout::Gfl),
    ("fastestdet_352", "fastestdet-352-coco", Layout::Fastestdet),
];

fn golden() -> Value {
    let path = streetwatch::assets::find("models/golden/golden_outputs.json")
        .expect("golden outputs (run `make setup`)");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model(name: &str) -> Detector {
    Detector::load(Path::new("models"), name, 1).unwrap_or_else(|e| panic!("load {name}: {e}"))
}

fn close(ours: f64, theirs: f64, rel: f64) -> bool {
    (ours - theirs).abs() <= rel * theirs.abs().max(1e-6)
}

fn constant_input_matches(key: &str, name: &str) {
    let g = &golden()[key]["constant_input"];
    let value = g["value"].as_f64().unwrap() as f32;
    let det = model(name);
    let [w, h] = det.manifest().input.size;
    let outs = det.infer(&vec![value; 3 * (w * h) as usize]).unwrap();
    let references = g["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), references.len(), "{name}: number of outputs");
    // The model's output order is the golden file's order (both list the ONNX outputs).
    for (out, reference) in outs.iter().zip(references) {
        let rname = reference["name"].as_str().unwrap();
        let shape: Vec<usize> = reference["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(out.shape, shape, "{name} {rname}: shape");
        let data = &out.data;
        let sum: f64 = data.iter().map(|&v| v as f64).sum();
        let mean = sum / data.len() as f64;
        let min = data.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let max = data.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        for (stat, ours) in [("sum", sum), ("mean", mean), ("min", min), ("max", max)] {
            let theirs = reference[stat].as_f64().unwrap();
            // An exact 0 (e.g. a clipped minimum) can only be matched absolutely.
            let ok = close(ours, theirs, 1e-3) || (theirs == 0.0 && ours.abs() < 1e-6);
            assert!(ok, "{name} {rname} {stat}: ours {ours}, reference {theirs}");
        }
        for (i, v) in reference["first8"].as_array().unwrap().iter().enumerate() {
            let theirs = v.as_f64().unwrap();
            let ours = data[i] as f64;
            assert!(
                (ours - theirs).abs() <= 1e-3 * theirs.abs().max(1e-2),
                "{name} {rname} value {i}: ours {ours}, reference {theirs}"
            );
        }
    }
}

fn photo_detections_match(key: &str, name: &str, layout: Layout) {
    let g = &golden()[key]["image"];
    let threshold = g["score_threshold"].as_f64().unwrap() as f32;
    let photo = streetwatch::assets::find(g["path"].as_str().unwrap()).unwrap();
    let img = image::open(&photo).unwrap().to_rgb8();
    let det = model(name);
    assert_eq!(det.layout(), layout);
    let ours: Vec<_> = det
        .detect(&img)
        .unwrap()
        .into_iter()
        .filter(|d| d.score >= threshold)
        .collect();
    let reference = g["detections"].as_array().unwrap();
    assert!(
        reference.len() >= 3,
        "{name}: the reference has detections to compare"
    );
    let mut ours_labels: Vec<&str> = ours.iter().map(|d| d.label.as_str()).collect();
    let mut ref_labels: Vec<&str> = reference
        .iter()
        .map(|d| d["class_name"].as_str().unwrap())
        .collect();
    ours_labels.sort();
    ref_labels.sort();
    assert_eq!(
        ours_labels, ref_labels,
        "{name}: labels differ; ours {ours:#?}"
    );
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
            .unwrap_or_else(|| panic!("{name}: no {label} near {rb:?}"));
        assert!(
            best.bbox.iou(&rb) > 0.9,
            "{name} {label}: IoU {} ours {:?} reference {rb:?}",
            best.bbox.iou(&rb),
            best.bbox
        );
        assert!(
            (best.score - score).abs() < 0.03,
            "{name} {label}: score ours {} reference {score}",
            best.score
        );
    }
}

#[test]
fn constant_input_statistics_match_reference() {
    for (key, name, _) in MODELS {
        constant_input_matches(key, name);
    }
}

#[test]
fn photo_detections_match_reference() {
    for (key, name, layout) in MODELS {
        photo_detections_match(key, name, layout);
    }
}

#[test]
fn auto_layout_picks_the_same_decoders() {
    for (_, name, layout) in MODELS {
        let dir = Path::new("models");
        let mut manifest =
            streetwatch::detector::manifest::Manifest::load_named(dir, name).unwrap();
        manifest.layout = Layout::Auto;
        let det = Detector::from_manifest(manifest, &dir.join(format!("{name}.toml")), 1)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(det.layout(), layout, "{name}");
    }
}

#[test]
fn unavailable_providers_fall_back_to_cpu() {
    use streetwatch::detector::{Provider, RuntimeOptions};
    // The ONNX Runtime of the PyPI CPU wheel has no CUDA, TensorRT or OpenVINO.
    let runtime = RuntimeOptions {
        sessions: 2,
        providers: vec![
            Provider::Tensorrt,
            Provider::Cuda,
            Provider::Openvino,
            Provider::Cpu,
        ],
        ..RuntimeOptions::cpu(1)
    };
    let det = Detector::load_with(Path::new("models"), "yolox-nano-coco", &runtime).unwrap();
    assert_eq!(det.provider(), Provider::Cpu);
    // Two cameras sharing the pool at once get the same answers as one alone.
    let g = &golden()["yolox_nano"]["image"];
    let img = image::open(streetwatch::assets::find(g["path"].as_str().unwrap()).unwrap())
        .unwrap()
        .to_rgb8();
    let alone = det.detect(&img).unwrap();
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| det.detect(&img).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(together.iter().all(|d| *d == alone));
}
