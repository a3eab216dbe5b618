//! The view change feed behind View.Watch, and the cross-version rules every new version
//! passes (fixed identity, final revocation).
//!
//! Each committed batch records, in the same atomic write, how every new record version moved
//! the view *today*: a record that entered it, left it (and why) or is in force at another
//! version. A version's status takes effect on its own `effective_on`, so a repair published
//! today for next month changes nothing today. Instead every date on which a version can change
//! a record's standing (its status date, its first day of publication, the day after its
//! publication ends) is kept in the store's due-date index, and the date tick
//! ([`Engine::tick`], run by [`run_ticks`] from 00:00 UTC+8) evaluates exactly those records on
//! the new day and records their changes, with the reason and the date they took effect.
//! Downstream systems resume from a change seq, so a restart of either side loses nothing; a
//! node that was down over midnight catches up on the due dates it missed when it starts, day
//! by day: each change is dated the day it took effect, as on the nodes that were up.
//!
//! A due date the view has passed is kept as *passed* for [`PASSED_KEPT_DAYS`], with the day
//! the view was last evaluated on. If the clock moves back over days the view had reached (a
//! clock set wrong, then put right), the tick steps the view back: every record with a passed
//! date after the new today is evaluated again, its change from the day the view was on to
//! today is recorded (a sanction a future-dated repair lifted too early is back in force, with
//! its change), and those dates are due again, so each takes effect once more on its own day.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use credex_core::date::{
    Date, date_of_day_number, day_number, days_before, format_date, parse_date,
};
use credex_core::history;
use credex_core::ident::{SubjectId, mask_id_number};
use credex_core::pb;
use credex_core::view::{self, Excluded, InForce, RecordVersion};
use credex_store::{Standing, WriteBatch};
use tokio::sync::watch;
use tracing::warn;

use super::{Engine, EngineError, counts};

/// How often the tick looks at the clock: a day's changes go out within this of 00:00 UTC+8
/// (and within this of a test moving the injected clock).
pub const TICK_INTERVAL: Duration = Duration::from_millis(200);
/// Most due records one tick batch handles; the tick runs batches until none are due.
const TICK_BATCH: usize = 1024;
/// Days a passed due date is kept (while it is less than this many days before today): how far
/// back the view can be stepped when the clock moves back. A clock moved back further leaves
/// the older dates' changes as they were (logged).
pub const PASSED_KEPT_DAYS: u64 = 31;

/// Tracks, within one batch, each touched record's versions (from the store, then the batch)
/// so that every new version is checked against the one before it, its change to today's view
/// is recorded, and, when the batch is complete ([`ChangeTracker::finish`]), each touched
/// record's standing is given to the store for the view's counts (`counts`).
pub(crate) struct ChangeTracker<'a> {
    engine: &'a Engine,
    today: Date,
    /// Every version held of each touched record, invalid ones included.
    histories: HashMap<(String, String), Vec<RecordVersion>>,
    /// The touched records, in the order first touched.
    touched: Vec<(String, String)>,
    /// Standings already evaluated by [`ChangeTracker::observe`] (of records with no invalid
    /// version, whose evaluation for the counts is the change feed's).
    standings: HashMap<(String, String), Standing>,
}

impl<'a> ChangeTracker<'a> {
    pub(crate) fn new(engine: &'a Engine) -> Self {
        ChangeTracker {
            engine,
            today: engine.view_today(),
            histories: HashMap::new(),
            touched: Vec::new(),
            standings: HashMap::new(),
        }
    }

    /// The versions held of a record, oldest first (batch-local once read).
    fn history(
        &mut self,
        origin: &str,
        record: &pb::CreditRecord,
    ) -> Result<&mut Vec<RecordVersion>, EngineError> {
        let key = (origin.to_owned(), record.record_id.clone());
        if !self.histories.contains_key(&key) {
            // A first version has no predecessor to read (the common case of a catch-up):
            // not even the index is looked at.
            let held = match (record.version > 1)
                .then(|| self.engine.store.record(origin, &record.record_id))
                .transpose()?
                .flatten()
            {
                Some(loc) => self
                    .engine
                    .record_history(origin, &record.record_id, loc, 0, None)?,
                _ => Vec::new(),
            };
            self.histories.insert(key.clone(), held);
            self.touched.push(key.clone());
        }
        Ok(self.histories.get_mut(&key).expect("inserted above"))
    }

    /// The latest valid version held of a record (store, then this batch), the one a new
    /// version must follow.
    pub(crate) fn previous(
        &mut self,
        origin: &str,
        record: &pb::CreditRecord,
    ) -> Result<Option<Arc<pb::CreditRecord>>, EngineError> {
        let history = self.history(origin, record)?;
        Ok(history
            .iter()
            .filter(|v| v.invalid.is_none())
            .max_by_key(|v| v.record.version)
            .map(|v| v.record.clone()))
    }

    /// Notes a new valid version of a record, appended at `seq`, and pushes the change it makes
    /// to today's view and its future due dates. If it may not follow the version before it
    /// ([`history::check_successor`]), nothing is noted and the reason is returned: the caller
    /// refuses it (publish) or lists it invalid and leaves it out of the indexes (receive path).
    pub(crate) fn observe(
        &mut self,
        batch: &mut WriteBatch,
        origin: &str,
        seq: u64,
        logged_at: i64,
        record: &Arc<pb::CreditRecord>,
        subject: Option<&SubjectId>,
    ) -> Result<Option<String>, EngineError> {
        if let Some(previous) = self.previous(origin, record)?
            && let Err(e) = history::check_successor(&previous, record)
        {
            return Ok(Some(e.to_string()));
        }
        let (engine, today) = (self.engine, self.today);
        let version = self.version(origin, seq, logged_at, record, None);
        let history = self.history(origin, record)?;
        let before = evaluate(history, engine, today);
        history.push(version);
        let after = evaluate(history, engine, today);
        let key = (origin.to_owned(), record.record_id.clone());
        if history.iter().all(|v| v.invalid.is_none()) {
            self.standings.insert(key, counts::standing(&after));
        } else {
            self.standings.remove(&key);
        }
        let kept_after = kept_after(today);
        for date in history::turning_dates(record) {
            let day = day_number(date);
            if date > today {
                batch.schedule(origin, &record.record_id, day);
            } else {
                // Evaluated as passed: due again if the clock moves back before it.
                pass(batch, origin, &record.record_id, day, kept_after);
            }
        }
        let subject = subject.map(SubjectId::masked).unwrap_or_default();
        if let Some(change) = change(&before, &after, &subject, None, today) {
            batch.push_change(prost::Message::encode_to_vec(&change));
        }
        Ok(None)
    }

    /// Notes a version indexed invalid (it failed validation; `reason`), appended at `seq`: it
    /// changes no view, but a record whose latest version is invalid is counted excluded.
    pub(crate) fn observe_invalid(
        &mut self,
        origin: &str,
        seq: u64,
        logged_at: i64,
        record: &Arc<pb::CreditRecord>,
        reason: &str,
    ) -> Result<(), EngineError> {
        let version = self.version(origin, seq, logged_at, record, Some(reason));
        self.history(origin, record)?.push(version);
        self.standings
            .remove(&(origin.to_owned(), record.record_id.clone()));
        Ok(())
    }

    fn version(
        &self,
        origin: &str,
        seq: u64,
        logged_at: i64,
        record: &Arc<pb::CreditRecord>,
        invalid: Option<&str>,
    ) -> RecordVersion {
        RecordVersion {
            origin: origin.to_owned(),
            seq,
            record: Arc::clone(record),
            checkpoint_size: 0,
            logged_at,
            invalid: invalid.map(str::to_owned),
            unknown_category: !self.engine.catalogue.is_known(&record.category),
            legacy_code: self.engine.legacy_code(record),
        }
    }

    /// Gives the store the standing of every record the batch touched, for the view's counts;
    /// call after the batch's [`WriteBatch::index_record`]s.
    pub(crate) fn finish(self, batch: &mut WriteBatch) {
        for key in &self.touched {
            let history = &self.histories[key];
            if history.is_empty() {
                continue; // Refused, never indexed.
            }
            let standing = match self.standings.get(key) {
                Some(standing) => *standing,
                None => counts::standing(&counts::evaluate_all(history, self.engine, self.today)),
            };
            batch.set_standing(&key.0, &key.1, standing);
        }
    }
}

/// The day number before which passed due dates are forgotten on `today`.
fn kept_after(today: Date) -> u32 {
    days_before(today, PASSED_KEPT_DAYS).map_or(0, day_number)
}

/// Notes that the view has passed `day` for a record: kept as passed (for a step back) unless
/// older than `kept_after`.
fn pass(batch: &mut WriteBatch, origin: &str, record_id: &str, day: u32, kept_after: u32) {
    if day > kept_after {
        batch.mark_passed(origin, record_id, day);
    }
}

/// The days, as day numbers, on which a record's valid versions may turn its standing.
fn turning_days(history: &[RecordVersion]) -> impl Iterator<Item = u32> + '_ {
    history
        .iter()
        .filter(|v| v.invalid.is_none())
        .flat_map(|v| history::turning_dates(&v.record))
        .map(day_number)
}

/// Evaluates a record on `on` from its valid versions: how the change feed sees it.
fn evaluate(
    history: &[RecordVersion],
    engine: &Engine,
    on: Date,
) -> Option<Result<InForce, Excluded>> {
    let refs: Vec<&RecordVersion> = history.iter().filter(|v| v.invalid.is_none()).collect();
    view::evaluate_record(&refs, &engine.policy, on)
}

/// The change between two evaluations of one record, if any. `on` is the day the change took
/// effect when the caller knows it (the tick); otherwise it is the status date of the version
/// that now holds if that is a past date (a backdated repair), else `today`.
fn change(
    before: &Option<Result<InForce, Excluded>>,
    after: &Option<Result<InForce, Excluded>>,
    subject: &str,
    on: Option<Date>,
    today: Date,
) -> Option<pb::ViewChange> {
    use pb::view_change::Kind;
    let was = match before {
        Some(Ok(f)) => Some(f.version.record.version),
        _ => None,
    };
    let (kind, reason, held) = match (after, was) {
        (Some(Ok(now)), None) => (
            Kind::Entered,
            pb::ExclusionReason::Unspecified,
            &now.version,
        ),
        (Some(Ok(now)), Some(was)) if was != now.version.record.version => (
            Kind::Updated,
            pb::ExclusionReason::Unspecified,
            &now.version,
        ),
        (Some(Err(out)), Some(_)) => (Kind::Left, out.reason.to_pb(), &out.version),
        _ => return None,
    };
    let effective = on.unwrap_or_else(|| {
        held.record
            .status
            .as_ref()
            .and_then(|s| parse_date(&s.effective_on).ok())
            .filter(|d| *d <= today)
            .unwrap_or(today)
    });
    Some(pb::ViewChange {
        change_seq: 0,
        subject_id: subject.to_owned(),
        origin: held.origin.clone(),
        record_id: held.record.record_id.clone(),
        version: held.record.version,
        kind: kind as i32,
        reason: reason as i32,
        effective_on: format_date(effective),
    })
}

/// The masked identifier a record's changes are reported under.
fn subject_of(engine: &Engine, record: &pb::CreditRecord) -> String {
    let Some(subject) = &record.subject else {
        return String::new();
    };
    let key = if subject.uscc.is_empty() {
        &subject.id_number
    } else {
        &subject.uscc
    };
    SubjectId::parse(key, &engine.rules.legacy_uscc_allow_list)
        .map(|s| s.masked())
        .unwrap_or_else(|_| mask_id_number(key))
}

impl Engine {
    /// Up to `limit` changes from the store's change `from` on, with their change seqs filled
    /// in. Change seqs start at 1 (store change n is change seq n + 1), so that 0 can mean
    /// "from now on" in View.Watch.
    pub fn changes(&self, from: u64, limit: usize) -> Result<Vec<pb::ViewChange>, EngineError> {
        self.store
            .changes(from, limit)?
            .into_iter()
            .map(|(seq, bytes)| {
                let mut change: pb::ViewChange = prost::Message::decode(bytes.as_slice())
                    .map_err(|e| EngineError::Internal(format!("stored view change {seq}: {e}")))?;
                change.change_seq = seq + 1;
                Ok(change)
            })
            .collect()
    }

    /// The date tick: evaluates every record with a due date on or before today, records the
    /// changes each made to the view (evaluated the day before its earliest due date, then on
    /// each of its due dates up to today, each change dated its own day), and moves all its due
    /// dates up to today to the passed ones, one atomic batch at a time. Returns how many
    /// changes it recorded. Cheap when nothing is due: one range read.
    pub async fn tick(&self) -> Result<usize, EngineError> {
        use std::sync::atomic::Ordering;
        let today = self.view_today();
        let day = day_number(today);
        // Within a settled day nothing passed lies after today (dates are passed only on or
        // before the day they are passed on): the step back is looked for when the day changes.
        let new_day = self.settled_day.load(Ordering::Acquire) != day;
        let mut recorded = if new_day {
            self.step_back(today).await?
        } else {
            0
        };
        loop {
            let due = self.store.due(day, TICK_BATCH)?;
            if due.is_empty() {
                break;
            }
            let writer = self.view_lock.lock().await;
            // Re-read under the lock: a publish may have scheduled more meanwhile.
            let due = self.store.due(day, TICK_BATCH)?;
            // Each due record, with its earliest due date.
            let mut records: BTreeMap<(String, String), u32> = BTreeMap::new();
            let mut batch = WriteBatch::new();
            // With the dates it marks passed: the view's day is never behind one of them, which
            // a step back evaluates from.
            batch.set_view_day(day);
            let kept_after = kept_after(today);
            for (day, origin, record_id) in &due {
                batch.unschedule(origin, record_id, *day);
                pass(&mut batch, origin, record_id, *day, kept_after);
                let first = records
                    .entry((origin.clone(), record_id.clone()))
                    .or_insert(*day);
                *first = (*first).min(*day);
            }
            let mut changes = Vec::new();
            for ((origin, record_id), first) in records {
                let Some(loc) = self.store.record(&origin, &record_id)? else {
                    continue;
                };
                let history = self.record_history(&origin, &record_id, loc, 0, None)?;
                // Its later due dates up to today are handled here too, not by a later batch
                // (one past this batch's end), which would evaluate it again from the eve of
                // one of them while the feed already shows it as of today.
                let mut days: Vec<u32> = turning_days(&history)
                    .filter(|d| (first..=day).contains(d))
                    .collect();
                for &d in days.iter().filter(|d| **d > first) {
                    batch.unschedule(&origin, &record_id, d);
                    pass(&mut batch, &origin, &record_id, d, kept_after);
                }
                // From the eve of its earliest due date, day by day: a node that was down over
                // several of its dates records each change on its own day, as the nodes that
                // ticked on each did.
                days.push(day);
                days.sort_unstable();
                days.dedup();
                let days = days.into_iter().filter_map(date_of_day_number).collect();
                let eve = date_of_day_number(first).and_then(|first| first.pred_opt());
                let steps = eve.map(|eve| (eve, days));
                changes.extend(
                    self.evaluate_again(&mut batch, &origin, &record_id, &history, steps, today),
                );
            }
            recorded += push_changes(&mut batch, changes);
            self.apply(batch).await?;
            self.flush_durable().await?;
            drop(writer);
            self.announce();
        }
        if new_day {
            self.settle_view_day(today).await?;
            self.settled_day.store(day, Ordering::Release);
        }
        Ok(recorded)
    }

    /// Steps the view back to `today` if the clock moved back over days it had reached: each
    /// record with a passed due date after today is evaluated on today, its change from the day
    /// the view was on is recorded, and its due dates after today are due again. Returns how
    /// many changes it recorded.
    async fn step_back(&self, today: Date) -> Result<usize, EngineError> {
        let day = day_number(today);
        let mut recorded = 0;
        // The day the change feed shows, read at the first batch and kept until the step back
        // is done (the view's day is written only then, so a crash in it resumes from the
        // same day), and never before a date the view has passed.
        let mut from = None;
        loop {
            if self.store.passed_after(day, 1)?.is_empty() {
                return Ok(recorded);
            }
            let writer = self.view_lock.lock().await;
            let passed = self.store.passed_after(day, TICK_BATCH)?;
            let from = match from {
                Some(from) => from,
                None => {
                    let was = self
                        .store
                        .view_day()?
                        .max(passed.iter().map(|(d, ..)| *d).max())
                        .and_then(date_of_day_number)
                        .unwrap_or(today);
                    self.note_step_back(was, today);
                    *from.insert(was)
                }
            };
            let mut records: BTreeMap<(&str, &str), Vec<u32>> = BTreeMap::new();
            for (d, origin, record_id) in &passed {
                records
                    .entry((origin.as_str(), record_id.as_str()))
                    .or_default()
                    .push(*d);
            }
            let mut batch = WriteBatch::new();
            let mut changes = Vec::new();
            for ((origin, record_id), passed) in records {
                let history = match self.store.record(origin, record_id)? {
                    Some(loc) => self.record_history(origin, record_id, loc, 0, None)?,
                    None => Vec::new(),
                };
                // Every date after today on which the record may turn is due again (its
                // passed entries among them, in this batch or not yet read).
                for d in turning_days(&history).filter(|d| *d > day).chain(passed) {
                    batch.unmark_passed(origin, record_id, d);
                    batch.schedule(origin, record_id, d);
                }
                if history.is_empty() {
                    continue;
                }
                changes.extend(self.evaluate_again(
                    &mut batch,
                    origin,
                    record_id,
                    &history,
                    Some((from, vec![today])),
                    today,
                ));
            }
            recorded += push_changes(&mut batch, changes);
            self.apply(batch).await?;
            self.flush_durable().await?;
            drop(writer);
            self.announce();
        }
    }

    /// Counts and logs a step back of the view from `from` to `today`.
    fn note_step_back(&self, from: Date, today: Date) {
        self.metrics.count_step_back();
        warn!(
            from = %format_date(from),
            to = %format_date(today),
            "the clock moved back over days the view had reached: stepping the view back"
        );
        if days_before(from, PASSED_KEPT_DAYS).is_some_and(|kept| kept > today) {
            warn!(
                from = %format_date(from),
                to = %format_date(today),
                kept_days = PASSED_KEPT_DAYS,
                "the clock moved back further than passed due dates are kept: changes dated \
                 more than that before the view's day stay as they were"
            );
        }
    }

    /// Adds to `batch` a record's standing on `today` from its `history`, for the counts, and
    /// returns, given `steps` = (the day the change feed last evaluated it on, the days to
    /// evaluate it on next, in order, the last of them today), each change from one of those
    /// days to the next, taking effect on the later, for the caller to record.
    fn evaluate_again(
        &self,
        batch: &mut WriteBatch,
        origin: &str,
        record_id: &str,
        history: &[RecordVersion],
        steps: Option<(Date, Vec<Date>)>,
        today: Date,
    ) -> Vec<pb::ViewChange> {
        let standing = counts::standing(&counts::evaluate_all(history, self, today));
        batch.set_standing(origin, record_id, standing);
        let Some((was, days)) = steps else {
            return Vec::new();
        };
        let subject = latest_subject(self, history);
        let mut before = evaluate(history, self, was);
        let mut changes = Vec::new();
        for on in days {
            let after = evaluate(history, self, on);
            changes.extend(change(&before, &after, &subject, Some(on), today));
            before = after;
        }
        changes
    }

    /// Records `today` as the day the view is on, once the tick has handled it, and forgets
    /// passed due dates older than [`PASSED_KEPT_DAYS`]. Once a day.
    async fn settle_view_day(&self, today: Date) -> Result<(), EngineError> {
        let mut batch = WriteBatch::new();
        batch.set_view_day(day_number(today));
        loop {
            let old = self.store.passed_until(kept_after(today), TICK_BATCH)?;
            for (d, origin, record_id) in &old {
                batch.unmark_passed(origin, record_id, *d);
            }
            self.apply(std::mem::replace(&mut batch, WriteBatch::new()))
                .await?;
            if old.len() < TICK_BATCH {
                return Ok(());
            }
        }
    }

    /// The day the view is on: today (UTC+8) by this node's clock, or by its witnesses' while
    /// it reads more than [`super::publish::CLOCK_AHEAD_MAX`] ahead of every witness's (then
    /// the latest's day; publishing is refused too) or behind every witness's (then the
    /// earliest's), two witnesses at least (`Engine::witness_clocks`): one lying witness alone
    /// moves nothing. Dates are law: a clock that jumped past midnight would otherwise end
    /// listings and start repairs in this city's view, and for the systems that sanction from
    /// it, before their day came anywhere else; one a day behind would hold a repaired subject
    /// a day longer. The query date, the date tick and the changes each batch records all take
    /// it.
    pub fn view_today(&self) -> Date {
        let time = self
            .witness_clocks()
            .map_or_else(|| self.clock.now_millis(), |j| j.time());
        credex_core::date::date_of_millis(time)
    }

    /// Whether the view is on `today`: no due date on or before it is waiting for the tick,
    /// and no passed one after it (the clock moved back) waiting to be stepped back over.
    pub(crate) fn view_is_on(&self, today: Date) -> Result<bool, EngineError> {
        let day = day_number(today);
        Ok(self.store.due(day, 1)?.is_empty() && self.store.passed_after(day, 1)?.is_empty())
    }
}

/// Records `changes` in `batch` in the order of their dates (each record's already are, and
/// records are in key order within a day), as a node that ticked on each day recorded them.
/// Returns how many.
fn push_changes(batch: &mut WriteBatch, mut changes: Vec<pb::ViewChange>) -> usize {
    changes.sort_by(|a, b| a.effective_on.cmp(&b.effective_on));
    for change in &changes {
        batch.push_change(prost::Message::encode_to_vec(change));
    }
    changes.len()
}

/// The masked subject of a record's latest valid version, as its changes are reported.
fn latest_subject(engine: &Engine, history: &[RecordVersion]) -> String {
    history
        .iter()
        .rev()
        .find(|v| v.invalid.is_none())
        .map(|v| subject_of(engine, &v.record))
        .unwrap_or_default()
}

/// Runs [`Engine::tick`] at start and whenever the date may have turned (every
/// [`TICK_INTERVAL`]; the tick itself reads one key range when nothing is due) until `stop`.
pub async fn run_ticks(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    // The view's day may come from the witnesses' clocks (`Engine::view_today`): a node whose
    // clock was wrong when it started does not tick to that clock's day first.
    engine.wait_for_witnesses().await;
    loop {
        if let Err(e) = engine.tick().await {
            warn!(error = %e, "date tick failed");
        }
        tokio::select! {
            () = tokio::time::sleep(TICK_INTERVAL) => {}
            () = crate::sync::stopped(&mut stop) => return,
        }
    }
}
