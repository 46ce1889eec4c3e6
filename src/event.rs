//! The event message sent to the command center (`streetwatch.event/1`, see docs/schema/event.schema.json).

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::{CameraConfig, ZoneConfig};
pub use crate::domain::Category;
use crate::incidents::{EndReason, Incident, Phase};

/// Schema id carried in every message.
pub const SCHEMA: &str = "streetwatch.event/1";

/// One event message (one MQTT message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// new / update / end.
    #[serde(rename = "type")]
    pub phase: Phase,
    /// Stable across the event's messages.
    pub event_id: String,
    /// 0 for new, +1 for each later message.
    pub seq: u32,
    /// Event kind, e.g. `illegal_parking`.
    pub kind: String,
    /// Case category (数字城管 code and name).
    pub category: Category,
    /// Camera.
    pub camera: CameraRef,
    /// Zone and who is responsible for it.
    pub zone: ZoneRef,
    /// The object.
    pub object: ObjectRef,
    /// When the object came to rest in the armed zone.
    pub start_time: String,
    /// Last time it was seen there.
    pub last_seen: String,
    /// End time (only in `end`).
    pub end_time: Option<String>,
    /// Why it ended (only in `end`).
    pub end_reason: Option<EndReason>,
    /// Seconds from start to last seen.
    pub dwell_seconds: f64,
    /// How often this place relapses.
    pub recurrence: Recurrence,
    /// Evidence files (frame with overlay, crop); empty when this message brings none.
    pub evidence: Vec<EvidenceRef>,
    /// Why this event has no evidence photo (disk full, folder not writable); null when it has.
    #[serde(default)]
    pub evidence_missing: Option<String>,
}

/// Camera identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraRef {
    /// Camera id.
    pub id: String,
    /// Camera name.
    pub name: String,
}

/// Zone identity and responsibility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneRef {
    /// Zone id.
    pub id: String,
    /// Zone name.
    pub name: String,
    /// Grid (网格).
    pub grid: String,
    /// Responsible unit.
    pub responsible_unit: String,
    /// The road section (路段), when set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub road_section: String,
    /// The shop responsible for a frontage (门前三包), when set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shop: String,
    /// Who to call about the place, when set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub contact: String,
}

/// The object that caused the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Detector label.
    pub label: String,
    /// Latest score.
    pub score: f32,
    /// Tracker id.
    pub track_id: u64,
    /// Normalized `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
}

/// Relapse figures for the place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Recurrence {
    /// Earlier events of this kind in this zone in the 7 days before this one started.
    #[serde(default)]
    pub count_7d: u32,
    /// Earlier events of this kind in this zone in the 30 days before this one started.
    pub count_30d: u32,
    /// End of the latest earlier event there.
    pub previous_end: Option<String>,
    /// The place filled again: an earlier event at the same place (same zone, overlapping box)
    /// ended within the relapse window before this one started (反弹).
    #[serde(default)]
    pub relapse: bool,
    /// In a cluster: the camera's history could not be read from the city ledger when this
    /// node took the camera, so the counts may be short. Absent when the history is whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history_partial: bool,
}

/// One evidence file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRef {
    /// `rest_start` (the frame when the object came to rest, in `new` messages), `frame` (the
    /// frame of this message: in `new`, when the dwell was reached) or `crop` (the object).
    pub kind: String,
    /// File path.
    pub path: String,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// When the picture was taken (stream time, RFC 3339 with offset); absent in messages
    /// recorded before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Formats a time in the camera's zone, RFC 3339 with offset and milliseconds.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Reads a message's RFC 3339 time back, in UTC.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Where an incident is: its camera, zone and the camera's time zone.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The camera.
    pub camera: &'a CameraConfig,
    /// The zone.
    pub zone: &'a ZoneConfig,
    /// The camera's time zone, for the message's times.
    pub tz: Tz,
}

/// Builds the message for an incident change; `category` is the deployment's code and name for
/// the incident's kind.
pub fn message(
    phase: Phase,
    inc: &Incident,
    place: Place<'_>,
    category: Category,
    recurrence: Recurrence,
    evidence: Vec<EvidenceRef>,
) -> EventMessage {
    let Place { camera, zone, tz } = place;
    let b = inc.bbox;
    let round = |v: f32| (v * 10_000.0).round() / 10_000.0;
    EventMessage {
        schema: SCHEMA.into(),
        phase,
        event_id: inc.event_id.clone(),
        seq: inc.seq,
        kind: inc.kind.as_str().into(),
        category,
        camera: CameraRef {
            id: camera.id.clone(),
            name: camera.name.clone(),
        },
        zone: ZoneRef {
            id: zone.id.clone(),
            name: zone.name.clone(),
            grid: zone.grid.clone(),
            responsible_unit: zone.responsible_unit.clone(),
            road_section: zone.road_section.clone(),
            shop: zone.shop.clone(),
            contact: zone.contact.clone(),
        },
        object: ObjectRef {
            label: inc.label.clone(),
            score: round(inc.score),
            track_id: inc.track_id,
            bbox: [round(b.x1), round(b.y1), round(b.x2), round(b.y2)],
        },
        start_time: local_time(inc.start, tz),
        last_seen: local_time(inc.last_seen, tz),
        end_time: inc.end.map(|(t, _)| local_time(t, tz)),
        end_reason: inc.end.map(|(_, r)| r),
        dwell_seconds: ((inc.last_seen - inc.start).num_milliseconds() as f64 / 1000.0).max(0.0),
        recurrence,
        evidence,
        evidence_missing: None,
    }
}
