//! The desired load-balancing state: service VIPs and the routing mesh (ingress, published
//! ports). Pure data, handed to [`crate::NetDriver::apply_with`] next to the [`crate::DesiredState`].

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// Load balancing on this node: service VIPs and the ingress routing mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadBalancing {
    /// One entry per (service, network) that has a VIP. Every task sandbox on this node attached
    /// to `network_id` balances connections to the VIP over `backends`.
    pub services: Vec<ServiceLb>,
    /// The routing mesh: `ingress_sbox` and the published ports; `None` removes both.
    pub ingress: Option<Ingress>,
}

/// A service's VIP on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLb {
    /// Service id (for error messages; the kernel objects are named after the VIP).
    pub service_id: String,
    /// The network the VIP belongs to (must be in [`crate::DesiredState::networks`]).
    pub network_id: String,
    /// The virtual IP, inside the network's subnet.
    pub vip: Ipv4Addr,
    /// IPs on this network of the service's RUNNING tasks, on any node (from gossip). A task
    /// leaves this list before it is stopped. Empty: connections to the VIP are refused
    /// (TCP reset, ICMP port unreachable), not blackholed.
    pub backends: Vec<Ipv4Addr>,
}

/// The ingress sandbox (`RUN/netns/ingress_sbox`) and the ports published through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// The `ingress` overlay network (must be in [`crate::DesiredState::networks`]).
    pub network_id: String,
    /// `ingress_sbox`'s own address on it (with the network's prefix). Its address on the
    /// gateway bridge is chosen by the driver, like a task sandbox's.
    pub addr: Ipv4Net,
    /// Published ports; each must be unique by (protocol, published).
    pub ports: Vec<PublishedPort>,
}

/// One published port: `PUBLISHED` on every node's addresses → `TARGET` on a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// Transport protocol.
    pub protocol: Protocol,
    /// The port on the nodes' addresses.
    pub published: u16,
    /// The tasks' ingress IPs (any node). Empty: connections are refused.
    pub backends: Vec<Ipv4Addr>,
    /// The port the tasks listen on.
    pub target: u16,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp` (nft's spelling too).
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IP protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`).
    pub fn number(&self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was neither `tcp` nor `udp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a protocol (expected tcp or udp)")]
pub struct ParseProtocolError(pub String);

impl FromStr for Protocol {
    type Err = ParseProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(ParseProtocolError(s.to_string())),
        }
    }
}
