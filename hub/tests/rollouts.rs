//! Rollouts in both stores (issue 19): a rollout's record survives a restart, and its lease lets one owner at a
//! time change it (on PostgreSQL across two replicas on one database); an expired lease can be taken over.

mod common;

use std::sync::Arc;

use common::postgres::PgCluster;
use common::{TestError, TestResult};
use outpost_hub::backend::FleetStore;
use outpost_hub::rollout::model::Phase;
use outpost_hub::rollout::plan::{plan, StartRequest};
use outpost_hub::rollout::Release;

const FROM: &str = "1111111111111111111111111111111111111111";
const TO: &str = "2222222222222222222222222222222222222222";

fn config(
    dir: &std::path::Path,
    store_table: &str,
) -> Result<outpost_hub::config::Config, TestError> {
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n{store_table}",
            dir.join("state").display()
        ),
    )?;
    Ok(outpost_hub::config::Config::load(&path)?)
}

fn release() -> Result<Release, TestError> {
    Ok(Release {
        name: "shop".into(),
        source: serde_json::from_value(serde_json::json!({
            "name": "shop", "url": "https://git.example.com/shop.git", "branch": "main", "target": "kubernetes"
        }))?,
        selector: Default::default(),
        commit: FROM.into(),
        updated_ms: 1,
    })
}

async fn leases_and_records(store_table: &str, two_replicas: bool) -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = config(dir.path(), store_table)?;
    let first: Arc<dyn FleetStore> = outpost_hub::backend::open(&config, false).await?;
    let second = if two_replicas {
        outpost_hub::backend::open(&config, false).await?
    } else {
        first.clone()
    };
    first.put_release(release()?).await?;
    assert_eq!(second.releases().await?, vec![release()?]);

    let sites = ["a", "b"]
        .iter()
        .map(|s| ((*s).to_owned(), Default::default()))
        .collect();
    let request = StartRequest {
        release: "shop".into(),
        to_commit: TO.into(),
        ..StartRequest::default()
    };
    let rollout = plan(&request, &release()?, &sites, 1000)?;
    let id = rollout.id.clone();
    assert!(first.create_rollout(rollout.clone()).await?);
    assert!(
        !second.create_rollout(rollout.clone()).await?,
        "an id is taken once"
    );

    // One owner at a time.
    let now = 10_000;
    let mut held = first
        .lease_rollout(&id, "one", now, 30_000)
        .await?
        .ok_or("no lease")?;
    assert!(second
        .lease_rollout(&id, "two", now + 1, 30_000)
        .await?
        .is_none());
    held.phase = Phase::Paused;
    assert!(
        !second.save_rollout(held.clone(), "two").await?,
        "no lease, no write"
    );
    assert!(first.save_rollout(held.clone(), "one").await?);
    // Saving gave the lease up: the other owner takes it and sees the change.
    let taken = second
        .lease_rollout(&id, "two", now + 2, 30_000)
        .await?
        .ok_or("no lease")?;
    assert_eq!(taken.phase, Phase::Paused);
    // "two" dies holding it; after it expires, "three" takes over.
    assert!(first
        .lease_rollout(&id, "three", now + 3, 30_000)
        .await?
        .is_none());
    assert!(first
        .lease_rollout(&id, "three", now + 40_000, 30_000)
        .await?
        .is_some());
    assert!(first
        .lease_rollout("no-such-rollout", "three", now, 30_000)
        .await?
        .is_none());

    // A restart: the record is as it was saved.
    first.close().await?;
    if two_replicas {
        second.close().await?;
    }
    drop((first, second));
    let reopened = outpost_hub::backend::open(&config, false).await?;
    let stored = reopened.rollouts().await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0], held);
    reopened.close().await?;
    Ok(())
}

#[tokio::test]
async fn rollouts_on_the_embedded_store() -> TestResult {
    leases_and_records("", false).await
}

#[tokio::test]
async fn rollouts_on_postgres_across_two_replicas() -> TestResult {
    let pg = PgCluster::start()?;
    leases_and_records(&pg.store_table(), true).await
}

/// An agent enrolled after `release set`, and one labelled into the selector later, get the release at the
/// driver's next tick: their next heartbeat's reply carries it pinned at the release's commit.
#[tokio::test]
async fn newcomers_to_a_release_get_it_without_a_new_release_set() -> TestResult {
    let first = common::Agent::new("shop-1")?;
    let hub = common::TestHub::start(&format!(
        "rollout_interval = \"100ms\"\n{}",
        first.config_table("")
    ))
    .await?;
    let release = serde_json::json!({
        "source": {"name": "shop", "url": "https://git.example.com/shop.git", "branch": "main", "target": "kubernetes"},
        "selector": {"app": "shop"},
        "commit": FROM,
    });
    let answer = hub
        .admin("PUT", "/v1/admin/releases/shop", Some(release))
        .await?;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    // Nobody is labelled yet: the release has no site.
    let shop = |reply: &serde_json::Value| {
        reply["assignment"]["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "shop").cloned())
    };
    let reply = hub.send(&first, &first.heartbeat(1, 0)).await?.json()?;
    assert_eq!(shop(&reply), None, "{reply}");

    // Labelled into the selector, then a newcomer enrolled with the label.
    let labelled = hub
        .admin(
            "PUT",
            "/v1/admin/agents/shop-1/labels",
            Some(serde_json::json!({"labels": {"app": "shop"}})),
        )
        .await?;
    assert!(labelled.status < 300, "{:?}", labelled.json());
    let second = common::Agent::new("shop-2")?;
    let enrolled = hub
        .admin(
            "POST",
            "/v1/admin/agents",
            Some(serde_json::json!({
                "agent_id": "shop-2",
                "public_key": second.key.public_key().to_string(),
                "labels": {"app": "shop"},
            })),
        )
        .await?;
    assert!(enrolled.status < 300, "{:?}", enrolled.json());

    for (agent, seq) in [(&first, 2), (&second, 1)] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let reply = hub.send(agent, &agent.heartbeat(seq, 0)).await?.json()?;
            if let Some(source) = shop(&reply) {
                assert_eq!(source["commit"], FROM, "{reply}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never got the release: {reply}",
                agent.id
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    hub.stop().await;
    Ok(())
}
