//! Vending, shopfront and garbage scenarios (issue 4), each rendered from the real Amsterdam
//! photos by `configs/scenarios/*.toml` and replayed through the binary with a zone of the
//! matching kind: each must produce exactly its expected events (kind, zone, start within two
//! detection intervals) and nothing else.

mod support;

use serde_json::Value;

/// Seconds between sampled frames in these tests.
const EVERY: f64 = 2.0;

/// One scenario: its file, the zone the test config draws, and the events it must produce.
struct Case {
    scenario: &'static str,
    zone_kind: &'static str,
    polygon: &'static str,
    dwell: f64,
    schedule: &'static str,
    extra_zone: &'static str,
    /// (kind, seconds from the clip start when the dwell started, seconds it ended or None).
    expected: &'static [(&'static str, f64, Option<f64>)],
}

fn run(case: &Case) -> Vec<Value> {
    let dir = support::artifacts_dir(&format!("street-rules-{}", case.scenario));
    let (clip, truth) = support::render_scenario(case.scenario, &dir);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
holidays = ["2026-10-01..2026-10-07"]
[mqtt]
[storage]
dir = "data"
[incidents]
end_after_seconds = 10
[[cameras]]
id = "cam-street"
url = "unused-in-replay.mp4"
detect_every_seconds = {EVERY}
  [[cameras.zones]]
  id = "watched"
  name = "测试区域"
  kind = "{kind}"
  polygon = {polygon}
  dwell_seconds = {dwell}
  schedule = [{schedule}]
  {extra}
"#,
            kind = case.zone_kind,
            polygon = case.polygon,
            dwell = case.dwell,
            schedule = case.schedule,
            extra = case.extra_zone,
        ),
    )
    .unwrap();
    let messages = support::replay(
        &config,
        "cam-street",
        &clip,
        &dir.join("events.jsonl"),
        false,
    );
    check(case, &messages, truth.start_time);
    // Every message is valid against the schema kept in the repo.
    support::assert_schema_valid(&messages);
    messages
}

fn check(case: &Case, messages: &[Value], t0: chrono::DateTime<chrono::Utc>) {
    let secs = |v: &Value| (support::time(v) - t0).num_milliseconds() as f64 / 1000.0;
    let news: Vec<&Value> = messages.iter().filter(|m| m["type"] == "new").collect();
    assert_eq!(
        news.len(),
        case.expected.len(),
        "{}: expected {} event(s), got {}:\n{messages:#?}",
        case.scenario,
        case.expected.len(),
        news.len()
    );
    for ((kind, start, end), new) in case.expected.iter().zip(&news) {
        assert_eq!(new["kind"], *kind, "{}", case.scenario);
        assert_eq!(new["zone"]["id"], "watched");
        let got = secs(&new["start_time"]);
        assert!(
            (got - start).abs() <= 2.0 * EVERY,
            "{}: start {got} s, expected {start} s",
            case.scenario
        );
        let last = messages
            .iter()
            .rfind(|m| m["event_id"] == new["event_id"])
            .unwrap();
        assert_eq!(last["type"], "end");
        if let Some(end) = end {
            let got = secs(&last["end_time"]);
            assert!(
                (got - end).abs() <= 2.0 * EVERY,
                "{}: end {got} s, expected {end} s",
                case.scenario
            );
        }
    }
}

const PAVING: &str = "[[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]";
const MARKET_DAYS: &str = "\"days 1,4,7,11,14,17,21,24,27 06:00-18:00\"";

fn garbage(scenario: &'static str, expected: &'static [(&'static str, f64, Option<f64>)]) -> Case {
    Case {
        scenario,
        zone_kind: "garbage_watch",
        polygon: PAVING,
        dwell: 60.0,
        schedule: "",
        extra_zone: "",
        expected,
    }
}

#[test]
fn a_pile_that_stays_is_exposed_garbage() {
    run(&garbage("garbage-pile", &[("exposed_garbage", 20.0, None)]));
}

#[test]
fn a_pile_cleared_before_the_dwell_raises_nothing() {
    run(&garbage("garbage-cleared", &[]));
}

#[test]
fn lighting_drift_with_noise_raises_nothing() {
    run(&garbage("garbage-lighting", &[]));
}

#[test]
fn people_walking_through_raise_nothing() {
    run(&garbage("garbage-passers", &[]));
}

#[test]
fn a_person_standing_alone_is_not_a_vendor() {
    run(&Case {
        scenario: "vending-lone-person",
        zone_kind: "no_vending",
        polygon: PAVING,
        dwell: 60.0,
        schedule: "",
        extra_zone: "",
        expected: &[],
    });
}

#[test]
fn goods_with_a_vendor_on_a_market_day_are_street_vending() {
    run(&Case {
        scenario: "vending-stall",
        zone_kind: "no_vending",
        polygon: PAVING,
        dwell: 60.0,
        schedule: MARKET_DAYS,
        extra_zone: "",
        expected: &[("street_vending", 25.0, None)],
    });
}

#[test]
fn the_same_stall_on_another_day_raises_nothing() {
    run(&Case {
        scenario: "vending-other-day",
        zone_kind: "no_vending",
        polygon: PAVING,
        dwell: 60.0,
        schedule: MARKET_DAYS,
        extra_zone: "",
        expected: &[],
    });
}

#[test]
fn goods_out_on_a_frontage_name_the_shop() {
    let messages = run(&Case {
        scenario: "shopfront-boxes",
        zone_kind: "shopfront",
        polygon: PAVING,
        dwell: 60.0,
        schedule: "",
        extra_zone: "shop = \"老王杂货店\"\n  contact = \"138-0000-0000\"\n  road_section = \"解放路(人民路-建设路)\"",
        expected: &[("shopfront_spillover", 20.0, None)],
    });
    for m in &messages {
        assert_eq!(m["zone"]["shop"], "老王杂货店");
        assert_eq!(m["zone"]["contact"], "138-0000-0000");
        assert_eq!(m["zone"]["road_section"], "解放路(人民路-建设路)");
        assert_eq!(m["category"]["code"], "05-04");
    }
}
