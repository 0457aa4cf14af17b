//! Typed tables over the host's transactional `kv`.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys::{self, RawEntry};
use crate::{Error, Result};

/// A transaction id, `<term>.<seqno>`; the version of a key is the id of its last write. The
/// host's type, from `cgs-core`.
pub use cgs_core::TxId;

/// Parse a version a client sent (`<term>.<seqno>`, each part a `u64`); anything else is a
/// `400 InvalidVersion`.
pub fn parse_version(s: &str) -> Result<TxId> {
    let bad = || Error::bad_request("InvalidVersion", format!("`{s}` is not a version (expected `<term>.<seqno>`)"));
    let (t, n) = s.split_once('.').ok_or_else(bad)?;
    Ok(TxId { term: t.parse().map_err(|_| bad())?, seqno: n.parse().map_err(|_| bad())? })
}

/// 32 bytes that stand for `data` in a key (the host's keyed hash under a key derived from the
/// ledger secret): equal inputs give equal outputs on every node, and the ledger files, where
/// keys are visible, reveal nothing of `data`. Use it for confidential parts of keys.
pub fn blind(data: &[u8]) -> [u8; 32] {
    sys::blind(data)
}

/// A table key: encoded so that byte order is the key's natural order.
pub trait Key {
    /// The owned form returned by scans.
    type Owned;
    /// The stored bytes.
    fn encode(&self) -> Vec<u8>;
    /// Back from stored bytes; `None` if they are not a key of this type.
    fn decode(bytes: &[u8]) -> Option<Self::Owned>;
}

impl Key for str {
    type Owned = String;
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Key for String {
    type Owned = String;
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Big-endian, so numeric order is key order.
impl Key for u64 {
    type Owned = u64;
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl Key for [u8] {
    type Owned = Vec<u8>;
    fn encode(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

/// A value with the id of the transaction that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<V> {
    /// The value.
    pub value: V,
    /// Its version.
    pub version: TxId,
}

/// A table of JSON values. Tables are private to the plugin unless named `gov.<name>` (the
/// read-only governance tables every plugin can read).
///
/// ```ignore
/// static DRAFTS: Table<str, Draft> = Table::new("drafts");
/// DRAFTS.put("c1", &draft)?;
/// ```
pub struct Table<K: ?Sized, V> {
    name: &'static str,
    _marker: PhantomData<fn(&K) -> V>,
}

impl<K: ?Sized, V> Table<K, V> {
    /// The table called `name` (1–64 chars of `a-z 0-9 _ - .`).
    pub const fn new(name: &'static str) -> Self {
        Self { name, _marker: PhantomData }
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<K: Key + ?Sized, V: Serialize + DeserializeOwned> Table<K, V> {
    fn decode_value(&self, bytes: &[u8]) -> Result<V> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::internal("CorruptValue", format!("a value in table `{}` does not decode: {e}", self.name))
        })
    }

    fn decode_entry(&self, e: RawEntry) -> Result<(K::Owned, Versioned<V>)> {
        let key = K::decode(&e.key)
            .ok_or_else(|| Error::internal("CorruptKey", format!("a key in table `{}` does not decode", self.name)))?;
        Ok((key, Versioned { value: self.decode_value(&e.value)?, version: e.version }))
    }

    /// The value at `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match sys::get(self.name, &key.encode()).map_err(|e| Error::from_kv(e, self.name))? {
            Some(bytes) => Ok(Some(self.decode_value(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The value at `key` with its version.
    pub fn get_versioned(&self, key: &K) -> Result<Option<Versioned<V>>> {
        match sys::get_versioned(self.name, &key.encode()).map_err(|e| Error::from_kv(e, self.name))? {
            Some(e) => Ok(Some(self.decode_entry(e)?.1)),
            None => Ok(None),
        }
    }

    /// The version of `key`, if it exists.
    pub fn version(&self, key: &K) -> Result<Option<TxId>> {
        sys::version(self.name, &key.encode()).map_err(|e| Error::from_kv(e, self.name))
    }

    /// Whether `key` exists.
    pub fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.version(key)?.is_some())
    }

    /// Write `value` at `key`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            Error::internal("SerializationFailed", format!("could not encode a value for `{}`: {e}", self.name))
        })?;
        sys::put(self.name, &key.encode(), &bytes).map_err(|e| Error::from_kv(e, self.name))
    }

    /// Append `value` under a key the ledger assigns when the transaction is ordered:
    /// `prefix ‖ seqno (u64 BE) ‖ n (u32 BE)`. Appended keys sort in ledger order, so a table of
    /// appends is a log per prefix; the new entry is not visible to this request's own reads.
    /// Not for `private.*` tables.
    pub fn append(&self, prefix: &K, value: &V) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            Error::internal("SerializationFailed", format!("could not encode a value for `{}`: {e}", self.name))
        })?;
        sys::append(self.name, &prefix.encode(), &bytes).map_err(|e| Error::from_kv(e, self.name))
    }

    /// Remove `key`; returns whether it existed.
    pub fn delete(&self, key: &K) -> Result<bool> {
        sys::delete(self.name, &key.encode()).map_err(|e| Error::from_kv(e, self.name))
    }

    /// Entries with `from <= key < to` (either bound optional), in key order or reverse, at most
    /// `limit`.
    pub fn range(
        &self,
        from: Option<&K>,
        to: Option<&K>,
        limit: u32,
        reverse: bool,
    ) -> Result<Vec<(K::Owned, Versioned<V>)>> {
        let from = from.map(|k| k.encode());
        let to = to.map(|k| k.encode());
        sys::range(self.name, from.as_deref(), to.as_deref(), limit, reverse)
            .map_err(|e| Error::from_kv(e, self.name))?
            .into_iter()
            .map(|e| self.decode_entry(e))
            .collect()
    }

    /// Every entry in key order, up to `limit`.
    pub fn all(&self, limit: u32) -> Result<Vec<(K::Owned, Versioned<V>)>> {
        self.range(None, None, limit, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_core_tx_ids_parsed_as_before() {
        assert_eq!(parse_version("2.118").unwrap(), cgs_core::TxId::new(2, 118));
        // What plugins always accepted from clients stays accepted.
        assert_eq!(parse_version("01.+2").unwrap(), TxId { term: 1, seqno: 2 });
        for bad in ["", "1", "x", "1.", "1.2.3", "-1.2"] {
            let e = parse_version(bad).unwrap_err();
            assert_eq!((e.kind, e.code.as_str()), (crate::ErrorKind::BadRequest, "InvalidVersion"), "{bad}");
        }
        assert_eq!(serde_json::to_string(&TxId::new(3, 4)).unwrap(), "\"3.4\"");
    }
}
