//! The free-space watermark: writes are refused while the store's volume has less free space
//! than a margin, before anything touches sled or a leaf file.
//!
//! Why a margin and not ENOSPC: sled 0.34 keeps the first failed log write as a global error
//! of its database handle and answers every later write, and any read that would consolidate a
//! page, with it; nothing clears it but a reopen. A write that meets a full disk halfway also
//! leaves a leaf file with a torn tail. Refusing every write while free space is below the
//! margin keeps both from happening in normal operation: a refused write has changed nothing,
//! and once space returns the same check passes and writes resume, with no reopen. The margin
//! must exceed what one batch can write (its leaves, sled's log buffers and a segment sled may
//! start), so the check runs once per batch rather than per byte. When another process fills
//! the volume past the margin while a write is under way, sled or the file meets ENOSPC after
//! all; the store then closes its handle and reopens it (see `reopen`).

use std::path::Path;

use crate::error::StoreError;

/// Free space on the volume holding `path`, in bytes available to this (unprivileged)
/// process: `f_bavail`, not `f_bfree`, since root's reserve is not ours to fill.
pub(crate) fn free_bytes(path: &Path) -> Result<u64, StoreError> {
    let stat = rustix::fs::statvfs(path).map_err(|e| StoreError::Io {
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Refuses with [`StoreError::DiskFull`] unless at least `min_free` bytes are free on the
/// volume holding `path`.
pub(crate) fn check(path: &Path, min_free: u64) -> Result<u64, StoreError> {
    let free = free_bytes(path)?;
    if free < min_free {
        return Err(StoreError::DiskFull {
            path: path.to_owned(),
            free,
            needed: min_free,
        });
    }
    Ok(free)
}

/// What [`crate::StoreReader::space`] reports: the volume's free space against the margin, and
/// whether the database handle has failed and waits to be reopened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    /// Bytes free on the store's volume.
    pub free: u64,
    /// The margin: writes are refused while `free` is below it.
    pub min_free: u64,
    /// Why the database handle failed, while it waits to be reopened.
    pub failed: Option<String>,
}

impl Space {
    /// Writes are refused for lack of space.
    pub fn full(&self) -> bool {
        self.free < self.min_free
    }
}

/// `bytes` in MiB with one decimal, rounded down, for messages: free space just under the
/// margin must not read as the margin itself.
pub(crate) fn mib(bytes: u64) -> String {
    let tenths = (u128::from(bytes) * 10) >> 20;
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_rounds_down_to_one_decimal() {
        assert_eq!(mib(0), "0.0 MiB");
        assert_eq!(mib(64 << 20), "64.0 MiB");
        assert_eq!(mib((1 << 20) + (1 << 19)), "1.5 MiB");
        assert_eq!(mib((8 << 20) - 1), "7.9 MiB");
        assert_eq!(mib(u64::MAX), "17592186044415.9 MiB");
    }

    #[test]
    fn the_check_refuses_below_the_margin_with_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0, "the test's temp dir has space");
        assert!(check(dir.path(), 0).unwrap() > 0);
        match check(dir.path(), u64::MAX) {
            Err(StoreError::DiskFull {
                path,
                free: reported,
                needed,
            }) => {
                assert_eq!(path, dir.path());
                assert_eq!(needed, u64::MAX);
                assert!(reported > 0 && reported < u64::MAX);
            }
            other => panic!("expected DiskFull, got {other:?}"),
        }
    }
}
