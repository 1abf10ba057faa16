//! From a request to its answer: routing, reading bodies within limits, running the handlers, and turning
//! their [`Reply`] or [`Rejection`] into HTTP. Refusals go to the log through [`crate::refusals`], so a flood
//! of bad requests is summarised rather than written line by line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use outpost_proto::signed::ReceivedRequest;
use outpost_proto::text::printable;

use super::body::{full, ChannelBody, ReplyBody, StreamError};
use super::{BODY_TIMEOUT, REPLY_STALL_TIMEOUT};
use crate::access::Role;
use crate::history::{self, PageRequest};
use crate::reply::{Rejection, Reply, JSON};
use crate::state::{now_ms, HubState};

pub(super) async fn route(
    state: Arc<HubState>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    if method == Method::GET && is_fleet_read(&path) {
        if let Err(rejection) = authorize(&state, &request, Role::Read) {
            return Ok(refused(&state, peer, &method, &path, &rejection));
        }
    }
    let outcome = match (&method, path.as_str()) {
        (_, p) if p.starts_with("/v1/admin/") => admin(state.clone(), request).await.map(whole),
        (&Method::POST, "/v1/heartbeats") => {
            let outcome = heartbeat(state.clone(), request).await;
            state.heartbeats.count(&outcome);
            state.rollout_wake.notify_one();
            outcome.map(whole)
        }
        (&Method::POST, "/v1/enroll") => enroll(state.clone(), peer, request).await.map(whole),
        (&Method::GET, "/") => {
            match crate::fleet::select::parse_query(query.as_deref()) {
                Ok(filter) => fleet_read(&state, move |hub, views, now| {
                    crate::rollout::page::with_section(crate::fleet::handle(views, &filter, now), &hub.rollouts())
                })
                    .await
                    .map(whole),
                Err(rejection) => Err(rejection),
            }
        }
        (&Method::GET, p) if p.starts_with("/agents/") => {
            agent_page(state.clone(), p.trim_start_matches("/agents/").to_owned()).await.map(whole)
        }
        (&Method::GET, "/metrics") => fleet_read(&state, |hub, views, _| {
            crate::rollout::page::with_metrics(crate::metrics::handle(hub, views), &hub.rollouts())
        })
            .await
            .map(whole),
        (&Method::GET, "/v1/agents") => agents(state.clone()).await.map(whole),
        (&Method::GET, p) if p.starts_with("/v1/agents/") => {
            let id = p.trim_start_matches("/v1/agents/").to_owned();
            agent(state.clone(), id, query.as_deref()).await
        }
        (_, "/v1/heartbeats" | "/v1/enroll") => Err(method_not_allowed("POST")),
        (_, p) if is_fleet_read(p) => {
            Err(method_not_allowed("GET"))
        }
        _ => Err(Rejection::new(
            404,
            "not_found",
            format!("no endpoint {path}; the hub serves POST /v1/heartbeats, POST /v1/enroll, GET /v1/agents, GET /v1/agents/{{id}}, GET / and GET /metrics, and the admin API under /v1/admin/"),
        )),
    };
    Ok(match outcome {
        Ok(response) => response,
        Err(rejection) => refused(&state, peer, &method, &path, &rejection),
    })
}

/// Whether `path` shows fleet data, which needs a read credential ([`crate::access`]).
fn is_fleet_read(path: &str) -> bool {
    matches!(path, "/" | "/metrics" | "/v1/agents")
        || path.starts_with("/v1/agents/")
        || path.starts_with("/agents/")
}

/// Checks the request's credential for `role`.
fn authorize<B>(state: &HubState, request: &Request<B>, role: Role) -> Result<String, Rejection> {
    let headers: Vec<(&str, &str)> = request
        .headers()
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok().map(|v| ("authorization", v)))
        .collect();
    state.config.access.check(&headers, role)
}

/// Logs a refusal (in full, or counted for the window's summary) and builds its answer.
fn refused(
    state: &HubState,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    rejection: &Rejection,
) -> Response<ReplyBody> {
    state.refused.count(endpoint(path), rejection.reason);
    // The message may quote what the client sent: escaped, so it stays one line and cannot drive a terminal.
    let text = rejection.to_string();
    let text = printable(&text);
    let path = printable(path);
    if rejection.status >= 500 && rejection.retry_after.is_none() {
        // The hub's own fault: always logged.
        tracing::error!(%peer, %method, %path, "{text}");
    } else if state.refusals.note(rejection.reason, peer.ip()) {
        tracing::warn!(%peer, %method, %path, "refused: {text}");
    }
    let mut response = response(rejection.status, rejection.headers(), rejection.body());
    let headers = response.headers_mut();
    if rejection.status == 413 {
        // The rest of the body was not read; the connection cannot carry another request.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if rejection.challenge {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::access::CHALLENGE),
        );
    }
    if let Some(secs) = rejection.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The endpoint label of a request path, from a closed set so a client cannot grow the metrics.
fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/heartbeats" => "heartbeats",
        "/v1/enroll" => "enroll",
        "/v1/agents" => "agents",
        p if p.starts_with("/v1/agents/") => "agent",
        "/" => "fleet",
        p if p.starts_with("/agents/") => "agent_page",
        "/metrics" => "metrics",
        p if p.starts_with("/v1/admin/") => "admin",
        _ => "other",
    }
}

fn whole(reply: Reply) -> Response<ReplyBody> {
    response(reply.status, &reply.headers, reply.body)
}

fn method_not_allowed(allowed: &str) -> Rejection {
    Rejection::new(
        405,
        "method_not_allowed",
        format!("use {allowed} on this endpoint"),
    )
}

async fn heartbeat(state: Arc<HubState>, request: Request<Incoming>) -> Result<Reply, Rejection> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts, body, state.config.max_body, "heartbeat", "max_body").await?;
    // Inline, not on the blocking pool: see the module comment of `server`.
    let verified = {
        let headers: Vec<(&str, &str)> = parts
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
        let received = ReceivedRequest {
            method: parts.method.as_str(),
            authority,
            path,
            headers: &headers,
            body: &body,
        };
        crate::heartbeat::verify(&state, &received, now_ms())?
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
    crate::heartbeat::answer(&state, &verified, recorded, stored, now_ms())
}

async fn enroll(
    state: Arc<HubState>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Reply, Rejection> {
    // Before the body is read: a guessing flood costs the hub as little as possible.
    crate::enroll::admit(&state, peer.ip(), Instant::now())?;
    let (parts, body) = request.into_parts();
    let limit = crate::enroll::MAX_ENROLL_BODY;
    let body = read_body(&parts, body, limit, "enrollment", "a fixed limit").await?;
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
    Ok(reply)
}

/// The admin API ([`crate::admin`]): an admin credential, then the action named by method and path.
async fn admin(state: Arc<HubState>, request: Request<Incoming>) -> Result<Reply, Rejection> {
    let by = authorize(&state, &request, Role::Admin)?;
    let (method, path) = (
        request.method().as_str().to_owned(),
        request.uri().path().to_owned(),
    );
    // Releases and rollouts (issue 19) are one dispatch of their own.
    let action = if crate::rollout::api::owns(&path) {
        None
    } else {
        Some(crate::admin::route(&method, &path)?)
    };
    let (parts, body) = request.into_parts();
    let limit = state.config.max_body;
    let body = read_body(&parts, body, limit, "admin request", "max_body").await?;
    match action {
        Some(action) => crate::admin::handle(&state, action, &body, &by, now_ms()).await,
        None => crate::rollout::api::handle(&state, &method, &path, &body, &by, now_ms()).await,
    }
}

async fn agents(state: Arc<HubState>) -> Result<Reply, Rejection> {
    let _turn = state.reads.enter().await?;
    let views = state
        .views(now_ms())
        .await
        .map_err(|e| crate::reply::store_failure(&e, "cannot list the agents".into()))?;
    Reply::json(200, &views)
}

/// A page built from the fleet's views (the fleet page, the metrics): the views are read in the read's
/// turn, the page is rendered on the blocking pool.
async fn fleet_read<F>(state: &Arc<HubState>, render: F) -> Result<Reply, Rejection>
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
    on_blocking_pool(move || Ok(render(&hub, &views, now))).await
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

/// `GET /agents/{id}`: one agent's HTML page ([`crate::fleet::agent_page`]) with its newest kept heartbeats.
async fn agent_page(state: Arc<HubState>, id: String) -> Result<Reply, Rejection> {
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
    on_blocking_pool(move || Ok(crate::fleet::agent_page::handle(&view, &recent))).await
}

/// `GET /v1/agents/{id}`: the head is built on the blocking pool, then each kept heartbeat is read there and
/// handed to the client before the next is read (see [`crate::history`]). The read's turn is held until the
/// reply's last byte is produced.
async fn agent(
    state: Arc<HubState>,
    id: String,
    query: Option<&str>,
) -> Result<Response<ReplyBody>, Rejection> {
    let page: PageRequest = history::parse_query(query)?;
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
    let head = history::head(&view, page.limit, kept.next_before)?;
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
    let mut response = Response::new(ReplyBody::Right(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    Ok(response)
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

/// Reads a body of at most `limit` bytes: refused from its `Content-Length` when that is too big, and
/// otherwise cut off as soon as the bytes read pass the limit (chunked bodies have no length up front).
async fn read_body(
    parts: &Parts,
    body: Incoming,
    limit: usize,
    what: &str,
    setting: &str,
) -> Result<Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            413,
            "body_too_large",
            format!("the {what} body is over the hub's limit of {limit} bytes ({setting}); send fewer sources or shorter errors"),
        )
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Rejection::new(
            408,
            "body_timeout",
            format!(
                "the {what} body did not arrive within {}s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Rejection::new(
            400,
            "bad_body",
            format!("cannot read the {what} body: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn response(status: u16, headers: &[(&'static str, String)], body: Vec<u8>) -> Response<ReplyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let map = response.headers_mut();
    map.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            // A reply naming its own media type replaces the JSON default rather than adding a second one.
            (Ok(name), Ok(value)) if name == CONTENT_TYPE => {
                map.insert(name, value);
            }
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => tracing::error!("dropping reply header {name}: not a valid header"),
        }
    }
    response
}
