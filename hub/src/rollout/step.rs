//! The rollout's decisions: [`step`] takes a stored [`Rollout`], what the hub last heard from each of its
//! sites, and the hub's clock, and returns the next record and the assignment changes to make. No I/O: the
//! driver ([`super::driver`]) reads the fleet, calls it, pins what it says and stores the result.
//!
//! The rules, in the order one step applies them:
//! 1. **Observe** every site pinned to the new commit. It has *received* the commit once a heartbeat reports
//!    running the assignment generation that pinned it (or a later one). Received and reported `Ready` with
//!    the new commit applied: Ready. Reported `Failed` with the new commit fetched, or refused the assignment:
//!    Failed, with its signed `last_error`. Holding the new commit outside its maintenance window (the agent's
//!    `Waiting`, on the wire `Progressing` with an "outside the maintenance windows" error): Deferred, still
//!    pinned, not waited for. Not received and offline (the hub's offline rule: three missed heartbeats): the
//!    site went away before it got the commit, so it is Deferred and re-pinned to the previous commit, neither
//!    failed nor waited for. Received and then offline: it stays in progress, and the deadline counts.
//!    Still not Ready `progress_deadline` after it was pinned: Failed.
//! 2. **Judge**: more Failed sites than `max_failures` (over the rollout) or `max_failures_per_wave` (in a
//!    wave) is a breach: the rollout stops, and unless `on_failure = "pause"`, every site pinned to the new
//!    commit is re-pinned to the previous one.
//! 3. **Advance**: deferred sites that are back online are pinned first; then the current wave's pending
//!    sites, up to `max_concurrency` in progress at once (offline ones are deferred, not pinned). A wave passes
//!    when none of its sites is pending or in progress and its last Ready site has been Ready for `soak`; the
//!    next wave starts in the same step. After the last wave the rollout has succeeded and the release moves
//!    to the new commit; sites deferred by then still get it when they return.

use std::collections::BTreeMap;

use outpost_proto::wire::SourceState;

use super::model::{DeferReason, OnFailure, Phase, Rollout, Site, SiteState};
use super::plan::short;

/// How the agent words a revision held back by maintenance windows (agent `reconcile::gate::Hold::Window`).
pub const WINDOW_HOLD: &str = "outside the maintenance windows";
/// Failed sites a breach message names; the rest are counted.
const NAMED_FAILURES: usize = 5;

/// What the hub last heard from one site, as of the step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// The hub's offline rule ([`crate::status`]): a heartbeat within three intervals.
    pub online: bool,
    /// The assignment generation the site reports running.
    pub generation: u64,
    /// The release's source in its last heartbeat, if it reports one.
    pub source: Option<SourceObservation>,
    /// An assignment the site refused: its generation and the agent's reason.
    pub refused: Option<(u64, String)>,
}

/// The release's source as a site reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObservation {
    pub state: SourceState,
    pub applied: Option<String>,
    pub fetched: Option<String>,
    pub last_error: Option<String>,
}

/// An assignment change the driver makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Pin the release's source in `site`'s assignment to `commit`.
    Pin { site: String, commit: String },
    /// Every wave passed: the release now runs `commit`.
    Settle { commit: String },
}

/// What a site says about the new commit.
enum Outcome {
    Ready,
    Failed(String),
    Waiting,
    Unknown,
}

fn outcome(observation: &Observation, to: &str) -> Outcome {
    let Some(source) = &observation.source else {
        return Outcome::Unknown;
    };
    let fetched_new = source.fetched.as_deref() == Some(to);
    match source.state {
        SourceState::Ready if source.applied.as_deref() == Some(to) => Outcome::Ready,
        SourceState::Failed if fetched_new => Outcome::Failed(
            source
                .last_error
                .clone()
                .unwrap_or_else(|| "reported Failed without an error message".into()),
        ),
        SourceState::Progressing
            if fetched_new
                && source
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(WINDOW_HOLD)) =>
        {
            Outcome::Waiting
        }
        _ => Outcome::Unknown,
    }
}

/// One step of `rollout` at `now_ms` (see the module comment for the rules).
pub fn step(
    rollout: &Rollout,
    observations: &BTreeMap<String, Observation>,
    now_ms: u64,
) -> (Rollout, Vec<Decision>) {
    let mut r = rollout.clone();
    let mut decisions = Vec::new();
    if r.phase.is_rolled_back() {
        return (r, decisions);
    }
    observe(&mut r, observations, now_ms, &mut decisions);
    match r.phase {
        Phase::Progressing => match breach(&r) {
            Some(reason) => match r.strategy.on_failure {
                OnFailure::Pause => {
                    r.event(now_ms, format!("paused: {reason}"));
                    r.phase = Phase::Paused;
                    r.reason = Some(reason);
                }
                OnFailure::Rollback => {
                    rollback(&mut r, Phase::RolledBack, reason, now_ms, &mut decisions)
                }
            },
            None => advance(&mut r, observations, now_ms, &mut decisions),
        },
        // Stragglers of a finished rollout still get the new commit, with no concurrency limit.
        Phase::Succeeded => {
            return_deferred(&mut r, observations, usize::MAX, now_ms, &mut decisions);
        }
        _ => {}
    }
    if r != *rollout {
        r.updated_ms = now_ms;
    }
    (r, decisions)
}

fn pin(r: &mut Rollout, id: &str, now_ms: u64, decisions: &mut Vec<Decision>) {
    let Some(site) = r.sites.get_mut(id) else {
        return;
    };
    site.state = SiteState::InProgress;
    site.since_ms = now_ms;
    site.pinned = true;
    site.pinned_ms = Some(now_ms);
    site.generation = None;
    site.deferred = None;
    decisions.push(Decision::Pin {
        site: id.to_owned(),
        commit: r.to_commit.clone(),
    });
}

fn fail(
    failures: &mut BTreeMap<String, String>,
    id: &str,
    site: &mut Site,
    error: String,
    now: u64,
) {
    site.state = SiteState::Failed;
    site.since_ms = now;
    failures.insert(id.to_owned(), error.clone());
    site.error = Some(error);
}

fn observe(
    r: &mut Rollout,
    observations: &BTreeMap<String, Observation>,
    now_ms: u64,
    decisions: &mut Vec<Decision>,
) {
    let unseen = Observation::default();
    let deadline = r.strategy.progress_deadline_ms;
    let mut events = Vec::new();
    for (id, site) in r.sites.iter_mut() {
        let seen = observations.get(id).unwrap_or(&unseen);
        let before = site.state;
        match (site.state, site.deferred) {
            (SiteState::InProgress, _) => {
                let received = site.generation.is_some_and(|g| seen.generation >= g);
                let refused = seen
                    .refused
                    .as_ref()
                    .filter(|(g, _)| site.generation.is_some_and(|mine| *g >= mine));
                if let Some((g, why)) = refused {
                    let error = format!("refused assignment generation {g}: {why}");
                    fail(&mut r.failures, id, site, error, now_ms);
                } else if !received && !seen.online {
                    site.state = SiteState::Deferred;
                    site.deferred = Some(DeferReason::Offline);
                    site.since_ms = now_ms;
                    site.pinned = false;
                    decisions.push(Decision::Pin {
                        site: id.clone(),
                        commit: r.from_commit.clone(),
                    });
                } else if received {
                    match outcome(seen, &r.to_commit) {
                        Outcome::Ready => {
                            site.state = SiteState::Ready;
                            site.since_ms = now_ms;
                        }
                        Outcome::Failed(e) => fail(&mut r.failures, id, site, e, now_ms),
                        Outcome::Waiting => {
                            site.state = SiteState::Deferred;
                            site.deferred = Some(DeferReason::Window);
                            site.since_ms = now_ms;
                        }
                        Outcome::Unknown => {}
                    }
                }
                let late = site
                    .pinned_ms
                    .is_some_and(|p| now_ms.saturating_sub(p) > deadline);
                if site.state == SiteState::InProgress && late {
                    let what = if received {
                        let error = seen.source.as_ref().and_then(|s| s.last_error.clone());
                        format!(
                            "last error: {}",
                            error.unwrap_or_else(|| "none reported".into())
                        )
                    } else {
                        format!(
                            "it never reported running assignment generation {}",
                            site.generation.unwrap_or(0)
                        )
                    };
                    let error = format!(
                        "did not report {} Ready within the progress deadline of {}s ({what})",
                        short(&r.to_commit),
                        deadline / 1000
                    );
                    fail(&mut r.failures, id, site, error, now_ms);
                }
            }
            (SiteState::Deferred, Some(DeferReason::Window)) => match outcome(seen, &r.to_commit) {
                Outcome::Ready => {
                    site.state = SiteState::Ready;
                    site.deferred = None;
                    site.since_ms = now_ms;
                }
                Outcome::Failed(e) => fail(&mut r.failures, id, site, e, now_ms),
                _ => {}
            },
            (SiteState::Ready, _) => {
                if let Outcome::Failed(e) = outcome(seen, &r.to_commit) {
                    fail(&mut r.failures, id, site, e, now_ms);
                }
            }
            (SiteState::Failed, _) if site.pinned => {
                if let Outcome::Ready = outcome(seen, &r.to_commit) {
                    site.state = SiteState::Ready;
                    site.since_ms = now_ms;
                }
            }
            _ => {}
        }
        if site.state != before {
            let why = match (site.state, site.deferred) {
                (SiteState::Deferred, Some(DeferReason::Offline)) => {
                    " (offline before it received the new commit)".to_owned()
                }
                (SiteState::Deferred, Some(DeferReason::Window)) => {
                    " (outside its maintenance window)".to_owned()
                }
                (SiteState::Failed, _) => format!(": {}", site.error.as_deref().unwrap_or("")),
                _ => String::new(),
            };
            events.push(format!(
                "{id}: {} -> {}{why}",
                before.as_str(),
                site.state.as_str()
            ));
        }
    }
    for text in events {
        r.event(now_ms, text);
    }
}

/// Why the failures breach the strategy, if they do.
fn breach(r: &Rollout) -> Option<String> {
    let failed: Vec<(&String, &Site)> = r
        .sites
        .iter()
        .filter(|(_, s)| s.state == SiteState::Failed)
        .collect();
    let name = |list: &[(&String, &Site)]| {
        let mut named: Vec<String> = list
            .iter()
            .take(NAMED_FAILURES)
            .map(|(id, s)| format!("{id}: {}", s.error.as_deref().unwrap_or("failed")))
            .collect();
        if list.len() > NAMED_FAILURES {
            named.push(format!("and {} more", list.len() - NAMED_FAILURES));
        }
        named.join("; ")
    };
    let allowed = r.strategy.max_failures.allowed_of(r.sites.len());
    if failed.len() > allowed {
        return Some(format!(
            "{} of {} sites failed, more than max_failures = {} allows ({allowed}): {}",
            failed.len(),
            r.sites.len(),
            r.strategy.max_failures,
            name(&failed)
        ));
    }
    for (index, wave) in r.waves.iter().enumerate().take(r.current_wave + 1) {
        let in_wave: Vec<(&String, &Site)> = failed
            .iter()
            .filter(|(_, s)| s.wave == index)
            .copied()
            .collect();
        let allowed = r
            .strategy
            .max_failures_per_wave
            .allowed_of(wave.sites.len());
        if in_wave.len() > allowed {
            return Some(format!(
                "{} of {} sites of wave {:?} failed, more than max_failures_per_wave = {} allows ({allowed}): {}",
                in_wave.len(),
                wave.sites.len(),
                wave.name,
                r.strategy.max_failures_per_wave,
                name(&in_wave)
            ));
        }
    }
    None
}

/// Re-pins every site pinned to the new commit to the previous one and stops the rollout in `phase`.
pub(super) fn rollback(
    r: &mut Rollout,
    phase: Phase,
    reason: String,
    now_ms: u64,
    decisions: &mut Vec<Decision>,
) {
    let mut repinned = 0usize;
    for (id, site) in r.sites.iter_mut().filter(|(_, s)| s.pinned) {
        site.pinned = false;
        site.state = SiteState::RolledBack;
        site.since_ms = now_ms;
        decisions.push(Decision::Pin {
            site: id.clone(),
            commit: r.from_commit.clone(),
        });
        repinned += 1;
    }
    r.event(
        now_ms,
        format!(
            "{}: {reason}; re-pinned {repinned} sites to {}",
            if phase == Phase::Aborted {
                "aborted"
            } else {
                "rolled back"
            },
            short(&r.from_commit)
        ),
    );
    r.phase = phase;
    r.reason = Some(reason);
}

fn in_flight(r: &Rollout) -> usize {
    r.sites
        .values()
        .filter(|s| s.state == SiteState::InProgress)
        .count()
}

/// Pins deferred-offline sites of started waves that are back online, while fewer than `limit` are in
/// progress.
fn return_deferred(
    r: &mut Rollout,
    observations: &BTreeMap<String, Observation>,
    limit: usize,
    now_ms: u64,
    decisions: &mut Vec<Decision>,
) {
    let back: Vec<String> = r
        .sites
        .iter()
        .filter(|(id, s)| {
            s.state == SiteState::Deferred
                && s.deferred == Some(DeferReason::Offline)
                && r.waves[s.wave].started_ms.is_some()
                && observations.get(*id).is_some_and(|o| o.online)
        })
        .map(|(id, _)| id.clone())
        .collect();
    let room = limit.saturating_sub(in_flight(r));
    for id in back.into_iter().take(room) {
        r.event(
            now_ms,
            format!("{id}: back online, pinned to {}", short(&r.to_commit)),
        );
        pin(r, &id, now_ms, decisions);
    }
}

fn advance(
    r: &mut Rollout,
    observations: &BTreeMap<String, Observation>,
    now_ms: u64,
    decisions: &mut Vec<Decision>,
) {
    let limit = r
        .strategy
        .max_concurrency
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    return_deferred(r, observations, limit, now_ms, decisions);
    let online = |id: &str| observations.get(id).is_some_and(|o| o.online);
    loop {
        let index = r.current_wave;
        if index >= r.waves.len() {
            r.phase = Phase::Succeeded;
            r.event(
                now_ms,
                format!("succeeded: the release now runs {}", short(&r.to_commit)),
            );
            decisions.push(Decision::Settle {
                commit: r.to_commit.clone(),
            });
            return;
        }
        if r.waves[index].started_ms.is_none() {
            r.waves[index].started_ms = Some(now_ms);
            let text = format!(
                "wave {:?} started ({} sites)",
                r.waves[index].name,
                r.waves[index].sites.len()
            );
            r.event(now_ms, text);
        }
        let mut busy = in_flight(r);
        for id in r.waves[index].sites.clone() {
            if r.sites.get(&id).map(|s| s.state) != Some(SiteState::Pending) {
                continue;
            }
            if !online(&id) {
                if let Some(site) = r.sites.get_mut(&id) {
                    site.state = SiteState::Deferred;
                    site.deferred = Some(DeferReason::Offline);
                    site.since_ms = now_ms;
                }
                r.event(
                    now_ms,
                    format!("{id}: Pending -> Deferred (offline when its wave reached it)"),
                );
            } else if busy < limit {
                pin(r, &id, now_ms, decisions);
                busy += 1;
            }
        }
        let members: Vec<&Site> = r.waves[index]
            .sites
            .iter()
            .filter_map(|id| r.sites.get(id))
            .collect();
        if members
            .iter()
            .any(|s| matches!(s.state, SiteState::Pending | SiteState::InProgress))
        {
            return;
        }
        let last_ready = members
            .iter()
            .filter(|s| s.state == SiteState::Ready)
            .map(|s| s.since_ms)
            .max();
        if last_ready.is_some_and(|at| now_ms.saturating_sub(at) < r.strategy.soak_ms) {
            return;
        }
        r.waves[index].passed_ms = Some(now_ms);
        let text = format!("wave {:?} passed", r.waves[index].name);
        r.event(now_ms, text);
        r.current_wave += 1;
    }
}
