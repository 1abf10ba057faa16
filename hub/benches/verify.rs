//! The hub's benchmarks from issue 4, printed as plain figures:
//! - pure verification: `verify_request` (Content-Digest and Ed25519 signature) on one thread;
//! - the full handler: real signed heartbeats over loopback HTTP to the real `outpost-hub` binary of this
//!   build, pinned to CPU 0 with `taskset`, from a load generator pinned to the other CPUs; every heartbeat
//!   must be answered 200 with a signed reply, or the bench fails;
//! - the hub's RSS (VmRSS) with `BENCH_AGENTS` enrolled agents (config `[[agent]]` tables), after one
//!   heartbeat from each and at the end.
//!
//! Run with `cargo bench -p outpost-hub --bench verify` (release profile, as shipped). Knobs: `BENCH_AGENTS`
//! (10000), `BENCH_ROUNDS` (heartbeats per agent, 4), `BENCH_CONNECTIONS` (64). Besides wall-clock rates it
//! prints heartbeats per CPU-second of the hub process (from /proc/<pid>/stat), which other work on the
//! machine does not distort.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use outpost_proto::keys::{Pkcs8Document, SigningKey};
use outpost_proto::signed::{sign_request, verify_request, Freshness, Headers, ReceivedRequest};
use outpost_proto::wire::{Heartbeat, SourceState, SourceStatus};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const JSON: &str = "application/json";
const PATH: &str = "/v1/heartbeats";

fn main() -> BenchResult<()> {
    let agents = knob("BENCH_AGENTS", 10_000);
    let rounds = knob("BENCH_ROUNDS", 4).max(2);
    let connections = knob("BENCH_CONNECTIONS", 64).max(1);
    pure_verification()?;
    pure_reply_signing()?;
    full_handler(agents, rounds, connections)
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A heartbeat like a real site's: three sources with full revisions and an inventory digest.
fn heartbeat(agent_id: &str, seq: u64) -> Heartbeat {
    let revision = "0123456789abcdef0123456789abcdef01234567";
    let sources = ["platform", "apps", "monitoring"]
        .iter()
        .map(|name| {
            let mut source = SourceStatus::new(*name, SourceState::Ready);
            source.fetched_revision = Some(revision.into());
            source.applied_revision = Some(revision.into());
            source.last_good_revision = Some(revision.into());
            source.object_count = 42;
            source.inventory_digest = Some(
                "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            );
            source
        })
        .collect();
    Heartbeat {
        schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
        agent_id: agent_id.into(),
        seq,
        boot_id: "6f1c1d2e-8a4b-4c3d-9e8f-0a1b2c3d4e5f".into(),
        observed_at: "2026-09-21T14:13:20Z".into(),
        agent_version: "0.1.0".into(),
        assignment_generation: 0,
        dropped: 0,
        sources,
        assignment_error: None,
    }
}

/// One request, signed ahead of the measurement so the load generator's signing does not limit it.
struct Signed {
    body: Vec<u8>,
    headers: Headers,
}

fn sign(key: &SigningKey, authority: &str, agent_id: &str, seq: u64) -> BenchResult<Signed> {
    let body = heartbeat(agent_id, seq).to_body()?;
    let headers = sign_request("POST", authority, PATH, &body, JSON, key, now())?;
    Ok(Signed { body, headers })
}

fn pure_verification() -> BenchResult<()> {
    const N: usize = 20_000;
    let key = Pkcs8Document::generate()?.signing_key()?;
    let public = key.public_key();
    let authority = "hub.example:8443";
    let requests: Vec<Signed> = (1..=N as u64)
        .map(|seq| sign(&key, authority, "store-042", seq))
        .collect::<BenchResult<_>>()?;
    let now = now();
    let started = Instant::now();
    let cpu_before = thread_cpu();
    for request in &requests {
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain([("content-type", JSON)])
            .collect();
        let received = ReceivedRequest {
            method: "POST",
            authority,
            path: PATH,
            headers: &headers,
            body: &request.body,
        };
        verify_request(&received, &public, now, Freshness::default())?;
    }
    let cpu = thread_cpu().saturating_sub(cpu_before);
    let elapsed = started.elapsed();
    println!(
        "pure verification (Content-Digest + Ed25519, one thread): {:.0} heartbeats per CPU-second ({:.1} us CPU each), {:.0}/s wall; {} bytes of body",
        N as f64 / cpu.as_secs_f64().max(1e-6),
        cpu.as_secs_f64() * 1e6 / N as f64,
        N as f64 / elapsed.as_secs_f64(),
        requests[0].body.len()
    );
    Ok(())
}

/// Signing the hub's reply (`sign_response` over a typical acknowledgement), which every accepted heartbeat
/// costs besides its verification: together they are the floor of the full handler's CPU per heartbeat.
fn pure_reply_signing() -> BenchResult<()> {
    const N: usize = 20_000;
    let key = Pkcs8Document::generate()?.signing_key()?;
    let now = now();
    let cpu_before = thread_cpu();
    for seq in 0..N {
        let body = format!("{{\"ack_seq\":{seq},\"assignment\":null}}");
        std::hint::black_box(outpost_proto::signed::sign_response(
            200,
            body.as_bytes(),
            JSON,
            &key,
            now,
        )?);
    }
    let cpu = thread_cpu().saturating_sub(cpu_before);
    println!(
        "pure reply signing (Content-Digest + Ed25519, one thread): {:.1} us CPU each",
        cpu.as_secs_f64() * 1e6 / N as f64
    );
    Ok(())
}

/// CPU time of the calling thread, which other processes on a busy machine do not inflate.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime only writes the timespec it is given.
    let time = unsafe {
        let mut time: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time);
        time
    };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// The hub process, stopped when dropped.
struct Hub {
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    /// Starts `outpost-hub serve` pinned to CPU 0, with `agents` listed in its config.
    fn start(agents: &[(String, SigningKey)]) -> BenchResult<(Hub, String)> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut config = format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nheartbeat_interval = \"30s\"\n",
            dir.path().join("state").display()
        );
        for (id, key) in agents {
            config.push_str(&format!(
                "[[agent]]\nid = \"{id}\"\npublic_key = \"{}\"\n",
                key.public_key()
            ));
        }
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, config)?;
        let mut child = Command::new("taskset")
            .args([
                "-c",
                "0",
                env!("CARGO_BIN_EXE_outpost-hub"),
                "serve",
                "--config",
            ])
            .arg(&path)
            .env("OUTPOST_HUB_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run taskset (util-linux) to pin the hub to CPU 0: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no hub stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let hub = Hub {
            child,
            pid,
            _dir: dir,
        };
        loop {
            let line = lines.next().ok_or("the hub exited before it listened")??;
            if line.starts_with("listening on") {
                break;
            }
        }
        // Keep reading so the hub never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok((hub, format!("127.0.0.1:{port}")))
    }

    /// `VmRSS` in KiB.
    fn rss_kib(&self) -> BenchResult<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .ok_or("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
    }

    /// User plus system CPU time of the hub so far.
    fn cpu(&self) -> BenchResult<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').ok_or("bad stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_millis(ticks * 1000 / hz))
    }
}

/// Keeps this process (the load generator) off CPU 0, which the hub has to itself.
fn pin_off_cpu0() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        println!("note: one CPU only; the load generator shares it with the hub");
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 1..cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn full_handler(agents: usize, rounds: usize, connections: usize) -> BenchResult<()> {
    let keys: Vec<(String, SigningKey)> = (0..agents)
        .map(|i| {
            Ok((
                format!("site-{i:05}"),
                Pkcs8Document::generate()?.signing_key()?,
            ))
        })
        .collect::<BenchResult<_>>()?;
    let (hub, authority) = Hub::start(&keys)?;
    pin_off_cpu0();
    let idle_rss = hub.rss_kib()?;

    // Round r holds every agent's heartbeat seq r; connection c carries agents c, c + connections, ...
    let mut plan: Vec<Vec<Vec<Signed>>> = Vec::with_capacity(rounds);
    for round in 1..=rounds as u64 {
        let mut per_connection: Vec<Vec<Signed>> = (0..connections).map(|_| Vec::new()).collect();
        for (i, (id, key)) in keys.iter().enumerate() {
            per_connection[i % connections].push(sign(key, &authority, id, round)?);
        }
        plan.push(per_connection);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut figures = Vec::new();
    for (index, round) in plan.into_iter().enumerate() {
        let cpu_before = hub.cpu()?;
        let started = Instant::now();
        let sent = runtime.block_on(send_round(&authority, round))?;
        let wall = started.elapsed();
        let cpu = hub.cpu()?.saturating_sub(cpu_before);
        figures.push((index + 1, sent, wall, cpu));
        if index == 0 {
            println!(
                "hub RSS with {agents} enrolled agents: {:.1} MiB idle, {:.1} MiB after one heartbeat each",
                idle_rss as f64 / 1024.0,
                hub.rss_kib()? as f64 / 1024.0
            );
        }
    }
    for (round, sent, wall, cpu) in &figures {
        let what = if *round == 1 {
            "first heartbeat of each agent"
        } else {
            "later heartbeat"
        };
        println!(
            "full handler, hub on one core, round {round} ({what}): {sent} heartbeats in {:.2} s = {:.0}/s wall; hub CPU {:.2} s = {:.0} heartbeats per CPU-second",
            wall.as_secs_f64(),
            *sent as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64(),
            *sent as f64 / cpu.as_secs_f64().max(1e-3)
        );
    }
    let steady: (usize, f64, f64) = figures[1..].iter().fold((0, 0.0, 0.0), |acc, f| {
        (
            acc.0 + f.1,
            acc.1 + f.2.as_secs_f64(),
            acc.2 + f.3.as_secs_f64(),
        )
    });
    println!(
        "full handler, steady state (rounds 2-{rounds}): {:.0} heartbeats/s wall, {:.0} per hub CPU-second, {connections} connections",
        steady.0 as f64 / steady.1,
        steady.0 as f64 / steady.2.max(1e-3)
    );
    println!(
        "hub RSS at the end: {:.1} MiB",
        hub.rss_kib()? as f64 / 1024.0
    );
    Ok(())
}

/// Sends every connection's heartbeats in order, the connections at once; fails on any answer but 200.
async fn send_round(authority: &str, round: Vec<Vec<Signed>>) -> BenchResult<usize> {
    let mut tasks = tokio::task::JoinSet::new();
    for requests in round {
        let authority = authority.to_owned();
        tasks.spawn(async move { send_all(&authority, requests).await });
    }
    let mut sent = 0;
    while let Some(joined) = tasks.join_next().await {
        sent += joined??;
    }
    Ok(sent)
}

async fn send_all(authority: &str, requests: Vec<Signed>) -> BenchResult<usize> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let count = requests.len();
    for signed in requests {
        let mut request = hyper::Request::post(PATH)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, JSON);
        for (name, value) in &signed.headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(signed.body)))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let has_signature = response.headers().contains_key("signature");
        let body = response.into_body().collect().await?.to_bytes();
        if status != 200 || !has_signature {
            return Err(format!(
                "the hub answered {status} (signed: {has_signature}): {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
    }
    Ok(count)
}
