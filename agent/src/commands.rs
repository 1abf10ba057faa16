//! What each `outpost` subcommand does, once `main.rs` has parsed the command line. Each returns the process exit
//! code, or an error whose message is the whole story for the operator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::deploy::{directory, kube, TargetContext, TargetError};
use crate::reconcile::{PassOutcome, ReconcileError};
use crate::report::{self, PID_FILE};
use crate::schedule;
use crate::source::{Probe, Source, SourceError};
use crate::store::{Store, StoreError};
use outpost_proto::text::printable;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reconcile(Box<ReconcileError>),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Key(#[from] outpost_proto::keys::KeyError),
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(
        "cannot create the state directory {dir}: {message}; create it or set [agent] state_dir"
    )]
    StateDir { dir: PathBuf, message: String },
    #[error("cannot take the agent key from {file}: {message}; give an unencrypted Ed25519 PKCS#8 key (what `outpost keygen` writes)")]
    KeyImport { file: PathBuf, message: String },
}

impl From<ReconcileError> for CommandError {
    fn from(e: ReconcileError) -> Self {
        CommandError::Reconcile(Box::new(e))
    }
}

/// The config path from `--config`, else `OUTPOST_CONFIG` (clap reads it), else the default.
pub fn load_config(path: &std::path::Path) -> Result<Config, CommandError> {
    Ok(Config::load(path)?)
}

fn open_store(config: &Config) -> Result<Arc<Store>, CommandError> {
    let dir = &config.agent.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| CommandError::StateDir {
        dir: dir.clone(),
        message: e.to_string(),
    })?;
    // `outpost status` holds the store for a few milliseconds when no daemon runs; a daemon starting at that
    // moment waits for it rather than failing.
    let mut attempts = 0;
    let store = loop {
        match Store::open(dir) {
            Err(StoreError::Locked { .. }) if attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            other => break other?,
        }
    };
    // Written after the lock is ours, so the pid in it is always the holder's.
    let _ = std::fs::write(dir.join(PID_FILE), format!("{}\n", std::process::id()));
    Ok(Arc::new(store))
}

/// `outpost run`: the daemon, until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<ExitCode, CommandError> {
    let store = open_store(&config)?;
    let (stop, shutdown) = watch::channel(false);
    let stop = Arc::new(stop);
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: finishing in-flight writes");
            crate::notify::send("STOPPING=1");
            let _ = stop.send(true);
        });
    }
    tokio::spawn(exit_when_store_fails(store.clone(), stop));
    // Each round runs the config file's sources plus the hub's accepted assignment; a newer assignment ends the
    // round (like a graceful stop, in-flight writes finish) and the next one starts with it.
    loop {
        let running = with_assignment(&config, &store);
        let (round_stop, round) = watch::channel(false);
        let reload = Arc::new(tokio::sync::Notify::new());
        let forward = {
            let (mut shutdown, reload) = (shutdown.clone(), reload.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => {}
                    _ = reload.notified() => {}
                }
                let _ = round_stop.send(true);
            })
        };
        let (targets, election) = targets(&running, &store, Some(&round)).await?;
        schedule::run(&running, &targets, round, reload).await?;
        forward.abort();
        if let Some(election) = election {
            // Let it release the lease, so a successor does not wait for it to expire.
            let _ = election.await;
        }
        if *shutdown.borrow() {
            break;
        }
    }
    let _ = std::fs::remove_file(config.agent.state_dir.join(PID_FILE));
    if store.failed() {
        return Ok(ExitCode::FAILURE);
    }
    // Every change was flushed when it was made; this last flush is belt and braces, and (like every flush) it
    // is bounded, so a failing disk cannot hang a stop.
    if let Err(e) = store.flush() {
        tracing::error!(
            "{e}; stopping without the final flush: every change was flushed when it was made"
        );
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// How long a stop after a store failure may take before the process exits regardless.
const FAILED_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A store that failed to write (a full or failing disk under state_dir) never writes again in this process, so
/// the daemon stops and exits with a failure: its supervisor starts it again, and the new process opens the
/// store afresh (sled recovers it as after a crash) and converges once the disk has room. Until then each start
/// fails with the same clear error. A write stuck inside sled could keep the orderly stop from finishing, so
/// after a grace period the process exits regardless; what was flushed is on disk, which is all a crash leaves
/// too.
async fn exit_when_store_fails(store: Arc<Store>, stop: Arc<watch::Sender<bool>>) {
    while !store.failed() {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    tracing::error!(
        "the store under {} can no longer be written (is the disk full or failing?); exiting so that the supervisor restarts the agent: free space there and it resumes from its last good state",
        store.dir().display()
    );
    crate::notify::send("STOPPING=1");
    let _ = stop.send(true);
    tokio::time::sleep(FAILED_STOP_GRACE).await;
    tracing::error!("the stop did not finish within {FAILED_STOP_GRACE:?}; exiting now");
    std::process::exit(1);
}

/// The config file plus the stored assignment, if it still fits the file (the file may have changed since).
fn with_assignment(config: &Config, store: &Store) -> Config {
    match store.assignment() {
        Ok(Some(a)) => {
            match config.with_assignment(&a) {
                Ok(merged) => merged,
                Err(e) => {
                    tracing::error!("the stored assignment no longer fits the config file, running without it: {e}");
                    config.clone()
                }
            }
        }
        Ok(None) => config.clone(),
        Err(e) => {
            tracing::error!("cannot read the stored assignment, running without it: {e}");
            config.clone()
        }
    }
}

/// What the targets share. Connects to the cluster when a source (or a removed one still to be pruned) uses the
/// Kubernetes target, and with `shutdown` given, starts leader election and waits for its first round so that
/// only the leader re-applies at start.
async fn targets(
    config: &Config,
    store: &Arc<Store>,
    shutdown: Option<&watch::Receiver<bool>>,
) -> Result<(TargetContext, Option<tokio::task::JoinHandle<()>>), CommandError> {
    let k = &config.kubernetes;
    let mut ctx = TargetContext {
        agent_id: config.agent.id.clone(),
        store: store.clone(),
        cluster: None,
        leader: None,
        concurrency: k.concurrency,
    };
    let wanted = config
        .sources
        .iter()
        .any(|s| s.target == crate::config::TargetSpec::Kubernetes)
        || store
            .sources()?
            .iter()
            .any(|(_, r)| r.target.as_deref() == Some("kubernetes"));
    if !wanted {
        return Ok((ctx, None));
    }
    let cluster = Arc::new(
        kube::client::connect(
            k.kubeconfig.as_deref(),
            k.context.as_deref(),
            &k.field_manager,
            k.request_timeout,
        )
        .await
        .map_err(TargetError::from)?,
    );
    ctx.cluster = Some(cluster.clone());
    let (Some(shutdown), true) = (shutdown, k.leader_election) else {
        return Ok((ctx, None));
    };
    let settings = kube::lease::LeaseSettings {
        namespace: k.lease_namespace.clone().unwrap_or_else(own_namespace),
        name: k.lease_name(&config.agent.id),
        identity: format!("{}-{}", config.agent.id, boot_suffix()),
        duration: k.lease_duration,
        renew_deadline: k.renew_deadline,
    };
    let (tx, mut rx) = watch::channel(kube::lease::Leadership::Follower);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let election = tokio::spawn(kube::lease::run(
        cluster,
        settings,
        tx,
        shutdown.clone(),
        Some(first_tx),
    ));
    let _ = tokio::time::timeout(k.renew_deadline, first_rx).await;
    rx.mark_unchanged();
    ctx.leader = Some(rx);
    Ok((ctx, Some(election)))
}

/// The namespace of the pod we run in, else `default` (a host install).
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Tells two processes with the same agent id apart (two replicas, or a restart while the old lease is held).
fn boot_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can still be killed; it just cannot drain first.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `outpost sync [--source NAME]`: one pass of every (or one) source, then exit; non-zero when any failed.
pub async fn sync(config: Config, only: Option<String>) -> Result<ExitCode, CommandError> {
    if let Some(name) = &only {
        if config.source(name).is_none() {
            return Err(unknown_source(&config, name));
        }
    }
    let store = open_store(&config)?;
    let config = with_assignment(&config, &store);
    // A one-off pass applies without leader election: it is run by hand, and `run` cannot run beside it.
    let (targets, _) = targets(&config, &store, None).await?;
    schedule::prune_removed_sources(&config, &targets).await?;
    let (_stop, shutdown) = watch::channel(false);
    let mut failed = 0;
    for source in config
        .sources
        .iter()
        .filter(|s| only.as_ref().is_none_or(|n| *n == s.name))
    {
        let r = schedule::reconciler(&config, source, &targets)?;
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
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {}", source.name, printable(&e.to_string()));
            }
        }
    }
    let _ = std::fs::remove_file(config.agent.state_dir.join(PID_FILE));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `outpost status [--json]`: from the running daemon's snapshot, or from the store when none runs.
pub fn status(config: Config, json: bool) -> Result<ExitCode, CommandError> {
    let snapshot = match Store::open(&config.agent.state_dir) {
        Ok(store) => report::from_store(&with_assignment(&config, &store), &store)?,
        Err(StoreError::Locked { .. }) => report::read_snapshot(&config.agent.state_dir).ok_or_else(|| {
            CommandError::Usage(format!(
                "the store is held by another process ({}) but it has not written {} yet; try again in a moment",
                report::pid_holder(&config.agent.state_dir),
                config.agent.state_dir.join(report::SNAPSHOT_FILE).display()
            ))
        })?,
        Err(e) => return Err(e.into()),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snapshot).expect("status serialises")
        );
    } else {
        print!("{}", report::render_table(&snapshot, crate::store::now()));
    }
    let healthy = snapshot.sources.iter().all(|s| s.state == "Ready");
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// `outpost status --check`: a liveness probe that needs no listening port (an exec probe in a pod, a monitoring
/// check on a host). Alive means: a daemon published its status, that process still exists, and every source's
/// next poll is not overdue by more than three timeouts plus a minute (a pass that hangs misses its next poll).
pub fn check(config: Config) -> Result<ExitCode, CommandError> {
    let dir = &config.agent.state_dir;
    let fail = |why: String| {
        eprintln!("outpost is not healthy: {}", printable(&why));
        Ok(ExitCode::FAILURE)
    };
    let Some(snapshot) = report::read_snapshot(dir) else {
        return fail(format!(
            "no daemon status in {} (is `outpost run` running?)",
            dir.join(report::SNAPSHOT_FILE).display()
        ));
    };
    let Some(pid) = snapshot.daemon_pid else {
        return fail("the status was not written by a daemon".into());
    };
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return fail(format!(
            "the daemon (pid {pid}) that wrote the status is gone"
        ));
    }
    let now = crate::store::now();
    for s in &snapshot.sources {
        let Some(source) = config.source(&s.name) else {
            continue;
        };
        let slack = source.timeout.as_secs() * 3 + 60;
        if let Some(next) = s.next_poll {
            if now > next + slack {
                return fail(format!(
                    "source {:?} was due to poll {}s ago and has not",
                    s.name,
                    now - next
                ));
            }
        }
    }
    println!(
        "ok: outpost run (pid {pid}) is polling {} sources",
        snapshot.sources.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `outpost render --source NAME [--revision REV]`: prints what would be applied. Needs no cluster and never
/// writes to the target or the store, so it works beside a running daemon.
pub async fn render(
    config: Config,
    name: String,
    revision: Option<String>,
) -> Result<ExitCode, CommandError> {
    let Some(source_config) = config.source(&name) else {
        return Err(unknown_source(&config, &name));
    };
    // The daemon's cache is only read; fetching happens in a separate cache so two processes never write one repo.
    let daemon_cache = Source::new(
        source_config,
        &config.agent.state_dir.join("git"),
        config.agent.limits,
    );
    let own_cache = Source::new(
        source_config,
        &config.agent.state_dir.join("git-render"),
        config.agent.limits,
    );
    let err = |error: SourceError| ReconcileError::Source {
        source_name: name.clone(),
        error,
    };
    let (source, commit) = match revision {
        Some(rev) if daemon_cache.has_commit(&rev).await => (daemon_cache, rev),
        Some(rev) if own_cache.has_commit(&rev).await => (own_cache, rev),
        Some(rev) => {
            if rev.len() != 40 || !rev.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(CommandError::Usage(format!(
                    "--revision {rev:?}: give a full 40-character commit id (it is not in the local cache)"
                )));
            }
            let probe = Probe {
                ref_name: rev.clone(),
                commit: rev.clone(),
                tag_object: None,
            };
            let fetched = own_cache.fetch(&probe).await.map_err(err)?;
            (own_cache, fetched)
        }
        None => {
            let probe = own_cache.probe().await.map_err(err)?;
            if daemon_cache.has_commit(&probe.commit).await {
                (daemon_cache, probe.commit)
            } else {
                let fetched = own_cache.fetch(&probe).await.map_err(err)?;
                (own_cache, fetched)
            }
        }
    };
    let manifests = source.read(&commit).await.map_err(err)?;
    for w in &manifests.warnings {
        eprintln!("warning: {}", printable(w));
    }
    let vars = source_config.vars(&config.agent);
    let bundle = crate::bundle::build_revision(&manifests, vars.as_ref(), &config.agent.limits)
        .map_err(|error| ReconcileError::Build {
            source_name: name.clone(),
            revision: commit.clone(),
            error,
        })?;
    let text = directory::render(&name, &commit, &bundle);
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn unknown_source(config: &Config, name: &str) -> CommandError {
    let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    CommandError::Usage(format!(
        "no source named {name:?} in {}; known sources: {}",
        config.path.display(),
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    ))
}

/// `outpost keygen`: creates the agent's key if missing (mode 0600), prints its public key and fingerprint.
/// Never replaces an existing key on its own: a new key is a new identity to the hub. With `--from FILE` the
/// key comes from that file instead, e.g. a Secret volume, which kubelet makes group-readable and so cannot be
/// loaded as it is; the state directory gets a private copy, replaced when the file holds a different key (the
/// Secret is then the source of truth).
pub fn keygen(config: Config, from: Option<&Path>) -> Result<ExitCode, CommandError> {
    use outpost_proto::keys::{Pkcs8Document, SigningKey};
    let dir = &config.agent.state_dir;
    let state_error = |e: std::io::Error| CommandError::StateDir {
        dir: dir.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(state_error)?;
    let path = config.agent.key_path();
    let imported = match from {
        Some(file) => key_from_file(file)?,
        None => None,
    };
    let action = match imported {
        Some(document) => {
            // A missing or unreadable key is replaced like a different one.
            let current = SigningKey::load(&path).ok().map(|k| k.public_key());
            if current == Some(document.signing_key()?.public_key()) {
                "existing key, the same as the one given with --from"
            } else {
                // Written beside and renamed over, so a crash leaves the old key or the new one, never half.
                let staging = dir.join(".agent.key.import");
                let _ = std::fs::remove_file(&staging);
                document.save(&staging)?;
                std::fs::rename(&staging, &path).map_err(state_error)?;
                "imported"
            }
        }
        None if path.exists() => "existing key",
        None => {
            Pkcs8Document::generate()?.save(&path)?;
            "created"
        }
    };
    let public = SigningKey::load(&path)?.public_key();
    println!("{public}");
    println!("fingerprint {}", public.fingerprint());
    eprintln!("{action} {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The key `keygen --from` names, checked; `None` when the file does not exist (an optional Secret left out).
fn key_from_file(file: &Path) -> Result<Option<outpost_proto::keys::Pkcs8Document>, CommandError> {
    let import_error = |message: String| CommandError::KeyImport {
        file: file.to_path_buf(),
        message,
    };
    match std::fs::read(file) {
        Ok(bytes) => outpost_proto::keys::Pkcs8Document::from_pem_or_der(&bytes)
            .map(Some)
            .map_err(|e| import_error(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "{} does not exist; using the state directory's own key",
                file.display()
            );
            Ok(None)
        }
        Err(e) => Err(import_error(e.to_string())),
    }
}
