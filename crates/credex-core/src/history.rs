//! A record's versions over time: what may follow what, and which version holds on a date.
//!
//! **Fixed identity.** A record's subject (kind, USCC, ID number) and its list never change
//! across versions, and revocation is final: a correction is a revocation plus a new record.
//! [`check_successor`] is the one place this is decided; publish refuses a violating version
//! and the receive path lists one invalid (its origin signed it, so it is appended).
//!
//! **Valid time.** Every version carries a status with its own `effective_on`; a status
//! change takes effect on that date, not when it arrives. [`in_force_version`] says which
//! version of a record holds on a date D:
//! - the first version holds from the beginning;
//! - every later version holds from its status `effective_on`, or, when it has none (ACTIVE
//!   may omit it), from the date the version before it holds from;
//! - on D, the version holding from the latest date not after D holds; between versions
//!   holding from the same date, the higher version number.
//!
//! The publication window `[starts_on, ends_on]` and every other field are then read from that
//! version. So a repair published today with `effective_on` next month leaves the record in
//! force until then, and a lookup as of a date before a past repair finds it in force.

use crate::date::{Date, parse_date};
use crate::ident::mask_id_number;
use crate::pb::{CreditRecord, StatusKind};
use crate::validate::{FieldError, ValidationErrors};

/// Whether `next` may follow `previous` (the latest valid version of the same record): same
/// subject kind, USCC, ID number and list, and `previous` not revoked. The error names each
/// field that moved, in the form publish reports (`record CS-17: subject.uscc: …`).
pub fn check_successor(
    previous: &CreditRecord,
    next: &CreditRecord,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let was = previous.version;
    let changed = |errors: &mut Vec<FieldError>, path: &str, old: String, new: String| {
        if old != new {
            errors.push(FieldError {
                path: path.to_owned(),
                problem: format!(
                    "a record's {} never changes across versions (version {was} has {old}, this version {new}); revoke it and publish a new record",
                    if path == "list" { "list" } else { "subject" }
                ),
            });
        }
    };
    let old = previous.subject.clone().unwrap_or_default();
    let new = next.subject.clone().unwrap_or_default();
    changed(
        &mut errors,
        "subject.kind",
        old.kind().as_str_name().to_owned(),
        new.kind().as_str_name().to_owned(),
    );
    changed(
        &mut errors,
        "subject.uscc",
        format!("{:?}", old.uscc),
        format!("{:?}", new.uscc),
    );
    changed(
        &mut errors,
        "subject.id_number",
        format!("{:?}", mask_id_number(&old.id_number)),
        format!("{:?}", mask_id_number(&new.id_number)),
    );
    // Compared unmasked: two numbers that differ only in masked digits must still differ.
    if old.id_number != new.id_number
        && mask_id_number(&old.id_number) == mask_id_number(&new.id_number)
    {
        errors.push(FieldError {
            path: "subject.id_number".to_owned(),
            problem: format!(
                "a record's subject never changes across versions (version {was} has another ID number); revoke it and publish a new record"
            ),
        });
    }
    changed(
        &mut errors,
        "list",
        previous.list().as_str_name().to_owned(),
        next.list().as_str_name().to_owned(),
    );
    let status = previous.status.clone().unwrap_or_default();
    if status.kind() == StatusKind::Revoked {
        errors.push(FieldError {
            path: "version".to_owned(),
            problem: format!(
                "version {was} revoked this record (effective {}), and revocation is final; publish a new record",
                if status.effective_on.is_empty() { "at once" } else { &status.effective_on }
            ),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors {
            record_id: next.record_id.clone(),
            errors,
        })
    }
}

/// The date from which a later version's status holds, if it names one.
fn status_date(record: &CreditRecord) -> Option<Date> {
    let status = record.status.as_ref()?;
    parse_date(&status.effective_on).ok()
}

/// Which of one record's versions holds on `on` (see the module doc), as an index into
/// `versions`, which must be sorted by version number, without two of one number. `None` only
/// when `versions` is empty.
pub fn in_force_version(versions: &[&CreditRecord], on: Date) -> Option<usize> {
    let mut best: Option<(Option<Date>, usize)> = None;
    // `None` is the beginning of time, which sorts before every date.
    let mut holds_from: Option<Date> = None;
    for (i, record) in versions.iter().enumerate() {
        if i > 0 {
            holds_from = status_date(record).or(holds_from);
        }
        if holds_from.is_some_and(|d| d > on) {
            continue;
        }
        // Later in `versions` means a higher version: it wins a tie of dates.
        if best.is_none_or(|(from, _)| holds_from >= from) {
            best = Some((holds_from, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The dates on which a record's standing in the view can change because of this version,
/// beyond the day it is logged: its status date, its first day of publication, and the first
/// day after its publication ends. Watch's date tick evaluates a record on each of them.
pub fn turning_dates(record: &CreditRecord) -> Vec<Date> {
    let mut dates: Vec<Date> = status_date(record).into_iter().collect();
    if let Some(p) = &record.publication {
        dates.extend(parse_date(&p.starts_on).ok());
        dates.extend(parse_date(&p.ends_on).ok().and_then(|d| d.succ_opt()));
    }
    dates.sort();
    dates.dedup();
    dates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::format_date;
    use crate::pb;
    use expect_test::{Expect, expect};

    fn record(version: u32, kind: StatusKind, effective_on: &str) -> CreditRecord {
        CreditRecord {
            record_id: "CS-17".to_owned(),
            version,
            subject: Some(pb::Subject {
                kind: pb::SubjectKind::LegalPerson.into(),
                uscc: "91430100MA4L8Q2K7F".to_owned(),
                ..Default::default()
            }),
            list: pb::ListKind::Black.into(),
            publication: Some(pb::Publication {
                starts_on: "2026-04-01".to_owned(),
                ends_on: "2027-03-31".to_owned(),
            }),
            status: Some(pb::RecordStatus {
                kind: kind.into(),
                reason: String::new(),
                effective_on: effective_on.to_owned(),
            }),
            ..Default::default()
        }
    }

    fn check_successors(cases: &[(&str, CreditRecord, CreditRecord)], expect: Expect) {
        let got: String = cases
            .iter()
            .map(
                |(label, previous, next)| match check_successor(previous, next) {
                    Ok(()) => format!("{label}: ok\n"),
                    Err(e) => format!("{label}: {e}\n"),
                },
            )
            .collect();
        expect.assert_eq(&got);
    }

    #[test]
    fn identity_is_fixed_and_revocation_final() {
        use StatusKind::*;
        let v1 = record(1, Active, "");
        let mut moved = record(2, Active, "");
        moved.subject.as_mut().expect("subject").uscc = "91420100MA4K0RN90U".to_owned();
        let mut red = record(2, Active, "");
        red.list = pb::ListKind::Red.into();
        let mut person = record(2, Active, "");
        let subject = person.subject.as_mut().expect("subject");
        subject.kind = pb::SubjectKind::NaturalPerson.into();
        subject.uscc.clear();
        subject.id_number = "430102199003077777".to_owned();
        check_successors(
            &[
                ("repair", v1.clone(), record(2, Repaired, "2027-06-01")),
                (
                    "objection",
                    v1.clone(),
                    record(2, UnderObjection, "2026-05-01"),
                ),
                ("revoke", v1.clone(), record(2, Revoked, "2026-05-01")),
                ("moved subject", v1.clone(), moved),
                ("black to red", v1.clone(), red),
                ("to a person", v1.clone(), person),
                (
                    "after revocation",
                    record(2, Revoked, "2026-05-01"),
                    record(3, Active, ""),
                ),
            ],
            expect![[r#"
                repair: ok
                objection: ok
                revoke: ok
                moved subject: record CS-17: subject.uscc: a record's subject never changes across versions (version 1 has "91430100MA4L8Q2K7F", this version "91420100MA4K0RN90U"); revoke it and publish a new record
                black to red: record CS-17: list: a record's list never changes across versions (version 1 has LIST_KIND_BLACK, this version LIST_KIND_RED); revoke it and publish a new record
                to a person: record CS-17: subject.kind: a record's subject never changes across versions (version 1 has SUBJECT_KIND_LEGAL_PERSON, this version SUBJECT_KIND_NATURAL_PERSON); revoke it and publish a new record; subject.uscc: a record's subject never changes across versions (version 1 has "91430100MA4L8Q2K7F", this version ""); revoke it and publish a new record; subject.id_number: a record's subject never changes across versions (version 1 has "", this version "4301**********7777"); revoke it and publish a new record
                after revocation: record CS-17: version: version 2 revoked this record (effective 2026-05-01), and revocation is final; publish a new record
            "#]],
        );
    }

    fn check_in_force(history: &[CreditRecord], dates: &[&str], expect: Expect) {
        let refs: Vec<&CreditRecord> = history.iter().collect();
        let got: String = dates
            .iter()
            .map(|d| {
                let on = parse_date(d).expect("fixture date");
                let held = in_force_version(&refs, on).map(|i| refs[i]);
                let shown = held.map_or("none".to_owned(), |r| {
                    format!(
                        "v{} {:?}",
                        r.version,
                        r.status.clone().unwrap_or_default().kind()
                    )
                });
                format!("{d}: {shown}\n")
            })
            .collect();
        expect.assert_eq(&got);
    }

    #[test]
    fn a_later_status_holds_from_its_own_date() {
        use StatusKind::*;
        check_in_force(
            &[record(1, Active, ""), record(2, Repaired, "2027-06-01")],
            &["2026-04-01", "2027-05-31", "2027-06-01", "2028-01-01"],
            expect![[r#"
                2026-04-01: v1 Active
                2027-05-31: v1 Active
                2027-06-01: v2 Repaired
                2028-01-01: v2 Repaired
            "#]],
        );
        // Objection from 05-01, resolved (undated ACTIVE: from its predecessor's date), then a
        // future revocation; a backdated objection published after it orders by its date.
        check_in_force(
            &[
                record(1, Active, ""),
                record(2, UnderObjection, "2026-05-01"),
                record(3, Active, ""),
                record(4, Revoked, "2026-09-01"),
                record(5, UnderObjection, "2026-07-01"),
            ],
            &[
                "2026-04-30",
                "2026-05-01",
                "2026-06-30",
                "2026-07-01",
                "2026-09-01",
            ],
            expect![[r#"
                2026-04-30: v1 Active
                2026-05-01: v3 Active
                2026-06-30: v3 Active
                2026-07-01: v5 UnderObjection
                2026-09-01: v4 Revoked
            "#]],
        );
        check_in_force(
            &[],
            &["2026-01-01"],
            expect![[r#"
            2026-01-01: none
        "#]],
        );
    }

    #[test]
    fn turning_dates_are_the_status_date_the_start_and_the_day_after_the_end() {
        let got: Vec<String> = turning_dates(&record(2, StatusKind::Repaired, "2026-12-02"))
            .into_iter()
            .map(format_date)
            .collect();
        assert_eq!(got, ["2026-04-01", "2026-12-02", "2027-04-01"]);
    }
}
