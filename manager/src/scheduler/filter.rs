//! Node filters: each says whether a node can take a new task and, for the
//! nodes it turned away, explains why in words a user reads in `service ps`.

use mini_proto::v1::{Node, NodeAvailability, NodeState};

use super::constraint::Constraint;

/// One reason a node may be unfit for a new task (swarmkit's `Filter`).
pub trait Filter {
    /// Whether `node` passes.
    fn check(&self, node: &Node) -> bool;
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
    fn check(&self, node: &Node) -> bool {
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
    fn check(&self, node: &Node) -> bool {
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
    fn check(&self, node: &Node) -> bool {
        self.0.matches(node)
    }

    fn explain(&self, nodes: usize) -> String {
        format!("{} did not satisfy constraint {}", count(nodes), self.0)
    }
}

/// The filters of one task, in order: ready, availability, then each
/// constraint. A node that fails is charged to the first filter it fails.
pub struct Pipeline {
    filters: Vec<Box<dyn Filter + Send + Sync>>,
}

impl Pipeline {
    /// The filters for a task with these constraints.
    pub fn new(constraints: &[Constraint]) -> Self {
        let mut filters: Vec<Box<dyn Filter + Send + Sync>> =
            vec![Box::new(ReadyFilter), Box::new(AvailabilityFilter)];
        filters.extend(
            constraints
                .iter()
                .map(|c| Box::new(ConstraintFilter(c.clone())) as _),
        );
        Self { filters }
    }

    /// The index of the first filter `node` fails, or `None` if it passes all.
    pub fn first_failure(&self, node: &Node) -> Option<usize> {
        self.filters.iter().position(|f| !f.check(node))
    }

    /// Whether `node` passes every filter.
    pub fn check(&self, node: &Node) -> bool {
        self.first_failure(node).is_none()
    }

    /// Checks every node, returning the ones that pass and, when none does,
    /// the reason a user sees, e.g. "no suitable node (3 nodes not available
    /// for new tasks; 2 nodes did not satisfy constraint node.labels.zone==east)".
    pub fn explain<'a>(&self, nodes: impl IntoIterator<Item = &'a Node>) -> String {
        let mut failures = vec![0usize; self.filters.len()];
        let mut total = 0;
        for node in nodes {
            total += 1;
            if let Some(i) = self.first_failure(node) {
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
