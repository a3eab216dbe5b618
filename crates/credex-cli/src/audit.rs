//! Offline audit of credex logs: proof bundles (C2SP `tlog-proof`), their consistency
//! extensions, equivocation evidence and whole-log replays, verified against the consortium's
//! pinned keys with no network.
//!
//! Everything here is a pure function of bytes and a [`Consortium`]; `credexctl audit` fetches
//! and writes the files. Every check that fails is a typed error whose message starts with the
//! check's name (`signed entry: …`, `inclusion proof: …`, `quorum: …`).
//!
//! # Proof bundle (`credexctl audit proof`)
//! A [C2SP tlog-proof](https://c2sp.org/tlog-proof) v1, file extension `.tlog-proof`:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the SignedEntry leaf, verbatim>
//! index <seq, decimal without leading zeros>
//! <base64 hash>                                    the RFC 6962 inclusion path, zero or more
//! <base64 hash>                                    lines, from the leaf's sibling up
//!
//! credex/<consortium>/<city>                       the checkpoint note, verbatim to the end
//! <size>
//! <base64 root>
//!
//! — credex/<consortium>/<city> <base64>            the origin's log signature
//! — credex/<consortium>/<other city>/witness <base64>   witnesses' cosignatures
//! ```
//!
//! tlog-proof makes `extra` optional and unauthenticated. A credex bundle requires it: it
//! carries the Merkle leaf itself (the `SignedEntry` exactly as the origin encoded it), and
//! the leaf is authenticated twice over, by the entry signature and by its leaf hash being
//! included under the signed root. Base64 is RFC 4648 standard with padding; only the
//! canonical encoding is read, so a file that parses writes back byte for byte.
//!
//! # Extended bundle (`credexctl audit extend`)
//! A tlog-proof ends with its checkpoint, so nothing can follow it. The extension therefore
//! comes first and the original proof follows it unchanged:
//!
//! ```text
//! credex/tlog-proof-extension@v1
//! <base64 hash>            the RFC 6962 consistency proof from the size of the inner proof's
//! <base64 hash>            checkpoint to the newer one's, zero or more lines
//!
//! <newer checkpoint note>  verbatim: body, empty line, signature lines
//!
//! c2sp.org/tlog-proof@v1   the original bundle, byte for byte, to the end of the file
//! …
//! ```
//!
//! A bundle fetched right after publishing points at a checkpoint that may not have its
//! cosignatures yet; years later, the log has grown. The extension shows the entry is in the
//! newer (cosigned) checkpoint's tree without touching the original proof: inclusion in the
//! old tree plus consistency of the old tree with the new one. Both checkpoints must carry the
//! origin's signature; the quorum applies to the newer one. The newer checkpoint may have the
//! old one's size (then the proof is empty and the roots must be equal): that is how a bundle
//! picks up cosignatures collected after it was written. Extending an extended bundle replaces
//! its extension.
//!
//! # Evidence file (`credexctl audit evidence`)
//! ```text
//! credex/equivocation-evidence@v1
//! <base64 of one encoded credex.v1.Evidence message>     one line per piece of evidence
//! ```
//! Protobuf carries the checkpoint notes and signed entries as bytes fields, untouched, and
//! one item per line lets files exported from several nodes be concatenated (less their
//! header lines). What is provable offline, and so what [`verify_evidence`] confirms
//! (DESIGN.md "Equivocation"), every checkpoint verified with the origin's pinned log key:
//! - two checkpoints of equal size and different roots;
//! - two checkpoints of sizes m < n (in either order) and a *seeded* consistency proof from m
//!   to n taken from the size-n tree ([`merkle::seeded_consistency_proof`]: the RFC 9162 proof,
//!   preceded by the root at m when m is a power of two; for other m it is the plain RFC proof).
//!   RFC 9162 computes both roots from the proof alone ([`merkle::consistency_roots`]): when
//!   the root at n it yields is the signed one and the root at m is not, the origin signed a
//!   tree of size n whose first m leaves are not the tree of size m it also signed. A proof
//!   that verifies normally refutes the evidence ([`EvidenceError::ConsistencyHolds`]); one that
//!   does not reproduce the signed root at n proves nothing ([`EvidenceVerdict::Unproven`]).
//!   The evidence does not say which pair the proof is for: with more than two checkpoints,
//!   every pair of sizes whose proof length matches is tried, the smallest and largest first;
//! - two different leaves for one seq.
//!
//! # Quorum
//! A checkpoint with two cosignatures is *published* (DESIGN.md "Witness"), so the default
//! quorum is [`DEFAULT_QUORUM`]. What counts is the number of distinct member cities whose
//! pinned witness key cosigned, other than the origin: a log's own witness adds no observer
//! beyond the log itself, which is also why nodes never ask their own witness. A signature
//! line by a key outside the consortium is ignored (signed-note allows unknown keys), so it
//! can never count. A line that names a member's witness key but does not verify fails the
//! checkpoint: somebody forged or damaged it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset};
use credex_core::entry::{self, EntryError};
use credex_core::ident::mask_id_number;
use credex_core::keys::PublicKey;
use credex_core::merkle::{self, Hash, MemoryHashStore, ProofError};
use credex_core::note::{self, Checkpoint, MAX_NOTE_BYTES, NoteError, SignedCheckpoint};
use credex_core::pb;
use credex_node::config::{Consortium, Member};
use prost::Message as _;

use crate::json;

/// First line of a tlog-proof.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// First line of an extended bundle.
pub const EXTENSION_HEADER: &str = "credex/tlog-proof-extension@v1";
/// First line of an evidence file.
pub const EVIDENCE_HEADER: &str = "credex/equivocation-evidence@v1";
/// Cosignatures that make a checkpoint *published*.
pub const DEFAULT_QUORUM: usize = 2;
/// Largest proof file read: a leaf of at most 256 KiB in base64, two notes and two paths.
pub const MAX_PROOF_FILE_BYTES: usize = 1 << 20;
/// Largest evidence file read: each item holds at most two leaves and a few notes.
pub const MAX_EVIDENCE_FILE_BYTES: usize = 64 << 20;
/// Most hashes in an inclusion or consistency path: trees are below 2^62 leaves
/// ([`merkle::MAX_TREE_SIZE`]), so an honest path has fewer.
const MAX_PATH_HASHES: usize = 64;
/// Most failures a replay keeps; it still counts the rest.
const MAX_REPLAY_FAILURES: usize = 100;

// ------------------------------------------------------------------ file formats

/// What was wrong with an audit file, and on which line (1-based; 0 for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.problem)
        } else {
            write!(f, "line {}: {}", self.line, self.problem)
        }
    }
}

impl std::error::Error for FormatError {}

/// The kinds of audit file, told apart by their first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A tlog-proof, possibly extended.
    Proof,
    /// An evidence file.
    Evidence,
}

/// Which kind of audit file `bytes` holds.
pub fn detect(bytes: &[u8]) -> Result<FileKind, FormatError> {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    if first == PROOF_HEADER.as_bytes() || first == EXTENSION_HEADER.as_bytes() {
        Ok(FileKind::Proof)
    } else if first == EVIDENCE_HEADER.as_bytes() {
        Ok(FileKind::Evidence)
    } else {
        Err(FormatError {
            line: 1,
            problem: format!(
                "{:?} is not a credex audit file header ({PROOF_HEADER}, {EXTENSION_HEADER} or {EVIDENCE_HEADER})",
                String::from_utf8_lossy(&first[..first.len().min(64)])
            ),
        })
    }
}

/// A C2SP tlog-proof.
#[derive(Debug, Clone, PartialEq)]
pub struct TlogProof {
    /// For credex, the SignedEntry leaf.
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub path: Vec<Hash>,
    /// The checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

impl TlogProof {
    /// The bundle Audit.GetProof returned, as a tlog-proof.
    pub fn from_bundle(bundle: &pb::ProofBundle) -> Result<Self, FormatError> {
        let whole = |problem: String| FormatError { line: 0, problem };
        let path = bundle
            .inclusion_path
            .iter()
            .enumerate()
            .map(|(i, h)| {
                merkle::hash_from_bytes(h)
                    .map_err(|e| whole(format!("inclusion path hash {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let checkpoint = bundle
            .checkpoint
            .as_ref()
            .map(|c| c.note.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| whole("the proof bundle has no checkpoint".to_owned()))?;
        Ok(Self {
            extra: Some(bundle.signed_entry.clone()),
            index: bundle.index,
            path,
            checkpoint,
        })
    }

    /// Parses a tlog-proof; see the module docs for what is accepted.
    pub fn parse(text: &[u8]) -> Result<Self, FormatError> {
        Self::parse_from(&mut Reader::new(text, 0))
    }

    fn parse_from(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        r.header(PROOF_HEADER)?;
        let mut line = r.line("the index line")?;
        let extra = match line.strip_prefix(b"extra ") {
            Some(b64) => {
                let data = BASE64
                    .decode(b64)
                    .map_err(|_| r.error("extra data is not standard base64".to_owned()))?;
                line = r.line("the index line")?;
                Some(data)
            }
            None => None,
        };
        let index = line
            .strip_prefix(b"index ")
            .and_then(parse_decimal)
            .ok_or_else(|| r.error(format!("{:?} is not \"index <decimal>\"", excerpt(line))))?;
        let path = r.hashes("inclusion path")?;
        let checkpoint = r.rest();
        if checkpoint.is_empty() {
            return Err(r.error("no checkpoint follows the inclusion path".to_owned()));
        }
        Ok(Self {
            extra,
            index,
            path,
            checkpoint: checkpoint.to_vec(),
        })
    }

    /// The proof in the tlog-proof text format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{PROOF_HEADER}\n").into_bytes();
        if let Some(extra) = &self.extra {
            out.extend_from_slice(format!("extra {}\n", BASE64.encode(extra)).as_bytes());
        }
        out.extend_from_slice(format!("index {}\n", self.index).as_bytes());
        push_hashes(&mut out, &self.path);
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

/// A newer checkpoint of the same log and the consistency proof leading to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    /// From the inner proof's checkpoint size to the newer checkpoint's.
    pub consistency: Vec<Hash>,
    /// The newer checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

/// A proof file: a tlog-proof, possibly extended.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofFile {
    pub extension: Option<Extension>,
    pub proof: TlogProof,
}

impl ProofFile {
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        check_size("proof file", bytes, MAX_PROOF_FILE_BYTES)?;
        let mut r = Reader::new(bytes, 0);
        if !bytes.starts_with(format!("{EXTENSION_HEADER}\n").as_bytes()) {
            return Ok(Self {
                extension: None,
                proof: TlogProof::parse_from(&mut r)?,
            });
        }
        r.header(EXTENSION_HEADER)?;
        let consistency = r.hashes("consistency proof")?;
        let checkpoint = r.note()?;
        let proof = TlogProof::parse_from(&mut r)?;
        Ok(Self {
            extension: Some(Extension {
                consistency,
                checkpoint,
            }),
            proof,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(ext) = &self.extension {
            out.extend_from_slice(format!("{EXTENSION_HEADER}\n").as_bytes());
            push_hashes(&mut out, &ext.consistency);
            out.push(b'\n');
            out.extend_from_slice(&ext.checkpoint);
            out.push(b'\n');
        }
        out.extend_from_slice(&self.proof.to_bytes());
        out
    }
}

/// Refuses a file larger than `max` before parsing any of it.
fn check_size(what: &str, bytes: &[u8], max: usize) -> Result<(), FormatError> {
    if bytes.len() > max {
        return Err(FormatError {
            line: 0,
            problem: format!(
                "{what} is {} bytes, more than the {max} allowed",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// Writes evidence in the evidence file format.
pub fn encode_evidence(items: &[pb::Evidence]) -> Vec<u8> {
    let mut out = format!("{EVIDENCE_HEADER}\n").into_bytes();
    for item in items {
        out.extend_from_slice(BASE64.encode(item.encode_to_vec()).as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads an evidence file.
pub fn parse_evidence(bytes: &[u8]) -> Result<Vec<pb::Evidence>, FormatError> {
    check_size("evidence file", bytes, MAX_EVIDENCE_FILE_BYTES)?;
    let mut r = Reader::new(bytes, 0);
    r.header(EVIDENCE_HEADER)?;
    let mut items = Vec::new();
    while !r.rest().is_empty() {
        let line = r.line("an evidence line")?;
        let blob = BASE64
            .decode(line)
            .map_err(|_| r.error("evidence is not standard base64".to_owned()))?;
        let item = pb::Evidence::decode(blob.as_slice())
            .map_err(|e| r.error(format!("evidence is not a credex.v1.Evidence message: {e}")))?;
        items.push(item);
    }
    Ok(items)
}

/// Reads a file's lines, counting them for error messages.
struct Reader<'a> {
    rest: &'a [u8],
    /// Lines read so far, including those of an enclosing file.
    line: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a [u8], line: usize) -> Self {
        Self { rest: text, line }
    }

    fn error(&self, problem: String) -> FormatError {
        FormatError {
            line: self.line,
            problem,
        }
    }

    /// The next line without its newline; every line must end in one.
    fn line(&mut self, expected: &str) -> Result<&'a [u8], FormatError> {
        self.line += 1;
        let Some(end) = self.rest.iter().position(|&b| b == b'\n') else {
            return Err(self.error(if self.rest.is_empty() {
                format!("the file ends where {expected} should be")
            } else {
                "the last line has no newline".to_owned()
            }));
        };
        let (line, rest) = self.rest.split_at(end);
        self.rest = &rest[1..];
        if line.ends_with(b"\r") {
            return Err(self.error("lines end in CRLF; only LF is allowed".to_owned()));
        }
        Ok(line)
    }

    fn header(&mut self, header: &str) -> Result<(), FormatError> {
        let line = self.line(header)?;
        if line != header.as_bytes() {
            return Err(self.error(format!("{:?} is not {header:?}", excerpt(line))));
        }
        Ok(())
    }

    /// Base64 hash lines up to and including an empty line.
    fn hashes(&mut self, what: &str) -> Result<Vec<Hash>, FormatError> {
        let mut hashes = Vec::new();
        loop {
            let line = self.line("an empty line")?;
            if line.is_empty() {
                return Ok(hashes);
            }
            if hashes.len() == MAX_PATH_HASHES {
                return Err(self.error(format!("{what} has more than {MAX_PATH_HASHES} hashes")));
            }
            let bytes = BASE64
                .decode(line)
                .map_err(|_| self.error(format!("{what} hash is not standard base64")))?;
            let hash = merkle::hash_from_bytes(&bytes)
                .map_err(|e| self.error(format!("{what} hash: {e}")))?;
            hashes.push(hash);
        }
    }

    /// A signed note (text lines, an empty line, `— ` signature lines) followed by an empty
    /// line, which is not part of the note.
    fn note(&mut self) -> Result<Vec<u8>, FormatError> {
        let start = self.rest;
        let mut len = 0;
        let mut text_lines = 0;
        loop {
            let line = self.line("a checkpoint line")?;
            len += line.len() + 1;
            if line.is_empty() {
                break;
            }
            text_lines += 1;
        }
        if text_lines == 0 {
            return Err(self.error("the newer checkpoint has no text".to_owned()));
        }
        let mut signatures = 0;
        loop {
            let line = self.line("a signature line")?;
            if line.is_empty() {
                break;
            }
            if !line.starts_with("— ".as_bytes()) {
                return Err(self.error(format!(
                    "{:?} is not a signature line \"— <key name> <base64>\"",
                    excerpt(line)
                )));
            }
            len += line.len() + 1;
            signatures += 1;
        }
        if signatures == 0 {
            return Err(self.error("the newer checkpoint has no signature lines".to_owned()));
        }
        Ok(start[..len].to_vec())
    }

    fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

fn push_hashes(out: &mut Vec<u8>, hashes: &[Hash]) {
    for h in hashes {
        out.extend_from_slice(BASE64.encode(h.0).as_bytes());
        out.push(b'\n');
    }
}

/// A decimal `u64` without sign or leading zeros.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.iter().all(u8::is_ascii_digit)
        && (text == b"0" || text[0] != b'0');
    canonical
        .then(|| std::str::from_utf8(text).ok()?.parse().ok())
        .flatten()
}

fn excerpt(line: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned();
    if line.len() > 64 {
        s.push('…');
    }
    s
}

// ------------------------------------------------------------------ checkpoints

/// What a verified checkpoint says and who cosigned it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointReport {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The origin's log key, `name+keyid`.
    pub signed_by: String,
    /// Member cities other than the origin whose witness cosigned: these count for the quorum.
    pub cosigners: Vec<Cosigner>,
    /// The origin's own witness cosigned too (not counted).
    pub own_cosignature: bool,
    /// Signature lines by keys outside the consortium, ignored.
    pub ignored: usize,
}

/// A member witness's cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigner {
    pub city: String,
    /// Unix seconds.
    pub timestamp: u64,
}

/// The member whose log key signs checkpoints with this origin line.
pub fn member_by_origin<'a>(consortium: &'a Consortium, origin: &str) -> Option<&'a Member> {
    consortium
        .members
        .iter()
        .find(|m| m.log_key.name() == origin)
}

/// The checkpoint a note carries, unverified, to find which key must verify it.
fn peek_checkpoint(note: &[u8]) -> Result<Checkpoint, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::NoteTooLarge { len: note.len() });
    }
    let end = note
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or(NoteError::MalformedNote)?;
    Checkpoint::parse_body(&note[..=end])
}

/// Verifies a checkpoint note of `member`'s log against the pinned keys.
fn verify_note(
    note: &[u8],
    member: &Member,
    consortium: &Consortium,
) -> Result<(SignedCheckpoint, CheckpointReport), NoteError> {
    let witnesses: Vec<PublicKey> = consortium
        .members
        .iter()
        .map(|m| m.witness_key.clone())
        .collect();
    let signed = note::verify_checkpoint(note, &member.log_key, &witnesses)?;
    let mut cosigners = Vec::new();
    let mut own_cosignature = false;
    for c in &signed.cosignatures {
        let Some(witness) = consortium
            .members
            .iter()
            .find(|m| m.witness_key.name() == c.witness && m.witness_key.key_id() == c.key_id)
        else {
            continue;
        };
        if witness.city == member.city {
            own_cosignature = true;
        } else if !cosigners.iter().any(|s: &Cosigner| s.city == witness.city) {
            cosigners.push(Cosigner {
                city: witness.city.clone(),
                timestamp: c.timestamp,
            });
        }
    }
    let lines = signature_lines(note);
    let ignored = lines.saturating_sub(1 + signed.cosignatures.len());
    let report = CheckpointReport {
        origin: signed.checkpoint.origin.clone(),
        size: signed.checkpoint.size,
        root: signed.checkpoint.root,
        signed_by: key_text(&member.log_key),
        cosigners,
        own_cosignature,
        ignored,
    };
    Ok((signed, report))
}

/// Signature lines in a well-formed note: the non-empty lines after its first blank line
/// (a checkpoint body has none).
fn signature_lines(note: &[u8]) -> usize {
    note.windows(2).position(|w| w == b"\n\n").map_or(0, |i| {
        note[i + 2..]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    })
}

fn key_text(key: &PublicKey) -> String {
    format!("{}+{:08x}", key.name(), key.key_id())
}

// ------------------------------------------------------------------ proofs

/// Which checkpoint of a proof file a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The one the inclusion path leads to.
    Proof,
    /// The extension's newer one.
    Newer,
}

/// The check a proof file failed.
#[derive(Debug)]
pub enum VerifyError {
    /// The tlog-proof has no `extra` line, so no entry.
    NoEntry,
    UnknownOrigin {
        origin: String,
        consortium: String,
    },
    UnknownCity {
        city: String,
        consortium: String,
    },
    Checkpoint {
        which: Which,
        source: NoteError,
    },
    Entry(EntryError),
    EntryOrigin {
        found: String,
        expected: String,
    },
    EntrySeq {
        found: u64,
        index: u64,
    },
    Inclusion(ProofError),
    Consistency(ProofError),
    Quorum {
        origin: String,
        size: u64,
        cosigners: Vec<String>,
        need: usize,
        /// The origin's own witness cosigned (not counted).
        own: bool,
        /// Signature lines by keys outside the consortium (ignored).
        ignored: usize,
    },
}

impl VerifyError {
    /// The check's short name, as the message starts with it.
    pub fn check(&self) -> &'static str {
        match self {
            Self::NoEntry | Self::Entry(_) | Self::EntryOrigin { .. } | Self::EntrySeq { .. } => {
                "signed entry"
            }
            Self::UnknownOrigin { .. } | Self::UnknownCity { .. } => "origin",
            Self::Checkpoint {
                which: Which::Proof,
                ..
            } => "checkpoint",
            Self::Checkpoint {
                which: Which::Newer,
                ..
            } => "newer checkpoint",
            Self::Inclusion(_) => "inclusion proof",
            Self::Consistency(_) => "consistency proof",
            Self::Quorum { .. } => "quorum",
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.check())?;
        match self {
            Self::NoEntry => f.write_str(
                "the proof has no extra line, where a credex proof carries the signed entry",
            ),
            Self::UnknownOrigin { origin, consortium } => write!(
                f,
                "checkpoint origin {origin:?} is not the log of a member of consortium {consortium}"
            ),
            Self::UnknownCity { city, consortium } => {
                write!(f, "{city:?} is not a member of consortium {consortium}")
            }
            Self::Checkpoint { source, .. } => write!(f, "{source}"),
            Self::Entry(e) => write!(f, "{e}"),
            Self::EntryOrigin { found, expected } => write!(
                f,
                "the entry says origin {found:?}, but the checkpoint is the log of {expected}"
            ),
            Self::EntrySeq { found, index } => write!(
                f,
                "the entry says seq {found}, but the proof is for index {index}"
            ),
            Self::Inclusion(e) | Self::Consistency(e) => write!(f, "{e}"),
            Self::Quorum {
                origin,
                size,
                cosigners,
                need,
                own,
                ignored,
            } => {
                write!(
                    f,
                    "checkpoint of {origin} at size {size} has {} from other members' witnesses{}, {need} needed",
                    plural(cosigners.len(), "cosignature"),
                    if cosigners.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", cosigners.join(", "))
                    }
                )?;
                if *own {
                    f.write_str("; the origin's own witness does not count")?;
                }
                if *ignored > 0 {
                    write!(
                        f,
                        "; ignored {} by keys outside the consortium",
                        plural(*ignored, "signature line")
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// A proof file that verified.
#[derive(Debug, Clone)]
pub struct ProofReport {
    /// The origin city.
    pub city: String,
    pub city_name: String,
    pub index: u64,
    pub leaf_hash: Hash,
    /// The decoded entry, record included (with full ID numbers: mask before display).
    pub entry: pb::Entry,
    /// The checkpoint the inclusion path leads to.
    pub checkpoint: CheckpointReport,
    /// The extension's newer checkpoint, consistent with `checkpoint`.
    pub newer: Option<CheckpointReport>,
    pub quorum: usize,
}

impl ProofReport {
    /// The checkpoint the quorum was checked on: the newer one when the file is extended.
    pub fn quorum_checkpoint(&self) -> &CheckpointReport {
        self.newer.as_ref().unwrap_or(&self.checkpoint)
    }
}

/// Verifies a proof file offline, in this order: the checkpoint's signature by its origin's
/// pinned log key, the entry's signature (strict), the entry's origin and seq, the leaf's
/// inclusion under the checkpoint's root, then for an extended file the newer checkpoint's
/// signature and the consistency proof, and last the quorum of cosignatures on the newest
/// checkpoint. The checkpoint comes first because everything else is checked against it.
pub fn verify_proof(
    file: &ProofFile,
    consortium: &Consortium,
    quorum: usize,
) -> Result<ProofReport, VerifyError> {
    let proof = &file.proof;
    let leaf = proof.extra.as_deref().ok_or(VerifyError::NoEntry)?;
    let checkpoint_error = |which| move |source| VerifyError::Checkpoint { which, source };

    let origin = peek_checkpoint(&proof.checkpoint).map_err(checkpoint_error(Which::Proof))?;
    let member =
        member_by_origin(consortium, &origin.origin).ok_or_else(|| VerifyError::UnknownOrigin {
            origin: origin.origin.clone(),
            consortium: consortium.name.clone(),
        })?;
    let (old, old_report) = verify_note(&proof.checkpoint, member, consortium)
        .map_err(checkpoint_error(Which::Proof))?;

    let verified = entry::verify_entry(leaf, &member.log_key).map_err(VerifyError::Entry)?;
    if verified.entry.origin != member.city {
        return Err(VerifyError::EntryOrigin {
            found: verified.entry.origin,
            expected: member.city.clone(),
        });
    }
    if verified.entry.seq != proof.index {
        return Err(VerifyError::EntrySeq {
            found: verified.entry.seq,
            index: proof.index,
        });
    }
    let leaf_hash = merkle::leaf_hash(leaf);
    merkle::verify_inclusion(
        &proof.path,
        proof.index,
        old.checkpoint.size,
        leaf_hash,
        old.checkpoint.root,
    )
    .map_err(VerifyError::Inclusion)?;

    let newer_report = match &file.extension {
        None => None,
        Some(ext) => {
            let (new, report) = verify_note(&ext.checkpoint, member, consortium)
                .map_err(checkpoint_error(Which::Newer))?;
            merkle::verify_consistency(
                &ext.consistency,
                old.checkpoint.size,
                old.checkpoint.root,
                new.checkpoint.size,
                new.checkpoint.root,
            )
            .map_err(VerifyError::Consistency)?;
            Some(report)
        }
    };

    let report = ProofReport {
        city: member.city.clone(),
        city_name: member.name_zh.clone(),
        index: proof.index,
        leaf_hash,
        entry: verified.entry,
        checkpoint: old_report,
        newer: newer_report,
        quorum,
    };
    let last = report.quorum_checkpoint();
    if last.cosigners.len() < quorum {
        return Err(VerifyError::Quorum {
            origin: last.origin.clone(),
            size: last.size,
            cosigners: last.cosigners.iter().map(|c| c.city.clone()).collect(),
            need: quorum,
            own: last.own_cosignature,
            ignored: last.ignored,
        });
    }
    Ok(report)
}

/// A verified proof as text: the record (ID numbers masked), then every check that held. The
/// quorum line is marked `--` instead of `ok` when the report's quorum is not met, which only
/// a report verified with a lower quorum can show.
pub fn render_proof_report(r: &ProofReport) -> String {
    let record = r.entry.record.clone().unwrap_or_default();
    let mut out = format!(
        "record {} version {} — {} ({}) seq {}\n",
        record.record_id, record.version, r.city, r.city_name, r.index
    );
    out.push_str(&render_fields(&record_fields(
        &masked_record(&record),
        r.entry.logged_at,
    )));
    out.push_str("checks\n");
    let cp = &r.checkpoint;
    let mut ok = |line: String| out.push_str(&format!("  ok  {line}\n"));
    ok(format!(
        "checkpoint {} size {} signed by the origin's log key {}",
        cp.origin, cp.size, cp.signed_by
    ));
    ok(format!(
        "entry signature by {} (strict Ed25519), origin {}, seq {}",
        cp.signed_by, r.city, r.index
    ));
    ok(format!(
        "leaf hash {} included at index {} of the tree of size {}, root {}",
        r.leaf_hash, r.index, cp.size, cp.root
    ));
    if let Some(new) = &r.newer {
        ok(format!(
            "newer checkpoint size {} signed by {}, consistent with size {}, root {}",
            new.size, new.signed_by, cp.size, new.root
        ));
    }
    let last = r.quorum_checkpoint();
    let mark = if last.cosigners.len() >= r.quorum {
        "ok"
    } else {
        "--"
    };
    out.push_str(&format!(
        "  {mark}  {} from other members' witnesses on size {}{}, quorum {}\n",
        plural(last.cosigners.len(), "cosignature"),
        last.size,
        if last.cosigners.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                last.cosigners
                    .iter()
                    .map(|c| format!("{} at {}", c.city, format_seconds(c.timestamp)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        r.quorum
    ));
    let mut not_counted = Vec::new();
    if last.own_cosignature {
        not_counted.push("the origin's own witness".to_owned());
    }
    if last.ignored > 0 {
        not_counted.push(format!(
            "{} by keys outside the consortium",
            plural(last.ignored, "signature line")
        ));
    }
    if !not_counted.is_empty() {
        out.push_str(&format!("      not counted: {}\n", not_counted.join("; ")));
    }
    out
}

/// The record with every ID number masked, for display and export.
pub fn masked_record(record: &pb::CreditRecord) -> pb::CreditRecord {
    let mut r = record.clone();
    if let Some(s) = r.subject.as_mut() {
        if !s.id_number.is_empty() {
            s.id_number = mask_id_number(&s.id_number);
        }
        if let Some(l) = s.legal_representative.as_mut()
            && !l.id_number.is_empty()
        {
            l.id_number = mask_id_number(&l.id_number);
        }
    }
    r
}

/// A record's fields as (label, value) lines, empty ones left out. Shows what it is given:
/// mask it first.
fn record_fields(r: &pb::CreditRecord, logged_at: i64) -> Vec<(&'static str, String)> {
    let mut fields = vec![("logged at", format_millis(logged_at))];
    if let Some(s) = &r.subject {
        let mut ids = Vec::new();
        if !s.uscc.is_empty() {
            ids.push(format!("USCC {}", s.uscc));
        }
        if !s.id_number.is_empty() {
            ids.push(format!("ID {}", s.id_number));
        }
        fields.push((
            "subject",
            format!(
                "{} ({}){}",
                s.name,
                json::display_enum(json::SUBJECT_KINDS, s.kind),
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(", {}", ids.join(", "))
                }
            ),
        ));
        if let Some(l) = &s.legal_representative {
            fields.push((
                "legal rep.",
                [l.name.as_str(), l.id_number.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
    }
    fields.push((
        "list",
        format!(
            "{}, {}, severity {}",
            json::display_enum(json::LIST_KINDS, r.list),
            r.category,
            json::display_enum(json::SEVERITIES, r.severity)
        ),
    ));
    if let Some(a) = &r.authority {
        fields.push(("authority", format!("{} ({})", a.name, a.uscc)));
    }
    if let Some(d) = &r.decision {
        fields.push((
            "decision",
            format!("{} of {}", d.document_number, d.decided_on),
        ));
        fields.push(("legal basis", d.legal_basis.clone()));
        fields.push(("facts", d.facts.clone()));
        fields.push(("penalty", d.penalty_kinds.join(", ")));
        fields.push(("penalty text", d.penalty_content.clone()));
        if d.fine_fen != 0 {
            fields.push((
                "fine",
                format!("{}.{:02} yuan", d.fine_fen / 100, (d.fine_fen % 100).abs()),
            ));
        }
        fields.push(("sanctions", d.sanction_measures.join(", ")));
    }
    if let Some(p) = &r.publication {
        fields.push(("publication", format!("{} – {}", p.starts_on, p.ends_on)));
    }
    if let Some(s) = &r.status {
        let mut status = json::display_enum(json::STATUS_KINDS, s.kind);
        if !s.effective_on.is_empty() {
            status.push_str(&format!(" since {}", s.effective_on));
        }
        if !s.reason.is_empty() {
            status.push_str(&format!(": {}", s.reason));
        }
        fields.push(("status", status));
    }
    fields.push(("data source", r.data_source.clone()));
    fields.push(("remarks", r.remarks.clone()));
    fields.retain(|(_, v)| !v.is_empty());
    fields
}

fn render_fields(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(label, value)| format!("  {label:<13}{}\n", value.replace(['\n', '\r'], " ")))
        .collect()
}

/// China Standard Time, in which credex dates are.
fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

fn format_millis(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| {
            t.with_timezone(&cst())
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        },
    )
}

fn format_seconds(s: u64) -> String {
    i64::try_from(s)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map_or_else(
            || format!("{s} s"),
            |t| {
                t.with_timezone(&cst())
                    .format("%Y-%m-%d %H:%M:%S %:z")
                    .to_string()
            },
        )
}

fn entries(n: u64) -> String {
    if n == 1 {
        "1 entry".to_owned()
    } else {
        format!("{n} entries")
    }
}

fn hash_count(n: usize) -> String {
    if n == 1 {
        "1 hash".to_owned()
    } else {
        format!("{n} hashes")
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

// ------------------------------------------------------------------ evidence

/// Why a piece of evidence was refused: it is forged, damaged, or shows no conflict.
#[derive(Debug)]
pub enum EvidenceError {
    UnknownOrigin {
        origin: String,
        consortium: String,
    },
    UnknownKind(i32),
    TooFew {
        what: &'static str,
        count: usize,
    },
    /// Checkpoint number `n` (from 1) does not verify.
    Checkpoint {
        n: usize,
        source: NoteError,
    },
    /// Signed entry number `n` (from 1) does not verify.
    Entry {
        n: usize,
        source: EntryError,
    },
    EntryOrigin {
        n: usize,
        found: String,
        expected: String,
    },
    NoConflict(String),
    ConsistencyHolds {
        old: u64,
        new: u64,
    },
}

impl fmt::Display for EvidenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOrigin { origin, consortium } => {
                write!(
                    f,
                    "origin {origin:?} is not a member of consortium {consortium}"
                )
            }
            Self::UnknownKind(kind) => write!(f, "unknown evidence kind {kind}"),
            Self::TooFew { what, count } => {
                write!(
                    f,
                    "it holds {}, at least 2 are needed",
                    plural(*count, what)
                )
            }
            Self::Checkpoint { n, source } => write!(f, "checkpoint {n}: {source}"),
            Self::Entry { n, source } => write!(f, "signed entry {n}: {source}"),
            Self::EntryOrigin { n, found, expected } => write!(
                f,
                "signed entry {n}: the entry says origin {found:?}, not {expected:?}"
            ),
            Self::NoConflict(detail) => write!(f, "no conflict: {detail}"),
            Self::ConsistencyHolds { old, new } => write!(
                f,
                "the consistency proof from size {old} to size {new} verifies: the checkpoints are consistent"
            ),
        }
    }
}

impl std::error::Error for EvidenceError {}

/// What a piece of evidence shows.
#[derive(Debug, Clone, PartialEq)]
pub enum EvidenceVerdict {
    /// The origin provably equivocated.
    Proven(Equivocation),
    /// Every piece is authentic, but the conflict cannot be shown offline.
    Unproven(String),
}

/// A proven equivocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Equivocation {
    /// Two checkpoints signed by the origin, of one size, with different roots.
    Checkpoints { size: u64, roots: [Hash; 2] },
    /// Two different leaves signed by the origin for one seq.
    Entries { seq: u64, leaf_hashes: [Hash; 2] },
    /// Two checkpoints signed by the origin, of sizes `old_size < new_size`, and a consistency
    /// proof that reproduces the root signed at `new_size` and yields, for that tree's first
    /// `old_size` leaves, a root other than the one signed at `old_size`.
    Histories {
        old_size: u64,
        new_size: u64,
        signed_old_root: Hash,
        implied_old_root: Hash,
        new_root: Hash,
    },
}

/// A piece of evidence whose signatures verified.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceReport {
    pub city: String,
    pub kind: pb::evidence::Kind,
    pub detected_via: String,
    /// Unix milliseconds.
    pub detected_at: i64,
    pub verdict: EvidenceVerdict,
}

/// Verifies one piece of evidence offline with the origin's pinned log key; see the module
/// docs for what counts as proof.
pub fn verify_evidence(
    e: &pb::Evidence,
    consortium: &Consortium,
) -> Result<EvidenceReport, EvidenceError> {
    let member = consortium
        .member(&e.origin)
        .ok_or_else(|| EvidenceError::UnknownOrigin {
            origin: e.origin.clone(),
            consortium: consortium.name.clone(),
        })?;
    let kind = pb::evidence::Kind::try_from(e.kind)
        .ok()
        .filter(|k| *k != pb::evidence::Kind::Unspecified)
        .ok_or(EvidenceError::UnknownKind(e.kind))?;
    let verdict = match kind {
        pb::evidence::Kind::ConflictingEntries => conflicting_entries(e, member)?,
        _ => {
            let checkpoints = evidence_checkpoints(e, member)?;
            match conflicting_checkpoints(&checkpoints) {
                Some(found) => EvidenceVerdict::Proven(found),
                None if kind == pb::evidence::Kind::ConflictingCheckpoints => {
                    return Err(EvidenceError::NoConflict(format!(
                        "no two of the checkpoints (sizes {}) have one size and different roots",
                        sizes(&checkpoints)
                    )));
                }
                None => inconsistent_checkpoints(e, &checkpoints)?,
            }
        }
    };
    Ok(EvidenceReport {
        city: member.city.clone(),
        kind,
        detected_via: e.detected_via.clone(),
        detected_at: e.detected_at,
        verdict,
    })
}

fn evidence_checkpoints(
    e: &pb::Evidence,
    member: &Member,
) -> Result<Vec<Checkpoint>, EvidenceError> {
    if e.checkpoints.len() < 2 {
        return Err(EvidenceError::TooFew {
            what: "checkpoint",
            count: e.checkpoints.len(),
        });
    }
    e.checkpoints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // Only the origin's signature makes a checkpoint its claim; cosignatures add nothing.
            note::verify_checkpoint(&c.note, &member.log_key, &[])
                .map(|s| s.checkpoint)
                .map_err(|source| EvidenceError::Checkpoint { n: i + 1, source })
        })
        .collect()
}

fn conflicting_checkpoints(checkpoints: &[Checkpoint]) -> Option<Equivocation> {
    checkpoints.iter().enumerate().find_map(|(i, a)| {
        checkpoints[i + 1..]
            .iter()
            .find(|b| b.size == a.size && b.root != a.root)
            .map(|b| Equivocation::Checkpoints {
                size: a.size,
                roots: [a.root, b.root],
            })
    })
}

/// Checkpoints of different sizes and the consistency proof that comes with them. The proof
/// is for one pair of sizes, which the evidence does not name, so every pair of distinct
/// signed claims `m < n` is tried, the widest (smallest and largest size) first; a pair
/// whose proof length does not fit is skipped. The first pair that proves an equivocation
/// decides; failing that, a pair the proof shows consistent refutes the evidence.
fn inconsistent_checkpoints(
    e: &pb::Evidence,
    checkpoints: &[Checkpoint],
) -> Result<EvidenceVerdict, EvidenceError> {
    // One claim per (size, root): a checkpoint listed twice, say with more cosignatures, is one.
    let mut claims: Vec<&Checkpoint> = checkpoints.iter().collect();
    claims.sort_by_key(|c| (c.size, c.root.0));
    claims.dedup_by_key(|c| (c.size, c.root));
    let mut pairs: Vec<(&Checkpoint, &Checkpoint)> = claims
        .iter()
        .enumerate()
        .flat_map(|(i, old)| {
            claims[i + 1..]
                .iter()
                .filter(|new| new.size > old.size)
                .map(move |new| (*old, *new))
        })
        .collect();
    pairs.sort_by_key(|(old, new)| (std::cmp::Reverse(new.size - old.size), old.size));
    let Some(&(widest_old, widest_new)) = pairs.first() else {
        return Err(EvidenceError::NoConflict(format!(
            "the checkpoints all have size {} and the same root",
            checkpoints[0].size
        )));
    };
    let proof = match e
        .consistency_proof
        .iter()
        .map(|h| merkle::hash_from_bytes(h))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(proof) => proof,
        Err(err) => {
            return Ok(EvidenceVerdict::Unproven(format!(
                "the checkpoints are signed by the origin, but the consistency proof is malformed ({err}), so it proves nothing"
            )));
        }
    };
    let mut holds = None;
    let mut not_reproduced = None;
    let mut wrong_length = None;
    for (old, new) in pairs {
        // A plain RFC 9162 proof (no seed when `old` is a power of two) can still show the
        // two checkpoints consistent, which refutes the evidence.
        if merkle::verify_consistency(&proof, old.size, old.root, new.size, new.root).is_ok() {
            holds.get_or_insert((old.size, new.size));
            continue;
        }
        match merkle::consistency_roots(&proof, old.size, new.size) {
            Ok((implied_old_root, computed_new)) if computed_new == new.root => {
                if implied_old_root == old.root {
                    holds.get_or_insert((old.size, new.size));
                } else {
                    return Ok(EvidenceVerdict::Proven(Equivocation::Histories {
                        old_size: old.size,
                        new_size: new.size,
                        signed_old_root: old.root,
                        implied_old_root,
                        new_root: new.root,
                    }));
                }
            }
            Ok((_, computed_new)) => {
                not_reproduced.get_or_insert((
                    old.size,
                    new.size,
                    format!("it yields {computed_new}, the origin signed {}", new.root),
                ));
            }
            Err(ProofError::WrongProofLength { want, .. }) => {
                wrong_length.get_or_insert(want);
            }
            Err(err) => {
                not_reproduced.get_or_insert((old.size, new.size, err.to_string()));
            }
        }
    }
    if let Some((old, new)) = holds {
        return Err(EvidenceError::ConsistencyHolds { old, new });
    }
    Ok(EvidenceVerdict::Unproven(match not_reproduced {
        Some((old, new, why)) => format!(
            "the checkpoints are signed by the origin, but the consistency proof from size {old} to {new} does not reproduce the root signed at size {new} ({why}), so it says nothing about that tree's first {old} leaves: it proves nothing"
        ),
        None => format!(
            "the checkpoints are signed by the origin, but the consistency proof has {}, the length of no proof between two of the signed sizes ({}; a seeded proof from {} to {} has {}), so it proves nothing",
            hash_count(proof.len()),
            sizes(checkpoints),
            widest_old.size,
            widest_new.size,
            hash_count(wrong_length.unwrap_or_default()),
        ),
    }))
}

fn conflicting_entries(
    e: &pb::Evidence,
    member: &Member,
) -> Result<EvidenceVerdict, EvidenceError> {
    if e.signed_entries.len() < 2 {
        return Err(EvidenceError::TooFew {
            what: "signed entry",
            count: e.signed_entries.len(),
        });
    }
    let mut entries = Vec::with_capacity(e.signed_entries.len());
    for (i, leaf) in e.signed_entries.iter().enumerate() {
        let verified = entry::verify_entry(leaf, &member.log_key)
            .map_err(|source| EvidenceError::Entry { n: i + 1, source })?;
        if verified.entry.origin != member.city {
            return Err(EvidenceError::EntryOrigin {
                n: i + 1,
                found: verified.entry.origin,
                expected: member.city.clone(),
            });
        }
        entries.push((verified.entry.seq, leaf.as_slice()));
    }
    let found = entries.iter().enumerate().find_map(|(i, (seq, a))| {
        entries[i + 1..]
            .iter()
            .find(|(s, b)| s == seq && b != a)
            .map(|(_, b)| Equivocation::Entries {
                seq: *seq,
                leaf_hashes: [merkle::leaf_hash(a), merkle::leaf_hash(b)],
            })
    });
    found.map(EvidenceVerdict::Proven).ok_or_else(|| {
        EvidenceError::NoConflict(format!(
            "no two different entries share a seq (seqs {})",
            entries
                .iter()
                .map(|(s, _)| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn sizes(checkpoints: &[Checkpoint]) -> String {
    checkpoints
        .iter()
        .map(|c| c.size.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The display name of an evidence kind.
pub fn kind_name(kind: pb::evidence::Kind) -> &'static str {
    match kind {
        pb::evidence::Kind::Unspecified => "unspecified",
        pb::evidence::Kind::ConflictingCheckpoints => "conflicting checkpoints",
        pb::evidence::Kind::InconsistentCheckpoints => "inconsistent checkpoints",
        pb::evidence::Kind::ConflictingEntries => "conflicting entries",
    }
}

/// One line about a verified piece of evidence.
pub fn render_evidence_report(r: &EvidenceReport) -> String {
    let head = format!(
        "{}, {}, detected via {} at {}",
        r.city,
        kind_name(r.kind),
        if r.detected_via.is_empty() {
            "-"
        } else {
            &r.detected_via
        },
        format_millis(r.detected_at)
    );
    match &r.verdict {
        EvidenceVerdict::Proven(Equivocation::Checkpoints { size, roots }) => format!(
            "{head}: PROVEN — two checkpoints of size {size} signed by the origin have roots {} and {}",
            roots[0], roots[1]
        ),
        EvidenceVerdict::Proven(Equivocation::Entries { seq, leaf_hashes }) => format!(
            "{head}: PROVEN — two different entries for seq {seq} signed by the origin, leaf hashes {} and {}",
            leaf_hashes[0], leaf_hashes[1]
        ),
        EvidenceVerdict::Proven(Equivocation::Histories {
            old_size,
            new_size,
            signed_old_root,
            implied_old_root,
            new_root,
        }) => format!(
            "{head}: PROVEN — the origin signed a tree of size {new_size} (root {new_root}) whose first {old_size} leaves have root {implied_old_root} by the consistency proof, and a tree of size {old_size} with root {signed_old_root}"
        ),
        EvidenceVerdict::Unproven(why) => format!("{head}: NOT PROVEN — {why}"),
    }
}

// ------------------------------------------------------------------ log replay

/// Something wrong found while replaying a log.
#[derive(Debug)]
pub enum ReplayFailure {
    Entry {
        seq: u64,
        source: EntryError,
    },
    EntryOrigin {
        seq: u64,
        found: String,
        expected: String,
    },
    EntrySeq {
        seq: u64,
        found: u64,
    },
    /// Checkpoint number `position` (from 0, in the order the node listed them).
    Checkpoint {
        position: usize,
        source: NoteError,
    },
    ConflictingCheckpoints {
        size: u64,
        roots: [Hash; 2],
    },
    RootMismatch {
        size: u64,
        signed: Hash,
        computed: Hash,
    },
    Inconsistent {
        old: u64,
        new: u64,
        source: ProofError,
    },
    BeyondLog {
        size: u64,
        entries: u64,
    },
    Tree {
        seq: u64,
        source: ProofError,
    },
    /// The tree of every entry served, the log the node holds, has a root that no checkpoint
    /// of its size carries (`held` of that size were verified, none with this root).
    UnsignedRoot {
        size: u64,
        root: Hash,
        held: usize,
    },
    /// The node holds equivocation evidence about the origin, so it marks it forked.
    Forked {
        city: String,
        evidence: usize,
    },
}

impl fmt::Display for ReplayFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Entry { seq, source } => write!(f, "entry {seq}: {source}"),
            Self::EntryOrigin {
                seq,
                found,
                expected,
            } => write!(f, "entry {seq}: it says origin {found:?}, not {expected:?}"),
            Self::EntrySeq { seq, found } => write!(f, "entry {seq}: it says seq {found}"),
            Self::Checkpoint { position, source } => {
                write!(f, "checkpoint #{position} of the history: {source}")
            }
            Self::ConflictingCheckpoints { size, roots } => write!(
                f,
                "two checkpoints of size {size} signed by the origin have different roots {} and {}: the origin equivocated",
                roots[0], roots[1]
            ),
            Self::RootMismatch {
                size,
                signed,
                computed,
            } => write!(
                f,
                "checkpoint of size {size}: its signed root {signed} is not {computed}, the root of the entries served"
            ),
            Self::Inconsistent { old, new, source } => {
                write!(f, "checkpoints of sizes {old} and {new}: {source}")
            }
            Self::BeyondLog { size, entries } => write!(
                f,
                "checkpoint of size {size} covers more than the {entries} entries served"
            ),
            Self::Tree { seq, source } => write!(f, "entry {seq}: hashing into the tree: {source}"),
            Self::UnsignedRoot { size, root, held } => write!(
                f,
                "the log held, {} with root {root}, matches no checkpoint of size {size} the origin signed ({}): the node holds a root its origin never signed",
                entries(*size),
                if *held == 0 {
                    "none of that size".to_owned()
                } else {
                    format!("{held} of that size, with another root")
                }
            ),
            Self::Forked { city, evidence } => write!(
                f,
                "origin is marked forked at this node; {} (`credexctl audit evidence --origin {city}` exports them for `audit verify`)",
                if *evidence == 1 {
                    "1 piece of evidence".to_owned()
                } else {
                    format!("{evidence} pieces of evidence")
                }
            ),
        }
    }
}

/// Replays one origin's log: feed it the checkpoint history, then every leaf from seq 0 in
/// order ([`LogReplay::push`]), then [`LogReplay::finish`].
///
/// Every entry is verified (strict signature, origin, seq) and appended to a fresh tree,
/// whatever the outcome, since the leaf is in the log either way. Every checkpoint is verified
/// against the pinned keys and, once the tree reaches its size, its root compared with the
/// tree's. Between successive checkpoints whose roots both matched, a consistency proof
/// computed from the tree is checked against the two signed roots; when a root did not
/// match, that mismatch is the failure reported. Last, the whole tree — the log the node
/// holds — must have the root of a checkpoint of its size (DESIGN.md "Receiver checks": a
/// log never holds a root its origin did not sign); a log of its origin's first history up
/// to one checkpoint and another history's entries after it fails there. A node that marks
/// the origin forked ([`LogReplay::marked_forked`]) fails the replay too, whatever the
/// entries show.
#[derive(Debug)]
pub struct LogReplay {
    city: String,
    log_key: PublicKey,
    tree: MemoryHashStore,
    /// Verified checkpoints in size order.
    checkpoints: Vec<(Checkpoint, CheckpointReport)>,
    checkpoints_held: usize,
    /// Index in `checkpoints` of the next one to compare with the tree.
    next: usize,
    /// The last checkpoint whose root matched.
    last_matched: Option<Checkpoint>,
    /// The report of the largest checkpoint whose root matched.
    newest: Option<CheckpointReport>,
    entries_valid: u64,
    roots_matched: usize,
    consistency_checked: usize,
    /// Pieces of evidence the node holds about the origin, when it holds any.
    forked: Option<usize>,
    failures: Vec<ReplayFailure>,
    failure_count: u64,
}

/// What a replay found.
#[derive(Debug)]
pub struct ReplayReport {
    pub city: String,
    pub entries: u64,
    pub entries_valid: u64,
    pub root: Hash,
    /// Checkpoints the node listed (of a second listing, those taken).
    pub checkpoints_held: usize,
    pub checkpoints_verified: usize,
    pub roots_matched: usize,
    pub consistency_checked: usize,
    /// The largest checkpoint whose root matched the tree.
    pub newest: Option<CheckpointReport>,
    /// Pieces of evidence about the origin, when the node marks it forked.
    pub forked: Option<usize>,
    /// The first failures, in the order found (a forked origin first).
    pub failures: Vec<ReplayFailure>,
    /// All failures, including those not kept.
    pub failure_count: u64,
}

impl LogReplay {
    /// Starts a replay of `city`'s log with its checkpoint history (notes verbatim).
    pub fn new(
        consortium: &Consortium,
        city: &str,
        notes: &[Vec<u8>],
    ) -> Result<Self, VerifyError> {
        let member = consortium
            .member(city)
            .ok_or_else(|| VerifyError::UnknownCity {
                city: city.to_owned(),
                consortium: consortium.name.clone(),
            })?;
        let mut replay = Self {
            city: city.to_owned(),
            log_key: member.log_key.clone(),
            tree: MemoryHashStore::new(),
            checkpoints: Vec::new(),
            checkpoints_held: notes.len(),
            next: 0,
            last_matched: None,
            newest: None,
            entries_valid: 0,
            roots_matched: 0,
            consistency_checked: 0,
            forked: None,
            failures: Vec::new(),
            failure_count: 0,
        };
        for (position, n) in notes.iter().enumerate() {
            match verify_note(n, member, consortium) {
                Ok((signed, report)) => replay.checkpoints.push((signed.checkpoint, report)),
                Err(source) => replay.fail(ReplayFailure::Checkpoint { position, source }),
            }
        }
        replay.checkpoints.sort_by_key(|(c, _)| c.size);
        let conflicts: Vec<_> = replay
            .checkpoints
            .windows(2)
            .filter(|w| w[0].0.size == w[1].0.size && w[0].0.root != w[1].0.root)
            .map(|w| ReplayFailure::ConflictingCheckpoints {
                size: w[0].0.size,
                roots: [w[0].0.root, w[1].0.root],
            })
            .collect();
        for c in conflicts {
            replay.fail(c);
        }
        replay.check_due();
        Ok(replay)
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The largest verified checkpoint's size: how far the log should go.
    pub fn target_size(&self) -> u64 {
        self.checkpoints.last().map_or(0, |(c, _)| c.size)
    }

    /// Whether the tree replayed so far has the root of a verified checkpoint of its size
    /// (trivially so when empty).
    pub fn root_signed(&self) -> bool {
        self.tree.size() == 0
            || self
                .last_matched
                .as_ref()
                .is_some_and(|c| c.size == self.tree.size())
    }

    /// Adds checkpoints listed after the last entry was served: the node signs a checkpoint
    /// just after the entries it covers are durable, and the log may have grown since the
    /// history was first listed. Only those of the tree's size that are new (by root) are
    /// taken, verified and compared with the tree; larger ones cover entries this replay did
    /// not fetch, smaller ones were listed before.
    pub fn add_checkpoints(&mut self, consortium: &Consortium, notes: &[Vec<u8>]) {
        let size = self.tree.size();
        let Some(member) = consortium.member(&self.city) else {
            return;
        };
        for n in notes {
            let Ok(peeked) = peek_checkpoint(n) else {
                continue;
            };
            let known = self
                .checkpoints
                .iter()
                .any(|(c, _)| c.size == peeked.size && c.root == peeked.root);
            if peeked.size != size || known {
                continue;
            }
            let position = self.checkpoints_held;
            self.checkpoints_held += 1;
            match verify_note(n, member, consortium) {
                // Every checkpoint before `next` has at most this size, every one after it a
                // larger one: inserting at `next` keeps the order `check_due` relies on.
                Ok((signed, report)) => {
                    self.checkpoints
                        .insert(self.next, (signed.checkpoint, report));
                }
                Err(source) => self.fail(ReplayFailure::Checkpoint { position, source }),
            }
        }
        self.check_due();
    }

    /// Records that the node holds `evidence` pieces of equivocation evidence about the
    /// origin (Audit.ListEvidence), so marks it forked: the replay fails.
    pub fn marked_forked(&mut self, evidence: usize) {
        self.forked = Some(evidence);
    }

    /// Replays the next leaf.
    pub fn push(&mut self, leaf: &[u8]) {
        let seq = self.tree.size();
        match entry::verify_entry(leaf, &self.log_key) {
            Ok(v) if v.entry.origin != self.city => self.fail(ReplayFailure::EntryOrigin {
                seq,
                found: v.entry.origin,
                expected: self.city.clone(),
            }),
            Ok(v) if v.entry.seq != seq => self.fail(ReplayFailure::EntrySeq {
                seq,
                found: v.entry.seq,
            }),
            Ok(_) => self.entries_valid += 1,
            Err(source) => self.fail(ReplayFailure::Entry { seq, source }),
        }
        if let Err(source) = self.tree.append(leaf) {
            self.fail(ReplayFailure::Tree { seq, source });
            return;
        }
        self.check_due();
    }

    /// Compares every checkpoint of the tree's current size with the tree.
    fn check_due(&mut self) {
        let size = self.tree.size();
        while let Some((cp, report)) = self.checkpoints.get(self.next) {
            if cp.size != size {
                break;
            }
            let (cp, report) = (cp.clone(), report.clone());
            self.next += 1;
            let computed = self.tree.root();
            if cp.root != computed {
                self.fail(ReplayFailure::RootMismatch {
                    size,
                    signed: cp.root,
                    computed,
                });
                continue;
            }
            self.roots_matched += 1;
            self.newest = Some(report);
            if let Some(old) = self.last_matched.take()
                && old.size < cp.size
            {
                self.consistency_checked += 1;
                let checked =
                    merkle::consistency_proof(old.size, cp.size, &self.tree).and_then(|proof| {
                        merkle::verify_consistency(&proof, old.size, old.root, cp.size, cp.root)
                    });
                if let Err(source) = checked {
                    self.fail(ReplayFailure::Inconsistent {
                        old: old.size,
                        new: cp.size,
                        source,
                    });
                }
            }
            self.last_matched = Some(cp);
        }
    }

    fn fail(&mut self, failure: ReplayFailure) {
        self.failure_count += 1;
        if self.failures.len() < MAX_REPLAY_FAILURES {
            self.failures.push(failure);
        }
    }

    /// Ends the replay: checkpoints beyond the last entry are failures.
    pub fn finish(mut self) -> ReplayReport {
        let entries = self.tree.size();
        let beyond: Vec<u64> = self.checkpoints[self.next..]
            .iter()
            .map(|(c, _)| c.size)
            .collect();
        for size in beyond {
            self.fail(ReplayFailure::BeyondLog { size, entries });
        }
        if !self.root_signed() {
            let held = self
                .checkpoints
                .iter()
                .filter(|(c, _)| c.size == entries)
                .count();
            self.fail(ReplayFailure::UnsignedRoot {
                size: entries,
                root: self.tree.root(),
                held,
            });
        }
        if let Some(evidence) = self.forked {
            // First, as it is the node's own verdict on the origin.
            self.failure_count += 1;
            self.failures.truncate(MAX_REPLAY_FAILURES - 1);
            self.failures.insert(
                0,
                ReplayFailure::Forked {
                    city: self.city.clone(),
                    evidence,
                },
            );
        }
        ReplayReport {
            city: self.city,
            entries,
            entries_valid: self.entries_valid,
            root: self.tree.root(),
            checkpoints_held: self.checkpoints_held,
            checkpoints_verified: self.checkpoints.len(),
            roots_matched: self.roots_matched,
            consistency_checked: self.consistency_checked,
            newest: self.newest,
            forked: self.forked,
            failures: self.failures,
            failure_count: self.failure_count,
        }
    }
}

/// A replay's summary and failures as text.
pub fn render_replay_report(r: &ReplayReport) -> String {
    let mut out = format!(
        "{}: {} replayed, {} valid; tree root {}\n",
        r.city,
        entries(r.entries),
        r.entries_valid,
        r.root
    );
    out.push_str(&format!(
        "checkpoints: {} held, {} signed by the origin, {} matching the tree, {} consistency {} between successive ones\n",
        r.checkpoints_held,
        r.checkpoints_verified,
        r.roots_matched,
        r.consistency_checked,
        if r.consistency_checked == 1 { "proof" } else { "proofs" }
    ));
    if let Some(n) = &r.newest {
        out.push_str(&format!(
            "newest checkpoint matching the tree: size {}, {} from other members' witnesses{}; {} after it\n",
            n.size,
            plural(n.cosigners.len(), "cosignature"),
            if n.cosigners.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    n.cosigners
                        .iter()
                        .map(|c| c.city.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            entries(r.entries.saturating_sub(n.size))
        ));
    }
    for f in &r.failures {
        out.push_str(&format!("FAILED {f}\n"));
    }
    if r.failure_count > r.failures.len() as u64 {
        out.push_str(&format!(
            "… and {} more failures\n",
            r.failure_count - r.failures.len() as u64
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use credex_core::date::parse_date;
    use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
    use expect_test::{Expect, expect};

    use super::*;
    use crate::city::capitals;
    use crate::generator::Generator;

    const CONSORTIUM: &str = "mid-yangtze";
    /// 2026-01-01T00:00:00+08:00.
    const TS: u64 = 1_767_196_800;

    fn city(i: usize) -> String {
        capitals()[i].id.clone()
    }

    fn log_key(i: usize) -> SigningKeyPair {
        let name = format!("credex/{CONSORTIUM}/{}", city(i));
        SigningKeyPair::from_seed(&name, KeyAlgorithm::Ed25519, [10 + i as u8; 32]).unwrap()
    }

    fn witness_key(i: usize) -> SigningKeyPair {
        let name = format!("credex/{CONSORTIUM}/{}/witness", city(i));
        SigningKeyPair::from_seed(&name, KeyAlgorithm::CosignatureV1, [20 + i as u8; 32]).unwrap()
    }

    /// Keys named like a fifth city's, which the consortium file does not list.
    fn outsider_log_key() -> SigningKeyPair {
        let name = format!("credex/{CONSORTIUM}/shanghai");
        SigningKeyPair::from_seed(&name, KeyAlgorithm::Ed25519, [98; 32]).unwrap()
    }

    fn outsider_witness_key() -> SigningKeyPair {
        let name = format!("credex/{CONSORTIUM}/shanghai/witness");
        SigningKeyPair::from_seed(&name, KeyAlgorithm::CosignatureV1, [99; 32]).unwrap()
    }

    fn consortium() -> Consortium {
        Consortium {
            name: CONSORTIUM.to_owned(),
            ca_cert: "ca.pem".into(),
            rules: Default::default(),
            members: capitals()
                .iter()
                .enumerate()
                .map(|(i, c)| Member {
                    city: c.id.clone(),
                    name_zh: c.name.clone(),
                    division: c.division.clone(),
                    log_key: log_key(i).public(),
                    witness_key: witness_key(i).public(),
                    address: format!("127.0.0.1:{}", 7400 + i),
                })
                .collect(),
        }
    }

    /// City 0's log (Changsha) as its node would hold it.
    struct Log {
        key: SigningKeyPair,
        city: String,
        leaves: Vec<Vec<u8>>,
        tree: MemoryHashStore,
    }

    impl Log {
        fn new(i: usize) -> Self {
            Self {
                key: log_key(i),
                city: city(i),
                leaves: Vec::new(),
                tree: MemoryHashStore::new(),
            }
        }

        /// `n` generated records, the same for the same seed.
        fn with_records(i: usize, n: u64, seed: u64) -> Self {
            let mut log = Self::new(i);
            let mut generator =
                Generator::new(&capitals()[i], seed, parse_date("2026-05-20").unwrap());
            for _ in 0..n {
                let record = generator.record();
                log.append_record(record);
            }
            log
        }

        fn append_record(&mut self, record: pb::CreditRecord) {
            let seq = self.tree.size();
            let leaf = signed_leaf(&self.key, &self.city, seq, record);
            self.append_leaf(leaf);
        }

        fn append_leaf(&mut self, leaf: Vec<u8>) {
            self.tree.append(&leaf).unwrap();
            self.leaves.push(leaf);
        }

        fn checkpoint(&self, size: u64) -> Checkpoint {
            Checkpoint {
                origin: self.key.name().to_owned(),
                size,
                root: merkle::root(size, &self.tree).unwrap(),
            }
        }

        /// The checkpoint of `size`, signed, and cosigned by `witnesses`.
        fn note(&self, size: u64, witnesses: &[SigningKeyPair]) -> Vec<u8> {
            cosigned(&self.checkpoint(size), &self.key, witnesses)
        }

        fn proof(&self, index: u64, size: u64, witnesses: &[SigningKeyPair]) -> ProofFile {
            ProofFile {
                extension: None,
                proof: TlogProof {
                    extra: Some(self.leaves[index as usize].clone()),
                    index,
                    path: merkle::inclusion_proof(index, size, &self.tree).unwrap(),
                    checkpoint: self.note(size, witnesses),
                },
            }
        }

        fn extension(&self, old: u64, new: u64, witnesses: &[SigningKeyPair]) -> Extension {
            Extension {
                consistency: merkle::consistency_proof(old, new, &self.tree).unwrap(),
                checkpoint: self.note(new, witnesses),
            }
        }
    }

    fn signed_leaf(
        key: &SigningKeyPair,
        origin: &str,
        seq: u64,
        record: pb::CreditRecord,
    ) -> Vec<u8> {
        let entry = pb::Entry {
            origin: origin.to_owned(),
            seq,
            logged_at: (TS as i64) * 1000 + seq as i64,
            schema_version: 1,
            record: Some(record),
        };
        entry::sign_entry(key, entry::encode_entry(&entry))
    }

    fn cosigned(cp: &Checkpoint, key: &SigningKeyPair, witnesses: &[SigningKeyPair]) -> Vec<u8> {
        let note = note::sign_checkpoint(cp, key).unwrap();
        let lines: Vec<Vec<u8>> = witnesses
            .iter()
            .enumerate()
            .map(|(i, w)| note::cosign(cp, w, TS + i as u64).unwrap())
            .collect();
        note::add_signature_lines(&note, &lines).unwrap()
    }

    fn wuhan_hefei() -> Vec<SigningKeyPair> {
        vec![witness_key(1), witness_key(2)]
    }

    /// Replaces one base64 character of the signature line of `key_name` with another, so the
    /// line still parses but carries a different signature (past the key id).
    fn damage_signature(note: &[u8], key_name: &str) -> Vec<u8> {
        let text = String::from_utf8(note.to_vec()).unwrap();
        let prefix = format!("— {key_name} ");
        let start = text.find(&prefix).unwrap() + prefix.len();
        let at = start + 20;
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        bytes
    }

    fn render(result: Result<ProofReport, VerifyError>) -> String {
        match result {
            Ok(r) => {
                let last = r.quorum_checkpoint();
                format!(
                    "verified: {} seq {} in size {}{}, cosigned by [{}]",
                    r.city,
                    r.index,
                    r.checkpoint.size,
                    r.newer
                        .as_ref()
                        .map(|n| format!(" and newer size {}", n.size))
                        .unwrap_or_default(),
                    last.cosigners
                        .iter()
                        .map(|c| c.city.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
            Err(e) => format!("refused: {e}"),
        }
    }

    fn check_table(cases: Vec<(&str, ProofFile, usize)>, expect: Expect) {
        let consortium = consortium();
        let out: String = cases
            .into_iter()
            .map(|(name, file, quorum)| {
                // Every case goes through the file format too, as an auditor receives it.
                let parsed = ProofFile::parse(&file.to_bytes()).unwrap();
                assert_eq!(parsed, file, "{name}: the file format round-trips");
                format!(
                    "{name}: {}\n",
                    render(verify_proof(&parsed, &consortium, quorum))
                )
            })
            .collect();
        expect.assert_eq(&out);
    }

    #[test]
    fn a_bundle_verifies_and_any_tampering_is_refused_with_its_reason() {
        let log = Log::with_records(0, 11, 7);
        let valid = || log.proof(5, 11, &wuhan_hefei());
        let mut cases = vec![
            ("valid", valid(), 2),
            ("valid, quorum 0, no cosignatures", log.proof(5, 11, &[]), 0),
            (
                "first leaf of a one-leaf tree",
                log.proof(0, 1, &wuhan_hefei()),
                2,
            ),
            ("last leaf", log.proof(10, 11, &wuhan_hefei()), 2),
        ];

        let mut f = valid();
        f.proof.extra.as_mut().unwrap()[10] ^= 1;
        cases.push(("entry byte flipped", f, 2));

        let mut f = valid();
        *f.proof.extra.as_mut().unwrap().last_mut().unwrap() ^= 1;
        cases.push(("entry signature byte flipped", f, 2));

        let mut f = valid();
        f.proof.extra.as_mut().unwrap().push(0);
        cases.push(("byte appended to the leaf", f, 2));

        let mut f = valid();
        f.proof.extra = Some(log.leaves[6].clone());
        cases.push(("another entry of the log", f, 2));

        let wuhan = Log::with_records(1, 6, 7);
        let mut f = valid();
        f.proof.extra = Some(wuhan.leaves[5].clone());
        cases.push(("an entry of another city's log", f, 2));

        let mut f = valid();
        let record = Generator::new(&capitals()[0], 1, parse_date("2026-05-20").unwrap()).record();
        f.proof.extra = Some(signed_leaf(&log.key, "wuhan", 5, record));
        cases.push(("entry signed by the origin but naming another origin", f, 2));

        let mut f = valid();
        f.proof.index = 6;
        cases.push(("index changed", f, 2));

        let mut f = valid();
        f.proof.path[1].0[0] ^= 1;
        cases.push(("path element flipped", f, 2));

        let mut f = valid();
        f.proof.path.pop();
        cases.push(("path element dropped", f, 2));

        let mut f = valid();
        f.proof.path.swap(0, 1);
        cases.push(("path elements swapped", f, 2));

        let mut f = valid();
        let other = Log::with_records(0, 11, 8).checkpoint(11).root;
        let text = String::from_utf8(f.proof.checkpoint.clone()).unwrap();
        let root = log.checkpoint(11).root.to_string();
        f.proof.checkpoint = text.replace(&root, &other.to_string()).into_bytes();
        cases.push(("checkpoint root replaced", f, 2));

        let mut f = valid();
        let text = String::from_utf8(f.proof.checkpoint.clone()).unwrap();
        f.proof.checkpoint = text.replacen("\n11\n", "\n12\n", 1).into_bytes();
        cases.push(("checkpoint size changed", f, 2));

        let mut f = valid();
        f.proof.checkpoint = damage_signature(&f.proof.checkpoint, log.key.name());
        cases.push(("origin's signature damaged", f, 2));

        let mut f = valid();
        f.proof.checkpoint = damage_signature(&f.proof.checkpoint, witness_key(2).name());
        cases.push(("member's cosignature damaged", f, 2));

        let mut f = valid();
        let outsider = Checkpoint {
            origin: outsider_log_key().name().to_owned(),
            ..log.checkpoint(11)
        };
        f.proof.checkpoint = cosigned(&outsider, &outsider_log_key(), &wuhan_hefei());
        cases.push(("checkpoint of a log outside the consortium", f, 2));

        let mut f = valid();
        f.proof.checkpoint = log.note(11, &[witness_key(1), outsider_witness_key()]);
        cases.push(("cosignature by a non-member key", f, 2));

        cases.push((
            "too few cosignatures",
            log.proof(5, 11, &[witness_key(1)]),
            2,
        ));
        cases.push(("no cosignatures", log.proof(5, 11, &[]), 2));
        cases.push((
            "the origin's own witness does not count",
            log.proof(5, 11, &[witness_key(0), witness_key(1)]),
            2,
        ));
        cases.push((
            "quorum 3 of the 3 other members",
            log.proof(5, 11, &[witness_key(1), witness_key(2), witness_key(3)]),
            3,
        ));
        cases.push(("quorum 4 cannot be met by 4 cities", valid(), 4));

        let mut f = valid();
        f.proof.extra = None;
        cases.push(("no extra line", f, 2));

        check_table(
            cases,
            expect![[r#"
                valid: verified: changsha seq 5 in size 11, cosigned by [wuhan hefei]
                valid, quorum 0, no cosignatures: verified: changsha seq 5 in size 11, cosigned by []
                first leaf of a one-leaf tree: verified: changsha seq 0 in size 1, cosigned by [wuhan hefei]
                last leaf: verified: changsha seq 10 in size 11, cosigned by [wuhan hefei]
                entry byte flipped: refused: signed entry: signature does not verify under key credex/mid-yangtze/changsha+8ddcab5f
                entry signature byte flipped: refused: signed entry: signature does not verify under key credex/mid-yangtze/changsha+8ddcab5f
                byte appended to the leaf: refused: signed entry: malformed signed entry: bytes follow the signature field
                another entry of the log: refused: signed entry: the entry says seq 6, but the proof is for index 5
                an entry of another city's log: refused: signed entry: leaf is signed by key id abf5c54c, expected credex/mid-yangtze/changsha+8ddcab5f
                entry signed by the origin but naming another origin: refused: signed entry: the entry says origin "wuhan", but the checkpoint is the log of changsha
                index changed: refused: signed entry: the entry says seq 5, but the proof is for index 6
                path element flipped: refused: inclusion proof: inclusion proof for leaf 5 does not lead to the root of the tree of size 11
                path element dropped: refused: inclusion proof: inclusion proof length is 3, expected 4 hashes
                path elements swapped: refused: inclusion proof: inclusion proof for leaf 5 does not lead to the root of the tree of size 11
                checkpoint root replaced: refused: checkpoint: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
                checkpoint size changed: refused: checkpoint: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
                origin's signature damaged: refused: checkpoint: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
                member's cosignature damaged: refused: checkpoint: signature by credex/mid-yangtze/hefei/witness+d213fb52 does not verify
                checkpoint of a log outside the consortium: refused: origin: checkpoint origin "credex/mid-yangtze/shanghai" is not the log of a member of consortium mid-yangtze
                cosignature by a non-member key: refused: quorum: checkpoint of credex/mid-yangtze/changsha at size 11 has 1 cosignature from other members' witnesses (wuhan), 2 needed; ignored 1 signature line by keys outside the consortium
                too few cosignatures: refused: quorum: checkpoint of credex/mid-yangtze/changsha at size 11 has 1 cosignature from other members' witnesses (wuhan), 2 needed
                no cosignatures: refused: quorum: checkpoint of credex/mid-yangtze/changsha at size 11 has 0 cosignatures from other members' witnesses, 2 needed
                the origin's own witness does not count: refused: quorum: checkpoint of credex/mid-yangtze/changsha at size 11 has 1 cosignature from other members' witnesses (wuhan), 2 needed; the origin's own witness does not count
                quorum 3 of the 3 other members: verified: changsha seq 5 in size 11, cosigned by [wuhan hefei nanchang]
                quorum 4 cannot be met by 4 cities: refused: quorum: checkpoint of credex/mid-yangtze/changsha at size 11 has 2 cosignatures from other members' witnesses (wuhan, hefei), 4 needed
                no extra line: refused: signed entry: the proof has no extra line, where a credex proof carries the signed entry
            "#]],
        );
    }

    #[test]
    fn an_old_bundle_verifies_against_a_newer_checkpoint_through_a_consistency_proof() {
        let mut log = Log::with_records(0, 5, 7);
        let old = log.proof(3, 5, &[]);
        // Years later: the log has grown and its newest checkpoint is cosigned.
        let mut generator = Generator::new(&capitals()[0], 9, parse_date("2029-01-01").unwrap());
        for _ in 0..20 {
            log.append_record(generator.record());
        }
        let extended = |ext: Extension| ProofFile {
            extension: Some(ext),
            proof: old.proof.clone(),
        };
        let mut cases = vec![
            ("old bundle alone", old.clone(), 2),
            (
                "extended to size 25",
                extended(log.extension(5, 25, &wuhan_hefei())),
                2,
            ),
            (
                "extended to its own size, cosignatures collected later",
                extended(log.extension(5, 5, &wuhan_hefei())),
                2,
            ),
        ];

        let mut ext = log.extension(5, 25, &wuhan_hefei());
        ext.consistency[0].0[31] ^= 1;
        cases.push(("consistency hash flipped", extended(ext), 2));

        let mut ext = log.extension(5, 25, &wuhan_hefei());
        ext.consistency.pop();
        cases.push(("consistency hash dropped", extended(ext), 2));

        let mut ext = log.extension(5, 25, &wuhan_hefei());
        ext.consistency = log.extension(5, 24, &[]).consistency;
        cases.push(("consistency proof to another size", extended(ext), 2));

        cases.push((
            "newer checkpoint smaller than the bundle's",
            ProofFile {
                extension: Some(log.extension(3, 4, &wuhan_hefei())),
                proof: old.proof.clone(),
            },
            2,
        ));

        let mut forked = Log::with_records(0, 5, 7);
        forked.leaves.truncate(4);
        let mut fork_tree = MemoryHashStore::new();
        for leaf in &forked.leaves {
            fork_tree.append(leaf).unwrap();
        }
        forked.tree = fork_tree;
        let record = Generator::new(&capitals()[0], 99, parse_date("2026-05-20").unwrap()).record();
        forked.append_record(record);
        cases.push((
            "newer checkpoint of the same size with another root",
            extended(Extension {
                consistency: Vec::new(),
                checkpoint: forked.note(5, &wuhan_hefei()),
            }),
            2,
        ));

        let mut ext = log.extension(5, 25, &wuhan_hefei());
        ext.checkpoint = damage_signature(&ext.checkpoint, log.key.name());
        cases.push(("newer checkpoint's signature damaged", extended(ext), 2));

        let wuhan = Log::with_records(1, 25, 7);
        cases.push((
            "newer checkpoint of another city's log",
            extended(Extension {
                consistency: log.extension(5, 25, &[]).consistency,
                checkpoint: wuhan.note(25, &[witness_key(0), witness_key(2)]),
            }),
            2,
        ));

        cases.push((
            "quorum is checked on the newer checkpoint",
            ProofFile {
                extension: Some(log.extension(5, 25, &[witness_key(1)])),
                proof: log.proof(3, 5, &wuhan_hefei()).proof,
            },
            2,
        ));

        check_table(
            cases,
            expect![[r#"
                old bundle alone: refused: quorum: checkpoint of credex/mid-yangtze/changsha at size 5 has 0 cosignatures from other members' witnesses, 2 needed
                extended to size 25: verified: changsha seq 3 in size 5 and newer size 25, cosigned by [wuhan hefei]
                extended to its own size, cosignatures collected later: verified: changsha seq 3 in size 5 and newer size 5, cosigned by [wuhan hefei]
                consistency hash flipped: refused: consistency proof: consistency proof from size 5 to size 25 does not match the two roots
                consistency hash dropped: refused: consistency proof: consistency proof length is 5, expected 6 hashes
                consistency proof to another size: refused: consistency proof: consistency proof from size 5 to size 25 does not match the two roots
                newer checkpoint smaller than the bundle's: refused: consistency proof: old tree size 5 is larger than new tree size 4
                newer checkpoint of the same size with another root: refused: consistency proof: consistency proof from size 5 to size 5 does not match the two roots
                newer checkpoint's signature damaged: refused: newer checkpoint: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
                newer checkpoint of another city's log: refused: newer checkpoint: checkpoint origin "credex/mid-yangtze/wuhan" is not the log key's name "credex/mid-yangtze/changsha"
                quorum is checked on the newer checkpoint: refused: quorum: checkpoint of credex/mid-yangtze/changsha at size 25 has 1 cosignature from other members' witnesses (wuhan), 2 needed
            "#]],
        );
    }

    /// The file with long lines cut, to show its layout.
    fn layout(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(|l| {
                if l.chars().count() > 60 {
                    format!("{}…\n", l.chars().take(60).collect::<String>())
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    #[test]
    fn proof_files_have_the_documented_layout_and_round_trip() {
        let log = Log::with_records(0, 6, 7);
        let plain = log.proof(4, 5, &wuhan_hefei());
        expect![[r#"
            c2sp.org/tlog-proof@v1
            extra CoMECghjaGFuZ3NoYRAEGITojKm3MyABKusDChljaGFuZ3NoYS1kZm…
            index 4
            qewyymhuuo4pbTOUvCtkcZ8fp4aPxPJUtjwECjvYUvc=

            credex/mid-yangtze/changsha
            5
            HnBOz0aKP1q1FodHQ3MWloQyfP23LJeZLM0me9yS57g=

            — credex/mid-yangtze/changsha jdyrX/QUsM8j79WKCnQ5/IDSGYLwiv…
            — credex/mid-yangtze/wuhan/witness pcyOjwAAAABpVUiALEKiYm5js…
            — credex/mid-yangtze/hefei/witness 0hP7UgAAAABpVUiBOATVM7qMw…
        "#]]
        .assert_eq(&layout(&plain.to_bytes()));

        let extended = ProofFile {
            extension: Some(log.extension(5, 6, &wuhan_hefei())),
            proof: log.proof(4, 5, &[]).proof,
        };
        let bytes = extended.to_bytes();
        expect![[r#"
            credex/tlog-proof-extension@v1
            M4oFpiufxm+5gWyQy2rtRCcx4IInnS4NXgudPe450tY=
            Fk7Bm4hqUYaKhpkT60Kt28EfWaH+RrjKLY1pk7ey/zc=
            qewyymhuuo4pbTOUvCtkcZ8fp4aPxPJUtjwECjvYUvc=

            credex/mid-yangtze/changsha
            6
            GeDDGN8LIwGc1vC25LHgv4M5pATRVZL/519B7TQYcv4=

            — credex/mid-yangtze/changsha jdyrX+SFykkNvr7Xtkxu0SPKHxzgCu…
            — credex/mid-yangtze/wuhan/witness pcyOjwAAAABpVUiAAELLtHaJG…
            — credex/mid-yangtze/hefei/witness 0hP7UgAAAABpVUiBr1U7/NVV2…

            c2sp.org/tlog-proof@v1
            extra CoMECghjaGFuZ3NoYRAEGITojKm3MyABKusDChljaGFuZ3NoYS1kZm…
            index 4
            qewyymhuuo4pbTOUvCtkcZ8fp4aPxPJUtjwECjvYUvc=

            credex/mid-yangtze/changsha
            5
            HnBOz0aKP1q1FodHQ3MWloQyfP23LJeZLM0me9yS57g=

            — credex/mid-yangtze/changsha jdyrX/QUsM8j79WKCnQ5/IDSGYLwiv…
        "#]]
        .assert_eq(&layout(&bytes));

        // The inner proof is carried byte for byte, so the original bundle can be cut out.
        let inner = log.proof(4, 5, &[]).to_bytes();
        assert!(bytes.ends_with(&inner));
        for file in [plain, extended] {
            let bytes = file.to_bytes();
            assert_eq!(ProofFile::parse(&bytes).unwrap(), file);
            assert_eq!(detect(&bytes).unwrap(), FileKind::Proof);
        }
        assert_eq!(detect(&encode_evidence(&[])).unwrap(), FileKind::Evidence);
    }

    #[test]
    fn malformed_proof_files_are_refused_with_the_line_at_fault() {
        let log = Log::with_records(0, 3, 7);
        let good = String::from_utf8(log.proof(1, 3, &[witness_key(1)]).to_bytes()).unwrap();
        let ext = String::from_utf8(
            ProofFile {
                extension: Some(log.extension(3, 3, &[witness_key(1)])),
                proof: log.proof(1, 3, &[]).proof,
            }
            .to_bytes(),
        )
        .unwrap();
        let hash = log.checkpoint(1).root.to_string();
        let lines: Vec<&str> = good.lines().collect();
        let with_line = |i: usize, line: &str| {
            let mut l = lines.clone();
            l[i] = line;
            l.join("\n") + "\n"
        };
        let note = good.split_once("\n\n").unwrap().1;
        let cases: Vec<(&str, String)> = vec![
            ("valid", good.clone()),
            (
                "no extra line",
                good.replacen(lines[1], "", 1).replacen("\n\n", "\n", 1),
            ),
            ("empty file", String::new()),
            ("other header", good.replacen("@v1", "@v2", 1)),
            ("extra not base64", with_line(1, "extra !!")),
            ("index missing", with_line(2, "idx 1")),
            ("index with a leading zero", with_line(2, "index 01")),
            ("index negative", with_line(2, "index -1")),
            (
                "index too large",
                with_line(2, "index 18446744073709551616"),
            ),
            ("hash not base64", with_line(3, "not a hash")),
            ("hash of 31 bytes", with_line(3, &BASE64.encode([1; 31]))),
            (
                "hash without padding",
                with_line(3, hash.trim_end_matches('=')),
            ),
            ("CRLF", good.replacen("\n", "\r\n", 1)),
            (
                "no checkpoint",
                good.split_once("\n\n").unwrap().0.to_owned() + "\n\n",
            ),
            (
                "no empty line",
                good.split_once("\n\n").unwrap().0.to_owned() + "\n",
            ),
            (
                "too many hashes",
                format!(
                    "{PROOF_HEADER}\nindex 1\n{}\n{note}",
                    [hash.as_str(); 65].join("\n")
                ),
            ),
            ("extended, valid", ext.clone()),
            (
                "extended, no signature lines",
                ext.replacen(
                    "— credex/mid-yangtze/changsha",
                    "credex/mid-yangtze/changsha",
                    1,
                ),
            ),
            (
                "extended, no inner proof",
                ext.split_once("\n\nc2sp").unwrap().0.to_owned() + "\n\n",
            ),
            (
                "extended, inner proof of another kind",
                ext.replacen("\nc2sp.org/tlog-proof@v1", "\nc2sp.org/tlog-proof@v2", 1),
            ),
        ];
        let out: String = cases
            .iter()
            .map(|(name, text)| {
                let result = match ProofFile::parse(text.as_bytes()) {
                    Ok(f) => format!(
                        "ok, {}index {}, {} path hashes, {}",
                        if f.proof.extra.is_some() {
                            "extra, "
                        } else {
                            ""
                        },
                        f.proof.index,
                        f.proof.path.len(),
                        if f.extension.is_some() {
                            "extended"
                        } else {
                            "plain"
                        }
                    ),
                    Err(e) => format!("error: {e}"),
                };
                format!("{name}: {result}\n")
            })
            .collect();
        expect![[r#"
            valid: ok, extra, index 1, 2 path hashes, plain
            no extra line: ok, index 1, 2 path hashes, plain
            empty file: error: line 1: the file ends where c2sp.org/tlog-proof@v1 should be
            other header: error: line 1: "c2sp.org/tlog-proof@v2" is not "c2sp.org/tlog-proof@v1"
            extra not base64: error: line 2: extra data is not standard base64
            index missing: error: line 3: "idx 1" is not "index <decimal>"
            index with a leading zero: error: line 3: "index 01" is not "index <decimal>"
            index negative: error: line 3: "index -1" is not "index <decimal>"
            index too large: error: line 3: "index 18446744073709551616" is not "index <decimal>"
            hash not base64: error: line 4: inclusion path hash is not standard base64
            hash of 31 bytes: error: line 4: inclusion path hash: hash is 31 bytes, expected 32
            hash without padding: error: line 4: inclusion path hash is not standard base64
            CRLF: error: line 1: lines end in CRLF; only LF is allowed
            no checkpoint: error: line 6: no checkpoint follows the inclusion path
            no empty line: error: line 6: the file ends where an empty line should be
            too many hashes: error: line 67: inclusion path has more than 64 hashes
            extended, valid: ok, extra, index 1, 2 path hashes, extended
            extended, no signature lines: error: line 7: "credex/mid-yangtze/changsha jdyrX/03EUxZXii3V6998GSY9CCweSIzMzmG…" is not a signature line "— <key name> <base64>"
            extended, no inner proof: error: line 10: the file ends where c2sp.org/tlog-proof@v1 should be
            extended, inner proof of another kind: error: line 10: "c2sp.org/tlog-proof@v2" is not "c2sp.org/tlog-proof@v1"
        "#]].assert_eq(&out);
        let oversized = vec![b'a'; MAX_PROOF_FILE_BYTES + 1];
        expect!["proof file is 1048577 bytes, more than the 1048576 allowed"]
            .assert_eq(&ProofFile::parse(&oversized).unwrap_err().to_string());
        expect![[r#"line 1: "{\"not\": \"a proof\"}" is not a credex audit file header (c2sp.org/tlog-proof@v1, credex/tlog-proof-extension@v1 or credex/equivocation-evidence@v1)"#]].assert_eq(&detect(b"{\"not\": \"a proof\"}\n").unwrap_err().to_string());
    }

    #[test]
    fn the_report_shows_the_record_with_id_numbers_masked() {
        let mut log = Log::new(0);
        let mut generator = Generator::new(&capitals()[0], 3, parse_date("2026-05-20").unwrap());
        let mut record = generator.black_listing(
            crate::generator::joint_subject(),
            crate::generator::JOINT_CHANGSHA_CATEGORY,
        );
        record.subject.as_mut().unwrap().id_number = "430102196209194279".into();
        log.append_record(record);
        log.append_record(generator.record());
        let file = ProofFile {
            extension: Some(log.extension(1, 2, &[witness_key(0), witness_key(1), witness_key(3)])),
            proof: log.proof(0, 1, &[]).proof,
        };
        let mut file_bytes = file.to_bytes();
        // An unknown witness's line is carried along and ignored.
        let ext_note = file.extension.as_ref().unwrap().checkpoint.clone();
        let line = note::cosign(&log.checkpoint(2), &outsider_witness_key(), TS).unwrap();
        let with_outsider = note::add_signature_lines(&ext_note, &[line]).unwrap();
        file_bytes = [
            &file_bytes[..EXTENSION_HEADER.len() + 1 + 45],
            &b"\n"[..],
            &with_outsider,
            &file_bytes[EXTENSION_HEADER.len() + 1 + 45 + 1 + ext_note.len()..],
        ]
        .concat();
        let report =
            verify_proof(&ProofFile::parse(&file_bytes).unwrap(), &consortium(), 2).unwrap();
        let text = render_proof_report(&report);
        assert!(
            !text.contains("430102196209194279"),
            "no full ID number is shown"
        );
        expect![[r#"
            record changsha-c8cca9d64da65acc version 1 — changsha (长沙) seq 0
              logged at    2026-01-01 00:00:00 +08:00
              subject      长沙市天心区恒通建设工程有限公司 (legal_person), USCC 91430100MA4L8Q2K7F, ID 4301**********4279
              legal rep.   周建华 4301**********4014
              list         black, court.dishonest_debtor, severity serious
              authority    长沙市中级人民法院 (11430100HDK4KH2WCF)
              decision     （2026）湘01执1982号 of 2026-01-11
              legal basis  《最高人民法院关于公布失信被执行人名单信息的若干规定》第一条
              facts        有履行能力而拒不履行生效法律文书确定的义务
              sanctions    限制参与政府采购, 限制担任企业法定代表人、高级管理人员
              publication  2026-01-23 – 2027-05-02
              status       active
              data source  长沙市中级人民法院
            checks
              ok  checkpoint credex/mid-yangtze/changsha size 1 signed by the origin's log key credex/mid-yangtze/changsha+8ddcab5f
              ok  entry signature by credex/mid-yangtze/changsha+8ddcab5f (strict Ed25519), origin changsha, seq 0
              ok  leaf hash IwhJcKBN901Ndc3cdxsZHjbBNvUCwDqo16TluwH6Vyc= included at index 0 of the tree of size 1, root IwhJcKBN901Ndc3cdxsZHjbBNvUCwDqo16TluwH6Vyc=
              ok  newer checkpoint size 2 signed by credex/mid-yangtze/changsha+8ddcab5f, consistent with size 1, root gXfELgUgnn8k6JXKQX/eo7SBpkh5oo4NiwegfcOlzHM=
              ok  2 cosignatures from other members' witnesses on size 2: wuhan at 2026-01-01 00:00:01 +08:00, nanchang at 2026-01-01 00:00:02 +08:00, quorum 2
                  not counted: the origin's own witness; 1 signature line by keys outside the consortium
        "#]].assert_eq(&text);
    }

    // ------------------------------------------------------------- evidence

    fn evidence(kind: pb::evidence::Kind) -> pb::Evidence {
        pb::Evidence {
            origin: "changsha".into(),
            kind: kind.into(),
            detected_at: (TS as i64) * 1000,
            detected_via: "sync:wuhan".into(),
            ..Default::default()
        }
    }

    fn signed(note: Vec<u8>) -> pb::SignedCheckpoint {
        pb::SignedCheckpoint { note }
    }

    /// Two logs of Changsha that agree on the first 4 entries and differ from the 5th on.
    fn fork() -> (Log, Log) {
        let honest = Log::with_records(0, 11, 7);
        let mut forked = Log::new(0);
        for leaf in &honest.leaves[..4] {
            forked.append_leaf(leaf.clone());
        }
        let mut generator = Generator::new(&capitals()[0], 99, parse_date("2026-05-20").unwrap());
        for _ in 4..11 {
            forked.append_record(generator.record());
        }
        (honest, forked)
    }

    /// Evidence of kind inconsistent checkpoints: these notes, in this order, and `proof`.
    fn sizes_apart(notes: Vec<Vec<u8>>, proof: Vec<Hash>) -> pb::Evidence {
        pb::Evidence {
            checkpoints: notes.into_iter().map(signed).collect(),
            consistency_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            ..evidence(pb::evidence::Kind::InconsistentCheckpoints)
        }
    }

    #[test]
    fn evidence_is_confirmed_only_when_it_proves_an_equivocation() {
        use pb::evidence::Kind;
        let (honest, forked) = fork();
        let consortium = consortium();
        let conflicting = |a: Vec<u8>, b: Vec<u8>| pb::Evidence {
            checkpoints: vec![signed(a), signed(b)],
            ..evidence(Kind::ConflictingCheckpoints)
        };
        let entries = |a: &[u8], b: &[u8]| pb::Evidence {
            signed_entries: vec![a.to_vec(), b.to_vec()],
            ..evidence(Kind::ConflictingEntries)
        };
        let inconsistent =
            |proof: Vec<Hash>| sizes_apart(vec![honest.note(5, &[]), forked.note(11, &[])], proof);
        let mut forged_leaf = forked.leaves[4].clone();
        forged_leaf[12] ^= 1;
        let wuhan = Log::with_records(1, 11, 7);
        let cases: Vec<(&str, pb::Evidence)> = vec![
            (
                "equal size, different roots",
                conflicting(honest.note(11, &[]), forked.note(11, &[witness_key(1)])),
            ),
            (
                "forged: second signature damaged",
                conflicting(
                    honest.note(11, &[]),
                    damage_signature(&forked.note(11, &[]), honest.key.name()),
                ),
            ),
            (
                "forged: root replaced under the origin's signature",
                conflicting(
                    honest.note(11, &[]),
                    String::from_utf8(honest.note(11, &[]))
                        .unwrap()
                        .replace(
                            &honest.checkpoint(11).root.to_string(),
                            &forked.checkpoint(11).root.to_string(),
                        )
                        .into_bytes(),
                ),
            ),
            (
                "signed by another city's log key",
                conflicting(honest.note(11, &[]), wuhan.note(11, &[])),
            ),
            (
                "the same checkpoint twice",
                conflicting(honest.note(11, &[]), honest.note(11, &[witness_key(2)])),
            ),
            (
                "different sizes claimed as conflicting",
                conflicting(honest.note(5, &[]), forked.note(11, &[])),
            ),
            (
                "one checkpoint",
                pb::Evidence {
                    checkpoints: vec![signed(honest.note(11, &[]))],
                    ..evidence(Kind::ConflictingCheckpoints)
                },
            ),
            (
                "two entries at one seq",
                entries(&honest.leaves[4], &forked.leaves[4]),
            ),
            ("forged entry", entries(&honest.leaves[4], &forged_leaf)),
            (
                "the same entry twice",
                entries(&honest.leaves[4], &honest.leaves[4]),
            ),
            (
                "entries at different seqs",
                entries(&honest.leaves[4], &forked.leaves[5]),
            ),
            (
                "another city's entries",
                pb::Evidence {
                    signed_entries: vec![wuhan.leaves[4].clone(), wuhan.leaves[5].clone()],
                    ..evidence(Kind::ConflictingEntries)
                },
            ),
            (
                "sizes 5 and 11, proof from the size-11 tree",
                inconsistent(merkle::seeded_consistency_proof(5, 11, &forked.tree).unwrap()),
            ),
            (
                "sizes 8 and 11 (a power of two), seeded proof from the size-11 tree, larger first",
                sizes_apart(
                    vec![forked.note(11, &[]), honest.note(8, &[])],
                    merkle::seeded_consistency_proof(8, 11, &forked.tree).unwrap(),
                ),
            ),
            (
                "sizes 8 and 11, unseeded proof",
                sizes_apart(
                    vec![honest.note(8, &[]), forked.note(11, &[])],
                    merkle::consistency_proof(8, 11, &forked.tree).unwrap(),
                ),
            ),
            (
                "sizes 5 and 11, proof from the other tree",
                inconsistent(merkle::seeded_consistency_proof(5, 11, &honest.tree).unwrap()),
            ),
            (
                "sizes 8 and 11, seeded proof from the other tree",
                sizes_apart(
                    vec![honest.note(8, &[]), forked.note(11, &[])],
                    merkle::seeded_consistency_proof(8, 11, &honest.tree).unwrap(),
                ),
            ),
            (
                "sizes 5 and 11, no proof supplied",
                inconsistent(Vec::new()),
            ),
            (
                "sizes 5 and 11, a malformed hash",
                pb::Evidence {
                    consistency_proof: vec![vec![0; 31]],
                    ..inconsistent(Vec::new())
                },
            ),
            (
                "sizes 5, 8 and 11, proof from 8 to 11",
                sizes_apart(
                    vec![
                        honest.note(5, &[]),
                        honest.note(8, &[]),
                        forked.note(11, &[]),
                    ],
                    merkle::seeded_consistency_proof(8, 11, &forked.tree).unwrap(),
                ),
            ),
            (
                "inconsistent claimed, but the proof holds",
                sizes_apart(
                    vec![honest.note(5, &[]), honest.note(11, &[])],
                    merkle::seeded_consistency_proof(5, 11, &honest.tree).unwrap(),
                ),
            ),
            (
                "inconsistent claimed, but the seeded proof from 8 holds",
                sizes_apart(
                    vec![honest.note(11, &[]), honest.note(8, &[])],
                    merkle::seeded_consistency_proof(8, 11, &honest.tree).unwrap(),
                ),
            ),
            (
                "inconsistent claimed, but the unseeded proof from 8 holds",
                sizes_apart(
                    vec![honest.note(8, &[]), honest.note(11, &[])],
                    merkle::consistency_proof(8, 11, &honest.tree).unwrap(),
                ),
            ),
            (
                "inconsistent kind holding an equal-size conflict",
                pb::Evidence {
                    checkpoints: vec![signed(honest.note(11, &[])), signed(forked.note(11, &[]))],
                    ..evidence(Kind::InconsistentCheckpoints)
                },
            ),
            (
                "unknown origin",
                pb::Evidence {
                    origin: "shanghai".into(),
                    ..conflicting(honest.note(11, &[]), forked.note(11, &[]))
                },
            ),
            (
                "unknown kind",
                pb::Evidence {
                    kind: 9,
                    ..conflicting(honest.note(11, &[]), forked.note(11, &[]))
                },
            ),
        ];
        // Through the file format, as an auditor receives it.
        let items: Vec<pb::Evidence> = cases.iter().map(|(_, e)| e.clone()).collect();
        let file = encode_evidence(&items);
        assert_eq!(parse_evidence(&file).unwrap(), items);
        let out: String = cases
            .iter()
            .zip(parse_evidence(&file).unwrap())
            .map(|((name, _), e)| {
                let result = match verify_evidence(&e, &consortium) {
                    Ok(r) => render_evidence_report(&r),
                    Err(e) => format!("refused: {e}"),
                };
                format!("{name}: {result}\n")
            })
            .collect();
        expect![[r#"
            equal size, different roots: changsha, conflicting checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — two checkpoints of size 11 signed by the origin have roots WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns= and t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=
            forged: second signature damaged: refused: checkpoint 2: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
            forged: root replaced under the origin's signature: refused: checkpoint 2: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
            signed by another city's log key: refused: checkpoint 2: checkpoint origin "credex/mid-yangtze/wuhan" is not the log key's name "credex/mid-yangtze/changsha"
            the same checkpoint twice: refused: no conflict: no two of the checkpoints (sizes 11, 11) have one size and different roots
            different sizes claimed as conflicting: refused: no conflict: no two of the checkpoints (sizes 5, 11) have one size and different roots
            one checkpoint: refused: it holds 1 checkpoint, at least 2 are needed
            two entries at one seq: changsha, conflicting entries, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — two different entries for seq 4 signed by the origin, leaf hashes M4oFpiufxm+5gWyQy2rtRCcx4IInnS4NXgudPe450tY= and oeyBwoSxCHEYzH+zPEeJfmSxFmxb0tX96FYu5f8TKE8=
            forged entry: refused: signed entry 2: signature does not verify under key credex/mid-yangtze/changsha+8ddcab5f
            the same entry twice: refused: no conflict: no two different entries share a seq (seqs 4, 4)
            entries at different seqs: refused: no conflict: no two different entries share a seq (seqs 4, 5)
            another city's entries: refused: signed entry 1: leaf is signed by key id abf5c54c, expected credex/mid-yangtze/changsha+8ddcab5f
            sizes 5 and 11, proof from the size-11 tree: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — the origin signed a tree of size 11 (root t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=) whose first 5 leaves have root mnPfIMLgiJVTc81JrWaFHCwIimyEAicTJmjlnBtlO0o= by the consistency proof, and a tree of size 5 with root HnBOz0aKP1q1FodHQ3MWloQyfP23LJeZLM0me9yS57g=
            sizes 8 and 11 (a power of two), seeded proof from the size-11 tree, larger first: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — the origin signed a tree of size 11 (root t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=) whose first 8 leaves have root iuZrUiuG+4VCcJ2Ux6yXykcbStFwilbAfvTroY4psGk= by the consistency proof, and a tree of size 8 with root Z78unpi0Q4YHZmmnkXatasZ7yXNhWTmuFLYsGNUc0hY=
            sizes 8 and 11, unseeded proof: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof has 1 hash, the length of no proof between two of the signed sizes (8, 11; a seeded proof from 8 to 11 has 2 hashes), so it proves nothing
            sizes 5 and 11, proof from the other tree: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof from size 5 to 11 does not reproduce the root signed at size 11 (it yields WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=, the origin signed t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=), so it says nothing about that tree's first 5 leaves: it proves nothing
            sizes 8 and 11, seeded proof from the other tree: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof from size 8 to 11 does not reproduce the root signed at size 11 (it yields WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=, the origin signed t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=), so it says nothing about that tree's first 8 leaves: it proves nothing
            sizes 5 and 11, no proof supplied: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof has 0 hashes, the length of no proof between two of the signed sizes (5, 11; a seeded proof from 5 to 11 has 5 hashes), so it proves nothing
            sizes 5 and 11, a malformed hash: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof is malformed (hash is 31 bytes, expected 32), so it proves nothing
            sizes 5, 8 and 11, proof from 8 to 11: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — the origin signed a tree of size 11 (root t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=) whose first 8 leaves have root iuZrUiuG+4VCcJ2Ux6yXykcbStFwilbAfvTroY4psGk= by the consistency proof, and a tree of size 8 with root Z78unpi0Q4YHZmmnkXatasZ7yXNhWTmuFLYsGNUc0hY=
            inconsistent claimed, but the proof holds: refused: the consistency proof from size 5 to size 11 verifies: the checkpoints are consistent
            inconsistent claimed, but the seeded proof from 8 holds: refused: the consistency proof from size 8 to size 11 verifies: the checkpoints are consistent
            inconsistent claimed, but the unseeded proof from 8 holds: refused: the consistency proof from size 8 to size 11 verifies: the checkpoints are consistent
            inconsistent kind holding an equal-size conflict: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — two checkpoints of size 11 signed by the origin have roots WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns= and t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=
            unknown origin: refused: origin "shanghai" is not a member of consortium mid-yangtze
            unknown kind: refused: unknown evidence kind 9
        "#]].assert_eq(&out);
    }

    #[test]
    fn a_fork_of_different_sizes_is_proven_by_a_seeded_proof_from_the_larger_tree() {
        // The two logs share their first 4 entries: below that the histories agree.
        let (honest, forked) = fork();
        let consortium = consortium();
        let verdict = |e: pb::Evidence| verify_evidence(&e, &consortium).map(|r| r.verdict);
        for (small, large) in [(&honest, &forked), (&forked, &honest)] {
            for m in 1..11 {
                let proof = merkle::seeded_consistency_proof(m, 11, &large.tree).unwrap();
                let notes = vec![small.note(m, &[]), large.note(11, &[])];
                let reversed = notes.iter().rev().cloned().collect();
                for e in [
                    sizes_apart(notes, proof.clone()),
                    sizes_apart(reversed, proof),
                ] {
                    let got = verdict(e);
                    if m <= 4 {
                        assert!(
                            matches!(got, Err(EvidenceError::ConsistencyHolds { old, new: 11 }) if old == m),
                            "m = {m}: {got:?}"
                        );
                        continue;
                    }
                    // The oracle: the roots of the two trees, computed from their leaves.
                    assert_eq!(
                        got.unwrap(),
                        EvidenceVerdict::Proven(Equivocation::Histories {
                            old_size: m,
                            new_size: 11,
                            signed_old_root: merkle::root(m, &small.tree).unwrap(),
                            implied_old_root: merkle::root(m, &large.tree).unwrap(),
                            new_root: merkle::root(11, &large.tree).unwrap(),
                        }),
                        "m = {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_evidence_files_are_refused() {
        let cases = [
            ("empty file", String::new()),
            ("no items", format!("{EVIDENCE_HEADER}\n")),
            ("not base64", format!("{EVIDENCE_HEADER}\n???\n")),
            (
                "not an Evidence message",
                format!("{EVIDENCE_HEADER}\n{}\n", BASE64.encode([0xff; 3])),
            ),
            (
                "no final newline",
                format!("{EVIDENCE_HEADER}\nCghjaGFuZ3NoYQ=="),
            ),
        ];
        let out: String = cases
            .iter()
            .map(|(name, text)| {
                let result = match parse_evidence(text.as_bytes()) {
                    Ok(items) => format!("ok, {} items", items.len()),
                    Err(e) => format!("error: {e}"),
                };
                format!("{name}: {result}\n")
            })
            .collect();
        expect![[r#"
            empty file: error: line 1: the file ends where credex/equivocation-evidence@v1 should be
            no items: ok, 0 items
            not base64: error: line 2: evidence is not standard base64
            not an Evidence message: error: line 2: evidence is not a credex.v1.Evidence message: failed to decode Protobuf message: invalid varint
            no final newline: error: line 2: the last line has no newline
        "#]].assert_eq(&out);
    }

    // ------------------------------------------------------------- replay

    fn replay(log: &Log, served: &[Vec<u8>], notes: &[Vec<u8>]) -> String {
        let mut replay = LogReplay::new(&consortium(), &log.city, notes).unwrap();
        for leaf in served {
            replay.push(leaf);
        }
        render_replay_report(&replay.finish())
    }

    #[test]
    fn an_honest_log_replays_clean() {
        let log = Log::with_records(0, 11, 7);
        let notes = vec![
            log.note(0, &[]),
            log.note(3, &[]),
            log.note(7, &[witness_key(1)]),
            log.note(7, &[witness_key(1), witness_key(3)]),
            log.note(10, &wuhan_hefei()),
            log.note(11, &[witness_key(3)]),
        ];
        expect![[r#"
            changsha: 11 entries replayed, 11 valid; tree root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=
            checkpoints: 6 held, 6 signed by the origin, 6 matching the tree, 4 consistency proofs between successive ones
            newest checkpoint matching the tree: size 11, 1 cosignature from other members' witnesses (nanchang); 0 entries after it
        "#]].assert_eq(&replay(&log, &log.leaves, &notes));
    }

    #[test]
    fn a_replay_names_every_failure() {
        let log = Log::with_records(0, 11, 7);
        let (_, forked) = fork();
        let notes = |extra: Vec<Vec<u8>>| {
            let mut n = vec![log.note(3, &[]), log.note(7, &[]), log.note(11, &[])];
            n.extend(extra);
            n
        };
        let mut tampered = log.leaves.clone();
        tampered[4][20] ^= 1;
        let mut reordered = log.leaves.clone();
        reordered.swap(5, 6);
        let cases = [
            ("entry 4 tampered", replay(&log, &tampered, &notes(vec![]))),
            (
                "entries 5 and 6 swapped",
                replay(&log, &reordered, &notes(vec![])),
            ),
            (
                "a forked checkpoint in the history",
                replay(&log, &log.leaves, &notes(vec![forked.note(11, &[])])),
            ),
            (
                "a checkpoint with a damaged signature",
                replay(
                    &log,
                    &log.leaves,
                    &notes(vec![damage_signature(&log.note(5, &[]), log.key.name())]),
                ),
            ),
            (
                "fewer entries served than checkpointed",
                replay(&log, &log.leaves[..8], &notes(vec![])),
            ),
        ];
        let out: String = cases
            .iter()
            .map(|(name, report)| format!("--- {name}\n{report}"))
            .collect();
        expect![[r#"
            --- entry 4 tampered
            changsha: 11 entries replayed, 10 valid; tree root B6DoESXT7O+5/Z/UHbcd0U7Ay1cAYcDeSVtUrfODxSA=
            checkpoints: 3 held, 3 signed by the origin, 1 matching the tree, 0 consistency proofs between successive ones
            newest checkpoint matching the tree: size 3, 0 cosignatures from other members' witnesses; 8 entries after it
            FAILED entry 4: signature does not verify under key credex/mid-yangtze/changsha+8ddcab5f
            FAILED checkpoint of size 7: its signed root IlYx6hT4OXfVTS0lf1ju+EAlFGzF6jDXOiwQbp+nGSM= is not wlHR4h2ODlo7AguROZfxvoPrxRwIN7OufxUnwicOzec=, the root of the entries served
            FAILED checkpoint of size 11: its signed root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns= is not B6DoESXT7O+5/Z/UHbcd0U7Ay1cAYcDeSVtUrfODxSA=, the root of the entries served
            FAILED the log held, 11 entries with root B6DoESXT7O+5/Z/UHbcd0U7Ay1cAYcDeSVtUrfODxSA=, matches no checkpoint of size 11 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
            --- entries 5 and 6 swapped
            changsha: 11 entries replayed, 9 valid; tree root olUpeFTE9SPgVQTrSu++IbBtNVmwjN7xBVV4Gtp+6YQ=
            checkpoints: 3 held, 3 signed by the origin, 1 matching the tree, 0 consistency proofs between successive ones
            newest checkpoint matching the tree: size 3, 0 cosignatures from other members' witnesses; 8 entries after it
            FAILED entry 5: it says seq 6
            FAILED entry 6: it says seq 5
            FAILED checkpoint of size 7: its signed root IlYx6hT4OXfVTS0lf1ju+EAlFGzF6jDXOiwQbp+nGSM= is not BgdMGjdO19sjDdwHPD1HZbwLupZQ0m6MFEXn865ny6Q=, the root of the entries served
            FAILED checkpoint of size 11: its signed root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns= is not olUpeFTE9SPgVQTrSu++IbBtNVmwjN7xBVV4Gtp+6YQ=, the root of the entries served
            FAILED the log held, 11 entries with root olUpeFTE9SPgVQTrSu++IbBtNVmwjN7xBVV4Gtp+6YQ=, matches no checkpoint of size 11 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
            --- a forked checkpoint in the history
            changsha: 11 entries replayed, 11 valid; tree root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=
            checkpoints: 4 held, 4 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
            newest checkpoint matching the tree: size 11, 0 cosignatures from other members' witnesses; 0 entries after it
            FAILED two checkpoints of size 11 signed by the origin have different roots WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns= and t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w=: the origin equivocated
            FAILED checkpoint of size 11: its signed root t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w= is not WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=, the root of the entries served
            --- a checkpoint with a damaged signature
            changsha: 11 entries replayed, 11 valid; tree root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=
            checkpoints: 4 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
            newest checkpoint matching the tree: size 11, 0 cosignatures from other members' witnesses; 0 entries after it
            FAILED checkpoint #3 of the history: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
            --- fewer entries served than checkpointed
            changsha: 8 entries replayed, 8 valid; tree root Z78unpi0Q4YHZmmnkXatasZ7yXNhWTmuFLYsGNUc0hY=
            checkpoints: 3 held, 3 signed by the origin, 2 matching the tree, 1 consistency proof between successive ones
            newest checkpoint matching the tree: size 7, 0 cosignatures from other members' witnesses; 1 entry after it
            FAILED checkpoint of size 11 covers more than the 8 entries served
            FAILED the log held, 8 entries with root Z78unpi0Q4YHZmmnkXatasZ7yXNhWTmuFLYsGNUc0hY=, matches no checkpoint of size 8 the origin signed (none of that size): the node holds a root its origin never signed
        "#]].assert_eq(&out);
        assert!(matches!(
            LogReplay::new(&consortium(), "shanghai", &[]),
            Err(VerifyError::UnknownCity { .. })
        ));
    }

    #[test]
    fn a_log_whose_root_its_origin_never_signed_fails_the_replay() {
        // History A, and history B that agrees with it on the first 4 entries only.
        let a = Log::with_records(0, 20, 7);
        let mut b = Log::new(0);
        for leaf in &a.leaves[..4] {
            b.append_leaf(leaf.clone());
        }
        let mut generator = Generator::new(&capitals()[0], 99, parse_date("2026-05-20").unwrap());
        for _ in 4..20 {
            b.append_record(generator.record());
        }
        // What the node served: A's seqs 0-14, then B's 15-19. Every entry is signed by the
        // origin, and so is every checkpoint of A up to 15.
        let mut mixed = a.leaves[..15].to_vec();
        mixed.extend_from_slice(&b.leaves[15..]);
        let a_notes = vec![a.note(5, &[]), a.note(10, &[]), a.note(15, &[])];
        let with = |extra: Vec<u8>| {
            let mut n = a_notes.clone();
            n.push(extra);
            n
        };
        // The oracle for the mixed tree's root: built here leaf by leaf.
        let mut tree = MemoryHashStore::new();
        for leaf in &mixed {
            tree.append(leaf).unwrap();
        }
        let mixed_root = tree.root().to_string();
        let cases = [
            ("A's 0-14 and B's 15-19", replay(&a, &mixed, &a_notes)),
            (
                "the same, with B's checkpoint of size 20",
                replay(&a, &mixed, &with(b.note(20, &[]))),
            ),
            (
                "all of A, its last checkpoint at 15",
                replay(&a, &a.leaves, &a_notes),
            ),
            (
                "all of A and its checkpoint of size 20",
                replay(&a, &a.leaves, &with(a.note(20, &[]))),
            ),
        ];
        for (name, report) in &cases[..3] {
            assert!(report.contains("FAILED"), "{name} fails:\n{report}");
        }
        assert!(!cases[3].1.contains("FAILED"), "{}", cases[3].1);
        let out: String = cases
            .iter()
            .map(|(name, report)| format!("--- {name}\n{report}"))
            .collect();
        assert!(out.contains(&format!("the log held, 20 entries with root {mixed_root}")));
        expect![[r#"
            --- A's 0-14 and B's 15-19
            changsha: 20 entries replayed, 20 valid; tree root ZfLy8fj4XXqSBdv/P1kYdKs1JrEy0zUKsQC01s+H+XI=
            checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
            newest checkpoint matching the tree: size 15, 0 cosignatures from other members' witnesses; 5 entries after it
            FAILED the log held, 20 entries with root ZfLy8fj4XXqSBdv/P1kYdKs1JrEy0zUKsQC01s+H+XI=, matches no checkpoint of size 20 the origin signed (none of that size): the node holds a root its origin never signed
            --- the same, with B's checkpoint of size 20
            changsha: 20 entries replayed, 20 valid; tree root ZfLy8fj4XXqSBdv/P1kYdKs1JrEy0zUKsQC01s+H+XI=
            checkpoints: 4 held, 4 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
            newest checkpoint matching the tree: size 15, 0 cosignatures from other members' witnesses; 5 entries after it
            FAILED checkpoint of size 20: its signed root tmpWmC0NuCi4jdhcE5ABoXWDWfpFs+2/dXsrRL+/8fI= is not ZfLy8fj4XXqSBdv/P1kYdKs1JrEy0zUKsQC01s+H+XI=, the root of the entries served
            FAILED the log held, 20 entries with root ZfLy8fj4XXqSBdv/P1kYdKs1JrEy0zUKsQC01s+H+XI=, matches no checkpoint of size 20 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
            --- all of A, its last checkpoint at 15
            changsha: 20 entries replayed, 20 valid; tree root HjwIonn4e5wJHARIZuaz8SEjH4SEYwbmkNw5dyar/Xs=
            checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
            newest checkpoint matching the tree: size 15, 0 cosignatures from other members' witnesses; 5 entries after it
            FAILED the log held, 20 entries with root HjwIonn4e5wJHARIZuaz8SEjH4SEYwbmkNw5dyar/Xs=, matches no checkpoint of size 20 the origin signed (none of that size): the node holds a root its origin never signed
            --- all of A and its checkpoint of size 20
            changsha: 20 entries replayed, 20 valid; tree root HjwIonn4e5wJHARIZuaz8SEjH4SEYwbmkNw5dyar/Xs=
            checkpoints: 4 held, 4 signed by the origin, 4 matching the tree, 3 consistency proofs between successive ones
            newest checkpoint matching the tree: size 20, 0 cosignatures from other members' witnesses; 0 entries after it
        "#]].assert_eq(&out);
    }

    #[test]
    fn a_checkpoint_listed_after_the_entries_signs_the_root_and_a_forked_origin_fails() {
        // The node held 11 entries when it served them, and has grown to 12 since.
        let log = Log::with_records(0, 12, 7);
        let notes = vec![log.note(3, &[]), log.note(7, &[])];
        let consortium = consortium();
        let run = |relisted: &[Vec<u8>], forked: Option<usize>| {
            let mut replay = LogReplay::new(&consortium, &log.city, &notes).unwrap();
            for leaf in &log.leaves[..11] {
                replay.push(leaf);
            }
            assert!(!replay.root_signed(), "no checkpoint of size 11 listed yet");
            replay.add_checkpoints(&consortium, relisted);
            if let Some(n) = forked {
                replay.marked_forked(n);
            }
            render_replay_report(&replay.finish())
        };
        let (_, forked) = fork();
        let cases = [
            (
                "relisted: sizes 3, 7, 11 and 12",
                run(
                    &[
                        log.note(3, &[]),
                        log.note(7, &[]),
                        log.note(11, &wuhan_hefei()),
                        log.note(12, &[]),
                    ],
                    None,
                ),
            ),
            (
                "relisted: another root at size 11",
                run(&[forked.note(11, &[])], None),
            ),
            (
                "relisted: size 11, the node holds evidence",
                run(&[log.note(11, &[])], Some(2)),
            ),
        ];
        let out: String = cases
            .iter()
            .map(|(name, report)| format!("--- {name}\n{report}"))
            .collect();
        expect![[r#"
            --- relisted: sizes 3, 7, 11 and 12
            changsha: 11 entries replayed, 11 valid; tree root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=
            checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
            newest checkpoint matching the tree: size 11, 2 cosignatures from other members' witnesses (wuhan, hefei); 0 entries after it
            --- relisted: another root at size 11
            changsha: 11 entries replayed, 11 valid; tree root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=
            checkpoints: 3 held, 3 signed by the origin, 2 matching the tree, 1 consistency proof between successive ones
            newest checkpoint matching the tree: size 7, 0 cosignatures from other members' witnesses; 4 entries after it
            FAILED checkpoint of size 11: its signed root t2qC1TvLQEpk83iM98W51tB5m+Nx3xzGoJywtQTUe7w= is not WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=, the root of the entries served
            FAILED the log held, 11 entries with root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=, matches no checkpoint of size 11 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
            --- relisted: size 11, the node holds evidence
            changsha: 11 entries replayed, 11 valid; tree root WqIeGIg3raPcyBvxQUY62kbYA3BXkikovu3BQoFKgns=
            checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
            newest checkpoint matching the tree: size 11, 0 cosignatures from other members' witnesses; 0 entries after it
            FAILED origin is marked forked at this node; 2 pieces of evidence (`credexctl audit evidence --origin changsha` exports them for `audit verify`)
        "#]].assert_eq(&out);
    }
}
