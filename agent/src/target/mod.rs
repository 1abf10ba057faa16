//! The target stage: make a bundle real. Today a folder that an auto-deploy controller watches (k3s, RKE2,
//! MicroShift); the Kubernetes API target joins as another variant of [`Target`].
//!
//! A target is told the full desired state each time (the whole bundle), so applying the same bundle twice is
//! harmless and re-applying the last good bundle corrects drift.

pub mod directory;

use serde_json::Value;

use crate::build::Bundle;
use crate::config::TargetSpec;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const SOURCE_LABEL: &str = "outpost.dev/source";
pub const REVISION_ANNOTATION: &str = "outpost.dev/revision";
pub const APPLY_ANNOTATION: &str = "outpost.dev/apply";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("directory target {dir}: {message}")]
    Directory { dir: String, message: String },
}

/// What an apply did, for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub object_count: usize,
    /// False when the target already held exactly this content (nothing was written).
    pub changed: bool,
}

pub enum Target {
    Directory(directory::DirectoryTarget),
}

impl Target {
    pub fn new(spec: &TargetSpec) -> Target {
        match spec {
            TargetSpec::Directory(dir) => {
                Target::Directory(directory::DirectoryTarget::new(dir.clone()))
            }
            TargetSpec::Kubernetes => {
                unreachable!("config validation refuses the kubernetes target in this build")
            }
        }
    }

    pub async fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
    ) -> Result<Applied, TargetError> {
        match self {
            Target::Directory(d) => d.apply(source, revision, bundle).await,
        }
    }

    /// True when the target provably still holds what was last applied for `source` at `revision`, without
    /// looking at the bundle. False means "check properly", never "drifted".
    pub fn is_intact(&self, source: &str, revision: &str) -> bool {
        match self {
            Target::Directory(d) => d.is_intact(source, revision),
        }
    }

    /// Removes everything a source put in the target (the source was removed from the config, with prune on).
    pub async fn remove(&self, source: &str) -> Result<bool, TargetError> {
        match self {
            Target::Directory(d) => d.remove(source).await,
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
