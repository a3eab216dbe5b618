//! The view's counts for Operator.Status and `/metrics` (subjects, records in force and by
//! list, records excluded), kept by the writer as the view moves, so status reads them in
//! constant time at any size.
//!
//! Every batch that moves a record's standing in today's view — a new version indexed or
//! published (`changes::ChangeTracker`), a date the tick reaches — evaluates the
//! record from its whole history and gives the store its [`Standing`]; the store moves the
//! totals by the difference from the standing it held, in the same atomic write
//! ([`credex_store::Standing`]). Standings are absolute, so counts never drift with the order
//! of evaluations, a crash or a replay.
//!
//! The counts hold for the rules they were evaluated under: the recognition policy, the legacy
//! USCC allow list, the category catalogue and this module's evaluation (`Engine::count_basis`).
//! A node whose store was counted under other rules (a changed `[recognition]`, a store from
//! before the counts) counts every record again at start ([`Engine::recount_view`]), in the
//! background, a chunk at a time under the view's lock; until it has, status says the counts
//! are not current.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use credex_core::catalogue::Catalogue;
use credex_core::date::Date;
use credex_core::pb;
use credex_core::policy::RecognitionPolicy;
use credex_core::rules::Rules;
use credex_core::view::{self, Excluded, InForce, RecordVersion};
use credex_store::{SUBJECT_TAG_LEN, Standing, SubjectTag, WriteBatch};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Engine, EngineError};

/// How long the count task waits before counting again after a failed count.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Leaves the recount and the tally read at a time.
const COUNT_CHUNK: usize = 512;

/// Bumped whenever what a standing means changes, so stores counted before count again.
const COUNT_RULES: &str = "credex-view-counts/1";

/// The view's counts, with records in force by list.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewTally {
    pub counts: pb::ViewCounts,
    /// Records in force by list.
    pub by_list: BTreeMap<pb::ListKind, u64>,
}

/// An evaluation of a record from its history ([`view::evaluate_record`]).
pub(crate) type Evaluation = Option<Result<InForce, Excluded>>;

/// A chunk of the log read for counting: how many leaves were read, and each record whose
/// latest version is among them, evaluated.
type CountedChunk = (u64, Vec<(String, Evaluation)>);

/// The standing an evaluation gives a record.
pub(crate) fn standing(evaluation: &Evaluation) -> Standing {
    match evaluation {
        None => Standing::Uncounted,
        Some(Ok(in_force)) => {
            let record = &in_force.version.record;
            Standing::InForce {
                list: u8::try_from(record.list).unwrap_or(u8::MAX),
                subject: subject_tag(record),
            }
        }
        Some(Err(_)) => Standing::Excluded,
    }
}

/// The tag a record's subject is counted under: the first 8 bytes of SHA-256 of its USCC, or of
/// its ID number for a person, so the store's per-subject counts hold no identifier. Eight bytes
/// keep the counts small on disk (a key and a record value each hold one); two subjects among
/// ten million share a tag with odds of about 3 in a million, and one an origin ground to
/// collide would count two subjects as one — a status figure off by one, nothing in the view.
pub(crate) fn subject_tag(record: &pb::CreditRecord) -> SubjectTag {
    let key = record.subject.as_ref().map_or("", |s| {
        if s.uscc.is_empty() {
            &s.id_number
        } else {
            &s.uscc
        }
    });
    let digest = Sha256::new()
        .chain_update(b"credex view subject\0")
        .chain_update(key.as_bytes())
        .finalize();
    let mut tag = [0; SUBJECT_TAG_LEN];
    tag.copy_from_slice(&digest[..SUBJECT_TAG_LEN]);
    tag
}

/// Evaluates a record from every version held of it, invalid ones included (a record whose
/// latest version is invalid is excluded for it, as Lookup reports it).
pub(crate) fn evaluate_all(history: &[RecordVersion], engine: &Engine, on: Date) -> Evaluation {
    let refs: Vec<&RecordVersion> = history.iter().collect();
    view::evaluate_record(&refs, &engine.policy, on)
}

/// What the view's standings are evaluated under ([`Engine::count_basis`]): a digest of the
/// recognition policy, the legacy allow list, the catalogue and [`COUNT_RULES`].
pub(crate) fn count_basis(
    policy: &RecognitionPolicy,
    rules: &Rules,
    catalogue: &Catalogue,
) -> Vec<u8> {
    let mut h = Sha256::new()
        .chain_update(COUNT_RULES)
        .chain_update(format!("\n{policy:?}\n"))
        .chain_update(format!("{:?}\n", rules.legacy_uscc_allow_list))
        .chain_update(catalogue.version());
    for category in catalogue.categories() {
        h.update(format!("\n{category:?}"));
    }
    h.finalize().to_vec()
}

impl Engine {
    /// What this node evaluates the view's standings under.
    pub(crate) fn count_basis(&self) -> &[u8] {
        &self.count_basis
    }

    /// The view's counts as the writer keeps them: no scan, a copy of a few numbers. Current
    /// unless a recount is under way or the date tick has not yet reached today.
    pub fn view_counts(&self) -> Result<ViewTally, EngineError> {
        let kept = self.store.view_counts();
        let counted = kept.basis.as_deref() == Some(self.count_basis());
        let ticked = self.view_is_on(self.view_today())?;
        let by_list = kept
            .by_list
            .iter()
            .map(|(&list, &n)| {
                let kind = pb::ListKind::try_from(i32::from(list)).unwrap_or_default();
                (kind, n)
            })
            .collect();
        Ok(ViewTally {
            counts: pb::ViewCounts {
                subjects: kept.subjects,
                records_in_force: kept.in_force,
                excluded: kept.excluded,
                counted_at: self.clock.now_millis(),
                current: counted && ticked,
            },
            by_list,
        })
    }

    /// Counts every record again if the store's counts were evaluated under other rules than
    /// this node's (`Engine::count_basis`): every record indexed gets its standing, a chunk
    /// of the log at a time under the view's lock (so it interleaves with the indexer and
    /// publish, which set the standings of what they touch), then the basis is set. A crash
    /// part way counts again at the next start. Returns how many records it evaluated (0: the
    /// counts were current); stops early, leaving the counts not current, when `stop` turns.
    pub async fn recount_view(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<u64, EngineError> {
        let basis = self.count_basis().to_vec();
        if self.store.view_counts().basis.as_ref() == Some(&basis) {
            return Ok(0);
        }
        info!("counting the view: its counts were kept under other rules");
        let started = std::time::Instant::now();
        {
            let _view = self.view_lock.lock().await;
            let mut batch = WriteBatch::new();
            batch.set_count_basis(None);
            self.apply(batch).await?;
        }
        let mut evaluated = 0;
        for origin in self.members().map(|m| m.city.clone()).collect::<Vec<_>>() {
            let mut seq = 0;
            while seq < self.store.indexed(&origin) {
                if *stop.borrow_and_update() {
                    return Ok(evaluated);
                }
                let _view = self.view_lock.lock().await;
                let engine = self.clone();
                let name = origin.clone();
                let chunk = super::index::spawn_low(move || engine.latest_in_chunk(&name, seq))
                    .await
                    .map_err(|_| EngineError::Internal("the view count's thread ended".into()))??;
                let Some((read, latest)) = chunk else { break };
                let mut batch = WriteBatch::new();
                for (record_id, evaluation) in &latest {
                    batch.set_standing(&origin, record_id, standing(evaluation));
                }
                evaluated += latest.len() as u64;
                self.apply(batch).await?;
                seq += read;
            }
        }
        let _view = self.view_lock.lock().await;
        let mut batch = WriteBatch::new();
        batch.set_count_basis(Some(basis));
        self.apply(batch).await?;
        self.flush_durable().await?;
        info!(
            records = evaluated,
            seconds = started.elapsed().as_secs_f64(),
            "the view is counted"
        );
        Ok(evaluated)
    }

    /// The records whose latest version is among `origin`'s indexed leaves from `seq` on (a
    /// chunk of them), each evaluated from its whole history, and how many leaves were read;
    /// `None` past the indexed mark. The leaves are read in log order, so each leaf block is
    /// decompressed once (in record-id order each record's leaf would cost a block).
    fn latest_in_chunk(&self, origin: &str, seq: u64) -> Result<Option<CountedChunk>, EngineError> {
        let indexed = self.store.indexed(origin);
        if seq >= indexed {
            return Ok(None);
        }
        let n = usize::try_from(indexed - seq).map_or(COUNT_CHUNK, |n| n.min(COUNT_CHUNK));
        let leaves = self.store.leaves(origin, seq, n)?;
        if leaves.is_empty() {
            return Ok(None);
        }
        let today = self.view_today();
        let mut latest = Vec::new();
        for (at, leaf) in (seq..).zip(&leaves) {
            // A leaf that is no record is in no record's history.
            let Ok(version) = self.version_of_leaf(origin, at, leaf, 0) else {
                continue;
            };
            let Some(loc) = self.store.record(origin, &version.record.record_id)? else {
                continue;
            };
            if loc.seq != at {
                continue; // Not the record's latest version: evaluated at that one.
            }
            let record_id = version.record.record_id.clone();
            let history = if loc.version <= 1 {
                vec![version]
            } else {
                self.record_history(origin, &record_id, loc, 0, None)?
            };
            latest.push((record_id, evaluate_all(&history, self, today)));
        }
        Ok(Some((leaves.len() as u64, latest)))
    }

    /// Counts the view by reading it whole — every origin's log up to its indexed mark — as
    /// [`Engine::view_counts`] should find it: what the tests and `credexctl bench catchup`
    /// hold the kept counts against. Time O(log), memory O(subjects) × 8 bytes.
    pub fn view_tally(&self) -> Result<ViewTally, EngineError> {
        let mut counts = pb::ViewCounts::default();
        let mut by_list = BTreeMap::new();
        let mut subjects = HashSet::new();
        for member in self.members() {
            let origin = member.city.as_str();
            let mut seq = 0;
            while let Some((read, latest)) = self.latest_in_chunk(origin, seq)? {
                for (_, evaluation) in latest {
                    match evaluation {
                        None => {}
                        Some(Ok(in_force)) => {
                            counts.records_in_force += 1;
                            *by_list.entry(in_force.version.record.list()).or_default() += 1;
                            subjects.insert(subject_tag(&in_force.version.record));
                        }
                        Some(Err(_)) => counts.excluded += 1,
                    }
                }
                seq += read;
            }
        }
        counts.subjects = subjects.len() as u64;
        counts.counted_at = self.clock.now_millis();
        counts.current = true;
        Ok(ViewTally { counts, by_list })
    }
}

/// Runs [`Engine::recount_view`] at start, and again whenever the counts' basis stops being
/// this node's (a publish batch that could not evaluate a record clears it), until `stop`.
pub async fn run_counts(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut advanced = engine.subscribe();
    loop {
        advanced.borrow_and_update();
        let wait = match engine.recount_view(stop.clone()).await {
            Ok(_) => None,
            Err(e) => {
                warn!(error = %e, "counting the view failed; retrying");
                Some(RETRY_AFTER)
            }
        };
        tokio::select! {
            () = crate::sync::stopped(&mut stop) => return,
            _ = advanced.changed(), if wait.is_none() => {}
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
}
