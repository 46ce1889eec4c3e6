//! Stamps the build with its git commit, for `streetwatch --version` and the package.

use std::path::Path;
use std::process::Command;

fn main() {
    // Rebuild the stamp when HEAD moves: on a commit its branch's ref file changes, on a
    // checkout HEAD itself does.
    let git = Path::new(".git");
    if git.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
            if let Some(reference) = head.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed=.git/{reference}");
            }
        }
        println!("cargo:rerun-if-changed=.git/packed-refs");
    }
    println!("cargo:rerun-if-env-changed=STREETWATCH_GIT_ID");
    // A source tree without .git (a tarball) may say its commit in STREETWATCH_GIT_ID.
    let id = std::env::var("STREETWATCH_GIT_ID")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            let id = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (out.status.success() && !id.is_empty()).then_some(id)
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=STREETWATCH_GIT_ID={id}");
}
