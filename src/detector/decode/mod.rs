//! Decoding model outputs into candidate boxes, one decoder per layout behind one interface:
//! [`plan`] looks at the output shapes once when the model loads (choosing the layout when the
//! manifest says `auto`, and rejecting outputs that fit no layout); [`decode`] reads each frame's
//! outputs with that plan.

mod detr;
mod fastestdet;
mod gfl;
mod yolo;
mod yolox;

pub use yolox::anchors as yolox_anchors;

use super::manifest::{DecodeOptions, Layout};
use super::Candidate;

/// One output as the model declares it; dynamic dimensions are negative.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputInfo {
    /// Output name.
    pub name: String,
    /// Declared shape.
    pub shape: Vec<i64>,
    /// Whether its elements are integers (class ids).
    pub integer: bool,
}

/// One output of one inference, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Actual shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// How to read a model's outputs, decided once when it loads.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// YOLOX grid output at this index.
    Yolox(usize),
    /// Ultralytics YOLO.
    Yolo(yolo::Plan),
    /// NanoDet / PicoDet.
    Gfl(gfl::Plan),
    /// DETR family.
    Detr(detr::Plan),
    /// FastestDet output at this index.
    Fastestdet(usize),
}

impl Plan {
    /// The layout this plan decodes.
    pub fn layout(&self) -> Layout {
        match self {
            Plan::Yolox(_) => Layout::Yolox,
            Plan::Yolo(_) => Layout::Yolo,
            Plan::Gfl(_) => Layout::Gfl,
            Plan::Detr(_) => Layout::Detr,
            Plan::Fastestdet(_) => Layout::Fastestdet,
        }
    }
}

/// Why outputs cannot be decoded: the manifest field to fix and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    /// Manifest field (`layout`, `labels`, `decode.…`).
    pub field: &'static str,
    /// What is wrong.
    pub why: String,
}

fn plan_error(field: &'static str, why: String) -> PlanError {
    PlanError { field, why }
}

/// What every decoder needs besides the outputs.
pub struct Context<'a> {
    /// Model input `[width, height]`.
    pub input: [u32; 2],
    /// Number of labels.
    pub classes: usize,
    /// Score threshold of a class.
    pub threshold: &'a dyn Fn(usize) -> f32,
    /// Layout options.
    pub options: &'a DecodeOptions,
}

impl Context<'_> {
    /// The lowest threshold of any class: rows below it are skipped early.
    fn min_threshold(&self) -> f32 {
        (0..self.classes)
            .map(self.threshold)
            .fold(f32::INFINITY, f32::min)
    }
}

/// Chooses and checks how to read `outputs` for `layout` (or finds the layout for `Auto`).
pub fn plan(
    layout: Layout,
    outputs: &[OutputInfo],
    classes: usize,
    input: [u32; 2],
    options: &DecodeOptions,
) -> Result<Plan, PlanError> {
    match layout {
        Layout::Yolox => yolox::plan(outputs, classes, input).map(Plan::Yolox),
        Layout::Yolo => yolo::plan(outputs, classes, input, options).map(Plan::Yolo),
        Layout::Gfl => gfl::plan(outputs, classes, input).map(Plan::Gfl),
        Layout::Detr => detr::plan(outputs, classes, options).map(Plan::Detr),
        Layout::Fastestdet => fastestdet::plan(outputs, classes).map(Plan::Fastestdet),
        Layout::Auto => auto(outputs, classes, input, options),
    }
}

/// Tries each layout in turn, most specific shapes first.
fn auto(
    outputs: &[OutputInfo],
    classes: usize,
    input: [u32; 2],
    options: &DecodeOptions,
) -> Result<Plan, PlanError> {
    let attempts: [(&str, Result<Plan, PlanError>); 5] = [
        (
            "fastestdet",
            fastestdet::plan(outputs, classes).map(Plan::Fastestdet),
        ),
        ("gfl", gfl::plan(outputs, classes, input).map(Plan::Gfl)),
        (
            "yolox",
            yolox::plan(outputs, classes, input).map(Plan::Yolox),
        ),
        (
            "yolo",
            yolo::plan(outputs, classes, input, options).map(Plan::Yolo),
        ),
        (
            "detr",
            detr::plan(outputs, classes, options).map(Plan::Detr),
        ),
    ];
    let mut why = Vec::new();
    for (name, attempt) in attempts {
        match attempt {
            Ok(p) => return Ok(p),
            Err(e) => why.push(format!("{name}: {}", e.why)),
        }
    }
    Err(plan_error(
        "layout",
        format!(
            "no layout fits the outputs {} with {classes} labels ({}); set `layout` and check `labels`",
            describe(outputs),
            why.join("; ")
        ),
    ))
}

/// `name [1, 3549, 85], ...` for messages.
pub fn describe(outputs: &[OutputInfo]) -> String {
    outputs
        .iter()
        .map(|o| format!("{:?} {:?}", o.name, o.shape))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one inference's outputs against the plan before they are decoded: the outputs it
/// reads are there, each one's values fill its shape, and the class axis has one column per
/// label. The plan checked the declared shapes when the model loaded; a dynamic axis (a
/// FastestDet graph with a free channel count, say) can only be caught here, frame by frame.
pub fn check(plan: &Plan, outputs: &[Tensor], classes: usize) -> Result<(), String> {
    for (i, t) in outputs.iter().enumerate() {
        let filled = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if filled != Some(t.data.len()) {
            return Err(format!(
                "output {i} has shape {:?} but {} values",
                t.shape,
                t.data.len()
            ));
        }
    }
    let get = |i: usize| {
        outputs
            .get(i)
            .ok_or_else(|| format!("output {i} is missing (the model gave {})", outputs.len()))
    };
    // `axis` of `t` (of rank `rank`) must hold `want` values: `what` says which.
    let axis = |t: &Tensor, rank: usize, axis: usize, want: usize, what: &str| {
        if t.shape.len() == rank && t.shape[axis] == want {
            Ok(())
        } else {
            Err(format!(
                "output shape {:?}: axis {axis} should hold {want} values ({what}) for the {classes} labels of the manifest; check `labels` and `layout`",
                t.shape
            ))
        }
    };
    match plan {
        Plan::Yolox(i) => axis(
            get(*i)?,
            3,
            2,
            5 + classes,
            "4 box values, objectness, a score per label",
        ),
        Plan::Yolo(p) => {
            let (first, what) = if p.objectness {
                (5, "4 box values, objectness, a score per label")
            } else {
                (4, "4 box values and a score per label, no objectness")
            };
            let k = if p.channels_first { 1 } else { 2 };
            axis(get(p.output)?, 3, k, first + classes, what)
        }
        Plan::Fastestdet(i) => axis(
            get(*i)?,
            4,
            1,
            5 + classes,
            "objectness, 4 box values, a score per label",
        ),
        Plan::Gfl(p) => p.levels.iter().try_for_each(|l| {
            axis(get(l.scores)?, 3, 2, classes, "a score per label")?;
            axis(get(l.distances)?, 3, 2, 4 * p.bins, "4 sides x bins")
        }),
        Plan::Detr(p) => match &p.heads {
            detr::Heads::BoxesLogits { boxes, logits } => {
                axis(get(*boxes)?, 3, 2, 4, "a box")?;
                axis(get(*logits)?, 3, 2, classes, "a score per label")
            }
            detr::Heads::BoxesLabelsScores {
                boxes,
                labels,
                scores,
            } => {
                axis(get(*boxes)?, 3, 2, 4, "a box")?;
                get(*labels)?;
                get(*scores).map(|_| ())
            }
            detr::Heads::Combined(i) => {
                axis(get(*i)?, 3, 2, 4 + classes, "a box and a score per label")
            }
        },
    }
}

/// Decodes one inference's outputs into candidates in input pixels.
pub fn decode(plan: &Plan, outputs: &[Tensor], ctx: &Context) -> Vec<Candidate> {
    match plan {
        Plan::Yolox(i) => outputs
            .get(*i)
            .map(|t| yolox::decode(&t.data, ctx))
            .unwrap_or_default(),
        Plan::Yolo(p) => yolo::decode(p, outputs, ctx),
        Plan::Gfl(p) => gfl::decode(p, outputs, ctx),
        Plan::Detr(p) => detr::decode(p, outputs, ctx),
        Plan::Fastestdet(i) => outputs
            .get(*i)
            .map(|t| fastestdet::decode(t, ctx))
            .unwrap_or_default(),
    }
}

/// Whether a declared dimension equals `want` (dynamic dimensions match anything).
fn dim_is(d: i64, want: usize) -> bool {
    d < 0 || d == want as i64
}

/// Logistic function.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Index and value of the largest element.
fn argmax(v: impl Iterator<Item = f32>) -> Option<(usize, f32)> {
    v.enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, x)| match best {
            Some((_, b)) if b >= x => best,
            _ => Some((i, x)),
        })
}

/// Grid cells of a stride over an input size (partial cells count, as exporters pad).
fn cells(input: [u32; 2], stride: u32) -> (usize, usize) {
    (
        input[0].div_ceil(stride) as usize,
        input[1].div_ceil(stride) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, shape: &[i64]) -> OutputInfo {
        OutputInfo {
            name: name.into(),
            shape: shape.to_vec(),
            integer: false,
        }
    }

    /// Tensors of random shapes and values, shaped like `like` most of the time (so decoding
    /// goes deep), otherwise anything: wrong ranks, empty axes, data that does not fill the
    /// shape, NaN and infinities.
    fn random_outputs(rng: &mut rand_chacha::ChaCha8Rng, like: &[Vec<usize>]) -> Vec<Tensor> {
        use rand::Rng;
        let count = if rng.random_bool(0.8) {
            like.len()
        } else {
            rng.random_range(0..5)
        };
        (0..count)
            .map(|i| {
                let shape: Vec<usize> = match like.get(i) {
                    Some(s) if rng.random_bool(0.7) => s
                        .iter()
                        .map(|&d| {
                            if rng.random_bool(0.15) {
                                (d + rng.random_range(0..3)).saturating_sub(1)
                            } else {
                                d
                            }
                        })
                        .collect(),
                    _ => (0..rng.random_range(0..6))
                        .map(|_| rng.random_range(0..12))
                        .collect(),
                };
                let full: usize = shape.iter().product();
                let len = if rng.random_bool(0.85) {
                    full
                } else {
                    rng.random_range(0..full + 20)
                };
                let data = (0..len)
                    .map(|_| match rng.random_range(0..12) {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        2 => f32::NEG_INFINITY,
                        3 => 1e30,
                        4 => -1e30,
                        5 => 0.0,
                        _ => rng.random_range(-4.0..4.0),
                    })
                    .collect();
                Tensor { shape, data }
            })
            .collect()
    }

    #[test]
    fn random_outputs_never_panic_a_decoder() {
        use rand::SeedableRng;
        let input = [64, 64];
        let classes = 3;
        let o = DecodeOptions::default();
        // (declared shapes, actual shapes of a good output) for every layout and export shape.
        type Case = (Vec<Vec<i64>>, Vec<Vec<usize>>);
        let cases: Vec<Case> = vec![
            (vec![vec![1, 84, 8]], vec![vec![1, 84, 8]]),
            (vec![vec![1, 7, 84]], vec![vec![1, 7, 84]]),
            (vec![vec![1, 252, 8]], vec![vec![1, 252, 8]]),
            (vec![vec![1, 8, 4, 4]], vec![vec![1, 8, 4, 4]]),
            (vec![vec![1, -1, -1, -1]], vec![vec![1, 8, 4, 4]]),
            (
                vec![
                    vec![1, 64, 3],
                    vec![1, 16, 3],
                    vec![1, 64, 32],
                    vec![1, 16, 32],
                ],
                vec![
                    vec![1, 64, 3],
                    vec![1, 16, 3],
                    vec![1, 64, 32],
                    vec![1, 16, 32],
                ],
            ),
            (
                vec![vec![1, 10, 4], vec![1, 10, 3]],
                vec![vec![1, 10, 4], vec![1, 10, 3]],
            ),
            (vec![vec![1, 10, 7]], vec![vec![1, 10, 7]]),
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let threshold = |_: usize| 0.25;
        let ctx = Context {
            input,
            classes,
            threshold: &threshold,
            options: &o,
        };
        let mut decoded = 0;
        for (declared, actual) in &cases {
            let outs: Vec<OutputInfo> = declared
                .iter()
                .enumerate()
                .map(|(i, s)| out(&format!("out{i}"), s))
                .collect();
            let p = plan(Layout::Auto, &outs, classes, input, &o)
                .unwrap_or_else(|e| panic!("{declared:?}: {}", e.why));
            for _ in 0..3000 {
                let t = random_outputs(&mut rng, actual);
                // Checked first, as the detector does; what passes decodes within the labels.
                if check(&p, &t, classes).is_ok() {
                    decoded += 1;
                    for c in decode(&p, &t, &ctx) {
                        assert!(c.class < classes, "{:?}: class {}", p.layout(), c.class);
                    }
                }
                // And unchecked: a decoder alone must not index out of its data either.
                let _ = decode(&p, &t, &ctx);
            }
        }
        assert!(
            decoded > 1000,
            "only {decoded} random outputs passed the check"
        );
    }

    #[test]
    fn auto_recognizes_each_layout_by_shape() {
        let o = DecodeOptions::default();
        let input = [416, 416];
        let pick =
            |outs: &[OutputInfo]| plan(Layout::Auto, outs, 80, input, &o).map(|p| p.layout());
        assert_eq!(pick(&[out("output", &[1, 3549, 85])]), Ok(Layout::Yolox));
        assert_eq!(pick(&[out("output0", &[1, 84, 3549])]), Ok(Layout::Yolo));
        assert_eq!(
            pick(&[out("output0", &[1, 3 * 3549, 85])]),
            Ok(Layout::Yolo)
        );
        assert_eq!(
            pick(&[out("758", &[1, 85, 22, 22])]),
            Ok(Layout::Fastestdet)
        );
        assert_eq!(
            pick(&[
                out("cls8", &[1, 2704, 80]),
                out("cls16", &[1, 676, 80]),
                out("dis8", &[1, 2704, 32]),
                out("dis16", &[1, 676, 32]),
            ]),
            Ok(Layout::Gfl)
        );
        assert_eq!(
            pick(&[out("boxes", &[1, 300, 4]), out("logits", &[1, 300, 80])]),
            Ok(Layout::Detr)
        );
        let err = pick(&[out("x", &[1, 7])]).unwrap_err();
        assert_eq!(err.field, "layout");
        assert!(err.why.contains("\"x\" [1, 7]"), "{}", err.why);
    }

    #[test]
    fn label_count_mismatch_names_labels() {
        let o = DecodeOptions::default();
        let e = plan(
            Layout::Yolox,
            &[out("output", &[1, 3549, 85])],
            79,
            [416, 416],
            &o,
        )
        .unwrap_err();
        assert_eq!(e.field, "labels");
    }
}
