//! The real binary's log under a flood of refused requests: a few lines and a summary, not one line per
//! request, while the metrics count every refusal; and text a client sent cannot forge a log line.

mod common;

use common::child::ChildHub;
use common::{Agent, TestResult, JSON};

const FLOOD: u64 = 500;

#[tokio::test]
async fn a_flood_of_refusals_is_summarised_and_counted_exactly() -> TestResult {
    common::install_crypto_provider();
    let agent = Agent::new("store-042")?;
    let hub = ChildHub::start(&agent.config_table(""), None)?;
    let client = reqwest::Client::new();
    let body = agent.heartbeat(1, 0).to_body()?;
    for _ in 0..FLOOD {
        // Not signed: 401 unsigned, each one.
        let answer = client
            .post(format!("{}/v1/heartbeats", hub.base()))
            .header("Content-Type", JSON)
            .body(body.clone())
            .send()
            .await?;
        assert_eq!(answer.status(), 401);
    }
    let metrics = client
        .get(format!("{}/metrics", hub.base()))
        .bearer_auth(common::READ_TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(&format!(
            "outpost_hub_heartbeats_rejected_total{{reason=\"unsigned\"}} {FLOOD}\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "outpost_hub_requests_refused_total{{endpoint=\"heartbeats\",reason=\"unsigned\"}} {FLOOD}\n"
        )),
        "{metrics}"
    );

    let (log, clean) = hub.terminate()?;
    assert!(clean, "{log}");
    let refusal_lines = log.lines().filter(|l| l.contains("refused")).count();
    // The flood usually fits in one 10 s window (one full line, one summary); it may straddle two.
    assert!(
        refusal_lines <= 4,
        "{refusal_lines} lines about refusals:\n{log}"
    );
    let full = log.matches("refused: 401 unsigned").count() as u64;
    let summarised: u64 = log
        .lines()
        .filter_map(|l| {
            let rest = l.split("refused ").nth(1)?;
            let (count, rest) = rest.split_once(' ')?;
            rest.starts_with("more requests as unsigned")
                .then(|| count.parse::<u64>().ok())?
        })
        .sum();
    assert!((1..=2).contains(&full), "{log}");
    assert_eq!(
        full + summarised,
        FLOOD,
        "every refusal is in the log, once:\n{log}"
    );
    assert!(log.contains(" from 127.0.0.1"), "{log}");
    Ok(())
}

#[tokio::test]
async fn what_a_client_sent_cannot_forge_a_log_line() -> TestResult {
    let hub = ChildHub::start("bootstrap_token_file = \"token\"\n", None)?;
    // serde quotes an unknown field's name in its error, which the refusal's message carries.
    let forged = "2026-12-05T22:00:00.000000Z  INFO outpost_hub: agent enrolled agent=mallory";
    let body = serde_json::json!({
        "agent_id": "a",
        "public_key": "k",
        "token": "t",
        format!("x\r\n{forged}\u{1b}[2J"): 1,
    });
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/enroll", hub.base()))
        .header("Content-Type", JSON)
        .body(serde_json::to_vec(&body)?)
        .send()
        .await?;
    assert_eq!(answer.status(), 400);
    let (log, _) = hub.terminate()?;
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a forged line:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains("x\\r\\n2026-12-05T22:00:00.000000Z"), "{log}");
    Ok(())
}
