//! Global services: one active task on every fit node.

use std::collections::{BTreeMap, HashMap};

use mini_proto::v1::{Node, Service, Task, UpdateOrder, service_spec::Mode};

use super::replicated::node_keeps_tasks;
use super::slot::Slot;
use super::{Action, Reconciliation};
use crate::scheduler::{Pipeline, parse_constraints};

/// Decides what a global service needs.
///
/// `tasks` are the service's tasks, `nodes` ALL nodes of the cluster. Every
/// node that is READY, ACTIVE and satisfies the service's constraints should
/// run one active task (created bound to it, slot 0); a node that is not —
/// drained, paused, down, no longer matching, or removed — has its tasks shut
/// down. A task that ended follows the restart policy as in
/// [`reconcile_replicated`](super::reconcile_replicated), and each node keeps
/// at most [`HISTORY_LIMIT`](super::HISTORY_LIMIT) stopped tasks. Stopped
/// tasks of a node that left the cluster are removed.
///
/// Unparsable constraints (refused at service create, so only in old data)
/// match no node. A replicated service gets an empty result.
pub fn reconcile_global<'t>(
    service: &Service,
    tasks: impl IntoIterator<Item = &'t Task>,
    nodes: &[Node],
    now_ms: i64,
) -> Reconciliation {
    let mut result = Reconciliation::default();
    let Some(spec) = &service.spec else {
        return result;
    };
    if !matches!(spec.mode, Some(Mode::Global(_))) {
        return result;
    }
    let pipeline = parse_constraints(&spec.constraints)
        .ok()
        .map(|c| Pipeline::new(&c));
    let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();

    let tasks: Vec<&Task> = tasks.into_iter().collect();
    let start_first = super::effective_config(service).order() == UpdateOrder::StartFirst;
    let mut per_node: BTreeMap<&str, Vec<&Task>> =
        nodes.iter().map(|n| (n.id.as_str(), Vec::new())).collect();
    for task in tasks.iter().copied() {
        per_node
            .entry(task.node_id.as_str())
            .or_default()
            .push(task);
    }
    let mut outcomes = Vec::new();
    for (node_id, tasks) in per_node {
        let node = by_id.get(node_id).copied();
        let wanted = node.is_some_and(|n| pipeline.as_ref().is_some_and(|p| p.check(n)));
        let gone = node.is_none();
        let slot = Slot {
            tasks,
            wanted,
            spec: Some(spec),
            start_first,
        };
        let mut out = slot.reconcile(now_ms, |_| node_keeps_tasks(node));
        if gone {
            // The node will never report again: its stopped tasks can go.
            out.remove = slot
                .tasks
                .iter()
                .filter(|t| t.desired_state() > mini_proto::v1::TaskState::Running)
                .map(|t| t.id.clone())
                .collect();
        }
        outcomes.push((0, Some(node_id), out));
    }
    result.push_slots(outcomes, service, &tasks, now_ms);
    // A created global task names its node; the slot is 0.
    debug_assert!(
        result
            .actions
            .iter()
            .all(|a| !matches!(a, Action::CreateTask { node_id: None, .. }))
    );
    result
}
