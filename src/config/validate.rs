//! Checks that go beyond types: geometry, ids, schedules, models, storage.

use std::collections::HashSet;

use super::locate::PathSeg::{self, Index, Key};
use super::{LoadedConfig, ZoneConfig};
use crate::domain::schedule::Schedule;
use crate::geometry::{polygon_self_intersects, Point};

/// One semantic problem, located by its path in the config tree.
pub(super) struct Problem {
    pub path: Vec<PathSeg>,
    pub message: String,
}

/// Why a configured password variable cannot be used (unset or empty); None when it can.
fn unset_env(var: &Option<String>) -> Option<String> {
    let var = var.as_ref()?;
    std::env::var(var)
        .map_or(true, |v| v.is_empty())
        .then(|| format!("the environment variable {var} is not set or is empty"))
}

pub(super) fn validate(loaded: &LoadedConfig) -> Vec<Problem> {
    let cfg = &loaded.config;
    let mut out = Vec::new();
    let mut push = |path: Vec<PathSeg>, message: String| out.push(Problem { path, message });

    if cfg.node.time_zone.parse::<chrono_tz::Tz>().is_err() {
        push(
            vec![Key("node"), Key("time_zone")],
            format!(
                "unknown time zone {:?}: use an IANA name such as \"Asia/Shanghai\"",
                cfg.node.time_zone
            ),
        );
    }
    for (kind, c) in &cfg.categories.0 {
        if c.code.trim().is_empty() || c.name.trim().is_empty() {
            push(
                vec![Key("categories"), Key(kind.as_str())],
                "give both a code and a name, e.g. { code = \"05-05\", name = \"机动车乱停放\" }"
                    .into(),
            );
        }
    }
    for (i, item) in cfg.node.holidays.iter().enumerate() {
        if let Err(e) = crate::domain::schedule::DateList::parse(std::slice::from_ref(item)) {
            push(
                vec![Key("node"), Key("holidays"), Index(i)],
                format!(
                    "{}; write a date 2026-10-01 or a range 2026-10-01..2026-10-07",
                    e.why
                ),
            );
        }
    }
    let m = &cfg.mqtt;
    let tls = match crate::domain::address::BrokerAddress::parse(&m.url) {
        Ok(a) => {
            let password = m.password_file.is_some() || m.password_env.is_some();
            if m.embedded && !a.is_loopback() && !(m.username.is_some() && password) {
                push(
                    vec![Key("mqtt"), Key("embedded")],
                    format!(
                        "the embedded broker would listen on {}, where the network reaches it, without credentials (anyone could read events and switch zones): keep the url on 127.0.0.1, or set username and password_file / password_env, which the broker then requires",
                        a.host
                    ),
                );
            }
            a.tls
        }
        Err(e) => {
            push(vec![Key("mqtt"), Key("url")], e.to_string());
            false
        }
    };
    let files = [
        ("ca_file", &m.ca_file),
        ("client_cert_file", &m.client_cert_file),
        ("client_key_file", &m.client_key_file),
        ("password_file", &m.password_file),
    ];
    for (field, file) in files {
        let Some(file) = file else { continue };
        if field != "password_file" && !tls {
            push(
                vec![Key("mqtt"), Key(field)],
                "only used with TLS: make the url mqtts://HOST:PORT, or remove this".into(),
            );
        } else if let Err(e) = std::fs::File::open(loaded.path_of(file)) {
            push(
                vec![Key("mqtt"), Key(field)],
                format!("cannot read {}: {e}", loaded.path_of(file).display()),
            );
        }
    }
    if m.client_cert_file.is_some() != m.client_key_file.is_some() {
        let field = if m.client_cert_file.is_some() {
            "client_cert_file"
        } else {
            "client_key_file"
        };
        push(
            vec![Key("mqtt"), Key(field)],
            "give both client_cert_file and client_key_file, or neither".into(),
        );
    }
    if m.password_file.is_some() && m.password_env.is_some() {
        push(
            vec![Key("mqtt"), Key("password_env")],
            "give the password in one place: password_file or password_env, not both".into(),
        );
    }
    if (m.password_file.is_some() || m.password_env.is_some()) && m.username.is_none() {
        let field = if m.password_file.is_some() {
            "password_file"
        } else {
            "password_env"
        };
        push(
            vec![Key("mqtt"), Key(field)],
            "a password needs a username: add `username = \"...\"`".into(),
        );
    }
    if let Some(why) = unset_env(&m.password_env) {
        push(vec![Key("mqtt"), Key("password_env")], why);
    }
    if let Some(c) = &cfg.cluster {
        if c.etcd.is_empty() {
            push(
                vec![Key("cluster"), Key("etcd")],
                "name at least one etcd endpoint, e.g. [\"http://10.0.0.11:2379\"] (all members of the etcd cluster, best)".into(),
            );
        }
        for url in &c.etcd {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                push(
                    vec![Key("cluster"), Key("etcd")],
                    format!("{url:?} is not an etcd endpoint: write \"http://HOST:2379\""),
                );
            }
        }
        if !(2..=3600).contains(&c.lease_ttl_seconds) {
            push(
                vec![Key("cluster"), Key("lease_ttl_seconds")],
                format!(
                    "{} s is out of range: 2 to 3600 (the time a dead node's cameras stay dark; 10 is usual)",
                    c.lease_ttl_seconds
                ),
            );
        }
        if !c.key_prefix.starts_with('/') || !c.key_prefix.ends_with('/') {
            push(
                vec![Key("cluster"), Key("key_prefix")],
                format!(
                    "{:?} must start and end with '/', e.g. \"/streetwatch/\"",
                    c.key_prefix
                ),
            );
        }
        if let Some(url) = &c.ledger_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                push(
                    vec![Key("cluster"), Key("ledger_url")],
                    format!("{url:?} is not a PostgreSQL url: write \"postgres://USER@HOST:5432/DATABASE\""),
                );
            }
            if url.contains(':')
                && url
                    .split('@')
                    .next()
                    .is_some_and(|u| u.matches(':').count() > 1)
            {
                push(
                    vec![Key("cluster"), Key("ledger_url")],
                    "keep the password out of the url: use ledger_password_file or ledger_password_env".into(),
                );
            }
        }
        if c.ledger_password_file.is_some() && c.ledger_password_env.is_some() {
            push(
                vec![Key("cluster"), Key("ledger_password_env")],
                "give the password in one place: ledger_password_file or ledger_password_env, not both".into(),
            );
        }
        if let Some(why) = unset_env(&c.ledger_password_env) {
            push(vec![Key("cluster"), Key("ledger_password_env")], why);
        }
        if let Some(f) = &c.ledger_password_file {
            if let Err(e) = std::fs::read_to_string(loaded.path_of(f)) {
                push(
                    vec![Key("cluster"), Key("ledger_password_file")],
                    format!("cannot read {}: {e}", loaded.path_of(f).display()),
                );
            }
        }
        if c.min_stay_seconds.is_nan() || c.min_stay_seconds < 0.0 {
            push(
                vec![Key("cluster"), Key("min_stay_seconds")],
                "must be 0 or more seconds".into(),
            );
        }
    }
    if let Some(h) = &cfg.http {
        if h.listen.parse::<std::net::SocketAddr>().is_err() {
            push(
                vec![Key("http"), Key("listen")],
                format!(
                    "{:?} is not an address and port: write e.g. \"127.0.0.1:8686\" (\"0.0.0.0:8686\" for every interface)",
                    h.listen
                ),
            );
        }
        if h.token_file.is_some() && h.token_env.is_some() {
            push(
                vec![Key("http"), Key("token_env")],
                "give the token in one place: token_file or token_env, not both".into(),
            );
        }
        if let Some(f) = &h.token_file {
            if let Err(e) = std::fs::read_to_string(loaded.path_of(f)) {
                push(
                    vec![Key("http"), Key("token_file")],
                    format!("cannot read {}: {e}", loaded.path_of(f).display()),
                );
            }
        }
        match (&h.tls_cert_file, &h.tls_key_file) {
            (Some(cert), Some(key)) => {
                if let Err(e) = crate::tls::acceptor(&loaded.path_of(cert), &loaded.path_of(key)) {
                    push(vec![Key("http"), Key("tls_cert_file")], e);
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                let field = if h.tls_cert_file.is_some() {
                    "tls_key_file"
                } else {
                    "tls_cert_file"
                };
                push(
                    vec![Key("http"), Key(field)],
                    "give both tls_cert_file and tls_key_file, or neither".into(),
                );
            }
            (None, None) => {}
        }
    }
    if cfg.outbox.max_messages < 100 {
        push(
            vec![Key("outbox"), Key("max_messages")],
            "must be at least 100".into(),
        );
    }
    if cfg.detector.threads == 0 {
        push(
            vec![Key("detector"), Key("threads")],
            "must be at least 1".into(),
        );
    }
    if cfg.detector.batch_size == 0 {
        push(
            vec![Key("detector"), Key("batch_size")],
            "must be at least 1 (1 = no batching)".into(),
        );
    }
    if cfg.detector.batch_wait_ms > 1000 {
        push(
            vec![Key("detector"), Key("batch_wait_ms")],
            "more than a second of waiting delays every event; use at most 1000".into(),
        );
    }
    if cfg.detector.sessions == 0 {
        push(
            vec![Key("detector"), Key("sessions")],
            "must be at least 1".into(),
        );
    }
    // Durations and fractions: a NaN, an infinity or a negative number would stall or panic a
    // timer later, so they are refused here, where the line can be named.
    let t = &cfg.tracker;
    let i = &cfg.incidents;
    let e = &cfg.evidence;
    let numbers: [(&'static str, &'static str, f64, f64, f64); 19] = [
        (
            "outbox",
            "max_age_seconds",
            cfg.outbox.max_age_seconds,
            60.0,
            365.0 * 86_400.0,
        ),
        (
            "mqtt",
            "stats_every_seconds",
            cfg.mqtt.stats_every_seconds,
            0.5,
            86_400.0,
        ),
        ("tracker", "high_score", t.high_score as f64, 0.0, 1.0),
        ("tracker", "low_score", t.low_score as f64, 0.0, 1.0),
        ("tracker", "match_iou", t.match_iou as f64, 0.0, 1.0),
        (
            "tracker",
            "max_lost_seconds",
            t.max_lost_seconds,
            0.0,
            86_400.0,
        ),
        (
            "tracker",
            "max_lost_stationary_seconds",
            t.max_lost_stationary_seconds,
            0.0,
            86_400.0,
        ),
        (
            "tracker",
            "stationary_tolerance",
            t.stationary_tolerance as f64,
            0.0,
            10.0,
        ),
        (
            "tracker",
            "move_confirm_seconds",
            t.move_confirm_seconds,
            0.0,
            86_400.0,
        ),
        (
            "incidents",
            "update_every_seconds",
            i.update_every_seconds,
            1.0,
            86_400.0,
        ),
        (
            "incidents",
            "end_after_seconds",
            i.end_after_seconds,
            0.0,
            86_400.0,
        ),
        (
            "incidents",
            "relapse_window_seconds",
            i.relapse_window_seconds,
            0.0,
            365.0 * 86_400.0,
        ),
        (
            "incidents",
            "resume_max_gap_seconds",
            i.resume_max_gap_seconds,
            0.0,
            365.0 * 86_400.0,
        ),
        (
            "review",
            "recheck_within_seconds",
            cfg.review.recheck_within_seconds,
            1.0,
            7.0 * 86_400.0,
        ),
        (
            "review",
            "recheck_clear_seconds",
            cfg.review.recheck_clear_seconds,
            0.0,
            86_400.0,
        ),
        (
            "review",
            "session_hours",
            cfg.review.session_hours,
            0.01,
            24.0 * 90.0,
        ),
        (
            "evidence",
            "retention_days",
            e.retention_days,
            0.0,
            36_500.0,
        ),
        (
            "evidence",
            "sweep_every_seconds",
            e.sweep_every_seconds,
            10.0,
            7.0 * 86_400.0,
        ),
        (
            "incidents",
            "better_evidence_margin",
            i.better_evidence_margin as f64,
            0.0,
            1.0,
        ),
    ];
    for (section, field, value, min, max) in numbers {
        if !(value.is_finite() && (min..=max).contains(&value)) {
            push(
                vec![Key(section), Key(field)],
                format!("{value} is outside {min}..={max}"),
            );
        }
    }
    if t.low_score > t.high_score {
        push(
            vec![Key("tracker"), Key("low_score")],
            format!("must not be above high_score ({})", t.high_score),
        );
    }
    if let Err(why) = check_writable(&loaded.storage_dir()) {
        push(
            vec![Key("storage"), Key("dir")],
            format!(
                "storage directory {} is not writable ({why}): create it or point `dir` at a writable folder",
                loaded.storage_dir().display()
            ),
        );
    }

    if cfg.evidence.dir.is_some() {
        if let Err(why) = check_writable(&loaded.evidence_dir()) {
            push(
                vec![Key("evidence"), Key("dir")],
                format!(
                    "evidence directory {} is not writable ({why}): create it or point `dir` at a writable folder",
                    loaded.evidence_dir().display()
                ),
            );
        }
    }

    let models_dir = loaded.models_dir();
    let mut camera_ids = HashSet::new();
    let mut manifests: std::collections::HashMap<&str, Result<(), String>> = Default::default();
    for (ci, cam) in cfg.cameras.iter().enumerate() {
        let at = |rest: &[PathSeg]| {
            let mut p = vec![Key("cameras"), Index(ci)];
            p.extend_from_slice(rest);
            p
        };
        if cam.id.trim().is_empty() {
            push(at(&[Key("id")]), "camera id must not be empty".into());
        } else if !camera_ids.insert(cam.id.as_str()) {
            push(
                at(&[Key("id")]),
                format!(
                    "duplicate camera id {:?}: camera ids must be unique",
                    cam.id
                ),
            );
        } else if !is_topic_safe(&cam.id) {
            push(
                at(&[Key("id")]),
                format!(
                    "camera id {:?} may not contain '/', '+', '#' or spaces (it is used in MQTT topics)",
                    cam.id
                ),
            );
        }
        if cam.url.trim().is_empty() {
            push(at(&[Key("url")]), "camera url must not be empty".into());
        }
        match cam.detect_url.as_deref().map(str::trim) {
            Some("") => push(
                at(&[Key("detect_url")]),
                "must not be empty: give the camera's sub-stream url, or remove the line".into(),
            ),
            Some(d) if d == cam.url.trim() => push(
                at(&[Key("detect_url")]),
                "is the same as url: give the camera's sub-stream (e.g. …/Streaming/Channels/102 \
                 on Hikvision, …&subtype=1 on Dahua), or remove the line"
                    .into(),
            ),
            _ => {}
        }
        if !(cam.detect_every_seconds.is_finite() && cam.detect_every_seconds > 0.0) {
            push(
                at(&[Key("detect_every_seconds")]),
                "must be greater than 0".into(),
            );
        }
        if !(cam.pace.is_finite() && cam.pace >= 0.0) {
            push(at(&[Key("pace")]), "must be 0 or more".into());
        }
        if !(cam.full_detect_seconds.is_finite() && cam.full_detect_seconds >= 0.0) {
            push(
                at(&[Key("full_detect_seconds")]),
                "must be 0 (the model runs on every sampled frame) or more".into(),
            );
        }
        if !(cam.stall_seconds.is_finite() && cam.stall_seconds > cam.detect_every_seconds) {
            push(
                at(&[Key("stall_seconds")]),
                format!(
                    "must be more than detect_every_seconds ({}): a camera is only stuck when \
                     no frame comes for longer than it takes to sample one (30 s is the default)",
                    cam.detect_every_seconds
                ),
            );
        }
        if !(cam.context_every_seconds.is_finite() && cam.context_every_seconds >= 0.0) {
            push(
                at(&[Key("context_every_seconds")]),
                "must be 0 (never) or more seconds".into(),
            );
        }
        if let Some(tz) = &cam.time_zone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                push(
                    at(&[Key("time_zone")]),
                    format!("unknown time zone {tz:?}: use an IANA name such as \"Asia/Shanghai\""),
                );
            }
        }
        // Many cameras share a model: its manifest is read once per check.
        let verdict = manifests
            .entry(cam.model.as_str())
            .or_insert_with(|| model_verdict(&models_dir, &cam.model));
        if let Err(why) = verdict {
            push(at(&[Key("model")]), why.clone());
        }
        let mut zone_ids = HashSet::new();
        for (zi, zone) in cam.zones.iter().enumerate() {
            let zat = |rest: &[PathSeg]| {
                let mut p = at(&[Key("zones"), Index(zi)]);
                p.extend_from_slice(rest);
                p
            };
            if zone.id.trim().is_empty() {
                push(zat(&[Key("id")]), "zone id must not be empty".into());
            } else if !zone_ids.insert(zone.id.as_str()) {
                push(
                    zat(&[Key("id")]),
                    format!(
                        "duplicate zone id {:?} in camera {:?}: zone ids must be unique within a camera",
                        zone.id, cam.id
                    ),
                );
            } else if !is_topic_safe(&zone.id) {
                push(
                    zat(&[Key("id")]),
                    format!(
                        "zone id {:?} may not contain '/', '+', '#' or spaces (it is used in MQTT topics)",
                        zone.id
                    ),
                );
            }
            for (path, message) in check_zone(zone) {
                push(zat(&path), message);
            }
        }
    }
    out
}

/// Geometry, dwell and schedule checks of one zone; paths are relative to the zone.
fn check_zone(zone: &ZoneConfig) -> Vec<(Vec<PathSeg>, String)> {
    let mut out = Vec::new();
    if !zone.kind.is_supported() {
        out.push((
            vec![Key("kind")],
            format!(
                "zone kind {:?} is not handled by this version yet; supported: no_parking, ignore",
                zone.kind
            ),
        ));
    }
    if zone.polygon.len() < 3 {
        out.push((
            vec![Key("polygon")],
            format!(
                "a polygon needs at least 3 points, this one has {}",
                zone.polygon.len()
            ),
        ));
    }
    let mut inside = true;
    for (pi, p) in zone.polygon.iter().enumerate() {
        if !(0.0..=1.0).contains(&p[0]) || !(0.0..=1.0).contains(&p[1]) {
            inside = false;
            out.push((
                vec![Key("polygon"), Index(pi)],
                format!(
                    "point [{}, {}] is outside the frame: coordinates are fractions of the frame width and height, 0..1",
                    p[0], p[1]
                ),
            ));
        }
    }
    if zone.polygon.len() >= 3 && inside {
        let pts: Vec<Point> = zone
            .polygon
            .iter()
            .map(|p| Point::new(p[0] as f32, p[1] as f32))
            .collect();
        if let Some((a, b)) = polygon_self_intersects(&pts) {
            out.push((
                vec![Key("polygon")],
                format!(
                    "the polygon crosses itself (edge {a} intersects edge {b}): reorder the points so the outline does not cross"
                ),
            ));
        }
    }
    if !(zone.dwell_seconds.is_finite() && zone.dwell_seconds >= 0.0) {
        out.push((vec![Key("dwell_seconds")], "must be 0 or more".into()));
    }
    for (si, s) in zone.schedule.iter().enumerate() {
        if let Err(e) = Schedule::parse_entry(s) {
            out.push((vec![Key("schedule"), Index(si)], e.to_string()));
        }
    }
    out
}

fn is_topic_safe(id: &str) -> bool {
    !id.chars()
        .any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace())
}

/// Whether `dir` is (or could be created as) a writable folder, without creating anything:
/// `check` is a dry run, and the daemon makes its folders when it starts.
fn check_writable(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let mut at = dir;
    // The nearest part of the path that exists decides.
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = std::path::Path::new(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Err(format!("{} is not a folder", at.display()));
    }
    let c = std::ffi::CString::new(at.as_os_str().as_bytes())
        .map_err(|_| "the path holds a NUL byte".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(format!(
            "{}: {}",
            at.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Whether a camera's `model` names a manifest in `models_dir` that reads and validates.
fn model_verdict(models_dir: &std::path::Path, model: &str) -> Result<(), String> {
    let path = models_dir.join(format!("{model}.toml"));
    if !path.is_file() {
        return Err(format!(
            "unknown model {model:?}: no manifest {}; available: {}",
            path.display(),
            crate::detector::manifest::available(models_dir).join(", ")
        ));
    }
    crate::detector::manifest::Manifest::load(&path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
