//! The scheduler behind `outpost run`: one task per source, polling every `interval` with ±10 % jitter (so ten
//! thousand sites do not hit the Git host in step), and retrying failures with exponential backoff plus jitter.
//!
//! Order at start matters for an edge site that reboots offline: first every source's last good bundle is
//! re-applied from the store, then sources removed from the config are cleaned up, and only then does any task
//! touch the network.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use rand::Rng;
use tokio::sync::watch;

use crate::config::Config;
use crate::deploy::{Target, TargetContext, TargetError};
use crate::reconcile::Reconciler;
use crate::report::Board;
use crate::store::{now, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("source \"{source_name}\": {error}")]
    Target {
        source_name: String,
        error: TargetError,
    },
}

/// Runs every source until `shutdown` turns true; returns once in-flight passes have finished their writes.
pub async fn run(
    config: &Config,
    targets: &TargetContext,
    shutdown: watch::Receiver<bool>,
    reload: Arc<tokio::sync::Notify>,
) -> Result<(), ScheduleError> {
    let store = targets.store.clone();
    let board = Arc::new(Board::new(config, &store)?);
    let mut reconcilers: Vec<Arc<Reconciler>> = Vec::new();
    for s in &config.sources {
        reconcilers.push(Arc::new(reconciler(config, s, targets)?));
    }

    for r in reconcilers.iter().filter(|r| r.may_apply()) {
        let restored = r.restore_last_good().await;
        crate::mem::release_free_memory();
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
        match crate::heartbeat::load_key(config) {
            Ok(key) => {
                let (config, upstream) = (Arc::new(config.clone()), upstream.clone());
                let shared = crate::heartbeat::Shared {
                    store: store.clone(),
                    changed: changed.clone(),
                    reload,
                    board: board.clone(),
                };
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    crate::heartbeat::run(config, upstream, key, shared, shutdown).await
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
        tasks.spawn(async move { source_loop(r, store, board, changed, leader, shutdown).await });
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

pub fn reconciler(
    config: &Config,
    source: &crate::config::SourceConfig,
    targets: &TargetContext,
) -> Result<Reconciler, ScheduleError> {
    Reconciler::new(
        source,
        targets,
        &config.agent.state_dir.join("git"),
        config.agent.limits,
        config.agent.keep_revisions,
        source.vars(&config.agent),
    )
    .map_err(|error| ScheduleError::Target {
        source_name: source.name.clone(),
        error,
    })
}

async fn source_loop(
    r: Arc<Reconciler>,
    store: Arc<Store>,
    board: Arc<Board>,
    changed: Arc<tokio::sync::Notify>,
    mut leader: Option<watch::Receiver<crate::deploy::kube::lease::Leadership>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = r.config.interval;
    let mut backoff = retry_policy(interval);
    // A short random start delay spreads a fleet that boots at once (power returns to a whole region).
    let mut delay = jittered(interval / 10, 1.0).min(Duration::from_secs(5));
    let mut seen = None;
    loop {
        // One read of the record per pass serves both the status board and change detection.
        if let Some(record) = read_record(&r, &store) {
            let now_seen = (record.state.clone(), record.applied.clone());
            if seen.as_ref().is_some_and(|s| *s != now_seen) {
                // A heartbeat goes out at once on any state change, not at the next interval.
                changed.notify_one();
            }
            seen = Some(now_seen);
            board.update(&r.config, &record, Some(now() + delay.as_secs()));
        }
        // A replica that just took over the leader lease applies at once rather than at its next poll.
        let takeover = async {
            use crate::deploy::kube::lease::Leadership;
            match leader.as_mut() {
                Some(l) if *l.borrow() != Leadership::Leader => {
                    let _ = l.wait_for(|lead| *lead == Leadership::Leader).await;
                }
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = takeover => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let result = r.pass(&shutdown).await;
        delay = match &result {
            Ok(_) => {
                backoff.reset();
                jittered(interval, 0.1)
            }
            Err(crate::reconcile::ReconcileError::Cancelled(_)) => break,
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

fn read_record(r: &Reconciler, store: &Store) -> Option<crate::store::SourceRecord> {
    store
        .record(r.name())
        .map_err(|e| tracing::warn!(source = r.name(), "cannot read the source's record: {e}"))
        .ok()
}

/// Backoff for failed polls: starts at a tenth of the interval (1 s to 30 s), doubles with ±50 % jitter, and
/// levels off at ten intervals but no more than 10 minutes (never below the interval itself). It never gives up:
/// an edge site waits for its uplink as long as it takes.
pub fn retry_policy(interval: Duration) -> backoff::ExponentialBackoff {
    let initial = (interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let max = (interval * 10).min(Duration::from_secs(600)).max(interval);
    backoff::ExponentialBackoff {
        current_interval: initial,
        initial_interval: initial,
        randomization_factor: 0.5,
        multiplier: 2.0,
        max_interval: max,
        max_elapsed_time: None,
        ..Default::default()
    }
}

/// `base` scaled by a random factor in [1 - spread, 1 + spread].
pub fn jittered(base: Duration, spread: f64) -> Duration {
    let factor = 1.0 + rand::rng().random_range(-spread..=spread);
    base.mul_f64(factor.max(0.0))
}

/// Cleans up sources that are in the store but no longer in the config: their file is removed from a directory
/// target when they were applied with `prune = true`, and the store forgets them.
pub async fn prune_removed_sources(
    config: &Config,
    targets: &TargetContext,
) -> Result<(), StoreError> {
    let store = &targets.store;
    for (name, record) in store.sources()? {
        if config.source(&name).is_some() {
            continue;
        }
        let target = record
            .target
            .as_deref()
            .and_then(|t| Target::for_removed(&name, t, targets));
        match target {
            Some(target) if record.prune => match target.remove(&name).await {
                Ok(true) => {
                    tracing::info!(source = %name, "source removed from the config: its objects were pruned")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(source = %name, "cannot prune the removed source: {e}; will retry at next start");
                    continue;
                }
            },
            _ => {
                tracing::info!(source = %name, "source removed from the config: prune is off (or its target is gone), its objects are left in place")
            }
        }
        store.remove_source(&name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(60);
        let samples: Vec<Duration> = (0..1000).map(|_| jittered(base, 0.1)).collect();
        assert!(samples
            .iter()
            .all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "jitter must actually vary");
    }

    #[test]
    fn backoff_grows_and_levels_off() {
        let mut b = retry_policy(Duration::from_secs(60));
        let delays: Vec<Duration> = (0..12).map(|_| b.next_backoff().unwrap()).collect();
        assert!(
            delays[0] >= Duration::from_secs(3) && delays[0] <= Duration::from_secs(9),
            "{delays:?}"
        );
        assert!(delays[4] > delays[0]);
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(900)),
            "{delays:?}"
        );
        b.reset();
        assert!(b.next_backoff().unwrap() <= Duration::from_secs(9));
    }
}
