//! The restart policy: whether, and when, a task that ended gets a replacement.

use mini_proto::v1::{RestartCondition, RestartPolicy, Task, TaskState};

use super::task::observed_state;

/// What the restart policy says about a task that ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Replace it now.
    Now,
    /// Replace it at this time (ms); check again then.
    At(i64),
    /// Do not replace it.
    Never,
}

/// Whether `condition` asks for a replacement of `task`: `any` always,
/// `on-failure` when it FAILED, was REJECTED or exited non-zero, `none` never.
pub fn should_restart(condition: RestartCondition, task: &Task) -> bool {
    match condition {
        RestartCondition::Any => true,
        RestartCondition::None => false,
        RestartCondition::OnFailure => {
            let exit_code = task.status.as_ref().map_or(0, |s| s.exit_code);
            matches!(
                observed_state(task),
                TaskState::Failed | TaskState::Rejected
            ) || exit_code != 0
        }
    }
}

/// Applies `policy` (the service's; default: condition any, no delay) to a
/// task that ended: the replacement may start `delay_ms` after the task's
/// status timestamp.
pub fn restart_decision(policy: Option<&RestartPolicy>, task: &Task, now_ms: i64) -> Restart {
    let policy = policy.copied().unwrap_or_default();
    if !should_restart(policy.condition(), task) {
        return Restart::Never;
    }
    let ended_at = task.status.as_ref().map_or(0, |s| s.timestamp_ms);
    let delay = i64::try_from(policy.delay_ms).unwrap_or(i64::MAX);
    let at = ended_at.saturating_add(delay);
    if at <= now_ms {
        Restart::Now
    } else {
        Restart::At(at)
    }
}
