//! The node's domain service: everything `credexd` does, with no gRPC types in sight.
//!
//! The gRPC services (`service`) and the sync loops (`sync`) are thin adapters over
//! [`Engine`]. It is the only writer to the store: every change goes through [`ingest`]
//! (entries from peers, into the logs), [`index`] (those entries, checked, into the view),
//! [`publish`] (the city's own records, into both) or [`checkpoints`] (checkpoints from
//! peers), each committing one atomic batch, which [`writer`]'s thread applies. That thread
//! owns the store itself (a `credex_store::Store`, not `Clone`); the engine reads through a
//! `StoreReader`, which cannot write.
//!
//! # Layout
//! - [`ingest`]: the receive path: append under a signed root, quarantine the rest.
//! - [`index`]: the indexer behind it: each entry's signature and record, then the view.
//! - [`publish`]: group commit of the city's own records and checkpoint signing.
//! - [`checkpoints`]: received checkpoints, consistency with the log, equivocation evidence.
//! - [`query`]: the view (lookup, list), proofs and status.
//! - [`counts`]: the view's counts for status, one shared count at a time.
//! - [`storage`]: flushes with a deadline; a full or failed store in status, metrics, sync.
//! - [`witness`]: Witness.AddCheckpoint (C2SP tlog-witness semantics).
//! - [`access`]: the access log of full-identity view requests (查询留痕).
//! - [`writer`]: the store's one writer, a thread running every apply and flush in order.
//! - `parallel`: CPU-bound work (verifying, signing) split over every core.

pub mod access;
pub mod changes;
pub mod checkpoints;
pub mod counts;
pub mod index;
pub mod ingest;
pub mod publish;
pub mod query;
pub mod storage;
pub mod witness;
pub mod writer;

#[cfg(test)]
mod access_tests;
#[cfg(test)]
pub(crate) mod harness;
#[cfg(test)]
mod publish_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod storage_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod view_tests;
#[cfg(test)]
mod writer_tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use credex_core::catalogue::Catalogue;
use credex_core::date::Clock;
use credex_core::keys::SigningKeyPair;
use credex_core::policy::RecognitionPolicy;
use credex_core::rules::Rules;
use credex_core::validate::{Mode, Validator};
use credex_store::{Store, StoreError, StoreReader};
use tokio::sync::watch;

use crate::metrics::{Metrics, OriginGauges};

/// One member city as the consortium file pins it: the keys its entries and checkpoints
/// verify under. Its city id is the `origin` of its entries and its store key.
pub use credex_core::consortium::Member;

/// What an [`Engine`] is built from; the daemon fills it from the config files.
#[derive(Debug)]
pub struct EngineParts {
    pub consortium: String,
    pub city: String,
    pub members: Vec<Member>,
    pub log_key: SigningKeyPair,
    pub witness_key: SigningKeyPair,
    pub policy: RecognitionPolicy,
    /// The consortium's rules (its file's `[rules]` and members' divisions).
    pub rules: Rules,
    pub clock: Arc<dyn Clock>,
    pub store: Store,
    pub batch_max_entries: usize,
}

/// Why an engine operation failed. The gRPC layer maps each kind to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller's input is wrong; the message names the field and the problem.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but cannot be served in this state (e.g. an origin is forked).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("node is shutting down")]
    ShuttingDown,
    /// Not now: the node is catching up on something; the same request can succeed later.
    #[error("{0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// Out of a resource the operator must restore (a full disk); the same request can
    /// succeed once they have.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// The same error for each of the callers waiting on one failed batch: the kind kept
    /// (what the gRPC status says), a store error carried by its message.
    pub fn for_each_waiter(&self) -> EngineError {
        match self {
            EngineError::InvalidArgument(m) => EngineError::InvalidArgument(m.clone()),
            EngineError::NotFound(m) => EngineError::NotFound(m.clone()),
            EngineError::FailedPrecondition(m) => EngineError::FailedPrecondition(m.clone()),
            EngineError::ShuttingDown => EngineError::ShuttingDown,
            EngineError::Unavailable(m) => EngineError::Unavailable(m.clone()),
            EngineError::Store(e) if e.is_disk_full() => {
                EngineError::ResourceExhausted(self.to_string())
            }
            EngineError::Store(StoreError::Failed { .. } | StoreError::FlushTimeout { .. }) => {
                EngineError::Unavailable(self.to_string())
            }
            EngineError::ResourceExhausted(m) => EngineError::ResourceExhausted(m.clone()),
            EngineError::Store(_) | EngineError::Internal(_) => {
                EngineError::Internal(self.to_string())
            }
        }
    }
}

/// Per-origin progress broadcast to live sync streams: the committed log sizes by origin.
pub type Frontiers = BTreeMap<String, u64>;

/// The node's domain service. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    pub consortium: String,
    pub city: String,
    members: BTreeMap<String, Member>,
    log_key: SigningKeyPair,
    witness_key: SigningKeyPair,
    policy: RecognitionPolicy,
    pub rules: Rules,
    pub catalogue: &'static Catalogue,
    pub clock: Arc<dyn Clock>,
    /// For reading: adapters read through the engine's methods, never the store itself. A
    /// reader only: the [`Store`] itself, the writes, is the writer's.
    store: StoreReader,
    /// The store's one writer: every apply and flush goes through it.
    writer: writer::Writer,
    metrics: Metrics,
    /// Serialises the read-check-write of every write to the logs (appends, checkpoints,
    /// witness state, evidence): the store has one writer.
    write_lock: tokio::sync::Mutex<()>,
    /// Serialises every write to the view (the indexer, the date tick, publish's index part):
    /// each reads a record's indexed history, then writes what follows from it. Held apart
    /// from `write_lock` so the indexer's long batches never stall the log's appends; taken
    /// first when both are needed (publish).
    view_lock: tokio::sync::Mutex<()>,
    /// Committed sizes, for live sync streams to wake on.
    advanced: watch::Sender<Frontiers>,
    /// Highest checkpoint size seen per origin in any verified checkpoint (for lag).
    best_seen: Mutex<BTreeMap<String, u64>>,
    /// Checkpoints ahead of the local log, checked when their entries arrive.
    pending: Mutex<checkpoints::Pending>,
    /// When this node stored each origin's newest checkpoint (size, Unix ms), for its age.
    checkpoint_times: Mutex<BTreeMap<String, (u64, i64)>>,
    /// Per witness, its clock as its newest cosignature of this city's checkpoints gave it:
    /// (Unix ms, when that was learnt by `Clock::elapsed`). See `Engine::witness_clocks`.
    witness_clocks: Mutex<BTreeMap<String, (i64, std::time::Duration)>>,
    /// Whether publishing may stamp a batch yet: false from [`Engine::hear_witnesses_first`]
    /// until the witnesses' clocks are known or the cosigning round at start has ended.
    witnesses_heard: watch::Sender<bool>,
    /// What the view's standings are evaluated under (`counts`).
    count_basis: Vec<u8>,
    /// The day number the date tick last settled the view on (`changes`), 0 before its first
    /// tick: on any other day it looks for a clock moved back and forgets old passed dates.
    settled_day: std::sync::atomic::AtomicU32,
    pub batch_max_entries: usize,
}

impl Engine {
    pub fn new(parts: EngineParts) -> Result<Arc<Engine>, EngineError> {
        let members: BTreeMap<_, _> = parts
            .members
            .into_iter()
            .map(|m| (m.city.clone(), m))
            .collect();
        if !members.contains_key(&parts.city) {
            return Err(EngineError::Internal(format!(
                "city {} is not a member of consortium {}",
                parts.city, parts.consortium
            )));
        }
        let frontiers: Frontiers = parts
            .store
            .origins()
            .into_iter()
            .map(|(o, s)| (o, s.size))
            .collect();
        let metrics = Metrics::new(&parts.city);
        let store = parts.store.reader();
        let writer = writer::Writer::start(parts.store).map_err(|e| {
            EngineError::Internal(format!("starting the store writer's thread: {e}"))
        })?;
        let catalogue = Catalogue::builtin();
        let count_basis = counts::count_basis(&parts.policy, &parts.rules, catalogue);
        let engine = Engine {
            consortium: parts.consortium,
            city: parts.city,
            members,
            log_key: parts.log_key,
            witness_key: parts.witness_key,
            policy: parts.policy,
            rules: parts.rules,
            catalogue,
            clock: parts.clock,
            store,
            writer,
            metrics,
            write_lock: tokio::sync::Mutex::new(()),
            view_lock: tokio::sync::Mutex::new(()),
            advanced: watch::channel(frontiers).0,
            best_seen: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            checkpoint_times: Mutex::new(BTreeMap::new()),
            witness_clocks: Mutex::new(BTreeMap::new()),
            witnesses_heard: watch::channel(true).0,
            count_basis,
            settled_day: std::sync::atomic::AtomicU32::new(0),
            batch_max_entries: parts.batch_max_entries.max(1),
        };
        engine.refresh_gauges();
        Ok(Arc::new(engine))
    }

    pub fn member(&self, city: &str) -> Option<&Member> {
        self.members.get(city)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn me(&self) -> &Member {
        &self.members[&self.city]
    }

    /// The node's metrics, for the adapters to count what they see (peers, handshakes, RPCs).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every origin this node holds a log of, with its size, root and fork state.
    pub fn origins_held(&self) -> Vec<(String, credex_store::OriginState)> {
        self.store.origins()
    }

    /// `origin`'s log as this node holds it.
    pub fn origin_state(&self, origin: &str) -> credex_store::OriginState {
        self.store.origin_state(origin)
    }

    /// The newest checkpoint of `origin` this node stored.
    pub fn stored_checkpoint(
        &self,
        origin: &str,
    ) -> Result<Option<credex_store::StoredNote>, StoreError> {
        self.store.checkpoint(origin)
    }

    /// The consistency proof from `old_size` to `new_size` of `origin`'s log (RFC 6962), from
    /// the stored hashes; `seeded` adds the old root's own hashes (C2SP's seeded form, which
    /// lets a receiver check a smaller checkpoint it holds no hashes of).
    pub fn consistency_path(
        &self,
        origin: &str,
        old_size: u64,
        new_size: u64,
        seeded: bool,
    ) -> Result<Vec<credex_core::merkle::Hash>, EngineError> {
        let reader = self.store.hash_reader(origin);
        let proof = if seeded {
            credex_core::merkle::seeded_consistency_proof(old_size, new_size, &reader)
        } else {
            credex_core::merkle::consistency_proof(old_size, new_size, &reader)
        };
        proof.map_err(|e| {
            EngineError::Internal(format!(
                "consistency proof of {origin} from {old_size} to {new_size}: {e}"
            ))
        })
    }

    /// Up to `limit` stored checkpoints of `origin` from size `min_size` on, smallest first.
    pub fn checkpoints_from(
        &self,
        origin: &str,
        min_size: u64,
        limit: usize,
    ) -> Result<Vec<credex_store::StoredNote>, StoreError> {
        self.store.checkpoints(origin, min_size, limit)
    }

    /// Up to `limit` leaves of `origin`'s log from seq `from`, as stored.
    pub fn leaves(
        &self,
        origin: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.store.leaves(origin, from, limit)
    }

    /// Leaves `start..end` of `origin` as stored, for a peer that takes them packed
    /// ([`credex_store::StoreReader::packed_leaves`]).
    pub fn packed_leaves(
        &self,
        origin: &str,
        start: u64,
        end: u64,
        max_entries: u64,
        max_bytes: usize,
    ) -> Result<credex_store::PackedRun, StoreError> {
        self.store
            .packed_leaves(origin, start, end, max_entries, max_bytes)
    }

    /// Entries of `origin` listed invalid: a count the store keeps, no scan.
    pub fn invalid_count(&self, origin: &str) -> u64 {
        self.store.invalid_count(origin)
    }

    /// Up to `limit` quarantined entries (only `origin`'s if given), in key order.
    pub fn quarantined(
        &self,
        origin: Option<&str>,
        limit: usize,
    ) -> Result<Vec<credex_store::Quarantined>, EngineError> {
        Ok(self.store.quarantined(origin, None, limit)?)
    }

    /// Quarantined entries per reason code.
    pub fn quarantine_counts(&self) -> Result<BTreeMap<String, u64>, EngineError> {
        Ok(self.store.quarantine_counts()?)
    }

    /// The store change the next view change gets (see [`Engine::changes`]).
    pub fn change_head(&self) -> u64 {
        self.store.change_head()
    }

    /// Resolves if the store's writer thread ends while the engine exists (its loop
    /// panicked), with why: nothing can be written any more, so the node's supervision stops
    /// it.
    pub async fn writer_stopped(&self) -> String {
        self.writer.stopped().await
    }

    /// Ends the store writer's thread as a bug in its loop would (a test's dead writer).
    #[cfg(test)]
    pub(crate) async fn kill_writer(&self) {
        self.writer
            .run_on_thread(|| panic!("the writer's loop, killed by a test"))
            .await;
    }

    /// The validator for records `origin` publishes, against the consortium's rules, with today
    /// (UTC+8) as the reference date; the receive path moves it to each entry's `logged_at` date.
    pub fn validator<'a>(&'a self, mode: Mode, origin: &'a str) -> Validator<'a> {
        Validator {
            catalogue: self.catalogue,
            rules: &self.rules,
            mode,
            origin,
            today: self.clock.today(),
        }
    }

    pub fn witness_key(&self) -> &SigningKeyPair {
        &self.witness_key
    }

    /// A receiver of committed-size changes, for live sync streams.
    pub fn subscribe(&self) -> watch::Receiver<Frontiers> {
        self.advanced.subscribe()
    }

    /// Largest size seen in any verified checkpoint of `origin`, or the local size if larger.
    pub fn best_seen(&self, origin: &str) -> u64 {
        let local = self.store.origin_state(origin).size;
        local.max(self.seen_from_peers(origin))
    }

    /// Largest size seen in a verified checkpoint of `origin` that a peer sent (0: none).
    fn seen_from_peers(&self, origin: &str) -> u64 {
        self.best_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .copied()
            .unwrap_or(0)
    }

    /// Notes that a checkpoint of `origin` at `size` was stored now (a larger size only).
    fn note_checkpoint_stored(&self, origin: &str, size: u64) {
        let now = self.clock.now_millis();
        let mut times = self
            .checkpoint_times
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let e = times.entry(origin.to_owned()).or_insert((size, now));
        if size > e.0 {
            *e = (size, now);
        }
    }

    /// When the newest checkpoint of `origin` at `size` was stored, if this process saw it.
    fn checkpoint_stored_at(&self, origin: &str, size: u64) -> Option<i64> {
        let times = self
            .checkpoint_times
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        times
            .get(origin)
            .filter(|(s, _)| *s == size)
            .map(|(_, t)| *t)
    }

    fn note_seen(&self, origin: &str, size: u64) {
        let mut seen = self.best_seen.lock().unwrap_or_else(|e| e.into_inner());
        let e = seen.entry(origin.to_owned()).or_default();
        *e = (*e).max(size);
    }

    /// Publishes the committed sizes after a write, and updates the gauges.
    fn announce(&self) {
        let frontiers: Frontiers = self
            .store
            .origins()
            .into_iter()
            .map(|(o, s)| (o, s.size))
            .collect();
        self.advanced.send_replace(frontiers);
        self.refresh_gauges();
    }

    fn refresh_gauges(&self) {
        for (origin, state) in self.store.origins() {
            let best = self.best_seen(&origin);
            self.metrics.set_origin(
                &origin,
                OriginGauges {
                    size: state.size,
                    indexed: self.store.indexed(&origin),
                    lag: best.saturating_sub(state.size),
                    forked: state.forked,
                },
            );
        }
    }
}
