//! The table `outpost-hub status` prints, for a person at a terminal.
//!
//! Every cell may hold an agent's words (source names, errors, refusal reasons), so each is passed through
//! [`outpost_proto::text::printable`]: a `last_error` holding terminal escape sequences or line breaks is shown
//! escaped, on its own row, instead of acting on the operator's terminal.

use std::fmt::Write as _;

use outpost_proto::text::printable;

use super::AgentView;

/// The table `outpost-hub status` prints: one line per source (or one per agent without sources).
pub fn render_table(views: &[AgentView]) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "AGENT",
        "STATUS",
        "LAST SEEN",
        "SEQ",
        "GENERATION",
        "SOURCE",
        "STATE",
        "APPLIED / ERROR",
    ]
    .map(String::from)];
    for view in views {
        let status = match view.status.as_str() {
            "offline" => "OFFLINE".to_owned(),
            other => other.to_owned(),
        };
        let last_seen = match (&view.last_seen, view.last_seen_secs_ago) {
            (Some(at), Some(ago)) => format!("{at} ({})", ago_text(ago)),
            _ => "-".to_owned(),
        };
        let generation = match (view.assignment_generation, view.assigned_generation) {
            (None, None) => "-".to_owned(),
            (running, assigned) => format!(
                "{}/{}",
                running.map_or("-".to_owned(), |g| g.to_string()),
                assigned.map_or("-".to_owned(), |g| g.to_string())
            ),
        };
        let head = [
            view.agent_id.clone(),
            status,
            last_seen,
            view.seq.map_or("-".to_owned(), |s| s.to_string()),
            generation,
        ];
        let refused = view.assignment_error.as_ref().map(|e| {
            [
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!("refused {}", e.generation),
                "-".to_owned(),
                e.kind.to_string(),
                first_line(&e.reason),
            ]
        });
        if view.sources.is_empty() {
            let [a, b, c, d, e] = head;
            rows.push([a, b, c, d, e, "-".into(), "-".into(), "-".into()]);
            rows.extend(refused);
            continue;
        }
        for (index, source) in view.sources.iter().enumerate() {
            let state = if view.online {
                source.state.to_string()
            } else {
                // Offline: the state is history, say so rather than print a stale "Ready".
                format!("({})", source.state)
            };
            let detail = match (&source.applied_revision, &source.last_error) {
                (_, Some(error)) => first_line(error),
                (Some(rev), None) => rev.chars().take(12).collect(),
                (None, None) => "-".to_owned(),
            };
            let head = if index == 0 {
                head.clone()
            } else {
                Default::default()
            };
            let [a, b, c, d, e] = head;
            rows.push([a, b, c, d, e, source.name.clone(), state, detail]);
        }
        rows.extend(refused);
    }
    // Escaped before the widths are measured, so an escape widens its column instead of breaking it.
    for cell in rows.iter_mut().flatten() {
        if let std::borrow::Cow::Owned(shown) = printable(cell) {
            *cell = shown;
        }
    }
    let mut widths = [0_usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn ago_text(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// The first line of an agent's message, cut at 60 characters. Only `\n` ends a line here: a lone `\r` is
/// kept for [`printable`] to show, since hiding what follows it is exactly what a forged message wants.
fn first_line(text: &str) -> String {
    let line = text.split('\n').next().unwrap_or_default();
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::wire::{SourceState, SourceStatus};

    fn view(sources: Vec<SourceStatus>) -> AgentView {
        AgentView {
            agent_id: "store-042".into(),
            origin: "config".into(),
            fingerprint: None,
            online: true,
            status: "online".into(),
            last_seen: Some("2026-12-05T22:00:00Z".into()),
            last_seen_secs_ago: Some(3),
            heartbeat_interval_ms: 30_000,
            seq: Some(7),
            boot_id: None,
            agent_version: Some("0.1.0".into()),
            assignment_generation: Some(1),
            assigned_generation: Some(1),
            dropped: Some(0),
            assignment_error: None,
            labels: Default::default(),
            sources,
        }
    }

    #[test]
    fn agent_text_cannot_act_on_the_terminal() {
        let mut failed = SourceStatus::new("apps\u{1b}[31m", SourceState::Failed);
        // Retitle the terminal, clear it, and overwrite the row from its start.
        failed.last_error =
            Some("\u{1b}]0;owned\u{7}\u{1b}[2J bad \u{9b}1A\rAll Ready\nsecond".into());
        let table = render_table(&[view(vec![failed])]);
        assert!(
            !table.chars().any(|c| c != '\n' && c.is_control()),
            "{table:?}"
        );
        assert_eq!(table.lines().count(), 2, "{table}");
        let row = table.lines().nth(1).unwrap_or_default();
        assert!(
            row.contains("apps\\u{1b}[31m")
                && row.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[2J bad \\u{9b}1A\\rAll Ready"),
            "{row}"
        );
        // The escaped name widens its column; the header still lines up with it.
        let header = table.lines().next().unwrap_or_default();
        let state_at = header.find("STATE").unwrap_or_default();
        assert_eq!(row.get(state_at..state_at + 6), Some("Failed"), "{table}");
    }
}
