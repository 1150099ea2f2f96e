//! The node's desired network state: overlay networks of its tasks, their
//! sandboxes, and the peers on other nodes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::Ipv4Net;
use mini_netdriver::model::{Attachment, DesiredState, OverlayNetwork, Peer};
use mini_netdriver::service::{Ingress, LoadBalancing, Protocol, PublishedPort, ServiceLb};
use mini_netdriver::{Kernel, MacAddr, MemberFilter, NetDriver};
use mini_proto::v1::{Network, NetworkAttachment, Task};

use crate::agent::worker::AgentError;
use crate::gossip::EndpointRecord;

/// What the driver must converge to, kept up to date by the executor.
pub struct NodeNetwork<K: Kernel> {
    driver: NetDriver<K>,
    /// This node's id: its own endpoints are local, not VXLAN peers.
    node_id: String,
    state: Mutex<Wanted>,
    /// True while converging waits: after a restart, until the first assignment says which of
    /// the sandboxes the previous daemon left (with its tasks still running in them) are kept.
    held: tokio::sync::watch::Sender<bool>,
    /// Converge requests so far: each [`NodeNetwork::converge`] takes the next number.
    requested: AtomicU64,
    /// Held by the one converge that runs; the others wait on it, then find their request
    /// covered (see [`NodeNetwork::converge`]).
    converging: tokio::sync::Mutex<Applied>,
    /// Calls made to the driver.
    applies: AtomicU64,
}

/// What the converges applied.
#[derive(Default)]
struct Applied {
    /// Requests up to this number are covered by a successful converge that read the wanted
    /// state after they were made.
    covered: u64,
    /// What the last converge applied, if it succeeded.
    last: Option<(DesiredState, LoadBalancing)>,
}

#[derive(Default)]
struct Wanted {
    networks: BTreeMap<String, Network>,
    /// Live endpoints of every node (this one too), from the gossip table.
    endpoints: Vec<EndpointRecord>,
    /// The ingress network and this node's ingress sandbox address on it.
    ingress: Option<(Network, NetworkAttachment)>,
    /// Task id → its attachments, for tasks that need a sandbox.
    sandboxes: BTreeMap<String, Vec<NetworkAttachment>>,
    /// The members-only filter of the gossip and data-path ports, once a session said who
    /// the members are.
    members: Option<MemberFilter>,
}

fn parse_addr(addr: &str) -> Option<Ipv4Net> {
    addr.parse().ok()
}

impl<K: Kernel> NodeNetwork<K> {
    /// Wraps the node's driver.
    pub fn new(driver: NetDriver<K>, node_id: String) -> Self {
        NodeNetwork {
            driver,
            node_id,
            state: Mutex::new(Wanted::default()),
            held: tokio::sync::watch::Sender::new(false),
            requested: AtomicU64::new(0),
            converging: tokio::sync::Mutex::new(Applied::default()),
            applies: AtomicU64::new(0),
        }
    }

    /// How many converges called the driver (the others found nothing changed, or were
    /// covered by another).
    #[cfg(test)]
    fn applies(&self) -> u64 {
        self.applies.load(Ordering::Relaxed)
    }

    /// Makes [`NodeNetwork::converge`] wait until [`NodeNetwork::release`]: the sandboxes an
    /// earlier daemon left are neither removed nor recreated before it is known which are kept.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Lets the converges [`NodeNetwork::hold`] made wait go on (now, and from now on).
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// The driver.
    pub fn driver(&self) -> &NetDriver<K> {
        &self.driver
    }

    /// Replaces the networks (from an assignment message).
    pub fn set_networks(&self, networks: &[Network]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.networks = networks.iter().map(|n| (n.id.clone(), n.clone())).collect();
    }

    /// Sets the routing mesh: the ingress network and this node's address on it.
    pub fn set_ingress(&self, ingress: Option<(Network, NetworkAttachment)>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).ingress = ingress;
    }

    /// Replaces the known endpoints (the live records of the gossip table).
    pub fn set_endpoints(&self, endpoints: Vec<EndpointRecord>) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .endpoints = endpoints;
    }

    /// Sets the addresses allowed to send to the gossip and data-path ports (`None`: no
    /// filter). Returns `None` when that changes nothing wanted, else the addresses the new
    /// filter admits that the old one did not.
    pub fn set_members(&self, members: Option<MemberFilter>) -> Option<Vec<Ipv4Addr>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.members == members {
            return None;
        }
        let before = state.members.as_ref().map(|m| &m.members);
        let admitted = members
            .iter()
            .flat_map(|m| &m.members)
            .filter(|a| !before.is_some_and(|b| b.contains(*a)))
            .copied()
            .collect();
        state.members = members;
        Some(admitted)
    }

    /// Wants a sandbox for `task`.
    pub fn add_sandbox(&self, task: &Task) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .sandboxes
            .insert(task.id.clone(), task.networks.clone());
    }

    /// No longer wants `task_id`'s sandbox.
    pub fn remove_sandbox(&self, task_id: &str) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sandboxes
            .remove(task_id);
    }

    /// The live remote endpoints of `network_id` this node knows of: what
    /// its kernel should hold as VXLAN peers.
    pub fn expected_peers(&self, network_id: &str) -> Vec<EndpointRecord> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .endpoints
            .iter()
            .filter(|p| p.network_id == network_id && p.node_id != self.node_id)
            .cloned()
            .collect()
    }

    /// The services with a VIP on `network_id` and the live task IPs behind
    /// each, as this node balances them.
    pub fn service_backends(&self, network_id: &str) -> Vec<VipService> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        vip_services(&state.endpoints, network_id)
    }

    /// Wants nothing at all (the agent is stopping).
    pub fn clear(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Wanted::default();
    }

    /// Service VIPs of the networks this node's sandboxes are on, balanced
    /// over the live endpoints (any node) of each service on that network.
    fn load_balancing(&self, desired: &DesiredState) -> LoadBalancing {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut services: Vec<ServiceLb> = desired
            .networks
            .iter()
            .flat_map(|n| {
                vip_services(&state.endpoints, &n.id)
                    .into_iter()
                    .map(|v| ServiceLb {
                        service_id: v.service_id,
                        network_id: n.id.clone(),
                        vip: v.vip,
                        backends: v.backends,
                    })
            })
            .collect();
        services
            .sort_by(|a, b| (&a.service_id, &a.network_id).cmp(&(&b.service_id, &b.network_id)));
        let ingress = state.ingress.as_ref().and_then(|(network, a)| {
            let addr = parse_addr(&a.addr)?;
            let mut ports: BTreeMap<(Protocol, u16, u16), Vec<Ipv4Addr>> = BTreeMap::new();
            for r in state
                .endpoints
                .iter()
                .filter(|r| r.network_id == network.id)
            {
                for p in &r.ports {
                    let protocol = match p.protocol {
                        crate::gossip::Protocol::Tcp => Protocol::Tcp,
                        crate::gossip::Protocol::Udp => Protocol::Udp,
                    };
                    ports
                        .entry((protocol, p.published, p.target))
                        .or_default()
                        .push(r.ip);
                }
            }
            let ports = ports
                .into_iter()
                .map(|((protocol, published, target), mut backends)| {
                    backends.sort();
                    backends.dedup();
                    PublishedPort {
                        protocol,
                        published,
                        backends,
                        target,
                    }
                })
                .collect();
            Some(Ingress {
                network_id: network.id.clone(),
                addr,
                ports,
            })
        });
        LoadBalancing { services, ingress }
    }

    /// Converges the kernel to what is wanted now.
    /// Converges, unless held (see [`NodeNetwork::hold`]): then does nothing, as the converge
    /// that follows the release applies everything wanted by then. For the updates that must not
    /// wait for an assignment (gossip peers, the members-only filter: the session applies them
    /// before its first assignment).
    pub async fn refresh(&self) -> Result<(), AgentError> {
        if *self.held.borrow() {
            return Ok(());
        }
        self.converge().await
    }

    /// While held (see [`NodeNetwork::hold`]), waits for the release first.
    ///
    /// Converges coalesce: one runs at a time; a request made while one runs waits for it,
    /// and the first waiter to go on applies what is wanted by then, which covers every
    /// request made before it read the wanted state — those return at once. A converge whose
    /// desired state and load balancing equal what the last successful one applied does not
    /// call the driver. Returns when what was wanted at the call is applied.
    pub async fn converge(&self) -> Result<(), AgentError> {
        let _ = self.held.subscribe().wait_for(|held| !*held).await;
        // Wanted-state changes made before this call are visible to whoever reads the wanted
        // state after taking a number at least this one.
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut applied = self.converging.lock().await;
        if applied.covered >= ticket {
            return Ok(());
        }
        let upto = self.requested.load(Ordering::SeqCst);
        let desired = self.desired()?;
        let lb = self.load_balancing(&desired);
        if let Some((d, l)) = &applied.last
            && *d == desired
            && *l == lb
        {
            applied.covered = upto;
            return Ok(());
        }
        self.applies.fetch_add(1, Ordering::Relaxed);
        match self.driver.apply_with(&desired, &lb).await {
            Ok(_) => {
                applied.last = Some((desired, lb));
                applied.covered = upto;
                Ok(())
            }
            Err(e) => {
                applied.last = None;
                Err(AgentError::Network(e.to_string()))
            }
        }
    }

    fn desired(&self) -> Result<DesiredState, AgentError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut used: BTreeMap<&str, ()> = BTreeMap::new();
        let mut sandboxes = Vec::new();
        for (task_id, attachments) in &state.sandboxes {
            let mut list = Vec::new();
            for a in attachments {
                if !state.networks.contains_key(&a.network_id) {
                    continue;
                }
                used.insert(a.network_id.as_str(), ());
                let addr = parse_addr(&a.addr).ok_or_else(|| {
                    AgentError::Network(format!("task {task_id}: bad address {:?}", a.addr))
                })?;
                let mac: MacAddr = a.mac.parse().map_err(|_| {
                    AgentError::Network(format!("task {task_id}: bad MAC {:?}", a.mac))
                })?;
                list.push(Attachment {
                    network_id: a.network_id.clone(),
                    addr,
                    mac,
                });
            }
            sandboxes.push(mini_netdriver::model::Sandbox {
                id: task_id.clone(),
                attachments: list,
            });
        }
        // The ingress network is wanted on every node (for ingress_sbox), pinned.
        let mut known: BTreeMap<&str, &Network> = state
            .networks
            .iter()
            .map(|(id, n)| (id.as_str(), n))
            .collect();
        if let Some((ingress, _)) = &state.ingress {
            known.insert(ingress.id.as_str(), ingress);
            used.insert(ingress.id.as_str(), ());
        }
        let ingress_id = state.ingress.as_ref().map(|(n, _)| n.id.as_str());
        let mut networks = Vec::new();
        for id in used.keys() {
            let Some(n) = known.get(*id) else { continue };
            let subnet: Ipv4Net = n.subnet.parse().map_err(|_| {
                AgentError::Network(format!("network {id}: bad subnet {:?}", n.subnet))
            })?;
            let gateway: Ipv4Addr = n.gateway.parse().map_err(|_| {
                AgentError::Network(format!("network {id}: bad gateway {:?}", n.gateway))
            })?;
            let peers = state
                .endpoints
                .iter()
                .filter(|p| p.network_id == *id && p.node_id != self.node_id)
                .map(|p| Peer {
                    ip: p.ip,
                    mac: MacAddr(p.mac),
                    vtep: p.vtep,
                })
                .collect();
            networks.push(OverlayNetwork {
                id: n.id.clone(),
                vni: n.vni,
                subnet,
                gateway,
                peers,
                pinned: Some(*id) == ingress_id,
            });
        }
        Ok(DesiredState {
            networks,
            sandboxes,
            members: state.members.clone(),
        })
    }
}

/// A service with a VIP on one network and its live task IPs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipService {
    /// The service.
    pub service_id: String,
    /// Its name.
    pub service_name: String,
    /// Its VIP on the network.
    pub vip: Ipv4Addr,
    /// Live task IPs on the network (any node), sorted.
    pub backends: Vec<Ipv4Addr>,
}

/// Groups the live endpoints of `network_id` that carry a VIP by service.
fn vip_services(endpoints: &[EndpointRecord], network_id: &str) -> Vec<VipService> {
    let mut services: BTreeMap<&str, VipService> = BTreeMap::new();
    for r in endpoints.iter().filter(|r| r.network_id == network_id) {
        let Some(vip) = r.vip else { continue };
        services
            .entry(&r.service_id)
            .or_insert_with(|| VipService {
                service_id: r.service_id.clone(),
                service_name: r.service_name.clone(),
                vip,
                backends: Vec::new(),
            })
            .backends
            .push(r.ip);
    }
    services
        .into_values()
        .map(|mut v| {
            v.backends.sort();
            v.backends.dedup();
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mini_netdriver::{DriverConfig, FakeKernel};

    use super::*;

    const NET: &str = "net1net1net1net1net1net1n";

    fn node() -> Arc<NodeNetwork<FakeKernel>> {
        let driver = NetDriver::new(
            DriverConfig::new("/run/mini-unit", Ipv4Addr::new(10, 0, 0, 1)),
            FakeKernel::new(),
        );
        let n = NodeNetwork::new(driver, "node1".into());
        n.set_networks(&[Network {
            id: NET.into(),
            subnet: "10.0.9.0/24".into(),
            gateway: "10.0.9.1".into(),
            vni: 4097,
            ..Default::default()
        }]);
        Arc::new(n)
    }

    fn task(id: &str, last: u8) -> Task {
        Task {
            id: id.into(),
            networks: vec![NetworkAttachment {
                network_id: NET.into(),
                addr: format!("10.0.9.{last}/24"),
                mac: format!("02:42:0a:00:09:{last:02x}"),
                vip: String::new(),
            }],
            ..Default::default()
        }
    }

    fn remote(id: &str, last: u8) -> EndpointRecord {
        EndpointRecord {
            network_id: NET.into(),
            endpoint_id: id.into(),
            node_id: "node2".into(),
            vtep: Ipv4Addr::new(10, 0, 0, 2),
            ip: Ipv4Addr::new(10, 0, 9, last),
            prefix_len: 24,
            mac: [2, 0x42, 10, 0, 9, last],
            service_id: "svc1".into(),
            service_name: "web".into(),
            task_name: format!("web.{last}.{id}"),
            vip: Some(Ipv4Addr::new(10, 0, 9, 2)),
            aliases: vec![],
            ports: vec![],
            version: 1,
            deleted: false,
            signature: vec![],
        }
    }

    #[test]
    fn a_new_member_filter_reports_the_addresses_it_admits() {
        let n = node();
        let filter = |last: &[u8]| MemberFilter {
            ports: [7946, 4789].into(),
            members: last.iter().map(|l| Ipv4Addr::new(10, 0, 0, *l)).collect(),
        };
        let ip = |l: u8| Ipv4Addr::new(10, 0, 0, l);
        assert_eq!(
            n.set_members(Some(filter(&[1, 2]))),
            Some(vec![ip(1), ip(2)])
        );
        assert_eq!(
            n.set_members(Some(filter(&[1, 2]))),
            None,
            "nothing changed"
        );
        assert_eq!(
            n.set_members(Some(filter(&[1, 3, 4]))),
            Some(vec![ip(3), ip(4)])
        );
        assert_eq!(
            n.set_members(Some(filter(&[1]))),
            Some(vec![]),
            "only removals"
        );
        assert_eq!(n.set_members(None), Some(vec![]));
    }

    #[tokio::test]
    async fn a_converge_that_changes_nothing_for_the_node_does_not_call_the_driver() {
        let n = node();
        n.add_sandbox(&task("aaaaaaaaaaaaaaaaaaaaaaaaa", 5));
        n.converge().await.unwrap();
        assert_eq!(n.applies(), 1);
        let kernel = n.driver().kernel().counters();
        // The driver forgets what the kernel holds: calling it would read the kernel.
        n.driver().resync().await;
        for _ in 0..3 {
            n.converge().await.unwrap();
        }
        assert_eq!(n.applies(), 1, "nothing changed: no driver call");
        assert_eq!(n.driver().kernel().counters(), kernel, "no kernel call");
        // A remote endpoint of a VIP service: peers and the sandbox's VIP table change.
        n.set_endpoints(vec![remote("bbbbbbbbbbbbbbbbbbbbbbbbb", 7)]);
        n.converge().await.unwrap();
        assert_eq!(n.applies(), 2);
        let st = n.driver().kernel().state();
        let overlay = st.namespaces["1-net1net1ne"].as_ref().unwrap();
        assert_eq!(
            overlay.neighbours.keys().collect::<Vec<_>>(),
            [&Ipv4Addr::new(10, 0, 9, 7)]
        );
        let sandbox = st.namespaces["aaaaaaaaaaaa"].as_ref().unwrap();
        assert!(sandbox.lb.is_some(), "the VIP table of the sandbox");
        // Its sandbox goes: the driver is called, and the namespace is gone.
        n.remove_sandbox("aaaaaaaaaaaaaaaaaaaaaaaaa");
        n.converge().await.unwrap();
        assert_eq!(n.applies(), 3);
        assert!(
            !n.driver()
                .kernel()
                .state()
                .namespaces
                .contains_key("aaaaaaaaaaaa")
        );
    }

    #[tokio::test]
    async fn a_failed_converge_is_not_taken_as_applied() {
        let n = node();
        n.add_sandbox(&task("aaaaaaaaaaaaaaaaaaaaaaaaa", 5));
        n.driver()
            .kernel()
            .fail_when(Some(Box::new(|op| op.to_string().contains("attach"))));
        n.converge().await.unwrap_err();
        n.converge().await.unwrap_err();
        n.driver().kernel().fail_when(None);
        n.converge().await.unwrap();
        assert_eq!(n.applies(), 3, "each converge after a failure tries again");
        let st = n.driver().kernel().state();
        let sandbox = st.namespaces["aaaaaaaaaaaa"].as_ref().unwrap();
        assert!(sandbox.links.contains_key("eth0") && sandbox.links.contains_key("eth1"));
    }

    #[tokio::test]
    async fn converges_requested_while_one_runs_are_applied_together() {
        let n = node();
        n.converge().await.unwrap();
        let applies = n.applies();
        // One converge "runs" (holds the lock) while ten more are requested, each after
        // wanting one more sandbox.
        let running = n.converging.lock().await;
        let mut waiting = Vec::new();
        for i in 0..10u8 {
            n.add_sandbox(&task(&format!("t{i:02}aaaaaaaaaaaaaaaaaaaaaa"), 10 + i));
            let n = Arc::clone(&n);
            waiting.push(tokio::spawn(async move { n.converge().await }));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.requested.load(Ordering::SeqCst) < 11 {
            assert!(
                Instant::now() < deadline,
                "requests seen: {}",
                n.requested.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(running);
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert_eq!(n.applies(), applies + 1, "one driver call for ten requests");
        let st = n.driver().kernel().state();
        for i in 0..10 {
            assert!(
                st.namespaces.contains_key(&format!("t{i:02}aaaaaaaaa")),
                "sandbox {i} made before its converge returned"
            );
        }
    }
}
