//! Config text through the parser and every check `streetwatch check` makes, then through the
//! accessors the daemon calls on a config that passed.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = common::work_dir("config");
    let text = String::from_utf8_lossy(data);
    let path = dir.join("city.toml");
    if let Ok(loaded) = streetwatch::config::parse(&path, &text) {
        let _ = loaded.config.detector.runtime();
        let _ = loaded.holidays();
        let _ = loaded.node_tz();
        let _ = (
            loaded.storage_dir(),
            loaded.evidence_dir(),
            loaded.models_dir(),
        );
        for cam in &loaded.config.cameras {
            let _ = loaded.camera_tz(cam);
            let _ = loaded.camera(&cam.id);
        }
    }
});
