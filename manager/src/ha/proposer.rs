//! Writes and consistent reads on any manager.
//!
//! **Writes.** The leader proposes into its own log. A follower hands the encoded batch to its
//! raft node, which sends it to the leader as a raft `MsgPropose` on the raft stream (batched
//! with the other messages to the leader, no call of its own), and answers once the follower
//! has applied the entry itself, with its own outcome (the same as the leader's), so a caller
//! reads its own write on any manager. Forwarding the *batch* rather than the whole API call keeps
//! one code path for every write (API handlers, controllers, the dispatcher) and keeps decisions
//! where the caller made them; the store's optimistic versions refuse a batch decided from a
//! stale view, on every manager alike.
//!
//! **No quorum.** A proposal has no timeout of its own (an entry in the log may still commit),
//! so the writer puts one around it: after [`NO_QUORUM_AFTER`] without an answer — no leader
//! elected, or a leader that cannot commit — the write fails with [`NoQuorum`], which says how
//! many managers were reachable. The entry may still commit later; the error says so.
//!
//! **Retries.** A write is retried (within the deadline) when it surely did not enter the log (no
//! leader, "not the leader", a dropped proposal), and when a forwarded proposal was not seen
//! applied within a second or its leader changed meanwhile. In that last case the first
//! attempt may still commit; every
//! attempt proposes the same bytes, with the batch's random `proposal_id`, and the store applies
//! a proposal id only once (it remembers the ids applied lately), so the retry answers as the
//! first attempt did — applied — instead of "already exists" for the object it created itself.
//! A write is reported failed only when it was not applied.
//!
//! **Reads.** [`HaProposer::read_barrier`] asks the leader for its commit index and waits until
//! this manager has applied it (a follower), or until the leader has applied its own commit index
//! (the leader). A leader cut off from its quorum steps down within one election timeout
//! (check-quorum), which bounds how stale a read on it can be.

use std::sync::Arc;
use std::time::Duration;

use mini_proto::v1::raft_transport_client::RaftTransportClient;
use mini_proto::v1::{ReadIndexRequest, StoreBatch};
use prost::Message as _;
use tokio::time::Instant;

use super::{NO_QUORUM_AFTER, Peers, REACHABLE_WITHIN};
use crate::raft::{ProposeError, RaftHandle, RaftStatus, Role};
use crate::store::{ApplyError, ProposeFailed, Proposer, Store, WriteError};

/// A write or read that found no working quorum within the deadline.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "no quorum: {reachable} of {managers} managers reachable (a majority of {majority} is needed); \
     the write was not confirmed within {secs:.1} s{maybe}"
)]
pub struct NoQuorum {
    /// Managers this one could reach (itself included).
    pub reachable: usize,
    /// Voting managers.
    pub managers: usize,
    /// Votes a commit needs.
    pub majority: usize,
    /// The deadline, in seconds.
    pub secs: f64,
    /// Whether the write may still be applied.
    maybe: &'static str,
}

/// Where the error message of a leader that refuses a forwarded write starts.
pub const NOT_LEADER: &str = "not the raft leader";

/// The writer of every manager (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct HaProposer {
    raft: RaftHandle<Result<(), ApplyError>>,
    store: Store,
    peers: Peers,
    /// Proposal latency and failures.
    metrics: Arc<crate::metrics::Metrics>,
    /// Shares one ReadIndex call to the leader among the readers waiting at once.
    reads: Arc<ReadBatch>,
}

/// Read-index batching: a follower's readers share ReadIndex calls. A reader may use the answer
/// of a call that *started* after it arrived (the leader's commit index then is at least the one
/// when the reader arrived, so it still reads every write acknowledged before it). One call is
/// in flight at a time; readers arriving meanwhile share the next one.
#[derive(Default)]
struct ReadBatch {
    /// Calls started so far (call k is the k-th).
    started: std::sync::atomic::AtomicU64,
    /// Held while a call is in flight; holds the last finished call: (its number, its answer).
    last: tokio::sync::Mutex<(u64, Option<u64>)>,
}

/// What one attempt at a write came to.
enum Attempt {
    Done(Result<u64, WriteError>),
    /// Surely not in the log: try again once the leader may have changed.
    Retry,
}

impl HaProposer {
    /// The writer of a manager with this Raft node, store and peers.
    pub fn new(raft: RaftHandle<Result<(), ApplyError>>, store: Store, peers: Peers) -> Self {
        HaProposer {
            raft,
            store,
            peers,
            metrics: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// Times proposals and counts failed ones into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The Raft node.
    pub fn raft(&self) -> &RaftHandle<Result<(), ApplyError>> {
        &self.raft
    }

    /// The address book of the other managers.
    pub(super) fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Whether this manager leads.
    pub fn is_leader(&self) -> bool {
        self.raft.status().role == Role::Leader
    }

    /// How many voters this manager reaches, itself included.
    pub fn reachable(&self, status: &RaftStatus) -> usize {
        status
            .voters
            .iter()
            .filter(|&&id| {
                id == status.id
                    || status.hears_from(id)
                    || self.peers.reached_lately(id, REACHABLE_WITHIN)
            })
            .count()
    }

    fn no_quorum(&self, maybe_applied: bool) -> NoQuorum {
        let status = self.raft.status();
        let managers = status.voters.len().max(1);
        NoQuorum {
            reachable: self.reachable(&status),
            managers,
            majority: managers / 2 + 1,
            secs: NO_QUORUM_AFTER.as_secs_f64(),
            maybe: if maybe_applied {
                "; it may still be applied once a quorum is back"
            } else {
                ""
            },
        }
    }

    /// Proposes locally; only the leader does (used by the `Propose` RPC, which managers of
    /// earlier versions forward their writes with: never forwards again). Answers the entry's
    /// index and the store's refusal, if it refused the batch.
    pub async fn propose_here(
        &self,
        data: Vec<u8>,
    ) -> Result<(u64, Option<ApplyError>), ProposeFailed> {
        let deadline = Instant::now() + NO_QUORUM_AFTER;
        let reason = match tokio::time::timeout_at(deadline, self.raft.propose(data)).await {
            Err(_) => self.no_quorum(true).to_string(),
            Ok(Ok((index, outcome))) => return Ok((index, outcome.err())),
            Ok(Err(ProposeError::NotLeader { leader })) => {
                format!("{NOT_LEADER} (leader: {leader:?})")
            }
            Ok(Err(err)) => err.to_string(),
        };
        Err(ProposeFailed { reason })
    }

    async fn attempt(&self, data: &[u8], deadline: Instant) -> Attempt {
        let status = self.raft.status();
        let leader = status.leader_id;
        if status.role != Role::Leader && leader == 0 {
            self.leader_changed(leader, deadline).await;
            return Attempt::Retry;
        }
        let proposed = self.raft.propose_or_forward(data.to_vec());
        match tokio::time::timeout_at(deadline, proposed).await {
            Err(_) => Attempt::Done(Err(failed(self.no_quorum(true).to_string()))),
            Ok(Ok((index, Ok(())))) => Attempt::Done(Ok(index)),
            Ok(Ok((_, Err(err)))) => Attempt::Done(Err(WriteError::Rejected(err))),
            // Surely not in the log: no leader, or a leader that stepped down meanwhile.
            Ok(Err(ProposeError::NotLeader { .. } | ProposeError::Dropped)) => {
                self.leader_changed(leader, deadline).await;
                Attempt::Retry
            }
            // Forwarded and not seen applied: it may be in the log. Propose the same bytes
            // again (see "Retries" in the module docs).
            Ok(Err(ProposeError::Lost)) => Attempt::Retry,
            Ok(Err(err)) => Attempt::Done(Err(failed(err.to_string()))),
        }
    }

    /// Resolves when this node's idea of the leader differs from `leader` (or at `deadline`,
    /// or after a short pause, so callers poll).
    async fn leader_changed(&self, leader: u64, deadline: Instant) {
        let mut rx = self.raft.subscribe();
        let pause = Instant::now() + Duration::from_millis(100);
        let _ = tokio::time::timeout_at(
            deadline.min(pause),
            rx.wait_for(|s| s.leader_id != leader || !s.running),
        )
        .await;
    }

    /// Waits until this manager's store has applied `index` (or `deadline`).
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> bool {
        let mut rx = self.raft.subscribe();
        let caught_up = tokio::time::timeout_at(deadline, rx.wait_for(|s| s.applied >= index));
        matches!(caught_up.await, Ok(Ok(_))) || self.store.applied_index() >= index
    }

    /// Waits until this manager has applied everything the leader had committed when called.
    /// Fails with [`NoQuorum`] when there is no leader to ask within the deadline.
    pub async fn read_barrier(&self) -> Result<(), NoQuorum> {
        let deadline = Instant::now() + NO_QUORUM_AFTER;
        loop {
            let status = self.raft.status();
            let commit = if status.role == Role::Leader {
                // A new leader's commit index may be behind its predecessors' until an entry
                // of its own term commits (at once, with a quorum): wait for that.
                let mut rx = self.raft.subscribe();
                let known = rx.wait_for(|s| s.role != Role::Leader || s.leader_commit().is_some());
                match tokio::time::timeout_at(deadline, known).await {
                    Ok(Ok(s)) => s.leader_commit(),
                    _ => None,
                }
            } else if status.leader_id != 0 {
                self.shared_commit(status.leader_id, deadline).await
            } else {
                None
            };
            if let Some(commit) = commit {
                if self.wait_applied(commit, deadline).await {
                    return Ok(());
                }
            } else {
                self.leader_changed(status.leader_id, deadline).await;
            }
            if Instant::now() >= deadline {
                return Err(self.no_quorum(false));
            }
        }
    }

    /// The leader's commit index from a ReadIndex call that started after this call did, shared
    /// with the other readers waiting at the same time (see [`ReadBatch`]).
    async fn shared_commit(&self, leader: u64, deadline: Instant) -> Option<u64> {
        self.reads.share(|| self.ask_commit(leader, deadline)).await
    }

    async fn ask_commit(&self, leader: u64, deadline: Instant) -> Option<u64> {
        let channel = self.peers.channel_to(leader)?;
        let request = ReadIndexRequest {
            cluster_id: self.peers.cluster_id(),
        };
        let mut client = RaftTransportClient::new(channel);
        let call = client.read_index(request);
        tokio::select! {
            r = tokio::time::timeout_at(deadline, call) => r.ok()?.ok().map(|r| r.into_inner().commit_index),
            () = self.leader_changed(leader, deadline) => None,
        }
    }
}

impl ReadBatch {
    /// The answer of a call of `ask` that started after this reader arrived: its own, or one
    /// shared with the readers waiting at the same time.
    async fn share<F: std::future::Future<Output = Option<u64>>>(
        &self,
        ask: impl FnOnce() -> F,
    ) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let arrived = self.started.load(Ordering::SeqCst);
        let mut last = self.last.lock().await;
        if last.0 > arrived {
            return last.1;
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = ask().await;
        *last = (number, answer);
        answer
    }
}

fn failed(reason: String) -> WriteError {
    WriteError::Failed(ProposeFailed { reason })
}

impl Proposer for HaProposer {
    async fn propose(&self, batch: StoreBatch) -> Result<u64, WriteError> {
        let started = Instant::now();
        let result = self.propose_once(batch).await;
        self.metrics
            .proposal_duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.proposals_failed.inc();
        }
        result
    }
}

impl HaProposer {
    async fn propose_once(&self, mut batch: StoreBatch) -> Result<u64, WriteError> {
        // Every attempt proposes the same bytes, so the store applies a retried batch once.
        if batch.proposal_id == 0 {
            batch.proposal_id = rand::random::<u64>().max(1);
        }
        let data = batch.encode_to_vec();
        let deadline = Instant::now() + NO_QUORUM_AFTER;
        loop {
            if let Attempt::Done(result) = self.attempt(&data, deadline).await {
                return result;
            }
            if Instant::now() >= deadline {
                return Err(failed(self.no_quorum(false).to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::ReadBatch;

    #[tokio::test(flavor = "current_thread")]
    async fn readers_waiting_at_once_share_read_index_calls() {
        let batch = ReadBatch::default();
        let calls = AtomicU64::new(0);
        let commit = AtomicU64::new(10);
        let ask = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            let answer = commit.load(Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Some(answer)
        };
        let first = batch.share(ask);
        let others = futures::future::join_all((0..32).map(|_| batch.share(ask)));
        let (first, others) = tokio::join!(first, others);
        assert_eq!(first, Some(10));
        assert!(others.iter().all(|a| *a == Some(10)), "{others:?}");
        // The first reader's call, then one call shared by the 32 that arrived during it.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A reader arriving after a call finished does not reuse it: a write committed since
        // is seen.
        commit.store(11, Ordering::SeqCst);
        assert_eq!(batch.share(ask).await, Some(11));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
