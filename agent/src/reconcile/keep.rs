//! The paths of a pass that keep the site on its last good revision: re-applying it when nothing new can be
//! (unchanged, offline, after a reboot), recording a failure and carrying out the failure policy (a rollback
//! or a re-apply), and standing by while another replica holds the leader lease.

use super::gate::{self, Hold};
use super::{
    entry, error_policy, short, Deploy, Failure, Origin, PassOutcome, ReconcileError, Reconciler,
    Recovery,
};
use crate::deploy::{Applied, Drift, Leadership, Mode};
use crate::report::State;
use crate::source::Probe;
use crate::store::{now, SourceRecord};
use tokio::sync::watch;

impl<S: Origin, T: Deploy> Reconciler<S, T> {
    /// Re-applies the stored last good bundle without touching the network: what `outpost run` does first after a
    /// reboot. Returns the revision applied, if the source has one.
    pub async fn restore_last_good(&self) -> Result<Option<String>, ReconcileError> {
        if !gate::may_touch(&self.config, gate::now()) {
            return Ok(None);
        }
        let Some(revision) = self.store.record(self.name())?.status.last_good else {
            return Ok(None);
        };
        self.reapply(&revision).await?;
        Ok(Some(revision))
    }

    /// Makes the target hold the stored bundle of `revision` again. The target first says what drifted, as cheaply
    /// as it can (a fingerprint, one metadata list per kind); the bundle is loaded and re-applied only when something
    /// did, and then only the drifted objects.
    pub(super) async fn reapply(&self, revision: &str) -> Result<Applied, ReconcileError> {
        let drift = self
            .target
            .drifted(self.name(), revision)
            .await
            .map_err(|error| self.target_error(revision, error))?;
        if drift == Drift::None {
            return Ok(Applied::default());
        }
        let Some(bundle) = self.stored_bundle(revision)? else {
            return Ok(Applied::default());
        };
        let applied = match &drift {
            Drift::Objects(objects) => {
                self.target
                    .correct(self.name(), revision, &bundle, objects)
                    .await
            }
            _ => {
                self.target
                    .apply(self.name(), revision, &bundle, &Mode::Normal)
                    .await
            }
        };
        applied.map_err(|error| self.target_error(revision, error))
    }

    pub(super) async fn unchanged(
        &self,
        record: &SourceRecord,
        revision: &str,
    ) -> Result<PassOutcome, ReconcileError> {
        // Outside its windows with `apply_outside_windows = "none"`, not even drift is corrected.
        let applied = if gate::may_touch(&self.config, gate::now()) {
            match self.reapply(revision).await {
                Ok(a) => a,
                Err(e) => return Err(self.fail(record, Some(revision), e).await),
            }
        } else {
            Applied::default()
        };
        if applied.changed {
            tracing::info!(
                source = self.name(),
                revision,
                corrected = applied.drift_corrected,
                "target had drifted: last good re-applied"
            );
        }
        for note in &applied.notes {
            tracing::warn!(source = self.name(), revision, "{note}");
        }
        if applied.drift_corrected > 0 || !applied.notes.is_empty() {
            let corrected = applied.drift_corrected as u64;
            let notes = applied.notes.clone();
            let message = format!("drift corrected on {corrected} objects");
            self.store.update(
                self.name(),
                entry(State::Ready, Some(revision), Some(&message)),
                None,
                self.keep,
                |r| {
                    r.status.drift_corrected += corrected;
                    if !notes.is_empty() {
                        r.status.notes = notes;
                    }
                },
            )?;
        }
        // Only write to the store when the state changes: an unchanged poll must not wear the disk.
        if record.status.state != State::Ready
            || record.status.last_error.is_some()
            || record.status.applied.as_deref() != Some(revision)
            || record.status.fetched.as_deref() != Some(revision)
        {
            let rev = revision.to_string();
            self.store.update(
                self.name(),
                entry(State::Ready, Some(revision), None),
                None,
                self.keep,
                |r| {
                    r.status.state = State::Ready;
                    r.status.last_error = None;
                    r.status.applied = Some(rev.clone());
                    r.status.fetched = Some(rev);
                    r.status.last_seen = Some(now());
                },
            )?;
        }
        Ok(PassOutcome::Unchanged {
            revision: revision.to_string(),
        })
    }

    /// Records a failed pass and carries out [`error_policy`]'s recovery. Returns the error for the caller.
    pub(super) async fn fail(
        &self,
        record: &SourceRecord,
        revision: Option<&str>,
        error: ReconcileError,
    ) -> ReconcileError {
        let mut message = error.to_string();
        let next = error_policy(
            &error,
            Failure {
                last_good: record.status.last_good.as_deref(),
                revision,
                rollback: self.config.rollback,
            },
        );
        match &next.recovery {
            Recovery::RollBack { from, to } => match self.rollback(from, to).await {
                Ok(()) => {
                    message = format!(
                        "rolled back from {} to {}: {message}",
                        short(from),
                        short(to)
                    )
                }
                Err(e) => {
                    message = format!("{message}; rolling back to {} failed too: {e}", short(to))
                }
            },
            Recovery::Reapply(last_good) if gate::may_touch(&self.config, gate::now()) => {
                if let Err(e) = self.reapply(last_good).await {
                    tracing::warn!(source = self.name(), revision = %last_good, "re-applying the last good revision failed: {e}");
                }
            }
            Recovery::Reapply(_) | Recovery::Leave => {}
        }
        let state = next.state;
        tracing::warn!(source = self.name(), state = state.as_str(), "{message}");
        // Record only when something changed, so a long outage does not fill the history with copies.
        if record.status.state != state
            || record.status.last_error.as_deref() != Some(message.as_str())
        {
            let msg = message.clone();
            let applied = record.status.last_good.clone();
            let result = self.store.update(
                self.name(),
                entry(state, revision, Some(&message)),
                None,
                self.keep,
                |r| {
                    r.status.state = state;
                    r.status.last_error = Some(msg);
                    r.status.applied = applied;
                },
            );
            if let Err(e) = result {
                tracing::error!(source = self.name(), "cannot record the failure: {e}");
            }
        }
        error
    }

    /// Re-applies the last good bundle in full after `from` failed, removing what `from` created.
    async fn rollback(&self, from: &str, to: &str) -> Result<(), ReconcileError> {
        let Some(bundle) = self.stored_bundle(to)? else {
            return Ok(());
        };
        let mode = Mode::Rollback { from: from.into() };
        self.target
            .apply(self.name(), to, &bundle, &mode)
            .await
            .map_err(|error| self.target_error(to, error))?;
        Ok(())
    }

    /// A replica without the leader lease keeps its Git cache current, so that it can apply at once when it takes
    /// over, but leaves the cluster alone.
    pub(super) async fn standby(
        &self,
        record: &SourceRecord,
        probe: &Probe,
        why: Leadership,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<PassOutcome, ReconcileError> {
        let revision = self.cached_or_fetch(record, probe, shutdown).await?;
        // A follower is Suspended; a replica that cannot even reach the lease keeps running the last good state
        // and says why.
        let (state, error) = match why {
            Leadership::Unknown(reason) => (State::Stale, Some(reason)),
            _ => (State::Suspended, None),
        };
        if record.status.state != state || record.status.last_error != error {
            let message = error
                .clone()
                .unwrap_or_else(|| "standby: another replica holds the leader lease".into());
            self.store.update(
                self.name(),
                entry(state, Some(&revision), Some(&message)),
                None,
                self.keep,
                |r| {
                    r.status.state = state;
                    r.status.last_error = error;
                    r.status.last_seen = Some(now());
                },
            )?;
        }
        Ok(PassOutcome::Standby { revision })
    }

    /// A new revision that may not be applied yet ([`Hold`]): the site keeps its last good revision (drift still
    /// corrected, unless `apply_outside_windows = "none"` says otherwise) and the status says what it waits for.
    pub(super) async fn wait(
        &self,
        record: &SourceRecord,
        revision: &str,
        hold: Hold,
    ) -> Result<PassOutcome, ReconcileError> {
        if let Some(last_good) = &record.status.last_good {
            if gate::may_touch(&self.config, gate::now()) {
                if let Err(e) = self.reapply(last_good).await {
                    tracing::warn!(source = self.name(), revision = %last_good, "re-applying the last good revision failed: {e}");
                }
            }
        }
        let why = hold.to_string();
        if record.status.state != State::Waiting
            || record.status.last_error.as_deref() != Some(why.as_str())
        {
            tracing::info!(source = self.name(), revision, "not applied yet: {why}");
            let message = why.clone();
            self.store.update(
                self.name(),
                entry(State::Waiting, Some(revision), Some(&why)),
                None,
                self.keep,
                |r| {
                    r.status.state = State::Waiting;
                    r.status.last_error = Some(message);
                    r.status.last_seen = Some(now());
                },
            )?;
        }
        Ok(PassOutcome::Waiting {
            revision: revision.to_string(),
            why,
        })
    }

    /// Suspended by the operator: the last good revision stays applied and nothing else happens; the status says
    /// who suspended it and why (heartbeats carry it as `Suspended`).
    pub(super) fn suspended(
        &self,
        record: &SourceRecord,
        suspension: crate::control::Suspension,
    ) -> Result<PassOutcome, ReconcileError> {
        let why = format!(
            "{suspension}; `outpost resume --source {}` resumes it",
            self.name()
        );
        if record.status.state != State::Suspended
            || record.status.last_error.as_deref() != Some(why.as_str())
        {
            tracing::info!(source = self.name(), "{why}");
            let message = why.clone();
            self.store.update(
                self.name(),
                entry(State::Suspended, None, Some(&why)),
                None,
                self.keep,
                |r| {
                    r.status.state = State::Suspended;
                    r.status.last_error = Some(message);
                },
            )?;
        }
        Ok(PassOutcome::Suspended { why })
    }
}
