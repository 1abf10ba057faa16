//! verify -> read -> build: the part of the pipeline that a pass and `render` share.

use std::collections::BTreeMap;

use super::{Origin, ReconcileError};
use crate::bundle::{self, Bundle};
use crate::config::Limits;
use crate::source::{Probe, SourceError};

/// What building a revision needs besides its files.
pub(super) struct Input<'a> {
    pub name: &'a str,
    pub limits: Limits,
    pub vars: Option<&'a BTreeMap<String, String>>,
}

/// verify -> read -> build, for a revision in the local cache: the part of the pipeline that `pass` and
/// `render` share. The signature policy is checked only when `probe` says which ref selected the revision.
/// Returns the bundle and what was skipped while reading (files that are not manifests), for the caller to show.
pub(super) async fn build_revision<S: Origin>(
    source: &S,
    input: &Input<'_>,
    probe: Option<&Probe>,
    revision: &str,
) -> Result<(Bundle, Vec<String>), ReconcileError> {
    let source_error = |error| ReconcileError::Source {
        source_name: input.name.into(),
        error,
    };
    if let Some(probe) = probe {
        if let Some(signer) = source.verify(probe, revision).await.map_err(source_error)? {
            tracing::info!(
                source = input.name,
                revision,
                "signature verified: {signer}"
            );
        }
    }
    let manifests = source.read(revision).await.map_err(source_error)?;
    let limits = input.limits;
    let vars = input.vars.cloned();
    let built = tokio::task::spawn_blocking(move || {
        bundle::build_revision(&manifests, vars.as_ref(), &limits).map(|b| (b, manifests.warnings))
    })
    .await
    .map_err(|e| source_error(SourceError::Task(e.to_string())))?;
    built.map_err(|error| ReconcileError::Build {
        source_name: input.name.into(),
        revision: revision.into(),
        error: Box::new(error),
    })
}
