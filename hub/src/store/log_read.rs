//! The heartbeat log's read side: an agent's newest heartbeat, every agent's, and its kept history a page at a
//! time.
//!
//! Reads hold the log's lock only to look up where records lie; the records themselves are read afterwards
//! through the segment's shared file handle, so a slow disk never holds up heartbeats being recorded, and a
//! segment compacted away meanwhile stays readable until the last reader lets go of it.
//!
//! History is handed out as [`Kept`] handles, one record each, so a caller can read, forward and drop one
//! heartbeat at a time: memory for a page is then one record, whatever the page's length.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::{self, Payload};
use super::{io_error, HeartbeatLog, Place, Stored};
use crate::store::StoreError;

/// One page of an agent's kept heartbeats, oldest first.
#[derive(Debug)]
pub struct HistoryPage {
    pub records: Vec<Kept>,
    /// The seq to pass as `before` for the next, older page; `None` when this page reaches the oldest kept.
    pub next_before: Option<u64>,
}

/// A kept heartbeat not read yet.
#[derive(Debug)]
pub struct Kept {
    pub seq: u64,
    located: Located,
    dir: PathBuf,
}

impl Kept {
    /// Reads and checks the record.
    pub fn read(&self) -> Result<Stored, StoreError> {
        self.located.read(&self.dir)
    }
}

impl HeartbeatLog {
    /// The newest heartbeat of `id`, with the agent's accepted count.
    pub fn latest(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let found = {
            let inner = self.lock();
            match inner.agents.get(id) {
                Some(agent) => match agent.entries.back() {
                    Some(entry) => Some((agent.accepted, inner.locate(entry.place)?)),
                    None => None,
                },
                None => None,
            }
        };
        found
            .map(|(accepted, place)| place.read(&self.dir).map(|s| Stored { accepted, ..s }))
            .transpose()
    }

    /// The newest heartbeat of every agent, by agent id.
    pub fn all_latest(&self) -> Result<Vec<(String, Stored)>, StoreError> {
        let mut found = {
            let inner = self.lock();
            let mut found = Vec::with_capacity(inner.agents.len());
            for (id, agent) in &inner.agents {
                if let Some(entry) = agent.entries.back() {
                    found.push((id.to_string(), agent.accepted, inner.locate(entry.place)?));
                }
            }
            found
        };
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        found
            .into_iter()
            .map(|(id, accepted, place)| {
                Ok((
                    id,
                    Stored {
                        accepted,
                        ..place.read(&self.dir)?
                    },
                ))
            })
            .collect()
    }

    /// The newest `keep` heartbeats of `id`, oldest first, read at once (see [`HeartbeatLog::page`]).
    pub fn history(&self, id: &str, keep: usize) -> Result<Vec<Stored>, StoreError> {
        self.page(id, None, keep)?
            .records
            .iter()
            .map(Kept::read)
            .collect()
    }

    /// Up to `limit` of the newest kept heartbeats of `id` whose seq is below `before` (all kept ones when
    /// `None`), oldest first. Following `next_before` from page to page yields every kept heartbeat once.
    pub fn page(
        &self,
        id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let inner = self.lock();
        let Some(agent) = inner.agents.get(id) else {
            return Ok(HistoryPage {
                records: Vec::new(),
                next_before: None,
            });
        };
        let end = match before {
            Some(before) => agent.entries.partition_point(|e| e.seq < before),
            None => agent.entries.len(),
        };
        let start = end.saturating_sub(limit);
        let records = agent
            .entries
            .range(start..end)
            .map(|e| {
                Ok(Kept {
                    seq: e.seq,
                    located: inner.locate(e.place)?,
                    dir: self.dir.clone(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next_before = (start > 0)
            .then(|| records.first().map(|k| k.seq))
            .flatten();
        Ok(HistoryPage {
            records,
            next_before,
        })
    }
}

/// A record's place with its segment's file, readable without the lock.
#[derive(Debug)]
pub(super) struct Located {
    pub(super) file: Arc<File>,
    pub(super) place: Place,
}

impl Located {
    /// Reads and checks the record.
    pub(super) fn read(&self, dir: &Path) -> Result<Stored, StoreError> {
        let place = self.place;
        let mut record = vec![0; place.len as usize];
        self.file
            .read_exact_at(&mut record, place.offset)
            .map_err(|e| io_error(&segment::path(dir, place.segment), e))?;
        match segment::check(&record).and_then(segment::decode) {
            Some(Payload::Heartbeat {
                seq,
                received_ms,
                accepted,
                body,
                ..
            }) => Ok(Stored {
                seq,
                received_ms,
                accepted,
                body: body.to_vec(),
            }),
            _ => Err(StoreError::Corrupt {
                key: format!(
                    "{} at byte {}",
                    segment::path(dir, place.segment).display(),
                    place.offset
                ),
                message: "the record there no longer matches its checksum".into(),
            }),
        }
    }
}
