//! A checkpoint note verified against the consortium's pinned keys: the origin's log signature,
//! and which member witnesses cosigned it (see the crate docs, *Quorum*).

use credex_core::consortium::{Consortium, Member};
use credex_core::keys::PublicKey;
use credex_core::merkle::Hash;
use credex_core::note::{self, NoteError, SignedCheckpoint};

/// What a verified checkpoint says and who cosigned it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointReport {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The origin's log key, `name+keyid`.
    pub signed_by: String,
    /// Member cities other than the origin whose witness cosigned: these count for the quorum.
    pub cosigners: Vec<Cosigner>,
    /// The origin's own witness cosigned too (not counted).
    pub own_cosignature: bool,
    /// Signature lines by keys outside the consortium, ignored.
    pub ignored: usize,
}

/// A member witness's cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigner {
    pub city: String,
    /// Unix seconds.
    pub timestamp: u64,
}

/// Verifies a checkpoint note of `member`'s log against the pinned keys.
pub(crate) fn verify_note(
    note: &[u8],
    member: &Member,
    consortium: &Consortium,
) -> Result<(SignedCheckpoint, CheckpointReport), NoteError> {
    let witnesses: Vec<PublicKey> = consortium
        .members
        .iter()
        .map(|m| m.witness_key.clone())
        .collect();
    let signed = note::verify_checkpoint(note, &member.log_key, &witnesses)?;
    let mut cosigners = Vec::new();
    let mut own_cosignature = false;
    for c in &signed.cosignatures {
        let Some(witness) = consortium
            .members
            .iter()
            .find(|m| m.witness_key.name() == c.witness && m.witness_key.key_id() == c.key_id)
        else {
            continue;
        };
        if witness.city == member.city {
            own_cosignature = true;
        } else if !cosigners.iter().any(|s: &Cosigner| s.city == witness.city) {
            cosigners.push(Cosigner {
                city: witness.city.clone(),
                timestamp: c.timestamp,
            });
        }
    }
    let lines = signature_lines(note);
    let ignored = lines.saturating_sub(1 + signed.cosignatures.len());
    let report = CheckpointReport {
        origin: signed.checkpoint.origin.clone(),
        size: signed.checkpoint.size,
        root: signed.checkpoint.root,
        signed_by: key_text(&member.log_key),
        cosigners,
        own_cosignature,
        ignored,
    };
    Ok((signed, report))
}

/// Signature lines in a well-formed note: the non-empty lines after its first blank line
/// (a checkpoint body has none).
fn signature_lines(note: &[u8]) -> usize {
    note.windows(2).position(|w| w == b"\n\n").map_or(0, |i| {
        note[i + 2..]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    })
}

fn key_text(key: &PublicKey) -> String {
    format!("{}+{:08x}", key.name(), key.key_id())
}
