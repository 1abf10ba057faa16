//! Releases and rollouts in the embedded store (issue 19): tree `releases`, `<name>` -> [`Release`] JSON, and
//! tree `rollouts`, `<id>` -> [`Rollout`] JSON (the whole record with every site's state, rewritten at every
//! change). Each write is flushed before it returns, so a restarted hub resumes a rollout where it was.

use crate::rollout::{Release, Rollout};

use super::{decode, encode, Store, StoreError};

impl Store {
    pub fn releases(&self) -> Result<Vec<Release>, StoreError> {
        self.releases
            .iter()
            .map(|entry| {
                let (name, bytes) = entry?;
                decode(&String::from_utf8_lossy(&name), &bytes)
            })
            .collect()
    }

    /// Writes (or replaces) a release. Flushed.
    pub fn put_release(&self, release: &Release) -> Result<(), StoreError> {
        self.releases
            .insert(release.name.as_bytes(), encode(release)?)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.rollouts
            .iter()
            .map(|entry| {
                let (id, bytes) = entry?;
                decode(&String::from_utf8_lossy(&id), &bytes)
            })
            .collect()
    }

    pub fn rollout(&self, id: &str) -> Result<Option<Rollout>, StoreError> {
        self.rollouts
            .get(id)?
            .map(|bytes| decode(id, &bytes))
            .transpose()
    }

    /// Stores a new rollout; false (and nothing written) when its id is taken. Flushed.
    pub fn create_rollout(&self, rollout: &Rollout) -> Result<bool, StoreError> {
        let created = self
            .rollouts
            .compare_and_swap(rollout.id.as_bytes(), None::<&[u8]>, Some(encode(rollout)?))?
            .is_ok();
        self.db.flush()?;
        Ok(created)
    }

    /// Replaces a rollout's record. Flushed.
    pub fn save_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        self.rollouts
            .insert(rollout.id.as_bytes(), encode(rollout)?)?;
        self.db.flush()?;
        Ok(())
    }
}
