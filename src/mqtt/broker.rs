//! The in-process broker (`mqtt.embedded = true`) for the demo and single-box installs.

use super::BrokerAddress;

/// Starts an in-process MQTT broker listening on `addr` (for `mqtt.embedded = true`); with
/// `login` (user, password) it refuses clients that do not give them. Without a login it
/// listens on loopback only: `check` refuses anything else.
pub fn start_embedded_broker(
    addr: &BrokerAddress,
    login: Option<(&str, &str)>,
) -> Result<(), String> {
    if login.is_none() && !addr.is_loopback() {
        return Err(format!(
            "the embedded broker would listen on {} without credentials: keep [mqtt] url on 127.0.0.1, or set username and password_file / password_env",
            addr.host
        ));
    }
    let listen = format!("{}:{}", addr.host, addr.port);
    let mut config = serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 100,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 104857600,
            "max_segment_count": 10
        },
        "v4": {
            "1": {
                "name": "v4-1",
                "listen": listen,
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 60000,
                    "max_payload_size": 1048576,
                    "max_inflight_count": 200,
                    "dynamic_filters": true
                }
            }
        }
    });
    if let Some((user, password)) = login {
        config["v4"]["1"]["connections"]["auth"] = serde_json::json!({ user: password });
    }
    let config: rumqttd::Config =
        serde_json::from_value(config).map_err(|e| format!("broker config: {e}"))?;
    // Fail early (and clearly) if the port is taken, instead of inside the broker's thread.
    std::net::TcpListener::bind(&listen)
        .map_err(|e| format!("cannot listen on {listen} for the embedded broker: {e}"))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| format!("cannot start the broker thread: {e}"))?;
    Ok(())
}
