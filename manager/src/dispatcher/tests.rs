//! Unit tests of the dispatcher: assignment sets and their increments,
//! forward-only status updates, and session expiry.

use std::time::Duration;

use mini_proto::v1::{
    Meta, Network, NetworkAttachment, Node, NodeState, NodeStatus, StoreAction, StoreBatch, Task,
    TaskState, TaskStatus, TaskStatusUpdate, store_action::Action,
};

use super::*;
use crate::store::{LocalProposer, Proposer, Store, Tables};

fn node(id: &str, addr: &str, state: NodeState) -> Node {
    let mut status = NodeStatus {
        addr: addr.into(),
        ..Default::default()
    };
    status.set_state(state);
    Node {
        id: id.into(),
        status: Some(status),
        ..Default::default()
    }
}

/// A task on `node` in `state` (desired RUNNING), at `version`, attached to
/// `networks` with address 10.0.<n>.<last octet of its id's number>.
fn task(id: &str, node: &str, state: TaskState, version: u64, networks: &[&str]) -> Task {
    let mut t = Task {
        id: id.into(),
        meta: Some(Meta {
            version,
            ..Default::default()
        }),
        node_id: node.into(),
        status: Some(TaskStatus {
            state: state as i32,
            ..Default::default()
        }),
        networks: networks
            .iter()
            .map(|n| NetworkAttachment {
                network_id: (*n).into(),
                addr: format!("10.0.0.{}/24", id.len() + version as usize),
                mac: format!("02:42:{id}"),
                vip: String::new(),
            })
            .collect(),
        ..Default::default()
    };
    t.set_desired_state(TaskState::Running);
    t
}

fn tables(nodes: Vec<Node>, tasks: Vec<Task>, networks: &[&str]) -> Tables {
    Tables {
        nodes: nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
        tasks: tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
        networks: networks
            .iter()
            .map(|id| {
                (
                    (*id).to_string(),
                    Network {
                        id: (*id).into(),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

fn three_nodes() -> Vec<Node> {
    vec![
        node("a", "10.78.0.1", NodeState::Ready),
        node("b", "10.78.0.2", NodeState::Ready),
        node("c", "10.78.0.3", NodeState::Ready),
    ]
}

#[test]
fn first_message_is_complete_then_only_changes_and_removals() {
    let t1 = task("t1", "a", TaskState::Assigned, 5, &["net"]);
    let t2 = task("t2", "a", TaskState::Running, 6, &["net"]);
    let before = assignments_for(
        &tables(three_nodes(), vec![t1.clone(), t2.clone()], &["net"]),
        "a",
    );

    let first = before.since(None).expect("a first message");
    assert!(first.complete);
    assert_eq!(first.tasks.len(), 2);
    assert_eq!(first.networks.len(), 1);
    assert_eq!(before.since(Some(&before)), None, "nothing changed");

    // t1 moves on (new version), t2 is deleted, t3 arrives.
    let mut t1b = t1.clone();
    t1b.meta.as_mut().unwrap().version = 9;
    t1b.status.as_mut().unwrap().state = TaskState::Running as i32;
    let t3 = task("t3", "a", TaskState::Assigned, 10, &["net"]);
    let after = assignments_for(&tables(three_nodes(), vec![t1b, t3], &["net"]), "a");
    let inc = after.since(Some(&before)).expect("an increment");
    assert!(!inc.complete);
    let mut ids: Vec<&str> = inc.tasks.iter().map(|t| t.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["t1", "t3"]);
    assert_eq!(inc.removed_tasks, ["t2"]);
}

#[test]
fn the_set_holds_the_nodes_own_tasks_and_history_but_not_unassigned_ones() {
    let mut ended = task("ended", "a", TaskState::Failed, 3, &["old"]);
    ended.set_desired_state(TaskState::Shutdown);
    let all = vec![
        task("mine", "a", TaskState::Running, 1, &["net"]),
        ended,
        task("pending", "", TaskState::Pending, 2, &["net"]),
        task("new-on-a", "a", TaskState::New, 4, &["net"]),
        task("theirs", "b", TaskState::Running, 5, &["net"]),
    ];
    let set = assignments_for(&tables(three_nodes(), all, &["net", "old"]), "a");
    let ids: Vec<&str> = set.tasks.keys().map(String::as_str).collect();
    assert_eq!(ids, ["ended", "mine"]);
    // Only the networks of live tasks are programmed.
    let nets: Vec<&str> = set.networks.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(nets, ["net"]);
}

async fn write(proposer: &LocalProposer, action: Action, create: bool) {
    proposer
        .propose(StoreBatch {
            actions: vec![StoreAction {
                action: Some(action),
                create,
            }],
            proposed_at_ms: 1,
            ..Default::default()
        })
        .await
        .expect("test write");
}

fn update(task_id: &str, state: TaskState, message: &str) -> TaskStatusUpdate {
    TaskStatusUpdate {
        task_id: task_id.into(),
        status: Some(TaskStatus {
            state: state as i32,
            timestamp_ms: 2,
            message: message.into(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn status_updates_only_move_a_nodes_own_tasks_forward() {
    let store = Store::new();
    let proposer = LocalProposer::new(store.clone());
    write(
        &proposer,
        Action::PutNode(node("a", "10.78.0.1", NodeState::Ready)),
        true,
    )
    .await;
    write(
        &proposer,
        Action::PutTask(task("t1", "a", TaskState::Running, 0, &[])),
        true,
    )
    .await;
    let observed = |store: &Store| {
        store.view(|t| {
            let s = t.tasks["t1"].status.clone().unwrap();
            (s.state(), s.message)
        })
    };

    // Backwards: dropped.
    apply_status_updates(
        &store,
        &proposer,
        "a",
        &[update("t1", TaskState::Starting, "late")],
    )
    .await
    .unwrap();
    assert_eq!(observed(&store), (TaskState::Running, String::new()));
    // Another node's report about this task: dropped.
    apply_status_updates(
        &store,
        &proposer,
        "b",
        &[update("t1", TaskState::Failed, "not yours")],
    )
    .await
    .unwrap();
    assert_eq!(observed(&store).0, TaskState::Running);
    // An unknown task: ignored, not an error.
    apply_status_updates(
        &store,
        &proposer,
        "a",
        &[update("nope", TaskState::Failed, "?")],
    )
    .await
    .unwrap();
    // Forward, in one batch with a stale one: the forward one applies.
    apply_status_updates(
        &store,
        &proposer,
        "a",
        &[
            update("t1", TaskState::Failed, "exit 3"),
            update("t1", TaskState::Preparing, "stale"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(observed(&store), (TaskState::Failed, "exit 3".to_string()));
    // And it never goes back from there.
    apply_status_updates(
        &store,
        &proposer,
        "a",
        &[update("t1", TaskState::Running, "again")],
    )
    .await
    .unwrap();
    assert_eq!(observed(&store), (TaskState::Failed, "exit 3".to_string()));
}

#[test]
fn sessions_expire_after_missed_heartbeats() {
    let nodes = tables(
        vec![
            node("live", "10.78.0.1", NodeState::Ready),
            node("silent", "10.78.0.2", NodeState::Ready),
            node("never", "10.78.0.3", NodeState::Unknown),
            node("down", "10.78.0.4", NodeState::Down),
        ],
        Vec::new(),
        &[],
    );
    // A tiny period: 3 periods pass in a few milliseconds.
    let sessions = Sessions::new(Duration::from_millis(1));
    let live = sessions.open("live");
    let silent = sessions.open("silent");
    std::thread::sleep(Duration::from_millis(10));
    assert!(sessions.heartbeat("live", &live).is_some());
    assert!(sessions.heartbeat("live", "another session").is_none());
    assert!(sessions.is_current("silent", &silent));
    // One second later (the period grows to 100 ms with the nodes: 2 / MAX_HEARTBEAT_RATE).
    let later = std::time::Instant::now() + Duration::from_secs(1);
    let mut expired = sessions.expired_at(&nodes, later);
    // "live" heartbeated just now, but 3 ms pass fast on a loaded machine:
    // only the others are checked here (the long period below covers it).
    // The silent one is out; the one that never connected still has the
    // reconnect grace; a DOWN one is not reported again.
    expired.retain(|n| n != "live");
    assert_eq!(expired, ["silent"]);

    // With a long period, a fresh session and a new leader's grace hold.
    let patient = Sessions::new(Duration::from_secs(60));
    patient.open("live");
    assert_eq!(patient.expired(&nodes), Vec::<String>::new());
    // A closed session is no longer current; closing with an old id changes nothing.
    let id = patient.open("silent");
    patient.close("silent", "old id");
    assert!(patient.is_current("silent", &id));
    patient.close("silent", &id);
    assert!(!patient.is_current("silent", &id));
    assert!(
        patient.heartbeat("silent", &id).is_none(),
        "a closed session takes no heartbeat"
    );
    // Not down yet: its heartbeat window is not over (a daemon restarting).
    assert_eq!(patient.expired(&nodes), Vec::<String>::new());
    assert_eq!(patient.len(), 1);
}

#[test]
fn the_heartbeat_period_grows_with_the_nodes_and_is_jittered() {
    let base = Duration::from_millis(500);
    // A small cluster keeps the fast period (node down after 1.5 s).
    assert_eq!(scaled_period(base, 3), base);
    assert_eq!(scaled_period(base, 10), base);
    // Fifty nodes: at most MAX_HEARTBEAT_RATE heartbeats a second reach the leader.
    assert_eq!(scaled_period(base, 50), Duration::from_millis(2500));
    assert_eq!(scaled_period(base, 200), Duration::from_secs(10));

    let sessions = Sessions::new(base);
    let ids: Vec<(String, String)> = (0..50)
        .map(|i| {
            let node = format!("n{i}");
            let id = sessions.open(&node);
            (node, id)
        })
        .collect();
    assert_eq!(sessions.period(), Duration::from_millis(2500));
    let told: Vec<Duration> = ids
        .iter()
        .map(|(node, id)| sessions.heartbeat(node, id).unwrap())
        .collect();
    assert!(
        told.iter()
            .all(|p| *p >= Duration::from_millis(2250) && *p <= Duration::from_millis(2750)),
        "{told:?}"
    );
    assert!(
        told.iter().any(|p| *p != told[0]),
        "jitter spreads the heartbeats: {told:?}"
    );
    let rate: f64 = told.iter().map(|p| 1.0 / p.as_secs_f64()).sum();
    assert!(rate <= f64::from(MAX_HEARTBEAT_RATE) * 1.12, "{rate}/s");
}

#[test]
fn a_node_is_judged_by_the_period_it_was_told() {
    let base = Duration::from_millis(500);
    let nodes: Vec<Node> = (0..50)
        .map(|i| node(&format!("n{i}"), "10.78.0.1", NodeState::Ready))
        .collect();
    let t = tables(nodes, Vec::new(), &[]);
    let sessions = Sessions::new(base);
    let ids: Vec<(String, String)> = (0..50)
        .map(|i| (format!("n{i}"), sessions.open(&format!("n{i}"))))
        .collect();
    let start = std::time::Instant::now();
    for (node, id) in &ids {
        sessions.heartbeat(node, id).unwrap();
    }
    // 3 × 500 ms would be down in a 3-node cluster; at 50 nodes each was told 2.5 s ± 10 %.
    let mut now = start;
    let step = |now: &mut std::time::Instant| {
        *now += base / 2;
        sessions.expired_at(&t, *now)
    };
    while now < start + Duration::from_millis(6500) {
        assert_eq!(step(&mut now), Vec::<String>::new(), "at {:?}", now - start);
    }
    while now < start + Duration::from_millis(8500) {
        step(&mut now);
    }
    assert_eq!(step(&mut now).len(), 50);
}

#[test]
fn a_monitor_that_ran_late_does_not_blame_the_nodes() {
    let base = Duration::from_millis(500);
    let t = tables(
        vec![node("a", "10.78.0.1", NodeState::Ready)],
        Vec::new(),
        &[],
    );
    let sessions = Sessions::new(base);
    let start = std::time::Instant::now();
    sessions.open("a");
    assert!(sessions.expired_at(&t, start).is_empty());
    // The machine was saturated: the monitor did not run for 5 s, nor did the heartbeat
    // handlers. That is not the node's fault.
    let late = start + Duration::from_secs(5);
    assert!(sessions.expired_at(&t, late).is_empty());
    // From then on the usual deadline holds: 3 periods (plus jitter) without a heartbeat.
    let mut now = late;
    for _ in 0..4 {
        now += base / 2;
        assert!(sessions.expired_at(&t, now).is_empty(), "{:?}", now - late);
    }
    for _ in 0..3 {
        now += base / 2;
        sessions.expired_at(&t, now);
    }
    now += base / 2;
    assert_eq!(sessions.expired_at(&t, now), ["a"]);
}

#[test]
fn a_leader_that_misses_its_own_deadlines_waits_longer() {
    let base = Duration::from_millis(500);
    let t = tables(
        vec![node("a", "10.78.0.1", NodeState::Ready)],
        Vec::new(),
        &[],
    );
    let sessions = Sessions::new(base);
    let start = std::time::Instant::now();
    sessions.open("a");
    // Checks due every 250 ms come 200 ms late (not stalled: less than a period apart).
    let mut now = start;
    for _ in 0..8 {
        now += Duration::from_millis(450);
        assert!(sessions.expired_at(&t, now).is_empty(), "{:?}", now - start);
    }
    // 3.6 s without a heartbeat: down on a healthy leader (3 × 550 ms), not on this one.
    assert!(now - start > Duration::from_secs(3));
    // On time again: the score comes down and the silent node is down.
    let mut down = false;
    for _ in 0..12 {
        now += base / 2;
        down |= sessions.expired_at(&t, now) == ["a"];
    }
    assert!(down, "never down: {:?}", now - start);
}

#[test]
fn an_expired_session_takes_no_heartbeat() {
    let sessions = Sessions::new(Duration::from_millis(500));
    let id = sessions.open("slow");
    assert!(sessions.heartbeat("slow", &id).is_some());
    // Marked down (it was late): its next heartbeat makes it open a new session.
    sessions.expire("slow");
    assert!(sessions.heartbeat("slow", &id).is_none());
    assert!(!sessions.is_current("slow", &id));
    let again = sessions.open("slow");
    assert!(sessions.heartbeat("slow", &again).is_some());
}

#[test]
fn the_gossip_view_lists_members_but_not_nodes_that_left() {
    let mut left = node("gone", "10.0.0.4", NodeState::Down);
    if let Some(s) = left.status.as_mut() {
        s.message = LEFT_MESSAGE.into();
    }
    let mut me = node("me", "10.0.0.1", NodeState::Ready);
    me.gossip_addr = "10.0.0.1:7946".into();
    let mut peer = node("peer", "10.0.0.2", NodeState::Ready);
    peer.gossip_addr = "10.0.0.2:7946".into();
    let mut down = node("down", "10.0.0.3", NodeState::Down);
    down.gossip_addr = "10.0.0.3:7946".into();
    let mut t = tables(vec![me, peer, down, left], vec![], &[]);
    t.cluster = Some(mini_proto::v1::Cluster {
        gossip_keys: Some(crate::controllers::gossip_keys::new_key_ring(1)),
        ..Default::default()
    });
    let view = gossip_view(&t, "me");
    assert_eq!(
        view.peers,
        vec!["10.0.0.2:7946".to_string()],
        "ready others only"
    );
    assert_eq!(
        view.members,
        vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        "a crashed node stays a member (it may come back); one that left does not"
    );
    assert_eq!(view.keys.map(|k| k.keys.len()), Some(1));
    // A removed node is no longer in the store, hence no member.
    t.nodes.remove("down");
    assert_eq!(gossip_view(&t, "me").members, vec!["10.0.0.1", "10.0.0.2"]);
}

fn secret(id: &str, value: &str) -> mini_proto::v1::Secret {
    mini_proto::v1::Secret {
        id: id.into(),
        meta: None,
        spec: Some(mini_proto::v1::SecretSpec {
            name: format!("name-{id}"),
            data: value.as_bytes().to_vec(),
            ..Default::default()
        }),
    }
}

fn using_secret(mut t: Task, secret_id: &str) -> Task {
    t.container = Some(mini_proto::v1::ContainerSpec {
        secrets: vec![mini_proto::v1::SecretReference {
            secret_id: secret_id.into(),
            ..Default::default()
        }],
        configs: vec![mini_proto::v1::ConfigReference {
            config_id: "cfg".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    t
}

#[test]
fn secrets_go_only_to_nodes_with_a_live_task_using_them() {
    let mut ended = using_secret(task("ended", "c", TaskState::Failed, 3, &[]), "s2");
    ended.set_desired_state(TaskState::Shutdown);
    let mut t = tables(
        three_nodes(),
        vec![
            using_secret(task("web1", "a", TaskState::Running, 1, &[]), "s1"),
            task("plain", "b", TaskState::Running, 2, &[]),
            ended,
        ],
        &[],
    );
    for s in [secret("s1", "hunter2"), secret("s2", "other")] {
        t.secrets.insert(s.id.clone(), s);
    }
    t.configs.insert(
        "cfg".into(),
        mini_proto::v1::Config {
            id: "cfg".into(),
            ..Default::default()
        },
    );
    let a = assignments_for(&t, "a");
    let ids: Vec<&str> = a.secrets.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s1"], "only the secret its running task uses");
    assert_eq!(a.secrets[0].spec.as_ref().unwrap().data, b"hunter2");
    assert_eq!(a.configs.len(), 1);
    let first = a.since(None).unwrap();
    assert_eq!(first.secrets.len(), 1);
    // b runs a task without secrets; c's only user of s2 has ended: nothing.
    for node in ["b", "c"] {
        let set = assignments_for(&t, node);
        assert!(set.secrets.is_empty() && set.configs.is_empty(), "{node}");
        assert!(set.since(None).unwrap().secrets.is_empty(), "{node}");
    }
    // When a's task ends, the next message drops the secret.
    let mut done = t.clone();
    let mut web1 = done.tasks["web1"].clone();
    web1.status.as_mut().unwrap().state = TaskState::Shutdown as i32;
    web1.meta.as_mut().unwrap().version = 7;
    done.tasks.insert(web1.id.clone(), web1);
    let after = assignments_for(&done, "a");
    let inc = after.since(Some(&a)).expect("an increment");
    assert!(inc.secrets.is_empty() && inc.configs.is_empty());
}

#[tokio::test]
async fn the_first_running_report_opens_the_monitor_window() {
    let store = Store::new();
    let proposer = LocalProposer::new(store.clone());
    write(
        &proposer,
        Action::PutNode(node("a", "10.78.0.1", NodeState::Ready)),
        true,
    )
    .await;
    write(
        &proposer,
        Action::PutTask(task("t1", "a", TaskState::Starting, 0, &[])),
        true,
    )
    .await;
    let since = |store: &Store| store.view(|t| t.tasks["t1"].running_since_ms);
    assert_eq!(since(&store), 0);
    let at = |state: TaskState, ms: i64| {
        let mut u = update("t1", state, "");
        u.status.as_mut().unwrap().timestamp_ms = ms;
        u
    };
    apply_status_updates(&store, &proposer, "a", &[at(TaskState::Running, 500)])
        .await
        .unwrap();
    assert_eq!(
        since(&store),
        500,
        "the worker's time of the RUNNING report"
    );
    // A later report while running (health) and the end keep the start.
    let mut healthy = at(TaskState::Running, 900);
    healthy.status.as_mut().unwrap().health = "healthy".into();
    apply_status_updates(&store, &proposer, "a", &[healthy])
        .await
        .unwrap();
    apply_status_updates(&store, &proposer, "a", &[at(TaskState::Failed, 1_500)])
        .await
        .unwrap();
    assert_eq!(since(&store), 500);
}

/// 50 nodes, 2,000 tasks (40 each, running, one network): the set of one node, as every
/// session computes it on each store change. Run with `--ignored --nocapture` (and
/// `--release`) to see the time per call.
#[test]
#[ignore = "timing, not a check: run by hand"]
fn assignments_for_one_node_of_fifty_with_two_thousand_tasks() {
    let nodes: Vec<Node> = (0..50)
        .map(|n| node(&format!("n{n:02}"), "10.78.0.1", NodeState::Ready))
        .collect();
    let tasks: Vec<Task> = (0..2_000)
        .map(|i| {
            task(
                &format!("t{i:04}"),
                &format!("n{:02}", i % 50),
                TaskState::Running,
                i,
                &["net"],
            )
        })
        .collect();
    let t = tables(nodes, tasks, &["net"]);
    let rounds = 2_000;
    let started = std::time::Instant::now();
    let mut seen = 0;
    for r in 0..rounds {
        seen += assignments_for(&t, &format!("n{:02}", r % 50)).tasks.len();
    }
    let per_call = started.elapsed() / rounds;
    assert_eq!(seen, 40 * rounds as usize);
    println!("assignments_for: {per_call:?} per call (2,000 tasks on 50 nodes)");
}

#[test]
fn a_session_wakes_for_its_own_tasks_and_shared_objects_only() {
    use crate::store::{Change, ObjectKind, StoreEvent};
    let t = tables(
        three_nodes(),
        vec![
            task("mine", "a", TaskState::Running, 1, &["net"]),
            task("theirs", "b", TaskState::Running, 2, &["net"]),
            task("moving", "b", TaskState::Assigned, 3, &["net"]),
        ],
        &["net"],
    );
    let sent = assignments_for(&t, "a");
    let event = |kind, id: &str, removed| StoreEvent {
        index: 7,
        changes: vec![Change {
            kind,
            id: id.into(),
            removed,
        }],
        restored: false,
    };
    let wakes = |e: &StoreEvent, t: &Tables| concerns_node(e, "a", Some(&sent), t);
    // Another node's task, and objects written with the tasks that use them: no.
    for (kind, id) in [
        (ObjectKind::Task, "theirs"),
        (ObjectKind::Task, "moving"),
        (ObjectKind::Service, "s"),
        (ObjectKind::Secret, "x"),
        (ObjectKind::Config, "y"),
    ] {
        assert!(!wakes(&event(kind, id, false), &t), "{kind:?} {id}");
    }
    // Its own task, and what every node's messages depend on: yes.
    for (kind, id) in [
        (ObjectKind::Task, "mine"),
        (ObjectKind::Node, "c"),
        (ObjectKind::Network, "net"),
        (ObjectKind::Cluster, "default"),
    ] {
        assert!(wakes(&event(kind, id, false), &t), "{kind:?} {id}");
    }
    // A task that moved to the node (not in the set sent yet), one it had that was removed.
    let mut moved = t.clone();
    moved.tasks.insert(
        "moving".into(),
        task("moving", "a", TaskState::Assigned, 4, &["net"]),
    );
    assert!(wakes(&event(ObjectKind::Task, "moving", false), &moved));
    let mut gone = t.clone();
    gone.tasks.remove("mine");
    assert!(wakes(&event(ObjectKind::Task, "mine", true), &gone));
    gone.tasks.remove("theirs");
    assert!(!wakes(&event(ObjectKind::Task, "theirs", true), &gone));
    // A restored store, and any task before the first set went out.
    let restored = StoreEvent {
        index: 8,
        changes: Vec::new(),
        restored: true,
    };
    assert!(wakes(&restored, &t));
    assert!(concerns_node(
        &event(ObjectKind::Task, "theirs", false),
        "a",
        None,
        &t
    ));
}
