//! The store as the Raft log's state machine.

use super::{ApplyError, Store};
use crate::raft::StateMachine;

/// Applies committed log entries (encoded `StoreBatch`es) to a [`Store`].
pub struct StoreMachine(Store);

impl StoreMachine {
    /// The state machine of `store`.
    pub fn new(store: Store) -> Self {
        StoreMachine(store)
    }
}

impl StateMachine for StoreMachine {
    type Outcome = Result<(), ApplyError>;

    fn apply(&mut self, index: u64, data: &[u8]) -> Self::Outcome {
        let outcome = self.0.apply_entry(index, data);
        if let Err(err) = &outcome {
            tracing::debug!(index, %err, "store batch refused");
        }
        outcome
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.snapshot().1
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
        self.0.restore(index, data).map_err(|e| e.to_string())
    }

    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        use prost::Message as _;
        mini_proto::v1::StoreSnapshot::decode(data)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
