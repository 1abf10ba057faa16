//! No unauthenticated fleet data (issue 18, item 4): the fleet page, `/v1/agents`, an agent's history and
//! `/metrics` need a read credential unless `public_read = true`; a browser gets a Basic login prompt and
//! may use the token as its password; heartbeats stay signed-only; `outpost-hub credential create` makes a
//! token that works and is never printed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Agent, TestError, TestHub, TestResult, READ_TOKEN};

const FLEET_READS: [&str; 5] = [
    "/",
    "/agents/store-042",
    "/metrics",
    "/v1/agents",
    "/v1/agents/store-042",
];

async fn anonymous(
    hub: &TestHub,
    path: &str,
    auth: Option<&str>,
) -> Result<(u16, Option<String>, String), TestError> {
    let mut request = reqwest::Client::new().get(format!("{}{path}", hub.base));
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((status, challenge, answer.text().await?))
}

#[tokio::test]
async fn fleet_data_needs_a_read_credential() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&agent.config_table("")).await?;
    // Heartbeats need no credential: their signature is theirs.
    assert_eq!(hub.send(&agent, &agent.heartbeat(1, 0)).await?.status, 200);

    for path in FLEET_READS {
        let (status, challenge, body) = anonymous(&hub, path, None).await?;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(
            challenge.as_deref(),
            Some("Basic realm=\"outpost-hub\", charset=\"UTF-8\""),
            "{path}"
        );
        assert!(!body.contains("store-042"), "{path} leaked: {body}");
        let (status, _, body) = anonymous(&hub, path, Some("Bearer not-a-listed-token")).await?;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("unknown_credential"), "{body}");
        let (status, _, body) =
            anonymous(&hub, path, Some(&format!("Bearer {READ_TOKEN}"))).await?;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("store-042"), "{path}: {body}");
    }

    // What a browser sends after the login prompt: any user name, the token as password.
    use base64::Engine;
    let login = base64::engine::general_purpose::STANDARD.encode(format!("ops:{READ_TOKEN}"));
    let (status, _, page) = anonymous(&hub, "/", Some(&format!("Basic {login}"))).await?;
    assert_eq!(status, 200);
    assert!(
        page.contains("<h1>Outpost fleet</h1>") && page.contains("store-042"),
        "{page}"
    );

    // The refusals are counted like any other.
    let metrics = hub.get("/metrics").await?;
    let text = String::from_utf8(metrics.body)?;
    assert!(
        text.contains("endpoint=\"fleet\",reason=\"credential_required\"} 1\n"),
        "{text}"
    );
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn public_read_opens_reads_only() -> TestResult {
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start(&format!("public_read = true\n{}", agent.config_table(""))).await?;
    assert_eq!(hub.send(&agent, &agent.heartbeat(1, 0)).await?.status, 200);
    for path in FLEET_READS {
        let (status, _, body) = anonymous(&hub, path, None).await?;
        assert_eq!(status, 200, "{path}: {body}");
    }
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_created_credential_reads_and_is_never_printed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("ops.token");
    let made = Command::new(env!("CARGO_BIN_EXE_outpost-hub"))
        .args(["credential", "create", "--role", "read", "--name", "ops"])
        .arg("--token-file")
        .arg(&token_file)
        .output()?;
    assert!(made.status.success(), "{made:?}");
    let token = std::fs::read_to_string(&token_file)?.trim().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(
        std::fs::metadata(&token_file)?.permissions().mode() & 0o777,
        0o600
    );
    let table = String::from_utf8(made.stdout)?;
    let stderr = String::from_utf8(made.stderr)?;
    assert!(
        !table.contains(&token) && !stderr.contains(&token),
        "{table}{stderr}"
    );
    assert!(table.starts_with("[[reader]]\nname = \"ops\"\n"), "{table}");

    // A second run never overwrites the token.
    let again = Command::new(env!("CARGO_BIN_EXE_outpost-hub"))
        .args(["credential", "create", "--role", "admin", "--name", "x"])
        .arg("--token-file")
        .arg(&token_file)
        .output()?;
    assert!(!again.status.success());
    assert!(String::from_utf8(again.stderr)?.contains("never overwritten"));

    let hub = TestHub::start_in(dir, &table, None).await?;
    let (status, _, body) = anonymous(&hub, "/v1/agents", Some(&format!("Bearer {token}"))).await?;
    assert_eq!(status, 200, "{body}");
    hub.stop().await;
    Ok(())
}

#[test]
fn credentials_in_the_config_are_checked() {
    let bad = [
        (
            "[[reader]]\nname = \"ops\"\ntoken_sha256 = \"abc\"\n",
            "reader[0].token_sha256",
        ),
        (
            "[[admin]]\nname = \"\"\ntoken_sha256 = \"abc\"\n",
            "admin[0].name",
        ),
        ("[[reader]]\nname = \"ops\"\ntoken = \"x\"\n", "token"),
    ];
    for (text, key) in bad {
        let message =
            match outpost_hub::config::Config::parse(text, std::path::Path::new("/hub.toml")) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => e.to_string(),
            };
        assert!(message.contains(key), "{message}");
    }
}
