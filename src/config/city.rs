//! The city's cameras kept outside a node's file (in etcd, `cluster import`): one camera's
//! `[[cameras]]` table, with its `[[cameras.zones]]`, as TOML text each. The config in force on
//! a node is then its own file with its cameras replaced by the city's, checked as `check`
//! checks a file, with errors that name the camera's key and line.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml_edit::{ArrayOfTables, DocumentMut, Item};

use super::locate::{Locator, PathSeg};
use super::{CameraConfig, ConfigError, ConfigErrors, LoadedConfig};

/// One camera's `[[cameras]]` table as TOML text, and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraText {
    /// Camera id.
    pub id: String,
    /// Where it is kept, as errors name it (`etcd:/streetwatch/config/cameras/cam-1`).
    pub source: String,
    /// `[[cameras]]` with its zones.
    pub text: String,
}

/// Why a config's text cannot be split into cameras or joined with them.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct CameraTextError {
    /// The config file.
    pub file: PathBuf,
    /// What is wrong.
    pub why: String,
}

/// A config's cameras as one TOML text each (id, text), in file order.
pub fn split_cameras(file: &Path, text: &str) -> Result<Vec<(String, String)>, CameraTextError> {
    let error = |why: String| CameraTextError {
        file: file.to_path_buf(),
        why,
    };
    let doc: DocumentMut = text
        .parse()
        .map_err(|e| error(format!("does not parse: {e}")))?;
    let Some(cameras) = doc.get("cameras") else {
        return Ok(Vec::new());
    };
    let cameras = cameras
        .as_array_of_tables()
        .ok_or_else(|| error("write the cameras as [[cameras]] tables".into()))?;
    let mut out = Vec::new();
    for (i, table) in cameras.iter().enumerate() {
        let id = table
            .get("id")
            .and_then(|v| v.as_str())
            .ok_or_else(|| error(format!("cameras[{i}] has no id")))?;
        let mut one = ArrayOfTables::new();
        one.push(table.clone());
        let mut doc = DocumentMut::new();
        doc.insert("cameras", Item::ArrayOfTables(one));
        out.push((id.to_string(), format!("{}\n", doc.to_string().trim())));
    }
    Ok(out)
}

/// A config's text with its own `[[cameras]]` replaced by `cameras` (what `cluster export`
/// writes); every other section, and its comments, stay as written.
pub fn join_cameras(
    file: &Path,
    text: &str,
    cameras: &[CameraText],
) -> Result<String, CameraTextError> {
    let mut doc: DocumentMut = text.parse().map_err(|e| CameraTextError {
        file: file.to_path_buf(),
        why: format!("does not parse: {e}"),
    })?;
    doc.remove("cameras");
    let mut out = format!("{}\n", doc.to_string().trim_end());
    for c in cameras {
        out.push('\n');
        out.push_str(c.text.trim());
        out.push('\n');
    }
    Ok(out)
}

/// One camera's text, parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneCamera {
    cameras: Vec<CameraConfig>,
}

/// The node's config file `path` with its cameras replaced by `cameras`, checked whole.
pub fn with_cameras(path: &Path, cameras: &[CameraText]) -> Result<LoadedConfig, ConfigErrors> {
    let mut loaded = super::load(path)?;
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for c in cameras {
        let source = PathBuf::from(&c.source);
        let locator = Locator::new(&source, &c.text);
        match super::deserialize::<OneCamera>(&locator, &c.text) {
            Ok(mut one) if one.cameras.len() == 1 && one.cameras[0].id == c.id => {
                parsed.push(one.cameras.remove(0))
            }
            Ok(_) => errors.push(locator.error_at(
                0,
                format!(
                    "must hold exactly one [[cameras]] table, with id = {:?}",
                    c.id
                ),
            )),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    loaded.config.cameras = parsed;
    let problems = super::validate::validate(&loaded);
    if problems.is_empty() {
        return Ok(loaded);
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let node = Locator::new(path, &text);
    let errors: Vec<ConfigError> = problems
        .into_iter()
        .map(|p| match p.path.as_slice() {
            // A camera's problem is shown in that camera's own text, where it is cameras[0].
            [PathSeg::Key("cameras"), PathSeg::Index(i), rest @ ..] if *i < cameras.len() => {
                let c = &cameras[*i];
                let mut path = vec![PathSeg::Key("cameras"), PathSeg::Index(0)];
                path.extend_from_slice(rest);
                Locator::new(Path::new(&c.source), &c.text).error_at_path(&path, p.message)
            }
            _ => node.error_at_path(&p.path, p.message),
        })
        .collect();
    Err(ConfigErrors(errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = r#"# the node
[node]
id = "n1"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[storage]
dir = "data"

# first camera
[[cameras]]
id = "cam-a"
url = "a.mp4"
  [[cameras.zones]]
  id = "z1"
  kind = "no_parking"
  polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
  dwell_seconds = 60.0

[[cameras]]
id = "cam-b"
url = "b.mp4"
"#;

    fn texts(pairs: &[(String, String)]) -> Vec<CameraText> {
        pairs
            .iter()
            .map(|(id, text)| CameraText {
                id: id.clone(),
                source: format!("etcd:/sw/config/cameras/{id}"),
                text: text.clone(),
            })
            .collect()
    }

    #[test]
    fn cameras_split_join_and_merge_back_to_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("city.toml");
        std::fs::write(&file, NODE).unwrap();
        let split = split_cameras(&file, NODE).unwrap();
        let ids: Vec<&str> = split.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["cam-a", "cam-b"]);
        assert!(split[0].1.contains("# first camera"), "{}", split[0].1);
        assert!(split[0].1.contains("[[cameras.zones]]"));
        let joined = join_cameras(&file, NODE, &texts(&split)).unwrap();
        let direct = super::super::parse(&file, NODE).unwrap();
        let rejoined = super::super::parse(&file, &joined).unwrap();
        assert_eq!(
            format!("{:?}", direct.config.cameras),
            format!("{:?}", rejoined.config.cameras)
        );
        let merged = with_cameras(&file, &texts(&split)).unwrap();
        assert_eq!(
            format!("{:?}", direct.config.cameras),
            format!("{:?}", merged.config.cameras)
        );
    }

    #[test]
    fn a_bad_camera_is_pointed_at_in_its_own_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, NODE).unwrap();
        let mut split = split_cameras(&file, NODE).unwrap();
        split[1].1 = split[1].1.replace(
            "url = \"b.mp4\"",
            "url = \"b.mp4\"\ndetect_every_seconds = -1.0",
        );
        let err = with_cameras(&file, &texts(&split)).unwrap_err().to_string();
        assert!(err.starts_with("etcd:/sw/config/cameras/cam-b:4:"), "{err}");
        assert!(err.contains("cameras[0].detect_every_seconds"), "{err}");
        split[1].1 = split[1]
            .1
            .replace("detect_every_seconds", "detect_evry_seconds");
        let err = with_cameras(&file, &texts(&split)).unwrap_err().to_string();
        assert!(err.contains("did you mean `detect_every_seconds`"), "{err}");
        // A text under one camera's key that holds another camera.
        let mut wrong = texts(&split_cameras(&file, NODE).unwrap());
        wrong[1].id = "cam-c".into();
        let err = with_cameras(&file, &wrong).unwrap_err().to_string();
        assert!(
            err.contains("exactly one [[cameras]] table, with id = \"cam-c\""),
            "{err}"
        );
    }
}
