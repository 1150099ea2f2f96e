//! How writers get a batch into the store: through a [`Proposer`].

use std::future::Future;
use std::sync::Mutex;

use mini_proto::v1::StoreBatch;

use super::{ApplyError, Store};

/// Why a proposal did not reach the log (it was not applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProposeFailed {
    /// What went wrong, for the user ("this manager is not the leader", ...).
    pub reason: String,
}

/// The result of a write that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The batch was committed but refused by apply (conflict, stale version).
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// The batch was not committed.
    #[error(transparent)]
    Failed(#[from] ProposeFailed),
}

/// Puts batches into the replicated log and waits for them to be applied.
pub trait Proposer: Send + Sync + 'static {
    /// Proposes `batch`; resolves with its index once it is applied to the
    /// local store, or with why it was refused.
    fn propose(&self, batch: StoreBatch) -> impl Future<Output = Result<u64, WriteError>> + Send;
}

/// A proposer without Raft: applies each batch at once at the next index.
/// For tests and benchmarks of components that only need a store.
pub struct LocalProposer {
    store: Store,
    next_index: Mutex<u64>,
}

impl LocalProposer {
    /// A proposer writing into `store`, continuing after its applied index.
    pub fn new(store: Store) -> Self {
        let next_index = Mutex::new(store.applied_index() + 1);
        LocalProposer { store, next_index }
    }
}

impl Proposer for LocalProposer {
    fn propose(&self, batch: StoreBatch) -> impl Future<Output = Result<u64, WriteError>> + Send {
        let mut next = self.next_index.lock().unwrap_or_else(|e| e.into_inner());
        let index = *next;
        *next += 1;
        let result = self
            .store
            .apply(index, &batch)
            .map(|()| index)
            .map_err(WriteError::from);
        drop(next);
        std::future::ready(result)
    }
}

/// A shared proposer proposes through the one it shares (so one
/// [`LocalProposer`] can serve every controller).
impl<P: Proposer> Proposer for std::sync::Arc<P> {
    fn propose(&self, batch: StoreBatch) -> impl Future<Output = Result<u64, WriteError>> + Send {
        (**self).propose(batch)
    }
}
