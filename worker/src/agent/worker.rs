//! [`Worker`]: the node-wide task runtime, network driver and agent.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mini_netdriver::{DriverConfig, Kernel, LinuxKernel, NetDriver};
use mini_proto::v1::Membership;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::executor::Executor;
use super::images::{DirImageSource, ImageSource, StoreImageSource};
use super::network::NodeNetwork;
use super::reporter::Reporter;
use super::session;
use crate::runtime::{HostRuntime, RuncRuntime, TaskRuntime};

/// What the agent could not do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The membership does not say how to reach the node or its managers.
    #[error("invalid membership: {0}")]
    Membership(String),
    /// The network driver failed.
    #[error("network: {0}")]
    Network(String),
}

/// Settings of the node's worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The daemon's run directory (namespaces, task directories, runc state).
    pub run_dir: PathBuf,
    /// The daemon's state directory (images, volumes, containers' writable layers).
    pub state_dir: PathBuf,
    /// The binary re-executed as each task's init.
    pub self_exe: PathBuf,
    /// Time a stopping task gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// This node's private key (PKCS#8 PEM, `<state-dir>/certificates/swarm-node.key`): it
    /// signs the endpoint records this node owns, once the managers hand out the members'
    /// certificates.
    pub node_key: Option<PathBuf>,
    /// The node's TLS identity: the session dials managers with it, renewal replaces it.
    pub trust: mini_proto::tls::Trust,
    /// `mini daemon --label k=v`: reported to the managers when a session opens
    /// (`engine.labels.*` constraints, Docker's `Description.Engine.Labels`).
    pub engine_labels: std::collections::HashMap<String, String>,
    /// Where the agent's metrics go (`mini daemon --metrics-addr`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The runtimes of a node: `host`, and runc with its image source where
/// runc is installed.
pub struct Runtimes {
    /// Runs image `host`.
    pub host: Arc<dyn TaskRuntime>,
    /// Runs every other image; `None` on a node without runc.
    pub images: Option<ImageRuntime>,
}

/// A runtime for images and where its images come from.
pub struct ImageRuntime {
    /// The runtime (runc).
    pub runtime: Arc<dyn TaskRuntime>,
    /// The images.
    pub source: Arc<dyn ImageSource>,
}

/// What the agent's parts share: the node's identity and its runtimes,
/// network, DNS, gossip and reporter. Each part keeps its own state; this
/// holds only handles to the node-wide ones.
pub(crate) struct Shared<K: Kernel> {
    pub(crate) config: WorkerConfig,
    pub(crate) runtimes: Runtimes,
    pub(crate) network: NodeNetwork<K>,
    pub(crate) reporter: Reporter,
    /// This node's id (owner of the endpoint records it publishes).
    pub(crate) node_id: String,
    /// This node's data-path address (its VTEP; gossip binds here too).
    pub(crate) vtep: Ipv4Addr,
    /// UDP port of the gossip socket.
    pub(crate) gossip_port: u16,
    /// The DNS servers of the task sandboxes.
    pub(crate) dns: super::dns_link::NodeDns,
    /// The gossip agent, once the first session told who to join through.
    pub(crate) gossip: tokio::sync::RwLock<Option<crate::gossip::Gossip>>,
    /// The members' public keys (from their certificates), which endpoint records are
    /// checked against.
    pub(crate) peer_keys: Arc<crate::gossip::PeerKeyMap>,
    /// The managers' addresses, as the last session message listed them.
    pub(crate) managers: Mutex<Vec<String>>,
    /// Wakes the certificate renewal now (the cluster gave the node another role).
    pub(crate) renew_now: tokio::sync::Notify,
    /// The role the cluster gives this node, as the last session message said.
    pub(crate) wanted_role: Mutex<Option<mini_proto::v1::NodeRole>>,
    /// The secrets and configs of the node's tasks (in memory only).
    pub(crate) secrets: super::secrets::SecretStore,
    /// Tasks an earlier daemon left running (live-restore), adopted when the
    /// managers assign them: task id → task directory.
    pub(crate) adoptable: Mutex<std::collections::BTreeMap<String, PathBuf>>,
    /// How the tasks that ended while no daemon ran ended: task id → exit.
    pub(crate) ended_away: Mutex<std::collections::HashMap<String, crate::runtime::TaskExit>>,
    /// Task starts under way (preparing to started): at most [`concurrent_starts`] at once;
    /// the others wait PREPARING, so a burst of assignments is admitted at the rate the node
    /// can carry instead of saturating it (its heartbeats and gossip would starve).
    pub(crate) starts: tokio::sync::Semaphore,
}

/// How many task starts a node runs at once: one per CPU, at least 2 (a start is mostly
/// kernel work — namespaces, veths, mounts, runc — so more at once only queues in the kernel).
pub fn concurrent_starts() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// `RUN/tasks/<id>` for a valid object id, `None` otherwise.
pub(crate) fn task_dir(run_dir: &std::path::Path, task_id: &str) -> Option<PathBuf> {
    mini_proto::is_object_id(task_id).then(|| run_dir.join("tasks").join(task_id))
}

impl<K: Kernel> Shared<K> {
    /// The parts of an agent for `node_id` at `vtep`, before any session.
    pub(crate) fn new(
        config: WorkerConfig,
        runtimes: Runtimes,
        network: NodeNetwork<K>,
        node_id: String,
        vtep: Ipv4Addr,
        gossip_port: u16,
        dns: super::dns_link::NodeDns,
    ) -> Self {
        Shared {
            reporter: Reporter::counting_into(config.metrics.clone()),
            config,
            runtimes,
            network,
            node_id,
            vtep,
            gossip_port,
            dns,
            gossip: tokio::sync::RwLock::new(None),
            peer_keys: Arc::default(),
            managers: Mutex::new(Vec::new()),
            renew_now: tokio::sync::Notify::new(),
            wanted_role: Mutex::new(None),
            secrets: super::secrets::SecretStore::default(),
            adoptable: Mutex::default(),
            ended_away: Mutex::default(),
            starts: tokio::sync::Semaphore::new(concurrent_starts()),
        }
    }

    /// The directory of task `task_id` (`RUN/tasks/<id>`), or `None` for an id that is not an
    /// object id ([`mini_proto::is_object_id`]): an id never becomes a path unchecked.
    pub(crate) fn task_dir(&self, task_id: &str) -> Option<PathBuf> {
        task_dir(&self.config.run_dir, task_id)
    }
}

/// The runtimes of this node: `host` always; runc (with images kept as
/// directories under the state dir) when runc is installed.
fn node_runtimes(config: &WorkerConfig, store: Option<&crate::image::ImageStore>) -> Runtimes {
    let host: Arc<dyn TaskRuntime> = Arc::new(HostRuntime::new(config.self_exe.clone()));
    let images = match RuncRuntime::new(config.self_exe.clone(), config.run_dir.join("runc")) {
        Ok(runc) => Some(ImageRuntime {
            runtime: Arc::new(runc),
            source: {
                let dirs = DirImageSource::new(config.state_dir.join("images").join("dirs"));
                match store {
                    Some(store) => Arc::new(StoreImageSource::new(dirs, store.clone())),
                    None => Arc::new(dirs),
                }
            },
        }),
        Err(err) => {
            tracing::warn!(%err, "image tasks cannot run on this node");
            None
        }
    };
    Runtimes { host, images }
}

struct Agent {
    shared: Arc<Shared<LinuxKernel>>,
    executor: Arc<Executor<LinuxKernel>>,
    stop: watch::Sender<bool>,
    session: JoinHandle<()>,
    renewal: JoinHandle<()>,
}

/// The node's worker. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    config: WorkerConfig,
    agent: Arc<tokio::sync::Mutex<Option<Agent>>>,
    /// The node's image store (`None`: a node without images).
    images: Option<crate::image::ImageStore>,
}

impl Worker {
    /// A worker with no agent running yet.
    pub fn new(config: WorkerConfig) -> Worker {
        Worker {
            config,
            agent: Arc::new(tokio::sync::Mutex::new(None)),
            images: None,
        }
    }

    /// The same worker with the node's image store.
    pub fn with_images(mut self, images: crate::image::ImageStore) -> Worker {
        self.images = Some(images);
        self
    }

    /// The node's image store, if it has one.
    pub fn images(&self) -> Option<&crate::image::ImageStore> {
        self.images.as_ref()
    }

    /// Starts the agent of `node_id` in the cluster `membership` describes.
    pub async fn start_agent(
        &self,
        node_id: String,
        membership: Membership,
    ) -> Result<(), AgentError> {
        let vtep: Ipv4Addr = membership.advertise_addr.parse().map_err(|_| {
            AgentError::Membership(format!(
                "advertise address {:?} is not IPv4",
                membership.advertise_addr
            ))
        })?;
        if membership.managers.is_empty() {
            return Err(AgentError::Membership("no manager address".into()));
        }
        let mut slot = self.agent.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let mut driver_config = DriverConfig::new(&self.config.run_dir, vtep);
        driver_config.data_path_port = u16::try_from(membership.data_path_port).unwrap_or(4789);
        let kernel = LinuxKernel::new(driver_config.clone())
            .map_err(|e| AgentError::Network(e.to_string()))?;
        let runtimes = node_runtimes(&self.config, self.images.as_ref());
        let shared = Arc::new(Shared::new(
            self.config.clone(),
            runtimes,
            NodeNetwork::new(
                NetDriver::new(driver_config, kernel)
                    .with_metrics(self.config.metrics.netdriver.clone()),
                node_id.clone(),
            ),
            node_id.clone(),
            vtep,
            u16::try_from(membership.gossip_port)
                .ok()
                .filter(|p| *p != 0)
                .unwrap_or(7946),
            super::dns_link::NodeDns::default(),
        ));
        *shared.managers.lock().unwrap_or_else(|e| e.into_inner()) = membership.managers.clone();
        // Start-up reconcile: the tasks an earlier run left running are kept, with their
        // sandboxes, for adoption (live-restore); whatever else it left is removed until the
        // manager says what this node runs.
        let tasks_dir = self.config.run_dir.join("tasks");
        let survivors = super::leftovers::survivors(&tasks_dir);
        let mut ended = super::leftovers::ended(&tasks_dir);
        ended.retain(|id, _| !survivors.contains_key(id));
        if let Ok(runc) = RuncRuntime::new(
            self.config.self_exe.clone(),
            self.config.run_dir.join("runc"),
        ) {
            let keep: Vec<PathBuf> = survivors.values().cloned().collect();
            runc.reap(&tasks_dir, &keep).await;
        }
        super::leftovers::reap(&tasks_dir, &survivors);
        if survivors.is_empty() {
            shared.network.converge().await?;
        } else {
            // The first assignment says which to keep; their sandboxes stay until then.
            shared.network.hold();
            tracing::info!(
                tasks = survivors.len(),
                "tasks left running by the previous daemon: adopting those still assigned"
            );
        }
        *shared.adoptable.lock().unwrap_or_else(|e| e.into_inner()) = survivors;
        *shared.ended_away.lock().unwrap_or_else(|e| e.into_inner()) = ended;
        let executor = Executor::new(Arc::clone(&shared));
        let (stop, stopped) = watch::channel(false);
        let renewal = tokio::spawn(super::renewal::run(Arc::clone(&shared), stopped.clone()));
        let session = tokio::spawn(session::run(
            node_id,
            membership.managers.clone(),
            Arc::clone(&shared),
            Arc::clone(&executor),
            stopped,
        ));
        *slot = Some(Agent {
            shared,
            executor,
            stop,
            session,
            renewal,
        });
        Ok(())
    }

    /// Stops the agent: ends the session, stops every task, removes every
    /// sandbox and overlay namespace it made.
    pub async fn stop(&self) {
        let Some(agent) = self.agent.lock().await.take() else {
            return;
        };
        let _ = agent.stop.send(true);
        let _ = agent.session.await;
        let _ = agent.renewal.await;
        // Leaving: nothing is adopted any more, every task and sandbox goes.
        agent.shared.network.release();
        agent.executor.stop_all().await;
        agent.executor.discard_unadopted().await;
        super::gossip_link::stop(&agent.shared).await;
        agent.shared.network.clear();
        if let Err(err) = agent.shared.network.converge().await {
            tracing::warn!(%err, "removing the node's networks failed");
        }
    }

    /// Detaches the agent for a daemon that exits (Docker's live-restore):
    /// ends the session and the certificate renewal, leaves the gossip
    /// cluster, and leaves every task running with its sandbox and the
    /// node's networks, for the next daemon to adopt. `swarm leave` uses
    /// [`Worker::stop`] instead.
    pub async fn detach(&self) {
        let Some(agent) = self.agent.lock().await.take() else {
            return;
        };
        let _ = agent.stop.send(true);
        let _ = agent.session.await;
        let _ = agent.renewal.await;
        agent.executor.detach_all().await;
        super::gossip_link::stop(&agent.shared).await;
    }

    pub(crate) async fn shared(&self) -> Option<Arc<Shared<LinuxKernel>>> {
        self.agent
            .lock()
            .await
            .as_ref()
            .map(|a| Arc::clone(&a.shared))
    }

    pub(crate) async fn executor(&self) -> Option<Arc<Executor<LinuxKernel>>> {
        self.agent
            .lock()
            .await
            .as_ref()
            .map(|a| Arc::clone(&a.executor))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn only_object_ids_become_task_directories() {
        let run = Path::new("/run/mini");
        assert_eq!(
            super::task_dir(run, "zazcrztrp8noilfyignita3tf"),
            Some(run.join("tasks/zazcrztrp8noilfyignita3tf"))
        );
        for bad in ["../../../h1/run/tasks/x", "..", "a/b", "", "/etc", "A"] {
            assert_eq!(super::task_dir(run, bad), None, "{bad:?}");
        }
    }
}
