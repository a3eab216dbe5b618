//! The engine as the direct tests build it: a temp-dir store, a fixed clock and generated keys
//! for four members: the node (Changsha), a peer (Wuhan) whose entries it receives, and two
//! that send nothing (their witnesses' clocks are fed in by the clock tests).

use std::sync::Arc;

use credex_core::consortium;
use credex_core::date::FixedClock;
use credex_core::entry;
use credex_core::ident;
use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
use credex_core::merkle::{self, MemoryHashStore};
use credex_core::note::{self, Checkpoint, Cosignature};
use credex_core::pb;
use credex_core::policy::RecognitionPolicy;
use credex_core::rules::Rules;
use credex_store::{Store, StoreOptions};
use tempfile::TempDir;

use super::checkpoints::SentProof;
use super::index::IndexOutcome;
use super::ingest::{Inbox, IngestOutcome};
use super::{Engine, EngineParts, Member};

pub(crate) const NODE: &str = "changsha";
pub(crate) const PEER: &str = "wuhan";
/// Members of the test consortium besides the two, which send nothing.
const SILENT: [&str; 2] = ["hefei", "nanchang"];

/// An engine on its own store. The store lives as long as `dir`.
pub(crate) struct TestEngine {
    pub dir: TempDir,
    pub engine: Arc<Engine>,
    pub clock: Arc<FixedClock>,
    /// The peer's log key, to sign entries and checkpoints it "sends".
    pub peer_key: SigningKeyPair,
}

fn keys(name: &str, city: &str) -> (SigningKeyPair, SigningKeyPair) {
    let log = SigningKeyPair::generate(&consortium::origin(name, city), KeyAlgorithm::Ed25519)
        .expect("log key");
    let witness = SigningKeyPair::generate(
        &consortium::witness_name(name, city),
        KeyAlgorithm::CosignatureV1,
    )
    .expect("witness key");
    (log, witness)
}

/// Witness `city`'s cosignature of the node's checkpoint, made when its clock read
/// `seconds_behind` the node's: what the clock checks learn witnesses' clocks from
/// (`Engine::note_witness_clocks`).
pub(crate) fn cosigned_behind(engine: &Engine, city: &str, seconds_behind: i64) -> Cosignature {
    Cosignature {
        witness: consortium::witness_name(&engine.consortium, city),
        key_id: 0,
        timestamp: u64::try_from(engine.clock.now_millis() / 1000 - seconds_behind)
            .expect("a time after 1970"),
    }
}

/// The value of the node's gauge or counter `name` (its one series, labelled with its city), as
/// its `/metrics` serves it.
pub(crate) fn metric(engine: &Engine, name: &str) -> i64 {
    let series = format!("{name}{{city=\"{NODE}\"}} ");
    engine
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in the node's metrics"))
}

/// The node of consortium `consortium` with `rules`, its clock at `clock`.
pub(crate) fn test_engine(consortium: &str, rules: Rules, clock: FixedClock) -> TestEngine {
    test_engine_with(consortium, rules, clock, &StoreOptions::default())
}

/// [`test_engine`] on a store opened with `options`.
pub(super) fn test_engine_with(
    consortium: &str,
    rules: Rules,
    clock: FixedClock,
    options: &StoreOptions,
) -> TestEngine {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node_log, node_witness) = keys(consortium, NODE);
    let (peer_log, peer_witness) = keys(consortium, PEER);
    // Division and address are the consortium file's; the engine takes its rules apart.
    let member = |city: &str, log: &SigningKeyPair, witness: &SigningKeyPair| Member {
        city: city.to_owned(),
        name_zh: city.to_owned(),
        division: String::new(),
        log_key: log.public(),
        witness_key: witness.public(),
        address: String::new(),
    };
    let clock = Arc::new(clock);
    let engine = Engine::new(EngineParts {
        consortium: consortium.to_owned(),
        city: NODE.to_owned(),
        members: [
            (NODE, &node_log, &node_witness),
            (PEER, &peer_log, &peer_witness),
        ]
        .into_iter()
        .map(|(city, log, witness)| member(city, log, witness))
        // Two more members, silent, whose witnesses the clock checks count on.
        .chain(SILENT.iter().map(|city| {
            let (log, witness) = keys(consortium, city);
            member(city, &log, &witness)
        }))
        .collect(),
        log_key: node_log,
        witness_key: node_witness,
        policy: RecognitionPolicy::recognise_all(NODE),
        rules,
        clock: clock.clone(),
        store: Store::open_with(&dir.path().join("store"), options).expect("store"),
        batch_max_entries: 256,
    })
    .expect("engine");
    TestEngine {
        dir,
        engine,
        clock,
        peer_key: peer_log,
    }
}

/// Feeds `records` in as the peer's log from seq 0, as a sync stream would: each entry signed
/// with `peer_key` and logged at `logged_at`, under one checkpoint over them all; then runs the
/// indexer. What the commit did, and what was indexed in all: on arrival (a run of at most
/// `ingest::INDEX_ON_ARRIVAL` entries) or by the indexer behind it (a longer one).
pub(crate) async fn receive_from_peer(
    engine: &Arc<Engine>,
    peer_key: &SigningKeyPair,
    records: Vec<pb::CreditRecord>,
    logged_at: i64,
) -> (IngestOutcome, IndexOutcome) {
    let entries = records.into_iter().map(|r| (r, logged_at)).collect();
    receive_logged_from_peer(engine, peer_key, entries).await
}

/// [`receive_from_peer`] with each record logged at its own time.
pub(crate) async fn receive_logged_from_peer(
    engine: &Arc<Engine>,
    peer_key: &SigningKeyPair,
    entries: Vec<(pb::CreditRecord, i64)>,
) -> (IngestOutcome, IndexOutcome) {
    let mut tree = MemoryHashStore::new();
    let leaves: Vec<Vec<u8>> = entries
        .into_iter()
        .enumerate()
        .map(|(seq, (record, logged_at))| {
            let entry = pb::Entry {
                origin: PEER.to_owned(),
                seq: seq as u64,
                logged_at,
                schema_version: credex_proto::SCHEMA_VERSION,
                record: Some(record),
            };
            let leaf = entry::sign_entry(peer_key, &entry::encode_entry(&entry));
            tree.append(&leaf).expect("append");
            leaf
        })
        .collect();
    let size = leaves.len() as u64;
    let checkpoint = Checkpoint {
        origin: peer_key.name().to_owned(),
        size,
        root: merkle::root(size, &tree).expect("root"),
    };
    let note = note::sign_checkpoint(&checkpoint, peer_key).expect("sign");
    engine
        .receive_checkpoint(PEER, &note, &SentProof::default(), "hefei")
        .await
        .expect("checkpoint");
    let mut inbox = Inbox::new(PEER, 0, leaves);
    let committed = engine.commit(&mut inbox, "hefei").await.expect("commit");
    let behind = engine.index_all().await.expect("index");
    let indexed = IndexOutcome {
        indexed: committed.indexed + behind.indexed,
        invalid: committed.invalid + behind.invalid,
    };
    (committed, indexed)
}

/// A USCC from its first 17 characters and the right check character.
pub(super) fn uscc(first17: &str) -> String {
    let check = ident::uscc_check_char(first17).expect("17 uscc characters");
    format!("{first17}{check}")
}

/// A company with the USCC whose first 17 characters are `first17`.
pub(crate) fn company(first17: &str) -> pb::Subject {
    pb::Subject {
        kind: pb::SubjectKind::LegalPerson as i32,
        name: "长沙某某建材有限公司".into(),
        uscc: uscc(first17),
        ..Default::default()
    }
}

/// 失信被执行人 about `subject`, version 1, decided on 2026-04-02 by a court of `division` (six
/// digits), in force 2026-04-03 … 2028-04-02.
pub(crate) fn dishonest_debtor(
    record_id: &str,
    subject: pb::Subject,
    division: &str,
) -> pb::CreditRecord {
    pb::CreditRecord {
        record_id: record_id.to_owned(),
        version: 1,
        subject: Some(subject),
        list: pb::ListKind::Black as i32,
        category: "court.dishonest_debtor".into(),
        severity: pb::Severity::Serious as i32,
        authority: Some(pb::Authority {
            name: "人民法院".into(),
            uscc: uscc(&format!("11{division}006123456")),
        }),
        decision: Some(pb::Decision {
            document_number: "（2026）执1234号".into(),
            decided_on: "2026-04-02".into(),
            facts: "有履行能力而拒不履行生效法律文书确定的义务".into(),
            ..Default::default()
        }),
        publication: Some(pb::Publication {
            starts_on: "2026-04-03".into(),
            ends_on: "2028-04-02".into(),
        }),
        status: Some(pb::RecordStatus {
            kind: pb::StatusKind::Active as i32,
            ..Default::default()
        }),
        data_source: "信用信息共享平台".into(),
        remarks: String::new(),
    }
}
