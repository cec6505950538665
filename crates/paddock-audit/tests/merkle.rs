//! RFC 6962 Merkle tree: published test vectors, a naive recursive reference, and property
//! tests for inclusion and consistency proofs (verify, and fail when altered).

use paddock_audit::merkle::{
    ConsistencyProof, Frontier, InclusionProof, MerkleTree, ProofError, consistency_path_len,
    inclusion_path_len, verify_consistency, verify_inclusion,
};
use paddock_audit::{Hash, empty_root, leaf_hash, node_hash};
use proptest::prelude::*;

fn h(s: &str) -> Hash {
    Hash::from_hex(s).unwrap()
}

// Certificate Transparency's reference leaves and roots (sizes 1..=8).
const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn ct_tree() -> MerkleTree {
    MerkleTree::from_leaves(
        CT_LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap())),
    )
}

#[test]
fn empty_root_is_sha256_of_empty_string() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(MerkleTree::new().root(), empty_root());
    assert_eq!(Frontier::new().root(), empty_root());
}

#[test]
fn ct_roots_for_every_size() {
    let t = ct_tree();
    let mut f = Frontier::new();
    for (n, root) in CT_ROOTS.iter().enumerate() {
        assert_eq!(t.root_at(n as u64 + 1).unwrap(), h(root), "size {}", n + 1);
        f.push(t.leaf(n as u64).unwrap());
        assert_eq!(f.root(), h(root), "frontier size {}", n + 1);
    }
}

#[test]
fn ct_inclusion_vectors() {
    let t = ct_tree();
    let cases: [(u64, u64, [&str; 3]); 2] = [
        (
            0,
            8,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let path = t.inclusion_path(index, size).unwrap();
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(path, want, "path for {index} in {size}");
        verify_inclusion(&t.leaf(index).unwrap(), index, size, &path, &h(CT_ROOTS[7])).unwrap();
    }
}

#[test]
fn ct_consistency_vectors() {
    let t = ct_tree();
    let cases: [(u64, u64, &[&str]); 2] = [
        (
            2,
            8,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (m, n, want) in cases {
        let proof = t.consistency_path(m, n).unwrap();
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        assert_eq!(proof, want, "consistency {m} -> {n}");
        verify_consistency(
            m,
            n,
            &h(CT_ROOTS[m as usize - 1]),
            &h(CT_ROOTS[n as usize - 1]),
            &proof,
        )
        .unwrap();
    }
}

#[test]
fn trivial_consistency_cases() {
    let t = ct_tree();
    let r4 = t.root_at(4).unwrap();
    let r8 = t.root_at(8).unwrap();
    verify_consistency(4, 4, &r4, &r4, &[]).unwrap();
    assert!(verify_consistency(4, 4, &r4, &r8, &[]).is_err());
    assert!(verify_consistency(4, 4, &r4, &r4, &[r4]).is_err());
    verify_consistency(0, 8, &empty_root(), &r8, &[]).unwrap();
    assert!(verify_consistency(0, 8, &r4, &r8, &[]).is_err());
    assert!(verify_consistency(0, 8, &empty_root(), &r8, &[r4]).is_err());
    assert!(matches!(
        verify_consistency(8, 4, &r8, &r4, &[]),
        Err(ProofError::SizesReversed { .. })
    ));
    assert!(matches!(
        t.consistency_path(5, 9),
        Err(ProofError::SizeBeyondTree { .. })
    ));
    assert!(matches!(
        t.inclusion_path(8, 8),
        Err(ProofError::IndexOutOfRange { .. })
    ));
}

// ---- naive reference (RFC 6962 §2.1 written literally) ----

fn k_split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = k_split(n);
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_split(n);
    if m < k {
        let mut p = naive_path(m, &leaves[..k]);
        p.push(naive_root(&leaves[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &leaves[k..]);
        p.push(naive_root(&leaves[..k]));
        p
    }
}

fn naive_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![naive_root(leaves)] };
    }
    let k = k_split(n);
    if m <= k {
        let mut p = naive_subproof(m, &leaves[..k], b);
        p.push(naive_root(&leaves[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &leaves[k..], false);
        p.push(naive_root(&leaves[..k]));
        p
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
        .collect()
}

#[test]
fn matches_naive_reference_exhaustively_up_to_70() {
    let all = leaves(70);
    let t = MerkleTree::from_leaves(all.iter().copied());
    for n in 0..=70usize {
        let root = naive_root(&all[..n]);
        assert_eq!(t.root_at(n as u64).unwrap(), root, "root {n}");
        for m in 0..n {
            let p = t.inclusion_path(m as u64, n as u64).unwrap();
            assert_eq!(p, naive_path(m, &all[..n]), "path {m}/{n}");
            assert_eq!(p.len(), inclusion_path_len(m as u64, n as u64));
            verify_inclusion(&all[m], m as u64, n as u64, &p, &root).unwrap();
        }
        for m in 0..=n {
            let p = t.consistency_path(m as u64, n as u64).unwrap();
            let want = if m == 0 || m == n {
                vec![]
            } else {
                naive_subproof(m, &all[..n], true)
            };
            assert_eq!(p, want, "consistency {m}->{n}");
            assert_eq!(p.len(), consistency_path_len(m as u64, n as u64));
            verify_consistency(m as u64, n as u64, &naive_root(&all[..m]), &root, &p).unwrap();
        }
    }
}

#[test]
fn proofs_serialise_as_json() {
    let all = leaves(13);
    let t = MerkleTree::from_leaves(all.iter().copied());
    let p = t.inclusion_proof(6, 13).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    let back: InclusionProof = serde_json::from_str(&json).unwrap();
    back.verify(&all[6], &t.root_at(13).unwrap()).unwrap();
    let c = t.consistency_proof(5, 13).unwrap();
    let back: ConsistencyProof = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    back.verify(&t.root_at(5).unwrap(), &t.root_at(13).unwrap())
        .unwrap();
    assert!(
        back.verify(&t.root_at(6).unwrap(), &t.root_at(13).unwrap())
            .is_err()
    );
}

// ---- property tests ----

fn flip(h: &mut Hash, byte: usize, bit: u8) {
    h.0[byte % 32] ^= 1 << (bit % 8);
}

fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1u64..2000).prop_flat_map(|n| (Just(n), 0..n))
}

fn sizes_pair() -> impl Strategy<Value = (u64, u64)> {
    (2u64..2000).prop_flat_map(|n| (1..n, Just(n)))
}

fn tree_of(n: u64) -> MerkleTree {
    MerkleTree::from_leaves((0..n).map(|i| leaf_hash(&i.to_be_bytes())))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_verifies_and_rejects_alterations(
        (n, i) in size_and_index(),
        which in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
        other in any::<u64>(),
    ) {
        let t = tree_of(n);
        let root = t.root();
        let leaf = t.leaf(i).unwrap();
        let path = t.inclusion_path(i, n).unwrap();
        prop_assert!(verify_inclusion(&leaf, i, n, &path, &root).is_ok());
        prop_assert!(path.len() <= 64 - (n - 1).leading_zeros() as usize);

        // altered leaf, root, or any path hash
        let mut bad_leaf = leaf; flip(&mut bad_leaf, byte, bit);
        prop_assert!(verify_inclusion(&bad_leaf, i, n, &path, &root).is_err());
        let mut bad_root = root; flip(&mut bad_root, byte, bit);
        prop_assert!(verify_inclusion(&leaf, i, n, &path, &bad_root).is_err());
        if !path.is_empty() {
            let mut p = path.clone();
            flip(&mut p[which.index(path.len())], byte, bit);
            prop_assert!(verify_inclusion(&leaf, i, n, &p, &root).is_err());
            // truncated
            prop_assert!(verify_inclusion(&leaf, i, n, &path[..path.len() - 1], &root).is_err());
        }
        // extended
        let mut p = path.clone(); p.push(root);
        prop_assert!(verify_inclusion(&leaf, i, n, &p, &root).is_err());
        // another index
        let j = other % n;
        if j != i {
            prop_assert!(verify_inclusion(&leaf, j, n, &path, &root).is_err());
        }
        // another size: the size is authenticated through the root a checkpoint signs for
        // it, so the proof must fail against the real root of that size. (Against the
        // original root a few sizes of the same path shape verify: RFC 6962 binds the size
        // only through the root.)
        let bigger = tree_of(n + 5);
        let m = 1 + other % (n + 5);
        if m != n && i < m {
            prop_assert!(verify_inclusion(&leaf, i, m, &path, &bigger.root_at(m).unwrap()).is_err());
        }
    }

    #[test]
    fn consistency_verifies_and_rejects_alterations(
        (m, n) in sizes_pair(),
        which in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
        other in any::<u64>(),
    ) {
        let t = tree_of(n);
        let (r1, r2) = (t.root_at(m).unwrap(), t.root());
        let proof = t.consistency_path(m, n).unwrap();
        prop_assert!(verify_consistency(m, n, &r1, &r2, &proof).is_ok());
        prop_assert!(proof.len() <= 2 * (64 - (n - 1).leading_zeros() as usize));

        let mut b1 = r1; flip(&mut b1, byte, bit);
        prop_assert!(verify_consistency(m, n, &b1, &r2, &proof).is_err());
        let mut b2 = r2; flip(&mut b2, byte, bit);
        prop_assert!(verify_consistency(m, n, &r1, &b2, &proof).is_err());
        let mut p = proof.clone();
        flip(&mut p[which.index(proof.len())], byte, bit);
        prop_assert!(verify_consistency(m, n, &r1, &r2, &p).is_err());
        prop_assert!(verify_consistency(m, n, &r1, &r2, &proof[..proof.len() - 1]).is_err());
        let mut p = proof.clone(); p.push(r1);
        prop_assert!(verify_consistency(m, n, &r1, &r2, &p).is_err());
        // other sizes, each with the real root a checkpoint would sign for it
        let m2 = 1 + other % n;
        if m2 != m {
            prop_assert!(verify_consistency(m2, n, &t.root_at(m2).unwrap(), &r2, &proof).is_err());
            prop_assert!(verify_consistency(m2, n, &r1, &r2, &proof).is_err());
        }
        let bigger = tree_of(n + 7);
        let n2 = m + 1 + other % (n + 7 - m);
        if n2 != n {
            prop_assert!(verify_consistency(m, n2, &r1, &bigger.root_at(n2).unwrap(), &proof).is_err());
        }
    }
}

#[test]
fn proofs_are_bound_to_their_sizes_exhaustively() {
    // Every (index or old size, tree size) pair up to 48: a proof never verifies under
    // another old size with that size's real root, nor another new size with its root.
    let t = tree_of(56);
    for n in 1..=48u64 {
        let rn = t.root_at(n).unwrap();
        for m in 1..n {
            let proof = t.consistency_path(m, n).unwrap();
            let rm = t.root_at(m).unwrap();
            for m2 in 1..=n {
                if m2 != m {
                    assert!(
                        verify_consistency(m2, n, &t.root_at(m2).unwrap(), &rn, &proof).is_err()
                    );
                    assert!(
                        verify_consistency(m2, n, &rm, &rn, &proof).is_err(),
                        "{m}->{n} as {m2}"
                    );
                }
            }
            for n2 in m..=56 {
                if n2 != n {
                    assert!(
                        verify_consistency(m, n2, &rm, &t.root_at(n2).unwrap(), &proof).is_err()
                    );
                }
            }
        }
        for i in 0..n {
            let path = t.inclusion_path(i, n).unwrap();
            for n2 in (i + 1)..=56 {
                if n2 != n {
                    let r2 = t.root_at(n2).unwrap();
                    assert!(verify_inclusion(&t.leaf(i).unwrap(), i, n2, &path, &r2).is_err());
                }
            }
        }
    }
}

#[test]
fn frontier_push_subtree_matches_leaf_pushes() {
    let all: Vec<Hash> = (0..300u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let t = MerkleTree::from_leaves(all.iter().copied());
    for height in 0..5u32 {
        let block = 1usize << height;
        let mut f = Frontier::new();
        for (b, chunk) in all.chunks_exact(block).enumerate() {
            f.push_subtree(
                MerkleTree::from_leaves(chunk.iter().copied()).root(),
                height,
            );
            assert_eq!(f.root(), t.root_at(((b + 1) * block) as u64).unwrap());
        }
    }
}
