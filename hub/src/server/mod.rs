//! The network side of the hub: accept connections (HTTPS, or plain HTTP on loopback), read requests within
//! limits, hand them to the handlers, and write their answers.
//!
//! The hub accepts its own connections (the TLS handshake within its timeout, the connection cap from the
//! open-files limit, graceful shutdown) and hands each to hyper with axum's router (`routes::router`) as
//! its service; `handlers` holds what each route runs.
//!
//! Endpoints:
//! - `POST /v1/heartbeats` -> [`crate::heartbeat`]; `POST /v1/ping` -> [`crate::ping`] (signed, stores
//!   nothing); `POST /v1/enroll` -> [`crate::enroll`];
//! - `GET /v1/agents` -> [`crate::status`] and `GET /v1/agents/{id}` -> [`crate::history`] (a page of the
//!   agent's heartbeats, streamed);
//! - `GET /` -> [`crate::fleet`] (HTML) and `GET /metrics` -> [`crate::metrics`] (Prometheus). Every answer
//!   to a heartbeat is counted there, accepted or by its rejection's reason.
//!
//! The four reads show the fleet's sites, repositories and errors: they need a read credential
//! ([`crate::access`]) unless the config says `public_read = true`.
//!
//! Limits, each named so none is implicit: request headers must arrive within [`HEADER_TIMEOUT`], a body
//! within [`BODY_TIMEOUT`], a TLS handshake within [`HANDSHAKE_TIMEOUT`]; a heartbeat body over `max_body`
//! is refused with 413 as soon as its `Content-Length` says so, or while it streams in, never after
//! buffering all of it; a streamed reply whose client stops reading for [`REPLY_STALL_TIMEOUT`] is cut off;
//! at most [`MAX_CONNECTIONS`] connections are served at once, fewer when the open-files limit says so
//! ([`fds`]); enrollments are rate limited ([`crate::limit`]), and reads of heartbeats from disk run a few
//! at a time ([`crate::limit::ReadGate`]). Refusals are logged through [`crate::refusals`], summarised every
//! [`crate::refusals::WINDOW`].
//!
//! Handlers are synchronous (signature checks, store reads and writes). The heartbeat handler runs on the
//! runtime thread that read the request: its record is one append to the heartbeat log's page cache (the
//! fdatasync is the group commit's, on the blocking pool, see [`crate::durable`]), and handing each heartbeat to the blocking pool
//! cost a sixth of the hub's CPU in thread wake-ups (measured with `benches/verify.rs`). The others (store
//! scans for listings and pages, enrollment's token file and flush) run on tokio's blocking pool so a slow
//! disk never stalls the connections being read. A heartbeat's reply is held until its record is on disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use outpost_proto::keys::PublicKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::state::{HubState, OpenError};
use crate::tls::TlsError;

mod body;
pub mod fds;
mod handlers;
mod routes;

/// A client must send its request headers within this time, or the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this time (a heartbeat is at most a megabyte).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once, at most; the open-files limit may make it fewer ([`fds::connection_cap`]).
/// Further ones wait in the listen backlog. 10,000 agents with a 30 s interval make a few hundred concurrent
/// requests at most.
pub const MAX_CONNECTIONS: usize = 8192;
/// A streamed reply whose client takes no more bytes for this long is cut off, so it cannot hold a read's
/// turn forever.
pub const REPLY_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a hub on a shared database re-reads the enrolled agents (an enrollment through one replica is
/// known to the others within this).
pub const REGISTRY_REFRESH: Duration = Duration::from_secs(5);
/// How long to pause accepting after an accept failed (out of descriptors, usually).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
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
    /// Connections served at once, from the open-files limit.
    pub max_connections: usize,
    state: Arc<HubState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    summaries: tokio::task::JoinHandle<()>,
    rollouts: tokio::task::JoinHandle<()>,
}

impl RunningHub {
    /// Stops accepting, lets requests in flight finish (up to [`SHUTDOWN_GRACE`]), and flushes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(refresher) = self.refresher {
            refresher.abort();
            let _ = refresher.await;
        }
        self.summaries.abort();
        let _ = self.summaries.await;
        self.rollouts.abort();
        let _ = self.rollouts.await;
        log_refusal_summaries(&self.state);
        if let Err(e) = self.state.store.close().await {
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
    let shared_store = !matches!(config.store.kind, crate::backend::BackendKind::Embedded);
    let (state, warnings) = HubState::open(config, local_addr).await?;
    tracing::debug!(names = ?state.authorities.list(), "heartbeats must be signed for one of these names");
    let state = Arc::new(state);
    let (stop, stopped) = watch::channel(false);
    // On a shared database other replicas enroll agents too: learn of them every REGISTRY_REFRESH.
    let refresher = shared_store.then(|| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REGISTRY_REFRESH);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = state.refresh_registry().await {
                    tracing::warn!("cannot refresh the enrolled agents from the store: {e}");
                }
            }
        })
    });
    let summaries = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::refusals::WINDOW);
            every.tick().await;
            loop {
                every.tick().await;
                log_refusal_summaries(&state);
            }
        })
    };
    let rollouts = crate::rollout::driver::spawn(state.clone());
    let max_connections = connection_cap();
    let task = tokio::spawn(accept_loop(
        listener,
        tls,
        state.clone(),
        max_connections,
        stopped,
    ));
    Ok(RunningHub {
        local_addr,
        public_key: state.public_key,
        key_created: state.key_created,
        warnings,
        max_connections,
        state,
        stop,
        task,
        refresher,
        summaries,
        rollouts,
    })
}

/// One line per refusal reason for the window that just ended (see [`crate::refusals`]).
fn log_refusal_summaries(state: &HubState) {
    for summary in state.refusals.drain(Instant::now()) {
        tracing::warn!("{summary}");
    }
}

/// Raises the open-files limit and derives the connection cap from it, saying what it found.
fn connection_cap() -> usize {
    match fds::raise_open_files_limit() {
        Ok(limit) => {
            let cap = fds::connection_cap(limit.soft);
            let reserve = fds::reserve(limit.soft);
            if let Some(from) = limit.raised_from {
                tracing::info!("raised the open-files limit from {from} to {}", limit.soft);
            }
            if let Some(e) = &limit.raise_failed {
                tracing::warn!(
                    "cannot raise the open-files limit ({e}); it stays at {}: set LimitNOFILE= in the unit (or ulimit -n) to serve more connections",
                    limit.soft
                );
            }
            if cap < 64 {
                tracing::warn!("only {cap} connections can be served at once under an open-files limit of {}; raise it (LimitNOFILE= in the unit, or ulimit -n)", limit.soft);
            }
            tracing::info!(
                "serving at most {cap} connections at once (open-files limit {}, {reserve} kept for the hub's files)",
                limit.soft
            );
            cap
        }
        Err(e) => {
            let cap = fds::connection_cap(1024);
            tracing::warn!("cannot read the open-files limit ({e}); assuming 1024, so serving at most {cap} connections at once");
            cap
        }
    }
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
    max_connections: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let router = routes::router(state);
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        // A slot first: at the cap, new connections wait in the kernel's listen backlog, costing the hub no
        // descriptor, until one closes.
        let slot = tokio::select! {
            _ = stopped.changed() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(connection) => connection,
            Err(e) => {
                // Out of file descriptors (something other than connections holds them); pausing lets some
                // close instead of spinning.
                tracing::warn!("accepting a connection failed: {e}");
                drop(slot);
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let watcher = graceful.watcher();
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, router, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, peer, router, watcher).await,
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

/// Serves one connection's requests with the hub's routes; each request carries the peer's address
/// ([`routes::Peer`]) for the rate limits and the log.
async fn serve_connection<S>(io: S, peer: SocketAddr, router: axum::Router, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(routes::Peer(peer));
        // The router is always ready (it holds no capacity of its own), so it is called without poll_ready.
        tower_service::Service::call(&mut router.clone(), request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, "connection ended with an error: {e}");
    }
}
