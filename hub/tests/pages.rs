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
