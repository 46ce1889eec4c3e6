//! `mqtts://` against mosquitto with TLS, certificates made by the test with openssl: a CA, a
//! server certificate for localhost / 127.0.0.1, and a client certificate the broker requires;
//! the password comes from a file. Events arrive; with the wrong CA the log says TLS failed and
//! what to check, and the daemon keeps going with the events waiting in the outbox.

mod support;

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use support::Daemon;

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A key and a certificate for `name` (`server`, `client`) with subject `cn` and the X.509 v3
/// extensions `ext`, signed by the CA in `dir`.
fn signed(dir: &Path, name: &str, cn: &str, ext: &str) {
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    let subject = format!("/CN={cn}");
    let new_key = [
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subject,
    ];
    openssl(dir, &new_key);
    std::fs::write(dir.join(&extfile), format!("{ext}\n")).unwrap();
    let sign = [
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "2",
        "-extfile",
        &extfile,
    ];
    openssl(dir, &sign);
}

/// A CA, a server certificate for localhost signed by it, and a client certificate signed by it
/// (X.509 v3 with clientAuth, as a real deployment's; rustls sends no v1 certificate).
fn make_certificates(dir: &Path, ca_name: &str) {
    let subject = format!("/CN={ca_name}");
    let ca = [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", &subject,
    ];
    openssl(dir, &ca);
    signed(
        dir,
        "server",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    );
    signed(
        dir,
        "client",
        "streetwatch-node",
        "extendedKeyUsage=clientAuth",
    );
}

#[test]
fn events_go_over_tls_with_a_client_certificate() {
    let tls_port = Cell::new(0);
    // Two listeners on one broker: TLS (client certificate and password required) for the
    // daemon, plain loopback for the test's subscriber.
    let broker = support::Mosquitto::start_with(|port, dir| {
        make_certificates(dir, "streetwatch test CA");
        let ok = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(dir.join("passwd"))
            .args(["node-1", "Tls-Pa55-node"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let tls = support::free_port();
        tls_port.set(tls);
        let d = dir.display();
        format!(
            "per_listener_settings true\n\
             listener {port} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n\
             cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n"
        )
    });
    assert!(support::wait_for_port(
        tls_port.get(),
        Duration::from_secs(10)
    ));
    let dir = support::artifacts_dir("mqtt-tls");
    let (clip, _) = support::render_scenario("parking-basic", &dir);
    std::fs::write(dir.join("password"), "Tls-Pa55-node\n").unwrap();
    let certs = broker.dir().display().to_string();
    let write_config = |ca: &str| {
        let config = dir.join("config.toml");
        let mqtt = format!(
            "url = \"mqtts://localhost:{tls}\"\nusername = \"node-1\"\npassword_file = \"password\"\n\
             ca_file = \"{ca}\"\nclient_cert_file = \"{certs}/client.crt\"\nclient_key_file = \"{certs}/client.key\"",
            tls = tls_port.get()
        );
        support::StreetCamera {
            mqtt: &mqtt,
            sections: "[incidents]\nend_after_seconds = 5",
            id: "cam-tls",
            clip: &clip,
            pace: 4.0,
            camera: "",
            dwell: 6.0,
            zones: "",
        }
        .write(&config);
        config
    };

    // A CA that did not sign the broker's certificate: refused, explained, retried.
    let other = dir.join("other-ca");
    std::fs::create_dir_all(&other).unwrap();
    make_certificates(&other, "someone else's CA");
    let config = write_config(&other.join("ca.crt").display().to_string());
    let mut wrong = Daemon::start(&config, &dir.join("wrong-ca.log"), &[]);
    thread::sleep(Duration::from_secs(6));
    assert!(wrong.running());
    let log = wrong.log_text();
    assert!(
        log.contains("TLS failed") && log.contains("check [mqtt] ca_file"),
        "{log}"
    );
    assert!(!log.contains("Tls-Pa55-node"), "the password is in the log");
    wrong.stop();

    // The right CA: the events (those waiting from the first run too) arrive.
    let sub = support::Subscriber::connect(broker.port, &["streetwatch/#"]);
    let config = write_config(&format!("{certs}/ca.crt"));
    let mut daemon = Daemon::start(&config, &dir.join("daemon.log"), &[]);
    assert!(
        sub.wait_until(Duration::from_secs(60), |r| r
            .iter()
            .any(|m| m.topic.contains("/events/") && m.json()["type"] == "end")),
        "no event over TLS:\n{}",
        daemon.log_text()
    );
    daemon.stop();
    let storage = dir.join("data");
    sub.wait_until(Duration::from_secs(10), |r| {
        support::received_events(r).len() >= support::ledger_messages(&storage).len()
    });
    let all = sub.all();
    support::assert_payloads_valid(&all);
    support::assert_delivered(&storage, &all);
    assert!(all
        .iter()
        .any(|m| m.topic == "streetwatch/nodes/streetwatch/available" && m.text() == "online"));
}
