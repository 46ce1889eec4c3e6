//! The ledger's relapse figures and the reports made from it (issue 5).
//!
//! - A corner that fills again: `configs/scenarios/garbage-relapse.toml` (a pile dumped, cleared,
//!   dumped, cleared, dumped) replayed twice, the second time three days later. Every event's
//!   `recurrence` must be exactly what that history implies.
//! - Reports: three scenarios replayed into one ledger on three days; every number in
//!   `streetwatch report --format json` must equal the number this test computes from the
//!   messages the replays wrote. The HTML report is opened in headless Chromium and a
//!   screenshot kept in target/test-artifacts/report/.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, FixedOffset, Timelike};
use serde_json::Value;

/// Seconds between sampled frames.
const EVERY: f64 = 2.0;

/// A config with three cameras, each with one zone of its kind, storing into `dir/data`.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[mqtt]
[storage]
dir = "data"
[incidents]
end_after_seconds = 10
[[cameras]]
id = "cam-corner"
name = "解放路垃圾房"
url = "unused-in-replay.mp4"
detect_every_seconds = {EVERY}
  [[cameras.zones]]
  id = "corner"
  name = "垃圾房拐角"
  kind = "garbage_watch"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 30
  grid = "第八网格"
  responsible_unit = "解放路街道城管中队"
  road_section = "解放路(人民路-建设路)"
[[cameras]]
id = "cam-junction"
name = "解放路东口"
url = "unused-in-replay.mp4"
detect_every_seconds = 1.0
  [[cameras.zones]]
  id = "south-strip"
  name = "南侧人行道"
  kind = "no_parking"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 15
  grid = "第九网格"
  responsible_unit = "交警二大队"
[[cameras]]
id = "cam-shops"
name = "建设路商铺"
url = "unused-in-replay.mp4"
detect_every_seconds = {EVERY}
  [[cameras.zones]]
  id = "frontage-12"
  name = "12号门前"
  kind = "shopfront"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 60
  grid = "第九网格"
  responsible_unit = "建设路街道城管中队"
  shop = "老王杂货店"
"#
        ),
    )
    .unwrap();
    config
}

/// The last message of each event, in the order the events started.
fn final_messages(messages: &[Value]) -> Vec<Value> {
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    let mut order = Vec::new();
    for m in messages {
        let id = m["event_id"].as_str().unwrap().to_string();
        if !last.contains_key(&id) {
            order.push(id.clone());
        }
        let newer = last
            .get(&id)
            .is_none_or(|o| o["seq"].as_u64() <= m["seq"].as_u64());
        if newer {
            last.insert(id, m.clone());
        }
    }
    order.into_iter().map(|id| last[&id].clone()).collect()
}

fn local(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap()
}

fn dwell(m: &Value) -> f64 {
    (local(&m["last_seen"]) - local(&m["start_time"])).num_milliseconds() as f64 / 1000.0
}

#[test]
fn a_corner_that_fills_again_counts_as_relapse() {
    let dir = support::artifacts_dir("relapse");
    let (clip, truth) = support::render_scenario("garbage-relapse", &dir);
    let config = write_config(&dir);
    let first = support::replay(&config, "cam-corner", &clip, &dir.join("day1.jsonl"), false);
    // Three days later: outside the 24 h relapse window of the first day, inside 7 days.
    let second = support::replay_with(
        &config,
        "cam-corner",
        &clip,
        &dir.join("day4.jsonl"),
        false,
        &["--start-time", "2026-11-26T09:00:00+08:00"],
    );
    support::assert_schema_valid(&first);
    support::assert_schema_valid(&second);

    let t0 = truth.start_time;
    let events: Vec<Value> = final_messages(&first)
        .into_iter()
        .chain(final_messages(&second))
        .collect();
    assert_eq!(events.len(), 6, "three piles a day, twice:\n{events:#?}");
    // (start, end) in clip seconds of each pile, and whether each event is a relapse.
    let piles = [(20.0, Some(80.0)), (120.0, Some(180.0)), (220.0, None)];
    let relapse = [false, true, true, false, true, true];
    for (n, e) in events.iter().enumerate() {
        let day0 = if n < 3 {
            t0
        } else {
            t0 + chrono::Duration::days(3)
        };
        let secs = |v: &Value| (support::time(v) - day0).num_milliseconds() as f64 / 1000.0;
        let (start, end) = piles[n % 3];
        assert_eq!(e["kind"], "exposed_garbage");
        assert!(
            (secs(&e["start_time"]) - start).abs() <= 2.0 * EVERY,
            "event {n}: start {} s, pile dumped at {start} s",
            secs(&e["start_time"])
        );
        assert_eq!(e["type"], "end");
        match end {
            Some(end) => {
                assert_eq!(e["end_reason"], "object_left", "event {n}");
                assert!(
                    (secs(&e["end_time"]) - end).abs() <= 2.0 * EVERY,
                    "event {n}: end {} s, pile cleared at {end} s",
                    secs(&e["end_time"])
                );
            }
            None => assert_eq!(e["end_reason"], "stream_ended", "event {n}"),
        }
        // Every earlier event is at this place; all of them lie within 7 and 30 days.
        let r = &e["recurrence"];
        assert_eq!(r["count_7d"], n as u64, "event {n}: {r}");
        assert_eq!(r["count_30d"], n as u64, "event {n}: {r}");
        assert_eq!(r["relapse"], relapse[n], "event {n}: {r}");
        let previous = n.checked_sub(1).map(|p| events[p]["end_time"].clone());
        assert_eq!(
            r["previous_end"],
            previous.unwrap_or(Value::Null),
            "event {n}"
        );
    }
    // Every message of an event carries the recurrence its `new` had.
    for m in first.iter().chain(&second) {
        let e = events
            .iter()
            .find(|e| e["event_id"] == m["event_id"])
            .unwrap();
        assert_eq!(m["recurrence"], e["recurrence"]);
    }

    // The ledger holds each incident with its fields, evidence and state changes.
    let db = rusqlite::Connection::open(dir.join("data/ledger.sqlite")).unwrap();
    for e in &events {
        let (grid, unit, road, relapse_flag, reason, last_seq): (String, String, String, bool, String, u64) = db
            .query_row(
                "SELECT grid, responsible_unit, road_section, relapse, end_reason, last_seq FROM incidents WHERE event_id = ?1",
                [e["event_id"].as_str().unwrap()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap();
        assert_eq!(
            (grid.as_str(), unit.as_str(), road.as_str()),
            ("第八网格", "解放路街道城管中队", "解放路(人民路-建设路)")
        );
        assert_eq!(relapse_flag, e["recurrence"]["relapse"].as_bool().unwrap());
        assert_eq!(reason, e["end_reason"].as_str().unwrap());
        assert_eq!(last_seq, e["seq"].as_u64().unwrap());
        let states: Vec<String> = db
            .prepare("SELECT state FROM state_changes WHERE event_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([e["event_id"].as_str().unwrap()], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(states, ["new", "end"]);
        let files: Vec<(String, String)> = db
            .prepare("SELECT path, sha256 FROM evidence WHERE event_id = ?1")
            .unwrap()
            .query_map([e["event_id"].as_str().unwrap()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(files.len() >= 2, "a frame and a crop at least");
        for (path, sha) in files {
            let file = support::root().join(&path);
            assert_eq!(
                streetwatch::evidence::file_sha256(&file).unwrap(),
                sha,
                "{path}"
            );
        }
    }
}

/// Figures the test computes itself from final messages, as the report defines them.
#[derive(Debug, Default)]
struct Expected {
    count: u64,
    open: u64,
    relapses: u64,
    dwell: Vec<f64>,
}

impl Expected {
    fn add(&mut self, m: &Value) {
        self.count += 1;
        self.open += u64::from(m["type"] != "end");
        self.relapses += u64::from(m["recurrence"]["relapse"] == true);
        self.dwell.push(dwell(m));
    }

    fn assert_matches(&self, got: &Value, what: &str) {
        assert_eq!(got["count"], self.count, "{what}: count");
        // These replays make no review changes: the review loop's counts are 0, and every
        // figure divided by or taken over reviewed events is there and null.
        for zero in [
            "reviewed",
            "confirmed",
            "false_alarms",
            "rechecked",
            "verified",
        ] {
            assert_eq!(got[zero], 0, "{what}: {zero}");
        }
        for null in [
            "precision",
            "median_minutes_to_review",
            "median_minutes_to_dispatch",
            "median_minutes_to_clear",
            "recheck_pass_rate",
        ] {
            assert!(
                got.get(null).is_some_and(Value::is_null),
                "{what}: {null} is {:?}",
                got.get(null)
            );
        }
        assert_eq!(got["open"], self.open, "{what}: open");
        assert_eq!(got["relapses"], self.relapses, "{what}: relapses");
        let total: f64 = self.dwell.iter().sum();
        let mut d = self.dwell.clone();
        d.sort_by(f64::total_cmp);
        let median = match d.len() {
            0 => 0.0,
            n if n % 2 == 1 => d[n / 2],
            n => (d[n / 2 - 1] + d[n / 2]) / 2.0,
        };
        let close = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() < 1e-6;
        assert!(
            close(total, &got["total_dwell_seconds"]),
            "{what}: total dwell {total} vs {}",
            got["total_dwell_seconds"]
        );
        assert!(
            close(median, &got["median_dwell_seconds"]),
            "{what}: median dwell {median} vs {}",
            got["median_dwell_seconds"]
        );
    }
}

fn report(config: &Path, by: &str, format: &str, out: Option<&Path>) -> String {
    let mut cmd = Command::new(support::binary());
    cmd.current_dir(support::root())
        .args(["report", "--config"])
        .arg(config)
        .args([
            "--since",
            "2026-11-20",
            "--until",
            "2026-12-01",
            "--by",
            by,
            "--format",
            format,
        ]);
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn every_number_in_the_report_is_the_events_number() {
    let dir = support::artifacts_dir("report");
    let config = write_config(&dir);
    let mut messages = Vec::new();
    for (n, (scenario, camera, start)) in [
        ("garbage-relapse", "cam-corner", "2026-11-23T09:00:00+08:00"),
        ("parking-basic", "cam-junction", "2026-11-24T14:00:00+08:00"),
        ("shopfront-boxes", "cam-shops", "2026-11-25T20:00:00+08:00"),
        ("garbage-relapse", "cam-corner", "2026-11-23T21:00:00+08:00"),
    ]
    .into_iter()
    .enumerate()
    {
        let (clip, _) = support::render_scenario(scenario, &dir);
        let out = dir.join(format!("{n}-{camera}.jsonl"));
        messages.extend(support::replay_with(
            &config,
            camera,
            &clip,
            &out,
            false,
            &["--start-time", start],
        ));
    }
    let events = final_messages(&messages);
    assert!(events.len() >= 8, "{} events", events.len());

    // Key of an event under each grouping, as the report names it.
    let key = |by: &str, m: &Value| -> String {
        let z = &m["zone"];
        match by {
            "grid" => z["grid"].as_str().unwrap().to_string(),
            "unit" => z["responsible_unit"].as_str().unwrap().to_string(),
            "zone" => format!(
                "{}/{}",
                m["camera"]["id"].as_str().unwrap(),
                z["id"].as_str().unwrap()
            ),
            "camera" => m["camera"]["id"].as_str().unwrap().to_string(),
            "kind" => m["kind"].as_str().unwrap().to_string(),
            "hour" => format!("{:02}", local(&m["start_time"]).hour()),
            _ => unreachable!(),
        }
    };
    for by in ["grid", "unit", "zone", "camera", "kind", "hour"] {
        let r: Value = serde_json::from_str(&report(&config, by, "json", None)).unwrap();
        let mut total = Expected::default();
        let mut groups: BTreeMap<String, Expected> = BTreeMap::new();
        for e in &events {
            total.add(e);
            groups.entry(key(by, e)).or_default().add(e);
        }
        total.assert_matches(&r["totals"], &format!("by {by}: totals"));
        let got = r["groups"].as_array().unwrap();
        let non_empty: Vec<&Value> = got.iter().filter(|g| g["count"] != 0).collect();
        assert_eq!(non_empty.len(), groups.len(), "by {by}: groups {got:#?}");
        for (k, exp) in &groups {
            let g = got
                .iter()
                .find(|g| g["key"] == k.as_str())
                .unwrap_or_else(|| panic!("by {by}: no group {k}"));
            exp.assert_matches(g, &format!("by {by}: {k}"));
        }
        if by == "hour" {
            assert_eq!(got.len(), 24, "every hour listed");
        }
    }

    let r: Value = serde_json::from_str(&report(&config, "grid", "json", None)).unwrap();
    // Hotspots: places by event count; each figure as computed here.
    let mut places: BTreeMap<String, Expected> = BTreeMap::new();
    for e in &events {
        places.entry(key("zone", e)).or_default().add(e);
    }
    // The precision table's rows: every grid and unit with events, whatever `by` is.
    for (rows, by) in [("review_by_grid", "grid"), ("review_by_unit", "unit")] {
        let mut want: BTreeMap<String, Expected> = BTreeMap::new();
        for e in &events {
            want.entry(key(by, e)).or_default().add(e);
        }
        let got = r[rows].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{rows}: {got:#?}");
        for (k, exp) in &want {
            let g = got
                .iter()
                .find(|g| g["key"] == k.as_str())
                .unwrap_or_else(|| panic!("{rows}: no row {k}"));
            exp.assert_matches(g, &format!("{rows}: {k}"));
        }
    }
    let spans = r["time_to_clear"].as_array().unwrap();
    assert_eq!(spans.len(), 8, "every span of the time-to-clear chart");
    assert!(spans.iter().all(|b| b["count"] == 0), "nothing was cleared");

    let spots = r["hotspots"].as_array().unwrap();
    assert_eq!(spots.len(), places.len());
    for s in spots {
        let k = format!(
            "{}/{}",
            s["camera"].as_str().unwrap(),
            s["zone"].as_str().unwrap()
        );
        places[&k].assert_matches(s, &format!("hotspot {k}"));
        assert!(s["crop"].is_string(), "hotspot {k} has a thumbnail");
    }
    let counts: Vec<u64> = spots.iter().map(|s| s["count"].as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    assert_eq!(
        spots[0]["zone"], "corner",
        "the corner that keeps filling is the top hotspot"
    );

    // Hours and days.
    let mut hours = [0u64; 24];
    let mut daily: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in &events {
        let t = local(&e["start_time"]);
        hours[t.hour() as usize] += 1;
        *daily
            .entry((
                t.format("%Y-%m-%d").to_string(),
                e["kind"].as_str().unwrap().to_string(),
            ))
            .or_default() += 1;
    }
    let got_hours: Vec<u64> = r["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .collect();
    assert_eq!(got_hours, hours);
    let busiest = &r["busiest_hours"][0];
    assert_eq!(busiest["count"], *hours.iter().max().unwrap());
    let got_daily: BTreeMap<(String, String), u64> = r["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                (
                    d["date"].as_str().unwrap().to_string(),
                    d["kind"].as_str().unwrap().to_string(),
                ),
                d["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got_daily, daily);
    // The relapse list is exactly the events flagged as relapses.
    let mut relapse_ids: Vec<&str> = events
        .iter()
        .filter(|e| e["recurrence"]["relapse"] == true)
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let mut got_ids: Vec<&str> = r["relapses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event_id"].as_str().unwrap())
        .collect();
    relapse_ids.sort();
    got_ids.sort();
    assert_eq!(got_ids, relapse_ids);
    // The corner's evening series starts 12 h after the morning's last pile ended, within the
    // 24 h window: its first pile is a relapse too (2 in the morning + 3 in the evening).
    assert_eq!(relapse_ids.len(), 5, "{relapse_ids:?}");

    // CSV and table carry the same groups.
    let csv = report(&config, "grid", "csv", None);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "by,key,name,events,open,relapses,total_dwell_seconds,median_dwell_seconds,\
         reviewed,confirmed,false_alarms,precision,median_minutes_to_review,\
         median_minutes_to_dispatch,median_minutes_to_clear,rechecked,verified,recheck_pass_rate"
    );
    for line in &lines[1..] {
        assert!(line.ends_with(",0,0,0,,,,,0,0,"), "no reviews: {line}");
    }
    assert_eq!(lines.len(), 1 + r["groups"].as_array().unwrap().len());
    let table = report(&config, "grid", "table", None);
    assert!(
        table.contains("第八网格") && table.contains("top hotspots"),
        "{table}"
    );

    // HTML: one self-contained file, two charts, thumbnails inline; rendered by Chromium.
    let html_path = dir.join("report.html");
    report(&config, "grid", "html", Some(&html_path));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "daily chart and heat map; no time-to-clear chart without clearances"
    );
    assert!(html.contains("No event of this period has been reviewed yet"));
    assert_eq!(
        html.matches("src=\"data:image/jpeg;base64,").count(),
        places.len(),
        "one thumbnail per hotspot"
    );
    for external in ["src=\"http", "href=\"http", "<script", "url(http"] {
        assert!(
            !html.contains(external),
            "the report fetches nothing ({external})"
        );
    }
    let shot = dir.join("report.png");
    screenshot(&html_path, &shot);
    let png = image::open(&shot)
        .expect("the screenshot is a PNG")
        .to_rgb8();
    assert_eq!(png.dimensions(), (1280, 2400));
    // Not a blank page: the red of the charts and headings is there.
    let red = png
        .pixels()
        .filter(|p| p[0] > 150 && p[1] < 90 && p[2] < 90)
        .count();
    assert!(red > 2000, "only {red} red pixels in {}", shot.display());
}

/// Opens a page in headless Chromium and saves a screenshot.
fn screenshot(page: &Path, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed: run `make setup` (Debian package chromium)");
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "chromium made no screenshot ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}
