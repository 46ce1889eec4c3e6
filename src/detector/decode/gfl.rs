//! GFL heads (NanoDet, PP-PicoDet): per stride a score output `[1, N, classes]` (already
//! sigmoided) and a distance output `[1, N, 4 * bins]`: for each side a distribution over
//! `bins` distances, whose expectation times the stride is the distance from the cell centre.

use super::{cells, dim_is, plan_error, Context, OutputInfo, PlanError, Tensor};
use crate::detector::Candidate;
use crate::geometry::BBox;

/// Strides a GFL head may use.
const STRIDES: [u32; 5] = [8, 16, 32, 64, 128];

/// One stride's pair of outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// Stride in input pixels.
    pub stride: u32,
    /// Grid width and height.
    pub grid: (usize, usize),
    /// Index of the score output.
    pub scores: usize,
    /// Index of the distance output.
    pub distances: usize,
}

/// How to read a GFL head.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Levels, finest first.
    pub levels: Vec<Level>,
    /// Bins per side.
    pub bins: usize,
}

/// Pairs score and distance outputs by their number of cells and finds each pair's stride.
pub fn plan(outputs: &[OutputInfo], classes: usize, input: [u32; 2]) -> Result<Plan, PlanError> {
    let bad = |why: String| plan_error("layout", why);
    if outputs.len() < 2 || !outputs.len().is_multiple_of(2) {
        return Err(bad(format!(
            "gfl needs pairs of outputs, the model has {}",
            outputs.len()
        )));
    }
    let mut levels = Vec::new();
    let mut bins = None;
    for stride in STRIDES {
        let (gw, gh) = cells(input, stride);
        let n = gw * gh;
        let here: Vec<(usize, &OutputInfo)> = outputs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.shape.len() == 3 && dim_is(o.shape[0], 1) && o.shape[1] == n as i64)
            .collect();
        if here.is_empty() {
            continue;
        }
        let [(a, oa), (b, ob)] = here[..] else {
            return Err(bad(format!(
                "gfl: {} outputs have {n} cells (stride {stride}), expected 2",
                here.len()
            )));
        };
        // The score output has one column per label; if both could be, names decide.
        let is_scores = |o: &OutputInfo| {
            o.shape[2] == classes as i64
                && (ob.shape[2] != oa.shape[2] || {
                    let n = o.name.to_lowercase();
                    n.contains("cls") || n.contains("score")
                })
        };
        let (scores, distances, d) = if is_scores(oa) {
            (a, b, ob)
        } else if is_scores(ob) {
            (b, a, oa)
        } else {
            return Err(plan_error(
                "labels",
                format!(
                    "gfl: neither {:?} {:?} nor {:?} {:?} has one column per label ({classes})",
                    oa.name, oa.shape, ob.name, ob.shape
                ),
            ));
        };
        if d.shape[2] <= 0 || d.shape[2] % 4 != 0 {
            return Err(bad(format!(
                "gfl: distance output {:?} {:?} is not 4 x bins wide",
                d.name, d.shape
            )));
        }
        let b = d.shape[2] as usize / 4;
        if bins.is_some_and(|x| x != b) {
            return Err(bad("gfl: levels disagree on the number of bins".into()));
        }
        bins = Some(b);
        levels.push(Level {
            stride,
            grid: (gw, gh),
            scores,
            distances,
        });
    }
    if levels.len() * 2 != outputs.len() {
        return Err(bad(format!(
            "gfl with input {}x{}: only {} of {} outputs match a stride's cell count",
            input[0],
            input[1],
            levels.len() * 2,
            outputs.len()
        )));
    }
    Ok(Plan {
        levels,
        bins: bins.unwrap_or(8),
    })
}

/// Decodes every level into candidates in input pixels; every class at or above its threshold.
pub fn decode(p: &Plan, outputs: &[Tensor], ctx: &Context) -> Vec<Candidate> {
    let min = ctx.min_threshold();
    let offset = ctx.options.center_offset;
    let mut out = Vec::new();
    let mut probs = vec![0f32; p.bins];
    for level in &p.levels {
        let (Some(scores), Some(dist)) = (outputs.get(level.scores), outputs.get(level.distances))
        else {
            continue;
        };
        let s = level.stride as f32;
        let (gw, gh) = level.grid;
        for cell in 0..gw * gh {
            let Some(row) = scores
                .data
                .get(cell * ctx.classes..(cell + 1) * ctx.classes)
            else {
                break;
            };
            if row.iter().all(|&v| v < min) {
                continue;
            }
            let cx = ((cell % gw) as f32 + 0.5) * s + offset;
            let cy = ((cell / gw) as f32 + 0.5) * s + offset;
            let mut d = [0f32; 4];
            for (side, dist_side) in d.iter_mut().enumerate() {
                let start = (cell * 4 + side) * p.bins;
                let Some(logits) = dist.data.get(start..start + p.bins) else {
                    return out;
                };
                *dist_side = expectation(logits, &mut probs) * s;
            }
            let bbox = BBox::new(cx - d[0], cy - d[1], cx + d[2], cy + d[3]);
            for (class, &score) in row.iter().enumerate() {
                if score >= (ctx.threshold)(class) {
                    out.push(Candidate { class, score, bbox });
                }
            }
        }
    }
    out
}

/// Expected bin index under the softmax of `logits`.
fn expectation(logits: &[f32], probs: &mut [f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (p, &l) in probs.iter_mut().zip(logits) {
        *p = (l - max).exp();
        sum += *p;
    }
    probs
        .iter()
        .enumerate()
        .map(|(i, p)| i as f32 * p)
        .sum::<f32>()
        / sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::manifest::DecodeOptions;

    fn info(name: &str, shape: &[i64]) -> OutputInfo {
        OutputInfo {
            name: name.into(),
            shape: shape.to_vec(),
            integer: false,
        }
    }

    #[test]
    fn pairs_levels_in_any_order_and_decodes_distances() {
        // 32x32 input, strides 8 (16 cells) and 16 (4 cells), 2 classes, 4 bins.
        let outs = [
            info("dis16", &[1, 4, 16]),
            info("cls8", &[1, 16, 2]),
            info("cls16", &[1, 4, 2]),
            info("dis8", &[1, 16, 16]),
        ];
        let p = plan(&outs, 2, [32, 32]).unwrap();
        assert_eq!(p.bins, 4);
        assert_eq!(
            (
                p.levels[0].stride,
                p.levels[0].scores,
                p.levels[0].distances
            ),
            (8, 1, 3)
        );
        assert_eq!(
            (
                p.levels[1].stride,
                p.levels[1].scores,
                p.levels[1].distances
            ),
            (16, 2, 0)
        );

        // Cell 5 of stride 8 = (x 1, y 1): centre (12, 12); every side at bin 2 -> 16 px.
        let mut cls8 = vec![0.0; 32];
        cls8[5 * 2 + 1] = 0.8;
        let mut dis8 = vec![-50.0; 16 * 16];
        for side in 0..4 {
            dis8[(5 * 4 + side) * 4 + 2] = 50.0;
        }
        let tensors = vec![
            Tensor {
                shape: vec![1, 4, 16],
                data: vec![0.0; 64],
            },
            Tensor {
                shape: vec![1, 16, 2],
                data: cls8,
            },
            Tensor {
                shape: vec![1, 4, 2],
                data: vec![0.0; 8],
            },
            Tensor {
                shape: vec![1, 16, 16],
                data: dis8,
            },
        ];
        let options = DecodeOptions::default();
        let ctx = Context {
            input: [32, 32],
            classes: 2,
            threshold: &|_| 0.5,
            options: &options,
        };
        let d = decode(&p, &tensors, &ctx);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 1);
        let b = d[0].bbox;
        for (got, want) in [(b.x1, -4.0), (b.y1, -4.0), (b.x2, 28.0), (b.y2, 28.0)] {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
    }
}
