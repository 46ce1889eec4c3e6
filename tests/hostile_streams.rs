//! Streams that misbehave (issue 16), through the real decoder and the whole pipeline.
//!
//! - timestamps that jump back (a spliced recording, an encoder restart, MPEG-TS's 33-bit wrap):
//!   detection goes on and the event times keep moving forward;
//! - one daemon with a good camera beside a truncated file, a file that is not video, a stream
//!   with garbage after a good start, an RTSP server that accepts and never sends, and a stream
//!   whose resolution changes: each bad camera says what is wrong on its status topic, the one
//!   that can recovers, the good camera's events come, the daemon never exits.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

fn time(m: &Value, field: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(m[field].as_str().unwrap()).unwrap()
}

/// `ffmpeg` with `args` (the Debian package make setup installs); panics when it fails.
fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-y", "-hide_banner", "-loglevel", "error"])
        .args(args)
        .status()
        .expect("the ffmpeg command (Debian package ffmpeg, installed by make setup)");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// `clip` as MPEG-TS (H.264 copied, so frames are untouched), optionally scaled to `width`.
fn to_ts(clip: &Path, out: &Path, width: Option<u32>) -> Vec<u8> {
    let (c, o) = (clip.to_str().unwrap(), out.to_str().unwrap());
    match width {
        None => ffmpeg(&[
            "-i",
            c,
            "-c",
            "copy",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "mpegts",
            o,
        ]),
        Some(w) => ffmpeg(&[
            "-i",
            c,
            "-vf",
            &format!("scale={w}:-2"),
            "-c:v",
            "libx264",
            "-g",
            "10",
            "-bf",
            "0",
            "-f",
            "mpegts",
            o,
        ]),
    }
    std::fs::read(out).unwrap()
}

#[test]
fn timestamps_that_jump_back_do_not_stop_detection() {
    let dir = support::artifacts_dir("timestamps-back");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    // The street twice in one MPEG-TS file, the second copy's timestamps starting from the
    // first's again. Before the clock took jumps out, the sampler waited for the stream time
    // to pass the first copy's end: the whole second copy went by undetected.
    let bytes = to_ts(&clip, &dir.join("once.ts"), None);
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

/// A camera table for `url` (a file played in real time and again, or a live url).
fn camera(id: &str, url: &Path) -> String {
    format!(
        r#"
[[cameras]]
id = "{id}"
url = "{}"
detect_every_seconds = 1.0
pace = 2.0
repeat = true
stall_seconds = 8
  [[cameras.zones]]
  id = "south-strip"
  kind = "no_parking"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 6.0
"#,
        url.display()
    )
}

#[test]
fn broken_streams_each_say_why_and_the_others_run_on() {
    let dir = support::artifacts_dir("broken-streams");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let whole = to_ts(&clip, &dir.join("whole.ts"), None);
    // A truncated file: the first 40 % of its bytes.
    let truncated = dir.join("truncated.ts");
    std::fs::write(&truncated, &whole[..whole.len() * 2 / 5]).unwrap();
    // Not video at all.
    let not_video = dir.join("not-video.mp4");
    std::fs::write(
        &not_video,
        "this is a shopping list, not a video\n".repeat(200),
    )
    .unwrap();
    // A good start, then garbage (a camera whose encoder breaks down).
    let garbage = dir.join("garbage-after.ts");
    let mut bytes = whole[..whole.len() / 3].to_vec();
    let mut x = 0x2545_f491u32;
    bytes.extend((0..400_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    std::fs::write(&garbage, &bytes).unwrap();
    // The street at 800x596, then at 400x298: a camera reconfigured mid-stream.
    let small = to_ts(&clip, &dir.join("small.ts"), Some(400));
    let resized = dir.join("resized.ts");
    std::fs::write(&resized, [whole.as_slice(), small.as_slice()].concat()).unwrap();
    // An RTSP server that accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = PathBuf::from(format!(
        "rtsp://127.0.0.1:{}/stream",
        silent.local_addr().unwrap().port()
    ));
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for s in silent.incoming().flatten() {
            open.push(s);
        }
    });
    drop(held);

    let broker = support::Mosquitto::start();
    let config = dir.join("config.toml");
    let mut text = format!(
        "[mqtt]\nurl = \"{}\"\n[storage]\ndir = \"data\"\n[incidents]\nend_after_seconds = 5\n",
        broker.url()
    );
    for (id, url) in [
        ("cam-good", clip.as_path()),
        ("cam-truncated", truncated.as_path()),
        ("cam-not-video", not_video.as_path()),
        ("cam-garbage", garbage.as_path()),
        ("cam-resized", resized.as_path()),
        ("cam-silent", silent_url.as_path()),
    ] {
        text.push_str(&camera(id, url));
    }
    std::fs::write(&config, text).unwrap();
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let mut daemon = support::Daemon::start(&config, &dir.join("daemon.log"), &[]);
    let statuses = |r: &[support::Received], cam: &str| -> Vec<Value> {
        r.iter()
            .filter(|m| m.topic == format!("streetwatch/cameras/{cam}/status"))
            .map(support::Received::json)
            .collect()
    };
    let news = |r: &[support::Received], cam: &str| -> Vec<Value> {
        support::received_events(r)
            .into_iter()
            .filter(|(_, m)| m["camera"]["id"] == cam && m["type"] == "new")
            .map(|(_, m)| m)
            .collect()
    };
    // Each camera that has a good part plays it again and again (repeat): an event per play
    // shows it came through its broken part and back. The resized stream's second half is the
    // same street at 400x298.
    let widths = |m: &Value| -> Vec<u32> {
        m["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "frame")
            .filter_map(|e| image::image_dimensions(e["path"].as_str()?).ok())
            .map(|(w, _)| w)
            .collect()
    };
    let recovered = sub.wait_until(Duration::from_secs(150), |r| {
        !news(r, "cam-good").is_empty()
            && news(r, "cam-truncated").len() >= 2
            && news(r, "cam-garbage").len() >= 2
            && news(r, "cam-resized").iter().any(|m| widths(m) == [400])
            && ["cam-not-video", "cam-silent"].iter().all(|cam| {
                statuses(r, cam)
                    .iter()
                    .any(|s| s["state"] != "online" && s["error"].is_string())
            })
    });
    assert!(
        daemon.running(),
        "the daemon exited:\n{}",
        daemon.log_text()
    );
    let all = sub.all();
    assert!(
        recovered,
        "new events per camera: {:?}; resized photo widths: {:?}; statuses of the dead ones: {:#?}\n{}",
        ["cam-good", "cam-truncated", "cam-garbage", "cam-resized"].map(|c| news(&all, c).len()),
        news(&all, "cam-resized").iter().map(widths).collect::<Vec<_>>(),
        ["cam-not-video", "cam-silent"].map(|c| statuses(&all, c)),
        daemon.log_text()
    );
    assert!(
        news(&all, "cam-resized").iter().any(|m| widths(m) == [800]),
        "the resized stream's first half (800 wide) gave no event"
    );
    let not_video_error = statuses(&all, "cam-not-video")
        .iter()
        .find_map(|s| s["error"].as_str().map(str::to_string))
        .unwrap();
    assert!(
        not_video_error.contains("not-video.mp4"),
        "{not_video_error}"
    );
    let silent_error = statuses(&all, "cam-silent")
        .iter()
        .find_map(|s| s["error"].as_str().map(str::to_string))
        .unwrap();
    assert!(
        silent_error.contains("rtsp://127.0.0.1") && silent_error.contains("no answer within"),
        "{silent_error}"
    );
    let log = daemon.log_text();
    assert!(!log.contains("panicked"), "a camera panicked:\n{log}");
    daemon.stop();
    eprintln!(
        "broken streams: new events good/truncated/garbage/resized {:?}; not video: {not_video_error}; silent: {silent_error}",
        ["cam-good", "cam-truncated", "cam-garbage", "cam-resized"].map(|c| news(&all, c).len()),
    );
}
