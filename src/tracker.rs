//! Tracker: gives detections stable ids across frames and knows since when each object is at rest.
//!
//! ByteTrack-style association (strong detections first, then weak ones to keep partly hidden
//! objects), on boxes predicted by a constant-velocity Kalman filter per box coordinate. Every
//! threshold is in seconds, because cameras run detection at 0.2 to 5 frames per second.
//!
//! "At rest" means the same thing stayed in the same place. A rest begins when an object is
//! seen twice at one place and the place shows the same thing both times (with nothing in the
//! box moving at that instant, when every frame is decoded); its dwell counts from the first
//! sighting. It lasts while the place keeps showing that thing: a patch of the place is
//! compared cell by cell, so a passer-by or a bus hiding part of it does not end the rest, but
//! the empty road, or another car in the same place, does (after `move_confirm_seconds`, and
//! only while nothing passes in front). Cars driving through a parked car's place are never
//! taken for it: a resting track only takes a still box at its place, and other tracks are
//! matched by colour as well as by overlap with their predicted box.
//!
//! Without the picture (unit tests, tools), rest is judged from the boxes alone: near an
//! anchor box, and moved once the box has been away from it for `move_confirm_seconds`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use image::RgbImage;

use crate::config::TrackerConfig;
use crate::detector::{Detection, ObjectClass};
use crate::geometry::BBox;
use crate::motion::MotionMap;
use crate::picture::Look;

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
    /// Since when the object has been at rest at its current place (None while it moves or
    /// has only just arrived).
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

/// What the tracker may look at besides the boxes: the picture, and what moves in it.
#[derive(Debug, Clone, Copy)]
pub struct Sight<'a> {
    /// The frame.
    pub picture: &'a RgbImage,
    /// What moves at this instant (when every frame is decoded).
    pub motion: Option<&'a MotionMap>,
    /// How far the whole picture moved since the previous frame, in its pixels (a camera that
    /// sways): places at rest move with it.
    pub camera_shift: (f32, f32),
}

impl Sight<'_> {
    /// Share of a pixel box that moves now (0 when motion is not known).
    fn moving(&self, b: &BBox) -> f32 {
        let (w, h) = self.picture.dimensions();
        self.motion.map_or(0.0, |m| {
            m.fraction_in(&b.scale(1.0 / w as f32, 1.0 / h as f32))
        })
    }

    fn look(&self, b: &BBox) -> Option<Look> {
        Look::of(self.picture, b).unwrap_or_else(|e| {
            tracing::debug!("cannot take the look of a box: {e}");
            None
        })
    }

    fn still_at(&self, look: &Look, b: &BBox) -> f32 {
        look.still_at(self.picture, b).unwrap_or_else(|e| {
            tracing::debug!("cannot compare a place: {e}");
            0.0
        })
    }
}

/// Share of a place's patch cells that must still match for the thing to be there (a
/// passer-by or a bus may hide the rest).
const PLACE_HOLDS: f32 = 0.5;
/// Share that must match between the first two sightings at a place for a rest to begin.
const SETTLE_MATCH: f32 = 0.6;
/// Share matching above which the place's patch is renewed (slow light changes).
const REFRESH_MATCH: f32 = 0.8;
/// Share of a box moving at this instant above which the thing in it is on the move (a parked
/// car shows none; a car driving past shows its edges and windows moving, a few tenths).
const MOVING: f32 = 0.05;
/// Share of a resting place moving at this instant that means something passes in front.
const PASSING: f32 = 0.08;
/// Colour similarity (Bhattacharyya coefficient) below which two boxes are other vehicles.
const SAME_COLOUR: f32 = 0.6;
/// IoU above which two detections of one road-user class are the same object (a car found
/// as both `car` and `truck`).
const DUPLICATE_IOU: f32 = 0.7;

/// Where an object is staying, if anywhere.
#[derive(Debug, Clone)]
enum Stay {
    /// On the move, or just arrived: where its box first was at its current place, and what
    /// the place looked like then.
    Settling {
        place: BBox,
        since: DateTime<Utc>,
        look: Option<Look>,
    },
    /// At rest.
    Resting(Rest),
}

/// A rest: where, since when, and what the place looked like.
#[derive(Debug, Clone)]
struct Rest {
    anchor: BBox,
    since: DateTime<Utc>,
    /// The place when the rest began (renewed while it keeps matching); None without sight.
    template: Option<Look>,
    /// Since when the place has stopped showing the thing (nothing passing in front), or,
    /// without sight, since when the box has been away from the anchor.
    away_since: Option<DateTime<Utc>>,
    /// Without sight: where the box is while away, and since when.
    candidate: Option<(BBox, DateTime<Utc>)>,
}

#[derive(Debug, Clone)]
struct TrackState {
    track: Track,
    filters: [Kalman1; 4],
    updated_at: DateTime<Utc>,
    /// Colour (and patch) of the object from its detections; None without sight.
    look: Option<Look>,
    stay: Stay,
}

impl TrackState {
    /// Moves everything this track knows of places by `(dx, dy)`: the camera moved.
    fn shift(&mut self, dx: f32, dy: f32) {
        self.track.bbox = self.track.bbox.translate(dx, dy);
        self.filters[0].x += dx;
        self.filters[1].x += dy;
        match &mut self.stay {
            Stay::Settling { place, .. } => *place = place.translate(dx, dy),
            Stay::Resting(r) => {
                r.anchor = r.anchor.translate(dx, dy);
                if let Some((b, _)) = &mut r.candidate {
                    *b = b.translate(dx, dy);
                }
            }
        }
    }

    fn scale(&self) -> f32 {
        self.track
            .bbox
            .width()
            .max(self.track.bbox.height())
            .max(1.0)
    }

    fn rest(&self) -> Option<&Rest> {
        match &self.stay {
            Stay::Resting(r) => Some(r),
            Stay::Settling { .. } => None,
        }
    }

    fn predicted(&self, now: DateTime<Utc>) -> BBox {
        if let Some(r) = self.rest().filter(|r| r.away_since.is_none()) {
            // A resting object is where it rests; velocity noise must not drift it away.
            return r.anchor;
        }
        let dt = seconds(now - self.updated_at).clamp(0.0, 10.0);
        let s = self.scale();
        let f: Vec<f32> = self.filters.iter().map(|k| k.predict(dt, s).x).collect();
        BBox::from_center(f[0], f[1], f[2].max(1.0), f[3].max(1.0))
    }
}

/// A place where only weak detections saw something, and what it looked like.
#[derive(Debug, Clone)]
struct Faint {
    place: BBox,
    since: DateTime<Utc>,
    /// Last time the place still showed it.
    last: DateTime<Utc>,
    look: Look,
}

/// Tracks the objects of one camera.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<TrackState>,
    /// Places seen only by weak detections (they start no track on their own).
    faint: Vec<Faint>,
    next_id: u64,
}

impl Tracker {
    /// New thresholds from a reloaded config; tracks are kept.
    pub fn set_config(&mut self, cfg: TrackerConfig) {
        self.cfg = cfg;
    }

    /// A tracker with these thresholds.
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            faint: Vec::new(),
            next_id: 1,
        }
    }

    /// Feeds the detections of the frame at `now` and returns all live tracks. With `sight`,
    /// rest is judged by what the place shows and identities by colour too; without it, by the
    /// boxes alone.
    pub fn update(
        &mut self,
        now: DateTime<Utc>,
        detections: &[Detection],
        sight: Option<Sight<'_>>,
    ) -> Vec<Track> {
        let cfg = self.cfg.clone();
        if let Some((dx, dy)) = sight.map(|s| s.camera_shift).filter(|&s| s != (0.0, 0.0)) {
            self.tracks.iter_mut().for_each(|t| t.shift(dx, dy));
        }
        let dets = distinct(detections);
        let looks: Vec<Option<Look>> = dets
            .iter()
            .map(|d| sight.and_then(|s| s.look(&d.bbox)))
            .collect();
        let moving: Vec<f32> = dets
            .iter()
            .map(|d| sight.map_or(0.0, |s| s.moving(&d.bbox)))
            .collect();
        // What each resting place shows now: the share of its patch still matching.
        let place: Vec<Option<f32>> = self
            .tracks
            .iter()
            .map(|t| {
                let (s, r) = (sight?, t.rest()?);
                Some(s.still_at(r.template.as_ref()?, &r.anchor))
            })
            .collect();
        let moved = sight.map_or_else(HashMap::new, |s| self.moved_away(&dets, &place, s));
        let predicted: Vec<BBox> = self.tracks.iter().map(|t| t.predicted(now)).collect();
        for t in &mut self.tracks {
            t.track.seen_now = false;
        }

        let (strong, weak): (Vec<usize>, Vec<usize>) = (0..dets.len())
            .filter(|&i| dets[i].score >= cfg.low_score)
            .partition(|&i| dets[i].score >= cfg.high_score);
        let candidates = Candidates {
            dets: &dets,
            looks: &looks,
            moving: &moving,
            place: &place,
            moved: &moved,
            predicted: &predicted,
        };

        // Pass 1: strong detections against every track.
        let all_tracks: Vec<usize> = (0..self.tracks.len()).collect();
        let (pairs, unmatched_tracks, unmatched_strong) =
            self.associate(&all_tracks, &strong, &candidates, cfg.match_iou);
        for (ti, di) in pairs {
            self.apply(ti, di, &candidates, sight, now);
        }
        // Pass 2: weak detections only extend tracks (a half-hidden car scores low).
        let (pairs, unseen, unmatched_weak) = self.associate(
            &unmatched_tracks,
            &weak,
            &candidates,
            cfg.match_iou.max(0.3),
        );
        for (ti, di) in pairs {
            self.apply(ti, di, &candidates, sight, now);
        }
        if let Some(s) = sight {
            for ti in unseen {
                self.unseen(ti, place[ti], &dets, s, now);
            }
        }
        if let Some(s) = sight {
            self.remember_faint(&unmatched_weak, &candidates, s, now);
        }
        for di in unmatched_strong {
            if self.part_of_a_rest(&dets[di]) {
                continue;
            }
            let earlier = sight.and_then(|s| self.faint_at(&dets[di], s));
            self.spawn(&dets[di], looks[di].clone(), earlier, now);
        }
        self.tracks.retain(|t| {
            let unseen = seconds(now - t.track.last_seen);
            let limit = if t.rest().is_some() {
                cfg.max_lost_stationary_seconds
            } else {
                cfg.max_lost_seconds
            };
            unseen <= limit as f32
        });
        self.tracks.iter().map(|t| t.track.clone()).collect()
    }

    /// Whether detection `di` may be the object of track `ti`, and how well it fits.
    fn fit(&self, ti: usize, di: usize, c: &Candidates<'_>, min_iou: f32) -> Option<f32> {
        let state = &self.tracks[ti];
        let (t, d) = (&state.track, &c.dets[di]);
        let same_class = if t.class == ObjectClass::Other {
            t.label == d.label
        } else {
            t.class == d.class
        };
        if !same_class {
            return None;
        }
        let iou = c.predicted[ti].iou(&d.bbox);
        let colour = match (&state.look, &c.looks[di]) {
            (Some(a), Some(b)) => Some(a.colour_similarity(b)),
            _ => None,
        };
        let colour_fits = colour.is_none_or(|c| c >= SAME_COLOUR);
        let tol = self.cfg.stationary_tolerance;
        match (state.rest(), c.place[ti]) {
            (Some(r), Some(p)) => {
                let at_place = near(&r.anchor, &d.bbox, tol);
                let still_at_place = at_place && c.moving[di] < MOVING;
                if p >= PLACE_HOLDS {
                    // The place still shows the thing: a box at the place is it, even if
                    // something moves in front of part of it.
                    at_place.then_some(iou + 1.0)
                } else if still_at_place && colour_fits {
                    // Hidden or changed in look where it stands (lights, a door, a shadow).
                    Some(iou + colour.unwrap_or(0.0))
                } else {
                    // Gone from its place, and here is what it looked like, elsewhere: it left.
                    // Nothing else is taken: cars driving in front would carry the rest away.
                    c.moved.get(&(ti, di)).map(|m| 1.0 + m)
                }
            }
            // Otherwise identity is overlap with the predicted box and colour (where known): a
            // different-looking car is never it.
            _ => (iou >= min_iou && colour_fits).then(|| iou + colour.unwrap_or(0.0)),
        }
    }

    /// For resting tracks whose place no longer shows them: the detections nearby, away from
    /// the place, that show what the place showed (the thing, driving off or moved along).
    fn moved_away(
        &self,
        dets: &[Detection],
        place: &[Option<f32>],
        sight: Sight<'_>,
    ) -> HashMap<(usize, usize), f32> {
        let tol = self.cfg.stationary_tolerance;
        let mut moved = HashMap::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            let (Some(r), Some(p)) = (t.rest(), place[ti]) else {
                continue;
            };
            let Some(template) = r.template.as_ref().filter(|_| p < PLACE_HOLDS) else {
                continue;
            };
            let reach = 2.0 * r.anchor.width().max(r.anchor.height());
            let centre = r.anchor.center();
            for (di, d) in dets.iter().enumerate() {
                let c = d.bbox.center();
                let close = (c.x - centre.x).hypot(c.y - centre.y) <= reach;
                if d.class != t.track.class || !close || near(&r.anchor, &d.bbox, tol) {
                    continue;
                }
                let same = sight.still_at(template, &d.bbox);
                if same >= SETTLE_MATCH {
                    moved.insert((ti, di), same);
                }
            }
        }
        moved
    }

    /// Greedy matching, best pairs first, within the same class.
    fn associate(
        &self,
        tracks: &[usize],
        dets: &[usize],
        c: &Candidates<'_>,
        min_iou: f32,
    ) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
        let mut pairs_by_fit = Vec::new();
        for &ti in tracks {
            for &di in dets {
                if let Some(f) = self.fit(ti, di, c, min_iou) {
                    pairs_by_fit.push((f, ti, di));
                }
            }
        }
        pairs_by_fit.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut used_t, mut used_d) = (Vec::new(), Vec::new());
        let mut pairs = Vec::new();
        for (_, ti, di) in pairs_by_fit {
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

    /// Keeps what weak detections nobody claimed showed, place by place, while the place keeps
    /// showing it: when the detector later sees the thing clearly, it has been there since.
    fn remember_faint(
        &mut self,
        weak: &[usize],
        c: &Candidates<'_>,
        sight: Sight<'_>,
        now: DateTime<Utc>,
    ) {
        let tol = self.cfg.stationary_tolerance;
        let keep = self.cfg.max_lost_stationary_seconds as f32;
        let (dx, dy) = sight.camera_shift;
        for f in &mut self.faint {
            f.place = f.place.translate(dx, dy);
        }
        for &di in weak {
            let (d, Some(look)) = (&c.dets[di], &c.looks[di]) else {
                continue;
            };
            if c.moving[di] >= MOVING {
                continue;
            }
            match self.faint.iter_mut().find(|f| near(&f.place, &d.bbox, tol)) {
                Some(f) if sight.still_at(&f.look, &f.place) >= SETTLE_MATCH => f.last = now,
                Some(f) => {
                    *f = Faint {
                        place: d.bbox,
                        since: now,
                        last: now,
                        look: look.clone(),
                    }
                }
                None => self.faint.push(Faint {
                    place: d.bbox,
                    since: now,
                    last: now,
                    look: look.clone(),
                }),
            }
        }
        self.faint.retain(|f| seconds(now - f.last) <= keep);
    }

    /// Whether a detection is a part of something already at rest (a second, partial box the
    /// detector puts on a parked car in dappled shade): not a new object.
    fn part_of_a_rest(&self, d: &Detection) -> bool {
        self.tracks.iter().any(|t| {
            t.rest().is_some_and(|r| {
                t.track.class == d.class
                    && (r.anchor.iou(&d.bbox) >= 0.5 || d.bbox.share_inside(&r.anchor) >= 0.8)
            })
        })
    }

    /// The earliest time a weak detection saw what this detection's place shows now, if any.
    fn faint_at(&self, d: &Detection, sight: Sight<'_>) -> Option<(DateTime<Utc>, BBox, Look)> {
        let tol = self.cfg.stationary_tolerance;
        self.faint
            .iter()
            .filter(|f| near(&f.place, &d.bbox, tol) && sight.moving(&d.bbox) < MOVING)
            .filter(|f| sight.still_at(&f.look, &f.place) >= SETTLE_MATCH)
            .min_by_key(|f| f.since)
            .map(|f| (f.since, f.place, f.look.clone()))
    }

    fn spawn(
        &mut self,
        d: &Detection,
        look: Option<Look>,
        earlier: Option<(DateTime<Utc>, BBox, Look)>,
        now: DateTime<Utc>,
    ) {
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
            stationary_since: None,
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
            stay: match earlier {
                // Seen faintly at this place before, showing the same thing: at rest since.
                Some((since, place, template)) => Stay::Resting(Rest {
                    anchor: place,
                    since,
                    template: Some(template),
                    away_since: None,
                    candidate: None,
                }),
                None => Stay::Settling {
                    place: d.bbox,
                    since: now,
                    look: look.clone(),
                },
            },
            look,
        });
        if let Some(t) = self.tracks.last_mut() {
            t.track.stationary_since = t.rest().map(|r| r.since);
        }
    }

    /// A detection matched track `ti`: follow it, and judge whether it stays, settles or left.
    fn apply(
        &mut self,
        ti: usize,
        di: usize,
        c: &Candidates<'_>,
        sight: Option<Sight<'_>>,
        now: DateTime<Utc>,
    ) {
        let tol = self.cfg.stationary_tolerance;
        let confirm = self.cfg.move_confirm_seconds as f32;
        let d = &c.dets[di];
        let det_look = &c.looks[di];
        let t = &mut self.tracks[ti];
        let dt = seconds(now - t.updated_at).clamp(0.0, 10.0);
        let s = t.scale();
        let centre = d.bbox.center();
        let z = [centre.x, centre.y, d.bbox.width(), d.bbox.height()];
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
        match (&mut t.look, det_look) {
            (Some(l), Some(n)) => l.learn_colour(n, 0.2),
            (l @ None, Some(n)) => *l = Some(n.clone()),
            _ => {}
        }

        let settle_here = || Stay::Settling {
            place: d.bbox,
            since: now,
            look: det_look.clone(),
        };
        let next = match (&mut t.stay, sight) {
            (Stay::Resting(rest), Some(sight)) if rest.template.is_some() => {
                if near(&rest.anchor, &d.bbox, tol) {
                    // Still there, seen by the detector at its place. If the place no longer
                    // matches, its look changed where it stands: take the place as it is now.
                    rest.away_since = None;
                    let holds = c.place[ti].is_some_and(|p| p >= PLACE_HOLDS);
                    if !holds || c.place[ti].is_some_and(|p| p >= REFRESH_MATCH) {
                        if let (Some(tpl), Some(newer)) =
                            (&mut rest.template, sight.look(&rest.anchor))
                        {
                            tpl.refresh_patch(&newer);
                        }
                    }
                    None
                } else {
                    // Seen elsewhere, its place empty: it left.
                    Some(settle_here())
                }
            }
            (Stay::Resting(rest), _) => {
                // Boxes only: it rests while its box stays near the anchor; it moved once the
                // box has been away for `move_confirm_seconds`.
                if near(&rest.anchor, &d.bbox, tol) {
                    rest.away_since = None;
                    rest.candidate = None;
                    None
                } else {
                    let away = *rest.away_since.get_or_insert(now);
                    match rest.candidate {
                        Some((b, _)) if near(&b, &d.bbox, tol) => {}
                        _ => rest.candidate = Some((d.bbox, now)),
                    }
                    if seconds(now - away) >= confirm {
                        // It rests (if at all) where it has been since the candidate time.
                        let (b, since) = rest.candidate.unwrap_or((d.bbox, now));
                        Some(if near(&b, &d.bbox, tol) && since < now {
                            Stay::Resting(Rest {
                                anchor: b,
                                since,
                                template: None,
                                away_since: None,
                                candidate: None,
                            })
                        } else {
                            settle_here()
                        })
                    } else {
                        None
                    }
                }
            }
            (Stay::Settling { place, since, look }, _) => {
                if near(place, &d.bbox, tol) {
                    // The second sighting at the place: at rest if the place still shows what
                    // it showed at the first, and nothing in the box moves now.
                    let settled = match (sight, look.as_ref()) {
                        (Some(s), Some(l)) => {
                            let same = s.still_at(l, place);
                            tracing::trace!(
                                track = t.track.id,
                                same,
                                moving = c.moving[di],
                                "second sighting"
                            );
                            c.moving[di] < MOVING && same >= SETTLE_MATCH
                        }
                        _ => true,
                    };
                    if settled {
                        Some(Stay::Resting(Rest {
                            anchor: *place,
                            since: *since,
                            template: look.take(),
                            away_since: None,
                            candidate: None,
                        }))
                    } else if c.moving[di] < MOVING {
                        // Still, but the place shows something else than at the first sighting
                        // (that look was of something passing in front): start again from here.
                        Some(settle_here())
                    } else {
                        None
                    }
                } else {
                    Some(settle_here())
                }
            }
        };
        if let Some(next) = next {
            tracing::trace!(
                track = t.track.id,
                place = ?c.place[ti],
                moving = c.moving[di],
                resting = matches!(next, Stay::Resting(_)),
                bbox = ?d.bbox,
                "stay changes"
            );
            t.stay = next;
        }
        t.track.stationary_since = t.rest().map(|r| r.since);
        // A part of something at rest (half hidden by a passer-by) is reported as the whole of
        // it, where it rests.
        if let Some(r) = t.rest() {
            if d.bbox.area() < 0.8 * r.anchor.area() && d.bbox.share_inside(&r.anchor) >= 0.8 {
                t.track.bbox = r.anchor;
            }
        }
    }

    /// Track `ti` had no detection on this frame: if it rests, its place tells whether it is
    /// still there (hidden from the detector, or behind something passing) or gone.
    fn unseen(
        &mut self,
        ti: usize,
        place: Option<f32>,
        dets: &[Detection],
        sight: Sight<'_>,
        now: DateTime<Utc>,
    ) {
        let confirm = self.cfg.move_confirm_seconds as f32;
        let t = &mut self.tracks[ti];
        let Stay::Resting(rest) = &mut t.stay else {
            return;
        };
        let Some(p) = place else {
            return;
        };
        let anchor = rest.anchor;
        // Something in front: motion at the place, or a box over it.
        let passing = sight.moving(&anchor) >= PASSING
            || dets
                .iter()
                .any(|d| anchor.intersection(&d.bbox) >= 0.3 * anchor.area());
        if p >= PLACE_HOLDS || passing {
            rest.away_since = None;
            return;
        }
        // Nothing in front, and the place shows something else: the road, or another car.
        let away = *rest.away_since.get_or_insert(now);
        if seconds(now - away) >= confirm {
            tracing::trace!(
                track = t.track.id,
                place = p,
                "the place no longer shows it: rest ends"
            );
            t.stay = Stay::Settling {
                place: anchor,
                since: now,
                look: None,
            };
            t.track.stationary_since = None;
        }
    }
}

/// What association weighs, per detection and per track.
struct Candidates<'a> {
    dets: &'a [Detection],
    looks: &'a [Option<Look>],
    moving: &'a [f32],
    place: &'a [Option<f32>],
    /// (track, detection): the detection shows what the resting track's place showed, away
    /// from it (how well it matches).
    moved: &'a HashMap<(usize, usize), f32>,
    predicted: &'a [BBox],
}

/// The detections without duplicates: one object of a road-user class found under two labels
/// (`car` and `truck`) keeps its best-scored box.
fn distinct(detections: &[Detection]) -> Vec<Detection> {
    let mut order: Vec<&Detection> = detections.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(order.len());
    for d in order {
        let duplicate = d.class.is_road_user()
            && kept
                .iter()
                .any(|k| k.class == d.class && k.bbox.iou(&d.bbox) >= DUPLICATE_IOU);
        if !duplicate {
            kept.push(d.clone());
        }
    }
    kept
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
            tr.update(t(i as f64), &[det(i as f32 * 40.0, 0.8)], None);
        }
        let mut last = Vec::new();
        for i in 11..40 {
            last = tr.update(t(i as f64), &[det(400.0 + (i % 3) as f32, 0.8)], None);
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
            tr.update(t(i as f64), &[det(300.0, 0.8)], None);
        }
        // Hidden for 8 s, then seen half-covered with a weak score, then whole again.
        for i in 20..28 {
            tr.update(t(i as f64), &[], None);
        }
        let half = Detection {
            bbox: BBox::new(400.0, 100.0, 500.0, 200.0),
            ..det(0.0, 0.3)
        };
        tr.update(t(28.0), &[half], None);
        let out = tr.update(t(29.0), &[det(300.0, 0.8)], None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, 1);
        assert_eq!(out[0].stationary_since, Some(t(0.0)));
    }

    #[test]
    fn lost_moving_track_is_dropped() {
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.update(t(0.0), &[det(0.0, 0.9)], None);
        tr.update(t(1.0), &[det(60.0, 0.9)], None);
        assert!(tr.update(t(7.5), &[], None).is_empty());
    }

    /// A car drawn on a test street: x, y, width, height, colour.
    type Car = (f32, f32, f32, f32, [u8; 3]);

    /// A street picture with textured road and the given cars, each with windows so it has
    /// texture of its own.
    fn street(cars: &[Car]) -> RgbImage {
        let mut img = RgbImage::from_fn(640, 360, |x, y| {
            let h = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).rotate_left(9);
            let v = 95 + (h % 40) as u8;
            image::Rgb([v, v, v - 5])
        });
        for &(cx, cy, w, h, colour) in cars {
            for y in cy as u32..(cy + h).min(360.0) as u32 {
                for x in cx.max(0.0) as u32..(cx + w).min(640.0) as u32 {
                    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                    let window = dy < h * 0.35 && (dx % 30.0) < 22.0 && dy > h * 0.1;
                    let wheel = dy > h * 0.8 && ((dx < w * 0.3) || (dx > w * 0.7));
                    let c = if window || wheel {
                        [25, 28, 35]
                    } else {
                        colour
                    };
                    img.put_pixel(x, y, image::Rgb(c));
                }
            }
        }
        img
    }

    fn car_at(x: f32, y: f32, w: f32, h: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x, y, x + w, y + h),
            ..det(0.0, score)
        }
    }

    /// One frame of a lane where a car stopped 4 s at x = 300 and then drove on, followed by a
    /// stream of cars of other colours driving through the same place, one every second, never
    /// stopping; and a red car parked at the curb behind them the whole time.
    fn lane(i: usize) -> (Vec<Car>, Vec<Car>) {
        let colours = [
            [40, 60, 200],
            [230, 230, 230],
            [30, 30, 30],
            [60, 170, 60],
            [200, 200, 40],
        ];
        let parked = (80.0, 150.0, 150.0, 70.0, [200, 30, 30]);
        let mut now = vec![parked];
        let mut next = vec![parked];
        if i < 4 {
            now.push((300.0, 200.0, 150.0, 70.0, [120, 120, 140]));
            next.push((300.0, 200.0, 150.0, 70.0, [120, 120, 140]));
        } else {
            // Every second another car, 40 px further on each time it is seen, 4 px a frame.
            let x = 300.0 + ((i % 3) as f32 - 1.0) * 40.0;
            now.push((x, 200.0, 150.0, 70.0, colours[i % colours.len()]));
            next.push((x + 4.0, 200.0, 150.0, 70.0, colours[i % colours.len()]));
        }
        (now, next)
    }

    #[test]
    fn traffic_through_a_resting_place_does_not_keep_it_at_rest() {
        // Boxes alone: each car in the stream lands on the stopped car's place and keeps that
        // track "at rest" for as long as the stream flows (the cause of false illegal_parking in
        // moving traffic). With the picture: the place shows other cars, moving, and the rest
        // ends; only the car parked at the curb is at rest, since its arrival.
        let run = |with_sight: bool| -> (Vec<Track>, f32) {
            let mut tr = Tracker::new(TrackerConfig::default());
            let mut longest_lane_rest = 0f32;
            let mut out = Vec::new();
            for i in 0..60 {
                let now = t(i as f64);
                let (cars, next) = lane(i);
                let dets: Vec<Detection> = cars
                    .iter()
                    .map(|c| car_at(c.0, c.1, c.2, c.3, 0.8))
                    .collect();
                let picture = street(&cars);
                let motion = MotionMap::between(
                    &crate::picture::small_gray(&picture).unwrap(),
                    &crate::picture::small_gray(&street(&next)).unwrap(),
                )
                .unwrap();
                let sight = Sight {
                    picture: &picture,
                    motion: motion.as_ref(),
                    camera_shift: (0.0, 0.0),
                };
                out = tr.update(now, &dets, with_sight.then_some(sight));
                for trk in out.iter().filter(|k| k.bbox.y1 > 180.0) {
                    if let Some(since) = trk.stationary_since {
                        longest_lane_rest = longest_lane_rest.max(seconds(now - since));
                    }
                }
            }
            (out, longest_lane_rest)
        };
        let (_, boxes_only) = run(false);
        assert!(
            boxes_only > 20.0,
            "the cause: {boxes_only} s at rest in the lane"
        );
        let (tracks, sighted) = run(true);
        assert!(sighted < 6.0, "at rest in the lane for {sighted} s");
        let parked: Vec<&Track> = tracks.iter().filter(|k| k.bbox.y1 < 180.0).collect();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].stationary_since, Some(t(0.0)));
    }

    #[test]
    fn another_car_in_the_same_place_is_a_new_rest() {
        // A red car parks at 0 s and leaves at 20 s; the place is empty for 6 s; a blue car
        // parks there at 26 s. Its rest starts at 26 s, not at the red car's 0 s.
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut last = Vec::new();
        for i in 0..50 {
            let cars: Vec<Car> = if i < 20 {
                vec![(200.0, 150.0, 150.0, 70.0, [200, 30, 30])]
            } else if i < 26 {
                vec![]
            } else {
                vec![(202.0, 151.0, 150.0, 70.0, [40, 60, 200])]
            };
            let dets: Vec<Detection> = cars
                .iter()
                .map(|c| car_at(c.0, c.1, c.2, c.3, 0.8))
                .collect();
            let picture = street(&cars);
            let sight = Sight {
                picture: &picture,
                motion: None,
                camera_shift: (0.0, 0.0),
            };
            last = tr.update(t(i as f64), &dets, Some(sight));
        }
        let resting: Vec<&Track> = last.iter().filter(|k| k.seen_now).collect();
        assert_eq!(resting.len(), 1, "{last:?}");
        assert_eq!(resting[0].stationary_since, Some(t(26.0)));
    }
}
