//! Change: the static-change map of one camera, model-free.
//!
//! No COCO model names a heap of bags or goods laid on the pavement, so streetwatch also looks
//! for what is *new and still*: a long-term background is learned from the sampled frames with
//! the tracked moving objects masked out, and regions that differ from it and stay put for
//! `static_seconds` become static objects with a box, an area, an age and a confidence.
//!
//! - Global lighting (clouds, dusk) is divided out: the gain between the frame and the background
//!   is the median brightness ratio over pixels that are background now.
//! - A shadow (darker, same colour) is not a change; camera noise stays under the threshold.
//! - The background learns only where nothing new is, so a pile is not absorbed while it lies
//!   there and the place looks like the background again once it is cleared (the event can end);
//!   only after `absorb_after_seconds` is a change accepted as the new normal.
//! - Every sampled frame is compared, whether or not anything moved: a pile dumped at night with
//!   nobody around is still found.

use chrono::{DateTime, Utc};
use image::imageops::{self, FilterType};
use image::RgbImage;
use serde::Deserialize;

use crate::geometry::BBox;

/// Settings of the static-change map.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeConfig {
    /// A region must differ from the background this long to become a static object.
    #[serde(default = "d_static")]
    pub static_seconds: f64,
    /// Time constant of background learning where nothing new is.
    #[serde(default = "d_learn")]
    pub learn_seconds: f64,
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
    /// When it appeared (its pixels started to differ).
    pub since: DateTime<Utc>,
    /// 0..1: how clearly it differs from the background.
    pub confidence: f32,
}

/// The per-camera map.
#[derive(Debug, Clone)]
pub struct StaticChangeMap {
    cfg: ChangeConfig,
    w: usize,
    h: usize,
    background: Vec<[f32; 3]>,
    /// Per pixel: since when it differs from the background (seconds, stream time).
    changed_since: Vec<Option<f64>>,
    last: Option<f64>,
    objects: Vec<StaticObject>,
    next_id: u64,
}

/// Smallest component kept, in analysis pixels (noise specks are smaller).
const MIN_PIXELS: usize = 12;

impl StaticChangeMap {
    /// An empty map; the first frame becomes the background.
    pub fn new(cfg: ChangeConfig) -> Self {
        Self {
            cfg,
            w: 0,
            h: 0,
            background: Vec::new(),
            changed_since: Vec::new(),
            last: None,
            objects: Vec::new(),
            next_id: 1,
        }
    }

    /// Compares one frame with the background; `moving` are normalized boxes of tracked objects
    /// that are not part of the scene (passers-by, moving cars), left out of the comparison.
    /// Returns the static objects now present.
    pub fn update(
        &mut self,
        time: DateTime<Utc>,
        frame: &RgbImage,
        moving: &[BBox],
    ) -> &[StaticObject] {
        let t = time.timestamp_millis() as f64 / 1000.0;
        let (fw, fh) = frame.dimensions();
        let w = self.cfg.width.clamp(16, fw.max(16));
        let h = ((fh as f64 * w as f64 / fw.max(1) as f64).round() as u32).max(8);
        let small = imageops::resize(frame, w, h, FilterType::Triangle);
        let cur: Vec<[f32; 3]> = small
            .pixels()
            .map(|p| [p[0] as f32, p[1] as f32, p[2] as f32])
            .collect();
        let (w, h) = (w as usize, h as usize);
        if self.background.len() != cur.len() || self.last.is_none() {
            *self = Self {
                cfg: self.cfg.clone(),
                w,
                h,
                background: cur,
                changed_since: vec![None; w * h],
                last: Some(t),
                objects: Vec::new(),
                next_id: self.next_id,
            };
            return &self.objects;
        }
        let dt = (t - self.last.unwrap_or(t)).max(0.0);
        self.last = Some(t);
        let masked = mask(w, h, moving);
        let gain = self.gain_field(&cur, &masked);
        let alpha = if self.cfg.learn_seconds > 0.0 {
            (dt / self.cfg.learn_seconds).min(1.0) as f32
        } else {
            1.0
        };
        let mut strength = vec![0f32; w * h];
        for i in 0..w * h {
            if masked[i] {
                continue;
            }
            let c = cur[i].map(|v| v / gain[i]);
            let b = self.background[i];
            let diff = (0..3).map(|k| (c[k] - b[k]).abs()).fold(0f32, f32::max);
            let changed = diff > self.cfg.threshold && !is_shadow(c, b);
            if changed {
                let since = *self.changed_since[i].get_or_insert(t);
                strength[i] = (diff / (2.0 * self.cfg.threshold)).min(1.0);
                if self.cfg.absorb_after_seconds > 0.0 && t - since >= self.cfg.absorb_after_seconds
                {
                    self.background[i] = c;
                    self.changed_since[i] = None;
                }
            } else {
                self.changed_since[i] = None;
                for k in 0..3 {
                    self.background[i][k] += alpha * (c[k] - b[k]);
                }
            }
        }
        let still: Vec<bool> = self
            .changed_since
            .iter()
            .map(|s| s.is_some_and(|s| t - s >= self.cfg.static_seconds))
            .collect();
        let still = open(&close(&still, w, h), w, h);
        let found = components(&still, w, h)
            .into_iter()
            .filter(|c| c.len() >= MIN_PIXELS)
            .map(|pixels| self.describe(&pixels, &strength))
            .collect::<Vec<_>>();
        self.match_objects(found);
        &self.objects
    }

    /// The static objects of the last frame.
    pub fn objects(&self) -> &[StaticObject] {
        &self.objects
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
            if let Some(s) = self.changed_since[i] {
                since.push(s);
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

    /// Keeps ids and appearance times of objects seen on the previous frame.
    fn match_objects(&mut self, found: Vec<(BBox, f32, f64, f32)>) {
        let previous = std::mem::take(&mut self.objects);
        for (bbox, area, since, confidence) in found {
            let since =
                DateTime::from_timestamp_millis((since * 1000.0) as i64).unwrap_or_default();
            let prev = previous
                .iter()
                .filter(|p| p.bbox.iou(&bbox) > 0.3)
                .max_by(|a, b| a.bbox.iou(&bbox).total_cmp(&b.bbox.iou(&bbox)));
            let (id, since) = match prev {
                Some(p) => (p.id, p.since.min(since)),
                None => {
                    self.next_id += 1;
                    (self.next_id - 1, since)
                }
            };
            self.objects.push(StaticObject {
                id,
                bbox,
                area,
                since,
                confidence,
            });
        }
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

fn dilate(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    neighbourhood(m, w, h, |any, _all| any)
}

fn erode(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    neighbourhood(m, w, h, |_any, all| all)
}

/// A 3x3 filter: `f(any set, all set)` over each pixel's neighbourhood (clipped at edges).
fn neighbourhood(m: &[bool], w: usize, h: usize, f: impl Fn(bool, bool) -> bool) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            let (mut any, mut all) = (false, true);
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    let v = m[yy * w + xx];
                    any |= v;
                    all &= v;
                }
            }
            out[y * w + x] = f(any, all);
        }
    }
    out
}

/// Fills pinholes (texture inside a pile that happens to match the background).
fn close(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    erode(&dilate(m, w, h), w, h)
}

/// Removes specks (noise, compression).
fn open(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    dilate(&erode(m, w, h), w, h)
}

/// 4-connected components of the set pixels.
fn components(m: &[bool], w: usize, h: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    for start in 0..w * h {
        if !m[start] || seen[start] {
            continue;
        }
        let mut stack = vec![start];
        seen[start] = true;
        let mut comp = Vec::new();
        while let Some(i) = stack.pop() {
            comp.push(i);
            let (x, y) = (i % w, i / w);
            let mut push = |j: usize| {
                if m[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < w {
                push(i + 1);
            }
            if y > 0 {
                push(i - w);
            }
            if y + 1 < h {
                push(i + w);
            }
        }
        out.push(comp);
    }
    out
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
                .update(at(s), &frame(s, 1.0, s >= 30.0, &mut rng), &[])
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
                &[],
            );
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
            let gain = if s < 60.0 {
                1.0 - 0.35 * s as f32 / 60.0
            } else if s < 120.0 {
                0.65 + 0.7 * (s as f32 - 60.0) / 60.0
            } else {
                1.35
            };
            let objs = map.update(at(s), &frame(s, gain, false, &mut rng), &[]);
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
            let objs = map.update(at(s), &img, &[]);
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
            let objs = map.update(at(s), &frame(s, 1.0, s >= 10.0, &mut rng), &[person]);
            assert!(objs.is_empty(), "{objs:?}");
        }
    }

    #[test]
    fn morphology_and_components() {
        let (w, h) = (6, 5);
        let mut m = vec![false; w * h];
        for y in 1..4 {
            for x in 1..4 {
                m[y * w + x] = true;
            }
        }
        m[5] = true; // a speck in the corner
        let cleaned = open(&m, w, h);
        let comps = components(&cleaned, w, h);
        assert_eq!(comps.len(), 1);
        assert_eq!(comps[0].len(), 9);
    }
}
