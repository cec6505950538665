//! On-disk audit log: the single writer ([`AuditLog`]) and a read-only view ([`LogReader`]).
//!
//! Owns: the log directory and its files, group commit, crash recovery, checkpoint
//! scheduling, reading entries back, proofs and bundle export.
//! Never: rewrites an acknowledged entry (a batch is acknowledged once `append_batch`
//! returned `Ok`, i.e. after its single fsync); truncates anything but a torn tail; lets two
//! writers open one log (an exclusive lock on `entries.log`); writes from a [`LogReader`].
//!
//! Directory layout:
//!
//! ```text
//! meta.json        {format, log_id, public_key}: written once, last, at creation
//! entries.log      "PADDOCK-AUDIT-E1" + records, payload = canonical entry encoding
//! checkpoints.log  "PADDOCK-AUDIT-C1" + records, payload = JSON of a signed checkpoint
//! leaves.hash      32-byte leaf hash per entry (derived; fsynced before each checkpoint)
//! ```
//!
//! Recovery on open: scan `checkpoints.log` and `entries.log` record by record (CRC, seq =
//! record index). A damaged last batch (torn write) is truncated; damage followed by a
//! later batch is refused as corruption (see [`crate::record`]). Leaf hashes are taken from
//! `leaves.hash` up to the last checkpoint once they reproduce every signed root, and
//! re-hashed from `entries.log` beyond it (or everywhere, if they do not).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bundle::{BUNDLE_FORMAT, Bundle};
use crate::checkpoint::Checkpoint;
use crate::entry::{EncodedHeader, Entry, NewEntry, encode_fields, now_ms};
use crate::error::{AuditError, Result};
use crate::hash::{HASH_LEN, Hash, leaf_hash};
use crate::keys::{PublicKeyInfo, Signer};
use crate::merkle::{ConsistencyProof, InclusionProof, MerkleTree};
use crate::record::{
    self, CHECKPOINTS_MAGIC, ENTRIES_MAGIC, FILE_HEADER_LEN, FLAG_BATCH_END, REC_HEADER,
    RecordReader, Step,
};

/// Entries file name.
pub const ENTRIES_FILE: &str = "entries.log";
/// Checkpoints file name.
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";
/// Leaf-hash file name.
pub const LEAVES_FILE: &str = "leaves.hash";
/// Metadata file name.
pub const META_FILE: &str = "meta.json";
const META_FORMAT: &str = "paddock-audit-log/1";

/// When the writer signs a checkpoint on its own ([`AuditLog::maybe_checkpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Sign once this many entries are not covered by a checkpoint (N).
    pub checkpoint_every: u64,
    /// Sign once the oldest uncovered entry has waited this long (T).
    pub checkpoint_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

/// What opening a log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The directory was empty and a new log was created.
    pub created: bool,
    /// Intact entries.
    pub entries: u64,
    /// Intact checkpoints.
    pub checkpoints: usize,
    /// A torn tail of `entries.log` (truncated by the writer, ignored by a reader).
    pub entries_tail: Option<TornTail>,
    /// A torn tail of `checkpoints.log`.
    pub checkpoints_tail: Option<TornTail>,
    /// Leaf hashes recomputed from entries (the rest came from `leaves.hash`).
    pub rehashed: u64,
}

/// An incomplete last batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the damaged record starts (the file is cut here).
    pub offset: u64,
    /// Bytes after `offset`.
    pub bytes: u64,
    /// What was wrong with the record.
    pub reason: String,
    /// Intact records found after the damage, all within the same (unacknowledged) batch.
    pub intact_records_after: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format: String,
    log_id: String,
    public_key: PublicKeyInfo,
}

fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join(META_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AuditError::NotALog {
                dir: dir.to_owned(),
                reason: format!("no {META_FILE}"),
            });
        }
        Err(e) => return Err(AuditError::io("read", &path, e)),
    };
    let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| AuditError::NotALog {
        dir: dir.to_owned(),
        reason: format!("{META_FILE}: {e}"),
    })?;
    if meta.format != META_FORMAT {
        return Err(AuditError::NotALog {
            dir: dir.to_owned(),
            reason: format!(
                "{META_FILE} has format {:?}, this build reads {META_FORMAT:?}",
                meta.format
            ),
        });
    }
    Ok(meta)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|e| AuditError::io("write", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("fsync directory", dir, e))
}

/// Everything a scan of the directory established.
struct Loaded {
    meta: Meta,
    offsets: Vec<u64>,
    entries_end: u64,
    entries_tail: Option<TornTail>,
    tree: MerkleTree,
    checkpoints: Vec<Checkpoint>,
    checkpoints_end: u64,
    checkpoints_tail: Option<TornTail>,
    /// Leaf hashes taken from `leaves.hash` (a prefix of it that is known good).
    leaves_trusted: u64,
}

fn open_with_magic(path: &Path, magic: &[u8; 16]) -> Result<(BufReader<File>, u64)> {
    let f = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| AuditError::io("stat", path, e))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut head = [0u8; 16];
    if r.read_exact(&mut head).is_err() || &head != magic {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: format!("missing file header {:?}", String::from_utf8_lossy(magic)),
        });
    }
    Ok((r, len))
}

/// Decides what a damaged record at `offset` means: a torn tail (returned) or corruption.
fn classify_damage(path: &Path, offset: u64, file_len: u64, reason: String) -> Result<TornTail> {
    let f = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
    let mut tail = vec![0u8; (file_len - offset) as usize];
    f.read_exact_at(&mut tail, offset)
        .map_err(|e| AuditError::io("read", path, e))?;
    let info = record::analyze_tail(&tail);
    if info.later_batch {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: format!(
                "{reason}, and {} intact records follow, including a later batch: acknowledged data is damaged",
                info.intact_after
            ),
        });
    }
    Ok(TornTail {
        offset,
        bytes: file_len - offset,
        reason,
        intact_records_after: info.intact_after,
    })
}

fn scan_checkpoints(dir: &Path, meta: &Meta) -> Result<(Vec<Checkpoint>, u64, Option<TornTail>)> {
    let path = dir.join(CHECKPOINTS_FILE);
    let (r, len) = open_with_magic(&path, CHECKPOINTS_MAGIC)?;
    let mut rr = RecordReader::new(r, FILE_HEADER_LEN);
    let mut out = Vec::new();
    loop {
        match rr.next().map_err(|e| AuditError::io("read", &path, e))? {
            Step::Record { offset, .. } => {
                let cp: Checkpoint =
                    serde_json::from_slice(&rr.payload).map_err(|e| AuditError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!("checkpoint {} is intact but unreadable: {e}", out.len()),
                    })?;
                if cp.log_id != meta.log_id {
                    return Err(AuditError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!("checkpoint {} belongs to log {:?}", out.len(), cp.log_id),
                    });
                }
                out.push(cp);
            }
            Step::End => return Ok((out, rr.offset(), None)),
            Step::Bad { offset, reason } => {
                let torn = classify_damage(&path, offset, len, reason)?;
                return Ok((out, offset, Some(torn)));
            }
        }
    }
}

struct EntryScan {
    offsets: Vec<u64>,
    tree: MerkleTree,
    end: u64,
    tail: Option<TornTail>,
}

fn scan_entries(dir: &Path, trusted_leaves: &[u8]) -> Result<EntryScan> {
    let path = dir.join(ENTRIES_FILE);
    let (r, len) = open_with_magic(&path, ENTRIES_MAGIC)?;
    let trusted = (trusted_leaves.len() / HASH_LEN) as u64;
    let mut rr = RecordReader::new(r, FILE_HEADER_LEN);
    let mut scan = EntryScan {
        offsets: Vec::new(),
        tree: MerkleTree::new(),
        end: FILE_HEADER_LEN,
        tail: None,
    };
    loop {
        match rr.next().map_err(|e| AuditError::io("read", &path, e))? {
            Step::Record { offset, .. } => {
                let i = scan.offsets.len() as u64;
                let h = EncodedHeader::parse(&rr.payload).map_err(|e| AuditError::Corrupt {
                    path: path.clone(),
                    offset,
                    reason: format!("record {i} is intact but not an entry: {e}"),
                })?;
                if h.seq != i {
                    return Err(AuditError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!("record {i} carries seq {}", h.seq),
                    });
                }
                let leaf = if i < trusted {
                    let at = i as usize * HASH_LEN;
                    let mut b = [0u8; HASH_LEN];
                    b.copy_from_slice(&trusted_leaves[at..at + HASH_LEN]);
                    Hash(b)
                } else {
                    leaf_hash(&rr.payload)
                };
                scan.tree.push(leaf);
                scan.offsets.push(offset);
            }
            Step::End => {
                scan.end = rr.offset();
                return Ok(scan);
            }
            Step::Bad { offset, reason } => {
                scan.tail = Some(classify_damage(&path, offset, len, reason)?);
                scan.end = offset;
                return Ok(scan);
            }
        }
    }
}

fn first_root_mismatch(tree: &MerkleTree, checkpoints: &[Checkpoint]) -> Option<usize> {
    checkpoints
        .iter()
        .position(|cp| tree.root_at(cp.tree_size).ok() != Some(cp.root_hash))
}

fn load(dir: &Path) -> Result<(Loaded, u64)> {
    let meta = read_meta(dir)?;
    let (checkpoints, checkpoints_end, checkpoints_tail) = scan_checkpoints(dir, &meta)?;
    let signed = checkpoints.last().map_or(0, |c| c.tree_size);
    let leaves_path = dir.join(LEAVES_FILE);
    let leaves = match fs::read(&leaves_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(AuditError::io("read", &leaves_path, e)),
    };
    let trusted = ((leaves.len() / HASH_LEN) as u64).min(signed);
    let mut scan = scan_entries(dir, &leaves[..trusted as usize * HASH_LEN])?;
    let mut leaves_trusted = trusted;
    let entries_path = dir.join(ENTRIES_FILE);
    if scan.tree.len() < signed {
        return Err(AuditError::Corrupt {
            path: entries_path,
            offset: scan.end,
            reason: format!(
                "checkpoint {} covers {signed} entries but only {} are intact",
                checkpoints.len() - 1,
                scan.tree.len()
            ),
        });
    }
    if first_root_mismatch(&scan.tree, &checkpoints).is_some() && trusted > 0 {
        // leaves.hash disagrees with the signed roots: recompute every leaf from entries.
        scan = scan_entries(dir, &[])?;
        leaves_trusted = 0;
    }
    if let Some(k) = first_root_mismatch(&scan.tree, &checkpoints) {
        return Err(AuditError::Corrupt {
            path: entries_path,
            offset: FILE_HEADER_LEN,
            reason: format!(
                "entries do not reproduce the root signed in checkpoint {k} (tree size {})",
                checkpoints[k].tree_size
            ),
        });
    }
    let rehashed = scan.tree.len() - leaves_trusted;
    Ok((
        Loaded {
            meta,
            offsets: scan.offsets,
            entries_end: scan.end,
            entries_tail: scan.tail,
            tree: scan.tree,
            checkpoints,
            checkpoints_end,
            checkpoints_tail,
            leaves_trusted,
        },
        rehashed,
    ))
}

/// A read-only view of a log directory: entries, checkpoints, proofs, export.
/// Opening it never modifies the directory; a torn tail is ignored, not truncated.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    meta: Meta,
    entries_file: File,
    entries_end: u64,
    offsets: Vec<u64>,
    tree: MerkleTree,
    checkpoints: Vec<Checkpoint>,
}

impl LogReader {
    /// Opens a log directory for reading (no daemon needed, no lock taken).
    pub fn open(dir: impl AsRef<Path>) -> Result<(LogReader, Recovery)> {
        let dir = dir.as_ref();
        let (l, rehashed) = load(dir)?;
        let recovery = Recovery {
            created: false,
            entries: l.tree.len(),
            checkpoints: l.checkpoints.len(),
            entries_tail: l.entries_tail.clone(),
            checkpoints_tail: l.checkpoints_tail.clone(),
            rehashed,
        };
        let path = dir.join(ENTRIES_FILE);
        let entries_file = File::open(&path).map_err(|e| AuditError::io("open", &path, e))?;
        Ok((LogReader::from_loaded(dir, l, entries_file), recovery))
    }

    fn from_loaded(dir: &Path, l: Loaded, entries_file: File) -> Self {
        LogReader {
            dir: dir.to_owned(),
            meta: l.meta,
            entries_file,
            entries_end: l.entries_end,
            offsets: l.offsets,
            tree: l.tree,
            checkpoints: l.checkpoints,
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log id (run id, or `daemon`).
    pub fn log_id(&self) -> &str {
        &self.meta.log_id
    }

    /// The public key the log's checkpoints are signed with.
    pub fn public_key(&self) -> &PublicKeyInfo {
        &self.meta.public_key
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    /// True when the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Current root hash (of all entries, signed or not).
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Root hash of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        Ok(self.tree.root_at(size)?)
    }

    /// Leaf hash of entry `seq`.
    pub fn leaf_hash(&self, seq: u64) -> Option<Hash> {
        self.tree.leaf(seq)
    }

    /// Signed checkpoints, oldest first.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// Entries `range` (seq numbers), decoded.
    pub fn read_entries(&self, range: Range<u64>) -> Result<Vec<Entry>> {
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(AuditError::Proof(
                crate::merkle::ProofError::SizeBeyondTree {
                    size: range.end,
                    len,
                },
            ));
        }
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut start = range.start;
        let mut buf = Vec::new();
        while start < range.end {
            // Read in slices of at most 4096 entries: one pread each.
            let end = (start + 4096).min(range.end);
            let from = self.offsets[start as usize];
            let to = self
                .offsets
                .get(end as usize)
                .copied()
                .unwrap_or(self.entries_end);
            buf.resize((to - from) as usize, 0);
            let path = || self.dir.join(ENTRIES_FILE);
            self.entries_file
                .read_exact_at(&mut buf, from)
                .map_err(|e| AuditError::io("read", &path(), e))?;
            for seq in start..end {
                let a = (self.offsets[seq as usize] - from) as usize;
                let len =
                    u32::from_le_bytes([buf[a + 4], buf[a + 5], buf[a + 6], buf[a + 7]]) as usize;
                let payload = &buf[a + REC_HEADER..a + REC_HEADER + len];
                out.push(
                    Entry::decode(payload)
                        .map_err(|source| AuditError::Entry { index: seq, source })?,
                );
            }
            start = end;
        }
        Ok(out)
    }

    /// Entry `seq`.
    pub fn read_entry(&self, seq: u64) -> Result<Entry> {
        Ok(self.read_entries(seq..seq + 1)?.remove(0))
    }

    /// Inclusion proof of entry `seq` in the tree of `tree_size` entries (e.g. the size of
    /// a signed checkpoint).
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof> {
        Ok(self.tree.inclusion_proof(seq, tree_size)?)
    }

    /// Consistency proof between tree sizes `old_size <= new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof> {
        Ok(self.tree.consistency_proof(old_size, new_size)?)
    }

    /// Everything a third party needs to verify the log offline.
    pub fn export_bundle(&self) -> Result<Bundle> {
        Ok(Bundle {
            format: BUNDLE_FORMAT.to_owned(),
            log_id: self.meta.log_id.clone(),
            public_key: self.meta.public_key.clone(),
            checkpoints: self.checkpoints.clone(),
            entries: self.read_entries(0..self.len())?,
        })
    }
}

/// The single writer of one audit log.
#[derive(Debug)]
pub struct AuditLog {
    view: LogReader,
    signer: Arc<Signer>,
    config: LogConfig,
    entries_w: File,
    checkpoints_w: File,
    checkpoints_end: u64,
    leaves_w: File,
    leaves_written: u64,
    pending_since: Option<u64>,
    poisoned: Option<String>,
    buf: Vec<u8>,
    new_leaves: Vec<Hash>,
}

impl AuditLog {
    /// Opens the log in `dir` (creating it, mode 0700, when absent), recovering from a crash:
    /// a torn tail is truncated, leaf hashes are rebuilt. Takes an exclusive lock: one writer.
    ///
    /// `log_id` must match the one the log was created with; `signer` must be the key the
    /// log was started with.
    pub fn open(
        dir: impl AsRef<Path>,
        log_id: &str,
        signer: Arc<Signer>,
        config: LogConfig,
    ) -> Result<(AuditLog, Recovery)> {
        let dir = dir.as_ref();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AuditError::io("create log directory", dir, e))?;
        let created = !dir.join(META_FILE).exists();
        if created {
            init_dir(dir, log_id, &signer)?;
        }
        let meta = read_meta(dir)?;
        if meta.log_id != log_id {
            return Err(AuditError::LogIdMismatch {
                dir: dir.to_owned(),
                expected: log_id.to_owned(),
                found: meta.log_id,
            });
        }
        if meta.public_key.key_id != signer.key_id() {
            return Err(AuditError::KeyChanged {
                dir: dir.to_owned(),
                log_key: meta.public_key.key_id,
                signer_key: signer.key_id(),
            });
        }
        let open_rw = |name: &str| {
            let p = dir.join(name);
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&p)
                .map_err(|e| AuditError::io("open", &p, e))
        };
        let entries_w = open_rw(ENTRIES_FILE)?;
        match entries_w.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(AuditError::io("lock", &dir.join(ENTRIES_FILE), e));
            }
        }
        let (l, rehashed) = load(dir)?;
        let recovery = Recovery {
            created,
            entries: l.tree.len(),
            checkpoints: l.checkpoints.len(),
            entries_tail: l.entries_tail.clone(),
            checkpoints_tail: l.checkpoints_tail.clone(),
            rehashed,
        };
        let checkpoints_w = open_rw(CHECKPOINTS_FILE)?;
        let leaves_w = open_rw(LEAVES_FILE)?;
        // Repair: cut torn tails, make leaves.hash exactly the tree's leaves.
        let cut = |f: &File, name: &str, len: u64| -> Result<()> {
            let p = dir.join(name);
            f.set_len(len)
                .and_then(|_| f.sync_all())
                .map_err(|e| AuditError::io("truncate torn tail of", &p, e))
        };
        if l.entries_tail.is_some() {
            cut(&entries_w, ENTRIES_FILE, l.entries_end)?;
        }
        if l.checkpoints_tail.is_some() {
            cut(&checkpoints_w, CHECKPOINTS_FILE, l.checkpoints_end)?;
        }
        let keep = l.leaves_trusted;
        let leaves_path = dir.join(LEAVES_FILE);
        let rest: Vec<u8> = l.tree.leaves()[keep as usize..]
            .iter()
            .flat_map(|h| h.0)
            .collect();
        // Only touch the file when it differs from the tree (a fresh or clean log needs no
        // write and no fsync: opening is on the path of every run's creation).
        let have_len = leaves_w
            .metadata()
            .map_err(|e| AuditError::io("stat", &leaves_path, e))?
            .len();
        if !rest.is_empty() || have_len != keep * HASH_LEN as u64 {
            leaves_w
                .set_len(keep * HASH_LEN as u64)
                .and_then(|_| leaves_w.write_all_at(&rest, keep * HASH_LEN as u64))
                .and_then(|_| leaves_w.sync_data())
                .map_err(|e| AuditError::io("rewrite", &leaves_path, e))?;
        }
        let signed = l.checkpoints.last().map_or(0, |c| c.tree_size);
        let pending_since = (l.tree.len() > signed).then(now_ms);
        let checkpoints_end = l.checkpoints_end;
        let reader_file = File::open(dir.join(ENTRIES_FILE))
            .map_err(|e| AuditError::io("open", &dir.join(ENTRIES_FILE), e))?;
        let view = LogReader::from_loaded(dir, l, reader_file);
        let leaves_written = view.len();
        Ok((
            AuditLog {
                view,
                signer,
                config,
                entries_w,
                checkpoints_w,
                checkpoints_end,
                leaves_w,
                leaves_written,
                pending_since,
                poisoned: None,
                buf: Vec::new(),
                new_leaves: Vec::new(),
            },
            recovery,
        ))
    }

    /// The read side: entries, checkpoints, proofs, export.
    pub fn reader(&self) -> &LogReader {
        &self.view
    }

    /// Number of entries (all acknowledged).
    pub fn len(&self) -> u64 {
        self.view.len()
    }

    /// True when the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.view.is_empty()
    }

    /// The checkpoint configuration.
    pub fn config(&self) -> LogConfig {
        self.config
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(AuditError::Poisoned {
                dir: self.view.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends a batch with one write and one fsync (group commit) and returns the seq
    /// numbers it was given. When this returns `Ok`, every entry of the batch is durable
    /// (acknowledged); on `Err`, none of them is part of the log.
    pub fn append_batch(&mut self, batch: &[NewEntry]) -> Result<Range<u64>> {
        self.check_poisoned()?;
        let first = self.len();
        if batch.is_empty() {
            return Ok(first..first);
        }
        let base = self.view.entries_end;
        self.buf.clear();
        self.new_leaves.clear();
        let mut offsets = Vec::with_capacity(batch.len());
        let mut last = 0;
        for (i, e) in batch.iter().enumerate() {
            let seq = first + i as u64;
            let start = record::begin_record(&mut self.buf);
            encode_fields(seq, e.ts, &e.kind, &e.data, &mut self.buf)
                .map_err(|source| AuditError::Entry { index: seq, source })?;
            record::finish_record(&mut self.buf, start, 0);
            self.new_leaves
                .push(leaf_hash(&self.buf[start + REC_HEADER..]));
            offsets.push(base + start as u64);
            last = start;
        }
        record::set_batch_end(&mut self.buf, last);
        let path = self.view.dir.join(ENTRIES_FILE);
        if let Err(e) = self
            .entries_w
            .write_all_at(&self.buf, base)
            .and_then(|_| self.entries_w.sync_data())
        {
            // Not acknowledged. Try to cut the partial batch; either way refuse further
            // writes (after a failed fsync the page cache can no longer be trusted).
            let _ = self.entries_w.set_len(base);
            self.poisoned = Some(format!("writing {}: {e}", path.display()));
            return Err(AuditError::io("append to", &path, e));
        }
        self.view.entries_end = base + self.buf.len() as u64;
        self.view.offsets.extend_from_slice(&offsets);
        for h in &self.new_leaves {
            self.view.tree.push(*h);
        }
        // leaves.hash is derived data: a failure here is retried at the next checkpoint.
        let _ = self.write_leaves();
        if self.pending_since.is_none() {
            self.pending_since = Some(now_ms());
        }
        Ok(first..first + batch.len() as u64)
    }

    /// Appends one entry (a batch of one: one fsync).
    pub fn append(&mut self, entry: NewEntry) -> Result<u64> {
        Ok(self.append_batch(std::slice::from_ref(&entry))?.start)
    }

    fn write_leaves(&mut self) -> std::io::Result<()> {
        let from = self.leaves_written;
        let bytes: Vec<u8> = self.view.tree.leaves()[from as usize..]
            .iter()
            .flat_map(|h| h.0)
            .collect();
        self.leaves_w.write_all_at(&bytes, from * HASH_LEN as u64)?;
        self.leaves_written = self.view.tree.len();
        Ok(())
    }

    /// Signs a checkpoint of the whole log if N entries or T time are due (see
    /// [`LogConfig`]); `now` is milliseconds since the Unix epoch. Does nothing when every
    /// entry is already covered.
    pub fn maybe_checkpoint(&mut self, now: u64) -> Result<Option<Checkpoint>> {
        let signed = self.view.checkpoints.last().map_or(0, |c| c.tree_size);
        let pending = self.len() - signed;
        if pending == 0 {
            return Ok(None);
        }
        let since = self.pending_since.unwrap_or(now);
        let interval = self.config.checkpoint_interval.as_millis() as u64;
        if pending >= self.config.checkpoint_every || now.saturating_sub(since) >= interval {
            return self.checkpoint_at(now).map(Some);
        }
        Ok(None)
    }

    /// Signs and durably writes a checkpoint of the whole log now (e.g. at run end).
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        self.checkpoint_at(now_ms())
    }

    /// Signs a checkpoint with time `now` (raised to one past the previous checkpoint's
    /// time if needed: checkpoint times strictly increase).
    pub fn checkpoint_at(&mut self, now: u64) -> Result<Checkpoint> {
        self.check_poisoned()?;
        let leaves_path = self.view.dir.join(LEAVES_FILE);
        self.write_leaves()
            .and_then(|_| self.leaves_w.sync_data())
            .map_err(|e| AuditError::io("write", &leaves_path, e))?;
        let time = match self.view.checkpoints.last() {
            Some(prev) if now <= prev.time => prev.time + 1,
            _ => now,
        };
        let cp = Checkpoint::sign(
            &self.signer,
            &self.view.meta.log_id,
            self.len(),
            self.view.tree.root(),
            time,
        );
        let mut buf = Vec::new();
        let start = record::begin_record(&mut buf);
        serde_json::to_writer(&mut buf, &cp).map_err(|e| AuditError::Corrupt {
            path: self.view.dir.join(CHECKPOINTS_FILE),
            offset: self.checkpoints_end,
            reason: format!("cannot serialise checkpoint: {e}"),
        })?;
        record::finish_record(&mut buf, start, FLAG_BATCH_END);
        let path = self.view.dir.join(CHECKPOINTS_FILE);
        let base = self.checkpoints_end;
        if let Err(e) = self
            .checkpoints_w
            .write_all_at(&buf, base)
            .and_then(|_| self.checkpoints_w.sync_data())
        {
            let _ = self.checkpoints_w.set_len(base);
            self.poisoned = Some(format!("writing {}: {e}", path.display()));
            return Err(AuditError::io("append to", &path, e));
        }
        self.checkpoints_end = base + buf.len() as u64;
        self.view.checkpoints.push(cp.clone());
        self.pending_since = None;
        Ok(cp)
    }

    /// Signed checkpoints, oldest first.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        self.view.checkpoints()
    }

    /// The public key of the signer.
    pub fn public_key(&self) -> &PublicKeyInfo {
        self.signer.public_key()
    }

    /// Current root hash (of all entries).
    pub fn root(&self) -> Hash {
        self.view.root()
    }

    /// Inclusion proof of entry `seq` in the tree of `tree_size` entries.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof> {
        self.view.inclusion_proof(seq, tree_size)
    }

    /// Consistency proof between tree sizes `old_size <= new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof> {
        self.view.consistency_proof(old_size, new_size)
    }

    /// Export bundle (entries, checkpoints, public key). Call [`AuditLog::checkpoint`] first
    /// so that every entry is covered by a signed checkpoint.
    pub fn export_bundle(&self) -> Result<Bundle> {
        self.view.export_bundle()
    }
}

fn init_dir(dir: &Path, log_id: &str, signer: &Signer) -> Result<()> {
    // Data files first, meta.json last: a directory with meta.json is complete.
    write_atomic(&dir.join(ENTRIES_FILE), ENTRIES_MAGIC)?;
    write_atomic(&dir.join(CHECKPOINTS_FILE), CHECKPOINTS_MAGIC)?;
    write_atomic(&dir.join(LEAVES_FILE), b"")?;
    let meta = Meta {
        format: META_FORMAT.to_owned(),
        log_id: log_id.to_owned(),
        public_key: signer.public_key().clone(),
    };
    let bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    write_atomic(&dir.join(META_FILE), &bytes)?;
    sync_dir(dir)
}
