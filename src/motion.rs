//! Motion: what moves at the instant of a sampled frame, from its difference with the frame
//! decoded right after it (when every frame is decoded, a few tens of milliseconds later).
//!
//! A parked car does not change in 40 ms; a car driving past, a walker or a waving arm does.
//! The tracker uses it to keep moving things from counting as at rest, and the static-change
//! map to keep what moved from being learned into the background.

use image::GrayImage;
use opencv::core::{self as cv, Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use crate::geometry::BBox;
use crate::picture::{self, Result};

/// Difference in grey levels (after a light blur, with the brightness of the two frames
/// matched) that counts as motion; sensor noise and compression stay below it.
const THRESHOLD: f64 = 14.0;

/// How far the whole picture moved between two small grey pictures of a camera, in their
/// pixels: a camera on a pole that sways in the wind, or a hand-held one. Measured by phase
/// correlation; `(0, 0)` below a pixel or when the pictures do not agree on a shift.
pub fn camera_shift(before: &GrayImage, now: &GrayImage) -> Result<(f32, f32)> {
    let as_float = |g: &GrayImage| -> Result<Mat> {
        let mut f = Mat::default();
        picture::gray_view(g)?.convert_to(&mut f, cv::CV_32F, 1.0, 0.0)?;
        Ok(f)
    };
    picture::shift_between(&as_float(before)?, &as_float(now)?, 0.75)
}

/// Where things move in one frame, on the small grey picture's grid.
#[derive(Debug, Clone)]
pub struct MotionMap {
    moving: GrayImage,
}

impl MotionMap {
    /// The motion between a frame and the one that followed it (both small and grey, the same
    /// size); None when the sizes differ (the stream changed resolution).
    pub fn between(now: &GrayImage, next: &GrayImage) -> Result<Option<Self>> {
        if now.dimensions() != next.dimensions() {
            return Ok(None);
        }
        let blur = |g: &GrayImage| -> Result<Mat> {
            let mut out = Mat::default();
            imgproc::gaussian_blur_def(&picture::gray_view(g)?, &mut out, Size::new(3, 3), 0.0)?;
            Ok(out)
        };
        let (a, mut b) = (blur(now)?, blur(next)?);
        // A camera that shakes (wind, a hand-held phone) moves everything: line the two up.
        let as_float = |m: &Mat| -> Result<Mat> {
            let mut f = Mat::default();
            m.convert_to(&mut f, cv::CV_32F, 1.0, 0.0)?;
            Ok(f)
        };
        let (dx, dy) = picture::shift_between(&as_float(&a)?, &as_float(&b)?, 0.5)?;
        if (dx, dy) != (0.0, 0.0) {
            let m = Mat::from_slice_2d(&[[1.0f64, 0.0, -dx as f64], [0.0, 1.0, -dy as f64]])?;
            let mut aligned = Mat::default();
            imgproc::warp_affine(
                &b,
                &mut aligned,
                &m,
                b.size()?,
                imgproc::INTER_LINEAR,
                cv::BORDER_REPLICATE,
                cv::Scalar::default(),
            )?;
            b = aligned;
        }
        // An exposure step between the two frames is not motion.
        let (ma, mb) = (cv::mean_def(&a)?[0], cv::mean_def(&b)?[0]);
        let mut b_matched = Mat::default();
        b.convert_to(
            &mut b_matched,
            -1,
            if mb > 1.0 { ma / mb } else { 1.0 },
            0.0,
        )?;
        let mut diff = Mat::default();
        cv::absdiff(&a, &b_matched, &mut diff)?;
        let mut mask = Mat::default();
        imgproc::threshold(&diff, &mut mask, THRESHOLD, 255.0, imgproc::THRESH_BINARY)?;
        // Lone pixels are noise; a moving object is a blob.
        let kernel = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, Size::new(2, 2))?;
        let mut opened = Mat::default();
        imgproc::morphology_ex_def(&mask, &mut opened, imgproc::MORPH_OPEN, &kernel)?;
        Ok(Some(Self {
            moving: picture::to_gray_image(&opened)?,
        }))
    }

    /// Share of the pixels inside a normalized box that move.
    pub fn fraction_in(&self, b: &BBox) -> f32 {
        let (w, h) = self.moving.dimensions();
        let x1 = ((b.x1 * w as f32).floor().max(0.0) as u32).min(w);
        let y1 = ((b.y1 * h as f32).floor().max(0.0) as u32).min(h);
        let x2 = ((b.x2 * w as f32).ceil().max(0.0) as u32).min(w).max(x1);
        let y2 = ((b.y2 * h as f32).ceil().max(0.0) as u32).min(h).max(y1);
        let total = ((x2 - x1) * (y2 - y1)) as f32;
        if total == 0.0 {
            return 0.0;
        }
        let mut moving = 0u32;
        for y in y1..y2 {
            for x in x1..x2 {
                moving += u32::from(self.moving.get_pixel(x, y)[0] > 0);
            }
        }
        moving as f32 / total
    }

    /// The mask (255 where something moves).
    pub fn mask(&self) -> &GrayImage {
        &self.moving
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A street with irregular texture (kerbs, cracks, markings: what lets the camera's own
    /// movement be told from a car's) and a car at `car_x`.
    fn street(car_x: u32) -> GrayImage {
        GrayImage::from_fn(320, 180, |x, y| {
            let h = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).rotate_left(7);
            let v = 70 + (h % 90) as u8 / 3 + if (x / 40 + y / 30) % 2 == 0 { 40 } else { 0 };
            if (car_x..car_x + 40).contains(&x) && (100..130).contains(&y) {
                image::Luma([30 + ((x - car_x) % 10) as u8 * 15])
            } else {
                image::Luma([v])
            }
        })
    }

    #[test]
    fn a_moving_car_moves_and_a_parked_one_does_not() {
        let m = MotionMap::between(&street(100), &street(104))
            .unwrap()
            .unwrap();
        let car = BBox::new(100.0 / 320.0, 100.0 / 180.0, 140.0 / 320.0, 130.0 / 180.0);
        assert!(m.fraction_in(&car) > 0.2, "{}", m.fraction_in(&car));
        let elsewhere = BBox::new(0.0, 0.0, 0.2, 0.3);
        assert_eq!(m.fraction_in(&elsewhere), 0.0);
        let still = MotionMap::between(&street(100), &street(100))
            .unwrap()
            .unwrap();
        assert_eq!(still.fraction_in(&car), 0.0);
    }

    #[test]
    fn a_swaying_camera_is_measured_and_a_still_one_is_not() {
        let before = street(100);
        // The whole picture 3 px to the right and 2 px down.
        let moved = GrayImage::from_fn(320, 180, |x, y| {
            *before.get_pixel(x.saturating_sub(3), y.saturating_sub(2))
        });
        let (dx, dy) = camera_shift(&before, &moved).unwrap();
        assert!(
            (dx - 3.0).abs() < 0.5 && (dy - 2.0).abs() < 0.5,
            "{dx} {dy}"
        );
        assert_eq!(camera_shift(&before, &before).unwrap(), (0.0, 0.0));
    }

    #[test]
    fn a_brightness_step_is_not_motion() {
        let a = street(100);
        let mut b = a.clone();
        b.pixels_mut()
            .for_each(|p| p[0] = (p[0] as f32 * 1.2) as u8);
        let m = MotionMap::between(&a, &b).unwrap().unwrap();
        assert!(m.fraction_in(&BBox::new(0.0, 0.0, 1.0, 1.0)) < 0.02);
    }
}
