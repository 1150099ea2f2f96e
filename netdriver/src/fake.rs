//! An in-memory kernel that records operations: for unit tests of the planner and the driver,
//! and for the worker's in-process cluster tests.
//!
//! It simulates what the real kernel does with each [`Op`], including veth pairs (deleting one
//! end deletes the other, deleting a namespace deletes the peers of its links). Every executed
//! operation counts as one write; every observation as one read.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Mutex;

use crate::error::Error;
use crate::kernel::{AtomicCounters, Counters, Kernel};
use crate::lb::{Flavour, LbTable};
use crate::model::MacAddr;
use crate::names::{BRIDGE, GATEWAY_MTU, LOOPBACK, OVERLAY_MTU, VXLAN};
use crate::nat;
use crate::observed::{DefaultRoute, LinkKind, LinkState, NsState, Observed, Touched, VxlanState};
use crate::op::{NsRef, Op};

type Predicate = Box<dyn Fn(&Op) -> bool + Send>;

/// A recording fake of [`Kernel`].
#[derive(Default)]
pub struct FakeKernel {
    inner: Mutex<Inner>,
    fail_when: Mutex<Option<Predicate>>,
    hang_when: Mutex<Option<Predicate>>,
    counters: AtomicCounters,
}

#[derive(Default)]
struct Inner {
    state: Observed,
    /// Veth pairs, both directions.
    pairs: BTreeMap<(NsRef, String), (NsRef, String)>,
    log: Vec<Op>,
}

impl std::fmt::Debug for FakeKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKernel")
            .field("counters", &self.counters())
            .finish()
    }
}

fn link(kind: LinkKind, mtu: u32) -> LinkState {
    LinkState {
        kind,
        mtu,
        mac: None,
        up: true,
        master: None,
        isolated: false,
        addrs: BTreeSet::new(),
    }
}

fn fail(object: String, errno: i32) -> Error {
    Error::os(object, "fake", io::Error::from_raw_os_error(errno))
}

impl FakeKernel {
    /// An empty kernel.
    pub fn new() -> Self {
        Self::default()
    }

    /// The operations executed so far, in order.
    pub fn log(&self) -> Vec<Op> {
        self.inner.lock().expect("fake lock").log.clone()
    }

    /// A new fake holding a copy of this one's kernel state (not its log nor counters): what a
    /// restarted daemon finds.
    pub fn fork(&self) -> FakeKernel {
        let inner = self.inner.lock().expect("fake lock");
        FakeKernel {
            inner: Mutex::new(Inner {
                state: inner.state.clone(),
                pairs: inner.pairs.clone(),
                log: Vec::new(),
            }),
            ..FakeKernel::default()
        }
    }

    /// Forgets the log.
    pub fn clear_log(&self) {
        self.inner.lock().expect("fake lock").log.clear();
    }

    /// The simulated kernel state.
    pub fn state(&self) -> Observed {
        self.inner.lock().expect("fake lock").state.clone()
    }

    /// Changes the simulated state behind the driver's back (stray objects, tampering).
    pub fn edit(&self, f: impl FnOnce(&mut Observed)) {
        f(&mut self.inner.lock().expect("fake lock").state);
    }

    /// Makes every operation matching `pred` never return, as a request whose answer the
    /// kernel dropped, until cleared with `None` (for operations started afterwards).
    pub fn hang_when(&self, pred: Option<Predicate>) {
        *self.hang_when.lock().expect("fake lock") = pred;
    }

    /// Makes every operation matching `pred` fail (with `EIO`) until cleared with `None`.
    pub fn fail_when(&self, pred: Option<Predicate>) {
        *self.fail_when.lock().expect("fake lock") = pred;
    }
}

impl Inner {
    fn ns_mut(&mut self, ns: &NsRef) -> Result<&mut NsState, Error> {
        match ns {
            NsRef::Host => Ok(&mut self.state.host),
            NsRef::Named(n) => self
                .state
                .namespaces
                .get_mut(n)
                .and_then(Option::as_mut)
                .ok_or_else(|| fail(format!("netns {n}"), libc::ENOENT)),
        }
    }

    fn add_link(&mut self, ns: &NsRef, name: &str, l: LinkState) -> Result<(), Error> {
        let st = self.ns_mut(ns)?;
        if st.links.contains_key(name) {
            return Err(fail(format!("link {name} in {ns}"), libc::EEXIST));
        }
        st.links.insert(name.to_string(), l);
        Ok(())
    }

    fn remove_link(&mut self, ns: &NsRef, name: &str) {
        if let Ok(st) = self.ns_mut(ns) {
            st.links.remove(name);
            if st.default_route.as_ref().is_some_and(|r| r.dev == name) {
                st.default_route = None;
            }
        }
        if let Some(peer) = self.pairs.remove(&(ns.clone(), name.to_string())) {
            self.pairs.remove(&peer);
            if let Ok(st) = self.ns_mut(&peer.0) {
                st.links.remove(&peer.1);
                if st.default_route.as_ref().is_some_and(|r| r.dev == peer.1) {
                    st.default_route = None;
                }
            }
        }
    }

    fn lb_table(&mut self, ns: &NsRef, flavour: Flavour) -> Result<&mut LbTable, Error> {
        self.ns_mut(ns)?
            .lb
            .as_mut()
            .filter(|t| t.flavour == Some(flavour))
            .ok_or_else(|| {
                fail(
                    format!("table ip mini_lb ({flavour:?}) in {ns}"),
                    libc::ENOENT,
                )
            })
    }

    fn vxlan_ns(&mut self, ns: &str) -> Result<&mut NsState, Error> {
        let st = self.ns_mut(&NsRef::Named(ns.to_string()))?;
        if !st.links.contains_key(VXLAN) {
            return Err(fail(format!("link {VXLAN} in netns {ns}"), libc::ENODEV));
        }
        Ok(st)
    }

    fn veth(
        &mut self,
        host: (NsRef, &str, u32, &str, bool),
        sandbox: (&str, &str, MacAddr, ipnet::Ipv4Net),
    ) -> Result<(), Error> {
        let (hns, port, mtu, master, isolated) = host;
        let (sns, ifname, mac, addr) = sandbox;
        let sref = NsRef::Named(sns.to_string());
        if !self.ns_mut(&hns)?.links.contains_key(master) {
            return Err(fail(format!("link {master} in {hns}"), libc::ENODEV));
        }
        if self.ns_mut(&sref)?.links.contains_key(ifname) {
            return Err(fail(format!("link {ifname} in {sref}"), libc::EEXIST));
        }
        let mut p = link(LinkKind::Veth, mtu);
        p.master = Some(master.to_string());
        p.isolated = isolated;
        self.add_link(&hns, port, p)?;
        let mut s = link(LinkKind::Veth, mtu);
        s.mac = Some(mac);
        s.addrs.insert(addr);
        self.add_link(&sref, ifname, s)?;
        self.pairs.insert(
            (hns.clone(), port.to_string()),
            (sref.clone(), ifname.to_string()),
        );
        self.pairs
            .insert((sref, ifname.to_string()), (hns, port.to_string()));
        Ok(())
    }

    /// A new namespace holding `lo`; an error if `ns` exists.
    fn new_namespace(&mut self, ns: &str) -> Result<&mut NsState, Error> {
        if self.state.namespaces.contains_key(ns) {
            return Err(fail(format!("netns {ns}"), libc::EEXIST));
        }
        let mut st = NsState::default();
        st.links
            .insert(LOOPBACK.into(), link(LinkKind::Other, 65536));
        let slot = self.state.namespaces.entry(ns.to_string()).or_default();
        Ok(slot.insert(st))
    }

    /// Removes a namespace and its links (a veth's peer goes with its end, as in the kernel).
    fn delete_namespace(&mut self, ns: &str) {
        let r = NsRef::Named(ns.to_string());
        let links: Vec<String> = self
            .ns_mut(&r)
            .map(|st| st.links.keys().cloned().collect())
            .unwrap_or_default();
        for l in links {
            self.remove_link(&r, &l);
        }
        self.state.namespaces.remove(ns);
    }

    fn execute(&mut self, op: &Op) -> Result<(), Error> {
        match op {
            Op::EnableForwarding => self.state.forwarding = true,
            Op::CreateGatewayBridge { name, addr } => {
                let mut b = link(LinkKind::Bridge, GATEWAY_MTU);
                b.addrs.insert(*addr);
                self.add_link(&NsRef::Host, name, b)?;
            }
            Op::SetNat { name, subnet } => self.state.nat = Some(nat::comment(name, *subnet)),
            Op::DeleteNat { .. } => self.state.nat = None,
            Op::CreateOverlay {
                ns,
                vni,
                gateway,
                port,
                local,
            } => {
                let st = self.new_namespace(ns)?;
                let mut br = link(LinkKind::Bridge, OVERLAY_MTU);
                br.addrs.insert(*gateway);
                st.links.insert(BRIDGE.into(), br);
                let mut vx = link(
                    LinkKind::Vxlan(VxlanState {
                        vni: *vni,
                        port: *port,
                        local: Some(*local),
                        learning: false,
                        proxy: true,
                        l2miss: true,
                        l3miss: true,
                    }),
                    OVERLAY_MTU,
                );
                vx.master = Some(BRIDGE.into());
                st.links.insert(VXLAN.into(), vx);
            }
            Op::CreateSandbox { ns } => {
                self.new_namespace(ns)?;
            }
            Op::DeleteNamespace { ns } => self.delete_namespace(ns),
            Op::DeleteLink { ns, name } => {
                self.ns_mut(ns)?;
                self.remove_link(ns, name);
            }
            Op::AttachOverlay {
                sandbox,
                overlay,
                ifname,
                port,
                addr,
                mac,
            } => self.veth(
                (
                    NsRef::Named(overlay.clone()),
                    port,
                    OVERLAY_MTU,
                    BRIDGE,
                    false,
                ),
                (sandbox, ifname, *mac, *addr),
            )?,
            Op::AttachGateway {
                sandbox,
                ifname,
                port,
                bridge,
                addr,
                mac,
                gateway,
            } => {
                self.veth(
                    (NsRef::Host, port, GATEWAY_MTU, bridge, true),
                    (sandbox, ifname, *mac, *addr),
                )?;
                let st = self.ns_mut(&NsRef::Named(sandbox.clone()))?;
                st.default_route = Some(DefaultRoute {
                    gateway: *gateway,
                    dev: ifname.clone(),
                });
            }
            Op::SetNeighbour { ns, ip, mac } => {
                self.vxlan_ns(ns)?.neighbours.insert(*ip, *mac);
            }
            Op::DelNeighbour { ns, ip } => {
                self.vxlan_ns(ns)?.neighbours.remove(ip);
            }
            Op::SetFdb { ns, mac, vtep } => {
                self.vxlan_ns(ns)?.fdb.insert(*mac, *vtep);
            }
            Op::DelFdb { ns, mac } => {
                self.vxlan_ns(ns)?.fdb.remove(mac);
            }
            Op::SetLbTable { ns, spec } => self.ns_mut(ns)?.lb = Some(LbTable::from_spec(spec)),
            Op::DeleteLbTable { ns } => self.ns_mut(ns)?.lb = None,
            Op::SetFilter { .. } | Op::SetFilterMembers { .. } | Op::DeleteFilter => {
                if let Op::SetFilterMembers { add, remove } = op {
                    let table = self
                        .state
                        .filter
                        .as_ref()
                        .ok_or_else(|| fail("table ip mini_filter".into(), libc::ENOENT))?;
                    if add.iter().any(|a| table.members.contains(a))
                        || remove.iter().any(|a| !table.members.contains(a))
                    {
                        return Err(fail("set members of mini_filter".into(), libc::EEXIST));
                    }
                }
                self.state.record_op(op);
            }
            Op::SetLbEntry {
                ns,
                flavour,
                key,
                target,
                change,
                element,
            } => {
                let t = self.lb_table(ns, *flavour)?;
                // The kernel refuses to delete a slot that is not there.
                if !t.set_entry(*key, target, change, *element) {
                    return Err(fail(format!("slots of {key} in {ns}"), libc::ENOENT));
                }
            }
            Op::DelLbEntry {
                ns,
                flavour,
                key,
                parts,
            } => {
                let t = self.lb_table(ns, *flavour)?;
                // nft fails a batch deleting what does not exist.
                if (parts.element && !t.elements.contains(key))
                    || (parts.chain && !t.chains.contains_key(key))
                    || (parts.map && !t.maps.contains(key))
                {
                    return Err(fail(format!("{key} in {ns}"), libc::ENOENT));
                }
                t.del_entry(key);
            }
        }
        Ok(())
    }
}

impl Kernel for FakeKernel {
    async fn observe(&self) -> Result<Observed, Error> {
        self.counters.read();
        Ok(self.inner.lock().expect("fake lock").state.clone())
    }

    async fn observe_part(&self, touched: &Touched) -> Result<Observed, Error> {
        self.counters.read();
        let inner = self.inner.lock().expect("fake lock");
        let mut part = Observed::default();
        if touched.host {
            part.host = inner.state.host.clone();
            part.forwarding = inner.state.forwarding;
            part.nat = inner.state.nat.clone();
            part.filter = inner.state.filter.clone();
        }
        for name in &touched.namespaces {
            if let Some(st) = inner.state.namespaces.get(name) {
                let mut st = st.clone();
                // As the Linux kernel reads them: without what the driver kept.
                if touched.peers_kept.contains(name)
                    && let Some(st) = &mut st
                {
                    st.neighbours.clear();
                    st.fdb.clear();
                }
                part.namespaces.insert(name.clone(), st);
            }
        }
        Ok(part)
    }

    async fn execute(&self, op: &Op) -> Result<(), Error> {
        let hangs = self
            .hang_when
            .lock()
            .expect("fake lock")
            .as_ref()
            .is_some_and(|pred| pred(op));
        if hangs {
            std::future::pending::<()>().await;
        }
        if let Some(pred) = self.fail_when.lock().expect("fake lock").as_ref()
            && pred(op)
        {
            return Err(fail(op.to_string(), libc::EIO));
        }
        self.counters.write();
        let mut inner = self.inner.lock().expect("fake lock");
        inner.log.push(op.clone());
        inner.execute(op)
    }

    fn counters(&self) -> Counters {
        self.counters.get()
    }
}
