//! `streetwatch demo` (what `make demo` runs) ends with exit 0 after printing the events a
//! subscriber received from the embedded broker, with the evidence paths.

mod support;

use std::process::Command;

#[test]
fn demo_prints_the_parking_event_and_exits_zero() {
    let dir = support::artifacts_dir("demo");
    let o = Command::new(support::binary())
        .current_dir(support::root())
        .arg("demo")
        .arg("--clip")
        .arg(dir.join("demo-parking.mp4"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "demo failed ({}):\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let events = out
        .lines()
        .filter(|l| l.starts_with("streetwatch/events/illegal_parking/"))
        .count();
    assert!(events >= 2, "expected at least new and end:\n{out}");
    assert!(
        out.contains("new #0 illegal_parking 05-05 机动车乱停放"),
        "{out}"
    );
    assert!(out.contains("end #"), "{out}");
    let frame = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("evidence frame: "))
        .expect("an evidence path");
    assert!(
        support::root().join(frame).is_file() || std::path::Path::new(frame).is_file(),
        "{frame}"
    );
}
