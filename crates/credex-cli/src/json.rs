//! The JSON record format of `credexctl publish` and `credexctl gen`: one
//! `credex.v1.CreditRecord` per line (JSON Lines).
//!
//! Field names are the proto's snake_case names; enums are lowercase strings without
//! their prefix (`"list": "black"`, `"severity": "serious"`, `"kind": "legal_person"`,
//! `"status": {"kind": "active"}`). Empty strings, zero numbers, empty lists and unset
//! messages may be left out and are left out on output. An enum value this build does
//! not know (a newer peer's) is written as its number and read back from it.
//!
//! prost types do not derive serde, and serde's derived errors do not say which field
//! was wrong, so input is read by walking the JSON value field by field: every error
//! names the field path (`decision.fine_fen: expected an integer, found "12"`).
//! Output is a set of borrowed serde structs, so fields come out in proto order.

use std::fmt;

use credex_proto::v1::{
    Authority, CreditRecord, Decision, ExcludedRecord, ExclusionReason, LegalRepresentative,
    ListKind, Provenance, Publication, RecordStatus, Severity, StatusKind, Subject, SubjectKind,
    ViewRecord,
};
use serde::Serialize;
use serde_json::{Map, Value};

/// The JSON names of `SubjectKind`.
pub const SUBJECT_KINDS: &[(&str, SubjectKind)] = &[
    ("legal_person", SubjectKind::LegalPerson),
    ("individual_business", SubjectKind::IndividualBusiness),
    ("natural_person", SubjectKind::NaturalPerson),
];

/// The JSON names of `ListKind`.
pub const LIST_KINDS: &[(&str, ListKind)] = &[
    ("red", ListKind::Red),
    ("black", ListKind::Black),
    ("watch", ListKind::Watch),
    ("penalty", ListKind::Penalty),
];

/// The JSON names of `Severity`.
pub const SEVERITIES: &[(&str, Severity)] = &[
    ("minor", Severity::Minor),
    ("general", Severity::General),
    ("serious", Severity::Serious),
];

/// The JSON names of `StatusKind`.
pub const STATUS_KINDS: &[(&str, StatusKind)] = &[
    ("active", StatusKind::Active),
    ("under_objection", StatusKind::UnderObjection),
    ("repaired", StatusKind::Repaired),
    ("revoked", StatusKind::Revoked),
];

/// The JSON names of `ExclusionReason`.
pub const EXCLUSION_REASONS: &[(&str, ExclusionReason)] = &[
    ("repaired", ExclusionReason::Repaired),
    ("revoked", ExclusionReason::Revoked),
    ("expired", ExclusionReason::Expired),
    ("not_yet_published", ExclusionReason::NotYetPublished),
    ("not_recognised", ExclusionReason::NotRecognised),
    ("unknown_category", ExclusionReason::UnknownCategory),
    ("invalid", ExclusionReason::Invalid),
];

/// An enum value's JSON name for display: `-` for unspecified, the number for a value this
/// build does not know.
pub fn display_enum<E: Copy + Into<i32>>(table: &[(&'static str, E)], value: i32) -> String {
    match enum_name(table, value) {
        Some(name) => name.to_owned(),
        None if value == 0 => "-".to_owned(),
        None => value.to_string(),
    }
}

/// The JSON name of an enum value, or `None` for 0 (unspecified) and values this build
/// does not know.
pub fn enum_name<E: Copy + Into<i32>>(
    table: &[(&'static str, E)],
    value: i32,
) -> Option<&'static str> {
    table
        .iter()
        .find(|(_, e)| (*e).into() == value)
        .map(|(name, _)| *name)
}

/// Parses an enum's JSON name; the error lists the names accepted.
pub fn parse_enum<E: Copy + Into<i32>>(table: &[(&str, E)], text: &str) -> Result<i32, String> {
    table
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, e)| (*e).into())
        .ok_or_else(|| format!("unknown value {text:?}, expected one of {}", names(table)))
}

fn names<E>(table: &[(&str, E)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// What is wrong with one record's JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The dotted field path (`subject.kind`, `decision.penalty_kinds[1]`); empty for the
    /// record itself.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Parses one JSON Lines line into a record.
pub fn parse_record(line: &str) -> Result<CreditRecord, FieldError> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // The caller names the line; serde's own "at line 1" would contradict it.
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text);
        FieldError {
            field: String::new(),
            message: format!("invalid JSON at column {}: {message}", e.column()),
        }
    })?;
    record_from_value(value)
}

/// Converts a JSON value into a record.
pub fn record_from_value(value: Value) -> Result<CreditRecord, FieldError> {
    let mut o = Fields::of(String::new(), value)?;
    let record = CreditRecord {
        record_id: o.string("record_id")?,
        version: o.u32("version")?,
        subject: o.object("subject")?.map(subject_from).transpose()?,
        list: o.enumeration("list", LIST_KINDS)?,
        category: o.string("category")?,
        severity: o.enumeration("severity", SEVERITIES)?,
        authority: o.object("authority")?.map(authority_from).transpose()?,
        decision: o.object("decision")?.map(decision_from).transpose()?,
        publication: o.object("publication")?.map(publication_from).transpose()?,
        status: o.object("status")?.map(status_from).transpose()?,
        data_source: o.string("data_source")?,
        remarks: o.string("remarks")?,
    };
    o.finish()?;
    Ok(record)
}

fn subject_from(mut o: Fields) -> Result<Subject, FieldError> {
    let subject = Subject {
        kind: o.enumeration("kind", SUBJECT_KINDS)?,
        name: o.string("name")?,
        uscc: o.string("uscc")?,
        id_number: o.string("id_number")?,
        legal_representative: o
            .object("legal_representative")?
            .map(|mut o| {
                let rep = LegalRepresentative {
                    name: o.string("name")?,
                    id_number: o.string("id_number")?,
                };
                o.finish()?;
                Ok(rep)
            })
            .transpose()?,
    };
    o.finish()?;
    Ok(subject)
}

fn authority_from(mut o: Fields) -> Result<Authority, FieldError> {
    let authority = Authority {
        name: o.string("name")?,
        uscc: o.string("uscc")?,
    };
    o.finish()?;
    Ok(authority)
}

fn decision_from(mut o: Fields) -> Result<Decision, FieldError> {
    let decision = Decision {
        document_number: o.string("document_number")?,
        decided_on: o.string("decided_on")?,
        legal_basis: o.string("legal_basis")?,
        facts: o.string("facts")?,
        penalty_kinds: o.strings("penalty_kinds")?,
        penalty_content: o.string("penalty_content")?,
        fine_fen: o.i64("fine_fen")?,
        sanction_measures: o.strings("sanction_measures")?,
    };
    o.finish()?;
    Ok(decision)
}

fn publication_from(mut o: Fields) -> Result<Publication, FieldError> {
    let publication = Publication {
        starts_on: o.string("starts_on")?,
        ends_on: o.string("ends_on")?,
    };
    o.finish()?;
    Ok(publication)
}

fn status_from(mut o: Fields) -> Result<RecordStatus, FieldError> {
    let status = RecordStatus {
        kind: o.enumeration("kind", STATUS_KINDS)?,
        reason: o.string("reason")?,
        effective_on: o.string("effective_on")?,
    };
    o.finish()?;
    Ok(status)
}

/// The fields of one JSON object not read yet; `finish` rejects whatever is left, so a
/// misspelt field name is an error instead of a silently empty field.
struct Fields {
    path: String,
    map: Map<String, Value>,
}

impl Fields {
    fn of(path: String, value: Value) -> Result<Self, FieldError> {
        match value {
            Value::Object(map) => Ok(Self { path, map }),
            other => Err(FieldError {
                field: path,
                message: format!("expected an object, found {}", kind(&other)),
            }),
        }
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, key: &str, message: String) -> FieldError {
        FieldError {
            field: self.path_of(key),
            message,
        }
    }

    /// The value of `key`; a missing key and `null` both mean "unset".
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str) -> Result<String, FieldError> {
        match self.take(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                Err(self.error(key, format!("expected a string, found {}", kind(&other))))
            }
        }
    }

    fn strings(&mut self, key: &str) -> Result<Vec<String>, FieldError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    other => Err(self.error(
                        &format!("{key}[{i}]"),
                        format!("expected a string, found {}", kind(&other)),
                    )),
                })
                .collect(),
            Some(other) => Err(self.error(
                key,
                format!("expected a list of strings, found {}", kind(&other)),
            )),
        }
    }

    fn integer(&mut self, key: &str) -> Result<Option<i128>, FieldError> {
        match self.take(key) {
            None => Ok(None),
            // A whole number beyond 64 bits reaches here as a float (serde_json keeps no
            // wider integers); it is out of range, not "not an integer".
            Some(Value::Number(n)) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .or_else(|| {
                    let f = n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0)?;
                    // Saturating: anything this large is out of every range.
                    Some(f as i128)
                })
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected an integer, found {n}"))),
            Some(other) => {
                Err(self.error(key, format!("expected an integer, found {}", kind(&other))))
            }
        }
    }

    fn u32(&mut self, key: &str) -> Result<u32, FieldError> {
        let Some(n) = self.integer(key)? else {
            return Ok(0);
        };
        u32::try_from(n)
            .map_err(|_| self.error(key, format!("{n} is out of range 0..={}", u32::MAX)))
    }

    fn i64(&mut self, key: &str) -> Result<i64, FieldError> {
        let Some(n) = self.integer(key)? else {
            return Ok(0);
        };
        i64::try_from(n).map_err(|_| {
            self.error(
                key,
                format!("{n} is out of range {}..={}", i64::MIN, i64::MAX),
            )
        })
    }

    fn enumeration<E: Copy + Into<i32>>(
        &mut self,
        key: &str,
        table: &[(&str, E)],
    ) -> Result<i32, FieldError> {
        match self.take(key) {
            None => Ok(0),
            Some(Value::String(s)) => parse_enum(table, &s).map_err(|m| self.error(key, m)),
            // A newer peer's value, as written by `record_to_json` when the name is unknown.
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) => i32::try_from(v).map_err(|_| {
                    self.error(
                        key,
                        format!("{n} is out of range {}..={}", i32::MIN, i32::MAX),
                    )
                }),
                None => Err(self.error(key, format!("{n} is not an enum number"))),
            },
            Some(other) => Err(self.error(
                key,
                format!("expected one of {}, found {}", names(table), kind(&other)),
            )),
        }
    }

    fn object(&mut self, key: &str) -> Result<Option<Fields>, FieldError> {
        let path = self.path_of(key);
        self.take(key).map(|v| Fields::of(path, v)).transpose()
    }

    fn finish(self) -> Result<(), FieldError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(key) => Err(self.error(key, "unknown field".to_owned())),
        }
    }
}

fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A record as one JSON Lines line.
pub fn record_to_line(record: &CreditRecord) -> String {
    serde_json::to_string(&RecordJson(record)).expect("a record always serialises")
}

/// Serialises a record in the JSON record format, fields in proto order.
#[derive(Debug, Clone, Copy)]
pub struct RecordJson<'a>(pub &'a CreditRecord);

impl Serialize for RecordJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        RecordOut {
            record_id: &r.record_id,
            version: r.version,
            subject: r.subject.as_ref().map(|s| SubjectOut {
                kind: EnumOut::of(SUBJECT_KINDS, s.kind),
                name: &s.name,
                uscc: &s.uscc,
                id_number: &s.id_number,
                legal_representative: s.legal_representative.as_ref().map(|l| {
                    LegalRepresentativeOut {
                        name: &l.name,
                        id_number: &l.id_number,
                    }
                }),
            }),
            list: EnumOut::of(LIST_KINDS, r.list),
            category: &r.category,
            severity: EnumOut::of(SEVERITIES, r.severity),
            authority: r.authority.as_ref().map(|a| AuthorityOut {
                name: &a.name,
                uscc: &a.uscc,
            }),
            decision: r.decision.as_ref().map(|d| DecisionOut {
                document_number: &d.document_number,
                decided_on: &d.decided_on,
                legal_basis: &d.legal_basis,
                facts: &d.facts,
                penalty_kinds: &d.penalty_kinds,
                penalty_content: &d.penalty_content,
                fine_fen: d.fine_fen,
                sanction_measures: &d.sanction_measures,
            }),
            publication: r.publication.as_ref().map(|p| PublicationOut {
                starts_on: &p.starts_on,
                ends_on: &p.ends_on,
            }),
            status: r.status.as_ref().map(|s| StatusOut {
                kind: EnumOut::of(STATUS_KINDS, s.kind),
                reason: &s.reason,
                effective_on: &s.effective_on,
            }),
            data_source: &r.data_source,
            remarks: &r.remarks,
        }
        .serialize(serializer)
    }
}

/// An enum value: its name when known, its number otherwise, left out when 0.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum EnumOut {
    Name(&'static str),
    Number(i32),
}

impl EnumOut {
    fn of<E: Copy + Into<i32>>(table: &[(&'static str, E)], value: i32) -> Option<Self> {
        match enum_name(table, value) {
            Some(name) => Some(Self::Name(name)),
            None if value == 0 => None,
            None => Some(Self::Number(value)),
        }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct RecordOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    record_id: &'a str,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<SubjectOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<EnumOut>,
    #[serde(skip_serializing_if = "str::is_empty")]
    category: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<EnumOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority: Option<AuthorityOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<DecisionOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publication: Option<PublicationOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    data_source: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    remarks: &'a str,
}

#[derive(Serialize)]
struct SubjectOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<EnumOut>,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uscc: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    legal_representative: Option<LegalRepresentativeOut<'a>>,
}

#[derive(Serialize)]
struct LegalRepresentativeOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id_number: &'a str,
}

#[derive(Serialize)]
struct AuthorityOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uscc: &'a str,
}

#[derive(Serialize)]
struct DecisionOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    document_number: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    decided_on: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    legal_basis: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    facts: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    penalty_kinds: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    penalty_content: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    fine_fen: i64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    sanction_measures: &'a [String],
}

#[derive(Serialize)]
struct PublicationOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    starts_on: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    ends_on: &'a str,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<EnumOut>,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    effective_on: &'a str,
}

/// A view record (`View.Lookup`, `View.List`) in JSON: the record in the record format and
/// where it came from.
#[derive(Debug, Serialize)]
pub struct ViewRecordJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<RecordJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provenance: Option<ProvenanceJson<'a>>,
    under_objection: bool,
    unknown_category: bool,
    /// 历史遗留代码: a USCC admitted only by the consortium's legacy allow-list.
    legacy_code: bool,
}

impl<'a> ViewRecordJson<'a> {
    pub fn new(v: &'a ViewRecord) -> Self {
        Self {
            record: v.record.as_ref().map(RecordJson),
            provenance: v.provenance.as_ref().map(ProvenanceJson::new),
            under_objection: v.under_objection,
            unknown_category: v.unknown_category,
            legacy_code: v.legacy_code,
        }
    }
}

/// A record about the subject that is not in force, and why.
#[derive(Debug, Serialize)]
pub struct ExcludedRecordJson<'a> {
    record_id: &'a str,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    provenance: Option<ProvenanceJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<EnumOut>,
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<EnumOut>,
    #[serde(skip_serializing_if = "str::is_empty")]
    category: &'a str,
    legacy_code: bool,
}

impl<'a> ExcludedRecordJson<'a> {
    pub fn new(e: &'a ExcludedRecord) -> Self {
        Self {
            record_id: &e.record_id,
            version: e.version,
            provenance: e.provenance.as_ref().map(ProvenanceJson::new),
            reason: EnumOut::of(EXCLUSION_REASONS, e.reason),
            detail: &e.detail,
            list: EnumOut::of(LIST_KINDS, e.list),
            category: &e.category,
            legacy_code: e.legacy_code,
        }
    }
}

#[derive(Debug, Serialize)]
struct ProvenanceJson<'a> {
    origin: &'a str,
    seq: u64,
    checkpoint_size: u64,
}

impl<'a> ProvenanceJson<'a> {
    fn new(p: &'a Provenance) -> Self {
        Self {
            origin: &p.origin,
            seq: p.seq,
            checkpoint_size: p.checkpoint_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn sample() -> CreditRecord {
        CreditRecord {
            record_id: "CS-2026-000118".into(),
            version: 1,
            subject: Some(Subject {
                kind: SubjectKind::LegalPerson.into(),
                name: "长沙市岳麓区湘味食品有限公司".into(),
                uscc: "91430104MA4L0XYZ1A".into(),
                id_number: String::new(),
                legal_representative: Some(LegalRepresentative {
                    name: "张伟".into(),
                    id_number: "43010419800101123X".into(),
                }),
            }),
            list: ListKind::Penalty.into(),
            category: "food_drug.food_safety".into(),
            severity: Severity::General.into(),
            authority: Some(Authority {
                name: "长沙市市场监督管理局".into(),
                uscc: "11430100MB1234567X".into(),
            }),
            decision: Some(Decision {
                document_number: "长市监处罚〔2026〕118号".into(),
                decided_on: "2026-03-02".into(),
                legal_basis: "《中华人民共和国食品安全法》第一百二十四条".into(),
                facts: "生产经营超过保质期的食品".into(),
                penalty_kinds: vec!["警告".into(), "罚款".into()],
                penalty_content: "警告，罚款人民币伍万元".into(),
                fine_fen: 5_000_000,
                sanction_measures: vec![],
            }),
            publication: Some(Publication {
                starts_on: "2026-03-05".into(),
                ends_on: "2027-03-04".into(),
            }),
            status: Some(RecordStatus {
                kind: StatusKind::Active.into(),
                ..Default::default()
            }),
            data_source: "长沙市市场监督管理局".into(),
            remarks: String::new(),
        }
    }

    #[test]
    fn output_is_proto_ordered_and_skips_empty_fields() {
        expect![[r#"{"record_id":"CS-2026-000118","version":1,"subject":{"kind":"legal_person","name":"长沙市岳麓区湘味食品有限公司","uscc":"91430104MA4L0XYZ1A","legal_representative":{"name":"张伟","id_number":"43010419800101123X"}},"list":"penalty","category":"food_drug.food_safety","severity":"general","authority":{"name":"长沙市市场监督管理局","uscc":"11430100MB1234567X"},"decision":{"document_number":"长市监处罚〔2026〕118号","decided_on":"2026-03-02","legal_basis":"《中华人民共和国食品安全法》第一百二十四条","facts":"生产经营超过保质期的食品","penalty_kinds":["警告","罚款"],"penalty_content":"警告，罚款人民币伍万元","fine_fen":5000000},"publication":{"starts_on":"2026-03-05","ends_on":"2027-03-04"},"status":{"kind":"active"},"data_source":"长沙市市场监督管理局"}"#]]
            .assert_eq(&record_to_line(&sample()));
    }

    #[test]
    fn list_and_subject_names_are_the_catalogue_file_names() {
        use credex_core::catalogue::{list_kind_name, subject_kind_name};
        for (name, kind) in LIST_KINDS {
            assert_eq!(list_kind_name(*kind), Some(*name));
        }
        for (name, kind) in SUBJECT_KINDS {
            assert_eq!(subject_kind_name(*kind), Some(*name));
        }
    }

    #[test]
    fn round_trips() {
        let records = [
            sample(),
            CreditRecord::default(),
            // Enum values from a newer schema survive as numbers.
            CreditRecord {
                list: 9,
                severity: 7,
                ..sample()
            },
            CreditRecord {
                status: Some(RecordStatus {
                    kind: StatusKind::Repaired.into(),
                    reason: "已履行行政处罚决定".into(),
                    effective_on: "2026-06-01".into(),
                }),
                ..sample()
            },
        ];
        for record in records {
            let line = record_to_line(&record);
            assert_eq!(parse_record(&line), Ok(record), "{line}");
        }
    }

    fn check(input: &str, expect: Expect) {
        let got = match parse_record(input) {
            Ok(r) => format!("ok {}", record_to_line(&r)),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn errors_name_the_field() {
        check(
            r#"{"record_id":"A","version":2,"list":"black","status":null}"#,
            expect![[r#"ok {"record_id":"A","version":2,"list":"black"}"#]],
        );
        check(
            r#"{"record_id":"A","#,
            expect!["err invalid JSON at column 17: EOF while parsing a value"],
        );
        check(
            r#"["A"]"#,
            expect![[r#"err expected an object, found a list"#]],
        );
        check(r#"{"lst":"black"}"#, expect![["err lst: unknown field"]]);
        check(
            r#"{"list":"grey"}"#,
            expect![[
                r#"err list: unknown value "grey", expected one of red, black, watch, penalty"#
            ]],
        );
        check(
            r#"{"version":"2"}"#,
            expect![[r#"err version: expected an integer, found "2""#]],
        );
        check(
            r#"{"version":-1}"#,
            expect![["err version: -1 is out of range 0..=4294967295"]],
        );
        check(
            r#"{"version":1.5}"#,
            expect![["err version: expected an integer, found 1.5"]],
        );
        check(
            r#"{"version":4294967296}"#,
            expect!["err version: 4294967296 is out of range 0..=4294967295"],
        );
        check(
            r#"{"version":100000000000000000000}"#,
            expect!["err version: 100000000000000000000 is out of range 0..=4294967295"],
        );
        check(
            r#"{"decision":{"fine_fen":9223372036854775808}}"#,
            expect![
                "err decision.fine_fen: 9223372036854775808 is out of range -9223372036854775808..=9223372036854775807"
            ],
        );
        check(
            r#"{"decision":{"fine_fen":-100000000000000000000}}"#,
            expect![
                "err decision.fine_fen: -100000000000000000000 is out of range -9223372036854775808..=9223372036854775807"
            ],
        );
        check(
            r#"{"list":2147483648}"#,
            expect!["err list: 2147483648 is out of range -2147483648..=2147483647"],
        );
        check(
            r#"{"subject":{"kind":"company"}}"#,
            expect![[
                r#"err subject.kind: unknown value "company", expected one of legal_person, individual_business, natural_person"#
            ]],
        );
        check(
            r#"{"subject":{"legal_representative":{"name":"张伟","id":"x"}}}"#,
            expect![["err subject.legal_representative.id: unknown field"]],
        );
        check(
            r#"{"decision":{"penalty_kinds":["警告",3]}}"#,
            expect![["err decision.penalty_kinds[1]: expected a string, found 3"]],
        );
        check(
            r#"{"decision":{"fine_fen":"12"}}"#,
            expect![[r#"err decision.fine_fen: expected an integer, found "12""#]],
        );
        check(
            r#"{"publication":"2026"}"#,
            expect![[r#"err publication: expected an object, found "2026""#]],
        );
        check(
            r#"{"status":{"kind":true}}"#,
            expect![[
                "err status.kind: expected one of active, under_objection, repaired, revoked, found true"
            ]],
        );
    }
}
