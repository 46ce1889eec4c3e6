//! Our detector agrees with the reference pipelines people compare it with: the models' own
//! preprocessing done with `cv2.imread` + `cv2.resize` + numpy, run by ONNX Runtime's Python
//! API (`scripts/reference_detections.py`, which first checks itself against the shared assets'
//! golden outputs), on every photo under `images/` in the assets, for the four models of the
//! golden test. Our side decodes each photo the way `streetwatch detect` does and runs
//! `Detector::detect`.
//!
//! Tolerance: a reference detection counts as matched by one of ours with the same label,
//! IoU > 0.85 and |score difference| < 0.05 (greedy, best IoU first, each detection used at
//! most once). At least 98 % of the reference detections must be matched for every model and
//! in total. Both sides use the thresholds and NMS IoU of our manifests (models/*.toml).
//!
//! Needs the Python environment `scripts/setup.sh` makes at `$STREETWATCH_CACHE/py` (Debian's
//! python3-opencv and python3-numpy, onnxruntime 1.32.0 from PyPI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use streetwatch::detector::{Detection, Detector};
use streetwatch::geometry::BBox;

const MODELS: [&str; 4] = [
    "yolox-nano-coco",
    "nanodet-m-416-coco",
    "picodet-s-416-coco",
    "fastestdet-352-coco",
];
const MIN_IOU: f32 = 0.85;
const MAX_SCORE_DIFF: f32 = 0.05;
const MIN_MATCHED: f64 = 0.98;

#[derive(Debug, Deserialize)]
struct Reference {
    label: String,
    score: f32,
    bbox: [f32; 4],
}

/// model -> photo (relative to the assets root) -> detections.
type References = BTreeMap<String, BTreeMap<String, Vec<Reference>>>;

fn python() -> PathBuf {
    let py = streetwatch::assets::cache_dir().join("py/bin/python3");
    assert!(
        py.is_file(),
        "{} is missing: create the Python reference environment with\n    \
         STREETWATCH_ASSETS=../shared/assets scripts/setup.sh\n(or `make setup`)",
        py.display()
    );
    py
}

fn references() -> References {
    let out = Command::new(python())
        .arg("scripts/reference_detections.py")
        .arg("--models")
        .arg(MODELS.join(","))
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/reference_detections.py: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/reference_detections.py failed ({}):\n{stderr}",
        out.status
    );
    eprint!("{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("reference_detections.py printed no valid JSON: {e}"))
}

/// The photo as `streetwatch detect` reads it.
fn photo(rel: &str) -> image::RgbImage {
    let path = streetwatch::assets::find(rel).unwrap_or_else(|e| panic!("{e}"));
    streetwatch::picture::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How many references are matched, greedily by best IoU among the admissible pairs.
fn matched(refs: &[Reference], ours: &[Detection]) -> usize {
    let mut pairs = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let rb = BBox::new(r.bbox[0], r.bbox[1], r.bbox[2], r.bbox[3]);
        for (j, d) in ours.iter().enumerate() {
            let iou = d.bbox.iou(&rb);
            if d.label == r.label && iou > MIN_IOU && (d.score - r.score).abs() < MAX_SCORE_DIFF {
                pairs.push((iou, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut ref_used, mut our_used) = (vec![false; refs.len()], vec![false; ours.len()]);
    let mut n = 0;
    for (_, i, j) in pairs {
        if !ref_used[i] && !our_used[j] {
            ref_used[i] = true;
            our_used[j] = true;
            n += 1;
        }
    }
    n
}

#[test]
fn detections_match_the_opencv_python_reference_on_every_photo() {
    let refs = references();
    let mut rows = Vec::new();
    let (mut total_refs, mut total_matched) = (0usize, 0usize);
    for name in MODELS {
        let det = Detector::load(Path::new("models"), name, 1)
            .unwrap_or_else(|e| panic!("load {name}: {e}"));
        let photos = refs
            .get(name)
            .unwrap_or_else(|| panic!("no reference for {name}"));
        assert!(photos.len() >= 30, "{name}: only {} photos", photos.len());
        let (mut n_refs, mut n_matched, mut n_ours) = (0usize, 0usize, 0usize);
        for (rel, reference) in photos {
            let ours = det
                .detect(&photo(rel))
                .unwrap_or_else(|e| panic!("{name} on {rel}: {e}"));
            let m = matched(reference, &ours);
            if m < reference.len() {
                eprintln!(
                    "{name} {rel}: {} of {} references unmatched",
                    reference.len() - m,
                    reference.len()
                );
            }
            n_refs += reference.len();
            n_matched += m;
            n_ours += ours.len();
        }
        total_refs += n_refs;
        total_matched += n_matched;
        rows.push((name, n_refs, n_matched, n_ours - n_matched));
    }
    let pct = |m: usize, n: usize| 100.0 * m as f64 / n.max(1) as f64;
    eprintln!(
        "\n{:<22} {:>10} {:>8} {:>8} {:>11}",
        "model", "references", "matched", "percent", "ours extra"
    );
    for &(name, n, m, extra) in &rows {
        eprintln!("{name:<22} {n:>10} {m:>8} {:>7.1}% {extra:>11}", pct(m, n));
    }
    let extra: usize = rows.iter().map(|r| r.3).sum();
    eprintln!(
        "{:<22} {total_refs:>10} {total_matched:>8} {:>7.1}% {extra:>11}",
        "total",
        pct(total_matched, total_refs)
    );
    for &(name, n, m, _) in &rows {
        assert!(
            n > 0 && m as f64 >= MIN_MATCHED * n as f64,
            "{name}: {m} of {n} reference detections matched ({:.1}%, need {}%)",
            pct(m, n),
            MIN_MATCHED * 100.0
        );
    }
    assert!(
        total_matched as f64 >= MIN_MATCHED * total_refs as f64,
        "in total {total_matched} of {total_refs} reference detections matched ({:.1}%)",
        pct(total_matched, total_refs)
    );
}
