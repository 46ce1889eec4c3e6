//! Detector: an ONNX model run through ONNX Runtime (`ort`): fit the frame, infer, decode, NMS.

pub mod manifest;
pub mod preprocess;
mod yolox;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::geometry::BBox;
use manifest::{Layout, Manifest, ManifestError};

/// What kind of road user a label is, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectClass {
    /// Car, truck, bus (机动车).
    MotorVehicle,
    /// Bicycle, e-bike, motorbike (非机动车).
    NonmotorVehicle,
    /// A person.
    Person,
    /// Anything else the model names.
    Other,
}

/// One detected object in frame pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Class index in the model's label list.
    pub class_id: usize,
    /// Label (e.g. `car`).
    pub label: String,
    /// Road-user class of the label.
    pub class: ObjectClass,
    /// Confidence 0..1.
    pub score: f32,
    /// Box in frame pixels.
    pub bbox: BBox,
}

/// A decoded box before NMS, in model-input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Class index.
    pub class: usize,
    /// Score.
    pub score: f32,
    /// Box in input pixels.
    pub bbox: BBox,
}

/// Time spent in each step of one detection.
#[derive(Debug, Clone, Copy, Default)]
pub struct DetectTiming {
    /// Resize, pad, normalize.
    pub preprocess: Duration,
    /// ONNX Runtime.
    pub inference: Duration,
    /// Decode and NMS.
    pub postprocess: Duration,
}

/// Why a model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The manifest is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Weights or runtime missing.
    #[error(transparent)]
    Asset(#[from] crate::assets::AssetError),
    /// ONNX Runtime refused.
    #[error("model {model}: {why}")]
    Runtime {
        /// Model name.
        model: String,
        /// ONNX Runtime's message.
        why: String,
    },
}

/// A loaded model, shareable between cameras (inference is serialized on one session).
pub struct Detector {
    manifest: Manifest,
    labels: Vec<String>,
    classes: Vec<ObjectClass>,
    input_name: String,
    output_name: String,
    session: Mutex<Session>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.manifest.name)
            .finish()
    }
}

impl Detector {
    /// Loads `{models_dir}/{name}.toml` and its weights with `threads` intra-op threads.
    pub fn load(models_dir: &Path, name: &str, threads: usize) -> Result<Self, DetectorError> {
        let manifest_path = models_dir.join(format!("{name}.toml"));
        let manifest = Manifest::load(&manifest_path)?;
        Self::from_manifest(manifest, &manifest_path, threads)
    }

    /// Loads a model from a parsed manifest.
    pub fn from_manifest(
        manifest: Manifest,
        manifest_path: &Path,
        threads: usize,
    ) -> Result<Self, DetectorError> {
        let env = crate::assets::init_runtime()?;
        let weights: PathBuf = crate::assets::find(&manifest.file)?;
        let labels = manifest.resolve_labels(manifest_path)?;
        let runtime = |why: String| DetectorError::Runtime {
            model: manifest.name.clone(),
            why,
        };
        let load_err = |e: String| runtime(format!("cannot load {}: {e}", weights.display()));
        let session = Session::builder(env)
            .map_err(|e| load_err(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| load_err(e.to_string()))?
            .commit_from_file(&weights)
            .map_err(|e| load_err(e.to_string()))?;
        let input_name = match &manifest.input.name {
            Some(n) => {
                if !session.inputs().iter().any(|i| i.name() == n) {
                    return Err(ManifestError::Field {
                        path: manifest_path.to_path_buf(),
                        field: "input.name",
                        why: format!(
                            "the model has no input {n:?}; its inputs are {:?}",
                            session
                                .inputs()
                                .iter()
                                .map(|i| i.name())
                                .collect::<Vec<_>>()
                        ),
                    }
                    .into());
                }
                n.clone()
            }
            None => session
                .inputs()
                .first()
                .map(|i| i.name().to_string())
                .ok_or_else(|| runtime("the model has no inputs".into()))?,
        };
        let output = session
            .outputs()
            .first()
            .ok_or_else(|| runtime("the model has no outputs".into()))?;
        let output_name = output.name().to_string();
        if manifest.layout == Layout::Yolox {
            let [w, h] = manifest.input.size;
            let want = [1, yolox::anchors(w, h) as i64, 5 + labels.len() as i64];
            if let Some(shape) = output.dtype().tensor_shape() {
                let dims: Vec<i64> = shape.iter().copied().collect();
                let fits = dims.len() == 3
                    && dims
                        .iter()
                        .zip(want.iter())
                        .all(|(d, w)| *d == *w || *d < 0);
                if !fits {
                    return Err(ManifestError::Field {
                        path: manifest_path.to_path_buf(),
                        field: "layout",
                        why: format!(
                            "output {output_name:?} has shape {dims:?}, but layout yolox with input {w}x{h} and {} labels needs {want:?}",
                            labels.len()
                        ),
                    }
                    .into());
                }
            }
        }
        let classes = labels
            .iter()
            .map(|l| {
                if manifest.motor_vehicles.contains(l) {
                    ObjectClass::MotorVehicle
                } else if manifest.nonmotor_vehicles.contains(l) {
                    ObjectClass::NonmotorVehicle
                } else if manifest.people.contains(l) {
                    ObjectClass::Person
                } else {
                    ObjectClass::Other
                }
            })
            .collect();
        Ok(Self {
            manifest,
            labels,
            classes,
            input_name,
            output_name,
            session: Mutex::new(session),
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Runs the model on a prepared NCHW input and returns its first output, flattened.
    pub fn infer(&self, input: &[f32]) -> Result<Vec<f32>, DetectorError> {
        let runtime = |why: String| DetectorError::Runtime {
            model: self.manifest.name.clone(),
            why,
        };
        let [iw, ih] = self.manifest.input.size;
        let tensor = TensorRef::from_array_view(([1usize, 3, ih as usize, iw as usize], input))
            .map_err(|e| runtime(e.to_string()))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| runtime("a previous inference panicked".into()))?;
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| runtime(e.to_string()))?;
        let (_, data) = outputs[self.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| runtime(e.to_string()))?;
        Ok(data.to_vec())
    }

    /// Detects objects in an RGB frame.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        self.detect_timed(img).map(|(d, _)| d)
    }

    /// Detects objects and reports how long each step took.
    pub fn detect_timed(
        &self,
        img: &RgbImage,
    ) -> Result<(Vec<Detection>, DetectTiming), DetectorError> {
        let mut timing = DetectTiming::default();
        let t0 = Instant::now();
        let mut input = Vec::new();
        let transform = preprocess::prepare(img, &self.manifest.input, &mut input);
        let [iw, ih] = self.manifest.input.size;
        timing.preprocess = t0.elapsed();

        let t1 = Instant::now();
        let raw = self.infer(&input)?;
        timing.inference = t1.elapsed();

        let t2 = Instant::now();
        let threshold = |c: usize| self.manifest.threshold(&self.labels[c]);
        let candidates = match self.manifest.layout {
            Layout::Yolox => yolox::decode(&raw, iw, ih, self.labels.len(), &threshold),
        };
        let (w, h) = img.dimensions();
        let detections = nms(candidates, self.manifest.nms_iou)
            .into_iter()
            .map(|c| Detection {
                class_id: c.class,
                label: self.labels[c.class].clone(),
                class: self.classes[c.class],
                score: c.score,
                bbox: transform.to_frame(c.bbox).clamp(w as f32, h as f32),
            })
            .collect();
        timing.postprocess = t2.elapsed();
        Ok((detections, timing))
    }
}

/// Class-aware non-maximum suppression: keeps the best box among same-class boxes overlapping more than `iou`.
pub fn nms(mut candidates: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if !kept
            .iter()
            .any(|k| k.class == c.class && k.bbox.iou(&c.bbox) > iou)
        {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_is_class_aware() {
        let c = |class, score, x| Candidate {
            class,
            score,
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
        };
        let kept = nms(
            vec![
                c(0, 0.5, 1.0),
                c(0, 0.9, 0.0),
                c(1, 0.4, 0.0),
                c(0, 0.3, 50.0),
            ],
            0.45,
        );
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.4, 0.3]);
    }
}
