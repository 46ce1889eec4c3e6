//! `streetwatch detect`: one model on a picture or the frames of a clip, so operators can try a
//! model on their own footage before deploying it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::detector::{Detection, Detector, RuntimeOptions};
use crate::evidence::{self, Marker, BOX_COLOR};
use crate::source::{Sampler, VideoDecoder};

/// What to try and how to report it.
#[derive(Debug, Clone)]
pub struct TrialOptions {
    /// Model manifest name.
    pub model: String,
    /// Manifest folder.
    pub models_dir: PathBuf,
    /// A picture or a clip.
    pub input: PathBuf,
    /// For clips: seconds between tried frames.
    pub every_seconds: f64,
    /// Only report detections at or above this score (default: the manifest's thresholds).
    pub min_score: Option<f32>,
    /// Print JSON lines instead of text.
    pub json: bool,
    /// Write the annotated picture here (clips: one file per frame, suffixed with its time).
    pub annotate: Option<PathBuf>,
    /// Threads, providers.
    pub runtime: RuntimeOptions,
}

/// The detections on one picture or clip frame.
#[derive(Debug, Clone, Serialize)]
pub struct FrameResult {
    /// Seconds from the start of the clip (0 for a picture).
    pub time: f64,
    /// Milliseconds the detection took (preprocess + inference + decode).
    pub detect_ms: f64,
    /// What was found.
    pub detections: Vec<FoundObject>,
}

/// One detection as printed.
#[derive(Debug, Clone, Serialize)]
pub struct FoundObject {
    /// Label.
    pub label: String,
    /// Score.
    pub score: f32,
    /// `[x1, y1, x2, y2]` in pixels of the picture.
    pub bbox: [f32; 4],
}

const PICTURE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"];

/// Runs the trial, printing each frame's result; returns them all.
pub fn run(opts: &TrialOptions) -> Result<Vec<FrameResult>> {
    if !opts.input.is_file() {
        return Err(anyhow!("{}: no such file", opts.input.display()));
    }
    let det = Detector::load_with(&opts.models_dir, &opts.model, &opts.runtime)?;
    let marker = opts.annotate.as_ref().map(|_| Marker::load());
    let mut results = Vec::new();
    let mut each = |time: f64, img: &image::RgbImage, suffix: bool| -> Result<()> {
        let (found, timing) = det.detect_timed(img)?;
        let found: Vec<Detection> = found
            .into_iter()
            .filter(|d| opts.min_score.is_none_or(|m| d.score >= m))
            .collect();
        let r = FrameResult {
            time,
            detect_ms: (timing.preprocess + timing.inference + timing.postprocess).as_secs_f64()
                * 1000.0,
            detections: found
                .iter()
                .map(|d| FoundObject {
                    label: d.label.clone(),
                    score: d.score,
                    bbox: [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2],
                })
                .collect(),
        };
        print(&r, opts.json, &opts.model);
        if let (Some(out), Some(marker)) = (&opts.annotate, &marker) {
            let path = if suffix {
                with_time(out, time)
            } else {
                out.clone()
            };
            let mut pic = img.clone();
            for d in &found {
                marker.labelled_box(
                    &mut pic,
                    d.bbox,
                    &format!("{} {:.2}", d.label, d.score),
                    BOX_COLOR,
                );
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            evidence::write_jpeg(&pic, &path)?;
            if !opts.json {
                println!("  annotated: {}", path.display());
            }
        }
        results.push(r);
        Ok(())
    };
    let ext = opts
        .input
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if PICTURE_EXTENSIONS.contains(&ext.as_str()) {
        // Decoded as `cv2.imread` decodes it, so results compare with OpenCV-based references.
        let img = crate::picture::read(&opts.input).context("cannot read the picture")?;
        each(0.0, &img, false)?;
    } else {
        let mut dec = VideoDecoder::open(&opts.input.display().to_string(), Default::default())?;
        let mut sampler = Sampler::new(opts.every_seconds);
        let mut want = |pts: f64| sampler.take(pts);
        while let Some(f) = dec.next_frame(&mut want)? {
            each(f.pts, &f.image, true)?;
        }
    }
    Ok(results)
}

fn print(r: &FrameResult, json: bool, model: &str) {
    if json {
        if let Ok(line) = serde_json::to_string(r) {
            println!("{line}");
        }
        return;
    }
    println!(
        "{model} t={:.1}s: {} object(s) in {:.1} ms",
        r.time,
        r.detections.len(),
        r.detect_ms
    );
    for d in &r.detections {
        println!(
            "  {:<14} {:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]",
            d.label, d.score, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]
        );
    }
}

/// `out.jpg` at 12.5 s -> `out-12.5s.jpg`.
fn with_time(out: &Path, time: f64) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "jpg".into());
    out.with_file_name(format!("{stem}-{time:.1}s.{ext}"))
}
