//! The verifiers against hand-built logs (`crate::testing`, shared with credexctl's tests): every
//! tampering of a bundle, every kind of evidence and every replay failure, each refused with its
//! reason.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use credex_core::keys::SigningKeyPair;
use credex_core::merkle::{self, Hash, MemoryHashStore};
use credex_core::note::Checkpoint;
use credex_core::pb;
use expect_test::{Expect, expect};

use crate::testing::*;
use crate::*;

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
    let record = Records::new(0, 1).record();
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
    let mut generator = Records::new(0, 9);
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
    let record = Records::new(0, 99).record();
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
        extra ClAKCGNoYW5nc2hhEAQYhOiMqbczIAEqOQoMY2hhbmdzaGEtNy01EA…
        index 4
        T8i+iEtuaHtd8wJtWbcbUA22n3MmtNST1bOEiJRqVoI=

        credex/mid-yangtze/changsha
        5
        cF36NNtNx/FVyqsZFZV1bDrhokw2sMRuKCSS6aUAxYw=

        — credex/mid-yangtze/changsha jdyrX0rVFuFnzLZMkvbyEgSyTNxBS/…
        — credex/mid-yangtze/wuhan/witness pcyOjwAAAABpVUiASrYHeXxWX…
        — credex/mid-yangtze/hefei/witness 0hP7UgAAAABpVUiBmrAsAu0QK…
    "#]]
    .assert_eq(&layout(&plain.to_bytes()));

    let extended = ProofFile {
        extension: Some(log.extension(5, 6, &wuhan_hefei())),
        proof: log.proof(4, 5, &[]).proof,
    };
    let bytes = extended.to_bytes();
    expect![[r#"
        credex/tlog-proof-extension@v1
        A/VRcXaBWpdTZ5AyBD5Hes97J66EuWL3dFg5XpefqF0=
        byiijk3sRaNVo0viUdD2lUsmupAndvx+2uocKMIOKh8=
        T8i+iEtuaHtd8wJtWbcbUA22n3MmtNST1bOEiJRqVoI=

        credex/mid-yangtze/changsha
        6
        A0SyUfkoBIxiqFWYgf9SHcnvc1L1GfvYPSa+R3xgWEM=

        — credex/mid-yangtze/changsha jdyrX79SCKC39J+3eUDH/dnyeEbyvr…
        — credex/mid-yangtze/wuhan/witness pcyOjwAAAABpVUiAua2nhXa/F…
        — credex/mid-yangtze/hefei/witness 0hP7UgAAAABpVUiByiFtL2AoI…

        c2sp.org/tlog-proof@v1
        extra ClAKCGNoYW5nc2hhEAQYhOiMqbczIAEqOQoMY2hhbmdzaGEtNy01EA…
        index 4
        T8i+iEtuaHtd8wJtWbcbUA22n3MmtNST1bOEiJRqVoI=

        credex/mid-yangtze/changsha
        5
        cF36NNtNx/FVyqsZFZV1bDrhokw2sMRuKCSS6aUAxYw=

        — credex/mid-yangtze/changsha jdyrX0rVFuFnzLZMkvbyEgSyTNxBS/…
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
        extended, no signature lines: error: line 7: "credex/mid-yangtze/changsha jdyrX3690ZS1RMgTpzFxbmqoXxk99SqeQkbV…" is not a signature line "— <key name> <base64>"
        extended, no inner proof: error: line 10: the file ends where c2sp.org/tlog-proof@v1 should be
        extended, inner proof of another kind: error: line 10: "c2sp.org/tlog-proof@v2" is not "c2sp.org/tlog-proof@v1"
    "#]].assert_eq(&out);
    let oversized = vec![b'a'; MAX_PROOF_FILE_BYTES + 1];
    expect!["proof file is 1048577 bytes, more than the 1048576 allowed"]
        .assert_eq(&ProofFile::parse(&oversized).unwrap_err().to_string());
    expect![[r#"line 1: "{\"not\": \"a proof\"}" is not a credex audit file header (c2sp.org/tlog-proof@v1, credex/tlog-proof-extension@v1 or credex/equivocation-evidence@v1)"#]].assert_eq(&detect(b"{\"not\": \"a proof\"}\n").unwrap_err().to_string());
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
    let mut generator = Records::new(0, 99);
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
                Ok(r) => r.to_string(),
                Err(e) => format!("refused: {e}"),
            };
            format!("{name}: {result}\n")
        })
        .collect();
    expect![[r#"
        equal size, different roots: changsha, conflicting checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — two checkpoints of size 11 signed by the origin have roots Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw= and PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=
        forged: second signature damaged: refused: checkpoint 2: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
        forged: root replaced under the origin's signature: refused: checkpoint 2: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
        signed by another city's log key: refused: checkpoint 2: checkpoint origin "credex/mid-yangtze/wuhan" is not the log key's name "credex/mid-yangtze/changsha"
        the same checkpoint twice: refused: no conflict: no two of the checkpoints (sizes 11, 11) have one size and different roots
        different sizes claimed as conflicting: refused: no conflict: no two of the checkpoints (sizes 5, 11) have one size and different roots
        one checkpoint: refused: it holds 1 checkpoint, at least 2 are needed
        two entries at one seq: changsha, conflicting entries, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — two different entries for seq 4 signed by the origin, leaf hashes A/VRcXaBWpdTZ5AyBD5Hes97J66EuWL3dFg5XpefqF0= and AT+GMLG50fNuzJgQETCwTVHh4JMqRAGo4lZgbV41SFk=
        forged entry: refused: signed entry 2: signature does not verify under key credex/mid-yangtze/changsha+8ddcab5f
        the same entry twice: refused: no conflict: no two different entries share a seq (seqs 4, 4)
        entries at different seqs: refused: no conflict: no two different entries share a seq (seqs 4, 5)
        another city's entries: refused: signed entry 1: leaf is signed by key id abf5c54c, expected credex/mid-yangtze/changsha+8ddcab5f
        sizes 5 and 11, proof from the size-11 tree: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — the origin signed a tree of size 11 (root PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=) whose first 5 leaves have root fHpW1DMwdpmZn7dzBSdmNrsSmBwWI5byT90HCpYW/R0= by the consistency proof, and a tree of size 5 with root cF36NNtNx/FVyqsZFZV1bDrhokw2sMRuKCSS6aUAxYw=
        sizes 8 and 11 (a power of two), seeded proof from the size-11 tree, larger first: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — the origin signed a tree of size 11 (root PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=) whose first 8 leaves have root VcmkEaSnOYs7nhjlODduHmSoar7qmZcKPpxQeW2XBLw= by the consistency proof, and a tree of size 8 with root ywDPUTvB63MZDkGf4EM3uHI9XipKl1Xe1zfb0xeILjU=
        sizes 8 and 11, unseeded proof: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof has 1 hash, the length of no proof between two of the signed sizes (8, 11; a seeded proof from 8 to 11 has 2 hashes), so it proves nothing
        sizes 5 and 11, proof from the other tree: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof from size 5 to 11 does not reproduce the root signed at size 11 (it yields Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=, the origin signed PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=), so it says nothing about that tree's first 5 leaves: it proves nothing
        sizes 8 and 11, seeded proof from the other tree: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof from size 8 to 11 does not reproduce the root signed at size 11 (it yields Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=, the origin signed PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=), so it says nothing about that tree's first 8 leaves: it proves nothing
        sizes 5 and 11, no proof supplied: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof has 0 hashes, the length of no proof between two of the signed sizes (5, 11; a seeded proof from 5 to 11 has 5 hashes), so it proves nothing
        sizes 5 and 11, a malformed hash: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: NOT PROVEN — the checkpoints are signed by the origin, but the consistency proof is malformed (hash is 31 bytes, expected 32), so it proves nothing
        sizes 5, 8 and 11, proof from 8 to 11: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — the origin signed a tree of size 11 (root PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=) whose first 8 leaves have root VcmkEaSnOYs7nhjlODduHmSoar7qmZcKPpxQeW2XBLw= by the consistency proof, and a tree of size 8 with root ywDPUTvB63MZDkGf4EM3uHI9XipKl1Xe1zfb0xeILjU=
        inconsistent claimed, but the proof holds: refused: the consistency proof from size 5 to size 11 verifies: the checkpoints are consistent
        inconsistent claimed, but the seeded proof from 8 holds: refused: the consistency proof from size 8 to size 11 verifies: the checkpoints are consistent
        inconsistent claimed, but the unseeded proof from 8 holds: refused: the consistency proof from size 8 to size 11 verifies: the checkpoints are consistent
        inconsistent kind holding an equal-size conflict: changsha, inconsistent checkpoints, detected via sync:wuhan at 2026-01-01 00:00:00 +08:00: PROVEN — two checkpoints of size 11 signed by the origin have roots Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw= and PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=
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
    replay.finish().to_string()
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
        changsha: 11 entries replayed, 11 valid; tree root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=
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
        changsha: 11 entries replayed, 10 valid; tree root HP036DXIxM2P3cQdPYsw22vFWLuLaOWu+G4CrbRWT38=
        checkpoints: 3 held, 3 signed by the origin, 1 matching the tree, 0 consistency proofs between successive ones
        newest checkpoint matching the tree: size 3, 0 cosignatures from other members' witnesses; 8 entries after it
        FAILED entry 4: signature does not verify under key credex/mid-yangtze/changsha+8ddcab5f
        FAILED checkpoint of size 7: its signed root kl2O+ak1rgeW8I1Op+24u5c0phgN13liRLhH5bwt7ag= is not 3L2Trmz3UETP+igtGTxaL29UZLlwwyq7D6e3HA78tb0=, the root of the entries served
        FAILED checkpoint of size 11: its signed root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw= is not HP036DXIxM2P3cQdPYsw22vFWLuLaOWu+G4CrbRWT38=, the root of the entries served
        FAILED the log held, 11 entries with root HP036DXIxM2P3cQdPYsw22vFWLuLaOWu+G4CrbRWT38=, matches no checkpoint of size 11 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
        --- entries 5 and 6 swapped
        changsha: 11 entries replayed, 9 valid; tree root UZNDaBXuUPCN6rbhCOkjiQUx1+E43GdFnNXO6qGCJU4=
        checkpoints: 3 held, 3 signed by the origin, 1 matching the tree, 0 consistency proofs between successive ones
        newest checkpoint matching the tree: size 3, 0 cosignatures from other members' witnesses; 8 entries after it
        FAILED entry 5: it says seq 6
        FAILED entry 6: it says seq 5
        FAILED checkpoint of size 7: its signed root kl2O+ak1rgeW8I1Op+24u5c0phgN13liRLhH5bwt7ag= is not t8h+LPTMq3e666nMp2gUR36m21/3B53/JxdtEwbO60E=, the root of the entries served
        FAILED checkpoint of size 11: its signed root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw= is not UZNDaBXuUPCN6rbhCOkjiQUx1+E43GdFnNXO6qGCJU4=, the root of the entries served
        FAILED the log held, 11 entries with root UZNDaBXuUPCN6rbhCOkjiQUx1+E43GdFnNXO6qGCJU4=, matches no checkpoint of size 11 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
        --- a forked checkpoint in the history
        changsha: 11 entries replayed, 11 valid; tree root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=
        checkpoints: 4 held, 4 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
        newest checkpoint matching the tree: size 11, 0 cosignatures from other members' witnesses; 0 entries after it
        FAILED two checkpoints of size 11 signed by the origin have different roots Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw= and PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE=: the origin equivocated
        FAILED checkpoint of size 11: its signed root PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE= is not Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=, the root of the entries served
        --- a checkpoint with a damaged signature
        changsha: 11 entries replayed, 11 valid; tree root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=
        checkpoints: 4 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
        newest checkpoint matching the tree: size 11, 0 cosignatures from other members' witnesses; 0 entries after it
        FAILED checkpoint #3 of the history: signature by credex/mid-yangtze/changsha+8ddcab5f does not verify
        --- fewer entries served than checkpointed
        changsha: 8 entries replayed, 8 valid; tree root ywDPUTvB63MZDkGf4EM3uHI9XipKl1Xe1zfb0xeILjU=
        checkpoints: 3 held, 3 signed by the origin, 2 matching the tree, 1 consistency proof between successive ones
        newest checkpoint matching the tree: size 7, 0 cosignatures from other members' witnesses; 1 entry after it
        FAILED checkpoint of size 11 covers more than the 8 entries served
        FAILED the log held, 8 entries with root ywDPUTvB63MZDkGf4EM3uHI9XipKl1Xe1zfb0xeILjU=, matches no checkpoint of size 8 the origin signed (none of that size): the node holds a root its origin never signed
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
    let mut generator = Records::new(0, 99);
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
        changsha: 20 entries replayed, 20 valid; tree root SFpyTdDogXsobILB26CwHYaXPThWfd6SQ82Wfo4ASdI=
        checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
        newest checkpoint matching the tree: size 15, 0 cosignatures from other members' witnesses; 5 entries after it
        FAILED the log held, 20 entries with root SFpyTdDogXsobILB26CwHYaXPThWfd6SQ82Wfo4ASdI=, matches no checkpoint of size 20 the origin signed (none of that size): the node holds a root its origin never signed
        --- the same, with B's checkpoint of size 20
        changsha: 20 entries replayed, 20 valid; tree root SFpyTdDogXsobILB26CwHYaXPThWfd6SQ82Wfo4ASdI=
        checkpoints: 4 held, 4 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
        newest checkpoint matching the tree: size 15, 0 cosignatures from other members' witnesses; 5 entries after it
        FAILED checkpoint of size 20: its signed root 43fhq8gZfbWFX079WlMhsRftWFwob0/zbPva1Io7vuY= is not SFpyTdDogXsobILB26CwHYaXPThWfd6SQ82Wfo4ASdI=, the root of the entries served
        FAILED the log held, 20 entries with root SFpyTdDogXsobILB26CwHYaXPThWfd6SQ82Wfo4ASdI=, matches no checkpoint of size 20 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
        --- all of A, its last checkpoint at 15
        changsha: 20 entries replayed, 20 valid; tree root C38nHuGR7+7u9gG5DeoqqaIk+2eVgZ8TS3ButwRUOxA=
        checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
        newest checkpoint matching the tree: size 15, 0 cosignatures from other members' witnesses; 5 entries after it
        FAILED the log held, 20 entries with root C38nHuGR7+7u9gG5DeoqqaIk+2eVgZ8TS3ButwRUOxA=, matches no checkpoint of size 20 the origin signed (none of that size): the node holds a root its origin never signed
        --- all of A and its checkpoint of size 20
        changsha: 20 entries replayed, 20 valid; tree root C38nHuGR7+7u9gG5DeoqqaIk+2eVgZ8TS3ButwRUOxA=
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
        replay.finish().to_string()
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
        changsha: 11 entries replayed, 11 valid; tree root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=
        checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
        newest checkpoint matching the tree: size 11, 2 cosignatures from other members' witnesses (wuhan, hefei); 0 entries after it
        --- relisted: another root at size 11
        changsha: 11 entries replayed, 11 valid; tree root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=
        checkpoints: 3 held, 3 signed by the origin, 2 matching the tree, 1 consistency proof between successive ones
        newest checkpoint matching the tree: size 7, 0 cosignatures from other members' witnesses; 4 entries after it
        FAILED checkpoint of size 11: its signed root PNchx53GxiOP4zoGRY+Fjs2LrVo/7Wp4vyHhmKeBQeE= is not Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=, the root of the entries served
        FAILED the log held, 11 entries with root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=, matches no checkpoint of size 11 the origin signed (1 of that size, with another root): the node holds a root its origin never signed
        --- relisted: size 11, the node holds evidence
        changsha: 11 entries replayed, 11 valid; tree root Fqp8aY4sGbWfSNbdRRkWItICaUsBm3uAJXV9C4k0FNw=
        checkpoints: 3 held, 3 signed by the origin, 3 matching the tree, 2 consistency proofs between successive ones
        newest checkpoint matching the tree: size 11, 0 cosignatures from other members' witnesses; 0 entries after it
        FAILED origin is marked forked at this node; 2 pieces of evidence (`credexctl audit evidence --origin changsha` exports them for `audit verify`)
    "#]].assert_eq(&out);
}
