//! The one status model: what a source is doing ([`State`]) and what it runs ([`SourceStatus`]).
//!
//! The store keeps a `SourceStatus` inside each source's record, `status.json` and `outpost status` show it, and
//! heartbeats carry it ([`SourceStatus::to_wire`]); nothing copies it field by field or spells a state as a
//! string.

use serde::{Deserialize, Serialize};

use outpost_proto::wire;

/// Where a source stands. Stored and shown by these names (`"Ready"`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Configured, never polled yet. Records written before this type existed held `""` for it.
    #[default]
    #[serde(alias = "")]
    Pending,
    /// A new revision is being fetched, applied or waited for.
    Progressing,
    /// The wanted revision is applied and healthy.
    Ready,
    /// The last attempt failed; the last good revision stays applied.
    Failed,
    /// The Git host (or the cluster) cannot be reached: the last good revision keeps running.
    Stale,
    /// Not applying: another replica holds the leader lease.
    Suspended,
    /// A new revision is fetched and built but waits for a maintenance window or for the sources it depends on;
    /// the last good revision keeps running.
    Waiting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Progressing => "Progressing",
            State::Ready => "Ready",
            State::Failed => "Failed",
            State::Stale => "Stale",
            State::Suspended => "Suspended",
            State::Waiting => "Waiting",
        }
    }

    /// The heartbeat's form. The wire has no `Pending` or `Waiting`: a source not polled yet, or holding a new
    /// revision back, is on its way, `Progressing` (its `last_error` says what it waits for).
    pub fn to_wire(self) -> wire::SourceState {
        match self {
            State::Pending | State::Progressing | State::Waiting => wire::SourceState::Progressing,
            State::Ready => wire::SourceState::Ready,
            State::Failed => wire::SourceState::Failed,
            State::Stale => wire::SourceState::Stale,
            State::Suspended => wire::SourceState::Suspended,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one source runs and why. Revisions are full commit ids. Fields added later default when an older record
/// or snapshot is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceStatus {
    pub state: State,
    /// The newest commit fetched into the Git cache (it may have failed to build or apply).
    pub fetched: Option<String>,
    /// The revision currently in the target.
    pub applied: Option<String>,
    /// The newest revision that was fetched, built and applied successfully.
    pub last_good: Option<String>,
    pub last_error: Option<String>,
    /// Unix seconds of the last time the Git host answered.
    pub last_seen: Option<u64>,
    pub object_count: usize,
    /// sha-256 over the sorted identities and content digests of the objects in the target.
    pub inventory_digest: Option<String>,
    /// Objects re-applied because they had drifted from the last good revision, in all.
    pub drift_corrected: u64,
    /// From the last apply that changed something: fields taken from other managers, recreated objects.
    pub notes: Vec<String>,
}

impl SourceStatus {
    /// The heartbeat's per-source entry for the source called `name`.
    pub fn to_wire(&self, name: &str) -> wire::SourceStatus {
        let mut status = wire::SourceStatus::new(name.to_string(), self.state.to_wire());
        status.fetched_revision = self.fetched.clone();
        status.applied_revision = self.applied.clone();
        status.last_good_revision = self.last_good.clone();
        status.last_error = self.last_error.as_deref().map(wire::bounded_error);
        status.object_count = self.object_count as u64;
        status.inventory_digest = self.inventory_digest.clone();
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_what_older_records_wrote() {
        let read = |text: &str| serde_json::from_str::<State>(text).unwrap();
        assert_eq!(read("\"\""), State::Pending);
        assert_eq!(read("\"Ready\""), State::Ready);
        assert_eq!(read("\"Stale\""), State::Stale);
        assert_eq!(serde_json::to_string(&State::Failed).unwrap(), "\"Failed\"");
        let old: SourceStatus = serde_json::from_str(r#"{"state":"","applied":null}"#).unwrap();
        assert_eq!(old.state, State::Pending);
    }

    #[test]
    fn heartbeats_carry_the_status() {
        let status = SourceStatus {
            state: State::Stale,
            applied: Some("a".repeat(40)),
            last_error: Some("x".repeat(10_000)),
            object_count: 7,
            ..Default::default()
        };
        let wire = status.to_wire("platform");
        assert_eq!(wire.name, "platform");
        assert_eq!(wire.state, wire::SourceState::Stale);
        assert_eq!(wire.applied_revision, status.applied);
        assert_eq!(wire.object_count, 7);
        assert!(wire.last_error.unwrap().chars().count() <= wire::MAX_ERROR_CHARS);
        assert_eq!(
            State::Pending.to_wire(),
            wire::SourceState::Progressing,
            "the wire has no Pending"
        );
    }
}
