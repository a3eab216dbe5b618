//! A whole log replayed against its origin's checkpoint history.

use std::fmt;

use credex_core::consortium::Consortium;
use credex_core::entry::{self, EntryError};
use credex_core::keys::PublicKey;
use credex_core::merkle::{self, Hash, MemoryHashStore, ProofError};
use credex_core::note::{Checkpoint, NoteError, peek_checkpoint};

use crate::checkpoint::{CheckpointReport, verify_note};
use crate::proof::VerifyError;
use crate::text::{entries, plural};

/// Most failures a replay keeps; it still counts the rest.
const MAX_REPLAY_FAILURES: usize = 100;

/// Something wrong found while replaying a log.
#[derive(Debug)]
pub enum ReplayFailure {
    Entry {
        seq: u64,
        source: EntryError,
    },
    EntryOrigin {
        seq: u64,
        found: String,
        expected: String,
    },
    EntrySeq {
        seq: u64,
        found: u64,
    },
    /// Checkpoint number `position` (from 0, in the order the node listed them).
    Checkpoint {
        position: usize,
        source: NoteError,
    },
    ConflictingCheckpoints {
        size: u64,
        roots: [Hash; 2],
    },
    RootMismatch {
        size: u64,
        signed: Hash,
        computed: Hash,
    },
    Inconsistent {
        old: u64,
        new: u64,
        source: ProofError,
    },
    BeyondLog {
        size: u64,
        entries: u64,
    },
    Tree {
        seq: u64,
        source: ProofError,
    },
    /// The tree of every entry served, the log the node holds, has a root that no checkpoint
    /// of its size carries (`held` of that size were verified, none with this root).
    UnsignedRoot {
        size: u64,
        root: Hash,
        held: usize,
    },
    /// The node holds equivocation evidence about the origin, so it marks it forked.
    Forked {
        city: String,
        evidence: usize,
    },
}

impl fmt::Display for ReplayFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Entry { seq, source } => write!(f, "entry {seq}: {source}"),
            Self::EntryOrigin {
                seq,
                found,
                expected,
            } => write!(f, "entry {seq}: it says origin {found:?}, not {expected:?}"),
            Self::EntrySeq { seq, found } => write!(f, "entry {seq}: it says seq {found}"),
            Self::Checkpoint { position, source } => {
                write!(f, "checkpoint #{position} of the history: {source}")
            }
            Self::ConflictingCheckpoints { size, roots } => write!(
                f,
                "two checkpoints of size {size} signed by the origin have different roots {} and {}: the origin equivocated",
                roots[0], roots[1]
            ),
            Self::RootMismatch {
                size,
                signed,
                computed,
            } => write!(
                f,
                "checkpoint of size {size}: its signed root {signed} is not {computed}, the root of the entries served"
            ),
            Self::Inconsistent { old, new, source } => {
                write!(f, "checkpoints of sizes {old} and {new}: {source}")
            }
            Self::BeyondLog { size, entries } => write!(
                f,
                "checkpoint of size {size} covers more than the {entries} entries served"
            ),
            Self::Tree { seq, source } => write!(f, "entry {seq}: hashing into the tree: {source}"),
            Self::UnsignedRoot { size, root, held } => write!(
                f,
                "the log held, {} with root {root}, matches no checkpoint of size {size} the origin signed ({}): the node holds a root its origin never signed",
                entries(*size),
                if *held == 0 {
                    "none of that size".to_owned()
                } else {
                    format!("{held} of that size, with another root")
                }
            ),
            Self::Forked { city, evidence } => write!(
                f,
                "origin is marked forked at this node; {} (`credexctl audit evidence --origin {city}` exports them for `audit verify`)",
                if *evidence == 1 {
                    "1 piece of evidence".to_owned()
                } else {
                    format!("{evidence} pieces of evidence")
                }
            ),
        }
    }
}

/// Replays one origin's log: feed it the checkpoint history, then every leaf from seq 0 in
/// order ([`LogReplay::push`]), then [`LogReplay::finish`].
///
/// Every entry is verified (strict signature, origin, seq) and appended to a fresh tree,
/// whatever the outcome, since the leaf is in the log either way. Every checkpoint is verified
/// against the pinned keys and, once the tree reaches its size, its root compared with the
/// tree's. Between successive checkpoints whose roots both matched, a consistency proof
/// computed from the tree is checked against the two signed roots; when a root did not
/// match, that mismatch is the failure reported. Last, the whole tree — the log the node
/// holds — must have the root of a checkpoint of its size (DESIGN.md "Receiver checks": a
/// log never holds a root its origin did not sign); a log of its origin's first history up
/// to one checkpoint and another history's entries after it fails there. A node that marks
/// the origin forked ([`LogReplay::marked_forked`]) fails the replay too, whatever the
/// entries show.
#[derive(Debug)]
pub struct LogReplay {
    city: String,
    log_key: PublicKey,
    tree: MemoryHashStore,
    /// Verified checkpoints in size order.
    checkpoints: Vec<(Checkpoint, CheckpointReport)>,
    checkpoints_held: usize,
    /// Index in `checkpoints` of the next one to compare with the tree.
    next: usize,
    /// The last checkpoint whose root matched.
    last_matched: Option<Checkpoint>,
    /// The report of the largest checkpoint whose root matched.
    newest: Option<CheckpointReport>,
    entries_valid: u64,
    roots_matched: usize,
    consistency_checked: usize,
    /// Pieces of evidence the node holds about the origin, when it holds any.
    forked: Option<usize>,
    failures: Vec<ReplayFailure>,
    failure_count: u64,
}

/// What a replay found.
#[derive(Debug)]
pub struct ReplayReport {
    pub city: String,
    pub entries: u64,
    pub entries_valid: u64,
    pub root: Hash,
    /// Checkpoints the node listed (of a second listing, those taken).
    pub checkpoints_held: usize,
    pub checkpoints_verified: usize,
    pub roots_matched: usize,
    pub consistency_checked: usize,
    /// The largest checkpoint whose root matched the tree.
    pub newest: Option<CheckpointReport>,
    /// Pieces of evidence about the origin, when the node marks it forked.
    pub forked: Option<usize>,
    /// The first failures, in the order found (a forked origin first).
    pub failures: Vec<ReplayFailure>,
    /// All failures, including those not kept.
    pub failure_count: u64,
}

impl LogReplay {
    /// Starts a replay of `city`'s log with its checkpoint history (notes verbatim).
    pub fn new(
        consortium: &Consortium,
        city: &str,
        notes: &[Vec<u8>],
    ) -> Result<Self, VerifyError> {
        let member = consortium
            .member(city)
            .ok_or_else(|| VerifyError::UnknownCity {
                city: city.to_owned(),
                consortium: consortium.name.clone(),
            })?;
        let mut replay = Self {
            city: city.to_owned(),
            log_key: member.log_key.clone(),
            tree: MemoryHashStore::new(),
            checkpoints: Vec::new(),
            checkpoints_held: notes.len(),
            next: 0,
            last_matched: None,
            newest: None,
            entries_valid: 0,
            roots_matched: 0,
            consistency_checked: 0,
            forked: None,
            failures: Vec::new(),
            failure_count: 0,
        };
        for (position, n) in notes.iter().enumerate() {
            match verify_note(n, member, consortium) {
                Ok((signed, report)) => replay.checkpoints.push((signed.checkpoint, report)),
                Err(source) => replay.fail(ReplayFailure::Checkpoint { position, source }),
            }
        }
        replay.checkpoints.sort_by_key(|(c, _)| c.size);
        let conflicts: Vec<_> = replay
            .checkpoints
            .windows(2)
            .filter(|w| w[0].0.size == w[1].0.size && w[0].0.root != w[1].0.root)
            .map(|w| ReplayFailure::ConflictingCheckpoints {
                size: w[0].0.size,
                roots: [w[0].0.root, w[1].0.root],
            })
            .collect();
        for c in conflicts {
            replay.fail(c);
        }
        replay.check_due();
        Ok(replay)
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The largest verified checkpoint's size: how far the log should go.
    pub fn target_size(&self) -> u64 {
        self.checkpoints.last().map_or(0, |(c, _)| c.size)
    }

    /// Whether the tree replayed so far has the root of a verified checkpoint of its size
    /// (trivially so when empty).
    pub fn root_signed(&self) -> bool {
        self.tree.size() == 0
            || self
                .last_matched
                .as_ref()
                .is_some_and(|c| c.size == self.tree.size())
    }

    /// Adds checkpoints listed after the last entry was served: the node signs a checkpoint
    /// just after the entries it covers are durable, and the log may have grown since the
    /// history was first listed. Only those of the tree's size that are new (by root) are
    /// taken, verified and compared with the tree; larger ones cover entries this replay did
    /// not fetch, smaller ones were listed before.
    pub fn add_checkpoints(&mut self, consortium: &Consortium, notes: &[Vec<u8>]) {
        let size = self.tree.size();
        let Some(member) = consortium.member(&self.city) else {
            return;
        };
        for n in notes {
            let Ok(peeked) = peek_checkpoint(n) else {
                continue;
            };
            let known = self
                .checkpoints
                .iter()
                .any(|(c, _)| c.size == peeked.size && c.root == peeked.root);
            if peeked.size != size || known {
                continue;
            }
            let position = self.checkpoints_held;
            self.checkpoints_held += 1;
            match verify_note(n, member, consortium) {
                // Every checkpoint before `next` has at most this size, every one after it a
                // larger one: inserting at `next` keeps the order `check_due` relies on.
                Ok((signed, report)) => {
                    self.checkpoints
                        .insert(self.next, (signed.checkpoint, report));
                }
                Err(source) => self.fail(ReplayFailure::Checkpoint { position, source }),
            }
        }
        self.check_due();
    }

    /// Records that the node holds `evidence` pieces of equivocation evidence about the
    /// origin (Audit.ListEvidence), so marks it forked: the replay fails.
    pub fn marked_forked(&mut self, evidence: usize) {
        self.forked = Some(evidence);
    }

    /// Replays the next leaf.
    pub fn push(&mut self, leaf: &[u8]) {
        let seq = self.tree.size();
        match entry::verify_entry(leaf, &self.log_key) {
            Ok(v) if v.entry.origin != self.city => self.fail(ReplayFailure::EntryOrigin {
                seq,
                found: v.entry.origin,
                expected: self.city.clone(),
            }),
            Ok(v) if v.entry.seq != seq => self.fail(ReplayFailure::EntrySeq {
                seq,
                found: v.entry.seq,
            }),
            Ok(_) => self.entries_valid += 1,
            Err(source) => self.fail(ReplayFailure::Entry { seq, source }),
        }
        if let Err(source) = self.tree.append(leaf) {
            self.fail(ReplayFailure::Tree { seq, source });
            return;
        }
        self.check_due();
    }

    /// Compares every checkpoint of the tree's current size with the tree.
    fn check_due(&mut self) {
        let size = self.tree.size();
        while let Some((cp, report)) = self.checkpoints.get(self.next) {
            if cp.size != size {
                break;
            }
            let (cp, report) = (cp.clone(), report.clone());
            self.next += 1;
            let computed = self.tree.root();
            if cp.root != computed {
                self.fail(ReplayFailure::RootMismatch {
                    size,
                    signed: cp.root,
                    computed,
                });
                continue;
            }
            self.roots_matched += 1;
            self.newest = Some(report);
            if let Some(old) = self.last_matched.take()
                && old.size < cp.size
            {
                self.consistency_checked += 1;
                let checked =
                    merkle::consistency_proof(old.size, cp.size, &self.tree).and_then(|proof| {
                        merkle::verify_consistency(&proof, old.size, old.root, cp.size, cp.root)
                    });
                if let Err(source) = checked {
                    self.fail(ReplayFailure::Inconsistent {
                        old: old.size,
                        new: cp.size,
                        source,
                    });
                }
            }
            self.last_matched = Some(cp);
        }
    }

    fn fail(&mut self, failure: ReplayFailure) {
        self.failure_count += 1;
        if self.failures.len() < MAX_REPLAY_FAILURES {
            self.failures.push(failure);
        }
    }

    /// Ends the replay: checkpoints beyond the last entry are failures.
    pub fn finish(mut self) -> ReplayReport {
        let entries = self.tree.size();
        let beyond: Vec<u64> = self.checkpoints[self.next..]
            .iter()
            .map(|(c, _)| c.size)
            .collect();
        for size in beyond {
            self.fail(ReplayFailure::BeyondLog { size, entries });
        }
        if !self.root_signed() {
            let held = self
                .checkpoints
                .iter()
                .filter(|(c, _)| c.size == entries)
                .count();
            self.fail(ReplayFailure::UnsignedRoot {
                size: entries,
                root: self.tree.root(),
                held,
            });
        }
        if let Some(evidence) = self.forked {
            // First, as it is the node's own verdict on the origin.
            self.failure_count += 1;
            self.failures.truncate(MAX_REPLAY_FAILURES - 1);
            self.failures.insert(
                0,
                ReplayFailure::Forked {
                    city: self.city.clone(),
                    evidence,
                },
            );
        }
        ReplayReport {
            city: self.city,
            entries,
            entries_valid: self.entries_valid,
            root: self.tree.root(),
            checkpoints_held: self.checkpoints_held,
            checkpoints_verified: self.checkpoints.len(),
            roots_matched: self.roots_matched,
            consistency_checked: self.consistency_checked,
            newest: self.newest,
            forked: self.forked,
            failures: self.failures,
            failure_count: self.failure_count,
        }
    }
}

/// A replay's summary and failures as text, a line each.
impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl ReplayReport {
    fn text(&self) -> String {
        let r = self;
        let mut out = format!(
            "{}: {} replayed, {} valid; tree root {}\n",
            r.city,
            entries(r.entries),
            r.entries_valid,
            r.root
        );
        out.push_str(&format!(
        "checkpoints: {} held, {} signed by the origin, {} matching the tree, {} consistency {} between successive ones\n",
        r.checkpoints_held,
        r.checkpoints_verified,
        r.roots_matched,
        r.consistency_checked,
        if r.consistency_checked == 1 { "proof" } else { "proofs" }
    ));
        if let Some(n) = &r.newest {
            out.push_str(&format!(
            "newest checkpoint matching the tree: size {}, {} from other members' witnesses{}; {} after it\n",
            n.size,
            plural(n.cosigners.len(), "cosignature"),
            if n.cosigners.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    n.cosigners
                        .iter()
                        .map(|c| c.city.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            entries(r.entries.saturating_sub(n.size))
        ));
        }
        for f in &r.failures {
            out.push_str(&format!("FAILED {f}\n"));
        }
        if r.failure_count > r.failures.len() as u64 {
            out.push_str(&format!(
                "… and {} more failures\n",
                r.failure_count - r.failures.len() as u64
            ));
        }
        out
    }
}
