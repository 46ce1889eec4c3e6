//! Evidence photos (照相取证): the frame with the zone and the box drawn and the dwell written,
//! and a tight crop of the object, stored under `storage.dir/evidence` with their sha256.

use std::io::Write;
use std::path::{Path, PathBuf};

use ab_glyph::{FontVec, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_rect_mut, draw_hollow_rect_mut, draw_line_segment_mut, draw_text_mut,
};
use imageproc::rect::Rect;
use sha2::{Digest, Sha256};

use crate::event::EvidenceRef;
use crate::geometry::{BBox, Point};

/// Why evidence could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write evidence {path}: {why}")]
pub struct EvidenceError {
    /// File.
    pub path: PathBuf,
    /// Cause.
    pub why: String,
}

/// What to draw on an evidence frame.
#[derive(Debug, Clone)]
pub struct Annotation<'a> {
    /// Normalized zone polygon.
    pub zone: &'a [Point],
    /// Normalized object box.
    pub bbox: BBox,
    /// Label text, e.g. `car 05-05 03:37`.
    pub text: String,
    /// The stamp in the top-left corner: when and where, e.g. `2026-11-23 09:00:08 cam-01`.
    pub stamp: String,
}

/// One photo to write.
#[derive(Debug, Clone, Copy)]
pub struct Shot<'a> {
    /// The frame.
    pub frame: &'a RgbImage,
    /// When it was taken (local RFC 3339), recorded with the file.
    pub time: &'a str,
}

/// Where an event's photos go and what they are called.
#[derive(Debug, Clone, Copy)]
pub struct EventFiles<'a> {
    /// Camera id.
    pub camera_id: &'a str,
    /// Local date `YYYY-MM-DD` (one folder per day).
    pub day: &'a str,
    /// Event id.
    pub event_id: &'a str,
    /// Message sequence number.
    pub seq: u32,
}

/// Writes evidence files under one folder.
pub struct EvidenceStore {
    root: PathBuf,
    marker: Marker,
}

impl std::fmt::Debug for EvidenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceStore")
            .field("root", &self.root)
            .finish()
    }
}

/// Fonts tried for the label, in order (Debian's fonts-dejavu-core).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
];

impl EvidenceStore {
    /// A store writing under `root` (usually `storage.dir/evidence`).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            marker: Marker::load(),
        }
    }

    /// The evidence folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes the annotated frame and the crop for message `seq` of an event.
    pub fn save(
        &self,
        shot: Shot<'_>,
        files: EventFiles<'_>,
        ann: &Annotation<'_>,
    ) -> Result<Vec<EvidenceRef>, EvidenceError> {
        let annotated = self.annotate(shot.frame, ann);
        let crop = crop(shot.frame, ann.bbox);
        [("frame", &annotated), ("crop", &crop)]
            .into_iter()
            .map(|(kind, img)| self.write(img, kind, files, shot.time))
            .collect()
    }

    /// Writes the annotated frame of the moment the object came to rest (with the frame of the
    /// moment the dwell was reached, the pair enforcement needs: 照相取证).
    pub fn save_rest_start(
        &self,
        shot: Shot<'_>,
        files: EventFiles<'_>,
        ann: &Annotation<'_>,
    ) -> Result<EvidenceRef, EvidenceError> {
        self.write(
            &self.annotate(shot.frame, ann),
            "rest_start",
            files,
            shot.time,
        )
    }

    fn write(
        &self,
        img: &RgbImage,
        kind: &str,
        files: EventFiles<'_>,
        time: &str,
    ) -> Result<EvidenceRef, EvidenceError> {
        let dir = self.root.join(files.camera_id).join(files.day);
        std::fs::create_dir_all(&dir).map_err(|e| EvidenceError {
            path: dir.clone(),
            why: e.to_string(),
        })?;
        let path = dir.join(format!("{}-{}-{kind}.jpg", files.event_id, files.seq));
        let sha256 = write_jpeg(img, &path)?;
        Ok(EvidenceRef {
            kind: kind.into(),
            path: path.display().to_string(),
            sha256,
            time: Some(time.to_string()),
        })
    }

    /// Writes a photo that goes with a review change (the camera's re-check frame, annotated;
    /// a worker's photo of the cleared place) as `{event_id}-review-{tag}.jpg`.
    pub fn save_review_photo(
        &self,
        img: &RgbImage,
        camera_id: &str,
        day: &str,
        event_id: &str,
        tag: &str,
    ) -> Result<(String, String), EvidenceError> {
        let dir = self.root.join(camera_id).join(day);
        std::fs::create_dir_all(&dir).map_err(|e| EvidenceError {
            path: dir.clone(),
            why: e.to_string(),
        })?;
        let path = dir.join(format!("{event_id}-review-{tag}.jpg"));
        let sha256 = write_jpeg(img, &path)?;
        Ok((path.display().to_string(), sha256))
    }

    /// The frame with the zone, the box, its label and the stamp drawn on it.
    pub fn annotate(&self, frame: &RgbImage, ann: &Annotation<'_>) -> RgbImage {
        let mut img = frame.clone();
        let (w, h) = (img.width() as f32, img.height() as f32);
        self.marker.polygon(&mut img, ann.zone, ZONE_COLOR);
        self.marker
            .labelled_box(&mut img, ann.bbox.scale(w, h), &ann.text, BOX_COLOR);
        let size = (h / 30.0).clamp(14.0, 40.0);
        self.marker.overlay_text(
            &mut img,
            (size * 0.5) as i32,
            (size * 0.4) as i32,
            size,
            &ann.stamp,
            Rgb([255, 255, 255]),
        );
        img
    }
}

/// Colour of zone outlines.
pub const ZONE_COLOR: Rgb<u8> = Rgb([255, 200, 0]);
/// Colour of object boxes and their labels.
pub const BOX_COLOR: Rgb<u8> = Rgb([255, 40, 40]);

/// Draws zones, boxes and labels on pictures (evidence, `streetwatch detect --annotate`).
pub struct Marker {
    font: Option<FontVec>,
}

impl Marker {
    /// Loads the label font; without it boxes are drawn without text (and a warning says why).
    pub fn load() -> Self {
        let font = FONT_PATHS
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .find_map(|bytes| FontVec::try_from_vec(bytes).ok());
        if font.is_none() {
            tracing::warn!("no DejaVu font found: pictures will have boxes but no text (install fonts-dejavu-core)");
        }
        Self { font }
    }

    /// Outlines a normalized polygon.
    pub fn polygon(&self, img: &mut RgbImage, points: &[Point], color: Rgb<u8>) {
        let (w, h) = (img.width() as f32, img.height() as f32);
        let n = points.len();
        for i in 0..n {
            let (a, b) = (points[i], points[(i + 1) % n]);
            for d in [-1.0f32, 0.0, 1.0] {
                draw_line_segment_mut(img, (a.x * w + d, a.y * h), (b.x * w + d, b.y * h), color);
            }
        }
    }

    /// Text `size` pixels high with its top-left at (`x`, `y`), in `color` on a dark outline
    /// (a camera's on-screen display); nothing without a font.
    pub fn overlay_text(
        &self,
        img: &mut RgbImage,
        x: i32,
        y: i32,
        size: f32,
        text: &str,
        color: Rgb<u8>,
    ) {
        let Some(font) = &self.font else {
            return;
        };
        let scale = PxScale::from(size);
        for (dx, dy) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
            draw_text_mut(img, Rgb([20, 20, 20]), x + dx, y + dy, scale, font, text);
        }
        draw_text_mut(img, color, x, y, scale, font, text);
    }

    /// A 3-pixel box in frame pixels with `text` on a filled tab above it (below when no room).
    pub fn labelled_box(&self, img: &mut RgbImage, bbox: BBox, text: &str, color: Rgb<u8>) {
        let (w, h) = (img.width() as f32, img.height() as f32);
        let b = bbox.clamp(w - 1.0, h - 1.0);
        for inset in 0..3 {
            let i = inset as f32;
            if let Some(r) = rect(b.x1 + i, b.y1 + i, b.x2 - i, b.y2 - i) {
                draw_hollow_rect_mut(img, r, color);
            }
        }
        let Some(font) = &self.font else {
            return;
        };
        let size = (h / 28.0).clamp(14.0, 48.0);
        let tw = size * 0.62 * text.chars().count() as f32 + 8.0;
        let ty = if b.y1 >= size + 4.0 {
            b.y1 - size - 4.0
        } else {
            b.y2 + 2.0
        };
        if let Some(r) = rect(b.x1, ty, b.x1 + tw, ty + size + 4.0) {
            draw_filled_rect_mut(img, r, color);
        }
        draw_text_mut(
            img,
            Rgb([255, 255, 255]),
            (b.x1 + 4.0) as i32,
            (ty + 2.0) as i32,
            PxScale::from(size),
            font,
            text,
        );
    }
}

fn rect(x1: f32, y1: f32, x2: f32, y2: f32) -> Option<Rect> {
    let (w, h) = (x2 - x1, y2 - y1);
    (w >= 1.0 && h >= 1.0).then(|| Rect::at(x1 as i32, y1 as i32).of_size(w as u32, h as u32))
}

/// The object with a 10 % margin, clipped to the frame.
pub fn crop(frame: &RgbImage, bbox: BBox) -> RgbImage {
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let b = bbox.scale(w, h);
    let (mx, my) = (b.width() * 0.1, b.height() * 0.1);
    let c = BBox::new(b.x1 - mx, b.y1 - my, b.x2 + mx, b.y2 + my).clamp(w, h);
    let (x, y) = (c.x1 as u32, c.y1 as u32);
    let cw = (c.width() as u32)
        .max(1)
        .min(frame.width() - x.min(frame.width() - 1));
    let ch = (c.height() as u32)
        .max(1)
        .min(frame.height() - y.min(frame.height() - 1));
    image::imageops::crop_imm(
        frame,
        x.min(frame.width() - 1),
        y.min(frame.height() - 1),
        cw,
        ch,
    )
    .to_image()
}

/// Writes a JPEG atomically (temp file + rename) and returns its sha256.
pub fn write_jpeg(img: &RgbImage, path: &Path) -> Result<String, EvidenceError> {
    let err = |why: String| EvidenceError {
        path: path.to_path_buf(),
        why,
    };
    let bytes = crate::picture::encode_jpeg(img, 88).map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("jpg.part");
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
    f.write_all(&bytes).map_err(|e| err(e.to_string()))?;
    f.sync_all().map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// sha256 of a file, hex (for checking evidence).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}
