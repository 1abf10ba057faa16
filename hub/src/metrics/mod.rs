//! `GET /metrics`: the fleet and the hub's heartbeat counters in the Prometheus text exposition format 0.0.4.
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
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

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

/// The exposition text: every family with its `# HELP` and `# TYPE`, samples in agent id order.
pub fn render(views: &[AgentView], counters: &CounterSnapshot) -> String {
    let mut out = String::new();

    family(
        &mut out,
        "outpost_hub_agents",
        "gauge",
        "Agents known to the hub, by status (offline: no heartbeat within three intervals).",
    );
    for status in ["online", "offline", "never-seen"] {
        let count = views.iter().filter(|v| v.status == status).count();
        sample(&mut out, "outpost_hub_agents", &[("status", status)], count);
    }

    family(
        &mut out,
        "outpost_hub_agent_online",
        "gauge",
        "1 while the agent's last heartbeat is younger than three of its intervals, else 0.",
    );
    for view in views {
        let online = u8::from(view.online);
        sample(
            &mut out,
            "outpost_hub_agent_online",
            &[("agent", &view.agent_id)],
            online,
        );
    }

    family(
        &mut out,
        "outpost_hub_agent_last_seen_seconds",
        "gauge",
        "Seconds since the hub accepted the agent's last heartbeat; absent for agents never seen.",
    );
    for view in views {
        if let Some(ago) = view.last_seen_secs_ago {
            let labels = [("agent", view.agent_id.as_str())];
            sample(
                &mut out,
                "outpost_hub_agent_last_seen_seconds",
                &labels,
                ago,
            );
        }
    }

    family(
        &mut out,
        "outpost_hub_source_state",
        "gauge",
        "1 for the state each source of an online agent reports; offline agents' sources are left out.",
    );
    for view in views.iter().filter(|v| v.online) {
        for source in &view.sources {
            let labels = [
                ("agent", view.agent_id.as_str()),
                ("source", source.name.as_str()),
                ("state", source.state.as_str()),
            ];
            sample(&mut out, "outpost_hub_source_state", &labels, 1);
        }
    }

    family(
        &mut out,
        "outpost_hub_agent_assignment_refused",
        "gauge",
        "The generation of the assignment an online agent refuses, labelled by why; absent while none is refused.",
    );
    for view in views.iter().filter(|v| v.online) {
        if let Some(refused) = &view.assignment_error {
            let labels = [
                ("agent", view.agent_id.as_str()),
                ("kind", refused.kind.as_str()),
            ];
            sample(
                &mut out,
                "outpost_hub_agent_assignment_refused",
                &labels,
                refused.generation,
            );
        }
    }

    family(
        &mut out,
        "outpost_hub_heartbeats_accepted_total",
        "counter",
        "Heartbeats answered 200 since the hub started.",
    );
    let accepted = counters.accepted;
    sample(
        &mut out,
        "outpost_hub_heartbeats_accepted_total",
        &[],
        accepted,
    );

    family(
        &mut out,
        "outpost_hub_heartbeats_rejected_total",
        "counter",
        "Heartbeats refused since the hub started, by the reason token of the refusal.",
    );
    for (reason, count) in &counters.rejected {
        let labels = [("reason", *reason)];
        sample(
            &mut out,
            "outpost_hub_heartbeats_rejected_total",
            &labels,
            count,
        );
    }

    family(
        &mut out,
        "outpost_hub_requests_refused_total",
        "counter",
        "Requests of any endpoint refused since the hub started, by endpoint and reason token (the log only summarises them).",
    );
    for ((endpoint, reason), count) in &counters.refused {
        let labels = [("endpoint", *endpoint), ("reason", *reason)];
        sample(
            &mut out,
            "outpost_hub_requests_refused_total",
            &labels,
            count,
        );
    }
    out
}

/// The `# HELP` and `# TYPE` lines of a family. Help texts are constants here, free of `\` and newlines,
/// so they need none of the escaping label values get.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (index, (label, value)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the exposition format wants it: backslash, double quote and line feed escaped. Agent
/// ids and source names come from configs and agents, so they may hold any of these.
pub fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
