//! YOLOX output decoding: `[1, N, 5 + classes]` over strides 8, 16, 32.

use super::Candidate;
use crate::geometry::BBox;

/// Decodes raw YOLOX rows into candidates (input-pixel boxes) at or above `min_score`.
///
/// `threshold(class)` is the per-class score threshold; scores are obj × cls as in the reference.
pub fn decode(
    data: &[f32],
    input_w: u32,
    input_h: u32,
    classes: usize,
    threshold: &dyn Fn(usize) -> f32,
) -> Vec<Candidate> {
    let row = 5 + classes;
    let min_score = (0..classes).map(threshold).fold(f32::INFINITY, f32::min);
    let mut out = Vec::new();
    let mut anchor = 0usize;
    for stride in [8u32, 16, 32] {
        let (gw, gh) = (input_w / stride, input_h / stride);
        for gy in 0..gh {
            for gx in 0..gw {
                let Some(r) = data.get(anchor * row..(anchor + 1) * row) else {
                    return out;
                };
                anchor += 1;
                let obj = r[4];
                // cls <= 1, so obj bounds every class score: skip the row cheaply.
                if obj < min_score {
                    continue;
                }
                let s = stride as f32;
                let cx = (r[0] + gx as f32) * s;
                let cy = (r[1] + gy as f32) * s;
                let w = r[2].exp() * s;
                let h = r[3].exp() * s;
                for (class, &cls) in r[5..].iter().enumerate() {
                    let score = obj * cls;
                    if score >= threshold(class) {
                        out.push(Candidate {
                            class,
                            score,
                            bbox: BBox::from_center(cx, cy, w, h),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Number of anchors YOLOX has for an input size.
pub fn anchors(input_w: u32, input_h: u32) -> usize {
    [8u32, 16, 32]
        .iter()
        .map(|s| ((input_w / s) * (input_h / s)) as usize)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_one_anchor() {
        let classes = 2;
        let n = anchors(32, 32);
        let mut data = vec![0.0f32; n * (5 + classes)];
        // Anchor (gx=1, gy=2) of stride 8 is index 2*4+1 = 9.
        let r = &mut data[9 * 7..10 * 7];
        r.copy_from_slice(&[0.5, 0.5, 0.0, (2.0f32).ln(), 0.9, 0.1, 0.8]);
        let out = decode(&data, 32, 32, classes, &|_| 0.3);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class, 1);
        assert!((out[0].score - 0.72).abs() < 1e-6);
        assert_eq!(out[0].bbox, BBox::from_center(12.0, 20.0, 8.0, 16.0));
    }
}
