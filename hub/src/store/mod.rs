//! The hub's store: what each agent last reported and a bounded history, enrollments and used tokens.
//!
//! Heartbeats go to an append-only log ([`log`], files under `state_dir/heartbeats/`), everything else to
//! sled (`state_dir/hub.sled`), whose trees are small and change rarely:
//! - tree `enrolled`: `<agent id>` -> [`Enrollment`] (agents that enrolled with a bootstrap token);
//! - tree `tokens`:   `<sha-256 of a bootstrap token, hex>` -> `<agent id>` (each token enrolls one agent;
//!   only the hash is kept, so the store does not hold a usable secret);
//! - tree `assignments`: `<agent id>` -> `outpost.assignment/v1` JSON set through the admin API (its
//!   generation only grows: see [`Store::set_assignment`]);
//! - tree `labels`: `<agent id>` -> the agent's labels (JSON object), set through the admin API;
//! - tree `issued`: `<sha-256 of a token, hex>` -> [`IssuedToken`] (bootstrap tokens made with
//!   `outpost-hub token create`: their labels and expiry; see [`admin`]);
//! - trees `releases` and `rollouts`: fleet rollouts (issue 19), see [`rollouts`].
//!
//! Hubs before the log kept heartbeats in the sled trees `agents` and `history`; opening such a store moves
//! them into the log once ([`migrate`]).
//!
//! Invariants:
//! - an agent's last seq only grows: the check and the append happen under the log's lock;
//! - a refused heartbeat writes nothing;
//! - the server acknowledges a heartbeat only after a group sync that covers it ([`crate::durable`]), and
//!   enrollments and forgets are flushed before they answer;
//! - sled's page cache is bounded ([`CACHE_BYTES`]): its records are read rarely, so a large cache buys little.
//!
//! sled's lock on `hub.sled` is also what keeps a second process out of the heartbeat log.

use std::path::{Path, PathBuf};

use outpost_proto::wire::{Assignment, Heartbeat};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

mod admin;
pub mod log;
mod migrate;
mod rollouts;
mod segment;

pub use admin::{IssuedToken, Labels};
use log::HeartbeatLog;
pub use log::{HistoryPage, Kept, Stored};

/// sled's page cache, in bytes (see the module invariants).
pub const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create the state directory {path}: {source}; check state_dir and its permissions"
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the hub's store in {path} is locked by a running outpost-hub; stop it first (e.g. `systemctl stop outpost-hub`), then run this again")]
    Locked { path: PathBuf },
    #[error("cannot open the hub's store in {path}: {source}; if another outpost-hub uses this state_dir, stop it or give this one its own")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("the hub's store failed: {0}; check the disk under state_dir (space, permissions)")]
    Sled(#[from] sled::Error),
    #[error("record {key:?} in the hub's store is unreadable ({message}); the store is damaged or from an incompatible version")]
    Corrupt { key: String, message: String },
    #[error("cannot read or write the heartbeat log {path}: {source}; check the disk under state_dir (space, permissions)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the heartbeat log takes no more writes after a failure ({0}); fix the disk under state_dir, then restart outpost-hub (what was acknowledged before is kept)")]
    LogFailed(String),
}

/// The latest accepted heartbeat of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub last_seq: u64,
    /// The hub's clock when the last heartbeat was accepted, Unix milliseconds. The hub's clock, not the
    /// agent's `observed_at`, decides "online": an agent with a wrong clock must not look alive.
    pub last_seen_ms: u64,
    /// Heartbeats accepted from this agent in total.
    pub accepted: u64,
    pub heartbeat: Heartbeat,
}

/// One heartbeat kept in an agent's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub received_ms: u64,
    pub heartbeat: Heartbeat,
}

/// An agent that enrolled with a bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub agent_id: String,
    /// `ed25519:<base64>`.
    pub public_key: String,
    pub enrolled_at_ms: u64,
    /// The hex sha-256 of the token used, linking the enrollment to its entry in `tokens`.
    pub token_sha256: String,
}

/// What became of a heartbeat handed to [`Store::record_heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// New: stored as the agent's latest, the `accepted`-th from this agent.
    Accepted { accepted: u64 },
    /// Already stored with exactly this content (its acknowledgement was lost); nothing written.
    Duplicate,
    /// `seq` is not above the last accepted one and is not a heartbeat we hold: a replay or a reorder.
    NotNewer { last_seq: u64 },
    /// This `seq` was accepted before with different content: the agent reused a seq, or someone forged.
    Changed,
}

/// What [`Store::forget`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// The last accepted heartbeat.
    pub heartbeat: bool,
    /// History entries.
    pub history: usize,
    /// A bootstrap-token enrollment.
    pub enrollment: bool,
}

impl Forgotten {
    pub fn nothing(&self) -> bool {
        !self.heartbeat && self.history == 0 && !self.enrollment
    }
}

/// What became of an enrollment handed to [`Store::enroll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    Enrolled,
    /// The same agent, key and token again (its acknowledgement was lost); nothing written.
    Again,
    /// The token already enrolled `by`.
    TokenUsed {
        by: String,
    },
    /// An agent with this id is already enrolled (with another key or token).
    IdTaken,
}

/// The open store. Cloning shares it.
#[derive(Clone)]
pub struct Store {
    log: std::sync::Arc<HeartbeatLog>,
    enrolled: sled::Tree,
    tokens: sled::Tree,
    assignments: sled::Tree,
    labels: sled::Tree,
    issued: sled::Tree,
    releases: sled::Tree,
    rollouts: sled::Tree,
    db: sled::Db,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

impl Store {
    /// Opens (or creates) the store in `state_dir`, creating the folder private to the hub's user.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(state_dir)?;
        let path = state_dir.join("hub.sled");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| {
                // sled holds an exclusive file lock for as long as a process has the store open.
                if source.to_string().contains("could not acquire lock") {
                    StoreError::Locked { path: path.clone() }
                } else {
                    StoreError::Open { path, source }
                }
            })?;
        let store = Store {
            log: std::sync::Arc::new(HeartbeatLog::open(&state_dir.join("heartbeats"))?),
            enrolled: db.open_tree("enrolled")?,
            tokens: db.open_tree("tokens")?,
            assignments: db.open_tree("assignments")?,
            labels: db.open_tree("labels")?,
            issued: db.open_tree("issued")?,
            releases: db.open_tree("releases")?,
            rollouts: db.open_tree("rollouts")?,
            db,
        };
        migrate::heartbeats_from_sled(&store)?;
        Ok(store)
    }

    /// Records `heartbeat` as received at `received_ms` unless its seq is not newer, and keeps the agent's
    /// newest `keep`. `body` is the heartbeat's JSON as received and validated: it is stored as it came.
    pub fn record_heartbeat(
        &self,
        heartbeat: &Heartbeat,
        body: &[u8],
        received_ms: u64,
        keep: usize,
    ) -> Result<Recorded, StoreError> {
        let id = heartbeat.agent_id.as_str();
        self.log
            .record(id, heartbeat.seq, received_ms, body, keep, |stored| {
                Ok(decode::<Heartbeat>(id, stored)? == *heartbeat)
            })
    }

    /// The last accepted heartbeat of `agent_id`, if any.
    pub fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.log
            .latest(agent_id)?
            .map(|stored| agent_record(agent_id.to_owned(), stored))
            .transpose()
    }

    /// Every agent that ever sent an accepted heartbeat, by id.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.log
            .all_latest()?
            .into_iter()
            .map(|(id, stored)| agent_record(id, stored))
            .collect()
    }

    /// `agent_id`'s newest `keep` heartbeats, oldest first.
    pub fn history(&self, agent_id: &str, keep: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.log
            .history(agent_id, keep)?
            .into_iter()
            .map(|stored| {
                Ok(HistoryEntry {
                    received_ms: stored.received_ms,
                    heartbeat: decode(agent_id, &stored.body)?,
                })
            })
            .collect()
    }

    /// One page of `agent_id`'s kept heartbeats, not read yet: up to `limit` of the newest with seq below
    /// `before`, oldest first. A caller reads each [`Kept`] in turn, so a page costs one record of memory.
    pub fn history_page(
        &self,
        agent_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.log.page(agent_id, before, limit)
    }

    /// Records an enrollment, refusing a token that already enrolled an agent and an id already enrolled.
    /// The two checks and the two writes are one transaction, so a token cannot enroll two agents at once.
    pub fn enroll(&self, enrollment: &Enrollment) -> Result<Enrolled, StoreError> {
        let id = enrollment.agent_id.as_str();
        let token = enrollment.token_sha256.as_str();
        (&self.enrolled, &self.tokens)
            .transaction(|(enrolled, tokens)| -> TxResult<Enrolled> {
                let existing: Option<Enrollment> = match enrolled.get(id)? {
                    Some(bytes) => Some(decode(id, &bytes).map_err(abort)?),
                    None => None,
                };
                if let Some(by) = tokens.get(token)? {
                    let by = String::from_utf8_lossy(&by).into_owned();
                    let same = existing
                        .as_ref()
                        .is_some_and(|e| by == id && e.public_key == enrollment.public_key);
                    return Ok(if same {
                        Enrolled::Again
                    } else {
                        Enrolled::TokenUsed { by }
                    });
                }
                if existing.is_some() {
                    return Ok(Enrolled::IdTaken);
                }
                enrolled.insert(id.as_bytes(), encode(enrollment).map_err(abort)?)?;
                tokens.insert(token.as_bytes(), id.as_bytes())?;
                Ok(Enrolled::Enrolled)
            })
            .map_err(unwrap_tx)
    }

    /// Every agent enrolled with a token.
    pub fn enrollments(&self) -> Result<Vec<Enrollment>, StoreError> {
        self.enrolled
            .iter()
            .values()
            .map(|value| {
                let bytes = value?;
                decode("enrolled/*", &bytes)
            })
            .collect()
    }

    /// Removes everything recorded of `agent_id`: its last heartbeat, its history and its enrollment. The
    /// hashes of tokens it used stay, so a used bootstrap token cannot enroll anyone again. Flushed.
    pub fn forget(&self, agent_id: &str) -> Result<Forgotten, StoreError> {
        let history = self.log.forget(agent_id)?;
        let forgotten = Forgotten {
            heartbeat: history.is_some(),
            history: history.unwrap_or(0),
            enrollment: self.enrolled.remove(agent_id)?.is_some(),
        };
        self.labels.remove(agent_id)?;
        self.db.flush()?;
        Ok(forgotten)
    }

    /// The assignment set for `agent_id` through the admin API.
    pub fn assignment(&self, agent_id: &str) -> Result<Option<Assignment>, StoreError> {
        self.assignments
            .get(agent_id)?
            .map(|bytes| decode(agent_id, &bytes))
            .transpose()
    }

    /// Sets `agent_id`'s assignment with a generation above its previous one and at least `at_least`, in
    /// one transaction; returns that generation. Flushed.
    pub fn set_assignment(
        &self,
        agent_id: &str,
        assignment: Assignment,
        at_least: u64,
    ) -> Result<u64, StoreError> {
        let generation = self
            .assignments
            .transaction(|tree| -> TxResult<u64> {
                let previous = match tree.get(agent_id)? {
                    Some(bytes) => {
                        decode::<Assignment>(agent_id, &bytes)
                            .map_err(abort)?
                            .generation
                    }
                    None => 0,
                };
                let next =
                    Assignment::new((previous + 1).max(at_least), assignment.sources.clone());
                tree.insert(agent_id.as_bytes(), encode(&next).map_err(abort)?)?;
                Ok(next.generation)
            })
            .map_err(unwrap_tx)?;
        self.db.flush()?;
        Ok(generation)
    }

    /// Every used token's hash with the agent it enrolled.
    pub fn used_tokens(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.tokens
            .iter()
            .map(|entry| {
                let (token, agent) = entry?;
                Ok((
                    String::from_utf8_lossy(&token).into_owned(),
                    String::from_utf8_lossy(&agent).into_owned(),
                ))
            })
            .collect()
    }

    /// Marks a token hash used by `agent_id` (an import).
    pub fn add_used_token(&self, token_sha256: &str, agent_id: &str) -> Result<(), StoreError> {
        self.tokens
            .insert(token_sha256.as_bytes(), agent_id.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Makes every heartbeat recorded before this call durable; the group commit calls it.
    pub fn sync_heartbeats(&self) -> Result<(), StoreError> {
        self.log.sync()
    }

    /// Reclaims the heartbeat log's dead space when it is due; see [`HeartbeatLog::compact`].
    pub fn compact_heartbeats(&self) -> Result<bool, StoreError> {
        self.log.compact()
    }

    /// Writes everything buffered to disk; the server calls it on shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.log.sync()?;
        self.db.flush()?;
        Ok(())
    }
}

/// An [`AgentRecord`] from the log's newest heartbeat of an agent.
fn agent_record(agent_id: String, stored: Stored) -> Result<AgentRecord, StoreError> {
    let heartbeat = decode(&agent_id, &stored.body)?;
    Ok(AgentRecord {
        agent_id,
        last_seq: stored.seq,
        last_seen_ms: stored.received_ms,
        accepted: stored.accepted,
        heartbeat,
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        key: "(new record)".into(),
        message: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

fn abort(error: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(error)
}

fn unwrap_tx(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => StoreError::Sled(error),
    }
}

/// The store holds who may talk to the hub; keep other users out of it.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
