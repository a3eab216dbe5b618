//! CPU-bound work on every core: a slice cut into one chunk per core, each mapped on a scoped
//! thread, the results joined in order. The indexer verifies entries this way, the publish
//! path signs them and the store compresses leaf blocks; all run on a blocking thread already,
//! so the scoped threads take nothing from the async runtime.

use std::sync::OnceLock;

/// Entries fewer than this are verified or signed on the calling thread: spawning costs more
/// than it saves.
pub const PARALLEL_MIN: usize = 64;

/// The cores this process may use, read once: `available_parallelism` reads the cgroup's CPU
/// quota from `/sys` on every call, which was 1.7 % of `bench publish`'s samples when each
/// batch asked.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f(offset, chunk)` over `items` cut into one chunk per core (the whole slice on the caller's
/// thread below `parallel_from` items or on one core), each chunk's results in order, the
/// chunks' in order. A panic in `f` is resumed on the caller.
pub fn map_chunks<T, R, F>(items: &[T], parallel_from: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &[T]) -> Vec<R> + Sync,
{
    let threads = cores();
    if threads == 1 || items.len() < parallel_from.max(2) {
        return f(0, items);
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(n, c)| s.spawn(move || f(n * chunk, c)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_map_in_order_with_their_offsets() {
        for len in [0, 1, PARALLEL_MIN - 1, PARALLEL_MIN, 1000, 1001] {
            let items: Vec<usize> = (0..len).collect();
            let mapped = map_chunks(&items, PARALLEL_MIN, |offset, chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        assert_eq!(offset + i, v, "an item's offset is its index");
                        v * 2
                    })
                    .collect()
            });
            assert_eq!(mapped, items.iter().map(|v| v * 2).collect::<Vec<_>>());
        }
    }
}
