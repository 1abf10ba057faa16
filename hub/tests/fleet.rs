//! Enrollment with a bootstrap token, the agents listing (online / offline), `status` from the running hub
//! and from the store, and all of it over HTTPS with a test CA.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Agent, TestError, TestHub, TestResult};
use outpost_hub::state::now_ms;
use outpost_hub::status;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "c0ffee17d4e9a8b3f2605c1e7a9d4b82";
/// A second token, written over the first.
const NEW_TOKEN: &str = "5e8a1f03b7c94d26e0f1a3b5c7d9e2f4";

fn write_token(dir: &Path, token: &str) -> Result<String, TestError> {
    let path = dir.join("bootstrap-token");
    std::fs::write(&path, format!("{token}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(format!("bootstrap_token_file = \"{}\"\n", path.display()))
}

fn enrollment(agent: &Agent, token: &str) -> Result<Vec<u8>, TestError> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "agent_id": agent.id,
        "public_key": agent.key.public_key().to_string(),
        "token": token,
    }))?)
}

#[tokio::test]
async fn a_bootstrap_token_enrolls_exactly_one_agent() -> TestResult {
    let dir = tempfile::tempdir()?;
    let token_line = write_token(dir.path(), TOKEN)?;
    let hub = TestHub::start_in(dir, &token_line, None).await?;
    let first = Agent::new("store-042")?;
    let second = Agent::new("store-043")?;

    // Not enrolled yet: heartbeats are refused.
    assert_eq!(hub.send(&first, &first.heartbeat(1, 0)).await?.status, 401);

    let wrong = hub
        .post(
            "/v1/enroll",
            enrollment(&first, "not-the-token-at-all")?,
            &[],
        )
        .await?;
    assert_eq!((wrong.status, wrong.reason()?.as_str()), (403, "bad_token"));

    let enrolled = hub
        .post("/v1/enroll", enrollment(&first, TOKEN)?, &[])
        .await?;
    assert_eq!(enrolled.status, 201, "{:?}", enrolled.json()?);
    let reply = enrolled.json()?;
    assert_eq!(reply["fingerprint"], first.key.public_key().fingerprint());
    assert_eq!(reply["hub_key"], hub.public_key()?.to_string());

    // The same agent retrying (its reply was lost) is answered again; another agent is refused.
    assert_eq!(
        hub.post("/v1/enroll", enrollment(&first, TOKEN)?, &[])
            .await?
            .status,
        200
    );
    let reused = hub
        .post("/v1/enroll", enrollment(&second, TOKEN)?, &[])
        .await?;
    assert_eq!(
        (reused.status, reused.reason()?.as_str()),
        (403, "token_used")
    );

    // Enrolled keys are used like configured ones, and survive a restart.
    assert_eq!(hub.send(&first, &first.heartbeat(1, 0)).await?.status, 200);
    assert_eq!(
        hub.send(&second, &second.heartbeat(1, 0)).await?.status,
        401
    );
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir, &token_line, None).await?;
    assert_eq!(hub.send(&first, &first.heartbeat(2, 0)).await?.status, 200);
    assert_eq!(hub.agent_view("store-042").await?["origin"], "enrolled");

    // A new token in the file works once more, but cannot take over an enrolled id.
    write_token(hub.dir.path(), NEW_TOKEN)?;
    let thief = Agent::new("store-042")?;
    let taken = hub
        .post("/v1/enroll", enrollment(&thief, NEW_TOKEN)?, &[])
        .await?;
    assert_eq!(
        (taken.status, taken.reason()?.as_str()),
        (409, "already_enrolled")
    );
    let ok = hub
        .post("/v1/enroll", enrollment(&second, NEW_TOKEN)?, &[])
        .await?;
    assert_eq!(ok.status, 201);
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_a_token_file_only_issued_tokens_enroll() -> TestResult {
    let hub = TestHub::start("").await?;
    let agent = Agent::new("store-042")?;
    let answer = hub
        .post("/v1/enroll", enrollment(&agent, TOKEN)?, &[])
        .await?;
    // Tokens issued through the admin API (`outpost-hub token create`) still enroll; this one was not.
    assert_eq!(
        (answer.status, answer.reason()?.as_str()),
        (403, "bad_token")
    );
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn agents_go_offline_after_three_missed_intervals() -> TestResult {
    let fast = Agent::new("fast")?;
    let slow = Agent::new("slow")?;
    let quiet = Agent::new("quiet")?;
    let config = format!(
        "{}{}{}",
        fast.config_table("heartbeat_interval = \"300ms\""),
        slow.config_table(""),
        quiet.config_table("")
    );
    let hub = TestHub::start(&config).await?;
    assert_eq!(hub.send(&fast, &fast.heartbeat(1, 0)).await?.status, 200);
    assert_eq!(hub.send(&slow, &slow.heartbeat(1, 0)).await?.status, 200);
    assert_eq!(hub.agent_view("fast").await?["status"], "online");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fast_view = hub.agent_view("fast").await?;
    assert_eq!(
        (fast_view["online"].as_bool(), fast_view["status"].as_str()),
        (Some(false), Some("offline"))
    );
    // Its last report is still there, as history rather than a current "Ready".
    assert_eq!(fast_view["sources"][0]["state"], "Ready");
    assert_eq!(hub.agent_view("slow").await?["status"], "online");
    assert_eq!(hub.agent_view("quiet").await?["status"], "never-seen");

    // `status` asks the running hub (the store is locked by it) ...
    let views = status::collect(&hub.config, now_ms(), Some(common::READ_TOKEN)).await?;
    let states: Vec<(&str, &str)> = views
        .iter()
        .map(|v| (v.agent_id.as_str(), v.status.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("fast", "offline"),
            ("quiet", "never-seen"),
            ("slow", "online")
        ]
    );

    // ... and reads the store when the hub is down, with the same answer.
    let config = hub.config.clone();
    let (_dir, _database) = hub.stop_keeping_store().await;
    let offline = status::collect(&config, now_ms(), None).await?;
    assert_eq!(offline.len(), 3);
    assert_eq!(offline[0].seq, Some(1));
    let table = status::render_table(&offline);
    assert!(
        table.contains("OFFLINE") && table.contains("(Ready)"),
        "{table}"
    );
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1 and hub.test signed by it, written as PEM files into `dir`.
fn test_ca(
    dir: &Path,
) -> Result<
    (
        std::path::PathBuf,
        std::path::PathBuf,
        Arc<rustls::ClientConfig>,
    ),
    TestError,
> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Outpost Hub Test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut leaf_params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "hub.test".to_owned(),
    ])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "outpost-hub test");
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

    let cert_file = dir.join("hub-cert.pem");
    let key_file = dir.join("hub-tls-key.pem");
    std::fs::write(&cert_file, format!("{}{}", leaf.pem(), ca.pem()))?;
    std::fs::write(&key_file, leaf_key.serialize_pem())?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok((cert_file, key_file, Arc::new(client)))
}

#[tokio::test]
async fn heartbeats_over_https_with_a_test_ca() -> TestResult {
    common::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let tls = test_ca(dir.path())?;
    let agent = Agent::new("store-042")?;
    let hub = TestHub::start_in(dir, &agent.config_table(""), Some(tls)).await?;
    assert!(hub.base.starts_with("https://"));

    let answer = hub.send(&agent, &agent.heartbeat(1, 0)).await?;
    assert_eq!(answer.status, 200);
    answer.verify(&hub)?;
    assert_eq!(hub.agent_view("store-042").await?["status"], "online");

    // Without `names`, the certificate's DNS names are the hub's too (with its port); others are refused.
    let port = hub
        .authority
        .rsplit_once(':')
        .map_or("", |(_, p)| p)
        .to_owned();
    for (seq, host, status) in [(2, "hub.test", 200), (3, "other.test", 401)] {
        let authority = format!("{host}:{port}");
        let body = agent.heartbeat(seq, 0).to_body()?;
        let mut headers = outpost_proto::signed::sign_request(
            "POST",
            &authority,
            "/v1/heartbeats",
            &body,
            common::JSON,
            &agent.key,
            common::now(),
        )?;
        headers.push(("Host", authority.clone()));
        let answer = hub.post("/v1/heartbeats", body, &headers).await?;
        assert_eq!(answer.status, status, "{authority}: {:?}", answer.json());
    }

    // `status` reaches the running hub over TLS, trusting exactly the configured certificate.
    let views = status::collect(&hub.config, now_ms(), Some(common::READ_TOKEN)).await?;
    assert_eq!(views.first().map(|v| v.status.as_str()), Some("online"));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut stream = tokio::net::TcpStream::connect(&hub.authority).await?;
    stream
        .write_all(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    assert!(
        !response.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    hub.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_plain_http_hub_refuses_to_start_off_loopback() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, "listen = \"0.0.0.0:0\"\n")?;
    let error = outpost_hub::config::Config::load(&path)
        .err()
        .ok_or("config accepted")?;
    let message = error.to_string();
    assert!(
        message.contains("listen") && message.contains("[tls]"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn the_hub_key_is_created_private_and_kept() -> TestResult {
    let hub = TestHub::start("").await?;
    let key_file = hub.dir.path().join("hub.key");
    let mode = std::fs::metadata(&key_file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let first = hub.public_key()?;
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir, "", None).await?;
    assert_eq!(hub.public_key()?, first);
    hub.stop().await;
    Ok(())
}
