//! Streaming publish, shared by `credexctl publish` and `credexctl bench publish`: records are
//! read one line at a time, grouped into requests of bounded size (records and bytes) and sent
//! as they are read, with a bounded number of requests in flight. Memory stays bounded by the
//! requests queued and in flight, whatever the length of the input.
//!
//! - [`RecordReader`] reads JSON Lines (see [`crate::json`]) one line at a time.
//! - [`Batches`] groups its records into requests; it stops at the first malformed line, after
//!   the records before it, and [`Batches::finish`] then reads the rest to report every
//!   malformed line (up to [`MAX_REPORTED_ERRORS`]).
//! - [`read_into`] runs both on a blocking thread, handing requests to a bounded channel.
//! - [`send`] sends them and reports each published record, in input order. Requests in flight
//!   at once never share a record id, so the versions of one record are published in input
//!   order. After a refusal nothing more is sent; the requests already in flight are answered
//!   and reported.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io::BufRead;

use credex_proto::v1::{CreditRecord, PublishRequest, PublishResponse, PublishedEntry};
use futures::stream::{FuturesOrdered, Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;

use crate::json::parse_record;

/// How many malformed lines one run reports before it only counts them.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// Longest line read: a record the validator accepts is far shorter (its longest texts are a
/// few thousand characters), so a longer line is refused without being held in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The UTF-8 encoding of U+FEFF, the byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bounds of a run: records and encoded bytes per request, requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub records: usize,
    pub bytes: usize,
    pub in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 256 records is the node's default group-commit batch; 4 MiB stays far below the
        // node's 64 MiB message limit; 4 in flight keep the node's queue fed while a batch
        // commits.
        Limits {
            records: 256,
            bytes: 4 << 20,
            in_flight: 4,
        }
    }
}

/// One record and the input line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub number: usize,
    pub record: CreditRecord,
}

/// A line that holds no record.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line {number}: {message}")]
    Malformed { number: usize, message: String },
    #[error("cannot read line {number}: {source}")]
    Read {
        number: usize,
        source: std::io::Error,
    },
}

/// JSON Lines records, one line at a time; blank lines are skipped. `\n` and `\r\n` both end
/// a line, and a UTF-8 byte order mark before the first line is skipped (editors on Windows
/// write one; JSON forbids it, RFC 8259 section 8.1 lets a parser ignore it).
#[derive(Debug)]
pub struct RecordReader<R> {
    reader: R,
    number: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(reader: R) -> Self {
        RecordReader {
            reader,
            number: 0,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Reads one line into `self.buf`: `Some(true)` when it fits in [`MAX_LINE_BYTES`],
    /// `Some(false)` when it does not (the rest of it is skipped unread), `None` at the end.
    fn read_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = std::io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.len() <= MAX_LINE_BYTES || self.buf.ends_with(b"\n") {
            return Ok(Some(true));
        }
        // Too long: skip to the end of the line without keeping it.
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let n = std::io::Read::take(&mut self.reader, 64 << 10).read_until(b'\n', &mut rest)?;
            if n == 0 || rest.ends_with(b"\n") {
                return Ok(Some(false));
            }
        }
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = Result<Line, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            self.number += 1;
            let number = self.number;
            let fits = match self.read_line() {
                Ok(None) => return None,
                Ok(Some(fits)) => fits,
                Err(source) => {
                    self.failed = true;
                    return Some(Err(LineError::Read { number, source }));
                }
            };
            if !fits {
                return Some(Err(LineError::Malformed {
                    number,
                    message: format!("longer than {MAX_LINE_BYTES} bytes"),
                }));
            }
            let bytes = match self.buf.strip_prefix(UTF8_BOM) {
                Some(rest) if number == 1 => rest,
                _ => &self.buf[..],
            };
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Some(Err(LineError::Malformed {
                    number,
                    message: "not UTF-8".to_owned(),
                }));
            };
            let text = text.trim_end_matches('\n').trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            return Some(match parse_record(text) {
                Ok(record) => Ok(Line { number, record }),
                Err(e) => Err(LineError::Malformed {
                    number,
                    message: e.to_string(),
                }),
            });
        }
    }
}

/// One Publish request and the input lines its records came from.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<usize>,
    pub records: Vec<CreditRecord>,
    bytes: usize,
}

impl Batch {
    /// A batch of `records`, numbered from `first_line`.
    pub fn numbered(first_line: usize, records: Vec<CreditRecord>) -> Batch {
        let mut batch = Batch::default();
        for (i, record) in records.into_iter().enumerate() {
            batch.push(Line {
                number: first_line + i,
                record,
            });
        }
        batch
    }

    pub fn push(&mut self, line: Line) {
        self.bytes += line.record.encoded_len();
        self.lines.push(line.number);
        self.records.push(line.record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// "line 7" or "lines 7-12".
    pub fn line_range(&self) -> String {
        line_range(
            self.lines.first().copied().unwrap_or(0),
            self.lines.last().copied().unwrap_or(0),
        )
    }
}

fn line_range(first: usize, last: usize) -> String {
    if first == last {
        format!("line {first}")
    } else {
        format!("lines {first}-{last}")
    }
}

/// How the input ended.
#[derive(Debug, Default)]
pub struct InputEnd {
    /// Records handed out in batches (every record before the first bad line).
    pub records: u64,
    /// The first malformed or unreadable line, if any: nothing from it on was sent.
    pub first_bad_line: Option<usize>,
    /// Malformed lines, up to [`MAX_REPORTED_ERRORS`], as "line N: problem".
    pub errors: Vec<String>,
    /// All malformed lines, counted.
    pub malformed: usize,
    /// Set when reading failed (the rest of the input is unknown).
    pub read_error: Option<String>,
    /// Set when the batches' consumer stopped taking them before the input ended.
    pub abandoned: bool,
}

impl InputEnd {
    fn note(&mut self, error: LineError) {
        if self.first_bad_line.is_none() {
            self.first_bad_line = Some(match &error {
                LineError::Malformed { number, .. } | LineError::Read { number, .. } => *number,
            });
        }
        match error {
            LineError::Malformed { .. } => {
                self.malformed += 1;
                if self.errors.len() < MAX_REPORTED_ERRORS {
                    self.errors.push(error.to_string());
                }
            }
            LineError::Read { .. } => self.read_error = Some(error.to_string()),
        }
    }

    /// Whether every line of the input was read and held a record.
    pub fn is_clean(&self) -> bool {
        self.first_bad_line.is_none() && !self.abandoned
    }
}

/// Groups lines into batches of at most `limits.records` records and about `limits.bytes`
/// encoded bytes (a record larger than that is a batch of its own). Ends at the end of the
/// input or at the first bad line, after a batch of the records before it.
#[derive(Debug)]
pub struct Batches<I> {
    lines: I,
    limits: Limits,
    /// A line read but not yet batched (it did not fit the previous batch).
    held: Option<Line>,
    end: InputEnd,
    done: bool,
}

impl<I: Iterator<Item = Result<Line, LineError>>> Batches<I> {
    pub fn new(lines: I, limits: Limits) -> Self {
        Batches {
            lines,
            limits,
            held: None,
            end: InputEnd::default(),
            done: false,
        }
    }

    /// Reads what is left of the input to report every malformed line, and says how it ended.
    pub fn finish(mut self) -> InputEnd {
        if self.end.read_error.is_none() {
            for line in self.lines.by_ref() {
                if let Err(e) = line {
                    self.end.note(e);
                }
            }
        }
        self.end
    }

    /// Says how the input ended when the consumer stopped early: the rest is not read.
    pub fn abandon(mut self) -> InputEnd {
        self.end.abandoned = true;
        self.end
    }
}

impl<I: Iterator<Item = Result<Line, LineError>>> Iterator for Batches<I> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Batch::default();
        if let Some(line) = self.held.take() {
            batch.push(line);
        }
        while !self.done && batch.len() < self.limits.records {
            match self.lines.next() {
                None => self.done = true,
                Some(Err(e)) => {
                    self.end.note(e);
                    self.done = true;
                }
                Some(Ok(line)) => {
                    let bytes = line.record.encoded_len();
                    if !batch.is_empty() && batch.bytes + bytes > self.limits.bytes {
                        self.held = Some(line);
                        break;
                    }
                    batch.push(line);
                }
            }
        }
        if batch.is_empty() {
            return None;
        }
        self.end.records += batch.len() as u64;
        Some(batch)
    }
}

/// Hands `lines` to `tx` in batches as they are read, and says how the input ended. Blocks: run
/// it on a blocking thread. Stops reading when the receiver is dropped.
pub fn read_into(
    lines: impl Iterator<Item = Result<Line, LineError>>,
    limits: Limits,
    tx: mpsc::Sender<Batch>,
) -> InputEnd {
    let mut batches = Batches::new(lines, limits);
    while let Some(batch) = batches.next() {
        if tx.blocking_send(batch).is_err() {
            return batches.abandon();
        }
    }
    batches.finish()
}

/// One request the node did not publish.
#[derive(Debug)]
pub struct Refused {
    /// Its first and last input lines.
    pub lines: (usize, usize),
    pub status: Status,
}

/// "line 7", "lines 7-12", or "lines 7-12, 20-31" for several refused requests.
pub fn refused_lines(refused: &[Refused]) -> String {
    let ranges: Vec<String> = refused
        .iter()
        .map(|r| match r.lines {
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        })
        .collect();
    match refused {
        [one] if one.lines.0 == one.lines.1 => format!("line {}", ranges[0]),
        _ => format!("lines {}", ranges.join(", ")),
    }
}

/// What [`send`] did.
#[derive(Debug, Default)]
pub struct Sent {
    /// Records published.
    pub published: u64,
    /// The log size after the batch that holds the last of them (the largest size answered).
    pub tree_size: u64,
    /// Requests refused, in input order; the first one stopped the run.
    pub refused: Vec<Refused>,
    /// The last input line of the last request sent (0 if none).
    pub last_line_sent: usize,
}

/// A request in flight: its lines, its record ids, and the node's answer.
type Flight = (Vec<usize>, Result<PublishResponse, Status>);

/// Sends `batches` through `publish`, at most `in_flight` at a time, and calls `on_published`
/// with each published record's line and entry, in input order. Stops sending at the first
/// refusal; the requests in flight are still answered and reported.
pub async fn send<P, F>(
    batches: impl Stream<Item = Batch>,
    in_flight: usize,
    mut publish: P,
    mut on_published: impl FnMut(usize, PublishedEntry),
) -> Sent
where
    P: FnMut(PublishRequest) -> F,
    F: Future<Output = Result<PublishResponse, Status>>,
{
    let in_flight = in_flight.max(1);
    let mut batches = std::pin::pin!(batches.fuse());
    let mut flying = FuturesOrdered::new();
    // The record ids of each request in flight, in the order `flying` answers them.
    let mut ids: VecDeque<HashSet<String>> = VecDeque::new();
    let mut sent = Sent::default();
    let mut input_done = false;
    let mut land =
        |sent: &mut Sent, ids: &mut VecDeque<HashSet<String>>, (lines, answer): Flight| {
            ids.pop_front();
            let answer = answer.and_then(|response| {
                if response.published.len() == lines.len() {
                    Ok(response)
                } else {
                    Err(Status::internal(format!(
                        "answered {} entries for {} records",
                        response.published.len(),
                        lines.len()
                    )))
                }
            });
            match answer {
                Ok(response) => {
                    sent.published += lines.len() as u64;
                    sent.tree_size = sent.tree_size.max(response.tree_size);
                    for (line, entry) in lines.into_iter().zip(response.published) {
                        on_published(line, entry);
                    }
                }
                Err(status) => sent.refused.push(Refused {
                    lines: (
                        lines.first().copied().unwrap_or(0),
                        lines.last().copied().unwrap_or(0),
                    ),
                    status,
                }),
            }
        };
    loop {
        let room = !input_done && sent.refused.is_empty() && flying.len() < in_flight;
        if !room && flying.is_empty() {
            break;
        }
        tokio::select! {
            // Answers first: they free room and show a refusal before more is sent.
            biased;
            Some(landed) = flying.next(), if !flying.is_empty() => {
                land(&mut sent, &mut ids, landed);
            }
            batch = batches.next(), if room => {
                let Some(batch) = batch else {
                    input_done = true;
                    continue;
                };
                let batch_ids: HashSet<String> =
                    batch.records.iter().map(|r| r.record_id.clone()).collect();
                // A later version must not overtake an earlier one of the same record.
                while ids.iter().any(|in_flight| !in_flight.is_disjoint(&batch_ids)) {
                    let Some(landed) = flying.next().await else { break };
                    land(&mut sent, &mut ids, landed);
                }
                if !sent.refused.is_empty() {
                    continue;
                }
                sent.last_line_sent = batch.lines.last().copied().unwrap_or(0);
                ids.push_back(batch_ids);
                let answer = publish(PublishRequest {
                    records: batch.records,
                    ..Default::default()
                });
                let lines = batch.lines;
                flying.push_back(async move { (lines, answer.await) });
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// An endless JSON Lines input that fails once more than `limit` lines were read from it.
    struct Endless {
        lines: Arc<AtomicUsize>,
        limit: usize,
        pending: Vec<u8>,
    }

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.pending.is_empty() {
                let n = self.lines.fetch_add(1, Ordering::SeqCst) + 1;
                if n > self.limit {
                    return Err(std::io::Error::other("the input was read to its end"));
                }
                self.pending = format!("{{\"record_id\":\"r{n}\"}}\n").into_bytes();
            }
            let n = out.len().min(self.pending.len());
            out[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped_before_the_first_line_only() {
        let read = |text: &str| -> Vec<String> {
            RecordReader::new(text.as_bytes())
                .map(|line| match line {
                    Ok(line) => format!("line {}: {}", line.number, line.record.record_id),
                    Err(e) => e.to_string(),
                })
                .collect()
        };
        assert_eq!(
            read("\u{feff}{\"record_id\":\"a\"}\r\n{\"record_id\":\"b\"}\n"),
            ["line 1: a", "line 2: b"]
        );
        assert_eq!(read("\u{feff}\n{\"record_id\":\"b\"}\n"), ["line 2: b"]);
        // Anywhere else it is a stray character, as JSON says.
        assert_eq!(
            read("{\"record_id\":\"a\"}\n\u{feff}{\"record_id\":\"b\"}\n"),
            [
                "line 1: a",
                "line 2: invalid JSON at column 1: expected value"
            ]
        );
    }

    #[test]
    fn the_first_request_is_ready_before_the_input_is_read_to_its_end() {
        let lines = Arc::new(AtomicUsize::new(0));
        let input = Endless {
            lines: lines.clone(),
            limit: 1000,
            pending: Vec::new(),
        };
        let limits = Limits::default();
        let mut batches = Batches::new(RecordReader::new(BufReader::new(input)), limits);
        let first = batches.next().expect("a first request");
        assert_eq!(first.len(), limits.records);
        assert_eq!(first.line_range(), "lines 1-256");
        // The reader's buffer may hold part of the next line, no more.
        assert!(lines.load(Ordering::SeqCst) <= limits.records + 1);
        let second = batches.next().expect("a second request");
        assert_eq!(second.line_range(), "lines 257-512");
    }

    fn ranges(input: &str, limits: Limits) -> (Vec<String>, InputEnd) {
        let mut batches = Batches::new(RecordReader::new(input.as_bytes()), limits);
        let got = batches.by_ref().map(|b| b.line_range()).collect();
        (got, batches.finish())
    }

    #[test]
    fn requests_are_bounded_in_records_and_bytes() {
        let input: String = (1..=7)
            .map(|i| format!("{{\"record_id\":\"r{i}\"}}\n"))
            .collect();
        let by_count = Limits {
            records: 3,
            ..Limits::default()
        };
        assert_eq!(
            ranges(&input, by_count).0,
            ["lines 1-3", "lines 4-6", "line 7"]
        );
        // Each record encodes to 4 bytes: two fit in 9 bytes, and a record alone always goes.
        let by_bytes = Limits {
            bytes: 9,
            ..Limits::default()
        };
        assert_eq!(
            ranges(&input, by_bytes).0,
            ["lines 1-2", "lines 3-4", "lines 5-6", "line 7"]
        );
        let tiny = Limits {
            bytes: 1,
            ..Limits::default()
        };
        assert_eq!(ranges(&input, tiny).0.len(), 7);
    }

    #[test]
    fn a_malformed_line_ends_the_requests_and_every_bad_line_is_reported() {
        let input = "{\"record_id\":\"a\"}\r\n\n{\"record_id\":\"b\"}\n{\"list\":\"grey\"}\n{\"record_id\":\"c\"}\nnot json\n";
        let (got, end) = ranges(input, Limits::default());
        assert_eq!(got, ["lines 1-3"]);
        assert_eq!(end.records, 2);
        assert_eq!(end.first_bad_line, Some(4));
        assert_eq!(end.malformed, 2);
        expect_test::expect![[r#"
            [
                "line 4: list: unknown value \"grey\", expected one of red, black, watch, penalty",
                "line 6: invalid JSON at column 2: expected ident",
            ]
        "#]]
        .assert_debug_eq(&end.errors);

        let long = format!(
            "{{\"record_id\":\"a\"}}\n{}\n{{\"record_id\":\"b\"}}\n",
            " ".repeat(MAX_LINE_BYTES + 10)
        );
        let (got, end) = ranges(&long, Limits::default());
        assert_eq!(got, ["line 1"]);
        assert_eq!(
            end.errors,
            [format!("line 2: longer than {MAX_LINE_BYTES} bytes")]
        );

        let many = "x\n".repeat(25);
        let (got, end) = ranges(&many, Limits::default());
        assert!(got.is_empty());
        assert_eq!((end.malformed, end.errors.len()), (25, MAX_REPORTED_ERRORS));
    }

    /// A fake Publisher: answers each request after a given delay, refuses requests holding a
    /// record id that starts with "bad", and records what it published and its most requests
    /// in flight at once.
    #[derive(Clone, Default)]
    struct FakeNode {
        state: Arc<Mutex<FakeState>>,
    }

    #[derive(Default)]
    struct FakeState {
        size: u64,
        in_flight: usize,
        most_in_flight: usize,
        published: Vec<String>,
    }

    impl FakeNode {
        fn publish(
            &self,
            request: PublishRequest,
            delay_ms: u64,
        ) -> impl Future<Output = Result<PublishResponse, Status>> + use<> {
            let state = self.state.clone();
            async move {
                {
                    let mut s = state.lock().unwrap();
                    s.in_flight += 1;
                    s.most_in_flight = s.most_in_flight.max(s.in_flight);
                }
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                let mut s = state.lock().unwrap();
                s.in_flight -= 1;
                if request
                    .records
                    .iter()
                    .any(|r| r.record_id.starts_with("bad"))
                {
                    return Err(Status::invalid_argument("records[0]: bad"));
                }
                let published = request
                    .records
                    .iter()
                    .map(|r| {
                        s.size += 1;
                        s.published.push(r.record_id.clone());
                        PublishedEntry {
                            record_id: r.record_id.clone(),
                            version: 1,
                            seq: s.size - 1,
                            already_present: false,
                        }
                    })
                    .collect();
                Ok(PublishResponse {
                    published,
                    tree_size: s.size,
                })
            }
        }

        fn most_in_flight(&self) -> usize {
            self.state.lock().unwrap().most_in_flight
        }

        fn published(&self) -> Vec<String> {
            self.state.lock().unwrap().published.clone()
        }
    }

    fn batches_of(ids: &[&[&str]]) -> Vec<Batch> {
        let mut line = 1;
        ids.iter()
            .map(|ids| {
                let records: Vec<CreditRecord> = ids
                    .iter()
                    .map(|id| CreditRecord {
                        record_id: (*id).to_owned(),
                        ..Default::default()
                    })
                    .collect();
                let batch = Batch::numbered(line, records);
                line += ids.len();
                batch
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_come_in_input_order_with_a_bounded_number_in_flight() {
        let node = FakeNode::default();
        let input = batches_of(&[&["a", "b"], &["c"], &["d", "e"], &["f"], &["g"], &["h"]]);
        let mut reported = Vec::new();
        // Earlier requests take longer, so the node answers them out of order.
        let mut delay = 60;
        let sent = send(
            futures::stream::iter(input),
            3,
            |request| {
                delay -= 10;
                node.publish(request, delay)
            },
            |line, entry| reported.push(format!("{line}:{}", entry.record_id)),
        )
        .await;
        assert_eq!(
            reported,
            ["1:a", "2:b", "3:c", "4:d", "5:e", "6:f", "7:g", "8:h"]
        );
        assert_eq!(
            (sent.published, sent.tree_size, sent.last_line_sent),
            (8, 8, 8)
        );
        assert!(sent.refused.is_empty());
        assert_eq!(node.most_in_flight(), 3, "at most 3 in flight, and 3 used");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_version_waits_for_the_request_holding_the_earlier_one() {
        let node = FakeNode::default();
        // "a" is in the first and third requests; the first is slow.
        let input = batches_of(&[&["a"], &["b"], &["a"], &["c"]]);
        let mut delays = vec![100, 1, 1, 5].into_iter();
        send(
            futures::stream::iter(input),
            4,
            |request| node.publish(request, delays.next().unwrap()),
            |_, _| {},
        )
        .await;
        // Without the wait, the third request would reach the node before the first.
        assert_eq!(node.published(), ["b", "a", "a", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_stops_sending_and_what_was_in_flight_is_reported() {
        let node = FakeNode::default();
        let input = batches_of(&[&["a"], &["bad1", "x"], &["c"], &["d"], &["e"]]);
        let mut reported = Vec::new();
        let mut delays = vec![10, 30, 10, 10, 10].into_iter();
        let sent = send(
            futures::stream::iter(input),
            2,
            |request| node.publish(request, delays.next().unwrap()),
            |line, entry| reported.push(format!("{line}:{}", entry.record_id)),
        )
        .await;
        // Requests 1 and 2 go out; 3 goes once 1 is answered, and is answered after 2's
        // refusal; 4 is never sent.
        assert_eq!(reported, ["1:a", "4:c"]);
        assert_eq!(sent.refused.len(), 1);
        assert_eq!(refused_lines(&sent.refused), "lines 2-3");
        assert_eq!(sent.last_line_sent, 4);
        assert_eq!(sent.published, 2);
    }
}
