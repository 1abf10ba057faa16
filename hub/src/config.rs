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

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_proto::keys::PublicKey;
use outpost_proto::signed::Freshness;
use outpost_proto::wire::{Assignment, SourceSpec, MAX_BODY_BYTES};

use crate::access::{Access, Credential, Role};
use crate::assign::{AssignmentRule, Assignments};
use crate::backend::config::{RawStore, StoreConfig};
use serde::Deserialize;

/// Where `outpost-hub` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/outpost/hub.toml";
const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
const DEFAULT_STATE_DIR: &str = "/var/lib/outpost-hub";
/// The agent's own default (DESIGN.md § Config), so an agent that sets nothing is judged fairly.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: String,
    token_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    public_key: String,
    heartbeat_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssignment {
    agents: Vec<String>,
    generation: u64,
    #[serde(default, rename = "source")]
    sources: Vec<SourceSpec>,
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
        Ok(Config {
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

    fn access(
        &self,
        public_read: bool,
        readers: Vec<RawCredential>,
        admins: Vec<RawCredential>,
    ) -> Result<Access, ConfigError> {
        let mut credentials: Vec<Credential> = Vec::new();
        let tables = [(Role::Read, readers), (Role::Admin, admins)];
        for (role, raw) in tables {
            for (index, entry) in raw.into_iter().enumerate() {
                let key = |name: &str| format!("{}[{index}].{name}", role.table());
                if entry.name.trim().is_empty() || entry.name.chars().any(char::is_control) {
                    return Err(self.invalid(
                        key("name"),
                        "must be a short printable name for the log (who holds this credential)",
                    ));
                }
                let Some(token_sha256) = crate::access::parse_sha256(&entry.token_sha256) else {
                    return Err(self.invalid(
                        key("token_sha256"),
                        "is not 64 hex digits; paste what `outpost-hub credential create` printed (the hash, never the token itself)",
                    ));
                };
                if credentials.iter().any(|c| c.token_sha256 == token_sha256) {
                    return Err(self.invalid(
                        key("token_sha256"),
                        "is listed twice; give every credential its own token",
                    ));
                }
                credentials.push(Credential {
                    name: entry.name,
                    role,
                    token_sha256,
                });
            }
        }
        Ok(Access {
            public_read,
            credentials,
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

    fn agents(&self, raw: Vec<RawAgent>) -> Result<Vec<AgentEntry>, ConfigError> {
        let mut ids = HashSet::new();
        let mut fingerprints = HashSet::new();
        let mut agents = Vec::with_capacity(raw.len());
        for (index, agent) in raw.into_iter().enumerate() {
            let key = |name: &str| format!("agent[{index}].{name}");
            if !is_agent_id(&agent.id) {
                return Err(self.invalid(
                    key("id"),
                    format!("= {:?} is not an agent id; use 1-253 letters, digits, '.', '_' or '-' (the agent's [agent] id)", agent.id),
                ));
            }
            if !ids.insert(agent.id.clone()) {
                return Err(self.invalid(
                    key("id"),
                    format!("= {:?} is listed twice; list each agent once", agent.id),
                ));
            }
            let public_key: PublicKey = agent.public_key.parse().map_err(|_| {
                self.invalid(
                    key("public_key"),
                    format!("= {:?} is not a public key; copy the `ed25519:...` line that `outpost keygen` prints on the agent", agent.public_key),
                )
            })?;
            if !fingerprints.insert(public_key.fingerprint()) {
                return Err(self.invalid(
                    key("public_key"),
                    format!("of agent {:?} is already the key of another agent; every agent needs its own key (run `outpost keygen` on each)", agent.id),
                ));
            }
            let heartbeat_interval = agent
                .heartbeat_interval
                .map(|text| self.interval(&key("heartbeat_interval"), &text))
                .transpose()?;
            agents.push(AgentEntry {
                id: agent.id,
                public_key,
                heartbeat_interval,
            });
        }
        Ok(agents)
    }

    fn assignments(&self, raw: Vec<RawAssignment>) -> Result<Assignments, ConfigError> {
        let mut rules = Vec::with_capacity(raw.len());
        for (index, table) in raw.into_iter().enumerate() {
            let key = |name: &str| format!("assignment[{index}].{name}");
            if table.agents.is_empty() {
                return Err(self.invalid(
                    key("agents"),
                    "is empty; list agent ids, or [\"*\"] for every agent",
                ));
            }
            for agent in &table.agents {
                if agent != "*" && !is_agent_id(agent) {
                    return Err(self.invalid(
                        key("agents"),
                        format!("contains {agent:?}, which is neither an agent id nor \"*\""),
                    ));
                }
            }
            let assignment = Assignment::new(table.generation, table.sources);
            assignment.validate().map_err(|e| {
                self.invalid(
                    format!("assignment[{index}]"),
                    format!("is not a valid assignment: {e}"),
                )
            })?;
            rules.push(AssignmentRule {
                agents: table.agents,
                assignment,
            });
        }
        Assignments::new(rules).map_err(|clash| {
            self.invalid(
                format!("assignment[{}].generation", clash.second),
                clash.to_string(),
            )
        })
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
mod tests {
    use super::*;

    const KEY_A: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const KEY_B: &str = "ed25519:Pcgey5ND1cgYMtUHz9oIMGbMfgf1dH0UuqKiChqCaIM=";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/outpost/hub.toml"))
    }

    fn problem(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("config accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_and_relative_paths() -> Result<(), ConfigError> {
        let config = parse("state_dir = \"state\"\nkey_file = \"keys/hub.key\"\n")?;
        assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.state_dir, Path::new("/etc/outpost/state"));
        assert_eq!(config.key_file, Path::new("/etc/outpost/keys/hub.key"));
        assert_eq!(config.max_body, MAX_BODY_BYTES);
        assert_eq!(config.freshness, Freshness::default());
        assert_eq!(config.heartbeat_interval, Duration::from_secs(30));
        Ok(())
    }

    #[test]
    fn unknown_keys_are_named() {
        let message = problem("listen = \"127.0.0.1:1\"\nlisten_port = 5\n");
        assert!(message.contains("listen_port"), "{message}");
        let message = problem("[[agent]]\nid = \"a\"\npublic_key = \"x\"\ncolor = 1\n");
        assert!(message.contains("color"), "{message}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let message = problem("listen = \"0.0.0.0:8443\"\n");
        assert!(
            message.contains("`listen`") && message.contains("[tls]"),
            "{message}"
        );
        assert!(parse("listen = \"[::1]:8443\"\n").is_ok());
        let with_tls =
            "listen = \"0.0.0.0:8443\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
        assert!(parse(with_tls).is_ok());
        let message = problem("listen = \"localhost:8443\"\n");
        assert!(message.contains("not an IP address"), "{message}");
    }

    #[test]
    fn agents_are_checked() {
        let message = problem(&format!(
            "[[agent]]\nid = \"a b\"\npublic_key = \"{KEY_A}\"\n"
        ));
        assert!(message.contains("agent[0].id"), "{message}");
        let message = problem("[[agent]]\nid = \"a\"\npublic_key = \"ssh-ed25519 AAAA\"\n");
        assert!(
            message.contains("agent[0].public_key") && message.contains("outpost keygen"),
            "{message}"
        );
        let twice = format!("[[agent]]\nid = \"a\"\npublic_key = \"{KEY_A}\"\n[[agent]]\nid = \"b\"\npublic_key = \"{KEY_A}\"\n");
        assert!(problem(&twice).contains("agent[1].public_key"));
        let both = format!("[[agent]]\nid = \"a\"\npublic_key = \"{KEY_A}\"\nheartbeat_interval = \"10s\"\n[[agent]]\nid = \"b\"\npublic_key = \"{KEY_B}\"\n");
        let config = parse(&both).map_err(|e| e.to_string());
        assert_eq!(
            config.as_ref().map(|c| c.heartbeat_interval_of("a")),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            config.as_ref().map(|c| c.heartbeat_interval_of("b")),
            Ok(Duration::from_secs(30))
        );
    }

    #[test]
    fn assignments_pick_the_highest_generation() -> Result<(), ConfigError> {
        let text = r#"
[[assignment]]
agents = ["*"]
generation = 3
[[assignment.source]]
name = "platform"
url = "https://git.example.com/platform.git"
branch = "main"
target = "kubernetes"

[[assignment]]
agents = ["store-042"]
generation = 3
[[assignment.source]]
name = "special"
url = "https://git.example.com/special.git"
tag = "v1"
target = "directory:/srv/outpost"

[[assignment]]
agents = ["store-043"]
generation = 2
"#;
        let config = parse(text)?;
        let name = |id: &str| {
            config
                .assignments
                .for_agent(id)
                .map(|a| (a.generation, a.sources.first().map(|s| s.name.clone())))
        };
        assert_eq!(name("store-042"), Some((3, Some("special".into()))));
        assert_eq!(name("store-043"), Some((3, Some("platform".into()))));
        assert_eq!(name("other"), Some((3, Some("platform".into()))));
        let none = parse("")?;
        assert!(none.assignments.for_agent("store-042").is_none());
        Ok(())
    }

    #[test]
    fn assignments_are_validated() {
        let secret = "[[assignment]]\nagents = [\"*\"]\ngeneration = 1\n[[assignment.source]]\nname = \"a\"\nurl = \"https://u:p@h/r\"\nbranch = \"main\"\ntarget = \"kubernetes\"\n";
        let message = problem(secret);
        assert!(
            message.contains("assignment[0]") && message.contains("password"),
            "{message}"
        );
        let token = "[[assignment]]\nagents = [\"*\"]\ngeneration = 1\n[[assignment.source]]\nname = \"a\"\nurl = \"https://h/r\"\nbranch = \"main\"\ntarget = \"kubernetes\"\ntoken = \"x\"\n";
        assert!(problem(token).contains("token"));
        let zero = "[[assignment]]\nagents = [\"*\"]\ngeneration = 0\n";
        assert!(problem(zero).contains("generation"));
        let clash = "[[assignment]]\nagents = [\"a\", \"b\"]\ngeneration = 4\n[[assignment]]\nagents = [\"b\"]\ngeneration = 4\n";
        let message = problem(clash);
        assert!(
            message.contains("assignment[1].generation") && message.contains("\"b\""),
            "{message}"
        );
        assert!(problem("[[assignment]]\nagents = []\ngeneration = 1\n")
            .contains("assignment[0].agents"));
    }

    #[test]
    fn names_are_host_and_port() -> Result<(), ConfigError> {
        assert_eq!(parse("")?.names, None);
        let config = parse("names = [\"hub.example.com:8443\", \"hub.example.com\"]\n")?;
        assert_eq!(
            config.names,
            Some(vec![
                "hub.example.com:8443".into(),
                "hub.example.com".into()
            ])
        );
        let message = problem("names = [\"https://hub.example.com\"]\n");
        assert!(message.contains("names[0]"), "{message}");
        assert!(problem("names = []\n").contains("`names` is empty"));
        Ok(())
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "5", "m", "5 minutes", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("2048"), Some(2048));
        assert_eq!(parse_size("1GiB"), None);
        assert_eq!(parse_size("MiB"), None);
        assert!(problem("max_body = \"2MiB\"\n").contains("max_body"));
        assert!(problem("freshness = \"2h\"\n").contains("freshness"));
    }
}
