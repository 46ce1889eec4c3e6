//! Saving a camera's zones from the editor: the config file is edited in place (only that
//! camera's `[[cameras.zones]]`; comments, order and every other section stay as written),
//! checked with the same checks as `streetwatch check`, written atomically with the previous
//! version kept as `FILE.bak`, and applied to the running camera without a restart.
//!
//! In a cluster whose cameras live in etcd (`cluster import`), the camera's text in etcd is
//! edited instead, under a check that nobody changed it meanwhile; every node follows the
//! change, and the one that runs the camera applies it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

use super::{problem, Console, ConsoleRequest};

/// The body of `PUT /api/cameras/{id}/zones`: the camera's zones, all of them, in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonesBody {
    zones: Vec<ZoneEdit>,
}

/// What the editor sets of a zone; fields it does not know (`min_area`, `shop`, ...) are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneEdit {
    id: String,
    #[serde(default)]
    name: String,
    kind: String,
    polygon: Vec<[f64; 2]>,
    dwell_seconds: f64,
    #[serde(default)]
    schedule: Vec<String>,
    #[serde(default)]
    grid: String,
    #[serde(default)]
    responsible_unit: String,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Rounds a coordinate to 1/10000 of the frame: finer than any pixel, shorter in the file.
fn coordinate(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// `PUT /api/cameras/{id}/zones` (admins only).
pub async fn save(
    State(c): State<Arc<Console>>,
    viewer: Result<super::auth::Viewer, Response>,
    Path(camera): Path<String>,
    body: Result<Json<ZonesBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let actor = match viewer {
        Ok(super::auth::Viewer(a)) => a,
        Err(r) => return r,
    };
    if let Some(r) = super::auth::not_admin(&actor) {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        // 413 for a body over the limit, 400 or 415 for one that is not a zone list.
        Err(e) => {
            return problem(
                e.status(),
                format!("the body is not a zone list: {}", e.body_text()),
            )
        }
    };
    let _one_at_a_time = c.edit.lock().await;
    if let Some(catalog) = c.catalog.get().filter(|k| k.in_use()) {
        return save_in_cluster(&c, catalog, &camera, &body.zones).await;
    }
    let path = c.loaded().path;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", path.display()),
            )
        }
    };
    let edited = match edit_zones(&text, &camera, &body.zones) {
        Ok(t) => t,
        Err((status, why)) => return problem(status, why),
    };
    // The same checks as `streetwatch check`, on the text about to be written.
    if let Err(errors) = crate::config::parse(&path, &edited) {
        return refused(&errors);
    }
    let backup = match crate::config::write_atomically(&path, Some(&text), &edited) {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if c.requests.send(ConsoleRequest::Reload(tx)).is_err() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    }
    match rx.await {
        Ok(Ok(summary)) => {
            tracing::info!(camera = %camera, "zones saved from the console and applied");
            Json(serde_json::json!({
                "saved": path.display().to_string(),
                "backup": backup.display().to_string(),
                "updated": summary.updated,
                "restarted": summary.restarted,
            }))
            .into_response()
        }
        Ok(Err(e)) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("saved, but not applied: {e}"),
        ),
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "saved, but the node is shutting down",
        ),
    }
}

/// 422 with every problem the checks found; nothing was saved.
fn refused(errors: &crate::config::ConfigErrors) -> Response {
    let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(serde_json::json!({ "error": "the zones do not pass the config checks; nothing was saved", "errors": list })),
    )
        .into_response()
}

/// Saves a camera's zones to its text in etcd; the node that runs it applies them.
async fn save_in_cluster(
    c: &Console,
    catalog: &crate::cluster::Catalog,
    camera: &str,
    zones: &[ZoneEdit],
) -> Response {
    use crate::cluster::CatalogError;
    let unavailable = |e: CatalogError| problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let (mut stored, revision) = match catalog.camera(camera).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                format!("no camera {camera:?} among the city's cameras in etcd"),
            )
        }
        Err(e) => return unavailable(e),
    };
    stored.text = match edit_zones(&stored.text, camera, zones) {
        Ok(t) => t,
        Err((status, why)) => return problem(status, why),
    };
    // The node's file with this camera, through the checks every node will apply.
    let path = c.loaded().path;
    if let Err(errors) = crate::config::city::with_cameras(&path, std::slice::from_ref(&stored)) {
        return refused(&errors);
    }
    match catalog.save(&stored, revision).await {
        Ok(revision) => {
            tracing::info!(
                camera,
                "zones saved from the console to etcd (revision {revision})"
            );
            Json(serde_json::json!({
                "saved": stored.source,
                "revision": revision,
                "message": format!("Saved to {} (revision {revision}); the node that runs the camera applies it within a few seconds.", stored.source),
            }))
            .into_response()
        }
        Err(e @ CatalogError::Changed(_)) => problem(StatusCode::CONFLICT, e.to_string()),
        Err(e) => unavailable(e),
    }
}

/// The config text with camera `camera`'s zones replaced by `zones`.
fn edit_zones(
    text: &str,
    camera: &str,
    zones: &[ZoneEdit],
) -> Result<String, (StatusCode, String)> {
    let mut doc: DocumentMut = text.parse().map_err(|e| {
        (
            StatusCode::CONFLICT,
            format!("the config file does not parse: {e}"),
        )
    })?;
    let cameras = doc
        .get_mut("cameras")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or((
            StatusCode::CONFLICT,
            "the config has no [[cameras]] tables the editor can change".to_string(),
        ))?;
    let table = cameras
        .iter_mut()
        .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(camera))
        .ok_or((
            StatusCode::NOT_FOUND,
            format!("no camera {camera:?} in the config"),
        ))?;
    let old: Vec<Table> = table
        .get("zones")
        .and_then(Item::as_array_of_tables)
        .map(|a| a.iter().cloned().collect())
        .unwrap_or_default();
    let mut new = ArrayOfTables::new();
    for z in zones {
        let mut t = old
            .iter()
            .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(z.id.as_str()))
            .cloned()
            .unwrap_or_default();
        t["id"] = value(z.id.as_str());
        t["name"] = value(z.name.as_str());
        t["kind"] = value(z.kind.as_str());
        let mut polygon = Array::new();
        for p in &z.polygon {
            let mut point = Array::new();
            point.push(coordinate(p[0]));
            point.push(coordinate(p[1]));
            polygon.push(point);
        }
        t["polygon"] = value(polygon);
        t["dwell_seconds"] = value(z.dwell_seconds);
        t["schedule"] = value(z.schedule.iter().map(String::as_str).collect::<Array>());
        t["grid"] = value(z.grid.as_str());
        t["responsible_unit"] = value(z.responsible_unit.as_str());
        if !z.enabled || t.contains_key("enabled") {
            t["enabled"] = value(z.enabled);
        }
        new.push(t);
    }
    table.insert("zones", Item::ArrayOfTables(new));
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cameras_zones_change_and_unknown_fields_stay() {
        let text = r#"# the city's config
[mqtt]
url = "mqtt://10.0.0.2:1883"   # the command center

[[cameras]]
id = "a"
url = "rtsp://x"
  [[cameras.zones]]
  id = "old"
  kind = "garbage_watch"
  polygon = [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]
  min_area = 0.01

[[cameras]]
id = "b"
url = "rtsp://y"
"#;
        let zones = vec![
            ZoneEdit {
                id: "old".into(),
                name: "拐角".into(),
                kind: "garbage_watch".into(),
                polygon: vec![[0.1, 0.1], [0.3, 0.1], [0.3, 0.333333333]],
                dwell_seconds: 60.0,
                schedule: vec![],
                grid: "第八网格".into(),
                responsible_unit: String::new(),
                enabled: true,
            },
            ZoneEdit {
                id: "new".into(),
                name: String::new(),
                kind: "no_parking".into(),
                polygon: vec![[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]],
                dwell_seconds: 180.0,
                schedule: vec!["mon-fri 07:00-21:00".into()],
                grid: String::new(),
                responsible_unit: String::new(),
                enabled: false,
            },
        ];
        let out = edit_zones(text, "a", &zones).unwrap();
        assert!(out.starts_with("# the city's config\n[mqtt]\nurl = \"mqtt://10.0.0.2:1883\"   # the command center\n"), "{out}");
        assert!(out.contains("min_area = 0.01"), "kept: {out}");
        assert!(out.contains("[0.3, 0.3333]"), "rounded: {out}");
        assert!(out.contains("id = \"new\""));
        assert!(out.contains("enabled = false"));
        assert!(
            out.trim_end().ends_with("url = \"rtsp://y\""),
            "camera b untouched: {out}"
        );
        assert_eq!(
            edit_zones(text, "zz", &zones).unwrap_err().0,
            StatusCode::NOT_FOUND
        );
    }
}
