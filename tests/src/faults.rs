//! [`FaultProxy`]: a TCP relay on loopback between the agent and one server (a Git host, the hub, the API
//! server) that misbehaves on command, so a test can show the agent rides out each network fault and loses
//! nothing. It relays bytes, not HTTP, so TLS stays end to end and the server's certificate is what the agent
//! checks.
//!
//! Changing the fault closes every open connection (clients pool keep-alive connections, and a link that
//! breaks breaks those too); new connections then get the new fault.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::server::{bind_loopback, BackgroundServer};

/// What the proxy does to each new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Relay faithfully.
    None,
    /// Accept, then close at once without a byte: a link that refuses.
    Drop,
    /// Wait this long before relaying: a slow or congested link.
    Delay(Duration),
    /// Relay, but cut the connection once this many bytes came back from the server: a stream that dies in
    /// the middle of an answer.
    CutAfter(usize),
    /// Accept and never answer nor close: packets vanish.
    Blackhole,
}

/// A running fault proxy on `127.0.0.1`, in front of one upstream address. Stopped on drop, which also ends every
/// connection it holds.
pub struct FaultProxy {
    port: u16,
    fault: Arc<Mutex<Fault>>,
    /// Bumped on every change; open connections watch it and close.
    changed: tokio::sync::watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    _running: BackgroundServer,
}

impl FaultProxy {
    /// Starts relaying to `upstream`, faithfully until [`FaultProxy::set`] says otherwise.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = bind_loopback(0);
        let port = listener.local_addr().expect("proxy address").port();
        let fault = Arc::new(Mutex::new(Fault::None));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (f, a) = (fault.clone(), accepted.clone());
        let (changed, watch) = tokio::sync::watch::channel(0u64);
        let running = BackgroundServer::spawn("fault-proxy", listener, move |listener| {
            accept_loop(listener, upstream, f, a, watch)
        });
        FaultProxy {
            port,
            fault,
            changed,
            accepted,
            _running: running,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Applies `fault` to every connection accepted from now on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// Connections accepted since start: how often the agent tried.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    accepted: Arc<AtomicUsize>,
    changed: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let now = *fault.lock().unwrap();
        let mut changed = changed.clone();
        changed.mark_unchanged();
        tokio::spawn(async move {
            tokio::select! {
                _ = handle(client, upstream, now) => {}
                _ = changed.changed() => {}
            }
        });
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, fault: Fault) {
    match fault {
        // Closed before a byte is exchanged: the client sees its request go unanswered.
        Fault::Drop => drop(client),
        Fault::Blackhole => {
            // Swallow whatever the client sends; answer nothing, close nothing.
            let mut sink = [0u8; 4096];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
            std::future::pending::<()>().await;
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            relay(client, upstream, usize::MAX).await;
        }
        Fault::CutAfter(n) => relay(client, upstream, n).await,
        Fault::None => relay(client, upstream, usize::MAX).await,
    }
}

/// Relays both ways; the server's answer is cut after `limit` bytes, and then both sides are closed.
async fn relay(client: TcpStream, upstream: SocketAddr, limit: usize) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let downward = async {
        let mut sent = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let n = n.min(limit - sent);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent += n;
            if sent >= limit {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    // The answer ending (or being cut) ends the connection, whatever the client still sends.
    tokio::select! {
        _ = downward => {}
        _ = async { upward.await; std::future::pending::<()>().await } => {}
    }
}
