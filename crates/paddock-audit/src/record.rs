//! Record framing of the append-only files, and the scan that finds a torn tail.
//!
//! Owns: the on-disk record format and the rule for telling a torn tail (an unacknowledged
//! batch that a crash cut short) from damage inside acknowledged data.
//! Never: decides to truncate by itself; it reports, the writer decides.
//!
//! A file is a 16-byte magic header followed by records:
//!
//! ```text
//! offset  size  field
//! 0       2     magic "PA"
//! 2       1     flags: bit 0 = last record of its batch (group commit)
//! 3       1     reserved, 0
//! 4       4     payload length, u32 little-endian
//! 8       4     CRC-32 (IEEE) of bytes 2..8 and the payload, little-endian
//! 12      len   payload
//! ```
//!
//! Torn-tail rule: the writer fsyncs batch k before it writes batch k+1, so after a crash
//! only the last batch can be incomplete. When a record fails to parse at offset `o`, the
//! scan looks past `o` for intact records; if it finds a batch end followed by yet another
//! intact record, a later batch was written after the damaged one, so the damaged one was
//! acknowledged and the damage is corruption, not a torn write.

use std::io::{self, Read};

use crate::entry::MAX_DATA_LEN;

pub(crate) const FILE_HEADER_LEN: u64 = 16;
pub(crate) const ENTRIES_MAGIC: &[u8; 16] = b"PADDOCK-AUDIT-E1";
pub(crate) const CHECKPOINTS_MAGIC: &[u8; 16] = b"PADDOCK-AUDIT-C1";
pub(crate) const REC_MAGIC: [u8; 2] = *b"PA";
pub(crate) const REC_HEADER: usize = 12;
pub(crate) const FLAG_BATCH_END: u8 = 0x01;
pub(crate) const MAX_PAYLOAD: usize = MAX_DATA_LEN + 64 * 1024;

/// Starts a record at the end of `out`; returns the start to pass to [`finish_record`].
pub(crate) fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; REC_HEADER]);
    start
}

/// Fills in the header of the record started at `start`, whose payload is the rest of `out`.
pub(crate) fn finish_record(out: &mut [u8], start: usize, flags: u8) {
    let len = (out.len() - start - REC_HEADER) as u32;
    out[start..start + 2].copy_from_slice(&REC_MAGIC);
    out[start + 2] = flags;
    out[start + 3] = 0;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = record_crc(&out[start + 2..start + 8], &out[start + REC_HEADER..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Sets or clears the batch-end flag of a finished record (and fixes its CRC).
pub(crate) fn set_batch_end(out: &mut [u8], start: usize) {
    out[start + 2] |= FLAG_BATCH_END;
    let crc = record_crc(&out[start + 2..start + 8], &out[start + REC_HEADER..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn record_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// One step of a scan.
#[derive(Debug)]
pub(crate) enum Step {
    /// An intact record; its payload is in the reader's buffer.
    Record { offset: u64 },
    /// Clean end of file.
    End,
    /// The record at `offset` is incomplete or damaged.
    Bad { offset: u64, reason: String },
}

/// Reads records sequentially.
pub(crate) struct RecordReader<R> {
    r: R,
    offset: u64,
    pub(crate) payload: Vec<u8>,
}

impl<R: Read> RecordReader<R> {
    pub(crate) fn new(r: R, offset: u64) -> Self {
        Self {
            r,
            offset,
            payload: Vec::new(),
        }
    }

    /// Offset just past the last intact record.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    pub(crate) fn next(&mut self) -> io::Result<Step> {
        let offset = self.offset;
        let mut h = [0u8; REC_HEADER];
        let got = read_full(&mut self.r, &mut h)?;
        if got == 0 {
            return Ok(Step::End);
        }
        if got < REC_HEADER {
            return Ok(Step::Bad {
                offset,
                reason: format!("partial record header ({got} of {REC_HEADER} bytes)"),
            });
        }
        if h[0..2] != REC_MAGIC {
            return Ok(Step::Bad {
                offset,
                reason: "no record marker".into(),
            });
        }
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if len > MAX_PAYLOAD {
            return Ok(Step::Bad {
                offset,
                reason: format!("implausible record length {len}"),
            });
        }
        self.payload.resize(len, 0);
        let got = read_full(&mut self.r, &mut self.payload)?;
        if got < len {
            return Ok(Step::Bad {
                offset,
                reason: format!("partial record ({got} of {len} payload bytes)"),
            });
        }
        let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if record_crc(&h[2..8], &self.payload) != crc {
            return Ok(Step::Bad {
                offset,
                reason: "record CRC mismatch".into(),
            });
        }
        self.offset += (REC_HEADER + len) as u64;
        Ok(Step::Record { offset })
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What lies after a damaged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TailInfo {
    /// Intact records found after the damage.
    pub(crate) intact_after: usize,
    /// A batch end followed by another intact record: a later batch exists, so the damaged
    /// batch had been acknowledged.
    pub(crate) later_batch: bool,
}

/// Looks for intact records in `tail` (the bytes after a damaged record's first byte).
pub(crate) fn analyze_tail(tail: &[u8]) -> TailInfo {
    let mut info = TailInfo::default();
    let mut seen_batch_end = false;
    let mut p = 1;
    while p + REC_HEADER <= tail.len() {
        if tail[p..p + 2] != REC_MAGIC {
            p += 1;
            continue;
        }
        let h = &tail[p..p + REC_HEADER];
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let end = p + REC_HEADER + len;
        if len > MAX_PAYLOAD || end > tail.len() {
            p += 1;
            continue;
        }
        let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if record_crc(&h[2..8], &tail[p + REC_HEADER..end]) != crc {
            p += 1;
            continue;
        }
        if seen_batch_end {
            info.later_batch = true;
        }
        info.intact_after += 1;
        if h[2] & FLAG_BATCH_END != 0 {
            seen_batch_end = true;
        }
        p = end;
    }
    info
}
