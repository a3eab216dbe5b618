//! Crash consistency: a writer process is killed with SIGKILL in the middle of its writes, over
//! and over; after every kill the store must reopen consistent and hold every batch the writer
//! reported durable.
//!
//! The writer is this test binary re-executed with [`CHILD_ENV`] set, filtered to the
//! [`writer_process`] test, so no extra build target is needed. It reports on stdout
//! (`@applied <batch>` after `apply`, `@durable <batch> <sizes>` after `flush`); the parent
//! kills it after a random number of reports.
//!
//! The writer keeps a small view index memory, so runs of the view index are written, listed
//! and merged every few batches and kills land in those too; every reopen must answer the
//! record and subject indexes for exactly the batches sled recovered.
//!
//! Leaves are written to their data files before sled commits the batch, so a kill often leaves
//! a file longer than its committed log (a torn tail; about a third of the kills here); every
//! reopen must leave exactly the committed leaves in the files. How many kills left one is
//! printed, not asserted: it depends on timing, and `src/tests.rs` cuts one off deterministically.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use credex_core::merkle::{HashReader, MemoryHashStore};
use credex_store::{QuarantineRecord, RecordLocation, Store, StoreOptions, WriteBatch};
use tlog_tiles::tlog::stored_hash_count;

/// Directory of the store the child writes; set only in the child.
const CHILD_ENV: &str = "CREDEX_STORE_CRASH_DIR";
const ORIGINS: [&str; 3] = [
    "credex/mid-yangtze/changsha",
    "credex/mid-yangtze/wuhan",
    "credex/mid-yangtze/hefei",
];
/// Record ids cycle through this many values, so later entries are new versions.
const RECORDS: u64 = 50;
/// Subject keys cycle through this many values.
const SUBJECTS: u64 = 7;
/// Every entry whose seq is a multiple of this is marked invalid.
const INVALID_EVERY: u64 = 97;
const KILLS: usize = 20;

/// xorshift64*: enough randomness for batch sizes and kill points without a dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64;
        Rng((nanos ^ u64::from(std::process::id())) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The leaf at (origin, seq) is a pure function of both, so the parent knows every byte.
fn leaf(origin: &str, seq: u64) -> Vec<u8> {
    let mut v = format!("{origin}#{seq}#").into_bytes();
    v.extend((0..512u64).map(|i| (seq.wrapping_mul(31).wrapping_add(i) % 251) as u8));
    v
}

fn record_id(seq: u64) -> String {
    format!("r{}", seq % RECORDS)
}

fn subject(seq: u64) -> String {
    format!("s{}", seq % SUBJECTS)
}

fn sizes_line(store: &Store) -> String {
    ORIGINS
        .iter()
        .map(|o| store.origin_state(o).size.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends batches to the store in `dir`: `max_batches` of them, or until killed.
fn write_batches(dir: &Path, max_batches: u64) {
    // A small view index memory, so the kills also land while a run is written, listed or
    // merged (every few batches), not only between journal writes.
    let options = StoreOptions {
        index_memory: 256 << 10,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir, &options).expect("writer opens the store");
    let mut rng = Rng::seeded();
    // One change per batch, so the change head numbers the batches.
    let first = store.change_head();
    for b in first..first.saturating_add(max_batches) {
        let mut batch = WriteBatch::new();
        let mut ends = [0u64; 3];
        for (origin, end) in ORIGINS.iter().zip(&mut ends) {
            let start = store.origin_state(origin).size;
            // 0 to 256 entries (the node's batch size) per origin and batch.
            *end = start + rng.below(257);
            for seq in start..*end {
                batch.append(origin, seq, leaf(origin, seq)).index_record(
                    origin,
                    &record_id(seq),
                    seq / RECORDS + 1,
                    seq,
                    &[subject(seq)],
                );
                if seq % INVALID_EVERY == 0 {
                    batch.mark_invalid(origin, seq, &format!("invalid {seq}"));
                }
            }
            if *end > start {
                batch.set_checkpoint(origin, *end, format!("{origin}\n{end}\n"));
            }
        }
        batch
            .quarantine(QuarantineRecord {
                origin: ORIGINS[(b % 3) as usize].to_owned(),
                seq: b,
                reason: format!("reason{}", b % 3),
                detail: format!("batch {b}"),
                leaf: vec![b as u8; 64],
                received_from: "nanchang".to_owned(),
                received_at_ms: b,
            })
            .put_peer("nanchang", b.to_be_bytes().to_vec());
        // The change names the sizes this batch ends at, which the parent compares with the
        // logs: a torn batch would show.
        batch.push_change(format!("{b} {} {} {}", ends[0], ends[1], ends[2]));
        let applied = store.apply(batch).expect("apply");
        assert_eq!(applied.changes, b..b + 1);
        println!("@applied {b}");
        // Group commit: some batches are left to the next flush, so a kill can find several
        // applied batches, part of them already on disk through sled's own buffer writes.
        if rng.below(3) != 0 {
            store.flush().expect("flush");
            println!("@durable {b} {}", sizes_line(&store));
        }
    }
}

/// What the parent learned from the reports of all children so far.
#[derive(Debug, Default)]
struct Reported {
    /// Per origin, the largest size reported durable.
    durable: [u64; 3],
    /// Largest batch number reported durable.
    durable_batch: Option<u64>,
}

impl Reported {
    fn read(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        if words.next() != Some("@durable") {
            return;
        }
        let nums: Vec<u64> = words.map(|w| w.parse().expect("number")).collect();
        assert_eq!(nums.len(), 4, "durable line {line:?}");
        self.durable_batch = self.durable_batch.max(Some(nums[0]));
        for i in 0..3 {
            self.durable[i] = self.durable[i].max(nums[i + 1]);
        }
    }
}

/// The leaf data files (`leaves/*.dat`, the store's layout) under `dir`.
fn data_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(files) = std::fs::read_dir(dir.join("leaves")) else {
        return Vec::new();
    };
    files.map(|f| f.expect("dir entry").path()).collect()
}

/// Bytes in the leaf data files under `dir`.
fn data_file_bytes(dir: &Path) -> u64 {
    data_files(dir)
        .iter()
        .map(|f| f.metadata().expect("metadata").len())
        .sum()
}

/// The number and total bytes of the leaves in the data files under `dir`, decoded as the
/// layout writes them down (`leaves.rs`): zstd frames one after another, each of `count u32 ‖
/// count lengths u32 ‖ the leaves`, big-endian. Panics on anything else, a torn frame included.
fn data_file_leaves(dir: &Path) -> (u64, u64) {
    let (mut count, mut bytes) = (0, 0);
    for path in data_files(dir) {
        let raw = std::fs::read(&path).expect("data file");
        let raw = zstd::stream::decode_all(&raw[..])
            .unwrap_or_else(|e| panic!("{}: not whole zstd frames: {e}", path.display()));
        let u32_at = |at: usize| {
            let b = raw.get(at..at + 4).expect("block header within the file");
            u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize
        };
        let mut at = 0;
        while at < raw.len() {
            let n = u32_at(at);
            let lens: usize = (0..n).map(|i| u32_at(at + 4 + 4 * i)).sum();
            at += 4 + 4 * n + lens;
            count += n as u64;
            bytes += lens as u64;
        }
        assert_eq!(
            at,
            raw.len(),
            "{}: a block runs past the end",
            path.display()
        );
    }
    (count, bytes)
}

/// Everything a reopened store must satisfy after a crash. Returns whether open cut a torn
/// tail off the data files.
fn check(dir: &Path, reported: &Reported) -> bool {
    let before_open = data_file_bytes(dir);
    let store = Store::open(dir).expect("store reopens after the kill");
    let mut leaf_bytes = 0;
    let mut leaf_count = 0;
    let batches = store.change_head();
    if let Some(b) = reported.durable_batch {
        assert!(batches > b, "durable batch {b} lost, change head {batches}");
    }

    let mut sizes = [0u64; 3];
    for (i, origin) in ORIGINS.iter().enumerate() {
        let state = store.origin_state(origin);
        let size = state.size;
        sizes[i] = size;
        assert!(
            size >= reported.durable[i],
            "{origin}: size {size} below durable size {}",
            reported.durable[i]
        );
        // The log is gapless, exactly `size` long, and byte for byte what was written.
        let mut tree = MemoryHashStore::new();
        let mut seq = 0;
        while seq < size {
            let page = store.leaves(origin, seq, 1000).expect("leaves");
            assert!(!page.is_empty(), "{origin}: log ends at {seq}, size {size}");
            for l in page {
                assert_eq!(l, leaf(origin, seq), "{origin}: leaf {seq}");
                leaf_bytes += l.len() as u64;
                leaf_count += 1;
                tree.append(&l).expect("memory append");
                seq += 1;
            }
        }
        assert_eq!(
            store.leaf(origin, size).expect("leaf"),
            None,
            "{origin}: leaf past size"
        );
        // Every stored hash equals the recomputation, and so does the root.
        let all: Vec<u64> = (0..stored_hash_count(size)).collect();
        let stored = store
            .hash_reader(origin)
            .read_hashes(&all)
            .expect("stored hashes");
        let recomputed = tree.read_hashes(&all).expect("recomputed hashes");
        assert!(stored == recomputed, "{origin}: stored hashes differ");
        assert_eq!(state.root, tree.root(), "{origin}: root");
        assert!(!state.forked);

        // The indexes describe exactly the log's entries.
        for k in 0..RECORDS.min(size) {
            let latest = (size - 1 - k) / RECORDS * RECORDS + k;
            assert_eq!(
                store.record(origin, &format!("r{k}")).expect("record"),
                Some(RecordLocation {
                    version: latest / RECORDS + 1,
                    seq: latest
                }),
                "{origin}: record r{k} at size {size}"
            );
        }
        let invalid: Vec<u64> = store
            .invalid_entries(origin, 0, usize::MAX)
            .expect("invalid")
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        let want: Vec<u64> = (0..size).step_by(INVALID_EVERY as usize).collect();
        assert_eq!(invalid, want, "{origin}: invalid entries");
        let checkpoint = store.checkpoint(origin).expect("checkpoint");
        assert_eq!(checkpoint.map(|c| c.size), (size > 0).then_some(size));
    }

    for s in 0..SUBJECTS {
        let mut want: Vec<(String, String)> = Vec::new();
        for (i, origin) in ORIGINS.iter().enumerate() {
            for k in 0..RECORDS.min(sizes[i]) {
                let latest = (sizes[i] - 1 - k) / RECORDS * RECORDS + k;
                if latest % SUBJECTS == s {
                    want.push((origin.to_string(), format!("r{k}")));
                }
            }
        }
        want.sort();
        let mut got: Vec<(String, String)> = store
            .subject(&format!("s{s}"))
            .expect("subject")
            .into_iter()
            .map(|h| (h.origin, h.record_id))
            .collect();
        got.sort();
        assert_eq!(got, want, "subject s{s}");
    }

    // Each batch pushed one change, quarantined one entry and rewrote the peer state, all in
    // the same atomic write as its appends.
    if batches > 0 {
        let last = store.changes(batches - 1, 1).expect("changes");
        let want = format!("{} {} {} {}", batches - 1, sizes[0], sizes[1], sizes[2]);
        assert_eq!(last, vec![(batches - 1, want.into_bytes())]);
        assert_eq!(
            store.peer("nanchang").expect("peer"),
            Some((batches - 1).to_be_bytes().to_vec())
        );
    }
    assert_eq!(
        store.changes(0, usize::MAX).expect("changes").len() as u64,
        batches
    );
    let quarantined = store
        .quarantined(None, None, usize::MAX)
        .expect("quarantine");
    assert_eq!(quarantined.len() as u64, batches);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for q in &quarantined {
        *counts.entry(q.record.reason.clone()).or_default() += 1;
    }
    assert_eq!(store.quarantine_counts().expect("counts"), counts);

    // Open left exactly the committed leaves in the files: it never drops committed bytes
    // (the leaves above read back whole) and keeps no uncommitted ones.
    assert_eq!(
        data_file_leaves(dir),
        (leaf_count, leaf_bytes),
        "leaves in the data files after open"
    );
    before_open > data_file_bytes(dir)
}

/// The child's entry point. Without [`CHILD_ENV`] (a normal test run) it writes a few batches
/// into a temporary store and checks them, the no-crash baseline of the same invariants.
#[test]
fn writer_process() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => write_batches(Path::new(&dir), u64::MAX),
        None => {
            let dir = tempfile::tempdir().expect("temp dir");
            write_batches(dir.path(), 4);
            assert!(
                !check(dir.path(), &Reported::default()),
                "torn tail after a clean run"
            );
        }
    }
}

#[test]
fn store_survives_sigkill_mid_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = Rng::seeded();
    let mut reported = Reported::default();
    let mut applied_total = 0;
    let mut torn_tails = 0;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "writer_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Kill after a random number of reports: sometimes right after an apply (the kill
        // lands in the flush), sometimes after a flush (it lands in the next apply).
        let reports = 1 + rng.below(8);
        let mut seen = 0;
        while seen < reports {
            let Some(line) = lines.next() else {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .expect("stderr")
                    .read_to_string(&mut stderr)
                    .expect("read stderr");
                panic!(
                    "round {round}: writer exited early: {}\n{stderr}",
                    child.wait().expect("wait")
                );
            };
            let line = line.expect("read stdout");
            if line.starts_with("@applied") {
                applied_total += 1;
            }
            if line.starts_with('@') {
                seen += 1;
            }
            reported.read(&line);
        }
        // The report is the synchronisation; this pause only spreads the kill over the
        // writer's apply, flush and batch building instead of always hitting the same spot.
        std::thread::sleep(Duration::from_micros(rng.below(5_000)));
        child.kill().expect("kill writer");
        child.wait().expect("reap writer");
        // Reports written before the kill still count: those batches were flushed.
        for line in lines {
            reported.read(&line.expect("read stdout"));
        }
        if check(dir.path(), &reported) {
            torn_tails += 1;
        }
    }
    eprintln!("{torn_tails} of {KILLS} kills left a torn tail");
    assert!(
        applied_total >= KILLS,
        "writers applied {applied_total} batches"
    );
    // The kills landed among view index runs, not only in a memtable's journal.
    let store = Store::open(dir.path()).expect("store reopens");
    let index = store.index_sizes();
    eprintln!("view index at the end: {index:?}");
    assert!(
        index.runs > 0,
        "no view index run was ever written: {index:?}"
    );
}
