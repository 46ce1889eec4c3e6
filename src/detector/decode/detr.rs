//! Set-prediction detectors (RT-DETR, D-FINE, RF-DETR): a fixed number of queries, each one box,
//! no NMS. Three export shapes are read: boxes `[1, Q, 4]` + class logits `[1, Q, classes]`;
//! boxes + labels `[1, Q]` + scores `[1, Q]`; or one `[1, Q, 4 + classes]` (Ultralytics RT-DETR).

use super::{argmax, dim_is, plan_error, sigmoid, Context, OutputInfo, PlanError, Tensor};
use crate::detector::manifest::{BoxFormat, BoxUnits, DecodeOptions, ScoreKind};
use crate::detector::Candidate;
use crate::geometry::BBox;

/// Which outputs hold what.
#[derive(Debug, Clone, PartialEq)]
pub enum Heads {
    /// Boxes and per-class scores.
    BoxesLogits {
        /// `[1, Q, 4]`.
        boxes: usize,
        /// `[1, Q, classes]`.
        logits: usize,
    },
    /// Boxes, class ids and scores.
    BoxesLabelsScores {
        /// `[1, Q, 4]`.
        boxes: usize,
        /// `[1, Q]` class ids.
        labels: usize,
        /// `[1, Q]` scores.
        scores: usize,
    },
    /// One `[1, Q, 4 + classes]` output.
    Combined(usize),
}

/// How to read a DETR-style model.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Output roles.
    pub heads: Heads,
    /// Apply a sigmoid to scores.
    pub logits: bool,
    /// Box encoding.
    pub format: BoxFormat,
    /// Boxes are fractions of the input size.
    pub normalized: bool,
}

/// Finds the boxes and the scores among the outputs.
pub fn plan(
    outputs: &[OutputInfo],
    classes: usize,
    options: &DecodeOptions,
) -> Result<Plan, PlanError> {
    let rank3 = |last: usize| {
        outputs
            .iter()
            .position(|o| o.shape.len() == 3 && dim_is(o.shape[0], 1) && o.shape[2] == last as i64)
    };
    let named = |o: &OutputInfo, words: &[&str]| {
        let n = o.name.to_lowercase();
        words.iter().any(|w| n.contains(w))
    };
    let heads = match (outputs.len(), rank3(4)) {
        (2, Some(boxes)) => {
            let logits = 1 - boxes;
            let s = &outputs[logits].shape;
            if s.len() != 3 || !dim_is(s[2], classes) {
                return Err(plan_error(
                    "labels",
                    format!(
                        "detr: scores {:?} {s:?} do not have one column per label ({classes})",
                        outputs[logits].name
                    ),
                ));
            }
            Heads::BoxesLogits { boxes, logits }
        }
        (3, Some(boxes)) => {
            let rest: Vec<usize> = (0..3)
                .filter(|&i| i != boxes && outputs[i].shape.len() == 2)
                .collect();
            let [a, b] = rest[..] else {
                return Err(plan_error(
                    "layout",
                    "detr with 3 outputs needs boxes [1, Q, 4], labels [1, Q] and scores [1, Q]"
                        .into(),
                ));
            };
            let is_labels =
                |i: usize| outputs[i].integer || named(&outputs[i], &["label", "class"]);
            let (labels, scores) = if is_labels(a) && !is_labels(b) {
                (a, b)
            } else if is_labels(b) && !is_labels(a) {
                (b, a)
            } else {
                return Err(plan_error(
                    "layout",
                    "detr: cannot tell labels from scores (integer type or a name with \"label\")"
                        .into(),
                ));
            };
            Heads::BoxesLabelsScores {
                boxes,
                labels,
                scores,
            }
        }
        (1, _) => match rank3(4 + classes) {
            Some(i) => Heads::Combined(i),
            None => {
                return Err(plan_error(
                    "layout",
                    format!(
                        "detr with one output needs [1, Q, 4 + {classes}], it is {:?}",
                        outputs[0].shape
                    ),
                ))
            }
        },
        _ => {
            return Err(plan_error(
                "layout",
                "detr needs a boxes output [1, Q, 4] and scores".into(),
            ))
        }
    };
    let default_logits = matches!(heads, Heads::BoxesLogits { .. });
    Ok(Plan {
        logits: options
            .scores
            .map(|s| s == ScoreKind::Logits)
            .unwrap_or(default_logits),
        format: options.box_format,
        normalized: options.box_units.unwrap_or(BoxUnits::Normalized) == BoxUnits::Normalized,
        heads,
    })
}

/// One query: its box values and its best (class, score), if any.
type Query<'a> = (&'a [f32], Option<(usize, f32)>);

/// One candidate per query whose best class passes its threshold.
pub fn decode(p: &Plan, outputs: &[Tensor], ctx: &Context) -> Vec<Candidate> {
    let score = |v: f32| if p.logits { sigmoid(v) } else { v };
    let (sx, sy) = if p.normalized {
        (ctx.input[0] as f32, ctx.input[1] as f32)
    } else {
        (1.0, 1.0)
    };
    let to_box = |b: &[f32]| match p.format {
        BoxFormat::Cxcywh => BBox::from_center(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy),
        BoxFormat::Xyxy => BBox::new(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy),
    };
    // Per query: box values and (class, score).
    let queries: Vec<Query> = match &p.heads {
        Heads::BoxesLogits { boxes, logits } => {
            let (Some(b), Some(l)) = (outputs.get(*boxes), outputs.get(*logits)) else {
                return Vec::new();
            };
            let c = l.shape.last().copied().unwrap_or(0).max(1);
            b.data
                .chunks_exact(4)
                .zip(l.data.chunks_exact(c))
                .map(|(bx, row)| (bx, argmax(row.iter().map(|&v| score(v)))))
                .collect()
        }
        Heads::BoxesLabelsScores {
            boxes,
            labels,
            scores,
        } => {
            let (Some(b), Some(l), Some(s)) = (
                outputs.get(*boxes),
                outputs.get(*labels),
                outputs.get(*scores),
            ) else {
                return Vec::new();
            };
            b.data
                .chunks_exact(4)
                .zip(l.data.iter().zip(&s.data))
                .map(|(bx, (&label, &sc))| {
                    (bx, (label >= 0.0).then_some((label as usize, score(sc))))
                })
                .collect()
        }
        Heads::Combined(i) => {
            let Some(t) = outputs.get(*i) else {
                return Vec::new();
            };
            let c = t.shape.last().copied().unwrap_or(0);
            if c <= 4 {
                return Vec::new();
            }
            t.data
                .chunks_exact(c)
                .map(|row| (&row[..4], argmax(row[4..].iter().map(|&v| score(v)))))
                .collect()
        }
    };
    queries
        .into_iter()
        .filter_map(|(bx, best)| {
            let (class, s) = best?;
            (class < ctx.classes && s >= (ctx.threshold)(class)).then(|| Candidate {
                class,
                score: s,
                bbox: to_box(bx),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, shape: &[i64], integer: bool) -> OutputInfo {
        OutputInfo {
            name: name.into(),
            shape: shape.to_vec(),
            integer,
        }
    }

    fn ctx(options: &DecodeOptions) -> Context<'_> {
        Context {
            input: [100, 200],
            classes: 2,
            threshold: &|_| 0.5,
            options,
        }
    }

    #[test]
    fn boxes_and_logits() {
        let o = DecodeOptions::default();
        let p = plan(
            &[
                info("pred_boxes", &[1, 2, 4], false),
                info("pred_logits", &[1, 2, 2], false),
            ],
            2,
            &o,
        )
        .unwrap();
        assert!(p.logits);
        let t = [
            Tensor {
                shape: vec![1, 2, 4],
                data: vec![0.5, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1],
            },
            Tensor {
                shape: vec![1, 2, 2],
                data: vec![-3.0, 3.0, -3.0, -3.0],
            },
        ];
        let d = decode(&p, &t, &ctx(&o));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 1);
        assert_eq!(d[0].bbox, BBox::new(40.0, 90.0, 60.0, 110.0));
    }

    #[test]
    fn labels_and_scores_in_pixels() {
        let o = DecodeOptions {
            box_format: BoxFormat::Xyxy,
            box_units: Some(BoxUnits::Pixels),
            ..Default::default()
        };
        let outs = [
            info("labels", &[1, 2], true),
            info("boxes", &[1, 2, 4], false),
            info("scores", &[1, 2], false),
        ];
        let p = plan(&outs, 2, &o).unwrap();
        assert!(!p.logits);
        let t = [
            Tensor {
                shape: vec![1, 2],
                data: vec![0.0, 1.0],
            },
            Tensor {
                shape: vec![1, 2, 4],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            },
            Tensor {
                shape: vec![1, 2],
                data: vec![0.9, 0.2],
            },
        ];
        let d = decode(&p, &t, &ctx(&o));
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].class, d[0].bbox), (0, BBox::new(1.0, 2.0, 3.0, 4.0)));
    }
}
