//! The TCP admin listener's transport: HTTPS with the configured
//! certificate, or plain HTTP on loopback alone (or where the operator
//! says `insecure = true`). Its basic-auth keys must never cross a network
//! in clear by default.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{ServerConfig, crypto::ring};

use crate::config::AdminConfig;

/// What `--admin-listen ADDR` serves with: a TLS acceptor, or `None` for
/// plain HTTP where that is allowed. Checked before anything is made.
pub fn for_listener(addr: &str, admin: &AdminConfig) -> Result<Option<TlsAcceptor>, String> {
    if let Some(files) = &admin.tls {
        return acceptor(&files.cert, &files.key).map(Some);
    }
    let resolved: Vec<_> =
        addr.to_socket_addrs().map_err(|e| format!("--admin-listen {addr}: {e}"))?.collect();
    if admin.insecure || resolved.iter().all(|a| a.ip().is_loopback()) {
        return Ok(None);
    }
    Err(format!(
        "--admin-listen {addr}: a listener other hosts can reach needs TLS, or its keys \
         cross the network in clear: set [admin] tls_cert and tls_key (or insecure = true \
         to accept that)"
    ))
}

/// An acceptor for the certificate chain and key in these PEM files.
fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let at = |path: &Path, e: &dyn std::fmt::Display| format!("[admin] {}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| at(cert, &e))?;
    if chain.is_empty() {
        return Err(at(cert, &"no certificate in the file (expected PEM)"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| at(key, &e))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("[admin] TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("[admin] tls_cert and tls_key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsFiles;

    #[test]
    fn plain_http_is_for_loopback_unless_the_operator_says_insecure() {
        let mut admin = AdminConfig::default();
        assert!(for_listener("127.0.0.1:0", &admin).unwrap().is_none());
        assert!(for_listener("[::1]:0", &admin).unwrap().is_none());
        let refused = for_listener("0.0.0.0:8443", &admin).err().unwrap();
        assert!(refused.contains("tls_cert") && refused.contains("insecure"), "{refused}");
        admin.insecure = true;
        assert!(for_listener("0.0.0.0:8443", &admin).unwrap().is_none());
    }

    #[test]
    fn a_certificate_and_its_key_make_an_acceptor_and_a_mismatch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write("cert.pem", one.cert.pem());
        let key = write("key.pem", one.signing_key.serialize_pem());
        let other_key = write("other.pem", two.signing_key.serialize_pem());
        let files = |key: &Path| AdminConfig {
            tls: Some(TlsFiles { cert: cert.clone(), key: key.to_path_buf() }),
            ..AdminConfig::default()
        };
        assert!(for_listener("0.0.0.0:8443", &files(&key)).unwrap().is_some());
        let err = for_listener("0.0.0.0:8443", &files(&other_key)).err().unwrap();
        assert!(err.contains("tls_key"), "{err}");
        let err = for_listener("0.0.0.0:8443", &files(&dir.path().join("none"))).err().unwrap();
        assert!(err.starts_with("[admin] ") && err.contains("none"), "{err}");
    }
}
