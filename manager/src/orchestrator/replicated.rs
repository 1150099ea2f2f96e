//! Replicated services: one active task in each slot 1..=replicas.

use std::collections::{BTreeMap, HashMap};

use mini_proto::v1::{
    Node, NodeAvailability, NodeState, Service, Task, UpdateOrder, service_spec::Mode,
};

use super::Reconciliation;
use super::slot::Slot;

/// The replica count of a service: `None` for a global service or a job; a
/// service with no mode set has 1 replica, as in Docker.
pub fn replicas(service: &Service) -> Option<u64> {
    match service.spec.as_ref().and_then(|s| s.mode) {
        Some(Mode::Replicas(n)) => Some(n),
        Some(Mode::Global(_) | Mode::ReplicatedJob(_) | Mode::GlobalJob(_)) => None,
        None => Some(1),
    }
}

/// Whether a node can keep running the tasks it has: it is in the cluster,
/// not DOWN and not drained. (PAUSE keeps tasks; DISCONNECTED and UNKNOWN get
/// the benefit of the doubt until the dispatcher declares the node DOWN.)
pub fn node_keeps_tasks(node: Option<&Node>) -> bool {
    node.is_some_and(|n| {
        let down = n
            .status
            .as_ref()
            .is_some_and(|s| s.state() == NodeState::Down);
        let drained = n
            .spec
            .as_ref()
            .is_some_and(|s| s.availability() == NodeAvailability::Drain);
        !down && !drained
    })
}

/// Whether `task`'s node can keep it: [`node_keeps_tasks`], and the node still
/// satisfies the task's constraints (swarmkit's constraint enforcer: a task
/// whose node lost a label it needs is replaced on a node that has it).
/// Unparsable constraints (refused at create, so only in old data) are not
/// enforced.
pub(crate) fn node_keeps_task(task: &Task, node: Option<&Node>) -> bool {
    node_keeps_tasks(node)
        && node.is_none_or(|n| {
            crate::scheduler::parse_constraints(&task.constraints)
                .map_or(true, |cs| cs.iter().all(|c| c.matches(n)))
        })
}

/// Decides what a replicated service needs.
///
/// `tasks` are the service's tasks (every state, history included); `nodes`
/// are ALL nodes of the cluster: a task bound to a node that is DOWN,
/// drained, not in `nodes` (removed) or no longer satisfying the task's
/// constraints is shut down and replaced at once.
///
/// Per slot 1..=replicas: keep the newest active task (shut down any other);
/// with none, create one. A task that ended on its own while meant to run
/// (COMPLETE/FAILED/REJECTED/SHUTDOWN, desired RUNNING) is handled by the
/// restart policy: replaced (it is shut down and kept as history) once
/// `delay_ms` after its status timestamp has passed — until then
/// `next_check_ms` says when to look again — or not at all. Slots above
/// `replicas` (and slot 0) are shut down. Tasks made from an older spec are
/// replaced by a rolling update ([`super::update`]). Each slot keeps at most
/// [`HISTORY_LIMIT`](super::HISTORY_LIMIT) stopped tasks; older ones are
/// removed once they have ended.
///
/// A global service or a job gets an empty result: use
/// [`reconcile_global`](super::reconcile_global) or
/// [`reconcile_job`](super::reconcile_job).
pub fn reconcile_replicated<'t>(
    service: &Service,
    tasks: impl IntoIterator<Item = &'t Task>,
    nodes: &[Node],
    now_ms: i64,
) -> Reconciliation {
    let mut result = Reconciliation::default();
    let Some(replicas) = replicas(service) else {
        return result;
    };
    let nodes: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let node_ok = |t: &Task| {
        t.node_id.is_empty() || node_keeps_task(t, nodes.get(t.node_id.as_str()).copied())
    };

    let tasks: Vec<&Task> = tasks.into_iter().collect();
    let mut slots: BTreeMap<u64, Vec<&Task>> = (1..=replicas).map(|s| (s, Vec::new())).collect();
    for task in &tasks {
        slots.entry(task.slot).or_default().push(task);
    }
    let spec = service.spec.as_ref();
    let start_first = super::effective_config(service).order() == UpdateOrder::StartFirst;
    let outcomes = slots
        .into_iter()
        .map(|(number, tasks)| {
            let slot = Slot {
                tasks,
                wanted: (1..=replicas).contains(&number),
                spec,
                start_first,
            };
            (number, None, slot.reconcile(now_ms, node_ok))
        })
        .collect();
    result.push_slots(outcomes, service, &tasks, now_ms);
    result
}
