//! The database schema, as numbered migrations applied in order and recorded in `outpost_schema`.
//!
//! A migration is never edited once released: a change is a new one at the end. Applying takes a
//! transaction-scoped advisory lock, so replicas started together with `migrate = true` apply each
//! migration once; a hub whose schema is older than [`LATEST`] refuses to start and says to migrate, and one
//! newer than it refuses too (a newer hub migrated the database).

use deadpool_postgres::GenericClient;

use super::classify;
use crate::backend::BackendError;

/// The advisory lock key migrations hold ("outpost" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x006f_7574_706f_7374;

/// The migrations, by version from 1.
const MIGRATIONS: &[&str] = &[
    // 1: everything the hub keeps. Bodies are the agents' JSON bytes as received; u64 values are stored in
    // bigint (seqs and times fit: an agent would need 292 million years at one heartbeat a second).
    "CREATE TABLE agents (
        agent_id text PRIMARY KEY,
        last_seq bigint NOT NULL,
        last_seen_ms bigint NOT NULL,
        accepted bigint NOT NULL,
        body bytea NOT NULL
    );
    CREATE TABLE heartbeats (
        agent_id text NOT NULL,
        seq bigint NOT NULL,
        received_ms bigint NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (agent_id, seq)
    );
    CREATE INDEX heartbeats_by_age ON heartbeats (received_ms);
    CREATE TABLE enrollments (
        agent_id text PRIMARY KEY,
        public_key text NOT NULL UNIQUE,
        enrolled_at_ms bigint NOT NULL,
        token_sha256 text NOT NULL
    );
    CREATE TABLE used_tokens (
        token_sha256 text PRIMARY KEY,
        agent_id text NOT NULL
    );
    CREATE TABLE assignments (
        agent_id text PRIMARY KEY,
        generation bigint NOT NULL CHECK (generation > 0),
        sources bytea NOT NULL
    );",
    // 2: the admin API (issue 18 items 3 and 6): agents' labels, and bootstrap tokens made by
    // `outpost-hub token create` (only their hash), with the labels they give and their expiry.
    "CREATE TABLE labels (
        agent_id text PRIMARY KEY,
        labels bytea NOT NULL
    );
    CREATE TABLE issued_tokens (
        token_sha256 text PRIMARY KEY,
        labels bytea NOT NULL,
        created_at_ms bigint NOT NULL,
        expires_at_ms bigint
    );",
    // 3: fleet rollouts (issue 19): releases, and each rollout's whole record (every site's state) as JSON
    // with the lease that lets one replica at a time step it.
    "CREATE TABLE releases (
        name text PRIMARY KEY,
        body bytea NOT NULL
    );
    CREATE TABLE rollouts (
        id text PRIMARY KEY,
        body bytea NOT NULL,
        lease_owner text,
        lease_until_ms bigint NOT NULL DEFAULT 0
    );",
];

/// The schema version this hub needs.
pub const LATEST: i32 = MIGRATIONS.len() as i32;

/// The schema version of the database (0 when it was never migrated).
pub async fn version(client: &impl GenericClient) -> Result<i32, BackendError> {
    let exists = client
        .query_one("SELECT to_regclass('outpost_schema') IS NOT NULL", &[])
        .await
        .map_err(classify)?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM outpost_schema", &[])
        .await
        .map_err(classify)?;
    Ok(row.get(0))
}

/// Applies every migration the database lacks; returns the versions applied.
pub async fn apply(client: &mut deadpool_postgres::Client) -> Result<Vec<i32>, BackendError> {
    let tx = client.transaction().await.map_err(classify)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(classify)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS outpost_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(classify)?;
    let found = version(&tx).await?;
    if found > LATEST {
        return Err(BackendError::Schema {
            found,
            wanted: LATEST,
        });
    }
    let mut applied = Vec::new();
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let number = index as i32 + 1;
        tx.batch_execute(sql).await.map_err(classify)?;
        tx.execute(
            "INSERT INTO outpost_schema (version) VALUES ($1)",
            &[&number],
        )
        .await
        .map_err(classify)?;
        applied.push(number);
    }
    tx.commit().await.map_err(classify)?;
    Ok(applied)
}
