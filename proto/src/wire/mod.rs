//! The JSON bodies agents and the hub exchange: [`Heartbeat`] (`outpost.heartbeat/v1`, agent to hub) and
//! [`Assignment`] (`outpost.assignment/v1`, hub to agent), with the checks each side runs before trusting one.
//!
//! Each body has a hand-written JSON Schema (draft 2020-12) under `proto/schema/`, embedded here as
//! [`HEARTBEAT_JSON_SCHEMA`] and [`ASSIGNMENT_JSON_SCHEMA`] so the hub can serve them and tools in other
//! languages can check what they send. The tests hold the schemas and this parser to the same verdicts.
//!
//! Invariants:
//! - [`parse_heartbeat`] and [`parse_assignment`] look at the length before they parse, so a peer cannot make
//!   us build a large document; then serde, then [`Heartbeat::validate`] / [`Assignment::validate`];
//! - unknown fields are refused at every level, so a hub cannot slip a secret value (`token = "..."`) into an
//!   assignment: credentials travel only as names of files local to the agent;
//! - optional fields are left out when empty and never written as `null`; a `null` is refused, so "present"
//!   means the same to the schema's `required` as to this parser.
//!
//! What only this parser checks, because JSON Schema cannot say it: the body size, unique source names, no
//! repeated key in an object, and integers written without a fraction (`7`, not `7.0`).

mod assignment;
mod heartbeat;
mod ping;
mod refusal;
mod time;

pub use assignment::{Assignment, AuthFiles, DecryptionFiles, GitRefSpec, SourceSpec};
pub use heartbeat::{
    bounded_error, AssignmentError, Heartbeat, RefusalKind, SourceState, SourceStatus,
};
pub use ping::{Ping, MAX_PING_BYTES};
pub use refusal::HeartbeatRefusal;
pub use time::{format_timestamp, parse_timestamp};

/// The largest heartbeat or assignment body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most sources one heartbeat or assignment may list.
pub const MAX_SOURCES: usize = 10_000;
/// The longest `last_error`, in characters; [`bounded_error`] shortens longer ones.
pub const MAX_ERROR_CHARS: usize = 4096;

/// The JSON Schema of `outpost.heartbeat/v1`.
pub const HEARTBEAT_JSON_SCHEMA: &str = include_str!("../../schema/heartbeat.v1.json");
/// The JSON Schema of `outpost.assignment/v1`.
pub const ASSIGNMENT_JSON_SCHEMA: &str = include_str!("../../schema/assignment.v1.json");

/// Why a heartbeat or assignment body is refused. `field` is a path into the document, like
/// `sources[2].fetched_revision`, so the sender can find the value; values are quoted shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{body} body is {len} bytes, over the {max}-byte limit; send fewer sources or shorter errors")]
    TooLarge {
        body: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{body} body is not valid JSON for its schema: {message}")]
    Json { body: &'static str, message: String },
    #[error("{body} body has a field this version does not know: {message}; an assignment names credential files (auth.token_file, ...), never credential values")]
    UnknownField { body: &'static str, message: String },
    #[error("{body} body: schema is {found:?}, expected {expected:?}")]
    Schema {
        body: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("{body} body lists {count} sources, over the limit of {max}")]
    TooManySources {
        body: &'static str,
        count: usize,
        max: usize,
    },
    #[error("heartbeat seq is 0; sequence numbers start at 1 and increase with every heartbeat")]
    ZeroSeq,
    #[error("assignment generation is 0; generations start at 1 (0 means \"no assignment\" in heartbeats)")]
    ZeroGeneration,
    #[error(
        "{field} = {value:?} is not a revision: expected a full commit id, 40 lowercase hex digits"
    )]
    Revision { field: String, value: String },
    #[error("{field} = {value:?} is not a digest: expected `sha256:` and 64 lowercase hex digits")]
    Digest { field: String, value: String },
    #[error("{field} = {value:?} is not a UTC time to the second like 2026-01-31T23:59:07Z")]
    Timestamp { field: String, value: String },
    #[error("{field} = {value:?} is not a source name: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit")]
    SourceName { field: String, value: String },
    #[error("source name {name:?} appears twice; each source needs a unique name")]
    DuplicateSource { name: String },
    #[error("source {source_name:?} sets {found}; set exactly one of branch, tag, semver, commit")]
    RefKinds { source_name: String, found: String },
    #[error("{field} = {value:?} is not valid: expected {expected}")]
    Field {
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("{field} carries a password in the URL; credentials go in files on the agent, named in auth")]
    UrlPassword { field: String },
    #[error("source {source_name:?} auth: {problem}")]
    Auth {
        source_name: String,
        problem: &'static str,
    },
}

/// Parses and validates a heartbeat body.
pub fn parse_heartbeat(body: &[u8]) -> Result<Heartbeat, WireError> {
    let heartbeat: Heartbeat = parse_json("heartbeat", body)?;
    heartbeat.validate()?;
    Ok(heartbeat)
}

/// Parses and validates an assignment body.
pub fn parse_assignment(body: &[u8]) -> Result<Assignment, WireError> {
    let assignment: Assignment = parse_json("assignment", body)?;
    assignment.validate()?;
    Ok(assignment)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    body_kind: &'static str,
    body: &[u8],
) -> Result<T, WireError> {
    check_size(body_kind, body.len())?;
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        if message.starts_with("unknown field") {
            WireError::UnknownField {
                body: body_kind,
                message,
            }
        } else {
            WireError::Json {
                body: body_kind,
                message,
            }
        }
    })
}

fn check_size(body: &'static str, len: usize) -> Result<(), WireError> {
    if len > MAX_BODY_BYTES {
        return Err(WireError::TooLarge {
            body,
            len,
            max: MAX_BODY_BYTES,
        });
    }
    Ok(())
}

/// Serialises a validated body, refusing one the other side would refuse for its size.
fn to_body<T: serde::Serialize>(body_kind: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    let bytes = serde_json::to_vec(value).map_err(|e| WireError::Json {
        body: body_kind,
        message: e.to_string(),
    })?;
    check_size(body_kind, bytes.len())?;
    Ok(bytes)
}

/// For optional fields: absent is `None`, a value is `Some`, and `null` is an error (see the module invariants).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

fn check_schema(body: &'static str, expected: &'static str, found: &str) -> Result<(), WireError> {
    if found != expected {
        return Err(WireError::Schema {
            body,
            expected,
            found: shorten(found),
        });
    }
    Ok(())
}

fn check_source_count(body: &'static str, count: usize) -> Result<(), WireError> {
    if count > MAX_SOURCES {
        return Err(WireError::TooManySources {
            body,
            count,
            max: MAX_SOURCES,
        });
    }
    Ok(())
}

/// Source names become file names and label values, hence the DNS label rule (RFC 1123).
fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63 && *first != b'-' && *last != b'-' && bytes.iter().all(inner_ok)
        }
        _ => false,
    }
}

fn check_source_name(field: String, name: &str) -> Result<(), WireError> {
    if !is_dns_label(name) {
        return Err(WireError::SourceName {
            field,
            value: shorten(name),
        });
    }
    Ok(())
}

/// Each name once; the two bodies key everything by source name.
fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), WireError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(WireError::DuplicateSource {
                name: shorten(name),
            });
        }
    }
    Ok(())
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A full Git commit id in its canonical (lowercase) form, so the hub can compare revisions as strings.
fn is_revision(text: &str) -> bool {
    is_lower_hex(text, 40)
}

fn check_revision(field: String, value: Option<&str>) -> Result<(), WireError> {
    match value {
        Some(value) if !is_revision(value) => Err(WireError::Revision {
            field,
            value: shorten(value),
        }),
        _ => Ok(()),
    }
}

/// Text of `min..=max` characters (Unicode scalar values, as JSON Schema counts them) without control characters.
fn is_line(text: &str, min: usize, max: usize) -> bool {
    let mut count = 0;
    for c in text.chars() {
        if c < '\u{20}' || c == '\u{7f}' {
            return false;
        }
        count += 1;
    }
    (min..=max).contains(&count)
}

fn field_error(field: String, value: &str, expected: &'static str) -> WireError {
    WireError::Field {
        field,
        value: shorten(value),
        expected,
    }
}

/// Values echoed in errors are cut short: a 4 KiB error text helps nobody in a log line.
fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "0", "platform", "a-b", "a1-2b", &"x".repeat(63)] {
            assert!(is_dns_label(good), "{good:?}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn lines_count_characters_and_refuse_controls() {
        assert!(is_line("é", 1, 1));
        assert!(!is_line("", 1, 5));
        assert!(!is_line("a\nb", 0, 5));
        assert!(!is_line("a\u{7f}", 0, 5));
        assert!(is_line("tab\u{a0}ok", 0, 10));
    }

    #[test]
    fn shortens_long_values_on_a_character_boundary() {
        assert_eq!(shorten("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(shorten(&long), format!("{}...", "é".repeat(80)));
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            parse_heartbeat(&body),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_assignment(&body),
            Err(WireError::TooLarge { .. })
        ));
    }
}
