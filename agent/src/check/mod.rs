//! `outpost check`: is this site's setup usable, without starting anything? One finding per line, a summary,
//! and an exit code a script or systemd's `ExecStartPre` can act on.
//!
//! Offline ([`files`]): the config, the state directory, the agent key, and every file the config names (CA
//! files, credentials, signer keys, target folders, the kubeconfig). With `--connect` ([`connect`]) also what
//! only the network can say: each source's ref, the Kubernetes API and the agent's permissions for the kinds of
//! its last good bundles, and the hub: a signed ping ([`hub`]) shows whether it knows this agent's key.

mod connect;
mod files;
mod hub;

use std::path::Path;

use outpost_proto::text::printable;

use crate::config::Config;

/// How a finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Works, but something an operator should know (e.g. the store is held, so one check was skipped).
    Warn,
    /// `outpost run` would fail, or a source would never apply.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// What was checked: `config`, `state_dir`, `source "web" auth`, ...
    pub subject: String,
    pub detail: String,
}

impl Finding {
    pub fn ok(subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    pub fn warn(subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warn,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    pub fn fail(subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            level: Level::Fail,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    /// The line printed for it; everything from outside goes through `printable`.
    pub fn line(&self) -> String {
        let tag = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        format!(
            "{tag} {}: {}",
            printable(&self.subject),
            printable(&self.detail)
        )
    }
}

/// Exit codes of `outpost check` (the README lists them).
pub mod exit {
    /// Every check passed (warnings allowed).
    pub const OK: u8 = 0;
    /// At least one check failed.
    pub const FAILED: u8 = 1;
    /// The config file cannot be read or is invalid: nothing else could be checked.
    pub const CONFIG: u8 = 2;
}

/// Loads the config as a finding: `Err` holds the failing finding.
pub fn load(path: &Path) -> Result<(Config, Finding), Finding> {
    match Config::load(path) {
        Ok(config) => {
            let detail = format!(
                "{} valid: {} source{}, agent id {:?}",
                path.display(),
                config.sources.len(),
                if config.sources.len() == 1 { "" } else { "s" },
                config.agent.id
            );
            Ok((config, Finding::ok("config", detail)))
        }
        Err(e) => Err(Finding::fail("config", e.to_string())),
    }
}

/// Everything that can be checked without the network.
pub fn offline(config: &Config) -> Vec<Finding> {
    files::all(config)
}

/// What only the network can say.
pub async fn online(config: &Config) -> Vec<Finding> {
    connect::all(config).await
}

/// The closing line: counts by level.
pub fn summary(findings: &[Finding]) -> String {
    let count = |level| findings.iter().filter(|f| f.level == level).count();
    let (ok, warn, fail) = (count(Level::Ok), count(Level::Warn), count(Level::Fail));
    if fail == 0 {
        format!(
            "{} checks: all passed ({ok} ok, {warn} warnings)",
            findings.len()
        )
    } else {
        format!(
            "{} check{}: {fail} FAILED, {warn} warnings, {ok} ok",
            findings.len(),
            plural(findings.len())
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The exit code for a finished report.
pub fn exit_code(findings: &[Finding]) -> u8 {
    if findings.iter().any(|f| f.level == Level::Fail) {
        exit::FAILED
    } else {
        exit::OK
    }
}
