//! The `yolo` and `detr` decoders through `ort` on tiny generated ONNX graphs whose outputs are
//! constants (`scripts/make_test_models.py` writes them into `tests/models/`, with a manifest and
//! `NAME.expected.json` listing the exact detections each must give): channels-first and
//! transposed YOLOv8 outputs (labels from the ONNX `names` metadata), YOLOv5 with objectness,
//! and DETR boxes + logits, labels + boxes + scores, and one combined output. Each model is read
//! with its manifest's layout and with `layout = "auto"`, which must pick the same layout.
//!
//! The manifests stretch a 64x64 frame onto the 64x64 input, so input pixels are frame pixels
//! and the boxes must match to 1e-3 px, the scores to 1e-5.
//!
//! Manifest errors name the manifest and the field: missing weights (`file`), a wrong input name
//! (`input.name`), outputs that fit no layout (`layout`), a label count that does not match the
//! outputs (`labels`).

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde_json::Value;
use streetwatch::detector::manifest::{Layout, Manifest};
use streetwatch::detector::{Detection, Detector, DetectorError};

const SCORE_TOLERANCE: f32 = 1e-5;
const BOX_TOLERANCE: f32 = 1e-3;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

/// The manifest of a generated model, its `file` made absolute (`assets::find` returns an
/// absolute path as is), and the manifest's path.
fn manifest(name: &str) -> (Manifest, PathBuf) {
    let path = models_dir().join(format!("{name}.toml"));
    let mut m = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
    m.file = models_dir().join(&m.file).to_string_lossy().into_owned();
    (m, path)
}

fn load(m: Manifest, path: &Path) -> Result<Detector, DetectorError> {
    Detector::from_manifest(m, path, 1)
}

fn expected(name: &str) -> Value {
    let path = models_dir().join(format!("{name}.expected.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A 64x64 frame: the generated outputs do not depend on its pixels.
fn frame() -> RgbImage {
    RgbImage::from_pixel(64, 64, Rgb([90, 120, 150]))
}

fn layout_named(name: &str) -> Layout {
    match name {
        "yolo" => Layout::Yolo,
        "detr" => Layout::Detr,
        other => panic!("unexpected layout {other}"),
    }
}

fn describe(d: &[Detection]) -> String {
    d.iter()
        .map(|d| {
            format!(
                "{} {:.6} [{:.3}, {:.3}, {:.3}, {:.3}]",
                d.label, d.score, d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Loads `name` with `layout` (None: the manifest's), checks the resolved layout and labels,
/// and that `detect` gives exactly the expected detections.
fn check(name: &str, layout: Option<Layout>) {
    let want = expected(name);
    let want_layout = layout_named(want["layout"].as_str().unwrap());
    let (mut m, path) = manifest(name);
    if let Some(l) = layout {
        m.layout = l;
    }
    let det = load(m, &path).unwrap_or_else(|e| panic!("load {name}: {e}"));
    let how = format!("{name} (layout {:?})", layout.unwrap_or(want_layout));
    assert_eq!(det.layout(), want_layout, "{how}: resolved layout");
    let labels: Vec<&str> = want["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(det.labels(), labels.as_slice(), "{how}: labels");

    let mut got = det.detect(&frame()).unwrap();
    got.sort_by(|a, b| b.score.total_cmp(&a.score));
    let wanted = want["detections"].as_array().unwrap();
    assert_eq!(
        got.len(),
        wanted.len(),
        "{how}: number of detections; got\n  {}",
        describe(&got)
    );
    // Both sorted by score, best first (the expected scores are distinct).
    for (i, (d, w)) in got.iter().zip(wanted).enumerate() {
        let at = format!(
            "{how}: detection {i} ({}); got\n  {}",
            w["source"],
            describe(&got)
        );
        assert_eq!(d.label, w["label"].as_str().unwrap(), "{at}: label");
        assert_eq!(
            d.class_id,
            w["class_id"].as_u64().unwrap() as usize,
            "{at}: class id"
        );
        let score = w["score"].as_f64().unwrap() as f32;
        assert!(
            (d.score - score).abs() <= SCORE_TOLERANCE,
            "{at}: score {} != {score}",
            d.score
        );
        let b: Vec<f32> = w["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ours = [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2];
        assert!(
            ours.iter()
                .zip(&b)
                .all(|(o, e)| (o - e).abs() <= BOX_TOLERANCE),
            "{at}: box {ours:?} != {b:?}"
        );
    }
}

fn check_both(name: &str) {
    check(name, None);
    check(name, Some(Layout::Auto));
}

#[test]
fn yolo_v8_channels_first_with_metadata_names() {
    // The manifest gives no labels: they come from the model's `names` metadata.
    let (m, _) = manifest("yolo_v8");
    assert!(m.labels.is_none() && m.labels_file.is_none());
    check_both("yolo_v8");
}

#[test]
fn yolo_v8_transposed_rows() {
    check_both("yolo_v8_rows");
}

#[test]
fn yolo_v5_objectness() {
    check_both("yolo_v5");
}

#[test]
fn detr_boxes_and_logits() {
    check_both("detr_logits");
}

#[test]
fn detr_labels_boxes_scores_in_pixels() {
    check_both("detr_labels_scores");
}

#[test]
fn detr_one_combined_output() {
    check_both("detr_combined");
}

/// The error of loading `m`, which must name the manifest and `field`.
fn error_naming(m: Manifest, path: &Path, field: &str) -> String {
    let e = load(m, path)
        .map(|d| format!("{d:?}"))
        .expect_err("the manifest should be refused")
        .to_string();
    assert!(
        e.contains(&path.display().to_string()),
        "the error names the manifest {}: {e}",
        path.display()
    );
    assert!(
        e.contains(&format!("field `{field}`")),
        "the error names the field `{field}`: {e}"
    );
    e
}

#[test]
fn missing_weights_name_file() {
    let (mut m, path) = manifest("yolo_v8_rows");
    let missing = models_dir().join("no_such_model.onnx");
    m.file = missing.to_string_lossy().into_owned();
    let e = error_naming(m, &path, "file");
    assert!(e.contains("no_such_model.onnx"), "{e}");
}

#[test]
fn wrong_input_name_names_input_name() {
    let (mut m, path) = manifest("detr_logits");
    m.input.name = Some("pixel_values".into());
    let e = error_naming(m, &path, "input.name");
    assert!(e.contains("pixel_values") && e.contains("images"), "{e}");
}

#[test]
fn outputs_that_fit_no_layout_name_layout() {
    let (m, path) = manifest("no_layout");
    let e = error_naming(m, &path, "layout");
    assert!(
        e.contains("\"logits\" [1, 10]"),
        "the error shows the outputs: {e}"
    );
}

#[test]
fn label_count_mismatch_names_labels() {
    let four = || {
        Some(
            ["stall", "tricycle_cart", "garbage_bag", "car"]
                .map(String::from)
                .to_vec(),
        )
    };
    // YOLO, channels first and rows, with 4 labels for 3 class columns.
    for name in ["yolo_v8", "yolo_v8_rows"] {
        let (mut m, path) = manifest(name);
        m.labels = four();
        error_naming(m, &path, "labels");
    }
    // DETR boxes + logits with 2 labels for 3 logit columns.
    let (mut m, path) = manifest("detr_logits");
    m.labels = Some(vec!["stall".into(), "tricycle_cart".into()]);
    error_naming(m, &path, "labels");
    // With `auto` no layout fits; the message still says to check `labels`.
    let (mut m, path) = manifest("yolo_v8_rows");
    m.labels = four();
    m.layout = Layout::Auto;
    let e = error_naming(m, &path, "layout");
    assert!(e.contains("`labels`"), "{e}");
}

#[test]
fn no_labels_and_no_metadata_names_labels() {
    let (mut m, path) = manifest("detr_combined");
    m.labels = None;
    error_naming(m, &path, "labels");
}

#[test]
fn explicit_objectness_that_disagrees_with_the_rows_names_it() {
    // A YOLO v5 export (rows of 5 + 3) read with `objectness = false` would take the
    // objectness column for a fourth label.
    let (mut m, path) = manifest("yolo_v5");
    m.decode.objectness = Some(false);
    let e = error_naming(m, &path, "decode.objectness");
    assert!(e.contains("8 values") && e.contains("would have 7"), "{e}");
}

#[test]
fn outputs_wider_than_the_labels_are_an_error_for_that_frame_not_a_panic() {
    // The graph declares a dynamic channel axis, so it loads; every run then gives two
    // channels more than the manifest's labels.
    let (m, path) = manifest("fastestdet_dyn");
    let det = load(m, &path).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        let e = det
            .detect(&frame())
            .map(|d| describe(&d))
            .expect_err("outputs wider than the labels must be refused");
        assert!(matches!(e, DetectorError::Output { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("fastestdet_dyn")
                && text.contains("[1, 10, 4, 4]")
                && text.contains("3 labels"),
            "{text}"
        );
    }
}
