//! The hub's assignment as the store keeps it: the last accepted one (run beside the config file's sources) and
//! the standing refusal of a newer one.

use super::{encode, Store, StoreError};
use crate::config::Config;
use outpost_proto::wire::{Assignment, AssignmentError};

const ASSIGNMENT_KEY: &[u8] = b"asg/current";
const ASSIGNMENT_ERROR_KEY: &[u8] = b"asg/error";

impl Store {
    /// The hub's last accepted assignment, which the daemon runs beside the config file's sources.
    pub fn assignment(&self) -> Result<Option<Assignment>, StoreError> {
        match self.tree.get(ASSIGNMENT_KEY).map_err(|e| self.io(e))? {
            Some(v) => Ok(Some(self.decode("asg/current", &v)?)),
            None => Ok(None),
        }
    }

    pub fn set_assignment(&self, assignment: &Assignment) -> Result<(), StoreError> {
        self.tree
            .insert(ASSIGNMENT_KEY, encode(assignment))
            .map_err(|e| self.io(e))?;
        self.flush()
    }

    /// The standing refusal of an assignment, reported in every heartbeat until it is cleared. Kept in the
    /// store so a restart does not make the hub see the refusal vanish and come back.
    pub fn assignment_error(&self) -> Result<Option<AssignmentError>, StoreError> {
        match self
            .tree
            .get(ASSIGNMENT_ERROR_KEY)
            .map_err(|e| self.io(e))?
        {
            Some(v) => Ok(Some(self.decode("asg/error", &v)?)),
            None => Ok(None),
        }
    }

    /// Records (`Some`) or clears (`None`) the standing refusal. Returns whether it changed; an unchanged
    /// one is not written again (the hub repeats a refused assignment in every reply).
    pub fn set_assignment_error(
        &self,
        error: Option<&AssignmentError>,
    ) -> Result<bool, StoreError> {
        if self.assignment_error()?.as_ref() == error {
            return Ok(false);
        }
        match error {
            Some(error) => self.tree.insert(ASSIGNMENT_ERROR_KEY, encode(error)),
            None => self.tree.remove(ASSIGNMENT_ERROR_KEY),
        }
        .map_err(|e| self.io(e))?;
        self.flush()?;
        Ok(true)
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
