//! The cluster's answer to a camera about to write: the message goes to etcd first (as the
//! open event's latest message, so a node that takes the camera over continues the event), in a
//! transaction that succeeds only while this node's ownership epoch of the camera stands.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};

use super::fence::Fence;
use super::keys::Keys;
use crate::domain::custody::{Custody, Verdict};

/// The longest a camera waits for etcd before writing locally (while the fence holds).
const ETCD_WAIT: Duration = Duration::from_secs(2);

/// This node's custody of its cameras: which it holds, under which epoch, and the fence.
pub struct EtcdCustody {
    /// The node's fence.
    pub fence: Arc<Fence>,
    keys: Keys,
    owned: Mutex<BTreeMap<String, i64>>,
    client: Mutex<Option<Client>>,
    runtime: tokio::runtime::Handle,
}

impl EtcdCustody {
    /// Custody over `fence`, asking etcd through `runtime`.
    pub fn new(fence: Arc<Fence>, keys: Keys, runtime: tokio::runtime::Handle) -> Self {
        Self {
            fence,
            keys,
            owned: Mutex::new(BTreeMap::new()),
            client: Mutex::new(None),
            runtime,
        }
    }

    /// The connection to ask through (None while there is none).
    pub fn set_client(&self, client: Option<Client>) {
        if let Ok(mut c) = self.client.lock() {
            *c = client;
        }
    }

    /// The connection, if there is one.
    pub fn client(&self) -> Option<Client> {
        self.client.lock().ok().and_then(|c| c.clone())
    }

    /// The cameras held, with their ownership epochs.
    pub fn owned(&self) -> BTreeMap<String, i64> {
        self.owned.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Records that this node holds `camera` under `epoch`.
    pub fn hold(&self, camera: &str, epoch: i64) {
        if let Ok(mut o) = self.owned.lock() {
            o.insert(camera.to_string(), epoch);
        }
    }

    /// Forgets `camera`: its writes are refused from now on.
    pub fn release(&self, camera: &str) -> Option<i64> {
        self.owned.lock().ok()?.remove(camera)
    }

    /// Forgets every camera; returns them.
    pub fn release_all(&self) -> Vec<String> {
        match self.owned.lock() {
            Ok(mut o) => std::mem::take(&mut *o).into_keys().collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Custody for EtcdCustody {
    fn before_write(&self, camera: &str, event_id: &str, payload: &str, open: bool) -> Verdict {
        let Some(left) = self.fence.remaining() else {
            return Verdict::Refuse(
                "this node's etcd lease may have expired (no keep-alive answered in time): it writes nothing for its cameras until it holds them again".into(),
            );
        };
        let Some(epoch) = self.owned.lock().ok().and_then(|o| o.get(camera).copied()) else {
            return Verdict::Refuse(format!("this node no longer holds camera {camera}"));
        };
        let Some(mut client) = self.client.lock().ok().and_then(|c| c.clone()) else {
            return Verdict::WriteLocally("not connected to etcd".into());
        };
        let key = self.keys.open_event(camera, event_id);
        let op = if open {
            TxnOp::put(key, payload, None)
        } else {
            TxnOp::delete(key, None)
        };
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.owner(camera),
                CompareOp::Equal,
                epoch,
            )])
            .and_then([op]);
        // The timer is made inside the runtime: a camera thread has no reactor of its own.
        let wait = left.min(ETCD_WAIT);
        let asked = self
            .runtime
            .block_on(async move { tokio::time::timeout(wait, client.txn(txn)).await });
        match asked {
            Ok(Ok(r)) if r.succeeded() => Verdict::Write,
            Ok(Ok(_)) => Verdict::Refuse(format!(
                "camera {camera} is held by another node now (this node's ownership, epoch {epoch}, ended)"
            )),
            Ok(Err(e)) if self.fence.holds() => Verdict::WriteLocally(format!("etcd: {e}")),
            Err(_) if self.fence.holds() => {
                Verdict::WriteLocally(format!("etcd did not answer within {ETCD_WAIT:?}"))
            }
            _ => Verdict::Refuse(
                "this node's etcd lease may have expired while it asked etcd: it writes nothing for its cameras until it holds them again".into(),
            ),
        }
    }
}
