//! The hub's sled store: what each agent last reported, a bounded history, enrollments and used tokens.
//!
//! Key layout (values are JSON, so an operator can inspect them with any sled tool):
//! - tree `agents`:   `<agent id>` -> [`AgentRecord`] (the last accepted heartbeat, its seq, when it came);
//! - tree `history`:  `<agent id> 0x00 <seq, u64 big-endian>` -> [`HistoryEntry`]; ids never hold 0x00, so
//!   one agent's prefix never matches another's, and big-endian seqs sort in order;
//! - tree `enrolled`: `<agent id>` -> [`Enrollment`] (agents that enrolled with a bootstrap token);
//! - tree `tokens`:   `<sha-256 of a bootstrap token, hex>` -> `<agent id>` (each token enrolls one agent;
//!   only the hash is kept, so the store does not hold a usable secret).
//!
//! Invariants:
//! - an agent's `last_seq` only grows: the check and the write happen in one sled transaction, so two
//!   heartbeats racing for the same agent cannot both pass;
//! - a refused heartbeat writes nothing;
//! - the history is trimmed every few heartbeats (see [`trim_interval`]); readers see the newest `keep`;
//! - nothing here flushes per write: the server acknowledges a heartbeat only after a group flush that covers
//!   it ([`crate::durable`]), and enrollments flush before they answer. sled's own background flush (every
//!   500 ms) only moves the rest (history trims) to disk sooner;
//! - sled's page cache is bounded ([`CACHE_BYTES`]): records are read rarely (a listing, a duplicate), so
//!   the cache buys little, and sled's 1 GiB default let the hub's RSS grow with the fleet's history.

use std::path::{Path, PathBuf};

use outpost_proto::wire::Heartbeat;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

/// sled's page cache, in bytes (see the module invariants).
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

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

/// The counters of an [`AgentRecord`], read without parsing its heartbeat.
#[derive(Debug, Deserialize)]
struct RecordHead {
    last_seq: u64,
    accepted: u64,
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
    agents: sled::Tree,
    history: sled::Tree,
    enrolled: sled::Tree,
    tokens: sled::Tree,
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
        Ok(Store {
            agents: db.open_tree("agents")?,
            history: db.open_tree("history")?,
            enrolled: db.open_tree("enrolled")?,
            tokens: db.open_tree("tokens")?,
            db,
        })
    }

    /// Records `heartbeat` as received at `received_ms` unless its seq is not newer, then trims the agent's
    /// history to its newest `keep` entries. `body` is the heartbeat's JSON as received and validated: it is
    /// stored as it came rather than serialised again, which was a large part of recording's cost.
    pub fn record_heartbeat(
        &self,
        heartbeat: &Heartbeat,
        body: &[u8],
        received_ms: u64,
        keep: usize,
    ) -> Result<Recorded, StoreError> {
        let id = heartbeat.agent_id.as_str();
        let seq = heartbeat.seq;
        let outcome = (&self.agents, &self.history)
            .transaction(|(agents, history)| -> TxResult<Recorded> {
                let previous = agents.get(id)?;
                // Only the counters are read on the common path; the stored heartbeat is skipped unparsed.
                let head: Option<RecordHead> = match &previous {
                    Some(bytes) => Some(decode(id, bytes).map_err(abort)?),
                    None => None,
                };
                if let (Some(head), Some(bytes)) = (&head, &previous) {
                    if seq == head.last_seq {
                        let stored: AgentRecord = decode(id, bytes).map_err(abort)?;
                        return Ok(same_or_changed(stored.heartbeat == *heartbeat));
                    }
                    if seq < head.last_seq {
                        let key = history_key(id, seq);
                        return Ok(match history.get(&key)? {
                            Some(bytes) => {
                                let entry: HistoryEntry = decode(id, &bytes).map_err(abort)?;
                                same_or_changed(entry.heartbeat == *heartbeat)
                            }
                            None => Recorded::NotNewer {
                                last_seq: head.last_seq,
                            },
                        });
                    }
                }
                let accepted = head.map_or(0, |h| h.accepted).saturating_add(1);
                let record = encode_record(id, seq, received_ms, accepted, body).map_err(abort)?;
                agents.insert(id.as_bytes(), record)?;
                history.insert(history_key(id, seq), encode_entry(received_ms, body))?;
                Ok(Recorded::Accepted { accepted })
            })
            .map_err(unwrap_tx)?;
        if let Recorded::Accepted { accepted } = outcome {
            if accepted % trim_interval(keep) == 0 {
                self.trim_history(id, keep)?;
            }
        }
        Ok(outcome)
    }

    /// Drops all but the newest `keep` history entries of one agent. Outside the transaction because sled
    /// transactions cannot scan; a crash in between leaves a few entries too many, which the next trim removes.
    fn trim_history(&self, id: &str, keep: usize) -> Result<(), StoreError> {
        let excess: Vec<sled::IVec> = self
            .history
            .scan_prefix(history_prefix(id))
            .keys()
            .rev()
            .skip(keep)
            .collect::<Result<_, _>>()?;
        for key in excess {
            self.history.remove(key)?;
        }
        Ok(())
    }

    /// The last accepted heartbeat of `agent_id`, if any.
    pub fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        match self.agents.get(agent_id)? {
            Some(bytes) => Ok(Some(decode(agent_id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every agent that ever sent an accepted heartbeat, by id.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.agents
            .iter()
            .values()
            .map(|value| {
                let bytes = value?;
                decode("agents/*", &bytes)
            })
            .collect()
    }

    /// `agent_id`'s newest `keep` heartbeats, oldest first.
    pub fn history(&self, agent_id: &str, keep: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut newest = self
            .history
            .scan_prefix(history_prefix(agent_id))
            .values()
            .rev()
            .take(keep)
            .map(|value| {
                let bytes = value?;
                decode(agent_id, &bytes)
            })
            .collect::<Result<Vec<HistoryEntry>, StoreError>>()?;
        newest.reverse();
        Ok(newest)
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
        let history: Vec<sled::IVec> = self
            .history
            .scan_prefix(history_prefix(agent_id))
            .keys()
            .collect::<Result<_, _>>()?;
        let forgotten = Forgotten {
            heartbeat: self.agents.remove(agent_id)?.is_some(),
            history: history.len(),
            enrollment: self.enrolled.remove(agent_id)?.is_some(),
        };
        for key in history {
            self.history.remove(key)?;
        }
        self.flush()?;
        Ok(forgotten)
    }

    /// Writes everything buffered to disk; the server calls it on shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Trimming scans the agent's whole history, so it runs every few heartbeats rather than at each one (it
/// was most of the cost of recording). In between, up to `trim_interval - 1` extra entries wait on disk;
/// [`Store::history`] never returns them.
fn trim_interval(keep: usize) -> u64 {
    u64::try_from(keep / 8).unwrap_or(64).clamp(1, 64)
}

fn same_or_changed(same: bool) -> Recorded {
    if same {
        Recorded::Duplicate
    } else {
        Recorded::Changed
    }
}

fn history_prefix(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + 1);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key
}

fn history_key(id: &str, seq: u64) -> Vec<u8> {
    let mut key = history_prefix(id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// An [`AgentRecord`] as JSON, around the heartbeat's body as received (see [`Store::record_heartbeat`]).
fn encode_record(
    id: &str,
    seq: u64,
    received_ms: u64,
    accepted: u64,
    body: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let id = serde_json::to_string(id).map_err(|e| StoreError::Corrupt {
        key: "(new record)".into(),
        message: e.to_string(),
    })?;
    let mut record = format!(
        "{{\"agent_id\":{id},\"last_seq\":{seq},\"last_seen_ms\":{received_ms},\"accepted\":{accepted},\"heartbeat\":"
    )
    .into_bytes();
    record.extend_from_slice(body);
    record.push(b'}');
    Ok(record)
}

/// A [`HistoryEntry`] as JSON, around the heartbeat's body as received.
fn encode_entry(received_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut entry = format!("{{\"received_ms\":{received_ms},\"heartbeat\":").into_bytes();
    entry.extend_from_slice(body);
    entry.push(b'}');
    entry
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
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
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
