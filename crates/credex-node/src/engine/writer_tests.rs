//! The store's writer on its own: every request from many callers is carried out and answered,
//! a flush makes what was applied before it durable, a panic in a store call is answered, and a
//! writer whose thread died answers every queued and later request with an error.

use std::path::Path;
use std::time::Duration;

use credex_store::{Store, StoreError, WriteBatch};

use super::storage::FLUSH_DEADLINE;
use super::writer::{WriteError, Writer};

/// A leaf no other origin or seq has.
fn leaf(origin: &str, seq: u64) -> Vec<u8> {
    format!("{origin} leaf {seq}").into_bytes()
}

fn append(origin: &str, seq: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.append(origin, seq, leaf(origin, seq));
    batch
}

/// The files of `from`, copied to `to`: what a crash at this moment would leave on disk.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_many_tasks_and_blocking_threads_are_each_applied_once_and_answered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let reader = store.reader();
    let writer = Writer::start(store).expect("writer");
    const PER_CALLER: u64 = 20;
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..6 {
        let writer = writer.clone();
        let origin = format!("origin-{caller}");
        // Half wait on the runtime, half on blocking threads, as the engine's callers do.
        if caller % 2 == 0 {
            callers.spawn(async move {
                for seq in 0..PER_CALLER {
                    let applied = writer.apply(append(&origin, seq)).await.expect("applied");
                    let (name, state) = &applied.origins[0];
                    assert_eq!((name.as_str(), state.size), (origin.as_str(), seq + 1));
                    if seq % 5 == 4 {
                        writer.flush_within(FLUSH_DEADLINE).await.expect("flushed");
                    }
                }
            });
        } else {
            callers.spawn_blocking(move || {
                for seq in 0..PER_CALLER {
                    let applied = writer
                        .apply_blocking(append(&origin, seq))
                        .expect("applied");
                    let (name, state) = &applied.origins[0];
                    assert_eq!((name.as_str(), state.size), (origin.as_str(), seq + 1));
                    if seq % 5 == 4 {
                        writer
                            .flush_within_blocking(FLUSH_DEADLINE)
                            .expect("flushed");
                    }
                }
            });
        }
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a caller failed");
    }
    let origins = reader.origins();
    assert_eq!(origins.len(), 6, "{origins:?}");
    for (origin, state) in origins {
        assert_eq!(state.size, PER_CALLER, "{origin}");
        let expected: Vec<Vec<u8>> = (0..PER_CALLER).map(|seq| leaf(&origin, seq)).collect();
        assert_eq!(
            reader.leaves(&origin, 0, 100).expect("leaves"),
            expected,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn a_batch_applied_then_flushed_is_in_a_copy_of_the_store_taken_right_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let store = Store::open(&path).expect("store");
    let writer = Writer::start(store).expect("writer");
    let mut batch = append("wuhan", 0);
    batch.append("wuhan", 1, leaf("wuhan", 1));
    let applied = writer.apply(batch).await.expect("applied");
    writer.flush_within(FLUSH_DEADLINE).await.expect("flushed");
    // The writer and its store stay open: the copy is what a crash now would leave.
    let copy = dir.path().join("copy");
    copy_dir(&path, &copy);
    let reopened = Store::open(&copy).expect("the copy opens");
    let state = reopened.origin_state("wuhan");
    assert_eq!(state.size, 2);
    assert_eq!(state.root, applied.origins[0].1.root);
    assert_eq!(
        reopened.leaves("wuhan", 0, 10).expect("leaves"),
        [leaf("wuhan", 0), leaf("wuhan", 1)]
    );
}

#[tokio::test]
async fn a_panic_in_a_store_call_is_answered_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let reader = store.reader();
    let writer = Writer::start(store).expect("writer");
    let answered = writer.call(|_| panic!("a bug in the store")).await;
    match answered {
        Err(WriteError::Panicked { why, .. }) => assert_eq!(why, "a bug in the store"),
        other => panic!("{other:?}"),
    }
    // A store error comes back as itself.
    let refused = writer
        .call(|_| Err(StoreError::Failed { why: "test".into() }))
        .await;
    assert!(
        matches!(refused, Err(WriteError::Store(StoreError::Failed { .. }))),
        "{refused:?}"
    );
    writer.apply(append("wuhan", 0)).await.expect("applied");
    writer.flush_within(FLUSH_DEADLINE).await.expect("flushed");
    assert_eq!(reader.origin_state("wuhan").size, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_thread_panicked_answers_queued_and_later_requests_with_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let reader = store.reader();
    let writer = Writer::start(store).expect("writer");
    // Hold the thread, queue a crash and requests behind it, then let it go.
    let release = hold(&writer).await;
    writer
        .run_on_thread(|| panic!("the writer's own loop failed"))
        .await;
    let queued: Vec<_> = (0..3)
        .map(|seq| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.apply(append("wuhan", seq)).await })
        })
        .collect();
    let flush = {
        let writer = writer.clone();
        tokio::task::spawn_blocking(move || writer.flush_within_blocking(FLUSH_DEADLINE))
    };
    // The crash and the four requests wait behind the held one.
    while writer.queued() < 5 {
        tokio::task::yield_now().await;
    }
    release.send(()).expect("the thread waits");
    let why = writer.stopped().await;
    assert!(why.contains("the writer's own loop failed"), "{why}");
    let stopped = |answer: Result<(), WriteError>| match answer {
        Err(WriteError::Stopped(why)) => {
            assert!(why.contains("the writer's own loop failed"), "{why}");
        }
        other => panic!("{other:?}"),
    };
    for request in queued {
        stopped(request.await.expect("not panicked").map(drop));
    }
    stopped(flush.await.expect("not panicked"));
    // Later requests, async and blocking, are refused at once.
    stopped(writer.apply(append("wuhan", 0)).await.map(drop));
    stopped(writer.flush_within(Duration::from_secs(1)).await);
    let blocking = {
        let writer = writer.clone();
        tokio::task::spawn_blocking(move || writer.apply_blocking(append("wuhan", 0)).map(drop))
    };
    stopped(blocking.await.expect("not panicked"));
    assert_eq!(reader.origin_state("wuhan").size, 0, "nothing was applied");
    // The engine error a caller sees.
    let error = super::EngineError::from(writer.apply(append("wuhan", 0)).await.unwrap_err());
    assert!(
        matches!(&error, super::EngineError::Internal(m) if m.starts_with("store writer stopped: its thread panicked")),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_carries_out_what_is_queued_and_releases_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let store = Store::open(&path).expect("store");
    let reader = store.reader();
    let writer = Writer::start(store).expect("writer");
    writer.apply(append("wuhan", 0)).await.expect("applied");
    let release = hold(&writer).await;
    // A request whose caller stopped waiting is carried out still, as a blocking task was.
    let caller = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.apply(append("wuhan", 1)).await })
    };
    while writer.queued() < 1 {
        tokio::task::yield_now().await;
    }
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());
    release.send(()).expect("the thread waits");
    // The last handle: its drop returns once the thread has served the queue and ended.
    drop(writer);
    assert_eq!(reader.origin_state("wuhan").size, 2);
    drop(reader);
    let reopened = Store::open(&path).expect("reopened");
    assert_eq!(reopened.origin_state("wuhan").size, 2);
}

/// Holds the writer's thread until the returned sender sends (or is dropped); returns once the
/// thread is held, so what is sent next waits in the queue.
async fn hold(writer: &Writer) -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    writer
        .run_on_thread(move || {
            let _ = started.send(());
            let _ = held.recv();
        })
        .await;
    running.await.expect("the thread is held");
    release
}
