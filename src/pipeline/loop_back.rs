//! What the review loop asks of a camera: the re-check after a clearance (核查), and leaving
//! alone a thing an operator said was not what its event claimed (a suppression).

use chrono::{DateTime, Utc};

use super::CameraPipeline;
use crate::evidence::Annotation;
use crate::geometry::BBox;
use crate::ledger::Suppression;
use crate::review::{Actor, ReviewError, ReviewMessage, ReviewPhoto, ReviewRequest, Role};
use crate::scene::{EventKind, SceneReport};
use crate::source::Frame;

/// An event marked `cleared`: the camera looks at its place again.
#[derive(Debug, Clone, PartialEq)]
pub struct RecheckRequest {
    /// The event.
    pub event_id: String,
    /// Its zone.
    pub zone_id: String,
    /// Where its thing was, normalized.
    pub place: BBox,
    /// When it was marked cleared (wall clock); None: now.
    pub cleared_at: Option<DateTime<Utc>>,
}

/// A re-check under way.
#[derive(Debug, Clone)]
pub(super) struct Recheck {
    request: RecheckRequest,
    /// Stream time it began.
    asked: DateTime<Utc>,
    /// By when it must be decided.
    deadline: DateTime<Utc>,
    /// Since when the place has been seen without the thing.
    clear_since: Option<DateTime<Utc>>,
    /// Whether the zone was armed on any frame (the scene only reports armed zones).
    looked: bool,
}

/// Whether two boxes are the same place: one mostly inside the other, or overlapping well.
fn same_place(a: &BBox, b: &BBox) -> bool {
    a.iou(b) >= 0.3 || a.share_inside(b) >= 0.6 || b.share_inside(a) >= 0.6
}

impl CameraPipeline {
    /// Starts the re-check of a cleared event at stream time `now`.
    pub fn recheck(&mut self, request: RecheckRequest, now: DateTime<Utc>) {
        if self
            .rechecks
            .iter()
            .any(|r| r.request.event_id == request.event_id)
        {
            return;
        }
        let within = super::millis(self.review.recheck_within_seconds);
        // After a restart the window runs from the clearance, not from the restart.
        let asked = request.cleared_at.map_or(now, |t| t.min(now));
        tracing::info!(camera = %self.camera.id, event_id = %request.event_id, "re-checking a cleared event");
        self.rechecks.push(Recheck {
            request,
            asked,
            deadline: asked + within,
            clear_since: None,
            looked: false,
        });
    }

    /// Leaves the thing of a rejected event alone while it stays; ends its open event
    /// (`false_alarm`) and returns that `end`.
    pub fn suppress(
        &mut self,
        s: &Suppression,
        now: DateTime<Utc>,
    ) -> Vec<crate::event::EventMessage> {
        self.silence(s, now)
    }

    /// [`Self::suppress`], finding the thing (when its event is not open here) if it is at
    /// rest at its place by `seen`.
    fn silence(&mut self, s: &Suppression, seen: DateTime<Utc>) -> Vec<crate::event::EventMessage> {
        let Some(kind) = EventKind::parse(&s.kind) else {
            tracing::error!(camera = %self.camera.id, "suppression {} has an unknown kind {:?}", s.id, s.kind);
            return Vec::new();
        };
        let place = BBox::from_array(s.bbox);
        tracing::info!(camera = %self.camera.id, suppression = s.id, event_id = %s.event_id, "suppressing a false alarm's object while it stays");
        match self
            .incidents
            .silence(s.id, &s.event_id, (&s.zone, kind, place), seen)
        {
            Some(end) => self.emit(vec![end], None),
            None => Vec::new(),
        }
    }

    /// Lifts a suppression (removed from the console).
    pub fn unsuppress(&mut self, id: i64) -> bool {
        self.incidents.unsilence(id)
    }

    /// Loads what the last run left: active suppressions and cleared events not re-checked.
    pub(super) fn recover_loop_back(&mut self, now: DateTime<Utc>) {
        match self.ledger.active_suppressions(Some(&self.camera.id)) {
            Ok(list) => {
                // Found again if at rest at its place by the end of the resume window.
                let seen = now + self.resume_window;
                for s in list {
                    let _ = self.silence(&s, seen);
                }
            }
            Err(e) => tracing::error!(camera = %self.camera.id, "suppressions not loaded: {e}"),
        }
        match self.ledger.awaiting_recheck(&self.camera.id) {
            Ok(list) => {
                for due in list {
                    self.recheck(
                        RecheckRequest {
                            event_id: due.event_id,
                            zone_id: due.zone,
                            place: BBox::from_array(due.bbox),
                            cleared_at: Some(due.cleared),
                        },
                        now,
                    );
                }
            }
            Err(e) => tracing::error!(camera = %self.camera.id, "re-checks not loaded: {e}"),
        }
    }

    /// After the incidents of a frame: suppressions whose thing left end; re-checks that can
    /// be decided are, each recorded and queued as a review change with a photo.
    pub(super) fn loop_back(&mut self, frame: &Frame, report: &SceneReport) -> Vec<ReviewMessage> {
        let now = frame.time;
        for id in self.incidents.silenced_gone(now) {
            tracing::info!(camera = %self.camera.id, suppression = id, "the suppressed object left: suppression ended");
            if let Err(e) = self.ledger.end_suppression(id, now, "object_left") {
                tracing::error!("{e}");
            }
        }
        let clear_for = super::millis(self.review.recheck_clear_seconds);
        let mut out = Vec::new();
        for mut r in std::mem::take(&mut self.rechecks) {
            let armed = report.armed.contains(&r.request.zone_id);
            if armed {
                r.looked = true;
                if self.still_there(&r, report) {
                    r.clear_since = None;
                } else {
                    r.clear_since.get_or_insert(now);
                }
            }
            let clear = r.clear_since.is_some_and(|t| now - t >= clear_for);
            let verdict = if clear {
                Some(true)
            } else if now >= r.deadline {
                Some(false)
            } else {
                None
            };
            match verdict {
                Some(verified) => {
                    if let Some(m) = self.decide(&r, frame, verified) {
                        out.push(m);
                    }
                }
                None => self.rechecks.push(r),
            }
        }
        out
    }

    /// Whether the thing of a re-checked event is still at its place: its open incident's
    /// track is still at rest in the zone, or something at rest on that place since before the
    /// clearance (something that came to rest there after it is a new thing: a relapse).
    fn still_there(&self, r: &Recheck, report: &SceneReport) -> bool {
        let track = self
            .incidents
            .open()
            .iter()
            .find(|i| i.event_id == r.request.event_id)
            .map(|i| i.track_id);
        report.violations.iter().any(|v| {
            v.zone_id == r.request.zone_id
                && (Some(v.track_id) == track
                    || (v.since <= r.asked && same_place(&v.bbox, &r.request.place)))
        })
    }

    /// Records the re-check's verdict with a photo of the place now.
    fn decide(&mut self, r: &Recheck, frame: &Frame, verified: bool) -> Option<ReviewMessage> {
        let waited = (frame.time - r.asked).num_seconds();
        let (state, note) = if verified {
            (
                "verified",
                format!(
                    "the camera saw the place clear for {} s, {waited} s after the clearance",
                    self.review.recheck_clear_seconds
                ),
            )
        } else if r.looked {
            (
                "not_cleared",
                format!("still there {waited} s after the clearance"),
            )
        } else {
            (
                "not_cleared",
                "the zone was not armed during the re-check: the camera could not look".to_string(),
            )
        };
        let photo = self.review_photo(r, frame, state);
        let actor = Actor {
            name: format!("camera:{}", self.camera.id),
            role: Role::Camera,
            grids: Vec::new(),
        };
        let req = ReviewRequest {
            state: state.to_string(),
            note,
            ..Default::default()
        };
        match self.ledger.apply_review(
            &r.request.event_id,
            &req,
            &actor,
            frame.time,
            self.tz,
            photo,
        ) {
            Ok((msg, _)) => {
                tracing::info!(camera = %self.camera.id, event_id = %msg.event_id, "re-check: {state}");
                Some(msg)
            }
            // Someone moved it on meanwhile (closed it, cleared it again): nothing to decide.
            Err(ReviewError::Conflict(why)) => {
                tracing::info!(camera = %self.camera.id, event_id = %r.request.event_id, "re-check dropped: {why}");
                None
            }
            Err(e) => {
                tracing::error!(camera = %self.camera.id, event_id = %r.request.event_id, "re-check not recorded: {e}");
                None
            }
        }
    }

    /// The frame of the verdict with the zone, the place and a stamp drawn on it.
    fn review_photo(&mut self, r: &Recheck, frame: &Frame, state: &str) -> Option<ReviewPhoto> {
        let zone = self
            .scene
            .zone(&r.request.zone_id)
            .map(|z| z.polygon.clone())
            .unwrap_or_default();
        let local = frame.time.with_timezone(&self.tz);
        let ann = Annotation {
            zone: &zone,
            bbox: r.request.place,
            text: format!("核查 {state}"),
            stamp: format!("{} {}", local.format("%Y-%m-%d %H:%M:%S"), self.camera.id),
        };
        let img = self.evidence.annotate(&frame.image, &ann);
        let day = local.format("%Y-%m-%d").to_string();
        match self.evidence.save_review_photo(
            &img,
            &self.camera.id,
            &day,
            &r.request.event_id,
            &format!("{state}-{}", frame.time.timestamp_millis()),
        ) {
            Ok((path, sha256)) => Some(ReviewPhoto { path, sha256 }),
            Err(e) => {
                tracing::error!(camera = %self.camera.id, "re-check photo not written: {e}");
                self.storage_error = Some(e.to_string());
                None
            }
        }
    }
}
