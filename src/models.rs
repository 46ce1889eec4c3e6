//! The model catalogue: the manifests in `models/`, whether their weights are here and intact,
//! and fetching them (`streetwatch models list | verify | fetch`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::assets;
use crate::detector::manifest::{self, Manifest};
use crate::detector::Detector;
use crate::evidence::file_sha256;

/// Where a manifest's weights stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsState {
    /// Found, and the sha256 matches (or the manifest gives none).
    Ready,
    /// Not in the cache nor in `$STREETWATCH_ASSETS`.
    Missing,
    /// Found with a different sha256.
    ChecksumMismatch,
}

/// One row of `models list`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    /// Manifest name.
    pub name: String,
    /// Layout as written in the manifest.
    pub layout: String,
    /// Input `[width, height]`.
    pub input: [u32; 2],
    /// Weights file (relative to the assets root).
    pub file: String,
    /// Where the weights were found.
    pub path: Option<PathBuf>,
    /// Weights state.
    pub state: WeightsState,
    /// License of the weights.
    pub license: String,
    /// Problem reading the manifest itself.
    pub error: Option<String>,
}

/// Every manifest in `dir` with the state of its weights.
pub fn list(dir: &Path) -> Vec<ModelEntry> {
    manifest::available(dir)
        .into_iter()
        .map(|name| match Manifest::load_named(dir, &name) {
            Ok(m) => entry(&name, &m),
            Err(e) => ModelEntry {
                name,
                layout: String::new(),
                input: [0, 0],
                file: String::new(),
                path: None,
                state: WeightsState::Missing,
                license: String::new(),
                error: Some(e.to_string()),
            },
        })
        .collect()
}

fn entry(name: &str, m: &Manifest) -> ModelEntry {
    let path = assets::find(&m.file).ok();
    let state = match &path {
        None => WeightsState::Missing,
        Some(p) => match (&m.sha256, file_sha256(p)) {
            (Some(want), Ok(got)) if !want.eq_ignore_ascii_case(&got) => {
                WeightsState::ChecksumMismatch
            }
            (_, Err(_)) => WeightsState::Missing,
            _ => WeightsState::Ready,
        },
    };
    ModelEntry {
        name: name.to_string(),
        layout: serde_json::to_value(m.layout)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        input: m.input.size,
        file: m.file.clone(),
        path,
        state,
        license: m.license.clone(),
        error: None,
    }
}

/// `models verify`: checksums, then loading each model as the daemon would (input name, output
/// shapes against the layout, label count). Returns one line per model and whether all passed.
pub fn verify(dir: &Path, names: &[String]) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    for e in list(dir)
        .into_iter()
        .filter(|e| names.is_empty() || names.contains(&e.name))
    {
        let line = match (&e.error, &e.state) {
            (Some(err), _) => Err(err.clone()),
            (None, WeightsState::Missing) => Err(format!(
                "weights {} missing: run `streetwatch models fetch {}`",
                e.file, e.name
            )),
            (None, WeightsState::ChecksumMismatch) => Err(format!(
                "weights {} do not match the manifest's sha256: fetch them again",
                e.path.as_deref().unwrap_or(Path::new(&e.file)).display()
            )),
            (None, WeightsState::Ready) => match Detector::load(dir, &e.name, 1) {
                Ok(d) => Ok(format!(
                    "ok ({:?} layout, {} labels)",
                    d.layout(),
                    d.labels().len()
                )),
                Err(err) => Err(err.to_string()),
            },
        };
        match line {
            Ok(msg) => lines.push(format!("{}: {msg}", e.name)),
            Err(msg) => {
                ok = false;
                lines.push(format!("{}: FAILED: {msg}", e.name));
            }
        }
    }
    if names.iter().any(|n| !manifest::available(dir).contains(n)) {
        ok = false;
        lines.push(format!(
            "unknown model(s) among {names:?}; available: {}",
            manifest::available(dir).join(", ")
        ));
    }
    (lines, ok)
}

/// `models fetch`: puts each named (or every) manifest's weights into the cache's `assets/`
/// (`.cache/` in a checkout, `/var/lib/streetwatch/` when installed), from the operator's folder
/// `from`, `$STREETWATCH_ASSETS` or the manifest's urls (with `curl`), checking the sha256.
pub fn fetch(dir: &Path, names: &[String], from: Option<&Path>) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    for name in manifest::available(dir)
        .into_iter()
        .filter(|n| names.is_empty() || names.contains(n))
    {
        let result = Manifest::load_named(dir, &name)
            .map_err(|e| e.to_string())
            .and_then(|m| fetch_one(&m, from));
        match result {
            Ok(msg) => lines.push(format!("{name}: {msg}")),
            Err(msg) => {
                ok = false;
                lines.push(format!("{name}: FAILED: {msg}"));
            }
        }
    }
    (lines, ok)
}

fn fetch_one(m: &Manifest, from: Option<&Path>) -> Result<String, String> {
    let dest = assets::cache_dir().join("assets").join(&m.file);
    let good = |p: &Path| match (&m.sha256, file_sha256(p)) {
        (_, Err(_)) => false,
        (Some(want), Ok(got)) => want.eq_ignore_ascii_case(&got),
        (None, Ok(_)) => true,
    };
    if dest.is_file() && good(&dest) {
        return Ok(format!("already in {}", dest.display()));
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let part = dest.with_extension("part");
    // The operator's folder may hold the weights under the manifest's path or by file name.
    let mut copies = Vec::new();
    if let Some(from) = from {
        copies.push(from.join(&m.file));
        if let Some(name) = Path::new(&m.file).file_name() {
            copies.push(from.join(name));
        }
    }
    if let Some(shared) = std::env::var_os("STREETWATCH_ASSETS") {
        copies.push(PathBuf::from(shared).join(&m.file));
    }
    let mut tried = Vec::new();
    for src in copies {
        if src.is_file() && good(&src) {
            std::fs::copy(&src, &part).map_err(|e| format!("copy {}: {e}", src.display()))?;
            std::fs::rename(&part, &dest).map_err(|e| e.to_string())?;
            return Ok(format!("copied from {}", src.display()));
        }
        if src.is_file() {
            tried.push(format!("{} (sha256 differs)", src.display()));
        } else if from.is_some_and(|f| src.starts_with(f)) {
            tried.push(format!("{} (not there)", src.display()));
        }
    }
    // A named folder means an offline install: no downloads behind the operator's back.
    let urls = if from.is_some() { &[][..] } else { &m.urls[..] };
    for url in urls {
        // curl's own bar on a terminal (weights are megabytes over a city's links), quiet
        // otherwise.
        let quiet = if std::io::stderr().is_terminal() {
            "-#"
        } else {
            "-s"
        };
        let status = Command::new("curl")
            .args(["-fSL", quiet, "--retry", "2", "-o"])
            .arg(&part)
            .arg(url)
            .status();
        match status {
            Ok(s) if s.success() && good(&part) => {
                std::fs::rename(&part, &dest).map_err(|e| e.to_string())?;
                return Ok(format!("downloaded from {url}"));
            }
            Ok(s) if s.success() => tried.push(format!("{url} (sha256 differs)")),
            Ok(s) => tried.push(format!("{url} (curl exit {})", s.code().unwrap_or(-1))),
            Err(e) => tried.push(format!("{url} (cannot run curl: {e})")),
        }
    }
    let _ = std::fs::remove_file(&part);
    Err(format!(
        "could not fetch {}; tried {}. Name a folder that has it with --from, set STREETWATCH_ASSETS to one, or copy the file there by hand",
        m.file,
        if tried.is_empty() { "no urls (the manifest lists none)".into() } else { tried.join(", ") }
    ))
}
