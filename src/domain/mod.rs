//! Domain types every stage and the config share: what a zone watches for, the kinds of
//! events and their case categories, vehicle classes, how a stream is decoded, and schedules.
//! A leaf: it imports no other module of the crate, so `config` and the stages can all use it
//! without importing each other.

pub mod address;
pub mod custody;
pub mod schedule;

use serde::{Deserialize, Serialize};

/// What a zone watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    /// No parking (禁停区): vehicles at rest past the dwell raise `illegal_parking` / `nonmotor_parking`.
    NoParking,
    /// No vending (禁止占道经营).
    NoVending,
    /// A shop's frontage (门前三包).
    Shopfront,
    /// A place watched for garbage piles.
    GarbageWatch,
    /// Masked out: nothing whose ground point falls here raises an event.
    Ignore,
}

impl ZoneKind {
    /// Whether this version acts on the kind (the others are reserved and refused by `check`).
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            ZoneKind::NoParking
                | ZoneKind::GarbageWatch
                | ZoneKind::Shopfront
                | ZoneKind::NoVending
                | ZoneKind::Ignore
        )
    }

    /// Whether the rule looks at the static-change map.
    pub fn needs_change_map(self) -> bool {
        matches!(
            self,
            ZoneKind::GarbageWatch | ZoneKind::NoVending | ZoneKind::Shopfront
        )
    }
}

/// The kind of an event, as named in messages and topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// 机动车乱停放.
    IllegalParking,
    /// 非机动车乱停放.
    NonmotorParking,
    /// 无照经营游商 / 占道经营 (no-vending zones).
    StreetVending,
    /// 店外经营 (shopfront zones).
    ShopfrontSpillover,
    /// 暴露垃圾 (garbage-watch zones).
    ExposedGarbage,
    /// 积存垃圾渣土.
    DebrisPile,
    /// 乱堆物料堆.
    MaterialPile,
}

impl EventKind {
    /// The snake_case name used in topics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::IllegalParking => "illegal_parking",
            EventKind::NonmotorParking => "nonmotor_parking",
            EventKind::StreetVending => "street_vending",
            EventKind::ShopfrontSpillover => "shopfront_spillover",
            EventKind::ExposedGarbage => "exposed_garbage",
            EventKind::DebrisPile => "debris_pile",
            EventKind::MaterialPile => "material_pile",
        }
    }

    /// The kind of a name used in topics and messages (`illegal_parking`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }

    /// Default GB/T 30428.2 category code and Chinese name (数字城管 event code).
    pub fn default_category(self) -> (&'static str, &'static str) {
        match self {
            EventKind::IllegalParking => ("05-05", "机动车乱停放"),
            EventKind::NonmotorParking => ("05-06", "非机动车乱停放"),
            EventKind::StreetVending => ("05-01", "无照经营游商"),
            EventKind::ShopfrontSpillover => ("05-04", "店外经营"),
            EventKind::ExposedGarbage => ("01-02", "暴露垃圾"),
            EventKind::DebrisPile => ("01-03", "积存垃圾渣土"),
            EventKind::MaterialPile => ("05-07", "乱堆物料堆"),
        }
    }
}

/// Category code and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// e.g. `05-05`.
    pub code: String,
    /// e.g. `机动车乱停放`.
    pub name: String,
}

/// Which vehicles a parking zone forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VehicleClass {
    /// Cars, trucks, buses (机动车).
    Motor,
    /// Bicycles, e-bikes, motorbikes (非机动车).
    Nonmotor,
}

/// How much of the stream is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Decode every frame (needed when detecting more often than the keyframe interval).
    #[default]
    All,
    /// Decode keyframes only: a fraction of the CPU, one frame per GOP (often 1-4 s).
    Keyframes,
}
