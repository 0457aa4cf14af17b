//! The ledger in-process: commits, apply-time conflicts, private tables, receipts verified by the
//! independent verifier, consistency proofs, restart, and three replicas applying identically.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cgs_core::TxId;
use cgs_core::receipt;
use cgs_host::ledger::{Ledger, LedgerConfig, LedgerError, Router, TxStatus};
use cgs_host::store::{CommitError, Store, Transaction, TxMeta};

fn config(node_id: u64) -> LedgerConfig {
    LedgerConfig { node_id, signature_interval: Duration::from_millis(20), ..LedgerConfig::default() }
}

async fn single(dir: &std::path::Path) -> Arc<Ledger> {
    let l = Ledger::open(dir, config(1), "cgs/test", Router::default()).await.unwrap();
    l.initialize_single("node-1").await.unwrap();
    l.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    l.record_node_key().await.unwrap();
    l
}

async fn put(store: &dyn Store, table: &str, key: &[u8], value: &[u8]) -> Result<TxId, CommitError> {
    let mut tx = Transaction::new(store.snapshot().unwrap());
    tx.put(table, key, value.to_vec());
    let (r, w) = tx.into_sets();
    store.commit(r, w, TxMeta { caller: "tester".into(), operation: "put".into(), ..TxMeta::default() }).await
}

async fn receipt_when_ready(l: &Ledger, tx: TxId, with_entry: bool) -> cgs_host::ledger::ReceiptData {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match l.receipt(tx, with_entry) {
            Ok(r) => return r,
            Err(LedgerError::NotReady(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("receipt for {tx}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_conflicts_private_tables_and_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let l = single(dir.path()).await;

    let t1 = put(&*l, "p.t", b"k1", b"v1").await.unwrap();
    assert_eq!(l.status(t1).unwrap(), Some(TxStatus::Committed));
    assert_eq!(l.snapshot().unwrap().get("p.t", b"k1").unwrap().unwrap().version, t1);

    // Two transactions that read the same key and write it: the second is refused at apply time.
    let mut a = Transaction::new(l.snapshot().unwrap());
    let mut b = Transaction::new(l.snapshot().unwrap());
    assert!(a.get("p.t", b"k1").unwrap().is_some());
    assert!(b.get("p.t", b"k1").unwrap().is_some());
    a.put("p.t", b"k1", b"a".to_vec());
    b.put("p.t", b"k1", b"b".to_vec());
    let (ra, wa) = a.into_sets();
    let (rb, wb) = b.into_sets();
    l.commit(ra, wa, TxMeta::default()).await.unwrap();
    assert!(matches!(l.commit(rb, wb, TxMeta::default()).await, Err(CommitError::Conflict(_))));
    assert_eq!(l.snapshot().unwrap().get("p.t", b"k1").unwrap().unwrap().value, b"a");

    // Private tables: plaintext to readers, ciphertext in the entry.
    let t2 = put(&*l, "p.private.secrets", b"s", b"the secret recipe").await.unwrap();
    assert_eq!(l.snapshot().unwrap().get("p.private.secrets", b"s").unwrap().unwrap().value, b"the secret recipe");

    let r = receipt_when_ready(&l, t2, true).await;
    let id = l.identity();
    let vk = cgs_core::note::VerifierKey::parse(&id.verifier_key).unwrap();
    let v = receipt::verify_cose(&r.cose, &vk.key).unwrap();
    assert_eq!(v.tx_id, Some(t2));
    let entry = v.entry.expect("the receipt carries the entry");
    let cgs_core::entry::Payload::Transaction(t) = entry.payload else { panic!("not a transaction") };
    let stored = t.writes[0].value.as_ref().unwrap();
    assert!(!stored.windows(6).any(|w| w == b"secret"), "private values are encrypted in the ledger");
    let vj = receipt::verify_json(&r.json, &vk).unwrap();
    assert_eq!(vj.root, v.root);
    // Without the entry, a receipt still proves inclusion (of the entry's hash) and discloses
    // nothing of the write set.
    let bare = receipt_when_ready(&l, t2, false).await;
    let vb = receipt::verify_cose(&bare.cose, &vk.key).unwrap();
    assert_eq!((vb.entry, vb.leaf_input, vb.root), (None, v.leaf_input, v.root));
    assert!(bare.json.entry.is_none() && receipt::verify_json(&bare.json, &vk).unwrap().entry.is_none());
    assert!(bare.cose.len() < r.cose.len());

    // A receipt with one proof hash changed does not verify, in either encoding.
    let mut bad = r.json.clone();
    let first = bad.inclusion_proof.first().cloned().expect("a proof in a tree of several entries");
    bad.inclusion_proof[0] = format!("{}{}", if first.starts_with('0') { "1" } else { "0" }, &first[1..]);
    assert!(receipt::verify_json(&bad, &vk).is_err());
    let needle = hex::decode(&first).unwrap();
    let pos = r.cose.windows(32).position(|w| w == needle.as_slice()).expect("the path hash is in the COSE receipt");
    let mut bad_cose = r.cose.clone();
    bad_cose[pos] ^= 1;
    assert!(receipt::verify_cose(&bad_cose, &vk.key).is_err());
    let other = cgs_host::ledger::signer::NodeSigner::from_seed(&[9; 32], "cgs/test");
    assert!(receipt::verify_cose(&r.cose, &other.public_key()).is_err(), "another key does not verify");

    // Consistency between two sizes, checked by the independent verifier.
    let size = l.applied();
    let c = l.consistency(2, size).unwrap();
    let proof: Vec<Vec<u8>> =
        c["proof"].as_array().unwrap().iter().map(|h| hex::decode(h.as_str().unwrap()).unwrap()).collect();
    cgs_core::merkle::verify_consistency(
        2,
        size,
        &proof,
        &hex::decode(c["root_from"].as_str().unwrap()).unwrap(),
        &hex::decode(c["root_to"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(l.consistency(0, size).is_err());
    assert!(l.consistency(2, size + 100).is_err());

    // Restart: state, statuses and receipts survive.
    let before = l.state_digest().unwrap();
    let term_before = l.raft.metrics().borrow().current_term;
    l.shutdown().await;
    drop(l);
    let l = Ledger::open(dir.path(), config(1), "ignored-after-creation", Router::default()).await.unwrap();
    l.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    // A leader that stopped leads again only in a new term, after an election: it may have sent
    // entries of its old term to followers before its own flush, and lost them (early append).
    let term_after = l.raft.metrics().borrow().current_term;
    assert!(term_after > term_before, "the restarted node leads in term {term_after}, as before it stopped");
    assert!(l.wait_applied(before.0, Duration::from_secs(10)).await);
    assert_eq!(l.status(t2).unwrap(), Some(TxStatus::Committed));
    assert_eq!(l.identity().origin, "cgs/test");
    assert_eq!(l.snapshot().unwrap().get("p.private.secrets", b"s").unwrap().unwrap().value, b"the secret recipe");
    receipt::verify_cose(&l.receipt(t2, false).unwrap().cose, &vk.key).unwrap();
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_apply_identically() {
    let router = Router::default();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    // Generous election timeouts: on a loaded machine, short ones cause needless elections.
    let slow = |id| LedgerConfig {
        heartbeat: Duration::from_millis(100),
        election_timeout: Duration::from_millis(1000),
        ..config(id)
    };
    for (i, d) in dirs.iter().enumerate() {
        // Replicas of one service share its ledger secret (plugin tables are private): here by
        // copying it; across processes it reaches a joining node sealed to its attested key.
        std::fs::create_dir_all(d.path().join("node")).unwrap();
        std::fs::write(d.path().join("node").join("ledger-secret"), [7u8; 32]).unwrap();
        nodes.push(Ledger::open(d.path(), slow(i as u64 + 1), "cgs/three", router.clone()).await.unwrap());
    }
    let members = (1..=3)
        .map(|i| (i, openraft::BasicNode::new(format!("node-{i}"))))
        .collect::<std::collections::BTreeMap<_, _>>();
    nodes[0].raft.initialize(members).await.unwrap();
    // The current leader (leadership may move if the machine stalls; writes follow it).
    let leader_of = |nodes: &Vec<Arc<Ledger>>| {
        let nodes = nodes.clone();
        async move {
            let id = nodes[0].wait_for_leader(Duration::from_secs(20)).await.unwrap();
            nodes[id as usize - 1].clone()
        }
    };
    leader_of(&nodes).await.record_node_key().await.unwrap();

    let mut last = TxId::default();
    for i in 0..50u32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        last = loop {
            match put(&*leader_of(&nodes).await, "p.t", format!("k{i}").as_bytes(), &i.to_be_bytes()).await {
                Ok(t) => break t,
                Err(CommitError::Store(e)) if Instant::now() < deadline => {
                    eprintln!("retrying after: {}", e.0);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write {i}: {e}"),
            }
        };
    }
    let leader = leader_of(&nodes).await;
    // A follower refuses writes.
    let follower = nodes.iter().find(|n| !n.is_leader()).unwrap().clone();
    assert!(matches!(put(&*follower, "p.t", b"x", b"y").await, Err(CommitError::Store(_))));

    let target = leader.applied();
    for n in &nodes {
        assert!(n.wait_applied(target, Duration::from_secs(10)).await, "a replica did not apply {target} entries");
    }
    // Same applied prefix: same Merkle root and same state on every replica. (Checkpoint entries
    // may still be arriving; wait until the replicas are at the same index.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let digests: Vec<_> = nodes.iter().map(|n| n.state_digest().unwrap()).collect();
        if digests.windows(2).all(|w| w[0].0 == w[1].0) {
            assert!(digests.windows(2).all(|w| w[0] == w[1]), "replicas at the same index differ: {digests:?}");
            break;
        }
        assert!(Instant::now() < deadline, "replicas never reached the same index: {digests:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(follower.status(last).unwrap(), Some(TxStatus::Committed));
    assert_eq!(follower.snapshot().unwrap().get("p.t", b"k49").unwrap().unwrap().value, 49u32.to_be_bytes());
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A new leader records its checkpoint key from two places at once (the start, and the
/// checkpoint task before it signs): whichever commits second conflicts, and that is not a
/// failure. (CI once failed a sandbox creation on it: "conflict: a key of `sys.nodes` changed".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_the_node_key_twice_at_once_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path(), config(1), "cgs/test", Router::default()).await.unwrap();
    l.initialize_single("node-1").await.unwrap();
    l.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let (a, b, c) = tokio::join!(l.record_node_key(), l.record_node_key(), l.record_node_key());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    assert!(l.snapshot().unwrap().get("sys.nodes", &1u64.to_be_bytes()).unwrap().is_some());
}

/// A re-key applied while a private write is in flight (encrypted with the old version, not yet
/// ordered): the write conflicts instead of applying with the secret a removed node holds; run
/// again it is written with the new version. A restarted node opens the version from its ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_write_in_flight_across_a_rekey_conflicts() {
    use base64::Engine as _;
    use cgs_host::ledger::crypto::{LedgerSecret, SYS_LEDGER_SECRETS, WrappedSecret, stored_version};
    let dir = tempfile::tempdir().unwrap();
    let l = single(dir.path()).await;
    put(&*l, "p.t", b"k0", b"before").await.unwrap();

    // Formed (and encrypted) now, ordered after the re-key below.
    let mut a = Transaction::new(l.snapshot().unwrap());
    a.put("p.t", b"k1", b"in flight".to_vec());
    let (ra, wa) = a.into_sets();
    let in_flight = l.commit(ra, wa, TxMeta::default());

    let key: [u8; 32] =
        base64::engine::general_purpose::STANDARD.decode(l.identity().public_key).unwrap().try_into().unwrap();
    let sealed = WrappedSecret::seal(&LedgerSecret::versioned(1, &[42; 32]), 1, &key).unwrap();
    let mut r = Transaction::new(l.snapshot().unwrap());
    r.put(SYS_LEDGER_SECRETS, WrappedSecret::table_key(1, 1).as_bytes(), serde_json::to_vec(&sealed).unwrap());
    let (rr, wr) = r.into_sets();
    l.commit(rr, wr, TxMeta::default()).await.unwrap();
    assert_eq!(l.secrets().current().unwrap().version(), 1, "the node opened the version sealed to it");

    let e = in_flight.await.unwrap_err();
    assert!(e.to_string().contains("sys.ledger_secrets"), "{e}");
    let t = put(&*l, "p.t", b"k1", b"after").await.unwrap();
    let (_, entry) = l.entry(t).unwrap();
    let cgs_core::entry::Payload::Transaction(tx) = entry.payload else { panic!("not a transaction") };
    let stored = tx.writes.iter().find(|w| w.key == b"k1").and_then(|w| w.value.clone()).unwrap();
    assert_eq!(stored_version(&stored), Some(1));
    assert_eq!(l.snapshot().unwrap().get("p.t", b"k0").unwrap().unwrap().value, b"before");

    // Restarted, the node holds version 1 again (from its ledger) and reads both values.
    l.shutdown().await;
    drop(l);
    let l = Ledger::open(dir.path(), config(1), "cgs/test", Router::default()).await.unwrap();
    l.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    assert_eq!(l.secrets().current().unwrap().version(), 1);
    let s = l.snapshot().unwrap();
    assert_eq!(s.get("p.t", b"k1").unwrap().unwrap().value, b"after");
    assert_eq!(s.get("p.t", b"k0").unwrap().unwrap().value, b"before");
}

/// Poll every future from one task: their proposals are queued together, so they are ordered in
/// the same raft record (one apply batch) as far as the proposer has not yet taken the first.
async fn join_all<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Transactions that scanned the same table and write to it, ordered in the same apply batch:
/// only the first applies. The batch keeps each table's version in memory and writes it once at
/// its end, so the later ones must see the version the first one set, not the stored one. The
/// independent verifier, replaying the file, must reach the same outcomes and the same versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_of_one_table_in_one_batch_conflict() {
    use cgs_host::store::KeyRange;
    let dir = tempfile::tempdir().unwrap();
    let l = single(dir.path()).await;
    put(&*l, "p.scan", b"seed", b"0").await.unwrap();

    let mut winners = Vec::new();
    // Rounds whose sixteen transactions all went in one raft record (so the winner and the
    // losers were checked in the same apply batch).
    let mut one_record = 0;
    for round in 0..20u8 {
        let log_before = l.raft.metrics().borrow().last_log_index.unwrap_or(0);
        let mut commits = Vec::new();
        for i in 0..16u8 {
            let mut tx = Transaction::new(l.snapshot().unwrap());
            assert!(!tx.range("p.scan", &KeyRange::default(), 1000, false).unwrap().is_empty());
            tx.put("p.scan", &[round, i], b"mine".to_vec());
            // Another table written by every transaction of the batch, read by none.
            tx.put("p.other", &[round, i], b"x".to_vec());
            let (r, w) = tx.into_sets();
            commits.push(l.commit(r, w, TxMeta::default()));
        }
        let results = join_all(commits).await;
        let ok: Vec<TxId> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(ok.len(), 1, "round {round}: exactly one of the scans applies, got {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, CommitError::Conflict(_)), "round {round}: {e}");
                assert!(e.to_string().contains("p.scan"), "{e}");
            }
        }
        let s = l.snapshot().unwrap();
        assert_eq!(s.table_version("p.scan").unwrap(), Some(ok[0]), "round {round}: the winner's version");
        assert_eq!(s.table_version("p.other").unwrap(), Some(ok[0]), "round {round}: only the winner wrote");
        winners.push(ok[0]);
        if l.raft.metrics().borrow().last_log_index.unwrap_or(0) == log_before + 1 {
            one_record += 1;
        }
    }
    assert!(one_record > 0, "no round put its transactions in one record: the test checked nothing");
    let size = l.applied();
    l.shutdown().await;
    drop(l);

    let report = cgs_ledger_format::verify::verify_data_dir(dir.path(), &[]).unwrap();
    assert!(report.applied >= size, "{report:?}");
    // Every refusal the callers saw is one the verifier's replay reached too (it compares the
    // node's list of refused transactions with its own); others may be the node's own (two of
    // its tasks racing to record its key, under load).
    assert!(report.invalid_transactions >= 20 * 15, "{report:?}");
    // Restarted, the versions written at the end of each batch are the ones read.
    let l = Ledger::open(dir.path(), config(1), "cgs/test", Router::default()).await.unwrap();
    l.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    assert_eq!(l.snapshot().unwrap().table_version("p.scan").unwrap(), winners.last().copied());
    l.shutdown().await;
}
