//! Binary value encodings: fixed-width big-endian integers and `u32`-length-prefixed byte
//! strings, decoded strictly (trailing bytes are corruption too).
//!
//! Hand-rolled rather than serde so the hot values (origin metadata, record index) are a few
//! dozen bytes with no allocation-heavy framework in the apply path, and so the on-disk format is
//! written down here and cannot drift with a serde upgrade.

use crate::OriginState;
use crate::batch::{AccessRecord, QuarantineRecord};
use crate::error::StoreError;
use crate::standing::Standing;
use credex_core::merkle::Hash;

/// Appends fields to a value.
#[derive(Debug, Default)]
pub(crate) struct Enc(Vec<u8>);

impl Enc {
    pub(crate) fn with_capacity(n: usize) -> Enc {
        Enc(Vec::with_capacity(n))
    }

    pub(crate) fn u8(mut self, v: u8) -> Enc {
        self.0.push(v);
        self
    }

    pub(crate) fn u32(mut self, v: u32) -> Enc {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(mut self, v: u64) -> Enc {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn raw(mut self, v: &[u8]) -> Enc {
        self.0.extend_from_slice(v);
        self
    }

    /// A byte string with a `u32` length prefix.
    pub(crate) fn bytes(self, v: &[u8]) -> Enc {
        // Values come from bounded protocol messages; a 4 GiB field cannot reach the store.
        let len = u32::try_from(v.len()).expect("value field under 4 GiB");
        self.u32(len).raw(v)
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads fields off a value; every method returns `None` on a short or malformed value.
#[derive(Debug)]
pub(crate) struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    pub(crate) fn new(v: &'a [u8]) -> Dec<'a> {
        Dec(v)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    pub(crate) fn hash(&mut self) -> Option<Hash> {
        Some(Hash(self.take(32)?.try_into().ok()?))
    }

    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    pub(crate) fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    /// Whether nothing is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    /// `Some(v)` only if nothing is left over.
    pub(crate) fn end<T>(&self, v: T) -> Option<T> {
        self.0.is_empty().then_some(v)
    }
}

/// A packed block of byte strings, one sled value: `count u32 ‖ raw length u32 ‖` one zstd
/// frame (level 1) of the strings, each `len u32 ‖ bytes`. Used for the view changes one batch
/// pushed (stored under the change seq of the first) and the view index writes of one batch
/// (its journal block, `view_index`). A change names a record, its origin and its standing;
/// the changes of one batch share most of that, which compression takes away
/// (ARCHITECTURE.md "Where a node's disk goes").
pub(crate) fn encode_packed(changes: &[Vec<u8>]) -> Vec<u8> {
    let count = u32::try_from(changes.len()).expect("fewer than 2^32 strings in a batch");
    let size = changes.iter().map(|c| 4 + c.len()).sum::<usize>();
    let raw = changes
        .iter()
        .fold(Enc::with_capacity(size), |e, c| e.bytes(c))
        .finish();
    let raw_len = u32::try_from(raw.len()).expect("a batch's changes are below 4 GiB");
    let compressed = zstd::block::compress(&raw, 1).expect("zstd compresses into a fresh buffer");
    Enc::with_capacity(8 + compressed.len())
        .u32(count)
        .u32(raw_len)
        .raw(&compressed)
        .finish()
}

/// Most bytes a packed block decompresses to: far above any batch's changes, so that a damaged
/// length cannot ask for an absurd allocation.
const MAX_CHANGES_RAW: u32 = 256 << 20;

/// How many strings a block written by [`encode_packed`] holds, read from its header.
pub(crate) fn packed_count(v: &[u8]) -> Option<u32> {
    Dec::new(v).u32()
}

/// The strings of a block written by [`encode_packed`].
pub(crate) fn decode_packed(v: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut d = Dec::new(v);
    let count = d.u32()?;
    let raw_len = d.u32().filter(|&l| l <= MAX_CHANGES_RAW)?;
    let raw = zstd::block::decompress(d.rest(), raw_len as usize).ok()?;
    if raw.len() != raw_len as usize {
        return None;
    }
    let mut d = Dec::new(&raw);
    let changes = (0..count)
        .map(|_| d.bytes().map(<[u8]>::to_vec))
        .collect::<Option<Vec<_>>>()?;
    d.end(changes)
}

/// What the store keeps per origin besides its log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OriginMeta {
    pub(crate) id: u32,
    pub(crate) state: OriginState,
    /// Number of evidence blobs stored, so the next one's key.
    pub(crate) evidence: u64,
    /// Entries `0..indexed` of the log are in the view's indexes (see
    /// [`crate::WriteBatch::set_indexed`]); never more than the size.
    pub(crate) indexed: u64,
}

impl OriginMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Enc::with_capacity(61)
            .u32(self.id)
            .u64(self.state.size)
            .raw(&self.state.root.0)
            .u8(u8::from(self.state.forked))
            .u64(self.evidence)
            .u64(self.indexed)
            .finish()
    }

    pub(crate) fn decode(v: &[u8]) -> Option<OriginMeta> {
        let mut d = Dec::new(v);
        let id = d.u32()?;
        let size = d.u64()?;
        let root = d.hash()?;
        let forked = match d.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let evidence = d.u64()?;
        let indexed = d.u64()?;
        d.end(OriginMeta {
            id,
            state: OriginState { size, root, forked },
            evidence,
            indexed,
        })
    }
}

/// A checkpoint or witness state: the tree size and the verbatim note.
pub(crate) fn encode_sized_note(size: u64, note: &[u8]) -> Vec<u8> {
    Enc::with_capacity(8 + note.len())
        .u64(size)
        .raw(note)
        .finish()
}

pub(crate) fn decode_sized_note(v: &[u8]) -> Option<(u64, Vec<u8>)> {
    let mut d = Dec::new(v);
    let size = d.u64()?;
    Some((size, d.rest().to_vec()))
}

/// The record index value: where the latest version of a record lives and which subject keys
/// index it (kept so a newer version with other subjects can drop the stale ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordValue {
    pub(crate) version: u64,
    pub(crate) seq: u64,
    pub(crate) subjects: Vec<String>,
    /// The record's standing in the view as counted (`standing`).
    pub(crate) standing: Standing,
}

impl RecordValue {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let count = u32::try_from(self.subjects.len()).expect("subject count under 2^32");
        let mut e =
            Enc::with_capacity(20 + self.subjects.iter().map(|s| 4 + s.len()).sum::<usize>())
                .u64(self.version)
                .u64(self.seq)
                .u32(count);
        for s in &self.subjects {
            e = e.bytes(s.as_bytes());
        }
        self.standing.encode(e).finish()
    }

    pub(crate) fn decode(v: &[u8]) -> Option<RecordValue> {
        let mut d = Dec::new(v);
        let version = d.u64()?;
        let seq = d.u64()?;
        let count = d.u32()?;
        let subjects = (0..count).map(|_| d.string()).collect::<Option<Vec<_>>>()?;
        let standing = Standing::decode(&mut d)?;
        d.end(RecordValue {
            version,
            seq,
            subjects,
            standing,
        })
    }
}

impl QuarantineRecord {
    /// The value stored under the quarantine key, which already holds origin and seq.
    pub(crate) fn encode_value(&self) -> Vec<u8> {
        Enc::with_capacity(
            32 + self.reason.len() + self.detail.len() + self.leaf.len() + self.received_from.len(),
        )
        .bytes(self.reason.as_bytes())
        .bytes(self.detail.as_bytes())
        .bytes(&self.leaf)
        .bytes(self.received_from.as_bytes())
        .u64(self.received_at_ms)
        .finish()
    }

    pub(crate) fn decode_value(origin: String, seq: u64, v: &[u8]) -> Option<QuarantineRecord> {
        let mut d = Dec::new(v);
        let reason = d.string()?;
        let detail = d.string()?;
        let leaf = d.bytes()?.to_vec();
        let received_from = d.string()?;
        let received_at_ms = d.u64()?;
        d.end(QuarantineRecord {
            origin,
            seq,
            reason,
            detail,
            leaf,
            received_from,
            received_at_ms,
        })
    }
}

impl AccessRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Enc::with_capacity(
            28 + self.who.len() + self.rpc.len() + self.subject.len() + self.purpose.len(),
        )
        .u64(self.at_ms as u64)
        .bytes(self.who.as_bytes())
        .bytes(self.rpc.as_bytes())
        .bytes(self.subject.as_bytes())
        .bytes(self.purpose.as_bytes())
        .finish()
    }

    pub(crate) fn decode(v: &[u8]) -> Option<AccessRecord> {
        let mut d = Dec::new(v);
        let at_ms = d.u64()? as i64;
        let who = d.string()?;
        let rpc = d.string()?;
        let subject = d.string()?;
        let purpose = d.string()?;
        d.end(AccessRecord {
            at_ms,
            who,
            rpc,
            subject,
            purpose,
        })
    }
}

/// Decodes a `u64` counter value.
pub(crate) fn decode_u64(v: &[u8]) -> Option<u64> {
    let mut d = Dec::new(v);
    let n = d.u64()?;
    d.end(n)
}

/// Decodes a UTF-8 string value.
pub(crate) fn decode_str(v: &[u8]) -> Option<String> {
    String::from_utf8(v.to_vec()).ok()
}

/// Turns a failed decode into [`StoreError::Corrupt`] naming what was being read.
pub(crate) fn or_corrupt<T>(v: Option<T>, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::corrupt(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(size: u64, forked: bool) -> OriginState {
        OriginState {
            size,
            root: Hash([size as u8; 32]),
            forked,
        }
    }

    #[test]
    fn origin_meta_round_trips() {
        for meta in [
            OriginMeta {
                id: 0,
                state: OriginState::EMPTY,
                evidence: 0,
                indexed: 0,
            },
            OriginMeta {
                id: u32::MAX,
                state: state(1 << 40, true),
                evidence: 3,
                indexed: 1 << 39,
            },
        ] {
            let v = meta.encode();
            assert_eq!(v.len(), 61);
            assert_eq!(OriginMeta::decode(&v), Some(meta));
        }
    }

    #[test]
    fn origin_meta_rejects_bad_values() {
        let mut v = OriginMeta {
            id: 1,
            state: state(5, false),
            evidence: 0,
            indexed: 5,
        }
        .encode();
        assert_eq!(OriginMeta::decode(&v[..60]), None, "short");
        let mut long = v.clone();
        long.push(0);
        assert_eq!(OriginMeta::decode(&long), None, "trailing byte");
        v[44] = 2;
        assert_eq!(
            OriginMeta::decode(&v),
            None,
            "forked flag other than 0 or 1"
        );
    }

    #[test]
    fn record_value_round_trips() {
        for rec in [
            RecordValue {
                version: 1,
                seq: 0,
                subjects: vec![],
                standing: Standing::Uncounted,
            },
            RecordValue {
                version: 7,
                seq: 123_456,
                subjects: vec![
                    "uscc:91430100MA4L00003Q".into(),
                    "id:43010219900307777X".into(),
                ],
                standing: Standing::InForce {
                    list: 2,
                    subject: [9; crate::SUBJECT_TAG_LEN],
                },
            },
        ] {
            let v = rec.encode();
            assert_eq!(RecordValue::decode(&v), Some(rec));
            assert_eq!(RecordValue::decode(&v[..v.len() - 1]), None);
        }
        // A value written before standings were kept reads as uncounted.
        let excluded = RecordValue {
            version: 2,
            seq: 5,
            subjects: vec!["id:43010219900307777X".into()],
            standing: Standing::Excluded,
        };
        let v = excluded.encode();
        assert_eq!(RecordValue::decode(&v), Some(excluded.clone()));
        assert_eq!(
            RecordValue::decode(&v[..v.len() - 1]).map(|r| r.standing),
            Some(Standing::Uncounted)
        );
    }

    #[test]
    fn quarantine_value_round_trips() {
        let rec = QuarantineRecord {
            origin: "credex/mid-yangtze/hefei".into(),
            seq: 9,
            reason: "bad_signature".into(),
            detail: "signature by key 1a2b does not verify".into(),
            leaf: vec![0, 1, 2, 255],
            received_from: "wuhan".into(),
            received_at_ms: 1_760_000_000_000,
        };
        let v = rec.encode_value();
        let back = QuarantineRecord::decode_value(rec.origin.clone(), rec.seq, &v);
        assert_eq!(back, Some(rec));
        assert_eq!(
            QuarantineRecord::decode_value("o".into(), 0, &v[..v.len() - 1]),
            None
        );
    }

    #[test]
    fn sized_notes_keep_the_note_verbatim() {
        let note = b"credex/x/y\n5\nAAAA\n\n\xe2\x80\x94 key sig\n";
        let v = encode_sized_note(5, note);
        assert_eq!(decode_sized_note(&v), Some((5, note.to_vec())));
        assert_eq!(decode_sized_note(&v[..7]), None);
    }
}
