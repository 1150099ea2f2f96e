//! Reading the driver-owned state back from the kernel.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::LinuxKernel;
use crate::error::Error;
use crate::lb::{self, LbTable, TABLE};
use crate::model::MacAddr;
use crate::names::{self, VXLAN};
use crate::netns;
use crate::nft_read::Depth;
use crate::observed::{DefaultRoute, LinkKind, LinkState, NsState, Observed, Touched, VxlanState};
use crate::op::NsRef;

const MAIN_TABLE: u8 = 254;

fn mac(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

/// A link as dumped, before master indexes are resolved to names.
struct RawLink {
    index: u32,
    name: String,
    master: Option<u32>,
    state: LinkState,
}

fn parse_link(msg: &LinkMessage) -> RawLink {
    let mut name = String::new();
    let mut master = None;
    let mut state = LinkState {
        kind: LinkKind::Other,
        mtu: 0,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        isolated: false,
        addrs: Default::default(),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Mtu(m) => state.mtu = *m,
            LinkAttribute::Address(a) => state.mac = mac(a),
            LinkAttribute::Controller(i) => master = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Bridge) => state.kind = LinkKind::Bridge,
                        LinkInfo::Kind(InfoKind::Veth) => state.kind = LinkKind::Veth,
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            state.kind = LinkKind::Vxlan(parse_vxlan(v));
                        }
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            state.isolated = p.contains(&InfoBridgePort::Isolated(true));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    RawLink {
        index: msg.header.index,
        name,
        master,
        state,
    }
}

fn parse_vxlan(infos: &[InfoVxlan]) -> VxlanState {
    let mut v = VxlanState {
        vni: 0,
        port: 0,
        local: None,
        learning: false,
        proxy: false,
        l2miss: false,
        l3miss: false,
    };
    for i in infos {
        match i {
            InfoVxlan::Id(id) => v.vni = *id,
            InfoVxlan::Port(p) => v.port = *p,
            InfoVxlan::Local(a) => v.local = Some(*a),
            InfoVxlan::Learning(b) => v.learning = *b,
            InfoVxlan::Proxy(b) => v.proxy = *b,
            InfoVxlan::L2Miss(b) => v.l2miss = *b,
            InfoVxlan::L3Miss(b) => v.l3miss = *b,
            _ => {}
        }
    }
    v
}

/// Whether a read of a namespace includes the neighbour and FDB entries of its `vxlan0`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peers {
    Read,
    Skip,
}

impl LinuxKernel {
    pub(super) async fn observe_all(&self) -> Result<Observed, Error> {
        let mut observed = self.observe_host().await?;
        let dir = self.config.netns_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e.collect::<Result<Vec<_>, _>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
        .map_err(|e| Error::os(dir.display().to_string(), "readdir", e))?;
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let state = self.read_named(&name, Peers::Read).await?;
            observed.namespaces.insert(name, state);
        }
        Ok(observed)
    }

    /// Reads the host part (when `touched.host`) and the named namespace files of `touched`,
    /// without the `vxlan0` entries of its [`Touched::peers_kept`] namespaces.
    pub(super) async fn observe_touched(&self, touched: &Touched) -> Result<Observed, Error> {
        let mut observed = if touched.host {
            self.observe_host().await?
        } else {
            Observed::default()
        };
        for name in &touched.namespaces {
            let path = self.named_path(name);
            if std::fs::symlink_metadata(&path).is_ok() {
                let peers = if touched.peers_kept.contains(name) {
                    Peers::Skip
                } else {
                    Peers::Read
                };
                let state = self.read_named(name, peers).await?;
                observed.namespaces.insert(name.clone(), state);
            }
        }
        Ok(observed)
    }

    /// The host namespace's part of [`Observed`] (no namespace files).
    async fn observe_host(&self) -> Result<Observed, Error> {
        let bridge = self.config.gateway_bridge.name.clone();
        let host = self.handle(&NsRef::Host).await?;
        let mut host_state = self
            .read_ns(
                &host,
                &NsRef::Host,
                |n| n == bridge || n.starts_with(names::GATEWAY_PORT_PREFIX),
                Peers::Skip,
            )
            .await?;
        host_state.lb = self.read_lb(&NsRef::Host).await?;
        let forwarding = self.ip_forward(false).await?;
        let table = &self.config.gateway_bridge.name;
        let nat = self
            .read_table_in(&NsRef::Host, table, Depth::Comment)
            .await?
            .and_then(|d| d.comment);
        let filter = self.read_filter().await?;
        Ok(Observed {
            host: host_state,
            forwarding,
            nat,
            filter,
            namespaces: BTreeMap::new(),
        })
    }

    /// What the namespace file `name` holds; `None` when it is not a live namespace.
    async fn read_named(&self, name: &str, peers: Peers) -> Result<Option<NsState>, Error> {
        if !netns::is_netns(&self.named_path(name)) {
            return Ok(None);
        }
        let ns = NsRef::Named(name.to_string());
        let h = self.handle(&ns).await?;
        let mut st = self.read_ns(&h, &ns, |_| true, peers).await?;
        if !names::is_overlay_ns(name) {
            st.lb = self.read_lb(&ns).await?;
        }
        Ok(Some(st))
    }

    /// Reads the host's members-only filter (`None` when there is none).
    pub(crate) async fn read_filter(&self) -> Result<Option<crate::filter::FilterTable>, Error> {
        let dump = self
            .read_table_in(&NsRef::Host, crate::filter::TABLE, Depth::All)
            .await?;
        // A table it cannot read is replaced whole by the next apply.
        Ok(dump.as_ref().map(crate::filter::from_dump))
    }

    /// Reads the `mini_lb` table of a namespace (`None` when it has none).
    async fn read_lb(&self, ns: &NsRef) -> Result<Option<LbTable>, Error> {
        let dump = self.read_table_in(ns, TABLE, Depth::All).await?;
        // Content it does not recognise counts as foreign: the planner replaces it.
        Ok(dump.as_ref().map(lb::from_dump))
    }

    /// Reads the links accepted by `keep` with their addresses; in namespaces other than the
    /// host's also the default route and, with [`Peers::Read`], the neighbour/FDB entries of
    /// `vxlan0`.
    async fn read_ns(
        &self,
        h: &Handle,
        ns: &NsRef,
        keep: impl Fn(&str) -> bool,
        peers: Peers,
    ) -> Result<NsState, Error> {
        let nl = |call, e| Error::netlink(format!("dump in {ns}"), call, e);
        self.counters.read();
        let raw: Vec<RawLink> = h
            .link()
            .get()
            .execute()
            .map_ok(|m| parse_link(&m))
            .try_collect()
            .await
            .map_err(|e| nl("RTM_GETLINK", e))?;
        let names_by_index: BTreeMap<u32, String> =
            raw.iter().map(|l| (l.index, l.name.clone())).collect();
        let mut by_index: BTreeMap<u32, (String, LinkState)> = BTreeMap::new();
        for mut l in raw.into_iter().filter(|l| keep(&l.name)) {
            l.state.master = l.master.and_then(|i| names_by_index.get(&i).cloned());
            by_index.insert(l.index, (l.name, l.state));
        }

        self.counters.read();
        let addrs: Vec<_> = h
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("RTM_GETADDR", e))?;
        for a in addrs {
            let Some((_, link)) = by_index.get_mut(&a.header.index) else {
                continue;
            };
            let ip = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let ip = ip.or_else(|| {
                a.attributes.iter().find_map(|at| match at {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(net) = ip.and_then(|ip| Ipv4Net::new(ip, a.header.prefix_len).ok()) {
                link.addrs.insert(net);
            }
        }

        let mut st = NsState::default();
        if *ns != NsRef::Host {
            let vx = by_index
                .iter()
                .find(|(_, (n, _))| n == VXLAN)
                .map(|(i, _)| *i);
            if let (Some(vx), Peers::Read) = (vx, peers) {
                self.read_peers(h, ns, vx, &mut st).await?;
            }
            self.counters.read();
            let routes: Vec<_> = h
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .map_err(|e| nl("RTM_GETROUTE", e))?;
            for r in routes {
                if r.header.destination_prefix_length != 0 || r.header.table != MAIN_TABLE {
                    continue;
                }
                let gw = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                });
                let dev = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => by_index.get(i).map(|(n, _)| n.clone()),
                    _ => None,
                });
                if let (Some(gateway), Some(dev)) = (gw, dev) {
                    st.default_route = Some(DefaultRoute { gateway, dev });
                }
            }
        }
        st.links = by_index.into_values().collect();
        Ok(st)
    }

    async fn read_peers(
        &self,
        h: &Handle,
        ns: &NsRef,
        vx: u32,
        st: &mut NsState,
    ) -> Result<(), Error> {
        let nl = |call, e| Error::netlink(format!("{VXLAN} in {ns}"), call, e);
        self.counters.read();
        let neigh: Vec<_> = h
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("RTM_GETNEIGH", e))?;
        for n in neigh {
            if n.header.ifindex != vx || n.header.state != NeighbourState::Permanent {
                continue;
            }
            let ip = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let lla = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => mac(l),
                _ => None,
            });
            if let (Some(ip), Some(lla)) = (ip, lla) {
                st.neighbours.insert(ip, lla);
            }
        }
        self.counters.read();
        let fdb: Vec<_> = h
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("RTM_GETNEIGH(AF_BRIDGE)", e))?;
        for n in fdb {
            if n.header.ifindex != vx || !n.header.flags.contains(NeighbourFlags::Own) {
                continue;
            }
            // With AF_BRIDGE the crate cannot tell the address family: raw bytes.
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                }
                _ => None,
            });
            let lla = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => mac(l),
                _ => None,
            });
            if let (Some(dst), Some(lla)) = (dst, lla)
                && !lla.is_zero()
            {
                st.fdb.insert(lla, dst);
            }
        }
        Ok(())
    }
}
