//! The settings of one Raft node.

use std::path::PathBuf;
use std::time::Duration;

use super::RaftError;

/// The settings of one Raft node (see [`RaftConfig::new`] for the defaults).
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// Directory holding the node's sled database (created if missing).
    pub state_dir: PathBuf,
    /// This node's Raft id: non-zero, never reused after the node is removed.
    pub id: u64,
    /// Wall-clock length of one Raft tick.
    pub tick_interval: Duration,
    /// Ticks without hearing from a leader before a follower campaigns (randomized up to 2×).
    pub election_tick: usize,
    /// Ticks between leader heartbeats; must be below `election_tick`.
    pub heartbeat_tick: usize,
    /// Entries applied since the last snapshot before a new snapshot is taken.
    pub snapshot_interval: u64,
    /// Log entries kept behind a snapshot so slow followers can catch up without a snapshot.
    pub keep_after_snapshot: u64,
    /// No timer: the clock advances only through [`RaftHandle::tick`](super::RaftHandle::tick)
    /// (tests with a controllable clock).
    pub manual_ticks: bool,
    /// The key that encrypts the log and snapshots at rest; `None`: the key file in the state
    /// dir, made (in the clear) on first start (see [`keys`](super::keys)).
    pub data_key: Option<super::DataKey>,
}

impl RaftConfig {
    /// Defaults for a manager on a LAN: 100 ms ticks, election after 10–20 ticks (1–2 s), heartbeat
    /// every 2 ticks, a snapshot every 10 000 entries keeping 1 000 entries behind it.
    pub fn new(state_dir: impl Into<PathBuf>, id: u64) -> Self {
        RaftConfig {
            state_dir: state_dir.into(),
            id,
            tick_interval: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 2,
            snapshot_interval: 10_000,
            keep_after_snapshot: 1_000,
            manual_ticks: false,
            data_key: None,
        }
    }

    /// The raft-rs configuration for this node, resuming with `applied` already applied.
    pub(crate) fn to_raft(&self, applied: u64) -> Result<raft::Config, RaftError> {
        if self.tick_interval.is_zero() {
            return Err(RaftError::Config("tick_interval must be positive".into()));
        }
        if self.snapshot_interval == 0 {
            return Err(RaftError::Config(
                "snapshot_interval must be positive".into(),
            ));
        }
        let cfg = raft::Config {
            id: self.id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // A new commit index is not broadcast at once: it travels with the next append or
            // heartbeat, unless someone is waiting for it on a follower (the node loop then
            // broadcasts it, see `Node::broadcast_commit_if_due`). Broadcasting every commit
            // cost each write a second message to, and an answer from, every follower.
            skip_bcast_commit: true,
            ..Default::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
