//! Several hub replicas on one PostgreSQL (issue 18, item 2), as real `outpost-hub serve` processes sharing
//! one hub key and one name: heartbeats alternate between them, replays and reused seqs are refused the same
//! way on both, a replica killed mid-load loses no acknowledged heartbeat, and a database restart answers 503
//! (the agent keeps the heartbeat) and loses nothing acknowledged either. The failover also runs through a test
//! proxy in front of both replicas, the one address agents know.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::child::ChildHub;
use common::postgres::PgCluster;
use common::{heartbeat_request, Agent, TestError, TestResult};
use outpost_proto::wire::Heartbeat;

/// The name agents use for the fleet's hub, behind a load balancer.
const NAME: &str = "hub.fleet.test:8443";

fn body(agents: &[Agent], pg: &PgCluster) -> String {
    let mut text = format!("names = [\"{NAME}\"]\n");
    for agent in agents {
        text.push_str(&agent.config_table(""));
    }
    text.push_str(&pg.store_table());
    text
}

/// Sends `heartbeat` signed for [`NAME`] to the replica at `base`; the status, or `None` when the replica
/// could not be reached at all.
async fn send(
    client: &reqwest::Client,
    base: &str,
    agent: &Agent,
    heartbeat: &Heartbeat,
) -> Result<Option<u16>, TestError> {
    let request = heartbeat_request(client, base, NAME, agent, heartbeat.to_body()?)?;
    match request.send().await {
        Ok(answer) => Ok(Some(answer.status().as_u16())),
        Err(e) if e.is_connect() || e.is_request() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn replica(body: &str, key: Option<&Path>) -> Result<ChildHub, TestError> {
    common::install_crypto_provider();
    ChildHub::start_with_key(body, None, key)
}

/// The (agent, seq) pairs the database holds.
async fn stored(pg: &PgCluster) -> Result<BTreeMap<String, Vec<u64>>, TestError> {
    let client = pg.client().await?;
    let mut kept: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT agent_id, seq FROM heartbeats ORDER BY agent_id, seq",
            &[],
        )
        .await?
    {
        let seq: i64 = row.get(1);
        kept.entry(row.get(0))
            .or_default()
            .push(u64::try_from(seq)?);
    }
    Ok(kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_alternate_and_refuse_replays_alike() -> TestResult {
    let pg = PgCluster::start()?;
    let agents = vec![Agent::new("store-001")?, Agent::new("store-002")?];
    let text = body(&agents, &pg);
    let a = replica(&text, None)?;
    let b = replica(&text, Some(&a.dir.path().join("hub.key")))?;
    let bases = [a.base(), b.base()];
    let client = reqwest::Client::new();

    for seq in 1..=10u64 {
        for agent in &agents {
            let base = &bases[(seq % 2) as usize];
            let status = send(&client, base, agent, &agent.heartbeat(seq, 0)).await?;
            assert_eq!(status, Some(200), "{} seq {seq} via {base}", agent.id);
        }
    }
    let agent = &agents[0];
    for base in &bases {
        // An exact copy of a kept heartbeat (a lost acknowledgement): acknowledged again, stored once.
        assert_eq!(
            send(&client, base, agent, &agent.heartbeat(7, 0)).await?,
            Some(200)
        );
        // A kept seq with other content: refused on every replica.
        let mut changed = agent.heartbeat(7, 0);
        changed.boot_id = "another-boot".into();
        assert_eq!(send(&client, base, agent, &changed).await?, Some(409));
    }
    // A seq never stored, but below the last: a replay or reorder, refused on both.
    assert_eq!(
        send(&client, &bases[0], agent, &agent.heartbeat(12, 0)).await?,
        Some(200)
    );
    for base in &bases {
        assert_eq!(
            send(&client, base, agent, &agent.heartbeat(11, 0)).await?,
            Some(409)
        );
    }
    // The same new heartbeat through both replicas at once: both acknowledge it, the database holds it once.
    let racing = agent.heartbeat(13, 0);
    let (first, second) = tokio::join!(
        send(&client, &bases[0], agent, &racing),
        send(&client, &bases[1], agent, &racing)
    );
    assert_eq!((first?, second?), (Some(200), Some(200)));

    let db = pg.client().await?;
    let row = db
        .query_one(
            "SELECT last_seq, accepted FROM agents WHERE agent_id = $1",
            &[&agent.id],
        )
        .await?;
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (13, 12));
    let kept = stored(&pg).await?;
    let expected: Vec<u64> = (1..=10).chain([12, 13]).collect();
    assert_eq!(kept.get(&agent.id), Some(&expected));

    // Either replica lists both agents, read from the shared database.
    let listing = client
        .get(format!("{}/v1/agents", bases[1]))
        .bearer_auth(common::READ_TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        listing.contains("store-001") && listing.contains("store-002"),
        "{listing}"
    );
    Ok(())
}

/// Each agent sends its heartbeats in order, to the first replica that answers (a load balancer's
/// failover); returns the seqs acknowledged.
/// One agent's loop: the seqs acknowledged.
type AgentTask = tokio::task::JoinHandle<Result<Vec<u64>, TestError>>;

/// Agents each sending `per_agent` heartbeats in turn through `bases`, as [`agent_loop`]s.
struct Load {
    loops: Vec<(String, AgentTask)>,
    acked: Arc<std::sync::atomic::AtomicUsize>,
    per_agent: u64,
}

impl Load {
    fn start(
        client: &reqwest::Client,
        bases: &Arc<Vec<String>>,
        agents: Vec<Agent>,
        per_agent: u64,
    ) -> Load {
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let loops = agents
            .into_iter()
            .map(|agent| {
                let id = agent.id.clone();
                let task = tokio::spawn(agent_loop(
                    client.clone(),
                    bases.clone(),
                    agent,
                    per_agent,
                    acked.clone(),
                ));
                (id, task)
            })
            .collect();
        Load {
            loops,
            acked,
            per_agent,
        }
    }

    /// Heartbeats acknowledged so far, all agents together.
    fn acked(&self) -> usize {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for every agent; each must have had all its heartbeats acknowledged. Returns their seqs.
    async fn finish(self) -> Result<Vec<(String, Vec<u64>)>, TestError> {
        let mut acked = Vec::new();
        for (id, task) in self.loops {
            let seqs = task.await??;
            assert_eq!(seqs.len(), self.per_agent as usize, "{id}");
            acked.push((id, seqs));
        }
        Ok(acked)
    }
}

async fn agent_loop(
    client: reqwest::Client,
    bases: Arc<Vec<String>>,
    agent: Agent,
    count: u64,
    acked_total: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<Vec<u64>, TestError> {
    let mut acked = Vec::new();
    let mut seq = 1;
    let mut tries = 0;
    while seq <= count {
        let base = &bases[((seq + tries) % bases.len() as u64) as usize];
        match send(&client, base, &agent, &agent.heartbeat(seq, 0)).await? {
            Some(200) => {
                acked.push(seq);
                acked_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                seq += 1;
                tries = 0;
            }
            // Unreachable, or 503: the heartbeat stays in the agent's outbox and goes again.
            None | Some(503) => {
                tries += 1;
                if tries > 200 {
                    return Err(format!("{} seq {seq}: no replica took it", agent.id).into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(other) => return Err(format!("{} seq {seq}: answered {other}", agent.id).into()),
        }
    }
    Ok(acked)
}

async fn check_nothing_acknowledged_is_lost(
    pg: &PgCluster,
    acked: Vec<(String, Vec<u64>)>,
) -> TestResult {
    let kept = stored(pg).await?;
    for (id, seqs) in acked {
        let held = kept.get(&id).cloned().unwrap_or_default();
        for seq in &seqs {
            assert!(
                held.contains(seq),
                "{id} seq {seq} was acknowledged but is not stored"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_load_loses_no_acknowledged_heartbeat() -> TestResult {
    const PER_AGENT: u64 = 40;
    const TOTAL: usize = 12 * PER_AGENT as usize;
    let pg = PgCluster::start()?;
    let agents: Vec<Agent> = (0..12)
        .map(|i| Agent::new(&format!("shop-{i:03}")))
        .collect::<Result<_, _>>()?;
    let text = body(&agents, &pg);
    let mut a = replica(&text, None)?;
    let b = replica(&text, Some(&a.dir.path().join("hub.key")))?;
    let bases = Arc::new(vec![a.base(), b.base()]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let load = Load::start(&client, &bases, agents, PER_AGENT);
    // Mid-load by count, not by time: a quarter of the heartbeats went through, most are still to come.
    while load.acked() < TOTAL / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill()?;
    let at_kill = load.acked();
    assert!(
        at_kill < TOTAL,
        "the load ended before the kill: nothing tested"
    );
    let acked = load.finish().await?;
    check_nothing_acknowledged_is_lost(&pg, acked).await
}

/// The agents know one address, a load balancer's (a test proxy alternating connections between the two
/// replicas); one replica is SIGKILLed mid-load, the proxy skips it, and no acknowledged heartbeat is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_fail_over_through_a_proxy_without_losing_an_acknowledged_heartbeat() -> TestResult {
    const PER_AGENT: u64 = 100;
    let pg = PgCluster::start()?;
    let agents: Vec<Agent> = (0..12)
        .map(|i| Agent::new(&format!("kiosk-{i:03}")))
        .collect::<Result<_, _>>()?;
    let text = body(&agents, &pg);
    let mut a = replica(&text, None)?;
    let b = replica(&text, Some(&a.dir.path().join("hub.key")))?;
    let proxy =
        common::proxy::Proxy::start(vec![a.authority().parse()?, b.authority().parse()?]).await?;
    let bases = Arc::new(vec![format!("http://{}", proxy.addr)]);
    // A connection per request, so the proxy spreads heartbeats over both replicas.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()?;
    let load = Load::start(&client, &bases, agents, PER_AGENT);
    // Mid-load by count, not by time: a tenth of the heartbeats went through, most are still to come.
    while proxy.served().iter().sum::<usize>() < 12 * PER_AGENT as usize / 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = proxy.served();
    assert!(
        before.iter().all(|n| *n > 0),
        "both replicas served: {before:?}"
    );
    a.kill()?;
    let acked = load.finish().await?;
    let after = proxy.served();
    assert!(
        after[1] > before[1],
        "the survivor took over: {before:?} -> {after:?}"
    );
    check_nothing_acknowledged_is_lost(&pg, acked).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_answers_503_and_loses_nothing_acknowledged() -> TestResult {
    let mut pg = PgCluster::start()?;
    let agents: Vec<Agent> = (0..6)
        .map(|i| Agent::new(&format!("site-{i:03}")))
        .collect::<Result<_, _>>()?;
    let text = body(&agents, &pg);
    let hub = replica(&text, None)?;
    let bases = Arc::new(vec![hub.base()]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;

    // While the database is down, a heartbeat is answered 503 (Retry-After), never acknowledged.
    pg.stop()?;
    let down = send(&client, &bases[0], &agents[0], &agents[0].heartbeat(1, 0)).await?;
    assert_eq!(down, Some(503));
    pg.resume()?;

    let load = Load::start(&client, &bases, agents, 30);
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.stop()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.resume()?;
    let acked = load.finish().await?;
    check_nothing_acknowledged_is_lost(&pg, acked).await?;
    let log = hub.log();
    assert!(
        log.contains("was not stored"),
        "the outage is not in the hub's log:\n{log}"
    );
    Ok(())
}
