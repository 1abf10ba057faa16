//! The task that carries rollouts out: every `rollout_interval`, and soon after heartbeats arrive, it reads the
//! fleet once, and for each active rollout takes its lease in the store, runs [`step`], turns the decisions
//! into assignments ([`pin`]) and stores the new record (which gives the lease up). A replica that cannot
//! take a lease skips that rollout: another one is stepping it.
//!
//! Pinning writes the site's assignment through the same store call as the admin API, so the generation only
//! grows and the agent takes it with its next heartbeat reply; the generation is kept in the site's record,
//! which is how the next step knows the site *received* the commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use outpost_proto::wire::{Assignment, SourceSpec};

use super::model::{Release, Rollout};
use super::step::{step, Decision, Observation, SourceObservation};
use crate::backend::BackendError;
use crate::state::{now_ms, HubState};
use crate::status::AgentView;
use crate::store::Labels;

/// How long a replica may hold a rollout's lease in one step before another may take it over.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How long an operator's pause, resume or abort waits for a step in flight to give the lease up.
pub const CONTROL_WAIT: Duration = Duration::from_secs(5);
/// How often an operator's change asks again for a lease held by a step in flight.
const CONTROL_RETRY: Duration = Duration::from_millis(50);
/// Heartbeats wake the driver, but never more often than this: a large fleet sends many per second.
pub const MIN_STEP_GAP: Duration = Duration::from_millis(200);

/// The driver until the hub stops.
pub fn spawn(state: Arc<HubState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = state.config.rollout_interval;
        loop {
            let _ = tokio::time::timeout(interval, state.rollout_wake.notified()).await;
            if let Err(e) = tick(&state).await {
                tracing::warn!("rollouts not stepped this time: {e}");
            }
            tokio::time::sleep(MIN_STEP_GAP.min(interval)).await;
        }
    })
}

/// One pass over every active rollout; returns how many this replica stepped.
pub async fn tick(state: &HubState) -> Result<usize, BackendError> {
    let rollouts = state.store.rollouts().await?;
    super::members::reconcile(state, &rollouts).await?;
    let active: Vec<String> = rollouts
        .iter()
        .filter(|r| r.is_active())
        .map(|r| r.id.clone())
        .collect();
    state.remember_rollouts(rollouts);
    if active.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let views = state.views(now).await?;
    let views: BTreeMap<&str, &AgentView> =
        views.iter().map(|v| (v.agent_id.as_str(), v)).collect();
    let mut stepped = 0;
    for id in active {
        let owner = state.rollout_owner.as_str();
        let Some(current) = state
            .store
            .lease_rollout(&id, owner, now, millis(LEASE_TTL))
            .await?
        else {
            continue;
        };
        let observations = observe(&views, &current);
        let (mut next, decisions) = step(&current, &observations, now);
        if let Err(e) = apply(state, &mut next, &decisions).await {
            // Give the lease up unchanged; the next tick decides again (pins already made are found in place).
            state.store.save_rollout(current, owner).await?;
            return Err(e);
        }
        state.store.save_rollout(next, owner).await?;
        stepped += 1;
    }
    if stepped > 0 {
        state.remember_rollouts(state.store.rollouts().await?);
    }
    Ok(stepped)
}

/// What the hub last heard from each of the rollout's sites, about the release's source.
pub fn observe(
    views: &BTreeMap<&str, &AgentView>,
    rollout: &Rollout,
) -> BTreeMap<String, Observation> {
    let name = rollout.source.name.as_str();
    rollout
        .sites
        .keys()
        .filter_map(|id| {
            let view = views.get(id.as_str())?;
            let source = view
                .sources
                .iter()
                .find(|s| s.name == name)
                .map(|s| SourceObservation {
                    state: s.state,
                    applied: s.applied_revision.clone(),
                    fetched: s.fetched_revision.clone(),
                    last_error: s.last_error.clone(),
                });
            Some((
                id.clone(),
                Observation {
                    online: view.online,
                    generation: view.assignment_generation.unwrap_or(0),
                    source,
                    refused: view
                        .assignment_error
                        .as_ref()
                        .map(|e| (e.generation, e.reason.clone())),
                },
            ))
        })
        .collect()
}

/// Makes the decisions of a step; the generations that pin the new commit go into `rollout`'s sites.
pub async fn apply(
    state: &HubState,
    rollout: &mut Rollout,
    decisions: &[Decision],
) -> Result<(), BackendError> {
    let labels = if decisions.iter().any(|d| matches!(d, Decision::Pin { .. })) {
        state.store.labels().await?.into_iter().collect()
    } else {
        BTreeMap::new()
    };
    for decision in decisions {
        match decision {
            Decision::Pin { site, commit } => {
                let site_labels = labels.get(site).unwrap_or(&NO_LABELS);
                let generation = pin(state, site, &rollout.source, commit, site_labels).await?;
                if *commit == rollout.to_commit {
                    if let Some(s) = rollout.sites.get_mut(site) {
                        s.generation = Some(generation);
                    }
                }
            }
            Decision::Settle { commit } => {
                let releases = state.store.releases().await?;
                if let Some(mut release) = releases.into_iter().find(|r| r.name == rollout.release)
                {
                    release.commit = commit.clone();
                    release.updated_ms = now_ms();
                    state.store.put_release(release).await?;
                }
            }
        }
    }
    Ok(())
}

/// Written in a release's `target`, `path` or `vars` values, replaced by each site's agent id (a per-site
/// folder).
pub const AGENT_ID_VAR: &str = "${agent_id}";
/// Written as a whole `vars` value, `${label:KEY}` is replaced by the site's operator-set label `KEY`: the
/// per-site values of a release (the sites' labels are its table). A site without that label gets no such
/// variable, so a `${VAR:=default}` in the manifests applies.
const LABEL_VAR: (&str, &str) = ("${label:", "}");

static NO_LABELS: Labels = Labels::new();

/// The release's source for `site`, its ref replaced by `commit`, [`AGENT_ID_VAR`] by the site's id and
/// `${label:KEY}` vars by the site's labels.
pub fn pinned(source: &SourceSpec, commit: &str, site: &str, labels: &Labels) -> SourceSpec {
    let vars = source.vars.as_ref().map(|vars| {
        vars.iter()
            .filter_map(|(name, value)| {
                let label = value
                    .strip_prefix(LABEL_VAR.0)
                    .and_then(|v| v.strip_suffix(LABEL_VAR.1));
                let value = match label {
                    Some(key) => labels.get(key)?.clone(),
                    None => value.replace(AGENT_ID_VAR, site),
                };
                Some((name.clone(), value))
            })
            .collect()
    });
    SourceSpec {
        branch: None,
        tag: None,
        semver: None,
        commit: Some(commit.to_owned()),
        target: source.target.replace(AGENT_ID_VAR, site),
        path: source.path.as_ref().map(|p| p.replace(AGENT_ID_VAR, site)),
        vars,
        ..source.clone()
    }
}

/// Pins `source` at `commit` in `site`'s assignment (its other sources stay); returns the generation that
/// carries it. Already pinned so: the generation it has, nothing written.
pub async fn pin(
    state: &HubState,
    site: &str,
    source: &SourceSpec,
    commit: &str,
    labels: &Labels,
) -> Result<u64, BackendError> {
    let from_config = state.config.assignments.for_agent(site);
    let stored = state.store.assignment(site).await?;
    let current = crate::heartbeat::newest(from_config, stored.as_ref());
    let wanted = pinned(source, commit, site, labels);
    let mut sources = current.map(|a| a.sources.clone()).unwrap_or_default();
    if let Some(current) = current {
        if sources.contains(&wanted) {
            return Ok(current.generation);
        }
    }
    match sources.iter_mut().find(|s| s.name == wanted.name) {
        Some(slot) => *slot = wanted,
        None => sources.push(wanted),
    }
    let at_least = from_config.map_or(1, |a| a.generation + 1);
    state
        .store
        .set_assignment(site, Assignment::new(1, sources), at_least)
        .await
}

/// Pins every site of `release` to its commit (a release created or changed); returns how many were
/// written or already so.
pub async fn pin_release(
    state: &HubState,
    release: &Release,
    sites: &[String],
) -> Result<usize, BackendError> {
    let labels: BTreeMap<String, Labels> = state.store.labels().await?.into_iter().collect();
    for site in sites {
        let site_labels = labels.get(site).unwrap_or(&NO_LABELS);
        pin(state, site, &release.source, &release.commit, site_labels).await?;
        state
            .release_members
            .add(&release.name, &release.commit, site.clone());
    }
    Ok(sites.len())
}

/// Runs an operator's change on a stored rollout under its lease, waiting up to [`CONTROL_WAIT`] for a step
/// in flight; the change returns the decisions to make (an abort's re-pins).
pub async fn control<F, E>(
    state: &HubState,
    id: &str,
    owner: &str,
    change: F,
) -> Result<Option<Result<Rollout, E>>, BackendError>
where
    F: FnOnce(&mut Rollout) -> Result<Vec<Decision>, E>,
{
    let deadline = tokio::time::Instant::now() + CONTROL_WAIT;
    let mut current = loop {
        let now = now_ms();
        if let Some(r) = state
            .store
            .lease_rollout(id, owner, now, millis(LEASE_TTL))
            .await?
        {
            break r;
        }
        if !state.store.rollouts().await?.iter().any(|r| r.id == id) {
            return Ok(None);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BackendError::Unavailable(format!(
                "rollout {id:?} is being stepped by another hub replica; try again"
            )));
        }
        tokio::time::sleep(CONTROL_RETRY).await;
    };
    let before = current.clone();
    match change(&mut current) {
        Ok(decisions) => {
            if let Err(e) = apply(state, &mut current, &decisions).await {
                state.store.save_rollout(before, owner).await?;
                return Err(e);
            }
            state.store.save_rollout(current.clone(), owner).await?;
            state.rollout_wake.notify_one();
            Ok(Some(Ok(current)))
        }
        Err(e) => {
            state.store.save_rollout(before, owner).await?;
            Ok(Some(Err(e)))
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
