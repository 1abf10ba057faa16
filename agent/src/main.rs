//! The `outpost` command line. Parsing only: everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outpost_agent::commands;
use outpost_agent::logging::{self, LogFormat};
use outpost_proto::text::printable;

/// Idle blocking threads (Git transfers, builds) exit after this, keeping idle memory low.
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the end of the process waits for a Git transfer abandoned at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "Lightweight GitOps pull agent for the edge"
)]
struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "OUTPOST_CONFIG", default_value = outpost_agent::config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or tracing filter (OUTPOST_LOG overrides).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: poll every source, apply, until SIGTERM or SIGINT.
    Run,
    /// One pass of every source (or one), then exit; non-zero when any failed.
    Sync {
        #[arg(long)]
        source: Option<String>,
    },
    /// Per source: state, applied / last good / fetched revision, last error, next poll.
    Status {
        #[arg(long)]
        json: bool,
        /// Liveness check for probes and monitoring: exit 0 only when `outpost run` is alive and no source is
        /// overdue for its next poll; prints nothing else.
        #[arg(long, conflicts_with = "json")]
        check: bool,
    },
    /// Create the agent's Ed25519 key if missing; print its public key and fingerprint.
    Keygen {
        /// Take the key from this PKCS#8 file (e.g. a Kubernetes Secret volume) instead of generating one; it is
        /// copied into the state directory with mode 0600. When the file does not exist, a key is generated.
        #[arg(long, value_name = "FILE")]
        from: Option<std::path::PathBuf>,
    },
    /// Check the config and every file it names without starting anything; with --connect also each source's
    /// ref, the Kubernetes API and the agent's permissions, and the hub. Exit 0: all passed; 1: a check failed;
    /// 2: the config is invalid.
    Check {
        /// Also check what needs the network.
        #[arg(long)]
        connect: bool,
    },
    /// Join a hub: send this agent's key with a bootstrap token, check the hub's key, write [upstream].
    Enroll {
        /// The hub's base URL, e.g. https://hub.example.com:8443.
        #[arg(long)]
        hub: String,
        /// The file `outpost-hub token create` wrote (mode 0600); the token is never printed.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The hub key's fingerprint (SHA256:...), from the hub's operator: the answer must match it.
        #[arg(long, value_name = "FP")]
        hub_key_fingerprint: String,
        /// CA certificates (PEM) for the hub's TLS certificate, when it is not from a public CA.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Suspend a source: it keeps its last good revision and does nothing else until resumed. Works beside a
    /// running `outpost run` (from the source's next poll) and across restarts.
    Suspend {
        #[arg(long)]
        source: String,
        /// Why, for `outpost status` and the hub.
        #[arg(long)]
        reason: String,
    },
    /// Resume a suspended source.
    Resume {
        #[arg(long)]
        source: String,
    },
    /// Poll a source now, like `flux reconcile`: wakes a running `outpost run`, else runs one pass.
    Reconcile {
        #[arg(long)]
        source: String,
    },
    /// Print the bundle that would be applied, without applying it.
    Render {
        #[arg(long)]
        source: String,
        /// A full commit id; default: what the source's ref points at now.
        #[arg(long)]
        revision: Option<String>,
        /// Print the values decrypted from SOPS files; without it, objects holding them show only lengths.
        #[arg(long)]
        show_secrets: bool,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    outpost_agent::install_crypto_provider();
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    if let Command::Check { connect } = cli.command {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return Ok(runtime.block_on(commands::check(&cli.config, connect)));
    }
    let config = match commands::load_config(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", printable(&e.to_string()));
            return Ok(ExitCode::from(2));
        }
    };
    // One thread runs all async work: the agent waits on the network, it does not compute. Git transfers and
    // builds run on a small blocking pool whose idle threads exit quickly, keeping idle memory low.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(8)
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run => commands::run(config).await,
            Command::Sync { source } => commands::sync(config, source).await,
            Command::Status { check: true, .. } => commands::liveness(config),
            Command::Status { json, .. } => commands::status(config, json),
            Command::Keygen { from } => commands::keygen(config, from.as_deref()),
            Command::Enroll {
                hub,
                token_file,
                hub_key_fingerprint,
                ca_file,
            } => {
                commands::enroll(
                    config,
                    &hub,
                    &token_file,
                    &hub_key_fingerprint,
                    ca_file.as_deref(),
                )
                .await
            }
            Command::Render {
                source,
                revision,
                show_secrets,
            } => commands::render(config, source, revision, show_secrets).await,
            Command::Suspend { source, reason } => commands::suspend(config, &source, reason),
            Command::Resume { source } => commands::resume(config, &source),
            Command::Reconcile { source } => commands::reconcile(config, source).await,
            Command::Check { .. } => unreachable!("answered before the config is loaded"),
        }
    });
    // A Git transfer abandoned at shutdown may still sit in a blocking read; do not wait for it forever.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {}", printable(&e.to_string()));
            Ok(ExitCode::FAILURE)
        }
    }
}
