//! Hand-built consortium logs for tests, here and in `credexctl`'s (feature `test-support`):
//! the four capitals' fixed log and witness keys, their consortium, a log signed entry by
//! entry with its tree, and its proofs, extensions and cosigned checkpoints as a node would
//! serve them. Everything is the same on every run (keys from fixed seeds, fixed times), so
//! tests can hold expected output.
//!
//! Not part of the auditor's API: built only for tests and with `test-support`.

use credex_core::consortium::{self, Consortium, Member};
use credex_core::entry;
use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
use credex_core::merkle::{self, MemoryHashStore};
use credex_core::note::{self, Checkpoint};
use credex_core::pb;

use crate::{Extension, ProofFile, TlogProof};

/// The four capitals: city id, name, division.
pub const CITIES: [(&str, &str, &str); 4] = [
    ("changsha", "长沙", "430100"),
    ("wuhan", "武汉", "420100"),
    ("hefei", "合肥", "340100"),
    ("nanchang", "南昌", "360100"),
];

/// A city's records, the same for the same seed. Verification reads no field of a record, so
/// these only need to differ from one another.
pub struct Records {
    city: &'static str,
    seed: u64,
    next: u64,
}

impl Records {
    pub fn new(i: usize, seed: u64) -> Self {
        Self {
            city: CITIES[i].0,
            seed,
            next: 0,
        }
    }

    pub fn record(&mut self) -> pb::CreditRecord {
        self.next += 1;
        pb::CreditRecord {
            record_id: format!("{}-{}-{}", self.city, self.seed, self.next),
            version: 1,
            category: "tax.major_violation".to_owned(),
            remarks: format!("record {} of seed {}", self.next, self.seed),
            ..Default::default()
        }
    }
}

/// The consortium's name, in every origin and witness name.
pub const CONSORTIUM: &str = "mid-yangtze";
/// 2026-01-01T00:00:00+08:00: entries are logged and checkpoints cosigned from it on.
pub const TS: u64 = 1_767_196_800;

/// City `i`'s id (`changsha`, `wuhan`, `hefei`, `nanchang`).
pub fn city(i: usize) -> String {
    CITIES[i].0.to_owned()
}

/// City `i`'s log key, from a fixed seed.
pub fn log_key(i: usize) -> SigningKeyPair {
    let name = consortium::origin(CONSORTIUM, &city(i));
    SigningKeyPair::from_seed(&name, KeyAlgorithm::Ed25519, [10 + i as u8; 32]).unwrap()
}

/// City `i`'s witness key, from a fixed seed.
pub fn witness_key(i: usize) -> SigningKeyPair {
    let name = consortium::witness_name(CONSORTIUM, &city(i));
    SigningKeyPair::from_seed(&name, KeyAlgorithm::CosignatureV1, [20 + i as u8; 32]).unwrap()
}

/// Keys named like a fifth city's, which the consortium file does not list.
pub fn outsider_log_key() -> SigningKeyPair {
    let name = consortium::origin(CONSORTIUM, "shanghai");
    SigningKeyPair::from_seed(&name, KeyAlgorithm::Ed25519, [98; 32]).unwrap()
}

/// A witness key named like a fifth city's.
pub fn outsider_witness_key() -> SigningKeyPair {
    let name = consortium::witness_name(CONSORTIUM, "shanghai");
    SigningKeyPair::from_seed(&name, KeyAlgorithm::CosignatureV1, [99; 32]).unwrap()
}

/// The four capitals' consortium file, with [`log_key`] and [`witness_key`] pinned.
pub fn consortium() -> Consortium {
    Consortium {
        name: CONSORTIUM.to_owned(),
        ca_cert: "ca.pem".into(),
        rules: Default::default(),
        members: CITIES
            .iter()
            .enumerate()
            .map(|(i, (id, name, division))| Member {
                city: (*id).to_owned(),
                name_zh: (*name).to_owned(),
                division: (*division).to_owned(),
                log_key: log_key(i).public(),
                witness_key: witness_key(i).public(),
                address: format!("127.0.0.1:{}", 7400 + i),
            })
            .collect(),
    }
}

/// City `i`'s log as its node would hold it: the signed leaves and their tree.
pub struct Log {
    pub key: SigningKeyPair,
    pub city: String,
    pub leaves: Vec<Vec<u8>>,
    pub tree: MemoryHashStore,
}

impl Log {
    pub fn new(i: usize) -> Self {
        Self {
            key: log_key(i),
            city: city(i),
            leaves: Vec::new(),
            tree: MemoryHashStore::new(),
        }
    }

    /// `n` generated records, the same for the same seed.
    pub fn with_records(i: usize, n: u64, seed: u64) -> Self {
        let mut log = Self::new(i);
        let mut generator = Records::new(i, seed);
        for _ in 0..n {
            let record = generator.record();
            log.append_record(record);
        }
        log
    }

    pub fn append_record(&mut self, record: pb::CreditRecord) {
        let seq = self.tree.size();
        let leaf = signed_leaf(&self.key, &self.city, seq, record);
        self.append_leaf(leaf);
    }

    pub fn append_leaf(&mut self, leaf: Vec<u8>) {
        self.tree.append(&leaf).unwrap();
        self.leaves.push(leaf);
    }

    pub fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint {
            origin: self.key.name().to_owned(),
            size,
            root: merkle::root(size, &self.tree).unwrap(),
        }
    }

    /// The checkpoint of `size`, signed, and cosigned by `witnesses`.
    pub fn note(&self, size: u64, witnesses: &[SigningKeyPair]) -> Vec<u8> {
        cosigned(&self.checkpoint(size), &self.key, witnesses)
    }

    pub fn proof(&self, index: u64, size: u64, witnesses: &[SigningKeyPair]) -> ProofFile {
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

    pub fn extension(&self, old: u64, new: u64, witnesses: &[SigningKeyPair]) -> Extension {
        Extension {
            consistency: merkle::consistency_proof(old, new, &self.tree).unwrap(),
            checkpoint: self.note(new, witnesses),
        }
    }
}

pub fn signed_leaf(
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
    entry::sign_entry(key, &entry::encode_entry(&entry))
}

pub fn cosigned(cp: &Checkpoint, key: &SigningKeyPair, witnesses: &[SigningKeyPair]) -> Vec<u8> {
    let note = note::sign_checkpoint(cp, key).unwrap();
    let lines: Vec<Vec<u8>> = witnesses
        .iter()
        .enumerate()
        .map(|(i, w)| note::cosign(cp, w, TS + i as u64).unwrap())
        .collect();
    note::add_signature_lines(&note, &lines).unwrap()
}
