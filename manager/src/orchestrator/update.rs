//! Rolling updates: after a service's spec changed, the tasks made from the old spec are
//! replaced a few at a time ([`UpdateConfig`]: `parallelism` at once, `delay_ms` between
//! batches), never all together unless asked to (`parallelism` 0). A changed replica count is
//! not an update: only what a task is made of counts ([`is_outdated`]).

use mini_proto::v1::{ServiceSpec, Task, TaskState, UpdateConfig};

use super::slot::SlotOutcome;
use super::task::observed_state;

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
    /// When the state was reported.
    pub since_ms: i64,
}

impl Kept {
    pub(crate) fn of(task: &Task, spec: Option<&ServiceSpec>) -> Kept {
        Kept {
            id: task.id.clone(),
            outdated: spec.is_some_and(|s| is_outdated(task, s)),
            state: observed_state(task),
            since_ms: task.status.as_ref().map_or(0, |s| s.timestamp_ms),
        }
    }
}

/// Chooses which slots with an outdated task are replaced now, and marks them in their
/// outcomes (shut the old task down, create a new one). Returns when to look again (a
/// replacement's `delay_ms` running out), if that is what holds the update back.
///
/// A slot is busy while its up-to-date task has not reached RUNNING, or reached it less than
/// `delay_ms` ago; at most `parallelism` slots are busy or being replaced at once.
pub(crate) fn roll(
    outcomes: &mut [&mut SlotOutcome],
    config: Option<&UpdateConfig>,
    now_ms: i64,
) -> Option<i64> {
    if !outcomes
        .iter()
        .any(|o| o.kept.as_ref().is_some_and(|k| k.outdated))
    {
        return None;
    }
    let parallelism = config.map_or(1, |c| c.parallelism);
    let delay = config.map_or(0, |c| c.delay_ms) as i64;
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
    let mut budget = match parallelism {
        0 => usize::MAX,
        n => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_sub(busy),
    };
    for o in outcomes.iter_mut() {
        if budget == 0 {
            break;
        }
        let Some(k) = o.kept.as_ref().filter(|k| k.outdated) else {
            continue;
        };
        o.shutdown.push(k.id.clone());
        o.shutdown.sort();
        o.create = true;
        budget -= 1;
    }
    // Slots left waiting are looked at again when a task's state changes, or when the delay
    // of a running replacement runs out.
    next_check
}
