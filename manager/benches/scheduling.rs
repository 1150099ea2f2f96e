//! End-to-end scheduling throughput through the real store and controllers:
//! 10,000 replicas of one service on 50 simulated READY nodes (the issue's
//! figure; anchors: Nomad C1M ≈ 3,750 tasks/s, kube-scheduler ≈ 185/s).
//!
//! A `Store` + `LocalProposer` (no Raft, no sockets) with the nodes written
//! straight into it and `Controllers::start` running the allocator,
//! orchestrator, scheduler and reaper. The clock runs from the write of the
//! service until every task is ASSIGNED. Prints one JSON object per run.
//!
//! `cargo bench -p mini-manager --bench scheduling [-- --tasks N --nodes M --runs R]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use mini_manager::controllers::Controllers;
use mini_manager::store::{LocalProposer, Proposer, Store};
use mini_proto::v1::{
    ContainerSpec, Network, NetworkSpec, Node, NodeAvailability, NodeSpec, NodeState, NodeStatus,
    Service, ServiceSpec, StoreAction, StoreBatch, TaskState, service_spec::Mode,
    store_action::Action,
};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn create(action: Action) -> StoreAction {
    StoreAction {
        action: Some(action),
        create: true,
    }
}

fn node(i: usize) -> Node {
    let mut spec = NodeSpec::default();
    spec.set_availability(NodeAvailability::Active);
    let mut status = NodeStatus {
        addr: format!("10.78.{}.{}", i / 250, i % 250 + 1),
        ..Default::default()
    };
    status.set_state(NodeState::Ready);
    Node {
        id: format!("node-{i:03}"),
        hostname: format!("host-{i}"),
        spec: Some(spec),
        status: Some(status),
        ..Default::default()
    }
}

async fn run(tasks: usize, nodes: usize, network: bool) -> serde_like::Report {
    let store = Store::new();
    let proposer = Arc::new(LocalProposer::new(store.clone()));
    let mut actions: Vec<StoreAction> = (0..nodes)
        .map(|i| create(Action::PutNode(node(i))))
        .collect();
    if network {
        actions.push(create(Action::PutNetwork(Network {
            id: "net".into(),
            spec: Some(NetworkSpec {
                name: "net".into(),
                driver: "overlay".into(),
                ..Default::default()
            }),
            subnet: "10.128.0.0/16".into(),
            gateway: "10.128.0.1".into(),
            vni: 4097,
            ..Default::default()
        })));
    }
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    proposer
        .propose(StoreBatch {
            actions,
            proposed_at_ms: now(),
            ..Default::default()
        })
        .await
        .expect("nodes");
    let controllers = Controllers::start(store.clone(), Arc::clone(&proposer));
    let service = Service {
        id: "svc".into(),
        spec: Some(ServiceSpec {
            name: "bench".into(),
            container: Some(ContainerSpec {
                image: "host".into(),
                args: vec!["sleep".into(), "1000".into()],
                env: Vec::new(),
                ..Default::default()
            }),
            mode: Some(Mode::Replicas(tasks as u64)),
            networks: if network {
                vec!["net".into()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut events = store.watch();
    let started = Instant::now();
    proposer
        .propose(StoreBatch {
            actions: vec![create(Action::PutService(service))],
            proposed_at_ms: now(),
            ..Default::default()
        })
        .await
        .expect("service");
    let deadline = started + Duration::from_secs(600);
    let count = |store: &Store| {
        store.view(|t| {
            t.tasks
                .values()
                .filter(|t| {
                    t.status
                        .as_ref()
                        .is_some_and(|s| s.state() >= TaskState::Assigned)
                })
                .count()
        })
    };
    let mut first_assigned = None;
    let mut writes = 0u64;
    loop {
        let assigned = count(&store);
        if assigned > 0 && first_assigned.is_none() {
            first_assigned = Some(started.elapsed());
        }
        if assigned >= tasks {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {assigned} of {tasks} tasks assigned after 600 s"
        );
        match tokio::time::timeout(Duration::from_millis(50), events.recv()).await {
            Ok(Ok(_)) => writes += 1,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => writes += n,
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    controllers.stop().await;
    let per_node = store.view(|t| {
        let mut counts = std::collections::HashMap::<&str, usize>::new();
        for task in t.tasks.values() {
            *counts.entry(task.node_id.as_str()).or_default() += 1;
        }
        let min = counts.values().copied().min().unwrap_or(0);
        let max = counts.values().copied().max().unwrap_or(0);
        (min, max)
    });
    serde_like::Report {
        tasks,
        nodes,
        network,
        seconds: elapsed.as_secs_f64(),
        first_assigned_ms: first_assigned.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        tasks_per_second: tasks as f64 / elapsed.as_secs_f64(),
        store_writes: writes,
        per_node_min: per_node.0,
        per_node_max: per_node.1,
    }
}

/// A hand-written JSON line (the manager crate has no serde dependency).
mod serde_like {
    /// One run's figures.
    pub struct Report {
        pub tasks: usize,
        pub nodes: usize,
        pub network: bool,
        pub seconds: f64,
        pub first_assigned_ms: f64,
        pub tasks_per_second: f64,
        pub store_writes: u64,
        pub per_node_min: usize,
        pub per_node_max: usize,
    }

    impl std::fmt::Display for Report {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{{\"bench\":\"scheduling_end_to_end\",\"tasks\":{},\"nodes\":{},\"network\":{},\
                 \"seconds\":{:.3},\"first_assigned_ms\":{:.1},\"tasks_per_second\":{:.0},\
                 \"store_writes\":{},\"per_node_min\":{},\"per_node_max\":{}}}",
                self.tasks,
                self.nodes,
                self.network,
                self.seconds,
                self.first_assigned_ms,
                self.tasks_per_second,
                self.store_writes,
                self.per_node_min,
                self.per_node_max
            )
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special: run a small smoke case then.
    let benching = std::env::args().any(|a| a == "--bench");
    let tasks = arg("--tasks", if benching { 10_000 } else { 200 });
    let nodes = arg("--nodes", 50);
    let runs = arg("--runs", if benching { 3 } else { 1 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for network in [false, true] {
        for _ in 0..runs {
            let report = runtime.block_on(run(tasks, nodes, network));
            println!("{report}");
        }
    }
}
