//! The operator console (issues 7 and 13), against a running daemon with a real mosquitto:
//!
//! - in headless Chromium (Debian's chromium, driven by playwright-core): an admin is sent to
//!   the login page, logs in, opens the zone editor, draws a no-parking polygon by clicking on
//!   the live frame (and drags a corner), saves with the session; the config file changed (with
//!   a backup, comments and other sections untouched), `check` passes on it, and the running
//!   camera now raises the parked car's event in the new zone, without reconnecting; the event
//!   browser then shows it with its evidence. Screenshots of both pages are kept in
//!   target/test-artifacts/console/;
//! - the API: nothing but `/healthz`'s status, `/login` and the stylesheet without a login (401
//!   for reads, pages redirect to the login page), logins (wrong password 401, the session
//!   cookie HttpOnly and SameSite=Strict, logout ends it, an operator may not save zones),
//!   health, Prometheus metrics (parsed by a Prometheus text-format parser), cameras with
//!   credentials masked, snapshots with overlays, events and their evidence, the token refused
//!   when missing or wrong, a bad zone refused with the config check's message, bodies too large
//!   refused, paths out of the evidence folder refused, no secret in any answer;
//! - the review loop in the browser: an operator confirms and dispatches one event and marks
//!   another a false alarm on the event browser; a grid worker on a phone-sized screen sees only
//!   their grid's cases, marks the dispatched one cleared with a photo (shrunk by the page); the
//!   history (API, MQTT and the event browser) holds who did what, with the photo.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::Daemon;

const TOKEN: &str = "console-T0ken-7f3a";
/// The password of every account the tests make.
const PASSWORD: &str = "Str33t-watch-pw";

use support::{curl as http, curl_full as http_full};

/// The value of a response header (the name in any case).
fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The `[http]` token as a bearer header: an admin for automation.
fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// `streetwatch user --config CONFIG ARGS...` with the tests' password; its standard output.
fn user(config: &Path, args: &[&str]) -> String {
    let o = Command::new(support::binary())
        .current_dir(support::root())
        .args(["user", "--config"])
        .arg(config)
        .args(args)
        .env("STREETWATCH_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "streetwatch user {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Makes a console account (`streetwatch user add`), with grids for a grid worker.
fn add_account(config: &Path, name: &str, role: &str, grids: &[&str]) {
    let mut args = vec!["add", name, "--role", role];
    for g in grids {
        args.extend(["--grid", g]);
    }
    user(config, &args);
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
    let auth = bearer();
    let live = format!("{base}/api/cameras/cam-ui/live");
    while http("GET", &live, &[&auth], None).0 != 200 {
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

#[test]
fn an_operator_draws_a_zone_in_the_browser_and_the_running_camera_uses_it() {
    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let mut node = start("console", &broker, "");
    // Accounts are made with the CLI beside the running daemon (the ledger is shared).
    add_account(&node.config, "admin-zhao", "admin", &[]);
    add_account(&node.config, "op-wang", "operator", &[]);
    let original = std::fs::read_to_string(&node.config).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        support::received_events(&sub.all()).is_empty(),
        "no zone covers the paving yet, so nothing may be raised"
    );

    let shots = node.dir.display().to_string();
    let saved = support::browser(&[
        "editor",
        &node.base,
        "cam-ui",
        "admin-zhao",
        PASSWORD,
        &shots,
    ]);
    assert_eq!(saved["saved"], true, "{saved}");
    assert_eq!(
        saved["next"], "/zones",
        "the login page was asked to come back: {saved}"
    );
    assert_eq!(saved["who"], "admin-zhao", "{saved}");

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
    let seen = support::browser(&["events", &node.base, "op-wang", PASSWORD, &shots]);
    assert!(seen["rows"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(seen["who"], "op-wang", "{seen}");
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
    let auth = bearer();
    // Reads with the [http] token (an admin); without a login further down.
    let get = |path: &str| http("GET", &format!("{base}{path}"), &[&auth], None);
    let anon = |path: &str| http_full("GET", &format!("{base}{path}"), &[], None);
    let mut answers = Vec::new();

    let (status, body) = get("/healthz");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "ok");
    assert!(
        json(&body)["cameras"].as_u64().is_some(),
        "with a login, the summary"
    );
    answers.push(body);

    // Without a login: the health status only, the login page and the stylesheet; 401 for
    // every read, and the pages send the browser to the login page and back.
    let (status, _, body) = anon("/healthz");
    assert_eq!(status, 200);
    assert_eq!(json(&body), serde_json::json!({"status": "ok"}));
    for open in ["/login", "/console.css"] {
        let (status, _, body) = anon(open);
        assert_eq!(status, 200, "{open}");
        answers.push(body);
    }
    for read in [
        "/api/me",
        "/api/cameras",
        "/api/cameras/cam-ui/live",
        "/api/cameras/cam-ui/snapshot.jpg",
        "/api/events",
        "/api/suppressions",
        "/metrics",
        "/evidence/cam-ui/x.jpg",
    ] {
        let (status, _, body) = anon(read);
        assert_eq!(status, 401, "{read}: {}", String::from_utf8_lossy(&body));
        assert!(
            json(&body)["error"].as_str().unwrap().contains("log in"),
            "{read}"
        );
    }
    for page in ["/", "/zones", "/events?state=pending", "/grid"] {
        let (status, headers, _) = anon(page);
        assert!(matches!(status, 302 | 303 | 307), "{page}: {status}");
        let location = header(&headers, "location")
            .unwrap_or_else(|| panic!("{page}: no location in\n{headers}"));
        assert!(location.starts_with("/login?next=/"), "{page}: {location}");
    }

    // Logins: a wrong password refused; the right one sets a session cookie only this site's
    // pages send and scripts cannot read; an operator may read but not save zones; logout ends
    // the session.
    add_account(&node.config, "op-wang", "operator", &[]);
    let ct = "Content-Type: application/json";
    let login = |password: &str| {
        http_full(
            "POST",
            &format!("{base}/api/login"),
            &[ct],
            Some(
                serde_json::json!({"name": "op-wang", "password": password})
                    .to_string()
                    .as_bytes(),
            ),
        )
    };
    let (status, _, body) = login("not-it");
    assert_eq!(status, 401);
    assert_eq!(json(&body)["error"], "wrong name or password");
    let (status, headers, body) = login(PASSWORD);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["role"], "operator");
    let set_cookie = header(&headers, "set-cookie").expect("a session cookie");
    let attributes = set_cookie.to_lowercase();
    assert!(set_cookie.starts_with("sw_session="), "{set_cookie}");
    assert!(
        attributes.contains("; httponly") && attributes.contains("; samesite=strict"),
        "{set_cookie}"
    );
    assert!(attributes.contains("; path=/"), "{set_cookie}");
    let value = set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("sw_session=")
        .to_string();
    assert!(value.len() >= 20, "a session secret: {set_cookie}");
    let cookie = format!("Cookie: sw_session={value}");
    let (status, body) = http("GET", &format!("{base}/api/me"), &[&cookie], None);
    assert_eq!(status, 200);
    assert_eq!(
        json(&body),
        serde_json::json!({"name": "op-wang", "role": "operator", "grids": []})
    );
    assert_eq!(
        http("GET", &format!("{base}/api/events"), &[&cookie], None).0,
        200
    );
    let zones_now = json(&get("/api/cameras").1)
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "cam-ui")
        .unwrap()["zones"]
        .clone();
    let (status, body) = http(
        "PUT",
        &format!("{base}/api/cameras/cam-ui/zones"),
        &[ct, &cookie],
        Some(
            serde_json::json!({ "zones": zones_now })
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(
        status,
        403,
        "only an admin saves zones: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(json(&body)["error"].as_str().unwrap().contains("admin"));
    let (status, _) = http("POST", &format!("{base}/api/logout"), &[&cookie], None);
    assert_eq!(status, 200);
    assert_eq!(
        http("GET", &format!("{base}/api/me"), &[&cookie], None).0,
        401
    );

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
    assert_eq!(put(&[ct], bad).0, 401);
    assert_eq!(put(&[ct, "Authorization: Bearer wrong"], bad).0, 401);
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
    // A period too far back is the caller's mistake (400 naming the parameter), not a
    // panic that drops the connection; the console keeps answering.
    let (status, body) = get("/api/events?since=100000000d");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("since"));
    assert_eq!(get("/api/events?kind=street_vending").0, 200);
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
    for page in ["/", "/zones", "/events", "/grid", "/login", "/console.css"] {
        let (status, body) = get(page);
        assert_eq!(status, 200, "{page}");
        answers.push(body);
    }
    for a in &answers {
        let text = String::from_utf8_lossy(a);
        assert!(!text.contains(TOKEN), "the token leaked");
        assert!(!text.contains("S3cret-cam"), "a camera password leaked");
        assert!(!text.contains(PASSWORD), "an account's password leaked");
    }
    node.daemon.stop();
    sub.assert_payloads_valid();
    let _ = Path::new(&node.dir);
}

/// A phone photo of the cleared place, as a worker would take it: 2000×1500, larger than the
/// 1600 px the page shrinks it to.
fn phone_photo(path: &Path) {
    let img = image::RgbImage::from_fn(2000, 1500, |x, y| {
        image::Rgb([
            (x * 255 / 2000) as u8,
            (y * 255 / 1500) as u8,
            if (x / 100 + y / 100) % 2 == 0 {
                60
            } else {
                190
            },
        ])
    });
    img.save(path).unwrap();
}

/// The review change of an event's history that moved it to `to`.
fn change_to<'a>(reviews: &'a serde_json::Value, to: &str) -> &'a serde_json::Value {
    reviews
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["to"] == to)
        .unwrap_or_else(|| panic!("no change to {to} in {reviews:#}"))
}

#[test]
fn an_operator_reviews_and_a_grid_worker_clears_the_case_on_a_phone() {
    let broker = support::Mosquitto::start();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    // Two zones over the paving where the car parks, in two grids: each parking raises one
    // event in each.
    let zones = "  [[cameras.zones]]\n  id = \"paving\"\n  name = \"垃圾桶前人行道\"\n  kind = \"no_parking\"\n  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]\n  dwell_seconds = 6\n  grid = \"第八网格\"\n  responsible_unit = \"示例街道城管中队\"\n\
                 [[cameras.zones]]\n  id = \"kerb\"\n  name = \"对面路缘\"\n  kind = \"no_parking\"\n  polygon = [[0.05, 0.75], [0.95, 0.75], [0.95, 0.99], [0.05, 0.99]]\n  dwell_seconds = 6\n  grid = \"第九网格\"\n  responsible_unit = \"河西街道城管中队\"\n";
    let mut node = start("console-review", &broker, zones);
    add_account(&node.config, "op-wang", "operator", &[]);
    add_account(&node.config, "li-grid8", "grid_worker", &["第八网格"]);
    add_account(&node.config, "zhao-grid9", "grid_worker", &["第九网格"]);
    let base = node.base.clone();
    let auth = bearer();
    let get = |path: &str, auth: &str| http("GET", &format!("{base}{path}"), &[auth], None);

    // The first parking's events, one per zone, waiting for review.
    let until = Instant::now() + Duration::from_secs(90);
    let (a, b) = loop {
        let (status, body) = get("/api/events?state=pending", &auth);
        assert_eq!(status, 200);
        let list = json(&body);
        let first = |zone: &str| {
            list["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["zone"] == zone)
                .map(|e| e["event_id"].as_str().unwrap().to_string())
        };
        if let (Some(a), Some(b)) = (first("paving"), first("kerb")) {
            break (a, b);
        }
        assert!(
            Instant::now() < until,
            "no event in both zones: {list:#}\n{}",
            node.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // The operator: a wrong password, then the worklist; A confirmed and dispatched, B a false
    // alarm (reason "other" needs a note: the page asks for it before sending).
    let shots = node.dir.display().to_string();
    let review = support::browser(&["review", &base, "op-wang", PASSWORD, &a, &b, &shots]);
    assert!(
        review["login_error"]
            .as_str()
            .unwrap()
            .contains("wrong name or password"),
        "{review}"
    );
    assert_eq!(review["who"], "op-wang");
    assert_eq!(
        review["state_filter"], "pending",
        "the worklist is the default"
    );
    assert!(
        review["listed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == "pending"),
        "{review}"
    );
    assert_eq!(
        review["unit"], "示例街道城管中队",
        "the zone's unit is proposed"
    );
    assert_eq!(review["a_row"], "dispatched", "{review}");
    assert_eq!(review["b_row"], "false_alarm", "{review}");
    assert_eq!(
        review["back_to_pending"], true,
        "a false alarm can be taken back"
    );
    assert!(
        review["refused"].as_str().unwrap().contains("note"),
        "{review}"
    );
    assert_eq!(
        review["actions_after_dispatch"],
        serde_json::json!(["action-cleared", "action-false_alarm", "action-closed"]),
        "what an operator can do with a dispatched event"
    );
    assert_eq!(review["suppressions_visible"], true);

    // A grid worker sees and opens only their grid's events.
    let token8 = format!(
        "Authorization: Bearer {}",
        user(&node.config, &["token", "li-grid8"])
    );
    let token9 = format!(
        "Authorization: Bearer {}",
        user(&node.config, &["token", "zhao-grid9"])
    );
    let open8 = json(&get("/api/events?state=open", &token8).1);
    assert!(
        open8["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["grid"] == "第八网格"),
        "{open8:#}"
    );
    assert!(open8["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_id"] == a.as_str()));
    assert_eq!(get(&format!("/api/events/{b}"), &token8).0, 403);
    assert_eq!(get(&format!("/api/events/{a}"), &token9).0, 403);
    assert_eq!(
        get("/api/cameras", &token8).0,
        403,
        "no live views for grid workers"
    );

    // On a phone: the start page sends them to their cases; they mark A cleared with a photo.
    let photo = node.dir.join("phone-photo.jpg");
    phone_photo(&photo);
    let phone = support::browser(&[
        "grid",
        &base,
        "li-grid8",
        PASSWORD,
        &a,
        &photo.display().to_string(),
        &shots,
    ]);
    let cards = phone["cards"].as_array().unwrap();
    assert!(cards.iter().all(|c| c["grid"] == "第八网格"), "{phone}");
    assert!(cards.iter().any(|c| c["id"] == a.as_str()), "{phone}");
    assert!(!cards.iter().any(|c| c["id"] == b.as_str()), "{phone}");
    assert!(
        phone["dispatch"]
            .as_str()
            .unwrap()
            .contains("示例街道城管中队"),
        "{phone}"
    );
    assert!(
        phone["place"].as_str().unwrap().contains("垃圾桶前人行道"),
        "{phone}"
    );
    assert!(
        phone["button_height"].as_f64().unwrap() >= 48.0,
        "a large touch target: {phone}"
    );
    assert!(phone["button_width"].as_f64().unwrap() >= 300.0, "{phone}");
    assert_eq!(
        phone["overflow"], 0,
        "one column, nothing wider than the phone: {phone}"
    );
    let after = phone["state_after"].as_str().unwrap();
    assert!(
        matches!(after, "cleared" | "verified" | "not_cleared"),
        "{phone}"
    );

    // The history, from the API (as the admin): who did what, with the worker's photo.
    let (status, body) = get(&format!("/api/events/{a}"), &auth);
    assert_eq!(status, 200);
    let detail = json(&body);
    let state = detail["event"]["review_state"].as_str().unwrap();
    assert!(
        matches!(state, "cleared" | "verified" | "not_cleared"),
        "{detail:#}"
    );
    let reviews = &detail["reviews"];
    let confirmed = change_to(reviews, "confirmed");
    assert_eq!(
        (&confirmed["by"], &confirmed["role"], &confirmed["from"]),
        (&"op-wang".into(), &"operator".into(), &"pending".into())
    );
    let dispatched = change_to(reviews, "dispatched");
    assert_eq!(dispatched["by"], "op-wang");
    assert_eq!(dispatched["from"], "confirmed");
    assert_eq!(dispatched["unit"], "示例街道城管中队");
    let due = chrono::DateTime::parse_from_rfc3339(dispatched["due"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("due: {e}: {dispatched}"));
    let ahead = due.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::minutes(90) && ahead < chrono::Duration::minutes(130),
        "due in about 2 hours: {due}"
    );
    assert_eq!(dispatched["note"], "请尽快处理 please move it");
    let cleared = change_to(reviews, "cleared");
    assert_eq!(
        (&cleared["by"], &cleared["role"], &cleared["from"]),
        (
            &"li-grid8".into(),
            &"grid_worker".into(),
            &"dispatched".into()
        )
    );
    assert_eq!(cleared["note"], "车已驶离 the car has left");
    let photo_url = cleared["photo_url"].as_str().expect("the worker's photo");
    let (status, bytes) = get(photo_url, &auth);
    assert_eq!(status, 200);
    let kept = image::load_from_memory(&bytes).expect("the photo is a picture");
    assert_eq!(
        (kept.width(), kept.height()),
        (1600, 1200),
        "the page shrank the 2000×1500 photo to 1600 px"
    );
    assert_eq!(
        get(photo_url, &token8).0,
        200,
        "the worker sees their own photo"
    );
    assert_eq!(
        get(photo_url, &token9).0,
        403,
        "another grid's worker does not"
    );
    assert!(detail["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "review_cleared"));
    let rejected = json(&get(&format!("/api/events/{b}"), &auth).1);
    let fa = change_to(&rejected["reviews"], "false_alarm");
    assert_eq!(
        (&fa["by"], &fa["reason"]),
        (&"op-wang".into(), &"other".into())
    );
    assert!(fa["note"].as_str().unwrap().contains("kerb opposite"));
    assert_eq!(rejected["event"]["review_state"], "false_alarm");

    // The same changes went out over MQTT to the command center.
    assert!(
        sub.wait_until(Duration::from_secs(10), |r| {
            let states: Vec<String> = r
                .iter()
                .filter(|m| m.topic.contains("/reviews/"))
                .map(|m| m.json())
                .filter(|m| m["event_id"] == a.as_str())
                .map(|m| {
                    format!(
                        "{}:{}",
                        m["state"].as_str().unwrap_or(""),
                        m["by"].as_str().unwrap_or("")
                    )
                })
                .collect();
            [
                "confirmed:op-wang",
                "dispatched:op-wang",
                "cleared:li-grid8",
            ]
            .iter()
            .all(|want| states.iter().any(|s| s == want))
        }),
        "review messages: {:?}",
        sub.on("streetwatch/reviews/")
            .iter()
            .map(|m| m.text())
            .collect::<Vec<_>>()
    );

    // The event browser shows the history with the photo; a login's `next` to another site is
    // ignored; logging out ends the session.
    let history = support::browser(&["history", &base, "op-wang", PASSWORD, &a, &shots]);
    assert_eq!(history["landed"], "/", "{history}");
    let rows: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        &rows[..3],
        ["confirmed", "dispatched", "cleared"],
        "{history}"
    );
    assert!(
        history["history"][2]["photo"].as_bool().unwrap(),
        "{history}"
    );
    assert!(history["history"][2]["text"]
        .as_str()
        .unwrap()
        .contains("li-grid8"));
    assert_eq!(history["after_logout"], "/login", "{history}");

    for (shot, min_width) in [
        ("login-error.png", 1000),
        ("review-worklist.png", 1000),
        ("review-dispatched.png", 1000),
        ("review-false-alarm.png", 1000),
        ("review-history.png", 1000),
        ("grid-cases.png", 780),
        ("grid-clear-form.png", 780),
        ("grid-cleared.png", 780),
    ] {
        let png = image::open(node.dir.join(shot)).unwrap_or_else(|e| panic!("{shot}: {e}"));
        assert!(png.width() >= min_width, "{shot}: {}", png.width());
    }
    node.daemon.stop();
    sub.assert_payloads_valid();
}

#[test]
fn a_thousand_slow_clients_do_not_starve_the_operators() {
    use std::io::{Read, Write};
    let broker = support::Mosquitto::start();
    let mut node = start("console-slow-clients", &broker, "");
    // The test process holds the thousand sockets too (fewer where the machine allows fewer).
    let limit = streetwatch::host::raise_open_files(0).unwrap_or(1024) as usize;
    let clients = 1000.min(limit.saturating_sub(200));
    if clients < 1000 {
        eprintln!("only {clients} slow clients: the open-file limit here is {limit}");
    }
    let addr = node.base.trim_start_matches("http://").to_string();
    // A thousand connections, each sending the start of a request and then nothing more
    // (slowloris): before, each held a socket and a task for good.
    let mut slow = Vec::new();
    for _ in 0..clients {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        slow.push(s);
    }
    // An operator is answered at once, while they hang.
    let started = Instant::now();
    let (status, _) = http("GET", &format!("{}/healthz", node.base), &[], None);
    let answered = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        answered < Duration::from_secs(3),
        "the console took {answered:?} to answer beside {clients} slow clients"
    );
    let auth = bearer();
    assert_eq!(
        http("GET", &format!("{}/api/cameras", node.base), &[&auth], None).0,
        200
    );
    // The server closes them after its header timeout (10 s): each read sees the end.
    std::thread::sleep(Duration::from_secs(12));
    let mut closed = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        // A 408 answer or nothing, then the end of the stream.
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    assert_eq!(
        closed, 1000,
        "slow connections still open after the header timeout"
    );
    assert!(node.daemon.running());
    node.daemon.stop();
    eprintln!(
        "1000 slow clients: an operator answered in {answered:?}; all 1000 closed by the server"
    );
}

/// `curl` over HTTPS trusting `ca`: (status, response headers, body); status 0 when the
/// connection or handshake failed.
fn https(
    ca: &Path,
    method: &str,
    url: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String, String) {
    let head = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-X", method, "--cacert"])
        .arg(ca)
        .arg("-D")
        .arg(head.path())
        .args(["-w", "\n%{http_code}"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let o = cmd.arg(url).output().expect("curl (Debian package curl)");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        std::fs::read_to_string(head.path()).unwrap_or_default(),
        body.to_string(),
    )
}

/// A self-signed certificate for 127.0.0.1 and its key, `NAME.crt` and `NAME.key` in `dir`,
/// made by the openssl command (Debian package openssl, installed by make setup).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (Debian package openssl, installed by make setup)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

#[test]
fn the_console_speaks_https_with_the_configured_certificate() {
    let dir = support::artifacts_dir("console-https");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    // A certificate for 127.0.0.1, as a city's PKI would issue one (here self-signed).
    let (cert, _key) = self_signed(&dir, "console");
    let broker = support::Mosquitto::start();
    let port = support::free_port();
    let config = dir.join("config.toml");
    let http_table = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"SW_TEST_CONSOLE_TOKEN\"\ntls_cert_file = \"console.crt\"\ntls_key_file = \"console.key\"\n"
    );
    support::StreetCamera {
        mqtt: &format!("url = \"{}\"", broker.url()),
        sections: &http_table,
        id: "cam-tls",
        clip: &clip,
        pace: 4.0,
        camera: "repeat = true",
        dwell: 6.0,
        zones: "",
    }
    .write(&config);
    add_account(&config, "zhao.min", "admin", &[]);
    let mut daemon = Daemon::start(
        &config,
        &dir.join("daemon.log"),
        &[("SW_TEST_CONSOLE_TOKEN", TOKEN)],
    );
    assert!(
        support::wait_for_port(port, Duration::from_secs(30)),
        "{}",
        daemon.log_text()
    );
    let base = format!("https://127.0.0.1:{port}");
    let (status, _, body) = https(&cert, "GET", &format!("{base}/healthz"), &[], None);
    assert_eq!(status, 200, "{body}\n{}", daemon.log_text());
    let (status, _, body) = https(
        &cert,
        "GET",
        &format!("{base}/api/cameras"),
        &[&bearer()],
        None,
    );
    assert_eq!(status, 200);
    assert!(body.contains("cam-tls"), "{body}");
    // A login's session cookie is never sent in the clear.
    let (status, headers, _) = https(
        &cert,
        "POST",
        &format!("{base}/api/login"),
        &["Content-Type: application/json"],
        Some(&format!(
            r#"{{"name": "zhao.min", "password": "{PASSWORD}"}}"#
        )),
    );
    assert_eq!(status, 200);
    let cookie = header(&headers, "set-cookie").unwrap();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP on that port gets no page.
    let (status, _) = http(
        "GET",
        &format!("http://127.0.0.1:{port}/healthz"),
        &[],
        None,
    );
    assert_ne!(status, 200);
    // A client that does not trust the certificate is refused by curl, not served.
    let (status, _, _) = https(
        Path::new("/dev/null"),
        "GET",
        &format!("{base}/healthz"),
        &[],
        None,
    );
    assert_eq!(status, 0);
    assert!(daemon.running());
    daemon.stop();

    // `check` reads the pair: a key that is not the certificate's is named.
    self_signed(&dir, "other");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "tls_key_file = \"console.key\"",
            "tls_key_file = \"other.key\"",
        ),
    )
    .unwrap();
    let out = Command::new(support::binary())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("http.tls_cert_file")
            && err.contains("other.key")
            && err.contains("does not go with"),
        "{err}"
    );
}

#[test]
fn a_stop_while_the_node_starts_shuts_it_down_cleanly() {
    // SIGTERM right after the console listens, while the cameras and models are still
    // starting: the handler was only installed once everything had started, so the default
    // action killed the process (exit by signal 15, events left open).
    let dir = support::artifacts_dir("console-early-stop");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let broker = support::Mosquitto::start();
    let port = support::free_port();
    let config = dir.join("config.toml");
    support::StreetCamera {
        mqtt: &format!("url = \"{}\"", broker.url()),
        sections: &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"SW_TEST_CONSOLE_TOKEN\""
        ),
        id: "cam-early",
        clip: &clip,
        pace: 1.0,
        camera: "",
        dwell: 6.0,
        zones: "",
    }
    .write(&config);
    let mut daemon = Daemon::start(
        &config,
        &dir.join("daemon.log"),
        &[("SW_TEST_CONSOLE_TOKEN", TOKEN)],
    );
    assert!(
        support::wait_for_port(port, Duration::from_secs(30)),
        "{}",
        daemon.log_text()
    );
    // `stop` sends SIGTERM and asserts exit status 0.
    daemon.stop();
    assert!(
        daemon.log_text().contains("shutting down"),
        "{}",
        daemon.log_text()
    );
}
