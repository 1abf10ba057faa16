//! `GET /agents/{id}`: one agent's page, linked from the fleet page: its status, each source (state, applied
//! and last good revision, error), its recent heartbeats, newest first, with each source's state then, and
//! the requests of it this hub process refused ([`crate::agent_refusals`]). Like the fleet page: no
//! JavaScript, everything the agent supplied escaped, an offline agent's states bracketed.

use std::fmt::Write as _;

use outpost_proto::wire::{Heartbeat, SourceState};

use super::{escape, source_cells, CONTENT_TYPE, REFRESH_SECS, STYLE};
use crate::agent_refusals::{AgentRefusal, PER_AGENT};
use crate::reply::Reply;
use crate::status::{format_ms, AgentView};

/// Heartbeats shown; older ones are in `GET /v1/agents/{id}`, a page at a time.
pub const RECENT: usize = 20;

/// One kept heartbeat, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    pub seq: u64,
    pub received_ms: u64,
    pub dropped: u64,
    pub sources: Vec<(String, SourceState)>,
}

impl Recent {
    /// From a kept heartbeat's body; `None` when it does not parse (it was validated when received).
    pub fn from_body(seq: u64, received_ms: u64, body: &[u8]) -> Option<Recent> {
        let heartbeat: Heartbeat = serde_json::from_slice(body).ok()?;
        Some(Recent {
            seq,
            received_ms,
            dropped: heartbeat.dropped,
            sources: heartbeat
                .sources
                .into_iter()
                .map(|s| (s.name, s.state))
                .collect(),
        })
    }
}

pub fn handle(view: &AgentView, recent: &[Recent], refusals: &[AgentRefusal]) -> Reply {
    Reply::text(200, CONTENT_TYPE, render(view, recent, refusals))
}

/// The page; `recent` and `refusals` newest first.
pub fn render(view: &AgentView, recent: &[Recent], refusals: &[AgentRefusal]) -> String {
    let id = escape(&view.agent_id);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\n\
         <title>{id} · Outpost fleet</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <p><a href=\"/\">fleet</a></p>\n<h1><code>{id}</code></h1>\n<table>\n"
    );
    let row = |page: &mut String, name: &str, value: String| {
        let _ = writeln!(page, "<tr><th>{name}</th><td>{value}</td></tr>");
    };
    let class = match view.status.as_str() {
        "online" => "online",
        "offline" => "offline",
        _ => "never-seen",
    };
    row(
        &mut page,
        "Status",
        format!("<span class=\"{class}\">{}</span>", escape(&view.status)),
    );
    row(&mut page, "Origin", escape(&view.origin));
    row(
        &mut page,
        "Key",
        escape(view.fingerprint.as_deref().unwrap_or("-")),
    );
    let seen = match (&view.last_seen, view.last_seen_secs_ago) {
        (Some(at), Some(ago)) => format!("{} ({ago} s ago)", escape(at)),
        _ => "-".into(),
    };
    row(&mut page, "Last seen", seen);
    row(
        &mut page,
        "Version",
        escape(view.agent_version.as_deref().unwrap_or("-")),
    );
    let generation = |g: Option<u64>| g.map_or("-".to_owned(), |g| g.to_string());
    row(
        &mut page,
        "Generation running / assigned",
        format!(
            "{} / {}",
            generation(view.assignment_generation),
            generation(view.assigned_generation)
        ),
    );
    if let Some(refused) = &view.assignment_error {
        row(
            &mut page,
            "Refused assignment",
            format!(
                "<span class=\"error\">{} ({}): {}</span>",
                refused.generation,
                refused.kind,
                escape(&refused.reason)
            ),
        );
    }
    page.push_str("</table>\n<h2>Sources</h2>\n<table>\n<thead><tr><th>Source</th><th>State</th><th>Applied</th><th>Last error</th></tr></thead>\n<tbody>\n");
    for source in &view.sources {
        page.push_str("<tr>");
        source_cells(&mut page, source, view.online);
        page.push_str("</tr>\n");
    }
    if view.sources.is_empty() {
        page.push_str("<tr><td colspan=\"4\">none reported</td></tr>\n");
    }
    let _ = write!(
        page,
        "</tbody>\n</table>\n<h2>Recent heartbeats</h2>\n<p>The newest {RECENT} kept; older ones: <code>GET /v1/agents/{id}</code>.</p>\n\
         <table>\n<thead><tr><th>Seq</th><th>Received (hub clock)</th><th>Dropped before</th><th>Sources</th></tr></thead>\n<tbody>\n"
    );
    for heartbeat in recent {
        let sources: Vec<String> = heartbeat
            .sources
            .iter()
            .map(|(name, state)| format!("{} {state}", escape(name)))
            .collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            heartbeat.seq,
            format_ms(heartbeat.received_ms).unwrap_or_default(),
            heartbeat.dropped,
            sources.join(", ")
        );
    }
    if recent.is_empty() {
        page.push_str("<tr><td colspan=\"4\">none kept</td></tr>\n");
    }
    page.push_str("</tbody>\n</table>\n");
    refusal_table(&mut page, refusals);
    page.push_str("</body>\n</html>\n");
    page
}

/// The agent's refused requests, newest first; what the hub told the agent, escaped (it may quote the
/// request).
fn refusal_table(page: &mut String, refusals: &[AgentRefusal]) {
    let _ = write!(
        page,
        "<h2>Refusals seen by this hub</h2>\n<p>The newest {PER_AGENT} of this agent's signed requests this hub process refused since it started (each replica keeps its own).</p>\n\
         <table>\n<thead><tr><th>When (hub clock)</th><th>Answer</th><th>Reason</th><th>Message</th></tr></thead>\n<tbody>\n"
    );
    for refusal in refusals {
        let _ = writeln!(
            page,
            "<tr><td class=\"when\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"error\">{}</td></tr>",
            escape(refusal.at.as_deref().unwrap_or("-")),
            refusal.status,
            escape(refusal.reason),
            escape(&refusal.message)
        );
    }
    if refusals.is_empty() {
        page.push_str("<tr><td colspan=\"4\">none</td></tr>\n");
    }
    page.push_str("</tbody>\n</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::wire::SourceStatus;

    #[test]
    fn the_agent_page_shows_sources_and_recent_heartbeats_escaped() {
        let mut failed = SourceStatus::new("<apps>", SourceState::Failed);
        failed.last_error = Some("<script>x</script>".into());
        let view = AgentView {
            agent_id: "store-042".into(),
            origin: "enrolled".into(),
            fingerprint: Some("SHA256:abc".into()),
            online: false,
            status: "offline".into(),
            last_seen: Some("2026-09-21T14:13:20Z".into()),
            last_seen_secs_ago: Some(600),
            heartbeat_interval_ms: 30_000,
            seq: Some(9),
            boot_id: None,
            agent_version: Some("0.1.0".into()),
            assignment_generation: Some(2),
            assigned_generation: Some(3),
            dropped: Some(0),
            assignment_error: None,
            labels: Default::default(),
            sources: vec![failed],
        };
        let recent = [
            Recent {
                seq: 9,
                received_ms: 1_790_000_000_000,
                dropped: 0,
                sources: vec![("<apps>".into(), SourceState::Failed)],
            },
            Recent {
                seq: 8,
                received_ms: 1_789_999_970_000,
                dropped: 2,
                sources: vec![("<apps>".into(), SourceState::Ready)],
            },
        ];
        let refused = AgentRefusal {
            at: Some("2026-09-21T14:13:21Z".into()),
            at_ms: 0,
            status: 409,
            reason: "seq_not_newer",
            message: "seq 3 is not above <8>".into(),
        };
        let page = render(&view, &recent, &[refused]);
        assert!(
            page.contains("<td>409</td><td><code>seq_not_newer</code></td><td class=\"error\">seq 3 is not above &lt;8&gt;</td>"),
            "{page}"
        );
        assert!(render(&view, &recent, &[]).contains("<tr><td colspan=\"4\">none</td></tr>"));
        assert!(
            !page.contains("<script") && !page.contains("<apps>"),
            "{page}"
        );
        assert!(page.contains("class=\"offline\">offline"), "{page}");
        assert!(
            page.contains("class=\"history\" title=\"as of the last heartbeat\">(Failed)"),
            "{page}"
        );
        let nine = page.find("<tr><td>9</td>").unwrap_or(usize::MAX);
        let eight = page.find("<tr><td>8</td>").unwrap_or(0);
        assert!(nine < eight, "newest first: {page}");
        assert!(page.contains("&lt;apps&gt; Ready"), "{page}");
        assert!(page.contains("2 / 3"), "{page}");
    }
}
