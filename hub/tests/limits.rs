//! Limits a hostile client meets: enrollment tries rate limited per source address and in total, and the
//! real binary under a low open-files limit, flooded with idle connections, still doing its own file work.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use common::child::{exchange, write_private, ChildHub};
use common::{Agent, TestHub, TestResult, JSON};

const TOKEN: &str = "9b2e4f6a8c0d1e3f5a7b9c2d4e6f8a0b";

fn enrollment(agent: &Agent, token: &str) -> Result<Vec<u8>, common::TestError> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "agent_id": agent.id,
        "public_key": agent.key.public_key().to_string(),
        "token": token,
    }))?)
}

/// POSTs a wrong-token enrollment from `source`; returns the status and the Retry-After header.
async fn guess(
    base: &str,
    source: IpAddr,
    agent: &Agent,
) -> Result<(u16, Option<u64>), common::TestError> {
    let client = reqwest::Client::builder().local_address(source).build()?;
    let answer = client
        .post(format!("{base}/v1/enroll"))
        .header("Content-Type", JSON)
        .body(enrollment(agent, "0f1e2d3c4b5a69788796a5b4c3d2e1f0")?)
        .send()
        .await?;
    let retry = answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    Ok((answer.status().as_u16(), retry))
}

#[tokio::test]
async fn enrollment_is_rate_limited_per_source_and_in_total() -> TestResult {
    common::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let token = write_private(dir.path(), "token", &format!("{TOKEN}\n"))?;
    let hub = TestHub::start_in(
        dir,
        &format!("bootstrap_token_file = \"{}\"\n", token.display()),
        None,
    )
    .await?;
    let agent = Agent::new("store-042")?;
    let from = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let started = Instant::now();

    // One address: five wrong guesses are answered (403), the sixth is rate limited with Retry-After.
    for _ in 0..5 {
        assert_eq!(guess(&hub.base, from(1), &agent).await?, (403, None));
    }
    let limited = guess(&hub.base, from(1), &agent).await?;
    assert_eq!(limited.0, 429);
    assert!(
        limited.1.is_some_and(|s| (1..=10).contains(&s)),
        "{limited:?}"
    );

    // Other addresses still get through, until all together reach the hub-wide budget of 20.
    let mut passed = 0u64;
    let mut limited_total = 0u64;
    for last in 2..=9 {
        for _ in 0..5 {
            match guess(&hub.base, from(last), &agent).await? {
                (403, None) => passed += 1,
                (429, Some(_)) => limited_total += 1,
                other => return Err(format!("unexpected answer {other:?}").into()),
            }
        }
    }
    // The budget refills by one a second while this runs.
    let refilled = started.elapsed().as_secs() + 1;
    assert!(passed >= 15, "{passed} passed");
    assert!(
        passed <= 15 + refilled,
        "{passed} passed in {:?}",
        started.elapsed()
    );
    assert!(
        limited_total >= 40 - 15 - refilled,
        "{limited_total} limited"
    );

    // The right token from a fresh address is limited by the total as well, then passes once it refills.
    let fresh = Agent::new("store-043")?;
    let client = reqwest::Client::builder().local_address(from(20)).build()?;
    let mut status = 0;
    let mut waited = 0u64;
    for _ in 0..40 {
        let answer = client
            .post(format!("{}/v1/enroll", hub.base))
            .header("Content-Type", JSON)
            .body(enrollment(&fresh, TOKEN)?)
            .send()
            .await?;
        status = answer.status().as_u16();
        if status != 429 {
            break;
        }
        waited += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 201);

    // The log only samples refusals; the metrics count each one.
    let metrics = String::from_utf8(hub.get("/metrics").await?.body)?;
    let counted = |reason: &str| -> Option<u64> {
        let series = format!(
            "outpost_hub_requests_refused_total{{endpoint=\"enroll\",reason=\"{reason}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
    };
    assert_eq!(
        counted("rate_limited"),
        Some(1 + limited_total + waited),
        "{metrics}"
    );
    assert_eq!(counted("bad_token"), Some(5 + passed), "{metrics}");
    hub.stop().await;
    Ok(())
}

#[test]
fn a_low_open_files_limit_caps_connections_and_leaves_room_for_the_hubs_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let token = write_private(dir.path(), "token", &format!("{TOKEN}\n"))?;
    let hub = ChildHub::start(
        &format!("bootstrap_token_file = \"{}\"\n", token.display()),
        Some(256),
    )?;
    let log = hub.log();
    assert!(
        log.contains("serving at most 192 connections at once (open-files limit 256, 64 kept for the hub's files)"),
        "{log}"
    );

    // A client connected before the flood keeps its connection.
    let mut kept = TcpStream::connect(("127.0.0.1", hub.port))?;
    kept.set_read_timeout(Some(Duration::from_secs(20)))?;
    let get = format!(
        "GET /v1/agents HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        hub.authority(),
        common::READ_TOKEN
    );
    assert_eq!(exchange(&mut kept, get.as_bytes())?.0, 200);

    // More idle connections than the hub has descriptors.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", hub.port)))
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_secs(1));

    // Enrolling opens the token file: there must still be a descriptor for it.
    let agent = Agent::new("store-042")?;
    let body = enrollment(&agent, TOKEN)?;
    let mut request = format!(
        "POST /v1/enroll HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        hub.authority(),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (status, answer) = exchange(&mut kept, &request)?;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(exchange(&mut kept, get.as_bytes())?.0, 200);

    // Once the idle ones go, a new connection is served at once.
    drop(idle);
    let mut fresh = TcpStream::connect(("127.0.0.1", hub.port))?;
    fresh.set_read_timeout(Some(Duration::from_secs(10)))?;
    assert_eq!(exchange(&mut fresh, get.as_bytes())?.0, 200);

    let log = hub.log();
    assert!(!log.contains("Too many open files"), "{log}");
    Ok(())
}
