//! `GET /metrics`: the fleet and the hub's heartbeat counters in the Prometheus text exposition format 0.0.4,
//! written by the Prometheus client crate (`prometheus`), not by hand.
//!
//! [`render`] is a pure function of the fleet views (the same [`AgentView`]s as `GET /v1/agents`, so the
//! honesty rule of [`crate::status`] holds here too) and a [`CounterSnapshot`]. An offline agent's sources
//! get no `outpost_hub_source_state` series: what it last reported is history, and a scrape would present it
//! as current; `outpost_hub_agent_online` says why they are missing.
//!
//! [`HeartbeatCounters`] live in the shared state and count every answer to `POST /v1/heartbeats` since the
//! hub started (Prometheus handles the reset at a restart, as for any counter). [`RefusedCounters`] count
//! every refused request of any endpoint (rate limited enrollments, busy reads, ...): the log only samples
//! refusals ([`crate::refusals`]), so this is where their exact number is.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::reply::{Rejection, Reply};
use crate::state::HubState;
use crate::status::AgentView;

/// The media type of the text exposition format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers to heartbeats since the hub started.
#[derive(Debug, Default)]
pub struct HeartbeatCounters {
    accepted: AtomicU64,
    /// By the rejection's `reason` token. The set of reasons is open (every stage of the server and of
    /// [`crate::heartbeat`] adds its own), so a map rather than one atomic per known token; rejections
    /// are rare next to accepted heartbeats, so this lock is not contended.
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// Requests refused since the hub started, by endpoint and reason.
#[derive(Debug, Default)]
pub struct RefusedCounters {
    /// Keyed by (endpoint, reason); both come from closed sets in the server, so the map stays small.
    refused: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl RefusedCounters {
    pub fn count(&self, endpoint: &'static str, reason: &'static str) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        *refused.entry((endpoint, reason)).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The counters at one moment, for [`render`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub accepted: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    /// Every refused request, by (endpoint, reason).
    pub refused: BTreeMap<(&'static str, &'static str), u64>,
}

impl HeartbeatCounters {
    /// Counts the answer to one heartbeat. A re-acknowledged duplicate is answered 200 and counts as accepted.
    pub fn count(&self, outcome: &Result<Reply, Rejection>) {
        match outcome {
            Ok(_) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(rejection) => {
                // A panic while holding the lock cannot leave the map half-updated: keep counting.
                let mut rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
                *rejected.entry(rejection.reason).or_default() += 1;
            }
        }
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            refused: BTreeMap::new(),
        }
    }
}

/// Answers `GET /metrics` with the fleet's `views` and the hub's counters.
pub fn handle(hub: &HubState, views: &[AgentView]) -> Reply {
    let counters = CounterSnapshot {
        refused: hub.refused.snapshot(),
        ..hub.heartbeats.snapshot()
    };
    let text = render(views, &counters);
    Reply::text(200, CONTENT_TYPE, text)
}

/// The exposition text, built with the Prometheus client's registry and text encoder: every family with its
/// `# HELP` and `# TYPE` (a family without samples is left out, as the client does), label values escaped.
pub fn render(views: &[AgentView], counters: &CounterSnapshot) -> String {
    match exposition(views, counters) {
        Ok(text) => text,
        // Only a programming error (a clashing name or label set) gets here; say so in the scrape.
        Err(e) => format!("# outpost-hub could not build its metrics: {e}\n"),
    }
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

/// Prometheus values are signed; a count or generation past `i64::MAX` never happens and is clamped.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn exposition(views: &[AgentView], counters: &CounterSnapshot) -> prometheus::Result<String> {
    // A registry per scrape: the per-agent series follow the fleet as it is now, with no stale ones left.
    let registry = Registry::new();
    let agents = gauge(
        &registry,
        "outpost_hub_agents",
        "Agents known to the hub, by status (offline: no heartbeat within three intervals).",
        &["status"],
    )?;
    for status in ["online", "offline", "never-seen"] {
        let count = views.iter().filter(|v| v.status == status).count();
        agents
            .with_label_values(&[status])
            .set(signed(count as u64));
    }
    let online = gauge(
        &registry,
        "outpost_hub_agent_online",
        "1 while the agent's last heartbeat is younger than three of its intervals, else 0.",
        &["agent"],
    )?;
    let last_seen = gauge(
        &registry,
        "outpost_hub_agent_last_seen_seconds",
        "Seconds since the hub accepted the agent's last heartbeat; absent for agents never seen.",
        &["agent"],
    )?;
    let source_state = gauge(
        &registry,
        "outpost_hub_source_state",
        "1 for the state each source of an online agent reports; offline agents' sources are left out.",
        &["agent", "source", "state"],
    )?;
    let refused_assignment = gauge(
        &registry,
        "outpost_hub_agent_assignment_refused",
        "The generation of the assignment an online agent refuses, labelled by why; absent while none is refused.",
        &["agent", "kind"],
    )?;
    for view in views {
        let id = view.agent_id.as_str();
        online.with_label_values(&[id]).set(i64::from(view.online));
        if let Some(ago) = view.last_seen_secs_ago {
            last_seen.with_label_values(&[id]).set(signed(ago));
        }
        if !view.online {
            continue;
        }
        for source in &view.sources {
            source_state
                .with_label_values(&[id, source.name.as_str(), source.state.as_str()])
                .set(1);
        }
        if let Some(refused) = &view.assignment_error {
            refused_assignment
                .with_label_values(&[id, refused.kind.as_str()])
                .set(signed(refused.generation));
        }
    }
    let accepted = counter(
        &registry,
        "outpost_hub_heartbeats_accepted_total",
        "Heartbeats answered 200 since the hub started.",
        &[],
    )?;
    accepted
        .with_label_values::<&str>(&[])
        .inc_by(counters.accepted);
    let rejected = counter(
        &registry,
        "outpost_hub_heartbeats_rejected_total",
        "Heartbeats refused since the hub started, by the reason token of the refusal.",
        &["reason"],
    )?;
    for (reason, count) in &counters.rejected {
        rejected.with_label_values(&[*reason]).inc_by(*count);
    }
    let refused = counter(
        &registry,
        "outpost_hub_requests_refused_total",
        "Requests of any endpoint refused since the hub started, by endpoint and reason token (the log only summarises them).",
        &["endpoint", "reason"],
    )?;
    for ((endpoint, reason), count) in &counters.refused {
        refused
            .with_label_values(&[*endpoint, *reason])
            .inc_by(*count);
    }
    TextEncoder::new().encode_to_string(&registry.gather())
}

#[cfg(test)]
mod tests;
