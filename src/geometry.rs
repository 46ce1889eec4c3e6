//! Plain geometry shared by the stages: boxes, points, polygons.

use serde::{Deserialize, Serialize};

/// A point; in zones and events, normalized to 0..1 of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Horizontal, left to right.
    pub x: f32,
    /// Vertical, top to bottom.
    pub y: f32,
}

impl Point {
    /// A point at (x, y).
    pub fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// An axis-aligned box `[x1, y1, x2, y2]` (pixels or normalized, as the owner says).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct BBox {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
}

impl BBox {
    /// A box from its corners.
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// A box from `[x1, y1, x2, y2]` as the ledger and messages keep it.
    pub fn from_array(b: [f64; 4]) -> Self {
        Self::new(b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32)
    }

    /// A box from centre and size.
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }

    /// Width (never negative).
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    /// Height (never negative).
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    /// Area.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Centre point.
    pub fn center(&self) -> Point {
        Point::new((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }

    /// Bottom centre: where a vehicle or a person touches the ground, the point tested against zones.
    pub fn bottom_center(&self) -> Point {
        Point::new((self.x1 + self.x2) / 2.0, self.y2)
    }

    /// Area of the overlap with another box.
    pub fn intersection(&self, o: &BBox) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        w * h
    }

    /// Intersection over union.
    pub fn iou(&self, o: &BBox) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Share of this box's area that lies inside `o` (0 for an empty box).
    pub fn share_inside(&self, o: &BBox) -> f32 {
        let area = self.area();
        if area <= 0.0 {
            0.0
        } else {
            self.intersection(o) / area
        }
    }

    /// The same box moved by `(dx, dy)`.
    pub fn translate(&self, dx: f32, dy: f32) -> BBox {
        BBox::new(self.x1 + dx, self.y1 + dy, self.x2 + dx, self.y2 + dy)
    }

    /// Scales both axes (e.g. pixels to normalized).
    pub fn scale(&self, sx: f32, sy: f32) -> BBox {
        BBox::new(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy)
    }

    /// Clamps the box into `[0, w] x [0, h]`.
    pub fn clamp(&self, w: f32, h: f32) -> BBox {
        BBox::new(
            self.x1.clamp(0.0, w),
            self.y1.clamp(0.0, h),
            self.x2.clamp(0.0, w),
            self.y2.clamp(0.0, h),
        )
    }

    /// `[x1, y1, x2, y2]`.
    pub fn to_array(&self) -> [f32; 4] {
        [self.x1, self.y1, self.x2, self.y2]
    }
}

/// Whether `p` lies inside the polygon (even-odd rule; points on an edge may go either way).
pub fn point_in_polygon(p: Point, poly: &[Point]) -> bool {
    let mut inside = false;
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a.y > p.y) != (b.y > p.y) {
            let x_cross = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
            if p.x < x_cross {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// The first pair of non-adjacent edges that cross, if any (edge i runs from point i to i+1).
pub fn polygon_self_intersects(poly: &[Point]) -> Option<(usize, usize)> {
    let n = poly.len();
    if n < 4 {
        return None;
    }
    for i in 0..n {
        let (a1, a2) = (poly[i], poly[(i + 1) % n]);
        for j in (i + 1)..n {
            // Adjacent edges share a point; that is not a crossing.
            if j == i + 1 || (i == 0 && j == n - 1) {
                continue;
            }
            let (b1, b2) = (poly[j], poly[(j + 1) % n]);
            if segments_cross(a1, a2, b1, b2) {
                return Some((i, j));
            }
        }
    }
    None
}

fn orient(a: Point, b: Point, c: Point) -> f32 {
    (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x)
}

fn segments_cross(a1: Point, a2: Point, b1: Point, b2: Point) -> bool {
    let d1 = orient(b1, b2, a1);
    let d2 = orient(b1, b2, a2);
    let d3 = orient(a1, a2, b1);
    let d4 = orient(a1, a2, b2);
    ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Vec<Point> {
        vec![
            Point::new(0.1, 0.1),
            Point::new(0.5, 0.1),
            Point::new(0.5, 0.5),
            Point::new(0.1, 0.5),
        ]
    }

    #[test]
    fn inside_and_outside() {
        assert!(point_in_polygon(Point::new(0.3, 0.3), &square()));
        assert!(!point_in_polygon(Point::new(0.6, 0.3), &square()));
        assert!(!point_in_polygon(Point::new(0.3, 0.05), &square()));
    }

    #[test]
    fn bow_tie_crosses() {
        let bow = vec![
            Point::new(0.1, 0.1),
            Point::new(0.5, 0.5),
            Point::new(0.5, 0.1),
            Point::new(0.1, 0.5),
        ];
        assert_eq!(polygon_self_intersects(&bow), Some((0, 2)));
        assert_eq!(polygon_self_intersects(&square()), None);
    }

    #[test]
    fn iou_of_boxes() {
        let a = BBox::new(0.0, 0.0, 2.0, 2.0);
        let b = BBox::new(1.0, 1.0, 3.0, 3.0);
        assert!((a.iou(&b) - 1.0 / 7.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(5.0, 5.0, 6.0, 6.0)), 0.0);
    }
}
