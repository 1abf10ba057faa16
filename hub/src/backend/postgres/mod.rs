//! The PostgreSQL backend: every hub replica on one database, all active (issue 18).
//!
//! What keeps replicas consistent is the database, never a replica's memory:
//! - an agent's last seq lives in `agents.last_seq` and only grows: a heartbeat is stored by one upsert whose
//!   `WHERE last_seq < seq` is re-checked under the row lock, so of two replicas handed the same heartbeat at
//!   once, exactly one stores it ([`record`]);
//! - `heartbeats (agent_id, seq)` is a primary key: a seq is kept once;
//! - a bootstrap token enrolls one agent: `used_tokens.token_sha256` is a primary key, written in the same
//!   transaction as the enrollment;
//! - an assignment's generation is computed by the database from the stored one, so it only grows whichever
//!   replica sets it.
//!
//! Heartbeats are written in groups ([`record`]): one transaction per group, its statements pipelined on one
//! connection, and each heartbeat acknowledged only after that transaction commits. A database that cannot
//! be reached makes [`BackendError::Unavailable`] (503 to the agent, which keeps the heartbeat).

use bytes::Bytes;
use deadpool_postgres::Pool;
use outpost_proto::wire::{Assignment, Heartbeat, SourceSpec};
use tokio_postgres::error::SqlState;

use super::config::PostgresSettings;
use super::{BackendError, FleetStore, KeptRef, Page, StoreFuture};
use crate::store::{
    AgentRecord, Enrolled, Enrollment, Forgotten, IssuedToken, Labels, Recorded, Stored,
};

mod admin;
pub mod migrate;
mod pool;
mod record;
mod rollouts;
mod tls;

pub use pool::{connect, CONNECT_TIMEOUT, POOL_WAIT_TIMEOUT};

/// The open database.
#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
    recorder: record::Recorder,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Postgres {
    fn take_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        for task in self.take_tasks() {
            task.abort();
        }
    }
}

/// Whether a failure is the database's answer (a refused statement) or its absence (retry later).
pub(crate) fn classify(error: tokio_postgres::Error) -> BackendError {
    match error.as_db_error() {
        Some(db)
            if db.code() == &SqlState::ADMIN_SHUTDOWN
                || db.code() == &SqlState::CANNOT_CONNECT_NOW
                || db.code() == &SqlState::T_R_DEADLOCK_DETECTED
                || db.code() == &SqlState::T_R_SERIALIZATION_FAILURE
                || db.code() == &SqlState::TOO_MANY_CONNECTIONS =>
        {
            BackendError::Unavailable(db.message().to_owned())
        }
        Some(db) => BackendError::Database(format!("{} ({})", db.message(), db.code().code())),
        None => BackendError::Unavailable(error.to_string()),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> BackendError {
    match error {
        deadpool_postgres::PoolError::Backend(e) => classify(e),
        other => BackendError::Unavailable(other.to_string()),
    }
}

/// `u64` as PostgreSQL's `bigint`; values past `i64::MAX` never occur in practice and are clamped.
fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Postgres {
    /// Connects (a pool of `pool_size`), checks or applies the schema, and with `serving` starts the group
    /// commit's writers and the retention task.
    pub async fn open(
        settings: &PostgresSettings,
        history: usize,
        serving: bool,
    ) -> Result<Postgres, BackendError> {
        let pool = connect(settings)?;
        let mut client = pool.get().await.map_err(pool_error)?;
        let found = migrate::version(&client).await?;
        if found != migrate::LATEST {
            if settings.migrate && found < migrate::LATEST {
                let applied = migrate::apply(&mut client).await?;
                tracing::info!(?applied, "applied database migrations");
            } else {
                return Err(BackendError::Schema {
                    found,
                    wanted: migrate::LATEST,
                });
            }
        }
        drop(client);
        let (recorder, mut tasks) = record::Recorder::start(pool.clone(), serving);
        if serving {
            tasks.push(record::spawn_retention(
                pool.clone(),
                history,
                settings.max_age,
            ));
        }
        Ok(Postgres {
            pool,
            recorder,
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, BackendError> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// Applies the migrations the database lacks (`outpost-hub migrate`); returns the versions applied.
pub async fn migrate(settings: &PostgresSettings) -> Result<Vec<i32>, BackendError> {
    let pool = connect(settings)?;
    let mut client = pool.get().await.map_err(pool_error)?;
    migrate::apply(&mut client).await
}

fn agent_record(row: &tokio_postgres::Row) -> Result<AgentRecord, BackendError> {
    let agent_id: String = row.get(0);
    let body: Vec<u8> = row.get(4);
    let heartbeat = serde_json::from_slice(&body)
        .map_err(|e| BackendError::Corrupt(format!("agent {agent_id:?}'s last heartbeat: {e}")))?;
    Ok(AgentRecord {
        last_seq: from_db(row.get(1)),
        last_seen_ms: from_db(row.get(2)),
        accepted: from_db(row.get(3)),
        agent_id,
        heartbeat,
    })
}

const AGENT_COLUMNS: &str = "agent_id, last_seq, last_seen_ms, accepted, body";

impl FleetStore for Postgres {
    fn record(
        &self,
        heartbeat: Heartbeat,
        body: Bytes,
        received_ms: u64,
        _keep: usize,
    ) -> StoreFuture<'_, Recorded> {
        // `keep` is applied by the retention task, for every agent at once.
        Box::pin(self.recorder.record(heartbeat, body, received_ms))
    }

    fn agent<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, Option<AgentRecord>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = $1"),
                    &[&agent_id],
                )
                .await
                .map_err(classify)?;
            row.as_ref().map(agent_record).transpose()
        })
    }

    fn agents(&self) -> StoreFuture<'_, Vec<AgentRecord>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY agent_id"),
                    &[],
                )
                .await
                .map_err(classify)?;
            rows.iter().map(agent_record).collect()
        })
    }

    fn history_page<'a>(
        &'a self,
        agent_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let client = self.client().await?;
            let before = before.map_or(i64::MAX, to_db);
            let rows = client
                .query(
                    "SELECT seq FROM heartbeats WHERE agent_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                    &[&agent_id, &before, &to_db(limit as u64 + 1)],
                )
                .await
                .map_err(classify)?;
            let mut seqs: Vec<u64> = rows.iter().map(|r| from_db(r.get(0))).collect();
            let more = seqs.len() > limit;
            seqs.truncate(limit);
            let next_before = if more { seqs.last().copied() } else { None };
            seqs.reverse();
            Ok(Page {
                records: seqs
                    .into_iter()
                    .map(|seq| KeptRef::Row {
                        agent_id: agent_id.to_owned(),
                        seq,
                    })
                    .collect(),
                next_before,
            })
        })
    }

    fn read_kept(&self, kept: KeptRef) -> StoreFuture<'_, Stored> {
        Box::pin(async move {
            let KeptRef::Row { agent_id, seq } = kept else {
                return Err(BackendError::Database(
                    "a heartbeat log record was handed to the database".into(),
                ));
            };
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT received_ms, body FROM heartbeats WHERE agent_id = $1 AND seq = $2",
                    &[&agent_id, &to_db(seq)],
                )
                .await
                .map_err(classify)?
                .ok_or_else(|| {
                    BackendError::Unavailable(format!(
                        "heartbeat {seq} of agent {agent_id:?} was removed by retention while it was read"
                    ))
                })?;
            Ok(Stored {
                seq,
                received_ms: from_db(row.get(0)),
                accepted: 0,
                body: row.get(1),
            })
        })
    }

    fn enroll(&self, enrollment: Enrollment) -> StoreFuture<'_, Enrolled> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            let id = enrollment.agent_id.as_str();
            let claimed = tx
                .query_opt(
                    "INSERT INTO used_tokens (token_sha256, agent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
                    &[&enrollment.token_sha256, &id],
                )
                .await
                .map_err(classify)?;
            if claimed.is_none() {
                let by: String = tx
                    .query_one(
                        "SELECT agent_id FROM used_tokens WHERE token_sha256 = $1",
                        &[&enrollment.token_sha256],
                    )
                    .await
                    .map_err(classify)?
                    .get(0);
                let same = by == id
                    && tx
                        .query_opt(
                            "SELECT 1 FROM enrollments WHERE agent_id = $1 AND public_key = $2",
                            &[&id, &enrollment.public_key],
                        )
                        .await
                        .map_err(classify)?
                        .is_some();
                return Ok(if same {
                    Enrolled::Again
                } else {
                    Enrolled::TokenUsed { by }
                });
            }
            let inserted = tx
                .query_opt(
                    "INSERT INTO enrollments (agent_id, public_key, enrolled_at_ms, token_sha256) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
                    &[&id, &enrollment.public_key, &to_db(enrollment.enrolled_at_ms), &enrollment.token_sha256],
                )
                .await
                .map_err(classify)?;
            if inserted.is_none() {
                // Rolled back: the token stays unused.
                return Ok(Enrolled::IdTaken);
            }
            tx.commit().await.map_err(classify)?;
            Ok(Enrolled::Enrolled)
        })
    }

    fn enrollments(&self) -> StoreFuture<'_, Vec<Enrollment>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT agent_id, public_key, enrolled_at_ms, token_sha256 FROM enrollments ORDER BY agent_id",
                    &[],
                )
                .await
                .map_err(classify)?;
            Ok(rows
                .iter()
                .map(|row| Enrollment {
                    agent_id: row.get(0),
                    public_key: row.get(1),
                    enrolled_at_ms: from_db(row.get(2)),
                    token_sha256: row.get(3),
                })
                .collect())
        })
    }

    fn forget<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, Forgotten> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(classify)?;
            let heartbeat = tx
                .execute("DELETE FROM agents WHERE agent_id = $1", &[&agent_id])
                .await
                .map_err(classify)?;
            let history = tx
                .execute("DELETE FROM heartbeats WHERE agent_id = $1", &[&agent_id])
                .await
                .map_err(classify)?;
            let enrollment = tx
                .execute("DELETE FROM enrollments WHERE agent_id = $1", &[&agent_id])
                .await
                .map_err(classify)?;
            tx.execute("DELETE FROM labels WHERE agent_id = $1", &[&agent_id])
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            Ok(Forgotten {
                heartbeat: heartbeat > 0,
                history: usize::try_from(history).unwrap_or(usize::MAX),
                enrollment: enrollment > 0,
            })
        })
    }

    fn assignment<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, Option<Assignment>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT generation, sources FROM assignments WHERE agent_id = $1",
                    &[&agent_id],
                )
                .await
                .map_err(classify)?;
            row.map(|row| {
                let sources: Vec<u8> = row.get(1);
                let sources: Vec<SourceSpec> = serde_json::from_slice(&sources).map_err(|e| {
                    BackendError::Corrupt(format!("agent {agent_id:?}'s assignment: {e}"))
                })?;
                Ok(Assignment::new(from_db(row.get(0)), sources))
            })
            .transpose()
        })
    }

    fn set_assignment<'a>(
        &'a self,
        agent_id: &'a str,
        assignment: Assignment,
        at_least: u64,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let sources = serde_json::to_vec(&assignment.sources)
                .map_err(|e| BackendError::Corrupt(format!("cannot encode an assignment: {e}")))?;
            let client = self.client().await?;
            let row = client
                .query_one(
                    "INSERT INTO assignments (agent_id, generation, sources) VALUES ($1, GREATEST(1, $2::bigint), $3)
                     ON CONFLICT (agent_id) DO UPDATE
                       SET generation = GREATEST(assignments.generation + 1, $2::bigint), sources = EXCLUDED.sources
                     RETURNING generation",
                    &[&agent_id, &to_db(at_least), &sources],
                )
                .await
                .map_err(classify)?;
            Ok(from_db(row.get(0)))
        })
    }

    fn assignment_generations(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        Box::pin(admin::assignment_generations(&self.pool))
    }

    fn labels(&self) -> StoreFuture<'_, Vec<(String, Labels)>> {
        Box::pin(admin::labels(&self.pool))
    }

    fn set_labels<'a>(&'a self, agent_id: &'a str, labels: Labels) -> StoreFuture<'a, ()> {
        Box::pin(async move { admin::set_labels(&self.pool, agent_id, &labels).await })
    }

    fn revoke<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(admin::revoke(&self.pool, agent_id))
    }

    fn add_issued_token(&self, token: IssuedToken) -> StoreFuture<'_, ()> {
        Box::pin(async move { admin::add_issued_token(&self.pool, &token).await })
    }

    fn issued_token<'a>(&'a self, token_sha256: &'a str) -> StoreFuture<'a, Option<IssuedToken>> {
        Box::pin(admin::issued_token(&self.pool, token_sha256))
    }

    fn used_tokens(&self) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT token_sha256, agent_id FROM used_tokens ORDER BY token_sha256",
                    &[],
                )
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn add_used_token<'a>(
        &'a self,
        token_sha256: &'a str,
        agent_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO used_tokens (token_sha256, agent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&token_sha256, &agent_id],
                )
                .await
                .map_err(classify)?;
            Ok(())
        })
    }

    fn releases(&self) -> StoreFuture<'_, Vec<crate::rollout::Release>> {
        Box::pin(rollouts::releases(&self.pool))
    }

    fn put_release(&self, release: crate::rollout::Release) -> StoreFuture<'_, ()> {
        Box::pin(async move { rollouts::put_release(&self.pool, &release).await })
    }

    fn rollouts(&self) -> StoreFuture<'_, Vec<crate::rollout::Rollout>> {
        Box::pin(rollouts::rollouts(&self.pool))
    }

    fn create_rollout(&self, rollout: crate::rollout::Rollout) -> StoreFuture<'_, bool> {
        Box::pin(async move { rollouts::create_rollout(&self.pool, &rollout).await })
    }

    fn lease_rollout<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> StoreFuture<'a, Option<crate::rollout::Rollout>> {
        Box::pin(rollouts::lease_rollout(
            &self.pool, id, owner, now_ms, ttl_ms,
        ))
    }

    fn save_rollout<'a>(
        &'a self,
        rollout: crate::rollout::Rollout,
        owner: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move { rollouts::save_rollout(&self.pool, &rollout, owner).await })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        // Every acknowledged write was committed; nothing is buffered.
        Box::pin(async { Ok(()) })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            for task in self.take_tasks() {
                task.abort();
                let _ = task.await;
            }
            self.pool.close();
            Ok(())
        })
    }
}
