//! `GET /metrics`: the fleet and the hub's heartbeat counters in the Prometheus text exposition format 0.0.4.
//!
//! [`render`] is a pure function of the fleet views (the same [`AgentView`]s as `GET /v1/agents`, so the
//! honesty rule of [`crate::status`] holds here too) and a [`CounterSnapshot`]. An offline agent's sources
//! get no `outpost_hub_source_state` series: what it last reported is history, and a scrape would present it
//! as current; `outpost_hub_agent_online` says why they are missing.
//!
//! [`HeartbeatCounters`] live in the shared state and count every answer to `POST /v1/heartbeats` since the
//! hub started (Prometheus handles the reset at a restart, as for any counter).

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

/// The counters at one moment, for [`render`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub accepted: u64,
    pub rejected: BTreeMap<&'static str, u64>,
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
        }
    }
}

/// Handles `GET /metrics` at `now_ms` (the hub's clock, Unix milliseconds).
pub fn handle(hub: &HubState, now_ms: u64) -> Result<Reply, Rejection> {
    let views = hub
        .views(now_ms)
        .map_err(|e| Rejection::internal(e.to_string()))?;
    let text = render(&views, &hub.heartbeats.snapshot());
    Ok(Reply::text(200, CONTENT_TYPE, text))
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
mod tests {
    use super::*;
    use outpost_proto::wire::{AssignmentError, RefusalKind, SourceState, SourceStatus};

    fn view(id: &str, status: &str, sources: Vec<SourceStatus>) -> AgentView {
        let seen = status != "never-seen";
        AgentView {
            agent_id: id.into(),
            origin: "config".into(),
            fingerprint: None,
            online: status == "online",
            status: status.into(),
            last_seen: seen.then(|| "2026-09-21T14:13:20Z".into()),
            last_seen_secs_ago: seen.then_some(7),
            heartbeat_interval_ms: 30_000,
            seq: seen.then_some(3),
            boot_id: None,
            agent_version: seen.then(|| "0.1.0".into()),
            assignment_generation: seen.then_some(1),
            assigned_generation: Some(2),
            dropped: None,
            assignment_error: None,
            sources,
        }
    }

    /// One parsed sample line, label values unescaped.
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// Splits a sample line into its name, its labels and its value, or says what is wrong.
    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("no value: {line}"))?;
        let name = &line[..name_end];
        let valid_name = name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        if name.is_empty() || !valid_name {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            loop {
                let mut label = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    match c {
                        '=' => break,
                        '}' if label.is_empty() => {
                            closed = true;
                            break;
                        }
                        c if c.is_ascii_alphanumeric() || c == '_' => label.push(c),
                        c => return Err(format!("bad label name char {c:?} in {line}")),
                    }
                }
                if closed {
                    break;
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(format!("label value not quoted in {line}"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => return Err(format!("bad escape {other:?} in {line}")),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => return Err(format!("unterminated label value in {line}")),
                    }
                }
                labels.push((label, value));
                match chars.next() {
                    Some((_, ',')) => {}
                    Some((at, '}')) => {
                        rest = &inner[at + 1..];
                        break;
                    }
                    other => return Err(format!("expected , or }} but got {other:?} in {line}")),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before the value in {line}"))?;
        let value = value
            .parse::<f64>()
            .map_err(|e| format!("bad value {value:?} in {line}: {e}"))?;
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// Every line is a comment or a sample, and every sample's family was declared by a `# TYPE` before it.
    fn parse(text: &str) -> Result<Vec<Sample>, String> {
        let mut typed = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                if let Some(declared) = comment.strip_prefix("TYPE ") {
                    typed.push(declared.split(' ').next().unwrap_or_default().to_owned());
                }
                continue;
            }
            let parsed = parse_sample(line)?;
            if !typed.contains(&parsed.name) {
                return Err(format!("sample before its # TYPE: {line}"));
            }
            samples.push(parsed);
        }
        Ok(samples)
    }

    fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("store-042"), "store-042");
    }

    #[test]
    fn the_fleet_renders_as_parseable_exposition_text() -> Result<(), String> {
        let mut ready = SourceStatus::new("platform", SourceState::Ready);
        ready.applied_revision = Some("0123456789abcdef".into());
        let failed = SourceStatus::new("apps \"x\"", SourceState::Failed);
        let hostile = "evil\"} 1\nfake_metric{a=\"b\\";
        let mut refusing = view("a", "online", vec![ready, failed]);
        refusing.assignment_error = Some(AssignmentError {
            generation: 2,
            kind: RefusalKind::NameClash,
            reason: "clash".into(),
        });
        let mut refusing_offline = view(
            "gone",
            "offline",
            vec![SourceStatus::new("platform", SourceState::Ready)],
        );
        refusing_offline.assignment_error = refusing.assignment_error.clone();
        let views = vec![
            refusing,
            view(hostile, "online", Vec::new()),
            refusing_offline,
            view("quiet", "never-seen", Vec::new()),
        ];
        let counters = CounterSnapshot {
            accepted: 5,
            rejected: BTreeMap::from([("unknown_key", 2), ("stale_signature", 1)]),
        };
        let text = render(&views, &counters);
        let samples = parse(&text)?;
        let get = |name: &str, labels: &[(&str, &str)]| value_of(&samples, name, labels);

        assert_eq!(
            get("outpost_hub_agents", &[("status", "online")]),
            Some(2.0)
        );
        assert_eq!(
            get("outpost_hub_agents", &[("status", "offline")]),
            Some(1.0)
        );
        assert_eq!(
            get("outpost_hub_agents", &[("status", "never-seen")]),
            Some(1.0)
        );
        assert_eq!(
            get("outpost_hub_agent_online", &[("agent", "gone")]),
            Some(0.0)
        );
        assert_eq!(
            get("outpost_hub_agent_online", &[("agent", hostile)]),
            Some(1.0)
        );
        assert_eq!(
            get("outpost_hub_agent_last_seen_seconds", &[("agent", "a")]),
            Some(7.0)
        );
        assert_eq!(
            get("outpost_hub_agent_last_seen_seconds", &[("agent", "quiet")]),
            None
        );
        let failed = [
            ("agent", "a"),
            ("source", "apps \"x\""),
            ("state", "Failed"),
        ];
        assert_eq!(get("outpost_hub_source_state", &failed), Some(1.0));
        // The offline agent's last "Ready" is history, not a current state.
        let stale = [
            ("agent", "gone"),
            ("source", "platform"),
            ("state", "Ready"),
        ];
        assert_eq!(get("outpost_hub_source_state", &stale), None);
        let refused = [("agent", "a"), ("kind", "name_clash")];
        assert_eq!(
            get("outpost_hub_agent_assignment_refused", &refused),
            Some(2.0)
        );
        let refused_offline = [("agent", "gone"), ("kind", "name_clash")];
        assert_eq!(
            get("outpost_hub_agent_assignment_refused", &refused_offline),
            None
        );
        assert_eq!(get("outpost_hub_heartbeats_accepted_total", &[]), Some(5.0));
        let unknown = [("reason", "unknown_key")];
        assert_eq!(
            get("outpost_hub_heartbeats_rejected_total", &unknown),
            Some(2.0)
        );
        // The hostile id made no series of its own.
        assert!(!samples.iter().any(|s| s.name == "fake_metric"), "{text}");
        for name in [
            "outpost_hub_agents",
            "outpost_hub_heartbeats_rejected_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        }
        assert!(text.contains("# TYPE outpost_hub_heartbeats_accepted_total counter"));
        Ok(())
    }

    #[test]
    fn counters_count_by_reason() {
        let counters = HeartbeatCounters::default();
        counters.count(&Ok(Reply::text(200, CONTENT_TYPE, String::new())));
        counters.count(&Err(Rejection::new(401, "unknown_key", "x")));
        counters.count(&Err(Rejection::new(401, "unknown_key", "y")));
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.accepted, 1);
        assert_eq!(snapshot.rejected, BTreeMap::from([("unknown_key", 2)]));
    }
}
