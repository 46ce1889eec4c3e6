//! Incidents: turns the scene's per-frame violations into events with a lifecycle
//! (`new` when the dwell is reached, `update` periodically or on better evidence, `end`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::IncidentConfig;
use crate::geometry::BBox;
use crate::scene::{EventKind, SceneReport, Violation};

/// Stage of an event message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The dwell was reached.
    New,
    /// Still there (periodic, or better evidence).
    Update,
    /// Over.
    End,
}

impl Phase {
    /// The name in messages and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::New => "new",
            Phase::Update => "update",
            Phase::End => "end",
        }
    }
}

/// Why an incident ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The object has not been seen there for `end_after_seconds`.
    ObjectLeft,
    /// The zone's schedule ended.
    ScheduleEnded,
    /// The zone was switched off.
    ZoneDisabled,
    /// The stream ended (end of a replayed clip, or shutdown).
    StreamEnded,
    /// The process stopped while the event was open (crash, power cut, kill); the event is
    /// ended at its last sighting when the camera starts again.
    Interrupted,
    /// An operator marked it a false alarm of the "wrong object" kind: the camera leaves that
    /// thing alone while it stays.
    FalseAlarm,
}

impl EndReason {
    /// The name in messages and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ObjectLeft => "object_left",
            EndReason::ScheduleEnded => "schedule_ended",
            EndReason::ZoneDisabled => "zone_disabled",
            EndReason::StreamEnded => "stream_ended",
            EndReason::Interrupted => "interrupted",
            EndReason::FalseAlarm => "false_alarm",
        }
    }
}

/// An open or just-ended incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Stable id across all messages of the event.
    pub event_id: String,
    /// Event kind.
    pub kind: EventKind,
    /// Zone id.
    pub zone_id: String,
    /// Track id of the object (may change if the tracker lost and re-found it).
    pub track_id: u64,
    /// Label.
    pub label: String,
    /// Latest score.
    pub score: f32,
    /// Latest normalized box.
    pub bbox: BBox,
    /// Box when the event began: where the object rests (a pile seen in pieces, a car half
    /// hidden, keep their place).
    pub place: BBox,
    /// When the object came to rest in the armed zone.
    pub start: DateTime<Utc>,
    /// Last time the object was seen there.
    pub last_seen: DateTime<Utc>,
    /// End time and reason, once ended.
    pub end: Option<(DateTime<Utc>, EndReason)>,
    /// Sequence number of the latest message (0 = new).
    pub seq: u32,
    /// Frame time of the latest message.
    last_sent: DateTime<Utc>,
    /// Score of the frame the current evidence was taken from.
    evidence_score: f32,
}

impl Incident {
    /// An incident about the object of `v`, resting since `start`, last message `seq`, seen
    /// `now`: a new one (seq 0), or one of an earlier run found still in place after a restart
    /// (its own id, start and seq).
    pub fn at_rest(
        event_id: String,
        seq: u32,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
        v: &Violation,
    ) -> Self {
        Self {
            event_id,
            kind: v.kind,
            zone_id: v.zone_id.clone(),
            track_id: v.track_id,
            label: v.label.clone(),
            score: v.score,
            bbox: v.bbox,
            place: v.bbox,
            start,
            last_seen: now,
            end: None,
            seq,
            last_sent: now,
            evidence_score: v.score,
        }
    }
}

/// One message to send about an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentChange {
    /// new / update / end.
    pub phase: Phase,
    /// The incident after the change.
    pub incident: Incident,
    /// Whether this frame should become the evidence.
    pub take_evidence: bool,
}

/// The open incidents of one camera.
#[derive(Debug)]
pub struct IncidentBook {
    camera_id: String,
    cfg: IncidentConfig,
    open: Vec<Incident>,
    /// Per (zone, track) whose event ended while the tracker kept the track (a parked car that
    /// left briefly and came back to the same spot): when that event ended, and when the object
    /// was first seen again. A later stay starts then, not at the track's old rest start, so it
    /// is a new event with its own id and its own dwell.
    ended: HashMap<(String, u64), Reappearance>,
    /// Things an operator said are not what their event claimed (suppression id, the thing as
    /// it was last seen): while one stays, it raises nothing.
    silenced: Vec<(i64, Incident)>,
}

/// See [`IncidentBook::ended`].
#[derive(Debug, Clone, Copy)]
struct Reappearance {
    ended: DateTime<Utc>,
    seen_again: Option<DateTime<Utc>>,
}

impl IncidentBook {
    /// An empty book for a camera.
    pub fn new(camera_id: &str, cfg: IncidentConfig) -> Self {
        Self {
            camera_id: camera_id.to_string(),
            cfg,
            open: Vec::new(),
            ended: HashMap::new(),
            silenced: Vec::new(),
        }
    }

    /// New lifecycle settings from a reloaded config; open incidents are kept.
    pub fn set_config(&mut self, cfg: IncidentConfig) {
        self.cfg = cfg;
    }

    /// Open incidents.
    pub fn open(&self) -> &[Incident] {
        &self.open
    }

    /// Takes over an incident resumed after a restart and returns its `update` (with evidence).
    pub fn adopt(&mut self, mut inc: Incident) -> IncidentChange {
        inc.seq += 1;
        self.open.push(inc.clone());
        IncidentChange {
            phase: Phase::Update,
            incident: inc,
            take_evidence: true,
        }
    }

    /// Silences the thing of event `event_id` under suppression `id`: its open incident ends
    /// (`false_alarm`, returned), and while the thing stays it raises nothing. When the event
    /// is no longer open (a restart, or it had ended), the thing at `place` in `zone_id`, at
    /// rest there by `seen`, is silenced instead.
    pub fn silence(
        &mut self,
        id: i64,
        event_id: &str,
        (zone_id, kind, place): (&str, EventKind, BBox),
        seen: DateTime<Utc>,
    ) -> Option<IncidentChange> {
        if self.silenced.iter().any(|(s, _)| *s == id) {
            return None;
        }
        match self.open.iter().position(|i| i.event_id == event_id) {
            Some(at) => {
                let mut inc = self.open.remove(at);
                // From now on, only what was at rest there by now can be it.
                self.silenced.push((
                    id,
                    Incident {
                        start: seen,
                        ..inc.clone()
                    },
                ));
                Some(close(&mut inc, (seen, EndReason::FalseAlarm)))
            }
            None => {
                let thing = Incident {
                    event_id: event_id.to_string(),
                    kind,
                    zone_id: zone_id.to_string(),
                    // No track: it is found by its place.
                    track_id: u64::MAX,
                    label: String::new(),
                    score: 0.0,
                    bbox: place,
                    place,
                    start: seen,
                    last_seen: seen,
                    end: None,
                    seq: 0,
                    last_sent: seen,
                    evidence_score: 0.0,
                };
                self.silenced.push((id, thing));
                None
            }
        }
    }

    /// Lifts suppression `id`: the thing may raise events again.
    pub fn unsilence(&mut self, id: i64) -> bool {
        let before = self.silenced.len();
        self.silenced.retain(|(s, _)| *s != id);
        self.silenced.len() != before
    }

    /// Suppressions in force (their ids).
    pub fn silenced(&self) -> Vec<i64> {
        self.silenced.iter().map(|(id, _)| *id).collect()
    }

    /// Whether `v` is a silenced thing (and notes the sighting). The same track first; by its
    /// place only when its own track was not seen on this frame, so another thing that comes to
    /// rest beside or in front of it is not swallowed.
    fn is_silenced(&mut self, v: &Violation, now: DateTime<Utc>, own_track_seen: &[bool]) -> bool {
        let found = self
            .silenced
            .iter()
            .position(|(_, s)| s.zone_id == v.zone_id && s.track_id == v.track_id)
            .or_else(|| {
                // By its place: at rest there since it was silenced (the tracker lost and
                // re-found it); something that came to rest there later is something else.
                self.silenced.iter().enumerate().position(|(i, (_, s))| {
                    !own_track_seen[i]
                        && s.zone_id == v.zone_id
                        && s.kind == v.kind
                        && v.since <= s.start
                        && same_spot(s, v)
                })
            });
        let Some(i) = found else { return false };
        if v.seen_now {
            let s = &mut self.silenced[i].1;
            s.last_seen = now;
            s.track_id = v.track_id;
            s.bbox = v.bbox;
        }
        true
    }

    /// Suppressions whose thing has not been seen for `end_after_seconds`: it left. Returns
    /// their ids; they are dropped.
    pub fn silenced_gone(&mut self, now: DateTime<Utc>) -> Vec<i64> {
        let end_after = self.cfg.end_after_seconds;
        let (gone, stay): (Vec<_>, Vec<_>) = std::mem::take(&mut self.silenced)
            .into_iter()
            .partition(|(_, s)| secs(now - s.last_seen) >= end_after);
        self.silenced = stay;
        gone.into_iter().map(|(id, _)| id).collect()
    }

    /// Advances the book with the scene report of the frame at `now`.
    ///
    /// `dwell(zone_id)` is the zone's dwell in seconds.
    pub fn step(
        &mut self,
        now: DateTime<Utc>,
        report: &SceneReport,
        dwell: &dyn Fn(&str) -> f64,
    ) -> Vec<IncidentChange> {
        let mut changes = Vec::new();
        let own_track_seen: Vec<bool> = self
            .silenced
            .iter()
            .map(|(_, s)| {
                report
                    .violations
                    .iter()
                    .any(|v| v.seen_now && v.zone_id == s.zone_id && v.track_id == s.track_id)
            })
            .collect();
        for v in &report.violations {
            if self.is_silenced(v, now, &own_track_seen) {
                continue;
            }
            if let Some(inc) = self.open.iter_mut().find(|i| belongs(i, v)) {
                if !v.seen_now {
                    continue;
                }
                inc.last_seen = now;
                inc.track_id = v.track_id;
                inc.bbox = v.bbox;
                inc.score = v.score;
                inc.label = v.label.clone();
                let better = v.score >= inc.evidence_score + self.cfg.better_evidence_margin;
                let due = secs(now - inc.last_sent) >= self.cfg.update_every_seconds;
                if better || due {
                    inc.seq += 1;
                    inc.last_sent = now;
                    if better {
                        inc.evidence_score = v.score;
                    }
                    changes.push(IncidentChange {
                        phase: Phase::Update,
                        incident: inc.clone(),
                        take_evidence: better,
                    });
                }
            } else if v.seen_now {
                let since = self.stay_start(v, now);
                if secs(now - since) < dwell(&v.zone_id) {
                    continue;
                }
                let id = event_id(&self.camera_id, &v.zone_id, v.track_id, since);
                let inc = Incident::at_rest(id, 0, since, now, v);
                changes.push(IncidentChange {
                    phase: Phase::New,
                    incident: inc.clone(),
                    take_evidence: true,
                });
                self.open.push(inc);
            }
        }
        let end_after = self.cfg.end_after_seconds;
        let mut still_open = Vec::with_capacity(self.open.len());
        for mut inc in self.open.drain(..) {
            let end = if !report.armed.contains(&inc.zone_id) {
                Some((now, EndReason::ScheduleEnded))
            } else if secs(now - inc.last_seen) >= end_after {
                Some((inc.last_seen, EndReason::ObjectLeft))
            } else {
                None
            };
            match end {
                Some(end) => {
                    // Tracks are gone long before a day; their entries with them.
                    self.ended
                        .retain(|_, r| now - r.ended < chrono::Duration::days(1));
                    self.ended.insert(
                        (inc.zone_id.clone(), inc.track_id),
                        Reappearance {
                            ended: now,
                            seen_again: None,
                        },
                    );
                    changes.push(close(&mut inc, end))
                }
                None => still_open.push(inc),
            }
        }
        self.open = still_open;
        changes
    }

    /// When the stay of `v` began: the track's rest start, unless an event of the same track and
    /// zone ended since, in which case the first time it was seen again after that.
    fn stay_start(&mut self, v: &Violation, now: DateTime<Utc>) -> DateTime<Utc> {
        let key = (v.zone_id.clone(), v.track_id);
        match self.ended.get_mut(&key) {
            Some(r) if v.since <= r.ended => *r.seen_again.get_or_insert(now),
            Some(_) => {
                // The track came to rest anew: its own rest start is right again.
                self.ended.remove(&key);
                v.since
            }
            None => v.since,
        }
    }

    /// Ends every open incident (end of stream or shutdown) at `now`.
    pub fn finish(&mut self, now: DateTime<Utc>, reason: EndReason) -> Vec<IncidentChange> {
        self.open
            .drain(..)
            .map(|mut inc| {
                let at = if reason == EndReason::StreamEnded {
                    inc.last_seen
                } else {
                    now
                };
                close(&mut inc, (at, reason))
            })
            .collect()
    }

    /// Ends the open incidents of one zone (it was switched off).
    pub fn close_zone(&mut self, zone_id: &str, now: DateTime<Utc>) -> Vec<IncidentChange> {
        let (closing, keep): (Vec<_>, Vec<_>) =
            self.open.drain(..).partition(|i| i.zone_id == zone_id);
        self.open = keep;
        closing
            .into_iter()
            .map(|mut inc| close(&mut inc, (now, EndReason::ZoneDisabled)))
            .collect()
    }
}

fn close(inc: &mut Incident, end: (DateTime<Utc>, EndReason)) -> IncidentChange {
    inc.end = Some(end);
    inc.seq += 1;
    IncidentChange {
        phase: Phase::End,
        incident: inc.clone(),
        take_evidence: false,
    }
}

/// Whether a violation is the object of an open incident: the same track at rest since the
/// same time; or a box on the same spot (or a part of it, or around it: the object half hidden,
/// or seen whole after a partial box) that was
/// already at rest while the incident's object was last seen: the tracker lost and re-found
/// it, or saw it twice. Something that came to rest there after the incident's object was last
/// seen is something else, with its own event (a car that parks where another just left).
fn belongs(inc: &Incident, v: &Violation) -> bool {
    let same_track = inc.track_id == v.track_id && v.since <= inc.start;
    inc.zone_id == v.zone_id
        && inc.kind == v.kind
        && (same_track || (same_spot(inc, v) && v.since <= inc.last_seen))
}

/// Whether a violation's box is on an incident's spot: where it is now or where it began,
/// the same box, or one mostly inside the other (half hidden, or seen whole after a part).
fn same_spot(inc: &Incident, v: &Violation) -> bool {
    let at = |b: &BBox| {
        b.iou(&v.bbox) >= 0.5 || v.bbox.share_inside(b) >= 0.8 || b.share_inside(&v.bbox) >= 0.8
    };
    at(&inc.bbox) || at(&inc.place)
}

/// A ULID made from the start time and a SHA-256 of what the incident is, so a replayed clip
/// gives the same ids every time, with any build (std's hasher may change between releases).
fn event_id(camera: &str, zone: &str, track_id: u64, since: DateTime<Utc>) -> String {
    use sha2::{Digest, Sha256};
    let millis = since.timestamp_millis();
    let mut h = Sha256::new();
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    for part in [camera.as_bytes(), zone.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(track_id.to_le_bytes());
    h.update(millis.to_le_bytes());
    let digest = h.finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    // A ULID's time is 48 bits of milliseconds (until the year 10889).
    let time = millis.clamp(0, (1 << 48) - 1) as u64;
    ulid::Ulid::from_parts(time, u128::from_be_bytes(random)).to_string()
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis((s * 1000.0) as i64).unwrap()
    }

    #[test]
    fn event_ids_are_the_same_with_any_build() {
        // Pinned: a replay must give these ids with every Rust release and on every machine
        // (ids in the ledger, in PostgreSQL and at the command center are compared).
        let since = DateTime::parse_from_rfc3339("2026-11-23T09:00:06+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let id = event_id("cam-jiefang-01", "east-no-parking", 7, since);
        assert_eq!(id, PINNED_ID);
        assert_eq!(
            ulid::Ulid::from_string(&id).unwrap().timestamp_ms(),
            since.timestamp_millis() as u64
        );
        // Every field counts, and the parts cannot run into each other.
        let others = [
            event_id("cam-jiefang-02", "east-no-parking", 7, since),
            event_id("cam-jiefang-01", "east-no-parkin", 7, since),
            event_id("cam-jiefang-0", "1east-no-parking", 7, since),
            event_id("cam-jiefang-01", "east-no-parking", 8, since),
            event_id(
                "cam-jiefang-01",
                "east-no-parking",
                7,
                since + chrono::TimeDelta::milliseconds(1),
            ),
        ];
        for other in others {
            assert_ne!(other, id);
        }
        // Times no clock should give still make an id.
        assert_eq!(event_id("c", "z", 1, DateTime::<Utc>::MIN_UTC).len(), 26);
        assert_eq!(event_id("c", "z", 1, DateTime::<Utc>::MAX_UTC).len(), 26);
    }

    /// ULID of (time, first 80 bits of SHA-256(len camera, camera, len zone, zone, track,
    /// millis), little-endian integers); checked once against Python's hashlib.
    const PINNED_ID: &str = "01M82YNNFGJ3KZD45WTXCJQ536";

    fn report(violations: Vec<Violation>) -> SceneReport {
        SceneReport {
            violations,
            armed: vec!["z".into()],
        }
    }

    fn v(since: f64, score: f32) -> Violation {
        Violation {
            zone_id: "z".into(),
            kind: EventKind::IllegalParking,
            track_id: 7,
            label: "car".into(),
            score,
            bbox: BBox::new(0.2, 0.5, 0.4, 0.8),
            since: t(since),
            seen_now: true,
        }
    }

    #[test]
    fn a_silenced_thing_raises_nothing_while_it_stays_and_one_beside_it_still_does() {
        let cfg = IncidentConfig {
            update_every_seconds: 100.0,
            end_after_seconds: 5.0,
            ..Default::default()
        };
        let mut book = IncidentBook::new("cam", cfg);
        let dwell = |_: &str| 10.0;
        let mut out = Vec::new();
        // The bench (track 7) is taken for a car: its event is rejected at 12 s.
        for s in 0..=12 {
            out.extend(book.step(t(s as f64), &report(vec![v(0.0, 0.6)]), &dwell));
        }
        let id = out[0].incident.event_id.clone();
        let end = book
            .silence(
                1,
                &id,
                (
                    "z",
                    EventKind::IllegalParking,
                    BBox::new(0.2, 0.5, 0.4, 0.8),
                ),
                t(12.0),
            )
            .expect("its open event ends");
        assert_eq!(end.incident.end, Some((t(12.0), EndReason::FalseAlarm)));
        // A real car parks in front of it at 20 s (another track, overlapping the place).
        let car = Violation {
            track_id: 8,
            since: t(20.0),
            bbox: BBox::new(0.22, 0.52, 0.42, 0.82),
            ..v(20.0, 0.7)
        };
        let mut later = Vec::new();
        for s in 13..=40 {
            let mut seen = vec![v(0.0, 0.6)];
            if s >= 20 {
                seen.push(car.clone());
            }
            later.extend(book.step(t(s as f64), &report(seen), &dwell));
        }
        let news: Vec<(u64, DateTime<Utc>)> = later
            .iter()
            .filter(|c| c.phase == Phase::New)
            .map(|c| (c.incident.track_id, c.incident.start))
            .collect();
        assert_eq!(
            news,
            vec![(8, t(20.0))],
            "the bench stays silent; the car is an event"
        );
        // The bench is last seen at 40 s: the suppression ends 5 s later.
        for s in 41..45 {
            book.step(t(s as f64), &report(vec![car.clone()]), &dwell);
            assert!(book.silenced_gone(t(s as f64)).is_empty());
        }
        assert_eq!(book.silenced_gone(t(45.0)), vec![1]);
        assert!(book.silenced().is_empty());
    }

    #[test]
    fn lifecycle_new_update_end() {
        let cfg = IncidentConfig {
            update_every_seconds: 10.0,
            end_after_seconds: 5.0,
            better_evidence_margin: 0.1,
            ..Default::default()
        };
        let mut book = IncidentBook::new("cam", cfg);
        let dwell = |_: &str| 15.0;
        let mut phases = Vec::new();
        for s in 0..40 {
            let now = t(s as f64);
            let r = if s < 30 {
                report(vec![v(0.0, 0.6)])
            } else {
                report(vec![])
            };
            for c in book.step(now, &r, &dwell) {
                phases.push((s, c.phase, c.incident.seq));
            }
        }
        assert_eq!(
            phases,
            vec![
                (15, Phase::New, 0),
                (25, Phase::Update, 1),
                (34, Phase::End, 2)
            ]
        );
    }

    #[test]
    fn a_car_that_leaves_and_comes_back_to_the_same_spot_is_a_new_event() {
        let cfg = IncidentConfig {
            update_every_seconds: 100.0,
            end_after_seconds: 5.0,
            ..Default::default()
        };
        let mut book = IncidentBook::new("cam", cfg);
        let mut messages = Vec::new();
        // The tracker keeps the parked car's track (and its rest start, 0 s) through its
        // absence from 30 s to 40 s.
        for s in 0..80 {
            let r = if !(30..40).contains(&s) {
                report(vec![v(0.0, 0.6)])
            } else {
                report(vec![])
            };
            for c in book.step(t(s as f64), &r, &|_| 15.0) {
                messages.push((
                    s,
                    c.phase,
                    c.incident.event_id,
                    c.incident.seq,
                    c.incident.start,
                ));
            }
        }
        let phases: Vec<(i32, Phase, u32)> = messages.iter().map(|m| (m.0, m.1, m.3)).collect();
        assert_eq!(
            phases,
            vec![
                (15, Phase::New, 0),
                (34, Phase::End, 1),
                (55, Phase::New, 0)
            ],
            "the second stay needs its own dwell, from 40 s"
        );
        assert_ne!(messages[0].2, messages[2].2, "a new event id");
        assert_eq!(
            messages[2].4,
            t(40.0),
            "the stay starts when the car was seen again"
        );
    }

    #[test]
    fn short_stop_raises_nothing() {
        let mut book = IncidentBook::new("cam", IncidentConfig::default());
        for s in 0..30 {
            let r = if s < 5 {
                report(vec![v(0.0, 0.9)])
            } else {
                report(vec![])
            };
            assert!(book.step(t(s as f64), &r, &|_| 15.0).is_empty());
        }
    }

    #[test]
    fn schedule_end_closes() {
        let mut book = IncidentBook::new("cam", IncidentConfig::default());
        book.step(t(20.0), &report(vec![v(0.0, 0.9)]), &|_| 15.0);
        let c = book.step(
            t(21.0),
            &SceneReport {
                violations: vec![],
                armed: vec![],
            },
            &|_| 15.0,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].incident.end, Some((t(21.0), EndReason::ScheduleEnded)));
    }
}
