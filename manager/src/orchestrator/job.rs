//! Jobs (`--mode replicated-job` and `--mode global-job`): tasks that run to
//! completion, as swarmkit's job orchestrators run them.
//!
//! A task that exits 0 is COMPLETE and is never started again: its desired
//! state becomes COMPLETE (`service ps` shows "Complete" in both columns). A
//! task that fails is retried as the restart policy says (condition `any` acts
//! as `on-failure`: a completed job task is never restarted). Every update of
//! the service starts a new iteration ([`JobStatus`](mini_proto::v1::JobStatus)):
//! tasks of an older iteration still running are shut down and the job runs
//! again from the start.
//!
//! A replicated job has slots 1..=`total_completions` and runs at most
//! `max_concurrent` of them at a time, lowest slot first; a global job runs
//! one task on every node that is READY, ACTIVE and satisfies the
//! constraints, including nodes that join later.

use std::collections::{BTreeMap, HashMap};

use mini_proto::v1::{
    Node, ReplicatedJob, RestartCondition, Service, ServiceSpec, Task, TaskState,
    service_spec::Mode,
};

use super::replicated::{node_keeps_task, node_keeps_tasks};
use super::slot::HISTORY_LIMIT;
use super::slot::{Slot, SlotOutcome};
use super::task::{age_key, is_active, is_terminal, observed_state};
use super::{Action, Reconciliation};
use crate::scheduler::{Pipeline, parse_constraints};

/// The iteration a job service runs now (0 before its first update).
pub fn job_iteration(service: &Service) -> u64 {
    service.job_status.as_ref().map_or(0, |j| j.job_iteration)
}

/// Whether `spec` is a job (replicated or global).
pub fn is_job(spec: &ServiceSpec) -> bool {
    matches!(spec.mode, Some(Mode::ReplicatedJob(_) | Mode::GlobalJob(_)))
}

/// A replicated job's `(max_concurrent, total_completions)`, with swarmkit's
/// defaults: no concurrency set means 1, no total means the concurrency.
pub fn job_counts(job: &ReplicatedJob) -> (u64, u64) {
    let concurrent = job.max_concurrent.max(1);
    let total = if job.total_completions == 0 {
        concurrent
    } else {
        job.total_completions
    };
    (concurrent, total)
}

/// The spec the slots of a job follow: restart condition `any` becomes
/// `on-failure`, so a task that completed is never run again.
fn job_spec(spec: &ServiceSpec) -> ServiceSpec {
    let mut spec = spec.clone();
    if let Some(restart) = spec.restart.as_mut()
        && restart.condition() == RestartCondition::Any
    {
        restart.set_condition(RestartCondition::OnFailure);
    }
    if spec.restart.is_none() {
        spec.restart = Some(mini_proto::v1::RestartPolicy {
            condition: RestartCondition::OnFailure as i32,
            delay_ms: 0,
            ..Default::default()
        });
    }
    spec
}

/// Decides what a job service needs (see the module docs). `tasks` are the
/// service's tasks, `nodes` ALL nodes of the cluster. Not a job: an empty
/// result.
pub fn reconcile_job<'t>(
    service: &Service,
    tasks: impl IntoIterator<Item = &'t Task>,
    nodes: &[Node],
    now_ms: i64,
) -> Reconciliation {
    let mut result = Reconciliation::default();
    let Some(spec) = service.spec.as_ref().filter(|s| is_job(s)) else {
        return result;
    };
    let iteration = job_iteration(service);
    let spec = job_spec(spec);
    let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let node_ok = |t: &Task| {
        t.node_id.is_empty() || node_keeps_task(t, by_id.get(t.node_id.as_str()).copied())
    };

    // Tasks of an older iteration still meant to run are stopped: the job runs
    // again. Their history is kept up to HISTORY_LIMIT per slot (or node).
    let mut current = Vec::new();
    let mut older: BTreeMap<(u64, &str), Vec<&Task>> = BTreeMap::new();
    for task in tasks {
        if task.job_iteration == iteration {
            current.push(task);
        } else if task.desired_state() <= TaskState::Running {
            result.actions.push(Action::Shutdown {
                task_id: task.id.clone(),
            });
        } else if is_terminal(observed_state(task)) {
            older
                .entry((task.slot, task.node_id.as_str()))
                .or_default()
                .push(task);
        }
    }
    for mut history in older.into_values() {
        history.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
        let excess = history.len().saturating_sub(HISTORY_LIMIT);
        result
            .actions
            .extend(history[..excess].iter().map(|t| Action::Remove {
                task_id: t.id.clone(),
            }));
    }
    let mut slots: Vec<(u64, Option<&str>, SlotOutcome, Vec<&Task>)> = Vec::new();
    match spec.mode {
        Some(Mode::ReplicatedJob(job)) => {
            let (concurrent, total) = job_counts(&job);
            let mut by_slot: BTreeMap<u64, Vec<&Task>> =
                (1..=total).map(|s| (s, Vec::new())).collect();
            for task in current {
                by_slot.entry(task.slot).or_default().push(task);
            }
            for (number, tasks) in by_slot {
                let slot = Slot {
                    tasks,
                    wanted: (1..=total).contains(&number),
                    spec: Some(&spec),
                    // A job's task is not updated in place: every iteration starts anew.
                    start_first: false,
                };
                let out = slot.reconcile(now_ms, node_ok);
                slots.push((number, None, out, slot.tasks));
            }
            // At most `concurrent` tasks at once: the ones that stay active,
            // then new ones for the lowest slots.
            let active = slots
                .iter()
                .flat_map(|(_, _, out, tasks)| {
                    tasks
                        .iter()
                        .filter(|t| is_active(t) && !out.shutdown.contains(&t.id))
                })
                .count() as u64;
            let mut budget = concurrent.saturating_sub(active);
            for (_, _, out, _) in &mut slots {
                if out.create {
                    if budget == 0 {
                        out.create = false;
                    } else {
                        budget -= 1;
                    }
                }
            }
        }
        Some(Mode::GlobalJob(_)) => {
            let pipeline = parse_constraints(&spec.constraints)
                .ok()
                .map(|c| Pipeline::new(&c));
            let mut per_node: BTreeMap<&str, Vec<&Task>> =
                nodes.iter().map(|n| (n.id.as_str(), Vec::new())).collect();
            for task in current {
                per_node
                    .entry(task.node_id.as_str())
                    .or_default()
                    .push(task);
            }
            for (node_id, tasks) in per_node {
                let node = by_id.get(node_id).copied();
                let wanted = node.is_some_and(|n| pipeline.as_ref().is_some_and(|p| p.check(n)));
                let slot = Slot {
                    tasks,
                    wanted,
                    spec: Some(&spec),
                    // A job's task is not updated in place: every iteration starts anew.
                    start_first: false,
                };
                let out = slot.reconcile(now_ms, |_| node_keeps_tasks(node));
                slots.push((0, Some(node_id), out, slot.tasks));
            }
        }
        _ => {}
    }
    for (number, node_id, mut out, tasks) in slots {
        // A completed task is acknowledged with desired state COMPLETE, not
        // SHUTDOWN: it did what it was meant to.
        let (done, stop): (Vec<String>, Vec<String>) = std::mem::take(&mut out.shutdown)
            .into_iter()
            .partition(|id| {
                tasks
                    .iter()
                    .any(|t| &t.id == id && observed_state(t) == TaskState::Complete)
            });
        out.shutdown = stop;
        result
            .actions
            .extend(done.into_iter().map(|task_id| Action::Complete { task_id }));
        result.push_slot(number, node_id, out);
    }
    result
}
