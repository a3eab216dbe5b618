//! Entries: encoding, Ed25519 signing with domain separation, and verification of leaves.
//!
//! # The leaf
//! An origin encodes an [`Entry`](crate::pb::Entry) once ([`encode_entry`]) and signs
//! `ENTRY_DOMAIN || entry bytes` with its log key. The Merkle leaf is the encoded
//! [`SignedEntry`](crate::pb::SignedEntry) around those bytes ([`sign_entry`]). Signed bytes
//! travel verbatim: a receiver checks the signature over the `entry` field's bytes exactly as
//! found in the leaf and keeps the leaf as it arrived. Nothing is re-encoded: prost's encoding is
//! not canonical and drops unknown fields, so a re-encoding would fail on entries from a peer
//! with a newer schema and would not be the bytes the origin's checkpoints cover.
//!
//! # The envelope has one encoding
//! The `SignedEntry` framing around the signed bytes is not itself signed, so it must leave no
//! freedom. If a relay could re-frame a leaf (append an unknown field, repeat a field, pad a
//! varint) the signature would still verify but the leaf hash would change, the receiver's Merkle
//! root would stop matching the origin's checkpoint, and an honest origin would look like it
//! equivocated. So a leaf must be exactly
//!
//! ```text
//! 0x0a varint(len) entry    field 1, entry: minimal varint length
//! 0x15 key_id (4 bytes LE)  field 2, key_id: fixed32, present even when 0
//! 0x1a 0x40 signature       field 3, signature: 64 bytes
//! ```
//!
//! and nothing else. This is what [`sign_entry`] writes, and what prost writes too whenever the
//! entry is nonempty and the key id nonzero, so any protobuf decoder reads every leaf. The
//! converse does not hold: a leaf that prost would decode but that is not in this form is
//! malformed.
//!
//! # Checks
//! [`verify_entry`] checks, in order: the key is a log key, the leaf size, the envelope, the key
//! id, the signature (`verify_strict`), then the entry: it decodes and has a record. The signature
//! comes before the entry's content so that `malformed_entry` and `no_record` only ever mean the
//! origin itself signed such an entry; a forgery is always `bad_signature`. Whether the entry's
//! origin and seq are the expected ones is the receiver's check, not this module's.

use crate::keys::{KeyAlgorithm, PublicKey, SigningKeyPair};
use crate::pb;
use prost::Message as _;

/// The domain-separation prefix of every entry signature, so that no entry signature is also a
/// valid checkpoint, cosignature or any other message signed with the same key.
pub const ENTRY_DOMAIN: &[u8] = b"credex/v1/entry\n";

/// The largest leaf a receiver accepts. A credit record is a few kilobytes; the limit bounds
/// the memory and hashing an untrusted peer can make a receiver spend on one leaf.
pub const MAX_LEAF_BYTES: usize = 256 * 1024;

/// The largest encoded entry whose leaf fits in [`MAX_LEAF_BYTES`]. An origin checks this before
/// signing, since [`sign_entry`] cannot refuse.
pub const MAX_ENTRY_BYTES: usize = MAX_LEAF_BYTES - LEAF_OVERHEAD;

const TAG_ENTRY: u8 = 0x0a;
const TAG_KEY_ID: u8 = 0x15;
const TAG_SIGNATURE: u8 = 0x1a;
const SIGNATURE_LEN: usize = 64;
/// The bytes around the entry in a leaf whose entry is at most 2 MiB (a 3-byte length varint).
const LEAF_OVERHEAD: usize = 1 + 3 + 1 + 4 + 2 + SIGNATURE_LEN;
/// Enough varint bytes for any length up to 2 MiB, far over [`MAX_LEAF_BYTES`].
const MAX_LENGTH_VARINT: usize = 3;

/// The entry's encoding, which is what gets signed. Encode once and keep the bytes: a second
/// encoding of a decoded entry is not guaranteed to be the same bytes.
pub fn encode_entry(entry: &pb::Entry) -> Vec<u8> {
    entry.encode_to_vec()
}

/// Signs encoded entry bytes and returns the encoded SignedEntry — the Merkle leaf.
///
/// `key` is the origin's log key ([`KeyAlgorithm::Ed25519`]). The leaf is only accepted by
/// [`verify_entry`] if `entry_bytes` is at most [`MAX_ENTRY_BYTES`] long.
pub fn sign_entry(key: &SigningKeyPair, entry_bytes: &[u8]) -> Vec<u8> {
    debug_assert_eq!(
        key.algorithm(),
        KeyAlgorithm::Ed25519,
        "entries are signed with a log key"
    );
    let signature = key.sign(&signed_message(entry_bytes));
    assemble_leaf(entry_bytes, key.key_id(), &signature)
}

/// The parts of a well-formed leaf, borrowed from it. Nothing here is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafParts<'a> {
    /// The signed entry bytes, verbatim.
    pub entry: &'a [u8],
    pub key_id: u32,
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// Splits a leaf into its parts, accepting only the one envelope encoding (see the module docs).
pub fn parse_leaf(leaf: &[u8]) -> Result<LeafParts<'_>, EntryError> {
    let malformed = |problem| EntryError::MalformedLeaf { problem };
    let rest = leaf
        .strip_prefix(&[TAG_ENTRY])
        .ok_or_else(|| malformed("it does not start with the entry field"))?;
    let (len, rest) = read_length(rest).map_err(malformed)?;
    if rest.len() < len {
        return Err(malformed("the entry field runs past the end of the leaf"));
    }
    let (entry, rest) = rest.split_at(len);
    let rest = rest
        .strip_prefix(&[TAG_KEY_ID])
        .ok_or_else(|| malformed("the entry field is not followed by the key id field"))?;
    let (key_id, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("the key id field is truncated"))?;
    let rest = rest
        .strip_prefix(&[TAG_SIGNATURE])
        .ok_or_else(|| malformed("the key id field is not followed by the signature field"))?;
    let rest = rest
        .strip_prefix(&[SIGNATURE_LEN as u8])
        .ok_or_else(|| malformed("the signature field is not 64 bytes"))?;
    let (signature, rest) = rest
        .split_first_chunk::<SIGNATURE_LEN>()
        .ok_or_else(|| malformed("the signature field is truncated"))?;
    if !rest.is_empty() {
        return Err(malformed("bytes follow the signature field"));
    }
    Ok(LeafParts {
        entry,
        key_id: u32::from_le_bytes(*key_id),
        signature,
    })
}

/// A leaf whose signature verified, with its entry decoded.
#[derive(Debug, Clone)]
pub struct VerifiedEntry {
    /// The SignedEntry bytes exactly as received: what is stored, relayed and hashed.
    pub leaf: Vec<u8>,
    /// The decoded entry; `record` is present. Unknown fields are kept only in `leaf`.
    pub entry: pb::Entry,
}

/// Why a leaf is not an authentic entry of the key's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("leaf is {len} bytes, over the limit of {MAX_LEAF_BYTES}")]
    Oversized { len: usize },
    #[error("malformed signed entry: {problem}")]
    MalformedLeaf { problem: &'static str },
    #[error("key {key} is a {algorithm} key, not a log key")]
    WrongKeyAlgorithm {
        key: String,
        algorithm: KeyAlgorithm,
    },
    #[error("leaf is signed by key id {found:08x}, expected {key_name}+{expected:08x}")]
    KeyIdMismatch {
        found: u32,
        expected: u32,
        key_name: String,
    },
    #[error("signature does not verify under key {key}")]
    BadSignature { key: String },
    #[error("entry bytes are not a valid Entry: {reason}")]
    MalformedEntry { reason: String },
    #[error("entry has no record")]
    NoRecord,
}

impl EntryError {
    /// Every value [`EntryError::reason_code`] returns, for registering metrics up front.
    pub const REASON_CODES: &'static [&'static str] = &[
        "oversized",
        "malformed",
        "wrong_key_algorithm",
        "unknown_key",
        "bad_signature",
        "malformed_entry",
        "no_record",
    ];

    /// A short, stable snake_case name of the error's kind, for quarantine counts and metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::MalformedLeaf { .. } => "malformed",
            Self::WrongKeyAlgorithm { .. } => "wrong_key_algorithm",
            Self::KeyIdMismatch { .. } => "unknown_key",
            Self::BadSignature { .. } => "bad_signature",
            Self::MalformedEntry { .. } => "malformed_entry",
            Self::NoRecord => "no_record",
        }
    }
}

/// Decodes and verifies one leaf with verify_strict.
pub fn verify_entry(leaf: &[u8], key: &PublicKey) -> Result<VerifiedEntry, EntryError> {
    verify_with_buffer(leaf, key, &mut Vec::new())
}

/// Verifies leaves one by one, in input order: the result for `leaves[i]` is at index `i`.
///
/// # Why this does not use `ed25519_dalek::verify_batch`
/// The fast path has to accept exactly what `verify_strict` accepts. A leaf that one node
/// appends and another quarantines splits the origin's gapless log between them, and whether a
/// leaf passes must not depend on which other leaves share its batch. `verify_batch` cannot
/// promise that for less than `verify_strict` costs:
///
/// - It checks one cofactorless equation, `Σ z_i·(R_i − [s_i]B + [k_i]A) = 0`, with 128-bit
///   coefficients `z_i` derived from a transcript of the batch. A signature whose `R` is the
///   correct `R'` plus a small-order point `T` fails `verify_strict`, yet its term `z_i·T`
///   vanishes whenever `z_i` is a multiple of `T`'s order: half of all batches for an order-2
///   `T`, and the signer can grind the message until its batch is one of them. Only the key
///   holder can make such a signature, but the key holder is exactly who would want to split
///   the consortium's view of its log. The test `verify_batch_accepts_what_verify_strict_rejects`
///   builds one.
/// - The cheap checks do not exclude it. `S` is already held canonical in both paths, and `R`
///   could be checked for a canonical encoding and for small order at the cost of a point
///   decompression, but `R' + T` is canonically encoded and of large order. What excludes it is
///   proving each `R` torsion-free, a full scalar multiplication per signature. Measured on the
///   development machine (ed25519-dalek 2.2, opt-level 2), per signature: 45-65 µs for that
///   check, 38-56 µs for `verify_strict`, 14-25 µs for `verify_batch` over batches of 256 and
///   64. Batch plus check is slower than strict verification alone. This is the known result that cofactorless
///   verification does not batch (Chalkias, Garillot and Nikolaenko, "Taming the many EdDSAs",
///   2020).
///
/// Keys need no weak-key check here: a [`PublicKey`] cannot hold a small-order key or one with a
/// small-order component. If ingest ever needs more signature throughput, the signatures are
/// independent and verify in parallel.
pub fn verify_entries(leaves: &[&[u8]], key: &PublicKey) -> Vec<Result<VerifiedEntry, EntryError>> {
    let mut message = Vec::new();
    leaves
        .iter()
        .map(|leaf| verify_with_buffer(leaf, key, &mut message))
        .collect()
}

/// [`verify_entry`], assembling the signed message in `message` so a caller verifying many
/// leaves allocates once.
fn verify_with_buffer(
    leaf: &[u8],
    key: &PublicKey,
    message: &mut Vec<u8>,
) -> Result<VerifiedEntry, EntryError> {
    let key_text = || format!("{}+{:08x}", key.name(), key.key_id());
    if key.algorithm() != KeyAlgorithm::Ed25519 {
        return Err(EntryError::WrongKeyAlgorithm {
            key: key_text(),
            algorithm: key.algorithm(),
        });
    }
    if leaf.len() > MAX_LEAF_BYTES {
        return Err(EntryError::Oversized { len: leaf.len() });
    }
    let parts = parse_leaf(leaf)?;
    if parts.key_id != key.key_id() {
        return Err(EntryError::KeyIdMismatch {
            found: parts.key_id,
            expected: key.key_id(),
            key_name: key.name().to_owned(),
        });
    }
    message.clear();
    message.extend_from_slice(ENTRY_DOMAIN);
    message.extend_from_slice(parts.entry);
    if !key.verify_strict(message, parts.signature) {
        return Err(EntryError::BadSignature { key: key_text() });
    }
    let entry = pb::Entry::decode(parts.entry).map_err(|err| EntryError::MalformedEntry {
        reason: err.to_string(),
    })?;
    if entry.record.is_none() {
        return Err(EntryError::NoRecord);
    }
    Ok(VerifiedEntry {
        leaf: leaf.to_vec(),
        entry,
    })
}

fn signed_message(entry_bytes: &[u8]) -> Vec<u8> {
    [ENTRY_DOMAIN, entry_bytes].concat()
}

fn assemble_leaf(entry: &[u8], key_id: u32, signature: &[u8; SIGNATURE_LEN]) -> Vec<u8> {
    let mut leaf = Vec::with_capacity(entry.len() + LEAF_OVERHEAD);
    leaf.push(TAG_ENTRY);
    let mut len = entry.len();
    while len >= 0x80 {
        leaf.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    leaf.push(len as u8);
    leaf.extend_from_slice(entry);
    leaf.push(TAG_KEY_ID);
    leaf.extend_from_slice(&key_id.to_le_bytes());
    leaf.push(TAG_SIGNATURE);
    leaf.push(SIGNATURE_LEN as u8);
    leaf.extend_from_slice(signature);
    leaf
}

/// Reads the entry field's length varint, which must be minimal and at most
/// [`MAX_LENGTH_VARINT`] bytes.
fn read_length(bytes: &[u8]) -> Result<(usize, &[u8]), &'static str> {
    let mut len = 0;
    for (i, &byte) in bytes.iter().enumerate().take(MAX_LENGTH_VARINT) {
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err("the entry length is not minimally encoded");
            }
            return Ok((len, &bytes[i + 1..]));
        }
    }
    if bytes.len() < MAX_LENGTH_VARINT {
        Err("the entry length is truncated")
    } else {
        Err("the entry length is over the leaf size limit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
    use expect_test::{Expect, expect};
    use proptest::prelude::*;
    use sha2::{Digest, Sha512};

    const SEED: [u8; 32] = [11; 32];

    fn log_key() -> SigningKeyPair {
        SigningKeyPair::from_seed("credex/xiangjiang/changsha", KeyAlgorithm::Ed25519, SEED)
            .unwrap()
    }

    fn entry(seq: u64) -> pb::Entry {
        pb::Entry {
            origin: "changsha".into(),
            seq,
            logged_at: 1_767_225_600_000 + seq as i64,
            schema_version: 1,
            record: Some(pb::CreditRecord {
                record_id: format!("CS-{seq}"),
                version: 1,
                category: "court.dishonest_debtor".into(),
                remarks: "测试记录".into(),
                ..Default::default()
            }),
        }
    }

    fn leaf(key: &SigningKeyPair, seq: u64) -> Vec<u8> {
        sign_entry(key, &encode_entry(&entry(seq)))
    }

    #[test]
    fn sign_verify_round_trip() {
        let key = log_key();
        let leaf = leaf(&key, 7);
        let verified = verify_entry(&leaf, &key.public()).unwrap();
        assert_eq!(verified.leaf, leaf);
        assert_eq!(verified.entry, entry(7));

        // The leaf is an ordinary SignedEntry to any protobuf decoder, and is what prost writes.
        let decoded = pb::SignedEntry::decode(&leaf[..]).unwrap();
        assert_eq!(decoded.entry, encode_entry(&entry(7)));
        assert_eq!(decoded.key_id, key.key_id());
        assert_eq!(
            decoded.signature,
            key.sign(&[ENTRY_DOMAIN, &decoded.entry].concat())
        );
        assert_eq!(decoded.encode_to_vec(), leaf);
    }

    #[test]
    fn signature_is_domain_separated() {
        let key = log_key();
        let entry_bytes = encode_entry(&entry(1));
        let undomained = assemble_leaf(&entry_bytes, key.key_id(), &key.sign(&entry_bytes));
        let err = verify_entry(&undomained, &key.public()).unwrap_err();
        assert_eq!(err.reason_code(), "bad_signature");
    }

    #[test]
    fn unknown_fields_in_the_entry_survive() {
        let key = log_key();
        let mut entry_bytes = encode_entry(&entry(3));
        // Field 99 (varint 42) and field 100 (string "新"), from a newer schema.
        entry_bytes.extend_from_slice(&[0x98, 0x06, 42, 0xa2, 0x06, 3, 0xe6, 0x96, 0xb0]);
        let leaf = sign_entry(&key, &entry_bytes);
        let verified = verify_entry(&leaf, &key.public()).unwrap();
        assert_eq!(verified.leaf, leaf);
        assert_eq!(parse_leaf(&verified.leaf).unwrap().entry, entry_bytes);
        assert_eq!(verified.entry, entry(3));
        // Re-encoding the decoded entry loses them, which is why nothing is re-encoded.
        assert_ne!(encode_entry(&verified.entry), entry_bytes);
    }

    #[test]
    fn leaf_signed_by_another_key_is_a_key_id_mismatch() {
        let other =
            SigningKeyPair::from_seed("credex/xiangjiang/wuhan", KeyAlgorithm::Ed25519, [12; 32])
                .unwrap();
        let key = log_key();
        let err = verify_entry(&leaf(&other, 0), &key.public()).unwrap_err();
        assert_eq!(
            err,
            EntryError::KeyIdMismatch {
                found: other.key_id(),
                expected: key.key_id(),
                key_name: "credex/xiangjiang/changsha".into()
            }
        );
        assert_eq!(err.reason_code(), "unknown_key");
        expect!["leaf is signed by key id 9ffece80, expected credex/xiangjiang/changsha+78c14e95"]
            .assert_eq(&err.to_string());

        // Same key id, different key: the signature decides.
        let forged = assemble_leaf(&encode_entry(&entry(0)), key.key_id(), &other.sign(b"x"));
        assert_eq!(
            verify_entry(&forged, &key.public())
                .unwrap_err()
                .reason_code(),
            "bad_signature"
        );
    }

    #[test]
    fn witness_keys_do_not_verify_entries() {
        let witness = SigningKeyPair::from_seed("w1", KeyAlgorithm::CosignatureV1, SEED).unwrap();
        let err = verify_entry(&leaf(&log_key(), 0), &witness.public()).unwrap_err();
        assert_eq!(err.reason_code(), "wrong_key_algorithm");
        expect!["key w1+d5e92662 is a cosignature/v1 key, not a log key"]
            .assert_eq(&err.to_string());
    }

    #[test]
    fn entries_without_a_record_or_undecodable_are_rejected_after_the_signature() {
        let key = log_key();
        let no_record = pb::Entry {
            record: None,
            ..entry(0)
        };
        let err =
            verify_entry(&sign_entry(&key, &encode_entry(&no_record)), &key.public()).unwrap_err();
        assert_eq!(err, EntryError::NoRecord);

        let err = verify_entry(&sign_entry(&key, &[0xff, 0xff]), &key.public()).unwrap_err();
        assert_eq!(err.reason_code(), "malformed_entry");
        expect![
            "entry bytes are not a valid Entry: failed to decode Protobuf message: invalid varint"
        ]
        .assert_eq(&err.to_string());
    }

    #[test]
    fn oversized_leaves_are_rejected_before_parsing() {
        let key = log_key();
        let fits = sign_entry(&key, &vec![0; MAX_ENTRY_BYTES]);
        assert!(fits.len() <= MAX_LEAF_BYTES);
        assert_eq!(parse_leaf(&fits).unwrap().entry.len(), MAX_ENTRY_BYTES);
        let too_big = vec![0; MAX_LEAF_BYTES + 1];
        let err = verify_entry(&too_big, &key.public()).unwrap_err();
        assert_eq!(err.reason_code(), "oversized");
        expect!["leaf is 262145 bytes, over the limit of 262144"].assert_eq(&err.to_string());
    }

    fn check_leaf(leaf: &[u8], expect: Expect) {
        let key = log_key();
        let actual = match verify_entry(leaf, &key.public()) {
            Ok(verified) => format!("ok seq {}", verified.entry.seq),
            Err(err) => format!("{}: {err}", err.reason_code()),
        };
        expect.assert_eq(&actual);
    }

    /// Leaves with the right signature in every other encoding that prost would decode to the same
    /// SignedEntry, and broken ones. Only the one canonical encoding is accepted.
    #[test]
    fn envelope_has_one_encoding() {
        let key = log_key();
        let good = leaf(&key, 5);
        let parts = parse_leaf(&good).unwrap();
        let entry = parts.entry.to_vec();
        let sig = *parts.signature;
        let id = key.key_id().to_le_bytes();
        let len = u8::try_from(entry.len()).unwrap();
        assert!(len < 0x80, "the cases below assume a one-byte length");
        let field = |tag: u8, body: &[u8]| [&[tag][..], body].concat();
        let entry_field = field(TAG_ENTRY, &[&[len][..], &entry].concat());
        let key_field = field(TAG_KEY_ID, &id);
        let sig_field = field(TAG_SIGNATURE, &[&[64][..], &sig].concat());

        let prost_reads_the_same = |leaf: &[u8]| {
            pb::SignedEntry::decode(leaf).unwrap() == pb::SignedEntry::decode(&good[..]).unwrap()
        };
        let appended = [&good[..], &[0x20, 0x01]].concat();
        let reordered = [&key_field[..], &entry_field, &sig_field].concat();
        let padded_len = [
            &[TAG_ENTRY, len | 0x80, 0x00][..],
            &entry,
            &key_field,
            &sig_field,
        ]
        .concat();
        let repeated_key_id = [&good[..], &key_field].concat();
        for leaf in [&appended, &reordered, &padded_len, &repeated_key_id] {
            assert!(prost_reads_the_same(leaf));
        }

        check_leaf(&good, expect!["ok seq 5"]);
        check_leaf(
            &appended,
            expect!["malformed: malformed signed entry: bytes follow the signature field"],
        );
        check_leaf(
            &reordered,
            expect!["malformed: malformed signed entry: it does not start with the entry field"],
        );
        check_leaf(
            &padded_len,
            expect!["malformed: malformed signed entry: the entry length is not minimally encoded"],
        );
        check_leaf(
            &repeated_key_id,
            expect!["malformed: malformed signed entry: bytes follow the signature field"],
        );
        check_leaf(
            &[],
            expect!["malformed: malformed signed entry: it does not start with the entry field"],
        );
        check_leaf(
            &good[..good.len() - 1],
            expect!["malformed: malformed signed entry: the signature field is truncated"],
        );
        check_leaf(
            &good[..1],
            expect!["malformed: malformed signed entry: the entry length is truncated"],
        );
        check_leaf(
            &[TAG_ENTRY, 0xff, 0xff, 0xff, 0x01],
            expect![
                "malformed: malformed signed entry: the entry length is over the leaf size limit"
            ],
        );
        check_leaf(
            &[TAG_ENTRY, 0x80, 0x80],
            expect!["malformed: malformed signed entry: the entry length is truncated"],
        );
        check_leaf(
            &[TAG_ENTRY, 0x05, 0x00],
            expect![
                "malformed: malformed signed entry: the entry field runs past the end of the leaf"
            ],
        );
        check_leaf(
            &[&entry_field[..], &sig_field].concat(),
            expect![
                "malformed: malformed signed entry: the entry field is not followed by the key id field"
            ],
        );
        check_leaf(
            &[&entry_field[..], &key_field[..3]].concat(),
            expect!["malformed: malformed signed entry: the key id field is truncated"],
        );
        check_leaf(
            &[&entry_field[..], &key_field].concat(),
            expect![
                "malformed: malformed signed entry: the key id field is not followed by the signature field"
            ],
        );
        check_leaf(
            &[
                &entry_field[..],
                &key_field,
                &[TAG_SIGNATURE, 63],
                &sig[..63],
            ]
            .concat(),
            expect!["malformed: malformed signed entry: the signature field is not 64 bytes"],
        );
        check_leaf(
            &[&entry_field[..], &key_field, &sig_field[..40]].concat(),
            expect!["malformed: malformed signed entry: the signature field is truncated"],
        );
    }

    /// `S + l`: the same signature with a non-canonical `S`.
    fn add_group_order(s: &[u8]) -> [u8; 32] {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x10,
        ];
        let mut sum = [0; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let digit = u16::from(s[i]) + u16::from(L[i]) + carry;
            sum[i] = digit as u8;
            carry = digit >> 8;
        }
        sum
    }

    #[test]
    fn batch_of_64_names_exactly_the_bad_signatures() {
        let key = log_key();
        let public = key.public();
        let mut leaves: Vec<Vec<u8>> = (0..64).map(|seq| leaf(&key, seq)).collect();
        let resign = |leaf: &[u8], sig: [u8; 64]| {
            let parts = parse_leaf(leaf).unwrap();
            assemble_leaf(parts.entry, parts.key_id, &sig)
        };
        // A valid signature of other bytes.
        leaves[5] = resign(&leaves[5], key.sign(b"something else"));
        // A bit flipped in R.
        let mut sig = *parse_leaf(&leaves[17]).unwrap().signature;
        sig[3] ^= 0x10;
        leaves[17] = resign(&leaves[17], sig);
        // The right signature with a non-canonical S, which only a strict check rejects.
        let mut sig = *parse_leaf(&leaves[42]).unwrap().signature;
        let s = add_group_order(&sig[32..]);
        sig[32..].copy_from_slice(&s);
        leaves[42] = resign(&leaves[42], sig);

        let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
        let results = verify_entries(&refs, &public);
        assert_eq!(results.len(), 64);
        let mut bad = Vec::new();
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(verified) => {
                    assert_eq!(verified.entry.seq, i as u64);
                    assert_eq!(verified.leaf, leaves[i]);
                }
                Err(err) => {
                    assert_eq!(err.reason_code(), "bad_signature", "{i}: {err}");
                    bad.push(i);
                }
            }
        }
        assert_eq!(bad, [5, 17, 42]);
        for (i, leaf) in refs.iter().enumerate() {
            assert_eq!(
                verify_entry(leaf, &public).is_ok(),
                results[i].is_ok(),
                "{i}"
            );
        }
    }

    /// The counterexample behind `verify_entries` not batching: a signature whose R carries an
    /// order-2 component. `verify_batch` accepts it (its coefficient is even, which the signer
    /// grinds for), `verify_strict` rejects it, and so must `verify_entries`.
    #[test]
    fn verify_batch_accepts_what_verify_strict_rejects() {
        const ORDER_2: [u8; 32] = {
            let mut p_minus_1 = [0xff; 32];
            p_minus_1[0] = 0xec;
            p_minus_1[31] = 0x7f;
            p_minus_1
        };
        let key = log_key();
        let signer = SigningKey::from_bytes(&SEED);
        let nonce = SigningKey::from_bytes(&[13; 32]);
        let (a, r) = (signer.to_scalar(), nonce.to_scalar());
        let torsion = VerifyingKey::from_bytes(&ORDER_2).unwrap().to_edwards();
        let big_r = (nonce.verifying_key().to_edwards() + torsion)
            .compress()
            .to_bytes();

        // R + T is canonically encoded and of large order: the cheap checks pass it.
        let r_as_point = VerifyingKey::from_bytes(&big_r).unwrap();
        assert!(!r_as_point.is_weak());
        assert_eq!(r_as_point.to_edwards().compress().to_bytes(), big_r);

        // Scalars mod l, built from the only constructors a Scalar value offers.
        let one = a * a.invert();
        let mut small = vec![one - one];
        for _ in 0..256 {
            small.push(small[small.len() - 1] + one);
        }
        let mut found = None;
        for seq in 0..64 {
            let entry_bytes = encode_entry(&entry(seq));
            let message = signed_message(&entry_bytes);
            let hash = Sha512::new()
                .chain_update(big_r)
                .chain_update(signer.verifying_key().as_bytes())
                .chain_update(&message)
                .finalize();
            let k = hash.iter().rev().fold(small[0], |k, &byte| {
                k * small[256] + small[usize::from(byte)]
            });
            let s = r + k * a;
            let mut sig = [0; 64];
            sig[..32].copy_from_slice(&big_r);
            sig[32..].copy_from_slice(&s.to_bytes());

            assert!(!key.public().verify_strict(&message, &sig));
            let batch = ed25519_dalek::verify_batch(
                &[&message],
                &[Signature::from_bytes(&sig)],
                &[signer.verifying_key()],
            );
            if batch.is_ok() {
                found = Some(assemble_leaf(&entry_bytes, key.key_id(), &sig));
                break;
            }
        }
        let bad = found.expect("about half of all messages pass the batch equation");

        let good = leaf(&key, 100);
        let results = verify_entries(&[&good, &bad, &good], &key.public());
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().reason_code(),
            "bad_signature"
        );
    }

    #[test]
    fn reason_codes_are_listed() {
        let errors = [
            EntryError::Oversized { len: 0 },
            EntryError::MalformedLeaf { problem: "" },
            EntryError::WrongKeyAlgorithm {
                key: String::new(),
                algorithm: KeyAlgorithm::CosignatureV1,
            },
            EntryError::KeyIdMismatch {
                found: 0,
                expected: 0,
                key_name: String::new(),
            },
            EntryError::BadSignature { key: String::new() },
            EntryError::MalformedEntry {
                reason: String::new(),
            },
            EntryError::NoRecord,
        ];
        let codes: Vec<_> = errors.iter().map(EntryError::reason_code).collect();
        assert_eq!(codes, EntryError::REASON_CODES);
    }

    proptest! {
        #[test]
        fn any_flipped_byte_is_rejected(position in any::<prop::sample::Index>(), mask in 1u8..) {
            let key = log_key();
            let mut leaf = leaf(&key, 9);
            let i = position.index(leaf.len());
            leaf[i] ^= mask;
            prop_assert!(verify_entry(&leaf, &key.public()).is_err(), "byte {} ^ {:#04x}", i, mask);
        }

        #[test]
        fn arbitrary_bytes_never_verify(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(verify_entry(&bytes, &log_key().public()).is_err());
        }
    }
}
