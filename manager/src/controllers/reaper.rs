//! Deletes tasks that were told to go away (desired REMOVE) once no node can
//! be running them: never accepted by a node, or ended.

use mini_proto::v1::{TaskState, store_action::Action};

use super::{Plan, Reconciler, update};
use crate::orchestrator::is_terminal;
use crate::store::{ObjectKind, Tables};

/// The task reaper.
pub struct Reaper;

impl Reconciler for Reaper {
    const NAME: &'static str = "reaper";
    const WATCHES: &'static [ObjectKind] = &[ObjectKind::Task, ObjectKind::Service];

    fn reconcile(&mut self, tables: &Tables, _now_ms: i64) -> Plan {
        let mut actions = Vec::new();
        for task in tables.tasks.values() {
            let observed = task.status.as_ref().map_or(TaskState::New, |s| s.state());
            if task.desired_state() >= TaskState::Remove {
                if observed < TaskState::Accepted || is_terminal(observed) {
                    actions.push(update(Action::RemoveTask(task.id.clone())));
                }
            } else if !tables.services.contains_key(&task.service_id) {
                // Its service is gone (removed by a write that missed this task).
                let mut next = task.clone();
                next.desired_state = TaskState::Remove as i32;
                actions.push(update(Action::PutTask(next)));
            }
        }
        Plan {
            actions,
            wake_at_ms: None,
        }
    }
}
