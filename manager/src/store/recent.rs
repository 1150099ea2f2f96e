//! The proposals applied lately, by id, so a retried proposal is not applied twice.
//!
//! Every writer's batch carries a random `proposal_id`. A forwarded proposal whose answer was
//! lost (the leader changed while the call was in flight) is proposed again with the same id;
//! when the first one had committed, the second finds its id here and is skipped: the writer is
//! told its write was applied, instead of "already exists" for the object it created itself.
//!
//! Only applied batches are remembered (a refused batch changed nothing, so applying a retry of
//! it is harmless), and what is remembered is decided from the log alone (ids are forgotten by
//! count and by the `proposed_at_ms` of the batch being applied), and kept in snapshots, so
//! every manager skips the same entries.

use std::collections::{HashMap, VecDeque};

use mini_proto::v1::AppliedProposal;

/// Ids remembered at most.
pub(super) const KEPT: usize = 50_000;
/// Ids of batches proposed longer than this before the batch being applied are forgotten
/// (a proposal is retried within a few seconds: see `ha::NO_QUORUM_AFTER`).
pub(super) const WINDOW_MS: i64 = 30_000;

/// The applied proposals, oldest first.
#[derive(Debug, Default, Clone)]
pub(super) struct Recent {
    order: VecDeque<AppliedProposal>,
    index_of: HashMap<u64, u64>,
}

impl Recent {
    /// The index the proposal `id` was applied at, if it was lately.
    pub(super) fn applied_at(&self, id: u64) -> Option<u64> {
        (id != 0).then(|| self.index_of.get(&id).copied()).flatten()
    }

    /// Remembers that proposal `id` (proposed at `at_ms`) was applied at `index`.
    pub(super) fn record(&mut self, id: u64, index: u64, at_ms: i64) {
        if id == 0 {
            return;
        }
        self.index_of.insert(id, index);
        self.order.push_back(AppliedProposal {
            id,
            index,
            proposed_at_ms: at_ms,
        });
        while self.order.len() > KEPT
            || self
                .order
                .front()
                .is_some_and(|p| p.proposed_at_ms < at_ms - WINDOW_MS)
        {
            let old = self.order.pop_front().expect("not empty");
            if self.index_of.get(&old.id) == Some(&old.index) {
                self.index_of.remove(&old.id);
            }
        }
    }

    /// The remembered proposals, oldest first, for a snapshot.
    pub(super) fn to_snapshot(&self) -> Vec<AppliedProposal> {
        self.order.iter().cloned().collect()
    }

    /// What a snapshot remembered.
    pub(super) fn from_snapshot(proposals: Vec<AppliedProposal>) -> Self {
        let index_of = proposals.iter().map(|p| (p.id, p.index)).collect();
        Recent {
            order: proposals.into(),
            index_of,
        }
    }
}
