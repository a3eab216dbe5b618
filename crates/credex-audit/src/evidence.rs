//! Equivocation evidence verified: whether checkpoints or entries an origin signed prove that
//! it showed two histories (DESIGN.md "Equivocation").

use std::fmt;

use credex_core::consortium::{Consortium, Member};
use credex_core::entry::{self, EntryError};
use credex_core::merkle::{self, Hash, ProofError};
use credex_core::note::{self, Checkpoint, NoteError};
use credex_core::pb;

use crate::text::{format_millis, hash_count, plural};

/// Why a piece of evidence was refused: it is forged, damaged, or shows no conflict.
#[derive(Debug)]
pub enum EvidenceError {
    UnknownOrigin {
        origin: String,
        consortium: String,
    },
    UnknownKind(i32),
    TooFew {
        what: &'static str,
        count: usize,
    },
    /// Checkpoint number `n` (from 1) does not verify.
    Checkpoint {
        n: usize,
        source: NoteError,
    },
    /// Signed entry number `n` (from 1) does not verify.
    Entry {
        n: usize,
        source: EntryError,
    },
    EntryOrigin {
        n: usize,
        found: String,
        expected: String,
    },
    NoConflict(String),
    ConsistencyHolds {
        old: u64,
        new: u64,
    },
}

impl fmt::Display for EvidenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOrigin { origin, consortium } => {
                write!(
                    f,
                    "origin {origin:?} is not a member of consortium {consortium}"
                )
            }
            Self::UnknownKind(kind) => write!(f, "unknown evidence kind {kind}"),
            Self::TooFew { what, count } => {
                write!(
                    f,
                    "it holds {}, at least 2 are needed",
                    plural(*count, what)
                )
            }
            Self::Checkpoint { n, source } => write!(f, "checkpoint {n}: {source}"),
            Self::Entry { n, source } => write!(f, "signed entry {n}: {source}"),
            Self::EntryOrigin { n, found, expected } => write!(
                f,
                "signed entry {n}: the entry says origin {found:?}, not {expected:?}"
            ),
            Self::NoConflict(detail) => write!(f, "no conflict: {detail}"),
            Self::ConsistencyHolds { old, new } => write!(
                f,
                "the consistency proof from size {old} to size {new} verifies: the checkpoints are consistent"
            ),
        }
    }
}

impl std::error::Error for EvidenceError {}

/// What a piece of evidence shows.
#[derive(Debug, Clone, PartialEq)]
pub enum EvidenceVerdict {
    /// The origin provably equivocated.
    Proven(Equivocation),
    /// Every piece is authentic, but the conflict cannot be shown offline.
    Unproven(String),
}

/// A proven equivocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Equivocation {
    /// Two checkpoints signed by the origin, of one size, with different roots.
    Checkpoints { size: u64, roots: [Hash; 2] },
    /// Two different leaves signed by the origin for one seq.
    Entries { seq: u64, leaf_hashes: [Hash; 2] },
    /// Two checkpoints signed by the origin, of sizes `old_size < new_size`, and a consistency
    /// proof that reproduces the root signed at `new_size` and yields, for that tree's first
    /// `old_size` leaves, a root other than the one signed at `old_size`.
    Histories {
        old_size: u64,
        new_size: u64,
        signed_old_root: Hash,
        implied_old_root: Hash,
        new_root: Hash,
    },
}

/// A piece of evidence whose signatures verified.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceReport {
    pub city: String,
    pub kind: pb::evidence::Kind,
    pub detected_via: String,
    /// Unix milliseconds.
    pub detected_at: i64,
    pub verdict: EvidenceVerdict,
}

/// Verifies one piece of evidence offline with the origin's pinned log key; see the module
/// docs for what counts as proof.
pub fn verify_evidence(
    e: &pb::Evidence,
    consortium: &Consortium,
) -> Result<EvidenceReport, EvidenceError> {
    let member = consortium
        .member(&e.origin)
        .ok_or_else(|| EvidenceError::UnknownOrigin {
            origin: e.origin.clone(),
            consortium: consortium.name.clone(),
        })?;
    let kind = pb::evidence::Kind::try_from(e.kind)
        .ok()
        .filter(|k| *k != pb::evidence::Kind::Unspecified)
        .ok_or(EvidenceError::UnknownKind(e.kind))?;
    let verdict = match kind {
        pb::evidence::Kind::ConflictingEntries => conflicting_entries(e, member)?,
        _ => {
            let checkpoints = evidence_checkpoints(e, member)?;
            match conflicting_checkpoints(&checkpoints) {
                Some(found) => EvidenceVerdict::Proven(found),
                None if kind == pb::evidence::Kind::ConflictingCheckpoints => {
                    return Err(EvidenceError::NoConflict(format!(
                        "no two of the checkpoints (sizes {}) have one size and different roots",
                        sizes(&checkpoints)
                    )));
                }
                None => inconsistent_checkpoints(e, &checkpoints)?,
            }
        }
    };
    Ok(EvidenceReport {
        city: member.city.clone(),
        kind,
        detected_via: e.detected_via.clone(),
        detected_at: e.detected_at,
        verdict,
    })
}

fn evidence_checkpoints(
    e: &pb::Evidence,
    member: &Member,
) -> Result<Vec<Checkpoint>, EvidenceError> {
    if e.checkpoints.len() < 2 {
        return Err(EvidenceError::TooFew {
            what: "checkpoint",
            count: e.checkpoints.len(),
        });
    }
    e.checkpoints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // Only the origin's signature makes a checkpoint its claim; cosignatures add nothing.
            note::verify_checkpoint(&c.note, &member.log_key, &[])
                .map(|s| s.checkpoint)
                .map_err(|source| EvidenceError::Checkpoint { n: i + 1, source })
        })
        .collect()
}

fn conflicting_checkpoints(checkpoints: &[Checkpoint]) -> Option<Equivocation> {
    checkpoints.iter().enumerate().find_map(|(i, a)| {
        checkpoints[i + 1..]
            .iter()
            .find(|b| b.size == a.size && b.root != a.root)
            .map(|b| Equivocation::Checkpoints {
                size: a.size,
                roots: [a.root, b.root],
            })
    })
}

/// Checkpoints of different sizes and the consistency proof that comes with them. The proof
/// is for one pair of sizes, which the evidence does not name, so every pair of distinct
/// signed claims `m < n` is tried, the widest (smallest and largest size) first; a pair
/// whose proof length does not fit is skipped. The first pair that proves an equivocation
/// decides; failing that, a pair the proof shows consistent refutes the evidence.
fn inconsistent_checkpoints(
    e: &pb::Evidence,
    checkpoints: &[Checkpoint],
) -> Result<EvidenceVerdict, EvidenceError> {
    // One claim per (size, root): a checkpoint listed twice, say with more cosignatures, is one.
    let mut claims: Vec<&Checkpoint> = checkpoints.iter().collect();
    claims.sort_by_key(|c| (c.size, c.root.0));
    claims.dedup_by_key(|c| (c.size, c.root));
    let mut pairs: Vec<(&Checkpoint, &Checkpoint)> = claims
        .iter()
        .enumerate()
        .flat_map(|(i, old)| {
            claims[i + 1..]
                .iter()
                .filter(|new| new.size > old.size)
                .map(move |new| (*old, *new))
        })
        .collect();
    pairs.sort_by_key(|(old, new)| (std::cmp::Reverse(new.size - old.size), old.size));
    let Some(&(widest_old, widest_new)) = pairs.first() else {
        return Err(EvidenceError::NoConflict(format!(
            "the checkpoints all have size {} and the same root",
            checkpoints[0].size
        )));
    };
    let proof = match e
        .consistency_proof
        .iter()
        .map(|h| merkle::hash_from_bytes(h))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(proof) => proof,
        Err(err) => {
            return Ok(EvidenceVerdict::Unproven(format!(
                "the checkpoints are signed by the origin, but the consistency proof is malformed ({err}), so it proves nothing"
            )));
        }
    };
    let mut holds = None;
    let mut not_reproduced = None;
    let mut wrong_length = None;
    for (old, new) in pairs {
        // A plain RFC 9162 proof (no seed when `old` is a power of two) can still show the
        // two checkpoints consistent, which refutes the evidence.
        if merkle::verify_consistency(&proof, old.size, old.root, new.size, new.root).is_ok() {
            holds.get_or_insert((old.size, new.size));
            continue;
        }
        match merkle::consistency_roots(&proof, old.size, new.size) {
            Ok((implied_old_root, computed_new)) if computed_new == new.root => {
                if implied_old_root == old.root {
                    holds.get_or_insert((old.size, new.size));
                } else {
                    return Ok(EvidenceVerdict::Proven(Equivocation::Histories {
                        old_size: old.size,
                        new_size: new.size,
                        signed_old_root: old.root,
                        implied_old_root,
                        new_root: new.root,
                    }));
                }
            }
            Ok((_, computed_new)) => {
                not_reproduced.get_or_insert((
                    old.size,
                    new.size,
                    format!("it yields {computed_new}, the origin signed {}", new.root),
                ));
            }
            Err(ProofError::WrongProofLength { want, .. }) => {
                wrong_length.get_or_insert(want);
            }
            Err(err) => {
                not_reproduced.get_or_insert((old.size, new.size, err.to_string()));
            }
        }
    }
    if let Some((old, new)) = holds {
        return Err(EvidenceError::ConsistencyHolds { old, new });
    }
    Ok(EvidenceVerdict::Unproven(match not_reproduced {
        Some((old, new, why)) => format!(
            "the checkpoints are signed by the origin, but the consistency proof from size {old} to {new} does not reproduce the root signed at size {new} ({why}), so it says nothing about that tree's first {old} leaves: it proves nothing"
        ),
        None => format!(
            "the checkpoints are signed by the origin, but the consistency proof has {}, the length of no proof between two of the signed sizes ({}; a seeded proof from {} to {} has {}), so it proves nothing",
            hash_count(proof.len()),
            sizes(checkpoints),
            widest_old.size,
            widest_new.size,
            hash_count(wrong_length.unwrap_or_default()),
        ),
    }))
}

fn conflicting_entries(
    e: &pb::Evidence,
    member: &Member,
) -> Result<EvidenceVerdict, EvidenceError> {
    if e.signed_entries.len() < 2 {
        return Err(EvidenceError::TooFew {
            what: "signed entry",
            count: e.signed_entries.len(),
        });
    }
    let mut entries = Vec::with_capacity(e.signed_entries.len());
    for (i, leaf) in e.signed_entries.iter().enumerate() {
        let verified = entry::verify_entry(leaf, &member.log_key)
            .map_err(|source| EvidenceError::Entry { n: i + 1, source })?;
        if verified.entry.origin != member.city {
            return Err(EvidenceError::EntryOrigin {
                n: i + 1,
                found: verified.entry.origin,
                expected: member.city.clone(),
            });
        }
        entries.push((verified.entry.seq, leaf.as_slice()));
    }
    let found = entries.iter().enumerate().find_map(|(i, (seq, a))| {
        entries[i + 1..]
            .iter()
            .find(|(s, b)| s == seq && b != a)
            .map(|(_, b)| Equivocation::Entries {
                seq: *seq,
                leaf_hashes: [merkle::leaf_hash(a), merkle::leaf_hash(b)],
            })
    });
    found.map(EvidenceVerdict::Proven).ok_or_else(|| {
        EvidenceError::NoConflict(format!(
            "no two different entries share a seq (seqs {})",
            entries
                .iter()
                .map(|(s, _)| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn sizes(checkpoints: &[Checkpoint]) -> String {
    checkpoints
        .iter()
        .map(|c| c.size.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The display name of an evidence kind.
pub fn kind_name(kind: pb::evidence::Kind) -> &'static str {
    match kind {
        pb::evidence::Kind::Unspecified => "unspecified",
        pb::evidence::Kind::ConflictingCheckpoints => "conflicting checkpoints",
        pb::evidence::Kind::InconsistentCheckpoints => "inconsistent checkpoints",
        pb::evidence::Kind::ConflictingEntries => "conflicting entries",
    }
}

/// One line about a verified piece of evidence: the origin, the kind, where and when it was
/// detected, and what it proves.
impl fmt::Display for EvidenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

impl EvidenceReport {
    fn line(&self) -> String {
        let r = self;
        let head = format!(
            "{}, {}, detected via {} at {}",
            r.city,
            kind_name(r.kind),
            if r.detected_via.is_empty() {
                "-"
            } else {
                &r.detected_via
            },
            format_millis(r.detected_at)
        );
        match &r.verdict {
            EvidenceVerdict::Proven(Equivocation::Checkpoints { size, roots }) => format!(
                "{head}: PROVEN — two checkpoints of size {size} signed by the origin have roots {} and {}",
                roots[0], roots[1]
            ),
            EvidenceVerdict::Proven(Equivocation::Entries { seq, leaf_hashes }) => format!(
                "{head}: PROVEN — two different entries for seq {seq} signed by the origin, leaf hashes {} and {}",
                leaf_hashes[0], leaf_hashes[1]
            ),
            EvidenceVerdict::Proven(Equivocation::Histories {
                old_size,
                new_size,
                signed_old_root,
                implied_old_root,
                new_root,
            }) => format!(
                "{head}: PROVEN — the origin signed a tree of size {new_size} (root {new_root}) whose first {old_size} leaves have root {implied_old_root} by the consistency proof, and a tree of size {old_size} with root {signed_old_root}"
            ),
            EvidenceVerdict::Unproven(why) => format!("{head}: NOT PROVEN — {why}"),
        }
    }
}
