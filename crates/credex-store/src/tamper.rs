//! Fault injection: [`Store::tamper_leaf`] makes the store serve a leaf other than the one its
//! tree hashes commit to, as a node lying about its own log would. Built only for tests and
//! with the feature `test-support` (`examples/tamper_leaf.rs`, the fault scenario
//! `deploy/fault/lying-relay.sh`); the daemon never has it.

use crate::error::StoreError;
use crate::leaves;
use crate::store::Store;

impl Store {
    /// Replaces leaf `seq` of `origin` with `leaf` and changes nothing else: the size, the root,
    /// the kept tree hashes, checkpoints and indexes stay those of the original leaf, so the
    /// store now holds a leaf whose hash is not the one it committed to. The new leaf reads back
    /// at once and after a reopen; every other leaf reads back byte for byte as before.
    ///
    /// How it is written without breaking the store's rule that committed bytes never change:
    /// the leaf's block and every later block of the origin are written again at the end of its
    /// file, then re-indexed in one sled batch (`leaves::replace_leaf`).
    ///
    /// For a store no one else is reading or writing (a stopped node's, a test's): a reader in
    /// flight could cache the block it read before the change.
    ///
    /// Open checks the leaves of the last chunk (the last 256 or fewer) against the root, so a
    /// store with one of them replaced by other bytes refuses to open, as it would after any
    /// such damage. A replaced leaf elsewhere changes the lower tree hashes computed from it
    /// (`hashes`), so the store's proofs over it no longer verify either.
    pub fn tamper_leaf(&self, origin: &str, seq: u64, leaf: &[u8]) -> Result<(), StoreError> {
        // The writer lock keeps applies out, the table's write lock readers of the origin's
        // committed state.
        let _writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let table = self.table_mut();
        let (id, size) = match table.by_name.get(origin) {
            Some(m) => (m.id, m.state.size),
            None => (0, 0),
        };
        if seq >= size {
            return Err(StoreError::UnknownSeq {
                origin: origin.to_owned(),
                what: "tampering",
                seq,
                size,
            });
        }
        let file = &table.files[id as usize];
        leaves::replace_leaf(&self.db()?, id, origin, file, size, seq, leaf)?;
        self.inner.blocks.forget(id);
        self.inner.chunks.forget(id);
        Ok(())
    }
}
