//! [`Manager`]: the store, its Raft log and the leader-only controllers of one
//! manager node, started together and stopped together. The controllers, the node
//! monitor and the dispatcher sessions run only while this manager leads (see
//! `crate::ha`).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mini_proto::v1::{
    Cluster, Network, NetworkSpec, Node, NodeRole, NodeSpec, NodeState, NodeStatus, Resources,
    StoreAction, StoreBatch, store_action::Action,
};

use mini_proto::tls::Trust;
use mini_proto::tls::pki::{self, RootCa};

use crate::allocator::allocate_network;
use crate::dispatcher::Sessions;
use crate::error::ControlError;
use crate::ha::{self, GrpcTransport, HaProposer, Leadership, Peers, SessionsSlot};
use crate::ids::{new_id, new_secret, now_ms};
use crate::raft::{self, RaftConfig, RaftStatus, StartMode};
use crate::store::{ApplyError, Proposer, Store, StoreMachine, WriteError, create_action};

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
    /// This manager's Raft id (1 for the manager `swarm init` made).
    pub raft_id: u64,
    /// Where other managers reach this one (`host:port` of its listener).
    pub advertise_addr: String,
    /// The cluster's id (empty before `swarm init` made it).
    pub cluster_id: String,
    /// Time between two rotations of the gossip key (while this manager leads).
    pub gossip_key_rotation: Duration,
    /// This node's TLS identity: how it dials the other managers and nodes.
    pub trust: Trust,
    /// Told when the Raft loop dies.
    pub fatal: Fatal,
    /// The swarm's unlock key, when this manager's store key is sealed by it (autolock): given
    /// by `swarm unlock`, or by `swarm init --autolock` for the key it makes.
    pub unlock_key: Option<raft::UnlockKey>,
    /// Where the manager's metrics go.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Where a manager reports that its Raft loop died (a panic in raft-rs, a storage error). The
/// daemon then exits, so that its service manager restarts it, instead of living on as a node
/// whose log no longer moves (and whose last status still says Leader).
#[derive(Debug, Clone)]
pub struct Fatal(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Default for Fatal {
    fn default() -> Self {
        Fatal(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl Fatal {
    /// Records why the node cannot go on (the first reason is kept).
    pub fn report(&self, reason: String) {
        self.0.send_if_modified(|r| {
            let first = r.is_none();
            if first {
                *r = Some(reason);
            }
            first
        });
    }

    /// Resolves with the reason once one was reported.
    pub async fn wait(&self) -> String {
        let mut rx = self.0.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives as long as `self`: never reached.
            Err(_) => std::future::pending().await,
        }
    }

    /// The reason, if one was reported.
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }
}

/// Waits for the Raft loop to end and reports to `fatal` unless it ended because it was told to.
async fn watch_raft(task: raft::RaftTask, fatal: Fatal) {
    let reason = match task.await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("the raft node stopped: {e}"),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            format!("the raft node panicked: {text}")
        }
        Err(_) => return,
    };
    tracing::error!(%reason, "this manager cannot go on");
    fatal.report(reason);
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
    /// The new cluster's id.
    pub cluster_id: String,
    /// The new cluster's root CA.
    pub ca: RootCa,
    /// This node's certificate (DER), signed by `ca`.
    pub node_cert: Vec<u8>,
    /// `swarm init --autolock`: the new swarm's unlock key.
    pub unlock_key: Option<raft::UnlockKey>,
}

/// Writes batches through the Raft log: on the leader, or forwarded to it.
pub type RaftProposer = HaProposer;

/// A running manager.
pub struct Manager {
    store: Store,
    proposer: HaProposer,
    /// Where this manager's writers that lost a race for an object wait their turn for it.
    contention: crate::store::Contention,
    /// Starts and stops the leader-only services.
    leadership: Leadership,
    /// The dispatcher sessions of the current leadership.
    sessions: SessionsSlot,
    /// The other managers' addresses.
    peers: Peers,
    agent_port: u16,
    trust: Trust,
    /// Background tasks (address book, transport reports), aborted on shutdown.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The events derived from this manager's store (`mini events`).
    events: crate::events::EventHub,
}

impl Manager {
    /// Whether the state dir holds a manager's log to resume.
    pub fn has_state(config: &ManagerConfig) -> bool {
        raft::has_state(&config.state_dir)
    }

    /// The Raft settings: fast failover on a LAN (numbers and reasons in `crate::ha`).
    fn raft_config(config: &ManagerConfig) -> RaftConfig {
        RaftConfig {
            state_dir: config.state_dir.clone(),
            id: config.raft_id.max(1),
            tick_interval: ha::TICK,
            election_tick: ha::ELECTION_TICKS,
            heartbeat_tick: ha::HEARTBEAT_TICKS,
            snapshot_interval: config.snapshot_interval.max(1),
            keep_after_snapshot: (config.snapshot_interval / 4).max(1),
            manual_ticks: false,
            data_key: None,
        }
    }

    fn start(config: &ManagerConfig, mode: StartMode) -> Result<Manager, ControlError> {
        let store = Store::new();
        let peers = Peers::new(
            config.advertise_addr.clone(),
            config.cluster_id.clone(),
            config.trust.clone(),
        );
        let (reports_tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let machine = crate::metrics::TimedMachine {
            inner: StoreMachine::new(store.clone()),
            metrics: config.metrics.clone(),
        };
        let raft_dir = raft::raft_dir(&config.state_dir);
        let opened = raft::keys::open_data_key(&raft_dir, config.unlock_key.as_ref()).map_err(
            |e| match e {
                raft::RaftError::Key(key) => ControlError::Precondition(key.to_string()),
                e => ControlError::Internal(format!(
                    "cannot open the Raft store's key in {}: {e}",
                    raft_dir.display()
                )),
            },
        )?;
        let mut raft_config = Self::raft_config(config);
        raft_config.data_key = Some(opened.key.clone());
        let transport = GrpcTransport::new(peers.clone(), raft_config.id, reports_tx);
        let (raft, task) = raft::start_with_transport(raft_config, machine, mode, transport)
            .map_err(|e| {
                ControlError::Internal(format!(
                    "cannot open the Raft log in {}: {e}",
                    config.state_dir.display()
                ))
            })?;
        let events = crate::events::EventHub::new();
        let leader_of = {
            let (raft, store) = (raft.clone(), store.clone());
            move || {
                let leader = raft.status().leader_id;
                (leader != 0)
                    .then(|| {
                        store.view(|t| {
                            t.nodes
                                .values()
                                .find(|n| n.raft_id == leader)
                                .map(|n| n.id.clone())
                        })
                    })
                    .flatten()
            }
        };
        let background = vec![
            events.follow(store.clone(), leader_of),
            tokio::spawn(watch_raft(task, config.fatal.clone())),
            tokio::spawn(ha::forward_reports(reports, raft.clone())),
            peers.follow_store(store.clone()),
            crate::autolock::follow(store.clone(), raft_dir, opened.key, opened.sealed_with),
        ];
        let proposer = HaProposer::new(raft.clone(), store.clone(), peers.clone())
            .with_metrics(config.metrics.clone());
        let sessions = SessionsSlot::new(config.heartbeat_period)
            .counting_heartbeats(config.metrics.heartbeats.clone());
        let mut background = background;
        background.push(config.metrics.follow(
            store.clone(),
            raft.subscribe(),
            raft.subscribe_role(),
            sessions.clone(),
        ));
        let leadership = Leadership::start(
            store.clone(),
            proposer.clone(),
            sessions.clone(),
            crate::controllers::ControllerSettings {
                gossip_key_rotation: config.gossip_key_rotation,
            },
        );
        Ok(Manager {
            store,
            proposer,
            contention: Default::default(),
            leadership,
            sessions,
            peers,
            agent_port: config.agent_port,
            trust: config.trust.clone(),
            background,
            events,
        })
    }

    /// Resumes the manager whose log is in the state dir.
    pub async fn resume(config: ManagerConfig) -> Result<Manager, ControlError> {
        Self::start(&config, StartMode::Resume)
    }

    /// Starts a manager that joins an existing cluster: its log starts empty and fills from the
    /// leader (entries, or a snapshot if the leader's log is compacted). `config.raft_id` is the
    /// id the leader allocated.
    pub async fn join(config: ManagerConfig) -> Result<Manager, ControlError> {
        Self::start(
            &config,
            StartMode::Join {
                bootstrap_voter: ha::BOOTSTRAP_RAFT_ID,
            },
        )
    }

    /// Creates a new cluster with this node as its only manager: the cluster
    /// object, this node, and the ingress network, in one write.
    pub async fn init(config: ManagerConfig, params: InitParams) -> Result<Manager, ControlError> {
        let manager = Self::start(&config, StartMode::Bootstrap)?;
        let mut cluster = Cluster {
            id: params.cluster_id,
            meta: None,
            default_addr_pool: params.default_addr_pool,
            default_subnet_size: params.default_subnet_size,
            data_path_port: params.data_path_port,
            ca_digest: pki::digest_base36(&pki::ca_digest(&params.ca.cert_der)),
            worker_token_secret: new_secret(16),
            manager_token_secret: new_secret(16),
            next_vni: 4097,
            snapshot_interval: config.snapshot_interval,
            next_raft_id: ha::BOOTSTRAP_RAFT_ID + 1,
            gossip_keys: Some(crate::controllers::gossip_keys::new_key_ring(now_ms())),
            ca_cert: params.ca.cert_der,
            ca_key: params.ca.key_der,
            node_cert_expiry_ms: 0,
            removed_nodes: Vec::new(),
            ca_rotation: None,
            autolock: params.unlock_key.is_some(),
            unlock_key: params
                .unlock_key
                .as_ref()
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default(),
        };
        manager.peers.set_cluster_id(&cluster.id);
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
            raft_id: ha::BOOTSTRAP_RAFT_ID,
            agent_addr: format!("{}:{}", params.advertise_addr, config.agent_port),
            gossip_addr: format!("{}:{}", params.advertise_addr, params.gossip_port),
            ingress: None,
            certificate: params.node_cert,
            // Reported when the node's session opens.
            resources: None,
            description: None,
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
            scope: String::new(),
        };
        let batch = StoreBatch {
            actions: vec![
                create_action(Action::PutCluster(cluster)),
                create_action(Action::PutNode(node)),
                create_action(Action::PutNetwork(ingress)),
            ],
            proposed_at_ms: now_ms(),
            ..Default::default()
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
    pub fn proposer(&self) -> &HaProposer {
        &self.proposer
    }

    /// The other managers' addresses.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Whether this manager is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.proposer.is_leader()
    }

    /// The listener address of the leader, if known.
    pub fn leader_addr(&self) -> Option<String> {
        let leader = self.raft_status().leader_id;
        (leader != 0).then(|| self.peers.addr(leader)).flatten()
    }

    /// Reads, checks and writes: runs `decide` on a consistent view of the store and writes
    /// the actions it returns as one batch (decided again when an object it read changed
    /// meanwhile; see [`crate::store::read_check_write`]). Calls run concurrently, without a
    /// lock: two calls that decide from the same view conflict in the deterministic apply (a
    /// stale version, a name, port or reference checked again there), and the loser decides
    /// again or fails with the conflict.
    pub async fn write<T>(
        &self,
        decide: impl FnMut(&crate::store::Tables) -> Result<(Vec<StoreAction>, T), ControlError>,
    ) -> Result<T, ControlError> {
        crate::store::read_check_write_queued(&self.store, &self.proposer, &self.contention, decide)
            .await
    }

    /// [`write`](Self::write) for a caller that did not wait for the read barrier: `decide`
    /// first runs on this manager's own view, which on a follower may miss the leader's latest
    /// writes. Only for writes whose every precondition the deterministic apply checks again
    /// (unique names, existing objects, references, removal of what a service uses, versions):
    /// a batch decided on a stale view is refused there, and the proposer waits until this
    /// manager has applied the refusing entry, so the next decision sees what refused it. A
    /// decision that *fails* on the local view is not reported from it: the read barrier runs
    /// and the write goes on as [`write`](Self::write), on a consistent view. A follower's write
    /// then costs one round trip to the leader (the forwarded batch) instead of two.
    pub async fn write_unfenced<T>(
        &self,
        mut decide: impl FnMut(&crate::store::Tables) -> Result<(Vec<StoreAction>, T), ControlError>,
    ) -> Result<T, ControlError> {
        if self.store.view(&mut decide).is_err() {
            self.proposer.read_barrier().await?;
        }
        self.write(decide).await
    }

    /// The Raft node's status.
    pub fn raft_status(&self) -> RaftStatus {
        self.proposer.raft().status()
    }

    /// The events this manager derived from its store (`mini events`).
    pub fn events(&self) -> &crate::events::EventHub {
        &self.events
    }

    /// The live sessions of workers (an empty set unless this manager leads).
    pub fn sessions(&self) -> Arc<Sessions> {
        self.sessions.get()
    }

    /// Whether this manager opens workers' sessions: it leads and its leader-only services
    /// run, so its store holds everything earlier leaders committed.
    pub fn serves_sessions(&self) -> bool {
        self.is_leader() && self.sessions.serving()
    }

    /// This node's TLS identity.
    pub fn trust(&self) -> &Trust {
        &self.trust
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

    /// Records the capacity a node reported when its session opened (nothing
    /// is written when it is unchanged).
    pub async fn record_resources(&self, node_id: &str, resources: Resources) {
        self.record_node_report(node_id, Some(resources), None)
            .await;
    }

    /// Records what a node reported of itself when its session opened: its
    /// capacity and its description (platform, engine labels). Nothing is
    /// written when neither changed.
    pub async fn record_node_report(
        &self,
        node_id: &str,
        resources: Option<Resources>,
        description: Option<mini_proto::v1::NodeDescription>,
    ) {
        for _ in 0..5 {
            let Some(mut node) = self.store.view(|t| t.nodes.get(node_id).cloned()) else {
                return;
            };
            let before = node.clone();
            if resources.is_some() {
                node.resources = resources;
            }
            if description.is_some() {
                node.description = description.clone();
            }
            if node == before {
                return;
            }
            let batch = StoreBatch {
                actions: vec![StoreAction {
                    action: Some(Action::PutNode(node)),
                    create: false,
                }],
                proposed_at_ms: now_ms(),
                ..Default::default()
            };
            match self.proposer.propose(batch).await {
                Ok(_) => return,
                Err(WriteError::Rejected(ApplyError::Stale { .. })) => continue,
                Err(err) => {
                    tracing::warn!(node_id, %err, "cannot record what the node reported");
                    return;
                }
            }
        }
    }

    /// Stops the leader-only services, then the log (flushing it).
    pub async fn shutdown(&self) {
        self.leadership.stop().await;
        self.proposer.raft().shutdown().await;
        for task in &self.background {
            task.abort();
        }
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
            ..Default::default()
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

/// Why a node whose certificate expired shows as down (`node inspect`): the start of the
/// message, which goes on with the time and what to do.
pub const CERT_EXPIRED: &str = "node certificate expired";

/// Why a node whose certificate a dropped root signed shows as down.
pub const CERT_OLD_ROOT: &str = "node certificate is signed by a root CA the swarm no longer trusts (rotated while the node was down): the node cannot authenticate; run `mini swarm leave --force` on it, then join again";

/// Why `node`'s certificate cannot authenticate at `now`, if it cannot.
fn certificate_problem(
    cluster: Option<&mini_proto::v1::Cluster>,
    node: &mini_proto::v1::Node,
    now: std::time::SystemTime,
) -> Option<String> {
    if node.certificate.is_empty() {
        return None;
    }
    let id = pki::identity_of(&node.certificate).ok()?;
    if id.expired_at(now) {
        return Some(format!(
            "{CERT_EXPIRED} at {}: the node cannot authenticate; run `mini swarm leave --force` on it, then join again",
            pki::format_utc(id.not_after)
        ));
    }
    let cluster = cluster?;
    let roots = crate::dispatcher::ca::trusted_roots(cluster);
    let intermediates = crate::dispatcher::ca::intermediates(cluster);
    let intermediates: Vec<&[u8]> = intermediates.iter().map(Vec::as_slice).collect();
    if !roots.is_empty() && !pki::chains_to(&node.certificate, &intermediates, &roots) {
        return Some(CERT_OLD_ROOT.to_string());
    }
    None
}

/// Marks nodes down when their heartbeats stop (every half period). Leader only.
pub(crate) async fn monitor_nodes<P: Proposer>(store: Store, proposer: P, sessions: Arc<Sessions>) {
    let mut tick = tokio::time::interval(sessions.base_period() / 2);
    loop {
        tick.tick().await;
        let expired_certs: Vec<(String, String)> = store.view(|t| {
            let now = std::time::SystemTime::now();
            t.nodes
                .values()
                .filter_map(|n| {
                    let problem = certificate_problem(t.cluster.as_ref(), n, now)?;
                    n.status
                        .as_ref()
                        .is_none_or(|s| s.state() != NodeState::Down || s.message != problem)
                        .then(|| (n.id.clone(), problem))
                })
                .collect()
        });
        for (node_id, problem) in expired_certs {
            tracing::warn!(node_id, "{problem}");
            set_node_state(&store, &proposer, &node_id, NodeState::Down, &problem).await;
        }
        let expired = store.view(|t| sessions.expired(t));
        for node_id in expired {
            let cert_expired = store.view(|t| {
                t.nodes
                    .get(&node_id)
                    .and_then(|n| n.status.as_ref())
                    .is_some_and(|s| {
                        s.message.starts_with(CERT_EXPIRED) || s.message == CERT_OLD_ROOT
                    })
            });
            if cert_expired {
                continue;
            }
            set_node_state(
                &store,
                &proposer,
                &node_id,
                NodeState::Down,
                "heartbeat failure",
            )
            .await;
            // Its next heartbeat is refused: a node that was only slow opens a new session,
            // comes back Ready and stops at once the tasks replaced meanwhile.
            sessions.expire(&node_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Fatal, watch_raft};
    use crate::raft::{self, RaftConfig, StartMode, StateMachine};

    /// Panics on the entry `boom`, as raft-rs does on input it cannot handle.
    struct Fragile;

    impl StateMachine for Fragile {
        type Outcome = ();

        fn apply(&mut self, _: u64, data: &[u8]) {
            assert!(data != b"boom", "boom at apply");
        }

        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }

        fn restore(&mut self, _: u64, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panic_in_the_raft_loop_is_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let config = RaftConfig::new(dir.path(), 1);
        let (raft, task) = raft::start(config, Fragile, StartMode::Bootstrap).unwrap();
        let fatal = Fatal::default();
        let watcher = tokio::spawn(watch_raft(task, fatal.clone()));
        raft.propose(b"fine".to_vec()).await.unwrap();
        assert_eq!(fatal.reason(), None);
        raft.propose(b"boom".to_vec()).await.unwrap_err();
        let reason = tokio::time::timeout(Duration::from_secs(10), fatal.wait())
            .await
            .expect("the panic was not reported");
        assert!(
            reason.contains("the raft node panicked") && reason.contains("boom at apply"),
            "{reason}"
        );
        watcher.await.unwrap();
    }

    #[tokio::test]
    async fn a_shutdown_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let config = RaftConfig::new(dir.path(), 1);
        let (raft, task) = raft::start(config, Fragile, StartMode::Bootstrap).unwrap();
        let fatal = Fatal::default();
        let watcher = tokio::spawn(watch_raft(task, fatal.clone()));
        raft.propose(b"fine".to_vec()).await.unwrap();
        raft.shutdown().await;
        watcher.await.unwrap();
        assert_eq!(fatal.reason(), None);
    }
}
