//! Before every write: the free-space watermark, and the reopen of a database handle that
//! failed, in place, without restarting the process.
//!
//! sled 0.34 keeps the first failed log write (ENOSPC, say) as its handle's global error and
//! answers every later write with it, and reads that would consolidate a page too; a flush can
//! even wait for ever on a log that will never advance. Nothing clears that but a new handle.
//! So when a sled write or flush fails, or a flush outlasts its deadline
//! ([`Store::flush_within`]), the store marks its handle failed; the next [`Store::apply`]
//! finding enough free space closes the handle and opens the directory again, exactly as a
//! restarted process would: sled recovers its log to the last complete batch, open cuts the
//! leaf files' torn tails and re-runs its consistency checks, and the origin table, writer
//! counters and change head are reloaded from what is durable. Readers keep the old handle
//! until then; while the handle is swapped they wait, and every [`StoreReader`](crate::StoreReader) (the node
//! hands them to everything but its writer) sees the new one, since it lives in the shared
//! `Inner`.
//!
//! What an unflushed batch wrote before the failure may be gone after the reopen, as after a
//! crash: callers acknowledge a batch only after its flush succeeded, so nothing acknowledged
//! is lost.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use crate::error::StoreError;
use crate::space;
use crate::store::{Counters, Store};

/// Free space a reopen waits for whatever the margin (even with the watermark off): sled's
/// open writes a snapshot and starts a log segment, and an open that meets ENOSPC can leave an
/// empty snapshot behind that no later open reads (seen with sled 0.34.7 on a full tmpfs:
/// "Read corrupted data"). Until then the failed handle stays, and reads go on through it.
pub(crate) const REOPEN_MIN_FREE: u64 = 16 << 20;

impl Store {
    /// Called by [`Store::apply`] under the writer lock, before the batch is looked at:
    /// refuses while the volume is below the margin, then reopens a failed handle once the
    /// volume has room for that.
    pub(crate) fn ready_to_write(&self, counters: &mut Counters) -> Result<(), StoreError> {
        let min_free = self.inner.options.min_free;
        if min_free > 0 {
            space::check(&self.inner.path, min_free)?;
        }
        if self.inner.poisoned.load(Ordering::Acquire) {
            space::check(&self.inner.path, min_free.max(REOPEN_MIN_FREE))?;
            self.reopen(counters)?;
        }
        Ok(())
    }

    /// Closes the failed handle and opens the store again from its directory. On failure the
    /// store stays closed (readers are refused with [`StoreError::Failed`]) and the next write
    /// tries again.
    fn reopen(&self, counters: &mut Counters) -> Result<(), StoreError> {
        let why = self
            .failure()
            .unwrap_or_else(|| "a write failed halfway".to_owned());
        let mut slot = self.inner.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.take() {
            self.retire(old);
        }
        let fresh = match Store::open_with(&self.inner.path, &self.inner.options) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!(error = %e, failure = %why, "reopening the store failed; the next write tries again");
                *self.inner.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("{why}; reopening failed: {e}"));
                return Err(e);
            }
        };
        let Ok(fresh) = Arc::try_unwrap(fresh.into_inner()) else {
            unreachable!("a store just opened has no other clone");
        };
        *slot = fresh.db.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.table_mut() = fresh
            .origins
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        *counters = fresh.writer.into_inner().unwrap_or_else(|e| e.into_inner());
        self.inner.index.replace(&fresh.index);
        self.inner
            .change_head
            .store(fresh.change_head.into_inner(), Ordering::Release);
        self.inner.poisoned.store(false, Ordering::Release);
        *self.inner.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        drop(slot);
        self.inner.reopened.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(failure = %why, "store reopened after a failure");
        Ok(())
    }

    /// Lets go of a failed handle so its directory lock is released for the reopen. A last
    /// flush first wakes anything sled has waiting on its log (a flush waits on a condition
    /// variable that only another flush attempt notifies once the log failed), and sled's drop
    /// may flush too, so both run on a thread of their own and are waited for at most the
    /// open's lock wait; should they hang, the open reports the lock still held.
    fn retire(&self, old: sled::Db) {
        let (done, finished) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("credex-store-retire".to_owned())
            .spawn(move || {
                let _ = old.flush();
                drop(old);
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = finished.recv_timeout(self.inner.options.lock_wait);
        }
    }
}
