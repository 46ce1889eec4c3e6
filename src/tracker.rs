//! Tracker: gives detections stable ids across frames and knows since when each object is at rest.
//!
//! ByteTrack-style association (strong detections first, then weak ones to keep partly hidden
//! objects), on boxes predicted by a constant-velocity Kalman filter per box coordinate. Every
//! threshold is in seconds, because cameras run detection at 0.2 to 5 frames per second.
//!
//! "At rest" is judged against an anchor box, not frame to frame, so slow drift cannot accumulate
//! and box jitter or a passer-by hiding part of a parked car does not reset its dwell: the object
//! must stay away from its anchor for `move_confirm_seconds` before it counts as moved.

use chrono::{DateTime, Utc};

use crate::config::TrackerConfig;
use crate::detector::{Detection, ObjectClass};
use crate::geometry::BBox;

/// A tracked object as the later stages see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Id, unique per camera for the process's life.
    pub id: u64,
    /// Latest label.
    pub label: String,
    /// Road-user class.
    pub class: ObjectClass,
    /// Score of the latest matched detection.
    pub score: f32,
    /// Latest box in frame pixels (the detection's, or the prediction's when unseen).
    pub bbox: BBox,
    /// First time seen.
    pub first_seen: DateTime<Utc>,
    /// Last time matched to a detection.
    pub last_seen: DateTime<Utc>,
    /// Since when the object has been at rest at its current place (None while it moves).
    pub stationary_since: Option<DateTime<Utc>>,
    /// Whether a detection matched it on the latest frame.
    pub seen_now: bool,
}

/// One coordinate's constant-velocity Kalman filter (position, velocity).
#[derive(Debug, Clone)]
struct Kalman1 {
    x: f32,
    v: f32,
    // Covariance [[p00, p01], [p01, p11]].
    p00: f32,
    p01: f32,
    p11: f32,
}

impl Kalman1 {
    fn new(x: f32, scale: f32) -> Self {
        Self {
            x,
            v: 0.0,
            p00: scale * scale,
            p01: 0.0,
            p11: scale * scale,
        }
    }

    fn predict(&self, dt: f32, scale: f32) -> Self {
        // Process noise grows with time and object size (a bigger box moves more pixels).
        let q = (0.05 * scale).powi(2) * dt;
        let qv = (0.1 * scale).powi(2) * dt;
        Self {
            x: self.x + self.v * dt,
            v: self.v,
            p00: self.p00 + dt * (2.0 * self.p01 + dt * self.p11) + q,
            p01: self.p01 + dt * self.p11,
            p11: self.p11 + qv,
        }
    }

    fn update(&mut self, z: f32, scale: f32) {
        let r = (0.05 * scale).powi(2);
        let s = self.p00 + r;
        let (k0, k1) = (self.p00 / s, self.p01 / s);
        let y = z - self.x;
        self.x += k0 * y;
        self.v += k1 * y;
        let (p00, p01, p11) = (self.p00, self.p01, self.p11);
        self.p00 = (1.0 - k0) * p00;
        self.p01 = (1.0 - k0) * p01;
        self.p11 = p11 - k1 * p01;
    }
}

/// Where an object rests and whether it seems to be leaving.
#[derive(Debug, Clone)]
struct Rest {
    anchor: BBox,
    since: DateTime<Utc>,
    /// First time the box was seen away from the anchor, in the current run of such frames.
    away_since: Option<DateTime<Utc>>,
    /// Where it is while away, and since when it has been there.
    candidate: Option<(BBox, DateTime<Utc>)>,
}

#[derive(Debug, Clone)]
struct TrackState {
    track: Track,
    filters: [Kalman1; 4],
    updated_at: DateTime<Utc>,
    rest: Rest,
}

impl TrackState {
    fn scale(&self) -> f32 {
        self.track
            .bbox
            .width()
            .max(self.track.bbox.height())
            .max(1.0)
    }

    fn predicted(&self, now: DateTime<Utc>, cfg: &TrackerConfig) -> BBox {
        if self.is_resting(now, cfg) {
            // A resting object is where it rests; velocity noise must not drift it away.
            return self.rest.anchor;
        }
        let dt = seconds(now - self.updated_at).clamp(0.0, 10.0);
        let s = self.scale();
        let f: Vec<f32> = self.filters.iter().map(|k| k.predict(dt, s).x).collect();
        BBox::from_center(f[0], f[1], f[2].max(1.0), f[3].max(1.0))
    }

    fn is_resting(&self, now: DateTime<Utc>, cfg: &TrackerConfig) -> bool {
        self.rest.away_since.is_none()
            && seconds(now - self.rest.since) >= cfg.move_confirm_seconds as f32
    }
}

/// Tracks the objects of one camera.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<TrackState>,
    next_id: u64,
}

impl Tracker {
    /// A tracker with these thresholds.
    /// New thresholds from a reloaded config; tracks are kept.
    pub fn set_config(&mut self, cfg: TrackerConfig) {
        self.cfg = cfg;
    }

    /// A tracker with these thresholds.
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Feeds the detections of the frame at `now` and returns all live tracks.
    pub fn update(&mut self, now: DateTime<Utc>, detections: &[Detection]) -> Vec<Track> {
        let cfg = self.cfg.clone();
        let predicted: Vec<BBox> = self.tracks.iter().map(|t| t.predicted(now, &cfg)).collect();
        for t in &mut self.tracks {
            t.track.seen_now = false;
        }

        let (strong, weak): (Vec<usize>, Vec<usize>) = (0..detections.len())
            .filter(|&i| detections[i].score >= cfg.low_score)
            .partition(|&i| detections[i].score >= cfg.high_score);

        // Pass 1: strong detections against every track.
        let all_tracks: Vec<usize> = (0..self.tracks.len()).collect();
        let (pairs, unmatched_tracks, unmatched_strong) =
            self.associate(&all_tracks, &strong, detections, &predicted, cfg.match_iou);
        for (ti, di) in pairs {
            self.apply(ti, &detections[di], now);
        }
        // Pass 2: weak detections only extend tracks (a half-hidden car scores low).
        let (pairs, _, _) = self.associate(
            &unmatched_tracks,
            &weak,
            detections,
            &predicted,
            cfg.match_iou.max(0.3),
        );
        for (ti, di) in pairs {
            self.apply(ti, &detections[di], now);
        }
        for di in unmatched_strong {
            self.spawn(&detections[di], now);
        }
        self.tracks.retain(|t| {
            let unseen = seconds(now - t.track.last_seen);
            let limit = if t.is_resting(now, &cfg) {
                cfg.max_lost_stationary_seconds
            } else {
                cfg.max_lost_seconds
            };
            unseen <= limit as f32
        });
        self.tracks.iter().map(|t| t.track.clone()).collect()
    }

    /// Greedy IoU matching, best pairs first, within the same class.
    fn associate(
        &self,
        tracks: &[usize],
        dets: &[usize],
        detections: &[Detection],
        predicted: &[BBox],
        min_iou: f32,
    ) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
        let mut candidates = Vec::new();
        for &ti in tracks {
            let t = &self.tracks[ti].track;
            for &di in dets {
                let d = &detections[di];
                let same = if t.class == ObjectClass::Other {
                    t.label == d.label
                } else {
                    t.class == d.class
                };
                if !same {
                    continue;
                }
                let iou = predicted[ti].iou(&d.bbox);
                if iou >= min_iou {
                    candidates.push((iou, ti, di));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut used_t, mut used_d) = (Vec::new(), Vec::new());
        let mut pairs = Vec::new();
        for (_, ti, di) in candidates {
            if !used_t.contains(&ti) && !used_d.contains(&di) {
                used_t.push(ti);
                used_d.push(di);
                pairs.push((ti, di));
            }
        }
        let rest_t = tracks
            .iter()
            .copied()
            .filter(|t| !used_t.contains(t))
            .collect();
        let rest_d = dets
            .iter()
            .copied()
            .filter(|d| !used_d.contains(d))
            .collect();
        (pairs, rest_t, rest_d)
    }

    fn spawn(&mut self, d: &Detection, now: DateTime<Utc>) {
        let c = d.bbox.center();
        let s = d.bbox.width().max(d.bbox.height()).max(1.0);
        let track = Track {
            id: self.next_id,
            label: d.label.clone(),
            class: d.class,
            score: d.score,
            bbox: d.bbox,
            first_seen: now,
            last_seen: now,
            stationary_since: Some(now),
            seen_now: true,
        };
        self.next_id += 1;
        self.tracks.push(TrackState {
            track,
            filters: [
                Kalman1::new(c.x, s),
                Kalman1::new(c.y, s),
                Kalman1::new(d.bbox.width(), s),
                Kalman1::new(d.bbox.height(), s),
            ],
            updated_at: now,
            rest: Rest {
                anchor: d.bbox,
                since: now,
                away_since: None,
                candidate: None,
            },
        });
    }

    fn apply(&mut self, ti: usize, d: &Detection, now: DateTime<Utc>) {
        let tol = self.cfg.stationary_tolerance;
        let confirm = self.cfg.move_confirm_seconds as f32;
        let t = &mut self.tracks[ti];
        let dt = seconds(now - t.updated_at).clamp(0.0, 10.0);
        let s = t.scale();
        let c = d.bbox.center();
        let z = [c.x, c.y, d.bbox.width(), d.bbox.height()];
        for (k, z) in t.filters.iter_mut().zip(z) {
            *k = k.predict(dt, s);
            k.update(z, s);
        }
        t.updated_at = now;
        let tr = &mut t.track;
        tr.bbox = d.bbox;
        tr.score = d.score;
        tr.label = d.label.clone();
        tr.last_seen = now;
        tr.seen_now = true;

        let rest = &mut t.rest;
        if near(&rest.anchor, &d.bbox, tol) {
            rest.away_since = None;
            rest.candidate = None;
        } else {
            let away = *rest.away_since.get_or_insert(now);
            match rest.candidate {
                Some((b, _)) if near(&b, &d.bbox, tol) => {}
                _ => rest.candidate = Some((d.bbox, now)),
            }
            if seconds(now - away) >= confirm {
                // It really moved: it rests (if at all) where it has been since the candidate time.
                let (b, since) = rest.candidate.unwrap_or((d.bbox, now));
                rest.anchor = b;
                rest.since = since;
                rest.away_since = None;
                rest.candidate = None;
                if !near(&b, &d.bbox, tol) {
                    rest.anchor = d.bbox;
                    rest.since = now;
                }
            }
        }
        tr.stationary_since = Some(rest.since);
    }
}

/// Whether `b` is still at the place `anchor` marks: centre within `tol` of the anchor's size,
/// or mostly inside the anchor (part of the object hidden by a passer-by).
fn near(anchor: &BBox, b: &BBox, tol: f32) -> bool {
    let (ca, cb) = (anchor.center(), b.center());
    let close = (ca.x - cb.x).abs() <= tol * anchor.width().max(1.0)
        && (ca.y - cb.y).abs() <= tol * anchor.height().max(1.0)
        && (b.width() / anchor.width().max(1.0) - 1.0).abs() <= 2.0 * tol
        && (b.height() / anchor.height().max(1.0) - 1.0).abs() <= 2.0 * tol;
    let hidden_part = b.area() > 0.0
        && anchor.intersection(b) / b.area() >= 0.85
        && b.area() >= 0.25 * anchor.area();
    close || hidden_part
}

fn seconds(d: chrono::TimeDelta) -> f32 {
    d.num_milliseconds() as f32 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, score: f32) -> Detection {
        Detection {
            class_id: 2,
            label: "car".into(),
            class: ObjectClass::MotorVehicle,
            score,
            bbox: BBox::new(x, 100.0, x + 200.0, 200.0),
        }
    }

    fn t(s: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis((s * 1000.0) as i64).unwrap()
    }

    #[test]
    fn moving_then_parked_rests_since_arrival() {
        let mut tr = Tracker::new(TrackerConfig::default());
        // Drives 40 px per second for 10 s, then stops at x=400.
        for i in 0..=10 {
            tr.update(t(i as f64), &[det(i as f32 * 40.0, 0.8)]);
        }
        let mut last = Vec::new();
        for i in 11..40 {
            last = tr.update(t(i as f64), &[det(400.0 + (i % 3) as f32, 0.8)]);
        }
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].id, 1);
        let since = last[0].stationary_since.unwrap();
        assert!((seconds(since - t(10.0))).abs() <= 1.0, "since {since}");
    }

    #[test]
    fn occlusion_does_not_reset_dwell() {
        let mut tr = Tracker::new(TrackerConfig::default());
        for i in 0..20 {
            tr.update(t(i as f64), &[det(300.0, 0.8)]);
        }
        // Hidden for 8 s, then seen half-covered with a weak score, then whole again.
        for i in 20..28 {
            tr.update(t(i as f64), &[]);
        }
        let half = Detection {
            bbox: BBox::new(400.0, 100.0, 500.0, 200.0),
            ..det(0.0, 0.3)
        };
        tr.update(t(28.0), &[half]);
        let out = tr.update(t(29.0), &[det(300.0, 0.8)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, 1);
        assert_eq!(out[0].stationary_since, Some(t(0.0)));
    }

    #[test]
    fn lost_moving_track_is_dropped() {
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.update(t(0.0), &[det(0.0, 0.9)]);
        tr.update(t(1.0), &[det(60.0, 0.9)]);
        assert!(tr.update(t(7.5), &[]).is_empty());
    }
}
