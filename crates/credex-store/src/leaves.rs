//! Leaf storage outside sled: per origin one append-only data file, `leaves/<id>.dat`, holding
//! the origin's leaves concatenated in seq order, and each leaf's end offset in sled, packed
//! [`PAGE`] to a value under `LEAF_END ‖ id ‖ seq / 256`.
//!
//! Why the offsets live in sled rather than in a second file: they are then committed in the
//! same atomic batch as the origin's size, so sled alone says which file bytes are committed
//! (`end(size - 1)`), there is no second file whose tail can tear, and an apply syncs one file
//! per origin instead of two. They cost 8 bytes an entry, one page value rewritten per batch.
//!
//! Write order (see the crate docs, "Crash consistency"): an apply writes the leaves at the
//! committed end of the file and `fdatasync`s it before sled sees the batch, so sled can never
//! hold, in memory or on disk, a size whose leaves are not already durable in the file. Bytes
//! past the committed end are a batch that never committed; open truncates them before anything
//! can be written at those offsets again.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sled::IVec;

use crate::error::StoreError;
use crate::keys;
use crate::store::OriginTable;

/// End offsets per sled value: 2 KiB values, one per 256 entries.
pub(crate) const PAGE: u64 = 256;
const END_LEN: usize = 8;
/// Largest single read `leaves` makes; a longer range is read in several.
const READ_CHUNK: u64 = 4 << 20;

pub(crate) fn page_key(id: u32, page: u64) -> [u8; 13] {
    keys::id_u64(keys::LEAF_END, id, page)
}

/// The folder of the data files, under the store's directory.
pub(crate) fn dir(store: &Path) -> PathBuf {
    store.join("leaves")
}

/// The data file of origin id `id`.
pub(crate) fn file_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id}.dat"))
}

/// One origin's data file, opened once and shared by every reader and the writer: reads are
/// positioned (`pread`), so they need no lock and no seek.
#[derive(Debug)]
pub(crate) struct LeafFile {
    path: PathBuf,
    file: File,
}

impl LeafFile {
    fn io(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates the (empty) data file of a newly registered origin. A file already there is
    /// left from a batch that registered this id and never committed: its bytes are nobody's.
    pub(crate) fn create(dir: &Path, id: u32) -> Result<LeafFile, StoreError> {
        let path = file_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(LeafFile { path, file })
    }

    /// Writes `data` at `at`, the committed end, and makes it durable. On failure the file is
    /// cut back to `at` (see [`LeafFile::truncate`]).
    pub(crate) fn append(&self, data: &[u8], at: u64) -> Result<(), StoreError> {
        self.file
            .write_all_at(data, at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))
    }

    /// Cuts the file back to `len` bytes, so that nothing past the committed end is ever
    /// overwritten in place with other bytes.
    pub(crate) fn truncate(&self, len: u64) -> Result<(), StoreError> {
        self.file.set_len(len).map_err(|e| self.io(e))
    }

    pub(crate) fn len(&self) -> Result<u64, StoreError> {
        Ok(self.file.metadata().map_err(|e| self.io(e))?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64, origin: &str) -> Result<(), StoreError> {
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                StoreError::corrupt(format!(
                    "origin {origin}: leaf file {} ends before byte {}",
                    self.path.display(),
                    at + buf.len() as u64
                ))
            } else {
                self.io(e)
            }
        })
    }
}

/// Reads one origin's committed end offsets from sled, keeping the last page fetched: reads
/// walk seqs in order.
pub(crate) struct Ends<'a> {
    db: &'a sled::Db,
    id: u32,
    origin: &'a str,
    page: Option<(u64, IVec)>,
}

impl<'a> Ends<'a> {
    pub(crate) fn new(db: &'a sled::Db, id: u32, origin: &'a str) -> Ends<'a> {
        Ends {
            db,
            id,
            origin,
            page: None,
        }
    }

    /// End offset of leaf `seq`, `None` if no end is stored for it.
    fn try_end(&mut self, seq: u64) -> Result<Option<u64>, StoreError> {
        let page = seq / PAGE;
        if self.page.as_ref().is_none_or(|(p, _)| *p != page) {
            let Some(value) = self.db.get(page_key(self.id, page))? else {
                return Ok(None);
            };
            if value.len() % END_LEN != 0 || value.len() > PAGE as usize * END_LEN {
                return Err(StoreError::corrupt(format!(
                    "origin {}: leaf end page {page} is malformed",
                    self.origin
                )));
            }
            self.page = Some((page, value));
        }
        let (_, value) = self.page.as_ref().expect("fetched above");
        let at = (seq % PAGE) as usize * END_LEN;
        Ok(value
            .get(at..at + END_LEN)
            .map(|b| u64::from_be_bytes(b.try_into().expect("slice of END_LEN"))))
    }

    fn end(&mut self, seq: u64) -> Result<u64, StoreError> {
        self.try_end(seq)?.ok_or_else(|| {
            StoreError::corrupt(format!(
                "origin {}: the end offset of leaf {seq} is missing",
                self.origin
            ))
        })
    }

    /// Bytes the first `size` leaves occupy: where the committed part of the file ends.
    pub(crate) fn committed_end(&mut self, size: u64) -> Result<u64, StoreError> {
        match size {
            0 => Ok(0),
            n => self.end(n - 1),
        }
    }

    /// Whether sled holds an end offset for `seq`, which it must not at the committed size.
    pub(crate) fn has_end(&mut self, seq: u64) -> Result<bool, StoreError> {
        Ok(self.try_end(seq)?.is_some())
    }
}

/// Reads one origin's committed leaves: end offsets from sled, bytes from the file. The caller
/// bounds every seq by the committed size it read from the origin table.
pub(crate) struct Reader<'a> {
    pub(crate) ends: Ends<'a>,
    file: &'a LeafFile,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(
        db: &'a sled::Db,
        id: u32,
        origin: &'a str,
        file: &'a LeafFile,
    ) -> Reader<'a> {
        Reader {
            ends: Ends::new(db, id, origin),
            file,
        }
    }

    /// The byte range of leaf `seq`, which starts at `start`.
    fn span(&mut self, seq: u64, start: u64) -> Result<(u64, u64), StoreError> {
        let end = self.ends.end(seq)?;
        if end < start {
            return Err(StoreError::corrupt(format!(
                "origin {}: leaf {seq} ends at {end}, before it starts at {start}",
                self.ends.origin
            )));
        }
        Ok((start, end))
    }

    /// Leaf `seq`, read straight into the returned buffer.
    pub(crate) fn leaf(&mut self, seq: u64) -> Result<Vec<u8>, StoreError> {
        let start = self.ends.committed_end(seq)?;
        let (start, end) = self.span(seq, start)?;
        let mut leaf = vec![0; len(start, end)?];
        self.file
            .read_exact_at(&mut leaf, start, self.ends.origin)?;
        Ok(leaf)
    }

    /// Leaves `start..start + n`. Each read covers many leaves (up to [`READ_CHUNK`] bytes) and
    /// is then split: one `pread` per leaf would cost a syscall each, dearer than the memcpy
    /// of a few hundred bytes that splitting costs.
    pub(crate) fn leaves(&mut self, start: u64, n: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << 16));
        let mut at = self.ends.committed_end(start)?;
        let mut ends = Vec::new();
        let mut buf = Vec::new();
        let mut seq = start;
        while seq < start + n {
            ends.clear();
            let mut last = at;
            while seq < start + n {
                let (_, end) = self.span(seq, last)?;
                if !ends.is_empty() && end - at > READ_CHUNK {
                    break;
                }
                ends.push(end);
                last = end;
                seq += 1;
            }
            buf.resize(len(at, last)?, 0);
            self.file.read_exact_at(&mut buf, at, self.ends.origin)?;
            let mut from = 0;
            for &end in &ends {
                let to = (end - at) as usize;
                out.push(buf[from..to].to_vec());
                from = to;
            }
            at = last;
        }
        Ok(out)
    }
}

fn len(start: u64, end: u64) -> Result<usize, StoreError> {
    usize::try_from(end - start)
        .map_err(|_| StoreError::corrupt(format!("leaf of {} bytes", end - start)))
}

/// Adds to `batch` the pages holding the end offsets `ends` of leaves `first..`. A page already
/// partly filled is rewritten with its committed offsets first.
pub(crate) fn write_ends(
    db: &sled::Db,
    batch: &mut sled::Batch,
    id: u32,
    origin: &str,
    first: u64,
    ends: &[u64],
) -> Result<(), StoreError> {
    let mut seq = first;
    let mut rest = ends;
    while !rest.is_empty() {
        let page = seq / PAGE;
        let slot = (seq % PAGE) as usize;
        let take = rest.len().min(PAGE as usize - slot);
        let mut value = Vec::with_capacity((slot + take) * END_LEN);
        if slot > 0 {
            let committed = db.get(page_key(id, page))?.unwrap_or_default();
            if committed.len() != slot * END_LEN {
                return Err(StoreError::corrupt(format!(
                    "origin {origin}: leaf end page {page} holds {} bytes, expected {}",
                    committed.len(),
                    slot * END_LEN
                )));
            }
            value.extend_from_slice(&committed);
        }
        for end in &rest[..take] {
            value.extend_from_slice(&end.to_be_bytes());
        }
        batch.insert(&page_key(id, page)[..], value);
        seq += take as u64;
        rest = &rest[take..];
    }
    Ok(())
}

/// Opens the data file of every origin in `table` (by id), cutting off any torn tail: bytes past
/// the committed end come from a batch whose sled write never became durable. A file shorter
/// than its committed end is corruption. Data files of ids no origin holds (a batch that
/// registered an origin and never committed) are deleted.
pub(crate) fn open_all(
    db: &sled::Db,
    dir: &Path,
    table: &OriginTable,
) -> Result<Vec<Arc<LeafFile>>, StoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(io(dir))?;
        sync_dir(dir.parent().unwrap_or(dir))?;
    }
    let mut files = Vec::with_capacity(table.names.len());
    for (id, name) in (0u32..).zip(&table.names) {
        let size = table.by_name[name].state.size;
        let path = file_path(dir, id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => LeafFile { path, file },
            // Origins registered by a checkpoint alone have a file too; a missing one is
            // only harmless while there is nothing that should be in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && size == 0 => {
                let file = LeafFile::create(dir, id)?;
                sync_dir(dir)?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::corrupt(format!(
                    "origin {name}: leaf file {} is missing, the log holds {size} entries",
                    path.display()
                )));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let end = Ends::new(db, id, name).committed_end(size)?;
        let held = file.len()?;
        if held < end {
            return Err(StoreError::corrupt(format!(
                "origin {name}: leaf file {} holds {held} bytes, its {size} entries need {end}",
                file.path.display()
            )));
        }
        if held > end {
            file.truncate(end)?;
            file.file.sync_data().map_err(|e| file.io(e))?;
        }
        files.push(Arc::new(file));
    }
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = item.map_err(io(dir))?.path();
        let stray = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".dat"))
            .and_then(|id| id.parse::<u32>().ok())
            .is_some_and(|id| id as usize >= files.len());
        if stray {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(files)
}

/// Makes the creation of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })
}
