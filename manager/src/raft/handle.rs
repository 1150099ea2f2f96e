//! The cloneable handle the rest of the manager uses to talk to the Raft loop.

use raft::eraftpb::{ConfChangeV2, ConfState, Message};
use tokio::sync::{mpsc, oneshot, watch};

use super::ProposeError;

/// A node's role in its Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes before starting a real election.
    PreCandidate,
    /// Running an election.
    Candidate,
    /// The leader: the only role that accepts proposals.
    Leader,
}

impl From<raft::StateRole> for Role {
    fn from(r: raft::StateRole) -> Self {
        match r {
            raft::StateRole::Follower => Role::Follower,
            raft::StateRole::PreCandidate => Role::PreCandidate,
            raft::StateRole::Candidate => Role::Candidate,
            raft::StateRole::Leader => Role::Leader,
        }
    }
}

/// A point-in-time view of the Raft node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's Raft id.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of; 0 (`raft::INVALID_ID`) when none.
    pub leader_id: u64,
    /// Highest index applied to the state machine.
    pub applied: u64,
    /// Highest index known committed.
    pub commit: u64,
    /// Whether `commit` is an entry of the current term (raft-rs `commit_to_current_term`). A
    /// new leader learns what earlier leaders committed only once an entry of its own term
    /// commits: until then its `commit` may be behind theirs, and reads must wait.
    pub commit_in_term: bool,
    /// First index still in the log (everything before is only in the snapshot).
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Index of the latest snapshot (0: none yet).
    pub snapshot_index: u64,
    /// Voters of the configuration in force at `applied`.
    pub voters: Vec<u64>,
    /// Learners (non-voting members catching up) of that configuration.
    pub learners: Vec<u64>,
    /// The leader's view of every other member (empty unless this node leads).
    pub progress: Vec<PeerProgress>,
    /// Whether the loop is still running.
    pub running: bool,
}

impl RaftStatus {
    /// For tests: the status of leader 1 at index `index`, with these members and peer
    /// progress `(id, matched, recent_active)`.
    #[cfg(test)]
    pub(crate) fn test_leader(
        index: u64,
        voters: &[u64],
        learners: &[u64],
        progress: &[(u64, u64, bool)],
    ) -> RaftStatus {
        RaftStatus {
            id: 1,
            term: 2,
            role: Role::Leader,
            leader_id: 1,
            applied: index,
            commit: index,
            commit_in_term: true,
            first_index: 1,
            last_index: index,
            snapshot_index: 0,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            progress: progress
                .iter()
                .map(|&(id, matched, recent_active)| PeerProgress {
                    id,
                    matched,
                    recent_active,
                })
                .collect(),
            running: true,
        }
    }

    /// The commit index a read may wait for, when this node leads and knows it: everything
    /// any leader committed is at or below it. `None` on a follower, and on a new leader until
    /// an entry of its term has committed.
    pub fn leader_commit(&self) -> Option<u64> {
        (self.role == Role::Leader && self.commit_in_term).then_some(self.commit)
    }

    /// Whether the configuration in force holds `id`, as a voter or a learner.
    pub fn in_config(&self, id: u64) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Whether this node leads and has heard from member `id` lately (see
    /// [`PeerProgress::recent_active`]).
    pub fn hears_from(&self, id: u64) -> bool {
        self.progress.iter().any(|p| p.id == id && p.recent_active)
    }
}

/// The part of [`RaftStatus`] that changes only with elections: who leads, in which term, and
/// whether the loop runs. Published on a watch of its own so that tasks which only follow
/// leadership are not woken by every append, commit and apply (several per write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleStatus {
    /// Current term.
    pub term: u64,
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of; 0 (`raft::INVALID_ID`) when none.
    pub leader_id: u64,
    /// Whether the loop is still running.
    pub running: bool,
}

impl From<&RaftStatus> for RoleStatus {
    fn from(s: &RaftStatus) -> Self {
        RoleStatus {
            term: s.term,
            role: s.role,
            leader_id: s.leader_id,
            running: s.running,
        }
    }
}

/// How far the leader knows a member to be (raft-rs's progress tracker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    /// The member's Raft id.
    pub id: u64,
    /// Highest log index known to be on the member.
    pub matched: u64,
    /// Whether the member answered within the last two election timeouts (check_quorum's
    /// flag, held across raft-rs's resets of it).
    pub recent_active: bool,
}

/// The answer channel of a proposal.
pub(crate) type ProposeReply<O> = oneshot::Sender<Result<(u64, O), ProposeError>>;
/// The answer channel of a configuration change.
pub(crate) type ConfReply = oneshot::Sender<Result<(u64, ConfState), ProposeError>>;

/// What a handle asks of the loop.
pub(crate) enum Command<O> {
    /// Propose a normal entry.
    Propose {
        data: Vec<u8>,
        reply: ProposeReply<O>,
        /// On a follower, send it to the leader as a raft message instead of refusing it.
        forward: bool,
    },
    /// Propose a configuration change.
    ConfChange { cc: ConfChangeV2, reply: ConfReply },
    /// A message received from another node.
    Step(Message),
    /// The transport could not deliver to this member: raft probes it instead of streaming.
    Unreachable(u64),
    /// The transport delivered (`true`) or failed to deliver a snapshot to this member.
    SnapshotSent(u64, bool),
    /// Advance the logical clock by this many ticks (configs with manual ticks only).
    Tick(u32),
    /// Hand leadership to this voter (ignored unless this node leads).
    TransferLeader(u64),
    /// Tell the followers the commit index now (ignored unless this node leads): a follower
    /// waits for it to serve a consistent read.
    BroadcastCommit,
    /// Stop the loop; answered once sled is flushed.
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to a running Raft node. `O` is the state machine's outcome type.
pub struct RaftHandle<O> {
    /// Commands to the loop; bounded so a flood of proposals waits instead of growing memory.
    pub(crate) tx: mpsc::Sender<Command<O>>,
    /// Status published by the loop after every round.
    pub(crate) status: watch::Receiver<RaftStatus>,
    /// Its [`RoleStatus`] part, published only when that changes.
    pub(crate) role: watch::Receiver<RoleStatus>,
}

impl<O> Clone for RaftHandle<O> {
    fn clone(&self) -> Self {
        RaftHandle {
            tx: self.tx.clone(),
            status: self.status.clone(),
            role: self.role.clone(),
        }
    }
}

impl<O: Send + 'static> RaftHandle<O> {
    /// Proposes `data`. Resolves once the entry is committed, fsynced and applied, with its index
    /// and the state machine's outcome. There is no timeout: an appended entry may still commit.
    /// Errors: [`ProposeError::NotLeader`] (nothing was appended), [`ProposeError::Dropped`] (not
    /// applied), [`ProposeError::Stopped`] (the node stopped; the entry may still commit when it
    /// restarts), [`ProposeError::Rejected`].
    pub async fn propose(&self, data: Vec<u8>) -> Result<(u64, O), ProposeError> {
        self.send_proposal(data, false).await
    }

    /// Like [`propose`](Self::propose) on the leader; on a follower, sends the entry to the
    /// leader as a raft `MsgPropose` (over the raft stream, batched with other messages) and
    /// resolves once this node has applied it, with this node's outcome. More errors than
    /// `propose`: [`ProposeError::Dropped`] when no leader is known, and
    /// [`ProposeError::Lost`] when the entry was not seen applied (it may still be): propose
    /// data that the state machine applies once, as the store does with a batch's proposal id.
    pub async fn propose_or_forward(&self, data: Vec<u8>) -> Result<(u64, O), ProposeError> {
        self.send_proposal(data, true).await
    }

    async fn send_proposal(&self, data: Vec<u8>, forward: bool) -> Result<(u64, O), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Propose {
                data,
                reply,
                forward,
            })
            .await
            .map_err(|_| ProposeError::Stopped)?;
        rx.await.map_err(|_| ProposeError::Stopped)?
    }

    /// Proposes a membership change; resolves once it is applied, with its index and the new
    /// configuration. Same error rules as [`propose`](Self::propose).
    pub async fn propose_conf_change(
        &self,
        cc: ConfChangeV2,
    ) -> Result<(u64, ConfState), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::ConfChange { cc, reply })
            .await
            .map_err(|_| ProposeError::Stopped)?;
        rx.await.map_err(|_| ProposeError::Stopped)?
    }

    /// Feeds a message received from another node into the loop.
    pub async fn step(&self, msg: Message) -> Result<(), ProposeError> {
        self.tx
            .send(Command::Step(msg))
            .await
            .map_err(|_| ProposeError::Stopped)
    }

    /// Tells raft that messages to `id` could not be delivered (raft-rs `report_unreachable`).
    pub async fn report_unreachable(&self, id: u64) {
        let _ = self.tx.send(Command::Unreachable(id)).await;
    }

    /// Tells raft whether a snapshot reached `id` (raft-rs `report_snapshot`).
    pub async fn report_snapshot(&self, id: u64, delivered: bool) {
        let _ = self.tx.send(Command::SnapshotSent(id, delivered)).await;
    }

    /// Asks raft to hand leadership to the voter `id` (raft-rs `transfer_leader`): the leader
    /// brings it up to date and tells it to campaign at once. Ignored unless this node leads;
    /// watch [`status`](Self::status) for the outcome.
    pub async fn transfer_leader(&self, id: u64) {
        let _ = self.tx.send(Command::TransferLeader(id)).await;
    }

    /// Asks the leader to tell its followers its commit index now rather than with the next
    /// append or heartbeat (ignored unless this node leads; never waits: dropped when the loop's
    /// queue is full, and the next heartbeat carries the index anyway). A follower serving a
    /// consistent read waits to apply the leader's commit index, so the leader calls this
    /// when a follower asks for it.
    pub fn broadcast_commit(&self) {
        let _ = self.tx.try_send(Command::BroadcastCommit);
    }

    /// Advances the node's logical clock by `ticks` (for a [`RaftConfig`](super::RaftConfig)
    /// with `manual_ticks`: tests drive time themselves).
    pub async fn tick(&self, ticks: u32) {
        let _ = self.tx.send(Command::Tick(ticks)).await;
    }

    /// The node's current status.
    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (e.g. to start controllers on leadership, or to
    /// wait until an index is applied).
    pub fn subscribe(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// A receiver that sees every change of leadership, term or running state, and is not woken
    /// by the appends, commits and applies in between (see [`RoleStatus`]).
    pub fn subscribe_role(&self) -> watch::Receiver<RoleStatus> {
        self.role.clone()
    }

    /// Stops the loop after flushing sled; returns once it has stopped (at once if it already
    /// had). Pending proposals get [`ProposeError::Stopped`].
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
