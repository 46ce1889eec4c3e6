//! The operator commands around models (`models list | verify | fetch`, `detect` on a real
//! photo) and what a packaged install relies on: `--version`, completions, man pages.

mod support;

use std::process::{Command, Output};

use serde_json::Value;

const PHOTO: &str =
    "images/amsterdam_garbage/garbage/mdc_photo_mdc_65dc0a_cdv_photo_001_1465665061856.jpg";

fn streetwatch(args: &[&str]) -> Output {
    Command::new(support::binary())
        .current_dir(support::root())
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn models_list_and_verify_the_bundled_manifests() {
    let list: Value =
        serde_json::from_str(&ok(&streetwatch(&["models", "list", "--json"]))).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for want in [
        "yolox-nano-coco",
        "nanodet-m-416-coco",
        "picodet-s-416-coco",
        "fastestdet-352-coco",
    ] {
        let e = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == want)
            .unwrap_or_else(|| panic!("{want} not in {names:?}"));
        assert_eq!(e["state"], "ready", "{e:#}");
    }
    let out = ok(&streetwatch(&["models", "verify"]));
    assert!(
        out.contains("yolox-nano-coco: ok (Yolox layout, 80 labels)"),
        "{out}"
    );
    assert!(out.contains("picodet-s-416-coco: ok (Gfl layout"), "{out}");
    let unknown = streetwatch(&["models", "verify", "no-such-model"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("available: "));
}

#[test]
fn models_fetch_takes_weights_from_a_named_folder_and_never_downloads_then() {
    let dir = support::artifacts_dir("commands-fetch");
    let (stick, cache) = (dir.join("usb-stick"), dir.join("cache"));
    std::fs::create_dir_all(&stick).unwrap();
    // By file name, as an operator copies it onto a stick.
    std::fs::copy(
        support::asset("models/yolox_nano.onnx"),
        stick.join("yolox_nano.onnx"),
    )
    .unwrap();
    std::fs::write(stick.join("fastestdet_352.onnx"), b"not the weights").unwrap();
    let fetch = |names: &[&str]| {
        let mut cmd = Command::new(support::binary());
        cmd.current_dir(support::root())
            .env("STREETWATCH_CACHE", &cache)
            .env_remove("STREETWATCH_ASSETS")
            .args(["models", "fetch", "--from"])
            .arg(&stick)
            .args(names);
        cmd.output().unwrap()
    };
    let out = ok(&fetch(&["yolox-nano-coco"]));
    assert!(out.contains("yolox-nano-coco: copied from"), "{out}");
    assert_eq!(
        std::fs::read(cache.join("assets/models/yolox_nano.onnx")).unwrap(),
        std::fs::read(stick.join("yolox_nano.onnx")).unwrap()
    );
    assert!(ok(&fetch(&["yolox-nano-coco"])).contains("already in"));

    let bad = fetch(&["fastestdet-352-coco", "nanodet-m-416-coco"]);
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{text}");
    assert!(
        text.contains("fastestdet_352.onnx (sha256 differs)"),
        "{text}"
    );
    assert!(text.contains("nanodet_m_416.onnx (not there)"), "{text}");
    // The manifests list upstream urls; with --from none is tried.
    assert!(!text.contains("http"), "{text}");
    assert!(!cache.join("assets/models/fastestdet_352.onnx").exists());
}

#[test]
fn version_completions_and_man_pages_come_from_the_command_line() {
    let version = ok(&streetwatch(&["--version"]));
    let id = version
        .trim()
        .strip_prefix(concat!("streetwatch ", env!("CARGO_PKG_VERSION"), " (git "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version}"));
    assert!(
        id == "unknown" || (id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit())),
        "{version}"
    );
    let bash = ok(&streetwatch(&["completions", "bash"]));
    assert!(
        bash.contains("_streetwatch()") && bash.contains("--events-out"),
        "{bash}"
    );
    let zsh = ok(&streetwatch(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef streetwatch"), "{zsh}");

    let dir = support::artifacts_dir("commands-man");
    ok(&streetwatch(&["manpages", dir.to_str().unwrap()]));
    let page = std::fs::read_to_string(dir.join("streetwatch-models-fetch.1")).unwrap();
    assert!(page.contains("streetwatch models fetch"), "{page}");
    assert!(page.contains("\\-\\-from"), "{page}");
    for sub in [
        "run",
        "check",
        "replay",
        "report",
        "user-add",
        "models-verify",
    ] {
        assert!(dir.join(format!("streetwatch-{sub}.1")).is_file(), "{sub}");
    }
    // Hidden commands stay out of the pages.
    assert!(!dir.join("streetwatch-manpages.1").exists());
}

#[test]
fn detect_prints_json_and_draws_the_boxes() {
    let photo = support::asset(PHOTO);
    let dir = support::artifacts_dir("commands-detect");
    let annotated = dir.join("annotated.jpg");
    let out = ok(&streetwatch(&[
        "detect",
        "--model",
        "yolox-nano-coco",
        "--input",
        photo.to_str().unwrap(),
        "--min-score",
        "0.5",
        "--json",
        "--annotate",
        annotated.to_str().unwrap(),
    ]));
    let frame: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let labels: Vec<&str> = frame["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    // The reference finds a bicycle and five cars above 0.5 on this photo.
    assert_eq!(
        labels.iter().filter(|l| **l == "car").count(),
        5,
        "{labels:?}"
    );
    assert!(labels.contains(&"bicycle"));
    let img = image::open(&annotated).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 597));
    // Boxes are drawn in red over the photo: the annotated picture differs from the original.
    let original = image::open(&photo).unwrap().to_rgb8();
    let changed = img
        .pixels()
        .zip(original.pixels())
        .filter(|(a, b)| a.0[0].abs_diff(b.0[0]) > 60)
        .count();
    assert!(changed > 1000, "only {changed} pixels changed");
}
