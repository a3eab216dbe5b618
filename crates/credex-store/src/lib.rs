//! credex-store: the node's persistence, and the only crate that knows sled (DESIGN.md
//! "Storage"). Per-origin logs with their RFC 6962 tree hashes, checkpoints, witness state,
//! equivocation evidence, the record and subject indexes, invalid and quarantined entries, peer
//! state and the view change feed, behind a narrow API: readers on [`Store`], and one
//! [`WriteBatch`] per applied batch committed by [`Store::apply`].
//!
//! # Layout
//! - `store`: [`Store`] — opening, the in-memory origin table, every reader, flushing.
//! - `apply`: [`Store::apply`] — checks a batch, computes tree hashes and roots, writes it
//!   atomically.
//! - `batch`: the [`WriteBatch`] builder and [`QuarantineRecord`].
//! - `records`: [`Store::records`] — paged listing of the record index.
//! - `keys`: the keyspaces and their key encodings (the table below is their summary).
//! - `hashes`: tree hashes stored in pages of 256 by stored-hash index, and the readers over
//!   them ([`OriginHashes`] for proofs, the batch overlay for appends).
//! - `codec`: binary value encodings.
//! - `error`: [`StoreError`].
//!
//! # One tree, prefixed keyspaces
//! Everything lives in sled's default tree; the first key byte names the keyspace. One batch is
//! then one `Tree::apply_batch`, which sled recovers atomically after a crash (the log records
//! the batch as a unit). Several trees would need a multi-tree transaction for the same
//! guarantee, which costs conflict tracking and an extra copy of every write, for nothing: the
//! store has a single writer. Integers in keys are big-endian and fixed width so scans run in
//! numeric order; origins are interned to a dense `u32` id so leaf and hash keys are 13 bytes.
//! Tree hashes are packed 256 to a value, so a batch adds about one key per entry (its leaf)
//! plus a few hash pages, not three keys per entry.
//!
//! | byte | key                                    | value                                          |
//! |------|----------------------------------------|------------------------------------------------|
//! | 0x00 | —                                      | layout version `credex-store/1`                |
//! | 0x01 | origin name                            | id u32, size u64, root, forked u8, evidence u64 |
//! | 0x02 | id, seq                                | SignedEntry leaf bytes, verbatim               |
//! | 0x03 | id, stored-hash index / 256            | up to 256 tree hashes (Go sumdb `tlog` layout) |
//! | 0x04 | id                                     | latest checkpoint: size u64 ‖ note             |
//! | 0x05 | id, size                               | checkpoint note (history)                      |
//! | 0x06 | id                                     | witness state: size u64 ‖ cosigned note        |
//! | 0x07 | id, n                                  | equivocation evidence blob n                   |
//! | 0x08 | id, record id                          | latest version u64, seq u64, subject keys      |
//! | 0x09 | len16 subject, id, record id           | empty                                          |
//! | 0x0a | id, seq                                | invalid reason                                 |
//! | 0x0b | len16 origin, seq, arrival             | reason, detail, leaf, received from, at (ms)   |
//! | 0x0c | reason code                            | quarantine count u64                           |
//! | 0x0d | peer city                              | opaque peer state                              |
//! | 0x0e | change seq                             | opaque view change                             |
//! | 0x0f | counter name                           | u64 (next quarantine arrival)                  |
//!
//! Quarantine keys carry the origin name rather than an id: a rejected entry may claim any
//! origin, and that must not register it.
//!
//! # Writes, durability and the single writer
//! [`Store::apply`] checks the whole batch first (appends continue each log exactly at its
//! size; index and invalid marks name stored seqs; witness state never goes back), computes the
//! stored tree hashes of every appended leaf — reading hashes computed earlier in the same batch
//! from an in-memory overlay, so a batch reads only O(log n) committed hashes — and the new roots,
//! then writes everything, metadata included, in one sled batch. Nothing is written if any check
//! fails. Group commit: apply does not fsync; the node calls [`Store::flush`] or
//! [`Store::flush_async`] once per batch before acknowledging anything in it.
//!
//! Each [`Store`] assumes it is the only writer of its database (sled also locks the directory
//! against a second process). Applies are serialised by a mutex, and on that basis per-origin
//! size, root and forked flag are kept in memory, loaded at open and updated after each
//! successful apply, so [`Store::origin_state`] costs no I/O. sled blocks readers while it
//! applies a batch, so a reader sees a batch whole or not at all.
//!
//! # Crash consistency
//! A store reopened after the process was killed at any point holds a prefix of the applied
//! batches that includes every flushed one. [`Store::open`] also checks that each origin's
//! metadata agrees with its log and its stored hashes give the recorded root.
//! `tests/crash.rs` kills a writer process mid-write repeatedly and checks all of this.

mod apply;
mod batch;
mod codec;
mod error;
mod hashes;
mod keys;
mod records;
mod store;

#[cfg(test)]
mod tests;

pub use apply::Applied;
pub use batch::{QuarantineRecord, WriteBatch};
pub use credex_core::merkle::Hash;
pub use error::StoreError;
pub use hashes::OriginHashes;
pub use keys::MAX_NAME_LEN;
pub use store::{
    OriginState, Quarantined, RecordLocation, Store, StoreOptions, StoredNote, SubjectHit,
};
