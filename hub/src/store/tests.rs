//! The store's invariants, on a real sled database and heartbeat log in a temp dir.

use super::*;
use outpost_proto::wire::{SourceState, SourceStatus};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn heartbeat(id: &str, seq: u64) -> Heartbeat {
    Heartbeat {
        schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
        agent_id: id.into(),
        seq,
        boot_id: "boot-1".into(),
        observed_at: "2026-09-21T14:13:20Z".into(),
        agent_version: "0.1.0".into(),
        assignment_generation: 0,
        dropped: 0,
        sources: vec![SourceStatus::new("platform", SourceState::Ready)],
        assignment_error: None,
    }
}

fn record(
    store: &Store,
    heartbeat: &Heartbeat,
    received_ms: u64,
    keep: usize,
) -> Result<Recorded, StoreError> {
    let body = heartbeat.to_body().map_err(|e| StoreError::Corrupt {
        key: "test".into(),
        message: e.to_string(),
    })?;
    store.record_heartbeat(heartbeat, &body, received_ms, keep)
}

#[test]
fn records_keep_the_body_as_received_and_read_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let sent = heartbeat("site-1.a_b", 3);
    // Whitespace and key order as another implementation might send them.
    let body = format!(" {} ", String::from_utf8(sent.to_body()?)?);
    store.record_heartbeat(&sent, body.as_bytes(), 42, 10)?;
    let record = store.agent("site-1.a_b")?.ok_or("no record")?;
    assert_eq!(
        (
            record.agent_id.as_str(),
            record.last_seq,
            record.last_seen_ms,
            record.accepted
        ),
        ("site-1.a_b", 3, 42, 1)
    );
    assert_eq!(record.heartbeat, sent);
    assert_eq!(store.history("site-1.a_b", 10)?[0].heartbeat, sent);
    Ok(())
}

#[test]
fn seq_must_grow_and_duplicates_are_recognised() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    assert_eq!(
        record(&store, &heartbeat("a", 5), 1, 10)?,
        Recorded::Accepted { accepted: 1 }
    );
    assert_eq!(
        record(&store, &heartbeat("a", 5), 2, 10)?,
        Recorded::Duplicate
    );
    assert_eq!(
        record(&store, &heartbeat("a", 3), 2, 10)?,
        Recorded::NotNewer { last_seq: 5 }
    );
    let mut changed = heartbeat("a", 5);
    changed.dropped = 1;
    assert_eq!(record(&store, &changed, 2, 10)?, Recorded::Changed);
    assert_eq!(
        record(&store, &heartbeat("a", 6), 3, 10)?,
        Recorded::Accepted { accepted: 2 }
    );
    // An older heartbeat still in the history is a lost acknowledgement, not a replay.
    assert_eq!(
        record(&store, &heartbeat("a", 5), 4, 10)?,
        Recorded::Duplicate
    );
    // Other agents are independent, including one whose id extends this one's.
    assert_eq!(
        record(&store, &heartbeat("a.b", 1), 4, 10)?,
        Recorded::Accepted { accepted: 1 }
    );

    let record = store.agent("a")?.ok_or("no record")?;
    assert_eq!(
        (record.last_seq, record.last_seen_ms, record.accepted),
        (6, 3, 2)
    );
    assert_eq!(store.history("a", 10)?.len(), 2);
    assert_eq!(store.agents()?.len(), 2);
    Ok(())
}

#[test]
fn history_is_bounded_and_ordered() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    for seq in [1, 2, 3, 300, 301] {
        record(&store, &heartbeat("a", seq), seq, 3)?;
    }
    let seqs: Vec<u64> = store
        .history("a", 3)?
        .iter()
        .map(|e| e.heartbeat.seq)
        .collect();
    assert_eq!(seqs, [3, 300, 301]);
    assert_eq!(
        store.history("a", 2)?.len(),
        2,
        "a reader may ask for fewer"
    );

    for seq in 1..=95 {
        record(&store, &heartbeat("b", seq), seq, 80)?;
    }
    let kept = store.history("b", 1000)?;
    assert_eq!(kept.len(), 80);
    assert_eq!(kept.first().map(|e| e.heartbeat.seq), Some(16));
    Ok(())
}

#[test]
fn heartbeats_in_an_older_hubs_sled_trees_move_into_the_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        // The layout hubs used before the heartbeat log, written as they wrote it.
        let db = sled::open(dir.path().join("hub.sled"))?;
        let agents = db.open_tree("agents")?;
        let history = db.open_tree("history")?;
        for (id, last) in [("a", 3u64), ("a.b", 7)] {
            for seq in 1..=last {
                let entry = HistoryEntry {
                    received_ms: seq * 1000,
                    heartbeat: heartbeat(id, seq),
                };
                let mut key = id.as_bytes().to_vec();
                key.push(0);
                key.extend_from_slice(&seq.to_be_bytes());
                history.insert(key, serde_json::to_vec(&entry)?)?;
            }
            let latest = AgentRecord {
                agent_id: id.into(),
                last_seq: last,
                last_seen_ms: last * 1000,
                accepted: last + 40,
                heartbeat: heartbeat(id, last),
            };
            agents.insert(id, serde_json::to_vec(&latest)?)?;
        }
        db.flush()?;
    }
    for _ in 0..2 {
        let store = Store::open(dir.path())?;
        let record = store.agent("a.b")?.ok_or("no record")?;
        assert_eq!(
            (record.last_seq, record.last_seen_ms, record.accepted),
            (7, 7000, 47)
        );
        assert_eq!(record.heartbeat, heartbeat("a.b", 7));
        let seqs: Vec<u64> = store
            .history("a", 10)?
            .iter()
            .map(|e| e.heartbeat.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(store.agents()?.len(), 2);
        assert!(
            !store
                .db
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == b"agents"),
            "the old trees are dropped once moved"
        );
        // The seq check carries over: an old seq is a duplicate, the next one is accepted.
        assert_eq!(record_hb(&store, "a", 3)?, Recorded::Duplicate);
        drop(store);
    }
    let store = Store::open(dir.path())?;
    assert_eq!(
        record_hb(&store, "a", 4)?,
        Recorded::Accepted { accepted: 44 }
    );
    Ok(())
}

fn record_hb(store: &Store, id: &str, seq: u64) -> Result<Recorded, StoreError> {
    record(store, &heartbeat(id, seq), seq * 1000, 120)
}

#[test]
fn a_token_enrolls_one_agent() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let first = Enrollment {
        agent_id: "a".into(),
        public_key: "ed25519:A".into(),
        enrolled_at_ms: 1,
        token_sha256: "t1".into(),
    };
    assert_eq!(store.enroll(&first)?, Enrolled::Enrolled);
    assert_eq!(store.enroll(&first)?, Enrolled::Again);
    let other = Enrollment {
        agent_id: "b".into(),
        ..first.clone()
    };
    assert_eq!(
        store.enroll(&other)?,
        Enrolled::TokenUsed { by: "a".into() }
    );
    let new_token_same_id = Enrollment {
        token_sha256: "t2".into(),
        ..first.clone()
    };
    assert_eq!(store.enroll(&new_token_same_id)?, Enrolled::IdTaken);
    assert_eq!(store.enrollments()?, [first]);
    Ok(())
}

#[test]
fn forget_removes_one_agents_records_and_keeps_its_token_used() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    for seq in 1..=3 {
        record(&store, &heartbeat("a", seq), seq, 10)?;
    }
    record(&store, &heartbeat("a.b", 1), 1, 10)?;
    let enrollment = Enrollment {
        agent_id: "a".into(),
        public_key: "ed25519:A".into(),
        enrolled_at_ms: 1,
        token_sha256: "t1".into(),
    };
    assert_eq!(store.enroll(&enrollment)?, Enrolled::Enrolled);

    let forgotten = store.forget("a")?;
    assert_eq!(
        forgotten,
        Forgotten {
            heartbeat: true,
            history: 3,
            enrollment: true
        }
    );
    assert_eq!(store.agent("a")?, None);
    assert!(store.history("a", 10)?.is_empty());
    assert!(store.enrollments()?.is_empty());
    // The agent whose id extends this one's is untouched.
    assert_eq!(store.history("a.b", 10)?.len(), 1);
    // The token stays used: it cannot enroll anyone again.
    let again = Enrollment {
        agent_id: "c".into(),
        ..enrollment
    };
    assert_eq!(
        store.enroll(&again)?,
        Enrolled::TokenUsed { by: "a".into() }
    );
    assert!(store.forget("a")?.nothing());

    // While a process holds the store, another cannot open it, and is told why.
    let second = Store::open(dir.path());
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "{second:?}"
    );
    Ok(())
}
