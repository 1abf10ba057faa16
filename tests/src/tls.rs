//! [`TestCa`]: a throw-away certificate authority for HTTPS tests.
//!
//! Why a CA and not one self-signed certificate: webpki (used by rustls, hence by the agent)
//! refuses a CA certificate presented as the server's own ("CaUsedAsEndEntity"), and a
//! self-signed leaf cannot be a trust anchor either. So the fixture makes a real two-level
//! chain: a CA that tests trust (via `GIT_SSL_CAINFO` or a rustls root store) and leaf
//! certificates for `127.0.0.1` / `localhost` signed by it, which the server presents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Installs ring as rustls' process-wide crypto provider. Safe to call any number of times
/// and from any thread; losing the race to another caller is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate authority made fresh for one test (or one server).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA ("Outpost Test CA") with a fresh ECDSA P-256 key.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Outpost Test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        TestCa { issuer }
    }

    /// The CA certificate, PEM encoded.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER encoded.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns that path (for
    /// `GIT_SSL_CAINFO`, `SSL_CERT_FILE` or the agent's CA option).
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.ca_pem()).expect("write ca.pem");
        path
    }

    /// A server certificate for `names` (IP addresses become IP SANs, the rest DNS SANs),
    /// signed by this CA. Returns `(cert_pem, key_pem)`.
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let (cert, key) = self.leaf_certified(names);
        (cert.pem(), key.serialize_pem())
    }

    fn leaf_certified(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert, key)
    }

    /// A rustls server configuration presenting a fresh leaf for `names` (plus the CA
    /// certificate as chain), speaking HTTP/1.1 only.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        install_crypto_provider();
        let (cert, key) = self.leaf_certified(names);
        let chain = vec![cert.der().clone(), self.ca_der()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A rustls client configuration that trusts this CA only (for Rust-side clients).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add CA to root store");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn leaf_is_signed_by_ca_and_pem_encoded() {
        let ca = TestCa::new();
        assert!(ca.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"]);
        assert!(cert.contains("BEGIN CERTIFICATE"));
        assert!(key.contains("PRIVATE KEY"));
        assert_ne!(cert, ca.ca_pem());
        let dir = tempfile::tempdir().unwrap();
        let path = ca.write_ca(dir.path());
        assert_eq!(std::fs::read_to_string(path).unwrap(), ca.ca_pem());
    }

    /// A full handshake through rustls/webpki: proves the chain is accepted for both an IP
    /// address and a DNS name, and that a different CA is rejected.
    #[test]
    fn rustls_client_accepts_leaf_for_ip_and_name_and_rejects_other_ca() {
        let ca = TestCa::new();
        let server_config = ca.server_config(&["127.0.0.1", "localhost"]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..3 {
                let (mut tcp, _) = listener.accept().unwrap();
                let mut conn = rustls::ServerConnection::new(server_config.clone()).unwrap();
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut buf = [0u8; 4];
                if tls.read_exact(&mut buf).is_ok() {
                    tls.write_all(b"pong").unwrap();
                    tls.flush().unwrap();
                }
            }
        });
        let talk = |config: Arc<rustls::ClientConfig>, name: &str| -> std::io::Result<Vec<u8>> {
            let name = ServerName::try_from(name.to_string()).unwrap();
            let mut conn = rustls::ClientConnection::new(config, name).unwrap();
            let mut tcp = TcpStream::connect(addr)?;
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            tls.write_all(b"ping")?;
            let mut buf = vec![0u8; 4];
            tls.read_exact(&mut buf)?;
            Ok(buf)
        };
        assert_eq!(talk(ca.client_config(), "127.0.0.1").unwrap(), b"pong");
        assert_eq!(talk(ca.client_config(), "localhost").unwrap(), b"pong");
        let err = talk(TestCa::new().client_config(), "127.0.0.1").unwrap_err();
        assert!(
            err.to_string().contains("UnknownIssuer")
                || err.to_string().contains("invalid peer certificate"),
            "unexpected error: {err}"
        );
        server.join().unwrap();
    }
}
