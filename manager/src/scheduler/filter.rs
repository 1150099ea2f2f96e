//! Node filters: each says whether a node can take a new task and, for the
//! nodes it turned away, explains why in words a user reads in `service ps`.

use mini_proto::v1::{Node, NodeAvailability, NodeState, Resources};

use super::constraint::Constraint;

/// What a node holds already when a task is placed: what its tasks reserve,
/// and how many tasks of the task's own service it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Resources its tasks reserve.
    pub reserved: Resources,
    /// Active tasks of the service being placed.
    pub service_tasks: u32,
}

/// One reason a node may be unfit for a new task (swarmkit's `Filter`).
pub trait Filter {
    /// Whether `node` passes, when the tasks it holds already reserve
    /// `reserved` of its resources.
    fn check(&self, node: &Node, reserved: &Resources) -> bool;
    /// Whether `node` passes with `load` on it (by default: [`Filter::check`]
    /// with what it reserves).
    fn check_load(&self, node: &Node, load: &Load) -> bool {
        self.check(node, &load.reserved)
    }
    /// Why `nodes` nodes did not pass, e.g. "2 nodes not ready".
    fn explain(&self, nodes: usize) -> String;
}

/// "1 node" / "3 nodes".
fn count(nodes: usize) -> String {
    if nodes == 1 {
        "1 node".to_owned()
    } else {
        format!("{nodes} nodes")
    }
}

/// Passes nodes whose observed state is READY.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadyFilter;

impl Filter for ReadyFilter {
    fn check(&self, node: &Node, _reserved: &Resources) -> bool {
        node.status
            .as_ref()
            .is_some_and(|s| s.state() == NodeState::Ready)
    }

    fn explain(&self, nodes: usize) -> String {
        format!("{} not ready", count(nodes))
    }
}

/// Passes nodes whose availability is ACTIVE (not PAUSE or DRAIN).
#[derive(Debug, Clone, Copy, Default)]
pub struct AvailabilityFilter;

impl Filter for AvailabilityFilter {
    fn check(&self, node: &Node, _reserved: &Resources) -> bool {
        node.spec
            .as_ref()
            .map_or(NodeAvailability::Active, |s| s.availability())
            == NodeAvailability::Active
    }

    fn explain(&self, nodes: usize) -> String {
        format!("{} not available for new tasks", count(nodes))
    }
}

/// Passes nodes that satisfy every constraint of a task (swarmkit's
/// `ConstraintFilter`, with its wording).
#[derive(Debug, Clone)]
pub struct ConstraintFilter(pub Vec<Constraint>);

impl Filter for ConstraintFilter {
    fn check(&self, node: &Node, _reserved: &Resources) -> bool {
        self.0.iter().all(|c| c.matches(node))
    }

    fn explain(&self, nodes: usize) -> String {
        format!("scheduling constraints not satisfied on {}", count(nodes))
    }
}

/// Passes nodes running fewer than `--max-replicas-per-node` tasks of the
/// service (swarmkit's `MaxReplicasFilter`, with its wording).
#[derive(Debug, Clone, Copy)]
pub struct MaxReplicasFilter(pub u64);

impl Filter for MaxReplicasFilter {
    fn check(&self, _node: &Node, _reserved: &Resources) -> bool {
        true
    }

    fn check_load(&self, _node: &Node, load: &Load) -> bool {
        u64::from(load.service_tasks) < self.0
    }

    fn explain(&self, _nodes: usize) -> String {
        "max replicas per node limit exceed".to_owned()
    }
}

/// Passes nodes whose capacity, less what their tasks reserve already, holds
/// a task's reservations (`--reserve-cpu`, `--reserve-memory`). A node that
/// reported no capacity has none, as in swarmkit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceFilter(pub Resources);

impl Filter for ResourceFilter {
    fn check(&self, node: &Node, reserved: &Resources) -> bool {
        let capacity = node.resources.unwrap_or_default();
        self.0.nano_cpus <= capacity.nano_cpus.saturating_sub(reserved.nano_cpus)
            && self.0.memory_bytes <= capacity.memory_bytes.saturating_sub(reserved.memory_bytes)
    }

    fn explain(&self, nodes: usize) -> String {
        format!("insufficient resources on {}", count(nodes))
    }
}

/// The filters of one task, in swarmkit's order: ready, availability, its
/// reservations (when it has any), its constraints (when it has any), then
/// its `--max-replicas-per-node` (when set). A node that fails is charged to
/// the first filter it fails.
pub struct Pipeline {
    filters: Vec<Box<dyn Filter + Send + Sync>>,
}

impl Pipeline {
    /// The filters for a task with these constraints and no reservations.
    pub fn new(constraints: &[Constraint]) -> Self {
        Self::with_reservations(constraints, None)
    }

    /// The filters for a task with these constraints and reservations.
    pub fn with_reservations(constraints: &[Constraint], reservations: Option<Resources>) -> Self {
        Self::for_task(constraints, reservations, 0)
    }

    /// The filters for a task with these constraints, reservations and
    /// `--max-replicas-per-node` (0: no limit).
    pub fn for_task(
        constraints: &[Constraint],
        reservations: Option<Resources>,
        max_replicas_per_node: u64,
    ) -> Self {
        let mut filters: Vec<Box<dyn Filter + Send + Sync>> =
            vec![Box::new(ReadyFilter), Box::new(AvailabilityFilter)];
        if let Some(r) = reservations.filter(|r| r.nano_cpus > 0 || r.memory_bytes > 0) {
            filters.push(Box::new(ResourceFilter(r)));
        }
        if !constraints.is_empty() {
            filters.push(Box::new(ConstraintFilter(constraints.to_vec())));
        }
        if max_replicas_per_node > 0 {
            filters.push(Box::new(MaxReplicasFilter(max_replicas_per_node)));
        }
        Self { filters }
    }

    /// The index of the first filter `node` fails, or `None` if it passes all,
    /// when the node's tasks reserve `reserved` already.
    pub fn first_failure(&self, node: &Node, reserved: &Resources) -> Option<usize> {
        self.first_failure_load(
            node,
            &Load {
                reserved: *reserved,
                service_tasks: 0,
            },
        )
    }

    /// The index of the first filter `node` fails with `load` on it.
    pub fn first_failure_load(&self, node: &Node, load: &Load) -> Option<usize> {
        self.filters.iter().position(|f| !f.check_load(node, load))
    }

    /// Whether `node` passes every filter with `load` on it.
    pub fn check_load(&self, node: &Node, load: &Load) -> bool {
        self.first_failure_load(node, load).is_none()
    }

    /// Whether `node` passes every filter with none of its resources reserved.
    pub fn check(&self, node: &Node) -> bool {
        self.check_reserved(node, &Resources::default())
    }

    /// Whether `node` passes every filter when its tasks reserve `reserved`.
    pub fn check_reserved(&self, node: &Node, reserved: &Resources) -> bool {
        self.first_failure(node, reserved).is_none()
    }

    /// Checks every node (with what its tasks reserve already) and says why
    /// none passes, in the words a user sees, e.g. "no suitable node (3 nodes
    /// not available for new tasks; scheduling constraints not satisfied on 2
    /// nodes)".
    pub fn explain<'a, 'b>(
        &self,
        nodes: impl IntoIterator<Item = (&'a Node, &'b Resources)>,
    ) -> String {
        self.explain_load(nodes.into_iter().map(|(node, reserved)| {
            (
                node,
                Load {
                    reserved: *reserved,
                    service_tasks: 0,
                },
            )
        }))
    }

    /// Checks every node with its load and says why none passes. As swarmkit
    /// does, the reasons come from the filter that turned away the most nodes
    /// to the one that turned away the fewest.
    pub fn explain_load<'a>(&self, nodes: impl IntoIterator<Item = (&'a Node, Load)>) -> String {
        let mut failures = vec![0usize; self.filters.len()];
        let mut total = 0;
        for (node, load) in nodes {
            total += 1;
            if let Some(i) = self.first_failure_load(node, &load) {
                failures[i] += 1;
            }
        }
        if total == 0 {
            return "no suitable node (no nodes in the cluster)".to_owned();
        }
        let mut parts: Vec<(usize, String)> = self
            .filters
            .iter()
            .zip(&failures)
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| (*n, f.explain(*n)))
            .collect();
        parts.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let parts: Vec<String> = parts.into_iter().map(|(_, p)| p).collect();
        format!("no suitable node ({})", parts.join("; "))
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("filters", &self.filters.len())
            .finish()
    }
}
