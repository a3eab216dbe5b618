//! Checkpoints received from peers (DESIGN.md "Receiver checks", "Equivocation"): the
//! origin's signature and any cosignatures verify; the checkpoint agrees with every
//! checkpoint of that origin already held and with the root of the entries held at its size.
//! A disagreement between two things the origin signed is equivocation: both are kept
//! verbatim as evidence, and the origin is marked forked.
//!
//! A checkpoint ahead of the local log is remembered (it sets the lag) and checked once the
//! entries it covers have arrived.

use std::collections::BTreeMap;

use credex_core::merkle;
use credex_core::note::{self, SignedCheckpoint};
use credex_core::pb;
use credex_store::WriteBatch;
use tracing::{info, warn};

use super::{Engine, EngineError};

/// Checkpoints ahead of the local log kept per origin; older ones add nothing once a newer
/// one is checked, so the bound only guards memory against a chatty peer.
const MAX_PENDING: usize = 8;

/// What became of a received checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Checked against the local log and stored.
    Stored,
    /// Ahead of the local log; checked when the entries arrive.
    Pending,
    /// Already held with at least these signatures.
    Known,
    /// Its signatures do not verify; ignored (a peer cannot forge it into evidence).
    Invalid,
    /// It contradicts what the origin signed before: evidence stored, origin forked.
    Equivocation,
}

/// Pending checkpoints: origin → size → verbatim note.
pub(crate) type Pending = BTreeMap<String, BTreeMap<u64, Vec<u8>>>;

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

    /// Takes in a checkpoint of `origin` that `from` sent.
    pub async fn receive_checkpoint(
        &self,
        origin: &str,
        note: &[u8],
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
        self.note_seen(origin, signed.checkpoint.size);
        let _writer = self.write_lock.lock().await;
        let outcome = self.check_and_store(origin, &signed, &format!("sync:{from}"))?;
        drop(_writer);
        if outcome == CheckpointOutcome::Pending {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let sizes = pending.entry(origin.to_owned()).or_default();
            sizes.insert(signed.checkpoint.size, signed.note);
            while sizes.len() > MAX_PENDING {
                sizes.pop_first();
            }
        }
        if outcome == CheckpointOutcome::Equivocation {
            self.announce();
        }
        self.refresh_gauges();
        Ok(outcome)
    }

    /// Checks pending checkpoints of `origin` that the local log now covers.
    pub(crate) async fn settle_checkpoints(&self, origin: &str) -> Result<(), EngineError> {
        let size = self.store.origin_state(origin).size;
        let ready: Vec<Vec<u8>> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let Some(sizes) = pending.get_mut(origin) else {
                return Ok(());
            };
            let later = sizes.split_off(&(size + 1));
            std::mem::replace(sizes, later).into_values().collect()
        };
        for note in ready {
            // Verified when it arrived; verifying again keeps this path free of trust in memory.
            let signed = self.verify_note(origin, &note)?;
            let _writer = self.write_lock.lock().await;
            if self.check_and_store(origin, &signed, "sync")? == CheckpointOutcome::Equivocation {
                drop(_writer);
                self.announce();
            }
        }
        Ok(())
    }

    /// The checks, under the write lock. Stores the checkpoint or the evidence.
    fn check_and_store(
        &self,
        origin: &str,
        signed: &SignedCheckpoint,
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
                    via,
                )?;
                return Ok(CheckpointOutcome::Equivocation);
            }
            if held_signed.cosignatures.len() >= signed.cosignatures.len() {
                return Ok(CheckpointOutcome::Known);
            }
        }
        if cp.size > state.size {
            return Ok(CheckpointOutcome::Pending);
        }
        let local_root = merkle::root(cp.size, &self.store.hash_reader(origin))
            .map_err(|e| EngineError::Internal(format!("root of {origin} at {}: {e}", cp.size)))?;
        if local_root != cp.root {
            // The origin signed entries whose tree has another root at this size.
            let mut notes = vec![signed.note.clone()];
            if let Some(latest) = self.store.checkpoint(origin)? {
                notes.push(latest.note);
            }
            self.record_equivocation(
                origin,
                pb::evidence::Kind::ConflictingCheckpoints,
                notes,
                via,
            )?;
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
        self.store.apply(batch)?;
        self.note_checkpoint_stored(origin, cp.size);
        Ok(CheckpointOutcome::Stored)
    }

    /// Merges witnesses' cosignature lines into the stored checkpoint of `origin` at `size`.
    pub async fn add_cosignatures(
        &self,
        origin: &str,
        size: u64,
        lines: Vec<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let _writer = self.write_lock.lock().await;
        let Some(held) = self.store.checkpoint_at(origin, size)? else {
            return Ok(());
        };
        let merged = note::add_signature_lines(&held, &lines)
            .map_err(|e| EngineError::Internal(format!("merging cosignatures: {e}")))?;
        // Only lines that verify under a member's witness key are kept in what is served.
        let verified = self.verify_note(origin, &merged)?;
        let mut batch = WriteBatch::new();
        batch.set_checkpoint(origin, size, merged);
        self.store.apply(batch)?;
        self.store.flush_async().await?;
        drop(_writer);
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
    pub(super) fn record_equivocation(
        &self,
        origin: &str,
        kind: pb::evidence::Kind,
        notes: Vec<Vec<u8>>,
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
            detected_at: self.clock.now_millis(),
            detected_via: via.to_owned(),
            ..Default::default()
        };
        let mut batch = WriteBatch::new();
        batch
            .add_evidence(origin, prost::Message::encode_to_vec(&evidence))
            .mark_forked(origin);
        self.store.apply(batch)?;
        self.store.flush()?;
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
