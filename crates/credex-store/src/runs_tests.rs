//! Tests of the run files: reads against the entries written, merges against a `BTreeMap`
//! model, the filter against a second implementation of its hashing, and what open and the
//! readers make of damaged files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

fn all_keys(_: &[u8]) -> bool {
    true
}

fn no_keys(_: &[u8]) -> bool {
    false
}

fn record_keys(key: &[u8]) -> bool {
    key.first() == Some(&0x08)
}

/// xorshift64: reproducible keys without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A record index key as the view writes them: `0x08 ‖ origin id u32 ‖ record id`.
fn record_key(rng: &mut Rng) -> Vec<u8> {
    let mut key = vec![0x08, 0, 0, 0, 1];
    key.extend_from_slice(format!("changsha-{:016x}", rng.next()).as_bytes());
    key
}

/// `n` record entries, ascending, with a 20-byte value (version u64 from 1 to 3, seq u64
/// below 2^24 in no relation to the key, 4 random bytes), every seventh a tombstone.
fn record_entries(n: usize, seed: u64) -> Vec<RunEntry> {
    let mut rng = Rng(seed);
    let mut keys: Vec<Vec<u8>> = (0..n).map(|_| record_key(&mut rng)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .enumerate()
        .map(|(i, key)| {
            let value = (i % 7 != 3).then(|| {
                let mut v = (1 + rng.next() % 3).to_be_bytes().to_vec();
                v.extend_from_slice(&(rng.next() % (1 << 24)).to_be_bytes());
                v.extend_from_slice(&(rng.next() as u32).to_be_bytes());
                v
            });
            (key, value)
        })
        .collect()
}

fn ok(entries: &[RunEntry]) -> impl Iterator<Item = Result<RunEntry, StoreError>> + '_ {
    entries.iter().cloned().map(Ok)
}

fn write(dir: &TempDir, name: &str, entries: &[RunEntry], block_bytes: usize) -> Arc<Run> {
    let capacity = entries.len() as u64;
    let run = Run::write_blocks(
        &dir.path().join(name),
        ok(entries),
        all_keys,
        capacity,
        block_bytes,
    )
    .expect("write run");
    Arc::new(run)
}

fn cache() -> Arc<RunCache> {
    Arc::new(RunCache::new(8 << 20))
}

fn scan(run: &Arc<Run>, start: &[u8], cache: &Arc<RunCache>) -> Vec<RunEntry> {
    run.iter_from(start, cache)
        .collect::<Result<_, _>>()
        .expect("scan run")
}

/// Keys that no entry of `entries` has: before the first, between each two (a key with a byte
/// appended sorts right after it), after the last.
fn absent_keys(entries: &[RunEntry]) -> Vec<Vec<u8>> {
    let mut keys = vec![vec![], vec![0x07, 0xff], vec![0xff; 40]];
    keys.extend(entries.iter().map(|(k, _)| [&k[..], &[0]].concat()));
    keys
}

fn expect_corrupt(result: Result<impl fmt::Debug, StoreError>, path: &Path, why: &str) {
    match result {
        Err(StoreError::Corrupt { what }) => {
            assert!(
                what.contains(&path.display().to_string()) && what.contains(why),
                "{what:?} should name {} and say {why:?}",
                path.display()
            );
        }
        other => panic!(
            "expected a corrupt run naming {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn get_finds_every_key_written_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(20_000, 1);
    let run = write(&dir, "a.run", &entries, BLOCK_BYTES);
    assert!(run.fences.len() > 24, "{} blocks", run.fences.len());
    let reopened = Run::open(run.path()).expect("open run");
    let cache = cache();
    for run in [&*run, &reopened] {
        assert_eq!(run.entries(), entries.len() as u64);
        for (key, value) in &entries {
            for use_bloom in [false, true] {
                assert_eq!(
                    run.get(key, use_bloom, &cache).unwrap(),
                    Some(value.clone()),
                    "key {}",
                    show(key)
                );
            }
        }
        for key in absent_keys(&entries) {
            for use_bloom in [false, true] {
                assert_eq!(
                    run.get(&key, use_bloom, &cache).unwrap(),
                    None,
                    "key {}",
                    show(&key)
                );
            }
        }
    }
}

#[test]
fn iter_from_starts_at_the_first_key_not_below_start() {
    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(3_000, 2);
    let cache = cache();
    // Blocks of a few entries and of the real size: starts fall on block boundaries too.
    for (name, block_bytes) in [("small.run", 200), ("real.run", BLOCK_BYTES)] {
        let run = write(&dir, name, &entries, block_bytes);
        let reopened = Arc::new(Run::open(run.path()).unwrap());
        let mut starts = vec![
            vec![],
            vec![0x07],
            vec![0xff; 40],
            entries.last().unwrap().0.clone(),
        ];
        for (k, _) in entries.iter().step_by(97) {
            starts.push(k.clone());
            starts.push([&k[..], &[0]].concat());
        }
        for run in [&run, &reopened] {
            for start in &starts {
                let want: Vec<RunEntry> = entries
                    .iter()
                    .filter(|(k, _)| k >= start)
                    .cloned()
                    .collect();
                assert_eq!(
                    scan(run, start, &cache),
                    want,
                    "{name} from {}",
                    show(start)
                );
            }
        }
    }
}

#[test]
fn an_empty_run_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let run = write(&dir, "empty.run", &[], BLOCK_BYTES);
    let reopened = Arc::new(Run::open(run.path()).unwrap());
    let cache = cache();
    for run in [&run, &reopened] {
        assert_eq!(run.entries(), 0);
        assert_eq!(run.get(b"a", true, &cache).unwrap(), None);
        assert_eq!(run.get(b"a", false, &cache).unwrap(), None);
        assert_eq!(scan(run, b"", &cache), vec![]);
    }
}

fn e(key: &str, value: Option<&str>) -> RunEntry {
    (
        key.as_bytes().to_vec(),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

#[test]
fn merge_lets_the_newest_run_win() {
    let dir = tempfile::tempdir().unwrap();
    let oldest = [
        e("a", Some("1")),
        e("b", Some("1")),
        e("c", Some("1")),
        e("d", Some("1")),
    ];
    let middle = [e("b", Some("2")), e("c", None), e("e", Some("2"))];
    let newest = [
        e("a", Some("3")),
        e("c", Some("3")),
        e("e", None),
        e("f", Some("3")),
    ];
    let runs: Vec<Arc<Run>> = [
        ("oldest", &oldest[..]),
        ("middle", &middle),
        ("newest", &newest),
    ]
    .iter()
    .map(|(name, entries)| write(&dir, name, entries, 8))
    .collect();
    let cache = cache();
    let merged = |drop_tombstones| -> Vec<RunEntry> {
        let sources = runs
            .iter()
            .rev()
            .map(|run| Box::new(run.iter_from(b"", &cache)) as Source<'_>)
            .collect();
        merge(sources, drop_tombstones)
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // By hand: a from newest, b from middle, c newest's value over middle's tombstone, d from
    // oldest, e newest's tombstone, f from newest.
    let kept = vec![
        e("a", Some("3")),
        e("b", Some("2")),
        e("c", Some("3")),
        e("d", Some("1")),
        e("e", None),
        e("f", Some("3")),
    ];
    assert_eq!(merged(false), kept);
    let dropped: Vec<RunEntry> = kept.into_iter().filter(|(_, v)| v.is_some()).collect();
    assert_eq!(merged(true), dropped);
}

#[test]
fn merge_refuses_a_source_out_of_order_and_stops_at_an_error() {
    let unordered = vec![e("b", Some("1")), e("a", Some("1"))];
    let sources: Vec<Source<'_>> = vec![Box::new(unordered.into_iter().map(Ok))];
    let out: Vec<_> = merge(sources, false).collect();
    // The order is checked when the source is advanced past b, before b is yielded.
    assert_eq!(out.len(), 1, "the error, then nothing");
    match &out[0] {
        Err(StoreError::Corrupt { what }) => assert!(what.contains("\"a\""), "{what}"),
        other => panic!("expected an order error, got {other:?}"),
    }
    let failing: Vec<Result<RunEntry, StoreError>> = vec![
        Ok(e("a", None)),
        Err(StoreError::corrupt("source broke")),
        Ok(e("c", None)),
    ];
    let sources: Vec<Source<'_>> = vec![Box::new(failing.into_iter())];
    let out: Vec<_> = merge(sources, false).collect();
    // Met when a is taken and its source advanced: the error, then nothing.
    assert!(
        matches!(&out[..], [Err(StoreError::Corrupt { .. })]),
        "{out:?}"
    );
}

fn run_strategy() -> impl Strategy<Value = BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
    // Short keys over a small alphabet: runs overlap, and keys are prefixes of each other.
    let key = prop::collection::vec(0u8..3, 0..4);
    let value = prop::option::of(prop::collection::vec(any::<u8>(), 0..12));
    prop::collection::btree_map(key, value, 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Runs written oldest to newest and merged newest first read as a map the runs were
    /// applied to in order; so does the merge written as a run, by get and by scans.
    #[test]
    fn merged_runs_read_like_a_map_they_were_applied_to(
        runs in prop::collection::vec(run_strategy(), 1..5),
        block_bytes in 1usize..64,
        start in prop::collection::vec(0u8..3, 0..4),
        drop_tombstones: bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(RunCache::new(4 << 10));
        let mut model = BTreeMap::new();
        let mut written = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let entries: Vec<RunEntry> = run.clone().into_iter().collect();
            written.push(write(&dir, &format!("{i}.run"), &entries, block_bytes));
            model.extend(run.clone());
        }
        if drop_tombstones {
            model.retain(|_, v| v.is_some());
        }
        let sources = written
            .iter()
            .rev()
            .map(|run| Box::new(run.iter_from(b"", &cache)) as Source<'_>)
            .collect();
        let capacity = written.iter().map(|run| run.bloom_keys()).sum();
        let merged = Run::write_blocks(
            &dir.path().join("merged.run"),
            merge(sources, drop_tombstones),
            all_keys,
            capacity,
            block_bytes,
        )
        .unwrap();
        let merged = Arc::new(merged);
        let want: Vec<RunEntry> = model.clone().into_iter().collect();
        prop_assert_eq!(scan(&merged, b"", &cache), want);
        let from: Vec<RunEntry> = model.range(start.clone()..).map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(scan(&merged, &start, &cache), from);
        for key in runs.iter().flat_map(|r| r.keys()).chain([&start]) {
            prop_assert_eq!(merged.get(key, true, &cache).unwrap(), model.get(key).cloned());
        }
    }
}

#[test]
fn the_filter_hashes_as_the_format_says() {
    // FNV-1a 64 published vectors (Fowler, Noll, Vo).
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    // The probes, computed by a separate Python implementation of the module docs' recipe.
    let probes = |key: &[u8], bytes| {
        let bloom = Bloom {
            k: BLOOM_K,
            bits: vec![0; bytes],
        };
        bloom.probes(fnv1a(key)).collect::<Vec<_>>()
    };
    assert_eq!(probes(b"", 8), [38, 49, 60, 7, 18, 29, 40]);
    assert_eq!(probes(b"a", 8), [27, 54, 17, 44, 7, 34, 61]);
    assert_eq!(
        probes(b"\x08\x00\x00\x00\x01changsha-0123456789abcdef", 1000),
        [2661, 2464, 1883, 1686, 1489, 908, 711]
    );
}

#[test]
fn the_filter_finds_every_key_and_few_others() {
    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(100_000, 3);
    let run = Run::open(&write(&dir, "a.run", &entries, BLOCK_BYTES).path).unwrap();
    assert!(entries.iter().all(|(k, _)| run.bloom.may_contain(k)));
    let mut rng = Rng(4);
    let absent: Vec<Vec<u8>> = (0..100_000)
        .map(|_| record_key(&mut rng))
        .filter(|k| entries.binary_search_by(|(e, _)| e.cmp(k)).is_err())
        .collect();
    let positives = absent.iter().filter(|k| run.bloom.may_contain(k)).count();
    let rate = positives as f64 / absent.len() as f64;
    println!(
        "bloom: {positives} false positives in {} absent keys ({:.2} %)",
        absent.len(),
        rate * 100.0
    );
    assert!(rate < 0.02, "false-positive rate {rate}");
}

#[test]
fn the_filter_holds_only_the_keys_bloom_keys_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = record_entries(2_000, 5);
    entries.extend((0..2_000u32).map(|i| ([&[0x09][..], &i.to_be_bytes()].concat(), Some(vec![]))));
    let run = Run::write(&dir.path().join("a.run"), ok(&entries), record_keys, 2_000).unwrap();
    let cache = cache();
    assert_eq!(
        run.bloom.bits.len(),
        2_000 * BLOOM_BITS_PER_KEY / 8,
        "sized for the record keys"
    );
    for (key, value) in &entries {
        // Keys outside the filter are found when read without it.
        assert_eq!(
            run.get(key, record_keys(key), &cache).unwrap(),
            Some(value.clone())
        );
    }
    let subject_keys = entries.iter().filter(|(k, _)| !record_keys(k));
    let missed = subject_keys
        .filter(|(k, _)| !run.bloom.may_contain(k))
        .count();
    assert!(
        missed > 1_900,
        "the filter should not hold the subject keys: {missed} of 2000 missed"
    );
    let empty = Run::write(&dir.path().join("b.run"), ok(&entries), no_keys, 0).unwrap();
    assert_eq!(
        empty.get(&entries[0].0, false, &cache).unwrap(),
        Some(entries[0].1.clone())
    );
}

/// A copy of `path` with `edit` applied, at a new path.
fn damaged(path: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes);
    let out = path.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn open_refuses_a_truncated_or_altered_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(5_000, 6);
    let run = write(&dir, "a.run", &entries, BLOCK_BYTES);
    let len = run.file_bytes() as usize;
    let fence_at = run
        .fences
        .last()
        .map(|f| f.offset + u64::from(f.len))
        .unwrap() as usize;
    assert_eq!(std::fs::metadata(run.path()).unwrap().len() as usize, len);
    for cut in [0, 10, FOOTER_LEN - 1, len / 2, len - FOOTER_LEN, len - 1] {
        let path = damaged(run.path(), &format!("cut-{cut}"), |b| b.truncate(cut));
        let why = if cut < FOOTER_LEN {
            "shorter than a run footer"
        } else {
            "magic"
        };
        expect_corrupt(Run::open(&path), &path, why);
    }
    // One byte flipped in the fence index, the filter, and the footer's entry count.
    let fence_len = 4 + 20 * run.fences.len() + run.fence_keys.len();
    let filter_at = fence_at + fence_len + 1 + run.bloom.bits.len() / 2;
    assert_eq!(
        fence_at + fence_len + 1 + run.bloom.bits.len() + FOOTER_LEN,
        len
    );
    let entries_at = len - FOOTER_LEN + 3 * 8 + 7;
    for at in [fence_at + 5, filter_at, entries_at] {
        let path = damaged(run.path(), &format!("flip-{at}"), |b| b[at] ^= 0x10);
        expect_corrupt(Run::open(&path), &path, "checksum");
    }
    let path = damaged(run.path(), "version", |b| b[len - MAGIC.len() - 1] = 9);
    expect_corrupt(Run::open(&path), &path, "version 9");
}

#[test]
fn a_damaged_block_is_corrupt_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(5_000, 7);
    let run = write(&dir, "a.run", &entries, BLOCK_BYTES);
    let third = run.fences[3];
    let at = (third.offset + u64::from(third.len) / 2) as usize;
    let path = damaged(run.path(), "flip", |b| b[at] ^= 0x01);
    let run = Arc::new(Run::open(&path).expect("blocks are checked when read, not at open"));
    let cache = cache();
    let key = &run.fence_keys[third.key_start..third.key_end];
    expect_corrupt(run.get(key, false, &cache), &path, "block 3");
    let scanned: Result<Vec<_>, _> = run.iter_from(b"", &cache).collect();
    expect_corrupt(scanned, &path, "block 3");
    // The other blocks still read.
    let first = &entries[0];
    assert_eq!(
        run.get(&first.0, false, &cache).unwrap(),
        Some(first.1.clone())
    );
}

#[test]
fn write_refuses_keys_out_of_order_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.run");
    for entries in [
        vec![e("b", None), e("a", None)],
        vec![e("a", None), e("b", None), e("b", Some("2"))],
    ] {
        let written = Run::write(&path, ok(&entries), all_keys, 3);
        expect_corrupt(written, &path, "key \"");
        assert!(!path.exists(), "the partial file is removed");
    }
    let failing = vec![
        Ok(e("a", None)),
        Err(StoreError::corrupt("the memtable broke")),
    ];
    let written = Run::write(&path, failing.into_iter(), all_keys, 2);
    assert!(matches!(written, Err(StoreError::Corrupt { what }) if what == "the memtable broke"));
    assert!(!path.exists(), "the partial file is removed");
}

#[test]
fn write_refuses_a_path_that_exists_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.run");
    std::fs::write(&path, b"someone else's").unwrap();
    let written = Run::write(&path, ok(&[e("a", None)]), all_keys, 1);
    assert!(
        matches!(&written, Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists),
        "{written:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
}

#[test]
fn the_cache_keeps_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(20_000, 8);
    let run = write(&dir, "a.run", &entries, BLOCK_BYTES);
    let bound = 100 << 10;
    let cache = Arc::new(RunCache::new(bound));
    let mut held = 0;
    for (i, entry) in run.iter_from(b"", &cache).enumerate() {
        assert_eq!(entry.unwrap(), entries[i]);
        held = held.max(cache.bytes());
        assert!(cache.bytes() <= bound, "{} bytes cached", cache.bytes());
    }
    for (key, value) in entries.iter().rev().step_by(13) {
        assert_eq!(run.get(key, false, &cache).unwrap(), Some(value.clone()));
        assert!(cache.bytes() <= bound, "{} bytes cached", cache.bytes());
    }
    assert!(held > bound / 2, "the cache is used: {held} bytes at most");
    // A cache too small for one block reads all the same, holding nothing.
    let tiny = Arc::new(RunCache::new(1 << 10));
    assert_eq!(scan(&run, b"", &tiny), entries);
    assert_eq!(tiny.bytes(), 0);
}

/// The figures the module's users plan with, for 200k record index entries: asserted loosely
/// (disk), printed (rates; meaningful in a release build).
#[test]
fn record_entries_take_little_disk() {
    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(200_000, 9);
    let raw: usize = entries
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let started = Instant::now();
    let run = write(&dir, "a.run", &entries, BLOCK_BYTES);
    let wrote = started.elapsed();
    let per_entry = run.file_bytes() as f64 / entries.len() as f64;
    let cache = Arc::new(RunCache::new(64 << 20));
    let mut rng = Rng(10);
    let started = Instant::now();
    let gets = 100_000;
    for _ in 0..gets {
        let (key, value) = &entries[rng.next() as usize % entries.len()];
        assert_eq!(run.get(key, true, &cache).unwrap().as_ref(), Some(value));
    }
    let got = started.elapsed();
    let cold = Arc::new(RunCache::new(0));
    let started = Instant::now();
    for _ in 0..gets / 10 {
        let (key, _) = &entries[rng.next() as usize % entries.len()];
        assert!(run.get(key, true, &cold).unwrap().is_some());
    }
    let got_cold = started.elapsed();
    let started = Instant::now();
    assert_eq!(run.iter_from(b"", &cold).count(), entries.len());
    let scanned = started.elapsed();
    let rate = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64() / 1e3;
    println!(
        "{} entries, {:.1} raw bytes each: {per_entry:.2} bytes each on disk ({} blocks, index {} B, \
         resident {} B); write {:.0} k/s, get (cached) {:.0} k/s, get (uncached) {:.0} k/s, \
         scan {:.0} k/s",
        entries.len(),
        raw as f64 / entries.len() as f64,
        run.fences.len(),
        run.fence_keys.len() + run.fences.len() * 20,
        run.resident_bytes(),
        rate(entries.len(), wrote),
        rate(gets, got),
        rate(gets / 10, got_cold),
        rate(entries.len(), scanned),
    );
    assert!(per_entry < 40.0, "{per_entry} bytes an entry");
}

#[test]
fn block_decoding_takes_well_formed_blocks_only() {
    // count ‖ (key len ‖ key ‖ tag ‖ [value len ‖ value])*, by hand.
    let good = vec![2, 1, b'a', 1, 1, b'x', 2, b'a', b'b', 0];
    let block = Block::decode(good).unwrap();
    assert_eq!(block.entry(0), e("a", Some("x")));
    assert_eq!(block.entry(1), e("ab", None));
    let empty_key_first = vec![2, 0, 1, 0, 1, b'a', 1, 0];
    let block = Block::decode(empty_key_first).unwrap();
    assert_eq!(
        (block.entry(0), block.entry(1)),
        (e("", Some("")), e("a", Some("")))
    );
    for (raw, why) in [
        (&[0][..], "claims 0 entries"),
        (&[3, 1, b'a', 0][..], "claims 3 entries"),
        (&[2, 1, b'a', 0, 3, b'x'], "malformed"),
        (&[2, 1, b'b', 0, 1, b'a', 0], "out of order"),
        (&[2, 1, b'a', 0, 1, b'a', 1, 0], "out of order"),
        (&[2, 0, 0, 0, 0], "out of order"),
        (&[1, 1, b'a', 2], "tagged 2"),
        (&[1, 1, b'a', 1, 2, b'x'], "malformed"),
        (&[1, 2, b'a'], "malformed"),
        (&[1, 1, b'a', 0, 0], "1 bytes after"),
        (&[1, 0x80, 0x80, 0], "malformed"),
    ] {
        match Block::decode(raw.to_vec()) {
            Err(what) => assert!(what.contains(why), "{raw:?}: {what:?}, expected {why:?}"),
            Ok(block) => panic!("{raw:?} decoded to {block:?}"),
        }
    }
}

#[test]
fn readers_on_several_threads_share_a_run_and_a_cache() {
    fn shared<T: Send + Sync>() {}
    shared::<Run>();
    shared::<RunCache>();
    fn sent<T: Send>() {}
    sent::<RunIter>();
    sent::<Merge<'static>>();

    let dir = tempfile::tempdir().unwrap();
    let entries = record_entries(20_000, 11);
    let run = write(&dir, "a.run", &entries, BLOCK_BYTES);
    let bound = 64 << 10;
    let cache = Arc::new(RunCache::new(bound));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (run, cache, entries) = (&run, &cache, &entries);
            s.spawn(move || {
                let mut rng = Rng(100 + t);
                for _ in 0..5_000 {
                    let (key, value) = &entries[rng.next() as usize % entries.len()];
                    assert_eq!(run.get(key, true, cache).unwrap().as_ref(), Some(value));
                    assert!(cache.bytes() <= bound);
                }
            });
        }
    });
}

#[test]
fn an_unlisted_run_is_removed_only_while_its_path_is_still_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("7.run");
    let records = record_entries(10, 3);
    let entries = || ok(&records);
    let run = Run::write(&path, entries(), all_keys, 10).unwrap();
    run.remove_unlisted();
    assert!(!path.exists(), "its own file is removed");

    // A store opened again deleted the merge's output and wrote a run of the same name.
    let stale = Run::write(&path, entries(), all_keys, 10).unwrap();
    std::fs::remove_file(&path).unwrap();
    let fresh = Run::write(&path, entries(), all_keys, 10).unwrap();
    stale.remove_unlisted();
    assert!(
        path.exists(),
        "another run's file at the same path survives"
    );
    fresh.remove_unlisted();
    assert!(!path.exists());
}
