//! The Kubernetes target: staged server-side apply of a bundle, an inventory per source, prune, health, cheap
//! drift checks and leader election.
//!
//! Invariants:
//! - The inventory in the store lists every object this agent applied for a source and may still own. It is
//!   written after every apply attempt, failed ones included, so that a rollback can prune what a failed revision
//!   created, and a crash never orphans an object. When it is lost it is rebuilt from the cluster by our owner
//!   label (agent and source, see `owner`), never by the source name, which other agents' sources may share.
//! - Only objects that still carry our owner label (or legacy objects of this source that the stored inventory
//!   lists) are ever deleted; an object another owner holds is never written over.
//! - An unchanged cycle costs one metadata-only list per kind; only what drifted is re-applied.

mod apply;
pub mod client;
mod drift;
mod failure;
pub mod health;
mod inventory;
pub mod lease;
pub mod owner;
pub mod plan;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

pub use client::Cluster;
pub use drift::{Drift, Drifted};
pub use plan::ObjectRef;

use crate::store::{Store, StoreError};

/// Objects annotated `outpost.dev/prune: disabled` are never deleted.
pub const PRUNE_ANNOTATION: &str = "outpost.dev/prune";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the Kubernetes API at {server}: {message}; the last good revision stays, and the agent retries")]
    Unreachable { server: String, message: String },
    #[error("discovery of {group_version} failed: {message}")]
    Discovery {
        group_version: String,
        message: String,
    },
    #[error("cannot list {plural} by our owner label: {message}")]
    List { plural: String, message: String },
    #[error("{object}: {message}")]
    Object { object: String, message: String },
    #[error("{} objects failed: {}", .0.len(), .0.join("; "))]
    Objects(Vec<String>),
    #[error("not healthy after {}s: {}", .timeout.as_secs(), .objects.join("; "))]
    Unhealthy {
        timeout: Duration,
        objects: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl KubeError {
    fn object(r: &ObjectRef, message: impl Into<String>) -> KubeError {
        KubeError::Object {
            object: r.to_string(),
            message: message.into(),
        }
    }

    /// One line per failed object, for collecting a whole wave's failures into one error.
    fn lines(self) -> Vec<String> {
        match self {
            KubeError::Objects(v) => v,
            other => vec![other.to_string()],
        }
    }
}

/// What we remember about one applied object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub r: ObjectRef,
    pub plural: String,
    pub namespaced: bool,
    /// As returned by our last apply (or last read): the drift check compares against these.
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub generation: Option<i64>,
    /// Other managers' hands on the object (`manager|operation|time`, status writes excluded).
    #[serde(default)]
    pub foreign: Vec<String>,
    /// `outpost.dev/apply: if-not-present`: only its presence is checked.
    #[serde(default)]
    pub create_only: bool,
    /// The revision whose apply created the object, so a rollback can remove it.
    #[serde(default)]
    pub created_by: Option<String>,
}

impl Entry {
    fn resource(&self) -> client::Resource {
        client::Resource {
            group: self.r.group.clone(),
            version: self.r.version.clone(),
            plural: self.plural.clone(),
            namespaced: self.namespaced,
        }
    }

    /// Records what the server answered for the object.
    fn observe(&mut self, object: &Value, field_manager: &str) {
        let meta = object.get("metadata");
        self.resource_version = meta
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.generation = meta
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64);
        self.foreign = drift::foreign_hands(meta, field_manager);
    }
}

/// A source's inventory as stored (`inv/<source>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// The revision the entries were last applied from (after a failed apply: the failed one).
    pub revision: Option<String>,
    /// True when the last apply did not complete: the next one must apply everything.
    #[serde(default)]
    pub incomplete: bool,
    pub entries: Vec<Entry>,
}

/// The per-source settings the target needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whose objects these are: inventory rebuild, prune and the drift check select by it.
    pub owner: owner::Owner,
    pub namespace: String,
    pub prune: bool,
    pub wait: bool,
    pub force: bool,
    pub timeout: Duration,
    pub concurrency: usize,
}

/// Why an apply happens, which decides what may be pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A new revision, or the last good one again.
    Normal,
    /// Going back to the last good revision after `from` failed: what `from` created is removed even without
    /// `prune`, because nothing else will ever remove it.
    Rollback { from: String },
}

/// The result of an apply, for status.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub objects: usize,
    pub changed: bool,
    /// Objects whose drift was corrected.
    pub drift_corrected: usize,
    /// Things an operator should know that are not errors: fields taken from other managers, recreated objects,
    /// objects that could not be pruned.
    pub notes: Vec<String>,
}

/// One source's view of the cluster.
pub struct KubeTarget {
    cluster: Arc<Cluster>,
    store: Arc<Store>,
    settings: Settings,
    leader: Option<watch::Receiver<lease::Leadership>>,
}

impl KubeTarget {
    pub fn new(
        cluster: Arc<Cluster>,
        store: Arc<Store>,
        settings: Settings,
        leader: Option<watch::Receiver<lease::Leadership>>,
    ) -> KubeTarget {
        KubeTarget {
            cluster,
            store,
            settings,
            leader,
        }
    }

    /// Why this replica must not apply now (another holds the leader lease, or the lease cannot be reached), or
    /// `None` when it may.
    pub fn standby(&self) -> Option<lease::Leadership> {
        let l = self.leader.as_ref()?.borrow().clone();
        (l != lease::Leadership::Leader).then_some(l)
    }

    fn inventory(&self, source: &str) -> Result<Option<Inventory>, KubeError> {
        Ok(self.store.inventory(source)?)
    }

    fn save(&self, source: &str, inventory: &Inventory) -> Result<(), KubeError> {
        Ok(self.store.set_inventory(source, inventory)?)
    }
}
