//! What the fleet page shows of a large fleet (issue 18, item 7): counts by state first, then one page of
//! agents matching a filter, problems first and the newest of them on top. Pure functions of the same
//! [`AgentView`]s as `GET /v1/agents`, so a 10,000-agent fleet costs one pass and a sort, and the page stays
//! [`PAGE_SIZE`] agents long.

use std::collections::BTreeMap;

use outpost_proto::wire::SourceState;

use crate::reply::Rejection;
use crate::status::AgentView;

/// Agents per page.
pub const PAGE_SIZE: usize = 100;
/// The longest search text kept; ids are at most 253 characters, errors are searched by a fragment.
const MAX_TEXT: usize = 200;

/// Which agents the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Online,
    Offline,
    NeverSeen,
    /// Offline, a source Failed or Stale, or an assignment refused.
    Problems,
    /// Agents with a source in this state.
    Source(SourceState),
}

const SOURCE_STATES: [SourceState; 5] = [
    SourceState::Ready,
    SourceState::Progressing,
    SourceState::Failed,
    SourceState::Stale,
    SourceState::Suspended,
];

impl StateFilter {
    pub fn parse(text: &str) -> Option<StateFilter> {
        Some(match text {
            "online" => StateFilter::Online,
            "offline" => StateFilter::Offline,
            "never-seen" => StateFilter::NeverSeen,
            "problems" => StateFilter::Problems,
            other => StateFilter::Source(SOURCE_STATES.into_iter().find(|s| s.as_str() == other)?),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Online => "online",
            StateFilter::Offline => "offline",
            StateFilter::NeverSeen => "never-seen",
            StateFilter::Problems => "problems",
            StateFilter::Source(state) => state.as_str(),
        }
    }

    fn matches(self, view: &AgentView) -> bool {
        match self {
            StateFilter::Online => view.status == "online",
            StateFilter::Offline => view.status == "offline",
            StateFilter::NeverSeen => view.status == "never-seen",
            StateFilter::Problems => has_problem(view),
            StateFilter::Source(state) => view.sources.iter().any(|s| s.state == state),
        }
    }
}

/// The page's query: `?state=…&q=…&page=N` (what the page's form and links send).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<StateFilter>,
    /// Text searched in agent ids and sources' errors, case-insensitively.
    pub text: Option<String>,
    /// `key=value`: only agents with this label.
    pub label: Option<(String, String)>,
    /// From 0.
    pub page: usize,
}

impl Filter {
    /// The query string for this filter at `page` (values escaped for a URL).
    pub fn query(&self, page: usize) -> String {
        let mut parts = Vec::new();
        if let Some(state) = self.state {
            parts.push(format!("state={}", state.as_str()));
        }
        if let Some(text) = &self.text {
            parts.push(format!("q={}", percent_encode(text)));
        }
        if let Some((key, value)) = &self.label {
            parts.push(format!(
                "label={}",
                percent_encode(&format!("{key}={value}"))
            ));
        }
        if page > 0 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// Reads the page's query string; an unknown state or page is a 400 that says what is allowed.
pub fn parse_query(query: Option<&str>) -> Result<Filter, Rejection> {
    let mut filter = Filter::default();
    let bad = |message: String| Rejection::new(400, "invalid_query", message);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "state" if value.is_empty() => {}
            "state" => {
                filter.state = Some(StateFilter::parse(&value).ok_or_else(|| {
                    bad(format!("state {value:?} is not one of online, offline, never-seen, problems, Ready, Progressing, Failed, Stale, Suspended"))
                })?)
            }
            "q" => {
                let text: String = value.trim().chars().take(MAX_TEXT).collect();
                filter.text = (!text.is_empty()).then_some(text);
            }
            "label" if value.trim().is_empty() => {}
            "label" => {
                let (key, wanted) = value.split_once('=').ok_or_else(|| {
                    bad(format!("label {value:?} is not key=value, like site=berlin"))
                })?;
                filter.label = Some((key.trim().to_owned(), wanted.trim().to_owned()));
            }
            "page" => {
                filter.page = value
                    .parse()
                    .map_err(|_| bad(format!("page {value:?} is not a number")))?
            }
            _ => return Err(bad(format!("unknown parameter {key:?}; use state, q, label and page"))),
        }
    }
    Ok(filter)
}

/// Agents by status and sources by state, for the head of the page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub agents: usize,
    pub online: usize,
    pub offline: usize,
    pub never_seen: usize,
    pub problems: usize,
    /// Sources by state name, every state present (0 when none).
    pub sources: BTreeMap<&'static str, usize>,
}

pub fn counts(views: &[AgentView]) -> Counts {
    let mut counts = Counts {
        agents: views.len(),
        sources: SOURCE_STATES.iter().map(|s| (s.as_str(), 0)).collect(),
        ..Counts::default()
    };
    for view in views {
        match view.status.as_str() {
            "online" => counts.online += 1,
            "offline" => counts.offline += 1,
            _ => counts.never_seen += 1,
        }
        counts.problems += usize::from(has_problem(view));
        for source in &view.sources {
            *counts.sources.entry(source.state.as_str()).or_default() += 1;
        }
    }
    counts
}

/// Whether an agent needs a look: offline, a source Failed or Stale, or an assignment it refused.
pub fn has_problem(view: &AgentView) -> bool {
    view.status == "offline"
        || view.assignment_error.is_some()
        || view
            .sources
            .iter()
            .any(|s| matches!(s.state, SourceState::Failed | SourceState::Stale))
}

fn matches_text(view: &AgentView, text: &str) -> bool {
    let text = text.to_lowercase();
    view.agent_id.to_lowercase().contains(&text)
        || view.sources.iter().any(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(&text))
        })
}

/// The agents matching `filter`, problems first (the most recently seen on top), then the rest by id; returns
/// the page asked for and how many matched in all.
pub fn select<'a>(views: &'a [AgentView], filter: &Filter) -> (Vec<&'a AgentView>, usize) {
    let mut matching: Vec<&AgentView> = views
        .iter()
        .filter(|v| filter.state.is_none_or(|s| s.matches(v)))
        .filter(|v| filter.text.as_deref().is_none_or(|t| matches_text(v, t)))
        .filter(|v| {
            filter
                .label
                .as_ref()
                .is_none_or(|(key, value)| v.labels.get(key) == Some(value))
        })
        .collect();
    matching.sort_by(|a, b| {
        has_problem(b)
            .cmp(&has_problem(a))
            .then_with(|| {
                if has_problem(a) {
                    a.last_seen_secs_ago
                        .unwrap_or(u64::MAX)
                        .cmp(&b.last_seen_secs_ago.unwrap_or(u64::MAX))
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| a.agent_id.cmp(&b.agent_id))
    });
    let total = matching.len();
    let page = matching
        .into_iter()
        .skip(filter.page.saturating_mul(PAGE_SIZE))
        .take(PAGE_SIZE)
        .collect();
    (page, total)
}

/// `+` and `%XX` as a browser's form sends them; malformed escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `text` as one URL path segment or query value.
pub fn percent_path(text: &str) -> String {
    percent_encode(text)
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::wire::SourceStatus;

    fn view(id: &str, status: &str, ago: Option<u64>, states: &[SourceState]) -> AgentView {
        AgentView {
            agent_id: id.into(),
            origin: "config".into(),
            fingerprint: None,
            online: status == "online",
            status: status.into(),
            last_seen: None,
            last_seen_secs_ago: ago,
            heartbeat_interval_ms: 30_000,
            seq: None,
            boot_id: None,
            agent_version: None,
            assignment_generation: None,
            assigned_generation: None,
            dropped: None,
            assignment_error: None,
            labels: Default::default(),
            sources: states
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut source = SourceStatus::new(format!("s{i}"), *s);
                    if *s == SourceState::Failed {
                        source.last_error = Some(format!("{id}: Image Pull failed"));
                    }
                    source
                })
                .collect(),
        }
    }

    fn fleet() -> Vec<AgentView> {
        vec![
            view("a-ok", "online", Some(5), &[SourceState::Ready]),
            view(
                "b-failed-old",
                "online",
                Some(20),
                &[SourceState::Ready, SourceState::Failed],
            ),
            view("c-offline", "offline", Some(900), &[SourceState::Ready]),
            view("d-failed-new", "online", Some(1), &[SourceState::Failed]),
            view("e-never", "never-seen", None, &[]),
            view("f-stale", "online", Some(3), &[SourceState::Stale]),
        ]
    }

    fn ids(page: &[&AgentView]) -> Vec<String> {
        page.iter().map(|v| v.agent_id.clone()).collect()
    }

    #[test]
    fn counts_come_first_and_cover_every_state() {
        let counts = counts(&fleet());
        assert_eq!(
            (
                counts.agents,
                counts.online,
                counts.offline,
                counts.never_seen,
                counts.problems
            ),
            (6, 4, 1, 1, 4)
        );
        assert_eq!(counts.sources.get("Ready"), Some(&3));
        assert_eq!(counts.sources.get("Failed"), Some(&2));
        assert_eq!(counts.sources.get("Suspended"), Some(&0));
    }

    #[test]
    fn problems_first_newest_on_top_then_by_id() {
        let views = fleet();
        let (page, total) = select(&views, &Filter::default());
        assert_eq!(total, 6);
        assert_eq!(
            ids(&page),
            [
                "d-failed-new",
                "f-stale",
                "b-failed-old",
                "c-offline",
                "a-ok",
                "e-never"
            ]
        );
    }

    #[test]
    fn filters_by_state_and_text_and_pages() -> Result<(), Rejection> {
        let views = fleet();
        let failed = parse_query(Some("state=Failed"))?;
        assert_eq!(
            ids(&select(&views, &failed).0),
            ["d-failed-new", "b-failed-old"]
        );
        let offline = parse_query(Some("state=offline"))?;
        assert_eq!(ids(&select(&views, &offline).0), ["c-offline"]);
        // Text in an error, case-insensitive, as a form sends it.
        let text = parse_query(Some("state=&q=image+pull"))?;
        assert_eq!(text.text.as_deref(), Some("image pull"));
        assert_eq!(select(&views, &text).1, 2);
        let mut labelled = views.clone();
        labelled[2].labels.insert("site".into(), "berlin".into());
        let site = parse_query(Some("label=site%3Dberlin"))?;
        assert_eq!(ids(&select(&labelled, &site).0), ["c-offline"]);
        assert_eq!(
            parse_query(Some("label=site")).map_err(|r| r.status),
            Err(400)
        );
        let by_id = parse_query(Some("q=NEVER"))?;
        assert_eq!(ids(&select(&views, &by_id).0), ["e-never"]);
        let many: Vec<AgentView> = (0..250)
            .map(|i| {
                view(
                    &format!("s{i:03}"),
                    "online",
                    Some(1),
                    &[SourceState::Ready],
                )
            })
            .collect();
        let last = parse_query(Some("page=2"))?;
        let (page, total) = select(&many, &last);
        assert_eq!((page.len(), total), (50, 250));
        assert_eq!(page[0].agent_id, "s200");
        assert_eq!(
            parse_query(Some("state=bogus")).map_err(|r| r.status),
            Err(400)
        );
        assert_eq!(parse_query(Some("page=x")).map_err(|r| r.status), Err(400));
        assert_eq!(
            parse_query(Some("color=red")).map_err(|r| r.status),
            Err(400)
        );
        Ok(())
    }

    #[test]
    fn queries_round_trip() -> Result<(), Rejection> {
        let filter = Filter {
            state: Some(StateFilter::Source(SourceState::Stale)),
            text: Some("a&b c%".into()),
            label: Some(("site".into(), "lyon".into())),
            page: 0,
        };
        let query = filter.query(3);
        assert_eq!(
            query,
            "?state=Stale&q=a%26b%20c%25&label=site%3Dlyon&page=3"
        );
        let back = parse_query(Some(&query[1..]))?;
        assert_eq!(
            (back.state, back.text, back.label, back.page),
            (filter.state, filter.text, filter.label, 3)
        );
        assert_eq!(percent_decode("%e2%82%ac%zz%"), "€%zz%");
        Ok(())
    }
}
