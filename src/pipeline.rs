//! Pipeline: one camera's stages wired together. A frame goes in; event messages come out.
//!
//! detector -> tracker -> scene -> incidents -> evidence + ledger -> messages

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::change::StaticChangeMap;
use crate::config::{CameraConfig, Categories, DetectRegions, LoadedConfig};
use crate::detector::regions::{zone_regions, Region};
use crate::detector::{DetectTiming, Detection, Detector};
use crate::event::{self, EventMessage, Recurrence};
use crate::evidence::{Annotation, EvidenceStore};
use crate::geometry::BBox;
use crate::geometry::Point;
use crate::incidents::{EndReason, IncidentBook, IncidentChange, Phase};
use crate::ledger::{self, Ledger};
use crate::scene::{Scene, SceneReport, ZoneKind};
use crate::source::Frame;
use crate::tracker::{Track, Tracker};

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
}

impl std::fmt::Debug for CameraPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraPipeline")
            .field("camera", &self.camera.id)
            .finish()
    }
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
        let needs_change = scene.needs_change_map();
        Ok(Self {
            camera: camera.clone(),
            tz,
            detector,
            tracker: Tracker::new(cfg.tracker.clone()),
            scene,
            incidents: IncidentBook::new(&camera.id, cfg.incidents.clone()),
            evidence: EvidenceStore::new(storage.join("evidence")),
            ledger,
            recurrence: HashMap::new(),
            last_evidence: HashMap::new(),
            last_context: None,
            categories: cfg.categories.clone(),
            change: needs_change.then(|| StaticChangeMap::new(cfg.change.clone())),
            relapse_window: chrono::Duration::milliseconds(
                (cfg.incidents.relapse_window_seconds * 1000.0) as i64,
            ),
        })
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
        if on {
            return Some(Vec::new());
        }
        let changes = self.incidents.close_zone(zone_id, now);
        Some(self.emit(changes, None))
    }

    /// Runs every stage on one frame.
    pub fn process(&mut self, frame: &Frame) -> Result<FrameOutcome, PipelineError> {
        let detected = match self.camera.detect_regions {
            DetectRegions::Frame => self.detector.detect_timed(&frame.image),
            DetectRegions::Zones => {
                let regions = self.regions(frame);
                self.detector.detect_regions(&frame.image, &regions)
            }
        };
        let (detections, timing) = detected.map_err(|source| PipelineError::Detector {
            camera: self.camera.id.clone(),
            source,
        })?;
        let tracks = self.tracker.update(frame.time, &detections);
        let (w, h) = frame.image.dimensions();
        let statics = match &mut self.change {
            Some(map) => {
                // Road users are compared with nothing: they come and go.
                let (sx, sy) = (1.0 / w as f32, 1.0 / h as f32);
                let users: Vec<BBox> = tracks
                    .iter()
                    .filter(|t| t.class.is_road_user())
                    .map(|t| t.bbox.scale(sx, sy))
                    .collect();
                map.update(frame.time, &frame.image, &users).to_vec()
            }
            None => Vec::new(),
        };
        let report: SceneReport = self.scene.evaluate(frame.time, &tracks, &statics, w, h);
        let scene = &self.scene;
        let dwell = |zone: &str| {
            scene
                .zone(zone)
                .map_or(f64::INFINITY, |z| z.config.dwell_seconds)
        };
        let changes = self.incidents.step(frame.time, &report, &dwell);
        let messages = self.emit(changes, Some(frame));
        Ok(FrameOutcome {
            detections,
            tracks,
            timing,
            messages,
        })
    }

    /// The crops to detect in with `detect_regions = "zones"`: tiles over the armed zones, plus
    /// the whole frame when context is due.
    fn regions(&mut self, frame: &Frame) -> Vec<Region> {
        let (w, h) = frame.image.dimensions();
        let zones: Vec<&[Point]> = self
            .scene
            .zones()
            .iter()
            .filter(|z| z.enabled && z.config.kind != ZoneKind::Ignore)
            .map(|z| z.polygon.as_slice())
            .collect();
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

    /// Ends the events this camera left open when the process last stopped without ending them
    /// (crash, power cut, kill): each gets an `end` at its last sighting with reason
    /// `interrupted`, so the command center and the ledger have no event open forever.
    pub fn recover(&mut self) -> Vec<EventMessage> {
        let unfinished = self.ledger.unfinished(&self.camera.id).unwrap_or_else(|e| {
            tracing::error!(camera = %self.camera.id, "{e}; open events of the last run stay open");
            Vec::new()
        });
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let mut out = Vec::new();
        for payload in unfinished {
            let Ok(mut msg) = serde_json::from_str::<EventMessage>(&payload) else {
                tracing::error!(camera = %self.camera.id, "unreadable message in the ledger: {payload}");
                continue;
            };
            let (Some(start), Some(last_seen)) = (time(&msg.start_time), time(&msg.last_seen))
            else {
                continue;
            };
            msg.phase = Phase::End;
            msg.seq += 1;
            msg.end_time = Some(msg.last_seen.clone());
            msg.end_reason = Some(EndReason::Interrupted);
            if let Err(e) = self.ledger.record(&msg, start, last_seen, Some(last_seen)) {
                tracing::error!("{e}; the end is still sent");
            }
            tracing::warn!(
                camera = %self.camera.id,
                event_id = %msg.event_id,
                "ending an event left open by the last run (interrupted)"
            );
            out.push(msg);
        }
        out
    }

    /// Ends every open incident (end of clip, shutdown).
    pub fn finish(&mut self, now: DateTime<Utc>, reason: EndReason) -> Vec<EventMessage> {
        let changes = self.incidents.finish(now, reason);
        self.emit(changes, None)
    }

    /// Turns incident changes into messages: evidence, recurrence, ledger.
    fn emit(&mut self, changes: Vec<IncidentChange>, frame: Option<&Frame>) -> Vec<EventMessage> {
        let mut out = Vec::new();
        for change in changes {
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
                    },
                );
            }
            let mut evidence = Vec::new();
            if let (true, Some(frame)) = (change.take_evidence, frame) {
                let local = frame.time.with_timezone(&self.tz);
                let dwell = (frame.time - inc.start).num_seconds().max(0);
                let ann = Annotation {
                    zone: &zone.polygon,
                    bbox: inc.bbox,
                    text: format!(
                        "{} {} {:02}:{:02}",
                        inc.label,
                        inc.kind.default_category().0,
                        dwell / 60,
                        dwell % 60
                    ),
                };
                match self.evidence.save(
                    &frame.image,
                    &self.camera.id,
                    &local.format("%Y-%m-%d").to_string(),
                    &inc.event_id,
                    inc.seq,
                    &ann,
                ) {
                    Ok(refs) => {
                        self.last_evidence
                            .insert(inc.event_id.clone(), refs.clone());
                        evidence = refs;
                    }
                    // No event is lost for want of a photo: it goes out without one, and the log says why.
                    Err(e) => tracing::error!("{e}; sending the event without evidence"),
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
            let msg = event::message(change.phase, inc, place, category, recurrence, evidence);
            if let Err(e) =
                self.ledger
                    .record(&msg, inc.start, inc.last_seen, inc.end.map(|(t, _)| t))
            {
                tracing::error!("{e}; the message is still sent");
            }
            if change.phase == Phase::End {
                self.recurrence.remove(&inc.event_id);
                self.last_evidence.remove(&inc.event_id);
            }
            out.push(msg);
        }
        out
    }
}
