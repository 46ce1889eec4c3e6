//! Writing frames to an MP4 file with FFmpeg: H.264 (libx264) when available, else MPEG-4 Part 2.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{context::Context as Scaler, flag::Flags};
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::{codec, encoder, format, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use image::RgbImage;

/// An MP4 being written, one RGB frame at a time.
pub(super) struct ClipWriter {
    output: format::context::Output,
    encoder: encoder::Video,
    scaler: Scaler,
    rgb: VideoFrame,
    yuv: VideoFrame,
    time_base: Rational,
    next_pts: i64,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl ClipWriter {
    /// Opens `path` for a `width`x`height` clip at `fps`, stamped with `start_time` as its
    /// `creation_time` so replays of the clip have fixed event times.
    pub(super) fn create(
        path: &Path,
        width: u32,
        height: u32,
        fps: u32,
        start_time: DateTime<Utc>,
    ) -> Result<Self, String> {
        ffmpeg::init().map_err(|e| err("FFmpeg init", e))?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        let mut output = format::output(path).map_err(|e| err("open output", e))?;
        let global_header = output
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER);
        let (codec, opts) = match encoder::find_by_name("libx264") {
            Some(c) => {
                let mut d = Dictionary::new();
                d.set("preset", "veryfast");
                d.set("crf", "23");
                (c, d)
            }
            None => {
                let c = encoder::find(codec::Id::MPEG4)
                    .ok_or("neither libx264 nor an MPEG-4 encoder is in this FFmpeg")?;
                let mut d = Dictionary::new();
                d.set("qscale", "3");
                (c, d)
            }
        };
        let time_base = Rational(1, fps as i32);
        let mut stream = output.add_stream(codec).map_err(|e| err("add stream", e))?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(|e| err("video encoder", e))?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(time_base);
        enc.set_frame_rate(Some(Rational(fps as i32, 1)));
        // A keyframe every two seconds, so cameras decoding keyframes only still see the scene.
        enc.set_gop(2 * fps);
        enc.set_max_b_frames(0);
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = enc.open_with(opts).map_err(|e| err("open encoder", e))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        let mut meta = Dictionary::new();
        meta.set(
            "creation_time",
            &start_time.to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        output.set_metadata(meta);
        output.write_header().map_err(|e| err("write header", e))?;
        let scaler = Scaler::get(
            Pixel::RGB24,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            Flags::BILINEAR,
        )
        .map_err(|e| err("colour converter", e))?;
        Ok(Self {
            output,
            encoder,
            scaler,
            rgb: VideoFrame::new(Pixel::RGB24, width, height),
            yuv: VideoFrame::new(Pixel::YUV420P, width, height),
            time_base,
            next_pts: 0,
        })
    }

    /// Appends one frame.
    pub(super) fn push(&mut self, img: RgbImage) -> Result<(), String> {
        let (w, h) = (self.rgb.width(), self.rgb.height());
        if img.dimensions() != (w, h) {
            return Err(format!(
                "frame is {}x{}, clip is {w}x{h}",
                img.width(),
                img.height()
            ));
        }
        let stride = self.rgb.stride(0);
        let row = w as usize * 3;
        let data = self.rgb.data_mut(0);
        for (y, src) in img.as_raw().chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(src);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(|e| err("colour conversion", e))?;
        self.yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| err("encode", e))?;
        self.drain()
    }

    /// Flushes the encoder and closes the file.
    pub(super) fn finish(mut self) -> Result<(), String> {
        self.encoder.send_eof().map_err(|e| err("encode", e))?;
        self.drain()?;
        self.output
            .write_trailer()
            .map_err(|e| err("write trailer", e))
    }

    fn drain(&mut self) -> Result<(), String> {
        let stream_tb = self
            .output
            .stream(0)
            .map(|s| s.time_base())
            .unwrap_or(self.time_base);
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(self.time_base, stream_tb);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| err("write packet", e))?;
        }
        Ok(())
    }
}
