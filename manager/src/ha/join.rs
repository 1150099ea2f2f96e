//! The leader's side of a manager joining: a Raft id from the cluster's counter and a manager
//! node in the store. The membership controller (`members`) then adds the id as a learner and
//! promotes it once it has caught up.

use mini_proto::v1::{
    Cluster, JoinRequest, JoinResponse, Node, NodeRole, NodeSpec, NodeState, NodeStatus,
    dispatcher_client::DispatcherClient, store_action::Action,
};

use crate::error::ControlError;
use crate::manager::Manager;
use crate::store::{Tables, create_action, update_action};

/// The next Raft id to hand out, and the cluster object with its counter moved past it. An id is
/// never reused: the counter only grows, and it starts above every id any node holds.
pub fn allocate_raft_id(cluster: &Cluster, tables: &Tables) -> (u64, Cluster) {
    let highest = tables.nodes.values().map(|n| n.raft_id).max().unwrap_or(0);
    let id = cluster
        .next_raft_id
        .max(super::BOOTSTRAP_RAFT_ID + 1)
        .max(highest + 1);
    let mut next = cluster.clone();
    next.next_raft_id = id + 1;
    (id, next)
}

/// Admits `req` as a manager. A follower passes the call on to the leader, which gives the node
/// a new Raft id and records it as a manager; the answer carries the id and every manager's
/// address.
pub async fn admit_manager(
    manager: &Manager,
    req: JoinRequest,
) -> Result<JoinResponse, ControlError> {
    if !manager.proposer().is_leader() {
        let leader = manager.raft_status().leader_id;
        let channel = manager.peers().channel_to(leader).ok_or_else(|| {
            ControlError::Unreachable(format!(
                "no leader to admit a manager (raft leader id {leader}); try again"
            ))
        })?;
        return DispatcherClient::new(channel)
            .join(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| ControlError::Refused(s.message().to_string()));
    }
    if req.node_id.is_empty() || req.advertise_addr.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(ControlError::Invalid(format!(
            "join needs a node id and an IPv4 advertise address (got {:?})",
            req.advertise_addr
        )));
    }
    let agent_port = manager.agent_port();
    let (raft_id, certificate, cluster) = manager
        .write(|t| {
            let cluster = t.cluster()?.clone();
            let existing = t.nodes.get(&req.node_id);
            let (raft_id, next_cluster) = allocate_raft_id(&cluster, t);
            let certificate = crate::dispatcher::ca::issue_certificate(
                &cluster,
                &req.csr,
                &req.node_id,
                NodeRole::Manager,
            )?;
            let node = joined_node(
                &req,
                existing,
                NodeRole::Manager,
                raft_id,
                agent_port,
                certificate.clone(),
            );
            manager.peers().insert(raft_id, &node.agent_addr);
            let put = Action::PutNode(node);
            let actions = vec![
                update_action(Action::PutCluster(next_cluster)),
                if existing.is_none() {
                    create_action(put)
                } else {
                    update_action(put)
                },
            ];
            Ok((actions, (raft_id, certificate, cluster)))
        })
        .await?;
    tracing::info!(node_id = %req.node_id, raft_id, "manager admitted");
    Ok(JoinResponse {
        cluster_id: cluster.id.clone(),
        role: NodeRole::Manager as i32,
        managers: manager.manager_addrs(),
        data_path_port: cluster.data_path_port,
        heartbeat_period_ms: manager.sessions().period().as_millis() as u64,
        raft_id,
        certificate,
        intermediates: crate::dispatcher::ca::intermediates(&cluster),
        trusted_roots: crate::dispatcher::ca::trusted_roots(&cluster),
        root_ca: cluster.ca_cert,
    })
}

/// The record of a node that joined with `req` as `role` (`raft_id` 0 for a worker).
/// `existing` is its record from an earlier join: its version, resources and description are
/// kept until its session reports them again; a worker also keeps its spec (availability,
/// labels) and ingress attachment, a manager its spec with the manager role.
pub fn joined_node(
    req: &JoinRequest,
    existing: Option<&Node>,
    role: NodeRole,
    raft_id: u64,
    agent_port: u16,
    certificate: Vec<u8>,
) -> Node {
    let (spec, ingress) = match role {
        NodeRole::Manager => (
            NodeSpec {
                desired_role: NodeRole::Manager as i32,
                ..existing.and_then(|n| n.spec.clone()).unwrap_or_default()
            },
            None,
        ),
        NodeRole::Worker => (
            existing.and_then(|n| n.spec.clone()).unwrap_or(NodeSpec {
                desired_role: NodeRole::Worker as i32,
                ..Default::default()
            }),
            existing.and_then(|n| n.ingress.clone()),
        ),
    };
    let gossip_port = if req.gossip_port == 0 {
        7946
    } else {
        req.gossip_port
    };
    Node {
        id: req.node_id.clone(),
        meta: existing.and_then(|n| n.meta),
        spec: Some(spec),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            message: String::new(),
            addr: req.advertise_addr.clone(),
        }),
        hostname: req.hostname.clone(),
        role: role as i32,
        raft_id,
        agent_addr: format!("{}:{agent_port}", req.advertise_addr),
        gossip_addr: format!("{}:{gossip_port}", req.advertise_addr),
        ingress,
        certificate,
        // Reported when the node's session opens.
        resources: existing.and_then(|n| n.resources),
        description: existing.and_then(|n| n.description.clone()),
    }
}
