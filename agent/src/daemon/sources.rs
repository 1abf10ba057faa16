//! One round of `outpost run`: one task per source, polling every `interval` with ±10 % jitter, retrying
//! failures with backoff (see `timing`), plus the heartbeat task and the systemd watchdog.
//!
//! Order at start matters for an edge site that reboots offline: first every source's last good bundle is
//! re-applied from the store, then sources removed from the config are cleaned up, and only then does any task
//! touch the network.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use tokio::sync::watch;

use super::timing::{jittered, retry_policy, MAX_START_DELAY};
use crate::config::Config;
use crate::depends::{apply_order, Dependent};
use crate::deploy::{Leadership, TargetContext};
use crate::reconcile::{prune_removed_sources, ReconcileError, Reconciler};
use crate::report::{Board, SourceStatus};
use crate::store::{now, Store};

/// Runs every source until `shutdown` turns true; returns once in-flight passes have finished their writes.
pub async fn run(
    config: &Config,
    targets: &TargetContext,
    shutdown: watch::Receiver<bool>,
    reload: Arc<tokio::sync::Notify>,
    poke: Arc<tokio::sync::Notify>,
) -> Result<(), ReconcileError> {
    let store = targets.store.clone();
    let board = Arc::new(Board::new(config, store.snapshot(config)?));
    let mut reconcilers: Vec<Arc<Reconciler>> = Vec::new();
    for s in &config.sources {
        reconcilers.push(Arc::new(Reconciler::for_source(config, s, targets)?));
    }

    // After a reboot offline, dependencies come back before what depends on them (`depends_on`).
    for r in restore_order(config, &reconcilers)
        .into_iter()
        .filter(|r| r.may_apply())
    {
        let restored = r.restore_last_good().await;
        outpost_proto::mem::release_free_memory();
        match restored {
            Ok(Some(rev)) => {
                tracing::info!(source = r.name(), revision = %rev, "last good revision re-applied from the store")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                source = r.name(),
                "cannot re-apply the last good revision: {e}"
            ),
        }
    }
    prune_removed_sources(config, targets).await?;
    tracing::info!(sources = reconcilers.len(), "started");
    crate::notify::send("READY=1");

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(every) = crate::notify::watchdog_interval() {
        let mut shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                crate::notify::send("WATCHDOG=1");
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
        });
    }

    let changed = Arc::new(tokio::sync::Notify::new());
    if let Some(upstream) = &config.upstream {
        match crate::identity::load_key(&config.agent) {
            Ok(key) => {
                let (config, upstream) = (Arc::new(config.clone()), upstream.clone());
                let shared = super::heartbeat::Shared {
                    store: store.clone(),
                    changed: changed.clone(),
                    reload,
                    board: board.clone(),
                };
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    super::heartbeat::run(config, upstream, key, shared, shutdown).await
                });
            }
            Err(e) => tracing::error!("heartbeats disabled: {e}"),
        }
    }
    for r in reconcilers {
        let store = store.clone();
        let board = board.clone();
        let shutdown = shutdown.clone();
        let changed = changed.clone();
        let leader = targets.leader.clone();
        let poke = poke.clone();
        tasks.spawn(
            async move { source_loop(r, store, board, changed, leader, shutdown, poke).await },
        );
    }
    // The daemon lives until shutdown even with no source to run: heartbeats, and an assignment from the hub,
    // may still come.
    {
        let mut shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!("a source task ended unexpectedly: {e}");
        }
    }
    board.close();
    Ok(())
}

async fn source_loop(
    r: Arc<Reconciler>,
    store: Arc<Store>,
    board: Arc<Board>,
    changed: Arc<tokio::sync::Notify>,
    mut leader: Option<watch::Receiver<Leadership>>,
    mut shutdown: watch::Receiver<bool>,
    poke: Arc<tokio::sync::Notify>,
) {
    let interval = r.config.interval;
    let mut backoff = retry_policy(interval);
    // A short random start delay spreads a fleet that boots at once (power returns to a whole region).
    let mut delay = jittered(interval / 10, 1.0).min(MAX_START_DELAY);
    let mut seen = None;
    loop {
        // One read of the record per pass serves both the status board and change detection.
        if let Some(record) = read_record(&r, &store) {
            let now_seen = (record.state, record.applied.clone());
            if seen.as_ref().is_some_and(|s| *s != now_seen) {
                // A heartbeat goes out at once on any state change, not at the next interval.
                changed.notify_one();
            }
            seen = Some(now_seen);
            board.update(&r.config, &record, Some(now() + delay.as_secs()));
        }
        // A replica that just took over the leader lease applies at once rather than at its next poll.
        let takeover = async {
            match leader.as_mut() {
                Some(l) if *l.borrow() != Leadership::Leader => {
                    let _ = l.wait_for(|lead| *lead == Leadership::Leader).await;
                }
                _ => std::future::pending::<()>().await,
            }
        };
        // `outpost reconcile` asks for a poll now: a request made while this source was busy is taken here.
        if crate::control::take_reconcile(r.state_dir(), r.name()) {
            delay = Duration::ZERO;
        }
        let deadline = tokio::time::Instant::now() + delay;
        tokio::pin!(takeover);
        let mut stopping = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut takeover => break,
                _ = poke.notified() => {
                    if crate::control::take_reconcile(r.state_dir(), r.name()) {
                        tracing::info!(source = r.name(), "polling now: asked by `outpost reconcile`");
                        break;
                    }
                }
                _ = shutdown.wait_for(|stop| *stop) => {
                    stopping = true;
                    break;
                }
            }
        }
        if stopping {
            break;
        }
        let result = r.pass(&shutdown).await;
        delay = match &result {
            Ok(_) => {
                backoff.reset();
                jittered(interval, 0.1)
            }
            Err(ReconcileError::Cancelled(_)) => break,
            Err(_) => backoff.next_backoff().unwrap_or(interval),
        };
        if *shutdown.borrow() {
            break;
        }
    }
    if let Some(record) = read_record(&r, &store) {
        board.update(&r.config, &record, None);
    }
    tracing::info!(source = r.name(), "stopped");
}

fn read_record(r: &Reconciler, store: &Store) -> Option<SourceStatus> {
    store
        .record(r.name())
        .map(|record| record.status)
        .map_err(|e| tracing::warn!(source = r.name(), "cannot read the source's record: {e}"))
        .ok()
}

/// The reconcilers in `depends_on` order (the config checked the graph at load, so it always has one; should it
/// not, the config's own order is kept).
fn restore_order<'a>(
    config: &Config,
    reconcilers: &'a [Arc<Reconciler>],
) -> Vec<&'a Arc<Reconciler>> {
    let nodes: Vec<Dependent> = config
        .sources
        .iter()
        .map(|s| Dependent {
            name: &s.name,
            depends_on: &s.operations.depends_on,
        })
        .collect();
    let order = apply_order(&nodes).unwrap_or_else(|_| nodes.iter().map(|n| n.name).collect());
    order
        .iter()
        .filter_map(|name| reconcilers.iter().find(|r| r.name() == *name))
        .collect()
}
