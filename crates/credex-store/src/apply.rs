//! [`Store::apply`]: checks a [`WriteBatch`], computes its tree hashes and roots, and commits it
//! as one atomic sled batch.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use credex_core::merkle::{self, Hash};
use tlog_tiles::tlog::stored_hash_count;

use crate::batch::{AccessRecord, DateList, Op, QuarantineRecord, WriteBatch};
use crate::codec::{self, Enc, OriginMeta, RecordValue, or_corrupt};
use crate::error::StoreError;
use crate::hashes::{self, CHUNK, ChunkCache, Overlay};
use crate::keys;
use crate::leaves::{self, BlockCache, Index, LeafFile, PackedBlock};
use crate::standing::{self, Standing, SubjectTag, ViewCounts};
use crate::store::{OriginState, OriginTable, Store};
use crate::view_index::{IndexWrites, ViewIndex};

/// What a successful [`Store::apply`] committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// New state of every origin the batch touched, by name.
    pub origins: Vec<(String, OriginState)>,
    /// Change seqs given to the batch's [`WriteBatch::push_change`]s, in order.
    pub changes: Range<u64>,
}

impl Store {
    /// Commits everything in `batch` in one atomic write, or nothing if any operation is refused
    /// (see [`StoreError`]). Not durable until the next [`Store::flush`]; readers see the batch
    /// whole or not at all.
    ///
    /// A batch with appends first writes its leaves to their origins' data files and syncs them
    /// (`fdatasync`), then commits the sled batch: see the crate docs, "Crash consistency".
    ///
    /// Applies are serialised: the store is the only writer of its database and keeps per-origin
    /// sizes and roots in memory on that basis.
    pub fn apply(&self, batch: WriteBatch) -> Result<Applied, StoreError> {
        // The writer state is only replaced after a successful write, so a panic in an earlier
        // apply cannot have left it half-updated.
        let mut counters = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        // The free-space watermark, and the reopen of a failed handle (`reopen`).
        self.ready_to_write(&mut counters)?;
        let db = self.db()?;
        let first_change = self.inner.change_head.load(Ordering::Acquire);
        let plan = {
            let table = self.table();
            let mut plan = Plan {
                db: &db,
                leaf_dir: &self.inner.leaf_dir,
                blocks: &self.inner.blocks,
                chunks: &self.inner.chunks,
                index: &self.inner.index,
                index_writes: Vec::new(),
                origins: Origins {
                    table: &table,
                    next_id: u32::try_from(table.names.len()).expect("fewer than 2^32 origins"),
                    pending: HashMap::new(),
                },
                records: HashMap::new(),
                seq_refs: Vec::new(),
                required: HashMap::new(),
                next_arrival: counters.next_arrival,
                next_access: counters.next_access,
                counts: counters.quarantine_counts.clone(),
                changed_records: BTreeSet::new(),
                held_view: &self.inner.view_counts,
                view: None,
                subject_counts: HashMap::new(),
                invalid_held: &self.inner.invalid_counts,
                invalid_counts: HashMap::new(),
                invalid_marked: HashSet::new(),
                quarantined: HashMap::new(),
                changes: Vec::new(),
                next_change: first_change,
                batch: sled::Batch::default(),
            };
            for op in batch.ops {
                plan.op(op)?;
            }
            plan.finish()?
        };

        let mut new_files = self.write_leaves(&plan.leaf_writes)?.into_iter();
        let mut touched = plan.origins;
        touched.sort_by_key(|(_, meta, _)| meta.id);
        {
            // Held across the sled write so that a reader who has seen any of the batch in
            // sled (which blocks readers while it applies) then sees origin states at least as
            // new: sizes and roots never lag data already observed.
            let mut table = self.table_mut();
            if let Err(e) = db.apply_batch(plan.batch) {
                return Err(self.fail(e, "write"));
            }
            if let Some((writes, n)) = plan.index {
                self.inner.index.commit(writes, n);
            }
            for (name, meta, new) in &touched {
                if *new {
                    debug_assert_eq!(table.names.len(), meta.id as usize);
                    table.names.push(name.clone());
                    // New origins' files come in id order, as `touched` does.
                    table
                        .files
                        .push(new_files.next().expect("a file per new origin"));
                }
                table.by_name.insert(name.clone(), *meta);
            }
            self.inner
                .change_head
                .store(plan.next_change, Ordering::Release);
            if !plan.invalid_counts.is_empty() {
                self.inner
                    .invalid_counts
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(plan.invalid_counts);
            }
            if let Some(view) = plan.view {
                *self
                    .inner
                    .view_counts
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = view;
            }
        }
        for (id, chunk, hashes) in plan.chunks {
            self.inner.chunks.put(id, chunk, Arc::new(hashes));
        }
        counters.next_arrival = plan.next_arrival;
        counters.next_access = plan.next_access;
        counters.quarantine_counts = plan.counts;
        self.flush_index(&db);

        let mut origins: Vec<_> = touched
            .into_iter()
            .map(|(name, meta, _)| (name, meta.state))
            .collect();
        origins.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Applied {
            origins,
            changes: first_change..plan.next_change,
        })
    }

    /// Creates the data files of the batch's new origins (in id order, returned) and writes
    /// and syncs every origin's new leaves at its committed end. On failure every file written
    /// is cut back to its committed end, so a later batch never overwrites bytes in place; if
    /// that fails too, the handle is failed until a reopen (which truncates).
    fn write_leaves(&self, writes: &[LeafWrite]) -> Result<Vec<Arc<LeafFile>>, StoreError> {
        let mut new_files = Vec::new();
        let mut written = Vec::new();
        let result = self.try_write_leaves(writes, &mut new_files, &mut written);
        if result.is_err() {
            for (file, at) in written {
                if let Err(e) = file.truncate(at) {
                    self.mark_failed(format!(
                        "cutting back a leaf file after a failed write: {e}"
                    ));
                }
            }
        }
        result.map(|()| new_files)
    }

    fn try_write_leaves(
        &self,
        writes: &[LeafWrite],
        new_files: &mut Vec<Arc<LeafFile>>,
        written: &mut Vec<(Arc<LeafFile>, u64)>,
    ) -> Result<(), StoreError> {
        for w in writes {
            let file = if w.new {
                let file = Arc::new(LeafFile::create(&self.inner.leaf_dir, w.id)?);
                new_files.push(Arc::clone(&file));
                file
            } else {
                Arc::clone(&self.table().files[w.id as usize])
            };
            if !w.data.is_empty() {
                written.push((Arc::clone(&file), w.at));
                file.append(&w.data, w.at)?;
            }
        }
        if !new_files.is_empty() {
            // The new files' names must be durable before sled registers their origins.
            leaves::sync_dir(&self.inner.leaf_dir)?;
        }
        Ok(())
    }
}

/// The record index value of `record_id` as of this point of a batch (`records`), read from
/// the index the first time.
fn record_value<'r>(
    records: &'r mut HashMap<(u32, String), Option<RecordValue>>,
    index: &ViewIndex,
    id: u32,
    origin: &str,
    record_id: &str,
) -> Result<&'r mut Option<RecordValue>, StoreError> {
    Ok(match records.entry((id, record_id.to_owned())) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let stored = index.get(&keys::id_str(keys::RECORD, id, record_id))?;
            let stored = match stored {
                None => None,
                Some(v) => Some(or_corrupt(RecordValue::decode(&v), || {
                    format!("record index entry of {origin} record {record_id}")
                })?),
            };
            e.insert(stored)
        }
    })
}

/// A copy of the view's counts as the last apply left them.
fn read_counts(held: &RwLock<ViewCounts>) -> ViewCounts {
    held.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A batch being checked and turned into sled writes.
struct Plan<'a> {
    db: &'a sled::Db,
    /// The folder of the leaf data files, for error messages.
    leaf_dir: &'a std::path::Path,
    /// The store's caches, to read the committed leaf hashes of a log's last chunk.
    blocks: &'a BlockCache,
    chunks: &'a ChunkCache,
    /// The view's indexes, and the batch's writes to them in order (`view_index`).
    index: &'a ViewIndex,
    index_writes: IndexWrites,
    origins: Origins<'a>,
    /// Record index values as of this point of the batch; `None` = not indexed.
    records: HashMap<(u32, String), Option<RecordValue>>,
    /// Records whose value the batch changed, written once when it is finished.
    changed_records: BTreeSet<(u32, String)>,
    /// The view's counts before the batch, and as of this point of it once it moved them
    /// (`standing`): read only by a batch that moves them.
    held_view: &'a RwLock<ViewCounts>,
    view: Option<ViewCounts>,
    /// Records in force per subject, as of this point of the batch, for those it touched.
    subject_counts: HashMap<SubjectTag, u64>,
    /// Entries listed invalid per origin before the batch (read only for an origin the batch
    /// marks), and after it for those it marked.
    invalid_held: &'a RwLock<HashMap<String, u64>>,
    invalid_counts: HashMap<String, u64>,
    /// Seqs the batch marked invalid, by origin id.
    invalid_marked: HashSet<(u32, u64)>,
    /// Seqs named by index and invalid marks, checked against the final sizes.
    seq_refs: Vec<SeqRef>,
    /// Roots the batch's appends must pass through: origin → size → root.
    required: HashMap<String, std::collections::BTreeMap<u64, Hash>>,
    next_arrival: u64,
    next_access: u64,
    counts: HashMap<String, u64>,
    /// The view changes pushed, written as one block under the first's change seq.
    changes: Vec<Vec<u8>>,
    /// Leaves kept in quarantine per (origin, seq) as of this point of the batch, once read.
    quarantined: HashMap<(String, u64), Vec<Vec<u8>>>,
    next_change: u64,
    batch: sled::Batch,
}

struct SeqRef {
    origin: String,
    what: &'static str,
    seq: u64,
}

/// The batch's view of each origin it touches.
struct Origins<'a> {
    table: &'a OriginTable,
    next_id: u32,
    pending: HashMap<String, Pending>,
}

struct Pending {
    meta: OriginMeta,
    start: Option<OriginMeta>,
    /// Stored-hash index of the first hash this batch adds: the count of committed ones.
    tail_start: u64,
    /// Tree hashes computed in this batch, from `tail_start` on.
    tail: Vec<Hash>,
    /// Leaf hashes of the committed leaves from `edge_start`, the start of the chunk the
    /// batch's first append lies in (see `hashes`), read at that append.
    edge_start: u64,
    edge: Vec<Hash>,
    /// Size of the latest checkpoint (`None` = none stored), once read.
    checkpoint_size: Option<Option<u64>>,
    /// Size of the witness state (`None` = none stored), once read.
    witness_size: Option<Option<u64>>,
    /// Where the committed leaves end in the data file, read at the batch's first append.
    data_start: Option<u64>,
    /// The leaves the batch appends, compressed into blocks written at `data_start` in one
    /// write when the batch is finished.
    leaves: Vec<Vec<u8>>,
    /// Packed blocks that hold some of `leaves`, by first seq, ascending: stored as they are.
    packed: Vec<(u64, Arc<PackedBlock>)>,
}

/// Leaves to write to one origin's data file before the sled batch commits.
struct LeafWrite {
    id: u32,
    /// The origin is registered by this batch: its file is created.
    new: bool,
    /// The committed end of the file.
    at: u64,
    data: Vec<u8>,
}

/// Most different leaves kept in quarantine for one seq of one origin: what a peer can add
/// there beyond them is garbage it can make without end, so it is counted, not stored.
pub const QUARANTINE_PER_SEQ: usize = 16;
/// The reason code counted for a rejected leaf not kept because [`QUARANTINE_PER_SEQ`] are.
pub const QUARANTINE_FULL: &str = "quarantine_full";

/// What commit needs per touched origin: name, new metadata, newly registered.
type Touched = (String, OriginMeta, bool);

struct Finished {
    batch: sled::Batch,
    leaf_writes: Vec<LeafWrite>,
    origins: Vec<Touched>,
    /// The leaf hashes of each appended log's last chunk, for the [`ChunkCache`].
    chunks: Vec<(u32, u64, Vec<Hash>)>,
    next_arrival: u64,
    next_access: u64,
    counts: HashMap<String, u64>,
    /// The view's counts after the batch, if it moved them.
    view: Option<ViewCounts>,
    /// Entries listed invalid per origin after the batch, for those it marked.
    invalid_counts: HashMap<String, u64>,
    next_change: u64,
    /// The batch's view index writes and the number of their journal block.
    index: Option<(IndexWrites, u64)>,
}

impl Pending {
    /// The origin's tree as the batch sees it so far (see [`Overlay`]).
    fn overlay<'a>(&'a self, db: &'a sled::Db, origin: &'a str) -> Overlay<'a> {
        Overlay::new(
            db,
            self.meta.id,
            origin,
            (self.tail_start, &self.tail),
            (self.edge_start, &self.edge),
        )
    }
}

impl Origins<'_> {
    /// The pending state of `name`, registering a new origin under the next id.
    fn get(&mut self, name: &str) -> Result<&mut Pending, StoreError> {
        if !self.pending.contains_key(name) {
            keys::check_len("origin", name)?;
            let start = self.table.by_name.get(name).copied();
            let meta = start.unwrap_or_else(|| {
                let id = self.next_id;
                self.next_id += 1;
                OriginMeta {
                    id,
                    state: OriginState::EMPTY,
                    evidence: 0,
                    indexed: 0,
                }
            });
            self.pending.insert(
                name.to_owned(),
                Pending {
                    meta,
                    start,
                    tail_start: stored_hash_count(meta.state.size),
                    tail: Vec::new(),
                    edge_start: 0,
                    edge: Vec::new(),
                    checkpoint_size: None,
                    witness_size: None,
                    data_start: None,
                    leaves: Vec::new(),
                    packed: Vec::new(),
                },
            );
        }
        Ok(self.pending.get_mut(name).expect("inserted above"))
    }
}

impl Plan<'_> {
    fn op(&mut self, op: Op) -> Result<(), StoreError> {
        match op {
            Op::Append { origin, seq, leaf } => self.append(&origin, seq, leaf)?,
            Op::Packed {
                origin,
                first,
                block,
            } => {
                let o = self.origins.get(&origin)?;
                o.packed.push((first, block));
            }
            Op::SetCheckpoint { origin, size, note } => {
                let o = self.origins.get(&origin)?;
                let id = o.meta.id;
                let latest = note_size(
                    self.db,
                    &mut o.checkpoint_size,
                    keys::CHECKPOINT,
                    id,
                    || format!("latest checkpoint of origin {origin}"),
                )?;
                if latest.is_none_or(|l| size >= l) {
                    self.batch.insert(
                        &keys::id(keys::CHECKPOINT, id)[..],
                        codec::encode_sized_note(size, &note),
                    );
                    o.checkpoint_size = Some(Some(size));
                }
                self.batch
                    .insert(&keys::id_u64(keys::CHECKPOINT_AT, id, size)[..], note);
            }
            Op::SetWitness { origin, size, note } => {
                let o = self.origins.get(&origin)?;
                let id = o.meta.id;
                let stored = note_size(self.db, &mut o.witness_size, keys::WITNESS, id, || {
                    format!("witness state of origin {origin}")
                })?;
                if let Some(stored) = stored.filter(|&s| size < s) {
                    return Err(StoreError::WitnessRollback {
                        origin,
                        stored,
                        got: size,
                    });
                }
                self.batch.insert(
                    &keys::id(keys::WITNESS, id)[..],
                    codec::encode_sized_note(size, &note),
                );
                o.witness_size = Some(Some(size));
            }
            Op::AddEvidence { origin, evidence } => {
                let o = self.origins.get(&origin)?;
                let key = keys::id_u64(keys::EVIDENCE, o.meta.id, o.meta.evidence);
                self.batch.insert(&key[..], evidence);
                o.meta.evidence += 1;
            }
            Op::MarkForked { origin } => {
                self.origins.get(&origin)?.meta.state.forked = true;
            }
            Op::IndexRecord {
                origin,
                record_id,
                version,
                seq,
                subjects,
            } => self.index_record(origin, record_id, version, seq, subjects)?,
            Op::SetStanding {
                origin,
                record_id,
                standing,
            } => self.set_standing(origin, record_id, standing)?,
            Op::SetCountBasis(basis) => {
                self.view_mut().basis = basis;
            }
            Op::MarkInvalid {
                origin,
                seq,
                reason,
            } => {
                let id = self.origins.get(&origin)?.meta.id;
                let key = keys::id_u64(keys::INVALID, id, seq);
                // Counted once per seq: a mark already stored, or earlier in the batch, is not.
                if self.invalid_marked.insert((id, seq)) && self.db.get(&key[..])?.is_none() {
                    let count = match self.invalid_counts.entry(origin.clone()) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            let held = self.invalid_held.read().unwrap_or_else(|e| e.into_inner());
                            e.insert(held.get(&origin).copied().unwrap_or(0))
                        }
                    };
                    *count += 1;
                    self.batch.insert(
                        keys::named(keys::COUNTER, &keys::invalid_counter(&origin)),
                        Enc::default().u64(*count).finish(),
                    );
                }
                self.batch.insert(&key[..], reason.as_bytes());
                self.seq_refs.push(SeqRef {
                    origin,
                    what: "invalid mark",
                    seq,
                });
            }
            Op::Quarantine(record) => self.quarantine(record)?,
            Op::Dated {
                list,
                on,
                origin,
                record_id,
                day,
            } => {
                keys::check_len("record id", &record_id)?;
                let id = self.origins.get(&origin)?.meta.id;
                let key = match list {
                    DateList::Due => keys::due(day, id, &record_id),
                    DateList::Passed => keys::passed(day, id, &record_id),
                };
                self.index_writes.push((key, on.then(Vec::new)));
            }
            Op::SetViewDay(day) => {
                self.batch.insert(
                    keys::named(keys::COUNTER, keys::VIEW_DAY),
                    &day.to_be_bytes()[..],
                );
            }
            Op::PutPeer { peer, state } => {
                keys::check_len("peer name", &peer)?;
                self.batch.insert(keys::named(keys::PEER, &peer), state);
            }
            Op::RequireRoot { origin, size, root } => {
                let o = self.origins.get(&origin)?;
                if size < o.meta.state.size {
                    return Err(StoreError::RootMismatch {
                        origin,
                        size,
                        got: o.meta.state.root,
                        want: root,
                    });
                }
                self.required
                    .entry(origin.clone())
                    .or_default()
                    .insert(size, root);
                if size == o.meta.state.size {
                    self.check_required(&origin)?;
                }
            }
            Op::PushChange(change) => {
                self.changes.push(change);
                self.next_change += 1;
            }
            Op::LogAccess(access) => self.log_access(&access),
            Op::SetIndexed { origin, upto } => {
                let o = self.origins.get(&origin)?;
                if upto < o.meta.indexed {
                    return Err(StoreError::IndexRollback {
                        origin,
                        indexed: o.meta.indexed,
                        got: upto,
                    });
                }
                o.meta.indexed = upto;
                if let Some(last) = upto.checked_sub(1) {
                    self.seq_refs.push(SeqRef {
                        origin,
                        what: "indexed mark",
                        seq: last,
                    });
                }
            }
        }
        Ok(())
    }

    fn append(&mut self, origin: &str, seq: u64, leaf: Vec<u8>) -> Result<(), StoreError> {
        let table = self.origins.table;
        let o = self.origins.get(origin)?;
        let size = o.meta.state.size;
        if o.meta.state.forked {
            return Err(StoreError::Forked {
                origin: origin.to_owned(),
            });
        }
        if seq != size {
            return Err(if seq > size {
                StoreError::Gap {
                    origin: origin.to_owned(),
                    expected: size,
                    got: seq,
                }
            } else {
                StoreError::Conflict {
                    origin: origin.to_owned(),
                    seq,
                    size,
                }
            });
        }
        let id = o.meta.id;
        if o.data_start.is_none() {
            // The first append of the batch for this origin: `size` is the committed size.
            o.data_start = Some(Index::new(self.db, id, origin).committed_end(size)?);
            let chunk = size / CHUNK;
            o.edge_start = chunk * CHUNK;
            if size > o.edge_start {
                let file = &table.files[id as usize];
                let reader = leaves::Reader::new(self.db, id, origin, file, self.blocks);
                let hashes = hashes::chunk_leaves(&reader, self.chunks, id, chunk, size)?;
                o.edge = hashes[..(size - o.edge_start) as usize].to_vec();
            }
        }
        let new = {
            let overlay = o.overlay(self.db, origin);
            merkle::hashes_to_store(seq, &leaf, &overlay).map_err(|e| overlay.into_error(e))?
        };
        // The new hashes continue the stored-hash array exactly where the tail ends.
        let next = o.tail_start + o.tail.len() as u64;
        if new.first().is_some_and(|(i, _)| *i != next) {
            return Err(StoreError::corrupt(format!(
                "origin {origin}: leaf {seq} stores hashes from index {}, expected {next}",
                new[0].0
            )));
        }
        o.tail.extend(new.into_iter().map(|(_, h)| h));
        o.leaves.push(leaf);
        o.meta.state.size = size + 1;
        if self
            .required
            .get(origin)
            .is_some_and(|r| r.contains_key(&(size + 1)))
        {
            self.check_required(origin)?;
        }
        Ok(())
    }

    /// Checks the root `origin` has at its current size in the batch against the one required
    /// there.
    fn check_required(&mut self, origin: &str) -> Result<(), StoreError> {
        let o = self.origins.get(origin)?;
        let size = o.meta.state.size;
        let Some(want) = self.required.get_mut(origin).and_then(|r| r.remove(&size)) else {
            return Ok(());
        };
        let got = if size == o.start.map_or(0, |s| s.state.size) {
            o.meta.state.root
        } else {
            let overlay = o.overlay(self.db, origin);
            merkle::root(size, &overlay).map_err(|e| overlay.into_error(e))?
        };
        if got != want {
            return Err(StoreError::RootMismatch {
                origin: origin.to_owned(),
                size,
                got,
                want,
            });
        }
        Ok(())
    }

    fn index_record(
        &mut self,
        origin: String,
        record_id: String,
        version: u64,
        seq: u64,
        mut subjects: Vec<String>,
    ) -> Result<(), StoreError> {
        keys::check_len("record id", &record_id)?;
        for s in &subjects {
            keys::check_len("subject key", s)?;
        }
        let id = self.origins.get(&origin)?.meta.id;
        self.seq_refs.push(SeqRef {
            origin: origin.clone(),
            what: "record index",
            seq,
        });
        let current = record_value(&mut self.records, self.index, id, &origin, &record_id)?;
        // The version history (0x10) is written from a record's second version on: a record
        // with one version has its one location in its record value, which
        // `StoreReader::versions` reads when it finds no history (most records, and every record of
        // a catch-up's first pass, never have a second version: one sled write fewer each).
        if let Some(c) = current.as_ref() {
            self.index_writes.push((
                keys::version(id, &record_id, c.version, c.seq),
                Some(Vec::new()),
            ));
            self.index_writes.push((
                keys::version(id, &record_id, version, seq),
                Some(Vec::new()),
            ));
        }
        if current.as_ref().is_some_and(|c| c.version >= version) {
            return Ok(());
        }
        subjects.sort();
        subjects.dedup();
        if let Some(old) = current.as_ref() {
            for s in old.subjects.iter().filter(|s| !subjects.contains(s)) {
                self.index_writes
                    .push((keys::subject(s, id, &record_id), None));
            }
        }
        for s in &subjects {
            self.index_writes
                .push((keys::subject(s, id, &record_id), Some(Vec::new())));
        }
        let standing = current.as_ref().map(|c| c.standing).unwrap_or_default();
        *current = Some(RecordValue {
            version,
            seq,
            subjects,
            standing,
        });
        self.changed_records.insert((id, record_id));
        Ok(())
    }

    /// Sets an indexed record's standing and moves the view's counts by the difference
    /// (`standing`).
    fn set_standing(
        &mut self,
        origin: String,
        record_id: String,
        standing: Standing,
    ) -> Result<(), StoreError> {
        keys::check_len("record id", &record_id)?;
        let id = self.origins.get(&origin)?.meta.id;
        let current = record_value(&mut self.records, self.index, id, &origin, &record_id)?;
        let Some(current) = current.as_mut() else {
            return Err(StoreError::UnknownRecord { origin, record_id });
        };
        let old = std::mem::replace(&mut current.standing, standing);
        if old == standing {
            return Ok(());
        }
        self.changed_records.insert((id, record_id));
        let view = self.view.get_or_insert_with(|| read_counts(self.held_view));
        for (subject, by) in view.shift(old, standing).into_iter().flatten() {
            let held = match self.subject_counts.entry(subject) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let stored = match self.index.get(&keys::subject_count(&subject))? {
                        None => 0,
                        Some(v) => or_corrupt(standing::decode_subject_count(&v), || {
                            "a subject's count of records in force".into()
                        })?,
                    };
                    e.insert(stored)
                }
            };
            let before = *held;
            *held = if by > 0 {
                before + 1
            } else {
                before.saturating_sub(1)
            };
            match (before, *held) {
                (0, 1) => view.subjects += 1,
                (1, 0) => view.subjects = view.subjects.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    /// The view's counts as of this point of the batch, read the first time it moves them.
    fn view_mut(&mut self) -> &mut ViewCounts {
        self.view.get_or_insert_with(|| read_counts(self.held_view))
    }

    /// Keeps `record` unless the same leaf is already kept for its origin and seq (a peer
    /// sending it again on every reconnect adds nothing), or [`QUARANTINE_PER_SEQ`] different
    /// leaves are: then only its reason's count grows, under [`QUARANTINE_FULL`].
    fn quarantine(&mut self, record: QuarantineRecord) -> Result<(), StoreError> {
        keys::check_len("origin", &record.origin)?;
        keys::check_len("reason code", &record.reason)?;
        let slot = (record.origin.clone(), record.seq);
        let kept = match self.quarantined.entry(slot) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut leaves = Vec::new();
                let prefix = keys::quarantine_seq_prefix(&record.origin, record.seq);
                for item in self.db.scan_prefix(&prefix) {
                    let (k, v) = item?;
                    let stored = QuarantineRecord::decode_value(String::new(), record.seq, &v);
                    let stored = or_corrupt(stored, || format!("quarantine record {k:?}"))?;
                    leaves.push(stored.leaf);
                }
                e.insert(leaves)
            }
        };
        if kept.contains(&record.leaf) {
            return Ok(());
        }
        let reason = if kept.len() >= QUARANTINE_PER_SEQ {
            QUARANTINE_FULL.to_owned()
        } else {
            kept.push(record.leaf.clone());
            let arrival = self.next_arrival;
            self.next_arrival += 1;
            self.batch.insert(
                keys::quarantine(&record.origin, record.seq, arrival),
                record.encode_value(),
            );
            self.batch.insert(
                keys::named(keys::COUNTER, keys::ARRIVAL_COUNTER),
                Enc::default().u64(self.next_arrival).finish(),
            );
            record.reason
        };
        let count = self.counts.entry(reason.clone()).or_insert(0);
        *count += 1;
        self.batch.insert(
            keys::named(keys::QUARANTINE_COUNT, &reason),
            Enc::default().u64(*count).finish(),
        );
        Ok(())
    }

    fn log_access(&mut self, access: &AccessRecord) {
        self.batch.insert(
            &keys::u64_key(keys::ACCESS, self.next_access)[..],
            access.encode(),
        );
        self.next_access += 1;
    }

    fn finish(mut self) -> Result<Finished, StoreError> {
        // Each record value and subject count the batch changed, written once.
        for key in std::mem::take(&mut self.changed_records) {
            let value = self.records[&key]
                .as_ref()
                .expect("a changed record is indexed");
            self.index_writes.push((
                keys::id_str(keys::RECORD, key.0, &key.1),
                Some(value.encode()),
            ));
        }
        for (subject, n) in &self.subject_counts {
            let value = (*n > 0).then(|| standing::encode_subject_count(*n));
            self.index_writes
                .push((keys::subject_count(subject).to_vec(), value));
        }
        if let Some(view) = &self.view {
            self.batch.insert(
                keys::named(keys::COUNTER, keys::VIEW_COUNTS),
                view.encode_totals(),
            );
            let basis = keys::named(keys::COUNTER, keys::VIEW_BASIS);
            match &view.basis {
                Some(b) => self.batch.insert(basis, b.as_slice()),
                None => self.batch.remove(basis),
            }
        }
        let index = (!self.index_writes.is_empty()).then(|| {
            let n = self.index.journal(&self.index_writes, &mut self.batch);
            (std::mem::take(&mut self.index_writes), n)
        });
        if !self.changes.is_empty() {
            let first = self.next_change - self.changes.len() as u64;
            self.batch.insert(
                &keys::u64_key(keys::CHANGE, first)[..],
                codec::encode_packed(&self.changes),
            );
        }
        for r in &self.seq_refs {
            let size = self.origins.pending[&r.origin].meta.state.size;
            if r.seq >= size {
                return Err(StoreError::UnknownSeq {
                    origin: r.origin.clone(),
                    what: r.what,
                    seq: r.seq,
                    size,
                });
            }
        }
        let mut origins = Vec::with_capacity(self.origins.pending.len());
        let mut leaf_writes = Vec::new();
        let mut chunks = Vec::new();
        for (name, mut o) in self.origins.pending {
            let start_size = o.start.map_or(0, |s| s.state.size);
            if o.meta.state.size != start_size {
                let overlay = o.overlay(self.db, &name);
                o.meta.state.root =
                    merkle::root(o.meta.state.size, &overlay).map_err(|e| overlay.into_error(e))?;
                write_kept_hashes(self.db, &mut self.batch, &name, &o, start_size)?;
                chunks.push(last_chunk(&o, start_size));
            }
            let data = match o.data_start {
                Some(at) => leaves::write_blocks(
                    &mut self.batch,
                    o.meta.id,
                    start_size,
                    at,
                    &o.leaves,
                    &o.packed,
                    &leaves::file_path(self.leaf_dir, o.meta.id),
                )?,
                None => Vec::new(),
            };
            if o.start.is_none() || !data.is_empty() {
                leaf_writes.push(LeafWrite {
                    id: o.meta.id,
                    new: o.start.is_none(),
                    at: o.data_start.unwrap_or(0),
                    data,
                });
            }
            // A required root at a size the appends never reached.
            if let Some((&size, &want)) = self.required.get(&name).and_then(|r| r.first_key_value())
            {
                return Err(StoreError::RootMismatch {
                    origin: name,
                    size,
                    got: o.meta.state.root,
                    want,
                });
            }
            if o.start != Some(o.meta) {
                self.batch
                    .insert(keys::named(keys::ORIGIN, &name), o.meta.encode());
            }
            origins.push((name, o.meta, o.start.is_none()));
        }
        // New origins first, in id order: `write_leaves` returns their files in this order.
        leaf_writes.sort_by_key(|w| (!w.new, w.id));
        Ok(Finished {
            batch: self.batch,
            leaf_writes,
            origins,
            chunks,
            next_arrival: self.next_arrival,
            next_access: self.next_access,
            counts: self.counts,
            view: self.view,
            invalid_counts: self.invalid_counts,
            next_change: self.next_change,
            index,
        })
    }
}

/// Adds to `batch` the kept tree hashes among those `o` computed (see `hashes`), which continue
/// the kept ones of its committed log of `start_size` entries.
fn write_kept_hashes(
    db: &sled::Db,
    batch: &mut sled::Batch,
    origin: &str,
    o: &Pending,
    start_size: u64,
) -> Result<(), StoreError> {
    let start = hashes::kept_count(start_size);
    let mut kept = Vec::new();
    for (k, h) in hashes::kept(o.tail_start, &o.tail) {
        if k != start + kept.len() as u64 {
            return Err(StoreError::corrupt(format!(
                "origin {origin}: the batch keeps tree hash {k}, expected {}",
                start + kept.len() as u64
            )));
        }
        kept.push(h);
    }
    hashes::write_kept(db, batch, o.meta.id, origin, start, &kept)
}

/// The leaf hashes of the chunk holding the last leaf `o` appended, from the committed ones
/// (`edge`) and those the batch computed: `(origin id, chunk, hashes)`.
fn last_chunk(o: &Pending, start_size: u64) -> (u32, u64, Vec<Hash>) {
    let size = o.meta.state.size;
    let chunk = (size - 1) / CHUNK;
    let hashes = (chunk * CHUNK..size)
        .map(|seq| {
            if seq < start_size {
                o.edge[(seq - o.edge_start) as usize]
            } else {
                let at = tlog_tiles::tlog::stored_hash_index(0, seq) - o.tail_start;
                o.tail[at as usize]
            }
        })
        .collect();
    (o.meta.id, chunk, hashes)
}

/// The size in the sized note at `prefix ‖ id` (latest checkpoint, witness state), read from
/// sled at most once per batch through `cache`.
fn note_size(
    db: &sled::Db,
    cache: &mut Option<Option<u64>>,
    prefix: u8,
    id: u32,
    what: impl FnOnce() -> String,
) -> Result<Option<u64>, StoreError> {
    if let Some(size) = *cache {
        return Ok(size);
    }
    let size = match db.get(keys::id(prefix, id))? {
        None => None,
        Some(v) => Some(or_corrupt(codec::decode_sized_note(&v), what)?.0),
    };
    *cache = Some(size);
    Ok(size)
}
