//! Governance wire format: signed messages (COSE_Sign1, EdDSA), member ids, keys, and the JSON
//! bodies of proposals, ballots and acks.
//!
//! A governance write is a tagged COSE_Sign1 with the JSON payload attached. Protected header:
//! `1` (alg) = -8 (EdDSA); `4` (kid) = member id as the bytes of its lowercase hex string;
//! `"cgs.msg.type"` = `proposal | ballot | withdrawal | ack | login`; `"cgs.msg.created_at"` =
//! seconds since the Unix epoch; `"cgs.msg.proposal_id"` = text for ballots and withdrawals.
//! Member id = lowercase hex SHA-256 of the raw 32-byte Ed25519 public key.
//!
//! (Length: ~430 lines of format code and ~180 of tests of that format; they belong together.)

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Protected header label of the message type.
pub const MSG_TYPE: &str = "cgs.msg.type";
/// Protected header label of the creation time.
pub const MSG_CREATED_AT: &str = "cgs.msg.created_at";
/// Protected header label of the proposal id.
pub const MSG_PROPOSAL_ID: &str = "cgs.msg.proposal_id";
/// Protected header label of the client's nonce (random bytes): two messages with the same
/// content, signed in the same second, are distinct (and their ids unguessable).
pub const MSG_NONCE: &str = "cgs.msg.nonce";
/// Nonce length bounds (bytes).
pub const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=64;
/// Media type of signed governance messages.
pub const CONTENT_TYPE: &str = "application/cose";

/// The kinds of signed governance messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// Create a proposal.
    Proposal,
    /// Vote on a proposal.
    Ballot,
    /// Withdraw one's own proposal.
    Withdrawal,
    /// Acknowledge the service state (Accepted → Active).
    Ack,
    /// Obtain a bearer token.
    Login,
    /// Submit a recovery share to a recovering node.
    RecoveryShare,
}

impl MessageType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Proposal => "proposal",
            MessageType::Ballot => "ballot",
            MessageType::Withdrawal => "withdrawal",
            MessageType::Ack => "ack",
            MessageType::Login => "login",
            MessageType::RecoveryShare => "recovery_share",
        }
    }

    /// From the header value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "proposal" => MessageType::Proposal,
            "ballot" => MessageType::Ballot,
            "withdrawal" => MessageType::Withdrawal,
            "recovery_share" => MessageType::RecoveryShare,
            "ack" => MessageType::Ack,
            "login" => MessageType::Login,
            _ => return None,
        })
    }
}

/// Lowercase hex SHA-256 of a raw Ed25519 public key.
pub fn member_id(public_key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public_key.as_bytes()))
}

/// A key file problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// Parse a PKCS#8 PEM Ed25519 private key.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError(format!("not a PKCS#8 PEM Ed25519 private key: {e}")))
}

/// Encode a private key as PKCS#8 v1 PEM (RFC 8410 form, the one `openssl genpkey -algorithm
/// ed25519` writes and OpenSSL 3.0 and Python's `cryptography` read). [`signing_key_from_pem`]
/// reads v1 and v2 (with the public key).
pub fn signing_key_to_pem(key: &SigningKey) -> String {
    let v1 = ed25519_dalek::pkcs8::KeypairBytes { secret_key: key.to_bytes(), public_key: None };
    v1.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).map(|p| p.to_string()).unwrap_or_default()
}

/// Parse a PEM (SPKI) Ed25519 public key.
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError(format!("not a PEM Ed25519 public key: {e}")))
}

/// Encode a public key as PEM (SPKI).
pub fn verifying_key_to_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap_or_default()
}

/// A member as recorded in `gov.members` (JSON), keyed by member id: written by the constitution
/// (and by genesis), read by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Base64 of the raw 32-byte Ed25519 public key.
    pub public_key: String,
    /// `Accepted` or `Active`.
    pub status: String,
    /// Member data (name, tenant, roles).
    pub data: serde_json::Value,
}

impl MemberRecord {
    /// The public key.
    pub fn key(&self) -> Result<VerifyingKey, String> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(&self.public_key).map_err(|e| e.to_string())?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| "a member key is not 32 bytes".to_string())?;
        VerifyingKey::from_bytes(&raw).map_err(|e| e.to_string())
    }

    /// Roles from `data.roles`.
    pub fn roles(&self) -> Vec<String> {
        self.data["roles"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }
}

/// Sign a governance message: a tagged COSE_Sign1 with `payload` attached, in deterministic
/// (canonical) CBOR — the only form [`Envelope::parse`] accepts.
pub fn sign(
    key: &SigningKey,
    msg_type: MessageType,
    created_at: i64,
    proposal_id: Option<&str>,
    payload: &[u8],
) -> Vec<u8> {
    sign_nonced(key, msg_type, created_at, proposal_id, None, payload)
}

/// [`sign`] with a `cgs.msg.nonce` (16-64 random bytes) in the protected header: the way clients
/// sign, so that two messages with the same content in the same second are both accepted while
/// the same signed bytes sent again are still a replay.
pub fn sign_nonced(
    key: &SigningKey,
    msg_type: MessageType,
    created_at: i64,
    proposal_id: Option<&str>,
    nonce: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    use ciborium::Value;
    let kid = member_id(&key.verifying_key());
    let mut header = vec![
        (Value::Integer(1.into()), Value::Integer((-8).into())),
        (Value::Integer(4.into()), Value::Bytes(kid.into_bytes())),
        (Value::Text(MSG_TYPE.into()), Value::Text(msg_type.as_str().into())),
        (Value::Text(MSG_CREATED_AT.into()), Value::Integer(created_at.into())),
    ];
    if let Some(p) = proposal_id {
        header.push((Value::Text(MSG_PROPOSAL_ID.into()), Value::Text(p.into())));
    }
    if let Some(n) = nonce {
        header.push((Value::Text(MSG_NONCE.into()), Value::Bytes(n.to_vec())));
    }
    // A map of integers, text and bytes always encodes.
    let protected = canonical(&Value::Map(header)).unwrap_or_default();
    let tbs = sig_structure(&protected, payload);
    let signature = key.sign(&tbs).to_bytes().to_vec();
    let msg = Value::Tag(
        COSE_SIGN1_TAG,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(Vec::new()),
            Value::Bytes(payload.to_vec()),
            Value::Bytes(signature),
        ])),
    );
    canonical(&msg).unwrap_or_default()
}

/// CBOR tag of COSE_Sign1 (RFC 9052).
const COSE_SIGN1_TAG: u64 = 18;

/// The COSE `Sig_structure` of a COSE_Sign1 with empty external AAD: what the signature covers.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    use ciborium::Value;
    let s = Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]);
    canonical(&s).unwrap_or_default()
}

/// Deterministic encoding (RFC 8949 §4.2.1): shortest heads, definite lengths, map keys sorted
/// by their encoded bytes and unique. `None` for values that have no such form here (floats,
/// duplicate keys).
fn canonical(v: &ciborium::Value) -> Option<Vec<u8>> {
    use ciborium::Value;
    fn sorted(v: &Value) -> Option<Value> {
        Some(match v {
            Value::Float(_) => return None,
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect::<Option<_>>()?),
            Value::Tag(t, inner) => Value::Tag(*t, Box::new(sorted(inner)?)),
            Value::Map(m) => {
                let mut entries: Vec<(Vec<u8>, Value, Value)> = Vec::with_capacity(m.len());
                for (k, val) in m {
                    let k = sorted(k)?;
                    let mut kb = Vec::new();
                    ciborium::into_writer(&k, &mut kb).ok()?;
                    entries.push((kb, k, sorted(val)?));
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                if entries.windows(2).any(|w| w[0].0 == w[1].0) {
                    return None;
                }
                Value::Map(entries.into_iter().map(|(_, k, v)| (k, v)).collect())
            }
            other => other.clone(),
        })
    }
    let mut out = Vec::new();
    ciborium::into_writer(&sorted(v)?, &mut out).ok()?;
    Some(out)
}

/// Decode `bytes` as one CBOR item that is already in deterministic form.
fn decode_canonical(bytes: &[u8], what: &str) -> Result<ciborium::Value, EnvelopeError> {
    let value: ciborium::Value =
        ciborium::from_reader(bytes).map_err(|e| EnvelopeError::Malformed(format!("{what} is not CBOR: {e}")))?;
    if canonical(&value).as_deref() != Some(bytes) {
        return Err(EnvelopeError::Malformed(format!(
            "{what} is not in deterministic CBOR (RFC 8949 §4.2.1: shortest lengths, definite lengths, \
             sorted unique map keys, no trailing bytes)"
        )));
    }
    Ok(value)
}

/// The largest protected header accepted (the five known headers take under 150 bytes).
const MAX_PROTECTED_HEADER: usize = 1024;

/// A reader of CBOR item heads in deterministic encoding: shortest-form arguments, definite
/// lengths only.
struct Heads<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Heads<'a> {
    /// The next head: (major type, argument).
    fn head(&mut self) -> Result<(u8, u64), EnvelopeError> {
        let bad = |m: &str| EnvelopeError::Malformed(m.to_string());
        let first = *self.bytes.get(self.pos).ok_or_else(|| bad("the message is cut short"))?;
        self.pos += 1;
        let (major, info) = (first >> 5, first & 0x1f);
        let (len, min) = match info {
            0..=23 => return Ok((major, u64::from(info))),
            24 => (1, 24),
            25 => (2, 0x100),
            26 => (4, 0x1_0000),
            27 => (8, 0x1_0000_0000),
            _ => return Err(bad("indefinite lengths and reserved heads are not deterministic CBOR")),
        };
        let raw = self.bytes.get(self.pos..self.pos + len).ok_or_else(|| bad("the message is cut short"))?;
        self.pos += len;
        let arg = raw.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        if arg < min {
            return Err(bad("a length is not in its shortest form (not deterministic CBOR)"));
        }
        Ok((major, arg))
    }

    /// The next item, which must be a byte string; its contents.
    fn bstr(&mut self, what: &str) -> Result<&'a [u8], EnvelopeError> {
        let bad = |m: &str| EnvelopeError::Malformed(m.to_string());
        let (major, len) = self.head()?;
        if major != 2 {
            return Err(bad(what));
        }
        let end = usize::try_from(len).ok().and_then(|l| self.pos.checked_add(l)).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| bad("the message is cut short"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

/// Why a signed message is not acceptable (before membership checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a COSE_Sign1 with the required headers.
    #[error("malformed signed message: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("the signature does not verify with the member's key")]
    BadSignature,
}

/// A parsed signed message (signature not yet verified).
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The signer's member id (from `kid`).
    pub member_id: String,
    /// Message type.
    pub msg_type: MessageType,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Proposal id, for ballots and withdrawals.
    pub proposal_id: Option<String>,
    /// The client's nonce (`cgs.msg.nonce`), if it set one.
    pub nonce: Option<Vec<u8>>,
    /// The attached payload.
    pub payload: Vec<u8>,
    /// The bytes the signature covers (the COSE `Sig_structure`).
    signed: Vec<u8>,
    signature: Vec<u8>,
}

impl Envelope {
    /// Parse a governance message: a **tagged** COSE_Sign1 (`d2 84 …`) in deterministic CBOR,
    /// with an empty unprotected header and the payload attached. Any other encoding of the same
    /// signed content is refused, so a captured message cannot be re-encoded into a "new" one.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        use ciborium::Value;
        let bad = |m: &str| EnvelopeError::Malformed(m.to_string());
        // The outer structure is walked head by head, never decoded into a `Value` tree: an
        // outsider's bytes cannot make the parser allocate more than they sent (review finding
        // M6: 1 MiB of nested empty arrays once took ~100 MiB).
        let mut r = Heads { bytes, pos: 0 };
        if r.head()? != (6, COSE_SIGN1_TAG) {
            return Err(bad("the message must be a COSE_Sign1 with its tag 18 (first byte 0xd2)"));
        }
        if r.head()? != (4, 4) {
            return Err(bad("a COSE_Sign1 is an array of four items"));
        }
        let protected = r.bstr("the protected header must be a byte string")?.to_vec();
        if r.head()? != (5, 0) {
            return Err(bad("the unprotected header must be an empty map"));
        }
        let payload = r.bstr("the payload must be attached (a byte string)")?.to_vec();
        let signature = r.bstr("the signature must be a byte string")?.to_vec();
        if r.pos != bytes.len() {
            return Err(bad("trailing bytes after the COSE_Sign1"));
        }
        if protected.len() > MAX_PROTECTED_HEADER {
            return Err(bad("the protected header is over 1 KiB"));
        }
        let Value::Map(header) = decode_canonical(&protected, "the protected header")? else {
            return Err(bad("the protected header must be a map"));
        };
        let mut alg = None;
        let mut kid = None;
        let (mut msg_type, mut created_at, mut proposal_id, mut nonce) = (None, None, None, None);
        for (label, value) in header {
            match (label, value) {
                (Value::Integer(l), v) if i128::from(l) == 1 => alg = Some(v),
                (Value::Integer(l), Value::Bytes(k)) if i128::from(l) == 4 => kid = Some(k),
                (Value::Text(l), Value::Text(t)) if l == MSG_TYPE => msg_type = MessageType::parse(&t),
                (Value::Text(l), Value::Integer(i)) if l == MSG_CREATED_AT => created_at = i64::try_from(i).ok(),
                (Value::Text(l), Value::Text(t)) if l == MSG_PROPOSAL_ID => proposal_id = Some(t),
                (Value::Text(l), _) if l == MSG_PROPOSAL_ID => return Err(bad("cgs.msg.proposal_id is not text")),
                (Value::Text(l), Value::Bytes(n)) if l == MSG_NONCE && NONCE_LEN.contains(&n.len()) => nonce = Some(n),
                (Value::Text(l), _) if l == MSG_NONCE => {
                    return Err(bad("cgs.msg.nonce must be a byte string of 16 to 64 bytes"));
                }
                (l, _) => {
                    return Err(EnvelopeError::Malformed(format!(
                        "unexpected protected header {l:?}: only alg, kid, cgs.msg.type, cgs.msg.created_at, \
                         cgs.msg.proposal_id and cgs.msg.nonce are allowed"
                    )));
                }
            }
        }
        if !matches!(alg, Some(Value::Integer(a)) if i128::from(a) == -8) {
            return Err(bad("alg must be EdDSA (-8)"));
        }
        let member_id = kid.and_then(|k| String::from_utf8(k).ok()).ok_or_else(|| bad("kid is not a member id"))?;
        if member_id.len() != 64 || !member_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("kid must be the signer's member id (64 lowercase hex digits)"));
        }
        let msg_type = msg_type.ok_or_else(|| bad("cgs.msg.type is missing or unknown"))?;
        let created_at = created_at.ok_or_else(|| bad("cgs.msg.created_at is missing or not an integer"))?;
        let signed = sig_structure(&protected, &payload);
        Ok(Self { member_id, msg_type, created_at, proposal_id, nonce, payload, signed, signature })
    }

    /// The message's identity: SHA-256 of what was signed (the `Sig_structure`), hex. It does not
    /// depend on the encoding, so replay detection and proposal ids keyed on it cannot be evaded
    /// by re-encoding.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(&self.signed))
    }

    /// Verify the signature with the member's key (and that the key is the `kid`'s).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EnvelopeError> {
        if member_id(key) != self.member_id {
            return Err(EnvelopeError::BadSignature);
        }
        let sig = ed25519_dalek::Signature::from_slice(&self.signature).map_err(|_| EnvelopeError::BadSignature)?;
        key.verify_strict(&self.signed, &sig).map_err(|_| EnvelopeError::BadSignature)
    }

    /// The payload as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| EnvelopeError::Malformed(format!("payload is not valid: {e}")))
    }
}

/// One action of a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// `<plugin>.<action>` or a core action.
    pub name: String,
    /// Arguments.
    #[serde(default)]
    pub args: serde_json::Value,
}

/// The payload of a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    /// What to do if accepted, in order, atomically.
    pub actions: Vec<ActionBody>,
}

/// A vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vote {
    /// For.
    Approve,
    /// Against.
    Reject,
}

/// The payload of a ballot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BallotBody {
    /// The vote.
    pub vote: Vote,
}

/// The payload of an ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// The state digest from `GET /gov/members/{id}/state-digest`.
    pub state_digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_makes_the_same_content_a_new_message() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let a = sign_nonced(&key, MessageType::Proposal, 5, None, Some(&[1; 16]), b"{}");
        let b = sign_nonced(&key, MessageType::Proposal, 5, None, Some(&[2; 16]), b"{}");
        let (ea, eb) = (Envelope::parse(&a).unwrap(), Envelope::parse(&b).unwrap());
        assert_ne!(ea.digest(), eb.digest());
        assert_eq!(ea.nonce.as_deref(), Some(&[1u8; 16][..]));
        ea.verify(&key.verifying_key()).unwrap();
        let plain = Envelope::parse(&sign(&key, MessageType::Proposal, 5, None, b"{}")).unwrap();
        assert_eq!((plain.digest() == ea.digest(), plain.nonce), (false, None));
        for bad in [&[0u8; 15][..], &[0u8; 65][..]] {
            let m = sign_nonced(&key, MessageType::Proposal, 5, None, Some(bad), b"{}");
            assert!(Envelope::parse(&m).unwrap_err().to_string().contains("cgs.msg.nonce"), "{} bytes", bad.len());
        }
    }

    #[test]
    fn outer_structure_is_checked_without_decoding_it() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let msg = sign(&key, MessageType::Ballot, 1_700_000_000, Some("p1"), b"{}");
        // 1 MiB of nested arrays where the payload belongs, or instead of the message.
        let mut nested = msg[..4].to_vec();
        nested.extend(std::iter::repeat_n(0x81, 1 << 20));
        assert!(Envelope::parse(&nested).is_err());
        assert!(Envelope::parse(&vec![0x80; 1 << 20]).is_err());
        // Non-shortest lengths, indefinite lengths and trailing bytes.
        let mut long = vec![0xd2, 0x98, 0x04];
        long.extend(&msg[2..]);
        assert!(Envelope::parse(&long).is_err());
        let mut indefinite = vec![0xd2, 0x9f];
        indefinite.extend(&msg[2..]);
        indefinite.push(0xff);
        assert!(Envelope::parse(&indefinite).is_err());
        let mut trailing = msg.clone();
        trailing.push(0);
        assert!(Envelope::parse(&trailing).is_err());
        // Cut short.
        assert!(Envelope::parse(&msg[..msg.len() - 1]).is_err());
        assert!(Envelope::parse(&msg).is_ok());
    }

    #[test]
    fn sign_parse_verify() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let msg = sign(&key, MessageType::Ballot, 1_700_000_000, Some("p1"), br#"{"vote":"approve"}"#);
        let env = Envelope::parse(&msg).unwrap();
        assert_eq!(env.member_id, member_id(&key.verifying_key()));
        assert_eq!(env.msg_type, MessageType::Ballot);
        assert_eq!(env.proposal_id.as_deref(), Some("p1"));
        assert_eq!(env.json::<BallotBody>().unwrap().vote, Vote::Approve);
        env.verify(&key.verifying_key()).unwrap();
        let other = SigningKey::from_bytes(&[6; 32]);
        assert_eq!(env.verify(&other.verifying_key()), Err(EnvelopeError::BadSignature));
        // Flip one payload byte: the signature fails.
        let mut bad = msg.clone();
        let pos = bad.windows(7).position(|w| w == b"approve").unwrap();
        bad[pos] = b'b';
        assert_eq!(Envelope::parse(&bad).unwrap().verify(&key.verifying_key()), Err(EnvelopeError::BadSignature));
        assert!(Envelope::parse(b"nope").is_err());
    }

    /// Every other encoding of a signed message is refused; the identity is what was signed.
    #[test]
    fn re_encodings_are_refused() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let msg = sign(&key, MessageType::Login, 1_700_000_000, None, br#"{"nonce":"n"}"#);
        assert_eq!(msg[..2], [0xd2, 0x84], "tag 18 in its one-byte head, array of 4");
        let env = Envelope::parse(&msg).unwrap();
        env.verify(&key.verifying_key()).unwrap();
        // The same content re-encoded: without the tag, with the tag in a two-byte head, with an
        // indefinite-length array, with a non-shortest length, with trailing bytes, with a
        // non-empty unprotected header.
        let untagged = msg[1..].to_vec();
        let long_tag = [&[0xd8, 0x12][..], &msg[1..]].concat();
        let mut indefinite = vec![0xd2, 0x9f];
        indefinite.extend_from_slice(&msg[2..]);
        indefinite.push(0xff);
        let trailing = [&msg[..], &[0][..]].concat();
        let protected_len = msg[2];
        assert!(protected_len >= 0x58, "the protected header is a byte string with a one-byte length");
        let mut wide_len = vec![0xd2, 0x84, 0x59, 0];
        wide_len.extend_from_slice(&msg[3..]);
        let unprotected_at = 4 + msg[3] as usize;
        assert_eq!(msg[unprotected_at], 0xa0);
        let mut with_unprotected = msg[..unprotected_at].to_vec();
        with_unprotected.extend_from_slice(&[0xa1, 0x04, 0x41, 0x00]);
        with_unprotected.extend_from_slice(&msg[unprotected_at + 1..]);
        for (name, bytes) in [
            ("untagged", untagged),
            ("two-byte tag head", long_tag),
            ("indefinite array", indefinite),
            ("trailing byte", trailing),
            ("two-byte length", wide_len),
            ("unprotected header", with_unprotected),
        ] {
            let e = Envelope::parse(&bytes).err().unwrap_or_else(|| panic!("{name} was accepted"));
            assert!(matches!(e, EnvelopeError::Malformed(_)), "{name}: {e}");
        }
        // The identity is SHA-256 of the Sig_structure: stable, and different per message.
        assert_eq!(env.digest(), Envelope::parse(&msg).unwrap().digest());
        let other = sign(&key, MessageType::Login, 1_700_000_001, None, br#"{"nonce":"n"}"#);
        assert_ne!(env.digest(), Envelope::parse(&other).unwrap().digest());
    }

    #[test]
    fn protected_header_must_be_canonical_and_known() {
        use ciborium::Value;
        let key = SigningKey::from_bytes(&[9; 32]);
        let kid = member_id(&key.verifying_key());
        let build = |header: Vec<(Value, Value)>, encode: fn(&Value) -> Vec<u8>| {
            let protected = encode(&Value::Map(header));
            let tbs = sig_structure(&protected, b"{}");
            let sig = key.sign(&tbs).to_bytes().to_vec();
            let msg = Value::Tag(
                18,
                Box::new(Value::Array(vec![
                    Value::Bytes(protected),
                    Value::Map(vec![]),
                    Value::Bytes(b"{}".to_vec()),
                    Value::Bytes(sig),
                ])),
            );
            canonical(&msg).unwrap()
        };
        let plain = |v: &Value| {
            let mut out = Vec::new();
            ciborium::into_writer(v, &mut out).unwrap();
            out
        };
        let base = || {
            vec![
                (Value::Integer(1.into()), Value::Integer((-8).into())),
                (Value::Integer(4.into()), Value::Bytes(kid.clone().into_bytes())),
                (Value::Text(MSG_TYPE.into()), Value::Text("login".into())),
                (Value::Text(MSG_CREATED_AT.into()), Value::Integer(5.into())),
            ]
        };
        Envelope::parse(&build(base(), |v| canonical(v).unwrap())).unwrap();
        // Keys out of order (validly signed by the member, but not deterministic).
        let mut reversed = base();
        reversed.reverse();
        assert!(Envelope::parse(&build(reversed, plain)).is_err());
        // An unknown header.
        let mut extra = base();
        extra.push((Value::Text("x".into()), Value::Integer(1.into())));
        assert!(Envelope::parse(&build(extra, |v| canonical(v).unwrap())).is_err());
        // A duplicate label.
        let mut dup = base();
        dup.push((Value::Text(MSG_TYPE.into()), Value::Text("ack".into())));
        assert!(Envelope::parse(&build(dup, plain)).is_err());
    }

    #[test]
    fn private_keys_are_pkcs8_v1() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let pem = signing_key_to_pem(&key);
        // RFC 8410 §7 / `openssl genpkey -algorithm ed25519`: 48 bytes, version 0, no public key.
        assert!(pem.contains("MC4CAQAwBQYDK2VwBCIEI"), "{pem}");
        // v2 files (with the public key, as earlier versions wrote) still read.
        let v2 = key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap();
        assert!(v2.contains("MFECAQEw"), "{}", v2.as_str());
        assert_eq!(signing_key_from_pem(&v2).unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn pem_round_trip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let pem = signing_key_to_pem(&key);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(signing_key_from_pem(&pem).unwrap().to_bytes(), key.to_bytes());
        let pubpem = verifying_key_to_pem(&key.verifying_key());
        assert_eq!(verifying_key_from_pem(&pubpem).unwrap(), key.verifying_key());
        assert!(verifying_key_from_pem("junk").is_err());
    }

    #[test]
    fn member_record_json_is_stable() {
        use base64::Engine as _;
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let rec = MemberRecord {
            public_key: base64::engine::general_purpose::STANDARD.encode(key.as_bytes()),
            status: "Active".into(),
            data: serde_json::json!({"name": "dp", "roles": ["operator", 3]}),
        };
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json.as_object().unwrap().keys().collect::<Vec<_>>(), ["data", "public_key", "status"]);
        assert_eq!(serde_json::from_value::<MemberRecord>(json).unwrap(), rec);
        assert_eq!(rec.key().unwrap(), key);
        assert_eq!(rec.roles(), ["operator"]);
        let short = MemberRecord { public_key: "AAAA".into(), ..rec };
        assert!(short.key().is_err());
    }
}
