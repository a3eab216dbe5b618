//! The store's health as the engine sees it: flushes with a deadline, and what status,
//! metrics, readiness and the sync loops are told about a full or failed store.
//!
//! A full volume is not an error of the node: the store refuses writes below its free-space
//! margin (`storage.min_free_mb`) before touching anything, publishes are answered
//! `RESOURCE_EXHAUSTED` naming the disk, the sync loops stop dialling until space returns,
//! and reads go on. When space returns the same check passes and everything resumes; a store
//! whose handle failed anyway (the disk filled by another process mid-write) reopens itself
//! on the next write (credex-store `reopen`).

use std::time::Duration;

use credex_store::{Applied, Space, StoreError, WriteBatch};
use tokio::sync::watch;

use super::{Engine, EngineError};

/// How long a flush may take before the store's handle is taken for failed. A healthy flush
/// is one fsync (milliseconds, seconds on a loaded disk); sled 0.34 can wait for ever on a
/// log whose write failed, and every caller holds the engine's write or view lock meanwhile
/// (the flush itself runs on the writer's flusher thread, beside the applies behind it).
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(30);

/// How often a sync loop waiting for space looks at the volume again.
const SPACE_POLL: Duration = Duration::from_millis(500);

impl Engine {
    /// Applies `batch` on the store's writer thread (the leaf files' fdatasync, sled's batch);
    /// not flushed: [`Engine::flush_durable`] before acknowledging anything in it.
    pub(crate) async fn apply(&self, batch: WriteBatch) -> Result<Applied, EngineError> {
        Ok(self.writer.apply(batch).await?)
    }

    /// Makes every applied batch durable, on the writer's flusher thread and within
    /// [`FLUSH_DEADLINE`]. Call once per batch before acknowledging anything in it, and at
    /// shutdown.
    pub async fn flush_durable(&self) -> Result<(), EngineError> {
        Ok(self.writer.flush_within(FLUSH_DEADLINE).await?)
    }

    /// The store's volume against its margin and whether its handle has failed; updates the
    /// `credex_storage_*` and `credex_view_index_*` gauges.
    pub fn storage(&self) -> Result<Space, StoreError> {
        let space = self.store.space()?;
        self.metrics.set_storage(&space, &self.store.index_sizes());
        Ok(space)
    }

    /// Why the store takes no writes now (the volume below its margin, or a failed handle
    /// that reopens once there is room), if it does not.
    pub fn storage_refusal(&self) -> Option<String> {
        match self.storage() {
            Ok(space) if space.full() => Some(self.disk_full(&space)),
            Ok(space) => space.failed.map(|why| format!("storage failed: {why}")),
            Err(e) => Some(format!("storage: {e}")),
        }
    }

    /// What the store says when it refuses a write for lack of space, if it would now.
    pub fn storage_full(&self) -> Option<String> {
        self.storage()
            .ok()
            .filter(Space::full)
            .map(|space| self.disk_full(&space))
    }

    fn disk_full(&self, space: &Space) -> String {
        let refusal = StoreError::DiskFull {
            path: self.store.path().to_owned(),
            free: space.free,
            needed: space.min_free,
        };
        format!("storage: {refusal}")
    }

    /// Waits until the store's volume is above its margin again, or `shutdown` turns true.
    /// The sync loops wait here instead of dialling peers whose entries could not be stored.
    pub async fn wait_for_space(&self, shutdown: &mut watch::Receiver<bool>) {
        while self.storage_full().is_some() {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(SPACE_POLL) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
