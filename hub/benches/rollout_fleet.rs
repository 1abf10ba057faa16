//! A 5-wave rollout through a real hub process (issue 19): 10,000 simulated agents send signed heartbeats over
//! HTTP and react to the assignments in the hub's replies as agents do (the next heartbeat reports the pinned
//! commit applied and Ready, or Failed for a few), 0.5% of them never come online. Prints the wall time, the
//! hub's CPU, the heartbeats sent, and checks that the decisions followed the strategy: waves in order, no site
//! given the new commit before its wave started, never more than `max_concurrency` sites in progress, the
//! offline sites deferred, the failing ones failed and the rest Ready.
//!
//! `cargo bench -p outpost-hub --bench rollout_fleet`. Knobs: `FLEET_AGENTS` (10000), `FLEET_INTERVAL_SECS`
//! (10; every agent's heartbeat interval), `FLEET_PG=1` to run the hub on PostgreSQL (Debian's `postgresql`).
//! The bench `rollout` measures the driver alone, in-process; this one adds HTTP, signatures and the store.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::ChildHub;
use common::postgres::PgCluster;
use common::{cpu_secs, env_knob, heartbeat_request, Agent, TestError, ADMIN_TOKEN, JSON};
use outpost_proto::wire::{Heartbeat, SourceState, SourceStatus};
use serde_json::{json, Value};

const NAME: &str = "hub.rollout.bench:8443";
const FROM: &str = "1111111111111111111111111111111111111111";
const TO: &str = "2222222222222222222222222222222222222222";
const MAX_CONCURRENCY: usize = 2_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 64;
/// How long the whole run may take before the bench gives up.
const GIVE_UP: Duration = Duration::from_secs(900);

fn now_ms() -> u64 {
    outpost_hub::state::now_ms()
}

/// What one simulated agent runs and has seen.
#[derive(Default, Clone)]
struct SimState {
    seq: u64,
    generation: u64,
    commit: Option<String>,
    /// When a reply first pinned [`TO`].
    got_new_ms: Option<u64>,
}

struct Sim {
    agents: Vec<Agent>,
    states: Vec<Mutex<SimState>>,
    /// Never sends a heartbeat.
    offline: Vec<bool>,
    /// Reports the new commit Failed.
    failing: Vec<bool>,
    sent: std::sync::atomic::AtomicU64,
}

impl Sim {
    fn heartbeat(&self, i: usize) -> Heartbeat {
        let mut s = self.states[i].lock().unwrap();
        s.seq += 1;
        let mut hb = self.agents[i].heartbeat(s.seq, s.generation);
        hb.sources.clear();
        if let Some(commit) = &s.commit {
            let failed = self.failing[i] && commit == TO;
            let mut source = SourceStatus::new(
                "shop",
                if failed {
                    SourceState::Failed
                } else {
                    SourceState::Ready
                },
            );
            source.fetched_revision = Some(commit.clone());
            let applied = if failed { FROM } else { commit.as_str() };
            source.applied_revision = Some(applied.into());
            source.last_good_revision = Some(applied.into());
            source.object_count = 3;
            if failed {
                source.last_error = Some("Deployment shop: not healthy within 5m".into());
            }
            hb.sources.push(source);
        }
        hb
    }

    /// Takes the assignment from a reply, as an agent does.
    fn take(&self, i: usize, reply: &Value) {
        let Some(assignment) = reply.get("assignment").filter(|a| !a.is_null()) else {
            return;
        };
        let mut s = self.states[i].lock().unwrap();
        let generation = assignment["generation"].as_u64().unwrap_or(0);
        if generation <= s.generation {
            return;
        }
        s.generation = generation;
        let commit = assignment["sources"]
            .as_array()
            .and_then(|sources| sources.iter().find(|s| s["name"] == "shop"))
            .and_then(|s| s["commit"].as_str())
            .map(str::to_owned);
        if commit.as_deref() == Some(TO) && s.got_new_ms.is_none() {
            s.got_new_ms = Some(now_ms());
        }
        s.commit = commit;
    }
}

async fn beat(sim: &Sim, client: &reqwest::Client, base: &str, i: usize) -> Result<(), TestError> {
    let body = sim.heartbeat(i).to_body()?;
    let request = heartbeat_request(client, base, NAME, &sim.agents[i], body)?;
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await?;
    if status != 200 {
        return Err(format!(
            "heartbeat answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
        .into());
    }
    sim.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sim.take(i, &serde_json::from_slice(&bytes)?);
    Ok(())
}

/// Every online agent once per `interval`, spread evenly, until `stop` is set.
async fn fleet_loop(
    sim: Arc<Sim>,
    base: String,
    interval: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let online: Vec<usize> = (0..sim.agents.len()).filter(|i| !sim.offline[*i]).collect();
    let started = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let i = online[(n as usize) % online.len()];
        let due = interval.mul_f64(n as f64 / online.len() as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        n += 1;
        let permit = gate.clone().acquire_owned().await.expect("gate");
        let (sim, client, base) = (sim.clone(), client.clone(), base.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = beat(&sim, &client, &base, i).await {
                eprintln!("agent {i}: {e}");
            }
        });
    }
    // Heartbeats in flight finish before the hub goes away.
    let _ = gate.acquire_many(CONCURRENCY as u32).await;
}

async fn admin(
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, TestError> {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.parse()?, format!("{base}{path}"))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"));
    if let Some(body) = body {
        request = request.header("Content-Type", JSON).body(body.to_string());
    }
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    let text = answer.text().await?;
    if !(200..300).contains(&status) {
        return Err(format!("{method} {path}: {status} {text}").into());
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), TestError> {
    common::install_crypto_provider();
    let count = env_knob("FLEET_AGENTS", 10_000) as usize;
    let interval = Duration::from_secs(env_knob("FLEET_INTERVAL_SECS", 10));
    let agents: Vec<Agent> = (0..count)
        .map(|i| Agent::new(&format!("shop-{i:05}")))
        .collect::<Result<_, _>>()?;
    let mut text = format!(
        "names = [\"{NAME}\"]\nhistory = 20\nheartbeat_interval = \"{}s\"\nrollout_interval = \"1s\"\n",
        interval.as_secs()
    );
    for agent in &agents {
        text.push_str(&agent.config_table(""));
    }
    let pg = if env_knob("FLEET_PG", 0) == 1 {
        let pg = PgCluster::start()?;
        text.push_str(&pg.store_table());
        Some(pg)
    } else {
        None
    };
    let hub = ChildHub::start_with_key(&text, None, None)?;
    let base = hub.base();
    let sim = Arc::new(Sim {
        offline: (0..count).map(|i| i % 200 == 7).collect(),
        failing: (0..count).map(|i| i % 1000 == 501).collect(),
        states: (0..count)
            .map(|_| Mutex::new(SimState::default()))
            .collect(),
        agents,
        sent: Default::default(),
    });
    let store = if pg.is_some() {
        "PostgreSQL"
    } else {
        "embedded store"
    };
    println!(
        "{count} agents every {}s on the {store}",
        interval.as_secs()
    );

    // The release pins every site to FROM; wait until the fleet runs it.
    let started = Instant::now();
    let source = json!({"name": "shop", "url": "https://git.example.com/shop.git", "commit": FROM, "target": "kubernetes"});
    admin(
        &base,
        "PUT",
        "/v1/admin/releases/shop",
        Some(json!({"source": source, "selector": {}, "commit": FROM})),
    )
    .await?;
    println!(
        "release set: {count} assignments written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fleet = tokio::spawn(fleet_loop(
        sim.clone(),
        base.clone(),
        interval,
        stop.clone(),
    ));
    let on_from = |sim: &Sim| {
        (0..count)
            .filter(|i| !sim.offline[*i])
            .all(|i| sim.states[i].lock().unwrap().commit.as_deref() == Some(FROM))
    };
    while !on_from(&sim) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(interval).await;

    // Five waves.
    let waves: Vec<Value> = ["1%", "10%", "25%", "50%", "100%"]
        .iter()
        .map(|s| json!({"size": s}))
        .collect();
    let cpu_before = cpu_secs(hub.pid)?;
    let sent_before = sim.sent.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    admin(
        &base,
        "POST",
        "/v1/admin/rollouts",
        Some(json!({
            "id": "to-two", "release": "shop", "to_commit": TO, "waves": waves,
            "max_failures": "1%", "max_failures_per_wave": "5%", "progress_deadline": "10m",
            "max_concurrency": MAX_CONCURRENCY,
        })),
    )
    .await?;
    let record = loop {
        let r = match admin(&base, "GET", "/v1/admin/rollouts/to-two", None).await {
            Ok(r) => r,
            Err(e) => {
                let log = hub.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("hub log (last lines, newest first):\n{}", tail.join("\n"));
                return Err(e);
            }
        };
        let phase = r["phase"].as_str().unwrap_or("").to_owned();
        if phase != "Progressing" {
            break r;
        }
        if started.elapsed() > GIVE_UP {
            return Err(format!("the rollout did not finish in {GIVE_UP:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let wall = started.elapsed();
    let cpu = cpu_secs(hub.pid)? - cpu_before;
    let sent = sim.sent.load(std::sync::atomic::Ordering::Relaxed) - sent_before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = fleet.await;
    println!(
        "rollout {}: {:.1} s wall, hub CPU {:.1} s ({:.0}% of one core), {sent} heartbeats ({:.0}/s)",
        record["phase"].as_str().unwrap_or("?"),
        wall.as_secs_f64(),
        cpu,
        100.0 * cpu / wall.as_secs_f64(),
        sent as f64 / wall.as_secs_f64()
    );
    check(&sim, &record)?;
    drop(pg);
    Ok(())
}

/// The decisions followed the strategy; prints the per-wave figures.
fn check(sim: &Sim, record: &Value) -> Result<(), TestError> {
    if record["phase"] != "Succeeded" {
        return Err(format!("rollout ended {}: {}", record["phase"], record["reason"]).into());
    }
    let waves = record["waves"].as_array().ok_or("no waves")?;
    let sites = record["sites"].as_object().ok_or("no sites")?;
    let index = |id: &str| {
        id.trim_start_matches("shop-")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    };
    let mut previous_passed = 0;
    for (n, wave) in waves.iter().enumerate() {
        let started = wave["started_ms"].as_u64().ok_or("a wave never started")?;
        let passed = wave["passed_ms"].as_u64().ok_or("a wave never passed")?;
        if started < previous_passed {
            return Err(format!("wave {n} started before wave {} passed", n - 1).into());
        }
        previous_passed = passed;
        let members = wave["sites"].as_array().ok_or("no wave sites")?;
        for id in members.iter().filter_map(Value::as_str) {
            let got = sim.states[index(id)].lock().unwrap().got_new_ms;
            if got.is_some_and(|t| t < started) {
                return Err(
                    format!("{id} of wave {n} got the new commit before its wave started").into(),
                );
            }
        }
        println!(
            "wave {n}: {} sites, {:.1} s",
            members.len(),
            (passed - started) as f64 / 1000.0
        );
    }
    // In progress = pinned to the new commit and not yet Ready: the overlap of [pinned_ms, since_ms) spans.
    let mut edges: Vec<(u64, i64)> = Vec::new();
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for (id, site) in sites {
        let state = site["state"].as_str().unwrap_or("?").to_owned();
        *by_state.entry(state.clone()).or_default() += 1;
        let i = index(id);
        let want = if sim.offline[i] {
            "Deferred"
        } else if sim.failing[i] {
            "Failed"
        } else {
            "Ready"
        };
        if state != want {
            return Err(format!("{id} ended {state}, expected {want}").into());
        }
        if let (Some(pinned), "Ready") = (site["pinned_ms"].as_u64(), state.as_str()) {
            edges.push((pinned, 1));
            edges.push((site["since_ms"].as_u64().unwrap_or(pinned), -1));
        }
    }
    edges.sort();
    let (mut now_in, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        now_in += d;
        peak = peak.max(now_in);
    }
    if peak as usize > MAX_CONCURRENCY {
        return Err(format!("{peak} sites in progress at once, over {MAX_CONCURRENCY}").into());
    }
    println!(
        "final: {by_state:?}; at most {peak} sites in progress at once (limit {MAX_CONCURRENCY})"
    );
    println!("decisions follow the strategy: waves in order, nobody early, limits kept, offline deferred");
    Ok(())
}
