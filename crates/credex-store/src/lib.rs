//! credex-store: the node's persistence, and the only crate that knows sled (DESIGN.md
//! "Storage"). Per-origin logs with their RFC 6962 tree hashes, checkpoints, witness state,
//! equivocation evidence, the record and subject indexes, invalid and quarantined entries, peer
//! state and the view change feed, behind a narrow API: readers on [`StoreReader`], and one
//! [`WriteBatch`] per applied batch committed by [`Store::apply`], the database's one writer.
//!
//! # Layout
//! - `store`: [`Store`] and [`StoreReader`] — opening, the in-memory origin table, every
//!   reader, flushing.
//! - `apply`: [`Store::apply`] — checks a batch, computes tree hashes and roots, writes its
//!   leaves to their files and the rest atomically to sled.
//! - `batch`: the [`WriteBatch`] builder and [`QuarantineRecord`].
//! - `records`: [`StoreReader::records`] — paged listing of the record index.
//! - `view_index`: the view's indexes (record, version, subject, due date) as a log-structured
//!   merge tree — a memtable journalled in sled, sorted run files merged on a thread of their
//!   own — because sled charges about 230 bytes of disk and a node rewrite per random insert.
//! - `keys`: the keyspaces and their key encodings (the table below is their summary).
//! - `leaves`: the per-origin leaf data files of zstd-compressed blocks, the block index kept
//!   in sled, and the cache of decompressed blocks.
//! - `hashes`: the tree hashes of subtrees of 256 leaves and more kept in pages of 256 (the
//!   lower ones computed from the leaves when asked for), and the readers over them
//!   ([`OriginHashes`] for roots and proofs, the batch overlay for appends).
//! - `codec`: binary value encodings.
//! - `runs`: the sorted run files of the view's indexes (an LSM's immutable level: blocks,
//!   fence index, Bloom filter), their block cache, and the k-way merge of runs.
//! - `space`: the free-space watermark checked before every write ([`Space`]).
//! - `standing`: the view's counts kept by the writer: each record's [`Standing`], the totals
//!   ([`ViewCounts`]) and the records in force per subject.
//! - `reopen`: the reopen, in place, of a database handle a write or flush failed on.
//! - `tamper`: `Store::tamper_leaf`, fault injection for tests and the fault suite (feature
//!   `test-support`; not in the daemon).
//! - `error`: [`StoreError`].
//!
//! # Leaves in files, everything else in one sled tree
//! The store's directory holds sled's files and `leaves/<id>.dat`, one append-only file per
//! origin (by interned id) holding its leaves, the SignedEntry bytes, in seq order in
//! zstd-compressed blocks of about 64 KiB of leaves; a block never spans two batches. A leaf is
//! written once and read often, by seq or in runs; sled, log-structured, rewrites the B-tree
//! nodes around every insert and keeps their old copies until it cleans them, where a flat file
//! keeps the leaf's bytes once (`examples/append_throughput.rs`: about 1,400 bytes on disk per
//! 577-byte entry with leaves in sled, about 880 without), and the entries of one log share
//! most of their structure, which a block of them compresses away (ARCHITECTURE.md
//! "Performance" has the figures). Where each block lies is in sled (keyspace 0x02, one key a
//! block), so the committed size, the block index and the tree hashes change in one atomic sled
//! batch and sled alone says which bytes of a file are committed. Readers `pread` a block
//! through handles opened once and shared and decompress it, keeping the last few decompressed;
//! committed bytes never change, so a read takes no lock beyond the short one on the origin
//! table that gives it the committed size.
//!
//! Everything else lives in sled's default tree; the first key byte names the keyspace. One
//! batch is then one `Tree::apply_batch`, which sled recovers atomically after a crash (the
//! log records the batch as a unit). Several trees would need a multi-tree transaction for the
//! same guarantee, which costs conflict tracking and an extra copy of every write, for nothing:
//! the store has a single writer. Integers in keys are big-endian and fixed width so scans run
//! in numeric order; origins are interned to a dense `u32` id so block and hash keys are 13
//! bytes. Only the tree hashes of subtrees of 256 leaves and more are kept, packed 256 to a
//! value, and leaves are indexed by block, so a batch of 256 appends writes a handful of sled
//! keys for the log, not one or three per entry. sled's own
//! page compression is off: it costs a fresh zstd context per log message, which the view's
//! indexer and publish pay per entry (ARCHITECTURE.md "Performance").
//!
//! | byte | key                                    | value                                          |
//! |------|----------------------------------------|------------------------------------------------|
//! | 0x00 | —                                      | layout version `credex-store/8` (7 opens, as 8) |
//! | 0x01 | origin name                            | id u32, size u64, root, forked u8, evidence u64, indexed u64 |
//! | 0x02 | id, seq of the block's first leaf      | leaf block: start u64, end u64 in `leaves/<id>.dat`, count u32, bytes decompressed u32 |
//! | 0x03 | id, kept-hash index / 256              | up to 256 kept tree hashes: the chunk tree's, in the Go sumdb `tlog` layout (`hashes`) |
//! | 0x04 | id                                     | latest checkpoint: size u64 ‖ note             |
//! | 0x05 | id, size                               | checkpoint note (history)                      |
//! | 0x06 | id                                     | witness state: size u64 ‖ cosigned note        |
//! | 0x07 | id, n                                  | equivocation evidence blob n                   |
//! | 0x08 | id, record id                          | *(view index)* latest version u64, seq u64, subject keys, standing (`standing`) |
//! | 0x09 | len16 subject, id, record id           | *(view index)* empty                           |
//! | 0x0a | id, seq                                | invalid reason                                 |
//! | 0x0b | len16 origin, seq, arrival             | reason, detail, leaf, received from, at (ms)   |
//! | 0x0c | reason code                            | quarantine count u64                           |
//! | 0x0d | peer city                              | opaque peer state                              |
//! | 0x0e | change seq of the block's first         | the view changes one batch pushed: count u32, raw length u32, zstd of each as a byte string |
//! | 0x0f | counter name                           | u64 (next quarantine arrival; entries listed invalid per origin); the view's totals; their basis |
//! | 0x10 | id, len16 record id, version, seq      | *(view index)* empty: every version of a record (history) |
//! | 0x11 | day u32, id, record id                 | *(view index)* empty: a record whose standing may change that day |
//! | 0x12 | access n u64                           | access record: at (ms), who, rpc, subject, purpose (append-only) |
//! | 0x13 | journal block n u64                    | the view index writes of one apply not yet in a run (zstd) |
//! | 0x14 | —                                      | the view index's runs, newest first, and the journal blocks they cover |
//! | 0x15 | subject tag (8 bytes)                  | *(view index)* records in force for the subject, big-endian in 1–8 bytes (`standing`) |
//!
//! The keyspaces marked *(view index)* are not in sled: their keys and values, so encoded, are
//! in the run files `index/<n>.run` and the memtable (`view_index`).
//!
//! Quarantine keys carry the origin name rather than an id: a rejected entry may claim any
//! origin, and that must not register it (its leaf stays in the quarantine value).
//!
//! Layout `credex-store/1` kept every leaf as a sled value under 0x02; `credex-store/2` had no
//! indexed mark (every appended entry was indexed in its own batch); `credex-store/3` kept one
//! view change per key; `credex-store/4` kept the leaves uncompressed, each leaf's end offset
//! under 0x02 (256 to a value); `credex-store/5` kept every tree hash (about two an entry) and
//! the view change blocks uncompressed; `credex-store/6` kept the view's indexes in sled. A
//! database in that or
//! any other layout is refused with [`StoreError::UnsupportedFormat`]; there is no migration (a
//! node can resync its peers' logs into a new store, its own log from a peer that holds it).
//!
//! # Writes, durability and the single writer
//! [`Store::apply`] checks the whole batch first (appends continue each log exactly at its
//! size; index and invalid marks name stored seqs; witness state never goes back), computes the
//! tree hashes of every appended leaf — reading hashes computed earlier in the same batch from
//! an in-memory overlay, the committed ones from the kept pages and the cached leaf hashes of
//! the log's last chunk, so a batch reads only O(log n) committed hashes — and the new roots,
//! and keeps those of subtrees of 256 leaves and more.
//! Nothing is written if any check fails. Then it writes each origin's new leaves, compressed
//! into blocks, with one positioned write at the committed end of its file, `fdatasync`s the
//! file, and only then applies everything else, metadata and block index included, as one sled
//! batch. Group commit:
//! sled is not flushed by apply; the node calls [`Store::flush_within`] (or [`Store::flush`]) once
//! per batch before acknowledging anything in it, which is sled's flush alone.
//!
//! Why the leaf files are synced inside apply rather than in flush: sled flushes by itself too
//! (every 500 ms, and whenever a log buffer fills), so a batch can become durable in sled before
//! anyone calls flush. If the files were synced only in flush, a power loss in that window
//! would leave sled with a size whose leaves never reached the disk — a store that no longer
//! opens. Syncing before sled even sees the batch rules this out for a power loss as for a
//! kill, and costs no extra fsync: the node's pattern is apply then flush, two syncs (file,
//! sled) either way. What it costs is that apply blocks on the file's sync, so callers on an
//! async runtime should run apply on a blocking thread, as they should for sled's writes.
//!
//! The types make the single writer hold: opening a database gives its one [`Store`], which
//! is not `Clone` and carries the writes ([`Store::apply`], the flushes), so whoever owns it is
//! the only writer; everyone else holds a [`StoreReader`] ([`Store::reader`], cheap to clone),
//! which has every reader and no write. The writer reads through its `Store` (it derefs to
//! [`StoreReader`]). sled also locks the directory against a second process, and the leaf files
//! are opened only after that lock is held. Applies are serialised by a mutex besides, and on
//! that basis per-origin size, root, forked flag and data file are kept in memory, loaded at
//! open and updated after each successful apply, so [`StoreReader::origin_state`] costs no
//! I/O. sled blocks readers while it applies a batch, and the origin table is write-locked
//! across that, so a reader sees a batch whole or not at all; leaf readers bound every seq by
//! the committed size they read from the table.
//!
//! # A full disk
//! [`Store::apply`] first checks the volume's free space against [`StoreOptions::min_free`]
//! and refuses with [`StoreError::DiskFull`] below it, having written nothing, so that sled and
//! the leaf files do not meet ENOSPC in normal operation (`space` says why that matters with
//! sled 0.34). If one does anyway, or a flush fails or outlasts [`Store::flush_within`]'s
//! deadline, the handle is marked failed and the next write with enough space reopens the
//! database in place, as a restart would, without the process restarting (`reopen`).
//!
//! # Crash consistency
//! A store reopened after the process was killed at any point holds a prefix of the applied
//! batches that includes every flushed one. The leaf files are never behind sled: a batch's
//! leaves are written (and synced) before its sled write starts, and file writes survive a
//! killed process in the page cache. They are often ahead: a batch whose leaves were written
//! but whose sled write never became durable leaves a torn tail past the committed end, which
//! [`Store::open`] truncates before anything can be written at those offsets again (a failed
//! apply truncates its own writes, or marks the handle failed so that the next write reopens
//! the store, which truncates). A file shorter than
//! its committed log, or missing, is reported as [`StoreError::Corrupt`]. Open also checks
//! that sled's leaf blocks hold exactly the recorded size, that the leaves of the last chunk
//! (the last 256 or fewer, their blocks decompressed) are in the file and, if the chunk is
//! complete, hash to its kept hash, and that the kept hashes and those leaves give the recorded
//! root. The lower tree hashes are computed from leaves the file holds before sled commits, so
//! they need no durability of their own. The view index's writes are journalled in the batch's
//! sled write, and a run file is synced, with its directory, before sled lists it; open deletes
//! run files sled does not list and replays the journal blocks the listed runs do not cover
//! (`view_index`), so the index holds exactly the batches sled recovered.
//!
//! On power loss the same holds as far as the file system and disk honour `fdatasync` and
//! sled's `fsync`: a flushed batch is durable in both, and an unflushed one is either whole in
//! sled (its leaves were synced before) or absent from it (its leaves, if on disk, are a torn
//! tail). A new origin's file is created and the directory synced before sled registers it.
//! `tests/crash.rs` kills a writer process mid-write repeatedly and checks all of this; it
//! cannot simulate a power loss.

mod apply;
mod batch;
mod cache;
mod codec;
mod error;
mod hashes;
mod keys;
mod leaves;
mod records;
mod reopen;
mod runs;
mod space;
mod standing;
mod store;
#[cfg(any(test, feature = "test-support"))]
mod tamper;
mod view_index;

#[cfg(test)]
mod tests;

pub use apply::{Applied, QUARANTINE_FULL, QUARANTINE_PER_SEQ};
pub use batch::{AccessRecord, QuarantineRecord, WriteBatch};
pub use credex_core::merkle::Hash;
pub use error::StoreError;
pub use hashes::OriginHashes;
pub use keys::MAX_NAME_LEN;
pub use leaves::{PackedBlock, PackedRun, WireBlock};
pub use space::Space;
pub use standing::{SUBJECT_TAG_LEN, Standing, SubjectTag, ViewCounts};
pub use store::{
    OriginState, Quarantined, RecordLocation, Store, StoreOptions, StoreReader, StoredNote,
    SubjectHit,
};
pub use view_index::IndexSizes;
