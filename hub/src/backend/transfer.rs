//! `outpost-hub export` / `import`: move a hub between stores (embedded <-> PostgreSQL) through a file of
//! JSON lines, one record each, so a large fleet streams through without being held whole.
//!
//! Lines, in the order they are written and must be read: `{"enrollment": ...}`, `{"issued_token": ...}`
//! (bootstrap tokens by hash, used or not), `{"used_token": ...}`, `{"labels": ...}`, `{"assignment": ...}`,
//! `{"release": ...}`, `{"rollout": ...}` (with every site's state, so a rollout goes on where it was), then
//! per agent its kept heartbeats oldest first, `{"heartbeat": ...}`. Importing replays them through the target
//! store's own rules (a heartbeat goes in only above the last seq; a token stays one agent's; a rollout already
//! there is kept), so importing twice adds no heartbeat or enrollment (an assignment's generation would rise by
//! one, as for any new assignment).

use std::io::{BufRead, Write};

use bytes::Bytes;
use outpost_proto::wire::Assignment;
use serde::{Deserialize, Serialize};

use super::{BackendError, FleetStore};
use crate::rollout::{Release, Rollout};
use crate::store::{Enrolled, Enrollment, IssuedToken, Labels, Recorded};

/// Heartbeats exported per agent at most: the whole kept history of the largest allowed `history`.
const PAGE: usize = 100;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Enrollment(Enrollment),
    IssuedToken(IssuedToken),
    UsedToken {
        token_sha256: String,
        agent_id: String,
    },
    Labels {
        agent_id: String,
        labels: Labels,
    },
    Release(Box<Release>),
    Rollout(Box<Rollout>),
    Assignment {
        agent_id: String,
        assignment: Assignment,
    },
    Heartbeat {
        received_ms: u64,
        body: String,
    },
}

/// Why an export or import stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] BackendError),
    #[error("cannot write the export: {0}")]
    Write(#[source] std::io::Error),
    #[error("cannot read the import: {0}")]
    Read(#[source] std::io::Error),
    #[error("line {line} of the import is not an export record ({message}); was it written by `outpost-hub export`?")]
    Line { line: usize, message: String },
}

/// What was moved. On import: what was written (an enrollment or heartbeat the store already held is not
/// counted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub enrollments: usize,
    pub issued_tokens: usize,
    pub used_tokens: usize,
    pub labels: usize,
    pub assignments: usize,
    pub releases: usize,
    pub rollouts: usize,
    pub heartbeats: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} enrollments, {} issued tokens ({} used), {} agents' labels, {} assignments, {} releases, {} rollouts, {} heartbeats",
            self.enrollments,
            self.issued_tokens,
            self.used_tokens,
            self.labels,
            self.assignments,
            self.releases,
            self.rollouts,
            self.heartbeats
        )
    }
}

/// Writes everything `store` keeps to `out`.
pub async fn export(store: &dyn FleetStore, out: &mut impl Write) -> Result<Counts, TransferError> {
    let mut counts = Counts::default();
    let put = |line: &Line, out: &mut dyn Write| -> Result<(), TransferError> {
        let text = serde_json::to_string(line).map_err(|e| TransferError::Write(e.into()))?;
        writeln!(out, "{text}").map_err(TransferError::Write)
    };
    let enrollments = store.enrollments().await?;
    for enrollment in &enrollments {
        put(&Line::Enrollment(enrollment.clone()), out)?;
        counts.enrollments += 1;
    }
    for token in store.issued_tokens().await? {
        put(&Line::IssuedToken(token), out)?;
        counts.issued_tokens += 1;
    }
    for (token_sha256, agent_id) in store.used_tokens().await? {
        put(
            &Line::UsedToken {
                token_sha256,
                agent_id,
            },
            out,
        )?;
        counts.used_tokens += 1;
    }
    for (agent_id, labels) in store.labels().await? {
        put(&Line::Labels { agent_id, labels }, out)?;
        counts.labels += 1;
    }
    let agents = store.agents().await?;
    let mut ids: Vec<String> = agents.iter().map(|a| a.agent_id.clone()).collect();
    ids.extend(enrollments.iter().map(|e| e.agent_id.clone()));
    ids.sort();
    ids.dedup();
    for id in &ids {
        if let Some(assignment) = store.assignment(id).await? {
            put(
                &Line::Assignment {
                    agent_id: id.clone(),
                    assignment,
                },
                out,
            )?;
            counts.assignments += 1;
        }
    }
    for release in store.releases().await? {
        put(&Line::Release(Box::new(release)), out)?;
        counts.releases += 1;
    }
    for rollout in store.rollouts().await? {
        put(&Line::Rollout(Box::new(rollout)), out)?;
        counts.rollouts += 1;
    }
    for agent in &agents {
        // Newest pages first, then written oldest first.
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = store.history_page(&agent.agent_id, before, PAGE).await?;
            before = page.next_before;
            pages.push(page.records);
            if before.is_none() {
                break;
            }
        }
        for kept in pages.into_iter().rev().flatten() {
            let stored = store.read_kept(kept).await?;
            let body = String::from_utf8(stored.body).map_err(|e| {
                BackendError::Corrupt(format!(
                    "a heartbeat of {:?} is not UTF-8: {e}",
                    agent.agent_id
                ))
            })?;
            put(
                &Line::Heartbeat {
                    received_ms: stored.received_ms,
                    body,
                },
                out,
            )?;
            counts.heartbeats += 1;
        }
    }
    out.flush().map_err(TransferError::Write)?;
    Ok(counts)
}

/// Reads an export into `store`, keeping each agent's newest `keep` heartbeats.
pub async fn import(
    store: &dyn FleetStore,
    input: impl BufRead,
    keep: usize,
) -> Result<Counts, TransferError> {
    let mut counts = Counts::default();
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(TransferError::Read)?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TransferError::Line {
            line: index + 1,
            message,
        };
        match serde_json::from_str::<Line>(&line).map_err(|e| bad(e.to_string()))? {
            Line::Enrollment(enrollment) => {
                if store.enroll(enrollment).await? == Enrolled::Enrolled {
                    counts.enrollments += 1;
                }
            }
            Line::IssuedToken(token) => {
                store.add_issued_token(token).await?;
                counts.issued_tokens += 1;
            }
            Line::UsedToken {
                token_sha256,
                agent_id,
            } => {
                store.add_used_token(&token_sha256, &agent_id).await?;
                counts.used_tokens += 1;
            }
            Line::Labels { agent_id, labels } => {
                store.set_labels(&agent_id, labels).await?;
                counts.labels += 1;
            }
            Line::Release(release) => {
                store.put_release(*release).await?;
                counts.releases += 1;
            }
            Line::Rollout(rollout) => {
                if store.create_rollout(*rollout).await? {
                    counts.rollouts += 1;
                }
            }
            Line::Assignment {
                agent_id,
                assignment,
            } => {
                let generation = assignment.generation;
                store
                    .set_assignment(&agent_id, assignment, generation)
                    .await?;
                counts.assignments += 1;
            }
            Line::Heartbeat { received_ms, body } => {
                let heartbeat = outpost_proto::wire::parse_heartbeat(body.as_bytes())
                    .map_err(|e| bad(e.to_string()))?;
                let recorded = store
                    .record(heartbeat, Bytes::from(body), received_ms, keep)
                    .await?;
                if matches!(recorded, Recorded::Accepted { .. }) {
                    counts.heartbeats += 1;
                }
            }
        }
    }
    store.flush().await?;
    Ok(counts)
}
