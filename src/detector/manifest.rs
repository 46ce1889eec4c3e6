//! Model manifests: `models/{name}.toml` says where the weights come from and how to feed and read them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a model's outputs are laid out (one decoder per layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Chosen from the output shapes when the model loads.
    Auto,
    /// YOLOX: `[1, N, 5 + classes]` grid offsets over strides 8/16/32, obj × cls scores.
    Yolox,
    /// Ultralytics YOLO v5/v8/v11: `[1, 4 + classes, N]` or `[1, N, 4 (+1) + classes]`,
    /// boxes as centre and size in input pixels, with or without an objectness column.
    Yolo,
    /// NanoDet / PicoDet (generalized focal loss): per stride a `[1, N, classes]` score output and
    /// a `[1, N, 4 * bins]` distance distribution, softmax over bins.
    Gfl,
    /// RT-DETR / D-FINE / RF-DETR: a fixed set of queries, boxes plus logits or labels plus scores, no NMS.
    Detr,
    /// FastestDet: `[1, 5 + classes, H, W]`, one box per cell.
    Fastestdet,
}

impl Layout {
    /// Whether the decoded boxes go through NMS (set-prediction models give one box per object).
    pub fn needs_nms(self) -> bool {
        self != Layout::Detr
    }
}

/// Resampling used to fit the frame, as the model's reference preprocessing does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Bilinear (OpenCV INTER_LINEAR).
    #[default]
    Linear,
    /// Pixel-area averaging when shrinking (OpenCV INTER_AREA); bilinear when enlarging.
    Area,
    /// Bicubic (OpenCV INTER_CUBIC).
    Cubic,
}

/// Memory order of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorOrder {
    /// `[1, 3, H, W]`.
    #[default]
    Nchw,
    /// `[1, H, W, 3]`.
    Nhwc,
}

/// Element type of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// 32-bit floats after normalization.
    #[default]
    Float32,
    /// Raw 0..255 bytes (the model normalizes inside).
    Uint8,
}

/// Box encoding of `detr` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxFormat {
    /// Centre x, centre y, width, height.
    #[default]
    Cxcywh,
    /// Corners.
    Xyxy,
}

/// Units of decoded boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxUnits {
    /// Fractions of the input size.
    Normalized,
    /// Input pixels.
    Pixels,
}

/// What class scores are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Raw logits: a sigmoid is applied.
    Logits,
    /// Already probabilities.
    Probabilities,
}

/// Layout-specific decoding options; every field is optional and has the usual default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeOptions {
    /// `gfl`: pixels added to the cell centre `(x + 0.5) * stride`; NanoDet's reference uses -0.5.
    #[serde(default)]
    pub center_offset: f32,
    /// `yolo`: whether rows carry an objectness column (v5); default: from the output shape.
    pub objectness: Option<bool>,
    /// `detr`: box encoding.
    #[serde(default)]
    pub box_format: BoxFormat,
    /// Box units; default normalized for `detr`, pixels for `yolo`.
    pub box_units: Option<BoxUnits>,
    /// `detr` / `yolo`: what the class scores are; default logits for `detr` logit outputs,
    /// probabilities otherwise.
    pub scores: Option<ScoreKind>,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
}

/// How the frame is fitted into the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Keep aspect, paste at the top-left corner, pad the rest.
    LetterboxTopLeft,
    /// Keep aspect, centre, pad around.
    LetterboxCenter,
    /// Stretch to the input size.
    Stretch,
}

/// Smallest model input side: stride-32 heads need at least a cell; below 8 the letterbox
/// arithmetic rounds a side to nothing.
pub const MIN_INPUT: u32 = 8;
/// Largest model input side (far above any detector's; a typo guard).
pub const MAX_INPUT: u32 = 8192;

/// Input tensor description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input name; default: the model's first input.
    pub name: Option<String>,
    /// `[width, height]`.
    pub size: [u32; 2],
    /// Channel order.
    pub color: ColorOrder,
    /// Fit mode.
    pub resize: ResizeMode,
    /// Resampling.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// Tensor memory order.
    #[serde(default)]
    pub order: TensorOrder,
    /// Tensor element type.
    #[serde(default, rename = "type")]
    pub dtype: InputType,
    /// Value of padded pixels, in 0..255 before normalization.
    #[serde(default)]
    pub pad_value: f32,
    /// Per-channel mean subtracted (in the model's channel order, 0..255 units).
    #[serde(default)]
    pub mean: [f32; 3],
    /// Per-channel divisor after the mean.
    #[serde(default = "unit_std")]
    pub std: [f32; 3],
}

fn unit_std() -> [f32; 3] {
    [1.0; 3]
}

/// A model manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name (the manifest's file stem).
    pub name: String,
    /// Human description and provenance.
    #[serde(default)]
    pub description: String,
    /// Weights, relative to the assets root (e.g. `models/yolox_nano.onnx`).
    pub file: String,
    /// Where `make setup` may download the weights from, in order.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Expected sha256 of the weights.
    pub sha256: Option<String>,
    /// License of the weights.
    #[serde(default)]
    pub license: String,
    /// Output layout (`auto` = chosen from the output shapes).
    #[serde(default = "d_layout")]
    pub layout: Layout,
    /// Layout-specific decoding options.
    #[serde(default)]
    pub decode: DecodeOptions,
    /// Input description.
    pub input: InputSpec,
    /// Labels file relative to the assets root, one label per line.
    pub labels_file: Option<String>,
    /// Labels inline (instead of `labels_file`).
    pub labels: Option<Vec<String>>,
    /// Detections below this score are dropped (keep it low: the tracker uses weak detections).
    #[serde(default = "d_score")]
    pub score_threshold: f32,
    /// Per-label score thresholds overriding `score_threshold`.
    #[serde(default)]
    pub label_thresholds: HashMap<String, f32>,
    /// IoU above which NMS suppresses a box of the same label.
    #[serde(default = "d_nms")]
    pub nms_iou: f32,
    /// Labels that count as motor vehicles (机动车).
    #[serde(default)]
    pub motor_vehicles: Vec<String>,
    /// Labels that count as non-motor vehicles (非机动车).
    #[serde(default)]
    pub nonmotor_vehicles: Vec<String>,
    /// Labels that are people.
    #[serde(default)]
    pub people: Vec<String>,
    /// Labels that are vendors' stalls or carts (street vending without a person needed).
    #[serde(default)]
    pub stalls: Vec<String>,
    /// Labels that are garbage, bags, debris (piles without the static-change map).
    #[serde(default)]
    pub garbage: Vec<String>,
}

fn d_layout() -> Layout {
    Layout::Auto
}
fn d_score() -> f32 {
    0.2
}
fn d_nms() -> f32 {
    0.45
}

/// A manifest problem, naming the manifest and field.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Unreadable or malformed.
    #[error("model manifest {path}: {why}")]
    Invalid {
        /// Manifest path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Something it names is missing.
    #[error("model manifest {path}: field `{field}`: {why}")]
    Field {
        /// Manifest path.
        path: PathBuf,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl Manifest {
    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Invalid {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Reads and validates manifest text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let manifest: Self = toml_edit::de::from_str(text).map_err(|e| ManifestError::Invalid {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Refuses values that would divide by zero or make an empty input later, on a camera's
    /// first frame instead of here.
    pub fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let field = |field: &'static str, why: String| {
            Err(ManifestError::Field {
                path: path.to_path_buf(),
                field,
                why,
            })
        };
        let [w, h] = self.input.size;
        if !(MIN_INPUT..=MAX_INPUT).contains(&w) || !(MIN_INPUT..=MAX_INPUT).contains(&h) {
            return field(
                "input.size",
                format!("[{w}, {h}]: each side must be {MIN_INPUT} to {MAX_INPUT} pixels"),
            );
        }
        if self.input.std.iter().any(|v| !v.is_finite() || *v == 0.0) {
            return field(
                "input.std",
                format!("{:?}: divisors must be non-zero numbers", self.input.std),
            );
        }
        if self.input.mean.iter().any(|v| !v.is_finite()) {
            return field(
                "input.mean",
                format!("{:?}: must be numbers", self.input.mean),
            );
        }
        if !(0.0..=255.0).contains(&self.input.pad_value) {
            return field(
                "input.pad_value",
                format!("{}: must be 0 to 255", self.input.pad_value),
            );
        }
        let fraction = |v: f32| (0.0..=1.0).contains(&v);
        if !fraction(self.score_threshold) {
            return field(
                "score_threshold",
                format!("{}: must be 0 to 1", self.score_threshold),
            );
        }
        if !fraction(self.nms_iou) {
            return field("nms_iou", format!("{}: must be 0 to 1", self.nms_iou));
        }
        if let Some((label, v)) = self.label_thresholds.iter().find(|(_, v)| !fraction(**v)) {
            return field("label_thresholds", format!("{label} = {v}: must be 0 to 1"));
        }
        Ok(())
    }

    /// Reads `{dir}/{name}.toml`.
    pub fn load_named(dir: &Path, name: &str) -> Result<Self, ManifestError> {
        Self::load(&dir.join(format!("{name}.toml")))
    }

    /// The labels, from `labels` or `labels_file`; None when the manifest gives neither
    /// (the model's own metadata may name them).
    pub fn resolve_labels(
        &self,
        manifest_path: &Path,
    ) -> Result<Option<Vec<String>>, ManifestError> {
        if let Some(l) = &self.labels {
            return Ok(Some(l.clone()));
        }
        let Some(file) = &self.labels_file else {
            return Ok(None);
        };
        let path = crate::assets::find(file).map_err(|e| ManifestError::Field {
            path: manifest_path.to_path_buf(),
            field: "labels_file",
            why: e.to_string(),
        })?;
        let text = std::fs::read_to_string(&path).map_err(|e| ManifestError::Field {
            path: manifest_path.to_path_buf(),
            field: "labels_file",
            why: format!("{}: {e}", path.display()),
        })?;
        Ok(Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        ))
    }

    /// The score threshold for a label.
    pub fn threshold(&self, label: &str) -> f32 {
        self.label_thresholds
            .get(label)
            .copied()
            .unwrap_or(self.score_threshold)
    }
}

/// Names of the manifests in a folder, sorted.
pub fn available(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "toml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}
