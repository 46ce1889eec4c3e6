//! The live view: each camera's latest sampled frame with what the detector saw on it, kept
//! for the console's snapshots and zone editor. Camera threads write, the console reads.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use image::RgbImage;
use serde::Serialize;

/// A detection on a live frame, normalized to the frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveDetection {
    /// Label (e.g. `car`).
    pub label: String,
    /// Score 0..1.
    pub score: f32,
    /// `[x1, y1, x2, y2]` in 0..1 of the frame.
    pub bbox: [f32; 4],
}

/// A camera's latest frame.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    /// Stream time.
    pub time: DateTime<Utc>,
    /// The picture.
    pub image: Arc<RgbImage>,
    /// What the detector saw on it.
    pub detections: Vec<LiveDetection>,
}

/// Latest frames of all cameras.
#[derive(Debug, Clone)]
pub struct LiveView {
    frames: Arc<RwLock<BTreeMap<String, LiveFrame>>>,
    /// False without a console: nothing would read the frames, and each holds a picture.
    keep: bool,
}

impl LiveView {
    /// A live view that keeps the frames (`keep`, with a console) or drops them at once.
    pub fn new(keep: bool) -> Self {
        Self {
            frames: Arc::default(),
            keep,
        }
    }

    /// Whether frames put here are kept (a console reads them).
    pub fn keeps(&self) -> bool {
        self.keep
    }

    /// Replaces a camera's latest frame.
    pub fn put(&self, camera: &str, frame: LiveFrame) {
        if !self.keep {
            return;
        }
        if let Ok(mut m) = self.frames.write() {
            m.insert(camera.to_string(), frame);
        }
    }

    /// Forgets a camera's frame (it runs on another node now: a stale picture would mislead).
    pub fn remove(&self, camera: &str) {
        if let Ok(mut m) = self.frames.write() {
            m.remove(camera);
        }
    }

    /// A camera's latest frame, if it has produced one.
    pub fn get(&self, camera: &str) -> Option<LiveFrame> {
        self.frames.read().ok()?.get(camera).cloned()
    }
}
