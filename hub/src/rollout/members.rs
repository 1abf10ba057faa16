//! A release's sites as the fleet changes: an agent enrolled after the release was set, or labelled into its
//! selector later, gets the release pinned at the release's commit at the driver's next tick, instead of
//! waiting for the next `release set`.
//!
//! Sites of an active rollout of the release are the rollout's to move and are left alone. Each replica keeps
//! which sites it has seen pinned per release and commit, so after the first pass only newcomers cost a store
//! read; pinning is idempotent (a site already pinned so is not written), so replicas doing it twice is harmless.
//! A site labelled out of a selector keeps what it runs: withdrawing a source is the operator's call
//! (`outpost-hub agents assign`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::driver;
use super::model::{self, Rollout};
use crate::backend::BackendError;
use crate::state::HubState;
use crate::store::Labels;

/// Per release: the commit the sites were seen pinned at, and those sites; and when the last pass ran.
#[derive(Debug, Default)]
pub struct Members {
    known: Mutex<BTreeMap<String, (String, BTreeSet<String>)>>,
    last_pass: Mutex<Option<Instant>>,
}

impl Members {
    /// Of `candidates`, those not yet seen pinned to `release` at `commit`.
    fn unknown<'a>(
        &self,
        release: &str,
        commit: &str,
        candidates: impl Iterator<Item = &'a String>,
    ) -> Vec<&'a String> {
        let map = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(release) {
            Some((c, sites)) if c == commit => {
                candidates.filter(|id| !sites.contains(*id)).collect()
            }
            _ => candidates.collect(),
        }
    }

    /// True at most once per `every`: the driver wakes on heartbeats, newcomers need not be found that often.
    fn due(&self, every: Duration) -> bool {
        let mut last = self
            .last_pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < every) {
            return false;
        }
        *last = Some(now);
        true
    }

    pub(super) fn add(&self, release: &str, commit: &str, site: String) {
        let mut map = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(release.to_owned())
            .or_insert_with(|| (commit.to_owned(), BTreeSet::new()));
        if entry.0 != commit {
            *entry = (commit.to_owned(), BTreeSet::new());
        }
        entry.1.insert(site);
    }
}

/// Pins every site a release selects, and no active rollout of it holds, at the release's commit, at most once
/// per `rollout_interval`. Returns how many sites were checked in the store (newcomers, or all of a release
/// whose commit changed).
pub async fn reconcile(state: &HubState, rollouts: &[Rollout]) -> Result<usize, BackendError> {
    if !state.release_members.due(state.config.rollout_interval) {
        return Ok(0);
    }
    let releases = state.store.releases().await?;
    if releases.is_empty() {
        return Ok(0);
    }
    let labels: BTreeMap<String, Labels> = state.store.labels().await?.into_iter().collect();
    let ids: Vec<String> = state.registry().iter().map(|k| k.id.clone()).collect();
    let none = Labels::new();
    let mut checked = 0;
    for release in releases {
        let held: BTreeSet<&str> = rollouts
            .iter()
            .filter(|r| r.release == release.name && r.is_active())
            .flat_map(|r| r.sites.keys().map(String::as_str))
            .collect();
        let selected = ids.iter().filter(|id| {
            !held.contains(id.as_str())
                && model::matches(&release.selector, labels.get(*id).unwrap_or(&none))
        });
        let newcomers = state
            .release_members
            .unknown(&release.name, &release.commit, selected);
        for id in newcomers {
            let site_labels = labels.get(id).unwrap_or(&none);
            driver::pin(state, id, &release.source, &release.commit, site_labels).await?;
            state
                .release_members
                .add(&release.name, &release.commit, id.clone());
            checked += 1;
        }
    }
    Ok(checked)
}
