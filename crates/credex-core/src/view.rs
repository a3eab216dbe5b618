//! The mutually recognised view as a pure function of records, policy and date.
//!
//! Per subject, the view on a date D holds every recognised record in force on D: the version
//! that holds on D (valid time, see [`crate::history`]: each status from its own
//! `effective_on`) has status ACTIVE or UNDER_OBJECTION (flagged) and D within its
//! `[starts_on, ends_on]`, both ends inclusive. Versions listed invalid play no part. Every
//! other record is listed as excluded with its reason and the version that holds, so a
//! lookup can say why a record it holds is not applied. Transaction time is the caller's:
//! "what the view showed at T" is this function over the versions logged by T.
//! Nothing here reads a clock or a store:
//! the same versions, policy and date give the same view whether it is rebuilt from the logs
//! or maintained entry by entry (DESIGN.md, principle 5).

use crate::date::{Date, parse_date};
use crate::history;
use crate::pb;
use crate::pb::{ListKind, StatusKind};
use crate::policy::RecognitionPolicy;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One accepted entry's record version, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordVersion {
    pub origin: String,
    pub seq: u64,
    /// Shared, not copied: a version is evaluated, kept in a batch's histories and reported
    /// in changes, and a record is some twenty allocations to clone.
    pub record: Arc<pb::CreditRecord>,
    pub checkpoint_size: u64,
    /// `Entry.logged_at`: when the origin logged this version, Unix ms (transaction time).
    pub logged_at: i64,
    /// Set when the record failed this node's validation (appended but kept out of the view).
    pub invalid: Option<String>,
    pub unknown_category: bool,
    /// A USCC in the record was admitted only by the consortium's legacy allow-list (flagged).
    pub legacy_code: bool,
}

impl RecordVersion {
    /// Where the version came from, as the schema reports it.
    pub fn provenance(&self) -> pb::Provenance {
        pb::Provenance {
            origin: self.origin.clone(),
            seq: self.seq,
            checkpoint_size: self.checkpoint_size,
        }
    }

    /// The record's identity across versions: `(origin, record_id)`.
    pub fn key(&self) -> (&str, &str) {
        (&self.origin, &self.record.record_id)
    }

    /// How strongly this version claims to be its record's latest: the highest version wins;
    /// among equal versions (only an equivocating origin logs one twice) the lowest seq, since
    /// every node sees that one first; for the same entry, the newest checkpoint covering it.
    fn precedence(&self) -> (u32, Reverse<u64>, u64) {
        (self.record.version, Reverse(self.seq), self.checkpoint_size)
    }
}

/// Why a record's latest version is not in the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exclusion {
    Repaired,
    Revoked,
    Expired,
    NotYetPublished,
    NotRecognised,
    UnknownCategory,
    Invalid,
}

impl Exclusion {
    /// A stable snake_case name, for metrics labels and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Repaired => "repaired",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetPublished => "not_yet_published",
            Self::NotRecognised => "not_recognised",
            Self::UnknownCategory => "unknown_category",
            Self::Invalid => "invalid",
        }
    }

    pub fn to_pb(self) -> pb::ExclusionReason {
        match self {
            Self::Repaired => pb::ExclusionReason::Repaired,
            Self::Revoked => pb::ExclusionReason::Revoked,
            Self::Expired => pb::ExclusionReason::Expired,
            Self::NotYetPublished => pb::ExclusionReason::NotYetPublished,
            Self::NotRecognised => pb::ExclusionReason::NotRecognised,
            Self::UnknownCategory => pb::ExclusionReason::UnknownCategory,
            Self::Invalid => pb::ExclusionReason::Invalid,
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A latest version in force.
#[derive(Debug, Clone, PartialEq)]
pub struct InForce {
    pub version: RecordVersion,
    /// Status UNDER_OBJECTION (异议处理中): applied, but flagged.
    pub under_objection: bool,
}

impl InForce {
    pub fn to_pb(&self) -> pb::ViewRecord {
        pb::ViewRecord {
            record: Some(pb::CreditRecord::clone(&self.version.record)),
            provenance: Some(self.version.provenance()),
            under_objection: self.under_objection,
            unknown_category: self.version.unknown_category,
            legacy_code: self.version.legacy_code,
        }
    }
}

/// A latest version kept out of the view, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Excluded {
    pub version: RecordVersion,
    pub reason: Exclusion,
    /// For people: the repair or revocation reason, the dates, the validation error.
    pub detail: String,
}

impl Excluded {
    pub fn to_pb(&self) -> pb::ExcludedRecord {
        let record = &self.version.record;
        pb::ExcludedRecord {
            record_id: record.record_id.clone(),
            version: record.version,
            provenance: Some(self.version.provenance()),
            reason: self.reason.to_pb().into(),
            detail: self.detail.clone(),
            list: record.list,
            category: record.category.clone(),
            legacy_code: self.version.legacy_code,
        }
    }
}

/// One subject's view.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubjectView {
    /// Sorted by (origin, record_id).
    pub in_force: Vec<InForce>,
    /// Sorted by (origin, record_id).
    pub excluded: Vec<Excluded>,
}

/// Decides one latest version: in force (with flags) or excluded and why.
///
/// Checks run in this order, so the reason given is the most fundamental one: invalid, not
/// recognised, unknown category (shown, never rejected: the peer may run a newer catalogue),
/// revoked, repaired, not yet published (today < starts_on), expired (today > ends_on).
// Both outcomes carry the whole version and are the same size: `Err` is a verdict, not a
// failure, and boxing one side would only add an allocation per excluded record.
#[allow(clippy::result_large_err)]
pub fn evaluate_version(
    v: &RecordVersion,
    policy: &RecognitionPolicy,
    today: Date,
) -> Result<InForce, Excluded> {
    let exclude = |reason, detail: String| {
        Err(Excluded {
            version: v.clone(),
            reason,
            detail,
        })
    };
    let record = &v.record;
    if let Some(problem) = &v.invalid {
        return exclude(Exclusion::Invalid, problem.clone());
    }
    let list = record.list();
    if !policy.recognises(&v.origin, list, &record.category) {
        return exclude(
            Exclusion::NotRecognised,
            format!(
                "this node does not recognise {} records of category {:?} from {}",
                list_name(list),
                record.category,
                v.origin
            ),
        );
    }
    if v.unknown_category {
        return exclude(
            Exclusion::UnknownCategory,
            format!(
                "category {:?} is not in this node's catalogue",
                record.category
            ),
        );
    }
    let status = record.status.clone().unwrap_or_default();
    match status.kind() {
        StatusKind::Revoked => {
            return exclude(Exclusion::Revoked, status_detail("revoked", &status));
        }
        StatusKind::Repaired => {
            return exclude(Exclusion::Repaired, status_detail("repaired", &status));
        }
        StatusKind::Active | StatusKind::UnderObjection => {}
        // Validation refuses an unspecified status; a version that carries one anyway has no
        // meaning this node could apply.
        StatusKind::Unspecified => {
            return exclude(Exclusion::Invalid, "status.kind is unspecified".to_owned());
        }
    }
    let Some(publication) = &record.publication else {
        return exclude(Exclusion::Invalid, "publication is missing".to_owned());
    };
    let starts_on = match parse_date(&publication.starts_on) {
        Ok(date) => date,
        Err(e) => return exclude(Exclusion::Invalid, format!("publication.starts_on: {e}")),
    };
    let ends_on = match parse_date(&publication.ends_on) {
        Ok(date) => date,
        Err(e) => return exclude(Exclusion::Invalid, format!("publication.ends_on: {e}")),
    };
    if today < starts_on {
        return exclude(
            Exclusion::NotYetPublished,
            format!("publication starts on {}", publication.starts_on),
        );
    }
    if today > ends_on {
        return exclude(
            Exclusion::Expired,
            format!("publication ended on {}", publication.ends_on),
        );
    }
    Ok(InForce {
        version: v.clone(),
        under_objection: status.kind() == StatusKind::UnderObjection,
    })
}

fn list_name(list: ListKind) -> &'static str {
    match list {
        ListKind::Unspecified => "unspecified-list",
        ListKind::Red => "red-list",
        ListKind::Black => "black-list",
        ListKind::Watch => "watch-list",
        ListKind::Penalty => "penalty",
    }
}

fn status_detail(what: &str, status: &pb::RecordStatus) -> String {
    let mut detail = what.to_owned();
    if !status.effective_on.is_empty() {
        detail.push_str(" on ");
        detail.push_str(&status.effective_on);
    }
    if !status.reason.is_empty() {
        detail.push_str(": ");
        detail.push_str(&status.reason);
    }
    detail
}

/// One record's versions (any order, duplicates allowed) evaluated on `on`: the valid version
/// that holds on `on` ([`history::in_force_version`]), through [`evaluate_version`]. Among
/// equal version numbers the lowest seq counts (they are identical unless the origin
/// equivocated). With no valid version, the latest one is reported (invalid). `None` only for
/// no versions at all.
pub fn evaluate_record(
    versions: &[&RecordVersion],
    policy: &RecognitionPolicy,
    on: Date,
) -> Option<Result<InForce, Excluded>> {
    let mut by_number: BTreeMap<u32, &RecordVersion> = BTreeMap::new();
    for &v in versions {
        by_number
            .entry(v.record.version)
            .and_modify(|held| {
                if v.precedence() > held.precedence() {
                    *held = v;
                }
            })
            .or_insert(v);
    }
    let valid: Vec<&RecordVersion> = by_number
        .values()
        .copied()
        .filter(|v| v.invalid.is_none())
        .collect();
    let records: Vec<&pb::CreditRecord> = valid.iter().map(|v| &*v.record).collect();
    let held = match history::in_force_version(&records, on) {
        Some(i) => valid[i],
        None => *by_number.values().next_back()?,
    };
    Some(evaluate_version(held, policy, on))
}

/// Every (origin, record_id) among `versions`, evaluated on `on` from its whole history
/// ([`evaluate_record`]).
pub fn subject_view<'a>(
    versions: impl IntoIterator<Item = &'a RecordVersion>,
    policy: &RecognitionPolicy,
    on: Date,
) -> SubjectView {
    let mut records: BTreeMap<(&str, &str), Vec<&RecordVersion>> = BTreeMap::new();
    for v in versions {
        records.entry(v.key()).or_default().push(v);
    }
    let mut view = SubjectView::default();
    // The map yields keys in order, so both lists come out sorted.
    for history in records.values() {
        match evaluate_record(history, policy, on) {
            Some(Ok(in_force)) => view.in_force.push(in_force),
            Some(Err(excluded)) => view.excluded.push(excluded),
            None => {}
        }
    }
    view
}

/// Latest-version selection alone, for the store's record index. Sorted by (origin, record_id);
/// independent of the order of `versions` and of duplicates in it.
pub fn latest_versions<'a>(
    versions: impl IntoIterator<Item = &'a RecordVersion>,
) -> Vec<&'a RecordVersion> {
    let mut latest: BTreeMap<(&str, &str), &RecordVersion> = BTreeMap::new();
    for v in versions {
        latest
            .entry(v.key())
            .and_modify(|held| {
                if v.precedence() > held.precedence() {
                    *held = v;
                }
            })
            .or_insert(v);
    }
    latest.into_values().collect()
}

/// How a record's place in a subject's view changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewChangeKind {
    /// Now in force, and was not.
    Entered,
    /// Was in force, and is not, for this reason.
    Left(Exclusion),
    /// In force before and after, at another version: usually a newer one; an older one when
    /// it arrives after a newer version whose status does not hold yet.
    Updated,
}

/// One change to a subject's view, for View.Watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewChange {
    pub origin: String,
    pub record_id: String,
    /// The version the change is about: the new one, or for [`ViewChangeKind::Left`] the one
    /// that took the record out.
    pub version: u32,
    pub kind: ViewChangeKind,
}

impl ViewChange {
    /// The schema's message; the change sequence number and subject id are the node's.
    pub fn to_pb(&self, change_seq: u64, subject_id: &str) -> pb::ViewChange {
        let (kind, reason) = match self.kind {
            ViewChangeKind::Entered => (
                pb::view_change::Kind::Entered,
                pb::ExclusionReason::Unspecified,
            ),
            ViewChangeKind::Left(why) => (pb::view_change::Kind::Left, why.to_pb()),
            ViewChangeKind::Updated => (
                pb::view_change::Kind::Updated,
                pb::ExclusionReason::Unspecified,
            ),
        };
        pb::ViewChange {
            change_seq,
            subject_id: subject_id.to_owned(),
            origin: self.origin.clone(),
            record_id: self.record_id.clone(),
            version: self.version,
            kind: kind.into(),
            reason: reason.into(),
            effective_on: String::new(),
        }
    }
}

/// The changes between two views of one subject, sorted by (origin, record_id): records that
/// entered, left (with the reason from `after`) or were updated (same record, newer version).
///
/// A subject's versions only accumulate, so every record of `before` is normally in `after`,
/// in force or excluded. One that is missing altogether (the caller stopped counting it as
/// this subject's) is reported as left, not recognised: downstream systems must still learn
/// that it no longer applies.
pub fn diff(before: &SubjectView, after: &SubjectView) -> Vec<ViewChange> {
    let before_in_force: BTreeMap<(&str, &str), &InForce> = before
        .in_force
        .iter()
        .map(|f| (f.version.key(), f))
        .collect();
    let after_in_force: BTreeMap<(&str, &str), &InForce> = after
        .in_force
        .iter()
        .map(|f| (f.version.key(), f))
        .collect();
    let after_excluded: BTreeMap<(&str, &str), &Excluded> = after
        .excluded
        .iter()
        .map(|e| (e.version.key(), e))
        .collect();

    let change = |(origin, record_id): (&str, &str), version, kind| ViewChange {
        origin: origin.to_owned(),
        record_id: record_id.to_owned(),
        version,
        kind,
    };
    let mut changes = Vec::new();
    for (&key, now) in &after_in_force {
        let version = now.version.record.version;
        match before_in_force.get(&key) {
            None => changes.push(change(key, version, ViewChangeKind::Entered)),
            Some(was) if was.version.record.version != version => {
                changes.push(change(key, version, ViewChangeKind::Updated));
            }
            Some(_) => {}
        }
    }
    for (&key, was) in &before_in_force {
        if after_in_force.contains_key(&key) {
            continue;
        }
        let left = match after_excluded.get(&key) {
            Some(excluded) => change(
                key,
                excluded.version.record.version,
                ViewChangeKind::Left(excluded.reason),
            ),
            None => change(
                key,
                was.version.record.version,
                ViewChangeKind::Left(Exclusion::NotRecognised),
            ),
        };
        changes.push(left);
    }
    changes.sort_by(|a, b| (&a.origin, &a.record_id).cmp(&(&b.origin, &b.record_id)));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::{Clock, FixedClock, format_date};
    use crate::policy::OriginRule;
    use expect_test::{Expect, expect};
    use proptest::prelude::*;

    fn date(text: &str) -> Date {
        parse_date(text).expect("fixture date parses")
    }

    /// A record version with the fields the view reads; everything else stays at its default,
    /// since the view does not validate.
    fn version(origin: &str, seq: u64, record_id: &str, version: u32) -> RecordVersion {
        RecordVersion {
            origin: origin.to_owned(),
            seq,
            record: Arc::new(pb::CreditRecord {
                record_id: record_id.to_owned(),
                version,
                subject: Some(pb::Subject {
                    uscc: "SUBJECT-A".to_owned(),
                    ..Default::default()
                }),
                list: ListKind::Black.into(),
                category: "court.dishonest_debtor".to_owned(),
                publication: Some(pb::Publication {
                    starts_on: "2026-04-01".to_owned(),
                    ends_on: "2026-06-30".to_owned(),
                }),
                status: Some(pb::RecordStatus {
                    kind: StatusKind::Active.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            checkpoint_size: seq + 1,
            logged_at: 0,
            invalid: None,
            unknown_category: false,
            legacy_code: false,
        }
    }

    fn with_status(
        mut v: RecordVersion,
        kind: StatusKind,
        reason: &str,
        on: &str,
    ) -> RecordVersion {
        Arc::make_mut(&mut v.record).status = Some(pb::RecordStatus {
            kind: kind.into(),
            reason: reason.to_owned(),
            effective_on: on.to_owned(),
        });
        v
    }

    fn with_dates(mut v: RecordVersion, starts_on: &str, ends_on: &str) -> RecordVersion {
        Arc::make_mut(&mut v.record).publication = Some(pb::Publication {
            starts_on: starts_on.to_owned(),
            ends_on: ends_on.to_owned(),
        });
        v
    }

    /// Changsha's node: Wuhan's black list in court categories only, nothing from Nanchang.
    fn policy() -> RecognitionPolicy {
        RecognitionPolicy::recognise_all("changsha")
            .with_origin_rule(
                "wuhan",
                OriginRule::parse(&["black"], &["court.*"]).expect("rule parses"),
            )
            .with_origin_rule("nanchang", OriginRule::none())
    }

    fn render(result: &Result<InForce, Excluded>) -> String {
        match result {
            Ok(InForce {
                under_objection: false,
                ..
            }) => "in force".to_owned(),
            Ok(InForce {
                under_objection: true,
                ..
            }) => "in force, under objection".to_owned(),
            Err(e) => format!("excluded {}: {}", e.reason, e.detail),
        }
    }

    fn check(cases: &[(&str, RecordVersion, &str)], expect: Expect) {
        let policy = policy();
        let got: String = cases
            .iter()
            .map(|(label, v, today)| {
                let result = evaluate_version(v, &policy, date(today));
                format!("{label}: {}\n", render(&result))
            })
            .collect();
        expect.assert_eq(&got);
    }

    #[test]
    fn evaluate_version_table() {
        use StatusKind::*;
        let hefei = || version("hefei", 7, "HF-1", 1);
        let wuhan = || version("wuhan", 3, "WH-1", 2);
        let mut unknown = version("hefei", 8, "HF-2", 1);
        unknown.unknown_category = true;
        Arc::make_mut(&mut unknown.record).category = "tourism.new_code".to_owned();
        let mut invalid = version("nanchang", 1, "NC-1", 1);
        invalid.invalid = Some("subject.uscc: check character is X, expected Q".to_owned());
        let mut wuhan_watch = wuhan();
        Arc::make_mut(&mut wuhan_watch.record).list = ListKind::Watch.into();
        let wuhan_watch_2 = wuhan_watch.clone();
        let mut wuhan_tax = wuhan();
        Arc::make_mut(&mut wuhan_tax.record).category = "tax.major_violation".to_owned();
        let mut no_publication = hefei();
        Arc::make_mut(&mut no_publication.record).publication = None;
        let mut no_status = hefei();
        Arc::make_mut(&mut no_status.record).status = None;
        check(
            &[
                ("active, within", hefei(), "2026-05-01"),
                ("active, first day", hefei(), "2026-04-01"),
                ("active, last day", hefei(), "2026-06-30"),
                ("active, day before", hefei(), "2026-03-31"),
                ("active, day after", hefei(), "2026-07-01"),
                (
                    "objection, within",
                    with_status(hefei(), UnderObjection, "disputed", "2026-04-20"),
                    "2026-05-01",
                ),
                (
                    "objection, after",
                    with_status(hefei(), UnderObjection, "disputed", "2026-04-20"),
                    "2026-07-01",
                ),
                (
                    "repaired, within",
                    with_status(hefei(), Repaired, "fine paid, 信用修复", "2026-04-15"),
                    "2026-05-01",
                ),
                (
                    "revoked, within",
                    with_status(
                        hefei(),
                        Revoked,
                        "decision annulled on appeal",
                        "2026-04-10",
                    ),
                    "2026-05-01",
                ),
                (
                    "revoked, expired",
                    with_status(hefei(), Revoked, "", "2026-04-10"),
                    "2026-08-01",
                ),
                (
                    "repaired, not yet published",
                    with_status(hefei(), Repaired, "early repair", ""),
                    "2026-03-01",
                ),
                ("unspecified status", no_status, "2026-05-01"),
                ("wuhan black court", wuhan(), "2026-05-01"),
                ("wuhan watch court", wuhan_watch, "2026-05-01"),
                ("wuhan black tax", wuhan_tax, "2026-05-01"),
                (
                    "wuhan repaired, not recognised",
                    with_status(wuhan_watch_2, Repaired, "x", "2026-04-15"),
                    "2026-05-01",
                ),
                ("nanchang invalid", invalid, "2026-05-01"),
                (
                    "nanchang valid",
                    version("nanchang", 2, "NC-2", 1),
                    "2026-05-01",
                ),
                (
                    "changsha, own record",
                    version("changsha", 0, "CS-1", 1),
                    "2026-05-01",
                ),
                ("unknown category", unknown.clone(), "2026-05-01"),
                (
                    "unknown category, revoked",
                    with_status(unknown, Revoked, "annulled", "2026-04-10"),
                    "2026-05-01",
                ),
                ("no publication", no_publication, "2026-05-01"),
                (
                    "bad starts_on",
                    with_dates(hefei(), "2026-02-30", "2026-06-30"),
                    "2026-05-01",
                ),
                (
                    "bad ends_on",
                    with_dates(hefei(), "2026-04-01", "2026/06/30"),
                    "2026-05-01",
                ),
                (
                    "single day",
                    with_dates(hefei(), "2026-05-01", "2026-05-01"),
                    "2026-05-01",
                ),
            ],
            expect![[r#"
                active, within: in force
                active, first day: in force
                active, last day: in force
                active, day before: excluded not_yet_published: publication starts on 2026-04-01
                active, day after: excluded expired: publication ended on 2026-06-30
                objection, within: in force, under objection
                objection, after: excluded expired: publication ended on 2026-06-30
                repaired, within: excluded repaired: repaired on 2026-04-15: fine paid, 信用修复
                revoked, within: excluded revoked: revoked on 2026-04-10: decision annulled on appeal
                revoked, expired: excluded revoked: revoked on 2026-04-10
                repaired, not yet published: excluded repaired: repaired: early repair
                unspecified status: excluded invalid: status.kind is unspecified
                wuhan black court: in force
                wuhan watch court: excluded not_recognised: this node does not recognise watch-list records of category "court.dishonest_debtor" from wuhan
                wuhan black tax: excluded not_recognised: this node does not recognise black-list records of category "tax.major_violation" from wuhan
                wuhan repaired, not recognised: excluded not_recognised: this node does not recognise watch-list records of category "court.dishonest_debtor" from wuhan
                nanchang invalid: excluded invalid: subject.uscc: check character is X, expected Q
                nanchang valid: excluded not_recognised: this node does not recognise black-list records of category "court.dishonest_debtor" from nanchang
                changsha, own record: in force
                unknown category: excluded unknown_category: category "tourism.new_code" is not in this node's catalogue
                unknown category, revoked: excluded unknown_category: category "tourism.new_code" is not in this node's catalogue
                no publication: excluded invalid: publication is missing
                bad starts_on: excluded invalid: publication.starts_on: "2026-02-30" is not a calendar date
                bad ends_on: excluded invalid: publication.ends_on: "2026/06/30" is not a date of the form YYYY-MM-DD
                single day: in force
            "#]],
        );
    }

    /// Evaluates one record's history (in arrival order as given) on each date.
    fn check_history(history: &[RecordVersion], dates: &[&str], expect: Expect) {
        let policy = policy();
        let refs: Vec<&RecordVersion> = history.iter().collect();
        let got: String = dates
            .iter()
            .map(|d| {
                let result = evaluate_record(&refs, &policy, date(d)).expect("versions given");
                let held = match &result {
                    Ok(f) => f.version.record.version,
                    Err(e) => e.version.record.version,
                };
                format!("{d}: v{held} {}\n", render(&result))
            })
            .collect();
        expect.assert_eq(&got);
    }

    #[test]
    fn valid_time_evaluation_over_version_histories() {
        use StatusKind::*;
        let v1 = || with_dates(version("hefei", 0, "HF-1", 1), "2026-04-01", "2027-12-31");
        let later = |seq: u64, n: u32, kind, on: &str| {
            let mut v = with_status(v1(), kind, "x", on);
            v.seq = seq;
            Arc::make_mut(&mut v.record).version = n;
            v
        };
        // A repair published now, effective 2027-06-01: in force before, out from that day.
        check_history(
            &[later(5, 2, Repaired, "2027-06-01"), v1()],
            &["2026-05-01", "2027-05-31", "2027-06-01"],
            expect![[r#"
                2026-05-01: v1 in force
                2027-05-31: v1 in force
                2027-06-01: v2 excluded repaired: repaired on 2027-06-01: x
            "#]],
        );
        // As of a date before a past repair, the record was in force.
        check_history(
            &[v1(), later(1, 2, Repaired, "2026-12-02")],
            &["2026-11-30", "2026-12-01", "2026-12-02"],
            expect![[r#"
                2026-11-30: v1 in force
                2026-12-01: v1 in force
                2026-12-02: v2 excluded repaired: repaired on 2026-12-02: x
            "#]],
        );
        // An objection from its date, resolved by an undated ACTIVE version, then revoked.
        check_history(
            &[
                v1(),
                later(1, 2, UnderObjection, "2026-06-01"),
                later(2, 3, Active, ""),
                later(3, 4, Revoked, "2026-09-01"),
            ],
            &["2026-05-31", "2026-06-01", "2026-08-31", "2026-09-01"],
            expect![[r#"
                2026-05-31: v1 in force
                2026-06-01: v3 in force
                2026-08-31: v3 in force
                2026-09-01: v4 excluded revoked: revoked on 2026-09-01: x
            "#]],
        );
        // An objection still open, then expiry: the window is the version in force's.
        let mut extended = later(2, 3, UnderObjection, "2026-07-01");
        Arc::make_mut(&mut extended.record)
            .publication
            .as_mut()
            .expect("publication")
            .ends_on = "2028-01-31".to_owned();
        check_history(
            &[v1(), later(1, 2, UnderObjection, "2026-06-01"), extended],
            &[
                "2026-06-30",
                "2027-12-31",
                "2028-01-01",
                "2028-01-31",
                "2028-02-01",
            ],
            expect![[r#"
                2026-06-30: v2 in force, under objection
                2027-12-31: v3 in force, under objection
                2028-01-01: v3 in force, under objection
                2028-01-31: v3 in force, under objection
                2028-02-01: v3 excluded expired: publication ended on 2028-01-31
            "#]],
        );
        // Not yet published, then in force; an invalid later version plays no part; a record
        // with only invalid versions is reported invalid.
        let mut bad = later(1, 2, Repaired, "2026-05-01");
        bad.invalid =
            Some("subject.uscc: a record's subject never changes across versions".to_owned());
        check_history(
            &[v1(), bad.clone()],
            &["2026-03-31", "2026-04-01", "2026-06-01"],
            expect![[r#"
                2026-03-31: v1 excluded not_yet_published: publication starts on 2026-04-01
                2026-04-01: v1 in force
                2026-06-01: v1 in force
            "#]],
        );
        check_history(
            &[bad],
            &["2026-06-01"],
            expect![[r#"
                2026-06-01: v2 excluded invalid: subject.uscc: a record's subject never changes across versions
            "#]],
        );
    }

    #[test]
    fn latest_is_the_highest_version_then_the_lowest_seq() {
        let v1 = version("wuhan", 0, "WH-1", 1);
        let v2 = version("wuhan", 5, "WH-1", 2);
        // An equivocating origin logged version 2 twice; every node saw seq 3 first.
        let mut v2_forked = version("wuhan", 3, "WH-1", 2);
        Arc::make_mut(&mut v2_forked.record).remarks = "forked".to_owned();
        let other = version("hefei", 0, "HF-1", 1);
        let orders = [
            vec![&v1, &v2, &v2_forked, &other],
            vec![&other, &v2_forked, &v2, &v1, &v2],
        ];
        for order in orders {
            let latest = latest_versions(order);
            let got: Vec<_> = latest
                .iter()
                .map(|v| (v.origin.as_str(), v.seq, v.record.version))
                .collect();
            assert_eq!(got, [("hefei", 0, 1), ("wuhan", 3, 2)]);
        }
    }

    fn render_changes(changes: &[ViewChange]) -> String {
        changes
            .iter()
            .map(|c| format!("{}/{} v{} {:?}\n", c.origin, c.record_id, c.version, c.kind))
            .collect()
    }

    #[test]
    fn diff_reports_entered_left_and_updated() {
        let policy = policy();
        let today = date("2026-05-01");
        let kept = version("hefei", 0, "HF-KEPT", 1);
        let updated_v1 = version("hefei", 1, "HF-UPD", 1);
        let updated_v2 = with_status(
            version("hefei", 2, "HF-UPD", 2),
            StatusKind::UnderObjection,
            "disputed",
            "2026-04-20",
        );
        let repaired_v1 = version("wuhan", 0, "WH-REP", 1);
        let repaired_v2 = with_status(
            version("wuhan", 1, "WH-REP", 2),
            StatusKind::Repaired,
            "repaired",
            "2026-04-30",
        );
        let future = with_dates(version("hefei", 3, "HF-FUT", 1), "2026-06-01", "2026-06-30");
        let gone = version("changsha", 0, "CS-GONE", 1);
        let new = version("changsha", 1, "CS-NEW", 1);

        let before = subject_view(
            [&kept, &updated_v1, &repaired_v1, &future, &gone],
            &policy,
            today,
        );
        let after = subject_view(
            [
                &kept,
                &updated_v1,
                &updated_v2,
                &repaired_v1,
                &repaired_v2,
                &future,
                &new,
            ],
            &policy,
            today,
        );
        expect![[r#"
            changsha/CS-GONE v1 Left(NotRecognised)
            changsha/CS-NEW v1 Entered
            hefei/HF-UPD v2 Updated
            wuhan/WH-REP v2 Left(Repaired)
        "#]]
        .assert_eq(&render_changes(&diff(&before, &after)));
        assert_eq!(diff(&after, &after), []);

        let change = &diff(&before, &after)[3];
        assert_eq!(
            change.to_pb(42, "SUBJECT-A"),
            pb::ViewChange {
                change_seq: 42,
                subject_id: "SUBJECT-A".to_owned(),
                origin: "wuhan".to_owned(),
                record_id: "WH-REP".to_owned(),
                version: 2,
                kind: pb::view_change::Kind::Left.into(),
                reason: pb::ExclusionReason::Repaired.into(),
                effective_on: String::new(),
            }
        );
    }

    #[test]
    fn exclusion_names_and_reasons_are_stable() {
        let all = [
            Exclusion::Repaired,
            Exclusion::Revoked,
            Exclusion::Expired,
            Exclusion::NotYetPublished,
            Exclusion::NotRecognised,
            Exclusion::UnknownCategory,
            Exclusion::Invalid,
        ];
        let got: String = all
            .iter()
            .map(|e| format!("{} {}\n", e.as_str(), e.to_pb().as_str_name()))
            .collect();
        expect![[r#"
            repaired EXCLUSION_REASON_REPAIRED
            revoked EXCLUSION_REASON_REVOKED
            expired EXCLUSION_REASON_EXPIRED
            not_yet_published EXCLUSION_REASON_NOT_YET_PUBLISHED
            not_recognised EXCLUSION_REASON_NOT_RECOGNISED
            unknown_category EXCLUSION_REASON_UNKNOWN_CATEGORY
            invalid EXCLUSION_REASON_INVALID
        "#]]
        .assert_eq(&got);
    }

    const ORIGINS: [&str; 4] = ["changsha", "wuhan", "hefei", "nanchang"];
    const CATEGORIES: [&str; 3] = [
        "court.dishonest_debtor",
        "tax.major_violation",
        "court.new_code",
    ];

    /// One generated log entry; its seq is assigned by its position in its origin's log.
    #[derive(Debug, Clone)]
    struct Spec {
        origin: usize,
        record: usize,
        version: u32,
        status: StatusKind,
        starts: u64,
        days: u64,
        list: ListKind,
        category: usize,
        unknown_category: bool,
        invalid: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let status = prop_oneof![
            4 => Just(StatusKind::Active),
            2 => Just(StatusKind::UnderObjection),
            2 => Just(StatusKind::Repaired),
            2 => Just(StatusKind::Revoked),
            1 => Just(StatusKind::Unspecified),
        ];
        let list = prop_oneof![
            Just(ListKind::Red),
            Just(ListKind::Black),
            Just(ListKind::Watch),
            Just(ListKind::Penalty),
        ];
        (
            (0..ORIGINS.len(), 0..4usize, 1..5u32, status),
            (0..60u64, 0..60u64, list, 0..CATEGORIES.len()),
            (prop::bool::weighted(0.1), prop::bool::weighted(0.1)),
        )
            .prop_map(
                |(
                    (origin, record, version, status),
                    (starts, days, list, category),
                    (unknown_category, invalid),
                )| Spec {
                    origin,
                    record,
                    version,
                    status,
                    starts,
                    days,
                    list,
                    category,
                    unknown_category,
                    invalid,
                },
            )
    }

    fn base_date() -> Date {
        date("2026-01-01")
    }

    fn day(offset: u64) -> Date {
        base_date() + chrono::Days::new(offset)
    }

    /// Builds the versions of per-origin logs, so that (origin, seq) names one entry.
    fn build(specs: &[Spec]) -> Vec<RecordVersion> {
        let mut next_seq = [0u64; ORIGINS.len()];
        specs
            .iter()
            .map(|s| {
                let seq = next_seq[s.origin];
                next_seq[s.origin] += 1;
                let mut v = version(ORIGINS[s.origin], seq, &format!("R{}", s.record), s.version);
                v = with_status(v, s.status, "generated", "2026-01-01");
                v = with_dates(
                    v,
                    &format_date(day(s.starts)),
                    &format_date(day(s.starts + s.days)),
                );
                // Records R0 and R2 are about one subject, R1 and R3 about another.
                Arc::make_mut(&mut v.record)
                    .subject
                    .as_mut()
                    .expect("fixture has a subject")
                    .uscc = format!("SUBJECT-{}", s.record % 2);
                Arc::make_mut(&mut v.record).list = s.list.into();
                Arc::make_mut(&mut v.record).category = CATEGORIES[s.category].to_owned();
                v.unknown_category = s.unknown_category;
                v.invalid = s.invalid.then(|| "generated validation failure".to_owned());
                v
            })
            .collect()
    }

    fn any_policy() -> impl Strategy<Value = RecognitionPolicy> {
        prop_oneof![
            Just(RecognitionPolicy::recognise_all("changsha")),
            Just(policy()),
        ]
    }

    fn subject_of(v: &RecordVersion) -> String {
        v.record
            .subject
            .as_ref()
            .map(|s| s.uscc.clone())
            .unwrap_or_default()
    }

    /// The views of every subject, rebuilt from scratch.
    fn rebuild(
        versions: &[RecordVersion],
        policy: &RecognitionPolicy,
        today: Date,
    ) -> BTreeMap<String, SubjectView> {
        let mut by_subject: BTreeMap<String, Vec<&RecordVersion>> = BTreeMap::new();
        for v in versions {
            by_subject.entry(subject_of(v)).or_default().push(v);
        }
        by_subject
            .into_iter()
            .map(|(subject, vs)| (subject, subject_view(vs, policy, today)))
            .collect()
    }

    /// A small stand-in for the store: every version of each record and the last view of each
    /// subject, updated one version at a time.
    #[derive(Default)]
    struct Index {
        versions: BTreeMap<(String, String), Vec<RecordVersion>>,
        views: BTreeMap<String, SubjectView>,
    }

    impl Index {
        fn apply(
            &mut self,
            v: &RecordVersion,
            policy: &RecognitionPolicy,
            today: Date,
        ) -> Vec<ViewChange> {
            let key = (v.origin.clone(), v.record.record_id.clone());
            self.versions.entry(key).or_default().push(v.clone());
            let subject = subject_of(v);
            let after = subject_view(
                self.versions
                    .values()
                    .flatten()
                    .filter(|l| subject_of(l) == subject),
                policy,
                today,
            );
            let before = self
                .views
                .insert(subject, after.clone())
                .unwrap_or_default();
            diff(&before, &after)
        }
    }

    fn versions_and_arrival() -> impl Strategy<Value = (Vec<RecordVersion>, Vec<RecordVersion>)> {
        prop::collection::vec(spec(), 0..40).prop_flat_map(|specs| {
            let versions = build(&specs);
            let duplicates = prop::collection::vec(
                (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
                0..10,
            );
            (
                Just(versions.clone()),
                Just(versions).prop_shuffle(),
                duplicates,
            )
                .prop_map(|(versions, mut arrival, duplicates)| {
                    for (from, to) in duplicates {
                        if !arrival.is_empty() {
                            let copy = arrival[from.index(arrival.len())].clone();
                            let at = to.index(arrival.len() + 1);
                            arrival.insert(at, copy);
                        }
                    }
                    (versions, arrival)
                })
        })
    }

    proptest! {
        #[test]
        fn view_ignores_arrival_order_and_duplicates(
            (versions, arrival) in versions_and_arrival(),
            policy in any_policy(),
            today in (0..130u64).prop_map(day),
        ) {
            prop_assert_eq!(
                subject_view(&versions, &policy, today),
                subject_view(&arrival, &policy, today)
            );
            prop_assert_eq!(latest_versions(&versions), latest_versions(&arrival));
        }

        #[test]
        fn incremental_view_equals_rebuild(
            (versions, arrival) in versions_and_arrival(),
            policy in any_policy(),
            today in (0..130u64).prop_map(day),
        ) {
            let mut index = Index::default();
            // Replaying the changes a watcher receives must give the final in-force set.
            let mut watched: BTreeMap<(String, String, String), u32> = BTreeMap::new();
            for v in &arrival {
                let subject = subject_of(v);
                for change in index.apply(v, &policy, today) {
                    let key = (subject.clone(), change.origin.clone(), change.record_id.clone());
                    match change.kind {
                        ViewChangeKind::Entered => {
                            prop_assert!(watched.insert(key, change.version).is_none());
                        }
                        ViewChangeKind::Updated => {
                            let was = watched.insert(key, change.version);
                            prop_assert!(was.is_some_and(|was| was != change.version));
                        }
                        ViewChangeKind::Left(_) => {
                            prop_assert!(watched.remove(&key).is_some());
                        }
                    }
                }
            }
            let rebuilt = rebuild(&versions, &policy, today);
            let in_force: BTreeMap<(String, String, String), u32> = rebuilt
                .iter()
                .flat_map(|(subject, view)| {
                    view.in_force.iter().map(move |f| {
                        let (origin, record_id) = f.version.key();
                        ((subject.clone(), origin.to_owned(), record_id.to_owned()), f.version.record.version)
                    })
                })
                .collect();
            prop_assert_eq!(index.views, rebuilt);
            prop_assert_eq!(watched, in_force);
        }

        #[test]
        fn repair_or_revocation_takes_a_record_out(
            versions in prop::collection::vec(spec(), 0..30).prop_map(|s| build(&s)),
            policy in any_policy(),
            ends in (0..60u64),
            today_offset in (0..60u64),
            revoke in any::<bool>(),
        ) {
            let today = day(today_offset);
            // Changsha's own record, in force today whatever the policy.
            let in_force = with_dates(
                version("changsha", 1000, "TARGET", 1),
                &format_date(day(today_offset.saturating_sub(ends))),
                &format_date(day(today_offset + ends)),
            );
            let (status, reason) = if revoke {
                (StatusKind::Revoked, Exclusion::Revoked)
            } else {
                (StatusKind::Repaired, Exclusion::Repaired)
            };
            let mut next = with_status(in_force.clone(), status, "信用修复", "2026-01-01");
            next.seq = 1001;
            Arc::make_mut(&mut next.record).version = 2;

            let before = subject_view(versions.iter().chain([&in_force]), &policy, today);
            let after = subject_view(versions.iter().chain([&in_force, &next]), &policy, today);
            prop_assert!(before.in_force.iter().any(|f| f.version == in_force));
            prop_assert!(after.in_force.iter().all(|f| f.version.record.record_id != "TARGET"));
            prop_assert!(after.excluded.iter().any(|e| e.version == next && e.reason == reason));
            prop_assert_eq!(
                diff(&before, &after),
                vec![ViewChange {
                    origin: "changsha".to_owned(),
                    record_id: "TARGET".to_owned(),
                    version: 2,
                    kind: ViewChangeKind::Left(reason),
                }]
            );
        }

        #[test]
        fn expiry_follows_the_clock(
            starts in 0..60u64,
            days in 0..60u64,
            today_offset in 0..150u64,
            objection in any::<bool>(),
        ) {
            let status = if objection { StatusKind::UnderObjection } else { StatusKind::Active };
            let v = with_status(
                with_dates(
                    version("hefei", 0, "HF-1", 1),
                    &format_date(day(starts)),
                    &format_date(day(starts + days)),
                ),
                status,
                "",
                "",
            );
            let clock = FixedClock::at_date(base_date());
            clock.set_date(day(today_offset));
            let result = evaluate_version(&v, &policy(), clock.today());
            let expected = if today_offset < starts {
                Err(Exclusion::NotYetPublished)
            } else if today_offset > starts + days {
                Err(Exclusion::Expired)
            } else {
                Ok(objection)
            };
            prop_assert_eq!(result.map(|f| f.under_objection).map_err(|e| e.reason), expected);
        }
    }
}
