//! What each `outpost` subcommand does, once `main.rs` has parsed the command line: a thin map onto the stages.
//! Each returns the process exit code, or an error whose message is the whole story for the operator.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;

use crate::check;
use crate::config::{Config, ConfigError};
use crate::control::{self, ControlError};
use crate::daemon::{self, DaemonError};
use crate::deploy::{directory, ContextError, TargetContext};
use crate::identity::{self, IdentityError};
use crate::reconcile::{self, PassOutcome, ReconcileError, Reconciler, RenderError};
use crate::report::{self, liveness};
use crate::store::{self, Store, StoreError};
use outpost_proto::text::printable;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reconcile(Box<ReconcileError>),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Targets(#[from] ContextError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Enroll(#[from] crate::enroll::EnrollError),
    #[error("no source named {name:?} in {file}; known sources: {known}")]
    UnknownSource {
        name: String,
        file: String,
        known: String,
    },
    #[error("the store is held by another process ({holder}) but it has not written {snapshot} yet; try again in a moment")]
    NoSnapshotYet { holder: String, snapshot: String },
}

impl From<ReconcileError> for CommandError {
    fn from(e: ReconcileError) -> Self {
        CommandError::Reconcile(Box::new(e))
    }
}

/// The config path from `--config`, else `OUTPOST_CONFIG` (clap reads it), else the default.
pub fn load_config(path: &Path) -> Result<Config, CommandError> {
    Ok(Config::load(path)?)
}

/// `outpost run`: the daemon, until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<ExitCode, CommandError> {
    Ok(daemon::run(config).await?)
}

/// `outpost sync [--source NAME]`: one pass of every (or one) source, then exit; non-zero when any failed.
pub async fn sync(config: Config, only: Option<String>) -> Result<ExitCode, CommandError> {
    if let Some(name) = &only {
        if config.source(name).is_none() {
            return Err(unknown_source(&config, name));
        }
    }
    let store = Arc::new(Store::open_exclusive(&config.agent.state_dir)?);
    let config = store.effective_config(&config);
    // A one-off pass applies without leader election: it is run by hand, and `run` cannot run beside it.
    let (targets, _) = TargetContext::connect(&config, &store, None).await?;
    reconcile::prune_removed_sources(&config, &targets).await?;
    let (_stop, shutdown) = watch::channel(false);
    let mut failed = 0;
    for source in config
        .sources
        .iter()
        .filter(|s| only.as_ref().is_none_or(|n| *n == s.name))
    {
        let r = Reconciler::for_source(&config, source, &targets)?;
        match r.pass(&shutdown).await {
            Ok(PassOutcome::Standby { revision }) => {
                println!(
                    "{}: fetched {revision}; another replica applies",
                    source.name
                )
            }
            Ok(PassOutcome::Applied { revision, objects }) => {
                println!(
                    "{}: applied {revision} ({objects} objects) to {}",
                    source.name, source.target
                )
            }
            Ok(PassOutcome::Unchanged { revision }) => {
                println!("{}: unchanged at {revision}", source.name)
            }
            Ok(PassOutcome::Suspended { why }) => {
                println!("{}: {}", source.name, printable(&why))
            }
            Ok(PassOutcome::Waiting { revision, why }) => {
                println!(
                    "{}: {revision} not applied yet: {}",
                    source.name,
                    printable(&why)
                )
            }
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {}", source.name, printable(&e.to_string()));
            }
        }
    }
    store.release_pid_file();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `outpost status [--json]`: from the running daemon's snapshot, or from the store when none runs.
pub fn status(config: Config, json: bool) -> Result<ExitCode, CommandError> {
    let dir = &config.agent.state_dir;
    let snapshot = match Store::open(dir) {
        Ok(store) => store.snapshot(&store.effective_config(&config))?,
        Err(StoreError::Locked { .. }) => {
            report::read_snapshot(dir).ok_or_else(|| CommandError::NoSnapshotYet {
                holder: store::pid_holder(dir),
                snapshot: dir.join(report::SNAPSHOT_FILE).display().to_string(),
            })?
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snapshot).expect("status serialises")
        );
    } else {
        print!("{}", report::render_table(&snapshot, report::now()));
    }
    Ok(if snapshot.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// `outpost check [--connect]`: one line per check, then a summary; the exit codes are in `check::exit`. Loads
/// the config itself, so that an invalid config is reported like every other finding.
pub async fn check(path: &Path, connect: bool) -> ExitCode {
    let (config, first) = match check::load(path) {
        Ok(loaded) => loaded,
        Err(finding) => {
            println!("{}", finding.line());
            println!("{}", check::summary(std::slice::from_ref(&finding)));
            return ExitCode::from(check::exit::CONFIG);
        }
    };
    let mut findings = vec![first];
    findings.extend(check::offline(&config));
    if connect {
        findings.extend(check::online(&config).await);
    }
    for f in &findings {
        println!("{}", f.line());
    }
    println!("{}", check::summary(&findings));
    ExitCode::from(check::exit_code(&findings))
}

/// `outpost status --check`: see [`liveness`].
pub fn liveness(config: Config) -> Result<ExitCode, CommandError> {
    match liveness::check(&config, report::now()) {
        Ok((pid, sources)) => {
            println!("ok: outpost run (pid {pid}) is polling {sources} sources");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("outpost is not healthy: {}", printable(&why.to_string()));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `outpost render --source NAME [--revision REV] [--show-secrets]`: prints what would be applied (see
/// `reconcile::render`).
pub async fn render(
    config: Config,
    name: String,
    revision: Option<String>,
    show_secrets: bool,
) -> Result<ExitCode, CommandError> {
    let Some(source) = config.source(&name) else {
        return Err(unknown_source(&config, &name));
    };
    let rendered = reconcile::render(&config, source, revision, show_secrets).await?;
    for w in &rendered.warnings {
        eprintln!("warning: {}", printable(w));
    }
    print!(
        "{}",
        directory::render(&name, &rendered.revision, &rendered.bundle)
    );
    Ok(ExitCode::SUCCESS)
}

/// `outpost keygen [--from FILE]`: see [`identity::keygen`]; prints the public key and its fingerprint.
pub fn keygen(config: Config, from: Option<&Path>) -> Result<ExitCode, CommandError> {
    let key = identity::keygen(&config.agent, from)?;
    println!("{}", key.public);
    println!("fingerprint {}", key.public.fingerprint());
    eprintln!("{} {}", key.action, key.path.display());
    Ok(ExitCode::SUCCESS)
}

/// `outpost enroll`: see [`crate::enroll`]; prints what it did, never the token.
pub async fn enroll(
    config: Config,
    hub: &str,
    token_file: &Path,
    fingerprint: &str,
    ca_file: Option<&Path>,
) -> Result<ExitCode, CommandError> {
    let done = crate::enroll::enroll(&config, hub, token_file, fingerprint, ca_file).await?;
    println!(
        "enrolled agent {:?} (key {}) at {hub}; hub key {} checked",
        done.agent_id,
        done.fingerprint,
        done.hub_key.fingerprint()
    );
    if done.config_written {
        println!(
            "wrote [upstream] to {}; start or restart `outpost run`",
            config.path.display()
        );
    } else {
        println!("{} already names this hub and key", config.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpost suspend --source NAME --reason TEXT`: the source keeps its last good revision and does nothing else,
/// from the running daemon's next pass on, across restarts, until `outpost resume`.
pub fn suspend(config: Config, name: &str, reason: String) -> Result<ExitCode, CommandError> {
    if config.source(name).is_none() {
        return Err(unknown_source(&config, name));
    }
    let suspension = control::Suspension {
        reason,
        by: control::local_user(),
        at: report::now(),
    };
    control::suspend(&config.agent.state_dir, name, &suspension)?;
    println!(
        "{name}: {} (from its next poll; `outpost resume --source {name}` resumes it)",
        printable(&suspension.to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// `outpost resume --source NAME`.
pub fn resume(config: Config, name: &str) -> Result<ExitCode, CommandError> {
    if config.source(name).is_none() {
        return Err(unknown_source(&config, name));
    }
    if control::resume(&config.agent.state_dir, name)? {
        println!("{name}: resumed (from its next poll)");
    } else {
        println!("{name}: was not suspended");
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpost reconcile --source NAME`: poll the source now, like `flux reconcile`. With `outpost run` running, it
/// leaves a request and wakes the daemon (SIGUSR1), which polls the source at once; without one, it runs the
/// pass itself, as `outpost sync --source NAME` does.
pub async fn reconcile(config: Config, name: String) -> Result<ExitCode, CommandError> {
    if config.source(&name).is_none() {
        return Err(unknown_source(&config, &name));
    }
    let dir = config.agent.state_dir.clone();
    match Store::open(&dir) {
        Ok(store) => {
            drop(store);
            sync(config, Some(name)).await
        }
        Err(StoreError::Locked { .. }) => {
            control::request_reconcile(&dir, &name)?;
            let pid = std::fs::read_to_string(dir.join(store::PID_FILE))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .filter(|p| *p > 0);
            // SAFETY: kill(2) with a pid read from the daemon's pid file and a signal number; no memory is shared.
            let woken = pid.is_some_and(|pid| unsafe { libc::kill(pid, libc::SIGUSR1) } == 0);
            if woken {
                println!(
                    "{name}: asked outpost run (pid {}) to poll it now; `outpost status` shows the result",
                    pid.unwrap_or_default()
                );
            } else {
                println!("{name}: asked outpost run to poll it; it does so at its next poll at the latest (the daemon could not be woken)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

fn unknown_source(config: &Config, name: &str) -> CommandError {
    let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    CommandError::UnknownSource {
        name: name.to_string(),
        file: config.path.display().to_string(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    }
}
