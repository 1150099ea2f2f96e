//! What `service create` and `service update` check of a service's placement
//! (constraints, preferences, replicas per node) and job mode, and what
//! `service ls` counts for a job.

use mini_proto::v1::{JobStatus, Service, ServiceSpec, Task, TaskState, service_spec::Mode};

use super::ControlError;
use crate::orchestrator::{is_active, is_job, job_iteration, observed_state};
use crate::scheduler::{check_spread_descriptor, parse_constraints};

/// Refuses a bad constraint, placement preference or job setting, saying what
/// would be right.
pub(super) fn check(spec: &ServiceSpec) -> Result<(), ControlError> {
    parse_constraints(&spec.constraints)?;
    for pref in &spec.placement_preferences {
        check_spread_descriptor(&pref.spread).map_err(ControlError::Invalid)?;
    }
    if let Some(Mode::ReplicatedJob(job)) = spec.mode
        && job.total_completions != 0
        && job.max_concurrent > job.total_completions
    {
        return Err(ControlError::Invalid(format!(
            "--max-concurrent {} is more than the job's {} total completions (--replicas)",
            job.max_concurrent, job.total_completions
        )));
    }
    Ok(())
}

/// The job status of a new service: iteration 0 for a job, none otherwise.
pub(super) fn new_job_status(spec: &ServiceSpec, now_ms: i64) -> Option<JobStatus> {
    is_job(spec).then_some(JobStatus {
        job_iteration: 0,
        last_execution_ms: now_ms,
    })
}

/// The job status after an update of `old`: every update of a job runs it
/// again (a new iteration), as in Docker.
pub(super) fn updated_job_status(
    old: &Service,
    spec: &ServiceSpec,
    now_ms: i64,
) -> Option<JobStatus> {
    is_job(spec).then(|| JobStatus {
        job_iteration: job_iteration(old) + 1,
        last_execution_ms: now_ms,
    })
}

/// `service ls` counts of a job: tasks of the current iteration that are
/// meant to run or completed (replicated job; for a global job only the ones
/// not yet completed, as Docker shows it) and the completed ones.
pub(super) fn job_counts<'t>(
    service: &Service,
    tasks: impl IntoIterator<Item = &'t Task>,
) -> (u64, u64) {
    let iteration = job_iteration(service);
    let global = matches!(
        service.spec.as_ref().and_then(|s| s.mode),
        Some(Mode::GlobalJob(_))
    );
    let (mut desired, mut completed) = (0, 0);
    for task in tasks.into_iter().filter(|t| t.job_iteration == iteration) {
        let done = observed_state(task) == TaskState::Complete;
        completed += u64::from(done);
        if is_active(task) || (done && !global) {
            desired += 1;
        }
    }
    (desired, completed)
}
