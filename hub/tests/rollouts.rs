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
