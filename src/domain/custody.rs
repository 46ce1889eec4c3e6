//! Custody of a camera's events: in a cluster, whether this node may still write for a camera,
//! asked before every message goes to the ledger. A leaf, so the pipeline needs no cluster code.

/// What the holder of a camera says about one message before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write it: this node holds the camera, and the cluster has the message.
    Write,
    /// Write it locally: the cluster cannot be asked now, but this node's lease cannot have
    /// expired yet, so no other node can hold the camera.
    WriteLocally(String),
    /// Do not write it: this node no longer holds the camera (why), so another node may.
    Refuse(String),
}

/// Asked by a camera before each message of its events is written to the ledger.
pub trait Custody: Send + Sync {
    /// `payload` is the message as JSON; `open` is false for an event's last message (`end`).
    fn before_write(&self, camera: &str, event_id: &str, payload: &str, open: bool) -> Verdict;
}
