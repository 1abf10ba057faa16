//! Heartbeats to the hub: what each source runs, signed with the agent's key, delivered in order.
//!
//! A heartbeat is queued in the store's outbox first (every `heartbeat_interval`, jittered, and at once when a
//! source's state changes), then the outbox is drained oldest first. Each entry is signed when it is sent, not
//! when it is queued, so one that waited out a long outage is still fresh. An entry leaves the outbox only when
//! the hub's reply verifies against `hub_key`: a signed acknowledgement (delivered) or a signed refusal of that
//! very heartbeat (dropped and counted); an uplink that is down just means the outbox grows (bounded) and
//! drains, in order, when it returns.

use std::sync::Arc;

use backoff::backoff::Backoff;
use outpost_proto::keys::SigningKey;
use outpost_proto::wire::{self, Heartbeat};
use tokio::sync::{watch, Notify};

mod send;

pub use send::{client, post_signed, Answer};

use super::assignment::Assignments;
use super::timing::{jittered, retry_policy};
use crate::config::{Config, Upstream};
use crate::report::Board;
use crate::store::{now, OutboxLimits, Store};

#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("hub {url}: {message}")]
    Send { url: String, message: String },
    #[error("hub {url} answered, but its reply does not verify against [upstream] hub_key: {message}; check hub_key")]
    Untrusted { url: String, message: String },
}

/// Builds the heartbeat body for the current store records of the configured sources.
pub fn build(config: &Config, store: &Store, seq: u64, dropped: u64, boot_id: &str) -> Vec<u8> {
    let sources = config
        .sources
        .iter()
        .map(|s| {
            store
                .record(&s.name)
                .unwrap_or_default()
                .status
                .to_wire(&s.name)
        })
        .collect();
    let heartbeat = Heartbeat {
        schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
        agent_id: config.agent.id.clone(),
        seq,
        boot_id: boot_id.to_string(),
        observed_at: wire::format_timestamp(now() as i64).unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        assignment_generation: config.assignment_generation,
        dropped,
        sources,
        assignment_error: store.assignment_error().unwrap_or_else(|e| {
            tracing::warn!("cannot read the assignment refusal to report: {e}");
            None
        }),
    };
    // Validation failures would be our bug; send what we have and let the hub say what is wrong.
    heartbeat
        .to_body()
        .unwrap_or_else(|_| serde_json::to_vec(&heartbeat).unwrap_or_default())
}

/// The kernel's id of this boot, so the hub can tell a restart from a reboot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What the heartbeat loop shares with the rest of the daemon.
pub struct Shared {
    pub store: Arc<Store>,
    /// Notified by the source loops when a state changes: a heartbeat is queued at once.
    pub changed: Arc<Notify>,
    /// Notified here when an assignment is accepted: the daemon restarts its sources with it.
    pub reload: Arc<Notify>,
    /// The status snapshot `outpost status` reads, which shows the outbox depth.
    pub board: Arc<Board>,
}

/// Queues and sends heartbeats until shutdown.
pub async fn run(
    config: Arc<Config>,
    upstream: Upstream,
    key: SigningKey,
    shared: Shared,
    mut shutdown: watch::Receiver<bool>,
) {
    let Shared {
        store,
        changed,
        reload,
        board,
    } = shared;
    let mut assignments = Assignments {
        config: config.clone(),
        store: store.clone(),
        reload,
        changed: changed.clone(),
        logged: None,
    };
    let client = match send::client(&upstream) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("heartbeats disabled: {e}");
            return;
        }
    };
    let boot = boot_id();
    let mut retry = retry_policy(upstream.heartbeat_interval);
    // Two clocks: heartbeats are queued every interval (and on change) whether or not the hub is reachable,
    // so an outage is recorded at full resolution; after a failed send, sending waits out its own backoff.
    let mut queue_at = tokio::time::Instant::now();
    let mut backoff_until: Option<tokio::time::Instant> = None;
    loop {
        let wake = backoff_until.map_or(queue_at, |b| b.min(queue_at));
        let mut state_changed = false;
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = changed.notified() => state_changed = true,
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let now_instant = tokio::time::Instant::now();
        if state_changed || now_instant >= queue_at {
            let queued = store.outbox_push(now(), OutboxLimits::default(), |seq, dropped| {
                build(&config, &store, seq, dropped, &boot)
            });
            if let Err(e) = queued {
                tracing::warn!("cannot queue a heartbeat: {e}");
            }
            queue_at = now_instant + jittered(upstream.heartbeat_interval, 0.1);
        }
        let drained = if backoff_until.is_some_and(|b| now_instant < b) {
            None
        } else {
            Some(send::drain(&client, &upstream, &store, &key, &mut assignments).await)
        };
        // Counted on every wake, not only after a send: while the hub is down, sends wait out a growing
        // backoff, and `outpost status` must show the queue as it grows.
        let queued = store.outbox_len();
        let dropped = store.outbox_dropped_total().unwrap_or_else(|e| {
            tracing::warn!("cannot read the count of dropped heartbeats: {e}");
            0
        });
        board.set_outbox(queued as u64, dropped);
        match drained {
            Some(Ok(())) => {
                retry.reset();
                backoff_until = None;
            }
            Some(Err(e)) => {
                tracing::warn!(queued, "{e}");
                backoff_until =
                    Some(now_instant + retry.next_backoff().unwrap_or(upstream.heartbeat_interval));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::State;
    use crate::store::HistoryEntry;

    #[test]
    fn the_body_carries_each_sources_stored_status() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[agent]\nid = \"store-042\"\nstate_dir = \"{}\"\n[[source]]\nname = \"web\"\nurl = \"https://git.example/a.git\"\nbranch = \"main\"\ntarget = \"kubernetes\"\n[[source]]\nname = \"new\"\nurl = \"https://git.example/b.git\"\nbranch = \"main\"\ntarget = \"kubernetes\"\n",
            dir.path().display()
        );
        let config = Config::parse(std::path::Path::new("agent.toml"), &text).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = "a".repeat(40);
        let entry = HistoryEntry {
            at: now(),
            state: State::Stale,
            revision: None,
            message: None,
        };
        store
            .update("web", entry, None, 3, |r| {
                r.status.state = State::Stale;
                r.status.applied = Some(good.clone());
                r.status.last_good = Some(good.clone());
                r.status.last_error = Some("cannot reach git.example".into());
                r.status.object_count = 4;
            })
            .unwrap();
        let body = build(&config, &store, 7, 2, "boot-1");
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["agent_id"], "store-042");
        assert_eq!(sent["seq"], 7);
        assert_eq!(sent["dropped"], 2);
        let sources = sent["sources"].as_array().unwrap();
        assert_eq!(sources[0]["name"], "web");
        assert_eq!(sources[0]["state"], "Stale");
        assert_eq!(sources[0]["last_good_revision"], good.as_str());
        assert_eq!(sources[0]["last_error"], "cannot reach git.example");
        assert_eq!(sources[0]["object_count"], 4);
        // Never polled yet: on its way, which the wire calls Progressing.
        assert_eq!(sources[1]["name"], "new");
        assert_eq!(sources[1]["state"], "Progressing");
        assert!(wire::parse_heartbeat(&body).is_ok(), "the body validates");
    }
}
