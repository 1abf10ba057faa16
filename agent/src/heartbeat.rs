//! Heartbeats to the hub: what each source runs, signed with the agent's key, delivered in order.
//!
//! A heartbeat is queued in the store's outbox first (every `heartbeat_interval`, jittered, and at once when a
//! source's state changes), then the outbox is drained oldest first. Each entry is signed when it is sent, not
//! when it is queued, so one that waited out a long outage is still fresh. An entry leaves the outbox only when
//! the hub's reply verifies against `hub_key`: a signed acknowledgement (delivered) or a signed refusal of that
//! very heartbeat (dropped and counted); an uplink that is down just means the outbox grows (bounded) and
//! drains, in order, when it returns.

use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use outpost_proto::keys::SigningKey;
use outpost_proto::signed::{self, Freshness, ReceivedResponse};
use outpost_proto::wire::{self, Heartbeat, HeartbeatRefusal, SourceState, SourceStatus};
use tokio::sync::{watch, Notify};

use crate::assignment::Assignments;
use crate::config::{Config, Upstream};
use crate::report::Board;
use crate::store::{now, OutboxLimits, Store};

const CONTENT_TYPE: &str = "application/json";
/// Entries sent per drain before the loop looks at shutdown and new state again.
const DRAIN_BATCH: usize = 64;
/// The largest hub reply read: an acknowledgement with an assignment of a few hundred sources fits many times
/// over, and a hub (or something posing as one) cannot make the agent buffer more.
const MAX_REPLY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("the agent key {path}: {message}; run `outpost keygen` first, then enroll its public key at the hub")]
    Key { path: String, message: String },
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
            let record = store.record(&s.name).unwrap_or_default();
            let state = match record.state.as_str() {
                "Ready" => SourceState::Ready,
                "Failed" => SourceState::Failed,
                "Stale" => SourceState::Stale,
                "Suspended" => SourceState::Suspended,
                _ => SourceState::Progressing,
            };
            let mut status = SourceStatus::new(s.name.clone(), state);
            status.fetched_revision = record.fetched;
            status.applied_revision = record.applied;
            status.last_good_revision = record.last_good;
            status.last_error = record.last_error.as_deref().map(wire::bounded_error);
            status.object_count = record.object_count as u64;
            status.inventory_digest = record.inventory_digest;
            status
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

/// Loads the agent's signing key, with an error that says how to make one.
pub fn load_key(config: &Config) -> Result<SigningKey, HeartbeatError> {
    let path = config.agent.key_path();
    SigningKey::load(&path).map_err(|e| HeartbeatError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    })
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
    let client = match client(&upstream) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("heartbeats disabled: {e}");
            return;
        }
    };
    let boot = boot_id();
    let mut retry = crate::schedule::retry_policy(upstream.heartbeat_interval);
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
            queue_at = now_instant + crate::schedule::jittered(upstream.heartbeat_interval, 0.1);
        }
        let drained = if backoff_until.is_some_and(|b| now_instant < b) {
            None
        } else {
            Some(drain(&client, &upstream, &store, &key, &mut assignments).await)
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

fn client(upstream: &Upstream) -> Result<reqwest::Client, HeartbeatError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("outpost/", env!("CARGO_PKG_VERSION")));
    let mut ca_certs = None;
    if let Some(path) = &upstream.ca_file {
        let pem = std::fs::read(path).map_err(|e| HeartbeatError::Send {
            url: upstream.url.clone(),
            message: format!("cannot read ca_file {}: {e}", path.display()),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HeartbeatError::Send {
                url: upstream.url.clone(),
                message: format!("ca_file {}: {e}", path.display()),
            })?;
        ca_certs = Some(certs);
    }
    let builder = match crate::trust::roots(ca_certs.as_deref()) {
        Some(certs) => builder.tls_certs_only(certs.iter().cloned()),
        None => builder,
    };
    builder.build().map_err(|e| HeartbeatError::Send {
        url: upstream.url.clone(),
        message: outpost_proto::text::error_chain(&e, ": "),
    })
}

/// Sends queued heartbeats oldest first; stops at the first failure so order is kept.
async fn drain(
    client: &reqwest::Client,
    upstream: &Upstream,
    store: &Store,
    key: &SigningKey,
    assignments: &mut Assignments,
) -> Result<(), HeartbeatError> {
    let send_err = |message: String| HeartbeatError::Send {
        url: upstream.url.clone(),
        message,
    };
    let url = format!("{}/v1/heartbeats", upstream.url);
    let parsed = reqwest::Url::parse(&url).map_err(|e| send_err(e.to_string()))?;
    let authority = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    let entries = store
        .outbox_entries(DRAIN_BATCH)
        .map_err(|e| send_err(e.to_string()))?;
    for entry in entries {
        let headers = signed::sign_request(
            "POST",
            &authority,
            parsed.path(),
            &entry.body,
            CONTENT_TYPE,
            key,
            now() as i64,
        )
        .map_err(|e| send_err(e.to_string()))?;
        let mut request = client
            .post(parsed.clone())
            .header("content-type", CONTENT_TYPE)
            .body(entry.body.clone());
        for (name, value) in &headers {
            request = request.header(*name, value.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|e| send_err(outpost_proto::text::error_chain(&e, ": ")))?;
        let status = response.status().as_u16();
        let reply_headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = crate::http_body::read_bounded(response, MAX_REPLY)
            .await
            .map_err(|e| send_err(format!("reading the reply: {e}")))?;
        let header_refs: Vec<(&str, &str)> = reply_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = ReceivedResponse {
            status,
            headers: &header_refs,
            body: &body,
        };
        let verify = || {
            signed::verify_response(
                &reply,
                &upstream.hub_key,
                now() as i64,
                Freshness::default(),
            )
            .map_err(|e| e.to_string())
        };
        match status {
            200 => {
                if let Err(message) = verify() {
                    assignments.untrusted(&body, &message);
                    return Err(HeartbeatError::Untrusted {
                        url: upstream.url.clone(),
                        message,
                    });
                }
                store
                    .outbox_delivered(entry.seq)
                    .map_err(|e| send_err(e.to_string()))?;
                tracing::debug!(seq = entry.seq, "heartbeat delivered");
                assignments.consider(&body);
            }
            // The hub already has this seq or a newer one (e.g. after a restore): this heartbeat can never land.
            // Only the hub's own signed refusal of exactly this heartbeat says so; a 409 from anything else (a
            // proxy, a man in the middle, a replayed refusal) is a failed send, and the heartbeat stays queued.
            409 => {
                let refusal = verify().and_then(|_| {
                    HeartbeatRefusal::parse(&body)
                        .filter(|r| r.refuses(&assignments.config.agent.id, entry.seq))
                        .ok_or_else(|| {
                            format!(
                                "the signed 409 does not name agent {:?} and seq {}",
                                assignments.config.agent.id, entry.seq
                            )
                        })
                });
                let refusal = refusal.map_err(|message| HeartbeatError::Untrusted {
                    url: upstream.url.clone(),
                    message: format!(
                        "a 409 refusal of heartbeat {} that is not the hub's ({message}); the heartbeat stays queued",
                        entry.seq
                    ),
                })?;
                let dropped = store
                    .outbox_refused(entry.seq)
                    .map_err(|e| send_err(e.to_string()))?;
                tracing::warn!(
                    seq = entry.seq,
                    dropped,
                    "the hub refused heartbeat {}: {} ({}); dropped from the outbox, and counted in the next heartbeat",
                    entry.seq,
                    refusal.message,
                    refusal.error
                );
            }
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_string();
                return Err(send_err(format!("HTTP {status}: {text}")));
            }
        }
    }
    Ok(())
}
