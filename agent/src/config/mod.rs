//! The agent's configuration: a TOML file turned into a validated [`Config`].
//!
//! Everything downstream trusts a `Config`: parsing rejects unknown keys and every validation error names the
//! key, the bad value and what to write instead, because the person reading it is a site operator with a text
//! editor, not a developer with a debugger. Secrets are never part of the config: only paths to files holding
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use units::{parse_duration, parse_size};

mod assigned;
pub use assigned::AssignmentRefused;
mod kubernetes;
mod operations;
pub use operations::{AgentOperations, OutsideWindows, SourceOperations, WindowPolicy};
mod units;
mod verify;

pub use kubernetes::KubernetesConfig;

/// Where the config is read from when neither `--config` nor `OUTPOST_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/outpost/agent.toml";

/// Errors found while reading or validating the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; pass --config PATH or set OUTPOST_CONFIG")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub agent: AgentConfig,
    pub sources: Vec<SourceConfig>,
    pub upstream: Option<Upstream>,
    pub kubernetes: KubernetesConfig,
    /// The generation of the hub assignment merged in (`with_assignment`); 0 for the file alone.
    pub assignment_generation: u64,
    /// Names of the sources that came from that assignment.
    pub assigned_sources: Vec<String>,
}

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
    pub operations: AgentOperations,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    /// A semver range such as `>=1.2.0 <2`: the highest matching tag wins.
    Semver(String),
    Commit(String),
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b}"),
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Semver(s) => write!(f, "semver {s}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Directory(PathBuf),
    Kubernetes,
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Directory(p) => write!(f, "directory:{}", p.display()),
            TargetSpec::Kubernetes => f.write_str("kubernetes"),
        }
    }
}

/// How a directory target lays out a source's files (`layout` in `[[source]]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DirectoryLayout {
    /// `<dir>/<source>.yaml`: what the k3s and RKE2 deploy controllers read.
    #[default]
    File,
    /// `<dir>/<source>/<source>.yaml` and a `kustomization.yaml` naming it: MicroShift applies only folders
    /// with a kustomization.
    Kustomization,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub url: String,
    pub git_ref: GitRef,
    /// Path inside the repository, normalised: no leading or trailing `/`, empty for the root.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub target: TargetSpec,
    /// Directory targets only; `File` for the Kubernetes target.
    pub layout: DirectoryLayout,
    pub prune: bool,
    pub namespace: String,
    pub wait: bool,
    pub rollback: bool,
    pub force: bool,
    pub auth: Auth,
    pub ca_file: Option<PathBuf>,
    pub vars: BTreeMap<String, String>,
    /// `${var}` substitution runs only on sources that opt in (`substitute = true`, or any `vars` of their own),
    /// as Flux runs it only with `postBuild`: manifests full of shell `${X}` and kustomize `$(X)` stay untouched.
    pub substitute: bool,
    /// `[source.verify]` with its key files read; shared because every clone of the config carries it.
    pub verify: Option<std::sync::Arc<crate::source::verify::Policy>>,
    /// SOPS decryption, depends_on, maintenance windows.
    pub operations: SourceOperations,
}

// ---- the file as written -------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    source: Vec<RawSource>,
    kubernetes: Option<kubernetes::RawKubernetes>,
    upstream: Option<RawUpstream>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgent {
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
struct RawSource {
    name: String,
    url: String,
    branch: Option<String>,
    tag: Option<String>,
    semver: Option<String>,
    commit: Option<String>,
    #[serde(default)]
    path: String,
    interval: Option<String>,
    timeout: Option<String>,
    target: Option<String>,
    layout: Option<String>,
    #[serde(default = "yes")]
    prune: bool,
    namespace: Option<String>,
    #[serde(default = "yes")]
    wait: bool,
    #[serde(default = "yes")]
    rollback: bool,
    #[serde(default)]
    force: bool,
    auth: Option<RawAuth>,
    ca_file: Option<PathBuf>,
    verify: Option<verify::RawVerify>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    substitute: Option<bool>,
    decryption: Option<operations::RawDecryption>,
    #[serde(default)]
    depends_on: Vec<String>,
    windows: Option<Vec<String>>,
    timezone: Option<String>,
    apply_outside_windows: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    hub_key: String,
    heartbeat_interval: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    token_file: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ssh_key_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
}

// ---- loading ---------------------------------------------------------------------------------------------------

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Validates config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_message(&e, text),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let kubernetes =
            kubernetes::validate(raw.kubernetes.unwrap_or_default(), path).map_err(invalid)?;
        let upstream = match raw.upstream {
            None => None,
            Some(u) => Some(validate_upstream(u, path).map_err(invalid)?),
        };
        let agent = validate_agent(raw.agent, path).map_err(invalid)?;
        let mut sources: Vec<SourceConfig> = Vec::new();
        for raw_source in raw.source {
            let source = validate_source(raw_source, path, &agent).map_err(invalid)?;
            if sources.iter().any(|s| s.name == source.name) {
                return Err(invalid(format!(
                    "source \"{}\": the name is used twice; give each [[source]] a unique name",
                    source.name
                )));
            }
            sources.push(source);
        }
        operations::check_depends(&sources).map_err(invalid)?;
        Ok(Config {
            path: path.to_owned(),
            agent,
            sources,
            upstream,
            kubernetes,
            assignment_generation: 0,
            assigned_sources: Vec::new(),
        })
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// toml's messages quote the offending line; keep them, on one line, since they already name key and position.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let mut message = e.message().to_string();
    if let Some(span) = e.span() {
        // An operator looks for a line in an editor, not a byte offset.
        let line = text
            .get(..span.start)
            .map_or(0, |before| before.matches('\n').count())
            + 1;
        message = format!("line {line}: {message}");
    }
    if message.contains("unknown field") {
        message.push_str(
            "; remove the key or fix its spelling (see the config reference in the README)",
        );
    }
    message
}

fn validate_upstream(raw: RawUpstream, config_path: &Path) -> Result<Upstream, String> {
    let url = raw.url.trim_end_matches('/').to_string();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.split('/').nth(2).is_none_or(str::is_empty)
    {
        return Err(format!(
            "[upstream] url = {:?}: write the hub's base URL, e.g. \"https://hub.example.com\"",
            crate::redact::url(&raw.url)
        ));
    }
    if url.contains('@') {
        return Err("[upstream] url: must not carry credentials; the agent authenticates with its signing key".into());
    }
    let hub_key = raw.hub_key.parse().map_err(|e| {
        format!("[upstream] hub_key = {:?}: {e}; copy the key `outpost-hub serve` prints (\"ed25519:BASE64\")", raw.hub_key)
    })?;
    let heartbeat_interval =
        parse_opt_duration(raw.heartbeat_interval.as_deref(), Duration::from_secs(30))
            .map_err(|m| format!("[upstream] heartbeat_interval: {m}"))?;
    if heartbeat_interval < Duration::from_secs(1) {
        return Err("[upstream] heartbeat_interval: must be at least 1s".into());
    }
    Ok(Upstream {
        url,
        hub_key,
        heartbeat_interval,
        ca_file: raw.ca_file.map(|p| relative_to(config_path, &p)),
    })
}

fn validate_agent(raw: RawAgent, config_path: &Path) -> Result<AgentConfig, String> {
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
        ));
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
        operations::validate_agent(raw.windows, raw.timezone, raw.apply_outside_windows)?;
    Ok(AgentConfig {
        id,
        state_dir,
        vars: raw.vars,
        limits,
        keep_revisions,
        operations,
    })
}

fn validate_source(
    raw: RawSource,
    config_path: &Path,
    agent: &AgentConfig,
) -> Result<SourceConfig, String> {
    let name = raw.name;
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "source {name:?}: the name must be 1-63 lowercase letters, digits or '-' (it becomes a file name and a label value), e.g. name = \"platform\""
        ));
    }
    let at = |key: &str| format!("source \"{name}\": {key}");

    crate::source::url::check(&raw.url)
        .map_err(|m| format!("{} = {:?}: {m}", at("url"), crate::redact::url(&raw.url)))?;

    let refs: Vec<GitRef> = [
        raw.branch.map(GitRef::Branch),
        raw.tag.map(GitRef::Tag),
        raw.semver.map(GitRef::Semver),
        raw.commit.map(GitRef::Commit),
    ]
    .into_iter()
    .flatten()
    .collect();
    if refs.len() != 1 {
        return Err(format!(
            "source \"{name}\": set exactly one of branch, tag, semver, commit"
        ));
    }
    let git_ref = refs.into_iter().next().expect("checked length");
    match &git_ref {
        GitRef::Branch(b) | GitRef::Tag(b)
            if b.is_empty() || b.contains("..") || b.starts_with('/') =>
        {
            return Err(format!(
                "{}: {b:?} is not a valid ref name",
                at("branch/tag")
            ));
        }
        GitRef::Semver(range) => {
            crate::source::refs::parse_range(range)
                .map_err(|m| format!("{} = {range:?}: {m}", at("semver")))?;
        }
        GitRef::Commit(c) if c.len() != 40 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) => {
            return Err(format!(
                "{} = {c:?}: give the full 40-character commit id",
                at("commit")
            ));
        }
        _ => {}
    }

    let path = normalise_repo_path(&raw.path)
        .map_err(|m| format!("{} = {:?}: {m}", at("path"), raw.path))?;
    let interval = parse_opt_duration(raw.interval.as_deref(), Duration::from_secs(60))
        .map_err(|m| format!("{}: {m}", at("interval")))?;
    if interval < Duration::from_secs(1) {
        return Err(format!("{}: must be at least 1s", at("interval")));
    }
    let timeout = parse_opt_duration(raw.timeout.as_deref(), Duration::from_secs(120))
        .map_err(|m| format!("{}: {m}", at("timeout")))?;
    if timeout.is_zero() {
        return Err(format!("{}: must be more than 0s", at("timeout")));
    }
    let target = match raw.target.as_deref() {
        None => {
            return Err(format!(
                "{}: not set; write target = \"kubernetes\" or \"directory:/path/to/folder\"",
                at("target")
            ))
        }
        Some("kubernetes") => TargetSpec::Kubernetes,
        Some(t) => match t.strip_prefix("directory:") {
            Some(dir) if !dir.is_empty() => {
                TargetSpec::Directory(relative_to(config_path, Path::new(dir)))
            }
            _ => {
                return Err(format!(
                    "{} = {t:?}: write \"kubernetes\" or \"directory:/path/to/folder\"",
                    at("target")
                ))
            }
        },
    };
    let layout = match (raw.layout.as_deref(), &target) {
        (None | Some("file"), _) => DirectoryLayout::File,
        (Some("kustomization"), TargetSpec::Directory(_)) => DirectoryLayout::Kustomization,
        (Some("kustomization"), TargetSpec::Kubernetes) => {
            return Err(format!(
                "{} = \"kustomization\": only a directory target has a layout; remove the key, or set target = \"directory:/etc/microshift/manifests.d\"",
                at("layout")
            ))
        }
        (Some(other), _) => {
            return Err(format!(
                "{} = {other:?}: write \"file\" (<source>.yaml, for k3s and RKE2) or \"kustomization\" (<source>/kustomization.yaml, for MicroShift)",
                at("layout")
            ))
        }
    };
    let verify = match raw.verify {
        None => None,
        Some(v) => Some(std::sync::Arc::new(
            verify::validate(v, &git_ref, config_path)
                .map_err(|m| format!("source \"{name}\": [source.verify] {m}"))?,
        )),
    };
    let namespace = raw.namespace.unwrap_or_else(|| "default".into());
    let auth = match raw.auth {
        None => Auth::default(),
        Some(a) => validate_auth(a, &raw.url, config_path)
            .map_err(|m| format!("source \"{name}\": [source.auth] {m}"))?,
    };
    for key in raw.vars.keys() {
        check_var_name(key).map_err(|m| format!("{}: {m}", at("vars")))?;
    }
    if raw.substitute == Some(false) && !raw.vars.is_empty() {
        return Err(format!(
            "{}: substitute = false but the source sets vars, which only serve substitution; remove one of them",
            at("vars")
        ));
    }
    let substitute = raw.substitute.unwrap_or(!raw.vars.is_empty());
    let operations = operations::validate_source(
        &name,
        operations::RawSourceOperations {
            decryption: raw.decryption,
            depends_on: raw.depends_on,
            windows: raw.windows,
            timezone: raw.timezone,
            apply_outside_windows: raw.apply_outside_windows,
        },
        &agent.operations,
        config_path,
    )?;
    Ok(SourceConfig {
        name,
        url: raw.url,
        git_ref,
        path,
        interval,
        timeout,
        target,
        layout,
        prune: raw.prune,
        namespace,
        wait: raw.wait,
        rollback: raw.rollback,
        force: raw.force,
        auth,
        ca_file: raw.ca_file.map(|p| relative_to(config_path, &p)),
        vars: raw.vars,
        substitute,
        verify,
        operations,
    })
}

fn validate_auth(raw: RawAuth, url: &str, config_path: &Path) -> Result<Auth, String> {
    let rel = |p: Option<PathBuf>| p.map(|p| relative_to(config_path, &p));
    let auth = Auth {
        token_file: rel(raw.token_file),
        username: raw.username,
        password_file: rel(raw.password_file),
        ssh_key_file: rel(raw.ssh_key_file),
        known_hosts_file: rel(raw.known_hosts_file),
    };
    let is_ssh = crate::source::url::is_ssh(url);
    if auth.token_file.is_some() && (auth.username.is_some() || auth.password_file.is_some()) {
        return Err("set either token_file, or username + password_file, not both".into());
    }
    if auth.username.is_some() != auth.password_file.is_some() {
        return Err("username and password_file go together; set both or neither".into());
    }
    if (auth.token_file.is_some() || auth.password_file.is_some()) && is_ssh {
        return Err(
            "token_file and password_file are for https:// URLs; for ssh use ssh_key_file".into(),
        );
    }
    if auth.ssh_key_file.is_some() && !is_ssh {
        return Err("ssh_key_file is only used with ssh:// or user@host:path URLs".into());
    }
    if auth.ssh_key_file.is_some() && auth.known_hosts_file.is_none() {
        return Err(
            "ssh_key_file needs known_hosts_file too, so the server's host key is checked".into(),
        );
    }
    Ok(auth)
}

fn check_var_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "variable name {name:?}: use letters, digits and '_' only"
        ));
    }
    Ok(())
}

/// Relative paths in the config are taken relative to the config file, so a config and its files can move together.
fn relative_to(config_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_owned();
    }
    match config_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_owned(),
    }
}

/// Normalises a path inside the repository; `..` is refused so a source never reads outside its tree.
pub fn normalise_repo_path(p: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err("must not contain '..'; give the folder inside the repository".into())
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

fn parse_opt_duration(text: Option<&str>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(t) => parse_duration(t).ok_or_else(|| {
            format!("{t:?} is not a duration; write e.g. \"30s\", \"5m\", \"1h\" or \"1m30s\"")
        }),
    }
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests;
