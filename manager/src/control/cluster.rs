//! `swarm init` and `info`.

use std::net::Ipv4Addr;

use mini_proto::v1::{InfoResponse, Membership, NodeRole, SwarmInitRequest, SwarmInitResponse};

use mini_proto::tls::Credentials;
use mini_proto::tls::pki;

use super::members::local_dial_addr;
use super::membership::{self, parse_listen_addr};
use super::{ControlApi, ControlError, manager_config};
use crate::manager::{InitParams, Manager, ManagerConfig};

/// Makes this daemon the first manager of a new cluster.
pub(super) async fn swarm_init(
    api: &ControlApi,
    request: SwarmInitRequest,
) -> Result<SwarmInitResponse, ControlError> {
    let advertise_addr: Ipv4Addr = super::advertise::for_init(&request.advertise_addr)?;
    let data_path_port = match request.data_path_port {
        0 => 4789,
        p @ 1024..=65535 => p,
        p => {
            return Err(ControlError::Invalid(format!(
                "invalid --data-path-port {p}: expected a UDP port between 1024 and 65535"
            )));
        }
    };
    let pool = if request.default_addr_pool.is_empty() {
        "10.0.0.0/8".to_string()
    } else {
        request.default_addr_pool
    };
    let pool_net: ipnet::Ipv4Net = pool.parse().map_err(|_| {
        ControlError::Invalid(format!(
            "invalid --default-addr-pool {pool:?}: expected a CIDR such as 10.0.0.0/8"
        ))
    })?;
    let subnet_size = if request.default_subnet_size == 0 {
        24
    } else {
        request.default_subnet_size
    };
    if subnet_size > 29 || subnet_size < u32::from(pool_net.prefix_len()) {
        return Err(ControlError::Invalid(format!(
            "invalid --default-addr-pool-mask-length {subnet_size}: must be between the pool's prefix length ({}) and 29",
            pool_net.prefix_len()
        )));
    }

    let listen = parse_listen_addr("--listen-addr", &request.listen_addr)?;
    let _member = api.inner.member_lock.lock().await;
    if api.inner.membership.read().await.is_some() {
        return Err(ControlError::Precondition(
            "this node is already part of a swarm; run `mini swarm leave` first".into(),
        ));
    }
    let hostname = if request.hostname.is_empty() {
        api.inner.config.hostname.clone()
    } else {
        request.hostname
    };
    // The cluster's CA and this node's certificate, before the listener needs them. The key
    // is made here and never leaves the node; the CA signs its request like anyone else's.
    let cluster_id = crate::ids::new_id();
    let ca = pki::new_root_ca().map_err(|e| ControlError::Internal(e.to_string()))?;
    let (key_der, csr) =
        pki::new_node_key(&api.node_id()).map_err(|e| ControlError::Internal(e.to_string()))?;
    let node_cert = pki::sign_node_csr(
        &ca,
        &csr,
        &api.node_id(),
        NodeRole::Manager,
        &cluster_id,
        pki::DEFAULT_CERT_EXPIRY,
    )
    .map_err(|e| ControlError::Internal(e.to_string()))?;
    let trust = api.inner.config.trust.clone();
    trust
        .install(Credentials {
            ca_der: ca.cert_der.clone(),
            cert_der: node_cert.clone(),
            key_der,
            ..Default::default()
        })
        .map_err(|e| ControlError::Internal(e.to_string()))?;
    let bound = match api.listen(listen).await {
        Ok(bound) => bound,
        Err(err) => {
            trust.clear();
            return Err(err);
        }
    };
    let provisional = Membership {
        advertise_addr: advertise_addr.to_string(),
        raft_id: crate::ha::BOOTSTRAP_RAFT_ID,
        ..Default::default()
    };
    let unlock_key = request.autolock.then(crate::raft::UnlockKey::generate);
    let config = ManagerConfig {
        unlock_key: unlock_key.clone(),
        ..manager_config(
            &api.inner.config,
            &api.node_id(),
            bound.port(),
            &provisional,
        )
    };
    let initialised = async {
        let manager = Manager::init(
            config,
            InitParams {
                advertise_addr,
                hostname,
                default_addr_pool: pool_net.trunc().to_string(),
                default_subnet_size: subnet_size,
                data_path_port,
                gossip_port: api.inner.config.gossip_port,
                cluster_id,
                ca,
                node_cert,
                unlock_key: unlock_key.clone(),
            },
        )
        .await?;
        let cluster = manager.store().view(|t| t.cluster.clone());
        let membership = Membership {
            cluster_id: cluster.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
            role: NodeRole::Manager as i32,
            advertise_addr: advertise_addr.to_string(),
            listen_addr: bound.to_string(),
            managers: vec![local_dial_addr(bound)],
            data_path_port,
            gossip_port: u32::from(api.inner.config.gossip_port),
            raft_id: crate::ha::BOOTSTRAP_RAFT_ID,
        };
        if let Err(err) = membership::save(&api.inner.config.state_dir, &membership) {
            manager.shutdown().await;
            return Err(err);
        }
        api.install_manager(manager).await;
        Ok((cluster, membership))
    }
    .await;
    let (cluster, membership) = match initialised {
        Ok(done) => done,
        Err(err) => {
            api.inner.hooks.stop().await;
            trust.clear();
            return Err(err);
        }
    };
    api.enter(membership).await?;
    Ok(SwarmInitResponse {
        node_id: api.node_id(),
        cluster: cluster.map(without_secret_keys),
        unlock_key: unlock_key.map(|k| k.to_text()).unwrap_or_default(),
    })
}

/// The cluster as clients see it: without the root CA's private key, and with the gossip keys'
/// ids and ages, never their bytes (they reach nodes only over their sessions).
pub(super) fn without_secret_keys(mut cluster: mini_proto::v1::Cluster) -> mini_proto::v1::Cluster {
    cluster.ca_key.clear();
    cluster.unlock_key.clear();
    if let Some(ring) = cluster.gossip_keys.as_mut() {
        for key in &mut ring.keys {
            key.key.clear();
        }
    }
    cluster
}

/// What this daemon is.
pub(super) async fn info(api: &ControlApi) -> InfoResponse {
    if api.is_locked() {
        return InfoResponse {
            node_id: api.node_id(),
            locked: true,
            engine: Some(super::engine_version()),
            ..Default::default()
        };
    }
    let manager = api.inner.manager.read().await.clone();
    let membership = api.inner.membership.read().await.clone();
    let (node_addr, manager_addrs) = membership
        .as_ref()
        .map(|m| (m.advertise_addr.clone(), m.managers.clone()))
        .unwrap_or_default();
    let Some(manager) = manager else {
        // A worker has a node id once it joined; a daemon in no swarm has none to show.
        return InfoResponse {
            node_id: if membership.is_some() {
                api.node_id()
            } else {
                String::new()
            },
            engine: Some(super::engine_version()),
            node_addr,
            manager_addrs,
            ..Default::default()
        };
    };
    let (nodes, managers, manager_addrs) = manager.store().view(|t| {
        let managers: Vec<String> = t
            .nodes
            .values()
            .filter(|n| n.role() == NodeRole::Manager)
            .map(|n| n.agent_addr.clone())
            .collect();
        (t.nodes.len() as u64, managers.len() as u64, managers)
    });
    let status = manager.raft_status();
    let leader_node_id = if status.leader_id == 0 {
        String::new()
    } else {
        manager.store().view(|t| {
            t.nodes
                .values()
                .find(|n| n.raft_id == status.leader_id)
                .map(|n| n.id.clone())
                .unwrap_or_default()
        })
    };
    // Only the leader tracks every manager's progress: a follower asks it.
    let view = manager.proposer().group_view().await;
    let unreachable_managers = manager.store().view(|t| {
        t.nodes
            .values()
            .filter(|n| n.role() == NodeRole::Manager && n.raft_id != status.id)
            .filter(|n| view.unreachable.contains(&n.raft_id))
            .map(|n| n.id.clone())
            .collect()
    });
    InfoResponse {
        unreachable_managers,
        raft_voters: status.voters.clone(),
        raft_learners: status.learners.clone(),
        node_id: api.node_id(),
        cluster: manager
            .store()
            .view(|t| t.cluster.clone())
            .map(without_secret_keys),
        is_manager: true,
        raft_applied_index: status.applied,
        raft_snapshot_index: status.snapshot_index,
        raft_first_log_index: status.first_index,
        leader_node_id,
        reachability_local: view.local,
        locked: false,
        engine: Some(super::engine_version()),
        nodes,
        managers,
        node_addr,
        manager_addrs,
        heartbeat_period_ms: api.inner.config.heartbeat_period.as_millis() as u64,
    }
}
