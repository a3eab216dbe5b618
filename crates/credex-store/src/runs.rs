//! Sorted run files of the view's indexes (record, subject, due date): immutable files of
//! key → value-or-tombstone entries in ascending key order, each written once (a memtable
//! flush, or a [`merge`] of older runs), read by point lookups ([`Run::get`]) and range scans
//! ([`Run::iter_from`]), and deleted once merged away. Random keys cost sled a B-tree rewrite
//! per insert; a run writes each entry once, sorted, compressed.
//!
//! # Format
//! A run file is, in this order (integers of fixed width big-endian, "varint" unsigned LEB128):
//!
//! - **Data blocks**, one after another from byte 0. The entries are cut into blocks of about
//!   [`BLOCK_BYTES`] before compression (a block ends after the entry that reaches it), each
//!   one zstd frame (level 1, with the frame's content checksum, so every block read is
//!   checked) of `count varint ‖ count entries`, an entry being
//!   `key len varint ‖ key ‖ tag u8 ‖ [value len varint ‖ value]`: tag 0 is a tombstone (no
//!   value follows), tag 1 a value. Keys ascend strictly, bytewise, across the whole file.
//!   Keys are whole, not prefix-compressed against the previous one: zstd finds the shared
//!   prefixes itself. Measured on 200k record index keys, `shared len ‖ suffix` made the file
//!   3 % larger (19.6 bytes an entry against 19.0) and a block slower to decode, its keys
//!   rebuilt rather than read in place.
//! - **Fence index**: `blocks u32`, then per block `first key (len u32 ‖ bytes) ‖ offset u64 ‖
//!   compressed len u32 ‖ decompressed len u32` (the bound decompression allocates).
//! - **Bloom filter** over the keys the writer's `bloom_keys` accepted: `k u8 ‖ m / 8 bytes`,
//!   bit j being bit `j % 8` (least significant first) of byte `j / 8`; about
//!   [`BLOOM_BITS_PER_KEY`] bits a key (at least 64), k = [`BLOOM_K`]. A key sets the bits
//!   `(h1 + i·h2) mod 2^64 mod m` for i in `0..k`, where `h` is the key's FNV-1a 64 (offset
//!   basis `0xcbf29ce484222325`, prime `0x100000001b3`), `h1 = fmix64(h)`, `h2 = fmix64(h ^
//!   0x9e3779b97f4a7c15) | 1`, and `fmix64` is MurmurHash3's 64-bit finaliser. All of this is
//!   written down here and hand-rolled because a run outlives the binary that wrote it: std's
//!   hashers promise no stability across Rust versions.
//! - **Footer**, [`FOOTER_LEN`] bytes: `fence offset u64` (= the end of the data blocks) ‖
//!   `fence len u64 ‖ filter len u64` (the filter follows the fence) ‖ `entries u64` (tombstones
//!   included) ‖ `bloom keys u64 ‖ checksum [32] ‖ version u32 ‖ magic "credexrun1"`. The
//!   checksum is SHA-256(0x00 ‖ fence ‖ filter ‖ the footer's first 40 bytes), credex-core's
//!   RFC 6962 leaf hash, so a damaged index, filter or count is found at open.
//!
//! # Memory
//! An open run holds its fence keys and its filter ([`Run::resident_bytes`]); blocks are read
//! with positioned reads on demand and kept decompressed, and decoded, in the [`RunCache`]
//! shared by all runs, bounded by bytes.
//!
//! # Durability
//! [`Run::write`] creates the file (it must not exist), fsyncs it and returns it opened; the
//! caller syncs the directory once per flush or merge, and publishes the run (in whatever
//! manifest it keeps) only after that. A failed write removes the file it created.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{self, AtomicU64};

use credex_core::merkle;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx};

use crate::codec::{Dec, Enc, or_corrupt};
use crate::error::StoreError;

/// One entry of a run: key, and the value or `None` for a tombstone (a deletion that must
/// shadow older runs).
pub(crate) type RunEntry = (Vec<u8>, Option<Vec<u8>>);

/// Bytes of entries (encoded, before compression) after which a block ends. A point read that
/// misses the cache decompresses and decodes a whole block, so this trades disk for read
/// latency. Measured on 200k record index entries (`runs_tests.rs`,
/// `record_entries_take_little_disk`, release build, page cache warm): 4 KiB blocks keep
/// 20.2 bytes an entry and a point read missing the cache takes 9 µs, 8 KiB 19.4 and 13 µs,
/// 16 KiB 19.0 and 22 µs, 32 KiB 18.9 and 41 µs. The reader takes any block size.
const BLOCK_BYTES: usize = 16 << 10;
/// zstd level of the blocks: every flushed and merged byte is compressed once more per merge.
const LEVEL: i32 = 1;
/// Bloom filter bits per key: with [`BLOOM_K`] probes, about 0.8 % false positives.
const BLOOM_BITS_PER_KEY: usize = 10;
/// Bloom filter probes per key: the optimum for 10 bits a key is 10·ln 2 ≈ 7.
const BLOOM_K: u8 = 7;
const MAGIC: &[u8; 10] = b"credexrun1";
const VERSION: u32 = 1;
/// The footer's fields before its checksum, which the checksum covers.
const FOOTER_HEAD: usize = 5 * 8;
const FOOTER_LEN: usize = FOOTER_HEAD + 32 + 4 + MAGIC.len();
/// Tag byte of an entry.
const TOMBSTONE: u8 = 0;
const VALUE: u8 = 1;

/// Names a run in the [`RunCache`]: unique per opened [`Run`], so a file deleted and another
/// written under its name can never be served the first one's blocks.
static NEXT_RUN_ID: AtomicU64 = AtomicU64::new(0);

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, what: impl fmt::Display) -> StoreError {
    StoreError::corrupt(format!("run file {}: {what}", path.display()))
}

/// A key for messages: printable ASCII as is, other bytes escaped.
fn show(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}

/// Where one block lies, and its first key in [`Run::fence_keys`].
#[derive(Debug, Clone, Copy)]
struct Fence {
    key_start: usize,
    key_end: usize,
    offset: u64,
    len: u32,
    raw_len: u32,
}

/// One immutable run file, open: its fence index and Bloom filter in memory, its blocks read on
/// demand. Shared between readers as `Arc<Run>`; reads are positioned, so they need no lock.
pub(crate) struct Run {
    id: u64,
    path: PathBuf,
    file: File,
    /// The first key of every block, concatenated.
    fence_keys: Vec<u8>,
    fences: Vec<Fence>,
    bloom: Bloom,
    /// Keys in the filter.
    bloom_keys: u64,
    entries: u64,
    file_bytes: u64,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .field("blocks", &self.fences.len())
            .field("file_bytes", &self.file_bytes)
            .finish_non_exhaustive()
    }
}

impl Run {
    /// Writes `entries`, strictly ascending by key (bytewise), to a new file at `path` (which
    /// must not exist), fsyncs the file, and returns the run opened. A key not above the one
    /// before it is an error naming both, as is an error from `entries`; either way the file is
    /// removed. `bloom_keys` says which keys go into the run's Bloom filter (only point-read
    /// keys need it; the others are only range-scanned); the filter is sized for
    /// `bloom_capacity` of them up front, so writing holds no per-key state (a merge of ten
    /// million keys would otherwise hold their hashes). More keys than that only raise the
    /// filter's false-positive rate. Does not sync the directory (the caller does, once per
    /// flush).
    pub(crate) fn write(
        path: &Path,
        entries: impl Iterator<Item = Result<RunEntry, StoreError>>,
        bloom_keys: fn(&[u8]) -> bool,
        bloom_capacity: u64,
    ) -> Result<Run, StoreError> {
        Run::write_blocks(path, entries, bloom_keys, bloom_capacity, BLOCK_BYTES)
    }

    /// Keys in the run's Bloom filter.
    pub(crate) fn bloom_keys(&self) -> u64 {
        self.bloom_keys
    }

    /// [`Run::write`] with blocks ending after `block_bytes`: tests cut small blocks to cross
    /// many block boundaries with few entries.
    fn write_blocks(
        path: &Path,
        entries: impl Iterator<Item = Result<RunEntry, StoreError>>,
        bloom_keys: fn(&[u8]) -> bool,
        bloom_capacity: u64,
        block_bytes: usize,
    ) -> Result<Run, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_error(path))?;
        let written =
            Writer::new(path, &file, bloom_keys, bloom_capacity, block_bytes).and_then(|mut w| {
                for entry in entries {
                    let (key, value) = entry?;
                    w.add(&key, value.as_deref())?;
                }
                w.finish()
            });
        match written {
            Ok(parts) => Ok(parts.into_run(path, file)),
            Err(e) => {
                drop(file);
                // The file is this call's own (create_new). Failing to remove it changes nothing
                // the caller can act on; the first error is the one to report.
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Opens a run written by [`Run::write`]: reads and checks the footer (magic, version, the
    /// checksum over the fence index, filter and counts), and loads the fence index and filter
    /// into memory. A truncated or altered file is [`StoreError::Corrupt`] naming the file.
    pub(crate) fn open(path: &Path) -> Result<Run, StoreError> {
        let file = File::open(path).map_err(io_error(path))?;
        let file_bytes = file.metadata().map_err(io_error(path))?.len();
        let footer_at = file_bytes.checked_sub(FOOTER_LEN as u64).ok_or_else(|| {
            corrupt(
                path,
                format!("is {file_bytes} bytes, shorter than a run footer ({FOOTER_LEN})"),
            )
        })?;
        let mut bytes = [0; FOOTER_LEN];
        read_at(&file, path, &mut bytes, footer_at)?;
        if !bytes.ends_with(MAGIC) {
            return Err(corrupt(
                path,
                "does not end in the run magic: cut short, or not a run file",
            ));
        }
        let footer = Footer::decode(&bytes);
        if footer.version != VERSION {
            return Err(corrupt(
                path,
                format!(
                    "is in run format version {}, this build reads {VERSION}",
                    footer.version
                ),
            ));
        }
        let tail_len = footer
            .fence_len
            .checked_add(footer.filter_len)
            .filter(|&n| footer.fence_at.checked_add(n) == Some(footer_at))
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!(
                        "its footer places an index of {} bytes and a filter of {} at byte {}, \
                         the footer starts at {footer_at}",
                        footer.fence_len, footer.filter_len, footer.fence_at
                    ),
                )
            })?;
        // Within the file's length, checked above: the allocation is bounded by what is there.
        let mut tail = vec![0; tail_len as usize + FOOTER_HEAD];
        read_at(&file, path, &mut tail, footer.fence_at)?;
        if merkle::leaf_hash(&tail).0 != footer.checksum {
            return Err(corrupt(
                path,
                "its index, filter or counts do not match the footer's checksum",
            ));
        }
        let (fence, filter) = tail[..tail_len as usize].split_at(footer.fence_len as usize);
        let (fence_keys, fences) = or_corrupt(decode_fence(fence, footer.fence_at), || {
            format!("run file {}: its fence index is malformed", path.display())
        })?;
        if fences.is_empty() != (footer.entries == 0) {
            return Err(corrupt(
                path,
                format!(
                    "holds {} blocks for {} entries",
                    fences.len(),
                    footer.entries
                ),
            ));
        }
        let bloom = or_corrupt(Bloom::decode(filter), || {
            format!("run file {}: its Bloom filter is malformed", path.display())
        })?;
        Ok(Run {
            id: NEXT_RUN_ID.fetch_add(1, atomic::Ordering::Relaxed),
            path: path.to_owned(),
            file,
            fence_keys,
            fences,
            bloom,
            bloom_keys: footer.bloom_keys,
            entries: footer.entries,
            file_bytes,
        })
    }

    /// The entry for exactly `key`: `None` when this run says nothing about it, `Some(None)` for
    /// a tombstone, `Some(Some(v))` for a value. With `use_bloom` the filter is asked first and
    /// a key it has not seen costs no read: pass it only for keys the writer's `bloom_keys`
    /// accepted (for another key the filter would answer "absent" wrongly).
    pub(crate) fn get(
        &self,
        key: &[u8],
        use_bloom: bool,
        cache: &RunCache,
    ) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        if use_bloom && !self.bloom.may_contain(key) {
            return Ok(None);
        }
        let Some(i) = self.block_of(key) else {
            return Ok(None);
        };
        let block = self.block(i, cache)?;
        Ok(block
            .find(key)
            .ok()
            .map(|at| block.value(at).map(<[u8]>::to_vec)))
    }

    /// Entries with key ≥ `start`, ascending, read block by block through `cache` (each block
    /// decompressed at most once per iterator). Reads nothing until first polled.
    pub(crate) fn iter_from(self: &Arc<Self>, start: &[u8], cache: &Arc<RunCache>) -> RunIter {
        RunIter {
            run: Arc::clone(self),
            cache: Arc::clone(cache),
            next_block: self.block_of(start).unwrap_or(0),
            start: Some(start.to_vec()),
            block: None,
            at: 0,
            done: false,
        }
    }

    /// Entries, tombstones included.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    pub(crate) fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the run's file, unless its path now names another file: a merge whose store was
    /// closed or reopened meanwhile must not delete a run of the same name that the store
    /// opened again wrote since (an open deletes the files no listing names, this one's too).
    pub(crate) fn remove_unlisted(&self) {
        use std::os::unix::fs::MetadataExt;
        let ours = |at: &std::fs::Metadata| {
            self.file
                .metadata()
                .is_ok_and(|own| own.dev() == at.dev() && own.ino() == at.ino())
        };
        if std::fs::metadata(&self.path).is_ok_and(|at| ours(&at)) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Memory held by the fence index and the filter, for the store's accounting.
    pub(crate) fn resident_bytes(&self) -> usize {
        size_of::<Run>()
            + self.path.capacity()
            + self.fence_keys.capacity()
            + self.fences.capacity() * size_of::<Fence>()
            + self.bloom.bits.capacity()
    }

    fn fence_key(&self, fence: &Fence) -> &[u8] {
        &self.fence_keys[fence.key_start..fence.key_end]
    }

    /// The block that holds `key` if any block does: the last whose first key is not above it.
    fn block_of(&self, key: &[u8]) -> Option<usize> {
        self.fences
            .partition_point(|f| self.fence_key(f) <= key)
            .checked_sub(1)
    }

    /// Block `i`, from the cache or read, decompressed and decoded (then cached). Checks the
    /// block against the fence index: its first key is the fence's, its last is below the
    /// next block's.
    fn block(&self, i: usize, cache: &RunCache) -> Result<Arc<Block>, StoreError> {
        if let Some(block) = cache.get(&(self.id, i)) {
            return Ok(block);
        }
        let fence = &self.fences[i];
        let mut compressed = vec![0; fence.len as usize];
        read_at(&self.file, &self.path, &mut compressed, fence.offset)?;
        let bad = |why: String| {
            corrupt(
                &self.path,
                format!("block {i} at byte {} {why}", fence.offset),
            )
        };
        let raw = decompress(&compressed, fence.raw_len as usize).map_err(bad)?;
        let block = Block::decode(raw).map_err(bad)?;
        if block.key(0) != self.fence_key(fence) {
            return Err(bad("starts at another key than the index says".to_owned()));
        }
        let next = self.fences.get(i + 1).map(|f| self.fence_key(f));
        if next.is_some_and(|next| block.key(block.len() - 1) >= next) {
            return Err(bad("reaches past the next block's first key".to_owned()));
        }
        let block = Arc::new(block);
        cache.put((self.id, i), Arc::clone(&block), block.bytes);
        Ok(block)
    }
}

/// `buf.len()` bytes of `file` from `at`; a file that ends before is corrupt (it was checked
/// long enough at open, so it shrank, or a length in it is wrong).
fn read_at(file: &File, path: &Path, buf: &mut [u8], at: u64) -> Result<(), StoreError> {
    file.read_exact_at(buf, at).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            corrupt(path, format!("ends before byte {}", at + buf.len() as u64))
        } else {
            io_error(path)(e)
        }
    })
}

/// Decodes a fence index whose blocks end at `data_end`: the blocks lie end to end from byte
/// 0, none empty, their first keys strictly ascending.
fn decode_fence(fence: &[u8], data_end: u64) -> Option<(Vec<u8>, Vec<Fence>)> {
    let mut d = Dec::new(fence);
    let count = d.u32()? as usize;
    // Each block takes at least 20 bytes of the index: a count beyond that is refused before
    // anything is allocated for it.
    if count > fence.len() / 20 {
        return None;
    }
    let mut keys = Vec::new();
    let mut fences = Vec::with_capacity(count);
    let mut end = 0u64;
    for _ in 0..count {
        let key = d.bytes()?;
        let fence = Fence {
            key_start: keys.len(),
            key_end: keys.len() + key.len(),
            offset: d.u64()?,
            len: d.u32()?,
            raw_len: d.u32()?,
        };
        let ascending = fences
            .last()
            .is_none_or(|p: &Fence| &keys[p.key_start..p.key_end] < key);
        if fence.offset != end || fence.len == 0 || !ascending {
            return None;
        }
        end = fence.offset.checked_add(fence.len.into())?;
        keys.extend_from_slice(key);
        fences.push(fence);
    }
    (end == data_end).then_some(())?;
    d.end((keys, fences))
}

/// The footer, [`FOOTER_LEN`] bytes at the end of the file.
struct Footer {
    fence_at: u64,
    fence_len: u64,
    filter_len: u64,
    entries: u64,
    bloom_keys: u64,
    checksum: [u8; 32],
    version: u32,
}

impl Footer {
    /// The fields the checksum covers.
    fn head(&self) -> Vec<u8> {
        Enc::with_capacity(FOOTER_HEAD)
            .u64(self.fence_at)
            .u64(self.fence_len)
            .u64(self.filter_len)
            .u64(self.entries)
            .u64(self.bloom_keys)
            .finish()
    }

    /// What follows the head.
    fn rest(&self) -> Vec<u8> {
        Enc::with_capacity(FOOTER_LEN - FOOTER_HEAD)
            .raw(&self.checksum)
            .u32(self.version)
            .raw(MAGIC)
            .finish()
    }

    fn decode(bytes: &[u8; FOOTER_LEN]) -> Footer {
        let mut d = Dec::new(bytes);
        let mut u64 = || d.u64().expect("a footer holds its fields");
        let (fence_at, fence_len, filter_len, entries, bloom_keys) =
            (u64(), u64(), u64(), u64(), u64());
        Footer {
            fence_at,
            fence_len,
            filter_len,
            entries,
            bloom_keys,
            checksum: d.hash().expect("a footer holds its checksum").0,
            version: d.u32().expect("a footer holds its version"),
        }
    }
}

/// The parts of a run [`Writer::finish`] leaves, to open it from without reading them back.
struct Written {
    fence_keys: Vec<u8>,
    fences: Vec<Fence>,
    bloom: Bloom,
    bloom_keys: u64,
    entries: u64,
    file_bytes: u64,
}

impl Written {
    fn into_run(self, path: &Path, file: File) -> Run {
        Run {
            id: NEXT_RUN_ID.fetch_add(1, atomic::Ordering::Relaxed),
            path: path.to_owned(),
            file,
            fence_keys: self.fence_keys,
            fences: self.fences,
            bloom: self.bloom,
            bloom_keys: self.bloom_keys,
            entries: self.entries,
            file_bytes: self.file_bytes,
        }
    }
}

/// Writes one run file, block after block.
struct Writer<'a> {
    path: &'a Path,
    file: &'a File,
    out: BufWriter<&'a File>,
    /// Bytes written so far: where the next block starts.
    at: u64,
    cctx: CCtx<'static>,
    block_bytes: usize,
    /// The current block's entries, encoded.
    body: Vec<u8>,
    /// Entries in the current block.
    count: u64,
    /// The last key added.
    last: Vec<u8>,
    entries: u64,
    fence_keys: Vec<u8>,
    fences: Vec<Fence>,
    bloom_keys: fn(&[u8]) -> bool,
    /// The filter, sized up front, and the keys put in it.
    bloom: Bloom,
    bloom_count: u64,
    /// The current block before compression, and after: buffers reused block to block.
    raw: Vec<u8>,
    compressed: Vec<u8>,
}

impl<'a> Writer<'a> {
    fn new(
        path: &'a Path,
        file: &'a File,
        bloom_keys: fn(&[u8]) -> bool,
        bloom_capacity: u64,
        block_bytes: usize,
    ) -> Result<Writer<'a>, StoreError> {
        let mut cctx = CCtx::create();
        let zstd_error = |code| {
            io_error(path)(io::Error::other(format!(
                "zstd: {}",
                zstd_safe::get_error_name(code)
            )))
        };
        cctx.set_parameter(CParameter::CompressionLevel(LEVEL))
            .map_err(zstd_error)?;
        cctx.set_parameter(CParameter::ChecksumFlag(true))
            .map_err(zstd_error)?;
        Ok(Writer {
            path,
            file,
            out: BufWriter::with_capacity(256 << 10, file),
            at: 0,
            cctx,
            block_bytes,
            body: Vec::with_capacity(block_bytes * 2),
            count: 0,
            last: Vec::new(),
            entries: 0,
            fence_keys: Vec::new(),
            fences: Vec::new(),
            bloom_keys,
            bloom: Bloom::with_capacity(bloom_capacity),
            bloom_count: 0,
            raw: Vec::new(),
            compressed: Vec::new(),
        })
    }

    fn add(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        if self.entries > 0 && key <= &self.last[..] {
            return Err(corrupt(
                self.path,
                format!(
                    "key {} written after {}: run entries must ascend strictly",
                    show(key),
                    show(&self.last)
                ),
            ));
        }
        if self.count == 0 {
            let start = self.fence_keys.len();
            self.fence_keys.extend_from_slice(key);
            self.fences.push(Fence {
                key_start: start,
                key_end: self.fence_keys.len(),
                offset: self.at,
                len: 0,
                raw_len: 0,
            });
        }
        put_varint(&mut self.body, key.len() as u64);
        self.body.extend_from_slice(key);
        match value {
            None => self.body.push(TOMBSTONE),
            Some(v) => {
                self.body.push(VALUE);
                put_varint(&mut self.body, v.len() as u64);
                self.body.extend_from_slice(v);
            }
        }
        self.last.clear();
        self.last.extend_from_slice(key);
        self.count += 1;
        self.entries += 1;
        if (self.bloom_keys)(key) {
            self.bloom.insert(fnv1a(key));
            self.bloom_count += 1;
        }
        if self.body.len() >= self.block_bytes {
            self.end_block()?;
        }
        Ok(())
    }

    /// Compresses and writes the current block, completing its fence.
    fn end_block(&mut self) -> Result<(), StoreError> {
        self.raw.clear();
        put_varint(&mut self.raw, self.count);
        self.raw.extend_from_slice(&self.body);
        self.compressed.clear();
        self.compressed
            .reserve(zstd_safe::compress_bound(self.raw.len()));
        self.cctx
            .compress2(&mut self.compressed, &self.raw)
            .map_err(|code| {
                io_error(self.path)(io::Error::other(format!(
                    "zstd: {}",
                    zstd_safe::get_error_name(code)
                )))
            })?;
        let too_large = || corrupt(self.path, "a block over 4 GiB");
        let fence = self.fences.last_mut().expect("a block has a fence");
        fence.len = u32::try_from(self.compressed.len()).map_err(|_| too_large())?;
        fence.raw_len = u32::try_from(self.raw.len()).map_err(|_| too_large())?;
        self.out
            .write_all(&self.compressed)
            .map_err(io_error(self.path))?;
        self.at += self.compressed.len() as u64;
        self.body.clear();
        self.count = 0;
        Ok(())
    }

    /// Writes the last block, the fence index, the filter and the footer, and syncs the file.
    fn finish(mut self) -> Result<Written, StoreError> {
        if self.count > 0 {
            self.end_block()?;
        }
        let fence_count = u32::try_from(self.fences.len()).expect("fewer than 2^32 blocks");
        let fences = self
            .fences
            .iter()
            .fold(
                Enc::with_capacity(self.fence_keys.len() + 24 * self.fences.len()).u32(fence_count),
                |e, f| {
                    e.bytes(&self.fence_keys[f.key_start..f.key_end])
                        .u64(f.offset)
                        .u32(f.len)
                        .u32(f.raw_len)
                },
            )
            .finish();
        let mut footer = Footer {
            fence_at: self.at,
            fence_len: fences.len() as u64,
            filter_len: self.bloom.encoded_len() as u64,
            entries: self.entries,
            bloom_keys: self.bloom_count,
            checksum: [0; 32],
            version: VERSION,
        };
        let head = footer.head();
        // The checksum is the RFC 6962 leaf hash of fences ‖ filter ‖ head, hashed and written
        // piece by piece: the filter (10 bits a point key, 25 MB for a merge of ten million
        // records) is never copied into one buffer with the rest.
        let hashed = [&fences[..], &[self.bloom.k][..], &self.bloom.bits, &head];
        footer.checksum = merkle::leaf_hash_of_parts(&hashed).0;
        let mut tail_len = 0;
        for part in hashed.into_iter().chain([&footer.rest()[..]]) {
            self.out.write_all(part).map_err(io_error(self.path))?;
            tail_len += part.len() as u64;
        }
        self.out.flush().map_err(io_error(self.path))?;
        self.file.sync_all().map_err(io_error(self.path))?;
        Ok(Written {
            fence_keys: self.fence_keys,
            fences: self.fences,
            bloom: self.bloom,
            bloom_keys: self.bloom_count,
            entries: self.entries,
            file_bytes: self.at + tail_len,
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a block's fields from its start; every method returns `None` on a short or malformed
/// block.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &b) in self.buf.get(self.at..)?.iter().enumerate().take(10) {
            let bits = u64::from(b & 0x7f);
            // The tenth byte may only hold the 64th bit.
            if i == 9 && bits > 1 {
                return None;
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                self.at += i + 1;
                return Some(v);
            }
        }
        None
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    /// Skips `n` bytes, returning where they start.
    fn skip(&mut self, n: usize) -> Option<usize> {
        let start = self.at;
        self.at = start.checked_add(n).filter(|&end| end <= self.buf.len())?;
        Some(start)
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }
}

/// Decompresses one block frame into exactly `raw_len` bytes, checking the frame's checksum.
fn decompress(compressed: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    thread_local! {
        // A context a thread: creating one costs more than decompressing a small block.
        static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
    }
    let mut raw = Vec::with_capacity(raw_len);
    DCTX.with_borrow_mut(|dctx| dctx.decompress(&mut raw, compressed))
        .map_err(|code| format!("does not decompress: {}", zstd_safe::get_error_name(code)))?;
    if raw.len() != raw_len {
        return Err(format!(
            "decompresses to {} bytes, the index says {raw_len}",
            raw.len()
        ));
    }
    Ok(raw)
}

/// One block decompressed and decoded: its bytes as stored, and where each entry's key and
/// value lie in them.
#[derive(Debug)]
pub(crate) struct Block {
    raw: Vec<u8>,
    slots: Vec<Slot>,
    /// Heap bytes it holds, as the cache counts them.
    bytes: usize,
}

/// Where an entry lies in [`Block::raw`] (which is under 4 GiB: its length is a `u32` in the
/// fence index).
#[derive(Debug, Clone, Copy)]
struct Slot {
    key_at: u32,
    key_len: u32,
    value_at: u32,
    /// [`Slot::TOMBSTONE`] for a tombstone.
    value_len: u32,
}

impl Slot {
    const TOMBSTONE: u32 = u32::MAX;
}

impl Block {
    /// Decodes a decompressed block, checking it is well formed: at least one entry, keys
    /// ascending strictly, nothing left over.
    fn decode(raw: Vec<u8>) -> Result<Block, String> {
        let pos = |n: usize| u32::try_from(n).map_err(|_| "is over 4 GiB".to_owned());
        pos(raw.len())?;
        let mut r = Reader { buf: &raw, at: 0 };
        let malformed = || "is malformed".to_owned();
        let count = r.len().ok_or_else(malformed)?;
        // Every entry takes at least two bytes: a count beyond that is refused before anything
        // is allocated for it.
        if count == 0 || count > raw.len() / 2 {
            return Err(format!("claims {count} entries in {} bytes", raw.len()));
        }
        let mut slots = Vec::with_capacity(count);
        let mut last: Option<&[u8]> = None;
        for _ in 0..count {
            let key_len = r.len().ok_or_else(malformed)?;
            let key_at = r.skip(key_len).ok_or_else(malformed)?;
            let key = &raw[key_at..key_at + key_len];
            if last.is_some_and(|last| key <= last) {
                return Err("holds keys out of order".to_owned());
            }
            last = Some(key);
            let (value_at, value_len) = match r.u8() {
                Some(TOMBSTONE) => (r.at, Slot::TOMBSTONE),
                Some(VALUE) => {
                    let len = r.len().ok_or_else(malformed)?;
                    (r.skip(len).ok_or_else(malformed)?, pos(len)?)
                }
                Some(tag) => return Err(format!("holds an entry tagged {tag}")),
                None => return Err(malformed()),
            };
            slots.push(Slot {
                key_at: pos(key_at)?,
                key_len: pos(key_len)?,
                value_at: pos(value_at)?,
                value_len,
            });
        }
        if r.at != raw.len() {
            return Err(format!("has {} bytes after its entries", raw.len() - r.at));
        }
        let bytes = size_of::<Block>() + raw.capacity() + slots.capacity() * size_of::<Slot>();
        Ok(Block { raw, slots, bytes })
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        let s = self.slots[i];
        &self.raw[s.key_at as usize..][..s.key_len as usize]
    }

    fn value(&self, i: usize) -> Option<&[u8]> {
        let s = self.slots[i];
        (s.value_len != Slot::TOMBSTONE)
            .then(|| &self.raw[s.value_at as usize..][..s.value_len as usize])
    }

    fn entry(&self, i: usize) -> RunEntry {
        (self.key(i).to_vec(), self.value(i).map(<[u8]>::to_vec))
    }

    /// Where `key` is, or where it would go.
    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        let mut lo = 0;
        let mut hi = self.len();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }
}

/// A run's Bloom filter: `k` probes into `bits` (see the module docs for the hashing).
#[derive(Debug)]
struct Bloom {
    k: u8,
    bits: Vec<u8>,
}

impl Bloom {
    /// An empty filter for `capacity` keys.
    fn with_capacity(capacity: u64) -> Bloom {
        let bits = usize::try_from(capacity)
            .unwrap_or(usize::MAX)
            .saturating_mul(BLOOM_BITS_PER_KEY);
        Bloom {
            k: BLOOM_K,
            bits: vec![0; bits.div_ceil(8).max(8)],
        }
    }

    /// Adds the key whose FNV-1a 64 hash is `h`.
    fn insert(&mut self, h: u64) {
        for bit in self.probes(h) {
            self.bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }

    fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(fnv1a(key))
            .all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// The bits key hash `h` sets.
    fn probes(&self, h: u64) -> impl Iterator<Item = u64> + use<> {
        let m = self.bits.len() as u64 * 8;
        let h1 = fmix64(h);
        let h2 = fmix64(h ^ 0x9e37_79b9_7f4a_7c15) | 1;
        (0..u64::from(self.k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    /// Bytes of the filter as stored: `k u8 ‖ bits`.
    fn encoded_len(&self) -> usize {
        1 + self.bits.len()
    }

    fn decode(filter: &[u8]) -> Option<Bloom> {
        let (&k, bits) = filter.split_first()?;
        ((1..=30).contains(&k) && !bits.is_empty()).then(|| Bloom {
            k,
            bits: bits.to_vec(),
        })
    }
}

/// FNV-1a 64: stable, written down, and enough once [`fmix64`] spreads it.
fn fnv1a(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit, which FNV's last
/// multiply alone does not (its low bits depend only on the low bits of the input).
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Decompressed, decoded blocks of all runs under (run id, block index), the most recently
/// used kept, at most the bound it was made with (`storage.index_cache_mb`). A run merged away
/// leaves its blocks to age out.
pub(crate) type RunCache = crate::cache::BlockLru<(u64, usize), Block>;

/// The entries of a run from a start key, ascending: [`Run::iter_from`]. Stops after the first
/// error it yields.
pub(crate) struct RunIter {
    run: Arc<Run>,
    cache: Arc<RunCache>,
    /// The next block to read once `block` is done.
    next_block: usize,
    /// The start key, until the first block is read and positioned at it.
    start: Option<Vec<u8>>,
    block: Option<Arc<Block>>,
    /// The next entry of `block`.
    at: usize,
    done: bool,
}

impl fmt::Debug for RunIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunIter")
            .field("run", &self.run.path)
            .field("next_block", &self.next_block)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Iterator for RunIter {
    type Item = Result<RunEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some(block) = &self.block {
                if self.at < block.len() {
                    self.at += 1;
                    return Some(Ok(block.entry(self.at - 1)));
                }
                self.block = None;
            }
            if self.next_block >= self.run.fences.len() {
                self.done = true;
                return None;
            }
            match self.run.block(self.next_block, &self.cache) {
                Ok(block) => {
                    // Only the first block can hold keys below the start: every later one
                    // starts above it.
                    self.at = match self.start.take() {
                        Some(start) => block.find(&start).unwrap_or_else(|at| at),
                        None => 0,
                    };
                    self.block = Some(block);
                    self.next_block += 1;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A source of entries for [`merge`]: strictly ascending.
pub(crate) type Source<'a> = Box<dyn Iterator<Item = Result<RunEntry, StoreError>> + Send + 'a>;

/// Merges `sources`, given newest first, into one ascending stream: for a key in several, the
/// newest source's entry wins. With `drop_tombstones` (the merge includes the oldest run, so
/// nothing older is left for a tombstone to shadow) tombstones are left out, otherwise kept.
/// A k-way merge on a binary heap of each source's next entry. A source that does not ascend
/// strictly is an error; the merge ends after the first error it yields.
pub(crate) fn merge<'a>(sources: Vec<Source<'a>>, drop_tombstones: bool) -> Merge<'a> {
    Merge {
        heap: BinaryHeap::with_capacity(sources.len()),
        sources,
        drop_tombstones,
        started: false,
        done: false,
    }
}

/// The stream [`merge`] returns.
pub(crate) struct Merge<'a> {
    sources: Vec<Source<'a>>,
    /// The next entry of each source not yet exhausted.
    heap: BinaryHeap<Head>,
    drop_tombstones: bool,
    /// Whether the heap holds the sources' first entries yet (pulled on the first poll).
    started: bool,
    done: bool,
}

impl fmt::Debug for Merge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merge")
            .field("sources", &self.sources.len())
            .field("drop_tombstones", &self.drop_tombstones)
            .finish_non_exhaustive()
    }
}

/// One source's next entry in the merge's heap.
struct Head {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    source: usize,
}

impl Ord for Head {
    /// Reversed, so that [`BinaryHeap`], a max-heap, pops the smallest key first and, among
    /// equal keys, the newest source's.
    fn cmp(&self, other: &Head) -> Ordering {
        other
            .key
            .cmp(&self.key)
            .then(other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl Merge<'_> {
    /// Pulls source `s`'s next entry into the heap, checking it comes after `after`, the
    /// source's previous key.
    fn pull(&mut self, s: usize, after: Option<&[u8]>) -> Result<(), StoreError> {
        let Some((key, value)) = self.sources[s].next().transpose()? else {
            return Ok(());
        };
        if let Some(after) = after.filter(|&after| key.as_slice() <= after) {
            return Err(StoreError::corrupt(format!(
                "merge source {s}: key {} comes after {}: sources must ascend strictly",
                show(&key),
                show(after)
            )));
        }
        self.heap.push(Head {
            key,
            value,
            source: s,
        });
        Ok(())
    }

    fn step(&mut self) -> Result<Option<RunEntry>, StoreError> {
        if !self.started {
            self.started = true;
            for s in 0..self.sources.len() {
                self.pull(s, None)?;
            }
        }
        while let Some(head) = self.heap.pop() {
            self.pull(head.source, Some(&head.key))?;
            // The same key in older sources: shadowed.
            while self.heap.peek().is_some_and(|o| o.key == head.key) {
                let older = self.heap.pop().expect("peeked");
                self.pull(older.source, Some(&older.key))?;
            }
            if head.value.is_some() || !self.drop_tombstones {
                return Ok(Some((head.key, head.value)));
            }
        }
        Ok(None)
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<RunEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.step().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
