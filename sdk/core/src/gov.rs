//! Governance wire format: signed messages (COSE_Sign1, EdDSA), member ids, keys, and the JSON
//! bodies of proposals, ballots and acks.
//!
//! A governance write is a tagged COSE_Sign1 with the JSON payload attached. Protected header:
//! `1` (alg) = -8 (EdDSA); `4` (kid) = member id as the bytes of its lowercase hex string;
//! `"cgs.msg.type"` = `proposal | ballot | withdrawal | ack | login`; `"cgs.msg.created_at"` =
//! seconds since the Unix epoch; `"cgs.msg.proposal_id"` = text for ballots and withdrawals.
//! Member id = lowercase hex SHA-256 of the raw 32-byte Ed25519 public key.

use coset::{CborSerializable, Label, TaggedCborSerializable};
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
        }
    }

    /// From the header value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "proposal" => MessageType::Proposal,
            "ballot" => MessageType::Ballot,
            "withdrawal" => MessageType::Withdrawal,
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

/// Encode a private key as PKCS#8 PEM.
pub fn signing_key_to_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).map(|p| p.to_string()).unwrap_or_default()
}

/// Parse a PEM (SPKI) Ed25519 public key.
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError(format!("not a PEM Ed25519 public key: {e}")))
}

/// Encode a public key as PEM (SPKI).
pub fn verifying_key_to_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap_or_default()
}

/// Sign a governance message: a tagged COSE_Sign1 with `payload` attached.
pub fn sign(
    key: &SigningKey,
    msg_type: MessageType,
    created_at: i64,
    proposal_id: Option<&str>,
    payload: &[u8],
) -> Vec<u8> {
    let kid = member_id(&key.verifying_key());
    let mut h = coset::HeaderBuilder::new()
        .algorithm(coset::iana::Algorithm::EdDSA)
        .key_id(kid.into_bytes())
        .text_value(MSG_TYPE.into(), ciborium::Value::Text(msg_type.as_str().into()))
        .text_value(MSG_CREATED_AT.into(), ciborium::Value::Integer(created_at.into()));
    if let Some(p) = proposal_id {
        h = h.text_value(MSG_PROPOSAL_ID.into(), ciborium::Value::Text(p.into()));
    }
    let sign1 = coset::CoseSign1Builder::new()
        .protected(h.build())
        .payload(payload.to_vec())
        .create_signature(b"", |data| key.sign(data).to_bytes().to_vec())
        .build();
    sign1.to_tagged_vec().unwrap_or_default()
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
    /// The attached payload.
    pub payload: Vec<u8>,
    sign1: coset::CoseSign1,
}

impl Envelope {
    /// Parse a (tagged or untagged) COSE_Sign1 governance message.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let bad = |m: &str| EnvelopeError::Malformed(m.to_string());
        let sign1 = coset::CoseSign1::from_tagged_slice(bytes)
            .or_else(|_| coset::CoseSign1::from_slice(bytes))
            .map_err(|e| EnvelopeError::Malformed(format!("not a COSE_Sign1: {e}")))?;
        let p = &sign1.protected.header;
        if p.alg != Some(coset::RegisteredLabelWithPrivate::Assigned(coset::iana::Algorithm::EdDSA)) {
            return Err(bad("alg must be EdDSA (-8)"));
        }
        let member_id = String::from_utf8(p.key_id.clone()).map_err(|_| bad("kid is not a member id"))?;
        if member_id.len() != 64 || !member_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("kid must be the signer's member id (64 lowercase hex digits)"));
        }
        let header = |name: &str| p.rest.iter().find(|(l, _)| *l == Label::Text(name.into())).map(|(_, v)| v);
        let msg_type = header(MSG_TYPE)
            .and_then(|v| v.as_text())
            .and_then(MessageType::parse)
            .ok_or_else(|| bad("cgs.msg.type is missing or unknown"))?;
        let created_at = header(MSG_CREATED_AT)
            .and_then(|v| v.as_integer())
            .and_then(|i| i64::try_from(i).ok())
            .ok_or_else(|| bad("cgs.msg.created_at is missing or not an integer"))?;
        let proposal_id = match header(MSG_PROPOSAL_ID) {
            Some(v) => Some(v.as_text().ok_or_else(|| bad("cgs.msg.proposal_id is not text"))?.to_string()),
            None => None,
        };
        let payload = sign1.payload.clone().ok_or_else(|| bad("the payload must be attached"))?;
        Ok(Self { member_id, msg_type, created_at, proposal_id, payload, sign1 })
    }

    /// Verify the signature with the member's key (and that the key is the `kid`'s).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EnvelopeError> {
        if member_id(key) != self.member_id {
            return Err(EnvelopeError::BadSignature);
        }
        self.sign1.verify_signature(b"", |sig, data| {
            let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| EnvelopeError::BadSignature)?;
            key.verify_strict(data, &sig).map_err(|_| EnvelopeError::BadSignature)
        })
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
}
