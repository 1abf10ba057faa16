//! The heartbeat outbox: heartbeats wait here, in order, until the hub has them.
//!
//! An edge site can be offline for days, and the hub must still learn what happened, in order and with nothing
//! silently lost. So every heartbeat gets a sequence number that is persisted (strictly increasing across
//! restarts), is queued in sled before any send is tried, and leaves the outbox only once delivered. The outbox
//! is bounded by count and age; when it overflows the oldest entries go, and the number dropped is carried into
//! the next heartbeat queued, so the hub can see the gap. A heartbeat the hub refuses (its signed 409) goes the
//! same way. Every removal that is not a delivery also adds to a total that never resets, which `outpost
//! status` shows. Every change is one atomic batch, flushed.

use serde::{Deserialize, Serialize};

use super::{encode, Store, StoreError};

const SEQ_KEY: &[u8] = b"hb/seq";
const DROPPED_KEY: &[u8] = b"hb/dropped";
const DROPPED_TOTAL_KEY: &[u8] = b"hb/dropped_total";
const PREFIX: &[u8] = b"obx/";

/// How much the outbox may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    pub max_entries: usize,
    pub max_age_secs: u64,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_entries: 10_000,
            max_age_secs: 7 * 24 * 3600,
        }
    }
}

/// One queued heartbeat: its body as it will be signed and sent, and the drop count it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub seq: u64,
    pub queued_at: u64,
    /// Heartbeats dropped before this one and reported in its body.
    pub reports_dropped: u64,
    pub body: Vec<u8>,
}

fn entry_key(seq: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl Store {
    /// Hands out the next heartbeat sequence number and the count of dropped heartbeats it must report,
    /// then queues the body `make(seq, dropped)` builds, evicting what the limits no longer allow. One batch.
    pub fn outbox_push(
        &self,
        now: u64,
        limits: OutboxLimits,
        make: impl FnOnce(u64, u64) -> Vec<u8>,
    ) -> Result<OutboxEntry, StoreError> {
        let seq = read_u64(self.tree.get(SEQ_KEY).map_err(|e| self.io(e))?) + 1;
        let mut dropped = read_u64(self.tree.get(DROPPED_KEY).map_err(|e| self.io(e))?);
        let mut total = self.outbox_dropped_total()?;
        let mut batch = sled::Batch::default();

        // Evict by age, then by count (leaving room for the new entry). An evicted entry's own report of
        // earlier drops is not lost: it moves into the counter. Only the entries that go are decoded, oldest
        // first, up to the first one kept: a long outage must not make every heartbeat decode the whole queue.
        let queued = self.tree.scan_prefix(PREFIX).keys().count();
        let over = (queued + 1).saturating_sub(limits.max_entries.max(1));
        for (i, item) in self.tree.scan_prefix(PREFIX).enumerate() {
            let (_, v) = item.map_err(|e| self.io(e))?;
            let e: OutboxEntry = self.decode("obx", &v)?;
            let too_old = now.saturating_sub(e.queued_at) > limits.max_age_secs;
            if i < over || too_old {
                batch.remove(entry_key(e.seq));
                dropped += 1 + e.reports_dropped;
                total += 1;
            } else {
                break;
            }
        }

        let entry = OutboxEntry {
            seq,
            queued_at: now,
            reports_dropped: dropped,
            body: make(seq, dropped),
        };
        batch.insert(entry_key(seq), encode(&entry));
        batch.insert(SEQ_KEY, &seq.to_be_bytes());
        batch.insert(DROPPED_KEY, &0u64.to_be_bytes());
        batch.insert(DROPPED_TOTAL_KEY, &total.to_be_bytes());
        self.tree.apply_batch(batch).map_err(|e| self.io(e))?;
        self.flush()?;
        Ok(entry)
    }

    /// Removes a heartbeat the hub refused (signed), counting it like an eviction: the next heartbeat queued
    /// reports it (and whatever drops it carried itself). Returns the new total of heartbeats dropped.
    pub fn outbox_refused(&self, seq: u64) -> Result<u64, StoreError> {
        let Some(v) = self.tree.get(entry_key(seq)).map_err(|e| self.io(e))? else {
            return self.outbox_dropped_total();
        };
        let e: OutboxEntry = self.decode("obx", &v)?;
        let dropped = read_u64(self.tree.get(DROPPED_KEY).map_err(|e| self.io(e))?);
        let total = self.outbox_dropped_total()? + 1;
        let mut batch = sled::Batch::default();
        batch.remove(entry_key(seq));
        batch.insert(
            DROPPED_KEY,
            &(dropped + 1 + e.reports_dropped).to_be_bytes(),
        );
        batch.insert(DROPPED_TOTAL_KEY, &total.to_be_bytes());
        self.tree.apply_batch(batch).map_err(|e| self.io(e))?;
        self.flush()?;
        Ok(total)
    }

    /// Heartbeats removed from the outbox without being delivered, since the store was created.
    pub fn outbox_dropped_total(&self) -> Result<u64, StoreError> {
        Ok(read_u64(
            self.tree.get(DROPPED_TOTAL_KEY).map_err(|e| self.io(e))?,
        ))
    }

    /// The oldest `n` queued heartbeats, oldest first: the order they must be sent in.
    pub fn outbox_entries(&self, n: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(PREFIX).take(n) {
            let (_, v) = item.map_err(|e| self.io(e))?;
            out.push(self.decode("obx", &v)?);
        }
        Ok(out)
    }

    /// Removes a heartbeat the hub has acknowledged.
    pub fn outbox_delivered(&self, seq: u64) -> Result<(), StoreError> {
        self.tree.remove(entry_key(seq)).map_err(|e| self.io(e))?;
        self.flush()
    }

    pub fn outbox_len(&self) -> usize {
        self.tree.scan_prefix(PREFIX).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(seq: u64, dropped: u64) -> Vec<u8> {
        format!("{{\"seq\":{seq},\"dropped\":{dropped}}}").into_bytes()
    }

    #[test]
    fn seq_strictly_increases_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits::default();
        let first = {
            let store = Store::open(dir.path()).unwrap();
            store.outbox_push(100, limits, body).unwrap();
            store.outbox_push(101, limits, body).unwrap().seq
        };
        let store = Store::open(dir.path()).unwrap();
        let e = store.outbox_push(102, limits, body).unwrap();
        assert_eq!(first, 2);
        assert_eq!(e.seq, 3);
        // Delivery empties the outbox but never rewinds the sequence.
        for e in store.outbox_entries(10).unwrap() {
            store.outbox_delivered(e.seq).unwrap();
        }
        assert_eq!(store.outbox_len(), 0);
        assert_eq!(store.outbox_push(103, limits, body).unwrap().seq, 4);
    }

    #[test]
    fn overflow_drops_oldest_and_reports_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let limits = OutboxLimits {
            max_entries: 3,
            max_age_secs: 1000,
        };
        for t in 0..5 {
            store.outbox_push(t, limits, body).unwrap();
        }
        let queued = store.outbox_entries(10).unwrap();
        let seqs: Vec<u64> = queued.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5], "oldest dropped, order kept");
        // seq 4 was queued after seq 1 was dropped, seq 5 after seq 2: each reports its drop once.
        assert_eq!(
            queued.iter().map(|e| e.reports_dropped).collect::<Vec<_>>(),
            [0, 1, 1]
        );
        assert_eq!(queued[2].body, body(5, 1));
        // Dropping an entry that itself reported drops carries its count on: nothing is lost from the total.
        let next = store.outbox_push(5, limits, body).unwrap();
        assert_eq!(next.reports_dropped, 1, "seq 3 dropped, it reported none");
        let next = store.outbox_push(6, limits, body).unwrap();
        assert_eq!(
            next.reports_dropped, 2,
            "seq 4 dropped and the 1 it reported"
        );
    }

    #[test]
    fn a_refused_heartbeat_is_counted_and_reported_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let limits = OutboxLimits {
            max_entries: 2,
            max_age_secs: 1000,
        };
        for t in 0..3 {
            store.outbox_push(t, limits, body).unwrap();
        }
        assert_eq!(store.outbox_dropped_total().unwrap(), 1, "seq 1 evicted");
        // seq 3 reports the eviction of seq 1; refusing seq 3 carries that on, plus seq 3 itself.
        assert_eq!(store.outbox_refused(3).unwrap(), 2);
        assert_eq!(
            store.outbox_refused(3).unwrap(),
            2,
            "already gone: no change"
        );
        let next = store.outbox_push(3, limits, body).unwrap();
        assert_eq!(next.reports_dropped, 2);
        assert_eq!(store.outbox_dropped_total().unwrap(), 2);
        let seqs: Vec<u64> = store
            .outbox_entries(10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [2, 4]);
    }

    #[test]
    fn a_gap_in_the_queue_does_not_make_eviction_take_more() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let limits = OutboxLimits {
            max_entries: 3,
            max_age_secs: 1000,
        };
        for t in 0..3 {
            store.outbox_push(t, limits, body).unwrap();
        }
        // Removed from the middle: the queue holds 1 and 3, so there is room for 4 without evicting.
        store.outbox_delivered(2).unwrap();
        assert_eq!(
            store.outbox_push(3, limits, body).unwrap().reports_dropped,
            0
        );
        let e = store.outbox_push(4, limits, body).unwrap();
        assert_eq!(e.reports_dropped, 1, "only seq 1 goes");
        let seqs: Vec<u64> = store
            .outbox_entries(10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [3, 4, 5]);
    }

    #[test]
    fn entries_older_than_the_age_limit_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let limits = OutboxLimits {
            max_entries: 100,
            max_age_secs: 60,
        };
        store.outbox_push(0, limits, body).unwrap();
        store.outbox_push(10, limits, body).unwrap();
        let e = store.outbox_push(65, limits, body).unwrap();
        assert_eq!(e.reports_dropped, 1);
        let seqs: Vec<u64> = store
            .outbox_entries(10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [2, 3]);
    }
}
