//! Model outputs of random shapes and values into every decoder: the declared shapes (as a
//! model file states them) make a plan, then the actual tensors go through the per-inference
//! check and, when it passes, the decoder; every candidate must name a label.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use streetwatch::detector::decode::{check, decode, plan, Context, OutputInfo, Tensor};
use streetwatch::detector::manifest::{BoxFormat, BoxUnits, DecodeOptions, Layout, ScoreKind};

const LAYOUTS: [Layout; 6] = [
    Layout::Auto,
    Layout::Yolox,
    Layout::Yolo,
    Layout::Gfl,
    Layout::Detr,
    Layout::Fastestdet,
];

/// Up to 4 outputs of rank 0-4, dimensions small enough to fill; negative = dynamic.
fn declared(u: &mut Unstructured) -> Result<Vec<Vec<i64>>> {
    let n = u.int_in_range(1..=4)?;
    (0..n)
        .map(|_| {
            let rank = u.int_in_range(0..=4)?;
            (0..rank).map(|_| u.int_in_range(-1..=90)).collect()
        })
        .collect()
}

/// The tensors a run returns: mostly the declared shapes with dynamic axes filled, sometimes
/// anything; values from the input, NaN and infinities included.
fn actual(u: &mut Unstructured, declared: &[Vec<i64>]) -> Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for d in declared {
        let shape: Vec<usize> = if u.ratio(9, 10)? {
            d.iter()
                .map(|&x| {
                    if x < 0 {
                        u.int_in_range(0..=40)
                    } else {
                        Ok(x as usize)
                    }
                })
                .collect::<Result<_>>()?
        } else {
            let rank = u.int_in_range(0..=4)?;
            (0..rank)
                .map(|_| u.int_in_range(0..=40))
                .collect::<Result<_>>()?
        };
        let full = shape.iter().product::<usize>().min(40_000);
        let len = if u.ratio(19, 20)? {
            full
        } else {
            u.int_in_range(0..=full + 8)?
        };
        // Values repeat the input's floats (most tensors are far larger than the input).
        let pool: Vec<f32> = (0..u.int_in_range(1..=64)?)
            .map(|_| u.arbitrary::<f32>())
            .collect::<Result<_>>()?;
        let data = (0..len).map(|i| pool[i % pool.len()]).collect();
        out.push(Tensor { shape, data });
    }
    Ok(out)
}

fn run(u: &mut Unstructured) -> Result<()> {
    let layout = *u.choose(&LAYOUTS)?;
    let classes = u.int_in_range(0..=90)?;
    let input = [u.int_in_range(8..=1024)?, u.int_in_range(8..=1024)?];
    let options = DecodeOptions {
        center_offset: *u.choose(&[0.0, 0.5, f32::NAN])?,
        objectness: *u.choose(&[None, Some(true), Some(false)])?,
        box_format: *u.choose(&[BoxFormat::Cxcywh, BoxFormat::Xyxy])?,
        box_units: *u.choose(&[None, Some(BoxUnits::Normalized), Some(BoxUnits::Pixels)])?,
        scores: *u.choose(&[
            None,
            Some(ScoreKind::Logits),
            Some(ScoreKind::Probabilities),
        ])?,
    };
    let shapes = declared(u)?;
    let outs: Vec<OutputInfo> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| OutputInfo {
            name: format!("out{i}"),
            shape: s.clone(),
            integer: false,
        })
        .collect();
    let Ok(p) = plan(layout, &outs, classes, input, &options) else {
        return Ok(());
    };
    let threshold_value: f32 = u.arbitrary()?;
    let threshold = move |_: usize| threshold_value;
    let ctx = Context {
        input,
        classes,
        threshold: &threshold,
        options: &options,
    };
    let tensors = actual(u, &shapes)?;
    if check(&p, &tensors, classes).is_ok() {
        for c in decode(&p, &tensors, &ctx) {
            assert!(
                c.class < classes,
                "{:?}: class {} of {classes}",
                p.layout(),
                c.class
            );
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
