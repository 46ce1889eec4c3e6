//! What the targets share: a private working folder and the repository's model manifests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's `models/` folder (manifests only; no target loads weights).
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A folder of this process's own under the system's temporary folder; paths in a config are
/// relative to the config file, so a config written there keeps its relative paths inside.
pub fn work_dir(target: &str) -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("streetwatch-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder for the fuzz target");
        std::env::set_var("STREETWATCH_MODELS", models_dir());
        dir
    })
}
