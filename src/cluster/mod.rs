//! Cluster mode (`[cluster]`): the city's cameras shared among nodes through etcd.
//!
//! Each node holds one etcd lease and registers itself on it. Every node computes the same
//! placement of the cameras over the live nodes (`placement.rs`) and claims the cameras placed
//! on it with a transaction that creates the camera's owner key only if it is absent, on its own
//! lease; the key's create revision is the ownership epoch. A node that dies loses its lease, so
//! its owner keys vanish and the next node in each camera's ranking claims it. A node that joins
//! gets cameras only when their holder hands them over, and only after `min_stay_seconds`.
//!
//! Before a camera writes a message, the message goes to etcd as its open event's latest state,
//! guarded by the epoch (`custody.rs`): a node that lost a camera cannot write for it, and the
//! node that takes it continues its events under the same id. A node that cannot renew its lease
//! stops writing before the lease can have expired (`fence.rs`).
//!
//! The supervisor does what the cluster asks through [`Order`]s; `keys.rs` names the keys.

mod catalog;
mod custody;
mod fence;
pub mod keys;
pub mod placement;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, Txn,
    TxnOp, WatchOptions,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use catalog::{import, read as read_catalog, Catalog, CatalogError, ImportSummary};
pub use custody::EtcdCustody;
pub use fence::Fence;
use keys::{Keys, NodeRecord, OwnerRecord};
use placement::Candidate;

use crate::config::city::CameraText;
use crate::config::{ClusterConfig, LoadedConfig};

/// How long a command (`cluster status`, `import`, `export`) waits for etcd.
const CLI_WAIT: Duration = Duration::from_secs(15);

/// A change to the city's cameras in etcd is applied once no other change came for this long
/// (an import of many cameras comes in several transactions).
const CATALOG_QUIET: Duration = Duration::from_millis(300);

/// After the city ledger failed to answer, how long cameras taken start without asking it.
const CITY_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the cluster asks of this node's supervisor.
#[derive(Debug)]
pub enum Order {
    /// Start a camera this node now holds; `held` are the latest messages of its open events
    /// (JSON), to be continued.
    Take {
        /// Camera id.
        camera: String,
        /// Open events' latest messages.
        held: Vec<String>,
        /// The camera's recent history from the city ledger (latest message of each event);
        /// None when the city ledger could not be read.
        history: Option<crate::city::History>,
    },
    /// Stop a camera for a hand-over, leaving its open events open for the next node; answer
    /// on `done` once it has stopped.
    HandOver {
        /// Camera id.
        camera: String,
        /// Answered when the camera has stopped.
        done: oneshot::Sender<()>,
    },
    /// Stop a camera now: this node no longer holds it (its writes are refused already).
    Drop {
        /// Camera id.
        camera: String,
    },
    /// Apply a new config, as a reload does: the city's cameras in etcd changed.
    Configure {
        /// The node's file with the city's cameras, checked.
        config: Box<LoadedConfig>,
        /// The city's cameras it was made from (None: back to the file's own cameras), kept
        /// for the node's later reloads of its file.
        cameras: Option<Vec<CameraText>>,
    },
}

/// What this node knows of the cluster, for its status, console and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    /// This node.
    pub node: String,
    /// Connected to etcd with a live lease.
    pub lease_held: bool,
    /// The lease id (0 without one).
    pub lease_id: i64,
    /// Cameras held, with their ownership epochs.
    pub epochs: BTreeMap<String, i64>,
    /// The cameras and zones in force come from etcd (`cluster import`), not this node's file.
    pub cameras_from_etcd: bool,
}

/// A running cluster member.
pub struct Member {
    /// Orders for the supervisor.
    pub orders: mpsc::UnboundedReceiver<Order>,
    /// Asked by the cameras before each write.
    pub custody: Arc<EtcdCustody>,
    /// What the node knows of the cluster now.
    pub view: Arc<Mutex<ClusterView>>,
    /// The enabled cameras of the config in force (the supervisor updates it on reload).
    pub cameras: Arc<Mutex<Vec<String>>>,
    /// The task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Who this node is, as the cluster sees it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Node id.
    pub node: String,
    /// Console address, if any.
    pub console: Option<String>,
}

/// Joins the cluster (inside a tokio runtime): keeps trying to reach etcd, and holds cameras
/// while it can. `config` is the node's file, which the city's cameras in etcd complete.
pub fn join(
    cfg: &ClusterConfig,
    me: Identity,
    config: std::path::PathBuf,
    cameras: Vec<String>,
    city: Option<crate::city::CityAddress>,
    history_window: chrono::Duration,
) -> Member {
    let ttl = Duration::from_secs(cfg.lease_ttl_seconds.into());
    let keys = Keys::new(&cfg.key_prefix);
    let fence = Arc::new(Fence::new(ttl));
    let custody = Arc::new(EtcdCustody::new(
        fence,
        keys.clone(),
        tokio::runtime::Handle::current(),
    ));
    let (tx, orders) = mpsc::unbounded_channel();
    let view = Arc::new(Mutex::new(ClusterView {
        node: me.node.clone(),
        ..ClusterView::default()
    }));
    let cameras = Arc::new(Mutex::new(cameras));
    let first_member = me_hash(&me.node) % cfg.etcd.len().max(1);
    let node = Node {
        cfg: cfg.clone(),
        ttl,
        keys,
        me,
        custody: custody.clone(),
        tx,
        view: view.clone(),
        cameras: cameras.clone(),
        last_lease: None,
        placed: None,
        // Nodes spread over the members instead of all starting with the first.
        next_endpoint: first_member,
        city,
        city_link: None,
        city_failed: None,
        history_window,
        config,
        catalog_seen: None,
    };
    Member {
        orders,
        custody,
        view,
        cameras,
        task: tokio::spawn(node.run()),
    }
}

/// Why a session with etcd ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("{0}")]
    Lease(String),
}

struct Node {
    cfg: ClusterConfig,
    ttl: Duration,
    keys: Keys,
    me: Identity,
    custody: Arc<EtcdCustody>,
    tx: mpsc::UnboundedSender<Order>,
    view: Arc<Mutex<ClusterView>>,
    cameras: Arc<Mutex<Vec<String>>>,
    /// The lease of the last session, revoked at the next one's start so its cameras free up
    /// at once.
    last_lease: Option<i64>,
    /// The last placement and what it was computed from (cameras, nodes).
    placed: Option<Placed>,
    /// The etcd member to try first at the next connection.
    next_endpoint: usize,
    /// The city ledger, when there is one.
    city: Option<crate::city::CityAddress>,
    /// Its connection, made when first needed.
    city_link: Option<crate::city::CityLedger>,
    /// When reading it last failed.
    city_failed: Option<Instant>,
    /// How far back a camera's history is read when the camera is taken.
    history_window: chrono::Duration,
    /// The node's config file.
    config: std::path::PathBuf,
    /// The city's cameras last read from etcd (None: none there, the file's are in force).
    catalog_seen: Option<Vec<CameraText>>,
}

/// A placement with its inputs.
type Placed = ((Vec<String>, Vec<Candidate>), BTreeMap<String, String>);

impl Node {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let began = Instant::now();
            let end = self.session().await;
            self.custody.fence.close();
            self.custody.set_client(None);
            let dropped = self.custody.release_all();
            if let Ok(mut v) = self.view.lock() {
                v.lease_held = false;
                v.epochs.clear();
            }
            if let Err(e) = end {
                tracing::error!(
                    "cluster: {e}; this node stopped {} camera(s) and writes nothing for them; joining again in {backoff:?}",
                    dropped.len()
                );
            }
            for camera in dropped {
                let _ = self.tx.send(Order::Drop { camera });
            }
            if began.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_millis(500);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.ttl.max(Duration::from_secs(2)));
        }
    }

    /// One lease: connect, register, hold cameras, until the lease cannot be renewed. A lost
    /// connection is not the end: the node goes on through another etcd member with the same
    /// lease, and its cameras stay while the fence holds.
    async fn session(&mut self) -> Result<(), SessionEnd> {
        let mut client = connect_any(&self.cfg.etcd, &mut self.next_endpoint, self.ttl).await?;
        self.log_member();
        if let Some(old) = self.last_lease.take() {
            // Best effort: the old lease frees its cameras now instead of at its expiry.
            let _ = client.lease_revoke(old).await;
        }
        let sent = Instant::now();
        let lease = client
            .lease_grant(self.cfg.lease_ttl_seconds.into(), None)
            .await?;
        let id = lease.id();
        self.last_lease = Some(id);
        self.custody
            .fence
            .renewed(sent, Duration::from_secs(lease.ttl().max(0) as u64));
        let record = NodeRecord {
            node: self.me.node.clone(),
            capacity: self.cfg.capacity(),
            console: self.me.console.clone(),
            since: chrono::Utc::now().to_rfc3339(),
            version: concat!(
                env!("CARGO_PKG_VERSION"),
                " (git ",
                env!("STREETWATCH_GIT_ID"),
                ")"
            )
            .to_string(),
        };
        client
            .put(
                self.keys.node(&self.me.node),
                serde_json::to_vec(&record).unwrap_or_default(),
                Some(PutOptions::new().with_lease(id)),
            )
            .await?;
        if let Ok(mut v) = self.view.lock() {
            v.lease_held = true;
            v.lease_id = id;
        }
        tracing::info!(
            "cluster: joined as {} (lease {id:x}, {} s, capacity {})",
            self.me.node,
            self.cfg.lease_ttl_seconds,
            self.cfg.capacity()
        );
        loop {
            self.custody.set_client(Some(client.clone()));
            let why = match self.hold(&mut client, id).await {
                Ok(why) => why,
                Err(SessionEnd::Etcd(e)) => e.to_string(),
                Err(end) => return Err(end),
            };
            tracing::warn!(
                "cluster: lost etcd ({why}); trying the other members with the same lease"
            );
            self.custody.set_client(None);
            client = loop {
                if !self.custody.fence.holds() {
                    return Err(SessionEnd::Lease(format!(
                        "no etcd member answered before the lease could expire ({why})"
                    )));
                }
                match connect_any(&self.cfg.etcd, &mut self.next_endpoint, self.ttl).await {
                    Ok(c) => {
                        self.log_member();
                        break c;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
        }
    }

    /// The camera's recent events from the city ledger (None when it cannot be read; an empty
    /// list without a city ledger).
    async fn history(&mut self, camera: &str) -> Option<crate::city::History> {
        let Some(address) = &self.city else {
            return Some(crate::city::History::default());
        };
        // After a failure, cameras taken in the next half minute start at once with their
        // history partial, instead of each waiting for PostgreSQL in turn.
        if self
            .city_failed
            .is_some_and(|t| t.elapsed() < CITY_RETRY_AFTER)
        {
            return None;
        }
        let since = chrono::Utc::now() - self.history_window;
        let wait = Duration::from_secs(3);
        // Connecting (when there is no connection yet) and reading, within one wait; a
        // connection that failed is dropped and made again next time.
        let (link, address) = (self.city_link.take(), address.clone());
        let read = async move {
            let link = match link {
                Some(l) => l,
                None => address.connect().await?,
            };
            let history = link.history(camera, since).await?;
            Ok::<_, crate::city::CityError>((link, history))
        };
        match tokio::time::timeout(wait, read).await {
            Ok(Ok((link, history))) => {
                self.city_link = Some(link);
                self.city_failed = None;
                Some(history)
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("the city ledger did not answer in {wait:?}"),
                };
                tracing::warn!(camera, "{why}: the camera starts with its history partial");
                self.city_failed = Some(Instant::now());
                None
            }
        }
    }

    /// Says which etcd member this node talks to now (the one before `next_endpoint`).
    fn log_member(&self) {
        let n = self.cfg.etcd.len().max(1);
        if let Some(e) = self.cfg.etcd.get((self.next_endpoint + n - 1) % n) {
            tracing::info!("cluster: connected to etcd {e}");
        }
    }

    /// Renews lease `id` and looks after the cameras through one connection; returns why the
    /// connection failed, or ends the session when the lease is gone. Renewal runs on a task of
    /// its own, so a hand-over waiting for a camera to stop never delays it.
    async fn hold(&mut self, client: &mut Client, id: i64) -> Result<String, SessionEnd> {
        let (keeper, answers) = client.lease_keep_alive(id).await?;
        let renewing = tokio::spawn(renew(keeper, answers, self.custody.fence.clone(), self.ttl));
        // Stopped with this connection, however `hold` ends.
        struct AbortOnDrop(tokio::task::AbortHandle);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _guard = AbortOnDrop(renewing.abort_handle());
        tokio::pin!(renewing);
        // Who is registered and who holds what: read once, then followed through a watch, so
        // a steady cluster costs etcd nothing but keep-alives.
        let mut registry = Registry::default();
        let mut from = i64::MAX;
        for dir in [
            self.keys.nodes(),
            self.keys.owners(),
            self.keys.config_cameras(),
        ] {
            let listed = client
                .get(dir.clone(), Some(GetOptions::new().with_prefix()))
                .await?;
            from = from.min(listed.header().map_or(0, |h| h.revision()) + 1);
            for kv in listed.kvs() {
                registry.apply(&self.keys, kv, false);
            }
        }
        let watching = WatchOptions::new().with_prefix().with_start_revision(from);
        let mut watch = client
            .watch(self.keys.nodes(), Some(watching.clone()))
            .await?;
        watch
            .watch(self.keys.owners(), Some(watching.clone()))
            .await?;
        watch
            .watch(self.keys.config_cameras(), Some(watching))
            .await?;
        // The city's cameras come before any camera is claimed from them.
        self.follow_catalog(&registry);
        let mut catalog_changed: Option<Instant> = None;
        let mut look = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ended = &mut renewing => {
                    return ended.unwrap_or_else(|e| Ok(format!("the keep-alive task ended: {e}")));
                }
                changes = watch.message() => match changes {
                    Ok(Some(r)) if r.canceled() => {
                        return Ok(format!("etcd cancelled the watch (compacted at {})", r.compact_revision()));
                    }
                    Ok(Some(r)) => {
                        for ev in r.events() {
                            if let Some(kv) = ev.kv() {
                                if registry.apply(&self.keys, kv, ev.event_type() == EventType::Delete) {
                                    catalog_changed = Some(Instant::now());
                                }
                            }
                        }
                    }
                    Ok(None) => return Ok("etcd closed the watch".into()),
                    Err(e) => return Ok(e.to_string()),
                },
                _ = look.tick() => {
                    if catalog_changed.is_some_and(|t| t.elapsed() >= CATALOG_QUIET) {
                        catalog_changed = None;
                        self.follow_catalog(&registry);
                    }
                    if let Err(e) = self.reconcile(client, id, &mut registry).await {
                        tracing::warn!("cluster: cannot look at the cameras' owners now: {e}");
                        return Ok(e.to_string());
                    }
                }
            }
        }
    }

    /// Applies the city's cameras in etcd when they differ from those last seen: the node's
    /// file completed with them is checked, and sent to the supervisor as a reload would be;
    /// cameras that do not pass the checks leave the config in force as it is.
    fn follow_catalog(&mut self, registry: &Registry) {
        let cameras = registry.catalog();
        let seen = (!cameras.is_empty()).then_some(cameras);
        if seen == self.catalog_seen {
            return;
        }
        self.catalog_seen = seen.clone();
        // Where the cameras live decides where the zone editor saves, even while the cameras
        // there do not pass this node's checks (a fix saved there is what applies them).
        if let Ok(mut v) = self.view.lock() {
            v.cameras_from_etcd = seen.is_some();
        }
        let config = match &seen {
            Some(c) => crate::config::city::with_cameras(&self.config, c),
            None => crate::config::load(&self.config),
        };
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cluster: the city's cameras in etcd were not applied, this node keeps its config in force:\n{e}");
                return;
            }
        };
        match &seen {
            Some(c) => tracing::info!(
                "cluster: the city's cameras from etcd applied ({} camera(s), {} enabled)",
                c.len(),
                config.enabled_cameras().len()
            ),
            None => tracing::warn!(
                "cluster: no cameras in etcd any more: back to the cameras of {}",
                self.config.display()
            ),
        }
        if let Ok(mut list) = self.cameras.lock() {
            *list = config.enabled_cameras();
        }
        let _ = self.tx.send(Order::Configure {
            config: Box::new(config),
            cameras: seen,
        });
    }

    /// Compares who holds what with the placement: lets go of lost cameras, hands over those
    /// placed elsewhere (after the minimum stay), claims the free ones placed here.
    async fn reconcile(
        &mut self,
        client: &mut Client,
        lease: i64,
        registry: &mut Registry,
    ) -> Result<(), SessionEnd> {
        let nodes = registry.candidates();
        let owners = registry.owners();
        let cameras: Vec<String> = self.cameras.lock().map(|c| c.clone()).unwrap_or_default();
        let wanted: BTreeSet<&String> = cameras.iter().collect();
        // Placement hashes every (camera, node) pair: computed again only when either changes.
        let inputs = (cameras.clone(), nodes.clone());
        let desired = match &self.placed {
            Some((seen, placed)) if *seen == inputs => placed.clone(),
            _ => {
                let placed = placement::place(&cameras, &nodes);
                self.placed = Some((inputs, placed.clone()));
                placed
            }
        };
        let me = self.me.node.clone();
        // Lost: the owner key is gone or newer (this node's lease lapsed in etcd's eyes).
        for (camera, epoch) in self.custody.owned() {
            if owners.get(&camera).map(|o| o.1) != Some(epoch) {
                self.custody.release(&camera);
                tracing::warn!(camera = %camera, "cluster: this node no longer holds the camera (epoch {epoch} ended): stopping it");
                let _ = self.tx.send(Order::Drop { camera });
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let min_stay = (self.cfg.min_stay_seconds * 1000.0) as i64;
        for (camera, epoch) in self.custody.owned() {
            let target = desired.get(&camera).filter(|n| **n != me);
            let stayed = owners
                .get(&camera)
                .is_some_and(|o| now_ms - o.0.since_ms >= min_stay);
            let removed = !wanted.contains(&camera);
            if !(removed || (target.is_some() && stayed)) {
                continue;
            }
            let (done, stopped) = oneshot::channel();
            let order = Order::HandOver {
                camera: camera.clone(),
                done,
            };
            if self.tx.send(order).is_err() {
                return Ok(());
            }
            // Its last writes go through while it still holds the camera.
            let _ = tokio::time::timeout(Duration::from_secs(30), stopped).await;
            self.custody.release(&camera);
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.keys.owner(&camera),
                    CompareOp::Equal,
                    epoch,
                )])
                .and_then([TxnOp::delete(self.keys.owner(&camera), None)]);
            let r = client.txn(txn).await?;
            if r.succeeded() {
                let rev = r.header().map_or(0, |h| h.revision());
                registry.apply_owner(&camera, None, rev);
            }
            match target {
                Some(to) if !removed => {
                    tracing::info!(camera = %camera, "cluster: handed over to {to}")
                }
                _ => tracing::info!(camera = %camera, "cluster: let go (no longer in the config)"),
            }
        }
        let mut held = self.custody.owned().len();
        let capacity = self.cfg.capacity();
        for (camera, node) in &desired {
            if *node != me || owners.contains_key(camera) || held >= capacity {
                continue;
            }
            let record = OwnerRecord {
                node: me.clone(),
                since_ms: chrono::Utc::now().timestamp_millis(),
            };
            let key = self.keys.owner(camera);
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    serde_json::to_vec(&record).unwrap_or_default(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let r = client.txn(txn).await?;
            if !r.succeeded() {
                continue;
            }
            let epoch = r.header().map_or(0, |h| h.revision());
            registry.apply_owner(camera, Some((record.clone(), epoch)), epoch);
            let open = client
                .get(
                    self.keys.open_events(camera),
                    Some(GetOptions::new().with_prefix()),
                )
                .await?;
            let open: Vec<String> = open
                .kvs()
                .iter()
                .filter_map(|kv| kv.value_str().ok().map(str::to_string))
                .collect();
            self.custody.hold(camera, epoch);
            held += 1;
            tracing::info!(
                camera = %camera,
                "cluster: took the camera (epoch {epoch}, {} open event(s) to continue)",
                open.len()
            );
            let history = self.history(camera).await;
            let _ = self.tx.send(Order::Take {
                camera: camera.clone(),
                held: open,
                history,
            });
        }
        if let Ok(mut v) = self.view.lock() {
            v.epochs = self.custody.owned();
        }
        Ok(())
    }
}

/// Leaves the cluster: revokes the lease (after the cameras stopped), so the other nodes take
/// this node's cameras now instead of after the TTL.
pub async fn leave(custody: &EtcdCustody, view: &Mutex<ClusterView>) {
    custody.fence.close();
    custody.release_all();
    let lease = view
        .lock()
        .map(|v| v.lease_held.then_some(v.lease_id))
        .ok()
        .flatten();
    let client = custody.client();
    if let (Some(id), Some(mut client)) = (lease, client) {
        match tokio::time::timeout(Duration::from_secs(3), client.lease_revoke(id)).await {
            Ok(Ok(_)) => tracing::info!("cluster: left (lease {id:x} revoked; the other nodes take the cameras)"),
            Ok(Err(e)) => tracing::warn!("cluster: could not revoke the lease ({e}); the cameras move when it expires"),
            Err(_) => tracing::warn!("cluster: etcd did not answer the lease revocation; the cameras move when the lease expires"),
        }
    }
}

/// One node as `cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Its registration.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// Its lease id.
    pub lease: String,
    /// Seconds its lease has left.
    pub lease_ttl_left: i64,
    /// Cameras it runs.
    pub cameras: Vec<String>,
}

/// The whole cluster as `cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Live nodes.
    pub nodes: Vec<NodeStatus>,
    /// Camera -> (node, epoch).
    pub owners: BTreeMap<String, CameraOwner>,
    /// Cameras of the config no node runs.
    pub unowned: Vec<String>,
}

/// Who runs a camera.
#[derive(Debug, Clone, Serialize)]
pub struct CameraOwner {
    /// Node id.
    pub node: String,
    /// Ownership epoch (the owner key's create revision).
    pub epoch: i64,
    /// Since when, RFC 3339.
    pub since: String,
}

/// A stable number from a node id (for the first etcd member it tries).
fn me_hash(node: &str) -> usize {
    node.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
}

/// The registered nodes and the cameras' owners as this node last heard from etcd, each key
/// with the revision it was last changed at, so an older change never undoes a newer one.
#[derive(Debug, Default)]
struct Registry {
    /// Node id -> its record (None once gone), revision.
    nodes: BTreeMap<String, (Option<NodeRecord>, i64)>,
    /// Camera -> its owner and ownership epoch (None once free), revision.
    owners: BTreeMap<String, (Option<(OwnerRecord, i64)>, i64)>,
    /// Camera -> its `[[cameras]]` text in etcd (None once removed), revision.
    catalog: BTreeMap<String, (Option<CameraText>, i64)>,
}

impl Registry {
    /// Applies a key read or watched under `nodes/`, `owners/` or `config/cameras/`; true when
    /// the city's cameras changed.
    fn apply(&mut self, keys: &Keys, kv: &KeyValue, deleted: bool) -> bool {
        let Ok(key) = kv.key_str() else {
            return false;
        };
        let rev = kv.mod_revision();
        if let Some(node) = keys.tail(&keys.nodes(), key) {
            let rec = (!deleted)
                .then(|| serde_json::from_slice::<NodeRecord>(kv.value()).ok())
                .flatten();
            if self.nodes.get(node).is_none_or(|(_, r)| rev > *r) {
                self.nodes.insert(node.to_string(), (rec, rev));
            }
        } else if let Some(camera) = keys.tail(&keys.owners(), key) {
            let owner = (!deleted)
                .then(|| serde_json::from_slice::<OwnerRecord>(kv.value()).ok())
                .flatten()
                .map(|o| (o, kv.create_revision()));
            self.apply_owner(camera, owner, rev);
        } else if let Some(camera) = keys.tail(&keys.config_cameras(), key) {
            if self.catalog.get(camera).is_none_or(|(_, r)| rev > *r) {
                let text = (!deleted)
                    .then(|| catalog::camera_text(keys, kv).map(|(c, _)| c))
                    .flatten();
                self.catalog.insert(camera.to_string(), (text, rev));
                return true;
            }
        }
        false
    }

    /// The city's cameras in etcd, in id order.
    fn catalog(&self) -> Vec<CameraText> {
        self.catalog
            .values()
            .filter_map(|(c, _)| c.clone())
            .collect()
    }

    /// Records a camera's owner (None: free) as of revision `rev`.
    fn apply_owner(&mut self, camera: &str, owner: Option<(OwnerRecord, i64)>, rev: i64) {
        if self.owners.get(camera).is_none_or(|(_, r)| rev > *r) {
            self.owners.insert(camera.to_string(), (owner, rev));
        }
    }

    /// The live nodes, for placement.
    fn candidates(&self) -> Vec<Candidate> {
        self.nodes
            .values()
            .filter_map(|(rec, _)| rec.as_ref())
            .map(|r| Candidate {
                node: r.node.clone(),
                capacity: r.capacity,
            })
            .collect()
    }

    /// Camera -> (owner, epoch) of the held cameras.
    fn owners(&self) -> BTreeMap<String, (OwnerRecord, i64)> {
        self.owners
            .iter()
            .filter_map(|(c, (o, _))| o.clone().map(|o| (c.clone(), o)))
            .collect()
    }
}

/// Renews a lease every third of its TTL and opens the fence as answers come; returns why the
/// connection stopped serving (Ok) or that the lease is gone (Err).
async fn renew(
    mut keeper: etcd_client::LeaseKeeper,
    mut answers: etcd_client::LeaseKeepAliveStream,
    fence: Arc<Fence>,
    ttl: Duration,
) -> Result<String, SessionEnd> {
    let mut tick = tokio::time::interval(ttl / 3);
    // Keep-alives sent and not yet answered, oldest first: each answer is credited to the time
    // its request left, never a later one.
    let mut asked: VecDeque<Instant> = VecDeque::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !fence.holds() {
                    return Err(SessionEnd::Lease(format!(
                        "the lease was not renewed in time (no answer for {ttl:?})"
                    )));
                }
                // Unanswered for a third of the TTL: this member is not serving us.
                if asked.front().is_some_and(|t| t.elapsed() > ttl / 3) {
                    return Ok("keep-alives unanswered".into());
                }
                asked.push_back(Instant::now());
                if let Err(e) = keeper.keep_alive().await {
                    return Ok(e.to_string());
                }
            }
            answer = answers.message() => match answer {
                Ok(Some(r)) if r.ttl() > 0 => {
                    if let Some(sent) = asked.pop_front() {
                        fence.renewed(sent, Duration::from_secs(r.ttl() as u64));
                    }
                }
                Ok(Some(_)) => return Err(SessionEnd::Lease("etcd says the lease has expired".into())),
                Ok(None) => return Ok("etcd closed the keep-alive stream".into()),
                Err(e) => return Ok(e.to_string()),
            },
        }
    }
}

/// Connects to the first etcd member that answers, trying them in turn from `next` (which is
/// left at the one after it, so the next failure tries another member first).
async fn connect_any(
    endpoints: &[String],
    next: &mut usize,
    ttl: Duration,
) -> Result<Client, etcd_client::Error> {
    let mut last = None;
    for _ in 0..endpoints.len().max(1) {
        let Some(endpoint) = endpoints.get(*next % endpoints.len().max(1)) else {
            break;
        };
        *next = (*next + 1) % endpoints.len();
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout((ttl / 3).max(Duration::from_secs(1)))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        match Client::connect([endpoint.as_str()], Some(opts)).await {
            Ok(mut c) => match c.status().await {
                Ok(_) => {
                    tracing::debug!("cluster: connected to etcd {endpoint}");
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| etcd_client::Error::InvalidArgs("no etcd endpoint".into())))
}

/// Reads the cluster's state from etcd.
pub async fn status(
    cfg: &ClusterConfig,
    cameras: &[String],
) -> Result<ClusterStatus, etcd_client::Error> {
    let mut client = connect_any(&cfg.etcd, &mut 0, CLI_WAIT).await?;
    let keys = Keys::new(&cfg.key_prefix);
    // Read the way a node reads them.
    let mut registry = Registry::default();
    let listed = client
        .get(keys.owners(), Some(GetOptions::new().with_prefix()))
        .await?;
    for kv in listed.kvs() {
        registry.apply(&keys, kv, false);
    }
    let owners: BTreeMap<String, CameraOwner> = registry
        .owners()
        .into_iter()
        .map(|(camera, (rec, epoch))| {
            let since = chrono::DateTime::from_timestamp_millis(rec.since_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let owner = CameraOwner {
                node: rec.node,
                epoch,
                since,
            };
            (camera, owner)
        })
        .collect();
    let listed = client
        .get(keys.nodes(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut nodes = Vec::new();
    for kv in listed.kvs() {
        let Ok(record) = serde_json::from_slice::<NodeRecord>(kv.value()) else {
            continue;
        };
        let ttl = client
            .lease_time_to_live(kv.lease(), None)
            .await
            .map_or(-1, |r| r.ttl());
        let cameras = owners
            .iter()
            .filter(|(_, o)| o.node == record.node)
            .map(|(c, _)| c.clone())
            .collect();
        nodes.push(NodeStatus {
            record,
            lease: format!("{:x}", kv.lease()),
            lease_ttl_left: ttl,
            cameras,
        });
    }
    let unowned = cameras
        .iter()
        .filter(|c| !owners.contains_key(*c))
        .cloned()
        .collect();
    Ok(ClusterStatus {
        nodes,
        owners,
        unowned,
    })
}
