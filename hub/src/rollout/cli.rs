//! `outpost-hub release set|list` and `outpost-hub rollout start|status|pause|resume|abort`: the rollout
//! endpoints ([`super::api`]) from the command line, through the admin client and credential of
//! `outpost-hub agents` ([`crate::admin::cli::Target`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;

use super::api::{ReleaseBody, Summary};
use super::model::{Amount, OnFailure, Release, WaveSpec};
use super::plan::{short, StartRequest};
use crate::admin::cli::{CliError, Target};

/// `outpost-hub release …`.
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Define (or redefine) a release: a source, the label selector choosing its sites, and the commit they
    /// run; pins every selected site to it.
    Set {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        /// A TOML file with one `[[source]]` table (as hub.toml's `[[assignment.source]]`); `${agent_id}` in
        /// its target or path is each site's id.
        #[arg(long)]
        source: PathBuf,
        /// Labels every site must carry, like app=shop,tier=edge.
        #[arg(long, default_value = "")]
        selector: String,
        /// The full commit id the sites run now.
        #[arg(long)]
        commit: String,
    },
    /// List the releases and the commit each runs.
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// How a rollout moves, from the command line.
#[derive(Debug, Args)]
pub struct StartArgs {
    #[arg(long)]
    pub release: String,
    /// The full commit id to move the release to.
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub id: Option<String>,
    /// One wave, in order; repeat for more. Items separated by commas: labels (`ring=canary`) choose its
    /// sites, a count (`3`) or a cumulative percentage (`50%`) its size. Sites left over form a last wave.
    #[arg(long = "wave")]
    pub waves: Vec<String>,
    /// Failed sites tolerated in the whole rollout: a count or a percentage (default 0).
    #[arg(long)]
    pub max_failures: Option<String>,
    /// Failed sites tolerated in one wave (default 0).
    #[arg(long)]
    pub max_failures_per_wave: Option<String>,
    /// A pinned site not Ready within this counts as failed (default 10m).
    #[arg(long)]
    pub progress_deadline: Option<String>,
    /// How long a wave stays healthy before the next starts (default 0s).
    #[arg(long)]
    pub soak: Option<String>,
    #[arg(long)]
    pub max_concurrency: Option<u64>,
    /// `rollback` (default) or `pause`.
    #[arg(long, value_parser = ["rollback", "pause"], default_value = "rollback")]
    pub on_failure: String,
}

/// `outpost-hub rollout …`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start moving a release to a new commit, wave by wave.
    Start {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        start: Box<StartArgs>,
    },
    /// Every rollout (or one, with --id): phase, waves, counts and failed sites.
    Status {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        id: Option<String>,
        /// Print JSON (with --id: the whole record, every site's state).
        #[arg(long)]
        json: bool,
    },
    /// Stop pinning new sites; sites keep what they have.
    Pause {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        id: String,
    },
    /// Go on after a pause.
    Resume {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        id: String,
    },
    /// Roll back now: every site pinned to the new commit goes back to the previous one.
    Abort {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        id: String,
    },
}

/// Reads one `--wave` value.
pub fn parse_wave(text: &str) -> Result<WaveSpec, CliError> {
    let mut wave = WaveSpec::default();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if let Some((k, v)) = item.split_once('=') {
            wave.selector
                .insert(k.trim().to_owned(), v.trim().to_owned());
        } else {
            let size =
                Amount::parse("--wave", item).map_err(|e| CliError::Labels(e.to_string()))?;
            wave.size = Some(size);
        }
    }
    crate::admin::check_labels(&wave.selector).map_err(CliError::Labels)?;
    Ok(wave)
}

fn amount(field: &str, text: &Option<String>) -> Result<Option<Amount>, CliError> {
    text.as_deref()
        .map(|t| Amount::parse(field, t).map_err(|e| CliError::Labels(e.to_string())))
        .transpose()
}

/// The request `start` sends.
pub fn start_request(args: &StartArgs) -> Result<StartRequest, CliError> {
    Ok(StartRequest {
        id: args.id.clone(),
        release: args.release.clone(),
        to_commit: args.to.clone(),
        waves: args
            .waves
            .iter()
            .map(|w| parse_wave(w))
            .collect::<Result<_, _>>()?,
        max_failures: amount("--max-failures", &args.max_failures)?,
        max_failures_per_wave: amount("--max-failures-per-wave", &args.max_failures_per_wave)?,
        progress_deadline: args.progress_deadline.clone(),
        soak: args.soak.clone(),
        max_concurrency: args.max_concurrency,
        on_failure: if args.on_failure == "pause" {
            OnFailure::Pause
        } else {
            OnFailure::Rollback
        },
    })
}

fn json(value: &impl serde::Serialize) -> Option<Vec<u8>> {
    serde_json::to_vec(value).ok()
}

/// Runs one `release` command; returns what to print.
pub async fn release(command: ReleaseCommand) -> Result<String, CliError> {
    match command {
        ReleaseCommand::Set {
            target,
            name,
            source,
            selector,
            commit,
        } => {
            let selector = crate::admin::parse_labels(&selector).map_err(CliError::Labels)?;
            let text = std::fs::read_to_string(&source).map_err(|e| CliError::Sources {
                path: source.clone(),
                message: e.to_string(),
            })?;
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct File {
                source: Vec<outpost_proto::wire::SourceSpec>,
            }
            let file: File = toml::from_str(&text).map_err(|e| CliError::Sources {
                path: source.clone(),
                message: e.to_string(),
            })?;
            let [spec] = <[_; 1]>::try_from(file.source).map_err(|_| CliError::Sources {
                path: source.clone(),
                message: "a release has exactly one [[source]] table".into(),
            })?;
            let (_, client) = target.open()?;
            let body = ReleaseBody {
                source: spec,
                selector,
                commit,
            };
            let answer = client
                .call(
                    Method::PUT,
                    &format!("/v1/admin/releases/{name}"),
                    json(&body),
                )
                .await?;
            #[derive(serde::Deserialize)]
            struct Set {
                sites: Vec<String>,
            }
            let set: Set = serde_json::from_slice(&answer)?;
            Ok(format!(
                "release {name:?} runs {} on {} sites\n",
                short(&body.commit),
                set.sites.len()
            ))
        }
        ReleaseCommand::List { target } => {
            let (_, client) = target.open()?;
            let answer = client.call(Method::GET, "/v1/admin/releases", None).await?;
            let releases: Vec<Release> = serde_json::from_slice(&answer)?;
            let mut out = format!("{:<24} {:<12} {}\n", "RELEASE", "COMMIT", "SELECTOR");
            for r in releases {
                let selector: Vec<String> =
                    r.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!(
                    "{:<24} {:<12} {}\n",
                    outpost_proto::text::printable(&r.name),
                    short(&r.commit),
                    outpost_proto::text::printable(&selector.join(","))
                ));
            }
            Ok(out)
        }
    }
}

/// Runs one `rollout` command; returns what to print.
pub async fn rollout(command: RolloutCommand) -> Result<String, CliError> {
    match command {
        RolloutCommand::Start { target, start } => {
            let request = start_request(&start)?;
            let (_, client) = target.open()?;
            let answer = client
                .call(Method::POST, "/v1/admin/rollouts", json(&request))
                .await?;
            let summary: Summary = serde_json::from_slice(&answer)?;
            Ok(format!(
                "started rollout {:?}\n{}",
                summary.id,
                render(&summary)
            ))
        }
        RolloutCommand::Status {
            target,
            id,
            json: raw,
        } => {
            let (_, client) = target.open()?;
            if let Some(id) = id {
                let answer = client
                    .call(Method::GET, &format!("/v1/admin/rollouts/{id}"), None)
                    .await?;
                let rollout: super::Rollout = serde_json::from_slice(&answer)?;
                if raw {
                    return Ok(format!("{}\n", serde_json::to_string_pretty(&rollout)?));
                }
                return Ok(render(&Summary::from(&rollout)));
            }
            let answer = client.call(Method::GET, "/v1/admin/rollouts", None).await?;
            let all: Vec<Summary> = serde_json::from_slice(&answer)?;
            if raw {
                return Ok(format!("{}\n", serde_json::to_string_pretty(&all)?));
            }
            Ok(all.iter().map(render).collect::<Vec<_>>().join("\n"))
        }
        RolloutCommand::Pause { target, id } => control(target, &id, "pause").await,
        RolloutCommand::Resume { target, id } => control(target, &id, "resume").await,
        RolloutCommand::Abort { target, id } => control(target, &id, "abort").await,
    }
}

async fn control(target: Target, id: &str, verb: &str) -> Result<String, CliError> {
    let (_, client) = target.open()?;
    let answer = client
        .call(
            Method::POST,
            &format!("/v1/admin/rollouts/{id}/{verb}"),
            None,
        )
        .await?;
    let summary: Summary = serde_json::from_slice(&answer)?;
    Ok(render(&summary))
}

/// A rollout as text: its phase, each wave's counts, failed sites with their errors.
pub fn render(s: &Summary) -> String {
    let p = outpost_proto::text::printable;
    let mut out = format!(
        "rollout {} of release {}: {} ({} -> {})\n",
        p(&s.id),
        p(&s.release),
        s.phase,
        short(&s.from_commit),
        short(&s.to_commit)
    );
    if let Some(reason) = &s.reason {
        out.push_str(&format!("  why: {}\n", p(reason)));
    }
    for (index, wave) in s.waves.iter().enumerate() {
        let mark = if wave.passed_ms.is_some() {
            "passed"
        } else if index == s.current_wave && wave.started_ms.is_some() {
            "current"
        } else if wave.started_ms.is_some() {
            "started"
        } else {
            "waiting"
        };
        let counts: Vec<String> = wave
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!(
            "  wave {} {:?} ({} sites, {mark}): {}\n",
            index + 1,
            p(&wave.name),
            wave.sites,
            counts.join(", ")
        ));
    }
    for (site, error) in &s.failures {
        out.push_str(&format!("  failed {}: {}\n", p(site), p(error)));
    }
    out
}
