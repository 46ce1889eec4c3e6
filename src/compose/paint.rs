//! Painting one frame: background, the shadows objects cast, feathered object crops far-to-near
//! (smaller with distance), swaying tree shadows, lighting gain, sensor noise, and last the
//! camera's on-screen clock (burned in after the sensor, so neither lighting nor noise touch it).

use image::imageops::{self, FilterType};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::collections::HashMap;

use chrono::Duration;

use super::{load_photo, ComposeError, Scenario};
use crate::evidence::Marker;

/// Pixels over which a pasted crop fades into the background, so its edges do not look cut.
const FEATHER_PX: f32 = 3.0;

/// An object crop at its on-screen size, with an alpha that fades at the edges.
struct Sprite {
    rgb: RgbImage,
    alpha: Vec<f32>,
}

/// The scenario's pictures, prepared once.
pub(super) struct Stage<'s> {
    sc: &'s Scenario,
    background: RgbImage,
    sprites: Vec<Sprite>,
    /// Per tree shadow: how much light its leaves leave, on a square of its diameter.
    leaves: Vec<(u32, Vec<f32>)>,
}

impl<'s> Stage<'s> {
    /// Loads and scales the background and every crop.
    pub(super) fn load(sc: &'s Scenario) -> Result<Self, ComposeError> {
        let bg = load_photo(&sc.background)?;
        let (w, h) = sc.size.unwrap_or([bg.width(), bg.height()]).into();
        let (w, h) = (w & !1, h & !1);
        let background = if (w, h) == bg.dimensions() {
            bg
        } else {
            imageops::resize(&bg, w, h, FilterType::Triangle)
        };
        let mut sprites = Vec::new();
        for o in &sc.objects {
            let photo = load_photo(&o.image)?;
            let [x1, y1, x2, y2] = o.crop.unwrap_or([0, 0, photo.width(), photo.height()]);
            if x2 > photo.width() || y2 > photo.height() {
                return Err(ComposeError::Scenario {
                    file: sc.dir.display().to_string(),
                    why: format!(
                        "object {}: crop {:?} is outside {} ({}x{})",
                        o.id,
                        [x1, y1, x2, y2],
                        o.image,
                        photo.width(),
                        photo.height()
                    ),
                });
            }
            let mut crop = imageops::crop_imm(&photo, x1, y1, x2 - x1, y2 - y1).to_image();
            if o.flip {
                crop = imageops::flip_horizontal(&crop);
            }
            let aspect = crop.width() as f64 / crop.height() as f64;
            let (sw, sh) = match (o.width, o.height) {
                (Some(fw), _) => {
                    let sw = fw * w as f64;
                    (sw, sw / aspect)
                }
                (None, Some(fh)) => {
                    let sh = fh * h as f64;
                    (sh * aspect, sh)
                }
                (None, None) => (crop.width() as f64, crop.height() as f64),
            };
            let (sw, sh) = ((sw.round() as u32).max(1), (sh.round() as u32).max(1));
            let mut rgb = imageops::resize(&crop, sw, sh, FilterType::CatmullRom);
            if (o.brightness - 1.0).abs() > 1e-6 {
                for v in rgb.as_mut().iter_mut() {
                    *v = (*v as f64 * o.brightness).round().clamp(0.0, 255.0) as u8;
                }
            }
            sprites.push(Sprite {
                alpha: feather(sw, sh),
                rgb,
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed ^ 0x7ee5);
        let leaves = sc
            .tree_shadows
            .iter()
            .map(|t| {
                let r = ((t.radius * w as f64).round() as u32).max(2);
                (r, dapple(r, t.darkness as f32, &mut rng))
            })
            .collect();
        Ok(Self {
            sc,
            background,
            sprites,
            leaves,
        })
    }

    /// Output frame size.
    pub(super) fn size(&self) -> (u32, u32) {
        self.background.dimensions()
    }

    /// On-screen size of each object, in scenario order.
    pub(super) fn sprite_sizes(&self) -> Vec<(u32, u32)> {
        self.sprites.iter().map(|s| s.rgb.dimensions()).collect()
    }

    /// A painter with its own deterministic noise.
    pub(super) fn painter(&self, seed: u64, noise_sigma: f32) -> Painter<'_, 's> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = gaussian_table(&mut rng, noise_sigma);
        Painter {
            stage: self,
            rng,
            noise,
            scaled: HashMap::new(),
            marker: self.sc.clock.map(|_| Marker::load()),
        }
    }
}

/// Paints frames in order.
pub(super) struct Painter<'a, 's> {
    stage: &'a Stage<'s>,
    rng: ChaCha8Rng,
    noise: Vec<f32>,
    /// Sprites resized for perspective, by object and scale in percent.
    scaled: HashMap<(usize, u32), Sprite>,
    /// Font for the on-screen clock.
    marker: Option<Marker>,
}

impl Painter<'_, '_> {
    /// The frame at `t` seconds, with brightness `gain`; `position(k)` gives object k's
    /// `(x_centre, y_bottom)` or None when it is off screen.
    pub(super) fn frame(
        &mut self,
        t: f64,
        gain: f32,
        position: impl Fn(usize) -> Option<(f64, f64)>,
    ) -> RgbImage {
        let sc = self.stage.sc;
        let mut img = self.stage.background.clone();
        let (w, h) = (img.width() as f64, img.height() as f64);
        let mut visible: Vec<(usize, f64, f64)> = (0..self.stage.sprites.len())
            .filter_map(|k| position(k).map(|(x, y)| (k, x, y)))
            .collect();
        // Far to near: an object lower in the picture is closer and covers the others.
        visible.sort_by(|a, b| a.2.total_cmp(&b.2));
        let placed: Vec<(usize, i64, i64, u32, u32)> = visible
            .iter()
            .map(|&(k, x, y)| {
                let s = self.sprite(k, y);
                let (sw, sh) = s.rgb.dimensions();
                let left = (x * w - sw as f64 / 2.0).round() as i64;
                let top = (y * h - sh as f64).round() as i64;
                (k, left, top, sw, sh)
            })
            .collect();
        // Shadows lie on the ground, under every object.
        for &(k, left, top, sw, sh) in &placed {
            if let Some(shadow) = sc.objects[k].shadow {
                cast_shadow(&mut img, &shadow, left, top, sw, sh);
            }
        }
        for &(k, left, top, _, _) in &placed {
            let y = visible.iter().find(|v| v.0 == k).map_or(1.0, |v| v.2);
            let s = self.sprite(k, y);
            paste(&mut img, s, left, top);
        }
        for (tree, (r, leaves)) in sc.tree_shadows.iter().zip(&self.stage.leaves) {
            let sway = tree.sway * w * (std::f64::consts::TAU * t / tree.period).sin();
            let cx = (tree.x * w + sway).round() as i64;
            let cy = (tree.y * h).round() as i64;
            darken(&mut img, *r, leaves, cx - *r as i64, cy - *r as i64);
        }
        self.finish(&mut img, gain);
        if let (Some(clock), Some(marker)) = (sc.clock, &self.marker) {
            let now = sc.start_time + Duration::milliseconds((t * 1000.0) as i64);
            let local = now.with_timezone(&chrono_tz::Asia::Shanghai);
            marker.overlay_text(
                &mut img,
                (clock.x * w) as i32,
                (clock.y * h) as i32,
                (clock.height * h) as f32,
                &local.format("%Y-%m-%d %H:%M:%S").to_string(),
                image::Rgb([245, 245, 245]),
            );
        }
        img
    }

    /// Object `k`'s sprite at the size it has with its bottom at `y`.
    fn sprite(&mut self, k: usize, y: f64) -> &Sprite {
        let base = &self.stage.sprites[k];
        let Some(p) = self.stage.sc.perspective else {
            return base;
        };
        let pct = (p.scale_at(y) * 100.0).round().max(1.0) as u32;
        if pct == 100 {
            return base;
        }
        self.scaled.entry((k, pct)).or_insert_with(|| {
            let f = pct as f64 / 100.0;
            let (bw, bh) = base.rgb.dimensions();
            let (sw, sh) = (
                ((bw as f64 * f).round() as u32).max(1),
                ((bh as f64 * f).round() as u32).max(1),
            );
            Sprite {
                rgb: imageops::resize(&base.rgb, sw, sh, FilterType::Triangle),
                alpha: feather(sw, sh),
            }
        })
    }

    /// Lighting gain and sensor noise over the whole picture.
    fn finish(&mut self, img: &mut RgbImage, gain: f32) {
        let n = self.noise.len();
        if n == 0 && (gain - 1.0).abs() < 1e-6 {
            return;
        }
        let mut offset = if n > 0 {
            self.rng.random_range(0..n)
        } else {
            0
        };
        let step = if n > 0 {
            self.rng.random_range(1..n.max(2)) | 1
        } else {
            0
        };
        for v in img.as_mut().iter_mut() {
            let noise = if n > 0 {
                offset = (offset + step) % n;
                self.noise[offset]
            } else {
                0.0
            };
            *v = (*v as f32 * gain + noise).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Darkens the ground where an object of `sw` x `sh` at (`left`, `top`) casts its shadow: a
/// soft-edged ellipse along its footprint, offset to one side.
fn cast_shadow(img: &mut RgbImage, s: &super::CastShadow, left: i64, top: i64, sw: u32, sh: u32) {
    let (w, h) = (sw as f64, sh as f64);
    let cx = left as f64 + w / 2.0 + s.dx * w;
    let cy = top as f64 + h - s.depth * h / 2.0;
    let (rx, ry) = ((s.length * w / 2.0).max(1.0), (s.depth * h / 2.0).max(1.0));
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    for y in ((cy - ry).floor() as i64).max(0)..((cy + ry).ceil() as i64).min(ih) {
        for x in ((cx - rx).floor() as i64).max(0)..((cx + rx).ceil() as i64).min(iw) {
            let d = ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2);
            if d >= 1.0 {
                continue;
            }
            // Full shadow inside, fading over the outer fifth.
            let strength = ((1.0 - d) / 0.2).min(1.0);
            let f = 1.0 - strength * (1.0 - s.darkness);
            let p = img.get_pixel_mut(x as u32, y as u32);
            for c in 0..3 {
                p[c] = (p[c] as f64 * f).round() as u8;
            }
        }
    }
}

/// A dappled shadow on a square of side `2 r`: the light left under leaves (1 in the gaps,
/// `darkness` under a leaf), soft at the edges and fading out of a disc.
fn dapple(r: u32, darkness: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let side = 2 * r;
    let leaves: Vec<(f32, f32, f32)> = (0..(r / 2).clamp(12, 120))
        .map(|_| {
            let a = rng.random_range(0.0..std::f32::consts::TAU);
            let d = rng.random_range(0.0f32..1.0).sqrt() * r as f32;
            let size = rng.random_range(0.08..0.2) * r as f32;
            (
                r as f32 + d * a.cos(),
                r as f32 + d * a.sin(),
                size.max(1.5),
            )
        })
        .collect();
    let mut light = vec![1.0f32; (side * side) as usize];
    for y in 0..side {
        for x in 0..side {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let from_centre = ((fx - r as f32).powi(2) + (fy - r as f32).powi(2)).sqrt() / r as f32;
            if from_centre >= 1.0 {
                continue;
            }
            let cover = leaves
                .iter()
                .map(|&(lx, ly, ls)| {
                    let d = ((fx - lx).powi(2) + (fy - ly).powi(2)).sqrt();
                    ((ls - d) / 1.5).clamp(0.0, 1.0)
                })
                .fold(0.0f32, f32::max);
            let edge = ((1.0 - from_centre) / 0.15).min(1.0);
            light[(y * side + x) as usize] = 1.0 - cover * edge * (1.0 - darkness);
        }
    }
    light
}

/// Multiplies the picture by a light map of side `2 r` with its top-left at (`left`, `top`).
fn darken(img: &mut RgbImage, r: u32, light: &[f32], left: i64, top: i64) {
    let side = (2 * r) as i64;
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    for sy in 0..side {
        let y = top + sy;
        if y < 0 || y >= ih {
            continue;
        }
        for sx in 0..side {
            let x = left + sx;
            if x < 0 || x >= iw {
                continue;
            }
            let f = light[(sy * side + sx) as usize];
            if f >= 1.0 {
                continue;
            }
            let p = img.get_pixel_mut(x as u32, y as u32);
            for c in 0..3 {
                p[c] = (p[c] as f32 * f).round() as u8;
            }
        }
    }
}

/// Alpha of a `w`x`h` crop: 1 inside, fading to 0 over `FEATHER_PX` at the edges.
fn feather(w: u32, h: u32) -> Vec<f32> {
    let mut a = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let edge = (x.min(w - 1 - x).min(y).min(h - 1 - y)) as f32 + 0.5;
            a.push((edge / FEATHER_PX).min(1.0));
        }
    }
    a
}

/// Blends a sprite onto `img` with its top-left at (`left`, `top`), clipped to the picture.
fn paste(img: &mut RgbImage, s: &Sprite, left: i64, top: i64) {
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let (sw, sh) = (s.rgb.width() as i64, s.rgb.height() as i64);
    for sy in 0..sh {
        let y = top + sy;
        if y < 0 || y >= ih {
            continue;
        }
        for sx in 0..sw {
            let x = left + sx;
            if x < 0 || x >= iw {
                continue;
            }
            let a = s.alpha[(sy * sw + sx) as usize];
            let src = s.rgb.get_pixel(sx as u32, sy as u32);
            let dst = img.get_pixel_mut(x as u32, y as u32);
            for c in 0..3 {
                dst[c] = (src[c] as f32 * a + dst[c] as f32 * (1.0 - a)).round() as u8;
            }
        }
    }
}

/// A table of Gaussian samples (Box-Muller) walked in a seeded order: per-pixel noise at a
/// fraction of the cost of drawing each sample.
fn gaussian_table(rng: &mut ChaCha8Rng, sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return Vec::new();
    }
    const N: usize = 1 << 16;
    let mut t = Vec::with_capacity(N);
    while t.len() < N {
        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt() * sigma;
        let th = std::f32::consts::TAU * u2;
        t.push(r * th.cos());
        t.push(r * th.sin());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feather_fades_only_at_edges() {
        let a = feather(10, 10);
        assert!(a[0] < 0.2);
        assert_eq!(a[5 * 10 + 5], 1.0);
    }

    #[test]
    fn noise_has_the_asked_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let t = gaussian_table(&mut rng, 3.0);
        let mean = t.iter().sum::<f32>() / t.len() as f32;
        let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / t.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var.sqrt() - 3.0).abs() < 0.1, "sigma {}", var.sqrt());
    }
}
