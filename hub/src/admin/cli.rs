//! `outpost-hub agents …` and `outpost-hub token create`: the admin API from the command line. Each command
//! reads an admin credential from `--token-file`, finds the hub from `--config` (as `status` does) and makes
//! one request ([`super::client`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use hyper::Method;
use outpost_proto::wire::SourceSpec;
use serde::Deserialize;

use super::client::{AdminClient, ClientError};
use super::{AdminAgent, AssignBody, LabelsBody, TokenBody};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::secret_file::SecretFileError;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the admin credential: {0}")]
    Credential(SecretFileError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--labels: {0}")]
    Labels(String),
    #[error("--expires {0:?} is not a duration; write it like \"24h\" or \"7d\"")]
    Expires(String),
    #[error("cannot read the sources file {path}: {message}; write [[source]] tables as in hub.toml's [[assignment.source]]")]
    Sources { path: PathBuf, message: String },
    #[error("the new token: {0}")]
    NewToken(SecretFileError),
    #[error("cannot make a token: {0}")]
    Random(#[from] crate::access::NoRandomness),
    #[error("the hub's answer is not what this version expects: {0}")]
    Answer(#[from] serde_json::Error),
}

/// Where the hub is and the admin credential to present.
#[derive(Debug, Args)]
pub struct Target {
    /// The hub's config: its `listen` address and `[tls]` certificate say how to reach it.
    #[arg(long, env = "OUTPOST_HUB_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// A file holding an admin credential (`outpost-hub credential create --role admin`).
    #[arg(long, env = "OUTPOST_HUB_TOKEN_FILE")]
    pub token_file: PathBuf,
}

impl Target {
    pub fn open(&self) -> Result<(Config, AdminClient), CliError> {
        let config = Config::load(&self.config)?;
        let token = crate::secret_file::read(&self.token_file).map_err(CliError::Credential)?;
        let client = AdminClient::new(&config, token)?;
        Ok((config, client))
    }
}

/// `outpost-hub agents …`.
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List every agent: origin, key fingerprint, labels, last seen.
    List {
        #[command(flatten)]
        target: Target,
        /// Print the JSON listing instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enroll an agent by its public key (what `outpost keygen` printed on it); no token needed.
    Enroll {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        public_key: String,
        /// Labels like site=berlin,tier=edge.
        #[arg(long, default_value = "")]
        labels: String,
    },
    /// Refuse the agent's key from now on; its records stay (see `forget`).
    Revoke {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        agent: String,
    },
    /// Remove the agent's enrollment, last heartbeat, history and labels from the running hub.
    Forget {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        agent: String,
    },
    /// Replace the agent's labels (an empty --labels "" removes them).
    Label {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        labels: String,
    },
    /// Set the agent's assignment from a TOML file of `[[source]]` tables; prints the new generation.
    Assign {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        agent: String,
        /// `[[source]]` tables, each as an `[[assignment.source]]` of hub.toml.
        #[arg(long)]
        sources: PathBuf,
    },
}

/// `outpost-hub token create`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a bootstrap token that enrolls one agent: written to --out (mode 0600), never printed; the hub
    /// keeps only its hash, with the labels the agent gets and when the token expires.
    Create {
        #[command(flatten)]
        target: Target,
        /// Where to write the new token; never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Labels the enrolled agent starts with, like site=berlin,tier=edge.
        #[arg(long, default_value = "")]
        labels: String,
        /// How long the token stays usable, like 24h or 7d; without it, until used.
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default, rename = "source")]
    sources: Vec<SourceSpec>,
}

fn json(value: &impl serde::Serialize) -> Option<Vec<u8>> {
    serde_json::to_vec(value).ok()
}

/// Runs one `agents` command; returns what to print.
pub async fn agents(command: AgentsCommand) -> Result<String, CliError> {
    match command {
        AgentsCommand::List { target, json: raw } => {
            let (_, client) = target.open()?;
            let body = client.call(Method::GET, "/v1/admin/agents", None).await?;
            let agents: Vec<AdminAgent> = serde_json::from_slice(&body)?;
            if raw {
                return Ok(format!("{}\n", serde_json::to_string_pretty(&agents)?));
            }
            Ok(table(&agents))
        }
        AgentsCommand::Enroll {
            target,
            agent,
            public_key,
            labels,
        } => {
            let labels = super::parse_labels(&labels).map_err(CliError::Labels)?;
            let (_, client) = target.open()?;
            let body =
                serde_json::json!({"agent_id": agent, "public_key": public_key, "labels": labels});
            client
                .call(Method::POST, "/v1/admin/agents", json(&body))
                .await?;
            Ok(format!("agent {agent:?} is enrolled\n"))
        }
        AgentsCommand::Revoke { target, agent } => {
            let (_, client) = target.open()?;
            let path = format!("/v1/admin/agents/{agent}/revoke");
            client.call(Method::POST, &path, None).await?;
            Ok(format!(
                "agent {agent:?} is revoked: its heartbeats are refused from now on\n"
            ))
        }
        AgentsCommand::Forget { target, agent } => {
            let (_, client) = target.open()?;
            let path = format!("/v1/admin/agents/{agent}");
            let body = client.call(Method::DELETE, &path, None).await?;
            Ok(format!(
                "forgot agent {agent:?}: {}\n",
                String::from_utf8_lossy(&body)
            ))
        }
        AgentsCommand::Label {
            target,
            agent,
            labels,
        } => {
            let labels = super::parse_labels(&labels).map_err(CliError::Labels)?;
            let (_, client) = target.open()?;
            let path = format!("/v1/admin/agents/{agent}/labels");
            client
                .call(Method::PUT, &path, json(&LabelsBody { labels }))
                .await?;
            Ok(format!("set the labels of agent {agent:?}\n"))
        }
        AgentsCommand::Assign {
            target,
            agent,
            sources,
        } => {
            let file = read_sources(&sources)?;
            let (_, client) = target.open()?;
            let path = format!("/v1/admin/agents/{agent}/assignment");
            let body = AssignBody {
                sources: file.sources,
            };
            let answer = client.call(Method::PUT, &path, json(&body)).await?;
            #[derive(Deserialize)]
            struct Set {
                generation: u64,
            }
            let set: Set = serde_json::from_slice(&answer)?;
            Ok(format!(
                "agent {agent:?} is assigned generation {}; it takes it with its next heartbeat\n",
                set.generation
            ))
        }
    }
}

fn read_sources(path: &Path) -> Result<SourcesFile, CliError> {
    let problem = |message: String| CliError::Sources {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    toml::from_str(&text).map_err(|e| problem(e.to_string()))
}

/// Runs `token create`; returns what to print (never the token).
pub async fn token(command: TokenCommand, now_ms: u64) -> Result<String, CliError> {
    let TokenCommand::Create {
        target,
        out,
        labels,
        expires,
    } = command;
    let labels = super::parse_labels(&labels).map_err(CliError::Labels)?;
    let expires_at_ms = match &expires {
        Some(text) => match crate::config::parse_duration(text) {
            Some(d) if !d.is_zero() => Some(now_ms.saturating_add(millis(d))),
            _ => return Err(CliError::Expires(text.clone())),
        },
        None => None,
    };
    let (config, client) = target.open()?;
    let token = crate::access::new_token()?;
    let body = TokenBody {
        token_sha256: crate::access::hex(&crate::access::sha256(token.as_bytes())),
        labels,
        expires_at_ms,
    };
    // The file first: a token the hub knows but nobody holds is harmless; the reverse would be lost.
    crate::secret_file::write_new(&out, &token).map_err(CliError::NewToken)?;
    let answer = match client
        .call(Method::POST, "/v1/admin/tokens", json(&body))
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            let _ = std::fs::remove_file(&out);
            return Err(e.into());
        }
    };
    #[derive(Deserialize)]
    struct Issued {
        hub_key_fingerprint: String,
    }
    let issued: Issued = serde_json::from_slice(&answer)?;
    let until = expires_at_ms
        .and_then(|ms| {
            outpost_proto::wire::format_timestamp(i64::try_from(ms / 1000).unwrap_or(i64::MAX))
        })
        .map_or("until it is used".to_owned(), |at| format!("until {at}"));
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!(
        "wrote a bootstrap token to {} (it enrolls one agent, {until}); on the site, run:\n  outpost enroll --hub {scheme}://{} --token-file {} --hub-key-fingerprint {}\n",
        out.display(),
        crate::status::dial_addr(config.listen),
        out.display(),
        issued.hub_key_fingerprint
    ))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The listing as a table.
fn table(agents: &[AdminAgent]) -> String {
    let mut out = format!(
        "{:<24} {:<9} {:<20} {}\n",
        "AGENT", "ORIGIN", "LAST SEEN", "LABELS"
    );
    for agent in agents {
        let seen = agent
            .last_seen_ms
            .and_then(crate::status::format_ms)
            .unwrap_or_else(|| "never".into());
        let labels: Vec<String> = agent
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "{:<24} {:<9} {:<20} {}\n",
            outpost_proto::text::printable(&agent.agent_id),
            agent.origin,
            seen,
            outpost_proto::text::printable(&labels.join(","))
        ));
    }
    out
}
