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
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
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
            .map_err(|e| chain(&e)),
        Command::Token(command) => runtime
            .block_on(outpost_hub::admin::cli::token(command, state::now_ms()))
            .map(|text| print!("{text}"))
            .map_err(|e| chain(&e)),
        Command::Release(command) => runtime
            .block_on(outpost_hub::rollout::cli::release(command))
            .map(|text| print!("{text}"))
            .map_err(|e| chain(&e)),
        Command::Rollout(command) => runtime
            .block_on(outpost_hub::rollout::cli::rollout(command))
            .map(|text| print!("{text}"))
            .map_err(|e| chain(&e)),
        Command::Forget { config, agent } => runtime.block_on(forget(&config, &agent)),
        Command::Migrate { config } => runtime.block_on(migrate(&config)),
        Command::Export { config, out } => runtime.block_on(export(&config, &out)),
        Command::Import { config, input } => runtime.block_on(import(&config, &input)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

async fn serve(path: &Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| chain(&e))?;
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
    .await
    .map_err(|e| chain(&e))
}

async fn print_status(path: &Path, json: bool, token_file: Option<&Path>) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| chain(&e))?;
    let token = token_file
        .map(secret_file::read)
        .transpose()
        .map_err(|e| chain(&e))?;
    let views = status::collect(&config, state::now_ms(), token.as_deref())
        .await
        .map_err(|e| chain(&e))?;
    if json {
        let text = serde_json::to_string_pretty(&views).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", status::render_table(&views));
    }
    Ok(())
}

fn create_credential(role: &str, name: &str, token_file: &Path) -> Result<(), String> {
    let role = if role == "admin" {
        Role::Admin
    } else {
        Role::Read
    };
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err("--name must be a short printable name (who holds the credential)".into());
    }
    let token = access::new_token().map_err(|e| chain(&e))?;
    secret_file::write_new(token_file, &token).map_err(|e| chain(&e))?;
    eprintln!(
        "wrote a new {} token to {}; add this table to hub.toml and restart the hub:",
        role.as_str(),
        token_file.display()
    );
    print!("{}", access::config_table(role, name, &token));
    Ok(())
}

async fn migrate(path: &Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| chain(&e))?;
    let BackendKind::Postgres(settings) = &config.store.kind else {
        return Err(format!(
            "{} uses the embedded store, which migrates itself; `migrate` is for [store] backend = \"postgres\"",
            path.display()
        ));
    };
    let applied = backend::postgres::migrate(settings)
        .await
        .map_err(|e| chain(&e))?;
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

async fn export(path: &Path, out: &Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| chain(&e))?;
    let store = backend::open(&config, false).await.map_err(|e| chain(&e))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| format!("cannot create {} ({e}); pick a new file", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let counts = backend::transfer::export(&*store, &mut writer)
        .await
        .map_err(|e| chain(&e))?;
    println!(
        "exported {} enrollments, {} used tokens, {} assignments, {} heartbeats to {}",
        counts.enrollments,
        counts.used_tokens,
        counts.assignments,
        counts.heartbeats,
        out.display()
    );
    Ok(())
}

async fn import(path: &Path, input: &Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| chain(&e))?;
    // Serving: records go through the store's group commit like a heartbeat's.
    let store = backend::open(&config, true).await.map_err(|e| chain(&e))?;
    let file =
        std::fs::File::open(input).map_err(|e| format!("cannot open {} ({e})", input.display()))?;
    let counts = backend::transfer::import(&*store, std::io::BufReader::new(file), config.history)
        .await
        .map_err(|e| chain(&e))?;
    println!(
        "imported {} enrollments, {} used tokens, {} assignments, {} heartbeats into {}",
        counts.enrollments,
        counts.used_tokens,
        counts.assignments,
        counts.heartbeats,
        path.display()
    );
    Ok(())
}

async fn forget(path: &Path, agent: &str) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| chain(&e))?;
    let store = backend::open(&config, false).await.map_err(|e| chain(&e))?;
    let forgotten = store.forget(agent).await.map_err(|e| chain(&e))?;
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

/// The error and its causes, one per line, so the fix in an inner message is not lost.
fn chain(error: &dyn std::error::Error) -> String {
    outpost_proto::text::error_chain(error, "\n  caused by: ")
}

fn fail(message: &str) -> ExitCode {
    eprintln!("outpost-hub: {message}");
    ExitCode::FAILURE
}
