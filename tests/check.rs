//! `streetwatch check` and `run` on good and bad configs, through the real binary.
//!
//! Each bad config is the valid one below with one thing broken. The expected `FILE:LINE:COL`
//! is computed from the text actually written (where the broken value sits in it), never
//! counted by hand, so the configs can be edited freely. Also: the event message JSON Schema,
//! and the annotated city example in `configs/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use streetwatch::config::{CameraConfig, Config, IncidentConfig};
use streetwatch::event::{self, EventMessage, EvidenceRef, Recurrence};
use streetwatch::geometry::BBox;
use streetwatch::incidents::{EndReason, IncidentBook, Phase};
use streetwatch::scene::{EventKind, SceneReport, Violation};

const BIN: &str = env!("CARGO_BIN_EXE_streetwatch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A complete, valid config: one camera with a no-parking zone. `@STORAGE@` becomes a folder in
/// the test's temporary directory.
const VALID: &str = r#"# streetwatch check: the valid config every bad case starts from
[node]
id = "test-node"
time_zone = "Asia/Shanghai"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[storage]
dir = "@STORAGE@"

[[cameras]]
id = "cam-jiefang-01"
name = "解放路东口"
url = "rtsp://user:pass@10.0.0.5:554/Streaming/Channels/102"
model = "yolox-nano-coco"

  [[cameras.zones]]
  id = "east-no-parking"
  name = "解放路东口南侧人行道"
  kind = "no_parking"
  polygon = [[0.10, 0.55], [0.45, 0.55], [0.45, 0.95], [0.10, 0.95]]
  dwell_seconds = 180
  schedule = ["mon-fri 07:00-21:00"]
  grid = "第八网格"
  responsible_unit = "解放路街道城管中队"
"#;

/// The valid config's polygon, to replace in the geometry cases.
const POLYGON: &str = "[[0.10, 0.55], [0.45, 0.55], [0.45, 0.95], [0.10, 0.95]]";

/// One config file in its own temporary directory.
struct Case {
    dir: tempfile::TempDir,
    file: PathBuf,
    text: String,
}

impl Case {
    /// `VALID` with `from` replaced by `to` (which must occur exactly once).
    fn edit(from: &str, to: &str) -> Self {
        assert_eq!(VALID.matches(from).count(), 1, "{from:?} must occur once");
        Self::new(&VALID.replacen(from, to, 1))
    }

    /// Writes `text` (with `@STORAGE@` filled in) as `city.toml`.
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data");
        let text = text.replace("@STORAGE@", &storage.display().to_string());
        let file = dir.path().join("city.toml");
        std::fs::write(&file, &text).unwrap();
        Self { dir, file, text }
    }

    /// 1-based line and column (in characters) of the `n`th (0-based) occurrence of `needle`.
    fn nth(&self, needle: &str, n: usize) -> (usize, usize) {
        let (offset, _) = self
            .text
            .match_indices(needle)
            .nth(n)
            .unwrap_or_else(|| panic!("{needle:?} occurs fewer than {} times", n + 1));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// Position of `needle`, which must occur exactly once.
    fn at(&self, needle: &str) -> (usize, usize) {
        assert_eq!(
            self.text.matches(needle).count(),
            1,
            "{needle:?} must occur once in\n{}",
            self.text
        );
        self.nth(needle, 0)
    }

    /// Position just after `prefix` (which must occur once): where a value written after it starts.
    fn after(&self, prefix: &str) -> (usize, usize) {
        let (line, col) = self.at(prefix);
        (line, col + prefix.chars().count())
    }

    /// `streetwatch check --config FILE`.
    fn check(&self) -> Outcome {
        Outcome::of(
            streetwatch(&["check", "--config"], &self.file)
                .output()
                .unwrap(),
            &self.file,
        )
    }
}

/// The binary with the repository's model manifests (found the way `make setup` users run it,
/// but independent of the test's working directory).
fn streetwatch(args: &[&str], config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg(config)
        .env("STREETWATCH_MODELS", Path::new(ROOT).join("models"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Exit code and output of one run.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    file: PathBuf,
}

impl Outcome {
    fn of(out: Output, file: &Path) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            file: file.to_path_buf(),
        }
    }

    /// Exit code 2 and a line `FILE:LINE:COL: FIELD: ...` containing every one of `words`.
    fn assert_error(&self, (line, col): (usize, usize), field: &str, words: &[&str]) {
        assert_eq!(
            self.code,
            Some(2),
            "expected exit code 2\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        let head = format!("{}:{line}:{col}: {field}: ", self.file.display());
        let found = self
            .stderr
            .lines()
            .find(|l| l.starts_with(&head))
            .unwrap_or_else(|| {
                panic!("no line starting with {head:?} in stderr:\n{}", self.stderr)
            });
        for w in words {
            assert!(found.contains(w), "{w:?} missing from {found:?}");
        }
    }
}

#[test]
fn valid_config_passes() {
    let case = Case::new(VALID);
    let out = case.check();
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("ok (1 camera(s), 1 zone(s))"),
        "{}",
        out.stdout
    );
    // check is a dry run: it found the storage folder could be made, and made nothing (it used
    // to create it; a mutated config then left folders named by its typos where it pointed).
    assert!(!case.dir.path().join("data").exists());
}

#[test]
fn unknown_field_is_named_with_a_suggestion() {
    let case = Case::edit("dwell_seconds = 180", "dwel_seconds = 180");
    case.check().assert_error(
        case.at("dwel_seconds"),
        "cameras[0].zones[0].dwel_seconds",
        &[
            "unknown field `dwel_seconds`",
            "did you mean `dwell_seconds`?",
        ],
    );
}

#[test]
fn unknown_field_in_a_section() {
    let case = Case::edit("[mqtt]\n", "[mqtt]\ntopic_prefx = \"city\"\n");
    case.check().assert_error(
        case.at("topic_prefx"),
        "mqtt.topic_prefx",
        &["unknown field", "did you mean `topic_prefix`?"],
    );
}

#[test]
fn wrong_type_names_the_field_and_what_to_write() {
    let case = Case::edit("dwell_seconds = 180", "dwell_seconds = \"3 minutes\"");
    case.check().assert_error(
        case.at("\"3 minutes\""),
        "cameras[0].zones[0].dwell_seconds",
        &["invalid type: string \"3 minutes\"", "expected a number"],
    );
}

#[test]
fn unknown_zone_kind_suggests_the_right_one() {
    let case = Case::edit("kind = \"no_parking\"", "kind = \"no-parking\"");
    case.check().assert_error(
        case.at("\"no-parking\""),
        "cameras[0].zones[0].kind",
        &["unknown variant `no-parking`", "did you mean `no_parking`?"],
    );
}

#[test]
fn missing_required_field_names_its_table() {
    let case = Case::edit(&format!("  polygon = {POLYGON}\n"), "");
    case.check().assert_error(
        case.at("[[cameras.zones]]"),
        "cameras[0].zones[0]",
        &["missing field `polygon`"],
    );
}

#[test]
fn polygon_needs_three_points() {
    let case = Case::edit(POLYGON, "[[0.10, 0.55], [0.45, 0.55]]");
    case.check().assert_error(
        case.after("polygon = "),
        "cameras[0].zones[0].polygon",
        &["at least 3 points", "has 2"],
    );
}

#[test]
fn polygon_point_outside_the_frame() {
    let case = Case::edit(
        POLYGON,
        "[[0.10, 0.55], [1.45, 0.55], [0.45, 0.95], [0.10, 0.95]]",
    );
    case.check().assert_error(
        case.at("[1.45, 0.55]"),
        "cameras[0].zones[0].polygon[1]",
        &["[1.45, 0.55]", "outside the frame", "0..1"],
    );
}

#[test]
fn polygon_must_not_cross_itself() {
    // A bow-tie: the second and third corners swapped.
    let case = Case::edit(
        POLYGON,
        "[[0.10, 0.55], [0.45, 0.95], [0.45, 0.55], [0.10, 0.95]]",
    );
    case.check().assert_error(
        case.after("polygon = "),
        "cameras[0].zones[0].polygon",
        &["crosses itself", "reorder the points"],
    );
}

#[test]
fn unknown_model_lists_the_available_ones() {
    let case = Case::edit("model = \"yolox-nano-coco\"", "model = \"yolox-huge\"");
    let out = case.check();
    let mut available: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("models"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "toml")
                .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    available.sort();
    assert!(available.contains(&"yolox-nano-coco".to_string()));
    let listed = format!("available: {}", available.join(", "));
    out.assert_error(
        case.at("\"yolox-huge\""),
        "cameras[0].model",
        &["unknown model \"yolox-huge\"", &listed],
    );
}

#[test]
fn a_manifest_that_would_fail_later_is_refused_by_check() {
    // A copy of the real manifest with one value that used to panic or divide by zero on the
    // camera's first frame: now `check` names the manifest and its field.
    let real =
        std::fs::read_to_string(Path::new(ROOT).join("models/yolox-nano-coco.toml")).unwrap();
    for (from, to, field) in [
        ("size = [416, 416]", "size = [0, 416]", "input.size"),
        ("size = [416, 416]", "size = [4, 4]", "input.size"),
        ("std = [1, 1, 1]", "std = [1, 0, 1]", "input.std"),
        ("nms_iou = 0.45", "nms_iou = 45", "nms_iou"),
    ] {
        assert_eq!(
            real.matches(from).count(),
            1,
            "{from:?} in the real manifest"
        );
        let case = Case::edit(
            "[storage]",
            "[detector]\nmodels_dir = \"@STORAGE@-models\"\n\n[storage]",
        );
        let models = case.dir.path().join("data-models");
        std::fs::create_dir_all(&models).unwrap();
        let manifest = models.join("yolox-nano-coco.toml");
        std::fs::write(&manifest, real.replacen(from, to, 1)).unwrap();
        case.check().assert_error(
            case.at("\"yolox-nano-coco\""),
            "cameras[0].model",
            &[&manifest.display().to_string(), &format!("field `{field}`")],
        );
    }
}

#[test]
fn duplicate_camera_id() {
    let second = r#"
[[cameras]]
id = "cam-jiefang-01"
name = "解放路西口"
url = "rtsp://user:pass@10.0.0.6:554/Streaming/Channels/102"
"#;
    let case = Case::new(&format!("{VALID}{second}"));
    case.check().assert_error(
        case.nth("\"cam-jiefang-01\"", 1),
        "cameras[1].id",
        &["duplicate camera id \"cam-jiefang-01\""],
    );
}

#[test]
fn a_detect_stream_must_differ_from_the_main_stream() {
    let second = r#"
[[cameras]]
id = "cam-dual"
url = "rtsp://10.0.0.7/Streaming/Channels/101"
detect_url = "rtsp://10.0.0.7/Streaming/Channels/101"
full_detect_seconds = -7.5
stall_seconds = 1.5
"#;
    let case = Case::new(&format!("{VALID}{second}"));
    let out = case.check();
    out.assert_error(
        case.nth("\"rtsp://10.0.0.7/Streaming/Channels/101\"", 1),
        "cameras[1].detect_url",
        &["is the same as url", "sub-stream"],
    );
    out.assert_error(
        case.at("-7.5"),
        "cameras[1].full_detect_seconds",
        &["must be 0"],
    );
    // A stall shorter than the sampling interval would restart a healthy camera.
    out.assert_error(
        case.at("1.5"),
        "cameras[1].stall_seconds",
        &["must be more than detect_every_seconds (2)"],
    );
}

#[test]
fn duplicate_zone_id_within_a_camera() {
    let second = r#"
  [[cameras.zones]]
  id = "east-no-parking"
  kind = "ignore"
  polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]]
"#;
    let case = Case::new(&format!("{VALID}{second}"));
    case.check().assert_error(
        case.nth("\"east-no-parking\"", 1),
        "cameras[0].zones[1].id",
        &["duplicate zone id \"east-no-parking\"", "cam-jiefang-01"],
    );
}

#[test]
fn same_zone_id_on_two_cameras_is_fine() {
    let second = r#"
[[cameras]]
id = "cam-jiefang-02"
url = "rtsp://user:pass@10.0.0.6:554/Streaming/Channels/102"

  [[cameras.zones]]
  id = "east-no-parking"
  kind = "no_parking"
  polygon = [[0.1, 0.5], [0.9, 0.5], [0.9, 0.9], [0.1, 0.9]]
"#;
    let case = Case::new(&format!("{VALID}{second}"));
    let out = case.check();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn bad_schedules_are_each_reported_in_place() {
    let case = Case::edit(
        "schedule = [\"mon-fri 07:00-21:00\"]",
        "schedule = [\"mon-fry 07:00-21:00\", \"sat,sun\", \"daily 25:00-26:00\"]",
    );
    let out = case.check();
    out.assert_error(
        case.at("\"mon-fry"),
        "cameras[0].zones[0].schedule[0]",
        &[
            "bad schedule \"mon-fry 07:00-21:00\"",
            "unknown day \"fry\"",
        ],
    );
    out.assert_error(
        case.at("\"daily 25"),
        "cameras[0].zones[0].schedule[2]",
        &[
            "bad schedule \"daily 25:00-26:00\"",
            "\"25:00\" is not a time of day",
        ],
    );
    // The good entry between them is not reported, and the errors come in file order.
    assert_eq!(out.stderr.lines().count(), 2, "{}", out.stderr);
    assert!(out.stderr.find("schedule[0]") < out.stderr.find("schedule[2]"));
}

#[test]
fn storage_dir_that_cannot_be_created() {
    // Tests run as root, so permissions would not stop them: a path under a regular file can
    // never become a folder.
    let outer = tempfile::tempdir().unwrap();
    let blocker = outer.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file").unwrap();
    let bad = blocker.join("data");
    let case = Case::new(&VALID.replace("@STORAGE@", &bad.display().to_string()));
    case.check().assert_error(
        case.after("dir = "),
        "storage.dir",
        &[&bad.display().to_string(), "not writable"],
    );
}

#[test]
fn several_problems_are_all_reported() {
    let case = Case::new(
        &VALID
            .replace("model = \"yolox-nano-coco\"", "model = \"yolox-huge\"")
            .replace(POLYGON, "[[0.10, 0.55], [0.45, 0.55]]"),
    );
    let out = case.check();
    out.assert_error(
        case.at("\"yolox-huge\""),
        "cameras[0].model",
        &["unknown model"],
    );
    out.assert_error(
        case.after("polygon = "),
        "cameras[0].zones[0].polygon",
        &["at least 3 points"],
    );
}

#[test]
fn run_refuses_a_bad_config_before_connecting() {
    // A broker address that records whether anyone tried to connect.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let case = Case::new(
        &VALID
            .replace("mqtt://127.0.0.1:1883", &format!("mqtt://127.0.0.1:{port}"))
            .replace(
                POLYGON,
                "[[0.10, 0.55], [0.45, 0.95], [0.45, 0.55], [0.10, 0.95]]",
            ),
    );
    let checked = case.check();
    checked.assert_error(
        case.after("polygon = "),
        "cameras[0].zones[0].polygon",
        &["crosses itself"],
    );

    let mut child = streetwatch(&["run", "--config"], &case.file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`run` accepted a bad config and kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ran = Outcome::of(child.wait_with_output().unwrap(), &case.file);
    ran.assert_error(
        case.after("polygon = "),
        "cameras[0].zones[0].polygon",
        &["crosses itself"],
    );
    assert_eq!(ran.stderr, checked.stderr, "run and check word it the same");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "`run` connected to the broker despite the bad config"
    );
}

#[test]
fn example_city_config_passes() {
    // The example's storage dir is relative to the file ("../data/example-city", git-ignored).
    let file = Path::new(ROOT).join("configs/example-city.toml");
    let out = Outcome::of(
        streetwatch(&["check", "--config"], &file).output().unwrap(),
        &file,
    );
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    // Its own parse agrees: several cameras, an ignore zone, an overnight schedule.
    let loaded = streetwatch::config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let cams = &loaded.config.cameras;
    assert!(cams.len() >= 3, "a district has several cameras");
    let zones = || cams.iter().flat_map(|c| &c.zones);
    assert!(zones().any(|z| z.kind == streetwatch::scene::ZoneKind::Ignore));
    assert!(zones().any(|z| z.schedule.iter().any(|s| is_overnight(s))));
    // Every watched zone says whose it is (ignore zones raise nothing, so need no owner).
    assert!(
        zones().all(|z| z.kind == streetwatch::scene::ZoneKind::Ignore
            || (!z.grid.is_empty() && !z.responsible_unit.is_empty()))
    );
}

/// Whether a schedule entry's time range wraps past midnight (`22:00-06:00`).
fn is_overnight(entry: &str) -> bool {
    entry
        .split_whitespace()
        .find_map(|t| t.split_once('-').filter(|(a, _)| a.contains(':')))
        .is_some_and(|(a, b)| b != "24:00" && b <= a)
}

// ---------------------------------------------------------------------------------------------
// The event message schema.

fn schema() -> Value {
    let path = Path::new(ROOT).join("docs/schema/event.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A `new` and an `end` message built by the crate itself from an incident, the way the
/// pipeline builds them.
fn real_messages() -> Vec<EventMessage> {
    let config: Config = toml_edit::de::from_str(&VALID.replace("@STORAGE@", "/unused")).unwrap();
    let camera: &CameraConfig = &config.cameras[0];
    let zone = &camera.zones[0];
    let tz = chrono_tz::Asia::Shanghai;
    let mut book = IncidentBook::new(&camera.id, IncidentConfig::default());
    let since = t("2026-11-22T09:14:03.200+08:00");
    let now = t("2026-11-22T09:17:10.000+08:00");
    let report = SceneReport {
        violations: vec![Violation {
            zone_id: zone.id.clone(),
            kind: EventKind::IllegalParking,
            track_id: 17,
            label: "car".into(),
            score: 0.8123,
            bbox: BBox::new(0.41, 0.52, 0.58, 1.0),
            since,
            seen_now: true,
        }],
        armed: vec![zone.id.clone()],
    };
    let changes = book.step(now, &report, &|_| zone.dwell_seconds);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].phase, Phase::New);
    let evidence = ["frame", "crop"]
        .map(|kind| EvidenceRef {
            kind: kind.into(),
            path: format!("data/evidence/cam-jiefang-01/2026-11-22/x-0-{kind}.jpg"),
            sha256: "ab".repeat(32),
            time: Some("2026-11-22T09:03:00.000+08:00".into()),
        })
        .to_vec();
    let recurrence = Recurrence {
        count_7d: 1,
        relapse: true,
        count_30d: 3,
        previous_end: Some(event::local_time(t("2026-11-21T18:02:10+08:00"), tz)),
        history_partial: false,
    };
    let new = event::message(
        Phase::New,
        &changes[0].incident,
        event::Place { camera, zone, tz },
        streetwatch::config::Categories::default()
            .category(streetwatch::scene::EventKind::IllegalParking),
        recurrence.clone(),
        evidence,
    );
    let ended = book.finish(t("2026-11-22T09:30:00+08:00"), EndReason::StreamEnded);
    assert_eq!(ended[0].phase, Phase::End);
    let end = event::message(
        Phase::End,
        &ended[0].incident,
        event::Place { camera, zone, tz },
        streetwatch::config::Categories::default()
            .category(streetwatch::scene::EventKind::IllegalParking),
        Recurrence::default(),
        Vec::new(),
    );
    vec![new, end]
}

#[test]
fn event_schema_accepts_real_messages_and_rejects_broken_ones() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema: {e}"));
    // Formats too: every time must be a real RFC 3339 date-time.
    let strict = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema: {e}"));
    let messages = real_messages();
    for m in &messages {
        let v = serde_json::to_value(m).unwrap();
        for val in [&validator, &strict] {
            let errors: Vec<String> = val.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{errors:?}\n{v:#}");
        }
    }
    let new = serde_json::to_value(&messages[0]).unwrap();
    assert_eq!(new["type"], "new");
    assert_eq!(new["end_time"], Value::Null);
    assert_eq!(new["start_time"], "2026-11-22T09:14:03.200+08:00");
    let end = serde_json::to_value(&messages[1]).unwrap();
    assert_eq!(end["end_reason"], "stream_ended");

    let broken = |f: &dyn Fn(&mut Value)| {
        let mut v = new.clone();
        f(&mut v);
        v
    };
    let rejected = [
        ("bbox 1.5", broken(&|v| v["object"]["bbox"][2] = 1.5.into())),
        (
            "no event_id",
            broken(&|v| {
                v.as_object_mut().unwrap().remove("event_id");
            }),
        ),
        ("type", broken(&|v| v["type"] = "closed".into())),
        (
            "extra field",
            broken(&|v| v["zone"]["street"] = "解放路".into()),
        ),
        (
            "evidence kind",
            broken(&|v| v["evidence"][0]["kind"] = "video".into()),
        ),
        (
            "new with end_time",
            broken(&|v| v["end_time"] = v["last_seen"].clone()),
        ),
        (
            "bbox of 3",
            broken(&|v| {
                v["object"]["bbox"].as_array_mut().unwrap().pop();
            }),
        ),
        ("negative seq", broken(&|v| v["seq"] = (-1).into())),
        (
            "schema id",
            broken(&|v| v["schema"] = "streetwatch.event/2".into()),
        ),
    ];
    for (what, v) in &rejected {
        assert!(
            !validator.is_valid(v),
            "accepted a message with {what}: {v:#}"
        );
    }
    let bad_time = broken(&|v| v["start_time"] = "yesterday".into());
    assert!(!strict.is_valid(&bad_time));
}

#[test]
fn categories_may_be_remapped_but_only_for_known_kinds() {
    let ok = Case::edit(
        "[mqtt]\n",
        "[categories]\nillegal_parking = { code = \"0505\", name = \"机动车违停\" }\n\n[mqtt]\n",
    );
    assert_eq!(ok.check().code, Some(0), "{}", ok.check().stderr);
    let bad = Case::edit(
        "[mqtt]\n",
        "[categories]\nillegal_parkin = { code = \"0505\", name = \"x\" }\n\n[mqtt]\n",
    );
    bad.check().assert_error(
        bad.at("illegal_parkin"),
        "categories.illegal_parkin",
        &["illegal_parking"],
    );
}

/// `VALID` with these lines added to `[mqtt]`, and `extra` tables at the end.
fn mqtt_case(url: &str, lines: &str, extra: &str) -> Case {
    let case = Case::new(&format!(
        "{}{extra}",
        VALID.replacen(
            "url = \"mqtt://127.0.0.1:1883\"\n",
            &format!("url = \"{url}\"\n{lines}\n"),
            1
        )
    ));
    std::fs::write(case.dir.path().join("ca.pem"), "PEM").unwrap();
    case
}

#[test]
fn tls_files_need_an_mqtts_url() {
    let case = mqtt_case("mqtt://10.0.0.2:1883", "ca_file = \"ca.pem\"", "");
    case.check().assert_error(
        case.after("ca_file = "),
        "mqtt.ca_file",
        &["only used with TLS", "mqtts://"],
    );
}

#[test]
fn an_unreadable_ca_file_is_named() {
    let case = mqtt_case("mqtts://broker:8883", "ca_file = \"missing.pem\"", "");
    case.check().assert_error(
        case.after("ca_file = "),
        "mqtt.ca_file",
        &["cannot read", "missing.pem"],
    );
}

#[test]
fn a_client_certificate_needs_its_key() {
    let case = mqtt_case(
        "mqtts://broker:8883",
        "ca_file = \"ca.pem\"\nclient_cert_file = \"ca.pem\"",
        "",
    );
    case.check().assert_error(
        case.after("client_cert_file = "),
        "mqtt.client_cert_file",
        &["give both client_cert_file and client_key_file"],
    );
}

#[test]
fn a_password_needs_a_username_and_one_source() {
    let case = mqtt_case("mqtt://b:1883", "password_env = \"HOME\"", "");
    case.check().assert_error(
        case.after("password_env = "),
        "mqtt.password_env",
        &["needs a username"],
    );
    let case = mqtt_case(
        "mqtt://b:1883",
        "username = \"node\"\npassword_file = \"ca.pem\"\npassword_env = \"HOME\"",
        "",
    );
    case.check().assert_error(
        case.after("password_env = "),
        "mqtt.password_env",
        &["password_file or password_env, not both"],
    );
    let case = mqtt_case(
        "mqtt://b:1883",
        "username = \"node\"\npassword_env = \"STREETWATCH_SURELY_UNSET_VARIABLE\"",
        "",
    );
    case.check().assert_error(
        case.after("password_env = "),
        "mqtt.password_env",
        &["STREETWATCH_SURELY_UNSET_VARIABLE is not set"],
    );
}

#[test]
fn a_tls_broker_with_credentials_passes() {
    let case = mqtt_case(
        "mqtts://broker.city:8883",
        "username = \"node\"\npassword_file = \"ca.pem\"\nca_file = \"ca.pem\"",
        "\n[http]\nlisten = \"127.0.0.1:8686\"\ntoken_file = \"ca.pem\"\n[outbox]\nmax_messages = 5000\n",
    );
    let out = case.check();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn console_and_outbox_settings_are_checked() {
    let case = mqtt_case("mqtt://b:1883", "", "\n[http]\nlisten = \"localhost\"\n");
    case.check().assert_error(
        case.after("listen = "),
        "http.listen",
        &["not an address and port", "127.0.0.1:8686"],
    );
    let case = mqtt_case("mqtt://b:1883", "", "\n[outbox]\nmax_messages = 10\n");
    case.check().assert_error(
        case.after("max_messages = "),
        "outbox.max_messages",
        &["at least 100"],
    );
}

#[test]
fn cluster_table_mistakes_are_pointed_at() {
    let cluster = "\n[cluster]\netcd = [\"10.0.0.11:2379\"]\nlease_ttl_seconds = 1\nkey_prefix = \"streetwatch\"\nledger_url = \"mysql://city\"\n";
    let case = Case::edit(
        "[storage]\ndir = \"@STORAGE@\"\n",
        &format!("[storage]\ndir = \"@STORAGE@\"\n{cluster}"),
    );
    let out = case.check();
    out.assert_error(
        case.after("etcd = "),
        "cluster.etcd",
        &["\"10.0.0.11:2379\"", "http://HOST:2379"],
    );
    out.assert_error(
        case.after("lease_ttl_seconds = "),
        "cluster.lease_ttl_seconds",
        &["2 to 3600"],
    );
    out.assert_error(
        case.after("key_prefix = "),
        "cluster.key_prefix",
        &["start and end with '/'"],
    );
    out.assert_error(
        case.after("ledger_url = "),
        "cluster.ledger_url",
        &["postgres://USER@HOST:5432/DATABASE"],
    );
    // A good table passes.
    let good = "\n[cluster]\netcd = [\"http://10.0.0.11:2379\"]\nledger_url = \"postgres://streetwatch@10.0.0.20:5432/city\"\n";
    let case = Case::edit(
        "[storage]\ndir = \"@STORAGE@\"\n",
        &format!("[storage]\ndir = \"@STORAGE@\"\n{good}"),
    );
    let out = case.check();
    assert_eq!(
        out.code,
        Some(0),
        "a good [cluster] table is refused: {}",
        out.stderr
    );
}
