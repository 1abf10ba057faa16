//! The hub at fleet scale on PostgreSQL (issue 18): 10,000 simulated agents with a 30 s heartbeat interval,
//! through one replica and then two on one database. Prints accepted heartbeats per hub CPU-second, p50/p99
//! latency, database size per million heartbeats, and the two-replica / one-replica ratio of saturated
//! throughput.
//!
//! `cargo bench -p outpost-hub --bench fleet` (needs Debian's `postgresql`). Knobs: `FLEET_AGENTS`
//! (10000), `FLEET_INTERVAL_SECS` (30), `FLEET_SATURATE` (heartbeats per saturated run, 20000).
//!
//! On a 2-core machine the load generator, PostgreSQL and the replicas share the cores, so the ratio says
//! more about contention than about scaling out; run it where each part has its own cores for that figure.
//! Or give each replica a CPU quota of its own (`FLEET_REPLICA_CPU=0.4`: 40% of one core, through a cgroup v1
//! `cpu` group under `/sys/fs/cgroup/cpu`, as root), so that the replicas, not the shared cores, are what
//! runs out: then the ratio measures what a second replica adds.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::child::ChildHub;
use common::postgres::PgCluster;
use common::{cpu_secs, env_knob, heartbeat_request, Agent, TestError};

const NAME: &str = "hub.fleet.bench:8443";
/// Requests in flight at once in a saturated run.
const CONCURRENCY: usize = 128;

/// Sends one prepared heartbeat request; returns how long its answer took.
async fn post(request: reqwest::RequestBuilder) -> Result<Duration, TestError> {
    let started = Instant::now();
    let status = request.send().await?.status().as_u16();
    if status != 200 {
        return Err(format!("heartbeat answered {status}").into());
    }
    Ok(started.elapsed())
}

/// A cgroup v1 `cpu` group holding one process, with a CFS quota; removed when dropped.
struct CpuQuota(std::path::PathBuf, u32);

impl CpuQuota {
    const PERIOD_US: u64 = 100_000;

    fn apply(pid: u32, share: f64) -> Result<CpuQuota, TestError> {
        let dir = std::path::PathBuf::from(format!("/sys/fs/cgroup/cpu/outpost-bench-{pid}"));
        std::fs::create_dir(&dir).map_err(|e| {
            format!(
                "{}: {e} (FLEET_REPLICA_CPU needs root and cgroup v1 cpu)",
                dir.display()
            )
        })?;
        std::fs::write(dir.join("cpu.cfs_period_us"), Self::PERIOD_US.to_string())?;
        let quota = (share * Self::PERIOD_US as f64) as u64;
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(CpuQuota(dir, pid))
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // Only an empty group can go: the process goes back to the root group first.
        let _ = std::fs::write("/sys/fs/cgroup/cpu/cgroup.procs", self.1.to_string());
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Run {
    sent: usize,
    wall: Duration,
    cpu: f64,
    latencies: Vec<Duration>,
}

/// Sends `work` (agent index, seq) to the replicas in turn; paced over `spread` when given, else as fast as
/// [`CONCURRENCY`] requests in flight allow.
async fn run(
    agents: &Arc<Vec<Agent>>,
    hubs: &[&ChildHub],
    work: Vec<(usize, u64)>,
    spread: Option<Duration>,
) -> Result<Run, TestError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let bases: Arc<Vec<String>> = Arc::new(hubs.iter().map(|h| h.base()).collect());
    let cpu_before: f64 = hubs
        .iter()
        .map(|h| cpu_secs(h.pid))
        .sum::<Result<f64, _>>()?;
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let count = work.len();
    let mut tasks = Vec::with_capacity(count);
    for (n, (index, seq)) in work.into_iter().enumerate() {
        if let Some(spread) = spread {
            let due = spread.mul_f64(n as f64 / count as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let permit = gate.clone().acquire_owned().await?;
        let body = agents[index].heartbeat(seq, 0).to_body()?;
        let request =
            heartbeat_request(&client, &bases[n % bases.len()], NAME, &agents[index], body)?;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            post(request).await
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.push(task.await??);
    }
    let wall = started.elapsed();
    let cpu_after: f64 = hubs
        .iter()
        .map(|h| cpu_secs(h.pid))
        .sum::<Result<f64, _>>()?;
    latencies.sort();
    Ok(Run {
        sent: count,
        wall,
        cpu: cpu_after - cpu_before,
        latencies,
    })
}

fn report(label: &str, run: &Run) {
    println!(
        "{label}: {} heartbeats in {:.1} s ({:.0}/s), hub CPU {:.2} s -> {:.0} heartbeats per hub CPU-second, latency p50 {:.1} ms, p99 {:.1} ms",
        run.sent,
        run.wall.as_secs_f64(),
        run.sent as f64 / run.wall.as_secs_f64(),
        run.cpu,
        run.sent as f64 / run.cpu.max(1e-9),
        percentile(&run.latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&run.latencies, 0.99).as_secs_f64() * 1000.0,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), TestError> {
    common::install_crypto_provider();
    let count = env_knob("FLEET_AGENTS", 10_000) as usize;
    let interval = Duration::from_secs(env_knob("FLEET_INTERVAL_SECS", 30));
    let saturate = env_knob("FLEET_SATURATE", 20_000) as usize;
    let agents: Vec<Agent> = (0..count)
        .map(|i| Agent::new(&format!("shop-{i:05}")))
        .collect::<Result<_, _>>()?;
    let pg = PgCluster::start()?;
    let mut text = format!("names = [\"{NAME}\"]\nhistory = 120\n");
    for agent in &agents {
        text.push_str(&agent.config_table(""));
    }
    text.push_str(&pg.store_table().replace("pool_size = 8", "pool_size = 16"));
    let agents = Arc::new(agents);
    let mut seq = 0u64;
    let round = |seq: &mut u64| {
        *seq += 1;
        (0..count).map(|i| (i, *seq)).collect::<Vec<_>>()
    };

    let quota = std::env::var("FLEET_REPLICA_CPU")
        .ok()
        .and_then(|v| v.parse::<f64>().ok());
    let a = ChildHub::start_with_key(&text, None, None)?;
    let _a_quota = quota.map(|q| CpuQuota::apply(a.pid, q)).transpose()?;
    // One interval: every agent once, spread over it, as the fleet would send.
    let paced = run(&agents, &[&a], round(&mut seq), Some(interval)).await?;
    report(
        &format!("1 replica, {count} agents every {}s", interval.as_secs()),
        &paced,
    );
    let mut work = Vec::new();
    while work.len() < saturate {
        work.extend(round(&mut seq));
    }
    work.truncate(saturate);
    let one = run(&agents, &[&a], work.clone(), None).await?;
    report("1 replica, saturated", &one);

    let b = ChildHub::start_with_key(&text, None, Some(&a.dir.path().join("hub.key")))?;
    let _b_quota = quota.map(|q| CpuQuota::apply(b.pid, q)).transpose()?;
    if let Some(q) = quota {
        println!("each replica limited to {:.0}% of one core", q * 100.0);
    }
    let paced2 = run(&agents, &[&a, &b], round(&mut seq), Some(interval)).await?;
    report(
        &format!("2 replicas, {count} agents every {}s", interval.as_secs()),
        &paced2,
    );
    let mut work = Vec::new();
    while work.len() < saturate {
        work.extend(round(&mut seq));
    }
    work.truncate(saturate);
    let two = run(&agents, &[&a, &b], work, None).await?;
    report("2 replicas, saturated", &two);
    let rate = |r: &Run| r.sent as f64 / r.wall.as_secs_f64();
    println!(
        "2 replicas / 1 replica, saturated throughput: {:.2}x",
        rate(&two) / rate(&one)
    );

    let db = pg.client().await?;
    let row = db
        .query_one(
            "SELECT pg_database_size(current_database()), (SELECT count(*) FROM heartbeats), (SELECT sum(accepted)::bigint FROM agents)",
            &[],
        )
        .await?;
    let (bytes, kept, accepted): (i64, i64, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    let accepted = accepted.unwrap_or(0);
    println!(
        "database: {:.1} MiB for {kept} kept heartbeats ({accepted} accepted): {:.0} MiB per million kept heartbeats",
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / (kept.max(1) as f64 / 1e6)
    );
    Ok(())
}
