//! `outpost render`: the pipeline up to the bundle (fetch, verify, read, build) for one source, writing neither
//! the target nor the store, so it works beside a running daemon.
//!
//! The daemon's Git cache is only read; what must be fetched goes into a cache of render's own
//! (`state_dir/git-render`), so two processes never write one repository.

use super::prepare::{build_revision, Input};
use super::ReconcileError;
use crate::bundle::Bundle;
use crate::config::{Config, SourceConfig};
use crate::source::{Probe, Source, SourceError};

/// What `render` produced: the revision, its bundle, and what was skipped while reading it.
pub struct Rendered {
    pub revision: String,
    pub bundle: Bundle,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("--revision {0:?}: give a full 40-character commit id (it is not in the local cache)")]
    NotACommit(String),
    #[error(transparent)]
    Pipeline(#[from] Box<ReconcileError>),
}

/// Builds `revision` (a commit id), or what the source's ref selects now. A revision named on the command line
/// is not what the ref selects, so the signature policy (which is about the ref) is checked only without it.
/// Objects holding values decrypted from SOPS files show those values only when `show_secrets` is set.
pub async fn render(
    config: &Config,
    source_config: &SourceConfig,
    revision: Option<String>,
    show_secrets: bool,
) -> Result<Rendered, RenderError> {
    let name = &source_config.name;
    let limits = config.agent.limits;
    let daemon_cache = Source::new(source_config, &config.agent.state_dir.join("git"), limits);
    let own_cache = Source::new(
        source_config,
        &config.agent.state_dir.join("git-render"),
        limits,
    );
    let err = |error: SourceError| {
        Box::new(ReconcileError::Source {
            source_name: name.clone(),
            error,
        })
    };
    let (source, commit, probe) = match revision {
        Some(rev) if daemon_cache.has_commit(&rev).await => (daemon_cache, rev, None),
        Some(rev) if own_cache.has_commit(&rev).await => (own_cache, rev, None),
        Some(rev) => {
            if rev.len() != 40 || !rev.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(RenderError::NotACommit(rev));
            }
            let probe = Probe {
                ref_name: rev.clone(),
                commit: rev.clone(),
                tag_object: None,
            };
            let fetched = own_cache.fetch(&probe).await.map_err(err)?;
            (own_cache, fetched, None)
        }
        None => {
            let probe = own_cache.probe().await.map_err(err)?;
            if daemon_cache.has_revision(&probe).await {
                (daemon_cache, probe.commit.clone(), Some(probe))
            } else {
                let fetched = own_cache.fetch(&probe).await.map_err(err)?;
                (own_cache, fetched, Some(probe))
            }
        }
    };
    let vars = source_config.vars(&config.agent);
    let input = Input {
        name,
        limits,
        vars: vars.as_ref(),
        decryption: source_config.operations.decryption.as_ref(),
    };
    let (prepared, warnings) = build_revision(&source, &input, probe.as_ref(), &commit)
        .await
        .map_err(Box::new)?;
    let mut bundle = prepared.bundle;
    if let (Some(sealed), false) = (&prepared.sealed, show_secrets) {
        crate::secrets::redact(&mut bundle, sealed);
    }
    Ok(Rendered {
        revision: commit,
        bundle,
        warnings,
    })
}
