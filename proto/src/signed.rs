//! Whole signed messages as Outpost sends them: the agent's heartbeat request and the hub's assignment reply.
//!
//! [`crate::digest`] and [`crate::signature`] are the mechanisms; this module is the policy both sides must
//! share, in one place, so they cannot drift apart:
//! - every body gets a `Content-Digest` (sha-256), and the signature covers that header, so it covers the body;
//! - requests cover `@method`, `@authority`, `@path`, `content-digest`, `content-type`; responses cover
//!   `@status`, `content-digest`, `content-type` (DESIGN.md § Heartbeat);
//! - the label is [`LABEL`], `alg="ed25519"`, `keyid` is the key's `SHA256:` fingerprint, `created` is now;
//! - a verifier checks the digest against the body first (cheap, and no crypto is spent on a body that does
//!   not match its own header), then the signature with [`Freshness`] bounding `created`.
//!
//! Sign when sending, not when queueing: a heartbeat that waited in the outbox through an outage is signed
//! again with a fresh `created`, or the hub would refuse it as too old.

use crate::digest::{content_digest, verify_content_digest, DigestError, CONTENT_DIGEST};
use crate::keys::{PublicKey, SigningKey};
use crate::signature::{
    sign, verify, Message, SignatureError, SignatureParams, Verified, VerifyPolicy,
    REQUEST_COMPONENTS, RESPONSE_COMPONENTS,
};

/// The signature label Outpost signs under and verifies. Other labels in the same fields are ignored.
pub const LABEL: &str = "outpost";
/// The header names the signing functions return, in the case HTTP/1.1 peers usually print them.
pub const CONTENT_DIGEST_HEADER: &str = "Content-Digest";
pub const SIGNATURE_INPUT_HEADER: &str = "Signature-Input";
pub const SIGNATURE_HEADER: &str = "Signature";
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";

/// Headers to add to a message: `(name, value)`.
pub type Headers = Vec<(&'static str, String)>;

/// How far a signature's `created` may be from the verifier's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Seconds `created` may lie in the past (replays older than this are refused).
    pub max_age: u64,
    /// Seconds `created` may lie in the future (the signer's clock runs ahead).
    pub max_skew: u64,
}

impl Default for Freshness {
    /// ±5 minutes, the hub's window (issue 4): wide enough for hosts without tight NTP, narrow enough that a
    /// captured request stops working soon.
    fn default() -> Self {
        Freshness {
            max_age: 300,
            max_skew: 300,
        }
    }
}

/// Why a received message is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedMessageError {
    #[error("the message has no Content-Digest header; the signer must send `Content-Digest: sha-256=:<base64>:`")]
    MissingContentDigest,
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// A request as the receiver saw it.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedRequest<'a> {
    pub method: &'a str,
    /// The `Host` header (HTTP/1.1) or `:authority` (HTTP/2), as received.
    pub authority: &'a str,
    /// The request target's path, with or without `?query` (the query is not covered).
    pub path: &'a str,
    /// Every header line as received, in order; repeated names are combined as RFC 9421 asks.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// A response as the receiver saw it.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedResponse<'a> {
    pub status: u16,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Signs a request; returns `Content-Digest`, `Signature-Input` and `Signature` to add to it (the caller
/// sends `Content-Type: content_type` itself).
///
/// `authority` must be what the HTTP client sends as `Host`: the host, and the port only when it is not the
/// scheme's default (HTTP clients leave the default port out). `path` may carry a `?query`; only the path
/// before it is covered. `now` is Unix seconds.
pub fn sign_request(
    method: &str,
    authority: &str,
    path: &str,
    body: &[u8],
    content_type: &str,
    key: &SigningKey,
    now: i64,
) -> Result<Headers, SignatureError> {
    let digest = content_digest(body);
    let message = request_message(method, authority, path)
        .with_header(CONTENT_DIGEST, &digest)
        .with_header(CONTENT_TYPE_HEADER, content_type);
    signed_headers(&message, REQUEST_COMPONENTS, digest, key, now)
}

/// Verifies a request signed by [`sign_request`] (or any RFC 9421 signer following the same policy) with the
/// only key accepted for its sender.
pub fn verify_request(
    request: &ReceivedRequest<'_>,
    key: &PublicKey,
    now: i64,
    freshness: Freshness,
) -> Result<Verified, SignedMessageError> {
    let mut message = request_message(request.method, request.authority, request.path);
    for (name, value) in request.headers {
        message.add_header(name, value);
    }
    verify_message(
        &message,
        request.body,
        REQUEST_COMPONENTS,
        key,
        now,
        freshness,
    )
}

/// Signs a response, as the hub signs its assignment reply; returns the headers to add.
pub fn sign_response(
    status: u16,
    body: &[u8],
    content_type: &str,
    key: &SigningKey,
    now: i64,
) -> Result<Headers, SignatureError> {
    let digest = content_digest(body);
    let message = Message::response(status)
        .with_header(CONTENT_DIGEST, &digest)
        .with_header(CONTENT_TYPE_HEADER, content_type);
    signed_headers(&message, RESPONSE_COMPONENTS, digest, key, now)
}

/// Verifies a response signed by [`sign_response`] with the hub's key (`hub_key` in the agent's config).
pub fn verify_response(
    response: &ReceivedResponse<'_>,
    key: &PublicKey,
    now: i64,
    freshness: Freshness,
) -> Result<Verified, SignedMessageError> {
    let mut message = Message::response(response.status);
    for (name, value) in response.headers {
        message.add_header(name, value);
    }
    verify_message(
        &message,
        response.body,
        RESPONSE_COMPONENTS,
        key,
        now,
        freshness,
    )
}

/// The scheme only decides which default port `@authority` drops; we take the authority as the client sent
/// it, so none is given and nothing is dropped on either side.
fn request_message(method: &str, authority: &str, path: &str) -> Message {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    Message::request(method, "", authority, path, query)
}

fn signed_headers(
    message: &Message,
    components: &[&str],
    digest: String,
    key: &SigningKey,
    now: i64,
) -> Result<Headers, SignatureError> {
    let params = SignatureParams::outpost(now, &key.public_key());
    let fields = sign(message, LABEL, components, &params, key)?;
    Ok(vec![
        (CONTENT_DIGEST_HEADER, digest),
        (SIGNATURE_INPUT_HEADER, fields.signature_input),
        (SIGNATURE_HEADER, fields.signature),
    ])
}

fn verify_message(
    message: &Message,
    body: &[u8],
    components: &[&str],
    key: &PublicKey,
    now: i64,
    freshness: Freshness,
) -> Result<Verified, SignedMessageError> {
    let digest = message
        .header(CONTENT_DIGEST)
        .ok_or(SignedMessageError::MissingContentDigest)?;
    verify_content_digest(&digest, body)?;
    let fingerprint = key.fingerprint();
    let policy = VerifyPolicy {
        label: LABEL,
        key,
        keyid: Some(&fingerprint),
        required_components: components,
        now,
        max_age: freshness.max_age,
        max_skew: freshness.max_skew,
    };
    Ok(verify(message, &policy)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{SIGNATURE, SIGNATURE_INPUT};

    #[test]
    fn header_names_match_the_signature_module() {
        assert!(SIGNATURE_INPUT_HEADER.eq_ignore_ascii_case(SIGNATURE_INPUT));
        assert!(SIGNATURE_HEADER.eq_ignore_ascii_case(SIGNATURE));
        assert!(CONTENT_DIGEST_HEADER.eq_ignore_ascii_case(CONTENT_DIGEST));
    }

    #[test]
    fn query_is_split_from_the_path() -> Result<(), SignatureError> {
        let message = request_message("POST", "Hub.Example.com:8443", "/v1/heartbeats?x=1");
        assert_eq!(message.component_value("@path")?, "/v1/heartbeats");
        assert_eq!(message.component_value("@query")?, "?x=1");
        assert_eq!(
            message.component_value("@authority")?,
            "hub.example.com:8443"
        );
        Ok(())
    }
}
