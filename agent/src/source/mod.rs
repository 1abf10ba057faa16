//! The source stage: find out which commit a Git source wants applied, fetch it when it is new, and read its
//! manifests. The network is touched in two steps so that an unchanged poll costs one small request: a probe that
//! lists only the configured ref, and a shallow fetch only when the probed commit differs from the one we have.
//!
//! Network calls are blocking gix calls on tokio's blocking pool, bounded by the source's `timeout`.

mod describe;
pub mod git;
pub mod http_probe;
pub mod local;
pub mod refs;
pub mod size;
pub mod tree;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{GitRef, Limits, SourceConfig};
pub use crate::revision::Manifests;
use git::GitRemote;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach {url}: {message}")]
    Remote {
        source_name: String,
        url: String,
        message: String,
    },
    #[error("{message}")]
    Credentials {
        source_name: String,
        message: String,
    },
    #[error("{url}: {missing}")]
    RefNotFound { url: String, missing: refs::Missing },
    #[error("{url}: no answer within the source's timeout of {timeout:?}; the poll is retried with backoff (raise timeout if the link is slow)")]
    Timeout { url: String, timeout: Duration },
    #[error("revision {revision}: {message}")]
    Tree { revision: String, message: String },
    #[error("{url}: {message}")]
    TooLarge { url: String, message: String },
    #[error("Git cache {dir}: {message}")]
    Cache { dir: PathBuf, message: String },
    #[error(transparent)]
    Verify(#[from] crate::signature::VerifyError),
    #[error("internal error in a Git task: {0}")]
    Task(String),
}

/// What the remote says the source should be at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The full ref that was selected (`refs/heads/main`, `refs/tags/v1.2.0`), or the commit id when pinned.
    pub ref_name: String,
    pub commit: String,
    /// The annotated tag object the ref points at, which `[source.verify]` tag modes check.
    pub tag_object: Option<String>,
}

/// One configured Git source.
#[derive(Clone)]
pub struct Source {
    config: SourceConfig,
    remote: Arc<GitRemote>,
    limits: Limits,
}

impl Source {
    pub fn new(config: &SourceConfig, git_cache_root: &std::path::Path, limits: Limits) -> Source {
        let cache_dir = git_cache_root.join(&config.name);
        Source {
            config: config.clone(),
            remote: Arc::new(GitRemote::new(config, cache_dir)),
            limits,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Lists only the configured ref (or the tags, for a semver range) and selects the commit. A pinned commit
    /// needs no network at all.
    pub async fn probe(&self) -> Result<Probe, SourceError> {
        let Some(ref_name) = refs::remote_ref_name(&self.config.git_ref) else {
            let GitRef::Commit(c) = &self.config.git_ref else {
                unreachable!("only commits have no ref name")
            };
            return Ok(Probe {
                ref_name: c.clone(),
                commit: c.to_ascii_lowercase(),
                tag_object: None,
            });
        };
        let listed = match self.probe_http(&ref_name).await? {
            Some(listed) => listed,
            None => {
                let remote = self.remote.clone();
                self.blocking(move |_| remote.list(&ref_name)).await?
            }
        };
        let selected = refs::select(&self.config.git_ref, &listed).map_err(|missing| {
            SourceError::RefNotFound {
                url: crate::redact::url(&self.config.url),
                missing,
            }
        })?;
        Ok(Probe {
            ref_name: selected.name,
            commit: selected.commit,
            tag_object: selected.tag_object,
        })
    }

    /// The one-request probe for HTTP(S) remotes; `None` when the URL is not HTTP or the server's answer needs
    /// the full handshake.
    async fn probe_http(
        &self,
        ref_name: &str,
    ) -> Result<Option<Vec<refs::ListedRef>>, SourceError> {
        if !crate::config::url::is_http(&self.config.url) {
            return Ok(None);
        }
        let creds = self.remote.credentials()?;
        let timeout = self.config.timeout;
        let client =
            http_probe::shared_client(self.config.ca_file.as_deref(), creds.ca_certs.as_deref())
                .map_err(|e| self.remote.net_error(e, &creds))?;
        let answer = http_probe::ls_refs(
            &client,
            &self.config.url,
            ref_name,
            creds.header.as_deref(),
            timeout,
        )
        .await;
        match answer {
            Ok(Some(http_probe::Answer::Refs(refs))) => Ok(Some(refs)),
            Ok(Some(http_probe::Answer::Denied(code))) => Err(self
                .remote
                .net_error(format!("HTTP {code}: authentication failed"), &creds)),
            Ok(Some(http_probe::Answer::NotFound)) => Err(self
                .remote
                .net_error("HTTP 404: repository not found; check the url", &creds)),
            Ok(None) => Ok(None),
            Err(e) => Err(self.remote.net_error(e, &creds)),
        }
    }

    /// Shallow-fetches the probed ref; returns the commit id that arrived.
    pub async fn fetch(&self, probe: &Probe) -> Result<String, SourceError> {
        let remote = self.remote.clone();
        let ref_name = probe.ref_name.clone();
        let limits = self.limits;
        self.blocking(move |interrupt| remote.fetch(&ref_name, &interrupt, &limits))
            .await
    }

    /// True when the commit is already in the local cache (no transfer needed to build it again).
    pub async fn has_commit(&self, commit: &str) -> bool {
        let remote = self.remote.clone();
        let commit = commit.to_string();
        tokio::task::spawn_blocking(move || remote.has_commit(&commit))
            .await
            .unwrap_or(false)
    }

    /// True when everything needed to verify and build the probed revision is in the local cache: the commit and,
    /// for a tag, the tag object that carries its signature.
    pub async fn has_revision(&self, probe: &Probe) -> bool {
        let remote = self.remote.clone();
        let mut ids = vec![probe.commit.clone()];
        ids.extend(probe.tag_object.clone());
        tokio::task::spawn_blocking(move || ids.iter().all(|id| remote.has_object(id)))
            .await
            .unwrap_or(false)
    }

    /// Checks `[source.verify]` for `commit`, which `probe` selected; a source without it passes. Runs before the
    /// tree is read, every time a revision is about to be built, whether it was just fetched or already cached.
    pub async fn verify(&self, probe: &Probe, commit: &str) -> Result<Option<String>, SourceError> {
        let Some(policy) = self.config.verify.clone() else {
            return Ok(None);
        };
        let remote = self.remote.clone();
        let commit = commit.to_string();
        let ref_name = probe.ref_name.clone();
        let tag_object = probe.tag_object.clone();
        tokio::task::spawn_blocking(move || {
            let repo = remote.open_objects()?;
            let revision = crate::signature::Revision {
                commit: &commit,
                ref_name: &ref_name,
                tag_object: tag_object.as_deref(),
            };
            Ok(Some(policy.check(&repo, &revision)?))
        })
        .await
        .map_err(|e| SourceError::Task(e.to_string()))?
    }

    /// Reads the manifests under the source's path at `commit` from the local cache.
    pub async fn read(&self, commit: &str) -> Result<Manifests, SourceError> {
        let remote = self.remote.clone();
        let commit = commit.to_string();
        let path = self.config.path.clone();
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            let repo = remote.open_objects()?;
            tree::read(&repo, &commit, &path, &limits)
        })
        .await
        .map_err(|e| SourceError::Task(e.to_string()))?
    }

    /// Runs a blocking network call under the source's timeout. On timeout the interrupt flag asks gix to stop;
    /// a transport stuck in a read is left to finish on its own thread, the poll itself is already over.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<AtomicBool>) -> Result<T, SourceError> + Send + 'static,
    ) -> Result<T, SourceError> {
        let interrupt = Arc::new(AtomicBool::new(false));
        // Whether the poll times out or is abandoned at shutdown (this future dropped), gix is asked to stop.
        let _stop_on_drop = InterruptOnDrop(interrupt.clone());
        let flag = interrupt.clone();
        let task = tokio::task::spawn_blocking(move || f(flag));
        match tokio::time::timeout(self.config.timeout, task).await {
            Ok(joined) => joined.map_err(|e| SourceError::Task(e.to_string()))?,
            Err(_) => Err(SourceError::Timeout {
                url: crate::redact::url(&self.config.url),
                timeout: self.config.timeout,
            }),
        }
    }
}

/// Sets the interrupt flag when dropped; a finished call no longer reads it, so setting it is always harmless.
struct InterruptOnDrop(Arc<AtomicBool>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl SourceError {
    /// Errors that are about the content of a revision, not about reaching it: retrying will not help until
    /// someone pushes a fix.
    pub fn is_content_error(&self) -> bool {
        matches!(
            self,
            SourceError::Tree { .. } | SourceError::TooLarge { .. } | SourceError::Verify(_)
        )
    }
}
