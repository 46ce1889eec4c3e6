//! Pipeline: one camera's stages wired together. A frame goes in; event messages come out.
//!
//! detector -> tracker -> scene -> incidents -> evidence + ledger -> messages
//!
//! In two halves: [`CameraPipeline::analyse`] computes (detector, tracker, change map, scene
//! rules) and runs in a place of the node's analysis pool (`pool.rs`); [`CameraPipeline::record`]
//! writes (incidents, evidence photos, ledger, re-checks) after the place is given up.

mod loop_back;
pub mod pool;
mod reuse;
mod unwritten;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::change::{ChangeConfig, FrameContext, StaticChangeMap};
use crate::config::{CameraConfig, Categories, DetectRegions, LoadedConfig};
use crate::detector::regions::{zone_regions, Region};
use crate::detector::{DetectTiming, Detection, Detector};
use crate::event::{self, EventMessage, Recurrence};
use crate::evidence::{Annotation, EventFiles, EvidenceError, EvidenceStore, Shot};
use crate::geometry::BBox;
use crate::geometry::Point;
use crate::incidents::{EndReason, Incident, IncidentBook, IncidentChange, Phase};
use crate::ledger::{self, Ledger};
use crate::motion::{self, MotionMap};
use crate::scene::{Scene, SceneReport};
use crate::source::{Frame, MainStream};
use crate::tracker::{Sight, Track, Tracker};

pub use loop_back::RecheckRequest;

/// Context kept around each zone when cropping (fraction of the model input): a vehicle whose
/// bottom centre is inside the zone may stick out of it.
const ZONE_MARGIN: f32 = 0.15;
/// Overlap of neighbouring tiles (fraction of the model input), so an object cut by one tile's
/// edge is whole in the next.
const TILE_OVERLAP: f32 = 0.25;

/// A pipeline failure that stops the camera's processing.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Inference failed.
    #[error("camera {camera}: {source}")]
    Detector {
        /// Camera id.
        camera: String,
        /// Cause.
        source: crate::detector::DetectorError,
    },
    /// The ledger failed.
    #[error("camera {camera}: {source}")]
    Ledger {
        /// Camera id.
        camera: String,
        /// Cause.
        source: crate::ledger::LedgerError,
    },
    /// The camera's zones are invalid.
    #[error("camera {camera}: {why}")]
    Scene {
        /// Camera id.
        camera: String,
        /// Cause.
        why: String,
    },
}

/// What one frame produced, for logs, stats and the console.
#[derive(Debug, Clone, Default)]
pub struct FrameOutcome {
    /// Detections.
    pub detections: Vec<Detection>,
    /// Live tracks.
    pub tracks: Vec<Track>,
    /// Time per detector step.
    pub timing: DetectTiming,
    /// Messages to send, in order.
    pub messages: Vec<EventMessage>,
    /// Review changes the camera made (re-check verdicts), already recorded and queued.
    pub reviews: Vec<crate::review::ReviewMessage>,
    /// Whether the model ran on this frame (false: nothing changed in the zones since it last
    /// did, its detections stood; see `full_detect_seconds`).
    pub inferred: bool,
}

/// What the analysis of a frame saw, before anything is recorded: the computing half of a
/// frame, done in a place of the node's analysis pool. [`CameraPipeline::record`] turns it into
/// events, evidence and ledger rows outside the pool, so disk and main-stream waits never hold
/// up other cameras' analysis.
#[derive(Debug)]
pub struct Analysis {
    detections: Vec<Detection>,
    tracks: Vec<Track>,
    timing: DetectTiming,
    inferred: bool,
    report: SceneReport,
}

/// All stages of one camera.
pub struct CameraPipeline {
    camera: CameraConfig,
    tz: Tz,
    detector: Arc<Detector>,
    tracker: Tracker,
    scene: Scene,
    incidents: IncidentBook,
    evidence: EvidenceStore,
    ledger: Ledger,
    /// Recurrence computed when each open incident started, repeated in its later messages.
    recurrence: HashMap<String, Recurrence>,
    /// Latest evidence of each open incident, repeated in messages that bring none.
    last_evidence: HashMap<String, Vec<event::EvidenceRef>>,
    /// With zone-focused detection: when the whole frame was last run for context.
    last_context: Option<DateTime<Utc>>,
    /// The deployment's category code and name per event kind.
    categories: Categories,
    /// The static-change map, when a zone's rule needs it.
    change: Option<StaticChangeMap>,
    /// How soon after an earlier event's end a new one at the same place is a relapse.
    relapse_window: chrono::Duration,
    /// Events the last run left open (crash, kill), waiting to be found in place again.
    pending: Vec<PendingResume>,
    /// Until when (stream time) pending events may still be found; set by the first frame.
    resume_deadline: Option<DateTime<Utc>>,
    /// An event left open longer ago than this is ended rather than resumed.
    resume_max_gap: chrono::Duration,
    /// How long to look for a pending event's object after the first frame.
    resume_window: chrono::Duration,
    /// Why evidence cannot be written now (full disk, permissions); None once it works again.
    storage_error: Option<String>,
    /// Messages the ledger refused, written again with backoff (they are not sent till then).
    /// The camera's history from the city ledger was not available when it was taken.
    history_partial: bool,
    unwritten: unwritten::Unwritten,
    /// The previous frame small and grey, to measure how far the camera swayed since.
    previous_small: Option<image::GrayImage>,
    /// The previous frame (shared, not copied): a rest is confirmed at its second sighting and
    /// began at the first, so the rest-start photo is usually this one.
    previous_frame: Option<(DateTime<Utc>, Arc<image::RgbImage>)>,
    /// Per (zone, track) at rest in an armed zone: the frame of when the rest began.
    rest_photos: HashMap<(String, u64), RestPhoto>,
    /// Re-check and session settings.
    review: crate::config::ReviewConfig,
    /// Cleared events whose place the camera is looking at again.
    rechecks: Vec<loop_back::Recheck>,
    /// With `detect_url`: the main stream, where evidence photos come from.
    main: Option<MainStream>,
    /// The main stream's photo of the frame being recorded, once one of its events needed it
    /// (one grab serves every event of a frame); dropped when the frame is done.
    main_photo: Option<(DateTime<Utc>, EvidenceFrame)>,
    /// Why the main stream gave no photo the last time it was asked; None once it did.
    main_error: Option<String>,
    /// The last frame the model ran on, for skipping inference on a still street.
    last_inference: Option<reuse::LastInference>,
    /// The last run's suppressions and re-checks are to be loaded at the next frame.
    loop_back_due: bool,
}

/// The picture an event's photos are made from, and when it shows the street.
#[derive(Debug, Clone)]
struct EvidenceFrame {
    time: DateTime<Utc>,
    image: Arc<image::RgbImage>,
    /// Set when the main stream failed and the detect stream's frame stands in: why.
    fallback: Option<String>,
}

/// An event of the last run, not ended, with what is needed to continue or end it.
#[derive(Debug, Clone)]
struct PendingResume {
    /// Its latest message.
    msg: EventMessage,
    start: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    bbox: BBox,
}

/// The frame of the moment something came to rest in a zone, kept for its event's evidence.
#[derive(Debug, Clone)]
struct RestPhoto {
    /// When its rest began (the key's current stay).
    since: DateTime<Utc>,
    /// When the picture was taken: `since`, or the first frame after it that was kept.
    time: DateTime<Utc>,
    image: Arc<image::RgbImage>,
    /// Where the thing was.
    bbox: BBox,
}

/// What an event's photos need to know of the camera.
struct Photos<'a> {
    store: &'a EvidenceStore,
    camera_id: &'a str,
    tz: Tz,
    zone: &'a [Point],
}

impl Photos<'_> {
    /// The photos of one message: the rest-start frame (a `new` that has one), then the frame
    /// and the crop of now, each annotated with the zone, the box, the dwell and a time stamp.
    fn take(
        &self,
        inc: &Incident,
        frame: &EvidenceFrame,
        rest_start: Option<&RestPhoto>,
    ) -> Result<Vec<event::EvidenceRef>, EvidenceError> {
        let day = frame
            .time
            .with_timezone(&self.tz)
            .format("%Y-%m-%d")
            .to_string();
        let files = EventFiles {
            camera_id: self.camera_id,
            day: &day,
            event_id: &inc.event_id,
            seq: inc.seq,
        };
        let annotation = |at: DateTime<Utc>| {
            let dwell = (at - inc.start).num_seconds().max(0);
            Annotation {
                zone: self.zone,
                bbox: inc.bbox,
                text: format!(
                    "{} {} {:02}:{:02}",
                    inc.label,
                    inc.kind.default_category().0,
                    dwell / 60,
                    dwell % 60
                ),
                stamp: format!(
                    "{} {}",
                    at.with_timezone(&self.tz).format("%Y-%m-%d %H:%M:%S"),
                    self.camera_id
                ),
            }
        };
        let mut refs = Vec::new();
        if let Some(p) = rest_start {
            let time = event::local_time(p.time, self.tz);
            let shot = Shot {
                frame: &p.image,
                time: &time,
            };
            refs.push(
                self.store
                    .save_rest_start(shot, files, &annotation(p.time))?,
            );
        }
        let time = event::local_time(frame.time, self.tz);
        let shot = Shot {
            frame: &frame.image,
            time: &time,
        };
        refs.extend(self.store.save(shot, files, &annotation(frame.time))?);
        Ok(refs)
    }
}

impl std::fmt::Debug for CameraPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraPipeline")
            .field("camera", &self.camera.id)
            .finish()
    }
}

/// A static-change map that leaves out the scene's `ignore` zones.
fn change_map(cfg: &ChangeConfig, scene: &Scene) -> StaticChangeMap {
    let mut map = StaticChangeMap::new(cfg.clone());
    map.set_ignored(scene.ignored_polygons());
    map
}

fn millis(seconds: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((seconds * 1000.0) as i64)
}

impl CameraPipeline {
    /// Builds the pipeline of camera `camera` from a loaded config.
    pub fn new(
        loaded: &LoadedConfig,
        camera: &CameraConfig,
        detector: Arc<Detector>,
    ) -> Result<Self, PipelineError> {
        let cfg = &loaded.config;
        let tz = loaded.camera_tz(camera);
        let scene =
            Scene::new(camera, tz, &loaded.holidays()).map_err(|e| PipelineError::Scene {
                camera: camera.id.clone(),
                why: e.to_string(),
            })?;
        let scene = scene.with_rules(cfg.rules.clone());
        let storage = loaded.storage_dir();
        let ledger = Ledger::open(&storage).map_err(|source| PipelineError::Ledger {
            camera: camera.id.clone(),
            source,
        })?;
        let change = scene
            .needs_change_map()
            .then(|| change_map(&cfg.change, &scene));
        Ok(Self {
            camera: camera.clone(),
            tz,
            detector,
            tracker: Tracker::new(cfg.tracker.clone()),
            scene,
            incidents: IncidentBook::new(&camera.id, cfg.incidents.clone()),
            evidence: EvidenceStore::new(loaded.evidence_dir()),
            ledger,
            recurrence: HashMap::new(),
            last_evidence: HashMap::new(),
            last_context: None,
            categories: cfg.categories.clone(),
            change,
            relapse_window: millis(cfg.incidents.relapse_window_seconds),
            pending: Vec::new(),
            resume_deadline: None,
            resume_max_gap: millis(cfg.incidents.resume_max_gap_seconds),
            resume_window: millis(
                cfg.incidents
                    .end_after_seconds
                    .max(2.0 * camera.detect_every_seconds),
            ),
            storage_error: None,
            unwritten: unwritten::Unwritten::default(),
            previous_small: None,
            previous_frame: None,
            rest_photos: HashMap::new(),
            review: cfg.review.clone(),
            rechecks: Vec::new(),
            loop_back_due: false,
            main: camera
                .detect_url
                .is_some()
                .then(|| MainStream::new(&camera.url, camera.decode)),
            main_photo: None,
            main_error: None,
            last_inference: None,
            history_partial: false,
        })
    }

    /// From now on every message is also queued in the outbox for the broker (the daemon and
    /// publishing replays).
    pub fn queue_for_delivery(&mut self) {
        self.ledger.set_delivery(true);
    }

    /// Applies a reloaded config to this running camera without touching its connection: zones,
    /// schedules, dwell, incident, tracker and rule settings, categories. Events open in a zone
    /// that is gone or switched off end (`zone_disabled`) at `now`; the others continue.
    pub fn reconfigure(
        &mut self,
        loaded: &LoadedConfig,
        camera: &CameraConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventMessage>, PipelineError> {
        let cfg = &loaded.config;
        let tz = loaded.camera_tz(camera);
        let scene = Scene::new(camera, tz, &loaded.holidays())
            .map_err(|e| PipelineError::Scene {
                camera: camera.id.clone(),
                why: e.to_string(),
            })?
            .with_rules(cfg.rules.clone());
        let mut closing: Vec<String> = self
            .incidents
            .open()
            .iter()
            .filter(|i| scene.zone(&i.zone_id).is_none_or(|z| !z.enabled))
            .map(|i| i.zone_id.clone())
            .collect();
        closing.dedup();
        let changes: Vec<IncidentChange> = closing
            .iter()
            .flat_map(|z| self.incidents.close_zone(z, now))
            .collect();
        // Ended under the old zones, whose names the messages carry.
        let messages = self.emit(changes, None);
        let needs_change = scene.needs_change_map();
        self.scene = scene;
        self.camera = camera.clone();
        self.tz = tz;
        self.tracker.set_config(cfg.tracker.clone());
        self.incidents.set_config(cfg.incidents.clone());
        self.categories = cfg.categories.clone();
        self.review = cfg.review.clone();
        self.relapse_window = millis(cfg.incidents.relapse_window_seconds);
        self.resume_max_gap = millis(cfg.incidents.resume_max_gap_seconds);
        match (&mut self.change, needs_change) {
            (None, true) => self.change = Some(change_map(&cfg.change, &self.scene)),
            (Some(_), false) => self.change = None,
            (Some(map), true) => map.set_ignored(self.scene.ignored_polygons()),
            (None, false) => {}
        }
        Ok(messages)
    }

    /// Why messages or evidence cannot be written now, if they cannot (for the camera's
    /// status): the ledger's refusal first, since it holds messages back.
    pub fn storage_error(&self) -> Option<&str> {
        self.unwritten.error().or(self.storage_error.as_deref())
    }

    /// Why the main stream gave no evidence photo the last time (cameras with `detect_url`).
    pub fn main_stream_error(&self) -> Option<&str> {
        self.main_error.as_deref()
    }

    /// The picture for this frame's evidence: the main stream's (taken once per frame) when the
    /// camera has a detect stream, else the frame itself; the frame stands in when the main
    /// stream fails, saying why.
    fn evidence_frame(&mut self, frame: &Frame) -> EvidenceFrame {
        let own = |fallback: Option<String>| EvidenceFrame {
            time: frame.time,
            image: frame.image.clone(),
            fallback,
        };
        let Some(main) = &self.main else {
            return own(None);
        };
        if let Some((t, photo)) = &self.main_photo {
            if *t == frame.time {
                return photo.clone();
            }
        }
        let photo = match main.grab(frame.pts) {
            Ok(p) => {
                tracing::debug!(camera = %self.camera.id, delay = ?p.delay, "photo from the main stream");
                if self.main_error.take().is_some() {
                    tracing::info!(camera = %self.camera.id, "the main stream gives photos again");
                }
                EvidenceFrame {
                    time: frame.time
                        + chrono::Duration::from_std(p.delay)
                            .unwrap_or_else(|_| chrono::Duration::zero()),
                    image: Arc::new(p.image),
                    fallback: None,
                }
            }
            Err(e) => {
                let (w, h) = frame.image.dimensions();
                let why = format!(
                    "main stream unavailable ({e}): photos taken from the detect stream ({w}x{h})"
                );
                tracing::warn!(camera = %self.camera.id, "{why}");
                self.main_error = Some(e.to_string());
                own(Some(why))
            }
        };
        self.main_photo = Some((frame.time, photo.clone()));
        photo
    }

    /// Number of open incidents.
    pub fn open_incidents(&self) -> usize {
        self.incidents.open().len()
    }

    /// The camera.
    pub fn camera(&self) -> &CameraConfig {
        &self.camera
    }

    /// Arms or disarms a zone; ends the zone's open incidents when disarmed.
    pub fn set_zone_enabled(
        &mut self,
        zone_id: &str,
        on: bool,
        now: DateTime<Utc>,
    ) -> Option<Vec<EventMessage>> {
        if !self.scene.set_enabled(zone_id, on) {
            return None;
        }
        if let Some(map) = &mut self.change {
            map.set_ignored(self.scene.ignored_polygons());
        }
        if on {
            return Some(Vec::new());
        }
        let changes = self.incidents.close_zone(zone_id, now);
        Some(self.emit(changes, None))
    }

    /// Runs every stage on one frame: [`Self::analyse`] then [`Self::record`].
    pub fn process(&mut self, frame: &Frame) -> Result<FrameOutcome, PipelineError> {
        let analysis = self.analyse(frame)?;
        Ok(self.record(frame, analysis))
    }

    /// The computing stages on one frame: the model (or its last detections while the zones
    /// are still), tracking, the static-change map and the zones' rules.
    pub fn analyse(&mut self, frame: &Frame) -> Result<Analysis, PipelineError> {
        let still = self.camera.full_detect_seconds > 0.0
            && self.last_inference.as_ref().is_some_and(|last| {
                last.still_holds(
                    frame.time,
                    &frame.small,
                    &self.scene.watched_polygons(),
                    self.camera.full_detect_seconds,
                )
            });
        let (detections, timing) = if still {
            let last = self.last_inference.as_ref().map(|l| l.detections.clone());
            (last.unwrap_or_default(), DetectTiming::default())
        } else {
            let (detections, timing) = self.detect(frame)?;
            if self.camera.full_detect_seconds > 0.0 {
                self.last_inference = Some(reuse::LastInference {
                    time: frame.time,
                    small: frame.small.clone(),
                    detections: detections.clone(),
                });
            }
            (detections, timing)
        };
        let (tracks, report) = self.observe(frame, &detections);
        Ok(Analysis {
            detections,
            tracks,
            timing,
            inferred: !still,
            report,
        })
    }

    /// Runs the model on a frame (the whole frame or the zones' tiles).
    fn detect(&mut self, frame: &Frame) -> Result<(Vec<Detection>, DetectTiming), PipelineError> {
        let detected = match self.camera.detect_regions {
            DetectRegions::Frame => self.detector.detect_timed(&frame.image),
            DetectRegions::Zones => {
                let regions = self.regions(frame);
                self.detector.detect_regions(&frame.image, &regions)
            }
        };
        detected.map_err(|source| PipelineError::Detector {
            camera: self.camera.id.clone(),
            source,
        })
    }

    /// Tracking, the static-change map and the zones' rules on one frame and its detections.
    fn observe(&mut self, frame: &Frame, detections: &[Detection]) -> (Vec<Track>, SceneReport) {
        let motion = match &frame.next_small {
            Some(next) => MotionMap::between(&frame.small, next).unwrap_or_else(|e| {
                tracing::debug!(camera = %self.camera.id, "no motion map for this frame: {e}");
                None
            }),
            None => None,
        };
        let (w, h) = frame.image.dimensions();
        let camera_shift = match &self.previous_small {
            Some(before) => {
                let (sx, sy) = motion::camera_shift(before, &frame.small).unwrap_or_else(|e| {
                    tracing::debug!(camera = %self.camera.id, "camera shift not measured: {e}");
                    (0.0, 0.0)
                });
                let (fw, fh) = frame.small.dimensions();
                (sx * w as f32 / fw as f32, sy * h as f32 / fh as f32)
            }
            None => (0.0, 0.0),
        };
        self.previous_small = Some(frame.small.clone());
        let sight = Sight {
            picture: &frame.image,
            motion: motion.as_ref(),
            camera_shift,
        };
        let tracks = self.tracker.update(frame.time, detections, Some(sight));
        let statics = match &mut self.change {
            Some(map) => {
                // Road users are compared with nothing: they come and go.
                let (sx, sy) = (1.0 / w as f32, 1.0 / h as f32);
                let users: Vec<BBox> = tracks
                    .iter()
                    .filter(|t| t.class.is_road_user())
                    .map(|t| t.bbox.scale(sx, sy))
                    .collect();
                let context = FrameContext {
                    road_users: &users,
                    motion: motion.as_ref(),
                };
                match map.update(frame.time, &frame.image, context) {
                    Ok(objects) => objects.to_vec(),
                    Err(e) => {
                        tracing::warn!(camera = %self.camera.id, "static-change map skipped a frame: {e}");
                        map.objects().to_vec()
                    }
                }
            }
            None => Vec::new(),
        };
        let report: SceneReport = self.scene.evaluate(frame.time, &tracks, &statics, w, h);
        self.keep_rest_photos(frame, &report);
        (tracks, report)
    }

    /// The recording stages on an analysed frame: events opened, continued and ended, their
    /// evidence photos (from the main stream when there is one) and ledger rows, re-checks of
    /// cleared places; returns the messages to send.
    pub fn record(&mut self, frame: &Frame, analysis: Analysis) -> FrameOutcome {
        let Analysis {
            detections,
            tracks,
            timing,
            inferred,
            report,
        } = analysis;
        // Messages the ledger refused earlier go first, so each event's stay in order.
        self.unwritten.retry(&self.ledger, &self.camera.id, false);
        let mut messages = self.resume(frame, &report);
        if std::mem::take(&mut self.loop_back_due) {
            self.recover_loop_back(frame.time);
        }
        let scene = &self.scene;
        let dwell = |zone: &str| {
            scene
                .zone(zone)
                .map_or(f64::INFINITY, |z| z.config.dwell_seconds)
        };
        let changes = self.incidents.step(frame.time, &report, &dwell);
        messages.extend(self.emit(changes, Some(frame)));
        let reviews = self.loop_back(frame, &report);
        // The main stream's photo served this frame's events; a full-resolution picture per
        // camera is too much to keep until the next event.
        self.main_photo = None;
        self.previous_frame = Some((frame.time, frame.image.clone()));
        FrameOutcome {
            detections,
            tracks,
            timing,
            messages,
            reviews,
            inferred,
        }
    }

    /// Keeps, for every thing at rest in an armed zone, the frame of when its rest began: this
    /// frame or the previous one when the rest began then, else the first frame it is seen in.
    fn keep_rest_photos(&mut self, frame: &Frame, report: &SceneReport) {
        let previous = self.previous_frame.clone();
        let mut kept = std::mem::take(&mut self.rest_photos);
        let mut keep = HashMap::with_capacity(report.violations.len());
        for v in &report.violations {
            let key = (v.zone_id.clone(), v.track_id);
            let photo = match kept.remove(&key) {
                Some(p) if p.since == v.since => p,
                _ => match kept
                    .iter()
                    .find(|((zone, _), p)| {
                        *zone == v.zone_id
                            && p.bbox.iou(&v.bbox) >= 0.5
                            && (p.since - v.since).num_seconds().abs() <= 10
                    })
                    .map(|(k, _)| k.clone())
                    .and_then(|k| kept.remove(&k))
                {
                    // The same thing under a new id (a pile the change map lost for a frame).
                    Some(p) => p,
                    None => {
                        let (time, image) = match &previous {
                            Some((t, img)) if *t == v.since => (*t, img.clone()),
                            _ => (frame.time, frame.image.clone()),
                        };
                        RestPhoto {
                            since: v.since,
                            time,
                            image,
                            bbox: v.bbox,
                        }
                    }
                },
            };
            keep.insert(key, photo);
        }
        self.rest_photos = keep;
    }

    /// The crops to detect in with `detect_regions = "zones"`: tiles over the armed zones, plus
    /// the whole frame when context is due.
    fn regions(&mut self, frame: &Frame) -> Vec<Region> {
        let (w, h) = frame.image.dimensions();
        let zones = self.scene.watched_polygons();
        let mut regions = zone_regions(
            (w, h),
            &zones,
            self.detector.manifest().input.size,
            ZONE_MARGIN,
            TILE_OVERLAP,
        );
        let every = self.camera.context_every_seconds;
        let due = every > 0.0
            && self
                .last_context
                .is_none_or(|t| (frame.time - t).num_milliseconds() as f64 >= every * 1000.0 - 1.0);
        if due || regions.is_empty() {
            self.last_context = Some(frame.time);
            regions.push(Region::full(w, h));
        }
        regions
    }

    /// Puts a camera's history from the city ledger (the latest message of each of its recent
    /// events, and their review changes) into this ledger, without sending it again:
    /// recurrence counts, relapse flags and review states then come out as if the camera had
    /// never moved.
    pub fn import_history(&mut self, history: &crate::city::History) {
        self.ledger.set_delivery(false);
        match crate::city::record_into(&self.ledger, history) {
            Ok((0, 0)) => {}
            Ok((n, r)) => {
                tracing::info!(camera = %self.camera.id, "{n} message(s) and {r} review change(s) of the camera's history taken from the city ledger")
            }
            Err(e) => {
                tracing::error!(camera = %self.camera.id, "{e}; recurrence counts may be short");
                self.history_partial = true;
            }
        }
        self.ledger.set_delivery(true);
    }

    /// The camera's history could not be read: its messages say so.
    pub fn mark_history_partial(&mut self) {
        self.history_partial = true;
    }

    /// Has every message asked `custody` before it is written (cluster mode).
    pub fn set_custody(&mut self, custody: Arc<dyn crate::domain::custody::Custody>) {
        self.unwritten.set_custody(custody);
    }

    /// Why this node may no longer write for the camera (cluster mode), once custody refused.
    pub fn custody_refused(&self) -> Option<&str> {
        self.unwritten.refused()
    }

    /// Takes up a camera this node got from another node (cluster mode). `held` are the latest
    /// messages of its open events as the cluster keeps them: each goes into this ledger and
    /// its outbox unless already there (an exact copy of what the last node wrote, so a message
    /// that node wrote and could not send is sent). This node's own leftovers of the camera that
    /// the cluster no longer holds open were carried on by another node: they are closed as
    /// handed over, without a message. Then the held events are taken up as after a restart.
    pub fn recover_held(&mut self, held: &[String]) {
        let mut open = std::collections::HashSet::new();
        for payload in held {
            let Ok(msg) = serde_json::from_str::<EventMessage>(payload) else {
                tracing::error!(camera = %self.camera.id, "unreadable open event from the cluster: {payload}");
                continue;
            };
            open.insert(msg.event_id.clone());
            if self
                .ledger
                .has_message(&msg.event_id, msg.seq)
                .unwrap_or(true)
            {
                continue;
            }
            let (Some(start), Some(last_seen)) = (
                event::parse_time(&msg.start_time),
                event::parse_time(&msg.last_seen),
            ) else {
                continue;
            };
            let recorded = self
                .ledger
                .record(&msg, start, last_seen, None)
                .and_then(|()| {
                    self.ledger.note(
                        &msg.event_id,
                        last_seen,
                        "taken_over",
                        &format!("continued from another node at seq {}", msg.seq),
                    )
                });
            if let Err(e) = recorded {
                tracing::error!(camera = %self.camera.id, "{e}");
            }
        }
        let leftovers = self.ledger.unfinished(&self.camera.id).unwrap_or_default();
        for payload in leftovers {
            let Ok(msg) = serde_json::from_str::<EventMessage>(&payload) else {
                continue;
            };
            if !open.contains(&msg.event_id) {
                tracing::info!(camera = %self.camera.id, event_id = %msg.event_id, "closing an event another node carried on (handed over)");
                if let Err(e) = self.ledger.close_handed_over(&msg.event_id) {
                    tracing::error!(camera = %self.camera.id, "{e}");
                }
            }
        }
        self.recover();
    }

    /// Takes up the events this camera left open when the process last stopped without ending
    /// them (crash, power cut, kill). Each is continued, under its own id, if its object is found
    /// in place within the first `end_after_seconds` of video; otherwise it gets an `end` at its
    /// last sighting with reason `interrupted`. So no event stays open forever, and a car that
    /// stayed parked through a restart is not reported twice.
    pub fn recover(&mut self) {
        let unfinished = self.ledger.unfinished(&self.camera.id).unwrap_or_else(|e| {
            tracing::error!(camera = %self.camera.id, "{e}; open events of the last run stay open");
            Vec::new()
        });
        for payload in unfinished {
            let Ok(msg) = serde_json::from_str::<EventMessage>(&payload) else {
                tracing::error!(camera = %self.camera.id, "unreadable message in the ledger: {payload}");
                continue;
            };
            let (Some(start), Some(last_seen)) = (
                event::parse_time(&msg.start_time),
                event::parse_time(&msg.last_seen),
            ) else {
                continue;
            };
            let b = msg.object.bbox;
            self.pending.push(PendingResume {
                bbox: BBox::new(b[0], b[1], b[2], b[3]),
                msg,
                start,
                last_seen,
            });
        }
        self.loop_back_due = true;
        if !self.pending.is_empty() {
            tracing::info!(
                camera = %self.camera.id,
                "{} event(s) left open by the last run: continuing those still in place",
                self.pending.len()
            );
        }
    }

    /// Events of the last run still waiting to be found in place.
    pub fn pending_resumes(&self) -> usize {
        self.pending.len()
    }

    /// Continues pending events whose object is in place on this frame; ends those that are
    /// too old or were not found in time.
    fn resume(&mut self, frame: &Frame, report: &SceneReport) -> Vec<EventMessage> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let now = frame.time;
        let deadline = *self.resume_deadline.get_or_insert(now + self.resume_window);
        let mut out = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let found = report.violations.iter().find(|v| {
                v.seen_now
                    && v.zone_id == p.msg.zone.id
                    && v.kind.as_str() == p.msg.kind
                    && v.bbox.iou(&p.bbox) >= 0.5
            });
            let too_old = now - p.last_seen > self.resume_max_gap;
            match found {
                Some(v) if !too_old && report.armed.contains(&v.zone_id) => {
                    tracing::warn!(
                        camera = %self.camera.id,
                        event_id = %p.msg.event_id,
                        "continuing an event left open by the last run: its object is still there"
                    );
                    let gap = (now - p.last_seen).num_seconds();
                    if let Err(e) = self.ledger.note(
                        &p.msg.event_id,
                        now,
                        "resumed",
                        &format!("found in place after a restart ({gap} s without sight)"),
                    ) {
                        tracing::error!("{e}");
                    }
                    self.recurrence
                        .insert(p.msg.event_id.clone(), p.msg.recurrence.clone());
                    self.last_evidence
                        .insert(p.msg.event_id.clone(), p.msg.evidence.clone());
                    let inc = Incident::at_rest(p.msg.event_id, p.msg.seq, p.start, now, v);
                    let change = self.incidents.adopt(inc);
                    out.extend(self.emit(vec![change], Some(frame)));
                }
                _ if too_old || now >= deadline => out.push(self.end_interrupted(p)),
                _ => self.pending.push(p),
            }
        }
        out
    }

    /// The `end` of an event of the last run that was not found again: at its last sighting,
    /// reason `interrupted`.
    fn end_interrupted(&mut self, p: PendingResume) -> EventMessage {
        let mut msg = p.msg;
        msg.phase = Phase::End;
        msg.seq += 1;
        msg.end_time = Some(msg.last_seen.clone());
        msg.end_reason = Some(EndReason::Interrupted);
        self.unwritten.write(
            &self.ledger,
            &self.camera.id,
            &msg,
            p.start,
            p.last_seen,
            Some(p.last_seen),
        );
        tracing::warn!(
            camera = %self.camera.id,
            event_id = %msg.event_id,
            "ending an event left open by the last run (interrupted): its object was not found again"
        );
        msg
    }

    /// Ends every open incident (end of clip, shutdown).
    pub fn finish(&mut self, now: DateTime<Utc>, reason: EndReason) -> Vec<EventMessage> {
        let mut out: Vec<EventMessage> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|p| self.end_interrupted(p))
            .collect();
        let changes = self.incidents.finish(now, reason);
        out.extend(self.emit(changes, None));
        // The last chance to write what the ledger refused: a few more attempts.
        for _ in 0..3 {
            if self.unwritten.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
            self.unwritten.retry(&self.ledger, &self.camera.id, true);
        }
        if !self.unwritten.is_empty() {
            tracing::error!(
                camera = %self.camera.id,
                "{} message(s) could not be written to the ledger before stopping and are not sent",
                self.unwritten.len()
            );
        }
        out
    }

    /// Turns incident changes into messages: evidence, recurrence, ledger.
    fn emit(&mut self, changes: Vec<IncidentChange>, frame: Option<&Frame>) -> Vec<EventMessage> {
        let mut out = Vec::new();
        for change in changes {
            // Taken first: the main stream's photo needs the pipeline mutably.
            let shot = match (change.take_evidence, frame) {
                (true, Some(frame)) => Some(self.evidence_frame(frame)),
                _ => None,
            };
            let inc = &change.incident;
            let Some(zone) = self.scene.zone(&inc.zone_id) else {
                continue;
            };
            if change.phase == Phase::New {
                let history = self
                    .ledger
                    .history(
                        ledger::Place {
                            camera: &self.camera.id,
                            zone: &inc.zone_id,
                            kind: inc.kind.as_str(),
                            bbox: [inc.bbox.x1, inc.bbox.y1, inc.bbox.x2, inc.bbox.y2],
                        },
                        inc.start,
                        self.relapse_window,
                    )
                    .unwrap_or_else(|e| {
                        tracing::error!("{e}; sending the event without recurrence");
                        Default::default()
                    });
                self.recurrence.insert(
                    inc.event_id.clone(),
                    Recurrence {
                        count_7d: history.count_7d,
                        count_30d: history.count_30d,
                        previous_end: history.previous_end.map(|t| event::local_time(t, self.tz)),
                        relapse: history.relapse,
                        history_partial: self.history_partial,
                    },
                );
            }
            let mut evidence = Vec::new();
            let fallback = shot.as_ref().and_then(|s| s.fallback.clone());
            if let Some(shot) = shot {
                let rest_start = (change.phase == Phase::New)
                    .then(|| self.rest_photos.get(&(inc.zone_id.clone(), inc.track_id)))
                    .flatten();
                let photos = Photos {
                    store: &self.evidence,
                    camera_id: &self.camera.id,
                    tz: self.tz,
                    zone: &zone.polygon,
                };
                match photos.take(inc, &shot, rest_start) {
                    Ok(refs) => {
                        if self.storage_error.take().is_some() {
                            tracing::info!(camera = %self.camera.id, "evidence is written again");
                        }
                        self.last_evidence
                            .insert(inc.event_id.clone(), refs.clone());
                        evidence = refs;
                    }
                    // No event is lost for want of a photo: it goes out without one, and the
                    // message, the camera's status and the log say why.
                    Err(e) => {
                        tracing::error!(camera = %self.camera.id, "{e}; sending the event without evidence");
                        self.storage_error = Some(e.to_string());
                    }
                }
            }
            if evidence.is_empty() {
                evidence = self
                    .last_evidence
                    .get(&inc.event_id)
                    .cloned()
                    .unwrap_or_default();
            }
            let recurrence = self
                .recurrence
                .get(&inc.event_id)
                .cloned()
                .unwrap_or_default();
            let place = event::Place {
                camera: &self.camera,
                zone: &zone.config,
                tz: self.tz,
            };
            let category = self.categories.category(inc.kind);
            let mut msg = event::message(change.phase, inc, place, category, recurrence, evidence);
            if msg.evidence.is_empty() {
                msg.evidence_missing =
                    Some(self.storage_error.clone().unwrap_or_else(|| {
                        "no evidence photo could be written for this event".into()
                    }));
            } else if fallback.is_some() {
                msg.evidence_missing = fallback;
            }
            self.unwritten.write(
                &self.ledger,
                &self.camera.id,
                &msg,
                inc.start,
                inc.last_seen,
                inc.end.map(|(t, _)| t),
            );
            if change.phase == Phase::End {
                self.recurrence.remove(&inc.event_id);
                self.last_evidence.remove(&inc.event_id);
            }
            out.push(msg);
        }
        out
    }
}
