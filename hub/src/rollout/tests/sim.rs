//! A small simulated fleet whose agents react to their assignments as agents do (a generation is acknowledged
//! at the next heartbeat, a commit applied after it), for the tests of [`crate::rollout::step`].

use std::collections::BTreeMap;

use outpost_proto::wire::{SourceSpec, SourceState};

use crate::rollout::model::{Amount, Release, Rollout, SiteState, WaveSpec};
use crate::rollout::plan::{plan, StartRequest};
use crate::rollout::step::{step, Decision, Observation, SourceObservation, WINDOW_HOLD};
use crate::store::Labels;

pub(super) const FROM: &str = "1111111111111111111111111111111111111111";
pub(super) const TO: &str = "2222222222222222222222222222222222222222";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Agent {
    /// Applies whatever it is pinned to and reports it Ready.
    Good,
    /// Reports the new commit Failed.
    Bad,
    /// Sends no heartbeats.
    Offline,
    /// Acknowledges the generation but holds the new commit outside its window.
    Window,
    /// Acknowledges the generation and never finishes.
    Slow,
}

pub(super) struct Sim {
    pub(super) rollout: Rollout,
    pub(super) agents: BTreeMap<String, Agent>,
    /// Per site: the generation and commit the hub pinned last.
    pub(super) assigned: BTreeMap<String, (u64, String)>,
    pub(super) generation: u64,
    /// Every Pin decision in order, with the step's time.
    pub(super) pins: Vec<(u64, String, String)>,
    pub(super) last: BTreeMap<String, Observation>,
}

pub(super) fn release(selector: Labels) -> Release {
    Release {
        name: "shop".into(),
        source: SourceSpec {
            commit: Some(FROM.into()),
            ..SourceSpec::new("shop", "https://git.example.com/shop.git", "kubernetes")
        },
        selector,
        commit: FROM.into(),
        updated_ms: 0,
    }
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `n` sites `s00`..; the first `canaries` carry `ring=canary`, all carry `app=shop`.
pub(super) fn fleet(n: usize, canaries: usize) -> BTreeMap<String, Labels> {
    (0..n)
        .map(|i| {
            let mut l = labels(&[("app", "shop")]);
            if i < canaries {
                l.insert("ring".into(), "canary".into());
            }
            (format!("s{i:02}"), l)
        })
        .collect()
}

pub(super) fn wave(size: Option<&str>, selector: &[(&str, &str)]) -> WaveSpec {
    WaveSpec {
        name: None,
        selector: labels(selector),
        size: size.map(|s| Amount::parse("size", s).unwrap()),
    }
}

pub(super) fn request(waves: Vec<WaveSpec>) -> StartRequest {
    StartRequest {
        release: "shop".into(),
        to_commit: TO.into(),
        waves,
        progress_deadline: Some("60s".into()),
        ..StartRequest::default()
    }
}

impl Sim {
    pub(super) fn new(request: &StartRequest, sites: &BTreeMap<String, Labels>) -> Sim {
        let rollout = plan(request, &release(labels(&[("app", "shop")])), sites, 0).unwrap();
        Sim {
            agents: sites.keys().map(|id| (id.clone(), Agent::Good)).collect(),
            assigned: sites
                .keys()
                .map(|id| (id.clone(), (1, FROM.to_owned())))
                .collect(),
            rollout,
            generation: 1,
            pins: Vec::new(),
            last: BTreeMap::new(),
        }
    }

    pub(super) fn set(&mut self, id: &str, agent: Agent) {
        self.agents.insert(id.to_owned(), agent);
    }

    /// What the hub knows: an offline agent's last heartbeat stays, marked offline.
    pub(super) fn observations(&mut self) -> BTreeMap<String, Observation> {
        let mut out = BTreeMap::new();
        for (id, agent) in &self.agents {
            if *agent == Agent::Offline {
                if let Some(last) = self.last.get(id) {
                    out.insert(
                        id.clone(),
                        Observation {
                            online: false,
                            ..last.clone()
                        },
                    );
                }
                continue;
            }
            let (generation, commit) = self.assigned[id].clone();
            let new = commit == TO;
            let source = |state, applied: &str, error: Option<String>| SourceObservation {
                state,
                applied: Some(applied.to_owned()),
                fetched: Some(commit.clone()),
                last_error: error,
            };
            let observation = match agent {
                Agent::Offline => continue,
                Agent::Good => Observation {
                    online: true,
                    generation,
                    source: Some(source(SourceState::Ready, &commit, None)),
                    refused: None,
                },
                Agent::Bad if new => Observation {
                    online: true,
                    generation,
                    source: Some(source(
                        SourceState::Failed,
                        FROM,
                        Some("apply failed: bad manifest".into()),
                    )),
                    refused: None,
                },
                Agent::Bad => Observation {
                    online: true,
                    generation,
                    source: Some(source(SourceState::Ready, &commit, None)),
                    refused: None,
                },
                Agent::Window if new => Observation {
                    online: true,
                    generation,
                    source: Some(source(
                        SourceState::Progressing,
                        FROM,
                        Some(format!(
                            "{WINDOW_HOLD} (Sat 02:00-04:00 UTC); the next opens at ..."
                        )),
                    )),
                    refused: None,
                },
                Agent::Window | Agent::Slow => Observation {
                    online: true,
                    generation,
                    source: Some(source(SourceState::Progressing, FROM, None)),
                    refused: None,
                },
            };
            out.insert(id.clone(), observation);
        }
        self.last.extend(
            out.iter()
                .filter(|(_, o)| o.online)
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        out
    }

    /// One step at `now` (seconds), then the pins applied as the driver does.
    pub(super) fn tick(&mut self, now_s: u64) -> Vec<Decision> {
        let now = now_s * 1000;
        let observations = self.observations();
        let (mut next, decisions) = step(&self.rollout, &observations, now);
        self.apply(&mut next, &decisions, now);
        self.rollout = next;
        decisions
    }

    pub(super) fn apply(&mut self, next: &mut Rollout, decisions: &[Decision], now: u64) {
        for decision in decisions {
            if let Decision::Pin { site, commit } = decision {
                self.generation += 1;
                self.assigned
                    .insert(site.clone(), (self.generation, commit.clone()));
                if commit == TO {
                    if let Some(s) = next.sites.get_mut(site) {
                        s.generation = Some(self.generation);
                    }
                }
                self.pins.push((now, site.clone(), commit.clone()));
            }
        }
    }

    pub(super) fn state(&self, id: &str) -> SiteState {
        self.rollout.sites[id].state
    }

    pub(super) fn pinned_to_new(&self) -> Vec<String> {
        self.assigned
            .iter()
            .filter(|(_, (_, c))| c == TO)
            .map(|(id, _)| id.clone())
            .collect()
    }
}
