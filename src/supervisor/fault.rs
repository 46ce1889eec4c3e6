//! Fault injection for the supervision tests, for faults a test cannot otherwise cause:
//! `STREETWATCH_FAULT_PANIC=CAMERA:N` makes camera CAMERA's analysis panic at its N-th sampled
//! frame; `STREETWATCH_FAULT_STALL=CAMERA:N` makes its decoder hang at its N-th sampled frame
//! (as a decoder stuck inside a call does) until the camera is stopped. Each fires once per
//! process, so the restarted camera runs. Nothing else in the daemon reads them; unset (always,
//! in production) they cost one comparison per frame.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether the injected panic has happened.
static PANICKED: AtomicBool = AtomicBool::new(false);
/// Whether the injected stall has happened.
static STALLED: AtomicBool = AtomicBool::new(false);

/// A fault armed for one camera's run, if any.
#[derive(Debug)]
pub struct Injected {
    at_frame: Option<u64>,
    frames: u64,
    fired: &'static AtomicBool,
}

impl Injected {
    /// Reads `STREETWATCH_FAULT_PANIC` for camera `id`.
    pub fn panic_for(id: &str) -> Self {
        Self::read("STREETWATCH_FAULT_PANIC", id, &PANICKED)
    }

    /// Reads `STREETWATCH_FAULT_STALL` for camera `id`.
    pub fn stall_for(id: &str) -> Self {
        Self::read("STREETWATCH_FAULT_STALL", id, &STALLED)
    }

    fn read(var: &str, id: &str, fired: &'static AtomicBool) -> Self {
        let at_frame = std::env::var(var)
            .ok()
            .and_then(|v| {
                let (camera, n) = v.rsplit_once(':')?;
                (camera == id).then(|| n.parse().ok()).flatten()
            })
            .filter(|_| !fired.load(Ordering::SeqCst));
        Self {
            at_frame,
            frames: 0,
            fired,
        }
    }

    /// Counts a sampled frame; true at the armed one, the first time.
    fn due(&mut self) -> bool {
        self.frames += 1;
        self.at_frame == Some(self.frames) && !self.fired.swap(true, Ordering::SeqCst)
    }

    /// Counts a sampled frame; panics at the armed one.
    pub fn on_frame(&mut self, camera: &str) {
        if self.due() {
            panic!(
                "injected fault: camera {camera} panics at frame {}",
                self.frames
            );
        }
    }

    /// Counts a decoded frame; at the armed one, hangs until `stop` is set.
    pub fn hang_if_due(&mut self, camera: &str, stop: &AtomicBool) {
        if self.due() {
            tracing::warn!(
                camera,
                "injected fault: the decoder hangs at frame {}",
                self.frames
            );
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
