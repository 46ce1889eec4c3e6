//! Running statistics per camera, published on `{prefix}/stats`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::detector::DetectTiming;
use crate::source::CameraState;

/// Figures of one camera.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CameraStats {
    /// Connection state.
    pub state: CameraState,
    /// Sampled frames processed since start.
    pub frames: u64,
    /// Sampled frames per second (recent).
    pub fps: f64,
    /// Stream time of the latest frame.
    pub last_frame_time: Option<String>,
    /// Mean inference time of recent frames, milliseconds.
    pub inference_ms: f64,
    /// Mean pre- plus post-processing time of recent frames, milliseconds.
    pub processing_ms: f64,
    /// Mean decoding time per sampled frame (it and the unsampled frames before it), milliseconds.
    pub decode_ms: f64,
    /// Frames lost since start: damaged packets the decoder dropped, and sampled frames the
    /// pipeline could not process.
    pub dropped_frames: u64,
    /// Open incidents.
    pub open_incidents: usize,
    /// Reconnections since start.
    pub reconnects: u64,
    /// Times its analysis failed (a panic) and it was started again.
    pub restarts: u64,
    /// Why evidence photos cannot be written, if they cannot.
    pub storage_error: Option<String>,
    /// How far the latest processed frame is behind the wall clock, seconds (stream time of a
    /// live camera is its arrival time: this is the time the frame waited and was analysed).
    pub lag_seconds: f64,
    /// Sampled frames the model ran on since start (fewer than `frames` with
    /// `full_detect_seconds`: on the others nothing changed in the zones).
    pub inferences: u64,
    /// With `detect_url`: why the main stream gave no evidence photo the last time, if it did
    /// not (the photos then come from the detect stream).
    pub main_stream_error: Option<String>,
    /// Inference time per sampled frame (for `/metrics`).
    #[serde(skip)]
    pub inference_hist: Histogram,
    /// Decoding time per sampled frame (for `/metrics`).
    #[serde(skip)]
    pub decode_hist: Histogram,
    /// Events raised (`new` messages) by kind since start (for `/metrics`).
    #[serde(skip)]
    pub events: BTreeMap<String, u64>,
}

/// Upper bounds of the time histograms, milliseconds.
pub const MS_BUCKETS: [f64; 11] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// A cumulative histogram of milliseconds over [`MS_BUCKETS`], as Prometheus exposes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Observations at or below each bound.
    pub buckets: [u64; MS_BUCKETS.len()],
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, ms: f64) {
        for (b, bound) in self.buckets.iter_mut().zip(MS_BUCKETS) {
            if ms <= bound {
                *b += 1;
            }
        }
        self.sum += ms;
        self.count += 1;
    }
}

impl Default for CameraStats {
    fn default() -> Self {
        Self {
            state: CameraState::Offline,
            frames: 0,
            fps: 0.0,
            last_frame_time: None,
            inference_ms: 0.0,
            processing_ms: 0.0,
            decode_ms: 0.0,
            dropped_frames: 0,
            open_incidents: 0,
            reconnects: 0,
            restarts: 0,
            storage_error: None,
            lag_seconds: 0.0,
            inferences: 0,
            main_stream_error: None,
            inference_hist: Histogram::default(),
            decode_hist: Histogram::default(),
            events: BTreeMap::new(),
        }
    }
}

impl CameraStats {
    /// Folds one frame's timing into the recent means (exponential, ~10 frames).
    pub fn record_timing(&mut self, t: &DetectTiming, decode: std::time::Duration) {
        let a = if self.frames <= 1 { 1.0 } else { 0.1 };
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        self.inference_ms += a * (ms(t.inference) - self.inference_ms);
        self.processing_ms += a * (ms(t.preprocess + t.postprocess) - self.processing_ms);
        self.decode_ms += a * (ms(decode) - self.decode_ms);
        self.inference_hist.observe(ms(t.inference));
        self.decode_hist.observe(ms(decode));
    }
}

/// Stats of all cameras, shared between camera threads and the publisher.
#[derive(Debug, Clone, Default)]
pub struct StatsBoard {
    inner: Arc<Mutex<BTreeMap<String, CameraStats>>>,
}

impl StatsBoard {
    /// Updates one camera's entry.
    pub fn update(&self, camera: &str, f: impl FnOnce(&mut CameraStats)) {
        if let Ok(mut m) = self.inner.lock() {
            f(m.entry(camera.to_string()).or_default());
        }
    }

    /// Drops a camera's entry (it runs on another node now).
    pub fn remove(&self, camera: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(camera);
        }
    }

    /// Every camera's figures, by id.
    pub fn cameras(&self) -> BTreeMap<String, CameraStats> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The stats message: `{"cameras": {id: {...}}}`.
    pub fn snapshot(&self) -> serde_json::Value {
        let cams = self.inner.lock().map(|m| m.clone()).unwrap_or_default();
        serde_json::json!({ "cameras": cams })
    }
}
