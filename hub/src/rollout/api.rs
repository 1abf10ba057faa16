//! The admin endpoints of releases and rollouts, behind an `[[admin]]` credential like the rest of the admin
//! API ([`crate::admin`]). One entry, [`handle`], so the router needs one line for all of them.
//!
//! | request | what it does |
//! |---|---|
//! | `GET /v1/admin/releases` | every release |
//! | `PUT /v1/admin/releases/{name}` `{"source", "selector", "commit"}` | define a release; pins its sites to `commit` |
//! | `GET /v1/admin/rollouts` | every rollout, summarised ([`Summary`]) |
//! | `GET /v1/admin/rollouts/{id}` | one rollout's whole record: every site's state, the events |
//! | `POST /v1/admin/rollouts` [`StartRequest`] | start a rollout of a release to a new commit |
//! | `POST /v1/admin/rollouts/{id}/pause` \| `resume` \| `abort` | the operator's controls |
//!
//! A release cannot be redefined, and a second rollout of it cannot start, while one is moving it.

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_proto::wire::{Assignment, SourceSpec};
use serde::{Deserialize, Serialize};

use super::control;
use super::driver;
use super::model::{Release, Rollout, SpecError};
use super::plan::{plan, StartRequest};
use crate::reply::{store_failure, Rejection, Reply};
use crate::state::HubState;
use crate::store::Labels;

const RELEASES: &str = "/v1/admin/releases";
const ROLLOUTS: &str = "/v1/admin/rollouts";

/// `PUT /v1/admin/releases/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    pub source: SourceSpec,
    #[serde(default)]
    pub selector: Labels,
    pub commit: String,
}

/// One wave as `GET /v1/admin/rollouts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveSummary {
    pub name: String,
    pub sites: usize,
    pub started_ms: Option<u64>,
    pub passed_ms: Option<u64>,
    /// Sites by state.
    pub counts: BTreeMap<String, usize>,
}

/// A rollout without its per-site records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub release: String,
    pub phase: String,
    pub reason: Option<String>,
    pub from_commit: String,
    pub to_commit: String,
    pub current_wave: usize,
    pub waves: Vec<WaveSummary>,
    pub counts: BTreeMap<String, usize>,
    /// Failed sites and their own signed `last_error`.
    pub failures: BTreeMap<String, String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl From<&Rollout> for Summary {
    fn from(r: &Rollout) -> Summary {
        let waves = r
            .waves
            .iter()
            .enumerate()
            .map(|(index, w)| {
                let mut counts = BTreeMap::new();
                for site in r.sites.values().filter(|s| s.wave == index) {
                    *counts.entry(site.state.as_str().to_owned()).or_insert(0) += 1;
                }
                WaveSummary {
                    name: w.name.clone(),
                    sites: w.sites.len(),
                    started_ms: w.started_ms,
                    passed_ms: w.passed_ms,
                    counts,
                }
            })
            .collect();
        Summary {
            id: r.id.clone(),
            release: r.release.clone(),
            phase: r.phase.as_str().to_owned(),
            reason: r.reason.clone(),
            from_commit: r.from_commit.clone(),
            to_commit: r.to_commit.clone(),
            current_wave: r.current_wave,
            waves,
            counts: r
                .counts()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            failures: r.failures.clone(),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }
}

/// Whether `path` is one of these endpoints.
pub fn owns(path: &str) -> bool {
    [RELEASES, ROLLOUTS].iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn bad(message: impl Into<String>) -> Rejection {
    Rejection::new(400, "invalid_rollout", message.into())
}

fn spec(e: SpecError) -> Rejection {
    bad(e.to_string())
}

fn failed(what: &str) -> impl Fn(crate::backend::BackendError) -> Rejection + '_ {
    move |e| store_failure(&e, what.to_owned())
}

fn not_found(what: String) -> Rejection {
    Rejection::new(404, "not_found", what)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| bad(format!("the body must be JSON {shape}: {e}")))
}

/// Runs one request below `/v1/admin/releases` or `/v1/admin/rollouts` for the credential `by`.
pub async fn handle(
    state: &Arc<HubState>,
    method: &str,
    path: &str,
    body: &[u8],
    by: &str,
    now_ms: u64,
) -> Result<Reply, Rejection> {
    let rest = path.strip_prefix("/v1/admin/").unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["releases"]) => {
            let releases = state
                .store
                .releases()
                .await
                .map_err(failed("cannot read the releases"))?;
            Reply::json(200, &releases)
        }
        ("PUT", ["releases", name]) => put_release(state, name, body, by, now_ms).await,
        ("GET", ["rollouts"]) => {
            let all = state
                .store
                .rollouts()
                .await
                .map_err(failed("cannot read the rollouts"))?;
            let summaries: Vec<Summary> = all.iter().map(Summary::from).collect();
            Reply::json(200, &summaries)
        }
        ("GET", ["rollouts", id]) => {
            let all = state
                .store
                .rollouts()
                .await
                .map_err(failed("cannot read the rollouts"))?;
            match all.into_iter().find(|r| r.id == *id) {
                Some(r) => Reply::json(200, &r),
                None => Err(not_found(format!(
                    "no rollout {id:?}; `outpost-hub rollout status` lists them"
                ))),
            }
        }
        ("POST", ["rollouts"]) => start(state, body, by, now_ms).await,
        ("POST", ["rollouts", id, verb @ ("pause" | "resume" | "abort")]) => {
            let verb = *verb;
            let owner = format!("{}/admin", state.rollout_owner);
            let outcome = driver::control(state, id, &owner, |r| match verb {
                "pause" => control::pause(r, by, now_ms).map(|()| Vec::new()),
                "resume" => control::resume(r, by, now_ms).map(|()| Vec::new()),
                _ => control::abort(r, by, now_ms),
            })
            .await
            .map_err(failed("cannot change the rollout"))?;
            match outcome {
                None => Err(not_found(format!("no rollout {id:?}"))),
                Some(Err(e)) => Err(Rejection::new(409, "rollout_state", e.to_string())),
                Some(Ok(r)) => {
                    tracing::info!(rollout = %r.id, %by, "rollout {verb}d through the admin API");
                    Reply::json(200, &Summary::from(&r))
                }
            }
        }
        _ => Err(not_found(format!(
            "no admin endpoint {method} {path}; see `outpost-hub rollout --help`"
        ))),
    }
}

/// The agents a release may select, with their operator-set labels (never those an agent reports).
async fn known_sites(state: &HubState) -> Result<BTreeMap<String, Labels>, Rejection> {
    let mut labels: BTreeMap<String, Labels> = state
        .store
        .labels()
        .await
        .map_err(failed("cannot read labels"))?
        .into_iter()
        .collect();
    let ids: Vec<String> = state.registry().iter().map(|k| k.id.clone()).collect();
    Ok(ids
        .into_iter()
        .map(|id| {
            let l = labels.remove(&id).unwrap_or_default();
            (id, l)
        })
        .collect())
}

async fn moving(state: &HubState, release: &str) -> Result<Option<String>, Rejection> {
    let all = state
        .store
        .rollouts()
        .await
        .map_err(failed("cannot read the rollouts"))?;
    Ok(all
        .into_iter()
        .find(|r| {
            r.release == release
                && matches!(
                    r.phase,
                    super::model::Phase::Progressing | super::model::Phase::Paused
                )
        })
        .map(|r| r.id))
}

async fn put_release(
    state: &Arc<HubState>,
    name: &str,
    body: &[u8],
    by: &str,
    now_ms: u64,
) -> Result<Reply, Rejection> {
    super::plan::check_id(name).map_err(spec)?;
    let request: ReleaseBody = parse(
        body,
        "{\"source\": {...}, \"selector\": {...}, \"commit\": \"<40 hex>\"}",
    )?;
    crate::admin::check_labels(&request.selector).map_err(bad)?;
    let pinned = driver::pinned(
        &request.source,
        &request.commit,
        "site",
        &crate::store::Labels::new(),
    );
    Assignment::new(1, vec![pinned]).validate().map_err(|e| {
        bad(format!(
            "the release's source is not valid with commit {:?}: {e}",
            request.commit
        ))
    })?;
    if let Some(id) = moving(state, name).await? {
        return Err(Rejection::new(409, "rollout_in_progress", format!("rollout {id:?} is moving release {name:?}; wait for it, or abort it, before redefining the release")));
    }
    let release = Release {
        name: name.to_owned(),
        source: request.source,
        selector: request.selector,
        commit: request.commit,
        updated_ms: now_ms,
    };
    let sites: Vec<String> = known_sites(state)
        .await?
        .into_iter()
        .filter(|(_, l)| super::model::matches(&release.selector, l))
        .map(|(id, _)| id)
        .collect();
    state
        .store
        .put_release(release.clone())
        .await
        .map_err(failed("cannot store the release"))?;
    let count = driver::pin_release(state, &release, &sites)
        .await
        .map_err(failed("cannot pin the release's sites"))?;
    tracing::info!(release = %name, sites = count, %by, "release defined through the admin API");
    Reply::json(
        200,
        &serde_json::json!({"release": release, "sites": sites}),
    )
}

async fn start(
    state: &Arc<HubState>,
    body: &[u8],
    by: &str,
    now_ms: u64,
) -> Result<Reply, Rejection> {
    let request: StartRequest = parse(body, "{\"release\", \"to_commit\", \"waves\", ...}")?;
    let releases = state
        .store
        .releases()
        .await
        .map_err(failed("cannot read the releases"))?;
    let Some(release) = releases.into_iter().find(|r| r.name == request.release) else {
        return Err(not_found(format!(
            "no release {:?}; define it with PUT /v1/admin/releases/{{name}} (`outpost-hub release set`)",
            request.release
        )));
    };
    for wave in &request.waves {
        crate::admin::check_labels(&wave.selector).map_err(bad)?;
    }
    let sites = known_sites(state).await?;
    let rollout = plan(&request, &release, &sites, now_ms).map_err(spec)?;
    if let Some(id) = moving(state, &release.name).await? {
        return Err(Rejection::new(
            409,
            "rollout_in_progress",
            format!(
                "rollout {id:?} is already moving release {:?}; wait for it, pause or abort it",
                release.name
            ),
        ));
    }
    let summary = Summary::from(&rollout);
    let created = state
        .store
        .create_rollout(rollout)
        .await
        .map_err(failed("cannot store the rollout"))?;
    if !created {
        return Err(Rejection::new(
            409,
            "rollout_exists",
            format!(
                "a rollout {:?} exists already; give this one another id",
                summary.id
            ),
        ));
    }
    state.rollout_wake.notify_one();
    tracing::info!(rollout = %summary.id, %by, "rollout started through the admin API");
    Reply::json(201, &summary)
}
