//! `outpost-hub forget --agent ID`, the real binary: refused with a clear reason while a hub holds the store,
//! and once the hub is stopped, the agent's records are gone when it starts again.

mod common;

use std::process::Command;

use common::{Agent, TestHub, TestResult};

fn forget(dir: &std::path::Path, agent: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outpost-hub"))
        .args(["forget", "--agent", agent, "--config"])
        .arg(dir.join("hub.toml"))
        .env("OUTPOST_HUB_LOG", "warn")
        .output()
        .expect("run outpost-hub forget")
}

#[tokio::test]
async fn forget_needs_the_hub_stopped_then_removes_the_agents_records() -> TestResult {
    let agent = Agent::new("store-042")?;
    let other = Agent::new("store-043")?;
    // The embedded store's lock is what this checks (a database is shared by design).
    let config = format!(
        "{}{}[store]\nbackend = \"embedded\"\n",
        agent.config_table(""),
        other.config_table("")
    );
    let hub = TestHub::start(&config).await?;
    for seq in 1..=3 {
        assert_eq!(
            hub.send(&agent, &agent.heartbeat(seq, 0)).await?.status,
            200
        );
    }
    assert_eq!(hub.send(&other, &other.heartbeat(1, 0)).await?.status, 200);

    let refused = forget(hub.dir.path(), "store-042");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("locked by a running outpost-hub") && stderr.contains("stop it first"),
        "{stderr}"
    );
    assert_eq!(hub.agent_view("store-042").await?["seq"], 3);

    let dir = hub.stop().await;
    let done = forget(dir.path(), "store-042");
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains("forgot agent \"store-042\": 1 last heartbeat, 3 history entries"),
        "{stdout}"
    );
    assert!(stdout.contains("still listed as [[agent]]"), "{stdout}");
    let again = forget(dir.path(), "store-042");
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing recorded"));

    let hub = TestHub::start_in(dir, &config, None).await?;
    let view = hub.agent_view("store-042").await?;
    assert_eq!(view["status"], "never-seen", "{view}");
    let detail = hub.get("/v1/agents/store-042").await?.json()?;
    assert_eq!(
        detail["history"].as_array().map(Vec::len),
        Some(0),
        "{detail}"
    );
    assert_eq!(hub.agent_view("store-043").await?["seq"], 1);
    // Its seq starts afresh: the hub holds nothing that would refuse seq 1 as a replay.
    assert_eq!(hub.send(&agent, &agent.heartbeat(1, 0)).await?.status, 200);
    hub.stop().await;
    Ok(())
}
