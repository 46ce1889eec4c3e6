//! The city's cameras and zones kept in etcd, one key per camera (`{p}config/cameras/{id}`,
//! its `[[cameras]]` table as TOML): `cluster import` writes them, `cluster export` reads them
//! back, every node follows them (`mod.rs`), and the console's zone editor saves one camera
//! through [`Catalog`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::keys::Keys;
use super::{ClusterView, EtcdCustody};
use crate::config::city::CameraText;
use crate::config::ClusterConfig;

/// etcd refuses transactions of more than 128 operations (`--max-txn-ops`); an import writes
/// in batches below that.
const BATCH: usize = 100;

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// etcd said no or did not answer.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// This node has no connection to etcd now.
    #[error("this node is not connected to etcd now; try again in a few seconds")]
    NotConnected,
    /// The camera changed in etcd since it was read.
    #[error("camera {0} was changed by someone else since it was read; load it again and redo the change")]
    Changed(String),
}

/// What `cluster import` changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Cameras new to etcd.
    pub added: Vec<String>,
    /// Cameras whose text changed.
    pub changed: Vec<String>,
    /// Cameras left as they were.
    pub unchanged: Vec<String>,
    /// Cameras removed (not in the imported file).
    pub removed: Vec<String>,
}

impl ImportSummary {
    /// What importing `cameras` (id, text) over `stored` changes.
    pub fn between(stored: &[CameraText], cameras: &[(String, String)]) -> Self {
        // By id, so a city of 10,000 cameras is compared in one pass each way.
        let old: HashMap<&str, &str> = stored
            .iter()
            .map(|c| (c.id.as_str(), c.text.as_str()))
            .collect();
        let new: HashSet<&str> = cameras.iter().map(|(id, _)| id.as_str()).collect();
        let mut summary = Self::default();
        for (id, text) in cameras {
            match old.get(id.as_str()) {
                Some(was) if *was == text => summary.unchanged.push(id.clone()),
                Some(_) => summary.changed.push(id.clone()),
                None => summary.added.push(id.clone()),
            }
        }
        for c in stored {
            if !new.contains(c.id.as_str()) {
                summary.removed.push(c.id.clone());
            }
        }
        summary
    }
}

/// Makes etcd's camera list exactly `cameras` (id, TOML text): writes what is new or changed,
/// removes what the file no longer has. Nodes apply the result within a second or two.
pub async fn import(
    cfg: &ClusterConfig,
    cameras: &[(String, String)],
) -> Result<ImportSummary, CatalogError> {
    let mut client = super::connect_any(&cfg.etcd, &mut 0, super::CLI_WAIT).await?;
    let keys = Keys::new(&cfg.key_prefix);
    let (_, stored) = read_with(&mut client, &keys).await?;
    let summary = ImportSummary::between(&stored, cameras);
    let written: HashSet<&String> = summary.added.iter().chain(&summary.changed).collect();
    let mut ops = Vec::new();
    for (id, text) in cameras {
        if written.contains(id) {
            ops.push(TxnOp::put(keys.config_camera(id), text.as_str(), None));
        }
    }
    for id in &summary.removed {
        ops.push(TxnOp::delete(keys.config_camera(id), None));
    }
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let batch: Vec<TxnOp> = ops.by_ref().take(BATCH).collect();
        client.txn(Txn::new().and_then(batch)).await?;
    }
    Ok(summary)
}

/// The cameras etcd holds, in id order, and the revision they were read at.
pub async fn read(cfg: &ClusterConfig) -> Result<(i64, Vec<CameraText>), CatalogError> {
    let mut client = super::connect_any(&cfg.etcd, &mut 0, super::CLI_WAIT).await?;
    read_with(&mut client, &Keys::new(&cfg.key_prefix)).await
}

async fn read_with(
    client: &mut Client,
    keys: &Keys,
) -> Result<(i64, Vec<CameraText>), CatalogError> {
    let dir = keys.config_cameras();
    let listed = client
        .get(dir.clone(), Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let cameras = listed
        .kvs()
        .iter()
        .filter_map(|kv| camera_text(keys, kv).map(|(c, _)| c))
        .collect();
    Ok((revision, cameras))
}

/// A key under `config/cameras/` as a camera's text, with its revision (None for another
/// key, or a value that is not text).
pub(super) fn camera_text(keys: &Keys, kv: &etcd_client::KeyValue) -> Option<(CameraText, i64)> {
    let key = kv.key_str().ok()?;
    let id = keys.tail(&keys.config_cameras(), key)?;
    let text = kv.value_str().ok()?;
    let camera = CameraText {
        id: id.to_string(),
        source: format!("etcd:{key}"),
        text: text.to_string(),
    };
    Some((camera, kv.mod_revision()))
}

/// The console's way to the city's cameras in etcd, through the node's connection.
pub struct Catalog {
    keys: Keys,
    custody: Arc<EtcdCustody>,
    view: Arc<Mutex<ClusterView>>,
}

impl Catalog {
    /// Through the node's custody (its etcd connection) and view.
    pub fn new(prefix: &str, custody: Arc<EtcdCustody>, view: Arc<Mutex<ClusterView>>) -> Self {
        Self {
            keys: Keys::new(prefix),
            custody,
            view,
        }
    }

    /// Whether this node's cameras come from etcd (after `cluster import`).
    pub fn in_use(&self) -> bool {
        self.view.lock().is_ok_and(|v| v.cameras_from_etcd)
    }

    /// A camera's text and its revision (None: not in etcd).
    pub async fn camera(&self, id: &str) -> Result<Option<(CameraText, i64)>, CatalogError> {
        let mut client = self.custody.client().ok_or(CatalogError::NotConnected)?;
        let got = client.get(self.keys.config_camera(id), None).await?;
        Ok(got.kvs().first().and_then(|kv| camera_text(&self.keys, kv)))
    }

    /// Replaces a camera's text if it is still at `revision`; returns the new revision.
    pub async fn save(&self, camera: &CameraText, revision: i64) -> Result<i64, CatalogError> {
        let mut client = self.custody.client().ok_or(CatalogError::NotConnected)?;
        let key = self.keys.config_camera(&camera.id);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key, camera.text.as_str(), None)]);
        let r = client.txn(txn).await?;
        if !r.succeeded() {
            return Err(CatalogError::Changed(camera.id.clone()));
        }
        Ok(r.header().map_or(0, |h| h.revision()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_says_what_it_adds_changes_keeps_and_removes() {
        let stored = |id: &str, text: &str| CameraText {
            id: id.into(),
            source: format!("etcd:/sw/config/cameras/{id}"),
            text: text.into(),
        };
        let file = |id: &str, text: &str| (id.to_string(), text.to_string());
        let s = ImportSummary::between(
            &[stored("a", "1"), stored("b", "2"), stored("c", "3")],
            &[file("b", "2"), file("c", "changed"), file("d", "4")],
        );
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            s,
            ImportSummary {
                added: ids(&["d"]),
                changed: ids(&["c"]),
                unchanged: ids(&["b"]),
                removed: ids(&["a"]),
            }
        );
    }
}
