//! Signed governance messages: who signed, whether the signature verifies, the type, freshness,
//! and replay.

use cgs_core::gov::{Envelope, MessageType};

use super::{ErrorKind, Governance, MemberRecord, err, tables};
use crate::error::ServiceError;
use crate::txn::StateTx;

impl Governance {
    /// Check a signed message: known signer of an allowed status, valid signature, the expected
    /// type, fresh, not seen before (and remember it in `g`).
    pub(super) fn check_envelope(
        &self,
        g: &mut StateTx,
        bytes: &[u8],
        expected: MessageType,
        url_proposal: Option<&str>,
    ) -> Result<(Envelope, MemberRecord), ServiceError> {
        let env = Envelope::parse(bytes).map_err(|e| err(ErrorKind::Invalid, "InvalidSignedMessage", e.to_string()))?;
        let member = self.member(g, &env.member_id)?.ok_or_else(|| {
            err(
                ErrorKind::Unauthenticated,
                "UnknownMember",
                format!("{} is not a member of this service", env.member_id),
            )
        })?;
        let key = member.key().map_err(ServiceError::unavailable)?;
        env.verify(&key).map_err(|_| {
            err(
                ErrorKind::Unauthenticated,
                "InvalidSignature",
                "the signature does not verify with the member's registered key",
            )
        })?;
        let needs_active = !matches!(expected, MessageType::Ack | MessageType::Login);
        if needs_active && member.status != "Active" {
            return Err(err(
                ErrorKind::Forbidden,
                "MemberNotActive",
                format!("member {} must ack the service state before it can {}", env.member_id, expected.as_str()),
            ));
        }
        if env.msg_type != expected {
            return Err(err(
                ErrorKind::Invalid,
                "WrongMessageType",
                format!("this route takes a signed `{}` message, not `{}`", expected.as_str(), env.msg_type.as_str()),
            ));
        }
        let now = (g.now_ms / 1000) as i64;
        let skew = self.config.max_clock_skew.as_secs() as i64;
        if (env.created_at - now).abs() > skew {
            return Err(err(
                ErrorKind::Invalid,
                "StaleMessage",
                format!("created_at is {} s from service time; at most {skew} s is accepted", env.created_at - now),
            ));
        }
        if let Some(url) = url_proposal
            && env.proposal_id.as_deref() != Some(url)
        {
            return Err(err(
                ErrorKind::Invalid,
                "ProposalIdMismatch",
                "cgs.msg.proposal_id must be the proposal id of the URL",
            ));
        }
        // Keyed on what was signed, not on the bytes: `Envelope::parse` admits one encoding only,
        // and the identity would not change even if it admitted more.
        let digest = env.digest();
        if g.get::<serde_json::Value>(tables::ENVELOPES, &digest)?.is_some() {
            return Err(err(ErrorKind::Conflict, "Replay", "this signed message was already submitted"));
        }
        g.put(tables::ENVELOPES, &digest, &serde_json::json!({"at_ms": g.now_ms, "member_id": env.member_id}))?;
        Ok((env, member))
    }
}
