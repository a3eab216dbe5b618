//! [`StoreError`]: everything that can go wrong opening, reading or writing the store.

use credex_core::merkle::ProofError;

/// Why a store operation failed.
///
/// The variants raised by [`crate::Store::apply`] for a bad batch (`Gap`, `Conflict`, `Forked`,
/// `UnknownSeq`, `UnknownRecord`, `WitnessRollback`, `IndexRollback`, `TooLong`, `RootMismatch`) leave the store untouched: nothing of the batch
/// is written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database i/o: {0}")]
    Sled(#[from] sled::Error),
    /// A leaf data file, a view index run file or their folders.
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store {} is in use: another process or Store holds its lock", path.display())]
    Locked { path: std::path::PathBuf },
    #[error("store is corrupt: {what}")]
    Corrupt { what: String },
    #[error("store format is {found:?}, this build reads {expected:?}")]
    UnsupportedFormat {
        found: String,
        expected: &'static str,
    },
    #[error("origin {origin}: append at seq {got} leaves a gap, the log holds {expected} entries")]
    Gap {
        origin: String,
        expected: u64,
        got: u64,
    },
    #[error("origin {origin}: seq {seq} is already stored, the log holds {size} entries")]
    Conflict { origin: String, seq: u64, size: u64 },
    #[error("origin {origin} is marked forked, its log takes no more entries")]
    Forked { origin: String },
    #[error("origin {origin}: {what} names seq {seq}, but the log holds {size} entries")]
    UnknownSeq {
        origin: String,
        what: &'static str,
        seq: u64,
        size: u64,
    },
    #[error("origin {origin}: record {record_id:?} is not indexed, it has no standing to set")]
    UnknownRecord { origin: String, record_id: String },
    #[error(
        "origin {origin}: witness state is at size {stored}, refusing to go back to size {got}"
    )]
    WitnessRollback {
        origin: String,
        stored: u64,
        got: u64,
    },
    #[error("origin {origin}: the view has indexed {indexed} entries, refusing to mark {got}")]
    IndexRollback {
        origin: String,
        indexed: u64,
        got: u64,
    },
    #[error("{what} {value:?} is {len} bytes, longer than the limit of {max}")]
    TooLong {
        what: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error("origin {origin}: merkle tree: {source}")]
    Merkle {
        origin: String,
        #[source]
        source: ProofError,
    },
    #[error(
        "origin {origin}: the batch leaves a tree of size {size} with root {got}, the required root is {want}"
    )]
    RootMismatch {
        origin: String,
        size: u64,
        got: credex_core::merkle::Hash,
        want: credex_core::merkle::Hash,
    },
    /// Refused before anything was written: the store's volume has less free space than the
    /// margin kept free (see the `space` module). Writes are taken again once it has more.
    #[error(
        "disk full: {} has {} free, below the {} kept free for the store; writes resume when space returns",
        path.display(), crate::space::mib(*free), crate::space::mib(*needed)
    )]
    DiskFull {
        path: std::path::PathBuf,
        /// Bytes free to this process on the volume.
        free: u64,
        /// Bytes that must be free for a write to be attempted (the margin).
        needed: u64,
    },
    /// A write or flush failed inside sled, or a flush outlasted its deadline: the database
    /// handle is closed and the next write reopens it once space allows.
    #[error("storage failed ({why}); the store reopens itself when the disk has room again")]
    Failed { why: String },
    #[error("flushing the store took longer than {} s; the store reopens itself on the next write", after.as_secs())]
    FlushTimeout { after: std::time::Duration },
}

impl StoreError {
    /// The volume is full: the watermark refused the write, or the file system answered
    /// ENOSPC (or EDQUOT) to a write that got past it.
    pub fn is_disk_full(&self) -> bool {
        let full = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        };
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::Io { source, .. } => full(source),
            StoreError::Sled(sled::Error::Io(e)) => full(e),
            _ => false,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
        StoreError::Corrupt { what: what.into() }
    }
}
