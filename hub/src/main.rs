//! `outpost-hub`: command line only; the work is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outpost_hub::access::{self, Role};
use outpost_hub::admin::cli::{AgentsCommand, TokenCommand};
use outpost_hub::backend::{self, BackendKind};
use outpost_hub::config::{Config, DEFAULT_CONFIG_PATH};
use outpost_hub::rollout::cli::{ReleaseCommand, RolloutCommand};
use outpost_hub::{secret_file, server, state, status};

/// Why a command failed. Each module's own error says what and how to fix it; these wrap them, and add
/// what only the command line knows.
#[derive(Debug, thiserror::Error)]
enum HubError {
    #[error("cannot start the async runtime: {0}; the system may be out of threads or memory")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] outpost_hub::config::ConfigError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error(transparent)]
    Secret(#[from] secret_file::SecretFileError),
    #[error(transparent)]
    Status(#[from] status::StatusError),
    #[error("cannot write the agents as JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("--name must be a short printable name (who holds the credential), without control characters")]
    CredentialName,
    #[error(transparent)]
    Randomness(#[from] access::NoRandomness),
    #[error(transparent)]
    Admin(#[from] outpost_hub::admin::cli::CliError),
    #[error("{0} uses the embedded store, which migrates itself; `migrate` is for [store] backend = \"postgres\"")]
    NotPostgres(PathBuf),
    #[error(transparent)]
    Store(#[from] backend::BackendError),
    #[error(transparent)]
    Transfer(#[from] backend::transfer::TransferError),
    #[error("cannot create {path}: {source}; name a new file (export never overwrites one)")]
    CreateExport {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}; name the file `outpost-hub export` wrote")]
    OpenImport {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Parser)]
#[command(
    name = "outpost-hub",
    version,
    about = "Outpost's reference hub: verifies signed heartbeats, records them, answers with signed assignments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve agents: POST /v1/heartbeats, POST /v1/enroll, GET /v1/agents.
    Serve {
        #[arg(long, env = "OUTPOST_HUB_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Print every agent: online or offline, last seen, seq, and each source's state.
    ///
    /// Asks the running hub (GET /v1/agents on `listen`); when none answers, reads the store directly.
    Status {
        #[arg(long, env = "OUTPOST_HUB_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print the JSON listing instead of a table.
        #[arg(long)]
        json: bool,
        /// A file holding a read credential for the running hub (see `credential create`).
        #[arg(long, env = "OUTPOST_HUB_TOKEN_FILE")]
        token_file: Option<PathBuf>,
    },
    /// Apply the database schema's migrations ([store] backend = "postgres"); safe to run again.
    Migrate {
        #[arg(long, env = "OUTPOST_HUB_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Write everything the store keeps (enrollments, used tokens, assignments, heartbeats) as JSON lines.
    ///
    /// With the embedded store the hub must be stopped. Move a hub to PostgreSQL with `export` from the old
    /// config and `import` into the new one.
    Export {
        #[arg(long, env = "OUTPOST_HUB_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Read what `export` wrote into the store of this config.
    Import {
        #[arg(long, env = "OUTPOST_HUB_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The file `export` wrote.
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// Change the fleet through the running hub's admin API (needs an [[admin]] credential).
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Make a bootstrap token for `outpost enroll`, through the running hub's admin API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Define the releases rollouts move: a source, the sites it goes to, the commit they run.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Move a release to a new commit wave by wave, health-gated, with automatic fleet rollback.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Make a credential for people and tools (the fleet page, /v1/agents, /metrics, the admin API).
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Remove everything recorded of one agent: its last heartbeat, its history and its enrollment.
    ///
    /// Edits the store directly, so the hub must be stopped. A used bootstrap token stays used. An agent
    /// listed as [[agent]] in the config is still known; remove it there too to refuse its heartbeats.
    Forget {
        #[arg(long, env = "OUTPOST_HUB_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The agent's id.
        #[arg(long)]
        agent: String,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Write a new random token to --token-file (mode 0600) and print the hub.toml table that lists its hash.
    ///
    /// The token itself is never printed. Add the table to hub.toml and restart the hub (every replica).
    Create {
        /// `read` (fleet page, listings, metrics) or `admin` (also the admin API).
        #[arg(long, value_parser = ["read", "admin"])]
        role: String,
        /// Who holds it, for the log.
        #[arg(long)]
        name: String,
        /// Where to write the token; never overwritten.
        #[arg(long)]
        token_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&HubError::Runtime(e)),
    };
    let result = match cli.command {
        Command::Serve { config } => runtime.block_on(serve(&config)),
        Command::Status {
            config,
            json,
            token_file,
        } => runtime.block_on(print_status(&config, json, token_file.as_deref())),
        Command::Credential(CredentialCommand::Create {
            role,
            name,
            token_file,
        }) => create_credential(&role, &name, &token_file),
        Command::Agents(command) => runtime
            .block_on(outpost_hub::admin::cli::agents(command))
            .map(|text| print!("{text}"))
            .map_err(HubError::from),
        Command::Token(command) => runtime
            .block_on(outpost_hub::admin::cli::token(command, state::now_ms()))
            .map(|text| print!("{text}"))
            .map_err(HubError::from),
        Command::Release(command) => runtime
            .block_on(outpost_hub::rollout::cli::release(command))
            .map(|text| print!("{text}"))
            .map_err(HubError::from),
        Command::Rollout(command) => runtime
            .block_on(outpost_hub::rollout::cli::rollout(command))
            .map(|text| print!("{text}"))
            .map_err(HubError::from),
        Command::Forget { config, agent } => runtime.block_on(forget(&config, &agent)),
        Command::Migrate { config } => runtime.block_on(migrate(&config)),
        Command::Export { config, out } => runtime.block_on(export(&config, &out)),
        Command::Import { config, input } => runtime.block_on(import(&config, &input)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

async fn serve(path: &Path) -> Result<(), HubError> {
    let config = Config::load(path)?;
    server::serve(config, |hub| {
        for warning in &hub.warnings {
            tracing::warn!("{warning}");
        }
        if hub.key_created {
            println!("created a new hub key");
        }
        // Operators copy this into every agent's `[upstream] hub_key`.
        println!("hub public key: {}", hub.public_key);
        println!("hub key fingerprint: {}", hub.public_key.fingerprint());
        println!("listening on {}", hub.local_addr);
        tracing::info!(addr = %hub.local_addr, key = %hub.public_key.fingerprint(), "outpost-hub serving");
    })
    .await?;
    Ok(())
}

async fn print_status(path: &Path, json: bool, token_file: Option<&Path>) -> Result<(), HubError> {
    let config = Config::load(path)?;
    let token = token_file.map(secret_file::read).transpose()?;
    let views = status::collect(&config, state::now_ms(), token.as_deref()).await?;
    if json {
        let text = serde_json::to_string_pretty(&views).map_err(HubError::Json)?;
        println!("{text}");
    } else {
        print!("{}", status::render_table(&views));
    }
    Ok(())
}

fn create_credential(role: &str, name: &str, token_file: &Path) -> Result<(), HubError> {
    let role = if role == "admin" {
        Role::Admin
    } else {
        Role::Read
    };
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(HubError::CredentialName);
    }
    let token = access::new_token()?;
    secret_file::write_new(token_file, &token)?;
    eprintln!(
        "wrote a new {} token to {}; add this table to hub.toml and restart the hub:",
        role.as_str(),
        token_file.display()
    );
    print!("{}", access::config_table(role, name, &token));
    Ok(())
}

async fn migrate(path: &Path) -> Result<(), HubError> {
    let config = Config::load(path)?;
    let BackendKind::Postgres(settings) = &config.store.kind else {
        return Err(HubError::NotPostgres(path.to_owned()));
    };
    let applied = backend::postgres::migrate(settings).await?;
    if applied.is_empty() {
        println!(
            "the database schema is up to date (version {})",
            backend::postgres::migrate::LATEST
        );
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(())
}

async fn export(path: &Path, out: &Path) -> Result<(), HubError> {
    let config = Config::load(path)?;
    let store = backend::open(&config, false).await?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|source| HubError::CreateExport {
            path: out.to_owned(),
            source,
        })?;
    let mut writer = std::io::BufWriter::new(file);
    let counts = backend::transfer::export(&*store, &mut writer).await?;
    println!("exported {counts} to {}", out.display());
    Ok(())
}

async fn import(path: &Path, input: &Path) -> Result<(), HubError> {
    let config = Config::load(path)?;
    // Serving: records go through the store's group commit like a heartbeat's.
    let store = backend::open(&config, true).await?;
    let file = std::fs::File::open(input).map_err(|source| HubError::OpenImport {
        path: input.to_owned(),
        source,
    })?;
    let counts =
        backend::transfer::import(&*store, std::io::BufReader::new(file), config.history).await?;
    println!("imported {counts} into {}", path.display());
    Ok(())
}

async fn forget(path: &Path, agent: &str) -> Result<(), HubError> {
    let config = Config::load(path)?;
    let store = backend::open(&config, false).await?;
    let forgotten = store.forget(agent).await?;
    if forgotten.nothing() {
        println!("nothing recorded of agent {agent:?}; the store is unchanged");
    } else {
        println!(
            "forgot agent {agent:?}: {} last heartbeat, {} history entries, {} enrollment",
            u8::from(forgotten.heartbeat),
            forgotten.history,
            u8::from(forgotten.enrollment)
        );
    }
    if config.agents.iter().any(|a| a.id == agent) {
        println!(
            "agent {agent:?} is still listed as [[agent]] in {}; remove it there too, or its next heartbeat is accepted again",
            path.display()
        );
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTPOST_HUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in the journal or a log file they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Prints the error and its causes, one per line, so the fix in an inner message is not lost.
fn fail(error: &HubError) -> ExitCode {
    let message = outpost_proto::text::error_chain(error, "\n  caused by: ");
    eprintln!("outpost-hub: {message}");
    ExitCode::FAILURE
}
