//! Tasks: how they are made from a service, and what their states mean.

use mini_proto::v1::{Meta, Service, Task, TaskState, TaskStatus};

/// Whether a task in `state` has ended: COMPLETE, SHUTDOWN, FAILED, REJECTED,
/// REMOVE or ORPHANED. States only move forward, so it never runs again.
pub fn is_terminal(state: TaskState) -> bool {
    state > TaskState::Running
}

/// The task's observed state (NEW when it has no status yet).
pub fn observed_state(task: &Task) -> TaskState {
    task.status.as_ref().map_or(TaskState::New, |s| s.state())
}

/// Whether a task is meant to run and has not ended: desired state at most
/// RUNNING and observed state not terminal. Each slot (each node, for a
/// global service) should have exactly one active task.
pub fn is_active(task: &Task) -> bool {
    task.desired_state() <= TaskState::Running && !is_terminal(observed_state(task))
}

/// Builds a new task for `slot` (0 for a global task) of `service`, from the
/// service's current spec: container, constraints, placement preferences,
/// replicas limit, endpoint and restart policy, the job iteration,
/// `service_version = service.meta.version`. It starts in state NEW
/// with desired state RUNNING; a global task is created already bound to
/// `node_id`. Networks are left empty for the allocator.
pub fn new_task(
    service: &Service,
    slot: u64,
    node_id: Option<&str>,
    id: String,
    now_ms: i64,
) -> Task {
    let spec = service.spec.clone().unwrap_or_default();
    let mut task = Task {
        id,
        meta: Some(Meta {
            version: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }),
        service_id: service.id.clone(),
        service_name: spec.name,
        slot,
        node_id: node_id.unwrap_or_default().to_owned(),
        container: spec.container,
        status: Some(TaskStatus {
            state: TaskState::New as i32,
            timestamp_ms: now_ms,
            message: "created".to_owned(),
            ..TaskStatus::default()
        }),
        desired_state: 0,
        networks: Vec::new(),
        service_version: service.meta.map_or(0, |m| m.version),
        spec_networks: spec.networks,
        constraints: spec.constraints,
        endpoint: spec.endpoint,
        restart: spec.restart,
        force_update: spec.force_update,
        aliases: spec.aliases,
        // Only the dispatcher sets it, in the assignments of the task's node.
        registry_auth: None,
        running_since_ms: 0,
        placement_preferences: spec.placement_preferences,
        max_replicas_per_node: spec.max_replicas_per_node,
        job_iteration: service.job_status.as_ref().map_or(0, |j| j.job_iteration),
    };
    task.set_desired_state(TaskState::Running);
    task
}

/// Order of age: creation time, then status time, then id. Used to find the
/// newest task of a slot and the oldest history to prune.
pub(crate) fn age_key(task: &Task) -> (i64, i64, &str) {
    (
        task.meta.map_or(0, |m| m.created_at_ms),
        task.status.as_ref().map_or(0, |s| s.timestamp_ms),
        task.id.as_str(),
    )
}
