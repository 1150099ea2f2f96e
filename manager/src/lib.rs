//! The manager of a `mini` cluster.
//!
//! # Layout
//! - [`store`]: the tables of cluster state and their deterministic apply.
//! - `raft`: the replicated log (raft-rs on sled) that feeds the store.
//! - `allocator`, `scheduler`, `orchestrator`: the decisions of the
//!   leader-only controllers, as pure functions.
//! - `controllers`: the loops that watch the store and write those decisions.
//! - `control`: the gRPC control API the CLI talks to.
//! - [`events`]: Docker's event stream of swarm objects, from the store's change feed.
//! - [`ha`]: several managers in one Raft group: transport, forwarding, leadership.

pub mod allocator;
mod autolock;
pub mod control;
pub mod controllers;
pub mod dispatcher;
pub mod error;
pub mod events;
pub mod ha;
pub mod ids;
pub mod manager;
pub mod metrics;
mod names;
pub mod orchestrator;
pub mod raft;
pub mod scheduler;
pub mod store;
