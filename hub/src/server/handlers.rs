//! The handlers behind the routes ([`super::routes::router`]): each takes what axum extracts for it, runs the
//! plain functions of its module ([`crate::heartbeat`], [`crate::enroll`], ...) and answers with an
//! [`Answer`] or a [`Refused`].
//!
//! Where each runs: see the module comment of [`crate::server`]. The heartbeat is handled inline on the
//! runtime thread; store scans and page rendering go to the blocking pool.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{HeaderValue, CONTENT_TYPE, HOST};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outpost_proto::signed::ReceivedRequest;

use super::body::{
    AdminLimit, ChannelBody, EnrollLimit, HeartbeatLimit, Limited, PingLimit, StreamError,
};
use super::routes::{authorize, Answer, Peer, Refused};
use super::REPLY_STALL_TIMEOUT;
use crate::access::Role;
use crate::history::{self, PageRequest};
use crate::reply::{Rejection, Reply, JSON};
use crate::state::{now_ms, HubState};

type Hub = State<Arc<HubState>>;
type Answered = Result<Answer, Refused>;

/// `POST /v1/heartbeats`.
pub async fn heartbeat(State(state): Hub, parts: Parts, body: Limited<HeartbeatLimit>) -> Answered {
    let outcome = record_heartbeat(&state, &parts, body.bytes).await;
    state.heartbeats.count(&outcome);
    state.rollout_wake.notify_one();
    Ok(Answer(outcome?))
}

async fn record_heartbeat(
    state: &HubState,
    parts: &Parts,
    body: Bytes,
) -> Result<Reply, Rejection> {
    // Inline, not on the blocking pool: see the module comment of `server`.
    let verified = {
        let received = Received::new(parts)?;
        crate::heartbeat::verify(state, &received.request(&body), now_ms())?
    };
    let received_ms = now_ms();
    // The record returns once it is durable (see `crate::backend`); the assignment is read meanwhile.
    let (recorded, stored) = tokio::join!(
        state.store.record(
            verified.heartbeat.clone(),
            body,
            received_ms,
            state.config.history,
        ),
        state.store.assignment(&verified.agent_id)
    );
    crate::heartbeat::answer(state, &verified, recorded, stored, now_ms())
}

/// `POST /v1/ping`: a signed no-op ([`crate::ping`]); inline like a heartbeat, it stores nothing.
pub async fn ping(State(state): Hub, parts: Parts, body: Limited<PingLimit>) -> Answered {
    let received = Received::new(&parts)?;
    let reply = crate::ping::handle(&state, &received.request(&body.bytes), now_ms())?;
    Ok(Answer(reply))
}

/// What a signature covers of a request's head, borrowed from it.
struct Received<'a> {
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Received<'a> {
    fn new(parts: &'a Parts) -> Result<Received<'a>, Rejection> {
        let headers = parts
            .headers
            .iter()
            .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v)))
            .collect();
        let authority = match parts.uri.authority() {
            Some(authority) => authority.as_str(),
            None => parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or_else(|| {
                    Rejection::new(
                        400,
                        "no_host",
                        "the request has no Host header; HTTP/1.1 requires one",
                    )
                })?,
        };
        let path = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |p| p.as_str());
        Ok(Received {
            method: parts.method.as_str(),
            authority,
            path,
            headers,
        })
    }

    fn request<'b>(&'b self, body: &'b [u8]) -> ReceivedRequest<'b> {
        ReceivedRequest {
            method: self.method,
            authority: self.authority,
            path: self.path,
            headers: &self.headers,
            body,
        }
    }
}

/// A request refused before its body is read: a guessing flood costs the hub as little as possible.
pub struct Admitted;

impl axum::extract::FromRequestParts<Arc<HubState>> for Admitted {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HubState>,
    ) -> Result<Admitted, Refused> {
        let Peer(peer) = Peer::from_request_parts(parts, state).await?;
        crate::enroll::admit(state, peer.ip(), Instant::now())?;
        Ok(Admitted)
    }
}

/// `POST /v1/enroll`: rate limited per source ([`Admitted`]) before the body is read.
pub async fn enroll(State(state): Hub, _: Admitted, body: Limited<EnrollLimit>) -> Answered {
    let body = body.bytes;
    let hub = state.clone();
    let mut checked = on_blocking_pool(move || crate::enroll::check(&hub, &body, now_ms())).await?;
    let failed = |e: crate::backend::BackendError| {
        crate::reply::store_failure(&e, "cannot look up the bootstrap token".into())
    };
    let issued = match checked.issued_lookup() {
        Some(hash) => state.store.issued_token(hash).await.map_err(failed)?,
        None => None,
    };
    crate::enroll::check_token(&mut checked, issued, now_ms())?;
    crate::enroll::check_agent(&state, &checked)?;
    let outcome = state.store.enroll(checked.enrollment()).await;
    let labels = std::mem::take(&mut checked.labels);
    let id = checked.enrollment().agent_id;
    let reply = crate::enroll::finish(&state, checked, outcome)?;
    // Also on a retry (200), so labels a failed first try did not set are set now.
    if !labels.is_empty() {
        state.store.set_labels(&id, labels).await.map_err(|e| {
            crate::reply::store_failure(
                &e,
                format!("enrolled agent {id:?} but cannot set its labels"),
            )
        })?;
    }
    Ok(Answer(reply))
}

/// Who presented an admin credential; checked before the action is looked up or the body read.
pub struct AdminCredential(String);

impl axum::extract::FromRequestParts<Arc<HubState>> for AdminCredential {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HubState>,
    ) -> Result<AdminCredential, Refused> {
        Ok(AdminCredential(authorize(
            state,
            &parts.headers,
            Role::Admin,
        )?))
    }
}

/// The admin API ([`crate::admin`]): an admin credential, then the action named by method and path.
pub async fn admin(
    State(state): Hub,
    AdminCredential(by): AdminCredential,
    parts: Parts,
    body: Limited<AdminLimit>,
) -> Answered {
    let (method, path) = (parts.method.as_str(), parts.uri.path());
    // Releases and rollouts (issue 19) are one dispatch of their own.
    let reply = if crate::rollout::api::owns(path) {
        crate::rollout::api::handle(&state, method, path, &body.bytes, &by, now_ms()).await?
    } else {
        let action = crate::admin::route(method, path)?;
        let forgotten = match &action {
            crate::admin::Action::Forget(id) => Some(id.clone()),
            _ => None,
        };
        let reply = crate::admin::handle(&state, action, &body.bytes, &by, now_ms()).await?;
        if let Some(id) = forgotten {
            state.agent_refusals.forget(&id);
        }
        reply
    };
    Ok(Answer(reply))
}

/// `GET /v1/agents`.
pub async fn agents(State(state): Hub) -> Answered {
    let _turn = state.reads.enter().await?;
    let views = state
        .views(now_ms())
        .await
        .map_err(|e| crate::reply::store_failure(&e, "cannot list the agents".into()))?;
    let reply = on_blocking_pool(move || {
        let reply = Reply::json(200, &views);
        drop(views);
        outpost_proto::mem::release_free_memory();
        reply
    })
    .await?;
    Ok(Answer(reply))
}

/// `GET /[?filter]`: the fleet page ([`crate::fleet`]).
pub async fn fleet_page(State(state): Hub, RawQuery(query): RawQuery) -> Answered {
    let filter = crate::fleet::select::parse_query(query.as_deref())?;
    fleet_read(&state, move |hub, views, now| {
        let page = crate::fleet::handle(views, &filter, now);
        crate::rollout::page::with_section(page, &hub.rollouts())
    })
    .await
}

/// `GET /metrics` ([`crate::metrics`]).
pub async fn metrics(State(state): Hub) -> Answered {
    fleet_read(&state, |hub, views, _| {
        crate::rollout::page::with_metrics(crate::metrics::handle(hub, views), &hub.rollouts())
    })
    .await
}

/// A page built from the fleet's views (the fleet page, the metrics): the views are read in the read's
/// turn, the page is rendered on the blocking pool.
async fn fleet_read<F>(state: &Arc<HubState>, render: F) -> Answered
where
    F: FnOnce(&HubState, &[crate::status::AgentView], u64) -> Reply + Send + 'static,
{
    let _turn = state.reads.enter().await?;
    let now = now_ms();
    let views = state
        .views(now)
        .await
        .map_err(|e| crate::reply::store_failure(&e, "cannot read the fleet".into()))?;
    let hub = state.clone();
    let page = on_blocking_pool(move || {
        let page = render(&hub, &views, now);
        drop(views);
        outpost_proto::mem::release_free_memory();
        Ok(page)
    })
    .await?;
    Ok(Answer(page))
}

/// One agent's view as the fleet shows it, with the assignment generation the store holds for it; 404 when the
/// hub knows nothing of it. Shared by its HTML page and its JSON history.
async fn agent_view(
    state: &HubState,
    id: &str,
    failed: impl Fn(crate::backend::BackendError) -> Rejection,
) -> Result<crate::status::AgentView, Rejection> {
    let record = state.store.agent(id).await.map_err(&failed)?;
    let stored = state.store.assignment(id).await.map_err(&failed)?;
    let mut view =
        crate::status::agent_view(&state.config, &state.registry(), id, record, now_ms())
            .ok_or_else(|| {
                Rejection::new(
                    404,
                    "unknown_agent",
                    format!("no agent {id:?} is enrolled or on record"),
                )
            })?;
    if let Some(stored) = stored {
        crate::status::with_stored_generations(
            std::slice::from_mut(&mut view),
            &[(id.to_string(), stored.generation)],
        );
    }
    Ok(view)
}

/// The `{id}` of a path, percent-decoded; a path that does not decode to text is refused as JSON like any
/// other bad request.
pub struct AgentId(String);

impl axum::extract::FromRequestParts<Arc<HubState>> for AgentId {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HubState>,
    ) -> Result<AgentId, Refused> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(AgentId(id)),
            Err(e) => Err(Refused(Rejection::new(
                400,
                "bad_path",
                format!("the agent id in the path cannot be read: {}", e.body_text()),
            ))),
        }
    }
}

/// `GET /agents/{id}`: one agent's HTML page ([`crate::fleet::agent_page`]) with its newest kept heartbeats.
pub async fn agent_page(State(state): Hub, AgentId(id): AgentId) -> Answered {
    use crate::fleet::agent_page::{Recent, RECENT};
    let _turn = state.reads.enter().await?;
    let failed = |e: crate::backend::BackendError| {
        crate::reply::store_failure(&e, format!("cannot read agent {id:?}"))
    };
    let view = agent_view(&state, &id, failed).await?;
    let kept = state
        .store
        .history_page(&id, None, RECENT)
        .await
        .map_err(failed)?;
    let mut recent = Vec::with_capacity(kept.records.len());
    for kept in kept.records.into_iter().rev() {
        let stored = state.store.read_kept(kept).await.map_err(failed)?;
        recent.extend(Recent::from_body(
            stored.seq,
            stored.received_ms,
            &stored.body,
        ));
    }
    let refusals = state.agent_refusals.recent(&id);
    let page =
        on_blocking_pool(move || Ok(crate::fleet::agent_page::handle(&view, &recent, &refusals)))
            .await?;
    Ok(Answer(page))
}

/// `GET /v1/agents/{id}`: the head is built on the blocking pool, then each kept heartbeat is read there and
/// handed to the client before the next is read (see [`crate::history`]). The read's turn is held until the
/// reply's last byte is produced.
pub async fn agent_history(
    State(state): Hub,
    AgentId(id): AgentId,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let page: PageRequest = history::parse_query(query.as_deref())?;
    let turn = state.reads.enter().await?;
    let failed = |e: crate::backend::BackendError| {
        crate::reply::store_failure(&e, format!("cannot read the history of agent {id:?}"))
    };
    let view = agent_view(&state, &id, failed).await?;
    let kept = state
        .store
        .history_page(&id, page.before, page.limit)
        .await
        .map_err(failed)?;
    let refusals = state.agent_refusals.recent(&id);
    let head = history::head(&view, &refusals, page.limit, kept.next_before)?;
    let records = kept.records;
    let (sender, body) = ChannelBody::channel();
    tokio::spawn(async move {
        let _turn = turn;
        let send = |chunk: Result<Bytes, StreamError>| {
            let sender = sender.clone();
            async move {
                // A client that stops reading would hold the read's turn forever: give up on it.
                matches!(
                    tokio::time::timeout(REPLY_STALL_TIMEOUT, sender.send(chunk)).await,
                    Ok(Ok(()))
                )
            }
        };
        if !send(Ok(Bytes::from(head))).await {
            return;
        }
        for (index, kept) in records.into_iter().enumerate() {
            let parts = match state.store.read_kept(kept).await {
                Ok(stored) => {
                    let at = crate::status::format_ms(stored.received_ms);
                    history::item(index == 0, stored.seq, at.as_deref(), stored.body)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match parts {
                Ok(parts) => {
                    for part in parts {
                        if !send(Ok(part)).await {
                            return;
                        }
                    }
                }
                Err(why) => {
                    tracing::error!("cutting off a history reply: {why}");
                    let _ = send(Err(StreamError(why))).await;
                    return;
                }
            }
        }
        let _ = send(Ok(Bytes::from_static(history::TAIL))).await;
    });
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    Ok((headers, axum::body::Body::new(body)).into_response())
}

async fn on_blocking_pool<T, F>(work: F) -> Result<T, Rejection>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Rejection> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Rejection::internal(format!("request handler failed: {e}")))?
}
