//! Publishing the city's own records: validate, assign seq, sign, append, then sign a
//! checkpoint — with group commit, so a bulk load pays one durable write per batch of up to
//! `batch_max_entries` records (or `batch_max_delay` of waiting), not one per record.
//!
//! A request is accepted or refused whole. It is acknowledged only once its entries are
//! durable; the checkpoint over them is signed only after that (DESIGN.md: a node signs no
//! checkpoint before the entries it covers are durable, so a crash never looks like
//! equivocation).

use std::collections::HashMap;
use std::sync::Arc;

use credex_core::entry;
use credex_core::merkle;
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use credex_core::validate::{Mode, Validator};
use credex_store::WriteBatch;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
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
}

/// A publish request's result: its records' positions and the log size after its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    pub published: Vec<Published>,
    pub tree_size: u64,
}

struct Job {
    records: Vec<pb::CreditRecord>,
    reply: oneshot::Sender<Result<PublishReceipt, EngineError>>,
}

/// The handle the Publisher service sends requests through.
#[derive(Debug, Clone)]
pub struct PublishQueue {
    tx: mpsc::Sender<Job>,
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
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { records, reply })
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        rx.await.map_err(|_| EngineError::ShuttingDown)?
    }
}

/// Starts the group-commit task. It ends once every [`PublishQueue`] clone is dropped and the
/// queued requests are answered.
pub fn start(engine: Arc<Engine>) -> (PublishQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(run(engine, rx));
    (PublishQueue { tx }, task)
}

async fn run(engine: Arc<Engine>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + engine.batch_max_delay;
        let mut count = first.records.len();
        let mut jobs = vec![first];
        while count < engine.batch_max_entries {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    count += job.records.len();
                    jobs.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        engine.commit_own(jobs).await;
    }
}

impl Engine {
    async fn commit_own(&self, jobs: Vec<Job>) {
        let writer = self.write_lock.lock().await;
        let origin = self.city.clone();
        let state = self.store.origin_state(&origin);
        if state.forked {
            for job in jobs {
                let _ = job.reply.send(Err(EngineError::FailedPrecondition(format!(
                    "origin {origin} is marked forked on this node; it publishes nothing more"
                ))));
            }
            return;
        }
        let validator = Validator {
            catalogue: self.catalogue,
            allow_list: &self.allow_list,
            mode: Mode::Publish,
        };
        let now = self.clock.now_millis();
        let mut batch = WriteBatch::new();
        let mut next = state.size;
        // Versions assigned earlier in this batch, so two requests in one batch cannot both
        // publish version 2 of a record.
        let mut pending: HashMap<String, u32> = HashMap::new();
        let mut accepted = Vec::new();
        let mut changes = super::changes::ChangeTracker::new(self);
        for job in jobs {
            match self.check_job(&validator, &job.records, &pending) {
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
                Ok(valid) => {
                    let mut published = Vec::with_capacity(valid.len());
                    for v in valid {
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
                        if let Err(e) = changes.observe(
                            &mut batch,
                            &origin,
                            next,
                            &record,
                            v.subject_keys.first(),
                        ) {
                            warn!(error = %e, "view change not recorded");
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
                        });
                        next += 1;
                    }
                    accepted.push((job.reply, published));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let result = self.write_own_batch(&origin, batch).await;
        drop(writer);
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
                let message = e.to_string();
                for (reply, _) in accepted {
                    let _ = reply.send(Err(EngineError::Internal(message.clone())));
                }
            }
        }
    }

    /// Appends and flushes the batch, then signs and stores the checkpoint over it.
    async fn write_own_batch(&self, origin: &str, batch: WriteBatch) -> Result<u64, EngineError> {
        self.store.apply(batch)?;
        self.store.flush_async().await?;
        let state = self.store.origin_state(origin);
        let checkpoint = Checkpoint {
            origin: self.me().checkpoint_origin.clone(),
            size: state.size,
            root: state.root,
        };
        let note = note::sign_checkpoint(&checkpoint, &self.log_key)
            .map_err(|e| EngineError::Internal(format!("signing checkpoint: {e}")))?;
        let mut cp_batch = WriteBatch::new();
        cp_batch.set_checkpoint(origin, state.size, note);
        self.store.apply(cp_batch)?;
        self.store.flush_async().await?;
        self.note_checkpoint_stored(origin, state.size);
        info!(origin, size = state.size, root = %hex_root(&state.root), "published");
        Ok(state.size)
    }

    /// Validates every record of one request and checks its version is the next one.
    fn check_job(
        &self,
        validator: &Validator<'_>,
        records: &[pb::CreditRecord],
        pending: &HashMap<String, u32>,
    ) -> Result<Vec<credex_core::validate::Validated>, EngineError> {
        let mut problems = Vec::new();
        let mut valid = Vec::with_capacity(records.len());
        let mut in_request: HashMap<&str, u32> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let v = match validator.validate(record) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("records[{i}]: {e}"));
                    continue;
                }
            };
            let id = record.record_id.as_str();
            let current = match in_request.get(id).or_else(|| pending.get(id)) {
                Some(&v) => Some(v),
                None => self
                    .store
                    .record(&self.city, id)?
                    .map(|loc| u32::try_from(loc.version).unwrap_or(u32::MAX)),
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
            in_request.insert(id, record.version);
            valid.push(v);
        }
        if problems.is_empty() {
            Ok(valid)
        } else {
            Err(EngineError::InvalidArgument(problems.join("\n")))
        }
    }
}

fn hex_root(root: &merkle::Hash) -> String {
    root.0.iter().map(|b| format!("{b:02x}")).collect()
}
