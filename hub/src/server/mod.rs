//! The network side of the hub: accept connections (HTTPS, or plain HTTP on loopback), read requests within
//! limits, hand them to the handlers, and write their answers.
//!
//! Endpoints:
//! - `POST /v1/heartbeats` -> [`crate::heartbeat`]; `POST /v1/enroll` -> [`crate::enroll`];
//! - `GET /v1/agents` and `GET /v1/agents/{id}` -> [`crate::status`]. They need no credentials: the config
//!   allows plain HTTP only on loopback, so these are either local or behind the same TLS as heartbeats;
//! - `GET /` -> [`crate::fleet`] (HTML) and `GET /metrics` -> [`crate::metrics`] (Prometheus), on the same
//!   terms. Every answer to a heartbeat is counted there, accepted or by its rejection's reason.
//!
//! Limits, each named so none is implicit: request headers must arrive within [`HEADER_TIMEOUT`], a body
//! within [`BODY_TIMEOUT`], a TLS handshake within [`HANDSHAKE_TIMEOUT`]; a heartbeat body over `max_body`
//! is refused with 413 as soon as its `Content-Length` says so, or while it streams in, never after
//! buffering all of it; at most [`MAX_CONNECTIONS`] connections are served at once.
//!
//! Handlers are synchronous (signature checks, store reads and writes). The heartbeat handler runs on the
//! runtime thread that read the request: its record is one append to the heartbeat log's page cache (the
//! fdatasync is the group commit's, on the blocking pool, see [`crate::durable`]), and handing each heartbeat to the blocking pool
//! cost a sixth of the hub's CPU in thread wake-ups (measured with `benches/verify.rs`). The others (store
//! scans for listings and pages, enrollment's token file and flush) run on tokio's blocking pool so a slow
//! disk never stalls the connections being read. A heartbeat's reply is held until its record is on disk.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use outpost_proto::keys::PublicKey;
use outpost_proto::signed::ReceivedRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::reply::{Rejection, Reply, JSON};
use crate::state::{now_ms, HubState, OpenError};
use crate::status::{AgentDetail, HistoryItem};
use crate::tls::TlsError;

/// A client must send its request headers within this time, or the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this time (a heartbeat is at most a megabyte).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones are closed at accept. 10,000 agents with a 30 s interval make
/// a few hundred concurrent requests at most.
pub const MAX_CONNECTIONS: usize = 8192;
/// How long a shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the hub could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}; is another process using it? change `listen` in the hub config")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the hub's startup task failed: {0}")]
    Startup(String),
    #[error("cannot install the shutdown signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// A hub accepting connections. Dropping it does not stop the hub; call [`RunningHub::shutdown`].
#[derive(Debug)]
pub struct RunningHub {
    /// The bound address (useful with `listen = "127.0.0.1:0"`).
    pub local_addr: SocketAddr,
    pub public_key: PublicKey,
    /// Whether the hub key was created by this start.
    pub key_created: bool,
    /// Warnings from opening the state, for the operator.
    pub warnings: Vec<String>,
    state: Arc<HubState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    flusher: tokio::task::JoinHandle<()>,
}

impl RunningHub {
    /// Stops accepting, lets requests in flight finish (up to [`SHUTDOWN_GRACE`]), and flushes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // No request is left to wait for a flush; the final flush below covers any write still buffered.
        self.flusher.abort();
        let _ = self.flusher.await;
        let state = self.state;
        let flushed = tokio::task::spawn_blocking(move || state.store.flush()).await;
        if let Ok(Err(e)) = flushed {
            tracing::error!("could not flush the store at shutdown: {e}");
        }
    }
}

/// Opens the hub's state, binds `config.listen` and starts serving in the background.
pub async fn start(config: Config) -> Result<RunningHub, ServeError> {
    let tls = match &config.tls {
        Some(files) => Some(TlsAcceptor::from(crate::tls::server_config(files)?)),
        None => None,
    };
    let listen = config.listen;
    // Bound before the state is opened: the default names a heartbeat may be signed for include the
    // port, which `listen = "...:0"` only settles here.
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;
    let (state, warnings) = tokio::task::spawn_blocking(move || HubState::open(config, local_addr))
        .await
        .map_err(|e| ServeError::Startup(e.to_string()))??;
    tracing::debug!(names = ?state.authorities.list(), "heartbeats must be signed for one of these names");
    let state = Arc::new(state);
    let (stop, stopped) = watch::channel(false);
    let flusher = {
        let state = state.clone();
        tokio::spawn(async move { state.commits.run(state.store.clone()).await })
    };
    let task = tokio::spawn(accept_loop(listener, tls, state.clone(), stopped));
    Ok(RunningHub {
        local_addr,
        public_key: state.public_key,
        key_created: state.key_created,
        warnings,
        state,
        stop,
        task,
        flusher,
    })
}

/// Runs the hub until SIGINT or SIGTERM. `on_start` is called once it listens (the CLI prints the key).
pub async fn serve(config: Config, on_start: impl FnOnce(&RunningHub)) -> Result<(), ServeError> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signal)?;
    let hub = start(config).await?;
    on_start(&hub);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
    hub.shutdown().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<HubState>,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(connection) => connection,
            Err(e) => {
                // Out of file descriptors, usually; pausing lets connections close instead of spinning.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: {MAX_CONNECTIONS} connections already open");
            continue;
        };
        let watcher = graceful.watcher();
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, state, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, peer, state, watcher).await,
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {}s; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

async fn serve_connection<S>(io: S, peer: SocketAddr, state: Arc<HubState>, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| route(state.clone(), peer, request));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, "connection ended with an error: {e}");
    }
}

async fn route(
    state: Arc<HubState>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let outcome = match (&method, path.as_str()) {
        (&Method::POST, "/v1/heartbeats") => {
            let outcome = heartbeat(state.clone(), request).await;
            state.heartbeats.count(&outcome);
            outcome
        }
        (&Method::POST, "/v1/enroll") => enroll(state, request).await,
        (&Method::GET, "/") => blocking(move || crate::fleet::handle(&state, now_ms())).await,
        (&Method::GET, "/metrics") => {
            blocking(move || crate::metrics::handle(&state, now_ms())).await
        }
        (&Method::GET, "/v1/agents") => agents(state).await,
        (&Method::GET, p) if p.starts_with("/v1/agents/") => {
            agent(state, p.trim_start_matches("/v1/agents/").to_owned()).await
        }
        (_, "/v1/heartbeats" | "/v1/enroll") => Err(method_not_allowed("POST")),
        (_, p) if p == "/" || p == "/metrics" || p == "/v1/agents" || p.starts_with("/v1/agents/") => {
            Err(method_not_allowed("GET"))
        }
        _ => Err(Rejection::new(
            404,
            "not_found",
            format!("no endpoint {path}; the hub serves POST /v1/heartbeats, POST /v1/enroll, GET /v1/agents, GET /v1/agents/{{id}}, GET / and GET /metrics"),
        )),
    };
    Ok(match outcome {
        Ok(reply) => response(reply.status, &reply.headers, reply.body),
        Err(rejection) => {
            if rejection.status >= 500 {
                tracing::error!(%peer, %method, %path, "{rejection}");
            } else {
                tracing::warn!(%peer, %method, %path, "refused: {rejection}");
            }
            let mut refused = response(rejection.status, &[], rejection.body());
            if rejection.status == 413 {
                // The rest of the body was not read; the connection cannot carry another request.
                refused
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            refused
        }
    })
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
    let commits = state.clone();
    let commits = &commits.commits;
    // Inline, not on the blocking pool: see the module comment.
    let reply = (move || {
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
        crate::heartbeat::handle(&state, &received, now_ms())
    })()?;
    // A duplicate is waited for too: its first copy may still be on its way to the disk.
    commits
        .wait()
        .await
        .map_err(|e| Rejection::internal(e.to_string()))?;
    Ok(reply)
}

async fn enroll(state: Arc<HubState>, request: Request<Incoming>) -> Result<Reply, Rejection> {
    let (parts, body) = request.into_parts();
    let limit = crate::enroll::MAX_ENROLL_BODY;
    let body = read_body(&parts, body, limit, "enrollment", "a fixed limit").await?;
    blocking(move || crate::enroll::handle(&state, &body, now_ms())).await
}

async fn agents(state: Arc<HubState>) -> Result<Reply, Rejection> {
    blocking(move || {
        let views = state
            .views(now_ms())
            .map_err(|e| Rejection::internal(e.to_string()))?;
        Reply::json(200, &views)
    })
    .await
}

async fn agent(state: Arc<HubState>, id: String) -> Result<Reply, Rejection> {
    blocking(move || {
        let record = state
            .store
            .agent(&id)
            .map_err(|e| Rejection::internal(e.to_string()))?;
        let view =
            crate::status::agent_view(&state.config, &state.registry(), &id, record, now_ms())
                .ok_or_else(|| {
                    Rejection::new(
                        404,
                        "unknown_agent",
                        format!("no agent {id:?} is enrolled or on record"),
                    )
                })?;
        let history = state
            .store
            .history(&id, state.config.history)
            .map_err(|e| Rejection::internal(e.to_string()))?
            .into_iter()
            .map(HistoryItem::from)
            .collect();
        Reply::json(200, &AgentDetail { view, history })
    })
    .await
}

/// Runs a synchronous handler on the blocking pool.
async fn blocking<F>(handler: F) -> Result<Reply, Rejection>
where
    F: FnOnce() -> Result<Reply, Rejection> + Send + 'static,
{
    tokio::task::spawn_blocking(handler)
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

fn response(
    status: u16,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
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
