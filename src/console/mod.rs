//! The operator console: an HTTP server (`[http]`) with the live view, the zone editor, the
//! event browser, the API they use, and Prometheus metrics. Pages and scripts are compiled into
//! the binary; nothing is built or fetched separately.
//!
//! Every page, read and photo needs a login (`auth.rs`): accounts with roles (`admin` edits
//! zones, `operator` reviews and dispatches, `grid_worker` sees the events of their grids and
//! marks them cleared); the `[http]` token acts as an admin for automation. Only `/healthz`
//! and the login page are open. No secret (tokens, passwords, credentials in camera urls)
//! appears in an answer.

mod api;
mod auth;
mod metrics;
mod review;
mod server;
mod zones;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};

use crate::config::LoadedConfig;
use crate::ledger::Ledger;
use crate::live::LiveView;
use crate::mqtt::Delivery;
use crate::stats::StatsBoard;
use crate::supervisor::ReloadSummary;

/// Largest request body accepted (a camera's zones as JSON are a few KiB).
const MAX_BODY: usize = 256 * 1024;

/// Something only the run loop (which owns the cameras) can do.
// Requests are a few a minute at most: boxing the review would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ConsoleRequest {
    /// Re-read the config file and apply it; answers with what changed.
    Reload(oneshot::Sender<Result<ReloadSummary, String>>),
    /// Record a review change and tell the camera what it asks.
    Review {
        /// The event.
        event_id: String,
        /// The change.
        request: crate::review::ReviewRequest,
        /// Who.
        actor: crate::review::Actor,
        /// The worker's photo, already stored.
        photo: Option<crate::review::ReviewPhoto>,
        /// The answer.
        reply: oneshot::Sender<Result<crate::review::ReviewMessage, crate::review::ReviewError>>,
    },
    /// Lift a suppression.
    Unsuppress {
        /// Its id.
        id: i64,
        /// The answer.
        reply: oneshot::Sender<Result<crate::ledger::Suppression, String>>,
    },
}

/// What the console's handlers share.
pub struct Console {
    /// The config in force (replaced after each reload).
    pub config: Arc<RwLock<LoadedConfig>>,
    /// Latest frames.
    pub live: LiveView,
    /// Camera figures.
    pub stats: StatsBoard,
    /// The outbox, for metrics.
    pub delivery: Arc<Delivery>,
    /// The ledger, for the event browser.
    pub ledger: Mutex<Ledger>,
    /// To the run loop.
    pub requests: mpsc::UnboundedSender<ConsoleRequest>,
    /// The `[http]` token: an admin's bearer token for automation.
    token: Option<String>,
    /// A hash of a password nobody knows: a login with an unknown name is checked against it,
    /// so it takes as long as one with a known name.
    dummy_hash: String,
    /// Writes the photos workers attach to a clearance.
    photos: crate::evidence::EvidenceStore,
    /// The evidence folder, canonical: no file outside it is served.
    evidence_root: PathBuf,
    /// Serialises config edits, so two saves never interleave.
    edit: tokio::sync::Mutex<()>,
    /// Served over HTTPS: session cookies are marked `Secure`.
    https: bool,
    /// In a cluster: what this node knows of it (set once the node has joined).
    pub cluster: std::sync::OnceLock<Arc<Mutex<crate::cluster::ClusterView>>>,
    /// In a cluster: the city's cameras in etcd, where the zone editor saves when they are in
    /// use.
    pub catalog: std::sync::OnceLock<Arc<crate::cluster::Catalog>>,
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The token cannot be read.
    #[error("[http] {0}")]
    Token(String),
    /// The ledger cannot be opened.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The certificate or key cannot be used.
    #[error("[http] {0}")]
    Tls(String),
    /// The address cannot be listened on.
    #[error("[http] listen {addr}: {why}")]
    Listen {
        /// Address.
        addr: String,
        /// Cause.
        why: String,
    },
}

impl Console {
    /// The console's state for a loaded config and its `[http]` table.
    pub fn new(
        loaded: &LoadedConfig,
        http: &crate::config::HttpConfig,
        live: LiveView,
        stats: StatsBoard,
        delivery: Arc<Delivery>,
        requests: mpsc::UnboundedSender<ConsoleRequest>,
    ) -> Result<Self, ConsoleError> {
        let token = match (&http.token_file, &http.token_env) {
            (Some(f), _) => Some(
                std::fs::read_to_string(loaded.path_of(f))
                    .map_err(|e| ConsoleError::Token(format!("token_file: {e}")))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
            (None, Some(var)) => std::env::var(var).ok().map(|v| v.trim().to_string()),
            (None, None) => None,
        }
        .filter(|t| !t.is_empty());
        let ledger = Ledger::open(&loaded.storage_dir())?;
        if token.is_none() && ledger.accounts().map(|a| a.is_empty()).unwrap_or(true) {
            tracing::warn!(
                "console: no accounts and no [http] token: nobody can log in; add one with `streetwatch user add NAME --role admin`"
            );
        }
        let evidence = loaded.evidence_dir();
        let _ = std::fs::create_dir_all(&evidence);
        Ok(Self {
            config: Arc::new(RwLock::new(loaded.clone())),
            live,
            stats,
            delivery,
            ledger: Mutex::new(ledger),
            requests,
            token,
            dummy_hash: crate::review::accounts::hash_password(
                &crate::review::accounts::new_secret(),
            )
            .unwrap_or_default(),
            photos: crate::evidence::EvidenceStore::new(evidence.clone()),
            evidence_root: evidence.canonicalize().unwrap_or(evidence),
            edit: tokio::sync::Mutex::new(()),
            https: http.tls_cert_file.is_some(),
            cluster: std::sync::OnceLock::new(),
            catalog: std::sync::OnceLock::new(),
        })
    }

    /// The config in force.
    fn loaded(&self) -> LoadedConfig {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

/// A JSON error answer: `{"error": "..."}`.
pub(crate) fn problem(status: StatusCode, error: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": error.into() }))).into_response()
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    use axum::routing::{delete, post};
    // A grid worker's page goes to their worklist; everyone else's to the live view.
    let page =
        |html: &'static str| move |auth::PageViewer(_): auth::PageViewer| async move { Html(html) };
    Router::new()
        .route(
            "/",
            get(|auth::PageViewer(a): auth::PageViewer| async move {
                if a.role == crate::review::Role::GridWorker {
                    axum::response::Redirect::to("/grid").into_response()
                } else {
                    Html(INDEX).into_response()
                }
            }),
        )
        .route("/login", get(|| async { Html(LOGIN_PAGE) }))
        .route("/zones", get(page(ZONES_PAGE)))
        .route("/events", get(page(EVENTS_PAGE)))
        .route("/grid", get(page(GRID_PAGE)))
        .route("/cluster", get(page(CLUSTER_PAGE)))
        .route(
            "/console.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
        .route(
            "/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/healthz", get(api::healthz))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/metrics", get(metrics::metrics))
        .route("/api/cluster", get(api::cluster))
        .route("/api/cameras", get(api::cameras))
        .route("/api/cameras/{id}/snapshot.jpg", get(api::snapshot))
        .route("/api/cameras/{id}/live", get(api::live))
        .route("/api/cameras/{id}/zones", put(zones::save))
        .route("/api/events", get(api::events))
        .route("/api/events/{id}", get(api::event))
        .route(
            "/api/events/{id}/review",
            post(review::review).layer(DefaultBodyLimit::max(review::MAX_PHOTO_BODY)),
        )
        .route("/api/suppressions", get(review::suppressions))
        .route("/api/suppressions/{id}", delete(review::unsuppress))
        .route("/evidence/{*path}", get(api::evidence))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

/// The console's TLS acceptor when `[http]` names a certificate and key (paths relative to
/// the config file), None for plain HTTP.
pub fn tls_acceptor(
    loaded: &LoadedConfig,
    http: &crate::config::HttpConfig,
) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    match (&http.tls_cert_file, &http.tls_key_file) {
        (Some(cert), Some(key)) => {
            crate::tls::acceptor(&loaded.path_of(cert), &loaded.path_of(key)).map(Some)
        }
        (None, None) => Ok(None),
        _ => Err("give both tls_cert_file and tls_key_file, or neither".into()),
    }
}

/// Listens on `[http] listen` and serves (over HTTPS when `[http]` has a certificate) until
/// `stop` resolves.
pub async fn serve(
    console: Arc<Console>,
    loaded: &LoadedConfig,
    http: &crate::config::HttpConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, ConsoleError> {
    let tls = tls_acceptor(loaded, http).map_err(ConsoleError::Tls)?;
    let listen = &http.listen;
    let listener =
        tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ConsoleError::Listen {
                addr: listen.to_string(),
                why: e.to_string(),
            })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "console on {scheme}://{listen}/ (zone editor /zones, events /events, /metrics)"
    );
    let app = router(console);
    Ok(tokio::spawn(server::serve(listener, app, tls, stop)))
}

const INDEX: &str = include_str!("assets/index.html");
const ZONES_PAGE: &str = include_str!("assets/zones.html");
const CLUSTER_PAGE: &str = include_str!("assets/cluster.html");
const EVENTS_PAGE: &str = include_str!("assets/events.html");
const LOGIN_PAGE: &str = include_str!("assets/login.html");
const GRID_PAGE: &str = include_str!("assets/grid.html");
const STYLE: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");
