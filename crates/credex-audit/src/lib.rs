//! credex-audit: offline audit of credex logs. Proof bundles (C2SP `tlog-proof`), their
//! consistency extensions, equivocation evidence and whole-log replays, verified against the
//! consortium's pinned keys with no network, no runtime and no storage: it depends on
//! `credex-core` alone, so a bank's or a court's service can verify what a city node hands
//! it without compiling the node.
//!
//! Everything here is a pure function of bytes and a [`Consortium`] (the consortium file,
//! parsed by [`Consortium::parse`]); `credexctl audit` fetches the files from a node, writes
//! them and renders the reports. Every check that fails is a typed error whose message starts
//! with the check's name (`signed entry: …`, `inclusion proof: …`, `quorum: …`).
//! `docs/formats.md` describes the files for implementers in other languages.
//!
//! # Layout
//! - [`mod@format`]: the file formats: proof files ([`ProofFile`]), evidence files.
//! - [`checkpoint`]: a checkpoint note verified against the pinned keys, its cosigners counted.
//! - [`proof`]: [`verify_proof`], a record's inclusion under a cosigned checkpoint.
//! - [`evidence`]: [`verify_evidence`], whether evidence proves that an origin equivocated.
//! - [`replay`]: [`LogReplay`], a whole log replayed against its checkpoint history.
//! - [`text`]: how reports write times and counts.
//!
//! # Verifying a bundle
//! A bank's service holds the consortium file it was given when it joined as an auditor, and
//! receives a proof bundle with a record (from `credexctl audit proof`, or `Audit.GetProof`
//! through [`TlogProof::from_bundle`]). It accepts the record only when the bundle verifies:
//!
//! ```
//! # use credex_core::consortium::{self, Member, RulesConfig};
//! # use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
//! # use credex_core::merkle::{self, MemoryHashStore};
//! # use credex_core::{entry, note, pb};
//! # use credex_audit::{ProofFile, TlogProof};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // Three member cities: Changsha's log, Wuhan's and Hefei's witnesses cosign it.
//! # let cities = [("changsha", "长沙", "430100"), ("wuhan", "武汉", "420100"), ("hefei", "合肥", "340100")];
//! # let key = |name: String, alg, seed: u8| SigningKeyPair::from_seed(&name, alg, [seed; 32]);
//! # let mut logs = Vec::new();
//! # let mut witnesses = Vec::new();
//! # let mut members = Vec::new();
//! # for (i, (city, name_zh, division)) in cities.into_iter().enumerate() {
//! #     let log = key(consortium::origin("mid-yangtze", city), KeyAlgorithm::Ed25519, 10 + i as u8)?;
//! #     let witness = key(consortium::witness_name("mid-yangtze", city), KeyAlgorithm::CosignatureV1, 20 + i as u8)?;
//! #     members.push(Member {
//! #         city: city.into(), name_zh: name_zh.into(), division: division.into(),
//! #         log_key: log.public(), witness_key: witness.public(), address: format!("{city}.example:7001"),
//! #     });
//! #     logs.push(log);
//! #     witnesses.push(witness);
//! # }
//! # let consortium_toml = consortium::Consortium {
//! #     name: "mid-yangtze".into(), ca_cert: "ca.pem".into(), rules: RulesConfig::default(), members,
//! # }.to_toml()?;
//! # // Changsha's log of one entry and its checkpoint, cosigned by Wuhan and Hefei.
//! # let record = pb::CreditRecord { record_id: "CS-17".into(), version: 1, ..Default::default() };
//! # let e = pb::Entry { origin: "changsha".into(), seq: 0, logged_at: 1_767_196_800_000, schema_version: 1, record: Some(record) };
//! # let leaf = entry::sign_entry(&logs[0], &entry::encode_entry(&e));
//! # let mut tree = MemoryHashStore::new();
//! # tree.append(&leaf)?;
//! # let checkpoint = note::Checkpoint { origin: logs[0].name().to_owned(), size: 1, root: tree.root() };
//! # let lines = vec![note::cosign(&checkpoint, &witnesses[1], 1_767_196_801)?, note::cosign(&checkpoint, &witnesses[2], 1_767_196_802)?];
//! # let note = note::add_signature_lines(&note::sign_checkpoint(&checkpoint, &logs[0])?, &lines)?;
//! # let bundle_bytes = ProofFile { extension: None, proof: TlogProof {
//! #     extra: Some(leaf), index: 0, path: merkle::inclusion_proof(0, 1, &tree)?, checkpoint: note,
//! # } }.to_bytes();
//! use std::path::Path;
//!
//! use credex_audit::{DEFAULT_QUORUM, ProofFile, verify_proof};
//! use credex_core::consortium::Consortium;
//!
//! // Once, at start: the trust root.
//! let consortium = Consortium::parse(&consortium_toml, Path::new("consortium.toml"))?;
//!
//! // Per bundle: parse, then verify signatures, inclusion and the witnesses' quorum.
//! let file = ProofFile::parse(&bundle_bytes)?;
//! let report = verify_proof(&file, &consortium, DEFAULT_QUORUM)?;
//! let record = report.entry.record.as_ref().expect("a verified entry carries its record");
//! assert_eq!((report.city.as_str(), report.index), ("changsha", 0));
//! assert_eq!((record.record_id.as_str(), record.version), ("CS-17", 1));
//! let cosigners: Vec<&str> = report.quorum_checkpoint().cosigners.iter().map(|c| c.city.as_str()).collect();
//! assert_eq!(cosigners, ["wuhan", "hefei"]);
//!
//! // The same bundle with one byte of the record changed is refused, naming the check.
//! let mut tampered = file.clone();
//! tampered.proof.extra.as_mut().unwrap()[12] ^= 1;
//! let refused = verify_proof(&tampered, &consortium, DEFAULT_QUORUM).unwrap_err();
//! assert_eq!(refused.check(), "signed entry");
//! # Ok(())
//! # }
//! ```
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
//!   to n taken from the size-n tree ([`credex_core::merkle::seeded_consistency_proof`]: the RFC 9162 proof,
//!   preceded by the root at m when m is a power of two; for other m it is the plain RFC proof).
//!   RFC 9162 computes both roots from the proof alone ([`credex_core::merkle::consistency_roots`]): when
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

pub mod checkpoint;
pub mod evidence;
pub mod format;
pub mod proof;
pub mod replay;
pub mod text;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use checkpoint::{CheckpointReport, Cosigner};
pub use credex_core::consortium::{Consortium, Member};
pub use evidence::{
    Equivocation, EvidenceError, EvidenceReport, EvidenceVerdict, kind_name, verify_evidence,
};
pub use format::{
    Extension, FileKind, FormatError, ProofFile, TlogProof, detect, encode_evidence, parse_evidence,
};
pub use proof::{Check, ProofReport, VerifyError, Which, verify_proof};
pub use replay::{LogReplay, ReplayFailure, ReplayReport};

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
