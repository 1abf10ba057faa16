//! The fleet page (`GET /`) and the metrics (`GET /metrics`) over real HTTP, after one accepted and one
//! refused heartbeat: the agent shows with its source state, and each heartbeat was counted once.

mod common;

use common::{Agent, Answer, TestHub, TestResult};

fn content_type(answer: &Answer) -> Option<&str> {
    answer
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn the_fleet_page_and_metrics_show_what_heartbeats_said() -> TestResult {
    let agent = Agent::new("store-042")?;
    let stranger = Agent::new("store-999")?;
    let hub = TestHub::start(&agent.config_table("")).await?;

    assert_eq!(hub.send(&agent, &agent.heartbeat(1, 0)).await?.status, 200);
    let refused = hub.send(&stranger, &stranger.heartbeat(1, 0)).await?;
    assert_eq!(
        (refused.status, refused.reason()?.as_str()),
        (401, "unknown_key")
    );

    let page = hub.get("/").await?;
    assert_eq!(page.status, 200);
    assert_eq!(content_type(&page), Some("text/html; charset=utf-8"));
    let html = String::from_utf8(page.body)?;
    assert!(html.contains("<code>store-042</code>"), "{html}");
    assert!(html.contains("class=\"online\">online</td>"), "{html}");
    assert!(
        html.contains("<td>platform</td><td>Ready</td><td><code>0123456789ab</code></td>"),
        "{html}"
    );
    assert!(
        !html.contains("store-999"),
        "a refused agent is not listed: {html}"
    );

    let metrics = hub.get("/metrics").await?;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        content_type(&metrics),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(metrics.body)?;
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "outpost_hub_agents{status=\"online\"} 1",
        "outpost_hub_agent_online{agent=\"store-042\"} 1",
        "outpost_hub_source_state{agent=\"store-042\",source=\"platform\",state=\"Ready\"} 1",
        "outpost_hub_heartbeats_accepted_total 1",
        "outpost_hub_heartbeats_rejected_total{reason=\"unknown_key\"} 1",
    ] {
        assert!(lines.contains(&expected), "no line {expected:?} in\n{text}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("outpost_hub_agent_last_seen_seconds{agent=\"store-042\"} ")),
        "{text}"
    );

    // Reading pages counts no heartbeats, and they take GET only, like the other read endpoints.
    assert_eq!(hub.post("/", Vec::new(), &[]).await?.status, 405);
    assert_eq!(hub.post("/metrics", Vec::new(), &[]).await?.status, 405);
    let again = String::from_utf8(hub.get("/metrics").await?.body)?;
    assert!(
        again.contains("\noutpost_hub_heartbeats_accepted_total 1\n"),
        "{again}"
    );
    hub.stop().await;
    Ok(())
}

/// The fleet page for many agents (issue 18, item 7): counts first, a filtered page of agents, and each
/// agent's own page with its recent heartbeats, over real HTTP with a read credential.
#[tokio::test]
async fn the_fleet_page_filters_pages_and_links_each_agent() -> TestResult {
    let agents: Vec<Agent> = (0..3)
        .map(|i| Agent::new(&format!("shop-{i}")))
        .collect::<Result<_, _>>()?;
    let body: String = agents.iter().map(|a| a.config_table("")).collect();
    let hub = TestHub::start(&body).await?;
    for seq in 1..=3 {
        assert_eq!(
            hub.send(&agents[0], &agents[0].heartbeat(seq, 0))
                .await?
                .status,
            200
        );
    }
    let mut failing = agents[1].heartbeat(1, 0);
    failing.sources[0].state = outpost_proto::wire::SourceState::Failed;
    failing.sources[0].last_error = Some("ImagePullBackOff on shop-web".into());
    assert_eq!(hub.send(&agents[1], &failing).await?.status, 200);

    let html = String::from_utf8(hub.get("/").await?.body)?;
    assert!(
        html.contains("<a href=\"/?state=online\">online</a>: 2"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"/?state=never-seen\">never seen</a>: 1"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"/?state=Failed\">Failed</a>: 1"),
        "{html}"
    );
    assert!(
        html.contains("<form method=\"get\" action=\"/\">") && !html.contains("<script"),
        "{html}"
    );
    let problem = html.find("/agents/shop-1").ok_or("shop-1 not linked")?;
    let fine = html.find("/agents/shop-0").ok_or("shop-0 not linked")?;
    assert!(problem < fine, "problems first: {html}");

    let filtered = String::from_utf8(hub.get("/?state=&q=imagepull").await?.body)?;
    assert!(filtered.contains("1 matching agents"), "{filtered}");
    assert!(
        filtered.contains("/agents/shop-1") && !filtered.contains("/agents/shop-0\""),
        "{filtered}"
    );
    assert_eq!(hub.get("/?state=nonsense").await?.status, 400);

    // Labels (set through the admin API) show under the id and filter the list.
    let labels = serde_json::json!({"labels": {"site": "berlin"}});
    let set = hub
        .admin("PUT", "/v1/admin/agents/shop-2/labels", Some(labels))
        .await?;
    assert_eq!(set.status, 200);
    let by_label = String::from_utf8(hub.get("/?label=site%3Dberlin").await?.body)?;
    assert!(by_label.contains("1 matching agents"), "{by_label}");
    assert!(
        by_label.contains("<a class=\"label\" href=\"/?label=site%3Dberlin\">site=berlin</a>"),
        "{by_label}"
    );
    assert_eq!(hub.agent_view("shop-2").await?["labels"]["site"], "berlin");

    let page = hub.get("/agents/shop-0").await?;
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body)?;
    assert!(html.contains("<h1><code>shop-0</code></h1>"), "{html}");
    let (three, one) = (html.find("<tr><td>3</td>"), html.find("<tr><td>1</td>"));
    assert!(
        three.is_some() && three < one,
        "newest heartbeat first: {html}"
    );
    assert_eq!(hub.get("/agents/nobody").await?.status, 404);
    // Like every fleet read, it needs the read credential.
    let anonymous = reqwest::get(format!("{}/agents/shop-0", hub.base)).await?;
    assert_eq!(anonymous.status().as_u16(), 401);
    hub.stop().await;
    Ok(())
}

/// An agent's refused requests show on its page and in its JSON (issue 18 item 7): a heartbeat replayed
/// after the signature's freshness window and one older than the last accepted are listed there with their
/// reasons, newest first; a request no enrolled key signed is nobody's.
#[tokio::test]
async fn a_replayed_heartbeat_shows_on_its_agents_page() -> TestResult {
    let agent = Agent::new("store-042")?;
    let other = Agent::new("store-043")?;
    let hub = TestHub::start(&format!(
        "{}{}",
        agent.config_table(""),
        other.config_table("")
    ))
    .await?;
    assert_eq!(hub.send(&agent, &agent.heartbeat(1, 0)).await?.status, 200);
    // A request captured an hour ago and sent again: its signature is stale.
    let captured = agent.heartbeat(2, 0).to_body()?;
    let replay = hub
        .send_signed(&agent, &captured, common::now() - 3600)
        .await?;
    assert_eq!(replay.reason()?, "stale_signature");
    assert_eq!(hub.send(&agent, &agent.heartbeat(5, 0)).await?.status, 200);
    // Seq 3 after 5, freshly signed: refused with a signed 409.
    let older = hub.send(&agent, &agent.heartbeat(3, 0)).await?;
    assert_eq!(older.status, 409);
    // Unsigned: no enrolled key, so no agent's page lists it.
    let unsigned = hub
        .post("/v1/heartbeats", other.heartbeat(1, 0).to_body()?, &[])
        .await?;
    assert_eq!(unsigned.status, 401);

    let html = String::from_utf8(hub.get("/agents/store-042").await?.body)?;
    assert!(
        html.contains("<h2>Refusals seen by this hub</h2>"),
        "{html}"
    );
    assert!(
        html.contains("<td>409</td><td><code>seq_not_newer</code></td>"),
        "{html}"
    );
    assert!(
        html.contains(
            "heartbeat seq 3 of agent &quot;store-042&quot; is not above the last accepted seq 5"
        ),
        "escaped message: {html}"
    );
    assert!(
        html.contains("<td>401</td><td><code>stale_signature</code></td>"),
        "{html}"
    );
    let json = hub.get("/v1/agents/store-042").await?.json()?;
    assert_eq!(json["refusals"][0]["reason"], "seq_not_newer");
    assert_eq!(json["refusals"][0]["status"], 409);
    assert!(json["refusals"][0]["at"].is_string(), "{json}");
    assert_eq!(json["refusals"][1]["reason"], "stale_signature");
    assert_eq!(json["refusals"].as_array().map(Vec::len), Some(2));

    let quiet = hub.get("/v1/agents/store-043").await?.json()?;
    assert_eq!(quiet["refusals"], serde_json::json!([]));

    // Forgotten through the admin API: its refusals go with its records (it stays known from the config).
    let forgotten = hub
        .admin("DELETE", "/v1/admin/agents/store-042", None)
        .await?;
    assert_eq!(forgotten.status, 200, "{:?}", forgotten.json());
    let after = hub.get("/v1/agents/store-042").await?.json()?;
    assert_eq!(after["refusals"], serde_json::json!([]), "{after}");
    let quiet_html = String::from_utf8(hub.get("/agents/store-043").await?.body)?;
    assert!(!quiet_html.contains("seq_not_newer") && !quiet_html.contains("unsigned"));
    hub.stop().await;
    Ok(())
}
