//! Record validation: checks one [`CreditRecord`] against the shared schema rules and the category
//! catalogue, collecting every problem with its field path, and returns the record with its
//! identifiers normalised.
//!
//! The origin validates before it signs ([`Mode::Publish`]); a receiver validates every authentic
//! entry again ([`Mode::Relay`]) and keeps one that fails out of its view. The two modes differ in
//! one rule only: an unknown category is an error at publish, but a relayed one is accepted and
//! flagged ([`Validated::unknown_category`]), since the peer may run a newer catalogue.
//!
//! **Every node judges every entry the same way.** Validity depends only on the record, the
//! consortium's [`Rules`] (pinned by every member) and [`Validator::today`], the *reference date*:
//! at publish the origin's today (UTC+8, from its clock); for a relayed entry the date its origin
//! logged it (`Entry.logged_at` in UTC+8, a signed fact of the entry), never the receiver's
//! clock. The origin validates at publish just before it stamps `logged_at`, so a record valid
//! there is valid on relay too, and an entry's validity never changes with the day it is checked.
//!
//! # Rules
//! Field paths are relative to the record, dotted, with `[i]` for repeated fields
//! (`decision.penalty_kinds[2]`). Every rule below is checked and every failure reported.
//!
//! - **Text.** Lengths count characters, not bytes. A blank (whitespace-only) required field counts
//!   as missing. Control characters are rejected everywhere, except line feeds (`\n`) in the long
//!   texts (legal basis, facts, penalty content, status reason, remarks); carriage returns are
//!   rejected too, so publishers normalise line endings. Limits: names 200, document number 100,
//!   legal basis 2000, facts 4000, penalty content 4000, status reason 2000, remarks 2000, data
//!   source 200, each item of a repeated field 200 (and non-blank), at most 32 items per repeated
//!   field.
//! - **record_id**: 1..=64 characters of `A-Z a-z 0-9 . _ : -`; **version** at least 1.
//! - **subject**: kind specified, name required. Legal persons and individual businesses are
//!   identified by a USCC (checked with the legacy allow-list) and carry no ID number; an
//!   individual business's USCC starts with `92` (registration authority 9, organisation type 2 =
//!   个体工商户) and a legal person's does not. Natural persons are identified by their resident ID
//!   number and carry no USCC and no legal representative. A legal representative, when present,
//!   has a name and, if given, a valid ID number.
//! - **list** specified. **severity**: none on the red list; MINOR, GENERAL or SERIOUS on every
//!   other list.
//! - **category**: syntactically a catalogue code; known to the catalogue (publish) and allowed for
//!   the record's list and subject kind. An unknown category in relay mode is accepted and the
//!   compatibility check skipped, as this node cannot know the peer's rules for it.
//! - **authority**: name and USCC required; the USCC must be a government body's (registration
//!   authority code `1`, 机构编制).
//! - **decision**: required, with a valid `decided_on`. The document number is required except on
//!   the red list (a red-list listing is often a published roster without a decision document).
//!   Penalty disclosures need legal basis, facts and at least one penalty kind; black- and
//!   watch-list records need facts. `fine_fen` lies in `0..=1_000_000_000_000` (10 billion yuan, a
//!   sanity bound against unit mistakes), and is positive exactly when `penalty_kinds` includes
//!   `罚款`.
//! - **publication**: `starts_on` and `ends_on` required and valid, `decided_on` ≤ `starts_on` ≤
//!   `ends_on`. NDRC Order No. 36 bounds the period by tier: MINOR 3 months, GENERAL 1 year,
//!   SERIOUS 3 years; red-list records are bounded by 3 years too, so that a reward is re-confirmed at
//!   least as often as the longest sanction. `ends_on` is the last day of publication (inclusive)
//!   and may be at most the corresponding day of the bound's final month: starting 2026-04-01, a
//!   GENERAL record may end on 2027-04-01 but not on 2027-04-02. That is the Civil Code's reckoning
//!   of periods (arts. 201–202: the starting day is not counted, and a period in months or years
//!   ends on the corresponding day of its final month, or that month's last day when it has none):
//!   2025-11-30 + 3 months ends on 2026-02-28. The bounds apply to every record regardless of its
//!   dates.
//! - **status**: kind specified. ACTIVE carries no reason (its `effective_on`, if given, is checked
//!   like the others); every other status needs a reason and an `effective_on` date, and no status
//!   date precedes `decided_on`. A status may be scheduled ahead: `effective_on` has no upper bound.
//! - **calendar** (against the reference date): `decided_on` at most
//!   [`Rules::decision_days_ahead`] days after it (default 1: tomorrow); the birth date of every ID
//!   number in the record (subject and legal representative, positions 7-14) not after it and not
//!   after `decided_on`.
//! - **consortium**: the authority's division code (USCC positions 3-8, GB 32100) starts with the
//!   publishing city's 4-digit prefix (`4301` for Changsha's 430100), so a city publishes only its
//!   own authorities' decisions; the record id is not in another member's namespace (it does not
//!   start with another member's city id followed by `-`, ASCII case-insensitive). USCCs on the
//!   consortium's legacy allow-list are accepted despite their check character and flagged
//!   ([`Validated::legacy_uscc`]).
//!
//! The normalised record has every identifier in its canonical (uppercase) form;
//! [`Validated::subject_keys`] holds the subject's identifier the record is indexed under (USCC or
//! ID number; never the legal representative's, whose ID does not make the subject's record
//! theirs).

use crate::catalogue::{self, Catalogue};
use crate::date::{Date, format_date, parse_date};
use crate::ident::{self, IdNumber, SubjectId, Uscc};
use crate::pb::{
    Authority, CreditRecord, Decision, ListKind, Publication, RecordStatus, Severity, StatusKind,
    Subject, SubjectKind,
};
use crate::rules::Rules;
use chrono::{Days, Months};
use std::fmt;

/// Longest record id, in characters.
pub const MAX_RECORD_ID_CHARS: usize = 64;
/// Longest name (subject, legal representative, authority), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest decision document number, in characters.
pub const MAX_DOCUMENT_NUMBER_CHARS: usize = 100;
/// Longest legal basis, in characters.
pub const MAX_LEGAL_BASIS_CHARS: usize = 2000;
/// Longest facts, in characters.
pub const MAX_FACTS_CHARS: usize = 4000;
/// Longest penalty content, in characters.
pub const MAX_PENALTY_CONTENT_CHARS: usize = 4000;
/// Longest status reason, in characters.
pub const MAX_REASON_CHARS: usize = 2000;
/// Longest remarks, in characters.
pub const MAX_REMARKS_CHARS: usize = 2000;
/// Longest data source, in characters.
pub const MAX_DATA_SOURCE_CHARS: usize = 200;
/// Longest item of a repeated text field, in characters.
pub const MAX_ITEM_CHARS: usize = 200;
/// Most items in a repeated field.
pub const MAX_ITEMS: usize = 32;
/// Largest fine, in fen: 10 billion yuan. Real fines stay far below it; the bound catches an amount
/// converted to fen twice, and keeps sums of fines far from overflow.
pub const MAX_FINE_FEN: i64 = 1_000_000_000_000;
/// The penalty kind that carries a fine (`fine_fen`).
pub const FINE_PENALTY_KIND: &str = "罚款";

/// Where the record is being validated. At publish an unknown category is an error; for an entry
/// relayed from a peer an unknown category is accepted (the peer may run a newer catalogue) and
/// reported as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This node's own record, before it is signed.
    Publish,
    /// An authentic entry from another origin, after it is appended.
    Relay,
}

/// Validates records against the schema rules, a catalogue and the consortium's rules.
#[derive(Clone, Copy)]
pub struct Validator<'a> {
    pub catalogue: &'a Catalogue,
    pub rules: &'a Rules,
    pub mode: Mode,
    /// The publishing city (the entry's origin): whose namespace and division apply.
    pub origin: &'a str,
    /// The reference date (see the module doc): today at publish, the entry's `logged_at` date on
    /// relay.
    pub today: Date,
}

impl Validator<'_> {
    /// The same validator with another reference date (a relayed entry's `logged_at` date).
    pub fn on(self, today: Date) -> Self {
        Self { today, ..self }
    }
}

// By hand: the derived form would print the whole catalogue and allow-list into every log line.
impl fmt::Debug for Validator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("catalogue", &self.catalogue.version())
            .field("mode", &self.mode)
            .field("origin", &self.origin)
            .field("today", &self.today)
            .finish_non_exhaustive()
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FieldError {
    /// Dotted path relative to the record, e.g. `subject.uscc`, `decision.penalty_kinds[2]`.
    pub path: String,
    pub problem: String,
}

/// Every problem found in one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {}: {}", shown_record_id(.record_id), joined(.errors))]
pub struct ValidationErrors {
    /// The record's id as given (it may itself be invalid).
    pub record_id: String,
    /// Never empty.
    pub errors: Vec<FieldError>,
}

/// A record that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The category is not in this node's catalogue (relay mode only).
    pub unknown_category: bool,
    /// Some USCC in the record (subject or authority) was accepted only through the legacy
    /// allow-list.
    pub legacy_uscc: bool,
    /// The normalised identifiers the record is indexed under: the subject's USCC or ID number.
    pub subject_keys: Vec<SubjectId>,
    /// The record with identifiers in canonical form (uppercase).
    pub normalised: CreditRecord,
}

impl Validator<'_> {
    /// Checks every rule (see the module doc) and returns all failures at once.
    pub fn validate(&self, record: &CreditRecord) -> Result<Validated, ValidationErrors> {
        self.check(record).map(|found| found.apply(record.clone()))
    }

    /// [`Validator::validate`] of a record the caller gives up: the normalised record is that
    /// record with its identifiers rewritten, not a copy (publish and the indexer validate
    /// every record so). An invalid record comes back with its errors.
    pub fn validate_owned(
        &self,
        record: CreditRecord,
    ) -> Result<Validated, (ValidationErrors, Box<CreditRecord>)> {
        match self.check(&record) {
            Ok(found) => Ok(found.apply(record)),
            Err(e) => Err((e, Box::new(record))),
        }
    }

    fn check(&self, record: &CreditRecord) -> Result<Found, ValidationErrors> {
        let mut run = Run {
            validator: self,
            errors: Vec::new(),
            births: Vec::new(),
            out: Found::default(),
        };
        run.record(record);
        if run.errors.is_empty() {
            Ok(run.out)
        } else {
            Err(ValidationErrors {
                record_id: record.record_id.clone(),
                errors: run.errors,
            })
        }
    }
}

/// What a validation found of a valid record: its flags and index keys, and its identifiers in
/// canonical form, to write into the record ([`Found::apply`]).
#[derive(Debug, Default)]
struct Found {
    unknown_category: bool,
    legacy_uscc: bool,
    subject_keys: Vec<SubjectId>,
    subject_uscc: Option<String>,
    subject_id_number: Option<String>,
    representative_id_number: Option<String>,
    authority_uscc: Option<String>,
}

impl Found {
    fn apply(self, mut record: CreditRecord) -> Validated {
        if let Some(uscc) = self.subject_uscc {
            record.subject.get_or_insert_default().uscc = uscc;
        }
        if let Some(id) = self.subject_id_number {
            record.subject.get_or_insert_default().id_number = id;
        }
        if let Some(id) = self.representative_id_number
            && let Some(rep) = record
                .subject
                .as_mut()
                .and_then(|s| s.legal_representative.as_mut())
        {
            rep.id_number = id;
        }
        if let Some(uscc) = self.authority_uscc {
            record.authority.get_or_insert_default().uscc = uscc;
        }
        Validated {
            unknown_category: self.unknown_category,
            legacy_uscc: self.legacy_uscc,
            subject_keys: self.subject_keys,
            normalised: record,
        }
    }
}

/// One validation in progress: the errors so far and the normalised output.
struct Run<'v, 'a> {
    validator: &'v Validator<'a>,
    errors: Vec<FieldError>,
    /// Every ID number's birth date, by field path, checked against the dates once they are known.
    births: Vec<(&'static str, IdNumber)>,
    out: Found,
}

/// Whether a text may span lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    One,
    Many,
}

impl Run<'_, '_> {
    fn push(&mut self, path: &str, problem: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            problem: problem.into(),
        });
    }

    fn record(&mut self, r: &CreditRecord) {
        self.record_id(&r.record_id);
        if r.version == 0 {
            self.push("version", "must be at least 1");
        }
        let list = self.list(r.list);
        let subject_kind = self.subject(r.subject.as_ref());
        let severity = self.severity(r.severity, list);
        self.category(&r.category, list, subject_kind);
        self.authority(r.authority.as_ref());
        let decided_on = self.decision(r.decision.as_ref(), list);
        self.calendar(decided_on);
        self.publication(r.publication.as_ref(), decided_on, list, severity);
        self.status(r.status.as_ref(), decided_on);
        self.text(
            "data_source",
            &r.data_source,
            MAX_DATA_SOURCE_CHARS,
            Lines::One,
        );
        self.text("remarks", &r.remarks, MAX_REMARKS_CHARS, Lines::Many);
    }

    fn record_id(&mut self, id: &str) {
        if id.is_empty() {
            self.push("record_id", "is required");
            return;
        }
        let chars = id.chars().count();
        if chars > MAX_RECORD_ID_CHARS {
            self.push(
                "record_id",
                format!("is {chars} characters long, at most {MAX_RECORD_ID_CHARS}"),
            );
        }
        if let Some(bad) = id.chars().find(|&c| !is_record_id_char(c)) {
            let code = u32::from(bad);
            let allowed = "only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed";
            self.push(
                "record_id",
                format!("contains {bad:?} (U+{code:04X}); {allowed}"),
            );
        }
        let origin = self.validator.origin;
        if let Some(owner) = self.validator.rules.namespace_of(id)
            && owner.city != origin
        {
            self.push(
                "record_id",
                format!(
                    "{} is in {}'s namespace ({}-…); {origin} publishes only record ids outside \
                     other members' namespaces",
                    shown_record_id(id),
                    owner.city,
                    owner.city
                ),
            );
        }
    }

    fn list(&mut self, raw: i32) -> Option<ListKind> {
        match ListKind::try_from(raw) {
            Ok(ListKind::Unspecified) => {
                self.push(
                    "list",
                    "is unspecified; expected RED, BLACK, WATCH or PENALTY",
                );
                None
            }
            Ok(kind) => Some(kind),
            Err(_) => {
                self.push("list", format!("unknown list kind {raw}"));
                None
            }
        }
    }

    fn subject(&mut self, subject: Option<&Subject>) -> Option<SubjectKind> {
        let Some(s) = subject else {
            self.push("subject", "is required");
            return None;
        };
        let kind = match SubjectKind::try_from(s.kind) {
            Ok(SubjectKind::Unspecified) => {
                self.push(
                    "subject.kind",
                    "is unspecified; expected LEGAL_PERSON, INDIVIDUAL_BUSINESS or NATURAL_PERSON",
                );
                None
            }
            Ok(kind) => Some(kind),
            Err(_) => {
                self.push("subject.kind", format!("unknown subject kind {}", s.kind));
                None
            }
        };
        self.required_text("subject.name", &s.name, MAX_NAME_CHARS, Lines::One);

        match kind {
            Some(k @ (SubjectKind::LegalPerson | SubjectKind::IndividualBusiness)) => {
                let who = subject_phrase(k);
                if s.uscc.is_empty() {
                    self.push("subject.uscc", format!("is required for {who}"));
                } else if let Some(uscc) = self.uscc("subject.uscc", &s.uscc) {
                    // GB 32100: registration authority 9 (market regulation), type 2 = 个体工商户.
                    let individual =
                        uscc.registration_authority() == '9' && uscc.organisation_type() == '2';
                    if k == SubjectKind::IndividualBusiness && !individual {
                        self.push(
                            "subject.uscc",
                            format!(
                                "{} is not an individual business's code, which starts with 92",
                                uscc.masked()
                            ),
                        );
                    } else if k == SubjectKind::LegalPerson && individual {
                        self.push(
                            "subject.uscc",
                            format!(
                                "{} is an individual business's code (92…), \
                                 not a legal person's",
                                uscc.masked()
                            ),
                        );
                    }
                    self.out.subject_uscc = Some(uscc.as_str().to_owned());
                    self.out.subject_keys.push(SubjectId::Uscc(uscc));
                }
                if !s.id_number.is_empty() {
                    self.push(
                        "subject.id_number",
                        format!("must be empty for {who}, which is identified by its uscc"),
                    );
                }
            }
            Some(SubjectKind::NaturalPerson) => {
                if s.id_number.is_empty() {
                    self.push("subject.id_number", "is required for a natural person");
                } else if let Some(id) = self.id_number("subject.id_number", &s.id_number) {
                    self.out.subject_id_number = Some(id.as_str().to_owned());
                    self.births.push(("subject.id_number", id.clone()));
                    self.out.subject_keys.push(SubjectId::IdNumber(id));
                }
                if !s.uscc.is_empty() {
                    self.push(
                        "subject.uscc",
                        "must be empty for a natural person, who is identified by an id_number",
                    );
                }
                if s.legal_representative.is_some() {
                    self.push(
                        "subject.legal_representative",
                        "must be absent for a natural person",
                    );
                }
            }
            // Kind unknown: still report malformed identifiers, but do not index the record.
            Some(SubjectKind::Unspecified) | None => {
                if !s.uscc.is_empty() {
                    self.uscc("subject.uscc", &s.uscc);
                }
                if !s.id_number.is_empty() {
                    self.id_number("subject.id_number", &s.id_number);
                }
            }
        }

        if let Some(rep) = &s.legal_representative
            && kind != Some(SubjectKind::NaturalPerson)
        {
            self.required_text(
                "subject.legal_representative.name",
                &rep.name,
                MAX_NAME_CHARS,
                Lines::One,
            );
            if !rep.id_number.is_empty()
                && let Some(id) =
                    self.id_number("subject.legal_representative.id_number", &rep.id_number)
            {
                self.out.representative_id_number = Some(id.as_str().to_owned());
                self.births
                    .push(("subject.legal_representative.id_number", id));
            }
        }
        kind
    }

    /// Parses a USCC (allow-list aware), or reports the problem.
    fn uscc(&mut self, path: &str, text: &str) -> Option<Uscc> {
        match ident::parse_uscc_allowing(text, &self.validator.rules.legacy_uscc_allow_list) {
            Ok((uscc, legacy)) => {
                self.out.legacy_uscc |= legacy;
                Some(uscc)
            }
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }

    /// Parses a resident ID number, or reports the problem.
    fn id_number(&mut self, path: &str, text: &str) -> Option<IdNumber> {
        match ident::parse_id_number(text) {
            Ok(id) => Some(id),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }

    fn severity(&mut self, raw: i32, list: Option<ListKind>) -> Option<Severity> {
        let severity = match Severity::try_from(raw) {
            Ok(s) => s,
            Err(_) => {
                self.push("severity", format!("unknown severity {raw}"));
                return None;
            }
        };
        match (list, severity) {
            (Some(ListKind::Red), Severity::Unspecified) => None,
            (Some(ListKind::Red), s) => {
                self.push(
                    "severity",
                    format!(
                        "must be unspecified on a red-list record, got {}",
                        severity_name(s)
                    ),
                );
                None
            }
            (Some(list), Severity::Unspecified) => {
                self.push(
                    "severity",
                    format!(
                        "is required on {} (MINOR, GENERAL or SERIOUS)",
                        list_phrase(list)
                    ),
                );
                None
            }
            (_, Severity::Unspecified) => None,
            (_, s) => Some(s),
        }
    }

    fn category(&mut self, code: &str, list: Option<ListKind>, subject: Option<SubjectKind>) {
        if code.is_empty() {
            self.push("category", "is required");
            return;
        }
        if let Err(problem) = catalogue::check_code(code) {
            self.push(
                "category",
                format!("{} is not a catalogue code: {problem}", shown(code)),
            );
            return;
        }
        let catalogue = self.validator.catalogue;
        let Some(category) = catalogue.get(code) else {
            match self.validator.mode {
                Mode::Publish => self.push(
                    "category",
                    format!(
                        "unknown category {code:?} (catalogue {})",
                        catalogue.version()
                    ),
                ),
                Mode::Relay => self.out.unknown_category = true,
            }
            return;
        };
        if let Some(list) = list
            && !category.allows_list(list)
        {
            let allowed: Vec<_> = category
                .lists
                .iter()
                .filter_map(|&k| catalogue::list_kind_name(k))
                .collect();
            self.push(
                "category",
                format!(
                    "{code:?} may be used on lists {}, not {}",
                    allowed.join(", "),
                    catalogue::list_kind_name(list).unwrap_or("unspecified")
                ),
            );
        }
        if let Some(subject) = subject
            && !category.allows_subject(subject)
        {
            let allowed: Vec<_> = category
                .subjects
                .iter()
                .filter_map(|&k| catalogue::subject_kind_name(k))
                .collect();
            self.push(
                "category",
                format!(
                    "{code:?} may be used for subjects {}, not {}",
                    allowed.join(", "),
                    catalogue::subject_kind_name(subject).unwrap_or("unspecified")
                ),
            );
        }
    }

    fn authority(&mut self, authority: Option<&Authority>) {
        let Some(a) = authority else {
            self.push("authority", "is required");
            return;
        };
        self.required_text("authority.name", &a.name, MAX_NAME_CHARS, Lines::One);
        if a.uscc.is_empty() {
            self.push("authority.uscc", "is required");
        } else if let Some(uscc) = self.uscc("authority.uscc", &a.uscc) {
            if uscc.registration_authority() != '1' {
                self.push(
                    "authority.uscc",
                    format!(
                        "{} is not a government body's code, which starts with \
                         registration authority code 1",
                        uscc.masked()
                    ),
                );
            }
            let origin = self.validator.origin;
            match self.validator.rules.member(origin) {
                Some(member) if !uscc.division_code().starts_with(member.division_prefix()) => {
                    self.push(
                        "authority.uscc",
                        format!(
                            "{} is registered in division {}, outside {origin} ({}, division \
                             prefix {}); a city publishes only its own authorities' decisions",
                            uscc.masked(),
                            uscc.division_code_masked(),
                            member.division,
                            member.division_prefix()
                        ),
                    );
                }
                Some(_) => {}
                None => self.push(
                    "authority.uscc",
                    format!(
                        "cannot check its division: publishing city {origin:?} is not a member \
                         in the consortium rules"
                    ),
                ),
            }
            self.out.authority_uscc = Some(uscc.as_str().to_owned());
        }
    }

    /// Checks the decision and returns its date, when valid.
    fn decision(&mut self, decision: Option<&Decision>, list: Option<ListKind>) -> Option<Date> {
        let Some(d) = decision else {
            self.push("decision", "is required");
            return None;
        };
        let negative = matches!(
            list,
            Some(ListKind::Black | ListKind::Watch | ListKind::Penalty)
        );
        let penalty = list == Some(ListKind::Penalty);

        self.text(
            "decision.document_number",
            &d.document_number,
            MAX_DOCUMENT_NUMBER_CHARS,
            Lines::One,
        );
        if negative && is_blank(&d.document_number) {
            self.push(
                "decision.document_number",
                format!("is required on {}", list_phrase_of(list)),
            );
        }
        let decided_on = self.date("decision.decided_on", &d.decided_on, true);

        self.text(
            "decision.legal_basis",
            &d.legal_basis,
            MAX_LEGAL_BASIS_CHARS,
            Lines::Many,
        );
        if penalty && is_blank(&d.legal_basis) {
            self.push(
                "decision.legal_basis",
                "is required on a penalty disclosure",
            );
        }
        self.text("decision.facts", &d.facts, MAX_FACTS_CHARS, Lines::Many);
        if negative && is_blank(&d.facts) {
            self.push(
                "decision.facts",
                format!("is required on {}", list_phrase_of(list)),
            );
        }
        self.items("decision.penalty_kinds", &d.penalty_kinds);
        if penalty && d.penalty_kinds.is_empty() {
            self.push(
                "decision.penalty_kinds",
                "at least one is required on a penalty disclosure, e.g. 警告 or 罚款",
            );
        }
        self.text(
            "decision.penalty_content",
            &d.penalty_content,
            MAX_PENALTY_CONTENT_CHARS,
            Lines::Many,
        );

        let fined = d.penalty_kinds.iter().any(|k| k == FINE_PENALTY_KIND);
        match d.fine_fen {
            f if f < 0 => self.push("decision.fine_fen", format!("is negative ({f})")),
            f if f > MAX_FINE_FEN => self.push(
                "decision.fine_fen",
                format!(
                    "is {f} fen, above the sanity bound of {MAX_FINE_FEN} fen (10 billion yuan)"
                ),
            ),
            0 if fined => self.push(
                "decision.fine_fen",
                format!(
                    "is 0 but penalty_kinds includes {FINE_PENALTY_KIND}; give the fine in fen"
                ),
            ),
            f if f > 0 && !fined => self.push(
                "decision.fine_fen",
                format!("is {f} fen but penalty_kinds does not include {FINE_PENALTY_KIND}"),
            ),
            _ => {}
        }
        self.items("decision.sanction_measures", &d.sanction_measures);
        decided_on
    }

    /// The calendar checks against the reference date (see the module doc).
    fn calendar(&mut self, decided_on: Option<Date>) {
        let today = self.validator.today;
        let ahead = self.validator.rules.decision_days_ahead;
        if let Some(decided) = decided_on
            && let Some(latest) = today.checked_add_days(Days::new(u64::from(ahead)))
            && decided > latest
        {
            self.push(
                "decision.decided_on",
                format!(
                    "{} is in the future: the latest decision date on {} is {} ({ahead} day(s) ahead)",
                    format_date(decided),
                    format_date(today),
                    format_date(latest)
                ),
            );
        }
        for (path, id) in std::mem::take(&mut self.births) {
            let born = id.birth_date();
            if born > today {
                self.push(
                    path,
                    format!(
                        "{id}: its birth date (positions 7-14) is in the future on {}",
                        format_date(today)
                    ),
                );
            } else if let Some(decided) = decided_on
                && born > decided
            {
                self.push(
                    path,
                    format!(
                        "{id}: its birth date (positions 7-14) is after decision.decided_on {}",
                        format_date(decided)
                    ),
                );
            }
        }
    }

    fn publication(
        &mut self,
        publication: Option<&Publication>,
        decided_on: Option<Date>,
        list: Option<ListKind>,
        severity: Option<Severity>,
    ) {
        let Some(p) = publication else {
            self.push("publication", "is required");
            return;
        };
        let starts_on = self.date("publication.starts_on", &p.starts_on, true);
        let ends_on = self.date("publication.ends_on", &p.ends_on, true);
        if let (Some(start), Some(decided)) = (starts_on, decided_on)
            && start < decided
        {
            self.push(
                "publication.starts_on",
                format!(
                    "{} is before decision.decided_on {}",
                    format_date(start),
                    format_date(decided)
                ),
            );
        }
        let (Some(start), Some(end)) = (starts_on, ends_on) else {
            return;
        };
        if end < start {
            self.push(
                "publication.ends_on",
                format!(
                    "{} is before publication.starts_on {}",
                    format_date(end),
                    format_date(start)
                ),
            );
            return;
        }
        let bound = match (list, severity) {
            (Some(ListKind::Red), _) => Some(("red-list records", 36, "3-year")),
            (_, Some(Severity::Minor)) => Some(("MINOR records", 3, "3-month")),
            (_, Some(Severity::General)) => Some(("GENERAL records", 12, "1-year")),
            (_, Some(Severity::Serious)) => Some(("SERIOUS records", 36, "3-year")),
            _ => None,
        };
        // Four-digit years keep the addition from overflowing; None would only mean "nothing to check".
        if let Some((what, months, span)) = bound
            && let Some(last) = start.checked_add_months(Months::new(months))
            && end > last
        {
            self.push(
                "publication.ends_on",
                format!(
                    "{} exceeds the {span} publication limit for {what}: from {} the last day is {}",
                    format_date(end),
                    format_date(start),
                    format_date(last)
                ),
            );
        }
    }

    fn status(&mut self, status: Option<&RecordStatus>, decided_on: Option<Date>) {
        let Some(s) = status else {
            self.push("status", "is required");
            return;
        };
        let kind = match StatusKind::try_from(s.kind) {
            Ok(StatusKind::Unspecified) => {
                self.push(
                    "status.kind",
                    "is unspecified; expected ACTIVE, UNDER_OBJECTION, REPAIRED or REVOKED",
                );
                None
            }
            Ok(kind) => Some(kind),
            Err(_) => {
                self.push("status.kind", format!("unknown status kind {}", s.kind));
                None
            }
        };
        let active = kind == Some(StatusKind::Active);
        self.text("status.reason", &s.reason, MAX_REASON_CHARS, Lines::Many);
        if active && !s.reason.is_empty() {
            self.push("status.reason", "must be empty for an active record");
        } else if !active && kind.is_some() && is_blank(&s.reason) {
            self.push(
                "status.reason",
                format!("is required for status {}", status_name(kind)),
            );
        }
        let required = kind.is_some() && !active;
        let effective_on = if required || !s.effective_on.is_empty() {
            self.date("status.effective_on", &s.effective_on, required)
        } else {
            None
        };
        if let (Some(effective), Some(decided)) = (effective_on, decided_on)
            && effective < decided
        {
            self.push(
                "status.effective_on",
                format!(
                    "{} is before decision.decided_on {}",
                    format_date(effective),
                    format_date(decided)
                ),
            );
        }
    }

    /// Parses a date field; an empty one is reported only when `required`.
    fn date(&mut self, path: &str, text: &str, required: bool) -> Option<Date> {
        if text.is_empty() {
            if required {
                self.push(path, "is required");
            }
            return None;
        }
        match parse_date(text) {
            Ok(d) => Some(d),
            Err(problem) => {
                self.push(path, problem);
                None
            }
        }
    }

    fn required_text(&mut self, path: &str, value: &str, max_chars: usize, lines: Lines) {
        if is_blank(value) {
            self.push(path, "is required");
        }
        self.text(path, value, max_chars, lines);
    }

    /// Checks length and characters of an optional text.
    fn text(&mut self, path: &str, value: &str, max_chars: usize, lines: Lines) {
        let chars = value.chars().count();
        if chars > max_chars {
            self.push(
                path,
                format!("is {chars} characters long, at most {max_chars}"),
            );
        }
        if let Some(c) = value
            .chars()
            .find(|&c| c.is_control() && !(lines == Lines::Many && c == '\n'))
        {
            let allowed = if lines == Lines::Many {
                "; only line feeds (U+000A) are allowed"
            } else {
                ""
            };
            self.push(
                path,
                format!("contains control character U+{:04X}{allowed}", u32::from(c)),
            );
        }
    }

    /// Checks a repeated text field: count, and each item non-blank, bounded, single-line.
    fn items(&mut self, path: &str, items: &[String]) {
        if items.len() > MAX_ITEMS {
            self.push(
                path,
                format!("has {} items, at most {MAX_ITEMS}", items.len()),
            );
        }
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            if is_blank(item) {
                self.push(&item_path, "is blank");
            }
            self.text(&item_path, item, MAX_ITEM_CHARS, Lines::One);
        }
    }
}

fn is_record_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn subject_phrase(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::LegalPerson => "a legal person",
        SubjectKind::IndividualBusiness => "an individual business",
        SubjectKind::NaturalPerson => "a natural person",
        SubjectKind::Unspecified => "a subject of unspecified kind",
    }
}

fn list_phrase(list: ListKind) -> &'static str {
    match list {
        ListKind::Red => "a red-list record",
        ListKind::Black => "a black-list record",
        ListKind::Watch => "a watch-list record",
        ListKind::Penalty => "a penalty disclosure",
        ListKind::Unspecified => "a record of unspecified list",
    }
}

fn list_phrase_of(list: Option<ListKind>) -> &'static str {
    list_phrase(list.unwrap_or(ListKind::Unspecified))
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Unspecified => "UNSPECIFIED",
        Severity::Minor => "MINOR",
        Severity::General => "GENERAL",
        Severity::Serious => "SERIOUS",
    }
}

fn status_name(s: Option<StatusKind>) -> &'static str {
    match s {
        Some(StatusKind::Active) => "ACTIVE",
        Some(StatusKind::UnderObjection) => "UNDER_OBJECTION",
        Some(StatusKind::Repaired) => "REPAIRED",
        Some(StatusKind::Revoked) => "REVOKED",
        Some(StatusKind::Unspecified) | None => "UNSPECIFIED",
    }
}

/// A possibly hostile input string, quoted and cut short for an error message.
/// Text as an error shows it: cut at 64 characters, and masked if it could be an ID number
/// in the wrong field (ARCHITECTURE.md: ID numbers are masked in every error).
fn shown(s: &str) -> String {
    const MAX: usize = 64;
    let s = &ident::masked_if_id_like(s);
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

/// A valid record id is shown as is; anything else quoted, so the message stays one readable line.
fn shown_record_id(id: &str) -> String {
    if !id.is_empty()
        && id.chars().count() <= MAX_RECORD_ID_CHARS
        && id.chars().all(is_record_id_char)
    {
        id.to_owned()
    } else {
        shown(id)
    }
}

fn joined(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::LegacyAllowList;
    use crate::pb::LegalRepresentative;

    use expect_test::{Expect, expect};
    use proptest::prelude::*;

    // First 17 characters of the fixtures' identifiers; check characters are computed.
    const COMPANY: &str = "91430100MA4L00003";
    const SHOP: &str = "92430102MA4P12345";
    const COURT: &str = "11430100006123456";
    const PERSON: &str = "43010219900307123";
    const REPRESENTATIVE: &str = "43010219850612001";

    fn uscc(first17: &str) -> String {
        let check = ident::uscc_check_char(first17).expect("fixture has 17 uscc characters");
        format!("{first17}{check}")
    }

    fn id_number(first17: &str) -> String {
        let check = ident::id_check_char(first17).expect("fixture has 17 digits");
        format!("{first17}{check}")
    }

    /// A valid ID number whose check character is `X`.
    fn id_number_ending_in_x() -> String {
        (0..1000)
            .map(|seq| format!("43010219900307{seq:03}"))
            .find(|first17| ident::id_check_char(first17) == Some('X'))
            .map(|first17| format!("{first17}X"))
            .expect("one sequence number in eleven gives X")
    }

    /// A USCC with a wrong check character.
    fn legacy_uscc() -> String {
        let good = uscc(COMPANY);
        let wrong = if good.ends_with('0') { '1' } else { '0' };
        format!("{COMPANY}{wrong}")
    }

    fn legal_person() -> Subject {
        Subject {
            kind: SubjectKind::LegalPerson as i32,
            name: "长沙某某建材有限公司".into(),
            uscc: uscc(COMPANY),
            id_number: String::new(),
            legal_representative: Some(LegalRepresentative {
                name: "张三".into(),
                id_number: id_number(REPRESENTATIVE),
            }),
        }
    }

    fn individual_business() -> Subject {
        Subject {
            kind: SubjectKind::IndividualBusiness as i32,
            name: "岳麓区某某小吃店".into(),
            uscc: uscc(SHOP),
            id_number: String::new(),
            legal_representative: Some(LegalRepresentative {
                name: "李四".into(),
                id_number: String::new(),
            }),
        }
    }

    fn natural_person() -> Subject {
        Subject {
            kind: SubjectKind::NaturalPerson as i32,
            name: "王五".into(),
            uscc: String::new(),
            id_number: id_number(PERSON),
            legal_representative: None,
        }
    }

    fn active() -> RecordStatus {
        RecordStatus {
            kind: StatusKind::Active as i32,
            reason: String::new(),
            effective_on: String::new(),
        }
    }

    fn authority(name: &str) -> Option<Authority> {
        Some(Authority {
            name: name.into(),
            uscc: uscc(COURT),
        })
    }

    fn publication(starts_on: &str, ends_on: &str) -> Option<Publication> {
        Some(Publication {
            starts_on: starts_on.into(),
            ends_on: ends_on.into(),
        })
    }

    /// 纳税信用A级: a red-list roster entry, no decision document.
    fn red() -> CreditRecord {
        CreditRecord {
            record_id: "CS-R-2026-0001".into(),
            version: 1,
            subject: Some(legal_person()),
            list: ListKind::Red as i32,
            category: "tax.credit_grade_a".into(),
            severity: Severity::Unspecified as i32,
            authority: authority("国家税务总局长沙市税务局"),
            decision: Some(Decision {
                decided_on: "2026-04-10".into(),
                legal_basis: "《纳税信用管理办法》".into(),
                ..Decision::default()
            }),
            publication: publication("2026-04-15", "2027-04-14"),
            status: Some(active()),
            data_source: "长沙市信用信息共享平台".into(),
            remarks: String::new(),
        }
    }

    /// 失信被执行人.
    fn black() -> CreditRecord {
        CreditRecord {
            record_id: "CS-B-2026-0001".into(),
            list: ListKind::Black as i32,
            category: "court.dishonest_debtor".into(),
            severity: Severity::Serious as i32,
            authority: authority("长沙市天心区人民法院"),
            decision: Some(Decision {
                document_number: "（2026）湘0103执1234号".into(),
                decided_on: "2026-04-02".into(),
                legal_basis: "《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条".into(),
                facts: "有履行能力而拒不履行生效法律文书确定的义务".into(),
                sanction_measures: vec!["限制高消费".into(), "限制参加政府采购活动".into()],
                ..Decision::default()
            }),
            publication: publication("2026-04-03", "2028-04-02"),
            ..red()
        }
    }

    /// 经营异常名录.
    fn watch() -> CreditRecord {
        CreditRecord {
            record_id: "CS-W-2026-0001".into(),
            list: ListKind::Watch as i32,
            category: "business.abnormal_operation".into(),
            severity: Severity::General as i32,
            authority: authority("长沙市市场监督管理局"),
            decision: Some(Decision {
                document_number: "长市监异〔2026〕17号".into(),
                decided_on: "2026-04-05".into(),
                legal_basis: "《企业信息公示暂行条例》第十七条".into(),
                facts: "未按规定期限公示2025年度报告".into(),
                ..Decision::default()
            }),
            publication: publication("2026-04-05", "2026-10-04"),
            ..red()
        }
    }

    /// 生态环境行政处罚 with a fine.
    fn penalty() -> CreditRecord {
        CreditRecord {
            record_id: "CS-P-2026-0001".into(),
            list: ListKind::Penalty as i32,
            category: "environment.administrative_penalty".into(),
            severity: Severity::General as i32,
            authority: authority("长沙市生态环境局"),
            decision: Some(Decision {
                document_number: "长环罚〔2026〕42号".into(),
                decided_on: "2026-04-08".into(),
                legal_basis: "《中华人民共和国大气污染防治法》第九十九条第二项".into(),
                facts: "超过大气污染物排放标准排放大气污染物。\n经监测，颗粒物排放浓度超标0.8倍。"
                    .into(),
                penalty_kinds: vec!["警告".into(), "罚款".into()],
                penalty_content: "警告，并处罚款人民币伍万元整".into(),
                fine_fen: 5_000_000,
                sanction_measures: Vec::new(),
            }),
            publication: publication("2026-04-10", "2027-04-09"),
            ..red()
        }
    }

    fn with(mut record: CreditRecord, change: impl FnOnce(&mut CreditRecord)) -> CreditRecord {
        change(&mut record);
        record
    }

    fn subject(r: &mut CreditRecord) -> &mut Subject {
        r.subject.as_mut().expect("fixture has a subject")
    }

    fn decision(r: &mut CreditRecord) -> &mut Decision {
        r.decision.as_mut().expect("fixture has a decision")
    }

    fn period(r: &mut CreditRecord) -> &mut Publication {
        r.publication.as_mut().expect("fixture has a publication")
    }

    fn status(r: &mut CreditRecord) -> &mut RecordStatus {
        r.status.as_mut().expect("fixture has a status")
    }

    /// The record published from `starts_on` to `ends_on` with `severity`, decided on `starts_on`.
    fn published(
        record: CreditRecord,
        severity: Severity,
        starts_on: &str,
        ends_on: &str,
    ) -> CreditRecord {
        with(record, |r| {
            r.severity = severity as i32;
            decision(r).decided_on = starts_on.into();
            r.publication = publication(starts_on, ends_on);
        })
    }

    /// The reference date of the tables: after every fixture's decision.
    const TODAY: &str = "2026-05-20";

    /// The four capitals' rules with `allow_list`.
    fn rules(allow_list: &LegacyAllowList) -> Rules {
        Rules {
            legacy_uscc_allow_list: allow_list.clone(),
            ..Rules::for_members([
                ("changsha", "430100"),
                ("wuhan", "420100"),
                ("hefei", "340100"),
                ("nanchang", "360100"),
            ])
        }
    }

    /// A validator for records Changsha publishes on [`TODAY`].
    fn validator(mode: Mode, rules: &Rules) -> Validator<'_> {
        Validator {
            catalogue: Catalogue::builtin(),
            rules,
            mode,
            origin: "changsha",
            today: crate::date::parse_date(TODAY).expect("a date"),
        }
    }

    fn outcome(mode: Mode, allow_list: &LegacyAllowList, record: &CreditRecord) -> String {
        let rules = rules(allow_list);
        let validator = validator(mode, &rules);
        match validator.validate(record) {
            Ok(v) => {
                let keys: Vec<String> = v.subject_keys.iter().map(ToString::to_string).collect();
                format!(
                    "ok keys=[{}] unknown_category={} legacy_uscc={}",
                    keys.join(","),
                    v.unknown_category,
                    v.legacy_uscc
                )
            }
            Err(e) => e.to_string(),
        }
    }

    fn check(record: CreditRecord, expect: Expect) {
        expect.assert_eq(&outcome(Mode::Publish, &LegacyAllowList::empty(), &record));
    }

    /// Found by the `record_structured` fuzz target: an ID number in a field that holds no
    /// identifier (a column mapped wrong) was echoed in full by the error.
    #[test]
    fn an_id_number_in_the_wrong_field_is_masked_in_errors() {
        let id = id_number(PERSON);
        check(
            with(penalty(), |r| {
                status(r).effective_on = id.clone();
                r.category = id.clone();
            }),
            expect![[
                r#"record CS-P-2026-0001: category: "4301**********1234" is not a catalogue code: needs at least two dot-separated segments, e.g. "tax.major_violation"; status.effective_on: "4301**********1234" is not a date of the form YYYY-MM-DD"#
            ]],
        );
    }

    /// Found by the `record_structured` fuzz target: a USCC that is also a valid ID number was
    /// shown in full by the authority's errors.
    #[test]
    fn a_uscc_shaped_like_an_id_number_is_masked_in_errors() {
        // Valid as an ID number (born 1808-11-27, check 0) and as a USCC (check 0), by hand.
        let both = "999999180811271250";
        check(
            with(penalty(), |r| {
                r.authority.as_mut().expect("fixture has an authority").uscc = both.into();
            }),
            expect![
                "record CS-P-2026-0001: authority.uscc: 9999**********1250 is not a government body's code, which starts with registration authority code 1; authority.uscc: 9999**********1250 is registered in division 99****, outside changsha (430100, division prefix 4301); a city publishes only its own authorities' decisions"
            ],
        );
    }

    fn check_relay(record: CreditRecord, expect: Expect) {
        expect.assert_eq(&outcome(Mode::Relay, &LegacyAllowList::empty(), &record));
    }

    #[test]
    fn fixtures_are_valid() {
        check(
            red(),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            black(),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            watch(),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            penalty(),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
    }

    #[test]
    fn valid_for_every_list_and_subject_kind() {
        let cases = [
            (red(), legal_person(), "tax.credit_grade_a"),
            (red(), individual_business(), "tax.credit_grade_a"),
            (red(), natural_person(), "public_welfare.blood_donation"),
            (black(), legal_person(), "court.dishonest_debtor"),
            (black(), individual_business(), "court.dishonest_debtor"),
            (black(), natural_person(), "court.dishonest_debtor"),
            (watch(), legal_person(), "court.consumption_restriction"),
            (watch(), individual_business(), "tax.arrears"),
            (watch(), natural_person(), "tourism.uncivilised_conduct"),
            (
                penalty(),
                legal_person(),
                "environment.administrative_penalty",
            ),
            (
                penalty(),
                individual_business(),
                "food_drug.administrative_penalty",
            ),
            (
                penalty(),
                natural_person(),
                "work_safety.administrative_penalty",
            ),
        ];
        let got: String = cases
            .into_iter()
            .map(|(record, subject, category)| {
                let record = with(record, |r| {
                    r.subject = Some(subject);
                    r.category = category.into();
                });
                let allow = LegacyAllowList::empty();
                format!(
                    "{} {}\n",
                    record.record_id,
                    outcome(Mode::Publish, &allow, &record)
                )
            })
            .collect();
        expect![[r#"
            CS-R-2026-0001 ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            CS-R-2026-0001 ok keys=[92430102MA4P12345U] unknown_category=false legacy_uscc=false
            CS-R-2026-0001 ok keys=[4301**********1234] unknown_category=false legacy_uscc=false
            CS-B-2026-0001 ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            CS-B-2026-0001 ok keys=[92430102MA4P12345U] unknown_category=false legacy_uscc=false
            CS-B-2026-0001 ok keys=[4301**********1234] unknown_category=false legacy_uscc=false
            CS-W-2026-0001 ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            CS-W-2026-0001 ok keys=[92430102MA4P12345U] unknown_category=false legacy_uscc=false
            CS-W-2026-0001 ok keys=[4301**********1234] unknown_category=false legacy_uscc=false
            CS-P-2026-0001 ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            CS-P-2026-0001 ok keys=[92430102MA4P12345U] unknown_category=false legacy_uscc=false
            CS-P-2026-0001 ok keys=[4301**********1234] unknown_category=false legacy_uscc=false
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn record_id_and_version() {
        check(
            with(black(), |r| r.record_id.clear()),
            expect![[r#"record "": record_id: is required"#]],
        );
        check(
            with(black(), |r| r.record_id = "CS 17/a".into()),
            expect![[
                r#"record "CS 17/a": record_id: contains ' ' (U+0020); only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed"#
            ]],
        );
        check(
            with(black(), |r| r.record_id = "A".repeat(65)),
            expect![[
                r#"record "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"…: record_id: is 65 characters long, at most 64"#
            ]],
        );
        check(
            with(black(), |r| r.record_id = "A".repeat(64)),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| r.record_id = "wuhan:2026.01_x-9".into()),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| r.record_id = "记录1".into()),
            expect![[
                r#"record "记录1": record_id: contains '记' (U+8BB0); only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed"#
            ]],
        );
        check(
            with(black(), |r| r.version = 0),
            expect!["record CS-B-2026-0001: version: must be at least 1"],
        );
    }

    #[test]
    fn subject_rules() {
        check(
            with(black(), |r| r.subject = None),
            expect!["record CS-B-2026-0001: subject: is required"],
        );
        check(
            with(black(), |r| {
                subject(r).kind = SubjectKind::Unspecified as i32
            }),
            expect![
                "record CS-B-2026-0001: subject.kind: is unspecified; expected LEGAL_PERSON, INDIVIDUAL_BUSINESS or NATURAL_PERSON"
            ],
        );
        check(
            with(black(), |r| subject(r).kind = 9),
            expect!["record CS-B-2026-0001: subject.kind: unknown subject kind 9"],
        );
        check(
            with(black(), |r| subject(r).name = " \n".into()),
            expect![
                "record CS-B-2026-0001: subject.name: is required; subject.name: contains control character U+000A"
            ],
        );
        // Legal persons and individual businesses: a USCC, no ID number.
        check(
            with(black(), |r| subject(r).uscc.clear()),
            expect!["record CS-B-2026-0001: subject.uscc: is required for a legal person"],
        );
        check(
            with(black(), |r| subject(r).uscc = format!("{COMPANY}X")),
            expect![[
                r#"record CS-B-2026-0001: subject.uscc: uscc "91430100MA4L00003X": check character is X, expected Q"#
            ]],
        );
        check(
            with(black(), |r| subject(r).uscc = "91430100MA4L0000".into()),
            expect![[
                r#"record CS-B-2026-0001: subject.uscc: uscc "91430100MA4L0000": 16 characters, expected 18"#
            ]],
        );
        check(
            with(black(), |r| subject(r).id_number = id_number(PERSON)),
            expect![
                "record CS-B-2026-0001: subject.id_number: must be empty for a legal person, which is identified by its uscc"
            ],
        );
        check(
            with(black(), |r| subject(r).uscc = uscc(SHOP)),
            expect![
                "record CS-B-2026-0001: subject.uscc: 92430102MA4P12345U is an individual business's code (92…), not a legal person's"
            ],
        );
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    uscc: uscc(COMPANY),
                    ..individual_business()
                });
            }),
            expect![
                "record CS-B-2026-0001: subject.uscc: 91430100MA4L00003Q is not an individual business's code, which starts with 92"
            ],
        );
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    uscc: String::new(),
                    ..individual_business()
                });
            }),
            expect!["record CS-B-2026-0001: subject.uscc: is required for an individual business"],
        );
        // Natural persons: an ID number, no USCC, no legal representative.
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    id_number: String::new(),
                    ..natural_person()
                })
            }),
            expect!["record CS-B-2026-0001: subject.id_number: is required for a natural person"],
        );
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    id_number: format!("{PERSON}0"),
                    ..natural_person()
                });
            }),
            expect![[
                r#"record CS-B-2026-0001: subject.id_number: id number "4301**********1230": check character is 0, expected 4"#
            ]],
        );
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    id_number: "430102199013071234".into(),
                    ..natural_person()
                })
            }),
            expect![[
                r#"record CS-B-2026-0001: subject.id_number: id number "4301**********1234": positions 7-14 are not a birth date (YYYYMMDD, a calendar date in 1800-2099)"#
            ]],
        );
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    uscc: uscc(COMPANY),
                    ..natural_person()
                })
            }),
            expect![
                "record CS-B-2026-0001: subject.uscc: must be empty for a natural person, who is identified by an id_number"
            ],
        );
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    legal_representative: legal_person().legal_representative,
                    ..natural_person()
                });
            }),
            expect![
                "record CS-B-2026-0001: subject.legal_representative: must be absent for a natural person"
            ],
        );
        // Legal representative: a name, and a valid ID number if one is given.
        check(
            with(black(), |r| {
                subject(r).legal_representative = Some(LegalRepresentative::default())
            }),
            expect!["record CS-B-2026-0001: subject.legal_representative.name: is required"],
        );
        check(
            with(black(), |r| {
                subject(r).legal_representative = Some(LegalRepresentative {
                    name: "张三".into(),
                    id_number: format!("{REPRESENTATIVE}0"),
                });
            }),
            expect![[
                r#"record CS-B-2026-0001: subject.legal_representative.id_number: id number "4301**********0010": check character is 0, expected 3"#
            ]],
        );
        check(
            with(black(), |r| subject(r).legal_representative = None),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        // Unspecified kind: identifiers are still checked.
        check(
            with(black(), |r| {
                r.subject = Some(Subject {
                    kind: 0,
                    id_number: "12345".into(),
                    ..legal_person()
                });
            }),
            expect![[
                r#"record CS-B-2026-0001: subject.kind: is unspecified; expected LEGAL_PERSON, INDIVIDUAL_BUSINESS or NATURAL_PERSON; subject.id_number: id number "*2345": 5 characters, expected 18"#
            ]],
        );
    }

    #[test]
    fn list_and_severity() {
        check(
            with(black(), |r| r.list = ListKind::Unspecified as i32),
            expect![
                "record CS-B-2026-0001: list: is unspecified; expected RED, BLACK, WATCH or PENALTY"
            ],
        );
        check(
            with(black(), |r| r.list = 7),
            expect!["record CS-B-2026-0001: list: unknown list kind 7"],
        );
        check(
            with(red(), |r| r.severity = Severity::Minor as i32),
            expect![
                "record CS-R-2026-0001: severity: must be unspecified on a red-list record, got MINOR"
            ],
        );
        check(
            with(black(), |r| r.severity = Severity::Unspecified as i32),
            expect![
                "record CS-B-2026-0001: severity: is required on a black-list record (MINOR, GENERAL or SERIOUS)"
            ],
        );
        check(
            with(watch(), |r| r.severity = Severity::Unspecified as i32),
            expect![
                "record CS-W-2026-0001: severity: is required on a watch-list record (MINOR, GENERAL or SERIOUS)"
            ],
        );
        check(
            with(penalty(), |r| r.severity = Severity::Unspecified as i32),
            expect![
                "record CS-P-2026-0001: severity: is required on a penalty disclosure (MINOR, GENERAL or SERIOUS)"
            ],
        );
        check(
            with(penalty(), |r| r.severity = 4),
            expect!["record CS-P-2026-0001: severity: unknown severity 4"],
        );
    }

    #[test]
    fn category_rules() {
        check(
            with(black(), |r| r.category.clear()),
            expect!["record CS-B-2026-0001: category: is required"],
        );
        check(
            with(black(), |r| r.category = "Court.Dishonest".into()),
            expect![[
                r#"record CS-B-2026-0001: category: "Court.Dishonest" is not a catalogue code: segment "Court" must be a lowercase ascii letter followed by lowercase letters, digits or _"#
            ]],
        );
        check(
            with(black(), |r| r.category = "court".into()),
            expect![[
                r#"record CS-B-2026-0001: category: "court" is not a catalogue code: needs at least two dot-separated segments, e.g. "tax.major_violation""#
            ]],
        );
        check(
            with(black(), |r| {
                r.category = format!("court.{}", "x".repeat(200))
            }),
            expect![[
                r#"record CS-B-2026-0001: category: "court.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"… is not a catalogue code: is 206 bytes long, at most 64"#
            ]],
        );
        check(
            with(black(), |r| r.category = "court.future_category".into()),
            expect![[
                r#"record CS-B-2026-0001: category: unknown category "court.future_category" (catalogue 2026.1)"#
            ]],
        );
        check(
            with(black(), |r| r.category = "tax.credit_grade_a".into()),
            expect![[
                r#"record CS-B-2026-0001: category: "tax.credit_grade_a" may be used on lists red, not black"#
            ]],
        );
        check(
            with(black(), |r| r.category = "food_drug.industry_ban".into()),
            expect![[
                r#"record CS-B-2026-0001: category: "food_drug.industry_ban" may be used for subjects natural_person, not legal_person"#
            ]],
        );
        check(
            with(red(), |r| r.category = "tourism.uncivilised_conduct".into()),
            expect![[
                r#"record CS-R-2026-0001: category: "tourism.uncivilised_conduct" may be used on lists watch, not red; category: "tourism.uncivilised_conduct" may be used for subjects natural_person, not legal_person"#
            ]],
        );
    }

    #[test]
    fn relay_accepts_unknown_categories() {
        let future = with(black(), |r| r.category = "court.future_category".into());
        check_relay(
            future.clone(),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=true legacy_uscc=false"],
        );
        // A peer's new category may be used on any list and subject: this node cannot know.
        check_relay(
            with(future.clone(), |r| {
                r.list = ListKind::Red as i32;
                r.severity = Severity::Unspecified as i32;
            }),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=true legacy_uscc=false"],
        );
        check_relay(
            with(future, |r| r.subject = Some(natural_person())),
            expect!["ok keys=[4301**********1234] unknown_category=true legacy_uscc=false"],
        );
        // Known categories keep their rules, and a code must still look like one.
        check_relay(
            with(black(), |r| r.category = "tax.credit_grade_a".into()),
            expect![[
                r#"record CS-B-2026-0001: category: "tax.credit_grade_a" may be used on lists red, not black"#
            ]],
        );
        check_relay(
            with(black(), |r| r.category = "Court Dishonest".into()),
            expect![[
                r#"record CS-B-2026-0001: category: "Court Dishonest" is not a catalogue code: needs at least two dot-separated segments, e.g. "tax.major_violation""#
            ]],
        );
        // Every other rule holds in relay mode too.
        check_relay(
            with(black(), |r| r.version = 0),
            expect!["record CS-B-2026-0001: version: must be at least 1"],
        );
    }

    #[test]
    fn authority_rules() {
        check(
            with(black(), |r| r.authority = None),
            expect!["record CS-B-2026-0001: authority: is required"],
        );
        check(
            with(black(), |r| r.authority = Some(Authority::default())),
            expect![
                "record CS-B-2026-0001: authority.name: is required; authority.uscc: is required"
            ],
        );
        check(
            with(black(), |r| {
                r.authority = Some(Authority {
                    name: "某公司".into(),
                    uscc: uscc(COMPANY),
                })
            }),
            expect![
                "record CS-B-2026-0001: authority.uscc: 91430100MA4L00003Q is not a government body's code, which starts with registration authority code 1"
            ],
        );
        check(
            with(black(), |r| {
                r.authority = Some(Authority {
                    name: "某法院".into(),
                    uscc: format!("{COURT}0"),
                })
            }),
            expect![[
                r#"record CS-B-2026-0001: authority.uscc: uscc "1143**********4560": check character is 0, expected K"#
            ]],
        );
    }

    #[test]
    fn decision_rules() {
        check(
            with(black(), |r| r.decision = None),
            expect!["record CS-B-2026-0001: decision: is required"],
        );
        check(
            with(black(), |r| decision(r).document_number.clear()),
            expect![
                "record CS-B-2026-0001: decision.document_number: is required on a black-list record"
            ],
        );
        check(
            with(watch(), |r| decision(r).document_number = "  ".into()),
            expect![
                "record CS-W-2026-0001: decision.document_number: is required on a watch-list record"
            ],
        );
        check(
            with(penalty(), |r| decision(r).document_number.clear()),
            expect![
                "record CS-P-2026-0001: decision.document_number: is required on a penalty disclosure"
            ],
        );
        check(
            with(red(), |r| {
                decision(r).document_number = "湘税〔2026〕1号".into()
            }),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| decision(r).decided_on.clear()),
            expect!["record CS-B-2026-0001: decision.decided_on: is required"],
        );
        check(
            with(black(), |r| decision(r).decided_on = "2026-02-30".into()),
            expect![[
                r#"record CS-B-2026-0001: decision.decided_on: "2026-02-30" is not a calendar date"#
            ]],
        );
        check(
            with(black(), |r| decision(r).decided_on = "2026/04/02".into()),
            expect![[
                r#"record CS-B-2026-0001: decision.decided_on: "2026/04/02" is not a date of the form YYYY-MM-DD"#
            ]],
        );
        check(
            with(penalty(), |r| decision(r).legal_basis.clear()),
            expect![
                "record CS-P-2026-0001: decision.legal_basis: is required on a penalty disclosure"
            ],
        );
        check(
            with(black(), |r| decision(r).legal_basis.clear()),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(penalty(), |r| decision(r).facts.clear()),
            expect!["record CS-P-2026-0001: decision.facts: is required on a penalty disclosure"],
        );
        check(
            with(black(), |r| decision(r).facts.clear()),
            expect!["record CS-B-2026-0001: decision.facts: is required on a black-list record"],
        );
        check(
            with(watch(), |r| decision(r).facts.clear()),
            expect!["record CS-W-2026-0001: decision.facts: is required on a watch-list record"],
        );
        check(
            with(red(), |r| decision(r).facts.clear()),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_kinds.clear();
                decision(r).fine_fen = 0;
            }),
            expect![
                "record CS-P-2026-0001: decision.penalty_kinds: at least one is required on a penalty disclosure, e.g. 警告 or 罚款"
            ],
        );
        check(
            with(penalty(), |r| decision(r).penalty_kinds.push(" ".into())),
            expect!["record CS-P-2026-0001: decision.penalty_kinds[2]: is blank"],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_kinds.push("责令改正\n".into())
            }),
            expect![
                "record CS-P-2026-0001: decision.penalty_kinds[2]: contains control character U+000A"
            ],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_kinds.push("没".repeat(201))
            }),
            expect![
                "record CS-P-2026-0001: decision.penalty_kinds[2]: is 201 characters long, at most 200"
            ],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_kinds.resize(33, "警告".into())
            }),
            expect!["record CS-P-2026-0001: decision.penalty_kinds: has 33 items, at most 32"],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_kinds.resize(32, "警告".into())
            }),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| decision(r).sanction_measures[1].clear()),
            expect!["record CS-B-2026-0001: decision.sanction_measures[1]: is blank"],
        );
        check(
            with(black(), |r| {
                decision(r)
                    .sanction_measures
                    .resize(33, "限制高消费".into())
            }),
            expect!["record CS-B-2026-0001: decision.sanction_measures: has 33 items, at most 32"],
        );
    }

    #[test]
    fn fines() {
        check(
            with(penalty(), |r| decision(r).fine_fen = -1),
            expect!["record CS-P-2026-0001: decision.fine_fen: is negative (-1)"],
        );
        check(
            with(penalty(), |r| decision(r).fine_fen = MAX_FINE_FEN),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(penalty(), |r| decision(r).fine_fen = MAX_FINE_FEN + 1),
            expect![
                "record CS-P-2026-0001: decision.fine_fen: is 1000000000001 fen, above the sanity bound of 1000000000000 fen (10 billion yuan)"
            ],
        );
        check(
            with(penalty(), |r| decision(r).fine_fen = 0),
            expect![
                "record CS-P-2026-0001: decision.fine_fen: is 0 but penalty_kinds includes 罚款; give the fine in fen"
            ],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_kinds = vec!["警告".into()]
            }),
            expect![
                "record CS-P-2026-0001: decision.fine_fen: is 5000000 fen but penalty_kinds does not include 罚款"
            ],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_kinds = vec!["警告".into()];
                decision(r).fine_fen = 0;
            }),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| decision(r).fine_fen = 100),
            expect![
                "record CS-B-2026-0001: decision.fine_fen: is 100 fen but penalty_kinds does not include 罚款"
            ],
        );
    }

    #[test]
    fn publication_order() {
        check(
            with(black(), |r| r.publication = None),
            expect!["record CS-B-2026-0001: publication: is required"],
        );
        check(
            with(black(), |r| r.publication = Some(Publication::default())),
            expect![
                "record CS-B-2026-0001: publication.starts_on: is required; publication.ends_on: is required"
            ],
        );
        check(
            with(black(), |r| period(r).ends_on = "2028-4-2".into()),
            expect![[
                r#"record CS-B-2026-0001: publication.ends_on: "2028-4-2" is not a date of the form YYYY-MM-DD"#
            ]],
        );
        check(
            with(black(), |r| period(r).starts_on = "2026-04-01".into()),
            expect![
                "record CS-B-2026-0001: publication.starts_on: 2026-04-01 is before decision.decided_on 2026-04-02"
            ],
        );
        check(
            with(black(), |r| period(r).starts_on = "2026-04-02".into()),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| period(r).ends_on = "2026-04-02".into()),
            expect![
                "record CS-B-2026-0001: publication.ends_on: 2026-04-02 is before publication.starts_on 2026-04-03"
            ],
        );
        check(
            with(black(), |r| period(r).ends_on = "2026-04-03".into()),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
    }

    #[test]
    fn order_36_tier_bounds() {
        // The last day allowed is the corresponding day of the bound's final month (inclusive).
        check(
            published(penalty(), Severity::Minor, "2026-04-01", "2026-07-01"),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            published(penalty(), Severity::Minor, "2026-04-01", "2026-07-02"),
            expect![
                "record CS-P-2026-0001: publication.ends_on: 2026-07-02 exceeds the 3-month publication limit for MINOR records: from 2026-04-01 the last day is 2026-07-01"
            ],
        );
        check(
            published(penalty(), Severity::General, "2026-04-01", "2027-04-01"),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            published(penalty(), Severity::General, "2026-04-01", "2027-04-02"),
            expect![
                "record CS-P-2026-0001: publication.ends_on: 2027-04-02 exceeds the 1-year publication limit for GENERAL records: from 2026-04-01 the last day is 2027-04-01"
            ],
        );
        check(
            published(black(), Severity::Serious, "2026-04-01", "2029-04-01"),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            published(black(), Severity::Serious, "2026-04-01", "2029-04-02"),
            expect![
                "record CS-B-2026-0001: publication.ends_on: 2029-04-02 exceeds the 3-year publication limit for SERIOUS records: from 2026-04-01 the last day is 2029-04-01"
            ],
        );
        check(
            published(red(), Severity::Unspecified, "2026-04-01", "2029-04-01"),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            published(red(), Severity::Unspecified, "2026-04-01", "2029-04-02"),
            expect![
                "record CS-R-2026-0001: publication.ends_on: 2029-04-02 exceeds the 3-year publication limit for red-list records: from 2026-04-01 the last day is 2029-04-01"
            ],
        );
        // No corresponding day: the final month's last day.
        check(
            published(watch(), Severity::Minor, "2025-11-30", "2026-02-28"),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            published(watch(), Severity::Minor, "2025-11-30", "2026-03-01"),
            expect![
                "record CS-W-2026-0001: publication.ends_on: 2026-03-01 exceeds the 3-month publication limit for MINOR records: from 2025-11-30 the last day is 2026-02-28"
            ],
        );
        check(
            published(watch(), Severity::General, "2024-02-29", "2025-02-28"),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            published(watch(), Severity::General, "2024-02-29", "2025-03-01"),
            expect![
                "record CS-W-2026-0001: publication.ends_on: 2025-03-01 exceeds the 1-year publication limit for GENERAL records: from 2024-02-29 the last day is 2025-02-28"
            ],
        );
        // A one-day publication is fine.
        check(
            published(watch(), Severity::Minor, "2026-04-01", "2026-04-01"),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
    }

    /// A natural person's record with the ID number `first17` + its check character.
    fn about_person(first17: &str) -> CreditRecord {
        with(black(), |r| {
            r.subject = Some(Subject {
                id_number: id_number(first17),
                ..natural_person()
            })
        })
    }

    /// The black-list fixture decided and published from `decided_on` for a year.
    fn decided(decided_on: &str) -> CreditRecord {
        let end = crate::date::parse_date(decided_on)
            .expect("a date")
            .checked_add_months(Months::new(12))
            .expect("in range");
        with(black(), |r| {
            decision(r).decided_on = decided_on.into();
            r.publication = publication(decided_on, &format_date(end));
        })
    }

    #[test]
    fn calendar_rules() {
        let empty = LegacyAllowList::empty();
        let mut table = Vec::new();
        // Reference date 2026-05-20 (TODAY); the black-list fixture is decided on 2026-04-02.
        for (case, record) in [
            ("decided tomorrow", decided("2026-05-21")),
            ("decided in two days", decided("2026-05-22")),
            ("decided in 2030", decided("2030-01-02")),
            ("born 1990", about_person(PERSON)),
            ("born 2090", about_person("43010220900307123")),
            ("born after the decision", about_person("43010220260410123")),
            (
                "born on the decision day",
                about_person("43010220260402123"),
            ),
            (
                "representative born after the decision",
                with(black(), |r| {
                    subject(r)
                        .legal_representative
                        .as_mut()
                        .expect("fixture")
                        .id_number = id_number("43010220260501001")
                }),
            ),
            (
                "repair scheduled for 2030",
                with(black(), |r| {
                    *status(r) = RecordStatus {
                        kind: StatusKind::Repaired as i32,
                        reason: "信用修复".into(),
                        effective_on: "2030-01-01".into(),
                    }
                }),
            ),
            (
                "repair effective before the decision",
                with(black(), |r| {
                    *status(r) = RecordStatus {
                        kind: StatusKind::Repaired as i32,
                        reason: "信用修复".into(),
                        effective_on: "2026-04-01".into(),
                    }
                }),
            ),
        ] {
            table.push(format!(
                "{case}: {}",
                outcome(Mode::Publish, &empty, &record)
            ));
        }
        expect![[r#"
            decided tomorrow: ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            decided in two days: record CS-B-2026-0001: decision.decided_on: 2026-05-22 is in the future: the latest decision date on 2026-05-20 is 2026-05-21 (1 day(s) ahead)
            decided in 2030: record CS-B-2026-0001: decision.decided_on: 2030-01-02 is in the future: the latest decision date on 2026-05-20 is 2026-05-21 (1 day(s) ahead)
            born 1990: ok keys=[4301**********1234] unknown_category=false legacy_uscc=false
            born 2090: record CS-B-2026-0001: subject.id_number: 4301**********1230: its birth date (positions 7-14) is in the future on 2026-05-20
            born after the decision: record CS-B-2026-0001: subject.id_number: 4301**********1237: its birth date (positions 7-14) is after decision.decided_on 2026-04-02
            born on the decision day: ok keys=[4301**********1237] unknown_category=false legacy_uscc=false
            representative born after the decision: record CS-B-2026-0001: subject.legal_representative.id_number: 4301**********0011: its birth date (positions 7-14) is after decision.decided_on 2026-04-02
            repair scheduled for 2030: ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            repair effective before the decision: record CS-B-2026-0001: status.effective_on: 2026-04-01 is before decision.decided_on 2026-04-02"#]].assert_eq(&table.join("\n"));

        // On relay the reference date is the day the origin logged the entry, not the
        // receiver's today: a decision dated 2026-06-01 is valid in an entry logged on
        // 2026-05-31, on any day it is checked, and invalid in one logged on 2026-05-20.
        let rules = rules(&empty);
        let relay = validator(Mode::Relay, &rules);
        let record = decided("2026-06-01");
        let on = |date: &str| match relay
            .on(crate::date::parse_date(date).expect("a date"))
            .validate(&record)
        {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        expect![[r#"
            logged 2026-05-31: ok
            logged 2026-05-20: record CS-B-2026-0001: decision.decided_on: 2026-06-01 is in the future: the latest decision date on 2026-05-20 is 2026-05-21 (1 day(s) ahead)"#]].assert_eq(&format!(
            "logged 2026-05-31: {}\nlogged 2026-05-20: {}",
            on("2026-05-31"),
            on("2026-05-20")
        ));
    }

    #[test]
    fn consortium_rules() {
        let empty = LegacyAllowList::empty();
        let mut table = Vec::new();
        for (case, record) in [
            ("changsha court", black()),
            (
                "district office 430103",
                with(black(), |r| {
                    r.authority = Some(Authority {
                        name: "长沙市天心区市场监督管理局".into(),
                        uscc: uscc("11430103006123456"),
                    })
                }),
            ),
            (
                "wuhan authority",
                with(black(), |r| {
                    r.authority = Some(Authority {
                        name: "武汉市中级人民法院".into(),
                        uscc: uscc("11420100006123456"),
                    })
                }),
            ),
            (
                "hunan provincial authority 430000",
                with(black(), |r| {
                    r.authority = Some(Authority {
                        name: "湖南省市场监督管理局".into(),
                        uscc: uscc("11430000006123456"),
                    })
                }),
            ),
            (
                "id changsha-17",
                with(black(), |r| r.record_id = "changsha-17".into()),
            ),
            (
                "id wuhan-17",
                with(black(), |r| r.record_id = "wuhan-17".into()),
            ),
            (
                "id WuHan-17",
                with(black(), |r| r.record_id = "WuHan-17".into()),
            ),
            (
                "id wuhanese-17",
                with(black(), |r| r.record_id = "wuhanese-17".into()),
            ),
            (
                "id hefei.17",
                with(black(), |r| r.record_id = "hefei.17".into()),
            ),
        ] {
            table.push(format!(
                "{case}: {}",
                outcome(Mode::Publish, &empty, &record)
            ));
        }
        expect![[r#"
            changsha court: ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            district office 430103: ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            wuhan authority: record CS-B-2026-0001: authority.uscc: 11420100006123456F is registered in division 420100, outside changsha (430100, division prefix 4301); a city publishes only its own authorities' decisions
            hunan provincial authority 430000: record CS-B-2026-0001: authority.uscc: 11430000006123456E is registered in division 430000, outside changsha (430100, division prefix 4301); a city publishes only its own authorities' decisions
            id changsha-17: ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            id wuhan-17: record wuhan-17: record_id: wuhan-17 is in wuhan's namespace (wuhan-…); changsha publishes only record ids outside other members' namespaces
            id WuHan-17: record WuHan-17: record_id: WuHan-17 is in wuhan's namespace (wuhan-…); changsha publishes only record ids outside other members' namespaces
            id wuhanese-17: ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false
            id hefei.17: ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"#]].assert_eq(&table.join("\n"));

        let rules = rules(&empty);
        let stranger = Validator {
            origin: "shanghai",
            ..validator(Mode::Relay, &rules)
        };
        expect![[r#"record CS-B-2026-0001: authority.uscc: cannot check its division: publishing city "shanghai" is not a member in the consortium rules"#]].assert_eq(&stranger.validate(&black()).expect_err("no division").to_string());
    }

    #[test]
    fn status_rules() {
        check(
            with(black(), |r| r.status = None),
            expect!["record CS-B-2026-0001: status: is required"],
        );
        check(
            with(black(), |r| status(r).kind = StatusKind::Unspecified as i32),
            expect![
                "record CS-B-2026-0001: status.kind: is unspecified; expected ACTIVE, UNDER_OBJECTION, REPAIRED or REVOKED"
            ],
        );
        check(
            with(black(), |r| status(r).kind = 8),
            expect!["record CS-B-2026-0001: status.kind: unknown status kind 8"],
        );
        check(
            with(black(), |r| status(r).reason = "异议已驳回".into()),
            expect!["record CS-B-2026-0001: status.reason: must be empty for an active record"],
        );
        check(
            with(black(), |r| status(r).effective_on = "2026-05-01".into()),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| status(r).effective_on = "2026-04-01".into()),
            expect![
                "record CS-B-2026-0001: status.effective_on: 2026-04-01 is before decision.decided_on 2026-04-02"
            ],
        );
        check(
            with(black(), |r| status(r).effective_on = "tomorrow".into()),
            expect![[
                r#"record CS-B-2026-0001: status.effective_on: "tomorrow" is not a date of the form YYYY-MM-DD"#
            ]],
        );
        for kind in [
            StatusKind::UnderObjection,
            StatusKind::Repaired,
            StatusKind::Revoked,
        ] {
            let bare = with(black(), |r| status(r).kind = kind as i32);
            let complete = with(bare.clone(), |r| {
                status(r).reason = "当事人已履行全部义务，申请信用修复".into();
                status(r).effective_on = "2026-06-01".into();
            });
            let outcomes = [
                outcome(Mode::Publish, &LegacyAllowList::empty(), &bare),
                outcome(Mode::Publish, &LegacyAllowList::empty(), &complete),
            ];
            let expected = match kind {
                StatusKind::UnderObjection => expect![[r#"
                    record CS-B-2026-0001: status.reason: is required for status UNDER_OBJECTION; status.effective_on: is required
                    ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"#]],
                StatusKind::Repaired => expect![[r#"
                    record CS-B-2026-0001: status.reason: is required for status REPAIRED; status.effective_on: is required
                    ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"#]],
                _ => expect![[r#"
                    record CS-B-2026-0001: status.reason: is required for status REVOKED; status.effective_on: is required
                    ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"#]],
            };
            expected.assert_eq(&outcomes.join("\n"));
        }
        check(
            with(black(), |r| {
                r.status = Some(RecordStatus {
                    kind: StatusKind::Revoked as i32,
                    reason: "原决定被行政复议撤销".into(),
                    effective_on: "2026-04-01".into(),
                });
            }),
            expect![
                "record CS-B-2026-0001: status.effective_on: 2026-04-01 is before decision.decided_on 2026-04-02"
            ],
        );
    }

    #[test]
    fn text_limits_count_characters_and_reject_control_characters() {
        // 200 three-byte characters are within the 200-character limit.
        check(
            with(black(), |r| subject(r).name = "某".repeat(200)),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| subject(r).name = "某".repeat(201)),
            expect!["record CS-B-2026-0001: subject.name: is 201 characters long, at most 200"],
        );
        check(
            with(black(), |r| subject(r).name = "长沙\u{7}公司".into()),
            expect!["record CS-B-2026-0001: subject.name: contains control character U+0007"],
        );
        check(
            with(black(), |r| subject(r).name = "长沙\n公司".into()),
            expect!["record CS-B-2026-0001: subject.name: contains control character U+000A"],
        );
        check(
            with(black(), |r| {
                subject(r)
                    .legal_representative
                    .as_mut()
                    .expect("fixture")
                    .name = "张".repeat(201)
            }),
            expect![
                "record CS-B-2026-0001: subject.legal_representative.name: is 201 characters long, at most 200"
            ],
        );
        check(
            with(black(), |r| {
                r.authority.as_mut().expect("fixture").name = "院".repeat(201)
            }),
            expect!["record CS-B-2026-0001: authority.name: is 201 characters long, at most 200"],
        );
        check(
            with(black(), |r| decision(r).document_number = "号".repeat(101)),
            expect![
                "record CS-B-2026-0001: decision.document_number: is 101 characters long, at most 100"
            ],
        );
        check(
            with(black(), |r| decision(r).legal_basis = "法".repeat(2001)),
            expect![
                "record CS-B-2026-0001: decision.legal_basis: is 2001 characters long, at most 2000"
            ],
        );
        check(
            with(black(), |r| {
                decision(r).legal_basis = "第一条\r\n第二条".into()
            }),
            expect![
                "record CS-B-2026-0001: decision.legal_basis: contains control character U+000D; only line feeds (U+000A) are allowed"
            ],
        );
        check(
            with(black(), |r| decision(r).facts = "事".repeat(4001)),
            expect!["record CS-B-2026-0001: decision.facts: is 4001 characters long, at most 4000"],
        );
        check(
            with(black(), |r| decision(r).facts = "事".repeat(4000)),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| decision(r).facts = "甲\t乙".into()),
            expect![
                "record CS-B-2026-0001: decision.facts: contains control character U+0009; only line feeds (U+000A) are allowed"
            ],
        );
        check(
            with(penalty(), |r| {
                decision(r).penalty_content = "罚".repeat(4001)
            }),
            expect![
                "record CS-P-2026-0001: decision.penalty_content: is 4001 characters long, at most 4000"
            ],
        );
        check(
            with(black(), |r| r.data_source = "源".repeat(201)),
            expect!["record CS-B-2026-0001: data_source: is 201 characters long, at most 200"],
        );
        check(
            with(black(), |r| r.data_source = "长沙\n平台".into()),
            expect!["record CS-B-2026-0001: data_source: contains control character U+000A"],
        );
        check(
            with(black(), |r| r.remarks = "注".repeat(2001)),
            expect!["record CS-B-2026-0001: remarks: is 2001 characters long, at most 2000"],
        );
        check(
            with(black(), |r| r.remarks = "第一行\n第二行".into()),
            expect!["ok keys=[91430100MA4L00003Q] unknown_category=false legacy_uscc=false"],
        );
        check(
            with(black(), |r| r.remarks = "\u{1b}[31m".into()),
            expect![
                "record CS-B-2026-0001: remarks: contains control character U+001B; only line feeds (U+000A) are allowed"
            ],
        );
        check(
            with(black(), |r| {
                status(r).kind = StatusKind::Repaired as i32;
                status(r).reason = "修".repeat(2001);
                status(r).effective_on = "2026-06-01".into();
            }),
            expect!["record CS-B-2026-0001: status.reason: is 2001 characters long, at most 2000"],
        );
    }

    #[test]
    fn collects_every_error() {
        let wreck = CreditRecord {
            record_id: "CS-17".into(),
            version: 1,
            subject: Some(Subject {
                uscc: format!("{COMPANY}X"),
                ..legal_person()
            }),
            list: ListKind::Penalty as i32,
            category: "tax.credit_grade_a".into(),
            severity: Severity::General as i32,
            authority: None,
            decision: Some(Decision {
                decided_on: "2026-04-08".into(),
                fine_fen: 100,
                ..Decision::default()
            }),
            publication: publication("2026-04-10", "2027-05-01"),
            status: Some(RecordStatus {
                kind: StatusKind::Repaired as i32,
                ..RecordStatus::default()
            }),
            data_source: String::new(),
            remarks: String::new(),
        };
        check(
            wreck.clone(),
            expect![[
                r#"record CS-17: subject.uscc: uscc "91430100MA4L00003X": check character is X, expected Q; category: "tax.credit_grade_a" may be used on lists red, not penalty; authority: is required; decision.document_number: is required on a penalty disclosure; decision.legal_basis: is required on a penalty disclosure; decision.facts: is required on a penalty disclosure; decision.penalty_kinds: at least one is required on a penalty disclosure, e.g. 警告 or 罚款; decision.fine_fen: is 100 fen but penalty_kinds does not include 罚款; publication.ends_on: 2027-05-01 exceeds the 1-year publication limit for GENERAL records: from 2026-04-10 the last day is 2027-04-10; status.reason: is required for status REPAIRED; status.effective_on: is required"#
            ]],
        );
        let err = validator(Mode::Publish, &rules(&LegacyAllowList::empty()))
            .validate(&wreck)
            .expect_err("wreck is invalid");
        assert_eq!(err.record_id, "CS-17");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        expect![[r#"
            [
                "subject.uscc",
                "category",
                "authority",
                "decision.document_number",
                "decision.legal_basis",
                "decision.facts",
                "decision.penalty_kinds",
                "decision.fine_fen",
                "publication.ends_on",
                "status.reason",
                "status.effective_on",
            ]
        "#]]
        .assert_debug_eq(&paths);
    }

    #[test]
    fn identifiers_are_normalised() {
        let with_x = id_number_ending_in_x();
        let record = with(black(), |r| {
            r.subject = Some(Subject {
                id_number: with_x.to_lowercase(),
                ..natural_person()
            });
            r.authority.as_mut().expect("fixture").uscc = uscc(COURT).to_lowercase();
        });
        let rules = rules(&LegacyAllowList::empty());
        let validator = validator(Mode::Publish, &rules);
        let v = validator
            .validate(&record)
            .expect("lowercase identifiers are accepted");
        let normalised_subject = v.normalised.subject.as_ref().expect("subject");
        assert_eq!(normalised_subject.id_number, with_x);
        assert_eq!(
            v.normalised.authority.as_ref().expect("authority").uscc,
            uscc(COURT)
        );
        assert_eq!(
            v.subject_keys,
            vec![SubjectId::IdNumber(
                ident::parse_id_number(&with_x).expect("valid")
            )]
        );
        // Nothing else changes.
        let mut expected = record.clone();
        expected
            .subject
            .as_mut()
            .expect("subject")
            .id_number
            .clone_from(&with_x);
        expected.authority.as_mut().expect("authority").uscc = uscc(COURT);
        assert_eq!(v.normalised, expected);

        let company = with(black(), |r| {
            subject(r).uscc = uscc(COMPANY).to_lowercase();
            subject(r)
                .legal_representative
                .as_mut()
                .expect("fixture")
                .id_number = with_x.to_lowercase();
        });
        let v = validator
            .validate(&company)
            .expect("lowercase identifiers are accepted");
        let normalised_subject = v.normalised.subject.as_ref().expect("subject");
        assert_eq!(normalised_subject.uscc, uscc(COMPANY));
        assert_eq!(
            normalised_subject
                .legal_representative
                .as_ref()
                .expect("rep")
                .id_number,
            with_x
        );
        assert_eq!(
            v.subject_keys,
            vec![SubjectId::Uscc(
                ident::parse_uscc(&uscc(COMPANY)).expect("valid")
            )]
        );
    }

    #[test]
    fn legacy_usccs_pass_only_through_the_allow_list() {
        let legacy = legacy_uscc();
        let record = with(black(), |r| subject(r).uscc.clone_from(&legacy));
        let empty = LegacyAllowList::empty();
        let allow =
            LegacyAllowList::new([legacy.as_str()]).expect("legacy code fails its checksum");
        expect![[r#"record CS-B-2026-0001: subject.uscc: uscc "91430100MA4L000030": check character is 0, expected Q"#]].assert_eq(&outcome(Mode::Publish, &empty, &record));
        expect!["ok keys=[91430100MA4L000030] unknown_category=false legacy_uscc=true"]
            .assert_eq(&outcome(Mode::Publish, &allow, &record));
        expect!["ok keys=[91430100MA4L000030] unknown_category=false legacy_uscc=true"]
            .assert_eq(&outcome(Mode::Relay, &allow, &record));
    }

    #[test]
    fn unprintable_record_ids_are_quoted_in_messages() {
        check(
            with(black(), |r| r.record_id = "CS\n17".into()),
            expect![[
                r#"record "CS\n17": record_id: contains '\n' (U+000A); only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed"#
            ]],
        );
        check(
            with(black(), |r| r.record_id = "長".repeat(100)),
            expect![[
                r#"record "長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長長"…: record_id: is 100 characters long, at most 64; record_id: contains '長' (U+9577); only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed"#
            ]],
        );
    }

    fn date_text(valid: &str) -> impl Strategy<Value = String> {
        prop_oneof![
            8 => Just(valid.to_owned()),
            1 => (2024i32..2031, 1u32..13, 1u32..32)
                .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
            1 => any::<String>(),
        ]
    }

    fn mostly<T: Clone + fmt::Debug + 'static>(
        valid: T,
        other: impl Strategy<Value = T> + 'static,
    ) -> impl Strategy<Value = T> {
        prop_oneof![9 => Just(valid), 1 => other]
    }

    fn any_subject() -> impl Strategy<Value = Subject> {
        // Lowercase identifiers, so that normalisation has something to do.
        let lowered = |mut s: Subject| {
            s.uscc = s.uscc.to_lowercase();
            s.id_number = s.id_number.to_lowercase();
            s
        };
        prop_oneof![
            Just(lowered(legal_person())),
            Just(lowered(individual_business())),
            Just(Subject {
                id_number: id_number_ending_in_x().to_lowercase(),
                ..natural_person()
            }),
        ]
    }

    proptest! {
        // Validation is total (no input panics it) and normalisation is idempotent: the normalised
        // form of a valid record is valid and normalises to itself.
        #[test]
        fn validation_is_total_and_normalisation_idempotent(
            list in mostly(ListKind::Black as i32, -1i32..6),
            severity in mostly(Severity::Serious as i32, -1i32..5),
            subject_value in any_subject(),
            kind in mostly(None, (-1i32..5).prop_map(Some)),
            uscc_text in mostly(None, any::<String>().prop_map(Some)),
            id_text in mostly(None, any::<String>().prop_map(Some)),
            status_kind in mostly(StatusKind::Active as i32, -1i32..6),
            record_id in mostly("CS-1".to_owned(), any::<String>()),
            category in mostly("court.dishonest_debtor".to_owned(), "[a-z_.]{0,30}"),
            decided_on in date_text("2026-04-02"),
            starts_on in date_text("2026-04-03"),
            ends_on in date_text("2028-04-02"),
            fine_fen in mostly(0i64, any::<i64>()),
            remarks in mostly(String::new(), any::<String>()),
            mode in prop_oneof![Just(Mode::Publish), Just(Mode::Relay)],
        ) {
            let record = with(black(), |r| {
                r.record_id = record_id;
                r.list = list;
                r.severity = severity;
                r.category = category;
                r.remarks = remarks;
                r.subject = Some(subject_value);
                let s = subject(r);
                if let Some(kind) = kind {
                    s.kind = kind;
                }
                if let Some(text) = uscc_text {
                    s.uscc = text;
                }
                if let Some(text) = id_text {
                    s.id_number = text;
                }
                decision(r).decided_on = decided_on;
                decision(r).fine_fen = fine_fen;
                *period(r) = Publication { starts_on, ends_on };
                status(r).kind = status_kind;
            });
            let rules = rules(&LegacyAllowList::empty());
            let validator = validator(mode, &rules);
            match validator.validate(&record) {
                Ok(v) => {
                    let again = validator.validate(&v.normalised).expect("normalised record is valid");
                    prop_assert_eq!(&again.normalised, &v.normalised);
                    prop_assert_eq!(again.subject_keys, v.subject_keys);
                }
                Err(e) => {
                    prop_assert!(!e.errors.is_empty());
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}
