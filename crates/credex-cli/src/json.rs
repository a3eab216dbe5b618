//! credexctl's JSON: the proto3 JSON mapping of the schema's messages, taken from the
//! descriptor set (prost-reflect) rather than written out here, so a field added to the
//! proto appears wherever a record, view record or excluded record is printed and is read by
//! `publish` without a change here.
//! `publish`, `gen` and `import` read and write one `credex.v1.CreditRecord` per line.
//!
//! **Output** is proto3 JSON as protobuf's own printers write it with the option to keep the
//! proto field names (`preserving_proto_field_name`): `record_id`, `id_number`; enums by
//! full name (`"list": "LIST_KIND_BLACK"`); 64-bit integers as strings (`"fine_fen":
//! "5000000"`). A record line ([`Json`], [`to_line`]) leaves out fields holding their default
//! value; a command's `--json` document of a response message ([`Document`]) writes them,
//! so its keys do not depend on its values. An enum value this build does not know (a newer
//! peer's) is written as its number. Any proto3 JSON parser (grpcurl, `protojson`, Python's
//! `json_format`) reads it.
//!
//! **Input** is any proto3 JSON of the message: lowerCamelCase names (`recordId`, as
//! grpcurl prints) or the proto names, enums by full name or number, integers as numbers
//! or decimal strings, `null` for unset. Besides, an enum value may be given by its short
//! name — the full name without the enum's prefix, lowercased (`black`, `legal_person`,
//! `under_objection`) — as people write them and the tables print them. A field the
//! message does not have is refused, as proto3 JSON parsers do by default (ignoring
//! unknown fields is their opt-in; credexctl does not offer it): a misspelt name is an
//! error, not a silently empty field. Every error names the field path
//! (`decision.fine_fen: expected an integer, found "12元"`).

use std::fmt;

use credex_proto::DESCRIPTOR_POOL;
use credex_proto::v1::CreditRecord;
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions,
};
use serde::Serialize;
use serde_json::Value;

/// An enum of the schema, by its full name: its values' short names for tables, flags
/// and input.
#[derive(Debug, Clone, Copy)]
pub struct EnumNames(&'static str);

/// `credex.v1.SubjectKind`: `legal_person`, `individual_business`, `natural_person`.
pub const SUBJECT_KINDS: EnumNames = EnumNames("credex.v1.SubjectKind");
/// `credex.v1.ListKind`: `red`, `black`, `watch`, `penalty`.
pub const LIST_KINDS: EnumNames = EnumNames("credex.v1.ListKind");
/// `credex.v1.Severity`: `minor`, `general`, `serious`.
pub const SEVERITIES: EnumNames = EnumNames("credex.v1.Severity");
/// `credex.v1.StatusKind`: `active`, `under_objection`, `repaired`, `revoked`.
pub const STATUS_KINDS: EnumNames = EnumNames("credex.v1.StatusKind");
/// `credex.v1.ExclusionReason`: `repaired`, `revoked`, `expired`, `not_yet_published`, …
pub const EXCLUSION_REASONS: EnumNames = EnumNames("credex.v1.ExclusionReason");

impl EnumNames {
    fn descriptor(self) -> EnumDescriptor {
        DESCRIPTOR_POOL
            .get_enum_by_name(self.0)
            .unwrap_or_else(|| panic!("{} is in the schema", self.0))
    }

    /// The short names and numbers of every value but 0 (unspecified), in proto order.
    pub fn short_names(self) -> Vec<(String, i32)> {
        short_names(&self.descriptor())
    }
}

/// The short names of an enum's values but 0: each full name without the prefix every
/// value of the enum shares by the proto style guide (`LIST_KIND_` of `ListKind`), lowercased.
fn short_names(e: &EnumDescriptor) -> Vec<(String, i32)> {
    let prefix = format!("{}_", screaming_snake(e.name()));
    e.values()
        .filter(|v| v.number() != 0)
        .map(|v| {
            let name = v.name();
            let short = name.strip_prefix(&prefix).unwrap_or(name);
            (short.to_ascii_lowercase(), v.number())
        })
        .collect()
}

/// `ListKind` → `LIST_KIND`.
fn screaming_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// An enum value's short name for display: `-` for unspecified, the number for a value
/// this build does not know.
pub fn display_enum(names: EnumNames, value: i32) -> String {
    match enum_name(names, value) {
        Some(name) => name,
        None if value == 0 => "-".to_owned(),
        None => value.to_string(),
    }
}

/// The short name of an enum value, or `None` for 0 (unspecified) and values this build
/// does not know.
pub fn enum_name(names: EnumNames, value: i32) -> Option<String> {
    names
        .short_names()
        .into_iter()
        .find(|(_, number)| *number == value)
        .map(|(name, _)| name)
}

/// Parses an enum value given by its short or full name (a flag's value); the error lists
/// the short names.
pub fn parse_enum(names: EnumNames, text: &str) -> Result<i32, String> {
    let e = names.descriptor();
    enum_number(&e, text).ok_or_else(|| unknown_enum_value(&e, text))
}

fn enum_number(e: &EnumDescriptor, text: &str) -> Option<i32> {
    match e.get_value_by_name(text) {
        Some(v) => Some(v.number()),
        None => short_names(e)
            .into_iter()
            .find(|(name, _)| name == text)
            .map(|(_, number)| number),
    }
}

fn unknown_enum_value(e: &EnumDescriptor, text: &str) -> String {
    format!(
        "unknown value {text:?}, expected one of {}",
        joined_names(e)
    )
}

fn joined_names(e: &EnumDescriptor) -> String {
    short_names(e)
        .into_iter()
        .map(|(name, _)| name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with one record's JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The dotted field path as the input spells it (`subject.kind`,
    /// `decision.penalty_kinds[1]`); empty for the record itself.
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
    parse_message(line)
}

/// Parses one line of proto3 JSON (short enum names allowed) into a message of type `M`.
pub fn parse_message<M: ReflectMessage + Default>(line: &str) -> Result<M, FieldError> {
    let mut value: Value = serde_json::from_str(line).map_err(|e| {
        // The caller names the line; serde's own "at line 1" would contradict it.
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text);
        FieldError {
            field: String::new(),
            message: format!("invalid JSON at column {}: {message}", e.column()),
        }
    })?;
    let descriptor = M::default().descriptor();
    check_message(&descriptor, &mut value, "")?;
    // What the check leaves to the mapping (a float or bytes field's value) fails there;
    // the tracker names the field.
    let mut track = serde_path_to_error::Track::new();
    let message = DynamicMessage::deserialize(
        descriptor,
        serde_path_to_error::Deserializer::new(value, &mut track),
    )
    .map_err(|e| {
        let path = track.path().to_string();
        FieldError {
            field: if path == "." { String::new() } else { path },
            message: e.to_string(),
        }
    })?;
    Ok(message
        .transcode_to()
        .expect("a message read for a descriptor decodes as its type"))
}

/// Checks a JSON value against a message's descriptor before the proto3 JSON mapping
/// reads it, for what the mapping would accept wrongly or explain poorly: a field the
/// message does not have, a value of the wrong type, an enum value (a short name becomes the
/// full name here), an integer out of its field's range. What it leaves (floats, bytes) the
/// mapping reports.
fn check_message(
    descriptor: &MessageDescriptor,
    value: &mut Value,
    path: &str,
) -> Result<(), FieldError> {
    let Value::Object(map) = value else {
        return Err(FieldError {
            field: path.to_owned(),
            message: format!("expected an object, found {}", describe(value)),
        });
    };
    for (key, value) in map.iter_mut() {
        let path = join(path, key);
        let field = descriptor
            .get_field_by_json_name(key)
            .or_else(|| descriptor.get_field_by_name(key))
            .ok_or_else(|| FieldError {
                field: path.clone(),
                message: "unknown field".to_owned(),
            })?;
        check_field(&field, value, &path)?;
    }
    Ok(())
}

fn check_field(field: &FieldDescriptor, value: &mut Value, path: &str) -> Result<(), FieldError> {
    let kind = field.kind();
    let wrong = |expected: &str, found: &Value| FieldError {
        field: path.to_owned(),
        message: format!("expected {expected}, found {}", describe(found)),
    };
    if field.is_map() {
        let value_kind = kind
            .as_message()
            .expect("a map field's kind is its entry message")
            .map_entry_value_field()
            .kind();
        match value {
            Value::Null => Ok(()),
            Value::Object(entries) => entries
                .iter_mut()
                .try_for_each(|(key, entry)| check_value(&value_kind, entry, &join(path, key))),
            other => Err(wrong("an object", other)),
        }
    } else if field.is_list() {
        match value {
            Value::Null => Ok(()),
            Value::Array(items) => items
                .iter_mut()
                .enumerate()
                .try_for_each(|(i, item)| check_value(&kind, item, &format!("{path}[{i}]"))),
            other => Err(wrong("a list", other)),
        }
    } else {
        check_value(&kind, value, path)
    }
}

fn check_value(kind: &Kind, value: &mut Value, path: &str) -> Result<(), FieldError> {
    let error = |message: String| FieldError {
        field: path.to_owned(),
        message,
    };
    if value.is_null() {
        // proto3 JSON: null is the field's default.
        return Ok(());
    }
    match kind {
        // The well-known types have JSON forms of their own; the mapping knows them.
        Kind::Message(m) if m.full_name().starts_with("google.protobuf.") => Ok(()),
        Kind::Message(m) => check_message(m, value, path),
        Kind::Enum(e) => match value {
            Value::String(text) => {
                let number =
                    enum_number(e, text).ok_or_else(|| error(unknown_enum_value(e, text)))?;
                // Unknown numbers are kept (proto3 enums are open), so only known names
                // reach here and every one has a value.
                let full = e
                    .get_value(number)
                    .expect("a named value")
                    .name()
                    .to_owned();
                *text = full;
                Ok(())
            }
            Value::Number(n) => {
                let Some(whole) = integer(n) else {
                    return Err(error(format!("{n} is not an enum number")));
                };
                in_range(whole, i32::MIN.into(), i32::MAX.into()).map_err(error)
            }
            other => Err(error(format!(
                "expected one of {}, found {}",
                joined_names(e),
                describe(other)
            ))),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            check_integer(value, i32::MIN.into(), i32::MAX.into()).map_err(error)
        }
        Kind::Uint32 | Kind::Fixed32 => check_integer(value, 0, u32::MAX.into()).map_err(error),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            check_integer(value, i64::MIN.into(), i64::MAX.into()).map_err(error)
        }
        Kind::Uint64 | Kind::Fixed64 => check_integer(value, 0, u64::MAX.into()).map_err(error),
        Kind::String if !value.is_string() => Err(error(format!(
            "expected a string, found {}",
            describe(value)
        ))),
        Kind::Bool if !value.is_boolean() => Err(error(format!(
            "expected true or false, found {}",
            describe(value)
        ))),
        _ => Ok(()),
    }
}

/// An integer field's value: a JSON number or, as proto3 JSON allows (and prints 64-bit
/// integers), a decimal string; whole and within `min..=max`.
fn check_integer(value: &Value, min: i128, max: i128) -> Result<(), String> {
    let whole = match value {
        Value::Number(n) => integer(n).ok_or_else(|| format!("expected an integer, found {n}"))?,
        Value::String(s) => s
            .parse::<i128>()
            .map_err(|_| format!("expected an integer, found {s:?}"))?,
        other => return Err(format!("expected an integer, found {}", describe(other))),
    };
    in_range(whole, min, max)
}

/// A JSON number as a whole number, `None` if it has a fraction. A whole number beyond 64
/// bits arrives as a float (serde_json keeps no wider integers); it saturates, being out of
/// every range anyway.
fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .or_else(|| {
            let f = n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0)?;
            Some(f as i128)
        })
}

fn in_range(n: i128, min: i128, max: i128) -> Result<(), String> {
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(format!("{n} is out of range {min}..={max}"))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A message in credexctl's JSON (see the module documentation), to serialise on its own
/// or inside a document of the command's own (`audit proof --json`'s `record`).
#[derive(Debug, Clone, Copy)]
pub struct Json<'a, M>(pub &'a M);

impl<M: ReflectMessage> Serialize for Json<'_, M> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.transcode_to_dynamic().serialize_with_options(
            serializer,
            &SerializeOptions::new().use_proto_field_name(true),
        )
    }
}

/// A response message as its command's `--json` document (`status`, `list`, `lookup`,
/// `invalid`, `access-log`, a `watch` line): proto3 JSON as [`Json`] writes it, but with every
/// field that has no presence written, zero values too (protobuf printers'
/// `always_print_fields_with_no_presence`): `"lag": "0"`, `"forked": false`, `"entries": []`.
/// So a document's keys do not depend on its values, and a script reads `o["lag"]` without
/// a default. A message field left unset (`StatusResponse.view` before the node's first count
/// of its view) is absent, as protobuf's printers leave it.
///
/// What the command knows that the response does not carry (the node that answered) is
/// added with [`Document::with`], ahead of the message's fields; a field of the message by
/// the same name wins (the schema's, once it carries it).
#[derive(Debug, Clone)]
pub struct Document<'a, M> {
    message: &'a M,
    added: Vec<(&'static str, Value)>,
}

const DOCUMENT: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .skip_default_fields(false);

impl<'a, M: ReflectMessage> Document<'a, M> {
    pub fn new(message: &'a M) -> Self {
        Document {
            message,
            added: Vec::new(),
        }
    }

    /// Adds `key` to the document, before the message's fields.
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.added.push((key, value.into()));
        self
    }

    /// The document as one line (`status --watch --json`, `watch --json`).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a message always serialises")
    }
}

impl<M: ReflectMessage> Serialize for Document<'_, M> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let message = self.message.transcode_to_dynamic();
        let descriptor = message.descriptor();
        let added: Vec<&(&str, Value)> = self
            .added
            .iter()
            .filter(|(key, _)| descriptor.get_field_by_name(key).is_none())
            .collect();
        message.serialize_with_options(
            FirstInObject {
                serializer,
                entries: &added,
            },
            &DOCUMENT,
        )
    }
}

/// A serializer that writes `entries` into the object a message opens, before the message's
/// fields: prost-reflect writes a message as a map it opens itself, so they go in when it
/// does (into a `serde_json::Value` instead, the keys would come out sorted, not in proto
/// order). A message of the schema's responses is always an object; anything else is an error.
struct FirstInObject<'a, S> {
    serializer: S,
    entries: &'a [&'a (&'a str, Value)],
}

fn not_an_object<E: serde::ser::Error>() -> E {
    E::custom("a document is a message, written as an object")
}

/// The `Serializer` methods a message never calls, each refusing.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ok:ty;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<$ok, S::Error> {
            Err(not_an_object())
        }
    )*};
}

impl<S: serde::Serializer> serde::Serializer for FirstInObject<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeMap = S::SerializeMap;
    type SerializeSeq = serde::ser::Impossible<S::Ok, S::Error>;
    type SerializeTuple = serde::ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = serde::ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = serde::ser::Impossible<S::Ok, S::Error>;
    type SerializeStruct = serde::ser::Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = serde::ser::Impossible<S::Ok, S::Error>;

    fn serialize_map(self, _len: Option<usize>) -> Result<S::SerializeMap, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = self.serializer.serialize_map(None)?;
        for (key, value) in self.entries {
            map.serialize_entry(key, value)?;
        }
        Ok(map)
    }

    refuse! {
        serialize_bool(bool) -> S::Ok;
        serialize_i8(i8) -> S::Ok;
        serialize_i16(i16) -> S::Ok;
        serialize_i32(i32) -> S::Ok;
        serialize_i64(i64) -> S::Ok;
        serialize_u8(u8) -> S::Ok;
        serialize_u16(u16) -> S::Ok;
        serialize_u32(u32) -> S::Ok;
        serialize_u64(u64) -> S::Ok;
        serialize_f32(f32) -> S::Ok;
        serialize_f64(f64) -> S::Ok;
        serialize_char(char) -> S::Ok;
        serialize_str(&str) -> S::Ok;
        serialize_bytes(&[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(&'static str) -> S::Ok;
        serialize_unit_variant(&'static str, u32, &'static str) -> S::Ok;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<S::Ok, S::Error> {
        Err(not_an_object())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(not_an_object())
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(not_an_object())
    }
}

/// A message as one JSON Lines line.
pub fn to_line<M: ReflectMessage>(message: &M) -> String {
    serde_json::to_string(&Json(message)).expect("a message always serialises")
}

/// A record as one JSON Lines line.
pub fn record_to_line(record: &CreditRecord) -> String {
    to_line(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use credex_proto::v1::{
        Authority, Decision, ExcludedRecord, ExclusionReason, LegalRepresentative, ListKind,
        Provenance, Publication, RecordStatus, Severity, StatusKind, Subject, SubjectKind,
        ViewRecord,
    };
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
        // Proto field names, enums by full name, the 64-bit fine as a string.
        expect![[r#"{"record_id":"CS-2026-000118","version":1,"subject":{"kind":"SUBJECT_KIND_LEGAL_PERSON","name":"长沙市岳麓区湘味食品有限公司","uscc":"91430104MA4L0XYZ1A","legal_representative":{"name":"张伟","id_number":"43010419800101123X"}},"list":"LIST_KIND_PENALTY","category":"food_drug.food_safety","severity":"SEVERITY_GENERAL","authority":{"name":"长沙市市场监督管理局","uscc":"11430100MB1234567X"},"decision":{"document_number":"长市监处罚〔2026〕118号","decided_on":"2026-03-02","legal_basis":"《中华人民共和国食品安全法》第一百二十四条","facts":"生产经营超过保质期的食品","penalty_kinds":["警告","罚款"],"penalty_content":"警告，罚款人民币伍万元","fine_fen":"5000000"},"publication":{"starts_on":"2026-03-05","ends_on":"2027-03-04"},"status":{"kind":"STATUS_KIND_ACTIVE"},"data_source":"长沙市市场监督管理局"}"#]]
            .assert_eq(&record_to_line(&sample()));
    }

    #[test]
    fn view_and_excluded_records_are_proto3_json_too() {
        let view = ViewRecord {
            record: Some(CreditRecord {
                record_id: "a".into(),
                version: 2,
                ..Default::default()
            }),
            provenance: Some(Provenance {
                origin: "changsha".into(),
                seq: 12,
                checkpoint_size: 40,
            }),
            under_objection: false,
            unknown_category: false,
            legacy_code: true,
        };
        expect![[r#"{"record":{"record_id":"a","version":2},"provenance":{"origin":"changsha","seq":"12","checkpoint_size":"40"},"legacy_code":true}"#]]
            .assert_eq(&to_line(&view));
        let excluded = ExcludedRecord {
            record_id: "b".into(),
            version: 1,
            reason: ExclusionReason::NotYetPublished.into(),
            list: ListKind::Black.into(),
            ..Default::default()
        };
        expect![[r#"{"record_id":"b","version":1,"reason":"EXCLUSION_REASON_NOT_YET_PUBLISHED","list":"LIST_KIND_BLACK"}"#]]
            .assert_eq(&to_line(&excluded));
    }

    #[test]
    fn documents_write_zero_values_and_put_what_the_command_adds_first() {
        use credex_proto::v1::{InvalidEntry, ListInvalidResponse, StatusResponse};
        let response = ListInvalidResponse {
            entries: vec![InvalidEntry {
                origin: "changsha".into(),
                seq: 0,
                record_id: "CS-1".into(),
                version: 0,
                reason: "version: 0 is not a version".into(),
            }],
            next_page_token: String::new(),
        };
        let document = Document::new(&response).with("node", "wuhan");
        // Proto order after the added key; a zero seq and an empty token written, not left out.
        expect![[r#"{"node":"wuhan","entries":[{"origin":"changsha","seq":"0","record_id":"CS-1","version":0,"reason":"version: 0 is not a version"}],"next_page_token":""}"#]]
            .assert_eq(&document.to_line());
        // Pretty (print_json) is the same document.
        let pretty = serde_json::to_string_pretty(&document).expect("json");
        assert_eq!(
            serde_json::from_str::<Value>(&pretty).expect("json"),
            serde_json::from_str::<Value>(&document.to_line()).expect("json")
        );
        // A key the message has is the message's.
        let clash = Document::new(&response).with("next_page_token", "mine");
        assert_eq!(clash.to_line(), Document::new(&response).to_line());
        // A message field left unset (the view, the storage) is absent; lists are empty.
        expect![[r#"{"city":"","consortium":"","peers":[],"origins":[],"quarantine":[],"invalid_entries":"0"}"#]]
            .assert_eq(&Document::new(&StatusResponse::default()).to_line());
    }

    #[test]
    fn short_names_are_the_ones_tables_and_flags_used() {
        // The names credexctl printed and read before they came from the schema.
        let names = |e: EnumNames| {
            e.short_names()
                .into_iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
                .join(" ")
        };
        expect!["legal_person individual_business natural_person"].assert_eq(&names(SUBJECT_KINDS));
        expect!["red black watch penalty"].assert_eq(&names(LIST_KINDS));
        expect!["minor general serious"].assert_eq(&names(SEVERITIES));
        expect!["active under_objection repaired revoked"].assert_eq(&names(STATUS_KINDS));
        expect![
            "repaired revoked expired not_yet_published not_recognised unknown_category invalid"
        ]
        .assert_eq(&names(EXCLUSION_REASONS));
        assert_eq!(parse_enum(LIST_KINDS, "black"), Ok(ListKind::Black.into()));
        assert_eq!(
            parse_enum(LIST_KINDS, "LIST_KIND_BLACK"),
            Ok(ListKind::Black.into())
        );
        assert_eq!(display_enum(SEVERITIES, 0), "-");
        assert_eq!(display_enum(SEVERITIES, 9), "9");
        assert_eq!(display_enum(STATUS_KINDS, 2), "under_objection");
    }

    #[test]
    fn list_and_subject_names_are_the_catalogue_file_names() {
        use credex_core::catalogue::{list_kind_name, subject_kind_name};
        for (name, kind) in LIST_KINDS.short_names() {
            let kind = ListKind::try_from(kind).expect("a known list kind");
            assert_eq!(list_kind_name(kind), Some(name.as_str()));
        }
        for (name, kind) in SUBJECT_KINDS.short_names() {
            let kind = SubjectKind::try_from(kind).expect("a known subject kind");
            assert_eq!(subject_kind_name(kind), Some(name.as_str()));
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
            // The extremes of the 64-bit fine, written as strings.
            CreditRecord {
                decision: Some(Decision {
                    fine_fen: i64::MIN,
                    ..Default::default()
                }),
                ..sample()
            },
            CreditRecord {
                version: u32::MAX,
                decision: Some(Decision {
                    fine_fen: i64::MAX,
                    ..Default::default()
                }),
                ..sample()
            },
        ];
        for record in records {
            let line = record_to_line(&record);
            assert_eq!(parse_record(&line), Ok(record), "{line}");
        }
    }

    /// `sample()` as grpcurl prints it (protojson's defaults, written out by hand from the
    /// proto3 JSON mapping): lowerCamelCase names, enums by full name, int64 as a string.
    const GRPCURL_SAMPLE: &str = r#"{
      "recordId": "CS-2026-000118",
      "version": 1,
      "subject": {
        "kind": "SUBJECT_KIND_LEGAL_PERSON",
        "name": "长沙市岳麓区湘味食品有限公司",
        "uscc": "91430104MA4L0XYZ1A",
        "legalRepresentative": {
          "name": "张伟",
          "idNumber": "43010419800101123X"
        }
      },
      "list": "LIST_KIND_PENALTY",
      "category": "food_drug.food_safety",
      "severity": "SEVERITY_GENERAL",
      "authority": {
        "name": "长沙市市场监督管理局",
        "uscc": "11430100MB1234567X"
      },
      "decision": {
        "documentNumber": "长市监处罚〔2026〕118号",
        "decidedOn": "2026-03-02",
        "legalBasis": "《中华人民共和国食品安全法》第一百二十四条",
        "facts": "生产经营超过保质期的食品",
        "penaltyKinds": ["警告", "罚款"],
        "penaltyContent": "警告，罚款人民币伍万元",
        "fineFen": "5000000"
      },
      "publication": {
        "startsOn": "2026-03-05",
        "endsOn": "2027-03-04"
      },
      "status": {
        "kind": "STATUS_KIND_ACTIVE"
      },
      "dataSource": "长沙市市场监督管理局"
    }"#;

    #[test]
    fn grpcurl_output_is_read_as_the_record_it_printed() {
        let one_line: String = GRPCURL_SAMPLE.lines().map(str::trim).collect();
        assert_eq!(parse_record(&one_line), Ok(sample()));
    }

    #[test]
    fn short_full_and_numbered_enum_values_read_alike() {
        let short = r#"{"subject":{"kind":"natural_person"},"list":"black","severity":"serious","status":{"kind":"under_objection"}}"#;
        let full = r#"{"subject":{"kind":"SUBJECT_KIND_NATURAL_PERSON"},"list":"LIST_KIND_BLACK","severity":"SEVERITY_SERIOUS","status":{"kind":"STATUS_KIND_UNDER_OBJECTION"}}"#;
        let numbers = r#"{"subject":{"kind":3},"list":2,"severity":3,"status":{"kind":2}}"#;
        let expected = CreditRecord {
            subject: Some(Subject {
                kind: SubjectKind::NaturalPerson.into(),
                ..Default::default()
            }),
            list: ListKind::Black.into(),
            severity: Severity::Serious.into(),
            status: Some(RecordStatus {
                kind: StatusKind::UnderObjection.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for input in [short, full, numbers] {
            assert_eq!(parse_record(input), Ok(expected.clone()), "{input}");
        }
    }

    #[test]
    fn what_the_check_leaves_to_the_mapping_is_named_by_its_path_too() {
        // Bytes are base64 in proto3 JSON; the mapping reads them and says what is wrong.
        use credex_proto::v1::{SignedCheckpoint, WitnessRefusal};
        let refusal =
            r#"{"reason":"stale","latest":{"note":"Y2hlY2twb2ludA=="},"latest_size":"7"}"#;
        assert_eq!(
            parse_message::<WitnessRefusal>(refusal),
            Ok(WitnessRefusal {
                reason: "stale".into(),
                latest: Some(SignedCheckpoint {
                    note: b"checkpoint".to_vec(),
                }),
                latest_size: 7,
            })
        );
        let bad = r#"{"reason":"stale","latest":{"note":"not base64!"}}"#;
        let error = parse_message::<WitnessRefusal>(bad).unwrap_err();
        assert_eq!(error.field, "latest.note");
        assert!(error.message.starts_with("invalid base64"), "{error}");
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
            expect![[r#"ok {"record_id":"A","version":2,"list":"LIST_KIND_BLACK"}"#]],
        );
        // proto3 JSON: null is the default for every field, integers may be strings.
        check(
            r#"{"record_id":null,"version":"2","decision":{"fine_fen":"12","penalty_kinds":null}}"#,
            expect![[r#"ok {"version":2,"decision":{"fine_fen":"12"}}"#]],
        );
        check(
            r#"{"record_id":"A","#,
            expect!["err invalid JSON at column 17: EOF while parsing a value"],
        );
        check(r#"["A"]"#, expect!["err expected an object, found a list"]);
        check(r#"{"lst":"black"}"#, expect![["err lst: unknown field"]]);
        check(
            r#"{"recordID":"A"}"#,
            expect![["err recordID: unknown field"]],
        );
        check(
            r#"{"list":"grey"}"#,
            expect![[
                r#"err list: unknown value "grey", expected one of red, black, watch, penalty"#
            ]],
        );
        check(
            r#"{"list":"UNSPECIFIED"}"#,
            expect![[
                r#"err list: unknown value "UNSPECIFIED", expected one of red, black, watch, penalty"#
            ]],
        );
        check(
            r#"{"version":"two"}"#,
            expect![[r#"err version: expected an integer, found "two""#]],
        );
        check(
            r#"{"version":true}"#,
            expect![[r#"err version: expected an integer, found true"#]],
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
            r#"{"decision":{"fineFen":"-9223372036854775809"}}"#,
            expect![
                "err decision.fineFen: -9223372036854775809 is out of range -9223372036854775808..=9223372036854775807"
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
            r#"{"subject":{"legalRepresentative":{"idNumber":7}}}"#,
            expect![["err subject.legalRepresentative.idNumber: expected a string, found 7"]],
        );
        check(
            r#"{"decision":{"penalty_kinds":["警告",3]}}"#,
            expect![["err decision.penalty_kinds[1]: expected a string, found 3"]],
        );
        check(
            r#"{"decision":{"penalty_kinds":"警告"}}"#,
            expect![[r#"err decision.penalty_kinds: expected a list, found "警告""#]],
        );
        check(
            r#"{"decision":{"fine_fen":"12元"}}"#,
            expect![[r#"err decision.fine_fen: expected an integer, found "12元""#]],
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
        check(
            r#"{"status":{"kind":1.5}}"#,
            expect![["err status.kind: 1.5 is not an enum number"]],
        );
    }
}
