//! The receive path (DESIGN.md "Receiver checks"): entries from peers are verified against
//! their origin's key, appended when authentic and next in line, validated against this
//! node's schema and catalogue, and quarantined with their reason when not authentic.
//!
//! Split in two so catch-up can pipeline: [`Engine::prepare`] does the CPU work (signature
//! verification on all cores, record validation) without any lock, and [`Engine::commit`]
//! re-checks the log position under the write lock and commits one atomic batch.

use credex_core::entry::{self, VerifiedEntry};
use credex_core::keys::PublicKey;
use credex_core::pb;
use credex_core::validate::{Mode, Validated, Validator};
use credex_store::{QuarantineRecord, WriteBatch};
use tracing::{debug, warn};

use super::{Engine, EngineError};

/// A batch of leaves of one origin, verified and validated, not yet committed.
#[derive(Debug)]
pub struct Prepared {
    pub origin: String,
    pub first_seq: u64,
    pub items: Vec<PreparedLeaf>,
}

#[derive(Debug)]
pub enum PreparedLeaf {
    /// Signed by the origin's log key, for this origin and this seq.
    Authentic {
        verified: Box<VerifiedEntry>,
        validation: Result<Box<Validated>, String>,
    },
    /// Not an authentic entry of this origin at this seq; quarantined if it reaches commit.
    Rejected {
        leaf: Vec<u8>,
        reason: &'static str,
        detail: String,
    },
}

/// What one commit did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub appended: u64,
    /// Leaves this node already held, byte for byte.
    pub duplicates: u64,
    pub quarantined: u64,
    /// Appended, but failing this node's validation (kept out of the view).
    pub invalid: u64,
    /// The batch started beyond the local log: nothing after the gap was taken.
    pub gap: bool,
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
        let validator = Validator {
            catalogue: self.catalogue,
            allow_list: &self.allow_list,
            mode: Mode::Relay,
        };
        let items = verify_parallel(&leaves, first_seq, origin, &member.log_key, &validator);
        Prepared {
            origin: origin.to_owned(),
            first_seq,
            items,
        }
    }

    /// Commits a prepared batch: appends what is authentic and next in line, in one atomic,
    /// durable write; quarantines what is not authentic; detects two different authentic
    /// entries at one seq (equivocation).
    pub async fn commit(
        &self,
        prepared: Prepared,
        from: &str,
    ) -> Result<IngestOutcome, EngineError> {
        let _writer = self.write_lock.lock().await;
        let origin = prepared.origin.as_str();
        let state = self.store.origin_state(origin);
        let mut outcome = IngestOutcome::default();
        if state.forked {
            outcome.forked = true;
            return Ok(outcome);
        }
        let now = self.clock.now_millis();
        let mut batch = WriteBatch::new();
        let mut next = state.size;
        let mut changes = super::changes::ChangeTracker::new(self);
        for (i, item) in prepared.items.into_iter().enumerate() {
            let seq = prepared.first_seq + i as u64;
            if seq > next {
                outcome.gap = true;
                break;
            }
            if seq < next {
                // Already held: the same bytes are a duplicate; different authentic bytes are
                // equivocation; different unauthentic bytes are quarantined.
                let held = self.store.leaf(origin, seq)?.unwrap_or_default();
                match item {
                    PreparedLeaf::Authentic { verified, .. } if verified.leaf != held => {
                        warn!(origin, seq, from, "two different signed entries at one seq");
                        let evidence = pb::Evidence {
                            origin: origin.to_owned(),
                            kind: pb::evidence::Kind::ConflictingEntries as i32,
                            signed_entries: vec![held, verified.leaf],
                            detected_at: now,
                            detected_via: format!("sync:{from}"),
                            ..Default::default()
                        };
                        batch
                            .add_evidence(origin, prost::Message::encode_to_vec(&evidence))
                            .mark_forked(origin);
                        outcome.forked = true;
                        break;
                    }
                    PreparedLeaf::Authentic { .. } => outcome.duplicates += 1,
                    PreparedLeaf::Rejected { leaf, .. } if leaf == held => outcome.duplicates += 1,
                    PreparedLeaf::Rejected {
                        leaf,
                        reason,
                        detail,
                    } => {
                        quarantine(&mut batch, origin, seq, reason, detail, leaf, from, now);
                        outcome.quarantined += 1;
                    }
                }
                continue;
            }
            match item {
                PreparedLeaf::Authentic {
                    verified,
                    validation,
                } => {
                    batch.append(origin, seq, verified.leaf);
                    // Index the record (an invalid one under its identifiers as given, so a
                    // lookup still finds it and reports it invalid) at the version it claims.
                    let indexed = match &validation {
                        Ok(valid) => {
                            changes.observe(
                                &mut batch,
                                origin,
                                seq,
                                &valid.normalised,
                                valid.subject_keys.first(),
                            )?;
                            let keys = valid
                                .subject_keys
                                .iter()
                                .map(|k| k.as_str().to_owned())
                                .collect();
                            Some((&valid.normalised, keys))
                        }
                        Err(_) => verified
                            .entry
                            .record
                            .as_ref()
                            .filter(|r| !r.record_id.is_empty())
                            .map(|r| (r, raw_subject_keys(r))),
                    };
                    if let Some((record, keys)) = indexed {
                        batch.index_record(
                            origin,
                            &record.record_id,
                            u64::from(record.version),
                            seq,
                            &keys,
                        );
                    }
                    if let Err(reason) = &validation {
                        batch.mark_invalid(origin, seq, reason);
                        outcome.invalid += 1;
                    }
                    outcome.appended += 1;
                    next += 1;
                }
                PreparedLeaf::Rejected {
                    leaf,
                    reason,
                    detail,
                } => {
                    // The log must stay gapless: nothing after a rejected entry can be taken
                    // from this batch. The rest is fetched again (from this or another peer).
                    quarantine(&mut batch, origin, seq, reason, detail, leaf, from, now);
                    outcome.quarantined += 1;
                    break;
                }
            }
        }
        if batch.is_empty() {
            return Ok(outcome);
        }
        self.store.apply(batch)?;
        self.store.flush_async().await?;
        self.metrics.count_ingest(origin, &outcome);
        if outcome.quarantined > 0 || outcome.forked {
            warn!(
                origin,
                from,
                quarantined = outcome.quarantined,
                forked = outcome.forked,
                "rejected entries from peer"
            );
        }
        debug!(
            origin,
            from,
            appended = outcome.appended,
            size = next,
            "ingested"
        );
        drop(_writer);
        self.announce();
        if outcome.appended > 0 {
            self.settle_checkpoints(origin).await?;
        }
        Ok(outcome)
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
        Some(record) => validator
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
