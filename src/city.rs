//! The city ledger (`[cluster] ledger_url`): one PostgreSQL database holding every node's event
//! messages, so a camera's history follows it to whichever node runs it and `report --ledger
//! postgres://…` covers the whole city.
//!
//! Each node keeps its SQLite ledger as its local truth; a shipper thread sends the messages
//! not yet shipped (the `shipped` column is the durable queue) in batches, idempotently keyed by
//! `(event_id, seq)`, and marks them shipped only once PostgreSQL committed them. A node cut off
//! from PostgreSQL catches up when it is back; nothing lands twice.
//!
//! Messages and review changes are stored: the incidents, their evidence records and state
//! changes follow from the messages exactly as a node's own ledger derives them
//! (`Ledger::record`), and an event's review state from its review changes. Evidence files
//! stay on the node that took them; the messages name them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, Config, NoTls};

use crate::config::{ClusterConfig, LoadedConfig};
use crate::event::{parse_time, EventMessage};
use crate::ledger::{Ledger, ReviewRecord, ShipRow};

/// The city ledger's tables; created by the first node that connects.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS streetwatch_messages (
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,
    node TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    written_ms BIGINT NOT NULL,
    shipped_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    payload TEXT NOT NULL,
    PRIMARY KEY (event_id, seq)
);
CREATE INDEX IF NOT EXISTS streetwatch_messages_place
    ON streetwatch_messages (camera, start_ms);
CREATE TABLE IF NOT EXISTS streetwatch_reviews (
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    by_name TEXT NOT NULL,
    by_role TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT,
    note TEXT NOT NULL,
    unit TEXT,
    due TEXT,
    photo_path TEXT,
    shipped_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, seq)
);
";

/// A camera's recent past in the city ledger, read by the node that takes the camera.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The latest message of each event (JSON).
    pub messages: Vec<String>,
    /// Those events' review changes.
    pub reviews: Vec<ReviewRecord>,
}

/// What a shipper sends in one transaction.
#[derive(Debug, Default)]
pub struct Shipment {
    /// Messages not yet shipped.
    pub messages: Vec<ShipRow>,
    /// Review changes not yet shipped.
    pub reviews: Vec<ReviewRecord>,
}

impl Shipment {
    fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.reviews.is_empty()
    }
}

/// The columns of a review change, in `streetwatch_reviews`'s order after event_id, seq, node.
const REVIEW_COLUMNS: &str =
    "at_ms, by_name, by_role, from_state, to_state, reason, note, unit, due, photo_path";

/// How long a stopping node keeps shipping what waits.
const DRAIN_AT_STOP: Duration = Duration::from_secs(5);

/// Messages sent in one transaction, at most.
const BATCH: usize = 500;

/// Why the city ledger cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CityError {
    /// The url does not parse.
    #[error("[cluster] ledger_url {url:?}: {why}")]
    Url {
        /// The url, without password.
        url: String,
        /// Why.
        why: String,
    },
    /// PostgreSQL refused or failed.
    #[error("city ledger {url}: {why}")]
    Postgres {
        /// The url, without password.
        url: String,
        /// Why.
        why: String,
    },
    /// The password file cannot be read.
    #[error("[cluster] ledger_password_file {path}: {why}")]
    Password {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The local ledger failed.
    #[error(transparent)]
    Local(#[from] crate::ledger::LedgerError),
}

/// The city ledger's password from `ledger_password_file` (first line) or
/// `ledger_password_env`, if one is configured.
pub fn password(loaded: &LoadedConfig, cfg: &ClusterConfig) -> Result<Option<String>, CityError> {
    Ok(
        match (&cfg.ledger_password_file, &cfg.ledger_password_env) {
            (Some(f), _) => {
                let path = loaded.path_of(f);
                let text = std::fs::read_to_string(&path).map_err(|e| CityError::Password {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
                text.lines().next().map(str::to_string)
            }
            (None, Some(var)) => std::env::var(var).ok(),
            (None, None) => None,
        },
    )
}

/// Where the city ledger is and how to log in.
#[derive(Debug, Clone)]
pub struct CityAddress {
    url: String,
    password: Option<String>,
}

impl CityAddress {
    /// The address of `[cluster] ledger_url`, with its password; None without a ledger_url.
    pub fn of(loaded: &LoadedConfig, cfg: &ClusterConfig) -> Result<Option<Self>, CityError> {
        let Some(url) = &cfg.ledger_url else {
            return Ok(None);
        };
        Ok(Some(Self::new(url, password(loaded, cfg)?)))
    }

    /// An address from a url and password.
    pub fn new(url: &str, password: Option<String>) -> Self {
        Self {
            url: url.to_string(),
            password,
        }
    }

    /// Connects (3 s at most) and makes sure the tables exist.
    pub async fn connect(&self) -> Result<CityLedger, CityError> {
        let mut cfg: Config = self.url.parse().map_err(|e| CityError::Url {
            url: self.url.clone(),
            why: format!("{e}"),
        })?;
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        cfg.connect_timeout(Duration::from_secs(3));
        cfg.application_name("streetwatch");
        let failed = |e: tokio_postgres::Error| postgres_error(&self.url, e);
        let (client, connection) = cfg.connect(NoTls).await.map_err(failed)?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("city ledger {url}: connection closed: {e}");
            }
        });
        client.batch_execute(SCHEMA).await.map_err(failed)?;
        Ok(CityLedger {
            client,
            url: self.url.clone(),
        })
    }
}

/// A PostgreSQL error, with the server's own message when there is one.
fn postgres_error(url: &str, e: tokio_postgres::Error) -> CityError {
    CityError::Postgres {
        url: url.to_string(),
        why: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.to_string()),
    }
}

/// A connection to the city ledger.
pub struct CityLedger {
    client: Client,
    url: String,
}

impl CityLedger {
    fn failed(&self, e: tokio_postgres::Error) -> CityError {
        postgres_error(&self.url, e)
    }

    /// Stores messages and review changes of `node`; those already there (same event id and
    /// seq) are left as they are, so sending a batch twice changes nothing.
    pub async fn ship(&mut self, node: &str, batch: &Shipment) -> Result<(), CityError> {
        let url = self.url.clone();
        let failed = |e: tokio_postgres::Error| postgres_error(&url, e);
        let tx = self.client.transaction().await.map_err(failed)?;
        let insert = tx
            .prepare(
                "INSERT INTO streetwatch_messages
                    (event_id, seq, type, camera, kind, node, start_ms, written_ms, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (event_id, seq) DO NOTHING",
            )
            .await
            .map_err(failed)?;
        for r in &batch.messages {
            let start_ms = serde_json::from_str::<EventMessage>(&r.payload)
                .ok()
                .and_then(|m| parse_time(&m.start_time))
                .map_or(r.written_ms, |t| t.timestamp_millis());
            let seq = r.seq as i32;
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
                &r.event_id,
                &seq,
                &r.message_type,
                &r.camera,
                &r.kind,
                &node,
                &start_ms,
                &r.written_ms,
                &r.payload,
            ];
            tx.execute(&insert, &values).await.map_err(failed)?;
        }
        let insert = tx
            .prepare(&format!(
                "INSERT INTO streetwatch_reviews (event_id, seq, node, {REVIEW_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (event_id, seq) DO NOTHING"
            ))
            .await
            .map_err(failed)?;
        for r in &batch.reviews {
            let (seq, at_ms) = (r.seq as i32, r.at.timestamp_millis());
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
                &r.event_id,
                &seq,
                &node,
                &at_ms,
                &r.by,
                &r.role,
                &r.from,
                &r.to,
                &r.reason,
                &r.note,
                &r.unit,
                &r.due,
                &r.photo_path,
            ];
            tx.execute(&insert, &values).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    /// The review changes of the events `events_where` selects from `streetwatch_messages`.
    async fn reviews_of(
        &self,
        events_where: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<ReviewRecord>, CityError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT event_id, seq, {REVIEW_COLUMNS} FROM streetwatch_reviews
                     WHERE event_id IN (SELECT event_id FROM streetwatch_messages WHERE {events_where})
                     ORDER BY event_id, seq"
                ),
                args,
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(rows
            .iter()
            .map(|r| ReviewRecord {
                event_id: r.get(0),
                seq: r.get::<_, i32>(1) as u32,
                at: DateTime::from_timestamp_millis(r.get(2)).unwrap_or_default(),
                by: r.get(3),
                role: r.get(4),
                from: r.get(5),
                to: r.get(6),
                reason: r.get(7),
                note: r.get(8),
                unit: r.get(9),
                due: r.get(10),
                photo_path: r.get(11),
            })
            .collect())
    }

    /// The latest message of each event of `camera` that started at or after `since`, and
    /// their review changes: its history, for recurrence counts, relapse flags and review
    /// states on the node that takes it.
    pub async fn history(&self, camera: &str, since: DateTime<Utc>) -> Result<History, CityError> {
        let since_ms = since.timestamp_millis();
        let rows = self
            .client
            .query(
                "SELECT DISTINCT ON (event_id) payload FROM streetwatch_messages
                 WHERE camera = $1 AND start_ms >= $2 ORDER BY event_id, seq DESC",
                &[&camera, &since_ms],
            )
            .await
            .map_err(|e| self.failed(e))?;
        let reviews = self
            .reviews_of("camera = $1 AND start_ms >= $2", &[&camera, &since_ms])
            .await?;
        Ok(History {
            messages: rows.iter().map(|r| r.get::<_, String>(0)).collect(),
            reviews,
        })
    }

    /// Every message whose event started in `[since, until)`, by event and seq, and those
    /// events' review changes.
    pub async fn messages_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<History, CityError> {
        let (since, until) = (since.timestamp_millis(), until.timestamp_millis());
        let rows = self
            .client
            .query(
                "SELECT payload FROM streetwatch_messages WHERE start_ms >= $1 AND start_ms < $2
                 ORDER BY event_id, seq",
                &[&since, &until],
            )
            .await
            .map_err(|e| self.failed(e))?;
        let reviews = self
            .reviews_of("start_ms >= $1 AND start_ms < $2", &[&since, &until])
            .await?;
        Ok(History {
            messages: rows.iter().map(|r| r.get::<_, String>(0)).collect(),
            reviews,
        })
    }
}

/// Records messages (JSON) and review changes into a ledger as a node would have, skipping
/// those already there; they count as shipped (they came from the city ledger). Returns how
/// many messages and review changes were added.
pub fn record_into(ledger: &Ledger, history: &History) -> Result<(usize, usize), CityError> {
    let mut added = 0;
    for payload in &history.messages {
        let Ok(msg) = serde_json::from_str::<EventMessage>(payload) else {
            tracing::warn!("unreadable message in the city ledger: {payload}");
            continue;
        };
        if ledger.has_message(&msg.event_id, msg.seq)? {
            continue;
        }
        let (Some(start), Some(last_seen)) =
            (parse_time(&msg.start_time), parse_time(&msg.last_seen))
        else {
            continue;
        };
        let end = msg.end_time.as_deref().and_then(parse_time);
        ledger.record(&msg, start, last_seen, end)?;
        ledger.mark_shipped(&[(msg.event_id.clone(), msg.seq)])?;
        added += 1;
    }
    let mut reviews = 0;
    for r in &history.reviews {
        reviews += usize::from(ledger.import_review(r)?);
    }
    Ok((added, reviews))
}

/// Copies the city ledger's events that started in `[since, until)` into a fresh local ledger
/// in `dir`, for `report --ledger postgres://…` to read like a node's own.
pub fn mirror(
    address: &CityAddress,
    dir: &Path,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<PathBuf, CityError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CityError::Postgres {
            url: address.url.clone(),
            why: format!("cannot start a runtime: {e}"),
        })?;
    let history = rt.block_on(async {
        let city = address.connect().await?;
        city.messages_between(since, until).await
    })?;
    let ledger = Ledger::open(dir)?;
    record_into(&ledger, &history)?;
    Ok(dir.join("ledger.sqlite"))
}

/// Ships this node's messages to the city ledger until `stop`: a thread with its own runtime,
/// so a slow PostgreSQL never holds up the cameras or the broker link.
pub fn spawn_shipper(
    address: CityAddress,
    storage: PathBuf,
    node: String,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("city-ledger".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("city ledger: cannot start a runtime: {e}");
                    return;
                }
            };
            let ledger = match Ledger::open(&storage) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("city ledger: nothing is shipped: {e}");
                    return;
                }
            };
            let mut city: Option<CityLedger> = None;
            let mut backoff = Duration::from_secs(1);
            let mut shipped_total = 0usize;
            // Once stopped, what waits is still sent for a few seconds.
            let mut drain_until: Option<std::time::Instant> = None;
            loop {
                if stop.load(Ordering::Relaxed) {
                    let until = *drain_until
                        .get_or_insert_with(|| std::time::Instant::now() + DRAIN_AT_STOP);
                    if std::time::Instant::now() >= until {
                        break;
                    }
                }
                let waiting = ledger.unshipped(BATCH).and_then(|messages| {
                    let reviews = ledger.unshipped_reviews(BATCH)?;
                    Ok(Shipment { messages, reviews })
                });
                let batch = match waiting {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!("city ledger: {e}");
                        sleep_unless(&stop, backoff);
                        continue;
                    }
                };
                if batch.is_empty() {
                    if drain_until.is_some() {
                        break;
                    }
                    sleep_unless(&stop, Duration::from_millis(500));
                    continue;
                }
                if city.is_none() {
                    match rt.block_on(address.connect()) {
                        Ok(c) => {
                            tracing::info!("city ledger: connected to {}", address.url);
                            city = Some(c);
                            backoff = Duration::from_secs(1);
                        }
                        Err(e) => {
                            tracing::warn!(
                                "{e}; {} or more message(s) and {} review change(s) wait in this node's ledger, retrying in {backoff:?}",
                                batch.messages.len(),
                                batch.reviews.len()
                            );
                            sleep_unless(&stop, backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            continue;
                        }
                    }
                }
                let Some(c) = city.as_mut() else {
                    continue;
                };
                match rt.block_on(c.ship(&node, &batch)) {
                    Ok(()) => {
                        let messages: Vec<(String, u32)> =
                            batch.messages.iter().map(|r| (r.event_id.clone(), r.seq)).collect();
                        let reviews: Vec<(String, u32)> =
                            batch.reviews.iter().map(|r| (r.event_id.clone(), r.seq)).collect();
                        if let Err(e) = ledger
                            .mark_shipped(&messages)
                            .and_then(|()| ledger.mark_reviews_shipped(&reviews))
                        {
                            tracing::error!("city ledger: shipped but not marked (sent again later, harmless): {e}");
                        }
                        shipped_total += batch.messages.len() + batch.reviews.len();
                        tracing::debug!("city ledger: {shipped_total} message(s) and review change(s) shipped");
                    }
                    Err(e) => {
                        tracing::warn!("{e}; retrying in {backoff:?}");
                        city = None;
                        sleep_unless(&stop, backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    spawned
        .map_err(|e| tracing::error!("cannot start the city ledger thread: {e}"))
        .ok()
}

/// Sleeps `d`, waking early when `stop` is set (but at least a tenth of a second, so a
/// stopping node's retries do not spin).
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = std::time::Instant::now() + d;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if std::time::Instant::now() >= until || stop.load(Ordering::Relaxed) {
            return;
        }
    }
}
