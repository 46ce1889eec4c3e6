//! Streams that misbehave (issue 16), through the real decoder and the whole pipeline.
//!
//! - timestamps that jump back (a spliced recording, an encoder restart, MPEG-TS's 33-bit wrap):
//!   detection goes on and the event times keep moving forward.

mod support;

use std::process::Command;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

fn time(m: &Value, field: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(m[field].as_str().unwrap()).unwrap()
}

#[test]
fn timestamps_that_jump_back_do_not_stop_detection() {
    let dir = support::artifacts_dir("timestamps-back");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    // The street twice in one MPEG-TS file, the second copy's timestamps starting from the
    // first's again. Before the clock took jumps out, the sampler waited for the stream time
    // to pass the first copy's end: the whole second copy went by undetected.
    let once = dir.join("once.ts");
    let status = Command::new("ffmpeg")
        .args(["-y", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "mpegts"])
        .arg(&once)
        .status()
        .expect("the ffmpeg command (Debian package ffmpeg, installed by make setup)");
    assert!(status.success());
    let bytes = std::fs::read(&once).unwrap();
    let spliced = dir.join("twice.ts");
    std::fs::write(&spliced, [bytes.as_slice(), bytes.as_slice()].concat()).unwrap();

    let config = dir.join("config.toml");
    support::StreetCamera {
        mqtt: "url = \"mqtt://127.0.0.1:1\"",
        sections: "[incidents]\nend_after_seconds = 5",
        id: "cam-a",
        clip: &spliced,
        pace: 0.0,
        camera: "",
        dwell: 10.0,
        zones: "",
    }
    .write(&config);
    let messages = support::replay(&config, "cam-a", &spliced, &dir.join("events.jsonl"), false);
    let news: Vec<&Value> = messages.iter().filter(|m| m["type"] == "new").collect();
    let ends: Vec<&Value> = messages.iter().filter(|m| m["type"] == "end").collect();
    assert_eq!(
        news.len(),
        2,
        "one event per copy of the parked car: {:#?}",
        messages
    );
    assert_eq!(ends.len(), 2);
    // The second copy is stamped after the first: about one clip (56 s) later.
    let gap = (time(news[1], "start_time") - time(news[0], "start_time")).as_seconds_f64();
    assert!(
        (50.0..62.0).contains(&gap),
        "second event {gap} s after the first"
    );
    assert!(time(news[1], "start_time") > time(ends[0], "end_time"));
}
