//! A broker's address as written in the config (`mqtt://HOST:PORT`, `mqtts://HOST:PORT`):
//! parsed by the config's checks and by the MQTT link alike.

/// Host and port of a broker, from `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

/// A broker url that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad MQTT url {url:?}: {why}; expected mqtt://HOST:PORT or mqtts://HOST:PORT")]
pub struct UrlError {
    url: String,
    why: String,
}

impl BrokerAddress {
    /// Whether only this machine can reach the host (127.0.0.0/8, ::1, `localhost`).
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Parses `mqtt://host[:port]` (port 1883 by default) or `mqtts://host[:port]` (8883).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let err = |why: &str| UrlError {
            url: url.to_string(),
            why: why.to_string(),
        };
        let (rest, tls) = if let Some(r) = url.strip_prefix("mqtts://") {
            (r, true)
        } else if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            (r, false)
        } else {
            return Err(err("the scheme must be mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| err("the port is not a number"))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            tls,
        })
    }
}
