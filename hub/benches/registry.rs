//! Building the registry of known agents (at start, and every `REGISTRY_REFRESH` on a shared database, on a
//! runtime thread while heartbeats wait): prints how long one build takes with `REGISTRY_AGENTS` (10000)
//! agents listed in the config and as many enrolled.
//!
//! `cargo bench -p outpost-hub --bench registry`.

use std::path::Path;
use std::time::Instant;

use outpost_hub::config::Config;
use outpost_hub::registry::Registry;
use outpost_hub::store::Enrollment;
use outpost_proto::keys::Pkcs8Document;

type BenchResult = Result<(), Box<dyn std::error::Error>>;

/// Builds timed; the fastest is printed (the others met a busy machine).
const TRIES: usize = 5;

fn main() -> BenchResult {
    let count: usize = std::env::var("REGISTRY_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut text = String::from("heartbeat_interval = \"30s\"\n");
    for i in 0..count {
        let key = Pkcs8Document::generate()?.signing_key()?.public_key();
        text.push_str(&format!(
            "[[agent]]\nid = \"config-{i:05}\"\npublic_key = \"{key}\"\n"
        ));
    }
    let config = Config::parse(&text, Path::new("/bench/hub.toml"))?;
    let mut enrollments = Vec::with_capacity(count);
    for i in 0..count {
        let key = Pkcs8Document::generate()?.signing_key()?.public_key();
        enrollments.push(Enrollment {
            agent_id: format!("enrolled-{i:05}"),
            public_key: key.to_string(),
            enrolled_at_ms: 0,
            token_sha256: String::new(),
        });
    }
    let mut fastest = f64::MAX;
    for _ in 0..TRIES {
        let started = Instant::now();
        let (registry, warnings) = Registry::build(&config, &enrollments);
        fastest = fastest.min(started.elapsed().as_secs_f64());
        if registry.len() != 2 * count || !warnings.is_empty() {
            return Err(format!("built {} agents, warnings {warnings:?}", registry.len()).into());
        }
    }
    println!(
        "registry of {count} config and {count} enrolled agents: built in {:.1} ms (fastest of {TRIES})",
        fastest * 1000.0
    );
    Ok(())
}
