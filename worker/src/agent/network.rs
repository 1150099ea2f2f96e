//! The node's desired network state: overlay networks of its tasks, their
//! sandboxes, and the peers on other nodes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

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
        }
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
    /// filter). Returns whether that changed what is wanted.
    pub fn set_members(&self, members: Option<MemberFilter>) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let changed = state.members != members;
        state.members = members;
        changed
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
    pub async fn converge(&self) -> Result<(), AgentError> {
        let _ = self.held.subscribe().wait_for(|held| !*held).await;
        let desired = self.desired()?;
        let lb = self.load_balancing(&desired);
        self.driver
            .apply_with(&desired, &lb)
            .await
            .map_err(|e| AgentError::Network(e.to_string()))?;
        Ok(())
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
