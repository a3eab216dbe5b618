//! The view's indexer: signatures behind the append (DESIGN.md "Receiver checks").
//!
//! The receive path ([`super::ingest`]) appends a peer's entries once a root their origin
//! signed covers them; the root authenticates the whole range, so nothing about a single entry
//! needs checking before it is durable. What is left for each entry — its own Ed25519
//! signature (`verify_strict`), that it claims this origin and seq, its record's validation,
//! the cross-version rules — decides only whether it reaches the *view*, and runs here, behind
//! the writer: the indexer reads each origin's entries past its indexed mark
//! ([`credex_store::StoreReader::indexed`]) in chunks, verifies a chunk on every core with no lock
//! held, and then writes the chunk's index entries, view changes, due dates and invalid marks
//! with the new mark in one atomic batch. A crash between two chunks redoes the second; the
//! view never holds an entry whose checks have not run, and never misses one.
//!
//! An entry that fails there was signed into a root by its origin: it stays in the log, is
//! listed invalid with its reason, kept out of the view, counted in `credex_invalid_entries`
//! and logged. The city's own entries are indexed by the publish batch that appends them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credex_core::entry::{self, EntryError, VerifiedEntry};
use credex_core::keys::PublicKey;
use credex_core::parallel;
use credex_core::pb;
use credex_core::validate::{Mode, Validated, Validator};
use credex_store::WriteBatch;
use tokio::sync::{oneshot, watch};
use tracing::{debug, warn};

use super::{Engine, EngineError};

/// Most entries the indexer verifies and writes in one batch.
pub const INDEX_CHUNK: usize = 4096;
/// How long the indexer waits before retrying after a failed batch (a full disk, say).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// An appended leaf after its own checks.
#[derive(Debug)]
pub(crate) enum CheckedLeaf {
    /// Signed by the origin's log key, for this origin and this seq.
    Authentic {
        verified: Box<VerifiedEntry>,
        validation: Result<Box<Validated>, String>,
    },
    /// Not an authentic entry of this origin at this seq.
    Rejected {
        reason: &'static str,
        detail: String,
    },
}

impl CheckedLeaf {
    /// An authentic entry whose record passed validation (the cross-version rules are left).
    fn is_valid(&self) -> bool {
        matches!(
            self,
            CheckedLeaf::Authentic {
                validation: Ok(_),
                ..
            }
        )
    }

    /// Fails a valid entry logged before `before`, the time an earlier entry of its origin in
    /// the view was logged: its record goes back to the entry, indexed as given like any
    /// invalid one. An origin stamps `logged_at` going forward whatever its clock does
    /// (`engine::publish`), so only a log its origin stamped otherwise has one.
    fn refuse_logged_before(&mut self, before: i64) {
        let CheckedLeaf::Authentic {
            verified,
            validation,
        } = self
        else {
            return;
        };
        let logged_at = verified.entry.logged_at;
        // An invalid one keeps its own reason.
        if logged_at >= before || validation.is_err() {
            return;
        }
        if let Ok(valid) = std::mem::replace(
            validation,
            Err(format!(
                "logged_at: {} is before {}, when an earlier entry of this origin in the view was \
                 logged; an origin's log goes forward in time",
                credex_core::date::format_millis(logged_at),
                credex_core::date::format_millis(before)
            )),
        ) {
            verified.entry.record = Some(valid.normalised);
        }
    }
}

/// One batch's worth of indexing, until it is durable and counted ([`Engine::note_indexed`]).
#[derive(Debug)]
pub(crate) struct Indexed {
    /// Entries that passed the indexed mark, and of those, entries listed invalid.
    pub indexed: u64,
    pub invalid: u64,
    /// When each authentic one was logged at its origin (for the propagation age).
    logged_at: Vec<i64>,
}

/// What one indexing batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexOutcome {
    /// Entries that passed the indexed mark (valid or not).
    pub indexed: u64,
    /// Of those, entries listed invalid and kept out of the view.
    pub invalid: u64,
}

impl Engine {
    /// Runs the indexer until `shutdown` turns true: whenever a log grows past its indexed
    /// mark, indexes it up to its size, except a log in a catch-up (`CatchUps`), which is
    /// left to the receive path until it ends or has been deferred for `DEFER_AT_MOST`. A
    /// failed batch is logged and retried.
    pub async fn run_indexer(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut advanced = self.subscribe();
        let mut catch_ups = CatchUps::default();
        loop {
            advanced.borrow_and_update();
            let now = Instant::now();
            let origins: Vec<String> = self.members().map(|m| m.city.clone()).collect();
            let ready: Vec<String> = origins
                .into_iter()
                .filter(|o| {
                    let size = self.store.origin_state(o).size;
                    !catch_ups.defer(o, size, self.best_seen(o), now)
                })
                .collect();
            let (wait, failed) = match self.index_origins(&ready).await {
                Ok(_) => (catch_ups.recheck_in(now), false),
                Err(e) => {
                    warn!(error = %e, "indexing failed; retrying");
                    (Some(RETRY_AFTER), true)
                }
            };
            tokio::select! {
                () = crate::sync::stopped(&mut shutdown) => return,
                _ = advanced.changed(), if !failed => {}
                () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            }
        }
    }

    /// Indexes every member origin up to its size. Returns what it did.
    pub async fn index_all(self: &Arc<Self>) -> Result<IndexOutcome, EngineError> {
        let origins: Vec<String> = self.members().map(|m| m.city.clone()).collect();
        self.index_origins(&origins).await
    }

    /// Indexes each of `origins` up to its size, again while any of them grows meanwhile.
    async fn index_origins(
        self: &Arc<Self>,
        origins: &[String],
    ) -> Result<IndexOutcome, EngineError> {
        let mut total = IndexOutcome::default();
        loop {
            let mut progressed = false;
            for origin in origins {
                let done = self.index_origin(origin).await?;
                progressed |= done.indexed > 0;
                total.indexed += done.indexed;
                total.invalid += done.invalid;
            }
            if !progressed {
                return Ok(total);
            }
        }
    }

    /// Indexes `origin` from its indexed mark up to its size, chunk by chunk, checking the
    /// next chunk on all cores while the one before is written.
    async fn index_origin(self: &Arc<Self>, origin: &str) -> Result<IndexOutcome, EngineError> {
        let mut total = IndexOutcome::default();
        let mut from = self.store.indexed(origin);
        let mut next = self.check_chunk(origin, from);
        while let Some(checking) = next.take() {
            let checked = checking
                .await
                .map_err(|_| EngineError::Internal("verification thread panicked".into()))??;
            if checked.is_empty() {
                break;
            }
            let upto = from + checked.len() as u64;
            if upto < self.store.origin_state(origin).size {
                next = self.check_chunk(origin, upto);
            }
            let Some(invalid) = self.write_index(origin, from, checked).await? else {
                // The mark moved under us (this city's own publish): start again from it.
                break;
            };
            total.indexed += upto - from;
            total.invalid += invalid;
            from = upto;
        }
        Ok(total)
    }

    /// Starts checking the chunk of `origin`'s log from `from` on a blocking thread, if the
    /// log holds anything there.
    fn check_chunk(self: &Arc<Self>, origin: &str, from: u64) -> Option<Checking> {
        if from >= self.store.origin_state(origin).size {
            return None;
        }
        let engine = self.clone();
        let origin = origin.to_owned();
        Some(spawn_low(move || {
            let leaves = engine.store.leaves(&origin, from, INDEX_CHUNK)?;
            let member = engine
                .member(&origin)
                .ok_or_else(|| EngineError::Internal(format!("{origin} is not a member")))?;
            let validator = engine.validator(Mode::Relay, &origin);
            Ok(check_parallel(
                &leaves,
                from,
                &origin,
                &member.log_key,
                &validator,
            ))
        }))
    }

    /// Writes the index entries of `checked` (`origin`'s entries from `from` on) with the
    /// mark past them, in one atomic, durable batch. Returns how many were listed invalid, or
    /// `None` if the mark is no longer at `from`.
    async fn write_index(
        self: &Arc<Self>,
        origin: &str,
        from: u64,
        checked: Vec<CheckedLeaf>,
    ) -> Result<Option<u64>, EngineError> {
        let writer = self.view_lock.lock().await;
        // The indexer is the only one to move a peer origin's mark; the publish batch moves
        // this city's own only when it is at the size.
        if self.store.indexed(origin) != from {
            return Ok(None);
        }
        let upto = from + checked.len() as u64;
        let engine = self.clone();
        let name = origin.to_owned();
        // Reading the records' histories and evaluating them is CPU work: off the runtime,
        // behind the log's appends like the verification. The store write is not: the store
        // has one apply at a time, and an apply at low priority would hold the log's up.
        let (batch, indexed) = spawn_low(move || -> Result<_, EngineError> {
            let mut batch = WriteBatch::new();
            // Freeing a chunk of decoded entries takes a while too: this consumes them here, not
            // on the runtime.
            let indexed = engine.index_checked(&mut batch, &name, from, checked)?;
            Ok((batch, indexed))
        })
        .await
        .map_err(|_| EngineError::Internal("indexer thread panicked".into()))??;
        self.apply(batch).await?;
        self.flush_durable().await?;
        drop(writer);
        let invalid = indexed.invalid;
        self.note_indexed(origin, indexed);
        debug!(origin, from, upto, "indexed");
        self.announce();
        Ok(Some(invalid))
    }

    /// Checks `leaves`, `origin`'s entries from `first` arriving from a peer, and adds what the
    /// indexer would write for them to `batch`, the batch that appends them: the receive path
    /// indexes a small run that brings a caught-up log to its origin's newest checkpoint on
    /// arrival (`ingest::INDEX_ON_ARRIVAL`), so a live record reaches the view with the one
    /// apply and flush that make it durable, not a second pass behind them.
    pub(crate) fn index_on_arrival(
        &self,
        batch: &mut WriteBatch,
        origin: &str,
        first: u64,
        leaves: &[Vec<u8>],
    ) -> Result<Indexed, EngineError> {
        let member = self
            .member(origin)
            .ok_or_else(|| EngineError::Internal(format!("{origin} is not a member")))?;
        let validator = self.validator(Mode::Relay, origin);
        let checked = check_parallel(leaves, first, origin, &member.log_key, &validator);
        self.index_checked(batch, origin, first, checked)
    }

    /// Adds to `batch` the index entries, view changes and invalid marks of `checked`
    /// (`origin`'s entries from `from` on) and the indexed mark past them.
    fn index_checked(
        &self,
        batch: &mut WriteBatch,
        origin: &str,
        from: u64,
        checked: Vec<CheckedLeaf>,
    ) -> Result<Indexed, EngineError> {
        let indexed = checked.len() as u64;
        let logged_at = checked
            .iter()
            .filter_map(|c| match c {
                CheckedLeaf::Authentic { verified, .. } => Some(verified.entry.logged_at),
                CheckedLeaf::Rejected { .. } => None,
            })
            .collect();
        let invalid = self.index_batch(batch, origin, from, checked)?;
        batch.set_indexed(origin, from + indexed);
        Ok(Indexed {
            indexed,
            invalid,
            logged_at,
        })
    }

    /// Counts what `indexed` did, once it is durable: its invalid entries, and the age at which
    /// the rest reached the view.
    pub(crate) fn note_indexed(&self, origin: &str, indexed: Indexed) {
        self.metrics.count_invalid(origin, indexed.invalid);
        let now = self.clock.now_millis();
        self.metrics
            .observe_propagation(origin, indexed.logged_at.into_iter().map(|t| now - t));
        if indexed.invalid > 0 {
            // The origin signed a root over entries that fail their own checks: its fault.
            warn!(
                origin,
                invalid = indexed.invalid,
                "entries under a signed root are invalid; kept out of the view"
            );
        }
    }

    /// Adds to `batch` the index entries, view changes and invalid marks of `checked`, the
    /// entries of `origin` from `first_seq` on. Returns how many were marked invalid.
    fn index_batch(
        &self,
        batch: &mut WriteBatch,
        origin: &str,
        first_seq: u64,
        checked: Vec<CheckedLeaf>,
    ) -> Result<u64, EngineError> {
        let mut changes = super::changes::ChangeTracker::new(self);
        let mut invalid = 0;
        // The entries the view takes go forward in time: "as known at" a time is then a prefix
        // of every log, and an origin cannot slip a version into a past it has logged beyond.
        let mut logged_through = match checked.iter().any(CheckedLeaf::is_valid) {
            true => {
                let member = self
                    .member(origin)
                    .ok_or_else(|| EngineError::Internal(format!("{origin} is not a member")))?;
                self.logged_through(member, first_seq)?
            }
            false => None,
        };
        for (i, mut item) in checked.into_iter().enumerate() {
            let seq = first_seq + i as u64;
            if let Some(before) = logged_through {
                item.refuse_logged_before(before);
            }
            let reason = match item {
                CheckedLeaf::Authentic {
                    validation: Ok(valid),
                    verified,
                } => {
                    let Validated {
                        normalised,
                        subject_keys,
                        ..
                    } = *valid;
                    let record = Arc::new(normalised);
                    // A version that may not follow its record (moved subject or list, after a
                    // revocation) is listed invalid, out of the indexes and the view.
                    let refused = changes.observe(
                        batch,
                        origin,
                        seq,
                        verified.entry.logged_at,
                        &record,
                        subject_keys.first(),
                    )?;
                    if refused.is_none() {
                        logged_through = Some(verified.entry.logged_at);
                        let keys: Vec<&str> = subject_keys.iter().map(|k| k.as_str()).collect();
                        batch.index_record(
                            origin,
                            &record.record_id,
                            u64::from(record.version),
                            seq,
                            &keys,
                        );
                    }
                    refused
                }
                CheckedLeaf::Authentic {
                    verified,
                    validation: Err(reason),
                } => {
                    // Indexed under its identifiers as given, so a lookup still finds it and
                    // reports it invalid, at the version it claims.
                    let logged_at = verified.entry.logged_at;
                    if let Some(record) = verified
                        .entry
                        .record
                        .filter(|r| !r.record_id.is_empty())
                        .map(Arc::new)
                    {
                        changes.observe_invalid(origin, seq, logged_at, &record, &reason)?;
                        batch.index_record(
                            origin,
                            &record.record_id,
                            u64::from(record.version),
                            seq,
                            &raw_subject_keys(&record),
                        );
                    }
                    Some(reason)
                }
                CheckedLeaf::Rejected { reason, detail } => Some(format!("{reason}: {detail}")),
            };
            if let Some(reason) = reason {
                batch.mark_invalid(origin, seq, &reason);
                invalid += 1;
            }
        }
        changes.finish(batch);
        Ok(invalid)
    }

    /// Checks one leaf claimed to be `origin`'s entry at `seq`: its signature under the
    /// origin's log key, and that it is signed for this origin and seq. The receive path asks
    /// this only of leaves it will not append (a conflict at a held seq, entries no signed
    /// root covers), to tell equivocation from garbage and to quarantine with the right reason.
    pub(crate) fn authenticate(
        &self,
        origin: &str,
        seq: u64,
        leaf: &[u8],
    ) -> Result<VerifiedEntry, (&'static str, String)> {
        let Some(member) = self.member(origin) else {
            return Err((
                "unknown_origin",
                format!("origin {origin:?} is not a member of the consortium"),
            ));
        };
        let result = entry::verify_entries(&[leaf], &member.log_key)
            .pop()
            .expect("one result per leaf");
        authentic(result, origin, seq)
    }
}

/// A chunk being checked on its own thread.
type Checking = oneshot::Receiver<Result<Vec<CheckedLeaf>, EngineError>>;

/// Runs `f` on a thread of its own at a lower CPU priority (nice +10; the threads it starts
/// inherit it) and hands back its result; dropped unsent if `f` panics. The indexer's work is
/// behind the log by design: when the cores are busy — a catch-up appending, queries — it
/// yields to them, and when they are idle it has them all. (Linux keeps the nice value per
/// thread; elsewhere, or if the kernel refuses, the thread runs at normal priority.)
pub(crate) fn spawn_low<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("credex-indexer".to_owned())
        .spawn(move || {
            let _ = rustix::process::nice(INDEXER_NICE);
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start an indexer thread");
    }
    rx
}

/// How much lower than the node's other threads the indexer runs (a nice increment).
const INDEXER_NICE: i32 = 10;

/// A log at least this far behind its origin's newest checkpoint, and growing, is catching up.
const CATCH_UP_BEHIND: u64 = 4 * INDEX_CHUNK as u64;
/// A log that has not grown for this long is no longer catching up (the peer stalled or left).
const CATCH_UP_IDLE: Duration = Duration::from_secs(1);
/// The longest the indexer leaves a catching-up log alone before indexing what it holds.
const DEFER_AT_MOST: Duration = Duration::from_secs(10);

/// Which logs the indexer leaves to the receive path for now.
///
/// On two cores the indexer's verification and index writes cost the receive path two thirds
/// of its speed while both run. During a catch-up the view cannot be current anyway, and the
/// sooner the log is here, the sooner its entries are durable and provable at this node (the
/// origin's loss no longer loses them): so while a log is more than [`CATCH_UP_BEHIND`]
/// entries behind a checkpoint its origin signed and still grew within [`CATCH_UP_IDLE`], the
/// indexer waits; when the catch-up ends — or stalls, or has been deferred for
/// [`DEFER_AT_MOST`], so a slow-drip peer cannot hold a view still — it indexes what is there.
#[derive(Debug, Default)]
struct CatchUps {
    logs: BTreeMap<String, LogPace>,
}

#[derive(Debug, Clone, Copy)]
struct LogPace {
    size: u64,
    grew_at: Instant,
    deferred_since: Option<Instant>,
}

impl CatchUps {
    /// Whether to leave `origin`'s log (now `size` entries, its origin's newest checkpoint
    /// `best_seen`) unindexed for now.
    fn defer(&mut self, origin: &str, size: u64, best_seen: u64, now: Instant) -> bool {
        let pace = self.logs.entry(origin.to_owned()).or_insert(LogPace {
            size,
            grew_at: now,
            deferred_since: None,
        });
        if size != pace.size {
            pace.size = size;
            pace.grew_at = now;
        }
        let catching_up = best_seen.saturating_sub(size) >= CATCH_UP_BEHIND
            && now.duration_since(pace.grew_at) < CATCH_UP_IDLE;
        let since = match (catching_up, pace.deferred_since) {
            (false, _) => {
                pace.deferred_since = None;
                return false;
            }
            (true, None) => *pace.deferred_since.insert(now),
            (true, Some(since)) => since,
        };
        if now.duration_since(since) >= DEFER_AT_MOST {
            // Index what is held now; the next round may defer again.
            pace.deferred_since = None;
            return false;
        }
        true
    }

    /// When to look again at a deferred log even if nothing else wakes the indexer (a
    /// catch-up that stalls appends nothing more).
    fn recheck_in(&self, now: Instant) -> Option<Duration> {
        self.logs
            .values()
            .filter_map(|p| {
                let since = p.deferred_since?;
                let idle = (p.grew_at + CATCH_UP_IDLE).saturating_duration_since(now);
                let limit = (since + DEFER_AT_MOST).saturating_duration_since(now);
                Some(idle.min(limit))
            })
            .min()
            .map(|d| d.max(Duration::from_millis(10)))
    }
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

/// Checks every leaf (strictly; see `credex_core::entry::verify_entries` for why not
/// `verify_batch`) on all cores: its signature, that it claims this origin and seq, and its
/// record's validation.
fn check_parallel(
    leaves: &[Vec<u8>],
    first_seq: u64,
    origin: &str,
    key: &PublicKey,
    validator: &Validator<'_>,
) -> Vec<CheckedLeaf> {
    let check = |offset: usize, chunk: &[Vec<u8>]| -> Vec<CheckedLeaf> {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        entry::verify_entries(&refs, key)
            .into_iter()
            .enumerate()
            .map(|(i, result)| {
                let seq = first_seq + (offset + i) as u64;
                check_one(result, seq, origin, validator)
            })
            .collect()
    };
    parallel::map_chunks(leaves, parallel::PARALLEL_MIN, check)
}

/// A verified entry that claims `origin` and `seq`, or the reason it is not one.
fn authentic(
    result: Result<VerifiedEntry, EntryError>,
    origin: &str,
    seq: u64,
) -> Result<VerifiedEntry, (&'static str, String)> {
    let verified = result.map_err(|e| (e.reason_code(), e.to_string()))?;
    if verified.entry.origin != origin {
        let detail = format!(
            "entry is signed for origin {:?} but was sent as {origin:?}",
            verified.entry.origin
        );
        return Err(("wrong_origin", detail));
    }
    if verified.entry.seq != seq {
        let detail = format!(
            "entry is signed for seq {} but was sent at seq {seq}",
            verified.entry.seq
        );
        return Err(("wrong_seq", detail));
    }
    Ok(verified)
}

fn check_one(
    result: Result<VerifiedEntry, EntryError>,
    seq: u64,
    origin: &str,
    validator: &Validator<'_>,
) -> CheckedLeaf {
    let mut verified = match authentic(result, origin, seq) {
        Ok(v) => v,
        Err((reason, detail)) => return CheckedLeaf::Rejected { reason, detail },
    };
    // A valid record moves into its normalised form (the entry keeps it only when invalid,
    // to be indexed as given).
    let validation = match verified.entry.record.take() {
        // Judged on the day its origin logged it, never this node's today (validate.rs).
        Some(record) => validator
            .on(credex_core::date::date_of_millis(verified.entry.logged_at))
            .validate_owned(record)
            .map(Box::new)
            .map_err(|(e, record)| {
                verified.entry.record = Some(*record);
                e.to_string()
            }),
        None => Err("entry has no record".to_owned()),
    };
    CheckedLeaf::Authentic {
        verified: Box::new(verified),
        validation,
    }
}

#[cfg(test)]
mod catch_up_tests {
    use super::*;

    const O: &str = "credex/mid-yangtze/wuhan";

    #[test]
    fn a_growing_log_far_behind_its_checkpoint_is_deferred_until_it_catches_up() {
        let mut c = CatchUps::default();
        let t0 = Instant::now();
        let far = 10 * CATCH_UP_BEHIND;
        assert!(c.defer(O, 0, far, t0), "far behind: deferred");
        let t1 = t0 + Duration::from_millis(200);
        assert!(
            c.defer(O, 5_000, far, t1),
            "still growing, still far behind"
        );
        assert!(c.recheck_in(t1).is_some_and(|d| d <= CATCH_UP_IDLE));
        let t2 = t1 + Duration::from_millis(200);
        assert!(
            !c.defer(O, far - 1, far, t2),
            "within CATCH_UP_BEHIND of the checkpoint: indexed"
        );
        assert_eq!(c.recheck_in(t2), None);
    }

    #[test]
    fn a_stalled_catch_up_is_indexed_after_catch_up_idle() {
        let mut c = CatchUps::default();
        let t0 = Instant::now();
        let far = 10 * CATCH_UP_BEHIND;
        assert!(c.defer(O, 100, far, t0));
        assert!(c.defer(O, 100, far, t0 + CATCH_UP_IDLE / 2));
        assert!(
            !c.defer(O, 100, far, t0 + CATCH_UP_IDLE),
            "no growth for CATCH_UP_IDLE"
        );
    }

    #[test]
    fn a_slow_drip_is_deferred_at_most_defer_at_most_at_a_time() {
        let mut c = CatchUps::default();
        let t0 = Instant::now();
        let far = 1_000 * CATCH_UP_BEHIND;
        let step = CATCH_UP_IDLE / 2;
        let mut now = t0;
        let mut size = 0;
        while now.duration_since(t0) < DEFER_AT_MOST {
            assert!(c.defer(O, size, far, now), "deferred at {:?}", now - t0);
            size += 1;
            now += step;
        }
        assert!(
            !c.defer(O, size, far, now),
            "indexed once DEFER_AT_MOST passed"
        );
        assert!(
            c.defer(O, size + 1, far, now + step),
            "and may be deferred again"
        );
    }

    #[test]
    fn a_log_near_its_checkpoint_is_never_deferred() {
        let mut c = CatchUps::default();
        let t0 = Instant::now();
        assert!(!c.defer(O, 0, CATCH_UP_BEHIND - 1, t0));
        assert!(!c.defer(O, 10, CATCH_UP_BEHIND + 9, t0));
        assert_eq!(c.recheck_in(t0), None);
    }
}
