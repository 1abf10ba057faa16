//! TLS to the database: rustls on ring, verifying the server against the CA in `store.ca_file` only.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::backend::BackendError;

/// A connector trusting exactly the certificates in `ca_file`.
pub fn connector(ca_file: &Path) -> Result<MakeRustlsConnect, BackendError> {
    let problem = |what: String| {
        BackendError::Database(format!(
            "store.ca_file {}: {what}; point it at the PEM file of the CA that signed the database's certificate",
            ca_file.display()
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| problem(format!("cannot read it ({e})")))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| problem(format!("not PEM ({e})")))?;
        roots
            .add(certificate)
            .map_err(|e| problem(format!("holds an unusable certificate ({e})")))?;
    }
    if roots.is_empty() {
        return Err(problem("holds no certificate".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(format!("no TLS version available ({e})")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
