//! The worker side of a `mini` node.
//!
//! # Layout
//! - [`agent`]: the session to the managers, the executor of assigned tasks,
//!   and the node agent service (logs, exec).
//! - [`runtime`]: running one task of image `host` in fresh namespaces.

pub mod agent;
pub mod runtime;
