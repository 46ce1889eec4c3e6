//! Fitting a frame into the model input: resize with the interpolation the model's reference
//! used (OpenCV's INTER_LINEAR, INTER_AREA or INTER_CUBIC, reproduced so our results match
//! references computed with OpenCV), pad, reorder channels, normalize, NCHW or NHWC.

use image::RgbImage;

use super::manifest::{ColorOrder, InputSpec, Interpolation, ResizeMode, TensorOrder};

/// How input coordinates map back to frame pixels: `frame = (input - offset) / scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputTransform {
    /// Horizontal scale factor, frame to input.
    pub scale_x: f32,
    /// Vertical scale factor, frame to input.
    pub scale_y: f32,
    /// Horizontal offset of the pasted image in the input.
    pub offset_x: f32,
    /// Vertical offset of the pasted image in the input.
    pub offset_y: f32,
}

impl InputTransform {
    /// Maps a box from input coordinates back to frame pixels.
    pub fn to_frame(&self, b: crate::geometry::BBox) -> crate::geometry::BBox {
        crate::geometry::BBox::new(
            (b.x1 - self.offset_x) / self.scale_x,
            (b.y1 - self.offset_y) / self.scale_y,
            (b.x2 - self.offset_x) / self.scale_x,
            (b.y2 - self.offset_y) / self.scale_y,
        )
    }
}

/// Writes `img` into `out` (length 3·W·H, in the spec's order) and returns the transform.
pub fn prepare(img: &RgbImage, spec: &InputSpec, out: &mut Vec<f32>) -> InputTransform {
    let [iw, ih] = spec.size;
    let (w, h) = img.dimensions();
    let (nw, nh, ox, oy, sx, sy) = match spec.resize {
        ResizeMode::Stretch => (iw, ih, 0, 0, iw as f32 / w as f32, ih as f32 / h as f32),
        ResizeMode::LetterboxTopLeft | ResizeMode::LetterboxCenter => {
            let r = (iw as f32 / w as f32).min(ih as f32 / h as f32);
            let nw = ((w as f32 * r) as u32).clamp(1, iw);
            let nh = ((h as f32 * r) as u32).clamp(1, ih);
            let (ox, oy) = if spec.resize == ResizeMode::LetterboxCenter {
                ((iw - nw) / 2, (ih - nh) / 2)
            } else {
                (0, 0)
            };
            // Boxes map back with r, as the references (YOLOX, NanoDet) do.
            (nw, nh, ox, oy, r, r)
        }
    };
    let plane = (iw * ih) as usize;
    out.clear();
    out.resize(plane * 3, 0.0);
    // Channel c of the model reads channel `src[c]` of our RGB frame.
    let src = match spec.color {
        ColorOrder::Rgb => [0usize, 1, 2],
        ColorOrder::Bgr => [2usize, 1, 0],
    };
    let inv_std = spec.std.map(|v| 1.0 / v);
    let norm = |c: usize, v: f32| (v - spec.mean[c]) * inv_std[c];
    for c in 0..3 {
        let pad = norm(c, spec.pad_value);
        match spec.order {
            TensorOrder::Nchw => out[c * plane..(c + 1) * plane].fill(pad),
            TensorOrder::Nhwc => out.iter_mut().skip(c).step_by(3).for_each(|v| *v = pad),
        }
    }
    let resized = resample(img, nw, nh, spec.interpolation);
    let (nw, nh, iw) = (nw as usize, nh as usize, iw as usize);
    let (ox, oy) = (ox as usize, oy as usize);
    match spec.order {
        // One output plane at a time, written in order.
        TensorOrder::Nchw => {
            for (c, &ch) in src.iter().enumerate() {
                let (mean, scale) = (spec.mean[c], inv_std[c]);
                for y in 0..nh {
                    let row = &resized[y * nw * 3..(y + 1) * nw * 3];
                    let base = c * plane + (y + oy) * iw + ox;
                    for (o, px) in out[base..base + nw].iter_mut().zip(row.chunks_exact(3)) {
                        *o = (px[ch] - mean) * scale;
                    }
                }
            }
        }
        TensorOrder::Nhwc => {
            for y in 0..nh {
                let row = &resized[y * nw * 3..(y + 1) * nw * 3];
                let base = ((y + oy) * iw + ox) * 3;
                for (o, px) in out[base..base + nw * 3]
                    .chunks_exact_mut(3)
                    .zip(row.chunks_exact(3))
                {
                    for c in 0..3 {
                        o[c] = norm(c, px[src[c]]);
                    }
                }
            }
        }
    }
    InputTransform {
        scale_x: sx,
        scale_y: sy,
        offset_x: ox as f32,
        offset_y: oy as f32,
    }
}

/// Source indices and weights that make one destination pixel along an axis.
type Taps = Vec<Vec<(usize, f32)>>;

/// The same taps laid out flat (destination `d` uses entries `offsets[d]..offsets[d + 1]`), so
/// the inner loops walk contiguous memory.
struct FlatTaps {
    offsets: Vec<usize>,
    index: Vec<usize>,
    weight: Vec<f32>,
}

impl From<Taps> for FlatTaps {
    fn from(t: Taps) -> Self {
        let mut f = FlatTaps {
            offsets: vec![0],
            index: Vec::new(),
            weight: Vec::new(),
        };
        for taps in t {
            for (i, w) in taps {
                f.index.push(i);
                f.weight.push(w);
            }
            f.offsets.push(f.index.len());
        }
        f
    }
}

/// Resizes to `nw`x`nh` in two separable passes; returns RGB values rounded to 0..255 like the
/// uint8 result of OpenCV's `resize`.
fn resample(img: &RgbImage, nw: u32, nh: u32, how: Interpolation) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let xs = FlatTaps::from(taps(w, nw, how));
    let ys = taps(h, nh, how);
    let raw = img.as_raw();
    let (w, nw) = (w as usize, nw as usize);
    // Horizontal pass over the source rows the vertical pass needs.
    let mut needed = vec![false; h as usize];
    ys.iter().flatten().for_each(|&(i, _)| needed[i] = true);
    let mut rows = vec![0f32; h as usize * nw * 3];
    for (y, _) in needed.iter().enumerate().filter(|(_, n)| **n) {
        let src = &raw[y * w * 3..(y + 1) * w * 3];
        let dst = &mut rows[y * nw * 3..(y + 1) * nw * 3];
        for (dx, px) in dst.chunks_exact_mut(3).enumerate() {
            let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
            for k in xs.offsets[dx]..xs.offsets[dx + 1] {
                let (s, wt) = (xs.index[k] * 3, xs.weight[k]);
                r += src[s] as f32 * wt;
                g += src[s + 1] as f32 * wt;
                b += src[s + 2] as f32 * wt;
            }
            px[0] = r;
            px[1] = g;
            px[2] = b;
        }
    }
    let mut out = vec![0f32; nh as usize * nw * 3];
    for (dy, t) in ys.iter().enumerate() {
        let dst = &mut out[dy * nw * 3..(dy + 1) * nw * 3];
        for &(sy, wt) in t {
            let row = &rows[sy * nw * 3..(sy + 1) * nw * 3];
            for (d, s) in dst.iter_mut().zip(row) {
                *d += s * wt;
            }
        }
        for v in dst.iter_mut() {
            *v = v.round().clamp(0.0, 255.0);
        }
    }
    out
}

/// Per destination index along one axis, the source taps, as OpenCV computes them
/// (half-pixel centres, edges clamped).
fn taps(src: u32, dst: u32, how: Interpolation) -> Taps {
    let scale = src as f64 / dst as f64;
    let last = src as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last) as usize;
    match how {
        Interpolation::Area if scale > 1.0 => (0..dst)
            .map(|d| {
                // The source interval this pixel covers, each source pixel weighted by overlap.
                let (a, b) = (d as f64 * scale, (d + 1) as f64 * scale);
                let mut t = Vec::new();
                let mut i = a.floor() as i64;
                while (i as f64) < b {
                    let overlap = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
                    if overlap > 1e-9 {
                        t.push((clamp(i), (overlap / scale) as f32));
                    }
                    i += 1;
                }
                t
            })
            .collect(),
        Interpolation::Cubic => (0..dst)
            .map(|d| {
                let s = (d as f64 + 0.5) * scale - 0.5;
                let i = s.floor() as i64;
                let f = s - i as f64;
                cubic_weights(f)
                    .iter()
                    .enumerate()
                    .map(|(k, &wt)| (clamp(i - 1 + k as i64), wt as f32))
                    .collect()
            })
            .collect(),
        // Linear, and Area when enlarging (OpenCV falls back to bilinear there).
        _ => (0..dst)
            .map(|d| {
                let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as i64).min(last);
                let f = (s - i0 as f64) as f32;
                vec![(clamp(i0), 1.0 - f), (clamp(i0 + 1), f)]
            })
            .collect(),
    }
}

/// OpenCV's bicubic kernel (A = -0.75) at fractional offset `x`.
fn cubic_weights(x: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::manifest::InputType;

    fn spec(resize: ResizeMode) -> InputSpec {
        InputSpec {
            name: None,
            size: [8, 8],
            color: ColorOrder::Bgr,
            resize,
            interpolation: Interpolation::Linear,
            order: TensorOrder::Nchw,
            dtype: InputType::Float32,
            pad_value: 114.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    #[test]
    fn letterbox_pads_and_swaps_channels() {
        let img = RgbImage::from_pixel(16, 8, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        let t = prepare(&img, &spec(ResizeMode::LetterboxTopLeft), &mut out);
        assert_eq!(t.scale_x, 0.5);
        // Top-left pixel: blue first (BGR).
        assert_eq!((out[0], out[64], out[128]), (30.0, 20.0, 10.0));
        // Bottom rows are padding.
        assert_eq!(out[7 * 8], 114.0);
        let b = t.to_frame(crate::geometry::BBox::new(1.0, 1.0, 2.0, 2.0));
        assert_eq!(b, crate::geometry::BBox::new(2.0, 2.0, 4.0, 4.0));
    }

    #[test]
    fn centered_letterbox_offsets() {
        let img = RgbImage::from_pixel(16, 8, image::Rgb([1, 2, 3]));
        let mut out = Vec::new();
        let t = prepare(&img, &spec(ResizeMode::LetterboxCenter), &mut out);
        assert_eq!((t.offset_x, t.offset_y), (0.0, 2.0));
        assert_eq!(out[0], 114.0);
        assert_eq!(out[2 * 8], 3.0);
    }

    #[test]
    fn nhwc_interleaves_channels() {
        let img = RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        let mut s = spec(ResizeMode::Stretch);
        s.order = TensorOrder::Nhwc;
        s.color = ColorOrder::Rgb;
        let mut out = Vec::new();
        prepare(&img, &s, &mut out);
        assert_eq!(&out[..6], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn area_averages_blocks_when_halving() {
        // A 4x1 row 0, 100, 200, 50 halved: (0+100)/2, (200+50)/2.
        let mut img = RgbImage::new(4, 1);
        for (x, v) in [0u8, 100, 200, 50].iter().enumerate() {
            img.put_pixel(x as u32, 0, image::Rgb([*v; 3]));
        }
        let r = resample(&img, 2, 1, Interpolation::Area);
        assert_eq!((r[0], r[3]), (50.0, 125.0));
        // Linear at exactly half samples between the same pairs.
        let l = resample(&img, 2, 1, Interpolation::Linear);
        assert_eq!((l[0], l[3]), (50.0, 125.0));
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        for f in [0.0, 0.25, 0.5, 0.9] {
            let w = cubic_weights(f);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }
}
