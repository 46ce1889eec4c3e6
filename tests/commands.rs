//! The operator commands around models: `models list | verify` and `detect` on a real photo.

mod support;

use std::process::{Command, Output};

use serde_json::Value;

const PHOTO: &str =
    "images/amsterdam_garbage/garbage/mdc_photo_mdc_65dc0a_cdv_photo_001_1465665061856.jpg";

fn streetwatch(args: &[&str]) -> Output {
    Command::new(support::binary())
        .current_dir(support::root())
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn models_list_and_verify_the_bundled_manifests() {
    let list: Value =
        serde_json::from_str(&ok(&streetwatch(&["models", "list", "--json"]))).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for want in [
        "yolox-nano-coco",
        "nanodet-m-416-coco",
        "picodet-s-416-coco",
        "fastestdet-352-coco",
    ] {
        let e = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == want)
            .unwrap_or_else(|| panic!("{want} not in {names:?}"));
        assert_eq!(e["state"], "ready", "{e:#}");
    }
    let out = ok(&streetwatch(&["models", "verify"]));
    assert!(
        out.contains("yolox-nano-coco: ok (Yolox layout, 80 labels)"),
        "{out}"
    );
    assert!(out.contains("picodet-s-416-coco: ok (Gfl layout"), "{out}");
    let unknown = streetwatch(&["models", "verify", "no-such-model"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("available: "));
}

#[test]
fn detect_prints_json_and_draws_the_boxes() {
    let photo = support::asset(PHOTO);
    let dir = support::artifacts_dir("commands-detect");
    let annotated = dir.join("annotated.jpg");
    let out = ok(&streetwatch(&[
        "detect",
        "--model",
        "yolox-nano-coco",
        "--input",
        photo.to_str().unwrap(),
        "--min-score",
        "0.5",
        "--json",
        "--annotate",
        annotated.to_str().unwrap(),
    ]));
    let frame: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let labels: Vec<&str> = frame["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    // The reference finds a bicycle and five cars above 0.5 on this photo.
    assert_eq!(
        labels.iter().filter(|l| **l == "car").count(),
        5,
        "{labels:?}"
    );
    assert!(labels.contains(&"bicycle"));
    let img = image::open(&annotated).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 597));
    // Boxes are drawn in red over the photo: the annotated picture differs from the original.
    let original = image::open(&photo).unwrap().to_rgb8();
    let changed = img
        .pixels()
        .zip(original.pixels())
        .filter(|(a, b)| a.0[0].abs_diff(b.0[0]) > 60)
        .count();
    assert!(changed > 1000, "only {changed} pixels changed");
}
