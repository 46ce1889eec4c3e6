//! Who is asking: every page, read and photo of the console needs a login. A browser logs in
//! at `/login` and carries a session cookie (HttpOnly, SameSite=Strict); automation sends
//! `Authorization: Bearer TOKEN` with an account's token (`streetwatch user token NAME`) or
//! the `[http]` token, which acts as an admin.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::{problem, Console};
use crate::review::accounts::{self, Account};
use crate::review::{Actor, Role};

/// Name of the session cookie.
pub const COOKIE: &str = "sw_session";

/// The account behind a request; answers 401 (JSON) when there is none.
#[derive(Debug, Clone)]
pub struct Viewer(pub Actor);

/// The account behind a page request; sends the browser to `/login` when there is none.
#[derive(Debug, Clone)]
pub struct PageViewer(pub Actor);

impl Console {
    /// The account of a request's bearer token or session cookie, if any.
    pub(super) fn actor_of(&self, headers: &HeaderMap) -> Option<Actor> {
        if let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        {
            if self.token.as_deref().is_some_and(|t| same_secret(t, given)) {
                return Some(Actor {
                    name: "token".into(),
                    role: Role::Admin,
                    grids: Vec::new(),
                });
            }
            let ledger = self.ledger.lock().ok()?;
            return ledger
                .account_by_token(&accounts::digest(given))
                .ok()
                .flatten()
                .map(|a| a.actor());
        }
        let session = cookie(headers, COOKIE)?;
        let ledger = self.ledger.lock().ok()?;
        ledger
            .session_account(&accounts::digest(&session), Utc::now())
            .ok()
            .flatten()
            .map(|a| a.actor())
    }
}

impl FromRequestParts<Arc<Console>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        c.actor_of(&parts.headers).map(Viewer).ok_or_else(|| {
            problem(
                StatusCode::UNAUTHORIZED,
                "log in first: POST /api/login, or send Authorization: Bearer <token>",
            )
        })
    }
}

impl FromRequestParts<Arc<Console>> for PageViewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        match c.actor_of(&parts.headers) {
            Some(a) => Ok(PageViewer(a)),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                Err(Redirect::to(&format!("/login?next={}", url_escape(next))).into_response())
            }
        }
    }
}

/// Percent-encodes what would break a query value.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Compares two secrets without an early exit, so timing says nothing about either.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of a cookie in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `POST /api/login` body.
#[derive(Debug, Deserialize)]
pub struct Login {
    name: String,
    password: String,
}

/// `POST /api/login`: checks the password and sets the session cookie; answers the account.
pub async fn login(State(c): State<Arc<Console>>, Json(body): Json<Login>) -> Response {
    let found = c
        .ledger
        .lock()
        .ok()
        .and_then(|l| l.account_for_login(body.name.trim()).ok().flatten());
    // Verify against a fixed hash when there is no such account, so the answer takes as long
    // and does not tell which names exist.
    let (account, hash) = match found {
        Some((a, h)) => (Some(a), h),
        None => (None, c.dummy_hash.clone()),
    };
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(account) = account.filter(|_| ok) else {
        tracing::warn!(name = %body.name, "console login refused");
        return problem(StatusCode::UNAUTHORIZED, "wrong name or password");
    };
    let secret = accounts::new_secret();
    let hours = c.loaded().config.review.session_hours;
    let expires = Utc::now() + chrono::Duration::seconds((hours * 3600.0) as i64);
    let opened = c
        .ledger
        .lock()
        .map_err(|_| "ledger unavailable".to_string())
        .and_then(|l| {
            l.open_session(&accounts::digest(&secret), &account.name, expires)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = opened {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    tracing::info!(name = %account.name, role = account.role.as_str(), "console login");
    // Over HTTPS the browser must never send it in the clear.
    let secure = if c.https { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        (hours * 3600.0) as i64
    );
    ([(header::SET_COOKIE, cookie)], Json(account_view(&account))).into_response()
}

/// `POST /api/logout`: ends the session.
pub async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let (Some(session), Ok(l)) = (cookie(&headers, COOKIE), c.ledger.lock()) {
        let _ = l.close_session(&accounts::digest(&session));
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        Json(serde_json::json!({"logged_out": true})),
    )
        .into_response()
}

/// `GET /api/me`: who is logged in.
pub async fn me(Viewer(a): Viewer) -> Response {
    Json(serde_json::json!({"name": a.name, "role": a.role.as_str(), "grids": a.grids}))
        .into_response()
}

fn account_view(a: &Account) -> serde_json::Value {
    serde_json::json!({"name": a.name, "role": a.role.as_str(), "grids": a.grids})
}

/// The refusal of what only an admin may do, unless `a` is one.
pub fn not_admin(a: &Actor) -> Option<Response> {
    if a.role == Role::Admin {
        None
    } else {
        Some(problem(
            StatusCode::FORBIDDEN,
            format!(
                "only an admin may do this; {} is {}",
                a.name,
                a.role.as_str()
            ),
        ))
    }
}

/// The refusal of what only the command center's staff (operators, admins) may see or do
/// (live views, metrics, suppressions), unless `a` is one of them.
pub fn not_staff(a: &Actor) -> Option<Response> {
    if matches!(a.role, Role::Admin | Role::Operator) {
        None
    } else {
        Some(problem(
            StatusCode::FORBIDDEN,
            format!(
                "for operators and admins; {} is {}",
                a.name,
                a.role.as_str()
            ),
        ))
    }
}
