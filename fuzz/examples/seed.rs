//! Writes the seed corpora, `fuzz/corpus/<target>/`, from real encoded entries, notes, proof
//! files, evidence, records and the config files of the tests and `deploy/examples`.
//!
//! `cargo run --example seed` from `fuzz/`. Deterministic: the same tree gives the same seeds,
//! so a rerun only shows a diff when an encoding changed.

use std::fs;
use std::path::{Path, PathBuf};

use credex_audit::{self as audit, Extension, ProofFile, TlogProof};
use credex_cli::json;
use credex_core::entry::{encode_entry, sign_entry};
use credex_core::merkle::{self, MemoryHashStore};
use credex_core::note::{self, Checkpoint};
use credex_core::pb;
use credex_fuzz::{entry_of, fixture, sample_records};
use prost::Message as _;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = root.parent().expect("fuzz/ is in the repository");
    let corpus = root.join("corpus");
    let f = fixture();
    let mut seeds = Seeds { corpus, written: 0 };

    // Records: four from each member's generator.
    let records: Vec<pb::CreditRecord> =
        (0..4).flat_map(|city| sample_records(city, 1, 4)).collect();

    for (i, r) in records.iter().enumerate() {
        let mut bytes = vec![i as u8 * 5];
        bytes.extend(r.encode_to_vec());
        seeds.put("record", &format!("generated-{i}"), &bytes);
        seeds.put(
            "json_record",
            &format!("generated-{i}"),
            json::record_to_line(r).as_bytes(),
        );
    }

    // Entries and leaves: Changsha's log of its first records.
    let changsha: Vec<pb::CreditRecord> = sample_records(0, 7, 8);
    let key = &f.log_keys[0];
    let mut tree = MemoryHashStore::new();
    let mut leaves = Vec::new();
    for (seq, r) in changsha.iter().enumerate() {
        let entry = encode_entry(&entry_of(0, seq as u64, r.clone()));
        let leaf = sign_entry(key, &entry);
        tree.append(&leaf).unwrap();
        if seq < 3 {
            seeds.put("entry", &format!("changsha-{seq}"), &entry);
            seeds.put("signed_entry", &format!("changsha-{seq}"), &leaf);
        }
        leaves.push(leaf);
    }
    // Packed entries: those leaves as a node stores them after two batches, 3 and 5 leaves.
    let dir = std::env::temp_dir().join(format!("credex-fuzz-seed-{}", std::process::id()));
    let store = credex_store::Store::open(&dir).unwrap();
    for (first, end) in [(0, 3), (3, 8)] {
        let mut batch = credex_store::WriteBatch::new();
        for seq in first..end {
            batch.append("changsha", seq, leaves[seq as usize].clone());
        }
        store.apply(batch).unwrap();
    }
    let credex_store::PackedRun::Blocks(blocks) =
        store.packed_leaves("changsha", 0, 8, 1024, 1 << 20).unwrap()
    else {
        panic!("changsha's leaves are in whole blocks from 0");
    };
    let run = pb::PackedEntries {
        origin: "changsha".to_owned(),
        first_seq: 0,
        blocks: blocks
            .into_iter()
            .map(|b| pb::LeafBlock {
                count: b.count,
                raw_len: b.raw_len,
                zstd: b.zstd,
            })
            .collect(),
    };
    seeds.put("packed_entries", "changsha-0-8", &run.encode_to_vec());
    drop(store);
    fs::remove_dir_all(&dir).unwrap();
    let no_record = pb::Entry {
        record: None,
        ..entry_of(0, 9, changsha[0].clone())
    };
    seeds.put("entry", "no-record", &encode_entry(&no_record));
    let wuhan_leaf = sign_entry(
        &f.log_keys[1],
        &encode_entry(&entry_of(1, 0, records[4].clone())),
    );
    seeds.put("signed_entry", "wuhan-0", &wuhan_leaf);

    // Checkpoints: Changsha's at sizes 4 and 8, cosigned by Wuhan and Hefei.
    let checkpoint = |size: u64| Checkpoint {
        origin: key.name().to_owned(),
        size,
        root: merkle::root(size, &tree).unwrap(),
    };
    let cosigned = |cp: &Checkpoint| {
        let signed = note::sign_checkpoint(cp, key).unwrap();
        let lines: Vec<_> = [1, 2, 0]
            .iter()
            .map(|&w| note::cosign(cp, &f.witness_keys[w], 1_777_600_800 + w as u64).unwrap())
            .collect();
        (
            signed.clone(),
            note::add_signature_lines(&signed, &lines[..2]).unwrap(),
            lines,
        )
    };
    let (signed4, note4, _) = cosigned(&checkpoint(4));
    let (signed8, note8, lines8) = cosigned(&checkpoint(8));
    seeds.put("checkpoint", "body-8", &checkpoint(8).body());
    seeds.put("checkpoint", "signed-8", &signed8);
    seeds.put("checkpoint", "cosigned-8", &note8);
    let mut adding = signed8.clone();
    for line in &lines8 {
        adding.push(0);
        adding.extend(line);
    }
    seeds.put("checkpoint", "signed-8-adding-lines", &adding);

    // Proof files: seq 2 in the size-4 tree, and that extended to size 8.
    let proof = TlogProof {
        extra: Some(leaves[2].clone()),
        index: 2,
        path: merkle::inclusion_proof(2, 4, &tree).unwrap(),
        checkpoint: note4.clone(),
    };
    let extended = ProofFile {
        extension: Some(Extension {
            consistency: merkle::consistency_proof(4, 8, &tree).unwrap(),
            checkpoint: note8.clone(),
        }),
        proof: proof.clone(),
    };
    let plain = ProofFile {
        extension: None,
        proof,
    };
    assert!(audit::verify_proof(&plain, &f.consortium, 2).is_ok());
    assert!(audit::verify_proof(&extended, &f.consortium, 2).is_ok());
    seeds.put("audit_file", "proof", &plain.to_bytes());
    seeds.put("audit_file", "proof-extended", &extended.to_bytes());

    // Evidence: two roots at size 4, a fork of sizes 4 and 8, two entries at seq 5.
    let mut forked = MemoryHashStore::new();
    let mut forked_leaves = Vec::new();
    for (seq, r) in changsha.iter().enumerate() {
        let r = if seq >= 2 {
            records[seq].clone()
        } else {
            r.clone()
        };
        let leaf = sign_entry(key, &encode_entry(&entry_of(0, seq as u64, r)));
        forked.append(&leaf).unwrap();
        forked_leaves.push(leaf);
    }
    let forked_cp = |size| Checkpoint {
        origin: key.name().to_owned(),
        size,
        root: merkle::root(size, &forked).unwrap(),
    };
    let sign = |cp: &Checkpoint| pb::SignedCheckpoint {
        note: note::sign_checkpoint(cp, key).unwrap(),
    };
    let evidence = [
        pb::Evidence {
            origin: "changsha".into(),
            kind: pb::evidence::Kind::ConflictingCheckpoints as i32,
            checkpoints: vec![sign(&checkpoint(4)), sign(&forked_cp(4))],
            ..Default::default()
        },
        pb::Evidence {
            origin: "changsha".into(),
            kind: pb::evidence::Kind::InconsistentCheckpoints as i32,
            checkpoints: vec![sign(&checkpoint(4)), sign(&forked_cp(8))],
            consistency_proof: merkle::seeded_consistency_proof(4, 8, &forked)
                .unwrap()
                .iter()
                .map(|h| h.0.to_vec())
                .collect(),
            ..Default::default()
        },
        pb::Evidence {
            origin: "changsha".into(),
            kind: pb::evidence::Kind::ConflictingEntries as i32,
            signed_entries: vec![leaves[5].clone(), forked_leaves[5].clone()],
            ..Default::default()
        },
    ];
    for item in &evidence {
        assert!(audit::verify_evidence(item, &f.consortium).is_ok());
    }
    seeds.put("audit_file", "evidence", &audit::encode_evidence(&evidence));
    let _ = signed4;

    // Identifiers and dates: every subject's and authority's, and the edge cases in ident.rs.
    let mut idents: Vec<String> = vec![
        "91350100M000100Y42".into(),
        "91110000710925462X".into(),
        "11010519491231002X".into(),
        "2026-02-28".into(),
    ];
    for r in &records {
        let s = r.subject.clone().unwrap_or_default();
        idents.extend([s.uscc, s.id_number]);
        idents.push(r.authority.clone().unwrap_or_default().uscc);
    }
    idents.retain(|s| !s.is_empty());
    idents.sort();
    idents.dedup();
    for (i, s) in idents.iter().enumerate() {
        seeds.put("ident", &format!("ident-{i}"), s.as_bytes());
    }

    // Keys: the consortium's verifier keys, one signer key, the Go note vector.
    seeds.put(
        "keys",
        "log-key",
        f.log_keys[0].public().encode().as_bytes(),
    );
    seeds.put(
        "keys",
        "witness-key",
        f.witness_keys[1].public().encode().as_bytes(),
    );
    seeds.put("keys", "signer-key", f.log_keys[2].encode().as_bytes());
    seeds.put(
        "keys",
        "go-vector",
        b"PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    );

    // Config files: the tests' fixtures and the annotated examples.
    let fixtures = repo.join("crates/credex-node/tests/fixtures/config");
    seeds.put("consortium", "fixture", f.consortium_toml.as_bytes());
    seeds.copy(
        "consortium",
        "tests-consortium",
        &fixtures.join("consortium.toml"),
    );
    seeds.copy(
        "consortium",
        "deploy-example",
        &repo.join("deploy/examples/consortium.toml"),
    );
    seeds.copy(
        "node_config",
        "tests-changsha",
        &fixtures.join("changsha.toml"),
    );
    seeds.copy(
        "node_config",
        "tests-minimal",
        &fixtures.join("minimal.toml"),
    );
    seeds.copy(
        "node_config",
        "deploy-example",
        &repo.join("deploy/examples/node.toml"),
    );
    let mut with_env = fs::read(fixtures.join("minimal.toml")).unwrap();
    with_env.extend_from_slice(
        b"\0CREDEX_PEERS=changsha=127.0.0.1:7001,hefei=hefei.example:7003\n\
          CREDEX_METRICS_LISTEN=\nCREDEX_LOG_FORMAT=json\nCREDEX_LISTEN=[::]:7002\n",
    );
    seeds.put("node_config", "tests-minimal-env", &with_env);

    // The structure-aware targets read their input through `arbitrary`; a few byte patterns
    // start them off, the generated records and logs inside do the rest.
    for target in [
        "record_structured",
        "checkpoint_signed",
        "merkle",
        "audit_signed",
    ] {
        for (name, bytes) in [
            ("zeros", vec![0u8; 64]),
            ("ones", vec![1u8; 256]),
            ("counting", (0..=255u8).collect()),
        ] {
            seeds.put(target, name, &bytes);
        }
    }
    println!(
        "wrote {} seed files under {}",
        seeds.written,
        seeds.corpus.display()
    );
}

struct Seeds {
    corpus: PathBuf,
    written: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.corpus.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
        self.written += 1;
    }

    fn copy(&mut self, target: &str, name: &str, from: &Path) {
        let bytes = fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        self.put(target, name, &bytes);
    }
}
