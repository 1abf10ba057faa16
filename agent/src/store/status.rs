//! What the store adds to the config file and the status model: the effective config, and the snapshot.

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

impl Store {
    /// The config file plus the stored assignment, if it still fits the file (the file may have changed since):
    /// what `run`, `sync` and `status` work with.
    pub fn effective_config(&self, config: &Config) -> Config {
        match self.assignment() {
            Ok(Some(a)) => match config.with_assignment(&a) {
                Ok(merged) => merged,
                Err(e) => {
                    tracing::error!("the stored assignment no longer fits the config file, running without it: {e}");
                    config.clone()
                }
            },
            Ok(None) => config.clone(),
            Err(e) => {
                tracing::error!("cannot read the stored assignment, running without it: {e}");
                config.clone()
            }
        }
    }
}
