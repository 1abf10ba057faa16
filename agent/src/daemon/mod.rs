//! `outpost run`: the daemon. It owns the process's lifetime (signals, a failed store), runs rounds (the config
//! file's sources plus the hub's accepted assignment; a newer assignment starts a new round), and in each round
//! connects the targets (with leader election) and runs every source's loop and the heartbeats.
//!
//! - [`sources`]: one round: start order after a reboot, one task per source, the watchdog;
//! - [`heartbeat`]: the outbox and its delivery to the hub; [`assignment`]: what the hub's replies assign;
//! - [`timing`]: jitter, backoff and the daemon's named waits.

pub mod assignment;
pub mod heartbeat;
pub mod sources;
pub mod timing;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::deploy::{ContextError, TargetContext};
use crate::reconcile::ReconcileError;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Targets(#[from] ContextError),
    #[error(transparent)]
    Round(#[from] Box<ReconcileError>),
}

impl From<ReconcileError> for DaemonError {
    fn from(e: ReconcileError) -> Self {
        DaemonError::Round(Box::new(e))
    }
}

/// `outpost run`: the daemon, until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<ExitCode, DaemonError> {
    let store = Arc::new(Store::open_exclusive(&config.agent.state_dir)?);
    let (stop, shutdown) = watch::channel(false);
    let stop = Arc::new(stop);
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: finishing in-flight writes");
            crate::notify::send("STOPPING=1");
            let _ = stop.send(true);
        });
    }
    tokio::spawn(exit_when_store_fails(store.clone(), stop));
    let poke = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(wake_on_sigusr1(poke.clone()));
    // Each round runs the config file's sources plus the hub's accepted assignment; a newer assignment ends the
    // round (like a graceful stop, in-flight writes finish) and the next one starts with it.
    loop {
        let running = store.effective_config(&config);
        let (round_stop, round) = watch::channel(false);
        let reload = Arc::new(tokio::sync::Notify::new());
        let forward = {
            let (mut shutdown, reload) = (shutdown.clone(), reload.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => {}
                    _ = reload.notified() => {}
                }
                let _ = round_stop.send(true);
            })
        };
        let (targets, election) = TargetContext::connect(&running, &store, Some(&round)).await?;
        sources::run(&running, &targets, round, reload, poke.clone()).await?;
        forward.abort();
        if let Some(election) = election {
            // Let it release the lease, so a successor does not wait for it to expire.
            let _ = election.await;
        }
        if *shutdown.borrow() {
            break;
        }
    }
    store.release_pid_file();
    if store.failed() {
        return Ok(ExitCode::FAILURE);
    }
    // Every change was flushed when it was made; this last flush is belt and braces, and (like every flush) it
    // is bounded, so a failing disk cannot hang a stop.
    if let Err(e) = store.flush() {
        tracing::error!(
            "{e}; stopping without the final flush: every change was flushed when it was made"
        );
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// How long a stop after a store failure may take before the process exits regardless.
const FAILED_STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the daemon looks whether the store has failed.
const STORE_CHECK_EVERY: Duration = Duration::from_millis(500);

/// A store that failed to write (a full or failing disk under state_dir) never writes again in this process, so
/// the daemon stops and exits with a failure: its supervisor starts it again, and the new process opens the
/// store afresh (sled recovers it as after a crash) and converges once the disk has room. Until then each start
/// fails with the same clear error. A write stuck inside sled could keep the orderly stop from finishing, so
/// after a grace period the process exits regardless; what was flushed is on disk, which is all a crash leaves
/// too.
async fn exit_when_store_fails(store: Arc<Store>, stop: Arc<watch::Sender<bool>>) {
    while !store.failed() {
        tokio::time::sleep(STORE_CHECK_EVERY).await;
    }
    tracing::error!(
        "the store under {} can no longer be written (is the disk full or failing?); exiting so that the supervisor restarts the agent: free space there and it resumes from its last good state",
        store.dir().display()
    );
    crate::notify::send("STOPPING=1");
    let _ = stop.send(true);
    tokio::time::sleep(FAILED_STOP_GRACE).await;
    tracing::error!("the stop did not finish within {FAILED_STOP_GRACE:?}; exiting now");
    std::process::exit(1);
}

/// `outpost reconcile` leaves a request file and sends SIGUSR1; every source loop then looks for its own.
async fn wake_on_sigusr1(poke: Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        // Without the handler, requests are still taken before each source's next poll.
        return;
    };
    while usr1.recv().await.is_some() {
        poke.notify_waiters();
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can still be killed; it just cannot drain first.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
