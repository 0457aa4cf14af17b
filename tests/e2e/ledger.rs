//! The ledger end to end: crash safety under SIGKILL, offline verification, tamper evidence,
//! receipts verified offline with the CLI.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgs_e2e::{Sandbox, binaries};
use cgs_ledger_format::store_format as fmt;
use cgs_ledger_format::verify::verify_data_dir;
use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;

fn cgs(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(&binaries().cli).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Kill the node with SIGKILL, again and again, during a stream of writes; every write that was
/// acknowledged is there after the restarts, the ledger verifies offline, and the node's state is
/// the replay of its ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for round in 0..4u32 {
        let mut sb = Sandbox::start_in(&data, &[]).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8u32 {
            let (c, stop, acked) = (sb.client.clone(), stop.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("r{round}-w{w}-{i}");
                    let value = format!("value of {key}");
                    match c.put_json(&format!("/app/chaos/kv/{key}"), &json!({"key": key, "value": value})).await {
                        Ok(r) if r.status == 200 => {
                            assert!(r.header("x-cgs-tx-id").is_some());
                            acked.lock().unwrap().push((key, value));
                        }
                        Ok(r) => panic!("unexpected status {} for {key}", r.status),
                        Err(_) => break, // the node is gone
                    }
                    i += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 150 * u64::from(round))).await;
        sb.kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 40, "only {} writes were acknowledged", acked.len());

    let mut sb = Sandbox::start_in(&data, &[]).await.unwrap();
    for (key, value) in &acked {
        let r = sb.client.get(&format!("/app/chaos/kv/{key}")).await.unwrap();
        assert_eq!(r.status, 200, "acknowledged write {key} is missing after SIGKILL");
        assert_eq!(r.json().unwrap()["value"], value.as_str());
    }
    assert!(sb.terminate().unwrap().success());

    let (ok, out, err) = cgs(&["ledger", "verify", data.to_str().unwrap()]);
    assert!(ok, "ledger verify failed after crashes: {err}");
    assert!(out.contains("equal to the replay"), "{out}");
}

/// Write a few entries, wait until a checkpoint covers them, stop the node; return the data dir
/// and the seqno of a committed transaction entry.
async fn ledger_with_entries(tmp: &Path) -> (std::path::PathBuf, u64, String) {
    let data = tmp.join("data");
    let mut sb = Sandbox::start_in(&data, &[]).await.unwrap();
    let mut txs = Vec::new();
    for i in 0..8 {
        let r = sb
            .client
            .put_json(&format!("/app/chaos/kv/t{i}"), &json!({"key": format!("t{i}"), "value": "v"}))
            .await
            .unwrap();
        txs.push(r.header("x-cgs-tx-id").unwrap().to_string());
    }
    let last = txs.last().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let member = sb.member("isv");
    while member.authed("GET", &format!("/node/receipt/{last}"), None).await.unwrap().status != 200 {
        assert!(Instant::now() < deadline, "no checkpoint covered {last}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = sb.verifier_key().await.unwrap();
    assert!(sb.terminate().unwrap().success());
    let seqno = txs[3].split_once('.').unwrap().1.parse().unwrap();
    (data, seqno, key)
}

fn copy_ledger(data: &Path, to: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(data.join(fmt::FILE_NAME), to.join(fmt::FILE_NAME)).unwrap();
    to.to_path_buf()
}

/// Rewrite the log of the ledger in `dir` with `f` (a tamperer with disk access).
fn tamper(dir: &Path, f: impl FnOnce(&mut redb::Table<'_, u64, &'static [u8]>)) {
    let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut log = tx.open_table(fmt::LEDGER).unwrap();
        f(&mut log);
    }
    tx.commit().unwrap();
}

fn entry(dir: &Path, seqno: u64) -> Vec<u8> {
    let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
    let tx = db.begin_read().unwrap();
    let log = tx.open_table(fmt::LEDGER).unwrap();
    log.get(seqno).unwrap().unwrap().value().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_fails_verification_at_the_right_seqno() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, k, key) = ledger_with_entries(tmp.path()).await;

    // The untouched ledger verifies, with the key pinned.
    let (ok, out, err) = cgs(&["ledger", "verify", data.to_str().unwrap(), "--node-key", &key]);
    assert!(ok, "{err}");
    assert!(out.contains("ledger verifies"));
    // Progress goes to stderr (a log gets whole lines), the report alone to stdout.
    assert!(
        err.lines().any(|l| l.starts_with("verifying ") && l.contains(": verified (") && l.contains(" entries) in ")),
        "{err}"
    );
    assert!(!out.contains("verifying"), "{out}");

    // Flipping any byte of a committed entry fails at that entry.
    let original = entry(&data, k);
    for pos in 0..original.len() {
        let dir = copy_ledger(&data, &tmp.path().join(format!("flip-{pos}")));
        tamper(&dir, |log| {
            let mut b = original.clone();
            b[pos] ^= 0x01;
            log.insert(k, b.as_slice()).unwrap();
        });
        let f = verify_data_dir(&dir, &[]).expect_err("a flipped byte must be detected");
        assert_eq!(f.seqno, k, "flip at byte {pos}: {f}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // The CLI names the seqno and exits non-zero.
    let dir = copy_ledger(&data, &tmp.path().join("flip-cli"));
    tamper(&dir, |log| {
        let mut b = original.clone();
        let n = b.len() - 1;
        b[n] ^= 0x80;
        log.insert(k, b.as_slice()).unwrap();
    });
    let (ok, _, err) = cgs(&["ledger", "verify", dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(&format!("seqno {k}:")), "{err}");

    // Dropping an entry.
    let dir = copy_ledger(&data, &tmp.path().join("drop"));
    tamper(&dir, |log| {
        log.remove(k).unwrap();
    });
    assert_eq!(verify_data_dir(&dir, &[]).unwrap_err().seqno, k);
    let (ok, _, err) = cgs(&["ledger", "verify", dir.to_str().unwrap()]);
    assert!(!ok && err.contains(&format!("seqno {k}:")), "{err}");

    // Dropping an entry and renumbering the rest.
    let dir = copy_ledger(&data, &tmp.path().join("drop-renumber"));
    tamper(&dir, |log| {
        let all: Vec<(u64, Vec<u8>)> =
            log.iter().unwrap().map(|r| r.unwrap()).map(|(a, b)| (a.value(), b.value().to_vec())).collect();
        for (s, _) in &all {
            log.remove(*s).unwrap();
        }
        for (s, b) in all.into_iter().filter(|(s, _)| *s != k) {
            log.insert(if s > k { s - 1 } else { s }, b.as_slice()).unwrap();
        }
    });
    assert_eq!(verify_data_dir(&dir, &[]).unwrap_err().seqno, k);

    // Swapping two entries.
    let dir = copy_ledger(&data, &tmp.path().join("swap"));
    let other = entry(&data, k + 2);
    tamper(&dir, |log| {
        log.insert(k, other.as_slice()).unwrap();
        log.insert(k + 2, original.as_slice()).unwrap();
    });
    assert_eq!(verify_data_dir(&dir, &[]).unwrap_err().seqno, k);
    let (ok, _, err) = cgs(&["ledger", "verify", dir.to_str().unwrap()]);
    assert!(!ok && err.contains(&format!("seqno {k}:")), "{err}");

    // Altering the transaction inside the replicated log (not the ledger table) is caught by the
    // cross-check, at the same seqno.
    let dir = copy_ledger(&data, &tmp.path().join("raft-log"));
    {
        let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut log = tx.open_table(fmt::RAFT_LOG).unwrap();
            let mut seqno = 1u64;
            let mut target = None;
            for r in log.iter().unwrap() {
                let (i, v) = r.unwrap();
                let rec = cgs_core::entry::RaftRecord::decode(v.value()).unwrap();
                let n = rec.entry_count();
                if (seqno..seqno + n).contains(&k) {
                    target = Some((i.value(), v.value().to_vec(), (k - seqno) as usize));
                    break;
                }
                seqno += n;
            }
            let (index, mut bytes, item) = target.expect("a record holds entry k");
            // Header (version, term, index, kind, count), then length-prefixed items.
            let mut off = 1 + 8 + 8 + 1 + 4;
            for _ in 0..item {
                let len = u32::from_be_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
                off += 4 + len;
            }
            let len = u32::from_be_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            bytes[off + 4 + len - 1] ^= 0x01;
            log.insert(index, bytes.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let f = verify_data_dir(&dir, &[]).unwrap_err();
    assert_eq!(f.seqno, k, "{f}");

    // An interior Merkle node the node stored (the root of the first two leaves), replaced: the
    // node would sign roots built on it. Caught at the entry that completes that subtree.
    let dir = copy_ledger(&data, &tmp.path().join("merkle-interior"));
    {
        let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut nodes = tx.open_table(fmt::MERKLE).unwrap();
            assert!(nodes.get((1u8, 0u64)).unwrap().is_some(), "the node stores interior nodes");
            nodes.insert((1u8, 0u64), [7u8; 32].as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let f = verify_data_dir(&dir, &[]).unwrap_err();
    assert_eq!(f.seqno, 2, "{f}");
    assert!(f.reason.contains("Merkle node at level 1, index 0"), "{f}");

    // What the node reads back beside the state, edited: a table version (its read-set checks
    // would decide on it), its index of checkpoints (receipts), a counter (when to sign).
    let edit = |name: &str, f: &dyn Fn(&redb::WriteTransaction)| {
        let dir = copy_ledger(&data, &tmp.path().join(name));
        let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        f(&tx);
        tx.commit().unwrap();
        drop(db);
        verify_data_dir(&dir, &[]).expect_err(name)
    };
    let f = edit("table-version", &|tx| {
        use redb::ReadableTable as _;
        let mut t = tx.open_table(fmt::TABLE_VERSIONS).unwrap();
        let (table, _) = t.first().unwrap().map(|(k, v)| (k.value().to_string(), v.value().to_vec())).unwrap();
        t.insert(table.as_str(), fmt::encode_tx_id(cgs_core::TxId::new(1, 1)).as_slice()).unwrap();
    });
    assert!(f.reason.contains("the version of table"), "{f}");
    let f = edit("checkpoint-index", &|tx| {
        use redb::ReadableTable as _;
        let mut t = tx.open_table(fmt::CHECKPOINTS).unwrap();
        let (size, seqno) = t.last().unwrap().map(|(k, v)| (k.value(), v.value())).unwrap();
        t.insert(size, seqno + 1).unwrap();
    });
    assert!(f.reason.contains("index of checkpoints"), "{f}");
    let f = edit("counter", &|tx| {
        tx.open_table(fmt::META).unwrap().insert("last_checkpoint", u64::MAX.to_be_bytes().as_slice()).unwrap();
    });
    assert!(f.reason.contains("last_checkpoint"), "{f}");
    // The count of applied entries set back (a node writes it with its entries, in one
    // transaction): a node, or a recovery, would start from a state without the last entries.
    let f = edit("applied-count", &|tx| {
        use redb::ReadableTable as _;
        let mut meta = tx.open_table(fmt::META).unwrap();
        let size = u64::from_be_bytes(meta.get("ledger_size").unwrap().unwrap().value().try_into().unwrap());
        meta.insert("ledger_size", (size - 1).to_be_bytes().as_slice()).unwrap();
    });
    assert!(f.reason.contains("entries as applied"), "{f}");

    // A key that is not the node's is refused when a key is pinned.
    let stranger = "cgs/other+3c3c3c3c+AQ0xMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMg==";
    let (ok, _, _) = cgs(&["ledger", "verify", data.to_str().unwrap(), "--node-key", stranger]);
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_from_the_service_verify_offline() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let r = sb.client.put_json("/app/greetings/receipt", &json!({"text": "trained"})).await.unwrap();
    assert_eq!(r.status, 201);
    let tx = r.header("x-cgs-tx-id").unwrap().to_string();
    let key = sb.verifier_key().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sb.url.clone();
    let ca = sb.ca.to_str().unwrap().to_string();
    // An anonymous write to a plugin that knows no parties: its receipt is for members.
    let member_key = sb.data.join("members").join("isv.key").to_str().unwrap().to_string();
    for format in ["cose", "json"] {
        let file = dir.path().join(format!("receipt.{format}"));
        let file_s = file.to_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (ok, _, err) = cgs(&[
                "--url",
                &url,
                "--ca",
                &ca,
                "--key",
                &member_key,
                "receipt",
                "get",
                &tx,
                "--format",
                format,
                "-o",
                file_s,
            ]);
            if ok {
                break;
            }
            assert!(err.contains("NotReady") && Instant::now() < deadline, "{err}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (ok, out, err) = cgs(&["receipt", "verify", file_s, "--node-key", &key]);
        assert!(ok, "{format}: {err}");
        assert!(out.contains(&format!("transaction {tx}")), "{out}");
    }
    // One proof hash changed: the receipt no longer verifies.
    let json_file = dir.path().join("receipt.json");
    let mut receipt: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_file).unwrap()).unwrap();
    let h = receipt["inclusion_proof"][0].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if h.starts_with('f') { "e" } else { "f" }, &h[1..]);
    receipt["inclusion_proof"][0] = json!(flipped);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, receipt.to_string()).unwrap();
    let (ok, _, err) = cgs(&["receipt", "verify", bad.to_str().unwrap(), "--node-key", &key]);
    assert!(!ok, "a changed proof hash must fail");
    assert!(err.contains("does NOT verify"), "{err}");
    let cose = std::fs::read(dir.path().join("receipt.cose")).unwrap();
    let needle = hex::decode(&h).unwrap();
    let pos = cose.windows(32).position(|w| w == needle.as_slice()).unwrap();
    let mut bad_cose = cose.clone();
    bad_cose[pos + 5] ^= 0x10;
    let badc = dir.path().join("bad.cose");
    std::fs::write(&badc, &bad_cose).unwrap();
    let (ok, _, _) = cgs(&["receipt", "verify", badc.to_str().unwrap(), "--node-key", &key]);
    assert!(!ok);
}
