//! Errors of the Raft log: one enum for starting and running the node, one for proposals.

use std::path::PathBuf;

/// Why the Raft node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// sled failed to open, read, write or flush the state.
    #[error("raft storage (sled) failed while {op}: {source}")]
    Sled {
        /// What the storage was doing.
        op: &'static str,
        /// The sled error.
        #[source]
        source: sled::Error,
    },
    /// A file-system operation outside sled failed (state dir, marker file).
    #[error("raft state dir {path}: {op} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored record could not be decoded (corrupt or foreign state).
    #[error("raft storage holds a corrupt {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// raft-rs rejected a call (invalid config, storage error surfaced through it, …).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The state machine refused a snapshot.
    #[error("state machine could not restore the snapshot at index {index}: {reason}")]
    Restore {
        /// Index of the snapshot.
        index: u64,
        /// The state machine's reason.
        reason: String,
    },
    /// `start` was called on an empty state dir without `bootstrap`.
    #[error("no raft state in {state_dir} and bootstrap was not requested")]
    NoState {
        /// The state dir that holds no log.
        state_dir: PathBuf,
    },
    /// The configuration is unusable.
    #[error("invalid raft config: {0}")]
    Config(String),
    /// The store's data encryption key could not be opened (locked, wrong unlock key, or a
    /// record that fails authentication).
    #[error("{0}")]
    Key(#[from] super::keys::KeyError),
}

impl RaftError {
    /// Wraps a sled error with what was being done.
    pub(crate) fn sled(op: &'static str) -> impl FnOnce(sled::Error) -> RaftError {
        move |source| RaftError::Sled { op, source }
    }
}

/// Why a proposal was not (or may not have been) applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is the leader it knows of, if any.
    #[error("not the raft leader (leader: {leader:?})")]
    NotLeader {
        /// The id of the current leader, if known.
        leader: Option<u64>,
    },
    /// The node is shutting down or has stopped.
    #[error("raft node stopped")]
    Stopped,
    /// The proposal was dropped by raft or overwritten in the log (e.g. leadership was lost before
    /// it committed): it was NOT applied.
    #[error("proposal dropped")]
    Dropped,
    /// A proposal forwarded to the leader was not seen applied in time, or its leader changed:
    /// it may or may not be applied.
    #[error("forwarded proposal not seen applied (it may still be)")]
    Lost,
    /// raft-rs refused the proposal (e.g. an invalid configuration change).
    #[error("proposal rejected: {reason}")]
    Rejected {
        /// raft-rs's reason.
        reason: String,
    },
}
