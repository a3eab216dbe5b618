//! Witness.AddCheckpoint with C2SP tlog-witness semantics: this node cosigns a peer's
//! checkpoint only if it is consistent with the last checkpoint of that origin it cosigned,
//! and persists the new state in one atomic, durable write before answering.

use credex_core::merkle;
use credex_core::note;
use credex_core::pb;
use credex_store::WriteBatch;
use tracing::{info, warn};

use super::{Engine, EngineError};

/// The witness's answer.
#[derive(Debug, Clone)]
pub enum WitnessAnswer {
    /// The cosignature line to add to the note.
    Cosigned(Vec<u8>),
    /// Refused, with this node's latest cosigned checkpoint of that origin.
    Refused {
        reason: String,
        latest: Option<Vec<u8>>,
        latest_size: u64,
    },
}

impl Engine {
    /// Cosigns `note` if it extends, consistently, the last checkpoint of its origin this
    /// witness cosigned (`old_size` is the caller's belief of that size).
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Vec<u8>],
        note: &[u8],
    ) -> Result<WitnessAnswer, EngineError> {
        let origin = self.origin_of_note(note)?;
        let signed = self.verify_note(&origin, note)?;
        let cp = &signed.checkpoint;
        let proof: Vec<merkle::Hash> = proof
            .iter()
            .enumerate()
            .map(|(i, h)| {
                merkle::hash_from_bytes(h).map_err(|e| {
                    EngineError::InvalidArgument(format!("consistency_proof[{i}]: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        let _writer = self.write_lock.lock().await;
        let held = self.store.witness(&origin)?;
        let (held_size, held_note) = match &held {
            Some(h) => (h.size, Some(h.note.clone())),
            None => (0, None),
        };
        let refuse = |reason: String| WitnessAnswer::Refused {
            reason,
            latest: held_note.clone(),
            latest_size: held_size,
        };
        if self.store.origin_state(&origin).forked {
            return Ok(refuse(format!(
                "origin {origin} is marked forked on this node"
            )));
        }
        if old_size != held_size {
            return Ok(refuse(format!(
                "old_size {old_size} does not match the last cosigned size {held_size} of {origin}"
            )));
        }
        if cp.size < held_size {
            return Ok(refuse(format!(
                "checkpoint size {} is older than the last cosigned size {held_size}",
                cp.size
            )));
        }
        if let Some(held_note) = &held_note {
            let held_cp = self.verify_note(&origin, held_note)?.checkpoint;
            if let Err(e) =
                merkle::verify_consistency(&proof, held_size, held_cp.root, cp.size, cp.root)
            {
                if cp.size == held_size {
                    // Same size, another root, both signed by the origin: equivocation.
                    warn!(origin, "equivocation seen while witnessing");
                    self.record_equivocation(
                        &origin,
                        pb::evidence::Kind::ConflictingCheckpoints,
                        vec![held_note.clone(), note.to_vec()],
                        Vec::new(),
                        "witness",
                    )
                    .await?;
                    drop(_writer);
                    self.announce();
                    return Ok(refuse(format!(
                        "checkpoint conflicts with the cosigned one at size {held_size}"
                    )));
                }
                return Ok(refuse(format!(
                    "consistency proof from size {held_size}: {e}"
                )));
            }
        }
        let now_secs = u64::try_from(self.clock.now_millis() / 1000).unwrap_or(0);
        let line = note::cosign(cp, self.witness_key(), now_secs)
            .map_err(|e| EngineError::Internal(format!("cosigning: {e}")))?;
        let mut batch = WriteBatch::new();
        batch.set_witness(&origin, cp.size, note.to_vec());
        self.apply(batch).await?;
        // The flush need not hold the lock (the receive path waits on it for every checkpoint
        // a peer sends): a call that reads this checkpoint after the apply answers only after
        // its own flush, which makes this one durable too.
        drop(_writer);
        self.flush_durable().await?;
        info!(origin, size = cp.size, "cosigned");
        Ok(WitnessAnswer::Cosigned(line))
    }

    /// The member whose checkpoint origin line `note` starts with.
    fn origin_of_note(&self, note: &[u8]) -> Result<String, EngineError> {
        let first = note.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = std::str::from_utf8(first).unwrap_or_default();
        self.members()
            .find(|m| credex_core::consortium::origin(&self.consortium, &m.city) == first)
            .map(|m| m.city.clone())
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "checkpoint: origin line {first:?} names no member of consortium {}",
                    self.consortium
                ))
            })
    }
}
