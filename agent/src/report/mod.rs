//! Status: the one model of what each source is doing ([`State`], [`SourceStatus`]), and the views derived from
//! it: the daemon's live snapshot (`state_dir/status.json`, [`Board`]) and the table of `outpost status`.
//!
//! It sits low in the layers because everything above records into it: the store persists a `SourceStatus` in
//! each source's record, reconcile sets it, and heartbeats, `status.json` and the table only read it.

pub mod liveness;
mod snapshot;
mod state;
mod table;

pub use snapshot::{read_snapshot, Board, Snapshot, SourceView, SNAPSHOT_FILE};
pub use state::{SourceStatus, State};
pub use table::render_table;

/// Unix seconds now: every timestamp in statuses, records and heartbeats.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
