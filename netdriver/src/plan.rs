//! Planning: desired state + observed state → the list of operations that converges the kernel.
//!
//! Pure: no I/O, deterministic (maps are ordered). The order of the returned list is: removals
//! (interfaces and stray ports, then namespaces, then host objects), host objects, overlays
//! with their peers, peer differences, sandboxes, attachments, then the `mini_lb` tables of
//! the sandboxes and of the host namespace (see the `balance` module). The members-only filter
//! ([`crate::filter`]) comes before all of them.

mod balance;

pub use balance::INGRESS_SBOX;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::Error;
use crate::model::{DesiredState, DriverConfig, MacAddr, OverlayNetwork, Sandbox};
use crate::names::{self, BRIDGE, GATEWAY_MTU, LOOPBACK, OVERLAY_MTU, VXLAN};
use crate::observed::{DefaultRoute, LinkKind, LinkState, NsState, Observed};
use crate::op::{NsRef, Op};
use crate::service::LoadBalancing;
use crate::{filter, nat};

/// The desired state, checked and indexed by namespace name.
struct Wanted<'a> {
    networks: BTreeMap<&'a str, &'a OverlayNetwork>,
    /// Overlay namespaces that must exist.
    overlays: BTreeMap<String, &'a OverlayNetwork>,
    sandboxes: BTreeMap<String, &'a Sandbox>,
}

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

fn validate(desired: &DesiredState) -> Result<Wanted<'_>, Error> {
    let mut networks = BTreeMap::new();
    let mut ns_names = BTreeMap::new();
    for net in &desired.networks {
        if !names::is_safe_id(&net.id) {
            return Err(invalid(format!(
                "network id {:?} must be letters, digits, '_', '-', '.'",
                net.id
            )));
        }
        if networks.insert(net.id.as_str(), net).is_some() {
            return Err(invalid(format!("network {} is listed twice", net.id)));
        }
        if let Some(other) = ns_names.insert(names::overlay_ns(&net.id), &net.id) {
            return Err(invalid(format!(
                "networks {other} and {} share their first 10 characters",
                net.id
            )));
        }
        if net.vni == 0 || net.vni >= 1 << 24 {
            return Err(invalid(format!(
                "network {}: VNI {} is not in 1..16777215",
                net.id, net.vni
            )));
        }
        if !net.subnet.contains(&net.gateway) {
            return Err(invalid(format!(
                "network {}: gateway {} is outside {}",
                net.id, net.gateway, net.subnet
            )));
        }
        let mut ips = BTreeSet::new();
        for p in &net.peers {
            if !ips.insert(p.ip) {
                return Err(invalid(format!(
                    "network {}: peer {} is listed twice",
                    net.id, p.ip
                )));
            }
        }
    }
    let mut sandboxes = BTreeMap::new();
    let mut overlays = BTreeMap::new();
    let mut ports = BTreeSet::new();
    for sb in &desired.sandboxes {
        if !names::is_safe_id(&sb.id) {
            return Err(invalid(format!(
                "task id {:?} must be letters, digits, '_', '-', '.'",
                sb.id
            )));
        }
        let ns = names::sandbox_ns(&sb.id);
        if names::is_overlay_ns(&ns) {
            return Err(invalid(format!("task id {} starts with '1-'", sb.id)));
        }
        if sandboxes.insert(ns.clone(), sb).is_some() || !ports.insert(names::overlay_port(&ns)) {
            return Err(invalid(format!(
                "task {} collides with another task's first 11 characters",
                sb.id
            )));
        }
        let mut seen = BTreeSet::new();
        for att in &sb.attachments {
            let net = networks.get(att.network_id.as_str()).ok_or_else(|| {
                invalid(format!(
                    "task {} is attached to unknown network {}",
                    sb.id, att.network_id
                ))
            })?;
            if !seen.insert(att.network_id.as_str()) {
                return Err(invalid(format!(
                    "task {} is attached twice to network {}",
                    sb.id, att.network_id
                )));
            }
            if !net.subnet.contains(&att.addr.addr()) {
                return Err(invalid(format!(
                    "task {}: address {} is outside {} of network {}",
                    sb.id, att.addr, net.subnet, net.id
                )));
            }
            overlays.insert(names::overlay_ns(&net.id), *net);
        }
    }
    for net in &desired.networks {
        if net.pinned {
            overlays.insert(names::overlay_ns(&net.id), net);
        }
    }
    Ok(Wanted {
        networks,
        overlays,
        sandboxes,
    })
}

fn live<'o>(obs: &'o Observed, ns: &str) -> Option<&'o NsState> {
    obs.namespaces.get(ns).and_then(Option::as_ref)
}

fn link_is(
    l: Option<&LinkState>,
    kind: impl Fn(&LinkKind) -> bool,
    mtu: u32,
    master: Option<&str>,
) -> bool {
    l.is_some_and(|l| kind(&l.kind) && l.mtu == mtu && l.up && l.master.as_deref() == master)
}

fn is_veth(k: &LinkKind) -> bool {
    *k == LinkKind::Veth
}

fn overlay_ok(cfg: &DriverConfig, net: &OverlayNetwork, st: &NsState) -> bool {
    let Ok(gw) = Ipv4Net::new(net.gateway, net.subnet.prefix_len()) else {
        return false;
    };
    let br = st.links.get(BRIDGE);
    let br_ok = link_is(br, |k| *k == LinkKind::Bridge, OVERLAY_MTU, None)
        && br.is_some_and(|b| b.addrs.len() == 1 && b.addrs.contains(&gw));
    let vx_ok = link_is(
        st.links.get(VXLAN),
        |k| match k {
            LinkKind::Vxlan(v) => {
                v.vni == net.vni
                    && v.port == cfg.data_path_port
                    && v.local == Some(cfg.vtep)
                    && !v.learning
                    && v.proxy
                    && v.l2miss
                    && v.l3miss
            }
            _ => false,
        },
        OVERLAY_MTU,
        Some(BRIDGE),
    );
    br_ok && vx_ok
}

/// The gateway interface a sandbox already has, if it can be kept as is.
fn kept_gateway_addr(
    cfg: &DriverConfig,
    ns: &str,
    st: &NsState,
    ifname: &str,
    host: &NsState,
) -> Option<Ipv4Net> {
    let gw = &cfg.gateway_bridge;
    let bridge_ip = gw.address().addr();
    let l = st.links.get(ifname)?;
    if !link_is(Some(l), is_veth, GATEWAY_MTU, None) || l.addrs.len() != 1 {
        return None;
    }
    let a = *l.addrs.iter().next()?;
    let usable = a.prefix_len() == gw.subnet.prefix_len()
        && gw.subnet.contains(&a.addr())
        && a.addr() != bridge_ip
        && a.addr() != gw.subnet.network()
        && a.addr() != gw.subnet.broadcast()
        && l.mac == Some(MacAddr::for_ip(a.addr()));
    let route_ok = st.default_route
        == Some(DefaultRoute {
            gateway: bridge_ip,
            dev: ifname.to_string(),
        });
    let port = host.links.get(&names::gateway_port(ns));
    let port_ok =
        link_is(port, is_veth, GATEWAY_MTU, Some(&gw.name)) && port.is_some_and(|p| p.isolated);
    (usable && route_ok && port_ok).then_some(a)
}

/// Computes the operations that take the kernel from `obs` to `desired`, with no load
/// balancing (no VIPs, no ingress): [`plan_with`] and an empty [`LoadBalancing`].
pub fn plan(cfg: &DriverConfig, desired: &DesiredState, obs: &Observed) -> Result<Vec<Op>, Error> {
    plan_with(cfg, desired, &LoadBalancing::default(), obs)
}

/// Computes the operations that take the kernel from `obs` to `desired` and `lb`.
pub fn plan_with(
    cfg: &DriverConfig,
    desired: &DesiredState,
    lb: &LoadBalancing,
    obs: &Observed,
) -> Result<Vec<Op>, Error> {
    let (sbox, balance) = balance::validate(desired, lb)?;
    let with_sbox;
    let desired = match sbox {
        Some(sbox) => {
            let mut sandboxes = desired.sandboxes.clone();
            sandboxes.push(sbox);
            with_sbox = DesiredState {
                networks: desired.networks.clone(),
                sandboxes,
                members: desired.members.clone(),
            };
            &with_sbox
        }
        None => desired,
    };
    let wanted = validate(desired)?;
    let gw = &cfg.gateway_bridge;
    let gw_addr = gw.address();
    let need_gw = !wanted.sandboxes.is_empty();
    let gw_ok = need_gw
        && obs.host.links.get(&gw.name).is_some_and(|b| {
            link_is(Some(b), |k| *k == LinkKind::Bridge, GATEWAY_MTU, None)
                && b.addrs.len() == 1
                && b.addrs.contains(&gw_addr)
        });

    let Kept {
        overlays: overlay_kept,
        deletes: ns_deletes,
        dying,
    } = namespaces_kept(cfg, &wanted, obs);
    let kept_overlay = |ns: &str| overlay_kept.get(ns).copied().unwrap_or(false);

    let gw_kept = if gw_ok {
        gateways_kept(cfg, &wanted, obs)
    } else {
        BTreeMap::new()
    };
    let SandboxLinks {
        mut link_deletes,
        creates: sandbox_creates,
        attaches,
        gw_addrs,
    } = sandbox_links(cfg, &wanted, obs, &kept_overlay, &dying, &gw_kept)?;

    stray_ports(&wanted, obs, &kept_overlay, &dying, &mut link_deletes);

    let mut ops = link_deletes;
    ops.extend(ns_deletes);
    host_ops(cfg, obs, need_gw, gw_ok, &mut ops);
    let mut peer_deletes = Vec::new();
    overlay_ops(
        cfg,
        &wanted,
        obs,
        &kept_overlay,
        &mut peer_deletes,
        &mut ops,
    );

    ops.extend(sandbox_creates);
    ops.extend(attaches);

    // Load balancing: each sandbox's table, then the host's (published ports).
    for (ns, sb) in &wanted.sandboxes {
        let want = balance.sandbox_want(ns, sb)?;
        let have = live(obs, ns).and_then(|s| s.lb.as_ref());
        balance::diff(&NsRef::Named(ns.clone()), want.as_ref(), have, &mut ops);
    }
    let host = balance.host_want(gw_addrs.get(INGRESS_SBOX).copied());
    balance::diff(&NsRef::Host, host.as_ref(), obs.host.lb.as_ref(), &mut ops);
    // The members-only filter first: it depends on nothing else, and it protects the node
    // even when a later step fails. Then the entries of peers that went away: they depend on
    // nothing either, and a node that tears down many sandboxes of its own at once (a removed
    // service) must not keep sending to peers that are gone until its own teardown is done.
    let mut all = Vec::with_capacity(peer_deletes.len() + ops.len() + 1);
    filter::plan(desired.members.as_ref(), obs.filter.as_ref(), &mut all);
    all.extend(peer_deletes);
    all.extend(ops);
    Ok(all)
}

/// The link operations of the wanted sandboxes.
struct SandboxLinks<'w> {
    /// Links to delete: wrong ones, and ports left by a previous attachment.
    link_deletes: Vec<Op>,
    /// Sandbox namespaces to create.
    creates: Vec<Op>,
    /// Attachments to overlays and to the gateway bridge.
    attaches: Vec<Op>,
    /// Each sandbox's address on the gateway bridge, kept or new.
    gw_addrs: BTreeMap<&'w str, Ipv4Addr>,
}

/// Plans each wanted sandbox's links: its namespace when missing, an interface per overlay
/// attachment (kept when it, its overlay and its port are right), its gateway interface (a
/// kept address, or the next free one), and the deletion of anything else in it.
fn sandbox_links<'w>(
    cfg: &DriverConfig,
    wanted: &'w Wanted<'_>,
    obs: &Observed,
    kept_overlay: &dyn Fn(&str) -> bool,
    dying: &BTreeSet<&str>,
    gw_kept: &BTreeMap<&'w str, Ipv4Net>,
) -> Result<SandboxLinks<'w>, Error> {
    let gw = &cfg.gateway_bridge;
    let gw_addr = gw.address();
    let gw_used: BTreeSet<Ipv4Addr> = gw_kept.values().map(|a| a.addr()).collect();
    let mut free_hosts = gw
        .subnet
        .hosts()
        .filter(|ip| *ip != gw_addr.addr())
        .filter(|ip| !gw_used.contains(ip));
    let mut out = SandboxLinks {
        link_deletes: Vec::new(),
        creates: Vec::new(),
        attaches: Vec::new(),
        gw_addrs: gw_kept.iter().map(|(ns, a)| (*ns, a.addr())).collect(),
    };
    for (ns, sb) in &wanted.sandboxes {
        let st = live(obs, ns);
        if st.is_none() {
            out.creates.push(Op::CreateSandbox { ns: ns.clone() });
        }
        let has = |ifname: &str| st.is_some_and(|s| s.links.contains_key(ifname));
        let mut expected: BTreeSet<String> = BTreeSet::new();
        expected.insert(LOOPBACK.to_string());
        for (i, att) in sb.attachments.iter().enumerate() {
            let ifname = names::sandbox_if(i);
            let net = wanted.networks[att.network_id.as_str()];
            let ons = names::overlay_ns(&net.id);
            let port = names::overlay_port(ns);
            let port_state = live(obs, &ons).and_then(|o| o.links.get(&port));
            let ok = kept_overlay(&ons)
                && st.is_some_and(|s| {
                    let l = s.links.get(&ifname);
                    link_is(l, is_veth, OVERLAY_MTU, None)
                        && l.is_some_and(|l| {
                            l.mac == Some(att.mac)
                                && l.addrs.len() == 1
                                && l.addrs.contains(&att.addr)
                        })
                })
                && link_is(port_state, is_veth, OVERLAY_MTU, Some(BRIDGE));
            if !ok {
                if has(&ifname) {
                    out.link_deletes.push(Op::DeleteLink {
                        ns: NsRef::Named(ns.clone()),
                        name: ifname.clone(),
                    });
                } else if port_state.is_some() && kept_overlay(&ons) && !dying.contains(ns.as_str())
                {
                    out.link_deletes.push(Op::DeleteLink {
                        ns: NsRef::Named(ons.clone()),
                        name: port.clone(),
                    });
                }
                out.attaches.push(Op::AttachOverlay {
                    sandbox: ns.clone(),
                    overlay: ons,
                    ifname: ifname.clone(),
                    port,
                    addr: att.addr,
                    mac: att.mac,
                });
            }
            expected.insert(ifname);
        }
        let ifname = names::sandbox_if(sb.attachments.len());
        let port = names::gateway_port(ns);
        if !gw_kept.contains_key(ns.as_str()) {
            if has(&ifname) {
                out.link_deletes.push(Op::DeleteLink {
                    ns: NsRef::Named(ns.clone()),
                    name: ifname.clone(),
                });
            } else if obs.host.links.contains_key(&port) && !dying.contains(ns.as_str()) {
                out.link_deletes.push(Op::DeleteLink {
                    ns: NsRef::Host,
                    name: port.clone(),
                });
            }
            let ip = free_hosts.next().ok_or_else(|| {
                invalid(format!("gateway subnet {} has no free address", gw.subnet))
            })?;
            let addr = Ipv4Net::new(ip, gw.subnet.prefix_len()).expect("prefix of a valid subnet");
            out.gw_addrs.insert(ns, ip);
            out.attaches.push(Op::AttachGateway {
                sandbox: ns.clone(),
                ifname: ifname.clone(),
                port,
                bridge: gw.name.clone(),
                addr,
                mac: MacAddr::for_ip(ip),
                gateway: gw_addr.addr(),
            });
        }
        expected.insert(ifname);
        if let Some(st) = st {
            for name in st.links.keys().filter(|n| !expected.contains(*n)) {
                out.link_deletes.push(Op::DeleteLink {
                    ns: NsRef::Named(ns.clone()),
                    name: name.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Which of the namespaces there are stay.
struct Kept<'w, 'o> {
    /// Each wanted overlay, and whether the one there is right (kept).
    overlays: BTreeMap<&'w str, bool>,
    /// The namespaces to delete.
    deletes: Vec<Op>,
    /// The live namespaces among them.
    dying: BTreeSet<&'o str>,
}

/// An overlay stays when its devices are right, a sandbox when it is wanted; every other
/// namespace goes.
fn namespaces_kept<'w, 'o>(
    cfg: &DriverConfig,
    wanted: &'w Wanted<'_>,
    obs: &'o Observed,
) -> Kept<'w, 'o> {
    let overlays: BTreeMap<&str, bool> = wanted
        .overlays
        .iter()
        .map(|(ns, net)| {
            let ok = live(obs, ns).is_some_and(|st| overlay_ok(cfg, net, st));
            (ns.as_str(), ok)
        })
        .collect();
    let mut deletes = Vec::new();
    let mut dying: BTreeSet<&str> = BTreeSet::new();
    for (name, st) in &obs.namespaces {
        let keep = st.is_some()
            && match overlays.get(name.as_str()) {
                Some(ok) => *ok,
                None => wanted.sandboxes.contains_key(name),
            };
        if !keep {
            deletes.push(Op::DeleteNamespace { ns: name.clone() });
            if st.is_some() {
                dying.insert(name);
            }
        }
    }
    Kept {
        overlays,
        deletes,
        dying,
    }
}

/// The gateway addresses that can stay (on a gateway bridge that stays), first come first
/// kept: two sandboxes that hold the same address keep it once.
fn gateways_kept<'w>(
    cfg: &DriverConfig,
    wanted: &'w Wanted<'_>,
    obs: &Observed,
) -> BTreeMap<&'w str, Ipv4Net> {
    let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut kept: BTreeMap<&str, Ipv4Net> = BTreeMap::new();
    for (ns, sb) in &wanted.sandboxes {
        let Some(st) = live(obs, ns) else { continue };
        let ifname = names::sandbox_if(sb.attachments.len());
        if let Some(a) = kept_gateway_addr(cfg, ns, st, &ifname, &obs.host)
            && used.insert(a.addr())
        {
            kept.insert(ns, a);
        }
    }
    kept
}

/// Deletes the ports nobody expects: in kept overlays (a port per sandbox on the network) and
/// in the host namespace (a gateway port per sandbox), unless they die with a sandbox this
/// plan deletes.
fn stray_ports(
    wanted: &Wanted<'_>,
    obs: &Observed,
    kept_overlay: &dyn Fn(&str) -> bool,
    dying: &BTreeSet<&str>,
    link_deletes: &mut Vec<Op>,
) {
    // A port dies with its sandbox namespace when that namespace is deleted by this plan.
    let dies_with_sandbox = |port: &str, port_name: fn(&str) -> String| {
        dying
            .iter()
            .any(|ns| !names::is_overlay_ns(ns) && port_name(ns) == port)
    };
    for (ons, net) in &wanted.overlays {
        let Some(st) = live(obs, ons).filter(|_| kept_overlay(ons)) else {
            continue;
        };
        let expected: BTreeSet<String> = wanted
            .sandboxes
            .iter()
            .filter(|(_, sb)| sb.attachments.iter().any(|a| a.network_id == net.id))
            .map(|(ns, _)| names::overlay_port(ns))
            .collect();
        for name in st.links.keys() {
            let ours =
                [LOOPBACK, BRIDGE, VXLAN].contains(&name.as_str()) || expected.contains(name);
            if !ours && !dies_with_sandbox(name, names::overlay_port) {
                link_deletes.push(Op::DeleteLink {
                    ns: NsRef::Named(ons.clone()),
                    name: name.clone(),
                });
            }
        }
    }
    let expected_ports: BTreeSet<String> = wanted
        .sandboxes
        .keys()
        .map(|ns| names::gateway_port(ns))
        .collect();
    for name in obs.host.links.keys() {
        if name.starts_with(names::GATEWAY_PORT_PREFIX)
            && !expected_ports.contains(name)
            && !dies_with_sandbox(name, names::gateway_port)
        {
            link_deletes.push(Op::DeleteLink {
                ns: NsRef::Host,
                name: name.clone(),
            });
        }
    }
}

/// The host's objects: the gateway bridge (`gw_ok`: the one there is right), IP forwarding and
/// its NAT rule, when any sandbox needs them (`need_gw`).
fn host_ops(cfg: &DriverConfig, obs: &Observed, need_gw: bool, gw_ok: bool, ops: &mut Vec<Op>) {
    let gw = &cfg.gateway_bridge;
    let want_nat = nat::comment(&gw.name, gw.subnet);
    if obs.host.links.contains_key(&gw.name) && !gw_ok {
        ops.push(Op::DeleteLink {
            ns: NsRef::Host,
            name: gw.name.clone(),
        });
    }
    if need_gw {
        if !obs.forwarding {
            ops.push(Op::EnableForwarding);
        }
        if !gw_ok {
            ops.push(Op::CreateGatewayBridge {
                name: gw.name.clone(),
                addr: gw.address(),
            });
        }
        if obs.nat.as_deref() != Some(want_nat.as_str()) {
            ops.push(Op::SetNat {
                name: gw.name.clone(),
                subnet: gw.subnet,
            });
        }
    } else if obs.nat.is_some() {
        ops.push(Op::DeleteNat {
            name: gw.name.clone(),
        });
    }
}

/// Creates the overlays that are missing (or not right) and brings every overlay's peers up
/// to date: the entries of gone peers into `deletes`, the rest into `ops`.
fn overlay_ops(
    cfg: &DriverConfig,
    wanted: &Wanted<'_>,
    obs: &Observed,
    kept_overlay: &dyn Fn(&str) -> bool,
    deletes: &mut Vec<Op>,
    ops: &mut Vec<Op>,
) {
    for (ons, net) in &wanted.overlays {
        let empty = NsState::default();
        let current = if kept_overlay(ons) {
            live(obs, ons).unwrap_or(&empty)
        } else {
            ops.push(Op::CreateOverlay {
                ns: ons.clone(),
                vni: net.vni,
                gateway: Ipv4Net::new(net.gateway, net.subnet.prefix_len()).expect("valid prefix"),
                port: cfg.data_path_port,
                local: cfg.vtep,
            });
            &empty
        };
        peer_diff(cfg, ons, net, current, deletes, ops);
    }
}

/// Neighbour and FDB differences of one overlay namespace: deletions into `deletes`,
/// replacements into `sets`.
fn peer_diff(
    cfg: &DriverConfig,
    ns: &str,
    net: &OverlayNetwork,
    st: &NsState,
    deletes: &mut Vec<Op>,
    sets: &mut Vec<Op>,
) {
    let remote = net.peers.iter().filter(|p| p.vtep != cfg.vtep);
    let neigh: BTreeMap<Ipv4Addr, MacAddr> = remote.clone().map(|p| (p.ip, p.mac)).collect();
    let fdb: BTreeMap<MacAddr, Ipv4Addr> = remote.map(|p| (p.mac, p.vtep)).collect();
    for ip in st.neighbours.keys().filter(|ip| !neigh.contains_key(ip)) {
        deletes.push(Op::DelNeighbour {
            ns: ns.to_string(),
            ip: *ip,
        });
    }
    for mac in st.fdb.keys().filter(|m| !fdb.contains_key(m)) {
        deletes.push(Op::DelFdb {
            ns: ns.to_string(),
            mac: *mac,
        });
    }
    for (ip, mac) in &neigh {
        if st.neighbours.get(ip) != Some(mac) {
            sets.push(Op::SetNeighbour {
                ns: ns.to_string(),
                ip: *ip,
                mac: *mac,
            });
        }
    }
    for (mac, vtep) in &fdb {
        if st.fdb.get(mac) != Some(vtep) {
            sets.push(Op::SetFdb {
                ns: ns.to_string(),
                mac: *mac,
                vtep: *vtep,
            });
        }
    }
}
