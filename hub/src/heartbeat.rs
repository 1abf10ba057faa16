//! `POST /v1/heartbeats`: decide whether a received heartbeat is trusted, record it, and build the signed
//! reply that carries the agent's assignment.
//!
//! The checks run cheapest and least trusting first, and nothing is recorded until all pass:
//! 1. find the signer by the `keyid` (key fingerprint) in `Signature-Input`: unknown key -> 401;
//! 2. `verify_request` with that agent's key: body digest, signature, `created` within the freshness window
//!    -> 401 with the reason (`bad_digest`, `bad_signature`, `stale_signature`);
//! 3. the signed `@authority` must be one of the hub's names ([`crate::authority`]) -> 401 `wrong_authority`,
//!    so a heartbeat signed for another hub cannot be replayed here;
//! 4. parse and validate the body -> 400;
//! 5. the body's `agent_id` must be the signer's id -> 403 (one agent's key cannot speak for another);
//! 6. `seq` must be above the last accepted one -> 409, except an exact copy of a heartbeat already
//!    accepted, which is acknowledged again (200) so an agent whose acknowledgement was lost can move on.
//!    The 409 is signed and names the agent and seq: it makes the agent drop the heartbeat, so a forged or
//!    replayed one must not verify.
//!
//! The reply is `{"ack_seq": N, "assignment": ...}`, signed with the hub key (RFC 9421 response signature).
//! The assignment is sent only when it is newer than the generation the agent reports running; an agent
//! that is up to date gets `null`, which keeps heartbeats small on metered uplinks. Of the config's
//! `[[assignment]]` for the agent and the one set through the admin API (in the store), the higher
//! generation wins: the store gives a new one a generation above the config's ([`crate::admin`]), and an
//! operator who edits the config to a higher generation takes the agent back.
//!
//! This is synchronous code over bytes: the server reads the request, [`verify`] decides whether it is
//! trusted, the store records it ([`crate::backend::FleetStore::record`]), and [`answer`] builds the reply.

use outpost_proto::sfv::{self, BareItem, ListEntry};
use outpost_proto::signature::SignatureError;
use outpost_proto::signed::{
    sign_response, verify_request, ReceivedRequest, SignedMessageError, LABEL,
};
use outpost_proto::wire::{parse_heartbeat, Assignment};
use serde::Serialize;

use crate::backend::BackendError;
use crate::registry::KnownAgent;
use crate::reply::{Rejection, Reply, JSON};
use crate::state::HubState;
use crate::store::Recorded;

/// The body of a successful heartbeat reply.
#[derive(Debug, Serialize)]
struct HeartbeatReply<'a> {
    /// The seq the hub now holds for this heartbeat; the agent removes it from its outbox.
    ack_seq: u64,
    /// `outpost.assignment/v1`, or `null` when the agent already runs the newest generation.
    assignment: Option<&'a Assignment>,
}

/// A heartbeat that passed every check but the seq: ready to be recorded.
#[derive(Debug)]
pub struct Verified {
    pub agent_id: String,
    pub heartbeat: outpost_proto::wire::Heartbeat,
}

/// Checks one heartbeat received at `now_ms` (the hub's clock, Unix milliseconds): steps 1 to 5 above.
pub fn verify(
    hub: &HubState,
    request: &ReceivedRequest<'_>,
    now_ms: u64,
) -> Result<Verified, Rejection> {
    let agent = signed_by(hub, request, now_ms)?;
    let heartbeat = parse_heartbeat(request.body).map_err(|e| {
        Rejection::new(
            400,
            "invalid_heartbeat",
            format!(
                "heartbeat from agent {:?} is not a valid outpost.heartbeat/v1 body: {e}",
                agent.id
            ),
        )
        .about(&agent.id)
    })?;
    if heartbeat.agent_id != agent.id {
        return Err(Rejection::new(
            403,
            "agent_mismatch",
            format!(
                "the heartbeat says agent_id {:?} but is signed with the key of agent {:?}; an agent may only report for itself (check [agent] id on the agent)",
                heartbeat.agent_id, agent.id
            ),
        )
        .about(&agent.id));
    }
    Ok(Verified {
        agent_id: agent.id,
        heartbeat,
    })
}

/// Steps 1 to 3 above, shared by every request an agent signs (a heartbeat, a ping): the enrolled agent
/// whose key signed `request`, freshly and for one of this hub's names. A refusal past step 1 names the agent.
pub fn signed_by(
    hub: &HubState,
    request: &ReceivedRequest<'_>,
    now_ms: u64,
) -> Result<KnownAgent, Rejection> {
    let now = unix_secs(now_ms);
    let agent = signer(hub, request.headers)?;
    verify_request(request, &agent.public_key, now, hub.config.freshness)
        .map_err(|e| verify_rejection(&agent.id, &e).about(&agent.id))?;
    hub.authorities
        .check(&agent.id, request.authority)
        .map_err(|r| r.about(&agent.id))?;
    Ok(agent)
}

/// The answer to a verified heartbeat once the store said what became of it (step 6 above).
pub fn answer(
    hub: &HubState,
    verified: &Verified,
    recorded: Result<Recorded, BackendError>,
    stored: Result<Option<Assignment>, BackendError>,
    now_ms: u64,
) -> Result<Reply, Rejection> {
    let now = unix_secs(now_ms);
    let (agent_id, heartbeat) = (&verified.agent_id, &verified.heartbeat);
    let recorded = recorded.map_err(|e| {
        crate::reply::store_failure(
            &e,
            format!(
                "cannot record heartbeat {} of agent {agent_id:?}",
                heartbeat.seq
            ),
        )
    })?;
    match recorded {
        Recorded::Accepted { .. } | Recorded::Duplicate => {}
        Recorded::NotNewer { last_seq } => {
            return Err(Rejection::new(
                409,
                "seq_not_newer",
                format!(
                    "heartbeat seq {} of agent {agent_id:?} is not above the last accepted seq {last_seq}: a replay or an out-of-order send; agents must send seqs in increasing order (if the agent's state was wiped, its seq restarted: give it a new id or key)",
                    heartbeat.seq
                ),
            )
            .signed_refusal(agent_id, heartbeat.seq, &hub.key, now)?)
        }
        Recorded::Changed => {
            return Err(Rejection::new(
                409,
                "seq_reused",
                format!(
                    "heartbeat seq {} of agent {agent_id:?} was already accepted with different content; every heartbeat needs a new seq",
                    heartbeat.seq
                ),
            )
            .signed_refusal(agent_id, heartbeat.seq, &hub.key, now)?)
        }
    }
    tracing::debug!(agent = %agent_id, seq = heartbeat.seq, duplicate = (recorded == Recorded::Duplicate), "heartbeat accepted");

    let stored = stored.map_err(|e| {
        crate::reply::store_failure(
            &e,
            format!("cannot read the assignment of agent {agent_id:?}"),
        )
    })?;
    let assignment = newest(hub.config.assignments.for_agent(agent_id), stored.as_ref())
        .filter(|a| a.generation > heartbeat.assignment_generation);
    signed_reply(hub, heartbeat.seq, assignment, now)
}

/// The higher generation of the config's assignment and the stored one.
pub fn newest<'a>(
    config: Option<&'a Assignment>,
    stored: Option<&'a Assignment>,
) -> Option<&'a Assignment> {
    match (config, stored) {
        (Some(c), Some(s)) => Some(if s.generation > c.generation { s } else { c }),
        (c, s) => c.or(s),
    }
}

fn unix_secs(now_ms: u64) -> i64 {
    i64::try_from(now_ms / 1000).unwrap_or(i64::MAX)
}

/// Builds and signs the 200 reply.
fn signed_reply(
    hub: &HubState,
    ack_seq: u64,
    assignment: Option<&Assignment>,
    now: i64,
) -> Result<Reply, Rejection> {
    let body = serde_json::to_vec(&HeartbeatReply {
        ack_seq,
        assignment,
    })
    .map_err(|e| Rejection::internal(format!("cannot encode the heartbeat reply: {e}")))?;
    let headers = sign_response(200, &body, JSON, &hub.key, now)
        .map_err(|e| Rejection::internal(format!("cannot sign the heartbeat reply: {e}")))?;
    Ok(Reply {
        status: 200,
        headers,
        body,
    })
}

/// The enrolled agent whose key fingerprint the request's `Signature-Input` names as `keyid`.
fn signer(hub: &HubState, headers: &[(&str, &str)]) -> Result<KnownAgent, Rejection> {
    let keyid = keyid(headers)?;
    hub.registry().by_fingerprint(&keyid).cloned().ok_or_else(|| {
        Rejection::new(
            401,
            "unknown_key",
            format!(
                "no agent is enrolled with key {keyid}; list the agent's public key (`outpost keygen` prints it) as an [[agent]] in the hub config, or enroll it with a bootstrap token"
            ),
        )
    })
}

/// The `keyid` parameter of the `outpost` signature. Read before verifying, only to pick the key to
/// verify with; `verify_request` then checks that this keyid is the fingerprint of that key.
fn keyid(headers: &[(&str, &str)]) -> Result<String, Rejection> {
    let unsigned = || {
        Rejection::new(
            401,
            "unsigned",
            "the heartbeat carries no Signature-Input/Signature: sign it (RFC 9421, label \"outpost\", keyid = the agent key's SHA256 fingerprint)",
        )
    };
    let lines: Vec<&str> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("signature-input"))
        .map(|(_, value)| *value)
        .collect();
    if lines.is_empty() {
        return Err(unsigned());
    }
    let dictionary = sfv::parse_dictionary(&lines.join(", ")).map_err(|e| {
        Rejection::new(
            401,
            "bad_signature",
            format!("the Signature-Input header is not a structured-field dictionary ({e})"),
        )
    })?;
    let params = match dictionary.get(LABEL) {
        Some(ListEntry::InnerList(list)) => &list.params,
        _ => {
            return Err(Rejection::new(
                401,
                "bad_signature",
                format!(
                    "Signature-Input has no inner list labelled {LABEL:?}; sign with that label"
                ),
            ))
        }
    };
    match params.get("keyid") {
        Some(BareItem::String(keyid)) => Ok(keyid.as_str().to_owned()),
        _ => Err(Rejection::new(
            401,
            "bad_signature",
            "the signature has no keyid; sign with keyid = the agent key's SHA256 fingerprint",
        )),
    }
}

fn verify_rejection(agent_id: &str, error: &SignedMessageError) -> Rejection {
    let reason = match error {
        SignedMessageError::MissingContentDigest | SignedMessageError::Digest(_) => "bad_digest",
        SignedMessageError::Signature(
            SignatureError::TooOld { .. }
            | SignatureError::InFuture { .. }
            | SignatureError::Expired { .. }
            | SignatureError::NoCreated,
        ) => "stale_signature",
        SignedMessageError::Signature(_) => "bad_signature",
    };
    Rejection::new(
        401,
        reason,
        format!("a request signed with the key of agent {agent_id:?} is refused: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyid_is_read_from_the_outpost_label() {
        let headers = [(
            "Signature-Input",
            "other=(\"@method\");keyid=\"x\", outpost=(\"@method\");created=1;keyid=\"SHA256:abc\"",
        )];
        assert_eq!(
            keyid(&headers).map_err(|r| r.reason),
            Ok("SHA256:abc".to_owned())
        );
        assert_eq!(keyid(&[]).map_err(|r| r.reason), Err("unsigned"));
        let no_keyid = [("signature-input", "outpost=(\"@method\");created=1")];
        assert_eq!(keyid(&no_keyid).map_err(|r| r.reason), Err("bad_signature"));
        let garbage = [("signature-input", "outpost=(((")];
        assert_eq!(keyid(&garbage).map_err(|r| r.reason), Err("bad_signature"));
        let other_label = [("signature-input", "sig=(\"@method\");keyid=\"k\"")];
        assert_eq!(
            keyid(&other_label).map_err(|r| r.reason),
            Err("bad_signature")
        );
    }
}
