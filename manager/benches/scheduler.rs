//! Scheduler throughput: one `place` call for 10,000 pending replicas of one
//! service on 50 ready nodes (the issue's "10,000 replicas on 50 simulated
//! nodes"). Criterion reports tasks/s as elements/s. Only the decision is
//! measured; committing the assignments is the store bench's business.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_main};
use mini_manager::scheduler::{Decision, place};
use mini_proto::v1::{Node, NodeSpec, NodeState, NodeStatus, Task, TaskState, TaskStatus};

const TASKS: usize = 10_000;
const NODES: usize = 50;

fn nodes() -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            let mut status = NodeStatus::default();
            status.set_state(NodeState::Ready);
            let mut spec = NodeSpec::default();
            let zone = if i % 2 == 0 { "east" } else { "west" };
            spec.labels.insert("zone".to_owned(), zone.to_owned());
            Node {
                id: format!("node-{i:03}"),
                hostname: format!("host-{i}"),
                spec: Some(spec),
                status: Some(status),
                ..Node::default()
            }
        })
        .collect()
}

fn pending(constraints: &[&str]) -> Vec<Task> {
    (0..TASKS)
        .map(|i| {
            let mut t = Task {
                id: format!("task-{i:05}"),
                service_id: "svc".to_owned(),
                slot: i as u64 + 1,
                constraints: constraints.iter().map(|c| (*c).to_owned()).collect(),
                status: Some(TaskStatus {
                    state: TaskState::Pending as i32,
                    ..TaskStatus::default()
                }),
                ..Task::default()
            };
            t.set_desired_state(TaskState::Running);
            t
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let nodes = nodes();
    let mut group = c.benchmark_group("scheduler");
    group.throughput(Throughput::Elements(TASKS as u64));
    group.sample_size(20);
    for (name, constraints) in [
        ("place_10k_tasks_50_nodes", &[][..]),
        (
            "place_10k_tasks_50_nodes_constrained",
            &["node.labels.zone==east", "node.role!=manager"][..],
        ),
    ] {
        let tasks = pending(constraints);
        let placed = place(&tasks, &nodes, &tasks);
        assert!(
            placed
                .iter()
                .all(|d| matches!(d, Decision::Assigned { .. }))
        );
        group.bench_function(name, |b| {
            b.iter(|| place(black_box(&tasks), black_box(&nodes), black_box(&tasks)))
        });
    }
    group.finish();
}

/// The generated `benches` function has no doc comment of its own.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
