//! The one task that owns `RawNode` and drives the Ready loop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, SnapshotMetadata};
use raft::{RawNode, StateRole, Storage as _};
use tokio::sync::{mpsc, oneshot, watch};

use super::guard::{Local, Refusals};
use super::handle::{Command, ConfReply, ProposeReply, RaftStatus, RoleStatus};
use super::storage::SledStorage;
use super::{ProposeError, RaftConfig, RaftError, StateMachine, Transport};

/// Who waits for the entry at some index.
enum Waiter<O> {
    /// A normal proposal.
    Normal(ProposeReply<O>),
    /// A configuration change.
    Conf(ConfReply),
}

/// A proposal appended to the log and not yet applied.
struct Pending<O> {
    /// The id carried in the entry's `context`.
    id: u64,
    /// The term it was appended in: the entry applied at its index must have this term.
    term: u64,
    /// Who to answer.
    waiter: Waiter<O>,
}

/// A proposal forwarded to the leader as a raft `MsgPropose` (a follower's write), waiting to
/// see its entry applied here. The follower does not learn the entry's index: it finds the entry
/// by its context, which names this node and the proposal's number.
struct Forwarded<O> {
    /// The leader it was sent to.
    leader: u64,
    /// When it was sent.
    at: Instant,
    /// Who to answer.
    reply: ProposeReply<O>,
}

/// How long a forwarded proposal may go unseen before its proposer is told
/// [`ProposeError::Lost`]: the message may have been lost on the way (a broken stream, a full
/// queue) or dropped by the leader (a leadership transfer). The proposer proposes the same batch
/// again, which the store applies once.
const FORWARD_UNSEEN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The context of this node's proposal number `n`: the node's raft id, then `n` (both big
/// endian). It names the proposal across the group, so a follower recognises its forwarded
/// entry when it applies it.
pub(crate) fn proposal_context(node: u64, n: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..8].copy_from_slice(&node.to_be_bytes());
    c[8..].copy_from_slice(&n.to_be_bytes());
    c
}

/// The node and proposal number a [`proposal_context`] names; `None` for any other context.
pub(crate) fn proposal_of(context: &[u8]) -> Option<(u64, u64)> {
    let context: &[u8; 16] = context.try_into().ok()?;
    let (node, n) = context.split_at(8);
    Some((
        u64::from_be_bytes(node.try_into().ok()?),
        u64::from_be_bytes(n.try_into().ok()?),
    ))
}

/// What a proposal raft-rs refused comes to for its proposer.
fn refused(e: raft::Error) -> ProposeError {
    match e {
        raft::Error::ProposalDropped => ProposeError::Dropped,
        e => ProposeError::Rejected {
            reason: e.to_string(),
        },
    }
}

/// An answer held back until the next fsync is done.
enum Answer<O> {
    /// For a normal proposal.
    Normal(ProposeReply<O>, Result<(u64, O), ProposeError>),
    /// For a configuration change.
    Conf(ConfReply, Result<(u64, ConfState), ProposeError>),
}

impl<O> Answer<O> {
    fn send(self) {
        // A dropped receiver means the proposer gave up waiting: nothing to do.
        match self {
            Answer::Normal(tx, r) => drop(tx.send(r)),
            Answer::Conf(tx, r) => drop(tx.send(r)),
        }
    }
}

impl<O> Waiter<O> {
    fn fail(self, e: ProposeError) -> Answer<O> {
        match self {
            Waiter::Normal(tx) => Answer::Normal(tx, Err(e)),
            Waiter::Conf(tx) => Answer::Conf(tx, Err(e)),
        }
    }
}

/// The state of the Raft loop.
pub(crate) struct Node<S: StateMachine, T> {
    /// raft-rs's node, owning the sled storage.
    pub(crate) raw: RawNode<SledStorage>,
    /// The replicated state machine.
    pub(crate) sm: S,
    /// Where outgoing messages go.
    pub(crate) transport: T,
    /// Settings (intervals).
    pub(crate) config: RaftConfig,
    /// Proposals waiting for their entry to apply, by log index.
    pending: BTreeMap<u64, Pending<S::Outcome>>,
    /// Proposals forwarded to the leader, by number.
    forwarded: HashMap<u64, Forwarded<S::Outcome>>,
    /// The leader the forwarded proposals were last checked against.
    forwarded_leader: u64,
    /// Answers to send after the next fsync.
    answers: Vec<Answer<S::Outcome>>,
    /// Next proposal id (starts random so ids from different runs or nodes rarely meet).
    next_id: u64,
    /// Highest index applied to `sm`.
    pub(crate) applied: u64,
    /// The configuration in force at `applied`.
    pub(crate) conf_state: ConfState,
    /// Index of the latest snapshot.
    snapshot_index: u64,
    /// Where the status is published.
    status: watch::Sender<RaftStatus>,
    /// Where its role part is published (see [`RoleStatus`]).
    role: watch::Sender<RoleStatus>,
    /// When the leader last saw each member active. raft-rs clears its `recent_active` flags at
    /// every election timeout (check_quorum) and sets them again on the next answer, so a
    /// snapshot of the flags alone shows healthy members as inactive right after a reset.
    heard: HashMap<u64, Instant>,
    /// Messages from other nodes refused by the guard (logged at most once a second).
    refused: Refusals,
    /// On the leader: the last index of each batch of entries a follower proposed, in order,
    /// until its commit has been broadcast (the follower answers its writer once it applies
    /// them, so it must learn the commit at once).
    remote_proposals: VecDeque<u64>,
    /// On the leader: someone asked for the commit index to be broadcast.
    commit_wanted: bool,
}

impl<S: StateMachine, T: Transport> Node<S, T> {
    /// Wraps a ready `RawNode` whose state machine already holds everything up to `applied`.
    pub(crate) fn new(
        raw: RawNode<SledStorage>,
        sm: S,
        transport: T,
        config: RaftConfig,
        applied: u64,
        (status, role): (watch::Sender<RaftStatus>, watch::Sender<RoleStatus>),
    ) -> Self {
        let conf_state = raw.store().snapshot_metadata().get_conf_state().clone();
        let snapshot_index = raw.store().snapshot_metadata().index;
        let mut node = Node {
            raw,
            sm,
            transport,
            config,
            pending: BTreeMap::new(),
            forwarded: HashMap::new(),
            forwarded_leader: raft::INVALID_ID,
            answers: Vec::new(),
            next_id: rand::random::<u64>() >> 1,
            applied,
            conf_state,
            snapshot_index,
            status,
            role,
            heard: HashMap::new(),
            refused: Refusals::default(),
            remote_proposals: VecDeque::new(),
            commit_wanted: false,
        };
        node.publish(true);
        node
    }

    /// Runs the loop until shutdown or until every handle is dropped.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command<S::Outcome>>,
    ) -> Result<(), RaftError> {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timer = !self.config.manual_ticks;
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        // Tick lag: how late a tick came (the loop was starved). Logged when it reaches half
        // the shortest election timeout, where followers start to campaign.
        let mut last_tick: Option<tokio::time::Instant> = None;
        let lag_warning = self.config.tick_interval * (self.config.election_tick as u32 / 2);
        let result = loop {
            tokio::select! {
                _ = ticker.tick(), if timer => {
                    let now = tokio::time::Instant::now();
                    let lag = last_tick
                        .map(|t| now.saturating_duration_since(t).saturating_sub(self.config.tick_interval))
                        .unwrap_or_default();
                    last_tick = Some(now);
                    if lag >= lag_warning && !lag_warning.is_zero() {
                        tracing::warn!(lag_ms = lag.as_millis() as u64, "raft ticks ran late: the machine is overloaded");
                    }
                    self.raw.tick();
                    self.expire_forwarded();
                }
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break Ok(()) };
                    shutdown = self.handle(cmd);
                    // Drain everything queued so one fsync covers many proposals.
                    while shutdown.is_none() {
                        match rx.try_recv() {
                            Ok(cmd) => shutdown = self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
            }
            if let Err(e) = self.on_ready().await {
                break Err(e);
            }
            if shutdown.is_some() {
                break Ok(());
            }
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft loop failed");
        }
        let flushed = self.raw.store().start_flush().await;
        for (_, p) in std::mem::take(&mut self.pending) {
            self.answers.push(p.waiter.fail(ProposeError::Stopped));
        }
        for (_, f) in std::mem::take(&mut self.forwarded) {
            self.answers
                .push(Answer::Normal(f.reply, Err(ProposeError::Stopped)));
        }
        for a in self.answers.drain(..) {
            a.send();
        }
        rx.close();
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Shutdown(done) = cmd {
                let _ = done.send(());
            }
        }
        self.publish(false);
        if let Some(done) = shutdown {
            let _ = done.send(());
        }
        result.and(flushed)
    }

    /// Handles one command; returns the shutdown acknowledgement if it asked to stop.
    fn handle(&mut self, cmd: Command<S::Outcome>) -> Option<oneshot::Sender<()>> {
        match cmd {
            Command::Propose {
                data,
                reply,
                forward: true,
            } if self.raw.raft.state != StateRole::Leader => self.forward(data, reply),
            Command::Propose { data, reply, .. } => {
                self.propose(Waiter::Normal(reply), |raw, ctx| raw.propose(ctx, data))
            }
            Command::ConfChange { cc, reply } => self.propose(Waiter::Conf(reply), |raw, ctx| {
                raw.propose_conf_change(ctx, cc)
            }),
            Command::Step(msg) => self.step(msg),
            Command::Unreachable(id) => self.raw.report_unreachable(id),
            Command::SnapshotSent(id, delivered) => {
                let status = if delivered {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(id, status);
            }
            Command::Tick(n) => {
                for _ in 0..n {
                    self.raw.tick();
                }
                self.expire_forwarded();
            }
            Command::TransferLeader(id) => {
                if self.raw.raft.state == StateRole::Leader {
                    self.raw.transfer_leader(id);
                }
            }
            Command::BroadcastCommit => self.commit_wanted = true,
            Command::Shutdown(done) => return Some(done),
        }
        None
    }

    /// On the leader, broadcasts the commit index (raft-rs's `bcast_append`: entries a
    /// follower lacks, or an empty append carrying the index) when a follower waits for it:
    /// an entry it proposed has committed, or a consistent read asked
    /// ([`Command::BroadcastCommit`]). Other commits travel with the next append or heartbeat
    /// (`skip_bcast_commit` in [`RaftConfig`]).
    fn broadcast_commit_if_due(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            self.remote_proposals.clear();
            self.commit_wanted = false;
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let mut due = std::mem::take(&mut self.commit_wanted);
        while self
            .remote_proposals
            .front()
            .is_some_and(|&i| i <= committed)
        {
            self.remote_proposals.pop_front();
            due = true;
        }
        if due {
            self.raw.raft.bcast_append();
            // A leader's messages need no fsync first: send them now, whether this runs
            // before a Ready is taken or after `advance` (where raft-rs commits what its own
            // fsync completed).
            let msgs = std::mem::take(&mut self.raw.raft.msgs);
            if !msgs.is_empty() {
                self.transport.send(msgs);
            }
        }
    }

    /// Steps a message from another node, unless [`guard`](super::guard) refuses it (raft-rs
    /// would panic on it, or no manager sends it) or it carries a snapshot the state machine
    /// could not restore (the loop would stop on it).
    fn step(&mut self, msg: raft::eraftpb::Message) {
        let checked = super::guard::check_message(&msg, self.raw.raft.id)
            .and_then(|()| super::guard::check_in_state(&msg, &Local::of(&self.raw.raft)))
            .and_then(|()| match msg.snapshot.as_ref() {
                Some(snap) => self
                    .sm
                    .check_snapshot(&snap.data)
                    .map_err(|e| format!("snapshot data cannot be restored: {e}")),
                None => Ok(()),
            });
        if let Err(reason) = checked {
            self.refused
                .note(msg.from, &format!("{:?}", msg.get_msg_type()), &reason);
            return;
        }
        let proposal = msg.get_msg_type() == raft::eraftpb::MessageType::MsgPropose;
        let before = self.raw.raft.raft_log.last_index();
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(error = %e, "raft: dropped a received message");
        }
        let last = self.raw.raft.raft_log.last_index();
        if proposal && last > before && self.raw.raft.state == StateRole::Leader {
            self.remote_proposals.push_back(last);
        }
    }

    /// Appends a proposal if this node leads; answers at once otherwise.
    fn propose(
        &mut self,
        waiter: Waiter<S::Outcome>,
        append: impl FnOnce(&mut RawNode<SledStorage>, Vec<u8>) -> raft::Result<()>,
    ) {
        if self.raw.raft.state != StateRole::Leader {
            let leader = Some(self.raw.raft.leader_id).filter(|&l| l != raft::INVALID_ID);
            waiter.fail(ProposeError::NotLeader { leader }).send();
            return;
        }
        let (id, context) = self.next_proposal();
        let before = self.raw.raft.raft_log.last_index();
        let err = match append(&mut self.raw, context) {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                if index > before {
                    let term = self.raw.raft.term;
                    self.pending.insert(index, Pending { id, term, waiter });
                    return;
                }
                ProposeError::Dropped
            }
            Err(e) => refused(e),
        };
        waiter.fail(err).send();
    }

    /// The next proposal number and its entry's [`proposal_context`].
    fn next_proposal(&mut self) -> (u64, Vec<u8>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        (id, proposal_context(self.raw.raft.id, id).to_vec())
    }

    /// Sends a follower's proposal to the leader as a raft `MsgPropose` (raft-rs forwards it)
    /// and waits to apply its entry here: the answer is this node's own outcome of the entry,
    /// the same as the leader's (the state machine is deterministic), and the caller reads its
    /// write here. Without a leader the proposal is dropped at once.
    fn forward(&mut self, data: Vec<u8>, reply: ProposeReply<S::Outcome>) {
        let leader = self.raw.raft.leader_id;
        if leader == raft::INVALID_ID || self.raw.raft.state != StateRole::Follower {
            drop(reply.send(Err(ProposeError::Dropped)));
            return;
        }
        let (id, context) = self.next_proposal();
        match self.raw.propose(context, data) {
            Ok(()) => {
                self.forwarded.insert(
                    id,
                    Forwarded {
                        leader,
                        at: Instant::now(),
                        reply,
                    },
                );
            }
            Err(e) => drop(reply.send(Err(refused(e)))),
        }
    }

    /// Answers [`ProposeError::Lost`] to forwarded proposals that went to a leader this node no
    /// longer follows, or that were not seen within [`FORWARD_UNSEEN_AFTER`].
    fn expire_forwarded(&mut self) {
        if self.forwarded.is_empty() {
            return;
        }
        let leader = self.raw.raft.leader_id;
        let now = Instant::now();
        let lost: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, f)| f.leader != leader || now.duration_since(f.at) >= FORWARD_UNSEEN_AFTER)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(f) = self.forwarded.remove(&id) {
                drop(f.reply.send(Err(ProposeError::Lost)));
            }
        }
    }

    /// The forwarded proposal an applied entry answers, if it is one of this node's.
    fn forwarded_for(&mut self, entry: &Entry) -> Option<Forwarded<S::Outcome>> {
        if self.forwarded.is_empty() {
            return None;
        }
        let (node, n) = proposal_of(&entry.context)?;
        if node != self.raw.raft.id {
            return None;
        }
        self.forwarded.remove(&n)
    }

    /// One round of the Ready protocol: send, install snapshot, persist and start the fsync,
    /// apply while it runs, send what waited for it, advance.
    async fn on_ready(&mut self) -> Result<(), RaftError> {
        self.broadcast_commit_if_due();
        if !self.raw.has_ready() {
            self.publish(true);
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
            // The transport's senders run on this loop's runtime: let them put the messages
            // (a leader's appends) on the wire before this round's disk work, so the
            // followers' fsyncs overlap the leader's own.
            tokio::task::yield_now().await;
        }
        if !ready.snapshot().is_empty() {
            // Fsyncs by itself.
            self.install_snapshot(ready.snapshot())?;
        }
        if !ready.entries().is_empty() {
            self.raw.mut_store().append(ready.entries())?;
        }
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        // One fsync when raft needs one: new entries, a new term or vote (raft-rs's
        // `must_sync`, etcd's `MustSync`). A hard state whose only change is the commit index
        // is written but not fsynced: a node that loses it learns the commit index again from
        // the leader, and re-applies from its snapshot on restart anyway. Without this, every
        // write cost a second fsync on the leader (the round that commits it) and on each
        // follower (the leader's commit broadcast), both on a write's critical path.
        let sync = ready
            .must_sync()
            .then(|| (Instant::now(), self.raw.store().start_flush()));
        // raft-rs hands out only committed entries this node persisted in an earlier round
        // (`min(committed, persisted)`), so they are applied, and their proposers answered,
        // while this round's fsync runs.
        self.apply(ready.take_committed_entries())?;
        self.send_answers();
        if let Some((started, flush)) = sync {
            flush.await?;
            self.sm.log_synced(started.elapsed());
        }
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Durable with the next fsync; an entry acknowledged before that is in the fsynced
            // log and is committed again by the next leader, so nothing acknowledged is lost.
            self.raw.mut_store().set_commit(commit)?;
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        self.broadcast_commit_if_due();
        self.apply(light.take_committed_entries())?;
        // The applied entries were fsynced in this or an earlier round.
        self.send_answers();
        self.raw.advance_apply();
        self.maybe_snapshot()?;
        if self.forwarded_leader != self.raw.raft.leader_id {
            self.forwarded_leader = self.raw.raft.leader_id;
            self.expire_forwarded();
        }
        self.publish(true);
        Ok(())
    }

    fn send_answers(&mut self) {
        for a in self.answers.drain(..) {
            a.send();
        }
    }

    /// Applies committed entries in order and queues the proposers' answers.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for entry in entries {
            let index = entry.index;
            if index <= self.applied {
                continue;
            }
            // Proposals whose index was taken by another entry were overwritten: not applied.
            while let Some(e) = self.pending.first_entry() {
                if *e.key() >= index {
                    break;
                }
                self.answers
                    .push(e.remove().waiter.fail(ProposeError::Dropped));
            }
            // A proposal whose index now holds another entry (a new leader overwrote it) was
            // not applied: answer it so, instead of dropping its reply channel.
            let mine = match self.pending.remove(&index) {
                Some(p)
                    if p.term == entry.term
                        && entry.context.as_ref() == proposal_context(self.raw.raft.id, p.id) =>
                {
                    Some(p)
                }
                Some(p) => {
                    self.answers.push(p.waiter.fail(ProposeError::Dropped));
                    None
                }
                None => None,
            };
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    // Raft's own empty entries (a new leader's no-op) carry no context.
                    let outcome = (!entry.data.is_empty() || !entry.context.is_empty())
                        .then(|| self.sm.apply(index, &entry.data));
                    let forwarded = self.forwarded_for(&entry);
                    if let Some(p) = mine {
                        self.answers.push(match (p.waiter, outcome) {
                            (Waiter::Normal(tx), Some(o)) => Answer::Normal(tx, Ok((index, o))),
                            (w, _) => w.fail(ProposeError::Dropped),
                        });
                    } else if let (Some(f), Some(o)) = (forwarded, outcome) {
                        self.answers.push(Answer::Normal(f.reply, Ok((index, o))));
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let result = self.apply_conf_change(&entry);
                    if let Some(p) = mine {
                        self.answers.push(match (p.waiter, result) {
                            (Waiter::Conf(tx), Ok(cs)) => Answer::Conf(tx, Ok((index, cs))),
                            (w, Ok(_)) => w.fail(ProposeError::Dropped),
                            (w, Err(reason)) => w.fail(ProposeError::Rejected { reason }),
                        });
                    }
                }
            }
            self.applied = index;
        }
        // Not persisted: on start the node resumes from its snapshot and applies every later
        // entry again (see `raft::start_with_transport`).
        self.applied = self.applied.max(last);
        Ok(())
    }

    /// Applies a configuration-change entry to raft's progress tracker.
    fn apply_conf_change(&mut self, entry: &Entry) -> Result<ConfState, String> {
        let applied = if entry.get_entry_type() == EntryType::EntryConfChange {
            let cc = ConfChange::parse_from_bytes(&entry.data).map_err(|e| e.to_string())?;
            self.raw.apply_conf_change(&cc)
        } else {
            // An empty V2 change is raft's automatic "leave joint configuration".
            let cc = ConfChangeV2::parse_from_bytes(&entry.data).map_err(|e| e.to_string())?;
            self.raw.apply_conf_change(&cc)
        };
        match applied {
            Ok(cs) => {
                self.conf_state = cs.clone();
                Ok(cs)
            }
            Err(e) => {
                tracing::warn!(index = entry.index, error = %e, "raft: conf change not applied");
                Err(e.to_string())
            }
        }
    }

    /// Replaces the state with a snapshot sent by the leader.
    fn install_snapshot(&mut self, snap: &raft::eraftpb::Snapshot) -> Result<(), RaftError> {
        let meta = snap.get_metadata();
        self.sm
            .restore(meta.index, &snap.data)
            .map_err(|reason| RaftError::Restore {
                index: meta.index,
                reason,
            })?;
        self.raw.mut_store().apply_snapshot(snap)?;
        // Proposals up to the snapshot may or may not be in it.
        let later = self.pending.split_off(&(meta.index + 1));
        for (_, p) in std::mem::replace(&mut self.pending, later) {
            self.answers.push(p.waiter.fail(ProposeError::Dropped));
        }
        // A forwarded proposal may be in the snapshot: its proposer asks again, and the store
        // answers a batch it applied already as applied.
        for (_, f) in self.forwarded.drain() {
            self.answers
                .push(Answer::Normal(f.reply, Err(ProposeError::Lost)));
        }
        self.applied = meta.index;
        self.snapshot_index = meta.index;
        self.conf_state = meta.get_conf_state().clone();
        Ok(())
    }

    /// Takes a snapshot and compacts the log when enough entries were applied since the last
    /// one, or when a leader needs a snapshot newer than the stored one.
    fn maybe_snapshot(&mut self) -> Result<(), RaftError> {
        let wanted = self.raw.store().snapshot_wanted();
        let due = self.applied >= self.snapshot_index + self.config.snapshot_interval;
        let asked = wanted > self.snapshot_index && self.applied >= wanted;
        if !(due || asked) || self.applied == 0 {
            return Ok(());
        }
        let mut meta = SnapshotMetadata {
            index: self.applied,
            term: self.raw.store().term(self.applied)?,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state.clone());
        let data = self.sm.snapshot();
        self.raw
            .mut_store()
            .save_snapshot(meta, &data, self.config.keep_after_snapshot)?;
        self.snapshot_index = self.applied;
        tracing::debug!(
            index = self.applied,
            bytes = data.len(),
            first_index = self.raw.store().first(),
            "raft: snapshot taken, log compacted"
        );
        Ok(())
    }

    /// Publishes the status if it changed.
    fn publish(&mut self, running: bool) {
        let raft = &self.raw.raft;
        let store = self.raw.store();
        let progress = if raft.state == StateRole::Leader {
            // Active within the last two election timeouts (one full check_quorum period
            // whatever the phase of raft-rs's resets).
            let window = self.config.tick_interval * (2 * self.config.election_tick as u32);
            let now = Instant::now();
            let heard = &mut self.heard;
            let mut p: Vec<_> = raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != raft.id)
                .map(|(id, pr)| {
                    if pr.recent_active {
                        heard.insert(*id, now);
                    }
                    super::PeerProgress {
                        id: *id,
                        matched: pr.matched,
                        recent_active: heard
                            .get(id)
                            .is_some_and(|t| now.duration_since(*t) < window),
                    }
                })
                .collect();
            p.sort_by_key(|p| p.id);
            p
        } else {
            self.heard.clear();
            Vec::new()
        };
        let status = RaftStatus {
            id: raft.id,
            term: raft.term,
            role: raft.state.into(),
            leader_id: raft.leader_id,
            applied: self.applied,
            commit: raft.raft_log.committed,
            commit_in_term: raft.commit_to_current_term(),
            first_index: store.first(),
            last_index: raft.raft_log.last_index(),
            snapshot_index: self.snapshot_index,
            voters: self.conf_state.voters.clone(),
            learners: self.conf_state.learners.clone(),
            progress,
            running,
        };
        // The role first: whoever sees the new status then sees the new role too.
        let role = RoleStatus::from(&status);
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}
