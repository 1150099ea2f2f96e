//! Checks on every message from another node before it reaches raft-rs.
//!
//! raft-rs trusts its peers: on inconsistent input it panics (`fatal!`) or overflows. Read from
//! raft-rs 0.7's `step`, the inputs a peer controls that reach a panic are:
//! - a heartbeat whose `commit` is past this node's last index (`RaftLog::commit_to`);
//! - an append whose entries are not contiguous after `index`, so that they conflict with a
//!   committed entry (`RaftLog::maybe_append`, `Unstable::truncate_and_append`);
//! - a snapshot whose configuration cannot be restored (`confchange::restore`, "invalid restore");
//! - a `MsgPropose` without entries ("stepped empty MsgProp") and a `MsgReadIndex` without entries
//!   (`m.entries[0]`);
//! - numbers near `u64::MAX` in `term`, `index`, `reject_hint` (`term + 1`, `index + 1`, overflow
//!   checks in debug builds);
//! - an append response whose `index` or `reject_hint` is past the leader's last index (progress
//!   past the log; the leader then probes from nowhere).
//!
//! Besides those, message types that managers never send each other (read-index requests are
//! asked over gRPC, not as raft messages; leadership transfers are local) are refused. A
//! `MsgPropose` (a follower's write, forwarded by raft-rs) is accepted only by the leader, only
//! with normal entries that each carry data and the context of a proposal of the sender's own
//! (see [`proposal_context`](super::node::proposal_context)): a configuration change never comes
//! from the network, and a follower does not forward it again. A `MsgTimeoutNow` (start an
//! election at once) is accepted only from the leader of the current term.
//!
//! [`check_message`] (the message alone) runs in the gRPC handler, so the caller gets a clear
//! error, and again in the Raft loop with [`check_in_state`] (against the live state).
//! Authenticity (is this really the leader?) is not checked here: that is mutual TLS's job.

use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{Changer, ProgressTracker, StateRole};

/// Highest term accepted from a peer. A term grows by one per election: 2^48 elections are
/// about nine million years of one election a second, and it keeps `term + 1` far from overflow.
pub(crate) const MAX_TERM: u64 = 1 << 48;
/// Highest log index accepted from a peer (same reasoning as [`MAX_TERM`]).
pub(crate) const MAX_INDEX: u64 = 1 << 48;

/// What [`check_in_state`] compares a message against: this node's Raft state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Local {
    /// This node's current term.
    pub(crate) term: u64,
    /// The last index of its log.
    pub(crate) last_index: u64,
    /// Whether it leads.
    pub(crate) leader: bool,
    /// The leader it follows (0: none).
    pub(crate) leader_id: u64,
}

impl Local {
    /// The live state of a raft-rs node.
    pub(crate) fn of<S: raft::Storage>(raft: &raft::Raft<S>) -> Local {
        Local {
            term: raft.term,
            last_index: raft.raft_log.last_index(),
            leader: raft.state == StateRole::Leader,
            leader_id: raft.leader_id,
        }
    }
}

/// Whether a message from another node may be stepped by node `own_id`, judged from the message
/// alone; the error says what was wrong with it.
pub(crate) fn check_message(m: &Message, own_id: u64) -> Result<(), String> {
    use MessageType::*;
    let kind = m.get_msg_type();
    if !matches!(
        kind,
        MsgAppend
            | MsgAppendResponse
            | MsgRequestVote
            | MsgRequestVoteResponse
            | MsgRequestPreVote
            | MsgRequestPreVoteResponse
            | MsgSnapshot
            | MsgHeartbeat
            | MsgHeartbeatResponse
            | MsgTimeoutNow
            | MsgPropose
    ) {
        return Err(format!("{kind:?} is never sent between managers"));
    }
    if m.to != own_id {
        return Err(format!(
            "addressed to raft id {}, this node is {own_id}",
            m.to
        ));
    }
    if m.from == 0 || m.from == own_id {
        return Err(format!("sender raft id {} is not another node", m.from));
    }
    if kind == MsgPropose {
        return check_proposal(m);
    }
    if m.term == 0 || m.term > MAX_TERM {
        return Err(format!("term {} is out of range [1, {MAX_TERM}]", m.term));
    }
    if m.log_term > m.term || m.commit_term > m.term {
        return Err(format!(
            "log term {} or commit term {} is past the message's term {}",
            m.log_term, m.commit_term, m.term
        ));
    }
    for (name, value) in [
        ("index", m.index),
        ("commit", m.commit),
        ("reject hint", m.reject_hint),
    ] {
        if value > MAX_INDEX {
            return Err(format!("{name} {value} is out of range [0, {MAX_INDEX}]"));
        }
    }
    if m.request_snapshot != 0 {
        return Err("snapshot requests are never sent between managers".into());
    }
    if kind == MsgAppend {
        check_entries(m.index, m.log_term, m.term, &m.entries)?;
    } else if !m.entries.is_empty() {
        return Err(format!("{kind:?} carries entries"));
    }
    if kind == MsgSnapshot {
        check_snapshot_meta(m.get_snapshot(), m.term)?;
    } else if m.snapshot.is_some() {
        return Err(format!("{kind:?} carries a snapshot"));
    }
    Ok(())
}

/// Whether a message that passed [`check_message`] may be stepped by a node in state `at`.
/// Messages of a lower term are answered or dropped by raft-rs without reading the rest; a
/// higher term makes this node a follower of that term first, so what is checked here holds in
/// the term that reads the message.
pub(crate) fn check_in_state(m: &Message, at: &Local) -> Result<(), String> {
    use MessageType::*;
    match m.get_msg_type() {
        MsgHeartbeat if m.term >= at.term && m.commit > at.last_index => Err(format!(
            "heartbeat commits index {}, past this node's last index {}",
            m.commit, at.last_index
        )),
        MsgAppendResponse
            if m.term == at.term
                && at.leader
                && (m.index > at.last_index || m.reject_hint > at.last_index) =>
        {
            Err(format!(
                "append response for index {} (hint {}), past the leader's last index {}",
                m.index, m.reject_hint, at.last_index
            ))
        }
        MsgPropose if !at.leader => Err(format!(
            "a proposal from {} reached a node that does not lead (leader: {})",
            m.from, at.leader_id
        )),
        MsgTimeoutNow if m.term != at.term || m.from != at.leader_id => Err(format!(
            "election order from {} at term {}, but the leader of term {} is {}",
            m.from, m.term, at.term, at.leader_id
        )),
        _ => Ok(()),
    }
}

/// Entries a forwarded proposal may carry: raft-rs forwards one proposal per message, and a
/// follower sends nothing else.
const MAX_PROPOSED_ENTRIES: usize = 1;

/// A `MsgPropose` as raft-rs forwards it from a follower: no term (a proposal is a local message
/// to raft-rs), nothing but entries, and each entry a normal one with data and the context of
/// one of the sender's proposals, its index and term left for the leader to set.
fn check_proposal(m: &Message) -> Result<(), String> {
    if m.term != 0
        || m.log_term != 0
        || m.index != 0
        || m.commit != 0
        || m.commit_term != 0
        || m.reject_hint != 0
        || m.reject
        || m.request_snapshot != 0
        || m.snapshot.is_some()
    {
        return Err("a proposal carries nothing but entries".into());
    }
    if m.entries.is_empty() || m.entries.len() > MAX_PROPOSED_ENTRIES {
        return Err(format!(
            "a proposal carries {} entries, not 1 to {MAX_PROPOSED_ENTRIES}",
            m.entries.len()
        ));
    }
    for e in &m.entries {
        if e.get_entry_type() != EntryType::EntryNormal {
            return Err(format!(
                "a proposal from the network may not be a {:?}",
                e.get_entry_type()
            ));
        }
        if e.index != 0 || e.term != 0 {
            return Err("a proposed entry carries an index or term".into());
        }
        if e.data.is_empty() {
            return Err("a proposed entry is empty".into());
        }
        if super::node::proposal_of(&e.context).map(|(node, _)| node) != Some(m.from) {
            return Err(format!(
                "a proposed entry's context does not name its sender {}",
                m.from
            ));
        }
    }
    Ok(())
}

/// Refused messages, logged at WARN at most once a second with the count in between.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// When the last line was logged.
    logged: Option<std::time::Instant>,
    /// Refusals since then.
    quiet: u64,
    /// Refusals in total.
    pub(crate) total: u64,
}

impl Refusals {
    /// Counts one refusal and logs it unless a line was logged less than a second ago.
    pub(crate) fn note(&mut self, from: u64, what: &str, reason: &str) {
        self.total += 1;
        let now = std::time::Instant::now();
        if self
            .logged
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            self.quiet += 1;
            return;
        }
        tracing::warn!(
            from,
            what,
            reason,
            also_refused = self.quiet,
            "raft: refused a message from another manager"
        );
        self.logged = Some(now);
        self.quiet = 0;
    }
}

/// Entries of an append: contiguous after `index`, terms from `log_term` up to `term`, never
/// decreasing.
fn check_entries(index: u64, log_term: u64, term: u64, entries: &[Entry]) -> Result<(), String> {
    let mut previous = log_term;
    for (i, e) in entries.iter().enumerate() {
        let want = index + 1 + i as u64;
        if e.index != want {
            return Err(format!(
                "entry {i} has index {}, expected {want} (entries must follow index {index})",
                e.index
            ));
        }
        if e.term < previous || e.term > term {
            return Err(format!(
                "entry at index {} has term {}, outside [{previous}, {term}]",
                e.index, e.term
            ));
        }
        previous = e.term;
    }
    Ok(())
}

/// A snapshot's metadata: an index and term in range, and a configuration raft-rs can restore
/// exactly (the same test raft-rs makes, whose failure is a panic there).
fn check_snapshot_meta(snap: &Snapshot, term: u64) -> Result<(), String> {
    let meta = snap.get_metadata();
    if meta.index == 0 || meta.index > MAX_INDEX {
        return Err(format!(
            "snapshot index {} is out of range [1, {MAX_INDEX}]",
            meta.index
        ));
    }
    if meta.term == 0 || meta.term > term {
        return Err(format!(
            "snapshot term {} is out of range [1, {term}]",
            meta.term
        ));
    }
    check_conf_state(meta.get_conf_state())
}

/// Whether raft-rs can restore `cs` (raft-rs's `confchange::restore`, which is private, then the
/// equality it asserts).
pub(crate) fn check_conf_state(cs: &ConfState) -> Result<(), String> {
    use raft::eraftpb::{ConfChangeSingle, ConfChangeType};
    let lists = [
        cs.get_voters(),
        cs.get_learners(),
        cs.get_voters_outgoing(),
        cs.get_learners_next(),
    ];
    for list in lists {
        let mut sorted = list.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != list.len() || sorted.first() == Some(&0) {
            return Err(format!("configuration {cs:?} repeats an id or holds id 0"));
        }
    }
    if cs.get_voters().is_empty() {
        return Err("configuration has no voters".into());
    }
    let single = |id: u64, t: ConfChangeType| {
        let mut c = ConfChangeSingle {
            node_id: id,
            ..Default::default()
        };
        c.set_change_type(t);
        c
    };
    let outgoing: Vec<_> = cs
        .get_voters_outgoing()
        .iter()
        .map(|id| single(*id, ConfChangeType::AddNode))
        .collect();
    let incoming: Vec<_> = cs
        .get_voters_outgoing()
        .iter()
        .map(|id| single(*id, ConfChangeType::RemoveNode))
        .chain(
            cs.get_voters()
                .iter()
                .map(|id| single(*id, ConfChangeType::AddNode)),
        )
        .chain(
            cs.get_learners()
                .iter()
                .chain(cs.get_learners_next())
                .map(|id| single(*id, ConfChangeType::AddLearnerNode)),
        )
        .collect();
    let mut tracker = ProgressTracker::new(1);
    let invalid = |e: raft::Error| format!("configuration {cs:?} cannot be restored: {e}");
    if outgoing.is_empty() {
        for cc in incoming {
            let (cfg, changes) = Changer::new(&tracker).simple(&[cc]).map_err(invalid)?;
            tracker.apply_conf(cfg, changes, 1);
        }
    } else {
        for cc in outgoing {
            let (cfg, changes) = Changer::new(&tracker).simple(&[cc]).map_err(invalid)?;
            tracker.apply_conf(cfg, changes, 1);
        }
        let (cfg, changes) = Changer::new(&tracker)
            .enter_joint(cs.auto_leave, &incoming)
            .map_err(invalid)?;
        tracker.apply_conf(cfg, changes, 1);
    }
    let got = tracker.conf().to_conf_state();
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let same = sorted(got.get_voters()) == sorted(cs.get_voters())
        && sorted(got.get_learners()) == sorted(cs.get_learners())
        && sorted(got.get_voters_outgoing()) == sorted(cs.get_voters_outgoing())
        && sorted(got.get_learners_next()) == sorted(cs.get_learners_next())
        && got.auto_leave == cs.auto_leave;
    if !same {
        return Err(format!(
            "configuration {cs:?} is inconsistent (restores as {got:?})"
        ));
    }
    Ok(())
}

/// Logs (rate-limited, see [`Refusals`]) a batch the gRPC handler refused.
pub(crate) fn note_refused_batch(from: u64, reason: &str) {
    static REFUSED: std::sync::Mutex<Refusals> = std::sync::Mutex::new(Refusals {
        logged: None,
        quiet: 0,
        total: 0,
    });
    REFUSED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .note(from, "batch", reason);
}

#[cfg(test)]
mod tests;
