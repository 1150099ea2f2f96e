//! Rolling updates and rollbacks, as swarmkit's updater does them, decided from the store
//! alone (no state kept between passes, so a new leader carries on where the old one was).
//!
//! After a service's spec changed, the tasks made from the old spec ([`is_outdated`]) are
//! replaced a few at a time ([`UpdateConfig`]): `parallelism` slots at once, the next batch only
//! once the replacements run (a task with a health check reports RUNNING only once healthy) and
//! `delay_ms` passed. `order` start-first starts a replacement before its old task stops.
//!
//! Every task created since the update started (`UpdateStatus.started_at_ms`) from the new spec
//! is watched: one that ends (exits, is rejected, fails its health check) before it started or
//! within `monitor_ms` after it did is a failure. When failures exceed `max_failure_ratio` of
//! the service's tasks, `failure_action` applies: pause (UpdateStatus PAUSED), continue, or
//! rollback (the previous spec comes back and is rolled out with the rollback config; a
//! failing rollback pauses, it is never rolled back). An update completes once no task is
//! outdated, every replacement runs, and the last one has run for `monitor_ms`.

use mini_proto::v1::{
    Service, ServiceSpec, Task, TaskState, UpdateConfig, UpdateFailureAction, UpdateOrder,
    UpdateState, UpdateStatus,
};

use super::slot::SlotOutcome;
use super::task::observed_state;

/// Docker's update and rollback defaults: parallelism 1, no delay, pause on failure, monitor
/// 5 s, max failure ratio 0, stop-first. Used when a spec has no config.
pub fn docker_default() -> UpdateConfig {
    UpdateConfig {
        parallelism: 1,
        delay_ms: 0,
        failure_action: UpdateFailureAction::Pause as i32,
        monitor_ms: 5_000,
        max_failure_ratio: 0.0,
        order: UpdateOrder::StopFirst as i32,
    }
}

/// Whether `task` was made from an older version of its service's task template: container,
/// placement (constraints, preferences, replicas per node), endpoint (published ports), restart policy, or a forced update.
pub fn is_outdated(task: &Task, spec: &ServiceSpec) -> bool {
    task.container != spec.container
        || task.constraints != spec.constraints
        || task.placement_preferences != spec.placement_preferences
        || task.max_replicas_per_node != spec.max_replicas_per_node
        || task.endpoint != spec.endpoint
        || task.restart != spec.restart
        || task.force_update != spec.force_update
        || task.aliases != spec.aliases
        || task.spec_networks != spec.networks
}

/// Docker's words for an update state (`updating`, `paused`, `completed`,
/// `rollback_started`, `rollback_paused`, `rollback_completed`).
pub fn state_name(state: UpdateState) -> &'static str {
    match state {
        UpdateState::Unknown => "",
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

/// The active task a slot keeps, as the update sees it.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    /// Task id.
    pub id: String,
    /// Made from an older spec: to be replaced.
    pub outdated: bool,
    /// Observed state.
    pub state: TaskState,
    /// When it started running (else when its state was reported).
    pub since_ms: i64,
}

impl Kept {
    pub(crate) fn of(task: &Task, spec: Option<&ServiceSpec>) -> Kept {
        let reported = task.status.as_ref().map_or(0, |s| s.timestamp_ms);
        Kept {
            id: task.id.clone(),
            outdated: spec.is_some_and(|s| is_outdated(task, s)),
            state: observed_state(task),
            since_ms: if task.running_since_ms > 0 {
                task.running_since_ms
            } else {
                reported
            },
        }
    }
}

/// The update's state of `service` (UNKNOWN without one).
fn update_state(service: &Service) -> UpdateState {
    service
        .update_status
        .as_ref()
        .map_or(UpdateState::Unknown, |s| s.state())
}

/// The config the current rollout follows: the rollback config while rolling back, else the
/// update config (Docker's defaults for an unset one).
pub fn effective_config(service: &Service) -> UpdateConfig {
    let spec = service.spec.as_ref();
    let config = if update_state(service) == UpdateState::RollbackStarted {
        spec.and_then(|s| s.rollback)
    } else {
        spec.and_then(|s| s.update)
    };
    config.unwrap_or_else(docker_default)
}

/// Whether `task` ended on its own while meant to run (or failed its health check).
fn ended_on_its_own(task: &Task) -> bool {
    let unhealthy = task
        .status
        .as_ref()
        .is_some_and(|s| s.health == "unhealthy");
    unhealthy
        || match observed_state(task) {
            TaskState::Complete | TaskState::Failed | TaskState::Rejected | TaskState::Orphaned => {
                true
            }
            TaskState::Shutdown => task.desired_state() <= TaskState::Running,
            _ => false,
        }
}

/// What the update decided for one service, besides the slots' outcomes.
#[derive(Debug, Default)]
pub(crate) struct UpdatePlan {
    /// The service to write back (new UpdateStatus, or the previous spec for a rollback).
    pub service: Option<Service>,
    /// The spec goes back to the previous one: the slots' outcomes (made for the spec being
    /// left) are not written this time.
    pub rolled_back: bool,
    /// When to look again (a delay or a monitor window running out).
    pub next_check: Option<i64>,
}

/// Runs the update of `service` over its slots' `outcomes`: applies the failure action when
/// too many new tasks failed, else chooses which outdated slots are replaced now (marking
/// their outcomes), and starts or completes the update. `tasks` are all the service's tasks;
/// `slots` is how many tasks the service wants (the failure ratio's denominator).
pub(crate) fn plan(
    service: &Service,
    tasks: &[&Task],
    outcomes: &mut [&mut SlotOutcome],
    now_ms: i64,
) -> UpdatePlan {
    let mut plan = UpdatePlan::default();
    let Some(spec) = service.spec.as_ref() else {
        return plan;
    };
    let config = effective_config(service);
    let state = update_state(service);
    let dirty = outcomes
        .iter()
        .any(|o| o.kept.as_ref().is_some_and(|k| k.outdated) || !o.spared.is_empty());
    let in_progress = matches!(state, UpdateState::Updating | UpdateState::RollbackStarted);
    let wanted = outcomes.iter().filter(|o| o.wanted).count().max(1);

    // Failures of this update's tasks.
    if in_progress {
        let started = service
            .update_status
            .as_ref()
            .map_or(0, |s| s.started_at_ms);
        if let Some(failed) = triggering_failure(tasks, spec, started, &config, wanted) {
            match config.failure_action() {
                UpdateFailureAction::Continue => {}
                UpdateFailureAction::Rollback
                    if state == UpdateState::Updating && service.previous_spec.is_some() =>
                {
                    let mut next = service.clone();
                    next.spec = next.previous_spec.take();
                    next.update_status = Some(UpdateStatus {
                        state: UpdateState::RollbackStarted as i32,
                        started_at_ms: now_ms,
                        completed_at_ms: 0,
                        message: format!(
                            "update rolled back due to failure or early termination of task {failed}"
                        ),
                    });
                    plan.service = Some(next);
                    plan.rolled_back = true;
                    return plan;
                }
                // Pause, and a rollback that fails (never rolled back) or has nothing to go
                // back to.
                _ => {
                    let (paused, what) = if state == UpdateState::RollbackStarted {
                        (UpdateState::RollbackPaused, "rollback")
                    } else {
                        (UpdateState::Paused, "update")
                    };
                    let mut next = service.clone();
                    let status = next.update_status.get_or_insert_with(Default::default);
                    status.set_state(paused);
                    status.message = format!(
                        "{what} paused due to failure or early termination of task {failed}"
                    );
                    plan.service = Some(next);
                    return plan;
                }
            }
        }
    }

    if matches!(state, UpdateState::Paused | UpdateState::RollbackPaused) {
        // Nothing is replaced until `service update` (resume) or `service rollback`.
        return plan;
    }
    if dirty && state == UpdateState::Unknown {
        let mut next = service.clone();
        next.update_status = Some(UpdateStatus {
            state: UpdateState::Updating as i32,
            started_at_ms: now_ms,
            completed_at_ms: 0,
            message: "update in progress".into(),
        });
        plan.service = Some(next);
    }
    plan.next_check = roll(outcomes, &config, now_ms);

    let replacing = outcomes
        .iter()
        .any(|o| o.kept.as_ref().is_some_and(|k| k.outdated) || !o.spared.is_empty() || o.create);
    if in_progress && !replacing {
        // Every slot runs the new spec: complete once the last replacement has run for the
        // monitor window.
        let starting = outcomes.iter().any(|o| {
            o.kept
                .as_ref()
                .is_some_and(|k| k.state < TaskState::Running)
        });
        if !starting {
            let last_start = outcomes
                .iter()
                .filter_map(|o| o.kept.as_ref().map(|k| k.since_ms))
                .max()
                .unwrap_or(0);
            let done_at = last_start.saturating_add(config.monitor_ms as i64);
            if done_at <= now_ms {
                let mut next = service.clone();
                let status = next.update_status.get_or_insert_with(Default::default);
                if state == UpdateState::RollbackStarted {
                    status.set_state(UpdateState::RollbackCompleted);
                    status.message = "rollback completed".into();
                } else {
                    status.set_state(UpdateState::Completed);
                    status.message = "update completed".into();
                }
                status.completed_at_ms = now_ms;
                plan.service = Some(next);
            } else {
                plan.next_check = Some(plan.next_check.map_or(done_at, |t| t.min(done_at)));
            }
        }
    }
    plan
}

/// The task whose failure takes the update's failures above `max_failure_ratio` of `wanted`
/// tasks: tasks made from `spec` since `started_ms` that ended before they ran or within the
/// monitor window after they started, in the order they ended.
fn triggering_failure(
    tasks: &[&Task],
    spec: &ServiceSpec,
    started_ms: i64,
    config: &UpdateConfig,
    wanted: usize,
) -> Option<String> {
    let mut failed: Vec<(i64, &str)> = tasks
        .iter()
        .filter(|t| t.meta.is_some_and(|m| m.created_at_ms >= started_ms))
        .filter(|t| !is_outdated(t, spec) && ended_on_its_own(t))
        .filter_map(|t| {
            let ended = t.status.as_ref().map_or(0, |s| s.timestamp_ms);
            let early = t.running_since_ms == 0
                || ended.saturating_sub(t.running_since_ms) <= config.monitor_ms as i64;
            early.then_some((ended, t.id.as_str()))
        })
        .collect();
    failed.sort();
    failed
        .iter()
        .enumerate()
        .find(|(i, _)| (*i + 1) as f32 / wanted as f32 > config.max_failure_ratio)
        .map(|(_, (_, id))| (*id).to_owned())
}

/// Chooses which slots with an outdated task are replaced now, and marks them in their
/// outcomes (stop-first: shut the old task down and create a new one; start-first: create
/// the new one, the old one stops once it runs). Returns when to look again (a
/// replacement's `delay_ms` running out), if that is what holds the update back.
///
/// A slot is busy while its up-to-date task has not reached RUNNING (healthy, with a health
/// check), or reached it less than `delay_ms` ago; at most `parallelism` slots are busy or
/// being replaced at once.
fn roll(outcomes: &mut [&mut SlotOutcome], config: &UpdateConfig, now_ms: i64) -> Option<i64> {
    if !outcomes
        .iter()
        .any(|o| o.kept.as_ref().is_some_and(|k| k.outdated))
    {
        return None;
    }
    let delay = config.delay_ms as i64;
    let mut busy = 0;
    let mut next_check: Option<i64> = None;
    for o in outcomes.iter() {
        let Some(k) = o.kept.as_ref().filter(|k| !k.outdated) else {
            // A new task being created counts as a replacement under way.
            busy += usize::from(o.create);
            continue;
        };
        if k.state < TaskState::Running {
            busy += 1;
        } else if k.state == TaskState::Running && k.since_ms + delay > now_ms {
            busy += 1;
            let at = k.since_ms + delay;
            next_check = Some(next_check.map_or(at, |t| t.min(at)));
        }
    }
    let mut budget = match config.parallelism {
        0 => usize::MAX,
        n => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_sub(busy),
    };
    let start_first = config.order() == UpdateOrder::StartFirst;
    for o in outcomes.iter_mut() {
        if budget == 0 {
            break;
        }
        let Some(k) = o.kept.as_ref().filter(|k| k.outdated) else {
            continue;
        };
        if !start_first {
            o.shutdown.push(k.id.clone());
            o.shutdown.sort();
        }
        o.create = true;
        budget -= 1;
    }
    // Slots left waiting are looked at again when a task's state changes, or when the delay
    // of a running replacement runs out.
    next_check
}
