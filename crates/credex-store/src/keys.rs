//! Keyspaces of the one sled tree and their key encodings.
//!
//! Every key starts with one keyspace byte. The view's indexes (`RECORD`, `SUBJECT`, `VERSION`,
//! `DUE`, `PASSED`) use these encodings too, but live in [`crate::view_index`]'s runs, not in sled. Integers are big-endian and fixed width so that
//! sled's byte order is numeric order and a range scan walks seqs, sizes and change numbers in
//! order. Origins are interned to a dense `u32` id (the registry maps name → id), so the hot keys
//! (leaf blocks, tree hashes) are 13 bytes and inline in sled. Strings that are not the last
//! component of a key carry a `u16` length prefix, which keeps one string from being a prefix of
//! another's key range.

use crate::error::StoreError;

/// Layout version, the value of the [`FORMAT`] key.
pub(crate) const FORMAT_VERSION: &str = "credex-store/8";
/// Earlier layouts this build opens, writing [`FORMAT_VERSION`] over them: `credex-store/7`
/// lacks only the view's counts (record standings read as uncounted), which the node counts
/// at start. A build of layout 7 then refuses the store by its version, not as corrupt.
pub(crate) const FORMAT_UPGRADES: &[&str] = &["credex-store/7"];

/// `FORMAT` → [`FORMAT_VERSION`].
pub(crate) const FORMAT: u8 = 0x00;
/// `ORIGIN ‖ name` → origin metadata (id, size, root, forked, evidence count).
pub(crate) const ORIGIN: u8 = 0x01;
/// `LEAF_BLOCK ‖ id ‖ first seq` → where a block of leaves lies in the origin's data file.
pub(crate) const LEAF_BLOCK: u8 = 0x02;
/// `HASH ‖ id ‖ stored-hash index` → 32-byte tree hash.
pub(crate) const HASH: u8 = 0x03;
/// `CHECKPOINT ‖ id` → latest checkpoint: size ‖ note.
pub(crate) const CHECKPOINT: u8 = 0x04;
/// `CHECKPOINT_AT ‖ id ‖ size` → checkpoint note.
pub(crate) const CHECKPOINT_AT: u8 = 0x05;
/// `WITNESS ‖ id` → last checkpoint this node cosigned: size ‖ note.
pub(crate) const WITNESS: u8 = 0x06;
/// `EVIDENCE ‖ id ‖ n` → equivocation evidence blob number n.
pub(crate) const EVIDENCE: u8 = 0x07;
/// `RECORD ‖ id ‖ record_id` → latest version, its seq, its subject keys.
pub(crate) const RECORD: u8 = 0x08;
/// `SUBJECT ‖ len16 ‖ subject ‖ id ‖ record_id` → empty.
pub(crate) const SUBJECT: u8 = 0x09;
/// `INVALID ‖ id ‖ seq` → reason.
pub(crate) const INVALID: u8 = 0x0a;
/// `QUARANTINE ‖ len16 ‖ origin ‖ seq ‖ arrival` → quarantine record.
pub(crate) const QUARANTINE: u8 = 0x0b;
/// `QUARANTINE_COUNT ‖ reason` → u64 count.
pub(crate) const QUARANTINE_COUNT: u8 = 0x0c;
/// `PEER ‖ city` → opaque peer state.
pub(crate) const PEER: u8 = 0x0d;
/// `CHANGE ‖ change seq of the block's first` → the block of view changes one batch pushed.
pub(crate) const CHANGE: u8 = 0x0e;
/// `COUNTER ‖ name` → u64.
pub(crate) const COUNTER: u8 = 0x0f;

/// `VERSION ‖ id ‖ len16 record_id ‖ version ‖ seq` → empty: every indexed version of a record.
pub(crate) const VERSION: u8 = 0x10;
/// `DUE ‖ day u32 ‖ id ‖ record_id` → empty: a record whose standing may change on that day.
pub(crate) const DUE: u8 = 0x11;
/// `ACCESS ‖ n` → access record n (append-only; see [`crate::AccessRecord`]).
pub(crate) const ACCESS: u8 = 0x12;
/// `INDEX_JOURNAL ‖ n` → the view index writes of one apply not yet in a run
/// ([`crate::view_index`]).
pub(crate) const INDEX_JOURNAL: u8 = 0x13;
/// `INDEX_RUNS` → the view index's run files, newest first, and the journal blocks they cover.
pub(crate) const INDEX_RUNS: u8 = 0x14;

/// `PASSED ‖ day u32 ‖ id ‖ record_id` → empty: a due date the view has passed, kept a while
/// after it (the engine's `changes::PASSED_KEPT_DAYS`) so the view can be stepped back to an
/// earlier day when the clock moves back.
pub(crate) const PASSED: u8 = 0x16;

/// `SUBJECT_COUNT ‖ subject tag` → u64: records in force for the subject (view index; see
/// [`crate::Standing`]).
pub(crate) const SUBJECT_COUNT: u8 = 0x15;

/// Counter holding the view's totals ([`crate::ViewCounts`] without its basis).
pub(crate) const VIEW_COUNTS: &str = "view";
/// Counter holding the basis of the view's counts.
pub(crate) const VIEW_BASIS: &str = "view-basis";
/// Counter holding the day the view was last evaluated on ([`crate::StoreReader::view_day`]).
pub(crate) const VIEW_DAY: &str = "view-day";

/// One subject's count of records in force.
pub(crate) fn subject_count(tag: &crate::SubjectTag) -> [u8; 1 + crate::SUBJECT_TAG_LEN] {
    let mut k = [0; 1 + crate::SUBJECT_TAG_LEN];
    k[0] = SUBJECT_COUNT;
    k[1..].copy_from_slice(tag);
    k
}

/// The counter holding how many of `origin`'s entries are listed invalid.
pub(crate) fn invalid_counter(origin: &str) -> String {
    format!("{INVALID_COUNTER}{origin}")
}

/// Prefix of the per-origin counters of entries listed invalid.
pub(crate) const INVALID_COUNTER: &str = "invalid/";

/// Counter holding the next quarantine arrival number.
pub(crate) const ARRIVAL_COUNTER: &str = "quarantine-arrival";

/// Longest origin, record id, subject key, reason code or peer name accepted, in bytes. Far
/// above any real value; it exists so the `u16` length prefixes can never overflow and no
/// single key grows without bound.
pub const MAX_NAME_LEN: usize = 1024;

/// Refuses a key component longer than [`MAX_NAME_LEN`].
pub(crate) fn check_len(what: &'static str, value: &str) -> Result<(), StoreError> {
    if value.len() <= MAX_NAME_LEN {
        return Ok(());
    }
    let shown: String = value.chars().take(40).collect();
    Err(StoreError::TooLong {
        what,
        value: format!("{shown}…"),
        len: value.len(),
        max: MAX_NAME_LEN,
    })
}

/// `prefix ‖ name`.
pub(crate) fn named(prefix: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(prefix);
    k.extend_from_slice(name.as_bytes());
    k
}

/// `prefix ‖ id`.
pub(crate) fn id(prefix: u8, id: u32) -> [u8; 5] {
    let mut k = [0; 5];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// `prefix ‖ id ‖ n`.
pub(crate) fn id_u64(prefix: u8, id: u32, n: u64) -> [u8; 13] {
    let mut k = [0; 13];
    k[0] = prefix;
    k[1..5].copy_from_slice(&id.to_be_bytes());
    k[5..].copy_from_slice(&n.to_be_bytes());
    k
}

/// `prefix ‖ id ‖ s`, with `s` last and so unprefixed.
pub(crate) fn id_str(prefix: u8, id: u32, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + s.len());
    k.push(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(s.as_bytes());
    k
}

/// `prefix ‖ n`.
pub(crate) fn u64_key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// `prefix ‖ len16 ‖ s`: the scan prefix of everything under one string.
fn len_prefixed(prefix: u8, s: &str, extra: usize) -> Vec<u8> {
    debug_assert!(
        s.len() <= MAX_NAME_LEN,
        "caller checks key component lengths"
    );
    let mut k = Vec::with_capacity(3 + s.len() + extra);
    k.push(prefix);
    // Checked against MAX_NAME_LEN before any key is built, so it fits in u16.
    k.extend_from_slice(&(s.len() as u16).to_be_bytes());
    k.extend_from_slice(s.as_bytes());
    k
}

/// Scan prefix of one subject's index entries.
pub(crate) fn subject_prefix(subject: &str) -> Vec<u8> {
    len_prefixed(SUBJECT, subject, 0)
}

/// One subject index entry.
pub(crate) fn subject(subject: &str, id: u32, record_id: &str) -> Vec<u8> {
    let mut k = len_prefixed(SUBJECT, subject, 4 + record_id.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(record_id.as_bytes());
    k
}

/// Splits the `id ‖ record_id` tail off a subject index key whose prefix is `prefix_len` long.
pub(crate) fn split_subject(key: &[u8], prefix_len: usize) -> Option<(u32, String)> {
    let tail = key.get(prefix_len..)?;
    let id = u32::from_be_bytes(tail.get(..4)?.try_into().ok()?);
    let record_id = String::from_utf8(tail[4..].to_vec()).ok()?;
    Some((id, record_id))
}

/// Scan prefix of one record's version index entries.
pub(crate) fn versions_prefix(id: u32, record_id: &str) -> Vec<u8> {
    let mut k = len_prefixed(VERSION, record_id, 4 + 16);
    // The origin id goes first so one origin's records sort together; the record id is
    // length-prefixed so one id is never a prefix of another's range.
    k.splice(1..1, id.to_be_bytes());
    k
}

/// One version index entry.
pub(crate) fn version(id: u32, record_id: &str, version: u64, seq: u64) -> Vec<u8> {
    let mut k = versions_prefix(id, record_id);
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// One due-date entry.
pub(crate) fn due(day: u32, id: u32, record_id: &str) -> Vec<u8> {
    dated(DUE, day, id, record_id)
}

/// One passed due-date entry.
pub(crate) fn passed(day: u32, id: u32, record_id: &str) -> Vec<u8> {
    dated(PASSED, day, id, record_id)
}

/// A `DUE` or `PASSED` key.
fn dated(space: u8, day: u32, id: u32, record_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + record_id.len());
    k.push(space);
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(record_id.as_bytes());
    k
}

/// The `(day, id, record_id)` of a due-date key, `DUE` or `PASSED`.
pub(crate) fn split_dated(key: &[u8]) -> Option<(u32, u32, String)> {
    let rest = key.get(1..).filter(|_| matches!(key[0], DUE | PASSED))?;
    let day = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let id = u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?);
    let record_id = String::from_utf8(rest.get(8..)?.to_vec()).ok()?;
    Some((day, id, record_id))
}

/// Scan prefix of one origin's quarantine entries.
pub(crate) fn quarantine_prefix(origin: &str) -> Vec<u8> {
    len_prefixed(QUARANTINE, origin, 0)
}

/// Scan prefix of the quarantine entries of one origin's seq.
pub(crate) fn quarantine_seq_prefix(origin: &str, seq: u64) -> Vec<u8> {
    let mut k = len_prefixed(QUARANTINE, origin, 16);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// One quarantine entry.
pub(crate) fn quarantine(origin: &str, seq: u64, arrival: u64) -> Vec<u8> {
    let mut k = len_prefixed(QUARANTINE, origin, 16);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&arrival.to_be_bytes());
    k
}

/// The `(origin, seq, arrival)` of a quarantine key.
pub(crate) fn split_quarantine(key: &[u8]) -> Option<(String, u64, u64)> {
    let rest = key.strip_prefix(&[QUARANTINE])?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let origin = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
    let nums = rest.get(2 + len..)?;
    if nums.len() != 16 {
        return None;
    }
    let seq = u64::from_be_bytes(nums[..8].try_into().ok()?);
    let arrival = u64::from_be_bytes(nums[8..].try_into().ok()?);
    Some((origin, seq, arrival))
}

/// The trailing big-endian `u64` of a fixed-width key.
pub(crate) fn trailing_u64(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[start..].try_into().ok()?))
}

/// The smallest key strictly greater than `key`, to start a scan after it.
pub(crate) fn after(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_sort_numerically() {
        let seqs = [0u64, 1, 255, 256, 65_535, 65_536, 1 << 40, u64::MAX];
        for pair in seqs.windows(2) {
            assert!(id_u64(HASH, 7, pair[0]) < id_u64(HASH, 7, pair[1]));
            assert!(u64_key(CHANGE, pair[0]) < u64_key(CHANGE, pair[1]));
        }
        // All of origin 7's keys sort before any of origin 8's.
        assert!(id_u64(HASH, 7, u64::MAX) < id_u64(HASH, 8, 0));
    }

    #[test]
    fn one_subject_is_never_a_prefix_of_another() {
        // Without the length prefix "uscc:9" would scan into "uscc:91...".
        let short = subject_prefix("uscc:9");
        let long = subject("uscc:91", 0, "r1");
        assert!(!long.starts_with(&short));
        assert!(subject("uscc:9", 0, "r1").starts_with(&short));
    }

    #[test]
    fn subject_keys_split_back() {
        let prefix = subject_prefix("id:430102199003077777");
        let key = subject("id:430102199003077777", 3, "CS-17");
        assert_eq!(
            split_subject(&key, prefix.len()),
            Some((3, "CS-17".to_owned()))
        );
    }

    #[test]
    fn version_keys_sort_by_version_and_stay_within_their_record() {
        assert!(version(1, "R", 2, 9) < version(1, "R", 10, 3));
        assert!(version(1, "R", 2, 9).starts_with(&versions_prefix(1, "R")));
        assert!(!version(1, "R1", 1, 0).starts_with(&versions_prefix(1, "R")));
        assert!(!version(2, "R", 1, 0).starts_with(&versions_prefix(1, "R")));
        assert_eq!(
            split_dated(&due(20270601, 3, "CS-17")),
            Some((20270601, 3, "CS-17".to_owned()))
        );
        assert!(due(20270531, 9, "Z") < due(20270601, 0, "A"));
    }

    #[test]
    fn quarantine_keys_split_back() {
        let key = quarantine("credex/mid-yangtze/wuhan", 42, 7);
        assert_eq!(
            split_quarantine(&key),
            Some(("credex/mid-yangtze/wuhan".to_owned(), 42, 7))
        );
        assert!(key.starts_with(&quarantine_prefix("credex/mid-yangtze/wuhan")));
        assert!(!key.starts_with(&quarantine_prefix("credex/mid-yangtze/wu")));
        assert_eq!(split_quarantine(&key[..key.len() - 1]), None);
    }

    #[test]
    fn overlong_names_are_refused() {
        assert!(check_len("origin", &"a".repeat(MAX_NAME_LEN)).is_ok());
        let err = check_len("origin", &"a".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "origin \"{}…\" is 1025 bytes, longer than the limit of 1024",
                "a".repeat(40)
            )
        );
    }
}
