//! Keeps each service's tasks matching its spec: creates tasks for empty
//! slots, shuts down extra or failed ones, prunes history.

use mini_proto::v1::{Node, Service, TaskState, service_spec::Mode, store_action::Action};

use super::{Plan, Reconciler, update};
use crate::ids::new_id;
use crate::orchestrator::{self as decide, new_task};
use crate::store::{ObjectKind, Tables};

/// The orchestrator loop (replicated and global services, jobs).
pub struct Orchestrator;

impl Reconciler for Orchestrator {
    const NAME: &'static str = "orchestrator";
    const WATCHES: &'static [ObjectKind] =
        &[ObjectKind::Service, ObjectKind::Task, ObjectKind::Node];

    fn reconcile(&mut self, tables: &Tables, now_ms: i64) -> Plan {
        let nodes: Vec<Node> = tables.nodes.values().cloned().collect();
        let mut plan = Plan::default();
        for service in tables.services.values() {
            // What is logged while deciding for this service says which one it is.
            let _span = tracing::debug_span!(
                "service",
                service_id = %service.id,
                service = %service.spec.as_ref().map_or("", |s| s.name.as_str())
            )
            .entered();
            let tasks = tables
                .tasks_of_service(&service.id)
                .filter(|t| t.desired_state() < TaskState::Remove);
            let decision = match service.spec.as_ref().and_then(|s| s.mode) {
                Some(Mode::Global(_)) => decide::reconcile_global(service, tasks, &nodes, now_ms),
                Some(Mode::ReplicatedJob(_) | Mode::GlobalJob(_)) => {
                    decide::reconcile_job(service, tasks, &nodes, now_ms)
                }
                _ => decide::reconcile_replicated(service, tasks, &nodes, now_ms),
            };
            if let Some(at) = decision.next_check_ms {
                plan.wake_at_ms = Some(plan.wake_at_ms.map_or(at, |w: i64| w.min(at)));
            }
            // The update's new state (or the rolled back spec) goes with the task changes;
            // when the service changed meanwhile the batch is refused and decided again.
            if !decision.actions.is_empty() {
                tracing::debug!(
                    changes = decision.actions.len(),
                    "orchestrator: the service's tasks need changes"
                );
            }
            if let Some(changed) = decision.service {
                if let Some(state) = changed.update_status.as_ref().map(|u| u.state()) {
                    tracing::debug!(?state, "orchestrator: the service's update moved on");
                }
                plan.actions.push(update(Action::PutService(changed)));
            }
            for action in decision.actions {
                if let Some(a) = store_action(service, tables, action, now_ms) {
                    plan.actions.push(a);
                }
            }
        }
        plan
    }
}

fn store_action(
    service: &Service,
    tables: &Tables,
    action: decide::Action,
    now_ms: i64,
) -> Option<mini_proto::v1::StoreAction> {
    match action {
        decide::Action::CreateTask { slot, node_id } => {
            let task = new_task(service, slot, node_id.as_deref(), new_id(), now_ms);
            Some(mini_proto::v1::StoreAction {
                action: Some(Action::PutTask(task)),
                create: true,
            })
        }
        decide::Action::Shutdown { task_id } => {
            let mut task = tables.tasks.get(&task_id)?.clone();
            task.desired_state = TaskState::Shutdown as i32;
            Some(update(Action::PutTask(task)))
        }
        decide::Action::Complete { task_id } => {
            let mut task = tables.tasks.get(&task_id)?.clone();
            task.desired_state = TaskState::Complete as i32;
            Some(update(Action::PutTask(task)))
        }
        decide::Action::Remove { task_id } => {
            let mut task = tables.tasks.get(&task_id)?.clone();
            task.desired_state = TaskState::Remove as i32;
            Some(update(Action::PutTask(task)))
        }
    }
}
