//! The hub's config file (`hub.toml`) turned into a validated [`Config`].
//!
//! Invariants, checked once here so the rest of the hub can rely on them:
//! - unknown keys are errors, and every error names the file, the key and the fix;
//! - relative paths are resolved against the config file's folder, so the hub behaves the same whatever
//!   directory it was started from;
//! - plain HTTP is only ever served on a loopback address: heartbeats are signed, but enrollment tokens
//!   are secrets and must not cross a network in the clear;
//! - every `[[assignment]]` is a valid `outpost.assignment/v1` body, and no agent can match two of them with
//!   the same generation (the agent would see two different "generation N" and accept whichever came first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_proto::keys::PublicKey;
use outpost_proto::signed::Freshness;
use outpost_proto::wire::MAX_BODY_BYTES;

use crate::access::Access;
use crate::assign::Assignments;
use crate::backend::config::{RawStore, StoreConfig};
use serde::Deserialize;

mod tables;
use tables::{RawAgent, RawAssignment, RawCredential};

/// Where `outpost-hub` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/outpost/hub.toml";
const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
const DEFAULT_STATE_DIR: &str = "/var/lib/outpost-hub";
/// The agent's own default (DESIGN.md § Config), so an agent that sets nothing is judged fairly.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Rollouts are stepped at least this often (heartbeats wake the driver sooner).
const DEFAULT_ROLLOUT_INTERVAL: Duration = Duration::from_secs(5);
/// ±5 minutes, as issue 4 asks of the hub.
const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);
/// Enough to look back over an hour of 30 s heartbeats without letting one agent grow the store unbounded.
const DEFAULT_HISTORY: usize = 120;
const MAX_HISTORY: usize = 100_000;
/// Beyond an hour, a captured request stays replayable for too long to call the window a protection.
const MAX_FRESHNESS: Duration = Duration::from_secs(3600);

/// Why the config cannot be used. Each message names the file, the key and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the hub config {path}: {source}; pass the right file with --config")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hub config {path} is not valid: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("hub config {path}: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// The hub's validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (for messages).
    pub path: PathBuf,
    pub listen: SocketAddr,
    /// The `host[:port]` names heartbeats must be signed for (`@authority`); `None` for the defaults of
    /// [`crate::authority::Authorities::defaults`].
    pub names: Option<Vec<String>>,
    pub tls: Option<TlsFiles>,
    /// The hub's Ed25519 PKCS#8 key, which signs every reply; created if missing.
    pub key_file: PathBuf,
    /// The sled store: agents' last heartbeats, histories, enrollments, used tokens.
    pub state_dir: PathBuf,
    /// Agents listed in the config; enrolled agents come from the store.
    pub agents: Vec<AgentEntry>,
    pub bootstrap_token_file: Option<PathBuf>,
    pub assignments: Assignments,
    /// The largest heartbeat body accepted, in bytes.
    pub max_body: usize,
    pub freshness: Freshness,
    /// The interval assumed for agents that do not set their own.
    pub heartbeat_interval: Duration,
    /// How many heartbeats are kept per agent.
    pub history: usize,
    /// Who may read the fleet and use the admin API ([`crate::access`]).
    pub access: Access,
    /// Where the hub keeps its records (`[store]`, [`crate::backend`]).
    pub store: StoreConfig,
    /// How often the rollout driver steps active rollouts when no heartbeat wakes it (issue 19).
    pub rollout_interval: Duration,
}

/// The certificate chain and private key the hub serves HTTPS with (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// An `[[agent]]` table: an agent the operator enrolled by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    pub id: String,
    pub public_key: PublicKey,
    /// The agent's `heartbeat_interval`, when it differs from the hub-wide one.
    pub heartbeat_interval: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    names: Option<Vec<String>>,
    tls: Option<RawTls>,
    key_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    #[serde(default, rename = "agent")]
    agents: Vec<RawAgent>,
    bootstrap_token_file: Option<PathBuf>,
    #[serde(default, rename = "assignment")]
    assignments: Vec<RawAssignment>,
    max_body: Option<String>,
    freshness: Option<String>,
    heartbeat_interval: Option<String>,
    history: Option<usize>,
    public_read: Option<bool>,
    #[serde(default, rename = "reader")]
    readers: Vec<RawCredential>,
    #[serde(default, rename = "admin")]
    admins: Vec<RawCredential>,
    store: Option<RawStore>,
    rollout_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Checker { path }.build(raw)
    }

    /// The heartbeat interval the hub expects from `agent_id`.
    pub fn heartbeat_interval_of(&self, agent_id: &str) -> Duration {
        self.agents
            .iter()
            .find(|a| a.id == agent_id)
            .and_then(|a| a.heartbeat_interval)
            .unwrap_or(self.heartbeat_interval)
    }
}

/// Builds errors that name the file, and resolves paths against its folder.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn resolve(&self, file: PathBuf) -> PathBuf {
        if file.is_absolute() {
            return file;
        }
        match self.path.parent() {
            Some(dir) => dir.join(file),
            None => file,
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let tls = raw.tls.map(|t| TlsFiles {
            cert_file: self.resolve(t.cert_file),
            key_file: self.resolve(t.key_file),
        });
        let listen = self.listen(raw.listen.as_deref(), tls.is_some())?;
        let state_dir = self.resolve(
            raw.state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        );
        let key_file = match raw.key_file {
            Some(file) => self.resolve(file),
            None => state_dir.join("hub.key"),
        };
        let heartbeat_interval = match raw.heartbeat_interval {
            Some(text) => self.interval("heartbeat_interval", &text)?,
            None => DEFAULT_HEARTBEAT_INTERVAL,
        };
        let agents = self.agents(raw.agents)?;
        let assignments = self.assignments(raw.assignments)?;
        let max_body = match raw.max_body {
            Some(text) => self.max_body(&text)?,
            None => MAX_BODY_BYTES,
        };
        let freshness = match raw.freshness {
            Some(text) => self.freshness(&text)?,
            None => DEFAULT_FRESHNESS,
        };
        let history = raw.history.unwrap_or(DEFAULT_HISTORY);
        if !(1..=MAX_HISTORY).contains(&history) {
            return Err(self.invalid(
                "history",
                format!("= {history} is out of range; keep between 1 and {MAX_HISTORY} heartbeats per agent"),
            ));
        }
        let names = raw.names.map(|names| self.names(names)).transpose()?;
        let access = self.access(raw.public_read.unwrap_or(false), raw.readers, raw.admins)?;
        let store = raw
            .store
            .unwrap_or_default()
            .check(|file| self.resolve(file))
            .map_err(|(key, problem)| self.invalid(key, problem))?;
        let rollout_interval = match raw.rollout_interval {
            Some(text) => self.interval("rollout_interval", &text)?,
            None => DEFAULT_ROLLOUT_INTERVAL,
        };
        Ok(Config {
            rollout_interval,
            path: self.path.to_owned(),
            listen,
            names,
            tls,
            key_file,
            state_dir,
            agents,
            bootstrap_token_file: raw.bootstrap_token_file.map(|f| self.resolve(f)),
            assignments,
            max_body,
            freshness: Freshness {
                max_age: freshness.as_secs(),
                max_skew: freshness.as_secs(),
            },
            heartbeat_interval,
            history,
            access,
            store,
        })
    }

    fn listen(&self, text: Option<&str>, tls: bool) -> Result<SocketAddr, ConfigError> {
        let text = text.unwrap_or(DEFAULT_LISTEN);
        let addr: SocketAddr = text.parse().map_err(|_| {
            self.invalid(
                "listen",
                format!("= {text:?} is not an IP address and port; write it like \"127.0.0.1:8443\" or \"[::]:8443\" (host names are not resolved)"),
            )
        })?;
        if !tls && !addr.ip().is_loopback() {
            return Err(self.invalid(
                "listen",
                format!("= {text:?} is not a loopback address, and there is no [tls] table: plain HTTP would send enrollment tokens across the network unencrypted; add [tls] with cert_file and key_file, or listen on 127.0.0.1 behind a TLS-terminating proxy"),
            ));
        }
        Ok(addr)
    }

    fn names(&self, names: Vec<String>) -> Result<Vec<String>, ConfigError> {
        if names.is_empty() {
            return Err(self.invalid(
                "names",
                "is empty, so no heartbeat could ever be accepted; list the host[:port] agents use in [upstream] url, or remove `names` for the defaults (listen address and certificate names)",
            ));
        }
        for (index, name) in names.iter().enumerate() {
            if !crate::authority::is_authority(name) {
                return Err(self.invalid(
                    format!("names[{index}]"),
                    format!("= {name:?} is not a host or host:port; write it as agents have it in [upstream] url without the scheme, like \"hub.example.com:8443\""),
                ));
            }
        }
        Ok(names)
    }

    fn interval(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        match parse_duration(text) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(self.invalid(
                key,
                format!("= {text:?} is not a duration; write it like \"30s\", \"5m\" or \"1h30m\" (units ms, s, m, h, d), above zero"),
            )),
        }
    }

    fn freshness(&self, text: &str) -> Result<Duration, ConfigError> {
        let freshness = self.interval("freshness", text)?;
        if freshness < Duration::from_secs(1) || freshness > MAX_FRESHNESS {
            return Err(self.invalid(
                "freshness",
                format!(
                    "= {text:?} is out of range; use between 1s and 1h (\"5m\" is the default)"
                ),
            ));
        }
        Ok(freshness)
    }

    fn max_body(&self, text: &str) -> Result<usize, ConfigError> {
        match parse_size(text) {
            Some(n) if n >= 1024 && n <= MAX_BODY_BYTES as u64 => Ok(n as usize),
            _ => Err(self.invalid(
                "max_body",
                format!("= {text:?} is not a size between 1KiB and 1MiB (the wire format's limit); write it like \"256KiB\" or \"1MiB\""),
            )),
        }
    }
}

/// Agent ids as the heartbeat wire format allows them (a host name fits).
pub fn is_agent_id(text: &str) -> bool {
    (1..=253).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The same duration syntax as the agent's config.
pub use outpost_proto::units::parse_duration;

/// Sizes like `1MiB`, `256KiB`, `64KB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = text[..digits].parse().ok()?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests;
