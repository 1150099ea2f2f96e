//! The scheduler's decisions: which node each pending task goes to, or why
//! none fits.
//!
//! Like swarmkit's scheduler: filters first (the node is ready, its
//! availability is active, its capacity less what its tasks reserve holds the
//! task's reservations, it satisfies the task's constraints), then spread
//! (placement preferences first, then fewest tasks of the service, then fewest
//! tasks, then node id). Everything
//! here is pure; the scheduler loop reads pending tasks and nodes from the
//! store and writes the [`Decision`]s back.
//!
//! # Layout
//! - [`constraint`]: parsing and matching `node.*` constraints.
//! - [`filter`]: the filters and the "no suitable node (...)" explanation.
//! - [`spread`]: per-node task counts and the choice among fit nodes.
//! - [`place`](mod@place): placing a batch.

pub mod constraint;
pub mod filter;
pub mod place;
pub mod spread;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_placement;

pub use constraint::{
    Constraint, ConstraintError, ConstraintKey, Operator, parse_constraint, parse_constraints,
};
pub use filter::{
    AvailabilityFilter, ConstraintFilter, Filter, Load, MaxReplicasFilter, Pipeline, ReadyFilter,
    ResourceFilter,
};
pub use place::{Decision, place};
pub use spread::{Spread, check_spread_descriptor, occupies_node, reservations, spread_value};
