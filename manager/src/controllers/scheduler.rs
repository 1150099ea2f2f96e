//! Binds pending tasks to nodes (PENDING → ASSIGNED), or says why it cannot.

use mini_proto::v1::{Node, Task, TaskState, TaskStatus, store_action::Action};

use super::{Plan, Reconciler, update};
use crate::scheduler::{Decision, place};
use crate::store::{ObjectKind, Tables};

/// The scheduler loop.
pub struct Scheduler;

impl Reconciler for Scheduler {
    const NAME: &'static str = "scheduler";
    const WATCHES: &'static [ObjectKind] = &[ObjectKind::Task, ObjectKind::Node];

    fn reconcile(&mut self, tables: &Tables, now_ms: i64) -> Plan {
        let pending: Vec<Task> = tables
            .tasks
            .values()
            .filter(|t| {
                t.status.as_ref().map_or(TaskState::New, |s| s.state()) == TaskState::Pending
                    && t.desired_state() <= TaskState::Running
            })
            .cloned()
            .collect();
        if pending.is_empty() {
            return Plan::default();
        }
        let nodes: Vec<Node> = tables.nodes.values().cloned().collect();
        let mut actions = Vec::new();
        for decision in place(&pending, &nodes, tables.tasks.values()) {
            match decision {
                Decision::Assigned { task_id, node_id } => {
                    let Some(task) = tables.tasks.get(&task_id) else {
                        continue;
                    };
                    let _span = task_span(task).entered();
                    tracing::debug!(%node_id, "scheduler: assigning the task");
                    let mut next = task.clone();
                    next.node_id = node_id;
                    next.status = Some(TaskStatus {
                        state: TaskState::Assigned as i32,
                        timestamp_ms: now_ms,
                        message: "scheduler assigned task to node".into(),
                        ..Default::default()
                    });
                    actions.push(update(Action::PutTask(next)));
                }
                Decision::Unplaceable { task_id, reason } => {
                    let Some(task) = tables.tasks.get(&task_id) else {
                        continue;
                    };
                    if task.status.as_ref().is_some_and(|s| s.message == reason) {
                        continue;
                    }
                    let _span = task_span(task).entered();
                    tracing::debug!(%reason, "scheduler: the task cannot be placed");
                    let mut next = task.clone();
                    let mut status = task.status.clone().unwrap_or_default();
                    status.message = reason;
                    next.status = Some(status);
                    actions.push(update(Action::PutTask(next)));
                }
            }
        }
        Plan {
            actions,
            wake_at_ms: None,
        }
    }
}

/// The span of the scheduler's work on one task: its lines say which task and service.
fn task_span(task: &Task) -> tracing::Span {
    tracing::debug_span!(
        "task",
        task_id = %task.id,
        service_id = %task.service_id,
        service = %task.service_name
    )
}
