//! Protocol buffers of `mini`.
//!
//! # Layout
//! - `proto/objects.proto`: the objects kept in the Raft store (cluster, nodes,
//!   networks, services, tasks), the store's log entry (`StoreBatch`) and its
//!   snapshot (`StoreSnapshot`).
//! - `proto/control.proto`: the control API the CLI speaks to a daemon.
//!
//! Everything is generated into the single module [`v1`]; beside it, small
//! helpers every crate needs: [`state_name`], [`task_name`], [`node_endpoint`], and [`tls`]
//! (the cluster CA, mutual TLS and authorization of the node listener).

mod endpoint;
mod task_name;
mod task_state;
pub mod tls;

/// Generated messages and services of package `mini.v1`.
#[allow(
    missing_docs,
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation
)]
pub mod v1 {
    tonic::include_proto!("mini.v1");
}

pub use endpoint::node_endpoint;
pub use task_name::task_name;
pub use task_state::state_name;
