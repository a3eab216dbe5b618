//! The Merkle proofs every proof bundle, evidence file and checkpoint exchange rests on:
//! inclusion and consistency verification and `consistency_roots` on any sizes, indexes and
//! paths (sizes up to `u64::MAX`, as a signed checkpoint may claim), and against a real tree
//! of up to 255 leaves: its own proofs verify, and no other path does.
#![no_main]

use arbitrary::Arbitrary;
use credex_core::merkle::{self, Hash, MemoryHashStore};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    leaves: u8,
    index: u64,
    old: u64,
    new: u64,
    leaf: [u8; 32],
    old_root: [u8; 32],
    new_root: [u8; 32],
    proof: Vec<[u8; 32]>,
}

fuzz_target!(|input: Input| {
    if input.proof.len() > 80 {
        return;
    }
    let proof: Vec<Hash> = input.proof.iter().copied().map(Hash).collect();
    let (index, old, new) = (input.index, input.old, input.new);

    // Arbitrary claims: never a panic, and the empty-proof cases decided by the roots alone.
    let _ = merkle::verify_inclusion(&proof, index, new, Hash(input.leaf), Hash(input.new_root));
    let consistent =
        merkle::verify_consistency(&proof, old, Hash(input.old_root), new, Hash(input.new_root));
    if consistent.is_ok() && old == new {
        assert!(proof.is_empty() && input.old_root == input.new_root);
    }
    if let Ok((old_root, new_root)) = merkle::consistency_roots(&proof, old, new) {
        assert!(old < new);
        // The roots a seeded proof implies are roots it verifies against.
        let rfc = if old.is_power_of_two() {
            &proof[1..]
        } else {
            &proof[..]
        };
        if let Err(e) = merkle::verify_consistency(rfc, old, old_root, new, new_root) {
            panic!("consistency_roots gives roots the proof does not verify: {e}");
        }
    }

    // A real tree.
    let n = u64::from(input.leaves);
    let mut tree = MemoryHashStore::new();
    for i in 0..n {
        tree.append(&i.to_le_bytes()).unwrap();
    }
    if n == 0 {
        return;
    }
    let i = index % n;
    let leaf = merkle::leaf_hash(&i.to_le_bytes());
    let real = merkle::inclusion_proof(i, n, &tree).unwrap();
    merkle::verify_inclusion(&real, i, n, leaf, tree.root()).unwrap();
    if merkle::verify_inclusion(&proof, i, n, leaf, tree.root()).is_ok() {
        assert_eq!(proof, real, "only the real path proves inclusion");
    }

    let (a, b) = (old % (n + 1), new % (n + 1));
    let (a, b) = (a.min(b), a.max(b));
    let root_a = merkle::root(a, &tree).unwrap();
    let real = merkle::consistency_proof(a, b, &tree).unwrap();
    merkle::verify_consistency(&real, a, root_a, b, merkle::root(b, &tree).unwrap()).unwrap();
    if merkle::verify_consistency(&proof, a, root_a, b, merkle::root(b, &tree).unwrap()).is_ok() {
        assert_eq!(proof, real, "only the real proof shows consistency");
    }
    if 0 < a && a < b {
        let seeded = merkle::seeded_consistency_proof(a, b, &tree).unwrap();
        let (ra, rb) = merkle::consistency_roots(&seeded, a, b).unwrap();
        assert_eq!((ra, rb), (root_a, merkle::root(b, &tree).unwrap()));
    }
});
