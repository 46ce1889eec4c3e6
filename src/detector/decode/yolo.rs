//! Ultralytics YOLO exports: v8/v11 `[1, 4 + classes, N]` (channels first), the same transposed
//! `[1, N, 4 + classes]`, and v5 `[1, N, 5 + classes]` with an objectness column. Boxes are
//! centre and size in input pixels; one class per row (the best), as Ultralytics' own NMS does.

use super::{argmax, dim_is, plan_error, sigmoid, Context, OutputInfo, PlanError, Tensor};
use crate::detector::manifest::{BoxUnits, DecodeOptions, ScoreKind};
use crate::detector::Candidate;
use crate::geometry::BBox;

/// How to read a YOLO output.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Output index.
    pub output: usize,
    /// `[1, channels, N]` rather than `[1, N, channels]`.
    pub channels_first: bool,
    /// Rows carry an objectness column after the box.
    pub objectness: bool,
    /// Apply a sigmoid to scores.
    pub logits: bool,
    /// Boxes are fractions of the input size.
    pub normalized: bool,
}

/// Finds the YOLO output and its orientation.
pub fn plan(
    outputs: &[OutputInfo],
    classes: usize,
    input: [u32; 2],
    options: &DecodeOptions,
) -> Result<Plan, PlanError> {
    let [o] = outputs else {
        return Err(plan_error(
            "layout",
            format!("yolo has one output, the model has {}", outputs.len()),
        ));
    };
    let s = &o.shape;
    if s.len() != 3 || !dim_is(s[0], 1) {
        return Err(plan_error(
            "layout",
            format!(
                "yolo needs a [1, C, N] or [1, N, C] output, {:?} is {s:?}",
                o.name
            ),
        ));
    }
    let fits = |d: i64| d == (4 + classes) as i64 || d == (5 + classes) as i64;
    let cells = super::yolox_anchors(input[0], input[1]) as i64;
    // The class axis is the short one that fits the label count; N is a multiple of the grid.
    let channels_first = if fits(s[1]) && !fits(s[2]) {
        true
    } else if fits(s[2]) && !fits(s[1]) {
        false
    } else if fits(s[1]) && fits(s[2]) {
        s[1] < s[2]
    } else {
        return Err(plan_error(
            "labels",
            format!(
                "yolo output {:?} {s:?} has no axis of 4 + {classes} or 5 + {classes} values; check `labels`",
                o.name
            ),
        ));
    };
    let (c, n) = if channels_first {
        (s[1], s[2])
    } else {
        (s[2], s[1])
    };
    if n > 0 && n % cells != 0 {
        return Err(plan_error(
            "layout",
            format!(
                "yolo output {:?} {s:?} has {n} rows, not a multiple of the {cells} grid cells of a {}x{} input",
                o.name, input[0], input[1]
            ),
        ));
    }
    let objectness = options.objectness.unwrap_or(c == (5 + classes) as i64);
    // An explicit `objectness` that disagrees with the width would read a column as a label.
    let want = if objectness { 5 + classes } else { 4 + classes };
    if c != want as i64 {
        return Err(plan_error(
            "decode.objectness",
            format!(
                "yolo output {:?} {s:?} rows have {c} values; with objectness = {objectness} and {classes} labels they would have {want}",
                o.name
            ),
        ));
    }
    Ok(Plan {
        output: 0,
        channels_first,
        objectness,
        logits: options.scores == Some(ScoreKind::Logits),
        normalized: options.box_units == Some(BoxUnits::Normalized),
    })
}

/// Decodes rows into candidates in input pixels.
pub fn decode(p: &Plan, outputs: &[Tensor], ctx: &Context) -> Vec<Candidate> {
    let Some(t) = outputs.get(p.output) else {
        return Vec::new();
    };
    let (c, n) = match t.shape.as_slice() {
        [_, a, b] if p.channels_first => (*a, *b),
        [_, a, b] => (*b, *a),
        _ => return Vec::new(),
    };
    let first_class = if p.objectness { 5 } else { 4 };
    // `check` refuses such outputs first; a decoder alone still never reads past its data.
    if c < first_class || c.checked_mul(n).is_none_or(|len| t.data.len() < len) {
        return Vec::new();
    }
    let get = |row: usize, k: usize| {
        if p.channels_first {
            t.data[k * n + row]
        } else {
            t.data[row * c + k]
        }
    };
    let score = |v: f32| if p.logits { sigmoid(v) } else { v };
    let (sx, sy) = if p.normalized {
        (ctx.input[0] as f32, ctx.input[1] as f32)
    } else {
        (1.0, 1.0)
    };
    let min = ctx.min_threshold();
    let mut out = Vec::new();
    for row in 0..n {
        let obj = if p.objectness {
            score(get(row, 4))
        } else {
            1.0
        };
        if obj < min {
            continue;
        }
        let Some((class, cls)) = argmax((first_class..c).map(|k| score(get(row, k)))) else {
            continue;
        };
        let s = obj * cls;
        if s < (ctx.threshold)(class) {
            continue;
        }
        out.push(Candidate {
            class,
            score: s,
            bbox: BBox::from_center(
                get(row, 0) * sx,
                get(row, 1) * sy,
                get(row, 2) * sx,
                get(row, 3) * sy,
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(options: &DecodeOptions) -> Context<'_> {
        Context {
            input: [32, 32],
            classes: 2,
            threshold: &|_| 0.5,
            options,
        }
    }

    fn info(shape: &[i64]) -> Vec<OutputInfo> {
        vec![OutputInfo {
            name: "output0".into(),
            shape: shape.to_vec(),
            integer: false,
        }]
    }

    #[test]
    fn channels_first_and_rows_give_the_same_box() {
        let o = DecodeOptions::default();
        let n = super::super::yolox_anchors(32, 32); // 21
                                                     // Row 3: box centre (10, 12) size (4, 6), class 1 at 0.9.
        let row = [10.0, 12.0, 4.0, 6.0, 0.1, 0.9];
        let mut cf = vec![0.0; 6 * n];
        let mut rows = vec![0.0; 6 * n];
        for (k, v) in row.iter().enumerate() {
            cf[k * n + 3] = *v;
            rows[3 * 6 + k] = *v;
        }
        let p1 = plan(&info(&[1, 6, n as i64]), 2, [32, 32], &o).unwrap();
        let p2 = plan(&info(&[1, n as i64, 6]), 2, [32, 32], &o).unwrap();
        assert!(p1.channels_first && !p2.channels_first);
        let d1 = decode(
            &p1,
            &[Tensor {
                shape: vec![1, 6, n],
                data: cf,
            }],
            &ctx(&o),
        );
        let d2 = decode(
            &p2,
            &[Tensor {
                shape: vec![1, n, 6],
                data: rows,
            }],
            &ctx(&o),
        );
        assert_eq!(d1, d2);
        assert_eq!(d1.len(), 1);
        assert_eq!(d1[0].class, 1);
        assert_eq!(d1[0].bbox, BBox::new(8.0, 9.0, 12.0, 15.0));
    }

    #[test]
    fn objectness_multiplies() {
        let o = DecodeOptions::default();
        let n = 3 * super::super::yolox_anchors(32, 32);
        let mut rows = vec![0.0; 7 * n];
        rows[..7].copy_from_slice(&[10.0, 10.0, 2.0, 2.0, 0.8, 0.9, 0.1]);
        let p = plan(&info(&[1, n as i64, 7]), 2, [32, 32], &o).unwrap();
        assert!(p.objectness);
        let d = decode(
            &p,
            &[Tensor {
                shape: vec![1, n, 7],
                data: rows,
            }],
            &ctx(&o),
        );
        assert_eq!(d.len(), 1);
        assert!((d[0].score - 0.72).abs() < 1e-6);
    }
}
