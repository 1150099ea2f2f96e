//! The manager's Raft-replicated log: raft-rs's `RawNode` driven by one tokio task, with the log,
//! hard state and snapshots in sled under `<state_dir>/raft`.
//!
//! # Layout
//! - [`StateMachine`]: what the log drives (the store, in the manager).
//! - [`start`] / [`has_state`]: open or create a node ([`StartMode`]: bootstrap a new cluster, join
//!   one, or resume); [`RaftHandle`]: propose, status, reports, shutdown.
//! - `node`: the Ready loop — tick, step, drain every queued proposal, send messages, install a
//!   snapshot, apply committed entries, append + fsync before acknowledging, advance.
//! - `storage`: [`raft::Storage`] on sled, snapshots and log compaction.
//! - [`Transport`]: the only way out to other managers (issue #7); a one-voter cluster uses
//!   [`NoTransport`].
//! - `logger`: raft-rs's slog records into `tracing` (target `raft`).
//!
//! # Durability
//! A proposal is answered only after its entry was fsynced and applied. On start the node restores
//! the latest snapshot into the state machine and re-applies every committed entry after it, so a
//! restart (also after `kill -9`) sees every acknowledged proposal exactly once.

mod config;
mod error;
pub(crate) mod guard;
mod handle;
pub mod keys;
mod logger;
mod node;
mod storage;
mod transport;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cluster;

use std::path::{Path, PathBuf};

use raft::RawNode;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::RaftConfig;
pub use error::{ProposeError, RaftError};
pub use handle::{PeerProgress, RaftHandle, RaftStatus, Role, RoleStatus};
pub use keys::{DataKey, KeyError, UnlockKey};
pub use raft::eraftpb::{ConfChangeV2, ConfState, Message};
pub use transport::{NoTransport, Transport};

use node::Node;
use storage::SledStorage;

/// The replicated state machine the log drives. `apply` must be deterministic: the same entries
/// in the same order give the same state on every manager.
pub trait StateMachine: Send + 'static {
    /// What applying one proposal returns to its proposer (e.g. `Result<(), ApplyError>`).
    type Outcome: Send + 'static;

    /// Applies the committed entry `data` at `index`. Called exactly once per committed proposal,
    /// in log order, also when entries are replayed after a restart (on top of
    /// [`restore`](Self::restore)). Raft's own empty entries are not passed.
    fn apply(&mut self, index: u64, data: &[u8]) -> Self::Outcome;

    /// Serializes the whole state, as of the last applied index, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot taken at `index`.
    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String>;

    /// Whether [`restore`](Self::restore) would accept `data`, without changing anything. The
    /// loop asks before it steps a snapshot another node sent: a snapshot that cannot be
    /// restored is refused instead of stopping the node.
    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        let _ = data;
        Ok(())
    }

    /// The loop made the log durable (sled's flush, with its fsync) in `took`, before
    /// acknowledging what it wrote: for metrics. Does nothing by default.
    fn log_synced(&mut self, took: std::time::Duration) {
        let _ = took;
    }
}

/// What the loop task returns when it ends: `Ok` after a shutdown, the error that stopped it
/// otherwise.
pub type RaftTask = JoinHandle<Result<(), RaftError>>;

/// Sub-directory of the state dir that holds the Raft state.
const RAFT_DIR: &str = "raft";
/// The sled database, inside [`RAFT_DIR`].
const SLED_DIR: &str = "sled";
/// Written (and fsynced) once the database holds a complete initial state.
const MARKER: &str = "initialized";

/// How [`start`] treats a state dir that holds no log yet. A state dir that holds one is always
/// resumed, whatever the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Create a new cluster whose only voter is this node.
    Bootstrap,
    /// Join an existing cluster: the log starts as the cluster's genesis (the configuration
    /// `bootstrap_voter` alone, at index 0, as [`StartMode::Bootstrap`] wrote it on the first
    /// node), and the node waits for the leader's entries or snapshot. It never campaigns until a
    /// committed configuration change makes it a voter.
    Join {
        /// The Raft id the cluster was bootstrapped with.
        bootstrap_voter: u64,
    },
    /// Only resume: an empty state dir is an error ([`RaftError::NoState`]).
    Resume,
}

/// The directory of the Raft log (and its data encryption key) in a manager's state dir.
pub fn raft_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(RAFT_DIR)
}

/// Whether `state_dir` already holds a Raft log (the daemon checks this at start-up).
pub fn has_state(state_dir: &Path) -> bool {
    state_dir.join(RAFT_DIR).join(MARKER).exists()
}

/// Starts the Raft node of a one-manager cluster (no network). See [`start_with_transport`].
pub fn start<S: StateMachine>(
    config: RaftConfig,
    sm: S,
    mode: StartMode,
) -> Result<(RaftHandle<S::Outcome>, RaftTask), RaftError> {
    start_with_transport(config, sm, mode, NoTransport)
}

/// Starts the Raft node; must be called inside a tokio runtime.
///
/// If `config.state_dir` holds a log, the node resumes from it: the latest snapshot is restored
/// into `sm` and every committed entry after it is applied again (`mode` is then ignored).
/// Otherwise `mode` says what to do (see [`StartMode`]). A node that is the only voter campaigns
/// at once, so it leads within one loop round.
pub fn start_with_transport<S: StateMachine, T: Transport>(
    config: RaftConfig,
    mut sm: S,
    mode: StartMode,
    transport: T,
) -> Result<(RaftHandle<S::Outcome>, RaftTask), RaftError> {
    if config.id == 0 {
        return Err(RaftError::Config("id must be non-zero".into()));
    }
    let raft_dir = config.state_dir.join(RAFT_DIR);
    let resume = has_state(&config.state_dir);
    if !resume && mode == StartMode::Resume {
        return Err(RaftError::NoState {
            state_dir: config.state_dir.clone(),
        });
    }
    let io = |op: &'static str, path: PathBuf| move |source| RaftError::Io { op, path, source };
    std::fs::create_dir_all(&raft_dir).map_err(io("create", raft_dir.clone()))?;
    let data_key = match config.data_key.clone() {
        Some(key) => key,
        None => keys::open_data_key(&raft_dir, None)?.key,
    };
    let mut storage = SledStorage::open(&raft_dir.join(SLED_DIR), data_key)?;
    if !resume {
        if !storage.is_initialized() {
            match mode {
                StartMode::Bootstrap => storage.bootstrap(config.id)?,
                StartMode::Join { bootstrap_voter } => {
                    if bootstrap_voter == config.id {
                        return Err(RaftError::Config(format!(
                            "a joining node cannot reuse the bootstrap voter's id {}",
                            config.id
                        )));
                    }
                    storage.bootstrap(bootstrap_voter)?
                }
                StartMode::Resume => unreachable!("checked above"),
            }
        }
        write_marker(&raft_dir).map_err(io("write marker", raft_dir.join(MARKER)))?;
    }

    let snapshot = storage.snapshot_metadata().clone();
    if snapshot.index > 0 {
        sm.restore(snapshot.index, &storage.snapshot_data()?)
            .map_err(|reason| RaftError::Restore {
                index: snapshot.index,
                reason,
            })?;
    }
    let applied = snapshot.index;
    let conf = snapshot.get_conf_state();
    let only_voter = conf.voters == [config.id] && conf.learners.is_empty();
    let mut raw = RawNode::new(
        &config.to_raft(applied)?,
        storage,
        &logger::logger(config.id),
    )?;
    if only_voter {
        raw.campaign()?;
    }

    let (tx, rx) = mpsc::channel(4096);
    let initial = RaftStatus {
        id: config.id,
        term: 0,
        role: Role::Follower,
        leader_id: 0,
        applied,
        commit: 0,
        commit_in_term: false,
        first_index: 0,
        last_index: 0,
        snapshot_index: snapshot.index,
        voters: Vec::new(),
        learners: Vec::new(),
        progress: Vec::new(),
        running: true,
    };
    let (role_tx, role) = watch::channel(RoleStatus::from(&initial));
    let (status_tx, status) = watch::channel(initial);
    let node = Node::new(raw, sm, transport, config, applied, (status_tx, role_tx));
    let task = spawn_loop(node.run(rx))?;
    Ok((RaftHandle { tx, status, role }, task))
}

/// Runs the Raft loop on a thread and runtime of its own, so its ticks and message handling
/// never queue behind the daemon's other work on the shared runtime (task starts, network
/// convergence, sessions): on a saturated machine a starved loop misses its heartbeats and the
/// followers elect another leader. The transport's senders, and the connections to the peers
/// they open, are tasks of the same single thread: a message goes from the loop to the socket
/// without waking another thread (each wake-up costs tens of microseconds on a VM), and the
/// fsync runs on a blocking thread of the runtime. The returned task ends with the loop, with
/// its result or its panic.
fn spawn_loop<F>(run: F) -> Result<RaftTask, RaftError>
where
    F: std::future::Future<Output = Result<(), RaftError>> + Send + 'static,
{
    let io = |op: &'static str| {
        move |source| RaftError::Io {
            op,
            path: PathBuf::new(),
            source,
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("raft-io")
        .enable_all()
        .build()
        .map_err(io("start the raft runtime"))?;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(run)));
            // The transport's senders end with the runtime.
            runtime.shutdown_background();
            let _ = done_tx.send(outcome);
        })
        .map_err(io("start the raft thread"))?;
    Ok(tokio::spawn(async move {
        match done.await {
            Ok(Ok(result)) => result,
            // Reported as the loop's own panic (the manager turns it into a fatal error).
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(RaftError::Io {
                op: "run the raft thread",
                path: PathBuf::new(),
                source: std::io::Error::other("the raft thread ended without a result"),
            }),
        }
    }))
}

/// Creates the marker file and fsyncs it and its directory.
fn write_marker(raft_dir: &Path) -> std::io::Result<()> {
    std::fs::File::create(raft_dir.join(MARKER))?.sync_all()?;
    std::fs::File::open(raft_dir)?.sync_all()
}
