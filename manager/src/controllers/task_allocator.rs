//! Gives new tasks their network addresses, then hands them to the scheduler
//! (NEW → PENDING).

use mini_proto::v1::{NetworkAttachment, Node, Task, TaskState, TaskStatus, store_action::Action};

use super::{Plan, Reconciler, update};
use crate::allocator::AddressPools;
use crate::store::{ObjectKind, Tables};

/// The task-address allocator.
pub struct TaskAllocator;

impl Reconciler for TaskAllocator {
    const NAME: &'static str = "allocator";
    const WATCHES: &'static [ObjectKind] = &[
        ObjectKind::Task,
        ObjectKind::Network,
        ObjectKind::Service,
        ObjectKind::Node,
    ];

    fn reconcile(&mut self, tables: &Tables, now_ms: i64) -> Plan {
        let new_tasks: Vec<&Task> = tables
            .tasks
            .values()
            .filter(|t| {
                t.status.as_ref().map_or(TaskState::New, |s| s.state()) == TaskState::New
                    && t.desired_state() <= TaskState::Running
            })
            .collect();
        let ingress = tables
            .networks
            .values()
            .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress));
        let nodes_without_ingress: Vec<&Node> = match ingress {
            Some(_) => tables
                .nodes
                .values()
                .filter(|n| n.ingress.is_none())
                .collect(),
            None => Vec::new(),
        };
        if new_tasks.is_empty() && nodes_without_ingress.is_empty() {
            return Plan::default();
        }
        let networks: Vec<_> = tables.networks.values().cloned().collect();
        let services: Vec<_> = tables.services.values().cloned().collect();
        let mut pools = AddressPools::new(&networks, tables.tasks.values(), &services);
        pools.reserve_nodes(tables.nodes.values());
        let mut actions = Vec::new();
        // Every node's ingress sandbox gets an address on the ingress network (routing mesh).
        if let Some(ingress) = ingress {
            for node in nodes_without_ingress {
                let Some(Ok(ip)) = pools.allocate(&ingress.id) else {
                    continue;
                };
                let prefix = ingress.subnet.split('/').nth(1).unwrap_or("16");
                let mut next = node.clone();
                next.ingress = Some(NetworkAttachment {
                    network_id: ingress.id.clone(),
                    addr: format!("{ip}/{prefix}"),
                    mac: crate::allocator::mac_for(ip),
                    vip: String::new(),
                });
                actions.push(update(Action::PutNode(next)));
            }
        }
        for task in new_tasks {
            let Some(service) = tables.services.get(&task.service_id) else {
                continue;
            };
            let mut next = task.clone();
            match pools.allocate_task(task, service) {
                Ok(attachments) => {
                    next.networks = attachments;
                    next.status = Some(TaskStatus {
                        state: TaskState::Pending as i32,
                        timestamp_ms: now_ms,
                        message: "pending task scheduling".into(),
                        ..Default::default()
                    });
                }
                Err(err) => {
                    let message = format!("cannot allocate network addresses: {err}");
                    if task.status.as_ref().is_some_and(|s| s.err == message) {
                        continue;
                    }
                    let mut status = task.status.clone().unwrap_or_default();
                    status.err = message;
                    next.status = Some(status);
                }
            }
            actions.push(update(Action::PutTask(next)));
        }
        // Network `last_allocated` cursors go in the same batch as the tasks.
        actions.extend(
            pools
                .changed_networks()
                .into_iter()
                .map(|n| update(Action::PutNetwork(n))),
        );
        Plan {
            actions,
            wake_at_ms: None,
        }
    }
}
