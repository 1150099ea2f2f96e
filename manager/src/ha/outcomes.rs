//! The store's refusals by log index, so a forwarded write reports them on the follower too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::raft::StateMachine;
use crate::store::{ApplyError, StoreMachine};

/// Refusals kept; older ones are forgotten (a forwarded write waits for its index at once).
const KEPT: usize = 4096;

/// The store's refusals of the latest entries, by index. Cheap to clone.
#[derive(Clone, Default)]
pub struct Outcomes {
    refused: Arc<Mutex<BTreeMap<u64, ApplyError>>>,
}

impl Outcomes {
    /// The refusal of the entry at `index`, if the store refused it.
    pub fn refusal(&self, index: u64) -> Option<ApplyError> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned()
    }

    fn record(&self, index: u64, err: ApplyError) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.insert(index, err);
        while refused.len() > KEPT {
            refused.pop_first();
        }
    }
}

/// The store's state machine, recording every refusal in [`Outcomes`].
pub struct RecordingMachine {
    /// The store's machine.
    pub inner: StoreMachine,
    /// Where refusals go.
    pub outcomes: Outcomes,
}

impl StateMachine for RecordingMachine {
    type Outcome = Result<(), ApplyError>;

    fn apply(&mut self, index: u64, data: &[u8]) -> Self::Outcome {
        let outcome = self.inner.apply(index, data);
        if let Err(err) = &outcome {
            self.outcomes.record(index, err.clone());
        }
        outcome
    }

    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
        self.inner.restore(index, data)
    }

    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        self.inner.check_snapshot(data)
    }
}
