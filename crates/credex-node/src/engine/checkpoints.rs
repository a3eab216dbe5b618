//! Checkpoints received from peers (DESIGN.md "Receiver checks", "Equivocation"): the
//! origin's signature and any cosignatures verify, and every checkpoint is held against the
//! node's own tree, whatever its size:
//! - one at a size the node holds is compared with the node's own root there;
//! - a larger one comes with a *seeded* consistency proof from a size the node holds
//!   ([`merkle::consistency_roots`] computes both roots from it): if the proof yields the
//!   checkpoint's root and the node's own root, the checkpoint is pending until its entries
//!   arrive ([`super::ingest`] appends under it); if it yields the checkpoint's root and another
//!   root at the node's size, the origin signed two histories.
//!
//! A disagreement between two things the origin signed is equivocation: both are kept verbatim
//! as evidence (with the proof, when the sizes differ, so it is provable offline) and the origin
//! is marked forked. A checkpoint whose proof does not even yield its own root proves nothing
//! and is not adopted.

use std::collections::BTreeMap;

use credex_core::merkle::{self, Hash};
use credex_core::note::{self, SignedCheckpoint};
use credex_core::pb;
use credex_store::{OriginState, StoredNote, WriteBatch};
use tracing::{info, warn};

use super::{Engine, EngineError};

/// Checkpoints ahead of the local log kept per origin. A stream brings one per batch of its
/// origin and a commit takes every one its entries pass, so this bounds memory against a chatty
/// peer while leaving room for a whole grouped commit of small batches.
const MAX_PENDING: usize = 1024;

/// What became of a received checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Checked against the local log and stored.
    Stored,
    /// Ahead of the local log; its entries are appended under it when they arrive.
    Pending,
    /// Already held with at least these signatures.
    Known,
    /// Its signatures do not verify, or its consistency proof does not yield its own root:
    /// ignored (a peer cannot forge it into evidence).
    Invalid,
    /// It contradicts what the origin signed before: evidence stored, origin forked.
    Equivocation,
}

/// A verified checkpoint ahead of the local log.
#[derive(Debug, Clone)]
pub struct PendingCheckpoint {
    /// The note, verbatim.
    pub note: Vec<u8>,
    /// Its root, read when its signature was verified.
    pub root: Hash,
}

/// Pending checkpoints: origin → size → checkpoint.
pub(crate) type Pending = BTreeMap<String, BTreeMap<u64, PendingCheckpoint>>;

/// A consistency proof sent with a checkpoint: from `from_size` to the checkpoint's size, seeded
/// (see [`merkle::seeded_consistency_proof`]). Empty when the sender had none to give.
#[derive(Debug, Clone, Default)]
pub struct SentProof {
    pub from_size: u64,
    pub hashes: Vec<Vec<u8>>,
}

impl Engine {
    /// Verifies a checkpoint's signatures against the origin's log key and the members'
    /// witness keys.
    pub fn verify_note(&self, origin: &str, note: &[u8]) -> Result<SignedCheckpoint, EngineError> {
        let member = self.member(origin).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "origin: {origin:?} is not a member of the consortium"
            ))
        })?;
        let witnesses: Vec<_> = self.members().map(|m| m.witness_key.clone()).collect();
        note::verify_checkpoint(note, &member.log_key, &witnesses)
            .map_err(|e| EngineError::InvalidArgument(format!("checkpoint of {origin}: {e}")))
    }

    /// Takes in a checkpoint of `origin` that `from` sent, with the consistency proof it came
    /// with.
    pub async fn receive_checkpoint(
        &self,
        origin: &str,
        note: &[u8],
        proof: &SentProof,
        from: &str,
    ) -> Result<CheckpointOutcome, EngineError> {
        let signed = match self.verify_note(origin, note) {
            Ok(s) => s,
            Err(e) => {
                warn!(origin, from, error = %e, "invalid checkpoint");
                self.metrics.count_bad_checkpoint(origin);
                return Ok(CheckpointOutcome::Invalid);
            }
        };
        let _writer = self.write_lock.lock().await;
        let outcome = self
            .check_and_store(origin, &signed, proof, &format!("sync:{from}"))
            .await?;
        drop(_writer);
        match outcome {
            CheckpointOutcome::Pending => {
                self.note_seen(origin, signed.checkpoint.size);
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let sizes = pending.entry(origin.to_owned()).or_default();
                sizes.insert(
                    signed.checkpoint.size,
                    PendingCheckpoint {
                        note: signed.note,
                        root: signed.checkpoint.root,
                    },
                );
                // The smallest are the ones the next entries need; larger ones come again.
                while sizes.len() > MAX_PENDING {
                    sizes.pop_last();
                }
            }
            CheckpointOutcome::Invalid => {
                warn!(
                    origin,
                    from,
                    size = signed.checkpoint.size,
                    "consistency proof does not yield the checkpoint's root"
                );
                self.metrics.count_bad_checkpoint(origin);
            }
            CheckpointOutcome::Equivocation => self.announce(),
            CheckpointOutcome::Stored | CheckpointOutcome::Known => {}
        }
        self.refresh_gauges();
        Ok(outcome)
    }

    /// The pending checkpoints of `origin` with sizes in `(size, end]`, ascending.
    pub(crate) fn pending_within(
        &self,
        origin: &str,
        size: u64,
        end: u64,
    ) -> Vec<(u64, PendingCheckpoint)> {
        if end <= size {
            return Vec::new();
        }
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.get(origin).map_or_else(Vec::new, |sizes| {
            sizes
                .range(size + 1..=end)
                .map(|(s, cp)| (*s, cp.clone()))
                .collect()
        })
    }

    /// Drops the pending checkpoints of `origin` up to `size`, now appended under.
    pub(crate) fn consume_pending(&self, origin: &str, size: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sizes) = pending.get_mut(origin) {
            *sizes = sizes.split_off(&(size + 1));
        }
    }

    /// Checks pending checkpoints of `origin` that the local log now covers (entries of another
    /// stream passed them) against the local tree.
    pub(crate) async fn settle_checkpoints(&self, origin: &str) -> Result<(), EngineError> {
        let size = self.store.origin_state(origin).size;
        let ready: Vec<PendingCheckpoint> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let Some(sizes) = pending.get_mut(origin) else {
                return Ok(());
            };
            let later = sizes.split_off(&(size + 1));
            std::mem::replace(sizes, later).into_values().collect()
        };
        for cp in ready {
            let signed = self.verify_note(origin, &cp.note)?;
            let _writer = self.write_lock.lock().await;
            let outcome = self
                .check_and_store(origin, &signed, &SentProof::default(), "sync")
                .await?;
            drop(_writer);
            if outcome == CheckpointOutcome::Equivocation {
                self.announce();
            }
        }
        Ok(())
    }

    /// The checks, under the write lock. Stores the checkpoint or the evidence.
    async fn check_and_store(
        &self,
        origin: &str,
        signed: &SignedCheckpoint,
        proof: &SentProof,
        via: &str,
    ) -> Result<CheckpointOutcome, EngineError> {
        let state = self.store.origin_state(origin);
        let cp = &signed.checkpoint;
        if state.forked {
            return Ok(CheckpointOutcome::Known);
        }
        // Against a checkpoint of the same size already held.
        if let Some(held) = self.store.checkpoint_at(origin, cp.size)? {
            let held_signed = self.verify_note(origin, &held)?;
            if held_signed.checkpoint.root != cp.root {
                self.record_equivocation(
                    origin,
                    pb::evidence::Kind::ConflictingCheckpoints,
                    vec![held, signed.note.clone()],
                    Vec::new(),
                    via,
                )
                .await?;
                return Ok(CheckpointOutcome::Equivocation);
            }
            if held_signed.cosignatures.len() >= signed.cosignatures.len() {
                return Ok(CheckpointOutcome::Known);
            }
        }
        if cp.size > state.size {
            return self
                .check_ahead(origin, signed, proof, state.size, via)
                .await;
        }
        let local_root = self.root_at(origin, cp.size)?;
        if local_root != cp.root {
            // The origin signed a tree of this size with another root than the one held. The
            // evidence: that checkpoint, the largest one held (signed by the origin over the
            // local tree), and the proof between them taken from the local tree, which yields
            // the local root at the smaller size.
            let Some(latest) = self.store.checkpoint(origin)?.filter(|l| l.size > cp.size) else {
                warn!(
                    origin,
                    via,
                    size = cp.size,
                    "checkpoint contradicts the local log, which has no larger signed checkpoint"
                );
                return Ok(CheckpointOutcome::Invalid);
            };
            let proof = merkle::seeded_consistency_proof(
                cp.size,
                latest.size,
                &self.store.hash_reader(origin),
            )
            .map_err(|e| EngineError::Internal(format!("proof of {origin}: {e}")))?;
            self.record_equivocation(
                origin,
                pb::evidence::Kind::InconsistentCheckpoints,
                vec![signed.note.clone(), latest.note],
                proof,
                via,
            )
            .await?;
            return Ok(CheckpointOutcome::Equivocation);
        }
        let note = match self.store.checkpoint_at(origin, cp.size)? {
            Some(held) => {
                let lines = signature_lines(&signed.note);
                note::add_signature_lines(&held, &lines)
                    .map_err(|e| EngineError::Internal(format!("merging cosignatures: {e}")))?
            }
            None => signed.note.clone(),
        };
        let mut batch = WriteBatch::new();
        batch.set_checkpoint(origin, cp.size, note);
        self.apply(batch).await?;
        self.note_checkpoint_stored(origin, cp.size);
        Ok(CheckpointOutcome::Stored)
    }

    /// A checkpoint larger than the local log: pending if its proof shows it extends the local
    /// tree (or it has no proof from a size the node holds: then its entries' root is what
    /// decides), equivocation if its proof yields its own root and another local root.
    async fn check_ahead(
        &self,
        origin: &str,
        signed: &SignedCheckpoint,
        proof: &SentProof,
        local_size: u64,
        via: &str,
    ) -> Result<CheckpointOutcome, EngineError> {
        let cp = &signed.checkpoint;
        let from = proof.from_size;
        if from == 0 || from > local_size {
            return Ok(CheckpointOutcome::Pending);
        }
        let hashes: Vec<Hash> = match proof
            .hashes
            .iter()
            .map(|h| merkle::hash_from_bytes(h))
            .collect()
        {
            Ok(h) => h,
            Err(_) => return Ok(CheckpointOutcome::Invalid),
        };
        let (old_root, new_root) = match merkle::consistency_roots(&hashes, from, cp.size) {
            Ok(roots) => roots,
            Err(_) => return Ok(CheckpointOutcome::Invalid),
        };
        if new_root != cp.root {
            return Ok(CheckpointOutcome::Invalid);
        }
        if old_root == self.root_at(origin, from)? {
            return Ok(CheckpointOutcome::Pending);
        }
        // The proof comes from a tree with the signed root at `cp.size` whose first `from`
        // leaves differ from the local ones. The local tree at `from` is under a checkpoint the
        // origin signed (entries are only appended under one), which makes it provable.
        let Some(ours) = self.store.checkpoint_at(origin, from)? else {
            warn!(
                origin,
                via,
                from,
                size = cp.size,
                "checkpoint inconsistent with the local log, which holds no signed checkpoint at the proof's size"
            );
            return Ok(CheckpointOutcome::Invalid);
        };
        self.record_equivocation(
            origin,
            pb::evidence::Kind::InconsistentCheckpoints,
            vec![ours, signed.note.clone()],
            hashes,
            via,
        )
        .await?;
        Ok(CheckpointOutcome::Equivocation)
    }

    /// The root of the first `size` leaves of `origin`'s log held here.
    fn root_at(&self, origin: &str, size: u64) -> Result<Hash, EngineError> {
        merkle::root(size, &self.store.hash_reader(origin))
            .map_err(|e| EngineError::Internal(format!("root of {origin} at {size}: {e}")))
    }

    /// This city's checkpoint for its witnesses to cosign: the newest stored, or, while its log
    /// is empty, the checkpoint over the empty log, signed now and not stored (a log of no
    /// entries has nothing to prove, and peers are sent nothing of it). Its cosignatures tell
    /// the node its witnesses' clocks before its first entry is stamped: a new city's node, or
    /// one whose clock was wrong when it started with an empty store, would otherwise stamp its
    /// first entries by its own clock alone, and its log, which goes forward in time, would
    /// have to follow them.
    pub fn checkpoint_to_cosign(&self) -> Result<Option<StoredNote>, EngineError> {
        if let Some(stored) = self.store.checkpoint(&self.city)? {
            return Ok(Some(stored));
        }
        let log = self.store.origin_state(&self.city);
        if log.size > 0 || log.forked {
            return Ok(None);
        }
        Ok(Some(StoredNote {
            size: 0,
            note: self.sign_own_checkpoint(&log)?,
        }))
    }

    /// Merges witnesses' cosignature lines into this city's stored checkpoint at `size`, each
    /// witness's newest in place of an older one (a witness asked again, as every one is when
    /// the node starts, cosigns again), and notes what each witness's clock read as it cosigned
    /// (what publishing and the view check this node's against, `Engine::witness_clocks`).
    /// Cosignatures of the empty log's checkpoint (size 0) only tell the clocks: nothing is
    /// stored at size 0 ([`Engine::checkpoint_to_cosign`]).
    pub async fn add_cosignatures(
        &self,
        size: u64,
        lines: Vec<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let origin = self.city.as_str();
        let _writer = self.write_lock.lock().await;
        let held = match size {
            0 => Some(self.sign_own_checkpoint(&OriginState::EMPTY)?),
            _ => self.store.checkpoint_at(origin, size)?,
        };
        let Some(held) = held else {
            return Ok(());
        };
        let merged = note::replace_signature_lines(&held, &lines)
            .map_err(|e| EngineError::Internal(format!("merging cosignatures: {e}")))?;
        let verified = self.verify_note(origin, &merged)?;
        let answered: Vec<String> = lines
            .iter()
            .filter_map(|l| note::signature_key(l).map(|(name, _)| name))
            .collect();
        self.note_witness_clocks(
            verified
                .cosignatures
                .iter()
                .filter(|c| answered.contains(&c.witness)),
        );
        if size == 0 {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        batch.set_checkpoint(origin, size, merged);
        self.apply(batch).await?;
        // Flushed outside the lock, which the next publish batch waits on (as in
        // `Engine::add_checkpoint`).
        drop(_writer);
        self.flush_durable().await?;
        info!(
            origin,
            size,
            cosignatures = verified.cosignatures.len(),
            "checkpoint cosigned"
        );
        self.announce();
        Ok(())
    }

    /// Keeps two contradicting signed checkpoints of `origin` as evidence and marks it forked.
    pub(super) async fn record_equivocation(
        &self,
        origin: &str,
        kind: pb::evidence::Kind,
        notes: Vec<Vec<u8>>,
        proof: Vec<Hash>,
        via: &str,
    ) -> Result<(), EngineError> {
        warn!(origin, via, ?kind, "equivocation: origin marked forked");
        let evidence = pb::Evidence {
            origin: origin.to_owned(),
            kind: kind as i32,
            checkpoints: notes
                .into_iter()
                .map(|note| pb::SignedCheckpoint { note })
                .collect(),
            consistency_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            detected_at: self.clock.now_millis(),
            detected_via: via.to_owned(),
            ..Default::default()
        };
        let mut batch = WriteBatch::new();
        batch
            .add_evidence(origin, prost::Message::encode_to_vec(&evidence))
            .mark_forked(origin);
        self.apply(batch).await?;
        self.flush_durable().await?;
        info!(origin, "evidence stored");
        Ok(())
    }
}

/// The signature lines of a note: everything after the blank line that ends the body.
fn signature_lines(note: &[u8]) -> Vec<Vec<u8>> {
    let Some(split) = note.windows(2).position(|w| w == b"\n\n") else {
        return Vec::new();
    };
    note[split + 2..]
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}
