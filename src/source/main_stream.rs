//! A camera's main stream when detection runs on its sub-stream (`detect_url`): evidence photos
//! come from here, at the main stream's resolution.
//!
//! The stream is opened only when an event needs a photo, its next frame taken and the
//! connection closed. Kept open, it would cost a connection and a demuxer per camera around the
//! clock, and decoding its keyframes (what would make a photo ready at once) costs about three
//! times the sub-stream's; events are rare, so an RTSP session per photo costs far less, at the
//! price of the photo arriving up to one keyframe interval after the detection.

use std::time::{Duration, Instant};

use image::RgbImage;

use super::decode::{redact, DecodeError, VideoDecoder};
use crate::domain::DecodeMode;

/// How long a live main stream may take to connect and send a picture.
const LIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A frame taken from the main stream.
#[derive(Debug, Clone)]
pub struct MainPhoto {
    /// The picture, at the main stream's resolution.
    pub image: RgbImage,
    /// How long after the request it was there: the photo shows the street this much later
    /// than the detect frame (live streams; 0 for files, which are sought to the same time).
    pub delay: Duration,
}

/// A camera's main stream, opened on demand.
#[derive(Debug, Clone)]
pub struct MainStream {
    url: String,
    /// The camera's decode mode: with keyframes only, a file's photo is the keyframe at or
    /// after the moment (one picture decoded, not the GOP up to it).
    decode: DecodeMode,
}

impl MainStream {
    /// The main stream at `url`, of a camera decoding with `decode`.
    pub fn new(url: &str, decode: DecodeMode) -> Self {
        Self {
            url: url.to_string(),
            decode,
        }
    }

    /// The url without credentials, for logs and messages.
    pub fn shown_url(&self) -> String {
        redact(&self.url)
    }

    /// The main stream's picture of the moment `pts` seconds into the stream: for a file, the
    /// frame at that time (the detect stream's clip and this one show the same scene on the same
    /// clock); for a live stream, the next frame it sends.
    pub fn grab(&self, pts: f64) -> Result<MainPhoto, DecodeError> {
        let started = Instant::now();
        let missing = || DecodeError {
            url: self.shown_url(),
            why: "the stream ended before a picture".into(),
        };
        if super::is_file_url(&self.url) {
            let mut dec = VideoDecoder::open(&self.url, self.decode)?;
            dec.seek(pts)?;
            // Half a frame at 25 fps of slack: the two clips' timestamps need not be identical.
            let mut want = |p: f64| p + 0.02 >= pts;
            let frame = dec.next_frame(&mut want)?.ok_or_else(missing)?;
            return Ok(MainPhoto {
                image: frame.image,
                delay: Duration::ZERO,
            });
        }
        let mut dec = VideoDecoder::open_for_photo(&self.url, DecodeMode::Keyframes, LIVE_TIMEOUT)?;
        let frame = dec.next_frame(&mut |_| true)?.ok_or_else(missing)?;
        Ok(MainPhoto {
            image: frame.image,
            delay: started.elapsed(),
        })
    }
}
