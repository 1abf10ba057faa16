//! The admin API's records in PostgreSQL: labels, issued bootstrap tokens, revoking an enrollment (schema
//! migration 2). Each is one statement, so any replica may run it.

use deadpool_postgres::Pool;

use super::{classify, from_db, pool_error, to_db};
use crate::backend::BackendError;
use crate::store::{IssuedToken, Labels};

fn encode(labels: &Labels) -> Result<Vec<u8>, BackendError> {
    serde_json::to_vec(labels)
        .map_err(|e| BackendError::Corrupt(format!("cannot encode labels: {e}")))
}

fn decode(what: &str, bytes: &[u8]) -> Result<Labels, BackendError> {
    serde_json::from_slice(bytes).map_err(|e| BackendError::Corrupt(format!("{what}: {e}")))
}

pub(super) async fn labels(pool: &Pool) -> Result<Vec<(String, Labels)>, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query("SELECT agent_id, labels FROM labels ORDER BY agent_id", &[])
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| {
            let id: String = row.get(0);
            let labels = decode(&format!("labels of agent {id:?}"), row.get(1))?;
            Ok((id, labels))
        })
        .collect()
}

pub(super) async fn set_labels(
    pool: &Pool,
    agent_id: &str,
    labels: &Labels,
) -> Result<(), BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    if labels.is_empty() {
        client
            .execute("DELETE FROM labels WHERE agent_id = $1", &[&agent_id])
            .await
            .map_err(classify)?;
    } else {
        client
            .execute(
                "INSERT INTO labels (agent_id, labels) VALUES ($1, $2)
                 ON CONFLICT (agent_id) DO UPDATE SET labels = EXCLUDED.labels",
                &[&agent_id, &encode(labels)?],
            )
            .await
            .map_err(classify)?;
    }
    Ok(())
}

pub(super) async fn assignment_generations(
    pool: &Pool,
) -> Result<Vec<(String, u64)>, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query("SELECT agent_id, generation FROM assignments", &[])
        .await
        .map_err(classify)?;
    Ok(rows.iter().map(|r| (r.get(0), from_db(r.get(1)))).collect())
}

pub(super) async fn revoke(pool: &Pool, agent_id: &str) -> Result<bool, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let removed = client
        .execute("DELETE FROM enrollments WHERE agent_id = $1", &[&agent_id])
        .await
        .map_err(classify)?;
    Ok(removed > 0)
}

pub(super) async fn add_issued_token(pool: &Pool, token: &IssuedToken) -> Result<(), BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    client
        .execute(
            "INSERT INTO issued_tokens (token_sha256, labels, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (token_sha256) DO NOTHING",
            &[
                &token.token_sha256,
                &encode(&token.labels)?,
                &to_db(token.created_at_ms),
                &token.expires_at_ms.map(to_db),
            ],
        )
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn issued_tokens(pool: &Pool) -> Result<Vec<IssuedToken>, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query(
            "SELECT token_sha256, labels, created_at_ms, expires_at_ms FROM issued_tokens ORDER BY token_sha256",
            &[],
        )
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| {
            Ok(IssuedToken {
                token_sha256: row.get(0),
                labels: decode("an issued token's labels", row.get(1))?,
                created_at_ms: from_db(row.get(2)),
                expires_at_ms: row.get::<_, Option<i64>>(3).map(from_db),
            })
        })
        .collect()
}

pub(super) async fn issued_token(
    pool: &Pool,
    token_sha256: &str,
) -> Result<Option<IssuedToken>, BackendError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_opt(
            "SELECT labels, created_at_ms, expires_at_ms FROM issued_tokens WHERE token_sha256 = $1",
            &[&token_sha256],
        )
        .await
        .map_err(classify)?;
    row.map(|row| {
        Ok(IssuedToken {
            token_sha256: token_sha256.to_owned(),
            labels: decode("an issued token's labels", row.get(0))?,
            created_at_ms: from_db(row.get(1)),
            expires_at_ms: row.get::<_, Option<i64>>(2).map(from_db),
        })
    })
    .transpose()
}
