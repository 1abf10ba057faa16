//! [`GitHttpServer`]: the smart HTTP protocol served by the real `git http-backend`.
//!
//! hyper accepts the connections (optionally behind TLS and an auth check) and runs
//! `git http-backend` as a CGI program for each request, the way a production web server
//! would: request metadata goes in through CGI environment variables, the body through stdin,
//! and the program's stdout is parsed as CGI headers (including `Status:`) followed by the
//! body, which is streamed back as it is produced. Two variables matter more than they look:
//! `GIT_PROTOCOL` (from the `Git-Protocol` header) is what switches the backend to protocol
//! v2, and `HTTP_CONTENT_ENCODING` lets it inflate the gzip bodies that git clients send.
//!
//! Every request is recorded ([`RequestRecord`]) so tests can assert what the agent asked
//! for and how much it downloaded. The counters survive [`GitHttpServer::stop`] /
//! [`GitHttpServer::start_again`]; [`GitHttpServer::reset_counters`] clears them.

use std::convert::Infallible;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, ReadBuf};
use tokio::process::{Child, ChildStdout};

use crate::server::{bind_loopback, BackgroundServer};
use crate::support::{git_exec_path, isolated_home, require_tool, wait_port_closed};
use crate::tls::TestCa;

/// One request as the server saw it. `status` is 0 while the backend has not answered yet;
/// the byte counts grow while the body streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path_and_query: String,
    pub status: u16,
    /// Request body bytes as received (compressed size when the client gzipped them).
    pub request_bytes: u64,
    /// Response body bytes sent (headers excluded).
    pub response_bytes: u64,
    /// The `Git-Protocol` request header (`version=2` for protocol v2), if any.
    pub git_protocol: Option<String>,
    /// The `Content-Encoding` request header (`gzip`), if any.
    pub content_encoding: Option<String>,
}

type Record = Arc<Mutex<RequestRecord>>;
type RespBody = BoxBody<Bytes, io::Error>;

/// What every incarnation of the server shares.
struct State {
    root: PathBuf,
    backend: PathBuf,
    bearer: Option<String>,
    basic: Option<(String, String)>,
    records: Mutex<Vec<Record>>,
    log: PathBuf,
}

/// Options for [`GitHttpServer`]; see [`GitHttpServer::builder`].
#[derive(Clone, Debug)]
pub struct GitHttpServerBuilder {
    root: PathBuf,
    tls: bool,
    bearer: Option<String>,
    basic: Option<(String, String)>,
}

impl GitHttpServerBuilder {
    /// Serve HTTPS with a certificate from a fresh [`TestCa`] (see [`GitHttpServer::ca_pem`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Answer 401 (`WWW-Authenticate: Bearer`) unless `Authorization: Bearer <token>`.
    pub fn require_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// Answer 401 (`WWW-Authenticate: Basic realm="git"`) unless the basic credentials match.
    /// With both bearer and basic configured, either one is accepted.
    pub fn require_basic(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic = Some((user.into(), password.into()));
        self
    }

    /// Binds a free loopback port and starts serving; the port accepts connections when this
    /// returns.
    pub fn start(self) -> GitHttpServer {
        require_tool("git", "apt-get install git");
        let backend = git_exec_path().join("git-http-backend");
        assert!(
            backend.exists(),
            "git-http-backend not found at {}: install a git that ships it (apt-get install git)",
            backend.display()
        );
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|e| panic!("http server root {}: {e}", self.root.display()));
        let dir = tempfile::Builder::new()
            .prefix("outpost-git-http-")
            .tempdir()
            .expect("create temp dir");
        let ca = self.tls.then(TestCa::new);
        let tls = ca.as_ref().map(|ca| {
            tokio_rustls::TlsAcceptor::from(ca.server_config(&["127.0.0.1", "localhost"]))
        });
        let state = Arc::new(State {
            root,
            backend,
            bearer: self.bearer,
            basic: self.basic,
            records: Mutex::new(Vec::new()),
            log: dir.path().join("http-backend.log"),
        });
        let listener = bind_loopback(0);
        let port = listener.local_addr().expect("local addr").port();
        let mut server = GitHttpServer {
            state,
            tls,
            ca,
            port,
            running: None,
            _dir: dir,
        };
        server.serve(listener);
        server
    }
}

/// A smart-HTTP git server on `127.0.0.1`. Stopped on drop.
pub struct GitHttpServer {
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ca: Option<TestCa>,
    port: u16,
    running: Option<BackgroundServer>,
    /// Holds the backend's stderr log.
    _dir: TempDir,
}

impl GitHttpServer {
    /// Options for a server of the bare repositories under `root` (e.g.
    /// [`crate::GitRepo::serve_dir`]).
    pub fn builder(root: impl AsRef<Path>) -> GitHttpServerBuilder {
        GitHttpServerBuilder {
            root: root.as_ref().to_path_buf(),
            tls: false,
            bearer: None,
            basic: None,
        }
    }

    /// Plain HTTP, no auth.
    pub fn start(root: impl AsRef<Path>) -> GitHttpServer {
        Self::builder(root).start()
    }

    /// `http(s)://127.0.0.1:PORT/name`.
    pub fn url_for(&self, name: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!(
            "{scheme}://127.0.0.1:{}/{}",
            self.port,
            name.trim_start_matches('/')
        )
    }

    /// The TCP port, stable across stop/start_again.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server certificate. Panics for a plain-HTTP server.
    pub fn ca(&self) -> &TestCa {
        self.ca
            .as_ref()
            .expect("this GitHttpServer was started without tls(true)")
    }

    /// The CA certificate (PEM) that clients must trust. Panics for a plain-HTTP server.
    pub fn ca_pem(&self) -> String {
        self.ca().ca_pem()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns the path (`GIT_SSL_CAINFO`).
    pub fn write_ca(&self, dir: impl AsRef<Path>) -> PathBuf {
        self.ca().write_ca(dir.as_ref())
    }

    /// Every request since start (or the last reset), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let records = self.state.records.lock().unwrap();
        records.iter().map(|r| r.lock().unwrap().clone()).collect()
    }

    /// Forgets all recorded requests.
    pub fn reset_counters(&self) {
        self.state.records.lock().unwrap().clear();
    }

    /// The sum of `response_bytes` over [`GitHttpServer::requests`].
    pub fn total_response_bytes(&self) -> u64 {
        self.requests().iter().map(|r| r.response_bytes).sum()
    }

    /// What `git http-backend` wrote to stderr so far.
    pub fn backend_log(&self) -> String {
        crate::support::read_log(&self.state.log)
    }

    /// Closes the port and drops every open connection; when this returns, new connections
    /// are refused. Counters are kept.
    pub fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.stop();
            wait_port_closed(self.port, Duration::from_secs(5));
        }
    }

    /// Serves again on the same port after [`GitHttpServer::stop`].
    pub fn start_again(&mut self) {
        self.stop();
        let listener = bind_loopback(self.port);
        self.serve(listener);
    }

    /// Whether the server is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        let state = self.state.clone();
        let tls = self.tls.clone();
        self.running = Some(BackgroundServer::spawn(
            "git-http-server",
            listener,
            move |listener| accept_loop(listener, state, tls),
        ));
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone(), peer));
            let http = hyper::server::conn::http1::Builder::new();
            // Errors here are clients going away or failing the TLS handshake (a negative
            // test with the wrong CA): nothing for the server to report.
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

fn header_string(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Checks the configured credentials; `Ok(remote_user)` or the 401 response to send.
fn authorize(
    req: &Request<Incoming>,
    state: &State,
) -> Result<Option<String>, Box<Response<RespBody>>> {
    if state.bearer.is_none() && state.basic.is_none() {
        return Ok(None);
    }
    let auth = header_string(req, "authorization").unwrap_or_default();
    let (scheme, credentials) = auth.split_once(' ').unwrap_or((auth.as_str(), ""));
    let credentials = credentials.trim();
    if let Some(token) = &state.bearer {
        if scheme.eq_ignore_ascii_case("bearer") && credentials == token {
            return Ok(Some("bearer".to_string()));
        }
    }
    if let Some((user, password)) = &state.basic {
        if scheme.eq_ignore_ascii_case("basic")
            && credentials
                == base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{password}"),
                )
        {
            return Ok(Some(user.clone()));
        }
    }
    let mut resp = Response::builder().status(StatusCode::UNAUTHORIZED);
    if state.bearer.is_some() {
        resp = resp.header("WWW-Authenticate", "Bearer");
    }
    if state.basic.is_some() {
        resp = resp.header("WWW-Authenticate", "Basic realm=\"git\"");
    }
    Err(Box::new(
        resp.header("Content-Type", "text/plain")
            .body(full("authentication required\n"))
            .expect("401 response"),
    ))
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: SocketAddr,
) -> Result<Response<RespBody>, Infallible> {
    let record = Arc::new(Mutex::new(RequestRecord {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string()),
        status: 0,
        request_bytes: 0,
        response_bytes: 0,
        git_protocol: header_string(&req, "git-protocol"),
        content_encoding: header_string(&req, "content-encoding"),
    }));
    state.records.lock().unwrap().push(record.clone());

    let response = match authorize(&req, &state) {
        Ok(remote_user) => match run_cgi(req, &state, peer, remote_user, record.clone()).await {
            Ok(resp) => resp,
            Err(e) => Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(full(&format!("git http-backend failed: {e}\n")))
                .expect("502 response"),
        },
        Err(resp) => *resp,
    };
    let mut rec = record.lock().unwrap();
    rec.status = response.status().as_u16();
    // The CGI body counts itself while streaming; the small fixed bodies are counted here.
    if let Some(n) = response.body().size_hint().exact() {
        rec.response_bytes = n;
    }
    Ok(response)
}

async fn run_cgi(
    req: Request<Incoming>,
    state: &State,
    peer: SocketAddr,
    remote_user: Option<String>,
    record: Record,
) -> io::Result<Response<RespBody>> {
    let mut cmd = tokio::process::Command::new(&state.backend);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", isolated_home())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "outpost-tests")
        .env("REQUEST_METHOD", req.method().as_str())
        .env("PATH_INFO", req.uri().path())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("REMOTE_ADDR", peer.ip().to_string());
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-length", "CONTENT_LENGTH"),
        ("git-protocol", "GIT_PROTOCOL"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
    ] {
        if let Some(value) = header_string(&req, header) {
            cmd.env(var, value);
        }
    }
    if let Some(user) = remote_user {
        cmd.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    let log = File::options().create(true).append(true).open(&state.log)?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?;

    // Feed the request body concurrently with reading the response: the backend may start
    // answering before it has read everything, and a full pipe would otherwise deadlock.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let counter = record.clone();
    let mut body = req.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                counter.lock().unwrap().request_bytes += data.len() as u64;
                if stdin.write_all(data).await.is_err() {
                    break;
                }
            }
        }
        // Dropping stdin closes the pipe: EOF ends a body sent without Content-Length.
    });

    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut resp = Response::builder().status(StatusCode::OK);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "backend closed stdout before the end of the CGI headers",
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            let code = code.parse::<u16>().unwrap_or(500);
            resp = resp.status(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY));
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp = resp.header(n, v);
        }
    }
    let body = CgiBody {
        reader,
        record,
        _child: child,
    };
    resp.body(body.boxed())
        .map_err(|e| io::Error::other(e.to_string()))
}

/// The rest of the backend's stdout, streamed as it arrives and counted into the record.
/// Owns the child so it is killed if the client goes away mid-transfer.
struct CgiBody {
    reader: BufReader<ChildStdout>,
    record: Record,
    _child: Child,
}

impl Body for CgiBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let mut buf = [0u8; 32 * 1024];
        let mut read_buf = ReadBuf::new(&mut buf);
        match Pin::new(&mut this.reader).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let data = read_buf.filled();
                if data.is_empty() {
                    return Poll::Ready(None);
                }
                this.record.lock().unwrap().response_bytes += data.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(data)))))
            }
        }
    }
}

fn full(text: &str) -> RespBody {
    Full::new(Bytes::from(text.to_string()))
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
