//! `GET /`: the fleet as an HTML page for a person at a browser; it reloads itself every
//! [`REFRESH_SECS`] seconds with a `<meta>` refresh, so it needs no JavaScript.
//!
//! For a fleet of thousands the page leads with counts (agents online / offline / never seen, agents with a
//! problem, sources by state, each a link to the agents behind it), then a form (state, text in an id or an
//! error) and one page of [`select::PAGE_SIZE`] matching agents, problems first ([`select`]); each agent links
//! to its own page, `GET /agents/{id}` ([`agent_page`]), with its sources and recent heartbeats.
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

pub mod agent_page;
pub mod select;

use select::{Filter, StateFilter};

/// The media type of the page.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// Seconds between the page's reloads: a third of the default heartbeat interval, so a change shows soon.
pub const REFRESH_SECS: u32 = 10;
/// Revisions are shown this long, as `git log --oneline` would.
const REVISION_CHARS: usize = 12;

pub(crate) const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}\
table{border-collapse:collapse}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}\
.online{color:#17702b}.offline{color:#c00;font-weight:bold}.never-seen{color:#777}\
.history{color:#777}.error{color:#c00;white-space:pre-wrap;font-family:monospace}\
code{font-family:monospace}a code,.when{white-space:nowrap}form{margin:.8em 0}";

/// Answers `GET /?state=…&q=…&page=N` with the fleet's `views` at `now_ms` (the hub's clock, Unix
/// milliseconds).
pub fn handle(views: &[AgentView], filter: &Filter, now_ms: u64) -> Reply {
    Reply::text(200, CONTENT_TYPE, render(views, filter, now_ms))
}

/// The page: counts, the filter form, then one table row per source (one per agent without sources) of the
/// selected page of agents, agent cells spanning them.
pub fn render(views: &[AgentView], filter: &Filter, now_ms: u64) -> String {
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
    counts_table(&mut page, &select::counts(views));
    filter_form(&mut page, filter);
    let (selected, total) = select::select(views, filter);
    let first = filter.page * select::PAGE_SIZE;
    let _ = write!(
        page,
        "<p>{} matching agents{}",
        total,
        if selected.is_empty() {
            String::new()
        } else {
            format!(
                ", {} to {} shown, problems first",
                first + 1,
                first + selected.len()
            )
        }
    );
    if filter.page > 0 {
        let _ = write!(
            page,
            " · <a href=\"/{}\">previous page</a>",
            escape(&filter.query(filter.page - 1))
        );
    }
    if first + selected.len() < total {
        let _ = write!(
            page,
            " · <a href=\"/{}\">next page</a>",
            escape(&filter.query(filter.page + 1))
        );
    }
    page.push_str("</p>\n");
    page.push_str(
        "<table>\n<thead><tr><th>Agent</th><th>Status</th><th>Last seen</th><th>Version</th>\
         <th>Generation<br>running / assigned</th><th>Source</th><th>State</th><th>Applied</th>\
         <th>Last error</th></tr></thead>\n<tbody>\n",
    );
    for view in selected {
        agent_rows(&mut page, view);
    }
    page.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    page
}

/// Agents by status and sources by state, each count a link to the agents behind it.
fn counts_table(page: &mut String, counts: &select::Counts) {
    let link = |state: &str, label: &str, n: usize| {
        format!("<td><a href=\"/?state={state}\">{label}</a>: {n}</td>")
    };
    let _ = write!(
        page,
        "<table class=\"counts\">\n<tr><th>Agents</th>{}{}{}{}</tr>\n<tr><th>Sources</th>",
        link("online", "online", counts.online),
        link("offline", "offline", counts.offline),
        link("never-seen", "never seen", counts.never_seen),
        link("problems", "with a problem", counts.problems),
    );
    for (state, n) in &counts.sources {
        page.push_str(&link(state, state, *n));
    }
    page.push_str("</tr>\n</table>\n");
}

/// A plain GET form: works without JavaScript, and its URL can be bookmarked.
fn filter_form(page: &mut String, filter: &Filter) {
    page.push_str("<form method=\"get\" action=\"/\"><label>State <select name=\"state\"><option value=\"\">any</option>");
    let states = [
        "problems",
        "online",
        "offline",
        "never-seen",
        "Ready",
        "Progressing",
        "Failed",
        "Stale",
        "Suspended",
    ];
    for state in states {
        let selected = filter.state.map(StateFilter::as_str) == Some(state);
        let _ = write!(
            page,
            "<option value=\"{state}\"{}>{state}</option>",
            if selected { " selected" } else { "" }
        );
    }
    let _ =
        writeln!(
        page,
        "</select></label> <label>Id or error contains <input name=\"q\" value=\"{}\"></label> \
         <label>Label <input name=\"label\" placeholder=\"site=berlin\" value=\"{}\"></label> \
         <button type=\"submit\">Show</button> <a href=\"/\">all</a></form>",
        escape(filter.text.as_deref().unwrap_or_default()),
        escape(&filter.label.as_ref().map(|(k, v)| format!("{k}={v}")).unwrap_or_default())
    );
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
        // The time on one line (it broke at its dashes in a narrow column), its age under it.
        (Some(at), Some(ago)) => format!(
            "<span class=\"when\">{}</span><br>({ago} s ago)",
            escape(at)
        ),
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
        "<tr><td rowspan=\"{rows}\"><a href=\"/agents/{}\"><code>{}</code></a>{}</td><td rowspan=\"{rows}\" class=\"{class}\">{}</td>\
         <td rowspan=\"{rows}\">{last_seen}</td><td rowspan=\"{rows}\">{}</td><td rowspan=\"{rows}\">{generation}</td>",
        escape(&select::percent_path(&view.agent_id)),
        escape(&view.agent_id),
        labels(view),
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

/// The agent's labels under its id, each a link to the agents sharing it.
fn labels(view: &AgentView) -> String {
    let mut out = String::new();
    for (key, value) in &view.labels {
        let pair = format!("{key}={value}");
        let _ = write!(
            out,
            "<br><a class=\"label\" href=\"/?label={}\">{}</a>",
            escape(&select::percent_path(&pair)),
            escape(&pair)
        );
    }
    out
}

pub(crate) fn source_cells(page: &mut String, source: &SourceStatus, online: bool) {
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
            labels: Default::default(),
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
        let page = render(&views, &Filter::default(), NOW_MS);
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
            page.contains(
                "<td rowspan=\"2\"><a href=\"/agents/store-042\"><code>store-042</code></a>"
            ),
            "{page}"
        );
        assert!(page.contains(".offline{color:#c00"), "{page}");
    }

    #[test]
    fn ten_thousand_agents_make_one_short_page() {
        let mut ready = SourceStatus::new("platform", SourceState::Ready);
        ready.applied_revision = Some("0123456789abcdef0123456789abcdef01234567".into());
        let views: Vec<AgentView> = (0..10_000)
            .map(|i| seen(&format!("store-{i:05}"), i % 10 != 0, vec![ready.clone()]))
            .collect();
        let page = render(&views, &Filter::default(), NOW_MS);
        assert!(
            page.contains("9000 of 10000 agents online"),
            "{}",
            &page[..2000]
        );
        assert!(page.contains("<a href=\"/?state=offline\">offline</a>: 1000"));
        assert_eq!(
            page.matches("<a href=\"/agents/").count(),
            select::PAGE_SIZE
        );
        assert!(page.contains("next page"));
        // The offline agents (problems) lead the list.
        assert!(page.contains("/agents/store-00000\""), "{}", &page[..4000]);
        assert!(page.len() < 100 * 1024, "{} bytes", page.len());
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
        let page = render(&[view], &Filter::default(), NOW_MS);
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
        let page = render(
            &[seen("store-042", true, vec![source])],
            &Filter::default(),
            NOW_MS,
        );
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
