//! `streetwatch eval` over every case in configs/eval, as `make eval` runs it: the six real
//! fixed-camera clips of ../shared/assets/video/real with their ground truth, and every composed
//! scenario with its exact expected events. Every case must pass (exactly its events, each
//! starting within one detection interval; on the real clips no false event at all), and every
//! message any case produced must be valid against the event schema.

mod support;

use std::process::Command;

use serde_json::Value;

#[test]
fn every_case_gives_exactly_its_events_and_real_clips_no_false_alarm() {
    let out = support::artifacts_dir("eval");
    let o = Command::new(support::binary())
        .current_dir(support::root())
        .args(["eval", "configs/eval", "--format", "json", "--out-dir"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "eval printed no report ({e}):\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let cases = report["cases"].as_array().unwrap();
    assert!(
        cases.len() >= 26,
        "every real clip and at least 20 scenarios: {} cases",
        cases.len()
    );
    let real: Vec<&Value> = cases.iter().filter(|c| c["source"] == "real").collect();
    assert_eq!(real.len(), 6, "one case per real clip");
    assert!(cases.iter().filter(|c| c["source"] == "composed").count() >= 20);

    let failed: Vec<String> = cases
        .iter()
        .filter(|c| c["pass"] != true)
        .map(|c| format!("{}: {}", c["name"], c["problems"]))
        .collect();
    assert!(failed.is_empty(), "cases failed:\n{}", failed.join("\n"));
    assert_eq!(report["real"]["false_events"], 0);
    assert!(o.status.success(), "eval exits 0 when every case passes");

    // Every message of every case is valid against the schema, and a new message brings the
    // two photos enforcement needs, at least the dwell apart.
    let mut messages = 0;
    for c in cases {
        let events = support::read_jsonl(
            &std::path::PathBuf::from(c["work_dir"].as_str().unwrap()).join("events.jsonl"),
        );
        support::assert_schema_valid(&events);
        for new in events.iter().filter(|m| m["type"] == "new") {
            let kinds: Vec<&str> = new["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap())
                .collect();
            assert_eq!(kinds, ["rest_start", "frame", "crop"], "{}", c["name"]);
            let taken = |i: usize| support::time(&new["evidence"][i]["time"]);
            let start = support::time(&new["start_time"]);
            assert!(taken(0) >= start && taken(0) <= taken(1), "{}", c["name"]);
            // A vehicle's rest-start photo is of its first sighting at rest (on the composed
            // clips the detector sees every car clearly from its arrival; on real footage a
            // rest may be dated from weak sightings before the first clear one, which is then
            // the photo); a pile's, of when the change map first saw it still
            // (static_seconds after it appeared).
            let vehicle = new["object"]["label"] != "pile" && new["object"]["label"] != "goods";
            if vehicle && c["source"] == "composed" {
                assert_eq!(taken(0), start, "{}", c["name"]);
                let apart = (taken(1) - taken(0)).num_milliseconds() as f64 / 1000.0;
                assert!(
                    apart + 1e-3 >= new["dwell_seconds"].as_f64().unwrap(),
                    "{}: photos {apart} s apart, dwell {}",
                    c["name"],
                    new["dwell_seconds"]
                );
            }
        }
        // The frontage zone names its shop in every message (门前三包).
        if c["name"] == "shopfront-boxes" {
            assert!(!events.is_empty());
            for m in &events {
                assert_eq!(m["zone"]["shop"], "老王杂货店");
                assert_eq!(m["category"]["code"], "05-04");
            }
        }
        messages += events.len();
    }
    assert!(messages > 0);
}
