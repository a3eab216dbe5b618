//! Tree hashes. An origin's RFC 6962 tree, in the Go sumdb `tlog` layout that `tlog_tiles`
//! implements, has a hash at a *stored-hash index* for every leaf and every complete subtree:
//! about two an entry. The store keeps only the hashes of subtrees of [`CHUNK`] leaves and
//! more, packed [`PAGE`] to a sled value; one below that level is computed, when a root or a
//! proof asks for it, from the leaves of the chunk (the aligned run of [`CHUNK`] leaves) it
//! lies in.
//!
//! The kept hashes form the *chunk tree*: the tree whose leaves are the hashes of the log's
//! complete chunks. The full tree's hash at level `l ≥ 8`, node `n`, is the chunk tree's at
//! level `l − 8`, node `n`, so it is kept at the chunk tree's stored-hash index for that, and
//! the kept hashes of a log form one append-only array of about one per 128 entries. A batch
//! writes a page of them only when it completes a chunk; a proof reads O(log n) of them and
//! the lower hashes of at most two chunks (its leaf's and the tree's last, partial one).
//!
//! Why not keep every hash, as tiles do: the lower levels are 255 of every 256 hashes, 64 bytes
//! an entry in sled, which kept several times that on disk, and a batch of a few entries
//! rewrote the 8 KiB page holding the log's last hashes. Computing them again costs reading
//! the chunk's leaves (a block or two, usually cached) and hashing at most 256 of them, a
//! fraction of a millisecond; the store keeps the leaf hashes of the chunks it computed last
//! ([`ChunkCache`]), the last partial chunk of every log it appended to among them, so an
//! append reads no leaf back.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use credex_core::merkle::{Hash, HashReader, ProofError};
use sled::IVec;
use tlog_tiles::tlog::{
    Error as TlogError, node_hash, split_stored_hash_index, stored_hash_count, stored_hash_index,
};

use crate::error::StoreError;
use crate::keys;
use crate::leaves;
use crate::store::StoreReader;

/// The level of a chunk's hash: chunks are `2^CHUNK_LEVEL` leaves.
const CHUNK_LEVEL: u8 = 8;
/// Leaves per chunk: hashes of subtrees this large and larger are kept.
pub(crate) const CHUNK: u64 = 1 << CHUNK_LEVEL;
/// Kept hashes per page: 8 KiB values, the C2SP tile width.
pub(crate) const PAGE: u64 = 256;
const HASH_LEN: usize = 32;
/// Chunks whose leaf hashes the store keeps (8 KiB each).
const CACHED_CHUNKS: usize = 64;

pub(crate) fn page_key(id: u32, page: u64) -> [u8; 13] {
    keys::id_u64(keys::HASH, id, page)
}

/// Number of kept hashes of a log of `size` entries.
pub(crate) fn kept_count(size: u64) -> u64 {
    stored_hash_count(size / CHUNK)
}

/// Where the full tree's hash at stored-hash index `index` comes from: the subtree it is the
/// hash of, as leaves `start..start + len`, and, if it is kept, its index among the kept ones.
struct Place {
    start: u64,
    len: u64,
    kept: Option<u64>,
}

fn place(index: u64) -> Place {
    let (level, n) = split_stored_hash_index(index);
    Place {
        start: n << level,
        len: 1 << level,
        kept: (level >= CHUNK_LEVEL).then(|| stored_hash_index(level - CHUNK_LEVEL, n)),
    }
}

/// The hash of the complete subtree over `leaves`, leaf hashes of which there are a power of
/// two (a whole chunk's, for its kept hash).
pub(crate) fn subtree(leaves: &[Hash]) -> Hash {
    debug_assert!(leaves.len().is_power_of_two());
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| node_hash(p[0], p[1])).collect();
    }
    level[0]
}

/// The kept hashes `(index among the kept, hash)` in `hashes`, the full tree's stored hashes
/// from index `start` on, in order.
pub(crate) fn kept(start: u64, hashes: &[Hash]) -> impl Iterator<Item = (u64, Hash)> + '_ {
    (start..)
        .zip(hashes)
        .filter_map(|(i, h)| place(i).kept.map(|k| (k, *h)))
}

/// Why a hash could not be read.
#[derive(Debug)]
enum Failure {
    Missing(u64),
    MalformedPage(u64),
    Sled(sled::Error),
    Store(StoreError),
}

impl Failure {
    /// The store error it is, for `origin`.
    fn into_error(self, origin: &str) -> StoreError {
        match self {
            Failure::Missing(i) => {
                StoreError::corrupt(format!("origin {origin}: tree hash {i} is missing"))
            }
            Failure::MalformedPage(p) => {
                StoreError::corrupt(format!("origin {origin}: tree hash page {p} is malformed"))
            }
            Failure::Sled(e) => StoreError::Sled(e),
            Failure::Store(e) => e,
        }
    }
}

/// Reads kept hashes of one origin, keeping the last page fetched: tree hash and proof reads
/// ask for sorted indexes that cluster in a few pages.
struct PageCursor<'a> {
    db: &'a sled::Db,
    id: u32,
    page: Option<(u64, IVec)>,
}

impl<'a> PageCursor<'a> {
    fn new(db: &'a sled::Db, id: u32) -> PageCursor<'a> {
        PageCursor { db, id, page: None }
    }

    /// Kept hash `index`.
    fn get(&mut self, index: u64) -> Result<Hash, Failure> {
        let page = index / PAGE;
        if self.page.as_ref().is_none_or(|(p, _)| *p != page) {
            let value = self
                .db
                .get(page_key(self.id, page))
                .map_err(Failure::Sled)?
                .ok_or(Failure::Missing(index))?;
            if value.len() % HASH_LEN != 0 || value.len() > PAGE as usize * HASH_LEN {
                return Err(Failure::MalformedPage(page));
            }
            self.page = Some((page, value));
        }
        let (_, value) = self.page.as_ref().expect("fetched above");
        let at = (index % PAGE) as usize * HASH_LEN;
        let bytes = value
            .get(at..at + HASH_LEN)
            .ok_or(Failure::Missing(index))?;
        Ok(Hash(bytes.try_into().expect("slice of HASH_LEN")))
    }
}

/// The leaf hashes of recently used chunks, each a prefix of its chunk: `(origin id, chunk)` →
/// the hashes of its first leaves. Committed leaves never change, so a cached prefix is never
/// stale (but after `replace_leaf`, fault injection built only for tests, which drops the
/// origin's entries).
#[derive(Debug, Default)]
pub(crate) struct ChunkCache {
    /// Most recently used last.
    chunks: Mutex<VecDeque<CachedChunk>>,
}

/// `(origin id, chunk, the hashes of its first leaves)`.
type CachedChunk = (u32, u64, Arc<Vec<Hash>>);

impl ChunkCache {
    /// The cached leaf hashes of `chunk`, if at least `need` of them are.
    pub(crate) fn get(&self, id: u32, chunk: u64, need: usize) -> Option<Arc<Vec<Hash>>> {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let at = chunks
            .iter()
            .position(|(i, c, h)| *i == id && *c == chunk && h.len() >= need)?;
        let hit = chunks.remove(at).expect("position found above");
        let hashes = Arc::clone(&hit.2);
        chunks.push_back(hit);
        Some(hashes)
    }

    /// Keeps `hashes`, the leaf hashes of the first leaves of `chunk`, unless a longer prefix
    /// of the same chunk is kept already (a reader may have hashed more of it than an apply
    /// that committed earlier and reports later).
    pub(crate) fn put(&self, id: u32, chunk: u64, hashes: Arc<Vec<Hash>>) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let hashes = match chunks.iter().position(|(i, c, _)| (*i, *c) == (id, chunk)) {
            Some(at) => {
                let kept = chunks.remove(at).expect("position found above").2;
                if kept.len() >= hashes.len() {
                    kept
                } else {
                    hashes
                }
            }
            None => hashes,
        };
        if chunks.len() >= CACHED_CHUNKS {
            chunks.pop_front();
        }
        chunks.push_back((id, chunk, hashes));
    }

    /// Drops every cached chunk of origin `id`.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn forget(&self, id: u32) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        chunks.retain(|(i, _, _)| *i != id);
    }
}

/// The leaf hashes of leaves `chunk * CHUNK..upto` (committed, within the chunk), from `cache`
/// or hashed from the leaf file (and then cached). The result may hold more.
pub(crate) fn chunk_leaves(
    reader: &leaves::Reader<'_>,
    cache: &ChunkCache,
    id: u32,
    chunk: u64,
    upto: u64,
) -> Result<Arc<Vec<Hash>>, StoreError> {
    let start = chunk * CHUNK;
    let need = (upto - start) as usize;
    if let Some(hashes) = cache.get(id, chunk, need) {
        return Ok(hashes);
    }
    let hashes = Arc::new(reader.leaf_hashes(start, upto - start)?);
    cache.put(id, chunk, Arc::clone(&hashes));
    Ok(hashes)
}

/// The kept hash of complete chunk `chunk` of `origin` (the chunk tree's leaf), for the open
/// check.
pub(crate) fn kept_chunk_hash(
    db: &sled::Db,
    id: u32,
    origin: &str,
    chunk: u64,
) -> Result<Hash, StoreError> {
    PageCursor::new(db, id)
        .get(stored_hash_index(0, chunk))
        .map_err(|f| f.into_error(origin))
}

/// [`HashReader`] over one origin's committed tree, for roots and proofs: kept hashes from
/// sled, the others computed from the leaves.
///
/// Committed leaves and kept hashes never change (logs are append-only), so reads need no
/// snapshot; each read takes the committed size at its start and refuses indexes past it.
/// A store failure surfaces as `tlog::Error::InvalidInput`, as the trait's error type has no
/// I/O case.
#[derive(Debug, Clone)]
pub struct OriginHashes {
    pub(crate) store: StoreReader,
    pub(crate) origin: String,
}

impl HashReader for OriginHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let Some((id, size, file)) = self.store.leaf_file(&self.origin) else {
            return if indexes.is_empty() {
                Ok(Vec::new())
            } else {
                Err(TlogError::IndexesNotInTree)
            };
        };
        let db = self
            .store
            .db()
            .map_err(|e| TlogError::InvalidInput(e.to_string()))?;
        let reader = leaves::Reader::new(&db, id, &self.origin, &file, &self.store.inner.blocks);
        let mut pages = PageCursor::new(&db, id);
        // The leaf hashes of the chunk read last.
        let mut chunk: Option<(u64, Arc<Vec<Hash>>)> = None;
        let mut read = |i: u64| -> Result<Hash, Failure> {
            let p = place(i);
            let end = p.start.checked_add(p.len).ok_or(Failure::Missing(i))?;
            if end > size {
                return Err(Failure::Missing(i));
            }
            if let Some(k) = p.kept {
                return pages.get(k);
            }
            let c = p.start / CHUNK;
            let offset = (p.start - c * CHUNK) as usize;
            let need = offset + p.len as usize;
            if chunk
                .as_ref()
                .is_none_or(|(at, h)| *at != c || h.len() < need)
            {
                let upto = ((c + 1) * CHUNK).min(size);
                let hashes = chunk_leaves(&reader, &self.store.inner.chunks, id, c, upto)
                    .map_err(Failure::Store)?;
                chunk = Some((c, hashes));
            }
            let (_, hashes) = chunk.as_ref().expect("read above");
            Ok(subtree(&hashes[offset..need]))
        };
        indexes
            .iter()
            .map(|&i| {
                read(i).map_err(|f| match f {
                    Failure::Missing(_) => TlogError::IndexesNotInTree,
                    Failure::MalformedPage(_) => TlogError::MalformedHash,
                    other => TlogError::InvalidInput(other.into_error(&self.origin).to_string()),
                })
            })
            .collect()
    }
}

/// An origin's tree as a batch sees it: the hashes the batch computed from `tail_start` on,
/// and below that the kept hashes in sled and the leaf hashes of the committed leaves of the
/// chunk the batch began in (`edge`, from `edge_start`), which are all the committed lower
/// hashes an append or a root asks for. Later appends and the new root read the batch's own
/// hashes here, since they are not in sled yet.
pub(crate) struct Overlay<'a> {
    db: &'a sled::Db,
    id: u32,
    origin: &'a str,
    tail_start: u64,
    tail: &'a [Hash],
    edge_start: u64,
    edge: &'a [Hash],
    /// The real cause when a read fails, which `HashReader`'s error type cannot carry.
    failure: RefCell<Option<StoreError>>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(
        db: &'a sled::Db,
        id: u32,
        origin: &'a str,
        (tail_start, tail): (u64, &'a [Hash]),
        (edge_start, edge): (u64, &'a [Hash]),
    ) -> Overlay<'a> {
        Overlay {
            db,
            id,
            origin,
            tail_start,
            tail,
            edge_start,
            edge,
            failure: RefCell::new(None),
        }
    }

    /// The store error behind a failed tree computation.
    pub(crate) fn into_error(self, e: ProofError) -> StoreError {
        self.failure.into_inner().unwrap_or(StoreError::Merkle {
            origin: self.origin.to_owned(),
            source: e,
        })
    }

    fn fail(&self, f: Failure) -> TlogError {
        *self.failure.borrow_mut() = Some(f.into_error(self.origin));
        TlogError::IndexesNotInTree
    }

    fn committed(&self, cursor: &mut PageCursor<'_>, i: u64) -> Result<Hash, Failure> {
        let p = place(i);
        if let Some(k) = p.kept {
            return cursor.get(k);
        }
        let from = p
            .start
            .checked_sub(self.edge_start)
            .ok_or(Failure::Missing(i))?;
        usize::try_from(from)
            .ok()
            .and_then(|from| self.edge.get(from..from + p.len as usize))
            .map(subtree)
            .ok_or(Failure::Missing(i))
    }
}

impl HashReader for Overlay<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut cursor = PageCursor::new(self.db, self.id);
        indexes
            .iter()
            .map(|&i| match i.checked_sub(self.tail_start) {
                Some(offset) => usize::try_from(offset)
                    .ok()
                    .and_then(|o| self.tail.get(o).copied())
                    .ok_or_else(|| self.fail(Failure::Missing(i))),
                None => self.committed(&mut cursor, i).map_err(|f| self.fail(f)),
            })
            .collect()
    }
}

/// Adds to `batch` the pages holding `kept`, the kept hashes at `[start, start + len)`. A page
/// already partly filled is rewritten with its committed hashes first.
pub(crate) fn write_kept(
    db: &sled::Db,
    batch: &mut sled::Batch,
    id: u32,
    origin: &str,
    start: u64,
    kept: &[Hash],
) -> Result<(), StoreError> {
    let mut index = start;
    let mut rest = kept;
    while !rest.is_empty() {
        let page = index / PAGE;
        let slot = (index % PAGE) as usize;
        let take = rest.len().min(PAGE as usize - slot);
        let mut value = Vec::with_capacity((slot + take) * HASH_LEN);
        if slot > 0 {
            let committed = db.get(page_key(id, page))?.unwrap_or_default();
            if committed.len() != slot * HASH_LEN {
                return Err(StoreError::corrupt(format!(
                    "origin {origin}: tree hash page {page} holds {} bytes, expected {}",
                    committed.len(),
                    slot * HASH_LEN
                )));
            }
            value.extend_from_slice(&committed);
        }
        for h in &rest[..take] {
            value.extend_from_slice(&h.0);
        }
        batch.insert(&page_key(id, page)[..], value);
        index += take as u64;
        rest = &rest[take..];
    }
    Ok(())
}
