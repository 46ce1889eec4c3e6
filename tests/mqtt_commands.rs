//! Commands from the command center, over a real mosquitto: a zone switched OFF ends its open
//! event (`zone_disabled`) and says so on its retained state topic, then ON again; a malformed
//! switch, an unknown zone and a reload of a broken config are each answered on the node's
//! errors topic (the running config stays); a reload of a good config adds a zone and changes
//! the dwell without reconnecting the camera. Every payload is checked against its schema.

mod support;

use std::time::Duration;

use support::{Daemon, Received};

fn config(path: &std::path::Path, clip: &std::path::Path, url: &str, dwell: f64, zones: &str) {
    support::StreetCamera {
        mqtt: &format!("url = \"{url}\""),
        sections: "[incidents]\nend_after_seconds = 5\nupdate_every_seconds = 2",
        id: "cam-cmd",
        clip,
        pace: 4.0,
        camera: "repeat = true",
        dwell,
        zones,
    }
    .write(path);
}

fn last_state(r: &[Received], zone: &str) -> Option<String> {
    r.iter()
        .rfind(|m| m.topic == format!("streetwatch/cameras/cam-cmd/zones/{zone}/state"))
        .map(Received::text)
}

fn errors(r: &[Received]) -> Vec<serde_json::Value> {
    r.iter()
        .filter(|m| m.topic == "streetwatch/nodes/streetwatch/errors")
        .map(Received::json)
        .collect()
}

#[test]
fn zone_switches_and_reloads_from_the_command_center() {
    let broker = support::Mosquitto::start();
    let dir = support::artifacts_dir("mqtt-commands");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let path = dir.join("config.toml");
    config(&path, &clip, &broker.url(), 6.0, "");
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let mut daemon = Daemon::start(&path, &dir.join("daemon.log"), &[]);
    let wait = |what: &str, pred: &dyn Fn(&[Received]) -> bool| {
        assert!(
            sub.wait_until(Duration::from_secs(60), pred),
            "{what}:\n{}",
            std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
        );
    };
    wait("no zone state ON", &|r| {
        last_state(r, "south-strip").as_deref() == Some("ON")
    });
    wait("no event", &|r| {
        support::received_events(r)
            .iter()
            .any(|(_, m)| m["type"] == "new")
    });

    // OFF: the open event ends as zone_disabled and the retained state says OFF.
    let open = support::received_events(&sub.all())
        .into_iter()
        .find(|(_, m)| m["type"] == "new")
        .unwrap()
        .1;
    support::publish(
        broker.port,
        "streetwatch/cameras/cam-cmd/zones/south-strip/set",
        "OFF",
    );
    wait("no state OFF", &|r| {
        last_state(r, "south-strip").as_deref() == Some("OFF")
    });
    wait("the open event did not end", &|r| {
        support::received_events(r)
            .iter()
            .any(|(_, m)| m["event_id"] == open["event_id"] && m["type"] == "end")
    });
    let end = support::received_events(&sub.all())
        .into_iter()
        .find(|(_, m)| m["event_id"] == open["event_id"] && m["type"] == "end")
        .unwrap()
        .1;
    assert_eq!(end["end_reason"], "zone_disabled");
    let retained =
        support::Subscriber::connect(broker.port, &["streetwatch/cameras/cam-cmd/zones/+/state"]);
    assert!(
        retained.wait_until(Duration::from_secs(5), |r| last_state(r, "south-strip")
            .as_deref()
            == Some("OFF"))
    );
    support::publish(
        broker.port,
        "streetwatch/cameras/cam-cmd/zones/south-strip/set",
        "ON",
    );
    wait("no state ON again", &|r| {
        r.iter()
            .filter(|m| m.topic.ends_with("south-strip/state"))
            .map(Received::text)
            .collect::<Vec<_>>()
            .ends_with(&["OFF".to_string(), "ON".to_string()])
    });

    // Malformed and unknown commands are answered on the errors topic.
    support::publish(
        broker.port,
        "streetwatch/cameras/cam-cmd/zones/south-strip/set",
        "maybe",
    );
    support::publish(
        broker.port,
        "streetwatch/cameras/cam-cmd/zones/no-such-zone/set",
        "ON",
    );
    wait("no error answers", &|r| errors(r).len() >= 2);
    let e = errors(&sub.all());
    assert!(
        e[0]["error"].as_str().unwrap().contains("ON or OFF"),
        "{e:#?}"
    );
    assert_eq!(e[0]["payload"], "maybe");
    assert!(
        e[1]["error"]
            .as_str()
            .unwrap()
            .contains("has no zone \"no-such-zone\""),
        "{e:#?}"
    );

    // A broken config is refused with the file, line and field; the running one stays.
    config(&path, &clip, &broker.url(), -5.0, "");
    support::publish(broker.port, "streetwatch/nodes/streetwatch/reload", "");
    wait("no answer to a bad reload", &|r| errors(r).len() >= 3);
    let refusal = errors(&sub.all())[2]["error"].as_str().unwrap().to_string();
    assert!(
        refusal.contains("reload refused") && refusal.contains("dwell_seconds"),
        "{refusal}"
    );
    assert!(daemon.running());

    // A good config: a new zone, a longer dwell; applied without reconnecting the camera.
    let north = r#"  [[cameras.zones]]
  id = "north-kerb"
  kind = "no_parking"
  polygon = [[0.05, 0.30], [0.95, 0.30], [0.95, 0.60], [0.05, 0.60]]
  dwell_seconds = 30
"#;
    config(&path, &clip, &broker.url(), 8.0, north);
    support::publish(broker.port, "streetwatch/nodes/streetwatch/reload", "");
    wait("the new zone's state was not published", &|r| {
        last_state(r, "north-kerb").as_deref() == Some("ON")
    });
    let statuses: Vec<String> = sub
        .on("streetwatch/cameras/cam-cmd/status")
        .iter()
        .map(|m| m.json()["state"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !statuses.iter().any(|s| s == "reconnecting"),
        "{statuses:?}"
    );
    assert!(daemon.log_text().contains("new zones and settings applied"));
    assert_eq!(
        errors(&sub.all()).len(),
        3,
        "the good reload raised no error"
    );

    daemon.stop();
    sub.assert_payloads_valid();
}

/// Whether the broker on `port` lets a client in with `login` (CONNACK accepted within 5 s).
fn admitted(port: u16, login: Option<(&str, &str)>) -> bool {
    use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet};
    let mut opts = MqttOptions::new(format!("probe-{}", support::free_port()), "127.0.0.1", port);
    if let Some((user, password)) = login {
        opts.set_credentials(user, password);
    }
    let (_client, mut conn) = Client::new(opts, 10);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => {
                return a.code == ConnectReturnCode::Success
            }
            Ok(Ok(_)) | Err(_) => {}
            // Refused, or the connection dropped: not admitted.
            Ok(Err(_)) => return false,
        }
    }
    false
}

#[test]
fn an_embedded_broker_off_loopback_admits_only_the_configured_login() {
    let dir = support::artifacts_dir("embedded-broker-login");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let port = support::free_port();
    let path = dir.join("config.toml");
    support::StreetCamera {
        mqtt: &format!(
            "url = \"mqtt://0.0.0.0:{port}\"\nembedded = true\nusername = \"city\"\npassword_env = \"SW_TEST_BROKER_PASSWORD\""
        ),
        sections: "",
        id: "cam-cmd",
        clip: &clip,
        pace: 4.0,
        camera: "repeat = true",
        dwell: 6.0,
        zones: "",
    }
    .write(&path);
    let mut daemon = Daemon::start(
        &path,
        &dir.join("daemon.log"),
        &[("SW_TEST_BROKER_PASSWORD", "kerb-7d1f")],
    );
    assert!(
        support::wait_for_port(port, Duration::from_secs(20)),
        "the embedded broker never listened:\n{}",
        daemon.log_text()
    );
    // Strangers cannot read events or switch zones: they are not let in at all.
    assert!(
        !admitted(port, None),
        "a client without a login was admitted"
    );
    assert!(
        !admitted(port, Some(("city", "guess"))),
        "a wrong password was admitted"
    );
    let sub = support::Subscriber::connect_with(
        port,
        &["streetwatch/#"],
        "command-center",
        true,
        Some(("city", "kerb-7d1f")),
    );
    assert!(
        sub.wait_until(Duration::from_secs(30), |r| r
            .iter()
            .any(|m| m.topic == "streetwatch/cameras/cam-cmd/status")),
        "the configured login receives nothing:\n{}",
        daemon.log_text()
    );
    daemon.stop();
    // Without a login the same broker is refused before it starts: `check` explains.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("username = \"city\"\n", "")
            .replace("password_env = \"SW_TEST_BROKER_PASSWORD\"", ""),
    )
    .unwrap();
    let out = std::process::Command::new(support::binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mqtt.embedded") && err.contains("0.0.0.0") && err.contains("username"),
        "{err}"
    );
}

#[test]
fn a_burst_of_reloads_is_folded_and_the_node_stays_responsive() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let broker = support::Mosquitto::start();
    let dir = support::artifacts_dir("mqtt-reload-burst");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    let path = dir.join("config.toml");
    config(&path, &clip, &broker.url(), 6.0, "");
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let mut daemon = Daemon::start(&path, &dir.join("daemon.log"), &[]);
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| last_state(r, "south-strip")
            .as_deref()
            == Some("ON")),
        "{}",
        daemon.log_text()
    );
    // 300 reloads at once from one client: each would have sent the whole config to the camera.
    let burst = 300;
    let mut opts = MqttOptions::new("reload-burst", "127.0.0.1", broker.port);
    opts.set_inflight(100);
    let (client, mut conn) = Client::new(opts, burst);
    for _ in 0..burst {
        client
            .publish(
                "streetwatch/nodes/streetwatch/reload",
                QoS::AtLeastOnce,
                false,
                "",
            )
            .unwrap();
    }
    let mut acked = 0;
    for ev in conn.iter() {
        if let Ok(Event::Incoming(Packet::PubAck(_))) = ev {
            acked += 1;
            if acked == burst {
                break;
            }
        }
    }
    let _ = client.disconnect();
    // Then a zone switch: answered although the reloads came first.
    support::publish(
        broker.port,
        "streetwatch/cameras/cam-cmd/zones/south-strip/set",
        "OFF",
    );
    assert!(
        sub.wait_until(Duration::from_secs(30), |r| last_state(r, "south-strip")
            .as_deref()
            == Some("OFF")),
        "the zone switch after the burst was not applied:\n{}",
        daemon.log_text()
    );
    daemon.stop();
    let log = daemon.log_text();
    let reloads = log.matches("config reloaded").count();
    let folded = log.matches("one is already waiting").count();
    assert!(reloads >= 1, "no reload ran:\n{log}");
    assert_eq!(
        reloads + folded,
        burst,
        "every reload either ran or was folded"
    );
    assert!(
        reloads < burst / 3,
        "{reloads} of {burst} reloads ran one by one: they were not folded"
    );
    eprintln!("{burst} reloads in a burst: {reloads} ran, {folded} folded into a waiting one");
}
