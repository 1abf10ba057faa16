//! The heartbeat log: every accepted heartbeat is appended to a segment file, and the newest `keep` of each
//! agent are indexed in memory by where they lie.
//!
//! Why not sled trees: a heartbeat is written once and read rarely. Recording it in two sled trees in a
//! transaction, then flushing, cost about three times the CPU of verifying its signature, and sled's page
//! cache made the hub's memory grow with the fleet's history. Here recording is one `write(2)` and a share of
//! a group `fdatasync`; memory is 24 bytes per kept heartbeat.
//!
//! Invariants:
//! - records are only appended, and a heartbeat is acknowledged only after [`HeartbeatLog::sync`] covered it;
//!   a crash can leave a torn record at the end of the newest segment only, which the next open cuts off
//!   (its agent still holds it and sends it again);
//! - a segment is synced before a newer one is started, so older segments are always whole;
//! - the index holds each agent's kept heartbeats in seq order; a record the index does not point to is
//!   dead, and the bytes of each segment still pointed to are counted as its `live` bytes;
//! - compaction copies the live records of the oldest segment to the end, syncs, then deletes the segment.
//!   Oldest first is what lets a forget record be dropped: when its segment is the oldest, no older record
//!   it voids remains. A crash between the copy and the delete leaves two copies of a record; replay keeps
//!   one (same agent, same seq).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::segment::{self, Next, Payload, Reader};
use super::{Recorded, StoreError};

/// A new segment is started once the newest reaches this size.
pub const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;

/// Where a record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    segment: u32,
    len: u32,
    offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    place: Place,
}

#[derive(Debug, Default)]
struct AgentIndex {
    /// Heartbeats accepted from this agent in total.
    accepted: u64,
    /// The kept heartbeats, oldest first; never empty.
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Segment {
    /// Opened for reading and appending; shared so readers can finish after the lock is released (a
    /// segment deleted meanwhile stays readable through an open file).
    file: Arc<File>,
    size: u64,
    live: u64,
}

/// A heartbeat read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub received_ms: u64,
    pub accepted: u64,
    /// The heartbeat's JSON as the agent sent it.
    pub body: Vec<u8>,
}

/// The open log. One per store; shared behind the store's `Arc`.
pub struct HeartbeatLog {
    dir: PathBuf,
    segment_bytes: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for HeartbeatLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// By number; the last is the one appended to.
    segments: BTreeMap<u32, Segment>,
    agents: HashMap<Box<str>, AgentIndex>,
    /// Set when a write could not be undone or a sync failed: what the disk holds is then uncertain, so
    /// nothing more is written until a restart reads it again.
    failed: Option<String>,
}

impl HeartbeatLog {
    /// Opens the log in `dir` (created private to the hub's user), reading every segment to rebuild the index.
    pub fn open(dir: &Path) -> Result<HeartbeatLog, StoreError> {
        HeartbeatLog::open_with(dir, SEGMENT_BYTES)
    }

    fn open_with(dir: &Path, segment_bytes: u64) -> Result<HeartbeatLog, StoreError> {
        super::create_private_dir(dir)?;
        let numbers = segment::list(dir).map_err(|e| io_error(dir, e))?;
        let mut inner = Inner::default();
        for (i, &number) in numbers.iter().enumerate() {
            let newest = i + 1 == numbers.len();
            inner.replay_segment(dir, number, newest)?;
        }
        if inner.segments.is_empty() {
            inner.start_segment(dir, 1)?;
        }
        Ok(HeartbeatLog {
            dir: dir.to_owned(),
            segment_bytes,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends heartbeat `seq` of agent `id` unless its seq is not above the last one kept, then drops all but
    /// the newest `keep` from the index. For a seq already kept, `same` compares the stored body with this one.
    pub fn record(
        &self,
        id: &str,
        seq: u64,
        received_ms: u64,
        body: &[u8],
        keep: usize,
        same: impl FnOnce(&[u8]) -> Result<bool, StoreError>,
    ) -> Result<Recorded, StoreError> {
        let mut inner = self.lock();
        let accepted = match inner.agents.get(id) {
            Some(agent) => {
                let last_seq = agent.entries.back().map_or(0, |e| e.seq);
                if seq <= last_seq {
                    let kept = agent.entries.binary_search_by_key(&seq, |e| e.seq).ok();
                    let Some(place) = kept.map(|i| agent.entries[i].place) else {
                        return Ok(Recorded::NotNewer { last_seq });
                    };
                    let stored = inner.read(&self.dir, place)?;
                    return Ok(if same(&stored.body)? {
                        Recorded::Duplicate
                    } else {
                        Recorded::Changed
                    });
                }
                agent.accepted.saturating_add(1)
            }
            None => 1,
        };
        self.add(&mut inner, id, seq, received_ms, accepted, body)?;
        let Inner {
            agents, segments, ..
        } = &mut *inner;
        if let Some(agent) = agents.get_mut(id) {
            while agent.entries.len() > keep.max(1) {
                if let Some(old) = agent.entries.pop_front() {
                    forget_place(segments, old.place);
                }
            }
        }
        Ok(Recorded::Accepted { accepted })
    }

    /// Adds a heartbeat carried over from an older store: no seq check and no trimming; a seq already held
    /// is skipped, so running it twice after an interrupted migration adds nothing.
    pub fn import(
        &self,
        id: &str,
        seq: u64,
        received_ms: u64,
        accepted: u64,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(agent) = inner.agents.get_mut(id) {
            agent.accepted = agent.accepted.max(accepted);
            if agent.entries.binary_search_by_key(&seq, |e| e.seq).is_ok() {
                return Ok(());
            }
        }
        self.add(&mut inner, id, seq, received_ms, accepted, body)
    }

    /// Appends a heartbeat and indexes it in seq order (at the end, unless imported out of order).
    fn add(
        &self,
        inner: &mut Inner,
        id: &str,
        seq: u64,
        received_ms: u64,
        accepted: u64,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let heartbeat = Payload::Heartbeat {
            id,
            seq,
            received_ms,
            accepted,
            body,
        };
        let place = self.append(inner, &heartbeat)?;
        let agent = inner.agents.entry(id.into()).or_default();
        agent.accepted = agent.accepted.max(accepted);
        let at = agent.entries.partition_point(|e| e.seq < seq);
        agent.entries.insert(at, Entry { seq, place });
        Ok(())
    }

    /// Voids everything kept of `id` with a forget record, synced. Returns how many heartbeats were kept.
    pub fn forget(&self, id: &str) -> Result<Option<usize>, StoreError> {
        let mut inner = self.lock();
        if !inner.agents.contains_key(id) {
            return Ok(None);
        }
        let place = self.append(&mut inner, &Payload::Forget { id })?;
        let Inner {
            agents, segments, ..
        } = &mut *inner;
        // The forget record is needed on disk but is not live data: compaction drops it when its segment
        // is the oldest.
        forget_place(segments, place);
        let agent = agents.remove(id).unwrap_or_default();
        for entry in &agent.entries {
            forget_place(segments, entry.place);
        }
        drop(inner);
        self.sync()?;
        Ok(Some(agent.entries.len()))
    }

    fn append(&self, inner: &mut Inner, payload: &Payload<'_>) -> Result<Place, StoreError> {
        inner.append(&self.dir, self.segment_bytes, &segment::encode(payload))
    }

    /// Makes everything appended before this call durable. Appends may go on meanwhile.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (number, file) = {
            let inner = self.lock();
            if let Some(why) = &inner.failed {
                return Err(StoreError::LogFailed(why.clone()));
            }
            let (number, head) = inner.head();
            (number, head.file.clone())
        };
        file.sync_data().map_err(|e| {
            let error = io_error(&segment::path(&self.dir, number), e);
            self.lock().failed = Some(error.to_string());
            error
        })
    }

    /// Compacts the oldest segment when the log holds more dead bytes than live ones plus one segment, so the
    /// disk holds at most about twice the kept history. Returns whether it compacted.
    pub fn compact(&self) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let (size, live) = inner.sizes();
        if inner.segments.len() < 2 || size - live <= live + self.segment_bytes {
            return Ok(false);
        }
        let Some(oldest) = inner.segments.keys().next().copied() else {
            return Ok(false);
        };
        let path = segment::path(&self.dir, oldest);
        let mut reader = Reader::open(&path).map_err(|e| io_error(&path, e))?;
        let mut moved = 0u64;
        while let Next::Record {
            offset,
            len,
            payload,
        } = reader.next_record().map_err(|e| io_error(&path, e))?
        {
            let Some(Payload::Heartbeat { id, seq, .. }) = segment::decode(&payload) else {
                continue;
            };
            let old = Place {
                segment: oldest,
                len,
                offset,
            };
            let live = inner.agents.get(id).and_then(|agent| {
                let i = agent.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
                (agent.entries[i].place == old).then_some(i)
            });
            let Some(i) = live else { continue };
            let place = inner.append(&self.dir, self.segment_bytes, &segment::frame(&payload))?;
            if let Some(agent) = inner.agents.get_mut(id) {
                agent.entries[i].place = place;
            }
            moved += u64::from(len);
        }
        // The copies must be on disk before the only other copy goes. The lock is held throughout: appends
        // wait for one compaction (a segment's read and a sync), and no second compaction can interleave.
        let (number, head) = inner.head();
        if let Err(e) = head.file.sync_data() {
            let error = io_error(&segment::path(&self.dir, number), e);
            inner.failed = Some(error.to_string());
            return Err(error);
        }
        inner.segments.remove(&oldest);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        tracing::debug!(segment = %path.display(), moved, "compacted the heartbeat log");
        Ok(true)
    }

    /// Bytes on disk and bytes still pointed to by the index.
    #[cfg(test)]
    fn sizes(&self) -> (u64, u64) {
        self.lock().sizes()
    }
}

impl Inner {
    /// Bytes on disk and bytes still pointed to by the index, over all segments.
    fn sizes(&self) -> (u64, u64) {
        self.segments
            .values()
            .fold((0, 0), |(s, l), seg| (s + seg.size, l + seg.live))
    }

    fn head(&self) -> (u32, &Segment) {
        let (number, segment) = self
            .segments
            .last_key_value()
            .expect("the log always has a segment: open creates one");
        (*number, segment)
    }

    /// Appends a whole record to the newest segment, starting a new one when it is full.
    fn append(
        &mut self,
        dir: &Path,
        segment_bytes: u64,
        record: &[u8],
    ) -> Result<Place, StoreError> {
        if let Some(why) = &self.failed {
            return Err(StoreError::LogFailed(why.clone()));
        }
        let len = record.len() as u64;
        let (number, head) = self.head();
        if head.size > 0 && head.size + len > segment_bytes {
            // Older segments must be whole: sync this one before starting the next.
            if let Err(e) = head.file.sync_data() {
                let error = io_error(&segment::path(dir, number), e);
                self.failed = Some(error.to_string());
                return Err(error);
            }
            self.start_segment(dir, number + 1)?;
        }
        let (number, head) = self.head();
        let offset = head.size;
        if let Err(e) = (&*head.file).write_all(record) {
            let path = segment::path(dir, number);
            // Cut a partial write off, or the next record would follow garbage.
            if let Err(cut) = head.file.set_len(offset) {
                self.failed = Some(format!(
                    "a write to {} failed ({e}) and could not be undone ({cut})",
                    path.display()
                ));
            }
            return Err(io_error(&path, e));
        }
        let head = self
            .segments
            .get_mut(&number)
            .expect("the head was just used");
        head.size += len;
        head.live += len;
        Ok(Place {
            segment: number,
            len: len as u32,
            offset,
        })
    }

    fn start_segment(&mut self, dir: &Path, number: u32) -> Result<(), StoreError> {
        let file = open_segment(&segment::path(dir, number), true)?;
        // The new file's name must survive a crash as well as what is written into it.
        sync_dir(dir)?;
        self.segments.insert(
            number,
            Segment {
                file: Arc::new(file),
                size: 0,
                live: 0,
            },
        );
        Ok(())
    }

    fn locate(&self, place: Place) -> Result<Located, StoreError> {
        match self.segments.get(&place.segment) {
            Some(segment) => Ok(Located {
                file: segment.file.clone(),
                place,
            }),
            None => Err(StoreError::Corrupt {
                key: format!("segment {}", place.segment),
                message: "the index points into a segment that is gone".into(),
            }),
        }
    }

    fn read(&self, dir: &Path, place: Place) -> Result<Stored, StoreError> {
        self.locate(place)?.read(dir)
    }
}

fn forget_place(segments: &mut BTreeMap<u32, Segment>, place: Place) {
    if let Some(segment) = segments.get_mut(&place.segment) {
        segment.live = segment.live.saturating_sub(u64::from(place.len));
    }
}

fn open_segment(path: &Path, create: bool) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[path = "log_read.rs"]
mod read;
#[path = "replay.rs"]
mod replay;

use read::Located;
pub use read::{HistoryPage, Kept};

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
