//! TLS for the hub, always with rustls and its ring provider (no OpenSSL, no aws-lc-rs, so the binary
//! builds static for musl and stays small).
//!
//! - [`server_config`]: the HTTPS listener's config from the `[tls]` PEM files (chain, then private key);
//! - [`pinned_client_config`]: what `outpost-hub status` uses to talk to the running hub. It trusts exactly
//!   the certificate in `[tls] cert_file` and nothing else, rather than a CA: the status command runs next
//!   to the hub with its config, so the configured certificate is the one thing it can verify against
//!   whichever CA issued it (public, private, or self-signed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

use crate::config::TlsFiles;

/// Why TLS could not be set up. Each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[tls] cert_file {path}: cannot read a PEM certificate chain ({problem}); it must hold the server certificate first, then any intermediates")]
    Certificates { path: PathBuf, problem: String },
    #[error("[tls] key_file {path}: cannot read a PEM private key ({problem}); it must hold an unencrypted PKCS#8, PKCS#1 or SEC1 key")]
    PrivateKey { path: PathBuf, problem: String },
    #[error("[tls] cert_file and key_file do not make a usable server identity: {0}; check that the key belongs to the first certificate")]
    Identity(rustls::Error),
    #[error("cannot set up TLS with the ring provider: {0}")]
    Provider(rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain in `path`, the server's own certificate first.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |problem: String| TlsError::Certificates {
        path: path.to_owned(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if chain.is_empty() {
        return Err(error("no CERTIFICATE block found".into()));
    }
    Ok(chain)
}

/// The HTTPS server's config. HTTP/1.1 only: heartbeats are one small request every few seconds per agent,
/// where HTTP/2 buys nothing.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| TlsError::PrivateKey {
        path: files.key_file.clone(),
        problem: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Identity)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The DNS names the `[tls]` certificate is valid for (its subject alternative names), which the hub
/// answers to by default (see [`crate::authority`]).
pub fn certificate_dns_names(files: &TlsFiles) -> Result<Vec<String>, TlsError> {
    let chain = certificates(&files.cert_file)?;
    let cert = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| TlsError::Certificates {
        path: files.cert_file.clone(),
        problem: format!("the first certificate cannot be parsed ({e})"),
    })?;
    Ok(cert.valid_dns_names().map(str::to_owned).collect())
}

/// A client config that accepts only the certificate in `cert_file` (see the module comment).
pub fn pinned_client_config(cert_file: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let pinned = certificates(cert_file)?.swap_remove(0);
    let provider = provider();
    let verifier = PinnedCertificate {
        pinned,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts a server whose certificate is byte for byte the pinned one, and whose handshake signature
/// verifies with that certificate's key (so the server holds the matching private key).
#[derive(Debug)]
struct PinnedCertificate {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one in [tls] cert_file: another process is listening on the hub's address, or the hub serves another certificate".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
