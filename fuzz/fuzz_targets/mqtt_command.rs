//! MQTT commands: a topic (the input's first line) and a payload (the rest) as the broker
//! delivers them, on every inbound topic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static TOPICS: std::sync::OnceLock<streetwatch::mqtt::Topics> = std::sync::OnceLock::new();
    let topics = TOPICS.get_or_init(|| streetwatch::mqtt::Topics::new("streetwatch", "node-1"));
    let (topic, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // Topics are UTF-8 on the wire (MQTT refuses anything else).
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    let _ = streetwatch::mqtt::parse_command(topics, topic, payload);
});
