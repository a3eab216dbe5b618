//! The publish path on an engine: concurrent requests pipelined three batches deep, each batch
//! answered at a size its own checkpoint covers, a log made durable without its checkpoint
//! checkpointed when publishing starts again, and nothing published into a log shorter than a
//! checkpoint its city signed.

use std::sync::Arc;

use credex_core::date::{FixedClock, parse_date};
use credex_core::entry;
use credex_core::merkle;
use credex_core::pb;
use credex_store::WriteBatch;

use super::Engine;
use super::harness::{NODE, company, cosigned_behind, dishonest_debtor, metric, test_engine};
use super::publish;

fn clock() -> FixedClock {
    FixedClock::at_date(parse_date("2026-05-20").expect("fixture date"))
}

fn record(n: usize) -> pb::CreditRecord {
    dishonest_debtor(
        &format!("CS-2026-{n:05}"),
        company("91430100MA4L00003"),
        "430100",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_each_answered_at_a_size_a_checkpoint_of_its_own_signs() {
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    let (queue, _task) = publish::start(engine.clone());
    const REQUESTS: usize = 12;
    const PER_REQUEST: usize = 100;
    let calls: Vec<_> = (0..REQUESTS)
        .map(|r| {
            let queue = queue.clone();
            let records = (0..PER_REQUEST)
                .map(|i| record(r * PER_REQUEST + i))
                .collect();
            tokio::spawn(async move { queue.publish(records).await })
        })
        .collect();
    let mut seqs = Vec::new();
    let mut sizes = Vec::new();
    for call in calls {
        let receipt = call.await.expect("no panic").expect("published");
        for p in &receipt.published {
            assert!(!p.already_present);
            assert!(
                p.seq < receipt.tree_size,
                "answered at a size that covers it"
            );
            seqs.push(p.seq);
        }
        sizes.push(receipt.tree_size);
    }
    seqs.sort_unstable();
    let total = (REQUESTS * PER_REQUEST) as u64;
    assert_eq!(seqs, (0..total).collect::<Vec<_>>(), "every seq once");
    let log = engine.origin_state(NODE);
    assert_eq!(log.size, total);
    // Every size a request was answered at has the checkpoint signed over exactly that tree.
    sizes.sort_unstable();
    sizes.dedup();
    assert!(sizes.len() > 1, "12 requests of 100 make several batches");
    for size in sizes {
        let note = engine
            .store
            .checkpoint_at(NODE, size)
            .expect("read")
            .unwrap_or_else(|| panic!("no checkpoint at answered size {size}"));
        let signed = engine.verify_note(NODE, &note).expect("signed by the node");
        let root = merkle::root(size, &engine.store.hash_reader(NODE)).expect("root");
        assert_eq!(signed.checkpoint.size, size);
        assert_eq!(
            signed.checkpoint.root, root,
            "the root of the log at {size}"
        );
    }
    let newest = engine.store.checkpoint(NODE).expect("read").expect("one");
    assert_eq!(
        newest.size, total,
        "the newest checkpoint covers the whole log"
    );
}

#[tokio::test]
async fn a_log_made_durable_before_its_checkpoint_is_checkpointed_at_start_byte_for_byte() {
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    // What a node stopped between a batch's flush and its checkpoint's leaves behind.
    let mut batch = WriteBatch::new();
    for seq in 0..3 {
        let entry = pb::Entry {
            origin: NODE.to_owned(),
            seq,
            logged_at: 1_779_000_000_000,
            schema_version: credex_proto::SCHEMA_VERSION,
            record: Some(record(seq as usize)),
        };
        batch.append(
            NODE,
            seq,
            entry::sign_entry(&engine.log_key, &entry::encode_entry(&entry)),
        );
    }
    batch.set_indexed(NODE, 3);
    engine.apply(batch).await.expect("apply");
    engine.flush_durable().await.expect("flush");
    assert!(engine.store.checkpoint(NODE).expect("read").is_none());

    // On a blocking thread, as the publish task runs it.
    let checkpointing = || {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.checkpoint_own_log())
    };
    checkpointing()
        .await
        .expect("not panicked")
        .expect("checkpointed");
    let newest = engine
        .store
        .checkpoint(NODE)
        .expect("read")
        .expect("signed");
    assert_eq!(newest.size, 3);
    let signed = engine
        .verify_note(NODE, &newest.note)
        .expect("signed by the node");
    assert_eq!(signed.checkpoint.root, engine.origin_state(NODE).root);
    // Signed again, the note is the same bytes: peers that held it see nothing new.
    let again =
        credex_core::note::sign_checkpoint(&signed.checkpoint, &engine.log_key).expect("sign");
    assert_eq!(again, newest.note);
    // A log whose newest checkpoint covers it is left alone.
    checkpointing()
        .await
        .expect("not panicked")
        .expect("nothing to do");
    assert_eq!(
        engine
            .store
            .checkpoint(NODE)
            .expect("read")
            .expect("one")
            .note,
        newest.note
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_published_into_a_log_shorter_than_a_checkpoint_its_city_signed() {
    // A node whose store was moved aside starts empty; a peer shows it a checkpoint its city
    // signed over 5 entries before they have come back.
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    let checkpoint = credex_core::note::Checkpoint {
        origin: credex_core::consortium::origin("test", NODE),
        size: 5,
        root: merkle::empty_root(),
    };
    let note = credex_core::note::sign_checkpoint(&checkpoint, &engine.log_key).expect("signed");
    engine
        .receive_checkpoint(
            NODE,
            &note,
            &super::checkpoints::SentProof::default(),
            "wuhan",
        )
        .await
        .expect("taken in");
    assert_eq!(engine.best_seen(NODE), 5);
    let (queue, _task) = publish::start(engine.clone());
    let refused = queue.publish(vec![record(1)]).await.expect_err("refused");
    assert!(
        matches!(&refused, super::EngineError::Unavailable(m) if m.starts_with(
            "this city's log holds 0 entries, but a checkpoint it signed over 5 came back from a peer"
        )),
        "{refused:?}"
    );
    assert_eq!(engine.origin_state(NODE).size, 0, "nothing appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_grown_by_the_batch_in_flight_is_not_taken_for_one_restored_from_peers() {
    // The prepare stage reads the log's state, then the apply stage commits the batch ahead:
    // the log is now longer than that state, which is no sign of a checkpoint from a peer.
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    let before = engine.origin_state(NODE);
    let (queue, _task) = publish::start(engine.clone());
    queue.publish(vec![record(1)]).await.expect("published");
    assert_eq!(engine.origin_state(NODE).size, 1);
    assert!(
        engine.publish_refusal(&before).is_none(),
        "{:?}",
        engine.publish_refusal(&before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_chain_across_batches_in_flight_and_a_retry_of_one_is_already_present() {
    // Six requests of a full batch each, sent in order without waiting: each batch is
    // prepared while the one before it may still be applied, so the versions a batch in
    // flight appends must count as the latest. Request r carries version r + 1 of one record.
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    let (queue, _task) = publish::start(engine.clone());
    const REQUESTS: usize = 6;
    let batch = engine.batch_max_entries;
    let chained = |version: u32| pb::CreditRecord {
        version,
        decision: Some(pb::Decision {
            facts: format!("有履行能力而拒不履行生效法律文书确定的义务（第{version}次确认）"),
            ..record(0).decision.expect("a decision")
        }),
        ..record(0)
    };
    let request = |r: usize| {
        let mut records: Vec<_> = (1..batch).map(|i| record(r * batch + i)).collect();
        records.push(chained(r as u32 + 1));
        records
    };
    let mut calls: Vec<_> = (0..REQUESTS)
        .map(|r| Box::pin(queue.publish(request(r))))
        .collect::<Vec<_>>();
    // Version 3 again, as a client retrying before its answer came.
    calls.push(Box::pin(queue.publish(vec![chained(3)])));
    let receipts = futures::future::join_all(calls).await;
    let mut chain = Vec::new();
    for receipt in receipts {
        let receipt = receipt.expect("published");
        let last = receipt.published.last().expect("records").clone();
        assert_eq!(last.record_id, "CS-2026-00000");
        chain.push(last);
    }
    let retry = chain.pop().expect("the retry");
    let versions: Vec<u32> = chain.iter().map(|p| p.version).collect();
    assert_eq!(versions, (1..=REQUESTS as u32).collect::<Vec<_>>());
    assert!(chain.iter().all(|p| !p.already_present));
    assert!(retry.already_present, "{retry:?}");
    assert_eq!(
        (retry.version, retry.seq),
        (3, chain[2].seq),
        "the retry is answered with the version it repeats"
    );
    assert_eq!(
        engine.origin_state(NODE).size,
        (REQUESTS * batch) as u64,
        "the retry appended nothing"
    );
    let latest = engine
        .store
        .record(NODE, "CS-2026-00000")
        .expect("read")
        .expect("held");
    assert_eq!(
        (latest.version, latest.seq),
        (REQUESTS as u64, chain[REQUESTS - 1].seq)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_an_hour_ahead_of_every_witness_publishes_nothing_until_it_is_set_right() {
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    let (queue, _task) = publish::start(engine.clone());
    let witness = |city: &str, seconds_behind: i64| cosigned_behind(engine, city, seconds_behind);
    // One witness two hours behind: one alone is not judged by (it may be the one that lies).
    engine.note_witness_clocks(&[witness("wuhan", 7200)]);
    queue.publish(vec![record(1)]).await.expect("published");
    assert_eq!(
        metric(engine, "credex_witness_clocks"),
        1,
        "one witness's clock known"
    );
    // Two, both more than an hour behind: this clock has jumped.
    engine.note_witness_clocks(&[witness("hefei", 3700)]);
    let refused = queue.publish(vec![record(2)]).await.unwrap_err();
    assert!(
        matches!(&refused, super::EngineError::Unavailable(m)
            if m.contains("s ahead of every witness's (the latest, credex/test/hefei/witness")),
        "{refused}"
    );
    assert_eq!(engine.origin_state(NODE).size, 1, "nothing appended");
    // 3,700 s, less the moments since the cosignature was noted.
    let ahead = metric(engine, "credex_clock_ahead_of_witnesses_seconds");
    assert!((3690..=3700).contains(&ahead), "{ahead}");
    assert_eq!(metric(engine, "credex_witness_clocks"), 2);
    // A witness whose clock reads within the hour: publishing goes on.
    engine.note_witness_clocks(&[witness("nanchang", 600)]);
    queue.publish(vec![record(2)]).await.expect("published");
    assert_eq!(engine.origin_state(NODE).size, 2);
}

/// A node with witnesses, as it starts: its publish queue started before they have answered,
/// and a request that came in meanwhile.
fn publishing_at_start(
    engine: &Arc<Engine>,
) -> tokio::task::JoinHandle<Result<publish::PublishReceipt, super::EngineError>> {
    engine.hear_witnesses_first();
    let (queue, _task) = publish::start(engine.clone());
    tokio::spawn(async move { queue.publish(vec![record(1)]).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_wrong_at_start_is_judged_before_the_first_batch_is_stamped() {
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    let early = publishing_at_start(engine);
    // The answers of the cosigning round at start: two witnesses two hours behind this clock.
    engine.note_witness_clocks(&[
        cosigned_behind(engine, "wuhan", 7200),
        cosigned_behind(engine, "hefei", 7200),
    ]);
    // The request that came in before they answered waited for them, and is refused.
    let refused = early.await.expect("no panic").unwrap_err();
    assert!(
        matches!(&refused, super::EngineError::Unavailable(m) if m.contains("s ahead of every witness's")),
        "{refused}"
    );
    assert_eq!(engine.origin_state(NODE).size, 0, "nothing appended");
}

#[tokio::test(start_paused = true)]
async fn the_first_wait_for_silent_witnesses_opens_the_gate_for_everyone_after_it() {
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    engine.hear_witnesses_first();
    let started = tokio::time::Instant::now();
    engine.wait_for_witnesses().await;
    assert_eq!(started.elapsed(), publish::WITNESS_WAIT_AT_START);
    // The round at start may go on (a witness that accepts the dial and never answers), but a
    // query of today, or the tick, after the first wait does not wait again.
    let again = tokio::time::Instant::now();
    engine.wait_for_witnesses().await;
    assert_eq!(again.elapsed(), std::time::Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_waits_for_the_witnesses_at_start_no_longer_than_the_round() {
    let t = test_engine("test", super::rules_tests::capitals(), clock());
    let engine = &t.engine;
    let early = publishing_at_start(engine);
    // The round at start ended with no witness answering (all down): nothing to judge by, and
    // nothing held back any longer.
    engine.witnesses_heard();
    early.await.expect("no panic").expect("published");
    assert_eq!(engine.origin_state(NODE).size, 1);
}
