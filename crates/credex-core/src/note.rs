//! Checkpoints as C2SP signed notes: a log's signed tree head (`tlog-checkpoint`) and the
//! witnesses' cosignatures on it (`tlog-cosignature` v1, Ed25519).
//!
//! A checkpoint note looks like
//!
//! ```text
//! credex/<consortium>/<city>
//! <tree size>
//! <base64 root hash>
//!
//! — <log key name> base64(key id || Ed25519 signature over the three lines above)
//! — <witness key name> base64(key id || timestamp || Ed25519 signature)
//! ```
//!
//! The log signs the body with its Ed25519 note key. A witness signs
//! `cosignature/v1\ntime <timestamp>\n<body>` with its cosignature key (key id algorithm byte
//! 0x04) and prefixes the signature with the 8-byte big-endian timestamp.
//!
//! Notes are kept and relayed verbatim ([`SignedCheckpoint::note`]): signature lines from
//! witnesses a node does not know are carried along untouched, as signed-note allows, so a
//! downstream node that does know them can still count them.
//!
//! Parsing and serialising of notes and signature lines is `signed_note`'s, checkpoint bodies
//! are parsed by `tlog_tiles`; this module adds the credex rules: the body is exactly the three
//! checkpoint lines (no extension lines), the origin line is the log key's name, signatures
//! verify with `verify_strict`, and every input is size-bounded before it is parsed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use signed_note::{Note, Signature, Signer, VerificationError, Verifier, Verifiers};

use crate::keys::{KeyAlgorithm, PublicKey, SigningKeyPair};
use crate::merkle::Hash;

/// Largest signed note accepted, in bytes. A credex checkpoint body is under 400 bytes and a
/// signature line under 400; this leaves room for a few dozen witnesses.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Largest checkpoint origin line, in bytes (the limit C2SP uses for origins in binary
/// encodings, `log_origin<1..2^8-1>`).
pub const MAX_ORIGIN_BYTES: usize = 255;

/// Largest checkpoint body: the origin, the largest `u64` size and a base64 SHA-256 root, each
/// with its newline.
const MAX_BODY_BYTES: usize = MAX_ORIGIN_BYTES + 1 + 20 + 1 + 44 + 1;

/// Most signature lines in one note (signed-note's own limit).
pub const MAX_SIGNATURES: usize = 100;

/// Domain-separation header of a v1 cosignature's signed message.
const COSIGNATURE_HEADER: &str = "cosignature/v1";

/// Length of a v1 cosignature after the key id: timestamp and Ed25519 signature.
const COSIGNATURE_LEN: usize = 8 + 64;

/// Why a checkpoint could not be signed, cosigned, parsed or verified.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("note is {len} bytes, more than the {MAX_NOTE_BYTES} allowed")]
    NoteTooLarge { len: usize },
    #[error("note is not a well-formed signed note (text, blank line, signature lines)")]
    MalformedNote,
    #[error("signature line {line:?} is not \"— <key name> <base64 signature>\\n\"")]
    MalformedSignatureLine { line: String },
    #[error("note would carry {count} signature lines, more than the {MAX_SIGNATURES} allowed")]
    TooManySignatures { count: usize },
    #[error("checkpoint body {body:?} is not \"<origin>\\n<size>\\n<base64 root>\\n\"")]
    MalformedCheckpoint { body: String },
    #[error("checkpoint of {origin} has extension lines, which credex checkpoints do not carry")]
    ExtensionLines { origin: String },
    #[error("checkpoint origin is {len} bytes, more than the {MAX_ORIGIN_BYTES} allowed")]
    OriginTooLong { len: usize },
    #[error("checkpoint origin {origin:?} is not the log key's name {key:?}")]
    OriginKeyMismatch { origin: String, key: String },
    #[error("key {key} has algorithm {actual}, expected {expected}")]
    WrongKeyAlgorithm {
        key: String,
        actual: KeyAlgorithm,
        expected: KeyAlgorithm,
    },
    #[error("key name {name:?} cannot sign a note: names must be non-empty, without spaces or '+'")]
    InvalidKeyName { name: String },
    #[error("checkpoint of {origin} has no signature by its log key {key}+{key_id:08x}")]
    MissingLogSignature {
        origin: String,
        key: String,
        key_id: u32,
    },
    #[error("signature by {name}+{key_id:08x} does not verify")]
    BadSignature { name: String, key_id: u32 },
    #[error("two different known keys are named {name}+{key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    #[error("cosignature timestamp {timestamp} is larger than 2^63-1")]
    TimestampTooLarge { timestamp: u64 },
}

/// A log's signed tree head: the first `size` leaves of `origin`'s log hash to `root`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

// `Hash` (tlog_tiles) implements only `PartialEq`, but byte-array equality is total.
impl Eq for Checkpoint {}

impl Checkpoint {
    /// The note body, `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0)
        )
        .into_bytes()
    }

    /// Parses a note body. Only the canonical encoding is accepted (decimal size without leading
    /// zeros, padded standard base64), so `parse_body(b)?.body() == b`.
    pub fn parse_body(text: &[u8]) -> Result<Self, NoteError> {
        let malformed = || NoteError::MalformedCheckpoint {
            body: excerpt(text, MAX_BODY_BYTES),
        };
        // Three short lines: the bound keeps the parse and the error excerpt cheap.
        if text.len() > MAX_BODY_BYTES {
            let origin_len = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
            if origin_len > MAX_ORIGIN_BYTES {
                return Err(NoteError::OriginTooLong { len: origin_len });
            }
            return Err(malformed());
        }
        let parsed = tlog_tiles::Checkpoint::from_bytes(text).map_err(|_| malformed())?;
        if !parsed.extension().is_empty() {
            return Err(NoteError::ExtensionLines {
                origin: parsed.origin().to_owned(),
            });
        }
        let origin = parsed.origin();
        if origin.len() > MAX_ORIGIN_BYTES {
            return Err(NoteError::OriginTooLong { len: origin.len() });
        }
        if origin.chars().any(char::is_control) {
            return Err(malformed());
        }
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size: parsed.size(),
            root: *parsed.hash(),
        };
        // tlog_tiles already insists on a canonical size; this also pins the root's base64.
        if checkpoint.body() != text {
            return Err(malformed());
        }
        Ok(checkpoint)
    }

    /// Checks that `body()` is a well-formed checkpoint body, before anything signs it.
    fn validate(&self) -> Result<(), NoteError> {
        Checkpoint::parse_body(&self.body()).map(|_| ())
    }
}

/// A verified witness cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness key's name.
    pub witness: String,
    pub key_id: u32,
    /// When the witness cosigned, in Unix seconds.
    pub timestamp: u64,
}

/// A checkpoint note as received, kept verbatim, plus what was verified in it.
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The note exactly as received, including signature lines of unknown keys.
    pub note: Vec<u8>,
    /// The cosignatures that verified against known witness keys, in note order.
    pub cosignatures: Vec<Cosignature>,
}

/// Signs `cp` with the log's Ed25519 note key and returns the note text.
pub fn sign_checkpoint(cp: &Checkpoint, log_key: &SigningKeyPair) -> Result<Vec<u8>, NoteError> {
    expect_algorithm(log_key.name(), log_key.algorithm(), KeyAlgorithm::Ed25519)?;
    cp.validate()?;
    if cp.origin != log_key.name() {
        return Err(NoteError::OriginKeyMismatch {
            origin: cp.origin.clone(),
            key: log_key.name().to_owned(),
        });
    }
    let mut note = Note::new(&cp.body(), &[]).map_err(|_| NoteError::MalformedNote)?;
    note.add_sigs(&[&LogSigner(log_key)])
        .map_err(|_| NoteError::InvalidKeyName {
            name: log_key.name().to_owned(),
        })?;
    Ok(note.to_bytes())
}

/// The cosignature line (`— <name> <base64(keyid||timestamp||sig)>\n`) a witness adds to the
/// note of `cp`, cosigned at `timestamp` (Unix seconds).
pub fn cosign(
    cp: &Checkpoint,
    witness_key: &SigningKeyPair,
    timestamp: u64,
) -> Result<Vec<u8>, NoteError> {
    expect_algorithm(
        witness_key.name(),
        witness_key.algorithm(),
        KeyAlgorithm::CosignatureV1,
    )?;
    if i64::try_from(timestamp).is_err() {
        return Err(NoteError::TimestampTooLarge { timestamp });
    }
    cp.validate()?;
    let signer = CosignatureSigner {
        key: witness_key,
        timestamp,
    };
    let invalid_name = || NoteError::InvalidKeyName {
        name: witness_key.name().to_owned(),
    };
    let sig = signer.sign(&cp.body()).map_err(|_| invalid_name())?;
    let line = Signature::new(signer.name().to_owned(), signer.key_id(), sig)
        .map_err(|_| invalid_name())?;
    Ok(line.to_bytes())
}

/// The checkpoint a note carries, unverified: to find which key must verify it, or what a peer
/// that sent it claims to hold.
pub fn peek_checkpoint(note: &[u8]) -> Result<Checkpoint, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::NoteTooLarge { len: note.len() });
    }
    let end = note
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or(NoteError::MalformedNote)?;
    Checkpoint::parse_body(&note[..=end])
}

/// Verifies the origin's signature (required) and every cosignature line from a known witness
/// key (unknown key ids are ignored, as signed-note allows; a known key with a bad signature is
/// an error). The checkpoint's origin line must be `origin_key`'s name.
pub fn verify_checkpoint(
    note: &[u8],
    origin_key: &PublicKey,
    witnesses: &[PublicKey],
) -> Result<SignedCheckpoint, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::NoteTooLarge { len: note.len() });
    }
    expect_algorithm(
        origin_key.name(),
        origin_key.algorithm(),
        KeyAlgorithm::Ed25519,
    )?;
    for w in witnesses {
        expect_algorithm(w.name(), w.algorithm(), KeyAlgorithm::CosignatureV1)?;
    }
    let parsed = Note::from_bytes(note).map_err(|_| NoteError::MalformedNote)?;
    let checkpoint = Checkpoint::parse_body(parsed.text())?;
    if checkpoint.origin != origin_key.name() {
        return Err(NoteError::OriginKeyMismatch {
            origin: checkpoint.origin,
            key: origin_key.name().to_owned(),
        });
    }
    let missing_log_signature = || NoteError::MissingLogSignature {
        origin: checkpoint.origin.clone(),
        key: origin_key.name().to_owned(),
        key_id: origin_key.key_id(),
    };

    let known = KnownKeys::new(origin_key, witnesses);
    let (verified, _unknown) = parsed.verify(&known).map_err(|e| match e {
        signed_note::NoteError::UnverifiedNote => missing_log_signature(),
        signed_note::NoteError::InvalidSignature { name, id } => {
            NoteError::BadSignature { name, key_id: id }
        }
        signed_note::NoteError::VerificationError(VerificationError::AmbiguousKey { name, id }) => {
            NoteError::AmbiguousKey { name, key_id: id }
        }
        _ => NoteError::MalformedNote,
    })?;

    let is_log = |s: &Signature| s.name() == origin_key.name() && s.id() == origin_key.key_id();
    if !verified.iter().any(is_log) {
        return Err(missing_log_signature());
    }
    let cosignatures = verified
        .iter()
        .filter(|s| !is_log(s))
        .map(|s| Cosignature {
            witness: s.name().to_owned(),
            key_id: s.id(),
            // Verified by `CosignatureVerifier`, so the timestamp is there.
            timestamp: cosignature_timestamp(s.signature()).unwrap_or_default(),
        })
        .collect();
    Ok(SignedCheckpoint {
        checkpoint,
        note: note.to_vec(),
        cosignatures,
    })
}

/// Adds signature lines to a note: each line is kept unless the note (or an earlier line)
/// already has a signature by the same key (name and key id), and existing lines stay verbatim.
/// Nothing is verified here; [`verify_checkpoint`] does that.
pub fn add_signature_lines(note: &[u8], lines: &[Vec<u8>]) -> Result<Vec<u8>, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::NoteTooLarge { len: note.len() });
    }
    Note::from_bytes(note).map_err(|_| NoteError::MalformedNote)?;
    let mut present: Vec<(String, u32)> = signature_block(note)
        .map(|line| Signature::from_bytes(line).map(|s| (s.name().to_owned(), s.id())))
        .collect::<Result<_, _>>()
        .map_err(|_| NoteError::MalformedNote)?;

    let mut out = note.to_vec();
    for line in lines {
        let malformed = || NoteError::MalformedSignatureLine {
            line: excerpt(line, 64),
        };
        let body = line.strip_suffix(b"\n").ok_or_else(malformed)?;
        // A note holds no ASCII control character but newline (signed_note's `Note::from_bytes`
        // refuses it), which `Signature::from_bytes` does not check: one such line from a
        // witness would make the merged note unreadable to everyone.
        if body.iter().any(|&b| b < 0x20) {
            return Err(malformed());
        }
        let sig = Signature::from_bytes(body).map_err(|_| malformed())?;
        let key = (sig.name().to_owned(), sig.id());
        if present.contains(&key) {
            continue;
        }
        present.push(key);
        if present.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: present.len(),
            });
        }
        out.extend_from_slice(line);
        if out.len() > MAX_NOTE_BYTES {
            return Err(NoteError::NoteTooLarge { len: out.len() });
        }
    }
    Ok(out)
}

/// [`add_signature_lines`], but a line by a key the note already has a signature by takes that
/// signature's place: a witness's newer cosignature (a later time) instead of its older one.
pub fn replace_signature_lines(note: &[u8], lines: &[Vec<u8>]) -> Result<Vec<u8>, NoteError> {
    let replaced: Vec<(String, u32)> = lines.iter().filter_map(|l| signature_key(l)).collect();
    Note::from_bytes(note).map_err(|_| NoteError::MalformedNote)?;
    let block_start = note.len() - signature_block(note).map(|l| l.len() + 1).sum::<usize>();
    let mut kept = note[..block_start].to_vec();
    for line in signature_block(note) {
        if !signature_key(line).is_some_and(|k| replaced.contains(&k)) {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    add_signature_lines(&kept, lines)
}

/// The key (name and key id) a signature line, with or without its newline, is signed by; not
/// verified.
pub fn signature_key(line: &[u8]) -> Option<(String, u32)> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    Signature::from_bytes(body)
        .ok()
        .map(|s| (s.name().to_owned(), s.id()))
}

/// The signature lines of a well-formed note, without their newlines.
///
/// signed_note 0.2 keeps a parsed `Note`'s signatures private (only `verify` reveals them, and
/// only for known keys), so the block is split here the way `Note::from_bytes` splits it: after
/// the last blank line.
fn signature_block(note: &[u8]) -> impl Iterator<Item = &[u8]> {
    let start = note
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .map_or(note.len(), |i| i + 2);
    let block = note[start..].strip_suffix(b"\n").unwrap_or(&[]);
    block.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// The message a v1 cosignature signs: `cosignature/v1\ntime <timestamp>\n<body>`.
fn cosigned_message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut msg = format!("{COSIGNATURE_HEADER}\ntime {timestamp}\n").into_bytes();
    msg.extend_from_slice(body);
    msg
}

/// The timestamp of a v1 cosignature (the bytes after the key id), if it has the right length.
fn cosignature_timestamp(sig: &[u8]) -> Option<u64> {
    if sig.len() != COSIGNATURE_LEN {
        return None;
    }
    let ts: [u8; 8] = sig[..8].try_into().ok()?;
    Some(u64::from_be_bytes(ts))
}

fn expect_algorithm(
    key: &str,
    actual: KeyAlgorithm,
    expected: KeyAlgorithm,
) -> Result<(), NoteError> {
    if actual == expected {
        return Ok(());
    }
    Err(NoteError::WrongKeyAlgorithm {
        key: key.to_owned(),
        actual,
        expected,
    })
}

/// The first `max` bytes of an input, for error messages.
fn excerpt(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

/// The log's note signer: Ed25519 over the note text.
struct LogSigner<'a>(&'a SigningKeyPair);

impl Signer for LogSigner<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn key_id(&self) -> u32 {
        self.0.key_id()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.0.sign(msg).to_vec())
    }
}

/// A witness's v1 cosigner at a fixed time: `timestamp || Ed25519(cosigned message)`.
struct CosignatureSigner<'a> {
    key: &'a SigningKeyPair,
    timestamp: u64,
}

impl Signer for CosignatureSigner<'_> {
    fn name(&self) -> &str {
        self.key.name()
    }

    fn key_id(&self) -> u32 {
        self.key.key_id()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let sig = self.key.sign(&cosigned_message(self.timestamp, msg));
        let mut out = Vec::with_capacity(COSIGNATURE_LEN);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&sig);
        Ok(out)
    }
}

/// Verifies a log's note signature.
struct LogVerifier<'a>(&'a PublicKey);

impl Verifier for LogVerifier<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn key_id(&self) -> u32 {
        self.0.key_id()
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.0.verify_strict(msg, sig)
    }
}

/// Verifies a witness's v1 cosignature.
struct CosignatureVerifier<'a>(&'a PublicKey);

impl Verifier for CosignatureVerifier<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn key_id(&self) -> u32 {
        self.0.key_id()
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match cosignature_timestamp(sig) {
            Some(ts) if i64::try_from(ts).is_ok() => {
                self.0.verify_strict(&cosigned_message(ts, msg), &sig[8..])
            }
            _ => false,
        }
    }
}

/// The keys a checkpoint is verified against. `signed_note::VerifierList` wants owned
/// `'static` verifiers; this borrows the caller's keys instead.
struct KnownKeys<'a> {
    log: LogVerifier<'a>,
    witnesses: Vec<CosignatureVerifier<'a>>,
}

impl<'a> KnownKeys<'a> {
    fn new(log: &'a PublicKey, witnesses: &'a [PublicKey]) -> Self {
        let mut unique: Vec<CosignatureVerifier<'a>> = Vec::with_capacity(witnesses.len());
        for w in witnesses {
            // The same key listed twice is harmless; two different keys with one name and key id
            // are reported as ambiguous when a signature names them.
            if !unique.iter().any(|u| u.0 == w) {
                unique.push(CosignatureVerifier(w));
            }
        }
        KnownKeys {
            log: LogVerifier(log),
            witnesses: unique,
        }
    }
}

impl Verifiers for KnownKeys<'_> {
    fn verifier(&self, name: &str, id: u32) -> Result<&dyn Verifier, VerificationError> {
        if self.log.name() == name && self.log.key_id() == id {
            return Ok(&self.log);
        }
        let mut matching = self
            .witnesses
            .iter()
            .filter(|w| w.name() == name && w.key_id() == id);
        match (matching.next(), matching.next()) {
            (Some(w), None) => Ok(w),
            (Some(_), Some(_)) => Err(VerificationError::AmbiguousKey {
                name: name.to_owned(),
                id,
            }),
            (None, _) => Err(VerificationError::UnknownKey {
                name: name.to_owned(),
                id,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use proptest::prelude::*;

    use super::*;
    use crate::merkle::hash_from_bytes;

    // golang.org/x/mod/sumdb/note note_test.go (TestSign, TestOpen), also the C2SP signed-note
    // example.
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const GO_ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    const ORIGIN: &str = "credex/middle-yangtze/changsha";
    const TS: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn log_key() -> SigningKeyPair {
        SigningKeyPair::from_seed(ORIGIN, KeyAlgorithm::Ed25519, [1; 32]).unwrap()
    }

    fn witness_key(city: &str, seed: u8) -> SigningKeyPair {
        let name = crate::consortium::witness_name("middle-yangtze", city);
        SigningKeyPair::from_seed(&name, KeyAlgorithm::CosignatureV1, [seed; 32]).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        // The root of the RFC 6962 8-leaf test tree.
        let root = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";
        Checkpoint {
            origin: ORIGIN.to_owned(),
            size: 8,
            root: hash_from_bytes(&hex::decode(root).unwrap()).unwrap(),
        }
    }

    /// The checkpoint signed by the log and cosigned by Wuhan and Hefei.
    fn cosigned_note() -> Vec<u8> {
        let cp = checkpoint();
        let note = sign_checkpoint(&cp, &log_key()).unwrap();
        let lines = [
            cosign(&cp, &witness_key("wuhan", 2), TS).unwrap(),
            cosign(&cp, &witness_key("hefei", 3), TS + 1).unwrap(),
        ];
        add_signature_lines(&note, &lines).unwrap()
    }

    fn render(result: Result<SignedCheckpoint, NoteError>) -> String {
        match result {
            Ok(signed) => {
                let cp = &signed.checkpoint;
                let mut s = format!("ok {} {} {}", cp.origin, cp.size, cp.root);
                for c in &signed.cosignatures {
                    s += &format!(" [{}+{:08x} at {}]", c.witness, c.key_id, c.timestamp);
                }
                s
            }
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn go_note_vector_signs_and_verifies_byte_for_byte() {
        let key = SigningKeyPair::parse(GO_SKEY).unwrap();
        assert_eq!(key.public().encode(), GO_VKEY);
        assert_eq!(key.key_id(), 0xc74f_20a3);
        let go_note = format!("{GO_TEXT}\n{GO_PETER_SIG}");

        let mut note = Note::new(GO_TEXT.as_bytes(), &[]).unwrap();
        note.add_sigs(&[&LogSigner(&key)]).unwrap();
        assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), go_note);

        let vkey = PublicKey::parse(GO_VKEY).unwrap();
        let known = KnownKeys::new(&vkey, &[]);
        let two_sigs = format!("{GO_TEXT}\n{GO_PETER_SIG}{GO_ENOCH_SIG}");
        let (verified, unknown) = Note::from_bytes(two_sigs.as_bytes())
            .unwrap()
            .verify(&known)
            .unwrap();
        let names = |sigs: &[Signature]| -> Vec<String> {
            sigs.iter()
                .map(|s| format!("{}+{:08x}", s.name(), s.id()))
                .collect()
        };
        assert_eq!(names(&verified), ["PeterNeumann+c74f20a3"]);
        assert_eq!(names(&unknown), ["EnochRoot+af0cfe78"]);

        let tampered = go_note.replace("cryptography", "cryptographY");
        let result = Note::from_bytes(tampered.as_bytes())
            .unwrap()
            .verify(&known);
        assert!(matches!(
            result,
            Err(signed_note::NoteError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn cosignature_format_matches_the_c2sp_example() {
        // tlog-cosignature: the example cosignature line and the signed message it describes.
        let line = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let sig = Signature::from_bytes(line.as_bytes()).unwrap();
        assert_eq!(sig.signature().len(), COSIGNATURE_LEN);
        assert_eq!(cosignature_timestamp(sig.signature()), Some(1_679_315_147));
        let body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        expect![[r#"
            cosignature/v1
            time 1679315147
            example.com/behind-the-sofa
            20852163
            CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
        "#]]
        .assert_eq(&String::from_utf8(cosigned_message(1_679_315_147, body)).unwrap());

        // Ours have the same layout: key id, timestamp, Ed25519 signature.
        let ours = cosign(&checkpoint(), &witness_key("wuhan", 2), TS).unwrap();
        let ours = Signature::from_bytes(ours.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(ours.id(), witness_key("wuhan", 2).key_id());
        assert_eq!(cosignature_timestamp(ours.signature()), Some(TS));
    }

    #[test]
    fn checkpoint_bodies() {
        let root = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";
        let long_origin = "o".repeat(MAX_ORIGIN_BYTES + 1);
        let cases = [
            ("canonical", format!("{ORIGIN}\n8\n{root}\n")),
            ("size 0", format!("{ORIGIN}\n0\n{root}\n")),
            (
                "size u64::MAX",
                format!("{ORIGIN}\n18446744073709551615\n{root}\n"),
            ),
            ("empty", String::new()),
            ("no final newline", format!("{ORIGIN}\n8\n{root}")),
            ("trailing blank line", format!("{ORIGIN}\n8\n{root}\n\n")),
            (
                "extension line",
                format!("{ORIGIN}\n8\n{root}\nextension\n"),
            ),
            ("empty origin", format!("\n8\n{root}\n")),
            ("leading zero", format!("{ORIGIN}\n08\n{root}\n")),
            ("plus sign", format!("{ORIGIN}\n+8\n{root}\n")),
            ("negative", format!("{ORIGIN}\n-1\n{root}\n")),
            (
                "size 2^64",
                format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
            ),
            (
                "root trailing bits",
                format!("{ORIGIN}\n8\n{}h=\n", &root[..42]),
            ),
            (
                "root 31 bytes",
                format!("{ORIGIN}\n8\n{}\n", BASE64.encode([7; 31])),
            ),
            (
                "root 33 bytes",
                format!("{ORIGIN}\n8\n{}\n", BASE64.encode([7; 33])),
            ),
            (
                "root url-safe",
                format!("{ORIGIN}\n8\n{}\n", root.replace('/', "_")),
            ),
            ("CRLF", format!("{ORIGIN}\r\n8\n{root}\n")),
            ("origin too long", format!("{long_origin}\n8\n{root}\n")),
        ];
        let rendered: String = cases
            .iter()
            .map(|(case, text)| {
                let got = match Checkpoint::parse_body(text.as_bytes()) {
                    Ok(cp) => {
                        assert_eq!(cp.body(), text.as_bytes());
                        format!("ok {} {} {}", cp.origin, cp.size, cp.root)
                    }
                    Err(e) => format!("error: {e}"),
                };
                format!("{case}: {got}\n")
            })
            .collect();
        expect![[r#"
            canonical: ok credex/middle-yangtze/changsha 8 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
            size 0: ok credex/middle-yangtze/changsha 0 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
            size u64::MAX: ok credex/middle-yangtze/changsha 18446744073709551615 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
            empty: error: checkpoint body "" is not "<origin>\n<size>\n<base64 root>\n"
            no final newline: error: checkpoint body "credex/middle-yangtze/changsha\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=" is not "<origin>\n<size>\n<base64 root>\n"
            trailing blank line: error: checkpoint body "credex/middle-yangtze/changsha\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n" is not "<origin>\n<size>\n<base64 root>\n"
            extension line: error: checkpoint of credex/middle-yangtze/changsha has extension lines, which credex checkpoints do not carry
            empty origin: error: checkpoint body "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            leading zero: error: checkpoint body "credex/middle-yangtze/changsha\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            plus sign: error: checkpoint body "credex/middle-yangtze/changsha\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            negative: error: checkpoint body "credex/middle-yangtze/changsha\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            size 2^64: error: checkpoint body "credex/middle-yangtze/changsha\n18446744073709551616\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            root trailing bits: error: checkpoint body "credex/middle-yangtze/changsha\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n" is not "<origin>\n<size>\n<base64 root>\n"
            root 31 bytes: error: checkpoint body "credex/middle-yangtze/changsha\n8\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw==\n" is not "<origin>\n<size>\n<base64 root>\n"
            root 33 bytes: error: checkpoint body "credex/middle-yangtze/changsha\n8\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH\n" is not "<origin>\n<size>\n<base64 root>\n"
            root url-safe: error: checkpoint body "credex/middle-yangtze/changsha\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7_RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            CRLF: error: checkpoint body "credex/middle-yangtze/changsha\r\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            origin too long: error: checkpoint origin is 256 bytes, more than the 255 allowed
        "#]].assert_eq(&rendered);
    }

    #[test]
    fn sign_cosign_verify_round_trip() {
        let note = cosigned_note();
        let (w1, w2) = (
            witness_key("wuhan", 2).public(),
            witness_key("hefei", 3).public(),
        );
        let log = log_key().public();
        let signed = verify_checkpoint(&note, &log, &[w1.clone(), w2.clone()]).unwrap();
        assert_eq!(signed.checkpoint, checkpoint());
        assert_eq!(signed.note, note);
        check_results(
            &[
                (
                    "both witnesses known",
                    verify_checkpoint(&note, &log, &[w1.clone(), w2.clone()]),
                ),
                (
                    "one known",
                    verify_checkpoint(&note, &log, std::slice::from_ref(&w2)),
                ),
                ("none known", verify_checkpoint(&note, &log, &[])),
                (
                    "listed twice",
                    verify_checkpoint(&note, &log, &[w1.clone(), w1.clone()]),
                ),
                (
                    "log signature only",
                    verify_checkpoint(
                        &sign_checkpoint(&checkpoint(), &log_key()).unwrap(),
                        &log,
                        &[w1],
                    ),
                ),
            ],
            expect![[r#"
                both witnesses known: ok credex/middle-yangtze/changsha 8 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg= [credex/middle-yangtze/wuhan/witness+7af9d1fd at 1767225600] [credex/middle-yangtze/hefei/witness+a2b1d60d at 1767225601]
                one known: ok credex/middle-yangtze/changsha 8 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg= [credex/middle-yangtze/hefei/witness+a2b1d60d at 1767225601]
                none known: ok credex/middle-yangtze/changsha 8 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
                listed twice: ok credex/middle-yangtze/changsha 8 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg= [credex/middle-yangtze/wuhan/witness+7af9d1fd at 1767225600]
                log signature only: ok credex/middle-yangtze/changsha 8 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
            "#]],
        );
    }

    #[test]
    fn a_newer_cosignature_replaces_the_witness_s_older_one_and_nothing_else() {
        let note = cosigned_note();
        let cp = checkpoint();
        let newer = cosign(&cp, &witness_key("wuhan", 2), 1_767_225_700).unwrap();
        let merged = replace_signature_lines(&note, std::slice::from_ref(&newer)).unwrap();
        let (w1, w2) = (
            witness_key("wuhan", 2).public(),
            witness_key("hefei", 3).public(),
        );
        let signed = verify_checkpoint(&merged, &log_key().public(), &[w1, w2]).unwrap();
        let times: Vec<(String, u64)> = signed
            .cosignatures
            .iter()
            .map(|c| (c.witness.clone(), c.timestamp))
            .collect();
        assert_eq!(
            times,
            [
                (
                    "credex/middle-yangtze/hefei/witness".to_owned(),
                    1_767_225_601
                ),
                (
                    "credex/middle-yangtze/wuhan/witness".to_owned(),
                    1_767_225_700
                ),
            ]
        );
        // The log's signature and Hefei's line stay verbatim; only Wuhan's moved to the end.
        let lines = |n: &[u8]| -> Vec<Vec<u8>> { signature_block(n).map(<[u8]>::to_vec).collect() };
        let (old, new) = (lines(&note), lines(&merged));
        assert_eq!(new.len(), old.len());
        assert_eq!(&new[..2], &[old[0].clone(), old[2].clone()]);
        // add_signature_lines keeps the older one.
        assert_eq!(add_signature_lines(&note, &[newer]).unwrap(), note);
    }

    #[test]
    fn full_note_snapshot() {
        expect![[r#"
            credex/middle-yangtze/changsha
            8
            XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=

            — credex/middle-yangtze/changsha bkWMFsOyGMHdFFSEXKnwO4oQ0kuZmHo1NdYSrN2nazT5aqTVx81ifNo5rMsqDVTDiwdqxtdgnO5VE4QIezrtBa5EhgQ=
            — credex/middle-yangtze/wuhan/witness evnR/QAAAABpVbkA2cx7jZbu3/XtjZ+GpwTSWuoPV5NqvejZncBOh9yL3fuEb1wVVh/u1fRA+w/KWx1kLDpP1zaRH2oANe1lgOYNAQ==
            — credex/middle-yangtze/hefei/witness orHWDQAAAABpVbkBl5uLRdH78hgXPWgYFmffM/438+0F0cdtZLdMvruvamhDdrd+Z8k99Rc5Kg2VFUVo5i0bdT0IabNNhf8gZJVnDQ==
        "#]].assert_eq(&String::from_utf8(cosigned_note()).unwrap());
    }

    fn check_results(cases: &[(&str, Result<SignedCheckpoint, NoteError>)], expect: Expect) {
        let rendered: String = cases
            .iter()
            .map(|(name, r)| {
                let r = match r {
                    Ok(s) => Ok(s.clone()),
                    Err(e) => Err(e),
                };
                let shown = match r {
                    Ok(s) => render(Ok(s)),
                    Err(e) => format!("error: {e}"),
                };
                format!("{name}: {shown}\n")
            })
            .collect();
        expect.assert_eq(&rendered);
    }

    /// Replaces signature line `line` (0-based) of `note` with the same line with byte `at` of
    /// its decoded signature (after the key id) flipped.
    fn flip_signature(note: &[u8], line: usize, at: usize) -> Vec<u8> {
        let text = String::from_utf8(note.to_vec()).unwrap();
        let (body, sigs) = text.rsplit_once("\n\n").unwrap();
        let mut lines: Vec<String> = sigs.lines().map(str::to_owned).collect();
        let sig = Signature::from_bytes(lines[line].as_bytes()).unwrap();
        let mut bytes = sig.signature().to_vec();
        bytes[at] ^= 1;
        let flipped = Signature::new(sig.name().to_owned(), sig.id(), bytes).unwrap();
        lines[line] = String::from_utf8(flipped.to_bytes())
            .unwrap()
            .trim_end()
            .to_owned();
        format!("{body}\n\n{}\n", lines.join("\n")).into_bytes()
    }

    fn remove_line(note: &[u8], line: usize) -> Vec<u8> {
        let text = String::from_utf8(note.to_vec()).unwrap();
        let (body, sigs) = text.rsplit_once("\n\n").unwrap();
        let mut lines: Vec<&str> = sigs.lines().collect();
        lines.remove(line);
        format!("{body}\n\n{}\n", lines.join("\n")).into_bytes()
    }

    fn replace(note: &[u8], from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(note.to_vec())
            .unwrap()
            .replacen(from, to, 1)
            .into_bytes()
    }

    #[test]
    fn tampered_notes_are_rejected() {
        let note = cosigned_note();
        let log = log_key().public();
        let witnesses = [
            witness_key("wuhan", 2).public(),
            witness_key("hefei", 3).public(),
        ];
        let only_wuhan = &witnesses[..1];
        let other_log = SigningKeyPair::from_seed(ORIGIN, KeyAlgorithm::Ed25519, [9; 32]).unwrap();
        let root = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";

        // A body with an extension line, signed by the right key.
        let mut with_extension =
            Note::new(format!("{ORIGIN}\n8\n{root}\nextra\n").as_bytes(), &[]).unwrap();
        with_extension.add_sigs(&[&LogSigner(&log_key())]).unwrap();
        // A note whose log key signs a different origin.
        let other_origin = replace(&note, ORIGIN, "credex/middle-yangtze/wuhan");

        check_results(
            &[
                (
                    "size changed",
                    verify_checkpoint(&replace(&note, "\n8\n", "\n9\n"), &log, &witnesses),
                ),
                (
                    "root changed",
                    verify_checkpoint(&replace(&note, "Xcna", "Ycna"), &log, &witnesses),
                ),
                (
                    "origin changed",
                    verify_checkpoint(&other_origin, &log, &witnesses),
                ),
                (
                    "log signature flipped",
                    verify_checkpoint(&flip_signature(&note, 0, 10), &log, &witnesses),
                ),
                (
                    "log signature removed",
                    verify_checkpoint(&remove_line(&note, 0), &log, &witnesses),
                ),
                (
                    "wrong log key",
                    verify_checkpoint(&note, &other_log.public(), &witnesses),
                ),
                (
                    "known cosignature flipped",
                    verify_checkpoint(&flip_signature(&note, 1, 20), &log, &witnesses),
                ),
                (
                    "known cosignature time changed",
                    verify_checkpoint(&flip_signature(&note, 1, 7), &log, &witnesses),
                ),
                (
                    "unknown cosignature flipped",
                    verify_checkpoint(&flip_signature(&note, 2, 20), &log, only_wuhan),
                ),
                (
                    "extension line",
                    verify_checkpoint(&with_extension.to_bytes(), &log, &witnesses),
                ),
                (
                    "not a note",
                    verify_checkpoint(b"credex\n", &log, &witnesses),
                ),
                (
                    "oversized",
                    verify_checkpoint(&vec![b'a'; MAX_NOTE_BYTES + 1], &log, &witnesses),
                ),
            ],
            expect![[r#"
                size changed: error: signature by credex/middle-yangtze/changsha+6e458c16 does not verify
                root changed: error: signature by credex/middle-yangtze/changsha+6e458c16 does not verify
                origin changed: error: checkpoint origin "credex/middle-yangtze/wuhan" is not the log key's name "credex/middle-yangtze/changsha"
                log signature flipped: error: signature by credex/middle-yangtze/changsha+6e458c16 does not verify
                log signature removed: error: checkpoint of credex/middle-yangtze/changsha has no signature by its log key credex/middle-yangtze/changsha+6e458c16
                wrong log key: error: checkpoint of credex/middle-yangtze/changsha has no signature by its log key credex/middle-yangtze/changsha+5087dc97
                known cosignature flipped: error: signature by credex/middle-yangtze/wuhan/witness+7af9d1fd does not verify
                known cosignature time changed: error: signature by credex/middle-yangtze/wuhan/witness+7af9d1fd does not verify
                unknown cosignature flipped: ok credex/middle-yangtze/changsha 8 XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg= [credex/middle-yangtze/wuhan/witness+7af9d1fd at 1767225600]
                extension line: error: checkpoint of credex/middle-yangtze/changsha has extension lines, which credex checkpoints do not carry
                not a note: error: note is not a well-formed signed note (text, blank line, signature lines)
                oversized: error: note is 16385 bytes, more than the 16384 allowed
            "#]],
        );
    }

    #[test]
    fn keys_must_fit_their_role() {
        let cp = checkpoint();
        let (log, wuhan) = (log_key(), witness_key("wuhan", 2));
        let note = sign_checkpoint(&cp, &log).unwrap();
        let mut bad_origin = cp.clone();
        bad_origin.origin = format!("{ORIGIN}\n9");
        let mut other_origin = cp.clone();
        other_origin.origin = "credex/middle-yangtze/wuhan".to_owned();
        let show = |r: Result<Vec<u8>, NoteError>| match r {
            Ok(v) => format!("ok {}", String::from_utf8_lossy(&v)),
            Err(e) => format!("error: {e}"),
        };
        let rendered = [
            (
                "sign with a witness key",
                show(sign_checkpoint(&cp, &wuhan)),
            ),
            (
                "sign another origin",
                show(sign_checkpoint(&other_origin, &log)),
            ),
            (
                "sign a malformed origin",
                show(sign_checkpoint(&bad_origin, &log)),
            ),
            ("cosign with a log key", show(cosign(&cp, &log, TS))),
            ("cosign at 2^63", show(cosign(&cp, &wuhan, 1 << 63))),
            (
                "cosign a malformed origin",
                show(cosign(&bad_origin, &wuhan, TS)),
            ),
            (
                "verify with a witness as log",
                render(verify_checkpoint(&note, &wuhan.public(), &[])),
            ),
            (
                "verify with a log key as witness",
                render(verify_checkpoint(&note, &log.public(), &[log.public()])),
            ),
        ]
        .iter()
        .map(|(name, r)| format!("{name}: {r}\n"))
        .collect::<String>();
        expect![[r#"
            sign with a witness key: error: key credex/middle-yangtze/wuhan/witness has algorithm cosignature/v1, expected ed25519
            sign another origin: error: checkpoint origin "credex/middle-yangtze/wuhan" is not the log key's name "credex/middle-yangtze/changsha"
            sign a malformed origin: error: checkpoint body "credex/middle-yangtze/changsha\n9\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            cosign with a log key: error: key credex/middle-yangtze/changsha has algorithm ed25519, expected cosignature/v1
            cosign at 2^63: error: cosignature timestamp 9223372036854775808 is larger than 2^63-1
            cosign a malformed origin: error: checkpoint body "credex/middle-yangtze/changsha\n9\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" is not "<origin>\n<size>\n<base64 root>\n"
            verify with a witness as log: error: key credex/middle-yangtze/wuhan/witness has algorithm cosignature/v1, expected ed25519
            verify with a log key as witness: error: key credex/middle-yangtze/changsha has algorithm ed25519, expected cosignature/v1
        "#]].assert_eq(&rendered);
    }

    #[test]
    fn adding_signature_lines() {
        let cp = checkpoint();
        let note = sign_checkpoint(&cp, &log_key()).unwrap();
        let wuhan = cosign(&cp, &witness_key("wuhan", 2), TS).unwrap();
        let wuhan_later = cosign(&cp, &witness_key("wuhan", 2), TS + 60).unwrap();
        let hefei = cosign(&cp, &witness_key("hefei", 3), TS).unwrap();

        // Duplicates by key are dropped, whether already in the note or earlier in the batch.
        let once = add_signature_lines(&note, &[wuhan.clone(), wuhan_later.clone()]).unwrap();
        assert_eq!(once, [note.clone(), wuhan.clone()].concat());
        assert_eq!(add_signature_lines(&once, &[wuhan_later]).unwrap(), once);
        // Existing lines, including ones this node cannot verify, stay verbatim and first.
        let with_unknown = add_signature_lines(&note, &[GO_ENOCH_SIG.as_bytes().to_vec()]).unwrap();
        let both = add_signature_lines(&with_unknown, std::slice::from_ref(&hefei)).unwrap();
        assert_eq!(both, [with_unknown, hefei.clone()].concat());

        let many: Vec<Vec<u8>> = (0..MAX_SIGNATURES as u32)
            .map(|i| {
                Signature::new(format!("w{i}"), i, vec![0; COSIGNATURE_LEN])
                    .unwrap()
                    .to_bytes()
            })
            .collect();
        let show = |r: Result<Vec<u8>, NoteError>| match r {
            Ok(v) => format!("ok, {} bytes", v.len()),
            Err(e) => format!("error: {e}"),
        };
        let rendered = [
            (
                "no newline",
                show(add_signature_lines(
                    &note,
                    &[hefei[..hefei.len() - 1].to_vec()],
                )),
            ),
            (
                "two lines",
                show(add_signature_lines(
                    &note,
                    &[[hefei.clone(), wuhan.clone()].concat()],
                )),
            ),
            (
                "not a signature",
                show(add_signature_lines(&note, &[b"hello\n".to_vec()])),
            ),
            (
                "name with a space",
                show(add_signature_lines(
                    &note,
                    &[GO_ENOCH_SIG.replace("EnochRoot", "Enoch Root").into_bytes()],
                )),
            ),
            ("100 witnesses", show(add_signature_lines(&note, &many))),
            (
                "not a note",
                show(add_signature_lines(b"text\n", std::slice::from_ref(&hefei))),
            ),
            (
                "oversized note",
                show(add_signature_lines(
                    &vec![b'a'; MAX_NOTE_BYTES + 1],
                    &[hefei],
                )),
            ),
        ]
        .iter()
        .map(|(name, r)| format!("{name}: {r}\n"))
        .collect::<String>();
        expect![[r#"
            no newline: error: signature line "— credex/middle-yangtze/hefei/witness orHWDQAAAABpVbkAwYRnhmeM…" is not "— <key name> <base64 signature>\n"
            two lines: error: signature line "— credex/middle-yangtze/hefei/witness orHWDQAAAABpVbkAwYRnhmeM…" is not "— <key name> <base64 signature>\n"
            not a signature: error: signature line "hello\n" is not "— <key name> <base64 signature>\n"
            name with a space: error: signature line "— Enoch Root rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2ti…" is not "— <key name> <base64 signature>\n"
            100 witnesses: error: note would carry 101 signature lines, more than the 100 allowed
            not a note: error: note is not a well-formed signed note (text, blank line, signature lines)
            oversized note: error: note is 16385 bytes, more than the 16384 allowed
        "#]].assert_eq(&rendered);
    }

    /// Found by the `checkpoint` fuzz target: a signature line whose key name holds an ASCII
    /// control character was merged, and the note it made no longer parsed.
    #[test]
    fn a_signature_line_with_a_control_character_is_refused() {
        let cp = checkpoint();
        let note = sign_checkpoint(&cp, &log_key()).unwrap();
        let hefei = String::from_utf8(cosign(&cp, &witness_key("hefei", 3), TS).unwrap()).unwrap();
        for control in ['\u{0}', '\u{7}', '\u{1b}'] {
            let line = hefei
                .replacen("hefei", &format!("he{control}fei"), 1)
                .into_bytes();
            // The note with the line appended is no note.
            assert!(Note::from_bytes(&[&note[..], &line].concat()).is_err());
            let err = add_signature_lines(&note, &[line]).unwrap_err();
            assert!(
                matches!(err, NoteError::MalformedSignatureLine { .. }),
                "{control:?}: {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn checkpoint_bodies_round_trip(
            origin in "[a-z0-9./_-]{1,80}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
        ) {
            let cp = Checkpoint { origin, size, root: Hash(root) };
            prop_assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);
        }
    }
}
