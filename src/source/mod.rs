//! Source: a camera's stream as timed frames, sampled at the camera's detection rate, with
//! reconnection and status for live cameras.

mod clock;
mod decode;
mod main_stream;
mod slot;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use decode::{redact, DecodeError, DecodedFrame, VideoDecoder};
pub use main_stream::{MainPhoto, MainStream};
pub use slot::{FeedItem, FrameSlot, WhenBusy};

use crate::domain::DecodeMode;

/// A frame handed to the pipeline: its time comes from the stream, not the wall clock.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Stream time of the frame.
    pub time: DateTime<Utc>,
    /// Seconds from the start of the stream (of this play of a file, of this connection).
    pub pts: f64,
    /// The picture (RGB), shared: the pipeline keeps it for evidence, the live view shows it.
    pub image: Arc<RgbImage>,
    /// The picture small and grey, for motion analysis (see [`small_size`]).
    pub small: GrayImage,
    /// The frame that followed it in the stream, small and grey, when every frame is decoded:
    /// what moves at this instant differs between the two.
    pub next_small: Option<GrayImage>,
    /// Decoding time spent on this frame and the unsampled ones before it.
    pub decode: Duration,
    /// Damaged packets dropped by the decoder since the previous sampled frame.
    pub damaged: u64,
}

/// Width of the small grey pictures used for motion analysis.
pub const SMALL_WIDTH: u32 = 320;

/// Size of the small grey picture of a `w` x `h` frame: `SMALL_WIDTH` wide (or the frame's
/// width if narrower), the height keeping the aspect.
pub fn small_size(w: u32, h: u32) -> (u32, u32) {
    let sw = SMALL_WIDTH.min(w).max(1);
    let sh = ((h as u64 * sw as u64 + w as u64 / 2) / w.max(1) as u64).max(1) as u32;
    (sw, sh)
}

impl Frame {
    /// A frame from a picture alone (tests, pictures): its small grey copy is made here, with
    /// nothing known of the frame after it.
    pub fn from_picture(time: DateTime<Utc>, image: RgbImage) -> Self {
        let small = crate::picture::small_gray(&image).unwrap_or_else(|e| {
            tracing::warn!("cannot make the small grey picture: {e}");
            GrayImage::new(1, 1)
        });
        Self {
            time,
            pts: 0.0,
            image: Arc::new(image),
            small,
            next_small: None,
            decode: Duration::ZERO,
            damaged: 0,
        }
    }
}

/// Picks frames at a fixed interval of stream time.
#[derive(Debug, Clone)]
pub struct Sampler {
    every: f64,
    next_due: Option<f64>,
}

impl Sampler {
    /// A sampler taking one frame every `every_seconds`.
    pub fn new(every_seconds: f64) -> Self {
        Self {
            every: every_seconds.max(0.0),
            next_due: None,
        }
    }

    /// Whether the frame at `pts` seconds is taken.
    pub fn take(&mut self, pts: f64) -> bool {
        match self.next_due {
            Some(due) if pts + 1e-6 < due => false,
            Some(due) => {
                // Stay on the grid of the first frame, but never fall behind after a gap.
                let steps = ((pts - due) / self.every.max(1e-9)).floor() + 1.0;
                self.next_due = Some(due + steps * self.every);
                true
            }
            None => {
                self.next_due = Some(pts + self.every);
                true
            }
        }
    }

    /// Starts over (after a reconnect, timestamps restart).
    pub fn reset(&mut self) {
        self.next_due = None;
    }
}

/// Connection state of a camera, as published on its status topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// Frames are arriving.
    Online,
    /// The stream failed; retrying with backoff.
    Reconnecting,
    /// Stopped (disabled, end of a file, shutdown).
    Offline,
}

/// A change of a camera's state.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// New state.
    pub state: CameraState,
    /// Why (for reconnecting / offline).
    pub error: Option<String>,
}

/// How to run a feed.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Stream url.
    pub url: String,
    /// Decode mode.
    pub decode: DecodeMode,
    /// Seconds between sampled frames.
    pub detect_every_seconds: f64,
    /// For files: speed relative to real time, 0 = as fast as possible.
    pub pace: f64,
    /// Stream time of pts 0; None = the wall clock when the stream opened (live cameras).
    pub start_time: Option<DateTime<Utc>>,
    /// Whether to reconnect after errors (live) or return them (replay).
    pub reconnect: bool,
    /// Files: how many times to play the file back to back, the stream time continuing across
    /// the joins (None: again and again until stopped).
    pub plays: Option<u32>,
}

impl FeedOptions {
    /// What the decoder does when the analysis is still busy with the previous frame: a file
    /// read as fast as possible waits for it; a live camera (or a paced file) does not.
    pub fn when_busy(&self) -> WhenBusy {
        if self.pace == 0.0 && is_file_url(&self.url) {
            WhenBusy::Wait
        } else {
            // A frame older than two detection intervals is not worth analysing any more.
            WhenBusy::Skip(Duration::from_secs_f64(
                (2.0 * self.detect_every_seconds).clamp(0.1, 3600.0),
            ))
        }
    }
}

/// Runs a feed on a thread of its own (named `name`) until `stop` or the end of a file, handing
/// its sampled frames and state changes to `slot`. `before_put` runs on the decoding thread
/// before each frame is handed over (the supervision tests use it to make a decoder hang).
pub fn spawn_feed(
    name: String,
    opts: FeedOptions,
    stop: Arc<AtomicBool>,
    slot: Arc<FrameSlot>,
    mut before_put: impl FnMut(&AtomicBool) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        let mut on_status = |s: StatusChange| slot.status(s);
        let mut on_frame = |f: Frame| {
            before_put(&stop);
            if !slot.put(f) {
                // The analysis has gone (a stalled camera being restarted): stop decoding.
                stop.store(true, Ordering::Relaxed);
            }
        };
        let ready = || slot.accepts_next();
        // The error is already a status change; nothing else to say.
        let _ = run_feed(&opts, &stop, &ready, &mut on_status, &mut on_frame);
        slot.end();
    })
}

/// Whether a url names a local file rather than a network stream.
pub fn is_file_url(url: &str) -> bool {
    url.starts_with("file://") || !url.contains("://")
}

/// How far a live camera's frame times may run ahead of the wall clock (network delay the
/// other way, clocks a little apart) before the wall clock stamps them.
const LIVE_LEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs a feed until `stop` is set or the stream ends (files), calling `on_frame` for each
/// sampled frame and `on_status` on every state change. A frame due while `ready` says no is
/// skipped before it is decoded where the stream allows. Returns the last error when not
/// reconnecting.
pub fn run_feed(
    opts: &FeedOptions,
    stop: &AtomicBool,
    ready: &dyn Fn() -> bool,
    on_status: &mut dyn FnMut(StatusChange),
    on_frame: &mut dyn FnMut(Frame),
) -> Result<(), DecodeError> {
    let mut backoff = Duration::from_secs(1);
    let mut state: Option<CameraState> = None;
    let mut set_state =
        |s: CameraState, error: Option<String>, on_status: &mut dyn FnMut(StatusChange)| {
            if state != Some(s) || s == CameraState::Reconnecting {
                state = Some(s);
                on_status(StatusChange { state: s, error });
            }
        };
    let mut sampler = Sampler::new(opts.detect_every_seconds);
    // Where a repeated file's next play starts in stream time.
    let mut loop_anchor: Option<DateTime<Utc>> = None;
    let mut played = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let result = VideoDecoder::open(&opts.url, opts.decode).and_then(|mut dec| {
            sampler.reset();
            let resume = if opts.plays != Some(1) {
                loop_anchor
            } else {
                None
            };
            let anchor = resume.or(opts.start_time).unwrap_or_else(Utc::now);
            let opened = Instant::now();
            let mut announced = false;
            let live = !is_file_url(&opts.url) && opts.start_time.is_none();
            let mut ahead = false;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let paced = opts.pace > 0.0 && is_file_url(&opts.url);
                let mut want = |pts: f64| {
                    // A paced file plays in real time: each frame is judged when it is due, so
                    // frames skipped while the analysis is busy do not make it run ahead.
                    if paced {
                        let due = Duration::from_secs_f64(pts.max(0.0) / opts.pace);
                        let elapsed = opened.elapsed();
                        if due > elapsed {
                            sleep_unless_stopped(due - elapsed, stop);
                        }
                    }
                    sampler.take(pts) && ready()
                };
                let Some(f) = dec.next_frame(&mut want)? else {
                    return Ok(());
                };
                if !announced {
                    announced = true;
                    set_state(CameraState::Online, None, on_status);
                }
                let mut time = chrono::TimeDelta::try_milliseconds((f.pts * 1000.0).round() as i64)
                    .and_then(|d| anchor.checked_add_signed(d))
                    .unwrap_or(anchor);
                // A live camera's frames cannot come from the future: if its timestamps ran
                // ahead (jumps under a minute each, added up), the wall clock stamps them.
                if live {
                    let now = Utc::now();
                    if time > now + LIVE_LEAD {
                        if !ahead {
                            ahead = true;
                            tracing::warn!(
                                url = %decode::redact(&opts.url),
                                "the stream's timestamps run {:.0} s ahead of this machine's clock: its frames are stamped with the clock",
                                (time - now).as_seconds_f64()
                            );
                        }
                        time = now;
                    }
                }
                loop_anchor = Some(
                    time + chrono::Duration::milliseconds(
                        (opts.detect_every_seconds * 1000.0).round() as i64,
                    ),
                );
                on_frame(Frame {
                    time,
                    pts: f.pts,
                    image: Arc::new(f.image),
                    small: f.small,
                    next_small: f.next_small,
                    decode: f.decode,
                    damaged: f.damaged,
                });
                backoff = Duration::from_secs(1);
            }
        });
        match result {
            Ok(()) if stop.load(Ordering::Relaxed) => break,
            Ok(()) if is_file_url(&opts.url) && opts.plays.is_none_or(|n| played + 1 < n) => {
                // No backoff between plays of a file.
                played += 1;
                continue;
            }
            Ok(()) if is_file_url(&opts.url) => break,
            Ok(()) => {
                // A live stream that ends cleanly is a dropped connection.
                if !opts.reconnect {
                    break;
                }
                set_state(
                    CameraState::Reconnecting,
                    Some("stream ended".into()),
                    on_status,
                );
            }
            Err(e) => {
                if !opts.reconnect {
                    set_state(CameraState::Offline, Some(e.to_string()), on_status);
                    return Err(e);
                }
                tracing::warn!("camera stream failed, retrying in {:?}: {e}", backoff);
                set_state(CameraState::Reconnecting, Some(e.to_string()), on_status);
            }
        }
        sleep_unless_stopped(backoff, stop);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    set_state(CameraState::Offline, None, on_status);
    Ok(())
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_keeps_interval() {
        let mut s = Sampler::new(1.0);
        let taken: Vec<f64> = (0..50)
            .map(|i| i as f64 * 0.2)
            .filter(|&t| s.take(t))
            .collect();
        assert_eq!(taken.len(), 10);
        assert!((taken[3] - 3.0).abs() < 1e-6);
        // After a gap, the next frame is taken at once and the grid continues.
        assert!(s.take(20.0));
        assert!(!s.take(20.5));
        assert!(s.take(21.0));
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("rtsp://u:p@10.0.0.5/s"), "rtsp://***@10.0.0.5/s");
        assert_eq!(redact("/clip.mp4"), "/clip.mp4");
    }
}
