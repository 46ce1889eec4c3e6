//! The running node's cameras: each in its own thread (a failing camera only stops itself),
//! started, stopped and reconfigured by the supervisor as commands and reloads arrive.
//! `review.rs`: review changes from the console and the command center, and what they ask
//! of a camera.

mod fault;
mod review;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{CameraConfig, LoadedConfig};
use crate::detector::Detector;
use crate::domain::custody::Custody;
use crate::event::{self, EventMessage};
use crate::incidents::{EndReason, Phase};
use crate::live::{LiveDetection, LiveFrame, LiveView};
use crate::mqtt::{CameraStatus, CommandError, Outbound};
use crate::pipeline::pool::AnalysisPool;
use crate::pipeline::CameraPipeline;
use crate::source::{self, CameraState, FeedItem, FeedOptions, FrameSlot, StatusChange};
use crate::stats::StatsBoard;

/// A command for one running camera.
#[derive(Debug, Clone)]
pub enum CameraCommand {
    /// Arm or disarm one of its zones.
    SetZone {
        /// Zone id.
        zone: String,
        /// Armed.
        on: bool,
    },
    /// Apply the reloaded config waiting in the camera's [`PendingConfig`] (zones, schedules,
    /// thresholds) without reconnecting.
    Reconfigure,
    /// An event was marked cleared: look at its place again.
    Recheck(crate::pipeline::RecheckRequest),
    /// Leave the thing of a rejected event alone while it stays.
    Suppress(crate::ledger::Suppression),
    /// Lift a suppression.
    Unsuppress(i64),
}

/// What a camera is taken over with in a cluster.
#[derive(Debug, Clone, Default)]
pub struct TakeOver {
    /// Latest messages of its open events, to continue.
    pub held: Vec<String>,
    /// Its recent history from the city ledger; None when it could not be read.
    pub history: Option<crate::city::History>,
}

/// What a camera thread talks to.
pub struct WorkerLinks {
    /// Messages and status out.
    pub tx: UnboundedSender<Outbound>,
    /// Its figures.
    pub stats: StatsBoard,
    /// Its latest frame.
    pub live: LiveView,
    /// Set to stop it.
    pub stop: Arc<AtomicBool>,
    /// Commands in.
    pub control: Receiver<CameraCommand>,
    /// The newest reloaded config, not yet applied.
    pub pending_config: PendingConfig,
    /// The node's analysis places, taken in turn for each frame.
    pub pool: Arc<AnalysisPool>,
    /// In a cluster: asked before each write whether this node still holds the camera.
    pub custody: Option<Arc<dyn Custody>>,
    /// In a cluster: what the camera was taken with, taken up on its first run.
    pub held: Arc<Mutex<Option<TakeOver>>>,
    /// Set with `stop` to leave its open events open (a hand-over, or a camera lost).
    pub keep_open: Arc<AtomicBool>,
}

/// Commands that may wait for one camera; beyond, a command is refused (the camera is stuck
/// or reconnecting, and whoever sent it is told).
const CONTROL_QUEUE: usize = 64;

/// The newest reloaded config a camera has not applied yet: reloads while it is busy or
/// reconnecting replace each other here instead of queueing a copy each.
pub type PendingConfig = Arc<Mutex<Option<Arc<LoadedConfig>>>>;

/// One running camera.
struct RunningCamera {
    config: CameraConfig,
    stop: Arc<AtomicBool>,
    keep_open: Arc<AtomicBool>,
    control: Sender<CameraCommand>,
    pending_config: PendingConfig,
    thread: std::thread::JoinHandle<()>,
}

impl RunningCamera {
    /// Queues a command; refused when [`CONTROL_QUEUE`] commands already wait.
    fn tell(&self, id: &str, command: CameraCommand) -> Result<(), String> {
        self.control.try_send(command).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => format!(
                "camera {id} is not taking commands ({CONTROL_QUEUE} wait: it is stuck or reconnecting); send it again later"
            ),
            crossbeam_channel::TrySendError::Disconnected(_) => format!("camera {id} has stopped"),
        })
    }

    /// Hands a reloaded config to the camera: it replaces one not yet applied, and only the
    /// first is announced in the queue.
    fn reconfigure(&self, id: &str, new: &Arc<LoadedConfig>) {
        let waiting = match self.pending_config.lock() {
            Ok(mut slot) => slot.replace(new.clone()).is_some(),
            Err(_) => return,
        };
        if !waiting {
            // A full queue loses only the announcement: the camera looks at the slot anyway.
            if let Err(e) = self.tell(id, CameraCommand::Reconfigure) {
                tracing::warn!(camera = %id, "{e}");
            }
        }
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Cameras given new zones and settings in place.
    pub updated: Vec<String>,
    /// Cameras started (new, or enabled).
    pub started: Vec<String>,
    /// Cameras stopped (removed, or disabled).
    pub stopped: Vec<String>,
    /// Cameras reconnected because their url, model or decoding changed.
    pub restarted: Vec<String>,
}

/// The cameras of a running node.
pub struct Supervisor {
    loaded: LoadedConfig,
    cameras: BTreeMap<String, RunningCamera>,
    detectors: HashMap<String, Result<Arc<Detector>, String>>,
    tx: UnboundedSender<Outbound>,
    stats: StatsBoard,
    live: LiveView,
    /// Review changes are recorded (and queued for the broker) here; None when it cannot open.
    ledger: Option<crate::ledger::Ledger>,
    /// The analysis places the cameras share.
    pool: Arc<AnalysisPool>,
    /// In a cluster: the custody every camera asks before writing; cameras start only when
    /// the cluster gives them to this node.
    custody: Option<Arc<dyn Custody>>,
    /// In a cluster whose cameras live in etcd: those cameras, which replace the file's own
    /// at every reload.
    city_cameras: Option<Vec<crate::config::city::CameraText>>,
}

impl Supervisor {
    /// Starts every enabled camera of `loaded` (in a cluster, with `custody`: none, until the
    /// cluster gives them); their latest frames go to `live`.
    pub fn start(
        loaded: LoadedConfig,
        tx: UnboundedSender<Outbound>,
        stats: StatsBoard,
        live: LiveView,
        custody: Option<Arc<dyn Custody>>,
    ) -> Self {
        let ledger = match crate::ledger::Ledger::open(&loaded.storage_dir()) {
            Ok(mut l) => {
                l.set_delivery(true);
                Some(l)
            }
            Err(e) => {
                tracing::error!("review changes cannot be recorded: {e}");
                None
            }
        };
        let d = &loaded.config.detector;
        let slots = match loaded.config.node.analysis_slots {
            0 => AnalysisPool::default_size(d.sessions, d.batch_size),
            n => n,
        };
        tracing::info!("{slots} cameras' frames are analysed at a time");
        let pool = AnalysisPool::new(slots);
        let mut s = Self {
            pool,
            loaded,
            cameras: BTreeMap::new(),
            detectors: HashMap::new(),
            tx,
            stats,
            live,
            ledger,
            custody,
            city_cameras: None,
        };
        if s.custody.is_none() {
            let cams: Vec<CameraConfig> = s.loaded.config.cameras.clone();
            for cam in cams.iter().filter(|c| c.enabled) {
                s.start_camera(cam, None);
            }
        }
        s
    }

    /// The cameras running now.
    pub fn running_cameras(&self) -> Vec<String> {
        self.cameras.keys().cloned().collect()
    }

    /// The enabled cameras of the config in force.
    pub fn enabled_cameras(&self) -> Vec<String> {
        self.loaded.enabled_cameras()
    }

    /// Starts a camera the cluster gave this node, with its history, taking up its open
    /// events `held`.
    pub fn take(&mut self, camera: &str, held: Vec<String>, history: Option<crate::city::History>) {
        let Some(cam) = self.loaded.camera(camera).filter(|c| c.enabled).cloned() else {
            tracing::warn!(camera, "the cluster gave this node a camera its config does not have (enabled): check that every node has the same camera list");
            return;
        };
        if let Some(old) = self.stop_camera(camera, true) {
            let _ = old.join();
        }
        self.start_camera(&cam, Some(TakeOver { held, history }));
    }

    /// Stops a camera leaving its open events open (a hand-over to another node, or a camera
    /// this node lost), and waits for it; its retained status is another node's now.
    pub fn let_go(&mut self, camera: &str) {
        if let Some(thread) = self.stop_camera(camera, true) {
            let _ = thread.join();
        }
        self.stats.remove(camera);
        self.live.remove(camera);
        let _ = self.tx.send(Outbound::Released {
            camera: camera.to_string(),
        });
    }

    /// The config in force.
    pub fn config(&self) -> &LoadedConfig {
        &self.loaded
    }

    fn detector(&mut self, model: &str) -> Result<Arc<Detector>, String> {
        let loaded = &self.loaded;
        self.detectors
            .entry(model.to_string())
            .or_insert_with(|| {
                Detector::load_with(
                    &loaded.models_dir(),
                    model,
                    &loaded.config.detector.runtime(),
                )
                .map(Arc::new)
                .map_err(|e| e.to_string())
            })
            .clone()
    }

    fn start_camera(&mut self, cam: &CameraConfig, held: Option<TakeOver>) {
        let det = self.detector(&cam.model);
        let stop = Arc::new(AtomicBool::new(false));
        let keep_open = Arc::new(AtomicBool::new(false));
        let (control, commands) = crossbeam_channel::bounded(CONTROL_QUEUE);
        let pending_config = PendingConfig::default();
        let (loaded, c) = (self.loaded.clone(), cam.clone());
        let links = WorkerLinks {
            tx: self.tx.clone(),
            stats: self.stats.clone(),
            live: self.live.clone(),
            stop: stop.clone(),
            control: commands,
            pending_config: pending_config.clone(),
            pool: self.pool.clone(),
            custody: self.custody.clone(),
            held: Arc::new(Mutex::new(held)),
            keep_open: keep_open.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("cam-{}", cam.id))
            .spawn(move || supervise(&loaded, &c, det, links));
        match spawned {
            Ok(thread) => {
                self.cameras.insert(
                    cam.id.clone(),
                    RunningCamera {
                        config: cam.clone(),
                        stop,
                        keep_open,
                        control,
                        pending_config,
                        thread,
                    },
                );
            }
            Err(e) => {
                tracing::error!(camera = %cam.id, "cannot start a thread for the camera: {e}")
            }
        }
    }

    /// Stops a camera; returns its thread to join (it ends its open events first, unless
    /// `keep_open`).
    fn stop_camera(&mut self, id: &str, keep_open: bool) -> Option<std::thread::JoinHandle<()>> {
        let cam = self.cameras.remove(id)?;
        cam.keep_open.store(keep_open, Ordering::Relaxed);
        cam.stop.store(true, Ordering::Relaxed);
        Some(cam.thread)
    }

    /// Arms or disarms a zone; an unknown camera or zone is refused with the ids there are.
    pub fn set_zone(&self, camera: &str, zone: &str, on: bool) -> Result<(), String> {
        let Some(cam) = self.cameras.get(camera) else {
            let known: Vec<&str> = self.cameras.keys().map(String::as_str).collect();
            return Err(format!(
                "no running camera {camera:?}; running: {}",
                known.join(", ")
            ));
        };
        if !cam.config.zones.iter().any(|z| z.id == zone) {
            let known: Vec<&str> = cam.config.zones.iter().map(|z| z.id.as_str()).collect();
            return Err(format!(
                "camera {camera} has no zone {zone:?}; its zones: {}",
                known.join(", ")
            ));
        }
        cam.tell(
            camera,
            CameraCommand::SetZone {
                zone: zone.to_string(),
                on,
            },
        )
    }

    /// Re-reads the config file: a bad config is refused (and the old one stays); a good one
    /// is applied camera by camera, reconnecting only cameras whose stream settings changed.
    pub fn reload(&mut self) -> Result<ReloadSummary, String> {
        let path = &self.loaded.path;
        let new = match &self.city_cameras {
            Some(cameras) => crate::config::city::with_cameras(path, cameras),
            None => crate::config::load(path),
        };
        Ok(self.apply(new.map_err(|e| e.to_string())?))
    }

    /// Applies a config the cluster made from the city's cameras in etcd (`cameras`; None: the
    /// file's own), as a reload does; later reloads of the file keep those cameras.
    pub fn configure(
        &mut self,
        new: LoadedConfig,
        cameras: Option<Vec<crate::config::city::CameraText>>,
    ) -> ReloadSummary {
        self.city_cameras = cameras;
        self.apply(new)
    }

    /// Puts a checked config in force camera by camera, reconnecting only cameras whose
    /// stream settings changed.
    fn apply(&mut self, new: LoadedConfig) -> ReloadSummary {
        let (old, now) = (&self.loaded.config, &new.config);
        for (section, same) in [
            ("mqtt", now.mqtt == old.mqtt),
            ("storage", now.storage.dir == old.storage.dir),
            ("detector", now.detector == old.detector),
            ("node", now.node == old.node),
        ] {
            if !same {
                tracing::warn!("reload: [{section}] changed; it takes effect after a restart");
            }
        }
        let mut summary = ReloadSummary::default();
        // One copy for every camera, not one each.
        let shared = Arc::new(new.clone());
        let same_settings = old.same_settings(now);
        let old_ids: Vec<String> = self.cameras.keys().cloned().collect();
        let mut joins = Vec::new();
        for id in &old_ids {
            let still = new.camera(id).filter(|c| c.enabled);
            match still {
                None => {
                    joins.extend(self.stop_camera(id, false));
                    summary.stopped.push(id.clone());
                }
                Some(c) if stream_changed(&self.cameras[id].config, c) => {
                    joins.extend(self.stop_camera(id, false));
                    summary.restarted.push(id.clone());
                }
                // Nothing of this camera changed: its zones' state (armed, dwell) stays.
                Some(c) if same_settings && *c == self.cameras[id].config => {}
                Some(c) => {
                    if let Some(running) = self.cameras.get_mut(id) {
                        running.config = c.clone();
                        running.reconfigure(id, &shared);
                    }
                    summary.updated.push(id.clone());
                }
            }
        }
        // A restarted camera's thread ends (and ends its events) before the new one starts,
        // so the two never hold the same stream or events.
        for j in joins {
            let _ = j.join();
        }
        self.loaded = new;
        let cams: Vec<CameraConfig> = self.loaded.config.cameras.clone();
        for cam in cams.iter().filter(|c| c.enabled) {
            if !self.cameras.contains_key(&cam.id) {
                let restarted = summary.restarted.contains(&cam.id);
                // In a cluster, new cameras start where the cluster places them.
                if self.custody.is_some() && !restarted {
                    continue;
                }
                if !restarted {
                    summary.started.push(cam.id.clone());
                }
                self.start_camera(cam, None);
            }
        }
        summary
    }

    /// Handles a command from the command center; what cannot be done is answered on the
    /// errors topic.
    pub fn command(&mut self, command: crate::mqtt::Command) {
        let topics = crate::mqtt::Topics::new(
            &self.loaded.config.mqtt.topic_prefix,
            &self.loaded.config.node.id,
        );
        let refused = match command {
            crate::mqtt::Command::SetZone { camera, zone, on } => {
                self.set_zone(&camera, &zone, on).err().map(|e| {
                    let topic = format!(
                        "{}/cameras/{camera}/zones/{zone}/set",
                        self.loaded.config.mqtt.topic_prefix
                    );
                    CommandError::new(&topic, if on { b"ON" } else { b"OFF" }, e)
                })
            }
            crate::mqtt::Command::Review { event_id, request } => {
                let actor = crate::review::Actor {
                    name: request.by.clone().unwrap_or_default(),
                    role: crate::review::Role::Platform,
                    grids: Vec::new(),
                };
                let in_cluster = self.custody.is_some();
                self.review(&event_id, &request, &actor, None)
                    .err()
                    // In a cluster every node hears the command; the one running the camera
                    // answers, the others stay silent.
                    .filter(|e| {
                        let elsewhere = matches!(
                            e,
                            crate::review::ReviewError::NotFound(_)
                                | crate::review::ReviewError::Elsewhere(_)
                        );
                        if in_cluster && elsewhere {
                            tracing::debug!(event_id = %event_id, "review left to the node that runs the camera: {e}");
                        }
                        !(in_cluster && elsewhere)
                    })
                    .map(|e| {
                        let payload = serde_json::json!({
                            "state": request.state,
                            "by": request.by,
                            "note": request.note,
                        });
                        CommandError::new(
                            &topics.review_set(&event_id),
                            payload.to_string().as_bytes(),
                            e.to_string(),
                        )
                    })
            }
            crate::mqtt::Command::Reload => match self.reload() {
                Ok(s) => {
                    tracing::info!(
                        "config reloaded: updated {:?}, started {:?}, stopped {:?}, reconnected {:?}",
                        s.updated,
                        s.started,
                        s.stopped,
                        s.restarted
                    );
                    None
                }
                Err(e) => {
                    tracing::error!("reload refused, the running config stays:\n{e}");
                    Some(CommandError::new(
                        &topics.reload(),
                        b"",
                        format!("reload refused, the running config stays: {e}"),
                    ))
                }
            },
        };
        if let Some(e) = refused {
            let _ = self.tx.send(Outbound::CommandError(e));
        }
    }

    /// The camera threads, left running (a file camera's ends at the end of its file).
    pub fn into_threads(self) -> Vec<std::thread::JoinHandle<()>> {
        self.cameras.into_values().map(|c| c.thread).collect()
    }

    /// Stops every camera and returns their threads to join.
    pub fn shutdown(mut self) -> Vec<std::thread::JoinHandle<()>> {
        let ids: Vec<String> = self.cameras.keys().cloned().collect();
        ids.iter()
            .filter_map(|id| self.stop_camera(id, false))
            .collect()
    }
}

/// Whether a camera must reconnect to apply a new config (its stream or model changed).
fn stream_changed(old: &CameraConfig, new: &CameraConfig) -> bool {
    old.url != new.url
        || old.detect_url != new.detect_url
        || old.model != new.model
        || old.decode != new.decode
        || old.detect_every_seconds != new.detect_every_seconds
        || old.pace != new.pace
        || old.repeat != new.repeat
        || old.detect_regions != new.detect_regions
        || old.context_every_seconds != new.context_every_seconds
        || old.time_zone != new.time_zone
}

/// How far a frame's stream time is behind the wall clock now, seconds (0 when ahead).
fn lag_seconds(time: DateTime<Utc>) -> f64 {
    ((Utc::now() - time).num_milliseconds() as f64 / 1000.0).max(0.0)
}

/// Runs one camera until `stop` or the end of its file: frames through the pipeline,
/// messages and status to `tx`. Returns why when the camera is stuck (its decoder gives no
/// frames), for the supervisor to restart it; a failing camera only affects itself.
pub fn camera_worker(
    loaded: &LoadedConfig,
    cam: &CameraConfig,
    detector: Result<Arc<Detector>, String>,
    links: &WorkerLinks,
) -> Result<(), String> {
    let WorkerLinks {
        tx,
        stats,
        live,
        stop,
        control,
        pending_config,
        pool,
        custody,
        held,
        keep_open,
    } = links;
    let mut fault = fault::Injected::panic_for(&cam.id);
    let tz = loaded.camera_tz(cam);
    // What the status topic says beside the state: evidence storage and main-stream trouble.
    let storage_error: RefCell<Option<String>> = RefCell::new(None);
    let main_error: RefCell<Option<String>> = RefCell::new(None);
    let send_status =
        |state: CameraState, fps: f64, last: Option<DateTime<Utc>>, error: Option<String>| {
            let _ = tx.send(Outbound::CameraStatus {
                camera: cam.id.clone(),
                status: CameraStatus {
                    state,
                    fps,
                    last_frame_time: last.map(|t| event::local_time(t, tz)),
                    error,
                    storage_error: storage_error.borrow().clone(),
                    main_stream_error: main_error.borrow().clone(),
                    node: loaded.config.node.id.clone(),
                },
            });
        };
    let pipeline =
        detector.and_then(|d| CameraPipeline::new(loaded, cam, d).map_err(|e| e.to_string()));
    let mut pipeline = match pipeline {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(camera = %cam.id, "camera not started: {e}");
            stats.update(&cam.id, |s| s.state = CameraState::Offline);
            send_status(CameraState::Offline, 0.0, None, Some(e));
            return Ok(());
        }
    };
    pipeline.queue_for_delivery();
    if let Some(c) = custody {
        pipeline.set_custody(c.clone());
    }
    match held.lock().ok().and_then(|mut h| h.take()) {
        Some(t) => {
            match &t.history {
                Some(h) => pipeline.import_history(h),
                None => pipeline.mark_history_partial(),
            }
            pipeline.recover_held(&t.held);
        }
        None => pipeline.recover(),
    }
    let send_zone_states = |zones: &[crate::config::ZoneConfig]| {
        for zone in zones {
            let _ = tx.send(Outbound::ZoneState {
                camera: cam.id.clone(),
                zone: zone.id.clone(),
                on: zone.enabled,
            });
        }
    };
    send_zone_states(&cam.zones);
    let send_events = |messages: Vec<EventMessage>| {
        for m in messages {
            log_event(&m);
            let _ = tx.send(Outbound::Event(m));
        }
    };
    let opts = FeedOptions {
        // With a sub-stream, the analysis runs on it; the main stream is for evidence only.
        url: cam.detect_url.clone().unwrap_or_else(|| cam.url.clone()),
        decode: cam.decode,
        detect_every_seconds: cam.detect_every_seconds,
        pace: cam.pace,
        start_time: None,
        reconnect: true,
        plays: if cam.repeat { None } else { Some(1) },
    };
    // Both callbacks read these; the loop below calls them one at a time.
    let last_time: Cell<Option<DateTime<Utc>>> = Cell::new(None);
    let fps = RefCell::new(FpsMeter::default());
    let on_status = |s: StatusChange| {
        tracing::info!(camera = %cam.id, state = ?s.state, error = ?s.error, "camera status");
        stats.update(&cam.id, |st| {
            if s.state == CameraState::Reconnecting {
                st.reconnects += 1;
            }
            st.state = s.state;
        });
        send_status(s.state, fps.borrow().value(), last_time.get(), s.error);
    };
    // Set when custody refused a write: the camera is another node's now.
    let refused: RefCell<Option<String>> = RefCell::new(None);
    let mut on_frame = |frame: source::Frame, replaced: u64| {
        if let Some(why) = pipeline.custody_refused() {
            refused.replace(Some(why.to_string()));
            return;
        }
        let live_frame = |frame: source::Frame, detections: &[crate::detector::Detection]| {
            let (w, h) = frame.image.dimensions();
            let (sx, sy) = (1.0 / w.max(1) as f32, 1.0 / h.max(1) as f32);
            LiveFrame {
                time: frame.time,
                detections: detections
                    .iter()
                    .map(|d| {
                        let b = d.bbox.scale(sx, sy);
                        LiveDetection {
                            label: d.label.clone(),
                            score: d.score,
                            bbox: [b.x1, b.y1, b.x2, b.y2],
                        }
                    })
                    .collect(),
                image: frame.image,
            }
        };
        fps.borrow_mut().tick();
        last_time.set(Some(frame.time));
        fault.on_frame(&cam.id);
        // Commands take effect on the frame's time, before it is processed.
        let mut commands: Vec<CameraCommand> = control.try_iter().collect();
        let reload_waits = pending_config.lock().is_ok_and(|slot| slot.is_some());
        if reload_waits
            && !commands
                .iter()
                .any(|c| matches!(c, CameraCommand::Reconfigure))
        {
            // Its announcement did not fit the queue: applied after what was queued.
            commands.push(CameraCommand::Reconfigure);
        }
        for command in commands {
            match command {
                CameraCommand::SetZone { zone, on } => {
                    match pipeline.set_zone_enabled(&zone, on, frame.time) {
                        Some(ended) => {
                            tracing::info!(camera = %cam.id, zone = %zone, "zone switched {}", if on { "ON" } else { "OFF" });
                            send_events(ended);
                            let _ = tx.send(Outbound::ZoneState {
                                camera: cam.id.clone(),
                                zone,
                                on,
                            });
                        }
                        None => tracing::warn!(camera = %cam.id, zone = %zone, "no such zone"),
                    }
                }
                CameraCommand::Recheck(request) => pipeline.recheck(request, frame.time),
                CameraCommand::Suppress(s) => send_events(pipeline.suppress(&s, frame.time)),
                CameraCommand::Unsuppress(id) => {
                    pipeline.unsuppress(id);
                }
                CameraCommand::Reconfigure => {
                    let Some(new) = pending_config.lock().ok().and_then(|mut slot| slot.take())
                    else {
                        continue;
                    };
                    let Some(new_cam) = new.camera(&cam.id).cloned() else {
                        continue;
                    };
                    match pipeline.reconfigure(&new, &new_cam, frame.time) {
                        Ok(ended) => {
                            send_events(ended);
                            send_zone_states(&new_cam.zones);
                            tracing::info!(camera = %cam.id, "new zones and settings applied");
                        }
                        Err(e) => tracing::error!(camera = %cam.id, "reload not applied: {e}"),
                    }
                }
            }
        }
        // The analysis waits its turn for a place in the node's pool; recording (evidence,
        // ledger, main-stream photos) runs after it has given the place up.
        let analysed = {
            let _place = pool.enter();
            pipeline.analyse(&frame)
        };
        match analysed.map(|a| pipeline.record(&frame, a)) {
            Ok(outcome) => {
                stats.update(&cam.id, |s| {
                    s.frames += 1;
                    s.fps = fps.borrow().value();
                    s.last_frame_time = Some(event::local_time(frame.time, tz));
                    s.record_timing(&outcome.timing, frame.decode);
                    s.dropped_frames += frame.damaged + replaced;
                    s.lag_seconds = lag_seconds(frame.time);
                    s.inferences += u64::from(outcome.inferred);
                    s.open_incidents = pipeline.open_incidents();
                    for m in outcome.messages.iter().filter(|m| m.phase == Phase::New) {
                        *s.events.entry(m.kind.clone()).or_default() += 1;
                    }
                });
                send_events(outcome.messages);
                for r in &outcome.reviews {
                    log_review(r);
                }
                let time = frame.time;
                // The frame is done with: it moves to the live view, uncopied.
                if live.keeps() {
                    live.put(&cam.id, live_frame(frame, &outcome.detections));
                }
                // The status topic says when evidence cannot be written or the main stream
                // gives no photo, and when it works again.
                let now_storage = pipeline.storage_error().map(str::to_string);
                let now_main = pipeline.main_stream_error().map(str::to_string);
                if *storage_error.borrow() != now_storage || *main_error.borrow() != now_main {
                    storage_error.replace(now_storage.clone());
                    main_error.replace(now_main.clone());
                    stats.update(&cam.id, |s| {
                        s.storage_error = now_storage;
                        s.main_stream_error = now_main;
                    });
                    send_status(CameraState::Online, fps.borrow().value(), Some(time), None);
                }
            }
            Err(e) => {
                tracing::error!(camera = %cam.id, "frame skipped: {e}");
                stats.update(&cam.id, |s| {
                    s.dropped_frames += 1 + frame.damaged + replaced
                });
            }
        }
    };
    // Decoding runs on a thread of its own and hands the newest sampled frame over; this
    // thread analyses, and notices when the decoder stops giving frames.
    let slot = Arc::new(FrameSlot::new(opts.when_busy()));
    let feed_stop = Arc::new(AtomicBool::new(false));
    let mut hang = fault::Injected::stall_for(&cam.id);
    let hung_camera = cam.id.clone();
    let decoder = source::spawn_feed(
        format!("dec-{}", cam.id),
        opts,
        feed_stop.clone(),
        slot.clone(),
        move |stop| hang.hang_if_due(&hung_camera, stop),
    );
    if let Err(e) = decoder {
        return Err(format!("cannot start the camera's decoding thread: {e}"));
    }
    let stall = Duration::from_secs_f64(cam.stall_seconds);
    let mut online = false;
    let mut heard = Instant::now();
    let mut stopping: Option<Instant> = None;
    let outcome = loop {
        if stopping.is_none() {
            if let Some(why) = refused.borrow_mut().take() {
                // Another node may hold the camera now: stop, writing nothing more.
                tracing::warn!(camera = %cam.id, "stopping the camera: {why}");
                keep_open.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
            }
        }
        if stop.load(Ordering::Relaxed) && stopping.is_none() {
            feed_stop.store(true, Ordering::Relaxed);
            stopping = Some(Instant::now());
        }
        match slot.take(Duration::from_millis(200)) {
            FeedItem::Frame { frame, dropped } => {
                heard = Instant::now();
                on_frame(frame, dropped);
            }
            FeedItem::Status(change) => {
                heard = Instant::now();
                online = change.state == CameraState::Online;
                on_status(change);
            }
            FeedItem::Ended => break Ok(()),
            FeedItem::Quiet => match stopping {
                Some(since) if since.elapsed() > DECODER_STOP_WAIT => {
                    tracing::warn!(camera = %cam.id, "the decoder did not stop within {DECODER_STOP_WAIT:?}; leaving it behind");
                    break Ok(());
                }
                Some(_) => {}
                // Opening and reconnecting have their own timeouts and backoff: only a camera
                // that is online and silent is stuck.
                None if online && heard.elapsed() > stall => {
                    break Err(format!(
                        "no frame for {} s while online: the stream or its decoder is stuck",
                        stall.as_secs_f64()
                    ))
                }
                None => {}
            },
        }
    };
    // A stuck decoder is left behind; once it wakes it finds the slot closed and stops.
    slot.close();
    feed_stop.store(true, Ordering::Relaxed);
    outcome?;
    if keep_open.load(Ordering::Relaxed) {
        // Handed over: the next node carries its open events on.
        return Ok(());
    }
    if let Some(t) = last_time.get() {
        send_events(pipeline.finish(t, EndReason::StreamEnded));
    }
    Ok(())
}

/// How long a stopped camera waits for its decoder to finish before leaving it behind.
const DECODER_STOP_WAIT: Duration = Duration::from_secs(5);

/// Runs a camera's worker and, when it fails (a panic in a model, a decoder or a rule, or a
/// decoder that stopped giving frames), reports the camera `offline` with why and starts it again with backoff (1 s doubling
/// to 30 s; back to 1 s after a minute of good running). The new run takes up the events the
/// failed one left open, like after a restart of the node. The other cameras never notice.
fn supervise(
    loaded: &LoadedConfig,
    cam: &CameraConfig,
    detector: Result<Arc<Detector>, String>,
    links: WorkerLinks,
) {
    const FIRST: std::time::Duration = std::time::Duration::from_secs(1);
    let mut backoff = FIRST;
    loop {
        let began = Instant::now();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            camera_worker(loaded, cam, detector.clone(), &links)
        }));
        let why = match run {
            Ok(Ok(())) => return,
            Ok(Err(stuck)) => stuck,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("the camera's analysis failed ({why})")
            }
        };
        if began.elapsed() > std::time::Duration::from_secs(60) {
            backoff = FIRST;
        }
        let error = format!("{why}; restarting in {} s", backoff.as_secs());
        tracing::error!(camera = %cam.id, "{error}");
        links.stats.update(&cam.id, |s| {
            s.state = CameraState::Offline;
            s.restarts += 1;
        });
        let _ = links.tx.send(Outbound::CameraStatus {
            camera: cam.id.clone(),
            status: CameraStatus {
                state: CameraState::Offline,
                fps: 0.0,
                last_frame_time: None,
                error: Some(error),
                storage_error: None,
                main_stream_error: None,
                node: loaded.config.node.id.clone(),
            },
        });
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if links.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Logs a review change in one line.
pub fn log_review(r: &crate::review::ReviewMessage) {
    tracing::info!(
        event_id = %r.event_id,
        camera = %r.camera,
        "review {} → {} by {} ({})",
        r.from,
        r.state,
        r.by,
        r.role.as_str()
    );
}

/// Logs an event message in one line.
pub fn log_event(m: &EventMessage) {
    tracing::info!(
        event_id = %m.event_id,
        seq = m.seq,
        camera = %m.camera.id,
        zone = %m.zone.id,
        "{:?} {} {} dwell {:.0}s",
        m.phase,
        m.kind,
        m.category.name,
        m.dwell_seconds
    );
}

/// Frames per second over a sliding window of recent frames.
#[derive(Debug, Default)]
struct FpsMeter {
    times: std::collections::VecDeque<Instant>,
}

impl FpsMeter {
    fn tick(&mut self) {
        self.times.push_back(Instant::now());
        if self.times.len() > 20 {
            self.times.pop_front();
        }
    }

    fn value(&self) -> f64 {
        match (self.times.front(), self.times.back()) {
            (Some(a), Some(b)) if self.times.len() > 1 && b > a => {
                (self.times.len() - 1) as f64 / (*b - *a).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
