//! Zone-focused inference: which parts of a full-resolution frame to run the detector on.
//!
//! A 416-pixel model sees a car 60 pixels tall on a 1080p frame as 23 pixels and misses it.
//! Cropping the frame around the zones at native scale (tiled with overlap when a zone is larger
//! than the model input) shows the model the car at its real size; the detections of all crops
//! are merged back into frame coordinates.

use crate::geometry::{BBox, Point};

use super::{nms, Candidate};

/// A rectangle of the frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Region {
    /// The whole frame.
    pub fn full(w: u32, h: u32) -> Self {
        Self { x: 0, y: 0, w, h }
    }

    fn right(&self) -> u32 {
        self.x + self.w
    }

    fn bottom(&self) -> u32 {
        self.y + self.h
    }

    fn overlaps(&self, o: &Region) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }

    fn union(&self, o: &Region) -> Region {
        let (x, y) = (self.x.min(o.x), self.y.min(o.y));
        Region {
            x,
            y,
            w: self.right().max(o.right()) - x,
            h: self.bottom().max(o.bottom()) - y,
        }
    }
}

/// Regions covering the zones (normalized polygons) of a `frame`-sized picture for a model with
/// a `tile`-sized input: each zone's bounding box plus `margin` (fraction of the tile), merged
/// where they overlap, then grown to at least one tile and cut into tiles overlapping by `overlap`
/// (fraction of the tile) where larger.
pub fn zone_regions(
    frame: (u32, u32),
    zones: &[&[Point]],
    tile: [u32; 2],
    margin: f32,
    overlap: f32,
) -> Vec<Region> {
    let (fw, fh) = frame;
    let (tw, th) = (tile[0].min(fw).max(1), tile[1].min(fh).max(1));
    let mx = (tw as f32 * margin) as i64;
    let my = (th as f32 * margin) as i64;
    let mut areas: Vec<Region> = zones
        .iter()
        .filter(|z| !z.is_empty())
        .map(|z| {
            let (mut x1, mut y1, mut x2, mut y2) = (1f32, 1f32, 0f32, 0f32);
            for p in z.iter() {
                x1 = x1.min(p.x);
                y1 = y1.min(p.y);
                x2 = x2.max(p.x);
                y2 = y2.max(p.y);
            }
            let clamp = |v: i64, max: u32| v.clamp(0, max as i64) as u32;
            let (x1, x2) = (
                clamp((x1 * fw as f32) as i64 - mx, fw),
                clamp((x2 * fw as f32).ceil() as i64 + mx, fw),
            );
            let (y1, y2) = (
                clamp((y1 * fh as f32) as i64 - my, fh),
                clamp((y2 * fh as f32).ceil() as i64 + my, fh),
            );
            Region {
                x: x1,
                y: y1,
                w: x2.saturating_sub(x1),
                h: y2.saturating_sub(y1),
            }
        })
        .collect();
    // Merge overlapping areas until none overlap, so no part of the frame is run twice for nothing.
    let mut merged = true;
    while merged {
        merged = false;
        'outer: for i in 0..areas.len() {
            for j in i + 1..areas.len() {
                if areas[i].overlaps(&areas[j]) {
                    let u = areas[i].union(&areas[j]);
                    areas[i] = u;
                    areas.remove(j);
                    merged = true;
                    break 'outer;
                }
            }
        }
    }
    areas
        .into_iter()
        .flat_map(|a| tiles(grow(a, (tw, th), frame), (tw, th), overlap))
        .collect()
}

/// Grows `r` to at least `min` in each direction (centred, kept inside the frame): a crop smaller
/// than the model input costs the same and gives the model more context.
fn grow(r: Region, min: (u32, u32), frame: (u32, u32)) -> Region {
    let axis = |start: u32, len: u32, min: u32, max: u32| {
        if len >= min {
            return (start, len);
        }
        let centre = start as i64 + len as i64 / 2;
        let s = (centre - min as i64 / 2).clamp(0, (max - min) as i64) as u32;
        (s, min)
    };
    let (x, w) = axis(r.x, r.w, min.0, frame.0);
    let (y, h) = axis(r.y, r.h, min.1, frame.1);
    Region { x, y, w, h }
}

/// Cuts `area` into `tile`-sized regions overlapping by `overlap` of a tile, the last ones flush
/// with the area's far edges.
fn tiles(area: Region, tile: (u32, u32), overlap: f32) -> Vec<Region> {
    let starts = |start: u32, len: u32, t: u32| -> Vec<(u32, u32)> {
        if len <= t {
            return vec![(start, len)];
        }
        let step = ((t as f32 * (1.0 - overlap.clamp(0.0, 0.9))) as u32).max(1);
        let mut v = Vec::new();
        let mut s = start;
        loop {
            if s + t >= start + len {
                v.push((start + len - t, t));
                break;
            }
            v.push((s, t));
            s += step;
        }
        v
    };
    let mut out = Vec::new();
    for (y, h) in starts(area.y, area.h, tile.1) {
        for (x, w) in starts(area.x, area.w, tile.0) {
            out.push(Region { x, y, w, h });
        }
    }
    out
}

/// A candidate found in one region, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// The candidate.
    pub candidate: Candidate,
    /// It touches an edge of its region that is not an edge of the frame: the object may be cut.
    pub cut: bool,
}

impl Region {
    /// Whether `b` (frame pixels) touches one of this region's inner edges (not the frame's).
    pub fn cuts(&self, b: &BBox, frame: (u32, u32)) -> bool {
        const NEAR: f32 = 2.0;
        let (x1, y1, x2, y2) = (
            self.x as f32,
            self.y as f32,
            self.right() as f32,
            self.bottom() as f32,
        );
        (self.x > 0 && b.x1 <= x1 + NEAR)
            || (self.y > 0 && b.y1 <= y1 + NEAR)
            || (self.right() < frame.0 && b.x2 >= x2 - NEAR)
            || (self.bottom() < frame.1 && b.y2 >= y2 - NEAR)
    }
}

/// Merges what several regions found: a cut piece of an object another tile saw whole is
/// dropped; cut pieces of an object no tile saw whole are stitched together; then class-aware
/// NMS, and a box mostly inside a better box of the same class goes.
pub fn merge(found: Vec<Found>, iou: f32) -> Vec<Candidate> {
    let (whole, cut): (Vec<Found>, Vec<Found>) = found.into_iter().partition(|f| !f.cut);
    let whole: Vec<Candidate> = whole.into_iter().map(|f| f.candidate).collect();
    let mut pieces: Vec<Candidate> = cut
        .into_iter()
        .map(|f| f.candidate)
        .filter(|p| {
            !whole.iter().any(|w| {
                w.class == p.class
                    && (p.bbox.share_inside(&w.bbox) > 0.5 || p.bbox.iou(&w.bbox) > 0.3)
            })
        })
        .collect();
    // Stitch overlapping pieces of the same class into one box.
    let mut stitched = true;
    while stitched {
        stitched = false;
        'outer: for i in 0..pieces.len() {
            for j in i + 1..pieces.len() {
                let (a, b) = (pieces[i], pieces[j]);
                if a.class == b.class && same_object(&a.bbox, &b.bbox) {
                    pieces[i] = Candidate {
                        class: a.class,
                        score: a.score.max(b.score),
                        bbox: BBox::new(
                            a.bbox.x1.min(b.bbox.x1),
                            a.bbox.y1.min(b.bbox.y1),
                            a.bbox.x2.max(b.bbox.x2),
                            a.bbox.y2.max(b.bbox.y2),
                        ),
                    };
                    pieces.remove(j);
                    stitched = true;
                    break 'outer;
                }
            }
        }
    }
    let kept = nms(whole.into_iter().chain(pieces).collect(), iou);
    let mut out: Vec<Candidate> = Vec::new();
    for c in kept {
        let inside = |k: &Candidate| k.class == c.class && c.bbox.share_inside(&k.bbox) > 0.7;
        if !out.iter().any(inside) {
            out.push(c);
        }
    }
    out
}

/// Two pieces of one object cut by a tile edge: they overlap (tiles overlap) and line up across
/// the cut (most of the shorter one's extent along the other axis is shared).
fn same_object(a: &BBox, b: &BBox) -> bool {
    let ox = a.x2.min(b.x2) - a.x1.max(b.x1);
    let oy = a.y2.min(b.y2) - a.y1.max(b.y1);
    if ox <= 0.0 || oy <= 0.0 {
        return false;
    }
    let share_y = oy / a.height().min(b.height()).max(1.0);
    let share_x = ox / a.width().min(b.width()).max(1.0);
    share_y > 0.6 || share_x > 0.6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(x1: f32, y1: f32, x2: f32, y2: f32) -> Vec<Point> {
        vec![
            Point::new(x1, y1),
            Point::new(x2, y1),
            Point::new(x2, y2),
            Point::new(x1, y2),
        ]
    }

    #[test]
    fn a_small_zone_gets_one_tile_around_it() {
        let z = poly(0.5, 0.5, 0.55, 0.55);
        let r = zone_regions((1920, 1080), &[&z], [416, 416], 0.1, 0.25);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].w, r[0].h), (416, 416));
        // Centred on the zone (1008, 567).
        assert!(r[0].x <= 960 && r[0].right() >= 1056, "{r:?}");
    }

    #[test]
    fn a_wide_zone_is_tiled_with_overlap_to_its_far_edge() {
        let z = poly(0.0, 0.6, 1.0, 0.8);
        let r = zone_regions((1920, 1080), &[&z], [416, 416], 0.0, 0.25);
        assert!(r.len() >= 5, "{r:?}");
        assert_eq!(r[0].x, 0);
        assert_eq!(r.last().unwrap().right(), 1920);
        for pair in r.windows(2) {
            assert!(pair[1].x < pair[0].right(), "tiles overlap: {pair:?}");
        }
    }

    #[test]
    fn overlapping_zones_merge() {
        let a = poly(0.1, 0.1, 0.2, 0.2);
        let b = poly(0.15, 0.15, 0.25, 0.25);
        let r = zone_regions((1920, 1080), &[&a, &b], [416, 416], 0.0, 0.25);
        assert_eq!(r.len(), 1, "{r:?}");
    }

    fn found(score: f32, x1: f32, x2: f32, cut: bool) -> Found {
        Found {
            candidate: Candidate {
                class: 0,
                score,
                bbox: BBox::new(x1, 0.0, x2, 50.0),
            },
            cut,
        }
    }

    #[test]
    fn merge_drops_a_cut_piece_of_an_object_seen_whole() {
        let out = merge(
            vec![
                found(0.9, 0.0, 100.0, false),
                found(0.6, 60.0, 100.0, true),
                found(0.8, 300.0, 350.0, false),
            ],
            0.45,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bbox.x2, 100.0);
    }

    #[test]
    fn merge_stitches_pieces_no_tile_saw_whole() {
        // A 190 px car across two tiles overlapping by 100 px: each sees a cut piece.
        let out = merge(
            vec![
                found(0.6, 1094.0, 1218.0, true),
                found(0.7, 1183.0, 1284.0, true),
            ],
            0.45,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].bbox.x1, out[0].bbox.x2, out[0].score),
            (1094.0, 1284.0, 0.7)
        );
    }

    #[test]
    fn region_knows_its_inner_edges() {
        let r = Region {
            x: 0,
            y: 100,
            w: 416,
            h: 416,
        };
        let frame = (1920, 1080);
        assert!(
            !r.cuts(&BBox::new(0.0, 200.0, 50.0, 250.0), frame),
            "the frame's left edge is not a cut"
        );
        assert!(r.cuts(&BBox::new(380.0, 200.0, 415.0, 250.0), frame));
        assert!(r.cuts(&BBox::new(10.0, 101.0, 50.0, 150.0), frame));
    }
}
