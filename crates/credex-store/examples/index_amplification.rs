//! What sled 0.34 keeps on disk for the view's random-keyed index entries: why the store keeps
//! them in its own sorted runs (`view_index`) instead.
//!
//! `cargo run --release -p credex-store --example index_amplification -- <entries> <shape>
//! [per batch, default 256] [batches per flush, default 1]`
//!
//! Inserts `entries` generated entries' index writes into a fresh sled database opened as
//! layout 6 opened its own, a batch at a time with a flush per `batches per flush`, and prints
//! the raw bytes asked for, the bytes sled's files then occupy and the rate. Shapes:
//! - `layout6`: the three writes an entry of layout 6 — the record index (`0x08 ‖ id ‖ record
//!   id` → version, seq, subject keys), the subject index (`0x09 ‖ len16 subject ‖ id ‖ record
//!   id`) and a due date (`0x11 ‖ day ‖ id ‖ record id`), random record ids and subjects as the
//!   generator makes them;
//! - `lean`: the same three with about half the bytes (a hashed subject, seqs for record ids,
//!   varint-sized values), to tell sled's cost per byte from its cost per insert;
//! - `record`: the record index alone;
//! - `sequential`: one write an entry under increasing keys, as the log's own keys are.

use std::path::Path;
use std::time::Instant;

fn dir_bytes(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// xorshift64: fixed, so every run inserts the same keys.
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `prefix ‖ parts`.
fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for part in parts {
        k.extend_from_slice(part);
    }
    k
}

/// The writes of entry `seq` in `shape`.
fn writes(shape: &str, seq: u64, keys: &mut Keys) -> Vec<(Vec<u8>, Vec<u8>)> {
    const ORIGIN: [u8; 4] = [0, 0, 0, 1];
    let record_id = format!("changsha-{:016x}", keys.next());
    let subject = format!("uscc:91430100MA{:08X}", keys.next() as u32);
    let day = (20_270_000 + (keys.next() % 3000) as u32).to_be_bytes();
    let rid = record_id.as_bytes();
    match shape {
        "layout6" => {
            let mut value = vec![0u8; 20];
            value.extend((subject.len() as u32).to_be_bytes());
            value.extend(subject.as_bytes());
            let len16 = (subject.len() as u16).to_be_bytes();
            vec![
                (key(0x08, &[&ORIGIN, rid]), value),
                (
                    key(0x09, &[&len16, subject.as_bytes(), &ORIGIN, rid]),
                    Vec::new(),
                ),
                (key(0x11, &[&day, &ORIGIN, rid]), Vec::new()),
            ]
        }
        "lean" => {
            let mut value = vec![1u8];
            value.extend(&seq.to_be_bytes()[5..]);
            value.extend(keys.next().to_be_bytes());
            let seq = seq.to_be_bytes();
            vec![
                (key(0x08, &[&ORIGIN, rid]), value),
                (
                    key(0x09, &[&keys.next().to_be_bytes(), &ORIGIN, &seq]),
                    Vec::new(),
                ),
                (key(0x11, &[&day, &ORIGIN, &seq]), Vec::new()),
            ]
        }
        "record" => {
            let mut value = vec![1u8];
            value.extend(&seq.to_be_bytes()[5..]);
            value.extend(keys.next().to_be_bytes());
            vec![(key(0x08, &[&ORIGIN, rid]), value)]
        }
        "sequential" => vec![(key(0x08, &[&seq.to_be_bytes()]), vec![0u8; 40])],
        other => panic!("unknown shape {other:?}: layout6, lean, record or sequential"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: index_amplification <entries> <layout6|lean|record|sequential> [per batch] [batches per flush]";
    let entries: u64 = args.get(1).ok_or(usage)?.parse()?;
    let shape = args.get(2).ok_or(usage)?.as_str();
    let per_batch: u64 = args.get(3).map_or(Ok(256), |a| a.parse())?;
    let flush_every: u64 = args.get(4).map_or(Ok(1), |a| a.parse())?;

    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let mut keys = Keys(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let (mut raw, mut seq, mut batches) = (0u64, 0u64, 0u64);
    while seq < entries {
        let mut batch = sled::Batch::default();
        for _ in 0..per_batch.min(entries - seq) {
            for (k, v) in writes(shape, seq, &mut keys) {
                raw += (k.len() + v.len()) as u64;
                batch.insert(k, v);
            }
            seq += 1;
        }
        db.apply_batch(batch)?;
        batches += 1;
        if batches.is_multiple_of(flush_every) {
            db.flush()?;
        }
    }
    db.flush()?;
    let took = started.elapsed();
    drop(db);
    let disk = dir_bytes(dir.path())?;
    let per = |b: u64| b as f64 / entries as f64;
    println!(
        "{shape}: {entries} entries, {per_batch} a batch, a flush per {flush_every}: raw {:.1} B an entry, \
         sled's files {:.1} B an entry ({:.2}x), {:.0} entries/s",
        per(raw),
        per(disk),
        disk as f64 / raw as f64,
        entries as f64 / took.as_secs_f64()
    );
    Ok(())
}
