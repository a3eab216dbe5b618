//! Reading platform exports for `credexctl import`: CSV with the Chinese headers of the 双公示
//! administrative-penalty export and of red/black-list exports, in UTF-8 (with or without a
//! byte order mark) or GBK, mapped onto [`CreditRecord`]s.
//!
//! - [`open`] decodes a file to UTF-8 as it is read ([`Decoded`]): GBK when `--encoding gbk`
//!   says so, or when the bytes are not valid UTF-8 (a first pass over the file decides).
//! - [`Columns`] maps a header row onto the record's fields ([`Column`], every header each one
//!   accepts); a file without a column its kind needs is refused whole.
//! - [`Columns::record`] turns one row into a record, or the cells it could not read.
//! - [`record_id`] derives a record's id from the deciding authority and the decision document
//!   number, so the same row always maps to the same record: a rerun publishes nothing, a
//!   changed row a new version (the node numbers the versions, `PublishRequest.assign_versions`).
//! - [`column_of`] names the column a validation error's field path came from.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use chrono::Months;
use credex_core::catalogue::Catalogue;
use credex_core::date::{Date, format_date, parse_date};
use credex_proto::v1::{
    Authority, CreditRecord, Decision, LegalRepresentative, ListKind, Publication, RecordStatus,
    Severity, StatusKind, Subject, SubjectKind,
};
use sha2::{Digest, Sha256};

/// The character encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8 unless the bytes are not valid UTF-8, then GBK.
    Auto,
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// GBK (GB 2312's superset that Windows exports use; decoded as the WHATWG Encoding
    /// Standard says, which reads GB 18030's four-byte sequences too).
    Gbk,
}

/// Opens `path` as UTF-8 text, decoding GBK when `encoding` says so or, for [`Encoding::Auto`],
/// when the file is not valid UTF-8. A UTF-8 byte order mark is skipped. Returns the reader and
/// the encoding used.
pub fn open(path: &Path, encoding: Encoding) -> io::Result<(Decoded<BufReader<File>>, Encoding)> {
    let encoding = match encoding {
        Encoding::Auto if is_utf8(BufReader::new(File::open(path)?))? => Encoding::Utf8,
        Encoding::Auto => Encoding::Gbk,
        other => other,
    };
    let file = BufReader::with_capacity(1 << 16, File::open(path)?);
    Ok((Decoded::new(file, encoding), encoding))
}

/// Whether everything `reader` holds is valid UTF-8, read in chunks (memory stays flat).
fn is_utf8(reader: impl Read) -> io::Result<bool> {
    let mut decoded = Decoded::new(reader, Encoding::Utf8);
    let mut sink = vec![0; 1 << 16];
    loop {
        match decoded.read(&mut sink) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// A reader of UTF-8 text decoded from UTF-8 or GBK bytes as they are read. Bytes that are not
/// valid in the encoding are an `InvalidData` error giving their offset, never replaced.
#[derive(Debug)]
pub struct Decoded<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    start: usize,
    output: Vec<u8>,
    out_start: usize,
    consumed: u64,
    eof: bool,
    /// The decoder was told the input ended; it may not be called again.
    finished: bool,
}

impl<R: Read> Decoded<R> {
    pub fn new(inner: R, encoding: Encoding) -> Self {
        let encoding = match encoding {
            Encoding::Gbk => encoding_rs::GBK,
            Encoding::Utf8 | Encoding::Auto => encoding_rs::UTF_8,
        };
        Decoded {
            inner,
            // A UTF-8 byte order mark is skipped in either encoding (it is no GBK text).
            decoder: encoding.new_decoder_with_bom_removal(),
            input: Vec::with_capacity(1 << 16),
            start: 0,
            output: Vec::with_capacity(3 << 16),
            out_start: 0,
            consumed: 0,
            eof: false,
            finished: false,
        }
    }

    /// Decodes more into `output`; false at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            if self.start == self.input.len() && !self.eof {
                self.input.resize(1 << 16, 0);
                let n = self.inner.read(&mut self.input)?;
                self.input.truncate(n);
                self.start = 0;
                self.eof = n == 0;
            }
            if self.finished {
                return Ok(false);
            }
            if self.eof && self.start == self.input.len() {
                self.finished = true;
                // Flush what the decoder holds (an incomplete sequence at the very end).
                self.output.resize(16, 0);
                let (result, _, written) =
                    self.decoder
                        .decode_to_utf8_without_replacement(&[], &mut self.output, true);
                self.output.truncate(written);
                self.out_start = 0;
                if let encoding_rs::DecoderResult::Malformed(..) = result {
                    return Err(self.malformed());
                }
                return Ok(!self.output.is_empty());
            }
            self.output.resize(3 << 16, 0);
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.start..],
                &mut self.output,
                false,
            );
            self.start += read;
            self.consumed += read as u64;
            self.output.truncate(written);
            self.out_start = 0;
            if let encoding_rs::DecoderResult::Malformed(..) = result {
                return Err(self.malformed());
            }
            if written > 0 {
                return Ok(true);
            }
        }
    }

    fn malformed(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "bytes near offset {} are not valid {}",
                self.consumed,
                self.decoder.encoding().name()
            ),
        )
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_start == self.output.len() {
            self.output.clear();
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.output.len() - self.out_start);
        buf[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

/// A record field a CSV column fills, with the headers that name it (the first is the one
/// the 双公示 or list export uses; the others are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    SubjectName,
    SubjectKind,
    Uscc,
    IdNumber,
    LegalRepresentative,
    LegalRepresentativeId,
    DocumentNumber,
    Category,
    Facts,
    LegalBasis,
    PenaltyKinds,
    PenaltyContent,
    Fine,
    DecidedOn,
    StartsOn,
    EndsOn,
    AuthorityName,
    AuthorityUscc,
    DataSource,
    Remarks,
    List,
    Severity,
    Sanctions,
}

impl Column {
    pub const ALL: [Column; 23] = [
        Column::SubjectName,
        Column::SubjectKind,
        Column::Uscc,
        Column::IdNumber,
        Column::LegalRepresentative,
        Column::LegalRepresentativeId,
        Column::DocumentNumber,
        Column::Category,
        Column::Facts,
        Column::LegalBasis,
        Column::PenaltyKinds,
        Column::PenaltyContent,
        Column::Fine,
        Column::DecidedOn,
        Column::StartsOn,
        Column::EndsOn,
        Column::AuthorityName,
        Column::AuthorityUscc,
        Column::DataSource,
        Column::Remarks,
        Column::List,
        Column::Severity,
        Column::Sanctions,
    ];

    /// The headers this column goes by, the 双公示 export's first where it has one.
    pub fn headers(self) -> &'static [&'static str] {
        match self {
            Column::SubjectName => &["行政相对人名称", "主体名称"],
            Column::SubjectKind => &["行政相对人类别", "主体类别"],
            Column::Uscc => &["统一社会信用代码"],
            Column::IdNumber => &["证件号码", "身份证号码"],
            Column::LegalRepresentative => &["法定代表人"],
            Column::LegalRepresentativeId => &["法定代表人证件号码"],
            Column::DocumentNumber => &["行政处罚决定书文号", "认定文书文号"],
            Column::Category => &["违法行为类型", "信用信息类别"],
            Column::Facts => &["违法事实", "列入事由"],
            Column::LegalBasis => &["处罚依据", "认定依据"],
            Column::PenaltyKinds => &["处罚类别"],
            Column::PenaltyContent => &["处罚内容"],
            Column::Fine => &["罚款金额(万元)"],
            Column::DecidedOn => &["处罚决定日期", "列入日期"],
            Column::StartsOn => &["公示起始日期"],
            Column::EndsOn => &["公示截止期"],
            Column::AuthorityName => &["处罚机关", "认定部门"],
            Column::AuthorityUscc => &["处罚机关统一社会信用代码", "认定部门统一社会信用代码"],
            Column::DataSource => &["数据来源单位"],
            Column::Remarks => &["备注"],
            Column::List => &["名单类别"],
            Column::Severity => &["失信程度"],
            Column::Sanctions => &["惩戒措施"],
        }
    }

    /// The record field the column fills.
    pub fn field(self) -> &'static str {
        match self {
            Column::SubjectName => "subject.name",
            Column::SubjectKind => "subject.kind",
            Column::Uscc => "subject.uscc",
            Column::IdNumber => "subject.id_number",
            Column::LegalRepresentative => "subject.legal_representative.name",
            Column::LegalRepresentativeId => "subject.legal_representative.id_number",
            Column::DocumentNumber => "decision.document_number",
            Column::Category => "category",
            Column::Facts => "decision.facts",
            Column::LegalBasis => "decision.legal_basis",
            Column::PenaltyKinds => "decision.penalty_kinds",
            Column::PenaltyContent => "decision.penalty_content",
            Column::Fine => "decision.fine_fen",
            Column::DecidedOn => "decision.decided_on",
            Column::StartsOn => "publication.starts_on",
            Column::EndsOn => "publication.ends_on",
            Column::AuthorityName => "authority.name",
            Column::AuthorityUscc => "authority.uscc",
            Column::DataSource => "data_source",
            Column::Remarks => "remarks",
            Column::List => "list",
            Column::Severity => "severity",
            Column::Sanctions => "decision.sanction_measures",
        }
    }

    /// The columns a file of this kind must have.
    fn required(list_export: bool) -> &'static [Column] {
        if list_export {
            &[
                Column::SubjectName,
                Column::SubjectKind,
                Column::List,
                Column::Category,
                Column::DecidedOn,
                Column::EndsOn,
                Column::AuthorityName,
                Column::AuthorityUscc,
            ]
        } else {
            &[
                Column::SubjectName,
                Column::SubjectKind,
                Column::Uscc,
                Column::DocumentNumber,
                Column::Category,
                Column::Facts,
                Column::LegalBasis,
                Column::PenaltyKinds,
                Column::DecidedOn,
                Column::EndsOn,
                Column::AuthorityName,
                Column::AuthorityUscc,
            ]
        }
    }
}

/// A header as compared: trimmed, full-width parentheses as ASCII ones, a stray byte order
/// mark dropped.
fn header_key(text: &str) -> String {
    text.trim()
        .trim_start_matches('\u{feff}')
        .replace('（', "(")
        .replace('）', ")")
        .replace(char::is_whitespace, "")
}

/// One cell of a row that could not be read, by column header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// The header as the file writes it; empty for the row as a whole.
    pub column: String,
    pub reason: String,
}

/// How a file's header maps onto the record's fields.
#[derive(Debug, Clone)]
pub struct Columns {
    headers: Vec<String>,
    index: Vec<(Column, usize)>,
    /// A red/black-list export (it has 名单类别); else a 双公示 penalty export.
    list_export: bool,
}

impl Columns {
    /// Maps a header row; a column the file's kind needs and lacks, an unknown header or one
    /// named twice is an error naming it.
    pub fn new(headers: &[String]) -> Result<Columns, String> {
        let mut index: Vec<(Column, usize)> = Vec::new();
        let mut unknown = Vec::new();
        for (i, header) in headers.iter().enumerate() {
            let key = header_key(header);
            let Some(column) = Column::ALL
                .into_iter()
                .find(|c| c.headers().contains(&key.as_str()))
            else {
                unknown.push(header.trim().to_owned());
                continue;
            };
            if let Some((_, j)) = index.iter().find(|(c, _)| *c == column) {
                return Err(format!(
                    "columns {} and {} both give {}",
                    headers[*j].trim(),
                    header.trim(),
                    column.headers()[0]
                ));
            }
            index.push((column, i));
        }
        if !unknown.is_empty() {
            return Err(format!(
                "unknown column{} {}: see `credexctl import --help` for the headers accepted",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", ")
            ));
        }
        let list_export = index.iter().any(|(c, _)| *c == Column::List);
        let missing: Vec<&str> = Column::required(list_export)
            .iter()
            .filter(|c| !index.iter().any(|(have, _)| have == *c))
            .map(|c| {
                c.headers()[if list_export && c.headers().len() > 1 {
                    1
                } else {
                    0
                }]
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the {} export lacks column{} {}",
                if list_export {
                    "red/black-list"
                } else {
                    "双公示 administrative-penalty"
                },
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            ));
        }
        Ok(Columns {
            headers: headers.iter().map(|h| h.trim().to_owned()).collect(),
            index,
            list_export,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn is_list_export(&self) -> bool {
        self.list_export
    }

    /// The header the file gives `column`, or its usual name when it has none.
    pub fn header(&self, column: Column) -> String {
        match self.index.iter().find(|(c, _)| *c == column) {
            Some((_, i)) => self.headers[*i].clone(),
            None => column.headers()[0].to_owned(),
        }
    }

    fn has(&self, column: Column) -> bool {
        self.index.iter().any(|(c, _)| *c == column)
    }

    /// The record a row holds (version 0: the node numbers it), or every cell it could not
    /// read. The record is not validated here.
    pub fn record(
        &self,
        row: &csv::StringRecord,
        catalogue: &Catalogue,
    ) -> Result<CreditRecord, Vec<CellError>> {
        if row.len() != self.headers.len() {
            return Err(vec![CellError {
                column: String::new(),
                reason: format!(
                    "the row has {} fields, the header {}",
                    row.len(),
                    self.headers.len()
                ),
            }]);
        }
        let cell = |c: Column| -> &str {
            self.index
                .iter()
                .find(|(have, _)| *have == c)
                .map_or("", |(_, i)| row[*i].trim())
        };
        let mut errors = Vec::new();
        let mut fail = |c: Column, reason: String| {
            errors.push(CellError {
                column: self.header(c),
                reason,
            })
        };
        let list = if self.list_export {
            match list_of(cell(Column::List)) {
                Some(list) => list,
                None => {
                    fail(
                        Column::List,
                        format!(
                            "{:?} is not a list: 红名单, 黑名单 (严重失信主体名单) or 重点关注名单",
                            cell(Column::List)
                        ),
                    );
                    ListKind::Unspecified
                }
            }
        } else {
            ListKind::Penalty
        };
        let kind = match subject_kind_of(cell(Column::SubjectKind)) {
            Some(kind) => kind,
            None => {
                fail(
                    Column::SubjectKind,
                    format!(
                        "{:?} is not a subject kind: 法人及非法人组织, 个体工商户 or 自然人",
                        cell(Column::SubjectKind)
                    ),
                );
                SubjectKind::Unspecified
            }
        };
        let mut date = |c: Column| -> String {
            let text = cell(c);
            match date_of(text) {
                Some(d) => format_date(d),
                None if text.is_empty() => String::new(),
                None => {
                    fail(c, format!("{text:?} is not a date (YYYY-MM-DD)"));
                    String::new()
                }
            }
        };
        let decided_on = date(Column::DecidedOn);
        let starts_on = if self.has(Column::StartsOn) && !cell(Column::StartsOn).is_empty() {
            date(Column::StartsOn)
        } else {
            decided_on.clone()
        };
        let ends_on = date(Column::EndsOn);
        let fine_fen = match fen_of_wan_yuan(cell(Column::Fine)) {
            Ok(fen) => fen,
            Err(reason) => {
                fail(Column::Fine, reason);
                0
            }
        };
        let severity = match cell(Column::Severity) {
            "" if list == ListKind::Red => Severity::Unspecified,
            "" => severity_of_period(&starts_on, &ends_on),
            text => match severity_of(text) {
                Some(s) => s,
                None => {
                    fail(
                        Column::Severity,
                        format!("{text:?} is not a severity: 轻微, 一般 or 严重"),
                    );
                    Severity::Unspecified
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let category = category_of(catalogue, cell(Column::Category), list);
        let (uscc, id_number) = match kind {
            SubjectKind::NaturalPerson => (String::new(), cell(Column::IdNumber).to_owned()),
            _ => (cell(Column::Uscc).to_owned(), String::new()),
        };
        let legal_representative = match cell(Column::LegalRepresentative) {
            "" => None,
            name => Some(LegalRepresentative {
                name: name.to_owned(),
                id_number: cell(Column::LegalRepresentativeId).to_owned(),
            }),
        };
        let authority_uscc = cell(Column::AuthorityUscc).to_uppercase();
        let document_number = cell(Column::DocumentNumber).to_owned();
        let subject_id = if uscc.is_empty() { &id_number } else { &uscc };
        Ok(CreditRecord {
            record_id: record_id(
                list,
                &authority_uscc,
                &document_number,
                &subject_id.to_uppercase(),
                &category,
            ),
            version: 0,
            subject: Some(Subject {
                kind: kind.into(),
                name: cell(Column::SubjectName).to_owned(),
                uscc,
                id_number,
                legal_representative,
            }),
            list: list.into(),
            category,
            severity: severity.into(),
            authority: Some(Authority {
                name: cell(Column::AuthorityName).to_owned(),
                uscc: authority_uscc,
            }),
            decision: Some(Decision {
                document_number,
                decided_on,
                legal_basis: cell(Column::LegalBasis).to_owned(),
                facts: cell(Column::Facts).to_owned(),
                penalty_kinds: items(cell(Column::PenaltyKinds)),
                penalty_content: cell(Column::PenaltyContent).to_owned(),
                fine_fen,
                sanction_measures: items(cell(Column::Sanctions)),
            }),
            publication: Some(Publication { starts_on, ends_on }),
            status: Some(RecordStatus {
                kind: StatusKind::Active.into(),
                ..Default::default()
            }),
            data_source: cell(Column::DataSource).to_owned(),
            remarks: cell(Column::Remarks).to_owned(),
        })
    }
}

/// The record id of a row: `<list>:<authority USCC>:<16 hex digits>`, the digits from the
/// SHA-256 of the decision document number — or, for a red-list row without one (a published
/// roster), of the subject's identifier and the category. The same decision of the same
/// authority is always the same record, whatever else the row says.
pub fn record_id(
    list: ListKind,
    authority_uscc: &str,
    document_number: &str,
    subject_id: &str,
    category: &str,
) -> String {
    let list = credex_core::catalogue::list_kind_name(list).unwrap_or("unknown");
    let mut hash = Sha256::new();
    if document_number.is_empty() {
        hash.update(b"subject\n");
        hash.update(subject_id.as_bytes());
        hash.update(b"\n");
        hash.update(category.as_bytes());
    } else {
        hash.update(b"document\n");
        hash.update(document_number.as_bytes());
    }
    let digest = hash.finalize();
    // A USCC that is not one (too long, not ASCII) would make an id the node refuses for its
    // length or characters rather than for the USCC: keep the id well-formed, and let the
    // authority's USCC be refused by name.
    let authority: String = authority_uscc
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(18)
        .collect();
    let digits: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{list}:{authority}:{digits}")
}

/// The column a validation error's field path (`subject.uscc`, `decision.penalty_kinds[1]`)
/// came from, as the file's header names it.
pub fn column_of(columns: &Columns, path: &str) -> String {
    let column = match path.split('[').next().unwrap_or(path) {
        "subject.name" => Column::SubjectName,
        "subject.kind" | "subject" => Column::SubjectKind,
        "subject.uscc" => Column::Uscc,
        "subject.id_number" => Column::IdNumber,
        "subject.legal_representative.name" | "subject.legal_representative" => {
            Column::LegalRepresentative
        }
        "subject.legal_representative.id_number" => Column::LegalRepresentativeId,
        "list" => Column::List,
        "category" => Column::Category,
        "severity" if columns.has(Column::Severity) => Column::Severity,
        // Read from the publication period when the file has no 失信程度.
        "severity" => Column::EndsOn,
        "authority.name" => Column::AuthorityName,
        "authority.uscc" | "authority" => Column::AuthorityUscc,
        "record_id" | "decision.document_number" => Column::DocumentNumber,
        "decision.decided_on" | "decision" => Column::DecidedOn,
        "decision.legal_basis" => Column::LegalBasis,
        "decision.facts" => Column::Facts,
        "decision.penalty_kinds" => Column::PenaltyKinds,
        "decision.penalty_content" => Column::PenaltyContent,
        "decision.fine_fen" => Column::Fine,
        "decision.sanction_measures" => Column::Sanctions,
        "publication.starts_on" if columns.has(Column::StartsOn) => Column::StartsOn,
        "publication.starts_on" => Column::DecidedOn,
        "publication.ends_on" | "publication" => Column::EndsOn,
        "data_source" => Column::DataSource,
        "remarks" => Column::Remarks,
        _ => return String::new(),
    };
    columns.header(column)
}

/// A list as red/black-list exports name it.
fn list_of(text: &str) -> Option<ListKind> {
    match text {
        "红名单" | "守信红名单" | "诚信红名单" | "red" => Some(ListKind::Red),
        "黑名单" | "失信黑名单" | "严重失信主体名单" | "black" => {
            Some(ListKind::Black)
        }
        "重点关注名单" | "灰名单" | "watch" => Some(ListKind::Watch),
        "行政处罚" | "行政处罚信息" | "penalty" => Some(ListKind::Penalty),
        _ => None,
    }
}

fn subject_kind_of(text: &str) -> Option<SubjectKind> {
    match text {
        "法人及非法人组织" | "法人" | "非法人组织" | "法人和非法人组织" | "legal_person" => {
            Some(SubjectKind::LegalPerson)
        }
        "个体工商户" | "individual_business" => Some(SubjectKind::IndividualBusiness),
        "自然人" | "natural_person" => Some(SubjectKind::NaturalPerson),
        _ => None,
    }
}

fn severity_of(text: &str) -> Option<Severity> {
    match text {
        "轻微" | "minor" => Some(Severity::Minor),
        "一般" | "general" => Some(Severity::General),
        "严重" | "serious" => Some(Severity::Serious),
        _ => None,
    }
}

/// The lightest tier of NDRC Order No. 36 whose publication bound holds the period (3 months,
/// 1 year, 3 years): a 双公示 export carries no tier, but its 公示截止期 was set by it. A
/// period longer than 3 years is called SERIOUS and refused by validation for its length.
fn severity_of_period(starts_on: &str, ends_on: &str) -> Severity {
    let (Ok(start), Ok(end)) = (parse_date(starts_on), parse_date(ends_on)) else {
        // Validation names the missing or bad date.
        return Severity::General;
    };
    let within = |months: u32| start.checked_add_months(Months::new(months)) >= Some(end);
    if within(3) {
        Severity::Minor
    } else if within(12) {
        Severity::General
    } else {
        Severity::Serious
    }
}

/// A catalogue category by code, or by its Chinese name (the one whose lists allow `list` when
/// several share it). Anything else is kept as written, for validation to refuse by name.
fn category_of(catalogue: &Catalogue, text: &str, list: ListKind) -> String {
    if catalogue.is_known(text) {
        return text.to_owned();
    }
    let mut named = catalogue.categories().filter(|c| c.name_zh == text);
    let first = named.next();
    named
        .chain(first)
        .find(|c| c.allows_list(list))
        .or(first)
        .map_or_else(|| text.to_owned(), |c| c.code.clone())
}

/// `2026-05-20`, `2026/5/20`, `2026.5.20` or `2026年5月20日`.
fn date_of(text: &str) -> Option<Date> {
    let normalised = text
        .trim()
        .trim_end_matches('日')
        .replace(['年', '月', '/', '.'], "-");
    let mut parts = normalised.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 {
        return None;
    }
    Date::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// An amount in 万元 (ten thousand yuan) as fen: `0.5` → 500,000. Empty is no fine; thousands
/// separators are allowed; more than six decimals (finer than a fen) is an error.
fn fen_of_wan_yuan(text: &str) -> Result<i64, String> {
    let digits = text.replace([',', '，'], "");
    if digits.is_empty() {
        return Ok(0);
    }
    let bad = || format!("{text:?} is not an amount in 万元 (e.g. 0.5 for 5,000 yuan)");
    let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if fraction.len() > 6 {
        return Err(format!(
            "{text:?} 万元 is finer than a fen (at most 6 decimals)"
        ));
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(bad)
}

/// A multi-valued cell (处罚类别, 惩戒措施): items separated by `;`, `；`, `、` or `,`.
fn items(text: &str) -> Vec<String> {
    text.split([';', '；', '、', ',', '，'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    const PENALTY_HEADER: &str = "行政相对人名称,行政相对人类别,统一社会信用代码,法定代表人,行政处罚决定书文号,违法行为类型,违法事实,处罚依据,处罚类别,处罚内容,罚款金额(万元),处罚决定日期,公示截止期,处罚机关,处罚机关统一社会信用代码,数据来源单位,备注";

    fn rows(text: &str) -> (Columns, Vec<csv::StringRecord>) {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let columns = Columns::new(&headers).unwrap();
        (columns, reader.records().map(Result::unwrap).collect())
    }

    #[test]
    fn amounts_in_wan_yuan_are_exact_fen() {
        let got: Vec<String> = [
            "",
            "0.5",
            "1,200",
            "3.123456",
            "0.0000001",
            "abc",
            "-1",
            ".5",
        ]
        .map(|t| match fen_of_wan_yuan(t) {
            Ok(fen) => fen.to_string(),
            Err(e) => e,
        })
        .into();
        expect![[r#"
            [
                "0",
                "500000",
                "1200000000",
                "3123456",
                "\"0.0000001\" 万元 is finer than a fen (at most 6 decimals)",
                "\"abc\" is not an amount in 万元 (e.g. 0.5 for 5,000 yuan)",
                "\"-1\" is not an amount in 万元 (e.g. 0.5 for 5,000 yuan)",
                "\".5\" is not an amount in 万元 (e.g. 0.5 for 5,000 yuan)",
            ]
        "#]]
        .assert_debug_eq(&got);
    }

    #[test]
    fn dates_in_the_forms_exports_use() {
        for text in ["2026-05-20", "2026/5/20", "2026.05.20", "2026年5月20日"] {
            assert_eq!(
                date_of(text).map(format_date).as_deref(),
                Some("2026-05-20")
            );
        }
        for text in ["2026-02-30", "20260520", "26-5-20", "昨天"] {
            assert_eq!(date_of(text), None, "{text}");
        }
    }

    #[test]
    fn the_tier_is_read_from_the_publication_period() {
        let tier = |end| severity_of_period("2025-11-30", end);
        assert_eq!(tier("2026-02-28"), Severity::Minor);
        assert_eq!(tier("2026-03-01"), Severity::General);
        assert_eq!(tier("2026-11-30"), Severity::General);
        assert_eq!(tier("2026-12-01"), Severity::Serious);
    }

    #[test]
    fn a_penalty_row_maps_onto_the_record() {
        let (columns, rows) = rows(&format!(
            "\u{feff}{}\n{}\n",
            PENALTY_HEADER.replace("(万元)", "（万元）"),
            "长沙市岳麓区湘味食品有限公司,法人及非法人组织,91430104MA4L0000X1,张三,岳市监罚〔2026〕12号,食品药品行政处罚,销售过期食品,《食品安全法》第一百二十四条,警告、罚款,罚款人民币5000元,0.5,2026/5/10,2026-08-10,长沙市岳麓区市场监督管理局,11430104MB1234567X,长沙市市场监督管理局,"
        ));
        assert!(!columns.is_list_export());
        let record = columns
            .record(&rows[0], Catalogue::builtin())
            .expect("a record");
        let json = crate::json::record_to_line(&record);
        expect![[r#"{"record_id":"penalty:11430104MB1234567X:c359daa93cceb7f1","subject":{"kind":"SUBJECT_KIND_LEGAL_PERSON","name":"长沙市岳麓区湘味食品有限公司","uscc":"91430104MA4L0000X1","legal_representative":{"name":"张三"}},"list":"LIST_KIND_PENALTY","category":"food_drug.administrative_penalty","severity":"SEVERITY_MINOR","authority":{"name":"长沙市岳麓区市场监督管理局","uscc":"11430104MB1234567X"},"decision":{"document_number":"岳市监罚〔2026〕12号","decided_on":"2026-05-10","legal_basis":"《食品安全法》第一百二十四条","facts":"销售过期食品","penalty_kinds":["警告","罚款"],"penalty_content":"罚款人民币5000元","fine_fen":"500000"},"publication":{"starts_on":"2026-05-10","ends_on":"2026-08-10"},"status":{"kind":"STATUS_KIND_ACTIVE"},"data_source":"长沙市市场监督管理局"}"#]].assert_eq(&json);
    }

    #[test]
    fn list_rows_map_onto_black_and_red_records() {
        let (columns, rows) = rows(concat!(
            "主体名称,主体类别,统一社会信用代码,证件号码,名单类别,信用信息类别,失信程度,列入事由,认定依据,认定文书文号,列入日期,公示截止期,认定部门,认定部门统一社会信用代码,惩戒措施\n",
            "王某,自然人,,430102198005174021,失信黑名单,失信被执行人,严重,有履行能力而拒不履行,《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条,（2026）湘0102执881号,2026年3月2日,2029年3月1日,长沙市芙蓉区人民法院,11430102MB1234567X,限制高消费；限制乘坐飞机\n",
            "湘味食品有限公司,法人,91430104MA4L0000X1,,红名单,tax.credit_grade_a,,,,,2026-04-01,2027-03-31,国家税务总局长沙市税务局,11430100MB7654321Y,\n",
        ));
        assert!(columns.is_list_export());
        let lines: Vec<String> = rows
            .iter()
            .map(|row| {
                crate::json::record_to_line(&columns.record(row, Catalogue::builtin()).unwrap())
            })
            .collect();
        expect![[r#"
            [
                "{\"record_id\":\"black:11430102MB1234567X:45d1103207ffd206\",\"subject\":{\"kind\":\"SUBJECT_KIND_NATURAL_PERSON\",\"name\":\"王某\",\"id_number\":\"430102198005174021\"},\"list\":\"LIST_KIND_BLACK\",\"category\":\"court.dishonest_debtor\",\"severity\":\"SEVERITY_SERIOUS\",\"authority\":{\"name\":\"长沙市芙蓉区人民法院\",\"uscc\":\"11430102MB1234567X\"},\"decision\":{\"document_number\":\"（2026）湘0102执881号\",\"decided_on\":\"2026-03-02\",\"legal_basis\":\"《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条\",\"facts\":\"有履行能力而拒不履行\",\"sanction_measures\":[\"限制高消费\",\"限制乘坐飞机\"]},\"publication\":{\"starts_on\":\"2026-03-02\",\"ends_on\":\"2029-03-01\"},\"status\":{\"kind\":\"STATUS_KIND_ACTIVE\"}}",
                "{\"record_id\":\"red:11430100MB7654321Y:567bd05aa197a675\",\"subject\":{\"kind\":\"SUBJECT_KIND_LEGAL_PERSON\",\"name\":\"湘味食品有限公司\",\"uscc\":\"91430104MA4L0000X1\"},\"list\":\"LIST_KIND_RED\",\"category\":\"tax.credit_grade_a\",\"authority\":{\"name\":\"国家税务总局长沙市税务局\",\"uscc\":\"11430100MB7654321Y\"},\"decision\":{\"decided_on\":\"2026-04-01\"},\"publication\":{\"starts_on\":\"2026-04-01\",\"ends_on\":\"2027-03-31\"},\"status\":{\"kind\":\"STATUS_KIND_ACTIVE\"}}",
            ]
        "#]]
        .assert_debug_eq(&lines);
    }

    #[test]
    fn headers_are_checked_before_any_row() {
        let check = |header: &str| match Columns::new(
            &header.split(',').map(String::from).collect::<Vec<_>>(),
        ) {
            Ok(c) => format!("ok, list export: {}", c.is_list_export()),
            Err(e) => e,
        };
        expect![
            "the 双公示 administrative-penalty export lacks columns 行政处罚决定书文号, 处罚依据"
        ]
        .assert_eq(&check(
            &PENALTY_HEADER
                .replace(",行政处罚决定书文号", "")
                .replace(",处罚依据", ""),
        ));
        expect!["unknown column 天气: see `credexctl import --help` for the headers accepted"]
            .assert_eq(&check(&format!("{PENALTY_HEADER},天气")));
        expect!["columns 行政相对人名称 and 主体名称 both give 行政相对人名称"]
            .assert_eq(&check(&format!("{PENALTY_HEADER},主体名称")));
        expect!["ok, list export: true"].assert_eq(&check(
            "主体名称,主体类别,统一社会信用代码,证件号码,名单类别,信用信息类别,列入事由,认定依据,认定文书文号,列入日期,公示截止期,认定部门,认定部门统一社会信用代码,失信程度,惩戒措施",
        ));
    }

    #[test]
    fn gbk_and_utf8_decode_to_the_same_text_and_bad_bytes_are_named() {
        let text = "行政相对人名称,备注\n湘味食品,〔2026〕\n".repeat(5000);
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable);
        let read = |bytes: &[u8], encoding| {
            let mut out = String::new();
            Decoded::new(bytes, encoding)
                .read_to_string(&mut out)
                .map(|_| out)
        };
        assert_eq!(read(&gbk, Encoding::Gbk).unwrap(), text);
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(text.as_bytes());
        assert_eq!(read(&bom, Encoding::Utf8).unwrap(), text);
        assert!(is_utf8(&bom[..]).unwrap());
        assert!(!is_utf8(&gbk[..]).unwrap());
        let err = read(&gbk, Encoding::Utf8).unwrap_err();
        expect!["bytes near offset 1 are not valid UTF-8"].assert_eq(&err.to_string());
    }
}
