//! Publishing the city's own records: validate, assign seq, sign, append, then sign a
//! checkpoint — with adaptive group commit. A request that finds the origin idle is committed
//! and checkpointed at once; requests that arrive while a batch commits queue up and are
//! committed together as the next batch (up to `batch_max_entries` records), so a bulk load
//! pays one durable write per batch, not one per record, and a lone record waits for nothing.
//! There is no time window: the commit in flight is the window.
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

use credex_core::entry;
use credex_core::merkle;
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use credex_core::validate::{Mode, Validator};
use credex_store::WriteBatch;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{Engine, EngineError};

/// Most records one Publish request may carry.
pub const MAX_RECORDS_PER_REQUEST: usize = 10_000;

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

/// One batch at a time: the requests that queued while the previous batch committed, or the
/// one that found the origin idle. Nothing waits for company, so a record published at an idle
/// origin commits at once, and under load batches grow to what arrives during one commit.
async fn run(engine: Arc<Engine>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let jobs = gather(first, &mut rx, engine.batch_max_entries);
        engine.commit_own(jobs).await;
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

impl Engine {
    async fn commit_own(self: &Arc<Self>, jobs: Vec<Job>) {
        // Both: the batch appends to the log and indexes what it appends.
        let view = self.view_lock.lock().await;
        let writer = self.write_lock.lock().await;
        let engine = self.clone();
        // Validation, signing and the store write are CPU and disk work: off the runtime. A
        // panic there drops the replies, and the callers see the queue gone.
        let Ok((accepted, applied)) =
            tokio::task::spawn_blocking(move || engine.append_own(jobs)).await
        else {
            warn!("publish batch panicked");
            return;
        };
        if accepted.is_empty() {
            return;
        }
        let result = match applied {
            Ok(()) => self.commit_appended().await,
            Err(e) => Err(e),
        };
        drop(writer);
        drop(view);
        match result {
            Ok(tree_size) => {
                self.metrics
                    .count_published(accepted.iter().map(|(_, p)| p.len() as u64).sum());
                self.announce();
                for (reply, published) in accepted {
                    let _ = reply.send(Ok(PublishReceipt {
                        published,
                        tree_size,
                    }));
                }
            }
            Err(e) => {
                warn!(error = %e, "publish batch failed");
                for (reply, _) in accepted {
                    let _ = reply.send(Err(e.for_each_waiter()));
                }
            }
        }
    }

    /// Validates every request, signs the accepted ones' entries and applies them in one
    /// atomic write. Refused requests are answered here; the accepted ones are returned with
    /// the outcome of the write. Runs under the write lock, on a blocking thread.
    fn append_own(&self, jobs: Vec<Job>) -> (Vec<Accepted>, Result<(), EngineError>) {
        let origin = self.city.clone();
        let state = self.store.origin_state(&origin);
        if state.forked {
            for job in jobs {
                let _ = job.reply.send(Err(EngineError::FailedPrecondition(format!(
                    "origin {origin} is marked forked on this node; it publishes nothing more"
                ))));
            }
            return (Vec::new(), Ok(()));
        }
        let indexed = self.store.indexed(&origin);
        if indexed < state.size {
            // The city's own log came back from a peer (a rebuilt node) and the indexer has not
            // reached its end: a new version must be checked against every one before it.
            for job in jobs {
                let _ = job.reply.send(Err(EngineError::Unavailable(format!(
                    "the view holds {indexed} of this city's {} entries while they are checked; publish again shortly",
                    state.size
                ))));
            }
            return (Vec::new(), Ok(()));
        }
        let validator = self.validator(Mode::Publish, &self.city);
        let now = self.clock.now_millis();
        let mut batch = WriteBatch::new();
        let mut next = state.size;
        // Versions assigned earlier in this batch, so two requests in one batch cannot both
        // publish version 2 of a record.
        let mut pending: HashMap<String, u32> = HashMap::new();
        let mut accepted = Vec::new();
        let mut changes = super::changes::ChangeTracker::new(self);
        for job in jobs {
            match self.check_job(
                &validator,
                &job.records,
                job.versions,
                &pending,
                &mut changes,
            ) {
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
                Ok(checked) => {
                    let mut published = Vec::with_capacity(checked.len());
                    let mut appended = false;
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
                        appended = true;
                        let record = v.normalised;
                        let entry = pb::Entry {
                            origin: origin.clone(),
                            seq: next,
                            logged_at: now,
                            schema_version: credex_proto::SCHEMA_VERSION,
                            record: Some(record.clone()),
                        };
                        let leaf = entry::sign_entry(&self.log_key, entry::encode_entry(&entry));
                        let keys: Vec<&str> = v.subject_keys.iter().map(|k| k.as_str()).collect();
                        match changes.observe(
                            &mut batch,
                            &origin,
                            next,
                            now,
                            &record,
                            v.subject_keys.first(),
                        ) {
                            Ok(None) => {}
                            // check_job refused every version that may not follow its record.
                            Ok(Some(e)) => {
                                warn!(error = %e, "published a version check_job let through")
                            }
                            Err(e) => warn!(error = %e, "view change not recorded"),
                        }
                        batch.append(&origin, next, leaf).index_record(
                            &origin,
                            &record.record_id,
                            u64::from(record.version),
                            next,
                            &keys,
                        );
                        pending.insert(record.record_id.clone(), record.version);
                        published.push(Published {
                            record_id: record.record_id,
                            version: record.version,
                            seq: next,
                            already_present: false,
                        });
                        next += 1;
                    }
                    if appended {
                        accepted.push((job.reply, published));
                    } else {
                        // Every record was already in the log, durable since its own batch
                        // (batches commit one at a time under the write lock).
                        let _ = job.reply.send(Ok(PublishReceipt {
                            published,
                            tree_size: state.size,
                        }));
                    }
                }
            }
        }
        if accepted.is_empty() {
            return (accepted, Ok(()));
        }
        // Own entries are indexed in the batch that appends them.
        batch.set_indexed(&origin, next);
        let applied = self.store.apply(batch).map(drop).map_err(EngineError::from);
        (accepted, applied)
    }

    /// Flushes the appended batch, then signs and stores the checkpoint over it: every batch
    /// gets its own checkpoint, signed only once the entries it covers are durable.
    async fn commit_appended(&self) -> Result<u64, EngineError> {
        let origin = self.city.as_str();
        self.flush_durable().await?;
        let state = self.store.origin_state(origin);
        let checkpoint = Checkpoint {
            origin: credex_core::consortium::origin(&self.consortium, &self.city),
            size: state.size,
            root: state.root,
        };
        let note = note::sign_checkpoint(&checkpoint, &self.log_key)
            .map_err(|e| EngineError::Internal(format!("signing checkpoint: {e}")))?;
        let mut cp_batch = WriteBatch::new();
        cp_batch.set_checkpoint(origin, state.size, note);
        self.store.apply(cp_batch)?;
        self.flush_durable().await?;
        self.note_checkpoint_stored(origin, state.size);
        info!(origin, size = state.size, root = %hex_root(&state.root), "published");
        Ok(state.size)
    }

    /// Validates every record of one request and checks its version is the next one and may
    /// follow the one before it (same subject and list, not after a revocation).
    fn check_job(
        &self,
        validator: &Validator<'_>,
        records: &[pb::CreditRecord],
        versions: Versions,
        pending: &HashMap<String, u32>,
        changes: &mut super::changes::ChangeTracker<'_>,
    ) -> Result<Vec<Checked>, EngineError> {
        let mut problems = Vec::new();
        let mut checked = Vec::with_capacity(records.len());
        let mut valid: Vec<credex_core::validate::Validated> = Vec::with_capacity(records.len());
        let mut in_request: HashMap<&str, u32> = HashMap::new();
        // The request's own earlier version of a record, by index into `valid`.
        let mut earlier: HashMap<&str, usize> = HashMap::new();
        for (i, given) in records.iter().enumerate() {
            let numbered;
            let record = match versions {
                Versions::Given => given,
                Versions::Assign => {
                    let known = in_request
                        .get(given.record_id.as_str())
                        .or_else(|| pending.get(&given.record_id));
                    match self.assign_version(validator, i, given, known.copied())? {
                        Assigned::Next(record) => {
                            numbered = *record;
                            &numbered
                        }
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
            let v = match validator.validate(record) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("records[{i}]: {e}"));
                    continue;
                }
            };
            // The id as given (a numbered copy has the same), borrowed for the whole request.
            let id = given.record_id.as_str();
            let stored = self.store.record(&self.city, id)?;
            if !in_request.contains_key(id)
                && !pending.contains_key(id)
                && let Some(latest) = stored
                && u64::from(v.normalised.version) <= latest.version
            {
                match self.stored_version(id, v.normalised.version, latest)? {
                    Some((seq, held)) if held == v.normalised => {
                        checked.push(Checked::Present {
                            record_id: id.to_owned(),
                            version: record.version,
                            seq,
                        });
                    }
                    _ => problems.push(format!(
                        "records[{i}]: record {id}: version: {} is already published with other \
                         content (seq {}); publish the change as version {}",
                        record.version,
                        self.stored_version(id, v.normalised.version, latest)?
                            .map_or_else(|| "?".to_owned(), |(seq, _)| seq.to_string()),
                        latest.version + 1
                    )),
                }
                continue;
            }
            let current = match in_request.get(id).or_else(|| pending.get(id)) {
                Some(&v) => Some(v),
                None => stored.map(|loc| u32::try_from(loc.version).unwrap_or(u32::MAX)),
            };
            let expected = current.map_or(1, |c| c.saturating_add(1));
            if record.version != expected {
                problems.push(match current {
                    Some(c) => format!(
                        "records[{i}]: record {id}: version: {} is not the next version; the latest is {c}, so expected {expected}",
                        record.version
                    ),
                    None => format!(
                        "records[{i}]: record {id}: version: {} is not the next version; the record is new, so expected 1",
                        record.version
                    ),
                });
                continue;
            }
            let previous = match earlier.get(id) {
                Some(&at) => Some(valid[at].normalised.clone()),
                None => changes.previous(&self.city, &v.normalised)?,
            };
            if let Some(previous) = previous
                && let Err(e) = credex_core::history::check_successor(&previous, &v.normalised)
            {
                problems.push(format!("records[{i}]: {e}"));
                continue;
            }
            in_request.insert(id, record.version);
            earlier.insert(id, valid.len());
            valid.push(v.clone());
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
    /// `known` (a version earlier in this request or batch) or after the latest held, unless the
    /// latest held has the same normalised content. A version earlier in the same batch is not
    /// compared (it is not durable yet): the same row twice in one batch makes two versions.
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
            && held == v.normalised
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
    ) -> Result<Option<(u64, pb::CreditRecord)>, EngineError> {
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
