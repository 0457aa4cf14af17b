//! Governance end to end: a consortium opens the service, admits a member, refuses bad messages;
//! a plugin is upgraded by vote after members verify its hash; a failing apply changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use cgs_client::Member;
use cgs_core::gov::MessageType;
use cgs_e2e::{Sandbox, code, copy_tree, plugins_dir, workspace};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn keygen(sb_cli: impl Fn(&[&str]) -> (bool, String, String), prefix: &Path) -> String {
    let (ok, out, err) = sb_cli(&["--json", "keygen", "--out", prefix.to_str().unwrap()]);
    assert!(ok, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["member_id"].as_str().unwrap().to_string()
}

fn pem(prefix: &Path) -> String {
    std::fs::read_to_string(prefix.with_extension("pub")).unwrap()
}

fn cli_plain(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(&cgs_e2e::binaries().cli).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn proposal_id(r: cgs_client::ApiResponse) -> (String, String) {
    let v = r.ok_json().unwrap();
    (v["proposal_id"].as_str().unwrap().to_string(), v["state"].as_str().unwrap().to_string())
}

/// Three members create and open a service with `cgs-host start --genesis`; a fourth is proposed,
/// accepted, acks and votes; bad messages are refused with the documented codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consortium_opens_the_service_and_admits_a_member() {
    let tmp = tempfile::tempdir().unwrap();
    let keys: Vec<_> = ["alice", "bob", "carol"].iter().map(|n| tmp.path().join(n)).collect();
    for k in &keys {
        keygen(cli_plain, k);
    }
    let measured = cgs_build::measure_dir(plugins_dir()).unwrap();
    let constitution =
        measured.iter().find(|(_, m)| m.info.world == cgs_core::plugin::World::Constitution).unwrap().1.blake3;
    let apps: Vec<String> = measured
        .iter()
        .filter(|(_, m)| m.info.world == cgs_core::plugin::World::AppPlugin)
        .map(|(_, m)| m.blake3.to_hex())
        .collect();
    let genesis = json!({
        "members": keys.iter().zip(["alice", "bob", "carol"]).map(|(k, n)| json!({"public_key": pem(k), "member_data": {"name": n}})).collect::<Vec<_>>(),
        "constitution": constitution,
        "plugins": apps,
    });
    let genesis_path = tmp.path().join("genesis.json");
    std::fs::write(&genesis_path, genesis.to_string()).unwrap();
    let data = tmp.path().join("data");
    let args: Vec<std::ffi::OsString> = vec![
        "start".into(),
        "--dir".into(),
        data.clone().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--log".into(),
        "warn".into(),
        "--genesis".into(),
        genesis_path.into(),
        "--plugins".into(),
        plugins_dir().into(),
    ];
    let sb = Sandbox::spawn(&data, &args).await.unwrap();
    let c = &sb.client;
    let service = c.get("/gov/service").await.unwrap().ok_json().unwrap();
    assert_eq!(service["status"], "Opening");
    assert_eq!(service["insecure_virtual_attestation"], false, "the genesis did not allow virtual evidence");
    let r = c.get("/app/contracts").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (503, "ServiceNotOpen"));

    let member =
        |i: usize| Member::new(c.clone(), &std::fs::read_to_string(keys[i].with_extension("key")).unwrap()).unwrap();
    let (alice, bob, carol) = (member(0), member(1), member(2));

    // An Accepted (not yet active) member cannot propose.
    let r = alice.propose(json!([{"name": "transition_service_to_open", "args": {}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (403, "MemberNotActive"));

    // The members ack (through the CLI) and open the service by unanimity.
    for k in &keys {
        let (ok, out, err) = sb.cli(Some(&k.with_extension("key")), &["member", "ack"]);
        assert!(ok && out.contains("Active"), "{out}{err}");
    }
    // Before proposing: a dry run says it needs all three approvals and would apply, and writes
    // nothing (the service stays Opening).
    let (ok, out, err) = sb
        .cli(Some(&keys[0].with_extension("key")), &["proposal", "simulate", "--action", "transition_service_to_open"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("with 3 more approval(s)") && out.contains("Accepted"), "{out}");
    assert!(out.contains("apply 0 `transition_service_to_open`: ok") && out.contains("nothing was written"), "{out}");
    assert_eq!(c.get("/gov/service").await.unwrap().ok_json().unwrap()["status"], "Opening");
    let (ok, out, err) = sb.cli(
        Some(&keys[0].with_extension("key")),
        &["--json", "proposal", "create", "--action", "transition_service_to_open"],
    );
    assert!(ok, "{err}");
    let open_id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["proposal_id"].as_str().unwrap().to_string();
    for (i, k) in keys.iter().enumerate() {
        let (ok, out, err) = sb.cli(Some(&k.with_extension("key")), &["proposal", "vote", &open_id, "approve"]);
        assert!(ok, "{err}");
        assert!(out.contains(if i == 2 { "Accepted" } else { "Open" }), "{out}");
    }
    assert_eq!(c.get("/gov/service").await.unwrap().ok_json().unwrap()["status"], "Open");
    // Before each vote the CLI checked that the service's ledger extends the checkpoint it kept
    // of it, and kept the newer one. A kept checkpoint the ledger does not extend (its history
    // rewritten since the member saw it) makes the CLI refuse to vote, before sending anything.
    let kept =
        cgs_client::checkpoints::kept_path(&sb.data.join("cli-state"), &std::fs::read_to_string(&sb.ca).unwrap())
            .unwrap();
    let (note, seen) = cgs_client::checkpoints::load(&kept).unwrap().expect("the CLI kept a checkpoint");
    let with_line = |i: usize, line: &str| cgs_e2e::note_with_line(&note, i, line);
    use base64::Engine as _;
    std::fs::write(&kept, with_line(2, &base64::engine::general_purpose::STANDARD.encode([7u8; 32]))).unwrap();
    let key0 = keys[0].with_extension("key");
    let (ok, _, err) = sb.cli(Some(&key0), &["proposal", "vote", &open_id, "approve"]);
    assert!(!ok && err.contains("does not extend"), "{err}");
    let (ok, _, err) = sb.cli(None, &["ledger", "checkpoint"]);
    assert!(!ok && err.contains("rewritten"), "{err}");
    // A kept checkpoint larger than anything the node signed (a service rolled back, or a node
    // far behind) is refused once the node had a few seconds to catch up.
    std::fs::write(&kept, with_line(1, "99999999")).unwrap();
    let (ok, _, err) = sb.cli(Some(&key0), &["proposal", "vote", &open_id, "approve"]);
    assert!(!ok && err.contains("older than the one you kept"), "{err}");
    // Members who agree the history changed keep the service's current one, unchecked.
    let (ok, out, err) = sb.cli(None, &["ledger", "checkpoint", "--reset"]);
    assert!(ok, "{err}");
    let (_, reset) = cgs_client::checkpoints::load(&kept).unwrap().unwrap();
    assert_eq!(cgs_client::recovery::held_checkpoint(&out).unwrap(), reset);
    // The one kept at the last vote back: the service signed more since (the ballot, the
    // opening), and the CLI keeps the newer checkpoint it printed.
    std::fs::write(&kept, &note).unwrap();
    let (ok, out, err) = sb.cli(None, &["ledger", "checkpoint"]);
    assert!(ok, "{err}");
    let (_, latest) = cgs_client::checkpoints::load(&kept).unwrap().unwrap();
    assert!(latest.size > seen.size, "{latest:?} {seen:?}");
    assert_eq!(cgs_client::recovery::held_checkpoint(&out).unwrap(), latest);
    // Open: app routes answer (here: credentials are needed) instead of 503.
    assert_eq!(c.get("/app/contracts").await.unwrap().status, 401);
    assert_eq!(alice.authed("GET", "/app/contracts", None).await.unwrap().status, 200);

    // A fourth member is proposed and accepted.
    let dave_key = tmp.path().join("dave");
    let dave_id = keygen(cli_plain, &dave_key);
    let (p4, state) = proposal_id(alice.propose(json!([{"name": "set_member", "args": {"public_key": pem(&dave_key), "member_data": {"name": "dave", "tenant": "auditors"}}}])).await.unwrap()).await;
    assert_eq!(state, "Open");
    for m in [&alice, &bob, &carol] {
        m.vote(&p4, true).await.unwrap().ok().unwrap();
    }
    let shown = alice.authed("GET", &format!("/gov/proposals/{p4}"), None).await.unwrap().ok_json().unwrap();
    assert_eq!(shown["state"], "Accepted");
    assert_eq!(shown["final_votes"].as_object().unwrap().len(), 3);
    assert!(shown["history"].as_array().unwrap().len() >= 2);
    let dave = Member::new(c.clone(), &std::fs::read_to_string(dave_key.with_extension("key")).unwrap()).unwrap();
    assert_eq!(dave.id(), dave_id);

    // A new proposal the fourth member will vote on.
    let (p5, _) = proposal_id(
        bob.propose(json!([{"name": "set_action_threshold", "args": {"action": "set_member_data", "required": 2}}]))
            .await
            .unwrap(),
    )
    .await;
    // Inactive member: refused.
    let r = dave.vote(&p5, true).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (403, "MemberNotActive"));
    dave.ack().await.unwrap().ok().unwrap();
    for m in [&alice, &bob, &carol] {
        m.vote(&p5, true).await.unwrap().ok().unwrap();
    }
    let r = dave.vote(&p5, true).await.unwrap().ok_json().unwrap();
    assert_eq!(r["state"], "Accepted", "unanimity now includes the fourth member");

    // A non-member.
    let stranger = Member::from_key(c.clone(), ed25519_dalek::SigningKey::from_bytes(&[42; 32]));
    let r = stranger.propose(json!([{"name": "transition_service_to_open", "args": {}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (401, "UnknownMember"));
    // A bad signature: a valid message with one payload byte changed.
    let (p6, _) = proposal_id(
        alice.propose(json!([{"name": "set_recovery_threshold", "args": {"threshold": 2}}])).await.unwrap(),
    )
    .await;
    let mut forged = bob.sign(MessageType::Ballot, Some(&p6), &json!({"vote": "approve"}));
    let pos = forged.windows(7).position(|w| w == b"approve").unwrap();
    forged[pos + 6] = b'd';
    let r = bob.post_signed(&format!("/gov/proposals/{p6}/ballots"), forged).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (401, "InvalidSignature"));
    // A replayed ballot.
    let ballot = bob.sign(MessageType::Ballot, Some(&p6), &json!({"vote": "approve"}));
    assert_eq!(bob.post_signed(&format!("/gov/proposals/{p6}/ballots"), ballot.clone()).await.unwrap().status, 200);
    let r = bob.post_signed(&format!("/gov/proposals/{p6}/ballots"), ballot).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (409, "Replay"));
    // A message ten minutes old.
    let key =
        cgs_core::gov::signing_key_from_pem(&std::fs::read_to_string(keys[2].with_extension("key")).unwrap()).unwrap();
    let old = cgs_core::gov::sign(&key, MessageType::Ballot, now() - 600, Some(&p6), br#"{"vote":"approve"}"#);
    let r = carol.post_signed(&format!("/gov/proposals/{p6}/ballots"), old).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "StaleMessage"));
    // The wrong message type for the route.
    let wrong = carol.sign(MessageType::Withdrawal, Some(&p6), &json!({}));
    let r = carol.post_signed(&format!("/gov/proposals/{p6}/ballots"), wrong).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "WrongMessageType"));
    // Only the proposer withdraws; a withdrawn proposal takes no more votes.
    let r = bob.withdraw(&p6).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (403, "NotTheProposer"));
    assert_eq!(alice.withdraw(&p6).await.unwrap().ok_json().unwrap()["state"], "Withdrawn");
    let r = carol.vote(&p6, true).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (405, "ProposalNotOpen"));
    // Unknown actions and bad arguments are refused at proposal time.
    let r = alice.propose(json!([{"name": "nonexistent.action", "args": {}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "UnknownAction"));
    let r = alice.propose(json!([{"name": "set_member", "args": {"public_key": "junk"}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "InvalidPublicKey"));
}

/// Set the crate at `rel` in the checkout `src` from version 0.1.0 to 0.2.0 and update the lock
/// file for it, as its author would.
fn bump_to_0_2_0(src: &Path, rel: &str) {
    let manifest = src.join(rel).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1)).unwrap();
    let st = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(src)
        .args(["update", "--workspace", "--offline"])
        .status()
        .unwrap();
    assert!(st.success());
}

/// An ISV publishes a new version of a plugin; members verify the hash against their own rebuild
/// and vote; the new behaviour is served; an open proposal for the old version is dropped; the
/// ledger records who voted for which hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_is_upgraded_by_vote() {
    let mut sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let keys = ["isv", "data-provider", "code-provider"].map(|n| sb.data.join("members").join(format!("{n}.key")));

    // An open proposal that uses an action of the current chaos plugin.
    let (old, _) =
        proposal_id(dp.propose(json!([{"name": "chaos.set_flag", "args": {"value": 1}}])).await.unwrap()).await;

    // The ISV's new version: another response, version 0.2.0.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("isv-checkout");
    copy_tree(&workspace(), &src);
    let lib = src.join("tests/plugins/chaos/src/lib.rs");
    let code_text = std::fs::read_to_string(&lib)
        .unwrap()
        .replace(r#"json!({"ok": true,"#, r#"json!({"ok": true, "release": "v2","#);
    std::fs::write(&lib, code_text).unwrap();
    bump_to_0_2_0(&src, "tests/plugins/chaos");
    let src_s = src.to_str().unwrap();

    let plugins = sb.client.get("/gov/plugins").await.unwrap().ok_json().unwrap();
    let v1 = plugins["value"].as_array().unwrap().iter().find(|p| p["name"] == "chaos").unwrap()["blake3"].clone();

    let plugin_dir = src.join("tests/plugins/chaos");
    let (ok, out, err) = sb.cli(Some(&keys[0]), &["--json", "plugin", "publish", plugin_dir.to_str().unwrap()]);
    assert!(ok, "publish: {err}");
    let published: serde_json::Value = serde_json::from_str(&out).unwrap();
    let upgrade = published["proposal_id"].as_str().unwrap().to_string();
    let hash = published["args"]["blake3"].as_str().unwrap().to_string();
    assert_eq!(published["args"]["version"], "0.2.0");
    // A second, competing proposal of the same plugin (here: the same build) stays open until
    // one of them is accepted.
    let (rival, state) =
        proposal_id(cp.propose(json!([{"name": "set_plugin", "args": published["args"].clone()}])).await.unwrap())
            .await;
    assert_eq!(state, "Open");

    // Each member rebuilds from the same sources and compares with the proposed hash.
    for k in &keys {
        let (ok, out, err) =
            sb.cli(Some(k), &["plugin", "verify", "chaos", "--proposal", &upgrade, "--workspace", src_s]);
        assert!(ok && out.starts_with("MATCH"), "{out}{err}");
    }
    // The currently active plugin does not match the new sources (and verify says so).
    let (ok, out, _) = sb.cli(Some(&keys[1]), &["plugin", "verify", "chaos", "--workspace", src_s]);
    assert!(!ok && out.starts_with("MISMATCH"), "{out}");

    for m in [&isv, &dp, &cp] {
        m.vote(&upgrade, true).await.unwrap().ok().unwrap();
    }
    let p = isv.authed("GET", &format!("/gov/proposals/{upgrade}"), None).await.unwrap().ok_json().unwrap();
    assert_eq!(p["state"], "Accepted");

    // The new behaviour is served.
    let ok_resp = sb.client.get("/app/chaos/ok").await.unwrap().ok_json().unwrap();
    assert_eq!(ok_resp["release"], "v2");
    let plugins = sb.client.get("/gov/plugins").await.unwrap().ok_json().unwrap();
    let chaos = plugins["value"].as_array().unwrap().iter().find(|p| p["name"] == "chaos").unwrap().clone();
    assert_eq!((chaos["version"].as_str(), chaos["blake3"].as_str()), (Some("0.2.0"), Some(hash.as_str())));
    let (ok, out, err) = sb.cli(Some(&keys[2]), &["plugin", "verify", "chaos", "--workspace", src_s]);
    assert!(ok && out.starts_with("MATCH"), "{out}{err}");

    // The proposal for the old version was dropped.
    let o = isv.authed("GET", &format!("/gov/proposals/{old}"), None).await.unwrap().ok_json().unwrap();
    assert_eq!(o["state"], "Dropped", "{o}");
    let r = cp.vote(&old, true).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (405, "ProposalNotOpen"));

    // Accepting a version drops every other open change of that plugin, saying why: voting it
    // later would silently undo what was just accepted.
    let o = isv.authed("GET", &format!("/gov/proposals/{rival}"), None).await.unwrap().ok_json().unwrap();
    assert_eq!(o["state"], "Dropped", "{o}");
    let why = o["history"].as_array().unwrap().last().unwrap()["reason"].as_str().unwrap().to_string();
    assert!(why.contains(&upgrade) && why.contains("changed plugin `chaos` first"), "{why}");
    // Versions only go up: 0.1.0 again is a downgrade, refused when proposed; the same version
    // or the same bytes again are refused too. A rollback is voted with its reason.
    let back = json!({"name": "chaos", "version": "0.1.0", "blake3": v1});
    let r = isv.propose(json!([{"name": "set_plugin", "args": back.clone()}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "PluginDowngrade"), "{}", String::from_utf8_lossy(&r.body));
    let r = isv.propose(json!([{"name": "set_plugin", "args": published["args"].clone()}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "PluginUnchanged"));
    let mut rollback = back.clone();
    rollback["rollback"] = json!("v2 answers differently; back to what the clean rooms were tested with");
    let (_, state) = proposal_id(isv.propose(json!([{"name": "set_plugin", "args": rollback}])).await.unwrap()).await;
    assert_eq!(state, "Open", "a rollback with a reason may be voted");
    // A core plugin (the service's own `audit`) is not replaced by name without saying so.
    bump_to_0_2_0(&src, "plugins/audit");
    let audit_dir = src.join("plugins/audit");
    let (ok, out, err) =
        sb.cli(Some(&keys[0]), &["--json", "plugin", "publish", audit_dir.to_str().unwrap(), "--replace-core"]);
    assert!(ok, "publish --replace-core: {out}{err}");
    let replacing: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((replacing["state"].as_str(), &replacing["args"]["replace_core"]), (Some("Open"), &json!(true)));
    let mut unannounced = replacing["args"].clone();
    unannounced.as_object_mut().unwrap().remove("replace_core");
    let r = isv.propose(json!([{"name": "set_plugin", "args": unannounced}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "CorePluginReplacement"));

    // The ledger holds the signed ballots: who voted for which hash. They are encrypted in the
    // files (a proposal names policies and users); a member fetches them through the API and
    // checks them offline against the digests the ledger commits to.
    let envelopes = signed_messages(&isv, &sb).await;
    let data = sb.data.clone();
    assert!(sb.terminate().unwrap().success());
    let (voters, proposed_hash) = ledger_votes(&data, &envelopes, &upgrade, &hash);
    let mut expected = vec![isv.id(), dp.id(), cp.id()];
    expected.sort();
    assert_eq!(voters, expected, "every ballot on the upgrade is in the ledger, signed by its member");
    assert_eq!(proposed_hash, Some(isv.id()), "the signed proposal with the hash is in the ledger");
    let (ok, _, err) = cli_plain(&["ledger", "verify", data.to_str().unwrap()]);
    assert!(ok, "{err}");
}

/// Every signed governance message the service recorded, by seqno, as a member reads them from
/// `GET /node/entry/{tx}`.
async fn signed_messages(member: &Member, sb: &Sandbox) -> std::collections::BTreeMap<u64, Vec<u8>> {
    use base64::Engine as _;
    let health = sb.client.get("/node/health").await.unwrap().ok_json().unwrap();
    let last: cgs_core::TxId = health["last_tx"].as_str().unwrap().parse().unwrap();
    let mut out = std::collections::BTreeMap::new();
    for seqno in 1..=last.seqno {
        for term in 1..=last.term {
            let r = member.authed("GET", &format!("/node/entry/{term}.{seqno}"), None).await.unwrap();
            if r.status == 404 {
                continue;
            }
            let e = r.ok_json().unwrap();
            if let Some(env) = e["envelope"].as_str() {
                out.insert(seqno, base64::engine::general_purpose::STANDARD.decode(env).unwrap());
            }
            break;
        }
    }
    out
}

/// The signers of the ballots on `proposal`, and of the proposal that installs `hash`: the ledger
/// file commits to each signed message by its SHA-256 (the message itself is encrypted there).
fn ledger_votes(
    data: &Path,
    envelopes: &std::collections::BTreeMap<u64, Vec<u8>>,
    proposal: &str,
    hash: &str,
) -> (Vec<String>, Option<String>) {
    use sha2::Digest;
    let db = redb::Database::open(data.join(cgs_ledger_format::store_format::FILE_NAME)).unwrap();
    let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let ledger = rtx.open_table(cgs_ledger_format::store_format::LEDGER).unwrap();
    let mut voters = Vec::new();
    let mut proposed_hash = None;
    for item in redb::ReadableTable::iter(&ledger).unwrap() {
        let (_, v) = item.unwrap();
        let e = cgs_core::entry::Entry::decode(v.value()).unwrap();
        let seqno = e.seqno;
        let cgs_core::entry::Payload::Transaction(t) = e.payload else { continue };
        // Logins are recorded too but never handed out (a member's signed login is its own).
        if t.envelope.is_empty() || t.operation == "login" {
            continue;
        }
        let plain = envelopes.get(&seqno).expect("the API returns every recorded signed message but logins");
        assert_eq!(sha2::Sha256::digest(plain).as_slice(), t.request_digest, "the ledger commits to the message");
        let env = cgs_core::gov::Envelope::parse(plain).unwrap();
        assert!(!t.envelope.windows(env.payload.len()).any(|w| w == env.payload), "the payload is encrypted");
        match env.msg_type {
            MessageType::Ballot if env.proposal_id.as_deref() == Some(proposal) => voters.push(env.member_id.clone()),
            MessageType::Proposal => {
                let body: cgs_core::gov::ProposalBody = env.json().unwrap();
                // The first proposal of the hash (a rival proposal of the same build came later).
                if proposed_hash.is_none()
                    && body.actions.iter().any(|a| a.name == "set_plugin" && a.args["blake3"] == hash)
                {
                    proposed_hash = Some(env.member_id.clone());
                }
            }
            _ => {}
        }
    }
    voters.sort();
    (voters, proposed_hash)
}

/// A proposal whose apply fails ends `Failed` and nothing of its actions is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_apply_changes_nothing() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let newcomer = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let newcomer_pem = cgs_core::gov::verifying_key_to_pem(&newcomer.verifying_key());
    let newcomer_id = cgs_core::gov::member_id(&newcomer.verifying_key());
    let (p, _) = proposal_id(
        isv.propose(json!([
            {"name": "set_member", "args": {"public_key": newcomer_pem, "member_data": {"name": "newcomer"}}},
            {"name": "chaos.set_flag", "args": {"value": "should not stick"}},
            {"name": "chaos.fail_on_apply", "args": {}},
        ]))
        .await
        .unwrap(),
    )
    .await;
    let before = sb.client.get("/app/chaos/flag").await.unwrap().ok_json().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = serde_json::Value::Null;
    for m in [&isv, &dp, &cp] {
        last = m.vote(&p, true).await.unwrap().ok_json().unwrap();
    }
    assert!(Instant::now() < deadline);
    assert_eq!(last["state"], "Failed");
    let shown = isv.authed("GET", &format!("/gov/proposals/{p}"), None).await.unwrap().ok_json().unwrap();
    assert_eq!(shown["state"], "Failed");
    assert!(shown["failure"].as_str().unwrap().contains("ApplyFailed"), "{shown}");
    // The failure record names the failing action and its owner's message (microsoft/CCF#2447).
    assert_eq!(
        (&shown["failed_action"]["index"], &shown["failed_action"]["name"]),
        (&json!(2), &json!("chaos.fail_on_apply")),
        "{shown}"
    );
    assert_eq!(shown["failed_action"]["code"], "ApplyFailed", "{shown}");
    assert!(!shown["failed_action"]["message"].as_str().unwrap().is_empty(), "{shown}");
    // Read back: no new member, flag unchanged.
    let r = isv.authed("GET", &format!("/gov/members/{newcomer_id}"), None).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (404, "MemberNotFound"));
    assert_eq!(
        isv.authed("GET", "/gov/members", None).await.unwrap().ok_json().unwrap()["value"].as_array().unwrap().len(),
        3
    );
    assert_eq!(sb.client.get("/app/chaos/flag").await.unwrap().ok_json().unwrap(), before);
}

/// Open proposals expire (`--proposal-ttl-secs`) and become `Dropped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_proposals_expire() {
    let sb = Sandbox::start(&["--proposal-ttl-secs", "2"]).await.unwrap();
    let isv = sb.member("isv");
    let (p, _) =
        proposal_id(isv.propose(json!([{"name": "set_recovery_threshold", "args": {"threshold": 1}}])).await.unwrap())
            .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shown = isv.authed("GET", &format!("/gov/proposals/{p}"), None).await.unwrap().ok_json().unwrap();
        if shown["state"] == "Dropped" {
            assert_eq!(shown["history"].as_array().unwrap().last().unwrap()["reason"], "expired");
            break;
        }
        assert!(Instant::now() < deadline, "the proposal did not expire: {shown}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = sb.member("data-provider").vote(&p, true).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (405, "ProposalNotOpen"));
}

/// What runs always equals what governance says: a plugin whose route clashes with an active
/// plugin's is refused when proposed; a clash that only arises when two proposals are accepted
/// one after the other fails the second (Failed, with the reason, nothing changed); and a node
/// whose plugins cannot be loaded still starts, says which and why, and keeps governance working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_runs_is_what_governance_says() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut sb = Sandbox::start_in(&data, &[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let out = tmp.path().join("built");
    let req = cgs_build::BuildRequest {
        workspace: workspace(),
        selection: cgs_build::Selection::Named(vec!["snoop".into(), "clash".into(), "forbidden".into()]),
        out_dir: Some(out.clone()),
        quiet: true,
    };
    cgs_build::build(&req).unwrap();
    let mut hashes = std::collections::BTreeMap::new();
    for name in ["snoop", "clash"] {
        let bytes = std::fs::read(out.join(format!("{name}.wasm"))).unwrap();
        let r = isv.authed("PUT", "/gov/blobs", Some(bytes)).await.unwrap().ok_json().unwrap();
        hashes.insert(name, r["blake3"].as_str().unwrap().to_string());
    }
    let set = |name: &str| json!([{"name": "set_plugin", "args": {"name": name, "version": "0.1.0", "blake3": hashes[name]}}]);

    // Neither runs: both proposals are valid on their own.
    let (snoop, _) = proposal_id(isv.propose(set("snoop")).await.unwrap()).await;
    let (clash, _) = proposal_id(isv.propose(set("clash")).await.unwrap()).await;
    for m in [&isv, &dp, &cp] {
        m.vote(&snoop, true).await.unwrap().ok().unwrap();
    }
    // Now `clash` would serve snoop's route: its acceptance fails, and changes nothing.
    let mut state = String::new();
    for m in [&isv, &dp, &cp] {
        let r = m.vote(&clash, true).await.unwrap();
        if r.status == 405 {
            break;
        }
        state = r.ok_json().unwrap()["state"].as_str().unwrap().to_string();
    }
    assert_eq!(state, "Failed");
    let p = isv.authed("GET", &format!("/gov/proposals/{clash}"), None).await.unwrap().ok_json().unwrap();
    assert!(p["failure"].as_str().unwrap().contains("RouteConflict"), "{p}");
    // `cgs plugin check` says so before anything is uploaded: offline, every forbidden import
    // (not only the first); with a member key, what the service would say of a `set_plugin`.
    let isv_key = data.join("members").join("isv.key");
    let forbidden = out.join("forbidden.wasm");
    let (ok, text, _) = sb.cli(None, &["plugin", "check", forbidden.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(text.contains("FORBIDDEN wasi:filesystem/") && text.contains("FORBIDDEN wasi:clocks/"), "{text}");
    let clash_wasm = out.join("clash.wasm");
    let (ok, text, _) = sb.cli(Some(&isv_key), &["plugin", "check", clash_wasm.to_str().unwrap()]);
    assert!(!ok && text.contains("PROBLEM RouteConflict") && text.contains("GET /app/snoop/gov/{name}"), "{text}");
    let (ok, text, err) =
        sb.cli(Some(&isv_key), &["--json", "plugin", "check", out.join("snoop.wasm").to_str().unwrap()]);
    assert!(!ok, "the running bytes again: {text}{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["problems"][0]["code"], "PluginUnchanged", "{v}");
    // Proposed again, it is refused at once.
    // (By another member: the same member's identical message within a second is a replay.)
    let r = dp.propose(set("clash")).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "RouteConflict"), "{}", String::from_utf8_lossy(&r.body));
    let service = sb.client.get("/gov/service").await.unwrap().ok_json().unwrap();
    let names: Vec<&str> = service["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"snoop") && !names.contains(&"clash"), "{service}");
    let snooped = sb.client.get("/app/snoop/gov/members").await.unwrap();
    assert_eq!(snooped.status, 200, "snoop serves its route");
    // `cgs call` reaches plugin routes as a member (or anonymously), like `az rest`.
    let (ok, text, err) = sb.cli(Some(&isv_key), &["call", "GET", "/app/snoop/gov/members"]);
    assert!(ok && text.contains("\"entries\""), "{text}{err}");
    let (ok, _, err) = sb.cli(None, &["call", "GET", "/app/no/such/route"]);
    assert!(!ok && err.contains("RouteNotFound"), "{err}");

    // A node that cannot load its plugins (here: a fuel budget too small for their load-time
    // probe) still starts; it says which plugins failed and why, their routes answer 503, and
    // the governance API answers.
    assert!(sb.terminate().unwrap().success());
    let mut starved = Sandbox::start_in(&data, &["--plugin-fuel", "10"]).await.unwrap();
    let plugins = starved.client.get("/gov/plugins").await.unwrap().ok_json().unwrap();
    let failed: Vec<&serde_json::Value> =
        plugins["value"].as_array().unwrap().iter().filter(|p| p["state"] == "Failed").collect();
    assert!(failed.iter().any(|p| p["name"] == "snoop"), "{plugins}");
    assert!(failed.iter().all(|p| !p["error"].as_str().unwrap().is_empty()), "{plugins}");
    let r = starved.client.get("/app/snoop/gov/members").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (503, "PluginUnavailable"), "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(starved.client.get("/gov/service").await.unwrap().status, 200);
    // Metrics say so too (a member reads them).
    let metrics = starved.member("isv").authed("GET", "/metrics", None).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("cgs_plugin_up{plugin=\"snoop\",version=\"\"} 0"), "{text}");
    assert!(!text.contains("cgs_plugins_failed 0"), "{text}");
    assert!(starved.terminate().unwrap().success());

    // Restarted with the normal budget, everything governance made active runs again.
    let mut again = Sandbox::start_in(&data, &[]).await.unwrap();
    assert_eq!(again.client.get("/app/snoop/gov/members").await.unwrap().status, 200);
    let plugins = again.client.get("/gov/plugins").await.unwrap().ok_json().unwrap();
    assert!(plugins["value"].as_array().unwrap().iter().all(|p| p["state"] == "Running"), "{plugins}");
    assert!(again.terminate().unwrap().success());
}
