//! Operations: the vocabulary between the planner and the kernel.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::filter::MemberFilter;
use crate::lb::{EntryParts, Flavour, LbKey, LbSpec, LbTarget, SlotChange};
use crate::model::MacAddr;

/// Which namespace an operation addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NsRef {
    /// The node's own namespace ([`crate::DriverConfig::host_netns`]).
    Host,
    /// A namespace file in `run_dir/netns`.
    Named(String),
}

impl fmt::Display for NsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsRef::Host => f.write_str("host namespace"),
            NsRef::Named(n) => write!(f, "netns {n}"),
        }
    }
}

/// One idempotent-enough change to the kernel. Each op is a unit: if it fails halfway, the
/// kernel implementation removes what it had created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `net.ipv4.ip_forward = 1` in the host namespace.
    EnableForwarding,
    /// Create the gateway bridge (MTU 1500, up) holding `addr`.
    CreateGatewayBridge {
        /// Bridge name.
        name: String,
        /// Bridge address with prefix.
        addr: Ipv4Net,
    },
    /// Replace (atomically) the NAT table masquerading `subnet` leaving through other links.
    SetNat {
        /// Table and bridge name.
        name: String,
        /// Gateway subnet.
        subnet: Ipv4Net,
    },
    /// Delete the NAT table.
    DeleteNat {
        /// Table name.
        name: String,
    },
    /// Create an overlay namespace: file, `lo` up, `br0` with the gateway, `vxlan0` (created from
    /// the host namespace so its UDP socket stays in the underlay) enslaved to `br0`.
    CreateOverlay {
        /// Namespace file name.
        ns: String,
        /// VNI.
        vni: u32,
        /// Gateway with the subnet's prefix, for `br0`.
        gateway: Ipv4Net,
        /// VXLAN UDP port.
        port: u16,
        /// Local VTEP.
        local: Ipv4Addr,
    },
    /// Create a sandbox namespace with `lo` up.
    CreateSandbox {
        /// Namespace file name.
        ns: String,
    },
    /// Delete a namespace: its links (so veth peers elsewhere go too), the mount, the file.
    DeleteNamespace {
        /// Namespace file name.
        ns: String,
    },
    /// Delete a link (a veth takes its peer with it). Absent links are not an error.
    DeleteLink {
        /// Where.
        ns: NsRef,
        /// Link name.
        name: String,
    },
    /// Connect a sandbox to an overlay: veth `port` (in the overlay, on `br0`) ↔ `ifname` (in
    /// the sandbox, with `addr` and `mac`), MTU 1450.
    AttachOverlay {
        /// Sandbox namespace.
        sandbox: String,
        /// Overlay namespace.
        overlay: String,
        /// Interface name in the sandbox.
        ifname: String,
        /// Host-end name in the overlay namespace.
        port: String,
        /// Address with prefix.
        addr: Ipv4Net,
        /// MAC of the sandbox end.
        mac: MacAddr,
    },
    /// Connect a sandbox to the gateway bridge: veth `port` (host, isolated port of `bridge`) ↔
    /// `ifname` (sandbox, `addr`, `mac`, default route via `gateway`), MTU 1500.
    AttachGateway {
        /// Sandbox namespace.
        sandbox: String,
        /// Interface name in the sandbox.
        ifname: String,
        /// Host-end name.
        port: String,
        /// Gateway bridge name.
        bridge: String,
        /// Address with prefix.
        addr: Ipv4Net,
        /// MAC of the sandbox end.
        mac: MacAddr,
        /// The bridge's address: next hop of the default route.
        gateway: Ipv4Addr,
    },
    /// `neigh replace <ip> lladdr <mac> dev vxlan0 nud permanent`.
    SetNeighbour {
        /// Overlay namespace.
        ns: String,
        /// Peer IP.
        ip: Ipv4Addr,
        /// Peer MAC.
        mac: MacAddr,
    },
    /// Delete the neighbour entry of `ip` on `vxlan0`.
    DelNeighbour {
        /// Overlay namespace.
        ns: String,
        /// Peer IP.
        ip: Ipv4Addr,
    },
    /// `bridge fdb replace <mac> dev vxlan0 dst <vtep> self permanent`.
    SetFdb {
        /// Overlay namespace.
        ns: String,
        /// Peer MAC.
        mac: MacAddr,
        /// Remote VTEP.
        vtep: Ipv4Addr,
    },
    /// Delete the FDB entry of `mac` on `vxlan0`.
    DelFdb {
        /// Overlay namespace.
        ns: String,
        /// Peer MAC.
        mac: MacAddr,
    },
    /// Replace (atomically) the whole `mini_lb` table of a namespace. For
    /// [`Flavour::Ingress`] also sets `ip_forward` there.
    SetLbTable {
        /// Where.
        ns: NsRef,
        /// The table.
        spec: LbSpec,
    },
    /// Create or change one entry of an existing `mini_lb` table, in one transaction: its
    /// backend map and rule as `change` says and, unless it exists, its verdict-map element.
    SetLbEntry {
        /// Where.
        ns: NsRef,
        /// The table's flavour (names the map).
        flavour: Flavour,
        /// The key.
        key: LbKey,
        /// Its new target.
        target: LbTarget,
        /// How its backend map and rule get there.
        change: SlotChange,
        /// Add the map element (false: it exists and jumps to this chain already; adding a
        /// jump makes the kernel re-validate every chain the map reaches).
        element: bool,
    },
    /// Delete one entry of a `mini_lb` table: what of it exists.
    DelLbEntry {
        /// Where.
        ns: NsRef,
        /// The table's flavour.
        flavour: Flavour,
        /// The key.
        key: LbKey,
        /// Which of its verdict-map element, chain and backend map exist.
        parts: EntryParts,
    },
    /// Delete the `mini_lb` table of a namespace.
    DeleteLbTable {
        /// Where.
        ns: NsRef,
    },
    /// Replace (atomically) the host's members-only filter ([`crate::filter`]).
    SetFilter {
        /// The wanted filter.
        filter: MemberFilter,
    },
    /// Add and delete members of the host's filter, in one transaction.
    SetFilterMembers {
        /// Addresses that became members.
        add: Vec<Ipv4Addr>,
        /// Addresses that are no longer members.
        remove: Vec<Ipv4Addr>,
    },
    /// Delete the host's members-only filter.
    DeleteFilter,
}

impl Op {
    /// True for neighbour/FDB operations (the cheap, frequent kind).
    pub fn is_peer_op(&self) -> bool {
        matches!(
            self,
            Op::SetNeighbour { .. }
                | Op::DelNeighbour { .. }
                | Op::SetFdb { .. }
                | Op::DelFdb { .. }
        )
    }

    /// True for operations on `mini_lb` tables.
    pub fn is_lb_op(&self) -> bool {
        matches!(
            self,
            Op::SetLbTable { .. }
                | Op::SetLbEntry { .. }
                | Op::DelLbEntry { .. }
                | Op::DeleteLbTable { .. }
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::EnableForwarding => write!(f, "enable ip_forward in the host namespace"),
            Op::CreateGatewayBridge { name, addr } => write!(f, "create bridge {name} {addr}"),
            Op::SetNat { name, subnet } => write!(f, "set nft table ip {name} for {subnet}"),
            Op::DeleteNat { name } => write!(f, "delete nft table ip {name}"),
            Op::CreateOverlay { ns, vni, .. } => write!(f, "create overlay {ns} (vni {vni})"),
            Op::CreateSandbox { ns } => write!(f, "create sandbox {ns}"),
            Op::DeleteNamespace { ns } => write!(f, "delete namespace {ns}"),
            Op::DeleteLink { ns, name } => write!(f, "delete link {name} in {ns}"),
            Op::AttachOverlay {
                sandbox,
                overlay,
                ifname,
                addr,
                ..
            } => write!(f, "attach {sandbox}:{ifname} {addr} to {overlay}"),
            Op::AttachGateway {
                sandbox,
                ifname,
                bridge,
                addr,
                ..
            } => write!(f, "attach {sandbox}:{ifname} {addr} to {bridge}"),
            Op::SetNeighbour { ns, ip, mac } => write!(f, "neigh {ip} lladdr {mac} in {ns}"),
            Op::DelNeighbour { ns, ip } => write!(f, "neigh del {ip} in {ns}"),
            Op::SetFdb { ns, mac, vtep } => write!(f, "fdb {mac} dst {vtep} in {ns}"),
            Op::DelFdb { ns, mac } => write!(f, "fdb del {mac} in {ns}"),
            Op::SetLbTable { ns, spec } => write!(
                f,
                "set nft table ip mini_lb ({:?}, {} entries) in {ns}",
                spec.flavour,
                spec.entries.len()
            ),
            Op::SetLbEntry {
                ns, key, target, ..
            } => {
                write!(f, "set {key} -> {:?}", target.backends)?;
                if let Some(p) = target.port {
                    write!(f, ":{p}")?;
                }
                write!(f, " in {ns}")
            }
            Op::DelLbEntry { ns, key, .. } => write!(f, "delete {key} in {ns}"),
            Op::DeleteLbTable { ns } => write!(f, "delete nft table ip mini_lb in {ns}"),
            Op::SetFilter { filter } => write!(
                f,
                "set nft table ip mini_filter (udp {:?} from {} members)",
                filter.ports,
                filter.members.len()
            ),
            Op::SetFilterMembers { add, remove } => {
                write!(f, "mini_filter members +{add:?} -{remove:?}")
            }
            Op::DeleteFilter => write!(f, "delete nft table ip mini_filter"),
        }
    }
}
