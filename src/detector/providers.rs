//! Execution providers: the GPU or accelerator ONNX Runtime runs a model on, tried in the
//! config's order with the CPU as the last resort, saying which one runs and why others did not.

use ort::ep::{ExecutionProvider, OpenVINO, TensorRT, CUDA};
use ort::session::builder::SessionBuilder;

use super::Provider;

/// The outcome of registering providers on a session builder.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// The provider that runs the model (the first that registered).
    pub provider: Provider,
    /// Providers asked for before it that could not start, with ONNX Runtime's reason.
    pub skipped: Vec<(Provider, String)>,
}

impl Chosen {
    /// A log line: `cuda` or `cpu (cuda unavailable: ...)`.
    pub fn describe(&self) -> String {
        let name = |p: Provider| format!("{p:?}").to_lowercase();
        if self.skipped.is_empty() {
            return name(self.provider);
        }
        let why: Vec<String> = self
            .skipped
            .iter()
            .map(|(p, e)| format!("{} unavailable: {e}", name(*p)))
            .collect();
        format!("{} ({})", name(self.provider), why.join("; "))
    }
}

/// Registers the providers in order until one succeeds; CPU needs no registration.
pub fn register(builder: &mut SessionBuilder, wanted: &[Provider]) -> Chosen {
    let mut skipped = Vec::new();
    for &p in wanted {
        let result = match p {
            Provider::Cpu => Ok(()),
            Provider::Cuda => CUDA::default().register(builder),
            Provider::Tensorrt => TensorRT::default().register(builder),
            Provider::Openvino => OpenVINO::default().register(builder),
        };
        match result {
            Ok(()) => {
                return Chosen {
                    provider: p,
                    skipped,
                }
            }
            Err(e) => skipped.push((p, e.to_string())),
        }
    }
    Chosen {
        provider: Provider::Cpu,
        skipped,
    }
}
