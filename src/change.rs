//! Change: the static-change map of one camera, model-free.
//!
//! No COCO model names a heap of bags or goods laid on the pavement, so streetwatch also looks
//! for what is *new and still*, as the abandoned-object literature does with two backgrounds:
//!
//! - a **long-term background** learns the empty scene, slowly, and only where nothing has
//!   changed or moved for `settle_seconds` (selective update): a pile is never learned while it
//!   lies there, so the place matches the background again once it is cleared, and a slow walker
//!   the detector does not recognise is not absorbed either; only after
//!   `absorb_after_seconds` is a lasting change accepted as the new normal;
//! - a **short-term background** follows the picture within seconds: a pixel that differs from
//!   it is moving now (traffic, walkers, waving leaves), also when the detector sees nothing.
//!
//! A pixel counts toward a static object once it has differed from the long-term background
//! *and* held still for `static_seconds`, so what keeps changing (traffic the detector misses,
//! swaying branches, a flickering sign, the seconds of a camera's clock) never does; such
//! pixels are grouped into objects with a box, an area, an appearance time and a confidence.
//! Each object must have **appeared, not left**: the outline of something that appeared is an
//! edge in the frame and not in the background; the reverse is a ghost (something that was in
//! the background when it was learned, such as people standing in the first frame, and has
//! gone), re-learned at once. The digits of a clock that change and then hold (minutes, hours)
//! are changes far below a zone's `min_area`; an `ignore` zone over the clock leaves it out.
//!
//! Lighting is divided out per region of a 4 x 3 grid (clouds, dusk, a street light coming on
//! over one side); a shadow (darker, same colour) is not a change; a camera that sways is
//! registered to the background first; tracked road users and `ignore` zones are left out.
//! Every sampled frame is compared, whether or not anything moved: a pile dumped at night with
//! nobody around is still found.

use chrono::{DateTime, Utc};
use image::RgbImage;
use opencv::core::{self as cv, Mat, Point as CvPoint, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;
use serde::Deserialize;

use crate::geometry::{BBox, Point};
use crate::motion::MotionMap;
use crate::picture;

/// Settings of the static-change map.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeConfig {
    /// A region must differ from the background, and hold still, this long to become a static
    /// object.
    #[serde(default = "d_static")]
    pub static_seconds: f64,
    /// Time constant of background learning where nothing new is.
    #[serde(default = "d_learn")]
    pub learn_seconds: f64,
    /// A pixel is learned into the background only after nothing changed or moved there for this
    /// long (so slow walkers and people lingering are not absorbed).
    #[serde(default = "d_settle")]
    pub settle_seconds: f64,
    /// A change that lasts this long becomes the new background (0 = never).
    #[serde(default = "d_absorb")]
    pub absorb_after_seconds: f64,
    /// Difference from the background, in 8-bit levels after lighting correction, that counts
    /// as a change.
    #[serde(default = "d_threshold")]
    pub threshold: f32,
    /// Width of the analysis picture in pixels (height follows the frame's aspect).
    #[serde(default = "d_width")]
    pub width: u32,
}

fn d_static() -> f64 {
    20.0
}
fn d_learn() -> f64 {
    120.0
}
fn d_settle() -> f64 {
    15.0
}
fn d_absorb() -> f64 {
    4.0 * 3600.0
}
fn d_threshold() -> f32 {
    32.0
}
fn d_width() -> u32 {
    320
}

impl Default for ChangeConfig {
    fn default() -> Self {
        Self {
            static_seconds: d_static(),
            learn_seconds: d_learn(),
            settle_seconds: d_settle(),
            absorb_after_seconds: d_absorb(),
            threshold: d_threshold(),
            width: d_width(),
        }
    }
}

/// Something new that stays still.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticObject {
    /// Stable id while it lasts.
    pub id: u64,
    /// Normalized box.
    pub bbox: BBox,
    /// Changed area as a fraction of the frame.
    pub area: f32,
    /// When it appeared (its pixels started to differ and hold still).
    pub since: DateTime<Utc>,
    /// 0..1: how clearly it differs from the background.
    pub confidence: f32,
}

/// What else the map must know about a frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameContext<'a> {
    /// Normalized boxes of tracked road users (passers-by, cars): they come and go, and are
    /// left out of the comparison.
    pub road_users: &'a [BBox],
    /// What moves at this instant, when every frame is decoded.
    pub motion: Option<&'a MotionMap>,
}

/// Time constant of the short-term background, seconds: at the usual 0.5 to 1 detections a
/// second it is the previous sampled frame.
const SHORT_SECONDS: f64 = 1.0;
/// Difference from the short-term background that means "moving now", 8-bit levels.
const MOVING_THRESHOLD: f32 = 20.0;
/// A region whose outline is this much stronger in the background than in the frame is a
/// ghost: something that left.
const GHOST_RATIO: f32 = 1.3;
/// Share of the threshold below which a changed pixel counts as background again.
const HOLD_CHANGED: f32 = 0.6;
/// Smallest component kept, in analysis pixels (noise specks are smaller).
const MIN_PIXELS: usize = 12;

/// The per-camera map.
#[derive(Debug, Clone)]
pub struct StaticChangeMap {
    cfg: ChangeConfig,
    w: usize,
    h: usize,
    /// Long-term background (the empty scene).
    background: Vec<[f32; 3]>,
    /// Short-term background (the last seconds).
    short: Vec<[f32; 3]>,
    /// Per pixel: since when it differs from the long-term background (seconds, stream time).
    changed_since: Vec<Option<f64>>,
    /// Per pixel: the still change it shows (or shows again once what passes in front is gone).
    held: Vec<Option<Held>>,
    /// Per pixel: when it last changed or moved (the background learns only after a while).
    last_active: Vec<f64>,
    /// Pixels under `ignore` zones.
    ignored: Vec<bool>,
    /// The `ignore` polygons (normalized), rasterised at the analysis size.
    ignore_polygons: Vec<Vec<Point>>,
    last: Option<f64>,
    objects: Vec<StaticObject>,
    next_id: u64,
}

impl StaticChangeMap {
    /// An empty map; the first frame becomes the background.
    pub fn new(cfg: ChangeConfig) -> Self {
        Self {
            cfg,
            w: 0,
            h: 0,
            background: Vec::new(),
            short: Vec::new(),
            changed_since: Vec::new(),
            held: Vec::new(),
            last_active: Vec::new(),
            ignored: Vec::new(),
            ignore_polygons: Vec::new(),
            last: None,
            objects: Vec::new(),
            next_id: 1,
        }
    }

    /// The `ignore` zones (normalized polygons): nothing there is ever compared.
    pub fn set_ignored(&mut self, polygons: Vec<Vec<Point>>) {
        if polygons != self.ignore_polygons {
            self.ignore_polygons = polygons;
            self.ignored = rasterise(&self.ignore_polygons, self.w, self.h);
        }
    }

    /// Compares one frame with the backgrounds and returns the static objects now present.
    pub fn update(
        &mut self,
        time: DateTime<Utc>,
        frame: &RgbImage,
        context: FrameContext<'_>,
    ) -> Result<&[StaticObject], picture::PictureError> {
        let t = time.timestamp_millis() as f64 / 1000.0;
        let (fw, fh) = frame.dimensions();
        let w = self.cfg.width.clamp(16, fw.max(16));
        let h = ((fh as f64 * w as f64 / fw.max(1) as f64).round() as u32).max(8);
        let small = picture::shrink(&picture::rgb_view(frame)?, w as i32, h as i32)?;
        let (w, h) = (w as usize, h as usize);
        let mut cur: Vec<[f32; 3]> = small
            .data_bytes()?
            .chunks_exact(3)
            .map(|p| [p[0] as f32, p[1] as f32, p[2] as f32])
            .collect();
        if self.background.len() != cur.len() || self.last.is_none() {
            self.restart(w, h, cur, t);
            return Ok(&self.objects);
        }
        let dt = (t - self.last.unwrap_or(t)).max(0.0);
        self.last = Some(t);
        // A camera that sways: line the frame up with the background first.
        let shifted = self.register(&mut cur)?;
        let mut skip = mask(w, h, context.road_users);
        for (s, (&ig, &sh)) in skip.iter_mut().zip(self.ignored.iter().zip(&shifted)) {
            *s |= ig || sh;
        }
        let gain = self.gain_field(&cur, &skip);
        let learn = if self.cfg.learn_seconds > 0.0 {
            (dt / self.cfg.learn_seconds).min(1.0) as f32
        } else {
            1.0
        };
        let follow = (dt / SHORT_SECONDS).min(1.0) as f32;
        let moving_now = |i: usize| {
            context.motion.is_some_and(|m| {
                let (mw, mh) = m.mask().dimensions();
                let (x, y) = (i % w, i / w);
                let (mx, my) = (x * mw as usize / w, y * mh as usize / h);
                m.mask().get_pixel(mx as u32, my as u32)[0] > 0
            })
        };
        let mut strength = vec![0f32; w * h];
        for i in 0..w * h {
            let short = self.short[i];
            let moving = max_diff(cur[i], short) > MOVING_THRESHOLD || moving_now(i);
            for (s, c) in self.short[i].iter_mut().zip(cur[i]) {
                *s += follow * (c - *s);
            }
            if skip[i] {
                continue;
            }
            if moving {
                self.last_active[i] = t;
            }
            let c = cur[i].map(|v| v / gain[i]);
            let b = self.background[i];
            let diff = max_diff(c, b);
            // Hysteresis: a changed pixel stays changed until it is clearly background again,
            // so texture near the threshold does not flicker in and out of an object.
            let threshold = if self.changed_since[i].is_some() {
                HOLD_CHANGED * self.cfg.threshold
            } else {
                self.cfg.threshold
            };
            if diff > threshold && !is_shadow(c, b) {
                self.last_active[i] = t;
                let since = *self.changed_since[i].get_or_insert(t);
                strength[i] = (diff / (2.0 * self.cfg.threshold)).min(1.0);
                self.held[i] = hold(self.held[i], c, t, moving, self.cfg.threshold);
                if self.cfg.absorb_after_seconds > 0.0 && t - since >= self.cfg.absorb_after_seconds
                {
                    self.background[i] = c;
                    self.changed_since[i] = None;
                    self.held[i] = None;
                }
            } else {
                self.changed_since[i] = None;
                self.held[i] = None;
                if t - self.last_active[i] >= self.cfg.settle_seconds {
                    for (bk, ck) in self.background[i].iter_mut().zip(c) {
                        *bk += learn * (ck - *bk);
                    }
                }
            }
        }
        let still: Vec<u8> = self
            .held
            .iter()
            .map(|h| {
                let old = h.is_some_and(|h| !h.hidden && t - h.since >= self.cfg.static_seconds);
                if old {
                    255
                } else {
                    0
                }
            })
            .collect();
        let found = self.objects_in(&still, &strength, &cur, &gain)?;
        self.match_objects(found);
        Ok(&self.objects)
    }

    /// The static objects of the last frame.
    pub fn objects(&self) -> &[StaticObject] {
        &self.objects
    }

    fn restart(&mut self, w: usize, h: usize, first: Vec<[f32; 3]>, t: f64) {
        self.w = w;
        self.h = h;
        self.short = first.clone();
        self.background = first;
        self.changed_since = vec![None; w * h];
        self.held = vec![None; w * h];
        self.last_active = vec![f64::NEG_INFINITY; w * h];
        self.ignored = rasterise(&self.ignore_polygons, w, h);
        self.last = Some(t);
        self.objects.clear();
    }

    /// Shifts `cur` onto the background when the camera has swayed by a pixel or more
    /// (phase correlation of the two grey pictures); returns the pixels with no valid value
    /// after the shift (the strips shifted in from outside the picture).
    fn register(&self, cur: &mut [[f32; 3]]) -> Result<Vec<bool>, picture::PictureError> {
        let (w, h) = (self.w, self.h);
        let gray = |p: &[[f32; 3]]| -> Vec<f32> { p.iter().map(luminance).collect() };
        let (g_cur, g_bg) = (gray(cur), gray(&self.background));
        let a = Mat::new_rows_cols_with_data::<f32>(h as i32, w as i32, &g_bg)?;
        let b = Mat::new_rows_cols_with_data::<f32>(h as i32, w as i32, &g_cur)?;
        let (sx, sy) = picture::shift_between(&a, &b, 0.75)?;
        let mut invalid = vec![false; w * h];
        if (sx, sy) == (0.0, 0.0) {
            return Ok(invalid);
        }
        let shift = cv::Point2d::new(sx as f64, sy as f64);
        let pixels: Vec<cv::Vec3f> = cur.iter().map(|p| cv::Vec3f::from(*p)).collect();
        let src = Mat::new_rows_cols_with_data::<cv::Vec3f>(h as i32, w as i32, &pixels)?;
        let m = Mat::from_slice_2d(&[[1.0f64, 0.0, -shift.x], [0.0, 1.0, -shift.y]])?;
        let mut out = Mat::default();
        imgproc::warp_affine(
            &src,
            &mut out,
            &m,
            Size::new(w as i32, h as i32),
            imgproc::INTER_LINEAR,
            cv::BORDER_REPLICATE,
            Scalar::default(),
        )?;
        for (c, p) in cur.iter_mut().zip(out.data_typed::<cv::Vec3f>()?.iter()) {
            *c = [p[0], p[1], p[2]];
        }
        let (dx, dy) = (
            shift.x.abs().ceil() as usize + 1,
            shift.y.abs().ceil() as usize + 1,
        );
        for y in 0..h {
            for x in 0..w {
                let edge_x = if shift.x > 0.0 { x + dx >= w } else { x < dx };
                let edge_y = if shift.y > 0.0 { y + dy >= h } else { y < dy };
                invalid[y * w + x] = edge_x || edge_y;
            }
        }
        Ok(invalid)
    }

    /// Lighting gain frame / background at every pixel: the median brightness ratio over pixels
    /// that are background now, per block of a 4 x 3 grid (each block's median taken over its
    /// 3 x 3 neighbourhood, so no pile can dominate it), interpolated between block centres.
    /// Follows clouds and dusk (global) and street lights coming on (smooth, local).
    fn gain_field(&self, cur: &[[f32; 3]], masked: &[bool]) -> Vec<f32> {
        const GX: usize = 4;
        const GY: usize = 3;
        let (w, h) = (self.w, self.h);
        let lum = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        let mut samples: Vec<Vec<f32>> = vec![Vec::new(); GX * GY];
        for y in (0..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let i = y * w + x;
                if masked[i] || self.changed_since[i].is_some() {
                    continue;
                }
                let b = lum(&self.background[i]);
                if b > 12.0 {
                    samples[(y * GY / h) * GX + x * GX / w].push(lum(&cur[i]) / b);
                }
            }
        }
        let median = |mut v: Vec<f32>| -> Option<f32> {
            if v.len() < 32 {
                return None;
            }
            let mid = v.len() / 2;
            let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
            Some(m.clamp(0.2, 5.0))
        };
        let global = median(samples.concat()).unwrap_or(1.0);
        let mut block = [[global; GX]; GY];
        for (by, row) in block.iter_mut().enumerate() {
            for (bx, g) in row.iter_mut().enumerate() {
                let mut near = Vec::new();
                for ny in by.saturating_sub(1)..(by + 2).min(GY) {
                    for nx in bx.saturating_sub(1)..(bx + 2).min(GX) {
                        near.extend_from_slice(&samples[ny * GX + nx]);
                    }
                }
                if let Some(m) = median(near) {
                    *g = m;
                }
            }
        }
        // Bilinear between block centres, clamped at the borders.
        let axis = |p: usize, n: usize, len: usize| {
            let f = ((p as f32 + 0.5) / len as f32 * n as f32 - 0.5).clamp(0.0, (n - 1) as f32);
            let i0 = (f.floor() as usize).min(n - 1);
            (i0, (i0 + 1).min(n - 1), f - i0 as f32)
        };
        let mut field = vec![global; w * h];
        for y in 0..h {
            let (y0, y1, fy) = axis(y, GY, h);
            for x in 0..w {
                let (x0, x1, fx) = axis(x, GX, w);
                let top = block[y0][x0] * (1.0 - fx) + block[y0][x1] * fx;
                let bottom = block[y1][x0] * (1.0 - fx) + block[y1][x1] * fx;
                field[y * w + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
        field
    }

    /// Groups the still changed pixels into objects, leaving out ghosts (re-learned at once).
    fn objects_in(
        &mut self,
        still: &[u8],
        strength: &[f32],
        cur: &[[f32; 3]],
        gain: &[f32],
    ) -> Result<Vec<(BBox, f32, f64, f32)>, picture::PictureError> {
        let (w, h) = (self.w, self.h);
        let still = Mat::new_rows_cols_with_data::<u8>(h as i32, w as i32, still)?;
        let kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, Size::new(3, 3))?;
        // Close pinholes (texture inside a pile that happens to match the background), then
        // open away specks (noise, compression).
        let mut closed = Mat::default();
        imgproc::morphology_ex_def(&still, &mut closed, imgproc::MORPH_CLOSE, &kernel)?;
        let mut cleaned = Mat::default();
        imgproc::morphology_ex_def(&closed, &mut cleaned, imgproc::MORPH_OPEN, &kernel)?;
        let (mut labels, mut stats, mut centroids) =
            (Mat::default(), Mat::default(), Mat::default());
        let n = imgproc::connected_components_with_stats(
            &cleaned,
            &mut labels,
            &mut stats,
            &mut centroids,
            4,
            cv::CV_32S,
        )?;
        if n <= 1 {
            return Ok(Vec::new());
        }
        let labels = labels.data_typed::<i32>()?.to_vec();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); n as usize];
        for (i, &l) in labels.iter().enumerate() {
            if l > 0 {
                members[l as usize].push(i);
            }
        }
        let mut edges: Option<(Vec<f32>, Vec<f32>)> = None;
        let mut found = Vec::new();
        for pixels in members.into_iter().filter(|p| p.len() >= MIN_PIXELS) {
            let (e_cur, e_bg) = match &edges {
                Some(e) => (&e.0, &e.1),
                None => {
                    let corrected: Vec<[f32; 3]> = cur
                        .iter()
                        .zip(gain)
                        .map(|(c, g)| c.map(|v| v / g))
                        .collect();
                    let e = edges.insert((
                        edge_strength(&corrected, w, h)?,
                        edge_strength(&self.background, w, h)?,
                    ));
                    (&e.0, &e.1)
                }
            };
            let band = outline(&pixels, w, h)?;
            let mean =
                |e: &[f32]| band.iter().map(|&i| e[i]).sum::<f32>() / band.len().max(1) as f32;
            let (in_frame, in_background) = (mean(e_cur), mean(e_bg));
            tracing::debug!(
                pixels = pixels.len(),
                in_frame,
                in_background,
                "static region"
            );
            if in_background > GHOST_RATIO * in_frame && in_background > 8.0 {
                // Something left: the background still shows it. Learn the place as it is now.
                for &i in grown(&pixels, w, h, 1).iter() {
                    self.background[i] = cur[i].map(|v| v / gain[i]);
                    self.changed_since[i] = None;
                    self.held[i] = None;
                }
                continue;
            }
            let described = self.describe(&pixels, strength);
            tracing::trace!(bbox = ?described.0, since = described.2, "static object");
            found.push(described);
        }
        Ok(found)
    }

    fn describe(&self, pixels: &[usize], strength: &[f32]) -> (BBox, f32, f64, f32) {
        let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
        let mut since: Vec<f64> = Vec::with_capacity(pixels.len());
        let mut conf = 0f32;
        for &i in pixels {
            let (x, y) = (i % self.w, i / self.w);
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
            if let Some(h) = self.held[i] {
                since.push(h.since);
            }
            conf += strength[i];
        }
        let (w, h) = (self.w as f32, self.h as f32);
        let bbox = BBox::new(x1 as f32 / w, y1 as f32 / h, x2 as f32 / w, y2 as f32 / h);
        let area = pixels.len() as f32 / (w * h);
        since.sort_by(f64::total_cmp);
        let since = since.get(since.len() / 2).copied().unwrap_or(0.0);
        (bbox, area, since, conf / pixels.len().max(1) as f32)
    }

    /// Keeps ids and appearance times of objects seen on the previous frame. Pieces of one
    /// earlier object (a passer-by over a pile cuts it in two for a frame) stay that object.
    fn match_objects(&mut self, found: Vec<(BBox, f32, f64, f32)>) {
        let previous = std::mem::take(&mut self.objects);
        // A piece lies mostly inside the earlier object's box, grown by a few analysis pixels
        // (a strip along its edge that settled a little later is the same pile).
        let (mx, my) = (3.0 / self.w.max(1) as f32, 3.0 / self.h.max(1) as f32);
        let fit = |p: &StaticObject, b: &BBox| {
            let grown = BBox::new(
                p.bbox.x1 - mx,
                p.bbox.y1 - my,
                p.bbox.x2 + mx,
                p.bbox.y2 + my,
            );
            p.bbox.iou(b).max(b.share_inside(&grown) - 0.3)
        };
        for (bbox, area, since, confidence) in found {
            let since =
                DateTime::from_timestamp_millis((since * 1000.0) as i64).unwrap_or_default();
            let prev = previous
                .iter()
                .filter(|p| fit(p, &bbox) > 0.3)
                .max_by(|a, b| fit(a, &bbox).total_cmp(&fit(b, &bbox)));
            let Some(p) = prev else {
                self.next_id += 1;
                self.objects.push(StaticObject {
                    id: self.next_id - 1,
                    bbox,
                    area,
                    since,
                    confidence,
                });
                continue;
            };
            match self.objects.iter_mut().find(|o| o.id == p.id) {
                // Another piece of the same object: one object covering both.
                Some(o) => {
                    let total = o.area + area;
                    o.confidence = (o.confidence * o.area + confidence * area) / total.max(1e-9);
                    o.area = total;
                    o.bbox = BBox::new(
                        o.bbox.x1.min(bbox.x1),
                        o.bbox.y1.min(bbox.y1),
                        o.bbox.x2.max(bbox.x2),
                        o.bbox.y2.max(bbox.y2),
                    );
                    o.since = o.since.min(since);
                }
                None => self.objects.push(StaticObject {
                    id: p.id,
                    bbox,
                    area,
                    since: p.since.min(since),
                    confidence,
                }),
            }
        }
    }
}

/// A pixel's still change: since when, its colour (lighting divided out), and whether
/// something is passing in front of it now.
#[derive(Debug, Clone, Copy)]
struct Held {
    since: f64,
    colour: [f32; 3],
    hidden: bool,
}

/// The still change of a changed pixel after this frame. What just appeared counts from now;
/// something moving over it hides it; when the pixel holds still again showing what it showed
/// before (the pile once the passer-by is gone), the change goes on from its old time,
/// otherwise (a queue that stopped where traffic flowed) it starts now.
fn hold(held: Option<Held>, c: [f32; 3], t: f64, moving: bool, threshold: f32) -> Option<Held> {
    let fresh = Held {
        since: t,
        colour: c,
        hidden: false,
    };
    match held {
        None if moving => Some(Held {
            hidden: true,
            ..fresh
        }),
        None => Some(fresh),
        Some(h) if moving => Some(Held { hidden: true, ..h }),
        Some(h) if max_diff(h.colour, c) <= HOLD_CHANGED * threshold => {
            Some(Held { hidden: false, ..h })
        }
        Some(_) => Some(fresh),
    }
}

/// Darker than the background by a shadow's factor, with the same colour.
fn is_shadow(c: [f32; 3], b: [f32; 3]) -> bool {
    let (sc, sb) = (c.iter().sum::<f32>(), b.iter().sum::<f32>());
    if sb < 30.0 {
        return false;
    }
    let ratio = sc / sb;
    if !(0.4..0.92).contains(&ratio) {
        return false;
    }
    let chroma = |p: [f32; 3], s: f32| [p[0] / s.max(1.0), p[1] / s.max(1.0)];
    let (cc, cb) = (chroma(c, sc), chroma(b, sb));
    (cc[0] - cb[0]).abs() < 0.03 && (cc[1] - cb[1]).abs() < 0.03
}

/// Which analysis pixels lie under a moving object's box (grown a little for its outline).
fn mask(w: usize, h: usize, boxes: &[BBox]) -> Vec<bool> {
    let mut m = vec![false; w * h];
    for b in boxes {
        let (mx, my) = (b.width() * 0.1, b.height() * 0.1);
        let x1 = (((b.x1 - mx) * w as f32).floor().max(0.0)) as usize;
        let y1 = (((b.y1 - my) * h as f32).floor().max(0.0)) as usize;
        let x2 = (((b.x2 + mx) * w as f32).ceil() as usize).min(w);
        let y2 = (((b.y2 + my) * h as f32).ceil() as usize).min(h);
        for y in y1..y2 {
            m[y * w + x1.min(x2)..y * w + x2]
                .iter_mut()
                .for_each(|v| *v = true);
        }
    }
    m
}

fn max_diff(a: [f32; 3], b: [f32; 3]) -> f32 {
    (0..3).map(|k| (a[k] - b[k]).abs()).fold(0f32, f32::max)
}

fn luminance(p: &[f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Gradient magnitude (Sobel) of the grey picture of `p`.
fn edge_strength(p: &[[f32; 3]], w: usize, h: usize) -> Result<Vec<f32>, picture::PictureError> {
    let gray: Vec<f32> = p.iter().map(luminance).collect();
    let m = Mat::new_rows_cols_with_data::<f32>(h as i32, w as i32, &gray)?;
    let (mut gx, mut gy, mut mag) = (Mat::default(), Mat::default(), Mat::default());
    imgproc::sobel_def(&m, &mut gx, cv::CV_32F, 1, 0)?;
    imgproc::sobel_def(&m, &mut gy, cv::CV_32F, 0, 1)?;
    cv::magnitude(&gx, &gy, &mut mag)?;
    Ok(mag.data_typed::<f32>()?.to_vec())
}

/// The pixels of a set and of the ring `r` pixels wide around it.
fn grown(pixels: &[usize], w: usize, h: usize, r: usize) -> Vec<usize> {
    let mut m = vec![false; w * h];
    for &i in pixels {
        let (x, y) = (i % w, i / w);
        for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
            for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                m[yy * w + xx] = true;
            }
        }
    }
    (0..w * h).filter(|&i| m[i]).collect()
}

/// The band along a region's outline: grown by two pixels minus shrunk by two.
fn outline(pixels: &[usize], w: usize, h: usize) -> Result<Vec<usize>, picture::PictureError> {
    let mut m = vec![0u8; w * h];
    for &i in pixels {
        m[i] = 255;
    }
    let src = Mat::new_rows_cols_with_data::<u8>(h as i32, w as i32, &m)?;
    let kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, Size::new(5, 5))?;
    let mut grad = Mat::default();
    imgproc::morphology_ex_def(&src, &mut grad, imgproc::MORPH_GRADIENT, &kernel)?;
    Ok(grad
        .data_bytes()?
        .iter()
        .enumerate()
        .filter(|(_, &v)| v > 0)
        .map(|(i, _)| i)
        .collect())
}

/// Which analysis pixels lie inside the polygons.
fn rasterise(polygons: &[Vec<Point>], w: usize, h: usize) -> Vec<bool> {
    if w == 0 || h == 0 || polygons.is_empty() {
        return vec![false; w * h];
    }
    let draw = || -> Result<Vec<bool>, picture::PictureError> {
        let mut m = Mat::zeros(h as i32, w as i32, cv::CV_8UC1)?.to_mat()?;
        let mut all: Vector<Vector<CvPoint>> = Vector::new();
        for poly in polygons {
            all.push(
                poly.iter()
                    .map(|p| {
                        CvPoint::new(
                            (p.x * w as f32).round() as i32,
                            (p.y * h as f32).round() as i32,
                        )
                    })
                    .collect(),
            );
        }
        imgproc::fill_poly_def(&mut m, &all, Scalar::all(255.0))?;
        Ok(m.data_bytes()?.iter().map(|&v| v > 0).collect())
    };
    draw().unwrap_or_else(|e| {
        tracing::warn!("cannot draw the ignore zones on the change map: {e}");
        vec![false; w * h]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A textured street: smooth gradients plus fixed fine texture.
    fn street(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v =
                90.0 + 60.0 * (x as f32 / w as f32) + 20.0 * ((x * 7 + y * 13) % 11) as f32 / 11.0;
            image::Rgb([v as u8, (v * 0.95) as u8, (v * 0.9) as u8])
        })
    }

    fn at(s: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + (s * 1000.0) as i64).unwrap()
    }

    /// The street at time `s` with `gain`, sensor noise, and optionally a dark pile.
    fn frame(s: f64, gain: f32, pile: bool, rng: &mut ChaCha8Rng) -> RgbImage {
        let mut img = street(640, 480);
        if pile {
            for y in 300..380 {
                for x in 200..300 {
                    img.put_pixel(x, y, image::Rgb([40, 60, 35]));
                }
            }
        }
        let _ = s;
        for p in img.pixels_mut() {
            for c in 0..3 {
                let n: f32 = rng.random_range(-6.0..6.0);
                p[c] = (p[c] as f32 * gain + n).clamp(0.0, 255.0) as u8;
            }
        }
        img
    }

    /// Lighting that falls 35 % over the first minute, then rises to `end` over the second.
    fn ramp(s: f64, end: f32) -> f32 {
        if s < 60.0 {
            1.0 - 0.35 * s as f32 / 60.0
        } else if s < 120.0 {
            0.65 + (end - 0.65) * (s as f32 - 60.0) / 60.0
        } else {
            end
        }
    }

    fn cfg() -> ChangeConfig {
        ChangeConfig {
            static_seconds: 20.0,
            ..Default::default()
        }
    }

    #[test]
    fn a_pile_that_stays_becomes_a_static_object_with_its_appearance_time() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut map = StaticChangeMap::new(cfg());
        for i in 0..60 {
            let s = i as f64 * 2.0;
            let objs = map
                .update(
                    at(s),
                    &frame(s, 1.0, s >= 30.0, &mut rng),
                    FrameContext::default(),
                )
                .unwrap()
                .to_vec();
            if s < 50.0 {
                assert!(objs.is_empty(), "nothing static yet at {s}: {objs:?}");
            }
        }
        let objs = map.objects();
        assert_eq!(objs.len(), 1, "{objs:?}");
        let o = &objs[0];
        let want = BBox::new(200.0 / 640.0, 300.0 / 480.0, 300.0 / 640.0, 380.0 / 480.0);
        assert!(o.bbox.iou(&want) > 0.7, "{:?}", o.bbox);
        assert_eq!(o.since, at(30.0));
        assert!(o.confidence > 0.5);
    }

    #[test]
    fn a_removed_pile_disappears_and_the_background_was_kept() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut map = StaticChangeMap::new(cfg());
        for i in 0..40 {
            let s = i as f64 * 2.0;
            map.update(
                at(s),
                &frame(s, 1.0, (10.0..60.0).contains(&s), &mut rng),
                FrameContext::default(),
            )
            .unwrap();
            if s == 50.0 {
                assert_eq!(map.objects().len(), 1);
            }
        }
        assert!(map.objects().is_empty(), "{:?}", map.objects());
    }

    #[test]
    fn lighting_ramps_and_noise_are_not_changes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut map = StaticChangeMap::new(cfg());
        for i in 0..90 {
            let s = i as f64 * 2.0;
            // Down 35 % over a minute, back up, then 35 % brighter.
            let gain = ramp(s, 1.35);
            let objs = map
                .update(
                    at(s),
                    &frame(s, gain, false, &mut rng),
                    FrameContext::default(),
                )
                .unwrap();
            assert!(objs.is_empty(), "gain {gain} at {s}: {objs:?}");
        }
    }

    #[test]
    fn a_light_coming_on_over_one_side_is_not_a_change() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut map = StaticChangeMap::new(cfg());
        for i in 0..60 {
            let s = i as f64 * 2.0;
            // Night: the street at half its daylight.
            let mut img = frame(s, 0.5, false, &mut rng);
            if s >= 20.0 {
                // A street light comes on: twice as bright at the left edge, fading to nothing
                // halfway across. No single gain explains that.
                let w = img.width() as f32;
                for (x, _, p) in img.enumerate_pixels_mut() {
                    let g = 1.0 + (1.0 - 2.0 * x as f32 / w).max(0.0);
                    for c in 0..3 {
                        p[c] = (p[c] as f32 * g).min(255.0) as u8;
                    }
                }
            }
            let objs = map.update(at(s), &img, FrameContext::default()).unwrap();
            assert!(objs.is_empty(), "at {s}: {objs:?}");
        }
    }

    #[test]
    fn masked_moving_objects_are_ignored() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut map = StaticChangeMap::new(cfg());
        let person = BBox::new(190.0 / 640.0, 290.0 / 480.0, 310.0 / 640.0, 390.0 / 480.0);
        for i in 0..40 {
            let s = i as f64 * 2.0;
            // Something stands in the same place, but it is a tracked object.
            let context = FrameContext {
                road_users: &[person],
                motion: None,
            };
            let objs = map
                .update(at(s), &frame(s, 1.0, s >= 10.0, &mut rng), context)
                .unwrap();
            assert!(objs.is_empty(), "{objs:?}");
        }
    }

    /// Paints a filled box (frame pixels).
    fn block(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, colour: [u8; 3]) {
        for yy in y.max(0)..(y + h).min(img.height() as i64) {
            for xx in x.max(0)..(x + w).min(img.width() as i64) {
                img.put_pixel(xx as u32, yy as u32, image::Rgb(colour));
            }
        }
    }

    /// A walker the detector does not recognise: a dark body over lighter legs.
    fn walker(img: &mut RgbImage, x: i64) {
        block(img, x, 250, 24, 50, [50, 45, 60]);
        block(img, x + 2, 300, 20, 45, [70, 70, 90]);
    }

    fn noisy(mut img: RgbImage, gain: f32, rng: &mut ChaCha8Rng) -> RgbImage {
        for p in img.pixels_mut() {
            for c in 0..3 {
                let n: f32 = rng.random_range(-6.0..6.0);
                p[c] = (p[c] as f32 * gain + n).clamp(0.0, 255.0) as u8;
            }
        }
        img
    }

    /// Runs `frames(i) -> (seconds, picture)` through a fresh map; returns every static object
    /// seen with the time it was seen.
    fn run(n: usize, mut frames: impl FnMut(usize) -> (f64, RgbImage)) -> Vec<(f64, StaticObject)> {
        let mut map = StaticChangeMap::new(cfg());
        let mut seen = Vec::new();
        for i in 0..n {
            let (s, img) = frames(i);
            for o in map.update(at(s), &img, FrameContext::default()).unwrap() {
                seen.push((s, o.clone()));
            }
        }
        seen
    }

    #[test]
    fn traffic_the_detector_misses_is_not_a_pile() {
        // A lane where undetected vehicles pass without a break for two minutes: its pixels
        // never look like the empty road, but they never hold still either.
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let colours = [
            [200, 30, 30],
            [30, 40, 200],
            [230, 230, 230],
            [20, 20, 25],
            [60, 160, 60],
        ];
        let seen = run(120, |i| {
            let mut img = street(640, 480);
            for k in 0..4 {
                let x = ((i * 97 + k * 170) % 760) as i64 - 120;
                block(&mut img, x, 200, 120, 60, colours[(i + k) % colours.len()]);
            }
            (i as f64, noisy(img, 1.0, &mut rng))
        });
        assert!(seen.is_empty(), "{:?}", seen.first());
    }

    #[test]
    fn people_in_the_first_frame_leave_no_ghost() {
        // The background is learned from the first frame, with two people in it who then walk
        // away: the empty paving where they stood is not something new.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let seen = run(60, |i| {
            let mut img = street(640, 480);
            let s = i as f64 * 2.0;
            let away = (i as i64 * 30).max(0);
            walker(&mut img, 300 + away);
            walker(&mut img, 360 + away);
            (s, noisy(img, 1.0, &mut rng))
        });
        assert!(seen.is_empty(), "{:?}", seen.first());
    }

    #[test]
    fn a_slow_walker_lingering_under_a_lighting_ramp_is_not_absorbed() {
        // A walker nobody detects crosses at walking pace, stands 16 s (less than
        // static_seconds), walks on, while the light falls 35 % and comes back. Nothing may be
        // left behind: no pile while he passes, no ghost where he stood.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let seen = run(90, |i| {
            let s = i as f64 * 2.0;
            let gain = ramp(s, 1.0);
            let x = if s < 40.0 {
                (s * 6.0) as i64
            } else if s < 56.0 {
                240
            } else {
                240 + ((s - 56.0) * 6.0) as i64
            };
            let mut img = street(640, 480);
            walker(&mut img, x);
            (s, noisy(img, gain, &mut rng))
        });
        assert!(seen.is_empty(), "{:?}", seen.first());
    }

    /// Seven-segment digits, as cameras burn their clock into the picture.
    fn clock(img: &mut RgbImage, x: i64, y: i64, text: &str) {
        const SEGMENTS: [u8; 10] = [0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f];
        let (w, h, t) = (20, 36, 5);
        let white = [250, 250, 250];
        for (k, ch) in text.chars().enumerate() {
            let cx = x + k as i64 * (w + 8);
            let Some(d) = ch.to_digit(10) else {
                if ch == ':' {
                    block(img, cx + 8, y + 8, t, t, white);
                    block(img, cx + 8, y + h - 12, t, t, white);
                }
                continue;
            };
            let seg = SEGMENTS[d as usize];
            let bars = [
                (0, 0, w, t),
                (w - t, 0, t, h / 2),
                (w - t, h / 2, t, h / 2),
                (0, h - t, w, t),
                (0, h / 2, t, h / 2),
                (0, 0, t, h / 2),
                (0, h / 2 - t / 2, w, t),
            ];
            for (b, &(bx, by, bw, bh)) in bars.iter().enumerate() {
                if seg & (1 << b) != 0 {
                    block(img, cx + bx, y + by, bw, bh, white);
                }
            }
        }
    }

    #[test]
    fn a_ticking_clock_is_never_an_object_a_zone_reports() {
        // The camera's clock in big digits, one frame a second for four minutes (the hour
        // turns at 90 s). A digit that changed and holds is a change, but far below any zone's
        // `min_area` (0.002 of the frame by default); under an `ignore` zone there is nothing.
        let frames = |rng: &mut ChaCha8Rng, i: usize| {
            let mut img = noisy(street(640, 480), 1.0, rng);
            let t = 9 * 3600 + 58 * 60 + 30 + i;
            let text = format!("{:02}:{:02}:{:02}", t / 3600 % 24, t / 60 % 60, t % 60);
            clock(&mut img, 40, 400, &text);
            (i as f64, img)
        };
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let seen = run(240, |i| frames(&mut rng, i));
        for (t, o) in &seen {
            assert!(o.area < 0.002, "at {t} s: {o:?}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut map = StaticChangeMap::new(cfg());
        let osd = [(0.03, 0.80), (0.50, 0.80), (0.50, 0.95), (0.03, 0.95)];
        map.set_ignored(vec![osd.iter().map(|&(x, y)| Point::new(x, y)).collect()]);
        for i in 0..240 {
            let (s, img) = frames(&mut rng, i);
            let objects = map.update(at(s), &img, FrameContext::default()).unwrap();
            assert!(objects.is_empty(), "at {s} s: {objects:?}");
        }
    }

    #[test]
    fn a_pile_beside_passing_traffic_is_still_found() {
        // Passing traffic beside a pile must not hide it or cut it up.
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let seen = run(60, |i| {
            let s = i as f64 * 2.0;
            let mut img = street(640, 480);
            let x = ((i * 131) % 760) as i64 - 120;
            block(&mut img, x, 200, 120, 60, [200, 30, 30]);
            if s >= 20.0 {
                block(&mut img, 200, 300, 100, 80, [40, 60, 35]);
            }
            (s, noisy(img, 1.0, &mut rng))
        });
        let last = seen.last().expect("the pile is found");
        assert_eq!(last.1.since, at(20.0));
        let want = BBox::new(200.0 / 640.0, 300.0 / 480.0, 300.0 / 640.0, 380.0 / 480.0);
        assert!(last.1.bbox.iou(&want) > 0.6, "{:?}", last.1.bbox);
        assert!(
            seen.iter().all(|(_, o)| o.bbox.iou(&want) > 0.5),
            "only the pile"
        );
    }

    #[test]
    fn the_outline_band_surrounds_a_region() {
        let (w, h) = (20, 20);
        let square: Vec<usize> = (5..15)
            .flat_map(|y| (5..15).map(move |x| y * w + x))
            .collect();
        let band = outline(&square, w, h).unwrap();
        // Two pixels either side of the square's edge, none in its middle or far away.
        assert!(band.contains(&(5 * w + 5)) && band.contains(&(3 * w + 10)));
        assert!(!band.contains(&(10 * w + 10)) && !band.contains(&0));
    }
}
