//! TLS for what this node serves (the console's HTTPS), from PEM files. A leaf: `config`'s
//! check and the console both use it.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// A TLS server from PEM files: the certificate chain and its private key. Errors name the
/// file and what is wrong, for `check` and for `run`.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let certs = rustls_pemfile::certs(&mut read(cert_file)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (a PEM file with -----BEGIN CERTIFICATE-----)",
            cert_file.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut read(key_file)?.as_slice())
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_file.display()))?
        .ok_or_else(|| {
            format!(
                "{}: no private key in it (a PEM file with -----BEGIN PRIVATE KEY-----)",
                key_file.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {}: the key does not go with the certificate: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
