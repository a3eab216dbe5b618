//! `credexctl import FILE`: publishes a platform export — CSV with the Chinese headers of the
//! 双公示 administrative-penalty export or of a red/black-list export, in UTF-8 or GBK, or JSON
//! Lines — as this city's records ([`credex_cli::import`] reads and maps the rows).
//!
//! Every row is validated here with the validator the node publishes with (the consortium's
//! rules, the built-in catalogue, today in UTC+8); a row that fails goes to the rejects file
//! with its row number, column and reason, and the others are published in batches through
//! the streaming publisher `credexctl publish` uses. Record ids derive from the deciding
//! authority and the decision document number, and the node numbers the versions
//! (`PublishRequest.assign_versions`), so importing a file again publishes nothing and a changed
//! row publishes a new version of its record (a JSON Lines record without a `record_id` gets the
//! id its CSV row would; one with an id keeps it, and must leave `version` out). The run exits
//! non-zero when a row was rejected.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use credex_cli::import::{self, Columns, Encoding};
use credex_cli::outln;
use credex_cli::output::print_json;
use credex_cli::publish::{self as stream, Limits, Line, LineError, RecordReader};
use credex_core::catalogue::Catalogue;
use credex_core::date::{Clock, SystemClock};
use credex_core::validate::{Mode, Validator};
use credex_node::tls::Role;
use credex_proto::v1::CreditRecord;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;

use crate::Global;
use crate::client;

#[derive(Debug, clap::Args)]
#[command(after_long_help = import_help())]
pub struct Args {
    /// The export: CSV (`.csv`) or JSON Lines (`.jsonl`, `.ndjson`, `.json`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The file's format [default: from its extension].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The CSV file's encoding: auto reads UTF-8 (a byte order mark is skipped) unless the
    /// bytes are not valid UTF-8, then GBK.
    #[arg(long, value_enum, default_value_t = Encoding::Auto)]
    encoding: Encoding,
    /// Where to write the rejected rows (CSV, UTF-8 with a byte order mark) [default:
    /// FILE.rejects.csv]. Written on every run; a run without rejects leaves only its header.
    #[arg(long, value_name = "PATH")]
    rejects: Option<PathBuf>,
    /// Records per Publish request.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = super::integer::<u32>(1, 10_000))]
    batch_size: u32,
    /// Publish requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = super::integer::<u32>(1, 64))]
    in_flight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Csv,
    Jsonl,
}

fn import_help() -> String {
    let mut help = String::from(
        "CSV columns (header → record field; `a / b`: either header is accepted). A file with \
         名单类别 is a red/black-list export, else a 双公示 administrative-penalty export:\n",
    );
    for column in import::Column::ALL {
        help.push_str(&format!(
            "  {} → {}\n",
            column.headers().join(" / "),
            column.field()
        ));
    }
    help.push_str(
        "See README.md \"Importing platform exports, exporting lists, following changes\" for \
         the values each column takes.",
    );
    help
}

/// What one run did, and the `--json` document.
#[derive(Debug, Default, Serialize)]
struct Summary {
    node: String,
    file: String,
    format: &'static str,
    encoding: &'static str,
    rows: u64,
    /// Versions appended: new records and new versions of changed ones.
    published: u64,
    new_records: u64,
    new_versions: u64,
    /// Rows whose record's latest version already holds their content.
    unchanged: u64,
    rejected: u64,
    rejects_file: String,
    tree_size: u64,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    let home = super::home(global)?;
    let consortium = home.load_consortium()?;
    let city = global
        .city
        .clone()
        .context("no city: pass --city ID or set CREDEX_CITY")?;
    let format = args.format.unwrap_or_else(|| format_of(&args.file));
    let rejects_path = args.rejects.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    let limits = Limits {
        records: args.batch_size as usize,
        in_flight: args.in_flight as usize,
        ..Limits::default()
    };
    let mut summary = Summary {
        node: city.clone(),
        file: args.file.display().to_string(),
        rejects_file: rejects_path.display().to_string(),
        format: match format {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        },
        ..Summary::default()
    };
    // Read, map and validate before connecting: a file the importer cannot read at all (its
    // header, its encoding) is refused without a connection.
    let rows = Rows::open(&args.file, format, args.encoding, &rejects_path)?;
    summary.encoding = rows.encoding;
    let conn = client::connect(global, Role::Publisher).await?;
    let progress = progress_bar(global.json);

    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    let reader_progress = progress.clone();
    let rules = consortium.rules();
    // A thread of its own, as `publish` does: after a refusal nothing waits for it.
    std::thread::Builder::new()
        .name("import-reader".to_owned())
        .spawn(move || {
            let validator = Validator {
                catalogue: Catalogue::builtin(),
                rules: &rules,
                mode: Mode::Publish,
                origin: &city,
                today: SystemClock.today(),
            };
            let mut rows = rows;
            let checked = CheckedRows {
                rows: &mut rows,
                validator,
                progress: reader_progress,
            };
            let end = stream::read_into(checked, limits, tx);
            let _ = end_tx.send(rows.finish().map(|counts| (counts, end)));
        })
        .context("starting the file reader")?;

    let sent = stream::send(
        ReceiverStream::new(rx),
        limits.in_flight,
        super::publish::publisher(&conn, true),
        |_, entry| {
            progress.inc(1);
            if entry.already_present {
                summary.unchanged += 1;
            } else if entry.version == 1 {
                summary.new_records += 1;
            } else {
                summary.new_versions += 1;
            }
        },
    )
    .await;
    progress.finish_and_clear();
    if let Some(e) = super::publish::refusal_error(&conn, &sent) {
        return Err(e);
    }
    let (counts, end) = end_rx.await.context("the file reader stopped")??;
    if let Some(read) = end.read_error {
        bail!("{}: {read}", args.file.display());
    }
    summary.rows = counts.rows;
    summary.rejected = counts.rejected;
    summary.published = summary.new_records + summary.new_versions;
    summary.tree_size = sent.tree_size;
    if global.json {
        print_json(&summary)?;
    } else {
        outln!(
            "{} ({}, {}): {} rows: {} published to {} ({} new records, {} new versions), {} unchanged, {} rejected",
            summary.file,
            summary.format,
            summary.encoding,
            summary.rows,
            summary.published,
            summary.node,
            summary.new_records,
            summary.new_versions,
            summary.unchanged,
            summary.rejected
        )?;
    }
    if summary.rejected > 0 {
        bail!(
            "{} of {} rows rejected: each with its row, column and reason in {}",
            summary.rejected,
            summary.rows,
            summary.rejects_file
        );
    }
    Ok(())
}

fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if ["jsonl", "ndjson", "json"].contains(&e.to_ascii_lowercase().as_str()) => {
            Format::Jsonl
        }
        _ => Format::Csv,
    }
}

fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    // Drawn on stderr, and only when it is a terminal.
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} importing: {msg}, {pos} answered, {per_sec}")
            .expect("a valid template"),
    );
    bar
}

/// Rows read and rejected, counted by the reader.
#[derive(Debug, Default)]
struct Counts {
    rows: u64,
    rejected: u64,
}

/// A file's rows as records (version 0) or as the cells that could not be read, with the
/// rejects file they are written to.
struct Rows {
    source: Source,
    encoding: &'static str,
    rejects: csv::Writer<BufWriter<File>>,
    counts: Counts,
    catalogue: &'static Catalogue,
}

enum Source {
    Csv {
        reader: Box<csv::Reader<import::Decoded<BufReader<File>>>>,
        columns: Columns,
        row: csv::StringRecord,
    },
    Jsonl(RecordReader<BufReader<File>>),
}

/// One row as read: its number (the spreadsheet's: the header is row 1, JSON Lines: the line)
/// and its record or what is wrong with it.
type Row = (usize, Result<CreditRecord, Vec<import::CellError>>);

/// A JSON Lines record without a record id gets the one its CSV row would (see
/// [`import::record_id`]); one with an id keeps it.
fn with_derived_id(mut record: CreditRecord) -> CreditRecord {
    if record.record_id.is_empty() {
        let subject = record.subject.clone().unwrap_or_default();
        let subject_id = if subject.uscc.is_empty() {
            subject.id_number
        } else {
            subject.uscc
        };
        record.record_id = import::record_id(
            record.list(),
            &record
                .authority
                .as_ref()
                .map(|a| a.uscc.to_uppercase())
                .unwrap_or_default(),
            record
                .decision
                .as_ref()
                .map_or("", |d| d.document_number.trim()),
            &subject_id.to_uppercase(),
            &record.category,
        );
    }
    record
}

impl Rows {
    fn open(path: &Path, format: Format, encoding: Encoding, rejects: &Path) -> Result<Rows> {
        let cannot_read = |e| anyhow!("cannot read {}: {e}", path.display());
        let (source, encoding, reject_header) = match format {
            Format::Csv => {
                let (decoded, encoding) = import::open(path, encoding).map_err(cannot_read)?;
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_reader(decoded);
                let headers: Vec<String> = reader
                    .headers()
                    .map_err(|e| anyhow!("{}: the header row: {e}", path.display()))?
                    .iter()
                    .map(str::to_owned)
                    .collect();
                let columns =
                    Columns::new(&headers).map_err(|e| anyhow!("{}: {e}", path.display()))?;
                let header = columns.headers().to_vec();
                let name = match encoding {
                    Encoding::Gbk => "GBK",
                    _ => "UTF-8",
                };
                let source = Source::Csv {
                    reader: Box::new(reader),
                    columns,
                    row: csv::StringRecord::new(),
                };
                (source, name, header)
            }
            Format::Jsonl => {
                if encoding == Encoding::Gbk {
                    bail!("--encoding gbk: JSON Lines are UTF-8 (RFC 8259)");
                }
                let file = File::open(path).map_err(cannot_read)?;
                let reader = RecordReader::new(BufReader::with_capacity(1 << 16, file));
                (Source::Jsonl(reader), "UTF-8", vec!["内容".to_owned()])
            }
        };
        let file = File::create(rejects)
            .with_context(|| format!("cannot create the rejects file {}", rejects.display()))?;
        let mut out = BufWriter::new(file);
        // Spreadsheet programs read a CSV as the local code page unless it starts with a BOM.
        out.write_all(b"\xEF\xBB\xBF")?;
        // A row with a field missing is written as it was read: records may differ in length.
        let mut rejects = csv::WriterBuilder::new().flexible(true).from_writer(out);
        let mut header = vec!["行号".to_owned(), "列".to_owned(), "原因".to_owned()];
        header.extend(reject_header);
        rejects.write_record(&header)?;
        Ok(Rows {
            source,
            encoding,
            rejects,
            counts: Counts::default(),
            catalogue: Catalogue::builtin(),
        })
    }

    /// The next row, or the error that ends the file (unreadable bytes, broken quoting).
    fn next_row(&mut self) -> Option<Result<Row, std::io::Error>> {
        match &mut self.source {
            Source::Csv {
                reader,
                columns,
                row,
            } => match reader.read_record(row) {
                Ok(false) => None,
                Ok(true) => {
                    // The spreadsheet row: the header is row 1. Not the text line, which a
                    // cell with a line break, or the csv crate's count of CRLF endings, moves.
                    let number = row.position().map_or(0, |p| p.record() as usize + 1);
                    Some(Ok((number, columns.record(row, self.catalogue))))
                }
                Err(e) => Some(Err(std::io::Error::other(e))),
            },
            Source::Jsonl(reader) => match reader.next()? {
                Ok(Line { number, record }) => Some(Ok((number, Ok(with_derived_id(record))))),
                Err(LineError::Malformed { number, message }) => Some(Ok((
                    number,
                    Err(vec![import::CellError {
                        column: String::new(),
                        reason: message,
                    }]),
                ))),
                Err(LineError::Read { source, .. }) => Some(Err(source)),
            },
        }
    }

    /// The column a validation error's field path names.
    fn column_of(&self, path: &str) -> String {
        match &self.source {
            Source::Csv { columns, .. } => import::column_of(columns, path),
            Source::Jsonl(_) => path.to_owned(),
        }
    }

    /// Writes a rejected row: its number, columns, reasons and the row as read.
    fn reject(&mut self, number: usize, errors: &[import::CellError]) -> std::io::Result<()> {
        self.counts.rejected += 1;
        let mut columns: Vec<&str> = Vec::new();
        for e in errors {
            if !columns.contains(&e.column.as_str()) {
                columns.push(&e.column);
            }
        }
        let reasons: Vec<String> = errors
            .iter()
            .map(|e| match e.column.as_str() {
                "" => e.reason.clone(),
                column => format!("{column}: {}", e.reason),
            })
            .collect();
        let mut record = vec![number.to_string(), columns.join(";"), reasons.join("; ")];
        match &self.source {
            Source::Csv { row, .. } => record.extend(row.iter().map(str::to_owned)),
            Source::Jsonl(_) => {}
        }
        self.rejects
            .write_record(&record)
            .map_err(|e| std::io::Error::other(format!("writing the rejects file: {e}")))
    }

    fn finish(mut self) -> Result<Counts> {
        self.rejects.flush().context("writing the rejects file")?;
        Ok(self.counts)
    }
}

/// The valid rows of a file as publishable lines (version 0, numbered by the node); the
/// others written to the rejects file as they are met.
struct CheckedRows<'r> {
    rows: &'r mut Rows,
    validator: Validator<'r>,
    progress: ProgressBar,
}

impl Iterator for CheckedRows<'_> {
    type Item = Result<Line, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (number, row) = match self.rows.next_row()? {
                Ok(row) => row,
                Err(source) => {
                    let number = self.rows.counts.rows as usize + 1;
                    return Some(Err(LineError::Read { number, source }));
                }
            };
            self.rows.counts.rows += 1;
            self.progress.set_message(format!(
                "{} rows read, {} rejected",
                self.rows.counts.rows, self.rows.counts.rejected
            ));
            let errors = match row.and_then(|record| self.check(record)) {
                Ok(record) => return Some(Ok(Line { number, record })),
                Err(errors) => errors,
            };
            if let Err(source) = self.rows.reject(number, &errors) {
                return Some(Err(LineError::Read { number, source }));
            }
        }
    }
}

impl CheckedRows<'_> {
    /// Validates a row's record as the node will (numbered 1 for the check: the node assigns
    /// the real version).
    fn check(&self, record: CreditRecord) -> Result<CreditRecord, Vec<import::CellError>> {
        if record.version != 0 {
            return Err(vec![import::CellError {
                column: "version".to_owned(),
                reason: "import numbers the versions itself; leave version out (`credexctl \
                         publish` publishes given versions)"
                    .to_owned(),
            }]);
        }
        let numbered = CreditRecord {
            version: 1,
            ..record.clone()
        };
        match self.validator.validate(&numbered) {
            Ok(_) => Ok(record),
            Err(e) => Err(e
                .errors
                .iter()
                .map(|f| import::CellError {
                    column: self.rows.column_of(&f.path),
                    reason: f.problem.clone(),
                })
                .collect()),
        }
    }
}
