//! Leaf storage outside sled: per origin one append-only data file, `leaves/<id>.dat`, holding
//! the origin's leaves in seq order as a run of zstd-compressed blocks, and where each block
//! lies in sled, one key per block: `LEAF_BLOCK ‖ id ‖ seq of the block's first leaf` →
//! [`BlockMeta`].
//!
//! A block is one zstd frame of `count u32 ‖ count leaf lengths u32 ‖ the leaves`, about
//! [`BLOCK_BYTES`] of leaves (at most that plus one leaf). Each apply cuts the leaves it
//! appends to an origin into blocks of about equal size, so a block never spans two batches
//! and committed bytes never change. Why blocks and not single leaves: the signed entries of one log share
//! most of their structure (field tags, the origin's names, categories, dates), which zstd finds
//! across a block and not within one leaf. A batch of one leaf makes a block of one, which
//! compresses little: the ratio is that of the batches the node applies (ARCHITECTURE.md
//! "Performance"). Reading a leaf decompresses its block; [`BlockCache`] keeps the last few
//! decompressed, so a run of single-leaf reads, or consecutive pages of a catch-up, decompresses
//! each block once. Leaves come back byte for byte as appended.
//!
//! Why the block index lives in sled rather than in a second file: it is then committed in the
//! same atomic batch as the origin's size, so sled alone says which file bytes are committed
//! (the last block's end), there is no second file whose tail can tear, and an apply syncs one
//! file per origin instead of two. It costs one small key per block, a fraction of a byte an
//! entry.
//!
//! Write order (see the crate docs, "Crash consistency"): an apply writes its blocks at the
//! committed end of the file and `fdatasync`s it before sled sees the batch, so sled can never
//! hold, in memory or on disk, a block that is not already durable in the file. Bytes past the
//! committed end are a batch that never committed; open truncates them before anything can be
//! written at those offsets again.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use credex_core::merkle::{self, Hash};

use crate::cache::BlockLru;
use crate::codec::{Dec, Enc};
use crate::error::StoreError;
use crate::keys;
use crate::store::OriginTable;

/// Most bytes of leaves in one block. Measured on 577-byte signed entries (ARCHITECTURE.md
/// "Performance"): 8 KiB blocks keep 306 bytes a leaf, 32 KiB 236, 64 KiB 209, 128 KiB 193;
/// a single-leaf read decompresses its whole block, so the gains past 64 KiB are not worth
/// the read.
pub(crate) const BLOCK_BYTES: usize = 64 << 10;
/// zstd level of the blocks. The apply path compresses every appended byte once; level 3 keeps
/// 4 % less than level 1 at two thirds of its speed.
const LEVEL: i32 = 1;
pub(crate) fn block_key(id: u32, first: u64) -> [u8; 13] {
    keys::id_u64(keys::LEAF_BLOCK, id, first)
}

/// The folder of the data files, under the store's directory.
pub(crate) fn dir(store: &Path) -> PathBuf {
    store.join("leaves")
}

/// The data file of origin id `id`.
pub(crate) fn file_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id}.dat"))
}

/// Where one block lies: the value under its [`block_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    /// Seq of its first leaf (the key's last component).
    pub(crate) first: u64,
    /// Number of leaves.
    pub(crate) count: u32,
    /// Its byte range in the data file.
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Bytes of the block decompressed (header and leaves): a bound for decompression.
    pub(crate) raw_len: u32,
}

impl BlockMeta {
    fn encode(&self) -> Vec<u8> {
        Enc::with_capacity(24)
            .u64(self.start)
            .u64(self.end)
            .u32(self.count)
            .u32(self.raw_len)
            .finish()
    }

    fn decode(first: u64, v: &[u8]) -> Option<BlockMeta> {
        let mut d = Dec::new(v);
        let meta = BlockMeta {
            first,
            start: d.u64()?,
            end: d.u64()?,
            count: d.u32()?,
            raw_len: d.u32()?,
        };
        d.end(meta).filter(|m| {
            m.start <= m.end && m.count > 0 && m.first.checked_add(m.count.into()).is_some()
        })
    }

    /// Seq one past its last leaf.
    pub(crate) fn next(&self) -> u64 {
        self.first + u64::from(self.count)
    }
}

/// One origin's data file, opened once and shared by every reader and the writer: reads are
/// positioned (`pread`), so they need no lock and no seek.
#[derive(Debug)]
pub(crate) struct LeafFile {
    path: PathBuf,
    file: File,
}

impl LeafFile {
    fn io(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates the (empty) data file of a newly registered origin. A file already there is
    /// left from a batch that registered this id and never committed: its bytes are nobody's.
    pub(crate) fn create(dir: &Path, id: u32) -> Result<LeafFile, StoreError> {
        let path = file_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(LeafFile { path, file })
    }

    /// Writes `data` (whole blocks) at `at`, the committed end, and makes it durable. On
    /// failure the file is cut back to `at` (see [`LeafFile::truncate`]).
    pub(crate) fn append(&self, data: &[u8], at: u64) -> Result<(), StoreError> {
        self.file
            .write_all_at(data, at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))
    }

    /// Cuts the file back to `len` bytes, so that nothing past the committed end is ever
    /// overwritten in place with other bytes.
    pub(crate) fn truncate(&self, len: u64) -> Result<(), StoreError> {
        self.file.set_len(len).map_err(|e| self.io(e))
    }

    pub(crate) fn len(&self) -> Result<u64, StoreError> {
        Ok(self.file.metadata().map_err(|e| self.io(e))?.len())
    }

    /// Reads and decompresses the block `meta` places, checking it holds what the index says.
    fn read_block(&self, meta: &BlockMeta, origin: &str) -> Result<Block, StoreError> {
        let compressed = self.read_compressed(meta, origin)?;
        Block::unpack(meta.first, meta.count, meta.raw_len, &compressed).map_err(|why| {
            StoreError::corrupt(format!(
                "origin {origin}: the leaf block of leaves {}..{} {why}",
                meta.first,
                meta.next()
            ))
        })
    }

    /// The block `meta` places as stored: one zstd frame.
    fn read_compressed(&self, meta: &BlockMeta, origin: &str) -> Result<Vec<u8>, StoreError> {
        let len = usize::try_from(meta.end - meta.start).map_err(|_| {
            StoreError::corrupt(format!(
                "origin {origin}: the leaf block of leaves {}..{} is too large",
                meta.first,
                meta.next()
            ))
        })?;
        let mut compressed = vec![0; len];
        self.read_exact_at(&mut compressed, meta.start, origin)?;
        Ok(compressed)
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64, origin: &str) -> Result<(), StoreError> {
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                StoreError::corrupt(format!(
                    "origin {origin}: leaf file {} ends before byte {}",
                    self.path.display(),
                    at + buf.len() as u64
                ))
            } else {
                self.io(e)
            }
        })
    }
}

/// One decompressed block: its leaves concatenated and where each ends.
#[derive(Debug)]
pub(crate) struct Block {
    first: u64,
    data: Vec<u8>,
    /// Offset in `data` of each leaf's start, and of the end of the last: `count + 1` values.
    bounds: Vec<usize>,
}

impl Block {
    /// Decompresses `compressed`, a block of `count` leaves from seq `first`, `raw_len` bytes
    /// decompressed, checking it holds exactly that. Never allocates more than `raw_len` (plus
    /// a bound per leaf), whatever `compressed` says of itself.
    fn unpack(first: u64, count: u32, raw_len: u32, compressed: &[u8]) -> Result<Block, String> {
        if count == 0 {
            return Err("holds no leaves".to_owned());
        }
        // Each leaf's length takes 4 bytes of the header: a count the raw length cannot hold
        // is refused before anything is allocated for it.
        if 4 + 4 * u64::from(count) > u64::from(raw_len) {
            return Err(format!("cannot hold {count} leaves in {raw_len} bytes"));
        }
        let raw = zstd::block::decompress(compressed, raw_len as usize)
            .map_err(|e| format!("does not decompress: {e}"))?;
        if raw.len() != raw_len as usize {
            return Err("decompresses to another length than indexed".to_owned());
        }
        let mut d = Dec::new(&raw);
        if d.u32() != Some(count) {
            return Err("holds another number of leaves than indexed".to_owned());
        }
        let mut bounds = Vec::with_capacity(count as usize + 1);
        let mut at = 4 + 4 * count as usize;
        bounds.push(at);
        for _ in 0..count {
            let len = d.u32().ok_or("is cut short")?;
            at = at.saturating_add(len as usize);
            bounds.push(at);
        }
        if at != raw.len() {
            return Err("has leaf lengths that disagree with its size".to_owned());
        }
        Ok(Block {
            first,
            data: raw,
            bounds,
        })
    }

    fn leaf(&self, seq: u64) -> &[u8] {
        let i = (seq - self.first) as usize;
        &self.data[self.bounds[i]..self.bounds[i + 1]]
    }

    /// Seq one past its last leaf.
    fn next(&self) -> u64 {
        self.first + (self.bounds.len() - 1) as u64
    }

    /// Whether its leaves are `leaves`, byte for byte.
    fn holds(&self, leaves: &[Vec<u8>]) -> bool {
        leaves.len() + 1 == self.bounds.len()
            && leaves
                .iter()
                .zip(self.bounds.windows(2))
                .all(|(leaf, b)| leaf[..] == self.data[b[0]..b[1]])
    }
}

/// A leaf block as stored, the form a node serves a run of leaves in to a peer that takes it
/// (`PackedEntries` in the sync protocol): one zstd frame of `count u32 ‖ count leaf lengths
/// u32 ‖ the leaves`, `raw_len` bytes decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireBlock {
    pub count: u32,
    pub raw_len: u32,
    pub zstd: Vec<u8>,
}

/// A [`WireBlock`] received and decompressed: its leaves, which the receiver authenticates like
/// any others, and its compressed bytes, which [`crate::WriteBatch::append_packed`] stores as
/// they are, so a node that appends a peer's blocks has nothing to compress.
#[derive(Debug)]
pub struct PackedBlock {
    zstd: Vec<u8>,
    block: Block,
}

impl PackedBlock {
    /// Decompresses `wire`, refusing a block of more than `max_raw` bytes decompressed (before
    /// decompressing it) and one whose contents disagree with its count and length.
    pub fn unpack(wire: WireBlock, max_raw: usize) -> Result<PackedBlock, String> {
        if wire.raw_len as usize > max_raw {
            return Err(format!(
                "a leaf block of {} bytes decompressed is over the limit of {max_raw}",
                wire.raw_len
            ));
        }
        let block = Block::unpack(0, wire.count, wire.raw_len, &wire.zstd)
            .map_err(|why| format!("a leaf block of {} leaves {why}", wire.count))?;
        Ok(PackedBlock {
            zstd: wire.zstd,
            block,
        })
    }

    /// Number of leaves.
    pub fn count(&self) -> u32 {
        self.block.next() as u32
    }

    /// The leaves, in order.
    pub fn leaves(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.block
            .bounds
            .windows(2)
            .map(|b| &self.block.data[b[0]..b[1]])
    }

    fn raw_len(&self) -> u32 {
        u32::try_from(self.block.data.len()).expect("checked against a u32 on unpacking")
    }
}

/// Decompressed leaf blocks under (origin id, first seq), the most recently used kept, at most
/// the bound it was made with (`storage.leaf_cache_mb`), shared by every reader of the store.
/// Blocks are committed and never change, so a cached one is never stale: a key names the same
/// bytes for as long as the store is open (but after `replace_leaf`, fault injection built
/// only for tests, which drops the origin's cached blocks).
#[derive(Debug)]
pub(crate) struct BlockCache(BlockLru<(u32, u64), Block>);

impl BlockCache {
    pub(crate) fn new(max_bytes: usize) -> BlockCache {
        BlockCache(BlockLru::new(max_bytes))
    }

    /// The cached block of origin `id` that holds `seq`.
    fn get(&self, id: u32, seq: u64) -> Option<Arc<Block>> {
        self.0
            .get_at_most(&(id, seq), |&(i, _), b| i == id && seq < b.next())
    }

    fn put(&self, id: u32, block: Arc<Block>) {
        let bytes = block.data.len() + block.bounds.len() * std::mem::size_of::<usize>();
        self.0.put((id, block.first), block, bytes);
    }

    /// Drops every cached block of origin `id`: after [`replace_leaf`] they may hold bytes that
    /// are no longer the committed ones.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn forget(&self, id: u32) {
        self.0.forget(|&(i, _)| i == id);
    }
}

/// The block index of one origin in sled.
pub(crate) struct Index<'a> {
    db: &'a sled::Db,
    id: u32,
    origin: &'a str,
}

impl<'a> Index<'a> {
    pub(crate) fn new(db: &'a sled::Db, id: u32, origin: &'a str) -> Index<'a> {
        Index { db, id, origin }
    }

    fn meta(&self, key: &[u8], value: &[u8]) -> Result<BlockMeta, StoreError> {
        let first = keys::trailing_u64(key).filter(|_| key.len() == 13);
        first
            .and_then(|first| BlockMeta::decode(first, value))
            .ok_or_else(|| {
                StoreError::corrupt(format!(
                    "origin {}: leaf block entry {key:?} is malformed",
                    self.origin
                ))
            })
    }

    /// The block holding leaf `seq`.
    fn block_of(&self, seq: u64) -> Result<BlockMeta, StoreError> {
        let found = self
            .db
            .range(block_key(self.id, 0)..=block_key(self.id, seq))
            .next_back()
            .transpose()?;
        let meta = match found {
            Some((k, v)) => Some(self.meta(&k, &v)?),
            None => None,
        };
        meta.filter(|m| seq < m.next()).ok_or_else(|| {
            StoreError::corrupt(format!(
                "origin {}: no leaf block holds leaf {seq}",
                self.origin
            ))
        })
    }

    /// The last block of the origin, if it has any.
    fn last(&self) -> Result<Option<BlockMeta>, StoreError> {
        let found = self
            .db
            .range(block_key(self.id, 0)..=block_key(self.id, u64::MAX))
            .next_back()
            .transpose()?;
        match found {
            Some((k, v)) => Ok(Some(self.meta(&k, &v)?)),
            None => Ok(None),
        }
    }

    /// Bytes the blocks of the first `size` leaves occupy: where the committed part of the
    /// file ends. The blocks must hold exactly `size` leaves: a block boundary always falls on
    /// a committed size, as a block never spans two batches.
    pub(crate) fn committed_end(&self, size: u64) -> Result<u64, StoreError> {
        let last = self.last()?;
        let held = last.map_or(0, |m| m.next());
        if held > size {
            return Err(StoreError::corrupt(format!(
                "origin {}: metadata says {size} entries, the log holds more",
                self.origin
            )));
        }
        if held < size {
            return Err(StoreError::corrupt(format!(
                "origin {}: metadata says {size} entries, its leaf blocks hold {held}",
                self.origin
            )));
        }
        Ok(last.map_or(0, |m| m.end))
    }
}

/// Reads one origin's committed leaves: block places from sled, blocks from the file,
/// decompressed through the store's [`BlockCache`]. The caller bounds every seq by the committed
/// size it read from the origin table.
pub(crate) struct Reader<'a> {
    index: Index<'a>,
    file: &'a LeafFile,
    cache: &'a BlockCache,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(
        db: &'a sled::Db,
        id: u32,
        origin: &'a str,
        file: &'a LeafFile,
        cache: &'a BlockCache,
    ) -> Reader<'a> {
        Reader {
            index: Index::new(db, id, origin),
            file,
            cache,
        }
    }

    /// The decompressed block holding leaf `seq`.
    fn block(&self, seq: u64) -> Result<Arc<Block>, StoreError> {
        if let Some(block) = self.cache.get(self.index.id, seq) {
            return Ok(block);
        }
        let meta = self.index.block_of(seq)?;
        let block = Arc::new(self.file.read_block(&meta, self.index.origin)?);
        self.cache.put(self.index.id, Arc::clone(&block));
        Ok(block)
    }

    /// Leaf `seq`, exactly as appended.
    pub(crate) fn leaf(&self, seq: u64) -> Result<Vec<u8>, StoreError> {
        Ok(self.block(seq)?.leaf(seq).to_vec())
    }

    /// The blocks from `start` below `end`, as stored, at most `max_entries` leaves and about
    /// `max_bytes` of them (one block may be larger); see [`PackedRun`].
    pub(crate) fn packed(
        &self,
        start: u64,
        end: u64,
        max_entries: u64,
        max_bytes: usize,
    ) -> Result<PackedRun, StoreError> {
        let mut metas: Vec<BlockMeta> = Vec::new();
        let mut bytes = 0;
        let mut next = start;
        let range = block_key(self.index.id, start)..block_key(self.index.id, end);
        for item in self.index.db.range(range) {
            let (k, v) = item?;
            let meta = self.index.meta(&k, &v)?;
            let size = usize::try_from(meta.end - meta.start).unwrap_or(usize::MAX);
            let full = (!metas.is_empty() && bytes + size > max_bytes)
                || meta.next() - start > max_entries;
            if meta.first != next || meta.next() > end || full {
                break;
            }
            bytes += size;
            next = meta.next();
            metas.push(meta);
        }
        let (Some(first), Some(last)) = (metas.first(), metas.last()) else {
            let upto = self.index.block_of(start)?.next().min(end);
            return Ok(PackedRun::Loose { upto });
        };
        // Blocks appended one after another lie end to end in the file: one read for the run
        // (only a rewritten block, `replace_leaf`'s, lies elsewhere).
        let span = BlockMeta {
            end: last.end,
            ..*first
        };
        let run = if metas.windows(2).all(|w| w[0].end == w[1].start) {
            Some(self.file.read_compressed(&span, self.index.origin)?)
        } else {
            None
        };
        metas
            .iter()
            .map(|meta| {
                let zstd = match &run {
                    Some(run) => run
                        [(meta.start - first.start) as usize..(meta.end - first.start) as usize]
                        .to_vec(),
                    None => self.file.read_compressed(meta, self.index.origin)?,
                };
                Ok(WireBlock {
                    count: meta.count,
                    raw_len: meta.raw_len,
                    zstd,
                })
            })
            .collect::<Result<_, StoreError>>()
            .map(PackedRun::Blocks)
    }

    /// Calls `f` with each of leaves `start..start + n`, in order, a block at a time.
    fn each_leaf(&self, start: u64, n: u64, mut f: impl FnMut(&[u8])) -> Result<(), StoreError> {
        let end = start + n;
        let mut seq = start;
        while seq < end {
            let block = self.block(seq)?;
            let upto = block.next().min(end);
            (seq..upto).for_each(|s| f(block.leaf(s)));
            seq = upto;
        }
        Ok(())
    }

    /// The RFC 6962 leaf hashes of leaves `start..start + n`, hashed in their blocks.
    pub(crate) fn leaf_hashes(&self, start: u64, n: u64) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << 16));
        self.each_leaf(start, n, |leaf| out.push(merkle::leaf_hash(leaf)))?;
        Ok(out)
    }

    /// Leaves `start..start + n`, a block at a time.
    pub(crate) fn leaves(&self, start: u64, n: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << 16));
        self.each_leaf(start, n, |leaf| out.push(leaf.to_vec()))?;
        Ok(out)
    }
}

/// A run of committed leaves as [`crate::StoreReader::packed_leaves`] gives it.
#[derive(Debug, PartialEq, Eq)]
pub enum PackedRun {
    /// Whole blocks, the first starting at the seq asked for.
    Blocks(Vec<WireBlock>),
    /// The seq asked for is inside a block, or its block reaches past the end asked for or
    /// holds more leaves than asked for: the leaves up to `upto` (the block's end, or the end
    /// asked for) are to be sent loose.
    Loose { upto: u64 },
}

/// Compresses `leaves`, the leaves `first..` a batch appends to origin `id`, into blocks
/// written from `at`, the committed end of its file. Returns the bytes to write there; adds the
/// blocks' index entries to `batch`. Where one of `packed` (by first seq) holds exactly the
/// leaves at its place, it is written as it came instead, with nothing to compress.
pub(crate) fn write_blocks(
    batch: &mut sled::Batch,
    id: u32,
    first: u64,
    at: u64,
    leaves: &[Vec<u8>],
    packed: &[(u64, Arc<PackedBlock>)],
    path: &Path,
) -> Result<Vec<u8>, StoreError> {
    // The leaves cut into blocks: the packed ones where they fit, the rest in stretches between
    // them, each cut into blocks of about equal size, so a stretch a little over BLOCK_BYTES
    // does not end in a small block that compresses poorly.
    let mut pieces: Vec<Piece> = Vec::new();
    let mut i = 0;
    let mut hints = packed.iter().peekable();
    while i < leaves.len() {
        let seq = first + i as u64;
        while hints.next_if(|(s, _)| *s < seq).is_some() {}
        let stretch_end = match hints.peek() {
            Some((s, block)) if *s == seq => {
                let n = block.count() as usize;
                if leaves
                    .get(i..i + n)
                    .is_some_and(|these| block.block.holds(these))
                {
                    pieces.push(Piece::Packed(block));
                    i += n;
                    hints.next();
                    continue;
                }
                // A packed block that does not hold the leaves appended at its place (a
                // caller's mistake) is not written: they are compressed like any others.
                debug_assert!(
                    false,
                    "a packed block at {seq} does not hold the leaves there"
                );
                hints.next();
                continue;
            }
            Some((s, _)) => {
                usize::try_from(s - first).map_or(leaves.len(), |s| s.min(leaves.len()))
            }
            None => leaves.len(),
        };
        cut(&leaves[i..stretch_end], &mut pieces);
        i = stretch_end;
    }
    // Compressing is the receive path's largest CPU cost after hashing, and each block's is
    // independent: a catch-up's run of 1,024 leaves makes about nine blocks, split over the
    // cores (scoped threads; the caller is a blocking thread already).
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let loose: Vec<&[Vec<u8>]> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Loose(these) => Some(*these),
            Piece::Packed(..) => None,
        })
        .collect();
    // One compressor a thread; a block's result is its bytes and its raw length.
    let compressed = credex_core::parallel::map_chunks(&loose, 2, |_, blocks| {
        let mut compressor = zstd::block::Compressor::new();
        let mut raw = Vec::new();
        blocks
            .iter()
            .map(|these| {
                encode_block(these, &mut raw);
                let compressed = compressor.compress(&raw, LEVEL).map_err(io)?;
                Ok((
                    compressed,
                    u32::try_from(raw.len()).expect("block under 4 GiB"),
                ))
            })
            .collect()
    })
    .into_iter()
    .collect::<Result<Vec<(Vec<u8>, u32)>, StoreError>>()?;
    let mut compressed = compressed.into_iter();
    let mut out = Vec::new();
    let mut seq = first;
    for piece in &pieces {
        let start = at + out.len() as u64;
        let (count, raw_len) = match piece {
            Piece::Packed(block) => {
                out.extend_from_slice(&block.zstd);
                (block.count() as usize, block.raw_len())
            }
            Piece::Loose(these) => {
                let (bytes, raw_len) = compressed.next().expect("one compressed block a piece");
                out.extend_from_slice(&bytes);
                (these.len(), raw_len)
            }
        };
        let meta = BlockMeta {
            first: seq,
            count: count as u32,
            start,
            end: at + out.len() as u64,
            raw_len,
        };
        batch.insert(&block_key(id, seq)[..], meta.encode());
        seq += count as u64;
    }
    Ok(out)
}

/// One block of an apply: leaves to compress, or a packed block holding the leaves at its place.
enum Piece<'a> {
    Loose(&'a [Vec<u8>]),
    Packed(&'a PackedBlock),
}

/// Cuts a stretch of leaves into blocks of about equal size, at most [`BLOCK_BYTES`] each
/// (more only for a single larger leaf).
fn cut<'a>(leaves: &'a [Vec<u8>], pieces: &mut Vec<Piece<'a>>) {
    let total: usize = leaves.iter().map(Vec::len).sum();
    let target = total.div_ceil(total.div_ceil(BLOCK_BYTES).max(1));
    let mut rest = leaves;
    while !rest.is_empty() {
        // Leaves until the target size is reached: every block but the last reaches it, so
        // there are at most as many blocks as the target was computed for.
        let mut take = 1;
        let mut bytes = rest[0].len();
        while take < rest.len() && bytes < target {
            bytes += rest[take].len();
            take += 1;
        }
        let (these, tail) = rest.split_at(take);
        pieces.push(Piece::Loose(these));
        rest = tail;
    }
}

/// Replaces leaf `seq` of origin `id` with `leaf`, leaving everything else as committed: the
/// size, the tree hashes, every other leaf. For fault injection only (`Store::tamper_leaf`).
///
/// Committed bytes are never rewritten in place, so the block holding the leaf is rebuilt with
/// the new leaf and recompressed, and it and every later block of the origin (copied byte for
/// byte) are written at the committed end of the file and synced; only then does one sled batch
/// point their index entries at the new copies. The old bytes stay in the file as dead space.
/// A crash in between leaves a torn tail that open cuts off, as after a failed apply.
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn replace_leaf(
    db: &sled::Db,
    id: u32,
    origin: &str,
    file: &LeafFile,
    size: u64,
    seq: u64,
    leaf: &[u8],
) -> Result<(), StoreError> {
    let index = Index::new(db, id, origin);
    let at = index.committed_end(size)?;
    let meta = index.block_of(seq)?;
    let block = file.read_block(&meta, origin)?;
    let leaves: Vec<Vec<u8>> = (meta.first..meta.next())
        .map(|s| {
            if s == seq {
                leaf.to_vec()
            } else {
                block.leaf(s).to_vec()
            }
        })
        .collect();
    let mut raw = Vec::new();
    encode_block(&leaves, &mut raw);
    let mut data = zstd::block::compress(&raw, LEVEL).map_err(|e| file.io(e))?;
    let mut metas = vec![BlockMeta {
        start: at,
        end: at + data.len() as u64,
        raw_len: u32::try_from(raw.len()).expect("block under 4 GiB"),
        ..meta
    }];
    // The later blocks need no recompression; after an earlier rewrite they need not lie in
    // seq order in the file, so each is read from where the index says.
    let later = db.range(block_key(id, meta.next())..=block_key(id, u64::MAX));
    for item in later {
        let (k, v) = item?;
        let old = index.meta(&k, &v)?;
        let len = usize::try_from(old.end - old.start).expect("block in memory");
        let start = at + data.len() as u64;
        data.resize(data.len() + len, 0);
        let tail = data.len() - len;
        file.read_exact_at(&mut data[tail..], old.start, origin)?;
        metas.push(BlockMeta {
            start,
            end: start + len as u64,
            ..old
        });
    }
    file.append(&data, at)?;
    let mut batch = sled::Batch::default();
    for m in &metas {
        batch.insert(&block_key(id, m.first)[..], m.encode());
    }
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// A block's bytes before compression, into `raw`: `count u32 ‖ count leaf lengths u32 ‖ the
/// leaves`.
fn encode_block(these: &[Vec<u8>], raw: &mut Vec<u8>) {
    raw.clear();
    // Fewer than 2^32 leaves of under 4 GiB each: bounded protocol messages.
    raw.extend_from_slice(
        &u32::try_from(these.len())
            .expect("leaves in a block")
            .to_be_bytes(),
    );
    for leaf in these {
        let len = u32::try_from(leaf.len()).expect("leaf under 4 GiB");
        raw.extend_from_slice(&len.to_be_bytes());
    }
    for leaf in these {
        raw.extend_from_slice(leaf);
    }
}

/// Opens the data file of every origin in `table` (by id), cutting off any torn tail: bytes past
/// the committed end come from a batch whose sled write never became durable. A file shorter
/// than its committed end is corruption. Data files of ids no origin holds (a batch that
/// registered an origin and never committed) are deleted.
pub(crate) fn open_all(
    db: &sled::Db,
    dir: &Path,
    table: &OriginTable,
) -> Result<Vec<Arc<LeafFile>>, StoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(io(dir))?;
        sync_dir(dir.parent().unwrap_or(dir))?;
    }
    let mut files = Vec::with_capacity(table.names.len());
    for (id, name) in (0u32..).zip(&table.names) {
        let size = table.by_name[name].state.size;
        let path = file_path(dir, id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => LeafFile { path, file },
            // Origins registered by a checkpoint alone have a file too; a missing one is
            // only harmless while there is nothing that should be in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && size == 0 => {
                let file = LeafFile::create(dir, id)?;
                sync_dir(dir)?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::corrupt(format!(
                    "origin {name}: leaf file {} is missing, the log holds {size} entries",
                    path.display()
                )));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let end = Index::new(db, id, name).committed_end(size)?;
        let held = file.len()?;
        if held < end {
            return Err(StoreError::corrupt(format!(
                "origin {name}: leaf file {} holds {held} bytes, its {size} entries need {end}",
                file.path.display()
            )));
        }
        if held > end {
            file.truncate(end)?;
            file.file.sync_data().map_err(|e| file.io(e))?;
        }
        files.push(Arc::new(file));
    }
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = item.map_err(io(dir))?.path();
        let stray = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".dat"))
            .and_then(|id| id.parse::<u32>().ok())
            .is_some_and(|id| id as usize >= files.len());
        if stray {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(files)
}

/// Makes the creation of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })
}
