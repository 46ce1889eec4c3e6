//! Demux and decode a video stream with FFmpeg (files, RTSP over TCP, HTTP).

use std::sync::Once;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{context::Context as Scaler, flag::Flags};
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;
use image::{GrayImage, RgbImage};

use super::clock::StreamClock;
use crate::domain::DecodeMode;

/// A decoding failure, with the stream's url.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {why}")]
pub struct DecodeError {
    /// Stream url (credentials removed).
    pub url: String,
    /// What failed.
    pub why: String,
}

/// One decoded picture.
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    /// Presentation time in seconds from the start of the stream.
    pub pts: f64,
    /// The picture.
    pub image: RgbImage,
    /// The picture small and grey (see [`super::small_size`]).
    pub small: GrayImage,
    /// The frame decoded right after it, small and grey (decode = "all" only).
    pub next_small: Option<GrayImage>,
    /// CPU time spent decoding (packets, frames, colour conversion) since the previous frame
    /// returned, not counting waits on the network.
    pub decode: std::time::Duration,
    /// Damaged packets the decoder rejected since the previous frame returned.
    pub damaged: u64,
}

/// An open video stream.
pub struct VideoDecoder {
    url: String,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    time_base: f64,
    /// Seconds since the first frame, with the stream's timestamp jumps taken out.
    clock: StreamClock,
    /// The stream's own start time (its time base), when the container says it.
    stream_start: Option<i64>,
    mode: DecodeMode,
    scaler: CachedScaler,
    small_scaler: CachedScaler,
    eof_sent: bool,
    /// Decoding time accumulated since the last frame returned.
    decode: std::time::Duration,
    /// Damaged packets since the last frame returned.
    damaged: u64,
    /// Keyframe packets sent to the decoder after `want` took them: their frames are wanted.
    judged_packets: u32,
}

static FFMPEG_INIT: Once = Once::new();

/// Removes `user:password@` from a url for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl VideoDecoder {
    /// Opens a stream; RTSP goes over TCP with a 10 s socket timeout so a dead camera is noticed.
    pub fn open(url: &str, mode: DecodeMode) -> Result<Self, DecodeError> {
        Self::open_with(url, mode, std::time::Duration::from_secs(10), false)
    }

    /// Opens a stream for one picture, soon: network reads give up after `timeout`, and the
    /// stream's parameters are taken from its description (RTSP's SDP) and first packets
    /// instead of FFmpeg's default 5 s of probing (an RTSP photo in 0.7 s instead of 5.7 s).
    pub fn open_for_photo(
        url: &str,
        mode: DecodeMode,
        timeout: std::time::Duration,
    ) -> Result<Self, DecodeError> {
        Self::open_with(url, mode, timeout, true)
    }

    fn open_with(
        url: &str,
        mode: DecodeMode,
        timeout: std::time::Duration,
        quick_probe: bool,
    ) -> Result<Self, DecodeError> {
        FFMPEG_INIT.call_once(|| {
            let _ = ffmpeg::init();
            ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        });
        let shown = redact(url);
        let err = |why: String| DecodeError {
            url: shown.clone(),
            why,
        };
        let path = url.strip_prefix("file://").unwrap_or(url);
        let mut opts = ffmpeg::Dictionary::new();
        if url.starts_with("rtsp://") || url.starts_with("rtsps://") {
            opts.set("rtsp_transport", "tcp");
            opts.set("timeout", &timeout.as_micros().to_string());
        } else if url.starts_with("http://") || url.starts_with("https://") {
            opts.set("rw_timeout", &timeout.as_micros().to_string());
            opts.set("reconnect", "0");
        }
        if quick_probe {
            opts.set("analyzeduration", "0");
            opts.set("probesize", "32768");
        }
        let network = path.contains("://");
        let started = std::time::Instant::now();
        let input = ffmpeg::format::input_with_dictionary(&path, opts).map_err(|e| {
            // A server that accepts and never answers makes FFmpeg give up with whatever its
            // last read said ("Invalid data found"); the operator needs to hear it was silent.
            if network && started.elapsed() >= timeout.mul_f64(0.9) {
                err(format!(
                    "cannot open: no answer within {} s ({e})",
                    timeout.as_secs()
                ))
            } else {
                err(format!("cannot open: {e}"))
            }
        })?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| err("no video stream".into()))?;
        let stream_index = stream.index();
        let stream_start = Some(stream.start_time()).filter(|&t| t != ffmpeg::ffi::AV_NOPTS_VALUE);
        let tb = stream.time_base();
        let time_base = tb.numerator() as f64 / tb.denominator().max(1) as f64;
        if !(time_base.is_finite() && time_base > 0.0) {
            return Err(err(format!(
                "the video stream's time base {}/{} gives no usable timestamps",
                tb.numerator(),
                tb.denominator()
            )));
        }
        let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| err(format!("unsupported codec parameters: {e}")))?;
        let mut decoder = ctx
            .decoder()
            .video()
            .map_err(|e| err(format!("no decoder for this codec: {e}")))?;
        if mode == DecodeMode::Keyframes {
            // SAFETY: the context is open and owned by `decoder`; skip_frame is a plain field the
            // decoder reads on each call, which is how FFmpeg's own tools set it.
            unsafe {
                (*decoder.as_mut_ptr()).skip_frame = ffmpeg::ffi::AVDiscard::AVDISCARD_NONKEY;
            }
        }
        Ok(Self {
            url: shown,
            input,
            decoder,
            stream_index,
            time_base,
            clock: StreamClock::new(time_base),
            stream_start,
            mode,
            scaler: None,
            small_scaler: None,
            eof_sent: false,
            decode: std::time::Duration::ZERO,
            damaged: 0,
            judged_packets: 0,
        })
    }

    /// The stream's `creation_time` tag, if the file has one.
    pub fn creation_time(&self) -> Option<String> {
        self.input
            .metadata()
            .get("creation_time")
            .map(str::to_string)
    }

    /// The file's duration in seconds, when its container says (files; not live streams).
    pub fn duration_seconds(&self) -> Option<f64> {
        let d = self.input.duration();
        (d > 0).then(|| d as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE))
    }

    /// Moves to the keyframe at or before `pts` seconds from the stream's start (files), so
    /// that the next frames decoded lead up to it; their times count from the stream's start.
    pub fn seek(&mut self, pts: f64) -> Result<(), DecodeError> {
        let start_us = match (self.stream_start, self.time_base) {
            (Some(s), tb) => (s as f64 * tb * 1e6) as i64,
            (None, _) => 0,
        };
        let target = start_us.saturating_add((pts.max(0.0) * 1e6) as i64);
        self.input
            .seek(target, ..target.saturating_add(1))
            .map_err(|e| self.err(format!("cannot seek to {pts:.2} s: {e}")))?;
        self.decoder.flush();
        self.judged_packets = 0;
        self.eof_sent = false;
        self.clock.restart_at(self.stream_start.unwrap_or(0));
        Ok(())
    }

    fn err(&self, why: String) -> DecodeError {
        DecodeError {
            url: self.url.clone(),
            why,
        }
    }

    /// Decodes the next frame that `want(pts)` accepts; frames it refuses are not converted to RGB.
    /// With every frame decoded, the one after it is decoded too and kept as a small grey
    /// picture, so later stages can tell what moves at that instant. Returns `Ok(None)` at the
    /// end of the stream.
    pub fn next_frame(
        &mut self,
        want: &mut dyn FnMut(f64) -> bool,
    ) -> Result<Option<DecodedFrame>, DecodeError> {
        while let Some((frame, pts)) = self.decode_next(want)? {
            // In keyframe mode the packet was judged before it was decoded.
            let judged = self.judged_packets > 0;
            self.judged_packets = self.judged_packets.saturating_sub(1);
            if !judged && !want(pts) {
                continue;
            }
            let started = std::time::Instant::now();
            let image = self.convert_rgb(&frame)?;
            let small = self.convert_small_gray(&frame)?;
            self.decode += started.elapsed();
            let next_small = match self.mode {
                DecodeMode::All => match self.decode_next(&mut |_| true)? {
                    Some((next, _)) => {
                        let started = std::time::Instant::now();
                        let g = self.convert_small_gray(&next)?;
                        self.decode += started.elapsed();
                        Some(g)
                    }
                    None => None,
                },
                DecodeMode::Keyframes => None,
            };
            return Ok(Some(DecodedFrame {
                pts,
                image,
                small,
                next_small,
                decode: std::mem::take(&mut self.decode),
                damaged: std::mem::take(&mut self.damaged),
            }));
        }
        Ok(None)
    }

    /// The next decoded frame with a timestamp, and its time in seconds from the first. In
    /// keyframe mode a keyframe's packet is offered to `want` first and not decoded at all
    /// when it is not wanted (each keyframe stands alone, so nothing is lost).
    fn decode_next(
        &mut self,
        want: &mut dyn FnMut(f64) -> bool,
    ) -> Result<Option<(VideoFrame, f64)>, DecodeError> {
        let mut frame = VideoFrame::empty();
        loop {
            let started = std::time::Instant::now();
            let received = self.decoder.receive_frame(&mut frame);
            self.decode += started.elapsed();
            match received {
                Ok(()) => {
                    let Some(ts) = frame.timestamp().or(frame.pts()) else {
                        continue;
                    };
                    let pts = self.clock.seconds(ts, &self.url);
                    return Ok(Some((frame, pts)));
                }
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => return Err(self.err(format!("decode error: {e}"))),
            }
            if self.eof_sent {
                return Ok(None);
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.stream_index {
                        continue;
                    }
                    if self.mode == DecodeMode::Keyframes && !packet.is_key() {
                        continue;
                    }
                    let judged = match packet.pts() {
                        Some(ts) if self.mode == DecodeMode::Keyframes => {
                            if !want(self.clock.seconds(ts, &self.url)) {
                                continue;
                            }
                            true
                        }
                        _ => false,
                    };
                    let started = std::time::Instant::now();
                    let sent = self.decoder.send_packet(&packet);
                    self.decode += started.elapsed();
                    if sent.is_ok() && judged {
                        self.judged_packets += 1;
                    }
                    if let Err(e) = sent {
                        // A damaged packet (common on lossy RTSP) is skipped, not fatal.
                        tracing::debug!(url = %self.url, "packet rejected: {e}");
                        self.damaged += 1;
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.eof_sent = true;
                    let _ = self.decoder.send_eof();
                }
                Err(e) => return Err(self.err(format!("read error: {e}"))),
            }
        }
    }

    /// The frame as a grey picture `SMALL_WIDTH` wide, straight from its luma plane.
    fn convert_small_gray(&mut self, frame: &VideoFrame) -> Result<GrayImage, DecodeError> {
        let (sw, sh) = super::small_size(frame.width(), frame.height());
        let to = Target {
            format: Pixel::GRAY8,
            width: sw,
            height: sh,
            flags: Flags::AREA,
            bytes_per_pixel: 1,
        };
        let buf = convert(&mut self.small_scaler, frame, to).map_err(|e| self.err(e))?;
        GrayImage::from_raw(sw, sh, buf).ok_or_else(|| self.err("grey buffer size mismatch".into()))
    }

    fn convert_rgb(&mut self, frame: &VideoFrame) -> Result<RgbImage, DecodeError> {
        let (w, h) = (frame.width(), frame.height());
        let to = Target {
            format: Pixel::RGB24,
            width: w,
            height: h,
            flags: Flags::BILINEAR,
            bytes_per_pixel: 3,
        };
        let buf = convert(&mut self.scaler, frame, to).map_err(|e| self.err(e))?;
        RgbImage::from_raw(w, h, buf).ok_or_else(|| self.err("frame buffer size mismatch".into()))
    }
}

/// What a decoded frame is converted to.
#[derive(Debug, Clone, Copy)]
struct Target {
    format: Pixel,
    width: u32,
    height: u32,
    flags: Flags,
    bytes_per_pixel: usize,
}

/// A software scaler, kept while the frames it converts keep their format and size.
type CachedScaler = Option<(Scaler, Pixel, u32, u32)>;

/// Converts a frame with `cache`'s scaler (made anew when the frame's format or size changed)
/// into the tightly packed pixels of `to`.
fn convert(cache: &mut CachedScaler, frame: &VideoFrame, to: Target) -> Result<Vec<u8>, String> {
    let (w, h, fmt) = (frame.width(), frame.height(), frame.format());
    let stale = !matches!(cache, Some((_, f, iw, ih)) if *f == fmt && *iw == w && *ih == h);
    if stale {
        let s = Scaler::get(fmt, w, h, to.format, to.width, to.height, to.flags)
            .map_err(|e| format!("cannot convert {fmt:?} to {:?}: {e}", to.format))?;
        *cache = Some((s, fmt, w, h));
    }
    let mut out = VideoFrame::empty();
    if let Some((scaler, ..)) = cache.as_mut() {
        scaler
            .run(frame, &mut out)
            .map_err(|e| format!("conversion to {:?} failed: {e}", to.format))?;
    }
    let stride = out.stride(0);
    let data = out.data(0);
    let row = to.width as usize * to.bytes_per_pixel;
    let mut buf = Vec::with_capacity(row * to.height as usize);
    for y in 0..to.height as usize {
        buf.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(buf)
}
