//! The fleet page at fleet scale (issue 18 item 7): a hub on the embedded store with 10,000 agents, most
//! online and Ready, some Failed, Stale, Suspended or Progressing, some offline and some never seen, each
//! labelled with its site. Prints the size and response time of the fleet page (unfiltered, filtered, a
//! later page), an agent's page, `/v1/agents` and `/metrics`.
//!
//! `cargo bench -p outpost-hub --bench fleet_page`. Knobs: `FLEET_AGENTS` (10000), `FLEET_PAGE_TRIES` (10
//! requests per figure), `FLEET_PAGE_HOLD` (seconds to keep the hub running afterwards, printing its address
//! and read token, e.g. to look at the pages in a browser).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::child::ChildHub;
use common::{env_knob, now, Agent, TestError, ADMIN_TOKEN, JSON, READ_TOKEN, REVISION};
use outpost_proto::signed::sign_request;
use outpost_proto::wire::{Heartbeat, SourceState, SourceStatus};

/// How often the fleet reports while the hub is held for a look.
const HOLD_ROUND: Duration = Duration::from_secs(20);
/// Requests in flight at once while the fleet is filled.
const CONCURRENCY: usize = 32;
const SITES: [&str; 8] = [
    "berlin", "lisbon", "osaka", "quito", "tunis", "oslo", "perth", "denver",
];

/// What agent `i` of the fleet reports: mostly Ready; a spread of problems, with errors as real ones read.
fn heartbeat(agent: &Agent, i: usize, seq: u64) -> Heartbeat {
    let mut platform = SourceStatus::new("platform", SourceState::Ready);
    platform.applied_revision = Some(REVISION.into());
    platform.last_good_revision = Some(REVISION.into());
    platform.object_count = 12;
    let mut apps = SourceStatus::new("apps", SourceState::Ready);
    apps.applied_revision = Some(REVISION.into());
    apps.last_good_revision = Some(REVISION.into());
    apps.object_count = 40;
    match i % 100 {
        0 => {
            apps.state = SourceState::Failed;
            apps.last_error = Some(format!(
                "apply Deployment shop/pos-{i}: image registry.example.com/pos:<2.4.1> not found (ErrImagePull); the last good revision stays applied"
            ));
        }
        1 => {
            platform.state = SourceState::Stale;
            platform.last_error = Some(
                "git fetch https://git.example.com/platform.git: connection timed out after 30s"
                    .into(),
            );
        }
        2 => apps.state = SourceState::Suspended,
        3 => apps.state = SourceState::Progressing,
        _ => {}
    }
    Heartbeat {
        schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
        agent_id: agent.id.clone(),
        seq,
        boot_id: "6f1c1d2e-8a4b-4c3d-9e8f-0a1b2c3d4e5f".into(),
        observed_at: "2026-12-06T04:00:00Z".into(),
        agent_version: "0.1.0".into(),
        assignment_generation: 0,
        dropped: 0,
        sources: vec![platform, apps],
        assignment_error: None,
    }
}

/// Every 50th agent is never seen; every 40th reports once with a 1 s interval, so it is offline soon.
fn never_seen(i: usize) -> bool {
    i % 50 == 7
}
fn goes_offline(i: usize) -> bool {
    i % 40 == 9
}

/// The agent whose page shows refusals.
const REFUSED: usize = 100;

/// Two refused heartbeats of `agent`, for its page: a copy signed an hour ago (stale), and seq 1 again with
/// other content (seq_reused).
async fn refuse(
    client: &reqwest::Client,
    base: &str,
    authority: &str,
    agent: &Agent,
) -> Result<(), TestError> {
    let mut changed = heartbeat(agent, REFUSED + 1, 1);
    changed.dropped = 3;
    for (body, created, expected) in [
        (heartbeat(agent, REFUSED, 1).to_body()?, now() - 3600, 401),
        (changed.to_body()?, now(), 409),
    ] {
        let headers = sign_request(
            "POST",
            authority,
            "/v1/heartbeats",
            &body,
            JSON,
            &agent.key,
            created,
        )?;
        let mut request = client
            .post(format!("{base}/v1/heartbeats"))
            .header("Content-Type", JSON)
            .body(body);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let status = request.send().await?.status().as_u16();
        if status != expected {
            return Err(format!("a refused heartbeat of {} answered {status}", agent.id).into());
        }
    }
    Ok(())
}

/// Round `seq` of the fleet: with seq 1, every agent labelled, and all but the never-seen ones report (the
/// agent [`REFUSED`] also sends two heartbeats that are refused); later rounds keep the online ones online.
async fn round(hub: &ChildHub, agents: &Arc<Vec<Agent>>, seq: u64) -> Result<(), TestError> {
    let client = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..agents.len() {
        let permit = gate.clone().acquire_owned().await?;
        let (client, agents, base, authority) =
            (client.clone(), agents.clone(), hub.base(), hub.authority());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let agent = &agents[i];
            if seq > 1 {
                if never_seen(i) || goes_offline(i) {
                    return Ok(());
                }
                return send(&client, &base, &authority, agent, i, seq).await;
            }
            let labels = serde_json::json!({"labels": {"site": SITES[i % SITES.len()]}});
            let status = client
                .put(format!("{base}/v1/admin/agents/{}/labels", agent.id))
                .bearer_auth(ADMIN_TOKEN)
                .json(&labels)
                .send()
                .await?
                .status();
            if !status.is_success() {
                return Err(TestError::from(format!(
                    "labels of {} answered {status}",
                    agent.id
                )));
            }
            if never_seen(i) {
                return Ok(());
            }
            send(&client, &base, &authority, agent, i, seq).await?;
            if i == REFUSED {
                refuse(&client, &base, &authority, agent).await?;
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Heartbeat `seq` of agent `i`, signed now; it must be accepted.
async fn send(
    client: &reqwest::Client,
    base: &str,
    authority: &str,
    agent: &Agent,
    i: usize,
    seq: u64,
) -> Result<(), TestError> {
    let body = heartbeat(agent, i, seq).to_body()?;
    let headers = sign_request(
        "POST",
        authority,
        "/v1/heartbeats",
        &body,
        JSON,
        &agent.key,
        now(),
    )?;
    let mut request = client
        .post(format!("{base}/v1/heartbeats"))
        .header("Content-Type", JSON)
        .body(body);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let status = request.send().await?.status();
    if status != 200 {
        return Err(format!("heartbeat {seq} of {} answered {status}", agent.id).into());
    }
    Ok(())
}

/// `tries` GETs of `path`: the reply's size and the median and slowest response time (whole body read).
async fn measure(base: &str, path: &str, tries: u64) -> Result<(), TestError> {
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..tries {
        let started = Instant::now();
        let answer = client
            .get(format!("{base}{path}"))
            .bearer_auth(READ_TOKEN)
            .send()
            .await?;
        let status = answer.status();
        let body = answer.bytes().await?;
        times.push(started.elapsed());
        if status != 200 {
            return Err(format!("GET {path} answered {status}").into());
        }
        size = body.len();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "GET {path}: {:.1} KiB, median {:.1} ms, slowest {:.1} ms ({tries} requests)",
        size as f64 / 1024.0,
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), TestError> {
    common::install_crypto_provider();
    let count = env_knob("FLEET_AGENTS", 10_000) as usize;
    let tries = env_knob("FLEET_PAGE_TRIES", 10);
    let agents: Vec<Agent> = (0..count)
        .map(|i| Agent::new(&format!("shop-{i:05}")))
        .collect::<Result<_, _>>()?;
    let mut text = String::from("history = 5\n");
    for (i, agent) in agents.iter().enumerate() {
        let extra = if goes_offline(i) {
            "heartbeat_interval = \"1s\""
        } else {
            ""
        };
        text.push_str(&agent.config_table(extra));
    }
    let hub = ChildHub::start(&text, None)?;
    let agents = Arc::new(agents);
    let started = Instant::now();
    round(&hub, &agents, 1).await?;
    println!(
        "{count} agents labelled and reporting in {:.1} s; hub RSS {} MiB",
        started.elapsed().as_secs_f64(),
        hub.status_kib("VmRSS")? / 1024
    );
    // Past three of the short intervals: those agents are offline now.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let base = hub.base();
    for path in [
        "/",
        "/?state=Failed",
        "/?label=site%3Dosaka&q=shop-0",
        "/?page=50",
        "/agents/shop-00100",
        "/agents/shop-00101",
        "/v1/agents",
        "/metrics",
    ] {
        measure(&base, path, tries).await?;
        println!("  hub RSS {} MiB", hub.status_kib("VmRSS")? / 1024);
    }
    println!("hub peak RSS: {} MiB", hub.status_kib("VmHWM")? / 1024);

    let hold = env_knob("FLEET_PAGE_HOLD", 0);
    if hold > 0 {
        println!(
            "serving {base}/ for {hold} s; read token {READ_TOKEN} (HTTP Basic password, any user)"
        );
        // The fleet keeps reporting meanwhile, so the online agents stay online.
        let until = Instant::now() + Duration::from_secs(hold);
        let mut seq = 1;
        while Instant::now() < until {
            seq += 1;
            round(&hub, &agents, seq).await?;
            tokio::time::sleep(HOLD_ROUND).await;
        }
    }
    Ok(())
}
