//! Delivering the outbox: each entry signed as it is sent, oldest first, and removed only on the hub's signed
//! answer.

use std::time::Duration;

use outpost_proto::keys::SigningKey;
use outpost_proto::signed::{self, Freshness, ReceivedResponse};
use outpost_proto::wire::HeartbeatRefusal;

use super::HeartbeatError;
use crate::config::Upstream;
use crate::daemon::assignment::Assignments;
use crate::store::{now, Store};

/// How long connecting to the hub, and a whole exchange with it, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest hub reply read: an acknowledgement with an assignment of a few hundred sources fits many times
/// over, and a hub (or something posing as one) cannot make the agent buffer more.
const MAX_REPLY: usize = 4 * 1024 * 1024;
/// Entries sent per drain before the loop looks at shutdown and new state again.
const DRAIN_BATCH: usize = 64;
const CONTENT_TYPE: &str = "application/json";
/// The HTTP client heartbeats go out on: the hub's URL, `ca_file` (else the host's or the bundled roots).
pub fn client(upstream: &Upstream) -> Result<reqwest::Client, HeartbeatError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("outpost/", env!("CARGO_PKG_VERSION")));
    let mut ca_certs = None;
    if let Some(path) = &upstream.ca_file {
        let pem = std::fs::read(path).map_err(|e| HeartbeatError::Send {
            url: upstream.url.clone(),
            message: format!("cannot read ca_file {}: {e}", path.display()),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HeartbeatError::Send {
                url: upstream.url.clone(),
                message: format!("ca_file {}: {e}", path.display()),
            })?;
        ca_certs = Some(certs);
    }
    let builder = match crate::trust::roots(ca_certs.as_deref()) {
        Some(certs) => builder.tls_certs_only(certs.iter().cloned()),
        None => builder,
    };
    builder.build().map_err(|e| HeartbeatError::Send {
        url: upstream.url.clone(),
        message: outpost_proto::text::error_chain(&e, ": "),
    })
}

/// Sends queued heartbeats oldest first; stops at the first failure so order is kept.
pub(super) async fn drain(
    client: &reqwest::Client,
    upstream: &Upstream,
    store: &Store,
    key: &SigningKey,
    assignments: &mut Assignments,
) -> Result<(), HeartbeatError> {
    let send_err = |message: String| HeartbeatError::Send {
        url: upstream.url.clone(),
        message,
    };
    let entries = store
        .outbox_entries(DRAIN_BATCH)
        .map_err(|e| send_err(e.to_string()))?;
    for entry in entries {
        let answer = post_signed(
            client,
            upstream,
            "/v1/heartbeats",
            entry.body.clone(),
            key,
            MAX_REPLY,
        )
        .await
        .map_err(send_err)?;
        let (status, body) = (answer.status, &answer.body);
        let verify = || answer.verified.clone();
        match status {
            200 => {
                if let Err(message) = verify() {
                    assignments.untrusted(body, &message);
                    return Err(HeartbeatError::Untrusted {
                        url: upstream.url.clone(),
                        message,
                    });
                }
                store
                    .outbox_delivered(entry.seq)
                    .map_err(|e| send_err(e.to_string()))?;
                tracing::debug!(seq = entry.seq, "heartbeat delivered");
                assignments.consider(body);
            }
            // The hub already has this seq or a newer one (e.g. after a restore): this heartbeat can never land.
            // Only the hub's own signed refusal of exactly this heartbeat says so; a 409 from anything else (a
            // proxy, a man in the middle, a replayed refusal) is a failed send, and the heartbeat stays queued.
            409 => {
                let refusal = verify().and_then(|_| {
                    HeartbeatRefusal::parse(body)
                        .filter(|r| r.refuses(&assignments.config.agent.id, entry.seq))
                        .ok_or_else(|| {
                            format!(
                                "the signed 409 does not name agent {:?} and seq {}",
                                assignments.config.agent.id, entry.seq
                            )
                        })
                });
                let refusal = refusal.map_err(|message| HeartbeatError::Untrusted {
                    url: upstream.url.clone(),
                    message: format!(
                        "a 409 refusal of heartbeat {} that is not the hub's ({message}); the heartbeat stays queued",
                        entry.seq
                    ),
                })?;
                let dropped = store
                    .outbox_refused(entry.seq)
                    .map_err(|e| send_err(e.to_string()))?;
                tracing::warn!(
                    seq = entry.seq,
                    dropped,
                    "the hub refused heartbeat {}: {} ({}); dropped from the outbox, and counted in the next heartbeat",
                    entry.seq,
                    refusal.message,
                    refusal.error
                );
            }
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_string();
                return Err(send_err(format!("HTTP {status}: {text}")));
            }
        }
    }
    Ok(())
}

/// What a signed POST to the hub brought back.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// Whether the answer is signed with `[upstream] hub_key` (the reason when not).
    pub verified: Result<(), String>,
}

/// POSTs `body` to the hub's `path`, signed with the agent `key` (RFC 9421, as the hub checks every agent
/// request), reads at most `max_answer` bytes of the answer and checks its signature against `hub_key`.
/// `Err` says why no answer came: a bad URL, signing, the connection, or reading.
pub async fn post_signed(
    client: &reqwest::Client,
    upstream: &Upstream,
    path: &str,
    body: Vec<u8>,
    key: &SigningKey,
    max_answer: usize,
) -> Result<Answer, String> {
    let url = format!("{}{path}", upstream.url);
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("[upstream] url {url}: {e}"))?;
    // What the HTTP client sends as Host: the port only when it is not the scheme's default.
    let host = parsed.host_str().unwrap_or_default();
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let headers = signed::sign_request(
        "POST",
        &authority,
        parsed.path(),
        &body,
        CONTENT_TYPE,
        key,
        now() as i64,
    )
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    let mut request = client
        .post(parsed)
        .header("content-type", CONTENT_TYPE)
        .body(body);
    for (name, value) in &headers {
        request = request.header(*name, value.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| outpost_proto::text::error_chain(&e, ": "))?;
    let status = response.status().as_u16();
    let answer_headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = crate::http_body::read_bounded(response, max_answer)
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    let header_refs: Vec<(&str, &str)> = answer_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let received = ReceivedResponse {
        status,
        headers: &header_refs,
        body: &body,
    };
    let verified = signed::verify_response(
        &received,
        &upstream.hub_key,
        now() as i64,
        Freshness::default(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string());
    Ok(Answer {
        status,
        body,
        verified,
    })
}
