//! Catch-up throughput: appends N entries of ~1 KiB to one origin in batches, with a record
//! index entry each and one flush per batch, as the node does when it syncs a peer's log.
//! Prints the figure beside two peers measured in the same run: the ceiling, sled writing and
//! flushing the same leaves alone (what the store did before leaves moved to files), with no
//! hashing or indexing; and the floor of the file path, the same leaves appended to one file
//! with an `fdatasync` per batch.
//!
//! Also prints the bytes each entry leaves on disk (apparent size and allocated blocks of every
//! file under the database directory, after the last flush), and the rate of reading the log
//! back with `StoreReader::leaves` in pages of 1,000 (warm page cache: the read path's CPU cost), and
//! of reading single leaves at random seqs with `StoreReader::leaf`, as lookups do.
//!
//! `cargo run --release -p credex-store --example append_throughput -- [entries] [batch] [leaf bytes]`

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use credex_store::{Store, WriteBatch};

const ORIGIN: &str = "credex/bench/origin";

/// A leaf shaped like a signed entry for compression: 64 bytes that do not compress (the
/// signature), then fields that repeat from entry to entry with a few that differ (ids,
/// dates). Leaves stored in zstd blocks make a run of one repeated byte cost nothing, which
/// would flatter the store's bytes on disk.
fn leaf(seq: u64, len: usize) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    while v.len() < len {
        let field = format!(
            "credex/bench/origin record CS-{seq:08} subject 91430100MA4L{:06}X category {} ",
            seq.wrapping_mul(7919) % 1_000_000,
            seq % 17
        );
        v.extend_from_slice(field.as_bytes());
    }
    v.truncate(len);
    v
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.parse().expect("numeric argument"))
}

fn report(what: &str, entries: u64, bytes: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{what:<28} {entries} entries in {secs:.2} s: {:.0} entries/s, {:.1} MiB/s",
        entries as f64 / secs,
        bytes as f64 / secs / (1 << 20) as f64
    );
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
fn disk_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut total = (0, 0);
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let meta = item.metadata()?;
        let (len, blocks) = if meta.is_dir() {
            disk_usage(&item.path())?
        } else {
            (meta.len(), meta.blocks() * 512)
        };
        total.0 += len;
        total.1 += blocks;
    }
    Ok(total)
}

fn report_disk(what: &str, entries: u64, dir: &Path) -> std::io::Result<()> {
    // Blocks are what the disk gives up; the apparent size shows sled's sparse preallocation.
    let (len, allocated) = disk_usage(dir)?;
    println!(
        "{what:<28} on disk: {:.0} B/entry apparent, {:.0} B/entry allocated ({:.1} MiB)",
        len as f64 / entries as f64,
        allocated as f64 / entries as f64,
        allocated as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let entries = arg(1, 1_000_000);
    let batch_size = arg(2, 512);
    let leaf_len = arg(3, 1024) as usize;
    let bytes = entries * leaf_len as u64;

    // Ceiling: the same leaves through sled alone, same batching and flushing.
    let raw_dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(raw_dir.path())
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let start = Instant::now();
    let mut seq = 0;
    while seq < entries {
        let mut batch = sled::Batch::default();
        for s in seq..(seq + batch_size).min(entries) {
            batch.insert(&s.to_be_bytes()[..], leaf(s, leaf_len));
        }
        db.apply_batch(batch)?;
        db.flush()?;
        seq += batch_size;
    }
    let raw = start.elapsed();
    drop(db);
    report_disk("sled alone (ceiling)", entries, raw_dir.path())?;
    drop(raw_dir);

    // Floor of the file path: the leaves appended to one file, one write and fdatasync a batch.
    let file_dir = tempfile::tempdir()?;
    let file = std::fs::File::create(file_dir.path().join("leaves.dat"))?;
    let start = Instant::now();
    let (mut seq, mut at) = (0, 0);
    while seq < entries {
        let mut data = Vec::new();
        for s in seq..(seq + batch_size).min(entries) {
            data.extend_from_slice(&leaf(s, leaf_len));
        }
        file.write_all_at(&data, at)?;
        file.sync_data()?;
        at += data.len() as u64;
        seq += batch_size;
    }
    let file_only = start.elapsed();
    drop(file);
    drop(file_dir);

    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let (mut applying, mut flushing) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let mut seq = 0;
    while seq < entries {
        let mut batch = WriteBatch::new();
        for s in seq..(seq + batch_size).min(entries) {
            batch.append(ORIGIN, s, leaf(s, leaf_len)).index_record(
                ORIGIN,
                &format!("r{}", s % 100_000),
                s / 100_000 + 1,
                s,
                &[format!("uscc:{}", s % 100_000)],
            );
        }
        let t = Instant::now();
        store.apply(batch)?;
        applying += t.elapsed();
        let t = Instant::now();
        store.flush()?;
        flushing += t.elapsed();
        seq += batch_size;
    }
    let ours = start.elapsed();
    assert_eq!(store.origin_state(ORIGIN).size, entries);

    let start = Instant::now();
    let mut seq = 0;
    while seq < entries {
        let page = store.leaves(ORIGIN, seq, 1000)?;
        assert_eq!(page[0], leaf(seq, leaf_len));
        seq += page.len() as u64;
    }
    let reading = start.elapsed();

    // Single leaves at random seqs, as a lookup reads its hits: each decompresses its block
    // unless one of the last few read holds it.
    let lookups = 10_000.min(entries);
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let start = Instant::now();
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let seq = x % entries;
        assert_eq!(store.leaf(ORIGIN, seq)?, Some(leaf(seq, leaf_len)));
    }
    let looking_up = start.elapsed();
    drop(store);
    report_disk("credex-store", entries, dir.path())?;

    report("sled alone (ceiling)", entries, bytes, raw);
    report("file + fdatasync alone", entries, bytes, file_only);
    report("credex-store", entries, bytes, ours);
    report("credex-store leaves() read", entries, bytes, reading);
    println!(
        "{:<28} {lookups} random leaves in {:.2} s: {:.1} µs each",
        "credex-store leaf() read",
        looking_up.as_secs_f64(),
        looking_up.as_secs_f64() * 1e6 / lookups as f64
    );
    println!(
        "credex-store: {:.2} s applying, {:.2} s flushing, {:.0}% of the ceiling's rate",
        applying.as_secs_f64(),
        flushing.as_secs_f64(),
        100.0 * raw.as_secs_f64() / ours.as_secs_f64()
    );
    Ok(())
}
