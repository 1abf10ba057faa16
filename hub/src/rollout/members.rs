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

use super::driver;
use super::model::{self, Rollout};
use crate::backend::BackendError;
use crate::state::HubState;
use crate::store::Labels;

/// Per release: the commit the sites were seen pinned at, and those sites.
#[derive(Debug, Default)]
pub struct Members(Mutex<BTreeMap<String, (String, BTreeSet<String>)>>);

impl Members {
    fn known(&self, release: &str, commit: &str) -> BTreeSet<String> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(release) {
            Some((c, sites)) if c == commit => sites.clone(),
            _ => BTreeSet::new(),
        }
    }

    pub(super) fn add(&self, release: &str, commit: &str, site: String) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(release.to_owned())
            .or_insert_with(|| (commit.to_owned(), BTreeSet::new()));
        if entry.0 != commit {
            *entry = (commit.to_owned(), BTreeSet::new());
        }
        entry.1.insert(site);
    }
}

/// Pins every site a release selects, and no active rollout of it holds, at the release's commit. Returns how
/// many sites were checked in the store (newcomers, or all of a release whose commit changed).
pub async fn reconcile(state: &HubState, rollouts: &[Rollout]) -> Result<usize, BackendError> {
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
        let known = state.release_members.known(&release.name, &release.commit);
        for id in &ids {
            let site_labels = labels.get(id).unwrap_or(&none);
            if known.contains(id)
                || held.contains(id.as_str())
                || !model::matches(&release.selector, site_labels)
            {
                continue;
            }
            driver::pin(state, id, &release.source, &release.commit, site_labels).await?;
            state
                .release_members
                .add(&release.name, &release.commit, id.clone());
            checked += 1;
        }
    }
    Ok(checked)
}
