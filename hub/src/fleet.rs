//! `GET /`: the fleet as an HTML page for a person at a browser; it reloads itself every
//! [`REFRESH_SECS`] seconds with a `<meta>` refresh, so it needs no JavaScript.
//!
//! [`render`] is a pure function of the same [`AgentView`]s as `GET /v1/agents`, and keeps the honesty rule
//! of [`crate::status`]: an offline agent is marked in red, and its sources' states are shown in brackets as
//! what they were at its last heartbeat, never as current. Everything an agent or a config supplied (ids,
//! versions, source names, revisions, errors) is HTML-escaped, so a hostile heartbeat cannot inject markup.

use std::fmt::Write as _;

use outpost_proto::text::printable_lines;
use outpost_proto::wire::{format_timestamp, SourceStatus};

use crate::reply::Reply;
use crate::status::AgentView;

/// The media type of the page.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// Seconds between the page's reloads: a third of the default heartbeat interval, so a change shows soon.
pub const REFRESH_SECS: u32 = 10;
/// Revisions are shown this long, as `git log --oneline` would.
const REVISION_CHARS: usize = 12;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}\
table{border-collapse:collapse}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}\
.online{color:#17702b}.offline{color:#c00;font-weight:bold}.never-seen{color:#777}\
.history{color:#777}.error{color:#c00;white-space:pre-wrap;font-family:monospace}\
code{font-family:monospace}";

/// Answers `GET /` with the fleet's `views` at `now_ms` (the hub's clock, Unix milliseconds).
pub fn handle(views: &[AgentView], now_ms: u64) -> Reply {
    Reply::text(200, CONTENT_TYPE, render(views, now_ms))
}

/// The whole page: one table row per source (one per agent without sources), agent cells spanning them.
pub fn render(views: &[AgentView], now_ms: u64) -> String {
    let generated = i64::try_from(now_ms / 1000)
        .ok()
        .and_then(format_timestamp)
        .unwrap_or_default();
    let online = views.iter().filter(|v| v.online).count();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\n\
         <title>Outpost fleet</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Outpost fleet</h1>\n<p>{online} of {} agents online, as of {generated} (hub clock).</p>\n",
        views.len()
    );
    page.push_str(
        "<table>\n<thead><tr><th>Agent</th><th>Status</th><th>Last seen</th><th>Version</th>\
         <th>Generation<br>running / assigned</th><th>Source</th><th>State</th><th>Applied</th>\
         <th>Last error</th></tr></thead>\n<tbody>\n",
    );
    for view in views {
        agent_rows(&mut page, view);
    }
    page.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    page
}

fn agent_rows(page: &mut String, view: &AgentView) {
    let rows = view.sources.len().max(1);
    // The status is the hub's own word, but a fixed class keeps the CSS independent of it.
    let class = match view.status.as_str() {
        "online" => "online",
        "offline" => "offline",
        _ => "never-seen",
    };
    let last_seen = match (&view.last_seen, view.last_seen_secs_ago) {
        (Some(at), Some(ago)) => format!("{} ({ago} s ago)", escape(at)),
        _ => "-".to_owned(),
    };
    let mut generation = format!(
        "{} / {}",
        view.assignment_generation
            .map_or("-".to_owned(), |g| g.to_string()),
        view.assigned_generation
            .map_or("-".to_owned(), |g| g.to_string())
    );
    if let Some(refused) = &view.assignment_error {
        // The agent's words, so escaped like every other agent-supplied text.
        let _ = write!(
            generation,
            "<div class=\"error\">refused {} ({}): {}</div>",
            refused.generation,
            refused.kind,
            escape(&refused.reason)
        );
    }
    let _ = write!(
        page,
        "<tr><td rowspan=\"{rows}\"><code>{}</code></td><td rowspan=\"{rows}\" class=\"{class}\">{}</td>\
         <td rowspan=\"{rows}\">{last_seen}</td><td rowspan=\"{rows}\">{}</td><td rowspan=\"{rows}\">{generation}</td>",
        escape(&view.agent_id),
        escape(&view.status),
        escape(view.agent_version.as_deref().unwrap_or("-")),
    );
    if view.sources.is_empty() {
        page.push_str("<td>-</td><td>-</td><td>-</td><td>-</td></tr>\n");
        return;
    }
    for (index, source) in view.sources.iter().enumerate() {
        if index > 0 {
            page.push_str("<tr>");
        }
        source_cells(page, source, view.online);
        page.push_str("</tr>\n");
    }
}

fn source_cells(page: &mut String, source: &SourceStatus, online: bool) {
    let state = if online {
        format!("<td>{}</td>", source.state)
    } else {
        // The agent is offline: this is what it last reported, not what runs now.
        format!(
            "<td class=\"history\" title=\"as of the last heartbeat\">({})</td>",
            source.state
        )
    };
    let applied = source.applied_revision.as_deref().map_or_else(
        || "-".to_owned(),
        |rev| {
            let short: String = rev.chars().take(REVISION_CHARS).collect();
            format!("<code>{}</code>", escape(&short))
        },
    );
    let error = source.last_error.as_deref().map_or_else(
        || "<td>-</td>".to_owned(),
        |e| format!("<td class=\"error\">{}</td>", escape(e)),
    );
    let _ = write!(
        page,
        "<td>{}</td>{state}<td>{applied}</td>{error}",
        escape(&source.name)
    );
}

/// Text made safe for HTML element content and quoted attribute values. Control characters are shown as
/// escapes first ([`printable_lines`]): a browser ignores most of them, but the same page read with `curl` in a
/// terminal would obey them. Line feeds stay, for multi-line errors in `pre-wrap` cells.
pub fn escape(text: &str) -> String {
    let text = printable_lines(text);
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::wire::{AssignmentError, RefusalKind, SourceState};

    const NOW_MS: u64 = 1_790_000_000_000;

    fn seen(id: &str, online: bool, sources: Vec<SourceStatus>) -> AgentView {
        AgentView {
            agent_id: id.into(),
            origin: "config".into(),
            fingerprint: Some("SHA256:abc".into()),
            online,
            status: if online { "online" } else { "offline" }.into(),
            last_seen: Some("2026-09-21T14:13:20Z".into()),
            last_seen_secs_ago: Some(42),
            heartbeat_interval_ms: 30_000,
            seq: Some(9),
            boot_id: Some("b".into()),
            agent_version: Some("0.1.0".into()),
            assignment_generation: Some(2),
            assigned_generation: Some(3),
            dropped: Some(0),
            assignment_error: None,
            sources,
        }
    }

    fn never_seen(id: &str) -> AgentView {
        AgentView {
            status: "never-seen".into(),
            online: false,
            last_seen: None,
            last_seen_secs_ago: None,
            seq: None,
            boot_id: None,
            agent_version: None,
            assignment_generation: None,
            dropped: None,
            ..seen(id, false, Vec::new())
        }
    }

    #[test]
    fn the_page_lists_agents_and_sources() {
        let mut ready = SourceStatus::new("platform", SourceState::Ready);
        ready.applied_revision = Some("0123456789abcdef0123456789abcdef01234567".into());
        let mut failed = SourceStatus::new("apps", SourceState::Failed);
        failed.last_error = Some("Deployment/default/web: image pull failed".into());
        let views = [
            seen("store-042", true, vec![ready.clone(), failed]),
            seen("store-043", false, vec![ready]),
            never_seen("store-044"),
        ];
        let page = render(&views, NOW_MS);
        assert!(
            page.contains("<meta http-equiv=\"refresh\" content=\"10\">"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("1 of 3 agents online"), "{page}");
        assert!(page.contains("<code>0123456789ab</code>"), "{page}");
        assert!(
            !page.contains("0123456789abc<"),
            "revision cut at 12: {page}"
        );
        assert!(page.contains("image pull failed"), "{page}");
        assert!(
            page.contains("(42 s ago)") && page.contains("2 / 3"),
            "{page}"
        );
        assert!(page.contains("class=\"offline\">offline</td>"), "{page}");
        assert!(
            page.contains("class=\"never-seen\">never-seen</td>"),
            "{page}"
        );
        // The offline agent's source state is history, bracketed, not a current "Ready".
        assert!(page.contains("class=\"history\" title=\"as of the last heartbeat\">(Ready)"));
        // Two sources: the agent's cells span both rows.
        assert!(
            page.contains("<td rowspan=\"2\"><code>store-042</code>"),
            "{page}"
        );
        assert!(page.contains(".offline{color:#c00"), "{page}");
    }

    #[test]
    fn agent_supplied_text_is_inert() {
        let mut source = SourceStatus::new("<b>src</b>", SourceState::Failed);
        source.last_error = Some("<script>alert('x')</script> & \"more\"".into());
        source.applied_revision = Some("<img src=x onerror=alert(1)>".into());
        let mut view = seen("<script>alert(1)</script>", true, vec![source]);
        view.agent_version = Some("\"><script>".into());
        view.assignment_error = Some(AssignmentError {
            generation: 4,
            kind: RefusalKind::NameClash,
            reason: "source \"<script>x</script>\" clashes".into(),
        });
        let page = render(&[view], NOW_MS);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;"),
            "{page}"
        );
        assert!(
            page.contains(
                "refused 4 (name_clash): source &quot;&lt;script&gt;x&lt;/script&gt;&quot; clashes"
            ),
            "{page}"
        );
    }

    #[test]
    fn control_characters_are_shown_not_sent() {
        let mut source = SourceStatus::new("apps\u{1b}[2J", SourceState::Failed);
        source.last_error = Some("\u{1b}]0;owned\u{7}first\r\nsecond\u{9b}31m".into());
        let page = render(&[seen("store-042", true, vec![source])], NOW_MS);
        assert!(
            !page.chars().any(|c| c != '\n' && c.is_control()),
            "{page:?}"
        );
        assert!(page.contains("apps\\u{1b}[2J"), "{page}");
        assert!(
            page.contains("\\u{1b}]0;owned\\u{7}first\\r\nsecond\\u{9b}31m"),
            "{page}"
        );
    }
}
