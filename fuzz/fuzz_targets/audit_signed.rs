//! Structure-aware audit: proof bundles and equivocation evidence built from a real, signed
//! log of up to 64 entries (and a fork of it), then changed where the fuzzer says, so they get
//! past the signatures and reach the proof checks.
//!
//! What must hold: an untouched bundle verifies whenever its quorum is met; whatever verifies
//! proves a leaf of the real log; evidence made only of the honest log's checkpoints and
//! entries never proves an equivocation, and a proven one names two different signed claims.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use credex_audit::{
    self as audit, Equivocation, EvidenceVerdict, Extension, ProofFile, TlogProof, VerifyError,
};
use credex_cli::audit::render_proof_report;
use credex_core::entry::{encode_entry, sign_entry};
use credex_core::merkle::{self, Hash, MemoryHashStore};
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use credex_fuzz::{entry_of, fixture, sample_records};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

const LOG_LEN: u64 = 64;
/// Where the fork's history leaves the honest one's.
const FORK_AT: u64 = 20;

/// Changsha's log, and a fork of it whose entries from `FORK_AT` on differ.
struct Logs {
    leaves: [Vec<Vec<u8>>; 2],
    trees: [MemoryHashStore; 2],
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let key = &fixture().log_keys[0];
        let records = sample_records(0, 7, LOG_LEN as usize * 2);
        let make = |fork: bool| -> (Vec<Vec<u8>>, MemoryHashStore) {
            let mut tree = MemoryHashStore::new();
            let leaves: Vec<Vec<u8>> = (0..LOG_LEN)
                .map(|seq| {
                    let pick = if fork && seq >= FORK_AT {
                        LOG_LEN + seq
                    } else {
                        seq
                    };
                    let entry = entry_of(0, seq, records[pick as usize].clone());
                    let leaf = sign_entry(key, &encode_entry(&entry));
                    tree.append(&leaf).unwrap();
                    leaf
                })
                .collect();
            (leaves, tree)
        };
        let (honest, honest_tree) = make(false);
        let (fork, fork_tree) = make(true);
        Logs {
            leaves: [honest, fork],
            trees: [honest_tree, fork_tree],
        }
    })
}

#[derive(Debug, Arbitrary)]
enum HashEdit {
    Replace(u8, [u8; 32]),
    Remove(u8),
    Insert(u8, [u8; 32]),
}

fn edit(hashes: &mut Vec<Hash>, edits: &[HashEdit]) {
    for e in edits {
        let at = |i: &u8, len: usize| usize::from(*i) % (len + 1);
        match e {
            HashEdit::Replace(i, h) if !hashes.is_empty() => {
                let i = usize::from(*i) % hashes.len();
                hashes[i] = Hash(*h);
            }
            HashEdit::Remove(i) if !hashes.is_empty() => {
                let i = usize::from(*i) % hashes.len();
                hashes.remove(i);
            }
            HashEdit::Insert(i, h) => {
                let i = at(i, hashes.len());
                hashes.insert(i, Hash(*h));
            }
            _ => {}
        }
    }
}

/// A checkpoint of one of the logs at a size, or an arbitrary claim.
#[derive(Debug, Arbitrary)]
struct Claim {
    fork: bool,
    size: u8,
    /// Sign this size and root instead of the tree's.
    forged: Option<(u64, [u8; 32])>,
    cosigners: Vec<u8>,
}

impl Claim {
    fn honest(&self) -> bool {
        self.forged.is_none() && (!self.fork || u64::from(self.size) % (LOG_LEN + 1) <= FORK_AT)
    }

    fn checkpoint(&self) -> Checkpoint {
        let f = fixture();
        let (size, root) = match self.forged {
            Some((size, root)) => (size, Hash(root)),
            None => {
                let size = u64::from(self.size) % (LOG_LEN + 1);
                let tree = &logs().trees[usize::from(self.fork)];
                (size, merkle::root(size, tree).unwrap())
            }
        };
        Checkpoint {
            origin: f.log_keys[0].name().to_owned(),
            size,
            root,
        }
    }

    fn note(&self) -> Vec<u8> {
        let f = fixture();
        let cp = self.checkpoint();
        let signed = note::sign_checkpoint(&cp, &f.log_keys[0]).unwrap();
        let lines: Vec<_> = self
            .cosigners
            .iter()
            .take(4)
            .map(|&w| {
                note::cosign(&cp, &f.witness_keys[usize::from(w % 4)], 1_777_600_800).unwrap()
            })
            .collect();
        note::add_signature_lines(&signed, &lines).unwrap()
    }

    /// Cities other than the origin whose witnesses cosign.
    fn cosigning_cities(&self) -> usize {
        let mut cities: Vec<u8> = self
            .cosigners
            .iter()
            .take(4)
            .map(|w| w % 4)
            .filter(|&w| w != 0)
            .collect();
        cities.sort();
        cities.dedup();
        cities.len()
    }
}

#[derive(Debug, Arbitrary)]
struct Proof {
    /// The leaf carried: from which log, which seq.
    leaf: (bool, u8),
    index: u8,
    checkpoint: Claim,
    path: Vec<HashEdit>,
    extension: Option<(Claim, Vec<HashEdit>)>,
    quorum: u8,
}

#[derive(Debug, Arbitrary)]
struct Evidence {
    kind: i32,
    checkpoints: Vec<Claim>,
    /// A seeded consistency proof from one of the logs between two sizes, edited.
    proof: Option<(bool, u8, u8, Vec<HashEdit>)>,
    /// Entries: from which log, which seq.
    entries: Vec<(bool, u8)>,
}

#[derive(Debug, Arbitrary)]
enum Input {
    Proof(Proof),
    Evidence(Evidence),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Proof(p) => proof(p),
        Input::Evidence(e) => evidence(e),
    }
});

fn proof(p: Proof) {
    let f = fixture();
    let logs = logs();
    let (leaf_fork, leaf_seq) = (usize::from(p.leaf.0), u64::from(p.leaf.1) % LOG_LEN);
    let leaf = logs.leaves[leaf_fork][leaf_seq as usize].clone();
    let cp = p.checkpoint.checkpoint();
    let tree = &logs.trees[usize::from(p.checkpoint.fork)];
    let index = u64::from(p.index) % LOG_LEN;
    let mut path = if index < cp.size && cp.size <= LOG_LEN {
        merkle::inclusion_proof(index, cp.size, tree).unwrap()
    } else {
        Vec::new()
    };
    edit(&mut path, &p.path);
    let extension = p.extension.as_ref().map(|(newer, edits)| {
        let new_cp = newer.checkpoint();
        let mut consistency = if cp.size <= new_cp.size && new_cp.size <= LOG_LEN {
            merkle::consistency_proof(cp.size, new_cp.size, &logs.trees[usize::from(newer.fork)])
                .unwrap()
        } else {
            Vec::new()
        };
        edit(&mut consistency, edits);
        Extension {
            consistency,
            checkpoint: newer.note(),
        }
    });
    let file = ProofFile {
        extension,
        proof: TlogProof {
            extra: Some(leaf.clone()),
            index,
            path,
            checkpoint: p.checkpoint.note(),
        },
    };
    let bytes = file.to_bytes();
    assert_eq!(
        ProofFile::parse(&bytes).unwrap(),
        file,
        "a written proof file reads back"
    );

    let quorum = usize::from(p.quorum % 4);
    match audit::verify_proof(&file, &f.consortium, quorum) {
        Ok(report) => {
            // Whatever verifies is an entry of a log the origin signed a root of, at its seq.
            assert_eq!(report.index, leaf_seq);
            assert_eq!(report.leaf_hash, merkle::leaf_hash(&leaf));
            assert_eq!(report.entry.seq, leaf_seq);
            assert!(report.quorum_checkpoint().cosigners.len() >= quorum);
            let _ = render_proof_report(&report);
        }
        Err(e) => {
            let untouched = p.path.is_empty()
                && p.checkpoint.forged.is_none()
                && leaf_fork == usize::from(p.checkpoint.fork)
                && leaf_seq == index
                && index < cp.size
                && p.extension.is_none();
            if untouched && !matches!(e, VerifyError::Quorum { .. }) {
                panic!("an untouched proof fails: {e}");
            }
            if untouched {
                assert!(p.checkpoint.cosigning_cities() < quorum);
            }
            let _ = e.to_string();
        }
    }
}

fn evidence(e: Evidence) {
    let f = fixture();
    let logs = logs();
    let checkpoints: Vec<pb::SignedCheckpoint> = e
        .checkpoints
        .iter()
        .take(6)
        .map(|c| pb::SignedCheckpoint { note: c.note() })
        .collect();
    let consistency_proof = match &e.proof {
        None => Vec::new(),
        Some((fork, a, b, edits)) => {
            let (a, b) = (u64::from(*a) % (LOG_LEN + 1), u64::from(*b) % (LOG_LEN + 1));
            let (a, b) = (a.min(b), a.max(b));
            let tree = &logs.trees[usize::from(*fork)];
            let mut proof = merkle::seeded_consistency_proof(a, b, tree).unwrap();
            edit(&mut proof, edits);
            proof.iter().map(|h| h.0.to_vec()).collect()
        }
    };
    let signed_entries: Vec<Vec<u8>> = e
        .entries
        .iter()
        .take(6)
        .map(|&(fork, seq)| {
            logs.leaves[usize::from(fork)][usize::from(seq) % LOG_LEN as usize].clone()
        })
        .collect();
    let item = pb::Evidence {
        origin: f.consortium.members[0].city.clone(),
        kind: e.kind,
        checkpoints,
        signed_entries,
        consistency_proof,
        ..Default::default()
    };
    let file = audit::encode_evidence(std::slice::from_ref(&item));
    assert_eq!(audit::parse_evidence(&file).unwrap(), vec![item.clone()]);
    assert_eq!(
        pb::Evidence::decode(item.encode_to_vec().as_slice()).unwrap(),
        item
    );

    let honest_checkpoints = e.checkpoints.iter().take(6).all(Claim::honest);
    let honest_entries = e
        .entries
        .iter()
        .take(6)
        .all(|&(fork, seq)| !fork || u64::from(seq) % LOG_LEN < FORK_AT);
    if let Ok(report) = audit::verify_evidence(&item, &f.consortium) {
        let _ = report.to_string();
        if let EvidenceVerdict::Proven(found) = &report.verdict {
            match found {
                Equivocation::Checkpoints { roots, .. } => {
                    assert_ne!(roots[0], roots[1]);
                    assert!(!honest_checkpoints, "an honest log framed: {found:?}");
                }
                Equivocation::Histories {
                    signed_old_root,
                    implied_old_root,
                    ..
                } => {
                    assert_ne!(signed_old_root, implied_old_root);
                    assert!(
                        !honest_checkpoints,
                        "an honest log framed by a proof: {found:?}"
                    );
                }
                Equivocation::Entries { leaf_hashes, .. } => {
                    assert_ne!(leaf_hashes[0], leaf_hashes[1]);
                    assert!(!honest_entries, "an honest log framed: {found:?}");
                }
            }
        }
    }
}
