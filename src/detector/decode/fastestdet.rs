//! FastestDet: one output `[1, 5 + classes, H, W]`, one box per cell: objectness (sigmoided in
//! the graph), x/y offsets (tanh), width/height as fractions of the input (sigmoid), class
//! probabilities (softmax in the graph); score = obj^0.6 × cls^0.4, as the reference does.

use super::{argmax, dim_is, plan_error, sigmoid, Context, OutputInfo, PlanError, Tensor};
use crate::detector::Candidate;
use crate::geometry::BBox;

/// The index of the FastestDet output.
pub fn plan(outputs: &[OutputInfo], classes: usize) -> Result<usize, PlanError> {
    let [o] = outputs else {
        return Err(plan_error(
            "layout",
            format!("fastestdet has one output, the model has {}", outputs.len()),
        ));
    };
    let s = &o.shape;
    if s.len() != 4 || !dim_is(s[0], 1) {
        return Err(plan_error(
            "layout",
            format!(
                "fastestdet needs [1, 5 + classes, H, W], {:?} is {s:?}",
                o.name
            ),
        ));
    }
    if !dim_is(s[1], 5 + classes) {
        return Err(plan_error(
            "labels",
            format!(
                "output {:?} {s:?} has {} classes, the manifest lists {classes} labels",
                o.name,
                s[1] - 5
            ),
        ));
    }
    Ok(0)
}

/// Decodes every cell into at most one candidate in input pixels.
pub fn decode(t: &Tensor, ctx: &Context) -> Vec<Candidate> {
    let [_, c, gh, gw] = t.shape[..] else {
        return Vec::new();
    };
    if c < 5 || t.data.len() < c * gh * gw {
        return Vec::new();
    }
    let plane = gh * gw;
    let at = |k: usize, cell: usize| t.data[k * plane + cell];
    let (iw, ih) = (ctx.input[0] as f32, ctx.input[1] as f32);
    let mut out = Vec::new();
    for cell in 0..plane {
        let obj = at(0, cell);
        let Some((class, cls)) = argmax((5..c).map(|k| at(k, cell))) else {
            continue;
        };
        let score = obj.max(0.0).powf(0.6) * cls.max(0.0).powf(0.4);
        if score < (ctx.threshold)(class) {
            continue;
        }
        let (row, col) = ((cell / gw) as f32, (cell % gw) as f32);
        let cx = (col + at(1, cell).tanh()) / gw as f32;
        let cy = (row + at(2, cell).tanh()) / gh as f32;
        let w = sigmoid(at(3, cell));
        let h = sigmoid(at(4, cell));
        out.push(Candidate {
            class,
            score,
            bbox: BBox::from_center(cx * iw, cy * ih, w * iw, h * ih),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::manifest::DecodeOptions;

    #[test]
    fn decodes_one_cell() {
        // 2x2 grid, 1 class; cell 3 = (row 1, col 1), offsets 0 -> centre (0.5, 0.5) of the input.
        let mut data = vec![0.0; 6 * 4];
        data[3] = 1.0; // obj
        data[5 * 4 + 3] = 1.0; // class prob
        let options = DecodeOptions::default();
        let ctx = Context {
            input: [100, 100],
            classes: 1,
            threshold: &|_| 0.5,
            options: &options,
        };
        let d = decode(
            &Tensor {
                shape: vec![1, 6, 2, 2],
                data,
            },
            &ctx,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].bbox, BBox::from_center(50.0, 50.0, 50.0, 50.0));
    }
}
