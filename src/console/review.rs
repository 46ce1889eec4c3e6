//! Review changes from the console (`POST /api/events/{id}/review`) and the suppressions that
//! false alarms leave (`GET /api/suppressions`, `DELETE /api/suppressions/{id}`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use tokio::sync::oneshot;

use super::auth::{not_staff, Viewer};
use super::{problem, Console, ConsoleRequest};
use crate::review::{ReviewError, ReviewPhoto, ReviewRequest};

/// Largest review body: a worker's photo (the page shrinks it to 1600 px first) in base64.
pub const MAX_PHOTO_BODY: usize = 6 * 1024 * 1024;

/// The HTTP status of a refused change.
fn status_of(e: &ReviewError) -> StatusCode {
    match e {
        ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
        ReviewError::Forbidden(_) => StatusCode::FORBIDDEN,
        ReviewError::Conflict(_) | ReviewError::Elsewhere(_) => StatusCode::CONFLICT,
        ReviewError::Invalid(_) => StatusCode::BAD_REQUEST,
        ReviewError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST /api/events/{id}/review` with `{"state", "reason", "note", "unit", "due",
/// "photo_base64"}`: 200 with the new state and the review message; 400 for a bad request,
/// 403 outside the caller's role or grid, 404 for no such event, 409 for a change the state
/// machine refuses.
pub async fn review(
    State(c): State<Arc<Console>>,
    Viewer(actor): Viewer,
    Path(id): Path<String>,
    body: Result<Json<ReviewRequest>, JsonRejection>,
) -> Response {
    let Json(mut req) = match body {
        Ok(b) => b,
        // 413 for a body over the limit, 400 or 415 for one that is not a review.
        Err(e) => {
            return problem(
                e.status(),
                format!(
                    "{}: send JSON {{\"state\": ..., \"reason\": ..., \"note\": ...}}",
                    e.body_text()
                ),
            )
        }
    };
    // Who acts is the login, never the body.
    req.by = None;
    let facts = match c.ledger.lock().map(|l| l.event_facts(&id)) {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return problem(StatusCode::NOT_FOUND, format!("no event {id:?}")),
        Ok(Err(e)) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger unavailable"),
    };
    // Checked before anything is stored: a photo from outside the grid is never written.
    if let Err(e) = crate::review::check(&facts, &req, &actor) {
        return problem(status_of(&e), e.to_string());
    }
    let photo = match req.photo_base64.take() {
        Some(b64) => match store_photo(&c, &facts.camera, &id, &b64).await {
            Ok(p) => Some(p),
            Err(resp) => return resp,
        },
        None => None,
    };
    let (reply, answer) = oneshot::channel();
    let asked = c.requests.send(ConsoleRequest::Review {
        event_id: id,
        request: req,
        actor,
        photo,
        reply,
    });
    if asked.is_err() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    }
    match answer.await {
        Ok(Ok(msg)) => {
            Json(serde_json::json!({ "state": msg.state, "review": msg })).into_response()
        }
        Ok(Err(e)) => problem(status_of(&e), e.to_string()),
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down"),
    }
}

/// Decodes a worker's photo (any common format), writes it as JPEG in the evidence folder.
async fn store_photo(
    c: &Arc<Console>,
    camera: &str,
    event_id: &str,
    b64: &str,
) -> Result<ReviewPhoto, Response> {
    let bad = |why: String| problem(StatusCode::BAD_REQUEST, why);
    // A data URL's prefix is allowed: it is what a browser's canvas gives.
    let data = b64.split_once("base64,").map_or(b64, |(_, d)| d);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad(format!("photo_base64 is not base64: {e}")))?;
    let (c2, camera, event_id) = (c.clone(), camera.to_string(), event_id.to_string());
    let tz = c.loaded().node_tz();
    let stored = tokio::task::spawn_blocking(move || {
        let img = image::load_from_memory(&bytes)
            .map_err(|e| format!("photo_base64 is not a picture: {e}"))?
            .to_rgb8();
        let now = chrono::Utc::now();
        let day = now.with_timezone(&tz).format("%Y-%m-%d").to_string();
        c2.photos
            .save_review_photo(
                &img,
                &camera,
                &day,
                &event_id,
                &format!("cleared-{}", now.timestamp_millis()),
            )
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| bad(e.to_string()))?;
    match stored {
        Ok((path, sha256)) => Ok(ReviewPhoto { path, sha256 }),
        Err(e) if e.starts_with("photo_base64") => Err(bad(e)),
        Err(e) => Err(problem(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// `GET /api/suppressions`: the suppressions in force (operators and admins).
pub async fn suppressions(State(c): State<Arc<Console>>, Viewer(actor): Viewer) -> Response {
    if let Some(r) = not_staff(&actor) {
        return r;
    }
    match c.ledger.lock().map(|l| l.active_suppressions(None)) {
        Ok(Ok(list)) => Json(serde_json::json!({ "suppressions": list })).into_response(),
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "ledger unavailable"),
    }
}

/// `DELETE /api/suppressions/{id}`: lifts one (operators and admins): the thing may raise
/// events again.
pub async fn unsuppress(
    State(c): State<Arc<Console>>,
    Viewer(actor): Viewer,
    Path(id): Path<i64>,
) -> Response {
    if let Some(r) = not_staff(&actor) {
        return r;
    }
    let (reply, answer) = oneshot::channel();
    if c.requests
        .send(ConsoleRequest::Unsuppress { id, reply })
        .is_err()
    {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    }
    match answer.await {
        Ok(Ok(s)) => {
            tracing::info!(suppression = id, by = %actor.name, "suppression lifted");
            Json(serde_json::json!({ "removed": s })).into_response()
        }
        Ok(Err(e)) => problem(StatusCode::NOT_FOUND, e),
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down"),
    }
}
