//! Scene: a camera's zones with their schedules, and the rules that turn tracks into violations.

mod rules;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::change::StaticObject;
use crate::config::{CameraConfig, RuleConfig, ZoneConfig};
use crate::geometry::{point_in_polygon, BBox, Point};
use crate::tracker::Track;

pub use crate::domain::schedule::{DateList, Schedule, ScheduleError};
pub use crate::domain::{EventKind, ZoneKind};
pub use rules::Thing;

/// A zone ready for evaluation.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Config as written (names, grid, unit).
    pub config: ZoneConfig,
    /// Normalized polygon.
    pub polygon: Vec<Point>,
    /// Parsed schedule.
    pub schedule: Schedule,
    /// Armed by config or by command.
    pub enabled: bool,
}

impl Zone {
    /// Builds a zone from its (already validated) config.
    pub fn new(config: &ZoneConfig, holidays: &DateList) -> Result<Self, ScheduleError> {
        Ok(Self {
            polygon: config
                .polygon
                .iter()
                .map(|p| Point::new(p[0] as f32, p[1] as f32))
                .collect(),
            schedule: Schedule::parse(&config.schedule, holidays)?,
            enabled: config.enabled,
            config: config.clone(),
        })
    }

    /// Whether a normalized box's ground point lies in the zone.
    pub fn contains(&self, bbox_norm: &BBox) -> bool {
        point_in_polygon(bbox_norm.bottom_center(), &self.polygon)
    }
}

/// An object currently breaking a zone's rule (whether or not the dwell is reached yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The zone.
    pub zone_id: String,
    /// Event kind this would raise.
    pub kind: EventKind,
    /// The track.
    pub track_id: u64,
    /// Detector label.
    pub label: String,
    /// Latest detection score.
    pub score: f32,
    /// Normalized box.
    pub bbox: BBox,
    /// When the dwell started: the object came to rest here, or the zone was armed, whichever is later.
    pub since: DateTime<Utc>,
    /// Whether the track was matched to a detection on this frame.
    pub seen_now: bool,
}

/// What the scene says about one frame.
#[derive(Debug, Clone, Default)]
pub struct SceneReport {
    /// Objects breaking a rule now.
    pub violations: Vec<Violation>,
    /// Zones armed at this frame (enabled and inside their schedule).
    pub armed: Vec<String>,
}

/// A camera's zones and their arming state.
#[derive(Debug, Clone)]
pub struct Scene {
    zones: Vec<Zone>,
    tz: Tz,
    rules: RuleConfig,
    /// When each armed zone became armed (frame time), to start dwell no earlier than that.
    armed_since: HashMap<String, DateTime<Utc>>,
    /// Static changes seen with no road user on them: things of their own.
    standalone: HashSet<u64>,
}

impl Scene {
    /// Builds the scene of a camera.
    pub fn new(camera: &CameraConfig, tz: Tz, holidays: &DateList) -> Result<Self, ScheduleError> {
        let zones = camera
            .zones
            .iter()
            .map(|z| Zone::new(z, holidays))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            zones,
            tz,
            armed_since: HashMap::new(),
            standalone: HashSet::new(),
            rules: RuleConfig::default(),
        })
    }

    /// The same scene with these rule settings.
    pub fn with_rules(mut self, rules: RuleConfig) -> Self {
        self.rules = rules;
        self
    }

    /// The zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// A zone by id.
    pub fn zone(&self, id: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.config.id == id)
    }

    /// Arms or disarms a zone (a command from the command center); false if there is no such zone.
    pub fn set_enabled(&mut self, id: &str, on: bool) -> bool {
        match self.zones.iter_mut().find(|z| z.config.id == id) {
            Some(z) => {
                z.enabled = on;
                true
            }
            None => false,
        }
    }

    /// The polygons of the armed `ignore` zones (the static-change map leaves them out).
    pub fn ignored_polygons(&self) -> Vec<Vec<Point>> {
        self.zones
            .iter()
            .filter(|z| z.enabled && z.config.kind == ZoneKind::Ignore)
            .map(|z| z.polygon.clone())
            .collect()
    }

    /// The polygons of the armed zones that raise events (all but `ignore`): where the
    /// detector looks closer and what must change before it runs again.
    pub fn watched_polygons(&self) -> Vec<&[Point]> {
        self.zones
            .iter()
            .filter(|z| z.enabled && z.config.kind != ZoneKind::Ignore)
            .map(|z| z.polygon.as_slice())
            .collect()
    }

    /// Whether any zone's rule looks at the static-change map.
    pub fn needs_change_map(&self) -> bool {
        self.zones.iter().any(|z| z.config.kind.needs_change_map())
    }

    /// Evaluates the rules for the tracks and static objects of one frame at `time`.
    pub fn evaluate(
        &mut self,
        time: DateTime<Utc>,
        tracks: &[Track],
        statics: &[StaticObject],
        frame_w: u32,
        frame_h: u32,
    ) -> SceneReport {
        let local = time.with_timezone(&self.tz).naive_local();
        let mut report = SceneReport::default();
        for zone in &self.zones {
            let id = &zone.config.id;
            if zone.enabled && zone.schedule.is_active(local) {
                self.armed_since.entry(id.clone()).or_insert(time);
                report.armed.push(id.clone());
            } else {
                self.armed_since.remove(id);
            }
        }
        let things = self.resting_things(tracks, statics, frame_w, frame_h);
        for zone in &self.zones {
            if let Some(armed) = self.armed_since.get(&zone.config.id) {
                report
                    .violations
                    .extend(rules::violations(zone, *armed, &things, &self.rules));
            }
        }
        report
    }

    /// Everything at rest this frame, outside `ignore` zones: stationary tracks, and static
    /// changes that no tracked road user explains.
    fn resting_things(
        &mut self,
        tracks: &[Track],
        statics: &[StaticObject],
        frame_w: u32,
        frame_h: u32,
    ) -> Vec<Thing> {
        let (sx, sy) = (1.0 / frame_w as f32, 1.0 / frame_h as f32);
        let ignored = |b: &BBox| {
            self.zones
                .iter()
                .any(|z| z.config.kind == ZoneKind::Ignore && z.enabled && z.contains(b))
        };
        let mut things: Vec<Thing> = tracks
            .iter()
            .filter_map(|t| {
                let since = t.stationary_since?;
                let bbox = t.bbox.scale(sx, sy);
                (!ignored(&bbox)).then(|| Thing {
                    id: t.id,
                    label: t.label.clone(),
                    class: Some(t.class),
                    score: t.score,
                    area: bbox.area(),
                    bbox,
                    since,
                    seen_now: t.seen_now,
                })
            })
            .collect();
        // Road users are not piles: a static change where a vehicle or person is tracked is them
        // (someone standing still). A change once seen with no road user on it is a thing of its
        // own, and stays one while people walk past in front of it.
        let users: Vec<BBox> = tracks
            .iter()
            .filter(|t| t.class.is_road_user())
            .map(|t| t.bbox.scale(sx, sy))
            .collect();
        let mut standalone = std::mem::take(&mut self.standalone);
        standalone.retain(|id| statics.iter().any(|o| o.id == *id));
        things.extend(statics.iter().filter_map(|o| {
            let explained = users
                .iter()
                .any(|u| u.iou(&o.bbox) > 0.3 || o.bbox.share_inside(u) > 0.5);
            if !explained {
                standalone.insert(o.id);
            }
            let own = !explained || standalone.contains(&o.id);
            (own && !ignored(&o.bbox)).then(|| Thing {
                id: STATIC_ID_BASE + o.id,
                label: "static_object".into(),
                class: None,
                score: o.confidence,
                area: o.area,
                bbox: o.bbox,
                since: o.since,
                seen_now: true,
            })
        }));
        self.standalone = standalone;
        things
    }
}

/// Ids of static objects in violations and messages start here, apart from track ids.
pub const STATIC_ID_BASE: u64 = 1 << 32;
