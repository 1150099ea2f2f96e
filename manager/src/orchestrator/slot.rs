//! The decision for one slot: the tasks of one replica (replicated services)
//! or of one node (global services).

use mini_proto::v1::{RestartPolicy, ServiceSpec, Task, TaskState};

use super::restart::{Restart, restart_decision};
use super::task::{age_key, is_active, is_terminal, observed_state};
use super::update::Kept;

/// How many ended tasks a slot keeps as history (`service ps` `\_` rows).
pub const HISTORY_LIMIT: usize = 5;

/// What the orchestrator knows about one slot.
pub(crate) struct Slot<'a> {
    /// Every task of the slot.
    pub tasks: Vec<&'a Task>,
    /// Whether the slot should have a running task.
    pub wanted: bool,
    /// The service's spec: its restart policy, and whether the kept task is outdated.
    pub spec: Option<&'a ServiceSpec>,
    /// The rollout's order is start-first: an outdated task keeps running while its
    /// replacement starts.
    pub start_first: bool,
}

/// What to do with one slot.
#[derive(Debug, Default)]
pub(crate) struct SlotOutcome {
    /// Tasks whose desired state becomes SHUTDOWN, in id order.
    pub shutdown: Vec<String>,
    /// History tasks to delete, oldest first.
    pub remove: Vec<String>,
    /// Whether to create a new task for the slot now.
    pub create: bool,
    /// When to look again (a delayed restart).
    pub retry_at: Option<i64>,
    /// The healthy active task the slot keeps (the rolling update may still replace it when
    /// it is outdated).
    pub kept: Option<Kept>,
    /// Outdated tasks left running until their start-first replacement (`kept`) runs.
    pub spared: Vec<String>,
    /// Whether the slot should have a running task.
    pub wanted: bool,
}

impl Slot<'_> {
    fn policy(&self) -> Option<&RestartPolicy> {
        self.spec.and_then(|s| s.restart.as_ref())
    }

    /// Decides the slot. `node_ok` says whether a task's node can keep running
    /// it (not down, drained or removed); an active task on a node that cannot
    /// is shut down and replaced at once, regardless of the restart policy.
    pub fn reconcile(&self, now_ms: i64, node_ok: impl Fn(&Task) -> bool) -> SlotOutcome {
        let mut out = SlotOutcome {
            wanted: self.wanted,
            ..SlotOutcome::default()
        };
        let mut shutdown: Vec<&Task> = Vec::new();
        let active: Vec<&Task> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| is_active(t))
            .collect();
        // Ended on their own while still meant to run: not acknowledged yet.
        let ended: Vec<&Task> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| t.desired_state() <= TaskState::Running && is_terminal(observed_state(t)))
            .collect();

        if !self.wanted {
            shutdown.extend(active.iter().chain(&ended));
        } else {
            let (healthy, lost): (Vec<&Task>, Vec<&Task>) = active.iter().partition(|t| node_ok(t));
            shutdown.extend(&lost);
            if let Some(keep) = healthy
                .iter()
                .copied()
                .max_by(|a, b| age_key(a).cmp(&age_key(b)))
            {
                let kept = Kept::of(keep, self.spec);
                // Start-first: the outdated tasks run on until their replacement runs.
                let spare = |t: &Task| {
                    self.start_first
                        && !kept.outdated
                        && kept.state < TaskState::Running
                        && self.spec.is_some_and(|s| super::update::is_outdated(t, s))
                };
                for t in healthy.iter().copied().filter(|t| t.id != keep.id) {
                    if spare(t) {
                        out.spared.push(t.id.clone());
                    } else {
                        shutdown.push(t);
                    }
                }
                shutdown.extend(&ended);
                out.kept = Some(kept);
            } else if !lost.is_empty() {
                shutdown.extend(&ended);
                out.create = true;
            } else if let Some(last) = ended
                .iter()
                .copied()
                .max_by(|a, b| age_key(a).cmp(&age_key(b)))
            {
                shutdown.extend(ended.iter().filter(|t| t.id != last.id));
                match self.restart(last, now_ms) {
                    Restart::Now => {
                        shutdown.push(last);
                        out.create = true;
                    }
                    Restart::At(at) => out.retry_at = Some(at),
                    // A task that was shut down without being asked keeps its
                    // desired state RUNNING when it is not restarted: once
                    // SHUTDOWN it would look like a task the orchestrator
                    // stopped, which is replaced (see below).
                    Restart::Never if observed_state(last) == TaskState::Shutdown => {}
                    Restart::Never => shutdown.push(last),
                }
            } else {
                self.after_history(now_ms, &mut out);
            }
        }

        shutdown.sort_by(|a, b| a.id.cmp(&b.id));
        shutdown.dedup_by(|a, b| a.id == b.id);
        out.remove = self.prune(&shutdown, &node_ok);
        out.shutdown = shutdown.into_iter().map(|t| t.id.clone()).collect();
        out
    }

    /// The restart policy's decision for `last`, the slot's newest ended task: with
    /// `max_attempts`, the slot's earlier tasks that ended on their own (each was restarted)
    /// within the window count as attempts. Only the history a slot keeps
    /// ([`HISTORY_LIMIT`]) is remembered.
    fn restart(&self, last: &Task, now_ms: i64) -> Restart {
        let policy = self.policy().copied().unwrap_or_default();
        if policy.max_attempts > 0 {
            let window_start = match policy.window_ms {
                0 => i64::MIN,
                w => now_ms.saturating_sub(i64::try_from(w).unwrap_or(i64::MAX)),
            };
            let attempts = self
                .tasks
                .iter()
                .filter(|t| t.id != last.id)
                .filter(|t| {
                    matches!(
                        observed_state(t),
                        TaskState::Complete | TaskState::Failed | TaskState::Rejected
                    )
                })
                .filter(|t| t.status.as_ref().map_or(0, |s| s.timestamp_ms) >= window_start)
                .count() as u64;
            if attempts >= policy.max_attempts {
                return Restart::Never;
            }
        }
        restart_decision(self.policy(), last, now_ms)
    }

    /// A wanted slot with neither an active task nor an unacknowledged ended
    /// one: the newest task says why. A task that ended on its own (COMPLETE,
    /// FAILED, REJECTED) and that the policy did not restart keeps the slot
    /// empty; one the orchestrator stopped (scaled down, node lost) or no task
    /// at all means a new task now.
    fn after_history(&self, now_ms: i64, out: &mut SlotOutcome) {
        let newest = self
            .tasks
            .iter()
            .copied()
            .max_by(|a, b| age_key(a).cmp(&age_key(b)));
        match newest {
            Some(last)
                if matches!(
                    observed_state(last),
                    TaskState::Complete | TaskState::Failed | TaskState::Rejected
                ) =>
            {
                match self.restart(last, now_ms) {
                    Restart::Now => out.create = true,
                    Restart::At(at) => out.retry_at = Some(at),
                    Restart::Never => {}
                }
            }
            _ => out.create = true,
        }
    }

    /// The oldest history beyond [`HISTORY_LIMIT`] that can go: history is
    /// every task told to stop (or being told now); a task is deleted only
    /// once it has ended or its node is gone, so no worker still runs it.
    fn prune(&self, shutdown: &[&Task], node_ok: &impl Fn(&Task) -> bool) -> Vec<String> {
        let mut history: Vec<&Task> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| {
                t.desired_state() > TaskState::Running || shutdown.iter().any(|s| s.id == t.id)
            })
            .collect();
        if history.len() <= HISTORY_LIMIT {
            return Vec::new();
        }
        history.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
        let excess = history.len() - HISTORY_LIMIT;
        history[..excess]
            .iter()
            .filter(|t| !shutdown.iter().any(|s| s.id == t.id))
            .filter(|t| is_terminal(observed_state(t)) || !node_ok(t))
            .map(|t| t.id.clone())
            .collect()
    }
}
