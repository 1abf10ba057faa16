//! The heartbeat log's files: numbered segments of checksummed records, written only at their end.
//!
//! A record is `len: u32 | crc32: u32 | payload[len]` (little-endian), the CRC over the payload, so a record
//! torn by a crash or damaged on disk is recognised instead of being read as another agent's heartbeat.
//! The payload is `kind: u8 | id_len: u16 | agent id | ...`:
//! - kind 1, a heartbeat: `seq: u64 | received_ms: u64 | accepted: u64 | body`, the body being the JSON
//!   exactly as the agent sent it;
//! - kind 2, a forget: nothing more; it voids every earlier record of that agent.
//!
//! Segments are `<number, 8 digits>.log` in the log's folder; higher numbers are newer. Other files there
//! are ignored, so an operator may move a damaged segment aside.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Bytes before each payload: its length and its CRC.
pub const HEADER: usize = 8;

/// No payload is larger: a heartbeat body is capped far below this by the hub's `max_body`, so a larger
/// length field can only be damage, and reading it must not allocate gigabytes.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

const HEARTBEAT: u8 = 1;
const FORGET: u8 = 2;

/// A decoded payload, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Heartbeat {
        id: &'a str,
        seq: u64,
        received_ms: u64,
        accepted: u64,
        body: &'a [u8],
    },
    Forget {
        id: &'a str,
    },
}

/// The whole record (header and payload) for `payload`, ready to append.
pub fn encode(payload: &Payload<'_>) -> Vec<u8> {
    let (kind, id) = match payload {
        Payload::Heartbeat { id, .. } => (HEARTBEAT, *id),
        Payload::Forget { id } => (FORGET, *id),
    };
    let body_len = match payload {
        Payload::Heartbeat { body, .. } => 24 + body.len(),
        Payload::Forget { .. } => 0,
    };
    let mut record = Vec::with_capacity(HEADER + 3 + id.len() + body_len);
    record.extend_from_slice(&[0; HEADER]);
    record.push(kind);
    // Agent ids are validated to at most 253 characters long before they get here.
    record.extend_from_slice(&(id.len().min(u16::MAX as usize) as u16).to_le_bytes());
    record.extend_from_slice(id.as_bytes());
    if let Payload::Heartbeat {
        seq,
        received_ms,
        accepted,
        body,
        ..
    } = payload
    {
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&received_ms.to_le_bytes());
        record.extend_from_slice(&accepted.to_le_bytes());
        record.extend_from_slice(body);
    }
    let len = (record.len() - HEADER) as u32;
    let crc = crc32fast::hash(&record[HEADER..]);
    record[..4].copy_from_slice(&len.to_le_bytes());
    record[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    record
}

/// The whole record for a payload read back (compaction copies records this way).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// Decodes a payload whose CRC already matched; `None` when its structure is wrong anyway.
pub fn decode(payload: &[u8]) -> Option<Payload<'_>> {
    let (&kind, rest) = payload.split_first()?;
    let id_len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(rest.get(2..2 + id_len)?).ok()?;
    let rest = &rest[2 + id_len..];
    match kind {
        HEARTBEAT => {
            let word = |i: usize| -> Option<u64> {
                Some(u64::from_le_bytes(
                    rest.get(i * 8..i * 8 + 8)?.try_into().ok()?,
                ))
            };
            Some(Payload::Heartbeat {
                id,
                seq: word(0)?,
                received_ms: word(1)?,
                accepted: word(2)?,
                body: rest.get(24..)?,
            })
        }
        FORGET if rest.is_empty() => Some(Payload::Forget { id }),
        _ => None,
    }
}

/// Checks a record read at a known place: its header must match the payload that follows.
pub fn check(record: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(record.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(record.get(4..HEADER)?.try_into().ok()?);
    let payload = record.get(HEADER..)?;
    (payload.len() == len && crc32fast::hash(payload) == crc).then_some(payload)
}

/// The path of segment `number` in `dir`.
pub fn path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:08}.log"))
}

/// The segments in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log") {
            if stem.len() == 8 && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(number) = stem.parse() {
                    numbers.push(number);
                }
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// What [`Reader::next`] found.
#[derive(Debug)]
pub enum Next {
    /// A whole record starting at `offset`, `len` bytes with its header.
    Record {
        offset: u64,
        len: u32,
        payload: Vec<u8>,
    },
    /// The end of the file, exactly after a record.
    End,
    /// Bytes at `offset` that are not a whole record: a write cut short by a crash, or damage.
    Broken { offset: u64, why: &'static str },
}

/// Reads a segment's records in order.
pub struct Reader<R> {
    input: BufReader<R>,
    offset: u64,
}

impl Reader<File> {
    pub fn open(path: &Path) -> io::Result<Reader<File>> {
        Ok(Reader::new(File::open(path)?))
    }
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input: BufReader::with_capacity(256 * 1024, input),
            offset: 0,
        }
    }

    pub fn next_record(&mut self) -> io::Result<Next> {
        let offset = self.offset;
        let mut header = [0u8; HEADER];
        match read_full(&mut self.input, &mut header)? {
            0 => return Ok(Next::End),
            HEADER => {}
            _ => {
                return Ok(Next::Broken {
                    offset,
                    why: "a record header cut short",
                })
            }
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len as usize > MAX_PAYLOAD {
            return Ok(Next::Broken {
                offset,
                why: "a record length beyond any heartbeat",
            });
        }
        let mut payload = vec![0; len as usize];
        if read_full(&mut self.input, &mut payload)? != payload.len() {
            return Ok(Next::Broken {
                offset,
                why: "a record cut short",
            });
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(Next::Broken {
                offset,
                why: "a record whose checksum does not match",
            });
        }
        if decode(&payload).is_none() {
            return Ok(Next::Broken {
                offset,
                why: "a record of unknown layout",
            });
        }
        let total = HEADER as u32 + len;
        self.offset += u64::from(total);
        Ok(Next::Record {
            offset,
            len: total,
            payload,
        })
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(body: &[u8]) -> Payload<'_> {
        Payload::Heartbeat {
            id: "site-1",
            seq: 7,
            received_ms: 1_700_000_000_000,
            accepted: 3,
            body,
        }
    }

    #[test]
    fn records_round_trip_and_are_read_in_order() -> io::Result<()> {
        let body = br#"{"seq":7}"#;
        let mut file = encode(&heartbeat(body));
        let first_len = file.len();
        file.extend(encode(&Payload::Forget { id: "site-1" }));
        let mut reader = Reader::new(&file[..]);
        match reader.next_record()? {
            Next::Record {
                offset,
                len,
                payload,
            } => {
                assert_eq!((offset, len as usize), (0, first_len));
                assert_eq!(decode(&payload), Some(heartbeat(body)));
                assert_eq!(
                    check(&file[..first_len]).and_then(decode),
                    Some(heartbeat(body))
                );
            }
            other => panic!("{other:?}"),
        }
        match reader.next_record()? {
            Next::Record {
                offset, payload, ..
            } => {
                assert_eq!(offset as usize, first_len);
                assert_eq!(decode(&payload), Some(Payload::Forget { id: "site-1" }));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(reader.next_record()?, Next::End));
        Ok(())
    }

    #[test]
    fn torn_and_damaged_records_are_recognised() -> io::Result<()> {
        let record = encode(&heartbeat(b"{}"));
        // Every cut inside the record is a torn write.
        for cut in 1..record.len() {
            let next = Reader::new(&record[..cut]).next_record()?;
            assert!(matches!(next, Next::Broken { offset: 0, .. }), "{cut}");
        }
        // Any flipped payload bit fails the checksum.
        for at in HEADER..record.len() {
            let mut damaged = record.clone();
            damaged[at] ^= 0x10;
            let next = Reader::new(&damaged[..]).next_record()?;
            assert!(matches!(next, Next::Broken { .. }), "{at}");
            assert_eq!(check(&damaged), None);
        }
        // A huge length field is refused before anything is allocated for it.
        let mut huge = record.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Reader::new(&huge[..]).next_record()?,
            Next::Broken {
                why: "a record length beyond any heartbeat",
                ..
            }
        ));
        Ok(())
    }

    #[test]
    fn only_numbered_segments_are_listed() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        for name in [
            "00000002.log",
            "00000010.log",
            "00000001.log.damaged",
            "x.log",
            "1.log",
        ] {
            std::fs::write(dir.path().join(name), b"")?;
        }
        assert_eq!(list(dir.path())?, [2, 10]);
        assert_eq!(path(dir.path(), 3), dir.path().join("00000003.log"));
        Ok(())
    }
}
