//! The node agent: keeps a session to a manager, runs the tasks assigned to
//! this node, and reports their state.
//!
//! # Layout
//! - [`worker`]: the node-wide [`Worker`] (runtime, network driver, local
//!   tasks) and the agent's start/stop.
//! - `session`: the session loop (assignments in, heartbeats out).
//! - `executor`: turns assignments into running or stopped tasks.
//! - `task`: one task's life, PREPARING → RUNNING → COMPLETE/FAILED/SHUTDOWN.
//! - `network`: the node's desired network state for the driver.
//! - `gossip_link`: endpoint records of local tasks out, VXLAN peers in.
//! - `dns_link`: the embedded DNS server of each task sandbox.
//! - `reporter`: batched status reports.
//! - [`secrets`]: secret and config values in memory, and each task's secrets tmpfs.
//! - [`images`]: where image tasks get their images ([`images::ImageSource`]).
//! - [`capacity`]: the CPUs and memory the node offers tasks (reported at session open).
//! - `leftovers`: killing tasks an earlier, killed daemon left running.
//! - `node_agent`: the gRPC service managers call for logs and exec.
//! - `renewal`: renews the node's certificate in the second half of its life, or at once when
//!   the cluster changed the node's role.

pub mod capacity;
mod dns_link;
mod executor;
mod gossip_link;
pub mod images;
mod leftovers;
mod network;
mod node_agent;
mod renewal;
mod reporter;
pub mod secrets;
mod session;
mod task;
pub mod worker;

#[cfg(test)]
mod tests;

pub use worker::{ImageRuntime, Runtimes, Worker, WorkerConfig};
