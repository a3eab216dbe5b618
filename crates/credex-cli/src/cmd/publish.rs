//! `credexctl publish [FILE]`: publishes records (JSON Lines, see [`credex_cli::json`]) from a
//! file or standard input as this city's platform, in batches, and prints the seq each
//! record got.
//!
//! Every line is parsed before anything is sent, so a malformed line (reported with its
//! number and field) publishes nothing. A batch the node refuses stops the run; the batches
//! before it stay published, and the error says which lines they were.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use credex_node::tls::Role;
use credex_proto::v1::{CreditRecord, PublishRequest, PublishedEntry};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::Global;
use crate::client::{self, Connection};
use credex_cli::json::parse_record;
use credex_cli::output::{Table, print_json};

/// How many malformed lines one run reports before it stops listing them.
const MAX_REPORTED_ERRORS: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON Lines file, one CreditRecord per line; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Records per Publish request.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
}

pub async fn run(global: &Global, args: Args) -> Result<()> {
    let records = match args.file.as_deref() {
        None => read_records(std::io::stdin().lock(), "stdin")?,
        Some(path) if path.as_os_str() == "-" => read_records(std::io::stdin().lock(), "stdin")?,
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            read_records(BufReader::new(file), &path.display().to_string())?
        }
    };
    if records.is_empty() {
        bail!("no records to publish: the input has no non-blank line");
    }
    let conn = client::connect(global, Role::Publisher).await?;
    let progress = if global.json {
        ProgressBar::hidden()
    } else {
        progress_bar(records.len())
    };
    let published = publish(&conn, &records, args.batch_size as usize, &progress).await?;
    progress.finish_and_clear();
    if global.json {
        return print_json(&PublishJson {
            node: &conn.city,
            published: &published.entries,
            tree_size: published.tree_size,
        });
    }
    if published.entries.len() <= 20 {
        let mut t = Table::new(&["RECORD", "VERSION", "SEQ"]).right(&[1, 2]);
        for e in &published.entries {
            t.row(vec![
                e.record_id.clone(),
                e.version.to_string(),
                e.seq.to_string(),
            ]);
        }
        t.print();
    }
    println!(
        "published {} records to {}; its log holds {} entries",
        published.entries.len(),
        conn.city,
        published.tree_size
    );
    Ok(())
}

/// A progress bar on stderr for `total` records (drawn only when stderr is a terminal).
pub fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} records, {per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("publishing");
    bar
}

/// One record and the input line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub number: usize,
    pub record: CreditRecord,
}

/// Reads JSON Lines records, skipping blank lines; on malformed lines the error lists them
/// (up to [`MAX_REPORTED_ERRORS`]) by line number and field.
pub fn read_records(reader: impl BufRead, source: &str) -> Result<Vec<Line>> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut malformed = 0;
    for (i, line) in reader.lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("{source}: cannot read line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_record(&line) {
            Ok(record) => records.push(Line { number, record }),
            Err(e) => {
                malformed += 1;
                if errors.len() < MAX_REPORTED_ERRORS {
                    errors.push(format!("line {number}: {e}"));
                }
            }
        }
    }
    match malformed {
        0 => Ok(records),
        1 => bail!("{source}: {}", errors[0]),
        n => {
            let more = if n > errors.len() {
                format!("\n  … and {} more", n - errors.len())
            } else {
                String::new()
            };
            bail!(
                "{source}: {n} malformed lines, nothing published:\n  {}{more}",
                errors.join("\n  ")
            )
        }
    }
}

/// What a run published: the seq of every record, in input order, and the log size after.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub entries: Vec<PublishedEntry>,
    pub tree_size: u64,
}

#[derive(Debug, Serialize)]
struct PublishJson<'a> {
    node: &'a str,
    #[serde(serialize_with = "entries")]
    published: &'a [PublishedEntry],
    tree_size: u64,
}

fn entries<S: serde::Serializer>(entries: &&[PublishedEntry], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        record_id: &'a str,
        version: u32,
        seq: u64,
    }
    s.collect_seq(entries.iter().map(|e| Entry {
        record_id: &e.record_id,
        version: e.version,
        seq: e.seq,
    }))
}

/// Publishes `records` in batches of `batch_size`, advancing `progress` per batch.
pub async fn publish(
    conn: &Connection,
    records: &[Line],
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<Published> {
    let mut published = Published::default();
    for batch in records.chunks(batch_size.max(1)) {
        let request = PublishRequest {
            records: batch.iter().map(|l| l.record.clone()).collect(),
        };
        let response = conn
            .publisher()
            .publish(conn.request(request))
            .await
            .map_err(|status| {
                let (first, last) = (batch[0].number, batch[batch.len() - 1].number);
                let lines = if first == last {
                    format!("line {first}")
                } else {
                    format!("lines {first}-{last}")
                };
                let before = if published.entries.is_empty() {
                    "nothing was published".to_owned()
                } else {
                    format!(
                        "the {} records before line {first} were published (log size {})",
                        published.entries.len(),
                        published.tree_size
                    )
                };
                conn.rpc_error("Publisher.Publish", status)
                    .context(format!("{lines} not published; {before}"))
            })?;
        let response = response.into_inner();
        if response.published.len() != batch.len() {
            bail!(
                "Publisher.Publish on {} answered {} entries for {} records",
                conn.city,
                response.published.len(),
                batch.len()
            );
        }
        published.entries.extend(response.published);
        published.tree_size = response.tree_size;
        progress.inc(batch.len() as u64);
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(input: &str, expect: Expect) {
        let got = match read_records(input.as_bytes(), "records.jsonl") {
            Ok(lines) => format!(
                "ok {}",
                lines
                    .iter()
                    .map(|l| format!("{}:{}", l.number, l.record.record_id))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn reads_json_lines_and_names_bad_lines() {
        check(
            "{\"record_id\":\"a\"}\n\n  \n{\"record_id\":\"b\"}",
            expect!["ok 1:a 4:b"],
        );
        check("", expect!["ok "]);
        check(
            "{\"record_id\":\"a\"}\n{\"list\":\"grey\"}\n",
            expect![[
                r#"err records.jsonl: line 2: list: unknown value "grey", expected one of red, black, watch, penalty"#
            ]],
        );
        check(
            "{\"record_id\":1}\n{\"record_id\":\"b\"}\n{\"subject\":{\"nme\":\"x\"}}\nnot json\n",
            expect![[r#"
                err records.jsonl: 3 malformed lines, nothing published:
                  line 1: record_id: expected a string, found 1
                  line 3: subject.nme: unknown field
                  line 4: invalid JSON at column 2: expected ident"#]],
        );
        let many = "x\n".repeat(25);
        let got = read_records(many.as_bytes(), "stdin")
            .unwrap_err()
            .to_string();
        assert!(got.starts_with("stdin: 25 malformed lines"), "{got}");
        assert!(got.ends_with("… and 5 more"), "{got}");
    }
}
