//! A tokio runtime on a background thread that runs one accept loop until told to stop.
//!
//! The HTTP fixtures need async I/O (hyper, tokio-rustls), but tests may be plain `#[test]`
//! functions or `#[tokio::test]` ones. Running the server on its *own* thread and runtime
//! works for both: nothing blocks the test's runtime, and dropping the fixture inside an async
//! test does not trip tokio's "cannot drop a runtime in an async context" panic (the runtime
//! is dropped on its own thread). Stopping drops the runtime, which cancels every connection
//! task, so clients see the server really go away.

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running accept loop; stopped (and joined) on drop.
pub(crate) struct BackgroundServer {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Runs `serve(listener)` on a new thread with a current-thread runtime. The listener is
    /// already bound, so the port accepts connections (into the backlog) before this returns.
    pub(crate) fn spawn<F, Fut>(name: &str, listener: StdListener, serve: F) -> BackgroundServer
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build server runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = serve(listener) => {}
                        _ = rx => {}
                    }
                });
                // Dropping `rt` here cancels all connection tasks and kills their CGI children
                // (spawned with `kill_on_drop`).
            })
            .expect("spawn server thread");
        BackgroundServer {
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops the accept loop and every open connection; returns once the thread has ended.
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `127.0.0.1:port`, retrying for a few seconds (a restarted server may briefly find
/// its old socket still closing).
pub(crate) fn bind_loopback(port: u16) -> StdListener {
    let mut last = None;
    for _ in 0..50 {
        match StdListener::bind(("127.0.0.1", port)) {
            Ok(l) => return l,
            Err(e) => last = Some(e),
        }
        if port == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("cannot bind 127.0.0.1:{port}: {last:?}");
}
