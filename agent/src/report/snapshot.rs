//! The daemon's published view: what each source runs and why, for `outpost status` and liveness probes.
//!
//! sled lets one process hold the store, so a running daemon publishes a snapshot file, `state_dir/status.json`,
//! replaced atomically after every pass; `outpost status` reads it while the daemon runs and reads the store
//! itself when no daemon holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::SourceStatus;
use crate::config::{Config, SourceConfig};
use crate::{fsutil, redact};

pub const SNAPSHOT_FILE: &str = "status.json";

/// One source as `outpost status` shows it: which source (from the config) and its status (from the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceView {
    pub name: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub target: String,
    #[serde(flatten)]
    pub status: SourceStatus,
    /// Unix seconds of the next poll, when a daemon is running.
    pub next_poll: Option<u64>,
}

impl SourceView {
    pub fn new(config: &SourceConfig, status: SourceStatus) -> SourceView {
        SourceView {
            name: config.name.clone(),
            url: redact::url(&config.url),
            reference: config.git_ref.to_string(),
            target: config.target.to_string(),
            status,
            next_poll: None,
        }
    }
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
    pub sources: Vec<SourceView>,
}

impl Snapshot {
    /// The snapshot of `config`'s sources, each with the status `status_of` gives (the store's record), and the
    /// heartbeat outbox's depth and drop count when heartbeats are configured. `daemon_pid` stays `None` here:
    /// only a running daemon's [`Board`] sets it.
    pub fn new<E>(
        config: &Config,
        mut status_of: impl FnMut(&str) -> Result<SourceStatus, E>,
        outbox: Option<(u64, u64)>,
    ) -> Result<Snapshot, E> {
        let mut sources = Vec::new();
        for s in &config.sources {
            sources.push(SourceView::new(s, status_of(&s.name)?));
        }
        Ok(Snapshot {
            agent_id: config.agent.id.clone(),
            daemon_pid: None,
            written_at: super::now(),
            heartbeat_outbox: outbox.map(|(depth, _)| depth),
            heartbeat_dropped: outbox.map(|(_, dropped)| dropped),
            sources,
        })
    }

    /// True when every source is Ready (`outpost status` exits 0).
    pub fn healthy(&self) -> bool {
        self.sources
            .iter()
            .all(|s| s.status.state == super::State::Ready)
    }
}

/// The daemon's live view, written to disk after every change.
pub struct Board {
    path: PathBuf,
    snapshot: Mutex<(Snapshot, BTreeMap<String, usize>)>,
}

impl Board {
    pub fn new(config: &Config, mut snapshot: Snapshot) -> Board {
        snapshot.daemon_pid = Some(std::process::id());
        let index = snapshot
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Board {
            path: config.agent.state_dir.join(SNAPSHOT_FILE),
            snapshot: Mutex::new((snapshot, index)),
        }
    }

    pub fn update(&self, config: &SourceConfig, status: &SourceStatus, next_poll: Option<u64>) {
        let mut guard = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let (snapshot, index) = &mut *guard;
        let mut view = SourceView::new(config, status.clone());
        view.next_poll = next_poll;
        if let Some(&i) = index.get(&config.name) {
            snapshot.sources[i] = view;
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
        guard.0.written_at = super::now();
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
