//! Seed corpus generator: `seed CORPUS_DIR` writes `CORPUS_DIR/<target>/<name>` for every fuzz
//! target, made with the project's own code (`cgs_core::gov::sign`, the entry encoder, the
//! checkpoint format, the SNP test PKI, the JWT signers). Every "valid" seed is checked to be
//! accepted before it is written.
//!
//! `seed --snp-fixtures FIXTURES_DIR OUT_DIR` turns each folder of real SEV-SNP fixtures
//! (`report.bin`, `vcek.der`/`vlek.der`, `ask.pem`/`asvk.pem`, `ark.pem`) into evidence JSON in
//! `OUT_DIR` (for a CI run's extra, temporary corpus: the fixtures are never copied into the
//! repository).
//!
//! It is built by `cargo fuzz build` with the targets (hence the instrumented runtime it links).

use libfuzzer_sys as _;

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use cgs_core::TxId;
use cgs_core::entry::{Entry, Payload, RaftBody, RaftRecord, Read, SignatureEntry, TableRead, Transaction, Write};
use cgs_core::gov::{MessageType, sign};
use cgs_core::merkle::reference::{mth, path};
use cgs_core::merkle::{Hash, leaf_hash};
use cgs_fuzz::receipts;
use x509_cert::der::{DecodePem as _, Encode as _};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

struct Out {
    root: PathBuf,
    count: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes.as_ref()).unwrap();
        self.count += 1;
    }
}

fn cose_envelope(o: &mut Out) {
    let k = cgs_fuzz::member_key();
    let t = 1_796_169_600;
    let proposal = br#"{"actions":[{"name":"contracts.set_contract","args":{"contract_id":"c1","version":"1.1"}},{"name":"set_member","args":{"public_key":"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n","member_data":{"name":"m"}}}]}"#;
    let msgs: Vec<(&str, Vec<u8>)> = vec![
        ("proposal", sign(&k, MessageType::Proposal, t, None, proposal)),
        ("ballot-approve", sign(&k, MessageType::Ballot, t, Some("p1"), br#"{"vote":"approve"}"#)),
        ("ballot-reject", sign(&k, MessageType::Ballot, t, Some("0".repeat(64).as_str()), br#"{"vote":"reject"}"#)),
        ("withdrawal", sign(&k, MessageType::Withdrawal, t, Some("p1"), b"{}")),
        ("ack", sign(&k, MessageType::Ack, t, None, format!(r#"{{"state_digest":"{}"}}"#, "ab".repeat(32)).as_bytes())),
        ("login", sign(&k, MessageType::Login, -1, None, br#"{"nonce":"n"}"#)),
        ("login-big-time", sign(&k, MessageType::Login, i64::MAX, None, b"")),
    ];
    for (name, m) in &msgs {
        let e = cgs_core::gov::Envelope::parse(m).unwrap();
        e.verify(&k.verifying_key()).unwrap();
        o.put("cose_envelope", name, m);
    }
    // Refused re-encodings of a valid message (as gov.rs's tests build them).
    let msg = &msgs[5].1;
    o.put("cose_envelope", "bad-untagged", &msg[1..]);
    o.put("cose_envelope", "bad-two-byte-tag", [&[0xd8, 0x12][..], &msg[1..]].concat());
    let mut indefinite = vec![0xd2, 0x9f];
    indefinite.extend_from_slice(&msg[2..]);
    indefinite.push(0xff);
    o.put("cose_envelope", "bad-indefinite", indefinite);
    o.put("cose_envelope", "bad-trailing", [&msg[..], &[0][..]].concat());
}

fn sample_entries() -> Vec<Entry> {
    let tx = |term, seqno, caller: &str, op: &str| Entry {
        term,
        seqno,
        payload: Payload::Transaction(Transaction {
            tx_time_ms: 1_796_169_600_000 + seqno,
            caller: caller.into(),
            operation: op.into(),
            request_digest: [4; 32],
            envelope: vec![],
            claims_digest: [0; 32],
            reads: vec![Read {
                table: "contracts.contracts".into(),
                key: b"c1".to_vec(),
                version: Some(TxId::new(1, 3)),
            }],
            table_reads: vec![TableRead { table: "audit.events".into(), version: None }],
            writes: vec![
                Write {
                    table: "contracts.contracts".into(),
                    key: b"c1".to_vec(),
                    value: Some(b"{}".to_vec()),
                    append: false,
                },
                Write {
                    table: "audit.events".into(),
                    key: b"c1\0".to_vec(),
                    value: Some(b"{\"e\":1}".to_vec()),
                    append: true,
                },
                Write { table: "contracts.drafts".into(), key: b"old".to_vec(), value: None, append: false },
            ],
        }),
    };
    vec![
        Entry { term: 1, seqno: 1, payload: Payload::Blank },
        Entry { term: 1, seqno: 2, payload: Payload::Membership(br#"{"voters":[1]}"#.to_vec()) },
        tx(1, 3, "m1", "PUT /app/contracts/c1"),
        tx(2, 4, "", "POST /app/contracts/c1/events"),
        tx(2, 5, "m2", "gov: accept proposal p1"),
    ]
}

fn receipt(o: &mut Out) {
    let key = cgs_fuzz::node_key();
    let vk = cgs_fuzz::node_verifier();
    let entries: Vec<Vec<u8>> = sample_entries().iter().map(Entry::encode).collect();
    let inputs: Vec<[u8; 32]> = entries.iter().map(|e| cgs_core::entry::leaf_input(e)).collect();
    let leaves: Vec<Hash> = inputs.iter().map(|i| leaf_hash(i)).collect();
    for size in [1usize, 3, 5] {
        let root = mth(&leaves[..size]);
        let checkpoint = receipts::checkpoint(&key, size as u64, &root);
        for index in [0usize, size - 1, size / 2] {
            let p = path(index, &leaves[..size]);
            let tx = TxId::new(if index >= 3 { 2 } else { 1 }, index as u64 + 1).to_string();
            let mut cose_variants = vec![
                (
                    "full",
                    receipts::cose(
                        &key,
                        size as u64,
                        index as u64,
                        &p,
                        &root,
                        Some(&tx),
                        &inputs[index],
                        Some(&entries[index]),
                        true,
                    ),
                ),
                (
                    "untagged",
                    receipts::cose(
                        &key,
                        size as u64,
                        index as u64,
                        &p,
                        &root,
                        Some(&tx),
                        &inputs[index],
                        Some(&entries[index]),
                        false,
                    ),
                ),
                (
                    "no-entry",
                    receipts::cose(&key, size as u64, index as u64, &p, &root, Some(&tx), &inputs[index], None, true),
                ),
            ];
            if index == 0 {
                cose_variants.push((
                    "no-tx",
                    receipts::cose(&key, size as u64, index as u64, &p, &root, None, &inputs[index], None, true),
                ));
            }
            if index == 0 && size == 1 {
                // Regression: an attached payload made `verify_detached_signature` panic.
                use coset::TaggedCborSerializable;
                let mut s = coset::CoseSign1::from_tagged_slice(&cose_variants[0].1).unwrap();
                s.payload = Some(vec![]);
                let bytes = s.to_tagged_vec().unwrap();
                assert!(cgs_core::receipt::verify(&bytes, &vk).is_err());
                o.put("receipt", "regression-attached-payload", bytes);
            }
            if index == 1 && size == 3 {
                // Regression (F4): the tree size of a COSE receipt was unsigned; leaf 1 of a tree of
                // 3 and of 4 have the same path, so `[3, 1, path]` → `[4, 1, path]` verified.
                use coset::TaggedCborSerializable;
                let mut s = coset::CoseSign1::from_tagged_slice(&cose_variants[0].1).unwrap();
                let proof = ciborium::Value::Array(vec![
                    ciborium::Value::Integer(4.into()),
                    ciborium::Value::Integer(1.into()),
                    ciborium::Value::Array(p.iter().map(|h| ciborium::Value::Bytes(h.to_vec())).collect()),
                ]);
                let mut proof_bytes = Vec::new();
                ciborium::into_writer(&proof, &mut proof_bytes).unwrap();
                let vdp = ciborium::Value::Map(vec![(
                    ciborium::Value::Integer(cgs_core::receipt::INCLUSION_PROOFS.into()),
                    ciborium::Value::Array(vec![ciborium::Value::Bytes(proof_bytes)]),
                )]);
                for (l, v) in s.unprotected.rest.iter_mut() {
                    if *l == coset::Label::Int(cgs_core::receipt::VDP) {
                        *v = vdp.clone();
                    }
                }
                let bytes = s.to_tagged_vec().unwrap();
                assert!(cgs_core::receipt::verify(&bytes, &vk).is_err());
                o.put("receipt", "regression-cose-tree-size-unsigned", bytes);
            }
            for (name, bytes) in cose_variants {
                cgs_core::receipt::verify(&bytes, &vk).unwrap();
                o.put("receipt", &format!("cose-{size}-{index}-{name}"), bytes);
            }
            for with_entry in [true, false] {
                let j = cgs_core::receipt::JsonReceipt {
                    tx_id: tx.clone(),
                    leaf_index: index as u64,
                    leaf_input: hex::encode(inputs[index]),
                    entry: with_entry.then(|| b64().encode(&entries[index])),
                    tree_size: size as u64,
                    inclusion_proof: p.iter().map(hex::encode).collect(),
                    checkpoint: checkpoint.clone(),
                };
                let bytes = serde_json::to_vec_pretty(&j).unwrap();
                cgs_core::receipt::verify(&bytes, &vk).unwrap();
                if !with_entry && index == 0 && size == 5 {
                    // Regression: an entry-less receipt could name any transaction.
                    let forged = cgs_core::receipt::JsonReceipt { tx_id: "2.5".into(), ..j.clone() };
                    let bytes = serde_json::to_vec_pretty(&forged).unwrap();
                    assert!(cgs_core::receipt::verify(&bytes, &vk).is_err());
                    o.put("receipt", "regression-tx-id-not-leaf-json", bytes);
                }
                o.put(
                    "receipt",
                    &format!("json-{size}-{index}-{}", if with_entry { "full" } else { "no-entry" }),
                    bytes,
                );
            }
        }
    }
}

fn ledger_entry(o: &mut Out) {
    let mut all = sample_entries();
    all.push(Entry {
        term: 2,
        seqno: 6,
        payload: Payload::Signature(SignatureEntry {
            tx_time_ms: 9,
            node_id: 1,
            tree_size: 5,
            root: [7; 32],
            note: receipts::checkpoint(&cgs_fuzz::node_key(), 5, &[7; 32]),
            cose_signature: [8; 64],
        }),
    });
    for (i, e) in all.iter().enumerate() {
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes).as_ref(), Ok(e));
        o.put("ledger_entry", &format!("entry-{i}"), [&[0u8][..], &bytes].concat());
        o.put("ledger_entry", &format!("payload-{i}"), [&[0u8][..], &e.payload.encode()].concat());
    }
    let batch =
        RaftRecord { term: 2, index: 3, body: RaftBody::Batch(all[2..].iter().map(|e| e.payload.encode()).collect()) };
    o.put("ledger_entry", "raft-batch", [&[0u8][..], &batch.encode()].concat());
    let blank = RaftRecord { term: 1, index: 0, body: RaftBody::Blank };
    o.put("ledger_entry", "raft-blank", [&[0u8][..], &blank.encode()].concat());
    let m = RaftRecord { term: 1, index: 1, body: RaftBody::Membership(br#"{"voters":[1,2]}"#.to_vec()) };
    o.put("ledger_entry", "raft-membership", [&[0u8][..], &m.encode()].concat());
    // Structured mode: bytes for `arbitrary` (odd first byte).
    for i in 0..4u8 {
        let bytes: Vec<u8> = (0..96u32).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i * 17)).collect();
        o.put("ledger_entry", &format!("structured-{i}"), [&[1 + 2 * i][..], &bytes].concat());
    }
}

fn checkpoint_note(o: &mut Out) {
    let key = cgs_fuzz::node_key();
    let vk = cgs_fuzz::node_verifier();
    let note = receipts::checkpoint(&key, 5, &[9; 32]);
    cgs_core::note::verify_checkpoint(&note, std::slice::from_ref(&vk)).unwrap();
    o.put("checkpoint_note", "checkpoint", &note);
    o.put("checkpoint_note", "checkpoint-0", receipts::checkpoint(&key, 0, &cgs_core::merkle::empty_root()));
    o.put("checkpoint_note", "checkpoint-max", receipts::checkpoint(&key, u64::MAX, &[0xff; 32]));
    o.put("checkpoint_note", "two-signers", format!("{note}\u{2014} someone-else {}\n", b64().encode([1u8; 68])));
    o.put("checkpoint_note", "body", format!("{}\n5\n{}\next\n", cgs_fuzz::ORIGIN, b64().encode([9u8; 32])));
    o.put("checkpoint_note", "verifier-key", vk.to_string());
    // A note with an extension line, signed.
    {
        use ed25519_dalek::Signer;
        let text = format!("{}\n7\n{}\nextension line\n", cgs_fuzz::ORIGIN, b64().encode([3u8; 32]));
        let mut raw = vk.id.to_vec();
        raw.extend_from_slice(&key.sign(text.as_bytes()).to_bytes());
        let n = format!("{text}\n\u{2014} {} {}\n", cgs_fuzz::ORIGIN, b64().encode(raw));
        cgs_core::note::verify_checkpoint(&n, std::slice::from_ref(&vk)).unwrap();
        o.put("checkpoint_note", "with-extension", n);
    }
}

fn snp_evidence(o: &mut Out) {
    use cgs_fuzz::snp_pki::{PKI, anchors, report};
    let now = UNIX_EPOCH + Duration::from_secs(cgs_fuzz::NOW_SECS);
    let policy = cgs_attestation::VerifyPolicy::default();
    let anchors = anchors();
    for (name, vlek, chain) in [("vcek", false, true), ("vcek-no-chain", false, false), ("vlek", true, true)] {
        let raw = report(vlek, [0x52; 64]);
        let (vek, mid) = if vlek { (&PKI.vlek, &PKI.asvk) } else { (&PKI.vcek, &PKI.ask) };
        let e = cgs_attestation::Evidence::Snp {
            report: b64().encode(&raw),
            vcek: b64().encode(vek),
            ask: chain.then(|| b64().encode(mid)),
            ark: chain.then(|| b64().encode(&PKI.ark)),
        };
        cgs_attestation::verify_with_anchors(&e, &policy, &anchors, now).unwrap();
        o.put("snp_evidence", &format!("json-{name}"), serde_json::to_vec(&e).unwrap());
        // Raw mode: flags byte (bit 0 VLEK, bit 1 no ASK, bit 2 no ARK) then the report.
        let flags = u8::from(vlek) | if chain { 0 } else { 6 };
        o.put("snp_evidence", &format!("raw-{name}"), [&[flags][..], &raw].concat());
    }
    let v = format!(
        r#"{{"kind":"virtual","measurement":"{}","host_data":"{}","report_data":"{}"}}"#,
        "ab".repeat(48),
        "cd".repeat(32),
        "00".repeat(64)
    );
    o.put("snp_evidence", "json-virtual", v);
}

fn jwt(o: &mut Out) {
    let k = cgs_fuzz::issuer_key();
    let now = cgs_fuzz::NOW_SECS;
    let issuer = cgs_fuzz::issuer_record();
    let claims = serde_json::json!({"iss": cgs_fuzz::ISSUER, "sub": "alice", "aud": cgs_fuzz::AUDIENCE,
        "exp": now + 3600, "nbf": now - 10, "tid": "t1", "admin": false, "n": 3});
    let t = cgs_fuzz::users::sign_eddsa(&k, "k1", &claims);
    cgs_fuzz::users::verify(&cgs_fuzz::users::parse(&t).unwrap(), &issuer, now).unwrap();
    o.put("jwt", "user-eddsa", &t);
    let claims2 =
        serde_json::json!({"iss": cgs_fuzz::ISSUER, "sub": "bob", "aud": ["x", cgs_fuzz::AUDIENCE], "exp": now + 1});
    o.put("jwt", "user-eddsa-aud-array", cgs_fuzz::users::sign_eddsa(&k, "k1", &claims2));
    // RFC 7515 A.2 / A.3 tokens (signatures valid; no aud or sub, expired).
    const PAYLOAD: &str =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    o.put("jwt", "rfc7515-rs256", format!("eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"));
    o.put("jwt", "rfc7515-es256", format!("eyJhbGciOiJFUzI1NiJ9.{PAYLOAD}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"));
    let tk = cgs_fuzz::token_key();
    let (member, _) = tk.issue(&"ab".repeat(32), now, 3600);
    tk.verify(&member, now).unwrap();
    o.put("jwt", "service-member", member);
    let room = tk.issue_claims(serde_json::json!({"aud": cgs_fuzz::jwt::CLEANROOM_AUDIENCE, "sub": "s1",
        "contract_id": "c1", "iat": now, "exp": now + 3600, "claims": {"x-ms-sevsnpvm-is-virtual": "true"}}));
    tk.verify_claims(&room, now, cgs_fuzz::jwt::CLEANROOM_AUDIENCE).unwrap();
    o.put("jwt", "service-cleanroom", room);
}

fn http_request(o: &mut Out) {
    for (i, s) in [
        "/contracts/c1?state=Accepted",
        "/contracts/c%201/events?scope=a+b&id=%C3%A9&from=1&to=9&limit=10&order=desc",
        "/contracts/c1/consent/execution/disable",
        "/?flag&&x=",
        "/a/%2F/..%2e?%zz=1",
    ]
    .iter()
    .enumerate()
    {
        o.put("http_request", &format!("req-{i}"), s);
    }
}

fn route_bodies(o: &mut Out) {
    let create = "R contracts m1 PUT /contracts/c1\n{\"data\":{\"purpose\":\"fuzz\"},\"collaborators\":[\"1111111111111111111111111111111111111111111111111111111111111111\",\"2222222222222222222222222222222222222222222222222222222222222222\"],\"users\":[\"https://idp.fuzz|alice\"]}";
    let accept = "A contracts m1 contracts.set_contract apply\n{\"contract_id\":\"c1\",\"version\":\"1.1\"}";
    let seqs: Vec<(&str, Vec<String>)> = vec![
        ("contracts-lifecycle", vec![
            create.into(),
            "R contracts m2 GET /contracts/c1".into(),
            "R contracts m1 PUT /contracts/c1\n{\"version\":\"1.1\",\"data\":{\"v\":2}}".into(),
            "R contracts user GET /contracts?state=Draft".into(),
            "A contracts m1 contracts.set_contract apply\n{\"contract_id\":\"c1\",\"version\":\"1.3\"}".into(),
            "A contracts m1 contracts.set_deployment_spec apply\n{\"contract_id\":\"c1\",\"data\":{\"image\":\"x\"}}".into(),
            "A contracts m2 contracts.set_cleanroom_policy apply\n{\"contract_id\":\"c1\",\"type\":\"add\",\"claims\":{\"x-ms-sevsnpvm-is-virtual\":[\"true\"]}}".into(),
            "R contracts room GET /contracts/c1/deployment-spec".into(),
            "R contracts m1 GET /contracts/c1/cleanroom-policy".into(),
            "A contracts m1 contracts.revoke_contract validate\n{\"contract_id\":\"c1\"}".into(),
        ]),
        ("consent", vec![
            create.into(),
            accept.into(),
            "A consent m1 consent.enable_logging apply\n{\"contract_id\":\"c1\"}".into(),
            "R consent m2 POST /contracts/c1/consent/execution/disable\n{\"reason\":\"stop\"}".into(),
            "R consent room GET /contracts/c1/consent/execution".into(),
            "R consent user GET /contracts/c1/consent/logging".into(),
            "A consent m2 consent.disable_telemetry apply\n{\"contract_id\":\"c1\"}".into(),
            "R consent m1 GET /contracts/c1/consent-proposals".into(),
            "R consent m2 POST /contracts/c1/consent/execution/enable".into(),
        ]),
        ("audit", vec![
            create.into(),
            accept.into(),
            "R audit room POST /contracts/c1/events?scope=query&id=q1\n{\"rows\":10}".into(),
            "R audit m1 POST /contracts/c1/events?scope=query\n{\"rows\":[1,2]}".into(),
            "R audit m2 GET /contracts/c1/events?scope=query&id=q1&from=0&to=99&limit=5&order=desc".into(),
            "R audit user GET /contracts/c1/events?limit=1000".into(),
        ]),
        ("constitution", vec![
            "A constitution m1 set_action_threshold apply\n{\"action\":\"contracts.set_contract\",\"required\":2}".into(),
            "A constitution m1 add_node_measurement apply\n{\"measurement\":\"".to_string() + &"ab".repeat(48) + "\"}",
            "A constitution m1 set_node_min_tcb validate\n{\"generation\":\"Milan\",\"tcb\":{\"bootloader\":4,\"tee\":0,\"snp\":24,\"microcode\":219}}".into(),
            "A constitution m1 set_jwt_issuer validate\n{\"issuer\":\"https://idp.fuzz\",\"audience\":\"cgs\",\"jwks\":{\"keys\":[]}}".into(),
            "A constitution m1 set_recovery_threshold apply\n{\"threshold\":1}".into(),
            "A constitution m1 set_user_identity validate\n{\"issuer\":\"https://idp.fuzz\",\"subject\":\"alice\"}".into(),
        ]),
        ("host-bodies", vec![
            "H session\n{\"evidence\":{\"kind\":\"virtual\",\"measurement\":\"".to_string() + &"ab".repeat(48) + "\",\"host_data\":\"" + &"cd".repeat(32) + "\",\"report_data\":\"" + &"00".repeat(64) + "\"},\"public_key\":\"AAAA\",\"nonce\":\"n1\"}",
            "H secret\n{\"value\":\"s3cr3t\"}".into(),
            "H token\n{\"aud\":\"https://rp\",\"sub\":\"c1\"}".into(),
        ]),
    ];
    for (name, records) in seqs {
        o.put("route_bodies", name, records.join("\0"));
    }
}

fn node_attestation(o: &mut Out) {
    use cgs_fuzz::snp_pki::{PKI, report};
    use ed25519_dalek::Signer;
    let key = cgs_fuzz::node_key();
    let pk = key.verifying_key().to_bytes();
    let rd = cgs_core::node_attestation::report_data_for(&pk);
    let evidences = [
        serde_json::json!({"kind": "virtual", "measurement": "ab".repeat(48), "host_data": "cd".repeat(32),
            "report_data": hex::encode(rd)}),
        serde_json::to_value(cgs_attestation::Evidence::Snp {
            report: b64().encode(report(false, rd)),
            vcek: b64().encode(&PKI.vcek),
            ask: None,
            ark: None,
        })
        .unwrap(),
    ];
    for (i, evidence) in evidences.into_iter().enumerate() {
        let mut doc = serde_json::json!({
            "evidence": evidence,
            "node_public_key": b64().encode(pk),
            "service_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "plugins": [{"name": "contracts", "version": "0.1.0", "blake3": "00".repeat(32)}],
            "constitution": {"name": "constitution", "version": "0.1.0", "blake3": "11".repeat(32)},
        });
        let sig = key.sign(&cgs_core::node_attestation::signed_bytes(&doc)).to_bytes();
        doc["signature"] = b64().encode(sig).into();
        cgs_core::node_attestation::verify_signature(&doc).unwrap();
        o.put("node_attestation", &format!("doc-{i}"), serde_json::to_vec_pretty(&doc).unwrap());
    }
}

fn ledger_replay(o: &mut Out) {
    // `arbitrary` input: a few byte patterns to start from.
    for i in 0..6u8 {
        let bytes: Vec<u8> = (0..200u32).map(|j| (j as u8).wrapping_mul(13 + 2 * i).wrapping_add(i)).collect();
        o.put("ledger_replay", &format!("ops-{i}"), bytes);
    }
}

fn snp_fixtures(dir: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let pem = |p: &Path| -> Option<Vec<u8>> {
        let b = std::fs::read(p).ok()?;
        x509_cert::Certificate::from_pem(&b).ok()?.to_der().ok()
    };
    let mut n = 0;
    for d in std::fs::read_dir(dir).unwrap().flatten() {
        let p = d.path();
        let Ok(report) = std::fs::read(p.join("report.bin")) else { continue };
        let Some(vek) = std::fs::read(p.join("vcek.der")).or_else(|_| std::fs::read(p.join("vlek.der"))).ok() else {
            continue;
        };
        let ask = pem(&p.join("ask.pem")).or_else(|| pem(&p.join("asvk.pem")));
        let ark = pem(&p.join("ark.pem"));
        let e = cgs_attestation::Evidence::Snp {
            report: b64().encode(&report),
            vcek: b64().encode(&vek),
            ask: ask.map(|a| b64().encode(a)),
            ark: ark.map(|a| b64().encode(a)),
        };
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::write(out.join(format!("fixture-{name}.json")), serde_json::to_vec(&e).unwrap()).unwrap();
        std::fs::write(out.join(format!("fixture-{name}.raw")), [&[0u8][..], &report].concat()).unwrap();
        n += 1;
    }
    println!("wrote {n} fixture evidence seeds to {}", out.display());
}

fn analytics_sql(o: &mut Out) {
    let seeds = [
        ("join", "SELECT c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales s JOIN customers c ON s.customer_id = c.id WHERE c.segment <> 'x' GROUP BY c.segment HAVING COUNT(*) > 1 ORDER BY total DESC LIMIT 10"),
        ("rows", "SELECT segment FROM customers WHERE segment LIKE 'a%' AND id IN (1, 2, 3)"),
        ("case", "SELECT CASE WHEN segment = 'a' THEN 1 ELSE 0 END, COUNT(*) FROM customers GROUP BY segment"),
        ("refused-output", "SELECT secret FROM customers"),
        ("refused-subquery", "SELECT segment FROM customers WHERE id IN (SELECT customer_id FROM sales)"),
        ("refused-wildcard", "SELECT * FROM sales"),
        ("aggregate-only", "SELECT region, COUNT(*), AVG(amount) FROM sales GROUP BY region"),
    ];
    for (name, sql) in seeds {
        o.put("analytics_sql", name, sql);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, fixtures, out] if flag == "--snp-fixtures" => snp_fixtures(Path::new(fixtures), Path::new(out)),
        [flag, out] if flag == "--write-pki" => {
            let bytes = cgs_fuzz::snp_pki::generate().to_bytes();
            std::fs::write(out, &bytes).unwrap();
            println!("wrote the SNP test PKI ({} bytes) to {out}", bytes.len());
        }
        [dir] => {
            let mut o = Out { root: PathBuf::from(dir), count: 0 };
            cose_envelope(&mut o);
            receipt(&mut o);
            ledger_entry(&mut o);
            checkpoint_note(&mut o);
            snp_evidence(&mut o);
            jwt(&mut o);
            http_request(&mut o);
            route_bodies(&mut o);
            ledger_replay(&mut o);
            node_attestation(&mut o);
            analytics_sql(&mut o);
            println!("wrote {} seeds under {dir}", o.count);
        }
        _ => {
            eprintln!("usage: seed CORPUS_DIR | seed --snp-fixtures FIXTURES_DIR OUT_DIR | seed --write-pki FILE");
            std::process::exit(2);
        }
    }
}
