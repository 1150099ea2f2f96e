//! The one error type of the allocator.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Why the allocator could not hand out a subnet, VNI or address. Each message
/// says what was wrong and what would be right, so the control API can pass it
/// to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The network name is empty or has characters Docker does not allow.
    #[error(
        "invalid network name {name:?}: {reason}; use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The driver is not one `mini` implements.
    #[error("unknown network driver {driver:?}: supported drivers are {}", .supported.join(", "))]
    UnknownDriver {
        /// The driver as given.
        driver: String,
        /// The drivers `mini` implements.
        supported: &'static [&'static str],
    },
    /// The requested subnet is not an IPv4 CIDR.
    #[error("invalid subnet {input:?}: expected an IPv4 CIDR such as 10.0.1.0/24")]
    InvalidSubnet {
        /// The subnet as given.
        input: String,
    },
    /// The requested subnet has bits set after the prefix.
    #[error("invalid subnet {input}: host bits are set; did you mean {suggested}?")]
    HostBitsSet {
        /// The subnet as given.
        input: String,
        /// The same prefix with the host bits cleared.
        suggested: Ipv4Net,
    },
    /// The subnet leaves no room for a gateway and a task.
    #[error("subnet {subnet} is too small: use a prefix of /{max_prefix} or shorter")]
    SubnetTooSmall {
        /// The subnet as given.
        subnet: Ipv4Net,
        /// The longest prefix the allocator accepts.
        max_prefix: u8,
    },
    /// The requested subnet overlaps the subnet of an existing network.
    #[error("subnet {subnet} overlaps network {network:?} ({existing})")]
    Overlap {
        /// The subnet as requested.
        subnet: Ipv4Net,
        /// Name of the network it overlaps.
        network: String,
        /// That network's subnet.
        existing: Ipv4Net,
    },
    /// The requested gateway is not an IPv4 address.
    #[error(
        "invalid gateway {input:?}: expected an IPv4 address inside {subnet}, such as {example}"
    )]
    InvalidGateway {
        /// The gateway as given.
        input: String,
        /// The network's subnet.
        subnet: Ipv4Net,
        /// The first usable address of the subnet.
        example: Ipv4Addr,
    },
    /// The requested gateway is not usable inside the subnet.
    #[error("gateway {gateway} {problem} {subnet}: pick an address from {first} to {last}")]
    GatewayNotUsable {
        /// The gateway as given.
        gateway: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Net,
        /// "is outside", "is the network address of" or "is the broadcast address of".
        problem: &'static str,
        /// First usable address of the subnet.
        first: Ipv4Addr,
        /// Last usable address of the subnet.
        last: Ipv4Addr,
    },
    /// The cluster's default address pool is not an IPv4 CIDR.
    #[error("invalid default address pool {input:?}: expected an IPv4 CIDR such as 10.0.0.0/8")]
    InvalidPool {
        /// The pool as stored in the cluster object.
        input: String,
    },
    /// The cluster's default subnet size does not fit the pool.
    #[error(
        "default subnet size /{size} does not fit the address pool {pool}: use a prefix from /{} to /{max_prefix}",
        .pool.prefix_len()
    )]
    InvalidSubnetSize {
        /// The configured prefix length.
        size: u32,
        /// The default address pool.
        pool: Ipv4Net,
        /// The longest prefix the allocator accepts.
        max_prefix: u8,
    },
    /// Every subnet of the default pool is taken.
    #[error(
        "the default address pool {pool} has no free /{size} subnet left: remove unused networks or give --subnet"
    )]
    PoolExhausted {
        /// The default address pool.
        pool: Ipv4Net,
        /// The prefix length of the subnets taken from it.
        size: u8,
    },
    /// An ingress network exists already and has the ingress VNI.
    #[error("an ingress network already exists ({network:?}); a cluster has only one")]
    IngressExists {
        /// Name of the existing ingress network.
        network: String,
    },
    /// Every VXLAN network identifier is in use.
    #[error(
        "no free VXLAN network identifier left ({first}..={last} are all in use): remove unused networks"
    )]
    VniExhausted {
        /// First VNI of user networks.
        first: u32,
        /// Largest VNI VXLAN can carry.
        last: u32,
    },
    /// The network has no valid subnet yet, so no address can come from it.
    #[error(
        "network {network:?} has no allocated subnet (found {subnet:?}): allocate the network first"
    )]
    NetworkNotAllocated {
        /// Name of the network.
        network: String,
        /// Its `subnet` field as stored.
        subnet: String,
    },
    /// Every usable address of the network's subnet is in use.
    #[error(
        "network {network:?} ({subnet}) has no free address left ({in_use} in use): remove unused services, or use a network with a larger subnet"
    )]
    AddressesExhausted {
        /// Name of the network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
        /// How many addresses of the subnet are taken, gateway included.
        in_use: usize,
    },
    /// A service names a network id the caller did not pass.
    #[error("service {service:?} uses network {network_id:?}, which does not exist")]
    UnknownNetwork {
        /// Name of the service.
        service: String,
        /// The network id it names.
        network_id: String,
    },
}
