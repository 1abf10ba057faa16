//! Rebuilding the heartbeat log's index at open, segment by segment, oldest first.

use std::sync::Arc;

use super::{forget_place, io_error, open_segment, Entry, Inner, Place, Segment};
use crate::store::segment::{self, Next, Payload, Reader};
use crate::store::StoreError;
use std::path::Path;

impl Inner {
    /// Reads one segment at open, rebuilding its part of the index.
    pub(super) fn replay_segment(
        &mut self,
        dir: &Path,
        number: u32,
        newest: bool,
    ) -> Result<(), StoreError> {
        let path = segment::path(dir, number);
        let file = open_segment(&path, false)?;
        let mut size = file.metadata().map_err(|e| io_error(&path, e))?.len();
        self.segments.insert(
            number,
            Segment {
                file: Arc::new(file),
                size,
                live: 0,
            },
        );
        let mut reader = Reader::open(&path).map_err(|e| io_error(&path, e))?;
        loop {
            match reader.next_record().map_err(|e| io_error(&path, e))? {
                Next::Record {
                    offset,
                    len,
                    payload,
                } => self.replay(number, offset, len, &payload),
                Next::End => break,
                Next::Broken { offset, why } if newest => {
                    // The end of a write the hub did not live to acknowledge.
                    let (_, head) = self.head();
                    head.file
                        .set_len(offset)
                        .and_then(|()| head.file.sync_data())
                        .map_err(|e| io_error(&path, e))?;
                    size = offset;
                    tracing::warn!(
                        "cut {why} off the end of {} (byte {offset}): a heartbeat being written when the hub stopped; its agent sends it again",
                        path.display()
                    );
                    break;
                }
                Next::Broken { offset, why } => {
                    tracing::error!(
                        "{} holds {why} at byte {offset}: the heartbeats after it in this file cannot be read and are skipped; the disk may be failing (check it), the file is removed once compaction reaches it",
                        path.display()
                    );
                    break;
                }
            }
        }
        if let Some(segment) = self.segments.get_mut(&number) {
            segment.size = size;
        }
        Ok(())
    }

    fn replay(&mut self, number: u32, offset: u64, len: u32, payload: &[u8]) {
        let place = Place {
            segment: number,
            len,
            offset,
        };
        match segment::decode(payload) {
            Some(Payload::Heartbeat {
                id, seq, accepted, ..
            }) => {
                if let Some(segment) = self.segments.get_mut(&number) {
                    segment.live += u64::from(len);
                }
                let agent = self.agents.entry(id.into()).or_default();
                agent.accepted = agent.accepted.max(accepted);
                match agent.entries.binary_search_by_key(&seq, |e| e.seq) {
                    // A copy made by an interrupted compaction: the later one stands.
                    Ok(i) => {
                        let old = std::mem::replace(&mut agent.entries[i].place, place);
                        forget_place(&mut self.segments, old);
                    }
                    Err(i) => agent.entries.insert(i, Entry { seq, place }),
                }
            }
            Some(Payload::Forget { id }) => {
                if let Some(agent) = self.agents.remove(id) {
                    for entry in agent.entries {
                        forget_place(&mut self.segments, entry.place);
                    }
                }
            }
            None => {}
        }
    }
}
