//! Records for the validation targets: a realistic generated record changed by a list of
//! edits the fuzzer chooses (structure-aware: most inputs stay close to valid and reach the
//! deep rules), and the properties every validation must have.

use arbitrary::Arbitrary;
use credex_core::date::{Date, format_date};
use credex_core::ident::{id_check_char, uscc_check_char};
use credex_core::pb;
use credex_core::validate::{Mode, Validated, ValidationErrors};

use crate::{fixture, reference_id_number, sample_records, today};

/// Text for a string field.
#[derive(Debug, Arbitrary)]
pub enum Text {
    Raw(String),
    Word(u8),
    /// `n` copies of a character: the length limits.
    Repeat(char, u16),
    /// A valid ID number born `days` before today.
    IdNumber {
        days: u16,
        division: u8,
        seq: u16,
    },
    /// A USCC with a correct check character.
    Uscc {
        authority: u8,
        kind: u8,
        division: u8,
        org: u32,
    },
    /// A date `days` from today.
    Date(i16),
}

/// Words that matter to some rule.
const WORDS: &[&str] = &[
    "",
    " ",
    "罚款",
    "警告",
    "\n",
    "\r\n",
    "\u{0}",
    "\u{7f}",
    "\u{200b}",
    "x",
    "X",
    "CS-P-2026-0001",
    "wuhan-1",
    "WUHAN-2",
    "changsha-",
    "court.dishonest_debtor",
    "tax.major_violation",
    "business.abnormal_operation",
    "environment.administrative_penalty",
    "Court.Dishonest_Debtor",
    "court..x",
    "91350100M000100Y42",
    "2026-02-29",
    "2028-02-29",
    "0000-01-01",
    "9999-12-31",
    "2026-5-1",
];

/// Division codes: members', others', and not divisions at all.
const DIVISIONS: &[&str] = &[
    "430100", "430103", "420100", "340100", "360100", "110000", "000000", "999999",
];

impl Text {
    fn render(&self) -> String {
        match self {
            Text::Raw(s) => s.clone(),
            Text::Word(i) => WORDS[usize::from(*i) % WORDS.len()].to_owned(),
            Text::Repeat(c, n) => std::iter::repeat_n(*c, usize::from(*n % 4200)).collect(),
            Text::IdNumber {
                days,
                division,
                seq,
            } => {
                let birth = today() - chrono::Days::new(u64::from(*days) * 3);
                let first17 = format!(
                    "{}{}{:03}",
                    DIVISIONS[usize::from(*division) % DIVISIONS.len()],
                    birth.format("%Y%m%d"),
                    seq % 1000
                );
                let check = id_check_char(&first17).expect("17 digits");
                format!("{first17}{check}")
            }
            Text::Uscc {
                authority,
                kind,
                division,
                org,
            } => {
                const CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
                let pick = |n: u32| char::from(CHARS[(n % 31) as usize]);
                let org: String = (0..9).map(|i| pick(org.rotate_left(i * 3) ^ i)).collect();
                let first17 = format!(
                    "{}{}{}{org}",
                    pick(u32::from(*authority)),
                    pick(u32::from(*kind)),
                    DIVISIONS[usize::from(*division) % DIVISIONS.len()],
                );
                let check = uscc_check_char(&first17).expect("17 uscc characters");
                format!("{first17}{check}")
            }
            Text::Date(days) => format_date(shift(today(), i64::from(*days))),
        }
    }
}

fn shift(date: Date, days: i64) -> Date {
    let d = chrono::Days::new(days.unsigned_abs());
    if days >= 0 {
        date.checked_add_days(d).unwrap_or(date)
    } else {
        date.checked_sub_days(d).unwrap_or(date)
    }
}

/// The string fields of a record.
#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum StringField {
    RecordId,
    Category,
    DataSource,
    Remarks,
    SubjectName,
    SubjectUscc,
    SubjectIdNumber,
    RepresentativeName,
    RepresentativeIdNumber,
    AuthorityName,
    AuthorityUscc,
    DocumentNumber,
    DecidedOn,
    LegalBasis,
    Facts,
    PenaltyContent,
    StartsOn,
    EndsOn,
    StatusReason,
    EffectiveOn,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum Part {
    Subject,
    Representative,
    Authority,
    Decision,
    Publication,
    Status,
}

/// One change to a record.
#[derive(Debug, Arbitrary)]
pub enum Edit {
    Set(StringField, Text),
    Version(u32),
    List(i32),
    Severity(i32),
    SubjectKind(i32),
    StatusKind(i32),
    Fine(i64),
    PenaltyKinds(Vec<Text>),
    SanctionMeasures(Vec<Text>),
    Clear(Part),
    /// Copy one field into another (an ID number into a USCC field, a date into another).
    Copy(StringField, StringField),
}

/// A record the fuzzer builds: one of the generator's, edited, validated by a member on a day
/// near today.
#[derive(Debug, Arbitrary)]
pub struct FuzzRecord {
    pub sample: u8,
    pub origin: u8,
    pub day: i8,
    pub edits: Vec<Edit>,
}

impl FuzzRecord {
    pub fn build(&self) -> pb::CreditRecord {
        let city = usize::from(self.origin % 4);
        let mut record = sample_records(city, u64::from(self.sample % 16), 1).remove(0);
        for edit in &self.edits {
            apply(&mut record, edit);
        }
        record
    }
}

fn field(r: &mut pb::CreditRecord, f: StringField) -> &mut String {
    use StringField::*;
    match f {
        RecordId => &mut r.record_id,
        Category => &mut r.category,
        DataSource => &mut r.data_source,
        Remarks => &mut r.remarks,
        SubjectName => &mut r.subject.get_or_insert_default().name,
        SubjectUscc => &mut r.subject.get_or_insert_default().uscc,
        SubjectIdNumber => &mut r.subject.get_or_insert_default().id_number,
        RepresentativeName => {
            &mut r
                .subject
                .get_or_insert_default()
                .legal_representative
                .get_or_insert_default()
                .name
        }
        RepresentativeIdNumber => {
            &mut r
                .subject
                .get_or_insert_default()
                .legal_representative
                .get_or_insert_default()
                .id_number
        }
        AuthorityName => &mut r.authority.get_or_insert_default().name,
        AuthorityUscc => &mut r.authority.get_or_insert_default().uscc,
        DocumentNumber => &mut r.decision.get_or_insert_default().document_number,
        DecidedOn => &mut r.decision.get_or_insert_default().decided_on,
        LegalBasis => &mut r.decision.get_or_insert_default().legal_basis,
        Facts => &mut r.decision.get_or_insert_default().facts,
        PenaltyContent => &mut r.decision.get_or_insert_default().penalty_content,
        StartsOn => &mut r.publication.get_or_insert_default().starts_on,
        EndsOn => &mut r.publication.get_or_insert_default().ends_on,
        StatusReason => &mut r.status.get_or_insert_default().reason,
        EffectiveOn => &mut r.status.get_or_insert_default().effective_on,
    }
}

fn apply(r: &mut pb::CreditRecord, edit: &Edit) {
    match edit {
        Edit::Set(f, text) => *field(r, *f) = text.render(),
        Edit::Version(v) => r.version = *v,
        Edit::List(v) => r.list = *v,
        Edit::Severity(v) => r.severity = *v,
        Edit::SubjectKind(v) => r.subject.get_or_insert_default().kind = *v,
        Edit::StatusKind(v) => r.status.get_or_insert_default().kind = *v,
        Edit::Fine(v) => r.decision.get_or_insert_default().fine_fen = *v,
        Edit::PenaltyKinds(items) => {
            r.decision.get_or_insert_default().penalty_kinds =
                items.iter().map(Text::render).collect()
        }
        Edit::SanctionMeasures(items) => {
            r.decision.get_or_insert_default().sanction_measures =
                items.iter().map(Text::render).collect()
        }
        Edit::Clear(part) => match part {
            Part::Subject => r.subject = None,
            Part::Representative => {
                if let Some(s) = r.subject.as_mut() {
                    s.legal_representative = None;
                }
            }
            Part::Authority => r.authority = None,
            Part::Decision => r.decision = None,
            Part::Publication => r.publication = None,
            Part::Status => r.status = None,
        },
        Edit::Copy(from, to) => {
            let value = field(r, *from).clone();
            *field(r, *to) = value;
        }
    }
}

/// The fields of a record that hold no free text, with their paths: the identifiers, the
/// dates and the category, for the masking property. Free text (names, facts, remarks) and the
/// record id are shown in full in listings anyway.
fn structured_fields(r: &pb::CreditRecord) -> Vec<(&'static str, &str)> {
    let mut out = vec![("category", r.category.as_str())];
    if let Some(s) = &r.subject {
        out.extend([
            ("subject.uscc", s.uscc.as_str()),
            ("subject.id_number", &s.id_number),
        ]);
        if let Some(rep) = &s.legal_representative {
            out.push(("subject.legal_representative.id_number", &rep.id_number));
        }
    }
    if let Some(a) = &r.authority {
        out.push(("authority.uscc", &a.uscc));
    }
    if let Some(d) = &r.decision {
        out.push(("decision.decided_on", &d.decided_on));
    }
    if let Some(p) = &r.publication {
        out.extend([
            ("publication.starts_on", p.starts_on.as_str()),
            ("publication.ends_on", &p.ends_on),
        ]);
    }
    if let Some(s) = &r.status {
        out.push(("status.effective_on", &s.effective_on));
    }
    out
}

/// Validates `record` as member `origin` on `today + day` in both modes and checks what must
/// hold of any validation:
/// - the modes differ only on unknown categories (validate.rs: "differ in one rule only");
/// - a valid record indexes exactly one subject key, and its normalised form is valid and
///   normalises to itself;
/// - a failure lists at least one error, and no error message shows an ID number that is a
///   whole identifier, date or category field (ARCHITECTURE.md: "ID numbers are masked in
///   every error").
pub fn check(record: &pb::CreditRecord, origin: u8, day: i8) {
    let f = fixture();
    let date = shift(today(), i64::from(day));
    let origin = usize::from(origin % 4);
    let publish = f.validator(Mode::Publish, origin, date).validate(record);
    let relay = f.validator(Mode::Relay, origin, date).validate(record);
    for result in [&publish, &relay] {
        match result {
            Ok(v) => check_valid(v, origin, date),
            Err(e) => check_errors(e, record),
        }
    }
    match (&publish, &relay) {
        (Ok(p), Ok(r)) => {
            assert!(!r.unknown_category);
            assert_eq!(p, r, "publish and relay normalise alike");
        }
        (Ok(_), Err(e)) => panic!("valid at publish, invalid on relay: {e}"),
        (Err(e), Ok(r)) => assert!(
            r.unknown_category,
            "valid on relay only, not for its category: {e}"
        ),
        (Err(_), Err(_)) => {}
    }
}

fn check_valid(v: &Validated, origin: usize, date: Date) {
    assert_eq!(
        v.subject_keys.len(),
        1,
        "a valid record has one subject key"
    );
    let mode = if v.unknown_category {
        Mode::Relay
    } else {
        Mode::Publish
    };
    let again = fixture()
        .validator(mode, origin, date)
        .validate(&v.normalised)
        .unwrap_or_else(|e| panic!("the normalised record is invalid: {e}"));
    assert_eq!(again.normalised, v.normalised, "normalising is idempotent");
    assert_eq!(again.subject_keys, v.subject_keys);
}

fn check_errors(e: &ValidationErrors, record: &pb::CreditRecord) {
    assert!(!e.errors.is_empty());
    let _ = e.to_string();
    // A field whose whole value is an ID number: no error about that field shows it. (Another
    // field's garbage may contain it, and the record id is shown in full wherever it goes.)
    for (path, text) in structured_fields(record) {
        let Some(id) = reference_id_number(text) else {
            continue;
        };
        for error in e.errors.iter().filter(|error| error.path == path) {
            let message = error.to_string();
            assert!(
                !message.contains(&id) && !message.contains(text),
                "an error message shows ID number {id} in full: {message}"
            );
        }
    }
}
