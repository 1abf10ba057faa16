//! The bodies of the cargo-fuzz targets in `fuzz/` that reach this crate: signature fields and the two wire
//! bodies.
//!
//! They live here, not in the fuzz crate, so that the stable corpus replay test (`tests/tests/fuzz_corpus.rs`)
//! runs exactly the code the fuzzer ran without nightly: a target is one line calling one of these functions.
//! Each takes arbitrary bytes, must never panic, and panics (with the property named) when a result breaks an
//! invariant the agent or the hub relies on. Each returns whether the input was accepted, so the replay test can
//! check that a corpus still reaches the success path and not only the first error.
//!
//! Not part of the crate's API: nothing outside `fuzz/` and the tests calls it.

use std::sync::OnceLock;

use crate::b64::{self, Engine as _};
use crate::digest::content_digest;
use crate::keys::{Pkcs8Document, PublicKey, SigningKey};
use crate::sfv::{self, ListEntry};
use crate::signature::{signature_base, Message, REQUEST_COMPONENTS};
use crate::signed::{verify_request, Freshness, ReceivedRequest, LABEL};
use crate::wire;

/// The verifier's clock in [`signature`]; seeds sign with `created` near it.
pub const NOW: i64 = 1_700_000_000;
/// The heartbeat request every [`signature`] input is checked on, but for its signature fields.
pub const METHOD: &str = "POST";
pub const AUTHORITY: &str = "hub.example.com";
pub const PATH: &str = "/v1/heartbeats";
pub const BODY: &[u8] = br#"{"schema":"outpost.heartbeat/v1"}"#;
pub const CONTENT_TYPE: &str = "application/json";

/// RFC 9421 Appendix B.1.4 `test-key-ed25519`: a published test key, so seeds can be made with any tool.
const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";

/// The key [`signature`] verifies with.
pub fn test_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        Pkcs8Document::from_pem_or_der(TEST_KEY_PEM.as_bytes())
            .and_then(|doc| doc.signing_key())
            .expect("the RFC 9421 test key loads")
    })
}

/// `Signature-Input` and `Signature` as a hub receives them, verified against a fixed key.
///
/// The input's first line is the `Signature-Input` value, the second the `Signature` value; further lines are
/// `name: value` header lines added to the request. The request is checked twice: once as sent, and once with
/// the `outpost` signature replaced by a real one over the base the `Signature-Input` describes, so that the
/// checks after the signature (the clock, `expires`) are reached too, which a fuzzer could never do by guessing
/// 64 bytes.
pub fn signature(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let input = lines.next().unwrap_or_default();
    let sent_signature = lines.next().unwrap_or_default();
    let extra: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(": ")).collect();

    for field in [input, sent_signature] {
        check_sfv_round_trip(field);
    }
    let key = test_key();
    let public = key.public_key();
    let as_sent = check_verify(input, sent_signature, &extra, &public);

    let resigned = match sfv::parse_dictionary(input)
        .ok()
        .and_then(|mut d| d.swap_remove(LABEL))
    {
        Some(ListEntry::InnerList(list)) => signature_base(&request(&extra, input, ""), &list).ok(),
        _ => None,
    };
    let Some(base) = resigned else {
        return as_sent;
    };
    let signature = format!(
        "{LABEL}=:{}:",
        b64::STANDARD.encode(key.sign(base.as_bytes()))
    );
    check_verify(input, &signature, &extra, &public) || as_sent
}

/// A structured-field dictionary that parses serialises to a canonical form that parses to the same value:
/// the verifier rebuilds `@signature-params` from the parsed member and relies on this.
fn check_sfv_round_trip(field: &str) {
    let Ok(parsed) = sfv::parse_dictionary(field) else {
        return;
    };
    let canonical = sfv::serialize_dictionary(&parsed);
    let again = sfv::parse_dictionary(&canonical).expect("a canonical dictionary parses");
    assert_eq!(again, parsed, "{field:?} -> {canonical:?} changed");
    assert_eq!(sfv::serialize_dictionary(&again), canonical);
}

fn request<'a>(extra: &[(&'a str, &'a str)], input: &'a str, signature: &'a str) -> Message {
    let mut message = Message::request(METHOD, "", AUTHORITY, PATH, None);
    for (name, value) in received_headers(extra, input, signature) {
        message.add_header(name, value);
    }
    message
}

fn received_headers<'a>(
    extra: &[(&'a str, &'a str)],
    input: &'a str,
    signature: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let digest: &'static str = {
        static DIGEST: OnceLock<String> = OnceLock::new();
        DIGEST.get_or_init(|| content_digest(BODY))
    };
    let mut headers = vec![
        ("Content-Type", CONTENT_TYPE),
        ("Content-Digest", digest),
        ("Signature-Input", input),
        ("Signature", signature),
    ];
    headers.extend_from_slice(extra);
    headers
}

/// Verifies the request; an accepted signature must cover what Outpost requires and be fresh.
fn check_verify(input: &str, signature: &str, extra: &[(&str, &str)], key: &PublicKey) -> bool {
    let headers = received_headers(extra, input, signature);
    let request = ReceivedRequest {
        method: METHOD,
        authority: AUTHORITY,
        path: PATH,
        headers: &headers,
        body: BODY,
    };
    let freshness = Freshness::default();
    match verify_request(&request, key, NOW, freshness) {
        Ok(verified) => {
            for required in REQUEST_COMPONENTS {
                assert!(
                    verified.components.iter().any(|c| c == required),
                    "accepted without covering {required}"
                );
            }
            let created = verified.params.created.expect("accepted without created");
            let age = i128::from(NOW) - i128::from(created);
            assert!(
                age <= i128::from(freshness.max_age),
                "accepted a stale signature"
            );
            assert!(
                -age <= i128::from(freshness.max_skew),
                "accepted a future signature"
            );
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

/// `outpost.heartbeat/v1` body -> [`wire::Heartbeat`], as the hub parses it after the signature verified; an
/// accepted heartbeat must serialise to a body that parses to the same heartbeat (the agent's outbox stores
/// and re-sends bodies).
pub fn heartbeat_json(data: &[u8]) -> bool {
    let Ok(heartbeat) = wire::parse_heartbeat(data) else {
        return false;
    };
    let body = heartbeat
        .to_body()
        .expect("a heartbeat that validated serialises");
    let again = wire::parse_heartbeat(&body).expect("a serialised heartbeat parses again");
    assert_eq!(again, heartbeat, "heartbeat changed in a round trip");
    true
}
