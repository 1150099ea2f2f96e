//! The control API: the gRPC service a daemon serves to the `mini` CLI.
//!
//! A daemon starts outside any cluster; `SwarmInit` makes it the first
//! manager. Every other call needs the manager and answers
//! `FAILED_PRECONDITION` until then.
//!
//! # Layout
//! - [`status`]: errors and their gRPC codes.
//! - `identity`: the node id kept in the state dir.
//! - `networks`, `services`, `cluster`: the calls, grouped by object.
//! - `raft_rpc`: the Raft transport service managers serve one another.
//! - `demotion`: a manager the cluster demoted steps down to a worker.
//!
//! Every call reads from a consistent view: on a follower it first waits until it has applied
//! what the leader had committed (see [`crate::ha::HaProposer::read_barrier`]); writes are
//! forwarded to the leader by the proposer.

mod advertise;
mod autolock;
mod ca_rotation;
mod cluster;
mod demotion;
mod dispatch;
mod events;
mod identity;
pub mod members;
pub mod membership;
mod networks;
mod placement;
mod raft_rpc;
mod remote;
pub mod secrets;
mod service_update;
mod services;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;

use mini_proto::v1::{
    Cluster, CreateNetworkRequest, CreateServiceRequest, ExecRequest, ExecResponse, GetRequest,
    InfoRequest, InfoResponse, JoinTokenRequest, JoinTokenResponse, ListNetworksRequest,
    ListNetworksResponse, ListNodesRequest, ListNodesResponse, ListServicesRequest,
    ListServicesResponse, ListTasksRequest, ListTasksResponse, Network, NetworkPeersReport, Node,
    NodeRole, RemoveNodeRequest, RemoveResponse, ScaleServiceRequest, Service, ServiceLogsRequest,
    SwarmCaRequest, SwarmCaResponse, SwarmInitRequest, SwarmInitResponse, SwarmJoinRequest,
    SwarmJoinResponse, SwarmLeaveRequest, SwarmLeaveResponse, SwarmUnlockKeyRequest,
    SwarmUnlockKeyResponse, SwarmUnlockRequest, SwarmUnlockResponse, SwarmUpdateRequest,
    UpdateNodeRequest, UpdateServiceRequest, control_server::Control,
};
use mini_proto::v1::{
    Config, CreateConfigRequest, CreateSecretRequest, ListConfigsRequest, ListConfigsResponse,
    ListSecretsRequest, ListSecretsResponse, Secret,
};
use tokio::sync::RwLock;
use tonic::{Request, Response, Status};

use crate::manager::{Manager, ManagerConfig};
pub use membership::MemberHooks;
pub use status::ControlError;

/// What this daemon's binary is built from, told once at start by the binary (the library
/// cannot know its git commit); `info` answers with it.
static ENGINE: std::sync::OnceLock<mini_proto::v1::EngineVersion> = std::sync::OnceLock::new();

/// Records what the running binary is built from (first call wins).
pub fn set_engine_version(engine: mini_proto::v1::EngineVersion) {
    let _ = ENGINE.set(engine);
}

/// What [`set_engine_version`] recorded, or this crate's version alone.
pub(crate) fn engine_version() -> mini_proto::v1::EngineVersion {
    ENGINE
        .get()
        .cloned()
        .unwrap_or_else(|| mini_proto::v1::EngineVersion {
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: mini_proto::API_VERSION.into(),
            ..Default::default()
        })
}

/// What a daemon needs to know to serve the control API.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The node's state directory (identity, Raft log).
    pub state_dir: PathBuf,
    /// Hostname the node reports.
    pub hostname: String,
    /// Raft entries between snapshots.
    pub snapshot_interval: u64,
    /// Heartbeat period handed to workers (a node is down after 3 missed).
    pub heartbeat_period: std::time::Duration,
    /// UDP port of this node's gossip (SWIM) socket.
    pub gossip_port: u16,
    /// Time between two rotations of the gossip key (while this node leads).
    pub gossip_key_rotation: std::time::Duration,
    /// Shortest node certificate lifetime `swarm update --cert-expiry` accepts (Docker's 1h;
    /// shorter in tests).
    pub min_cert_expiry: std::time::Duration,
    /// The node's TLS identity (files under `state_dir/certificates`).
    pub trust: mini_proto::tls::Trust,
    /// Told when a manager's Raft loop dies: the daemon waits on it and exits.
    pub fatal: crate::manager::Fatal,
    /// Where the manager's metrics go (`mini daemon --metrics-addr`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The control API of one daemon. Cheap to clone.
#[derive(Clone)]
pub struct ControlApi {
    inner: Arc<Inner>,
}

struct Inner {
    config: DaemonConfig,
    /// Made on first start; a new one after `swarm leave` (as Docker: a node that leaves and
    /// joins again is a new node, so a removed node can come back).
    node_id: std::sync::RwLock<String>,
    hooks: Arc<dyn MemberHooks>,
    /// Held by init, join and leave: one membership change at a time.
    member_lock: tokio::sync::Mutex<()>,
    /// `None` while the node is in no cluster.
    membership: RwLock<Option<mini_proto::v1::Membership>>,
    /// `None` until `swarm init` (or a resumed Raft log) makes this a manager.
    manager: RwLock<Option<Arc<Manager>>>,
    /// A manager whose Raft store key is sealed (autolock) waits here, not started, until
    /// `swarm unlock` gives the key.
    locked: std::sync::atomic::AtomicBool,
}

impl ControlApi {
    /// Opens the daemon's state: its node id (made on first start) and, when
    /// the state dir holds a Raft log, the manager it was.
    pub async fn open(
        config: DaemonConfig,
        hooks: Arc<dyn MemberHooks>,
    ) -> Result<ControlApi, ControlError> {
        let node_id = identity::load_or_create_node_id(&config.state_dir)?;
        let membership = membership::load(&config.state_dir)?;
        let api = ControlApi {
            inner: Arc::new(Inner {
                config,
                node_id: std::sync::RwLock::new(node_id),
                hooks,
                member_lock: tokio::sync::Mutex::new(()),
                membership: RwLock::new(None),
                manager: RwLock::new(None),
                locked: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let Some(membership) = membership else {
            return Ok(api);
        };
        if autolock::is_locked(&api.inner.config.state_dir, &membership) {
            tracing::warn!(
                "this manager's Raft store is locked (autolock): it serves nothing until \
                 `mini swarm unlock` is given the unlock key"
            );
            api.inner
                .locked
                .store(true, std::sync::atomic::Ordering::SeqCst);
            *api.inner.membership.write().await = Some(membership);
            return Ok(api);
        }
        api.resume(membership, None).await?;
        Ok(api)
    }

    /// Whether this manager waits for `swarm unlock`.
    fn is_locked(&self) -> bool {
        self.inner.locked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts this node again as the member of `membership` it was (manager with `unlock_key`
    /// when its store is sealed).
    async fn resume(
        &self,
        membership: mini_proto::v1::Membership,
        unlock_key: Option<crate::raft::UnlockKey>,
    ) -> Result<(), ControlError> {
        let api = self;
        let has_certificate = api.inner.config.trust.load().map_err(|e| {
            ControlError::Internal(format!("cannot load this node's certificate: {e}"))
        })?;
        if !has_certificate {
            return Err(ControlError::Internal(format!(
                "this node is a member of a swarm but has no certificate in {} (made by a \
                 version without TLS?): remove {} and join the swarm again",
                api.inner.config.trust.dir().display(),
                api.inner.config.state_dir.join("membership.pb").display()
            )));
        }
        // Back in the cluster this node was in: listener first (the manager's
        // own agent dials it), then the manager, then the agent.
        let listen = membership::parse_listen_addr("listen address", &membership.listen_addr)?;
        let bound = api.listen(listen).await?;
        let manager_config =
            manager_config(&api.inner.config, &api.node_id(), bound.port(), &membership);
        // A worker's state dir may still hold the log of the manager it was before a
        // demotion (a crash between the two steps): only a manager resumes it.
        if membership.role() == NodeRole::Manager && Manager::has_state(&manager_config) {
            tracing::info!(
                "resuming the manager from {}",
                api.inner.config.state_dir.display()
            );
            let manager_config = ManagerConfig {
                unlock_key,
                ..manager_config
            };
            api.install_manager(Manager::resume(manager_config).await?)
                .await;
        }
        api.enter(membership).await
    }

    /// Binds the node's listener, serving this API; returns the bound address.
    async fn listen(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<std::net::SocketAddr, ControlError> {
        self.inner
            .hooks
            .listen(addr, self.clone())
            .await
            .map_err(ControlError::Internal)
    }

    /// Starts the agent and records the node as a member of `membership`'s cluster.
    async fn enter(&self, membership: mini_proto::v1::Membership) -> Result<(), ControlError> {
        self.inner
            .hooks
            .start_agent(self.node_id(), membership.clone())
            .await
            .map_err(ControlError::Internal)?;
        *self.inner.membership.write().await = Some(membership);
        Ok(())
    }

    /// This node's id.
    pub fn node_id(&self) -> String {
        self.inner
            .node_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A new node id, after `swarm leave` (see [`identity::renew_node_id`]).
    fn renew_node_id(&self) -> Result<(), ControlError> {
        let id = identity::renew_node_id(&self.inner.config.state_dir)?;
        *self
            .inner
            .node_id
            .write()
            .unwrap_or_else(|e| e.into_inner()) = id;
        Ok(())
    }

    /// Stops the agent (leaving its tasks running, see
    /// [`MemberHooks::shutdown`]) and listener, then the manager, if any,
    /// flushing its log.
    pub async fn shutdown(&self) {
        self.inner.hooks.shutdown().await;
        if let Some(manager) = self.inner.manager.write().await.take() {
            manager.shutdown().await;
        }
    }

    /// The manager, once it has applied everything the leader had committed when called.
    async fn consistent(&self) -> Result<Arc<Manager>, ControlError> {
        let manager = self.manager().await?;
        manager.proposer().read_barrier().await?;
        Ok(manager)
    }

    /// Makes `manager` this node's manager and starts watching whether the cluster still
    /// counts it as one.
    async fn install_manager(&self, manager: Manager) -> Arc<Manager> {
        let manager = Arc::new(manager);
        *self.inner.manager.write().await = Some(manager.clone());
        self.watch_role(manager.clone());
        manager
    }

    async fn manager(&self) -> Result<Arc<Manager>, ControlError> {
        if self.is_locked() {
            return Err(ControlError::Precondition(autolock::LOCKED.into()));
        }
        if let Some(manager) = self.inner.manager.read().await.clone() {
            return Ok(manager);
        }
        let message = if self.inner.membership.read().await.is_some() {
            format!(
                "this node is not a swarm manager: worker nodes can't be used to view or modify \
                 cluster state; run this command on a manager node or promote this node to a \
                 manager (`mini node promote {}` on a manager)",
                self.inner.config.hostname
            )
        } else {
            "this node is not a swarm manager: run `mini swarm init --advertise-addr IP` to \
             create a swarm, or `mini swarm join` to join one"
                .to_string()
        };
        Err(ControlError::Precondition(message))
    }
}

/// The settings of this node's manager, a member of `membership`'s cluster (whose `raft_id` 0
/// means the first manager, from before managers could join).
fn manager_config(
    config: &DaemonConfig,
    node_id: &str,
    agent_port: u16,
    membership: &mini_proto::v1::Membership,
) -> ManagerConfig {
    ManagerConfig {
        state_dir: config.state_dir.clone(),
        node_id: node_id.to_string(),
        hostname: config.hostname.clone(),
        snapshot_interval: config.snapshot_interval,
        heartbeat_period: config.heartbeat_period,
        agent_port,
        raft_id: membership.raft_id.max(crate::ha::BOOTSTRAP_RAFT_ID),
        advertise_addr: format!("{}:{agent_port}", membership.advertise_addr),
        cluster_id: membership.cluster_id.clone(),
        gossip_key_rotation: config.gossip_key_rotation,
        trust: config.trust.clone(),
        fatal: config.fatal.clone(),
        unlock_key: None,
        metrics: config.metrics.clone(),
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// A service as the control API shows it: without its registry credentials
/// (`--with-registry-auth`), which only the nodes running its tasks receive.
fn public(mut service: Service) -> Service {
    service.registry_auth = None;
    service
}

fn reply<T>(result: Result<T, ControlError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl Control for ControlApi {
    async fn swarm_init(&self, request: Request<SwarmInitRequest>) -> Reply<SwarmInitResponse> {
        reply(cluster::swarm_init(self, request.into_inner()).await)
    }

    async fn info(&self, _: Request<InfoRequest>) -> Reply<InfoResponse> {
        reply(Ok(cluster::info(self).await))
    }

    async fn swarm_update(&self, request: Request<SwarmUpdateRequest>) -> Reply<Cluster> {
        let manager = self.consistent().await?;
        reply(
            ca_rotation::swarm_update(
                &manager,
                request.into_inner(),
                self.inner.config.min_cert_expiry,
            )
            .await,
        )
    }

    async fn swarm_unlock_key(
        &self,
        request: Request<SwarmUnlockKeyRequest>,
    ) -> Reply<SwarmUnlockKeyResponse> {
        let manager = self.consistent().await?;
        reply(autolock::unlock_key(&manager, request.into_inner()).await)
    }

    async fn swarm_unlock(
        &self,
        request: Request<SwarmUnlockRequest>,
    ) -> Reply<SwarmUnlockResponse> {
        reply(autolock::unlock(self, request.into_inner()).await)
    }

    async fn swarm_ca(&self, request: Request<SwarmCaRequest>) -> Reply<SwarmCaResponse> {
        let manager = self.consistent().await?;
        reply(ca_rotation::swarm_ca(&manager, request.into_inner()).await)
    }

    async fn create_network(&self, request: Request<CreateNetworkRequest>) -> Reply<Network> {
        let manager = self.consistent().await?;
        reply(networks::create(&manager, request.into_inner()).await)
    }

    async fn list_networks(&self, _: Request<ListNetworksRequest>) -> Reply<ListNetworksResponse> {
        let manager = self.consistent().await?;
        let mut networks: Vec<Network> = manager
            .store()
            .view(|t| t.networks.values().cloned().collect());
        networks.push(networks::gateway_bridge(&self.node_id()));
        reply(Ok(ListNetworksResponse { networks }))
    }

    async fn get_network(&self, request: Request<GetRequest>) -> Reply<Network> {
        let manager = self.consistent().await?;
        let query = request.into_inner().name_or_id;
        let found = manager
            .store()
            .view(|t| t.network(&query).cloned())
            .map_err(ControlError::from);
        match found {
            Err(err) => {
                let bridge = networks::gateway_bridge(&self.node_id());
                if networks::names_gateway_bridge(&bridge, &query) {
                    reply(Ok(bridge))
                } else {
                    reply(Err(err))
                }
            }
            found => reply(found),
        }
    }

    async fn remove_network(&self, request: Request<GetRequest>) -> Reply<RemoveResponse> {
        let manager = self.consistent().await?;
        reply(networks::remove(&manager, &request.into_inner().name_or_id).await)
    }

    async fn create_service(&self, request: Request<CreateServiceRequest>) -> Reply<Service> {
        let manager = self.consistent().await?;
        reply(
            services::create(&manager, request.into_inner())
                .await
                .map(public),
        )
    }

    async fn list_services(&self, _: Request<ListServicesRequest>) -> Reply<ListServicesResponse> {
        let manager = self.consistent().await?;
        let mut list = services::list(&manager);
        for summary in &mut list.services {
            summary.service = summary.service.take().map(public);
        }
        reply(Ok(list))
    }

    async fn get_service(&self, request: Request<GetRequest>) -> Reply<Service> {
        let manager = self.consistent().await?;
        let query = request.into_inner().name_or_id;
        reply(
            manager
                .store()
                .view(|t| t.service(&query).cloned())
                .map(public)
                .map_err(ControlError::from),
        )
    }

    async fn scale_service(&self, request: Request<ScaleServiceRequest>) -> Reply<Service> {
        let manager = self.consistent().await?;
        reply(
            services::scale(&manager, request.into_inner())
                .await
                .map(public),
        )
    }

    async fn update_service(&self, request: Request<UpdateServiceRequest>) -> Reply<Service> {
        let manager = self.consistent().await?;
        reply(
            service_update::update(&manager, request.into_inner())
                .await
                .map(public),
        )
    }

    async fn remove_service(&self, request: Request<GetRequest>) -> Reply<RemoveResponse> {
        let manager = self.consistent().await?;
        reply(services::remove(&manager, &request.into_inner().name_or_id).await)
    }

    async fn list_tasks(&self, request: Request<ListTasksRequest>) -> Reply<ListTasksResponse> {
        let manager = self.consistent().await?;
        reply(services::tasks(&manager, &request.into_inner().service))
    }

    async fn list_nodes(&self, _: Request<ListNodesRequest>) -> Reply<ListNodesResponse> {
        let manager = self.consistent().await?;
        let nodes = manager
            .store()
            .view(|t| t.nodes.values().cloned().collect());
        reply(Ok(ListNodesResponse { nodes }))
    }

    async fn update_node(&self, request: Request<UpdateNodeRequest>) -> Reply<Node> {
        let manager = self.consistent().await?;
        reply(members::update_node(&manager, request.into_inner()).await)
    }

    async fn remove_node(&self, request: Request<RemoveNodeRequest>) -> Reply<RemoveResponse> {
        let manager = self.consistent().await?;
        reply(members::remove_node(&manager, request.into_inner()).await)
    }

    async fn join_token(&self, request: Request<JoinTokenRequest>) -> Reply<JoinTokenResponse> {
        let manager = self.consistent().await?;
        reply(members::join_token(&manager, request.into_inner()).await)
    }

    async fn swarm_join(&self, request: Request<SwarmJoinRequest>) -> Reply<SwarmJoinResponse> {
        reply(members::swarm_join(self, request.into_inner()).await)
    }

    async fn swarm_leave(&self, request: Request<SwarmLeaveRequest>) -> Reply<SwarmLeaveResponse> {
        reply(
            members::swarm_leave(self, request.into_inner())
                .await
                .map(|()| SwarmLeaveResponse {}),
        )
    }

    type ServiceLogsStream = remote::LogStream;

    async fn service_logs(
        &self,
        request: Request<ServiceLogsRequest>,
    ) -> Reply<Self::ServiceLogsStream> {
        let manager = self.consistent().await?;
        reply(remote::service_logs(&manager, request.into_inner()).await)
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Reply<ExecResponse> {
        let manager = self.consistent().await?;
        reply(remote::exec(&manager, request.into_inner()).await)
    }

    async fn network_peers(&self, request: Request<GetRequest>) -> Reply<NetworkPeersReport> {
        let manager = self.consistent().await?;
        reply(remote::network_peers(&manager, &request.into_inner().name_or_id).await)
    }

    async fn create_secret(&self, request: Request<CreateSecretRequest>) -> Reply<Secret> {
        let manager = self.manager().await?;
        reply(secrets::create_secret(&manager, request.into_inner().spec).await)
    }

    async fn list_secrets(&self, _: Request<ListSecretsRequest>) -> Reply<ListSecretsResponse> {
        let manager = self.consistent().await?;
        let secrets = manager.store().view(|t| {
            t.secrets
                .values()
                .cloned()
                .map(secrets::public_secret)
                .collect()
        });
        reply(Ok(ListSecretsResponse { secrets }))
    }

    async fn get_secret(&self, request: Request<GetRequest>) -> Reply<Secret> {
        let manager = self.consistent().await?;
        let query = request.into_inner().name_or_id;
        reply(
            manager
                .store()
                .view(|t| t.secret(&query).cloned())
                .map(secrets::public_secret)
                .map_err(ControlError::from),
        )
    }

    async fn remove_secret(&self, request: Request<GetRequest>) -> Reply<RemoveResponse> {
        let manager = self.manager().await?;
        reply(secrets::remove_secret(&manager, &request.into_inner().name_or_id).await)
    }

    async fn create_config(&self, request: Request<CreateConfigRequest>) -> Reply<Config> {
        let manager = self.manager().await?;
        reply(secrets::create_config(&manager, request.into_inner().spec).await)
    }

    async fn list_configs(&self, _: Request<ListConfigsRequest>) -> Reply<ListConfigsResponse> {
        let manager = self.consistent().await?;
        let configs = manager
            .store()
            .view(|t| t.configs.values().cloned().collect());
        reply(Ok(ListConfigsResponse { configs }))
    }

    async fn get_config(&self, request: Request<GetRequest>) -> Reply<Config> {
        let manager = self.consistent().await?;
        let query = request.into_inner().name_or_id;
        reply(
            manager
                .store()
                .view(|t| t.config(&query).cloned())
                .map_err(ControlError::from),
        )
    }

    async fn remove_config(&self, request: Request<GetRequest>) -> Reply<RemoveResponse> {
        let manager = self.manager().await?;
        reply(secrets::remove_config(&manager, &request.into_inner().name_or_id).await)
    }

    type EventsStream = events::EventStream;

    async fn events(
        &self,
        request: Request<mini_proto::v1::EventsRequest>,
    ) -> Reply<Self::EventsStream> {
        // No read barrier: the stream is this manager's own view, as it applies the log.
        let manager = self.manager().await?;
        reply(events::events(&manager, request.into_inner()))
    }

    async fn get_node(&self, request: Request<GetRequest>) -> Reply<Node> {
        let manager = self.consistent().await?;
        let query = request.into_inner().name_or_id;
        reply(
            manager
                .store()
                .view(|t| t.node(&query).cloned())
                .map_err(ControlError::from),
        )
    }
}
