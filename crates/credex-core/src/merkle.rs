//! RFC 6962 / RFC 9162 Merkle trees over each origin's log: leaf hashing, roots, inclusion and
//! consistency proofs.
//!
//! The tree hashes live in the Go sumdb layout (`tlog_tiles`, a port of
//! `golang.org/x/mod/sumdb/tlog`): appending leaf `n` stores its leaf hash and the hash of every
//! subtree that leaf completes, each at its *stored-hash index*. A root or a proof then reads
//! O(log n) stored hashes and recomputes nothing else, so a store keeps them as plain
//! `index → hash` keys and implements [`HashReader`]. [`MemoryHashStore`] is the in-memory
//! version for tests, offline verification and benchmarks.
//!
//! The wrappers here add what `tlog_tiles` leaves to its callers: range checks that return
//! errors instead of panicking, a defence against a [`HashReader`] that answers with the wrong
//! number of hashes (`tlog_tiles` asserts on that), an exact proof-length check before any
//! hashing (so an oversized proof costs nothing), and the RFC 9162 edge cases spelled out in
//! [`verify_consistency`].

use std::cell::Cell;

use tlog_tiles::tlog::{self, EMPTY_HASH, Error as TlogError};
pub use tlog_tiles::tlog::{Hash, HashReader};

/// Length of every tree hash (SHA-256).
pub const HASH_SIZE: usize = 32;

/// Largest tree size the proving functions accept. Stored-hash indexes grow to about twice the
/// leaf count and are computed in `u64`; 2^62 leaves keeps every index far from overflow, and no
/// credex log comes anywhere near it.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Why a tree hash, proof or proof verification failed.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("{kind} proof length is {got}, expected {want} hashes")]
    WrongProofLength {
        kind: ProofKind,
        got: usize,
        want: usize,
    },
    #[error(
        "inclusion proof for leaf {index} does not lead to the root of the tree of size {size}"
    )]
    InclusionMismatch { index: u64, size: u64 },
    #[error("consistency proof from size {old} to size {new} does not match the two roots")]
    ConsistencyMismatch { old: u64, new: u64 },
    #[error("root of the empty tree is {got}, expected {EMPTY_HASH}")]
    EmptyTreeRoot { got: Hash },
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("tree size {size} exceeds the maximum {MAX_TREE_SIZE}")]
    TreeTooLarge { size: u64 },
    #[error("reading tree hashes from the store: {0}")]
    Store(#[source] TlogError),
    #[error("hash store returned {got} hashes for {want} indexes")]
    StoreShortRead { want: usize, got: usize },
    #[error("hash is {len} bytes, expected {HASH_SIZE}")]
    MalformedHash { len: usize },
}

/// Which kind of proof an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    Inclusion,
    Consistency,
}

impl std::fmt::Display for ProofKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProofKind::Inclusion => "inclusion",
            ProofKind::Consistency => "consistency",
        })
    }
}

/// The RFC 6962 leaf hash, SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    tlog::record_hash(leaf)
}

/// [`leaf_hash`] of the concatenation of `parts`, hashed piece by piece (a leaf too large to
/// copy into one buffer).
pub fn leaf_hash_of_parts(parts: &[&[u8]]) -> Hash {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update([0u8]);
    for part in parts {
        hash.update(part);
    }
    Hash(hash.finalize().into())
}

/// The root of the empty tree, SHA-256("") (RFC 9162 section 2.1.1).
pub fn empty_root() -> Hash {
    EMPTY_HASH
}

/// Reads a hash from its 32 raw bytes, as carried in protobuf `bytes` fields.
pub fn hash_from_bytes(b: &[u8]) -> Result<Hash, ProofError> {
    <[u8; HASH_SIZE]>::try_from(b)
        .map(Hash)
        .map_err(|_| ProofError::MalformedHash { len: b.len() })
}

/// The stored hashes `(index, hash)` that appending leaf number `n` adds, given a reader holding
/// all hashes for leaves < n. The indexes are consecutive, starting at the first index not yet
/// used by a tree of `n` leaves; a store writes them in the same batch as the leaf.
pub fn hashes_to_store<R: HashReader>(
    n: u64,
    leaf: &[u8],
    reader: &R,
) -> Result<Vec<(u64, Hash)>, ProofError> {
    check_size(n.saturating_add(1))?;
    let hashes = read_with(reader, |r| tlog::stored_hashes(n, leaf, r))?;
    let first = tlog::stored_hash_index(0, n);
    Ok((first..).zip(hashes).collect())
}

/// The root of the tree of the first `size` leaves.
pub fn root<R: HashReader>(size: u64, reader: &R) -> Result<Hash, ProofError> {
    check_size(size)?;
    read_with(reader, |r| tlog::tree_hash(size, r))
}

/// The audit path (RFC 9162 section 2.1.3) proving that leaf `index` is in the tree of `size`.
pub fn inclusion_proof<R: HashReader>(
    index: u64,
    size: u64,
    reader: &R,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    check_size(size)?;
    read_with(reader, |r| tlog::prove_record(size, index, r))
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` whose root is `root`.
///
/// The audit path does not commit to `size` by itself (trees whose paths to `index` have the same
/// shape accept the same proof): `size` and `root` must come from the same signed checkpoint.
/// In a tree of size 1 the proof is empty and the root is the leaf hash.
pub fn verify_inclusion(
    proof: &[Hash],
    index: u64,
    size: u64,
    leaf_hash: Hash,
    root: Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // A signed checkpoint may claim any u64 size; the path length is only defined below the
    // limit (past 2^63 the split level is 64 and the length computation would overflow).
    check_size(size)?;
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            kind: ProofKind::Inclusion,
            got: proof.len(),
            want,
        });
    }
    tlog::check_record(&proof.to_vec(), size, root, index, leaf_hash)
        .map_err(|_| ProofError::InclusionMismatch { index, size })
}

/// The consistency proof (RFC 9162 section 2.1.4) that the tree of size `old` is a prefix of the
/// tree of size `new`. Empty when `old` is 0 or equal to `new`; see [`verify_consistency`].
pub fn consistency_proof<R: HashReader>(
    old: u64,
    new: u64,
    reader: &R,
) -> Result<Vec<Hash>, ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    check_size(new)?;
    if old == 0 {
        // tlog_tiles refuses n = 0; the empty tree needs no proof.
        return Ok(Vec::new());
    }
    read_with(reader, |r| tlog::prove_tree(new, old, r))
}

/// Verifies that the tree of size `old` with root `old_root` is a prefix of the tree of size
/// `new` with root `new_root`.
///
/// RFC 9162 defines consistency proofs only for 0 < old < new, and its verification algorithm
/// fails on an empty proof. The two remaining cases are decided as transparency-dev/merkle does,
/// with one stricter check:
/// - `old == new`: the proof must be empty and the roots equal (two different roots of one size
///   are the equivocation this check exists to catch);
/// - `old == 0`: the proof must be empty, the empty tree being a prefix of every tree; unlike
///   transparency-dev/merkle, `old_root` must be SHA-256(""), the one root a tree of size 0 has
///   (and so must `new_root` when `new` is 0 too).
///
/// `tlog_tiles::check_tree` itself already rejects an empty proof for old < new and a non-empty
/// one for old == new; the length is checked here first so a long proof is refused unhashed.
pub fn verify_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    check_size(new)?;
    let want = consistency_proof_len(old, new);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            kind: ProofKind::Consistency,
            got: proof.len(),
            want,
        });
    }
    if old == 0 {
        if old_root != EMPTY_HASH {
            return Err(ProofError::EmptyTreeRoot { got: old_root });
        }
        if new == 0 && new_root != EMPTY_HASH {
            return Err(ProofError::EmptyTreeRoot { got: new_root });
        }
        return Ok(());
    }
    tlog::check_tree(&proof.to_vec(), new, new_root, old, old_root)
        .map_err(|_| ProofError::ConsistencyMismatch { old, new })
}

/// The consistency proof from `old` to `new` in *seeded* form, for evidence and gossip: the RFC
/// 9162 proof, preceded, when `old` is a power of two, by the root of the first `old` leaves.
///
/// RFC 9162 leaves that hash out of the proof when `old` is a power of two, because a verifier
/// who trusts its old root can supply it. A proof meant to show that the larger tree's history
/// *differs* from the old root must carry it: [`consistency_roots`] then computes both roots
/// from the proof alone. Empty when `old` is 0 or equal to `new`.
pub fn seeded_consistency_proof<R: HashReader>(
    old: u64,
    new: u64,
    reader: &R,
) -> Result<Vec<Hash>, ProofError> {
    let mut proof = consistency_proof(old, new, reader)?;
    if old > 0 && old < new && old.is_power_of_two() {
        proof.insert(0, root(old, reader)?);
    }
    Ok(proof)
}

/// The roots of the tree of size `old` and of the tree of size `new` that a seeded consistency
/// proof (see [`seeded_consistency_proof`]) commits to, computed from the proof alone (RFC 9162
/// section 2.1.4.2, which derives both roots from one proof). `0 < old < new` is required.
///
/// This is what makes an equivocation of different sizes provable offline: if the proof yields
/// the root of a checkpoint the origin signed at `new`, and a root at `old` that differs from
/// another checkpoint the origin signed at `old`, the origin signed two histories. A proof that
/// does not yield the signed `new` root proves nothing.
pub fn consistency_roots(proof: &[Hash], old: u64, new: u64) -> Result<(Hash, Hash), ProofError> {
    if old >= new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == 0 {
        return Err(ProofError::EmptyTreeRoot { got: EMPTY_HASH });
    }
    check_size(new)?;
    let want = consistency_proof_len(old, new) + usize::from(old.is_power_of_two());
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            kind: ProofKind::Consistency,
            got: proof.len(),
            want,
        });
    }
    let node = |l: &Hash, r: &Hash| tlog::node_hash(*l, *r);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (proof[0], proof[0]);
    for c in &proof[1..] {
        if snode == 0 {
            return Err(ProofError::ConsistencyMismatch { old, new });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::ConsistencyMismatch { old, new });
    }
    Ok((fr, sr))
}

/// Length of the audit path for `index < size`: one hash per level below the point where the
/// paths to `index` and to the last leaf split, plus one per complete left subtree above it
/// (transparency-dev/merkle `decompInclProof`).
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = decompose_inclusion(index, size);
    (inner + border) as usize
}

fn decompose_inclusion(index: u64, size: u64) -> (u32, u32) {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner, border)
}

/// Length of the consistency proof from `old` to `new`, `old <= new`: the inclusion path of the
/// old tree's last leaf, less the levels inside the largest complete subtree ending there, plus
/// that subtree's root unless it is the whole old tree (then the verifier knows it already).
fn consistency_proof_len(old: u64, new: u64) -> usize {
    if old == 0 || old == new {
        return 0;
    }
    let (inner, border) = decompose_inclusion(old - 1, new);
    let shift = old.trailing_zeros();
    let seed = usize::from(!old.is_power_of_two());
    seed + (inner - shift + border) as usize
}

fn check_size(size: u64) -> Result<(), ProofError> {
    if size > MAX_TREE_SIZE {
        return Err(ProofError::TreeTooLarge { size });
    }
    Ok(())
}

/// Runs a `tlog_tiles` function over `reader`, turning a reply of the wrong length (on which
/// `tlog_tiles` would panic) into an error.
fn read_with<R: HashReader, T>(
    reader: &R,
    f: impl FnOnce(&CheckedReader<'_, R>) -> Result<T, TlogError>,
) -> Result<T, ProofError> {
    let checked = CheckedReader {
        inner: reader,
        short: Cell::new(None),
    };
    // The callers validated every input, so an error can only come from the reader.
    f(&checked).map_err(|e| match checked.short.get() {
        Some((want, got)) => ProofError::StoreShortRead { want, got },
        None => ProofError::Store(e),
    })
}

struct CheckedReader<'a, R> {
    inner: &'a R,
    short: Cell<Option<(usize, usize)>>,
}

impl<R: HashReader> HashReader for CheckedReader<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let hashes = self.inner.read_hashes(indexes)?;
        if hashes.len() != indexes.len() {
            self.short.set(Some((indexes.len(), hashes.len())));
            return Err(TlogError::IndexesNotInTree);
        }
        Ok(hashes)
    }
}

/// In-memory stored-hash store: for tests, the CLI's offline verification and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct MemoryHashStore {
    /// Every stored hash, at its stored-hash index.
    hashes: Vec<Hash>,
    size: u64,
    /// Root of the current tree, kept so [`MemoryHashStore::root`] cannot fail; `None` while
    /// empty because `Hash::default()` is all zeros, not the empty-tree root.
    root: Option<Hash>,
}

impl MemoryHashStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf and returns its index.
    pub fn append(&mut self, leaf: &[u8]) -> Result<u64, ProofError> {
        let index = self.size;
        let new = hashes_to_store(index, leaf, self)?;
        self.hashes.extend(new.into_iter().map(|(_, h)| h));
        self.size += 1;
        self.root = Some(root(self.size, self)?);
        Ok(index)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root of the tree of all leaves appended so far.
    pub fn root(&self) -> Hash {
        self.root.unwrap_or(EMPTY_HASH)
    }
}

impl HashReader for MemoryHashStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i).copied())
                    .ok_or(TlogError::IndexesNotInTree)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use expect_test::{Expect, expect};
    use proptest::prelude::*;

    use super::*;

    fn h(hex_str: &str) -> Hash {
        hash_from_bytes(&hex::decode(hex_str).unwrap()).unwrap()
    }

    fn hs(hex_strs: &[&str]) -> Vec<Hash> {
        hex_strs.iter().map(|s| h(s)).collect()
    }

    // The RFC 6962 test tree of transparency-dev/merkle (testonly/constants.go), also used by
    // Certificate Transparency and Trillian.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    // RootHashes(): the root of the tree of the first `size` leaves, by size.
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    // NodeHashes()[0]: the leaf hashes.
    const LEAF_HASHES: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ];

    fn rfc6962_store() -> MemoryHashStore {
        let mut store = MemoryHashStore::new();
        for leaf in LEAVES {
            store.append(&hex::decode(leaf).unwrap()).unwrap();
        }
        store
    }

    #[test]
    fn rfc6962_leaf_hashes_and_roots_match_published_vectors() {
        assert_eq!(empty_root(), h(ROOTS[0]));
        assert_eq!(MemoryHashStore::new().root(), h(ROOTS[0]));
        let mut store = MemoryHashStore::new();
        for (i, leaf) in LEAVES.iter().enumerate() {
            let leaf = hex::decode(leaf).unwrap();
            assert_eq!(leaf_hash(&leaf), h(LEAF_HASHES[i]), "leaf {i}");
            assert_eq!(store.append(&leaf).unwrap(), i as u64);
            assert_eq!(store.size(), i as u64 + 1);
            assert_eq!(store.root(), h(ROOTS[i + 1]), "root after {} leaves", i + 1);
        }
        for (size, want) in ROOTS.iter().enumerate() {
            assert_eq!(root(size as u64, &store).unwrap(), h(want), "root({size})");
        }
    }

    #[test]
    fn rfc6962_inclusion_proofs_match_published_vectors() {
        // transparency-dev/merkle proof/verify_test.go `inclusionProofs` (0-based indexes here).
        let vectors: [(u64, u64, Vec<Hash>); 5] = [
            (0, 1, vec![]),
            (
                0,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                5,
                8,
                hs(&[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                2,
                3,
                hs(&["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            ),
            (
                1,
                5,
                hs(&[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
        ];
        let store = rfc6962_store();
        for (index, size, want) in vectors {
            let proof = inclusion_proof(index, size, &store).unwrap();
            assert_eq!(proof, want, "proof of leaf {index} in tree {size}");
            let leaf = h(LEAF_HASHES[index as usize]);
            verify_inclusion(&proof, index, size, leaf, h(ROOTS[size as usize])).unwrap();
        }
    }

    #[test]
    fn rfc6962_consistency_proofs_match_published_vectors() {
        // transparency-dev/merkle proof/verify_test.go `consistencyProofs`.
        let vectors: [(u64, u64, Vec<Hash>); 5] = [
            (1, 1, vec![]),
            (
                1,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                6,
                8,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                2,
                5,
                hs(&[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
            (
                6,
                7,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
        ];
        let store = rfc6962_store();
        for (old, new, want) in vectors {
            let proof = consistency_proof(old, new, &store).unwrap();
            assert_eq!(proof, want, "proof from {old} to {new}");
            let (old_root, new_root) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
            verify_consistency(&proof, old, old_root, new, new_root).unwrap();
        }
    }

    /// What `tlog_tiles` itself does at the edges the wrappers rely on or cover for.
    #[test]
    fn tlog_tiles_edge_behaviour() {
        let store = rfc6962_store();
        let (r1, r2) = (h(ROOTS[1]), h(ROOTS[2]));
        // A size-1 tree: empty audit path, the root is the leaf hash.
        assert!(tlog::check_record(&vec![], 1, r1, 0, r1).is_ok());
        // RFC 9162 requires a non-empty proof for 0 < old < new: tlog_tiles rejects an empty one.
        assert!(tlog::check_tree(&vec![], 2, r2, 1, r1).is_err());
        // old == new: only the empty proof, only equal roots.
        assert!(tlog::check_tree(&vec![], 2, r2, 2, r2).is_ok());
        assert!(tlog::check_tree(&vec![r2], 2, r2, 2, r2).is_err());
        // Size 0 and out-of-range indexes are refused (the wrappers answer them first).
        assert!(tlog::prove_tree(8, 0, &store).is_err());
        assert!(tlog::check_tree(&vec![], 8, h(ROOTS[8]), 0, empty_root()).is_err());
        assert!(tlog::prove_record(8, 8, &store).is_err());
    }

    fn check<T: std::fmt::Debug>(results: &[(&str, Result<T, ProofError>)], expect: Expect) {
        let rendered: String = results
            .iter()
            .map(|(case, r)| match r {
                Ok(v) => format!("{case}: ok {v:?}\n"),
                Err(e) => format!("{case}: {e}\n"),
            })
            .collect();
        expect.assert_eq(&rendered);
    }

    #[test]
    fn proving_edge_cases() {
        let store = rfc6962_store();
        check(
            &[
                ("inclusion 0 in 0", inclusion_proof(0, 0, &store)),
                ("inclusion 0 in 1", inclusion_proof(0, 1, &store)),
                ("inclusion 8 in 8", inclusion_proof(8, 8, &store)),
                ("inclusion 9 in 8", inclusion_proof(9, 8, &store)),
                ("inclusion beyond store", inclusion_proof(0, 9, &store)),
                ("consistency 0 to 0", consistency_proof(0, 0, &store)),
                ("consistency 0 to 8", consistency_proof(0, 8, &store)),
                ("consistency 8 to 8", consistency_proof(8, 8, &store)),
                ("consistency 5 to 3", consistency_proof(5, 3, &store)),
                ("consistency beyond store", consistency_proof(3, 9, &store)),
                (
                    "consistency too large",
                    consistency_proof(0, u64::MAX, &store),
                ),
            ],
            expect![[r#"
                inclusion 0 in 0: leaf index 0 is not in a tree of size 0
                inclusion 0 in 1: ok []
                inclusion 8 in 8: leaf index 8 is not in a tree of size 8
                inclusion 9 in 8: leaf index 9 is not in a tree of size 8
                inclusion beyond store: reading tree hashes from the store: indexes not in tree
                consistency 0 to 0: ok []
                consistency 0 to 8: ok []
                consistency 8 to 8: ok []
                consistency 5 to 3: old tree size 5 is larger than new tree size 3
                consistency beyond store: reading tree hashes from the store: indexes not in tree
                consistency too large: tree size 18446744073709551615 exceeds the maximum 4611686018427387904
            "#]],
        );
        check(
            &[
                ("root 0", root(0, &store)),
                ("root beyond store", root(9, &store)),
                ("root too large", root(MAX_TREE_SIZE + 1, &store)),
            ],
            expect![[r#"
                root 0: ok 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
                root beyond store: reading tree hashes from the store: indexes not in tree
                root too large: tree size 4611686018427387905 exceeds the maximum 4611686018427387904
            "#]],
        );
        check(
            &[
                ("append at 8", hashes_to_store(8, b"x", &store)),
                ("append at 9", hashes_to_store(9, b"x", &store)),
                (
                    "append at u64::MAX",
                    hashes_to_store(u64::MAX, b"x", &store),
                ),
            ],
            expect![[r#"
                append at 8: ok [(15, PH6byTDck/AfppmF7yQtn56GHzxTVaokzl70tLinDMs=)]
                append at 9: reading tree hashes from the store: indexes not in tree
                append at u64::MAX: tree size 18446744073709551615 exceeds the maximum 4611686018427387904
            "#]],
        );
    }

    #[test]
    fn verification_edge_cases() {
        let r = |size: usize| h(ROOTS[size]);
        let leaf0 = h(LEAF_HASHES[0]);
        let some = h(LEAF_HASHES[3]);
        check(
            &[
                (
                    "size 1, leaf is root",
                    verify_inclusion(&[], 0, 1, leaf0, r(1)),
                ),
                (
                    "size 1, other root",
                    verify_inclusion(&[], 0, 1, leaf0, r(2)),
                ),
                (
                    "size 1, extra hash",
                    verify_inclusion(&[some], 0, 1, leaf0, r(1)),
                ),
                ("index = size", verify_inclusion(&[], 1, 1, leaf0, r(1))),
                ("size 0", verify_inclusion(&[], 0, 0, leaf0, r(0))),
                (
                    "size 2, empty proof",
                    verify_inclusion(&[], 0, 2, leaf0, r(2)),
                ),
                (
                    "oversized proof",
                    verify_inclusion(&[some; 10_000], 0, 8, leaf0, r(8)),
                ),
            ],
            expect![[r#"
                size 1, leaf is root: ok ()
                size 1, other root: inclusion proof for leaf 0 does not lead to the root of the tree of size 1
                size 1, extra hash: inclusion proof length is 1, expected 0 hashes
                index = size: leaf index 1 is not in a tree of size 1
                size 0: leaf index 0 is not in a tree of size 0
                size 2, empty proof: inclusion proof length is 0, expected 1 hashes
                oversized proof: inclusion proof length is 10000, expected 3 hashes
            "#]],
        );
        check(
            &[
                ("0 to 0", verify_consistency(&[], 0, r(0), 0, r(0))),
                (
                    "0 to 0, new root wrong",
                    verify_consistency(&[], 0, r(0), 0, r(1)),
                ),
                ("0 to 8", verify_consistency(&[], 0, r(0), 8, r(8))),
                (
                    "0 to 8, old root wrong",
                    verify_consistency(&[], 0, r(1), 8, r(8)),
                ),
                (
                    "0 to 8, extra hash",
                    verify_consistency(&[some], 0, r(0), 8, r(8)),
                ),
                ("8 to 8", verify_consistency(&[], 8, r(8), 8, r(8))),
                (
                    "8 to 8, roots differ",
                    verify_consistency(&[], 8, r(7), 8, r(8)),
                ),
                (
                    "8 to 8, extra hash",
                    verify_consistency(&[r(8)], 8, r(8), 8, r(8)),
                ),
                (
                    "1 to 2, empty proof",
                    verify_consistency(&[], 1, r(1), 2, r(2)),
                ),
                ("2 to 1", verify_consistency(&[], 2, r(2), 1, r(1))),
                (
                    "oversized proof",
                    verify_consistency(&[some; 10_000], 3, r(3), 8, r(8)),
                ),
            ],
            expect![[r#"
                0 to 0: ok ()
                0 to 0, new root wrong: root of the empty tree is bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=, expected 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
                0 to 8: ok ()
                0 to 8, old root wrong: root of the empty tree is bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=, expected 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
                0 to 8, extra hash: consistency proof length is 1, expected 0 hashes
                8 to 8: ok ()
                8 to 8, roots differ: consistency proof from size 8 to size 8 does not match the two roots
                8 to 8, extra hash: consistency proof length is 1, expected 0 hashes
                1 to 2, empty proof: consistency proof length is 0, expected 1 hashes
                2 to 1: old tree size 2 is larger than new tree size 1
                oversized proof: consistency proof length is 10000, expected 4 hashes
            "#]],
        );
        check(
            &[
                ("31 bytes", hash_from_bytes(&[0; 31])),
                ("33 bytes", hash_from_bytes(&[0; 33])),
                ("32 bytes", hash_from_bytes(&[7; 32])),
            ],
            expect![[r#"
                31 bytes: hash is 31 bytes, expected 32
                33 bytes: hash is 33 bytes, expected 32
                32 bytes: ok BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=
            "#]],
        );
    }

    /// Found by the `merkle` fuzz target: a size past 2^63 (which a signed checkpoint may claim)
    /// made the proof-length computation shift a u64 by 64 and panic in debug builds (and
    /// compute a wrong length in release builds). Sizes beyond the limit are an error.
    #[test]
    fn verifying_sizes_beyond_the_limit_is_an_error() {
        let r = |size: usize| h(ROOTS[size]);
        let leaf0 = h(LEAF_HASHES[0]);
        check(
            &[
                (
                    "inclusion, fuzz input",
                    verify_inclusion(&[], 72340172838076673, 18374969058471772417, leaf0, r(8)),
                ),
                (
                    "inclusion, u64::MAX",
                    verify_inclusion(&[], 0, u64::MAX, leaf0, r(8)),
                ),
                (
                    "inclusion, limit + 1",
                    verify_inclusion(&[], 0, MAX_TREE_SIZE + 1, leaf0, r(8)),
                ),
                (
                    "inclusion, at the limit",
                    verify_inclusion(&[], MAX_TREE_SIZE - 1, MAX_TREE_SIZE, leaf0, r(8)),
                ),
            ],
            expect![[r#"
                inclusion, fuzz input: tree size 18374969058471772417 exceeds the maximum 4611686018427387904
                inclusion, u64::MAX: tree size 18446744073709551615 exceeds the maximum 4611686018427387904
                inclusion, limit + 1: tree size 4611686018427387905 exceeds the maximum 4611686018427387904
                inclusion, at the limit: inclusion proof length is 0, expected 62 hashes
            "#]],
        );
        check(
            &[
                (
                    "consistency, 2 to u64::MAX",
                    verify_consistency(&[], 2, r(2), u64::MAX, r(8)),
                ),
                (
                    "consistency, to limit + 1",
                    verify_consistency(&[], 3, r(3), MAX_TREE_SIZE + 1, r(8)),
                ),
                (
                    "consistency, at the limit",
                    verify_consistency(&[], 3, r(3), MAX_TREE_SIZE, r(8)),
                ),
            ],
            expect![[r#"
                consistency, 2 to u64::MAX: tree size 18446744073709551615 exceeds the maximum 4611686018427387904
                consistency, to limit + 1: tree size 4611686018427387905 exceeds the maximum 4611686018427387904
                consistency, at the limit: consistency proof length is 0, expected 63 hashes
            "#]],
        );
    }

    /// A reader that drops the last hash of every reply: a broken store must yield an error,
    /// not the panic `tlog_tiles` raises on it.
    struct ShortReader(MemoryHashStore);

    impl HashReader for ShortReader {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
            let mut hashes = self.0.read_hashes(indexes)?;
            hashes.pop();
            Ok(hashes)
        }
    }

    #[test]
    fn short_reads_are_errors() {
        let reader = ShortReader(rfc6962_store());
        check(
            &[("root", root(7, &reader))],
            expect![[r#"
            root: hash store returned 2 hashes for 3 indexes
        "#]],
        );
        check(
            &[
                ("inclusion", inclusion_proof(2, 7, &reader)),
                ("consistency", consistency_proof(3, 7, &reader)),
            ],
            expect![[r#"
                inclusion: hash store returned 3 hashes for 4 indexes
                consistency: hash store returned 4 hashes for 5 indexes
            "#]],
        );
        check(
            &[("append", hashes_to_store(7, b"x", &reader))],
            expect![[r#"
                append: hash store returned 2 hashes for 3 indexes
            "#]],
        );
    }

    // Reference implementation of RFC 9162 section 2.1, straight from its recursive definitions.

    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn ref_root(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n);
                tlog::node_hash(ref_root(&leaves[..k]), ref_root(&leaves[k..]))
            }
        }
    }

    fn ref_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
        let n = leaves.len();
        if n == 1 {
            return Vec::new();
        }
        let k = split(n);
        if m < k {
            let mut p = ref_path(m, &leaves[..k]);
            p.push(ref_root(&leaves[k..]));
            p
        } else {
            let mut p = ref_path(m - k, &leaves[k..]);
            p.push(ref_root(&leaves[..k]));
            p
        }
    }

    fn ref_subproof(m: usize, leaves: &[Vec<u8>], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![ref_root(leaves)]
            };
        }
        let k = split(n);
        if m <= k {
            let mut p = ref_subproof(m, &leaves[..k], complete);
            p.push(ref_root(&leaves[k..]));
            p
        } else {
            let mut p = ref_subproof(m - k, &leaves[k..], false);
            p.push(ref_root(&leaves[..k]));
            p
        }
    }

    fn ref_consistency(old: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
        if old == 0 || old == leaves.len() {
            Vec::new()
        } else {
            ref_subproof(old, leaves, true)
        }
    }

    const MAX_N: usize = 300;

    struct Fixture {
        leaves: Vec<Vec<u8>>,
        store: MemoryHashStore,
        /// `roots[size]`, from the reference implementation.
        roots: Vec<Hash>,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let leaves: Vec<Vec<u8>> = (0..MAX_N)
                .map(|i| format!("credex leaf {i}").into_bytes())
                .collect();
            let mut store = MemoryHashStore::new();
            let mut roots = vec![empty_root()];
            for (i, leaf) in leaves.iter().enumerate() {
                store.append(leaf).unwrap();
                roots.push(ref_root(&leaves[..=i]));
                assert_eq!(store.root(), roots[i + 1], "root of size {}", i + 1);
            }
            Fixture {
                leaves,
                store,
                roots,
            }
        })
    }

    fn flip(mut hash: Hash, byte: usize, bit: u8) -> Hash {
        hash.0[byte] ^= 1 << bit;
        hash
    }

    /// Every proof of trees up to 64 leaves equals the RFC's definition and verifies.
    #[test]
    fn all_small_proofs_match_the_rfc_definitions() {
        let f = fixture();
        for size in 1..=64 {
            let leaves = &f.leaves[..size];
            for index in 0..size {
                let proof = inclusion_proof(index as u64, size as u64, &f.store).unwrap();
                assert_eq!(proof, ref_path(index, leaves), "path {index} in {size}");
                let leaf = leaf_hash(&leaves[index]);
                verify_inclusion(&proof, index as u64, size as u64, leaf, f.roots[size]).unwrap();
            }
            for old in 0..=size {
                let proof = consistency_proof(old as u64, size as u64, &f.store).unwrap();
                assert_eq!(proof, ref_consistency(old, leaves), "proof {old} to {size}");
                let (old_root, new_root) = (f.roots[old], f.roots[size]);
                verify_consistency(&proof, old as u64, old_root, size as u64, new_root).unwrap();
            }
        }
    }

    /// A seeded proof yields both roots, for every pair of sizes up to 64; a proof taken from a
    /// forked history (same leaves up to `split`, different after) yields the fork's old root,
    /// never the honest one, while still reproducing its own new root.
    #[test]
    fn seeded_proofs_yield_both_roots_and_expose_forks() {
        let f = fixture();
        for new in 2..=64usize {
            for old in 1..new {
                let (o, n) = (old as u64, new as u64);
                let proof = seeded_consistency_proof(o, n, &f.store).unwrap();
                let roots = consistency_roots(&proof, o, n).unwrap();
                assert_eq!(roots, (f.roots[old], f.roots[new]), "proof {old} to {new}");
                // The same proof, minus its seed, is the RFC proof.
                let rfc = consistency_proof(o, n, &f.store).unwrap();
                assert_eq!(&proof[proof.len() - rfc.len()..], &rfc[..]);
                if old.is_power_of_two() {
                    assert!(
                        consistency_roots(&rfc, o, n).is_err(),
                        "unseeded {old} to {new}"
                    );
                }
                for split in 0..old {
                    let mut forked = MemoryHashStore::new();
                    let mut fork_leaves = f.leaves[..split].to_vec();
                    fork_leaves.extend((split..new).map(|i| format!("fork leaf {i}").into_bytes()));
                    for leaf in &fork_leaves {
                        forked.append(leaf).unwrap();
                    }
                    let proof = seeded_consistency_proof(o, n, &forked).unwrap();
                    let (old_root, new_root) = consistency_roots(&proof, o, n).unwrap();
                    assert_eq!(
                        new_root,
                        ref_root(&fork_leaves),
                        "fork {split}: {old} to {new}"
                    );
                    assert_eq!(old_root, ref_root(&fork_leaves[..old]));
                    assert_ne!(old_root, f.roots[old], "fork at {split} shows at {old}");
                }
            }
        }
        assert!(consistency_roots(&[], 0, 3).is_err());
        assert!(consistency_roots(&[], 3, 3).is_err());
        let proof = seeded_consistency_proof(5, 9, &f.store).unwrap();
        let mut longer = proof.clone();
        longer.push(f.roots[9]);
        assert!(consistency_roots(&longer, 5, 9).is_err());
        assert!(consistency_roots(&proof[1..], 5, 9).is_err());
    }

    fn size_and_index() -> impl Strategy<Value = (usize, usize)> {
        (1..=MAX_N).prop_flat_map(|size| (Just(size), 0..size))
    }

    fn old_and_new() -> impl Strategy<Value = (usize, usize)> {
        (1..=MAX_N).prop_flat_map(|new| (0..=new, Just(new)))
    }

    proptest! {
        #[test]
        fn inclusion_proofs_verify_and_tampering_fails(
            (size, index) in size_and_index(),
            byte in 0..HASH_SIZE,
            bit in 0u8..8,
            other_index in 0..MAX_N,
            other_size in 1..=MAX_N,
        ) {
            let f = fixture();
            let (n, i) = (size as u64, index as u64);
            let proof = inclusion_proof(i, n, &f.store).unwrap();
            prop_assert_eq!(&proof, &ref_path(index, &f.leaves[..size]));
            let leaf = leaf_hash(&f.leaves[index]);
            let root = f.roots[size];
            prop_assert!(verify_inclusion(&proof, i, n, leaf, root).is_ok());

            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k] = flip(bad[k], byte, bit);
                prop_assert!(verify_inclusion(&bad, i, n, leaf, root).is_err(), "proof[{}]", k);
            }
            prop_assert!(verify_inclusion(&proof, i, n, flip(leaf, byte, bit), root).is_err());
            prop_assert!(verify_inclusion(&proof, i, n, leaf, flip(root, byte, bit)).is_err());
            let mut longer = proof.clone();
            longer.push(root);
            prop_assert!(verify_inclusion(&longer, i, n, leaf, root).is_err());
            if !proof.is_empty() {
                let shorter = &proof[..proof.len() - 1];
                prop_assert!(verify_inclusion(shorter, i, n, leaf, root).is_err());
            }
            if other_index != index {
                let j = other_index as u64;
                prop_assert!(verify_inclusion(&proof, j, n, leaf, root).is_err());
            }
            // Another size, with that tree's own root (as a checkpoint would give them).
            if other_size != size {
                let m = other_size as u64;
                let other_root = f.roots[other_size];
                prop_assert!(verify_inclusion(&proof, i, m, leaf, other_root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_and_tampering_fails(
            (old, new) in old_and_new(),
            byte in 0..HASH_SIZE,
            bit in 0u8..8,
            other_old in 0..=MAX_N,
            other_new in 1..=MAX_N,
        ) {
            let f = fixture();
            let (o, n) = (old as u64, new as u64);
            let proof = consistency_proof(o, n, &f.store).unwrap();
            prop_assert_eq!(&proof, &ref_consistency(old, &f.leaves[..new]));
            let (old_root, new_root) = (f.roots[old], f.roots[new]);
            prop_assert!(verify_consistency(&proof, o, old_root, n, new_root).is_ok());

            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k] = flip(bad[k], byte, bit);
                let r = verify_consistency(&bad, o, old_root, n, new_root);
                prop_assert!(r.is_err(), "proof[{}]", k);
            }
            let bad_old = flip(old_root, byte, bit);
            prop_assert!(verify_consistency(&proof, o, bad_old, n, new_root).is_err());
            // Every tree extends the empty one: with old = 0 the new root is not examined.
            if old > 0 {
                let bad_new = flip(new_root, byte, bit);
                prop_assert!(verify_consistency(&proof, o, old_root, n, bad_new).is_err());
            }
            let mut longer = proof.clone();
            longer.push(new_root);
            prop_assert!(verify_consistency(&longer, o, old_root, n, new_root).is_err());
            // Non-trivial proofs only: an empty proof is also the valid proof of every pair
            // (s, s) and (0, s).
            if !proof.is_empty() {
                let shorter = &proof[..proof.len() - 1];
                prop_assert!(verify_consistency(shorter, o, old_root, n, new_root).is_err());
                prop_assert!(verify_consistency(&[], o, old_root, n, new_root).is_err());
                if other_old != old && other_old <= new {
                    let (m, m_root) = (other_old as u64, f.roots[other_old]);
                    prop_assert!(verify_consistency(&proof, m, m_root, n, new_root).is_err());
                }
                if other_new != new && other_new >= old {
                    let (m, m_root) = (other_new as u64, f.roots[other_new]);
                    prop_assert!(verify_consistency(&proof, o, old_root, m, m_root).is_err());
                }
                prop_assert!(verify_consistency(&proof, o, new_root, n, old_root).is_err());
            }
        }
    }
}
