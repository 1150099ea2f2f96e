//! The allocator's decisions: subnets, gateways and VNIs of networks; task
//! addresses, MACs and service VIPs inside them.
//!
//! Everything here is a pure function of the objects passed in; the allocator
//! loop reads them from a store snapshot and writes the results back (see each
//! function for what the caller stores, e.g. `Cluster.next_vni` and
//! `Network.last_allocated`, which keep VNIs and addresses from being reused
//! the moment they are freed).
//!
//! # Layout
//! - [`subnet`]: spec validation, subnets from the default pool, gateways.
//! - [`vni`]: VXLAN network identifiers (ingress 4096, then 4097...).
//! - [`address`]: the next free address of a network, MACs, addresses in use.
//! - [`pool`]: many networks at once — task attachments and service VIPs.
//! - [`error`](mod@error): the error type, [`AllocError`].

pub mod address;
pub mod error;
pub mod pool;
pub mod subnet;
pub mod vni;

#[cfg(test)]
mod tests;

pub use address::{addresses_in_use, allocate_address, holds_addresses, mac_for, network_subnet};
pub use error::AllocError;
pub use pool::{
    AddressPools, ServiceVips, TaskAttachments, allocate_service_vips, allocate_task_attachments,
    task_addresses,
};
pub use subnet::{NetworkAllocation, allocate_network, validate_network_spec};
pub use vni::pick_vni;
