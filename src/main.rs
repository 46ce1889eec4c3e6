//! The `streetwatch` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use streetwatch::{app, compose, config};

/// Watches street cameras and reports illegal parking to the command center over MQTT.
#[derive(Parser, Debug)]
#[command(name = "streetwatch", version, about)]
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
    /// Render a scenario file into a clip and its ground truth (for tests and trials).
    Compose {
        /// Scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// Output clip (.mp4); the truth goes next to it as .truth.json.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its events itself; its log shows only problems unless RUST_LOG asks.
    let default_filter = match cli.command {
        Command::Demo { .. } => "warn,rumqttd=off",
        _ => "info,ort=warn,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
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
                },
            )?;
            eprintln!(
                "replay: {} frames, {} messages written to {}{}",
                summary.frames,
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
