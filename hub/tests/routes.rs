//! The routes' shared answers (issue 18 item 5, routing through axum): a wrong method is told which one to
//! use (405 with `Allow`, before any credential is asked for), an unknown path is told every endpoint, and
//! both are refusals in JSON like every other.

mod common;

use common::{Agent, TestHub, TestResult};

fn header<'a>(answer: &'a common::Answer, name: &str) -> Option<&'a str> {
    answer
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_wrong_method_is_told_the_right_one() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&agent.config_table("")).await?;

    let get = hub.get("/v1/heartbeats").await?;
    assert_eq!(get.status, 405);
    assert_eq!(header(&get, "allow"), Some("POST"));
    assert_eq!(get.reason()?, "method_not_allowed");
    assert_eq!(get.json()?["message"], "use POST on this endpoint");

    // A fleet read: 405 without a credential, not a login prompt.
    let anonymous = reqwest::Client::new()
        .delete(format!("{}/agents/store-042", hub.base))
        .send()
        .await?;
    assert_eq!(anonymous.status().as_u16(), 405);
    assert_eq!(
        anonymous
            .headers()
            .get("allow")
            .map(|v| v.to_str())
            .transpose()?,
        Some("GET,HEAD")
    );
    assert!(anonymous.headers().get("www-authenticate").is_none());
    let body: serde_json::Value = serde_json::from_slice(&anonymous.bytes().await?)?;
    assert_eq!(body["error"], "method_not_allowed");
    assert_eq!(body["message"], "use GET on this endpoint");

    // Counted for the metrics under its endpoint, like every refusal.
    let metrics = String::from_utf8(hub.get("/metrics").await?.body)?;
    assert!(
        metrics.contains("endpoint=\"heartbeats\",reason=\"method_not_allowed\"} 1"),
        "{metrics}"
    );
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_unknown_path_is_told_every_endpoint() -> TestResult {
    let hub = TestHub::start("").await?;
    let answer = hub.get("/v2/heartbeats").await?;
    assert_eq!(answer.status, 404);
    assert_eq!(header(&answer, "content-type"), Some(common::JSON));
    assert_eq!(answer.reason()?, "not_found");
    let message = answer.json()?["message"]
        .as_str()
        .ok_or("no message")?
        .to_owned();
    assert!(
        message.starts_with("no endpoint /v2/heartbeats; "),
        "{message}"
    );
    for endpoint in [
        "POST /v1/heartbeats",
        "POST /v1/enroll",
        "GET /v1/agents/{id}",
        "GET /agents/{id}",
        "GET /metrics",
        "/v1/admin/",
    ] {
        assert!(message.contains(endpoint), "{endpoint} not in {message}");
    }
    hub.stop().await;
    Ok(())
}
