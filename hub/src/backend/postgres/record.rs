//! Group commit on PostgreSQL, and retention.
//!
//! Handlers hand their verified heartbeat to the [`Recorder`] and wait. A few writer tasks each take every
//! heartbeat waiting (up to [`MAX_GROUP`]), sort them by agent (so two transactions lock agents' rows in the
//! same order and cannot deadlock, whichever replica runs them), send one statement per heartbeat pipelined
//! in one transaction, and commit. Only after the commit is each handler told what became of its
//! heartbeat; a failed group answers every one of its handlers with the error (503), and their agents send
//! again. A heartbeat the database refused as not newer is looked at once more after the group's
//! statements, in a fresh snapshot, so a copy that another replica committed meanwhile is answered as a
//! duplicate rather than refused.
//!
//! Retention runs every [`RETENTION_EVERY`] on one replica at a time (a transaction-scoped advisory lock):
//! it keeps each agent's newest `history` heartbeats and, with `max_age`, deletes older ones. The agents'
//! last state is in its own table and is never removed by retention.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use futures_util::future::join_all;
use outpost_proto::wire::Heartbeat;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{classify, from_db, pool_error, to_db};
use crate::backend::BackendError;
use crate::store::Recorded;

/// Heartbeats in one transaction at most.
pub const MAX_GROUP: usize = 512;
/// Writer tasks, so a group can be written while the next one gathers.
pub const WRITERS: usize = 4;
/// How often retention runs.
pub const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// The advisory lock retention holds, so replicas take turns.
const RETENTION_LOCK: i64 = 0x006f_7574_7072_6574;

/// One heartbeat as stored: its upsert into `agents` succeeds only with a newer seq, and then the history
/// row is added. Returns the new accepted count (NULL when not newer) and the previous last seq.
const RECORD: &str = "WITH prev AS (
    SELECT last_seq FROM agents WHERE agent_id = $1
), up AS (
    INSERT INTO agents AS a (agent_id, last_seq, last_seen_ms, accepted, body)
    VALUES ($1, $2, $3, 1, $4)
    ON CONFLICT (agent_id) DO UPDATE
        SET last_seq = EXCLUDED.last_seq, last_seen_ms = EXCLUDED.last_seen_ms,
            accepted = a.accepted + 1, body = EXCLUDED.body
        WHERE a.last_seq < EXCLUDED.last_seq
    RETURNING a.accepted
), kept AS (
    INSERT INTO heartbeats (agent_id, seq, received_ms, body)
    SELECT $1, $2, $3, $4 FROM up
    ON CONFLICT (agent_id, seq) DO NOTHING
)
SELECT (SELECT accepted FROM up), (SELECT last_seq FROM prev)";

/// What a refused heartbeat was, read in a fresh snapshot.
const SAME_SEQ: &str = "SELECT body FROM heartbeats WHERE agent_id = $1 AND seq = $2";
const LAST_SEQ: &str = "SELECT last_seq FROM agents WHERE agent_id = $1";

struct Item {
    heartbeat: Heartbeat,
    body: Bytes,
    received_ms: u64,
    done: oneshot::Sender<Result<Recorded, BackendError>>,
}

/// The handlers' side of the writers.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::UnboundedSender<Item>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("agent", &self.heartbeat.agent_id)
            .field("seq", &self.heartbeat.seq)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the writers (only with `serving`: a command-line tool records nothing).
    pub fn start(pool: Pool, serving: bool) -> (Recorder, Vec<tokio::task::JoinHandle<()>>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let writers = if serving { WRITERS } else { 0 };
        let tasks = (0..writers)
            .map(|_| {
                let pool = pool.clone();
                let receiver = receiver.clone();
                tokio::spawn(async move { write_groups(pool, receiver).await })
            })
            .collect();
        (Recorder { queue }, tasks)
    }

    /// Records one heartbeat; returns after the transaction holding it committed.
    pub async fn record(
        &self,
        heartbeat: Heartbeat,
        body: Bytes,
        received_ms: u64,
    ) -> Result<Recorded, BackendError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Item {
                heartbeat,
                body,
                received_ms,
                done,
            })
            .map_err(|_| BackendError::Stopped)?;
        outcome.await.map_err(|_| BackendError::Stopped)?
    }
}

async fn write_groups(pool: Pool, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Item>>>) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(item) => group.push(item),
                    Err(_) => break,
                }
            }
            group
        };
        write_group(&pool, group).await;
    }
}

async fn write_group(pool: &Pool, mut group: Vec<Item>) {
    group.sort_by(|a, b| {
        (a.heartbeat.agent_id.as_str(), a.heartbeat.seq)
            .cmp(&(b.heartbeat.agent_id.as_str(), b.heartbeat.seq))
    });
    match commit_group(pool, &group).await {
        Ok(outcomes) => {
            for (item, outcome) in group.into_iter().zip(outcomes) {
                let _ = item.done.send(Ok(outcome));
            }
        }
        Err(e) => {
            tracing::warn!("a group of {} heartbeats was not stored: {e}", group.len());
            let message = e.to_string();
            for item in group {
                let _ = item
                    .done
                    .send(Err(BackendError::Unavailable(message.clone())));
            }
        }
    }
}

async fn commit_group(pool: &Pool, group: &[Item]) -> Result<Vec<Recorded>, BackendError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(classify)?;
    let statement = tx.prepare_cached(RECORD).await.map_err(classify)?;
    let params: Vec<(String, i64, i64, &[u8])> = group
        .iter()
        .map(|item| {
            (
                item.heartbeat.agent_id.clone(),
                to_db(item.heartbeat.seq),
                to_db(item.received_ms),
                &item.body[..],
            )
        })
        .collect();
    // Pipelined: every statement is sent before the first answer is awaited. Statements of one agent run in
    // the order sent, so a group may hold several heartbeats of one agent.
    let values: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 4]> = params
        .iter()
        .map(|(id, seq, at, body)| {
            [
                id as &(dyn tokio_postgres::types::ToSql + Sync),
                seq,
                at,
                body,
            ]
        })
        .collect();
    let rows = join_all(values.iter().map(|v| tx.query_one(&statement, v))).await;
    let mut outcomes = Vec::with_capacity(group.len());
    for (item, row) in group.iter().zip(rows) {
        let row = row.map_err(classify)?;
        let accepted: Option<i64> = row.get(0);
        let outcome = match accepted {
            Some(accepted) => Recorded::Accepted {
                accepted: from_db(accepted),
            },
            None => refused(&tx, item).await?,
        };
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(classify)?;
    Ok(outcomes)
}

/// Why a heartbeat was not stored: a copy of one kept (duplicate), one that reuses a kept seq with other
/// content (changed), or simply not newer.
async fn refused(
    tx: &deadpool_postgres::Transaction<'_>,
    item: &Item,
) -> Result<Recorded, BackendError> {
    let id = item.heartbeat.agent_id.as_str();
    let seq = to_db(item.heartbeat.seq);
    if let Some(row) = tx
        .query_opt(SAME_SEQ, &[&id, &seq])
        .await
        .map_err(classify)?
    {
        let stored: Vec<u8> = row.get(0);
        let same =
            serde_json::from_slice::<Heartbeat>(&stored).ok() == Some(item.heartbeat.clone());
        return Ok(if same {
            Recorded::Duplicate
        } else {
            Recorded::Changed
        });
    }
    let last_seq = tx
        .query_opt(LAST_SEQ, &[&id])
        .await
        .map_err(classify)?
        .map_or(0, |row| from_db(row.get(0)));
    Ok(Recorded::NotNewer { last_seq })
}

/// Starts the retention task.
pub fn spawn_retention(
    pool: Pool,
    history: usize,
    max_age: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RETENTION_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            match retain(&pool, history, max_age, crate::state::now_ms()).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "retention removed old heartbeats"),
                Err(e) => tracing::warn!("retention failed, trying again in a minute: {e}"),
            }
        }
    })
}

/// Keeps each agent's newest `history` heartbeats and none older than `max_age`; returns how many went.
pub async fn retain(
    pool: &Pool,
    history: usize,
    max_age: Option<Duration>,
    now_ms: u64,
) -> Result<u64, BackendError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(classify)?;
    let turn: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])
        .await
        .map_err(classify)?
        .get(0);
    if !turn {
        return Ok(0);
    }
    let mut removed = tx
        .execute(
            "DELETE FROM heartbeats h USING (
                SELECT agent_id, seq FROM (
                    SELECT agent_id, seq, row_number() OVER (PARTITION BY agent_id ORDER BY seq DESC) AS n
                    FROM heartbeats
                ) ranked WHERE n > $1
            ) old WHERE h.agent_id = old.agent_id AND h.seq = old.seq",
            &[&to_db(history as u64)],
        )
        .await
        .map_err(classify)?;
    if let Some(age) = max_age {
        let cutoff =
            to_db(now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
        removed += tx
            .execute("DELETE FROM heartbeats WHERE received_ms < $1", &[&cutoff])
            .await
            .map_err(classify)?;
    }
    tx.commit().await.map_err(classify)?;
    Ok(removed)
}
