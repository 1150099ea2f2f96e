//! The worker side of a `mini` node.
//!
//! # Layout
//! - [`agent`]: the session to the managers, the executor of assigned tasks,
//!   and the node agent service (logs, exec).
//! - [`runtime`]: running one task of image `host` in fresh namespaces.
//! - [`gossip`]: SWIM membership (foca) and the overlay endpoint table spread over it.

pub mod agent;
pub mod gossip;
pub mod runtime;
