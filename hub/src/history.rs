//! `GET /v1/agents/{id}[?limit=N&before=SEQ]`: one agent's view and a page of its kept heartbeats.
//!
//! The whole history used to be loaded, decoded and re-encoded for every request: one request for an agent
//! with large heartbeats added 170 MB to the hub, eight at once 1.4 GB. Now:
//! - a page holds at most `limit` heartbeats ([`DEFAULT_LIMIT`] unless asked, never more than [`MAX_LIMIT`]),
//!   the newest first chosen, listed oldest first; `next_before` in the reply is the `before` of the next,
//!   older page (`null` on the last), so following it yields every kept heartbeat exactly once;
//! - the reply is written as it is read: the head ([`head`]), then one [`item`] per heartbeat, each read from
//!   disk, checked and sent before the next is read, then [`TAIL`]. A heartbeat is sent as the agent sent it
//!   (the bytes whose digest its signature covers), not decoded and encoded again;
//! - the server lets only a few such reads run at once ([`crate::limit::ReadGate`]).
//!
//! The reply's shape: `{<the agent's view, as in GET /v1/agents>, "refusals": [{"at": "...", "status": N,
//! "reason": "...", "message": "..."}, ...], "history_limit": N, "next_before": SEQ|null,
//! "history": [{"received_at": "...", "seq": N, "heartbeat": {...}}, ...]}`. `refusals` are the agent's
//! recent refused requests seen by the hub process that answered ([`crate::agent_refusals`]).

use bytes::Bytes;
use serde::Serialize;

use crate::agent_refusals::AgentRefusal;
use crate::reply::Rejection;
use crate::status::AgentView;

/// Heartbeats in a page when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 20;
/// The most heartbeats one page may hold (each is at most `max_body`, 1 MiB by default).
pub const MAX_LIMIT: usize = 100;
/// Closes the `history` array and the reply object.
pub const TAIL: &[u8] = b"]}";

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// Only heartbeats with a seq below this; `None` for the newest.
    pub before: Option<u64>,
}

/// Reads `limit` and `before` from a query string; anything else in it is refused, so a misspelt parameter
/// is not silently ignored.
pub fn parse_query(query: Option<&str>) -> Result<PageRequest, Rejection> {
    let mut page = PageRequest {
        limit: DEFAULT_LIMIT,
        before: None,
    };
    let bad = |message: String| Rejection::new(400, "bad_query", message);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit must be a whole number from 1 to {MAX_LIMIT} (heartbeats per page)"
                        ))
                    })?;
            }
            "before" => {
                page.before = Some(value.parse().map_err(|_| {
                    bad(
                        "before must be a heartbeat seq: the next_before of the previous page"
                            .into(),
                    )
                })?);
            }
            _ => {
                return Err(bad(format!(
                    "unknown query parameter {:?}; this endpoint takes limit and before",
                    outpost_proto::text::printable(name)
                )))
            }
        }
    }
    Ok(page)
}

#[derive(Serialize)]
struct Paging<'a> {
    /// Refused requests of this agent seen by the hub process that answers (each replica keeps its own).
    refusals: &'a [AgentRefusal],
    history_limit: usize,
    next_before: Option<u64>,
}

/// The reply up to the opening `[` of `history`: the view's fields, the agent's recent refusals (newest
/// first), then the paging fields.
pub fn head(
    view: &AgentView,
    refusals: &[AgentRefusal],
    limit: usize,
    next_before: Option<u64>,
) -> Result<Vec<u8>, Rejection> {
    let encode =
        |e: serde_json::Error| Rejection::internal(format!("cannot encode the reply: {e}"));
    let mut out = serde_json::to_vec(view).map_err(encode)?;
    let paging = serde_json::to_vec(&Paging {
        refusals,
        history_limit: limit,
        next_before,
    })
    .map_err(encode)?;
    // Two JSON objects merged: drop the view's closing brace and the paging's opening one.
    if out.pop() != Some(b'}') || paging.first() != Some(&b'{') {
        return Err(Rejection::internal(
            "an agent view did not encode as a JSON object",
        ));
    }
    out.push(b',');
    out.extend_from_slice(&paging[1..paging.len() - 1]);
    out.extend_from_slice(b",\"history\":[");
    Ok(out)
}

/// Why a kept heartbeat could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("kept heartbeat {seq} is not valid JSON ({source}); the heartbeat log is damaged")]
pub struct ItemError {
    seq: u64,
    #[source]
    source: serde_json::Error,
}

/// One history entry, with the separating comma unless it is the page's first: the bytes before the
/// heartbeat, the heartbeat itself (moved, not copied) and the closing brace. `body` is checked to be JSON (it
/// was validated when received and is checksummed on disk, so this only guards the reply's shape) without
/// building it in memory.
pub fn item(
    first: bool,
    seq: u64,
    received_at: Option<&str>,
    body: Vec<u8>,
) -> Result<[Bytes; 3], ItemError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
        .map_err(|source| ItemError { seq, source })?;
    let received_at = match received_at {
        Some(at) => format!("\"{at}\""),
        None => "null".to_owned(),
    };
    let comma = if first { "" } else { "," };
    let before = format!("{comma}{{\"received_at\":{received_at},\"seq\":{seq},\"heartbeat\":");
    Ok([
        Bytes::from(before),
        Bytes::from(body),
        Bytes::from_static(b"}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_strictly() {
        let page = |q: &str| parse_query(Some(q)).map_err(|r| (r.status, r.message));
        assert_eq!(
            parse_query(None).ok(),
            Some(PageRequest {
                limit: DEFAULT_LIMIT,
                before: None
            })
        );
        assert_eq!(
            page("limit=5&before=42").ok(),
            Some(PageRequest {
                limit: 5,
                before: Some(42)
            })
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "before=-1",
            "befor=3",
            "limit",
        ] {
            assert!(matches!(page(bad), Err((400, _))), "{bad}");
        }
        assert!(matches!(page("befor=3"), Err((_, m)) if m.contains("\"befor\"")));
    }

    #[test]
    fn the_pieces_make_one_json_document() -> Result<(), Box<dyn std::error::Error>> {
        let view: AgentView = serde_json::from_value(serde_json::json!({
            "agent_id": "a", "origin": "config", "fingerprint": null, "online": true, "status": "online",
            "last_seen": null, "last_seen_secs_ago": null, "heartbeat_interval_ms": 1000, "seq": 2,
            "boot_id": null, "agent_version": null, "assignment_generation": null,
            "assigned_generation": null, "dropped": null, "sources": []
        }))?;
        let refused = AgentRefusal {
            at: Some("2026-12-05T22:00:01Z".into()),
            at_ms: 0,
            status: 409,
            reason: "seq_not_newer",
            message: "a replay".into(),
        };
        let mut reply = head(&view, &[refused], 2, Some(1)).map_err(|r| r.message)?;
        for part in item(
            true,
            1,
            Some("2026-12-05T22:00:00Z"),
            b"{\"seq\": 1}".to_vec(),
        )? {
            reply.extend_from_slice(&part);
        }
        for part in item(false, 2, None, b"{\"seq\":2}".to_vec())? {
            reply.extend_from_slice(&part);
        }
        reply.extend_from_slice(TAIL);
        let parsed: serde_json::Value = serde_json::from_slice(&reply)?;
        assert_eq!(parsed["agent_id"], "a");
        assert_eq!(parsed["history_limit"], 2);
        assert_eq!(parsed["next_before"], 1);
        assert_eq!(parsed["history"][0]["heartbeat"]["seq"], 1);
        assert_eq!(parsed["history"][0]["received_at"], "2026-12-05T22:00:00Z");
        assert_eq!(parsed["history"][1]["seq"], 2);
        assert_eq!(
            parsed["refusals"],
            serde_json::json!([{"at": "2026-12-05T22:00:01Z", "status": 409, "reason": "seq_not_newer", "message": "a replay"}])
        );
        let mut empty = head(&view, &[], 20, None).map_err(|r| r.message)?;
        empty.extend_from_slice(TAIL);
        let parsed: serde_json::Value = serde_json::from_slice(&empty)?;
        assert_eq!(parsed["history"], serde_json::json!([]));
        assert!(parsed["next_before"].is_null());
        assert_eq!(parsed["refusals"], serde_json::json!([]));
        assert!(item(true, 3, None, b"{\"torn".to_vec()).is_err());
        Ok(())
    }
}
