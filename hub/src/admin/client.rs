//! The admin API's client, for `outpost-hub agents …` and `outpost-hub token create`: it dials the hub of a
//! config the way `outpost-hub status` does (the listen address, TLS pinned to the configured certificate)
//! and presents an admin credential as a bearer token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;

/// How long the client waits to connect to the hub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an admin request may take (a listing of a large fleet included).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// A listing of 10,000 agents with their labels fits well within this.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the hub on {addr} ({source}); is `outpost-hub serve` running with this --config?")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("the hub on {addr} did not answer properly: {message}")]
    Http { addr: SocketAddr, message: String },
    #[error("the hub refused the admin credential ({status}): {message}; pass --token-file with a token listed as [[admin]] in hub.toml (`outpost-hub credential create --role admin` makes one)")]
    Credential { status: u16, message: String },
    #[error("the hub refused ({status} {reason}): {message}")]
    Refused {
        status: u16,
        reason: String,
        message: String,
    },
}

/// A client for one hub, with one admin credential.
#[derive(Debug)]
pub struct AdminClient {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: String,
}

impl AdminClient {
    pub fn new(config: &Config, token: String) -> Result<AdminClient, ClientError> {
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::pinned_client_config(&files.cert_file)?),
            None => None,
        };
        Ok(AdminClient {
            addr: crate::status::dial_addr(config.listen),
            tls,
            token,
        })
    }

    /// Sends `method path` with a JSON `body`; returns the body of a 2xx answer.
    pub async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let addr = self.addr;
        let http = |message: String| ClientError::Http { addr, message };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr,
                source: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(|source| ClientError::Connect { addr, source })?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, crate::reply::JSON)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http(format!("cannot build the request: {e}")))?;
        let exchange = async {
            match &self.tls {
                Some(tls) => {
                    let connector = tokio_rustls::TlsConnector::from(tls.clone());
                    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                    let stream = connector.connect(name, stream).await.map_err(|e| {
                        http(format!("TLS handshake failed ({e}); is the hub serving the certificate in [tls] cert_file?"))
                    })?;
                    send(stream, request, addr).await
                }
                None => send(stream, request, addr).await,
            }
        };
        let (status, body) = tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
            .await
            .map_err(|_| http(format!("no answer within {}s", RESPONSE_TIMEOUT.as_secs())))??;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        #[derive(serde::Deserialize)]
        struct Refusal {
            error: String,
            message: String,
        }
        let refusal: Refusal = serde_json::from_slice(&body).unwrap_or(Refusal {
            error: "unknown".into(),
            message: String::from_utf8_lossy(&body).into_owned(),
        });
        if status == 401 || status == 403 {
            return Err(ClientError::Credential {
                status,
                message: refusal.message,
            });
        }
        Err(ClientError::Refused {
            status,
            reason: refusal.error,
            message: refusal.message,
        })
    }
}

async fn send<S>(
    io: S,
    request: hyper::Request<Full<Bytes>>,
    addr: SocketAddr,
) -> Result<(u16, Bytes), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |message: String| ClientError::Http { addr, message };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| http(format!("HTTP handshake failed: {e}")))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http(format!("request failed: {e}")))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| http(format!("cannot read the answer: {e}")))?
        .to_bytes();
    Ok((status, body))
}
