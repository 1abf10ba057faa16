//! Who may read the fleet and who may change it: credentials for people and tools, separate from the agents'
//! signing keys (issue 18, items 3 and 4).
//!
//! The fleet page, `GET /v1/agents`, an agent's history and `/metrics` show site names, repository URLs,
//! revisions and errors, so by default they need a *read* credential; `public_read = true` in `hub.toml` opts
//! out (for a hub reachable only on a private network). The admin API needs an *admin* credential, which also
//! reads.
//!
//! A credential is a random token the operator holds; `hub.toml` keeps only its sha-256:
//! ```toml
//! [[reader]]                 # or [[admin]]
//! name = "ops-dashboard"     # shown in the log, never the token
//! token_sha256 = "<64 hex digits>"
//! ```
//! `outpost-hub credential create` makes the token (into a file, mode 0600) and prints the table. A client
//! presents the token as `Authorization: Bearer <token>`, or, so the page works in a browser without any
//! JavaScript, as the password of HTTP Basic authentication (any user name): the hub answers an anonymous
//! request with `WWW-Authenticate: Basic`, and the browser asks for it.
//!
//! Tokens have at least 128 bits of entropy (the creator draws 256), so a plain sha-256 is enough to keep the
//! stored hash useless to a thief; the presented token's hash is compared with each stored one in constant
//! time, so the timing tells nothing about which bytes matched.

use crate::reply::Rejection;

/// What a credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The fleet page, the agents listing, histories and metrics.
    Read,
    /// Everything `Read` allows, and the admin API.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    /// The `hub.toml` table a credential of this role is listed in.
    pub fn table(self) -> &'static str {
        match self {
            Role::Read => "reader",
            Role::Admin => "admin",
        }
    }
}

/// One credential from `hub.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    pub role: Role,
    pub token_sha256: [u8; 32],
}

/// Who may read and who may administer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `public_read = true`: reads need no credential.
    pub public_read: bool,
    pub credentials: Vec<Credential>,
}

/// The `WWW-Authenticate` challenge: browsers show a login prompt for the realm `outpost-hub`.
pub const CHALLENGE: &str = "Basic realm=\"outpost-hub\", charset=\"UTF-8\"";
/// Bytes of randomness in a token made by [`new_token`]: 256 bits, hex-encoded.
const TOKEN_BYTES: usize = 32;

impl Access {
    /// Checks the request's `Authorization` header (from `headers`, any case) for a credential of at least
    /// `role`, and returns that credential's name ("public" for an open read).
    pub fn check(&self, headers: &[(&str, &str)], role: Role) -> Result<String, Rejection> {
        if role == Role::Read && self.public_read {
            return Ok("public".to_owned());
        }
        let presented = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| *value);
        let Some(value) = presented else {
            return Err(missing(role));
        };
        let Some(token) = token_of(value) else {
            return Err(Rejection::new(
                401,
                "bad_credential",
                "the Authorization header is neither `Bearer <token>` nor HTTP Basic with the token as password",
            )
            .with_challenge());
        };
        let digest = sha256(token.as_bytes());
        // Every stored hash is compared (by ring's constant-time HMAC check under a key drawn for it), so
        // the time taken depends neither on the bytes that matched nor on where a match is.
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| Rejection::internal("the system's random number generator failed"))?;
        let tag = ring::hmac::sign(&key, &digest);
        let mut found: Option<&Credential> = None;
        for credential in &self.credentials {
            if ring::hmac::verify(&key, &credential.token_sha256, tag.as_ref()).is_ok() {
                found = Some(credential);
            }
        }
        match found {
            Some(credential) if credential.role >= role => Ok(credential.name.clone()),
            Some(credential) => Err(Rejection::new(
                403,
                "not_allowed",
                format!(
                    "credential {:?} may only {}; this needs an [[{}]] credential",
                    credential.name,
                    credential.role.as_str(),
                    role.table()
                ),
            )),
            None => Err(Rejection::new(
                401,
                "unknown_credential",
                format!(
                    "this token is not listed as a [[{}]] credential in the hub config; make one with `outpost-hub credential create --role {}`",
                    role.table(),
                    role.as_str()
                ),
            )
            .with_challenge()),
        }
    }
}

fn missing(role: Role) -> Rejection {
    Rejection::new(
        401,
        "credential_required",
        format!(
            "this page shows the fleet's sites, repositories and errors, so it needs a {} credential: send `Authorization: Bearer <token>`, or log in with the token as password (`outpost-hub credential create` makes one; `public_read = true` in the hub config opens reads)",
            role.as_str()
        ),
    )
    .with_challenge()
}

/// The token in an `Authorization` value: a bearer token, or the password of HTTP Basic.
fn token_of(value: &str) -> Option<String> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        return (!password.is_empty()).then(|| password.trim().to_owned());
    }
    None
}

/// The sha-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits into a sha-256.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed; cannot make a token")]
pub struct NoRandomness;

/// A fresh random token (64 hex digits).
pub fn new_token() -> Result<String, NoRandomness> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NoRandomness)?;
    Ok(hex(&bytes))
}

/// The `hub.toml` lines listing a credential.
pub fn config_table(role: Role, name: &str, token: &str) -> String {
    format!(
        "[[{}]]\nname = {}\ntoken_sha256 = \"{}\"\n",
        role.table(),
        toml_string(name),
        hex(&sha256(token.as_bytes()))
    )
}

fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(public_read: bool) -> Access {
        Access {
            public_read,
            credentials: vec![
                Credential {
                    name: "viewer".into(),
                    role: Role::Read,
                    token_sha256: sha256(b"read-token"),
                },
                Credential {
                    name: "root".into(),
                    role: Role::Admin,
                    token_sha256: sha256(b"admin-token"),
                },
            ],
        }
    }

    fn check(access: &Access, header: Option<&str>, role: Role) -> Result<String, &'static str> {
        let headers: Vec<(&str, &str)> = header.map(|h| ("Authorization", h)).into_iter().collect();
        access.check(&headers, role).map_err(|r| r.reason)
    }

    #[test]
    fn reads_need_a_credential_unless_public() {
        let closed = access(false);
        assert_eq!(check(&closed, None, Role::Read), Err("credential_required"));
        assert_eq!(
            check(&closed, Some("Bearer read-token"), Role::Read),
            Ok("viewer".into())
        );
        assert_eq!(
            check(&closed, Some("Bearer admin-token"), Role::Read),
            Ok("root".into())
        );
        assert_eq!(
            check(&closed, Some("Bearer nope"), Role::Read),
            Err("unknown_credential")
        );
        assert_eq!(
            check(&closed, Some("Token read-token"), Role::Read),
            Err("bad_credential")
        );
        // A browser's Basic login: any user, the token as password.
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("me:read-token");
        assert_eq!(
            check(&closed, Some(&format!("Basic {basic}")), Role::Read),
            Ok("viewer".into())
        );
        let open = access(true);
        assert_eq!(check(&open, None, Role::Read), Ok("public".into()));
        assert_eq!(
            check(&open, None, Role::Admin),
            Err("credential_required"),
            "public_read opens reads only"
        );
    }

    #[test]
    fn a_reader_cannot_administer() {
        let access = access(false);
        assert_eq!(
            check(&access, Some("Bearer read-token"), Role::Admin),
            Err("not_allowed")
        );
        assert_eq!(
            check(&access, Some("bearer admin-token"), Role::Admin),
            Ok("root".into())
        );
    }

    #[test]
    fn anonymous_reads_are_challenged_for_a_browser() {
        let refused = access(false).check(&[], Role::Read).err();
        assert_eq!(refused.map(|r| r.challenge), Some(true));
        assert_eq!(CHALLENGE, "Basic realm=\"outpost-hub\", charset=\"UTF-8\"");
    }

    #[test]
    fn tables_hold_only_the_hash() -> Result<(), NoRandomness> {
        let token = new_token()?;
        assert_eq!(token.len(), 64);
        let table = config_table(Role::Admin, "ci \"bot\"", &token);
        assert!(!table.contains(&token), "{table}");
        assert!(
            table.starts_with("[[admin]]\nname = \"ci \\\"bot\\\"\"\n"),
            "{table}"
        );
        let hash = table
            .lines()
            .find_map(|l| l.strip_prefix("token_sha256 = \""))
            .and_then(|l| l.strip_suffix('"'))
            .and_then(parse_sha256);
        assert_eq!(hash, Some(sha256(token.as_bytes())));
        assert_eq!(parse_sha256("xyz"), None);
        Ok(())
    }
}
