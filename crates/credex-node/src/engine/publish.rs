//! Publishing the city's own records: validate, assign seq, sign, append, then sign a
//! checkpoint — with adaptive group commit. A request that finds the origin idle is committed
//! and checkpointed at once; requests that arrive while a batch is staged queue up and are
//! committed together as the next batch (up to `batch_max_entries` records), so a bulk load
//! pays one durable write per batch, not one per record, and a lone record waits for nothing.
//! There is no time window: the work in flight is the window. Under load three batches overlap:
//! one is flushed, checkpointed and answered while the next is applied to the store and the
//! one after it is validated and signed on every core (see `run`).
//!
//! **Publishing is idempotent per (record id, version).** A record whose version is already in
//! the log with exactly the same content (the normalised record, so `x` and `X` in an ID number
//! are the same) is acknowledged with the existing entry's seq and `already_present`, and nothing
//! is appended; the same version with other content is refused. So rerunning a file after a
//! partial failure publishes exactly what is missing. A next version whose content equals its
//! predecessor's is a new version like any other (a publisher may re-confirm a record): only
//! the version number says whether it is a rerun.
//!
//! **Or the node numbers the versions** ([`Versions::Assign`], `PublishRequest.assign_versions`):
//! a record comes with version 0 and gets 1 if its id is new, else the next one — unless the
//! latest version already holds exactly its content, which is answered as `already_present`.
//! An importer that derives record ids from its source rows (`credexctl import`) so reruns a
//! file without knowing what the log holds: unchanged rows publish nothing, a changed row a new
//! version.
//!
//! A request is accepted or refused whole. It is acknowledged only once its entries are
//! durable; the checkpoint over them is signed only after that (DESIGN.md: a node signs no
//! checkpoint before the entries it covers are durable, so a crash never looks like
//! equivocation). Every batch gets its own checkpoint: a receiver appends an origin's entries
//! only up to sizes the origin signed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use credex_core::entry;
use credex_core::merkle;
use credex_core::note::{self, Checkpoint};
use credex_core::parallel;
use credex_core::pb;
use credex_core::validate::{Mode, Validator};
use credex_store::WriteBatch;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{Engine, EngineError};

/// Most records one Publish request may carry.
pub const MAX_RECORDS_PER_REQUEST: usize = 10_000;
/// How far ahead of every witness's clock this node's may read and still publish. Each
/// witness's cosignature of the city's checkpoint says what its clock read; a clock further
/// ahead of all of them has jumped (a time-source fault, a mistyped date), and what it stamped
/// would hold the log that far ahead (it goes forward in time). Cities' clocks differ by
/// seconds; an hour leaves room for a witness that is itself off.
pub const CLOCK_AHEAD_MAX: Duration = Duration::from_secs(3600);
/// A witness's clock learnt longer ago than this is not judged by.
const WITNESS_CLOCK_KEPT: Duration = Duration::from_secs(24 * 3600);
/// How long publishing waits at start to hear the witnesses' clocks
/// ([`Engine::hear_witnesses_first`]) before it stamps a batch without them.
pub const WITNESS_WAIT_AT_START: Duration = Duration::from_secs(5);

/// This node's clock and its witnesses' now ([`Engine::witness_clocks`]): the earliest and
/// the latest of theirs (Unix ms), each with the witness's name, and whether every other
/// member's witness is among them.
#[derive(Debug)]
pub(super) struct WitnessClocks {
    pub clock: i64,
    pub earliest: (i64, String),
    pub latest: (i64, String),
    pub every_witness: bool,
}

impl WitnessClocks {
    /// This clock reads more than [`CLOCK_AHEAD_MAX`] ahead of every witness's.
    pub fn ahead(&self) -> bool {
        self.clock.saturating_sub(self.latest.0) > max_ms()
    }

    /// This clock reads more than [`CLOCK_AHEAD_MAX`] behind every witness's, every other
    /// member's witness answering. Judged behind, the node stamps and takes its day by a
    /// witness's time, and the log keeps what it stamps for good: a majority of witnesses
    /// reading ahead together while the one honest witness is silent (at a restart, say) must
    /// not move it. Ahead only refuses to publish until the clock is right, so two suffice.
    pub fn behind(&self) -> bool {
        self.every_witness && self.earliest.0.saturating_sub(self.clock) > max_ms()
    }

    /// The time the node goes by (Unix ms): its clock, or the nearest witness's while it reads
    /// more than [`CLOCK_AHEAD_MAX`] ahead of (the latest's) or behind (the earliest's) them
    /// all. The view's day ([`Engine::view_today`]) and a batch's stamp (where it is not
    /// refused for being ahead) take it.
    pub fn time(&self) -> i64 {
        if self.ahead() {
            self.latest.0
        } else if self.behind() {
            self.earliest.0
        } else {
            self.clock
        }
    }
}

/// Why this city may not publish now, its clock against its witnesses' as `judged`: it reads
/// more than [`CLOCK_AHEAD_MAX`] ahead of every witness's. Its log goes forward in time, so an
/// entry stamped by a clock that jumped ahead would hold every later one that far ahead too.
fn clock_refusal(judged: &WitnessClocks) -> Option<EngineError> {
    judged.ahead().then(|| {
        let (witness_now, witness) = &judged.latest;
        EngineError::Unavailable(format!(
            "this node's clock reads {}, {} s ahead of every witness's (the latest, {witness}, \
             reads {}): what it published would be logged in the future; set the clock right \
             and publish again",
            credex_core::date::format_millis(judged.clock),
            (judged.clock - witness_now) / 1000,
            credex_core::date::format_millis(*witness_now)
        ))
    })
}

/// [`CLOCK_AHEAD_MAX`] in milliseconds, as the clocks are compared.
fn max_ms() -> i64 {
    i64::try_from(CLOCK_AHEAD_MAX.as_millis()).unwrap_or(i64::MAX)
}

/// Where one published record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub record_id: String,
    pub version: u32,
    pub seq: u64,
    /// The version was already in the log with this content: nothing was appended.
    pub already_present: bool,
}

/// What publishing one valid record of a request comes to.
enum Checked {
    /// A new version, to append.
    New(Box<credex_core::validate::Validated>),
    /// This version is already in the log with the same content, at `seq`.
    Present {
        record_id: String,
        version: u32,
        seq: u64,
    },
}

/// A publish request's result: its records' positions and the log size after its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    pub published: Vec<Published>,
    pub tree_size: u64,
}

/// Who numbers the versions of a request's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// Each record carries its version, which must be the next one (or already present).
    Given,
    /// Each record carries version 0; the node assigns the next one, or answers the latest as
    /// already present when it holds the same content.
    Assign,
}

struct Job {
    records: Vec<pb::CreditRecord>,
    versions: Versions,
    reply: oneshot::Sender<Result<PublishReceipt, EngineError>>,
}

/// The handle the Publisher service sends requests through.
#[derive(Debug, Clone)]
pub struct PublishQueue {
    tx: mpsc::Sender<Job>,
    metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("records", &self.records.len())
            .finish()
    }
}

impl PublishQueue {
    /// Queues `records` for the next batch and waits until they are durable.
    pub async fn publish(
        &self,
        records: Vec<pb::CreditRecord>,
    ) -> Result<PublishReceipt, EngineError> {
        self.publish_with(records, Versions::Given).await
    }

    /// As [`PublishQueue::publish`], with the versions numbered as `versions` says.
    pub async fn publish_with(
        &self,
        records: Vec<pb::CreditRecord>,
        versions: Versions,
    ) -> Result<PublishReceipt, EngineError> {
        if records.is_empty() {
            return Err(EngineError::InvalidArgument(
                "records: at least one record is required".into(),
            ));
        }
        if records.len() > MAX_RECORDS_PER_REQUEST {
            return Err(EngineError::InvalidArgument(format!(
                "records: {} records in one request, the limit is {MAX_RECORDS_PER_REQUEST}",
                records.len()
            )));
        }
        let started = std::time::Instant::now();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                records,
                versions,
                reply,
            })
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        let receipt = rx.await.map_err(|_| EngineError::ShuttingDown)??;
        self.metrics.observe_publish(started.elapsed());
        Ok(receipt)
    }
}

/// Starts the group-commit task. It ends once every [`PublishQueue`] clone is dropped and the
/// queued requests are answered.
pub fn start(engine: Arc<Engine>) -> (PublishQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1024);
    let metrics = engine.metrics.clone();
    let task = tokio::spawn(run(engine, rx));
    (PublishQueue { tx, metrics }, task)
}

/// Publishing is a pipeline of three stages, each one batch at a time and in log order, so that
/// under load every stage is busy:
///
/// 1. **prepare** (this task): the requests that queued while the stage was busy, or the one
///    that found the origin idle, are gathered into a batch, validated and signed on every
///    core. Nothing waits for company, so a record published at an idle origin commits at once,
///    and under load batches grow to what arrives meanwhile (up to `batch_max_entries`).
/// 2. **apply** ([`apply_stage`]): the batch is written to the store (appended and indexed,
///    not yet durable) under the view and write locks, while the next batch is prepared.
/// 3. **finish** ([`Engine::finish_own`]): the batch is made durable, checkpointed and answered
///    while the next one is applied. A batch's finishing starts once the previous one's has
///    ended, so checkpoints and answers go out in log order, and a checkpoint is signed only
///    after the flush that made its entries durable.
///
/// A batch is prepared before the one ahead of it is in the store, so the prepare stage keeps
/// what the batches in flight append ([`InFlight`]). If a batch fails to apply, the batches
/// prepared behind it are answered with the same error and preparing starts again from the
/// store.
async fn run(engine: Arc<Engine>, mut rx: mpsc::Receiver<Job>) {
    let signer = engine.clone();
    match tokio::task::spawn_blocking(move || signer.checkpoint_own_log()).await {
        Ok(Ok(())) => {}
        // Not fatal: the next batch's checkpoint covers the entries too.
        Ok(Err(e)) => warn!(error = %e, "could not checkpoint this city's log at start"),
        Err(e) => warn!(error = %e, "checkpointing this city's log at start panicked"),
    }
    engine.wait_for_witnesses().await;
    let failures = Arc::new(Failures::default());
    // One prepared batch waits while one is applied: the stages run side by side, no further.
    let (prepared_tx, prepared_rx) = mpsc::channel(1);
    let applier = tokio::spawn(apply_stage(engine.clone(), prepared_rx, failures.clone()));
    let mut in_flight = InFlight::default();
    while let Some(first) = rx.recv().await {
        let jobs = gather(first, &mut rx, engine.batch_max_entries);
        let preparer = engine.clone();
        let failed = failures.clone();
        // Validation and signing are CPU work: off the runtime. A panic there drops the
        // replies, which the callers see as the queue gone, and what was in flight with them.
        let prepared = tokio::task::spawn_blocking(move || {
            let prepared = preparer.prepare_own(jobs, &mut in_flight, failed.count());
            (prepared, in_flight)
        })
        .await;
        let prepared = match prepared {
            Ok((prepared, kept)) => {
                in_flight = kept;
                prepared
            }
            Err(e) => {
                warn!(error = %e, "publish batch panicked while being prepared");
                in_flight = InFlight::default();
                None
            }
        };
        if let Some(prepared) = prepared
            && prepared_tx.send(prepared).await.is_err()
        {
            break;
        }
    }
    drop(prepared_tx);
    if let Err(e) = applier.await {
        warn!(error = %e, "the publish apply stage panicked");
    }
}

/// The apply stage: applies each prepared batch in turn and starts its finishing once the
/// previous batch's has ended.
async fn apply_stage(
    engine: Arc<Engine>,
    mut rx: mpsc::Receiver<Prepared>,
    failures: Arc<Failures>,
) {
    let mut finishing: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(prepared) = rx.recv().await {
        let staged = engine.stage_own(prepared, &failures).await;
        if let Some(previous) = finishing.take() {
            finished(previous).await;
        }
        if let Some(staged) = staged {
            finishing = Some(tokio::spawn(engine.clone().finish_own(staged)));
        }
    }
    if let Some(previous) = finishing {
        finished(previous).await;
    }
}

/// Batches that failed to apply, and why the last one did: a batch prepared before a failure
/// counted here numbered its entries after the failed one's, and is refused with its error.
#[derive(Debug, Default)]
struct Failures {
    count: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<Option<EngineError>>,
}

impl Failures {
    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    fn record(&self, error: &EngineError) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.for_each_waiter());
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The error for a batch prepared behind a failed one.
    fn behind(&self) -> EngineError {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or_else(
                || EngineError::Unavailable("a publish batch before this one failed".into()),
                EngineError::for_each_waiter,
            )
    }
}

/// What the prepare stage keeps of the batches it prepared that may not be in the store yet:
/// the seq the next entry takes, and each record's latest version among them with its seq.
/// Built afresh from the store at the first batch and after a failure.
#[derive(Debug, Default)]
struct InFlight {
    /// The [`Failures`] count it was built under; `None` before the first batch.
    failures: Option<u64>,
    next: u64,
    versions: HashMap<String, (u64, Arc<pb::CreditRecord>)>,
    /// The `logged_at` of the log's last entry, in flight or stored: the next is stamped later.
    logged_at: i64,
    /// The clock read a second or more before `logged_at` at the last batch (logged once).
    clock_behind: bool,
    /// The last batch was refused for a clock ahead of the witnesses' (logged once).
    clock_ahead: bool,
    /// The last batch was stamped with a witness's time, the clock behind them all (logged
    /// once).
    clock_slow: bool,
}

/// Waits for a batch's finishing; a panic there dropped its replies, which its callers see as
/// the queue gone.
async fn finished(task: tokio::task::JoinHandle<()>) {
    if let Err(e) = task.await {
        warn!(error = %e, "publish batch panicked while finishing");
    }
}

/// `first` and the requests queued behind it right now, up to `max_entries` records; a request
/// is never split, so one request larger than `max_entries` is a batch of its own.
fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, max_entries: usize) -> Vec<Job> {
    let mut count = first.records.len();
    let mut jobs = vec![first];
    while count < max_entries {
        match rx.try_recv() {
            Ok(job) => {
                count += job.records.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    jobs
}

/// A request whose records were appended (not yet durable), and where they landed.
type Accepted = (
    oneshot::Sender<Result<PublishReceipt, EngineError>>,
    Vec<Published>,
);

/// One new version to append: its record (normalised) and the subject keys it is indexed under.
struct Append {
    record: Arc<pb::CreditRecord>,
    subject_keys: Vec<credex_core::ident::SubjectId>,
}

/// A batch validated and signed, to apply: its requests, and its entries (with their signed
/// leaves) from seq `first` on, logged at `logged_at`; prepared when `failures` batches had
/// failed to apply.
struct Prepared {
    accepted: Vec<Accepted>,
    failures: u64,
    first: u64,
    appends: Vec<(Append, Vec<u8>)>,
    logged_at: i64,
}

/// What applying a batch did to the log.
enum Appended {
    /// The log after the batch's entries.
    Log(credex_store::OriginState),
    /// Every record was present already; the log's size.
    Nothing { size: u64 },
}

/// A batch applied to the store and not yet durable: its requests, and the log after it.
struct Staged {
    accepted: Vec<Accepted>,
    log: Appended,
}

/// Answers every request of a batch that failed to commit.
/// Answers every request of `jobs` with `error`: none of them is published.
fn refuse(jobs: Vec<Job>, error: &EngineError) {
    for job in jobs {
        let _ = job.reply.send(Err(error.for_each_waiter()));
    }
}

fn fail(accepted: Vec<Accepted>, error: &EngineError) {
    warn!(%error, "publish batch failed");
    for (reply, _) in accepted {
        let _ = reply.send(Err(error.for_each_waiter()));
    }
}

impl Engine {
    /// Stages one prepared batch: applies it under the view and write locks (it appends to the
    /// log and indexes what it appends). The accepted requests come back with the log they
    /// made, not yet durable; a failure is counted in `failures` and answered here, as is a
    /// batch prepared behind an earlier failure. `None` if nothing was applied.
    async fn stage_own(
        self: &Arc<Self>,
        prepared: Prepared,
        failures: &Failures,
    ) -> Option<Staged> {
        if prepared.failures != failures.count() {
            fail(prepared.accepted, &failures.behind());
            return None;
        }
        let view = self.view_lock.lock().await;
        let writer = self.write_lock.lock().await;
        let engine = self.clone();
        // The store write is disk and CPU work: off the runtime.
        let applied = tokio::task::spawn_blocking(move || engine.apply_own(prepared)).await;
        drop(writer);
        drop(view);
        match applied {
            Ok((accepted, Ok(log))) => Some(Staged { accepted, log }),
            Ok((accepted, Err(e))) => {
                failures.record(&e);
                fail(accepted, &e);
                None
            }
            // The replies were dropped with the batch: its callers see the queue gone.
            Err(e) => {
                warn!(error = %e, "publish batch panicked while being applied");
                failures.record(&EngineError::Internal(format!(
                    "a publish batch before this one panicked while being applied: {e}"
                )));
                None
            }
        }
    }

    /// Makes a staged batch durable, checkpoints it if it appended, and answers its requests:
    /// a request whose records were all present already is answered here too, once the batch
    /// before (which may hold them) is durable.
    async fn finish_own(self: Arc<Self>, staged: Staged) {
        let Staged { accepted, log } = staged;
        let (committed, tree_size) = match &log {
            Appended::Log(log) => (self.commit_appended(log).await, log.size),
            Appended::Nothing { size } => (self.flush_durable().await, *size),
        };
        match committed {
            Ok(()) => {
                self.metrics.count_published(
                    accepted
                        .iter()
                        .flat_map(|(_, p)| p)
                        .filter(|p| !p.already_present)
                        .count() as u64,
                );
                self.announce();
                for (reply, published) in accepted {
                    let _ = reply.send(Ok(PublishReceipt {
                        published,
                        tree_size,
                    }));
                }
            }
            Err(e) => fail(accepted, &e),
        }
    }

    /// Validates every request and signs the accepted ones' entries, numbered after the log and
    /// the batches `in_flight` ahead of this one; refused requests are answered here. Runs with
    /// no lock held, on a blocking thread: only the publish pipeline appends to this city's log
    /// and writes its records, one batch after the other, so what it reads here, with what
    /// `in_flight` adds, stays true until [`Engine::apply_own`] (which checks the log's size
    /// again). `failures` is the count of batches that failed to apply so far: after one, what
    /// was in flight is dropped and read again from the store. `None` if no request was
    /// accepted.
    fn prepare_own(
        &self,
        jobs: Vec<Job>,
        in_flight: &mut InFlight,
        failures: u64,
    ) -> Option<Prepared> {
        let origin = self.city.clone();
        let state = self.store.origin_state(&origin);
        if let Some(refusal) = self.publish_refusal(&state) {
            refuse(jobs, &refusal);
            return None;
        }
        if in_flight.failures != Some(failures) || in_flight.next < state.size {
            let own = self.member(&origin).expect("the node's city is a member");
            let logged_at = match self.logged_through(own, state.size) {
                Ok(logged_at) => logged_at.unwrap_or(i64::MIN),
                Err(e) => {
                    refuse(jobs, &e);
                    return None;
                }
            };
            *in_flight = InFlight {
                failures: Some(failures),
                next: state.size,
                versions: HashMap::new(),
                logged_at,
                clock_behind: in_flight.clock_behind,
                clock_ahead: in_flight.clock_ahead,
                clock_slow: in_flight.clock_slow,
            };
        } else {
            // Entries below the log's size are in the store, indexed (the store makes a
            // batch's index writes visible before its new size).
            in_flight.versions.retain(|_, (seq, _)| *seq >= state.size);
        }
        let now = match self.stamp(in_flight) {
            Ok(now) => now,
            Err(refusal) => {
                refuse(jobs, &refusal);
                return None;
            }
        };
        // Validated on the date stamped, as a peer will.
        let validator = self
            .validator(Mode::Publish, &self.city)
            .on(credex_core::date::date_of_millis(now));
        let first = in_flight.next;
        let mut next = first;
        // Versions taken by batches in flight and earlier in this one, so two requests cannot
        // both publish version 2 of a record, and a later one follows the earlier one's content.
        let pending = &mut in_flight.versions;
        let mut accepted = Vec::new();
        let mut changes = super::changes::ChangeTracker::new(self);
        let mut appends = Vec::new();
        // The entries to append, in seq order from `state.size`, signed together below.
        let mut unsigned = Vec::new();
        for job in jobs {
            let checked = match self.check_job(
                &validator,
                job.records,
                job.versions,
                pending,
                &mut changes,
            ) {
                Ok(checked) => checked,
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            };
            let mut published = Vec::with_capacity(checked.len());
            for c in checked {
                let v = match c {
                    Checked::New(v) => *v,
                    Checked::Present {
                        record_id,
                        version,
                        seq,
                    } => {
                        published.push(Published {
                            record_id,
                            version,
                            seq,
                            already_present: true,
                        });
                        continue;
                    }
                };
                let mut entry = pb::Entry {
                    origin: origin.clone(),
                    seq: next,
                    logged_at: now,
                    schema_version: credex_proto::SCHEMA_VERSION,
                    record: Some(v.normalised),
                };
                unsigned.push(entry::encode_entry(&entry));
                // One copy of the record from here on, shared by the batches in flight and
                // the append.
                let record = Arc::new(entry.record.take().expect("set above"));
                published.push(Published {
                    record_id: record.record_id.clone(),
                    version: record.version,
                    seq: next,
                    already_present: false,
                });
                pending.insert(record.record_id.clone(), (next, Arc::clone(&record)));
                appends.push(Append {
                    record,
                    subject_keys: v.subject_keys,
                });
                next += 1;
            }
            // Answered once the batch is durable, even if every record was present already:
            // the batch before, still being flushed, may be what holds them.
            accepted.push((job.reply, published));
        }
        in_flight.next = next;
        if next > first {
            in_flight.logged_at = now;
        }
        if accepted.is_empty() {
            return None;
        }
        // Signing is most of a batch's CPU work, and each entry's is independent: every core.
        let leaves = parallel::map_chunks(&unsigned, parallel::PARALLEL_MIN, |_, chunk| {
            chunk
                .iter()
                .map(|bytes| entry::sign_entry(&self.log_key, bytes))
                .collect()
        });
        Some(Prepared {
            accepted,
            failures,
            first,
            appends: appends.into_iter().zip(leaves).collect(),
            logged_at: now,
        })
    }

    /// Applies a prepared batch in one atomic write, with the view changes and index entries
    /// of what it appends. Runs under the view and write locks, on a blocking thread.
    fn apply_own(&self, prepared: Prepared) -> (Vec<Accepted>, Result<Appended, EngineError>) {
        let Prepared {
            accepted,
            first,
            appends,
            logged_at,
            failures: _,
        } = prepared;
        let origin = self.city.as_str();
        let state = self.store.origin_state(origin);
        if state.size != first || state.forked {
            let e = EngineError::Internal(format!(
                "this city's log moved while a publish batch was prepared (size {first}, now {}{})",
                state.size,
                if state.forked { ", forked" } else { "" }
            ));
            return (accepted, Err(e));
        }
        if appends.is_empty() {
            return (accepted, Ok(Appended::Nothing { size: first }));
        }
        let mut batch = WriteBatch::new();
        let mut changes = super::changes::ChangeTracker::new(self);
        let mut seq = first;
        for (
            Append {
                record,
                subject_keys,
            },
            leaf,
        ) in appends
        {
            match changes.observe(
                &mut batch,
                origin,
                seq,
                logged_at,
                &record,
                subject_keys.first(),
            ) {
                Ok(None) => {}
                // check_job refused every version that may not follow its record.
                Ok(Some(e)) => warn!(error = %e, "published a version check_job let through"),
                Err(e) => {
                    // Its standing is unknown too: the counts are not current until counted
                    // again (`counts::run_counts`).
                    warn!(error = %e, "view change not recorded");
                    batch.set_count_basis(None);
                }
            }
            let keys: Vec<&str> = subject_keys.iter().map(|k| k.as_str()).collect();
            batch.append(origin, seq, leaf).index_record(
                origin,
                &record.record_id,
                u64::from(record.version),
                seq,
                &keys,
            );
            seq += 1;
        }
        changes.finish(&mut batch);
        // Own entries are indexed in the batch that appends them.
        batch.set_indexed(origin, seq);
        let applied = self
            .writer
            .apply_blocking(batch)
            .map_err(EngineError::from)
            .map(|applied| {
                let log = applied
                    .origins
                    .into_iter()
                    .find_map(|(name, state)| (name == origin).then_some(state))
                    .expect("a batch that appends to an origin reports its new state");
                Appended::Log(log)
            });
        (accepted, applied)
    }

    /// Flushes the appended batch, then signs and stores the checkpoint over it (`log`, the
    /// origin's state right after the batch): every batch gets its own checkpoint, signed only
    /// once the entries it covers are durable.
    ///
    /// The checkpoint itself is not flushed here: it becomes durable with the next batch's
    /// flush, or sled's own within half a second. A crash before that loses nothing it could
    /// not sign again: [`Engine::checkpoint_own_log`] signs the missing one at start, and
    /// Ed25519 signatures are deterministic, so the note is byte for byte the one peers may
    /// already hold. No lock is needed: only the publish task stores this city's checkpoints at
    /// new sizes, one batch after the other, and the store serialises applies.
    async fn commit_appended(&self, log: &credex_store::OriginState) -> Result<(), EngineError> {
        self.flush_durable().await?;
        self.apply(self.own_checkpoint(log)?).await?;
        self.own_checkpoint_stored(log);
        Ok(())
    }

    /// A batch storing this city's checkpoint over `log` (its size and root), signed.
    fn own_checkpoint(&self, log: &credex_store::OriginState) -> Result<WriteBatch, EngineError> {
        let mut batch = WriteBatch::new();
        batch.set_checkpoint(&self.city, log.size, self.sign_own_checkpoint(log)?);
        Ok(batch)
    }

    /// This city's checkpoint note over `log` (its size and root), signed with its log key.
    pub(super) fn sign_own_checkpoint(
        &self,
        log: &credex_store::OriginState,
    ) -> Result<Vec<u8>, EngineError> {
        let checkpoint = Checkpoint {
            origin: credex_core::consortium::origin(&self.consortium, &self.city),
            size: log.size,
            root: log.root,
        };
        note::sign_checkpoint(&checkpoint, &self.log_key)
            .map_err(|e| EngineError::Internal(format!("signing checkpoint: {e}")))
    }

    /// Notes this city's checkpoint over `log` as stored.
    fn own_checkpoint_stored(&self, log: &credex_store::OriginState) {
        let origin = self.city.as_str();
        self.note_checkpoint_stored(origin, log.size);
        info!(origin, size = log.size, root = %hex_root(&log.root), "published");
    }

    /// Signs the checkpoint over this city's whole log if the newest one stored is smaller: a
    /// node stopped after a batch was durable and before its checkpoint was (see
    /// `commit_appended`). The publish task calls it once, before it takes requests.
    pub fn checkpoint_own_log(&self) -> Result<(), EngineError> {
        let log = self.store.origin_state(&self.city);
        if log.size == 0 || log.forked {
            return Ok(());
        }
        let signed = self.store.checkpoint(&self.city)?.map_or(0, |cp| cp.size);
        if signed < log.size {
            warn!(
                signed,
                size = log.size,
                "signing the checkpoint over entries made durable before the node stopped"
            );
            // On a blocking thread already (the publish task starts it so).
            self.writer.apply_blocking(self.own_checkpoint(&log)?)?;
            self.own_checkpoint_stored(&log);
            self.writer
                .flush_within_blocking(super::storage::FLUSH_DEADLINE)?;
        }
        Ok(())
    }

    /// The `logged_at` the next batch is stamped with, or why nothing may be published now.
    /// The log goes forward in time whatever the clock does: a clock put back (set ahead, then
    /// right) stamps each batch a millisecond after the one before until it passes the log's
    /// last entry again, so peers, which refuse an entry logged before one they hold in the view
    /// (`index::CheckedLeaf::refuse_logged_before`), take it, and "as known at" a time stays a
    /// prefix of the log. Against the witnesses' clocks (two at least): a clock that jumped
    /// ahead of them all is refused ([`clock_refusal`]); one more than
    /// [`CLOCK_AHEAD_MAX`] behind them all stamps the earliest witness's time instead, as the
    /// view takes that witness's day ([`Engine::view_today`]), so that what the city logs is
    /// not logged late by the clock's error nor judged on a day already past elsewhere.
    fn stamp(&self, in_flight: &mut InFlight) -> Result<i64, EngineError> {
        let judged = self.witness_clocks();
        if let Some(refusal) = judged.as_ref().and_then(clock_refusal) {
            if !in_flight.clock_ahead {
                warn!(error = %refusal, "publishing refused");
            }
            in_flight.clock_ahead = true;
            return Err(refusal);
        }
        in_flight.clock_ahead = false;
        let slow = judged.as_ref().filter(|j| j.behind());
        if slow.is_some() != in_flight.clock_slow {
            in_flight.clock_slow = slow.is_some();
            match slow {
                Some(j) => warn!(
                    clock = %credex_core::date::format_millis(j.clock),
                    witness = %j.earliest.1,
                    witness_clock = %credex_core::date::format_millis(j.earliest.0),
                    "the clock reads more than an hour behind every witness's; stamping entries \
                     with the earliest witness's time until it is set right"
                ),
                None => info!("the clock reads within the hour of the witnesses' again"),
            }
        }
        let clock = judged.map_or_else(|| self.clock.now_millis(), |j| j.time());
        let now = clock.max(in_flight.logged_at.saturating_add(1));
        let behind = now - clock;
        self.metrics.set_publish_clock_behind(behind);
        if (behind >= 1000) != in_flight.clock_behind {
            in_flight.clock_behind = behind >= 1000;
            if in_flight.clock_behind {
                warn!(
                    clock = %credex_core::date::format_millis(clock),
                    last_logged = %credex_core::date::format_millis(in_flight.logged_at),
                    "the clock reads before this city's last entry; stamping entries just after \
                     it until the clock passes it"
                );
            } else {
                info!("the clock has passed this city's last entry again");
            }
        }
        Ok(now)
    }

    /// Notes the clocks of the witnesses whose `cosignatures` of this city's checkpoint just
    /// came in: what each read when it cosigned, as of now on this node's monotonic clock.
    /// The clock gauges follow, here, at every publish and at every date tick.
    pub(super) fn note_witness_clocks<'a>(
        &self,
        cosignatures: impl IntoIterator<Item = &'a note::Cosignature>,
    ) {
        let learnt = self.clock.elapsed();
        let mut clocks = self
            .witness_clocks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for c in cosignatures {
            let millis = i64::try_from(c.timestamp.saturating_mul(1000)).unwrap_or(i64::MAX);
            clocks.insert(c.witness.clone(), (millis, learnt));
        }
        drop(clocks);
        if self.witness_clocks().is_some() {
            self.witnesses_heard();
        }
    }

    /// Makes publishing wait, when it starts, until the witnesses' clocks are known (two of
    /// them, what `Engine::witness_clocks` judges by), the cosigning round at start has ended
    /// ([`Engine::witnesses_heard`]) or [`WITNESS_WAIT_AT_START`] has passed. A node whose
    /// clock was already wrong when it started would otherwise stamp the batches that came in
    /// before the witnesses answered with that clock, and its log, which goes forward in time,
    /// would have to follow them. Called before [`start`] by a node with witnesses to ask.
    pub fn hear_witnesses_first(&self) {
        self.witnesses_heard.send_replace(false);
    }

    /// Publishing need not wait for the witnesses any longer: the cosigning round at start
    /// has had its answers, or there was nothing to ask.
    pub fn witnesses_heard(&self) {
        self.witnesses_heard.send_replace(true);
    }

    /// Waits, before the first batch is stamped, the date tick's first tick and a query of
    /// "today" (Lookup and List without `as_of`, the console's search), as
    /// [`Engine::hear_witnesses_first`] says; at once once the witnesses have been heard. The
    /// first wait to reach [`WITNESS_WAIT_AT_START`] opens the gate for everyone after it and
    /// says so: witnesses that do not answer (the round asks each for up to twice
    /// `cosign::REQUEST_TIMEOUT`) hold back nothing longer than that, once.
    pub async fn wait_for_witnesses(&self) {
        let mut heard = self.witnesses_heard.subscribe();
        let in_time = tokio::time::timeout(WITNESS_WAIT_AT_START, heard.wait_for(|heard| *heard))
            .await
            .is_ok();
        if !in_time
            && self
                .witnesses_heard
                .send_if_modified(|h| !std::mem::replace(h, true))
        {
            warn!(
                waited = ?WITNESS_WAIT_AT_START,
                "no two witnesses answered the cosigning round at start in time: going by this \
                 node's clock, unchecked, until they do"
            );
        }
    }

    /// This node's clock against its witnesses' now: each going on from its newest cosignature
    /// (learnt within [`WITNESS_CLOCK_KEPT`]) by this node's monotonic clock. `None` until two
    /// witnesses have cosigned since the node started (it asks them all as it starts): one
    /// alone is not judged by, so a single lying witness can neither stop this city publishing
    /// nor move its view's day. Sets `credex_witness_clocks`,
    /// `credex_clock_ahead_of_witnesses_seconds` and `credex_clock_behind_witnesses_seconds`.
    pub(super) fn witness_clocks(&self) -> Option<WitnessClocks> {
        let clocks = self
            .witness_clocks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = self.clock.elapsed();
        let mut fresh: Vec<(i64, &String)> = clocks
            .iter()
            .filter_map(|(witness, (millis, learnt))| {
                let since = now.saturating_sub(*learnt);
                let since_ms = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
                (since < WITNESS_CLOCK_KEPT).then(|| (millis.saturating_add(since_ms), witness))
            })
            .collect();
        self.metrics.set_witness_clocks(fresh.len());
        if fresh.len() < 2 {
            return None;
        }
        fresh.sort_unstable();
        let owned = |(millis, witness): (i64, &String)| (millis, witness.clone());
        let judged = WitnessClocks {
            clock: self.clock.now_millis(),
            earliest: owned(fresh[0]),
            latest: owned(fresh[fresh.len() - 1]),
            every_witness: self.members.keys().filter(|c| **c != self.city).all(|c| {
                let name = credex_core::consortium::witness_name(&self.consortium, c);
                fresh.iter().any(|(_, w)| **w == name)
            }),
        };
        self.metrics.set_clock_against_witnesses(
            judged.clock.saturating_sub(judged.latest.0),
            judged.earliest.0.saturating_sub(judged.clock),
        );
        Some(judged)
    }

    /// Why this city's log, in `state`, takes no entries now, if it does not. `state` may be
    /// older than the store's by the batches in flight: it is compared only with what peers
    /// sent, never with the store read again (the log grows under the pipeline's feet).
    pub(super) fn publish_refusal(&self, state: &credex_store::OriginState) -> Option<EngineError> {
        let origin = self.city.as_str();
        if state.forked {
            return Some(EngineError::FailedPrecondition(format!(
                "origin {origin} is marked forked on this node; it publishes nothing more"
            )));
        }
        let seen = self.seen_from_peers(origin);
        if seen > state.size {
            // A checkpoint this city signed over more entries than its log holds came back from
            // a peer: the log is being restored from its peers (a node whose store was moved
            // aside or lost). An entry published now would take a seq its city has already
            // signed for, a second history of the city that every peer would prove as a fork.
            return Some(EngineError::Unavailable(format!(
                "this city's log holds {} entries, but a checkpoint it signed over {seen} came \
                 back from a peer: the log is being restored from its peers; publish again once \
                 it holds them (or check that this node runs on its city's own store)",
                state.size
            )));
        }
        let indexed = self.store.indexed(origin);
        // The city's own log came back from a peer (a rebuilt node) and the indexer has not
        // reached its end: a new version must be checked against every one before it.
        (indexed < state.size).then(|| {
            EngineError::Unavailable(format!(
                "the view holds {indexed} of this city's {} entries while they are checked; \
                 publish again shortly",
                state.size
            ))
        })
    }

    /// Validates every record of one request and checks its version is the next one and may
    /// follow the one before it (same subject and list, not after a revocation).
    fn check_job(
        &self,
        validator: &Validator<'_>,
        records: Vec<pb::CreditRecord>,
        versions: Versions,
        pending: &HashMap<String, (u64, Arc<pb::CreditRecord>)>,
        changes: &mut super::changes::ChangeTracker<'_>,
    ) -> Result<Vec<Checked>, EngineError> {
        let mut problems = Vec::new();
        let mut checked = Vec::with_capacity(records.len());
        // The request's own latest version of a record, by index into `checked`.
        let mut earlier: HashMap<String, usize> = HashMap::new();
        let version_at = |checked: &[Checked], at: usize| match &checked[at] {
            Checked::New(v) => v.normalised.version,
            Checked::Present { version, .. } => *version,
        };
        for (i, given) in records.into_iter().enumerate() {
            let record = match versions {
                Versions::Given => given,
                Versions::Assign => {
                    let known = earlier
                        .get(&given.record_id)
                        .map(|&at| version_at(&checked, at))
                        .or_else(|| pending.get(&given.record_id).map(|(_, r)| r.version));
                    match self.assign_version(validator, i, &given, known)? {
                        Assigned::Next(record) => *record,
                        Assigned::Present(present) => {
                            checked.push(present);
                            continue;
                        }
                        Assigned::Refused(problem) => {
                            problems.push(problem);
                            continue;
                        }
                    }
                }
            };
            // The record itself becomes the normalised one: validation copies nothing.
            let v = match validator.validate_owned(record) {
                Ok(v) => v,
                Err((e, _)) => {
                    problems.push(format!("records[{i}]: {e}"));
                    continue;
                }
            };
            // Normalising rewrites identifiers only: the id and version are as given.
            let (id, version) = (v.normalised.record_id.as_str(), v.normalised.version);
            // A version a batch in flight appends, asked for again (a client retrying before
            // its answer came): the same content is present, as it would be once durable.
            if !earlier.contains_key(id)
                && let Some((seq, held)) = pending.get(id)
                && held.version == version
            {
                if **held == v.normalised {
                    checked.push(Checked::Present {
                        record_id: id.to_owned(),
                        version,
                        seq: *seq,
                    });
                } else {
                    problems.push(format!(
                        "records[{i}]: record {id}: version: {} is already published with other \
                         content (seq {seq}); publish the change as version {}",
                        version,
                        held.version.saturating_add(1)
                    ));
                }
                continue;
            }
            let stored = self.store.record(&self.city, id)?;
            // A version held already (batches in flight only append newer ones).
            if !earlier.contains_key(id)
                && let Some(latest) = stored
                && u64::from(version) <= latest.version
            {
                let newest = pending
                    .get(id)
                    .map_or(latest.version, |(_, r)| u64::from(r.version));
                match self.stored_version(id, version, latest)? {
                    Some((seq, held)) if *held == v.normalised => {
                        checked.push(Checked::Present {
                            record_id: id.to_owned(),
                            version,
                            seq,
                        });
                    }
                    held => problems.push(format!(
                        "records[{i}]: record {id}: version: {version} is already published with \
                         other content (seq {}); publish the change as version {}",
                        held.map_or_else(|| "?".to_owned(), |(seq, _)| seq.to_string()),
                        newest + 1
                    )),
                }
                continue;
            }
            let current = match earlier
                .get(id)
                .map(|&at| version_at(&checked, at))
                .or_else(|| pending.get(id).map(|(_, r)| r.version))
            {
                Some(v) => Some(v),
                None => stored.map(|loc| u32::try_from(loc.version).unwrap_or(u32::MAX)),
            };
            let expected = current.map_or(1, |c| c.saturating_add(1));
            if version != expected {
                problems.push(match current {
                    Some(c) => format!(
                        "records[{i}]: record {id}: version: {} is not the next version; the latest is {c}, so expected {expected}",
                        version
                    ),
                    None => format!(
                        "records[{i}]: record {id}: version: {} is not the next version; the record is new, so expected 1",
                        version
                    ),
                });
                continue;
            }
            let held;
            let previous: Option<&pb::CreditRecord> = match (earlier.get(id), pending.get(id)) {
                (Some(&at), _) => match &checked[at] {
                    Checked::New(earlier) => Some(&earlier.normalised),
                    Checked::Present { .. } => None,
                },
                (None, Some((_, record))) => Some(record),
                // A first version follows nothing (the store holds none: it would be present).
                (None, None) if version == 1 => None,
                (None, None) => {
                    held = changes.previous(&self.city, &v.normalised)?;
                    held.as_deref()
                }
            };
            if let Some(previous) = previous
                && let Err(e) = credex_core::history::check_successor(previous, &v.normalised)
            {
                problems.push(format!("records[{i}]: {e}"));
                continue;
            }
            earlier.insert(id.to_owned(), checked.len());
            checked.push(Checked::New(Box::new(v)));
        }
        if problems.is_empty() {
            Ok(checked)
        } else {
            Err(EngineError::InvalidArgument(problems.join("\n")))
        }
    }
}

/// What [`Versions::Assign`] makes of one record.
enum Assigned {
    /// Publish it with this version.
    Next(Box<pb::CreditRecord>),
    /// Its latest version holds this content already.
    Present(Checked),
    Refused(String),
}

impl Engine {
    /// Numbers record `i` of a request whose versions the node assigns: the next version after
    /// `known` (a version earlier in this request, this batch or a batch in flight) or after the
    /// latest held, unless the latest held has the same normalised content. A version not yet
    /// durable is not compared: the same row in two requests in flight makes two versions.
    /// `credexctl import` never sends one record id in two requests in flight.
    fn assign_version(
        &self,
        validator: &Validator<'_>,
        i: usize,
        given: &pb::CreditRecord,
        known: Option<u32>,
    ) -> Result<Assigned, EngineError> {
        let id = given.record_id.as_str();
        if given.version != 0 {
            return Ok(Assigned::Refused(format!(
                "records[{i}]: record {id}: version: must be 0 (unset) when the node assigns \
                 versions, found {}",
                given.version
            )));
        }
        let numbered = |version: u32| {
            Box::new(pb::CreditRecord {
                version,
                ..given.clone()
            })
        };
        if let Some(v) = known {
            return Ok(Assigned::Next(numbered(v.saturating_add(1))));
        }
        let Some(latest) = self.store.record(&self.city, id)? else {
            return Ok(Assigned::Next(numbered(1)));
        };
        let version = u32::try_from(latest.version).unwrap_or(u32::MAX);
        // Compared as validation normalises it; an invalid record is reported as the next
        // version by the caller's validation.
        if let Ok(v) = validator.validate(&numbered(version))
            && let Some((seq, held)) = self.stored_version(id, version, latest)?
            && *held == v.normalised
        {
            return Ok(Assigned::Present(Checked::Present {
                record_id: id.to_owned(),
                version,
                seq,
            }));
        }
        Ok(Assigned::Next(numbered(version.saturating_add(1))))
    }

    /// This city's `version` of record `id` as held (its seq and record), given the record's
    /// latest location.
    fn stored_version(
        &self,
        id: &str,
        version: u32,
        latest: credex_store::RecordLocation,
    ) -> Result<Option<(u64, Arc<pb::CreditRecord>)>, EngineError> {
        let seq = if u64::from(version) == latest.version {
            latest.seq
        } else {
            match self
                .store
                .versions(&self.city, id)?
                .into_iter()
                .find(|loc| loc.version == u64::from(version))
            {
                Some(loc) => loc.seq,
                None => return Ok(None),
            }
        };
        let held = self.record_version(&self.city, seq)?;
        Ok(Some((seq, held.record)))
    }
}

fn hex_root(root: &merkle::Hash) -> String {
    root.0.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(records: usize) -> Job {
        Job {
            records: vec![pb::CreditRecord::default(); records],
            versions: Versions::Given,
            reply: oneshot::channel().0,
        }
    }

    fn sizes(jobs: &[Job]) -> Vec<usize> {
        jobs.iter().map(|j| j.records.len()).collect()
    }

    #[test]
    fn a_request_at_an_idle_origin_is_a_batch_of_its_own() {
        let (_tx, mut rx) = mpsc::channel(8);
        assert_eq!(sizes(&gather(job(1), &mut rx, 256)), [1]);
    }

    #[test]
    fn requests_queued_behind_a_commit_form_the_next_batch_up_to_the_cap() {
        let (tx, mut rx) = mpsc::channel(8);
        for n in [100, 100, 100, 5] {
            tx.try_send(job(n)).expect("room");
        }
        // 1 + 100 + 100 < 256, so the third request still joins; then the batch is full.
        assert_eq!(sizes(&gather(job(1), &mut rx, 256)), [1, 100, 100, 100]);
        assert_eq!(sizes(&gather(job(300), &mut rx, 256)), [300]);
        let first = rx.try_recv().expect("the 5-record request is still queued");
        assert_eq!(sizes(&gather(first, &mut rx, 256)), [5]);
    }
}
