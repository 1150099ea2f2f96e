//! Joining, leaving, join tokens and node updates.

use std::net::SocketAddr;
use std::time::Duration;

use mini_proto::tls::{self, Credentials, Peer, PinError, Trust, pki};
use mini_proto::v1::{
    Cluster, JoinRequest, JoinTokenRequest, JoinTokenResponse, Membership, Node, NodeAvailability,
    NodeRole, NodeState, RemoveNodeRequest, RemoveResponse, StoreAction, SwarmJoinRequest,
    SwarmJoinResponse, SwarmLeaveRequest, UpdateNodeRequest, dispatcher_client::DispatcherClient,
    store_action::Action,
};
use tonic::transport::Channel;

use super::membership::{self, parse_listen_addr};
use super::{ControlApi, ControlError};
use crate::dispatcher::token;
use crate::ids::new_secret;
use crate::manager::Manager;
use crate::store::{Tables, update_action};

/// How long dialing another node may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// A mutual-TLS gRPC channel to another node's listener (`host:port`), expecting `peer` there.
pub async fn dial(trust: &Trust, addr: &str, peer: Peer) -> Result<Channel, ControlError> {
    let endpoint = mini_proto::node_endpoint(addr, DIAL_TIMEOUT).map_err(|_| {
        ControlError::Invalid(format!("invalid address {addr:?}: expected HOST:PORT"))
    })?;
    trust.connect(endpoint, peer).await.map_err(|e| {
        ControlError::Unreachable(format!("cannot reach {addr}: {}", tls::error_chain(&e)))
    })
}

/// The address the node's own agent dials to reach its own listener.
pub fn local_dial_addr(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        format!("127.0.0.1:{}", bound.port())
    } else {
        bound.to_string()
    }
}

/// `swarm join-token worker|manager`.
pub(super) async fn join_token(
    manager: &Manager,
    request: JoinTokenRequest,
) -> Result<JoinTokenResponse, ControlError> {
    let role = match request.role.as_str() {
        "worker" => NodeRole::Worker,
        "manager" => NodeRole::Manager,
        other => {
            return Err(ControlError::Invalid(format!(
                "unknown role {other:?}: expected worker or manager"
            )));
        }
    };
    let cluster = manager
        .write(|t| {
            let mut cluster = t.cluster()?.clone();
            if !request.rotate {
                return Ok::<_, ControlError>((Vec::new(), cluster));
            }
            match role {
                NodeRole::Worker => cluster.worker_token_secret = new_secret(16),
                NodeRole::Manager => cluster.manager_token_secret = new_secret(16),
            }
            Ok((
                vec![update_action(Action::PutCluster(cluster.clone()))],
                cluster,
            ))
        })
        .await?;
    let manager_addr = manager.store().view(|t| {
        t.nodes
            .values()
            .find(|n| n.role() == NodeRole::Manager)
            .map(|n| n.agent_addr.clone())
            .unwrap_or_default()
    });
    Ok(JoinTokenResponse {
        token: token::token_for(&cluster, role),
        manager_addr,
    })
}

/// `swarm join`: admitted by a manager, then start the listener and agent.
pub(super) async fn swarm_join(
    api: &ControlApi,
    request: SwarmJoinRequest,
) -> Result<SwarmJoinResponse, ControlError> {
    let listen = parse_listen_addr("--listen-addr", &request.listen_addr)?;
    let remote = if request.remote_addr.contains(':') {
        request.remote_addr.clone()
    } else {
        format!("{}:2377", request.remote_addr)
    };
    let remote_socket = tokio::net::lookup_host(&remote)
        .await
        .ok()
        .and_then(|mut addrs| addrs.find(std::net::SocketAddr::is_ipv4))
        .ok_or_else(|| {
            ControlError::Invalid(format!(
                "invalid manager address {:?}: expected IP:PORT (port 2377 when omitted)",
                request.remote_addr
            ))
        })?;
    let advertise = super::advertise::for_join(&request.advertise_addr, remote_socket)?;
    let (digest, _) =
        token::parse(&request.token).map_err(|e| ControlError::Invalid(e.to_string()))?;
    let _member = api.inner.member_lock.lock().await;
    if api.inner.membership.read().await.is_some() {
        return Err(ControlError::Precondition(
            "this node is already part of a swarm; run `mini swarm leave` first".into(),
        ));
    }
    let trust = api.inner.config.trust.clone();
    let node_id = api.node_id();
    let joined = async {
        // The manager's CA, checked against the token's digest, before anything secret is sent.
        let (ca_der, channel) = tls::pinned_manager_channel(&remote, &digest, DIAL_TIMEOUT)
            .await
            .map_err(|e| match e {
                PinError::Mismatch => ControlError::Refused(tls::CA_MISMATCH.into()),
                other => ControlError::Unreachable(other.to_string()),
            })?;
        // The key stays here; only the request for a certificate leaves.
        let (key_der, csr) =
            pki::new_node_key(&node_id).map_err(|e| ControlError::Internal(e.to_string()))?;
        let response = DispatcherClient::new(channel)
            .join(JoinRequest {
                token: request.token.clone(),
                node_id: node_id.clone(),
                hostname: api.inner.config.hostname.clone(),
                advertise_addr: advertise.to_string(),
                gossip_port: u32::from(api.inner.config.gossip_port),
                csr,
            })
            .await
            .map_err(|s| ControlError::Refused(s.message().to_string()))?
            .into_inner();
        let issued = pki::identity_of(&response.certificate)
            .ok()
            .filter(|id| id.node_id == node_id && id.cluster_id == response.cluster_id)
            .filter(|_| {
                let intermediates: Vec<&[u8]> =
                    response.intermediates.iter().map(Vec::as_slice).collect();
                pki::chains_to(
                    &response.certificate,
                    &intermediates,
                    std::slice::from_ref(&ca_der),
                )
            });
        if issued.is_none() {
            return Err(ControlError::Refused(
                "the manager answered the join with a certificate that is not this node's or not \
                 signed by the pinned CA"
                    .into(),
            ));
        }
        trust
            .install(Credentials {
                // The roots the pinned manager says to trust besides the pinned one (the new
                // root during a root CA rotation).
                extra_roots: response
                    .trusted_roots
                    .iter()
                    .filter(|r| **r != ca_der)
                    .cloned()
                    .collect(),
                ca_der,
                cert_der: response.certificate.clone(),
                key_der,
                intermediates: response.intermediates.clone(),
            })
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let bound = api.listen(listen).await?;
        let membership = Membership {
            cluster_id: response.cluster_id.clone(),
            role: response.role,
            advertise_addr: advertise.to_string(),
            listen_addr: bound.to_string(),
            managers: if response.managers.is_empty() {
                vec![remote.clone()]
            } else {
                response.managers
            },
            data_path_port: response.data_path_port,
            gossip_port: u32::from(api.inner.config.gossip_port),
            raft_id: response.raft_id,
        };
        if membership.role() == NodeRole::Manager {
            // Raft first (in join mode: the leader sends the log), then the membership file, so
            // a restart finds the log it resumes.
            api.start_joined_manager(&membership, bound.port()).await?;
        }
        membership::save(&api.inner.config.state_dir, &membership)?;
        api.enter(membership).await?;
        Ok::<_, ControlError>(SwarmJoinResponse {
            node_id: api.node_id(),
            cluster_id: response.cluster_id,
            role: response.role,
            advertise_addr: advertise.to_string(),
        })
    }
    .await;
    if joined.is_err() {
        if let Some(manager) = api.inner.manager.write().await.take() {
            manager.shutdown().await;
        }
        api.inner.hooks.stop().await;
        trust.clear();
        let _ = membership::remove(&api.inner.config.state_dir);
    }
    joined
}

impl ControlApi {
    /// Starts this node's manager in join mode with the Raft id the leader gave it.
    pub(super) async fn start_joined_manager(
        &self,
        membership: &Membership,
        agent_port: u16,
    ) -> Result<(), ControlError> {
        if membership.raft_id == 0 {
            return Err(ControlError::Internal(
                "the leader admitted this node as a manager without a Raft id".into(),
            ));
        }
        let config =
            super::manager_config(&self.inner.config, &self.node_id(), agent_port, membership);
        let manager = Manager::join(config).await?;
        tracing::info!(raft_id = membership.raft_id, "manager started in join mode");
        self.install_manager(manager).await;
        Ok(())
    }

    /// `node promote` seen from the promoted node: the leader's first Raft message to
    /// `raft_id` reaches this worker, which starts its manager in join mode and records its new
    /// role.
    pub(super) async fn promoted(
        &self,
        raft_id: u64,
        cluster_id: &str,
    ) -> Result<(), ControlError> {
        let _member = self.inner.member_lock.lock().await;
        if self.inner.manager.read().await.is_some() {
            return Ok(());
        }
        let Some(mut membership) = self.inner.membership.read().await.clone() else {
            return Err(ControlError::Precondition(
                "this node is in no cluster".into(),
            ));
        };
        if membership.cluster_id != cluster_id || raft_id == 0 {
            // No cluster id in the answer: a caller must not learn ours from it.
            return Err(ControlError::Precondition(format!(
                "raft messages for id {raft_id} of another cluster: this node is a worker"
            )));
        }
        if raft_id <= membership.raft_id {
            // Ids are never reused: this is for the id the node held before a demotion.
            return Err(ControlError::Precondition(format!(
                "raft messages for id {raft_id}: this node gave up Raft id {} when it was demoted",
                membership.raft_id
            )));
        }
        let port = parse_listen_addr("listen address", &membership.listen_addr)?.port();
        // The log of the manager this node was before a demotion, if a crash left it.
        super::demotion::remove_raft_state(&self.inner.config.state_dir)?;
        membership.role = NodeRole::Manager as i32;
        membership.raft_id = raft_id;
        self.start_joined_manager(&membership, port).await?;
        membership::save(&self.inner.config.state_dir, &membership)?;
        *self.inner.membership.write().await = Some(membership);
        tracing::info!(raft_id, "promoted: this node is now a manager");
        Ok(())
    }
}

/// `swarm leave [--force]`.
pub(super) async fn swarm_leave(
    api: &ControlApi,
    request: SwarmLeaveRequest,
) -> Result<(), ControlError> {
    let _member = api.inner.member_lock.lock().await;
    let Some(membership) = api.inner.membership.read().await.clone() else {
        return Err(ControlError::Precondition(
            "this node is not part of a swarm".into(),
        ));
    };
    let manager = api.inner.manager.read().await.clone();
    if let Some(manager) = &manager {
        let managers = manager.store().view(|t| {
            t.nodes
                .values()
                .filter(|n| n.role() == NodeRole::Manager)
                .count()
        });
        let last = managers <= 1;
        if !request.force {
            return Err(ControlError::Precondition(if last {
                "this node is the swarm's last manager: leaving deletes its Raft log, and with it \
                 the swarm's state; use `mini swarm leave --force` to do it anyway"
                    .to_string()
            } else {
                let quorum = (managers - 1) / 2 + 1;
                format!(
                    "this node is a manager: leaving removes it from the Raft group and leaves {} \
                     managers, which need {quorum} of them reachable to keep a quorum (losing it \
                     makes the swarm unavailable); demote it first (`mini node demote {}` on \
                     another manager), or use `mini swarm leave --force` to leave anyway",
                    managers - 1,
                    api.inner.config.hostname
                )
            }));
        }
        if !last {
            // Out of the Raft group first, so the remaining managers' quorum shrinks; if that
            // fails nothing has changed.
            leave_raft_group(api, manager).await?;
        }
    } else if api.is_locked() && !request.force {
        return Err(ControlError::Precondition(
            "this node is a locked manager (autolock): unlock it with `mini swarm unlock`, or \
             use `mini swarm leave --force` to leave anyway (its Raft log is deleted)"
                .into(),
        ));
    }
    if membership.role() == NodeRole::Worker {
        // Tell a manager, so the node shows as down at once; best effort.
        for addr in &membership.managers {
            if let Ok(channel) = dial(&api.inner.config.trust, addr, Peer::Manager).await {
                let mut client = DispatcherClient::new(channel);
                let request = mini_proto::v1::LeaveRequest {
                    node_id: api.node_id(),
                };
                if client.leave(request).await.is_ok() {
                    break;
                }
            }
        }
    }
    api.inner.hooks.stop().await;
    if let Some(manager) = api.inner.manager.write().await.take() {
        manager.shutdown().await;
        super::demotion::remove_raft_state(&api.inner.config.state_dir)?;
    }
    if api.is_locked() {
        super::demotion::remove_raft_state(&api.inner.config.state_dir)?;
        api.inner
            .locked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
    membership::remove(&api.inner.config.state_dir)?;
    api.inner.config.trust.clear();
    *api.inner.membership.write().await = None;
    api.renew_node_id()?;
    Ok(())
}

/// How long a leaving manager waits for the leader to take it out of the Raft configuration.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// `swarm leave --force` on a manager that is not the last: records this node as a worker that
/// left (the membership controller on the leader then removes its Raft id, handing leadership
/// over first if this node leads) and waits for the removal.
async fn leave_raft_group(
    api: &ControlApi,
    manager: &std::sync::Arc<Manager>,
) -> Result<(), ControlError> {
    let own = manager.raft_status().id;
    let generation = api.inner.config.trust.generation();
    let node_id = api.node_id();
    manager
        .write(|t| {
            let node = t.node(&node_id)?.clone();
            let mut spec = node.spec.clone().unwrap_or_default();
            spec.desired_role = NodeRole::Worker as i32;
            let mut status = node.status.clone().unwrap_or_default();
            status.state = NodeState::Down as i32;
            status.message = crate::dispatcher::LEFT_MESSAGE.into();
            let left = Node {
                spec: Some(spec),
                status: Some(status),
                role: NodeRole::Worker as i32,
                // Kept until the leader removes it from the configuration (see `role_in_force`).
                ..node
            };
            Ok::<_, ControlError>((vec![update_action(Action::PutNode(left))], ()))
        })
        .await
    .map_err(|err| {
        ControlError::Precondition(format!(
            "cannot take this manager out of the Raft group, so it has not left the swarm: {err}"
        ))
    })?;
    match tokio::time::timeout(REMOVAL_WAIT, api.wait_removed(manager, own, generation)).await {
        Ok(how) => tracing::info!(raft_id = own, ?how, "left the Raft group"),
        // The store already says this node is no manager: the leader finishes the removal.
        Err(_) => tracing::warn!(
            raft_id = own,
            "the leader has not removed this manager from the Raft group yet; leaving anyway"
        ),
    }
    Ok(())
}

/// Refuses when taking voter `raft_id` out of the Raft group would leave fewer reachable voters
/// than the quorum of those that remain.
async fn check_quorum_without(
    manager: &Manager,
    raft_id: u64,
    hostname: &str,
) -> Result<(), ControlError> {
    let view = manager.proposer().group_view().await;
    if !view.voters.contains(&raft_id) {
        return Ok(());
    }
    let remaining: Vec<u64> = view
        .voters
        .iter()
        .copied()
        .filter(|&v| v != raft_id)
        .collect();
    let reachable = remaining
        .iter()
        .filter(|v| !view.unreachable.contains(v))
        .count();
    let quorum = remaining.len() / 2 + 1;
    if reachable < quorum {
        return Err(ControlError::Precondition(format!(
            "demoting {hostname} would leave {} managers of which only {reachable} are reachable, \
             and {quorum} are needed for a quorum; bring the unreachable managers back first",
            remaining.len()
        )));
    }
    Ok(())
}

/// `node update --availability/--role/--label-add/--label-rm`. Decided again when the node's
/// record changed between read and write (the dispatcher writes node status at any time).
pub(super) async fn update_node(
    manager: &Manager,
    request: UpdateNodeRequest,
) -> Result<Node, ControlError> {
    let (node, managers) = manager.store().view(|t| {
        let managers = t
            .nodes
            .values()
            .filter(|n| n.role() == NodeRole::Manager)
            .count();
        t.node(&request.name_or_id).cloned().map(|n| (n, managers))
    })?;
    // (Demoting the last manager is refused below, with its own reason.)
    if request.role == "worker" && node.role() == NodeRole::Manager && managers > 1 {
        // The leader may be demoted too: it hands leadership over before it is removed.
        check_quorum_without(manager, node.raft_id, &node.hostname).await?;
    }
    let id = manager
        .write(|t| {
            let node = t.node(&node.id)?;
            let version = node.meta.as_ref().map_or(0, |m| m.version);
            if request.version != 0 && request.version != version {
                return Err(ControlError::OutOfSequence {
                    kind: "node",
                    name: request.name_or_id.clone(),
                    given: request.version,
                    current: version,
                });
            }
            let (updated, cluster) = updated_node(t, node, &request)?;
            let mut actions: Vec<StoreAction> = cluster
                .into_iter()
                .map(|c| update_action(Action::PutCluster(c)))
                .collect();
            actions.push(update_action(Action::PutNode(updated)));
            Ok((actions, node.id.clone()))
        })
        .await?;
    Ok(manager.store().view(|t| t.node(&id).cloned())?)
}

/// `node` changed as `request` asks, and the cluster object when a promotion took a Raft id.
fn updated_node(
    t: &Tables,
    node: &Node,
    request: &UpdateNodeRequest,
) -> Result<(Node, Option<Cluster>), ControlError> {
    let mut spec = node.spec.clone().unwrap_or_default();
    match request.availability.as_str() {
        "" => {}
        "active" => spec.availability = NodeAvailability::Active as i32,
        "pause" => spec.availability = NodeAvailability::Pause as i32,
        "drain" => spec.availability = NodeAvailability::Drain as i32,
        other => {
            return Err(ControlError::Invalid(format!(
                "invalid --availability {other:?}: expected active, pause or drain"
            )));
        }
    }
    let mut role = node.role();
    let mut raft_id = node.raft_id;
    let mut cluster_update = None;
    match request.role.as_str() {
        "" => {}
        "manager" if role == NodeRole::Manager => {}
        "manager" => {
            // The membership controller adds the new id as a learner; the node's daemon starts
            // its manager (in join mode) when the leader's first Raft message reaches it.
            let (id, cluster) = crate::ha::allocate_raft_id(t.cluster()?, t);
            role = NodeRole::Manager;
            raft_id = id;
            cluster_update = Some(cluster);
        }
        "worker" if role == NodeRole::Worker => {}
        "worker" => {
            let managers = t
                .nodes
                .values()
                .filter(|n| n.role() == NodeRole::Manager)
                .count();
            if managers <= 1 {
                return Err(ControlError::Precondition(format!(
                    "node {} is the last manager: demoting it would leave the cluster without managers",
                    node.hostname
                )));
            }
            // The Raft id stays on the record: until the leader has removed it from the
            // configuration, the node's certificate keeps the manager role (`role_in_force`).
            role = NodeRole::Worker;
        }
        other => {
            return Err(ControlError::Invalid(format!(
                "invalid role {other:?}: expected manager or worker"
            )));
        }
    }
    spec.desired_role = role as i32;
    for key in &request.label_rm {
        if spec.labels.remove(key).is_none() {
            return Err(ControlError::Invalid(format!(
                "key {key} doesn't exist in node's labels (node {})",
                node.hostname
            )));
        }
    }
    spec.labels.extend(request.label_add.clone());
    let updated = Node {
        spec: Some(spec),
        role: role as i32,
        raft_id,
        ..node.clone()
    };
    Ok((updated, cluster_update))
}

/// `node rm [--force]`: a node that is still up needs --force; a manager
/// cannot be removed.
pub(super) async fn remove_node(
    manager: &Manager,
    request: RemoveNodeRequest,
) -> Result<RemoveResponse, ControlError> {
    manager
        .write(|t| {
            let node = t.node(&request.name_or_id)?;
            if node.role() == NodeRole::Manager {
                return Err(ControlError::Precondition(format!(
                    "node {0} is a manager and a member of the Raft group: demote it first \
                     (`mini node demote {0}`), then remove it",
                    node.hostname
                )));
            }
            let up = node
                .status
                .as_ref()
                .is_some_and(|s| s.state() == NodeState::Ready);
            if up && !request.force {
                return Err(ControlError::Precondition(format!(
                    "node {} is not down and can't be removed; stop it (`mini swarm leave` on it) or use --force",
                    node.hostname
                )));
            }
            // The node's certificate is refused from now on, on every listener (the deny list
            // travels with the cluster object to the managers and in sessions to the workers).
            let mut cluster = t.cluster()?.clone();
            if !cluster.removed_nodes.contains(&node.id) {
                cluster.removed_nodes.push(node.id.clone());
            }
            let actions = vec![
                update_action(Action::PutCluster(cluster)),
                update_action(Action::RemoveNode(node.id.clone())),
            ];
            Ok((actions, RemoveResponse { id: node.id.clone() }))
        })
        .await
}
