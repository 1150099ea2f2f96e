//! Highly available managers (issue #7): 3–5 managers in one Raft group over gRPC.
//!
//! # Layout
//! - `peers`: the address book (Raft id → listener address), cached gRPC channels and which
//!   peers answered lately.
//! - `transport`: [`GrpcTransport`], the Raft [`Transport`](crate::raft::Transport) over tonic:
//!   one sender task and one bounded queue per peer; failures are reported to raft.
//! - `proposer`: [`HaProposer`], the store's writer on every manager: proposes on the leader,
//!   forwards to the leader on a follower (a raft `MsgPropose`), and gives up after
//!   [`NO_QUORUM_AFTER`] with a "no quorum" error. Also the follower's read barrier.
//! - `leadership`: starts the leader-only services (controllers, node monitor, dispatcher
//!   sessions, Raft membership) when this manager becomes leader and stops them when it no
//!   longer is.
//! - `members`: the leader-only Raft membership controller: adds managers as learners, promotes
//!   them to voters once caught up, removes ids no manager holds any more.
//! - `join`: the leader's side of `swarm join` with a manager token, and of `node promote`.
//! - `view`: [`GroupView`], the Raft group as the leader sees it (members, who answers), asked
//!   of the leader by followers.
//!
//! # Timing (fast failover on a LAN)
//! One tick is [`TICK`] = 50 ms. A follower campaigns after [`ELECTION_TICKS`] = 10 ticks without
//! a leader, randomized by raft-rs to 10–19 ticks: 0.5–1.0 s. The leader heartbeats every
//! [`HEARTBEAT_TICKS`] = 1 tick (50 ms), ten per election timeout, so a few lost packets never
//! start an election. With pre-vote and check-quorum, a leader that lost its quorum steps down
//! after one election timeout. Expected failover after a leader's death: 0.5–1.0 s to notice,
//! plus one pre-vote and one vote round trip and an fsync (a few ms on a LAN).

pub mod chunks;
mod join;
mod leadership;
mod members;
mod peers;
mod proposer;
mod transport;
mod view;

use std::time::Duration;

pub use join::{admit_manager, allocate_raft_id, joined_node};
pub use leadership::{Leadership, SessionsSlot};
pub use peers::Peers;
pub use proposer::{HaProposer, NOT_LEADER, NoQuorum};
pub use transport::{GrpcTransport, Report, forward_reports};
pub use view::{ASK_LEADER_WITHIN, GroupView};

/// Wall-clock length of one Raft tick.
pub const TICK: Duration = Duration::from_millis(50);
/// Ticks without a leader before a follower campaigns (raft-rs randomizes up to twice this).
pub const ELECTION_TICKS: usize = 10;
/// Ticks between the leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 1;
/// How long a write may wait for a leader and a quorum before it fails with "no quorum".
pub const NO_QUORUM_AFTER: Duration = Duration::from_secs(3);
/// A peer counts as reachable when a message reached it within this long.
pub const REACHABLE_WITHIN: Duration = Duration::from_secs(1);
/// The Raft id `swarm init` gives the first manager; every log starts with it as the only voter.
pub const BOOTSTRAP_RAFT_ID: u64 = 1;
