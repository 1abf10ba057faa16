//! What the admin API keeps in the embedded store besides enrollments and assignments: agents' labels, bootstrap
//! tokens issued by `outpost-hub token create`, and revoking an enrollment (issue 18, items 3 and 6).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{decode, encode, Store, StoreError};

/// An agent's labels: short keys to short values, for selecting agents (`site=berlin`, `tier=edge`).
pub type Labels = BTreeMap<String, String>;

/// A bootstrap token made by `outpost-hub token create`. Only its hash is kept, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// Hex sha-256 of the token.
    pub token_sha256: String,
    /// Labels the agent it enrolls starts with.
    #[serde(default)]
    pub labels: Labels,
    pub created_at_ms: u64,
    /// After this the token enrolls nobody; `None` keeps it valid until used.
    pub expires_at_ms: Option<u64>,
}

impl Store {
    /// Every agent's labels (agents without labels are left out).
    pub fn labels(&self) -> Result<Vec<(String, Labels)>, StoreError> {
        self.labels
            .iter()
            .map(|entry| {
                let (id, bytes) = entry?;
                let id = String::from_utf8_lossy(&id).into_owned();
                let labels = decode(&id, &bytes)?;
                Ok((id, labels))
            })
            .collect()
    }

    /// Replaces `agent_id`'s labels (an empty set removes them). Flushed.
    pub fn set_labels(&self, agent_id: &str, labels: &Labels) -> Result<(), StoreError> {
        if labels.is_empty() {
            self.labels.remove(agent_id)?;
        } else {
            self.labels.insert(agent_id.as_bytes(), encode(labels)?)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// The generation of every stored assignment.
    pub fn assignment_generations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.assignments
            .iter()
            .map(|entry| {
                let (id, bytes) = entry?;
                let id = String::from_utf8_lossy(&id).into_owned();
                let assignment: outpost_proto::wire::Assignment = decode(&id, &bytes)?;
                Ok((id, assignment.generation))
            })
            .collect()
    }

    /// Removes `agent_id`'s enrollment so its key is refused from now on; its heartbeats, labels and
    /// assignment stay (unlike [`Store::forget`]). Returns whether it was enrolled. Flushed.
    pub fn revoke(&self, agent_id: &str) -> Result<bool, StoreError> {
        let removed = self.enrolled.remove(agent_id)?.is_some();
        self.db.flush()?;
        Ok(removed)
    }

    /// Records a token made by `outpost-hub token create`. Flushed.
    pub fn add_issued_token(&self, token: &IssuedToken) -> Result<(), StoreError> {
        self.issued
            .insert(token.token_sha256.as_bytes(), encode(token)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every issued token, used or not.
    pub fn issued_tokens(&self) -> Result<Vec<IssuedToken>, StoreError> {
        self.issued
            .iter()
            .map(|entry| {
                let (key, bytes) = entry?;
                decode(&String::from_utf8_lossy(&key), &bytes)
            })
            .collect()
    }

    /// The issued token with this hash, if any (used or not: [`Store::enroll`] decides that).
    pub fn issued_token(&self, token_sha256: &str) -> Result<Option<IssuedToken>, StoreError> {
        self.issued
            .get(token_sha256)?
            .map(|bytes| decode(token_sha256, &bytes))
            .transpose()
    }
}
