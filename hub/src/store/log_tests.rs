//! The heartbeat log's invariants, on real files in a temp dir.

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn body(id: &str, seq: u64) -> Vec<u8> {
    format!(
        r#"{{"agent_id":"{id}","seq":{seq},"pad":"{}"}}"#,
        "x".repeat(200)
    )
    .into_bytes()
}

fn record(log: &HeartbeatLog, id: &str, seq: u64, keep: usize) -> Result<Recorded, StoreError> {
    let sent = body(id, seq);
    log.record(id, seq, seq * 10, &sent, keep, |stored| Ok(stored == sent))
}

fn seqs(log: &HeartbeatLog, id: &str) -> Result<Vec<u64>, StoreError> {
    Ok(log.history(id, usize::MAX)?.iter().map(|s| s.seq).collect())
}

#[test]
fn a_reopened_log_holds_what_was_recorded() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let log = HeartbeatLog::open(dir.path())?;
        for seq in 1..=5 {
            record(&log, "a", seq, 3)?;
        }
        record(&log, "b", 9, 3)?;
        log.sync()?;
    }
    let log = HeartbeatLog::open(dir.path())?;
    // Replay does not know `keep`: it holds what was written since the last compaction, and the agent's
    // next heartbeat trims it again.
    assert_eq!(seqs(&log, "a")?, [1, 2, 3, 4, 5]);
    let latest = log.latest("a")?.ok_or("no latest")?;
    assert_eq!(
        (latest.seq, latest.received_ms, latest.accepted),
        (5, 50, 5)
    );
    assert_eq!(latest.body, body("a", 5));
    assert_eq!(
        record(&log, "a", 4, 3)?,
        Recorded::Duplicate,
        "a kept seq is recognised after a restart"
    );
    assert_eq!(record(&log, "a", 6, 3)?, Recorded::Accepted { accepted: 6 });
    assert_eq!(seqs(&log, "a")?, [4, 5, 6]);
    let all: Vec<(String, u64)> = log
        .all_latest()?
        .into_iter()
        .map(|(id, s)| (id, s.seq))
        .collect();
    assert_eq!(all, [("a".to_owned(), 6), ("b".to_owned(), 9)]);
    Ok(())
}

#[test]
fn a_torn_end_is_cut_off_and_the_log_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let log = HeartbeatLog::open(dir.path())?;
        record(&log, "a", 1, 10)?;
        record(&log, "a", 2, 10)?;
        log.sync()?;
    }
    // A crash in the middle of the third write: half a record at the end.
    let head = segment::path(dir.path(), 1);
    let whole = std::fs::metadata(&head)?.len();
    let third = segment::encode(&Payload::Heartbeat {
        id: "a",
        seq: 3,
        received_ms: 30,
        accepted: 3,
        body: &body("a", 3),
    });
    let mut file = OpenOptions::new().append(true).open(&head)?;
    file.write_all(&third[..third.len() / 2])?;
    drop(file);

    let log = HeartbeatLog::open(dir.path())?;
    assert_eq!(
        std::fs::metadata(&head)?.len(),
        whole,
        "the torn bytes are cut off"
    );
    assert_eq!(seqs(&log, "a")?, [1, 2]);
    // The agent sends 3 again; it lands after the last whole record and reads back after a restart.
    assert_eq!(
        record(&log, "a", 3, 10)?,
        Recorded::Accepted { accepted: 3 }
    );
    log.sync()?;
    drop(log);
    let log = HeartbeatLog::open(dir.path())?;
    assert_eq!(seqs(&log, "a")?, [1, 2, 3]);
    Ok(())
}

#[test]
fn damage_in_an_older_segment_skips_only_what_follows_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let log = HeartbeatLog::open_with(dir.path(), 600)?;
        for seq in 1..=6 {
            record(&log, "a", seq, 100)?;
        }
        log.sync()?;
    }
    let first = segment::path(dir.path(), 1);
    assert!(segment::list(dir.path())?.len() > 2, "small segments roll");
    // Flip one byte in the first segment's first record.
    let mut bytes = std::fs::read(&first)?;
    bytes[segment::HEADER + 4] ^= 0xff;
    std::fs::write(&first, &bytes)?;
    let log = HeartbeatLog::open_with(dir.path(), 600)?;
    let kept = seqs(&log, "a")?;
    assert!(!kept.contains(&1) && kept.contains(&6), "{kept:?}");
    assert_eq!(
        std::fs::read(&first)?,
        bytes,
        "an older segment is never cut: its bytes stay for the operator"
    );
    Ok(())
}

#[test]
fn compaction_bounds_the_disk_and_keeps_every_kept_heartbeat() -> TestResult {
    let dir = tempfile::tempdir()?;
    let segment_bytes = 4096;
    let agents = ["a", "b", "c", "d"];
    let log = HeartbeatLog::open_with(dir.path(), segment_bytes)?;
    let mut compactions = 0;
    for seq in 1..=200 {
        for id in agents {
            record(&log, id, seq, 5)?;
        }
        log.sync()?;
        while log.compact()? {
            compactions += 1;
        }
        let (size, live) = log.sizes();
        assert!(
            size <= 2 * live + 2 * segment_bytes,
            "seq {seq}: {size} bytes on disk for {live} live"
        );
    }
    assert!(compactions > 10, "{compactions}");
    for id in agents {
        assert_eq!(seqs(&log, id)?, [196, 197, 198, 199, 200]);
        assert_eq!(log.latest(id)?.ok_or("no latest")?.body, body(id, 200));
    }
    let on_disk: u64 = segment::list(dir.path())?
        .iter()
        .map(|n| std::fs::metadata(segment::path(dir.path(), *n)).map(|m| m.len()))
        .sum::<Result<_, _>>()?;
    assert_eq!(on_disk, log.sizes().0);
    drop(log);
    let log = HeartbeatLog::open_with(dir.path(), segment_bytes)?;
    for id in agents {
        let kept = seqs(&log, id)?;
        assert!(kept.ends_with(&[196, 197, 198, 199, 200]), "{id}: {kept:?}");
        assert_eq!(log.latest(id)?.ok_or("no latest")?.accepted, 200);
    }
    Ok(())
}

#[test]
fn a_forgotten_agent_stays_forgotten_through_compaction_and_restarts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let segment_bytes = 2048;
    let log = HeartbeatLog::open_with(dir.path(), segment_bytes)?;
    for seq in 1..=20 {
        record(&log, "gone", seq, 50)?;
    }
    assert_eq!(log.forget("gone")?, Some(20));
    assert_eq!(log.forget("gone")?, None);
    // The same id comes back later as a new agent: its own heartbeats count from 1 again.
    assert_eq!(
        record(&log, "gone", 1, 50)?,
        Recorded::Accepted { accepted: 1 }
    );
    for seq in 1..=60 {
        record(&log, "other", seq, 2)?;
        log.sync()?;
        while log.compact()? {}
    }
    drop(log);
    let log = HeartbeatLog::open_with(dir.path(), segment_bytes)?;
    assert_eq!(seqs(&log, "gone")?, [1]);
    assert_eq!(log.latest("gone")?.ok_or("no latest")?.accepted, 1);
    Ok(())
}

#[test]
fn a_copy_left_by_an_interrupted_compaction_is_read_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let log = HeartbeatLog::open_with(dir.path(), 1024)?;
        for seq in 1..=4 {
            record(&log, "a", seq, 10)?;
        }
        // What a compaction does before it deletes the old segment: copy a record to the end.
        let first = Reader::open(&segment::path(dir.path(), 1))?.next_record()?;
        let Next::Record { payload, .. } = first else {
            return Err(format!("{first:?}").into());
        };
        let mut inner = log.lock();
        inner.append(dir.path(), 1024, &segment::frame(&payload))?;
        drop(inner);
        log.sync()?;
    }
    let log = HeartbeatLog::open_with(dir.path(), 1024)?;
    assert_eq!(seqs(&log, "a")?, [1, 2, 3, 4]);
    assert_eq!(log.history("a", 10)?[0].body, body("a", 1));
    let (size, live) = log.sizes();
    let one = segment::encode(&Payload::Heartbeat {
        id: "a",
        seq: 1,
        received_ms: 10,
        accepted: 1,
        body: &body("a", 1),
    })
    .len() as u64;
    assert_eq!(size - live, one, "the older copy counts as dead");
    Ok(())
}

#[test]
fn an_older_seq_not_kept_is_not_newer_and_a_changed_one_is_told_apart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = HeartbeatLog::open(dir.path())?;
    for seq in 1..=4 {
        record(&log, "a", seq, 2)?;
    }
    assert_eq!(record(&log, "a", 1, 2)?, Recorded::NotNewer { last_seq: 4 });
    let changed = log.record("a", 4, 99, b"{}", 2, |stored| Ok(stored == b"{}"))?;
    assert_eq!(changed, Recorded::Changed);
    assert_eq!(seqs(&log, "a")?, [3, 4]);
    Ok(())
}
