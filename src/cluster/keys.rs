//! What the cluster keeps in etcd, under the deployment's prefix:
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `{p}nodes/{node}` | [`NodeRecord`] | the node's lease |
//! | `{p}owners/{camera}` | [`OwnerRecord`]; its create revision is the ownership epoch | the owner's lease |
//! | `{p}open/{camera}/{event_id}` | the latest message of an open event (JSON) | until its `end` |
//! | `{p}config/cameras/{camera}` | the camera's `[[cameras]]` table with its zones (TOML) | until removed by `cluster import` |

use serde::{Deserialize, Serialize};

/// A node's registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id (`[node] id`).
    pub node: String,
    /// Cameras it may run.
    pub capacity: usize,
    /// Its console, when it has one (`[http] listen`).
    pub console: Option<String>,
    /// When it registered, RFC 3339.
    pub since: String,
    /// Its build, `0.1.0 (git …)`.
    pub version: String,
}

/// Who runs a camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// Node id.
    pub node: String,
    /// When it took the camera: Unix milliseconds on its clock (for the minimum stay only).
    pub since_ms: i64,
}

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (`/streetwatch/`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// `{p}nodes/`.
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    /// `{p}nodes/{node}`.
    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.prefix)
    }

    /// `{p}owners/`.
    pub fn owners(&self) -> String {
        format!("{}owners/", self.prefix)
    }

    /// `{p}owners/{camera}`.
    pub fn owner(&self, camera: &str) -> String {
        format!("{}owners/{camera}", self.prefix)
    }

    /// `{p}open/{camera}/`.
    pub fn open_events(&self, camera: &str) -> String {
        format!("{}open/{camera}/", self.prefix)
    }

    /// `{p}open/{camera}/{event_id}`.
    pub fn open_event(&self, camera: &str, event_id: &str) -> String {
        format!("{}open/{camera}/{event_id}", self.prefix)
    }

    /// `{p}config/cameras/`.
    pub fn config_cameras(&self) -> String {
        format!("{}config/cameras/", self.prefix)
    }

    /// `{p}config/cameras/{camera}`.
    pub fn config_camera(&self, camera: &str) -> String {
        format!("{}config/cameras/{camera}", self.prefix)
    }

    /// The last part of a key under `dir` (a node or camera id).
    pub fn tail<'a>(&self, dir: &str, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(dir).filter(|t| !t.is_empty())
    }
}
