//! The names this hub answers to, and the check that a heartbeat was signed for one of them.
//!
//! Every heartbeat signs `@authority` (the `Host` the agent sent). Without this check, a heartbeat an agent
//! signed for another hub (a staging hub, a second fleet) would verify here too, so whoever could capture it
//! there could replay it here within the freshness window. Pinning the authority makes a signature good for
//! one hub only.
//!
//! The names are `names = [...]` in the hub config when set; otherwise the address the hub listens on (a
//! wildcard one counts as loopback), `localhost` on a loopback listener, and every DNS name of the `[tls]`
//! certificate, each with the listening port. A hub behind a proxy that changes the port or the host must
//! list its public names.
//!
//! Comparison is on normalised text: lower case, and a port of 80 or 443 dropped, because an agent whose URL
//! names no port signs the bare host while the operator may have written `hub.example:443`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::reply::Rejection;

/// The normalised `host[:port]` names a heartbeat's `@authority` may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorities {
    names: BTreeSet<String>,
}

impl Authorities {
    /// Exactly these names (from the config's `names`).
    pub fn configured<'a>(names: impl IntoIterator<Item = &'a str>) -> Authorities {
        Authorities {
            names: names.into_iter().map(normalise).collect(),
        }
    }

    /// The defaults for a hub listening on `local_addr` with a certificate valid for `cert_names`.
    pub fn defaults(local_addr: SocketAddr, cert_names: &[String]) -> Authorities {
        let port = local_addr.port();
        let mut names = BTreeSet::new();
        let ip = local_addr.ip();
        let loopback_like = ip.is_loopback() || ip.is_unspecified();
        match ip {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                names.insert(format!("127.0.0.1:{port}"));
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                names.insert(format!("[::1]:{port}"));
                names.insert(format!("127.0.0.1:{port}"));
            }
            _ => {
                names.insert(local_addr.to_string());
            }
        }
        if loopback_like {
            names.insert(format!("localhost:{port}"));
        }
        for name in cert_names {
            names.insert(format!("{name}:{port}"));
        }
        Authorities {
            names: names.iter().map(|n| normalise(n)).collect(),
        }
    }

    /// Whether a signed `@authority` names this hub.
    pub fn contains(&self, authority: &str) -> bool {
        self.names.contains(&normalise(authority))
    }

    /// The names, for messages and the log.
    pub fn list(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    /// Refuses a heartbeat signed for another authority; called after its signature verified.
    pub fn check(&self, agent_id: &str, authority: &str) -> Result<(), Rejection> {
        if self.contains(authority) {
            return Ok(());
        }
        Err(Rejection::new(
            401,
            "wrong_authority",
            format!(
                "the heartbeat of agent {agent_id:?} is signed for {authority:?}, which is not a name of this hub ({}); point the agent's [upstream] url at one of them, or add the name the agent uses to `names` in the hub config",
                self.list().join(", ")
            ),
        ))
    }
}

/// Lower case, without a port of 80 or 443 (see the module comment).
pub fn normalise(authority: &str) -> String {
    let lower = authority.trim().to_ascii_lowercase();
    for default in [":80", ":443"] {
        if let Some(host) = lower.strip_suffix(default) {
            // `[::1]:443` -> `[::1]`; a bare IPv6 literal without brackets has no port to strip.
            if !host.is_empty() && (host.ends_with(']') || !host.contains(':')) {
                return host.to_owned();
            }
        }
    }
    lower
}

/// Whether `text` can be an authority: `host` or `host:port`, with no scheme, path, user or spaces.
pub fn is_authority(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port))
            if !host.ends_with(':') && (!host.contains(':') || host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (text, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_listener_and_the_certificate() -> Result<(), std::net::AddrParseError> {
        let names = Authorities::defaults("127.0.0.1:8443".parse()?, &[]);
        assert_eq!(names.list(), ["127.0.0.1:8443", "localhost:8443"]);
        let names = Authorities::defaults("0.0.0.0:8443".parse()?, &["hub.example.com".to_owned()]);
        assert!(names.contains("hub.example.com:8443"));
        assert!(names.contains("HUB.example.com:8443"));
        assert!(names.contains("127.0.0.1:8443"));
        assert!(!names.contains("0.0.0.0:8443"));
        assert!(!names.contains("hub.example.com:9443"));
        assert!(!names.contains("other.example.com:8443"));
        let names = Authorities::defaults("10.0.0.5:443".parse()?, &["hub.example.com".into()]);
        assert!(names.contains("hub.example.com"), "{:?}", names.list());
        assert!(names.contains("10.0.0.5"));
        assert!(!names.contains("localhost"));
        Ok(())
    }

    #[test]
    fn default_ports_are_optional_on_both_sides() {
        let names = Authorities::configured(["hub.example:443", "plain.example", "[::1]:80"]);
        assert!(names.contains("hub.example"));
        assert!(names.contains("hub.example:443"));
        assert!(names.contains("plain.example:80"));
        assert!(names.contains("[::1]"));
        assert!(!names.contains("hub.example:8443"));
        assert!(!names.contains("evil.example"));
    }

    #[test]
    fn the_refusal_names_the_authority_and_the_fix() {
        let names = Authorities::configured(["hub.example:8443"]);
        assert!(names.check("a", "hub.example:8443").is_ok());
        let refused = names.check("a", "staging.example:8443");
        let Err(rejection) = refused else {
            panic!("staging accepted");
        };
        assert_eq!(
            (rejection.status, rejection.reason),
            (401, "wrong_authority")
        );
        assert!(
            rejection.message.contains("staging.example:8443")
                && rejection.message.contains("hub.example:8443")
                && rejection.message.contains("`names`"),
            "{}",
            rejection.message
        );
    }

    #[test]
    fn authorities_are_host_and_port_only() {
        for good in [
            "hub.example",
            "hub.example:8443",
            "127.0.0.1:1",
            "[::1]:8443",
            "[::1]",
        ] {
            assert!(is_authority(good), "{good:?}");
        }
        for bad in [
            "",
            "https://hub.example",
            "hub.example/v1",
            "user@hub.example",
            "hub example",
            "hub.example:0",
            "hub.example:99999",
            "::1",
            "[zz]:1",
        ] {
            assert!(!is_authority(bad), "{bad:?}");
        }
    }
}
