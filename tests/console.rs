//! The operator console (issue 7), against a running daemon with a real mosquitto:
//!
//! - in headless Chromium (Debian's chromium, driven by playwright-core): an operator opens the
//!   zone editor, draws a no-parking polygon by clicking on the live frame (and drags a corner),
//!   saves; the config file changed (with a backup, comments and other sections untouched),
//!   `check` passes on it, and the running camera now raises the parked car's event in the new
//!   zone, without reconnecting; the event browser then shows it with its evidence. Screenshots
//!   of both pages are kept in target/test-artifacts/console/;
//! - the API: health, Prometheus metrics (parsed by a Prometheus text-format parser), cameras
//!   with credentials masked, snapshots with overlays, events and their evidence, the token
//!   refused when missing or wrong, a bad zone refused with the config check's message, bodies
//!   too large refused, paths out of the evidence folder refused, no secret in any answer.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::Daemon;

const TOKEN: &str = "console-T0ken-7f3a";

/// `curl` an URL: (status, body). `body` is sent with `method` when given.
fn http(method: &str, url: &str, headers: &[&str], body: Option<&[u8]>) -> (u16, Vec<u8>) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-g", "--path-as-is", "-X", method, "-o"])
        .arg(out.path())
        .args(["-w", "%{http_code}"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let input = tempfile::NamedTempFile::new().unwrap();
    if let Some(b) = body {
        std::fs::write(input.path(), b).unwrap();
        cmd.arg("--data-binary")
            .arg(format!("@{}", input.path().display()));
    }
    let o = cmd.arg(url).output().expect("curl (Debian package curl)");
    let status = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (status, std::fs::read(out.path()).unwrap_or_default())
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// A daemon with one camera (the parking-basic street, looped at 4x) and the console on.
struct Node {
    daemon: Daemon,
    base: String,
    config: PathBuf,
    dir: PathBuf,
}

fn start(test: &str, broker: &support::Mosquitto, zones: &str) -> Node {
    let dir = support::artifacts_dir(test);
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let port = support::free_port();
    let config = dir.join("config.toml");
    support::StreetCamera {
        mqtt: &format!("# the command center's broker\nurl = \"{}\"", broker.url()),
        sections: &format!(
            "[incidents]\nend_after_seconds = 5\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"SW_TEST_CONSOLE_TOKEN\"\n\
             [[cameras]]\nid = \"cam-spare\"\nurl = \"rtsp://admin:S3cret-cam@10.0.0.5/Streaming/Channels/102\"\nenabled = false"
        ),
        id: "cam-ui",
        clip: &clip,
        pace: 4.0,
        camera: "repeat = true",
        dwell: 6.0,
        zones: "",
    }
    .write(&config);
    // This camera starts with the strip far off the paving: nothing parks there.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "[[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]",
            "[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1], [0.0, 0.1]]",
        )
        .replace("  id = \"south-strip\"", "  id = \"sky\"")
        + zones;
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(
        &config,
        &dir.join("daemon.log"),
        &[("SW_TEST_CONSOLE_TOKEN", TOKEN)],
    );
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        support::wait_for_port(port, Duration::from_secs(30)),
        "the console did not listen:\n{}",
        daemon.log_text()
    );
    let until = Instant::now() + Duration::from_secs(60);
    while http("GET", &format!("{base}/api/cameras/cam-ui/live"), &[], None).0 != 200 {
        assert!(
            Instant::now() < until,
            "no live frame:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    Node {
        daemon,
        base,
        config,
        dir,
    }
}

fn node_script(args: &[&str]) -> serde_json::Value {
    let script = support::root().join("tests/console/e2e.mjs");
    assert!(
        support::root()
            .join("tests/console/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `make setup` (npm ci in tests/console)"
    );
    let o = Command::new("node")
        .arg(&script)
        .args(args)
        .output()
        .expect("node (Node.js) runs the browser script");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "browser script {args:?} failed ({}):\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    json(stdout.lines().last().unwrap_or_default().as_bytes())
}

#[test]
fn an_operator_draws_a_zone_in_the_browser_and_the_running_camera_uses_it() {
    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let mut node = start("console", &broker, "");
    let original = std::fs::read_to_string(&node.config).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        support::received_events(&sub.all()).is_empty(),
        "no zone covers the paving yet, so nothing may be raised"
    );

    let shots = node.dir.display().to_string();
    let saved = node_script(&["editor", &node.base, "cam-ui", TOKEN, &shots]);
    assert_eq!(saved["saved"], true, "{saved}");

    // The file: the new zone, the old one kept, comments and other sections untouched.
    let text = std::fs::read_to_string(&node.config).unwrap();
    assert!(text.contains("id = \"painted-strip\""), "{text}");
    assert!(text.contains("name = \"画出的禁停区\""));
    assert!(text.contains("dwell_seconds = 6"));
    assert!(text.contains("id = \"sky\""));
    assert!(text.contains("# the command center's broker"));
    assert!(text.contains("id = \"cam-spare\""));
    let mut backup = node.config.clone().into_os_string();
    backup.push(".bak");
    assert_eq!(
        std::fs::read_to_string(PathBuf::from(backup)).unwrap(),
        original
    );
    let check = Command::new(support::binary())
        .args(["check", "--config"])
        .arg(&node.config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let loaded = streetwatch::config::load(&node.config).unwrap_or_else(|e| panic!("{e}"));
    let zone = loaded
        .camera("cam-ui")
        .unwrap()
        .zones
        .iter()
        .find(|z| z.id == "painted-strip")
        .expect("the drawn zone");
    assert_eq!(zone.polygon.len(), 4, "{:?}", zone.polygon);
    let corner = zone.polygon[3];
    assert!(
        (corner[0] - 0.05).abs() < 0.02 && (corner[1] - 0.99).abs() < 0.02,
        "the dragged corner is where it was dropped: {corner:?}"
    );

    // The running camera applies it: the parked car now raises its event in the new zone.
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| support::received_events(r)
            .iter()
            .any(|(_, m)| m["type"] == "new" && m["zone"]["id"] == "painted-strip")),
        "no event in the drawn zone:\n{}",
        node.daemon.log_text()
    );
    assert!(sub
        .on("streetwatch/cameras/cam-ui/zones/painted-strip/state")
        .iter()
        .any(|m| m.text() == "ON"));
    let reconnected = sub
        .on("streetwatch/cameras/cam-ui/status")
        .iter()
        .any(|m| m.json()["state"] == "reconnecting");
    assert!(!reconnected, "the camera kept its connection");

    // The event browser shows it with its evidence photo.
    let seen = node_script(&["events", &node.base, &shots]);
    assert!(seen["rows"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(seen["evidence_width"], 800, "{seen}");
    for shot in [
        "zone-editor-drawn.png",
        "zone-editor-saved.png",
        "event-browser.png",
    ] {
        let png = image::open(node.dir.join(shot)).unwrap_or_else(|e| panic!("{shot}: {e}"));
        assert!(png.width() >= 1000, "{shot}");
    }
    node.daemon.stop();
    sub.assert_payloads_valid();
}

#[test]
fn the_api_answers_refuses_and_keeps_secrets() {
    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let strip = "  [[cameras.zones]]\n  id = \"paving\"\n  kind = \"no_parking\"\n  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]\n  dwell_seconds = 6\n  grid = \"第八网格\"\n";
    let mut node = start("console-api", &broker, strip);
    let base = node.base.clone();
    let get = |path: &str| http("GET", &format!("{base}{path}"), &[], None);
    let mut answers = Vec::new();

    let (status, body) = get("/healthz");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "ok");
    answers.push(body);

    // Cameras: the disabled one's credentials are masked.
    let (status, body) = get("/api/cameras");
    assert_eq!(status, 200);
    let cams = json(&body);
    let cam = |id: &str| {
        cams.as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        cam("cam-spare")["url"],
        "rtsp://***@10.0.0.5/Streaming/Channels/102"
    );
    assert_eq!(cam("cam-ui")["zones"][1]["id"], "paving");
    answers.push(body);

    // Snapshots: the latest frame, plain and with overlays; none for an unknown camera.
    for q in ["", "?overlay=zones,detections"] {
        let (status, body) = get(&format!("/api/cameras/cam-ui/snapshot.jpg{q}"));
        assert_eq!(status, 200);
        let img = image::load_from_memory(&body).expect("a JPEG");
        assert_eq!((img.width(), img.height()), (800, 596));
    }
    assert_eq!(get("/api/cameras/nope/snapshot.jpg").0, 404);

    // Changes need the token: none, a wrong one, then the right one with a bad zone.
    let put = |headers: &[&str], body: &[u8]| {
        http(
            "PUT",
            &format!("{base}/api/cameras/cam-ui/zones"),
            headers,
            Some(body),
        )
    };
    let bad = br#"{"zones": [{"id": "line", "kind": "no_parking", "polygon": [[0.1, 0.1], [0.5, 0.5]], "dwell_seconds": 60}]}"#;
    let ct = "Content-Type: application/json";
    assert_eq!(put(&[ct], bad).0, 401);
    assert_eq!(put(&[ct, "Authorization: Bearer wrong"], bad).0, 401);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let before = std::fs::read_to_string(&node.config).unwrap();
    let (status, body) = put(&[ct, &auth], bad);
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let errors = json(&body)["errors"].to_string();
    assert!(
        errors.contains("polygon") && errors.contains("config.toml:"),
        "{errors}"
    );
    assert_eq!(
        std::fs::read_to_string(&node.config).unwrap(),
        before,
        "nothing saved"
    );
    let (status, _) = put(&[ct, &auth], &vec![b' '; 300 * 1024]);
    assert_eq!(status, 413, "an oversized body is refused");
    let (status, _) = put(&[ct, &auth], b"{not json");
    assert_eq!(status, 400);

    // Events: the parked car's, with its evidence served; paths out of the folder refused.
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| support::received_events(r)
            .iter()
            .any(|(_, m)| m["type"] == "new")),
        "no event:\n{}",
        node.daemon.log_text()
    );
    let (status, body) = get("/api/events?kind=illegal_parking&grid=第八网格");
    assert_eq!(status, 200);
    let list = json(&body);
    assert!(list["total"].as_u64().unwrap() >= 1, "{list}");
    assert_eq!(json(&get("/api/events?kind=street_vending").1)["total"], 0);
    let id = list["events"][0]["event_id"].as_str().unwrap().to_string();
    let (status, body) = get(&format!("/api/events/{id}"));
    assert_eq!(status, 200);
    let detail = json(&body);
    assert_eq!(detail["messages"][0]["type"], "new");
    let url = detail["evidence"][0]["url"].as_str().unwrap().to_string();
    let (status, photo) = get(&url);
    assert_eq!(status, 200);
    image::load_from_memory(&photo).expect("evidence is a JPEG");
    answers.push(body);
    for bad in [
        "/evidence/../config.toml",
        "/evidence/%2e%2e/config.toml",
        "/evidence/cam-ui/../../config.toml",
        "/evidence//etc/passwd",
        "/evidence/%2Fetc%2Fpasswd",
    ] {
        let (status, body) = get(bad);
        assert!(matches!(status, 400 | 404), "{bad}: {status}");
        assert!(
            !String::from_utf8_lossy(&body).contains("[mqtt]"),
            "{bad} served the config"
        );
    }
    assert_eq!(get("/api/events/nope").0, 404);

    // Metrics in Prometheus text format.
    let (status, body) = get("/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body.clone()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("camera").is_none_or(|c| c == "cam-ui"))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    match &find("streetwatch_camera_frames_total").value {
        prometheus_parse::Value::Counter(v) => assert!(*v > 0.0),
        other => panic!("{other:?}"),
    }
    match &find("streetwatch_inference_milliseconds").value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert!(buckets.iter().map(|b| b.count).fold(0.0, f64::max) > 0.0)
        }
        other => panic!("{other:?}"),
    }
    let events = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "streetwatch_events_total"
                && s.labels.get("kind") == Some("illegal_parking")
        })
        .unwrap_or_else(|| panic!("no events counter in\n{text}"));
    assert!(matches!(events.value, prometheus_parse::Value::Counter(v) if v >= 1.0));
    find("streetwatch_outbox_backlog");
    find("streetwatch_camera_reconnects_total");
    find("streetwatch_decode_milliseconds");
    answers.push(body);

    // No secret in anything the console answered or serves.
    for page in ["/", "/zones", "/events", "/console.css"] {
        let (status, body) = get(page);
        assert_eq!(status, 200, "{page}");
        answers.push(body);
    }
    for a in &answers {
        let text = String::from_utf8_lossy(a);
        assert!(!text.contains(TOKEN), "the token leaked");
        assert!(!text.contains("S3cret-cam"), "a camera password leaked");
    }
    node.daemon.stop();
    sub.assert_payloads_valid();
    let _ = Path::new(&node.dir);
}
