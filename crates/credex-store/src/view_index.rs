//! The view's indexes — the record (`RECORD`), version (`VERSION`), subject (`SUBJECT`),
//! due-date (`DUE`, `PASSED`) and subject-count keyspaces — kept out of sled as a
//! log-structured merge tree: a memtable in memory, made durable by a journal in sled, flushed
//! to immutable sorted run files (`index/<n>.run`, [`crate::runs`]) that a background thread
//! merges.
//!
//! Why not in sled: these keys are random (record ids, subject keys, dates), and sled 0.34
//! rewrites a B-tree node for about every ten random inserts and keeps the old copies until a
//! segment falls below half live. Measured with `examples/index_amplification.rs` (200,000
//! entries, 256 a batch, a flush each): the three inserts an entry of layout 6 cost 763 bytes of
//! disk for 166 raw bytes and ran at 7,562 entries/s; halving the raw bytes (hashed subjects,
//! seqs for record ids) still cost 698 bytes. What sled charges is per random insert, not per
//! byte, and it bounded both the view's rate and durable publish (ARCHITECTURE.md
//! "Performance"). A run is written once, sorted and compressed, and rewritten only by merges.
//!
//! **Durability.** An apply's index writes go, in order, into one journal block
//! (`INDEX_JOURNAL ‖ n`, zstd) in the same atomic sled batch as the rest of the batch, and into
//! the memtable once sled has taken the batch. So the index is exactly as durable as the log
//! entries and view changes it was written with, and open rebuilds the memtable by replaying
//! the journal blocks the runs do not cover. When the memtable passes its bound
//! ([`crate::StoreOptions::index_memory`]) the writer writes it as a run, syncs the file and
//! the directory, and then, in one sled batch, lists the run (`INDEX_RUNS`) and removes the
//! journal blocks it covers. A crash before that batch is durable leaves an unlisted file,
//! which open deletes, and the journal, which it replays.
//!
//! **Merges.** Runs are listed newest first. After a flush, the newest runs are merged into one,
//! on a thread of their own, taking each next run while it is at most twice the size of those
//! already taken put together (and again once that merge is done), so the runs grow
//! geometrically: about log2(entries / memtable) of them. The merged
//! run replaces its inputs in the list in one sled write, which is flushed before the inputs are
//! deleted; a reader still iterating an input keeps its open file. A merge that includes the
//! oldest run drops tombstones, as nothing older can be shadowed.
//!
//! **Reads.** A point read looks in the memtable, then in the runs newest first (record keys
//! through each run's Bloom filter); a range read merges the memtable's range with every run's.
//! Readers hold the state's read lock for one bounded read; the writer takes the write lock
//! only to insert a batch's writes or swap a flushed memtable for its run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::codec::{self, Dec, Enc, or_corrupt};
use crate::error::StoreError;
use crate::keys;
use crate::runs::{self, Run, RunCache, RunEntry};
use crate::space;
use crate::store::{Inner, Store, StoreOptions, StoreReader};

/// What a memtable entry costs beyond its key and value (the map's node share and the
/// vectors' headers), for the memtable's bound.
const ENTRY_OVERHEAD: usize = 64;

/// Keys read one at a time (the record index, the per-subject counts of records in force),
/// which runs give a Bloom filter: a key a run does not hold costs no block read. Runs of
/// layout 7 hold no per-subject counts, so their filters, without them, answer right.
fn point_key(key: &[u8]) -> bool {
    matches!(key.first(), Some(&(keys::RECORD | keys::SUBJECT_COUNT)))
}

/// The folder of the run files, under the store's directory.
pub(crate) fn dir(store: &Path) -> PathBuf {
    store.join("index")
}

fn run_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n}.run"))
}

/// The index of one store.
#[derive(Debug)]
pub(crate) struct ViewIndex {
    dir: PathBuf,
    state: RwLock<State>,
    cache: Arc<RunCache>,
    /// Bytes the memtable may hold before it is written as a run.
    memory: usize,
    /// A merge is running.
    merging: AtomicBool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Writes since the newest run, `None` a removal.
    mem: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    mem_bytes: usize,
    /// Newest first, with their file numbers.
    runs: Vec<(u64, Arc<Run>)>,
    /// Journal blocks before this number are in the runs.
    covered: u64,
    /// Number of the next journal block.
    next_journal: u64,
    /// Number of the next run file.
    next_run: u64,
    /// Bumped by [`ViewIndex::replace`]: merges planned before it are not installed.
    generation: u64,
}

/// What the view index holds ([`StoreReader::index_sizes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSizes {
    /// Run files, and their entries (removals included) and bytes.
    pub runs: usize,
    pub run_entries: u64,
    pub run_bytes: u64,
    /// Writes held in memory not yet in a run, and the bytes counted against
    /// [`crate::StoreOptions::index_memory`].
    pub memory_entries: usize,
    pub memory_bytes: usize,
    /// Memory the runs keep (fence indexes, Bloom filters) and their block cache.
    pub resident_bytes: usize,
}

/// A key and its value, as a read returns them.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

/// Writes to the index, in order: key and value, `None` to remove (as a run holds them).
pub(crate) type IndexWrites = Vec<RunEntry>;

/// Two runs (or more) to merge into one, taken by [`ViewIndex::plan_merge`].
pub(crate) struct MergePlan {
    inputs: Vec<(u64, Arc<Run>)>,
    output: u64,
    drop_tombstones: bool,
    /// The state's generation when planned: a reopen in between voids the plan.
    generation: u64,
}

impl ViewIndex {
    /// Opens the index of the store whose database is `db`: the runs sled lists, the journal
    /// replayed into the memtable, and any run file sled does not list (a flush or merge that
    /// did not commit) deleted.
    /// [`crate::StoreOptions::index_memory`] bounds its memtable, `index_cache` its block cache.
    pub(crate) fn open(
        db: &sled::Db,
        dir: &Path,
        options: &StoreOptions,
    ) -> Result<ViewIndex, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let state = load(db, dir)?;
        Ok(ViewIndex {
            dir: dir.to_owned(),
            state: RwLock::new(state),
            cache: Arc::new(RunCache::new(options.index_cache)),
            memory: options.index_memory,
            merging: AtomicBool::new(false),
        })
    }

    /// Replaces the state with that of `fresh`, an index just opened on the same directory
    /// (the store's reopen after a failure).
    pub(crate) fn replace(&self, fresh: &ViewIndex) {
        let mut fresh = std::mem::take(&mut *fresh.write());
        let mut state = self.write();
        // A merge still running took a number the fresh listing does not know of.
        fresh.next_run = fresh.next_run.max(state.next_run);
        fresh.generation = state.generation + 1;
        *state = fresh;
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // The state is changed only in whole steps under the lock: a panic elsewhere cannot
        // leave it half-changed.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let state = self.read();
        if let Some(v) = state.mem.get(key) {
            return Ok(v.clone());
        }
        let bloom = point_key(key);
        for (_, run) in &state.runs {
            if let Some(v) = run.get(key, bloom, &self.cache)? {
                return Ok(v);
            }
        }
        Ok(None)
    }

    /// Up to `limit` entries with `start <= key < end`, ascending.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let state = self.read();
        // Lazily, like the runs: a page of `limit` clones only what it reads of the memtable.
        let mem = state
            .mem
            .range(start.to_vec()..end.to_vec())
            .map(|(k, v)| Ok((k.clone(), v.clone())));
        let mut sources: Vec<runs::Source<'_>> = vec![Box::new(mem)];
        for (_, run) in &state.runs {
            sources.push(Box::new(run.iter_from(start, &self.cache)));
        }
        let mut out = Vec::new();
        for entry in runs::merge(sources, true) {
            let (k, v) = entry?;
            if k.as_slice() >= end || out.len() >= limit {
                break;
            }
            if let Some(v) = v {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Every entry whose key starts with `prefix`, ascending.
    pub(crate) fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.scan(prefix, &prefix_end(prefix), usize::MAX)
    }

    /// Adds `writes` to `batch` as the next journal block; returns its number, for
    /// [`ViewIndex::commit`] once sled has taken the batch.
    pub(crate) fn journal(&self, writes: &IndexWrites, batch: &mut sled::Batch) -> u64 {
        let n = self.read().next_journal;
        batch.insert(
            &keys::u64_key(keys::INDEX_JOURNAL, n)[..],
            encode_journal(writes),
        );
        n
    }

    /// Puts a committed batch's writes, journalled as block `n`, into the memtable.
    pub(crate) fn commit(&self, writes: IndexWrites, n: u64) {
        let mut state = self.write();
        debug_assert_eq!(state.next_journal, n);
        state.next_journal = n + 1;
        for (k, v) in writes {
            state.put(k, v);
        }
    }

    /// Writes the memtable as a run if it has passed its bound, and lists the run in place of
    /// the journal blocks it covers, through `apply` (the store's sled write; durable with the
    /// next flush). Called by the writer after an apply; returns whether a run was written.
    pub(crate) fn flush_if_full(
        &self,
        apply: impl FnOnce(sled::Batch) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        // Checked after every apply: under the read lock, which readers share. Only the
        // writer, here, changes the memtable, so the answer holds until it takes the lock.
        {
            let state = self.read();
            if state.mem_bytes < self.memory || state.mem.is_empty() {
                return Ok(false);
            }
        }
        let n = {
            let mut state = self.write();
            state.next_run += 1;
            state.next_run - 1
        };
        let path = run_path(&self.dir, n);
        let (covered, run) = {
            // Only the writer changes the memtable, and it is here: a read lock lets readers
            // go on while the file is written.
            let state = self.read();
            let entries = state.mem.iter().map(|(k, v)| Ok((k.clone(), v.clone())));
            let points = state.mem.keys().filter(|k| point_key(k)).count() as u64;
            (
                state.next_journal,
                Run::write(&path, entries, point_key, points)?,
            )
        };
        sync_dir(&self.dir)?;
        let mut state = self.write();
        let mut listed = state.runs.clone();
        listed.insert(0, (n, Arc::new(run)));
        let mut batch = sled::Batch::default();
        batch.insert(
            &[keys::INDEX_RUNS][..],
            encode_runs(covered, state.next_run, &listed),
        );
        for j in state.covered..covered {
            batch.remove(&keys::u64_key(keys::INDEX_JOURNAL, j)[..]);
        }
        apply(batch)?;
        state.runs = listed;
        state.covered = covered;
        state.mem_bytes = 0;
        let flushed = std::mem::take(&mut state.mem);
        drop(state);
        drop(flushed);
        Ok(true)
    }

    /// The next merge due, if one is and none is running: the newest run with the ones after
    /// it while each is at most twice the size of those before it put together.
    pub(crate) fn plan_merge(&self) -> Option<MergePlan> {
        let mut state = self.write();
        let runs = &state.runs;
        let mut take = 1;
        let mut bytes = runs.first()?.1.file_bytes();
        while let Some((_, next)) = runs.get(take) {
            if bytes.saturating_mul(2) < next.file_bytes() {
                break;
            }
            bytes += next.file_bytes();
            take += 1;
        }
        if take < 2 || self.merging.swap(true, Ordering::AcqRel) {
            return None;
        }
        let plan = MergePlan {
            inputs: runs[..take].to_vec(),
            output: state.next_run,
            drop_tombstones: take == runs.len(),
            generation: state.generation,
        };
        state.next_run += 1;
        Some(plan)
    }

    /// Writes the merged run of `plan` (no lock held: the inputs are immutable). The inputs are
    /// read through a cache that keeps nothing: a merge reads every block once, and through the
    /// shared cache it would push out the blocks lookups use.
    pub(crate) fn write_merge(&self, plan: &MergePlan) -> Result<Run, StoreError> {
        let once = Arc::new(RunCache::new(0));
        let sources: Vec<runs::Source<'_>> = plan
            .inputs
            .iter()
            .map(|(_, run)| Box::new(run.iter_from(&[], &once)) as runs::Source<'_>)
            .collect();
        let path = run_path(&self.dir, plan.output);
        // The inputs' point keys bound the output's: a key in several inputs is counted twice.
        let points = plan.inputs.iter().map(|(_, run)| run.bloom_keys()).sum();
        let merged = runs::merge(sources, plan.drop_tombstones);
        // A failed write removes the file it created itself; the path is not removed here: a
        // merge of a store closed and opened again meanwhile finds its number taken by a run
        // the reopened store wrote (`create_new` refuses it), which must stay.
        let run = Run::write(&path, merged, point_key, points)?;
        sync_dir(&self.dir)?;
        Ok(run)
    }

    /// Lists the merged run in place of its inputs, through `apply` (the store's sled write,
    /// which the caller flushes before [`ViewIndex::retire`]). `false` if the store was
    /// reopened since the plan: then the merged file is removed and the inputs stay.
    pub(crate) fn install_merge(
        &self,
        plan: &MergePlan,
        run: Run,
        apply: impl FnOnce(sled::Batch) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let mut state = self.write();
        let ids: Vec<u64> = plan.inputs.iter().map(|(n, _)| *n).collect();
        // New runs only come in front, and one merge runs at a time: unless a reopen
        // replaced the state, the inputs are still listed together.
        let at = state.runs.iter().position(|(n, _)| *n == ids[0]);
        let Some(at) = at.filter(|_| state.generation == plan.generation) else {
            drop(state);
            run.remove_unlisted();
            return Ok(false);
        };
        let mut listed = state.runs.clone();
        let replaced: Vec<u64> = listed
            .splice(at..at + ids.len(), [(plan.output, Arc::new(run))])
            .map(|(n, _)| n)
            .collect();
        debug_assert_eq!(replaced, ids);
        let mut batch = sled::Batch::default();
        batch.insert(
            &[keys::INDEX_RUNS][..],
            encode_runs(state.covered, state.next_run, &listed),
        );
        apply(batch)?;
        state.runs = listed;
        Ok(true)
    }

    /// Deletes the input files of an installed merge, once its listing is durable.
    pub(crate) fn retire(&self, plan: MergePlan) {
        for (n, _) in plan.inputs {
            let path = run_path(&self.dir, n);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing a merged index run");
            }
        }
    }

    /// Ends the running merge (successful or not), allowing the next.
    pub(crate) fn merge_done(&self) {
        self.merging.store(false, Ordering::Release);
    }

    /// What the index holds now.
    pub(crate) fn sizes(&self) -> IndexSizes {
        let state = self.read();
        let runs = state.runs.iter().map(|(_, r)| r);
        IndexSizes {
            runs: state.runs.len(),
            run_entries: runs.clone().map(|r| r.entries()).sum(),
            run_bytes: runs.clone().map(|r| r.file_bytes()).sum(),
            memory_entries: state.mem.len(),
            memory_bytes: state.mem_bytes,
            resident_bytes: runs.map(|r| r.resident_bytes()).sum::<usize>() + self.cache.bytes(),
        }
    }
}

#[cfg(test)]
impl ViewIndex {
    /// Bytes the shared block cache holds.
    pub(crate) fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// The path the next run (a flush's or a merge's) will be written at.
    pub(crate) fn next_run_path(&self) -> PathBuf {
        run_path(&self.dir, self.read().next_run)
    }

    /// Writes the merge of every run, as a merge would, and deletes it unlisted: its entries.
    pub(crate) fn merge_all_unlisted(&self) -> Result<u64, StoreError> {
        let plan = {
            let mut state = self.write();
            let plan = MergePlan {
                inputs: state.runs.clone(),
                output: state.next_run,
                drop_tombstones: true,
                generation: state.generation,
            };
            state.next_run += 1;
            plan
        };
        let run = self.write_merge(&plan)?;
        run.remove_unlisted();
        Ok(run.entries())
    }
}

impl MergePlan {
    fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|(_, r)| r.file_bytes()).sum()
    }
}

impl StoreReader {
    /// What the view's indexes hold: runs, their bytes, the writes in memory.
    pub fn index_sizes(&self) -> IndexSizes {
        self.inner.index.sizes()
    }
}

impl Store {
    /// After an apply, on the writer's thread: writes the view index's memtable as a run if it
    /// is full, then starts a merge if one is due. A failure is logged and tried again after
    /// the next apply: the memtable and its journal still hold everything.
    pub(crate) fn flush_index(&self, db: &sled::Db) {
        let flushed = self
            .inner
            .index
            .flush_if_full(|batch| db.apply_batch(batch).map_err(|e| self.fail(e, "write")));
        match flushed {
            Ok(true) => self.start_merge(),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "writing the view index's memory as a run failed; tried again after the next write"
            ),
        }
    }

    /// Starts the merge due, if any, on a thread of its own (one at a time), unless the volume
    /// lacks the room for its output beside the store's margin.
    fn start_merge(&self) {
        let index = &self.inner.index;
        let Some(plan) = index.plan_merge() else {
            return;
        };
        let needed = self
            .inner
            .options
            .min_free
            .saturating_add(plan.input_bytes());
        if let Err(e) = space::check(&self.inner.path, needed) {
            tracing::warn!(error = %e, "view index merge put off: not enough free space");
            index.merge_done();
            return;
        }
        let index = Arc::clone(index);
        let store = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("credex-index-merge".to_owned())
            .spawn(move || {
                let merged = merge(&index, &store, plan);
                index.merge_done();
                match merged {
                    // The merged run may make the next merge due.
                    Ok(Some(store)) => store.start_merge(),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "view index merge failed; tried again after the next run"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a view index merge");
            self.inner.index.merge_done();
        }
    }
}

/// Writes and installs one merge; the store, if it is still open.
fn merge(
    index: &ViewIndex,
    store: &Weak<Inner>,
    plan: MergePlan,
) -> Result<Option<Store>, StoreError> {
    let run = index.write_merge(&plan)?;
    let Some(inner) = store.upgrade() else {
        run.remove_unlisted();
        return Ok(None);
    };
    let store = Store::from_inner(inner);
    let db = store.db()?;
    let installed = index.install_merge(&plan, run, |batch| {
        db.apply_batch(batch).map_err(|e| store.fail(e, "write"))
    })?;
    if installed {
        // The inputs go only once no recovery can list them again.
        store.flush()?;
        index.retire(plan);
    }
    Ok(Some(store))
}

impl State {
    fn put(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.mem_bytes += k.len() + v.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        self.mem.insert(k, v);
    }
}

/// The smallest key after every key starting with `prefix`. An index prefix starts with its
/// keyspace byte, below 0xff, so there is one.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    unreachable!("index prefixes start with a keyspace byte below 0xff")
}

fn load(db: &sled::Db, dir: &Path) -> Result<State, StoreError> {
    let mut state = State::default();
    if let Some(v) = db.get([keys::INDEX_RUNS])? {
        let (covered, next_run, ids) =
            or_corrupt(decode_runs(&v), || "the index's run list".to_owned())?;
        state.covered = covered;
        state.next_run = next_run;
        for n in ids {
            let run = Run::open(&run_path(dir, n))?;
            state.runs.push((n, Arc::new(run)));
        }
    }
    // Files no listing names: a run written by a flush or merge whose listing never became
    // durable.
    let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let listed = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_suffix(".run"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| state.runs.iter().any(|(m, _)| *m == n));
        // A merge of the store closed before this open may remove its own unlisted output
        // first ([`Run::remove_unlisted`]): gone is what was wanted.
        if !listed {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Io {
                        path: entry.path(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
    }
    state.next_journal = state.covered;
    for item in db.range(keys::u64_key(keys::INDEX_JOURNAL, state.covered)..) {
        let (k, v) = item?;
        if k.first() != Some(&keys::INDEX_JOURNAL) {
            break;
        }
        let n = or_corrupt(keys::trailing_u64(&k), || "index journal key".to_owned())?;
        if n != state.next_journal {
            return Err(StoreError::corrupt(format!(
                "index journal block {n} follows block {}",
                state.next_journal.wrapping_sub(1)
            )));
        }
        let writes = or_corrupt(decode_journal(&v), || format!("index journal block {n}"))?;
        for (k, v) in writes {
            state.put(k, v);
        }
        state.next_journal = n + 1;
    }
    Ok(state)
}

fn encode_runs(covered: u64, next_run: u64, runs: &[(u64, Arc<Run>)]) -> Vec<u8> {
    let count = u32::try_from(runs.len()).expect("fewer than 2^32 runs");
    let mut e = Enc::with_capacity(20 + 8 * runs.len())
        .u64(covered)
        .u64(next_run)
        .u32(count);
    for (n, _) in runs {
        e = e.u64(*n);
    }
    e.finish()
}

fn decode_runs(v: &[u8]) -> Option<(u64, u64, Vec<u64>)> {
    let mut d = Dec::new(v);
    let covered = d.u64()?;
    let next_run = d.u64()?;
    let count = d.u32()?;
    let ids = (0..count).map(|_| d.u64()).collect::<Option<Vec<_>>>()?;
    d.end((covered, next_run, ids))
}

/// A journal block: a [`codec::encode_packed`] block of the writes, each `key (len u32 ‖ bytes)
/// ‖ tag u8` (0 removal, 1 value) `‖ value`.
fn encode_journal(writes: &IndexWrites) -> Vec<u8> {
    let packed: Vec<Vec<u8>> = writes
        .iter()
        .map(|(k, v)| {
            let e = Enc::with_capacity(5 + k.len() + v.as_ref().map_or(0, Vec::len)).bytes(k);
            match v {
                None => e.u8(0),
                Some(v) => e.u8(1).raw(v),
            }
            .finish()
        })
        .collect();
    codec::encode_packed(&packed)
}

fn decode_journal(v: &[u8]) -> Option<IndexWrites> {
    codec::decode_packed(v)?
        .into_iter()
        .map(|w| {
            let mut d = Dec::new(&w);
            let k = d.bytes()?.to_vec();
            match d.u8()? {
                0 => d.end((k, None)),
                1 => Some((k, Some(d.rest().to_vec()))),
                _ => None,
            }
        })
        .collect()
}

/// Makes the names of the files just created in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    crate::leaves::sync_dir(dir)
}
