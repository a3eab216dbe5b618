//! Tests of the store through its public API, plus a few that tamper with the sled tree
//! underneath to check what open detects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use credex_core::merkle::{self, HashReader, MemoryHashStore};
use proptest::prelude::*;
use tempfile::TempDir;

use crate::keys;
use crate::*;

const CS: &str = "credex/mid-yangtze/changsha";
const WH: &str = "credex/mid-yangtze/wuhan";

fn temp() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

fn reopen(dir: &TempDir, store: Store) -> Store {
    drop(store);
    Store::open(dir.path()).expect("reopen store")
}

fn leaf(origin: &str, seq: u64) -> Vec<u8> {
    format!("{origin}#{seq}").into_bytes()
}

/// Appends `n` leaves to `origin` in one batch.
fn append(store: &Store, origin: &str, n: u64) -> Applied {
    let size = store.origin_state(origin).size;
    let mut batch = WriteBatch::new();
    for seq in size..size + n {
        batch.append(origin, seq, leaf(origin, seq));
    }
    store.apply(batch).expect("apply appends")
}

fn memory_tree(origin: &str, size: u64) -> MemoryHashStore {
    let mut tree = MemoryHashStore::new();
    for seq in 0..size {
        tree.append(&leaf(origin, seq)).expect("memory append");
    }
    tree
}

/// Polls a future to completion on this thread.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn store_reader_and_flush_future_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    // Readers are handed to other threads, so they clone; the store itself does not
    // (tests/cluster/tidy.rs holds that at compile time).
    fn cloned<T: Clone>(_: &T) {}
    let (_dir, store) = temp();
    send_sync(&store);
    let reader = store.reader();
    send_sync(&reader);
    cloned(&reader);
    let flush = store.flush_async();
    send(&flush);
    block_on(flush).expect("flush");
    store.flush().expect("flush");
}

#[test]
fn a_new_store_is_empty() {
    let (_dir, store) = temp();
    assert_eq!(store.origin_state(CS), OriginState::EMPTY);
    assert_eq!(store.origins(), vec![]);
    assert_eq!(store.leaf(CS, 0).unwrap(), None);
    assert_eq!(store.leaves(CS, 0, 10).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(store.change_head(), 0);
    assert_eq!(store.quarantine_counts().unwrap(), BTreeMap::new());
    assert_eq!(
        merkle::root(0, &store.hash_reader(CS)).unwrap(),
        OriginState::EMPTY.root
    );
}

#[test]
fn appended_leaves_read_back_verbatim_with_the_rfc6962_root() {
    let (dir, store) = temp();
    let applied = append(&store, CS, 5);
    let tree = memory_tree(CS, 5);
    let expected = OriginState {
        size: 5,
        root: tree.root(),
        forked: false,
    };
    assert_eq!(applied.origins, vec![(CS.to_owned(), expected)]);
    assert_eq!(applied.changes, 0..0);
    assert_eq!(store.origin_state(CS), expected);
    assert_eq!(store.leaf(CS, 3).unwrap(), Some(leaf(CS, 3)));
    assert_eq!(store.leaf(CS, 5).unwrap(), None);
    assert_eq!(
        store.leaves(CS, 1, 3).unwrap(),
        vec![leaf(CS, 1), leaf(CS, 2), leaf(CS, 3)]
    );
    assert_eq!(store.leaves(CS, 4, 10).unwrap(), vec![leaf(CS, 4)]);
    assert_eq!(store.leaves(CS, 5, 10).unwrap(), Vec::<Vec<u8>>::new());
    // Another origin's leaves never leak into this origin's range.
    append(&store, WH, 2);
    assert_eq!(store.leaves(CS, 4, 10).unwrap(), vec![leaf(CS, 4)]);

    let store = reopen(&dir, store);
    assert_eq!(store.origin_state(CS), expected);
    assert_eq!(store.origin_state(WH).size, 2);
}

#[test]
fn stored_hashes_serve_inclusion_and_consistency_proofs() {
    let (_dir, store) = temp();
    for n in [1, 6, 1, 13, 64] {
        append(&store, CS, n);
    }
    let state = store.origin_state(CS);
    let reader = store.hash_reader(CS);
    for index in [0, 1, 7, 40, 84] {
        let proof = merkle::inclusion_proof(index, state.size, &reader).unwrap();
        let leaf_hash = merkle::leaf_hash(&leaf(CS, index));
        merkle::verify_inclusion(&proof, index, state.size, leaf_hash, state.root).unwrap();
    }
    let old = memory_tree(CS, 20).root();
    let proof = merkle::consistency_proof(20, state.size, &reader).unwrap();
    merkle::verify_consistency(&proof, 20, old, state.size, state.root).unwrap();
    // A reader for an unknown origin holds nothing.
    assert!(merkle::root(1, &store.hash_reader("unknown")).is_err());
}

#[test]
fn tree_hashes_across_chunks_and_kept_pages_match_the_in_memory_tree() {
    use crate::hashes::{CHUNK, PAGE, kept_count, page_key};
    use tlog_tiles::tlog::stored_hash_count;
    let (dir, mut store) = temp();
    // Batches that end inside, exactly at and far past chunk boundaries (256 leaves) and the
    // boundaries of kept-hash pages (256 kept hashes, about 128 chunks); the store is
    // reopened at the end of each, so open checks a log ending mid-chunk and at a chunk's end.
    let mut size = 0;
    for n in [1, 127, 128, 300, 1, 0, 2, 32_209, 1, 33_000, 255] {
        append(&store, CS, n);
        size += n;
        if n > 200 {
            store = reopen(&dir, store);
        }
        assert_eq!(store.origin_state(CS).size, size);
    }
    assert_eq!(size, 66_024);
    assert_eq!(size % CHUNK, 232);
    let count = stored_hash_count(size);
    let all: Vec<u64> = (0..count).collect();
    let tree = memory_tree(CS, size);
    assert!(
        store.hash_reader(CS).read_hashes(&all).unwrap() == tree.read_hashes(&all).unwrap(),
        "tree hashes differ from the recomputation"
    );
    assert_eq!(store.origin_state(CS).root, tree.root());
    assert!(store.hash_reader(CS).read_hashes(&[count]).is_err());
    // Only the hashes of 256 leaves and more are kept: every page but the last is full, the
    // last holds exactly the rest, and there is no page after it.
    let kept = kept_count(size);
    assert_eq!(kept, stored_hash_count(size / CHUNK));
    let db = store.db().unwrap();
    let pages = kept.div_ceil(PAGE);
    assert!(pages >= 2, "the test spans {pages} pages");
    for page in 0..pages {
        let value = db.get(page_key(0, page)).unwrap().unwrap();
        let want = (kept - page * PAGE).min(PAGE) * 32;
        assert_eq!(value.len() as u64, want, "page {page}");
    }
    assert!(db.get(page_key(0, pages)).unwrap().is_none());
    drop(db);
    // Every leaf reads back from any start.
    let want: Vec<_> = (0..size).map(|seq| leaf(CS, seq)).collect();
    for start in [0, 1, 255, 256, 257, 511, 512, 32_768, 66_023, 66_024] {
        assert_eq!(
            store.leaves(CS, start, usize::MAX).unwrap(),
            want[start as usize..],
            "from {start}"
        );
    }
    // Proofs at sizes and leaves inside, at and across chunks verify against the memory tree,
    // computed with the chunk cache cold (a reopened store).
    let store = reopen(&dir, store);
    let reader = store.hash_reader(CS);
    for (index, at) in [
        (0, 1),
        (255, 256),
        (256, 257),
        (300, 32_769),
        (40_000, 66_024),
    ] {
        let root = memory_tree(CS, at).root();
        let proof = merkle::inclusion_proof(index, at, &reader).unwrap();
        merkle::verify_inclusion(&proof, index, at, merkle::leaf_hash(&leaf(CS, index)), root)
            .unwrap();
    }
    for (old, new) in [
        (1, 256),
        (255, 257),
        (256, 512),
        (300, 66_024),
        (32_768, 66_023),
    ] {
        let proof = merkle::consistency_proof(old, new, &reader).unwrap();
        let (old_root, new_root) = (memory_tree(CS, old).root(), memory_tree(CS, new).root());
        merkle::verify_consistency(&proof, old, old_root, new, new_root).unwrap();
    }
}

#[test]
fn appends_must_continue_the_log_exactly() {
    let (_dir, store) = temp();
    append(&store, CS, 3);
    let before = store.origin_state(CS);
    let file_before = file_len(&crate::leaves::file_path(&store.inner.leaf_dir, 0));

    let mut batch = WriteBatch::new();
    batch.push_change("c").append(CS, 4, leaf(CS, 4));
    let err = store.apply(batch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "origin credex/mid-yangtze/changsha: append at seq 4 leaves a gap, the log holds 3 entries"
    );

    let mut batch = WriteBatch::new();
    batch
        .append(CS, 3, leaf(CS, 3))
        .append(CS, 3, b"other".to_vec());
    let err = store.apply(batch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "origin credex/mid-yangtze/changsha: seq 3 is already stored, the log holds 4 entries"
    );

    // Nothing of a refused batch is written, not even its other operations.
    assert_eq!(store.origin_state(CS), before);
    assert_eq!(
        file_len(&crate::leaves::file_path(&store.inner.leaf_dir, 0)),
        file_before
    );
    assert_eq!(store.leaf(CS, 3).unwrap(), None);
    assert_eq!(store.change_head(), 0);
    assert_eq!(store.changes(0, 10).unwrap(), vec![]);
}

#[test]
fn appends_to_several_origins_in_one_batch_each_get_their_own_tree() {
    let (_dir, store) = temp();
    let mut batch = WriteBatch::new();
    for seq in 0..10 {
        batch.append(CS, seq, leaf(CS, seq));
        if seq < 4 {
            batch.append(WH, seq, leaf(WH, seq));
        }
    }
    let applied = store.apply(batch).unwrap();
    assert_eq!(
        applied
            .origins
            .iter()
            .map(|(o, s)| (o.as_str(), s.size, s.root))
            .collect::<Vec<_>>(),
        vec![
            (CS, 10, memory_tree(CS, 10).root()),
            (WH, 4, memory_tree(WH, 4).root()),
        ]
    );
}

#[test]
fn a_batch_requiring_a_root_commits_only_with_exactly_that_root() {
    let (_dir, store) = temp();
    append(&store, CS, 3);
    let signed = memory_tree(CS, 5).root();
    let build = |root| {
        let mut batch = WriteBatch::new();
        for seq in 3..5 {
            batch.append(CS, seq, leaf(CS, seq));
        }
        batch.set_checkpoint(CS, 5, b"note".to_vec());
        batch.require_root(CS, 5, root);
        batch
    };
    let other = memory_tree(WH, 5).root();
    let err = store
        .apply(build(other))
        .expect_err("another root is refused");
    assert!(
        matches!(err, StoreError::RootMismatch { size: 5, .. }),
        "{err}"
    );
    assert_eq!(
        store.origin_state(CS).size,
        3,
        "nothing of the batch is written"
    );
    assert_eq!(store.leaf(CS, 3).unwrap(), None);
    assert_eq!(store.checkpoint_at(CS, 5).unwrap(), None);
    // The size is part of the requirement: the right root of a smaller tree does not do.
    let mut short = WriteBatch::new();
    short.append(CS, 3, leaf(CS, 3)).require_root(CS, 5, signed);
    assert!(matches!(
        store.apply(short),
        Err(StoreError::RootMismatch { size: 5, .. })
    ));
    store.apply(build(signed)).expect("the signed root commits");
    assert_eq!(store.origin_state(CS).size, 5);
    assert_eq!(store.origin_state(CS).root, signed);
    // Roots required on the way are checked where the appends pass them.
    let mut batch = WriteBatch::new();
    batch
        .require_root(CS, 5, signed)
        .require_root(CS, 6, memory_tree(CS, 6).root())
        .require_root(CS, 8, memory_tree(CS, 8).root());
    for seq in 5..8 {
        batch.append(CS, seq, leaf(CS, seq));
    }
    store.apply(batch).expect("every root on the way is right");
    let mut batch = WriteBatch::new();
    batch
        .require_root(CS, 9, other)
        .require_root(CS, 10, memory_tree(CS, 10).root());
    for seq in 8..10 {
        batch.append(CS, seq, leaf(CS, seq));
    }
    let err = store
        .apply(batch)
        .expect_err("a wrong root on the way is refused");
    assert!(
        matches!(err, StoreError::RootMismatch { size: 9, .. }),
        "{err}"
    );
    assert_eq!(store.origin_state(CS).size, 8);
}

#[test]
fn a_forked_origin_takes_no_more_entries() {
    let (dir, store) = temp();
    append(&store, CS, 2);
    let mut batch = WriteBatch::new();
    batch.mark_forked(CS).append(CS, 2, leaf(CS, 2));
    assert!(matches!(
        store.apply(batch),
        Err(StoreError::Forked { origin }) if origin == CS
    ));
    assert!(!store.origin_state(CS).forked);

    let mut batch = WriteBatch::new();
    batch.mark_forked(CS);
    let applied = store.apply(batch).unwrap();
    assert!(applied.origins[0].1.forked);
    let store = reopen(&dir, store);
    let state = store.origin_state(CS);
    assert!(state.forked);
    assert_eq!(state.size, 2);
    let mut batch = WriteBatch::new();
    batch.append(CS, 2, leaf(CS, 2));
    assert!(matches!(store.apply(batch), Err(StoreError::Forked { .. })));
}

#[test]
fn the_latest_checkpoint_is_the_largest_and_history_keeps_every_size() {
    let (dir, store) = temp();
    let mut batch = WriteBatch::new();
    batch
        .set_checkpoint(CS, 10, b"cp10".to_vec())
        .set_checkpoint(CS, 20, b"cp20".to_vec())
        .set_checkpoint(CS, 15, b"cp15".to_vec());
    store.apply(batch).unwrap();
    let note = |size: u64, note: &[u8]| StoredNote {
        size,
        note: note.to_vec(),
    };
    assert_eq!(store.checkpoint(CS).unwrap(), Some(note(20, b"cp20")));
    assert_eq!(
        store.checkpoints(CS, 0, 10).unwrap(),
        vec![note(10, b"cp10"), note(15, b"cp15"), note(20, b"cp20")]
    );
    assert_eq!(
        store.checkpoints(CS, 11, 1).unwrap(),
        vec![note(15, b"cp15")]
    );

    // A later batch below the latest only adds history; one at the latest size replaces it
    // (more cosignatures).
    let mut batch = WriteBatch::new();
    batch
        .set_checkpoint(CS, 12, b"cp12".to_vec())
        .set_checkpoint(CS, 20, b"cp20+cosig".to_vec());
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    assert_eq!(store.checkpoint(CS).unwrap(), Some(note(20, b"cp20+cosig")));
    assert_eq!(store.checkpoint_at(CS, 12).unwrap(), Some(b"cp12".to_vec()));
    assert_eq!(store.checkpoint_at(CS, 13).unwrap(), None);
    assert_eq!(store.checkpoint(WH).unwrap(), None);
    // A checkpoint may run ahead of the entries held: the log is still empty.
    assert_eq!(store.origin_state(CS), OriginState::EMPTY);
}

#[test]
fn witness_state_never_goes_back() {
    let (dir, store) = temp();
    let mut batch = WriteBatch::new();
    batch.set_witness(WH, 7, b"w7".to_vec());
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);

    let mut batch = WriteBatch::new();
    batch.set_witness(WH, 6, b"w6".to_vec());
    let err = store.apply(batch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "origin credex/mid-yangtze/wuhan: witness state is at size 7, refusing to go back to size 6"
    );

    let mut batch = WriteBatch::new();
    batch
        .set_witness(WH, 7, b"w7 again".to_vec())
        .set_witness(WH, 9, b"w9".to_vec());
    store.apply(batch).unwrap();
    assert_eq!(
        store.witness(WH).unwrap(),
        Some(StoredNote {
            size: 9,
            note: b"w9".to_vec()
        })
    );
    assert_eq!(store.witness(CS).unwrap(), None);
}

#[test]
fn the_indexed_mark_moves_forward_within_the_log_and_survives_reopen() {
    let (dir, store) = temp();
    append(&store, WH, 5);
    assert_eq!(store.indexed(WH), 0, "appending indexes nothing by itself");

    let mut batch = WriteBatch::new();
    batch.set_indexed(WH, 6);
    let err = store.apply(batch).unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownSeq { seq: 5, .. }),
        "{err}"
    );
    assert_eq!(store.indexed(WH), 0, "a refused batch marks nothing");

    // Appends and the mark over them in one batch.
    let mut batch = WriteBatch::new();
    batch
        .set_indexed(WH, 3)
        .append(WH, 5, leaf(WH, 5))
        .set_indexed(WH, 6);
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    assert_eq!(store.indexed(WH), 6);
    assert_eq!(store.origin_state(WH).size, 6);

    let mut batch = WriteBatch::new();
    batch.set_indexed(WH, 4);
    let err = store.apply(batch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "origin credex/mid-yangtze/wuhan: the view has indexed 6 entries, refusing to mark 4"
    );
    assert_eq!(store.indexed(CS), 0);
}

#[test]
fn evidence_accumulates_in_arrival_order() {
    let (dir, store) = temp();
    let mut batch = WriteBatch::new();
    batch
        .add_evidence(WH, b"first".to_vec())
        .add_evidence(WH, b"second".to_vec());
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    let mut batch = WriteBatch::new();
    batch.add_evidence(WH, b"third".to_vec());
    store.apply(batch).unwrap();
    assert_eq!(
        store.evidence(WH).unwrap(),
        vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
    assert_eq!(store.evidence(CS).unwrap(), Vec::<Vec<u8>>::new());
}

#[test]
fn the_record_index_keeps_the_highest_version() {
    let (dir, store) = temp();
    append(&store, CS, 4);
    let mut batch = WriteBatch::new();
    batch
        .index_record(CS, "CS-1", 1, 0, &["uscc:A"])
        .index_record(CS, "CS-1", 2, 2, &["uscc:A"])
        // An older or repeated version changes nothing.
        .index_record(CS, "CS-1", 1, 1, &["uscc:OLD"])
        .index_record(CS, "CS-1", 2, 3, &["uscc:OLD"]);
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    assert_eq!(
        store.record(CS, "CS-1").unwrap(),
        Some(RecordLocation { version: 2, seq: 2 })
    );
    assert_eq!(store.record(CS, "CS-2").unwrap(), None);
    assert_eq!(store.record(WH, "CS-1").unwrap(), None);
    assert_eq!(store.subject("uscc:OLD").unwrap(), vec![]);
}

#[test]
fn every_version_of_a_record_is_kept_in_its_history() {
    let (dir, store) = temp();
    append(&store, CS, 5);
    let mut batch = WriteBatch::new();
    batch
        .index_record(CS, "CS-1", 2, 3, &["uscc:A"])
        .index_record(CS, "CS-1", 1, 0, &["uscc:A"])
        .index_record(CS, "CS-10", 1, 1, &["uscc:A"])
        // An equivocating origin's second entry at one version is kept too.
        .index_record(CS, "CS-1", 2, 4, &["uscc:A"]);
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    let loc = |version, seq| RecordLocation { version, seq };
    assert_eq!(
        store.versions(CS, "CS-1").unwrap(),
        [loc(1, 0), loc(2, 3), loc(2, 4)]
    );
    assert_eq!(store.versions(CS, "CS-10").unwrap(), [loc(1, 1)]);
    assert_eq!(store.versions(CS, "CS-2").unwrap(), []);
    assert_eq!(store.versions(WH, "CS-1").unwrap(), []);
}

#[test]
fn due_dates_are_listed_up_to_a_day_until_unscheduled() {
    let (dir, store) = temp();
    append(&store, CS, 1);
    append(&store, WH, 1);
    let mut batch = WriteBatch::new();
    batch
        .schedule(WH, "WH-1", 20270601)
        .schedule(CS, "CS-1", 20270601)
        .schedule(CS, "CS-2", 20270531)
        .schedule(CS, "CS-3", 20270602);
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    let due = |day, origin: &str, id: &str| (day, origin.to_owned(), id.to_owned());
    assert_eq!(store.due(20270530, 10).unwrap(), []);
    assert_eq!(
        store.due(20270601, 10).unwrap(),
        [
            due(20270531, CS, "CS-2"),
            due(20270601, CS, "CS-1"),
            due(20270601, WH, "WH-1")
        ]
    );
    assert_eq!(store.due(20270601, 1).unwrap(), [due(20270531, CS, "CS-2")]);
    let mut batch = WriteBatch::new();
    batch
        .unschedule(CS, "CS-2", 20270531)
        .unschedule(CS, "CS-1", 20270601);
    store.apply(batch).unwrap();
    assert_eq!(
        store.due(20270601, 10).unwrap(),
        [due(20270601, WH, "WH-1")]
    );
}

#[test]
fn passed_due_dates_are_listed_after_or_until_a_day_apart_from_due_ones_with_the_view_day() {
    let (dir, store) = temp();
    append(&store, CS, 1);
    assert_eq!(store.view_day().unwrap(), None);
    let mut batch = WriteBatch::new();
    batch
        .mark_passed(CS, "CS-1", 20270601)
        .mark_passed(CS, "CS-2", 20270528)
        .mark_passed(CS, "CS-3", 20270603)
        .schedule(CS, "CS-4", 20270602)
        .set_view_day(20270603);
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    let dated = |day, id: &str| (day, CS.to_owned(), id.to_owned());
    assert_eq!(store.view_day().unwrap(), Some(20270603));
    assert_eq!(
        store.passed_after(20270528, 10).unwrap(),
        [dated(20270601, "CS-1"), dated(20270603, "CS-3")]
    );
    assert_eq!(
        store.passed_after(20270601, 1).unwrap(),
        [dated(20270603, "CS-3")]
    );
    assert_eq!(store.passed_after(20270603, 10).unwrap(), []);
    assert_eq!(
        store.passed_until(20270601, 10).unwrap(),
        [dated(20270528, "CS-2"), dated(20270601, "CS-1")]
    );
    assert_eq!(store.due(20270610, 10).unwrap(), [dated(20270602, "CS-4")]);
    let mut batch = WriteBatch::new();
    batch
        .unmark_passed(CS, "CS-1", 20270601)
        .schedule(CS, "CS-1", 20270601)
        .set_view_day(20270531);
    store.apply(batch).unwrap();
    assert_eq!(
        store.passed_after(20270528, 10).unwrap(),
        [dated(20270603, "CS-3")]
    );
    assert_eq!(
        store.due(20270610, 10).unwrap(),
        [dated(20270601, "CS-1"), dated(20270602, "CS-4")]
    );
    assert_eq!(store.view_day().unwrap(), Some(20270531));
}

#[test]
fn the_subject_index_follows_each_records_latest_version() {
    let (_dir, store) = temp();
    append(&store, CS, 3);
    append(&store, WH, 1);
    let mut batch = WriteBatch::new();
    batch
        .index_record(CS, "CS-1", 1, 0, &["uscc:A", "id:P"])
        .index_record(CS, "CS-2", 1, 1, &["uscc:A"])
        .index_record(WH, "WH-1", 1, 0, &["uscc:A", "uscc:A"]);
    store.apply(batch).unwrap();
    let hit = |origin: &str, record_id: &str, version, seq| SubjectHit {
        origin: origin.to_owned(),
        record_id: record_id.to_owned(),
        version,
        seq,
    };
    assert_eq!(
        store.subject("uscc:A").unwrap(),
        vec![
            hit(CS, "CS-1", 1, 0),
            hit(CS, "CS-2", 1, 1),
            hit(WH, "WH-1", 1, 0)
        ]
    );
    assert_eq!(store.subject("id:P").unwrap(), vec![hit(CS, "CS-1", 1, 0)]);

    // Version 2 corrects the subject: the old key no longer finds the record.
    let mut batch = WriteBatch::new();
    batch.index_record(CS, "CS-1", 2, 2, &["uscc:B", "id:P"]);
    store.apply(batch).unwrap();
    assert_eq!(
        store.subject("uscc:A").unwrap(),
        vec![hit(CS, "CS-2", 1, 1), hit(WH, "WH-1", 1, 0)]
    );
    assert_eq!(
        store.subject("uscc:B").unwrap(),
        vec![hit(CS, "CS-1", 2, 2)]
    );
    assert_eq!(store.subject("id:P").unwrap(), vec![hit(CS, "CS-1", 2, 2)]);
    assert_eq!(store.subject("uscc:").unwrap(), vec![]);
}

#[test]
fn standings_move_the_view_counts_by_their_difference_and_survive_reopen() {
    let (dir, store) = temp();
    append(&store, CS, 4);
    let red = |subject: u8| Standing::InForce {
        list: 1,
        subject: [subject; SUBJECT_TAG_LEN],
    };
    let black = |subject: u8| Standing::InForce {
        list: 2,
        subject: [subject; SUBJECT_TAG_LEN],
    };
    let mut batch = WriteBatch::new();
    batch
        .index_record(CS, "CS-1", 1, 0, &["uscc:A"])
        .index_record(CS, "CS-2", 1, 1, &["uscc:A"])
        .index_record(CS, "CS-3", 1, 2, &["uscc:B"])
        .index_record(CS, "CS-4", 1, 3, &["uscc:C"])
        .set_standing(CS, "CS-1", red(1))
        .set_standing(CS, "CS-2", black(1))
        .set_standing(CS, "CS-3", red(2))
        .set_standing(CS, "CS-4", Standing::Excluded)
        // Said twice in a batch: counted once.
        .set_standing(CS, "CS-3", red(2));
    store.apply(batch).unwrap();
    let counts = |in_force, excluded, subjects, by_list: &[(u8, u64)]| ViewCounts {
        in_force,
        excluded,
        subjects,
        by_list: by_list.iter().copied().collect(),
        basis: None,
    };
    assert_eq!(store.view_counts(), counts(3, 1, 2, &[(1, 2), (2, 1)]));
    assert_eq!(store.standing(CS, "CS-2").unwrap(), Some(black(1)));
    // A later version keeps the record's standing until it is set again.
    let mut batch = WriteBatch::new();
    batch.index_record(CS, "CS-2", 2, 3, &["uscc:A"]);
    store.apply(batch).unwrap();
    assert_eq!(store.standing(CS, "CS-2").unwrap(), Some(black(1)));

    // Subject 1 keeps a record in force while it has one; the count follows the last.
    let mut batch = WriteBatch::new();
    batch.set_standing(CS, "CS-1", Standing::Excluded);
    store.apply(batch).unwrap();
    assert_eq!(store.view_counts(), counts(2, 2, 2, &[(1, 1), (2, 1)]));
    let mut batch = WriteBatch::new();
    batch
        .set_standing(CS, "CS-2", Standing::Excluded)
        .set_count_basis(Some(b"rules 1".to_vec()));
    store.apply(batch).unwrap();
    let now = ViewCounts {
        basis: Some(b"rules 1".to_vec()),
        ..counts(1, 3, 1, &[(1, 1)])
    };
    assert_eq!(store.view_counts(), now);
    let store = reopen(&dir, store);
    assert_eq!(store.view_counts(), now);

    // A standing for a record never indexed is refused, and the batch with it.
    let mut batch = WriteBatch::new();
    batch
        .set_standing(CS, "CS-1", red(1))
        .set_standing(CS, "CS-9", red(1));
    assert!(matches!(
        store.apply(batch),
        Err(StoreError::UnknownRecord { record_id, .. }) if record_id == "CS-9"
    ));
    assert_eq!(store.view_counts(), now);
    assert_eq!(
        store.standing(CS, "CS-1").unwrap(),
        Some(Standing::Excluded)
    );
    // Back in force: subject 1 is counted again, from its count kept in the index.
    let mut batch = WriteBatch::new();
    batch.set_standing(CS, "CS-1", red(1)).set_count_basis(None);
    store.apply(batch).unwrap();
    assert_eq!(store.view_counts(), counts(2, 2, 2, &[(1, 2)]));
}

#[test]
fn records_are_listed_in_record_id_order_page_by_page() {
    let (_dir, store) = temp();
    append(&store, CS, 3);
    append(&store, WH, 1);
    let mut batch = WriteBatch::new();
    batch
        .index_record(CS, "CS-2", 1, 0, &["s"])
        .index_record(CS, "CS-10", 1, 1, &["s"])
        .index_record(CS, "CS-2", 2, 2, &["s"])
        .index_record(WH, "WH-1", 1, 0, &["s"]);
    store.apply(batch).unwrap();
    let loc = |version, seq| RecordLocation { version, seq };
    assert_eq!(
        store.records(CS, None, 10).unwrap(),
        vec![
            ("CS-10".to_owned(), loc(1, 1)),
            ("CS-2".to_owned(), loc(2, 2))
        ]
    );
    assert_eq!(
        store.records(CS, None, 1).unwrap(),
        vec![("CS-10".to_owned(), loc(1, 1))]
    );
    assert_eq!(
        store.records(CS, Some("CS-10"), 10).unwrap(),
        vec![("CS-2".to_owned(), loc(2, 2))]
    );
    assert_eq!(store.records(CS, Some("CS-2"), 10).unwrap(), vec![]);
    assert_eq!(store.records("unknown", None, 10).unwrap(), vec![]);
}

#[test]
fn index_and_invalid_marks_must_name_stored_entries() {
    let (_dir, store) = temp();
    append(&store, CS, 2);
    let mut batch = WriteBatch::new();
    batch.index_record(CS, "CS-1", 1, 2, &["uscc:A"]);
    assert_eq!(
        store.apply(batch).unwrap_err().to_string(),
        "origin credex/mid-yangtze/changsha: record index names seq 2, but the log holds 2 entries"
    );
    let mut batch = WriteBatch::new();
    batch.mark_invalid(WH, 0, "unknown list");
    assert_eq!(
        store.apply(batch).unwrap_err().to_string(),
        "origin credex/mid-yangtze/wuhan: invalid mark names seq 0, but the log holds 0 entries"
    );
    // The refused batch registered no origin.
    assert_eq!(store.origins().len(), 1);

    // An entry appended earlier in the same batch counts.
    let mut batch = WriteBatch::new();
    batch
        .mark_invalid(CS, 2, "category code is empty")
        .index_record(CS, "CS-1", 1, 2, &["uscc:A"])
        .append(CS, 2, leaf(CS, 2));
    store.apply(batch).unwrap();
    assert_eq!(
        store.record(CS, "CS-1").unwrap(),
        Some(RecordLocation { version: 1, seq: 2 })
    );
}

#[test]
fn invalid_entries_are_listed_with_their_reason() {
    let (_dir, store) = temp();
    append(&store, CS, 5);
    let mut batch = WriteBatch::new();
    batch
        .mark_invalid(CS, 4, "publication.ends_on: before starts_on")
        .mark_invalid(CS, 1, "subject.uscc: check character");
    store.apply(batch).unwrap();
    assert_eq!(
        store.invalid(CS, 1).unwrap().as_deref(),
        Some("subject.uscc: check character")
    );
    assert_eq!(store.invalid(CS, 2).unwrap(), None);
    assert_eq!(
        store.invalid_entries(CS, 0, 10).unwrap(),
        vec![
            (1, "subject.uscc: check character".to_owned()),
            (4, "publication.ends_on: before starts_on".to_owned())
        ]
    );
    assert_eq!(store.invalid_entries(CS, 2, 10).unwrap().len(), 1);
}

fn rejected(origin: &str, seq: u64, reason: &str) -> QuarantineRecord {
    QuarantineRecord {
        origin: origin.to_owned(),
        seq,
        reason: reason.to_owned(),
        detail: format!("{reason} at {seq}"),
        leaf: leaf(origin, seq),
        received_from: "hefei".to_owned(),
        received_at_ms: 1_760_000_000_000 + seq,
    }
}

#[test]
fn quarantine_keeps_every_rejected_entry_and_counts_reasons() {
    let (dir, store) = temp();
    let mut batch = WriteBatch::new();
    // Two different leaves sent for one seq are both kept.
    let mut other = rejected(WH, 5, "bad_signature");
    other.leaf.push(b'!');
    batch
        .quarantine(rejected(WH, 5, "bad_signature"))
        .quarantine(other)
        .quarantine(rejected("not/a/member", 0, "unknown_origin"));
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    let mut batch = WriteBatch::new();
    batch.quarantine(rejected(CS, 1, "bad_signature"));
    store.apply(batch).unwrap();

    assert_eq!(
        store.quarantine_counts().unwrap(),
        BTreeMap::from([
            ("bad_signature".to_owned(), 3),
            ("unknown_origin".to_owned(), 1)
        ])
    );
    let all = store.quarantined(None, None, 100).unwrap();
    let ids: Vec<_> = all
        .iter()
        .map(|q| (q.record.origin.as_str(), q.record.seq, q.arrival))
        .collect();
    // Grouped by origin (shorter names first, from the length prefix), then by seq and
    // arrival; arrival numbers continue across a reopen.
    assert_eq!(
        ids,
        vec![("not/a/member", 0, 2), (WH, 5, 0), (WH, 5, 1), (CS, 1, 3)]
    );
    assert_eq!(all[1].record, rejected(WH, 5, "bad_signature"));
    // Quarantining registers no origin.
    assert_eq!(store.origins(), vec![]);

    let page = store.quarantined(None, Some(&all[1]), 2).unwrap();
    assert_eq!(page, all[2..4].to_vec());
    let wuhan = store.quarantined(Some(WH), None, 100).unwrap();
    assert_eq!(wuhan, all[1..3].to_vec());
    assert_eq!(
        store.quarantined(Some(WH), Some(&all[1]), 100).unwrap(),
        all[2..3].to_vec()
    );
    assert_eq!(
        store.quarantined(Some("credex"), None, 100).unwrap(),
        vec![]
    );
}

#[test]
fn quarantine_keeps_a_leaf_once_per_seq_and_a_bounded_number_of_different_ones() {
    let (dir, store) = temp();
    // A peer sending the same bad entry on every reconnect: kept once, counted once.
    for _ in 0..3 {
        let mut batch = WriteBatch::new();
        batch
            .quarantine(rejected(WH, 7, "bad_signature"))
            .quarantine(rejected(WH, 7, "bad_signature"));
        store.apply(batch).unwrap();
    }
    let store = reopen(&dir, store);
    let mut batch = WriteBatch::new();
    batch.quarantine(rejected(WH, 7, "bad_signature"));
    store.apply(batch).unwrap();
    assert_eq!(store.quarantined(Some(WH), None, 100).unwrap().len(), 1);
    assert_eq!(
        store.quarantine_counts().unwrap(),
        BTreeMap::from([("bad_signature".to_owned(), 1)])
    );

    // Garbage made anew each time: at most QUARANTINE_PER_SEQ kept per seq, the rest counted.
    let extra = 5;
    for i in 1..QUARANTINE_PER_SEQ + extra {
        let mut garbage = rejected(WH, 7, "bad_signature");
        garbage.leaf.extend_from_slice(&i.to_be_bytes());
        let mut batch = WriteBatch::new();
        batch.quarantine(garbage);
        store.apply(batch).unwrap();
    }
    assert_eq!(
        store.quarantined(Some(WH), None, 100).unwrap().len(),
        QUARANTINE_PER_SEQ
    );
    assert_eq!(
        store.quarantine_counts().unwrap(),
        BTreeMap::from([
            ("bad_signature".to_owned(), QUARANTINE_PER_SEQ as u64),
            (QUARANTINE_FULL.to_owned(), extra as u64),
        ])
    );
    // Another seq has its own room.
    let mut batch = WriteBatch::new();
    batch.quarantine(rejected(WH, 8, "bad_signature"));
    store.apply(batch).unwrap();
    assert_eq!(
        store.quarantined(Some(WH), None, 100).unwrap().len(),
        QUARANTINE_PER_SEQ + 1
    );
}

#[test]
fn peer_state_is_replaced_per_peer() {
    let (dir, store) = temp();
    let mut batch = WriteBatch::new();
    batch
        .put_peer("wuhan", b"v1".to_vec())
        .put_peer("hefei", b"h".to_vec())
        .put_peer("wuhan", b"v2".to_vec());
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    assert_eq!(store.peer("wuhan").unwrap(), Some(b"v2".to_vec()));
    assert_eq!(store.peer("nanchang").unwrap(), None);
    assert_eq!(
        store.peers().unwrap(),
        vec![
            ("hefei".to_owned(), b"h".to_vec()),
            ("wuhan".to_owned(), b"v2".to_vec())
        ]
    );
}

#[test]
fn the_change_feed_numbers_changes_without_gaps() {
    let (dir, store) = temp();
    let mut batch = WriteBatch::new();
    batch.push_change("a").push_change("b");
    assert_eq!(store.apply(batch).unwrap().changes, 0..2);
    let store = reopen(&dir, store);
    assert_eq!(store.change_head(), 2);
    let mut batch = WriteBatch::new();
    batch.push_change("c");
    assert_eq!(store.apply(batch).unwrap().changes, 2..3);
    assert_eq!(store.apply(WriteBatch::new()).unwrap().changes, 3..3);
    assert_eq!(
        store.changes(1, 10).unwrap(),
        vec![(1, b"b".to_vec()), (2, b"c".to_vec())]
    );
    assert_eq!(store.changes(0, 1).unwrap(), vec![(0, b"a".to_vec())]);
    assert_eq!(store.changes(3, 10).unwrap(), vec![]);
}

#[test]
fn a_batch_of_view_changes_is_kept_compressed_and_reads_back_whole() {
    let (dir, store) = temp();
    // Changes of one batch repeat most of their bytes (origin, list, standing), as the view's do.
    let changes: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("{CS} record-{i:06} black in force from 2026-12-06").into_bytes())
        .collect();
    let raw: usize = changes.iter().map(|c| 4 + c.len()).sum();
    let mut batch = WriteBatch::new();
    for c in &changes {
        batch.push_change(c.clone());
    }
    assert_eq!(store.apply(batch).unwrap().changes, 0..1000);
    let store = reopen(&dir, store);
    assert_eq!(store.change_head(), 1000);
    let kept = store
        .db()
        .unwrap()
        .get(keys::u64_key(keys::CHANGE, 0))
        .unwrap()
        .unwrap()
        .len();
    assert!(kept * 4 < raw, "{kept} bytes kept for {raw} of changes");
    let read: Vec<Vec<u8>> = store
        .changes(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(read, changes);
    assert_eq!(
        store.changes(999, 10).unwrap(),
        vec![(999, changes[999].clone())]
    );
}

#[test]
fn origins_are_listed_by_name_and_keep_their_ids_across_reopen() {
    let (dir, store) = temp();
    append(&store, WH, 1);
    append(&store, CS, 2);
    let store = reopen(&dir, store);
    append(&store, "credex/mid-yangtze/hefei", 3);
    let store = reopen(&dir, store);
    let names: Vec<_> = store
        .origins()
        .into_iter()
        .map(|(n, s)| (n, s.size))
        .collect();
    assert_eq!(
        names,
        vec![
            (CS.to_owned(), 2),
            ("credex/mid-yangtze/hefei".to_owned(), 3),
            (WH.to_owned(), 1)
        ]
    );
    assert_eq!(store.leaves(WH, 0, 10).unwrap(), vec![leaf(WH, 0)]);
}

#[test]
fn overlong_key_components_are_refused() {
    let (_dir, store) = temp();
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let mut batch = WriteBatch::new();
    batch.append(&long, 0, b"l".to_vec());
    assert!(matches!(
        store.apply(batch),
        Err(StoreError::TooLong {
            what: "origin",
            len: 1025,
            ..
        })
    ));
    append(&store, CS, 1);
    let mut batch = WriteBatch::new();
    batch.index_record(CS, "r", 1, 0, &[long.as_str()]);
    assert!(matches!(
        store.apply(batch),
        Err(StoreError::TooLong {
            what: "subject key",
            ..
        })
    ));
    assert_eq!(store.subject(&long).unwrap(), vec![]);
}

#[test]
fn a_store_open_elsewhere_is_reported_locked() {
    let (dir, _store) = temp();
    let options = StoreOptions {
        lock_wait: std::time::Duration::from_millis(20),
        ..StoreOptions::default()
    };
    let err = Store::open_with(dir.path(), &options).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "store {} is in use: another process or Store holds its lock",
            dir.path().display()
        )
    );
}

#[test]
fn open_refuses_a_database_of_the_previous_layout() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Version 6 kept the view's indexes in sled; there is no migration.
        let db = sled::open(dir.path()).unwrap();
        db.insert([keys::FORMAT], b"credex-store/6".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "store format is \"credex-store/6\", this build reads \"credex-store/8\""
    );
}

#[test]
fn entries_listed_invalid_are_counted_once_each_and_the_count_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, WH, 3);
    let mut batch = WriteBatch::new();
    batch
        .mark_invalid(WH, 0, "bad_signature")
        .mark_invalid(WH, 1, "record WH-1: subject.uscc: bad")
        .mark_invalid(WH, 1, "record WH-1: subject.uscc: bad");
    store.apply(batch).unwrap();
    assert_eq!((store.invalid_count(WH), store.invalid_count(CS)), (2, 0));
    // Marked again by a later batch (the indexer redoing a chunk): still one entry.
    let mut batch = WriteBatch::new();
    batch.mark_invalid(WH, 1, "record WH-1: subject.uscc: bad");
    store.apply(batch).unwrap();
    assert_eq!(store.invalid_count(WH), 2);
    // A batch refused whole counts nothing.
    let mut batch = WriteBatch::new();
    batch
        .mark_invalid(WH, 2, "x")
        .mark_invalid(WH, 9, "past the log");
    assert!(store.apply(batch).is_err());
    assert_eq!(store.invalid_count(WH), 2);
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.invalid_count(WH), 2);
    drop(store);
    {
        // A store of layout 7 kept no count: it is counted from the marks at open.
        let db = sled::open(dir.path()).unwrap();
        db.remove(keys::named(keys::COUNTER, &keys::invalid_counter(WH)))
            .unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.invalid_count(WH), 2);
    assert_eq!(store.invalid_entries(WH, 0, 10).unwrap().len(), 2);
}

#[test]
fn a_database_of_layout_7_opens_as_8_with_its_records_uncounted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        append(&store, CS, 1);
        let mut batch = WriteBatch::new();
        batch.index_record(CS, "CS-1", 1, 0, &["uscc:A"]);
        store.apply(batch).unwrap();
        store.flush().unwrap();
    }
    {
        // Layout 7 wrote the same record values, without the standing, and no counts.
        let db = sled::open(dir.path()).unwrap();
        db.insert([keys::FORMAT], b"credex-store/7".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.standing(CS, "CS-1").unwrap(),
        Some(Standing::Uncounted)
    );
    assert_eq!(store.view_counts(), ViewCounts::default());
    drop(store);
    let db = sled::open(dir.path()).unwrap();
    assert_eq!(
        db.get([keys::FORMAT]).unwrap().as_deref(),
        Some(&b"credex-store/8"[..])
    );
}

/// The data file of origin id `id` in the store at `dir`.
fn data_file(dir: &TempDir, id: u32) -> std::path::PathBuf {
    crate::leaves::file_path(&crate::leaves::dir(dir.path()), id)
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Total bytes of `origin`'s first `size` leaves, as the test helper makes them.
fn leaf_bytes(origin: &str, size: u64) -> u64 {
    (0..size).map(|seq| leaf(origin, seq).len() as u64).sum()
}

/// The sled tree under the store at `dir`, opened as the store opens it.
fn raw_db(dir: &TempDir) -> sled::Db {
    crate::store::open_db(dir.path(), &StoreOptions::default()).unwrap()
}

/// The leaves in a data file, decoded as its format is written down (`leaves.rs`): zstd frames
/// one after another, each of `count u32 ‖ count lengths u32 ‖ the leaves`, big-endian. Fails
/// on anything else in the file, a torn frame included.
fn file_leaves(path: &std::path::Path) -> Vec<Vec<u8>> {
    let raw = zstd::stream::decode_all(&std::fs::read(path).unwrap()[..]).unwrap();
    let u32_at = |at: usize| u32::from_be_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let count = u32_at(at);
        let lens: Vec<usize> = (0..count).map(|i| u32_at(at + 4 + 4 * i)).collect();
        at += 4 + 4 * count;
        for len in lens {
            out.push(raw[at..at + len].to_vec());
            at += len;
        }
    }
    out
}

/// Writes `leaves` as one more block at the end of origin `id`'s data file and points the
/// index entry of the block starting at `first` at it: what a writer that put other bytes in
/// the file than it hashed would leave.
fn replace_block(dir: &TempDir, id: u32, first: u64, leaves: &[Vec<u8>]) {
    let path = data_file(dir, id);
    let at = file_len(&path);
    let mut batch = sled::Batch::default();
    let data = crate::leaves::write_blocks(&mut batch, id, first, at, leaves, &[], &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(data);
    std::fs::write(&path, bytes).unwrap();
    let db = raw_db(dir);
    db.apply_batch(batch).unwrap();
    db.flush().unwrap();
}

#[test]
fn leaves_live_in_compressed_blocks_in_one_file_per_origin() {
    let (dir, store) = temp();
    append(&store, CS, 3);
    append(&store, WH, 2);
    append(&store, CS, 9000);
    let want: Vec<_> = (0..9003).map(|seq| leaf(CS, seq)).collect();
    assert_eq!(file_leaves(&data_file(&dir, 0)), want);
    assert_eq!(
        file_leaves(&data_file(&dir, 1)),
        vec![leaf(WH, 0), leaf(WH, 1)]
    );
    // Blocks of similar leaves are smaller than the leaves.
    assert!(
        file_len(&data_file(&dir, 0)) < leaf_bytes(CS, 9003) / 2,
        "{} bytes for {} of leaves",
        file_len(&data_file(&dir, 0)),
        leaf_bytes(CS, 9003)
    );
    // The second batch's 9,000 leaves (about 300 KiB) make several blocks, a block never spans
    // two batches, and every leaf reads back from either side of a boundary.
    let firsts: Vec<u64> = store
        .db()
        .unwrap()
        .scan_prefix(keys::id(keys::LEAF_BLOCK, 0))
        .map(|item| keys::trailing_u64(&item.unwrap().0).unwrap())
        .collect();
    assert!(firsts.len() >= 5, "blocks start at {firsts:?}");
    assert_eq!(firsts[..2], [0, 3]);
    for &first in &firsts[1..] {
        for start in [first - 1, first, first + 1] {
            assert_eq!(
                store.leaves(CS, start, 5).unwrap(),
                want[start as usize..start as usize + 5],
                "from {start}"
            );
            assert_eq!(
                store.leaf(CS, start).unwrap(),
                Some(want[start as usize].clone())
            );
        }
    }
    // No leaf bytes are in sled: its values are metadata, hashes and offsets.
    for item in store.db().unwrap().iter() {
        let (_, v) = item.unwrap();
        assert!(
            !v.windows(CS.len()).any(|w| w == CS.as_bytes()),
            "a leaf in sled: {v:?}"
        );
    }
}

/// Every block of `origin` in `store` from `start` below `end`, as `packed_leaves` serves them.
fn served_blocks(store: &Store, origin: &str, start: u64, end: u64) -> Vec<WireBlock> {
    let mut blocks = Vec::new();
    let mut seq = start;
    while seq < end {
        match store
            .packed_leaves(origin, seq, end, 100_000, 100_000)
            .unwrap()
        {
            PackedRun::Blocks(run) => {
                seq += run.iter().map(|b| u64::from(b.count)).sum::<u64>();
                blocks.extend(run);
            }
            PackedRun::Loose { upto } => panic!("leaves {seq}..{upto} are not a whole block"),
        }
    }
    blocks
}

#[test]
fn blocks_served_packed_are_stored_as_they_came() {
    let (_a_dir, a) = temp();
    append(&a, CS, 3);
    append(&a, CS, 9000);
    append(&a, CS, 1);
    let blocks = served_blocks(&a, CS, 0, 9004);
    assert!(blocks.len() >= 5, "{} blocks", blocks.len());
    // A peer unpacks them, checks the leaves (here: against the source), and appends them
    // packed in two batches, cut where a checkpoint might fall: between blocks.
    let (b_dir, b) = temp();
    let mut seq = 0;
    for part in [&blocks[..2], &blocks[2..]] {
        let mut batch = WriteBatch::new();
        for wire in part {
            let block = PackedBlock::unpack(wire.clone(), 1 << 20).unwrap();
            let leaves: Vec<Vec<u8>> = block.leaves().map(<[u8]>::to_vec).collect();
            assert_eq!(leaves, a.leaves(CS, seq, leaves.len()).unwrap());
            let n = u64::from(block.count());
            batch.append_packed(CS, seq, block);
            seq += n;
        }
        b.apply(batch).unwrap();
    }
    let b = reopen(&b_dir, b);
    assert_eq!(b.origin_state(CS).size, 9004);
    assert_eq!(b.origin_state(CS).root, a.origin_state(CS).root);
    assert_eq!(
        b.leaves(CS, 0, 10_000).unwrap(),
        a.leaves(CS, 0, 10_000).unwrap()
    );
    // Nothing was compressed again: the receiver's file is the sender's blocks, byte for byte.
    let sent: Vec<u8> = blocks.iter().flat_map(|w| w.zstd.clone()).collect();
    assert_eq!(std::fs::read(data_file(&b_dir, 0)).unwrap(), sent);
    assert_eq!(served_blocks(&b, CS, 0, 9004), blocks);
}

#[test]
fn leaves_inside_a_block_or_past_the_end_asked_are_served_loose() {
    let (_dir, store) = temp();
    append(&store, CS, 3);
    append(&store, CS, 4);
    assert_eq!(
        store.packed_leaves(CS, 1, 7, 100, 100_000).unwrap(),
        PackedRun::Loose { upto: 3 }
    );
    assert_eq!(
        store.packed_leaves(CS, 3, 5, 100, 100_000).unwrap(),
        PackedRun::Loose { upto: 5 }
    );
    // At least one block, however small the byte budget.
    let PackedRun::Blocks(one) = store.packed_leaves(CS, 0, 7, 100, 1).unwrap() else {
        panic!("a block at 0")
    };
    assert_eq!(one.iter().map(|b| b.count).collect::<Vec<_>>(), [3]);
    // Blocks up to the entries asked for; a first block of more goes loose.
    let PackedRun::Blocks(first) = store.packed_leaves(CS, 0, 7, 6, 100_000).unwrap() else {
        panic!("a block at 0")
    };
    assert_eq!(first.iter().map(|b| b.count).collect::<Vec<_>>(), [3]);
    assert_eq!(
        store.packed_leaves(CS, 3, 7, 3, 100_000).unwrap(),
        PackedRun::Loose { upto: 7 }
    );
    assert!(matches!(
        store.packed_leaves(CS, 3, 8, 100, 100_000),
        Err(StoreError::UnknownSeq { .. })
    ));
}

#[test]
fn a_packed_block_is_refused_unless_it_holds_what_it_says() {
    let (_dir, store) = temp();
    append(&store, CS, 5);
    let PackedRun::Blocks(mut blocks) = store.packed_leaves(CS, 0, 5, 100, 100_000).unwrap() else {
        panic!("a block at 0")
    };
    let wire = blocks.remove(0);
    assert_eq!(
        PackedBlock::unpack(wire.clone(), 1 << 20).unwrap().count(),
        5
    );
    let refused = |wire: WireBlock, max: usize| PackedBlock::unpack(wire, max).unwrap_err();
    assert!(refused(wire.clone(), wire.raw_len as usize - 1).contains("over the limit"));
    let more = WireBlock {
        raw_len: wire.raw_len + 1,
        ..wire.clone()
    };
    assert!(refused(more, 1 << 20).contains("another length"));
    let fewer = WireBlock {
        raw_len: wire.raw_len - 1,
        ..wire.clone()
    };
    assert!(refused(fewer, 1 << 20).contains("does not decompress"));
    let count = WireBlock {
        count: 4,
        ..wire.clone()
    };
    assert!(refused(count, 1 << 20).contains("another number of leaves"));
    let none = WireBlock {
        count: 0,
        ..wire.clone()
    };
    assert!(refused(none, 1 << 20).contains("no leaves"));
    // A count the length cannot hold is refused before decompressing.
    let huge = WireBlock {
        count: u32::MAX,
        ..wire.clone()
    };
    assert!(refused(huge, 1 << 20).contains("cannot hold"));
    let garbage = WireBlock {
        zstd: b"not zstd".to_vec(),
        ..wire
    };
    assert!(refused(garbage, 1 << 20).contains("does not decompress"));
}

#[test]
fn a_torn_tail_past_the_committed_log_is_cut_off_at_open() {
    let (dir, store) = temp();
    append(&store, CS, 3);
    drop(store);
    // What a batch leaves when its leaves were written and its sled write never was.
    let path = data_file(&dir, 0);
    let mut torn = std::fs::read(&path).unwrap();
    // Half of a block, cut off where a kill could leave it.
    let mut batch = sled::Batch::default();
    let block =
        crate::leaves::write_blocks(&mut batch, 0, 3, 0, &[leaf(CS, 3)], &[], &path).unwrap();
    torn.extend_from_slice(&block[..block.len() / 2]);
    torn.extend_from_slice(b"half of a leaf that never committed");
    std::fs::write(&path, torn).unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        file_leaves(&path),
        (0..3).map(|seq| leaf(CS, seq)).collect::<Vec<_>>()
    );
    append(&store, CS, 2);
    let store = reopen(&dir, store);
    let want: Vec<_> = (0..5).map(|seq| leaf(CS, seq)).collect();
    assert_eq!(store.leaves(CS, 0, 10).unwrap(), want);
    assert_eq!(store.origin_state(CS).root, memory_tree(CS, 5).root());
}

#[test]
fn a_leaf_file_shorter_than_the_committed_log_is_corruption() {
    let (dir, store) = temp();
    append(&store, CS, 3);
    drop(store);
    let path = data_file(&dir, 0);
    let need = file_len(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(need - 1)
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "store is corrupt: origin {CS}: leaf file {} holds {} bytes, its 3 entries need {need}",
            path.display(),
            need - 1
        )
    );

    std::fs::remove_file(&path).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "store is corrupt: origin {CS}: leaf file {} is missing, the log holds 3 entries",
            path.display()
        )
    );
}

#[test]
fn open_detects_a_leaf_of_the_last_chunk_that_differs_from_the_root() {
    let (dir, store) = temp();
    append(&store, CS, 3);
    drop(store);
    let mut other = leaf(CS, 2);
    *other.last_mut().unwrap() ^= 1;
    replace_block(&dir, 0, 0, &[leaf(CS, 0), leaf(CS, 1), other]);
    let err = Store::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "store is corrupt: origin {CS}: the tree hashes give root \
             dbcENof/naClgovkzXcxPCO4j4hXl7TqrEWCNprkxTE= at size 3, metadata says \
             OLlM1CAiZTweSCvdWf/+aIYvs/TXOjgGUYgk9LmDYms="
        )
    );
}

#[test]
fn a_tampered_leaf_reads_back_altered_with_every_other_leaf_and_kept_hash_as_committed() {
    use tlog_tiles::tlog::{split_stored_hash_index, stored_hash_count};
    let (dir, store) = temp();
    // Batches of several blocks and of one, and another origin's log beside.
    append(&store, CS, 3);
    append(&store, WH, 2);
    append(&store, CS, 9000);
    append(&store, CS, 5);
    let size = 9008;
    let mut want: Vec<_> = (0..size).map(|seq| leaf(CS, seq)).collect();
    let states = store.origins();
    // The block of leaf 6000 is in the cache when it is changed.
    assert_eq!(store.leaf(CS, 6000).unwrap(), Some(want[6000].clone()));
    // Later in the log first, then earlier: the second rewrite copies blocks that the first
    // already moved to the end of the file. One leaf keeps its length, one grows.
    let mut digit = leaf(CS, 6000);
    *digit.last_mut().unwrap() = b'9';
    let changed = [
        (6000, digit),
        (1000, [leaf(CS, 1000), b", and then some".to_vec()].concat()),
    ];
    for (seq, other) in &changed {
        assert_ne!(want[*seq as usize], *other);
        store.tamper_leaf(CS, *seq, other).unwrap();
        want[*seq as usize] = other.clone();
        assert_eq!(store.leaf(CS, *seq).unwrap(), Some(other.clone()));
    }
    let err = store.tamper_leaf(CS, size, b"past the end").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("origin {CS}: tampering names seq {size}, but the log holds {size} entries")
    );

    let store = reopen(&dir, store);
    assert_eq!(store.origins(), states);
    assert_eq!(store.leaves(CS, 0, usize::MAX).unwrap(), want);
    assert_eq!(
        store.leaves(WH, 0, usize::MAX).unwrap(),
        vec![leaf(WH, 0), leaf(WH, 1)]
    );
    // The kept tree hashes (of subtrees of 256 leaves and more) are still those of the leaves
    // as appended; a lower one is computed from the leaves served now, so it differs exactly
    // where its subtree holds a changed leaf.
    let all: Vec<u64> = (0..stored_hash_count(size)).collect();
    let held = store.hash_reader(CS).read_hashes(&all).unwrap();
    let appended = memory_tree(CS, size).read_hashes(&all).unwrap();
    for (i, (h, a)) in all.iter().zip(held.iter().zip(&appended)) {
        let (level, n) = split_stored_hash_index(*i);
        let over_changed = level < 8 && changed.iter().any(|(seq, _)| seq >> level == n);
        assert_eq!(h == a, !over_changed, "hash {i} (level {level}, node {n})");
    }
    assert_eq!(store.origin_state(CS).root, memory_tree(CS, size).root());
    // The log goes on from its committed end.
    append(&store, CS, 4);
    let store = reopen(&dir, store);
    want.extend((size..size + 4).map(|seq| leaf(CS, seq)));
    assert_eq!(store.leaves(CS, 0, usize::MAX).unwrap(), want);
    assert_eq!(
        store.origin_state(CS).root,
        memory_tree(CS, size + 4).root()
    );
    // Served packed, the moved blocks (no longer end to end in the file) give the same leaves.
    let served: Vec<Vec<u8>> = served_blocks(&store, CS, 0, size + 4)
        .into_iter()
        .flat_map(|wire| {
            let block = PackedBlock::unpack(wire, 1 << 20).unwrap();
            block.leaves().map(<[u8]>::to_vec).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(served, want);
}

#[test]
fn open_detects_a_damaged_leaf_block() {
    let (dir, store) = temp();
    append(&store, CS, 30);
    drop(store);
    let path = data_file(&dir, 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    // Either zstd refuses the frame, or it decodes to other bytes than were hashed.
    let want = [
        format!("store is corrupt: origin {CS}: the leaf block of leaves 0..30 "),
        format!(
            "store is corrupt: origin {CS}: leaf 29 in the file does not match its stored hash"
        ),
    ];
    assert!(
        want.iter().any(|w| err.to_string().starts_with(w.as_str())),
        "{err}"
    );
}

#[test]
fn open_detects_a_log_that_disagrees_with_its_metadata() {
    let (dir, store) = temp();
    append(&store, CS, 3);
    drop(store);
    // A block holding seq 3: sled says the log is longer than its metadata does.
    replace_block(&dir, 0, 3, &[leaf(CS, 3)]);
    let err = Store::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "store is corrupt: origin credex/mid-yangtze/changsha: metadata says 3 entries, the log holds more"
    );
}

#[test]
fn a_data_file_no_committed_origin_owns_is_not_inherited() {
    let (dir, store) = temp();
    append(&store, CS, 1);
    drop(store);
    // Left by a batch that registered a second origin (id 1) and never committed.
    std::fs::write(data_file(&dir, 1), b"leaves of an origin that never was").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!data_file(&dir, 1).exists());
    append(&store, WH, 2);
    assert_eq!(
        store.leaves(WH, 0, 10).unwrap(),
        vec![leaf(WH, 0), leaf(WH, 1)]
    );
    assert_eq!(
        file_leaves(&data_file(&dir, 1)),
        vec![leaf(WH, 0), leaf(WH, 1)]
    );
}

#[test]
fn ranges_longer_than_one_read_come_back_whole() {
    let (_dir, store) = temp();
    // Ten 1 MiB leaves, each a block of its own, and small ones between them.
    let big = |seq: u64| vec![seq as u8; 1 << 20];
    let mut want = Vec::new();
    let mut batch = WriteBatch::new();
    for seq in 0..20 {
        let l = if seq % 2 == 0 {
            big(seq)
        } else {
            leaf(CS, seq)
        };
        batch.append(CS, seq, l.clone());
        want.push(l);
    }
    store.apply(batch).unwrap();
    assert_eq!(store.leaves(CS, 0, usize::MAX).unwrap(), want);
    assert_eq!(store.leaves(CS, 5, 7).unwrap(), want[5..12]);
    assert_eq!(store.leaf(CS, 18).unwrap(), Some(want[18].clone()));
}

#[test]
fn open_detects_a_tampered_tree_hash() {
    // 512 leaves: two chunks, whose kept hashes are the two chunks' and the root's (chunk-tree
    // indexes 0, 1 and 2), on page 0 of origin id 0.
    let tamper = |slot: usize| {
        let (dir, store) = temp();
        append(&store, CS, 512);
        drop(store);
        {
            let db = raw_db(&dir);
            let key = crate::hashes::page_key(0, 0);
            let mut page = db.get(key).unwrap().unwrap().to_vec();
            assert_eq!(page.len(), 3 * 32);
            page[slot * 32..(slot + 1) * 32].fill(0);
            db.insert(key, page).unwrap();
            db.flush().unwrap();
        }
        Store::open(dir.path()).unwrap_err().to_string()
    };
    // The last chunk's hash no longer matches its leaves.
    let err = tamper(1);
    assert!(
        err.starts_with(
            "store is corrupt: origin credex/mid-yangtze/changsha: the leaves of chunk 1 \
             (leaves 256..512) in the file do not match its kept tree hash"
        ),
        "{err}"
    );
    // The root over both chunks is no longer the recorded one.
    let err = tamper(2);
    assert!(
        err.starts_with(
            "store is corrupt: origin credex/mid-yangtze/changsha: the tree hashes give root"
        ),
        "{err}"
    );
}

#[test]
fn readers_never_see_an_index_ahead_of_the_origin_state() {
    let (_dir, store) = temp();
    append(&store, CS, 1);
    let mut batch = WriteBatch::new();
    batch.index_record(CS, "r", 1, 0, &["s"]);
    store.apply(batch).unwrap();
    let batches = 200u64;
    let reader = {
        let store = store.reader();
        std::thread::spawn(move || {
            let mut checks = 0u64;
            loop {
                let loc = store.record(CS, "r").unwrap().expect("indexed");
                let state = store.origin_state(CS);
                assert!(
                    loc.seq < state.size,
                    "index at {loc:?}, size {}",
                    state.size
                );
                // The leaf it names is already readable from the file, whole.
                assert_eq!(store.leaf(CS, loc.seq).unwrap(), Some(leaf(CS, loc.seq)));
                let head = store.change_head();
                if head > 0 {
                    assert_eq!(store.changes(head - 1, 1).unwrap().len(), 1);
                }
                checks += 1;
                if loc.version == batches + 1 {
                    return checks;
                }
            }
        })
    };
    for v in 2..=batches + 1 {
        let seq = store.origin_state(CS).size;
        let mut batch = WriteBatch::new();
        batch
            .append(CS, seq, leaf(CS, seq))
            .index_record(CS, "r", v, seq, &["s"])
            .push_change(v.to_be_bytes().to_vec());
        store.apply(batch).unwrap();
    }
    assert!(reader.join().unwrap() > 0);
}

/// One operation of the model-based property test.
#[derive(Debug, Clone)]
enum ModelOp {
    Append {
        origin: usize,
        count: u64,
    },
    Index {
        origin: usize,
        record: u8,
        version: u64,
        subjects: Vec<u8>,
    },
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        3 => (0..3usize, 0..40u64).prop_map(|(origin, count)| ModelOp::Append { origin, count }),
        1 => (0..3usize, 0..4u8, 1..5u64, prop::collection::vec(0..4u8, 0..3)).prop_map(
            |(origin, record, version, subjects)| ModelOp::Index { origin, record, version, subjects }
        ),
    ]
}

const ORIGINS: [&str; 3] = [CS, WH, "credex/mid-yangtze/nanchang"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random batch sequences keep every root equal to the recomputed one and the indexes
    /// equal to a model's, before and after a reopen.
    #[test]
    fn random_batches_keep_roots_and_indexes_right(
        batches in prop::collection::vec(prop::collection::vec(model_op(), 0..6), 1..8)
    ) {
        let (dir, mut store) = temp();
        let mut sizes = [0u64; 3];
        // (origin, record) → (version, seq, subjects) of the highest version.
        let mut records: HashMap<(usize, u8), (u64, u64, BTreeSet<u8>)> = HashMap::new();
        for (i, ops) in batches.iter().enumerate() {
            let mut batch = WriteBatch::new();
            let mut next = sizes;
            let mut model = records.clone();
            for op in ops {
                match op {
                    ModelOp::Append { origin, count } => {
                        for _ in 0..*count {
                            batch.append(ORIGINS[*origin], next[*origin], leaf(ORIGINS[*origin], next[*origin]));
                            next[*origin] += 1;
                        }
                    }
                    ModelOp::Index { origin, record, version, subjects } => {
                        // Index the newest entry, or an entry that does not exist yet.
                        let seq = next[*origin].saturating_sub(1);
                        let keys: Vec<String> = subjects.iter().map(|s| format!("s{s}")).collect();
                        batch.index_record(ORIGINS[*origin], &format!("r{record}"), *version, seq, &keys);
                        let key = (*origin, *record);
                        if model.get(&key).is_none_or(|(v, _, _)| v < version) {
                            model.insert(key, (*version, seq, subjects.iter().copied().collect()));
                        }
                    }
                }
            }
            let refused = ops.iter().any(|op| matches!(op, ModelOp::Index { origin, .. } if next[*origin] == 0));
            let result = store.apply(batch);
            if refused {
                let unknown_seq = matches!(result, Err(StoreError::UnknownSeq { .. }));
                prop_assert!(unknown_seq, "{result:?}");
            } else {
                prop_assert!(result.is_ok(), "{result:?}");
                sizes = next;
                records = model;
            }
            if i % 3 == 2 {
                store = reopen(&dir, store);
            }
            for (o, origin) in ORIGINS.iter().enumerate() {
                let state = store.origin_state(origin);
                prop_assert_eq!(state.size, sizes[o]);
                prop_assert_eq!(state.root, memory_tree(origin, sizes[o]).root());
                prop_assert_eq!(merkle::root(state.size, &store.hash_reader(origin)).unwrap(), state.root);
            }
            for ((o, r), (version, seq, _)) in &records {
                prop_assert_eq!(
                    store.record(ORIGINS[*o], &format!("r{r}")).unwrap(),
                    Some(RecordLocation { version: *version, seq: *seq })
                );
            }
            for s in 0..4u8 {
                let mut want: Vec<(String, String)> = records
                    .iter()
                    .filter(|(_, (_, _, subjects))| subjects.contains(&s))
                    .map(|((o, r), _)| (ORIGINS[*o].to_owned(), format!("r{r}")))
                    .collect();
                want.sort();
                let mut got: Vec<(String, String)> = store
                    .subject(&format!("s{s}"))
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.origin, h.record_id))
                    .collect();
                got.sort();
                prop_assert_eq!(got, want);
            }
        }
    }
}

#[test]
fn access_log_is_append_only_numbered_and_paged_across_reopen() {
    let (dir, store) = temp();
    let access = |n: i64| AccessRecord {
        at_ms: 1_700_000_000_000 + n,
        who: "spiffe://mid-yangtze/changsha/enforcement".into(),
        rpc: "View.Lookup".into(),
        subject: format!("43010219900101{n:04}"),
        purpose: format!("执行案件 ({n})"),
    };
    let mut batch = WriteBatch::new();
    batch.log_access(access(0)).log_access(access(1));
    store.apply(batch).unwrap();
    let store = reopen(&dir, store);
    let mut batch = WriteBatch::new();
    batch.log_access(access(2));
    store.apply(batch).unwrap();

    let all = store.accesses(0, 10).unwrap();
    assert_eq!(
        all,
        vec![(0, access(0)), (1, access(1)), (2, access(2))],
        "numbered in the order written, on after a reopen"
    );
    assert_eq!(store.accesses(1, 1).unwrap(), vec![(1, access(1))]);
    assert_eq!(store.accesses(3, 10).unwrap(), vec![]);
}

/// A store whose volume must keep `min_free` bytes free.
fn open_with_margin(dir: &TempDir, min_free: u64) -> Store {
    let options = StoreOptions {
        min_free,
        ..StoreOptions::default()
    };
    Store::open_with(dir.path(), &options).expect("open store")
}

#[test]
fn a_write_below_the_free_space_margin_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_margin(&dir, 0);
    append(&store, CS, 2);
    store.flush().unwrap();
    let file_before = file_len(&data_file(&dir, 0));
    let free = crate::space::free_bytes(dir.path()).unwrap();
    let sled_keys = |store: &Store| store.db().unwrap().iter().keys().count();
    let keys_before = sled_keys(&store);
    let store = {
        drop(store);
        // A margin no volume has: every write is refused.
        open_with_margin(&dir, u64::MAX)
    };
    let batch = || {
        let mut batch = WriteBatch::new();
        batch.append(CS, 2, leaf(CS, 2)).append(WH, 0, leaf(WH, 0));
        batch.put_peer("wuhan", b"state".to_vec());
        batch
    };
    match store.apply(batch()) {
        Err(e @ StoreError::DiskFull { .. }) => {
            assert!(e.is_disk_full());
            let StoreError::DiskFull {
                path,
                free: reported,
                needed,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(path, dir.path());
            assert_eq!(*needed, u64::MAX);
            // Other processes write to the same volume meanwhile: near, not equal.
            assert!(reported.abs_diff(free) < 1 << 30, "{reported} vs {free}");
            assert!(
                e.to_string()
                    .starts_with(&format!("disk full: {} has ", dir.path().display()))
            );
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
    // Nothing of the batch anywhere: not in sled, not in a leaf file, not in the tables.
    assert_eq!(sled_keys(&store), keys_before);
    assert_eq!(store.origin_state(CS).size, 2);
    assert_eq!(store.origin_state(WH), OriginState::EMPTY);
    assert_eq!(file_len(&data_file(&dir, 0)), file_before);
    assert!(!data_file(&dir, 1).exists());
    assert_eq!(store.peer("wuhan").unwrap(), None);
    let space = store.space().unwrap();
    assert!(space.full() && space.min_free == u64::MAX && space.failed.is_none());
    // Reads go on.
    assert_eq!(store.leaves(CS, 0, 10).unwrap().len(), 2);

    // With the margin lowered the same batch goes through.
    drop(store);
    let store = open_with_margin(&dir, 1 << 20);
    assert!(!store.space().unwrap().full());
    store.apply(batch()).expect("apply above the margin");
    assert_eq!(store.origin_state(CS).size, 3);
    assert_eq!(store.leaves(WH, 0, 10).unwrap(), vec![leaf(WH, 0)]);
    assert_eq!(store.peer("wuhan").unwrap(), Some(b"state".to_vec()));
}

#[test]
fn a_failed_handle_is_reopened_in_place_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_margin(&dir, 0);
    append(&store, CS, 3);
    store.flush().unwrap();
    // A reader, as the node hands to everything but its writer: it must see the new handle
    // too.
    let reader = store.reader();
    let before = reader.origin_state(CS);
    // As after a write that met ENOSPC: the leaf file has a torn tail past the committed end
    // and sled's handle is failed.
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data_file(&dir, 0))
            .unwrap();
        file.write_all(b"torn tail of a batch sled never took")
            .unwrap();
    }
    store.mark_failed("write: No space left on device".to_owned());
    let space = reader.space().unwrap();
    assert_eq!(
        space.failed.as_deref(),
        Some("write: No space left on device")
    );
    // Reads are answered meanwhile, from the old handle.
    assert_eq!(reader.leaves(CS, 0, 10).unwrap().len(), 3);
    assert_eq!(reader.reopens(), 0);

    append(&store, CS, 2);
    assert_eq!(reader.reopens(), 1);
    assert_eq!(reader.failure(), None);
    assert_eq!(reader.space().unwrap().failed, None);
    // The reopen cut the torn tail before the new leaves went in after the committed end.
    let file = std::fs::read(data_file(&dir, 0)).unwrap();
    assert!(
        !file.windows(9).any(|w| w == b"torn tail"),
        "the torn tail is gone from the file"
    );
    assert_eq!(
        reader.leaves(CS, 0, 10).unwrap(),
        (0..5).map(|seq| leaf(CS, seq)).collect::<Vec<_>>()
    );
    let state = reader.origin_state(CS);
    assert_eq!(state.size, 5);
    assert_eq!(state.root, memory_tree(CS, 5).root());
    assert_ne!(state.root, before.root);
    assert_eq!(
        reader.leaves(CS, 0, 10).unwrap(),
        (0..5).map(|seq| leaf(CS, seq)).collect::<Vec<_>>()
    );
    store.flush().unwrap();
    drop((store, reader));
    let store = open_with_margin(&dir, 0);
    assert_eq!(store.origin_state(CS).size, 5);
}

#[test]
fn the_chunk_cache_keeps_the_longest_prefix_of_each_chunk() {
    use crate::hashes::ChunkCache;
    let cache = ChunkCache::default();
    let prefix = |n: usize| Arc::new(vec![Hash([n as u8; 32]); n]);
    let cached = |id, chunk, need| cache.get(id, chunk, need).map(|h| h.len());
    cache.put(0, 1, prefix(5));
    // A shorter prefix reported later (an apply that committed before a reader hashed more)
    // does not replace it; a longer one does.
    cache.put(0, 1, prefix(3));
    assert_eq!(cached(0, 1, 4), Some(5));
    cache.put(0, 1, prefix(7));
    assert_eq!(cached(0, 1, 7), Some(7));
    assert_eq!(cached(0, 1, 8), None);
    assert_eq!(cached(1, 1, 1), None);
    assert_eq!(cached(0, 2, 0), None);
}

/// A store whose view index writes a run every `memory` bytes of index writes.
fn open_with_index_memory(dir: &std::path::Path, memory: usize) -> Store {
    let options = StoreOptions {
        index_memory: memory,
        ..StoreOptions::default()
    };
    Store::open_with(dir, &options).expect("open store")
}

/// Everything the view index answers about records `R0..R{records}` and subjects `s0..s5`.
fn index_answers(store: &Store, records: u8) -> String {
    let mut out = String::new();
    for n in 0..records {
        let id = format!("R{n}");
        out += &format!(
            "{id}: {:?} {:?} {:?}\n",
            store.record(CS, &id).unwrap(),
            store.versions(CS, &id).unwrap(),
            store.standing(CS, &id).unwrap()
        );
    }
    out += &format!("counts: {:?}\n", store.view_counts());
    for s in 0..6 {
        out += &format!("s{s}: {:?}\n", store.subject(&format!("s{s}")).unwrap());
    }
    out += &format!("due: {:?}\n", store.due(20270605, 1000).unwrap());
    out += &format!("due 3: {:?}\n", store.due(20270605, 3).unwrap());
    out += &format!("records: {:?}\n", store.records(CS, None, 1000).unwrap());
    out += &format!("page: {:?}\n", store.records(CS, Some("R1"), 5).unwrap());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The view index answers the same whether its writes are still in memory or were written
    /// as runs and merged (a store whose memtable holds a few hundred bytes), and across a
    /// reopen, which replays the journal the runs do not cover: the view's counts too, whose
    /// per-subject counts are read back from the runs.
    #[test]
    fn the_view_index_reads_the_same_from_runs_as_from_memory(
        batches in prop::collection::vec(
            prop::collection::vec((0u8..30, 1u64..4, 0u8..6, 0u8..8, any::<bool>()), 1..20),
            1..20,
        ),
        reopen_at in 0usize..20,
    ) {
        let (mem_dir, memory) = temp();
        let runs_dir = tempfile::tempdir().unwrap();
        let mut runs = open_with_index_memory(runs_dir.path(), 512);
        for (i, ops) in batches.iter().enumerate() {
            for store in [&memory, &runs] {
                append(store, CS, ops.len() as u64);
                let size = store.origin_state(CS).size;
                let mut batch = WriteBatch::new();
                for (j, &(n, version, s, day, unschedule)) in ops.iter().enumerate() {
                    let id = format!("R{n}");
                    let seq = size - ops.len() as u64 + j as u64;
                    batch.index_record(CS, &id, version, seq, &[format!("s{s}").as_str()]);
                    let standing = match day % 3 {
                        0 => Standing::InForce { list: s % 2, subject: [s; SUBJECT_TAG_LEN] },
                        1 => Standing::Excluded,
                        _ => Standing::Uncounted,
                    };
                    batch.set_standing(CS, &id, standing);
                    if unschedule {
                        batch.unschedule(CS, &id, 20270600 + u32::from(day));
                    } else {
                        batch.schedule(CS, &id, 20270600 + u32::from(day));
                    }
                }
                store.apply(batch).unwrap();
            }
            if i == reopen_at {
                runs = {
                    drop(runs);
                    open_with_index_memory(runs_dir.path(), 512)
                };
            }
        }
        prop_assert_eq!(index_answers(&runs, 30), index_answers(&memory, 30));
        let runs = {
            drop(runs);
            open_with_index_memory(runs_dir.path(), 512)
        };
        prop_assert_eq!(index_answers(&runs, 30), index_answers(&memory, 30));
        drop(mem_dir);
    }
}

#[test]
fn a_merge_whose_output_name_is_taken_leaves_that_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_index_memory(dir.path(), 256);
    for round in 0..4u64 {
        append(&store, CS, 4);
        let mut batch = WriteBatch::new();
        for seq in round * 4..round * 4 + 4 {
            batch.index_record(CS, &format!("R{seq}"), 1, seq, &["s"]);
        }
        store.apply(batch).unwrap();
    }
    // Opened again, nothing merges until the next flush.
    drop(store);
    let store = open_with_index_memory(dir.path(), 256);
    // A merge planned by the store before it was closed finds its number taken by a run the
    // store opened again has written since.
    let taken = store.inner.index.next_run_path();
    std::fs::write(&taken, b"the reopened store's run").unwrap();
    assert!(store.inner.index.merge_all_unlisted().is_err());
    assert_eq!(
        std::fs::read(&taken).unwrap(),
        b"the reopened store's run",
        "the merge removed a file it did not write"
    );
}

#[test]
fn view_index_runs_are_merged_and_files_no_listing_names_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_index_memory(dir.path(), 256);
    for round in 0..64u64 {
        append(&store, CS, 4);
        let mut batch = WriteBatch::new();
        for seq in round * 4..round * 4 + 4 {
            batch.index_record(CS, &format!("R{seq}"), 1, seq, &["s"]);
        }
        store.apply(batch).unwrap();
    }
    // 64 runs written, merged in the background into about log2(64) of them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let runs = store.index_sizes().runs;
        if runs <= 8 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{runs} view index runs after 64 flushes: not merged"
        );
        std::thread::yield_now();
    }
    let before = index_answers(&store, 0);
    assert_eq!(store.subject("s").unwrap().len(), 256);
    drop(store);
    let stray = dir.path().join("index").join("999999.run");
    std::fs::write(&stray, b"a run whose listing never became durable").unwrap();
    let store = open_with_index_memory(dir.path(), 256);
    assert!(!stray.exists(), "an unlisted run file survived open");
    assert_eq!(index_answers(&store, 0), before);
    assert_eq!(store.subject("s").unwrap().len(), 256);
    for seq in 0..256 {
        assert_eq!(
            store.record(CS, &format!("R{seq}")).unwrap(),
            Some(RecordLocation { version: 1, seq })
        );
    }
    // A merge reads every block of its inputs once, around the shared cache, so the blocks
    // lookups use stay in it (and nothing else is added): one lookup on a fresh store.
    drop(store);
    let store = open_with_index_memory(dir.path(), 256);
    assert!(store.record(CS, "R7").unwrap().is_some());
    let cached = store.inner.index.cached_bytes();
    assert!(cached > 0, "the lookup was cached");
    assert!(store.inner.index.merge_all_unlisted().unwrap() >= 256);
    assert_eq!(store.inner.index.cached_bytes(), cached);
}
