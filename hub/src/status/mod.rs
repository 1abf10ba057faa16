//! The fleet as the hub sees it: one [`AgentView`] per agent, served as `GET /v1/agents` and printed by
//! `outpost-hub status`.
//!
//! Honesty rule: an agent is `online` only while its last accepted heartbeat is younger than three of its
//! heartbeat intervals (the hub-wide `heartbeat_interval`, 30 s unless set, or the agent's own in its
//! `[[agent]]` table). Past that it is `offline`, and its per-source states are shown as what they were at
//! `last_seen`, never as current. "Last seen" is the hub's clock at receipt, not the agent's `observed_at`,
//! so an agent with a wrong clock cannot look alive.
//!
//! `outpost-hub status` asks the running hub first (`GET /v1/agents` on the configured `listen` address,
//! over TLS pinned to the configured certificate when `[tls]` is set), because a running hub holds the sled
//! store's lock. When nothing answers there, it opens the store itself and computes the same views.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use outpost_proto::wire::{format_timestamp, AssignmentError, SourceStatus};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::{BackendError, FleetStore};
use crate::config::Config;
use crate::registry::Registry;
use crate::store::AgentRecord;

mod table;
pub use table::render_table;

/// Missed intervals after which an agent is offline.
pub const OFFLINE_AFTER_INTERVALS: u32 = 3;
/// How long `status` waits for a running hub before reading the store itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `status` waits for the running hub's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The listing of 10,000 agents with a few sources each fits well within this.
const MAX_LISTING_BYTES: usize = 256 * 1024 * 1024;

/// One agent's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub agent_id: String,
    /// `config`, `enrolled`, or `removed` (heartbeats on record, but the agent is no longer enrolled).
    pub origin: String,
    /// `SHA256:` fingerprint of its key; absent for removed agents.
    pub fingerprint: Option<String>,
    pub online: bool,
    /// `online`, `offline` or `never-seen`.
    pub status: String,
    /// The hub's clock at the last accepted heartbeat, `YYYY-MM-DDTHH:MM:SSZ`.
    pub last_seen: Option<String>,
    pub last_seen_secs_ago: Option<u64>,
    /// The interval the offline rule uses, in milliseconds (sub-second intervals exist in tests).
    pub heartbeat_interval_ms: u64,
    pub seq: Option<u64>,
    pub boot_id: Option<String>,
    pub agent_version: Option<String>,
    /// The assignment generation the agent reports running.
    pub assignment_generation: Option<u64>,
    /// The generation the hub currently assigns to it.
    pub assigned_generation: Option<u64>,
    /// Heartbeats the agent's outbox dropped before the last one.
    pub dropped: Option<u64>,
    /// The assignment the agent refused and why, as of `last_seen`; absent when nothing is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_error: Option<AssignmentError>,
    /// Per source, as of `last_seen`.
    pub sources: Vec<SourceStatus>,
    /// Labels set through the admin API or by the token that enrolled the agent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Why `outpost-hub status` could not get the fleet's status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the hub's store could not be read, and no hub answered on {addr}: {store}")]
    Store {
        addr: SocketAddr,
        store: BackendError,
    },
    #[error("the hub on {addr} did not answer properly: {message}")]
    Remote { addr: SocketAddr, message: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The views of every agent, by id: the known ones (seen or not), then any removed ones still on record.
pub fn views(
    config: &Config,
    registry: &Registry,
    records: Vec<AgentRecord>,
    now_ms: u64,
) -> Vec<AgentView> {
    let mut records: BTreeMap<String, AgentRecord> = records
        .into_iter()
        .map(|r| (r.agent_id.clone(), r))
        .collect();
    let mut views: Vec<AgentView> = registry
        .iter()
        .map(|agent| {
            let record = records.remove(&agent.id);
            view(
                config,
                &agent.id,
                agent.origin.as_str(),
                Some(agent.fingerprint.clone()),
                agent.heartbeat_interval,
                record,
                now_ms,
            )
        })
        .collect();
    for (id, record) in records {
        views.push(view(
            config,
            &id,
            "removed",
            None,
            config.heartbeat_interval,
            Some(record),
            now_ms,
        ));
    }
    views.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    views
}

/// Raises each view's `assigned_generation` to the agent's stored assignment (set through the admin API), as
/// heartbeat replies serve the higher of the config's and the stored one.
pub fn with_stored_generations(views: &mut [AgentView], stored: &[(String, u64)]) {
    let stored: std::collections::HashMap<&str, u64> =
        stored.iter().map(|(id, g)| (id.as_str(), *g)).collect();
    for view in views {
        if let Some(generation) = stored.get(view.agent_id.as_str()) {
            view.assigned_generation = Some(
                view.assigned_generation
                    .map_or(*generation, |g| g.max(*generation)),
            );
        }
    }
}

/// Gives each view its agent's labels.
pub fn with_labels(views: &mut [AgentView], labels: Vec<(String, crate::store::Labels)>) {
    let mut labels: std::collections::HashMap<String, crate::store::Labels> =
        labels.into_iter().collect();
    for view in views {
        if let Some(set) = labels.remove(&view.agent_id) {
            view.labels = set;
        }
    }
}

/// The view of one agent; `None` when the hub neither knows it nor holds a heartbeat of it.
pub fn agent_view(
    config: &Config,
    registry: &Registry,
    id: &str,
    record: Option<AgentRecord>,
    now_ms: u64,
) -> Option<AgentView> {
    match registry.get(id) {
        Some(agent) => Some(view(
            config,
            id,
            agent.origin.as_str(),
            Some(agent.fingerprint.clone()),
            agent.heartbeat_interval,
            record,
            now_ms,
        )),
        None => record.map(|record| {
            let interval = config.heartbeat_interval;
            view(config, id, "removed", None, interval, Some(record), now_ms)
        }),
    }
}

fn view(
    config: &Config,
    id: &str,
    origin: &str,
    fingerprint: Option<String>,
    interval: Duration,
    record: Option<AgentRecord>,
    now_ms: u64,
) -> AgentView {
    let window_ms =
        u64::try_from((interval * OFFLINE_AFTER_INTERVALS).as_millis()).unwrap_or(u64::MAX);
    let online = record
        .as_ref()
        .is_some_and(|r| now_ms.saturating_sub(r.last_seen_ms) <= window_ms);
    let status = match (&record, online) {
        (None, _) => "never-seen",
        (Some(_), true) => "online",
        (Some(_), false) => "offline",
    };
    let heartbeat = record.as_ref().map(|r| &r.heartbeat);
    AgentView {
        agent_id: id.to_owned(),
        origin: origin.to_owned(),
        fingerprint,
        online,
        status: status.to_owned(),
        last_seen: record.as_ref().and_then(|r| format_ms(r.last_seen_ms)),
        last_seen_secs_ago: record
            .as_ref()
            .map(|r| now_ms.saturating_sub(r.last_seen_ms) / 1000),
        heartbeat_interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        seq: record.as_ref().map(|r| r.last_seq),
        boot_id: heartbeat.map(|h| h.boot_id.clone()),
        agent_version: heartbeat.map(|h| h.agent_version.clone()),
        assignment_generation: heartbeat.map(|h| h.assignment_generation),
        assigned_generation: config.assignments.for_agent(id).map(|a| a.generation),
        dropped: heartbeat.map(|h| h.dropped),
        assignment_error: heartbeat.and_then(|h| h.assignment_error.clone()),
        sources: heartbeat.map(|h| h.sources.clone()).unwrap_or_default(),
        labels: BTreeMap::new(),
    }
}

/// Unix milliseconds as the wire's timestamp, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_ms(ms: u64) -> Option<String> {
    format_timestamp(i64::try_from(ms / 1000).ok()?)
}

/// Reads the views straight from the store (an embedded store only while no hub runs: it holds the lock).
pub async fn from_store(
    config: &Config,
    store: &dyn FleetStore,
    now_ms: u64,
) -> Result<Vec<AgentView>, BackendError> {
    let (registry, _) = Registry::build(config, &store.enrollments().await?);
    let mut views = views(config, &registry, store.agents().await?, now_ms);
    with_stored_generations(&mut views, &store.assignment_generations().await?);
    with_labels(&mut views, store.labels().await?);
    Ok(views)
}

/// The address `status` dials: the listen address, with a wildcard replaced by loopback.
pub(crate) fn dial_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The fleet's status: from the running hub when one answers on the configured address, else from the store.
/// `token` is a read credential ([`crate::access`]) for the running hub.
pub async fn collect(
    config: &Config,
    now_ms: u64,
    token: Option<&str>,
) -> Result<Vec<AgentView>, StatusError> {
    let addr = dial_addr(config.listen);
    let connected =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await;
    let stream = match connected {
        Ok(Ok(stream)) => stream,
        // Nothing listens (or the address is unreachable): the hub is not running, so the store is free.
        Ok(Err(_)) | Err(_) => {
            let store = crate::backend::open(config, false)
                .await
                .map_err(|store| StatusError::Store { addr, store })?;
            return from_store(config, &*store, now_ms)
                .await
                .map_err(|store| StatusError::Store { addr, store });
        }
    };
    let remote = |message: String| StatusError::Remote { addr, message };
    let body = match &config.tls {
        Some(files) => {
            let connector = tokio_rustls::TlsConnector::from(crate::tls::pinned_client_config(&files.cert_file)?);
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let tls = connector
                .connect(name, stream)
                .await
                .map_err(|e| remote(format!("TLS handshake failed ({e}); is the hub serving the certificate in [tls] cert_file?")))?;
            get_agents(tls, addr, token).await
        }
        None => get_agents(stream, addr, token).await,
    }
    .map_err(remote)?;
    serde_json::from_slice(&body).map_err(|e| {
        remote(format!(
            "the agent listing is not what this version expects ({e})"
        ))
    })
}

/// `GET /v1/agents` over an established connection; returns the body of a 200.
async fn get_agents<S>(io: S, addr: SocketAddr, token: Option<&str>) -> Result<Bytes, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
        tokio::spawn(connection);
        let mut request =
            hyper::Request::get("/v1/agents").header(hyper::header::HOST, addr.to_string());
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_LISTING_BYTES)
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?
            .to_bytes();
        if status == hyper::StatusCode::UNAUTHORIZED || status == hyper::StatusCode::FORBIDDEN {
            return Err(format!(
                "GET /v1/agents answered {status}: the hub needs a read credential; pass --token-file with a token listed as [[reader]] or [[admin]] (`outpost-hub credential create` makes one)"
            ));
        }
        if !status.is_success() {
            return Err(format!(
                "GET /v1/agents answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body)
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", RESPONSE_TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::wire::{Heartbeat, SourceState};
    use std::path::Path;

    const KEY_A: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const KEY_B: &str = "ed25519:PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=";

    fn record(id: &str, last_seen_ms: u64) -> AgentRecord {
        let mut source = SourceStatus::new("platform", SourceState::Ready);
        source.applied_revision = Some("0123456789abcdef0123456789abcdef01234567".into());
        AgentRecord {
            agent_id: id.into(),
            last_seq: 9,
            last_seen_ms,
            accepted: 9,
            heartbeat: Heartbeat {
                schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
                agent_id: id.into(),
                seq: 9,
                boot_id: "b".into(),
                observed_at: "2026-09-21T14:13:20Z".into(),
                agent_version: "0.1.0".into(),
                assignment_generation: 2,
                dropped: 0,
                sources: vec![source],
                assignment_error: None,
            },
        }
    }

    #[test]
    fn offline_after_three_missed_intervals() -> Result<(), Box<dyn std::error::Error>> {
        let text = format!(
            "heartbeat_interval = \"10s\"\n[[agent]]\nid = \"a\"\npublic_key = \"{KEY_A}\"\n[[agent]]\nid = \"b\"\npublic_key = \"{KEY_B}\"\nheartbeat_interval = \"1m\"\n"
        );
        let config = Config::parse(&text, Path::new("/hub.toml"))?;
        let (registry, _) = Registry::build(&config, &[]);
        let now = 1_790_000_000_000;
        let records = vec![
            record("a", now - 30_000),
            record("b", now - 31_000),
            record("gone", now),
        ];
        let views = views(&config, &registry, records.clone(), now);
        let summary: Vec<(&str, &str, &str)> = views
            .iter()
            .map(|v| (v.agent_id.as_str(), v.origin.as_str(), v.status.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "config", "online"),
                ("b", "config", "online"),
                ("gone", "removed", "online")
            ]
        );

        let later = super::views(&config, &registry, records, now + 1);
        assert_eq!(
            (later[0].online, later[0].status.as_str()),
            (false, "offline")
        );
        assert!(
            later[1].online,
            "b's interval is 1m, so 3m pass before it is offline"
        );

        let none = super::views(&config, &registry, Vec::new(), now);
        assert_eq!(none[0].status, "never-seen");
        assert!(!none[0].online);

        let table = render_table(&later);
        let line_a = table.lines().nth(1).ok_or("no row for a")?;
        assert!(
            line_a.contains("OFFLINE") && line_a.contains("(Ready)"),
            "{table}"
        );
        assert!(table.contains("0123456789ab"), "{table}");

        // A refused assignment gets its own row under the agent's sources, with the agent's reason.
        let mut refusing = record("a", now);
        refusing.heartbeat.assignment_error = Some(outpost_proto::wire::AssignmentError {
            generation: 3,
            kind: outpost_proto::wire::RefusalKind::NameClash,
            reason: "source \"platform\" clashes\nsecond line".into(),
        });
        let views = super::views(&config, &registry, vec![refusing], now);
        assert_eq!(
            views[0].assignment_error.as_ref().map(|e| e.generation),
            Some(3)
        );
        let table = render_table(&views);
        let refused = table
            .lines()
            .find(|l| l.contains("refused 3"))
            .ok_or("no refusal row")?;
        assert!(
            refused.contains("name_clash") && refused.contains("source \"platform\" clashes"),
            "{table}"
        );
        assert!(!table.contains("second line"), "{table}");
        Ok(())
    }

    #[test]
    fn wildcard_listen_is_dialled_on_loopback() -> Result<(), std::net::AddrParseError> {
        assert_eq!(
            dial_addr("0.0.0.0:8443".parse()?),
            "127.0.0.1:8443".parse()?
        );
        assert_eq!(dial_addr("[::]:1".parse()?), "[::1]:1".parse()?);
        assert_eq!(dial_addr("10.0.0.1:1".parse()?), "10.0.0.1:1".parse()?);
        Ok(())
    }
}
