//! Executing one [`Op`] with rtnetlink, rolling back what it created when a later step fails.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan,
    RouteMessageBuilder,
};

use super::{LinuxKernel, errno, write_req};
use crate::error::Error;
use crate::lb::{self, Flavour, TABLE};
use crate::model::MacAddr;
use crate::names::{BRIDGE, GATEWAY_MTU, LINK_GROUP, OVERLAY_MTU, VXLAN};
use crate::netns;
use crate::op::{NsRef, Op};
use crate::{filter, nat};

/// Index of `lo` in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// One end of a veth pair to create.
struct VethSpec<'a> {
    /// Namespace of the host end (where the request is sent).
    host_ns: NsRef,
    port: &'a str,
    bridge: &'a str,
    mtu: u32,
    sandbox: &'a str,
    ifname: &'a str,
    addr: Ipv4Net,
    mac: MacAddr,
}

impl LinuxKernel {
    pub(super) async fn execute_op(&self, op: &Op) -> Result<(), Error> {
        match op {
            Op::EnableForwarding => self.ip_forward(true).await.map(drop),
            Op::CreateGatewayBridge { name, addr } => self.create_gateway_bridge(name, *addr).await,
            Op::SetNat { name, subnet } => {
                self.netlink_batch_in(
                    &NsRef::Host,
                    &format!("replace table ip {name}"),
                    nat::replace_batch(name, *subnet),
                )
                .await
            }
            Op::DeleteNat { name } => {
                self.netlink_batch_in(
                    &NsRef::Host,
                    &format!("delete table ip {name}"),
                    nat::delete_batch(name),
                )
                .await
            }
            Op::CreateOverlay {
                ns,
                vni,
                gateway,
                port,
                local,
            } => {
                let r = self.create_overlay(ns, *vni, *gateway, *port, *local).await;
                if r.is_err() {
                    let _ = self.delete_namespace(ns).await;
                }
                r
            }
            Op::CreateSandbox { ns } => {
                let r = self.create_namespace(ns).await.map(drop);
                if r.is_err() {
                    let _ = self.delete_namespace(ns).await;
                }
                r
            }
            Op::DeleteNamespace { ns } => self.delete_namespace(ns).await,
            Op::DeleteLink { ns, name } => {
                let h = self.handle(ns).await?;
                self.delete_link(&h, ns, name).await
            }
            Op::AttachOverlay {
                sandbox,
                overlay,
                ifname,
                port,
                addr,
                mac,
            } => {
                let spec = VethSpec {
                    host_ns: NsRef::Named(overlay.clone()),
                    port,
                    bridge: BRIDGE,
                    mtu: OVERLAY_MTU,
                    sandbox,
                    ifname,
                    addr: *addr,
                    mac: *mac,
                };
                self.attach(&spec, false, None).await
            }
            Op::AttachGateway {
                sandbox,
                ifname,
                port,
                bridge,
                addr,
                mac,
                gateway,
            } => {
                let spec = VethSpec {
                    host_ns: NsRef::Host,
                    port,
                    bridge,
                    mtu: GATEWAY_MTU,
                    sandbox,
                    ifname,
                    addr: *addr,
                    mac: *mac,
                };
                self.attach(&spec, true, Some(*gateway)).await
            }
            Op::SetNeighbour { ns, ip, mac } => self.set_neighbour(ns, *ip, *mac).await,
            Op::DelNeighbour { ns, ip } => self.del_neighbour(ns, *ip).await,
            Op::SetFdb { ns, mac, vtep } => self.set_fdb(ns, *mac, *vtep).await,
            Op::DelFdb { ns, mac } => self.del_fdb(ns, *mac).await,
            Op::SetLbTable { ns, spec } => {
                if spec.flavour == Flavour::Ingress {
                    self.ip_forward_in(ns, true).await?;
                }
                let action = format!("replace table ip {TABLE} ({:?})", spec.flavour);
                self.netlink_batch_in(ns, &action, lb::netlink::replace(spec))
                    .await
            }
            Op::SetLbEntry {
                ns,
                flavour,
                key,
                target,
                change,
                element,
            } => {
                let action = format!("set {key} in table ip {TABLE}");
                let mut batch = lb::netlink::batch();
                lb::netlink::set_entry(&mut batch, *flavour, key, target, change, *element);
                self.netlink_batch_in(ns, &action, batch).await
            }
            Op::DelLbEntry {
                ns,
                flavour,
                key,
                parts,
            } => {
                let action = format!("delete {key} from table ip {TABLE}");
                let mut batch = lb::netlink::batch();
                lb::netlink::del_entry(&mut batch, *flavour, key, *parts);
                self.netlink_batch_in(ns, &action, batch).await
            }
            Op::DeleteLbTable { ns } => {
                let action = format!("delete table ip {TABLE}");
                self.netlink_batch_in(ns, &action, lb::netlink::delete())
                    .await
            }
            Op::SetFilter { filter: f } => {
                let action = format!("replace table ip {}", filter::TABLE);
                self.netlink_batch_in(&NsRef::Host, &action, filter::replace_batch(f))
                    .await
            }
            Op::SetFilterMembers { add, remove } => {
                let action = format!("update the members of table ip {}", filter::TABLE);
                self.netlink_batch_in(&NsRef::Host, &action, filter::members_batch(add, remove))
                    .await
            }
            Op::DeleteFilter => {
                let action = format!("delete table ip {}", filter::TABLE);
                self.netlink_batch_in(&NsRef::Host, &action, filter::delete_batch())
                    .await
            }
        }
    }

    /// A permanent neighbour entry on the overlay's `vxlan0`: `ip` is at `mac`.
    async fn set_neighbour(&self, ns: &str, ip: Ipv4Addr, mac: MacAddr) -> Result<(), Error> {
        let (h, vx) = self.vxlan(ns).await?;
        let req = h
            .neighbours()
            .add(vx, IpAddr::V4(ip))
            .link_layer_address(&mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute();
        write_req!(
            self,
            req,
            format!("neigh {ip} on {VXLAN} in {ns}"),
            "RTM_NEWNEIGH"
        )
    }

    /// Removes `ip`'s neighbour entry from the overlay's `vxlan0` (gone already is fine).
    async fn del_neighbour(&self, ns: &str, ip: Ipv4Addr) -> Result<(), Error> {
        let (h, vx) = self.vxlan(ns).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = vx;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        let req = h.neighbours().del(msg).execute();
        write_req!(self, req, format!("neigh {ip} on {VXLAN} in {ns}"), "RTM_DELNEIGH",
            ignore libc::ENOENT)
    }

    /// A permanent forwarding entry on the overlay's `vxlan0`: `mac` is behind `vtep`.
    async fn set_fdb(&self, ns: &str, mac: MacAddr, vtep: Ipv4Addr) -> Result<(), Error> {
        let (h, vx) = self.vxlan(ns).await?;
        let req = h
            .neighbours()
            .add_bridge(vx, &mac.0)
            .destination(IpAddr::V4(vtep))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute();
        write_req!(
            self,
            req,
            format!("fdb {mac} on {VXLAN} in {ns}"),
            "RTM_NEWNEIGH(AF_BRIDGE)"
        )
    }

    /// Removes `mac`'s forwarding entry from the overlay's `vxlan0` (gone already is fine).
    async fn del_fdb(&self, ns: &str, mac: MacAddr) -> Result<(), Error> {
        let (h, vx) = self.vxlan(ns).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = vx;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        let req = h.neighbours().del(msg).execute();
        write_req!(self, req, format!("fdb {mac} on {VXLAN} in {ns}"), "RTM_DELNEIGH(AF_BRIDGE)",
            ignore libc::ENOENT)
    }

    /// The connection to an overlay namespace and the index of its `vxlan0`.
    async fn vxlan(&self, ns: &str) -> Result<(Handle, u32), Error> {
        let r = NsRef::Named(ns.to_string());
        let h = self.handle(&r).await?;
        let vx = self.need_index(&h, &r, VXLAN).await?;
        Ok((h, vx))
    }

    async fn create_gateway_bridge(&self, name: &str, addr: Ipv4Net) -> Result<(), Error> {
        let ns = NsRef::Host;
        let h = self.handle(&ns).await?;
        let object = format!("bridge {name} in {ns}");
        let req = h
            .link()
            .add(
                LinkBridge::new(name)
                    .mtu(GATEWAY_MTU)
                    .link_group(LINK_GROUP)
                    .up()
                    .build(),
            )
            .execute();
        write_req!(self, req, object.clone(), "RTM_NEWLINK")?;
        let r = async {
            let idx = self.need_index(&h, &ns, name).await?;
            let req = h
                .address()
                .add(idx, IpAddr::V4(addr.addr()), addr.prefix_len())
                .execute();
            write_req!(
                self,
                req,
                format!("address {addr} of {object}"),
                "RTM_NEWADDR"
            )
        }
        .await;
        if r.is_err() {
            let _ = self.delete_link(&h, &ns, name).await;
        }
        r
    }

    /// Creates the namespace file and opens a connection inside it; brings `lo` up.
    async fn create_namespace(&self, ns: &str) -> Result<Handle, Error> {
        let path = self.named_path(ns);
        self.counters.write();
        let socket = netns::on_thread_async({
            let path = path.clone();
            move || netns::create_with(&path, || Socket::new(NETLINK_ROUTE))
        })
        .await
        .map_err(|e| Error::os(path.display().to_string(), "unshare+mount(MS_BIND)", e))?;
        let r = NsRef::Named(ns.to_string());
        // Connections cached for an earlier namespace of this name (deleted behind the
        // driver's back) would write into that one.
        self.forget(&r);
        let h = self.adopt(&r, socket);
        let req = h
            .link()
            .set(LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build())
            .execute();
        write_req!(self, req, format!("lo in {r}"), "RTM_NEWLINK(up)")?;
        Ok(h)
    }

    async fn create_overlay(
        &self,
        ns: &str,
        vni: u32,
        gateway: Ipv4Net,
        port: u16,
        local: Ipv4Addr,
    ) -> Result<(), Error> {
        let r = NsRef::Named(ns.to_string());
        let h = self.create_namespace(ns).await?;
        let req = h
            .link()
            .add(
                LinkBridge::new(BRIDGE)
                    .mtu(OVERLAY_MTU)
                    .link_group(LINK_GROUP)
                    .up()
                    .build(),
            )
            .execute();
        write_req!(self, req, format!("{BRIDGE} in {r}"), "RTM_NEWLINK")?;
        let br = self.need_index(&h, &r, BRIDGE).await?;
        let req = h
            .address()
            .add(br, IpAddr::V4(gateway.addr()), gateway.prefix_len())
            .execute();
        write_req!(
            self,
            req,
            format!("address {gateway} of {BRIDGE} in {r}"),
            "RTM_NEWADDR"
        )?;

        // Created from the host namespace with IFLA_NET_NS_FD: the device lands in the overlay
        // namespace while its UDP socket stays in the underlay (what Docker gets by creating
        // it in the host namespace and moving it).
        let path = self.named_path(ns);
        let fd = File::open(&path).map_err(|e| Error::os(path.display().to_string(), "open", e))?;
        let host = self.handle(&NsRef::Host).await?;
        let msg = LinkVxlan::new(VXLAN, vni)
            .port(port)
            .local(local)
            .learning(false)
            .proxy(true)
            .l2miss(true)
            .l3miss(true)
            .mtu(OVERLAY_MTU)
            .link_group(LINK_GROUP)
            .setns_by_fd(fd.as_raw_fd())
            .build();
        let req = host.link().add(msg).execute();
        write_req!(
            self,
            req,
            format!("{VXLAN} (vni {vni}) for {r}"),
            "RTM_NEWLINK"
        )?;
        drop(fd);
        let vx = self.need_index(&h, &r, VXLAN).await?;
        let req = h
            .link()
            .set(LinkUnspec::new_with_index(vx).controller(br).up().build())
            .execute();
        write_req!(
            self,
            req,
            format!("{VXLAN} in {r}"),
            "RTM_NEWLINK(master, up)"
        )
    }

    async fn delete_link(&self, h: &Handle, ns: &NsRef, name: &str) -> Result<(), Error> {
        let Some(idx) = self.index(h, ns, name).await? else {
            return Ok(());
        };
        let req = h.link().del(idx).execute();
        write_req!(self, req, format!("link {name} in {ns}"), "RTM_DELLINK", ignore libc::ENODEV)
    }

    /// Deletes the driver's links (so veth peers and VXLAN sockets go at once, not when the
    /// kernel gets round to destroying the namespace), then the mount and the file.
    async fn delete_namespace(&self, ns: &str) -> Result<(), Error> {
        let r = NsRef::Named(ns.to_string());
        let path = self.named_path(ns);
        if netns::is_netns(&path) {
            // All links of the driver in one batch (their veth peers elsewhere go with them).
            let h = self.handle(&r).await?;
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::Group(LINK_GROUP));
            let req = h.link().del_with_message(msg).execute();
            write_req!(self, req, format!("links of group {LINK_GROUP:#x} in {r}"),
                "RTM_DELLINK(group)", ignore libc::ENODEV)?;
        }
        self.forget(&r);
        self.counters.write();
        let p = path.clone();
        netns::on_thread_async(move || netns::remove(&p))
            .await
            .map_err(|e| Error::os(path.display().to_string(), "umount2+unlink", e))
    }

    /// Creates a veth pair from the host side with the peer directly in the sandbox, then
    /// configures the sandbox end. Rolls back by deleting the host end.
    async fn attach(
        &self,
        v: &VethSpec<'_>,
        isolated: bool,
        default_gw: Option<Ipv4Addr>,
    ) -> Result<(), Error> {
        let hns = &v.host_ns;
        let h = self.handle(hns).await?;
        let sref = NsRef::Named(v.sandbox.to_string());
        let s = self.handle(&sref).await?;
        let br = self.need_index(&h, hns, v.bridge).await?;
        let path = self.named_path(v.sandbox);
        let fd = File::open(&path).map_err(|e| Error::os(path.display().to_string(), "open", e))?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(v.ifname)
            .mtu(v.mtu)
            .address(v.mac.0.to_vec())
            .link_group(LINK_GROUP)
            .setns_by_fd(fd.as_raw_fd())
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(v.port)
            .mtu(v.mtu)
            .controller(br)
            .link_group(LINK_GROUP)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        let object = format!("veth {} in {hns} <-> {} in {sref}", v.port, v.ifname);
        let req = h.link().add(msg).execute();
        write_req!(self, req, object, "RTM_NEWLINK")?;
        drop(fd);
        let r = async {
            if isolated {
                let idx = self.need_index(&h, hns, v.port).await?;
                let req = h
                    .link()
                    .set_port(LinkBridgePort::new(idx).isolated(true).build())
                    .execute();
                write_req!(
                    self,
                    req,
                    format!("port {} of {}", v.port, v.bridge),
                    "RTM_NEWLINK(isolated)"
                )?;
            }
            let idx = self.need_index(&s, &sref, v.ifname).await?;
            let object = format!("{} in {sref}", v.ifname);
            let req = s
                .address()
                .add(idx, IpAddr::V4(v.addr.addr()), v.addr.prefix_len())
                .execute();
            write_req!(
                self,
                req,
                format!("address {} of {object}", v.addr),
                "RTM_NEWADDR"
            )?;
            let req = s
                .link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute();
            write_req!(self, req, object.clone(), "RTM_NEWLINK(up)")?;
            if let Some(gw) = default_gw {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(idx)
                    .build();
                let req = s.route().add(route).execute();
                write_req!(
                    self,
                    req,
                    format!("default route via {gw} dev {object}"),
                    "RTM_NEWROUTE"
                )?;
            }
            Ok(())
        }
        .await;
        if r.is_err() {
            let _ = self.delete_link(&h, hns, v.port).await;
        }
        r
    }
}
