//! The closed loop (闭环, issue 13) against a running daemon and a real mosquitto, on the
//! `garbage-clearance` scenario (three piles dumped at 10 s; see its file):
//!
//! - reads need a login: every API read, photo and metric without one is 401; a grid worker of
//!   another grid gets 403 for the event and its photo and sees none of its events; a worker
//!   cannot confirm (403); a change the state machine refuses is 409; a bad state is 400;
//! - an operator confirms two piles and dispatches them, and marks the third a false alarm
//!   (wrong object): its event ends (`false_alarm`) and it raises nothing more while it stays;
//!   the pile later dumped on the same spot is a new event, starting when it was dumped;
//! - the grid worker marks both dispatched piles cleared (one with a photo); the camera's
//!   re-check then says `verified` for the pile taken away (with a photo of the clear place)
//!   and `not_cleared` for the one left, within the re-check window;
//! - a city platform closes an event over MQTT (`{p}/events/{id}/review/set`); a change it may
//!   not make is answered on the errors topic;
//! - every message (events, reviews, errors) is valid against its schema; the ledger's history
//!   holds each change with who made it; no password or token appears in the log or an answer.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;
use support::{curl, Daemon, Received};

const ADMIN_TOKEN: &str = "loop-admin-T0ken-51c2";
const PASSWORDS: [(&str, &str); 3] = [
    ("wang.op", "operator-Pa55word"),
    ("li", "grid8-Pa55word"),
    ("zhao", "grid9-Pa55word"),
];

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Which pile an event is about, by where its box is.
fn pile(m: &Value) -> &'static str {
    let b = &m["object"]["bbox"];
    let x = (b[0].as_f64().unwrap() + b[2].as_f64().unwrap()) / 2.0;
    if x < 0.35 {
        "left"
    } else if x > 0.65 {
        "right"
    } else {
        "middle"
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn events(r: &[Received]) -> Vec<Value> {
    r.iter()
        .filter(|m| m.topic.starts_with("streetwatch/events/") && !m.topic.ends_with("/set"))
        .map(Received::json)
        .collect()
}

fn reviews(r: &[Received]) -> Vec<Value> {
    r.iter()
        .filter(|m| m.topic.starts_with("streetwatch/reviews/"))
        .map(Received::json)
        .collect()
}

fn news(r: &[Received], which: &str) -> Vec<Value> {
    events(r)
        .into_iter()
        .filter(|m| m["type"] == "new" && pile(m) == which)
        .collect()
}

/// A small PNG, as a phone photo of the cleared place would be (any picture will do).
fn photo_base64() -> String {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes.into_inner())
}

struct Api {
    base: String,
}

impl Api {
    fn get(&self, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        curl("GET", &format!("{}{path}", self.base), &headers, None)
    }

    fn review(&self, event: &str, token: &str, body: Value) -> (u16, Value) {
        let auth = format!("Authorization: Bearer {token}");
        let (status, bytes) = curl(
            "POST",
            &format!("{}/api/events/{event}/review", self.base),
            &["Content-Type: application/json", &auth],
            Some(body.to_string().as_bytes()),
        );
        (status, json(&bytes))
    }
}

fn write_config(path: &Path, clip: &Path, broker: &str, port: u16) {
    support::StreetCamera {
        mqtt: &format!("url = \"{broker}\""),
        sections: &format!(
            "[incidents]\nend_after_seconds = 5\nupdate_every_seconds = 30\n\
             [review]\nrecheck_within_seconds = 100\nrecheck_clear_seconds = 10\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"SW_TEST_LOOP_TOKEN\""
        ),
        id: "cam-loop",
        clip,
        pace: 4.0,
        camera: "",
        dwell: 20.0,
        zones: r#"
  [[cameras.zones]]
  id = "paving"
  name = "解放路人行道"
  kind = "garbage_watch"
  polygon = [[0.03, 0.6], [0.97, 0.6], [0.97, 0.99], [0.03, 0.99]]
  dwell_seconds = 20
  grid = "第八网格"
  responsible_unit = "解放路街道城管中队"
"#,
    }
    .write(path);
}

#[test]
fn found_reviewed_dispatched_cleared_rechecked_closed() {
    let broker = support::Mosquitto::start();
    let dir = support::artifacts_dir("review-loop");
    let (clip, _) = support::render_scenario("garbage-clearance", &dir);
    let config = dir.join("config.toml");
    let port = support::free_port();
    write_config(&config, &clip, &broker.url(), port);
    // Accounts go into the ledger before the daemon starts (the ledger is a shared file).
    support::add_user(&config, "wang.op", "operator", &[], PASSWORDS[0].1);
    support::add_user(&config, "li", "grid_worker", &["第八网格"], PASSWORDS[1].1);
    support::add_user(
        &config,
        "zhao",
        "grid_worker",
        &["第九网格"],
        PASSWORDS[2].1,
    );
    let op = support::user_token(&config, "wang.op");
    let li = support::user_token(&config, "li");
    let zhao = support::user_token(&config, "zhao");

    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let daemon = Daemon::start(
        &config,
        &dir.join("daemon.log"),
        &[("SW_TEST_LOOP_TOKEN", ADMIN_TOKEN)],
    );
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
    };
    let wait = |what: &str, secs: u64, pred: &dyn Fn(&[Received]) -> bool| {
        assert!(
            sub.wait_until(Duration::from_secs(secs), pred),
            "{what}:\n{}",
            daemon.log_text()
        );
    };
    wait("the three piles' events", 120, &|r| {
        ["left", "right", "middle"]
            .iter()
            .all(|p| !news(r, p).is_empty())
    });
    let first = |p: &str| news(&sub.all(), p)[0].clone();
    let (left, right, middle) = (first("left"), first("right"), first("middle"));
    let id = |m: &Value| m["event_id"].as_str().unwrap().to_string();
    let (left_id, right_id, middle_id) = (id(&left), id(&right), id(&middle));

    // Logins: a password opens a session; a wrong one does not, and says nothing more.
    let login = |name: &str, password: &str| {
        curl(
            "POST",
            &format!("{}/api/login", api.base),
            &["Content-Type: application/json"],
            Some(
                serde_json::json!({"name": name, "password": password})
                    .to_string()
                    .as_bytes(),
            ),
        )
    };
    let (status, body) = login("wang.op", PASSWORDS[0].1);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["role"], "operator");
    assert_eq!(login("wang.op", "wrong-password").0, 401);
    assert_eq!(login("nobody", "wrong-password").0, 401);

    // Without a login every read is 401; with one, what the role and grid allow.
    let crop = left["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "crop")
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let evidence_root = dir.join("data/evidence").canonicalize().unwrap();
    let crop_url = format!(
        "/evidence/{}",
        Path::new(&crop)
            .canonicalize()
            .unwrap()
            .strip_prefix(&evidence_root)
            .unwrap()
            .display()
    );
    for path in [
        "/api/events".to_string(),
        format!("/api/events/{left_id}"),
        crop_url.clone(),
        "/metrics".into(),
        "/api/cameras".into(),
        "/api/cameras/cam-loop/snapshot.jpg".into(),
        "/api/suppressions".into(),
        "/api/me".into(),
    ] {
        assert_eq!(api.get(&path, None).0, 401, "{path} without a login");
    }
    assert_eq!(api.get(&crop_url, Some(&li)).0, 200);
    assert_eq!(
        api.get(&crop_url, Some(&zhao)).0,
        403,
        "another grid's photo"
    );
    assert_eq!(
        api.get(&format!("/api/events/{left_id}"), Some(&zhao)).0,
        403
    );
    let (status, list) = api.get("/api/events", Some(&zhao));
    assert_eq!((status, json(&list)["total"].as_u64()), (200, Some(0)));
    assert_eq!(
        api.get("/api/cameras", Some(&li)).0,
        403,
        "live views are for staff"
    );
    let (status, list) = api.get("/api/events?state=pending", Some(&li));
    assert_eq!(status, 200);
    assert!(json(&list)["total"].as_u64().unwrap() >= 3);

    // Review: roles, the state machine, the fields.
    let st = |s: &str| serde_json::json!({ "state": s });
    assert_eq!(
        api.review(&left_id, &li, st("confirmed")).0,
        403,
        "a worker confirms"
    );
    assert_eq!(
        api.review(&left_id, &zhao, st("cleared")).0,
        403,
        "another grid"
    );
    assert_eq!(
        api.review(&left_id, &op, st("cleared")).0,
        409,
        "pending → cleared"
    );
    assert_eq!(api.review(&left_id, &op, st("done")).0, 400);
    assert_eq!(api.review("01NOSUCHEVENT", &op, st("confirmed")).0, 404);
    let fa = serde_json::json!({"state": "false_alarm"});
    assert_eq!(api.review(&middle_id, &op, fa).0, 400, "no reason");
    for (event, body) in [
        (&left_id, st("confirmed")),
        (&right_id, st("confirmed")),
        (
            &middle_id,
            serde_json::json!({"state": "false_alarm", "reason": "wrong_object", "note": "是施工材料"}),
        ),
        (&left_id, st("dispatched")),
        (
            &right_id,
            serde_json::json!({"state": "dispatched", "unit": "环卫二队", "due": "2026-11-23T12:00:00+08:00"}),
        ),
    ] {
        let (status, answer) = api.review(event, &op, body.clone());
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer["state"], body["state"]);
    }
    assert_eq!(
        api.review(&middle_id, &op, st("confirmed")).0,
        409,
        "false_alarm → confirmed"
    );
    let cleared_with_photo =
        serde_json::json!({"state": "cleared", "note": "已清运", "photo_base64": photo_base64()});
    let (status, answer) = api.review(&left_id, &li, cleared_with_photo);
    assert_eq!(status, 200, "{answer}");
    let worker_photo = answer["review"]["photo"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new(&worker_photo).exists());
    assert_eq!(api.review(&right_id, &li, st("cleared")).0, 200);

    // The rejected pile's event ends as a false alarm; the camera re-checks both cleared ones.
    wait("the false alarm's end", 30, &|r| {
        events(r)
            .iter()
            .any(|m| m["event_id"] == middle_id.as_str() && m["end_reason"] == "false_alarm")
    });
    let verdict = |r: &[Received], event: &str| {
        reviews(r)
            .into_iter()
            .find(|m| m["event_id"] == event && m["role"] == "camera")
    };
    wait("the camera's re-checks", 120, &|r| {
        verdict(r, &left_id).is_some() && verdict(r, &right_id).is_some()
    });
    let received = sub.all();
    let left_check = verdict(&received, &left_id).unwrap();
    let right_check = verdict(&received, &right_id).unwrap();
    assert_eq!(left_check["state"], "verified", "{left_check}");
    assert_eq!(right_check["state"], "not_cleared", "{right_check}");
    assert_eq!(left_check["by"], "camera:cam-loop");
    for check in [&left_check, &right_check] {
        let photo = check["photo"]["path"].as_str().unwrap();
        assert!(Path::new(photo).exists(), "{check}");
    }
    // Verified after the pile went (110 s of video, 100 s after the piles came) and within
    // the window; not cleared at the window's end, while the pile still stands.
    let cleared_at = |event: &str| {
        reviews(&received)
            .into_iter()
            .find(|m| m["event_id"] == event && m["state"] == "cleared")
            .map(|m| time(&m["at"]))
            .unwrap()
    };
    let video =
        |m: &Value| (time(&m["at"]) - time(&left["start_time"])).num_milliseconds() as f64 / 1000.0;
    assert!(
        (100.0..100.0 + 10.0 + 12.0).contains(&video(&left_check)),
        "verified {:.1} s of video after the piles came",
        video(&left_check)
    );
    assert!(time(&right_check["at"]) > cleared_at(&right_id));

    // The pile dumped where the rejected one stood is a new event, starting when it came (130 s).
    wait("the new pile on the rejected one's spot", 120, &|r| {
        news(r, "middle").len() >= 2
    });
    let received = sub.all();
    let middles = news(&received, "middle");
    assert_eq!(
        middles.len(),
        2,
        "the rejected pile raised nothing more while it stayed"
    );
    let again = (time(&middles[1]["start_time"]) - time(&left["start_time"])).num_milliseconds()
        as f64
        / 1000.0;
    assert!(
        (118.0..=126.0).contains(&again),
        "new pile starts {again:.1} s after the first"
    );
    let (status, list) = api.get("/api/suppressions", Some(&op));
    assert_eq!(status, 200);
    let ended = json(&list)["suppressions"].as_array().unwrap().is_empty();
    assert!(
        ended,
        "the suppression ended when the rejected pile left: {list:?}"
    );

    // A city platform closes the verified event over MQTT; what it may not do is refused.
    support::publish(
        broker.port,
        &format!("streetwatch/events/{left_id}/review/set"),
        r#"{"state": "closed", "by": "city-platform", "note": "结案"}"#,
    );
    support::publish(
        broker.port,
        &format!("streetwatch/events/{right_id}/review/set"),
        r#"{"state": "verified", "by": "city-platform"}"#,
    );
    support::publish(
        broker.port,
        &format!("streetwatch/events/{right_id}/review/set"),
        "{not json",
    );
    wait("the platform's close and two refusals", 30, &|r| {
        let closed = reviews(r)
            .iter()
            .any(|m| m["event_id"] == left_id.as_str() && m["state"] == "closed");
        let refused = r
            .iter()
            .filter(|m| m.topic == "streetwatch/nodes/streetwatch/errors")
            .count();
        closed && refused >= 2
    });
    let received = sub.all();
    support::assert_payloads_valid(&received);

    // The history in the ledger, as the event browser shows it.
    let (status, detail) = api.get(&format!("/api/events/{left_id}"), Some(ADMIN_TOKEN));
    assert_eq!(status, 200);
    let detail = json(&detail);
    let history: Vec<(String, String, String)> = detail["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["to"].as_str().unwrap().to_string(),
                r["by"].as_str().unwrap().to_string(),
                r["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("confirmed", "wang.op", "operator"),
        ("dispatched", "wang.op", "operator"),
        ("cleared", "li", "grid_worker"),
        ("verified", "camera:cam-loop", "camera"),
        ("closed", "city-platform", "platform"),
    ];
    assert_eq!(
        history,
        want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .to_vec()
    );
    assert_eq!(detail["event"]["review_state"], "closed");
    assert_eq!(
        detail["reviews"][1]["unit"], "解放路街道城管中队",
        "the zone's unit by default"
    );
    assert!(detail["reviews"][2]["photo_url"].is_string());
    assert!(detail["reviews"][3]["photo_url"].is_string());

    // The report's loop figures are what the review messages say.
    let report = std::process::Command::new(support::binary())
        .current_dir(support::root())
        .args(["report", "--config"])
        .arg(&config)
        .args(["--since", "2d", "--until", "2099-01-01", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let totals = json(&report.stdout)["totals"].clone();
    let all_reviews = reviews(&received);
    let latest = |event: &str, states: &[&str]| {
        all_reviews
            .iter()
            .filter(|m| m["event_id"] == event && states.contains(&m["state"].as_str().unwrap()))
            .max_by_key(|m| m["seq"].as_u64())
            .map(|m| m["state"].as_str().unwrap().to_string())
    };
    let ids: Vec<String> = events(&received)
        .iter()
        .filter(|m| m["type"] == "new")
        .map(id)
        .collect();
    let count = |states: &[&str], want: &str| {
        ids.iter()
            .filter(|e| latest(e, states).as_deref() == Some(want))
            .count() as u64
    };
    let verdicts = ["confirmed", "false_alarm"];
    let (confirmed, false_alarms) = (
        count(&verdicts, "confirmed"),
        count(&verdicts, "false_alarm"),
    );
    let checks = ["verified", "not_cleared"];
    let (verified, not_cleared) = (count(&checks, "verified"), count(&checks, "not_cleared"));
    assert_eq!(
        (confirmed, false_alarms, verified, not_cleared),
        (2, 1, 1, 1)
    );
    assert_eq!(totals["count"], ids.len() as u64);
    assert_eq!(totals["confirmed"], confirmed);
    assert_eq!(totals["false_alarms"], false_alarms);
    assert_eq!(totals["rechecked"], verified + not_cleared);
    let ratio = |a: u64, b: u64| a as f64 / (a + b) as f64;
    assert!((totals["precision"].as_f64().unwrap() - ratio(confirmed, false_alarms)).abs() < 1e-9);
    assert!(
        (totals["recheck_pass_rate"].as_f64().unwrap() - ratio(verified, not_cleared)).abs() < 1e-9
    );
    // Minutes from each event's start to its first change to a state, negative as 0 (a paced
    // file camera's clock runs ahead of people's), the median over the events that got there.
    let median_minutes = |to: &[&str]| {
        let mut m: Vec<f64> = ids
            .iter()
            .filter_map(|e| {
                let start = events(&received)
                    .into_iter()
                    .find(|m| m["event_id"] == e.as_str())
                    .map(|m| time(&m["start_time"]))?;
                let first = all_reviews
                    .iter()
                    .filter(|m| {
                        m["event_id"] == e.as_str() && to.contains(&m["state"].as_str().unwrap())
                    })
                    .min_by_key(|m| m["seq"].as_u64())?;
                Some(((time(&first["at"]) - start).num_milliseconds() as f64 / 60_000.0).max(0.0))
            })
            .collect();
        m.sort_by(f64::total_cmp);
        let n = m.len();
        (n > 0).then(|| {
            if n % 2 == 1 {
                m[n / 2]
            } else {
                (m[n / 2 - 1] + m[n / 2]) / 2.0
            }
        })
    };
    for (field, to) in [
        ("median_minutes_to_review", &verdicts[..]),
        ("median_minutes_to_dispatch", &["dispatched"][..]),
        ("median_minutes_to_clear", &["cleared"][..]),
    ] {
        let want = median_minutes(to).unwrap();
        let got = totals[field].as_f64().unwrap();
        assert!((got - want).abs() <= 0.01, "{field}: {got} vs {want}");
    }

    // No secret anywhere: the log, the lists and details.
    let mut seen = daemon.log_text();
    for path in [
        "/api/events".to_string(),
        format!("/api/events/{left_id}"),
        "/api/me".into(),
    ] {
        seen.push_str(&String::from_utf8_lossy(&api.get(&path, Some(&op)).1));
    }
    for (_, password) in PASSWORDS {
        assert!(!seen.contains(password), "a password leaked");
    }
    for token in [ADMIN_TOKEN, op.as_str(), li.as_str(), zhao.as_str()] {
        assert!(!seen.contains(token), "a token leaked");
    }
}
