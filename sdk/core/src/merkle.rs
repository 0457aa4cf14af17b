//! RFC 9162 Merkle tree **verification** over SHA-256: leaf = H(0x00 ‖ d), node =
//! H(0x01 ‖ l ‖ r).
//!
//! This module is the verifier. It shares no code with the host's prover (which generates proofs
//! from stored nodes): a bug in one cannot hide in both. It follows RFC 9162 §2.1.3–2.1.4 and the
//! strictness rules of transparency-dev/merkle (`proof/verify.go`): a leaf hash must be 32 bytes,
//! `index >= size` fails, a consistency proof from size 0 always fails, `size1 == size2` needs an
//! empty proof and equal roots, `size1 > size2` fails, and a proof of the wrong length fails.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes; {want} expected")]
    WrongLength {
        /// Hashes given.
        got: usize,
        /// Hashes needed.
        want: usize,
    },
    /// A hash is not 32 bytes.
    #[error("a hash is {0} bytes, not 32")]
    BadHashLength(usize),
    /// The sizes are not a valid pair.
    #[error("invalid tree sizes {0} and {1}")]
    BadSizes(u64, u64),
    /// The recomputed root differs.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// H(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// H(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

fn to_hash(b: &[u8]) -> Result<Hash, ProofError> {
    b.try_into().map_err(|_| ProofError::BadHashLength(b.len()))
}

/// Number of bits needed to represent `x` (0 for 0).
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// The root implied by an inclusion proof (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion_proof(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[impl AsRef<[u8]>],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let leaf = to_hash(leaf)?;
    // Expected length: inner part (bits where index and size-1 differ) plus border part (ones
    // above that in index).
    let inner = bit_len(index ^ (size - 1)) as usize;
    let border = (index >> inner).count_ones() as usize;
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength { got: proof.len(), want: inner + border });
    }
    let mut fnum = index;
    let mut snum = size - 1;
    let mut r = leaf;
    for p in proof {
        let p = to_hash(p.as_ref())?;
        if snum == 0 {
            return Err(ProofError::WrongLength { got: proof.len(), want: inner + border });
        }
        if fnum & 1 == 1 || fnum == snum {
            r = node_hash(&p, &r);
            while fnum & 1 == 0 && fnum != 0 {
                fnum >>= 1;
                snum >>= 1;
            }
        } else {
            r = node_hash(&r, &p);
        }
        fnum >>= 1;
        snum >>= 1;
    }
    if snum != 0 {
        return Err(ProofError::WrongLength { got: proof.len(), want: inner + border });
    }
    Ok(r)
}

/// Check that the leaf with hash `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[impl AsRef<[u8]>],
    root: &[u8],
) -> Result<(), ProofError> {
    let root = to_hash(root)?;
    if root_from_inclusion_proof(leaf, index, size, proof)? == root { Ok(()) } else { Err(ProofError::RootMismatch) }
}

/// Check that the tree of `size2` with `root2` extends the tree of `size1` with `root1`
/// (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[impl AsRef<[u8]>],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::BadSizes(size1, size2));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { got: proof.len(), want: 0 });
        }
        return if root1 == root2 { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let root1 = to_hash(root1)?;
    let root2 = to_hash(root2)?;
    // Expected length (transparency-dev): inner = bits where size1-1 and size2-1 differ, minus
    // the trailing ones of size1-1 that are shifted away; plus the border; plus the seed unless
    // size1 is a power of two.
    let mut hashes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    for p in proof {
        hashes.push(to_hash(p.as_ref())?);
    }
    let inner = bit_len((size1 - 1) ^ (size2 - 1)) as usize;
    let shift = (size1 - 1).trailing_ones() as usize;
    let border = ((size1 - 1) >> inner).count_ones() as usize;
    let seed_given = !size1.is_power_of_two();
    let want = inner - shift.min(inner) + border + usize::from(seed_given);
    if hashes.len() != want {
        return Err(ProofError::WrongLength { got: hashes.len(), want });
    }
    if !seed_given {
        hashes.insert(0, root1);
    }
    let mut fnum = size1 - 1;
    let mut snum = size2 - 1;
    while fnum & 1 == 1 {
        fnum >>= 1;
        snum >>= 1;
    }
    let mut fr = hashes[0];
    let mut sr = hashes[0];
    for c in &hashes[1..] {
        if snum == 0 {
            return Err(ProofError::WrongLength { got: proof.len(), want });
        }
        if fnum & 1 == 1 || fnum == snum {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnum & 1 == 0 && fnum != 0 {
                fnum >>= 1;
                snum >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnum >>= 1;
        snum >>= 1;
    }
    if snum != 0 {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    if fr == root1 && sr == root2 { Ok(()) } else { Err(ProofError::RootMismatch) }
}

/// Roots of a growing tree, computed incrementally from its leaf hashes: a stack of the roots of
/// the complete subtrees (the "compact range"). Used by offline ledger verification.
#[derive(Debug, Clone, Default)]
pub struct CompactTree {
    size: u64,
    /// Roots of complete subtrees, largest first; their sizes are the set bits of `size`.
    peaks: Vec<Hash>,
}

impl CompactTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // The newest peak has the same size as `node`: merge them.
            let left = self.peaks.pop().unwrap_or_default();
            node = node_hash(&left, &node);
            s >>= 1;
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// The current root (RFC 9162 MTH): peaks folded right to left.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, peak| node_hash(peak, &acc)),
        }
    }
}

/// RFC 9162 §2.1 word for word — the tree hash and inclusion path by their recursive
/// definitions, over all leaves at once. Slow (it rehashes subtrees); for cross-checking the
/// incremental tree and for tools that generate test vectors (the fuzz seeds).
pub mod reference {
    use super::{Hash, bit_len, empty_root, node_hash};

    /// MTH(D\[n\]).
    pub fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = 1usize << (bit_len(n as u64 - 1) - 1);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// PATH(m, D\[n\]): the inclusion path of leaf `m`, leaf to root.
    pub fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return vec![];
        }
        let k = 1usize << (bit_len(n as u64 - 1) - 1);
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{mth, path};
    use super::*;

    fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete { vec![] } else { vec![mth(leaves)] };
        }
        let k = 1usize << (bit_len(n as u64 - 1) - 1);
        if m <= k {
            let mut p = subproof(m, &leaves[..k], complete);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    #[test]
    fn generated_proofs_verify_and_mutations_fail() {
        let leaves: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut compact = CompactTree::new();
        assert_eq!(compact.root(), empty_root());
        for n in 1..=leaves.len() {
            compact.push(leaves[n - 1]);
            let root = mth(&leaves[..n]);
            assert_eq!(compact.root(), root, "compact root at {n}");
            for m in 0..n {
                let p = path(m, &leaves[..n]);
                verify_inclusion(&leaves[m], m as u64, n as u64, &p, &root).unwrap();
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = node_hash(first, first);
                    assert!(verify_inclusion(&leaves[m], m as u64, n as u64, &bad, &root).is_err());
                }
                assert!(verify_inclusion(&leaves[m], n as u64, n as u64, &p, &root).is_err());
            }
            for m in 1..=n {
                let p = subproof(m, &leaves[..n], true);
                let r1 = mth(&leaves[..m]);
                verify_consistency(m as u64, n as u64, &p, &r1, &root).unwrap();
                assert!(verify_consistency(m as u64, n as u64, &p, &root, &r1).is_err() || m == n);
            }
        }
        assert!(verify_consistency(0, 5, &Vec::<Hash>::new(), &empty_root(), &empty_root()).is_err());
    }

    /// The public transparency-dev vectors (196 files), when `../shared/fixtures` is present.
    #[test]
    fn transparency_dev_vectors() {
        use base64::Engine;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/vectors/transparency-dev-merkle");
        if !root.exists() {
            eprintln!("skipped: {} not found", root.display());
            return;
        }
        let b64 = |v: &serde_json::Value| -> Vec<u8> {
            v.as_str()
                .map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default())
                .unwrap_or_default()
        };
        let mut files = Vec::new();
        let mut stack = vec![root.join("testdata")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "json") {
                    files.push(p);
                }
            }
        }
        assert_eq!(files.len(), 196, "vector count");
        for f in &files {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            let want_err = v["wantErr"].as_bool().unwrap_or(false);
            let proof: Vec<Vec<u8>> = v["proof"].as_array().map(|a| a.iter().map(b64).collect()).unwrap_or_default();
            let got = if f.to_string_lossy().contains("/inclusion/") {
                verify_inclusion(
                    &b64(&v["leafHash"]),
                    v["leafIdx"].as_u64().unwrap(),
                    v["treeSize"].as_u64().unwrap(),
                    &proof,
                    &b64(&v["root"]),
                )
            } else {
                verify_consistency(
                    v["size1"].as_u64().unwrap(),
                    v["size2"].as_u64().unwrap(),
                    &proof,
                    &b64(&v["root1"]),
                    &b64(&v["root2"]),
                )
            };
            assert_eq!(got.is_err(), want_err, "{}: {got:?}", f.display());
        }
        // The reference tree: roots for sizes 0..=8.
        let tree: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("reference-tree.json")).unwrap()).unwrap();
        let mut compact = CompactTree::new();
        let roots = tree["rootHexBySize"].as_array().unwrap();
        assert_eq!(hex::encode(compact.root()), roots[0].as_str().unwrap());
        for (i, input) in tree["leafInputsHex"].as_array().unwrap().iter().enumerate() {
            compact.push(leaf_hash(&hex::decode(input.as_str().unwrap()).unwrap()));
            assert_eq!(hex::encode(compact.root()), roots[i + 1].as_str().unwrap(), "root at size {}", i + 1);
        }
    }
}
