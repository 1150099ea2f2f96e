//! The dispatcher's gRPC service, served on the node's TCP listener.

use std::pin::Pin;

use futures::Stream;
use mini_proto::v1::{
    HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse,
    Node, NodeRole, NodeState, SessionMessage, SessionRequest, UpdateTaskStatusRequest,
    UpdateTaskStatusResponse, dispatcher_server::Dispatcher, store_action::Action,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use mini_proto::tls::Caller;
use mini_proto::v1::{
    Cluster, GetRootCaCertificateRequest, GetRootCaCertificateResponse,
    IssueNodeCertificateRequest, IssueNodeCertificateResponse, node_ca_server::NodeCa,
};

use super::{ControlApi, ControlError};
use crate::dispatcher::ca::issue_certificate;
use crate::dispatcher::{
    CertVerdicts, TrustView, apply_status_updates, assignments_for, concerns_node, gossip_view,
    token, trust_view,
};
use crate::manager::Manager;
use crate::store::{create_action, update_action};

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Dispatcher for ControlApi {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let manager = self.manager().await?;
        let req = request.into_inner();
        let cluster = manager
            .store()
            .view(|t| t.cluster.clone())
            .ok_or_else(|| Status::unavailable("no cluster"))?;
        let role = token::verify(&cluster, &req.token)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        check_joiner(&manager, &cluster, &req)?;
        if role == NodeRole::Manager {
            return Ok(Response::new(
                crate::ha::admit_manager(&manager, req).await?,
            ));
        }
        if req.node_id.is_empty() || req.advertise_addr.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "join needs a node id and an IPv4 advertise address (got {:?})",
                req.advertise_addr
            )));
        }
        let certificate = issue_certificate(&cluster, &req.csr, &req.node_id, NodeRole::Worker)?;
        let agent_port = manager.agent_port();
        manager
            .write(|t| {
                let existing = t.nodes.get(&req.node_id);
                let hostname_taken = t.nodes.values().any(|n| {
                    n.id != req.node_id
                        && n.hostname == req.hostname
                        && n.status
                            .as_ref()
                            .is_some_and(|s| s.state() != NodeState::Down)
                });
                if hostname_taken {
                    tracing::warn!(hostname = %req.hostname, "a second live node joins with the same hostname");
                }
                let node = crate::ha::joined_node(
                    &req,
                    existing,
                    NodeRole::Worker,
                    0,
                    agent_port,
                    certificate.clone(),
                );
                let put = Action::PutNode(node);
                let action = if existing.is_none() {
                    create_action(put)
                } else {
                    update_action(put)
                };
                Ok((vec![action], ()))
            })
            .await?;
        Ok(Response::new(JoinResponse {
            cluster_id: cluster.id.clone(),
            role: role as i32,
            managers: manager.manager_addrs(),
            data_path_port: cluster.data_path_port,
            heartbeat_period_ms: manager.sessions().period().as_millis() as u64,
            raft_id: 0,
            certificate,
            intermediates: crate::dispatcher::ca::intermediates(&cluster),
            trusted_roots: crate::dispatcher::ca::trusted_roots(&cluster),
            root_ca: cluster.ca_cert,
        }))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<SessionRequest>,
    ) -> Result<Response<SessionStream>, Status> {
        let manager = self.manager().await?;
        if !manager.is_leader() {
            // The worker moves on to the next manager in its list.
            return Err(Status::unavailable(format!(
                "this manager is not the leader; the leader is at {}",
                manager
                    .leader_addr()
                    .unwrap_or_else(|| "(unknown: election running)".into())
            )));
        }
        if !manager.serves_sessions() {
            // A new leader whose store may lack what earlier leaders committed: a session's
            // first assignment set must be complete (the worker removes what it does not list,
            // tasks left running by its previous daemon included). The worker retries shortly.
            return Err(Status::unavailable(
                "this manager was just elected leader and is still applying the log; retry",
            ));
        }
        let caller = Caller::of(&request)?;
        caller.acting_as(&request.get_ref().node_id)?;
        let node_id = caller.node_id;
        let node = manager
            .store()
            .view(|t| t.nodes.get(&node_id).cloned())
            .ok_or_else(|| {
                Status::not_found(format!(
                    "node {node_id} is not part of this cluster; join it first"
                ))
            })?;
        let resources = request.get_ref().resources;
        let description = request.get_ref().description.clone();
        let session_id = manager.sessions().open(&node_id);
        manager
            .record_node_report(&node_id, resources, description)
            .await;
        manager.mark_node(&node_id, NodeState::Ready, "").await;
        let (tx, rx) = mpsc::channel(16);
        let mut events = manager.store().watch();
        let node_addr = node
            .status
            .as_ref()
            .map(|s| s.addr.clone())
            .unwrap_or_default();
        tokio::spawn(async move {
            let mut previous = None;
            let mut previous_gossip = None;
            let mut previous_trust = None;
            let mut verdicts = CertVerdicts::default();
            let mut first = true;
            loop {
                if !manager.sessions().is_current(&node_id, &session_id) {
                    break;
                }
                // One read of the store per message: what the node runs, how it gossips, what
                // it must know about trust, and the data-path port.
                let raft = manager.raft_status();
                let (set, gossip, trust, data_path_port) = manager.store().view(|t| {
                    (
                        assignments_for(t, &node_id),
                        gossip_view(t, &node_id),
                        trust_view(t, &node_id, &raft, &mut verdicts),
                        t.cluster.as_ref().map_or(4789, |c| c.data_path_port),
                    )
                });
                let trust_news = trust.stale_certificate
                    || previous_trust.as_ref().is_none_or(|p: &TrustView| {
                        (p.role, &p.removed_nodes, &p.trusted_roots)
                            != (trust.role, &trust.removed_nodes, &trust.trusted_roots)
                    });
                let assignments = set
                    .since(previous.as_ref())
                    .or_else(|| first.then(Default::default));
                // A message also goes out when only the gossip view changed (a rotated key,
                // a node that joined or left, a renewed certificate), without assignments.
                if assignments.is_some() || trust_news || previous_gossip.as_ref() != Some(&gossip)
                {
                    let message = SessionMessage {
                        session_id: session_id.clone(),
                        assignments,
                        managers: manager.manager_addrs(),
                        heartbeat_period_ms: manager.sessions().period().as_millis() as u64,
                        node_addr: node_addr.clone(),
                        gossip_peers: gossip.peers.clone(),
                        data_path_port,
                        gossip_keys: gossip.keys.clone(),
                        gossip_members: gossip.members.clone(),
                        // The members' certificates bind endpoint records to their owners.
                        gossip_certificates: gossip.certificates.clone(),
                        removed_nodes: trust.removed_nodes.clone(),
                        role: trust.role,
                        trusted_roots: trust.trusted_roots.clone(),
                        signing_ca: trust.signing_ca.clone(),
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        break;
                    }
                    previous = Some(set);
                    previous_gossip = Some(gossip);
                    previous_trust = Some(trust);
                    first = false;
                }
                // Wait for a change a node's messages depend on (`concerns_node`), or the
                // period: writes of secrets, configs or services alone, and tasks of other
                // nodes, do not wake the session.
                let period = tokio::time::sleep(manager.sessions().period());
                tokio::pin!(period);
                let ended = loop {
                    tokio::select! {
                        _ = tx.closed() => break true,
                        event = events.recv() => match event {
                            Ok(e) if !manager.store().view(|t| concerns_node(&e, &node_id, previous.as_ref(), t)) => {}
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                // Coalesce a burst of changes into one message.
                                while events.try_recv().is_ok() {}
                                break false;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break true,
                        },
                        () = &mut period => break false,
                    }
                };
                if ended {
                    break;
                }
            }
            manager.sessions().close(&node_id, &session_id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.acting_as(&request.get_ref().node_id)?;
        let manager = self.manager().await?;
        let req = request.into_inner();
        let Some(period) = manager
            .sessions()
            .heartbeat(&caller.node_id, &req.session_id)
        else {
            return Err(Status::not_found("unknown session: open a new one"));
        };
        Ok(Response::new(HeartbeatResponse {
            period_ms: period.as_millis() as u64,
        }))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.acting_as(&request.get_ref().node_id)?;
        let manager = self.manager().await?;
        let req = request.into_inner();
        apply_status_updates(
            manager.store(),
            manager.proposer(),
            &caller.node_id,
            &req.updates,
        )
        .await
        .map_err(ControlError::from)?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.acting_as(&request.get_ref().node_id)?;
        let node_id = caller.node_id;
        let manager = self.manager().await?;
        manager
            .mark_node(&node_id, NodeState::Down, crate::dispatcher::LEFT_MESSAGE)
            .await;
        Ok(Response::new(LeaveResponse {}))
    }
}

/// Refuses a joiner whose node id was removed from the cluster or belongs to a node that is up:
/// a token admits a new node, it never hands out another node's identity.
fn check_joiner(manager: &Manager, cluster: &Cluster, req: &JoinRequest) -> Result<(), Status> {
    if req.csr.is_empty() {
        return Err(Status::invalid_argument(
            "join needs a certificate signing request: this client is too old for this swarm",
        ));
    }
    if cluster.removed_nodes.contains(&req.node_id) {
        return Err(Status::permission_denied(
            "this node was removed from the swarm: run `mini swarm leave` on it, then join again",
        ));
    }
    let up = manager.store().view(|t| {
        t.nodes.get(&req.node_id).is_some_and(|n| {
            n.status
                .as_ref()
                .is_some_and(|s| s.state() != NodeState::Down)
        })
    });
    if up {
        return Err(Status::already_exists(
            "a node with this id is already part of the swarm and up",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl NodeCa for ControlApi {
    async fn get_root_ca_certificate(
        &self,
        _: Request<GetRootCaCertificateRequest>,
    ) -> Result<Response<GetRootCaCertificateResponse>, Status> {
        let manager = self.manager().await?;
        let certificate = manager
            .store()
            .view(|t| t.cluster.as_ref().map(|c| c.ca_cert.clone()))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Status::unavailable("no root CA yet"))?;
        Ok(Response::new(GetRootCaCertificateResponse { certificate }))
    }

    async fn issue_node_certificate(
        &self,
        request: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let caller = Caller::of(&request)?;
        // Read what the leader had committed: a follower that has not applied a promotion yet
        // must not sign the old role.
        let manager = self.consistent().await?;
        let csr = request.into_inner().csr;
        // The role is the cluster's (`node promote`/`demote`), the id the certificate's.
        let certificate = manager
            .write(|t| {
                let cluster = t.cluster()?.clone();
                let node = t.nodes.get(&caller.node_id).ok_or_else(|| {
                    ControlError::Precondition("this node is not part of the swarm".into())
                })?;
                let role = crate::dispatcher::ca::role_in_force(node, &manager.raft_status());
                let certificate = issue_certificate(&cluster, &csr, &node.id, role)?;
                let issued = Node {
                    certificate: certificate.clone(),
                    ..node.clone()
                };
                Ok((
                    vec![update_action(Action::PutNode(issued))],
                    (certificate, cluster),
                ))
            })
            .await?;
        let (certificate, cluster) = certificate;
        tracing::info!(node_id = %caller.node_id, "node certificate issued");
        Ok(Response::new(IssueNodeCertificateResponse {
            certificate,
            intermediates: crate::dispatcher::ca::intermediates(&cluster),
            trusted_roots: crate::dispatcher::ca::trusted_roots(&cluster),
            root_ca: cluster.ca_cert,
        }))
    }
}
