//! The commands: `run` (the daemon), `replay` (a clip as a camera, on video time) and `demo`.
//! `run` and `demo` run their cameras through the supervisor's camera worker, and `replay` runs
//! the same pipeline, so the demo and replays exercise the daemon's own path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;

use crate::cluster;
use crate::config::LoadedConfig;
use crate::console::{self, Console, ConsoleRequest};
use crate::detector::Detector;
use crate::event::EventMessage;
use crate::incidents::EndReason;
use crate::live::LiveView;
use crate::mqtt::{self, Outbound};
use crate::pipeline::CameraPipeline;
use crate::source::{self, FeedOptions};
use crate::stats::StatsBoard;
use crate::supervisor::Supervisor;

/// The daemon: every enabled camera in its own thread, until Ctrl-C / SIGTERM; commands from
/// the command center (zone switches, reload) and the console (saved zones) are applied as they
/// arrive.
pub fn run(loaded: LoadedConfig) -> Result<()> {
    crate::host::raise_open_files(loaded.config.cameras.len());
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = shutdown_signal();
        start_embedded_broker(&loaded)?;
        let mut link = mqtt::start_link(&loaded)?;
        let stats = StatsBoard::default();
        // Frames are kept for the console only.
        let live = LiveView::new(loaded.config.http.is_some());
        let stop = Arc::new(AtomicBool::new(false));
        let (console_tx, mut console_rx) = tokio::sync::mpsc::unbounded_channel();
        let (console_stop, console_stopped) = tokio::sync::oneshot::channel::<()>();
        let console = match &loaded.config.http {
            Some(http) => {
                let c = Arc::new(Console::new(
                    &loaded,
                    http,
                    live.clone(),
                    stats.clone(),
                    link.delivery.clone(),
                    console_tx,
                )?);
                let stopped = async move {
                    let _ = console_stopped.await;
                };
                let task = console::serve(c.clone(), &loaded, http, stopped).await?;
                Some((c, task))
            }
            None => None,
        };
        let member = loaded.config.cluster.as_ref().map(|c| {
            let me = cluster::Identity {
                node: loaded.config.node.id.clone(),
                console: loaded.config.http.as_ref().map(|h| h.listen.clone()),
            };
            let city = crate::city::CityAddress::of(&loaded, c)?;
            // Recurrence looks 30 days back, relapse as far as its window.
            let window = loaded
                .config
                .incidents
                .relapse_window_seconds
                .max(30.0 * 86_400.0);
            let window = chrono::Duration::seconds(window as i64);
            anyhow::Ok(cluster::join(
                c,
                me,
                loaded.path.clone(),
                loaded.enabled_cameras(),
                city,
                window,
            ))
        });
        let member = member.transpose()?;
        let custody = member
            .as_ref()
            .map(|m| m.custody.clone() as Arc<dyn crate::domain::custody::Custody>);
        if let (Some(m), Some((c, _)), Some(cfg)) = (&member, &console, &loaded.config.cluster) {
            let _ = c.cluster.set(m.view.clone());
            let catalog = cluster::Catalog::new(&cfg.key_prefix, m.custody.clone(), m.view.clone());
            let _ = c.catalog.set(Arc::new(catalog));
        }
        let (mut orders, member) = match member {
            Some(m) => {
                let cluster::Member {
                    orders,
                    custody,
                    view,
                    cameras,
                    task,
                } = m;
                (Some(orders), Some((custody, view, cameras, task)))
            }
            None => (None, None),
        };
        let mut cameras = Supervisor::start(
            loaded.clone(),
            link.tx.clone(),
            stats.clone(),
            live,
            custody,
        );
        let retention = spawn_retention(&loaded, &stop);
        // The city ledger's shipper stops after the cameras, so their last messages go too.
        let shipping_stop = Arc::new(AtomicBool::new(false));
        let shipper = match &loaded.config.cluster {
            Some(c) => crate::city::CityAddress::of(&loaded, c)?.and_then(|address| {
                crate::city::spawn_shipper(
                    address,
                    loaded.storage_dir(),
                    loaded.config.node.id.clone(),
                    shipping_stop.clone(),
                )
            }),
            None => None,
        };
        let trim_task = tokio::spawn(async {
            let mut tick = tokio::time::interval(crate::host::RELEASE_FREE_MEMORY_EVERY);
            loop {
                tick.tick().await;
                let _ = tokio::task::spawn_blocking(crate::host::release_free_memory).await;
            }
        });
        let stats_task = tokio::spawn(publish_stats(
            stats,
            link.tx.clone(),
            loaded.config.mqtt.stats_every_seconds,
            loaded.config.node.id.clone(),
        ));
        tokio::pin!(shutdown);
        // The console shows the config in force, after whatever changed it.
        let show = |cameras: &Supervisor| {
            if let Some((c, _)) = &console {
                if let Ok(mut shown) = c.config.write() {
                    *shown = cameras.config().clone();
                }
            }
        };
        // The cluster's camera list follows reloads.
        let follow = |cameras: &Supervisor| {
            if let Some((_, _, list, _)) = &member {
                if let Ok(mut l) = list.lock() {
                    *l = cameras.enabled_cameras();
                }
            }
        };
        loop {
            // A reload may wait for a camera thread to stop: off the async workers.
            tokio::select! {
                _ = &mut shutdown => break,
                Some(order) = next_order(&mut orders) => {
                    tokio::task::block_in_place(|| match order {
                        cluster::Order::Take { camera, held, history } => {
                            cameras.take(&camera, held, history)
                        }
                        cluster::Order::HandOver { camera, done } => {
                            cameras.let_go(&camera);
                            let _ = done.send(());
                        }
                        cluster::Order::Drop { camera } => cameras.let_go(&camera),
                        cluster::Order::Configure { config, cameras: city } => {
                            let s = cameras.configure(*config, city);
                            tracing::info!(
                                "config from the cluster applied: updated {:?}, stopped {:?}, reconnected {:?}",
                                s.updated,
                                s.stopped,
                                s.restarted
                            );
                        }
                    });
                    show(&cameras);
                }
                Some(command) = link.commands.recv() => {
                    if matches!(command, mqtt::Command::Reload) {
                        link.reload_queued.store(false, Ordering::SeqCst);
                    }
                    tokio::task::block_in_place(|| cameras.command(command));
                    show(&cameras);
                    follow(&cameras);
                }
                Some(request) = console_rx.recv() => match request {
                    ConsoleRequest::Reload(reply) => {
                        let result = tokio::task::block_in_place(|| cameras.reload());
                        show(&cameras);
                        follow(&cameras);
                        let _ = reply.send(result);
                    }
                    ConsoleRequest::Review { event_id, request, actor, photo, reply } => {
                        let result = tokio::task::block_in_place(|| {
                            cameras.review(&event_id, &request, &actor, photo)
                        });
                        let _ = reply.send(result);
                    }
                    ConsoleRequest::Unsuppress { id, reply } => {
                        let _ = reply.send(tokio::task::block_in_place(|| cameras.unsuppress(id)));
                    }
                },
            }
        }
        tracing::info!("shutting down");
        stats_task.abort();
        trim_task.abort();
        let _ = console_stop.send(());
        if let Some((_, task)) = console {
            let _ = task.await;
        }
        stop.store(true, Ordering::Relaxed);
        if let Some((custody, view, _, task)) = member {
            // In a cluster a stopping node hands its cameras over: their events stay open and
            // its lease is revoked, so the other nodes take them at once and carry them on.
            task.abort();
            tokio::task::block_in_place(|| {
                for camera in cameras.running_cameras() {
                    cameras.let_go(&camera);
                }
            });
            cluster::leave(&custody, &view).await;
        }
        for h in cameras.shutdown().into_iter().chain(retention) {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        shipping_stop.store(true, Ordering::Relaxed);
        if let Some(h) = shipper {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        drop(link.tx);
        let _ = link.task.await;
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

/// Takes over SIGTERM and SIGINT now and returns what resolves on either. Called first: a stop
/// that arrives while the console or the cameras start must shut down cleanly, not kill the
/// process with events open (tokio registers a handler only when it is created).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                (Err(_), Err(_)) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts the in-process broker when the config asks for one (`mqtt.embedded`).
fn start_embedded_broker(loaded: &LoadedConfig) -> Result<()> {
    let cfg = &loaded.config.mqtt;
    if !cfg.embedded {
        return Ok(());
    }
    let addr = mqtt::BrokerAddress::parse(&cfg.url)?;
    let password = mqtt::password(loaded)?;
    let login = cfg.username.as_deref().zip(password.as_deref());
    mqtt::start_embedded_broker(&addr, login).map_err(|e| anyhow!(e))?;
    // Let the broker listen before the link's first attempt, so the log stays clean.
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
    Ok(())
}

/// The cluster's next order; never, outside a cluster.
async fn next_order(
    orders: &mut Option<tokio::sync::mpsc::UnboundedReceiver<cluster::Order>>,
) -> Option<cluster::Order> {
    match orders {
        Some(o) => o.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends the stats snapshot, with the node's id, every `every` seconds.
async fn publish_stats(stats: StatsBoard, tx: UnboundedSender<Outbound>, every: f64, node: String) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(every.max(0.5)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut snapshot = stats.snapshot();
        snapshot["node"] = serde_json::Value::String(node.clone());
        if tx.send(Outbound::Stats(snapshot)).is_err() {
            return;
        }
    }
}

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// Every message, in order.
    pub messages: Vec<EventMessage>,
    /// Sampled frames processed.
    pub frames: u64,
    /// Sampled frames the model ran on (fewer than `frames` with `full_detect_seconds`).
    pub inferences: u64,
    /// Whether every message was acknowledged by the broker (None when not publishing).
    pub delivered: Option<bool>,
    /// Seconds of video replayed: from the first frame to one detection interval past the last.
    pub video_seconds: f64,
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
    /// Times to play the clip back to back, stream time continuing (to judge dwells longer
    /// than the clip).
    pub plays: u32,
    /// Show how much of the clip is done on stderr (a bar on a terminal, else plain lines).
    pub progress: bool,
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
    let link = if opts.publish {
        let _guard = rt.enter();
        pipeline.queue_for_delivery();
        Some(mqtt::start_link(loaded)?)
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
        plays: Some(opts.plays.max(1)),
    };
    let progress = opts
        .progress
        .then(|| clip_seconds(&input))
        .flatten()
        .map(|s| {
            let total = (s * f64::from(opts.plays.max(1))).ceil() as u64;
            crate::progress::Progress::new("replay", total, crate::progress::Unit::VideoSeconds)
        });
    let mut messages = Vec::new();
    let mut frames = 0u64;
    let mut inferences = 0u64;
    let mut last_time = None;
    let mut failure = None;
    {
        let mut emit = |m: EventMessage| {
            if let Some(link) = &link {
                let _ = link.tx.send(Outbound::Event(m.clone()));
            }
            messages.push(m);
        };
        let stop = AtomicBool::new(false);
        let mut on_frame = |f: source::Frame| {
            frames += 1;
            last_time = Some(f.time);
            if let Some(p) = &progress {
                p.set((f.time - start).num_seconds().max(0) as u64);
            }
            match pipeline.process(&f) {
                Ok(o) => {
                    inferences += u64::from(o.inferred);
                    o.messages.into_iter().for_each(&mut emit)
                }
                Err(e) => failure = Some(e.to_string()),
            }
        };
        source::run_feed(&feed, &stop, &|| true, &mut |_| {}, &mut on_frame)?;
        if let Some(p) = &progress {
            p.set(u64::MAX);
            p.finish();
        }
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
    let delivered = link.map(|link| {
        rt.block_on(async move {
            let ok = link.delivery.wait_acked(Duration::from_secs(20)).await;
            drop(link.tx);
            let _ = link.task.await;
            ok
        })
    });
    let video_seconds = last_time.map_or(0.0, |t| {
        (t - start).num_milliseconds() as f64 / 1000.0 + cam.detect_every_seconds
    });
    Ok(ReplaySummary {
        messages,
        frames,
        inferences,
        delivered,
        video_seconds,
    })
}

/// The clip's length in seconds, when its container says.
fn clip_seconds(input: &str) -> Option<f64> {
    source::VideoDecoder::open(input, Default::default())
        .ok()?
        .duration_seconds()
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
        start_embedded_broker(&loaded)?;
        let link = mqtt::start_link(&loaded)?;
        let received = subscribe_and_print(&loaded).await?;
        let cameras = Supervisor::start(
            loaded.clone(),
            link.tx.clone(),
            StatsBoard::default(),
            LiveView::new(false),
            None,
        );
        // The demo camera is a file: its thread ends at the end of the clip.
        for h in cameras.into_threads() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        link.delivery.wait_acked(Duration::from_secs(10)).await;
        drop(link.tx);
        let _ = link.task.await;
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
    let phase = m.phase.as_str();
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
            (Some(t), Some(r)) => format!(" | ended {t} ({})", r.as_str()),
            _ => String::new(),
        }
    );
    for e in &m.evidence {
        println!("  evidence {}: {}", e.kind, e.path);
    }
}
