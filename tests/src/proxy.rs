//! [`HttpProxy`]: a minimal forward proxy, to prove that `HTTPS_PROXY` / `HTTP_PROXY` (or
//! `http.proxy`) are honoured.
//!
//! It understands the two things a proxy-aware client sends:
//! - `CONNECT host:port` (HTTPS through a proxy): answers `200` and then relays bytes both
//!   ways, so TLS stays end to end and the origin's certificate is what the client checks;
//! - absolute-form requests such as `GET http://host:port/path` (plain HTTP through a proxy):
//!   rewrites the request line to origin form, forces `Connection: close` so that each
//!   request gets its own connection (and is counted), and relays the rest.
//!
//! Only loopback targets are allowed: this machine may send test traffic to nothing else, and
//! a test that forgot `NO_PROXY` should fail loudly (403) rather than reach out.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::server::{bind_loopback, BackgroundServer};

/// Largest request head the proxy reads before giving up on a client.
const MAX_HEAD: usize = 64 * 1024;

/// A running forward proxy on `127.0.0.1`. Stopped on drop.
pub struct HttpProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    _running: BackgroundServer,
}

impl HttpProxy {
    /// Starts the proxy on a free loopback port.
    pub fn start() -> HttpProxy {
        let listener = bind_loopback(0);
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let running = BackgroundServer::spawn("http-proxy", listener, move |l| accept_loop(l, log));
        HttpProxy {
            port,
            seen,
            _running: running,
        }
    }

    /// `http://127.0.0.1:PORT` — the value for `HTTPS_PROXY`, `HTTP_PROXY` or `http.proxy`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many requests went through: each CONNECT tunnel counts once, each forwarded plain
    /// HTTP request once. Refused requests are not counted.
    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The request lines that went through, e.g. `CONNECT 127.0.0.1:4431` or
    /// `GET http://127.0.0.1:8080/repo.git/info/refs?service=git-upload-pack`.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets the recorded requests.
    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn accept_loop(listener: TcpListener, seen: Arc<Mutex<Vec<String>>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let _ = serve_client(client, seen).await;
        });
    }
}

async fn serve_client(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let (head, rest) = match read_head(&mut client).await? {
        Some(parts) => parts,
        None => return Ok(()),
    };
    let head_text = String::from_utf8_lossy(&head).to_string();
    let mut lines = head_text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("HTTP/1.1"),
    );

    if method.eq_ignore_ascii_case("CONNECT") {
        let Some(mut upstream) = connect_loopback(&mut client, target).await? else {
            return Ok(());
        };
        seen.lock().unwrap().push(format!("CONNECT {target}"));
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        upstream.write_all(&rest).await?;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return Ok(());
    }

    let Some(after_scheme) = target.strip_prefix("http://") else {
        return respond(
            &mut client,
            "400 Bad Request",
            "absolute-form http:// URL expected",
        )
        .await;
    };
    let (authority, path) = match after_scheme.find('/') {
        Some(i) => (&after_scheme[..i], &after_scheme[i..]),
        None => (after_scheme, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let Some(mut upstream) = connect_loopback(&mut client, &authority).await? else {
        return Ok(());
    };
    seen.lock().unwrap().push(format!("{method} {target}"));
    let mut forwarded = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        let hop_by_hop = [
            "connection",
            "proxy-connection",
            "keep-alive",
            "proxy-authorization",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h));
        if !hop_by_hop {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    upstream.write_all(forwarded.as_bytes()).await?;
    upstream.write_all(&rest).await?;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}

/// Reads up to the blank line that ends the request head. Returns the head (without the blank
/// line) and whatever body bytes arrived with it; `None` if the client went away.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            buf.truncate(i);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to `authority` (`host:port`) if it is a loopback address; otherwise answers the
/// client with an error and returns `None`.
async fn connect_loopback(
    client: &mut TcpStream,
    authority: &str,
) -> std::io::Result<Option<TcpStream>> {
    let Some((host, port)) = authority.rsplit_once(':') else {
        respond(client, "400 Bad Request", "host:port expected").await?;
        return Ok(None);
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<IpAddr> = if host.eq_ignore_ascii_case("localhost") {
        Some(IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse().ok()
    };
    let (Some(ip), Ok(port)) = (ip.filter(IpAddr::is_loopback), port.parse::<u16>()) else {
        respond(
            client,
            "403 Forbidden",
            "the test proxy only reaches loopback",
        )
        .await?;
        return Ok(None);
    };
    match TcpStream::connect(SocketAddr::new(ip, port)).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            respond(client, "502 Bad Gateway", &e.to_string()).await?;
            Ok(None)
        }
    }
}

async fn respond(client: &mut TcpStream, status: &str, msg: &str) -> std::io::Result<()> {
    let body = format!("{msg}\n");
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(resp.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::{git, output, run};
    use crate::{GitHttpServer, GitRepo};

    #[test]
    fn https_proxy_env_is_used_through_connect() {
        let repo = GitRepo::new();
        let id = repo.commit("x");
        let server = GitHttpServer::builder(repo.serve_dir()).tls(true).start();
        let dir = tempfile::tempdir().unwrap();
        let ca = server.write_ca(dir.path());
        let proxy = HttpProxy::start();
        let refs = run(git()
            .env("GIT_SSL_CAINFO", &ca)
            .env("HTTPS_PROXY", proxy.url())
            .args(["ls-remote", &server.url_for(repo.name())]));
        assert!(refs.contains(&id), "{refs}");
        assert!(proxy.hits() >= 1, "no request went through the proxy");
        let target = format!("CONNECT 127.0.0.1:{}", server.port());
        assert!(
            proxy.requests().iter().all(|r| r == &target),
            "{:?}",
            proxy.requests()
        );
        assert!(
            !server.requests().is_empty(),
            "the origin saw the tunnelled requests"
        );
    }

    #[test]
    fn http_proxy_env_forwards_absolute_form_requests() {
        let repo = GitRepo::new();
        repo.write("a", b"1");
        let id = repo.commit("x");
        let server = GitHttpServer::start(repo.serve_dir());
        let proxy = HttpProxy::start();
        let dest = tempfile::tempdir().unwrap();
        // Lowercase on purpose: curl ignores an uppercase HTTP_PROXY (the CGI `Proxy:` header
        // attack), while HTTPS_PROXY works in either case. 127.0.0.1 is not exempt by default.
        run(git()
            .env("http_proxy", proxy.url())
            .args(["clone", "-q", "--depth", "1", &server.url_for(repo.name())])
            .arg(dest.path().join("c")));
        let head = run(git()
            .arg("-C")
            .arg(dest.path().join("c"))
            .args(["rev-parse", "HEAD"]));
        assert_eq!(head, id);
        // Every HTTP request of the clone went through (and was counted by) the proxy.
        assert_eq!(
            proxy.hits(),
            server.requests().len(),
            "{:?}",
            proxy.requests()
        );
        assert!(proxy.requests()[0].starts_with("GET http://127.0.0.1:"));
        assert!(proxy.requests().iter().any(|r| r.starts_with("POST ")));
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        let proxy = HttpProxy::start();
        let out = output(
            git()
                .env("http_proxy", proxy.url())
                .args(["ls-remote", "http://192.0.2.1:9/none.git"]),
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("403"), "{stderr}");
        assert_eq!(proxy.hits(), 0);
    }
}
