//! Releases and rollouts in PostgreSQL (schema migration 3, issue 19). A rollout is one row holding the whole
//! record as JSON, plus a lease (`lease_owner`, `lease_until_ms`) taken by one conditional UPDATE, so of
//! several replicas exactly one steps a rollout at a time; a replica that dies holding it loses it when it
//! expires.

use deadpool_postgres::Pool;

use super::{classify, pool_error, to_db};
use crate::backend::BackendError;
use crate::rollout::{Release, Rollout};

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, BackendError> {
    serde_json::to_vec(value)
        .map_err(|e| BackendError::Corrupt(format!("cannot encode {what}: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, BackendError> {
    serde_json::from_slice(bytes).map_err(|e| BackendError::Corrupt(format!("{what}: {e}")))
}

pub(super) async fn releases(pool: &Pool) -> Result<Vec<Release>, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query("SELECT name, body FROM releases ORDER BY name", &[])
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| {
            decode(
                &format!("release {:?}", row.get::<_, String>(0)),
                row.get(1),
            )
        })
        .collect()
}

pub(super) async fn put_release(pool: &Pool, release: &Release) -> Result<(), BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    client
        .execute(
            "INSERT INTO releases (name, body) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body",
            &[&release.name, &encode("a release", release)?],
        )
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn rollouts(pool: &Pool) -> Result<Vec<Rollout>, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query("SELECT id, body FROM rollouts ORDER BY id", &[])
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| {
            decode(
                &format!("rollout {:?}", row.get::<_, String>(0)),
                row.get(1),
            )
        })
        .collect()
}

pub(super) async fn create_rollout(pool: &Pool, rollout: &Rollout) -> Result<bool, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let inserted = client
        .execute(
            "INSERT INTO rollouts (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&rollout.id, &encode("a rollout", rollout)?],
        )
        .await
        .map_err(classify)?;
    Ok(inserted == 1)
}

pub(super) async fn lease_rollout(
    pool: &Pool,
    id: &str,
    owner: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Option<Rollout>, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_opt(
            "UPDATE rollouts SET lease_owner = $2, lease_until_ms = $4
             WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until_ms < $3)
             RETURNING body",
            &[
                &id,
                &owner,
                &to_db(now_ms),
                &to_db(now_ms.saturating_add(ttl_ms)),
            ],
        )
        .await
        .map_err(classify)?;
    row.map(|row| decode(&format!("rollout {id:?}"), row.get(0)))
        .transpose()
}

pub(super) async fn save_rollout(
    pool: &Pool,
    rollout: &Rollout,
    owner: &str,
) -> Result<bool, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let written = client
        .execute(
            "UPDATE rollouts SET body = $3, lease_owner = NULL, lease_until_ms = 0
             WHERE id = $1 AND lease_owner = $2",
            &[&rollout.id, &owner, &encode("a rollout", rollout)?],
        )
        .await
        .map_err(classify)?;
    Ok(written == 1)
}
