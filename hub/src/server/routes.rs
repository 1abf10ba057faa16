//! From a request to its answer: the hub's routes on axum's [`Router`], and the two things every route
//! shares, done once here rather than in each handler:
//! - refusals: a handler refuses with a [`Rejection`] (as [`Refused`]); [`note_refusals`] counts it for the
//!   metrics, logs it through [`crate::refusals`], so a flood of bad requests is summarised rather than
//!   written line by line, and remembers it for the agent's page when an enrolled agent's key signed the
//!   request ([`crate::agent_refusals`]);
//! - the read credential: the routes that show fleet data sit behind [`need_reader`] ([`crate::access`]).
//!
//! Every endpoint is listed in [`router`], and in [`ENDPOINTS`] for the 404 answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use outpost_proto::text::printable;

use super::handlers;
use crate::access::Role;
use crate::reply::{Rejection, Reply, JSON};
use crate::state::HubState;

/// The endpoints, for the answer to a request for any other path.
pub const ENDPOINTS: &str = "POST /v1/heartbeats, POST /v1/ping, POST /v1/enroll, GET /v1/agents, GET /v1/agents/{id}, GET /, GET /agents/{id} and GET /metrics, and the admin API under /v1/admin/";

/// The hub's routes over `state`. A method an endpoint does not take is answered 405 with `Allow`.
pub fn router(state: Arc<HubState>) -> Router {
    // Fleet data: each needs a read credential (see [`fleet_read`]).
    let read = |handler| fleet_read(&state, handler);
    Router::new()
        .route("/v1/heartbeats", only_post(handlers::heartbeat))
        .route("/v1/ping", only_post(handlers::ping))
        .route("/v1/enroll", only_post(handlers::enroll))
        // The admin API routes its own actions ([`crate::admin::route`]) after checking the credential.
        .route("/v1/admin/{*action}", any(handlers::admin))
        .route("/", read(get(handlers::fleet_page)))
        .route("/agents/{id}", read(get(handlers::agent_page)))
        .route("/metrics", read(get(handlers::metrics)))
        .route("/v1/agents", read(get(handlers::agents)))
        .route("/v1/agents/{id}", read(get(handlers::agent_history)))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), note_refusals))
        .with_state(state)
}

type Routes = MethodRouter<Arc<HubState>>;

/// A fleet read's route: the read credential is checked once the method matched (a route layer of the
/// method router, so a wrong method is told 405, not asked to log in).
fn fleet_read(state: &Arc<HubState>, routes: Routes) -> Routes {
    routes
        .route_layer(middleware::from_fn_with_state(state.clone(), need_reader))
        .fallback(|| async { Refused(method_not_allowed("GET")) })
}

fn only_post<H, T>(handler: H) -> Routes
where
    H: axum::handler::Handler<T, Arc<HubState>>,
    T: 'static,
{
    post(handler).fallback(|| async { Refused(method_not_allowed("POST")) })
}

fn method_not_allowed(allowed: &str) -> Rejection {
    Rejection::new(
        405,
        "method_not_allowed",
        format!("use {allowed} on this endpoint"),
    )
}

async fn not_found(uri: Uri) -> Refused {
    Refused(Rejection::new(
        404,
        "not_found",
        format!("no endpoint {}; the hub serves {ENDPOINTS}", uri.path()),
    ))
}

/// The address a request came from, set on each request by the connection that read it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl<S: Sync> FromRequestParts<S> for Peer {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Refused> {
        parts.extensions.get::<Peer>().copied().ok_or_else(|| {
            Refused(Rejection::internal(
                "a request reached the hub's routes without its peer address",
            ))
        })
    }
}

/// A refused request as an HTTP answer: the rejection's JSON body and its headers (`WWW-Authenticate` when a
/// credential is wanted, `Retry-After` when waiting helps). The rejection itself rides along in the
/// response's extensions for [`note_refusals`].
#[derive(Debug)]
pub struct Refused(pub Rejection);

impl From<Rejection> for Refused {
    fn from(rejection: Rejection) -> Refused {
        Refused(rejection)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let rejection = self.0;
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
        response.extensions_mut().insert(rejection);
        response
    }
}

/// An accepted request's answer.
#[derive(Debug)]
pub struct Answer(pub Reply);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        response(self.0.status, &self.0.headers, self.0.body)
    }
}

/// Checks the request's credential for `role`.
pub fn authorize(
    state: &HubState,
    headers: &axum::http::HeaderMap,
    role: Role,
) -> Result<String, Rejection> {
    let presented: Vec<(&str, &str)> = headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok().map(|v| ("authorization", v)))
        .collect();
    state.config.access.check(&presented, role)
}

/// The route layer of the fleet reads: a read credential, or `public_read`.
async fn need_reader(State(state): State<Arc<HubState>>, request: Request, next: Next) -> Response {
    match authorize(&state, request.headers(), Role::Read) {
        Ok(_) => next.run(request).await,
        Err(rejection) => Refused(rejection).into_response(),
    }
}

/// Counts every refused request for the metrics, and logs it (in full, or counted for the window's summary).
async fn note_refusals(
    State(state): State<Arc<HubState>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request.extensions().get::<Peer>().copied();
    let response = next.run(request).await;
    let Some(rejection) = response.extensions().get::<Rejection>() else {
        return response;
    };
    state.refused.count(endpoint(&path), rejection.reason);
    if let Some(agent) = &rejection.agent {
        let (status, reason) = (rejection.status, rejection.reason);
        let at = crate::state::now_ms();
        state
            .agent_refusals
            .note(agent, at, status, reason, &rejection.message);
    }
    // The message may quote what the client sent: escaped, so it stays one line and cannot drive a terminal.
    let text = rejection.to_string();
    let text = printable(&text);
    let path = printable(&path);
    let source = peer.map_or_else(|| "unknown".to_owned(), |Peer(addr)| addr.to_string());
    if rejection.status >= 500 && rejection.retry_after.is_none() {
        // The hub's own fault: always logged.
        tracing::error!(peer = %source, %method, %path, "{text}");
    } else if peer.is_none_or(|Peer(addr)| state.refusals.note(rejection.reason, addr.ip())) {
        tracing::warn!(peer = %source, %method, %path, "refused: {text}");
    }
    response
}

/// The endpoint label of a request path, from a closed set so a client cannot grow the metrics.
fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/heartbeats" => "heartbeats",
        "/v1/ping" => "ping",
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

fn response(status: u16, headers: &[(&'static str, String)], body: Vec<u8>) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
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
