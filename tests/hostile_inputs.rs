//! Inputs a stranger or a typo can send, mutated at random (seeded, so a failure repeats) and
//! fed in-process to what reads them: none may panic (issue 16). Each target runs a few
//! thousand cases here; the coverage-guided runs are `make fuzz` (fuzz/, libFuzzer), and what
//! they found is pinned at the end of this file.
//!
//! - config text (the annotated city example, bytes and tokens mutated) through the parser and
//!   every check;
//! - schedule lines, with and without a holiday list, evaluated at random local times;
//! - `--since` / `--until` and `?since=` forms;
//! - MQTT command topics and payloads on every inbound topic;
//! - broker urls.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs `f` on `input`; a panic fails the test showing the input that caused it.
fn survives<T: std::fmt::Debug>(what: &str, input: &T, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("{what} panicked on {input:?}");
    }
}

/// Pieces that reach deep into the parsers: their own tokens and numbers at the edges.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    ",",
    ".",
    "-",
    ":",
    "\n",
    " ",
    "#",
    "{",
    "}",
    "0",
    "-1",
    "1e309",
    "nan",
    "inf",
    "4294967296",
    "18446744073709551616",
    "true",
    "[]",
    "\"\"",
    "\u{0}",
    "\u{feff}",
    "第八网格",
    "mon-fri",
    "07:00-21:00",
    "24:00",
    "23:59",
    "sat,sun",
    "holidays",
    "except",
    "2026-02-30",
    "2026-11-01",
    "7d",
    "24h",
    "90m",
    "d",
    "h",
    "m",
    "1.5",
    "1e9",
    "polygon",
    "zones",
    "cameras",
    "kind",
    "dwell_seconds",
    "url",
    "mqtt://",
    "rtsp://",
    "file://",
    "ON",
    "OFF",
    "on",
    "\u{10ffff}",
];

fn mutate(rng: &mut ChaCha8Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=s.len());
        match rng.random_range(0..4) {
            0 if !s.is_empty() => {
                let end = (at + rng.random_range(1..8)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                s.splice(at..at, t.chars());
            }
            2 if !s.is_empty() => {
                let i = at.min(s.len() - 1);
                s[i] = char::from_u32(rng.random_range(0..0x3000)).unwrap_or('x');
            }
            _ => {
                // A piece of itself elsewhere (duplicated tables, repeated keys).
                if !s.is_empty() {
                    let a = rng.random_range(0..s.len());
                    let b = (a + rng.random_range(1..40)).min(s.len());
                    let piece: Vec<char> = s[a..b].to_vec();
                    s.splice(at..at, piece);
                }
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn mutated_configs_are_refused_or_read_never_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("configs/example-city.toml");
    let seed = std::fs::read_to_string(&path).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1601);
    let (mut read, mut refused) = (0, 0);
    for _ in 0..1500 {
        let text = mutate(&mut rng, &seed);
        survives("config::parse", &text, || {
            match streetwatch::config::parse(&path, &text) {
                Ok(_) => read += 1,
                Err(e) => {
                    // Every refusal says where.
                    assert!(!e.to_string().is_empty());
                    refused += 1;
                }
            }
        });
    }
    assert!(
        read > 50 && refused > 50,
        "{read} read, {refused} refused: the mutations are too weak or too strong"
    );
}

#[test]
fn schedule_lines_never_panic() {
    use streetwatch::domain::schedule::{DateList, Schedule};
    let seeds = [
        "mon-fri 07:00-21:00",
        "sat,sun",
        "07:00-09:30",
        "daily 22:00-06:00",
        "fri 22:00-06:00",
        "daily 21:00-24:00",
        "days 1,4,7,11,14,17,21,24,27,31 06:00-12:00",
        "holidays 09:00-21:00",
        "workdays 07:00-19:00",
        "except 2026-12-24..2026-12-26",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(1602);
    let holidays = DateList::parse(&["2026-10-01..2026-10-07".to_string()]).unwrap();
    let mut parsed = 0;
    for _ in 0..5000 {
        // A third as written, to evaluate good schedules at random times too.
        let line = {
            let pick = seeds[rng.random_range(0..seeds.len())];
            if rng.random_bool(0.3) {
                pick.to_string()
            } else {
                mutate(&mut rng, pick)
            }
        };
        let when = chrono::NaiveDate::from_ymd_opt(
            rng.random_range(1970..2100),
            rng.random_range(1..13),
            rng.random_range(1..29),
        )
        .unwrap()
        .and_hms_opt(rng.random_range(0..24), rng.random_range(0..60), 0)
        .unwrap();
        survives("schedule", &line, || {
            if let Ok(s) = Schedule::parse(std::slice::from_ref(&line), &holidays) {
                parsed += 1;
                let _ = s.is_active(when);
            }
        });
    }
    assert!(parsed > 1000, "only {parsed} lines parsed");
}

#[test]
fn period_forms_never_panic() {
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let now = chrono::Utc::now();
    let seeds = [
        "7d",
        "24h",
        "90m",
        "2026-11-01",
        "2026-11-01T08:00:00+08:00",
        "100000000d",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(1603);
    for _ in 0..20000 {
        let s = {
            let pick = seeds[rng.random_range(0..seeds.len())];
            mutate(&mut rng, pick)
        };
        survives("parse_instant", &s, || {
            let _ = streetwatch::report::parse_instant("since", &s, now, tz);
        });
    }
    // Numbers at the edge of every unit.
    for n in [u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX] {
        for unit in ["d", "h", "m"] {
            let s = format!("{n}{unit}");
            survives("parse_instant", &s, || {
                let _ = streetwatch::report::parse_instant("since", &s, now, tz);
            });
        }
    }
}

#[test]
fn command_topics_and_payloads_never_panic() {
    let topics = streetwatch::mqtt::Topics::new("streetwatch", "node-1");
    let seeds = [
        "streetwatch/cameras/cam-1/zones/z-1/set",
        "streetwatch/nodes/node-1/reload",
        "streetwatch/events/01M82YNNFGJ3KZD45WTXCJQ536/review/set",
    ];
    let payloads = [
        "ON",
        "OFF",
        r#"{"state": "dispatched", "by": "zhao.min", "note": "城管中队"}"#,
        r#"{"state": "cleared", "photo": "data:image/jpeg;base64,/9j/4AAQ"}"#,
        "",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(1604);
    for _ in 0..20000 {
        let topic = {
            let pick = seeds[rng.random_range(0..seeds.len())];
            mutate(&mut rng, pick)
        };
        let payload: Vec<u8> = if rng.random_bool(0.2) {
            (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
        } else {
            {
                let pick = payloads[rng.random_range(0..payloads.len())];
                mutate(&mut rng, pick)
            }
            .into_bytes()
        };
        survives("mqtt command", &(&topic, &payload), || {
            let _ = streetwatch::mqtt::parse_command(&topics, &topic, &payload);
        });
    }
}

#[test]
fn broker_urls_never_panic() {
    let seeds = [
        "mqtt://127.0.0.1:1883",
        "mqtts://broker.city.gov.cn:8883",
        "tcp://[::1]:1883",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(1605);
    for _ in 0..20000 {
        let url = {
            let pick = seeds[rng.random_range(0..seeds.len())];
            mutate(&mut rng, pick)
        };
        survives("broker url", &url, || {
            if let Ok(a) = streetwatch::mqtt::BrokerAddress::parse(&url) {
                let _ = a.is_loopback();
            }
        });
    }
}

/// Inputs the fuzz targets (fuzz/) found crashing, kept so they never come back.
#[test]
fn inputs_the_fuzzers_found_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.toml");
    // toml_edit 0.23 panicked on these ("all items have spans", "setting a value should set a
    // prefix"; toml-rs/toml#1100): a config or manifest like them, read by `check`, at start or
    // by a reload, took the daemon down. Fixed by toml_edit 0.25. The first was found by the
    // config target; the others are the upstream report's.
    for text in ["==\n[.-\u{fffd}", "==\n[._[._", "={=<=u=="] {
        survives("config::parse", &text, || {
            let e = streetwatch::config::parse(&path, text).err();
            assert!(e.is_some(), "{text:?} was read as a config");
        });
        survives("Manifest::parse", &text, || {
            let e = streetwatch::detector::manifest::Manifest::parse(&path, text).err();
            assert!(e.is_some(), "{text:?} was read as a manifest");
        });
    }
}
