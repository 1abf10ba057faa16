//! `[agent]` and `[upstream]`: who this agent is, where it keeps its state, the bounds on what a source may hand it,
//! and where its heartbeats go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::source::check_var_name;
use super::{parse_opt_duration, parse_size, relative_to, Invalid};

/// `[upstream] heartbeat_interval` when the file leaves it out, and the shortest it may be.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Where heartbeats go, and the key the hub's replies must be signed with.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Base URL, without a trailing `/`.
    pub url: String,
    pub hub_key: outpost_proto::keys::PublicKey,
    pub heartbeat_interval: Duration,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub id: String,
    pub state_dir: PathBuf,
    pub vars: BTreeMap<String, String>,
    pub limits: Limits,
    /// How many applied revisions keep their bundle in the store (for rollback and `render --revision`).
    pub keep_revisions: usize,
    /// Maintenance-window defaults for every source.
    pub operations: super::AgentOperations,
}

/// Bounds on what a Git source may hand us; an edge box must not be taken down by one bad commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_objects: usize,
    /// Bytes one fetch may bring into a source's Git cache; the transfer is stopped once it grows past this.
    pub max_pack_size: u64,
    /// Bytes a source's Git cache may hold after a fetch, even as a fresh shallow copy.
    pub max_repo_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 8 * 1024 * 1024,
            max_objects: 10_000,
            max_pack_size: 256 * 1024 * 1024,
            max_repo_size: 1024 * 1024 * 1024,
        }
    }
}

impl AgentConfig {
    /// Where the agent's Ed25519 key lives: beside the store, so one state directory is one identity.
    pub fn key_path(&self) -> PathBuf {
        self.state_dir.join("agent.key")
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    id: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    max_file_size: Option<String>,
    max_objects: Option<usize>,
    max_pack_size: Option<String>,
    max_repo_size: Option<String>,
    keep_revisions: Option<usize>,
    windows: Option<Vec<String>>,
    timezone: Option<String>,
    apply_outside_windows: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    url: String,
    hub_key: String,
    heartbeat_interval: Option<String>,
    ca_file: Option<PathBuf>,
}

pub(super) fn validate_upstream(raw: RawUpstream, config_path: &Path) -> Result<Upstream, Invalid> {
    let url = raw.url.trim_end_matches('/').to_string();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.split('/').nth(2).is_none_or(str::is_empty)
    {
        return Err(format!(
            "[upstream] url = {:?}: write the hub's base URL, e.g. \"https://hub.example.com\"",
            crate::redact::url(&raw.url)
        )
        .into());
    }
    if url.contains('@') {
        return Err("[upstream] url: must not carry credentials; the agent authenticates with its signing key".into());
    }
    let hub_key = raw.hub_key.parse().map_err(|e| {
        format!("[upstream] hub_key = {:?}: {e}; copy the key `outpost-hub serve` prints (\"ed25519:BASE64\")", raw.hub_key)
    })?;
    let heartbeat_interval = parse_opt_duration(
        raw.heartbeat_interval.as_deref(),
        DEFAULT_HEARTBEAT_INTERVAL,
    )
    .map_err(|m| format!("[upstream] heartbeat_interval: {m}"))?;
    if heartbeat_interval < MIN_HEARTBEAT_INTERVAL {
        return Err("[upstream] heartbeat_interval: must be at least 1s".into());
    }
    Ok(Upstream {
        url,
        hub_key,
        heartbeat_interval,
        ca_file: raw.ca_file.map(|p| relative_to(config_path, &p)),
    })
}

pub(super) fn validate_agent(raw: RawAgent, config_path: &Path) -> Result<AgentConfig, Invalid> {
    let id = match raw.id {
        Some(id) => id,
        None => host_name().ok_or_else(|| {
            "[agent] id: not set and the host name cannot be read; set id = \"site-name\""
                .to_string()
        })?,
    };
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "[agent] id = {id:?}: use only letters, digits, '-', '_' and '.', e.g. id = \"store-042\""
        ).into());
    }
    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/outpost"));
    let state_dir = relative_to(config_path, &state_dir);
    let mut limits = Limits::default();
    for (key, value, slot) in [
        (
            "max_file_size",
            raw.max_file_size,
            &mut limits.max_file_size,
        ),
        (
            "max_pack_size",
            raw.max_pack_size,
            &mut limits.max_pack_size,
        ),
        (
            "max_repo_size",
            raw.max_repo_size,
            &mut limits.max_repo_size,
        ),
    ] {
        if let Some(size) = value {
            *slot = parse_size(&size).filter(|n| *n > 0).ok_or_else(|| {
                format!("[agent] {key} = {size:?}: write a size above zero such as \"8MiB\", \"512KiB\" or \"1048576\"")
            })?;
        }
    }
    if let Some(n) = raw.max_objects {
        if n == 0 {
            return Err("[agent] max_objects = 0: must be at least 1".into());
        }
        limits.max_objects = n;
    }
    let keep_revisions = raw.keep_revisions.unwrap_or(3);
    if keep_revisions == 0 {
        return Err("[agent] keep_revisions = 0: must be at least 1 (the last good revision is always kept)".into());
    }
    for key in raw.vars.keys() {
        check_var_name(key).map_err(|m| format!("[agent] vars: {m}"))?;
    }
    let operations =
        super::operations::validate_agent(raw.windows, raw.timezone, raw.apply_outside_windows)?;
    Ok(AgentConfig {
        id,
        state_dir,
        vars: raw.vars,
        limits,
        keep_revisions,
        operations,
    })
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}
