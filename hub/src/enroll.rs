//! `POST /v1/enroll`: an agent registers its public key once, with a one-time bootstrap token.
//!
//! The operator makes a token with `outpost-hub token create` (the hub keeps its hash, the labels it gives
//! and its expiry), or writes one into `bootstrap_token_file`, and hands it to whoever installs the agent;
//! `outpost enroll` presents `{"agent_id", "public_key", "token"}`. Rules:
//! - the token is read from its file on every request, so writing a new token needs no restart; the file is
//!   a secret and must be private to the hub's user (mode 0600), like key files;
//! - each token enrolls exactly one agent: its sha-256 is recorded with the agent it enrolled, and any other
//!   agent presenting it is refused (403). The same agent, key and token again is answered 200, so an agent
//!   whose reply was lost can retry;
//! - an id or key the hub already knows (config or earlier enrollment) is refused (409), so enrollment can
//!   never replace an agent's key; re-keying is an operator's config edit;
//! - a token must carry at least [`MIN_TOKEN_BITS`] bits of entropy, estimated from its length and alphabet
//!   (`openssl rand -hex 16`, 32 hex digits, is exactly enough); a shorter or repetitive one is refused at
//!   every request with a 503 that tells the operator how to make a good one;
//! - the presented token is compared with `ring::hmac::verify` under a key drawn for the comparison, which
//!   ring does in constant time, so the timing says nothing about the token; the store keeps only its sha-256;
//! - tries are rate limited per source address and in total ([`PER_SOURCE`], [`TOTAL`], see
//!   [`crate::limit`]) before anything else is done; past the limit the answer is 429 with `Retry-After`.
//!
//! The hub checks the id and key against the agents it knows, then the store records the enrollment in one
//! transaction that refuses a used token or a taken id, whichever hub replica got the request first.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use outpost_proto::keys::PublicKey;
use serde::{Deserialize, Serialize};

use crate::backend::BackendError;
use crate::config::is_agent_id;
use crate::limit::{retry_after_secs, Rate};
use crate::registry::{KnownAgent, Origin};
use crate::reply::{Rejection, Reply};
use crate::state::HubState;
use crate::store::{Enrolled, Enrollment, IssuedToken, Labels};

/// The largest enrollment body accepted: three short strings.
pub const MAX_ENROLL_BODY: usize = 16 * 1024;
/// Below this, a token could be guessed by anyone who can reach the hub; at the [`TOTAL`] rate, guessing
/// 128 bits takes longer than the universe is old.
pub const MIN_TOKEN_BITS: u32 = 128;
/// A token with fewer different characters than this is not random, whatever its length.
const MIN_DISTINCT_CHARS: usize = 8;
const MAX_TOKEN_FILE: u64 = 4096;
/// Enrollment tries one source address may make: a few at once (an agent retrying), then one every 10 s.
pub const PER_SOURCE: Rate = Rate {
    burst: 5,
    every: Duration::from_secs(10),
};
/// Enrollment tries from all sources together: enough for a fleet enrolling at install time.
pub const TOTAL: Rate = Rate {
    burst: 20,
    every: Duration::from_secs(1),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    agent_id: String,
    public_key: String,
    token: String,
}

#[derive(Debug, Serialize)]
struct EnrollReply<'a> {
    agent_id: &'a str,
    /// The agent's key fingerprint: the `keyid` its heartbeats must carry.
    fingerprint: String,
    /// The hub's public key, for the agent's `hub_key`. Compare it with what the hub's operator printed at
    /// start: an agent must not trust it just because this reply said so.
    hub_key: String,
}

/// An enrollment whose body is valid; its token is settled by [`check_token`], its id and key by
/// [`check_agent`], and the store decides the rest.
#[derive(Debug)]
pub struct Checked {
    enrollment: Enrollment,
    public_key: PublicKey,
    /// Labels the agent starts with (from the token `outpost-hub token create` issued).
    pub labels: Labels,
    /// `None`: the token is the bootstrap token file's. `Some`: it must be an issued one; the file's problem,
    /// if reading it failed, is the answer when it is not.
    lookup: Option<Option<Rejection>>,
}

impl Checked {
    pub fn enrollment(&self) -> Enrollment {
        self.enrollment.clone()
    }

    /// The hex sha-256 of the presented token, when it must be looked up among the issued tokens.
    pub fn issued_lookup(&self) -> Option<&str> {
        self.lookup
            .as_ref()
            .map(|_| self.enrollment.token_sha256.as_str())
    }
}

/// Checks one enrollment received at `now_ms`: the body, and whether the token is the bootstrap token
/// file's. Reads that file, so it runs on the blocking pool.
pub fn check(hub: &HubState, body: &[u8], now_ms: u64) -> Result<Checked, Rejection> {
    let request: EnrollRequest = serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            400,
            "invalid_enrollment",
            format!(
                "the enrollment body must be JSON {{\"agent_id\", \"public_key\", \"token\"}}: {e}"
            ),
        )
    })?;
    if !is_agent_id(&request.agent_id) {
        return Err(Rejection::new(
            400,
            "invalid_enrollment",
            "agent_id must be 1-253 letters, digits, '.', '_' or '-'",
        ));
    }
    let public_key: PublicKey = request.public_key.parse().map_err(|_| {
        Rejection::new(
            400,
            "invalid_enrollment",
            "public_key must be the `ed25519:...` text that `outpost keygen` prints",
        )
    })?;
    let presented = request.token.trim();
    let lookup = match &hub.config.bootstrap_token_file {
        Some(file) => match read_token(file) {
            Ok(expected) if same_token(&expected, presented) => None,
            Ok(_) => Some(None),
            Err(problem) => Some(Some(problem)),
        },
        None => Some(None),
    };
    Ok(Checked {
        enrollment: Enrollment {
            agent_id: request.agent_id,
            public_key: public_key.to_string(),
            enrolled_at_ms: now_ms,
            token_sha256: sha256_hex(presented.as_bytes()),
        },
        public_key,
        labels: Labels::new(),
        lookup,
    })
}

/// Settles a token that is not the file's: `issued` is what the store holds under its hash. An issued
/// token past its expiry enrolls nobody.
pub fn check_token(
    checked: &mut Checked,
    issued: Option<IssuedToken>,
    now_ms: u64,
) -> Result<(), Rejection> {
    let Some(file_problem) = checked.lookup.take() else {
        return Ok(());
    };
    let id = &checked.enrollment.agent_id;
    match issued {
        Some(token) if token.expires_at_ms.is_some_and(|at| at <= now_ms) => Err(Rejection::new(
            403,
            "token_expired",
            format!("the bootstrap token presented by agent {id:?} has expired; ask the hub's operator for a new one (`outpost-hub token create`)"),
        )),
        Some(token) => {
            checked.labels = token.labels;
            Ok(())
        }
        None => Err(file_problem.unwrap_or_else(|| Rejection::new(
            403,
            "bad_token",
            format!("the bootstrap token presented by agent {id:?} is neither one this hub issued (`outpost-hub token create`) nor its bootstrap token file's; ask the hub's operator for a fresh one"),
        ))),
    }
}

/// Checks the id and key against the agents the hub knows, once the token is good (so a guesser learns
/// nothing about which ids exist).
pub fn check_agent(hub: &HubState, checked: &Checked) -> Result<(), Rejection> {
    let id = &checked.enrollment.agent_id;
    let public_key = &checked.public_key;
    let registry = hub.registry();
    if let Some(known) = registry.get(id) {
        if known.public_key != *public_key || known.origin == Origin::Config {
            return Err(Rejection::new(
                409,
                "already_enrolled",
                format!(
                    "agent {id:?} is already known to the hub with {}; enrollment cannot change an agent's key: ask the hub's operator to revoke it first (`outpost-hub agents revoke`) or update its [[agent]] entry",
                    if known.public_key == *public_key { "this key (from the config)" } else { "another key" }
                ),
            ));
        }
    } else if let Err(conflict) = registry.check_new(id, public_key) {
        return Err(Rejection::new(
            409,
            "already_enrolled",
            conflict.to_string(),
        ));
    }
    Ok(())
}

/// The answer once the store recorded (durably) or refused the enrollment.
pub fn finish(
    hub: &HubState,
    checked: Checked,
    outcome: Result<Enrolled, BackendError>,
) -> Result<Reply, Rejection> {
    let Checked {
        enrollment,
        public_key,
        ..
    } = checked;
    let request = &enrollment;
    let fingerprint = public_key.fingerprint();
    let outcome = outcome.map_err(|e| {
        crate::reply::store_failure(
            &e,
            format!(
                "cannot record the enrollment of agent {:?}",
                request.agent_id
            ),
        )
    })?;
    let status = match outcome {
        Enrolled::Enrolled => {
            let known = KnownAgent {
                id: request.agent_id.clone(),
                public_key,
                fingerprint: fingerprint.clone(),
                origin: Origin::Enrolled,
                heartbeat_interval: hub.config.heartbeat_interval,
            };
            hub.registry_mut()
                .insert(known)
                .map_err(|e| Rejection::internal(format!("enrolled agent {:?} but cannot register it: {e}", request.agent_id)))?;
            tracing::info!(agent = %request.agent_id, key = %fingerprint, "agent enrolled");
            201
        }
        Enrolled::Again => 200,
        Enrolled::TokenUsed { by } => {
            return Err(Rejection::new(
                403,
                "token_used",
                format!("this bootstrap token already enrolled agent {by:?}; each token enrolls one agent: ask the hub's operator to write a new token to the bootstrap token file"),
            ))
        }
        Enrolled::IdTaken => {
            return Err(Rejection::new(
                409,
                "already_enrolled",
                format!("agent {:?} is already enrolled with another token", request.agent_id),
            ))
        }
    };
    Reply::json(
        status,
        &EnrollReply {
            agent_id: &request.agent_id,
            fingerprint,
            hub_key: hub.public_key.to_string(),
        },
    )
}

/// Takes one enrollment try for `source` at `now`, or refuses it with 429 and when to come back. Called
/// before the body is read, so a flood costs the hub as little as possible.
pub fn admit(hub: &HubState, source: IpAddr, now: Instant) -> Result<(), Rejection> {
    hub.enroll_limit.try_take(source, now).map_err(|wait| {
        let secs = retry_after_secs(wait);
        Rejection::new(
            429,
            "rate_limited",
            format!("too many enrollment tries from {source} or from everyone; retry in {secs}s (Retry-After)"),
        )
        .retry_after(secs)
    })
}

/// Whether `presented` is the `expected` token. `ring::hmac::verify` compares in constant time; the key is
/// fresh for each comparison, so the tags mean nothing outside it.
fn same_token(expected: &str, presented: &str) -> bool {
    let rng = ring::rand::SystemRandom::new();
    let Ok(key) = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng) else {
        // No randomness: refuse rather than compare some other way.
        return false;
    };
    let tag = ring::hmac::sign(&key, expected.as_bytes());
    ring::hmac::verify(&key, presented.as_bytes(), tag.as_ref()).is_ok()
}

/// The entropy a token can carry, in bits: its length times the bits per character of the smallest usual
/// alphabet holding it (hex 4, base64 6, other printable ASCII 6.5, anything else 6.5 per character too).
/// An upper bound, so a token must also use at least [`MIN_DISTINCT_CHARS`] different characters.
pub fn token_bits(token: &str) -> u32 {
    let chars = token.chars().count() as f64;
    let per_char = if token.chars().all(|c| c.is_ascii_hexdigit()) {
        4.0
    } else if token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_' | '='))
    {
        6.0
    } else {
        6.5
    };
    (chars * per_char) as u32
}

/// Why `token` is too weak to guard enrollment, if it is.
fn weakness(token: &str) -> Option<String> {
    let bits = token_bits(token);
    let distinct = token
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if bits < MIN_TOKEN_BITS {
        Some(format!(
            "the token carries at most {bits} bits; at least {MIN_TOKEN_BITS} are needed"
        ))
    } else if distinct < MIN_DISTINCT_CHARS {
        Some(format!(
            "the token repeats {distinct} characters, so it is not random"
        ))
    } else {
        None
    }
}

/// Reads the current token, refusing a file others can read. Problems are the operator's to fix, so the
/// client gets a 503 and the log gets the detail.
fn read_token(path: &Path) -> Result<String, Rejection> {
    let unusable = |detail: String| {
        Rejection::new(
            503,
            "enrollment_unavailable",
            format!("bootstrap token file {}: {detail}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(|e| {
        unusable(format!(
            "cannot open it ({e}); write a token to it, e.g. `openssl rand -hex 16 > {}`",
            path.display()
        ))
    })?;
    let metadata = file
        .metadata()
        .map_err(|e| unusable(format!("cannot inspect it ({e})")))?;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unusable(format!(
            "has mode {mode:04o}, so other users can read the token; run `chmod 600 {}`",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .map_err(|e| unusable(format!("cannot read it as text ({e})")))?;
    let token = text.trim();
    if let Some(why) = weakness(token) {
        return Err(unusable(format!(
            "{why}; write a random one, e.g. `openssl rand -hex 16 > {}` (32 hex digits, 128 bits)",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_rules() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        assert_eq!(read_token(&path).map_err(|r| r.status), Err(503));
        std::fs::write(&path, format!("{GOOD}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let loose = read_token(&path).map_err(|r| r.message);
        assert!(
            matches!(&loose, Err(m) if m.contains("chmod 600")),
            "{loose:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(
            read_token(&path).map_err(|r| r.message),
            Ok(GOOD.to_owned())
        );
        // 20 hex digits (80 bits) was accepted before; 31 is one digit short of 128 bits.
        for weak in [
            "0123456789abcdef0123",
            &GOOD[..31],
            "00000000000000000000000000000000aaaa",
        ] {
            std::fs::write(&path, format!("{weak}\n"))?;
            let refused = read_token(&path).map_err(|r| (r.status, r.message));
            assert!(
                matches!(&refused, Err((503, m)) if m.contains("openssl rand -hex 16")),
                "{weak}: {refused:?}"
            );
        }
        Ok(())
    }

    const GOOD: &str = "3f9c0a7be21d4c58961fe0b3a4d7c2e8";

    #[test]
    fn token_entropy_is_estimated_from_length_and_alphabet() {
        assert_eq!(token_bits(GOOD), 128);
        assert_eq!(token_bits("0123456789abcdef0123"), 80);
        // `openssl rand -base64 16` (its `==` padding counted too: the estimate is an upper bound).
        assert_eq!(token_bits("q2Zk0V8pX4mJb7Tn1cLw9A=="), 144);
        // Outside the base64 alphabet: 6.5 bits a character, so 19 are not enough.
        assert_eq!(token_bits("pass word with 19 c"), 123);
        assert_eq!(weakness(GOOD), None);
        assert!(weakness("abababababababababababababababababab").is_some());
    }

    #[test]
    fn tokens_compare_by_content_only() {
        assert!(same_token(GOOD, GOOD));
        assert!(!same_token(GOOD, &GOOD[..31]));
        assert!(!same_token(GOOD, &format!("{GOOD}0")));
        assert!(!same_token(GOOD, ""));
    }

    #[test]
    fn hashes_are_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
