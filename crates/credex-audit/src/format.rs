//! The audit file formats: proof files (a C2SP tlog-proof, possibly extended by a newer
//! checkpoint) and evidence files; see the crate docs and `docs/formats.md`. Only the canonical
//! encoding is read, so a file that parses writes back byte for byte.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use credex_core::merkle::{self, Hash};
use credex_core::pb;
use prost::Message as _;

use crate::{
    EVIDENCE_HEADER, EXTENSION_HEADER, MAX_EVIDENCE_FILE_BYTES, MAX_PROOF_FILE_BYTES, PROOF_HEADER,
};

/// Most hashes in an inclusion or consistency path: trees are below 2^62 leaves
/// ([`merkle::MAX_TREE_SIZE`]), so an honest path has fewer.
const MAX_PATH_HASHES: usize = 64;

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
