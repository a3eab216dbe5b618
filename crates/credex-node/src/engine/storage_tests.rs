//! A node whose store's volume is below its free-space margin: publishes and the receive path
//! are refused before anything is written, the refusal is `RESOURCE_EXHAUSTED` naming the
//! disk, nothing is quarantined or marked, and status, metrics and the sync loops see it.

use credex_core::date::{FixedClock, parse_date};
use credex_core::entry;
use credex_core::merkle::{self, MemoryHashStore};
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use credex_store::StoreOptions;

use super::checkpoints::SentProof;
use super::harness::{NODE, PEER, TestEngine, company, dishonest_debtor, test_engine_with};
use super::ingest::Inbox;
use super::publish;
use super::rules_tests::capitals;

/// An engine whose store keeps more free than any volume has: every write is refused.
fn on_a_full_disk() -> TestEngine {
    let options = StoreOptions {
        min_free: u64::MAX,
        ..StoreOptions::default()
    };
    test_engine_with(
        "test",
        capitals(),
        FixedClock::at_date(parse_date("2026-05-20").expect("a date")),
        &options,
    )
}

#[tokio::test]
async fn a_publish_on_a_full_disk_is_refused_resource_exhausted_naming_the_disk() {
    let t = on_a_full_disk();
    let (queue, _task) = publish::start(t.engine.clone());
    let record = dishonest_debtor("CS-1", company("91430100MA4L00003"), "430100");
    let refused = queue.publish(vec![record]).await.expect_err("refused");
    let status = crate::service::status(refused);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let store = t.dir.path().join("store");
    assert!(
        status
            .message()
            .starts_with(&format!("storage: disk full: {} has ", store.display())),
        "{}",
        status.message()
    );
    assert!(status.message().contains(" free, below the "));
    assert_eq!(t.engine.origin_state(NODE).size, 0);
    // Status, metrics and readiness say so.
    let space = t.engine.storage().expect("storage");
    assert!(space.full() && space.failed.is_none());
    assert!(t.engine.storage_full().is_some());
    assert!(t.engine.storage_refusal().is_some());
    let metrics = t.engine.metrics().encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("credex_storage_full{") && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn entries_from_a_peer_on_a_full_disk_are_refused_neither_appended_nor_quarantined() {
    let t = on_a_full_disk();
    let mut tree = MemoryHashStore::new();
    let leaves: Vec<Vec<u8>> = (0..3)
        .map(|seq| {
            let entry = pb::Entry {
                origin: PEER.to_owned(),
                seq,
                logged_at: 1_779_000_000_000,
                schema_version: credex_proto::SCHEMA_VERSION,
                record: Some(dishonest_debtor(
                    &format!("WH-{seq}"),
                    company("91420100MA4L00003"),
                    "420100",
                )),
            };
            let leaf = entry::sign_entry(&t.peer_key, &entry::encode_entry(&entry));
            tree.append(&leaf).expect("append");
            leaf
        })
        .collect();
    let checkpoint = Checkpoint {
        origin: t.peer_key.name().to_owned(),
        size: 3,
        root: merkle::root(3, &tree).expect("root"),
    };
    let note = note::sign_checkpoint(&checkpoint, &t.peer_key).expect("sign");
    // A checkpoint ahead of the log waits in memory for its entries: nothing to write yet.
    t.engine
        .receive_checkpoint(PEER, &note, &SentProof::default(), "hefei")
        .await
        .expect("checkpoint");
    let mut inbox = Inbox::new(PEER, 0, leaves);
    let refused = t
        .engine
        .commit(&mut inbox, "hefei")
        .await
        .expect_err("refused");
    assert!(
        matches!(&refused, super::EngineError::Store(e) if e.is_disk_full()),
        "{refused:?}"
    );
    assert_eq!(t.engine.origin_state(PEER).size, 0);
    assert!(t.engine.quarantine_counts().expect("counts").is_empty());
    assert_eq!(t.engine.invalid_count(PEER), 0);
}
