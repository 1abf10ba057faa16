//! `outpost check --connect`, the hub: one signed ping (`POST /v1/ping`, `outpost_proto::wire::Ping`), signed
//! with the agent key exactly as a heartbeat is. The hub stores nothing and uses no `seq`, so a check never
//! disturbs the heartbeats; its answer, signed with the hub key, proves both keys in one exchange: the hub
//! knows this agent's key, and `[upstream] hub_key` is the hub's.
//!
//! [`judge`] turns what came back into a finding: enrolled, not enrolled (with the command that enrolls),
//! refused for another reason (the hub's message says which), or unreachable.

use std::time::Duration;

use outpost_proto::wire::{Ping, MAX_PING_BYTES};

use super::Finding;
use crate::config::{Config, Upstream};

/// How long the whole ping may take (connect, TLS, answer).
const PING_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer read: a ping's answer or a refusal is far smaller.
const MAX_ANSWER: usize = 64 * 1024;
const SUBJECT: &str = "hub";

/// What one ping came back with.
#[derive(Debug)]
pub enum Exchange {
    /// No HTTP answer: the connection, TLS or the request failed.
    Unreachable(String),
    Answered {
        status: u16,
        /// Whether the answer is signed with `[upstream] hub_key` (the reason when not).
        verified: Result<(), String>,
        body: Vec<u8>,
    },
}

/// Pings the hub as this agent and says what that shows.
pub async fn check(config: &Config, upstream: &Upstream) -> Finding {
    let key = match crate::identity::load_key(&config.agent) {
        Ok(key) => key,
        Err(e) => return Finding::fail(SUBJECT, e.to_string()),
    };
    let fingerprint = key.public_key().fingerprint();
    let exchange = match ping(upstream, &config.agent.id, &key).await {
        Ok(exchange) => exchange,
        Err(e) => Exchange::Unreachable(e),
    };
    judge(&upstream.url, &config.agent.id, &fingerprint, exchange)
}

/// Sends one signed ping, as a heartbeat is sent; `Err` for what stopped it before any answer.
async fn ping(
    upstream: &Upstream,
    agent_id: &str,
    key: &outpost_proto::keys::SigningKey,
) -> Result<Exchange, String> {
    use crate::daemon::heartbeat;
    let client = heartbeat::client(upstream).map_err(|e| e.to_string())?;
    let body = Ping {
        agent_id: agent_id.to_owned(),
    }
    .to_body();
    debug_assert!(body.len() <= MAX_PING_BYTES);
    let answer = tokio::time::timeout(
        PING_TIMEOUT,
        heartbeat::post_signed(&client, upstream, "/v1/ping", body, key, MAX_ANSWER),
    )
    .await
    .map_err(|_| format!("no answer within {}s", PING_TIMEOUT.as_secs()))??;
    Ok(Exchange::Answered {
        status: answer.status,
        verified: answer.verified,
        body: answer.body,
    })
}

/// The finding for what a ping to `url` as agent `agent_id` (key `fingerprint`) came back with.
pub fn judge(url: &str, agent_id: &str, fingerprint: &str, exchange: Exchange) -> Finding {
    let (status, verified, body) = match exchange {
        Exchange::Unreachable(why) => {
            return Finding::fail(
                SUBJECT,
                format!("unreachable: {url}: {why}; check [upstream] url, the network, and ca_file for a private CA"),
            )
        }
        Exchange::Answered {
            status,
            verified,
            body,
        } => (status, verified, body),
    };
    let refusal: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            Some((
                v.get("error")?.as_str()?.to_owned(),
                v.get("message")?.as_str()?.to_owned(),
            ))
        });
    match (status, refusal) {
        (200, _) => match (verified, Ping::parse(&body)) {
            (Ok(()), Some(ping)) if ping.agent_id == agent_id => Finding::ok(
                SUBJECT,
                format!("enrolled: {url} knows this agent's key ({fingerprint}) as {agent_id:?}, and its answer is signed with [upstream] hub_key"),
            ),
            (Ok(()), _) => Finding::fail(
                SUBJECT,
                format!("{url} answered the ping signed, but not for agent {agent_id:?}; is [upstream] url this agent's hub?"),
            ),
            (Err(why), _) => Finding::fail(
                SUBJECT,
                format!("{url} accepted this agent's key, but its answer is not signed with [upstream] hub_key ({why}); set hub_key to the public key `outpost-hub serve` prints"),
            ),
        },
        (401, Some((reason, _))) if reason == "unknown_key" => Finding::fail(
            SUBJECT,
            format!("not enrolled: {url} knows no agent with this key ({fingerprint}); enroll with `outpost enroll --hub {url} --token-file FILE --hub-key-fingerprint SHA256:...` (a token from `outpost-hub token create`), or list the key as an [[agent]] in the hub config"),
        ),
        (404, _) => Finding::warn(
            SUBJECT,
            format!("{url} answers but has no POST /v1/ping (a hub older than this agent), so the agent's key is checked only by the first heartbeat"),
        ),
        (_, Some((reason, message))) => Finding::fail(
            SUBJECT,
            format!("{url} refused this agent's signed ping ({status} {reason}): {message}"),
        ),
        (_, None) => Finding::fail(
            SUBJECT,
            format!("{url} answered HTTP {status}: is [upstream] url an outpost hub?"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Level;

    const URL: &str = "https://hub.example.com";
    const FP: &str = "SHA256:abc";

    fn answered(status: u16, verified: Result<(), String>, body: &str) -> Finding {
        let exchange = Exchange::Answered {
            status,
            verified,
            body: body.as_bytes().to_vec(),
        };
        judge(URL, "store-042", FP, exchange)
    }

    #[test]
    fn a_signed_answer_for_this_agent_is_enrolled() {
        let ok = answered(200, Ok(()), r#"{"agent_id":"store-042"}"#);
        assert_eq!(ok.level, Level::Ok);
        assert!(ok.detail.starts_with("enrolled: "), "{}", ok.detail);
        let other = answered(200, Ok(()), r#"{"agent_id":"store-043"}"#);
        assert_eq!(other.level, Level::Fail);
        let unsigned = answered(
            200,
            Err("no signature".into()),
            r#"{"agent_id":"store-042"}"#,
        );
        assert_eq!(unsigned.level, Level::Fail);
        assert!(unsigned.detail.contains("hub_key"), "{}", unsigned.detail);
    }

    #[test]
    fn an_unknown_key_says_how_to_enroll() {
        let refused = answered(
            401,
            Err("unsigned".into()),
            r#"{"error":"unknown_key","message":"no agent is enrolled with key SHA256:abc"}"#,
        );
        assert_eq!(refused.level, Level::Fail);
        assert!(
            refused.detail.starts_with("not enrolled: ")
                && refused
                    .detail
                    .contains("outpost enroll --hub https://hub.example.com"),
            "{}",
            refused.detail
        );
    }

    #[test]
    fn other_answers_pass_on_the_hubs_reason_or_say_what_is_wrong() {
        let stale = answered(
            401,
            Err("unsigned".into()),
            r#"{"error":"stale_signature","message":"the signer's clock is behind"}"#,
        );
        assert_eq!(stale.level, Level::Fail);
        assert!(stale
            .detail
            .contains("(401 stale_signature): the signer's clock is behind"));
        let old_hub = answered(
            404,
            Err("unsigned".into()),
            r#"{"error":"not_found","message":"x"}"#,
        );
        assert_eq!(old_hub.level, Level::Warn);
        let proxy = answered(502, Err("unsigned".into()), "<html>bad gateway</html>");
        assert_eq!(proxy.level, Level::Fail);
        assert!(proxy.detail.contains("HTTP 502"));
        let down = judge(
            URL,
            "store-042",
            FP,
            Exchange::Unreachable("connection refused".into()),
        );
        assert_eq!(down.level, Level::Fail);
        assert!(down.detail.starts_with("unreachable: "));
    }
}
