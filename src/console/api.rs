//! Read-only API: health, cameras, live frames (with zone and detection overlays), events with
//! their evidence, and the evidence files themselves (never a file outside the evidence folder).

use std::path::{Component, Path as FsPath};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::{not_staff, Viewer};
use super::{problem, Console};
use crate::evidence::{Marker, BOX_COLOR, ZONE_COLOR};
use crate::geometry::{BBox, Point};
use crate::ledger::IncidentRecord;

/// `GET /healthz`: 200 while the node runs (for load balancers and service managers, no
/// login needed); with a login, a summary of cameras and delivery too.
pub async fn healthz(State(c): State<Arc<Console>>, headers: axum::http::HeaderMap) -> Response {
    if c.actor_of(&headers).is_none() {
        return Json(serde_json::json!({ "status": "ok" })).into_response();
    }
    let cams = c.stats.cameras();
    let online = cams
        .values()
        .filter(|s| s.state == crate::source::CameraState::Online)
        .count();
    Json(serde_json::json!({
        "status": "ok",
        "cameras": cams.len(),
        "cameras_online": online,
        "mqtt_connected": c.delivery.connected.load(std::sync::atomic::Ordering::SeqCst),
        "outbox_backlog": c.delivery.backlog().messages,
    }))
    .into_response()
}

/// `GET /api/cluster` (operators and admins): the cluster as etcd has it, the same on every
/// node's console (`streetwatch cluster status --json`), with this node's id.
pub async fn cluster(
    State(c): State<Arc<Console>>,
    super::auth::Viewer(a): super::auth::Viewer,
) -> Response {
    if let Some(r) = super::auth::not_staff(&a) {
        return r;
    }
    let loaded = c.loaded();
    let Some(cfg) = &loaded.config.cluster else {
        return super::problem(
            axum::http::StatusCode::NOT_FOUND,
            "this node runs alone: its config has no [cluster] table",
        );
    };
    let cameras = loaded.enabled_cameras();
    match crate::cluster::status(cfg, &cameras).await {
        Ok(status) => Json(serde_json::json!({
            "node": loaded.config.node.id,
            "nodes": status.nodes,
            "owners": status.owners,
            "unowned": status.unowned,
            "cameras_from": if c.catalog.get().is_some_and(|k| k.in_use()) { "etcd" } else { "file" },
        }))
        .into_response(),
        Err(e) => super::problem(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the cluster from etcd {:?}: {e}", cfg.etcd),
        ),
    }
}

/// One camera as the console shows it.
#[derive(Debug, Serialize)]
struct CameraView {
    id: String,
    name: String,
    /// The url with any `user:password@` masked.
    url: String,
    enabled: bool,
    state: Option<crate::source::CameraState>,
    fps: f64,
    last_frame_time: Option<String>,
    open_incidents: usize,
    zones: Vec<ZoneView>,
    /// Size of the latest frame, when there is one.
    frame: Option<[u32; 2]>,
}

/// A zone as the editor edits it.
#[derive(Debug, Serialize)]
pub(super) struct ZoneView {
    pub id: String,
    pub name: String,
    pub kind: crate::scene::ZoneKind,
    pub polygon: Vec<[f64; 2]>,
    pub dwell_seconds: f64,
    pub schedule: Vec<String>,
    pub grid: String,
    pub responsible_unit: String,
    pub enabled: bool,
}

/// `GET /api/cameras`: every camera of the config with its state and zones.
pub async fn cameras(State(c): State<Arc<Console>>, Viewer(a): Viewer) -> Response {
    if let Some(r) = not_staff(&a) {
        return r;
    }
    let loaded = c.loaded();
    let stats = c.stats.cameras();
    let list: Vec<CameraView> = loaded
        .config
        .cameras
        .iter()
        .map(|cam| {
            let s = stats.get(&cam.id);
            CameraView {
                id: cam.id.clone(),
                name: cam.name.clone(),
                url: crate::source::redact(&cam.url),
                enabled: cam.enabled,
                state: s.map(|s| s.state),
                fps: s.map_or(0.0, |s| s.fps),
                last_frame_time: s.and_then(|s| s.last_frame_time.clone()),
                open_incidents: s.map_or(0, |s| s.open_incidents),
                zones: cam
                    .zones
                    .iter()
                    .map(|z| ZoneView {
                        id: z.id.clone(),
                        name: z.name.clone(),
                        kind: z.kind,
                        polygon: z.polygon.clone(),
                        dwell_seconds: z.dwell_seconds,
                        schedule: z.schedule.clone(),
                        grid: z.grid.clone(),
                        responsible_unit: z.responsible_unit.clone(),
                        enabled: z.enabled,
                    })
                    .collect(),
                frame: c
                    .live
                    .get(&cam.id)
                    .map(|f| [f.image.width(), f.image.height()]),
            }
        })
        .collect();
    Json(list).into_response()
}

/// `?overlay=zones,detections` of a snapshot.
#[derive(Debug, Deserialize)]
pub struct SnapshotQuery {
    #[serde(default)]
    overlay: String,
}

/// `GET /api/cameras/{id}/snapshot.jpg`: the latest frame as JPEG, optionally with the zones
/// and the detections drawn on it.
pub async fn snapshot(
    State(c): State<Arc<Console>>,
    Viewer(a): Viewer,
    Path(id): Path<String>,
    Query(q): Query<SnapshotQuery>,
) -> Response {
    if let Some(r) = not_staff(&a) {
        return r;
    }
    let Some(frame) = c.live.get(&id) else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("camera {id:?} has no frame yet (unknown, disabled, or still connecting)"),
        );
    };
    let zones: Vec<Vec<Point>> = if q.overlay.contains("zones") {
        c.loaded()
            .camera(&id)
            .map(|cam| {
                cam.zones
                    .iter()
                    .map(|z| {
                        z.polygon
                            .iter()
                            .map(|p| Point {
                                x: p[0] as f32,
                                y: p[1] as f32,
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let detections = q.overlay.contains("detections");
    let encoded = tokio::task::spawn_blocking(move || {
        let mut img = (*frame.image).clone();
        if !zones.is_empty() || detections {
            let marker = Marker::load();
            for z in &zones {
                marker.polygon(&mut img, z, ZONE_COLOR);
            }
            if detections {
                let (w, h) = (img.width() as f32, img.height() as f32);
                for d in &frame.detections {
                    let b = BBox::new(d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]).scale(w, h);
                    marker.labelled_box(
                        &mut img,
                        b,
                        &format!("{} {:.2}", d.label, d.score),
                        BOX_COLOR,
                    );
                }
            }
        }
        crate::picture::encode_jpeg(&img, 85)
    })
    .await;
    match encoded {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        _ => problem(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the frame"),
    }
}

/// `GET /api/cameras/{id}/live`: time, size and detections of the latest frame.
pub async fn live(
    State(c): State<Arc<Console>>,
    Viewer(a): Viewer,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = not_staff(&a) {
        return r;
    }
    let tz = c
        .loaded()
        .camera(&id)
        .map_or(chrono_tz::Asia::Shanghai, |cam| c.loaded().camera_tz(cam));
    match c.live.get(&id) {
        Some(f) => Json(serde_json::json!({
            "time": crate::event::local_time(f.time, tz),
            "width": f.image.width(),
            "height": f.image.height(),
            "detections": f.detections,
        }))
        .into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("camera {id:?} has no frame yet"),
        ),
    }
}

/// Filters and paging of `GET /api/events`.
#[derive(Debug, Deserialize)]
pub struct EventQuery {
    since: Option<String>,
    until: Option<String>,
    kind: Option<String>,
    zone: Option<String>,
    grid: Option<String>,
    camera: Option<String>,
    /// Review state (`pending`, ...), or `open` for every state before `closed`.
    state: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    50
}

/// An event in the browser's list.
#[derive(Debug, Serialize)]
struct EventRow {
    #[serde(flatten)]
    record: RecordView,
    /// URL of the latest crop still kept.
    crop_url: Option<String>,
}

/// The fields of an incident the browser shows.
#[derive(Debug, Serialize)]
struct RecordView {
    event_id: String,
    kind: String,
    category_code: String,
    category_name: String,
    camera: String,
    camera_name: String,
    zone: String,
    zone_name: String,
    grid: String,
    responsible_unit: String,
    road_section: String,
    shop: String,
    label: String,
    start_time: String,
    last_seen: String,
    end_time: Option<String>,
    end_reason: Option<String>,
    dwell_seconds: f64,
    relapse: bool,
    count_7d: u32,
    count_30d: u32,
    review_state: String,
}

impl RecordView {
    fn of(i: &IncidentRecord, tz: chrono_tz::Tz) -> Self {
        let t = |t: DateTime<Utc>| crate::event::local_time(t, tz);
        Self {
            event_id: i.event_id.clone(),
            kind: i.kind.clone(),
            category_code: i.category_code.clone(),
            category_name: i.category_name.clone(),
            camera: i.camera.clone(),
            camera_name: i.camera_name.clone(),
            zone: i.zone.clone(),
            zone_name: i.zone_name.clone(),
            grid: i.grid.clone(),
            responsible_unit: i.responsible_unit.clone(),
            road_section: i.road_section.clone(),
            shop: i.shop.clone(),
            label: i.label.clone(),
            start_time: t(i.start),
            last_seen: t(i.last_seen),
            end_time: i.end.map(t),
            end_reason: i.end_reason.clone(),
            dwell_seconds: i.dwell_seconds(),
            relapse: i.relapse,
            count_7d: i.count_7d,
            count_30d: i.count_30d,
            review_state: i.review_state.clone(),
        }
    }
}

impl Console {
    /// The URL of an evidence file, if it lies in the evidence folder.
    fn evidence_url(&self, path: &str) -> Option<String> {
        let p = FsPath::new(path).canonicalize().ok()?;
        let rel = p.strip_prefix(&self.evidence_root).ok()?;
        Some(format!("/evidence/{}", rel.display()))
    }
}

/// `GET /api/events`: events that started in a period (default the last 7 days), newest
/// first, filtered by kind, zone, grid and camera, `limit` (at most 500) from `offset`.
pub async fn events(
    State(c): State<Arc<Console>>,
    Viewer(viewer): Viewer,
    Query(q): Query<EventQuery>,
) -> Response {
    let tz = c.loaded().node_tz();
    let now = Utc::now();
    let bound = |flag: &str, v: &Option<String>, default: DateTime<Utc>| match v {
        Some(s) => crate::report::parse_instant(flag, s, now, tz).map_err(|e| e.to_string()),
        None => Ok(default),
    };
    let (since, until) = match (
        bound("since", &q.since, now - chrono::Duration::days(7)),
        bound("until", &q.until, now + chrono::Duration::days(1)),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let all = match c.ledger.lock().map(|l| l.incidents_between(since, until)) {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger unavailable"),
    };
    let matches = |want: &Option<String>, have: &str| {
        want.as_deref().is_none_or(|w| w.is_empty() || w == have)
    };
    let mut hits: Vec<&IncidentRecord> = all
        .iter()
        .filter(|i| {
            matches(&q.kind, &i.kind)
                && matches(&q.zone, &i.zone)
                && matches(&q.grid, &i.grid)
                && matches(&q.camera, &i.camera)
                && viewer.covers(&i.grid)
                && match q.state.as_deref() {
                    None | Some("") => true,
                    Some("open") => !matches!(i.review_state.as_str(), "closed" | "false_alarm"),
                    Some(s) => i.review_state == s,
                }
        })
        .collect();
    // Newest first; with a state filter, what has waited longest comes first (a worklist).
    if q.state.as_deref().is_none_or(str::is_empty) {
        hits.reverse();
    }
    let total = hits.len();
    let rows: Vec<EventRow> = hits
        .into_iter()
        .skip(q.offset)
        .take(q.limit.min(500))
        .map(|i| EventRow {
            record: RecordView::of(i, tz),
            crop_url: i.crop.as_deref().and_then(|p| c.evidence_url(p)),
        })
        .collect();
    Json(serde_json::json!({ "total": total, "offset": q.offset, "events": rows })).into_response()
}

/// `GET /api/events/{id}`: one event with its messages, evidence files and state changes.
pub async fn event(
    State(c): State<Arc<Console>>,
    Viewer(viewer): Viewer,
    Path(id): Path<String>,
) -> Response {
    let tz = c.loaded().node_tz();
    let found = c.ledger.lock().ok().and_then(|l| {
        let record = l.incident(&id).ok()??;
        let files = l.evidence_of(&id).ok()?;
        let messages = l.messages_of(&id).ok()?;
        let changes = l.state_changes(&id).ok()?;
        let reviews = l.reviews_of(&id).ok()?;
        Some((record, files, messages, changes, reviews))
    });
    let Some((record, files, messages, changes, reviews)) = found else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no event {id:?} in the ledger"),
        );
    };
    if !viewer.covers(&record.grid) {
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "{} works in other grids than {:?}",
                viewer.name, record.grid
            ),
        );
    }
    // What this login may do with it now, so pages need no copy of the state machine.
    let review_actions: Vec<&str> = crate::review::ReviewState::parse(&record.review_state)
        .map(|now| {
            now.next()
                .iter()
                .filter(|to| viewer.role.may_set(**to))
                .map(|to| to.as_str())
                .collect()
        })
        .unwrap_or_default();
    let reviews: Vec<serde_json::Value> = reviews
        .iter()
        .map(|r| {
            serde_json::json!({
                "seq": r.seq,
                "at": crate::event::local_time(r.at, tz),
                "by": r.by,
                "role": r.role,
                "from": r.from,
                "to": r.to,
                "reason": r.reason,
                "note": r.note,
                "unit": r.unit,
                "due": r.due,
                "photo_url": r.photo_path.as_deref().and_then(|p| c.evidence_url(p)),
            })
        })
        .collect();
    let evidence: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "kind": f.kind,
                "seq": f.seq,
                "sha256": f.sha256,
                "deleted": f.deleted,
                "url": if f.deleted { None } else { c.evidence_url(&f.path) },
            })
        })
        .collect();
    let changes: Vec<serde_json::Value> = changes
        .into_iter()
        .map(|(at, state, detail)| {
            serde_json::json!({"at": crate::event::local_time(at, tz), "state": state, "detail": detail})
        })
        .collect();
    Json(serde_json::json!({
        "event": RecordView::of(&record, tz),
        "evidence": evidence,
        "messages": messages,
        "state_changes": changes,
        "reviews": reviews,
        "review_actions": review_actions,
    }))
    .into_response()
}

/// `GET /evidence/{path}`: an evidence JPEG. Only plain relative paths inside the evidence
/// folder are served; `..`, absolute paths and links leading out are refused.
pub async fn evidence(
    State(c): State<Arc<Console>>,
    Viewer(viewer): Viewer,
    Path(path): Path<String>,
) -> Response {
    let rel = FsPath::new(&path);
    if rel
        .components()
        .any(|part| !matches!(part, Component::Normal(_)))
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "not a path inside the evidence folder",
        );
    }
    let Ok(full) = c.evidence_root.join(rel).canonicalize() else {
        return problem(
            StatusCode::NOT_FOUND,
            "no such evidence file (deleted by retention?)",
        );
    };
    if !full.starts_with(&c.evidence_root) {
        return problem(
            StatusCode::BAD_REQUEST,
            "not a path inside the evidence folder",
        );
    }
    if viewer.role == crate::review::Role::GridWorker {
        // A photo is named after its event: a worker sees those of their grids only.
        let grid = rel
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.get(..26))
            .and_then(|id| c.ledger.lock().ok()?.incident(id).ok()?)
            .map(|i| i.grid);
        if !grid.is_some_and(|g| viewer.covers(&g)) {
            return problem(
                StatusCode::FORBIDDEN,
                "this photo belongs to another grid's event",
            );
        }
    }
    match tokio::task::spawn_blocking(move || std::fs::read(full))
        .await
        .map_err(|_| ())
        .and_then(|r| r.map_err(|_| ()))
    {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response(),
        Err(_) => problem(StatusCode::NOT_FOUND, "no such evidence file"),
    }
}
