//! The commands: `run` (the daemon), `replay` (a clip as a camera, on video time) and `demo`.
//! They share one camera worker so the demo and replays exercise the daemon's own path.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{CameraConfig, LoadedConfig};
use crate::detector::Detector;
use crate::event::{self, EventMessage};
use crate::incidents::EndReason;
use crate::mqtt::{self, CameraStatus, Outbound};
use crate::pipeline::CameraPipeline;
use crate::source::{self, CameraState, FeedOptions, StatusChange};
use crate::stats::StatsBoard;

/// Loads each model the enabled cameras use, once; a model that fails is reported per camera.
pub fn load_detectors(loaded: &LoadedConfig) -> HashMap<String, Result<Arc<Detector>, String>> {
    let mut out = HashMap::new();
    for cam in loaded.config.cameras.iter().filter(|c| c.enabled) {
        out.entry(cam.model.clone()).or_insert_with(|| {
            Detector::load_with(
                &loaded.models_dir(),
                &cam.model,
                &loaded.config.detector.runtime(),
            )
            .map(Arc::new)
            .map_err(|e| e.to_string())
        });
    }
    out
}

/// Runs one camera until `stop` or the end of its file: frames through the pipeline,
/// messages and status to `tx`. Never panics; a failing camera only affects itself.
pub fn camera_worker(
    loaded: &LoadedConfig,
    cam: &CameraConfig,
    detector: Result<Arc<Detector>, String>,
    tx: UnboundedSender<Outbound>,
    stats: StatsBoard,
    stop: Arc<AtomicBool>,
) {
    let tz = loaded.camera_tz(cam);
    let send_status = |state: CameraState,
                       fps: f64,
                       last: Option<DateTime<Utc>>,
                       error: Option<String>,
                       storage_error: Option<String>| {
        let _ = tx.send(Outbound::CameraStatus {
            camera: cam.id.clone(),
            status: CameraStatus {
                state,
                fps,
                last_frame_time: last.map(|t| event::local_time(t, tz)),
                error,
                storage_error,
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
            send_status(CameraState::Offline, 0.0, None, Some(e), None);
            return;
        }
    };
    pipeline.recover();
    for zone in &cam.zones {
        let _ = tx.send(Outbound::ZoneState {
            camera: cam.id.clone(),
            zone: zone.id.clone(),
            on: zone.enabled,
        });
    }
    let opts = FeedOptions {
        url: cam.url.clone(),
        decode: cam.decode,
        detect_every_seconds: cam.detect_every_seconds,
        pace: cam.pace,
        start_time: None,
        reconnect: true,
        repeat: cam.repeat,
    };
    // Both callbacks read these; the feed calls them one at a time.
    let last_time: Cell<Option<DateTime<Utc>>> = Cell::new(None);
    let storage_error: RefCell<Option<String>> = RefCell::new(None);
    let fps = RefCell::new(FpsMeter::default());
    let mut on_status = |s: StatusChange| {
        tracing::info!(camera = %cam.id, state = ?s.state, error = ?s.error, "camera status");
        stats.update(&cam.id, |st| {
            if s.state == CameraState::Reconnecting {
                st.reconnects += 1;
            }
            st.state = s.state;
        });
        send_status(
            s.state,
            fps.borrow().value(),
            last_time.get(),
            s.error,
            storage_error.borrow().clone(),
        );
    };
    let mut on_frame = |frame: source::Frame| {
        fps.borrow_mut().tick();
        last_time.set(Some(frame.time));
        match pipeline.process(&frame) {
            Ok(outcome) => {
                stats.update(&cam.id, |s| {
                    s.frames += 1;
                    s.fps = fps.borrow().value();
                    s.last_frame_time = Some(event::local_time(frame.time, tz));
                    s.record_timing(&outcome.timing);
                    s.open_incidents = pipeline.open_incidents();
                });
                for m in outcome.messages {
                    log_event(&m);
                    let _ = tx.send(Outbound::Event(m));
                }
                // The status topic says when evidence cannot be written, and when it can again.
                let now_error = pipeline.storage_error().map(str::to_string);
                if *storage_error.borrow() != now_error {
                    storage_error.replace(now_error.clone());
                    stats.update(&cam.id, |s| s.storage_error = now_error.clone());
                    send_status(
                        CameraState::Online,
                        fps.borrow().value(),
                        Some(frame.time),
                        None,
                        now_error,
                    );
                }
            }
            Err(e) => tracing::error!(camera = %cam.id, "frame skipped: {e}"),
        }
    };
    let _ = source::run_feed(&opts, &stop, &mut on_status, &mut on_frame);
    if let Some(t) = last_time.get() {
        for m in pipeline.finish(t, EndReason::StreamEnded) {
            log_event(&m);
            let _ = tx.send(Outbound::Event(m));
        }
    }
}

fn log_event(m: &EventMessage) {
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

/// The daemon: every enabled camera in its own thread, until Ctrl-C / SIGTERM.
pub fn run(loaded: LoadedConfig) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, _delivery, publisher) = start_mqtt(&loaded)?;
        let stats = StatsBoard::default();
        let handles = spawn_cameras(&loaded, &tx, &stats, &stop);
        let retention = spawn_retention(&loaded, &stop);
        let stats_task = tokio::spawn(publish_stats(
            stats,
            tx.clone(),
            loaded.config.mqtt.stats_every_seconds,
        ));
        wait_for_shutdown().await;
        stats_task.abort();
        tracing::info!("shutting down");
        stop.store(true, Ordering::Relaxed);
        for h in handles.into_iter().chain(retention) {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        drop(tx);
        let _ = publisher.await;
        Ok(())
    })
}

/// Runs the evidence retention sweep at start and every `evidence.sweep_every_seconds`, on the
/// wall clock (retention is about days on disk, not video time); none with `retention_days = 0`.
fn spawn_retention(
    loaded: &LoadedConfig,
    stop: &Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let cfg = loaded.config.evidence.clone();
    if cfg.retention_days <= 0.0 {
        return None;
    }
    let (storage, stop) = (loaded.storage_dir(), stop.clone());
    let retention = chrono::Duration::seconds((cfg.retention_days * 86_400.0) as i64);
    let spawned = std::thread::Builder::new()
        .name("evidence-retention".into())
        .spawn(move || {
            let ledger = match crate::ledger::Ledger::open(&storage) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("evidence retention not running: {e}");
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                match crate::retention::sweep(&ledger, Utc::now(), retention) {
                    Ok(s) if s.deleted + s.already_gone > 0 => tracing::info!(
                        "evidence retention: deleted {} file(s), {} KiB, of events ended over {} days ago",
                        s.deleted,
                        s.freed_bytes / 1024,
                        cfg.retention_days
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!("evidence retention: {e}"),
                }
                let next = Instant::now() + Duration::from_secs_f64(cfg.sweep_every_seconds);
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
    spawned
        .map_err(|e| tracing::error!("cannot start the evidence retention thread: {e}"))
        .ok()
}

async fn wait_for_shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Starts the embedded broker if asked, then the publisher.
fn start_mqtt(loaded: &LoadedConfig) -> Result<mqtt::Publisher> {
    let cfg = &loaded.config.mqtt;
    if cfg.embedded {
        let addr = mqtt::BrokerAddress::parse(&cfg.url)?;
        mqtt::start_embedded_broker(&addr).map_err(|e| anyhow!(e))?;
        // Let the broker listen before the publisher's first attempt, so the log stays clean.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect((addr.host.as_str(), addr.port)).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(
            "embedded MQTT broker listening on {}:{}",
            addr.host,
            addr.port
        );
    }
    Ok(mqtt::start_publisher(cfg, &loaded.config.node.id)?)
}

/// Sends the stats snapshot every `every` seconds.
async fn publish_stats(stats: StatsBoard, tx: UnboundedSender<Outbound>, every: f64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(every.max(0.5)));
    tick.tick().await;
    loop {
        tick.tick().await;
        if tx.send(Outbound::Stats(stats.snapshot())).is_err() {
            return;
        }
    }
}

fn spawn_cameras(
    loaded: &LoadedConfig,
    tx: &UnboundedSender<Outbound>,
    stats: &StatsBoard,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let detectors = load_detectors(loaded);
    let mut handles = Vec::new();
    for cam in loaded.config.cameras.iter().filter(|c| c.enabled) {
        let (loaded, cam, tx, stop) = (loaded.clone(), cam.clone(), tx.clone(), stop.clone());
        let stats = stats.clone();
        let det = detectors
            .get(&cam.model)
            .cloned()
            .unwrap_or_else(|| Err(format!("model {} not loaded", cam.model)));
        let spawned = std::thread::Builder::new()
            .name(format!("cam-{}", cam.id))
            .spawn(move || camera_worker(&loaded, &cam, det, tx, stats, stop));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => tracing::error!("cannot start a thread for a camera: {e}"),
        }
    }
    handles
}

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// Every message, in order.
    pub messages: Vec<EventMessage>,
    /// Sampled frames processed.
    pub frames: u64,
    /// Whether every message was acknowledged by the broker (None when not publishing).
    pub delivered: Option<bool>,
}

/// Options of `replay`.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Camera id in the config.
    pub camera: String,
    /// The clip.
    pub input: PathBuf,
    /// JSON Lines output.
    pub events_out: PathBuf,
    /// Stream time of the clip's first frame.
    pub start_time: Option<DateTime<Utc>>,
    /// Publish to the config's broker too.
    pub publish: bool,
}

/// Runs a clip as a camera on video time, as fast as the machine allows; ends what is still open at the end.
pub fn replay(loaded: &LoadedConfig, opts: &ReplayOptions) -> Result<ReplaySummary> {
    let cam = loaded
        .camera(&opts.camera)
        .ok_or_else(|| {
            anyhow!(
                "{}: no camera {:?}; cameras: {}",
                loaded.path.display(),
                opts.camera,
                loaded
                    .config
                    .cameras
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?
        .clone();
    let input = opts.input.display().to_string();
    if !opts.input.is_file() {
        return Err(anyhow!("{input}: no such clip"));
    }
    let start = match opts.start_time {
        Some(t) => t,
        None => clip_start_time(&opts.input)?,
    };
    let detector = Arc::new(
        Detector::load_with(
            &loaded.models_dir(),
            &cam.model,
            &loaded.config.detector.runtime(),
        )
        .with_context(|| format!("camera {}", cam.id))?,
    );
    let mut pipeline = CameraPipeline::new(loaded, &cam, detector)?;
    if let Some(dir) = opts
        .events_out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&opts.events_out)
            .with_context(|| format!("cannot write {}", opts.events_out.display()))?,
    );
    let rt = tokio::runtime::Runtime::new()?;
    let publisher = if opts.publish {
        let _guard = rt.enter();
        Some(mqtt::start_publisher(
            &loaded.config.mqtt,
            &loaded.config.node.id,
        )?)
    } else {
        None
    };
    let feed = FeedOptions {
        url: input.clone(),
        decode: cam.decode,
        detect_every_seconds: cam.detect_every_seconds,
        pace: 0.0,
        start_time: Some(start),
        reconnect: false,
        repeat: false,
    };
    let mut messages = Vec::new();
    let mut frames = 0u64;
    let mut last_time = None;
    let mut failure = None;
    {
        let mut emit = |m: EventMessage| {
            if let Some((tx, ..)) = &publisher {
                let _ = tx.send(Outbound::Event(m.clone()));
            }
            messages.push(m);
        };
        let stop = AtomicBool::new(false);
        let mut on_frame = |f: source::Frame| {
            frames += 1;
            last_time = Some(f.time);
            match pipeline.process(&f) {
                Ok(o) => o.messages.into_iter().for_each(&mut emit),
                Err(e) => failure = Some(e.to_string()),
            }
        };
        source::run_feed(&feed, &stop, &mut |_| {}, &mut on_frame)?;
        if let Some(t) = last_time {
            pipeline
                .finish(t, EndReason::StreamEnded)
                .into_iter()
                .for_each(&mut emit);
        }
    }
    if let Some(f) = failure {
        return Err(anyhow!("replay of {input} failed: {f}"));
    }
    for m in &messages {
        serde_json::to_writer(&mut out, m)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let delivered = publisher.map(|(tx, delivery, task)| {
        rt.block_on(async move {
            let ok = delivery.wait_acked(Duration::from_secs(20)).await;
            drop(tx);
            let _ = task.await;
            ok
        })
    });
    Ok(ReplaySummary {
        messages,
        frames,
        delivered,
    })
}

/// The clip's `creation_time` tag, else its modification time: stable across replays of one file.
fn clip_start_time(path: &Path) -> Result<DateTime<Utc>> {
    let dec = source::VideoDecoder::open(&path.display().to_string(), Default::default())?;
    if let Some(t) = dec
        .creation_time()
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
    {
        return Ok(t.with_timezone(&Utc));
    }
    let modified = std::fs::metadata(path)?.modified()?;
    Ok(DateTime::<Utc>::from(modified))
}

/// `streetwatch demo`: renders the sample clip from real photos, runs it as a camera through
/// the daemon's path with an embedded broker, and prints each event as a subscriber receives it.
pub fn demo(config: &Path, scenario: &Path, clip: &Path) -> Result<()> {
    let sc = crate::compose::load_scenario(scenario)?;
    println!(
        "demo: rendering {} from real street photos ...",
        clip.display()
    );
    if let Some(d) = clip.parent() {
        std::fs::create_dir_all(d)?;
    }
    crate::compose::render(&sc, clip)?;
    let mut loaded = crate::config::load(config).map_err(|e| anyhow!("{e}"))?;
    // The demo camera watches the clip just rendered, wherever it was asked to go.
    let cam = loaded
        .config
        .cameras
        .first_mut()
        .ok_or_else(|| anyhow!("{}: the demo config has no camera", config.display()))?;
    cam.url = clip.display().to_string();
    cam.repeat = false;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (tx, delivery, publisher) = start_mqtt(&loaded)?;
        let received = subscribe_and_print(&loaded).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let handles = spawn_cameras(&loaded, &tx, &StatsBoard::default(), &stop);
        for h in handles {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        delivery.wait_acked(Duration::from_secs(10)).await;
        drop(tx);
        let _ = publisher.await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = received.load(Ordering::SeqCst);
        println!(
            "demo: {n} event message(s) received over MQTT; evidence photos are in {}",
            loaded.storage_dir().join("evidence").display()
        );
        if n == 0 {
            return Err(anyhow!("demo: no event was received"));
        }
        Ok(())
    })
}

/// Subscribes to every event topic and prints what arrives; returns the running count.
async fn subscribe_and_print(loaded: &LoadedConfig) -> Result<Arc<std::sync::atomic::AtomicU64>> {
    let addr = mqtt::BrokerAddress::parse(&loaded.config.mqtt.url)?;
    let topics = mqtt::Topics::new(&loaded.config.mqtt.topic_prefix, &loaded.config.node.id);
    let mut opts = rumqttc::MqttOptions::new("streetwatch-demo-viewer", addr.host, addr.port);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 64);
    client
        .subscribe(topics.all_events(), rumqttc::QoS::AtLeastOnce)
        .await?;
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let c = count.clone();
    tokio::spawn(async move {
        let _client = client;
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    c.fetch_add(1, Ordering::SeqCst);
                    print_event(&p.topic, &p.payload);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .map_err(|_| anyhow!("demo: the viewer could not subscribe to the broker"))??;
    Ok(count)
}

fn print_event(topic: &str, payload: &[u8]) {
    let Ok(m) = serde_json::from_slice::<EventMessage>(payload) else {
        println!("[{topic}] {}", String::from_utf8_lossy(payload));
        return;
    };
    let phase = wire_name(&m.phase);
    println!(
        "{topic}\n  {phase} #{} {} {} {} | {} ({}) / {} ({}) | {} / {}",
        m.seq,
        m.kind,
        m.category.code,
        m.category.name,
        m.camera.id,
        m.camera.name,
        m.zone.id,
        m.zone.name,
        m.zone.grid,
        m.zone.responsible_unit,
    );
    println!(
        "  {} {:.2} at {:?} | since {} | dwell {:.0} s{}",
        m.object.label,
        m.object.score,
        m.object.bbox,
        m.start_time,
        m.dwell_seconds,
        match (&m.end_time, m.end_reason) {
            (Some(t), Some(r)) => format!(" | ended {t} ({})", wire_name(&r)),
            _ => String::new(),
        }
    );
    for e in &m.evidence {
        println!("  evidence {}: {}", wire_name(&e.kind), e.path);
    }
}

/// The name a value has in the JSON message (`new`, `object_left`, ...).
fn wire_name(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
