//! The agent's link to the gossip plane: it starts the node's SWIM agent,
//! turns the local tasks' attachments into endpoint records, and re-programs
//! the VXLAN peers whenever the endpoint table changes.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use mini_netdriver::Kernel;
use mini_proto::v1::{GossipKeyRing, GossipNodeCertificate, Task};

use super::task::task_hostname;
use super::worker::Shared;
use crate::dns::NameIndex;
use crate::gossip::{
    EcdsaSigner, EndpointRecord, Gossip, GossipConfig, GossipKeys, Protocol, PublishedPort,
    RecordAuth,
};

/// The endpoint records of `task`'s attachments on this node (`vtep`).
///
/// `bound`: the task serves its service (Docker's service binding): its records carry the
/// service, the task's name, the VIP and the published ports, so peers put it in DNS and in
/// the VIP's and the routing mesh's backends. Unbound (a task whose health check has not
/// passed yet), they carry only where the task lives (address, MAC, VTEP): it is reachable on
/// the overlay, answers no name and takes no balanced traffic.
pub fn records_for(task: &Task, vtep: Ipv4Addr, bound: bool) -> Vec<EndpointRecord> {
    task.networks
        .iter()
        .filter_map(|a| {
            if !bound {
                return endpoint_record(a, &task.id, vtep);
            }
            Some(EndpointRecord {
                service_id: task.service_id.clone(),
                service_name: task.service_name.clone(),
                task_name: task_hostname(task),
                aliases: task.aliases.clone(),
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

/// The gossip key ring a session handed out, if it is usable.
pub fn keys_from_session(ring: Option<&GossipKeyRing>) -> Option<GossipKeys> {
    let ring = ring?;
    match GossipKeys::new(ring.keys.iter().map(|k| (k.id, k.key.as_slice()))) {
        Ok(keys) => Some(keys),
        Err(err) => {
            tracing::error!(%err, "the manager handed out an unusable gossip key ring");
            None
        }
    }
}

/// Takes the members' certificates a session handed out; returns whether
/// there were any (then records are bound to their owners).
pub fn set_certificates<K: Kernel>(
    shared: &Shared<K>,
    certificates: &[GossipNodeCertificate],
) -> bool {
    if certificates.is_empty() {
        return false;
    }
    shared.peer_keys.set_certificates(
        certificates
            .iter()
            .map(|c| (c.node_id.as_str(), c.certificate.as_slice())),
    );
    true
}

/// How this node binds its records to its identity: its node key and the
/// members' keys, when the managers hand out certificates and the key file
/// reads. `None` otherwise (records are then neither signed nor checked).
fn record_auth<K: Kernel>(shared: &Shared<K>, signed: bool) -> Option<RecordAuth> {
    if !signed {
        tracing::info!(
            "no node certificates from the managers: endpoint records are not bound to their owners"
        );
        return None;
    }
    let path = shared.config.node_key.as_ref()?;
    match EcdsaSigner::load(path) {
        Ok(signer) => Some(RecordAuth {
            signer: Arc::new(signer),
            peers: shared.peer_keys.clone(),
        }),
        Err(err) => {
            tracing::error!(%err, "cannot load the node key: endpoint records are not bound to their owners");
            None
        }
    }
}

/// Starts the node's gossip agent unless it runs already (then it takes the
/// key ring, which may have been rotated); `peers` are other nodes' gossip
/// addresses to join through; `signed`: the session handed out the members'
/// certificates. Without a key ring gossip does not start: it never runs
/// unsealed.
pub async fn ensure_started<K: Kernel + 'static>(
    shared: &Arc<Shared<K>>,
    peers: &[String],
    keys: Option<GossipKeys>,
    signed: bool,
) {
    let Some(keys) = keys else {
        tracing::warn!("the session carried no gossip key ring: gossip not started");
        return;
    };
    let mut slot = shared.gossip.write().await;
    if let Some(gossip) = slot.as_ref() {
        if let Err(err) = gossip.set_keys(keys).await {
            tracing::warn!(%err, "cannot hand the gossip agent its new keys");
        }
        return;
    }
    let bind = SocketAddr::from((shared.vtep, shared.gossip_port));
    let bootstrap: Vec<SocketAddr> = peers.iter().filter_map(|p| p.parse().ok()).collect();
    let mut config =
        GossipConfig::new(shared.node_id.clone(), bind, keys).with_bootstrap(bootstrap);
    config.records = record_auth(shared, signed);
    match Gossip::start(config).await {
        Ok(gossip) => {
            let changes = gossip.subscribe();
            shared.config.metrics.set_gossip(Some(gossip.probe()));
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
        if let Err(err) = shared.network.refresh().await {
            tracing::warn!(%err, "programming overlay peers failed");
        }
        shared.dns.install(names);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Publishes `task`'s endpoints (before it is reported running), bound to its service or
/// not (see [`records_for`]); publishing again replaces the earlier records.
pub async fn publish<K: Kernel + 'static>(shared: &Shared<K>, task: &Task, bound: bool) {
    let gossip = shared.gossip.read().await;
    let Some(gossip) = gossip.as_ref() else {
        return;
    };
    for record in records_for(task, shared.vtep, bound) {
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

/// Keeps the members-only filter (gossip and data-path ports) in step with the
/// cluster's members, as the session lists them (their advertise addresses).
pub async fn set_members<K: Kernel + 'static>(shared: &Shared<K>, members: &[String]) {
    if members.is_empty() {
        // A manager that does not list members (an older one): keep what we have.
        return;
    }
    let mut addrs: std::collections::BTreeSet<Ipv4Addr> =
        members.iter().filter_map(|m| m.parse().ok()).collect();
    addrs.insert(shared.vtep);
    let filter = mini_netdriver::MemberFilter {
        ports: [
            shared.gossip_port,
            shared.network.driver().config().data_path_port,
        ]
        .into(),
        members: addrs,
    };
    if let Some(admitted) = shared.network.set_members(Some(filter)) {
        tracing::info!(
            members = members.len(),
            "members-only filter of the gossip and data-path ports updated"
        );
        if let Err(err) = shared.network.refresh().await {
            tracing::warn!(%err, "updating the members-only filter failed");
        }
        // A node that joined just now may have announced to this one before the filter let
        // it in: its announce was dropped here, and it repeats it only every few seconds.
        // Announce to it now that it can answer.
        let gossip = shared.gossip.read().await;
        if let Some(gossip) = gossip.as_ref() {
            let port = shared.gossip_port;
            let addrs = admitted
                .into_iter()
                .map(|a| std::net::SocketAddr::new(a.into(), port));
            if let Err(err) = gossip.reach(addrs.collect()).await {
                tracing::debug!(%err, "announcing to newly admitted members");
            }
        }
    }
}

/// Leaves the gossip cluster gracefully (others drop this node's endpoints at once).
pub async fn stop<K: Kernel + 'static>(shared: &Shared<K>) {
    if let Some(gossip) = shared.gossip.write().await.take() {
        shared.config.metrics.set_gossip(None);
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
        signature: Vec::new(),
    })
}
