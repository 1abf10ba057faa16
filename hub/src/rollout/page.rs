//! Rollouts on the fleet page and in `/metrics`, from the records the driver last read
//! ([`crate::state::HubState::rollouts`]): pure functions of them, like the rest of the fleet page.
//!
//! Everything from a record that an agent or an operator wrote (ids, names, errors) is HTML-escaped: a failed
//! site's `last_error` is the agent's own text.

use std::fmt::Write as _;

use prometheus::{IntGaugeVec, Opts, Registry, TextEncoder};

use super::api::Summary;
use super::model::Rollout;
use super::plan::short;
use crate::fleet::escape;
use crate::reply::Reply;

/// Finished rollouts the page still shows, newest first (active ones are always shown).
pub const FINISHED_SHOWN: usize = 5;
/// Failed sites listed per rollout on the page; the rest are counted.
const FAILURES_SHOWN: usize = 20;
const STATES: [&str; 6] = [
    "Pending",
    "InProgress",
    "Ready",
    "Failed",
    "Deferred",
    "RolledBack",
];

/// The rollouts to show: every active one, then the newest finished ones.
fn shown(rollouts: &[Rollout]) -> Vec<&Rollout> {
    let mut active: Vec<&Rollout> = rollouts.iter().filter(|r| r.is_active()).collect();
    let mut finished: Vec<&Rollout> = rollouts.iter().filter(|r| !r.is_active()).collect();
    finished.sort_by_key(|r| std::cmp::Reverse(r.updated_ms));
    finished.truncate(FINISHED_SHOWN);
    active.sort_by(|a, b| a.id.cmp(&b.id));
    active.extend(finished);
    active
}

/// The page's "Rollouts" section; empty when there are none.
pub fn section(rollouts: &[Rollout]) -> String {
    let shown = shown(rollouts);
    if shown.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Rollouts</h2>\n");
    for r in shown {
        let s = Summary::from(r);
        let _ = writeln!(
            out,
            "<h3><code>{}</code>: release <code>{}</code> {} &rarr; {}, <span class=\"phase\">{}</span></h3>",
            escape(&s.id),
            escape(&s.release),
            escape(short(&s.from_commit)),
            escape(short(&s.to_commit)),
            s.phase
        );
        if let Some(reason) = &s.reason {
            let _ = writeln!(out, "<p class=\"error\">{}</p>", escape(reason));
        }
        out.push_str("<table>\n<tr><th>wave</th><th>sites</th>");
        for state in STATES {
            let _ = write!(out, "<th>{state}</th>");
        }
        out.push_str("<th>status</th></tr>\n");
        for (index, wave) in s.waves.iter().enumerate() {
            let status = if wave.passed_ms.is_some() {
                "passed"
            } else if wave.started_ms.is_some() {
                "in progress"
            } else {
                "waiting"
            };
            let _ = write!(
                out,
                "<tr><td>{} {}</td><td>{}</td>",
                index + 1,
                escape(&wave.name),
                wave.sites
            );
            for state in STATES {
                let _ = write!(
                    out,
                    "<td>{}</td>",
                    wave.counts.get(state).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(out, "<td>{status}</td></tr>");
        }
        out.push_str("</table>\n");
        if !s.failures.is_empty() {
            out.push_str("<p>Failed sites:</p>\n<ul>\n");
            for (site, error) in s.failures.iter().take(FAILURES_SHOWN) {
                let _ = writeln!(
                    out,
                    "<li><a href=\"/agents/{0}\"><code>{0}</code></a>: <span class=\"error\">{1}</span></li>",
                    escape(site),
                    escape(error)
                );
            }
            if s.failures.len() > FAILURES_SHOWN {
                let _ = writeln!(
                    out,
                    "<li>and {} more</li>",
                    s.failures.len() - FAILURES_SHOWN
                );
            }
            out.push_str("</ul>\n");
        }
    }
    out
}

/// The fleet page with the rollouts section after its heading and summary line.
pub fn with_section(mut page: Reply, rollouts: &[Rollout]) -> Reply {
    let section = section(rollouts);
    if section.is_empty() {
        return page;
    }
    let text = String::from_utf8_lossy(&page.body).into_owned();
    let at = text
        .find("</h1>")
        .and_then(|h| text[h..].find("</p>\n").map(|p| h + p + "</p>\n".len()));
    if let Some(at) = at {
        let mut body = text[..at].to_owned();
        body.push_str(&section);
        body.push_str(&text[at..]);
        page.body = body.into_bytes();
    }
    page
}

/// Rollout metrics: sites per state, the phase and the current wave of every rollout shown on the page.
pub fn exposition(rollouts: &[Rollout]) -> prometheus::Result<String> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
        let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(vec.clone()))?;
        Ok(vec)
    };
    let sites = gauge(
        "outpost_hub_rollout_sites",
        "Sites of a rollout by state (Pending, InProgress, Ready, Failed, Deferred, RolledBack).",
        &["rollout", "release", "state"],
    )?;
    let phase = gauge(
        "outpost_hub_rollout_phase",
        "1 for the rollout's phase (Progressing, Paused, Succeeded, RolledBack, Aborted).",
        &["rollout", "release", "phase"],
    )?;
    let wave = gauge(
        "outpost_hub_rollout_current_wave",
        "The wave being rolled out, from 1; the number of waves plus one once all passed.",
        &["rollout", "release"],
    )?;
    for r in shown(rollouts) {
        for (state, count) in r.counts() {
            sites
                .with_label_values(&[r.id.as_str(), r.release.as_str(), state])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        phase
            .with_label_values(&[r.id.as_str(), r.release.as_str(), r.phase.as_str()])
            .set(1);
        wave.with_label_values(&[r.id.as_str(), r.release.as_str()])
            .set(i64::try_from(r.current_wave + 1).unwrap_or(i64::MAX));
    }
    TextEncoder::new().encode_to_string(&registry.gather())
}

/// The metrics reply with the rollout families appended.
pub fn with_metrics(mut reply: Reply, rollouts: &[Rollout]) -> Reply {
    match exposition(rollouts) {
        Ok(text) => reply.body.extend_from_slice(text.as_bytes()),
        Err(e) => reply.body.extend_from_slice(
            format!("# outpost-hub could not build its rollout metrics: {e}\n").as_bytes(),
        ),
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::model::{Phase, SiteState};

    /// A canary wave of one that failed with a hostile error and was rolled back, and two sites never reached.
    fn rollout() -> Rollout {
        use crate::rollout::model::{Amount, WaveSpec};
        use crate::rollout::plan::{plan, StartRequest};
        let source: outpost_proto::wire::SourceSpec = serde_json::from_value(serde_json::json!({
            "name": "shop", "url": "https://git.example.com/shop.git",
            "commit": "1111111111111111111111111111111111111111", "target": "kubernetes"
        }))
        .unwrap();
        let release = crate::rollout::Release {
            name: "shop".into(),
            source,
            selector: Default::default(),
            commit: "1111111111111111111111111111111111111111".into(),
            updated_ms: 0,
        };
        let sites = ["s00", "s01", "s02"]
            .iter()
            .map(|s| ((*s).to_owned(), Default::default()))
            .collect();
        let request = StartRequest {
            id: Some("bad".into()),
            release: "shop".into(),
            to_commit: "2222222222222222222222222222222222222222".into(),
            waves: vec![WaveSpec {
                name: Some("canary".into()),
                size: Some(Amount::Count(1)),
                ..WaveSpec::default()
            }],
            ..StartRequest::default()
        };
        let mut r = plan(&request, &release, &sites, 0).unwrap();
        r.phase = Phase::RolledBack;
        r.reason = Some("1 of 3 sites failed".into());
        if let Some(site) = r.sites.get_mut("s00") {
            site.state = SiteState::RolledBack;
        }
        r.failures
            .insert("s00".into(), "<script>alert(1)</script>".into());
        r
    }

    #[test]
    fn the_section_shows_waves_counts_and_escaped_errors() {
        let r = rollout();
        assert_eq!(r.phase, Phase::RolledBack);
        let html = section(std::slice::from_ref(&r));
        assert!(html.contains("<td>1 canary</td><td>1</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td><td>1</td>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        let page = Reply::text(
            200,
            "text/html",
            "<h1>Outpost fleet</h1>\n<p>1 of 1</p>\n<table>".into(),
        );
        let page = String::from_utf8(with_section(page, std::slice::from_ref(&r)).body).unwrap();
        assert!(
            page.find("<h2>Rollouts</h2>") < page.find("<table>"),
            "{page}"
        );
        assert_eq!(r.sites["s00"].state, SiteState::RolledBack);
    }

    #[test]
    fn metrics_count_sites_by_state() {
        let text = exposition(&[rollout()]).unwrap();
        assert!(text.contains("outpost_hub_rollout_sites{release=\"shop\",rollout=\"bad\",state=\"RolledBack\"} 1"), "{text}");
        assert!(
            text.contains(
                "outpost_hub_rollout_sites{release=\"shop\",rollout=\"bad\",state=\"Pending\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("outpost_hub_rollout_phase{phase=\"RolledBack\",release=\"shop\",rollout=\"bad\"} 1"), "{text}");
    }
}
