//! Fitting a frame into the model input: resize (bilinear, like OpenCV's INTER_LINEAR, so results
//! match references computed with OpenCV), pad, reorder channels, normalize, NCHW.

use image::RgbImage;

use super::manifest::{ColorOrder, InputSpec, ResizeMode};

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

/// Writes `img` into `out` (length 3·W·H, NCHW) as the spec says and returns the transform.
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
    let norm = |c: usize, v: f32| (v - spec.mean[c]) / spec.std[c];
    for c in 0..3 {
        let pad = norm(c, spec.pad_value);
        out[c * plane..(c + 1) * plane].fill(pad);
    }
    let xs = axis_taps(w, nw);
    let ys = axis_taps(h, nh);
    let raw = img.as_raw();
    let stride = w as usize * 3;
    for (dy, &(y0, y1, fy)) in ys.iter().enumerate() {
        let row0 = &raw[y0 * stride..(y0 + 1) * stride];
        let row1 = &raw[y1 * stride..(y1 + 1) * stride];
        let base = (dy + oy as usize) * iw as usize + ox as usize;
        for (dx, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let ch = src[c];
                let p00 = row0[x0 * 3 + ch] as f32;
                let p01 = row0[x1 * 3 + ch] as f32;
                let p10 = row1[x0 * 3 + ch] as f32;
                let p11 = row1[x1 * 3 + ch] as f32;
                let top = p00 + (p01 - p00) * fx;
                let bottom = p10 + (p11 - p10) * fx;
                // Round like the uint8 result of OpenCV's resize.
                let v = (top + (bottom - top) * fy).round();
                out[c * plane + base + dx] = norm(c, v);
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

/// For each destination index: the two source indices and the weight of the second
/// (half-pixel centres, edges clamped, as OpenCV's INTER_LINEAR).
fn axis_taps(src: u32, dst: u32) -> Vec<(usize, usize, f32)> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|d| {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src as usize - 1);
            let i1 = (i0 + 1).min(src as usize - 1);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resize: ResizeMode) -> InputSpec {
        InputSpec {
            name: None,
            size: [8, 8],
            color: ColorOrder::Bgr,
            resize,
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
}
