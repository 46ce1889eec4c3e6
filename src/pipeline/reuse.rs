//! Skipping inference on a still street: when nothing in a camera's zones changed since the
//! last detection, its detections stand for this frame too (`full_detect_seconds`).
//!
//! A parked car or a pile does not move; what matters is what arrives, leaves or moves in the
//! zones, and that changes the pixels there. The small grey frames the source already makes are
//! compared over the zones' bounding boxes (with a margin: a vehicle whose ground point is in a
//! zone sticks out of it); a full pass runs at least every `full_detect_seconds` whatever the
//! pixels say, so slow drift or a change the comparison misses is caught within that time.

use chrono::{DateTime, Utc};
use image::GrayImage;

use crate::detector::Detection;
use crate::geometry::Point;

/// A pixel changed when its grey level moved more than this (sensor noise and compression
/// stay well under it).
const PIXEL_STEP: u8 = 24;
/// The zones changed when more than this fraction of their pixels did (0.3 %: a walker far
/// away at 320 px wide is a few dozen pixels).
const CHANGED_FRACTION: f64 = 0.003;
/// Margin around each zone's bounding box, fraction of the frame.
const MARGIN: f32 = 0.08;

/// The last frame the model ran on.
#[derive(Debug, Clone)]
pub struct LastInference {
    /// Its stream time.
    pub time: DateTime<Utc>,
    /// Small and grey.
    pub small: GrayImage,
    /// What the model found.
    pub detections: Vec<Detection>,
}

impl LastInference {
    /// Whether its detections may stand for a frame at `time` whose small picture is `small`:
    /// the last full pass is younger than `full_every` seconds and nothing changed in `zones`.
    pub fn still_holds(
        &self,
        time: DateTime<Utc>,
        small: &GrayImage,
        zones: &[&[Point]],
        full_every: f64,
    ) -> bool {
        let age = (time - self.time).num_milliseconds() as f64 / 1000.0;
        full_every > 0.0
            && age >= 0.0
            && age < full_every
            && !zones.is_empty()
            && !changed(&self.small, small, zones)
    }
}

/// Whether enough pixels changed between two small frames inside the zones' boxes.
fn changed(before: &GrayImage, now: &GrayImage, zones: &[&[Point]]) -> bool {
    if before.dimensions() != now.dimensions() {
        return true;
    }
    let (w, h) = now.dimensions();
    let (mut area, mut moved) = (0u64, 0u64);
    // Overlapping zones count their shared pixels twice: harmless for a fraction.
    for zone in zones {
        let Some((x1, y1, x2, y2)) = pixel_box(zone, w, h) else {
            continue;
        };
        for y in y1..y2 {
            for x in x1..x2 {
                let a = before.get_pixel(x, y).0[0];
                let b = now.get_pixel(x, y).0[0];
                area += 1;
                moved += u64::from(a.abs_diff(b) > PIXEL_STEP);
            }
        }
    }
    area == 0 || moved as f64 > CHANGED_FRACTION * area as f64
}

/// A zone's bounding box with the margin, in pixels of a `w` x `h` picture.
fn pixel_box(zone: &[Point], w: u32, h: u32) -> Option<(u32, u32, u32, u32)> {
    let xs = zone.iter().map(|p| p.x);
    let ys = zone.iter().map(|p| p.y);
    let (x1, x2) = (
        xs.clone().fold(f32::INFINITY, f32::min),
        xs.fold(f32::NEG_INFINITY, f32::max),
    );
    let (y1, y2) = (
        ys.clone().fold(f32::INFINITY, f32::min),
        ys.fold(f32::NEG_INFINITY, f32::max),
    );
    if !(x1.is_finite() && y1.is_finite() && x2.is_finite() && y2.is_finite()) {
        return None;
    }
    let px = |v: f32, size: u32| ((v.clamp(0.0, 1.0) * size as f32) as u32).min(size);
    let b = (
        px(x1 - MARGIN, w),
        px(y1 - MARGIN, h),
        px(x2 + MARGIN, w),
        px(y2 + MARGIN, h),
    );
    (b.0 < b.2 && b.1 < b.3).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    fn zone() -> Vec<Point> {
        vec![
            Point { x: 0.5, y: 0.5 },
            Point { x: 0.9, y: 0.5 },
            Point { x: 0.9, y: 0.9 },
            Point { x: 0.5, y: 0.9 },
        ]
    }

    fn last(small: GrayImage) -> LastInference {
        LastInference {
            time: DateTime::UNIX_EPOCH,
            small,
            detections: Vec::new(),
        }
    }

    #[test]
    fn noise_and_changes_outside_the_zones_keep_the_detections() {
        let before = GrayImage::from_fn(320, 180, |x, y| Luma([((x * 7 + y * 3) % 200) as u8]));
        let mut now = before.clone();
        // Noise everywhere, under the pixel step.
        for (i, p) in now.pixels_mut().enumerate() {
            p.0[0] = p.0[0].saturating_add((i % 9) as u8);
        }
        // Something big moves top left, far from the zone.
        for y in 0..60 {
            for x in 0..100 {
                now.put_pixel(x, y, Luma([255]));
            }
        }
        let z = zone();
        let at = DateTime::UNIX_EPOCH + chrono::Duration::seconds(4);
        assert!(last(before).still_holds(at, &now, &[&z], 10.0));
    }

    #[test]
    fn a_change_in_a_zone_or_an_old_pass_runs_the_model() {
        let before = GrayImage::from_pixel(320, 180, Luma([100]));
        let mut now = before.clone();
        // A car-sized patch arrives in the zone (about 2 % of its box).
        for y in 120..135 {
            for x in 200..225 {
                now.put_pixel(x, y, Luma([30]));
            }
        }
        let z = zone();
        let at = DateTime::UNIX_EPOCH + chrono::Duration::seconds(4);
        assert!(!last(before.clone()).still_holds(at, &now, &[&z], 10.0));
        // Nothing changed, but the full pass is due.
        let late = DateTime::UNIX_EPOCH + chrono::Duration::seconds(10);
        assert!(!last(before.clone()).still_holds(late, &before, &[&z], 10.0));
        // Off.
        assert!(!last(before.clone()).still_holds(at, &before, &[&z], 0.0));
    }
}
