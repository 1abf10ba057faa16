//! A fleet rollout at scale (issue 19): 10,000 simulated agents through a 5-wave rollout (1%, 10%, 25%, 50%,
//! 100%), driven by the hub's real driver ([`outpost_hub::rollout::driver::tick`]) over the real embedded
//! store, in one process. Prints the wall time, the CPU time (the whole process: the driver and the simulated
//! agents), the time spent in driver steps, and checks that the decisions followed the strategy: waves in
//! order, nobody pinned before its wave, `max_concurrency` never exceeded, offline sites deferred.
//!
//! The agents are simulated in-process, not as 10,000 HTTP clients: on this 2-core machine the signing and
//! verifying of 10,000 heartbeats per round would measure the load generator, not the rollout. An agent
//! "reacts as agents do": when its stored assignment has a newer generation it reports that generation and
//! the pinned commit Ready in its next heartbeat, recorded through the store like a verified heartbeat.
//!
//! `cargo bench -p outpost-hub --bench rollout`. Knobs: `ROLLOUT_AGENTS` (10000), `ROLLOUT_OFFLINE` (50),
//! `ROLLOUT_CONCURRENCY` (2000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_hub::rollout::driver;
use outpost_hub::rollout::model::{Amount, Phase, Release, SiteState, WaveSpec};
use outpost_hub::rollout::plan::{plan, StartRequest};
use outpost_hub::state::{now_ms, HubState};
use outpost_hub::store::{Enrollment, Store};
use outpost_proto::keys::Pkcs8Document;
use outpost_proto::wire::{Heartbeat, SourceSpec, SourceState, SourceStatus};

type Error = Box<dyn std::error::Error + Send + Sync>;

const FROM: &str = "1111111111111111111111111111111111111111";
const TO: &str = "2222222222222222222222222222222222222222";
/// Heartbeats recorded at once, as many agents' requests would be in flight.
const IN_FLIGHT: usize = 512;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct we hand it and has no other preconditions.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// One simulated agent: its seq and the generation it runs.
struct Agent {
    id: String,
    seq: u64,
    running: u64,
}

fn heartbeat(agent: &Agent, commit: Option<&str>) -> Heartbeat {
    let mut source = SourceStatus::new("shop", SourceState::Ready);
    source.applied_revision = commit.map(str::to_owned);
    source.fetched_revision = commit.map(str::to_owned);
    source.last_good_revision = commit.map(str::to_owned);
    Heartbeat {
        schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
        agent_id: agent.id.clone(),
        seq: agent.seq,
        boot_id: "bench".into(),
        observed_at: "2026-01-01T00:00:00Z".into(),
        agent_version: "bench".into(),
        assignment_generation: agent.running,
        dropped: 0,
        sources: if commit.is_some() {
            vec![source]
        } else {
            Vec::new()
        },
        assignment_error: None,
    }
}

/// Every online agent whose assignment is newer than what it runs takes it and reports it Ready; returns
/// how many reacted.
async fn react(state: &HubState, agents: &mut [Agent], received_ms: u64) -> Result<usize, Error> {
    let mut reacted = 0;
    for chunk in agents.chunks_mut(IN_FLIGHT) {
        let mut pending = Vec::new();
        for agent in chunk.iter_mut() {
            let Some(assignment) = state.store.assignment(&agent.id).await? else {
                continue;
            };
            if assignment.generation <= agent.running {
                continue;
            }
            agent.running = assignment.generation;
            agent.seq += 1;
            let commit = assignment
                .sources
                .iter()
                .find(|s| s.name == "shop")
                .and_then(|s| s.commit.clone());
            let beat = heartbeat(agent, commit.as_deref());
            let body = Bytes::from(serde_json::to_vec(&beat)?);
            pending.push(state.store.record(beat, body, received_ms, 10));
            reacted += 1;
        }
        for outcome in futures_util::future::join_all(pending).await {
            outcome?;
        }
    }
    Ok(reacted)
}

fn main() -> Result<(), Error> {
    let count = env("ROLLOUT_AGENTS", 10_000);
    let offline = env("ROLLOUT_OFFLINE", 50).min(count);
    let concurrency = env("ROLLOUT_CONCURRENCY", 2000);
    let dir = tempfile::tempdir()?;
    let state_dir = dir.path().join("state");
    std::fs::write(
        dir.path().join("hub.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nheartbeat_interval = \"30s\"\nrollout_interval = \"1h\"\n",
            state_dir.display()
        ),
    )?;
    let config = outpost_hub::config::Config::load(&dir.path().join("hub.toml"))?;

    // The fleet: enrolled agents (one key each).
    let started = Instant::now();
    {
        let store = Store::open(&state_dir)?;
        for i in 0..count {
            let key = Pkcs8Document::generate()?.signing_key()?.public_key();
            store.enroll(&Enrollment {
                agent_id: format!("site-{i:05}"),
                public_key: key.to_string(),
                enrolled_at_ms: 0,
                token_sha256: format!("bench-{i}"),
            })?;
        }
        store.flush()?;
    }
    println!(
        "enrolled {count} agents in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (state, _) = HubState::open(config, "127.0.0.1:8443".parse()?).await?;
        let state = Arc::new(state);
        let mut agents: Vec<Agent> = (0..count)
            .map(|i| Agent { id: format!("site-{i:05}"), seq: 0, running: 0 })
            .collect();

        // The release at FROM on every site, and each agent takes it.
        let source: SourceSpec = serde_json::from_value(serde_json::json!({
            "name": "shop", "url": "https://git.example.com/shop.git", "branch": "main", "target": "kubernetes"
        }))?;
        let release = Release { name: "shop".into(), source, selector: Default::default(), commit: FROM.into(), updated_ms: 0 };
        state.store.put_release(release.clone()).await?;
        let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
        let t = Instant::now();
        driver::pin_release(&state, &release, &ids).await?;
        println!("pinned the release on {count} sites in {:.1}s", t.elapsed().as_secs_f64());
        react(&state, &mut agents, now_ms()).await?;
        // The offline sites' last heartbeat is ten minutes old: offline by the hub's rule.
        let stale = now_ms() - 600_000;
        for agent in agents.iter_mut().rev().take(offline) {
            agent.seq += 1;
            let beat = heartbeat(agent, Some(FROM));
            let body = Bytes::from(serde_json::to_vec(&beat)?);
            state.store.record(beat, body, stale, 10).await?;
        }

        // The rollout.
        let waves = ["1%", "10%", "25%", "50%", "100%"]
            .iter()
            .map(|s| Ok(WaveSpec { name: None, selector: Default::default(), size: Some(Amount::parse("size", s)?) }))
            .collect::<Result<Vec<_>, outpost_hub::rollout::model::SpecError>>()?;
        let request = StartRequest {
            release: "shop".into(),
            to_commit: TO.into(),
            waves,
            max_concurrency: Some(concurrency as u64),
            progress_deadline: Some("10m".into()),
            ..StartRequest::default()
        };
        let labels: BTreeMap<String, outpost_hub::store::Labels> = ids.iter().map(|id| (id.clone(), Default::default())).collect();
        let rollout = plan(&request, &release, &labels, now_ms())?;
        let id = rollout.id.clone();
        state.store.create_rollout(rollout).await?;

        let (wall, cpu) = (Instant::now(), cpu_secs());
        let (mut in_driver, mut rounds, mut most_in_flight) = (Duration::ZERO, 0, 0);
        loop {
            let t = Instant::now();
            driver::tick(&state).await?;
            in_driver += t.elapsed();
            rounds += 1;
            let record = state.store.rollouts().await?.into_iter().find(|r| r.id == id).ok_or("rollout gone")?;
            let busy = record.sites.values().filter(|s| s.state == SiteState::InProgress).count();
            most_in_flight = most_in_flight.max(busy);
            if record.phase != Phase::Progressing || rounds > 200 {
                break;
            }
            // The offline sites (the last ones) send nothing.
            react(&state, &mut agents[..count - offline], now_ms()).await?;
        }
        let wall = wall.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu;
        let record = state.store.rollouts().await?.into_iter().find(|r| r.id == id).ok_or("rollout gone")?;

        // The checks: the strategy, exactly.
        let sizes: Vec<usize> = record.waves.iter().map(|w| w.sites.len()).collect();
        let expected: Vec<usize> = {
            let mut reached = 0;
            [1usize, 10, 25, 50, 100]
                .iter()
                .map(|p| {
                    let target = (count * p).div_ceil(100);
                    let size = target - reached;
                    reached = target;
                    size
                })
                .collect()
        };
        let mut problems = Vec::new();
        if record.phase != Phase::Succeeded {
            problems.push(format!("the rollout ended {:?}: {:?}", record.phase, record.reason));
        }
        if sizes != expected {
            problems.push(format!("wave sizes {sizes:?}, expected {expected:?}"));
        }
        for pair in record.waves.windows(2) {
            if pair[1].started_ms < pair[0].passed_ms {
                problems.push(format!("wave {} started before wave {} passed", pair[1].name, pair[0].name));
            }
        }
        for (site, s) in &record.sites {
            if s.pinned_ms.is_some() && s.pinned_ms < record.waves[s.wave].started_ms {
                problems.push(format!("{site} was pinned before its wave started"));
            }
        }
        if most_in_flight > concurrency {
            problems.push(format!("{most_in_flight} sites in progress at once, above max_concurrency {concurrency}"));
        }
        let counts = record.counts();
        if counts["Deferred"] != offline || counts["Ready"] != count - offline {
            problems.push(format!("counts {counts:?}: expected {offline} Deferred and {} Ready", count - offline));
        }
        println!("rollout of {count} sites ({offline} offline) in 5 waves, max_concurrency {concurrency}:");
        println!("  wave sizes {sizes:?}, {rounds} driver steps, at most {most_in_flight} sites in progress at once");
        println!("  wall {wall:.1}s, process CPU {cpu:.1}s (driver and simulated agents), in driver steps {:.1}s", in_driver.as_secs_f64());
        println!("  final counts {counts:?}");
        state.store.close().await?;
        if problems.is_empty() {
            println!("  the decisions followed the strategy");
            Ok(())
        } else {
            Err(problems.join("\n").into())
        }
    })
}
