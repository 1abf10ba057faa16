//! Status: what each source runs and why, for `outpost status` (and later for heartbeats).
//!
//! sled lets one process hold the store, so a running daemon publishes a snapshot file, `state_dir/status.json`,
//! replaced atomically after every pass; `outpost status` reads it while the daemon runs and reads the store
//! itself when no daemon holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::{Config, SourceConfig};
use crate::store::{SourceRecord, Store, StoreError};
use crate::{fsutil, redact};
use outpost_proto::text::printable;

pub const SNAPSHOT_FILE: &str = "status.json";
pub const PID_FILE: &str = "outpost.pid";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub target: String,
    pub state: String,
    pub fetched: Option<String>,
    pub applied: Option<String>,
    pub last_good: Option<String>,
    pub last_error: Option<String>,
    /// Unix seconds of the last time the Git host answered.
    pub last_seen: Option<u64>,
    /// Unix seconds of the next poll, when a daemon is running.
    pub next_poll: Option<u64>,
    pub object_count: usize,
    /// sha-256 over the sorted identities and content digests of the objects in the target.
    pub inventory_digest: Option<String>,
    /// Objects re-applied because they had drifted from the last good revision, in all.
    #[serde(default)]
    pub drift_corrected: u64,
    /// From the last apply that changed something: fields taken from other managers, recreated objects.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub agent_id: String,
    /// The pid of the `outpost run` that wrote this snapshot; `None` when read from the store directly.
    pub daemon_pid: Option<u32>,
    pub written_at: u64,
    /// Heartbeats queued and not yet delivered to the hub; absent when no `[upstream]` is configured. A
    /// number that keeps growing means the hub is unreachable or refuses them (the daemon's log says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_outbox: Option<u64>,
    /// Heartbeats removed from the outbox without delivery, ever: it overflowed, they grew too old, or the hub
    /// refused them (signed). Each is also reported to the hub in the next heartbeat's `dropped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_dropped: Option<u64>,
    pub sources: Vec<SourceStatus>,
}

impl SourceStatus {
    pub fn new(config: &SourceConfig, record: &SourceRecord) -> SourceStatus {
        SourceStatus {
            name: config.name.clone(),
            url: redact::url(&config.url),
            reference: config.git_ref.to_string(),
            target: config.target.to_string(),
            state: if record.state.is_empty() {
                "Pending".into()
            } else {
                record.state.clone()
            },
            fetched: record.fetched.clone(),
            applied: record.applied.clone(),
            last_good: record.last_good.clone(),
            last_error: record.last_error.clone(),
            last_seen: record.last_seen,
            next_poll: None,
            object_count: record.object_count,
            inventory_digest: record.inventory_digest.clone(),
            drift_corrected: record.drift_corrected,
            notes: record.notes.clone(),
        }
    }
}

/// Builds a snapshot from the store (no daemon running).
pub fn from_store(config: &Config, store: &Store) -> Result<Snapshot, StoreError> {
    let mut sources = Vec::new();
    for s in &config.sources {
        sources.push(SourceStatus::new(s, &store.record(&s.name)?));
    }
    Ok(Snapshot {
        agent_id: config.agent.id.clone(),
        daemon_pid: None,
        written_at: crate::store::now(),
        heartbeat_outbox: config.upstream.as_ref().map(|_| store.outbox_len() as u64),
        heartbeat_dropped: match config.upstream {
            Some(_) => Some(store.outbox_dropped_total()?),
            None => None,
        },
        sources,
    })
}

/// The daemon's live view, written to disk after every change.
pub struct Board {
    path: PathBuf,
    snapshot: Mutex<(Snapshot, BTreeMap<String, usize>)>,
}

impl Board {
    pub fn new(config: &Config, store: &Store) -> Result<Board, StoreError> {
        let mut snapshot = from_store(config, store)?;
        snapshot.daemon_pid = Some(std::process::id());
        let index = snapshot
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Ok(Board {
            path: config.agent.state_dir.join(SNAPSHOT_FILE),
            snapshot: Mutex::new((snapshot, index)),
        })
    }

    pub fn update(&self, config: &SourceConfig, record: &SourceRecord, next_poll: Option<u64>) {
        let mut guard = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let (snapshot, index) = &mut *guard;
        let mut status = SourceStatus::new(config, record);
        status.next_poll = next_poll;
        if let Some(&i) = index.get(&config.name) {
            snapshot.sources[i] = status;
        }
        self.write(guard);
    }

    /// Records how many heartbeats wait in the outbox and how many were dropped undelivered in all (the
    /// heartbeat loop calls it on every wake).
    pub fn set_outbox(&self, depth: u64, dropped: u64) {
        let guard = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0.heartbeat_outbox == Some(depth) && guard.0.heartbeat_dropped == Some(dropped) {
            return;
        }
        let mut guard = guard;
        guard.0.heartbeat_outbox = Some(depth);
        guard.0.heartbeat_dropped = Some(dropped);
        self.write(guard);
    }

    fn write(&self, mut guard: std::sync::MutexGuard<'_, (Snapshot, BTreeMap<String, usize>)>) {
        guard.0.written_at = crate::store::now();
        let bytes = serde_json::to_vec_pretty(&guard.0).expect("status serialises");
        drop(guard);
        if let Err(e) = fsutil::write_replace(&self.path, &bytes) {
            tracing::warn!(file = %self.path.display(), "cannot write the status snapshot: {e}");
        }
    }

    /// Marks the snapshot as no longer live (the daemon is stopping).
    pub fn close(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads the snapshot a running daemon wrote.
pub fn read_snapshot(state_dir: &Path) -> Option<Snapshot> {
    let bytes = std::fs::read(state_dir.join(SNAPSHOT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// "pid N" of the process that holds the store, for error messages.
pub fn pid_holder(state_dir: &Path) -> String {
    match std::fs::read_to_string(state_dir.join(PID_FILE)) {
        Ok(pid) => format!("pid {}", pid.trim()),
        Err(_) => "pid unknown".into(),
    }
}

/// The human form of `outpost status`. Every text that came from outside (names, revisions, errors quoting file
/// names) goes through [`printable`]: a terminal must never receive a control sequence from a repository.
pub fn render_table(snapshot: &Snapshot, now: u64) -> String {
    let short = |r: &Option<String>| {
        r.as_deref()
            .map(|r| printable(r).chars().take(12).collect::<String>())
            .unwrap_or_else(|| "-".into())
    };
    let ago = |t: Option<u64>| match t {
        Some(t) if t <= now => format!("{}s ago", now - t),
        Some(t) => format!("in {}s", t - now),
        None => "-".into(),
    };
    let mut out = format!(
        "agent {} ({})\n",
        printable(&snapshot.agent_id),
        match snapshot.daemon_pid {
            Some(pid) => format!("outpost run is running, pid {pid}"),
            None => "no daemon running; read from the store".into(),
        }
    );
    if let Some(depth) = snapshot.heartbeat_outbox {
        out.push_str(&format!(
            "heartbeat outbox: {depth} waiting to be sent to the hub\n"
        ));
    }
    if let Some(dropped) = snapshot.heartbeat_dropped.filter(|d| *d > 0) {
        out.push_str(&format!(
            "heartbeats dropped undelivered: {dropped} (outbox full or too old, or refused by the hub; the daemon's log says which)\n"
        ));
    }
    out.push_str(&format!(
        "{:<16} {:<12} {:<13} {:<13} {:<13} {:<8} {:<10} {}\n",
        "SOURCE", "STATE", "APPLIED", "LAST GOOD", "FETCHED", "OBJECTS", "SEEN", "NEXT POLL"
    ));
    for s in &snapshot.sources {
        out.push_str(&format!(
            "{:<16} {:<12} {:<13} {:<13} {:<13} {:<8} {:<10} {}\n",
            printable(&s.name),
            printable(&s.state),
            short(&s.applied),
            short(&s.last_good),
            short(&s.fetched),
            s.object_count,
            ago(s.last_seen),
            ago(s.next_poll)
        ));
        if let Some(e) = &s.last_error {
            out.push_str(&format!("  error: {}\n", printable(e)));
        }
        if s.drift_corrected > 0 {
            out.push_str(&format!(
                "  drift corrected: {} objects\n",
                s.drift_corrected
            ));
        }
        for note in &s.notes {
            out.push_str(&format!("  note: {}\n", printable(note)));
        }
    }
    out
}
