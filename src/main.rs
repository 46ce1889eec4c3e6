//! The `streetwatch` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use streetwatch::{app, compose, config, models};

/// The version with the commit it was built from, e.g. `0.1.0 (git 9b29d5b0a1c2)`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("STREETWATCH_GIT_ID"),
    ")"
);

/// Watches street cameras and reports illegal parking to the command center over MQTT.
#[derive(Parser, Debug)]
#[command(name = "streetwatch", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Run {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config: exit 0, or 2 with FILE:LINE:COL: message lines.
    Check {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a clip as one camera on video time and write every event message.
    Replay {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
        /// Camera id whose zones apply.
        #[arg(long)]
        camera: String,
        /// The clip.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the messages, one JSON per line.
        #[arg(long)]
        events_out: PathBuf,
        /// Time of the clip's first frame (RFC 3339); default: the clip's creation_time tag, else its file time.
        #[arg(long)]
        start_time: Option<String>,
        /// Do not publish to the config's MQTT broker.
        #[arg(long)]
        no_mqtt: bool,
        /// Play the clip this many times back to back, stream time continuing (for dwells
        /// longer than the clip).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        plays: u32,
    },
    /// Replay clips and scenarios with their ground truth; print expected, found, false and
    /// missed events, start error and false events per camera-hour. Exit 1 if a case fails.
    Eval {
        /// Case files, or folders of them.
        #[arg(default_value = "configs/eval")]
        cases: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: EvalFormat,
        /// Where each case's clip, config, events and evidence go.
        #[arg(long, default_value = "out/eval")]
        out_dir: PathBuf,
        /// Cases run at the same time (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Render the sample clip from real street photos and run it through the whole pipeline with an embedded broker.
    Demo {
        /// Demo config.
        #[arg(long, default_value = "configs/demo.toml")]
        config: PathBuf,
        /// Scenario the clip is rendered from.
        #[arg(long, default_value = "configs/scenarios/demo-parking.toml")]
        scenario: PathBuf,
        /// Where the rendered clip goes.
        #[arg(long, default_value = "out/demo/demo-parking.mp4")]
        clip: PathBuf,
    },
    /// Try a model on a picture or a clip and print what it finds.
    Detect {
        /// Model manifest name (see `streetwatch models list`).
        #[arg(long)]
        model: String,
        /// A picture (jpg, png, ...) or a clip (mp4, ...).
        #[arg(long)]
        input: PathBuf,
        /// For clips: seconds between tried frames.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
        /// Only show detections at or above this score (default: the manifest's thresholds).
        #[arg(long)]
        min_score: Option<f32>,
        /// Print one JSON object per frame.
        #[arg(long)]
        json: bool,
        /// Write the picture with the boxes drawn (clips: one file per frame, named with its time).
        #[arg(long)]
        annotate: Option<PathBuf>,
        /// ONNX Runtime threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Execution provider to try (cpu, cuda, tensorrt, openvino); repeat for a fallback order.
        #[arg(long = "provider", value_parser = parse_provider)]
        providers: Vec<streetwatch::detector::Provider>,
        /// Folder of model manifests.
        #[arg(long)]
        models_dir: Option<PathBuf>,
    },
    /// Model manifests and their weights: list, verify, fetch.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
        /// Folder of model manifests.
        #[arg(long, global = true)]
        models_dir: Option<PathBuf>,
    },
    /// Console accounts: add, list, remove, passwd, token.
    User {
        /// Config file (for the storage folder holding the ledger), before the action.
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: streetwatch::users::UserAction,
    },
    /// Rollups from the ledger: counts, dwell, relapses, hotspots, busy hours.
    Report(ReportArgs),
    /// The cluster of nodes sharing the cameras through etcd (`[cluster]`).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Render a scenario file into a clip and its ground truth (for tests and trials).
    Compose {
        /// Scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// Output clip (.mp4); the truth goes next to it as .truth.json.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a shell completion script, e.g. `streetwatch completions bash > /etc/bash_completion.d/streetwatch`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (streetwatch.1 and one per subcommand) into a folder.
    #[command(hide = true)]
    Manpages {
        /// Output folder.
        out_dir: PathBuf,
    },
}

/// Formats of `report`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    /// Aligned text.
    Table,
    /// The groups as CSV.
    Csv,
    /// Everything as JSON.
    Json,
    /// One self-contained page with charts, thumbnails and the relapse list.
    Html,
}

/// Formats of `eval`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EvalFormat {
    /// Aligned text, then what went wrong in each failed case.
    Table,
    /// Everything, every matched, false and missed event.
    Json,
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// The live nodes (lease, capacity, cameras) and which node runs which camera.
    Status {
        /// A config with a [cluster] table (any node's).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store the city's cameras and zones (the [[cameras]] of a config, checked first) in
    /// etcd; every node then runs with them instead of its own file's, and follows changes.
    /// The cameras in etcd become exactly the file's: cameras it lacks are removed.
    Import {
        /// The city's config, with a [cluster] table and its [[cameras]].
        #[arg(long)]
        config: PathBuf,
        /// Say what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a config with the city's cameras and zones from etcd (edits from the console's
    /// zone editor included): the given config's other sections, then the cameras.
    Export {
        /// A config with a [cluster] table; its sections other than [[cameras]] are kept.
        #[arg(long)]
        config: PathBuf,
        /// The file to write (its previous version is kept as FILE.bak); default: print.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsAction {
    /// Every manifest with its layout, input size, weights state and license.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check checksums and load each model as the daemon would; exit 1 if any fails.
    Verify {
        /// Models to verify (default: all).
        names: Vec<String>,
    },
    /// Put the weights into the cache (.cache/assets in a checkout, /var/lib/streetwatch/assets
    /// when installed) from --from, $STREETWATCH_ASSETS or the manifest's urls.
    Fetch {
        /// Models to fetch (default: all).
        names: Vec<String>,
        /// A folder holding the weights (by file name, or by the manifest's path); nothing is
        /// downloaded then.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
}

fn parse_provider(s: &str) -> Result<streetwatch::detector::Provider, String> {
    serde_json::from_value(serde_json::Value::String(s.to_lowercase()))
        .map_err(|_| format!("unknown provider {s:?}: use cpu, cuda, tensorrt or openvino"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its events itself; its log shows only problems unless RUST_LOG asks.
    let default_filter = match cli.command {
        Command::Demo { .. } => "warn,ort=error,rumqttd=off",
        _ => "info,ort=error,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a config or prints its errors; `Err(code)` is the exit code for a bad config.
fn load_config(path: &std::path::Path) -> Result<config::LoadedConfig, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check { config } => Ok(match load_config(&config) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({} camera(s), {} zone(s))",
                    config.display(),
                    loaded.config.cameras.len(),
                    loaded
                        .config
                        .cameras
                        .iter()
                        .map(|c| c.zones.len())
                        .sum::<usize>()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        }),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "streetwatch", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { out_dir } => {
            use clap::CommandFactory;
            write_manpages(&Cli::command(), &out_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User { config, action } => match load_config(&config) {
            Ok(loaded) => {
                streetwatch::users::run(&loaded.storage_dir(), action).map(|_| ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::Cluster { action } => {
            let config = match &action {
                ClusterAction::Status { config, .. }
                | ClusterAction::Import { config, .. }
                | ClusterAction::Export { config, .. } => config,
            };
            let loaded = match load_config(config) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let Some(cfg) = loaded.config.cluster.clone() else {
                return Err(anyhow!(
                    "{} has no [cluster] table: this node runs alone (add [cluster] etcd = [...] to share cameras)",
                    loaded.path.display()
                ));
            };
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let etcd = || format!("etcd {:?}", cfg.etcd);
            match action {
                ClusterAction::Status { json, .. } => {
                    let (_, city) = rt
                        .block_on(streetwatch::cluster::read_catalog(&cfg))
                        .with_context(|| format!("cannot read the cluster from {}", etcd()))?;
                    // The cameras in force: the city's in etcd, else this file's.
                    let cameras = match city.is_empty() {
                        true => loaded.enabled_cameras(),
                        false => config::city::with_cameras(&loaded.path, &city)
                            .map(|l| l.enabled_cameras())
                            .unwrap_or_else(|_| city.iter().map(|c| c.id.clone()).collect()),
                    };
                    let status = rt
                        .block_on(streetwatch::cluster::status(&cfg, &cameras))
                        .with_context(|| format!("cannot read the cluster from {}", etcd()))?;
                    print_cluster_status(&status, (!city.is_empty()).then_some(city.len()), json)
                }
                ClusterAction::Import { dry_run, .. } => {
                    cluster_import(&rt, &loaded, &cfg, dry_run)
                }
                ClusterAction::Export { out, .. } => {
                    let (revision, city) = rt
                        .block_on(streetwatch::cluster::read_catalog(&cfg))
                        .with_context(|| {
                            format!("cannot read the city's cameras from {}", etcd())
                        })?;
                    cluster_export(&loaded, &cfg, revision, &city, out.as_deref())
                }
            }
        }
        Command::Run { config } => match load_config(&config) {
            Ok(loaded) => app::run(loaded).map(|_| ExitCode::SUCCESS),
            Err(code) => Ok(code),
        },
        Command::Replay {
            config,
            camera,
            input,
            events_out,
            start_time,
            no_mqtt,
            plays,
        } => {
            let loaded = match load_config(&config) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let start_time = start_time
                .map(|s| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| anyhow!("--start-time {s:?}: {e}; use RFC 3339, e.g. 2026-11-22T09:00:00+08:00"))
                })
                .transpose()?;
            let summary = app::replay(
                &loaded,
                &app::ReplayOptions {
                    camera,
                    input,
                    events_out: events_out.clone(),
                    start_time,
                    publish: !no_mqtt,
                    plays,
                    progress: true,
                },
            )?;
            eprintln!(
                "replay: {} frames (the model ran on {}), {} messages written to {}{}",
                summary.frames,
                summary.inferences,
                summary.messages.len(),
                events_out.display(),
                match summary.delivered {
                    Some(true) => ", all acknowledged by the broker",
                    Some(false) => ", NOT all acknowledged by the broker (is it running?)",
                    None => "",
                }
            );
            Ok(if summary.delivered == Some(false) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Demo {
            config,
            scenario,
            clip,
        } => app::demo(&config, &scenario, &clip).map(|_| ExitCode::SUCCESS),
        Command::Detect {
            model,
            input,
            every,
            min_score,
            json,
            annotate,
            threads,
            providers,
            models_dir,
        } => {
            if !(every.is_finite() && every > 0.0) {
                return Err(anyhow!(
                    "--every {every}: must be a positive number of seconds"
                ));
            }
            streetwatch::trial::run(&streetwatch::trial::TrialOptions {
                model,
                models_dir: models_dir.unwrap_or_else(streetwatch::assets::default_models_dir),
                input,
                every_seconds: every,
                min_score,
                json,
                annotate,
                runtime: streetwatch::detector::RuntimeOptions {
                    threads,
                    sessions: 1,
                    batch_size: 1,
                    batch_wait: std::time::Duration::ZERO,
                    providers: if providers.is_empty() {
                        vec![streetwatch::detector::Provider::Cpu]
                    } else {
                        providers
                    },
                },
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { action, models_dir } => {
            let dir = models_dir.unwrap_or_else(streetwatch::assets::default_models_dir);
            let (lines, ok) = match action {
                ModelsAction::List { json } => {
                    let entries = models::list(&dir);
                    if json {
                        println!("{}", serde_json::to_string_pretty(&entries)?);
                    } else {
                        println!(
                            "{:<22} {:<10} {:<9} {:<18} license",
                            "model", "layout", "input", "weights"
                        );
                        for e in &entries {
                            let state = serde_json::to_value(&e.state)?;
                            println!(
                                "{:<22} {:<10} {:<9} {:<18} {}",
                                e.name,
                                e.layout,
                                format!("{}x{}", e.input[0], e.input[1]),
                                e.error
                                    .as_ref()
                                    .map_or(state.as_str().unwrap_or_default(), |_| {
                                        "manifest error"
                                    }),
                                e.error.as_deref().unwrap_or(&e.license)
                            );
                        }
                    }
                    (Vec::new(), true)
                }
                ModelsAction::Verify { names } => models::verify(&dir, &names),
                ModelsAction::Fetch { names, from } => models::fetch(&dir, &names, from.as_deref()),
            };
            lines.iter().for_each(|l| println!("{l}"));
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Report(args) => report(args),
        Command::Eval {
            cases,
            format,
            out_dir,
            jobs,
        } => {
            use streetwatch::eval;
            let cases = eval::case_files(&cases)?
                .iter()
                .map(|f| eval::load_case(f))
                .collect::<Result<Vec<_>>>()?;
            if cases.is_empty() {
                return Err(anyhow!("no eval cases found"));
            }
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let r = eval::run_all(&cases, &out_dir, jobs)?;
            match format {
                EvalFormat::Table => print!("{}", eval::render_table(&r)),
                EvalFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
            }
            Ok(if r.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Compose { scenario, out } => {
            let sc = compose::load_scenario(&scenario)?;
            let truth = compose::render(&sc, &out)
                .with_context(|| format!("rendering {}", scenario.display()))?;
            println!(
                "{}: {} frames at {} fps",
                out.display(),
                truth.frame_count,
                truth.fps
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Arguments of `report`.
#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// Config file (for the storage folder and the time zone).
    #[arg(long, required_unless_present = "ledger")]
    config: Option<PathBuf>,
    /// A ledger file, instead of the one in the config's storage folder; or the city ledger,
    /// `postgres://USER@HOST:5432/DB` (password: the config's [cluster] ledger_password_*, else
    /// $PGPASSWORD), for the whole city.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Events that started at or after this: 7d, 24h, 90m (before now), 2026-11-01 (local midnight) or RFC 3339.
    #[arg(long, default_value = "7d")]
    since: String,
    /// Events that started before this (same forms); default: now.
    #[arg(long)]
    until: Option<String>,
    /// Rows of the report.
    #[arg(long, value_enum, default_value = "grid")]
    by: streetwatch::report::GroupBy,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// How many hotspots to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Time zone for dates and hours (IANA name); default: the config's node time zone.
    #[arg(long)]
    time_zone: Option<String>,
}

fn report(a: ReportArgs) -> Result<ExitCode> {
    use streetwatch::report;
    let loaded = match &a.config {
        Some(c) => match load_config(c) {
            Ok(l) => Some(l),
            Err(code) => return Ok(code),
        },
        None => None,
    };
    let zone_name = a
        .time_zone
        .clone()
        .or_else(|| loaded.as_ref().map(|l| l.config.node.time_zone.clone()))
        .unwrap_or_else(|| "Asia/Shanghai".into());
    let tz: chrono_tz::Tz = zone_name.parse().map_err(|_| {
        anyhow!("--time-zone {zone_name:?}: not an IANA time zone (e.g. Asia/Shanghai)")
    })?;
    let now = Utc::now();
    let since = report::parse_instant("--since", &a.since, now, tz)?;
    let until = match &a.until {
        Some(u) => report::parse_instant("--until", u, now, tz)?,
        None => now,
    };
    if until <= since {
        return Err(anyhow!("--until must be after --since"));
    }
    let city_url = a
        .ledger
        .as_ref()
        .and_then(|l| l.to_str())
        .filter(|l| l.starts_with("postgres://") || l.starts_with("postgresql://"));
    // The city ledger is copied into a local ledger first: the report reads it like a node's.
    let mirror_dir =
        std::env::temp_dir().join(format!("streetwatch-report-{}", std::process::id()));
    let ledger_file = match (city_url, &a.ledger, &loaded) {
        (Some(url), _, _) => {
            let configured = loaded
                .as_ref()
                .and_then(|l| l.config.cluster.as_ref().map(|c| (l, c)));
            let password = match configured {
                Some((l, c)) => streetwatch::city::password(l, c)?,
                None => None,
            }
            .or_else(|| std::env::var("PGPASSWORD").ok());
            let address = streetwatch::city::CityAddress::new(url, password);
            let _ = std::fs::remove_dir_all(&mirror_dir);
            streetwatch::city::mirror(&address, &mirror_dir, since, until)?
        }
        (None, Some(f), _) => f.clone(),
        (None, None, Some(l)) => l.storage_dir().join("ledger.sqlite"),
        (None, None, None) => return Err(anyhow!("give --config or --ledger")),
    };
    if !ledger_file.is_file() {
        return Err(anyhow!(
            "{}: no ledger there yet (it is made when the daemon or a replay first runs)",
            ledger_file.display()
        ));
    }
    let ledger = streetwatch::ledger::Ledger::open_file(&ledger_file)?;
    let incidents = ledger.incidents_between(since, until)?;
    // The review changes of the same events, whenever they were made.
    let reviews = ledger.reviews_of_events_between(since, until)?;
    drop(ledger);
    let _ = std::fs::remove_dir_all(&mirror_dir);
    let r = report::build(
        &incidents,
        &reviews,
        &report::ReportOptions {
            since,
            until,
            by: a.by,
            tz,
            top: a.top,
        },
    );
    let text = match a.format {
        ReportFormat::Table => report::render_table(&r),
        ReportFormat::Csv => report::render_csv(&r),
        ReportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
        ReportFormat::Html => report::render_html(&r).map_err(|e| anyhow!(e))?,
    };
    match &a.out {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "report: {} event(s) from {} to {} written to {}",
                r.totals.count,
                r.since,
                r.until,
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `streetwatch.1` and a page per visible subcommand (`streetwatch-models-fetch.1`, ...).
fn write_manpages(cmd: &clap::Command, out_dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut pages = vec![cmd.clone()];
    let mut at = 0;
    // Breadth-first through the subcommands: each page is named by its path
    // ("streetwatch-models-fetch", as `man` finds it) and its SYNOPSIS reads as one types it.
    while at < pages.len() {
        let page = pages[at].clone();
        let typed = page.get_bin_name().unwrap_or(page.get_name()).to_string();
        for sub in page.get_subcommands().filter(|c| !c.is_hide_set()) {
            let name = format!("{}-{}", page.get_name(), sub.get_name());
            let bin_name = format!("{typed} {}", sub.get_name());
            pages.push(sub.clone().name(name).bin_name(bin_name));
        }
        at += 1;
    }
    for page in pages {
        let file = out_dir.join(format!("{}.1", page.get_name()));
        let mut text = Vec::new();
        clap_mangen::Man::new(page.version(VERSION))
            .render(&mut text)
            .with_context(|| format!("cannot render {}", file.display()))?;
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

/// `cluster import`: the config's cameras, checked, become the city's cameras in etcd.
fn cluster_import(
    rt: &tokio::runtime::Runtime,
    loaded: &config::LoadedConfig,
    cfg: &config::ClusterConfig,
    dry_run: bool,
) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&loaded.path)
        .with_context(|| format!("cannot read {}", loaded.path.display()))?;
    let cameras = config::city::split_cameras(&loaded.path, &text)?;
    if cameras.is_empty() {
        return Err(anyhow!(
            "{} has no [[cameras]]: importing it would remove every camera from the cluster; nothing was changed",
            loaded.path.display()
        ));
    }
    // Each node resolves a relative path against its own config's folder, not this file's.
    for cam in &loaded.config.cameras {
        for url in std::iter::once(&cam.url).chain(cam.detect_url.iter()) {
            if !url.contains("://") && !std::path::Path::new(url).is_absolute() {
                eprintln!(
                    "warning: camera {}: {url:?} is a relative path; each node reads it from its own config's folder",
                    cam.id
                );
            }
        }
    }
    let summary = if dry_run {
        let (_, stored) = rt
            .block_on(streetwatch::cluster::read_catalog(cfg))
            .with_context(|| format!("cannot read the city's cameras from etcd {:?}", cfg.etcd))?;
        streetwatch::cluster::ImportSummary::between(&stored, &cameras)
    } else {
        rt.block_on(streetwatch::cluster::import(cfg, &cameras))
            .with_context(|| format!("cannot store the cameras in etcd {:?}", cfg.etcd))?
    };
    for (what, ids) in [
        ("added", &summary.added),
        ("changed", &summary.changed),
        ("removed", &summary.removed),
    ] {
        if !ids.is_empty() {
            let would = if dry_run { "would be " } else { "" };
            println!("{would}{what}: {}", ids.join(", "));
        }
    }
    println!(
        "{} camera(s) in etcd under {}config/cameras/ ({} unchanged){}",
        cameras.len(),
        cfg.key_prefix,
        summary.unchanged.len(),
        if dry_run {
            "; nothing was changed (--dry-run)"
        } else {
            "; the nodes apply them within a few seconds"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `cluster export`: the config's other sections with the city's cameras from etcd.
fn cluster_export(
    loaded: &config::LoadedConfig,
    cfg: &config::ClusterConfig,
    revision: i64,
    city: &[config::city::CameraText],
    out: Option<&std::path::Path>,
) -> Result<ExitCode> {
    if city.is_empty() {
        return Err(anyhow!(
            "no cameras in etcd under {}config/cameras/: store them first with `streetwatch cluster import --config CITY.toml`",
            cfg.key_prefix
        ));
    }
    let text = std::fs::read_to_string(&loaded.path)
        .with_context(|| format!("cannot read {}", loaded.path.display()))?;
    let joined = config::city::join_cameras(&loaded.path, &text, city)?;
    // What is written must load as it is.
    config::parse(&loaded.path, &joined).map_err(|e| {
        anyhow!(
            "the cameras in etcd do not pass the checks with {}:\n{e}",
            loaded.path.display()
        )
    })?;
    match out {
        None => print!("{joined}"),
        Some(path) => {
            let old = std::fs::read_to_string(path).ok();
            let backup =
                config::write_atomically(path, old.as_deref(), &joined).map_err(|e| anyhow!(e))?;
            eprintln!(
                "{}: {} camera(s) from etcd (revision {revision}){}",
                path.display(),
                city.len(),
                backup.map_or(String::new(), |b| format!(
                    "; previous version in {}",
                    b.display()
                ))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cluster status`: nodes, leases and owners as etcd has them; `from_etcd`: how many cameras
/// the city keeps in etcd (None: each node's file).
fn print_cluster_status(
    status: &streetwatch::cluster::ClusterStatus,
    from_etcd: Option<usize>,
    json: bool,
) -> Result<ExitCode> {
    if json {
        let mut value = serde_json::to_value(status)?;
        value["cameras_from"] =
            serde_json::json!(if from_etcd.is_some() { "etcd" } else { "file" });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    match from_etcd {
        Some(n) => println!("cameras and zones: {n} in etcd (cluster import / export)\n"),
        None => println!("cameras and zones: each node's config file\n"),
    }
    println!(
        "{:<20} {:>8} {:>9} {:>8}  console",
        "node", "lease", "ttl left", "cameras"
    );
    for n in &status.nodes {
        println!(
            "{:<20} {:>8} {:>8}s {:>4}/{:<3}  {}",
            n.record.node,
            n.lease,
            n.lease_ttl_left,
            n.cameras.len(),
            n.record.capacity,
            n.record.console.as_deref().unwrap_or("-")
        );
    }
    println!();
    println!("{:<28} {:<20} {:>8}  since", "camera", "node", "epoch");
    for (camera, o) in &status.owners {
        println!("{camera:<28} {:<20} {:>8}  {}", o.node, o.epoch, o.since);
    }
    for camera in &status.unowned {
        println!("{camera:<28} {:<20} {:>8}  -", "(no node)", "-");
    }
    Ok(ExitCode::SUCCESS)
}
