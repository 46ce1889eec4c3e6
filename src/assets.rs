//! Where fetched files live: model weights, the ONNX Runtime library, sample photos.
//!
//! `make setup` (scripts/setup.sh) fills `.cache/` from `$STREETWATCH_ASSETS` or upstream; the
//! program only reads from there, so nothing downloads at run time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A file the set-up should have provided but did not.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// A fetched file is missing.
    #[error("{what} not found (looked in {looked}): run `make setup`, or set STREETWATCH_ASSETS to a copy of the shared assets")]
    Missing {
        /// What was looked for.
        what: String,
        /// Where.
        looked: String,
    },
    /// ONNX Runtime could not be loaded.
    #[error("cannot load ONNX Runtime from {path}: {why}. Run `make setup`, or set ORT_DYLIB_PATH to a libonnxruntime.so (1.32)")]
    Runtime {
        /// Library path tried.
        path: String,
        /// Loader's message.
        why: String,
    },
}

/// The cache folder: `$STREETWATCH_CACHE`, else `.cache` in the working directory.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("STREETWATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// The model manifests folder: `$STREETWATCH_MODELS`, else `models` in the working directory.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("STREETWATCH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// Finds a file by its path relative to the assets root (e.g. `models/yolox_nano.onnx`):
/// first in the cache, then in `$STREETWATCH_ASSETS`.
pub fn find(rel: &str) -> Result<PathBuf, AssetError> {
    let mut looked = Vec::new();
    let mut roots = vec![cache_dir().join("assets")];
    if let Some(shared) = std::env::var_os("STREETWATCH_ASSETS") {
        roots.push(PathBuf::from(shared));
    }
    for root in roots {
        let p = root.join(rel);
        if p.is_file() {
            return Ok(p);
        }
        looked.push(p.display().to_string());
    }
    Err(AssetError::Missing {
        what: rel.to_string(),
        looked: looked.join(", "),
    })
}

/// The assets root to resolve scenario files against (the cache, or `$STREETWATCH_ASSETS`).
pub fn assets_root() -> PathBuf {
    let cached = cache_dir().join("assets");
    if cached.is_dir() {
        return cached;
    }
    std::env::var_os("STREETWATCH_ASSETS")
        .map(PathBuf::from)
        .unwrap_or(cached)
}

/// Path of the ONNX Runtime shared library.
pub fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("onnxruntime").join("libonnxruntime.so"))
}

/// The process's ONNX Runtime environment; kept alive here because ort only holds it weakly.
static ORT_ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process and returns its environment.
pub fn init_runtime() -> Result<&'static ort::environment::Environment, AssetError> {
    let lib = ort_library();
    let result = ORT_ENV.get_or_init(|| load_runtime(&lib));
    result.as_ref().map_err(|why| AssetError::Runtime {
        path: lib.display().to_string(),
        why: why.clone(),
    })
}

fn load_runtime(lib: &Path) -> Result<ort::environment::Environment, String> {
    if !lib.is_file() {
        return Err("file does not exist".into());
    }
    ort::init_from(lib)
        .map_err(|e| e.to_string())?
        .with_name("streetwatch")
        .build()
        .map_err(|e| e.to_string())
}
