//! Proof files verified: a record's entry, signed by its origin, included under a checkpoint
//! its origin signed and enough member witnesses cosigned.

use std::fmt;

use credex_core::consortium::Consortium;
use credex_core::entry::{self, EntryError};
use credex_core::merkle::{self, Hash, ProofError};
use credex_core::note::{NoteError, peek_checkpoint};
use credex_core::pb;

use crate::checkpoint::{CheckpointReport, verify_note};
use crate::format::ProofFile;
use crate::text::{format_seconds, plural};

/// Which checkpoint of a proof file a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The one the inclusion path leads to.
    Proof,
    /// The extension's newer one.
    Newer,
}

/// The check a proof file failed.
#[derive(Debug)]
pub enum VerifyError {
    /// The tlog-proof has no `extra` line, so no entry.
    NoEntry,
    UnknownOrigin {
        origin: String,
        consortium: String,
    },
    UnknownCity {
        city: String,
        consortium: String,
    },
    Checkpoint {
        which: Which,
        source: NoteError,
    },
    Entry(EntryError),
    EntryOrigin {
        found: String,
        expected: String,
    },
    EntrySeq {
        found: u64,
        index: u64,
    },
    Inclusion(ProofError),
    Consistency(ProofError),
    Quorum {
        origin: String,
        size: u64,
        cosigners: Vec<String>,
        need: usize,
        /// The origin's own witness cosigned (not counted).
        own: bool,
        /// Signature lines by keys outside the consortium (ignored).
        ignored: usize,
    },
}

impl VerifyError {
    /// The check's short name, as the message starts with it.
    pub fn check(&self) -> &'static str {
        match self {
            Self::NoEntry | Self::Entry(_) | Self::EntryOrigin { .. } | Self::EntrySeq { .. } => {
                "signed entry"
            }
            Self::UnknownOrigin { .. } | Self::UnknownCity { .. } => "origin",
            Self::Checkpoint {
                which: Which::Proof,
                ..
            } => "checkpoint",
            Self::Checkpoint {
                which: Which::Newer,
                ..
            } => "newer checkpoint",
            Self::Inclusion(_) => "inclusion proof",
            Self::Consistency(_) => "consistency proof",
            Self::Quorum { .. } => "quorum",
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.check())?;
        match self {
            Self::NoEntry => f.write_str(
                "the proof has no extra line, where a credex proof carries the signed entry",
            ),
            Self::UnknownOrigin { origin, consortium } => write!(
                f,
                "checkpoint origin {origin:?} is not the log of a member of consortium {consortium}"
            ),
            Self::UnknownCity { city, consortium } => {
                write!(f, "{city:?} is not a member of consortium {consortium}")
            }
            Self::Checkpoint { source, .. } => write!(f, "{source}"),
            Self::Entry(e) => write!(f, "{e}"),
            Self::EntryOrigin { found, expected } => write!(
                f,
                "the entry says origin {found:?}, but the checkpoint is the log of {expected}"
            ),
            Self::EntrySeq { found, index } => write!(
                f,
                "the entry says seq {found}, but the proof is for index {index}"
            ),
            Self::Inclusion(e) | Self::Consistency(e) => write!(f, "{e}"),
            Self::Quorum {
                origin,
                size,
                cosigners,
                need,
                own,
                ignored,
            } => {
                write!(
                    f,
                    "checkpoint of {origin} at size {size} has {} from other members' witnesses{}, {need} needed",
                    plural(cosigners.len(), "cosignature"),
                    if cosigners.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", cosigners.join(", "))
                    }
                )?;
                if *own {
                    f.write_str("; the origin's own witness does not count")?;
                }
                if *ignored > 0 {
                    write!(
                        f,
                        "; ignored {} by keys outside the consortium",
                        plural(*ignored, "signature line")
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// A proof file that verified.
#[derive(Debug, Clone)]
pub struct ProofReport {
    /// The origin city.
    pub city: String,
    pub city_name: String,
    pub index: u64,
    pub leaf_hash: Hash,
    /// The decoded entry, record included (with full ID numbers: mask before display).
    pub entry: pb::Entry,
    /// The checkpoint the inclusion path leads to.
    pub checkpoint: CheckpointReport,
    /// The extension's newer checkpoint, consistent with `checkpoint`.
    pub newer: Option<CheckpointReport>,
    pub quorum: usize,
}

impl ProofReport {
    /// The checkpoint the quorum was checked on: the newer one when the file is extended.
    pub fn quorum_checkpoint(&self) -> &CheckpointReport {
        self.newer.as_ref().unwrap_or(&self.checkpoint)
    }

    /// The report's last line: what the file proves.
    pub fn verdict(&self) -> String {
        let cosigners = self.quorum_checkpoint().cosigners.len();
        format!(
            "VERIFIED: {} seq {} is in the log of {} at size {}{}, cosigned by {} other member{} (quorum {})",
            self.city,
            self.index,
            self.checkpoint.origin,
            self.checkpoint.size,
            self.newer
                .as_ref()
                .map(|n| format!(" and, through a consistency proof, at size {}", n.size))
                .unwrap_or_default(),
            cosigners,
            if cosigners == 1 { "" } else { "s" },
            self.quorum
        )
    }

    /// Every check that was made, in [`verify_proof`]'s order, as reports show them
    /// (`credexctl audit verify`, the console's audit page).
    pub fn checks(&self) -> Vec<Check> {
        let cp = &self.checkpoint;
        let mut checks = vec![
            Check::held(
                "checkpoint",
                format!(
                    "checkpoint {} size {} signed by the origin's log key {}",
                    cp.origin, cp.size, cp.signed_by
                ),
            ),
            Check::held(
                "signed entry",
                format!(
                    "entry signature by {} (strict Ed25519), origin {}, seq {}",
                    cp.signed_by, self.city, self.index
                ),
            ),
            Check::held(
                "inclusion proof",
                format!(
                    "leaf hash {} included at index {} of the tree of size {}, root {}",
                    self.leaf_hash, self.index, cp.size, cp.root
                ),
            ),
        ];
        if let Some(new) = &self.newer {
            checks.push(Check::held(
                "consistency proof",
                format!(
                    "newer checkpoint size {} signed by {}, consistent with size {}, root {}",
                    new.size, new.signed_by, cp.size, new.root
                ),
            ));
        }
        let last = self.quorum_checkpoint();
        let cosigners = if last.cosigners.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                last.cosigners
                    .iter()
                    .map(|c| format!("{} at {}", c.city, format_seconds(c.timestamp)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut not_counted = Vec::new();
        if last.own_cosignature {
            not_counted.push("the origin's own witness".to_owned());
        }
        if last.ignored > 0 {
            not_counted.push(format!(
                "{} by keys outside the consortium",
                plural(last.ignored, "signature line")
            ));
        }
        checks.push(Check {
            name: "quorum",
            held: last.cosigners.len() >= self.quorum,
            text: format!(
                "{} from other members' witnesses on size {}{cosigners}, quorum {}",
                plural(last.cosigners.len(), "cosignature"),
                last.size,
                self.quorum
            ),
            not_counted: (!not_counted.is_empty()).then(|| not_counted.join("; ")),
        });
        checks
    }
}

/// One check of a verified proof file, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The check's short name, the one [`VerifyError::check`] gives when it fails.
    pub name: &'static str,
    /// False only for a quorum not met, which only a report verified with a lower quorum
    /// than the one it states can show.
    pub held: bool,
    /// What was checked, with the figures.
    pub text: String,
    /// Signatures seen but not counted for the quorum.
    pub not_counted: Option<String>,
}

impl Check {
    fn held(name: &'static str, text: String) -> Check {
        Check {
            name,
            held: true,
            text,
            not_counted: None,
        }
    }
}

/// Verifies a proof file offline, in this order: the checkpoint's signature by its origin's
/// pinned log key, the entry's signature (strict), the entry's origin and seq, the leaf's
/// inclusion under the checkpoint's root, then for an extended file the newer checkpoint's
/// signature and the consistency proof, and last the quorum of cosignatures on the newest
/// checkpoint. The checkpoint comes first because everything else is checked against it.
pub fn verify_proof(
    file: &ProofFile,
    consortium: &Consortium,
    quorum: usize,
) -> Result<ProofReport, VerifyError> {
    let proof = &file.proof;
    let leaf = proof.extra.as_deref().ok_or(VerifyError::NoEntry)?;
    let checkpoint_error = |which| move |source| VerifyError::Checkpoint { which, source };

    let origin = peek_checkpoint(&proof.checkpoint).map_err(checkpoint_error(Which::Proof))?;
    let member =
        consortium
            .member_by_origin(&origin.origin)
            .ok_or_else(|| VerifyError::UnknownOrigin {
                origin: origin.origin.clone(),
                consortium: consortium.name.clone(),
            })?;
    let (old, old_report) = verify_note(&proof.checkpoint, member, consortium)
        .map_err(checkpoint_error(Which::Proof))?;

    let verified = entry::verify_entry(leaf, &member.log_key).map_err(VerifyError::Entry)?;
    if verified.entry.origin != member.city {
        return Err(VerifyError::EntryOrigin {
            found: verified.entry.origin,
            expected: member.city.clone(),
        });
    }
    if verified.entry.seq != proof.index {
        return Err(VerifyError::EntrySeq {
            found: verified.entry.seq,
            index: proof.index,
        });
    }
    let leaf_hash = merkle::leaf_hash(leaf);
    merkle::verify_inclusion(
        &proof.path,
        proof.index,
        old.checkpoint.size,
        leaf_hash,
        old.checkpoint.root,
    )
    .map_err(VerifyError::Inclusion)?;

    let newer_report = match &file.extension {
        None => None,
        Some(ext) => {
            let (new, report) = verify_note(&ext.checkpoint, member, consortium)
                .map_err(checkpoint_error(Which::Newer))?;
            merkle::verify_consistency(
                &ext.consistency,
                old.checkpoint.size,
                old.checkpoint.root,
                new.checkpoint.size,
                new.checkpoint.root,
            )
            .map_err(VerifyError::Consistency)?;
            Some(report)
        }
    };

    let report = ProofReport {
        city: member.city.clone(),
        city_name: member.name_zh.clone(),
        index: proof.index,
        leaf_hash,
        entry: verified.entry,
        checkpoint: old_report,
        newer: newer_report,
        quorum,
    };
    let last = report.quorum_checkpoint();
    if last.cosigners.len() < quorum {
        return Err(VerifyError::Quorum {
            origin: last.origin.clone(),
            size: last.size,
            cosigners: last.cosigners.iter().map(|c| c.city.clone()).collect(),
            need: quorum,
            own: last.own_cosignature,
            ignored: last.ignored,
        });
    }
    Ok(report)
}
