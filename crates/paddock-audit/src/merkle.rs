//! RFC 6962 §2.1 Merkle tree: roots, inclusion proofs (audit paths), consistency proofs,
//! and their verifiers (the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2).
//!
//! Owns: [`MerkleTree`], an in-memory tree that stores the hash of every *perfect, aligned*
//! subtree (level 0 = leaf hashes, level k = subtrees of 2^k leaves), so an append is O(1)
//! amortised and a root or proof for any size `n <= len` costs O(log n) lookups plus at most
//! O(log n) hashes for the ragged right edge; [`Frontier`], the compact range (one hash per
//! set bit of the size) that a streaming verifier needs; the proof types and verifiers.
//! Memory: 64 bytes per leaf (leaves plus every interior level).
//! Never: re-hashes the whole tree to answer a query; accepts a proof of the wrong length.

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, empty_root, node_hash};

/// Largest power of two strictly smaller than `n` (`n >= 2`): RFC 6962's split point `k`.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Every perfect aligned subtree hash of an append-only sequence of leaves.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[k][j]` = hash of leaves `[j << k, (j + 1) << k)`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = Self::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// True when the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash (already `leaf_hash`ed). O(1) amortised.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut k = 0;
        while self.levels[k].len().is_multiple_of(2) {
            let n = self.levels[k].len();
            let h = node_hash(&self.levels[k][n - 2], &self.levels[k][n - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(h);
            k += 1;
        }
    }

    /// Leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// The leaf hashes in order.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], |l| l.as_slice())
    }

    /// MTH of leaves `[start, end)`, which must be a node of the RFC 6962 tree of some size
    /// `>= end` (true of every range the proof recursions visit).
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(start >> k) as usize];
        }
        let k = split(n);
        node_hash(
            &self.range_hash(start, start + k),
            &self.range_hash(start + k, end),
        )
    }

    /// Root hash of the first `size` leaves (`size <= len`). The empty tree's root is
    /// SHA-256("").
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeBeyondTree {
                size,
                len: self.len(),
            });
        }
        Ok(if size == 0 {
            empty_root()
        } else {
            self.range_hash(0, size)
        })
    }

    /// Root hash of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.len()).unwrap_or_else(|_| empty_root())
    }

    /// RFC 6962 §2.1.1 audit path for leaf `index` in the tree of the first `tree_size` leaves.
    pub fn inclusion_path(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, ProofError> {
        if tree_size > self.len() {
            return Err(ProofError::SizeBeyondTree {
                size: tree_size,
                len: self.len(),
            });
        }
        if index >= tree_size {
            return Err(ProofError::IndexOutOfRange { index, tree_size });
        }
        let mut out = Vec::with_capacity(64);
        self.path(index, 0, tree_size, &mut out);
        Ok(out)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n == 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.range_hash(start, start + k));
        }
    }

    /// RFC 6962 §2.1.2 consistency proof between the trees of `old_size` and `new_size`
    /// leaves. Empty when `old_size` is 0 or equals `new_size`.
    pub fn consistency_path(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofError> {
        if new_size > self.len() {
            return Err(ProofError::SizeBeyondTree {
                size: new_size,
                len: self.len(),
            });
        }
        if old_size > new_size {
            return Err(ProofError::SizesReversed { old_size, new_size });
        }
        let mut out = Vec::with_capacity(64);
        if old_size > 0 && old_size < new_size {
            self.subproof(old_size, 0, new_size, true, &mut out);
        }
        Ok(out)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, b: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !b {
                out.push(self.range_hash(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, b, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.range_hash(start, start + k));
        }
    }

    /// A serialisable inclusion proof for leaf `index` in the tree of `tree_size` leaves.
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, ProofError> {
        Ok(InclusionProof {
            leaf_index: index,
            tree_size,
            leaf_hash: self
                .leaf(index)
                .ok_or(ProofError::IndexOutOfRange { index, tree_size })?,
            root_hash: self.root_at(tree_size)?,
            path: self.inclusion_path(index, tree_size)?,
        })
    }

    /// A serialisable consistency proof between sizes `old_size <= new_size`.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, ProofError> {
        Ok(ConsistencyProof {
            old_size,
            new_size,
            old_root: self.root_at(old_size.min(self.len()))?,
            new_root: self.root_at(new_size)?,
            path: self.consistency_path(old_size, new_size)?,
        })
    }
}

/// The compact range `[0, size)`: one perfect-subtree hash per set bit of `size`, largest
/// first. Enough to append and compute the root, in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty frontier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree hashes, largest subtree first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash: O(1) amortised.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // A set low bit means a perfect subtree of the same height is waiting to pair.
            let left = self.hashes.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// Appends a whole perfect subtree of `2^height` leaves, given its root. The current
    /// size must be a multiple of `2^height` (the subtree is aligned).
    pub fn push_subtree(&mut self, root: Hash, height: u32) {
        assert!(
            self.size.is_multiple_of(1 << height),
            "subtree of height {height} pushed at unaligned size {}",
            self.size
        );
        let mut h = root;
        let mut s = self.size >> height;
        while s & 1 == 1 {
            let left = self.hashes.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.hashes.push(h);
        self.size += 1 << height;
    }

    /// Root of the tree of `size` leaves (SHA-256("") when empty).
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, h| node_hash(h, &acc))
    }
}

/// Why a proof did not verify or could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Leaf index not inside the tree.
    #[error("leaf index {index} is outside a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    /// Asked for a size the log does not have yet.
    #[error("tree size {size} is larger than the log ({len} entries)")]
    SizeBeyondTree { size: u64, len: u64 },
    /// Consistency between a larger old tree and a smaller new one.
    #[error("consistency proof from size {old_size} to smaller size {new_size}: sizes reversed")]
    SizesReversed { old_size: u64, new_size: u64 },
    /// The proof has more or fewer hashes than the sizes call for.
    #[error("proof has {got} hashes but index/sizes call for {expected}")]
    WrongLength { expected: usize, got: usize },
    /// Hashing the path does not give the trusted root.
    #[error("proof does not lead to the given root: computed {computed}, expected {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
    /// Consistency proof reconstructs a different old root.
    #[error(
        "consistency proof does not reproduce the old root: computed {computed}, expected {expected}"
    )]
    OldRootMismatch { computed: Hash, expected: Hash },
    /// The proof's own leaf/root fields disagree with what the verifier was given.
    #[error("proof field {field} is {found} but the verifier expected {expected}")]
    FieldMismatch {
        field: &'static str,
        found: String,
        expected: String,
    },
}

/// Number of hashes in the RFC 6962 audit path of `index` in a tree of `size` leaves.
pub fn inclusion_path_len(index: u64, size: u64) -> usize {
    if index >= size {
        return 0;
    }
    // Levels below the point where the paths to `index` and `size - 1` meet contribute one
    // hash each; above it, one per set bit of the remaining right spine.
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Number of hashes in the RFC 6962 consistency proof between sizes `0 < old < new`
/// (0 otherwise).
pub fn consistency_path_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    let index = old_size - 1;
    let inner = (64 - (index ^ (new_size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    let shift = old_size.trailing_zeros() as usize;
    // The old tree's own root is the first hash unless the old tree is a single perfect
    // subtree (old_size a power of two), in which case the verifier already has it.
    let seed = usize::from(!old_size.is_power_of_two());
    seed + (inner - shift) + border
}

/// RFC 9162 §2.1.3.2: verifies that `leaf_hash` is leaf `index` of the tree of `tree_size`
/// leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let expected_len = inclusion_path_len(index, tree_size);
    if path.len() != expected_len {
        return Err(ProofError::WrongLength {
            expected: expected_len,
            got: path.len(),
        });
    }
    let (mut fnn, mut sn) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in path {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                expected: expected_len,
                got: path.len(),
            });
        }
        if fnn & 1 == 1 || fnn == sn {
            r = node_hash(p, &r);
            if fnn & 1 == 0 {
                while fnn & 1 == 0 && fnn != 0 {
                    fnn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnn >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            expected: expected_len,
            got: path.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch {
            computed: r,
            expected: *root,
        });
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root`. For `old_size == new_size`
/// the proof must be empty and the roots equal; for `old_size == 0` the proof must be empty
/// and `old_root` must be the empty root.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesReversed { old_size, new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                got: proof.len(),
            });
        }
        let expected_old = if old_size == 0 {
            empty_root()
        } else {
            *new_root
        };
        if *old_root != expected_old {
            return Err(ProofError::OldRootMismatch {
                computed: expected_old,
                expected: *old_root,
            });
        }
        return Ok(());
    }
    let expected_len = consistency_path_len(old_size, new_size);
    if proof.len() != expected_len {
        return Err(ProofError::WrongLength {
            expected: expected_len,
            got: proof.len(),
        });
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnn, mut sn) = (old_size - 1, new_size - 1);
    while fnn & 1 == 1 {
        fnn >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                expected: expected_len,
                got: proof.len(),
            });
        }
        if fnn & 1 == 1 || fnn == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnn & 1 == 0 {
                while fnn & 1 == 0 && fnn != 0 {
                    fnn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnn >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            expected: expected_len,
            got: proof.len(),
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            computed: fr,
            expected: *old_root,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            computed: sr,
            expected: *new_root,
        });
    }
    Ok(())
}

/// A standalone inclusion proof, as `paddock audit prove` prints it (JSON).
///
/// `leaf_hash` and `root_hash` are carried for convenience; [`InclusionProof::verify`]
/// checks them against values the verifier trusts (a leaf it hashed itself, a root from a
/// signed checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub root_hash: Hash,
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// Verifies the proof for a leaf hash and root the caller trusts.
    pub fn verify(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), ProofError> {
        if self.leaf_hash != *leaf_hash {
            return Err(ProofError::FieldMismatch {
                field: "leaf_hash",
                found: self.leaf_hash.to_hex(),
                expected: leaf_hash.to_hex(),
            });
        }
        if self.root_hash != *root {
            return Err(ProofError::FieldMismatch {
                field: "root_hash",
                found: self.root_hash.to_hex(),
                expected: root.to_hex(),
            });
        }
        verify_inclusion(leaf_hash, self.leaf_index, self.tree_size, &self.path, root)
    }
}

/// A standalone consistency proof between two tree sizes (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: Hash,
    pub new_root: Hash,
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Verifies the proof between two roots the caller trusts (e.g. from two signed
    /// checkpoints).
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        for (field, found, expected) in [
            ("old_root", &self.old_root, old_root),
            ("new_root", &self.new_root, new_root),
        ] {
            if found != expected {
                return Err(ProofError::FieldMismatch {
                    field,
                    found: found.to_hex(),
                    expected: expected.to_hex(),
                });
            }
        }
        verify_consistency(self.old_size, self.new_size, old_root, new_root, &self.path)
    }
}
