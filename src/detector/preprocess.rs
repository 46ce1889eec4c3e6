//! Fitting a frame into the model input as the model's reference does it with OpenCV: resize
//! with OpenCV's own `resize` (INTER_LINEAR, INTER_AREA or INTER_CUBIC, as the manifest says)
//! on a view of the frame, so the pixels are exactly those `cv2.resize` gives the reference;
//! then pad, reorder channels and normalize into the tensor in one pass, NCHW or NHWC.

use image::RgbImage;
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::manifest::{ColorOrder, InputSpec, Interpolation, ResizeMode, TensorOrder};

/// Why a frame could not be fitted into the model input.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The frame has no pixels.
    #[error("cannot fit an empty {0}x{1} frame into the model input")]
    Empty(u32, u32),
    /// OpenCV refused (resize, or viewing the frame).
    #[error("resizing the frame for the model input: {0}")]
    OpenCv(opencv::Error),
}

// By hand, not `#[from]`: the message already holds the cause, and a `source` would print it
// twice in an error chain.
impl From<opencv::Error> for PrepareError {
    fn from(e: opencv::Error) -> Self {
        Self::OpenCv(e)
    }
}

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
pub fn prepare(
    img: &RgbImage,
    spec: &InputSpec,
    out: &mut Vec<f32>,
) -> Result<InputTransform, PrepareError> {
    let [iw, ih] = spec.size;
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(PrepareError::Empty(w, h));
    }
    let (nw, nh, ox, oy, sx, sy) = match spec.resize {
        ResizeMode::Stretch => (iw, ih, 0, 0, iw as f32 / w as f32, ih as f32 / h as f32),
        ResizeMode::LetterboxTopLeft | ResizeMode::LetterboxCenter => {
            // In f64 and truncated, as the references' `int(w * r)` in Python: f32 gives a
            // pixel less on some sizes (2592x1936 -> 415 wide instead of 416).
            let r = (ih as f64 / h as f64).min(iw as f64 / w as f64);
            let nw = ((w as f64 * r) as u32).clamp(1, iw);
            let nh = ((h as f64 * r) as u32).clamp(1, ih);
            let (ox, oy) = if spec.resize == ResizeMode::LetterboxCenter {
                ((iw - nw) / 2, (ih - nh) / 2)
            } else {
                (0, 0)
            };
            // Boxes map back with r, as the references (YOLOX, NanoDet) do.
            (nw, nh, ox, oy, r as f32, r as f32)
        }
    };
    let resized;
    let pixels: &[u8] = if (nw, nh) == (w, h) {
        img.as_raw()
    } else {
        let mut m = Mat::default();
        imgproc::resize(
            &crate::picture::rgb_view(img)?,
            &mut m,
            Size::new(nw as i32, nh as i32),
            0.0,
            0.0,
            match spec.interpolation {
                Interpolation::Linear => imgproc::INTER_LINEAR,
                Interpolation::Area => imgproc::INTER_AREA,
                Interpolation::Cubic => imgproc::INTER_CUBIC,
            },
        )?;
        resized = m;
        resized.data_bytes()?
    };
    // Model channel c reads channel src[c] of our RGB pixels; lut[c][v] is byte v normalized.
    let src = match spec.color {
        ColorOrder::Rgb => [0usize, 1, 2],
        ColorOrder::Bgr => [2usize, 1, 0],
    };
    let norm = |c: usize, v: f32| (v - spec.mean[c]) / spec.std[c];
    let lut: [[f32; 256]; 3] = std::array::from_fn(|c| std::array::from_fn(|v| norm(c, v as f32)));
    let pad: [f32; 3] = std::array::from_fn(|c| norm(c, spec.pad_value));
    let (iw, ih, nw, nh) = (iw as usize, ih as usize, nw as usize, nh as usize);
    let (ox, oy) = (ox as usize, oy as usize);
    let plane = iw * ih;
    out.clear();
    out.resize(plane * 3, 0.0);
    // Every element written once, row by row: padding, or a resized pixel.
    match spec.order {
        TensorOrder::Nchw => {
            let (p0, rest) = out.split_at_mut(plane);
            let (p1, p2) = rest.split_at_mut(plane);
            let rows = p0
                .chunks_exact_mut(iw)
                .zip(p1.chunks_exact_mut(iw))
                .zip(p2.chunks_exact_mut(iw));
            for (y, ((r0, r1), r2)) in rows.enumerate() {
                let Some(line) = y
                    .checked_sub(oy)
                    .filter(|&sy| sy < nh)
                    .map(|sy| &pixels[sy * nw * 3..(sy + 1) * nw * 3])
                else {
                    r0.fill(pad[0]);
                    r1.fill(pad[1]);
                    r2.fill(pad[2]);
                    continue;
                };
                for (c, r) in [&mut *r0, &mut *r1, &mut *r2].into_iter().enumerate() {
                    r[..ox].fill(pad[c]);
                    r[ox + nw..].fill(pad[c]);
                }
                let dst = r0[ox..ox + nw]
                    .iter_mut()
                    .zip(&mut r1[ox..ox + nw])
                    .zip(&mut r2[ox..ox + nw]);
                for (((o0, o1), o2), px) in dst.zip(line.chunks_exact(3)) {
                    *o0 = lut[0][px[src[0]] as usize];
                    *o1 = lut[1][px[src[1]] as usize];
                    *o2 = lut[2][px[src[2]] as usize];
                }
            }
        }
        TensorOrder::Nhwc => {
            for (y, row) in out.chunks_exact_mut(iw * 3).enumerate() {
                let line = y
                    .checked_sub(oy)
                    .filter(|&sy| sy < nh)
                    .map(|sy| &pixels[sy * nw * 3..(sy + 1) * nw * 3]);
                for (x, o) in row.chunks_exact_mut(3).enumerate() {
                    let px = line.and_then(|l| {
                        x.checked_sub(ox)
                            .filter(|&sx| sx < nw)
                            .map(|sx| &l[sx * 3..sx * 3 + 3])
                    });
                    for c in 0..3 {
                        o[c] = px.map_or(pad[c], |p| lut[c][p[src[c]] as usize]);
                    }
                }
            }
        }
    }
    Ok(InputTransform {
        scale_x: sx,
        scale_y: sy,
        offset_x: ox as f32,
        offset_y: oy as f32,
    })
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
        let t = prepare(&img, &spec(ResizeMode::LetterboxTopLeft), &mut out).unwrap();
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
        let t = prepare(&img, &spec(ResizeMode::LetterboxCenter), &mut out).unwrap();
        assert_eq!((t.offset_x, t.offset_y), (0.0, 2.0));
        assert_eq!(out[0], 114.0);
        assert_eq!(out[2 * 8], 3.0);
        assert_eq!(out[6 * 8], 114.0);
    }

    #[test]
    fn letterbox_size_is_truncated_as_the_python_references_do() {
        // int(450 * (416 / 800)) = 234 in f64; f32 arithmetic gives 233.
        let img = RgbImage::from_pixel(800, 450, image::Rgb([10, 20, 30]));
        let mut s = spec(ResizeMode::LetterboxTopLeft);
        s.size = [416, 416];
        let mut out = Vec::new();
        prepare(&img, &s, &mut out).unwrap();
        assert_eq!(out[233 * 416], 30.0);
        assert_eq!(out[234 * 416], 114.0);
    }

    #[test]
    fn nhwc_interleaves_channels_and_pads() {
        let img = RgbImage::from_pixel(8, 4, image::Rgb([1, 2, 3]));
        let mut s = spec(ResizeMode::LetterboxCenter);
        s.order = TensorOrder::Nhwc;
        s.color = ColorOrder::Rgb;
        let mut out = Vec::new();
        prepare(&img, &s, &mut out).unwrap();
        assert_eq!(&out[..3], &[114.0; 3]);
        assert_eq!(&out[2 * 24..2 * 24 + 6], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn normalizes_with_mean_and_std_per_channel() {
        let img = RgbImage::from_pixel(8, 8, image::Rgb([255, 0, 51]));
        let mut s = spec(ResizeMode::Stretch);
        s.color = ColorOrder::Rgb;
        s.mean = [127.5, 0.0, 0.0];
        s.std = [127.5, 1.0, 255.0];
        let mut out = Vec::new();
        prepare(&img, &s, &mut out).unwrap();
        assert_eq!((out[0], out[64], out[128]), (1.0, 0.0, 0.2));
    }

    #[test]
    fn area_averages_blocks_when_halving() {
        // A 4x1 row 0, 100, 200, 50 halved: (0+100)/2, (200+50)/2.
        let mut img = RgbImage::new(4, 1);
        for (x, v) in [0u8, 100, 200, 50].iter().enumerate() {
            img.put_pixel(x as u32, 0, image::Rgb([*v; 3]));
        }
        let mut s = spec(ResizeMode::Stretch);
        s.size = [2, 1];
        s.interpolation = Interpolation::Area;
        let mut out = Vec::new();
        prepare(&img, &s, &mut out).unwrap();
        assert_eq!((out[0], out[1]), (50.0, 125.0));
        // Linear at exactly half samples between the same pairs.
        s.interpolation = Interpolation::Linear;
        prepare(&img, &s, &mut out).unwrap();
        assert_eq!((out[0], out[1]), (50.0, 125.0));
    }

    #[test]
    fn an_empty_frame_is_an_error() {
        let mut out = Vec::new();
        let err = prepare(&RgbImage::new(0, 0), &spec(ResizeMode::Stretch), &mut out);
        assert!(matches!(err, Err(PrepareError::Empty(0, 0))));
    }
}
