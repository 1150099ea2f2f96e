//! Unit tests of the scheduler.

use std::collections::HashMap;

use mini_proto::v1::{
    ContainerSpec, Node, NodeAvailability, NodeRole, NodeSpec, NodeState, NodeStatus, Resources,
    Task, TaskState, TaskStatus,
};

use super::*;

/// Nothing reserved.
const NONE: Resources = Resources {
    nano_cpus: 0,
    memory_bytes: 0,
    pids: 0,
};

const GIB: i64 = 1 << 30;
const CPU: i64 = 1_000_000_000;

/// A ready node offering `cpus` CPUs and `gib` GiB of memory.
fn sized(id: &str, cpus: i64, gib: i64) -> Node {
    let mut n = ready(id);
    n.resources = Some(Resources {
        nano_cpus: cpus * CPU,
        memory_bytes: gib * GIB,
        pids: 0,
    });
    n
}

/// `task` reserving `nano_cpus` and `memory_bytes`.
fn reserving(mut task: Task, nano_cpus: i64, memory_bytes: i64) -> Task {
    task.container = Some(ContainerSpec {
        reservations: Some(Resources {
            nano_cpus,
            memory_bytes,
            pids: 0,
        }),
        ..ContainerSpec::default()
    });
    task
}

fn node(
    id: &str,
    state: NodeState,
    availability: NodeAvailability,
    labels: &[(&str, &str)],
) -> Node {
    let mut spec = NodeSpec {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..NodeSpec::default()
    };
    spec.set_availability(availability);
    let mut status = NodeStatus::default();
    status.set_state(state);
    Node {
        id: id.to_owned(),
        hostname: format!("host-{id}"),
        spec: Some(spec),
        status: Some(status),
        ..Node::default()
    }
}

fn ready(id: &str) -> Node {
    node(id, NodeState::Ready, NodeAvailability::Active, &[])
}

fn pending(id: &str, service: &str, constraints: &[&str]) -> Task {
    let mut t = Task {
        id: id.to_owned(),
        service_id: service.to_owned(),
        constraints: constraints.iter().map(|c| (*c).to_owned()).collect(),
        status: Some(TaskStatus {
            state: TaskState::Pending as i32,
            ..TaskStatus::default()
        }),
        ..Task::default()
    };
    t.set_desired_state(TaskState::Running);
    t
}

fn running(id: &str, service: &str, node: &str) -> Task {
    let mut t = pending(id, service, &[]);
    t.node_id = node.to_owned();
    t.status.as_mut().unwrap().set_state(TaskState::Running);
    t
}

fn per_node(decisions: &[Decision]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for d in decisions {
        match d {
            Decision::Assigned { node_id, .. } => *counts.entry(node_id.clone()).or_default() += 1,
            Decision::Unplaceable { reason, .. } => panic!("unplaceable: {reason}"),
        }
    }
    counts
}

fn reason(decision: &Decision) -> &str {
    match decision {
        Decision::Unplaceable { reason, .. } => reason,
        Decision::Assigned { node_id, .. } => panic!("assigned to {node_id}"),
    }
}

#[test]
fn constraints_parse() {
    let c = parse_constraint("node.labels.zone==east").unwrap();
    assert_eq!(c.key, ConstraintKey::Label("zone".to_owned()));
    assert_eq!(c.op, Operator::Eq);
    assert_eq!(c.value, "east");
    assert_eq!(c.to_string(), "node.labels.zone==east");
    let c = parse_constraint(" node.hostname != web-1 ").unwrap();
    assert_eq!(
        (c.key, c.op, c.value.as_str()),
        (ConstraintKey::Hostname, Operator::Ne, "web-1")
    );
    assert_eq!(
        parse_constraint("Node.ID==abc").unwrap().key,
        ConstraintKey::NodeId
    );
    assert_eq!(
        parse_constraint("node.role==Manager").unwrap().key,
        ConstraintKey::Role
    );
    assert_eq!(
        parse_constraint("node.labels.Disk==ssd").unwrap().key,
        ConstraintKey::Label("Disk".to_owned())
    );
    // The first operator splits; the value may contain another.
    assert_eq!(
        parse_constraint("node.labels.eq!=a==b").unwrap().value,
        "a==b"
    );
}

#[test]
fn bad_constraints_say_what_is_right() {
    let e = |s: &str| parse_constraint(s).unwrap_err().to_string();
    assert_eq!(
        e("node.zone==east"),
        "invalid constraint \"node.zone==east\": unknown key \"node.zone\"; use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>"
    );
    assert_eq!(
        e("node.labels.==x"),
        "invalid constraint \"node.labels.==x\": unknown key \"node.labels.\"; use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>"
    );
    assert_eq!(
        e("node.id=abc"),
        "invalid constraint \"node.id=abc\": unknown operator \"=\"; use == or !="
    );
    assert_eq!(
        e("node.labels.size>=3"),
        "invalid constraint \"node.labels.size>=3\": unknown operator \">=\"; use == or !="
    );
    assert_eq!(
        e("node.id"),
        "invalid constraint \"node.id\": no operator; use KEY==VALUE or KEY!=VALUE, e.g. node.labels.zone==east"
    );
    assert_eq!(
        e("node.id=="),
        "invalid constraint \"node.id==\": the value is empty"
    );
    assert_eq!(
        e("node.role==boss"),
        "invalid constraint \"node.role==boss\": node.role is manager or worker, not \"boss\""
    );
    assert!(parse_constraints(&["node.id==a", "bad"]).is_err());
}

#[test]
fn constraints_match_nodes() {
    let mut n = node(
        "n1",
        NodeState::Ready,
        NodeAvailability::Active,
        &[("zone", "east")],
    );
    n.set_role(NodeRole::Manager);
    let m = |s: &str| parse_constraint(s).unwrap().matches(&n);
    assert!(m("node.id==n1") && !m("node.id!=n1"));
    assert!(
        m("node.hostname==HOST-N1"),
        "values compare ignoring case, as in Swarm"
    );
    assert!(m("node.role==manager") && !m("node.role==worker") && m("node.role!=worker"));
    assert!(
        m("node.labels.zone==east") && !m("node.labels.zone!=east") && m("node.labels.zone!=west")
    );
    assert!(!m("node.labels.disk==ssd"), "a missing label fails ==");
    assert!(m("node.labels.disk!=ssd"), "a missing label passes !=");
    assert!(
        !m("node.labels.Zone==east"),
        "label names are case-sensitive"
    );
}

#[test]
fn filters_check_and_explain() {
    let down = node("d", NodeState::Down, NodeAvailability::Active, &[]);
    let drained = node("x", NodeState::Ready, NodeAvailability::Drain, &[]);
    let paused = node("p", NodeState::Ready, NodeAvailability::Pause, &[]);
    let ok = ready("ok");
    assert!(
        ReadyFilter.check(&ok, &NONE)
            && !ReadyFilter.check(&down, &NONE)
            && ReadyFilter.check(&drained, &NONE)
    );
    assert!(
        AvailabilityFilter.check(&ok, &NONE)
            && !AvailabilityFilter.check(&drained, &NONE)
            && !AvailabilityFilter.check(&paused, &NONE)
    );
    assert!(
        AvailabilityFilter.check(&Node::default(), &NONE),
        "no spec means active"
    );
    assert!(
        !ReadyFilter.check(&Node::default(), &NONE),
        "no status means not ready"
    );
    assert_eq!(ReadyFilter.explain(1), "1 node not ready");
    assert_eq!(
        AvailabilityFilter.explain(3),
        "3 nodes not available for new tasks"
    );
    let c = ConstraintFilter(vec![parse_constraint("node.labels.zone==east").unwrap()]);
    assert_eq!(
        c.explain(2),
        "scheduling constraints not satisfied on 2 nodes"
    );
    assert_eq!(
        c.explain(1),
        "scheduling constraints not satisfied on 1 node"
    );
    assert_eq!(
        MaxReplicasFilter(1).explain(3),
        "max replicas per node limit exceed"
    );
}

#[test]
fn ten_tasks_on_three_nodes_spread_4_3_3() {
    let nodes = [ready("a"), ready("b"), ready("c")];
    let batch: Vec<Task> = (0..10)
        .map(|i| pending(&format!("t{i}"), "web", &[]))
        .collect();
    let counts = per_node(&place(&batch, &nodes, &batch));
    assert_eq!(counts["a"], 4);
    assert_eq!(counts["b"], 3);
    assert_eq!(counts["c"], 3);
}

#[test]
fn spread_prefers_fewest_of_the_service_then_fewest_overall_then_id() {
    let nodes = [ready("c"), ready("b"), ready("a")];
    let existing = [
        running("w1", "web", "a"),
        running("d1", "db", "b"),
        running("d2", "db", "b"),
        // Ended or stopping tasks do not count.
        {
            let mut t = running("old", "web", "c");
            t.status.as_mut().unwrap().set_state(TaskState::Failed);
            t
        },
        {
            let mut t = running("stop", "web", "c");
            t.set_desired_state(TaskState::Shutdown);
            t
        },
    ];
    let batch = [
        pending("t1", "web", &[]),
        pending("t2", "web", &[]),
        pending("t3", "web", &[]),
    ];
    let all: Vec<Task> = existing.iter().chain(&batch).cloned().collect();
    let got: Vec<String> = place(&batch, &nodes, &all)
        .into_iter()
        .map(|d| match d {
            Decision::Assigned { node_id, .. } => node_id,
            Decision::Unplaceable { reason, .. } => panic!("{reason}"),
        })
        .collect();
    // web: a=1, b=0, c=0; totals a=1, b=2, c=0 → c, then b (web 0), then a/b/c tie on web=1:
    // totals a=1, b=3, c=1 → a.
    assert_eq!(got, ["c", "b", "a"]);
}

#[test]
fn only_fit_nodes_are_used() {
    let nodes = [
        node(
            "a",
            NodeState::Ready,
            NodeAvailability::Active,
            &[("zone", "east")],
        ),
        node(
            "b",
            NodeState::Ready,
            NodeAvailability::Active,
            &[("zone", "west")],
        ),
        node(
            "c",
            NodeState::Down,
            NodeAvailability::Active,
            &[("zone", "east")],
        ),
        node(
            "d",
            NodeState::Ready,
            NodeAvailability::Drain,
            &[("zone", "east")],
        ),
        node(
            "e",
            NodeState::Ready,
            NodeAvailability::Active,
            &[("zone", "east")],
        ),
    ];
    let batch: Vec<Task> = (0..4)
        .map(|i| pending(&format!("t{i}"), "web", &["node.labels.zone==east"]))
        .collect();
    let counts = per_node(&place(&batch, &nodes, &[]));
    assert_eq!(counts.len(), 2);
    assert_eq!((counts["a"], counts["e"]), (2, 2));

    let batch = [pending(
        "x",
        "web",
        &["node.hostname!=host-a", "node.labels.zone!=west"],
    )];
    assert_eq!(
        place(&batch, &nodes, &[]),
        [Decision::Assigned {
            task_id: "x".to_owned(),
            node_id: "e".to_owned(),
        }]
    );
}

#[test]
fn unplaceable_reasons_aggregate_per_filter() {
    let nodes = [
        node("a", NodeState::Ready, NodeAvailability::Drain, &[]),
        node("b", NodeState::Ready, NodeAvailability::Pause, &[]),
        node(
            "c",
            NodeState::Ready,
            NodeAvailability::Drain,
            &[("zone", "east")],
        ),
        node(
            "d",
            NodeState::Ready,
            NodeAvailability::Active,
            &[("zone", "west")],
        ),
        node("e", NodeState::Ready, NodeAvailability::Active, &[]),
    ];
    let batch = [pending("t", "web", &["node.labels.zone==east"])];
    assert_eq!(
        reason(&place(&batch, &nodes, &[])[0]),
        "no suitable node (3 nodes not available for new tasks; scheduling constraints not satisfied on 2 nodes)"
    );

    let nodes = [
        node("a", NodeState::Down, NodeAvailability::Active, &[]),
        node("b", NodeState::Ready, NodeAvailability::Drain, &[]),
        node(
            "c",
            NodeState::Ready,
            NodeAvailability::Active,
            &[("zone", "east")],
        ),
        node(
            "d",
            NodeState::Ready,
            NodeAvailability::Active,
            &[("zone", "east"), ("disk", "hdd")],
        ),
    ];
    let batch = [pending(
        "t",
        "web",
        &["node.labels.zone==east", "node.labels.disk==ssd"],
    )];
    assert_eq!(
        reason(&place(&batch, &nodes, &[])[0]),
        "no suitable node (scheduling constraints not satisfied on 2 nodes; 1 node not ready; 1 node not available for new tasks)"
    );

    assert_eq!(
        reason(&place(&[pending("t", "web", &[])], &[], &[])[0]),
        "no suitable node (no nodes in the cluster)"
    );
    assert_eq!(
        reason(
            &place(
                &[pending("t", "web", &["node.zone==x"])],
                &[ready("a")],
                &[]
            )[0]
        ),
        "invalid constraint \"node.zone==x\": unknown key \"node.zone\"; use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>"
    );
}

#[test]
fn global_tasks_are_checked_on_their_node_only() {
    let nodes = [
        ready("a"),
        node("b", NodeState::Down, NodeAvailability::Active, &[]),
        ready("c"),
    ];
    let mut on_a = pending("ga", "agent", &[]);
    on_a.node_id = "a".to_owned();
    let mut on_b = pending("gb", "agent", &[]);
    on_b.node_id = "b".to_owned();
    let mut on_gone = pending("gz", "agent", &[]);
    on_gone.node_id = "zz".to_owned();
    let mut on_c = pending("gc", "agent", &["node.role==manager"]);
    on_c.node_id = "c".to_owned();
    let d = place(&[on_a, on_b, on_gone, on_c], &nodes, &[]);
    assert_eq!(
        d[0],
        Decision::Assigned {
            task_id: "ga".to_owned(),
            node_id: "a".to_owned(),
        }
    );
    assert_eq!(reason(&d[1]), "no suitable node (1 node not ready)");
    assert_eq!(
        reason(&d[2]),
        "no suitable node (node \"zz\" is not in the cluster)"
    );
    assert_eq!(
        reason(&d[3]),
        "no suitable node (scheduling constraints not satisfied on 1 node)"
    );
}

#[test]
fn a_batch_counts_toward_later_services_too() {
    let nodes = [ready("a"), ready("b")];
    let batch = [pending("w1", "web", &[]), pending("d1", "db", &[])];
    let d = place(&batch, &nodes, &[]);
    // db has no task anywhere; it goes to b, which has fewer tasks overall.
    assert_eq!(
        d[1],
        Decision::Assigned {
            task_id: "d1".to_owned(),
            node_id: "b".to_owned(),
        }
    );
}

#[test]
fn resource_filter_fits_reservations_into_what_is_left() {
    let f = ResourceFilter(Resources {
        nano_cpus: CPU / 2,
        memory_bytes: GIB,
        pids: 0,
    });
    let n = sized("a", 1, 2);
    assert!(f.check(&n, &NONE));
    let half_used = Resources {
        nano_cpus: CPU / 2,
        memory_bytes: GIB,
        pids: 0,
    };
    assert!(f.check(&n, &half_used), "exactly full still fits");
    let more = Resources {
        nano_cpus: CPU / 2 + 1,
        ..half_used
    };
    assert!(!f.check(&n, &more), "one nano-CPU too many");
    assert!(
        !f.check(&ready("old"), &NONE),
        "a node that reported no capacity has none (swarmkit)"
    );
    assert_eq!(f.explain(1), "insufficient resources on 1 node");
    assert_eq!(f.explain(3), "insufficient resources on 3 nodes");
}

#[test]
fn a_reservation_larger_than_every_node_stays_pending_with_dockers_reason() {
    let nodes = [sized("a", 2, 4), sized("b", 2, 4)];
    let big = reserving(pending("t1", "web", &[]), 0, 64 * GIB);
    let d = place(
        std::slice::from_ref(&big),
        &nodes,
        std::slice::from_ref(&big),
    );
    assert_eq!(
        reason(&d[0]),
        "no suitable node (insufficient resources on 2 nodes)"
    );
    let cpus = reserving(pending("t2", "web", &[]), 3 * CPU, 0);
    let d = place(std::slice::from_ref(&cpus), &nodes, &[]);
    assert_eq!(
        reason(&d[0]),
        "no suitable node (insufficient resources on 2 nodes)"
    );
    // Each node is charged to its first failing filter, in swarmkit's order; the reasons
    // come from the most nodes to the fewest, as swarmkit sorts them.
    let mixed = [
        sized("a", 2, 4),
        node("d", NodeState::Down, NodeAvailability::Active, &[]),
        sized("c", 2, 4),
    ];
    let constrained = reserving(pending("t3", "web", &["node.hostname==host-a"]), 0, 8 * GIB);
    let d = place(&[constrained], &mixed, &[]);
    assert_eq!(
        reason(&d[0]),
        "no suitable node (insufficient resources on 2 nodes; 1 node not ready)"
    );
}

#[test]
fn reservations_of_running_and_newly_placed_tasks_add_up() {
    let nodes = [sized("a", 2, 4), sized("b", 2, 4)];
    // a already runs a task reserving 3 GiB; b runs one reserving nothing.
    let existing = [
        reserving(running("r1", "db", "a"), 0, 3 * GIB),
        running("r2", "db", "b"),
    ];
    // Three 2-GiB tasks: b takes two (a has 1 GiB left), the third fits nowhere.
    let batch: Vec<Task> = (0..3)
        .map(|i| reserving(pending(&format!("t{i}"), "web", &[]), 0, 2 * GIB))
        .collect();
    let all: Vec<&Task> = existing.iter().chain(&batch).collect();
    let d = place(&batch, &nodes, all);
    assert_eq!(
        d[0],
        Decision::Assigned {
            task_id: "t0".into(),
            node_id: "b".into()
        }
    );
    assert_eq!(
        d[1],
        Decision::Assigned {
            task_id: "t1".into(),
            node_id: "b".into()
        }
    );
    assert_eq!(
        reason(&d[2]),
        "no suitable node (insufficient resources on 2 nodes)"
    );
    // A task that ended or is being stopped frees its reservation.
    let mut ended = reserving(running("r1", "db", "a"), 0, 3 * GIB);
    ended.status.as_mut().unwrap().set_state(TaskState::Failed);
    let mut stopping = reserving(running("r3", "db", "b"), 0, 3 * GIB);
    stopping.set_desired_state(TaskState::Shutdown);
    let batch = [
        reserving(pending("u1", "web", &[]), 0, 4 * GIB),
        reserving(pending("u2", "web", &[]), 0, 4 * GIB),
    ];
    let all: Vec<&Task> = [&ended, &stopping].into_iter().chain(&batch).collect();
    assert_eq!(per_node(&place(&batch, &nodes, all)).len(), 2);
    // CPUs count the same way: 0.5 CPU tasks, 4 per 2-CPU node.
    let batch: Vec<Task> = (0..9)
        .map(|i| reserving(pending(&format!("c{i}"), "web", &[]), CPU / 2, 0))
        .collect();
    let d = place(&batch, &nodes, &batch);
    assert_eq!(
        per_node(&d[..8]),
        HashMap::from([("a".into(), 4), ("b".into(), 4)])
    );
    assert_eq!(
        reason(&d[8]),
        "no suitable node (insufficient resources on 2 nodes)"
    );
}

#[test]
fn a_global_task_without_room_on_its_node_stays_pending() {
    let nodes = [sized("a", 1, 1)];
    let existing = reserving(running("r1", "db", "a"), CPU, 0);
    let mut global = reserving(pending("g1", "agent", &[]), CPU / 10, 0);
    global.node_id = "a".into();
    let d = place(std::slice::from_ref(&global), &nodes, [&existing, &global]);
    assert_eq!(
        reason(&d[0]),
        "no suitable node (insufficient resources on 1 node)"
    );
    // Tasks without reservations still go anywhere.
    let plain = pending("p1", "web", &[]);
    let d = place(std::slice::from_ref(&plain), &nodes, [&existing]);
    assert!(matches!(d[0], Decision::Assigned { .. }), "{d:?}");
}
