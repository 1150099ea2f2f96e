//! Node filters: each says whether a node can take a new task and, for the
//! nodes it turned away, explains why in words a user reads in `service ps`.

use mini_proto::v1::{Node, NodeAvailability, NodeState, Resources};

use super::constraint::Constraint;

/// One reason a node may be unfit for a new task (swarmkit's `Filter`).
pub trait Filter {
    /// Whether `node` passes, when the tasks it holds already reserve
    /// `reserved` of its resources.
    fn check(&self, node: &Node, reserved: &Resources) -> bool;
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

/// Passes nodes that satisfy one constraint.
#[derive(Debug, Clone)]
pub struct ConstraintFilter(pub Constraint);

impl Filter for ConstraintFilter {
    fn check(&self, node: &Node, _reserved: &Resources) -> bool {
        self.0.matches(node)
    }

    fn explain(&self, nodes: usize) -> String {
        format!("{} did not satisfy constraint {}", count(nodes), self.0)
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
/// reservations (when it has any), then each constraint. A node that fails is
/// charged to the first filter it fails.
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
        let mut filters: Vec<Box<dyn Filter + Send + Sync>> =
            vec![Box::new(ReadyFilter), Box::new(AvailabilityFilter)];
        if let Some(r) = reservations.filter(|r| r.nano_cpus > 0 || r.memory_bytes > 0) {
            filters.push(Box::new(ResourceFilter(r)));
        }
        filters.extend(
            constraints
                .iter()
                .map(|c| Box::new(ConstraintFilter(c.clone())) as _),
        );
        Self { filters }
    }

    /// The index of the first filter `node` fails, or `None` if it passes all,
    /// when the node's tasks reserve `reserved` already.
    pub fn first_failure(&self, node: &Node, reserved: &Resources) -> Option<usize> {
        self.filters.iter().position(|f| !f.check(node, reserved))
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
    /// not available for new tasks; 2 nodes did not satisfy constraint
    /// node.labels.zone==east)".
    pub fn explain<'a, 'b>(
        &self,
        nodes: impl IntoIterator<Item = (&'a Node, &'b Resources)>,
    ) -> String {
        let mut failures = vec![0usize; self.filters.len()];
        let mut total = 0;
        for (node, reserved) in nodes {
            total += 1;
            if let Some(i) = self.first_failure(node, reserved) {
                failures[i] += 1;
            }
        }
        if total == 0 {
            return "no suitable node (no nodes in the cluster)".to_owned();
        }
        let parts: Vec<String> = self
            .filters
            .iter()
            .zip(&failures)
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| f.explain(*n))
            .collect();
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
