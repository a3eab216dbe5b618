//! The receive path tested directly: an engine on a temp-dir store with a fixed clock and
//! generated member keys, fed prepared entries and checkpoints as a sync stream would, with no
//! network and no timing. Wuhan is the origin under test; Changsha is the node.

use std::sync::Arc;

use credex_core::date::FixedClock;
use credex_core::entry;
use credex_core::keys::SigningKeyPair;
use credex_core::merkle::{self, Hash, MemoryHashStore};
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use prost::Message as _;
use tempfile::TempDir;

use super::Engine;
use super::checkpoints::{CheckpointOutcome, SentProof};
use super::harness::{PEER, test_engine};
use super::index::IndexOutcome;
use super::ingest::Inbox;

const CONSORTIUM: &str = "test";
const ORIGIN: &str = PEER;

struct Harness {
    _dir: TempDir,
    engine: Arc<Engine>,
    origin_key: SigningKeyPair,
}

fn harness() -> Harness {
    let t = test_engine(
        CONSORTIUM,
        super::rules_tests::capitals(),
        FixedClock::at_millis(1_790_000_000_000),
    );
    Harness {
        _dir: t.dir,
        engine: t.engine,
        origin_key: t.peer_key,
    }
}

/// One history of the origin: its leaves and their tree.
struct Log {
    leaves: Vec<Vec<u8>>,
    tree: MemoryHashStore,
}

impl Log {
    /// `size` entries; those from `diverge` on are tagged with `branch`, so two logs with the
    /// same leaves before `diverge` share that prefix.
    fn new(key: &SigningKeyPair, size: u64, diverge: u64, branch: &str) -> Log {
        let mut log = Log {
            leaves: Vec::new(),
            tree: MemoryHashStore::new(),
        };
        for seq in 0..size {
            let tag = if seq < diverge { "trunk" } else { branch };
            log.push(signed_as(key, ORIGIN, seq, tag));
        }
        log
    }

    fn push(&mut self, leaf: Vec<u8>) {
        self.tree.append(&leaf).expect("append");
        self.leaves.push(leaf);
    }

    fn root(&self, size: u64) -> Hash {
        merkle::root(size, &self.tree).expect("root")
    }

    fn checkpoint(&self, key: &SigningKeyPair, size: u64) -> Vec<u8> {
        let cp = Checkpoint {
            origin: key.name().to_owned(),
            size,
            root: self.root(size),
        };
        note::sign_checkpoint(&cp, key).expect("sign")
    }

    /// The seeded consistency proof from `from` to `to`, as a serving node sends it.
    fn proof(&self, from: u64, to: u64) -> SentProof {
        let hashes = merkle::seeded_consistency_proof(from, to, &self.tree).expect("proof");
        SentProof {
            from_size: from,
            hashes: hashes.iter().map(|h| h.0.to_vec()).collect(),
        }
    }

    fn inbox(&self, from: u64, to: u64) -> Inbox {
        Inbox::new(
            ORIGIN,
            from,
            self.leaves[from as usize..to as usize].to_vec(),
        )
    }
}

impl Harness {
    fn size(&self) -> u64 {
        self.engine.store.origin_state(ORIGIN).size
    }

    /// The origin's quarantined entries: (seq, reason), in arrival order.
    fn quarantine_reasons(&self) -> Vec<(u64, String)> {
        self.engine
            .store
            .quarantined(Some(ORIGIN), None, 10)
            .unwrap()
            .into_iter()
            .map(|q| (q.record.seq, q.record.reason))
            .collect()
    }

    fn forked(&self) -> bool {
        self.engine.store.origin_state(ORIGIN).forked
    }

    async fn checkpoint(&self, note: &[u8], proof: SentProof) -> CheckpointOutcome {
        self.engine
            .receive_checkpoint(ORIGIN, note, &proof, "hefei")
            .await
            .expect("receive checkpoint")
    }

    /// Appends `log[..size]` under its checkpoint at `size`.
    async fn hold(&self, log: &Log, size: u64) {
        let note = log.checkpoint(&self.origin_key, size);
        self.checkpoint(&note, SentProof::default()).await;
        let mut inbox = log.inbox(self.size(), size);
        self.engine
            .commit(&mut inbox, "hefei")
            .await
            .expect("commit");
        assert_eq!(self.size(), size);
    }

    /// Why the origin's entry at `seq` is listed invalid (it must be).
    fn invalid_reason(&self, seq: u64) -> String {
        self.engine
            .store
            .invalid(ORIGIN, seq)
            .expect("read the invalid list")
            .expect("listed invalid")
    }

    fn evidence(&self) -> Vec<pb::Evidence> {
        self.engine
            .store
            .evidence(ORIGIN)
            .expect("evidence")
            .iter()
            .map(|e| pb::Evidence::decode(e.as_slice()).expect("evidence decodes"))
            .collect()
    }
}

/// What the evidence's seeded proof yields: (root at the smaller size, root at the larger).
fn proof_roots(e: &pb::Evidence, old: u64, new: u64) -> (Hash, Hash) {
    let proof: Vec<Hash> = e
        .consistency_proof
        .iter()
        .map(|h| merkle::hash_from_bytes(h).expect("hash"))
        .collect();
    merkle::consistency_roots(&proof, old, new).expect("proof roots")
}

#[tokio::test]
async fn entries_wait_until_a_checkpoint_their_origin_signed_covers_them() {
    let h = harness();
    let log = Log::new(&h.origin_key, 5, 5, "a");
    let mut inbox = log.inbox(0, 5);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!((outcome.appended, outcome.waiting, h.size()), (0, 5, 0));

    let note3 = log.checkpoint(&h.origin_key, 3);
    assert_eq!(
        h.checkpoint(&note3, SentProof::default()).await,
        CheckpointOutcome::Pending
    );
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!((outcome.appended, outcome.waiting, h.size()), (3, 2, 3));
    // The checkpoint over the appended entries is stored with them. A short run that brings
    // the log to the newest checkpoint seen is checked as it lands, in the same batch: its
    // records (no subject) are listed invalid rather than dropped, and the indexer finds
    // nothing left to do.
    assert_eq!(
        h.engine.store.checkpoint_at(ORIGIN, 3).unwrap(),
        Some(note3)
    );
    assert_eq!((outcome.indexed, outcome.invalid), (3, 3));
    assert_eq!(h.engine.store.indexed(ORIGIN), 3);
    assert!(h.engine.store.invalid(ORIGIN, 0).unwrap().is_some());
    let indexed = h.engine.index_all().await.unwrap();
    assert_eq!((indexed.indexed, indexed.invalid), (0, 0));

    let note5 = log.checkpoint(&h.origin_key, 5);
    let pending = h.checkpoint(&note5, log.proof(3, 5)).await;
    assert_eq!(pending, CheckpointOutcome::Pending);
    h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!(h.size(), 5);
    assert_eq!(h.engine.store.origin_state(ORIGIN).root, log.root(5));
}

#[tokio::test]
async fn entries_that_do_not_give_the_signed_root_are_quarantined_never_appended() {
    let h = harness();
    let a = Log::new(&h.origin_key, 5, 0, "a");
    let b = Log::new(&h.origin_key, 5, 0, "b");
    h.checkpoint(&b.checkpoint(&h.origin_key, 5), SentProof::default())
        .await;
    let mut inbox = a.inbox(0, 5);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert!(outcome.unsigned);
    assert_eq!((outcome.appended, outcome.quarantined, h.size()), (0, 5, 0));
    let counts = h.engine.store.quarantine_counts().unwrap();
    assert_eq!(counts.get("unsigned_root"), Some(&5));
    assert!(
        !h.forked(),
        "entries no root covers prove nothing against the origin"
    );
}

#[tokio::test]
async fn a_run_whose_later_root_fails_keeps_what_the_earlier_signed_roots_cover() {
    let h = harness();
    let log = Log::new(&h.origin_key, 8, 8, "a");
    for size in [4, 8] {
        h.checkpoint(&log.checkpoint(&h.origin_key, size), SentProof::default())
            .await;
    }
    // A relay altered entry 6: the root at 8 fails, the root at 4 still holds.
    let mut sent = log.leaves.clone();
    sent[6][10] ^= 1;
    let mut inbox = Inbox::new(ORIGIN, 0, sent);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert!(outcome.unsigned);
    assert_eq!((outcome.appended, outcome.quarantined, h.size()), (4, 4, 4));
    assert_eq!(h.engine.store.origin_state(ORIGIN).root, log.root(4));
    assert_eq!(
        h.quarantine_reasons(),
        [
            (4, "unsigned_root".to_owned()),
            (5, "unsigned_root".to_owned()),
            (6, "bad_signature".to_owned()),
            (7, "unsigned_root".to_owned()),
        ]
    );
    assert!(!h.forked());
    // The honest rest, sent again, is appended under the root at 8.
    let mut inbox = log.inbox(4, 8);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!((outcome.appended, h.size()), (4, 8));
}

/// A leaf `key` signed as `origin`'s entry at `seq`, its record id `<tag>-<seq>`. Not a valid
/// record (no subject): under a signed root it is appended all the same, and listed invalid.
fn signed_as(key: &SigningKeyPair, origin: &str, seq: u64, tag: &str) -> Vec<u8> {
    let entry = pb::Entry {
        origin: origin.to_owned(),
        seq,
        logged_at: 1_790_000_000_000,
        schema_version: credex_proto::SCHEMA_VERSION,
        record: Some(pb::CreditRecord {
            record_id: format!("{tag}-{seq}"),
            version: 1,
            ..Default::default()
        }),
    };
    entry::sign_entry(key, &entry::encode_entry(&entry))
}

#[tokio::test]
async fn uncovered_entries_are_quarantined_with_their_own_fault_where_they_have_one() {
    let h = harness();
    let log = Log::new(&h.origin_key, 4, 4, "a");
    h.checkpoint(&log.checkpoint(&h.origin_key, 4), SentProof::default())
        .await;
    let mut garbled = log.leaves[3].clone();
    garbled[10] ^= 1;
    let sent = vec![
        log.leaves[0].clone(),
        signed_as(&h.origin_key, ORIGIN, 7, "stray"),
        signed_as(&h.origin_key, "hefei", 2, "stray"),
        garbled,
    ];
    let mut inbox = Inbox::new(ORIGIN, 0, sent);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert!(outcome.unsigned);
    assert_eq!((outcome.appended, outcome.quarantined, h.size()), (0, 4, 0));
    assert_eq!(
        h.quarantine_reasons(),
        [
            (0, "unsigned_root".to_owned()),
            (1, "wrong_seq".to_owned()),
            (2, "wrong_origin".to_owned()),
            (3, "bad_signature".to_owned()),
        ]
    );

    // Entries of a city outside the consortium are refused whole, covered or not.
    let mut inbox = Inbox::new(
        "shanghai",
        0,
        vec![signed_as(&h.origin_key, "shanghai", 0, "stray")],
    );
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!((outcome.appended, outcome.quarantined), (0, 1));
    let counts = h.engine.store.quarantine_counts().unwrap();
    assert_eq!(counts.get("unknown_origin"), Some(&1));
    assert_eq!(h.engine.store.origin_state("shanghai").size, 0);
}

#[tokio::test]
async fn a_smaller_checkpoint_of_another_history_is_proven_equivocation() {
    let h = harness();
    let a = Log::new(&h.origin_key, 6, 0, "a");
    let b = Log::new(&h.origin_key, 3, 1, "b");
    h.hold(&a, 5).await;
    let b3 = b.checkpoint(&h.origin_key, 3);
    let outcome = h.checkpoint(&b3, SentProof::default()).await;
    assert_eq!(outcome, CheckpointOutcome::Equivocation);
    assert!(h.forked());
    let evidence = h.evidence();
    let e = &evidence[0];
    assert_eq!(e.kind, pb::evidence::Kind::InconsistentCheckpoints as i32);
    let notes: Vec<&[u8]> = e.checkpoints.iter().map(|c| c.note.as_slice()).collect();
    assert_eq!(notes, [b3.as_slice(), &a.checkpoint(&h.origin_key, 5)]);
    // The proof, from the node's own tree, yields A's root at 5 and, at 3, a root other than
    // the one the origin signed for B.
    let (old, new) = proof_roots(e, 3, 5);
    assert_eq!((old, new), (a.root(3), a.root(5)));
    assert_ne!(old, b.root(3));
    // A forked origin takes no more entries, even under its own valid checkpoint.
    let a6 = a.checkpoint(&h.origin_key, 6);
    assert_eq!(
        h.checkpoint(&a6, a.proof(5, 6)).await,
        CheckpointOutcome::Known
    );
    let mut inbox = a.inbox(5, 6);
    assert!(h.engine.commit(&mut inbox, "hefei").await.unwrap().forked);
    assert_eq!(h.size(), 5);
}

#[tokio::test]
async fn a_larger_checkpoint_whose_proof_shows_another_history_is_proven_equivocation() {
    let h = harness();
    let a = Log::new(&h.origin_key, 5, 5, "a");
    let b = Log::new(&h.origin_key, 8, 2, "b");
    h.hold(&a, 5).await;
    let b8 = b.checkpoint(&h.origin_key, 8);
    let outcome = h.checkpoint(&b8, b.proof(5, 8)).await;
    assert_eq!(outcome, CheckpointOutcome::Equivocation);
    let e = &h.evidence()[0];
    assert_eq!(e.kind, pb::evidence::Kind::InconsistentCheckpoints as i32);
    let (old, new) = proof_roots(e, 5, 8);
    assert_eq!(new, b.root(8), "the proof yields the signed larger root");
    assert_ne!(old, a.root(5), "and another root at the held size");
    assert_eq!(e.checkpoints[0].note, a.checkpoint(&h.origin_key, 5));
}

#[tokio::test]
async fn a_checkpoint_whose_proof_does_not_yield_its_root_is_not_adopted() {
    let h = harness();
    let a = Log::new(&h.origin_key, 8, 8, "a");
    let b = Log::new(&h.origin_key, 8, 2, "b");
    h.hold(&a, 5).await;
    // A's checkpoint at 8 with a proof from B's tree: it proves nothing either way.
    let a8 = a.checkpoint(&h.origin_key, 8);
    assert_eq!(
        h.checkpoint(&a8, b.proof(5, 8)).await,
        CheckpointOutcome::Invalid
    );
    assert!(!h.forked());
    let mut inbox = a.inbox(5, 8);
    h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!(h.size(), 5, "an unadopted checkpoint covers nothing");
    // The honest proof makes it pending, and the entries commit under it.
    assert_eq!(
        h.checkpoint(&a8, a.proof(5, 8)).await,
        CheckpointOutcome::Pending
    );
    h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!(h.size(), 8);
}

#[tokio::test]
async fn two_different_signed_entries_at_one_seq_are_equivocation() {
    let h = harness();
    let a = Log::new(&h.origin_key, 5, 5, "a");
    let b = Log::new(&h.origin_key, 5, 3, "b");
    h.hold(&a, 5).await;
    let mut inbox = b.inbox(0, 5);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert!(outcome.forked);
    assert_eq!(outcome.duplicates, 3, "the shared prefix is the same bytes");
    let e = &h.evidence()[0];
    assert_eq!(e.kind, pb::evidence::Kind::ConflictingEntries as i32);
    assert_eq!(e.signed_entries, [a.leaves[3].clone(), b.leaves[3].clone()]);
}

/// A log of three entries whose third has a bad signature, signed into a root by its origin,
/// and a fourth after it.
fn log_with_a_bad_signature(key: &SigningKeyPair) -> Log {
    let mut log = Log::new(key, 2, 2, "a");
    let mut leaves = Log::new(key, 4, 4, "a").leaves;
    let fourth = leaves.pop().unwrap();
    let mut bad = leaves.pop().unwrap();
    *bad.last_mut().unwrap() ^= 1;
    log.push(bad);
    log.push(fourth);
    log
}

#[tokio::test]
async fn an_entry_its_origin_signed_a_root_over_is_appended_even_with_a_bad_signature() {
    let h = harness();
    let log = log_with_a_bad_signature(&h.origin_key);
    // A checkpoint beyond the run is known, so the log is behind: the run is left to the
    // indexer.
    let ahead = log.checkpoint(&h.origin_key, 4);
    let outcome = h.checkpoint(&ahead, SentProof::default()).await;
    assert_eq!(outcome, CheckpointOutcome::Pending);
    h.hold(&log, 3).await;
    // Appended on the strength of the signed root; its own signature is checked behind.
    assert_eq!(h.engine.store.invalid(ORIGIN, 2).unwrap(), None);
    assert_eq!(h.engine.store.indexed(ORIGIN), 0);
    let indexed = h.engine.index_all().await.unwrap();
    // (The log's records have no subject: all three are invalid, the third for its signature.)
    assert_eq!((indexed.indexed, indexed.invalid), (3, 3));
    let reason = h.invalid_reason(2);
    assert!(reason.starts_with("bad_signature"), "{reason}");
}

#[tokio::test]
async fn a_short_run_that_brings_the_log_to_its_newest_checkpoint_is_checked_as_it_lands() {
    let h = harness();
    let log = log_with_a_bad_signature(&h.origin_key);
    let note = log.checkpoint(&h.origin_key, 3);
    h.checkpoint(&note, SentProof::default()).await;
    let mut inbox = log.inbox(0, 3);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    // Appended on the strength of the signed root and checked in the same batch, exactly as
    // the indexer would have: listed invalid with the same reason, the mark past them.
    assert_eq!(outcome.appended, 3);
    assert_eq!((outcome.indexed, outcome.invalid), (3, 3));
    assert_eq!(h.engine.store.indexed(ORIGIN), 3);
    let reason = h.invalid_reason(2);
    assert!(reason.starts_with("bad_signature"), "{reason}");
    assert_eq!(h.engine.index_all().await.unwrap(), IndexOutcome::default());

    // The next run too, from the mark the first one left.
    let next = log.checkpoint(&h.origin_key, 4);
    h.checkpoint(&next, log.proof(3, 4)).await;
    let mut inbox = log.inbox(3, 4);
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!((outcome.appended, outcome.indexed), (1, 1));
    assert_eq!(h.engine.store.indexed(ORIGIN), 4);
}

/// `log`'s leaves as a serving node stores them after appending them in batches ending at
/// `cuts`, served packed: the wire blocks from 0 to the last cut.
async fn served_packed(log: &Log, cuts: &[u64]) -> Vec<credex_store::WireBlock> {
    let dir = tempfile::tempdir().unwrap();
    let source = credex_store::Store::open(dir.path()).unwrap();
    let reader = source.reader();
    let writer = super::writer::Writer::start(source).unwrap();
    let mut seq = 0;
    for &cut in cuts {
        let mut batch = credex_store::WriteBatch::new();
        for s in seq..cut {
            batch.append(ORIGIN, s, log.leaves[s as usize].clone());
        }
        writer.apply(batch).await.unwrap();
        seq = cut;
    }
    match reader.packed_leaves(ORIGIN, 0, seq, 1024, 1 << 20).unwrap() {
        credex_store::PackedRun::Blocks(blocks) => blocks,
        loose => panic!("{loose:?}"),
    }
}

#[tokio::test]
async fn packed_blocks_are_appended_as_they_came_and_a_block_a_root_cuts_is_compressed_again() {
    let h = harness();
    let log = Log::new(&h.origin_key, 8, 8, "a");
    let wire = served_packed(&log, &[3, 8]).await;
    assert_eq!(wire.iter().map(|b| b.count).collect::<Vec<_>>(), [3, 5]);
    let blocks = wire
        .iter()
        .map(|w| credex_store::PackedBlock::unpack(w.clone(), 1 << 20).unwrap())
        .collect();
    let mut inbox = Inbox::packed(ORIGIN, 0, blocks);
    assert_eq!(inbox.leaves, log.leaves);
    // Only the root at 5 is known: the first block goes in whole, the second is cut there.
    h.checkpoint(&log.checkpoint(&h.origin_key, 5), SentProof::default())
        .await;
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!((outcome.appended, outcome.waiting, h.size()), (5, 3, 5));
    h.checkpoint(&log.checkpoint(&h.origin_key, 8), SentProof::default())
        .await;
    let outcome = h.engine.commit(&mut inbox, "hefei").await.unwrap();
    assert_eq!((outcome.appended, outcome.waiting, h.size()), (3, 0, 8));
    assert_eq!(h.engine.store.origin_state(ORIGIN).root, log.root(8));
    assert_eq!(h.engine.leaves(ORIGIN, 0, 8).unwrap(), log.leaves);
    // The whole block is stored as it came; the cut one was compressed again, in two.
    let stored = |start, end| {
        h.engine
            .packed_leaves(ORIGIN, start, end, 1024, 1 << 20)
            .unwrap()
    };
    assert_eq!(
        stored(0, 3),
        credex_store::PackedRun::Blocks(wire[..1].to_vec())
    );
    let credex_store::PackedRun::Blocks(rest) = stored(3, 8) else {
        panic!("blocks from 3")
    };
    assert_eq!(rest.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 3]);
}
