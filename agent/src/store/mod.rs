//! The agent's memory across restarts: a sled database under `state_dir/store`.
//!
//! It holds, per source, the bundles of the last applied revisions, the last good pointer, the fetched revision and
//! a bounded status history, so a site that reboots with its uplink down re-applies its last good state at once.
//!
//! # Key layout (one tree, `outpost/v1`)
//! ```text
//! meta/schema                      -> u32 big-endian, the layout version (1)
//! src/<source>                     -> SourceRecord as JSON
//! bun/<source>\0<revision>         -> Bundle as JSON (the objects and their digest)
//! his/<source>\0<seq: u64 BE>      -> HistoryEntry as JSON; at most HISTORY_LEN per source
//! hb/seq                           -> u64 BE, the last heartbeat sequence number handed out
//! hb/dropped                       -> u64 BE, heartbeats dropped from the outbox and not yet reported
//! hb/dropped_total                 -> u64 BE, heartbeats removed from the outbox undelivered, ever
//! obx/<seq: u64 BE>                -> OutboxEntry as JSON, a heartbeat waiting to be sent (see outbox.rs)
//! inv/<source>                     -> the Kubernetes target's inventory of the source as JSON (target/kube)
//! asg/current                      -> the hub's last accepted assignment (outpost.assignment/v1) as JSON
//! asg/error                        -> the standing refusal of an assignment (wire AssignmentError) as JSON
//! ```
//! Source names cannot hold `\0` or `/`, so prefixes never collide.
//!
//! # Invariants
//! - Every change is one sled batch, which sled applies atomically, and is flushed before the call returns: a
//!   crash at any moment leaves the old state or the new one, never a mix.
//! - `last_good` always names a revision whose bundle is stored; retention never evicts it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::report::{SourceStatus, State};

pub use crate::report::now;

mod assignment;
mod outbox;
mod status;
pub use outbox::{OutboxEntry, OutboxLimits};

const TREE: &str = "outpost/v1";
const SCHEMA_KEY: &[u8] = b"meta/schema";
const SCHEMA: u32 = 1;
/// Status history entries kept per source; enough to see a flapping source, small enough for a tiny disk.
pub const HISTORY_LEN: u64 = 50;
/// sled's default page cache is 1 GiB; an edge box has a few hundred MiB in all.
const CACHE_BYTES: u64 = 1024 * 1024;

/// What failed underneath the store, kept as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// A write failed earlier in this process, so this one was not tried.
    #[error("an earlier write to the store failed, so this process writes no more to it")]
    FailedBefore,
}

/// How often, and how far apart, [`Store::open_exclusive`] tries a store that `outpost status` holds briefly.
const OPEN_ATTEMPTS: u32 = 20;
const OPEN_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create the state directory {dir}: {source}; create it or set [agent] state_dir"
    )]
    StateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the store {dir} is in use by another outpost process (is `outpost run` running? {holder}); `outpost status` works beside it, other commands need it stopped")]
    Locked { dir: PathBuf, holder: String },
    #[error("cannot open the store {dir}: {cause}; check that state_dir is writable and the disk is not full")]
    Open {
        dir: PathBuf,
        #[source]
        cause: Cause,
    },
    #[error("store {dir}: {cause}; check that the disk under state_dir has free space and is healthy (what was recorded before is kept)")]
    Io {
        dir: PathBuf,
        #[source]
        cause: Cause,
    },
    #[error("store {dir}: writing to disk did not finish within {limit:?}; the disk under state_dir is full or failing: free space there (a restarted agent resumes from its last good state)")]
    FlushStuck {
        dir: PathBuf,
        limit: std::time::Duration,
    },
    #[error("store {dir}: record {key} is unreadable ({cause}); move the state directory away to start afresh")]
    Corrupt {
        dir: PathBuf,
        key: String,
        #[source]
        cause: serde_json::Error,
    },
    #[error("the store {dir} was written by a newer outpost (layout {found}, this one reads {SCHEMA}); upgrade the agent")]
    NewerSchema { dir: PathBuf, found: u32 },
}

/// What the store knows about one source: its status (the one model, `report::SourceStatus`, stored flat so
/// records written before it existed read the same) and what only the store and reconcile use. Fields added
/// later default when an older record is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceRecord {
    #[serde(flatten)]
    pub status: SourceStatus,
    /// Applied revisions whose bundles are kept, newest first.
    pub revisions: Vec<String>,
    /// The target it was applied to and its prune setting, so a source removed from the config can be cleaned up.
    pub target: Option<String>,
    pub prune: bool,
    pub history_seq: u64,
    /// The settings the last good bundle was built with (the path and a digest of the substitution variables):
    /// when they change, the same commit must be built again.
    pub build_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub state: State,
    pub revision: Option<String>,
    pub message: Option<String>,
}

pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    dir: PathBuf,
    /// Set by the first I/O error or stuck flush. sled 0.34 does not recover from a failed write (measured with a
    /// full disk: every later flush blocks forever, and so does its flush on drop), so from then on this process
    /// must not touch the database again: see [`Store::failed`] and the `Drop` impl.
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Store {
    /// After a failed write, sled's own flush on drop would block forever; keeping one reference to its handles
    /// alive skips it. What was flushed before the failure is on disk, and sled's recovery at the next open
    /// reads past a torn tail, exactly as after a crash.
    fn drop(&mut self) {
        if self.failed() {
            std::mem::forget(self.db.clone());
            std::mem::forget(self.tree.clone());
        }
    }
}

/// The file, beside the store, that names the process holding it.
pub const PID_FILE: &str = "outpost.pid";

/// "pid N" of the process that holds the store, for error messages.
pub fn pid_holder(state_dir: &Path) -> String {
    match std::fs::read_to_string(state_dir.join(PID_FILE)) {
        Ok(pid) => format!("pid {}", pid.trim()),
        Err(_) => "pid unknown".into(),
    }
}

/// How long a flush may take before the store reports the disk as full or failing.
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Store {
    /// Opens (or creates) the store in `state_dir/store`. Only one process may hold it.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir = state_dir.join("store");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Open {
            dir: dir.clone(),
            cause: e.into(),
        })?;
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| {
                if e.to_string().contains("could not acquire lock") {
                    StoreError::Locked {
                        dir: dir.clone(),
                        holder: pid_holder(state_dir),
                    }
                } else {
                    StoreError::Open {
                        dir: dir.clone(),
                        cause: e.into(),
                    }
                }
            })?;
        let tree = db.open_tree(TREE).map_err(|e| StoreError::Open {
            dir: dir.clone(),
            cause: e.into(),
        })?;
        let store = Store {
            db,
            tree,
            dir,
            failed: Default::default(),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Opens the store for a command that changes things (`run`, `sync`), creating `state_dir` if needed, and
    /// records this process in [`PID_FILE`]. `outpost status` holds the store for a few milliseconds when no
    /// daemon runs; a command starting at that moment waits for it rather than failing.
    pub fn open_exclusive(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|e| StoreError::StateDir {
            dir: state_dir.to_path_buf(),
            source: e,
        })?;
        let mut attempts = 0;
        let store = loop {
            match Store::open(state_dir) {
                Err(StoreError::Locked { .. }) if attempts < OPEN_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(OPEN_RETRY);
                }
                other => break other?,
            }
        };
        // Written after the lock is ours, so the pid in it is always the holder's.
        let _ = std::fs::write(
            state_dir.join(PID_FILE),
            format!("{}\n", std::process::id()),
        );
        Ok(store)
    }

    /// Forgets the [`PID_FILE`] as the holder lets the store go.
    pub fn release_pid_file(&self) {
        if let Some(state_dir) = self.dir.parent() {
            let _ = std::fs::remove_file(state_dir.join(PID_FILE));
        }
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.tree.get(SCHEMA_KEY).map_err(|e| self.io(e))? {
            None => {
                self.tree
                    .insert(SCHEMA_KEY, &SCHEMA.to_be_bytes())
                    .map_err(|e| self.io(e))?;
                self.flush()
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found > SCHEMA {
                    return Err(StoreError::NewerSchema {
                        dir: self.dir.clone(),
                        found,
                    });
                }
                Ok(())
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every source the store has a record of, by name.
    pub fn sources(&self) -> Result<Vec<(String, SourceRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"src/") {
            let (k, v) = item.map_err(|e| self.io(e))?;
            let name = String::from_utf8_lossy(&k[4..]).to_string();
            out.push((name.clone(), self.decode(&format!("src/{name}"), &v)?));
        }
        Ok(out)
    }

    pub fn record(&self, source: &str) -> Result<SourceRecord, StoreError> {
        let key = source_key(source);
        match self.tree.get(&key).map_err(|e| self.io(e))? {
            Some(v) => self.decode(&format!("src/{source}"), &v),
            None => Ok(SourceRecord::default()),
        }
    }

    pub fn bundle(&self, source: &str, revision: &str) -> Result<Option<Bundle>, StoreError> {
        match self
            .tree
            .get(bundle_key(source, revision))
            .map_err(|e| self.io(e))?
        {
            Some(v) => Ok(Some(self.decode(&format!("bun/{source}/{revision}"), &v)?)),
            None => Ok(None),
        }
    }

    /// The last good revision and its bundle, if the source ever had one.
    pub fn last_good(&self, source: &str) -> Result<Option<(String, Bundle)>, StoreError> {
        let record = self.record(source)?;
        let Some(rev) = record.status.last_good else {
            return Ok(None);
        };
        Ok(self.bundle(source, &rev)?.map(|b| (rev, b)))
    }

    pub fn history(&self, source: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut prefix = b"his/".to_vec();
        prefix.extend_from_slice(source.as_bytes());
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (_, v) = item.map_err(|e| self.io(e))?;
            out.push(self.decode(&format!("his/{source}"), &v)?);
        }
        Ok(out)
    }

    /// Changes a source's record and appends a history entry, in one atomic batch. `bundle` is stored with it
    /// when given (an applied revision), and old bundles beyond `keep` are evicted in the same batch.
    pub fn update(
        &self,
        source: &str,
        entry: HistoryEntry,
        bundle: Option<(&str, &Bundle)>,
        keep: usize,
        change: impl FnOnce(&mut SourceRecord),
    ) -> Result<SourceRecord, StoreError> {
        let mut record = self.record(source)?;
        change(&mut record);
        let mut batch = sled::Batch::default();
        if let Some((rev, b)) = bundle {
            batch.insert(bundle_key(source, rev), encode(b));
            record.revisions.retain(|r| r != rev);
            record.revisions.insert(0, rev.to_string());
        }
        // Evict beyond `keep`, but never the last good one.
        let mut kept = Vec::new();
        for rev in std::mem::take(&mut record.revisions) {
            if kept.len() < keep || Some(&rev) == record.status.last_good.as_ref() {
                kept.push(rev);
            } else {
                batch.remove(bundle_key(source, &rev));
            }
        }
        record.revisions = kept;
        record.history_seq += 1;
        batch.insert(history_key(source, record.history_seq), encode(&entry));
        if record.history_seq > HISTORY_LEN {
            batch.remove(history_key(source, record.history_seq - HISTORY_LEN));
        }
        batch.insert(source_key(source), encode(&record));
        self.tree.apply_batch(batch).map_err(|e| self.io(e))?;
        self.flush()?;
        Ok(record)
    }

    /// The Kubernetes target's inventory of a source: what it applied and what the cluster answered.
    pub fn inventory<T: for<'de> Deserialize<'de>>(
        &self,
        source: &str,
    ) -> Result<Option<T>, StoreError> {
        match self
            .tree
            .get(inventory_key(source))
            .map_err(|e| self.io(e))?
        {
            Some(v) => Ok(Some(self.decode(&format!("inv/{source}"), &v)?)),
            None => Ok(None),
        }
    }

    /// Replaces a source's inventory; flushed before it returns, so a crash right after an apply still knows
    /// what to prune.
    pub fn set_inventory<T: Serialize>(
        &self,
        source: &str,
        inventory: &T,
    ) -> Result<(), StoreError> {
        self.tree
            .insert(inventory_key(source), encode(inventory))
            .map_err(|e| self.io(e))?;
        self.flush()
    }

    /// Forgets a source entirely (it was removed from the config).
    pub fn remove_source(&self, source: &str) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.remove(source_key(source));
        batch.remove(inventory_key(source));
        for prefix in ["bun/", "his/"] {
            let mut p = prefix.as_bytes().to_vec();
            p.extend_from_slice(source.as_bytes());
            p.push(0);
            for item in self.tree.scan_prefix(&p).keys() {
                batch.remove(item.map_err(|e| self.io(e))?);
            }
        }
        self.tree.apply_batch(batch).map_err(|e| self.io(e))?;
        self.flush()
    }

    /// Flushes to disk, bounded by [`FLUSH_LIMIT`]. sled can block in a flush forever after an I/O error (measured
    /// with a full disk under state_dir), which would hang a sync, a poll or a stop; instead the flush runs on a
    /// thread of its own and the caller gets a clear error when it does not return in time. Once the store has
    /// failed, later flushes fail at once rather than pile up stuck threads.
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.failed() {
            return Err(self.io(Cause::FailedBefore));
        }
        let (done, result) = std::sync::mpsc::channel();
        let db = self.db.clone();
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                let flushed = db.flush();
                // Released before the caller hears back, so a store dropped right after a flush really closes
                // (sled's file lock goes with the last handle; a reopen must not find it still held).
                drop(db);
                let _ = done.send(flushed);
            })
            .map_err(|e| self.io(e))?;
        match result.recv_timeout(FLUSH_LIMIT) {
            Ok(flushed) => flushed.map(|_| ()).map_err(|e| self.io(e)),
            Err(_) => Err(self.stuck()),
        }
    }

    /// True once a write or flush failed. The daemon then stops and exits with a failure, so that its supervisor
    /// (systemd's `Restart=always`, the pod's restart policy) starts it again with a fresh store once the disk has
    /// room: a failed sled never writes again in the same process.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn stuck(&self) -> StoreError {
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        StoreError::FlushStuck {
            dir: self.dir.clone(),
            limit: FLUSH_LIMIT,
        }
    }

    pub(super) fn io(&self, cause: impl Into<Cause>) -> StoreError {
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        StoreError::Io {
            dir: self.dir.clone(),
            cause: cause.into(),
        }
    }

    pub(super) fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|cause| StoreError::Corrupt {
            dir: self.dir.clone(),
            key: key.to_string(),
            cause,
        })
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise to JSON")
}

fn source_key(source: &str) -> Vec<u8> {
    format!("src/{source}").into_bytes()
}

fn inventory_key(source: &str) -> Vec<u8> {
    format!("inv/{source}").into_bytes()
}

fn bundle_key(source: &str, revision: &str) -> Vec<u8> {
    format!("bun/{source}\0{revision}").into_bytes()
}

fn history_key(source: &str, seq: u64) -> Vec<u8> {
    let mut k = format!("his/{source}\0").into_bytes();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
mod tests;
