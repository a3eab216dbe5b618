//! `credexctl publish [FILE]`: publishes records (JSON Lines, see [`credex_cli::json`]) from a
//! file or standard input as this city's platform, and prints the seq each record got.
//!
//! The input is streamed ([`credex_cli::publish`]): records go out in requests of
//! `--batch-size` as they are read, `--in-flight` requests at a time, so a million records take
//! no more memory than ten. A malformed line stops the run there: the records before it are
//! published, nothing from it on is sent, and the error lists the malformed lines (the rest of
//! the input is still read for that). A request the node refuses stops the run too; the error
//! says what was published. Empty or malformed input is reported before connecting.
//!
//! `--json` writes its document as records are published: `node`, `published` (record id,
//! version and seq of every record, in input order) and `tree_size`, plus `error` when a run
//! that published something stopped early.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use credex_cli::output::Table;
use credex_cli::publish::{self as stream, Batches, InputEnd, Limits, RecordReader, Sent};
use credex_node::tls::Role;
use credex_proto::v1::{PublishRequest, PublishResponse, PublishedEntry};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::wrappers::ReceiverStream;

use crate::Global;
use crate::client::{self, Connection};
use credex_cli::outln;

pub use credex_cli::publish::Line;

/// Records shown in a table; a longer run prints only its summary line.
const MAX_TABLE_ROWS: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON Lines file, one CreditRecord per line; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Records per Publish request.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = super::integer::<u32>(1, 10_000))]
    batch_size: u32,
    /// Publish requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = super::integer::<u32>(1, 64))]
    in_flight: u32,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    let (source, input): (String, Box<dyn BufRead + Send>) = match args.file.as_deref() {
        Some(path) if path.as_os_str() != "-" => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            (
                path.display().to_string(),
                Box::new(BufReader::with_capacity(1 << 16, file)),
            )
        }
        _ => (
            "stdin".to_owned(),
            Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
        ),
    };
    let limits = Limits {
        records: args.batch_size as usize,
        in_flight: args.in_flight as usize,
        ..Limits::default()
    };
    // The reader is a thread of its own, not a runtime blocking task: after a refusal nothing
    // waits for it, and it may be blocked reading a pipe that never ends.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("publish-reader".to_owned())
        .spawn(move || {
            let _ = end_tx.send(stream::read_into(RecordReader::new(input), limits, tx));
        })
        .context("starting the input reader")?;
    let mut batches = ReceiverStream::new(rx);
    let Some(first) = batches.next().await else {
        let end = end_rx.await.context("the input reader stopped")?;
        return Err(input_error(&source, &end, &Sent::default())
            .unwrap_or_else(|| anyhow!("no records to publish: the input has no non-blank line")));
    };

    let conn = client::connect(global, Role::Publisher).await?;
    let progress = if global.json {
        ProgressBar::hidden()
    } else {
        progress_bar()
    };
    let mut json = global
        .json
        .then(|| JsonOut::new(BufWriter::new(std::io::stdout()), &conn.city));
    let mut shown = Vec::new();
    let mut present = 0u64;
    let sent = stream::send(
        futures::stream::iter([first]).chain(batches),
        limits.in_flight,
        publisher(&conn, false),
        |_, entry| {
            progress.inc(1);
            present += u64::from(entry.already_present);
            match json.as_mut() {
                Some(json) => json.entry(&entry),
                None if shown.len() <= MAX_TABLE_ROWS => shown.push(entry),
                None => {}
            }
        },
    )
    .await;
    progress.finish_and_clear();
    // After a refusal the reader is not waited for (see above); otherwise it has finished.
    let end = if sent.refused.is_empty() {
        end_rx.await.context("the input reader stopped")?
    } else {
        InputEnd::default()
    };
    let error = refusal_error(&conn, &sent).or_else(|| input_error(&source, &end, &sent));
    if let Some(json) = json {
        if sent.published > 0 {
            let message = error.as_ref().map(|e| format!("{e:#}"));
            json.finish(sent.tree_size, message.as_deref())
                .context("writing to stdout")?;
        }
    } else if error.is_none() {
        if shown.len() <= MAX_TABLE_ROWS {
            let mut t = Table::new(&["RECORD", "VERSION", "SEQ", "OUTCOME"]).right(&[1, 2]);
            for e in &shown {
                t.row(vec![
                    e.record_id.clone(),
                    e.version.to_string(),
                    e.seq.to_string(),
                    outcome(e).to_owned(),
                ]);
            }
            t.print()?;
        }
        outln!(
            "published {} new records to {}, {present} already present; its log holds {} entries",
            sent.published - present,
            conn.city,
            sent.tree_size
        )?;
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What became of one record: `published` (appended now) or `already_present` (this version was
/// in the log with the same content; nothing appended). Refused records are in the error.
fn outcome(e: &PublishedEntry) -> &'static str {
    if e.already_present {
        "already_present"
    } else {
        "published"
    }
}

/// One Publish call in flight.
type Call = std::pin::Pin<Box<dyn Future<Output = Result<PublishResponse, tonic::Status>> + Send>>;

/// The Publisher of `conn` as [`stream::send`] calls it, each request with the deadline; with
/// `assign_versions` the node numbers the records' versions (`credexctl import`).
pub(crate) fn publisher(
    conn: &Connection,
    assign_versions: bool,
) -> impl FnMut(PublishRequest) -> Call + use<> {
    let client = conn.publisher();
    let conn = conn.clone();
    move |request| {
        let mut client = client.clone();
        let request = conn.request(PublishRequest {
            assign_versions,
            ..request
        });
        Box::pin(async move { client.publish(request).await.map(|r| r.into_inner()) })
    }
}

/// A progress line on stderr (drawn only when stderr is a terminal).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} publishing: {pos} records published, {per_sec}")
            .expect("a valid template"),
    );
    bar
}

/// The error of a run that a refusal stopped, naming what was and was not published.
pub(crate) fn refusal_error(conn: &Connection, sent: &Sent) -> Option<anyhow::Error> {
    let first = sent.refused.first()?;
    Some(
        conn.rpc_error("Publisher.Publish", first.status.clone())
            .context(format!(
                "{} not published; {}; nothing after line {} was sent",
                stream::refused_lines(&sent.refused),
                published_text(sent),
                sent.last_line_sent
            )),
    )
}

fn published_text(sent: &Sent) -> String {
    match sent.published {
        0 => "nothing was published".to_owned(),
        n => format!("{n} records were published (log size {})", sent.tree_size),
    }
}

/// The error of an input that did not end cleanly: malformed lines (up to
/// [`stream::MAX_REPORTED_ERRORS`], by line number and field) or a read error.
fn input_error(source: &str, end: &InputEnd, sent: &Sent) -> Option<anyhow::Error> {
    let first_bad = end.first_bad_line?;
    let before = match sent.published {
        0 => None,
        n => Some(format!(
            "the {n} records before line {first_bad} were published (log size {}), nothing from it on",
            sent.tree_size
        )),
    };
    if let Some(read) = &end.read_error {
        let mut message = format!("{source}: {read}");
        if let Some(before) = before {
            message.push_str("; ");
            message.push_str(&before);
        }
        return Some(anyhow!(message));
    }
    Some(match end.malformed {
        1 => match before {
            None => anyhow!("{source}: {}", end.errors[0]),
            Some(before) => anyhow!("{source}: {}; {before}", end.errors[0]),
        },
        n => {
            let more = if n > end.errors.len() {
                format!("\n  … and {} more", n - end.errors.len())
            } else {
                String::new()
            };
            let published = before.unwrap_or_else(|| "nothing published".to_owned());
            anyhow!(
                "{source}: {n} malformed lines, {published}:\n  {}{more}",
                end.errors.join("\n  ")
            )
        }
    })
}

/// What [`publish`] did: the log size after the batch holding the last record.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub tree_size: u64,
}

/// Publishes `records` (already in memory; the demo's way in) in requests of `batch_size`,
/// advancing `progress` per record.
pub async fn publish(
    conn: &Connection,
    records: &[Line],
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<Published> {
    let limits = Limits {
        records: batch_size.max(1),
        ..Limits::default()
    };
    let batches = Batches::new(records.iter().cloned().map(Ok), limits);
    let sent = stream::send(
        futures::stream::iter(batches),
        limits.in_flight,
        publisher(conn, false),
        |_, _| progress.inc(1),
    )
    .await;
    if let Some(e) = refusal_error(conn, &sent) {
        return Err(e);
    }
    if sent.published != records.len() as u64 {
        bail!(
            "Publisher.Publish on {} published {} of {} records",
            conn.city,
            sent.published,
            records.len()
        );
    }
    Ok(Published {
        tree_size: sent.tree_size,
    })
}

/// `--json` output written as records are published, laid out as `serde_json`'s pretty
/// printer lays out the whole document, so stdout holds one JSON document however long the run.
struct JsonOut<W: Write> {
    out: W,
    node: String,
    entries: u64,
    failed: Option<std::io::Error>,
}

impl<W: Write> JsonOut<W> {
    fn new(out: W, node: &str) -> Self {
        JsonOut {
            out,
            node: node.to_owned(),
            entries: 0,
            failed: None,
        }
    }

    fn entry(&mut self, entry: &PublishedEntry) {
        if self.failed.is_none()
            && let Err(e) = self.write_entry(entry)
        {
            self.failed = Some(e);
        }
    }

    fn write_entry(&mut self, e: &PublishedEntry) -> std::io::Result<()> {
        if self.entries == 0 {
            let node = serde_json::to_string(&self.node)?;
            write!(self.out, "{{\n  \"node\": {node},\n  \"published\": [\n")?;
        } else {
            self.out.write_all(b",\n")?;
        }
        let id = serde_json::to_string(&e.record_id)?;
        write!(
            self.out,
            "    {{\n      \"record_id\": {id},\n      \"version\": {},\n      \"seq\": {},\n      \"outcome\": \"{}\"\n    }}",
            e.version,
            e.seq,
            outcome(e)
        )?;
        self.entries += 1;
        Ok(())
    }

    fn finish(mut self, tree_size: u64, error: Option<&str>) -> std::io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.entries == 0 {
            let node = serde_json::to_string(&self.node)?;
            write!(self.out, "{{\n  \"node\": {node},\n  \"published\": [],\n")?;
        } else {
            self.out.write_all(b"\n  ],\n")?;
        }
        write!(self.out, "  \"tree_size\": {tree_size}")?;
        if let Some(error) = error {
            write!(
                self.out,
                ",\n  \"error\": {}",
                serde_json::to_string(error)?
            )?;
        }
        self.out.write_all(b"\n}\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};
    use serde::Serialize;

    fn check(input: &str, published: u64, expect: Expect) {
        let mut batches = Batches::new(RecordReader::new(input.as_bytes()), Limits::default());
        let lines: Vec<String> = batches
            .by_ref()
            .flat_map(|b| b.lines)
            .map(|n| n.to_string())
            .collect();
        let end = batches.finish();
        let sent = Sent {
            published,
            tree_size: published,
            ..Sent::default()
        };
        let got = match input_error("records.jsonl", &end, &sent) {
            None => format!("ok {}", lines.join(" ")),
            Some(e) => format!("sent {}, err {e}", lines.join(" ")),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn reads_json_lines_and_names_bad_lines() {
        check(
            "{\"record_id\":\"a\"}\n\n  \n{\"record_id\":\"b\"}",
            0,
            expect!["ok 1 4"],
        );
        check("", 0, expect!["ok "]);
        check(
            "{\"record_id\":\"a\"}\n{\"list\":\"grey\"}\n",
            1,
            expect![[
                r#"sent 1, err records.jsonl: line 2: list: unknown value "grey", expected one of red, black, watch, penalty; the 1 records before line 2 were published (log size 1), nothing from it on"#
            ]],
        );
        check(
            "{\"record_id\":1}\n{\"record_id\":\"b\"}\n{\"subject\":{\"nme\":\"x\"}}\nnot json\n",
            0,
            expect![[r#"
                sent , err records.jsonl: 3 malformed lines, nothing published:
                  line 1: record_id: expected a string, found 1
                  line 3: subject.nme: unknown field
                  line 4: invalid JSON at column 2: expected ident"#]],
        );
        check(
            "{\"record_id\":\"a\"}\nx\n{\"record_id\":\"b\"}\ny\n",
            1,
            expect![[r#"
                sent 1, err records.jsonl: 2 malformed lines, the 1 records before line 2 were published (log size 1), nothing from it on:
                  line 2: invalid JSON at column 1: expected value
                  line 4: invalid JSON at column 1: expected value"#]],
        );
        let many = "x\n".repeat(25);
        let mut batches = Batches::new(RecordReader::new(many.as_bytes()), Limits::default());
        assert!(batches.next().is_none());
        let got = input_error("stdin", &batches.finish(), &Sent::default())
            .expect("an error")
            .to_string();
        assert!(got.starts_with("stdin: 25 malformed lines"), "{got}");
        assert!(got.ends_with("… and 5 more"), "{got}");
    }

    #[derive(Serialize)]
    struct Whole<'a> {
        node: &'a str,
        published: Vec<Entry<'a>>,
        tree_size: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }

    #[derive(Serialize)]
    struct Entry<'a> {
        record_id: &'a str,
        version: u32,
        seq: u64,
        outcome: &'a str,
    }

    #[test]
    fn streamed_json_is_the_document_serde_would_print_whole() {
        let entries = [
            PublishedEntry {
                record_id: "CS-1 \"引号\"".to_owned(),
                version: 1,
                seq: 7,
                already_present: true,
            },
            PublishedEntry {
                record_id: "CS-2".to_owned(),
                version: 3,
                seq: 8,
                already_present: false,
            },
        ];
        for (n, error) in [(2, None), (1, Some("lines 2-3 not published")), (0, None)] {
            let mut text = Vec::new();
            {
                let mut w = JsonOut::new(&mut text, "长沙");
                for e in &entries[..n] {
                    w.entry(e);
                }
                w.finish(9, error).expect("written");
            }
            let whole = Whole {
                node: "长沙",
                published: entries[..n]
                    .iter()
                    .map(|e| Entry {
                        record_id: &e.record_id,
                        version: e.version,
                        seq: e.seq,
                        outcome: outcome(e),
                    })
                    .collect(),
                tree_size: 9,
                error,
            };
            let expected = serde_json::to_string_pretty(&whole).expect("json") + "\n";
            assert_eq!(String::from_utf8(text).expect("utf-8"), expected);
        }
    }
}
