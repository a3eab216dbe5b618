//! [`Store`] and [`StoreReader`]: opening the database, the in-memory origin table, every
//! reader (on [`StoreReader`]), flushing (on [`Store`]).

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use credex_core::merkle::{self, Hash};

use crate::batch::{AccessRecord, QuarantineRecord};
use crate::codec::{self, Enc, OriginMeta, RecordValue, or_corrupt};
use crate::error::StoreError;
use crate::hashes::{self, ChunkCache, OriginHashes};
use crate::keys;
use crate::leaves::{self, BlockCache, LeafFile, PackedRun};
use crate::space::{self, Space};
use crate::standing::{Standing, ViewCounts};
use crate::view_index::{self, ViewIndex};

/// Tuning knobs for [`Store::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of sled page cache. Leaves are not in sled (they are read from their files
    /// through the OS page cache), so this caches metadata, tree hashes and indexes only.
    pub cache_capacity: u64,
    /// How long open waits for the database's file lock before reporting
    /// [`StoreError::Locked`]. Dropping the last [`Store`] does not release the lock at once:
    /// sled's thread pool lets go of the database a moment later, so a reopen in the same
    /// process (a restarted node in tests) must wait for it.
    pub lock_wait: Duration,
    /// Bytes kept free on the store's volume: a write is refused with
    /// [`StoreError::DiskFull`], before anything is written, while less is free (see
    /// `space`). 0 turns the check off.
    pub min_free: u64,
    /// Bytes of view index writes held in memory before they are written as a sorted run
    /// (`view_index`). Bounds the memtable; larger means fewer, larger runs and merges.
    pub index_memory: usize,
    /// Bytes of decompressed view index blocks kept for reads (`runs::RunCache`).
    pub index_cache: usize,
    /// Bytes of decompressed leaf blocks kept for reads (`leaves::BlockCache`); a block is
    /// about 64 KiB.
    pub leaf_cache: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        // sled's own default is 1 GiB. With the leaves in files, sled holds about 64 bytes
        // an entry of tree hashes plus the indexes, and the OS caches the leaf
        // files; 64 MiB covers the hot pages of a node on a small (2-core) machine, which also
        // holds its view in memory.
        StoreOptions {
            cache_capacity: 64 << 20,
            lock_wait: Duration::from_secs(5),
            // Far above what one batch writes (a catch-up run's few MiB of leaves, sled's
            // log buffers and 512 KiB segments), small beside any real data volume.
            min_free: 64 << 20,
            // About 70,000 entries' index writes: a run a few MiB compressed.
            index_memory: 32 << 20,
            index_cache: 8 << 20,
            // 32 blocks: 256 measured no faster in a catch-up of generated records and cost
            // 14 MiB more per store.
            leaf_cache: 2 << 20,
        }
    }
}

/// The committed state of one origin's log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OriginState {
    /// Number of entries; the next append's seq.
    pub size: u64,
    /// RFC 6962 root of the first `size` entries.
    pub root: Hash,
    /// Equivocation was seen: the log takes no more entries.
    pub forked: bool,
}

impl OriginState {
    /// An origin the store holds nothing of.
    pub const EMPTY: OriginState = OriginState {
        size: 0,
        root: tlog_tiles::tlog::EMPTY_HASH,
        forked: false,
    };
}

/// A checkpoint or witness state: the tree size it is about and the note, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNote {
    pub size: u64,
    pub note: Vec<u8>,
}

/// Where the latest indexed version of a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    pub version: u64,
    pub seq: u64,
}

/// A record found under a subject key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectHit {
    pub origin: String,
    pub record_id: String,
    pub version: u64,
    pub seq: u64,
}

/// A quarantined entry with its arrival number (global, increasing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub arrival: u64,
    pub record: QuarantineRecord,
}

/// Committed per-origin metadata, mirrored in memory so size and root reads cost no I/O.
/// Loaded at open, replaced after each successful apply.
#[derive(Debug, Default)]
pub(crate) struct OriginTable {
    pub(crate) by_name: HashMap<String, OriginMeta>,
    /// Names by interned id; ids are dense from 0.
    pub(crate) names: Vec<String>,
    /// Leaf data files by interned id: every registered origin has one.
    pub(crate) files: Vec<Arc<LeafFile>>,
}

/// Writer-only state, guarded by the writer mutex held for a whole apply.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) next_arrival: u64,
    /// Number the next access record gets: records `0..next_access` exist.
    pub(crate) next_access: u64,
    pub(crate) quarantine_counts: HashMap<String, u64>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// The database handle; `None` only while a failed handle is being replaced (`reopen`),
    /// or after a reopen failed, until the next write tries again. Readers take a clone of
    /// it ([`StoreReader::db`]) and hold no lock while they read.
    pub(crate) db: RwLock<Option<sled::Db>>,
    /// Where the store lives and how it was opened, for the watermark and for a reopen.
    pub(crate) path: PathBuf,
    pub(crate) options: StoreOptions,
    /// The folder of the leaf data files.
    pub(crate) leaf_dir: PathBuf,
    /// The last leaf blocks read, decompressed.
    pub(crate) blocks: BlockCache,
    /// The leaf hashes of the chunks of leaves whose lower tree hashes were computed last.
    pub(crate) chunks: ChunkCache,
    pub(crate) writer: Mutex<Counters>,
    pub(crate) origins: RwLock<OriginTable>,
    /// Seq the next change gets; also the number of changes ever pushed.
    pub(crate) change_head: AtomicU64,
    /// Set when sled failed inside `apply_batch`: its in-memory tree may then hold part of a
    /// batch that recovery would drop, so nothing more is written until a reopen.
    pub(crate) poisoned: AtomicBool,
    /// Why the handle failed (a sled write or flush error, a flush past its deadline), until
    /// the reopen that clears it; a failed handle is also poisoned.
    pub(crate) failure: Mutex<Option<String>>,
    /// Reopens of a failed handle so far.
    pub(crate) reopened: AtomicU64,
    /// The view's indexes (`view_index`): shared with the merge thread.
    pub(crate) index: Arc<ViewIndex>,
    /// The view's counts as of the last apply (`standing`), replaced by the writer.
    pub(crate) view_counts: RwLock<ViewCounts>,
    /// Entries listed invalid per origin as of the last apply, kept by the writer.
    pub(crate) invalid_counts: RwLock<HashMap<String, u64>>,
}

/// A read handle on the node's database: every reader of the store. Cheap to clone; all
/// clones share one database, and see each batch its [`Store`] applies whole or not at all.
/// Holds no write method: whoever holds only readers cannot write (the crate docs, "Writes,
/// durability and the single writer").
#[derive(Debug, Clone)]
pub struct StoreReader {
    pub(crate) inner: Arc<Inner>,
}

/// The node's database and its one writer: one sled tree with keyspace-prefixed keys. Opening
/// gives the only `Store` of the database; it is not `Clone`, so whoever owns it is the only
/// writer, and hands everyone else a [`StoreReader`] ([`Store::reader`]). It reads through
/// the same handle (`Deref` to [`StoreReader`]). See the crate docs for the layout and the
/// single-writer contract.
#[derive(Debug)]
pub struct Store {
    reader: StoreReader,
}

impl Deref for Store {
    type Target = StoreReader;

    fn deref(&self) -> &StoreReader {
        &self.reader
    }
}

impl Store {
    /// Opens (or creates) the store at `path` with default options.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, &StoreOptions::default())
    }

    /// Opens (or creates) the store at `path`, checks that every origin's metadata agrees with
    /// its log and tree, and loads the in-memory tables.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let db = open_db(path, options)?;
        check_format(&db)?;
        let mut table = load_origins(&db)?;
        let leaf_dir = leaves::dir(path);
        table.files = leaves::open_all(&db, &leaf_dir, &table)?;
        let counters = load_counters(&db)?;
        let view_counts = load_view_counts(&db)?;
        let invalid_counts = load_invalid_counts(&db, &table)?;
        let index = ViewIndex::open(&db, &view_index::dir(path), options)?;
        let change_head = match db.scan_prefix([keys::CHANGE]).next_back().transpose()? {
            None => 0,
            Some((k, v)) => {
                let first = or_corrupt(keys::trailing_u64(&k), || "change feed key".into())?;
                let count =
                    or_corrupt(codec::packed_count(&v), || format!("change block {first}"))?;
                first
                    .checked_add(u64::from(count))
                    .ok_or_else(|| StoreError::corrupt("change feed seq past u64::MAX"))?
            }
        };
        let store = Store::from_inner(Arc::new(Inner {
            db: RwLock::new(Some(db.clone())),
            path: path.to_owned(),
            options: options.clone(),
            leaf_dir,
            blocks: BlockCache::new(options.leaf_cache),
            chunks: ChunkCache::default(),
            writer: Mutex::new(counters),
            origins: RwLock::new(table),
            change_head: AtomicU64::new(change_head),
            poisoned: AtomicBool::new(false),
            failure: Mutex::new(None),
            reopened: AtomicU64::new(0),
            index: Arc::new(index),
            view_counts: RwLock::new(view_counts),
            invalid_counts: RwLock::new(invalid_counts),
        }));
        // The open checks hold a clone of the handle: dropped with the store if they fail.
        drop(db);
        for (name, state) in store.origins() {
            store.check_origin(&name, state)?;
        }
        Ok(store)
    }

    /// A read handle on this store's database, for anyone but its writer.
    pub fn reader(&self) -> StoreReader {
        self.reader.clone()
    }

    /// The writer over `inner`. Besides [`Store::open_with`], only the view index's merge
    /// thread builds one, from the handle it upgraded, for its own run listing and flush
    /// (`view_index`); a reopen takes its fresh store apart again ([`Store::into_inner`]).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Store {
        Store {
            reader: StoreReader { inner },
        }
    }

    pub(crate) fn into_inner(self) -> Arc<Inner> {
        self.reader.inner
    }

    pub(crate) fn table_mut(&self) -> RwLockWriteGuard<'_, OriginTable> {
        self.inner
            .origins
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every applied batch durable (fsync). Call once per batch before acknowledging it.
    /// The leaves of an applied batch are already durable (apply syncs them), so this is sled's
    /// flush alone.
    ///
    /// A flush that fails leaves sled's handle failed for good (sled 0.34 keeps the error):
    /// the store closes it and reopens on the next write (see `reopen`).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db()?.flush().map_err(|e| self.fail(e, "flush"))?;
        Ok(())
    }

    /// [`Store::flush`] without blocking the caller's thread: sled runs the fsync on its own
    /// thread pool. Unbounded: a sled whose log write failed can leave it waiting for ever
    /// (sled 0.34.7 `make_stable`); a caller holding locks uses [`Store::flush_within`].
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        db.flush_async().await.map_err(|e| self.fail(e, "flush"))?;
        Ok(())
    }

    /// [`Store::flush`] with a deadline: the fsync runs on a thread of its own, and if it has
    /// not finished after `deadline` the handle is treated as failed
    /// ([`StoreError::FlushTimeout`]; the thread is left to finish or not) and reopened on
    /// the next write. Blocks the caller's thread up to `deadline`.
    pub fn flush_within(&self, deadline: Duration) -> Result<(), StoreError> {
        let db = self.db()?;
        let (done, result) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("credex-store-flush".to_owned())
            .spawn(move || {
                let _ = done.send(db.flush());
            })
            .map_err(|e| StoreError::Failed {
                why: format!("cannot start a flush thread: {e}"),
            })?;
        match result.recv_timeout(deadline) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.fail(e, "flush")),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.mark_failed(format!(
                    "a flush outlasted its {} s deadline",
                    deadline.as_secs_f32()
                ));
                Err(StoreError::FlushTimeout { after: deadline })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let why = "the flush thread ended without an answer".to_owned();
                self.mark_failed(why.clone());
                Err(StoreError::Failed { why })
            }
        }
    }
}

impl StoreReader {
    /// A handle of the database, for one read or write. Refused while the store is closed
    /// after a failure (see `reopen`).
    pub(crate) fn db(&self) -> Result<sled::Db, StoreError> {
        let slot = self.inner.db.read().unwrap_or_else(|e| e.into_inner());
        slot.clone().ok_or_else(|| StoreError::Failed {
            why: self
                .failure()
                .unwrap_or_else(|| "the store is closed".to_owned()),
        })
    }

    /// Cheap consistency check run at open: the leaves of the last chunk are in the file and,
    /// if it is complete, hash to its kept hash; the kept hashes and the last chunk's leaves
    /// give the recorded root. (Open has already checked that sled's leaf blocks hold exactly
    /// the recorded size, cut the file to its committed end and refused one shorter than that.)
    fn check_origin(&self, name: &str, state: OriginState) -> Result<(), StoreError> {
        let (id, file) = {
            let table = self.table();
            let id = table.by_name[name].id;
            (id, Arc::clone(&table.files[id as usize]))
        };
        let db = self.db()?;
        let reader = leaves::Reader::new(&db, id, name, &file, &self.inner.blocks);
        if let Some(last) = state.size.checked_sub(1) {
            let chunk = last / hashes::CHUNK;
            let leaves = hashes::chunk_leaves(&reader, &self.inner.chunks, id, chunk, state.size)?;
            if state.size.is_multiple_of(hashes::CHUNK)
                && hashes::subtree(&leaves[..]) != hashes::kept_chunk_hash(&db, id, name, chunk)?
            {
                return Err(StoreError::corrupt(format!(
                    "origin {name}: the leaves of chunk {chunk} (leaves {}..{}) in the file do \
                     not match its kept tree hash",
                    chunk * hashes::CHUNK,
                    state.size
                )));
            }
        }
        let root = merkle::root(state.size, &self.hash_reader(name)).map_err(|source| {
            StoreError::Merkle {
                origin: name.to_owned(),
                source,
            }
        })?;
        if root != state.root {
            return Err(StoreError::corrupt(format!(
                "origin {name}: the tree hashes give root {root} at size {}, metadata says {}",
                state.size, state.root
            )));
        }
        Ok(())
    }

    pub(crate) fn table(&self) -> RwLockReadGuard<'_, OriginTable> {
        // The table is replaced wholesale per origin after a successful write, so a panic
        // elsewhere cannot leave it half-updated; a poisoned lock is still consistent.
        self.inner.origins.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn origin_id(&self, origin: &str) -> Option<u32> {
        self.table().by_name.get(origin).map(|m| m.id)
    }

    /// Committed state of `origin`; [`OriginState::EMPTY`] for one the store has never seen.
    pub fn origin_state(&self, origin: &str) -> OriginState {
        self.table()
            .by_name
            .get(origin)
            .map_or(OriginState::EMPTY, |m| m.state)
    }

    /// How many of `origin`'s entries the view's indexes hold: entries `0..indexed` (see
    /// [`WriteBatch::set_indexed`](crate::WriteBatch::set_indexed)). At most the size.
    pub fn indexed(&self, origin: &str) -> u64 {
        self.table().by_name.get(origin).map_or(0, |m| m.indexed)
    }

    /// Every origin the store holds anything of, by name.
    pub fn origins(&self) -> Vec<(String, OriginState)> {
        let mut all: Vec<_> = self
            .table()
            .by_name
            .iter()
            .map(|(name, m)| (name.clone(), m.state))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The origin's id, committed size and data file, read under one short table lock: the
    /// file read that follows needs no lock, as committed bytes never change.
    pub(crate) fn leaf_file(&self, origin: &str) -> Option<(u32, u64, Arc<LeafFile>)> {
        let table = self.table();
        let meta = table.by_name.get(origin)?;
        let file = Arc::clone(&table.files[meta.id as usize]);
        Some((meta.id, meta.state.size, file))
    }

    /// The leaf at `seq`, exactly as appended.
    pub fn leaf(&self, origin: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match self.leaf_file(origin) {
            Some((id, size, file)) if seq < size => {
                let db = self.db()?;
                let reader = leaves::Reader::new(&db, id, origin, &file, &self.inner.blocks);
                reader.leaf(seq).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Up to `limit` consecutive leaves from `start`.
    pub fn leaves(
        &self,
        origin: &str,
        start: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        match self.leaf_file(origin) {
            Some((id, size, file)) if start < size => {
                let n = (size - start).min(u64::try_from(limit).unwrap_or(u64::MAX));
                leaves::Reader::new(&self.db()?, id, origin, &file, &self.inner.blocks)
                    .leaves(start, n)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Leaves `start..end` as stored, for a peer that takes them packed: the whole blocks from
    /// `start` below `end`, at most `max_entries` leaves and about `max_bytes` of them (one
    /// block may be larger), or, when `start` is not where a block begins or its block does not
    /// fit, how far to send leaves loose (see [`PackedRun`]). `end` is at most the committed
    /// size.
    pub fn packed_leaves(
        &self,
        origin: &str,
        start: u64,
        end: u64,
        max_entries: u64,
        max_bytes: usize,
    ) -> Result<PackedRun, StoreError> {
        match self.leaf_file(origin) {
            Some((id, size, file)) if start < end && end <= size => {
                leaves::Reader::new(&self.db()?, id, origin, &file, &self.inner.blocks).packed(
                    start,
                    end,
                    max_entries,
                    max_bytes,
                )
            }
            held => Err(StoreError::UnknownSeq {
                origin: origin.to_owned(),
                what: "a packed read",
                seq: end.max(start.saturating_add(1)) - 1,
                size: held.map_or(0, |(_, size, _)| size),
            }),
        }
    }

    /// A [`HashReader`](credex_core::merkle::HashReader) over `origin`'s committed tree hashes, for roots and proofs.
    pub fn hash_reader(&self, origin: &str) -> OriginHashes {
        OriginHashes {
            store: self.clone(),
            origin: origin.to_owned(),
        }
    }

    /// The latest (largest) checkpoint stored for `origin`.
    pub fn checkpoint(&self, origin: &str) -> Result<Option<StoredNote>, StoreError> {
        self.sized_note(origin, keys::CHECKPOINT, "latest checkpoint")
    }

    /// The checkpoint stored for `origin` at tree size `size`.
    pub fn checkpoint_at(&self, origin: &str, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(None);
        };
        Ok(self
            .db()?
            .get(keys::id_u64(keys::CHECKPOINT_AT, id, size))?
            .map(|v| v.to_vec()))
    }

    /// Up to `limit` stored checkpoints of `origin` with size at least `from_size`, by size.
    pub fn checkpoints(
        &self,
        origin: &str,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredNote>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(Vec::new());
        };
        self.scan_u64(&keys::id(keys::CHECKPOINT_AT, id), from_size, limit)?
            .into_iter()
            .map(|(size, note)| Ok(StoredNote { size, note }))
            .collect()
    }

    /// The last checkpoint of `origin` this node cosigned as a witness.
    pub fn witness(&self, origin: &str) -> Result<Option<StoredNote>, StoreError> {
        self.sized_note(origin, keys::WITNESS, "witness state")
    }

    fn sized_note(
        &self,
        origin: &str,
        prefix: u8,
        what: &str,
    ) -> Result<Option<StoredNote>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(None);
        };
        let Some(v) = self.db()?.get(keys::id(prefix, id))? else {
            return Ok(None);
        };
        let (size, note) = or_corrupt(codec::decode_sized_note(&v), || {
            format!("{what} of origin {origin}")
        })?;
        Ok(Some(StoredNote { size, note }))
    }

    /// Every piece of equivocation evidence stored for `origin`, oldest first.
    pub fn evidence(&self, origin: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(Vec::new());
        };
        Ok(self
            .scan_u64(&keys::id(keys::EVIDENCE, id), 0, usize::MAX)?
            .into_iter()
            .map(|(_, blob)| blob)
            .collect())
    }

    /// Latest indexed version of a record and its seq.
    pub fn record(
        &self,
        origin: &str,
        record_id: &str,
    ) -> Result<Option<RecordLocation>, StoreError> {
        Ok(self
            .record_value(origin, record_id)?
            .map(|rec| RecordLocation {
                version: rec.version,
                seq: rec.seq,
            }))
    }

    /// A record's value in the record index, if it is indexed.
    fn record_value(
        &self,
        origin: &str,
        record_id: &str,
    ) -> Result<Option<RecordValue>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(None);
        };
        let Some(v) = self
            .inner
            .index
            .get(&keys::id_str(keys::RECORD, id, record_id))?
        else {
            return Ok(None);
        };
        decode_record(&v, origin, record_id).map(Some)
    }

    /// Every indexed version of a record, by version then seq (two entries at one version only
    /// from an equivocating origin). Bounded by the record's versions, not the log. The version
    /// history is written from a record's second version on; a record with one version has
    /// only its record value.
    pub fn versions(
        &self,
        origin: &str,
        record_id: &str,
    ) -> Result<Vec<RecordLocation>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(Vec::new());
        };
        if keys::check_len("record id", record_id).is_err() {
            return Ok(Vec::new());
        }
        let prefix = keys::versions_prefix(id, record_id);
        let mut out = Vec::new();
        for (k, _) in self.inner.index.scan_prefix(&prefix)? {
            let tail = &k[prefix.len()..];
            let loc = or_corrupt(
                (tail.len() == 16).then(|| RecordLocation {
                    version: u64::from_be_bytes(tail[..8].try_into().expect("8 bytes")),
                    seq: u64::from_be_bytes(tail[8..].try_into().expect("8 bytes")),
                }),
                || format!("version index key of {origin} record {record_id}"),
            )?;
            out.push(loc);
        }
        if out.is_empty() {
            out.extend(self.record(origin, record_id)?);
        }
        Ok(out)
    }

    /// Up to `limit` due-date entries on or before `day`, earliest first: (day, origin,
    /// record id).
    pub fn due(&self, day: u32, limit: usize) -> Result<Vec<(u32, String, String)>, StoreError> {
        self.dated(
            &[keys::DUE],
            &keys::due(day.saturating_add(1), 0, ""),
            limit,
        )
    }

    /// Up to `limit` passed due dates ([`crate::WriteBatch::mark_passed`]) after `day`,
    /// earliest first: (day, origin, record id).
    pub fn passed_after(
        &self,
        day: u32,
        limit: usize,
    ) -> Result<Vec<(u32, String, String)>, StoreError> {
        let start = keys::passed(day.saturating_add(1), 0, "");
        self.dated(&start, &[keys::PASSED + 1], limit)
    }

    /// Up to `limit` passed due dates on or before `day`, earliest first.
    pub fn passed_until(
        &self,
        day: u32,
        limit: usize,
    ) -> Result<Vec<(u32, String, String)>, StoreError> {
        let end = keys::passed(day.saturating_add(1), 0, "");
        self.dated(&[keys::PASSED], &end, limit)
    }

    /// Dated entries (`DUE` or `PASSED`) from `start` up to `end`.
    fn dated(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(u32, String, String)>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.inner.index.scan(start, end, limit)? {
            let (d, id, record_id) =
                or_corrupt(keys::split_dated(&k), || format!("due-date key {k:?}"))?;
            let origin = self.table().names.get(id as usize).cloned();
            let origin = or_corrupt(origin, || format!("due date names unknown origin id {id}"))?;
            out.push((d, origin, record_id));
        }
        Ok(out)
    }

    /// The day the view was last evaluated on ([`crate::WriteBatch::set_view_day`]), if one
    /// was recorded.
    pub fn view_day(&self) -> Result<Option<u32>, StoreError> {
        match self.db()?.get(keys::named(keys::COUNTER, keys::VIEW_DAY))? {
            None => Ok(None),
            Some(v) => {
                let day = <[u8; 4]>::try_from(&v[..]).ok().map(u32::from_be_bytes);
                or_corrupt(day, || "the view's day".into()).map(Some)
            }
        }
    }

    /// Every record whose latest version is indexed under `subject_key`, by origin id then
    /// record id.
    pub fn subject(&self, subject_key: &str) -> Result<Vec<SubjectHit>, StoreError> {
        if keys::check_len("subject key", subject_key).is_err() {
            return Ok(Vec::new());
        }
        let prefix = keys::subject_prefix(subject_key);
        let index = &self.inner.index;
        let mut hits = Vec::new();
        for (k, _) in index.scan_prefix(&prefix)? {
            let (id, record_id) = or_corrupt(keys::split_subject(&k, prefix.len()), || {
                format!("subject index key under {subject_key:?}")
            })?;
            let origin = self.table().names.get(id as usize).cloned();
            let origin = or_corrupt(origin, || {
                format!("subject {subject_key:?} names unknown origin id {id}")
            })?;
            let v = index.get(&keys::id_str(keys::RECORD, id, &record_id))?;
            let v = or_corrupt(v, || {
                format!(
                    "subject {subject_key:?} names record {record_id} of {origin}, which is not indexed"
                )
            })?;
            let rec = decode_record(&v, &origin, &record_id)?;
            hits.push(SubjectHit {
                origin,
                record_id,
                version: rec.version,
                seq: rec.seq,
            });
        }
        Ok(hits)
    }

    /// Why the entry at `seq` is invalid, if it is.
    pub fn invalid(&self, origin: &str, seq: u64) -> Result<Option<String>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(None);
        };
        let Some(v) = self.db()?.get(keys::id_u64(keys::INVALID, id, seq))? else {
            return Ok(None);
        };
        or_corrupt(codec::decode_str(&v).map(Some), || {
            format!("invalid reason of {origin} seq {seq}")
        })
    }

    /// Up to `limit` invalid entries of `origin` from `from_seq`: (seq, reason).
    pub fn invalid_entries(
        &self,
        origin: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let Some(id) = self.origin_id(origin) else {
            return Ok(Vec::new());
        };
        self.scan_u64(&keys::id(keys::INVALID, id), from_seq, limit)?
            .into_iter()
            .map(|(seq, v)| {
                let reason = or_corrupt(codec::decode_str(&v), || {
                    format!("invalid reason of {origin} seq {seq}")
                })?;
                Ok((seq, reason))
            })
            .collect()
    }

    /// How many of `origin`'s entries are listed invalid: a number kept by the writer, no scan.
    pub fn invalid_count(&self, origin: &str) -> u64 {
        self.inner
            .invalid_counts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .copied()
            .unwrap_or(0)
    }

    /// Up to `limit` quarantined entries, only `origin`'s if given, starting after `after` (the
    /// last item of the previous page). Entries are grouped by origin (in key order: shorter
    /// names first), then ordered by seq and arrival.
    pub fn quarantined(
        &self,
        origin: Option<&str>,
        after: Option<&Quarantined>,
        limit: usize,
    ) -> Result<Vec<Quarantined>, StoreError> {
        let prefix = match origin {
            Some(o) if keys::check_len("origin", o).is_err() => return Ok(Vec::new()),
            Some(o) => keys::quarantine_prefix(o),
            None => vec![keys::QUARANTINE],
        };
        let start = match after {
            Some(q) if keys::check_len("origin", &q.record.origin).is_ok() => {
                keys::after(&keys::quarantine(&q.record.origin, q.record.seq, q.arrival))
            }
            _ => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in self.db()?.range(start.max(prefix.clone())..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (origin, seq, arrival) =
                or_corrupt(keys::split_quarantine(&k), || "quarantine key".into())?;
            let record = or_corrupt(QuarantineRecord::decode_value(origin, seq, &v), || {
                format!("quarantine record {arrival}")
            })?;
            out.push(Quarantined { arrival, record });
        }
        Ok(out)
    }

    /// Number of quarantined entries per reason code.
    pub fn quarantine_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for item in self.db()?.scan_prefix([keys::QUARANTINE_COUNT]) {
            let (k, v) = item?;
            let reason = or_corrupt(codec::decode_str(&k[1..]), || "quarantine reason".into())?;
            let n = or_corrupt(codec::decode_u64(&v), || {
                format!("quarantine count of {reason}")
            })?;
            counts.insert(reason, n);
        }
        Ok(counts)
    }

    /// The opaque state kept for peer city `peer`.
    pub fn peer(&self, peer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db()?
            .get(keys::named(keys::PEER, peer))?
            .map(|v| v.to_vec()))
    }

    /// Every peer's opaque state, by peer name.
    pub fn peers(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.db()?
            .scan_prefix([keys::PEER])
            .map(|item| {
                let (k, v) = item?;
                let peer = or_corrupt(codec::decode_str(&k[1..]), || "peer name".into())?;
                Ok((peer, v.to_vec()))
            })
            .collect()
    }

    /// Up to `limit` view changes from change seq `from`: (change seq, change).
    pub fn changes(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // From the block holding `from` (the last one starting at or before it) on.
        let at = keys::u64_key(keys::CHANGE, from);
        let start = match self.db()?.range(&[keys::CHANGE][..]..=&at[..]).next_back() {
            Some(item) => item?.0.to_vec(),
            None => at.to_vec(),
        };
        let mut out = Vec::new();
        for item in self.db()?.range(start..) {
            let (k, v) = item?;
            if k.first() != Some(&keys::CHANGE) || out.len() >= limit {
                break;
            }
            let first = or_corrupt(keys::trailing_u64(&k).filter(|_| k.len() == 9), || {
                format!("change feed key {k:?}")
            })?;
            let block = or_corrupt(codec::decode_packed(&v), || format!("change block {first}"))?;
            for (seq, change) in (first..).zip(block) {
                if seq >= from && out.len() < limit {
                    out.push((seq, change));
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` access records from access number `from`, in the order written.
    pub fn accesses(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, AccessRecord)>, StoreError> {
        self.scan_u64(&[keys::ACCESS], from, limit)?
            .into_iter()
            .map(|(n, v)| {
                let record = or_corrupt(AccessRecord::decode(&v), || format!("access record {n}"))?;
                Ok((n, record))
            })
            .collect()
    }

    /// The view's counts as of the last apply: the sum of every record's standing
    /// ([`crate::Standing`]). A copy of a value kept in memory: no read of the database.
    pub fn view_counts(&self) -> ViewCounts {
        self.inner
            .view_counts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A record's standing as counted, if it is indexed.
    pub fn standing(&self, origin: &str, record_id: &str) -> Result<Option<Standing>, StoreError> {
        Ok(self
            .record_value(origin, record_id)?
            .map(|rec| rec.standing))
    }

    /// The change seq the next pushed change gets: changes `0..change_head()` exist.
    pub fn change_head(&self) -> u64 {
        self.inner.change_head.load(Ordering::Acquire)
    }

    /// Bytes the database occupies on disk: sled's files and the leaf data files.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let files: Vec<_> = self.table().files.clone();
        let mut total = self.db()?.size_on_disk()?;
        for file in files {
            total += file.len()?;
        }
        Ok(total)
    }

    /// Marks the handle failed because sled answered `e` to `what`, and returns `e`: sled
    /// 0.34 keeps a failed log write as its handle's global error, so the handle is done.
    pub(crate) fn fail(&self, e: sled::Error, what: &str) -> StoreError {
        self.mark_failed(format!("{what}: {e}"));
        e.into()
    }

    pub(crate) fn mark_failed(&self, why: String) {
        self.inner.poisoned.store(true, Ordering::Release);
        let mut failure = self.inner.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            tracing::error!(failure = %why, "store handle failed; the next write reopens it once the disk has room");
            *failure = Some(why);
        }
    }

    /// Why the handle failed, while it waits to be reopened.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many times a failed handle was reopened since the store was opened.
    pub fn reopens(&self) -> u64 {
        self.inner.reopened.load(Ordering::Acquire)
    }

    /// The store's volume against the margin kept free, and whether the handle has failed.
    pub fn space(&self) -> Result<Space, StoreError> {
        Ok(Space {
            free: space::free_bytes(&self.inner.path)?,
            min_free: self.inner.options.min_free,
            failed: self.failure(),
        })
    }

    /// Scans `prefix ‖ u64` keys from `from`, returning (u64, value).
    fn scan_u64(
        &self,
        prefix: &[u8],
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut start = prefix.to_vec();
        start.extend_from_slice(&from.to_be_bytes());
        let mut out = Vec::new();
        for item in self.db()?.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let n = or_corrupt(
                keys::trailing_u64(&k).filter(|_| k.len() == prefix.len() + 8),
                || format!("key {k:?} in keyspace {:#04x}", prefix[0]),
            )?;
            out.push((n, v.to_vec()));
        }
        Ok(out)
    }
}

fn decode_record(v: &[u8], origin: &str, record_id: &str) -> Result<RecordValue, StoreError> {
    or_corrupt(RecordValue::decode(v), || {
        format!("record index entry of {origin} record {record_id}")
    })
}

pub(crate) fn open_db(path: &Path, options: &StoreOptions) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity)
        .mode(sled::Mode::HighThroughput);
    let deadline = Instant::now() + options.lock_wait;
    loop {
        match config.open() {
            // sled reports a held lock only as this formatted io error.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        path: path.to_owned(),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return Ok(other?),
        }
    }
}

/// Checks the layout version, writing it into a new database.
fn check_format(db: &sled::Db) -> Result<(), StoreError> {
    match db.get([keys::FORMAT])? {
        Some(v) if v == keys::FORMAT_VERSION.as_bytes() => Ok(()),
        Some(v) if keys::FORMAT_UPGRADES.iter().any(|old| v == old.as_bytes()) => {
            db.insert([keys::FORMAT], keys::FORMAT_VERSION.as_bytes())?;
            db.flush()?;
            Ok(())
        }
        Some(v) => Err(StoreError::UnsupportedFormat {
            found: String::from_utf8_lossy(&v).into_owned(),
            expected: keys::FORMAT_VERSION,
        }),
        None if db.is_empty() => {
            db.insert([keys::FORMAT], keys::FORMAT_VERSION.as_bytes())?;
            db.flush()?;
            Ok(())
        }
        None => Err(StoreError::corrupt(
            "database has data but no format version",
        )),
    }
}

fn load_origins(db: &sled::Db) -> Result<OriginTable, StoreError> {
    let mut by_name = HashMap::new();
    let mut by_id: BTreeMap<u32, String> = BTreeMap::new();
    for item in db.scan_prefix([keys::ORIGIN]) {
        let (k, v) = item?;
        let name = or_corrupt(codec::decode_str(&k[1..]), || "origin name".into())?;
        let meta = or_corrupt(OriginMeta::decode(&v), || {
            format!("metadata of origin {name}")
        })?;
        if let Some(other) = by_id.insert(meta.id, name.clone()) {
            return Err(StoreError::corrupt(format!(
                "origins {other} and {name} share id {}",
                meta.id
            )));
        }
        by_name.insert(name, meta);
    }
    // Ids are handed out densely, so the table can index names by id.
    if let Some((&last, _)) = by_id.last_key_value()
        && last as usize + 1 != by_id.len()
    {
        return Err(StoreError::corrupt(format!(
            "origin ids are not dense: {} origins, highest id {last}",
            by_id.len()
        )));
    }
    Ok(OriginTable {
        by_name,
        names: by_id.into_values().collect(),
        files: Vec::new(),
    })
}

/// The counts of entries listed invalid per origin. A store of layout 7 kept none: each
/// origin's marks are counted once and the count stored.
fn load_invalid_counts(
    db: &sled::Db,
    table: &OriginTable,
) -> Result<HashMap<String, u64>, StoreError> {
    let mut counts = HashMap::new();
    for (name, meta) in &table.by_name {
        let key = keys::named(keys::COUNTER, &keys::invalid_counter(name));
        let n = match db.get(&key)? {
            Some(v) => or_corrupt(codec::decode_u64(&v), || {
                format!("count of {name}'s invalid entries")
            })?,
            None => {
                let mut n = 0;
                for item in db.scan_prefix(keys::id(keys::INVALID, meta.id)) {
                    item?;
                    n += 1;
                }
                if n > 0 {
                    db.insert(key, Enc::default().u64(n).finish())?;
                }
                n
            }
        };
        counts.insert(name.clone(), n);
    }
    Ok(counts)
}

fn load_view_counts(db: &sled::Db) -> Result<ViewCounts, StoreError> {
    let basis = db
        .get(keys::named(keys::COUNTER, keys::VIEW_BASIS))?
        .map(|b| b.to_vec());
    match db.get(keys::named(keys::COUNTER, keys::VIEW_COUNTS))? {
        None => Ok(ViewCounts {
            basis,
            ..ViewCounts::default()
        }),
        Some(v) => or_corrupt(ViewCounts::decode_totals(&v, basis), || {
            "the view's counts".into()
        }),
    }
}

fn load_counters(db: &sled::Db) -> Result<Counters, StoreError> {
    let next_arrival = match db.get(keys::named(keys::COUNTER, keys::ARRIVAL_COUNTER))? {
        None => 0,
        Some(v) => or_corrupt(codec::decode_u64(&v), || {
            "quarantine arrival counter".into()
        })?,
    };
    let mut quarantine_counts = HashMap::new();
    for item in db.scan_prefix([keys::QUARANTINE_COUNT]) {
        let (k, v) = item?;
        let reason = or_corrupt(codec::decode_str(&k[1..]), || "quarantine reason".into())?;
        let n = or_corrupt(codec::decode_u64(&v), || {
            format!("quarantine count of {reason}")
        })?;
        quarantine_counts.insert(reason, n);
    }
    let next_access = match db.scan_prefix([keys::ACCESS]).next_back().transpose()? {
        None => 0,
        Some((k, _)) => or_corrupt(keys::trailing_u64(&k), || "access log key".into())? + 1,
    };
    Ok(Counters {
        next_arrival,
        next_access,
        quarantine_counts,
    })
}
