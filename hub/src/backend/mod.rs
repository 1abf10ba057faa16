//! Where the hub keeps what it knows: the [`FleetStore`] trait and its two implementations, the embedded
//! store of one hub process ([`embedded`], sled and the heartbeat log in `state_dir`, the default) and
//! PostgreSQL ([`postgres`], for several hub replicas on one database, issue 18).
//!
//! The contract every backend keeps, so handlers need not know which one they talk to:
//! - [`FleetStore::record`] returns only once the heartbeat is durable (embedded: a group fdatasync;
//!   PostgreSQL: the commit of a group transaction), so a hub acknowledges nothing it could lose;
//! - a heartbeat whose seq is not above the agent's last accepted one is refused, and an exact copy of an
//!   accepted one is reported as a duplicate, decided under the store's own lock or row lock, never in a
//!   replica's memory;
//! - an enrollment's token enrolls one agent, checked and written in one transaction;
//! - a backend that cannot be reached answers [`BackendError::Unavailable`], which the server turns into 503
//!   with `Retry-After`: agents keep the heartbeat in their outbox and send it again.
//!
//! Every method returns a boxed future so the trait can live behind `Arc<dyn FleetStore>`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use outpost_proto::wire::{Assignment, Heartbeat};

use crate::rollout::{Release, Rollout};
use crate::store::{
    AgentRecord, Enrolled, Enrollment, Forgotten, IssuedToken, Labels, Recorded, StoreError, Stored,
};

pub mod config;
pub mod embedded;
pub mod postgres;
pub mod transfer;

pub use config::{BackendKind, StoreConfig};

/// A store operation in flight.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Embedded(#[from] StoreError),
    /// The database cannot be reached or is restarting; retry later.
    #[error("the database is unavailable ({0}); the hub answers 503 until it is back")]
    Unavailable(String),
    #[error("the database refused a statement: {0}")]
    Database(String),
    #[error(
        "a record in the database is unreadable ({0}); was it written by an incompatible version?"
    )]
    Corrupt(String),
    #[error("the database schema is at version {found}, this hub needs {wanted}: run `outpost-hub migrate --config FILE` (or set `migrate = true` in [store])")]
    Schema { found: i32, wanted: i32 },
    #[error("the hub is shutting down; the agent will send the heartbeat again")]
    Stopped,
}

impl BackendError {
    /// Whether the failure passes by itself (the server answers 503 with `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_) | BackendError::Stopped)
    }
}

/// One kept heartbeat of a history page, not read yet (a page costs one heartbeat of memory at a time).
#[derive(Debug)]
pub enum KeptRef {
    Log(crate::store::Kept),
    Row { agent_id: String, seq: u64 },
}

impl KeptRef {
    pub fn seq(&self) -> u64 {
        match self {
            KeptRef::Log(kept) => kept.seq,
            KeptRef::Row { seq, .. } => *seq,
        }
    }
}

/// A page of an agent's kept heartbeats, oldest first.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<KeptRef>,
    /// The `before` of the next, older page; `None` on the last.
    pub next_before: Option<u64>,
}

/// The hub's store, whichever backend holds it.
pub trait FleetStore: Send + Sync + std::fmt::Debug {
    /// Records a verified heartbeat received at `received_ms` (keeping the agent's newest `keep`), and
    /// returns once the outcome is durable. `body` is the JSON as received.
    fn record(
        &self,
        heartbeat: Heartbeat,
        body: Bytes,
        received_ms: u64,
        keep: usize,
    ) -> StoreFuture<'_, Recorded>;

    /// The last accepted heartbeat of one agent.
    fn agent<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, Option<AgentRecord>>;

    /// Every agent's last accepted heartbeat.
    fn agents(&self) -> StoreFuture<'_, Vec<AgentRecord>>;

    /// Up to `limit` of the newest kept heartbeats with seq below `before`.
    fn history_page<'a>(
        &'a self,
        agent_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Page>;

    /// Reads one kept heartbeat of a page.
    fn read_kept(&self, kept: KeptRef) -> StoreFuture<'_, Stored>;

    /// Records an enrollment (one token, one agent), durable when it returns.
    fn enroll(&self, enrollment: Enrollment) -> StoreFuture<'_, Enrolled>;

    /// Every agent enrolled with a token.
    fn enrollments(&self) -> StoreFuture<'_, Vec<Enrollment>>;

    /// Removes everything recorded of one agent; used tokens stay used.
    fn forget<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, Forgotten>;

    /// The assignment set for one agent through the admin API, if any (static ones come from the config).
    fn assignment<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, Option<Assignment>>;

    /// The generation of every agent's stored assignment (for the fleet's "assigned" column).
    fn assignment_generations(&self) -> StoreFuture<'_, Vec<(String, u64)>>;

    /// Sets one agent's assignment; the store gives it a generation above both its previous one and
    /// `at_least` (the config's generation for the agent), so generations only grow. Returns the generation.
    fn set_assignment<'a>(
        &'a self,
        agent_id: &'a str,
        assignment: Assignment,
        at_least: u64,
    ) -> StoreFuture<'a, u64>;

    /// Every agent's labels (set through the admin API or by the token that enrolled it).
    fn labels(&self) -> StoreFuture<'_, Vec<(String, Labels)>>;

    /// Replaces one agent's labels; an empty set removes them.
    fn set_labels<'a>(&'a self, agent_id: &'a str, labels: Labels) -> StoreFuture<'a, ()>;

    /// Removes one agent's enrollment, so its key is refused; its records stay. Returns whether it was
    /// enrolled.
    fn revoke<'a>(&'a self, agent_id: &'a str) -> StoreFuture<'a, bool>;

    /// Records a bootstrap token made by `outpost-hub token create` (its hash, labels and expiry).
    fn add_issued_token(&self, token: IssuedToken) -> StoreFuture<'_, ()>;

    /// The issued token with this hash, if any.
    fn issued_token<'a>(&'a self, token_sha256: &'a str) -> StoreFuture<'a, Option<IssuedToken>>;

    /// The hashes of used bootstrap tokens, with the agent each enrolled (for export).
    fn used_tokens(&self) -> StoreFuture<'_, Vec<(String, String)>>;

    /// Marks a token hash used by `agent_id` (for import).
    fn add_used_token<'a>(
        &'a self,
        token_sha256: &'a str,
        agent_id: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// Every release (issue 19).
    fn releases(&self) -> StoreFuture<'_, Vec<Release>>;

    /// Writes or replaces a release, durable when it returns.
    fn put_release(&self, release: Release) -> StoreFuture<'_, ()>;

    /// Every rollout, finished ones too.
    fn rollouts(&self) -> StoreFuture<'_, Vec<Rollout>>;

    /// Stores a new rollout; false when its id is taken.
    fn create_rollout(&self, rollout: Rollout) -> StoreFuture<'_, bool>;

    /// Takes the rollout's lease for `owner` until `now_ms + ttl_ms` and returns the record, or `None` when
    /// another owner holds an unexpired lease (or there is no such rollout). Only the lease holder changes a
    /// rollout, so two hub replicas never step it at once.
    fn lease_rollout<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> StoreFuture<'a, Option<Rollout>>;

    /// Writes the rollout held under `owner`'s lease and gives the lease up; false (nothing written) when
    /// the lease was lost meanwhile.
    fn save_rollout<'a>(&'a self, rollout: Rollout, owner: &'a str) -> StoreFuture<'a, bool>;

    /// Writes everything buffered.
    fn flush(&self) -> StoreFuture<'_, ()>;

    /// Stops the background tasks (waiting until they are gone) and flushes; called at shutdown, after the
    /// last request. A restarted hub can open the same store as soon as this returns.
    fn close(&self) -> StoreFuture<'_, ()>;
}

/// Opens the backend `config.store` names. `serving` starts its background tasks (group commit, retention),
/// which a command-line tool does not need.
pub async fn open(
    config: &crate::config::Config,
    serving: bool,
) -> Result<std::sync::Arc<dyn FleetStore>, BackendError> {
    match &config.store.kind {
        BackendKind::Embedded => Ok(std::sync::Arc::new(
            embedded::Embedded::open(&config.state_dir, serving).await?,
        )),
        BackendKind::Postgres(settings) => Ok(std::sync::Arc::new(
            postgres::Postgres::open(settings, config.history, serving).await?,
        )),
    }
}
