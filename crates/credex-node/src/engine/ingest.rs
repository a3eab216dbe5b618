//! The receive path (DESIGN.md "Receiver checks": append only under a signed root).
//!
//! A peer's entries of an origin are appended only when the tree the node will hold afterwards
//! has the root of a checkpoint that origin validly signed. Entries wait in the stream's
//! [`Inbox`] (bounded by [`MAX_WAITING_ENTRIES`]) until a checkpoint covers them; the store
//! recomputes the RFC 6962 root from the entries as it appends them (it stores those hashes
//! anyway) and the batch commits only if every checkpoint it passes matches
//! ([`credex_store::WriteBatch::require_root`]). The log therefore never holds a root its
//! origin did not sign, and a relay cannot splice two histories.
//!
//! The signed root authenticates the whole range, so the append checks nothing per entry
//! beyond hashing it: each entry's own signature and record are checked behind the writer, by
//! the indexer ([`super::index`]), before the entry reaches the view. Under a signed root, an
//! entry whose own signature fails is still the origin's (its root covers it): the indexer
//! lists it invalid with its reason, keeps it out of the view and raises it. Entries no signed
//! root covers are quarantined and never appended: as `unsigned_root`, or with their own
//! reason when they fail on their own (checked then, on that rare path only).
//!
//! A live origin's batch is the exception: a run of at most [`INDEX_ON_ARRIVAL`] entries that
//! brings a log the indexer has caught up with to its origin's newest checkpoint is checked
//! and indexed in the batch that appends it (`Engine::index_on_arrival`), exactly as the
//! indexer would have, so the record is in the view after one apply and one flush instead of
//! two of each with a thread hop between. Catch-ups, where the log runs ahead of the view on
//! purpose, still leave the checks to the indexer.

use std::collections::VecDeque;
use std::sync::Arc;

use credex_core::pb;
use credex_store::{PackedBlock, QuarantineRecord, StoreError, WriteBatch};
use tracing::{debug, warn};

use super::index::Indexed;
use super::writer::WriteError;
use super::{Engine, EngineError};

/// Most entries of one origin a stream holds waiting for a checkpoint that covers them. An
/// origin signs a checkpoint after every batch (at most 10,000 records, a Publish request), and
/// a serving node sends the checkpoints it holds between the entries, so an honest stream never
/// needs more.
pub const MAX_WAITING_ENTRIES: usize = 16_384;

/// Longest run a receiver checks and indexes as it appends it (see the module docs): a few
/// milliseconds of verification at most, on the receive path.
pub const INDEX_ON_ARRIVAL: usize = 64;

/// A stream's leaves of one origin, contiguous from `first_seq`, not yet committed.
#[derive(Debug)]
pub struct Inbox {
    pub origin: String,
    pub first_seq: u64,
    pub leaves: Vec<Vec<u8>>,
    /// The packed blocks some of `leaves` came in (`PackedEntries`), by first seq, ascending:
    /// appended as they came when a commit takes the whole of one.
    packed: VecDeque<(u64, PackedBlock)>,
}

impl Inbox {
    pub fn new(origin: &str, first_seq: u64, leaves: Vec<Vec<u8>>) -> Inbox {
        Inbox {
            origin: origin.to_owned(),
            first_seq,
            leaves,
            packed: VecDeque::new(),
        }
    }

    /// The leaves of `blocks`, consecutive from `first_seq`, keeping the blocks to store them
    /// as they came.
    pub fn packed(origin: &str, first_seq: u64, blocks: Vec<PackedBlock>) -> Inbox {
        let mut inbox = Inbox::new(origin, first_seq, Vec::new());
        for block in blocks {
            let first = inbox.end();
            inbox.leaves.extend(block.leaves().map(<[u8]>::to_vec));
            inbox.packed.push_back((first, block));
        }
        inbox
    }

    /// The seq after the last leaf.
    pub fn end(&self) -> u64 {
        self.first_seq + self.leaves.len() as u64
    }

    /// Appends `next` if it continues this run of the same origin; gives it back otherwise.
    pub fn extend(&mut self, next: Inbox) -> Result<(), Inbox> {
        if self.leaves.is_empty() && self.origin == next.origin {
            *self = next;
            return Ok(());
        }
        if next.origin != self.origin || next.first_seq != self.end() {
            return Err(next);
        }
        self.leaves.extend(next.leaves);
        self.packed.extend(next.packed);
        Ok(())
    }

    /// Drops every leaf.
    pub fn clear(&mut self) {
        self.leaves.clear();
        self.packed.clear();
    }

    /// Takes the first `n` leaves, with the packed blocks that lie wholly among them; a block
    /// that they cut is dropped (its leaves are compressed again when appended).
    fn take(&mut self, n: usize) -> (Vec<Vec<u8>>, Vec<(u64, PackedBlock)>) {
        let end = self.first_seq + n as u64;
        let leaves: Vec<Vec<u8>> = self.leaves.drain(..n).collect();
        let mut blocks = Vec::new();
        while let Some((first, block)) = self.packed.pop_front() {
            if first >= end {
                self.packed.push_front((first, block));
                break;
            }
            if first >= self.first_seq && first + u64::from(block.count()) <= end {
                blocks.push((first, block));
            }
        }
        self.first_seq = end;
        (leaves, blocks)
    }
}

/// What one commit did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Appended under a signed root; the indexer checks each one's signature and record
    /// before it reaches the view, unless they were indexed on arrival (below).
    pub appended: u64,
    /// Of those, entries checked and indexed in the batch that appended them, and of those,
    /// entries listed invalid.
    pub indexed: u64,
    pub invalid: u64,
    /// Leaves this node already held, byte for byte.
    pub duplicates: u64,
    pub quarantined: u64,
    /// Entries left in the inbox, waiting for a checkpoint that covers them.
    pub waiting: u64,
    /// The inbox started beyond the local log: nothing after the gap was taken.
    pub gap: bool,
    /// Entries whose tree does not have the root their origin signed at that size: quarantined.
    pub unsigned: bool,
    /// The origin is (now) marked forked and takes no more entries.
    pub forked: bool,
}

impl Engine {
    /// Takes from `inbox` what this node can: leaves it already holds are checked against the
    /// held bytes (two different authentic entries at one seq are equivocation), then the
    /// longest prefix that ends at a checkpoint the origin signed is appended in one atomic,
    /// durable write with every checkpoint it passes. What no checkpoint covers yet stays in
    /// `inbox`.
    pub async fn commit(
        self: &Arc<Self>,
        inbox: &mut Inbox,
        from: &str,
    ) -> Result<IngestOutcome, EngineError> {
        let mut outcome = IngestOutcome::default();
        if self.member(&inbox.origin).is_none() {
            let mut batch = WriteBatch::new();
            let now = self.clock.now_millis();
            for (i, leaf) in inbox.leaves.drain(..).enumerate() {
                let seq = inbox.first_seq + i as u64;
                let detail = format!(
                    "origin {:?} is not a member of the consortium",
                    inbox.origin
                );
                quarantine(
                    &mut batch,
                    &inbox.origin,
                    seq,
                    "unknown_origin",
                    detail,
                    leaf,
                    from,
                    now,
                );
                outcome.quarantined += 1;
            }
            inbox.clear();
            self.write(batch).await?;
            self.metrics.count_ingest(&inbox.origin, &outcome);
            return Ok(outcome);
        }
        let origin = inbox.origin.clone();
        // A run that may be indexed on arrival takes the view's lock too, before the writer's
        // (the order publish takes them in).
        let view = if self.may_index_on_arrival(&origin, inbox.leaves.len()) {
            Some(self.view_lock.lock().await)
        } else {
            None
        };
        let writer = self.write_lock.lock().await;
        self.take_held(inbox, from, &mut outcome).await?;
        while !outcome.forked && !inbox.leaves.is_empty() {
            let size = self.store.origin_state(&origin).size;
            if inbox.first_seq > size {
                outcome.gap = true;
                inbox.clear();
                break;
            }
            let roots = self.pending_within(&origin, size, inbox.end());
            let Some(&(last, _)) = roots.last() else {
                break;
            };
            let take = (last - size) as usize;
            let index = view.is_some() && self.index_on_arrival_now(&origin, size, last);
            let started = std::time::Instant::now();
            match self
                .append_signed(inbox, take, &roots, from, index, &mut outcome)
                .await?
            {
                true => self.metrics.observe_apply(&origin, started.elapsed()),
                false => break,
            }
        }
        outcome.waiting = inbox.leaves.len() as u64;
        drop(writer);
        drop(view);
        self.metrics.count_ingest(&origin, &outcome);
        if outcome.quarantined > 0 || outcome.forked {
            warn!(
                origin,
                from,
                quarantined = outcome.quarantined,
                forked = outcome.forked,
                unsigned = outcome.unsigned,
                "entries from peer not taken as sent"
            );
        }
        if outcome.appended > 0 || outcome.forked {
            self.announce();
        }
        if outcome.appended > 0 {
            self.settle_checkpoints(&origin).await?;
        }
        Ok(outcome)
    }

    /// Whether a run of `entries` of `origin` may be indexed on arrival, as far as can be told
    /// before the locks: a peer's log, a short run, and the indexer caught up.
    fn may_index_on_arrival(&self, origin: &str, entries: usize) -> bool {
        origin != self.city
            && entries <= INDEX_ON_ARRIVAL
            && self.store.indexed(origin) == self.store.origin_state(origin).size
    }

    /// Whether the run that takes `origin`'s log from `size` to `last` is indexed as it is
    /// appended, under the view's lock: the indexer has caught up with the log, the run is
    /// short, and no larger checkpoint is known (the log is not catching up).
    fn index_on_arrival_now(&self, origin: &str, size: u64, last: u64) -> bool {
        self.store.indexed(origin) == size
            && last - size <= INDEX_ON_ARRIVAL as u64
            && self.best_seen(origin) <= last
    }

    /// Checks the leaves at the front of `inbox` that the log already holds, and drops them.
    async fn take_held(
        &self,
        inbox: &mut Inbox,
        from: &str,
        outcome: &mut IngestOutcome,
    ) -> Result<(), EngineError> {
        let origin = inbox.origin.clone();
        let state = self.store.origin_state(&origin);
        if state.forked {
            outcome.forked = true;
            inbox.clear();
            return Ok(());
        }
        let held = state.size.saturating_sub(inbox.first_seq);
        let held = usize::try_from(held)
            .unwrap_or(usize::MAX)
            .min(inbox.leaves.len());
        if held == 0 {
            return Ok(());
        }
        let now = self.clock.now_millis();
        let mut batch = WriteBatch::new();
        let first = inbox.first_seq;
        for (i, leaf) in inbox.take(held).0.into_iter().enumerate() {
            let seq = first + i as u64;
            // A seq below the log size whose leaf is missing is a broken store, not evidence.
            let held_leaf = self.store.leaf(&origin, seq)?.ok_or_else(|| {
                EngineError::Internal(format!(
                    "store: {origin} seq {seq} is below the log size {} but has no leaf",
                    state.size
                ))
            })?;
            if leaf == held_leaf {
                outcome.duplicates += 1;
                continue;
            }
            match self.authenticate(&origin, seq, &leaf) {
                Ok(_) => {
                    warn!(origin, seq, from, "two different signed entries at one seq");
                    let evidence = pb::Evidence {
                        origin: origin.clone(),
                        kind: pb::evidence::Kind::ConflictingEntries as i32,
                        signed_entries: vec![held_leaf, leaf],
                        detected_at: now,
                        detected_via: format!("sync:{from}"),
                        ..Default::default()
                    };
                    batch
                        .add_evidence(&origin, prost::Message::encode_to_vec(&evidence))
                        .mark_forked(&origin);
                    outcome.forked = true;
                    break;
                }
                Err((reason, detail)) => {
                    quarantine(&mut batch, &origin, seq, reason, detail, leaf, from, now);
                    outcome.quarantined += 1;
                }
            }
        }
        if outcome.forked {
            inbox.clear();
        }
        self.write(batch).await
    }

    /// Appends the first `take` leaves of `inbox` with the checkpoints `roots` (sizes within
    /// them, ascending), requiring each root. False when the entries do not give a signed
    /// root: those under the roots below it are appended all the same (each of those roots
    /// authenticates its prefix), the rest are quarantined, and the inbox is emptied.
    #[allow(clippy::too_many_arguments)]
    async fn append_signed(
        self: &Arc<Self>,
        inbox: &mut Inbox,
        take: usize,
        roots: &[(u64, super::checkpoints::PendingCheckpoint)],
        from: &str,
        index: bool,
        outcome: &mut IngestOutcome,
    ) -> Result<bool, EngineError> {
        let origin = inbox.origin.clone();
        let first = inbox.first_seq;
        let (leaves, blocks) = inbox.take(take);
        let (size, got, want, mut taken) = match self
            .apply_under_roots(&origin, first, leaves, blocks, roots, index)
            .await?
        {
            Ok(indexed) => {
                self.appended_under(&origin, first, roots, from, outcome)
                    .await?;
                if let Some(indexed) = indexed {
                    outcome.indexed += indexed.indexed;
                    outcome.invalid += indexed.invalid;
                    self.note_indexed(&origin, indexed);
                }
                return Ok(true);
            }
            Err((
                StoreError::RootMismatch {
                    size, got, want, ..
                },
                taken,
            )) => (size, got, want, taken),
            Err((e, _)) => return Err(e.into()),
        };
        warn!(
            origin,
            from, size, "entries do not give the root their origin signed"
        );
        // Every root below `size` was given: what they cover is authentic.
        let good = &roots[..roots.partition_point(|(s, _)| *s < size)];
        let mut uncovered_from = first;
        if let Some(&(end, _)) = good.last() {
            let rest = taken.split_off((end - first) as usize);
            let under = self
                .apply_under_roots(&origin, first, taken, Vec::new(), good, false)
                .await?;
            if let Err((e, _)) = under {
                // These leaves gave these roots a moment ago: a store failure, not evidence.
                return Err(e.into());
            }
            self.appended_under(&origin, first, good, from, outcome)
                .await?;
            uncovered_from = end;
            taken = rest;
        }
        let detail = format!(
            "entries {first}..{} give the tree of size {size} root {got}, but {origin} signed root {want} at that size",
            first + take as u64
        );
        let now = self.clock.now_millis();
        let mut batch = WriteBatch::new();
        for (i, leaf) in taken.into_iter().enumerate() {
            let seq = uncovered_from + i as u64;
            // A leaf that fails on its own says so; the rest are only uncovered.
            let (reason, detail) = match self.authenticate(&origin, seq, &leaf) {
                Ok(_) => ("unsigned_root", detail.clone()),
                Err((reason, own)) => (reason, format!("{own}; {detail}")),
            };
            quarantine(&mut batch, &origin, seq, reason, detail, leaf, from, now);
            outcome.quarantined += 1;
        }
        inbox.clear();
        outcome.unsigned = true;
        self.write(batch).await?;
        Ok(false)
    }

    /// Applies `leaves` from seq `first` with the checkpoints `roots`, each root required; those
    /// that came in one of `blocks` (packed blocks wholly among them, by first seq) are stored
    /// in it as it came. The store's refusal comes back with the leaves, to be quarantined or
    /// retried. The store's writer thread applies it (leaf file write and fdatasync, sled
    /// batch). With `index`, the leaves are checked and indexed in the same batch
    /// ([`Engine::index_on_arrival`]); what that did comes back.
    #[allow(clippy::too_many_arguments)]
    async fn apply_under_roots(
        self: &Arc<Self>,
        origin: &str,
        first: u64,
        leaves: Vec<Vec<u8>>,
        blocks: Vec<(u64, PackedBlock)>,
        roots: &[(u64, super::checkpoints::PendingCheckpoint)],
        index: bool,
    ) -> Result<Result<Option<Indexed>, (StoreError, Vec<Vec<u8>>)>, EngineError> {
        let to_index = index.then(|| leaves.clone());
        let mut batch = WriteBatch::new();
        for (size, cp) in roots {
            batch.require_root(origin, *size, cp.root).set_checkpoint(
                origin,
                *size,
                cp.note.clone(),
            );
        }
        let mut blocks = blocks.into_iter().peekable();
        let mut leaves = leaves.into_iter();
        let mut seq = first;
        while let Some(leaf) = leaves.next() {
            match blocks.next_if(|(at, _)| *at == seq) {
                // The block's leaves are the inbox's (unpacked from it): skip the copies.
                Some((_, block)) => {
                    let n = u64::from(block.count());
                    leaves.by_ref().take(n as usize - 1).for_each(drop);
                    batch.append_packed(origin, seq, block);
                    seq += n;
                }
                None => {
                    batch.append(origin, seq, leaf);
                    seq += 1;
                }
            }
        }
        // Copying the leaves is work too: on the blocking thread that waits for the writer.
        let engine = self.clone();
        let origin = origin.to_owned();
        tokio::task::spawn_blocking(move || {
            let kept = batch.appended_leaves();
            let indexed = match to_index {
                Some(leaves) => Some(engine.index_on_arrival(&mut batch, &origin, first, &leaves)?),
                None => None,
            };
            match engine.writer.apply_blocking(batch) {
                Ok(_) => Ok(Ok(indexed)),
                Err(WriteError::Store(e)) => Ok(Err((e, kept))),
                Err(e) => Err(EngineError::from(e)),
            }
        })
        .await
        .map_err(|e| EngineError::Internal(format!("store apply task: {e}")))?
    }

    /// Makes durable what [`Engine::apply_under_roots`] appended from `first` up to the last
    /// of `roots`, and notes it.
    async fn appended_under(
        &self,
        origin: &str,
        first: u64,
        roots: &[(u64, super::checkpoints::PendingCheckpoint)],
        from: &str,
        outcome: &mut IngestOutcome,
    ) -> Result<(), EngineError> {
        self.flush_durable().await?;
        let (last, _) = roots.last().expect("a root to append under");
        self.consume_pending(origin, *last);
        for (size, _) in roots {
            self.note_checkpoint_stored(origin, *size);
        }
        outcome.appended += last - first;
        debug!(
            origin,
            from,
            first,
            size = *last,
            "appended under a signed root"
        );
        Ok(())
    }

    /// Applies and flushes `batch`, if it holds anything.
    async fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.apply(batch).await?;
        self.flush_durable().await?;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn quarantine(
    batch: &mut WriteBatch,
    origin: &str,
    seq: u64,
    reason: &str,
    detail: String,
    leaf: Vec<u8>,
    from: &str,
    now: i64,
) {
    batch.quarantine(QuarantineRecord {
        origin: origin.to_owned(),
        seq,
        reason: reason.to_owned(),
        detail,
        leaf,
        received_from: from.to_owned(),
        received_at_ms: u64::try_from(now).unwrap_or(0),
    });
}
