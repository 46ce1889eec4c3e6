//! Eval: replays clips with their ground truth and counts what the pipeline got right.
//!
//! An eval case (`configs/eval/*.toml`) names a clip (a real recording from the assets, or a
//! scenario the composer renders), the camera settings and zones to judge it with, and the
//! events it must produce. `streetwatch eval` replays each case through the daemon's own
//! pipeline, matches the events found with the expected ones (same zone and kind, overlapping
//! boxes) and reports per case and in total: expected, found, false, missed, the start-time
//! error and false events per camera-hour, the figure an operator's trust depends on.
//!
//! A case file:
//!
//! ```toml
//! [case]
//! description = "a residential street, cars parked on both curbs, traffic driving past"
//! clip = "video/real/cvtrafficcam_traffic.mp4"   # or: scenario = "../scenarios/x.toml"
//! plays = 1                                      # play the clip this many times back to back
//!
//! [incidents]                                    # any table of the daemon's config
//! end_after_seconds = 10
//!
//! [camera]                                       # the one camera, without id and url
//! detect_every_seconds = 1.0
//!   [[camera.zones]]
//!   id = "lane"
//!   kind = "no_parking"
//!   polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 0.6], [0.0, 0.6]]
//!   dwell_seconds = 20
//!
//! [[expect]]                                     # none: nothing may be reported
//! kind = "illegal_parking"
//! zone = "curb"
//! start = 0.0                                    # seconds from the start of the run
//! end = 75.0                                     # optional
//! bbox = [0.47, 0.62, 0.73, 0.85]                # optional: where the object is
//! what = "white sedan, parked throughout"
//! required = true                                # false: a miss is counted, not a failure
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::{self, ReplayOptions};
use crate::event::EventMessage;
use crate::geometry::BBox;
use crate::incidents::Phase;
use crate::progress::{Progress, Unit};

/// Start time of real clips unless a case says otherwise: a Monday at 09:00 in Shanghai,
/// inside the usual weekday schedules.
const DEFAULT_START: &str = "2026-11-23T09:00:00+08:00";

/// Camera id the generated config gives the case's camera.
const CAMERA_ID: &str = "eval-cam";

/// Where a case's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A recording (asset path such as `video/real/x.mp4`, or a path relative to the case file).
    Clip(String),
    /// A scenario file the composer renders (relative to the case file).
    Scenario(PathBuf),
}

impl Source {
    /// `real` for recordings, `composed` for rendered scenarios.
    pub fn class(&self) -> &'static str {
        match self {
            Source::Clip(_) => "real",
            Source::Scenario(_) => "composed",
        }
    }
}

/// The `[case]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseTable {
    #[serde(default)]
    description: String,
    clip: Option<String>,
    scenario: Option<PathBuf>,
    #[serde(default = "d_plays")]
    plays: u32,
    start_time: Option<DateTime<Utc>>,
    tolerance_seconds: Option<f64>,
    end_tolerance_seconds: Option<f64>,
}

fn d_plays() -> u32 {
    1
}

/// One event the case must produce.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Event kind, e.g. `illegal_parking`.
    pub kind: String,
    /// Zone id.
    pub zone: String,
    /// Seconds from the start of the run when the event's dwell starts (`start_time`).
    pub start: f64,
    /// Seconds from the start of the run when it ends (`end_time`), if the case checks it.
    pub end: Option<f64>,
    /// Normalized box of the object, to tell several events in one zone apart.
    pub bbox: Option<[f32; 4]>,
    /// What it is, for people reading the case and the report.
    #[serde(default)]
    pub what: String,
    /// Whether the case fails when this event is missed. `false` for objects the truth must
    /// list (they are there) but today's detector rarely sees; a miss is still counted.
    #[serde(default = "d_required")]
    pub required: bool,
}

fn d_required() -> bool {
    true
}

/// A loaded case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Name: the file's stem.
    pub name: String,
    /// The case file.
    pub file: PathBuf,
    /// What it shows.
    pub description: String,
    /// The frames.
    pub source: Source,
    /// Times the clip is played back to back.
    pub plays: u32,
    /// Stream time of the first frame (real clips; scenarios carry their own).
    pub start_time: Option<DateTime<Utc>>,
    /// Largest start-time error that still passes (default: one detection interval).
    pub tolerance: Option<f64>,
    /// Largest end-time error that still passes (default: two detection intervals).
    pub end_tolerance: Option<f64>,
    /// Expected events.
    pub expect: Vec<Expected>,
    /// The daemon config tables of the case (everything but `case` and `expect`).
    config: toml_edit::DocumentMut,
}

/// An event the pipeline produced, as the eval sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// Event id.
    pub event_id: String,
    /// Kind.
    pub kind: String,
    /// Zone id.
    pub zone: String,
    /// Label of the object.
    pub label: String,
    /// Seconds from the start of the run.
    pub start: f64,
    /// Seconds from the start of the run, if it ended.
    pub end: Option<f64>,
    /// Box in the `new` message.
    pub bbox: [f32; 4],
}

/// A matched pair.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    /// What was expected.
    pub expected: Expected,
    /// What was found.
    pub found: Found,
    /// found.start - expected.start, seconds.
    pub start_error: f64,
    /// found.end - expected.end, seconds, when both are known.
    pub end_error: Option<f64>,
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// `real` or `composed`.
    pub source: String,
    /// Seconds of video replayed (all plays).
    pub video_seconds: f64,
    /// Number of expected events.
    pub expected: usize,
    /// Number of events found.
    pub found: usize,
    /// Pairs of expected and found events.
    pub matched: Vec<Match>,
    /// Events found that nothing expected.
    pub false_events: Vec<Found>,
    /// Expected events not found.
    pub missed: Vec<Expected>,
    /// Largest |start error| of the matched events, seconds.
    pub max_start_error: Option<f64>,
    /// Tolerance the start errors were held to, seconds.
    pub tolerance: f64,
    /// False events per hour of this camera's video.
    pub false_per_camera_hour: f64,
    /// Why the case failed (empty when it passed).
    pub problems: Vec<String>,
    /// Whether it passed: exactly its events, starts (and ends, where given) within tolerance.
    pub pass: bool,
    /// Where its clip, config, events and evidence are.
    pub work_dir: PathBuf,
}

/// Sums over several cases.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Cases.
    pub cases: usize,
    /// Cases that passed.
    pub passed: usize,
    /// Seconds of video.
    pub video_seconds: f64,
    /// Expected events.
    pub expected: usize,
    /// Found events.
    pub found: usize,
    /// False events.
    pub false_events: usize,
    /// Missed events.
    pub missed: usize,
    /// Largest |start error|, seconds.
    pub max_start_error: Option<f64>,
    /// False events per camera-hour.
    pub false_per_camera_hour: f64,
}

impl Totals {
    fn of<'a>(results: impl Iterator<Item = &'a CaseResult>) -> Self {
        let mut t = Totals::default();
        for r in results {
            t.cases += 1;
            t.passed += usize::from(r.pass);
            t.video_seconds += r.video_seconds;
            t.expected += r.expected;
            t.found += r.found;
            t.false_events += r.false_events.len();
            t.missed += r.missed.len();
            t.max_start_error = match (t.max_start_error, r.max_start_error) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        t.false_per_camera_hour = per_hour(t.false_events, t.video_seconds);
        t
    }
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Per case.
    pub cases: Vec<CaseResult>,
    /// Real recordings only.
    pub real: Totals,
    /// Composed scenarios only.
    pub composed: Totals,
    /// Everything.
    pub total: Totals,
}

impl EvalReport {
    /// Sums the results.
    pub fn new(cases: Vec<CaseResult>) -> Self {
        Self {
            real: Totals::of(cases.iter().filter(|c| c.source == "real")),
            composed: Totals::of(cases.iter().filter(|c| c.source == "composed")),
            total: Totals::of(cases.iter()),
            cases,
        }
    }

    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.pass)
    }
}

fn per_hour(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 * 3600.0 / seconds
    } else {
        0.0
    }
}

/// The case files named: files as they are, folders for their `*.toml` (sorted).
pub fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut here: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            here.sort();
            files.extend(here);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(anyhow!("{}: no such case file or folder", p.display()));
        }
    }
    Ok(files)
}

/// Reads a case file.
pub fn load_case(file: &Path) -> Result<Case> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| anyhow!("{shown}: not valid TOML: {e}"))?;
    let case_item = doc
        .remove("case")
        .ok_or_else(|| anyhow!("{shown}: a [case] table is needed (clip or scenario)"))?;
    let case: CaseTable = toml_edit::de::from_str(&table_text(case_item, "case")?)
        .map_err(|e| anyhow!("{shown}: [case]: {}", e.message().trim()))?;
    let expect: Vec<Expected> = match doc.remove("expect") {
        Some(item) => {
            #[derive(Deserialize)]
            struct E {
                expect: Vec<Expected>,
            }
            let mut wrap = toml_edit::DocumentMut::new();
            wrap.insert("expect", item);
            toml_edit::de::from_str::<E>(&wrap.to_string())
                .map_err(|e| anyhow!("{shown}: [[expect]]: {}", e.message().trim()))?
                .expect
        }
        None => Vec::new(),
    };
    let source = match (case.clip, case.scenario) {
        (Some(c), None) => Source::Clip(c),
        (None, Some(s)) => Source::Scenario(s),
        _ => {
            return Err(anyhow!(
            "{shown}: [case] needs exactly one of clip (a recording) or scenario (a scenario file)"
        ))
        }
    };
    if case.plays == 0 {
        return Err(anyhow!("{shown}: [case] plays must be at least 1"));
    }
    for key in ["mqtt", "storage", "cameras"] {
        if doc.contains_key(key) {
            return Err(anyhow!(
                "{shown}: [{key}] is set by the eval itself; describe the camera in [camera]"
            ));
        }
    }
    if !doc.contains_key("camera") {
        return Err(anyhow!(
            "{shown}: a [camera] table is needed (detect_every_seconds, zones)"
        ));
    }
    Ok(Case {
        name: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        file: file.to_path_buf(),
        description: case.description,
        source,
        plays: case.plays,
        start_time: case.start_time,
        tolerance: case.tolerance_seconds,
        end_tolerance: case.end_tolerance_seconds,
        expect,
        config: doc,
    })
}

/// A table item as the text of a document holding only its contents.
fn table_text(item: toml_edit::Item, what: &str) -> Result<String> {
    match item {
        toml_edit::Item::Table(t) => Ok(toml_edit::DocumentMut::from(t).to_string()),
        _ => Err(anyhow!("[{what}] must be a table")),
    }
}

impl Case {
    fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The clip to replay and the stream time of its first frame; renders scenarios into `work`.
    fn clip(&self, work: &Path) -> Result<(PathBuf, DateTime<Utc>)> {
        let default_start = || {
            DateTime::parse_from_rfc3339(DEFAULT_START)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        match &self.source {
            Source::Clip(rel) => {
                let beside = self.dir().join(rel);
                let path = if beside.is_file() {
                    beside
                } else {
                    crate::assets::find(rel)?
                };
                Ok((path, self.start_time.unwrap_or_else(default_start)))
            }
            Source::Scenario(rel) => {
                let sc = crate::compose::load_scenario(&self.dir().join(rel))?;
                let clip = work.join("clip.mp4");
                let truth = crate::compose::render(&sc, &clip)?;
                Ok((clip, self.start_time.unwrap_or(truth.start_time)))
            }
        }
    }

    /// The daemon config of this case: its tables, one camera on `clip`, storage in `work`.
    fn config_text(&self, clip: &Path, work: &Path) -> Result<String> {
        let mut doc = self.config.clone();
        let mut camera = match doc.remove("camera") {
            Some(toml_edit::Item::Table(t)) => t,
            _ => return Err(anyhow!("{}: [camera] must be a table", self.file.display())),
        };
        camera.insert("id", toml_edit::value(CAMERA_ID));
        if !camera.contains_key("name") {
            camera.insert("name", toml_edit::value(self.name.as_str()));
        }
        camera.insert("url", toml_edit::value(clip.display().to_string()));
        let mut cameras = toml_edit::ArrayOfTables::new();
        cameras.push(camera);
        let mut storage = toml_edit::Table::new();
        storage.insert(
            "dir",
            toml_edit::value(work.join("data").display().to_string()),
        );
        doc.insert("mqtt", toml_edit::Item::Table(toml_edit::Table::new()));
        doc.insert("storage", toml_edit::Item::Table(storage));
        doc.insert("cameras", toml_edit::Item::ArrayOfTables(cameras));
        Ok(doc.to_string())
    }
}

/// Runs one case in `work` (emptied first) and judges it.
pub fn run_case(case: &Case, work: &Path) -> Result<CaseResult> {
    let shown = case.file.display().to_string();
    if work.exists() {
        std::fs::remove_dir_all(work)
            .with_context(|| format!("cannot empty {}", work.display()))?;
    }
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let work = work
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", work.display()))?;
    let (clip, start) = case.clip(&work).with_context(|| shown.clone())?;
    let config_file = work.join("config.toml");
    let text = case.config_text(&clip, &work)?;
    std::fs::write(&config_file, &text)
        .with_context(|| format!("cannot write {}", config_file.display()))?;
    let loaded = crate::config::parse(&config_file, &text)
        .map_err(|errors| anyhow!("{shown}: the config it makes is invalid:\n{errors}"))?;
    let every = loaded
        .camera(CAMERA_ID)
        .map(|c| c.detect_every_seconds)
        .unwrap_or(1.0);
    let summary = app::replay(
        &loaded,
        &ReplayOptions {
            camera: CAMERA_ID.into(),
            input: clip,
            events_out: work.join("events.jsonl"),
            start_time: Some(start),
            publish: false,
            plays: case.plays,
            // Cases run side by side; the eval's own progress counts them.
            progress: false,
        },
    )
    .with_context(|| shown.clone())?;
    let found = found_events(&summary.messages, start);
    Ok(judge(
        case,
        found,
        summary.video_seconds,
        case.tolerance.unwrap_or(every),
        case.end_tolerance.unwrap_or(2.0 * every),
        work,
    ))
}

/// The events in a replay's messages, one per event id, in order of their `new`.
pub fn found_events(messages: &[EventMessage], start: DateTime<Utc>) -> Vec<Found> {
    let secs = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| (t.with_timezone(&Utc) - start).num_milliseconds() as f64 / 1000.0)
            .ok()
    };
    messages
        .iter()
        .filter(|m| m.phase == Phase::New)
        .map(|new| {
            let last = messages
                .iter()
                .rfind(|m| m.event_id == new.event_id)
                .unwrap_or(new);
            Found {
                event_id: new.event_id.clone(),
                kind: new.kind.clone(),
                zone: new.zone.id.clone(),
                label: new.object.label.clone(),
                start: secs(&new.start_time).unwrap_or(f64::NAN),
                end: last.end_time.as_deref().and_then(secs),
                bbox: new.object.bbox,
            }
        })
        .collect()
}

/// How well a found event fits an expected one (None: it cannot be that one).
fn fit(e: &Expected, f: &Found) -> Option<f32> {
    if e.kind != f.kind || e.zone != f.zone {
        return None;
    }
    let Some(b) = e.bbox else {
        return Some(0.0);
    };
    let want = BBox::new(b[0], b[1], b[2], b[3]);
    let got = BBox::new(f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3]);
    let c = got.center();
    let centre_inside = c.x >= want.x1 && c.x <= want.x2 && c.y >= want.y1 && c.y <= want.y2;
    let iou = want.iou(&got);
    (iou >= 0.3 || centre_inside).then_some(iou)
}

/// Matches found events with expected ones (best overlap first, then nearest start) and
/// judges the case.
fn judge(
    case: &Case,
    found: Vec<Found>,
    video_seconds: f64,
    tolerance: f64,
    end_tolerance: f64,
    work: PathBuf,
) -> CaseResult {
    let mut pairs = Vec::new();
    for (ei, e) in case.expect.iter().enumerate() {
        for (fi, f) in found.iter().enumerate() {
            if let Some(overlap) = fit(e, f) {
                pairs.push((overlap, -(f.start - e.start).abs(), ei, fi));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let (mut e_used, mut f_used) = (vec![false; case.expect.len()], vec![false; found.len()]);
    let mut matched = Vec::new();
    for (_, _, ei, fi) in pairs {
        if e_used[ei] || f_used[fi] {
            continue;
        }
        e_used[ei] = true;
        f_used[fi] = true;
        let (e, f) = (&case.expect[ei], &found[fi]);
        matched.push(Match {
            expected: e.clone(),
            found: f.clone(),
            start_error: f.start - e.start,
            end_error: e.end.zip(f.end).map(|(e, f)| f - e),
        });
    }
    matched.sort_by(|a, b| a.expected.start.total_cmp(&b.expected.start));
    let false_events: Vec<Found> = found
        .iter()
        .zip(&f_used)
        .filter(|(_, used)| !**used)
        .map(|(f, _)| f.clone())
        .collect();
    let missed: Vec<Expected> = case
        .expect
        .iter()
        .zip(&e_used)
        .filter(|(_, used)| !**used)
        .map(|(e, _)| e.clone())
        .collect();
    let mut problems = Vec::new();
    for f in &false_events {
        problems.push(format!(
            "false: {} in {} starting {:.1} s ({} {:?})",
            f.kind, f.zone, f.start, f.label, f.bbox
        ));
    }
    for e in missed.iter().filter(|e| e.required) {
        problems.push(format!(
            "missed: {} in {} starting {:.1} s{}",
            e.kind,
            e.zone,
            e.start,
            if e.what.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.what)
            }
        ));
    }
    for m in &matched {
        if m.start_error.abs() > tolerance + 1e-6 {
            problems.push(format!(
                "late or early: {} in {} started {:.1} s, expected {:.1} s (tolerance {tolerance} s)",
                m.found.kind, m.found.zone, m.found.start, m.expected.start
            ));
        }
        if let Some(err) = m.end_error.filter(|e| e.abs() > end_tolerance + 1e-6) {
            problems.push(format!(
                "end: {} in {} ended {:.1} s, expected {:.1} s ({err:+.1} s, tolerance {end_tolerance} s)",
                m.found.kind,
                m.found.zone,
                m.found.end.unwrap_or(f64::NAN),
                m.expected.end.unwrap_or(f64::NAN)
            ));
        }
        if m.expected.end.is_some() && m.found.end.is_none() {
            problems.push(format!(
                "end: {} in {} never ended",
                m.found.kind, m.found.zone
            ));
        }
    }
    let max_start_error = matched
        .iter()
        .map(|m| m.start_error.abs())
        .max_by(f64::total_cmp);
    CaseResult {
        name: case.name.clone(),
        source: case.source.class().into(),
        video_seconds,
        expected: case.expect.len(),
        found: found.len(),
        false_per_camera_hour: per_hour(false_events.len(), video_seconds),
        matched,
        false_events,
        missed,
        max_start_error,
        tolerance,
        pass: problems.is_empty(),
        problems,
        work_dir: work,
    }
}

/// Runs every case, `jobs` at a time, each in `out/<case name>`; a case that cannot run at all
/// (missing clip, bad config) is an error naming its file.
pub fn run_all(cases: &[Case], out: &Path, jobs: usize) -> Result<EvalReport> {
    let progress = Progress::new("eval", cases.len() as u64, Unit::Items("cases"));
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<(usize, Result<CaseResult>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, cases.len().max(1)) {
            s.spawn(|| loop {
                let i = {
                    let Ok(mut n) = next.lock() else { return };
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(case) = cases.get(i) else { return };
                let r = run_case(case, &out.join(&case.name));
                if let Ok(mut all) = results.lock() {
                    all.push((i, r));
                }
                progress.inc(1);
            });
        }
    });
    progress.finish();
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow!("an eval worker panicked"))?;
    results.sort_by_key(|(i, _)| *i);
    let cases = results
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<_>>>()?;
    Ok(EvalReport::new(cases))
}

/// The report as an aligned text table, then each failed case's problems.
pub fn render_table(r: &EvalReport) -> String {
    let header = [
        "case",
        "source",
        "video",
        "expected",
        "found",
        "false",
        "missed",
        "start err",
        "false/cam-h",
        "result",
    ];
    let secs = |s: f64| format!("{s:.0} s");
    let err = |e: Option<f64>| e.map_or("-".into(), |e| format!("{e:.1} s"));
    let mut rows: Vec<Vec<String>> = r
        .cases
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.source.clone(),
                secs(c.video_seconds),
                c.expected.to_string(),
                c.found.to_string(),
                c.false_events.len().to_string(),
                c.missed.len().to_string(),
                err(c.max_start_error),
                format!("{:.1}", c.false_per_camera_hour),
                if c.pass { "ok" } else { "FAIL" }.into(),
            ]
        })
        .collect();
    for (name, t) in [
        ("all real clips", &r.real),
        ("all composed", &r.composed),
        ("total", &r.total),
    ] {
        if t.cases == 0 {
            continue;
        }
        rows.push(vec![
            name.into(),
            String::new(),
            secs(t.video_seconds),
            t.expected.to_string(),
            t.found.to_string(),
            t.false_events.to_string(),
            t.missed.to_string(),
            err(t.max_start_error),
            format!("{:.1}", t.false_per_camera_hour),
            format!("{}/{} ok", t.passed, t.cases),
        ]);
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = " ".repeat(w - c.chars().count());
                // Text left, figures right.
                if i < 2 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    let cases = r.cases.len();
    for (i, row) in rows.into_iter().enumerate() {
        if i == cases {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
        out.push_str(&line(row));
        out.push('\n');
    }
    for c in r.cases.iter().filter(|c| !c.pass) {
        out.push_str(&format!("\n{} ({}):\n", c.name, c.work_dir.display()));
        for p in &c.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(zone: &str, start: f64, bbox: Option<[f32; 4]>) -> Expected {
        Expected {
            kind: "illegal_parking".into(),
            zone: zone.into(),
            start,
            end: None,
            bbox,
            what: String::new(),
            required: true,
        }
    }

    fn found(zone: &str, start: f64, bbox: [f32; 4]) -> Found {
        Found {
            event_id: format!("{zone}-{start}"),
            kind: "illegal_parking".into(),
            zone: zone.into(),
            label: "car".into(),
            start,
            end: None,
            bbox,
        }
    }

    fn case(expect: Vec<Expected>) -> Case {
        Case {
            name: "t".into(),
            file: PathBuf::from("t.toml"),
            description: String::new(),
            source: Source::Clip("x.mp4".into()),
            plays: 1,
            start_time: None,
            tolerance: None,
            end_tolerance: None,
            expect,
            config: toml_edit::DocumentMut::new(),
        }
    }

    #[test]
    fn matches_by_place_and_counts_false_and_missed() {
        let c = case(vec![
            expected("curb", 0.0, Some([0.1, 0.5, 0.3, 0.7])),
            expected("curb", 0.0, Some([0.6, 0.5, 0.8, 0.7])),
        ]);
        let r = judge(
            &c,
            vec![
                // The right-hand car, 0.5 s late.
                found("curb", 0.5, [0.61, 0.52, 0.79, 0.71]),
                // Something in the lane nobody expected.
                found("curb", 12.0, [0.4, 0.2, 0.5, 0.3]),
            ],
            1800.0,
            1.0,
            2.0,
            PathBuf::new(),
        );
        assert_eq!(r.matched.len(), 1);
        assert_eq!(r.matched[0].expected.bbox.unwrap()[0], 0.6);
        assert!((r.matched[0].start_error - 0.5).abs() < 1e-9);
        assert_eq!(r.false_events.len(), 1);
        assert_eq!(r.missed.len(), 1);
        assert!((r.false_per_camera_hour - 2.0).abs() < 1e-9);
        assert!(!r.pass);
        assert_eq!(r.problems.len(), 2);
    }

    #[test]
    fn a_late_start_fails_the_case_but_still_matches() {
        let c = case(vec![expected("z", 10.0, None)]);
        let r = judge(
            &c,
            vec![found("z", 13.0, [0.0, 0.0, 0.1, 0.1])],
            60.0,
            2.0,
            4.0,
            PathBuf::new(),
        );
        assert_eq!(r.matched.len(), 1);
        assert!(r.false_events.is_empty() && r.missed.is_empty());
        assert!(!r.pass, "{:?}", r.problems);
    }

    #[test]
    fn a_case_file_becomes_a_daemon_config_with_one_camera() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lane.toml");
        std::fs::write(
            &file,
            r#"
[case]
clip = "clip.mp4"
plays = 2
[incidents]
end_after_seconds = 7
[camera]
detect_every_seconds = 0.5
  [[camera.zones]]
  id = "lane"
  kind = "no_parking"
  polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 0.6], [0.0, 0.6]]
  dwell_seconds = 20
[[expect]]
kind = "illegal_parking"
zone = "lane"
start = 3
"#,
        )
        .unwrap();
        let case = load_case(&file).unwrap();
        assert_eq!(case.plays, 2);
        assert_eq!(case.expect.len(), 1);
        let text = case
            .config_text(Path::new("/clips/clip.mp4"), dir.path())
            .unwrap();
        let loaded = crate::config::parse(&dir.path().join("config.toml"), &text).unwrap();
        let cam = loaded.camera(CAMERA_ID).unwrap();
        assert_eq!(cam.url, "/clips/clip.mp4");
        assert_eq!(cam.detect_every_seconds, 0.5);
        assert_eq!(cam.zones[0].id, "lane");
        assert_eq!(loaded.config.incidents.end_after_seconds, 7.0);
        // The eval owns the camera list, the broker and the storage.
        std::fs::write(
            &file,
            "[case]\nclip = \"c.mp4\"\n[camera]\n[storage]\ndir = \"x\"\n",
        )
        .unwrap();
        let e = load_case(&file).unwrap_err().to_string();
        assert!(e.contains("[storage] is set by the eval"), "{e}");
    }
}
