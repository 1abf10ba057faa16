//! RFC 9530 `Content-Digest`: a sha-256 digest of the message body, so the RFC 9421 signature (which covers
//! the header, not the body) protects the body too.
//!
//! We always send `sha-256`. On receipt the header may list other algorithms beside it (another client may send
//! several); we ignore those and require a `sha-256` member that matches, because an algorithm we do not check
//! protects nothing.

use crate::sfv::{self, BareItem, Item, ListEntry, ParseError};

/// The header name, lowercased as RFC 9421 component identifiers need it.
pub const CONTENT_DIGEST: &str = "content-digest";
/// The algorithm key we create and require (RFC 9530 §5, "Hash Algorithms for HTTP Digest Fields").
pub const SHA_256: &str = "sha-256";

/// Why a `Content-Digest` does not vouch for the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("Content-Digest is not a valid structured-field dictionary ({0}); send `sha-256=:<base64 of the SHA-256 of the body>:`")]
    Malformed(#[from] ParseError),
    #[error("Content-Digest has no sha-256 member (found: {found}); outpost requires sha-256")]
    NoSha256 { found: String },
    #[error(
        "Content-Digest sha-256 is not a byte sequence of 32 bytes; send `sha-256=:<base64>:`"
    )]
    NotSha256Bytes,
    #[error("body does not match Content-Digest: the header says sha-256 {claimed}, the body hashes to {actual}; the body was changed or truncated in transit")]
    Mismatch { claimed: String, actual: String },
}

/// The `Content-Digest` value for `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("{SHA_256}={}", encode(&sha256(body)))
}

/// Checks a received `Content-Digest` value (several field lines joined with `", "`) against `body`.
pub fn verify_content_digest(header: &str, body: &[u8]) -> Result<(), DigestError> {
    let dictionary = sfv::parse_dictionary(header)?;
    let claimed = match dictionary.get(SHA_256) {
        Some(ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(bytes),
            ..
        })) if bytes.len() == 32 => bytes,
        Some(_) => return Err(DigestError::NotSha256Bytes),
        None => {
            let keys: Vec<&str> = dictionary.keys().map(|k| k.as_str()).collect();
            let found = if keys.is_empty() {
                "nothing".to_owned()
            } else {
                keys.join(", ")
            };
            return Err(DigestError::NoSha256 { found });
        }
    };
    let actual = sha256(body);
    // Digests are public values, so a plain comparison leaks nothing worth protecting.
    if *claimed != actual {
        return Err(DigestError::Mismatch {
            claimed: encode(claimed),
            actual: encode(&actual),
        });
    }
    Ok(())
}

fn sha256(body: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, body)
        .as_ref()
        .to_vec()
}

fn encode(bytes: &[u8]) -> String {
    use crate::b64::Engine as _;
    format!(":{}:", crate::b64::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 18-byte body of RFC 9421's test messages (Appendix B.2), whose SHA-256 the RFC 9421 drafts carried
    /// as `Digest: SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=`; checked again with `sha256sum`.
    const BODY: &[u8] = b"{\"hello\": \"world\"}";
    const DIGEST: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";

    #[test]
    fn creates_the_known_digest() {
        assert_eq!(content_digest(BODY), DIGEST);
    }

    #[test]
    fn verifies_alone_and_beside_other_algorithms() -> Result<(), DigestError> {
        verify_content_digest(DIGEST, BODY)?;
        let sha512 = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
        verify_content_digest(&format!("{sha512}, {DIGEST}"), BODY)?;
        verify_content_digest(&format!("{DIGEST},unixsum=:AAAA:"), BODY)?;
        Ok(())
    }

    #[test]
    fn rejects_a_changed_body() {
        let result = verify_content_digest(DIGEST, b"{\"hello\": \"World\"}");
        assert!(
            matches!(result, Err(DigestError::Mismatch { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn rejects_missing_or_malformed_sha256() {
        let only_sha512 = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
        assert!(matches!(
            verify_content_digest(only_sha512, BODY),
            Err(DigestError::NoSha256 { .. })
        ));
        assert!(matches!(
            verify_content_digest("", BODY),
            Err(DigestError::NoSha256 { .. })
        ));
        assert!(matches!(
            verify_content_digest("sha-256=:AAAA:", BODY),
            Err(DigestError::NotSha256Bytes)
        ));
        assert!(matches!(
            verify_content_digest("sha-256=\"abc\"", BODY),
            Err(DigestError::NotSha256Bytes)
        ));
        assert!(matches!(
            verify_content_digest("SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=", BODY),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            verify_content_digest("sha-256=:X48E9qOok", BODY),
            Err(DigestError::Malformed(_))
        ));
    }
}
