//! Group commit: a heartbeat is acknowledged only once what was recorded for it is on disk.
//!
//! The agent deletes a heartbeat from its outbox when the hub's signed reply arrives, so an acknowledgement
//! that preceded the write reaching the disk would let a hub crash lose heartbeats the agent no longer holds.
//! An fsync per heartbeat would hold one core to a few hundred a second, so writes are flushed in groups:
//! each handler records its heartbeat, then [`GroupCommit::wait`]s; one flusher task runs
//! `Store::sync_heartbeats` (an fdatasync) for everything written before it started and releases every waiter at once. Heartbeats that
//! arrive during a flush wait for the next one, which covers all of them.
//!
//! What a crash can lose: only heartbeats not yet acknowledged. Their agents still hold them and send them
//! again; a copy the hub did keep is re-acknowledged as a duplicate. A failed flush answers 500 for the
//! whole group, for the same retry.

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::store::Store;

type Waiter = oneshot::Sender<Result<(), String>>;

/// The handlers' side of the flusher.
#[derive(Debug)]
pub struct GroupCommit {
    waiters: mpsc::UnboundedSender<Waiter>,
    /// Taken once by [`GroupCommit::run`].
    queue: Mutex<Option<mpsc::UnboundedReceiver<Waiter>>>,
}

/// Why a recorded heartbeat could not be made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("flushing the hub's store to disk failed: {0}; check the disk under state_dir")]
    Flush(String),
    #[error("the hub is shutting down; the agent will send the heartbeat again")]
    Stopped,
}

impl Default for GroupCommit {
    fn default() -> Self {
        let (waiters, queue) = mpsc::unbounded_channel();
        GroupCommit {
            waiters,
            queue: Mutex::new(Some(queue)),
        }
    }
}

impl GroupCommit {
    /// Returns once everything written to the store before this call is on disk.
    pub async fn wait(&self) -> Result<(), CommitError> {
        let (done, flushed) = oneshot::channel();
        self.waiters.send(done).map_err(|_| CommitError::Stopped)?;
        flushed
            .await
            .map_err(|_| CommitError::Stopped)?
            .map_err(CommitError::Flush)
    }

    /// The flusher: runs until the server drops its state. Spawn it once.
    pub async fn run(&self, store: Store) {
        let Some(mut queue) = self.queue.lock().await.take() else {
            return;
        };
        while let Some(first) = queue.recv().await {
            let mut group = vec![first];
            while let Ok(more) = queue.try_recv() {
                group.push(more);
            }
            // One hand-off to the blocking pool per group: sync, answer the group from there, then compact
            // (heartbeats arriving meanwhile wait for the next sync). If the task dies, the dropped waiters
            // answer "shutting down" and their agents send again.
            let store = store.clone();
            let task = tokio::task::spawn_blocking(move || {
                let flushed = store.sync_heartbeats().map_err(|e| e.to_string());
                if let Err(e) = &flushed {
                    tracing::error!("{}", CommitError::Flush(e.clone()));
                }
                for waiter in group {
                    let _ = waiter.send(flushed.clone());
                }
                if let Err(e) = store.compact_heartbeats() {
                    tracing::error!("compacting the heartbeat log failed: {e}");
                }
            });
            if let Err(e) = task.await {
                tracing::error!("the flush task failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiters_are_released_by_a_flush() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let commit = Arc::new(GroupCommit::default());
        let flusher = {
            let commit = commit.clone();
            tokio::spawn(async move { commit.run(store).await })
        };
        let waits: Vec<_> = (0..20)
            .map(|_| {
                let commit = commit.clone();
                tokio::spawn(async move { commit.wait().await })
            })
            .collect();
        for wait in waits {
            assert_eq!(wait.await?, Ok(()));
        }
        // A second flusher finds the queue taken and returns at once instead of competing.
        commit.run(Store::open(tempfile::tempdir()?.path())?).await;
        flusher.abort();
        Ok(())
    }
}
