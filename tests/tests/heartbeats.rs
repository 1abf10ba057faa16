//! Agent -> hub: the real `outpost run` sends signed heartbeats to a real `outpost-hub` (in-process, random
//! port); while the hub is down they wait in the outbox and arrive, in order, when it is back.

mod common;

use std::time::Duration;

use common::hub::{keygen, Hub};
use common::{configmap, wait_until, Site};
use outpost_tests::GitRepo;
use serde_json::Value;

fn last_good(agent: &Value) -> Option<String> {
    agent["sources"][0]["last_good_revision"]
        .as_str()
        .map(String::from)
}

#[test]
fn heartbeats_reach_the_hub_and_survive_an_outage_in_order() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let first = repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    let agent_key = keygen(&site);

    let port = outpost_tests::support::free_port();
    let mut hub = Hub::start(site.dir.path(), &agent_key, port);
    site.tables = hub.upstream_table();
    let agent = site.spawn_daemon();
    wait_until(
        Duration::from_secs(30),
        "the hub sees the first revision",
        || last_good(&hub.agent()).as_deref() == Some(first.as_str()),
    );
    let seen = hub.agent();
    assert_eq!(seen["sources"][0]["state"], "Ready", "{seen}");
    assert!(seen["online"].as_bool().unwrap_or(false), "{seen}");
    let seq_before = seen["seq"].as_u64().unwrap();

    // Hub down: the agent keeps applying; heartbeats wait in the outbox.
    hub.stop();
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let second = repo.commit("2");
    wait_until(
        Duration::from_secs(30),
        "second revision applied offline",
        || site.applied_revision("app").as_deref() == Some(second.as_str()),
    );
    // Long enough for at least three heartbeats to queue on a 1 s interval, even on a loaded machine.
    std::thread::sleep(Duration::from_secs(5));
    // `outpost status` shows them waiting, in both forms.
    let waiting = site.status_json()["heartbeat_outbox"].as_u64().unwrap_or(0);
    assert!(waiting >= 3, "{waiting} heartbeats queued");
    let table = String::from_utf8_lossy(&site.run(&["status"]).stdout).to_string();
    assert!(
        table.contains("heartbeat outbox: ") && table.contains(" waiting to be sent to the hub"),
        "{table}"
    );

    // Hub back on the same port and store: the queued heartbeats arrive, and the newest state wins.
    hub.start_again();
    // The first queued heartbeat may already carry the second revision; the rest follow it in order.
    wait_until(
        Duration::from_secs(40),
        "the hub sees the second revision and the queued heartbeats",
        || {
            let agent = hub.agent();
            last_good(&agent).as_deref() == Some(second.as_str())
                && agent["seq"].as_u64().unwrap_or(0) >= seq_before + 3
        },
    );
    let after = hub.agent();
    assert_eq!(after["dropped"].as_u64().unwrap_or(0), 0, "{after}");
    wait_until(Duration::from_secs(20), "the outbox is empty again", || {
        site.status_json()["heartbeat_outbox"] == 0
    });
    let log = agent.log();
    assert!(!log.contains("does not verify"), "{log}");
    assert!(agent.terminate());
    hub.stop();
}

#[test]
fn a_signed_assignment_is_synced_and_a_clash_or_forgery_changes_nothing() {
    let local = GitRepo::new();
    local.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    local.commit("1");
    let assigned = GitRepo::new();
    assigned.write("deploy/extra.yaml", configmap("extra", "1").as_bytes());
    let assigned_head = assigned.commit("assigned");

    let mut site = Site::new();
    site.source("app", &local.file_url(), "branch = \"main\"", "deploy", "");
    let agent_key = keygen(&site);
    let target_dir = site.target_dir();
    let assignment = |generation: u64, name: &str| {
        format!(
            "[[assignment]]\nagents = [\"test-site\"]\ngeneration = {generation}\n[[assignment.source]]\nname = \"{name}\"\nurl = \"{}\"\nbranch = \"main\"\npath = \"deploy\"\ninterval = \"1s\"\ntarget = \"directory:{}\"\n",
            assigned.file_url(),
            target_dir.display()
        )
    };
    let port = outpost_tests::support::free_port();
    let mut hub = Hub::start(site.dir.path(), &agent_key, port);
    hub.stop();
    hub.config_text.push_str(&assignment(1, "assigned"));
    hub.start_again();
    site.tables = hub.upstream_table();
    let agent = site.spawn_daemon();
    wait_until(
        Duration::from_secs(40),
        "the assigned source is synced",
        || site.applied_revision("assigned").as_deref() == Some(assigned_head.as_str()),
    );
    wait_until(
        Duration::from_secs(20),
        "the hub sees generation 1 running",
        || {
            let a = hub.agent();
            a["assignment_generation"] == 1 && a["sources"].as_array().is_some_and(|s| s.len() == 2)
        },
    );
    wait_until(
        Duration::from_secs(20),
        "the file's source runs beside it",
        || site.applied("app").contains("name: app"),
    );

    // Generation 2 reuses the name of the file's source: refused, and generation 1 keeps running.
    hub.stop();
    hub.config_text = hub
        .config_text
        .replace(&assignment(1, "assigned"), &assignment(2, "app"));
    hub.start_again();
    wait_until(Duration::from_secs(20), "the clash is refused", || {
        agent.log().contains("refused the hub's assignment")
    });
    assert!(
        agent.log().contains("already has a source"),
        "{}",
        agent.log()
    );
    // The hub hears of it in the next heartbeat, with the generation, the kind and the agent's reason.
    wait_until(Duration::from_secs(20), "the hub sees the clash", || {
        hub.agent()["assignment_error"]["kind"] == "name_clash"
    });
    let refused = hub.agent()["assignment_error"].clone();
    assert_eq!(refused["generation"], 2, "{refused}");
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("already has a source") && reason.contains("\"app\""),
        "{refused}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hub.agent()["assignment_generation"], 1);
    assert_eq!(
        site.applied_revision("assigned").as_deref(),
        Some(assigned_head.as_str())
    );

    // A hub that signs with another key (a forgery, as far as the agent knows): its assignment is never used.
    hub.stop();
    let hub_key = site.dir.path().join("hub.key");
    let real_key = site.dir.path().join("hub.key.real");
    std::fs::rename(&hub_key, &real_key).unwrap();
    hub.config_text = hub
        .config_text
        .replace(&assignment(2, "app"), &assignment(3, "forged"));
    hub.start_again();
    wait_until(
        Duration::from_secs(20),
        "the forged reply is refused",
        || agent.log().contains("does not verify"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        site.applied("forged").is_empty(),
        "a forged assignment applied nothing"
    );

    // The real hub returns, offering generation 1 again: the heartbeats queued meanwhile tell it of the
    // forged reply, and once it offers nothing newer than what runs, the refusal is withdrawn.
    hub.stop();
    std::fs::rename(&real_key, &hub_key).unwrap();
    hub.config_text = hub
        .config_text
        .replace(&assignment(3, "forged"), &assignment(1, "assigned"));
    hub.start_again();
    wait_until(
        Duration::from_secs(30),
        "the hub hears of the forged reply",
        || {
            hub.history().iter().any(|h| {
                h["assignment_error"]["kind"] == "bad_signature"
                    && h["assignment_error"]["generation"] == 3
            })
        },
    );
    wait_until(Duration::from_secs(20), "the refusal is withdrawn", || {
        let seen = hub.agent();
        seen["online"] == true && seen.get("assignment_error").is_none()
    });
    assert_eq!(hub.agent()["assignment_generation"], 1);
    assert!(agent.terminate());
    hub.stop();
}
