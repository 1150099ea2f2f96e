//! The worker side of a `mini` node.
//!
//! # Layout
//! - [`agent`]: the session to the managers, the executor of assigned tasks,
//!   and the node agent service (logs, exec).
//! - [`runtime`]: running one task of image `host` in fresh namespaces.
//! - [`gossip`]: SWIM membership (foca) and the overlay endpoint table spread over it.
//! - [`image`]: image references, pulls, archives and the layer store.
//! - [`dns`]: the embedded DNS server of every task sandbox (`127.0.0.11:53`).

pub mod agent;
pub mod dns;
pub mod gossip;
pub mod image;
pub mod metrics;
pub mod preflight;
pub mod runtime;
