//! Compose: renders scenario clips from real street photos, with the ground truth they imply.
//!
//! A scenario file (TOML, in `configs/scenarios/`) names a still street background and real
//! object crops (cars, people) with keyframed positions; the composer pastes the crops along their
//! paths, adds a lighting drift and camera noise, encodes an H.264 MP4 through FFmpeg and writes
//! `<clip>.truth.json` with when each object is visible and where and when it rests. Tests and
//! `streetwatch demo` replay these clips through the real pipeline.

mod encode;
mod paint;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::assets::{self, AssetError};

/// Why a scenario could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The scenario file is unreadable or invalid.
    #[error("{file}: {why}")]
    Scenario {
        /// Scenario file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// A photo the scenario names is missing.
    #[error(transparent)]
    Asset(#[from] AssetError),
    /// A photo could not be decoded.
    #[error("{file}: cannot read image: {why}")]
    Image {
        /// Image file.
        file: String,
        /// Decoder's message.
        why: String,
    },
    /// The clip could not be written.
    #[error("{file}: cannot write the clip: {why}")]
    Encode {
        /// Output file.
        file: String,
        /// Encoder's message.
        why: String,
    },
}

/// A scenario: a background, objects moving over it, and the camera's imperfections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, written into the truth file.
    pub name: String,
    /// What the scenario shows and what it must (not) trigger.
    #[serde(default)]
    pub description: String,
    /// Background photo, relative to the assets root (e.g. `images/amsterdam_garbage/...`).
    pub background: String,
    /// Output size in pixels `[width, height]`; default: the background's size. Rounded down to even.
    pub size: Option<[u32; 2]>,
    /// Frames per second of the clip.
    #[serde(default = "d_fps")]
    pub fps: u32,
    /// Length of the clip.
    pub duration_seconds: f64,
    /// Wall-clock time of the first frame, stored as the clip's `creation_time` so replays
    /// have fixed event times.
    #[serde(default = "d_start_time")]
    pub start_time: DateTime<Utc>,
    /// Seed of the camera noise, so a scenario always renders the same clip.
    #[serde(default)]
    pub seed: u64,
    /// Standard deviation of the Gaussian sensor noise, in 8-bit levels.
    #[serde(default)]
    pub noise_sigma: f32,
    /// Brightness gain keyframes `[t_seconds, gain]`, linearly interpolated; empty = 1.0.
    #[serde(default)]
    pub lighting: Vec<[f64; 2]>,
    /// The objects, drawn far-to-near (by the bottom of their boxes).
    #[serde(default, rename = "objects")]
    pub objects: Vec<SceneObject>,
    /// Objects shrink with distance: their size is scaled by where their bottom is.
    pub perspective: Option<Perspective>,
    /// A camera's on-screen clock showing the stream time (`YYYY-MM-DD HH:MM:SS`).
    pub clock: Option<Clock>,
    /// Dappled shadows of branches that sway in the wind.
    #[serde(default)]
    pub tree_shadows: Vec<TreeShadow>,
    /// Folder of the scenario file (set by `load_scenario`).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn d_fps() -> u32 {
    5
}

fn d_start_time() -> DateTime<Utc> {
    // 09:00 in Shanghai on a Monday: inside the usual weekday schedules.
    DateTime::parse_from_rfc3339("2026-11-23T09:00:00+08:00")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// How objects shrink with distance: full size (their `width`/`height`) with their bottom at
/// `near_y`, `far_scale` of it at `far_y`, linear in between (and held beyond).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Perspective {
    /// Frame fraction where objects have their full size.
    pub near_y: f64,
    /// Frame fraction of the far end.
    pub far_y: f64,
    /// Size at the far end, as a fraction of the full size.
    pub far_scale: f64,
}

impl Perspective {
    /// Scale of an object whose bottom is at `y`.
    pub fn scale_at(&self, y: f64) -> f64 {
        let span = self.near_y - self.far_y;
        if span.abs() < 1e-9 {
            return 1.0;
        }
        let f = ((y - self.far_y) / span).clamp(0.0, 1.0);
        self.far_scale + (1.0 - self.far_scale) * f
    }
}

/// An on-screen clock (OSD), as most CCTV cameras burn into the picture.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clock {
    /// Left edge, frame fraction.
    pub x: f64,
    /// Top edge, frame fraction.
    pub y: f64,
    /// Text height, frame fraction.
    pub height: f64,
}

/// A patch of dappled shadow from branches, swaying sideways.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeShadow {
    /// Centre, frame fractions.
    pub x: f64,
    /// Centre, frame fractions.
    pub y: f64,
    /// Radius, fraction of the frame width.
    pub radius: f64,
    /// How far it sways each way, fraction of the frame width.
    pub sway: f64,
    /// Seconds per sway.
    pub period: f64,
    /// Brightness left in the shadow (0.5 = half as bright).
    pub darkness: f64,
}

/// The shadow an object casts on the ground (low sun: long and to one side).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CastShadow {
    /// Offset of the shadow from the object's footprint, in object widths (positive: right).
    pub dx: f64,
    /// Length across the ground, in object widths.
    pub length: f64,
    /// Height of the shadow band, in object heights.
    pub depth: f64,
    /// Brightness left in the shadow.
    pub darkness: f64,
}

/// A real object crop moving along keyframes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneObject {
    /// Id in the truth file (e.g. `car-1`).
    pub id: String,
    /// What it is (`car`, `person`, ...), for the truth file.
    pub label: String,
    /// Source photo, relative to the assets root.
    pub image: String,
    /// Pixel box `[x1, y1, x2, y2]` of the object in the source photo; default: the whole photo.
    pub crop: Option<[u32; 4]>,
    /// Width on the clip as a fraction of the frame width (height follows the crop's aspect).
    pub width: Option<f64>,
    /// Height on the clip as a fraction of the frame height (width follows the crop's aspect).
    pub height: Option<f64>,
    /// Mirror the crop left-right (a car driving the other way).
    #[serde(default)]
    pub flip: bool,
    /// Keyframes `[t_seconds, x_centre, y_bottom]` in frame fractions; the object is on screen
    /// from the first to the last keyframe and rests wherever two keyframes share a position.
    pub path: Vec<[f64; 3]>,
    /// The shadow it casts, if any.
    pub shadow: Option<CastShadow>,
    /// Brightness of the crop (below 1: in the dark, or dressed in black).
    #[serde(default = "d_brightness")]
    pub brightness: f64,
}

fn d_brightness() -> f64 {
    1.0
}

/// What a scenario implies: the facts a test compares events with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Scenario name.
    pub scenario: String,
    /// Frames per second.
    pub fps: f64,
    /// Number of frames in the clip.
    pub frame_count: u64,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// Time of the first frame.
    pub start_time: DateTime<Utc>,
    /// Every object.
    pub objects: Vec<ObjectTruth>,
}

/// One object's presence and rests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectTruth {
    /// Scenario object id.
    pub id: String,
    /// Label.
    pub label: String,
    /// Seconds from the clip start when it comes on screen.
    pub appears: f64,
    /// Seconds from the clip start when it leaves the screen.
    pub leaves: f64,
    /// Intervals during which it does not move.
    pub rests: Vec<Rest>,
}

/// An interval of rest at one place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rest {
    /// Seconds from the clip start.
    pub start: f64,
    /// Seconds from the clip start.
    pub end: f64,
    /// Normalized `[x1, y1, x2, y2]` of the object while resting (clipped to the frame).
    pub bbox: [f64; 4],
}

impl Rest {
    /// Length of the rest.
    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

impl GroundTruth {
    /// The truth of object `id`.
    pub fn object(&self, id: &str) -> Option<&ObjectTruth> {
        self.objects.iter().find(|o| o.id == id)
    }
}

/// Where the truth of a clip is written: `clip.mp4` -> `clip.truth.json`.
pub fn truth_path(clip: &Path) -> PathBuf {
    clip.with_extension("truth.json")
}

/// Reads and checks a scenario file.
pub fn load_scenario(path: &Path) -> Result<Scenario, ComposeError> {
    let file = path.display().to_string();
    let bad = |why: String| ComposeError::Scenario {
        file: file.clone(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut sc: Scenario = toml_edit::de::from_str(&text).map_err(|e| bad(e.to_string()))?;
    sc.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    sc.check().map_err(bad)?;
    Ok(sc)
}

impl Scenario {
    fn check(&self) -> Result<(), String> {
        if self.fps == 0 || self.fps > 60 {
            return Err(format!("fps: {} is not in 1..=60", self.fps));
        }
        if !(self.duration_seconds > 0.0 && self.duration_seconds <= 3600.0) {
            return Err("duration_seconds: must be in (0, 3600]".into());
        }
        if let Some([w, h]) = self.size {
            if w < 16 || h < 16 || w > 4096 || h > 4096 {
                return Err(format!("size: {w}x{h} is not within 16..=4096"));
            }
        }
        if !(0.0..=64.0).contains(&self.noise_sigma) {
            return Err("noise_sigma: must be in 0..=64".into());
        }
        ascending(&self.lighting, |k| k[0]).map_err(|e| format!("lighting: {e}"))?;
        if self.lighting.iter().any(|k| !(0.0..=4.0).contains(&k[1])) {
            return Err("lighting: gains must be in 0..=4".into());
        }
        if let Some(p) = self.perspective {
            if !(0.0..=1.0).contains(&p.far_y)
                || !(0.0..=1.0).contains(&p.near_y)
                || p.far_y >= p.near_y
            {
                return Err(
                    "perspective: far_y and near_y must be in 0..=1, far_y above near_y".into(),
                );
            }
            if !(p.far_scale > 0.0 && p.far_scale <= 1.0) {
                return Err("perspective: far_scale must be in (0, 1]".into());
            }
        }
        if let Some(c) = self.clock {
            if !(c.height > 0.0 && c.height <= 0.2) {
                return Err("clock: height must be in (0, 0.2]".into());
            }
        }
        for (i, t) in self.tree_shadows.iter().enumerate() {
            if !(t.period > 0.0 && t.radius > 0.0 && (0.0..1.0).contains(&t.darkness)) {
                return Err(format!(
                    "tree_shadows[{i}]: period and radius must be positive, darkness in 0..1"
                ));
            }
        }
        for (i, o) in self.objects.iter().enumerate() {
            let at = format!("objects[{i}] ({})", o.id);
            if !(o.brightness > 0.0 && o.brightness <= 2.0) {
                return Err(format!("{at}: brightness must be in (0, 2]"));
            }
            if let Some(sh) = o.shadow {
                if !(sh.length > 0.0 && sh.depth > 0.0 && (0.0..1.0).contains(&sh.darkness)) {
                    return Err(format!(
                        "{at}: shadow length and depth must be positive, darkness in 0..1"
                    ));
                }
            }
            match (o.width, o.height) {
                (Some(s), None) | (None, Some(s)) if s > 0.0 && s <= 2.0 => {}
                _ => {
                    return Err(format!(
                        "{at}: give exactly one of width or height, in (0, 2]"
                    ))
                }
            }
            if o.path.is_empty() {
                return Err(format!("{at}: path needs at least one keyframe"));
            }
            ascending(&o.path, |k| k[0]).map_err(|e| format!("{at}: path: {e}"))?;
            if let Some([x1, y1, x2, y2]) = o.crop {
                if x2 <= x1 || y2 <= y1 {
                    return Err(format!(
                        "{at}: crop must be [x1, y1, x2, y2] with x2 > x1, y2 > y1"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn ascending<T>(keys: &[T], t: impl Fn(&T) -> f64) -> Result<(), String> {
    if keys.windows(2).all(|w| t(&w[0]) <= t(&w[1])) {
        Ok(())
    } else {
        Err("keyframe times must not decrease".into())
    }
}

/// Position of an object at time `t`: `(x_centre, y_bottom)`, or None when off screen.
fn position_at(path: &[[f64; 3]], t: f64) -> Option<(f64, f64)> {
    let first = path.first()?;
    let last = path.last()?;
    if t < first[0] || (path.len() > 1 && t > last[0]) {
        return None;
    }
    if path.len() == 1 || t >= last[0] {
        return Some((last[1], last[2]));
    }
    let i = path.windows(2).position(|w| t >= w[0][0] && t <= w[1][0])?;
    let (a, b) = (path[i], path[i + 1]);
    let span = b[0] - a[0];
    let f = if span > 0.0 { (t - a[0]) / span } else { 1.0 };
    Some((a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f))
}

/// Linear interpolation of `[t, value]` keyframes; `default` when there are none.
fn keyframe_value(keys: &[[f64; 2]], t: f64, default: f64) -> f64 {
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return default;
    };
    if t <= first[0] {
        return first[1];
    }
    if t >= last[0] {
        return last[1];
    }
    keys.windows(2)
        .find(|w| t >= w[0][0] && t <= w[1][0])
        .map(|w| {
            let span = w[1][0] - w[0][0];
            let f = if span > 0.0 {
                (t - w[0][0]) / span
            } else {
                1.0
            };
            w[0][1] + (w[1][1] - w[0][1]) * f
        })
        .unwrap_or(default)
}

/// The rests a path implies: runs of keyframes at the same position; `size_at(y)` is the
/// object's normalized size with its bottom at `y`.
fn rests_of(path: &[[f64; 3]], size_at: impl Fn(f64) -> (f64, f64)) -> Vec<Rest> {
    let mut rests: Vec<Rest> = Vec::new();
    for k in path.windows(2) {
        let (a, b) = (k[0], k[1]);
        if a[1] != b[1] || a[2] != b[2] || b[0] <= a[0] {
            continue;
        }
        let (w, h) = size_at(a[2]);
        let bbox = [
            (a[1] - w / 2.0).clamp(0.0, 1.0),
            (a[2] - h).clamp(0.0, 1.0),
            (a[1] + w / 2.0).clamp(0.0, 1.0),
            a[2].clamp(0.0, 1.0),
        ];
        match rests.last_mut() {
            Some(r) if r.end == a[0] && r.bbox == bbox => r.end = b[0],
            _ => rests.push(Rest {
                start: a[0],
                end: b[0],
                bbox,
            }),
        }
    }
    rests
}

/// Renders the scenario to `out` (MP4) and writes its truth next to it.
pub fn render(sc: &Scenario, out: &Path) -> Result<GroundTruth, ComposeError> {
    let stage = paint::Stage::load(sc)?;
    let (width, height) = stage.size();
    let frame_count = (sc.duration_seconds * sc.fps as f64).round() as u64;
    let truth = GroundTruth {
        scenario: sc.name.clone(),
        fps: sc.fps as f64,
        frame_count,
        width,
        height,
        start_time: sc.start_time,
        objects: sc
            .objects
            .iter()
            .zip(stage.sprite_sizes())
            .map(|(o, size)| ObjectTruth {
                id: o.id.clone(),
                label: o.label.clone(),
                appears: o.path.first().map(|k| k[0]).unwrap_or(0.0),
                leaves: if o.path.len() > 1 {
                    o.path.last().map(|k| k[0]).unwrap_or(0.0)
                } else {
                    sc.duration_seconds
                },
                rests: rests_of(&o.path, |y| {
                    let s = sc.perspective.map_or(1.0, |p| p.scale_at(y));
                    (
                        size.0 as f64 * s / width as f64,
                        size.1 as f64 * s / height as f64,
                    )
                }),
            })
            .collect(),
    };
    let file = out.display().to_string();
    let encode_err = |why: String| ComposeError::Encode {
        file: file.clone(),
        why,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| encode_err(e.to_string()))?;
    }
    let mut writer = encode::ClipWriter::create(out, width, height, sc.fps, sc.start_time)
        .map_err(encode_err)?;
    let mut painter = stage.painter(sc.seed, sc.noise_sigma);
    for i in 0..frame_count {
        let t = i as f64 / sc.fps as f64;
        let frame = painter.frame(t, keyframe_value(&sc.lighting, t, 1.0) as f32, |k| {
            position_at(&sc.objects[k].path, t)
        });
        writer.push(frame).map_err(encode_err)?;
    }
    writer.finish().map_err(encode_err)?;
    let json = serde_json::to_string_pretty(&truth).map_err(|e| encode_err(e.to_string()))?;
    let truth_file = truth_path(out);
    std::fs::write(&truth_file, json).map_err(|e| ComposeError::Encode {
        file: truth_file.display().to_string(),
        why: e.to_string(),
    })?;
    Ok(truth)
}

/// Loads a photo named relative to the assets root.
fn load_photo(rel: &str) -> Result<image::RgbImage, ComposeError> {
    let path = assets::find(rel)?;
    image::open(&path)
        .map(|i| i.to_rgb8())
        .map_err(|e| ComposeError::Image {
            file: path.display().to_string(),
            why: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_interpolate_and_hide_outside_the_path() {
        let path = [[2.0, 0.0, 0.5], [4.0, 1.0, 0.5], [10.0, 1.0, 0.5]];
        assert_eq!(position_at(&path, 1.9), None);
        assert_eq!(position_at(&path, 3.0), Some((0.5, 0.5)));
        assert_eq!(position_at(&path, 7.0), Some((1.0, 0.5)));
        assert_eq!(position_at(&path, 10.1), None);
        // One keyframe: there from then on.
        assert_eq!(position_at(&[[5.0, 0.2, 0.9]], 100.0), Some((0.2, 0.9)));
    }

    #[test]
    fn rests_are_runs_of_equal_keyframes() {
        let path = [
            [0.0, -0.2, 0.8],
            [4.0, 0.4, 0.8],
            [20.0, 0.4, 0.8],
            [30.0, 0.4, 0.8],
            [33.0, 1.2, 0.8],
        ];
        let r = rests_of(&path, |_| (0.2, 0.1));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].start, r[0].end), (4.0, 30.0));
        let b = r[0].bbox;
        assert!((b[0] - 0.3).abs() < 1e-9 && (b[1] - 0.7).abs() < 1e-9);
        assert!((b[2] - 0.5).abs() < 1e-9 && (b[3] - 0.8).abs() < 1e-9);
    }

    #[test]
    fn lighting_interpolates() {
        let k = [[0.0, 1.0], [10.0, 0.5]];
        assert!((keyframe_value(&k, 5.0, 1.0) - 0.75).abs() < 1e-9);
        assert_eq!(keyframe_value(&k, 20.0, 1.0), 0.5);
        assert_eq!(keyframe_value(&[], 3.0, 1.0), 1.0);
    }
}
