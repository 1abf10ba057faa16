//! The admin API (issue 18, item 3): what an operator changes in a running fleet, with an `[[admin]]`
//! credential ([`crate::access`]), separate from the agents' signing keys.
//!
//! | request | what it does |
//! |---|---|
//! | `GET /v1/admin/agents` | every agent: origin, key fingerprint, labels, last seen |
//! | `POST /v1/admin/agents` `{"agent_id", "public_key", "labels"}` | enroll an agent by its key (no token) |
//! | `POST /v1/admin/agents/{id}/revoke` | refuse its key from now on; its records stay |
//! | `DELETE /v1/admin/agents/{id}` | forget it: enrollment, last heartbeat, history, labels |
//! | `PUT /v1/admin/agents/{id}/labels` `{"labels": {...}}` | replace its labels |
//! | `PUT /v1/admin/agents/{id}/assignment` `{"sources": [...]}` | set its assignment; answers the generation |
//! | `POST /v1/admin/tokens` `{"token_sha256", "labels", "expires_at_ms"}` | issue a bootstrap token |
//!
//! Rules:
//! - the store gives a new assignment a generation above the agent's previous stored one and above the
//!   config's `[[assignment]]` for it, in one statement, so generations only grow whichever replica is asked;
//!   heartbeat replies serve the higher of the two ([`crate::heartbeat::newest`]);
//! - an agent listed as `[[agent]]` in `hub.toml` cannot be enrolled or revoked here (the file wins; edit it);
//! - a token is issued by its hash only: `outpost-hub token create` draws it and writes it to a file, so the
//!   token never crosses the network until the agent enrolls with it;
//! - other replicas learn of enrollments and revocations within [`crate::server::REGISTRY_REFRESH`].
//!
//! The request parsing and checks are plain functions ([`route`], [`check_labels`]); [`handle`] runs them
//! against the store.

use std::sync::Arc;

use outpost_proto::keys::PublicKey;
use outpost_proto::wire::{Assignment, SourceSpec};
use serde::{Deserialize, Serialize};

use crate::config::is_agent_id;
use crate::registry::{KnownAgent, Origin};
use crate::reply::{store_failure, Rejection, Reply};
use crate::state::HubState;
use crate::store::{Enrollment, IssuedToken, Labels};

pub mod cli;
pub mod client;

/// Labels one agent may carry: enough to describe a site, few enough to show in a listing.
pub const MAX_LABELS: usize = 32;
const MAX_LABEL_KEY: usize = 63;
const MAX_LABEL_VALUE: usize = 253;

/// What an admin request asks for, from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List,
    Enroll,
    Revoke(String),
    Forget(String),
    SetLabels(String),
    Assign(String),
    IssueToken,
}

/// Reads an admin request's method and path (below `/v1/admin/`).
pub fn route(method: &str, path: &str) -> Result<Action, Rejection> {
    let rest = path.strip_prefix("/v1/admin/").unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').collect();
    let action = match (method, parts.as_slice()) {
        ("GET", ["agents"]) => Action::List,
        ("POST", ["agents"]) => Action::Enroll,
        ("POST", ["agents", id, "revoke"]) => Action::Revoke(agent_id(id)?),
        ("DELETE", ["agents", id]) => Action::Forget(agent_id(id)?),
        ("PUT", ["agents", id, "labels"]) => Action::SetLabels(agent_id(id)?),
        ("PUT", ["agents", id, "assignment"]) => Action::Assign(agent_id(id)?),
        ("POST", ["tokens"]) => Action::IssueToken,
        _ => {
            return Err(Rejection::new(
                404,
                "not_found",
                format!("no admin endpoint {method} {path}; see `outpost-hub agents --help` for what the admin API does"),
            ))
        }
    };
    Ok(action)
}

fn agent_id(text: &str) -> Result<String, Rejection> {
    if is_agent_id(text) {
        Ok(text.to_owned())
    } else {
        Err(Rejection::new(
            400,
            "invalid_agent_id",
            "an agent id is 1-253 letters, digits, '.', '_' or '-'",
        ))
    }
}

/// Checks labels: at most [`MAX_LABELS`]; keys of letters, digits, '.', '_', '-' or '/' (like
/// `site` or `example.com/tier`); printable values.
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels is more than the {MAX_LABELS} an agent may carry",
            labels.len()
        ));
    }
    for (key, value) in labels {
        let key_ok = (1..=MAX_LABEL_KEY).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !key_ok {
            return Err(format!(
                "label key {key:?} must be 1-{MAX_LABEL_KEY} letters, digits, '.', '_', '-' or '/'"
            ));
        }
        if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            return Err(format!(
                "label {key:?} has a value over {MAX_LABEL_VALUE} bytes or with control characters"
            ));
        }
    }
    Ok(())
}

/// Parses `key=value,key=value` (the command line's `--labels`).
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "{pair:?} is not key=value; write labels like site=berlin,tier=edge"
            ));
        };
        labels.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    check_labels(&labels)?;
    Ok(labels)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    agent_id: String,
    public_key: String,
    #[serde(default)]
    labels: Labels,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsBody {
    pub labels: Labels,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub token_sha256: String,
    #[serde(default)]
    pub labels: Labels,
    pub expires_at_ms: Option<u64>,
}

/// One agent as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAgent {
    pub agent_id: String,
    /// `config`, `enrolled`, or `removed` (records remain, but the key is no longer accepted).
    pub origin: String,
    pub fingerprint: Option<String>,
    pub labels: Labels,
    pub last_seen_ms: Option<u64>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            400,
            "invalid_request",
            format!("the body must be JSON {shape}: {e}"),
        )
    })
}

fn bad(reason: &'static str, message: String) -> Rejection {
    Rejection::new(400, reason, message)
}

/// Runs one admin request for the credential `by` (named in the log).
pub async fn handle(
    state: &Arc<HubState>,
    action: Action,
    body: &[u8],
    by: &str,
    now_ms: u64,
) -> Result<Reply, Rejection> {
    let store = &state.store;
    let failed = |what: String| move |e: crate::backend::BackendError| store_failure(&e, what);
    match action {
        Action::List => {
            let records = store
                .agents()
                .await
                .map_err(failed("cannot list the agents".into()))?;
            let labels = store
                .labels()
                .await
                .map_err(failed("cannot read labels".into()))?;
            Reply::json(200, &listing(&state.registry(), records, labels))
        }
        Action::Enroll => {
            let request: EnrollBody = parse(body, "{\"agent_id\", \"public_key\", \"labels\"}")?;
            let id = agent_id(&request.agent_id)?;
            let key: PublicKey = request.public_key.parse().map_err(|_| {
                bad(
                    "invalid_enrollment",
                    "public_key must be the `ed25519:...` text that `outpost keygen` prints".into(),
                )
            })?;
            check_labels(&request.labels).map_err(|m| bad("invalid_labels", m))?;
            let again = state
                .registry()
                .get(&id)
                .is_some_and(|known| known.public_key == key && known.origin == Origin::Enrolled);
            if !again {
                let conflict = state.registry().check_new(&id, &key);
                conflict.map_err(|c| Rejection::new(409, "already_enrolled", c.to_string()))?;
                let enrollment = Enrollment {
                    agent_id: id.clone(),
                    public_key: key.to_string(),
                    enrolled_at_ms: now_ms,
                    // Unique per enrollment, so no bootstrap token is spent and a later one still works.
                    token_sha256: format!("admin:{id}:{now_ms}"),
                };
                let outcome = store
                    .enroll(enrollment)
                    .await
                    .map_err(failed(format!("cannot enroll agent {id:?}")))?;
                if outcome == crate::store::Enrolled::IdTaken {
                    return Err(Rejection::new(409, "already_enrolled", format!("agent {id:?} was just enrolled through another hub replica with another key")));
                }
                let known = KnownAgent {
                    id: id.clone(),
                    public_key: key,
                    fingerprint: key.fingerprint(),
                    origin: Origin::Enrolled,
                    heartbeat_interval: state.config.heartbeat_interval,
                };
                state
                    .registry_mut()
                    .insert(known)
                    .map_err(|c| Rejection::new(409, "already_enrolled", c.to_string()))?;
                tracing::info!(agent = %id, key = %key.fingerprint(), %by, "agent enrolled through the admin API");
            }
            if !request.labels.is_empty() {
                store
                    .set_labels(&id, request.labels)
                    .await
                    .map_err(failed(format!("cannot set the labels of agent {id:?}")))?;
            }
            Reply::json(
                if again { 200 } else { 201 },
                &serde_json::json!({
                    "agent_id": id,
                    "fingerprint": key.fingerprint(),
                    "hub_key": state.public_key.to_string(),
                }),
            )
        }
        Action::Revoke(id) => {
            if config_agent(state, &id) {
                return Err(listed_in_config(state, &id, "revoke"));
            }
            let revoked = store
                .revoke(&id)
                .await
                .map_err(failed(format!("cannot revoke agent {id:?}")))?;
            if !revoked {
                return Err(Rejection::new(
                    404,
                    "unknown_agent",
                    format!("agent {id:?} is not enrolled"),
                ));
            }
            state
                .refresh_registry()
                .await
                .map_err(failed("cannot reload the enrolled agents".into()))?;
            tracing::info!(agent = %id, %by, "agent revoked through the admin API");
            Reply::json(200, &serde_json::json!({"agent_id": id, "revoked": true}))
        }
        Action::Forget(id) => {
            let forgotten = store
                .forget(&id)
                .await
                .map_err(failed(format!("cannot forget agent {id:?}")))?;
            state
                .refresh_registry()
                .await
                .map_err(failed("cannot reload the enrolled agents".into()))?;
            tracing::info!(agent = %id, %by, "agent forgotten through the admin API");
            Reply::json(
                200,
                &serde_json::json!({
                    "agent_id": id,
                    "heartbeat": forgotten.heartbeat,
                    "history": forgotten.history,
                    "enrollment": forgotten.enrollment,
                    "still_in_config": config_agent(state, &id),
                }),
            )
        }
        Action::SetLabels(id) => {
            let request: LabelsBody = parse(body, "{\"labels\": {\"key\": \"value\"}}")?;
            check_labels(&request.labels).map_err(|m| bad("invalid_labels", m))?;
            let labels = request.labels.clone();
            store
                .set_labels(&id, request.labels)
                .await
                .map_err(failed(format!("cannot set the labels of agent {id:?}")))?;
            tracing::info!(agent = %id, %by, "labels set through the admin API");
            Reply::json(200, &serde_json::json!({"agent_id": id, "labels": labels}))
        }
        Action::Assign(id) => {
            let request: AssignBody = parse(body, "{\"sources\": [...]}")?;
            let assignment = Assignment::new(1, request.sources);
            assignment.validate().map_err(|e| {
                bad(
                    "invalid_assignment",
                    format!("the assignment is not valid: {e}"),
                )
            })?;
            // Above the config's generation, so the new assignment wins over the static one.
            let at_least = state
                .config
                .assignments
                .for_agent(&id)
                .map_or(1, |a| a.generation + 1);
            let generation = store
                .set_assignment(&id, assignment, at_least)
                .await
                .map_err(failed(format!("cannot set the assignment of agent {id:?}")))?;
            tracing::info!(agent = %id, generation, %by, "assignment set through the admin API");
            Reply::json(
                200,
                &serde_json::json!({"agent_id": id, "generation": generation}),
            )
        }
        Action::IssueToken => {
            let request: TokenBody =
                parse(body, "{\"token_sha256\", \"labels\", \"expires_at_ms\"}")?;
            let Some(hash) = crate::access::parse_sha256(&request.token_sha256) else {
                return Err(bad(
                    "invalid_token",
                    "token_sha256 must be 64 hex digits (the token's sha-256, never the token)"
                        .into(),
                ));
            };
            check_labels(&request.labels).map_err(|m| bad("invalid_labels", m))?;
            if request.expires_at_ms.is_some_and(|at| at <= now_ms) {
                return Err(bad("invalid_token", "expires_at_ms is in the past".into()));
            }
            let token = IssuedToken {
                token_sha256: crate::access::hex(&hash),
                labels: request.labels,
                created_at_ms: now_ms,
                expires_at_ms: request.expires_at_ms,
            };
            store
                .add_issued_token(token)
                .await
                .map_err(failed("cannot record the token".into()))?;
            tracing::info!(%by, "bootstrap token issued through the admin API");
            Reply::json(
                201,
                &serde_json::json!({
                    "hub_key": state.public_key.to_string(),
                    "hub_key_fingerprint": state.public_key.fingerprint(),
                }),
            )
        }
    }
}

fn config_agent(state: &HubState, id: &str) -> bool {
    state.config.agents.iter().any(|a| a.id == id)
}

fn listed_in_config(state: &HubState, id: &str, what: &str) -> Rejection {
    Rejection::new(
        409,
        "listed_in_config",
        format!("agent {id:?} is listed as [[agent]] in {}; cannot {what} it here: edit the file and restart the hub", state.config.path.display()),
    )
}

/// The admin listing: known agents (with their labels and last heartbeat), then agents only on record.
fn listing(
    registry: &crate::registry::Registry,
    records: Vec<crate::store::AgentRecord>,
    labels: Vec<(String, Labels)>,
) -> Vec<AdminAgent> {
    let mut labels: std::collections::HashMap<String, Labels> = labels.into_iter().collect();
    let mut seen: std::collections::HashMap<String, u64> = records
        .into_iter()
        .map(|r| (r.agent_id, r.last_seen_ms))
        .collect();
    let mut out: Vec<AdminAgent> = registry
        .iter()
        .map(|known| AdminAgent {
            agent_id: known.id.clone(),
            origin: known.origin.as_str().to_owned(),
            fingerprint: Some(known.fingerprint.clone()),
            labels: labels.remove(&known.id).unwrap_or_default(),
            last_seen_ms: seen.remove(&known.id),
        })
        .collect();
    let mut removed: Vec<AdminAgent> = seen
        .into_iter()
        .map(|(id, last_seen)| AdminAgent {
            labels: labels.remove(&id).unwrap_or_default(),
            agent_id: id,
            origin: "removed".into(),
            fingerprint: None,
            last_seen_ms: Some(last_seen),
        })
        .collect();
    removed.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    out.append(&mut removed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_from_method_and_path() {
        assert_eq!(route("GET", "/v1/admin/agents").ok(), Some(Action::List));
        assert_eq!(
            route("PUT", "/v1/admin/agents/store-1/assignment").ok(),
            Some(Action::Assign("store-1".into()))
        );
        assert_eq!(
            route("POST", "/v1/admin/agents/store-1/revoke").ok(),
            Some(Action::Revoke("store-1".into()))
        );
        assert_eq!(
            route("DELETE", "/v1/admin/agents/a").ok(),
            Some(Action::Forget("a".into()))
        );
        assert_eq!(
            route("GET", "/v1/admin/agents/a").map_err(|r| r.status),
            Err(404)
        );
        assert_eq!(
            route("PUT", "/v1/admin/agents/a%20b/labels").map_err(|r| r.status),
            Err(400)
        );
    }

    #[test]
    fn labels_are_checked() {
        let labels = parse_labels("site=berlin, example.com/tier=edge,empty=");
        assert_eq!(labels.as_ref().map(Labels::len), Ok(3));
        assert!(parse_labels("site").is_err());
        assert!(parse_labels("a b=c").is_err());
        assert!(parse_labels("k=bell\u{7}").is_err());
        let many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("k{i}=v")).collect();
        assert!(parse_labels(&many.join(",")).is_err());
    }
}
