//! A simple TCP load balancer for the failover test: each connection goes to the next backend in turn, and a
//! backend that refuses the connection is skipped, as an L4 balancer with connect checks does. It counts the
//! connections each backend got.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::TestError;

pub struct Proxy {
    pub addr: SocketAddr,
    /// Connections handed to each backend.
    pub served: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(backends: Vec<SocketAddr>) -> Result<Proxy, TestError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let counts = served.clone();
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (backends, counts, next) = (backends.clone(), counts.clone(), next.clone());
                tokio::spawn(async move {
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    for offset in 0..backends.len() {
                        let index = (start + offset) % backends.len();
                        if let Ok(mut server) =
                            tokio::net::TcpStream::connect(backends[index]).await
                        {
                            counts[index].fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                    // No backend: the client sees the connection closed, as behind a real balancer.
                });
            }
        });
        Ok(Proxy { addr, served, task })
    }

    pub fn served(&self) -> Vec<usize> {
        self.served
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
