//! The admin API (issue 18, item 3) on both stores: an admin credential is needed; agents are enrolled,
//! labelled, assigned, revoked and forgotten through it; heartbeat replies serve the stored assignment while
//! a static `[[assignment]]` keeps working; generations only grow, also across two replicas on one database;
//! tokens issued with labels and an expiry enroll one agent; the `outpost-hub agents` commands call it.

mod common;

use std::process::Command;

use common::postgres::PgCluster;
use common::{Agent, TestError, TestHub, TestResult, ADMIN_TOKEN, READ_TOKEN};
use serde_json::json;

const STATIC: &str = r#"
[[assignment]]
agents = ["*"]
generation = 3
[[assignment.source]]
name = "platform"
url = "https://git.example.com/platform.git"
branch = "main"
target = "kubernetes"
"#;

fn sources(name: &str) -> serde_json::Value {
    json!({"sources": [{"name": name, "url": "https://git.example.com/shop.git", "branch": "main", "target": "directory:/srv/outpost"}]})
}

/// The assignment a heartbeat's reply carries: (generation, first source's name), or `None`.
async fn assigned(
    hub: &TestHub,
    agent: &Agent,
    seq: u64,
    running: u64,
) -> Result<Option<(u64, String)>, TestError> {
    let answer = hub.send(agent, &agent.heartbeat(seq, running)).await?;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.verify(hub)?;
    let reply = answer.json()?;
    let assignment = &reply["assignment"];
    if assignment.is_null() {
        return Ok(None);
    }
    Ok(Some((
        assignment["generation"].as_u64().ok_or("no generation")?,
        assignment["sources"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )))
}

fn listed<'a>(listing: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    listing.as_array()?.iter().find(|a| a["agent_id"] == id)
}

async fn admin_api(pg: Option<&PgCluster>) -> TestResult {
    let fixed = Agent::new("store-fixed")?;
    let body = format!(
        "{}{STATIC}{}",
        fixed.config_table(""),
        pg.map(PgCluster::store_table).unwrap_or_default()
    );
    let hub = TestHub::start(&body).await?;

    // A read credential does not administer; no credential gets the login challenge.
    let read_only = reqwest::Client::new()
        .get(format!("{}/v1/admin/agents", hub.base))
        .header("Authorization", format!("Bearer {READ_TOKEN}"))
        .send()
        .await?;
    assert_eq!(read_only.status().as_u16(), 403);
    let anonymous = reqwest::Client::new()
        .post(format!("{}/v1/admin/agents/store-fixed/revoke", hub.base))
        .send()
        .await?;
    assert_eq!(anonymous.status().as_u16(), 401);

    // Enroll by key, with labels; the same again is a 200, another key for the id a 409.
    let shop = Agent::new("shop-berlin")?;
    let enroll = json!({"agent_id": shop.id, "public_key": shop.key.public_key().to_string(), "labels": {"site": "berlin"}});
    let answer = hub
        .admin("POST", "/v1/admin/agents", Some(enroll.clone()))
        .await?;
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    assert_eq!(
        hub.admin("POST", "/v1/admin/agents", Some(enroll))
            .await?
            .status,
        200
    );
    let other = Agent::new("shop-berlin")?;
    let clash = json!({"agent_id": other.id, "public_key": other.key.public_key().to_string()});
    let answer = hub.admin("POST", "/v1/admin/agents", Some(clash)).await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (409, "already_enrolled")
    );

    // The static assignment serves both until the store has one for the shop.
    assert_eq!(
        assigned(&hub, &shop, 1, 0).await?,
        Some((3, "platform".into()))
    );
    assert_eq!(
        assigned(&hub, &fixed, 1, 0).await?,
        Some((3, "platform".into()))
    );
    let path = "/v1/admin/agents/shop-berlin/assignment";
    let set = hub.admin("PUT", path, Some(sources("shop"))).await?;
    assert_eq!(set.status, 200, "{:?}", set.json());
    assert_eq!(set.json()?["generation"], 4, "above the config's 3");
    assert_eq!(assigned(&hub, &shop, 2, 3).await?, Some((4, "shop".into())));
    // The fleet's views show what the hub now assigns, not the config's generation.
    assert_eq!(
        hub.agent_view("shop-berlin").await?["assigned_generation"],
        4
    );
    assert_eq!(
        hub.agent_view("store-fixed").await?["assigned_generation"],
        3
    );
    let one = hub.get("/v1/agents/shop-berlin").await?.json()?;
    assert_eq!(one["assigned_generation"], 4, "{one}");
    assert_eq!(assigned(&hub, &shop, 3, 4).await?, None, "up to date");
    assert_eq!(
        assigned(&hub, &fixed, 2, 0).await?,
        Some((3, "platform".into()))
    );
    let again = hub.admin("PUT", path, Some(sources("shop-v2"))).await?;
    assert_eq!(again.json()?["generation"], 5);
    assert_eq!(
        assigned(&hub, &shop, 4, 4).await?,
        Some((5, "shop-v2".into()))
    );
    let secret = json!({"sources": [{"name": "a", "url": "https://u:p@h/r", "branch": "main", "target": "kubernetes"}]});
    let refused = hub.admin("PUT", path, Some(secret)).await?;
    assert_eq!(
        (refused.status, refused.reason()?.as_str()),
        (400, "invalid_assignment")
    );

    // Labels replace the old set; bad ones are refused with the rule.
    let labels = json!({"labels": {"site": "berlin", "tier": "edge"}});
    let answer = hub
        .admin("PUT", "/v1/admin/agents/shop-berlin/labels", Some(labels))
        .await?;
    assert_eq!(answer.status, 200);
    let bad = json!({"labels": {"a b": "c"}});
    let answer = hub
        .admin("PUT", "/v1/admin/agents/shop-berlin/labels", Some(bad))
        .await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (400, "invalid_labels")
    );
    let listing = hub.admin("GET", "/v1/admin/agents", None).await?.json()?;
    let entry = listed(&listing, "shop-berlin").ok_or("shop not listed")?;
    assert_eq!(entry["labels"], json!({"site": "berlin", "tier": "edge"}));
    assert_eq!(entry["origin"], "enrolled");
    assert!(entry["last_seen_ms"].as_u64().is_some());
    assert_eq!(
        listed(&listing, "store-fixed").map(|e| &e["origin"]),
        Some(&json!("config"))
    );

    // Revoked: its key is refused, its records stay; a config agent cannot be revoked here.
    let answer = hub
        .admin("POST", "/v1/admin/agents/shop-berlin/revoke", None)
        .await?;
    assert_eq!(answer.status, 200);
    let refused = hub.send(&shop, &shop.heartbeat(5, 5)).await?;
    assert_eq!(
        (refused.status, refused.reason()?.as_str()),
        (401, "unknown_key")
    );
    let listing = hub.admin("GET", "/v1/admin/agents", None).await?.json()?;
    assert_eq!(
        listed(&listing, "shop-berlin").map(|e| &e["origin"]),
        Some(&json!("removed"))
    );
    let answer = hub
        .admin("POST", "/v1/admin/agents/store-fixed/revoke", None)
        .await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (409, "listed_in_config")
    );
    let answer = hub
        .admin("POST", "/v1/admin/agents/nobody/revoke", None)
        .await?;
    assert_eq!(answer.status, 404);

    // Forgotten: gone from the listing.
    let answer = hub
        .admin("DELETE", "/v1/admin/agents/shop-berlin", None)
        .await?;
    assert_eq!(answer.json()?["heartbeat"], true);
    let listing = hub.admin("GET", "/v1/admin/agents", None).await?.json()?;
    assert!(listed(&listing, "shop-berlin").is_none(), "{listing}");
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn admin_api_on_the_embedded_store() -> TestResult {
    admin_api(None).await
}

#[tokio::test]
async fn admin_api_on_postgres() -> TestResult {
    let pg = PgCluster::start()?;
    admin_api(Some(&pg)).await
}

fn sha256_hex(text: &str) -> String {
    outpost_hub::access::hex(&outpost_hub::access::sha256(text.as_bytes()))
}

fn enrollment(agent: &Agent, token: &str) -> Result<Vec<u8>, TestError> {
    Ok(serde_json::to_vec(&json!({
        "agent_id": agent.id,
        "public_key": agent.key.public_key().to_string(),
        "token": token,
    }))?)
}

async fn issued_tokens(pg: Option<&PgCluster>) -> TestResult {
    // No bootstrap_token_file: issued tokens alone enroll.
    let hub = TestHub::start(&pg.map(PgCluster::store_table).unwrap_or_default()).await?;
    let token = "9c1e5a7b3d2f4e6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a";
    let far = outpost_hub::state::now_ms() + 3_600_000;
    let issue = json!({"token_sha256": sha256_hex(token), "labels": {"site": "lyon"}, "expires_at_ms": far});
    let answer = hub.admin("POST", "/v1/admin/tokens", Some(issue)).await?;
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    let fingerprint = hub.public_key()?.fingerprint();
    assert_eq!(answer.json()?["hub_key_fingerprint"], json!(fingerprint));

    let first = Agent::new("shop-lyon")?;
    let answer = hub
        .post("/v1/enroll", enrollment(&first, token)?, &[])
        .await?;
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    assert_eq!(hub.send(&first, &first.heartbeat(1, 0)).await?.status, 200);
    let listing = hub.admin("GET", "/v1/admin/agents", None).await?.json()?;
    let entry = listed(&listing, "shop-lyon").ok_or("not listed")?;
    assert_eq!(entry["labels"], json!({"site": "lyon"}));

    let second = Agent::new("shop-nice")?;
    let answer = hub
        .post("/v1/enroll", enrollment(&second, token)?, &[])
        .await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (403, "token_used")
    );
    let unknown = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let answer = hub
        .post("/v1/enroll", enrollment(&second, unknown)?, &[])
        .await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (403, "bad_token")
    );

    // Expired: refused at enrollment. (A token cannot be issued already expired, so it is made short.)
    let short = "3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b";
    let soon = outpost_hub::state::now_ms() + 300;
    let issue = json!({"token_sha256": sha256_hex(short), "expires_at_ms": soon});
    assert_eq!(
        hub.admin("POST", "/v1/admin/tokens", Some(issue))
            .await?
            .status,
        201
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let answer = hub
        .post("/v1/enroll", enrollment(&second, short)?, &[])
        .await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (403, "token_expired")
    );
    let past = json!({"token_sha256": sha256_hex(short), "expires_at_ms": 1});
    let answer = hub.admin("POST", "/v1/admin/tokens", Some(past)).await?;
    assert_eq!(answer.status, 400);
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn issued_tokens_on_the_embedded_store() -> TestResult {
    issued_tokens(None).await
}

#[tokio::test]
async fn issued_tokens_on_postgres() -> TestResult {
    let pg = PgCluster::start()?;
    issued_tokens(Some(&pg)).await
}

/// Two replicas on one database: assignments set through either get ever higher generations, and either
/// serves the newest.
#[tokio::test]
async fn generations_grow_across_replicas() -> TestResult {
    let pg = PgCluster::start()?;
    let agent = Agent::new("shop-1")?;
    let body = format!("{}{STATIC}{}", agent.config_table(""), pg.store_table());
    let (one, two) = (TestHub::start(&body).await?, TestHub::start(&body).await?);
    let path = "/v1/admin/agents/shop-1/assignment";
    let mut last = 3;
    for round in 0..6u64 {
        let (setter, other) = if round % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let name = format!("shop-{round}");
        let set = setter.admin("PUT", path, Some(sources(&name))).await?;
        let generation = set.json()?["generation"].as_u64().ok_or("no generation")?;
        assert!(generation > last, "generation {generation} after {last}");
        last = generation;
        let got = assigned(other, &agent, round + 1, 0).await?;
        assert_eq!(got, Some((generation, name)));
    }
    one.stop().await;
    two.stop().await;
    Ok(())
}

/// `outpost-hub agents …` and `token create` against a running hub; the token is never printed. (Two
/// workers: the test blocks one while the command runs, and the hub in this process serves on the other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_calls_the_admin_api() -> TestResult {
    let hub = TestHub::start("").await?;
    let config = hub.config_for_tools()?;
    let credential = common::child::write_private(hub.dir.path(), "admin.token", ADMIN_TOKEN)?;
    let bin = env!("CARGO_BIN_EXE_outpost-hub");
    let run = |args: &[&str]| -> Result<(bool, String, String), TestError> {
        let out = Command::new(bin)
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--token-file")
            .arg(&credential)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    };
    let agent = Agent::new("shop-cli")?;
    let key = agent.key.public_key().to_string();
    let (ok, out, err) = run(&[
        "agents",
        "enroll",
        "--agent",
        "shop-cli",
        "--public-key",
        &key,
        "--labels",
        "site=oslo",
    ])?;
    assert!(ok, "{out}{err}");
    let sources = hub.dir.path().join("sources.toml");
    std::fs::write(&sources, "[[source]]\nname = \"shop\"\nurl = \"https://git.example.com/shop.git\"\nbranch = \"main\"\ntarget = \"directory:/srv/outpost\"\n")?;
    let (ok, out, err) = run(&[
        "agents",
        "assign",
        "--agent",
        "shop-cli",
        "--sources",
        &sources.display().to_string(),
    ])?;
    assert!(ok && out.contains("generation 1"), "{out}{err}");
    assert_eq!(
        assigned(&hub, &agent, 1, 0).await?,
        Some((1, "shop".into()))
    );
    let (ok, out, err) = run(&["agents", "list"])?;
    assert!(
        ok && out.contains("shop-cli") && out.contains("site=oslo"),
        "{out}{err}"
    );

    let token_file = hub.dir.path().join("bootstrap.token");
    let (ok, out, err) = run(&[
        "token",
        "create",
        "--out",
        &token_file.display().to_string(),
        "--labels",
        "site=rome",
        "--expires",
        "1h",
    ])?;
    assert!(ok, "{out}{err}");
    let token = std::fs::read_to_string(&token_file)?;
    assert!(
        !out.contains(token.trim()) && !err.contains(token.trim()),
        "the token was printed"
    );
    assert!(
        out.contains("outpost enroll --hub") && out.contains(&hub.public_key()?.fingerprint()),
        "{out}"
    );
    let newcomer = Agent::new("shop-rome")?;
    let answer = hub
        .post("/v1/enroll", enrollment(&newcomer, token.trim())?, &[])
        .await?;
    assert_eq!(answer.status, 201);

    let (ok, out, err) = run(&["agents", "revoke", "--agent", "shop-cli"])?;
    assert!(ok, "{out}{err}");
    assert_eq!(hub.send(&agent, &agent.heartbeat(2, 1)).await?.status, 401);
    let (ok, out, err) = run(&["agents", "revoke", "--agent", "shop-cli"])?;
    assert!(!ok && err.contains("not enrolled"), "{out}{err}");

    // A read credential is refused with the fix.
    let reader = common::child::write_private(hub.dir.path(), "read.token", READ_TOKEN)?;
    let out = Command::new(bin)
        .args(["agents", "list", "--config"])
        .arg(&config)
        .arg("--token-file")
        .arg(&reader)
        .output()?;
    let err = String::from_utf8(out.stderr)?;
    assert!(!out.status.success() && err.contains("[[admin]]"), "{err}");
    hub.stop().await;
    Ok(())
}
