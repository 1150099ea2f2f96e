//! The agent's link to the gossip plane: it starts the node's SWIM agent,
//! turns the local tasks' attachments into endpoint records, and re-programs
//! the VXLAN peers whenever the endpoint table changes.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use mini_netdriver::Kernel;
use mini_proto::v1::Task;

use super::task::task_hostname;
use super::worker::Shared;
use crate::dns::NameIndex;
use crate::gossip::{EndpointRecord, Gossip, GossipConfig, Protocol, PublishedPort};

/// The endpoint records of `task`'s attachments on this node (`vtep`).
pub fn records_for(task: &Task, vtep: Ipv4Addr) -> Vec<EndpointRecord> {
    task.networks
        .iter()
        .filter_map(|a| {
            Some(EndpointRecord {
                service_id: task.service_id.clone(),
                service_name: task.service_name.clone(),
                task_name: task_hostname(task),
                vip: a.vip.split('/').next().and_then(|v| v.parse().ok()),
                ports: task
                    .endpoint
                    .as_ref()
                    .map(|e| e.ports.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| {
                        Some(PublishedPort {
                            protocol: if p.protocol == "udp" {
                                Protocol::Udp
                            } else {
                                Protocol::Tcp
                            },
                            published: u16::try_from(p.published_port).ok()?,
                            target: u16::try_from(p.target_port).ok()?,
                        })
                    })
                    .collect(),
                ..endpoint_record(a, &task.id, vtep)?
            })
        })
        .collect()
}

/// Starts the node's gossip agent unless it runs already; `peers` are other
/// nodes' gossip addresses to join through.
pub async fn ensure_started<K: Kernel + 'static>(shared: &Arc<Shared<K>>, peers: &[String]) {
    let mut slot = shared.gossip.write().await;
    if slot.is_some() {
        return;
    }
    let bind = SocketAddr::from((shared.vtep, shared.gossip_port));
    let bootstrap: Vec<SocketAddr> = peers.iter().filter_map(|p| p.parse().ok()).collect();
    let config = GossipConfig::new(shared.node_id.clone(), bind).with_bootstrap(bootstrap);
    match Gossip::start(config).await {
        Ok(gossip) => {
            let changes = gossip.subscribe();
            *slot = Some(gossip);
            tokio::spawn(follow_table(Arc::clone(shared), changes));
            tracing::info!(%bind, "gossip started");
        }
        Err(err) => {
            tracing::error!(%bind, %err, "cannot start gossip: overlay peers will not be programmed")
        }
    }
}

/// Re-programs peers and VIP backends from the table after every change, then answers
/// names from it, until gossip stops. Names come last: a client that resolves a new service
/// must find its VIP already balanced in its sandbox (a SYN to a VIP not yet programmed is
/// lost and retried only after a second).
async fn follow_table<K: Kernel + 'static>(
    shared: Arc<Shared<K>>,
    mut changes: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        let (endpoints, names) = {
            let gossip = shared.gossip.read().await;
            let Some(gossip) = gossip.as_ref() else {
                return;
            };
            let table = gossip.table();
            let names = NameIndex::from_table(&table);
            (table.live().cloned().collect::<Vec<_>>(), names)
        };
        shared.network.set_endpoints(endpoints);
        if let Err(err) = shared.network.converge().await {
            tracing::warn!(%err, "programming overlay peers failed");
        }
        shared.dns.install(names);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Publishes `task`'s endpoints (before it is reported running).
pub async fn publish<K: Kernel + 'static>(shared: &Shared<K>, task: &Task) {
    let gossip = shared.gossip.read().await;
    let Some(gossip) = gossip.as_ref() else {
        return;
    };
    for record in records_for(task, shared.vtep) {
        if let Err(err) = gossip.publish(record).await {
            tracing::warn!(task = %task.id, %err, "cannot publish an endpoint");
        }
    }
}

/// Withdraws `task`'s endpoints (before its interfaces go away).
pub async fn withdraw<K: Kernel + 'static>(shared: &Shared<K>, task: &Task) {
    let gossip = shared.gossip.read().await;
    let Some(gossip) = gossip.as_ref() else {
        return;
    };
    for a in &task.networks {
        if let Err(err) = gossip.withdraw(&a.network_id, &task.id).await {
            tracing::warn!(task = %task.id, %err, "cannot withdraw an endpoint");
        }
    }
}

/// Leaves the gossip cluster gracefully (others drop this node's endpoints at once).
pub async fn stop<K: Kernel + 'static>(shared: &Shared<K>) {
    if let Some(gossip) = shared.gossip.write().await.take() {
        gossip.stop().await;
    }
}

/// The endpoint id of a node's ingress sandbox on the ingress network.
fn ingress_endpoint_id(node_id: &str) -> String {
    format!("ingress-sbox-{node_id}")
}

/// Publishes this node's ingress sandbox as an endpoint of the ingress network,
/// so replies from tasks on other nodes find their way back to it.
pub async fn publish_ingress<K: Kernel + 'static>(
    shared: &Shared<K>,
    attachment: &mini_proto::v1::NetworkAttachment,
) {
    let gossip = shared.gossip.read().await;
    let Some(gossip) = gossip.as_ref() else {
        return;
    };
    let id = ingress_endpoint_id(&shared.node_id);
    let Some(record) = endpoint_record(attachment, &id, shared.vtep) else {
        return;
    };
    let current = gossip.get(&attachment.network_id, &id);
    if current
        .as_ref()
        .is_some_and(|r| !r.deleted && r.ip == record.ip && r.vtep == record.vtep)
    {
        return;
    }
    let record = EndpointRecord {
        task_name: "ingress_sbox".into(),
        ..record
    };
    if let Err(err) = gossip.publish(record).await {
        tracing::warn!(%err, "cannot publish the ingress sandbox endpoint");
    }
}

/// The record of one attachment of `endpoint_id` on this node (`vtep`), with
/// no service data; `None` when its address or MAC does not parse.
fn endpoint_record(
    attachment: &mini_proto::v1::NetworkAttachment,
    endpoint_id: &str,
    vtep: Ipv4Addr,
) -> Option<EndpointRecord> {
    let net: ipnet::Ipv4Net = attachment.addr.parse().ok()?;
    let mac: mini_netdriver::MacAddr = attachment.mac.parse().ok()?;
    Some(EndpointRecord {
        network_id: attachment.network_id.clone(),
        endpoint_id: endpoint_id.to_string(),
        node_id: String::new(),
        vtep,
        ip: net.addr(),
        prefix_len: net.prefix_len(),
        mac: mac.0,
        service_id: String::new(),
        service_name: String::new(),
        task_name: String::new(),
        vip: None,
        aliases: Vec::new(),
        ports: Vec::new(),
        version: 0,
        deleted: false,
    })
}
