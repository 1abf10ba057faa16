//! `[[source]]`: one Git repository path to apply, where to, and how.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{parse_opt_duration, relative_to, verify, AgentConfig, GitRef, Invalid, SemverRange};

/// `interval` and `timeout` when the file leaves them out, and the shortest interval it may set.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
const MIN_INTERVAL: Duration = Duration::from_secs(1);

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
    pub verify: Option<std::sync::Arc<crate::signature::Policy>>,
    /// SOPS decryption, depends_on, maintenance windows.
    pub operations: super::SourceOperations,
}

// ---- the file as written -------------------------------------------------------------------------------------

impl SourceConfig {
    /// The substitution variables of this source: `[agent] vars`, then the source's own (which win), then the
    /// built-ins; `None` when the source does not opt in to substitution (see [`SourceConfig::substitute`]).
    pub fn vars(&self, agent: &AgentConfig) -> Option<BTreeMap<String, String>> {
        if !self.substitute {
            return None;
        }
        let mut vars = agent.vars.clone();
        vars.extend(self.vars.clone());
        vars.insert("OUTPOST_AGENT_ID".into(), agent.id.clone());
        vars.insert("OUTPOST_SOURCE".into(), self.name.clone());
        Some(vars)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
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
    decryption: Option<super::operations::RawDecryption>,
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
pub(super) struct RawAuth {
    token_file: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ssh_key_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
}

pub(super) fn validate_source(
    raw: RawSource,
    config_path: &Path,
    agent: &AgentConfig,
) -> Result<SourceConfig, Invalid> {
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
        ).into());
    }
    let at = |key: &str| format!("source \"{name}\": {key}");

    super::url::check(&raw.url)
        .map_err(|m| format!("{} = {:?}: {m}", at("url"), crate::redact::url(&raw.url)))?;

    let refs: Vec<GitRef> = [
        raw.branch.map(GitRef::Branch),
        raw.tag.map(GitRef::Tag),
        raw.semver
            .map(|range| {
                SemverRange::parse(&range)
                    .map(GitRef::Semver)
                    .map_err(|m| format!("source \"{name}\": semver = {range:?}: {m}"))
            })
            .transpose()?,
        raw.commit.map(GitRef::Commit),
    ]
    .into_iter()
    .flatten()
    .collect();
    if refs.len() != 1 {
        return Err(
            format!("source \"{name}\": set exactly one of branch, tag, semver, commit").into(),
        );
    }
    let git_ref = refs.into_iter().next().expect("checked length");
    match &git_ref {
        GitRef::Branch(b) | GitRef::Tag(b)
            if b.is_empty() || b.contains("..") || b.starts_with('/') =>
        {
            return Err(format!("{}: {b:?} is not a valid ref name", at("branch/tag")).into());
        }
        GitRef::Commit(c) if c.len() != 40 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) => {
            return Err(format!(
                "{} = {c:?}: give the full 40-character commit id",
                at("commit")
            )
            .into());
        }
        _ => {}
    }

    let path = normalise_repo_path(&raw.path)
        .map_err(|m| format!("{} = {:?}: {m}", at("path"), raw.path))?;
    let interval = parse_opt_duration(raw.interval.as_deref(), DEFAULT_INTERVAL)
        .map_err(|m| format!("{}: {m}", at("interval")))?;
    if interval < MIN_INTERVAL {
        return Err(format!("{}: must be at least 1s", at("interval")).into());
    }
    let timeout = parse_opt_duration(raw.timeout.as_deref(), DEFAULT_TIMEOUT)
        .map_err(|m| format!("{}: {m}", at("timeout")))?;
    if timeout.is_zero() {
        return Err(format!("{}: must be more than 0s", at("timeout")).into());
    }
    let target = match raw.target.as_deref() {
        None => {
            return Err(format!(
                "{}: not set; write target = \"kubernetes\" or \"directory:/path/to/folder\"",
                at("target")
            )
            .into())
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
                )
                .into())
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
            ).into())
        }
        (Some(other), _) => {
            return Err(format!(
                "{} = {other:?}: write \"file\" (<source>.yaml, for k3s and RKE2) or \"kustomization\" (<source>/kustomization.yaml, for MicroShift)",
                at("layout")
            ).into())
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
        ).into());
    }
    let substitute = raw.substitute.unwrap_or(!raw.vars.is_empty());
    let operations = super::operations::validate_source(
        &name,
        super::operations::RawSourceOperations {
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

fn validate_auth(raw: RawAuth, url: &str, config_path: &Path) -> Result<Auth, Invalid> {
    let rel = |p: Option<PathBuf>| p.map(|p| relative_to(config_path, &p));
    let auth = Auth {
        token_file: rel(raw.token_file),
        username: raw.username,
        password_file: rel(raw.password_file),
        ssh_key_file: rel(raw.ssh_key_file),
        known_hosts_file: rel(raw.known_hosts_file),
    };
    let is_ssh = super::url::is_ssh(url);
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

pub(super) fn check_var_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("variable name {name:?}: use letters, digits and '_' only").into());
    }
    Ok(())
}

/// Normalises a path inside the repository; `..` is refused so a source never reads outside its tree.
pub fn normalise_repo_path(p: &str) -> Result<String, Invalid> {
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
