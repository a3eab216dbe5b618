//! The view's counts for Operator.Status (subjects, records in force, records excluded), which
//! take a scan of the record index: at a million records, tens of seconds.
//!
//! A status call must answer an operator at once, at any size, and must not start a scan of
//! its own that keeps running after its caller gave up. So one count runs at a time, on a
//! thread at the indexer's low priority, shared by every caller; a caller waits for it at most
//! [`VIEW_COUNT_BUDGET`]. A count stays *current* until the view moves (an indexed mark, the
//! change feed, the date): a current count is answered without counting; otherwise the caller
//! waits within its budget for a count of the view as it is now, and past the budget gets the
//! last count with the time it was taken and `current: false` while the new one finishes. A
//! small view is counted within the budget, so its status is exact. A view whose last count
//! took longer than a quarter of the budget is not waited for at all: the call answers the last
//! count at once and the new one runs behind it, so status answers in milliseconds at any size
//! (`credexctl bench catchup` measures it at a million entries, during and after a catch-up).

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credex_core::date::Date;
use credex_core::pb;
use credex_core::view::{self, RecordVersion};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Engine, EngineError};

/// Leaves a count reads at a time.
const COUNT_CHUNK: usize = 256;

/// The longest a status call waits for the view to be counted.
pub const VIEW_COUNT_BUDGET: Duration = Duration::from_secs(2);

/// What the view was when it was counted: a count is current while this is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    indexed: Vec<u64>,
    change_head: u64,
    today: Date,
}

/// One count of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewTally {
    pub counts: pb::ViewCounts,
    /// Records in force by list.
    pub by_list: BTreeMap<pb::ListKind, u64>,
}

#[derive(Debug, Clone)]
struct Counted {
    tally: ViewTally,
    stamp: Stamp,
    /// How long the count took.
    took: Duration,
}

/// The last count and the one running, if any.
#[derive(Debug, Default)]
pub(crate) struct ViewCounter {
    state: Mutex<CounterState>,
}

#[derive(Debug, Default)]
struct CounterState {
    last: Option<Counted>,
    /// Turns `Some` when the running count ends (`Err`: why it failed).
    running: Option<watch::Receiver<Option<Result<(), String>>>>,
}

impl Engine {
    /// The view's counts, current if they can be had within `budget` (see the module docs).
    /// `None` only if the view has never been counted and the first count is still running.
    pub async fn view_counts_within(
        self: &Arc<Self>,
        budget: Duration,
    ) -> Result<Option<ViewTally>, EngineError> {
        let deadline = Instant::now() + budget;
        loop {
            let stamp = self.view_stamp();
            let mut running = {
                let mut state = self.counter.state.lock().unwrap_or_else(|e| e.into_inner());
                let last = state.last.as_ref();
                if let Some(last) = last.filter(|l| l.stamp == stamp) {
                    return Ok(Some(last.tally.clone()));
                }
                // A view slow to count is not waited for: the last count now.
                let stale = last.filter(|l| l.took > budget / 4).map(|l| {
                    let mut tally = l.tally.clone();
                    tally.counts.current = false;
                    tally
                });
                let running = match &state.running {
                    Some(running) => running.clone(),
                    None => {
                        let running = self.start_count(stamp);
                        state.running = Some(running.clone());
                        running
                    }
                };
                if stale.is_some() {
                    return Ok(stale);
                }
                running
            };
            match tokio::time::timeout_at(deadline, running.wait_for(Option::is_some)).await {
                Ok(Ok(done)) => {
                    if let Some(Err(e)) = done.as_ref() {
                        return Err(EngineError::Internal(format!("counting the view: {e}")));
                    }
                    // Counted: current now, or the view moved meanwhile and the loop counts
                    // again within what is left of the budget.
                }
                Ok(Err(_)) => {
                    // The count's thread died (a panic) or never started: forget it, so the
                    // next caller starts another rather than waiting on a closed channel.
                    let mut state = self.counter.state.lock().unwrap_or_else(|e| e.into_inner());
                    if state
                        .running
                        .as_ref()
                        .is_some_and(|r| r.has_changed().is_err())
                    {
                        state.running = None;
                    }
                    return Err(EngineError::Internal(
                        "the view count's thread ended without a result".into(),
                    ));
                }
                Err(_) => {
                    let state = self.counter.state.lock().unwrap_or_else(|e| e.into_inner());
                    return Ok(state.last.as_ref().map(|l| {
                        let mut tally = l.tally.clone();
                        tally.counts.current = false;
                        tally
                    }));
                }
            }
        }
    }

    /// The view's stamp now.
    fn view_stamp(&self) -> Stamp {
        Stamp {
            indexed: self
                .members()
                .map(|m| self.store.indexed(&m.city))
                .collect(),
            change_head: self.store.change_head(),
            today: self.clock.today(),
        }
    }

    /// Starts counting the view as of `stamp` on a low-priority thread; the receiver turns
    /// `Some` when it ends, by which time the count is `last`.
    fn start_count(self: &Arc<Self>, stamp: Stamp) -> watch::Receiver<Option<Result<(), String>>> {
        let (tx, rx) = watch::channel(None);
        let engine = self.clone();
        let counted_at = self.clock.now_millis();
        let counting = super::index::spawn_low(move || {
            let started = std::time::Instant::now();
            let result = engine.view_tally();
            let took = started.elapsed();
            let mut state = engine
                .counter
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            state.running = None;
            let result = result.map(|mut tally| {
                tally.counts.counted_at = counted_at;
                tally.counts.current = true;
                state.last = Some(Counted { tally, stamp, took });
            });
            let _ = tx.send(Some(result.map_err(|e| e.to_string())));
        });
        // The thread reports through `tx`; its own receiver is not needed.
        drop(counting);
        rx
    }

    /// Counts the subjects and records the view holds today (and by list), and the records
    /// excluded: a scan of each origin's log up to its indexed mark, in log order, so that
    /// every leaf block is decompressed once (read in record-id order, each record's leaf cost
    /// a block of its own: a count at a million records spent most of its time decompressing).
    /// A leaf is counted where the record index names it the record's latest version. O(log)
    /// time, memory O(subjects) × 8 bytes.
    pub fn view_tally(&self) -> Result<ViewTally, EngineError> {
        let today = self.clock.today();
        let mut counts = pb::ViewCounts::default();
        let mut by_list = BTreeMap::new();
        // Subjects as 64-bit hashes: at a million subjects 8 MB, not the strings' 100 MB; two
        // subjects colliding among a million has odds of about 1 in 10^7.
        let mut subjects = HashSet::new();
        for member in self.members() {
            let origin = member.city.as_str();
            let indexed = self.store.indexed(origin);
            let mut seq = 0;
            while seq < indexed {
                let n = usize::try_from(indexed - seq).map_or(COUNT_CHUNK, |n| n.min(COUNT_CHUNK));
                let leaves = self.store.leaves(origin, seq, n)?;
                if leaves.is_empty() {
                    break;
                }
                for (at, leaf) in (seq..).zip(&leaves) {
                    // A leaf that is no record (listed invalid) is in no record's history.
                    // Provenance plays no part in whether a record is in force.
                    let Ok(version) = self.version_of_leaf(origin, at, leaf, 0) else {
                        continue;
                    };
                    let record_id = version.record.record_id.clone();
                    let Some(loc) = self.store.record(origin, &record_id)? else {
                        continue;
                    };
                    if loc.seq != at {
                        continue; // Not the record's latest version: counted at that one.
                    }
                    let history = if loc.version <= 1 {
                        vec![version]
                    } else {
                        self.record_history(origin, &record_id, loc, 0, None)?
                    };
                    let refs: Vec<&RecordVersion> = history.iter().collect();
                    match view::evaluate_record(&refs, &self.policy, today) {
                        None => {}
                        Some(Ok(in_force)) => {
                            counts.records_in_force += 1;
                            *by_list.entry(in_force.version.record.list()).or_default() += 1;
                            if let Some(s) = &in_force.version.record.subject {
                                let key = if s.uscc.is_empty() {
                                    &s.id_number
                                } else {
                                    &s.uscc
                                };
                                let mut h = DefaultHasher::new();
                                key.hash(&mut h);
                                subjects.insert(h.finish());
                            }
                        }
                        Some(Err(_)) => counts.excluded += 1,
                    }
                }
                seq += leaves.len() as u64;
            }
        }
        counts.subjects = subjects.len() as u64;
        Ok(ViewTally { counts, by_list })
    }
}

#[cfg(test)]
mod tests {
    use credex_core::date::{FixedClock, parse_date};

    use super::super::harness::{company, dishonest_debtor, test_engine};
    use super::super::publish;
    use super::*;

    #[tokio::test]
    async fn a_view_slow_to_count_is_answered_at_once_with_the_last_count() {
        let t = test_engine(
            "test",
            super::super::rules_tests::capitals(),
            FixedClock::at_date(parse_date("2026-05-20").expect("date")),
        );
        let engine = &t.engine;
        let (queue, _task) = publish::start(engine.clone());
        let record = |id: &str| dishonest_debtor(id, company("91430100MA4L00003"), "430100");
        queue.publish(vec![record("r1")]).await.expect("published");
        let first = engine
            .view_counts_within(VIEW_COUNT_BUDGET)
            .await
            .expect("counted")
            .expect("a count");
        assert_eq!(
            (first.counts.records_in_force, first.counts.current),
            (1, true)
        );
        // As if that count had taken longer than the budget (a view of millions of records).
        engine
            .counter
            .state
            .lock()
            .expect("lock")
            .last
            .as_mut()
            .expect("the count")
            .took = VIEW_COUNT_BUDGET + Duration::from_secs(1);

        queue.publish(vec![record("r2")]).await.expect("published");
        // This view counts in a millisecond, but a caller is not made to wait for it: the last
        // count, marked not current, and a new count started behind it.
        let stale = engine
            .view_counts_within(VIEW_COUNT_BUDGET)
            .await
            .expect("answered")
            .expect("the last count");
        assert_eq!(
            (stale.counts.records_in_force, stale.counts.current),
            (1, false)
        );
        assert_eq!(stale.counts.counted_at, first.counts.counted_at);
        // The count started behind it finishes, and took a millisecond: waited for again.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = engine
                .view_counts_within(VIEW_COUNT_BUDGET)
                .await
                .expect("answered")
                .expect("a count");
            if now.counts.current {
                assert_eq!(now.counts.records_in_force, 2);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the count never finished"
            );
            tokio::task::yield_now().await;
        }
    }
}
