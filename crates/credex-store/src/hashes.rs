//! Tree hash storage: every stored hash at its stored-hash index (the Go sumdb `tlog` layout
//! that `tlog_tiles` implements), packed [`PAGE`] hashes to a sled value.
//!
//! Appending leaf n adds hashes at consecutive indexes from `stored_hash_index(0, n)`, so an
//! origin's stored hashes form one append-only array; paging it means a batch of 512 entries
//! (about 1,000 hashes) writes four or five keys instead of a thousand, and a proof still reads
//! O(log n) keys and recomputes nothing. Page p holds indexes `[256p, 256p + 256)`; only the
//! last page of an origin is partial, and a batch rewrites it whole.

use std::cell::RefCell;

use credex_core::merkle::{Hash, HashReader, ProofError};
use sled::IVec;
use tlog_tiles::tlog::Error as TlogError;

use crate::error::StoreError;
use crate::keys;

/// Stored hashes per page: 8 KiB values, the C2SP tile width.
pub(crate) const PAGE: u64 = 256;
const HASH_LEN: usize = 32;

pub(crate) fn page_key(id: u32, page: u64) -> [u8; 13] {
    keys::id_u64(keys::HASH, id, page)
}

/// Why a hash could not be read.
#[derive(Debug)]
enum Failure {
    Missing(u64),
    MalformedPage(u64),
    Sled(sled::Error),
}

/// Reads committed hashes of one origin, keeping the last page fetched: tree hash and proof
/// reads ask for sorted indexes that cluster in a few pages.
struct PageCursor<'a> {
    db: &'a sled::Db,
    id: u32,
    page: Option<(u64, IVec)>,
}

impl<'a> PageCursor<'a> {
    fn new(db: &'a sled::Db, id: u32) -> PageCursor<'a> {
        PageCursor { db, id, page: None }
    }

    fn get(&mut self, index: u64) -> Result<Hash, Failure> {
        let page = index / PAGE;
        if self.page.as_ref().is_none_or(|(p, _)| *p != page) {
            let value = self
                .db
                .get(page_key(self.id, page))
                .map_err(Failure::Sled)?
                .ok_or(Failure::Missing(index))?;
            if value.len() % HASH_LEN != 0 || value.len() > PAGE as usize * HASH_LEN {
                return Err(Failure::MalformedPage(page));
            }
            self.page = Some((page, value));
        }
        let (_, value) = self.page.as_ref().expect("fetched above");
        let at = (index % PAGE) as usize * HASH_LEN;
        let bytes = value
            .get(at..at + HASH_LEN)
            .ok_or(Failure::Missing(index))?;
        Ok(Hash(bytes.try_into().expect("slice of HASH_LEN")))
    }
}

/// [`HashReader`] over one origin's committed tree hashes, for roots and proofs.
///
/// Stored hashes never change once written (logs are append-only), so reads need no snapshot:
/// every hash a proof for a committed size asks for is there and final. A sled failure surfaces
/// as `tlog::Error::InvalidInput` because the trait's error type has no I/O case.
///
/// It holds its own handle of the database, so it outlives no reopen of the store (see
/// `reopen`): one made while the store was closed after a failure reads nothing.
#[derive(Debug, Clone)]
pub struct OriginHashes {
    /// `None` while the store is closed, waiting to be reopened.
    pub(crate) db: Option<sled::Db>,
    /// `None` for an origin the store does not hold.
    pub(crate) id: Option<u32>,
}

impl HashReader for OriginHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let Some(id) = self.id else {
            return if indexes.is_empty() {
                Ok(Vec::new())
            } else {
                Err(TlogError::IndexesNotInTree)
            };
        };
        let Some(db) = &self.db else {
            return Err(TlogError::InvalidInput(
                "the store is closed, waiting to be reopened".to_owned(),
            ));
        };
        let mut cursor = PageCursor::new(db, id);
        indexes
            .iter()
            .map(|&i| {
                cursor.get(i).map_err(|f| match f {
                    Failure::Missing(_) => TlogError::IndexesNotInTree,
                    Failure::MalformedPage(_) => TlogError::MalformedHash,
                    Failure::Sled(e) => {
                        TlogError::InvalidInput(format!("reading tree hash {i}: {e}"))
                    }
                })
            })
            .collect()
    }
}

/// An origin's hashes as a batch sees them: committed pages below `tail_start`, the hashes the
/// batch computed from there on. Later appends and the new root read the batch's own hashes
/// here, since they are not in sled yet.
pub(crate) struct Overlay<'a> {
    db: &'a sled::Db,
    id: u32,
    origin: &'a str,
    tail_start: u64,
    tail: &'a [Hash],
    /// The real cause when a read fails, which `HashReader`'s error type cannot carry.
    failure: RefCell<Option<StoreError>>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(
        db: &'a sled::Db,
        id: u32,
        origin: &'a str,
        tail_start: u64,
        tail: &'a [Hash],
    ) -> Overlay<'a> {
        Overlay {
            db,
            id,
            origin,
            tail_start,
            tail,
            failure: RefCell::new(None),
        }
    }

    /// The store error behind a failed tree computation.
    pub(crate) fn into_error(self, e: ProofError) -> StoreError {
        self.failure.into_inner().unwrap_or(StoreError::Merkle {
            origin: self.origin.to_owned(),
            source: e,
        })
    }

    fn fail(&self, f: Failure) -> TlogError {
        let origin = self.origin;
        *self.failure.borrow_mut() = Some(match f {
            Failure::Missing(i) => {
                StoreError::corrupt(format!("origin {origin}: tree hash {i} is missing"))
            }
            Failure::MalformedPage(p) => {
                StoreError::corrupt(format!("origin {origin}: tree hash page {p} is malformed"))
            }
            Failure::Sled(e) => StoreError::Sled(e),
        });
        TlogError::IndexesNotInTree
    }
}

impl HashReader for Overlay<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut cursor = PageCursor::new(self.db, self.id);
        indexes
            .iter()
            .map(|&i| match i.checked_sub(self.tail_start) {
                Some(offset) => usize::try_from(offset)
                    .ok()
                    .and_then(|o| self.tail.get(o).copied())
                    .ok_or_else(|| self.fail(Failure::Missing(i))),
                None => cursor.get(i).map_err(|f| self.fail(f)),
            })
            .collect()
    }
}

/// Adds to `batch` the pages holding `tail`, the hashes at `[tail_start, tail_start + len)`.
/// A page already partly filled is rewritten with its committed hashes first.
pub(crate) fn write_tail(
    db: &sled::Db,
    batch: &mut sled::Batch,
    id: u32,
    origin: &str,
    tail_start: u64,
    tail: &[Hash],
) -> Result<(), StoreError> {
    let mut index = tail_start;
    let mut rest = tail;
    while !rest.is_empty() {
        let page = index / PAGE;
        let slot = (index % PAGE) as usize;
        let take = rest.len().min(PAGE as usize - slot);
        let mut value = Vec::with_capacity((slot + take) * HASH_LEN);
        if slot > 0 {
            let committed = db.get(page_key(id, page))?.unwrap_or_default();
            if committed.len() != slot * HASH_LEN {
                return Err(StoreError::corrupt(format!(
                    "origin {origin}: tree hash page {page} holds {} bytes, expected {}",
                    committed.len(),
                    slot * HASH_LEN
                )));
            }
            value.extend_from_slice(&committed);
        }
        for h in &rest[..take] {
            value.extend_from_slice(&h.0);
        }
        batch.insert(&page_key(id, page)[..], value);
        index += take as u64;
        rest = &rest[take..];
    }
    Ok(())
}
