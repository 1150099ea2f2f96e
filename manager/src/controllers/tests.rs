//! The controllers together, in process: a [`Store`], a [`LocalProposer`]
//! and [`Controllers::start`], with nodes written straight into the store and
//! task status reported the way the dispatcher does. No Raft, no sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mini_proto::v1::{
    ContainerSpec, Network, NetworkSpec, Node, NodeAvailability, NodeRole, NodeSpec, NodeState,
    NodeStatus, RestartCondition, RestartPolicy, Service, ServiceSpec, StoreAction, StoreBatch,
    Task, TaskState, TaskStatus, TaskStatusUpdate, service_spec::Mode, store_action::Action,
};

mod jobs;
mod placement;

use super::Controllers;
use crate::dispatcher::apply_status_updates;
use crate::ids::now_ms;
use crate::store::{LocalProposer, Proposer, Store, Tables};

/// Long enough for a loaded CI machine; a healthy run needs milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);

/// A store with three READY, ACTIVE nodes n1..n3 and an overlay network
/// `net` (10.0.9.0/24), with the controllers running on it.
struct Harness {
    store: Store,
    proposer: Arc<LocalProposer>,
    controllers: Controllers,
}

impl Harness {
    async fn start() -> Harness {
        let store = Store::new();
        let proposer = Arc::new(LocalProposer::new(store.clone()));
        let mut actions: Vec<StoreAction> =
            (1..=3).map(|i| create(Action::PutNode(node(i)))).collect();
        actions.push(create(Action::PutNetwork(Network {
            id: "net".into(),
            spec: Some(NetworkSpec {
                name: "net".into(),
                driver: "overlay".into(),
                ..Default::default()
            }),
            subnet: "10.0.9.0/24".into(),
            gateway: "10.0.9.1".into(),
            vni: 4097,
            ..Default::default()
        })));
        write(&proposer, actions).await;
        let controllers = Controllers::start(store.clone(), Arc::clone(&proposer));
        Harness {
            store,
            proposer,
            controllers,
        }
    }

    async fn create_service(&self, name: &str, replicas: u64, edit: impl FnOnce(&mut ServiceSpec)) {
        let mut spec = ServiceSpec {
            name: name.into(),
            container: Some(ContainerSpec {
                image: "host".into(),
                args: vec!["sleep".into(), "1000".into()],
                env: Vec::new(),
                ..Default::default()
            }),
            mode: Some(Mode::Replicas(replicas)),
            networks: vec!["net".into()],
            ..Default::default()
        };
        edit(&mut spec);
        let service = Service {
            id: format!("svc-{name}"),
            spec: Some(spec),
            ..Default::default()
        };
        write(&self.proposer, vec![create(Action::PutService(service))]).await;
    }

    /// Rewrites node `id` (read, edit, write back at its version).
    async fn edit_node(&self, id: &str, edit: impl FnOnce(&mut Node)) {
        let mut node = self.store.view(|t| t.nodes[id].clone());
        edit(&mut node);
        write(&self.proposer, vec![update(Action::PutNode(node))]).await;
    }

    /// Reports `state` for `task` as its node's worker would.
    async fn report(&self, task: &Task, state: TaskState, exit_code: i32) {
        let update = TaskStatusUpdate {
            task_id: task.id.clone(),
            status: Some(TaskStatus {
                state: state as i32,
                timestamp_ms: now_ms(),
                message: "reported by the test".into(),
                err: String::new(),
                exit_code,
                ..Default::default()
            }),
        };
        apply_status_updates(&self.store, &self.proposer, &task.node_id, &[update])
            .await
            .expect("status update");
    }

    /// Polls the store until `probe` says yes; panics with what it last saw.
    async fn wait<T>(&self, what: &str, probe: impl Fn(&Tables) -> Result<T, String>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.store.view(&probe) {
                Ok(value) => return value,
                Err(seen) if Instant::now() >= deadline => {
                    panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {seen}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Waits until service `name` has `n` tasks meant to run, all ASSIGNED
    /// (or further) to nodes other than `not_on`; returns them.
    async fn wait_assigned(&self, name: &str, n: usize, not_on: &[&str]) -> Vec<Task> {
        self.wait(
            &format!("{n} assigned tasks of {name} off {not_on:?}"),
            |t| {
                let live = live_tasks(t, name);
                let ok = live.len() == n
                    && live.iter().all(|t| {
                        state(t) >= TaskState::Assigned && !not_on.contains(&t.node_id.as_str())
                    });
                if ok { Ok(live) } else { Err(describe(t, name)) }
            },
        )
        .await
    }
}

fn node(i: usize) -> Node {
    let mut spec = NodeSpec::default();
    spec.set_availability(NodeAvailability::Active);
    let mut status = NodeStatus {
        addr: format!("10.78.0.{i}"),
        ..Default::default()
    };
    status.set_state(NodeState::Ready);
    let mut node = Node {
        id: format!("n{i}"),
        hostname: format!("h{i}"),
        spec: Some(spec),
        status: Some(status),
        ..Default::default()
    };
    node.set_role(NodeRole::Worker);
    node
}

fn create(action: Action) -> StoreAction {
    StoreAction {
        action: Some(action),
        create: true,
    }
}

fn update(action: Action) -> StoreAction {
    StoreAction {
        action: Some(action),
        create: false,
    }
}

async fn write(proposer: &LocalProposer, actions: Vec<StoreAction>) {
    proposer
        .propose(StoreBatch {
            actions,
            proposed_at_ms: now_ms(),
            ..Default::default()
        })
        .await
        .expect("test write");
}

fn state(t: &Task) -> TaskState {
    t.status.as_ref().map_or(TaskState::New, |s| s.state())
}

fn tasks_of(tables: &Tables, service: &str) -> Vec<Task> {
    let id = format!("svc-{service}");
    tables.tasks_of_service(&id).cloned().collect()
}

/// Tasks of `service` meant to run.
fn live_tasks(tables: &Tables, service: &str) -> Vec<Task> {
    tasks_of(tables, service)
        .into_iter()
        .filter(|t| t.desired_state() <= TaskState::Running)
        .collect()
}

/// One line per task of `service`: id, slot, node, observed/desired, message.
fn describe(tables: &Tables, service: &str) -> String {
    tasks_of(tables, service)
        .iter()
        .map(|t| {
            format!(
                "{}.{}@{} {:?}/{:?} {:?}",
                t.id,
                t.slot,
                t.node_id,
                state(t),
                t.desired_state(),
                t.status
                    .as_ref()
                    .map(|s| s.message.as_str())
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn per_node(tasks: &[Task]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.node_id.clone()).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn tasks_get_addresses_spread_and_reach_assigned() {
    let h = Harness::start().await;
    h.create_service("web", 6, |_| {}).await;
    let tasks = h.wait_assigned("web", 6, &[]).await;
    assert_eq!(per_node(&tasks), counts(&[("n1", 2), ("n2", 2), ("n3", 2)]));
    let mut addrs: Vec<&str> = tasks.iter().map(|t| t.networks[0].addr.as_str()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 6, "addresses must be distinct: {addrs:?}");
    for t in &tasks {
        let a = &t.networks[0];
        assert_eq!(a.network_id, "net");
        assert!(
            a.addr.starts_with("10.0.9.") && a.addr.ends_with("/24"),
            "{a:?}"
        );
        assert!(a.addr != "10.0.9.1/24", "the gateway is not a task address");
        assert!(a.mac.starts_with("02:42:0a:00:09:"), "{a:?}");
        assert_eq!(state(t), TaskState::Assigned);
    }
    let slots: std::collections::BTreeSet<u64> = tasks.iter().map(|t| t.slot).collect();
    assert_eq!(slots, (1..=6).collect());
    h.controllers.stop().await;
}

#[tokio::test]
async fn a_down_node_gets_its_tasks_replaced_elsewhere() {
    let h = Harness::start().await;
    h.create_service("web", 3, |_| {}).await;
    let before = h.wait_assigned("web", 3, &[]).await;
    let lost = before
        .iter()
        .find(|t| t.node_id == "n2")
        .expect("a task on n2")
        .clone();
    h.edit_node("n2", |n| {
        n.status.get_or_insert_default().set_state(NodeState::Down)
    })
    .await;
    let after = h.wait_assigned("web", 3, &["n2"]).await;
    let spread = per_node(&after);
    assert_eq!(spread.values().max(), Some(&2), "{spread:?}");
    let replacement = after
        .iter()
        .find(|t| t.slot == lost.slot)
        .expect("slot kept");
    assert_ne!(
        replacement.id, lost.id,
        "a bound task is replaced, never moved"
    );
    let old = h.store.view(|t| t.tasks[&lost.id].clone());
    assert_eq!(old.desired_state(), TaskState::Shutdown, "kept as history");
    assert_eq!(old.node_id, "n2");
    h.controllers.stop().await;
}

#[tokio::test]
async fn drain_moves_tasks_and_active_takes_new_ones() {
    let h = Harness::start().await;
    h.create_service("web", 6, |_| {}).await;
    h.wait_assigned("web", 6, &[]).await;
    h.edit_node("n3", |n| {
        n.spec
            .get_or_insert_default()
            .set_availability(NodeAvailability::Drain)
    })
    .await;
    let after = h.wait_assigned("web", 6, &["n3"]).await;
    assert_eq!(per_node(&after), counts(&[("n1", 3), ("n2", 3)]));
    // Back to active: existing tasks stay put (no rebalancing), new ones go there.
    h.edit_node("n3", |n| {
        n.spec
            .get_or_insert_default()
            .set_availability(NodeAvailability::Active)
    })
    .await;
    h.create_service("api", 3, |_| {}).await;
    let api = h.wait_assigned("api", 3, &[]).await;
    assert_eq!(per_node(&api), counts(&[("n1", 1), ("n2", 1), ("n3", 1)]));
    h.controllers.stop().await;
}

/// Reports the first task of `service` FAILED/COMPLETE with `exit_code` and
/// returns it with what became of it: its replacement, if any.
async fn end_task(
    h: &Harness,
    service: &str,
    state: TaskState,
    exit_code: i32,
) -> (Task, Option<Task>) {
    let tasks = h.wait_assigned(service, 1, &[]).await;
    let first = tasks[0].clone();
    h.report(&first, TaskState::Running, 0).await;
    h.report(&first, state, exit_code).await;
    // The orchestrator acknowledges an ended task by setting its desired
    // state to SHUTDOWN, in the same write as any replacement.
    let replacement = h
        .wait(&format!("{service}'s ended task to be acknowledged"), |t| {
            let old = &t.tasks[&first.id];
            if old.desired_state() < TaskState::Shutdown {
                return Err(describe(t, service));
            }
            Ok(live_tasks(t, service)
                .into_iter()
                .find(|t| t.id != first.id))
        })
        .await;
    (first, replacement)
}

fn policy(condition: RestartCondition, delay_ms: u64) -> impl FnOnce(&mut ServiceSpec) {
    move |spec| {
        let mut restart = RestartPolicy {
            delay_ms,
            ..Default::default()
        };
        restart.set_condition(condition);
        spec.restart = Some(restart);
    }
}

#[tokio::test]
async fn ended_tasks_are_replaced_per_restart_policy() {
    let h = Harness::start().await;
    h.create_service("any", 1, policy(RestartCondition::Any, 0))
        .await;
    h.create_service("onfail", 1, policy(RestartCondition::OnFailure, 0))
        .await;
    h.create_service("onfail-ok", 1, policy(RestartCondition::OnFailure, 0))
        .await;
    h.create_service("none", 1, policy(RestartCondition::None, 0))
        .await;

    let (_, new) = end_task(&h, "any", TaskState::Complete, 0).await;
    assert!(new.is_some(), "any: a completed task is restarted");
    let (_, new) = end_task(&h, "onfail", TaskState::Failed, 2).await;
    assert!(new.is_some(), "on-failure: a failed task is restarted");
    let (_, new) = end_task(&h, "onfail-ok", TaskState::Complete, 0).await;
    assert!(new.is_none(), "on-failure: a clean exit is not restarted");
    let (old, new) = end_task(&h, "none", TaskState::Failed, 3).await;
    assert!(new.is_none(), "none: never restarted");
    let old = h.store.view(|t| t.tasks[&old.id].clone());
    assert_eq!(state(&old), TaskState::Failed);
    assert_eq!(old.status.map(|s| s.exit_code), Some(3));

    // The replacement of a restarted task also reaches ASSIGNED.
    h.wait_assigned("any", 1, &[]).await;
    h.wait_assigned("onfail", 1, &[]).await;
    h.controllers.stop().await;
}

#[tokio::test]
async fn a_restart_delay_holds_the_replacement_back() {
    const DELAY_MS: u64 = 300;
    let h = Harness::start().await;
    h.create_service("slow", 1, policy(RestartCondition::Any, DELAY_MS))
        .await;
    let first = h.wait_assigned("slow", 1, &[]).await.remove(0);
    h.report(&first, TaskState::Failed, 1).await;
    let ended_at = h
        .store
        .view(|t| t.tasks[&first.id].status.as_ref().unwrap().timestamp_ms);
    let replacement = h
        .wait("the delayed replacement", |t| {
            live_tasks(t, "slow")
                .into_iter()
                .find(|t| t.id != first.id && state(t) >= TaskState::Assigned)
                .ok_or_else(|| describe(t, "slow"))
        })
        .await;
    let created = replacement.meta.map_or(0, |m| m.created_at_ms);
    assert!(
        created >= ended_at + DELAY_MS as i64,
        "replacement created {} ms after the failure, before the {DELAY_MS} ms delay",
        created - ended_at
    );
    h.controllers.stop().await;
}

#[tokio::test]
async fn an_unsatisfiable_constraint_leaves_the_task_pending_with_the_reason() {
    let h = Harness::start().await;
    h.create_service("mars", 1, |s| {
        s.constraints = vec!["node.labels.zone==mars".into()];
    })
    .await;
    let reason = h
        .wait("mars.1 pending with a reason", |t| {
            let tasks = tasks_of(t, "mars");
            match tasks.as_slice() {
                [task] if state(task) == TaskState::Pending => {
                    let message = task
                        .status
                        .as_ref()
                        .map(|s| s.message.clone())
                        .unwrap_or_default();
                    if message.contains("no suitable node") {
                        Ok(message)
                    } else {
                        Err(describe(t, "mars"))
                    }
                }
                _ => Err(describe(t, "mars")),
            }
        })
        .await;
    assert!(
        reason.contains("constraint"),
        "the reason names the constraint filter: {reason}"
    );
    // A node that gets the label takes it.
    h.edit_node("n2", |n| {
        n.spec
            .get_or_insert_default()
            .labels
            .insert("zone".into(), "mars".into());
    })
    .await;
    let placed = h.wait_assigned("mars", 1, &[]).await;
    assert_eq!(placed[0].node_id, "n2");
    h.controllers.stop().await;
}
