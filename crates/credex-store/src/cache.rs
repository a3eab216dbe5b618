//! A cache of decompressed blocks bounded by bytes, least recently used first out, shared by
//! every reader of a store: the view index's run blocks ([`crate::runs::RunCache`]) and the leaf
//! blocks ([`crate::leaves::BlockCache`]). Blocks are immutable once written, so a cached one is
//! never stale; the bound is the block bytes plus [`ENTRY_BYTES`] a block for the maps.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the cache's maps cost a block, over the block's own bytes (both maps' entries and
/// their share of the trees, roughly).
pub(crate) const ENTRY_BYTES: usize = 96;

/// Blocks of type `V` under keys `K`, at most `max_bytes` of them (a block larger than that
/// alone is not kept: its reader uses it and drops it).
pub(crate) struct BlockLru<K, V> {
    max_bytes: usize,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    /// Key → the block, its bytes as charged, and when it was last used.
    blocks: BTreeMap<K, (Arc<V>, usize, u64)>,
    /// When each cached block was last used → its key: the first is the next to go.
    by_use: BTreeMap<u64, K>,
    bytes: usize,
    clock: u64,
}

impl<K, V> fmt::Debug for BlockLru<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockLru")
            .field("max_bytes", &self.max_bytes)
            .field(
                "bytes",
                &self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes,
            )
            .finish_non_exhaustive()
    }
}

impl<K: Ord + Copy, V> BlockLru<K, V> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        BlockLru {
            max_bytes,
            inner: Mutex::new(Inner {
                blocks: BTreeMap::new(),
                by_use: BTreeMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    /// Bytes charged for the blocks held now, never more than the bound it was made with.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block under `key`, marked used.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut inner = self.lock();
        inner.touch(key)
    }

    /// The block under the greatest key at most `key`, marked used, if `holds` says it is the
    /// one wanted (a block found by its first seq holds the seqs up to its end).
    pub(crate) fn get_at_most(&self, key: &K, holds: impl Fn(&K, &V) -> bool) -> Option<Arc<V>> {
        let mut inner = self.lock();
        let (found, (block, _, _)) = inner.blocks.range(..=*key).next_back()?;
        if !holds(found, block) {
            return None;
        }
        let found = *found;
        inner.touch(&found)
    }

    /// Keeps `block` under `key`, charged `bytes` (plus [`ENTRY_BYTES`]), dropping the least
    /// recently used blocks to make room. Two readers that missed the same block both put it:
    /// the second replaces the first.
    pub(crate) fn put(&self, key: K, block: Arc<V>, bytes: usize) {
        let size = bytes + ENTRY_BYTES;
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some((_, old, used)) = inner.blocks.remove(&key) {
            inner.by_use.remove(&used);
            inner.bytes -= old;
        }
        while inner.bytes + size > self.max_bytes {
            let (_, oldest) = inner
                .by_use
                .pop_first()
                .expect("bytes held means blocks held");
            let (_, old, _) = inner.blocks.remove(&oldest).expect("in both maps");
            inner.bytes -= old;
        }
        inner.clock += 1;
        inner.by_use.insert(inner.clock, key);
        inner.blocks.insert(key, (block, size, inner.clock));
        inner.bytes += size;
    }

    /// Drops every block whose key `drop` names.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn forget(&self, drop: impl Fn(&K) -> bool) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let gone: Vec<K> = inner.blocks.keys().filter(|k| drop(k)).copied().collect();
        for key in gone {
            let (_, old, used) = inner.blocks.remove(&key).expect("listed above");
            inner.by_use.remove(&used);
            inner.bytes -= old;
        }
    }
}

impl<K: Ord + Copy, V> Inner<K, V> {
    fn touch(&mut self, key: &K) -> Option<Arc<V>> {
        self.clock += 1;
        let (block, _, used) = self.blocks.get_mut(key)?;
        self.by_use.remove(used);
        *used = self.clock;
        self.by_use.insert(self.clock, *key);
        Some(Arc::clone(block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_and_the_bound_holds() {
        let cache: BlockLru<u32, u32> = BlockLru::new(3 * (100 + ENTRY_BYTES));
        for k in 0..3 {
            cache.put(k, Arc::new(k), 100);
        }
        assert_eq!(
            cache.get(&0).as_deref(),
            Some(&0),
            "0 used: 1 is now the oldest"
        );
        cache.put(3, Arc::new(3), 100);
        assert!(cache.get(&1).is_none());
        for k in [0, 2, 3] {
            assert_eq!(cache.get(&k).as_deref(), Some(&k));
        }
        assert_eq!(cache.bytes(), 3 * (100 + ENTRY_BYTES));
        // A block larger than the bound is not kept, and evicts nothing.
        cache.put(9, Arc::new(9), 10_000);
        assert!(cache.get(&9).is_none());
        assert_eq!(cache.bytes(), 3 * (100 + ENTRY_BYTES));
        // One twice the size takes two places.
        cache.put(4, Arc::new(4), 200 + ENTRY_BYTES);
        assert!(cache.bytes() <= 3 * (100 + ENTRY_BYTES));
        assert_eq!(cache.get(&4).as_deref(), Some(&4));
        assert_eq!(
            cache.get(&3).as_deref(),
            Some(&3),
            "the most recent before it stays"
        );
    }

    #[test]
    fn a_block_is_found_under_the_greatest_key_at_most_the_one_asked() {
        // Blocks of seqs [10, 20) and [20, 25), found by any seq they hold.
        let cache: BlockLru<u64, u64> = BlockLru::new(1 << 20);
        cache.put(10, Arc::new(20), 1);
        cache.put(20, Arc::new(25), 1);
        let holding = |seq: u64| cache.get_at_most(&seq, |_, end| seq < *end).map(|e| *e);
        assert_eq!(holding(9), None);
        assert_eq!(holding(10), Some(20));
        assert_eq!(holding(19), Some(20));
        assert_eq!(holding(24), Some(25));
        assert_eq!(holding(25), None, "past the last block's end");
        cache.forget(|k| *k == 10);
        assert_eq!(holding(15), None);
        assert_eq!(cache.bytes(), 1 + ENTRY_BYTES);
    }
}
