//! The receive path (DESIGN.md "Receiver checks": append only under a signed root).
//!
//! A peer's entries of an origin are appended only when the tree the node will hold afterwards
//! has the root of a checkpoint that origin validly signed. Entries wait in the stream's inbox
//! (a [`Prepared`] run, bounded by [`MAX_WAITING_ENTRIES`]) until a checkpoint covers them; the
//! store recomputes the RFC 6962 root from the entries as it appends them (it stores those
//! hashes anyway) and the batch commits only if every checkpoint it passes matches
//! ([`credex_store::WriteBatch::require_root`]). The log therefore never holds a root its
//! origin did not sign, and a relay cannot splice two histories.
//!
//! Split in two so catch-up can pipeline: [`Engine::prepare`] does the CPU work (signature
//! verification on all cores, record validation) without any lock, and [`Engine::commit`]
//! takes what a signed root covers under the write lock in one atomic batch. Under a signed
//! root, an entry whose own signature fails is still the origin's (its root covers it): it is
//! appended, listed invalid with its reason, kept out of the view and raised as an alert.
//! Entries no signed root covers are quarantined as `unsigned_root` and never appended.

use credex_core::entry::{self, VerifiedEntry};
use credex_core::keys::PublicKey;
use credex_core::pb;
use credex_core::validate::{Mode, Validated, Validator};
use credex_store::{QuarantineRecord, StoreError, WriteBatch};
use tracing::{debug, warn};

use super::{Engine, EngineError};

/// Most entries of one origin a stream holds waiting for a checkpoint that covers them. An
/// origin signs a checkpoint after every batch (at most 10,000 records, a Publish request), and
/// a serving node sends the checkpoints it holds between the entries, so an honest stream never
/// needs more.
pub const MAX_WAITING_ENTRIES: usize = 16_384;

/// A run of leaves of one origin, contiguous from `first_seq`, verified and validated, not yet
/// committed: a stream's inbox for that origin.
#[derive(Debug)]
pub struct Prepared {
    pub origin: String,
    pub first_seq: u64,
    pub items: Vec<PreparedLeaf>,
}

impl Prepared {
    /// The seq after the last leaf.
    pub fn end(&self) -> u64 {
        self.first_seq + self.items.len() as u64
    }

    /// Appends `next` if it continues this run of the same origin; gives it back otherwise.
    pub fn extend(&mut self, next: Prepared) -> Result<(), Prepared> {
        if self.items.is_empty() && self.origin == next.origin {
            *self = next;
            return Ok(());
        }
        if next.origin != self.origin || next.first_seq != self.end() {
            return Err(next);
        }
        self.items.extend(next.items);
        Ok(())
    }
}

#[derive(Debug)]
pub enum PreparedLeaf {
    /// Signed by the origin's log key, for this origin and this seq.
    Authentic {
        verified: Box<VerifiedEntry>,
        validation: Result<Box<Validated>, String>,
    },
    /// Not an authentic entry of this origin at this seq: quarantined unless a root the origin
    /// signed covers it (then it is the origin's own bad entry, appended and listed invalid).
    Rejected {
        leaf: Vec<u8>,
        reason: &'static str,
        detail: String,
    },
}

impl PreparedLeaf {
    fn leaf(&self) -> &[u8] {
        match self {
            PreparedLeaf::Authentic { verified, .. } => &verified.leaf,
            PreparedLeaf::Rejected { leaf, .. } => leaf,
        }
    }
}

/// What one commit did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub appended: u64,
    /// Leaves this node already held, byte for byte.
    pub duplicates: u64,
    pub quarantined: u64,
    /// Appended under a signed root, but failing their own signature or this node's
    /// validation (kept out of the view).
    pub invalid: u64,
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
    /// Verifies and validates `leaves`, claimed to be `origin`'s entries from `first_seq` on.
    /// CPU-bound: call it on a blocking thread. Uses every core for the signatures.
    pub fn prepare(&self, origin: &str, first_seq: u64, leaves: Vec<Vec<u8>>) -> Prepared {
        let Some(member) = self.member(origin) else {
            let items = leaves
                .into_iter()
                .map(|leaf| PreparedLeaf::Rejected {
                    leaf,
                    reason: "unknown_origin",
                    detail: format!("origin {origin:?} is not a member of the consortium"),
                })
                .collect();
            return Prepared {
                origin: origin.to_owned(),
                first_seq,
                items,
            };
        };
        let validator = self.validator(Mode::Relay, origin);
        let items = verify_parallel(&leaves, first_seq, origin, &member.log_key, &validator);
        Prepared {
            origin: origin.to_owned(),
            first_seq,
            items,
        }
    }

    /// Takes from `inbox` what this node can: leaves it already holds are checked against the
    /// held bytes (two different authentic entries at one seq are equivocation), then the
    /// longest prefix that ends at a checkpoint the origin signed is appended in one atomic,
    /// durable write with every checkpoint it passes. What no checkpoint covers yet stays in
    /// `inbox`.
    pub async fn commit(
        &self,
        inbox: &mut Prepared,
        from: &str,
    ) -> Result<IngestOutcome, EngineError> {
        let mut outcome = IngestOutcome::default();
        if self.member(&inbox.origin).is_none() {
            let mut batch = WriteBatch::new();
            let now = self.clock.now_millis();
            for (i, item) in inbox.items.drain(..).enumerate() {
                let seq = inbox.first_seq + i as u64;
                if let PreparedLeaf::Rejected {
                    leaf,
                    reason,
                    detail,
                } = item
                {
                    quarantine(
                        &mut batch,
                        &inbox.origin,
                        seq,
                        reason,
                        detail,
                        leaf,
                        from,
                        now,
                    );
                    outcome.quarantined += 1;
                }
            }
            self.write(batch).await?;
            self.metrics.count_ingest(&inbox.origin, &outcome);
            return Ok(outcome);
        }
        let writer = self.write_lock.lock().await;
        self.take_held(inbox, from, &mut outcome).await?;
        let origin = inbox.origin.clone();
        let mut settled = false;
        while !outcome.forked && !inbox.items.is_empty() {
            let size = self.store.origin_state(&origin).size;
            if inbox.first_seq > size {
                outcome.gap = true;
                inbox.items.clear();
                break;
            }
            let roots = self.pending_within(&origin, size, inbox.end());
            let Some(&(last, _)) = roots.last() else {
                break;
            };
            let take = (last - size) as usize;
            match self
                .append_signed(inbox, take, &roots, from, &mut outcome)
                .await?
            {
                true => settled = true,
                false => break,
            }
        }
        outcome.waiting = inbox.items.len() as u64;
        drop(writer);
        self.metrics.count_ingest(&origin, &outcome);
        if outcome.quarantined > 0 || outcome.forked || outcome.invalid > 0 {
            warn!(
                origin,
                from,
                quarantined = outcome.quarantined,
                invalid = outcome.invalid,
                forked = outcome.forked,
                unsigned = outcome.unsigned,
                "entries from peer not taken as sent"
            );
        }
        if outcome.appended > 0 || outcome.forked {
            self.announce();
        }
        if settled {
            self.settle_checkpoints(&origin).await?;
        }
        Ok(outcome)
    }

    /// Checks the leaves at the front of `inbox` that the log already holds, and drops them.
    async fn take_held(
        &self,
        inbox: &mut Prepared,
        from: &str,
        outcome: &mut IngestOutcome,
    ) -> Result<(), EngineError> {
        let origin = inbox.origin.clone();
        let state = self.store.origin_state(&origin);
        if state.forked {
            outcome.forked = true;
            inbox.items.clear();
            return Ok(());
        }
        let held = state.size.saturating_sub(inbox.first_seq);
        let held = usize::try_from(held)
            .unwrap_or(usize::MAX)
            .min(inbox.items.len());
        if held == 0 {
            return Ok(());
        }
        let now = self.clock.now_millis();
        let mut batch = WriteBatch::new();
        for (i, item) in inbox.items.drain(..held).enumerate() {
            let seq = inbox.first_seq + i as u64;
            // A seq below the log size whose leaf is missing is a broken store, not evidence.
            let held_leaf = self.store.leaf(&origin, seq)?.ok_or_else(|| {
                EngineError::Internal(format!(
                    "store: {origin} seq {seq} is below the log size {} but has no leaf",
                    state.size
                ))
            })?;
            match item {
                item if item.leaf() == held_leaf.as_slice() => outcome.duplicates += 1,
                PreparedLeaf::Authentic { verified, .. } => {
                    warn!(origin, seq, from, "two different signed entries at one seq");
                    let evidence = pb::Evidence {
                        origin: origin.clone(),
                        kind: pb::evidence::Kind::ConflictingEntries as i32,
                        signed_entries: vec![held_leaf, verified.leaf],
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
                PreparedLeaf::Rejected {
                    leaf,
                    reason,
                    detail,
                } => {
                    quarantine(&mut batch, &origin, seq, reason, detail, leaf, from, now);
                    outcome.quarantined += 1;
                }
            }
        }
        inbox.first_seq += held as u64;
        if outcome.forked {
            inbox.items.clear();
        }
        self.write(batch).await
    }

    /// Appends the first `take` leaves of `inbox` with the checkpoints `roots` (sizes within
    /// them, ascending), requiring each root. False when the entries do not give the signed
    /// roots: they are quarantined as `unsigned_root` and the inbox is emptied.
    async fn append_signed(
        &self,
        inbox: &mut Prepared,
        take: usize,
        roots: &[(u64, super::checkpoints::PendingCheckpoint)],
        from: &str,
        outcome: &mut IngestOutcome,
    ) -> Result<bool, EngineError> {
        let origin = inbox.origin.clone();
        let mut batch = WriteBatch::new();
        for (size, cp) in roots {
            batch.require_root(&origin, *size, cp.root).set_checkpoint(
                &origin,
                *size,
                cp.note.clone(),
            );
        }
        let mut changes = super::changes::ChangeTracker::new(self);
        let mut invalid = 0;
        for (i, item) in inbox.items[..take].iter().enumerate() {
            let seq = inbox.first_seq + i as u64;
            batch.append(&origin, seq, item.leaf());
            let reason = match item {
                PreparedLeaf::Authentic {
                    validation: Ok(valid),
                    verified,
                } => {
                    // A version that may not follow its record (moved subject or list, after a
                    // revocation) is listed invalid, out of the indexes and the view.
                    let refused = changes.observe(
                        &mut batch,
                        &origin,
                        seq,
                        verified.entry.logged_at,
                        &valid.normalised,
                        valid.subject_keys.first(),
                    )?;
                    let keys: Vec<&str> = valid.subject_keys.iter().map(|k| k.as_str()).collect();
                    let record = &valid.normalised;
                    if refused.is_none() {
                        batch.index_record(
                            &origin,
                            &record.record_id,
                            u64::from(record.version),
                            seq,
                            &keys,
                        );
                    }
                    refused
                }
                PreparedLeaf::Authentic {
                    verified,
                    validation: Err(reason),
                } => {
                    // Indexed under its identifiers as given, so a lookup still finds it and
                    // reports it invalid, at the version it claims.
                    if let Some(record) = verified
                        .entry
                        .record
                        .as_ref()
                        .filter(|r| !r.record_id.is_empty())
                    {
                        batch.index_record(
                            &origin,
                            &record.record_id,
                            u64::from(record.version),
                            seq,
                            &raw_subject_keys(record),
                        );
                    }
                    Some(reason.clone())
                }
                PreparedLeaf::Rejected { reason, detail, .. } => {
                    Some(format!("{reason}: {detail}"))
                }
            };
            if let Some(reason) = reason {
                batch.mark_invalid(&origin, seq, &reason);
                invalid += 1;
            }
        }
        // The apply (leaf file write and fdatasync, sled batch) blocks, and freeing a run of
        // decoded entries takes a while: both off the runtime. The leaves come back only if a
        // root does not match, to be quarantined.
        let taken: Vec<PreparedLeaf> = inbox.items.drain(..take).collect();
        let store = self.store.clone();
        let (applied, taken) = tokio::task::spawn_blocking(move || match store.apply(batch) {
            Ok(_) => (Ok(()), Vec::new()),
            Err(e) => (Err(e), taken),
        })
        .await
        .map_err(|e| EngineError::Internal(format!("store apply task: {e}")))?;
        match applied {
            Ok(()) => {}
            Err(StoreError::RootMismatch {
                size, got, want, ..
            }) => {
                let first = inbox.first_seq;
                let detail = format!(
                    "entries {first}..{} give the tree of size {size} root {got}, but {origin} signed root {want} at that size",
                    first + take as u64
                );
                warn!(
                    origin,
                    from, size, "entries do not give the root their origin signed"
                );
                let now = self.clock.now_millis();
                let mut batch = WriteBatch::new();
                for (i, item) in taken.into_iter().enumerate() {
                    // A leaf that fails on its own says so; the rest are only uncovered.
                    let (leaf, reason, detail) = match item {
                        PreparedLeaf::Authentic { verified, .. } => {
                            (verified.leaf, "unsigned_root", detail.clone())
                        }
                        PreparedLeaf::Rejected {
                            leaf,
                            reason,
                            detail: own,
                        } => (leaf, reason, format!("{own}; {detail}")),
                    };
                    let seq = first + i as u64;
                    quarantine(&mut batch, &origin, seq, reason, detail, leaf, from, now);
                    outcome.quarantined += 1;
                }
                inbox.items.clear();
                outcome.unsigned = true;
                self.write(batch).await?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        self.store.flush_async().await?;
        let first = inbox.first_seq;
        inbox.first_seq += take as u64;
        let (last, _) = roots.last().expect("a root to append under");
        self.consume_pending(&origin, *last);
        for (size, _) in roots {
            self.note_checkpoint_stored(&origin, *size);
        }
        if invalid > 0 {
            // The origin signed a root over entries that fail their own checks: its fault.
            warn!(
                origin,
                from, invalid, "appended under a signed root but invalid"
            );
        }
        outcome.appended += take as u64;
        outcome.invalid += invalid;
        debug!(
            origin,
            from,
            first,
            size = *last,
            "appended under a signed root"
        );
        Ok(true)
    }

    /// Applies and flushes `batch`, if it holds anything.
    async fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.apply(batch))
            .await
            .map_err(|e| EngineError::Internal(format!("store apply task: {e}")))??;
        self.store.flush_async().await?;
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

/// Index keys of a record that failed validation: its identifiers as given (uppercased).
fn raw_subject_keys(record: &pb::CreditRecord) -> Vec<String> {
    let Some(subject) = &record.subject else {
        return Vec::new();
    };
    [&subject.uscc, &subject.id_number]
        .into_iter()
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(|k| k.to_ascii_uppercase())
        .collect()
}

/// Leaves smaller than this are verified on the calling thread: spawning costs more.
const PARALLEL_MIN: usize = 64;

/// Verifies every leaf (strictly; see `credex_core::entry::verify_entries` for why not
/// `verify_batch`) on all cores, checks it claims this origin and seq, and validates its record.
fn verify_parallel(
    leaves: &[Vec<u8>],
    first_seq: u64,
    origin: &str,
    key: &PublicKey,
    validator: &Validator<'_>,
) -> Vec<PreparedLeaf> {
    let check = |offset: usize, chunk: &[Vec<u8>]| -> Vec<PreparedLeaf> {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        entry::verify_entries(&refs, key)
            .into_iter()
            .zip(chunk)
            .enumerate()
            .map(|(i, (result, leaf))| {
                let seq = first_seq + (offset + i) as u64;
                prepare_one(result, leaf, seq, origin, validator)
            })
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || leaves.len() < PARALLEL_MIN {
        return check(0, leaves);
    }
    let chunk = leaves.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = leaves
            .chunks(chunk)
            .enumerate()
            .map(|(n, c)| s.spawn(move || check(n * chunk, c)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn prepare_one(
    result: Result<VerifiedEntry, entry::EntryError>,
    leaf: &[u8],
    seq: u64,
    origin: &str,
    validator: &Validator<'_>,
) -> PreparedLeaf {
    let rejected = |reason: &'static str, detail: String| PreparedLeaf::Rejected {
        leaf: leaf.to_vec(),
        reason,
        detail,
    };
    let verified = match result {
        Ok(v) => v,
        Err(e) => return rejected(e.reason_code(), e.to_string()),
    };
    if verified.entry.origin != origin {
        let detail = format!(
            "entry is signed for origin {:?} but was sent as {origin:?}",
            verified.entry.origin
        );
        return rejected("wrong_origin", detail);
    }
    if verified.entry.seq != seq {
        let detail = format!(
            "entry is signed for seq {} but was sent at seq {seq}",
            verified.entry.seq
        );
        return rejected("wrong_seq", detail);
    }
    let validation = match &verified.entry.record {
        // Judged on the day its origin logged it, never this node's today (validate.rs).
        Some(record) => validator
            .on(credex_core::date::date_of_millis(verified.entry.logged_at))
            .validate(record)
            .map(Box::new)
            .map_err(|e| e.to_string()),
        None => Err("entry has no record".to_owned()),
    };
    PreparedLeaf::Authentic {
        verified: Box::new(verified),
        validation,
    }
}
