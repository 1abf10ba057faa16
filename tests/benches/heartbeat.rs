//! The agent's cost per heartbeat (issue 4): CPU time and bytes on the wire, with three sources. Run with
//! `cargo bench -p outpost-tests --bench heartbeat`.
//!
//! Each iteration is the agent's own path through its library, as `outpost run` takes it: queue a heartbeat in
//! the sled outbox (built from the store's source records, flushed), sign it (Content-Digest + Ed25519), verify
//! the hub's signed reply, and remove the entry (flushed). Only the network is left out, so the figure is the
//! agent's CPU, not the hub's or the kernel's loopback. The bytes counted are the body plus the signature
//! headers (`Content-Digest`, `Signature-Input`, `Signature`, and the signed `Content-Type`), each as a
//! `name: value\r\n` line.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_agent::config::Config;
use outpost_agent::store::{HistoryEntry, OutboxLimits, Store};
use outpost_proto::keys::Pkcs8Document;
use outpost_proto::signed::{
    sign_request, sign_response, verify_request, verify_response, Freshness, ReceivedRequest,
    ReceivedResponse,
};

const ITERATIONS: u64 = 2000;
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

fn now() -> i64 {
    outpost_agent::store::now() as i64
}

fn config(dir: &Path, hub_key: &str) -> Config {
    let mut text = format!(
        "[agent]\nid = \"store-042\"\nstate_dir = \"{}\"\n[upstream]\nurl = \"https://hub.example.com:8443\"\nhub_key = \"{hub_key}\"\n",
        dir.display()
    );
    for name in ["platform", "apps", "monitoring"] {
        text.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nurl = \"https://git.example.com/fleet/{name}.git\"\nbranch = \"main\"\npath = \"clusters/store-042\"\ntarget = \"directory:{}\"\n",
            dir.join(name).display()
        ));
    }
    Config::parse(&dir.join("agent.toml"), &text).expect("bench config is valid")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub_key = Pkcs8Document::generate()
        .and_then(|d| d.signing_key())
        .expect("hub key");
    let agent_key = Pkcs8Document::generate()
        .and_then(|d| d.signing_key())
        .expect("agent key");
    let config = config(dir.path(), &hub_key.public_key().to_string());
    let store = Store::open(dir.path()).expect("store");
    for source in &config.sources {
        let entry = HistoryEntry {
            at: 0,
            state: outpost_agent::report::State::Ready,
            revision: Some(REVISION.into()),
            message: None,
        };
        store
            .update(&source.name, entry, None, 3, |record| {
                record.status.state = outpost_agent::report::State::Ready;
                record.status.fetched = Some(REVISION.into());
                record.status.applied = Some(REVISION.into());
                record.status.last_good = Some(REVISION.into());
                record.status.object_count = 42;
                record.status.inventory_digest = Some(DIGEST.into());
            })
            .expect("source record");
    }
    // A typical reply: acknowledged, no new assignment; signed as the hub signs it.
    let reply = br#"{"ack_seq":1,"assignment":null}"#.to_vec();
    let reply_headers =
        sign_response(200, &reply, "application/json", &hub_key, now()).expect("reply");
    let reply_headers: Vec<(&str, &str)> = reply_headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain([("content-type", "application/json")])
        .collect();
    let boot = outpost_agent::daemon::heartbeat::boot_id();
    let authority = "hub.example.com:8443";

    let mut wire_bytes = (0, 0);
    let cpu_before = cpu_time();
    let started = Instant::now();
    for _ in 0..ITERATIONS {
        let entry = store
            .outbox_push(now() as u64, OutboxLimits::default(), |seq, dropped| {
                outpost_agent::daemon::heartbeat::build(&config, &store, seq, dropped, &boot)
            })
            .expect("queued");
        let headers = sign_request(
            "POST",
            authority,
            "/v1/heartbeats",
            &entry.body,
            "application/json",
            &agent_key,
            now(),
        )
        .expect("signed");
        let header_bytes: usize = headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum::<usize>()
            + "Content-Type: application/json\r\n".len();
        wire_bytes = (entry.body.len(), header_bytes);
        let response = ReceivedResponse {
            status: 200,
            headers: &reply_headers,
            body: &reply,
        };
        verify_response(
            &response,
            &hub_key.public_key(),
            now(),
            Freshness::default(),
        )
        .expect("reply verifies");
        store.outbox_delivered(entry.seq).expect("delivered");
    }
    let wall = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let (body, headers) = wire_bytes;
    println!(
        "agent cost per heartbeat, 3 sources: {:.0} us CPU ({:.0} us wall, sled outbox flushed twice), over {ITERATIONS} heartbeats",
        cpu.as_secs_f64() * 1e6 / ITERATIONS as f64,
        wall.as_secs_f64() * 1e6 / ITERATIONS as f64
    );
    println!(
        "on the wire: {body} bytes of body + {headers} bytes of signature headers = {} bytes (target <= 2048); reply body {} bytes",
        body + headers,
        reply.len()
    );
    assert!(body + headers <= 2048, "over the 2 KiB target");

    offline_outbox(&config, &store, &boot);
    signing_alone(&agent_key);
}

/// Signing and verifying a heartbeat without the store: the part that RFC 8941 parsing and serialising, the
/// digest and Ed25519 take, so a change to one of them is not lost in the noise of sled's flushes.
fn signing_alone(agent_key: &outpost_proto::keys::SigningKey) {
    const ROUNDS: u64 = 20_000;
    let body = br#"{"schema":"outpost.heartbeat/v1","agent_id":"store-042","seq":1}"#;
    let public = agent_key.public_key();
    let cpu_before = cpu_time();
    for _ in 0..ROUNDS {
        let at = now();
        let signed = sign_request(
            "POST",
            "hub.example.com:8443",
            "/v1/heartbeats",
            body,
            "application/json",
            agent_key,
            at,
        )
        .expect("signed");
        let headers: Vec<(&str, &str)> = signed
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain([("Content-Type", "application/json")])
            .collect();
        let request = ReceivedRequest {
            method: "POST",
            authority: "hub.example.com:8443",
            path: "/v1/heartbeats",
            headers: &headers,
            body,
        };
        verify_request(&request, &public, at, Freshness::default()).expect("verifies");
    }
    let cpu = cpu_time().saturating_sub(cpu_before);
    println!(
        "signing and verifying a heartbeat request alone (no store): {:.1} us CPU, over {ROUNDS}",
        cpu.as_secs_f64() * 1e6 / ROUNDS as f64
    );
}

/// A long outage: the outbox is full (10,000 heartbeats, the default bound) and every new heartbeat evicts the
/// oldest. Queuing must stay cheap however much is queued, or a site that was offline for days spends its CPU
/// on its own backlog.
fn offline_outbox(config: &Config, store: &Store, boot: &str) {
    const PUSHES: u64 = 200;
    let limits = OutboxLimits::default();
    let started = Instant::now();
    for _ in 0..limits.max_entries {
        store
            .outbox_push(now() as u64, limits, |seq, dropped| {
                outpost_agent::daemon::heartbeat::build(config, store, seq, dropped, boot)
            })
            .expect("queued");
    }
    let filling = started.elapsed();
    let cpu_before = cpu_time();
    for _ in 0..PUSHES {
        let entry = store
            .outbox_push(now() as u64, limits, |seq, dropped| {
                outpost_agent::daemon::heartbeat::build(config, store, seq, dropped, boot)
            })
            .expect("queued");
        assert!(entry.reports_dropped > 0, "a full outbox evicts");
    }
    let cpu = cpu_time().saturating_sub(cpu_before);
    assert_eq!(store.outbox_len(), limits.max_entries);
    let decoding = Instant::now();
    let all = store.outbox_entries(usize::MAX).expect("read");
    let decoding = decoding.elapsed();
    assert_eq!(all.len(), limits.max_entries);
    println!(
        "queuing a heartbeat with a full outbox ({} queued, the oldest evicted): {:.0} us CPU per heartbeat, over {PUSHES}; filling it took {:.1} s; decoding the whole queue (what every push did before) takes {:.0} ms",
        limits.max_entries,
        cpu.as_secs_f64() * 1e6 / PUSHES as f64,
        filling.as_secs_f64(),
        decoding.as_secs_f64() * 1e3
    );
}
