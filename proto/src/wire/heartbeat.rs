//! `outpost.heartbeat/v1`: what an agent tells the hub about itself and each of its sources.
//!
//! The hub trusts a heartbeat only after its signature verifies (see [`crate::signed`]); this module decides
//! whether the body is well formed. `seq` orders an agent's heartbeats across restarts (the agent persists
//! it), `boot_id` tells restarts apart, and `dropped` admits heartbeats the agent's bounded outbox had to
//! discard, so the hub's history is honest about its gaps. `assignment_error` tells the hub that the agent
//! refused what it was assigned and why; without it a refusal would only be visible in the agent's own log,
//! on a site nobody visits. It is optional, so a hub reading this version accepts agents that never send it.

use serde::{Deserialize, Serialize};

use super::{
    check_revision, check_schema, check_source_count, check_source_name, check_unique, field_error,
    is_lower_hex, present, shorten, to_body, WireError, MAX_ERROR_CHARS,
};
use crate::HEARTBEAT_SCHEMA;

const BODY: &str = "heartbeat";
/// Prefix of an inventory digest; the rest is 64 lowercase hex digits of SHA-256.
const DIGEST_PREFIX: &str = "sha256:";

/// One heartbeat, as sent in the body of `POST /v1/heartbeats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Always [`HEARTBEAT_SCHEMA`].
    pub schema: String,
    /// The agent's id: letters, digits, `.`, `_`, `-`; at most 253 characters (a host name fits).
    pub agent_id: String,
    /// Starts at 1 and increases with every heartbeat the agent creates, across restarts.
    pub seq: u64,
    /// Changes at every boot of the agent's host (Linux: `/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// When the agent took this snapshot; see [`super::format_timestamp`].
    pub observed_at: String,
    /// The agent's version, printable ASCII, at most 128 characters.
    pub agent_version: String,
    /// The generation of the assignment the agent runs; 0 when it runs none.
    pub assignment_generation: u64,
    /// Heartbeats removed from the outbox without being delivered (it overflowed, they grew too old, or the
    /// hub refused them with a signed 409) since the last one delivered.
    pub dropped: u64,
    pub sources: Vec<SourceStatus>,
    /// The last assignment the agent refused, while that refusal stands; absent once a later assignment is
    /// accepted or the hub stops offering the refused one.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub assignment_error: Option<AssignmentError>,
}

/// Why the agent refused an assignment. The sources it already ran keep running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentError {
    /// The generation the refused assignment claims; 0 when the agent could not read one from it.
    pub generation: u64,
    pub kind: RefusalKind,
    /// The agent's message, for the operator: what is wrong and what to change. At most [`MAX_ERROR_CHARS`].
    pub reason: String,
}

/// The class of a refusal, a closed set so a hub can count and alert on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// An assigned source has the name of a source in the agent's config file; the file's source wins.
    NameClash,
    /// The assignment, or one of its sources, breaks the agent's rules for a source (e.g. an interval of 0s).
    InvalidSource,
    /// The generation is older than the one the agent runs.
    NotNewer,
    /// The reply carrying it does not verify against the agent's `hub_key`.
    BadSignature,
}

impl RefusalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::NameClash => "name_clash",
            RefusalKind::InvalidSource => "invalid_source",
            RefusalKind::NotNewer => "not_newer",
            RefusalKind::BadSignature => "bad_signature",
        }
    }
}

impl std::fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one source, in the operator's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceState {
    /// The wanted revision is applied and healthy.
    Ready,
    /// A new revision is being fetched, applied or waited for.
    Progressing,
    /// The last attempt failed; `last_error` says why, and the last good revision stays applied.
    Failed,
    /// The remote cannot be reached; the site keeps running its last good revision from the local store.
    Stale,
    /// The operator paused the source.
    Suspended,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Ready => "Ready",
            SourceState::Progressing => "Progressing",
            SourceState::Failed => "Failed",
            SourceState::Stale => "Stale",
            SourceState::Suspended => "Suspended",
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one source looks like on the agent. Revisions are absent until the agent has one of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceStatus {
    pub name: String,
    pub state: SourceState,
    /// The newest commit fetched from the remote.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub fetched_revision: Option<String>,
    /// The commit whose bundle the target currently holds.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub applied_revision: Option<String>,
    /// The newest commit that was applied and found healthy.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_good_revision: Option<String>,
    /// At most [`MAX_ERROR_CHARS`] characters; pass agent errors through [`bounded_error`].
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_error: Option<String>,
    /// Objects in the applied bundle.
    pub object_count: u64,
    /// `sha256:<64 hex>` over the sorted identities and content digests of the applied objects.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub inventory_digest: Option<String>,
}

impl SourceStatus {
    /// A source with nothing fetched or applied yet.
    pub fn new(name: impl Into<String>, state: SourceState) -> Self {
        SourceStatus {
            name: name.into(),
            state,
            fetched_revision: None,
            applied_revision: None,
            last_good_revision: None,
            last_error: None,
            object_count: 0,
            inventory_digest: None,
        }
    }
}

/// Shortens an error message to [`MAX_ERROR_CHARS`] characters (keeping its start, which names the cause),
/// so a long Git or API error never makes a heartbeat that the hub refuses and the outbox cannot send.
pub fn bounded_error(message: &str) -> String {
    const MARK: &str = " [...]";
    match message.char_indices().nth(MAX_ERROR_CHARS) {
        None => message.to_owned(),
        Some(_) => {
            let keep = MAX_ERROR_CHARS - MARK.len();
            let cut = message
                .char_indices()
                .nth(keep)
                .map_or(message.len(), |(i, _)| i);
            format!("{}{MARK}", &message[..cut])
        }
    }
}

impl Heartbeat {
    /// Checks everything serde's types do not: the schema name, patterns, bounds and unique source names.
    pub fn validate(&self) -> Result<(), WireError> {
        check_schema(BODY, HEARTBEAT_SCHEMA, &self.schema)?;
        check_source_count(BODY, self.sources.len())?;
        if !is_agent_id(&self.agent_id) {
            return Err(field_error(
                "agent_id".into(),
                &self.agent_id,
                "1-253 letters, digits, '.', '_' or '-'",
            ));
        }
        if self.seq == 0 {
            return Err(WireError::ZeroSeq);
        }
        if !is_boot_id(&self.boot_id) {
            return Err(field_error(
                "boot_id".into(),
                &self.boot_id,
                "1-128 letters, digits, '.', '_', ':' or '-'",
            ));
        }
        if super::parse_timestamp(&self.observed_at).is_none() {
            return Err(WireError::Timestamp {
                field: "observed_at".into(),
                value: shorten(&self.observed_at),
            });
        }
        if !(1..=128).contains(&self.agent_version.len())
            || !self
                .agent_version
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b))
        {
            return Err(field_error(
                "agent_version".into(),
                &self.agent_version,
                "1-128 printable ASCII characters",
            ));
        }
        for (index, source) in self.sources.iter().enumerate() {
            source.validate(index)?;
        }
        if let Some(error) = &self.assignment_error {
            if !is_bounded_error(&error.reason) {
                return Err(field_error(
                    "assignment_error.reason".into(),
                    &error.reason,
                    "at most 4096 characters; shorten it with bounded_error",
                ));
            }
        }
        check_unique(self.sources.iter().map(|s| s.name.as_str()))
    }

    /// The JSON body to send, after [`Heartbeat::validate`]: the agent calls this before it queues a heartbeat,
    /// so the outbox never holds one the hub would refuse.
    pub fn to_body(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        to_body(BODY, self)
    }
}

impl SourceStatus {
    fn validate(&self, index: usize) -> Result<(), WireError> {
        let field = |name: &str| format!("sources[{index}].{name}");
        check_source_name(field("name"), &self.name)?;
        check_revision(field("fetched_revision"), self.fetched_revision.as_deref())?;
        check_revision(field("applied_revision"), self.applied_revision.as_deref())?;
        check_revision(
            field("last_good_revision"),
            self.last_good_revision.as_deref(),
        )?;
        if let Some(error) = &self.last_error {
            if !is_bounded_error(error) {
                return Err(field_error(
                    field("last_error"),
                    error,
                    "at most 4096 characters; shorten it with bounded_error",
                ));
            }
        }
        if let Some(digest) = &self.inventory_digest {
            let hex = digest.strip_prefix(DIGEST_PREFIX).unwrap_or_default();
            if !is_lower_hex(hex, 64) {
                return Err(WireError::Digest {
                    field: field("inventory_digest"),
                    value: shorten(digest),
                });
            }
        }
        Ok(())
    }
}

/// `last_error` may hold line breaks (Git's messages have them); only its length is bounded.
fn is_bounded_error(text: &str) -> bool {
    text.chars().count() <= MAX_ERROR_CHARS
}

fn is_agent_id(text: &str) -> bool {
    (1..=253).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn is_boot_id(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_error_keeps_short_messages_and_cuts_long_ones() {
        assert_eq!(bounded_error("fetch failed"), "fetch failed");
        let exact = "é".repeat(MAX_ERROR_CHARS);
        assert_eq!(bounded_error(&exact), exact);
        let long = "é".repeat(MAX_ERROR_CHARS + 1);
        let cut = bounded_error(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert!(cut.ends_with(" [...]"));
        assert!(is_bounded_error(&cut));
    }

    #[test]
    fn states_serialise_as_their_names() -> Result<(), serde_json::Error> {
        for state in [
            SourceState::Ready,
            SourceState::Progressing,
            SourceState::Failed,
            SourceState::Stale,
            SourceState::Suspended,
        ] {
            assert_eq!(
                serde_json::to_string(&state)?,
                format!("\"{}\"", state.as_str())
            );
        }
        Ok(())
    }
}
