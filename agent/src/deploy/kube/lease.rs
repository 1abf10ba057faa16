//! Leader election on a coordination.k8s.io Lease, so that of several replicas (a DaemonSet on three nodes) only
//! one applies. The others keep fetching, so a takeover applies at once.
//!
//! Expiry is judged by our own clock: a lease is free when its record has not changed for `duration` since *we*
//! first saw it, which is immune to clock skew between nodes (client-go does the same). A leader that cannot renew
//! for `renew_deadline` (shorter than `duration`) stops applying before anyone else may take over.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::client::Cluster;

/// Even a very short renew deadline does not make replicas ask the API server more often than this.
const MIN_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Who we are in `holderIdentity`: unique per replica.
    pub identity: String,
    pub duration: Duration,
    pub renew_deadline: Duration,
}

impl LeaseSettings {
    /// How often to try: leaders renew well inside the deadline, followers look at the same pace.
    fn retry(&self) -> Duration {
        (self.renew_deadline / 4).max(MIN_RETRY)
    }

    fn path(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
            self.namespace, self.name
        )
    }
}

/// Whether this replica may apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    Leader,
    /// Another replica holds the lease.
    Follower,
    /// The lease could not be read or written (the API server is unreachable, or RBAC forbids leases): the reason.
    Unknown(String),
}

/// The last record we saw and when we first saw it.
struct Observed {
    record: String,
    since: Instant,
}

/// Runs until shutdown, keeping `leader` true exactly while we hold the lease. Releases it on shutdown so a
/// successor does not wait for it to expire.
pub async fn run(
    cluster: Arc<Cluster>,
    settings: LeaseSettings,
    leader: watch::Sender<Leadership>,
    mut shutdown: watch::Receiver<bool>,
    mut first_round: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut observed: Option<Observed> = None;
    let mut renewed: Option<Instant> = None;
    loop {
        let leading = *leader.borrow() == Leadership::Leader;
        match attempt(&cluster, &settings, &mut observed).await {
            Ok(true) => {
                renewed = Some(Instant::now());
                if !leading {
                    tracing::info!(lease = %settings.name, identity = %settings.identity, "became the leader: this replica applies");
                    let _ = leader.send(Leadership::Leader);
                }
            }
            Ok(false) => {
                if leading {
                    tracing::warn!(lease = %settings.name, "lost the lease to another replica: no longer applying");
                }
                leader.send_if_modified(|l| replace(l, Leadership::Follower));
            }
            Err(message) => {
                let lapsed = renewed.is_none_or(|t| t.elapsed() >= settings.renew_deadline);
                if leading && !lapsed {
                    tracing::debug!(lease = %settings.name, "lease renewal failed, retrying: {message}");
                } else {
                    if leading {
                        tracing::warn!(lease = %settings.name, "cannot renew the lease ({message}): no longer applying");
                    }
                    let reason = format!(
                        "leader lease {}/{}: {message}",
                        settings.namespace, settings.name
                    );
                    leader.send_if_modified(|l| replace(l, Leadership::Unknown(reason)));
                }
            }
        }
        if let Some(tx) = first_round.take() {
            let _ = tx.send(());
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.retry()) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() == Leadership::Leader {
        let _ = leader.send(Leadership::Follower);
        release(&cluster, &settings).await;
    }
}

/// Sets `slot` to `value`; true when that changed it (so watchers wake only on a change).
fn replace(slot: &mut Leadership, value: Leadership) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

/// Why a round could not read or write the lease.
#[derive(Debug, thiserror::Error)]
enum LeaseError {
    /// The API server answered with an error (RBAC, a webhook, ...).
    #[error("{}", .0.describe())]
    Refused(super::client::ApiFailure),
    #[error(transparent)]
    Unreachable(#[from] super::KubeError),
}

impl From<Result<super::client::ApiFailure, super::KubeError>> for LeaseError {
    fn from(failure: Result<super::client::ApiFailure, super::KubeError>) -> Self {
        match failure {
            Ok(f) => LeaseError::Refused(f),
            Err(e) => LeaseError::Unreachable(e),
        }
    }
}

/// One round: create, renew or take over. `Ok(true)` when we hold the lease afterwards.
async fn attempt(
    cluster: &Cluster,
    s: &LeaseSettings,
    observed: &mut Option<Observed>,
) -> Result<bool, LeaseError> {
    let now = micro_time();
    let current = match cluster
        .request(Method::GET, &s.path(), None, None, None)
        .await
    {
        Ok(a) => a.body,
        Err(Ok(f)) if f.code == 404 => {
            let body = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {"holderIdentity": s.identity, "leaseDurationSeconds": s.duration.as_secs().max(1),
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
            });
            let collection = format!(
                "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
                s.namespace
            );
            return write(cluster, Method::POST, &collection, &body).await;
        }
        Err(failure) => return Err(failure.into()),
    };
    let spec = current.get("spec").cloned().unwrap_or(Value::Null);
    let holder = spec
        .get("holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or("");
    let record = format!(
        "{holder}|{}",
        spec.get("renewTime").and_then(Value::as_str).unwrap_or("")
    );
    let duration = spec
        .get("leaseDurationSeconds")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(s.duration);
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed {
            record,
            since: Instant::now(),
        });
    }
    let expired = observed
        .as_ref()
        .is_some_and(|o| o.since.elapsed() >= duration);
    let ours = holder == s.identity;
    if !(ours || holder.is_empty() || expired) {
        return Ok(false);
    }
    let mut lease = current.clone();
    let transitions = spec
        .get("leaseTransitions")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    lease["spec"] = json!({
        "holderIdentity": s.identity,
        "leaseDurationSeconds": s.duration.as_secs().max(1),
        "acquireTime": if ours { spec.get("acquireTime").cloned().unwrap_or(json!(now)) } else { json!(now) },
        "renewTime": now,
        "leaseTransitions": if ours { transitions } else { transitions + 1 },
    });
    write(cluster, Method::PUT, &s.path(), &lease).await
}

/// Creates or updates the lease. `Ok(false)` on 409: another replica wrote it first (it exists already, or its
/// resourceVersion moved), so that replica won this round.
async fn write(
    cluster: &Cluster,
    method: Method,
    path: &str,
    lease: &Value,
) -> Result<bool, LeaseError> {
    match cluster
        .request(method, path, Some("application/json"), None, Some(lease))
        .await
    {
        Ok(_) => Ok(true),
        Err(Ok(f)) if f.code == 409 => Ok(false),
        Err(failure) => Err(failure.into()),
    }
}

/// Gives the lease up by clearing the holder, so a successor takes over at its next try.
async fn release(cluster: &Cluster, s: &LeaseSettings) {
    let Ok(answer) = cluster
        .request(Method::GET, &s.path(), None, None, None)
        .await
    else {
        return;
    };
    let mut lease = answer.body;
    if lease
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        != Some(s.identity.as_str())
    {
        return;
    }
    lease["spec"]["holderIdentity"] = Value::Null;
    lease["spec"]["leaseDurationSeconds"] = json!(1);
    lease["spec"]["renewTime"] = json!(micro_time());
    match write(cluster, Method::PUT, &s.path(), &lease).await {
        Ok(true) => tracing::info!(lease = %s.name, "released the lease"),
        _ => tracing::warn!(lease = %s.name, "could not release the lease; it expires on its own"),
    }
}

/// Kubernetes MicroTime: RFC 3339 with microseconds.
fn micro_time() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = outpost_proto::wire::format_timestamp(now.as_secs() as i64)
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    format!("{}.{:06}Z", secs.trim_end_matches('Z'), now.subsec_micros())
}

#[cfg(test)]
mod tests {
    #[test]
    fn micro_time_has_microseconds() {
        let t = super::micro_time();
        assert_eq!(t.len(), "2026-11-27T20:00:00.000000Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.contains('.'));
    }
}
