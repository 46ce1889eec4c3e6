//! Mutated video files (MP4, MPEG-TS, Matroska, H.264 elementary streams) through the real
//! decoder (FFmpeg), the stream clock and the sampler, as a replay reads them.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use libfuzzer_sys::fuzz_target;
use streetwatch::domain::DecodeMode;
use streetwatch::source::{run_feed, FeedOptions};

/// Frames taken from one input at most: enough to pass a few keyframes and timestamp jumps.
const MAX_FRAMES: usize = 40;

fuzz_target!(|data: &[u8]| {
    let dir = common::work_dir("video");
    // The first byte chooses how to read it: decode mode and sampling interval.
    let Some((&how, clip)) = data.split_first() else {
        return;
    };
    let path = dir.join("clip");
    if std::fs::write(&path, clip).is_err() {
        return;
    }
    let opts = FeedOptions {
        url: path.display().to_string(),
        decode: if how & 1 == 0 {
            DecodeMode::All
        } else {
            DecodeMode::Keyframes
        },
        detect_every_seconds: [0.0, 0.2, 1.0, 5.0][(how as usize >> 1) % 4],
        pace: 0.0,
        start_time: chrono::DateTime::from_timestamp(1_796_000_000, 0),
        reconnect: false,
        plays: Some(1 + (how as u32 >> 3) % 2),
    };
    let stop = AtomicBool::new(false);
    let mut frames = 0;
    let _ = run_feed(&opts, &stop, &|| true, &mut |_| {}, &mut |frame| {
        assert!(frame.pts.is_finite(), "a frame at pts {}", frame.pts);
        frames += 1;
        if frames >= MAX_FRAMES {
            stop.store(true, Ordering::Relaxed);
        }
    });
});
