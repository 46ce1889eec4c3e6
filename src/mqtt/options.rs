//! Client options from the config: broker address, client id, last will, credentials and TLS.
//! The password is read when connecting (so a rotated file is picked up on the next
//! connection) and never appears in a log line or an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

use super::{BrokerAddress, Topics};
use crate::config::LoadedConfig;

/// Debian's bundle of public CAs, used for `mqtts://` when no `ca_file` is given.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why client options cannot be made. Names the field and file, never the password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OptionsError {
    /// The url is not usable.
    #[error("[mqtt] url: {0}")]
    Url(super::UrlError),
    /// A file named in `[mqtt]` cannot be read.
    #[error("[mqtt] {field}: cannot read {path}: {why}")]
    File {
        /// Config field.
        field: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        why: String,
    },
    /// The password's environment variable is not set.
    #[error("[mqtt] password_env: the environment variable {0} is not set or is empty")]
    MissingEnv(String),
}

// By hand, not `#[from]`: the message already holds the cause, and a `source` would print it
// twice in an error chain.
impl From<super::UrlError> for OptionsError {
    fn from(e: super::UrlError) -> Self {
        Self::Url(e)
    }
}

/// Reads a file named by a config field.
fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, OptionsError> {
    std::fs::read(path).map_err(|e| OptionsError::File {
        field,
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// The password from `password_file` (first line) or `password_env`, if one is configured.
pub fn password(loaded: &LoadedConfig) -> Result<Option<String>, OptionsError> {
    let cfg = &loaded.config.mqtt;
    if let Some(file) = &cfg.password_file {
        let bytes = read("password_file", &loaded.path_of(file))?;
        let text = String::from_utf8_lossy(&bytes);
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    if let Some(var) = &cfg.password_env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(OptionsError::MissingEnv(var.clone())),
        };
    }
    Ok(None)
}

/// Options for one connection of this node's client.
pub fn client_options(loaded: &LoadedConfig) -> Result<MqttOptions, OptionsError> {
    let cfg = &loaded.config.mqtt;
    let node = &loaded.config.node.id;
    let addr = BrokerAddress::parse(&cfg.url)?;
    let topics = Topics::new(&cfg.topic_prefix, node);
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("streetwatch-{node}"));
    let mut opts = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    opts.set_keep_alive(Duration::from_secs(15));
    // A clean session: what is unacknowledged is re-sent from the outbox, not by the client.
    opts.set_clean_session(true);
    opts.set_last_will(LastWill::new(
        topics.available(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(super::link::WINDOW + 32);
    if let Some(user) = &cfg.username {
        opts.set_credentials(user.clone(), password(loaded)?.unwrap_or_default());
    }
    if addr.tls {
        let ca = match &cfg.ca_file {
            Some(f) => read("ca_file", &loaded.path_of(f))?,
            None => read("ca_file", Path::new(SYSTEM_CA_BUNDLE))?,
        };
        let client_auth = match (&cfg.client_cert_file, &cfg.client_key_file) {
            (Some(cert), Some(key)) => Some((
                read("client_cert_file", &loaded.path_of(cert))?,
                read("client_key_file", &loaded.path_of(key))?,
            )),
            _ => None,
        };
        opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(opts)
}
