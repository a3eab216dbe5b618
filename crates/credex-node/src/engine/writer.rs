//! The store's one writer: a thread of its own that runs every apply and flush of the node's
//! store, one request after another in the order they arrive.
//!
//! [`Writer`] is the only way credex-node writes to its store, by the types: the writes are
//! methods of [`Store`], which is not `Clone`; [`Writer::start`] takes the node's one `Store`
//! by value and its two threads share it behind an `Arc` that never leaves this module, while
//! the engine keeps a [`credex_store::StoreReader`], which has no write method. So no adapter
//! or engine path can write around the writer; `tests/cluster/tidy.rs`
//! (`the_store_is_written_only_by_the_writer`) holds the types to that at compile time and,
//! besides, finds any call of the store's write methods outside this module. The store
//! serialises its applies anyway; owning them here makes "one writer" something the code
//! shows rather than something each caller must remember.
//!
//! **Why a thread, not a task.** An apply writes and `fdatasync`s leaf files and commits a sled
//! batch; a flush is an fsync, waited for up to the caller's deadline
//! ([`super::storage::FLUSH_DEADLINE`]). Both block for milliseconds, seconds on a loaded disk,
//! and must not run on an async worker. A dedicated OS thread blocks without holding one of the
//! runtime's threads, and is not cancelled with a task.
//!
//! **Flushes overlap applies.** The writer takes a flush in its turn, so it starts only after
//! every apply queued before it was applied, and hands it to a second thread of its own
//! (`credex-flusher`), which runs the flushes one after another and answers them, while the
//! writer goes on with the applies behind it. A flush is an fsync of sled's log, milliseconds;
//! publish finishes batch N (its flush, then its checkpoint) while batch N+1 is staged, and the
//! indexer's and the receive path's flushes run beside each other's applies, as they did when
//! each was a blocking task of its own. (A flush covers every batch applied before it starts,
//! so answering it from another thread loses nothing.)
//!
//! **Requests** travel over a bounded channel ([`QUEUE`]). Async callers await the answer
//! ([`Writer::apply`], [`Writer::flush_within`]); code already on a blocking thread (the
//! publish task's staging, its start-up checkpoint, the receive path's apply) waits for it
//! there ([`Writer::apply_blocking`], [`Writer::flush_within_blocking`]). A request is carried
//! out even if its async caller stops waiting, as a `spawn_blocking` closure was. Because the
//! writer takes no lock of the engine's and waits for nothing but the store, a caller may hold
//! the engine's locks while it waits; a flush queued behind another task's apply waits for that
//! apply, never the other way round.
//!
//! **Failure.** A store call that panics is answered with [`WriteError::Panicked`] and the
//! writer goes on with the next request: the store replaces its writer state only after a
//! write succeeded, and a peer whose batch hit a bug must not be able to stop the node's
//! writes. If the thread itself ends while handles remain (its loop panicked), every queued
//! and every later request is answered [`WriteError::Stopped`], none waits for ever, and
//! [`Writer::stopped`] resolves; the node's supervision (`server.rs`) takes that as fatal.
//!
//! **Shutdown.** Dropping the last handle closes the channel: the thread answers what is
//! queued, waits for its flusher, drops the store and ends, and that drop waits for it, so the
//! store's database is released when the engine (and with it its reader) is dropped (a node
//! restarted in the same process reopens it).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use credex_store::{Applied, Store, StoreError, WriteBatch};
use tokio::sync::{mpsc, oneshot, watch};

use super::EngineError;

/// Requests waiting for the writer, at most. A caller waits for its answer, so at most one
/// request is queued per waiting caller; the bound caps the batches held in memory behind a
/// slow flush when many RPCs write at once (access-log entries, witness state), making the
/// rest wait to send instead.
pub const QUEUE: usize = 32;

/// Why a write was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store refused or failed it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store call panicked; the writer goes on.
    #[error("store writer: the {what} panicked: {why}")]
    Panicked { what: &'static str, why: String },
    /// The writer's thread has ended: nothing more is written.
    #[error("store writer stopped: {0}")]
    Stopped(String),
}

impl From<WriteError> for EngineError {
    fn from(e: WriteError) -> Self {
        match e {
            // Kept whole: a full disk or a failed handle is mapped on from here.
            WriteError::Store(e) => EngineError::Store(e),
            // What a panicking `spawn_blocking` apply was.
            other => EngineError::Internal(other.to_string()),
        }
    }
}

/// A caller's end of one request's answer.
type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// What the writer is asked to do.
enum Request {
    /// [`Store::apply`].
    Apply {
        batch: WriteBatch,
        reply: Reply<Applied>,
    },
    /// [`Store::flush_within`].
    Flush {
        deadline: Duration,
        reply: Reply<()>,
    },
    /// Runs on the thread between requests, outside any guard: a panic in it ends the thread
    /// (how tests see a dead writer), a wait in it holds the queue.
    #[cfg(test)]
    Run(Box<dyn FnOnce() + Send>),
    /// Runs as a store call runs, a panic in it answered.
    #[cfg(test)]
    Call { call: StoreCall, reply: Reply<()> },
}

/// A test's stand-in for a store call.
#[cfg(test)]
type StoreCall = Box<dyn FnOnce(&Store) -> Result<(), StoreError> + Send>;

/// A handle on the store's writer. Cheap to clone; the thread ends once every clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `None` only while being dropped.
    requests: Option<mpsc::Sender<Request>>,
    /// Why the thread ended, once it has.
    ended: watch::Receiver<Option<String>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread (`credex-writer`) and its flusher (`credex-flusher`) over
    /// `store`, which they own from now on: whoever needs to read it takes a
    /// [`Store::reader`] first.
    pub fn start(store: Store) -> std::io::Result<Writer> {
        let (requests, queue) = mpsc::channel(QUEUE);
        let (end, ended) = watch::channel(None);
        let (flushes, flush_queue) = std::sync::mpsc::sync_channel(QUEUE);
        // The writer's two threads share the one store; nothing outside this module has it.
        let store = Arc::new(store);
        let flusher = {
            let store = Arc::clone(&store);
            std::thread::Builder::new()
                .name("credex-flusher".to_owned())
                .spawn(move || flush_each(&store, &flush_queue))?
        };
        let thread = std::thread::Builder::new()
            .name("credex-writer".to_owned())
            .spawn(move || run(&store, queue, Flusher { flushes, flusher }, &end))?;
        Ok(Writer {
            shared: Arc::new(Shared {
                requests: Some(requests),
                ended,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Applies `batch` ([`Store::apply`]); not durable until a flush.
    pub async fn apply(&self, batch: WriteBatch) -> Result<Applied, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Apply { batch, reply }).await?;
        answer.await.map_err(|_| self.stopped_error())?
    }

    /// Makes every batch applied before it durable ([`Store::flush_within`] `deadline`).
    pub async fn flush_within(&self, deadline: Duration) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Flush { deadline, reply }).await?;
        answer.await.map_err(|_| self.stopped_error())?
    }

    /// [`Writer::apply`] for a caller on a blocking thread (`spawn_blocking`, a plain thread).
    ///
    /// # Panics
    /// On an async worker (tokio's `blocking_send` refuses to block the runtime there).
    pub fn apply_blocking(&self, batch: WriteBatch) -> Result<Applied, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send_blocking(Request::Apply { batch, reply })?;
        answer.blocking_recv().map_err(|_| self.stopped_error())?
    }

    /// [`Writer::flush_within`] for a caller on a blocking thread.
    ///
    /// # Panics
    /// On an async worker, as [`Writer::apply_blocking`].
    pub fn flush_within_blocking(&self, deadline: Duration) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.send_blocking(Request::Flush { deadline, reply })?;
        answer.blocking_recv().map_err(|_| self.stopped_error())?
    }

    /// Resolves once the writer's thread has ended, with why. While a handle exists that is
    /// only by a panic of its own loop: the node's supervision treats it as fatal.
    pub async fn stopped(&self) -> String {
        let mut ended = self.shared.ended.clone();
        let why = match ended.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            // The thread sets a reason before it lets go of the sender.
            Err(_) => None,
        };
        why.unwrap_or_else(|| "ended".to_owned())
    }

    async fn send(&self, request: Request) -> Result<(), WriteError> {
        self.requests()
            .send(request)
            .await
            .map_err(|_| self.stopped_error())
    }

    fn send_blocking(&self, request: Request) -> Result<(), WriteError> {
        self.requests()
            .blocking_send(request)
            .map_err(|_| self.stopped_error())
    }

    fn requests(&self) -> &mpsc::Sender<Request> {
        self.shared
            .requests
            .as_ref()
            .expect("the sender is taken only when the last handle is dropped")
    }

    /// The error for a request the thread will never answer. The thread records why it ended
    /// before it drops the queue, so a caller that saw the queue closed finds the reason.
    fn stopped_error(&self) -> WriteError {
        let why = self.shared.ended.borrow().clone();
        WriteError::Stopped(why.unwrap_or_else(|| "ended".to_owned()))
    }
}

#[cfg(test)]
impl Writer {
    /// Queues `f` to run on the writer's thread between two requests, outside any guard.
    pub(crate) async fn run_on_thread(&self, f: impl FnOnce() + Send + 'static) {
        self.send(Request::Run(Box::new(f)))
            .await
            .expect("the writer takes requests");
    }

    /// Runs `call` on the writer's thread as a store call is run, and answers what it returns.
    pub(crate) async fn call(
        &self,
        call: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        let call = Box::new(call);
        self.send(Request::Call { call, reply }).await?;
        answer.await.map_err(|_| self.stopped_error())?
    }

    /// Requests sent and not yet taken by the thread.
    pub(crate) fn queued(&self) -> usize {
        QUEUE - self.requests().capacity()
    }
}

impl Drop for Shared {
    /// The last handle is gone: close the queue and wait for the thread to answer what is in
    /// it and release the store.
    fn drop(&mut self) {
        drop(self.requests.take());
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            // A thread that panicked has said so through `ended` already.
            let _ = thread.join();
        }
    }
}

/// A flush handed to the flusher: its deadline and its caller's end.
type Flush = (Duration, Reply<()>);

/// The writer's end of its flusher thread.
struct Flusher {
    flushes: std::sync::mpsc::SyncSender<Flush>,
    flusher: JoinHandle<()>,
}

/// The writer thread: serves `queue` until every handle is dropped or its loop panics, then
/// records why it ended, and only then drops the queue (answering what is left in it
/// `Stopped`). The flusher is let go first and waited for, so every flush handed to it is
/// answered and the store is released when this thread ends.
fn run(
    store: &Store,
    mut queue: mpsc::Receiver<Request>,
    flusher: Flusher,
    end: &watch::Sender<Option<String>>,
) {
    let Flusher { flushes, flusher } = flusher;
    let served = panic::catch_unwind(AssertUnwindSafe(|| serve(store, &mut queue, &flushes)));
    drop(flushes);
    let flusher = flusher.join();
    let why = match (served, flusher) {
        (Ok(Ok(())), Ok(())) => "every handle was dropped".to_owned(),
        (Ok(Err(why)), _) => why,
        (Err(panicked), _) => format!("its thread panicked: {}", panic_message(&*panicked)),
        (Ok(Ok(())), Err(panicked)) => {
            format!("its flusher thread panicked: {}", panic_message(&*panicked))
        }
    };
    if why != "every handle was dropped" {
        tracing::error!(error = %why, "the store writer stopped");
    }
    end.send_replace(Some(why));
    queue.close();
    drop(queue);
}

/// Carries out each request in arrival order, a flush by handing it to the flusher. Ends with
/// why if the flusher is gone.
fn serve(
    store: &Store,
    queue: &mut mpsc::Receiver<Request>,
    flushes: &std::sync::mpsc::SyncSender<Flush>,
) -> Result<(), String> {
    while let Some(request) = queue.blocking_recv() {
        match request {
            Request::Apply { batch, reply } => {
                let _ = reply.send(guarded("apply", || store.apply(batch)));
            }
            Request::Flush { deadline, reply } => {
                if let Err(std::sync::mpsc::SendError((_, reply))) = flushes.send((deadline, reply))
                {
                    let why = "its flusher thread ended".to_owned();
                    let _ = reply.send(Err(WriteError::Stopped(why.clone())));
                    return Err(why);
                }
            }
            #[cfg(test)]
            Request::Run(f) => f(),
            #[cfg(test)]
            Request::Call { call, reply } => {
                let _ = reply.send(guarded("test call", || call(store)));
            }
        }
    }
    Ok(())
}

/// The flusher thread: runs each flush the writer hands it, in order, until the writer lets go.
fn flush_each(store: &Store, flushes: &std::sync::mpsc::Receiver<Flush>) {
    for (deadline, reply) in flushes {
        let _ = reply.send(guarded("flush", || store.flush_within(deadline)));
    }
}

/// Runs one store call, a panic in it answered as an error.
fn guarded<T>(
    what: &'static str,
    call: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, WriteError> {
    match panic::catch_unwind(AssertUnwindSafe(call)) {
        Ok(done) => Ok(done?),
        Err(panicked) => Err(WriteError::Panicked {
            what,
            why: panic_message(&*panicked),
        }),
    }
}

fn panic_message(panicked: &(dyn Any + Send)) -> String {
    panicked
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panicked.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
