//! [`WriteBatch`]: everything one applied batch changes, built up by the node and committed by
//! [`crate::Store::apply`] in one atomic write.

use std::sync::Arc;

use credex_core::merkle::Hash;

use crate::Standing;
use crate::leaves::PackedBlock;

/// A rejected entry kept with the reason it was rejected (DESIGN.md principle 6: never
/// silently dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    /// The origin the entry claims; not necessarily a member, so not interned.
    pub origin: String,
    /// The seq the entry claims.
    pub seq: u64,
    /// Machine-readable reason code (`bad_signature`, `unknown_key`, …); counts are kept per code.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// The leaf bytes exactly as received.
    pub leaf: Vec<u8>,
    /// Peer city the entry came from.
    pub received_from: String,
    /// Arrival time, Unix milliseconds.
    pub received_at_ms: u64,
}

/// One access to full identities (查询留痕): who saw what, when and why. Kept append-only,
/// numbered in the order written ([`crate::StoreReader::accesses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// When the access was answered, Unix milliseconds.
    pub at_ms: i64,
    /// The caller's identity (a SPIFFE ID).
    pub who: String,
    /// The RPC, as in `View.Lookup`.
    pub rpc: String,
    /// What was asked: the full subject id of a lookup, the filter of a list or watch.
    pub subject: String,
    /// The purpose the caller stated (查询事由).
    pub purpose: String,
}

/// The two lists of dated entries: due dates ahead of the view, and those it has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateList {
    Due,
    Passed,
}

/// One change in a batch, applied in the order it was added.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Append {
        origin: String,
        seq: u64,
        leaf: Vec<u8>,
    },
    /// The leaves appended from `first` on, as one packed block to store as it is.
    Packed {
        origin: String,
        first: u64,
        block: Arc<PackedBlock>,
    },
    SetCheckpoint {
        origin: String,
        size: u64,
        note: Vec<u8>,
    },
    SetWitness {
        origin: String,
        size: u64,
        note: Vec<u8>,
    },
    AddEvidence {
        origin: String,
        evidence: Vec<u8>,
    },
    MarkForked {
        origin: String,
    },
    IndexRecord {
        origin: String,
        record_id: String,
        version: u64,
        seq: u64,
        subjects: Vec<String>,
    },
    MarkInvalid {
        origin: String,
        seq: u64,
        reason: String,
    },
    Quarantine(QuarantineRecord),
    PutPeer {
        peer: String,
        state: Vec<u8>,
    },
    PushChange(Vec<u8>),
    LogAccess(AccessRecord),
    /// Adds (`on`) or removes a `DUE` or `PASSED` entry.
    Dated {
        list: DateList,
        on: bool,
        origin: String,
        record_id: String,
        day: u32,
    },
    SetViewDay(u32),
    RequireRoot {
        origin: String,
        size: u64,
        root: Hash,
    },
    SetIndexed {
        origin: String,
        upto: u64,
    },
    SetStanding {
        origin: String,
        record_id: String,
        standing: Standing,
    },
    SetCountBasis(Option<Vec<u8>>),
}

/// Everything one applied batch changes. Operations take effect in the order they were added;
/// [`crate::Store::apply`] commits all of them or none.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Number of operations added.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Copies of the leaves the batch appends, in order: what a caller keeps to quarantine
    /// them if the batch is refused (say, with [`crate::StoreError::RootMismatch`]).
    pub fn appended_leaves(&self) -> Vec<Vec<u8>> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Append { leaf, .. } => Some(leaf.clone()),
                _ => None,
            })
            .collect()
    }

    /// Appends `leaf` (the SignedEntry bytes as its origin encoded them) at `seq`. `seq` must be
    /// exactly the origin's size at that point of the batch, counting earlier appends in it; the
    /// origin must not be forked.
    pub fn append(&mut self, origin: &str, seq: u64, leaf: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Append {
            origin: origin.to_owned(),
            seq,
            leaf: leaf.into(),
        });
        self
    }

    /// Appends the leaves of `block` from `seq` on, as [`WriteBatch::append`] does each, and
    /// stores them in the block as it came: nothing is compressed for them. This is how a
    /// node stores the blocks a peer served (`PackedEntries`).
    pub fn append_packed(&mut self, origin: &str, seq: u64, block: PackedBlock) -> &mut Self {
        for (i, leaf) in block.leaves().enumerate() {
            self.append(origin, seq + i as u64, leaf);
        }
        self.ops.push(Op::Packed {
            origin: origin.to_owned(),
            first: seq,
            block: Arc::new(block),
        });
        self
    }

    /// Stores a checkpoint note of `origin` at tree size `size` in the history; it also becomes
    /// the latest unless the latest is larger. A note at a size already held replaces it (a
    /// checkpoint gathers cosignatures).
    pub fn set_checkpoint(
        &mut self,
        origin: &str,
        size: u64,
        note: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(Op::SetCheckpoint {
            origin: origin.to_owned(),
            size,
            note: note.into(),
        });
        self
    }

    /// Records the checkpoint of `origin` this node just cosigned as a witness. Refused if it is
    /// smaller than the one recorded before.
    pub fn set_witness(&mut self, origin: &str, size: u64, note: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::SetWitness {
            origin: origin.to_owned(),
            size,
            note: note.into(),
        });
        self
    }

    /// Adds one piece of equivocation evidence for `origin`, kept verbatim.
    pub fn add_evidence(&mut self, origin: &str, evidence: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::AddEvidence {
            origin: origin.to_owned(),
            evidence: evidence.into(),
        });
        self
    }

    /// Marks `origin` forked: later appends to it are refused, in this batch and after.
    pub fn mark_forked(&mut self, origin: &str) -> &mut Self {
        self.ops.push(Op::MarkForked {
            origin: origin.to_owned(),
        });
        self
    }

    /// Records that version `version` of `record_id` is the entry at `seq` and is found under
    /// `subject_keys`. Every version is kept in the record's history ([`crate::StoreReader::versions`]);
    /// the latest-version index keeps the highest version: an equal or lower one is ignored.
    /// The subject index follows the latest version, so subject keys only an older version had
    /// are dropped. `seq` must be in the log by the end of the batch.
    pub fn index_record<S: AsRef<str>>(
        &mut self,
        origin: &str,
        record_id: &str,
        version: u64,
        seq: u64,
        subject_keys: &[S],
    ) -> &mut Self {
        self.ops.push(Op::IndexRecord {
            origin: origin.to_owned(),
            record_id: record_id.to_owned(),
            version,
            seq,
            subjects: subject_keys.iter().map(|s| s.as_ref().to_owned()).collect(),
        });
        self
    }

    /// Lists the entry at `seq` as invalid (authentic but failing this node's validation).
    /// `seq` must be in the log by the end of the batch.
    pub fn mark_invalid(&mut self, origin: &str, seq: u64, reason: &str) -> &mut Self {
        self.ops.push(Op::MarkInvalid {
            origin: origin.to_owned(),
            seq,
            reason: reason.to_owned(),
        });
        self
    }

    /// Quarantines a rejected entry; the store numbers arrivals and counts reasons.
    pub fn quarantine(&mut self, record: QuarantineRecord) -> &mut Self {
        self.ops.push(Op::Quarantine(record));
        self
    }

    /// Replaces the opaque state kept for peer city `peer`.
    pub fn put_peer(&mut self, peer: &str, state: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::PutPeer {
            peer: peer.to_owned(),
            state: state.into(),
        });
        self
    }

    /// Makes the whole batch conditional: it commits only if `origin`'s log, at the point where
    /// the batch's appends make it `size` entries long (or now, if it already is), has the RFC
    /// 6962 root `root`, and the appends do reach `size` ([`crate::StoreError::RootMismatch`]
    /// otherwise, and nothing is written). Add it before the appends that reach `size`. The receive path
    /// appends a peer's entries only under a root their origin signed (DESIGN.md "Receiver
    /// checks"); the store computes that root anyway, so the check costs nothing extra.
    pub fn require_root(&mut self, origin: &str, size: u64, root: Hash) -> &mut Self {
        self.ops.push(Op::RequireRoot {
            origin: origin.to_owned(),
            size,
            root,
        });
        self
    }

    /// Notes that `record_id`'s standing in the view may change on `day` (an opaque, ordered
    /// day number, e.g. `20270601`), for [`crate::StoreReader::due`].
    pub fn schedule(&mut self, origin: &str, record_id: &str, day: u32) -> &mut Self {
        self.dated(DateList::Due, true, origin, record_id, day)
    }

    /// Removes a due-date entry written by [`WriteBatch::schedule`] (once it is handled).
    pub fn unschedule(&mut self, origin: &str, record_id: &str, day: u32) -> &mut Self {
        self.dated(DateList::Due, false, origin, record_id, day)
    }

    /// Notes a due date the view has passed, for [`crate::StoreReader::passed_after`] and
    /// [`crate::StoreReader::passed_until`].
    pub fn mark_passed(&mut self, origin: &str, record_id: &str, day: u32) -> &mut Self {
        self.dated(DateList::Passed, true, origin, record_id, day)
    }

    /// Removes an entry written by [`WriteBatch::mark_passed`].
    pub fn unmark_passed(&mut self, origin: &str, record_id: &str, day: u32) -> &mut Self {
        self.dated(DateList::Passed, false, origin, record_id, day)
    }

    fn dated(
        &mut self,
        list: DateList,
        on: bool,
        origin: &str,
        record_id: &str,
        day: u32,
    ) -> &mut Self {
        self.ops.push(Op::Dated {
            list,
            on,
            origin: origin.to_owned(),
            record_id: record_id.to_owned(),
            day,
        });
        self
    }

    /// Records the day the view was evaluated on ([`crate::StoreReader::view_day`]).
    pub fn set_view_day(&mut self, day: u32) -> &mut Self {
        self.ops.push(Op::SetViewDay(day));
        self
    }

    /// Appends an opaque view change to the change feed; it gets the next change seq.
    pub fn push_change(&mut self, change: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::PushChange(change.into()));
        self
    }

    /// Records that entries `0..upto` of `origin`'s log are in the view's indexes (the index
    /// writes for them are in this batch or earlier ones), so they commit together and a
    /// crash never leaves the mark ahead of the indexes or behind them. The mark never goes
    /// back ([`crate::StoreError::IndexRollback`]) and `upto` must be within the log by the
    /// end of the batch. Read with [`crate::StoreReader::indexed`].
    pub fn set_indexed(&mut self, origin: &str, upto: u64) -> &mut Self {
        self.ops.push(Op::SetIndexed {
            origin: origin.to_owned(),
            upto,
        });
        self
    }

    /// Sets the standing in the view of a record indexed by this batch or an earlier one, and
    /// moves the view's counts ([`crate::StoreReader::view_counts`]) by the difference from the
    /// standing it held (see [`crate::Standing`]). A record not indexed is refused
    /// ([`crate::StoreError::UnknownRecord`]).
    pub fn set_standing(&mut self, origin: &str, record_id: &str, standing: Standing) -> &mut Self {
        self.ops.push(Op::SetStanding {
            origin: origin.to_owned(),
            record_id: record_id.to_owned(),
            standing,
        });
        self
    }

    /// Says what every record's standing was evaluated under (`Some`), or that some may not
    /// have been (`None`), as [`crate::ViewCounts::basis`].
    pub fn set_count_basis(&mut self, basis: Option<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::SetCountBasis(basis));
        self
    }

    /// Appends `access` to the access log; it gets the next access number.
    pub fn log_access(&mut self, access: AccessRecord) -> &mut Self {
        self.ops.push(Op::LogAccess(access));
        self
    }
}
