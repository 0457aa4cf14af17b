//! Identifiers, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A malformed identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {what}: {why}")]
pub struct ParseIdError {
    what: &'static str,
    input: String,
    why: &'static str,
}

impl ParseIdError {
    fn new(what: &'static str, input: &str, why: &'static str) -> Self {
        let input = if input.len() > 80 { format!("{}…", &input[..80]) } else { input.to_string() };
        Self { what, input, why }
    }
}

/// A transaction id `<term>.<seqno>` (e.g. `2.118`): the replication term and the ledger
/// sequence number. Versions for optimistic concurrency are tx ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId {
    /// The replication term in which the transaction was created.
    pub term: u64,
    /// The position in the ledger (1-based).
    pub seqno: u64,
}

impl TxId {
    /// A tx id.
    pub const fn new(term: u64, seqno: u64) -> Self {
        Self { term, seqno }
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.term, self.seqno)
    }
}

impl FromStr for TxId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let (t, n) = s.split_once('.').ok_or_else(|| ParseIdError::new("tx id", s, "expected `<term>.<seqno>`"))?;
        let num = |p: &str| -> Result<u64, ParseIdError> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
                return Err(ParseIdError::new("tx id", s, "term and seqno must be decimal integers"));
            }
            p.parse().map_err(|_| ParseIdError::new("tx id", s, "number out of range"))
        };
        Ok(TxId { term: num(t)?, seqno: num(n)? })
    }
}

impl Serialize for TxId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TxId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A BLAKE3 hash: the measurement of a plugin and the address of a blob.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blake3Hash(pub [u8; 32]);

impl Blake3Hash {
    /// The BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Blake3Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Blake3Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blake3Hash({})", self.to_hex())
    }
}

impl FromStr for Blake3Hash {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ParseIdError::new("BLAKE3 hash", s, "expected 64 lowercase hex digits"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError::new("BLAKE3 hash", s, "not hex"))?;
        Ok(Self(out))
    }
}

impl Serialize for Blake3Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Blake3Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_id_round_trips_and_rejects_garbage() {
        let t: TxId = "2.118".parse().unwrap();
        assert_eq!(t, TxId::new(2, 118));
        assert_eq!(t.to_string(), "2.118");
        for bad in ["", "1", "1.", ".1", "a.1", "1.-1", "01.2", "1.2.3", "1 .2", "99999999999999999999.1"] {
            assert!(bad.parse::<TxId>().is_err(), "{bad} should not parse");
        }
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2.118\"");
        assert_eq!(serde_json::from_str::<TxId>("\"3.4\"").unwrap(), TxId::new(3, 4));
        assert!(TxId::new(1, 9) < TxId::new(2, 1));
    }

    #[test]
    fn blake3_hash_is_strict_hex() {
        let h = Blake3Hash::of(b"abc");
        assert_eq!(h.to_hex(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
        assert_eq!(h.to_hex().parse::<Blake3Hash>().unwrap(), h);
        assert!(h.to_hex().to_uppercase().parse::<Blake3Hash>().is_err());
        assert!("abc".parse::<Blake3Hash>().is_err());
    }
}
