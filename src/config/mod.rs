//! Configuration: the TOML file an operator writes, parsed and checked before anything starts.
//!
//! Every error carries the file, line and column of the offending value (`FILE:LINE:COL: message`)
//! so that `streetwatch check` can point at it like a compiler does.

pub mod city;
mod locate;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::domain::{DecodeMode, VehicleClass};
use crate::domain::{EventKind, ZoneKind};

pub use locate::PathSeg;

use crate::detector::{Provider, RuntimeOptions};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node (one running daemon).
    #[serde(default)]
    pub node: NodeConfig,
    /// Connection to the command center's MQTT broker.
    pub mqtt: MqttConfig,
    /// Where the ledger and evidence live.
    pub storage: StorageConfig,
    /// Shared detector settings.
    #[serde(default)]
    pub detector: DetectorConfig,
    /// Tracker thresholds, all in seconds or fractions of a box, never in frames.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// Incident lifecycle settings.
    #[serde(default)]
    pub incidents: IncidentConfig,
    /// The cameras this node watches.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// Settings of the vending, pile and shopfront rules.
    #[serde(default)]
    pub rules: RuleConfig,
    /// The static-change map (model-free detection of new objects that stay).
    #[serde(default)]
    pub change: crate::change::ChangeConfig,
    /// Where evidence photos go and how long they are kept.
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// The durable queue of event messages waiting for the broker's acknowledgement.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// The operator console (HTTP): live view, zone editor, event browser, metrics. Off unless
    /// the table is present.
    pub http: Option<HttpConfig>,
    /// The review loop: the camera's re-check after a clearance, console sessions.
    #[serde(default)]
    pub review: ReviewConfig,
    /// The deployment's case codes and names per event kind, replacing the GB/T 30428.2
    /// defaults (cities' platforms number cases differently).
    #[serde(default)]
    pub categories: Categories,
    /// Cluster mode: cameras leased from etcd and shared among nodes. Off unless the table is
    /// present; without it the node runs every enabled camera of this file.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Whether every section but the cameras is the same (a reload then leaves the cameras
    /// whose own table did not change alone).
    pub fn same_settings(&self, other: &Config) -> bool {
        // Destructured in full, so a new section cannot be forgotten here.
        let Config {
            node,
            mqtt,
            storage,
            detector,
            tracker,
            incidents,
            cameras: _,
            rules,
            change,
            evidence,
            outbox,
            http,
            review,
            categories,
            cluster,
        } = self;
        *node == other.node
            && *mqtt == other.mqtt
            && *storage == other.storage
            && *detector == other.detector
            && *tracker == other.tracker
            && *incidents == other.incidents
            && *rules == other.rules
            && *change == other.change
            && *evidence == other.evidence
            && *outbox == other.outbox
            && *http == other.http
            && *review == other.review
            && *categories == other.categories
            && *cluster == other.cluster
    }
}

/// `[cluster]`: this node is one of several sharing the city's cameras through etcd.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd endpoints, e.g. `["http://10.0.0.11:2379", "http://10.0.0.12:2379"]`.
    pub etcd: Vec<String>,
    /// The node's lease: a node silent this long loses its cameras to the others.
    #[serde(default = "d_lease_ttl")]
    pub lease_ttl_seconds: u32,
    /// Cameras this node may run at once; 0 = 25 per core (the 2-core scale bench kept up
    /// with 100 D1 sub-streams at one detection per 2 s: half of that, for main streams and
    /// shorter intervals).
    #[serde(default)]
    pub capacity: usize,
    /// A camera stays at least this long on its node before it is handed to another node that
    /// joined (a node's death moves its cameras at once).
    #[serde(default = "d_min_stay")]
    pub min_stay_seconds: f64,
    /// Prefix of every key this deployment keeps in etcd.
    #[serde(default = "d_key_prefix")]
    pub key_prefix: String,
    /// The city ledger, `postgres://USER@HOST:5432/DB`: every node ships its messages there,
    /// and a camera's history follows it to whichever node runs it. None: each node's own
    /// ledger only.
    pub ledger_url: Option<String>,
    /// File whose first line is the city ledger's password.
    pub ledger_password_file: Option<PathBuf>,
    /// Environment variable holding the city ledger's password.
    pub ledger_password_env: Option<String>,
}

fn d_lease_ttl() -> u32 {
    10
}
fn d_min_stay() -> f64 {
    60.0
}
fn d_key_prefix() -> String {
    "/streetwatch/".into()
}

impl ClusterConfig {
    /// The capacity in force: the configured one, else 25 cameras per core.
    pub fn capacity(&self) -> usize {
        match self.capacity {
            0 => 25 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Category code and name per event kind, as configured.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(transparent)]
pub struct Categories(pub std::collections::BTreeMap<EventKind, CategoryConfig>);

/// One kind's case code and name (数字城管 事件小类).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryConfig {
    /// Code, e.g. `05-05` or a platform's own `0505`.
    pub code: String,
    /// Name, e.g. `机动车乱停放`.
    pub name: String,
}

impl Categories {
    /// The category sent for `kind`: the configured one, else the national default.
    pub fn category(&self, kind: EventKind) -> crate::domain::Category {
        match self.0.get(&kind) {
            Some(c) => crate::domain::Category {
                code: c.code.clone(),
                name: c.name.clone(),
            },
            None => {
                let (code, name) = kind.default_category();
                crate::domain::Category {
                    code: code.into(),
                    name: name.into(),
                }
            }
        }
    }
}

/// Identity and defaults of this node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id used in topics (`{prefix}/nodes/{id}/available`).
    #[serde(default = "default_node_id")]
    pub id: String,
    /// IANA time zone for schedules and message times, unless a camera sets its own.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Public holidays, `2026-10-01..2026-10-07` or single dates, for `holidays` and `workdays`
    /// in zone schedules.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// How many cameras' frames are analysed at the same time (preprocessing, inference,
    /// rules); the others wait their turn. 0 = one per core (at least `sessions` x
    /// `batch_size` of the detector, so batches can fill).
    #[serde(default)]
    pub analysis_slots: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: default_node_id(),
            time_zone: default_time_zone(),
            holidays: Vec::new(),
            analysis_slots: 0,
        }
    }
}

fn default_node_id() -> String {
    "streetwatch".into()
}
fn default_time_zone() -> String {
    "Asia/Shanghai".into()
}

/// MQTT connection settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port`.
    #[serde(default = "default_mqtt_url")]
    pub url: String,
    /// Prefix of every topic.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Start an in-process broker on the url's port (for demos and single-box installs).
    #[serde(default)]
    pub embedded: bool,
    /// MQTT client id; defaults to `streetwatch-{node id}`.
    pub client_id: Option<String>,
    /// Publish `{prefix}/stats` this often.
    #[serde(default = "d_stats_every")]
    pub stats_every_seconds: f64,
    /// User name for the broker.
    pub username: Option<String>,
    /// File holding the password (first line); never logged.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password; never logged.
    pub password_env: Option<String>,
    /// `mqtts://`: PEM file of the CA that signed the broker's certificate (default: the
    /// system's CA bundle).
    pub ca_file: Option<PathBuf>,
    /// `mqtts://`: PEM client certificate, for brokers that require one.
    pub client_cert_file: Option<PathBuf>,
    /// `mqtts://`: PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
}

fn d_stats_every() -> f64 {
    30.0
}

fn default_mqtt_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_prefix() -> String {
    "streetwatch".into()
}

/// Storage locations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for `ledger.sqlite` and `evidence/`; relative paths are relative to the config file.
    pub dir: PathBuf,
}

/// Detector settings shared by all cameras.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Threads ONNX Runtime may use inside one inference.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Folder with model manifests (`*.toml`); default `models/` beside the working directory.
    pub models_dir: Option<PathBuf>,
    /// Execution providers to try, in order (`cpu`, `cuda`, `tensorrt`, `openvino`); the first
    /// that ONNX Runtime can start runs the model, CPU is always the last resort.
    #[serde(default = "default_providers")]
    pub execution_providers: Vec<Provider>,
    /// ONNX Runtime sessions per model, shared by the cameras using it: how many inferences of
    /// one model may run at the same time.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// With a model whose batch axis is dynamic: up to this many cameras' frames go through one
    /// inference (1 = no batching). Pays off on GPUs; on a CPU it mostly adds waiting.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a frame may wait for other cameras' frames to fill a batch.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            models_dir: None,
            execution_providers: default_providers(),
            sessions: default_sessions(),
            batch_size: default_batch_size(),
            batch_wait_ms: default_batch_wait_ms(),
        }
    }
}

impl DetectorConfig {
    /// How ONNX Runtime sessions are made for this config.
    pub fn runtime(&self) -> RuntimeOptions {
        RuntimeOptions {
            threads: self.threads,
            sessions: self.sessions,
            providers: self.execution_providers.clone(),
            batch_size: self.batch_size.max(1),
            batch_wait: std::time::Duration::from_millis(self.batch_wait_ms),
        }
    }
}

fn default_providers() -> Vec<Provider> {
    vec![Provider::Cpu]
}

/// One session per core (each inference then runs on a core of its own), at most 8: beyond
/// that the sessions' memory costs more than the parallelism gains on CPU.
fn default_sessions() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

fn default_batch_size() -> usize {
    1
}

fn default_batch_wait_ms() -> u64 {
    10
}

fn default_threads() -> usize {
    1
}

/// Tracker thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// Detections at or above this score start tracks and take part in the first association pass.
    #[serde(default = "d_high_score")]
    pub high_score: f32,
    /// Detections between this and `high_score` only extend existing tracks (second pass).
    #[serde(default = "d_low_score")]
    pub low_score: f32,
    /// Minimum IoU between a predicted track box and a detection to associate them.
    #[serde(default = "d_match_iou")]
    pub match_iou: f32,
    /// A moving track not seen for this long is dropped.
    #[serde(default = "d_lost_moving")]
    pub max_lost_seconds: f64,
    /// A stationary track (a parked car) survives this long unseen, e.g. behind a bus.
    #[serde(default = "d_lost_stationary")]
    pub max_lost_stationary_seconds: f64,
    /// How far (fraction of the box size) the box may wander and still count as at rest.
    #[serde(default = "d_jitter")]
    pub stationary_tolerance: f32,
    /// How long a box must stay away from its resting place before the object counts as moved.
    #[serde(default = "d_move_confirm")]
    pub move_confirm_seconds: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_score: d_high_score(),
            low_score: d_low_score(),
            match_iou: d_match_iou(),
            max_lost_seconds: d_lost_moving(),
            max_lost_stationary_seconds: d_lost_stationary(),
            stationary_tolerance: d_jitter(),
            move_confirm_seconds: d_move_confirm(),
        }
    }
}

fn d_high_score() -> f32 {
    0.5
}
fn d_low_score() -> f32 {
    0.2
}
fn d_match_iou() -> f32 {
    0.2
}
fn d_lost_moving() -> f64 {
    5.0
}
fn d_lost_stationary() -> f64 {
    60.0
}
fn d_jitter() -> f32 {
    0.25
}
fn d_move_confirm() -> f64 {
    3.0
}

/// Incident lifecycle settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentConfig {
    /// Send an `update` for an open incident this often.
    #[serde(default = "d_update_every")]
    pub update_every_seconds: f64,
    /// End an incident when its object has not been seen for this long.
    #[serde(default = "d_end_after")]
    pub end_after_seconds: f64,
    /// Send an extra `update` when a frame's score beats the evidence's by this much.
    #[serde(default = "d_better_evidence")]
    pub better_evidence_margin: f32,
    /// A new event at the same place (same zone, overlapping box) as one that ended at most
    /// this long before is a relapse (反弹).
    #[serde(default = "d_relapse_window")]
    pub relapse_window_seconds: f64,
    /// After a crash or kill, an event left open is continued when its object is still in
    /// place on restart, unless the process was down longer than this (then it is ended).
    #[serde(default = "d_resume_max_gap")]
    pub resume_max_gap_seconds: f64,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            update_every_seconds: d_update_every(),
            end_after_seconds: d_end_after(),
            better_evidence_margin: d_better_evidence(),
            relapse_window_seconds: d_relapse_window(),
            resume_max_gap_seconds: d_resume_max_gap(),
        }
    }
}

fn d_update_every() -> f64 {
    60.0
}
fn d_end_after() -> f64 {
    30.0
}
fn d_relapse_window() -> f64 {
    24.0 * 3600.0
}
fn d_better_evidence() -> f32 {
    0.1
}
fn d_resume_max_gap() -> f64 {
    3600.0
}

/// The review loop (闭环).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// After an event is marked `cleared`, the camera decides within this long whether the
    /// place is clear (`verified`) or not (`not_cleared`).
    #[serde(default = "d_recheck_within")]
    pub recheck_within_seconds: f64,
    /// How long the camera must see the place without the thing to call it clear.
    #[serde(default = "d_recheck_clear")]
    pub recheck_clear_seconds: f64,
    /// How long a console login lasts.
    #[serde(default = "d_session_hours")]
    pub session_hours: f64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            recheck_within_seconds: d_recheck_within(),
            recheck_clear_seconds: d_recheck_clear(),
            session_hours: d_session_hours(),
        }
    }
}

fn d_recheck_within() -> f64 {
    600.0
}
fn d_recheck_clear() -> f64 {
    30.0
}
fn d_session_hours() -> f64 {
    12.0
}

/// The operator console.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on; loopback by default, so only this machine reaches it.
    #[serde(default = "d_listen")]
    pub listen: String,
    /// File whose first line is the token every change (saving zones) must carry.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding that token.
    pub token_env: Option<String>,
    /// PEM certificate chain: with `tls_key_file`, the console speaks HTTPS only.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_key_file: Option<PathBuf>,
}

fn d_listen() -> String {
    "127.0.0.1:8686".into()
}

/// Bounds of the outbox (event messages stored until the broker acknowledges them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Above this many waiting messages, superseded `update`s are dropped first, then other
    /// `update`s; a `new` or `end` is never dropped.
    #[serde(default = "d_outbox_max")]
    pub max_messages: u64,
    /// `update`s waiting longer than this are dropped; `new` and `end` never are.
    #[serde(default = "d_outbox_age")]
    pub max_age_seconds: f64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_messages: d_outbox_max(),
            max_age_seconds: d_outbox_age(),
        }
    }
}

fn d_outbox_max() -> u64 {
    100_000
}
fn d_outbox_age() -> f64 {
    7.0 * 86_400.0
}

/// Evidence photos: where they are written and how long they are kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Folder for the photos; default `evidence/` in the storage dir. A separate volume keeps
    /// a full evidence disk away from the ledger.
    pub dir: Option<PathBuf>,
    /// Photos of events that ended more than this many days ago are deleted (0 = keep forever);
    /// photos of events still open are never deleted.
    #[serde(default = "d_retention_days")]
    pub retention_days: f64,
    /// How often the retention sweep runs.
    #[serde(default = "d_sweep_every")]
    pub sweep_every_seconds: f64,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            dir: None,
            retention_days: d_retention_days(),
            sweep_every_seconds: d_sweep_every(),
        }
    }
}

fn d_retention_days() -> f64 {
    90.0
}
fn d_sweep_every() -> f64 {
    3600.0
}

/// One camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Stable id, used in topics and events.
    pub id: String,
    /// Human name (e.g. the road junction).
    #[serde(default)]
    pub name: String,
    /// `rtsp://…`, `http(s)://…`, `file://…` or a plain file path: the main stream, whose
    /// frames are the evidence photos (and what is analysed when there is no `detect_url`).
    pub url: String,
    /// The camera's sub-stream (e.g. 704×576): detection, tracking and the change map run on
    /// it, evidence still comes from `url`. None: everything runs on `url`.
    #[serde(default)]
    pub detect_url: Option<String>,
    /// Run detection on one frame every this many seconds of video time.
    #[serde(default = "d_detect_every")]
    pub detect_every_seconds: f64,
    /// Model manifest name (a file `models/{model}.toml`).
    #[serde(default = "d_model")]
    pub model: String,
    /// Decode all frames or keyframes only.
    #[serde(default)]
    pub decode: DecodeMode,
    /// For file sources: playback speed relative to real time (1.0 = like a live camera, 0 = as fast as possible).
    #[serde(default = "d_pace")]
    pub pace: f64,
    /// Where the detector looks: the whole frame fitted into the model input, or crops around
    /// the zones at full resolution (finds small, far vehicles; costs one inference per tile).
    #[serde(default)]
    pub detect_regions: DetectRegions,
    /// With `detect_regions = "zones"`: also run the whole frame this often, for context
    /// (objects entering from outside the zones); 0 = never.
    #[serde(default = "d_context_every")]
    pub context_every_seconds: f64,
    /// For file sources in `run`: start the file again when it ends (demo and test cameras);
    /// stream time keeps going forward across the loops.
    #[serde(default)]
    pub repeat: bool,
    /// Skip the model on a frame when nothing changed in the zones since it last ran (the
    /// detections then stand), but run it at least this often, seconds; 0 = on every frame.
    #[serde(default)]
    pub full_detect_seconds: f64,
    /// A camera online that gives no frame for this many seconds is stuck (a hung decoder, a
    /// stream that sends packets but no pictures): it is reported offline and restarted.
    #[serde(default = "d_stall_seconds")]
    pub stall_seconds: f64,
    /// Camera's IANA time zone; defaults to the node's.
    pub time_zone: Option<String>,
    /// Set false to keep a camera in the file but not connect to it.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Zones drawn on this camera's picture.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
}

fn d_detect_every() -> f64 {
    2.0
}
fn d_model() -> String {
    "yolox-nano-coco".into()
}
fn d_stall_seconds() -> f64 {
    30.0
}
fn d_context_every() -> f64 {
    10.0
}
fn d_pace() -> f64 {
    1.0
}
fn d_true() -> bool {
    true
}

/// Where the detector looks in each sampled frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectRegions {
    /// The whole frame, resized to the model input.
    #[default]
    Frame,
    /// Crops covering the zones at native resolution, tiled with overlap, plus the whole frame
    /// every `context_every_seconds`.
    Zones,
}

/// One zone: a polygon on the camera picture with a rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Id unique within the camera.
    pub id: String,
    /// Human name shown in events.
    #[serde(default)]
    pub name: String,
    /// What the zone watches for.
    pub kind: ZoneKind,
    /// Normalized `[x, y]` points (0..1 of the frame), at least 3, not self-intersecting.
    pub polygon: Vec<[f64; 2]>,
    /// How long an object must stay before an event is raised.
    #[serde(default = "d_dwell")]
    pub dwell_seconds: f64,
    /// Arming schedule (布防计划); empty = always armed.
    #[serde(default)]
    pub schedule: Vec<String>,
    /// For `no_parking`: which vehicles are forbidden (default motor vehicles only).
    #[serde(default = "d_vehicles")]
    pub vehicles: Vec<VehicleClass>,
    /// Grid (网格) this place belongs to.
    #[serde(default)]
    pub grid: String,
    /// Unit responsible for this place.
    #[serde(default)]
    pub responsible_unit: String,
    /// The road section (路段) the place is on, sent in events for rankings by road.
    #[serde(default)]
    pub road_section: String,
    /// `shopfront`: the shop responsible for the frontage (门前三包), sent in events.
    #[serde(default)]
    pub shop: String,
    /// Who to call about this place (the shop's phone, the grid worker), sent in events.
    #[serde(default)]
    pub contact: String,
    /// Whether the zone is armed at start (commands can switch it).
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// `garbage_watch`: smallest static change that counts, as a fraction of the frame's area
    /// (lower finds single bags far away, higher ignores litter).
    #[serde(default = "d_min_area")]
    pub min_area: f32,
    /// `garbage_watch`: which kind a pile here is reported as (`exposed_garbage`,
    /// `debris_pile` for construction spoil, `material_pile` for piled materials).
    #[serde(default = "d_pile_kind")]
    pub pile_kind: EventKind,
}

fn d_min_area() -> f32 {
    0.002
}
fn d_pile_kind() -> EventKind {
    EventKind::ExposedGarbage
}
fn d_dwell() -> f64 {
    180.0
}
fn d_vehicles() -> Vec<VehicleClass> {
    vec![VehicleClass::Motor]
}

/// A configuration problem located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and, where useful, what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A loaded config together with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed, validated config.
    pub config: Config,
    /// The file it was read from.
    pub path: PathBuf,
}

/// Removes `.` and `dir/..` pairs so paths in logs and events read cleanly
/// (`configs/../out` -> `out`); purely lexical, the file system is not asked.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

impl LoadedConfig {
    /// The storage directory, resolved against the config file's folder.
    pub fn storage_dir(&self) -> PathBuf {
        self.resolve(&self.config.storage.dir)
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn path_of(&self, p: &Path) -> PathBuf {
        self.resolve(p)
    }

    /// The evidence folder: `[evidence] dir`, else `evidence/` in the storage dir.
    pub fn evidence_dir(&self) -> PathBuf {
        match &self.config.evidence.dir {
            Some(d) => self.resolve(d),
            None => self.storage_dir().join("evidence"),
        }
    }

    /// The model manifest folder.
    pub fn models_dir(&self) -> PathBuf {
        match &self.config.detector.models_dir {
            Some(d) => self.resolve(d),
            None => crate::assets::default_models_dir(),
        }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize(&self.path.parent().unwrap_or_else(|| Path::new(".")).join(p))
        }
    }

    /// The ids of the enabled cameras, in file order (what a cluster places).
    pub fn enabled_cameras(&self) -> Vec<String> {
        let cams = self.config.cameras.iter();
        cams.filter(|c| c.enabled).map(|c| c.id.clone()).collect()
    }

    /// The camera with this id.
    pub fn camera(&self, id: &str) -> Option<&CameraConfig> {
        self.config.cameras.iter().find(|c| c.id == id)
    }

    /// The node's holiday list.
    pub fn holidays(&self) -> crate::domain::schedule::DateList {
        // Validated by `check`; a bad item cannot get here.
        crate::domain::schedule::DateList::parse(&self.config.node.holidays).unwrap_or_default()
    }

    /// The node's time zone (checked by `check`; Shanghai if it somehow does not parse).
    pub fn node_tz(&self) -> chrono_tz::Tz {
        self.config
            .node
            .time_zone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai)
    }

    /// A camera's time zone (its own, else the node's).
    pub fn camera_tz(&self, cam: &CameraConfig) -> chrono_tz::Tz {
        let name = cam
            .time_zone
            .as_deref()
            .unwrap_or(&self.config.node.time_zone);
        name.parse().unwrap_or(chrono_tz::Asia::Shanghai)
    }
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Parses and validates config text that came from `path`.
pub fn parse(path: &Path, text: &str) -> Result<LoadedConfig, ConfigErrors> {
    let locator = locate::Locator::new(path, text);
    let config: Config = deserialize(&locator, text).map_err(|e| ConfigErrors(vec![e]))?;
    let loaded = LoadedConfig {
        config,
        path: path.to_path_buf(),
    };
    let problems = validate::validate(&loaded);
    if problems.is_empty() {
        Ok(loaded)
    } else {
        let mut errors: Vec<ConfigError> = problems
            .into_iter()
            .map(|p| locator.error_at_path(&p.path, p.message))
            .collect();
        errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(errors))
    }
}

/// Writes `text` over `path` atomically (temporary file, fsync, rename), keeping `old` (the
/// file's previous text, if any) as `path.bak`; returns the backup's path.
pub fn write_atomically(
    path: &Path,
    old: Option<&str>,
    text: &str,
) -> Result<Option<PathBuf>, String> {
    use std::io::Write;
    let with = |ext: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (backup, tmp) = (with(".bak"), with(".tmp"));
    let err = |what: &Path, e: std::io::Error| format!("cannot write {}: {e}", what.display());
    if let Some(old) = old {
        std::fs::write(&backup, old).map_err(|e| err(&backup, e))?;
    }
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| err(&tmp, e))?;
    f.sync_all().map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e))?;
    Ok(old.map(|_| backup))
}

/// Deserializes config text, locating a type error or unknown field by line, column and path.
fn deserialize<T: serde::de::DeserializeOwned>(
    locator: &locate::Locator,
    text: &str,
) -> Result<T, ConfigError> {
    toml_edit::de::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let message = explain(e.message().trim());
        // Name the field, as the semantic checks do: serde's message alone does not say which.
        let message = match locator.path_at(offset) {
            Some(path) => format!("{path}: {message}"),
            None => message,
        };
        locator.error_at(offset, message)
    })
}

/// Words a serde message in the operator's terms: Rust type names become what to write, and an
/// unknown field or value close to an expected one gets a "did you mean".
fn explain(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
    ] {
        if let Some(head) = out.strip_suffix(rust) {
            out = format!("{head}{plain}");
        }
    }
    if out.starts_with("unknown field `") || out.starts_with("unknown variant `") {
        if let Some((given, expected)) = out.split_once(", expected") {
            let ticked = |s: &str| -> Vec<String> {
                s.split('`').skip(1).step_by(2).map(String::from).collect()
            };
            let given = ticked(given).into_iter().next().unwrap_or_default();
            let closest = ticked(expected)
                .into_iter()
                .map(|c| (edit_distance(&given, &c), c))
                .min_by_key(|(d, _)| *d);
            if let Some((d, c)) = closest {
                if d > 0 && d <= 2 {
                    out.push_str(&format!("; did you mean `{c}`?"));
                }
            }
        }
    }
    out
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Settings shared by the rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Labels that hint at a stall when a person stays by them (COCO names by default).
    #[serde(default = "d_hints")]
    pub stall_hints: Vec<String>,
    /// How near a vendor stays to the stall: the person's ground point within this many stall
    /// widths of the stall's box.
    #[serde(default = "d_vendor_distance")]
    pub vendor_distance: f32,
}

fn d_hints() -> Vec<String> {
    [
        "umbrella",
        "diningtable",
        "dining table",
        "chair",
        "bench",
        "cart",
        "tricycle",
    ]
    .map(String::from)
    .to_vec()
}

fn d_vendor_distance() -> f32 {
    1.0
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self {
            stall_hints: d_hints(),
            vendor_distance: d_vendor_distance(),
        }
    }
}
