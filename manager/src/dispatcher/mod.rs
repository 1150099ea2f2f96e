//! The dispatcher: the manager's side of every worker's session.
//!
//! Workers join with a token, open a session (a server stream of their
//! assignments: a complete set first, then increments), heartbeat, and report
//! task status in batches. A node whose heartbeats stop for
//! [`MISSED_HEARTBEATS`] periods is marked down, which makes the orchestrator
//! replace its tasks.
//!
//! # Layout
//! - `token`: join tokens (`SWMTKN-1-<ca digest>-<secret>`).
//! - `ca`: signing node certificates with the cluster's root CA.
//! - `sessions`: live sessions and heartbeats, the node monitor.
//! - `assignments`: what a node must run, and the increments between two sets.
//! - `status`: applying task status reports (forward moves only).

mod assignments;
pub mod ca;
mod sessions;
mod status;
pub mod token;

pub use assignments::{
    AssignmentSet, CertVerdicts, GossipView, LEFT_MESSAGE, TrustView, assignments_for,
    concerns_node, gossip_view, trust_view,
};
pub use sessions::{
    HEARTBEAT_JITTER, MAX_HEARTBEAT_RATE, MISSED_HEARTBEATS, RECONNECT_GRACE, Sessions,
    scaled_period,
};
pub use status::apply_status_updates;

#[cfg(test)]
mod tests;
