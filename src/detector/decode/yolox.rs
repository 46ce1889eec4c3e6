//! YOLOX: `[1, N, 5 + classes]` over strides 8, 16, 32, one anchor per cell; rows are grid
//! offsets, log sizes, objectness and class scores (both already sigmoided).

use super::{dim_is, plan_error, Context, OutputInfo, PlanError};
use crate::detector::Candidate;
use crate::geometry::BBox;

const STRIDES: [u32; 3] = [8, 16, 32];

/// Number of anchors YOLOX has for an input size.
pub fn anchors(input_w: u32, input_h: u32) -> usize {
    STRIDES
        .iter()
        .map(|s| ((input_w / s) * (input_h / s)) as usize)
        .sum()
}

/// The index of the YOLOX output, if the model has exactly one of the right shape.
pub fn plan(outputs: &[OutputInfo], classes: usize, input: [u32; 2]) -> Result<usize, PlanError> {
    let [w, h] = input;
    let n = anchors(w, h);
    let [o] = outputs else {
        return Err(plan_error(
            "layout",
            format!("yolox has one output, the model has {}", outputs.len()),
        ));
    };
    let s = &o.shape;
    if s.len() != 3 || !dim_is(s[0], 1) || !dim_is(s[1], n) {
        return Err(plan_error(
            "layout",
            format!(
                "yolox with input {w}x{h} needs an output [1, {n}, 5 + classes], {:?} is {s:?}",
                o.name
            ),
        ));
    }
    if !dim_is(s[2], 5 + classes) {
        return Err(plan_error(
            "labels",
            format!(
                "output {:?} {s:?} has {} classes, the manifest lists {classes} labels",
                o.name,
                s[2] - 5
            ),
        ));
    }
    Ok(0)
}

/// Decodes raw YOLOX rows into candidates (input-pixel boxes); scores are obj × cls, every class
/// at or above its threshold, as in the reference.
pub fn decode(data: &[f32], ctx: &Context) -> Vec<Candidate> {
    let [input_w, input_h] = ctx.input;
    let row = 5 + ctx.classes;
    let min_score = ctx.min_threshold();
    let mut out = Vec::new();
    let mut anchor = 0usize;
    for stride in STRIDES {
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
                    if score >= (ctx.threshold)(class) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::manifest::DecodeOptions;

    #[test]
    fn decodes_one_anchor() {
        let classes = 2;
        let n = anchors(32, 32);
        let mut data = vec![0.0f32; n * (5 + classes)];
        // Anchor (gx=1, gy=2) of stride 8 is index 2*4+1 = 9.
        let r = &mut data[9 * 7..10 * 7];
        r.copy_from_slice(&[0.5, 0.5, 0.0, (2.0f32).ln(), 0.9, 0.1, 0.8]);
        let options = DecodeOptions::default();
        let ctx = Context {
            input: [32, 32],
            classes,
            threshold: &|_| 0.3,
            options: &options,
        };
        let out = decode(&data, &ctx);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class, 1);
        assert!((out[0].score - 0.72).abs() < 1e-6);
        assert_eq!(out[0].bbox, BBox::from_center(12.0, 20.0, 8.0, 16.0));
    }
}
