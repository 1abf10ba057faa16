//! verify -> read -> build: the part of the pipeline that a pass and `render` share.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Origin, ReconcileError};
use crate::bundle::{self, Bundle};
use crate::config::Limits;
use crate::secrets;
use crate::sops::Identities;
use crate::source::{Probe, SourceError};

/// What building a revision needs besides its files.
pub(super) struct Input<'a> {
    pub name: &'a str,
    pub limits: Limits,
    pub vars: Option<&'a BTreeMap<String, String>>,
    /// `[source.decryption]`: the age identities for the revision's SOPS files.
    pub decryption: Option<&'a Arc<Identities>>,
}

/// A built revision: the bundle a target applies, and, when it holds decrypted values, the sealed copy the
/// store keeps instead (see [`secrets`]).
pub(super) struct Prepared {
    pub bundle: Bundle,
    pub sealed: Option<Bundle>,
}

impl Prepared {
    /// What the store keeps.
    pub fn stored(&self) -> &Bundle {
        self.sealed.as_ref().unwrap_or(&self.bundle)
    }
}

/// verify -> read -> build, for a revision in the local cache: the part of the pipeline that `pass` and
/// `render` share. The signature policy is checked only when `probe` says which ref selected the revision.
/// SOPS files are decrypted in memory between read and build. Returns the bundle and what was skipped while
/// reading (files that are not manifests), for the caller to show.
pub(super) async fn build_revision<S: Origin>(
    source: &S,
    input: &Input<'_>,
    probe: Option<&Probe>,
    revision: &str,
) -> Result<(Prepared, Vec<String>), ReconcileError> {
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
    let mut manifests = source.read(revision).await.map_err(source_error)?;
    let limits = input.limits;
    let vars = input.vars.cloned();
    let identities = input.decryption.cloned();
    let built = tokio::task::spawn_blocking(move || {
        let identities = identities.as_deref();
        let revealed = secrets::reveal(&mut manifests, identities).map_err(Step::Secrets)?;
        let mut bundle =
            bundle::build_revision(&manifests, vars.as_ref(), &limits).map_err(Step::Build)?;
        let sealed = match identities {
            Some(ids) => secrets::seal(&bundle, ids, &revealed).map_err(Step::Secrets)?,
            None => None,
        };
        // The stored copy's digest names the revision's bundle everywhere, so no digest of a secret is kept.
        if let Some(sealed) = &sealed {
            bundle.digest = sealed.digest.clone();
        }
        Ok((Prepared { bundle, sealed }, manifests.warnings))
    })
    .await
    .map_err(|e| source_error(SourceError::Task(e.to_string())))?;
    built.map_err(|step| match step {
        Step::Build(error) => ReconcileError::Build {
            source_name: input.name.into(),
            revision: revision.into(),
            error: Box::new(error),
        },
        Step::Secrets(error) => ReconcileError::Secrets {
            source_name: input.name.into(),
            revision: revision.into(),
            error: Box::new(error),
        },
    })
}

/// The step of the build that failed.
enum Step {
    Secrets(secrets::SecretsError),
    Build(bundle::BuildError),
}
