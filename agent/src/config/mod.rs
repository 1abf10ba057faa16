//! The agent's configuration: a TOML file turned into a validated [`Config`].
//!
//! Everything downstream trusts a `Config`: parsing rejects unknown keys and every validation error names the
//! key, the bad value and what to write instead, because the person reading it is a site operator with a text
//! editor, not a developer with a debugger. Secrets are never part of the config: only paths to files holding
//! them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use units::{parse_duration, parse_size};

mod agent;
mod assigned;
pub use assigned::AssignmentRefused;
mod git_ref;
mod kubernetes;
mod operations;
mod source;
mod units;
pub mod url;
mod verify;

pub use agent::{AgentConfig, Limits, Upstream};
pub use git_ref::{GitRef, SemverRange};
pub use kubernetes::KubernetesConfig;
pub use operations::{AgentOperations, OutsideWindows, SourceOperations, WindowPolicy};
pub use source::{normalise_repo_path, Auth, DirectoryLayout, SourceConfig, TargetSpec};

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
    #[error("config file {path}: {problem}")]
    Invalid { path: PathBuf, problem: Invalid },
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

/// A value the config file may not hold, with the key, the value and what to write instead. Validation has no
/// underlying cause to keep: the message is the whole finding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(message: String) -> Invalid {
        Invalid(message)
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Invalid {
        Invalid(message.into())
    }
}

// ---- the file as written -------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: agent::RawAgent,
    #[serde(default)]
    source: Vec<source::RawSource>,
    kubernetes: Option<kubernetes::RawKubernetes>,
    upstream: Option<agent::RawUpstream>,
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
        let invalid = |problem: Invalid| ConfigError::Invalid {
            path: path.to_owned(),
            problem,
        };
        let kubernetes =
            kubernetes::validate(raw.kubernetes.unwrap_or_default(), path).map_err(invalid)?;
        let upstream = match raw.upstream {
            None => None,
            Some(u) => Some(agent::validate_upstream(u, path).map_err(invalid)?),
        };
        let agent = agent::validate_agent(raw.agent, path).map_err(invalid)?;
        let mut sources: Vec<SourceConfig> = Vec::new();
        for raw_source in raw.source {
            let source = source::validate_source(raw_source, path, &agent).map_err(invalid)?;
            if sources.iter().any(|s| s.name == source.name) {
                return Err(invalid(Invalid(format!(
                    "source \"{}\": the name is used twice; give each [[source]] a unique name",
                    source.name
                ))));
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

/// Relative paths in the config are taken relative to the config file, so a config and its files can move together.
pub(crate) fn relative_to(config_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_owned();
    }
    match config_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_owned(),
    }
}

fn parse_opt_duration(text: Option<&str>, default: Duration) -> Result<Duration, Invalid> {
    match text {
        None => Ok(default),
        Some(t) => parse_duration(t).ok_or_else(|| {
            Invalid::from(format!(
                "{t:?} is not a duration; write e.g. \"30s\", \"5m\", \"1h\" or \"1m30s\""
            ))
        }),
    }
}

#[cfg(test)]
mod tests;
