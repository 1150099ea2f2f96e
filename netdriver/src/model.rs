//! The desired state the worker hands to the driver, and the driver's configuration.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Docker's convention for container MACs: `02:42:` followed by the four IPv4 bytes.
    pub fn for_ip(ip: Ipv4Addr) -> Self {
        let [a, b, c, d] = ip.octets();
        MacAddr([0x02, 0x42, a, b, c, d])
    }

    /// The six bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True for `00:00:00:00:00:00` (the VXLAN "default destination" entry).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not a MAC address of the form `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex bytes such as 02:42:0a:00:00:02)")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// Static configuration of the driver on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// The daemon's run directory; namespace files live in `run_dir/netns/`.
    pub run_dir: PathBuf,
    /// Namespace file of the namespace that plays "the node's own namespace" (underlay, gateway
    /// bridge, NAT). `None` means the namespace of the calling process.
    pub host_netns: Option<PathBuf>,
    /// The node's data-path address: the local VTEP of every `vxlan0`.
    pub vtep: Ipv4Addr,
    /// UDP port of the VXLAN data path (Docker's `--data-path-port`, default 4789).
    pub data_path_port: u16,
    /// The NAT bridge that gives sandboxes egress.
    pub gateway_bridge: GatewayBridgeConfig,
}

impl DriverConfig {
    /// A configuration with Docker's defaults: port 4789, `mini_gwbridge` on 172.18.0.0/16, the
    /// calling process's namespace as host namespace.
    pub fn new(run_dir: impl Into<PathBuf>, vtep: Ipv4Addr) -> Self {
        DriverConfig {
            run_dir: run_dir.into(),
            host_netns: None,
            vtep,
            data_path_port: 4789,
            gateway_bridge: GatewayBridgeConfig::default(),
        }
    }

    /// `run_dir/netns`, the folder of namespace files.
    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }
}

/// The gateway bridge (`docker_gwbridge`'s counterpart) in the host namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayBridgeConfig {
    /// Bridge name; also the name of the nftables table (`table ip <name>`) that masquerades it.
    pub name: String,
    /// Subnet; the bridge holds its first host address, sandboxes get the following ones.
    pub subnet: Ipv4Net,
}

impl GatewayBridgeConfig {
    /// The bridge's own address: the subnet's first host address, with the subnet's prefix.
    pub fn address(&self) -> Ipv4Net {
        let first = u32::from(self.subnet.network()).wrapping_add(1);
        Ipv4Net::new(Ipv4Addr::from(first), self.subnet.prefix_len())
            .expect("prefix length comes from a valid subnet")
    }
}

impl Default for GatewayBridgeConfig {
    fn default() -> Self {
        GatewayBridgeConfig {
            name: "mini_gwbridge".to_string(),
            subnet: "172.18.0.0/16".parse().expect("valid literal"),
        }
    }
}

/// Everything the node's kernel networking should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Overlay networks known on this node (with their remote peers). A network's namespace exists
    /// only while a sandbox here is attached to it, or while it is [`OverlayNetwork::pinned`].
    pub networks: Vec<OverlayNetwork>,
    /// Task sandboxes on this node.
    pub sandboxes: Vec<Sandbox>,
    /// The members-only filter of the gossip and data-path ports (`None`: no filter, the node
    /// is in no cluster).
    pub members: Option<crate::filter::MemberFilter>,
}

/// One overlay network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayNetwork {
    /// Network id; its first 10 characters name the namespace `1-<id>`.
    pub id: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// The network's subnet.
    pub subnet: Ipv4Net,
    /// Gateway address, held by `br0` with the subnet's prefix.
    pub gateway: Ipv4Addr,
    /// Remote endpoints. Entries whose VTEP is this node's own are ignored.
    pub peers: Vec<Peer>,
    /// Keep the namespace even when no sandbox on this node uses the network (ingress).
    pub pinned: bool,
}

/// A remote endpoint of an overlay network: programmed as a neighbour and an FDB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    /// Overlay IP of the endpoint.
    pub ip: Ipv4Addr,
    /// MAC of the endpoint.
    pub mac: MacAddr,
    /// Data-path address of the node running it.
    pub vtep: Ipv4Addr,
}

/// A task's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Task id; its first 12 characters name the namespace file (`ingress_sbox` fits exactly).
    pub id: String,
    /// Overlay attachments, in interface order (`eth0`, `eth1`, …). The gateway interface follows.
    pub attachments: Vec<Attachment>,
}

/// One overlay interface of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The network (must be in [`DesiredState::networks`]).
    pub network_id: String,
    /// Address with the network's prefix.
    pub addr: Ipv4Net,
    /// Interface MAC (by convention [`MacAddr::for_ip`]).
    pub mac: MacAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_and_follows_docker_convention() {
        let mac = MacAddr::for_ip(Ipv4Addr::new(192, 168, 200, 3));
        assert_eq!(mac.to_string(), "02:42:c0:a8:c8:03");
        assert_eq!("02:42:c0:a8:c8:03".parse::<MacAddr>().unwrap(), mac);
        assert!("02:42:c0:a8:c8".parse::<MacAddr>().is_err());
        assert!("02:42:c0:a8:c8:03:01".parse::<MacAddr>().is_err());
    }

    #[test]
    fn gateway_bridge_address_is_first_host() {
        let gw = GatewayBridgeConfig::default();
        assert_eq!(gw.address().to_string(), "172.18.0.1/16");
    }
}
