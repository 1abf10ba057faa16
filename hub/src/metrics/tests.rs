//! The exposition text parses, and says what the fleet and the counters hold.

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
        labels: Default::default(),
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
    let source = SourceStatus::new("a\\b\"c\nd", SourceState::Ready);
    let text = render(
        &[view("store-042", "online", vec![source])],
        &CounterSnapshot::default(),
    );
    let line = r#"outpost_hub_source_state{agent="store-042",source="a\\b\"c\nd",state="Ready"} 1"#;
    assert!(text.lines().any(|l| l == line), "{text}");
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
        refused: BTreeMap::from([
            (("enroll", "rate_limited"), 7),
            (("heartbeats", "unknown_key"), 2),
        ]),
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
    let limited = [("endpoint", "enroll"), ("reason", "rate_limited")];
    assert_eq!(
        get("outpost_hub_requests_refused_total", &limited),
        Some(7.0)
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
