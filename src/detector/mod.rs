//! Detector: an ONNX model run through ONNX Runtime (`ort`): fit the frame, infer, decode, NMS.

pub mod decode;
pub mod manifest;
pub mod preprocess;
mod providers;
pub mod regions;
mod runtime;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorElementType;
use serde::Serialize;

use crate::geometry::BBox;
use decode::{OutputInfo, Plan, Tensor};
use manifest::{Layout, Manifest, ManifestError};
pub use regions::Region;
pub use runtime::BatchStats;
use runtime::{Batcher, SessionPool};

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
    /// A vendor's stall or cart, for models trained on them (manifest `stalls`).
    Stall,
    /// Garbage, bags, debris, for models trained on them (manifest `garbage`).
    Garbage,
    /// Anything else the model names.
    Other,
}

impl ObjectClass {
    /// Vehicles and people: they come and go, and are never part of the scene.
    pub fn is_road_user(self) -> bool {
        matches!(
            self,
            ObjectClass::MotorVehicle | ObjectClass::NonmotorVehicle | ObjectClass::Person
        )
    }
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

/// A decoded box: in model-input pixels out of the decoder, in frame pixels after mapping back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Class index.
    pub class: usize,
    /// Score.
    pub score: f32,
    /// Box.
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
    /// The frame could not be fitted into the model input.
    #[error(transparent)]
    Input(#[from] preprocess::PrepareError),
    /// ONNX Runtime refused.
    #[error("model {model}: {why}")]
    Runtime {
        /// Model name.
        model: String,
        /// ONNX Runtime's message.
        why: String,
    },
    /// An inference's outputs do not fit what the model declared when it loaded.
    #[error("model {model}: outputs do not fit the manifest: {why}")]
    Output {
        /// Model name.
        model: String,
        /// Which output and what is wrong.
        why: String,
    },
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The CPU (always available).
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// NVIDIA TensorRT.
    Tensorrt,
    /// Intel OpenVINO.
    Openvino,
}

/// How sessions are made: threads, pool size, providers in order of preference, batching.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeOptions {
    /// Intra-op threads per session.
    pub threads: usize,
    /// Sessions in the pool.
    pub sessions: usize,
    /// Providers to try in order.
    pub providers: Vec<Provider>,
    /// Most inputs per inference when the model has a dynamic batch axis (1 = no batching).
    pub batch_size: usize,
    /// How long a camera's input may wait for others to fill a batch.
    pub batch_wait: Duration,
}

impl RuntimeOptions {
    /// One CPU session with `threads` threads, no batching.
    pub fn cpu(threads: usize) -> Self {
        Self {
            threads,
            sessions: 1,
            providers: vec![Provider::Cpu],
            batch_size: 1,
            batch_wait: Duration::ZERO,
        }
    }
}

/// A loaded model, shareable between cameras: a small pool of sessions, each used by one
/// inference at a time.
pub struct Detector {
    manifest: Manifest,
    labels: Vec<String>,
    classes: Vec<ObjectClass>,
    plan: Plan,
    pool: Arc<SessionPool>,
    batcher: Option<Batcher>,
    provider: Provider,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.manifest.name)
            .field("layout", &self.plan.layout())
            .finish()
    }
}

impl Detector {
    /// Loads `{models_dir}/{name}.toml` and its weights on one CPU session with `threads` threads.
    pub fn load(models_dir: &Path, name: &str, threads: usize) -> Result<Self, DetectorError> {
        Self::load_with(models_dir, name, &RuntimeOptions::cpu(threads))
    }

    /// Loads `{models_dir}/{name}.toml` with the given runtime options.
    pub fn load_with(
        models_dir: &Path,
        name: &str,
        runtime: &RuntimeOptions,
    ) -> Result<Self, DetectorError> {
        let manifest_path = models_dir.join(format!("{name}.toml"));
        let manifest = Manifest::load(&manifest_path)?;
        Self::from_manifest_with(manifest, &manifest_path, runtime)
    }

    /// Loads a model from a parsed manifest on one CPU session.
    pub fn from_manifest(
        manifest: Manifest,
        manifest_path: &Path,
        threads: usize,
    ) -> Result<Self, DetectorError> {
        Self::from_manifest_with(manifest, manifest_path, &RuntimeOptions::cpu(threads))
    }

    /// Loads a model from a parsed manifest with the given runtime options.
    pub fn from_manifest_with(
        manifest: Manifest,
        manifest_path: &Path,
        options: &RuntimeOptions,
    ) -> Result<Self, DetectorError> {
        let env = crate::assets::init_runtime()?;
        let field = |field: &'static str, why: String| -> DetectorError {
            ManifestError::Field {
                path: manifest_path.to_path_buf(),
                field,
                why,
            }
            .into()
        };
        let weights: PathBuf =
            crate::assets::find(&manifest.file).map_err(|e| field("file", e.to_string()))?;
        let runtime = |why: String| DetectorError::Runtime {
            model: manifest.name.clone(),
            why,
        };
        let load_err = |e: String| runtime(format!("cannot load {}: {e}", weights.display()));
        let mut provider = Provider::Cpu;
        let mut sessions = Vec::new();
        for i in 0..options.sessions.max(1) {
            let mut builder = Session::builder(env)
                .map_err(|e| load_err(e.to_string()))?
                .with_intra_threads(options.threads.max(1))
                .map_err(|e| load_err(e.to_string()))?;
            let chosen = providers::register(&mut builder, &options.providers);
            if i == 0 {
                provider = chosen.provider;
                tracing::info!(model = %manifest.name, "runs on {}", chosen.describe());
            }
            let session = builder
                .commit_from_file(&weights)
                .map_err(|e| load_err(e.to_string()))?;
            sessions.push(Mutex::new(session));
        }
        let session = sessions[0]
            .lock()
            .map_err(|_| runtime("session poisoned while loading".into()))?;
        let inputs: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        let input_name = match &manifest.input.name {
            Some(n) if inputs.contains(n) => n.clone(),
            Some(n) => {
                return Err(field(
                    "input.name",
                    format!("the model has no input {n:?}; its inputs are {inputs:?}"),
                ))
            }
            None => inputs
                .first()
                .cloned()
                .ok_or_else(|| runtime("the model has no inputs".into()))?,
        };
        let labels = match manifest.resolve_labels(manifest_path)? {
            Some(l) => l,
            None => labels_from_metadata(&session).ok_or_else(|| {
                field(
                    "labels",
                    "give `labels = [...]` or `labels_file` (the model has no `names` metadata)"
                        .into(),
                )
            })?,
        };
        let outputs: Vec<OutputInfo> = session
            .outputs()
            .iter()
            .map(|o| OutputInfo {
                name: o.name().to_string(),
                shape: o
                    .dtype()
                    .tensor_shape()
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
                integer: matches!(
                    o.dtype().tensor_type(),
                    Some(TensorElementType::Int64 | TensorElementType::Int32)
                ),
            })
            .collect();
        let plan = decode::plan(
            manifest.layout,
            &outputs,
            labels.len(),
            manifest.input.size,
            &manifest.decode,
        )
        .map_err(|e| field(e.field, e.why))?;
        let classes = labels
            .iter()
            .map(|l| {
                if manifest.motor_vehicles.contains(l) {
                    ObjectClass::MotorVehicle
                } else if manifest.nonmotor_vehicles.contains(l) {
                    ObjectClass::NonmotorVehicle
                } else if manifest.people.contains(l) {
                    ObjectClass::Person
                } else if manifest.stalls.contains(l) {
                    ObjectClass::Stall
                } else if manifest.garbage.contains(l) {
                    ObjectClass::Garbage
                } else {
                    ObjectClass::Other
                }
            })
            .collect();
        let dynamic_batch = session
            .inputs()
            .iter()
            .find(|i| i.name() == input_name)
            .and_then(|i| i.dtype().tensor_shape().and_then(|s| s.first().copied()))
            .is_some_and(|d| d < 0);
        drop(session);
        let pool = Arc::new(SessionPool::new(
            sessions,
            input_name,
            manifest.input.clone(),
            outputs,
        ));
        let batcher = match (options.batch_size > 1, dynamic_batch) {
            (true, true) => {
                tracing::info!(
                    model = %manifest.name,
                    "batches up to {} inputs across cameras (waiting at most {:?})",
                    options.batch_size,
                    options.batch_wait
                );
                Some(Batcher::start(
                    pool.clone(),
                    options.batch_size,
                    options.batch_wait,
                    &manifest.name,
                ))
            }
            (true, false) => {
                tracing::info!(model = %manifest.name, "the model's batch size is fixed: no batching");
                None
            }
            _ => None,
        };
        Ok(Self {
            manifest,
            labels,
            classes,
            plan,
            pool,
            batcher,
            provider,
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

    /// The execution provider the model runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Inferences the batcher ran and the inputs they carried (None without batching).
    pub fn batch_stats(&self) -> Option<(usize, usize)> {
        self.batcher.as_ref().map(|b| {
            (
                b.stats.runs.load(std::sync::atomic::Ordering::Relaxed),
                b.stats.inputs.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// The layout the outputs are decoded with (resolved when the manifest says `auto`).
    pub fn layout(&self) -> Layout {
        self.plan.layout()
    }

    /// Runs the model on a prepared input (in the manifest's order and type) and returns every
    /// output, in the model's output order, as f32.
    pub fn infer(&self, input: &[f32]) -> Result<Vec<Tensor>, DetectorError> {
        let result = match &self.batcher {
            Some(b) => b.infer(input.to_vec()),
            None => self
                .pool
                .run(&[input])
                .map(|mut items| items.pop().unwrap_or_default()),
        };
        result.map_err(|why| DetectorError::Runtime {
            model: self.manifest.name.clone(),
            why,
        })
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
        let (candidates, timing) = self.candidates(img)?;
        Ok((self.detections(candidates, img.dimensions()), timing))
    }

    /// Detects objects in `regions` of a full-resolution frame (each cropped and run at native
    /// scale) and merges them in frame pixels; timings add up over the regions.
    pub fn detect_regions(
        &self,
        img: &RgbImage,
        regions: &[Region],
    ) -> Result<(Vec<Detection>, DetectTiming), DetectorError> {
        let mut all = Vec::new();
        let mut timing = DetectTiming::default();
        for r in regions {
            let full = (r.x, r.y, r.w, r.h) == (0, 0, img.width(), img.height());
            let (found, t) = if full {
                self.candidates(img)?
            } else {
                let crop = image::imageops::crop_imm(img, r.x, r.y, r.w, r.h).to_image();
                self.candidates(&crop)?
            };
            timing.preprocess += t.preprocess;
            timing.inference += t.inference;
            timing.postprocess += t.postprocess;
            let (dx, dy) = (r.x as f32, r.y as f32);
            all.extend(found.into_iter().map(|c| {
                let bbox = BBox::new(
                    c.bbox.x1 + dx,
                    c.bbox.y1 + dy,
                    c.bbox.x2 + dx,
                    c.bbox.y2 + dy,
                );
                regions::Found {
                    candidate: Candidate { bbox, ..c },
                    cut: r.cuts(&bbox, img.dimensions()),
                }
            }));
        }
        let t = Instant::now();
        let merged = if regions.len() > 1 {
            regions::merge(all, self.manifest.nms_iou)
        } else {
            all.into_iter().map(|f| f.candidate).collect()
        };
        timing.postprocess += t.elapsed();
        Ok((self.detections(merged, img.dimensions()), timing))
    }

    /// Candidates in frame pixels (after NMS where the layout needs it).
    fn candidates(&self, img: &RgbImage) -> Result<(Vec<Candidate>, DetectTiming), DetectorError> {
        let mut timing = DetectTiming::default();
        let t0 = Instant::now();
        let mut input = Vec::new();
        let transform = preprocess::prepare(img, &self.manifest.input, &mut input)?;
        timing.preprocess = t0.elapsed();

        let t1 = Instant::now();
        let raw = self.infer(&input)?;
        timing.inference = t1.elapsed();

        let t2 = Instant::now();
        let mut candidates = self.decode_outputs(&raw)?;
        let (w, h) = img.dimensions();
        for c in &mut candidates {
            c.bbox = transform.to_frame(c.bbox).clamp(w as f32, h as f32);
        }
        timing.postprocess = t2.elapsed();
        Ok((candidates, timing))
    }

    /// Decodes one inference's outputs (and applies NMS where the layout needs it): candidates
    /// in model-input pixels; outputs that do not fit the plan are an error for this frame.
    pub fn decode_outputs(&self, raw: &[Tensor]) -> Result<Vec<Candidate>, DetectorError> {
        decode::check(&self.plan, raw, self.labels.len()).map_err(|why| DetectorError::Output {
            model: self.manifest.name.clone(),
            why,
        })?;
        // A class past the labels never passes (the check above keeps decoders inside them).
        let threshold = |c: usize| {
            self.labels
                .get(c)
                .map_or(f32::INFINITY, |l| self.manifest.threshold(l))
        };
        let ctx = decode::Context {
            input: self.manifest.input.size,
            classes: self.labels.len(),
            threshold: &threshold,
            options: &self.manifest.decode,
        };
        let candidates = decode::decode(&self.plan, raw, &ctx);
        Ok(if self.plan.layout().needs_nms() {
            nms(candidates, self.manifest.nms_iou)
        } else {
            candidates
        })
    }

    fn detections(&self, candidates: Vec<Candidate>, (w, h): (u32, u32)) -> Vec<Detection> {
        candidates
            .into_iter()
            .filter(|c| c.class < self.labels.len())
            .map(|c| Detection {
                class_id: c.class,
                label: self.labels[c.class].clone(),
                class: self.classes[c.class],
                score: c.score,
                bbox: c.bbox.clamp(w as f32, h as f32),
            })
            .collect()
    }
}

/// Class names an Ultralytics export stores in its metadata: `{0: 'person', 1: 'bicycle', ...}`.
fn labels_from_metadata(session: &Session) -> Option<Vec<String>> {
    let names = session.metadata().ok()?.custom("names")?;
    parse_names(&names)
}

/// Parses `{0: 'person', 1: "bicycle"}` into labels ordered by id.
fn parse_names(text: &str) -> Option<Vec<String>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs: Vec<(usize, String)> = Vec::new();
    let mut rest = body;
    while !rest.trim().is_empty() {
        let (id, after) = rest.split_once(':')?;
        let id: usize = id.trim().trim_start_matches(',').trim().parse().ok()?;
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let after = &after[1..];
        let end = after.find(quote)?;
        pairs.push((id, after[..end].to_string()));
        rest = after[end + 1..].trim_start().trim_start_matches(',');
    }
    pairs.sort_by_key(|p| p.0);
    let ordered = pairs.iter().enumerate().all(|(i, p)| p.0 == i);
    (ordered && !pairs.is_empty()).then(|| pairs.into_iter().map(|p| p.1).collect())
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

    #[test]
    fn reads_ultralytics_names_metadata() {
        assert_eq!(
            parse_names("{0: 'person', 1: \"bicycle\", 2: 'tricycle_cart'}"),
            Some(vec![
                "person".into(),
                "bicycle".into(),
                "tricycle_cart".into()
            ])
        );
        assert_eq!(parse_names("{1: 'a'}"), None);
        assert_eq!(parse_names("not a dict"), None);
    }
}
