//! Moving heartbeats out of the sled trees where hubs before the heartbeat log kept them.
//!
//! Old layout: tree `agents`, `<id>` -> an [`AgentRecord`] as JSON (the latest heartbeat, its seq, when it
//! came, the accepted count); tree `history`, `<id> 0x00 <seq, u64 big-endian>` -> a [`HistoryEntry`] as
//! JSON. Every heartbeat is copied into the log, the log is synced, and only then are the trees dropped. An
//! interrupted migration runs again at the next open; the log skips what it already holds (same agent and
//! seq), so nothing is doubled and nothing is lost.

use super::{decode, AgentRecord, HistoryEntry, Store, StoreError};

const OLD_AGENTS: &[u8] = b"agents";
const OLD_HISTORY: &[u8] = b"history";

/// Copies the old trees' heartbeats into the log and drops the trees; nothing to do for a new store.
pub fn heartbeats_from_sled(store: &Store) -> Result<(), StoreError> {
    let names = store.db.tree_names();
    let has = |name: &[u8]| names.iter().any(|n| n.as_ref() == name);
    if !has(OLD_AGENTS) && !has(OLD_HISTORY) {
        return Ok(());
    }
    // The latest records first: they carry the accepted count, which the history entries lack.
    let mut agents = 0usize;
    if has(OLD_AGENTS) {
        for item in store.db.open_tree(OLD_AGENTS)?.iter() {
            let (key, value) = item?;
            let record: AgentRecord = decode(&String::from_utf8_lossy(&key), &value)?;
            let body = body_of(&record.agent_id, &record.heartbeat)?;
            store.log.import(
                &record.agent_id,
                record.last_seq,
                record.last_seen_ms,
                record.accepted,
                &body,
            )?;
            agents += 1;
        }
    }
    let mut moved = 0usize;
    if has(OLD_HISTORY) {
        for item in store.db.open_tree(OLD_HISTORY)?.iter() {
            let (key, value) = item?;
            let id = key
                .iter()
                .position(|&b| b == 0)
                .map(|end| String::from_utf8_lossy(&key[..end]).into_owned())
                .unwrap_or_default();
            let entry: HistoryEntry = decode(&id, &value)?;
            let body = body_of(&id, &entry.heartbeat)?;
            store.log.import(
                &entry.heartbeat.agent_id,
                entry.heartbeat.seq,
                entry.received_ms,
                0,
                &body,
            )?;
            moved += 1;
        }
    }
    store.log.sync()?;
    for name in [OLD_HISTORY, OLD_AGENTS] {
        store.db.drop_tree(name)?;
    }
    store.db.flush()?;
    tracing::info!(
        "moved the heartbeats of {agents} agents ({moved} history entries) from the sled store into the heartbeat log"
    );
    Ok(())
}

fn body_of(id: &str, heartbeat: &outpost_proto::wire::Heartbeat) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(heartbeat).map_err(|e| StoreError::Corrupt {
        key: id.to_owned(),
        message: e.to_string(),
    })
}
