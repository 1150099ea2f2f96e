//! Jobs through the controllers: completions, concurrency, retries, global jobs
//! and new iterations.

use mini_proto::v1::{
    GlobalJob, JobStatus, ReplicatedJob, RestartCondition, Service, Task, TaskState,
    service_spec::Mode, store_action::Action,
};

use super::{Harness, create, describe, node, state, tasks_of, update, write};
use crate::ids::now_ms;
use crate::orchestrator::{Action as Decided, reconcile_job};
use crate::store::Tables;

fn replicated_job(max_concurrent: u64, total_completions: u64) -> Mode {
    Mode::ReplicatedJob(ReplicatedJob {
        max_concurrent,
        total_completions,
    })
}

/// Tasks of `service` (current iteration) that are bound to a node and not ended.
fn started(t: &Tables, service: &str) -> Vec<Task> {
    tasks_of(t, service)
        .into_iter()
        .filter(|t| {
            t.desired_state() <= TaskState::Running
                && state(t) >= TaskState::Assigned
                && state(t) <= TaskState::Running
        })
        .collect()
}

/// What the orchestrator would do for `service` now (a pass over the store as it is).
fn next_actions(h: &Harness, service: &str) -> Vec<Decided> {
    h.store.view(|t| {
        let svc: &Service = &t.services[&format!("svc-{service}")];
        let tasks = t.tasks_of_service(&svc.id);
        let nodes: Vec<_> = t.nodes.values().cloned().collect();
        reconcile_job(svc, tasks, &nodes, now_ms()).actions
    })
}

/// Runs every started task of `service` to COMPLETE (exit 0); returns how many.
async fn complete_started(h: &Harness, service: &str, n: usize) -> Vec<Task> {
    let tasks = h
        .wait(&format!("{n} started tasks of {service}"), |t| {
            let s = started(t, service);
            if s.len() == n {
                Ok(s)
            } else {
                Err(describe(t, service))
            }
        })
        .await;
    for task in &tasks {
        h.report(task, TaskState::Running, 0).await;
        h.report(task, TaskState::Complete, 0).await;
    }
    tasks
}

#[tokio::test]
async fn a_replicated_job_runs_its_completions_max_concurrent_at_a_time() {
    let h = Harness::start().await;
    h.create_service("batch", 0, |s| s.mode = Some(replicated_job(2, 5)))
        .await;
    // Two at a time: 2, 2, then the last one.
    let mut done = Vec::new();
    for n in [2, 2, 1] {
        done.extend(complete_started(&h, "batch", n).await);
    }
    let tasks = h
        .wait("5 completed tasks, acknowledged", |t| {
            let all = tasks_of(t, "batch");
            let complete = all
                .iter()
                .filter(|t| {
                    state(t) == TaskState::Complete && t.desired_state() == TaskState::Complete
                })
                .count();
            if complete == 5 {
                Ok(all)
            } else {
                Err(describe(t, "batch"))
            }
        })
        .await;
    assert_eq!(tasks.len(), 5, "no task beyond the 5 completions");
    let mut slots: Vec<u64> = tasks.iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, [1, 2, 3, 4, 5]);
    // Completed tasks are never started again.
    assert_eq!(next_actions(&h, "batch"), []);
    h.controllers.stop().await;
}

#[tokio::test]
async fn a_failed_job_task_is_retried_and_a_completed_one_is_not() {
    let h = Harness::start().await;
    // Condition `any` (the service default) acts as on-failure for a job.
    h.create_service("once", 0, |s| {
        s.mode = Some(replicated_job(1, 1));
        s.restart = Some(mini_proto::v1::RestartPolicy {
            condition: RestartCondition::Any as i32,
            delay_ms: 0,
            ..Default::default()
        });
    })
    .await;
    let first = h
        .wait("the job's task", |t| {
            started(t, "once").pop().ok_or_else(|| describe(t, "once"))
        })
        .await;
    h.report(&first, TaskState::Running, 0).await;
    h.report(&first, TaskState::Failed, 1).await;
    let retry = h
        .wait("a retry of the failed task", |t| {
            started(t, "once")
                .into_iter()
                .find(|x| x.id != first.id)
                .ok_or_else(|| describe(t, "once"))
        })
        .await;
    assert_eq!(retry.slot, first.slot);
    h.report(&retry, TaskState::Running, 0).await;
    h.report(&retry, TaskState::Complete, 0).await;
    h.wait("the retry acknowledged as complete", |t| {
        let r = &t.tasks[&retry.id];
        if r.desired_state() == TaskState::Complete {
            Ok(())
        } else {
            Err(describe(t, "once"))
        }
    })
    .await;
    assert_eq!(next_actions(&h, "once"), []);
    let all = h.store.view(|t| tasks_of(t, "once"));
    assert_eq!(all.len(), 2, "{all:?}");
    h.controllers.stop().await;
}

#[tokio::test]
async fn a_global_job_runs_once_per_node_and_on_nodes_that_join() {
    let h = Harness::start().await;
    h.create_service("sweep", 0, |s| s.mode = Some(Mode::GlobalJob(GlobalJob {})))
        .await;
    let ran = complete_started(&h, "sweep", 3).await;
    let mut nodes: Vec<&str> = ran.iter().map(|t| t.node_id.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    h.wait("3 completed tasks acknowledged", |t| {
        let all = tasks_of(t, "sweep");
        if all.len() == 3 && all.iter().all(|t| t.desired_state() == TaskState::Complete) {
            Ok(())
        } else {
            Err(describe(t, "sweep"))
        }
    })
    .await;
    assert_eq!(next_actions(&h, "sweep"), []);
    // A node that joins later runs the job too.
    write(&h.proposer, vec![create(Action::PutNode(node(4)))]).await;
    let late = complete_started(&h, "sweep", 1).await;
    assert_eq!(late[0].node_id, "n4");
    h.controllers.stop().await;
}

#[tokio::test]
async fn an_update_runs_the_job_again() {
    let h = Harness::start().await;
    h.create_service("migrate", 0, |s| s.mode = Some(replicated_job(1, 1)))
        .await;
    let first = complete_started(&h, "migrate", 1).await;
    assert_eq!(first[0].job_iteration, 0);
    // What `service update` writes: a new iteration.
    let mut svc = h.store.view(|t| t.services["svc-migrate"].clone());
    svc.job_status = Some(JobStatus {
        job_iteration: 1,
        last_execution_ms: now_ms(),
    });
    write(&h.proposer, vec![update(Action::PutService(svc))]).await;
    let second = complete_started(&h, "migrate", 1).await;
    assert_eq!(second[0].job_iteration, 1);
    assert_ne!(second[0].id, first[0].id);
    // Many runs later the history stays bounded (older iterations are pruned).
    for iteration in 2..=8 {
        let mut svc = h.store.view(|t| t.services["svc-migrate"].clone());
        svc.job_status = Some(JobStatus {
            job_iteration: iteration,
            last_execution_ms: now_ms(),
        });
        write(&h.proposer, vec![update(Action::PutService(svc))]).await;
        let run = complete_started(&h, "migrate", 1).await;
        assert_eq!(run[0].job_iteration, iteration);
    }
    h.wait("the history of older runs pruned", |t| {
        let all = tasks_of(t, "migrate");
        let kept = all
            .iter()
            .filter(|t| t.desired_state() < TaskState::Remove)
            .count();
        if kept <= crate::orchestrator::HISTORY_LIMIT + 1 {
            Ok(())
        } else {
            Err(describe(t, "migrate"))
        }
    })
    .await;
    h.controllers.stop().await;
}
