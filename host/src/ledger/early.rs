//! Early append: a leader sends the entries it appends to its followers while its own log flush
//! is still running, instead of after it.
//!
//! openraft 0.9's core awaits the leader's own flush of an append before it tells the
//! replication streams about the entries (0.10's asynchronous log IO lifts this), so a write
//! waited for the leader's fsync, *then* the network and a follower's fsync. Here the log store
//! hands each batch the leader appends to one task per follower, which sends it at once as an
//! ordinary raft `AppendEntries` of the leader (its committed vote, the previous entry's log id,
//! the commit index the log store last saved). A follower handles it as any append of its
//! leader: it checks the vote and that the entries extend its log, writes them and flushes
//! before it answers. Membership changes and nodes a change is removing are left to openraft.
//!
//! When openraft's own replication stream later sends the same entries, the part the follower has
//! already confirmed ([`EarlyAcks`]) is cut from the request: the request goes with the last
//! confirmed entry as its `prev_log_id` and only what follows. This is sound because under one
//! leader vote the leader's log only grows, and a follower that confirmed log id X holds every
//! entry up to X as the leader has it (the log matching property); it loses them only by
//! truncation, which only a leader with a higher vote can cause, and then it refuses the request
//! for its vote anyway. If an early send is still on its way, the replication stream waits for its
//! answer first (the follower would handle the two one after the other anyway).
//!
//! Nothing changes what is counted: the leader counts itself only after its own flush (openraft
//! still awaits it), and a follower is counted only from the answer to the replication stream's
//! request, given after the follower's flush. An early send that fails, is refused or arrives out
//! of order changes nothing but the chance to cut the next request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::metrics::RaftServerMetrics;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Entry, LogId, ServerState, Vote};

use super::network::{Network, NetworkClient};
use super::raft::TypeConfig;

/// Entries one early send carries at most (openraft's `max_payload_entries`).
const MAX_ENTRIES: usize = 1024;
/// Bytes of payload one early send carries at most (larger batches go only the usual way).
const MAX_BYTES: usize = 16 << 20;
/// Batches queued for one follower at most (beyond, batches go only the usual way).
const QUEUE: usize = 64;
/// How long an early send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the replication stream waits for an early send's answer before it sends in full.
const WAIT_FOR_EARLY: Duration = Duration::from_secs(2);

type Metrics = tokio::sync::watch::Receiver<RaftServerMetrics<u64, BasicNode>>;

/// A batch the leader appended: the vote it leads under, the log id before the batch, the batch.
struct Batch {
    vote: Vote<u64>,
    prev: Option<LogId<u64>>,
    entries: Arc<Vec<Entry<TypeConfig>>>,
    /// The leader's commit index when it appended the batch.
    commit: Option<LogId<u64>>,
}

/// What the early sends to one follower carried, under one leader vote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Progress {
    /// The vote the figures below are for.
    vote: Option<Vote<u64>>,
    /// The last log id handed to the follower's sender.
    offered: Option<LogId<u64>>,
    /// The last log id of the sends answered (or given up).
    answered: Option<LogId<u64>>,
    /// The last log id the follower confirmed holding (flushed).
    confirmed: Option<LogId<u64>>,
    /// The highest commit index an early send the follower accepted carried.
    commit: Option<LogId<u64>>,
}

impl Progress {
    /// Start counting for `vote` if these figures are for another.
    fn under(&mut self, vote: Vote<u64>) {
        if self.vote != Some(vote) {
            *self = Progress { vote: Some(vote), ..Progress::default() };
        }
    }

    /// Whether nothing of `first..=last` under `vote` is still on its way early.
    fn settled(&self, vote: &Vote<u64>, first: u64, last: u64) -> bool {
        let Some(offered) = self.offered else { return true };
        self.vote.as_ref() != Some(vote)
            || offered.index < first
            || self.answered.is_some_and(|a| a.index >= offered.index.min(last))
    }
}

/// The followers' confirmations of early sends, shared by the early senders and the replication
/// streams' clients.
#[derive(Default)]
pub(super) struct EarlyAcks {
    by_peer: Mutex<BTreeMap<u64, tokio::sync::watch::Sender<Progress>>>,
    /// Early sends made.
    pub sent: AtomicU64,
    /// Early sends a follower confirmed.
    pub confirmed: AtomicU64,
    /// Entries cut from replication requests because the follower had confirmed them.
    pub trimmed: AtomicU64,
    /// Replication requests answered without a round trip: the follower had confirmed all they
    /// carried.
    pub answered: AtomicU64,
}

impl EarlyAcks {
    fn peer(&self, target: u64) -> tokio::sync::watch::Sender<Progress> {
        let mut m = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(target).or_insert_with(|| tokio::sync::watch::channel(Progress::default()).0).clone()
    }
}

/// The leader's early senders, one task per follower (made on first use).
pub(super) struct Early {
    me: u64,
    network: Network,
    metrics: std::sync::OnceLock<Metrics>,
    senders: Mutex<BTreeMap<u64, (String, tokio::sync::mpsc::Sender<Batch>)>>,
    pub acks: Arc<EarlyAcks>,
}

impl Early {
    pub fn new(me: u64, network: Network) -> Arc<Self> {
        Arc::new(Self {
            me,
            network,
            metrics: Default::default(),
            senders: Default::default(),
            acks: Default::default(),
        })
    }

    /// Start sending: `metrics` tells who leads and who the followers are.
    pub fn start(&self, metrics: Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// The vote to send entries of `term` under, if this node leads in that term now.
    pub fn leading(&self, term: u64) -> Option<Vote<u64>> {
        static OFF: std::sync::LazyLock<bool> =
            std::sync::LazyLock::new(|| std::env::var("CGS_EARLY_APPEND").is_ok_and(|v| v == "0"));
        if *OFF {
            return None;
        }
        let m = self.metrics.get()?.borrow();
        let v = m.vote;
        (m.state == ServerState::Leader
            && v.is_committed()
            && v.leader_id().voted_for() == Some(self.me)
            && v.leader_id().get_term() == term)
            .then_some(v)
    }

    /// Send `entries` (appended after `prev` under `vote`) to every other node of the membership.
    pub fn offer(
        &self,
        vote: Vote<u64>,
        prev: Option<LogId<u64>>,
        entries: Vec<Entry<TypeConfig>>,
        commit: Option<LogId<u64>>,
    ) {
        let Some(metrics) = self.metrics.get() else { return };
        // The nodes of the newest configuration (voters and learners): a node a change is
        // removing gets only what openraft's own replication sends it.
        let peers: Vec<(u64, String)> = {
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            let newest = membership.get_joint_config().last().cloned().unwrap_or_default();
            membership
                .nodes()
                .filter(|(id, _)| {
                    **id != self.me && (newest.contains(id) || membership.learner_ids().any(|l| l == **id))
                })
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect()
        };
        if peers.is_empty() {
            return;
        }
        let Some(last) = entries.last().map(|e| e.log_id) else { return };
        let entries = Arc::new(entries);
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        for (target, addr) in peers {
            let batch = Batch { vote, prev, entries: entries.clone(), commit };
            let rejected = match senders.get(&target) {
                Some((a, tx)) if *a == addr => tx.try_send(batch).err(),
                _ => Some(tokio::sync::mpsc::error::TrySendError::Closed(batch)),
            };
            match rejected {
                None => {}
                // The follower is not keeping up (its sender has a queue): this batch goes only the
                // usual way.
                Some(tokio::sync::mpsc::error::TrySendError::Full(_)) => continue,
                Some(tokio::sync::mpsc::error::TrySendError::Closed(batch)) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
                    let _ = tx.try_send(batch);
                    let network = self.network.clone();
                    let acks = self.acks.clone();
                    let node = BasicNode { addr: addr.clone() };
                    tokio::spawn(async move {
                        let mut network = network;
                        let client = network.new_client(target, &node).await;
                        sender(target, client, acks, rx).await;
                    });
                    senders.insert(target, (addr, tx));
                }
            }
            // Before the replication stream can ask: it waits for what is on its way.
            self.acks.peer(target).send_modify(|p| {
                p.under(vote);
                if p.offered < Some(last) {
                    p.offered = Some(last);
                }
            });
        }
    }
}

/// One follower's early sender: sends each batch (merged with those queued behind it when they
/// continue it) and records what the follower confirms.
async fn sender(
    target: u64,
    mut client: NetworkClient,
    acks: Arc<EarlyAcks>,
    mut rx: tokio::sync::mpsc::Receiver<Batch>,
) {
    let progress = acks.peer(target);
    let mut queued: Vec<Batch> = Vec::new();
    loop {
        if queued.is_empty() {
            match rx.recv().await {
                Some(b) => queued.push(b),
                None => return,
            }
        }
        while let Ok(b) = rx.try_recv() {
            queued.push(b);
        }
        // Only the newest vote's batches are worth sending, and at most a queue's worth of them:
        // what is dropped goes the usual way (and counts as answered, so that no replication
        // request waits for it).
        let newest = queued.last().map(|b| b.vote);
        let keep_from = queued.len().saturating_sub(QUEUE);
        let mut dropped: Vec<(Vote<u64>, LogId<u64>)> = Vec::new();
        let mut i = 0;
        queued.retain(|b| {
            let keep = i >= keep_from && Some(b.vote) == newest;
            i += 1;
            if !keep && let Some(last) = b.entries.last() {
                dropped.push((b.vote, last.log_id));
            }
            keep
        });
        for (vote, last) in dropped {
            progress.send_modify(|p| {
                if p.vote == Some(vote) && p.answered < Some(last) {
                    p.answered = Some(last);
                }
            });
        }
        if queued.is_empty() {
            continue;
        }
        // The first batch and the ones that continue it under the same vote, within the limits.
        let first = queued.remove(0);
        let (vote, prev) = (first.vote, first.prev);
        let mut commit = first.commit;
        let mut entries: Vec<Entry<TypeConfig>> = first.entries.as_ref().clone();
        let mut bytes: usize = entries.iter().map(entry_bytes).sum();
        while let Some(next) = queued.first() {
            let continues = next.vote == vote && next.prev == entries.last().map(|e| e.log_id);
            let more: usize = next.entries.iter().map(entry_bytes).sum();
            if !continues || entries.len() + next.entries.len() > MAX_ENTRIES || bytes + more > MAX_BYTES {
                break;
            }
            bytes += more;
            let next = queued.remove(0);
            commit = commit.max(next.commit);
            entries.extend(next.entries.iter().cloned());
        }
        let Some(last) = entries.last().map(|e| e.log_id) else { continue };
        let ok = if bytes > MAX_BYTES || entries.len() > MAX_ENTRIES {
            false
        } else {
            acks.sent.fetch_add(1, Ordering::Relaxed);
            let rpc = AppendEntriesRequest { vote, prev_log_id: prev, entries, leader_commit: commit };
            let answer =
                tokio::time::timeout(SEND_TIMEOUT, client.append_entries(rpc, RPCOption::new(SEND_TIMEOUT))).await;
            matches!(answer, Ok(Ok(AppendEntriesResponse::Success)))
        };
        if ok {
            acks.confirmed.fetch_add(1, Ordering::Relaxed);
        }
        progress.send_modify(|p| {
            if p.vote == Some(vote) {
                if p.answered < Some(last) {
                    p.answered = Some(last);
                }
                if ok && p.confirmed < Some(last) {
                    p.confirmed = Some(last);
                }
                if ok && p.commit < commit {
                    p.commit = commit;
                }
            }
        });
    }
}

/// The payload bytes of an entry (for the size limit).
fn entry_bytes(e: &Entry<TypeConfig>) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(p) => p.0.iter().map(Vec::len).sum(),
        _ => 64,
    }
}

/// Cut from `rpc` the entries the follower confirmed holding: the request then starts after the
/// last of them. The number of entries cut.
fn trim(rpc: &mut AppendEntriesRequest<TypeConfig>, p: &Progress) -> usize {
    let Some(confirmed) = p.confirmed else { return 0 };
    if p.vote != Some(rpc.vote) {
        return 0;
    }
    let cut = rpc.entries.iter().take_while(|e| e.log_id.index <= confirmed.index).count();
    // The confirmed entry, if the request holds it, must be the very one confirmed.
    if cut == 0 || rpc.entries[cut - 1].log_id.index == confirmed.index && rpc.entries[cut - 1].log_id != confirmed {
        return 0;
    }
    rpc.prev_log_id = Some(rpc.entries[cut - 1].log_id);
    rpc.entries.drain(..cut);
    cut
}

/// openraft's network, with the replication requests cut by what early sends delivered.
#[derive(Clone)]
pub(super) struct EarlyNetwork {
    pub network: Network,
    pub acks: Arc<EarlyAcks>,
}

/// A client of one peer that cuts its append requests.
pub(super) struct EarlyClient {
    inner: NetworkClient,
    progress: tokio::sync::watch::Sender<Progress>,
    acks: Arc<EarlyAcks>,
    /// The highest commit index a request of this client delivered to the follower.
    delivered: Option<LogId<u64>>,
}

impl RaftNetworkFactory<TypeConfig> for EarlyNetwork {
    type Network = EarlyClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        EarlyClient {
            inner: self.network.new_client(target, node).await,
            progress: self.acks.peer(target),
            acks: self.acks.clone(),
            delivered: None,
        }
    }
}

impl RaftNetwork<TypeConfig> for EarlyClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        if let (Some(first), Some(last)) =
            (rpc.entries.first().map(|e| e.log_id.index), rpc.entries.last().map(|e| e.log_id.index))
        {
            let mut rx = self.progress.subscribe();
            // Early sends of some of these entries are on their way: their answers first (well
            // within the time openraft gives this request).
            let vote = rpc.vote;
            let wait = WAIT_FOR_EARLY.min(option.soft_ttl() / 4);
            let _ = tokio::time::timeout(wait, rx.wait_for(|p| p.settled(&vote, first, last))).await;
            let p = rx.borrow().clone();
            let cut = trim(&mut rpc, &p);
            self.acks.trimmed.fetch_add(cut as u64, Ordering::Relaxed);
            if rpc.entries.is_empty() && rpc.leader_commit <= self.delivered.max(p.commit) {
                // The follower confirmed holding all of them, flushed, under this very vote, and
                // already has the commit index this request carries: that confirmation is this
                // request's answer. (A request with a newer commit index still goes, empty: it
                // may be the last a follower hears before it leaves the membership, and it must
                // learn what was committed, such as its own retirement.)
                self.acks.answered.fetch_add(1, Ordering::Relaxed);
                return Ok(AppendEntriesResponse::Success);
            }
            if cut > 0 {
                let commit = rpc.leader_commit;
                let answer = self.inner.append_entries(rpc, option).await;
                if matches!(answer, Ok(AppendEntriesResponse::Success)) && self.delivered < commit {
                    self.delivered = commit;
                }
                if let Ok(AppendEntriesResponse::Conflict) = answer {
                    // The follower no longer holds what it confirmed (it cannot under one vote
                    // unless its disk lost flushed data). openraft would take the conflict for
                    // one at the request's original start: forget the confirmations and let it
                    // send the whole request again.
                    self.progress.send_modify(|p| *p = Progress::default());
                    return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(
                        "a follower refused entries it had confirmed: sending them again in full",
                    ))));
                }
                return answer;
            }
        }
        let commit = rpc.leader_commit;
        let answer = self.inner.append_entries(rpc, option).await;
        if matches!(answer, Ok(AppendEntriesResponse::Success)) && self.delivered < commit {
            self.delivered = commit;
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        self.inner.install_snapshot(rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.inner.vote(rpc, option).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::ledger::raft::Proposal;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Proposal(vec![vec![index as u8]])),
        }
    }

    fn rpc(term: u64, prev: u64, indexes: std::ops::RangeInclusive<u64>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(term, 1), prev)),
            entries: indexes.map(|i| entry(term, i)).collect(),
            leader_commit: None,
        }
    }

    fn id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn confirmed(term: u64, index: u64) -> Progress {
        Progress {
            vote: Some(Vote::new_committed(term, 1)),
            offered: Some(id(term, index)),
            answered: Some(id(term, index)),
            confirmed: Some(id(term, index)),
            commit: None,
        }
    }

    #[test]
    fn confirmed_entries_are_cut_and_the_request_starts_after_them() {
        let mut r = rpc(3, 4, 5..=9);
        assert_eq!(trim(&mut r, &confirmed(3, 7)), 3);
        assert_eq!(r.prev_log_id.map(|l| l.index), Some(7));
        assert_eq!(r.entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [8, 9]);

        // Everything confirmed: an empty request that still proves the follower holds entry 9.
        let mut r = rpc(3, 4, 5..=9);
        assert_eq!(trim(&mut r, &confirmed(3, 12)), 5);
        assert_eq!(r.prev_log_id.map(|l| l.index), Some(9));
        assert!(r.entries.is_empty());
    }

    #[test]
    fn nothing_is_cut_under_another_vote_or_for_another_entry() {
        // Confirmed under the previous term's vote: those confirmations say nothing now.
        let mut r = rpc(4, 4, 5..=9);
        assert_eq!(trim(&mut r, &confirmed(3, 7)), 0);
        assert_eq!(r.entries.len(), 5);
        assert_eq!(r.prev_log_id.map(|l| l.index), Some(4));

        // The confirmed index holds another entry in the request (another term): not cut.
        let mut r = rpc(3, 4, 5..=9);
        let mut p = confirmed(3, 7);
        p.confirmed = Some(LogId::new(CommittedLeaderId::new(2, 1), 7));
        assert_eq!(trim(&mut r, &p), 0);

        // Confirmed before the request's first entry: nothing to cut.
        let mut r = rpc(3, 4, 5..=9);
        assert_eq!(trim(&mut r, &confirmed(3, 4)), 0);
        assert_eq!(r.entries.len(), 5);

        // Nothing confirmed.
        let mut r = rpc(3, 4, 5..=9);
        assert_eq!(trim(&mut r, &Progress::default()), 0);
    }

    #[test]
    fn replication_waits_only_for_early_sends_of_its_own_entries() {
        let vote = Vote::new_committed(3, 1);
        let mut p = Progress::default();
        assert!(p.settled(&vote, 5, 9), "nothing offered");
        p.under(vote);
        p.offered = Some(id(3, 12));
        p.answered = Some(id(3, 4));
        assert!(!p.settled(&vote, 5, 9), "entries 5..=9 are on their way");
        p.answered = Some(id(3, 9));
        assert!(p.settled(&vote, 5, 9), "answered through 9: later sends do not hold it back");
        assert!(!p.settled(&vote, 5, 11));
        assert!(p.settled(&vote, 13, 14), "offered only before the request's entries");
        assert!(p.settled(&Vote::new_committed(4, 1), 5, 9), "another vote's sends say nothing");
        // A new vote starts the figures again.
        p.under(Vote::new_committed(4, 2));
        assert_eq!(p.offered, None);
        assert_eq!(p.confirmed, None);
    }
}
