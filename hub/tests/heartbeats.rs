//! `POST /v1/heartbeats` over real sockets: what the hub accepts, what it refuses and with which reason, and
//! that a refusal records nothing.

mod common;

use common::{now, Agent, TestHub, TestResult, JSON};
use outpost_proto::signed::sign_request;
use outpost_proto::wire::parse_assignment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ASSIGNMENTS: &str = r#"
[[assignment]]
agents = ["*"]
generation = 1
[[assignment.source]]
name = "base"
url = "https://git.example.com/fleet/base.git"
branch = "main"
target = "kubernetes"

[[assignment]]
agents = ["store-042"]
generation = 2
[[assignment.source]]
name = "platform"
url = "https://git.example.com/fleet/platform.git"
branch = "main"
path = "clusters/store-042"
target = "directory:/var/lib/rancher/k3s/server/manifests/outpost"
[assignment.source.auth]
token_file = "/etc/outpost/git-token"
"#;

#[tokio::test]
async fn accepted_heartbeat_gets_a_signed_reply_with_its_assignment() -> TestResult {
    let store = Agent::new("store-042")?;
    let other = Agent::new("store-043")?;
    let hub = TestHub::start(&format!(
        "{}{}{ASSIGNMENTS}",
        store.config_table(""),
        other.config_table("")
    ))
    .await?;

    let answer = hub.send(&store, &store.heartbeat(1, 0)).await?;
    assert_eq!(
        answer.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.verify(&hub)?;
    let reply = answer.json()?;
    assert_eq!(reply["ack_seq"], 1);
    let assignment = parse_assignment(serde_json::to_vec(&reply["assignment"])?.as_slice())?;
    assert_eq!(assignment.generation, 2);
    assert_eq!(assignment.sources.len(), 1);
    assert_eq!(assignment.sources[0].name, "platform");

    // Another key must not verify the reply: the signature is the hub's.
    let stranger = Agent::new("x")?;
    let headers: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let received = outpost_proto::signed::ReceivedResponse {
        status: 200,
        headers: &headers,
        body: &answer.body,
    };
    let forged = outpost_proto::signed::verify_response(
        &received,
        &stranger.key.public_key(),
        now(),
        Default::default(),
    );
    assert!(forged.is_err());

    // An agent already running generation 2 gets no assignment back.
    let current = hub.send(&store, &store.heartbeat(2, 2)).await?;
    assert_eq!(current.status, 200);
    current.verify(&hub)?;
    assert_eq!(
        current.json()?,
        serde_json::json!({"ack_seq": 2, "assignment": null})
    );

    // The wildcard assignment reaches agents without their own.
    let wildcard = hub.send(&other, &other.heartbeat(7, 0)).await?;
    assert_eq!(wildcard.status, 200);
    let reply = wildcard.json()?;
    assert_eq!(
        (
            reply["ack_seq"].as_u64(),
            reply["assignment"]["generation"].as_u64()
        ),
        (Some(7), Some(1))
    );

    let view = hub.agent_view("store-042").await?;
    assert_eq!(
        (view["seq"].as_u64(), view["online"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(view["assigned_generation"], 2);
    assert_eq!(view["sources"][0]["applied_revision"], common::REVISION);
    let detail = hub.get("/v1/agents/store-042").await?.json()?;
    assert_eq!(detail["history"].as_array().map(Vec::len), Some(2));
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_key_is_refused_and_nothing_is_recorded() -> TestResult {
    let enrolled = Agent::new("store-042")?;
    let hub = TestHub::start(&enrolled.config_table("")).await?;
    // Same id, but a key the hub does not know.
    let impostor = Agent::new("store-042")?;
    let answer = hub.send(&impostor, &impostor.heartbeat(1, 0)).await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (401, "unknown_key")
    );
    assert!(answer.json()?["message"]
        .as_str()
        .unwrap_or_default()
        .contains("[[agent]]"));

    let unsigned = hub
        .post("/v1/heartbeats", enrolled.heartbeat(1, 0).to_body()?, &[])
        .await?;
    assert_eq!(
        (unsigned.status, unsigned.reason()?.as_str()),
        (401, "unsigned")
    );

    let view = hub.agent_view("store-042").await?;
    assert_eq!(view["status"], "never-seen");
    hub.stop().await;
    Ok(())
}

/// POSTs a heartbeat signed for `authority` and sent with that `Host`, as an agent pointed at that name would.
async fn send_for_authority(
    hub: &TestHub,
    agent: &Agent,
    seq: u64,
    authority: &str,
) -> Result<common::Answer, common::TestError> {
    let body = agent.heartbeat(seq, 0).to_body()?;
    let mut headers = sign_request(
        "POST",
        authority,
        "/v1/heartbeats",
        &body,
        JSON,
        &agent.key,
        now(),
    )?;
    headers.push(("Host", authority.to_owned()));
    hub.post("/v1/heartbeats", body, &headers).await
}

#[tokio::test]
async fn a_heartbeat_signed_for_another_hub_is_refused() -> TestResult {
    let agent = Agent::new("store-042")?;
    // Defaults: the listening address (and localhost, on loopback).
    let hub = TestHub::start(&agent.config_table("")).await?;
    let answer = send_for_authority(&hub, &agent, 1, "staging.example:8443").await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (401, "wrong_authority")
    );
    let message = answer.json()?["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("staging.example:8443") && message.contains(&hub.authority),
        "{message}"
    );
    assert_eq!(hub.agent_view("store-042").await?["status"], "never-seen");
    let accepted = send_for_authority(&hub, &agent, 2, &hub.authority.clone()).await?;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json());
    hub.stop().await;

    // Configured names replace the defaults: the listening address itself is then refused.
    let agent = Agent::new("store-043")?;
    let hub = TestHub::start(&format!(
        "names = [\"hub.example:8443\"]\n{}",
        agent.config_table("")
    ))
    .await?;
    let refused = send_for_authority(&hub, &agent, 1, &hub.authority.clone()).await?;
    assert_eq!(
        (refused.status, refused.reason()?.as_str()),
        (401, "wrong_authority")
    );
    assert_eq!(hub.agent_view("store-043").await?["status"], "never-seen");
    for (seq, name) in [(2, "hub.example:8443"), (3, "HUB.example:8443")] {
        let answer = send_for_authority(&hub, &agent, seq, name).await?;
        assert_eq!(answer.status, 200, "{name}: {:?}", answer.json());
    }
    assert_eq!(hub.agent_view("store-043").await?["seq"], 3);
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn tampering_is_refused() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&agent.config_table("")).await?;
    let body = agent.heartbeat(1, 0).to_body()?;
    let headers = sign_request(
        "POST",
        &hub.authority,
        "/v1/heartbeats",
        &body,
        JSON,
        &agent.key,
        now(),
    )?;

    // The body changed after signing: its digest no longer matches.
    let mut tampered = body.clone();
    let at = String::from_utf8(tampered.clone())?
        .find("\"seq\":1")
        .ok_or("seq not found")?;
    tampered[at + 6] = b'9';
    let answer = hub
        .post("/v1/heartbeats", tampered.clone(), &headers)
        .await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (401, "bad_digest")
    );

    // The attacker also fixes the digest: now the signature no longer covers what is sent.
    let mut redigested = headers.clone();
    redigested[0].1 = outpost_proto::digest::content_digest(&tampered);
    let answer = hub.post("/v1/heartbeats", tampered, &redigested).await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (401, "bad_signature")
    );

    // Signed for another path (or host): the covered components differ.
    let elsewhere = sign_request(
        "POST",
        "hub.example.com",
        "/v1/heartbeats",
        &body,
        JSON,
        &agent.key,
        now(),
    )?;
    let answer = hub.post("/v1/heartbeats", body.clone(), &elsewhere).await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (401, "bad_signature")
    );

    // Signed by the agent for another agent's id: authenticated, but not allowed.
    let mut foreign = agent.heartbeat(1, 0);
    foreign.agent_id = "store-043".into();
    let answer = hub.send(&agent, &foreign).await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (403, "agent_mismatch")
    );

    assert_eq!(hub.agent_view("store-042").await?["status"], "never-seen");
    let ok = hub.post("/v1/heartbeats", body, &headers).await?;
    assert_eq!(ok.status, 200);
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn stale_or_future_signatures_are_refused() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&format!("freshness = \"1m\"\n{}", agent.config_table(""))).await?;
    let body = agent.heartbeat(1, 0).to_body()?;
    for created in [now() - 120, now() + 120] {
        let answer = hub.send_signed(&agent, &body, created).await?;
        assert_eq!(
            (answer.status, answer.reason()?.as_str()),
            (401, "stale_signature"),
            "created {created}"
        );
    }
    let within = hub.send_signed(&agent, &body, now() - 30).await?;
    assert_eq!(within.status, 200);
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn seq_must_grow_but_duplicates_are_acknowledged() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&agent.config_table("")).await?;
    for seq in [5, 6] {
        assert_eq!(
            hub.send(&agent, &agent.heartbeat(seq, 0)).await?.status,
            200
        );
    }

    // A lower seq never seen: a replay or a reorder.
    let replay = hub.send(&agent, &agent.heartbeat(3, 0)).await?;
    assert_eq!(
        (replay.status, replay.reason()?.as_str()),
        (409, "seq_not_newer")
    );
    // Signed, and naming the agent and the seq: the agent drops a heartbeat only on such a refusal.
    replay.verify(&hub)?;
    assert_eq!(
        (&replay.json()?["agent_id"], &replay.json()?["seq"]),
        (&serde_json::json!("store-042"), &serde_json::json!(3))
    );

    // The same heartbeat again (its acknowledgement was lost): 200, acknowledged, nothing recorded twice.
    for seq in [6, 5] {
        let again = hub.send(&agent, &agent.heartbeat(seq, 0)).await?;
        assert_eq!(again.status, 200);
        again.verify(&hub)?;
        assert_eq!(again.json()?["ack_seq"], seq);
    }

    // The same seq with other content is not a duplicate.
    let mut changed = agent.heartbeat(6, 0);
    changed.dropped = 4;
    let answer = hub.send(&agent, &changed).await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (409, "seq_reused")
    );
    answer.verify(&hub)?;
    assert_eq!(answer.json()?["seq"], 6);

    let detail = hub.get("/v1/agents/store-042").await?.json()?;
    assert_eq!(detail["seq"], 6);
    assert_eq!(detail["history"].as_array().map(Vec::len), Some(2));

    // The last seq survives a restart of the hub.
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir, &agent.config_table(""), None).await?;
    let replay = hub.send(&agent, &agent.heartbeat(4, 0)).await?;
    assert_eq!(replay.status, 409);
    assert_eq!(hub.send(&agent, &agent.heartbeat(7, 0)).await?.status, 200);
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn oversize_bodies_are_refused_with_413() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&format!("max_body = \"2KiB\"\n{}", agent.config_table(""))).await?;
    let mut heartbeat = agent.heartbeat(1, 0);
    heartbeat.sources[0].last_error = Some("x".repeat(3000));
    let answer = hub.send(&agent, &heartbeat).await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (413, "body_too_large")
    );

    // Without a Content-Length (chunked), the limit applies while the body streams in.
    let addr = hub.authority.clone();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST /v1/heartbeats HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {JSON}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let chunk = vec![b' '; 1024];
    for _ in 0..3 {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        stream.write_all(&chunk).await?;
        stream.write_all(b"\r\n").await?;
    }
    stream.write_all(b"0\r\n\r\n").await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("body_too_large"), "{response}");

    assert_eq!(hub.agent_view("store-042").await?["status"], "never-seen");
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_and_wrong_routes() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&agent.config_table("")).await?;
    let answer = hub
        .send_signed(&agent, b"{\"schema\": \"outpost.heartbeat/v1\"}", now())
        .await?;
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (400, "invalid_heartbeat")
    );
    assert_eq!(hub.get("/v1/heartbeats").await?.status, 405);
    assert_eq!(hub.get("/nowhere").await?.status, 404);
    assert_eq!(hub.get("/v1/agents/nobody").await?.status, 404);
    hub.stop().await;
    Ok(())
}
