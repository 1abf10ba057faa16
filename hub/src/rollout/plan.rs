//! From a start request to a [`Rollout`]: which sites the release selects and which wave each is in. The plan
//! is fixed at the start and stored, so a hub restart or another replica carries out the same waves; an agent
//! enrolled later is not part of it (it gets the release's commit, which a success moves).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::model::{
    matches, Amount, OnFailure, Phase, Release, Rollout, Site, SiteState, SpecError, Strategy,
    Wave, WaveSpec,
};
use crate::store::Labels;

/// Used when a start request names no `progress_deadline`.
pub const DEFAULT_PROGRESS_DEADLINE_MS: u64 = 10 * 60 * 1000;

/// `POST /v1/admin/rollouts`, as the admin API and `outpost-hub rollout start` send it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Defaults to `<release>-<first 12 hex of to_commit>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub release: String,
    pub to_commit: String,
    #[serde(default)]
    pub waves: Vec<WaveSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures_per_wave: Option<Amount>,
    /// Like `"10m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// Like `"5m"`; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    #[serde(default)]
    pub on_failure: OnFailure,
}

fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn duration_ms(field: &str, text: Option<&str>, default: u64) -> Result<u64, SpecError> {
    match text {
        None => Ok(default),
        Some(t) => crate::config::parse_duration(t)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .ok_or_else(|| SpecError::Duration {
                field: field.to_owned(),
                value: t.to_owned(),
            }),
    }
}

/// Checks a rollout id: like an agent id, so it can sit in a URL path unescaped.
pub fn check_id(id: &str) -> Result<(), SpecError> {
    if crate::config::is_agent_id(id) {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "rollout id {id:?} must be 1-253 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// The rollout `request` asks for, over the agents and their operator-set `labels`, at `now_ms`.
/// Sites are the agents whose labels match the release's selector, in id order; waves take them in that order.
pub fn plan(
    request: &StartRequest,
    release: &Release,
    labels: &BTreeMap<String, Labels>,
    now_ms: u64,
) -> Result<Rollout, SpecError> {
    if !is_commit(&request.to_commit) {
        return Err(SpecError::Invalid(format!(
            "to_commit {:?} must be a full commit id, 40 lowercase hex digits (`git rev-parse` prints it)",
            request.to_commit
        )));
    }
    if request.to_commit == release.commit {
        return Err(SpecError::Invalid(format!(
            "release {:?} already runs {}; name another commit",
            release.name, release.commit
        )));
    }
    if request.max_concurrency == Some(0) {
        return Err(SpecError::Invalid(
            "max_concurrency = 0 would never pin a site; leave it out for no limit".into(),
        ));
    }
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", release.name, &request.to_commit[..12]));
    check_id(&id)?;
    let strategy = Strategy {
        waves: request.waves.clone(),
        max_failures: request.max_failures.unwrap_or(Amount::Count(0)),
        max_failures_per_wave: request.max_failures_per_wave.unwrap_or(Amount::Count(0)),
        progress_deadline_ms: duration_ms(
            "progress_deadline",
            request.progress_deadline.as_deref(),
            DEFAULT_PROGRESS_DEADLINE_MS,
        )?,
        soak_ms: duration_ms("soak", request.soak.as_deref(), 0)?,
        max_concurrency: request.max_concurrency,
        on_failure: request.on_failure,
    };
    let selected: Vec<(&String, &Labels)> = labels
        .iter()
        .filter(|(_, l)| matches(&release.selector, l))
        .collect();
    if selected.is_empty() {
        return Err(SpecError::Invalid(format!(
            "release {:?} selects no agent (selector {:?}); label agents with `outpost-hub agents label`",
            release.name, release.selector
        )));
    }
    let waves = waves(&strategy.waves, &selected);
    let mut sites = BTreeMap::new();
    for (index, wave) in waves.iter().enumerate() {
        for id in &wave.sites {
            sites.insert(
                id.clone(),
                Site {
                    wave: index,
                    state: SiteState::Pending,
                    since_ms: now_ms,
                    pinned: false,
                    pinned_ms: None,
                    generation: None,
                    deferred: None,
                    error: None,
                },
            );
        }
    }
    let mut rollout = Rollout {
        id,
        release: release.name.clone(),
        source: release.source.clone(),
        from_commit: release.commit.clone(),
        to_commit: request.to_commit.clone(),
        strategy,
        phase: Phase::Progressing,
        reason: None,
        waves,
        current_wave: 0,
        sites,
        failures: BTreeMap::new(),
        created_ms: now_ms,
        updated_ms: now_ms,
        events: Vec::new(),
    };
    let sizes: Vec<String> = rollout
        .waves
        .iter()
        .map(|w| format!("{} ({})", w.name, w.sites.len()))
        .collect();
    rollout.event(
        now_ms,
        format!(
            "started: {} sites from {} to {} in waves {}",
            rollout.sites.len(),
            short(&rollout.from_commit),
            short(&rollout.to_commit),
            sizes.join(", ")
        ),
    );
    Ok(rollout)
}

/// A commit as `git log --oneline` shows it.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Splits the selected sites into waves (see [`WaveSpec`] for what a size means). Sites no wave took form a
/// last wave, `rest`; empty waves are kept (they pass at once) so wave numbers match the request.
fn waves(specs: &[WaveSpec], selected: &[(&String, &Labels)]) -> Vec<Wave> {
    let total = selected.len();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let candidates: Vec<&String> = selected
            .iter()
            .filter(|(id, labels)| !taken.contains(id.as_str()) && matches(&spec.selector, labels))
            .map(|(id, _)| *id)
            .collect();
        let want = match spec.size {
            None => candidates.len(),
            Some(Amount::Count(_)) => spec.size.map_or(0, |s| s.reach_of(total)),
            Some(percent) => percent.reach_of(total).saturating_sub(taken.len()),
        };
        let sites: Vec<String> = candidates.into_iter().take(want).cloned().collect();
        taken.extend(sites.iter().cloned());
        out.push(Wave {
            name: spec
                .name
                .clone()
                .unwrap_or_else(|| format!("wave-{}", index + 1)),
            sites,
            started_ms: None,
            passed_ms: None,
        });
    }
    let rest: Vec<String> = selected
        .iter()
        .filter(|(id, _)| !taken.contains(id.as_str()))
        .map(|(id, _)| (*id).clone())
        .collect();
    if !rest.is_empty() || out.is_empty() {
        out.push(Wave {
            name: "rest".into(),
            sites: rest,
            started_ms: None,
            passed_ms: None,
        });
    }
    out
}
