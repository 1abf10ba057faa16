//! `outpost-hub export` / `import` move everything a hub keeps: a populated embedded store is exported,
//! imported into PostgreSQL, and exported again; the two exports hold the same records.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use common::postgres::PgCluster;
use common::{Agent, TestError, TestResult};
use outpost_hub::backend::{transfer, FleetStore};
use outpost_hub::rollout::plan::{plan, StartRequest};
use outpost_hub::rollout::Release;
use outpost_hub::store::{Enrollment, IssuedToken};
use outpost_proto::wire::{Assignment, SourceSpec};

const FROM: &str = "1111111111111111111111111111111111111111";
const TO: &str = "2222222222222222222222222222222222222222";

async fn open(dir: &std::path::Path, store_table: &str) -> Result<Arc<dyn FleetStore>, TestError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n{store_table}",
            dir.join("state").display()
        ),
    )?;
    let config = outpost_hub::config::Config::load(&path)?;
    Ok(outpost_hub::backend::open(&config, true).await?)
}

async fn populate(store: &dyn FleetStore) -> TestResult {
    let mut source = SourceSpec::new("shop", "https://git.example.com/shop.git", "kubernetes");
    source.commit = Some(FROM.into());
    for (n, id) in ["shop-1", "shop-2"].iter().enumerate() {
        let agent = Agent::new(id)?;
        store
            .enroll(Enrollment {
                agent_id: (*id).into(),
                public_key: agent.key.public_key().to_string(),
                enrolled_at_ms: 1_000 + n as u64,
                token_sha256: format!("{:064x}", n + 1),
            })
            .await?;
        store.add_used_token(&format!("{:064x}", n + 1), id).await?;
        store
            .set_labels(id, BTreeMap::from([("app".into(), "shop".into())]))
            .await?;
        store
            .set_assignment(id, Assignment::new(1, vec![source.clone()]), 1)
            .await?;
        for seq in 1..=3 {
            let heartbeat = agent.heartbeat(seq, 1);
            let body = heartbeat.to_body()?;
            store
                .record(heartbeat, Bytes::from(body), 2_000 + seq, 10)
                .await?;
        }
    }
    store
        .add_issued_token(IssuedToken {
            token_sha256: format!("{:064x}", 99),
            labels: BTreeMap::from([("ring".into(), "canary".into())]),
            created_at_ms: 5,
            expires_at_ms: Some(9_000_000_000_000),
        })
        .await?;
    let release = Release {
        name: "shop".into(),
        source,
        selector: BTreeMap::from([("app".into(), "shop".into())]),
        commit: FROM.into(),
        updated_ms: 7,
    };
    store.put_release(release.clone()).await?;
    let sites = ["shop-1", "shop-2"]
        .iter()
        .map(|s| {
            (
                (*s).to_owned(),
                BTreeMap::from([("app".to_string(), "shop".to_string())]),
            )
        })
        .collect();
    let request = StartRequest {
        release: "shop".into(),
        to_commit: TO.into(),
        ..StartRequest::default()
    };
    assert!(
        store
            .create_rollout(plan(&request, &release, &sites, 8)?)
            .await?
    );
    Ok(())
}

fn lines(text: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(text)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn everything_the_hub_keeps_moves_from_the_embedded_store_to_postgres() -> TestResult {
    let dir = tempfile::tempdir()?;
    let embedded = open(&dir.path().join("a"), "").await?;
    populate(&*embedded).await?;
    let mut first = Vec::new();
    let counts = transfer::export(&*embedded, &mut first).await?;
    assert_eq!(
        (
            counts.enrollments,
            counts.issued_tokens,
            counts.used_tokens,
            counts.labels,
            counts.assignments,
            counts.releases,
            counts.rollouts,
            counts.heartbeats
        ),
        (2, 1, 2, 2, 2, 1, 1, 6),
        "{counts:?}"
    );

    let pg = PgCluster::start()?;
    let postgres = open(&dir.path().join("b"), &pg.store_table()).await?;
    let imported = transfer::import(&*postgres, first.as_slice(), 10).await?;
    assert_eq!(imported, counts);
    let mut second = Vec::new();
    transfer::export(&*postgres, &mut second).await?;
    assert_eq!(lines(&first), lines(&second));

    // Importing again adds nothing that counts twice: the same rollout is kept, not duplicated.
    let again = transfer::import(&*postgres, first.as_slice(), 10).await?;
    assert_eq!(
        (again.enrollments, again.rollouts, again.heartbeats),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(postgres.rollouts().await?.len(), 1);
    Ok(())
}
