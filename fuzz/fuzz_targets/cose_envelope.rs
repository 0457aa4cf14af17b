//! `cgs_core::gov::Envelope::parse`: signed governance messages (COSE_Sign1, EdDSA) as
//! `POST /gov/...` receives them, and the JSON payload types they carry.
//!
//! Properties:
//! * parsing is deterministic (same result, same `digest()` twice);
//! * only the strict form parses: a parsed message starts `d2 84` (tagged, array of 4);
//! * `sign` of the parsed fields with the test key parses back to the same fields and verifies;
//! * a message that verifies with the test key is byte for byte what `sign` makes of its
//!   fields (one encoding per signed content), and no single-byte mutation of it both parses
//!   and verifies;
//! * proposal / ballot / ack payloads that deserialize re-serialize to an equal value.
#![no_main]

use cgs_core::gov::{AckBody, BallotBody, Envelope, ProposalBody, member_id, sign};
use libfuzzer_sys::fuzz_target;

fn fields(e: &Envelope) -> (cgs_core::gov::MessageType, i64, Option<String>, Vec<u8>) {
    (e.msg_type, e.created_at, e.proposal_id.clone(), e.payload.clone())
}

fn payload_round_trip<T>(e: &Envelope)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = e.json::<T>() {
        let again: T = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(again, v, "payload does not round-trip");
    }
}

fuzz_target!(|data: &[u8]| {
    let first = Envelope::parse(data);
    let second = Envelope::parse(data);
    let env = match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.digest(), b.digest());
            assert_eq!(fields(&a), fields(&b));
            assert_eq!(a.member_id, b.member_id);
            a
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            return;
        }
        _ => panic!("Envelope::parse is not deterministic"),
    };
    assert_eq!(data[..2], [0xd2, 0x84], "a parsed message is a tagged COSE_Sign1");
    assert_eq!(env.member_id.len(), 64);

    let key = cgs_fuzz::member_key();
    let vk = key.verifying_key();
    let resigned = sign(&key, env.msg_type, env.created_at, env.proposal_id.as_deref(), &env.payload);
    let back = Envelope::parse(&resigned).expect("what sign() makes parses");
    assert_eq!(fields(&back), fields(&env));
    assert_eq!(back.member_id, member_id(&vk));
    back.verify(&vk).expect("what sign() makes verifies");

    if env.verify(&vk).is_ok() {
        assert_eq!(resigned, data, "a verified message has exactly one encoding");
        assert_eq!(back.digest(), env.digest());
        for m in cgs_fuzz::mutations(data, 8) {
            if let Ok(e) = Envelope::parse(&m) {
                assert!(e.verify(&vk).is_err(), "a mutated message still verifies");
            }
        }
    }

    payload_round_trip::<ProposalBody>(&env);
    payload_round_trip::<BallotBody>(&env);
    payload_round_trip::<AckBody>(&env);
    let _ = env.json::<serde_json::Value>();
});
