//! RFC 9162 Merkle tree **prover** over stored nodes.
//!
//! The node of every complete, aligned subtree is stored once, when its last leaf is appended:
//! `(level, index)` → hash of leaves `[index·2^level, (index+1)·2^level)`. Appending costs one
//! insert per completed level (amortised two), and the root of any prefix, an inclusion proof or a
//! consistency proof for any pair of sizes is computed from O(log n) stored nodes per subtree
//! following the RFC's recursive definitions. The verifier is `cgs_core::merkle` and shares no code
//! with this module.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Where stored nodes come from.
pub trait Nodes {
    /// The stored node at `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, String>;
}

/// Where stored nodes go.
pub trait NodesMut: Nodes {
    /// Store a node.
    fn put_node(&mut self, level: u8, index: u64, hash: &Hash) -> Result<(), String>;
}

/// H(0x00 ‖ data).
pub fn leaf(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

fn interior(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Append the leaf with hash `leaf_hash` to a tree of `size` leaves.
pub fn append(nodes: &mut impl NodesMut, size: u64, leaf_hash: Hash) -> Result<(), String> {
    nodes.put_node(0, size, &leaf_hash)?;
    let (mut level, mut index, mut node) = (0u8, size, leaf_hash);
    while index & 1 == 1 {
        let left = nodes.node(level, index - 1)?;
        node = interior(&left, &node);
        level += 1;
        index >>= 1;
        nodes.put_node(level, index, &node)?;
    }
    Ok(())
}

/// MTH of leaves `[start, end)` (a range reached by the RFC recursion from some prefix).
fn subtree(nodes: &impl Nodes, start: u64, end: u64) -> Result<Hash, String> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros() as u8, start / n);
    }
    let k = split(n);
    Ok(interior(&subtree(nodes, start, start + k)?, &subtree(nodes, start + k, end)?))
}

/// The root of the first `size` leaves.
pub fn root(nodes: &impl Nodes, size: u64) -> Result<Hash, String> {
    if size == 0 {
        return Ok(Sha256::digest([]).into());
    }
    subtree(nodes, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of `size` (RFC 9162 PATH).
pub fn inclusion_proof(nodes: &impl Nodes, index: u64, size: u64) -> Result<Vec<Hash>, String> {
    fn path(nodes: &impl Nodes, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), String> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            path(nodes, m, start, start + k, out)?;
            out.push(subtree(nodes, start + k, end)?);
        } else {
            path(nodes, m - k, start + k, end, out)?;
            out.push(subtree(nodes, start, start + k)?);
        }
        Ok(())
    }
    if index >= size {
        return Err(format!("leaf {index} is not in a tree of {size}"));
    }
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out)?;
    Ok(out)
}

/// The consistency proof from `size1` to `size2` (RFC 9162 PROOF).
pub fn consistency_proof(nodes: &impl Nodes, size1: u64, size2: u64) -> Result<Vec<Hash>, String> {
    fn sub(
        nodes: &impl Nodes,
        m: u64,
        start: u64,
        end: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), String> {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(subtree(nodes, start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            sub(nodes, m, start, start + k, complete, out)?;
            out.push(subtree(nodes, start + k, end)?);
        } else {
            sub(nodes, m - k, start + k, end, false, out)?;
            out.push(subtree(nodes, start, start + k)?);
        }
        Ok(())
    }
    if size1 == 0 || size1 > size2 {
        return Err(format!("no consistency proof from {size1} to {size2}"));
    }
    let mut out = Vec::new();
    sub(nodes, size1, 0, size2, true, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Mem(HashMap<(u8, u64), Hash>);
    impl Nodes for Mem {
        fn node(&self, level: u8, index: u64) -> Result<Hash, String> {
            self.0.get(&(level, index)).copied().ok_or_else(|| format!("no node ({level},{index})"))
        }
    }
    impl NodesMut for Mem {
        fn put_node(&mut self, level: u8, index: u64, hash: &Hash) -> Result<(), String> {
            self.0.insert((level, index), *hash);
            Ok(())
        }
    }

    /// The prover's proofs are accepted by the independent verifier in `cgs_core`, and its roots
    /// match the verifier's compact tree, for every size up to 70 and every index / size pair.
    #[test]
    fn prover_agrees_with_the_independent_verifier() {
        use cgs_core::merkle as v;
        let mut nodes = Mem::default();
        let mut compact = v::CompactTree::new();
        let mut roots = vec![root(&nodes, 0).unwrap()];
        assert_eq!(roots[0], v::empty_root());
        for i in 0..70u64 {
            let l = leaf(&i.to_be_bytes());
            assert_eq!(l, v::leaf_hash(&i.to_be_bytes()));
            append(&mut nodes, i, l).unwrap();
            compact.push(l);
            roots.push(root(&nodes, i + 1).unwrap());
            assert_eq!(roots[(i + 1) as usize], compact.root());
        }
        for size in 1..=70u64 {
            for index in 0..size {
                let p = inclusion_proof(&nodes, index, size).unwrap();
                v::verify_inclusion(&leaf(&index.to_be_bytes()), index, size, &p, &roots[size as usize]).unwrap();
            }
            for s1 in 1..=size {
                let p = consistency_proof(&nodes, s1, size).unwrap();
                v::verify_consistency(s1, size, &p, &roots[s1 as usize], &roots[size as usize]).unwrap();
            }
        }
        assert!(inclusion_proof(&nodes, 5, 5).is_err());
        assert!(consistency_proof(&nodes, 0, 5).is_err());
    }
}
