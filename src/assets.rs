//! Where fetched files live: model weights, the ONNX Runtime library, sample photos.
//!
//! `make setup` (scripts/setup.sh) fills `.cache/` from `$STREETWATCH_ASSETS` or upstream; the
//! program only reads from there, so nothing downloads at run time.
//!
//! Each place is its environment variable when set; otherwise the executable decides. The
//! package's binary (`/usr/bin/streetwatch`, with `/usr/lib/streetwatch` beside it) uses the
//! package's places (`/usr/lib/streetwatch`, `/var/lib/streetwatch`), so the service needs no
//! environment; any other build (`target/release/streetwatch`) uses the checkout's `models/`
//! and `.cache/` in the working directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A file the set-up should have provided but did not.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// A fetched file is missing.
    #[error("{what} not found (looked in {looked}): run `streetwatch models fetch` (`make setup` in a checkout), or set STREETWATCH_ASSETS to a copy of the shared assets")]
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

/// The package's data folder: fetched weights (under `assets/`), and the ledger and evidence
/// of the shipped config.
pub const PACKAGE_DATA_DIR: &str = "/var/lib/streetwatch";

/// The package's folder of read-only parts (`models/`, ONNX Runtime), when this program is the
/// package's: an executable in `<prefix>/bin` with `<prefix>/lib/streetwatch` beside it.
pub fn package_lib_dir() -> Option<&'static Path> {
    static LIB: OnceLock<Option<PathBuf>> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
        let prefix = exe.parent()?.parent()?;
        Some(prefix.join("lib").join("streetwatch")).filter(|d| d.is_dir())
    })
    .as_deref()
}

/// The cache folder: `$STREETWATCH_CACHE`, else the package's data folder for the package's
/// binary, else `.cache` in the working directory (a checkout after `make setup`).
pub fn cache_dir() -> PathBuf {
    // Not `.cache` in the working directory for the package: the service runs in its home,
    // /var/lib/streetwatch, where libraries keep an XDG `~/.cache` of their own.
    match (std::env::var_os("STREETWATCH_CACHE"), package_lib_dir()) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(_)) => PathBuf::from(PACKAGE_DATA_DIR),
        (None, None) => PathBuf::from(".cache"),
    }
}

/// The model manifests folder: `$STREETWATCH_MODELS`, else the package's
/// `/usr/lib/streetwatch/models` for the package's binary, else `models` in the working directory.
pub fn default_models_dir() -> PathBuf {
    match (std::env::var_os("STREETWATCH_MODELS"), package_lib_dir()) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(lib)) => lib.join("models"),
        (None, None) => PathBuf::from("models"),
    }
}

/// Finds a file by its path relative to the assets root (e.g. `models/yolox_nano.onnx`):
/// first in the cache, then in `$STREETWATCH_ASSETS`, then among the package's own files
/// (the labels lists it ships beside the manifests).
pub fn find(rel: &str) -> Result<PathBuf, AssetError> {
    let mut looked = Vec::new();
    let mut roots = vec![cache_dir().join("assets")];
    if let Some(shared) = std::env::var_os("STREETWATCH_ASSETS") {
        roots.push(PathBuf::from(shared));
    }
    roots.extend(package_lib_dir().map(Path::to_path_buf));
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

/// Path of the ONNX Runtime shared library: `$ORT_DYLIB_PATH`, else the package's
/// `/usr/lib/streetwatch/libonnxruntime.so` for the package's binary, else the set-up's copy in
/// the cache.
pub fn ort_library() -> PathBuf {
    match (std::env::var_os("ORT_DYLIB_PATH"), package_lib_dir()) {
        (Some(lib), _) => PathBuf::from(lib),
        (None, Some(lib)) => lib.join("libonnxruntime.so"),
        (None, None) => cache_dir().join("onnxruntime").join("libonnxruntime.so"),
    }
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
