//! [`StoreError`]: everything that can go wrong opening, reading or writing the store.

use credex_core::merkle::ProofError;

/// Why a store operation failed.
///
/// The variants raised by [`crate::Store::apply`] for a bad batch (`Gap`, `Conflict`, `Forked`,
/// `UnknownSeq`, `WitnessRollback`, `IndexRollback`, `TooLong`, `RootMismatch`) leave the store untouched: nothing of the batch
/// is written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database i/o: {0}")]
    Sled(#[from] sled::Error),
    #[error("leaf file {}: {source}", path.display())]
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
    #[error("an earlier write failed halfway, the store must be reopened")]
    Poisoned,
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
        StoreError::Corrupt { what: what.into() }
    }
}
