//! `POST /v1/ping`, the signed no-op behind `outpost check --connect`: checked like a heartbeat (enrolled
//! key, fresh signature, the hub's name, the signer's own id), answered signed, and nothing stored.

mod common;

use common::{now, Agent, Answer, TestError, TestHub, TestResult, JSON};
use outpost_proto::signed::sign_request;
use outpost_proto::wire::Ping;

fn ping_body(id: &str) -> Vec<u8> {
    Ping {
        agent_id: id.into(),
    }
    .to_body()
}

/// POSTs `body` to /v1/ping signed by `agent` for `signed_path` at `created`.
async fn ping(
    hub: &TestHub,
    agent: &Agent,
    body: Vec<u8>,
    signed_path: &str,
    created: i64,
) -> Result<Answer, TestError> {
    let headers = sign_request(
        "POST",
        &hub.authority,
        signed_path,
        &body,
        JSON,
        &agent.key,
        created,
    )?;
    hub.post("/v1/ping", body, &headers).await
}

#[tokio::test]
async fn an_enrolled_agent_is_answered_signed_and_nothing_is_stored() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&agent.config_table("")).await?;

    let answer = ping(&hub, &agent, ping_body("store-042"), "/v1/ping", now()).await?;
    assert_eq!(
        answer.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.verify(&hub)?;
    assert_eq!(
        Ping::parse(&answer.body),
        Some(Ping {
            agent_id: "store-042".into()
        })
    );
    // A second one is as good: no seq, nothing to replay against.
    let again = ping(&hub, &agent, ping_body("store-042"), "/v1/ping", now()).await?;
    assert_eq!(again.status, 200);

    // Nothing recorded: the agent is still never seen, and its first heartbeat is seq 1.
    let view = hub.agent_view("store-042").await?;
    assert_eq!(view["status"], "never-seen", "{view}");
    assert!(view["seq"].is_null(), "{view}");
    assert_eq!(hub.send(&agent, &agent.heartbeat(1, 0)).await?.status, 200);
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_ping_is_refused_like_a_heartbeat() -> TestResult {
    let agent = Agent::new("store-042")?;
    let stranger = Agent::new("store-099")?;
    let hub = TestHub::start(&agent.config_table("")).await?;

    let unknown = ping(&hub, &stranger, ping_body("store-099"), "/v1/ping", now()).await?;
    assert_eq!(
        (unknown.status, unknown.reason()?.as_str()),
        (401, "unknown_key")
    );

    let stale = ping(
        &hub,
        &agent,
        ping_body("store-042"),
        "/v1/ping",
        now() - 3600,
    )
    .await?;
    assert_eq!(
        (stale.status, stale.reason()?.as_str()),
        (401, "stale_signature")
    );

    // A signature for another endpoint does not carry over: the path is signed.
    let elsewhere = ping(
        &hub,
        &agent,
        ping_body("store-042"),
        "/v1/heartbeats",
        now(),
    )
    .await?;
    assert_eq!(
        (elsewhere.status, elsewhere.reason()?.as_str()),
        (401, "bad_signature")
    );

    let mismatch = ping(&hub, &agent, ping_body("store-043"), "/v1/ping", now()).await?;
    assert_eq!(
        (mismatch.status, mismatch.reason()?.as_str()),
        (403, "agent_mismatch")
    );

    let garbage = ping(&hub, &agent, b"{\"seq\": 1}".to_vec(), "/v1/ping", now()).await?;
    assert_eq!(
        (garbage.status, garbage.reason()?.as_str()),
        (400, "invalid_ping")
    );

    let unsigned = hub.post("/v1/ping", ping_body("store-042"), &[]).await?;
    assert_eq!(
        (unsigned.status, unsigned.reason()?.as_str()),
        (401, "unsigned")
    );
    assert_eq!(hub.get("/v1/ping").await?.status, 405);

    // The agent's own refusals show on its page, as the heartbeats' do.
    let json = hub.get("/v1/agents/store-042").await?.json()?;
    let reasons: Vec<&str> = json["refusals"]
        .as_array()
        .ok_or("no refusals")?
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "invalid_ping",
            "agent_mismatch",
            "bad_signature",
            "stale_signature"
        ]
    );
    hub.stop().await;
    Ok(())
}
