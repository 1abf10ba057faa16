//! `[kubernetes]`: how the agent reaches its cluster and shares it with other replicas. Every setting has a
//! default, so a source with `target = "kubernetes"` works without the section (in-cluster, `KUBECONFIG`, or
//! `~/.kube/config`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{parse_opt_duration, relative_to};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// `None`: in-cluster, then `KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub field_manager: String,
    /// Objects applied at once within one stage.
    pub concurrency: usize,
    /// Per request; an edge API server on a busy node can be slow, but never this slow.
    pub request_timeout: Duration,
    pub leader_election: bool,
    /// Default: the pod's namespace in a cluster, else `default`.
    pub lease_namespace: Option<String>,
    /// `None`: derived from the agent id (`lease_name`), so distinct agents never contend for one lease and
    /// replicas of one agent (same id) do.
    pub lease_name: Option<String>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
}

impl KubernetesConfig {
    /// The leader lease of agent `agent_id`: `lease_name` when set, else `outpost-leader-<id>`. An id that is not
    /// a DNS label as it stands (upper case, `_`, `.`, too long) is lowered and cut, with a hash of the whole id
    /// appended so that two ids never map to one lease.
    pub fn lease_name(&self, agent_id: &str) -> String {
        if let Some(name) = &self.lease_name {
            return name.clone();
        }
        const PREFIX: &str = "outpost-leader-";
        let plain = agent_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if plain && PREFIX.len() + agent_id.len() <= 63 && !agent_id.ends_with('-') {
            return format!("{PREFIX}{agent_id}");
        }
        let readable: String = agent_id
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .take(30)
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, agent_id.as_bytes());
        let hash: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{PREFIX}{}-{hash}", readable.trim_matches('-'))
    }
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            kubeconfig: None,
            context: None,
            field_manager: "outpost".into(),
            concurrency: 8,
            request_timeout: Duration::from_secs(30),
            leader_election: true,
            lease_namespace: None,
            lease_name: None,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    field_manager: Option<String>,
    concurrency: Option<usize>,
    request_timeout: Option<String>,
    leader_election: Option<bool>,
    lease_namespace: Option<String>,
    lease_name: Option<String>,
    lease_duration: Option<String>,
    renew_deadline: Option<String>,
}

pub(super) fn validate(
    raw: RawKubernetes,
    config_path: &Path,
) -> Result<KubernetesConfig, super::Invalid> {
    let d = KubernetesConfig::default();
    let field_manager = raw.field_manager.unwrap_or(d.field_manager);
    if field_manager.is_empty() || field_manager.len() > 128 {
        return Err(
            "[kubernetes] field_manager: must be 1 to 128 characters, e.g. \"outpost\"".into(),
        );
    }
    let concurrency = raw.concurrency.unwrap_or(d.concurrency);
    if !(1..=64).contains(&concurrency) {
        return Err(format!("[kubernetes] concurrency = {concurrency}: use 1 to 64").into());
    }
    let duration =
        |key: &str, v: Option<String>, default: Duration| -> Result<Duration, super::Invalid> {
            let t = parse_opt_duration(v.as_deref(), default)
                .map_err(|m| format!("[kubernetes] {key}: {m}"))?;
            if t.is_zero() {
                return Err(format!("[kubernetes] {key}: must be more than 0s").into());
            }
            Ok(t)
        };
    let request_timeout = duration("request_timeout", raw.request_timeout, d.request_timeout)?;
    let lease_duration = duration("lease_duration", raw.lease_duration, d.lease_duration)?;
    let renew_deadline = duration("renew_deadline", raw.renew_deadline, d.renew_deadline)?;
    if renew_deadline >= lease_duration {
        return Err(format!(
            "[kubernetes] renew_deadline ({}s) must be shorter than lease_duration ({}s), or two replicas could apply at once",
            renew_deadline.as_secs(),
            lease_duration.as_secs()
        ).into());
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if let Some(lease_name) = &raw.lease_name {
        if !name_ok(lease_name) {
            return Err(format!(
                "[kubernetes] lease_name = {lease_name:?}: use a DNS label such as \"outpost-leader\""
            ).into());
        }
    }
    if let Some(ns) = &raw.lease_namespace {
        if !name_ok(ns) {
            return Err(format!(
                "[kubernetes] lease_namespace = {ns:?}: use a namespace name such as \"outpost\""
            )
            .into());
        }
    }
    Ok(KubernetesConfig {
        kubeconfig: raw.kubeconfig.map(|p| relative_to(config_path, &p)),
        context: raw.context,
        field_manager,
        concurrency,
        request_timeout,
        leader_election: raw.leader_election.unwrap_or(d.leader_election),
        lease_namespace: raw.lease_namespace,
        lease_name: raw.lease_name,
        lease_duration,
        renew_deadline,
    })
}
