//! Where a store's bytes go: for a store directory (a node's `<data dir>/store`, or a copy of
//! one), the leaf files' and the view index's run files' bytes and, per sled keyspace (the
//! table in the crate docs), the number of keys and the raw key and value bytes, beside what
//! sled's files occupy. Everything is also
//! shown per log entry (the sum of every origin's size), the unit README's benchmarks use.
//!
//! The raw bytes are what the store asked sled to keep; the difference to sled's files is sled's
//! own overhead (log-structured segments, node headers, not yet cleaned garbage).
//!
//! `cargo run --release -p credex-store --example disk_usage -- <store dir>`
//!
//! Opens sled read-write (it has no read-only open), so point it at a copy of a live node's
//! store, or at a stopped one.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// (apparent bytes, allocated bytes) of every file under `dir` whose name passes `keep`.
fn usage(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> std::io::Result<(u64, u64)> {
    let mut total = (0, 0);
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let meta = item.metadata()?;
        let (len, blocks) = if meta.is_dir() {
            usage(&item.path(), keep)?
        } else if keep(&item.path()) {
            (meta.len(), meta.blocks() * 512)
        } else {
            (0, 0)
        };
        total.0 += len;
        total.1 += blocks;
    }
    Ok(total)
}

/// The level sled's node pages were compressed at in the stores measured with sled's
/// compression on (ARCHITECTURE.md "Performance"); the store itself leaves it off.
const COMPRESSION_FACTOR: i32 = 3;

const NAMES: [&str; 21] = [
    "format",
    "origins",
    "leaf index",
    "kept tree hashes",
    "latest checkpoint",
    "checkpoints",
    "witness state",
    "evidence",
    "record index",
    "subject index",
    "invalid marks",
    "quarantine",
    "quarantine counts",
    "peers",
    "view changes",
    "counters",
    "version history",
    "due dates",
    "access log",
    "view index journal",
    "view index runs",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: disk_usage <store dir>")?;
    let dir = Path::new(&dir);
    let leaf_dir = dir.join("leaves");
    let (leaf_len, leaf_alloc) = usage(&leaf_dir, &|_| true)?;
    let (run_len, run_alloc) = usage(&dir.join("index"), &|_| true)?;
    let (all_len, all_alloc) = usage(dir, &|_| true)?;
    let (sled_len, sled_alloc) = (
        all_len - leaf_len - run_len,
        all_alloc - leaf_alloc - run_alloc,
    );

    // Raw keyspace bytes, read through sled opened as the store opens it (`store::open_db`,
    // uncompressed), or compressed for a store measured that way: sled refuses a directory
    // written with other storage parameters.
    let db = match sled::Config::new().path(dir).open() {
        Ok(db) => db,
        Err(sled::Error::Unsupported(_)) => sled::Config::new()
            .path(dir)
            .use_compression(true)
            .compression_factor(COMPRESSION_FACTOR)
            .open()?,
        Err(e) => return Err(e.into()),
    };
    let mut spaces: BTreeMap<u8, (u64, u64, u64)> = BTreeMap::new();
    let mut entries = 0;
    for item in db.iter() {
        let (k, v) = item?;
        if k.first() == Some(&0x01) {
            // Origin metadata: id u32, then the log's size u64.
            entries += u64::from_be_bytes(v[4..12].try_into()?);
        }
        let space = spaces
            .entry(k.first().copied().unwrap_or(0xff))
            .or_default();
        space.0 += 1;
        space.1 += k.len() as u64;
        space.2 += v.len() as u64;
    }
    drop(db);

    let per = |b: u64| b as f64 / entries.max(1) as f64;
    println!("{entries} entries in {}", dir.display());
    println!(
        "{:<6} {:<20} {:>10} {:>14} {:>14} {:>10}",
        "space", "what", "keys", "key bytes", "value bytes", "B/entry"
    );
    let mut raw = 0;
    for (&space, &(keys, kb, vb)) in &spaces {
        raw += kb + vb;
        let name = NAMES.get(usize::from(space)).copied().unwrap_or("?");
        println!(
            "0x{space:02x}   {name:<20} {keys:>10} {kb:>14} {vb:>14} {:>10.1}",
            per(kb + vb)
        );
    }
    println!(
        "{:<27} {:>40} {:>10.1}",
        "sled raw keys + values",
        raw,
        per(raw)
    );
    println!(
        "{:<27} {:>25} apparent {:>10.1}   {:>10} allocated {:>8.1}",
        "sled files",
        sled_len,
        per(sled_len),
        sled_alloc,
        per(sled_alloc)
    );
    println!(
        "{:<27} {:>25} apparent {:>10.1}   {:>10} allocated {:>8.1}",
        "leaf files",
        leaf_len,
        per(leaf_len),
        leaf_alloc,
        per(leaf_alloc)
    );
    println!(
        "{:<27} {:>25} apparent {:>10.1}   {:>10} allocated {:>8.1}",
        "view index run files",
        run_len,
        per(run_len),
        run_alloc,
        per(run_alloc)
    );
    println!(
        "{:<27} {:>25} apparent {:>10.1}   {:>10} allocated {:>8.1}",
        "store",
        all_len,
        per(all_len),
        all_alloc,
        per(all_alloc)
    );
    Ok(())
}
