//! Pictures for analysis, through OpenCV: views of frames without copying, small grey copies,
//! and the appearance of what a box holds, to tell whether the same thing is still in the same
//! place and whether two boxes show the same vehicle.
//!
//! A leaf module: it knows pixels and boxes, not tracks or zones.

use image::{GrayImage, RgbImage};
use opencv::core::{self as cv, Mat, Rect, Size};
use opencv::prelude::*;
use opencv::{boxed_ref::BoxedRef, imgcodecs, imgproc};

use crate::geometry::BBox;

pub use opencv::Error as PictureError;

/// Result of an OpenCV call.
pub type Result<T> = std::result::Result<T, PictureError>;

/// Reads a picture file (JPEG, PNG, ...) as `cv2.imread` does: OpenCV's decoders (for JPEG
/// the system's libjpeg, as Debian's python3-opencv uses), EXIF orientation applied, any bit
/// depth or channel count made 8-bit colour; then BGR to RGB.
pub fn read(path: &std::path::Path) -> Result<RgbImage> {
    let name = path.to_str().ok_or_else(|| {
        PictureError::new(
            cv::StsBadArg,
            format!("{}: the path is not UTF-8", path.display()),
        )
    })?;
    let bgr = imgcodecs::imread(name, imgcodecs::IMREAD_COLOR)?;
    if bgr.empty() || bgr.typ() != cv::CV_8UC3 {
        return Err(PictureError::new(
            cv::StsError,
            format!(
                "{}: unreadable, or not a picture OpenCV can decode",
                path.display()
            ),
        ));
    }
    let mut rgb = RgbImage::new(bgr.cols() as u32, bgr.rows() as u32);
    // Converted straight into the picture's buffer: same size and type, so OpenCV writes there.
    let buffer = rgb.as_ptr();
    let mut view =
        Mat::new_rows_cols_with_bytes_mut::<cv::Vec3b>(bgr.rows(), bgr.cols(), &mut rgb)?;
    imgproc::cvt_color_def(&bgr, &mut view, imgproc::COLOR_BGR2RGB)?;
    if view.data() != buffer {
        return Err(PictureError::new(
            cv::StsError,
            format!("{}: colour conversion wrote elsewhere", path.display()),
        ));
    }
    drop(view);
    Ok(rgb)
}

/// Encodes a picture as JPEG at `quality` (1-100) with OpenCV (the system's libjpeg-turbo):
/// several times faster than a pure-Rust encoder, which matters when many cameras write
/// evidence at once.
pub fn encode_jpeg(img: &RgbImage, quality: i32) -> Result<Vec<u8>> {
    let view = rgb_view(img)?;
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(&view, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    let mut bytes = cv::Vector::<u8>::new();
    let params = cv::Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality]);
    if !imgcodecs::imencode(".jpg", &bgr, &mut bytes, &params)? {
        return Err(PictureError::new(
            cv::StsError,
            "OpenCV could not encode the picture as JPEG".to_string(),
        ));
    }
    Ok(bytes.to_vec())
}

/// A read-only OpenCV view of an RGB picture (no copy).
pub fn rgb_view(img: &RgbImage) -> Result<BoxedRef<'_, Mat>> {
    Mat::new_rows_cols_with_bytes::<cv::Vec3b>(img.height() as i32, img.width() as i32, img)
}

/// A read-only OpenCV view of a grey picture (no copy).
pub fn gray_view(img: &GrayImage) -> Result<BoxedRef<'_, Mat>> {
    Mat::new_rows_cols_with_bytes::<u8>(img.height() as i32, img.width() as i32, img)
}

/// A continuous 8-bit single-channel matrix as a grey picture.
pub fn to_gray_image(m: &Mat) -> Result<GrayImage> {
    let bytes = if m.is_continuous() {
        m.data_bytes()?.to_vec()
    } else {
        m.try_clone()?.data_bytes()?.to_vec()
    };
    GrayImage::from_raw(m.cols() as u32, m.rows() as u32, bytes).ok_or_else(|| {
        PictureError::new(
            cv::StsUnmatchedSizes,
            "grey picture size mismatch".to_string(),
        )
    })
}

/// Resizes with pixel-area averaging (what OpenCV recommends for shrinking).
pub fn shrink(src: &impl cv::ToInputArray, w: i32, h: i32) -> Result<Mat> {
    let mut out = Mat::default();
    imgproc::resize(
        src,
        &mut out,
        Size::new(w.max(1), h.max(1)),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    Ok(out)
}

/// The picture `crate::source::SMALL_WIDTH` wide and grey, as the decoder makes it from the luma
/// plane (for frames that did not come from the decoder).
pub fn small_gray(img: &RgbImage) -> Result<GrayImage> {
    let (w, h) = crate::source::small_size(img.width(), img.height());
    let small = shrink(&rgb_view(img)?, w as i32, h as i32)?;
    let mut gray = Mat::default();
    imgproc::cvt_color_def(&small, &mut gray, imgproc::COLOR_RGB2GRAY)?;
    to_gray_image(&gray)
}

/// How far the content of grey float picture `now` is shifted against `before` (pixels, by
/// phase correlation); `(0, 0)` below `min` pixels, beyond a sixth of the picture, or when the
/// two do not agree on a shift.
pub fn shift_between(
    before: &(impl MatTraitConst + cv::ToInputArray),
    now: &(impl MatTraitConst + cv::ToInputArray),
    min: f64,
) -> Result<(f32, f32)> {
    let size = before.size()?;
    if size != now.size()? || size.width < 16 || size.height < 16 {
        return Ok((0.0, 0.0));
    }
    let mut window = Mat::default();
    imgproc::create_hanning_window(&mut window, size, cv::CV_32F)?;
    let mut response = 0.0;
    let shift = imgproc::phase_correlate(before, now, &window, Some(&mut response))?;
    let limit = (size.width.min(size.height) / 6) as f64;
    let meaningful = response >= 0.1
        && (shift.x.abs() >= min || shift.y.abs() >= min)
        && shift.x.abs() <= limit
        && shift.y.abs() <= limit;
    Ok(if meaningful {
        (shift.x as f32, shift.y as f32)
    } else {
        (0.0, 0.0)
    })
}

/// A pixel box as an OpenCV rectangle clipped to a `w` x `h` picture (None if nothing is left).
pub fn clip_rect(b: &BBox, w: u32, h: u32) -> Option<Rect> {
    let x1 = b.x1.floor().max(0.0) as i32;
    let y1 = b.y1.floor().max(0.0) as i32;
    let x2 = (b.x2.ceil() as i32).min(w as i32);
    let y2 = (b.y2.ceil() as i32).min(h as i32);
    (x2 - x1 >= 2 && y2 - y1 >= 2).then(|| Rect::new(x1, y1, x2 - x1, y2 - y1))
}

/// Side of a patch, in pixels.
const PATCH: usize = 32;
/// Side of a patch cell: a patch is compared cell by cell, so part of it may be hidden.
const CELL: usize = 8;
const CELLS: usize = (PATCH / CELL) * (PATCH / CELL);
/// How far (fraction of the box on each side) a place is searched for its patch: box jitter,
/// and a camera that sways.
const SEARCH: f32 = 0.125;
/// Hue bins of the colour signature (for coloured pixels) ...
const HUE_BINS: usize = 12;
/// ... saturation bins ...
const SAT_BINS: usize = 2;
/// ... and brightness bins for grey pixels (white, silver, grey and black cars).
const GREY_BINS: usize = 4;
const COLOUR_BINS: usize = HUE_BINS * SAT_BINS + GREY_BINS;

/// What a box looks like: a small grey patch of the place (is the same thing still there?) and
/// a colour signature of the object (is this the same vehicle?).
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    /// `PATCH` x `PATCH` grey levels of the box, resized.
    patch: Vec<u8>,
    /// Normalised histogram over `COLOUR_BINS`.
    colour: [f32; COLOUR_BINS],
}

impl Look {
    /// The look of pixel box `b` in `frame`; None when the box is (almost) outside it.
    pub fn of(frame: &RgbImage, b: &BBox) -> Result<Option<Look>> {
        let Some(rect) = clip_rect(b, frame.width(), frame.height()) else {
            return Ok(None);
        };
        let view = rgb_view(frame)?;
        let roi = Mat::roi(&view, rect)?;
        let small = shrink(&roi, PATCH as i32, PATCH as i32)?;
        let mut gray = Mat::default();
        imgproc::cvt_color_def(&small, &mut gray, imgproc::COLOR_RGB2GRAY)?;
        let mut hsv = Mat::default();
        imgproc::cvt_color_def(&small, &mut hsv, imgproc::COLOR_RGB2HSV_FULL)?;
        Ok(Some(Look {
            patch: gray.data_bytes()?.to_vec(),
            colour: colour_signature(hsv.data_bytes()?),
        }))
    }

    /// How alike two colour signatures are: the Bhattacharyya coefficient, 1 for the same
    /// distribution of colours, near 0 for a red car against a blue one.
    pub fn colour_similarity(&self, other: &Look) -> f32 {
        self.colour
            .iter()
            .zip(&other.colour)
            .map(|(a, b)| (a * b).sqrt())
            .sum::<f32>()
            .min(1.0)
    }

    /// Blends another sighting of the same object into the colour signature (the light on it
    /// changes through the day).
    pub fn learn_colour(&mut self, other: &Look, rate: f32) {
        for (a, b) in self.colour.iter_mut().zip(&other.colour) {
            *a += rate * (b - *a);
        }
    }

    /// Whether place `b` in `frame` still shows what this look's patch shows: the share of
    /// patch cells that match (zero-mean correlation per cell, so lighting does not matter),
    /// at the best shift within `SEARCH` of the box. A passer-by hiding a third of a parked
    /// car leaves about two thirds matching; another car, or the empty road, leaves few.
    pub fn still_at(&self, frame: &RgbImage, b: &BBox) -> Result<f32> {
        let (bw, bh) = (b.width().max(1.0), b.height().max(1.0));
        let grown = BBox::new(
            b.x1 - SEARCH * bw,
            b.y1 - SEARCH * bh,
            b.x2 + SEARCH * bw,
            b.y2 + SEARCH * bh,
        );
        let Some(rect) = clip_rect(&grown, frame.width(), frame.height()) else {
            return Ok(0.0);
        };
        // The search area at the patch's scale: the box itself becomes PATCH x PATCH.
        let (sx, sy) = (PATCH as f32 / bw, PATCH as f32 / bh);
        let sw = ((rect.width as f32 * sx).round() as i32).max(PATCH as i32);
        let sh = ((rect.height as f32 * sy).round() as i32).max(PATCH as i32);
        let view = rgb_view(frame)?;
        let roi = Mat::roi(&view, rect)?;
        let small = shrink(&roi, sw, sh)?;
        let mut area = Mat::default();
        imgproc::cvt_color_def(&small, &mut area, imgproc::COLOR_RGB2GRAY)?;
        let template =
            Mat::new_rows_cols_with_bytes::<u8>(PATCH as i32, PATCH as i32, &self.patch)?;
        let mut scores = Mat::default();
        imgproc::match_template_def(&area, &template, &mut scores, imgproc::TM_CCOEFF_NORMED)?;
        let mut best = cv::Point::default();
        cv::min_max_loc(&scores, None, None, None, Some(&mut best), &cv::no_array())?;
        let found =
            Mat::roi(&area, Rect::new(best.x, best.y, PATCH as i32, PATCH as i32))?.try_clone()?;
        Ok(cells_matching(&self.patch, found.data_bytes()?))
    }

    /// Takes the patch of a newer sighting that matched (slow changes: shadows moving over a
    /// parked car through the afternoon).
    pub fn refresh_patch(&mut self, newer: &Look) {
        self.patch.clone_from(&newer.patch);
    }
}

/// Share of the `CELL` x `CELL` cells of two patches that show the same thing: textured cells
/// by zero-mean correlation, flat cells by their brightness relative to the whole patch.
fn cells_matching(a: &[u8], b: &[u8]) -> f32 {
    let mean = |p: &[u8]| p.iter().map(|&v| v as f32).sum::<f32>() / p.len().max(1) as f32;
    let (ma, mb) = (mean(a).max(1.0), mean(b).max(1.0));
    let per_row = PATCH / CELL;
    let mut matching = 0;
    for cy in 0..per_row {
        for cx in 0..per_row {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f32, 0f32, 0f32, 0f32, 0f32);
            for y in cy * CELL..(cy + 1) * CELL {
                for x in cx * CELL..(cx + 1) * CELL {
                    let (va, vb) = (a[y * PATCH + x] as f32, b[y * PATCH + x] as f32);
                    sa += va;
                    sb += vb;
                    saa += va * va;
                    sbb += vb * vb;
                    sab += va * vb;
                }
            }
            let n = (CELL * CELL) as f32;
            let (ca, cb) = (sa / n, sb / n);
            let va = (saa / n - ca * ca).max(0.0);
            let vb = (sbb / n - cb * cb).max(0.0);
            // Texture below this (grey levels) is camera noise: the cell is flat.
            const FLAT: f32 = 4.0;
            let same = if va.sqrt() < FLAT && vb.sqrt() < FLAT {
                (ca / ma - cb / mb).abs() < 0.12
            } else if va.sqrt() < FLAT || vb.sqrt() < FLAT {
                // Texture appeared on a flat place, or vanished from a textured one; a little
                // texture both ways is still the same place.
                va.sqrt().max(vb.sqrt()) < 2.0 * FLAT && (ca / ma - cb / mb).abs() < 0.12
            } else {
                let cov = sab / n - ca * cb;
                cov / (va.sqrt() * vb.sqrt()) >= 0.5
            };
            matching += usize::from(same);
        }
    }
    matching as f32 / CELLS as f32
}

/// Colour histogram of HSV pixels (OpenCV's full-range 8-bit HSV): coloured pixels by hue and
/// saturation, grey ones by brightness; normalised to sum 1.
fn colour_signature(hsv: &[u8]) -> [f32; COLOUR_BINS] {
    let mut h = [0f32; COLOUR_BINS];
    let mut n = 0f32;
    for px in hsv.chunks_exact(3) {
        let (hue, sat, val) = (px[0] as usize, px[1] as usize, px[2] as usize);
        let bin = if sat < 48 || val < 40 {
            HUE_BINS * SAT_BINS + (val * GREY_BINS / 256).min(GREY_BINS - 1)
        } else {
            let hb = (hue * HUE_BINS / 256).min(HUE_BINS - 1);
            let sb = usize::from(sat >= 140);
            hb * SAT_BINS + sb
        };
        h[bin] += 1.0;
        n += 1.0;
    }
    if n > 0.0 {
        h.iter_mut().for_each(|v| *v /= n);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A street with texture and a car-like block at `x`, `colour`.
    fn scene(x: u32, colour: [u8; 3], gain: f32) -> RgbImage {
        RgbImage::from_fn(320, 200, |px, py| {
            let v = 90.0 + 30.0 * (((px * 7 + py * 13) % 17) as f32 / 17.0);
            let mut p = [v as u8, v as u8, (v * 0.9) as u8];
            if (x..x + 80).contains(&px) && (100..150).contains(&py) {
                // Windows and wheels give the car its texture.
                let dark =
                    (py - 100 < 12 && (px - x) % 20 < 14) || (py > 140 && (px - x) % 60 < 14);
                p = if dark { [30, 30, 35] } else { colour };
            }
            p.map(|c| (c as f32 * gain).min(255.0) as u8).into()
        })
    }

    fn car_box(x: u32) -> BBox {
        BBox::new(x as f32, 100.0, x as f32 + 80.0, 150.0)
    }

    #[test]
    fn the_same_car_matches_its_place_under_other_light_and_a_small_shift() {
        let look = Look::of(&scene(100, [200, 30, 30], 1.0), &car_box(100))
            .unwrap()
            .unwrap();
        // Dimmer, and the camera swayed 4 px.
        let later = scene(104, [200, 30, 30], 0.7);
        assert!(look.still_at(&later, &car_box(100)).unwrap() >= 0.8);
        // The place empty: the road's texture, not the car.
        let empty = scene(400, [200, 30, 30], 1.0);
        assert!(look.still_at(&empty, &car_box(100)).unwrap() < 0.4);
    }

    #[test]
    fn colour_tells_a_red_car_from_a_blue_one() {
        let red = Look::of(&scene(100, [200, 30, 30], 1.0), &car_box(100))
            .unwrap()
            .unwrap();
        let red_again = Look::of(&scene(140, [190, 35, 30], 0.8), &car_box(140))
            .unwrap()
            .unwrap();
        let blue = Look::of(&scene(100, [30, 40, 200], 1.0), &car_box(100))
            .unwrap()
            .unwrap();
        assert!(red.colour_similarity(&red_again) > 0.85);
        assert!(red.colour_similarity(&blue) < 0.5);
    }

    #[test]
    fn reads_a_picture_as_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let img = scene(100, [200, 30, 30], 1.0);
        img.save(&path).unwrap();
        assert_eq!(read(&path).unwrap(), img);
        assert!(read(&dir.path().join("missing.jpg")).is_err());
    }

    #[test]
    fn boxes_outside_the_picture_have_no_look() {
        let img = scene(100, [200, 30, 30], 1.0);
        assert!(Look::of(&img, &BBox::new(400.0, 10.0, 500.0, 40.0))
            .unwrap()
            .is_none());
        let small = small_gray(&img).unwrap();
        assert_eq!(small.dimensions(), (320, 200));
    }
}
