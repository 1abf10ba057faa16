//! `POST /v1/ping`: a signed no-op, for `outpost check --connect` (see `outpost_proto::wire::Ping`).
//!
//! The request is checked exactly as a heartbeat is up to its body ([`crate::heartbeat::signed_by`]: an
//! enrolled key, a fresh signature, one of this hub's names); then the body must name the signer. Nothing is
//! stored and no `seq` is consumed; the answer is the same body signed with the hub key, so the agent also
//! learns whether it holds the right `hub_key`.

use outpost_proto::signed::{sign_response, ReceivedRequest};
use outpost_proto::wire::Ping;

use crate::reply::{Rejection, Reply, JSON};
use crate::state::HubState;

/// Answers a ping received at `now_ms` (hub clock, Unix milliseconds).
pub fn handle(
    hub: &HubState,
    request: &ReceivedRequest<'_>,
    now_ms: u64,
) -> Result<Reply, Rejection> {
    let agent = crate::heartbeat::signed_by(hub, request, now_ms)?;
    let ping = Ping::parse(request.body).ok_or_else(|| {
        Rejection::new(
            400,
            "invalid_ping",
            format!(
                "a ping signed by agent {:?} is not {{\"agent_id\": \"...\"}}; `outpost check --connect` sends one",
                agent.id
            ),
        )
        .about(&agent.id)
    })?;
    if ping.agent_id != agent.id {
        return Err(Rejection::new(
            403,
            "agent_mismatch",
            format!(
                "the ping says agent_id {:?} but is signed with the key of agent {:?}; set [agent] id on the agent to the id the key is enrolled under",
                ping.agent_id, agent.id
            ),
        )
        .about(&agent.id));
    }
    let body = Ping { agent_id: agent.id }.to_body();
    let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let headers = sign_response(200, &body, JSON, &hub.key, now)
        .map_err(|e| Rejection::internal(format!("cannot sign a ping's answer: {e}")))?;
    Ok(Reply {
        status: 200,
        headers,
        body,
    })
}
