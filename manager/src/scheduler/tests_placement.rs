//! Unit tests of placement: every constraint key, spread preferences and
//! `--max-replicas-per-node`.

use std::collections::BTreeMap;

use mini_proto::v1::{
    Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, PlacementPreference,
    Platform, Resources, Task, TaskState, TaskStatus,
};

use super::*;

/// A READY, ACTIVE worker with node labels and engine labels, reporting linux/x86_64.
fn labelled(id: &str, labels: &[(&str, &str)], engine: &[(&str, &str)]) -> Node {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mut status = NodeStatus::default();
    status.set_state(NodeState::Ready);
    Node {
        id: id.to_owned(),
        hostname: format!("host-{id}"),
        spec: Some(NodeSpec {
            labels: map(labels),
            ..NodeSpec::default()
        }),
        status: Some(status),
        description: Some(NodeDescription {
            platform: Some(Platform {
                os: "linux".into(),
                architecture: "x86_64".into(),
            }),
            engine_labels: map(engine),
            ..NodeDescription::default()
        }),
        ..Node::default()
    }
}

fn pending(id: &str, service: &str) -> Task {
    let mut t = Task {
        id: id.to_owned(),
        service_id: service.to_owned(),
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
    let mut t = pending(id, service);
    t.node_id = node.to_owned();
    t.status.as_mut().unwrap().set_state(TaskState::Running);
    t
}

fn spread_over(label: &str) -> Vec<PlacementPreference> {
    vec![PlacementPreference {
        spread: label.to_owned(),
    }]
}

/// Tasks placed per node, or the first reason a task could not be placed.
fn placed(decisions: &[Decision]) -> Result<BTreeMap<String, usize>, String> {
    let mut counts = BTreeMap::new();
    for d in decisions {
        match d {
            Decision::Assigned { node_id, .. } => *counts.entry(node_id.clone()).or_default() += 1,
            Decision::Unplaceable { reason, .. } => return Err(reason.clone()),
        }
    }
    Ok(counts)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn every_constraint_key_matches_with_eq_and_ne() {
    let n = labelled("n1", &[("zone", "east")], &[("disk", "ssd")]);
    let m = |s: &str| parse_constraint(s).unwrap().matches(&n);
    for (expr, want) in [
        ("node.id==n1", true),
        ("node.id!=n1", false),
        ("node.id==n2", false),
        ("node.hostname==host-n1", true),
        ("node.hostname!=host-n1", false),
        ("node.role==worker", true),
        ("node.role!=worker", false),
        ("node.role==manager", false),
        ("node.platform.os==linux", true),
        ("node.platform.os!=linux", false),
        ("node.platform.os==windows", false),
        ("node.platform.arch==x86_64", true),
        ("node.platform.arch!=x86_64", false),
        ("node.platform.arch==aarch64", false),
        ("node.labels.zone==east", true),
        ("node.labels.zone!=east", false),
        ("node.labels.zone==west", false),
        ("engine.labels.disk==ssd", true),
        ("engine.labels.disk!=ssd", false),
        ("engine.labels.disk==hdd", false),
        // Missing labels: == fails, != passes (swarmkit compares with "").
        ("node.labels.rack==r1", false),
        ("node.labels.rack!=r1", true),
        ("engine.labels.gpu==yes", false),
        ("engine.labels.gpu!=yes", true),
        // A node label is not an engine label and the other way round.
        ("engine.labels.zone==east", false),
        ("node.labels.disk==ssd", false),
        // Values compare ignoring case, as in swarmkit; keys are case-insensitive too.
        ("NODE.PLATFORM.OS==Linux", true),
        ("Engine.Labels.disk==SSD", true),
    ] {
        assert_eq!(m(expr), want, "{expr}");
    }
    let mut manager = n.clone();
    manager.set_role(NodeRole::Manager);
    assert!(
        parse_constraint("node.role==manager")
            .unwrap()
            .matches(&manager)
    );

    // A node that has not reported its platform or engine labels has none.
    let mut silent = n.clone();
    silent.description = None;
    let m = |s: &str| parse_constraint(s).unwrap().matches(&silent);
    assert!(!m("node.platform.os==linux") && m("node.platform.os!=linux"));
    assert!(!m("node.platform.arch==x86_64") && m("node.platform.arch!=x86_64"));
    assert!(!m("engine.labels.disk==ssd") && m("engine.labels.disk!=ssd"));

    // The new keys print back as written (the form `service inspect` shows).
    for expr in [
        "node.platform.os==linux",
        "node.platform.arch!=x86_64",
        "engine.labels.disk==ssd",
    ] {
        assert_eq!(parse_constraint(expr).unwrap().to_string(), expr);
    }
    assert_eq!(
        parse_constraint("engine.labels.Disk==ssd").unwrap().key,
        ConstraintKey::EngineLabel("Disk".into()),
        "label names keep their case"
    );
    assert!(
        parse_constraint("engine.labels.==x")
            .unwrap_err()
            .to_string()
            .contains("unknown key")
    );
    assert!(
        parse_constraint("node.platform==linux")
            .unwrap_err()
            .to_string()
            .contains("node.platform.os, node.platform.arch")
    );
}

#[test]
fn an_unsatisfiable_constraint_reads_as_in_swarmkit() {
    let nodes = [
        labelled("a", &[], &[]),
        labelled("b", &[], &[]),
        labelled("c", &[], &[]),
    ];
    let mut t = pending("t", "web");
    t.constraints = vec!["node.labels.zone==east".into()];
    assert_eq!(
        placed(&place(std::slice::from_ref(&t), &nodes, &[])),
        Err("no suitable node (scheduling constraints not satisfied on 3 nodes)".into())
    );
    // Several constraints count a node once.
    t.constraints.push("engine.labels.disk==ssd".into());
    assert_eq!(
        placed(&place(std::slice::from_ref(&t), &nodes, &[])),
        Err("no suitable node (scheduling constraints not satisfied on 3 nodes)".into())
    );
    let nodes = [
        labelled("a", &[("zone", "east")], &[("disk", "ssd")]),
        labelled("b", &[("zone", "east")], &[]),
        labelled("c", &[], &[("disk", "ssd")]),
    ];
    assert_eq!(placed(&place(&[t], &nodes, &[])), Ok(counts(&[("a", 1)])));
}

#[test]
fn max_replicas_per_node_leaves_the_rest_pending_with_dockers_reason() {
    let nodes = [
        labelled("a", &[], &[]),
        labelled("b", &[], &[]),
        labelled("c", &[], &[]),
    ];
    let batch: Vec<Task> = (1..=4)
        .map(|i| {
            let mut t = pending(&format!("t{i}"), "web");
            t.max_replicas_per_node = 1;
            t
        })
        .collect();
    let d = place(&batch, &nodes, &batch);
    assert_eq!(placed(&d[..3]), Ok(counts(&[("a", 1), ("b", 1), ("c", 1)])));
    assert_eq!(
        placed(&d[3..]),
        Err("no suitable node (max replicas per node limit exceed)".into())
    );

    // Running tasks of the service count; other services' do not.
    let existing = [running("r1", "web", "a"), running("r2", "db", "b")];
    let mut two = batch[..2].to_vec();
    for t in &mut two {
        t.max_replicas_per_node = 1;
    }
    let d = place(&two, &nodes, &existing);
    assert_eq!(placed(&d), Ok(counts(&[("b", 1), ("c", 1)])));

    // A limit of 2 lets 6 tasks fill 3 nodes two by two, no more.
    let batch: Vec<Task> = (1..=7)
        .map(|i| {
            let mut t = pending(&format!("u{i}"), "api");
            t.max_replicas_per_node = 2;
            t
        })
        .collect();
    let d = place(&batch, &nodes, &batch);
    assert_eq!(placed(&d[..6]), Ok(counts(&[("a", 2), ("b", 2), ("c", 2)])));
    assert!(placed(&d[6..]).is_err());
}

#[test]
fn reasons_combine_as_swarmkit_combines_them() {
    let mut small = labelled("a", &[("zone", "east")], &[]);
    small.resources = Some(Resources {
        nano_cpus: 1_000_000_000,
        memory_bytes: 1 << 30,
        pids: 0,
    });
    let mut big = labelled("b", &[("zone", "east")], &[]);
    big.resources = Some(Resources {
        nano_cpus: 8_000_000_000,
        memory_bytes: 16 << 30,
        pids: 0,
    });
    let mut west = labelled("c", &[("zone", "west")], &[]);
    west.resources = big.resources;
    let mut other = labelled("d", &[("zone", "west")], &[]);
    other.resources = big.resources;
    let nodes = [small, big, west, other];
    let mut t = pending("t", "web");
    t.constraints = vec!["node.labels.zone==east".into()];
    t.max_replicas_per_node = 1;
    t.container = Some(mini_proto::v1::ContainerSpec {
        reservations: Some(Resources {
            nano_cpus: 0,
            memory_bytes: 2 << 30,
            pids: 0,
        }),
        ..Default::default()
    });
    // d: west (constraints); c: west; a: too small; b: already runs one.
    let existing = [running("r", "web", "b")];
    assert_eq!(
        placed(&place(&[t], &nodes, &existing)),
        Err(
            "no suitable node (scheduling constraints not satisfied on 2 nodes; insufficient resources on 1 node; max replicas per node limit exceed)"
                .into()
        )
    );
}

#[test]
fn spread_preference_splits_tasks_evenly_over_label_values() {
    // Three nodes, two zones: plain spread puts 4 tasks 2/1/1 (east 3, west 1);
    // spreading over the zone puts 2 in each zone.
    let nodes = [
        labelled("a", &[("zone", "east")], &[]),
        labelled("b", &[("zone", "east")], &[]),
        labelled("c", &[("zone", "west")], &[]),
    ];
    let batch = |n: usize, prefs: &[PlacementPreference]| -> Vec<Task> {
        (1..=n)
            .map(|i| {
                let mut t = pending(&format!("t{i}"), "web");
                t.placement_preferences = prefs.to_vec();
                t
            })
            .collect()
    };
    let plain = batch(4, &[]);
    assert_eq!(
        placed(&place(&plain, &nodes, &plain)),
        Ok(counts(&[("a", 2), ("b", 1), ("c", 1)]))
    );
    let zoned = batch(4, &spread_over("node.labels.zone"));
    assert_eq!(
        placed(&place(&zoned, &nodes, &zoned)),
        Ok(counts(&[("a", 1), ("b", 1), ("c", 2)]))
    );

    // Nodes without the label form a group of their own.
    let mut nodes = nodes.to_vec();
    nodes.push(labelled("d", &[], &[]));
    let zoned = batch(6, &spread_over("node.labels.zone"));
    assert_eq!(
        placed(&place(&zoned, &nodes, &zoned)),
        Ok(counts(&[("a", 1), ("b", 1), ("c", 2), ("d", 2)]))
    );

    // Tasks already running count: west holds 2, so 2 new ones go east.
    let existing = [running("r1", "web", "c"), running("r2", "web", "c")];
    let two = batch(2, &spread_over("node.labels.zone"));
    assert_eq!(
        placed(&place(&two, &nodes[..3], &existing)),
        Ok(counts(&[("a", 1), ("b", 1)]))
    );

    // Engine labels spread the same way; a zone whose nodes do not fit is skipped.
    let nodes = [
        labelled("a", &[], &[("rack", "r1")]),
        labelled("b", &[], &[("rack", "r2")]),
        labelled("c", &[], &[("rack", "r2")]),
    ];
    let racked = batch(4, &spread_over("engine.labels.rack"));
    assert_eq!(
        placed(&place(&racked, &nodes, &racked)),
        Ok(counts(&[("a", 2), ("b", 1), ("c", 1)]))
    );
    let mut constrained = racked.clone();
    for t in &mut constrained {
        t.constraints = vec!["node.id!=a".into()];
    }
    assert_eq!(
        placed(&place(&constrained, &nodes, &constrained)),
        Ok(counts(&[("b", 2), ("c", 2)]))
    );
}

#[test]
fn spread_descriptors_are_checked() {
    assert!(check_spread_descriptor("node.labels.zone").is_ok());
    assert!(check_spread_descriptor("engine.labels.rack").is_ok());
    for bad in ["zone", "node.labels.", "node.hostname"] {
        let err = check_spread_descriptor(bad).unwrap_err();
        assert!(err.contains("node.labels.<name>"), "{bad}: {err}");
    }
}
