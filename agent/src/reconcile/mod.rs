//! One pass of one source: probe -> (fetch) -> build -> apply -> record.
//!
//! The rule this module keeps: a revision becomes last good only after it was fetched, built and applied; until
//! then the last good bundle stays in the target. Every pass also re-applies the last good bundle when nothing new
//! can be applied (unchanged, offline, or broken), which is how drift is corrected.
//!
//! Network steps give way to shutdown; writes to the target and the store never do, so SIGTERM cannot leave a
//! half-recorded revision.

mod gate;
mod keep;
mod policy;
mod ports;
mod prepare;
mod removed;
mod render;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::bundle::{self, BuildError, Bundle};
use crate::config::{Config, Limits, SourceConfig};
use crate::deploy::{Mode, Target, TargetContext, TargetError};
use crate::report::State;
use crate::source::{Probe, Source, SourceError};
use crate::store::{now, HistoryEntry, SourceRecord, Store, StoreError};

pub use policy::{error_policy, Failure, Next, Recovery};
pub use ports::{Deploy, Origin};
pub use removed::prune_removed_sources;
pub use render::{render, RenderError, Rendered};

use prepare::{build_revision, Input, Prepared};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("source \"{source_name}\": {error}")]
    Source {
        source_name: String,
        error: SourceError,
    },
    #[error("source \"{source_name}\", revision {revision}: {error}")]
    Build {
        source_name: String,
        revision: String,
        error: Box<BuildError>,
    },
    #[error("source \"{source_name}\", revision {revision}: {error}")]
    Secrets {
        source_name: String,
        revision: String,
        error: Box<crate::secrets::SecretsError>,
    },
    #[error("source \"{source_name}\", revision {revision}: {error}")]
    Target {
        source_name: String,
        revision: String,
        error: TargetError,
    },
    /// The source's target cannot be set up (e.g. the Kubernetes target with no cluster connection).
    #[error("source \"{source_name}\": {error}")]
    Setup {
        source_name: String,
        error: TargetError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("source \"{0}\": stopped by shutdown")]
    Cancelled(String),
}

/// How a pass ended; the scheduler turns this into the next poll time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// The remote still points at the last good revision; it was re-applied if the target had drifted.
    Unchanged { revision: String },
    /// A new revision is now applied and is the last good one.
    Applied { revision: String, objects: usize },
    /// Another replica holds the leader lease: the revision was fetched into the cache, not applied.
    Standby { revision: String },
    /// The revision was fetched, verified and built, and waits: outside its maintenance windows, or for the
    /// sources it depends on.
    Waiting { revision: String, why: String },
    /// The operator suspended the source (`outpost suspend`): nothing was fetched or applied.
    Suspended { why: String },
}

/// Everything one source's pass needs; built once per source and reused by every pass.
pub struct Reconciler<S = Source, T = Target> {
    pub config: SourceConfig,
    state_dir: std::path::PathBuf,
    source: S,
    target: T,
    store: Arc<Store>,
    limits: Limits,
    keep: usize,
    /// Substitution variables (see `SourceConfig::vars`).
    vars: Option<BTreeMap<String, String>>,
    /// See `SourceRecord::build_key`.
    build_key: String,
}

impl Reconciler {
    /// The pipeline of one configured source, as the daemon and `outpost sync` run it: its Git cache under
    /// `state_dir/git`, its target from `targets`.
    pub fn for_source(
        config: &Config,
        source: &SourceConfig,
        targets: &TargetContext,
    ) -> Result<Reconciler, ReconcileError> {
        let target = Target::new(source, targets).map_err(|error| ReconcileError::Setup {
            source_name: source.name.clone(),
            error,
        })?;
        let limits = config.agent.limits;
        Ok(Reconciler::new(
            source,
            Source::new(source, &config.agent.state_dir.join("git"), limits),
            target,
            targets.store.clone(),
            Settings {
                state_dir: config.agent.state_dir.clone(),
                limits,
                keep: config.agent.keep_revisions,
                vars: source.vars(&config.agent),
            },
        ))
    }
}

/// What a pass needs beyond its stages: bounds on what a revision may hold, how many bundles to keep, and the
/// substitution variables.
pub struct Settings {
    /// Where `outpost suspend` leaves its files (`control`).
    pub state_dir: std::path::PathBuf,
    pub limits: Limits,
    pub keep: usize,
    pub vars: Option<BTreeMap<String, String>>,
}

impl<S: Origin, T: Deploy> Reconciler<S, T> {
    pub fn new(
        config: &SourceConfig,
        source: S,
        target: T,
        store: Arc<Store>,
        settings: Settings,
    ) -> Self {
        let Settings {
            state_dir,
            limits,
            keep,
            vars,
        } = settings;
        // A commit, a path and the variables fully determine a bundle; the URL or ref that led to the commit do
        // not matter. The verify mode is part of the key so that turning `[source.verify]` on (or making it
        // stricter) checks the revision already running at once, instead of trusting it until the next push.
        let mut build_key = format!(
            "path={};vars={}",
            config.path,
            &bundle::digest_of(&[serde_json::to_value(&vars).unwrap_or_default()])[7..23]
        );
        if let Some(policy) = &config.verify {
            build_key.push_str(&format!(";verify={}", policy.mode.as_str()));
        }
        Reconciler {
            config: config.clone(),
            state_dir,
            source,
            target,
            store,
            limits,
            keep,
            vars,
            build_key,
        }
    }

    /// Where operator controls for this source live (`control`).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// False while another replica holds the leader lease (or the lease cannot be reached).
    pub fn may_apply(&self) -> bool {
        self.target.standby().is_none()
    }

    /// One full pass. Errors are recorded in the store before they are returned.
    pub async fn pass(
        &self,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<PassOutcome, ReconcileError> {
        let record = self.store.record(self.name())?;
        if let Some(suspension) = crate::control::suspension(&self.state_dir, self.name()) {
            return self.suspended(&record, suspension);
        }
        let probe = match cancellable(shutdown, self.source.probe()).await {
            None => return Err(ReconcileError::Cancelled(self.name().into())),
            Some(Ok(p)) => p,
            Some(Err(error)) => {
                return Err(self.fail(&record, None, self.source_error(error)).await)
            }
        };

        if let Some(why) = self.target.standby() {
            return self.standby(&record, &probe, why, shutdown).await;
        }
        // The common case, and the cheap one: the remote still points at what we run, built the same way.
        let same_build = record.build_key.as_deref() == Some(self.build_key.as_str());
        if same_build && record.status.last_good.as_deref() == Some(probe.commit.as_str()) {
            return self.unchanged(&record, &probe.commit).await;
        }
        let revision = self.cached_or_fetch(&record, &probe, shutdown).await?;
        if same_build && record.status.last_good.as_deref() == Some(revision.as_str()) {
            return self.unchanged(&record, &revision).await;
        }

        // Every revision is verified right before it is built: a revision fetched (or cached) earlier gets no pass.
        let prepared = match self.build(Some(&probe), &revision).await {
            Ok(b) => b,
            Err(e) => return Err(self.fail(&record, Some(&revision), e).await),
        };
        if let Some(hold) = gate::hold(&self.config, &self.store, gate::now())? {
            drop(prepared);
            return self.wait(&record, &revision, hold).await;
        }
        let applied = match self
            .target
            .apply(self.name(), &revision, &prepared.bundle, &Mode::Normal)
            .await
        {
            Ok(a) => a,
            Err(error) => {
                let e = self.target_error(&revision, error);
                return Err(self.fail(&record, Some(&revision), e).await);
            }
        };
        let target = self.config.target.to_string();
        let prune = self.config.prune;
        let build_key = self.build_key.clone();
        // Sealed objects count by their stubs: no digest of a decrypted value is kept.
        let applied_objects: Vec<serde_json::Value> = prepared
            .bundle
            .objects
            .iter()
            .zip(&prepared.stored().objects)
            .filter(|(o, _)| crate::deploy::apply_policy(o) != Some("ignore"))
            .map(|(_, stored)| stored.clone())
            .collect();
        let inventory = bundle::inventory_digest(&applied_objects);
        drop(applied_objects);
        for note in &applied.notes {
            tracing::warn!(source = self.name(), revision = %revision, "{note}");
        }
        let notes = applied.notes.clone();
        let rev = revision.clone();
        self.store.update(
            self.name(),
            entry(State::Ready, Some(&revision), None),
            Some((&revision, prepared.stored())),
            self.keep,
            |r| {
                r.status.applied = Some(rev.clone());
                r.status.last_good = Some(rev);
                r.status.state = State::Ready;
                r.status.last_error = None;
                r.status.last_seen = Some(now());
                r.status.object_count = applied.object_count;
                r.target = Some(target);
                r.prune = prune;
                r.build_key = Some(build_key);
                r.status.inventory_digest = Some(inventory);
                r.status.notes = notes;
            },
        )?;
        tracing::info!(source = self.name(), revision = %revision, objects = applied.object_count, digest = %prepared.bundle.digest, "applied");
        drop(prepared);
        outpost_proto::mem::release_free_memory();
        Ok(PassOutcome::Applied {
            revision,
            objects: applied.object_count,
        })
    }

    /// Verifies (when `probe` selected the revision) and builds a revision that is in the local cache.
    async fn build(
        &self,
        probe: Option<&Probe>,
        revision: &str,
    ) -> Result<Prepared, ReconcileError> {
        let input = Input {
            name: self.name(),
            limits: self.limits,
            vars: self.vars.as_ref(),
            decryption: self.config.operations.decryption.as_ref(),
        };
        let (prepared, warnings) = build_revision(&self.source, &input, probe, revision).await?;
        for warning in &warnings {
            tracing::warn!(source = self.name(), revision, "{warning}");
        }
        Ok(prepared)
    }

    /// A stored bundle as the target must see it: sealed objects opened with the source's identities.
    fn stored_bundle(&self, revision: &str) -> Result<Option<Bundle>, ReconcileError> {
        let Some(bundle) = self.store.bundle(self.name(), revision)? else {
            return Ok(None);
        };
        crate::secrets::open(bundle, self.config.operations.decryption.as_deref())
            .map(Some)
            .map_err(|error| ReconcileError::Secrets {
                source_name: self.name().into(),
                revision: revision.into(),
                error: Box::new(error),
            })
    }

    /// The probed commit, fetched only when the Git cache does not hold it already.
    async fn cached_or_fetch(
        &self,
        record: &SourceRecord,
        probe: &Probe,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<String, ReconcileError> {
        if record.status.fetched.as_deref() == Some(probe.commit.as_str())
            && self.source.has_revision(probe).await
        {
            return Ok(probe.commit.clone());
        }
        self.fetch(record, probe, shutdown).await
    }

    async fn fetch(
        &self,
        record: &SourceRecord,
        probe: &Probe,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<String, ReconcileError> {
        let revision = match cancellable(shutdown, self.source.fetch(probe)).await {
            None => return Err(ReconcileError::Cancelled(self.name().into())),
            Some(Ok(r)) => r,
            Some(Err(error)) => {
                return Err(self.fail(record, None, self.source_error(error)).await)
            }
        };
        let rev = revision.clone();
        self.store.update(
            self.name(),
            entry(State::Progressing, Some(&revision), Some("fetched")),
            None,
            self.keep,
            |r| {
                r.status.fetched = Some(rev);
                r.status.last_seen = Some(now());
            },
        )?;
        tracing::info!(source = self.name(), revision = %revision, "fetched");
        Ok(revision)
    }

    fn source_error(&self, error: SourceError) -> ReconcileError {
        ReconcileError::Source {
            source_name: self.name().into(),
            error,
        }
    }

    fn target_error(&self, revision: &str, error: TargetError) -> ReconcileError {
        ReconcileError::Target {
            source_name: self.name().into(),
            revision: revision.into(),
            error,
        }
    }
}

fn entry(state: State, revision: Option<&str>, message: Option<&str>) -> HistoryEntry {
    HistoryEntry {
        at: now(),
        state,
        revision: revision.map(Into::into),
        message: message.map(Into::into),
    }
}

/// A commit id as people read it.
fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

/// Runs `fut` unless shutdown is (or becomes) requested; `None` means it was abandoned.
async fn cancellable<T>(
    shutdown: &watch::Receiver<bool>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut shutdown = shutdown.clone();
    if *shutdown.borrow() {
        return None;
    }
    tokio::select! {
        out = fut => Some(out),
        _ = shutdown.wait_for(|stop| *stop) => None,
    }
}
