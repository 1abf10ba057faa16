//! The embedded backend: one hub process, its [`Store`] in `state_dir` (sled and the heartbeat log).
//!
//! Records are written inline (an append to the log's page cache, cheaper than a hand-off to another
//! thread), then wait for the group commit's fdatasync ([`GroupCommit`]); reads run on tokio's blocking pool
//! so a slow disk never stalls the connections being served.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use outpost_proto::wire::{Assignment, Heartbeat};

use super::{BackendError, FleetStore, KeptRef, Page, StoreFuture};
use crate::durable::GroupCommit;
use crate::rollout::{Release, Rollout};
use crate::store::{Enrollment, IssuedToken, Labels, Store};

/// The embedded store and its group commit.
#[derive(Debug)]
pub struct Embedded {
    store: Store,
    commits: Arc<GroupCommit>,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Rollout leases: one process holds the store, so they live in memory (rollout id -> owner, until).
    leases: std::sync::Mutex<std::collections::HashMap<String, (String, u64)>>,
}

impl Embedded {
    /// Opens the store in `state_dir`; with `serving`, starts the group commit's flusher.
    pub async fn open(state_dir: &Path, serving: bool) -> Result<Embedded, BackendError> {
        let dir = state_dir.to_owned();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| BackendError::Database(format!("opening the store failed: {e}")))??;
        let commits = Arc::new(GroupCommit::default());
        let flusher = serving.then(|| {
            let commits = commits.clone();
            let store = store.clone();
            tokio::spawn(async move { commits.run(store).await })
        });
        Ok(Embedded {
            store,
            commits,
            flusher: std::sync::Mutex::new(flusher),
            leases: std::sync::Mutex::default(),
        })
    }

    /// The store itself, for the command-line tools that edit it directly.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|e| BackendError::Database(format!("a store task failed: {e}")))?
            .map_err(BackendError::from)
    }
}

impl Embedded {
    fn take_flusher(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Embedded {
    fn release_lease(&self, id: &str, owner: &str) {
        let mut leases = self
            .leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if leases.get(id).is_some_and(|(holder, _)| holder == owner) {
            leases.remove(id);
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(flusher) = self.take_flusher() {
            flusher.abort();
        }
    }
}

impl FleetStore for Embedded {
    fn record(
        &self,
        heartbeat: Heartbeat,
        body: Bytes,
        received_ms: u64,
        keep: usize,
    ) -> StoreFuture<'_, crate::store::Recorded> {
        // Inline: see the module comment.
        let recorded = self
            .store
            .record_heartbeat(&heartbeat, &body, received_ms, keep);
        Box::pin(async move {
            let recorded = recorded?;
            // A duplicate is waited for too: its first copy may still be on its way to the disk.
            self.commits.wait().await.map_err(|e| match e {
                crate::durable::CommitError::Stopped => BackendError::Stopped,
                crate::durable::CommitError::Flush(why) => {
                    BackendError::Database(format!("flushing the heartbeat log failed: {why}"))
                }
            })?;
            Ok(recorded)
        })
    }

    fn agent<'a>(
        &'a self,
        agent_id: &'a str,
    ) -> StoreFuture<'a, Option<crate::store::AgentRecord>> {
        let id = agent_id.to_owned();
        Box::pin(self.blocking(move |store| store.agent(&id)))
    }

    fn agents(&self) -> StoreFuture<'_, Vec<crate::store::AgentRecord>> {
        Box::pin(self.blocking(|store| store.agents()))
    }

    fn history_page<'a>(
        &'a self,
        agent_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Page> {
        let id = agent_id.to_owned();
        Box::pin(async move {
            let page = self
                .blocking(move |store| store.history_page(&id, before, limit))
                .await?;
            Ok(Page {
                records: page.records.into_iter().map(KeptRef::Log).collect(),
                next_before: page.next_before,
            })
        })
    }

    fn read_kept(&self, kept: KeptRef) -> StoreFuture<'_, crate::store::Stored> {
        Box::pin(async move {
            match kept {
                KeptRef::Log(kept) => self.blocking(move |_| kept.read()).await,
                KeptRef::Row { .. } => Err(BackendError::Database(
                    "a database row was handed to the embedded store".into(),
                )),
            }
        })
    }

    fn enroll(&self, enrollment: Enrollment) -> StoreFuture<'_, crate::store::Enrolled> {
        // Flushed before the answer: an agent told it is enrolled must stay enrolled after a hub crash.
        Box::pin(self.blocking(move |store| {
            let outcome = store.enroll(&enrollment)?;
            store.flush()?;
            Ok(outcome)
        }))
    }

    fn enrollments(&self) -> StoreFuture<'_, Vec<Enrollment>> {
        Box::pin(self.blocking(|store| store.enrollments()))
    }

    fn forget<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, crate::store::Forgotten> {
        let id = agent_id.to_owned();
        Box::pin(self.blocking(move |store| store.forget(&id)))
    }

    fn assignment<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, Option<Assignment>> {
        // Inline: every heartbeat's reply asks, and a small sled tree answers from its cache.
        Box::pin(async move { Ok(self.store.assignment(agent_id)?) })
    }

    fn set_assignment<'a>(
        &'a self,
        agent_id: &'a str,
        assignment: Assignment,
        at_least: u64,
    ) -> StoreFuture<'a, u64> {
        let id = agent_id.to_owned();
        Box::pin(self.blocking(move |store| store.set_assignment(&id, assignment, at_least)))
    }

    fn assignment_generations(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        Box::pin(self.blocking(|store| store.assignment_generations()))
    }

    fn labels(&self) -> StoreFuture<'_, Vec<(String, Labels)>> {
        Box::pin(self.blocking(|store| store.labels()))
    }

    fn set_labels<'a>(&'a self, agent_id: &'a str, labels: Labels) -> StoreFuture<'a, ()> {
        let id = agent_id.to_owned();
        Box::pin(self.blocking(move |store| store.set_labels(&id, &labels)))
    }

    fn revoke<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, bool> {
        let id = agent_id.to_owned();
        Box::pin(self.blocking(move |store| store.revoke(&id)))
    }

    fn add_issued_token(&self, token: IssuedToken) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |store| store.add_issued_token(&token)))
    }

    fn issued_token<'a>(&'a self, token_sha256: &'a str) -> StoreFuture<'a, Option<IssuedToken>> {
        let hash = token_sha256.to_owned();
        Box::pin(self.blocking(move |store| store.issued_token(&hash)))
    }

    fn used_tokens(&self) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(self.blocking(|store| store.used_tokens()))
    }

    fn add_used_token<'a>(
        &'a self,
        token_sha256: &'a str,
        agent_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        let (token, id) = (token_sha256.to_owned(), agent_id.to_owned());
        Box::pin(self.blocking(move |store| store.add_used_token(&token, &id)))
    }

    fn releases(&self) -> StoreFuture<'_, Vec<Release>> {
        Box::pin(self.blocking(|store| store.releases()))
    }

    fn put_release(&self, release: Release) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |store| store.put_release(&release)))
    }

    fn rollouts(&self) -> StoreFuture<'_, Vec<Rollout>> {
        Box::pin(self.blocking(|store| store.rollouts()))
    }

    fn create_rollout(&self, rollout: Rollout) -> StoreFuture<'_, bool> {
        Box::pin(self.blocking(move |store| store.create_rollout(&rollout)))
    }

    fn lease_rollout<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> StoreFuture<'a, Option<Rollout>> {
        Box::pin(async move {
            {
                let mut leases = self
                    .leases
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((holder, until)) = leases.get(id) {
                    if holder != owner && *until > now_ms {
                        return Ok(None);
                    }
                }
                leases.insert(
                    id.to_owned(),
                    (owner.to_owned(), now_ms.saturating_add(ttl_ms)),
                );
            }
            let key = id.to_owned();
            let found = self.blocking(move |store| store.rollout(&key)).await;
            if !matches!(found, Ok(Some(_))) {
                self.release_lease(id, owner);
            }
            found
        })
    }

    fn save_rollout<'a>(&'a self, rollout: Rollout, owner: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let held = self
                .leases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&rollout.id)
                .is_some_and(|(holder, _)| holder == owner);
            if !held {
                return Ok(false);
            }
            let id = rollout.id.clone();
            self.blocking(move |store| store.save_rollout(&rollout))
                .await?;
            self.release_lease(&id, owner);
            Ok(true)
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(|store| store.flush()))
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // No request is left to wait for a group flush; the final flush covers what is still buffered.
            if let Some(flusher) = self.take_flusher() {
                flusher.abort();
                let _ = flusher.await;
            }
            self.blocking(|store| store.flush()).await
        })
    }
}
