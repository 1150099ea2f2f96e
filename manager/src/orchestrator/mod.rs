//! The orchestrators' decisions: which tasks a service should have.
//!
//! A replicated service has slots 1..=replicas, a global service one slot per
//! fit node; each slot should have one active task. Tasks are never edited
//! into something else: a task that ended, or whose node went down or was
//! drained, is told to stop (desired state SHUTDOWN) and stays as history
//! while a new task replaces it. Everything here is pure: the orchestrator
//! loop passes a service, its tasks, the nodes and the time, and writes the
//! returned [`Action`]s to the store (new tasks built with [`new_task`]).
//!
//! # Layout
//! - [`task`]: building tasks, task-state helpers.
//! - [`restart`]: the restart policy.
//! - [`replicated`]: slots 1..=replicas.
//! - [`global`]: one task per fit node.
//! - [`job`]: replicated and global jobs (tasks that run to completion).
//! - `slot`: the decision for one slot, shared by both.
//! - [`update`]: rolling replacement of tasks made from an older spec.

pub mod global;
pub mod job;
pub mod replicated;
pub mod restart;
mod slot;
pub mod task;
pub mod update;

#[cfg(test)]
mod tests;

pub use global::reconcile_global;
pub use job::{is_job, job_counts, job_iteration, reconcile_job};
pub use replicated::reconcile_replicated;
pub use restart::{Restart, restart_decision, should_restart};
pub use slot::HISTORY_LIMIT;
pub use task::{is_active, is_terminal, new_task, observed_state};
pub use update::{docker_default, effective_config, is_outdated};

/// One change the orchestrator wants in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a task for `slot` with [`new_task`] (a fresh id, state NEW,
    /// desired RUNNING). `node_id` is set for global tasks, which are bound
    /// to their node from the start; replicated tasks go to the scheduler.
    CreateTask {
        /// Replica slot (1..), or 0 for a global task.
        slot: u64,
        /// The node of a global task.
        node_id: Option<String>,
    },
    /// Set the task's desired state to SHUTDOWN; it stays as history.
    Shutdown {
        /// The task.
        task_id: String,
    },
    /// Set a job task that completed to desired state COMPLETE: it is done
    /// and stays as history.
    Complete {
        /// The task.
        task_id: String,
    },
    /// Delete the task from the store (history beyond the limit).
    Remove {
        /// The task.
        task_id: String,
    },
}

/// The result of reconciling one service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciliation {
    /// What to write, slot by slot: shutdowns, removals, then the new task.
    pub actions: Vec<Action>,
    /// When a delayed restart becomes due: reconcile the service again then
    /// (the earliest one; `None` when nothing waits).
    pub next_check_ms: Option<i64>,
    /// The service to write back first: its update started, paused, completed or rolled back
    /// (see [`update`]).
    pub service: Option<mini_proto::v1::Service>,
}

impl Reconciliation {
    /// Writes every slot's outcome (slot number, node of a global task, outcome), after the
    /// rolling update ([`update`]) chose which outdated tasks are replaced now. `tasks` are
    /// all the service's tasks. When the update rolls the service back, only the service is
    /// written: the outcomes were made for the spec being left.
    fn push_slots(
        &mut self,
        mut slots: Vec<(u64, Option<&str>, slot::SlotOutcome)>,
        service: &mini_proto::v1::Service,
        tasks: &[&mini_proto::v1::Task],
        now_ms: i64,
    ) {
        let mut outcomes: Vec<&mut slot::SlotOutcome> =
            slots.iter_mut().map(|(_, _, out)| out).collect();
        let plan = update::plan(service, tasks, &mut outcomes, now_ms);
        self.service = plan.service;
        if plan.rolled_back {
            return;
        }
        for (slot, node_id, out) in slots {
            self.push_slot(slot, node_id, out);
        }
        self.check_at(plan.next_check);
    }

    fn push_slot(&mut self, slot: u64, node_id: Option<&str>, out: slot::SlotOutcome) {
        self.actions.extend(
            out.shutdown
                .into_iter()
                .map(|task_id| Action::Shutdown { task_id }),
        );
        self.actions.extend(
            out.remove
                .into_iter()
                .map(|task_id| Action::Remove { task_id }),
        );
        if out.create {
            self.actions.push(Action::CreateTask {
                slot,
                node_id: node_id.map(str::to_owned),
            });
        }
        self.check_at(out.retry_at);
    }

    /// Asks to be reconciled again at `at` (the earliest of all such times wins).
    fn check_at(&mut self, at: Option<i64>) {
        if let Some(at) = at {
            self.next_check_ms = Some(self.next_check_ms.map_or(at, |t| t.min(at)));
        }
    }
}
