//! Every console route, in-process through the router: method, path, query, headers and body
//! from the input, with and without the admin token, against a node with one camera and zone.
//! A route that panics, or an answer that takes over 10 s, is a finding.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request};
use libfuzzer_sys::fuzz_target;
use streetwatch::console::{router, Console};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-admin-token";

const CONFIG: &str = r#"
[node]
id = "fuzz-node"
time_zone = "Asia/Shanghai"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[http]
listen = "127.0.0.1:0"
token_env = "STREETWATCH_FUZZ_TOKEN"

[storage]
dir = "data"

[[cameras]]
id = "cam-1"
name = "解放路东口"
url = "rtsp://10.0.0.5:554/Streaming/Channels/102"
model = "yolox-nano-coco"

  [[cameras.zones]]
  id = "z-1"
  name = "南侧人行道"
  kind = "no_parking"
  polygon = [[0.10, 0.55], [0.45, 0.55], [0.45, 0.95], [0.10, 0.95]]
  dwell_seconds = 180
  grid = "第八网格"
  responsible_unit = "解放路街道城管中队"
"#;

/// The event the ledger holds, so that the event, review and evidence routes find one.
const EVENT_ID: &str = "01M82YNNFGJ3KZD45WTXCJQ536";

fn sample_event(evidence: &std::path::Path) -> String {
    let photo = |kind: &str| {
        format!(
            r#"{{"kind": "{kind}", "path": "{}", "sha256": "{}", "time": "2026-11-22T09:17:03.200+08:00"}}"#,
            evidence.join(format!("{EVENT_ID}-0-{kind}.jpg")).display(),
            "0".repeat(64)
        )
    };
    format!(
        r#"{{"schema": "streetwatch.event/1", "type": "new", "event_id": "{EVENT_ID}", "seq": 0,
        "kind": "illegal_parking", "category": {{"code": "05-05", "name": "机动车乱停放"}},
        "camera": {{"id": "cam-1", "name": "解放路东口"}},
        "zone": {{"id": "z-1", "name": "南侧人行道", "grid": "第八网格", "responsible_unit": "解放路街道城管中队"}},
        "object": {{"label": "car", "score": 0.8123, "track_id": 17, "bbox": [0.41, 0.52, 0.58, 0.77]}},
        "start_time": "2026-11-22T09:14:03.200+08:00", "last_seen": "2026-11-22T09:17:10.000+08:00",
        "end_time": null, "end_reason": null, "dwell_seconds": 186.8,
        "recurrence": {{"count_7d": 1, "count_30d": 3, "previous_end": null, "relapse": false}},
        "evidence": [{}, {}, {}], "evidence_missing": null}}"#,
        photo("rest_start"),
        photo("frame"),
        photo("crop")
    )
}

/// Puts the sample event and its photos in the node's ledger and evidence folder.
fn record_sample(loaded: &streetwatch::config::LoadedConfig) {
    let day = loaded.evidence_dir().join("cam-1").join("2026-11-22");
    std::fs::create_dir_all(&day).expect("the evidence folder");
    let picture = image::RgbImage::from_pixel(32, 24, image::Rgb([200, 80, 40]));
    for kind in ["rest_start", "frame", "crop"] {
        picture
            .save(day.join(format!("{EVENT_ID}-0-{kind}.jpg")))
            .expect("a sample photo");
    }
    let msg: streetwatch::event::EventMessage =
        serde_json::from_str(&sample_event(&day)).expect("the sample event reads");
    let ledger = streetwatch::ledger::Ledger::open(&loaded.storage_dir()).expect("ledger");
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("a time")
            .to_utc()
    };
    ledger
        .record(
            &msg,
            at("2026-11-22T09:14:03.200+08:00"),
            at("2026-11-22T09:17:10+08:00"),
            None,
        )
        .expect("recording the sample event");
}

/// The routes, `{}` standing for the input's first line.
const ROUTES: &[&str] = &[
    "/",
    "/login",
    "/zones",
    "/events",
    "/grid",
    "/console.css",
    "/console.js",
    "/healthz",
    "/api/login",
    "/api/logout",
    "/api/me",
    "/metrics",
    "/api/cameras",
    "/api/cameras/{}/snapshot.jpg",
    "/api/cameras/{}/live",
    "/api/cameras/{}/zones",
    "/api/events",
    "/api/events/{}",
    "/api/events/{}/review",
    "/api/suppressions",
    "/api/suppressions/{}",
    "/evidence/{}",
];

const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::PATCH,
];

struct Node {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    config: std::path::PathBuf,
}

fn node() -> &'static Node {
    static NODE: std::sync::OnceLock<Node> = std::sync::OnceLock::new();
    NODE.get_or_init(|| {
        let dir = common::work_dir("http");
        std::env::set_var("STREETWATCH_FUZZ_TOKEN", TOKEN);
        let config = dir.join("city.toml");
        std::fs::write(&config, CONFIG).expect("writing the fuzz node's config");
        std::fs::create_dir_all(dir.join("data")).expect("the fuzz node's storage");
        let loaded = streetwatch::config::parse(&config, CONFIG).expect("the fuzz config reads");
        let http = loaded
            .config
            .http
            .clone()
            .expect("the fuzz config has [http]");
        record_sample(&loaded);
        let ledger = streetwatch::ledger::Ledger::open(&loaded.storage_dir()).expect("ledger");
        let delivery = Arc::new(streetwatch::mqtt::Delivery::new(ledger));
        // Requests for the node (reload, review, unsuppress) find it stopping: nobody answers.
        let (requests, _) = tokio::sync::mpsc::unbounded_channel();
        let console = Console::new(
            &loaded,
            &http,
            streetwatch::live::LiveView::new(true),
            streetwatch::stats::StatsBoard::default(),
            delivery,
            requests,
        )
        .expect("the fuzz console starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Node {
            rt,
            router: router(Arc::new(console)),
            config,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let node = node();
    let [flags, route, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    let (second, body) = body.split_once('\n').unwrap_or((body, ""));
    let uri = match ROUTES.get(*route as usize) {
        Some(r) if second.is_empty() => r.replace("{}", first),
        Some(r) => format!("{}?{second}", r.replace("{}", first)),
        None => first.to_string(),
    };
    let mut req = Request::builder()
        .method(METHODS[*flags as usize % METHODS.len()].clone())
        .uri(uri);
    if flags & 0x08 != 0 {
        req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    if flags & 0x10 != 0 {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if flags & 0x20 != 0 {
        req = req.header(header::COOKIE, format!("sw_session={first}"));
    }
    let Ok(req) = req.body(Body::from(body.to_string())) else {
        return;
    };
    // A zone save rewrites the config: every input starts from the same one.
    let _ = std::fs::write(&node.config, CONFIG);
    node.rt.block_on(async {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            // The router's error type is Infallible: every request gets an answer.
            let Ok(res) = node.router.clone().oneshot(req).await;
            let _ = axum::body::to_bytes(res.into_body(), 64 << 20).await;
        })
        .await;
        assert!(answer.is_ok(), "no answer within 10 s");
    });
});
