//! Fault injection for the supervision tests: `STREETWATCH_FAULT_PANIC=CAMERA:N` makes camera
//! CAMERA's analysis panic at its N-th sampled frame, once per process. Nothing else in the
//! daemon reads it; unset (always, in production) it costs one comparison per frame.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the injected panic has happened (once per process, so the restarted camera runs).
static FIRED: AtomicBool = AtomicBool::new(false);

/// The fault armed for one camera's run, if any.
#[derive(Debug)]
pub struct Injected {
    at_frame: Option<u64>,
    frames: u64,
}

impl Injected {
    /// Reads `STREETWATCH_FAULT_PANIC` for camera `id`.
    pub fn for_camera(id: &str) -> Self {
        let at_frame = std::env::var("STREETWATCH_FAULT_PANIC")
            .ok()
            .and_then(|v| {
                let (camera, n) = v.rsplit_once(':')?;
                (camera == id).then(|| n.parse().ok()).flatten()
            })
            .filter(|_| !FIRED.load(Ordering::SeqCst));
        Self {
            at_frame,
            frames: 0,
        }
    }

    /// Counts a sampled frame; panics at the armed one.
    pub fn on_frame(&mut self, camera: &str) {
        self.frames += 1;
        if self.at_frame == Some(self.frames) && !FIRED.swap(true, Ordering::SeqCst) {
            panic!(
                "injected fault: camera {camera} panics at frame {}",
                self.frames
            );
        }
    }
}
