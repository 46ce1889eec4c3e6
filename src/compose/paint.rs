//! Painting one frame: background, feathered object crops far-to-near, lighting gain, sensor noise.

use image::imageops::{self, FilterType};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{load_photo, ComposeError, Scenario};

/// Pixels over which a pasted crop fades into the background, so its edges do not look cut.
const FEATHER_PX: f32 = 3.0;

/// An object crop at its on-screen size, with an alpha that fades at the edges.
struct Sprite {
    rgb: RgbImage,
    alpha: Vec<f32>,
}

/// The scenario's pictures, prepared once.
pub(super) struct Stage {
    background: RgbImage,
    sprites: Vec<Sprite>,
}

impl Stage {
    /// Loads and scales the background and every crop.
    pub(super) fn load(sc: &Scenario) -> Result<Self, ComposeError> {
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
            let rgb = imageops::resize(&crop, sw, sh, FilterType::CatmullRom);
            sprites.push(Sprite {
                alpha: feather(sw, sh),
                rgb,
            });
        }
        Ok(Self {
            background,
            sprites,
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
    pub(super) fn painter(&self, seed: u64, noise_sigma: f32) -> Painter<'_> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = gaussian_table(&mut rng, noise_sigma);
        Painter {
            stage: self,
            rng,
            noise,
        }
    }
}

/// Paints frames in order.
pub(super) struct Painter<'a> {
    stage: &'a Stage,
    rng: ChaCha8Rng,
    noise: Vec<f32>,
}

impl Painter<'_> {
    /// The next frame, with brightness `gain`; `position(k)` gives object k's
    /// `(x_centre, y_bottom)` or None when it is off screen.
    pub(super) fn frame(
        &mut self,
        gain: f32,
        position: impl Fn(usize) -> Option<(f64, f64)>,
    ) -> RgbImage {
        let mut img = self.stage.background.clone();
        let (w, h) = (img.width() as f64, img.height() as f64);
        let mut visible: Vec<(usize, f64, f64)> = (0..self.stage.sprites.len())
            .filter_map(|k| position(k).map(|(x, y)| (k, x, y)))
            .collect();
        // Far to near: an object lower in the picture is closer and covers the others.
        visible.sort_by(|a, b| a.2.total_cmp(&b.2));
        for (k, x, y) in visible {
            let s = &self.stage.sprites[k];
            let left = (x * w - s.rgb.width() as f64 / 2.0).round() as i64;
            let top = (y * h - s.rgb.height() as f64).round() as i64;
            paste(&mut img, s, left, top);
        }
        self.finish(&mut img, gain);
        img
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
