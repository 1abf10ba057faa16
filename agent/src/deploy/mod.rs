//! The target stage: make a bundle real, either in a cluster through the Kubernetes API (server-side apply, see
//! `kube`) or in a folder that an auto-deploy controller watches (k3s, RKE2, MicroShift).
//!
//! A target is told the full desired state each time (the whole bundle), so applying the same bundle twice is
//! harmless and re-applying the last good bundle corrects drift.

pub mod directory;
pub mod kube;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::bundle::Bundle;
use crate::config::{SourceConfig, TargetSpec};
use crate::store::Store;

mod context;
pub use context::ContextError;

pub use kube::lease::Leadership;
pub use kube::{Drift, Drifted, Mode};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const SOURCE_LABEL: &str = "outpost.dev/source";
pub const REVISION_ANNOTATION: &str = "outpost.dev/revision";
pub const APPLY_ANNOTATION: &str = "outpost.dev/apply";
/// How long removing a source that left the config may take per request round (it has no `timeout` of its own
/// any more).
const REMOVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("directory target {dir}: {message}")]
    Directory { dir: String, message: String },
    #[error("kubernetes: {0}")]
    Kubernetes(#[from] kube::KubeError),
    #[error("target \"kubernetes\" needs a cluster, and none was set up for this command")]
    NoCluster,
}

impl TargetError {
    /// True when the target could not be reached at all (not the revision's fault): no rollback is needed, and the
    /// source is stale rather than failed.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            TargetError::Kubernetes(kube::KubeError::Unreachable { .. })
        )
    }
}

/// What an apply did, for status and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub object_count: usize,
    /// False when the target already held exactly this content (nothing was written).
    pub changed: bool,
    /// Objects re-applied because they had drifted from the last good revision.
    pub drift_corrected: usize,
    /// Worth an operator's attention without being errors (fields taken from other managers, recreated objects).
    pub notes: Vec<String>,
}

/// What targets share: the store (the Kubernetes inventory lives there), the cluster connection and whether this
/// replica holds the leader lease.
#[derive(Clone)]
pub struct TargetContext {
    /// `[agent] id`: with the source name it makes the owner of every object we apply (`kube::owner`).
    pub agent_id: String,
    pub store: Arc<Store>,
    pub cluster: Option<Arc<kube::Cluster>>,
    pub leader: Option<watch::Receiver<Leadership>>,
    pub concurrency: usize,
}

pub enum Target {
    Directory(directory::DirectoryTarget),
    Kubernetes(kube::KubeTarget),
}

impl Target {
    pub fn new(config: &SourceConfig, ctx: &TargetContext) -> Result<Target, TargetError> {
        Ok(match &config.target {
            TargetSpec::Directory(dir) => {
                Target::Directory(directory::DirectoryTarget::new(dir.clone(), config.layout))
            }
            TargetSpec::Kubernetes => {
                let cluster = ctx.cluster.clone().ok_or(TargetError::NoCluster)?;
                let settings = kube::Settings {
                    owner: kube::owner::Owner::new(&ctx.agent_id, &config.name),
                    namespace: config.namespace.clone(),
                    prune: config.prune,
                    wait: config.wait,
                    force: config.force,
                    timeout: config.timeout,
                    concurrency: ctx.concurrency,
                };
                Target::Kubernetes(kube::KubeTarget::new(
                    cluster,
                    ctx.store.clone(),
                    settings,
                    ctx.leader.clone(),
                ))
            }
        })
    }

    /// Makes the target hold the whole bundle.
    pub async fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        mode: &Mode,
    ) -> Result<Applied, TargetError> {
        match self {
            Target::Directory(d) => d.apply(source, revision, bundle).await,
            Target::Kubernetes(k) => {
                let r = k.apply(source, revision, bundle, mode, None).await?;
                Ok(Applied {
                    object_count: r.objects,
                    changed: r.changed,
                    drift_corrected: 0,
                    notes: r.notes,
                })
            }
        }
    }

    /// What differs between the target and what was last applied for `source` at `revision`, found as cheaply as
    /// the target allows (without loading the bundle).
    pub async fn drifted(&self, source: &str, revision: &str) -> Result<Drift, TargetError> {
        match self {
            Target::Directory(d) if d.is_intact(source, revision) => Ok(Drift::None),
            Target::Directory(_) => Ok(Drift::All),
            Target::Kubernetes(k) => {
                let drift = k.drifted(source, revision).await;
                // The check read every object's metadata; give that memory back between cycles. Only here: the
                // directory target's check is a stat, and trimming on its every poll would be wasted work.
                outpost_proto::mem::release_free_memory();
                Ok(drift?)
            }
        }
    }

    /// Re-applies only the drifted objects of the bundle.
    pub async fn correct(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        objects: &[kube::Drifted],
    ) -> Result<Applied, TargetError> {
        match self {
            Target::Directory(d) => d.apply(source, revision, bundle).await,
            Target::Kubernetes(k) => {
                let refs: Vec<kube::ObjectRef> = objects.iter().map(|d| d.r.clone()).collect();
                let r = k
                    .apply(source, revision, bundle, &Mode::Normal, Some(&refs))
                    .await?;
                let mut notes: Vec<String> = objects
                    .iter()
                    .flat_map(|d| d.notes.iter().cloned())
                    .collect();
                notes.extend(r.notes);
                Ok(Applied {
                    object_count: r.objects,
                    changed: r.changed,
                    drift_corrected: if r.changed { objects.len() } else { 0 },
                    notes,
                })
            }
        }
    }

    /// The target a source that is no longer in the config was applied to (`SourceRecord::target`), so that its
    /// objects can be removed. `None` when that target cannot be reached from this configuration.
    pub fn for_removed(source: &str, target: &str, ctx: &TargetContext) -> Option<Target> {
        if let Some(dir) = target.strip_prefix("directory:") {
            // Removal takes away what either layout wrote, so the layout the source had need not be known.
            return Some(Target::Directory(directory::DirectoryTarget::new(
                dir.into(),
                crate::config::DirectoryLayout::File,
            )));
        }
        let cluster = ctx.cluster.clone().filter(|_| target == "kubernetes")?;
        let settings = kube::Settings {
            owner: kube::owner::Owner::new(&ctx.agent_id, source),
            namespace: "default".into(),
            prune: true,
            wait: false,
            force: false,
            timeout: REMOVAL_TIMEOUT,
            concurrency: ctx.concurrency,
        };
        Some(Target::Kubernetes(kube::KubeTarget::new(
            cluster,
            ctx.store.clone(),
            settings,
            ctx.leader.clone(),
        )))
    }

    /// Why this replica must not apply now (see `kube::lease::Leadership`), or `None` when it may.
    pub fn standby(&self) -> Option<Leadership> {
        match self {
            Target::Directory(_) => None,
            Target::Kubernetes(k) => k.standby(),
        }
    }

    /// Removes everything a source put in the target (the source was removed from the config, with prune on).
    pub async fn remove(&self, source: &str) -> Result<bool, TargetError> {
        match self {
            Target::Directory(d) => d.remove(source).await,
            Target::Kubernetes(k) => Ok(k.remove_all(source).await?),
        }
    }
}

/// Adds our ownership labels and revision annotation (DESIGN.md § Objects we own) to a copy of an object.
pub fn mark_owned(object: &Value, source: &str, revision: &str) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(MANAGED_BY_LABEL.into(), "outpost".into());
            labels.insert(SOURCE_LABEL.into(), source.into());
        }
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(REVISION_ANNOTATION.into(), revision.into());
        }
    }
    o
}

/// The `outpost.dev/apply` annotation of an object, if any.
pub fn apply_policy(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(APPLY_ANNOTATION))
        .and_then(Value::as_str)
}
