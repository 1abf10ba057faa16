//! The store's records as the status model's snapshot.

use super::{Store, StoreError};
use crate::config::Config;
use crate::report::Snapshot;

impl Store {
    /// The snapshot of what the store holds for `config`'s sources: what `outpost status` shows when no daemon
    /// runs, and where a daemon's board starts.
    pub fn snapshot(&self, config: &Config) -> Result<Snapshot, StoreError> {
        let outbox = match config.upstream {
            Some(_) => Some((self.outbox_len() as u64, self.outbox_dropped_total()?)),
            None => None,
        };
        Snapshot::new(config, |name| self.record(name).map(|r| r.status), outbox)
    }
}
