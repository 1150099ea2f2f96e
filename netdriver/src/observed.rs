//! What the kernel holds, as far as the driver is concerned (the "observed" side of planning).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::filter::FilterTable;
use crate::lb::LbTable;
use crate::model::{MacAddr, Peer};
use crate::names::VXLAN;
use crate::op::{NsRef, Op};

/// The driver-owned part of a node's kernel networking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Driver-owned links of the host namespace: the gateway bridge and its `mgw*` ports.
    pub host: NsState,
    /// `net.ipv4.ip_forward` of the host namespace.
    pub forwarding: bool,
    /// Comment of the NAT table (`table ip <gateway bridge name>`) if it exists; it encodes the
    /// rendered parameters, see [`crate::nat::comment`].
    pub nat: Option<String>,
    /// The members-only filter of the host namespace (`table ip mini_filter`), if present.
    pub filter: Option<FilterTable>,
    /// Files of `run_dir/netns`, by name; `None` when the file is not a live namespace (a
    /// leftover of a crash between creating the file and mounting it).
    pub namespaces: BTreeMap<String, Option<NsState>>,
}

/// The content of one network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsState {
    /// Links by name.
    pub links: BTreeMap<String, LinkState>,
    /// Permanent IPv4 neighbour entries on `vxlan0`.
    pub neighbours: BTreeMap<Ipv4Addr, MacAddr>,
    /// FDB entries of `vxlan0` (`self`, with a remote VTEP).
    pub fdb: BTreeMap<MacAddr, Ipv4Addr>,
    /// The main table's IPv4 default route.
    pub default_route: Option<DefaultRoute>,
    /// The `mini_lb` nftables table (VIPs, ingress, published ports), if present. Read in the
    /// host namespace and in sandboxes, not in overlay namespaces.
    pub lb: Option<LbTable>,
}

/// A default route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Next hop.
    pub gateway: Ipv4Addr,
    /// Output interface name.
    pub dev: String,
}

/// One link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Link type.
    pub kind: LinkKind,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, when known.
    pub mac: Option<MacAddr>,
    /// Administratively up.
    pub up: bool,
    /// Name of the bridge it is enslaved to.
    pub master: Option<String>,
    /// Bridge port isolation (`bridge link set … isolated on`).
    pub isolated: bool,
    /// IPv4 addresses.
    pub addrs: BTreeSet<Ipv4Net>,
}

/// Link types the driver distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A Linux bridge.
    Bridge,
    /// A VXLAN device.
    Vxlan(VxlanState),
    /// One end of a veth pair.
    Veth,
    /// Anything else (loopback, …).
    Other,
}

/// VXLAN settings read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanState {
    /// VNI.
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// Local VTEP.
    pub local: Option<Ipv4Addr>,
    /// Source-MAC learning.
    pub learning: bool,
    /// ARP proxy.
    pub proxy: bool,
    /// Netlink notification on L2 miss.
    pub l2miss: bool,
    /// Netlink notification on L3 miss.
    pub l3miss: bool,
}

impl NsState {
    /// The remote peers programmed here: neighbour entries joined with FDB entries by MAC.
    /// Half-programmed entries (neighbour without FDB) are left out; see the raw maps for them.
    pub fn peers(&self) -> Vec<Peer> {
        self.neighbours
            .iter()
            .filter_map(|(ip, mac)| {
                self.fdb.get(mac).map(|vtep| Peer {
                    ip: *ip,
                    mac: *mac,
                    vtep: *vtep,
                })
            })
            .collect()
    }
}

impl Observed {
    /// Updates the picture after a peer, filter or `mini_lb` operation succeeded. Any other
    /// operation is left alone: its effects (cascades of veth pairs, namespaces) are read back
    /// from the kernel (see [`Touched`]).
    pub(crate) fn record_op(&mut self, op: &Op) {
        fn ns_of<'a>(obs: &'a mut Observed, ns: &str) -> Option<&'a mut NsState> {
            obs.namespaces.get_mut(ns).and_then(Option::as_mut)
        }
        fn lb_ns<'a>(obs: &'a mut Observed, ns: &NsRef) -> Option<&'a mut NsState> {
            match ns {
                NsRef::Host => Some(&mut obs.host),
                NsRef::Named(n) => ns_of(obs, n),
            }
        }
        match op {
            Op::SetLbTable { ns, spec } => {
                if let Some(st) = lb_ns(self, ns) {
                    st.lb = Some(LbTable::from_spec(spec));
                }
            }
            Op::DeleteLbTable { ns } => {
                if let Some(st) = lb_ns(self, ns) {
                    st.lb = None;
                }
            }
            Op::SetLbEntry {
                ns,
                key,
                target,
                change,
                element,
                ..
            } => {
                if let Some(t) = lb_ns(self, ns).and_then(|st| st.lb.as_mut()) {
                    // An edit that does not fit leaves the entry unknown: re-made next time.
                    t.set_entry(*key, target, change, *element);
                }
            }
            Op::DelLbEntry { ns, key, .. } => {
                if let Some(t) = lb_ns(self, ns).and_then(|st| st.lb.as_mut()) {
                    t.del_entry(key);
                }
            }
            Op::SetFilter { filter } => {
                self.filter = Some(FilterTable {
                    comment: crate::filter::comment(&filter.ports),
                    members: filter.members.clone(),
                    dropped: 0,
                });
            }
            Op::SetFilterMembers { add, remove } => {
                if let Some(t) = self.filter.as_mut() {
                    t.members.extend(add.iter().copied());
                    for a in remove {
                        t.members.remove(a);
                    }
                }
            }
            Op::DeleteFilter => self.filter = None,
            Op::SetNeighbour { ns, ip, mac } => {
                if let Some(st) = ns_of(self, ns) {
                    st.neighbours.insert(*ip, *mac);
                }
            }
            Op::DelNeighbour { ns, ip } => {
                if let Some(st) = ns_of(self, ns) {
                    st.neighbours.remove(ip);
                }
            }
            Op::SetFdb { ns, mac, vtep } => {
                if let Some(st) = ns_of(self, ns) {
                    st.fdb.insert(*mac, *vtep);
                }
            }
            Op::DelFdb { ns, mac } => {
                if let Some(st) = ns_of(self, ns) {
                    st.fdb.remove(mac);
                }
            }
            _ => {}
        }
    }
}

/// The parts of the kernel state that structural operations changed: what must be read back
/// after them for the picture to stay exact ([`Kernel::observe_part`](crate::Kernel::observe_part)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// The host namespace's part: its driver-owned links and `mini_lb` table, `ip_forward`,
    /// the NAT table and the members-only filter.
    pub host: bool,
    /// Namespace files (`run_dir/netns`), by name; one that no longer exists is read as gone.
    pub namespaces: BTreeSet<String>,
    /// Overlay namespaces of `namespaces` whose `vxlan0` the apply did not touch: only their
    /// links changed (a sandbox's port attached or gone). They are read back without the
    /// neighbour and FDB entries of `vxlan0`, whose picture the apply kept exact op by op: a
    /// dump of those is one entry per endpoint of the network (2,000 at 50 hosts), and each
    /// task start on a node read both back in full.
    pub peers_kept: BTreeSet<String>,
}

impl Touched {
    /// True when nothing was touched.
    pub fn is_empty(&self) -> bool {
        !self.host && self.namespaces.is_empty()
    }

    /// Adds what `op` changes besides what [`Observed::record_op`] records, judged on `before`
    /// (the picture before the apply, for the veth peers of links that go).
    pub(crate) fn add(&mut self, op: &Op, before: &Observed) {
        match op {
            Op::EnableForwarding
            | Op::CreateGatewayBridge { .. }
            | Op::SetNat { .. }
            | Op::DeleteNat { .. } => self.host = true,
            Op::CreateOverlay { ns, .. } | Op::CreateSandbox { ns } => self.add_whole(ns),
            Op::DeleteNamespace { ns } => {
                self.add_whole(ns);
                let named = NsRef::Named(ns.clone());
                if let Some(Some(st)) = before.namespaces.get(ns) {
                    for link in st.links.keys() {
                        self.add_peers(&named, link, before);
                    }
                }
            }
            Op::DeleteLink { ns, name } => {
                match ns {
                    NsRef::Named(o) if crate::names::is_overlay_ns(o) && name != VXLAN => {
                        self.add_links(o);
                    }
                    _ => self.add_ns(ns),
                }
                self.add_peers(ns, name, before);
            }
            Op::AttachOverlay {
                sandbox, overlay, ..
            } => {
                self.add_whole(sandbox);
                self.add_links(overlay);
            }
            Op::AttachGateway { sandbox, .. } => {
                self.add_whole(sandbox);
                self.host = true;
            }
            // Recorded exactly (record_op).
            Op::SetNeighbour { .. }
            | Op::DelNeighbour { .. }
            | Op::SetFdb { .. }
            | Op::DelFdb { .. }
            | Op::SetLbTable { .. }
            | Op::SetLbEntry { .. }
            | Op::DelLbEntry { .. }
            | Op::DeleteLbTable { .. }
            | Op::SetFilter { .. }
            | Op::SetFilterMembers { .. }
            | Op::DeleteFilter => {}
        }
    }

    fn add_ns(&mut self, ns: &NsRef) {
        match ns {
            NsRef::Host => self.host = true,
            NsRef::Named(n) => self.add_whole(n),
        }
    }

    /// Namespace `ns` is read back whole.
    fn add_whole(&mut self, ns: &str) {
        self.namespaces.insert(ns.to_string());
        self.peers_kept.remove(ns);
    }

    /// Only the links of overlay namespace `ns` changed: it is read back without the entries
    /// of `vxlan0`, unless something else reads it whole.
    fn add_links(&mut self, ns: &str) {
        if self.namespaces.insert(ns.to_string()) {
            self.peers_kept.insert(ns.to_string());
        }
    }

    /// Where the other end of link `name` of `ns` may be (deleting a veth deletes its peer),
    /// by the driver's naming: a sandbox's interfaces pair with its gateway port in the host
    /// and its port in overlays; those ports pair with the sandboxes their names derive from.
    fn add_peers(&mut self, ns: &NsRef, name: &str, before: &Observed) {
        use crate::names;
        let sandboxes_starting = |prefix: &str| -> Vec<String> {
            before
                .namespaces
                .keys()
                .filter(|n| !names::is_overlay_ns(n) && n.starts_with(prefix))
                .cloned()
                .collect()
        };
        match ns {
            NsRef::Host => {
                if let Some(sb) = name.strip_prefix(names::GATEWAY_PORT_PREFIX) {
                    self.namespaces.extend(sandboxes_starting(sb));
                }
            }
            NsRef::Named(n) if names::is_overlay_ns(n) => {
                if let Some(sb) = name.strip_prefix(names::OVERLAY_PORT_PREFIX) {
                    self.namespaces.extend(sandboxes_starting(sb));
                }
            }
            NsRef::Named(sb) => {
                if name == names::LOOPBACK {
                    return;
                }
                if before.host.links.contains_key(&names::gateway_port(sb)) {
                    self.host = true;
                }
                let port = names::overlay_port(sb);
                for (o, st) in &before.namespaces {
                    if names::is_overlay_ns(o)
                        && st.as_ref().is_some_and(|s| s.links.contains_key(&port))
                    {
                        self.add_links(o);
                    }
                }
            }
        }
    }
}

impl Observed {
    /// Replaces the `touched` parts of this picture with those of `fresh` (a read of at least
    /// those parts): a touched namespace missing from `fresh` is gone. The `vxlan0` entries of
    /// [`Touched::peers_kept`] namespaces stay as this picture has them.
    pub(crate) fn merge(&mut self, touched: &Touched, fresh: Observed) {
        let Observed {
            host,
            forwarding,
            nat,
            filter,
            mut namespaces,
        } = fresh;
        if touched.host {
            self.host = host;
            self.forwarding = forwarding;
            self.nat = nat;
            self.filter = filter;
        }
        for name in &touched.namespaces {
            match namespaces.remove(name) {
                Some(mut st) => {
                    if touched.peers_kept.contains(name)
                        && let (Some(st), Some(Some(old))) =
                            (&mut st, self.namespaces.get_mut(name))
                    {
                        st.neighbours = std::mem::take(&mut old.neighbours);
                        st.fdb = std::mem::take(&mut old.fdb);
                    }
                    self.namespaces.insert(name.clone(), st);
                }
                None => {
                    self.namespaces.remove(name);
                }
            }
        }
    }
}
