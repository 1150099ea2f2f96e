//! [`Manager`]: the store, its Raft log and the leader-only controllers of one
//! manager node, started together and stopped together.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mini_proto::v1::{
    Cluster, Network, NetworkSpec, Node, NodeRole, NodeSpec, NodeState, NodeStatus, StoreAction,
    StoreBatch, store_action::Action,
};
use prost::Message;
use tokio::sync::{Mutex, MutexGuard};

use crate::allocator::allocate_network;
use crate::control::ControlError;
use crate::controllers::Controllers;
use crate::dispatcher::Sessions;
use crate::ids::{new_id, new_secret, now_ms};
use crate::raft::{self, RaftConfig, RaftHandle, RaftStatus};
use crate::store::{ApplyError, ProposeFailed, Proposer, Store, StoreMachine, WriteError};

/// The ingress network's subnet, as Docker's.
pub const INGRESS_SUBNET: &str = "10.255.0.0/16";

/// Where and how a manager keeps its log.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Directory of the Raft log (sled).
    pub state_dir: PathBuf,
    /// This node's id.
    pub node_id: String,
    /// This node's hostname.
    pub hostname: String,
    /// Raft entries between snapshots.
    pub snapshot_interval: u64,
    /// Heartbeat period handed to workers.
    pub heartbeat_period: Duration,
    /// Port of this node's listener (dispatcher and node agent).
    pub agent_port: u16,
}

/// The settings `swarm init` was given, already validated.
#[derive(Debug, Clone)]
pub struct InitParams {
    /// Address other nodes reach this one at.
    pub advertise_addr: Ipv4Addr,
    /// Hostname of this node.
    pub hostname: String,
    /// Pool of overlay subnets (CIDR).
    pub default_addr_pool: String,
    /// Prefix length of subnets taken from the pool.
    pub default_subnet_size: u32,
    /// UDP port of the VXLAN data path.
    pub data_path_port: u32,
    /// UDP port of this node's gossip socket.
    pub gossip_port: u16,
}

/// Writes batches through the Raft log.
#[derive(Clone)]
pub struct RaftProposer {
    raft: RaftHandle<Result<(), ApplyError>>,
}

impl Proposer for RaftProposer {
    async fn propose(&self, batch: StoreBatch) -> Result<u64, WriteError> {
        match self.raft.propose(batch.encode_to_vec()).await {
            Ok((index, Ok(()))) => Ok(index),
            Ok((_, Err(err))) => Err(WriteError::Rejected(err)),
            Err(err) => Err(WriteError::Failed(ProposeFailed {
                reason: err.to_string(),
            })),
        }
    }
}

/// A running manager.
pub struct Manager {
    store: Store,
    proposer: RaftProposer,
    /// API handlers that read, decide allocations and write hold this, so two
    /// creates never decide from the same view.
    write_lock: Mutex<()>,
    controllers: Controllers,
    sessions: Arc<Sessions>,
    agent_port: u16,
    monitor: tokio::task::JoinHandle<()>,
}

impl Manager {
    /// Whether the state dir holds a manager's log to resume.
    pub fn has_state(config: &ManagerConfig) -> bool {
        raft::has_state(&config.state_dir)
    }

    fn raft_config(config: &ManagerConfig) -> RaftConfig {
        RaftConfig {
            state_dir: config.state_dir.clone(),
            id: 1,
            tick_interval: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 2,
            snapshot_interval: config.snapshot_interval.max(1),
            keep_after_snapshot: (config.snapshot_interval / 4).max(1),
        }
    }

    fn start(config: &ManagerConfig, bootstrap: bool) -> Result<Manager, ControlError> {
        let store = Store::new();
        let (raft, _task) = raft::start(
            Self::raft_config(config),
            StoreMachine::new(store.clone()),
            bootstrap,
        )
        .map_err(|e| {
            ControlError::Internal(format!(
                "cannot open the Raft log in {}: {e}",
                config.state_dir.display()
            ))
        })?;
        let proposer = RaftProposer { raft };
        let controllers = Controllers::start(store.clone(), proposer.clone());
        let sessions = Arc::new(Sessions::new(config.heartbeat_period));
        let monitor = tokio::spawn(monitor_nodes(
            store.clone(),
            proposer.clone(),
            sessions.clone(),
        ));
        Ok(Manager {
            store,
            proposer,
            write_lock: Mutex::new(()),
            controllers,
            sessions,
            agent_port: config.agent_port,
            monitor,
        })
    }

    /// Resumes the manager whose log is in the state dir.
    pub async fn resume(config: ManagerConfig) -> Result<Manager, ControlError> {
        Self::start(&config, false)
    }

    /// Creates a new cluster with this node as its only manager: the cluster
    /// object, this node, and the ingress network, in one write.
    pub async fn init(config: ManagerConfig, params: InitParams) -> Result<Manager, ControlError> {
        let manager = Self::start(&config, true)?;
        let mut cluster = Cluster {
            id: new_id(),
            meta: None,
            default_addr_pool: params.default_addr_pool,
            default_subnet_size: params.default_subnet_size,
            data_path_port: params.data_path_port,
            ca_digest: new_secret(32),
            worker_token_secret: new_secret(16),
            manager_token_secret: new_secret(16),
            next_vni: 4097,
            snapshot_interval: config.snapshot_interval,
        };
        let node = Node {
            id: config.node_id.clone(),
            meta: None,
            spec: Some(NodeSpec {
                desired_role: NodeRole::Manager as i32,
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                message: String::new(),
                addr: params.advertise_addr.to_string(),
            }),
            hostname: params.hostname,
            role: NodeRole::Manager as i32,
            raft_id: 1,
            agent_addr: format!("{}:{}", params.advertise_addr, config.agent_port),
            gossip_addr: format!("{}:{}", params.advertise_addr, params.gossip_port),
        };
        let ingress_spec = NetworkSpec {
            name: "ingress".into(),
            driver: "overlay".into(),
            subnet: INGRESS_SUBNET.into(),
            ingress: true,
            ..Default::default()
        };
        let allocation = allocate_network(&ingress_spec, &cluster, &[])?;
        cluster.next_vni = cluster.next_vni.max(allocation.vni + 1);
        let ingress = Network {
            id: new_id(),
            meta: None,
            spec: Some(ingress_spec),
            subnet: allocation.subnet.to_string(),
            gateway: allocation.gateway.to_string(),
            vni: allocation.vni,
            last_allocated: String::new(),
        };
        let create = |action| StoreAction {
            action: Some(action),
            create: true,
        };
        let batch = StoreBatch {
            actions: vec![
                create(Action::PutCluster(cluster)),
                create(Action::PutNode(node)),
                create(Action::PutNetwork(ingress)),
            ],
            proposed_at_ms: now_ms(),
        };
        if let Err(err) = manager.proposer.propose(batch).await {
            manager.shutdown().await;
            return Err(err.into());
        }
        Ok(manager)
    }

    /// The store this manager applies to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes through the Raft log.
    pub fn proposer(&self) -> &RaftProposer {
        &self.proposer
    }

    /// Serializes read-decide-write API calls.
    pub async fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// The Raft node's status.
    pub fn raft_status(&self) -> RaftStatus {
        self.proposer.raft.status()
    }

    /// The live sessions of workers.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Port of this node's listener.
    pub fn agent_port(&self) -> u16 {
        self.agent_port
    }

    /// Dispatcher addresses (host:port) of every manager.
    pub fn manager_addrs(&self) -> Vec<String> {
        self.store.view(|t| {
            t.nodes
                .values()
                .filter(|n| n.role() == NodeRole::Manager && !n.agent_addr.is_empty())
                .map(|n| n.agent_addr.clone())
                .collect()
        })
    }

    /// Sets a node's state (ready/down) unless it already has it.
    pub async fn mark_node(&self, node_id: &str, state: NodeState, message: &str) {
        set_node_state(&self.store, &self.proposer, node_id, state, message).await;
    }

    /// Stops the controllers, then the log (flushing it).
    pub async fn shutdown(&self) {
        self.monitor.abort();
        self.controllers.stop().await;
        self.proposer.raft.shutdown().await;
    }
}

/// Writes `state` into a node's status, retrying on concurrent changes.
async fn set_node_state<P: Proposer>(
    store: &Store,
    proposer: &P,
    node_id: &str,
    state: NodeState,
    message: &str,
) {
    for _ in 0..5 {
        let Some(mut node) = store.view(|t| t.nodes.get(node_id).cloned()) else {
            return;
        };
        let mut status = node.status.clone().unwrap_or_default();
        if status.state() == state && status.message == message {
            return;
        }
        status.state = state as i32;
        status.message = message.to_string();
        node.status = Some(status);
        let batch = StoreBatch {
            actions: vec![StoreAction {
                action: Some(Action::PutNode(node)),
                create: false,
            }],
            proposed_at_ms: now_ms(),
        };
        match proposer.propose(batch).await {
            Ok(_) => {
                tracing::info!(node_id, ?state, message, "node state changed");
                return;
            }
            Err(WriteError::Rejected(ApplyError::Stale { .. })) => continue,
            Err(err) => {
                tracing::warn!(node_id, %err, "cannot record node state");
                return;
            }
        }
    }
}

/// Marks nodes down when their heartbeats stop (every half period).
async fn monitor_nodes<P: Proposer>(store: Store, proposer: P, sessions: Arc<Sessions>) {
    let mut tick = tokio::time::interval(sessions.period() / 2);
    loop {
        tick.tick().await;
        let expired = store.view(|t| sessions.expired(t));
        for node_id in expired {
            set_node_state(
                &store,
                &proposer,
                &node_id,
                NodeState::Down,
                "heartbeat failure",
            )
            .await;
        }
    }
}
