//! The rules: what a zone of each kind makes of the things at rest in it.
//!
//! - `no_parking`: a motor (or non-motor, if the zone says so) vehicle at rest.
//! - `garbage_watch`: a static change larger than `min_area` that no road user explains, or a
//!   detection of a garbage class, at rest: the zone's `pile_kind`.
//! - `shopfront`: a static change larger than `min_area` in the frontage (门前三包).
//! - `no_vending`: a vendor/stall detection, or stall hints (umbrella, table, chair, cart: a
//!   configurable list) and/or a static change with a person staying by it. A person alone, a
//!   queue, parked bicycles: nothing.
//!
//! Every thing's dwell starts when it came to rest, or when the zone was armed if later; for a
//! vending group, when its last member settled.

use chrono::{DateTime, Utc};

use super::{EventKind, Violation, Zone, ZoneKind};
use crate::config::{RuleConfig, VehicleClass};
use crate::detector::ObjectClass;
use crate::geometry::BBox;

/// Something at rest in the frame: a stationary track, or a static change (`class` None).
#[derive(Debug, Clone, PartialEq)]
pub struct Thing {
    /// Track id, or a static object's id from `STATIC_ID_BASE`.
    pub id: u64,
    /// Detector label, or `static_object`.
    pub label: String,
    /// Road-user class of a track; None for a static change.
    pub class: Option<ObjectClass>,
    /// Detection score or change confidence.
    pub score: f32,
    /// Normalized box.
    pub bbox: BBox,
    /// Area as a fraction of the frame.
    pub area: f32,
    /// At rest since.
    pub since: DateTime<Utc>,
    /// Seen on this frame.
    pub seen_now: bool,
}

impl Thing {
    fn violation(&self, zone: &Zone, kind: EventKind, since: DateTime<Utc>) -> Violation {
        Violation {
            zone_id: zone.config.id.clone(),
            kind,
            track_id: self.id,
            label: if self.is_static_change() {
                change_label(kind).into()
            } else {
                self.label.clone()
            },
            score: self.score,
            bbox: self.bbox,
            since,
            seen_now: self.seen_now,
        }
    }

    fn is_static_change(&self) -> bool {
        self.class.is_none()
    }
}

/// What a static change is called in a message of this kind.
fn change_label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ExposedGarbage | EventKind::DebrisPile | EventKind::MaterialPile => "pile",
        EventKind::StreetVending | EventKind::ShopfrontSpillover => "goods",
        EventKind::IllegalParking | EventKind::NonmotorParking => "static_object",
    }
}

/// The violations of one armed zone (armed since `armed`).
pub fn violations(
    zone: &Zone,
    armed: DateTime<Utc>,
    things: &[Thing],
    rules: &RuleConfig,
) -> Vec<Violation> {
    let inside = |t: &&Thing| zone.contains(&t.bbox);
    let big_enough = |t: &&Thing| t.area >= zone.config.min_area;
    match zone.config.kind {
        ZoneKind::NoParking => things
            .iter()
            .filter(inside)
            .filter_map(|t| {
                let kind = parking_kind(zone, t.class?)?;
                Some(t.violation(zone, kind, t.since.max(armed)))
            })
            .collect(),
        ZoneKind::GarbageWatch => things
            .iter()
            .filter(inside)
            .filter(|t| {
                (t.is_static_change() && big_enough(t)) || t.class == Some(ObjectClass::Garbage)
            })
            .map(|t| t.violation(zone, zone.config.pile_kind, t.since.max(armed)))
            .collect(),
        ZoneKind::Shopfront => things
            .iter()
            .filter(inside)
            .filter(|t| t.is_static_change() && big_enough(t))
            .map(|t| t.violation(zone, EventKind::ShopfrontSpillover, t.since.max(armed)))
            .collect(),
        ZoneKind::NoVending => vending(zone, armed, things, rules),
        ZoneKind::Ignore => Vec::new(),
    }
}

/// The event a resting object of this class raises in a no-parking zone, if any.
fn parking_kind(zone: &Zone, class: ObjectClass) -> Option<EventKind> {
    let forbids = |v: VehicleClass| zone.config.vehicles.contains(&v);
    match class {
        ObjectClass::MotorVehicle if forbids(VehicleClass::Motor) => {
            Some(EventKind::IllegalParking)
        }
        ObjectClass::NonmotorVehicle if forbids(VehicleClass::Nonmotor) => {
            Some(EventKind::NonmotorParking)
        }
        _ => None,
    }
}

/// Stalls: a stall detection alone, or a hint / static change with a person staying by it.
fn vending(
    zone: &Zone,
    armed: DateTime<Utc>,
    things: &[Thing],
    rules: &RuleConfig,
) -> Vec<Violation> {
    let people: Vec<&Thing> = things
        .iter()
        .filter(|t| t.class == Some(ObjectClass::Person))
        .collect();
    let mut out = Vec::new();
    for t in things.iter().filter(|t| zone.contains(&t.bbox)) {
        if t.class == Some(ObjectClass::Stall) {
            out.push(t.violation(zone, EventKind::StreetVending, t.since.max(armed)));
            continue;
        }
        let hint = t.class.is_some_and(|c| !c.is_road_user())
            && rules.stall_hints.iter().any(|h| h == &t.label);
        let goods = t.is_static_change() && t.area >= zone.config.min_area;
        if !(hint || goods) {
            continue;
        }
        // The vendor: a person at rest whose ground point is near the stall.
        let reach = t.bbox.width().max(t.bbox.height()) * rules.vendor_distance;
        let near = BBox::new(
            t.bbox.x1 - reach,
            t.bbox.y1 - reach,
            t.bbox.x2 + reach,
            t.bbox.y2 + reach,
        );
        let vendor = people
            .iter()
            .filter(|p| {
                let g = p.bbox.bottom_center();
                g.x >= near.x1 && g.x <= near.x2 && g.y >= near.y1 && g.y <= near.y2
            })
            .min_by_key(|p| p.since);
        if let Some(p) = vendor {
            let since = t.since.max(p.since).max(armed);
            out.push(t.violation(zone, EventKind::StreetVending, since));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ZoneConfig;
    use crate::scene::{DateList, STATIC_ID_BASE};

    fn zone(kind: &str) -> Zone {
        let cfg: ZoneConfig = toml_edit::de::from_str(&format!(
            "id = \"z\"\nkind = \"{kind}\"\npolygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]\n"
        ))
        .unwrap();
        Zone::new(&cfg, &DateList::default()).unwrap()
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn thing(id: u64, label: &str, class: Option<ObjectClass>, b: [f32; 4], since: i64) -> Thing {
        let bbox = BBox::new(b[0], b[1], b[2], b[3]);
        Thing {
            id,
            label: label.into(),
            class,
            score: 0.8,
            area: bbox.area(),
            bbox,
            since: at(since),
            seen_now: true,
        }
    }

    fn goods(since: i64) -> Thing {
        thing(
            STATIC_ID_BASE + 1,
            "static_object",
            None,
            [0.40, 0.70, 0.50, 0.80],
            since,
        )
    }

    fn person(x: f32, since: i64) -> Thing {
        thing(
            7,
            "person",
            Some(ObjectClass::Person),
            [x, 0.55, x + 0.05, 0.80],
            since,
        )
    }

    fn kinds(zone_kind: &str, things: &[Thing]) -> Vec<(u64, EventKind, DateTime<Utc>)> {
        violations(&zone(zone_kind), at(0), things, &RuleConfig::default())
            .into_iter()
            .map(|v| (v.track_id, v.kind, v.since))
            .collect()
    }

    #[test]
    fn vending_needs_goods_or_a_stall_hint_with_a_person_by_it() {
        let vend = |things: &[Thing]| kinds("no_vending", things);
        // A person standing alone, or a queue: nothing.
        assert!(vend(&[person(0.45, 10)]).is_empty());
        assert!(vend(&[person(0.2, 10), person(0.3, 10), person(0.4, 12)]).is_empty());
        // Goods alone: nothing; with a person beside them: vending, from when both were there.
        assert!(vend(&[goods(10)]).is_empty());
        assert_eq!(
            vend(&[goods(10), person(0.52, 25)]),
            vec![(STATIC_ID_BASE + 1, EventKind::StreetVending, at(25))]
        );
        // A person far away does not make it a stall.
        assert!(vend(&[goods(10), person(0.9, 25)]).is_empty());
        // A stall hint (a table) with a vendor; a stall detection alone.
        let table = thing(
            3,
            "diningtable",
            Some(ObjectClass::Other),
            [0.4, 0.7, 0.5, 0.8],
            5,
        );
        assert_eq!(vend(&[table.clone(), person(0.45, 8)]).len(), 1);
        assert_eq!(vend(std::slice::from_ref(&table)).len(), 0);
        let stall = thing(
            4,
            "stall",
            Some(ObjectClass::Stall),
            [0.4, 0.7, 0.5, 0.8],
            5,
        );
        assert_eq!(vend(&[stall]).len(), 1);
        // Parked bicycles with their owner nearby are not a stall.
        let bike = thing(
            5,
            "bicycle",
            Some(ObjectClass::NonmotorVehicle),
            [0.4, 0.7, 0.5, 0.8],
            5,
        );
        assert!(vend(&[bike, person(0.45, 8)]).is_empty());
    }

    #[test]
    fn piles_and_shopfront_goods_need_a_big_enough_static_change() {
        assert_eq!(
            kinds("garbage_watch", &[goods(10)]),
            vec![(STATIC_ID_BASE + 1, EventKind::ExposedGarbage, at(10))]
        );
        let litter = thing(
            STATIC_ID_BASE + 2,
            "static_object",
            None,
            [0.4, 0.7, 0.41, 0.71],
            10,
        );
        assert!(kinds("garbage_watch", &[litter]).is_empty());
        // A person at rest is not garbage.
        assert!(kinds("garbage_watch", &[person(0.4, 10)]).is_empty());
        assert_eq!(
            kinds("shopfront", &[goods(10)]),
            vec![(STATIC_ID_BASE + 1, EventKind::ShopfrontSpillover, at(10))]
        );
        // Outside the zone (upper half): nothing.
        let high = thing(
            STATIC_ID_BASE + 3,
            "static_object",
            None,
            [0.4, 0.1, 0.5, 0.3],
            10,
        );
        assert!(kinds("shopfront", &[high]).is_empty());
    }
}
