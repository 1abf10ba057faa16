//! Which certificate authorities an HTTPS connection trusts when no `ca_file` is set. The host's CA store is
//! used when it has one, so a site's own corporate CA keeps working as it does for every other program there.
//! A scratch image or an empty root has none, and then the Mozilla roots compiled into the binary are used: the
//! static binary needs nothing from the host to reach a public Git host or hub.

use std::sync::OnceLock;

/// The roots to give reqwest in place of the host's, or `None` when the host's store has certificates.
pub fn bundled_if_host_has_none() -> Option<&'static [reqwest::Certificate]> {
    static CHOICE: OnceLock<Option<Vec<reqwest::Certificate>>> = OnceLock::new();
    CHOICE
        .get_or_init(|| {
            if host_has_roots() {
                return None;
            }
            let roots = bundled();
            tracing::info!(
                roots = roots.len(),
                "this host has no CA certificates; trusting the web PKI roots built into outpost (set ca_file for a private CA)"
            );
            Some(roots)
        })
        .as_deref()
}

/// True when the places rustls-native-certs looks (`SSL_CERT_FILE`, `SSL_CERT_DIR`, the distribution's bundle)
/// hold at least one certificate. Read once: a CA store does not appear while the agent runs.
fn host_has_roots() -> bool {
    !rustls_native_certs::load_native_certs().certs.is_empty()
}

fn bundled() -> Vec<reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
}

/// The roots a client must be limited to: the `ca_file` certificates when given (they replace every other root,
/// like git's `http.sslCAInfo`), else the bundled ones on a host without a CA store; `None` leaves reqwest's
/// default, the host's store. One rule for the async and the blocking client, whose builders are different types.
pub fn roots(ca_certs: Option<&[reqwest::Certificate]>) -> Option<&[reqwest::Certificate]> {
    match ca_certs {
        Some(certs) => Some(certs),
        None => bundled_if_host_has_none(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_bundled_root_is_usable() {
        let roots = super::bundled();
        assert_eq!(roots.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(roots.len() > 100, "the Mozilla set has well over 100 roots");
    }
}
