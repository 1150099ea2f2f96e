//! Unit tests of the orchestrators.

use mini_proto::v1::{
    ContainerSpec, Meta, Node, NodeAvailability, NodeSpec, NodeState, NodeStatus, RestartCondition,
    RestartPolicy, Service, ServiceSpec, Task, TaskState, TaskStatus, service_spec::Mode,
};

use super::*;

const NOW: i64 = 1_000_000;

fn service(mode: Mode, condition: RestartCondition, delay_ms: u64) -> Service {
    let mut restart = RestartPolicy {
        delay_ms,
        ..RestartPolicy::default()
    };
    restart.set_condition(condition);
    Service {
        id: "svc".to_owned(),
        meta: Some(Meta {
            version: 7,
            ..Meta::default()
        }),
        spec: Some(ServiceSpec {
            name: "web".to_owned(),
            container: Some(ContainerSpec {
                image: "host".to_owned(),
                args: vec!["sleep".to_owned(), "1d".to_owned()],
                env: vec!["A=1".to_owned()],
                ..Default::default()
            }),
            mode: Some(mode),
            restart: Some(restart),
            constraints: vec!["node.labels.zone!=west".to_owned()],
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn replicated(n: u64) -> Service {
    service(Mode::Replicas(n), RestartCondition::Any, 0)
}

fn node(id: &str, state: NodeState, availability: NodeAvailability) -> Node {
    let mut spec = NodeSpec::default();
    spec.set_availability(availability);
    let mut status = NodeStatus::default();
    status.set_state(state);
    Node {
        id: id.to_owned(),
        spec: Some(spec),
        status: Some(status),
        ..Node::default()
    }
}

fn ready(id: &str) -> Node {
    node(id, NodeState::Ready, NodeAvailability::Active)
}

/// A task of slot `slot` created at `created`, on `node`, observed `state`
/// at time `at`, with `desired`; made from the current spec of
/// [`replicated`] and [`global`] services (not outdated).
fn task(
    id: &str,
    slot: u64,
    node: &str,
    state: TaskState,
    desired: TaskState,
    created: i64,
    at: i64,
) -> Task {
    let mut t = Task {
        id: id.to_owned(),
        meta: Some(Meta {
            created_at_ms: created,
            ..Meta::default()
        }),
        service_id: "svc".to_owned(),
        slot,
        node_id: node.to_owned(),
        status: Some(TaskStatus {
            state: state as i32,
            timestamp_ms: at,
            ..TaskStatus::default()
        }),
        ..Task::default()
    };
    let spec = replicated(1).spec.unwrap();
    t.container = spec.container;
    t.constraints = spec.constraints;
    t.restart = spec.restart;
    t.set_desired_state(desired);
    t
}

/// `t` as if made from `svc`'s current spec.
fn made_from(svc: &Service, mut t: Task) -> Task {
    let spec = svc.spec.clone().unwrap();
    t.container = spec.container;
    t.constraints = spec.constraints;
    t.restart = spec.restart;
    t.endpoint = spec.endpoint;
    t.force_update = spec.force_update;
    t
}

fn running(id: &str, slot: u64, node: &str) -> Task {
    task(id, slot, node, TaskState::Running, TaskState::Running, 1, 1)
}

fn ended(id: &str, slot: u64, state: TaskState, exit_code: i32, at: i64) -> Task {
    let mut t = task(id, slot, "a", state, TaskState::Running, 1, at);
    t.status.as_mut().unwrap().exit_code = exit_code;
    t
}

fn create(slot: u64) -> Action {
    Action::CreateTask {
        slot,
        node_id: None,
    }
}

fn create_on(node: &str) -> Action {
    Action::CreateTask {
        slot: 0,
        node_id: Some(node.to_owned()),
    }
}

fn shutdown(id: &str) -> Action {
    Action::Shutdown {
        task_id: id.to_owned(),
    }
}

fn remove(id: &str) -> Action {
    Action::Remove {
        task_id: id.to_owned(),
    }
}

fn nodes() -> Vec<Node> {
    vec![ready("a"), ready("b"), ready("c")]
}

#[test]
fn states_and_activity() {
    assert!(!is_terminal(TaskState::Running));
    for s in [
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Orphaned,
    ] {
        assert!(is_terminal(s), "{s:?}");
    }
    assert!(is_active(&running("t", 1, "a")));
    assert!(!is_active(&ended("t", 1, TaskState::Failed, 1, 0)));
    assert!(!is_active(&task(
        "t",
        1,
        "a",
        TaskState::Running,
        TaskState::Shutdown,
        1,
        1
    )));
}

#[test]
fn new_task_copies_the_spec() {
    let svc = replicated(2);
    let t = new_task(&svc, 2, None, "t1".to_owned(), NOW);
    assert_eq!(t.id, "t1");
    assert_eq!(
        (t.service_id.as_str(), t.service_name.as_str(), t.slot),
        ("svc", "web", 2)
    );
    assert_eq!(t.node_id, "");
    assert_eq!(t.service_version, 7);
    assert_eq!(t.container.as_ref().unwrap().args, ["sleep", "1d"]);
    assert_eq!(t.constraints, ["node.labels.zone!=west"]);
    assert_eq!(t.restart, svc.spec.as_ref().unwrap().restart);
    assert_eq!(observed_state(&t), TaskState::New);
    assert_eq!(t.desired_state(), TaskState::Running);
    assert_eq!(t.status.as_ref().unwrap().timestamp_ms, NOW);
    assert_eq!(t.meta.unwrap().created_at_ms, NOW);
    let g = new_task(&svc, 0, Some("n1"), "g".to_owned(), NOW);
    assert_eq!((g.slot, g.node_id.as_str()), (0, "n1"));
}

#[test]
fn scale_up_from_nothing_creates_every_slot() {
    let r = reconcile_replicated(&replicated(3), &[], &nodes(), NOW);
    assert_eq!(r.actions, [create(1), create(2), create(3)]);
    assert_eq!(r.next_check_ms, None);
}

#[test]
fn steady_state_does_nothing_and_missing_slots_are_filled() {
    let tasks = [running("t1", 1, "a"), running("t3", 3, "b")];
    let r = reconcile_replicated(&replicated(3), &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [create(2)]);
    let tasks = [
        running("t1", 1, "a"),
        running("t2", 2, ""),
        running("t3", 3, "b"),
    ];
    assert!(
        reconcile_replicated(&replicated(3), &tasks, &nodes(), NOW)
            .actions
            .is_empty()
    );
}

#[test]
fn scale_down_shuts_down_high_slots_and_scale_up_reuses_them() {
    let tasks = [
        running("t1", 1, "a"),
        running("t2", 2, "b"),
        running("t3", 3, "c"),
    ];
    let r = reconcile_replicated(&replicated(1), &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("t2"), shutdown("t3")]);

    // Back to 3 while t3 is still stopping, and after t2 has stopped.
    let tasks = [
        running("t1", 1, "a"),
        task("t2", 2, "b", TaskState::Shutdown, TaskState::Shutdown, 1, 5),
        task("t3", 3, "c", TaskState::Running, TaskState::Shutdown, 1, 5),
    ];
    let r = reconcile_replicated(&replicated(3), &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [create(2), create(3)]);
}

#[test]
fn duplicate_live_tasks_in_a_slot_keep_the_newest() {
    let tasks = [
        task("old", 1, "a", TaskState::Running, TaskState::Running, 1, 1),
        task("new", 1, "b", TaskState::Running, TaskState::Running, 2, 2),
    ];
    let r = reconcile_replicated(&replicated(1), &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("old")]);
}

#[test]
fn restart_condition_any_replaces_every_ended_task() {
    for (state, code) in [
        (TaskState::Complete, 0),
        (TaskState::Failed, 1),
        (TaskState::Shutdown, 0),
    ] {
        let r = reconcile_replicated(
            &replicated(1),
            &[ended("t1", 1, state, code, 10)],
            &nodes(),
            NOW,
        );
        assert_eq!(r.actions, [shutdown("t1"), create(1)], "{state:?}");
    }
}

#[test]
fn restart_condition_on_failure() {
    let svc = service(Mode::Replicas(1), RestartCondition::OnFailure, 0);
    for (state, code, restarts) in [
        (TaskState::Failed, 0, true),
        (TaskState::Rejected, 0, true),
        (TaskState::Complete, 3, true),
        (TaskState::Complete, 0, false),
    ] {
        let r = reconcile_replicated(&svc, &[ended("t1", 1, state, code, 10)], &nodes(), NOW);
        let want = if restarts {
            vec![shutdown("t1"), create(1)]
        } else {
            vec![shutdown("t1")]
        };
        assert_eq!(r.actions, want, "{state:?} exit {code}");
    }
}

#[test]
fn restart_condition_none_keeps_the_slot_empty() {
    let svc = service(Mode::Replicas(1), RestartCondition::None, 0);
    let r = reconcile_replicated(
        &svc,
        &[ended("t1", 1, TaskState::Failed, 1, 10)],
        &nodes(),
        NOW,
    );
    assert_eq!(r.actions, [shutdown("t1")]);
    // Once acknowledged, the slot stays empty on every later pass.
    let acked = task("t1", 1, "a", TaskState::Failed, TaskState::Shutdown, 1, 10);
    assert!(
        reconcile_replicated(&svc, &[acked], &nodes(), NOW)
            .actions
            .is_empty()
    );
    // A task stopped without being asked keeps desired RUNNING (see slot.rs).
    let stopped = ended("t2", 1, TaskState::Shutdown, 0, 10);
    assert!(
        reconcile_replicated(&svc, &[stopped], &nodes(), NOW)
            .actions
            .is_empty()
    );
}

#[test]
fn restart_delay_waits_and_reports_when_to_look_again() {
    let svc = service(Mode::Replicas(2), RestartCondition::Any, 5_000);
    let tasks = [
        ended("t1", 1, TaskState::Failed, 1, NOW - 1_000),
        ended("t2", 2, TaskState::Failed, 1, NOW - 3_000),
    ];
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW);
    assert!(r.actions.is_empty());
    assert_eq!(
        r.next_check_ms,
        Some(NOW + 2_000),
        "the earliest of the two"
    );
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 2_000);
    assert_eq!(r.actions, [shutdown("t2"), create(2)]);
    assert_eq!(r.next_check_ms, Some(NOW + 4_000));
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 4_000);
    assert_eq!(
        r.actions,
        [shutdown("t1"), create(1), shutdown("t2"), create(2)]
    );
    assert_eq!(r.next_check_ms, None);
}

#[test]
fn history_is_limited_to_five_per_slot() {
    let mut tasks: Vec<Task> = (0..6)
        .map(|i| {
            task(
                &format!("h{i}"),
                1,
                "a",
                TaskState::Failed,
                TaskState::Shutdown,
                i,
                i,
            )
        })
        .collect();
    tasks.push(ended("last", 1, TaskState::Failed, 1, 100));
    tasks
        .last_mut()
        .unwrap()
        .meta
        .as_mut()
        .unwrap()
        .created_at_ms = 100;
    tasks.push(running("other", 2, "b"));
    let r = reconcile_replicated(&replicated(2), &tasks, &nodes(), NOW);
    // 6 history + "last" being shut down = 7 → the two oldest go.
    assert_eq!(
        r.actions,
        [shutdown("last"), remove("h0"), remove("h1"), create(1)]
    );
    assert_eq!(HISTORY_LIMIT, 5);
}

#[test]
fn history_still_running_on_a_worker_is_not_removed() {
    let mut tasks: Vec<Task> = (0..6)
        .map(|i| {
            task(
                &format!("h{i}"),
                1,
                "a",
                TaskState::Failed,
                TaskState::Shutdown,
                i,
                i,
            )
        })
        .collect();
    tasks[0]
        .status
        .as_mut()
        .unwrap()
        .set_state(TaskState::Running);
    tasks.push(task(
        "cur",
        1,
        "a",
        TaskState::Running,
        TaskState::Running,
        50,
        50,
    ));
    let r = reconcile_replicated(&replicated(1), &tasks, &nodes(), NOW);
    assert!(r.actions.is_empty(), "{:?}", r.actions);
}

#[test]
fn tasks_of_a_down_drained_or_removed_node_are_replaced_at_once() {
    let svc = service(Mode::Replicas(4), RestartCondition::None, 60_000);
    let nodes = [
        ready("a"),
        node("down", NodeState::Down, NodeAvailability::Active),
        node("drained", NodeState::Ready, NodeAvailability::Drain),
        node("paused", NodeState::Ready, NodeAvailability::Pause),
        node("lost", NodeState::Disconnected, NodeAvailability::Active),
    ];
    let tasks = [
        running("t1", 1, "down"),
        running("t2", 2, "drained"),
        running("t3", 3, "removed"),
        running("t4", 4, "paused"),
        running("t5", 5, "lost"),
    ]
    .map(|t| made_from(&svc, t));
    let r = reconcile_replicated(&svc, &tasks, &nodes, NOW);
    assert_eq!(
        r.actions,
        [
            shutdown("t1"),
            create(1),
            shutdown("t2"),
            create(2),
            shutdown("t3"),
            create(3),
            shutdown("t5"), // slot 5 > replicas; paused and disconnected nodes keep tasks
        ]
    );
    // Next pass: the replacements exist; nothing more to do.
    let mut next: Vec<Task> = tasks.to_vec();
    for t in next.iter_mut().take(3) {
        t.set_desired_state(TaskState::Shutdown);
    }
    next.extend(
        [
            running("r1", 1, ""),
            running("r2", 2, ""),
            running("r3", 3, ""),
        ]
        .map(|t| made_from(&svc, t)),
    );
    next.retain(|t| t.id != "t5");
    assert!(
        reconcile_replicated(&svc, &next, &nodes, NOW)
            .actions
            .is_empty()
    );
}

#[test]
fn ended_task_of_a_stopping_slot_is_only_acknowledged() {
    let tasks = [
        running("t1", 1, "a"),
        ended("t2", 2, TaskState::Failed, 1, 10),
    ];
    let r = reconcile_replicated(&replicated(1), &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("t2")]);
}

#[test]
fn replicated_ignores_global_services_and_defaults_to_one_replica() {
    let global = service(Mode::Global(true), RestartCondition::Any, 0);
    assert!(
        reconcile_replicated(&global, &[running("t", 1, "a")], &nodes(), NOW)
            .actions
            .is_empty()
    );
    let mut no_mode = replicated(3);
    no_mode.spec.as_mut().unwrap().mode = None;
    assert_eq!(
        reconcile_replicated(&no_mode, &[], &nodes(), NOW).actions,
        [create(1)]
    );
}

fn global() -> Service {
    service(Mode::Global(true), RestartCondition::Any, 0)
}

#[test]
fn global_runs_one_task_per_fit_node() {
    let mut west = ready("w");
    west.spec
        .as_mut()
        .unwrap()
        .labels
        .insert("zone".to_owned(), "west".to_owned());
    let nodes = [
        ready("a"),
        ready("b"),
        node("down", NodeState::Down, NodeAvailability::Active),
        node("drained", NodeState::Ready, NodeAvailability::Drain),
        west,
    ];
    let r = reconcile_global(&global(), &[], &nodes, NOW);
    assert_eq!(r.actions, [create_on("a"), create_on("b")]);

    let on = |id: &str, node: &str| task(id, 0, node, TaskState::Running, TaskState::Running, 1, 1);
    let tasks = [
        on("ga", "a"),
        on("gb", "b"),
        on("gd", "drained"),
        on("gw", "w"),
        on("gdown", "down"),
    ];
    let r = reconcile_global(&global(), &tasks, &nodes, NOW);
    assert_eq!(
        r.actions,
        [shutdown("gdown"), shutdown("gd"), shutdown("gw")]
    );
}

#[test]
fn global_removed_node_tasks_are_stopped_then_deleted() {
    let nodes = [ready("a")];
    let tasks = [
        task("ga", 0, "a", TaskState::Running, TaskState::Running, 1, 1),
        task("gone", 0, "x", TaskState::Running, TaskState::Running, 1, 1),
        task(
            "gone-old",
            0,
            "x",
            TaskState::Failed,
            TaskState::Shutdown,
            0,
            0,
        ),
    ];
    let r = reconcile_global(&global(), &tasks, &nodes, NOW);
    assert_eq!(r.actions, [shutdown("gone"), remove("gone-old")]);
}

#[test]
fn global_restart_policy_and_delay_apply_per_node() {
    let svc = service(Mode::Global(true), RestartCondition::OnFailure, 1_000);
    let nodes = [ready("a"), ready("b")];
    let mut failed = ended("fa", 0, TaskState::Failed, 1, NOW - 200);
    failed.node_id = "a".to_owned();
    let mut done = ended("fb", 0, TaskState::Complete, 0, NOW - 5_000);
    done.node_id = "b".to_owned();
    let r = reconcile_global(&svc, &[failed.clone(), done.clone()], &nodes, NOW);
    assert_eq!(r.actions, [shutdown("fb")]);
    assert_eq!(r.next_check_ms, Some(NOW + 800));
    done.set_desired_state(TaskState::Shutdown);
    let r = reconcile_global(&svc, &[failed, done], &nodes, NOW + 800);
    assert_eq!(r.actions, [shutdown("fa"), create_on("a")]);
}

#[test]
fn restart_decision_is_exposed() {
    let mut policy = RestartPolicy {
        delay_ms: 100,
        ..RestartPolicy::default()
    };
    let t = ended("t", 1, TaskState::Failed, 1, 1_000);
    assert_eq!(
        restart_decision(Some(&policy), &t, 1_050),
        Restart::At(1_100)
    );
    assert_eq!(restart_decision(Some(&policy), &t, 1_100), Restart::Now);
    assert_eq!(
        restart_decision(None, &t, 1_000),
        Restart::Now,
        "default: any, no delay"
    );
    policy.set_condition(RestartCondition::None);
    assert_eq!(restart_decision(Some(&policy), &t, 5_000), Restart::Never);
    assert!(should_restart(RestartCondition::OnFailure, &t));
}

/// `svc` with a changed command (what `service update --env-add` or similar does).
fn changed(mut svc: Service) -> Service {
    let spec = svc.spec.as_mut().unwrap();
    spec.container.as_mut().unwrap().env.push("B=2".to_owned());
    svc
}

#[test]
fn a_changed_spec_replaces_tasks_one_at_a_time() {
    let old = replicated(3);
    let tasks: Vec<Task> = (1..=3).map(|s| running(&format!("t{s}"), s, "a")).collect();
    let svc = changed(old);
    // Default: one at a time, lowest slot first.
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("t1"), create(1)]);
    // While the replacement is not running, nothing else is replaced.
    let mut next = tasks.clone();
    next[0].set_desired_state(TaskState::Shutdown);
    let starting = made_from(
        &svc,
        task("n1", 1, "a", TaskState::Starting, TaskState::Running, 5, 5),
    );
    next.push(starting);
    assert!(
        reconcile_replicated(&svc, &next, &nodes(), NOW)
            .actions
            .is_empty()
    );
    // Once it runs, the next slot goes.
    next.last_mut().unwrap().status.as_mut().unwrap().state = TaskState::Running as i32;
    let r = reconcile_replicated(&svc, &next, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("t2"), create(2)]);
}

#[test]
fn update_parallelism_and_delay_pace_the_rollout() {
    let mut svc = changed(replicated(4));
    svc.spec.as_mut().unwrap().update = Some(mini_proto::v1::UpdateConfig {
        parallelism: 2,
        delay_ms: 10_000,
        ..docker_default()
    });
    let tasks: Vec<Task> = (1..=4).map(|s| running(&format!("t{s}"), s, "a")).collect();
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW);
    assert_eq!(
        r.actions,
        [shutdown("t1"), create(1), shutdown("t2"), create(2)]
    );
    // The two replacements run since NOW: the rest waits for the delay, and says when.
    let mut next = tasks.clone();
    for t in next.iter_mut().take(2) {
        t.set_desired_state(TaskState::Shutdown);
    }
    for s in 1..=2 {
        next.push(made_from(
            &svc,
            task(
                &format!("n{s}"),
                s,
                "a",
                TaskState::Running,
                TaskState::Running,
                NOW,
                NOW,
            ),
        ));
    }
    let r = reconcile_replicated(&svc, &next, &nodes(), NOW + 1_000);
    assert!(r.actions.is_empty(), "{:?}", r.actions);
    assert_eq!(r.next_check_ms, Some(NOW + 10_000));
    let r = reconcile_replicated(&svc, &next, &nodes(), NOW + 10_000);
    assert_eq!(
        r.actions,
        [shutdown("t3"), create(3), shutdown("t4"), create(4)]
    );
    // Parallelism 0: everything at once.
    svc.spec.as_mut().unwrap().update = Some(mini_proto::v1::UpdateConfig {
        parallelism: 0,
        delay_ms: 0,
        ..docker_default()
    });
    assert_eq!(
        reconcile_replicated(&svc, &tasks, &nodes(), NOW)
            .actions
            .len(),
        8
    );
}

#[test]
fn scaling_is_not_an_update_but_force_is() {
    let tasks: Vec<Task> = (1..=2).map(|s| running(&format!("t{s}"), s, "a")).collect();
    // More replicas: new slots only, running tasks untouched.
    let r = reconcile_replicated(&replicated(3), &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [create(3)]);
    // A forced update replaces tasks although nothing else changed.
    let mut forced = replicated(2);
    forced.spec.as_mut().unwrap().force_update = 1;
    let r = reconcile_replicated(&forced, &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("t1"), create(1)]);
}

#[test]
fn a_global_service_is_updated_node_by_node() {
    let svc = changed(global());
    let nodes = [ready("a"), ready("b")];
    let tasks = [running("ta", 0, "a"), running("tb", 0, "b")];
    let r = reconcile_global(&svc, &tasks, &nodes, NOW);
    assert_eq!(r.actions, [shutdown("ta"), create_on("a")]);
}

// ---- Rolling update policies: monitor, failure ratio and action, order, rollback ----

use mini_proto::v1::{UpdateConfig, UpdateFailureAction, UpdateOrder, UpdateState, UpdateStatus};

/// `replicated(n)` changed by an update (its previous spec kept), with `config`, and the
/// update in `state` since `started` (none: not started yet).
fn updated(n: u64, config: UpdateConfig, state: Option<(UpdateState, i64)>) -> Service {
    let old = replicated(n);
    let mut svc = changed(old.clone());
    svc.previous_spec = old.spec;
    svc.spec.as_mut().unwrap().update = Some(config);
    svc.update_status = state.map(|(state, started)| UpdateStatus {
        state: state as i32,
        started_at_ms: started,
        message: "update in progress".into(),
        ..UpdateStatus::default()
    });
    svc
}

/// A task of `slot` made from `svc`'s current spec, created at `created`, observed `state`
/// at `at`, first RUNNING at `ran` (0: never).
fn new_of(
    svc: &Service,
    id: &str,
    slot: u64,
    state: TaskState,
    created: i64,
    at: i64,
    ran: i64,
) -> Task {
    let mut t = made_from(
        svc,
        task(id, slot, "a", state, TaskState::Running, created, at),
    );
    t.running_since_ms = ran;
    t
}

fn old_running(n: u64) -> Vec<Task> {
    (1..=n).map(|s| running(&format!("t{s}"), s, "a")).collect()
}

fn status_of(r: &Reconciliation) -> Option<(UpdateState, String)> {
    r.service
        .as_ref()
        .and_then(|s| s.update_status.as_ref())
        .map(|u| (u.state(), u.message.clone()))
}

fn stopped(mut t: Task) -> Task {
    t.set_desired_state(TaskState::Shutdown);
    t
}

#[test]
fn an_update_starts_waits_for_running_tasks_and_completes_after_the_monitor_window() {
    let config = docker_default();
    let svc = updated(2, config, None);
    let r = reconcile_replicated(&svc, &old_running(2), &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("t1"), create(1)]);
    let u = r.service.unwrap().update_status.unwrap();
    assert_eq!(
        (u.state(), u.started_at_ms, u.message.as_str()),
        (UpdateState::Updating, NOW, "update in progress")
    );

    let svc = updated(2, config, Some((UpdateState::Updating, NOW)));
    let mut tasks = old_running(2);
    tasks[0] = stopped(tasks[0].clone());
    // Starting (a health check not passed yet): the next slot waits.
    let mut starting = new_of(&svc, "n1", 1, TaskState::Starting, NOW, NOW + 50, 0);
    starting.status.as_mut().unwrap().health = "starting".into();
    tasks.push(starting);
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 100);
    assert!(r.actions.is_empty() && r.service.is_none(), "{r:?}");
    // Running (healthy): the next slot goes.
    tasks[2] = new_of(&svc, "n1", 1, TaskState::Running, NOW, NOW + 200, NOW + 200);
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 300);
    assert_eq!(r.actions, [shutdown("t2"), create(2)]);
    assert!(r.service.is_none());

    tasks[1] = stopped(tasks[1].clone());
    tasks.push(new_of(
        &svc,
        "n2",
        2,
        TaskState::Running,
        NOW + 300,
        NOW + 1_000,
        NOW + 1_000,
    ));
    // Every slot runs the new spec: complete once the last one ran for the 5 s monitor.
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 2_000);
    assert!(r.actions.is_empty() && r.service.is_none(), "{r:?}");
    assert_eq!(r.next_check_ms, Some(NOW + 6_000));
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 6_000);
    let u = r.service.unwrap().update_status.unwrap();
    assert_eq!(
        (u.state(), u.message.as_str(), u.completed_at_ms),
        (UpdateState::Completed, "update completed", NOW + 6_000)
    );
}

#[test]
fn a_task_failing_within_the_monitor_window_pauses_the_update() {
    let svc = updated(2, docker_default(), Some((UpdateState::Updating, NOW)));
    let mut tasks = old_running(2);
    tasks[0] = stopped(tasks[0].clone());
    // Ran at NOW+500, failed its health check 4 s later: within the 5 s window.
    let mut failed = new_of(
        &svc,
        "n1",
        1,
        TaskState::Failed,
        NOW,
        NOW + 4_500,
        NOW + 500,
    );
    failed.status.as_mut().unwrap().health = "unhealthy".into();
    tasks.push(failed);
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 5_000);
    assert_eq!(
        status_of(&r),
        Some((
            UpdateState::Paused,
            "update paused due to failure or early termination of task n1".into()
        ))
    );
    assert!(
        !r.actions.contains(&shutdown("t2")),
        "the remaining old task is untouched: {:?}",
        r.actions
    );
    // Once paused, nothing more is replaced (the failed slot still follows its restart
    // policy).
    let mut paused = svc.clone();
    paused.update_status = r.service.unwrap().update_status;
    let r = reconcile_replicated(&paused, &tasks, &nodes(), NOW + 6_000);
    assert_eq!(r.actions, [shutdown("n1"), create(1)]);
    assert!(r.service.is_none());
}

#[test]
fn a_task_ending_after_the_monitor_window_is_not_a_failure_of_the_update() {
    let svc = updated(2, docker_default(), Some((UpdateState::Updating, NOW)));
    let mut tasks = old_running(2);
    tasks[0] = stopped(tasks[0].clone());
    // Ran at NOW+500, exited 6 s later: after the 5 s window; a task that never ran counts.
    tasks.push(new_of(
        &svc,
        "n1",
        1,
        TaskState::Failed,
        NOW,
        NOW + 6_500,
        NOW + 500,
    ));
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 7_000);
    assert!(status_of(&r).is_none(), "{r:?}");
    tasks[2] = new_of(&svc, "n1", 1, TaskState::Rejected, NOW, NOW + 6_500, 0);
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 7_000);
    assert_eq!(status_of(&r).map(|s| s.0), Some(UpdateState::Paused));
}

#[test]
fn failures_up_to_the_max_failure_ratio_are_tolerated() {
    let config = UpdateConfig {
        parallelism: 0,
        max_failure_ratio: 0.5,
        ..docker_default()
    };
    let svc = updated(4, config, Some((UpdateState::Updating, NOW)));
    let mut tasks: Vec<Task> = old_running(4).into_iter().map(stopped).collect();
    let fail = |id: &str, slot: u64, at: i64| {
        new_of(&svc, id, slot, TaskState::Failed, NOW, at, NOW + 100)
    };
    tasks.push(fail("n1", 1, NOW + 1_000));
    tasks.push(fail("n2", 2, NOW + 2_000));
    tasks.push(new_of(
        &svc,
        "n3",
        3,
        TaskState::Running,
        NOW,
        NOW + 100,
        NOW + 100,
    ));
    tasks.push(new_of(
        &svc,
        "n4",
        4,
        TaskState::Running,
        NOW,
        NOW + 100,
        NOW + 100,
    ));
    // 2 of 4 failed: 0.5 is not above the ratio.
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 2_500);
    assert!(status_of(&r).is_none(), "{r:?}");
    // The third failure takes it above: it is the one named.
    tasks[6] = fail("n3", 3, NOW + 3_000);
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 3_500);
    assert_eq!(
        status_of(&r),
        Some((
            UpdateState::Paused,
            "update paused due to failure or early termination of task n3".into()
        ))
    );
}

#[test]
fn failure_action_continue_keeps_rolling() {
    let config = UpdateConfig {
        parallelism: 2,
        failure_action: UpdateFailureAction::Continue as i32,
        ..docker_default()
    };
    let svc = updated(3, config, Some((UpdateState::Updating, NOW)));
    let mut tasks = old_running(3);
    tasks[0] = stopped(tasks[0].clone());
    tasks.push(new_of(&svc, "n1", 1, TaskState::Failed, NOW, NOW + 100, 0));
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 200);
    assert!(status_of(&r).is_none(), "{r:?}");
    // Slot 1 restarts (one of the two at a time), slot 2 is replaced.
    assert_eq!(
        r.actions,
        [shutdown("n1"), create(1), shutdown("t2"), create(2)]
    );
}

#[test]
fn failure_action_rollback_redeploys_the_previous_spec_with_the_rollback_config() {
    let config = UpdateConfig {
        failure_action: UpdateFailureAction::Rollback as i32,
        ..docker_default()
    };
    let mut svc = updated(2, config, Some((UpdateState::Updating, NOW)));
    // The rollback follows the rollback config of the spec it goes back to, as swarmkit.
    svc.previous_spec.as_mut().unwrap().rollback = Some(UpdateConfig {
        monitor_ms: 1_000,
        ..docker_default()
    });
    let old_spec = svc.previous_spec.clone();
    let mut tasks = old_running(2);
    tasks[0] = stopped(tasks[0].clone());
    tasks.push(new_of(&svc, "n1", 1, TaskState::Failed, NOW, NOW + 100, 0));
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 200);
    assert!(
        r.actions.is_empty(),
        "nothing of the spec being left is written: {:?}",
        r.actions
    );
    let back = r.service.clone().unwrap();
    let u = back.update_status.clone().unwrap();
    assert_eq!(
        (u.state(), u.message.as_str(), u.started_at_ms),
        (
            UpdateState::RollbackStarted,
            "update rolled back due to failure or early termination of task n1",
            NOW + 200
        )
    );
    assert_eq!(
        back.spec.as_ref().map(|s| &s.container),
        old_spec.as_ref().map(|s| &s.container)
    );
    assert_eq!(
        back.previous_spec, None,
        "as swarmkit: the failed spec is not kept"
    );

    // The rollback replaces the failed spec's task with one of the old spec.
    let r = reconcile_replicated(&back, &tasks, &nodes(), NOW + 300);
    assert_eq!(r.actions, [shutdown("n1"), create(1)]);
    // Done once every task runs the old spec for the rollback's monitor window (1 s).
    let mut tasks: Vec<Task> = vec![
        stopped(tasks[0].clone()),
        tasks[1].clone(),
        stopped(tasks[2].clone()),
        new_of(
            &back,
            "r1",
            1,
            TaskState::Running,
            NOW + 300,
            NOW + 400,
            NOW + 400,
        ),
    ];
    let r = reconcile_replicated(&back, &tasks, &nodes(), NOW + 1_000);
    assert_eq!(r.next_check_ms, Some(NOW + 1_400));
    let r = reconcile_replicated(&back, &tasks, &nodes(), NOW + 1_400);
    assert_eq!(
        status_of(&r),
        Some((UpdateState::RollbackCompleted, "rollback completed".into()))
    );
    // A rollback is never rolled back: a failure while rolling back pauses it.
    let mut rolling = back.clone();
    rolling.spec.as_mut().unwrap().rollback = Some(UpdateConfig {
        failure_action: UpdateFailureAction::Rollback as i32,
        ..docker_default()
    });
    tasks[3] = new_of(
        &rolling,
        "r1",
        1,
        TaskState::Failed,
        NOW + 300,
        NOW + 500,
        0,
    );
    let r = reconcile_replicated(&rolling, &tasks, &nodes(), NOW + 600);
    assert_eq!(
        status_of(&r),
        Some((
            UpdateState::RollbackPaused,
            "rollback paused due to failure or early termination of task r1".into()
        ))
    );
    assert!(r.service.unwrap().spec.is_some());
}

#[test]
fn start_first_starts_the_new_task_before_stopping_the_old_one() {
    let config = UpdateConfig {
        order: UpdateOrder::StartFirst as i32,
        ..docker_default()
    };
    let svc = updated(2, config, Some((UpdateState::Updating, NOW)));
    let mut tasks = old_running(2);
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [create(1)], "t1 keeps running");
    tasks.push(new_of(&svc, "n1", 1, TaskState::Starting, NOW, NOW + 10, 0));
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 20);
    assert!(
        r.actions.is_empty(),
        "both run while n1 starts: {:?}",
        r.actions
    );
    tasks[2] = new_of(&svc, "n1", 1, TaskState::Running, NOW, NOW + 30, NOW + 30);
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW + 40);
    assert_eq!(r.actions, [shutdown("t1"), create(2)]);
    // Stop-first (the default) stops the old task in the same step.
    let svc = updated(2, docker_default(), Some((UpdateState::Updating, NOW)));
    let r = reconcile_replicated(&svc, &old_running(2), &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("t1"), create(1)]);
}

#[test]
fn restart_max_attempts_counts_the_restarts_within_the_window() {
    let mut svc = service(Mode::Replicas(1), RestartCondition::Any, 0);
    let restart = svc.spec.as_mut().unwrap().restart.as_mut().unwrap();
    restart.max_attempts = 2;
    let earlier =
        |id: &str, at: i64| task(id, 1, "a", TaskState::Failed, TaskState::Shutdown, at, at);
    let tasks = [
        earlier("f1", NOW - 50_000),
        earlier("f2", NOW - 2_000),
        task(
            "f3",
            1,
            "a",
            TaskState::Failed,
            TaskState::Running,
            NOW - 1_000,
            NOW - 1_000,
        ),
    ]
    .map(|t| made_from(&svc, t));
    // Two restarts made already: f3 is not replaced.
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("f3")]);
    // In a 10 s window only f2's restart counts: one more is allowed.
    svc.spec
        .as_mut()
        .unwrap()
        .restart
        .as_mut()
        .unwrap()
        .window_ms = 10_000;
    let tasks = tasks.map(|t| made_from(&svc, t));
    let r = reconcile_replicated(&svc, &tasks, &nodes(), NOW);
    assert_eq!(r.actions, [shutdown("f3"), create(1)]);
}
