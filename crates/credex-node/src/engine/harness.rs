//! The engine as the direct tests build it: a temp-dir store, a fixed clock and generated keys
//! for two members, the node (Changsha) and a peer (Wuhan) whose entries it receives.

use std::sync::Arc;

use credex_core::date::FixedClock;
use credex_core::keys::{KeyAlgorithm, SigningKeyPair};
use credex_core::note::Checkpoint;
use credex_core::policy::RecognitionPolicy;
use credex_core::rules::Rules;
use credex_store::Store;
use tempfile::TempDir;

use super::{Engine, EngineParts, Member};

pub(super) const NODE: &str = "changsha";
pub(super) const PEER: &str = "wuhan";

/// An engine on its own store. The store lives as long as `dir`.
pub(super) struct TestEngine {
    pub dir: TempDir,
    pub engine: Arc<Engine>,
    pub clock: Arc<FixedClock>,
    /// The peer's log key, to sign entries and checkpoints it "sends".
    pub peer_key: SigningKeyPair,
}

fn keys(consortium: &str, city: &str) -> (SigningKeyPair, SigningKeyPair) {
    let origin = Checkpoint::origin_for(consortium, city);
    let log = SigningKeyPair::generate(&origin, KeyAlgorithm::Ed25519).expect("log key");
    let witness =
        SigningKeyPair::generate(&format!("{origin}/witness"), KeyAlgorithm::CosignatureV1)
            .expect("witness key");
    (log, witness)
}

/// The node of consortium `consortium` with `rules`, its clock at `clock`.
pub(super) fn test_engine(consortium: &str, rules: Rules, clock: FixedClock) -> TestEngine {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node_log, node_witness) = keys(consortium, NODE);
    let (peer_log, peer_witness) = keys(consortium, PEER);
    let member = |city: &str, log: &SigningKeyPair, witness: &SigningKeyPair| Member {
        city: city.to_owned(),
        checkpoint_origin: Checkpoint::origin_for(consortium, city),
        log_key: log.public(),
        witness_key: witness.public(),
    };
    let clock = Arc::new(clock);
    let engine = Engine::new(EngineParts {
        consortium: consortium.to_owned(),
        city: NODE.to_owned(),
        members: vec![
            member(NODE, &node_log, &node_witness),
            member(PEER, &peer_log, &peer_witness),
        ],
        log_key: node_log,
        witness_key: node_witness,
        policy: RecognitionPolicy::recognise_all(NODE),
        rules,
        clock: clock.clone(),
        store: Store::open(&dir.path().join("store")).expect("store"),
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
