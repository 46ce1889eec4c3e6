//! Running a model: a pool of ONNX Runtime sessions shared by the cameras, and, for models with
//! a dynamic batch axis, a batcher that gathers inputs from several cameras into one inference.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ort::session::Session;
use ort::value::TensorRef;

use super::decode::{OutputInfo, Tensor};
use super::manifest::{InputSpec, InputType, TensorOrder};

/// Sessions of one model and how to feed them.
pub(super) struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    input_name: String,
    input: InputSpec,
    outputs: Vec<OutputInfo>,
}

impl SessionPool {
    /// A pool over loaded sessions.
    pub(super) fn new(
        sessions: Vec<Mutex<Session>>,
        input_name: String,
        input: InputSpec,
        outputs: Vec<OutputInfo>,
    ) -> Self {
        Self {
            sessions,
            next: AtomicUsize::new(0),
            input_name,
            input,
            outputs,
        }
    }

    /// A session nobody is using, else the next one in turn (waiting for it).
    fn free_session(&self) -> Result<MutexGuard<'_, Session>, String> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            if let Ok(s) = self.sessions[(start + k) % n].try_lock() {
                return Ok(s);
            }
        }
        self.sessions[start % n]
            .lock()
            .map_err(|_| "a previous inference panicked".to_string())
    }

    /// Runs one inference on `inputs` stacked along the batch axis and returns each input's
    /// outputs (in the model's output order, batch axis 1).
    pub(super) fn run(&self, inputs: &[&[f32]]) -> Result<Vec<Vec<Tensor>>, String> {
        let b = inputs.len();
        let [iw, ih] = self.input.size;
        let (iw, ih) = (iw as usize, ih as usize);
        let shape = match self.input.order {
            TensorOrder::Nchw => [b, 3, ih, iw],
            TensorOrder::Nhwc => [b, ih, iw, 3],
        };
        let stacked: Vec<f32>;
        let data: &[f32] = if b == 1 {
            inputs[0]
        } else {
            stacked = inputs.concat();
            &stacked
        };
        let mut session = self.free_session()?;
        let bytes: Vec<u8>;
        let outputs = match self.input.dtype {
            InputType::Float32 => {
                let tensor =
                    TensorRef::from_array_view((shape, data)).map_err(|e| e.to_string())?;
                session.run(ort::inputs![self.input_name.as_str() => tensor])
            }
            InputType::Uint8 => {
                bytes = data.iter().map(|v| v.clamp(0.0, 255.0) as u8).collect();
                let tensor = TensorRef::from_array_view((shape, bytes.as_slice()))
                    .map_err(|e| e.to_string())?;
                session.run(ort::inputs![self.input_name.as_str() => tensor])
            }
        }
        .map_err(|e| e.to_string())?;
        let whole: Vec<Tensor> = self
            .outputs
            .iter()
            .map(|info| {
                let value = &outputs[info.name.as_str()];
                let to_tensor = |shape: &ort::value::Shape, data: Vec<f32>| Tensor {
                    shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                    data,
                };
                if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
                    return Ok(to_tensor(shape, data.to_vec()));
                }
                if let Ok((shape, data)) = value.try_extract_tensor::<i64>() {
                    return Ok(to_tensor(shape, data.iter().map(|&v| v as f32).collect()));
                }
                value
                    .try_extract_tensor::<i32>()
                    .map(|(shape, data)| to_tensor(shape, data.iter().map(|&v| v as f32).collect()))
                    .map_err(|e| format!("output {:?}: {e}", info.name))
            })
            .collect::<Result<_, String>>()?;
        if b == 1 {
            return Ok(vec![whole]);
        }
        split_batch(whole, b)
    }
}

/// Splits each output along its first axis into `b` outputs of batch 1.
fn split_batch(outputs: Vec<Tensor>, b: usize) -> Result<Vec<Vec<Tensor>>, String> {
    let mut per_item: Vec<Vec<Tensor>> = (0..b).map(|_| Vec::new()).collect();
    for t in outputs {
        if t.shape.first() != Some(&b) {
            return Err(format!(
                "an output of shape {:?} has no batch axis of {b}",
                t.shape
            ));
        }
        let size = t.data.len() / b;
        let mut shape = t.shape.clone();
        shape[0] = 1;
        for (i, chunk) in t.data.chunks_exact(size.max(1)).enumerate().take(b) {
            per_item[i].push(Tensor {
                shape: shape.clone(),
                data: chunk.to_vec(),
            });
        }
    }
    Ok(per_item)
}

/// One camera's input waiting for a batch.
struct Request {
    input: Vec<f32>,
    reply: Sender<Result<Vec<Tensor>, String>>,
}

/// Gathers inputs from several cameras for up to `wait` (or until `max` are waiting) and runs
/// them as one inference: on a GPU, one batch of four costs little more than one input.
pub(super) struct Batcher {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    /// Inferences run and inputs they carried, for the log and tests.
    pub(super) stats: Arc<BatchStats>,
}

/// How well batching works.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Inferences run.
    pub runs: AtomicUsize,
    /// Inputs carried by them.
    pub inputs: AtomicUsize,
}

impl Batcher {
    /// Starts the batching thread over `pool`.
    pub(super) fn start(pool: Arc<SessionPool>, max: usize, wait: Duration, model: &str) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Request>();
        let stats = Arc::new(BatchStats::default());
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("batch-{model}"))
            .spawn(move || batch_loop(&pool, &rx, max, wait, &s))
            .ok();
        Self {
            tx: Some(tx),
            thread,
            stats,
        }
    }

    /// Runs `input` in the next batch and waits for its outputs.
    pub(super) fn infer(&self, input: Vec<f32>) -> Result<Vec<Tensor>, String> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.tx
            .as_ref()
            .ok_or("the batcher has stopped")?
            .send(Request { input, reply })
            .map_err(|_| "the batcher has stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the batcher stopped before answering".to_string())?
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn batch_loop(
    pool: &SessionPool,
    rx: &Receiver<Request>,
    max: usize,
    wait: Duration,
    stats: &BatchStats,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + wait;
        while batch.len() < max {
            match rx.recv_deadline(deadline) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let inputs: Vec<&[f32]> = batch.iter().map(|r| r.input.as_slice()).collect();
        stats.runs.fetch_add(1, Ordering::Relaxed);
        stats.inputs.fetch_add(batch.len(), Ordering::Relaxed);
        match pool.run(&inputs) {
            Ok(outputs) => {
                for (r, out) in batch.iter().zip(outputs) {
                    let _ = r.reply.send(Ok(out));
                }
            }
            Err(e) => {
                for r in &batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outputs_per_batch_item() {
        let t = Tensor {
            shape: vec![2, 2, 3],
            data: (0..12).map(|v| v as f32).collect(),
        };
        let items = split_batch(vec![t], 2).unwrap();
        assert_eq!(items[1][0].shape, vec![1, 2, 3]);
        assert_eq!(items[1][0].data, vec![6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert!(split_batch(
            vec![Tensor {
                shape: vec![1, 4],
                data: vec![0.0; 4]
            }],
            2
        )
        .is_err());
    }
}
