//! [`Worker`]: the node-wide task runtime, network driver and agent.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mini_netdriver::{DriverConfig, LinuxKernel, NetDriver};
use mini_proto::v1::Membership;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::executor::Executor;
use super::network::NodeNetwork;
use super::reporter::Reporter;
use super::session;
use crate::runtime::Runtime;

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
    /// The daemon's run directory (namespaces, task directories).
    pub run_dir: PathBuf,
    /// The binary re-executed as each task's init.
    pub self_exe: PathBuf,
    /// Time a stopping task gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The node's TLS identity: the session dials managers with it, renewal replaces it.
    pub trust: mini_proto::tls::Trust,
}

/// What the agent's parts share.
pub(crate) struct Shared {
    pub(crate) config: WorkerConfig,
    pub(crate) runtime: Runtime,
    pub(crate) network: NodeNetwork,
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
    /// Task id → PID of its init, while it runs.
    pids: Mutex<HashMap<String, u32>>,
    /// The managers' addresses, as the last session message listed them.
    pub(crate) managers: Mutex<Vec<String>>,
    /// Wakes the certificate renewal now (the cluster gave the node another role).
    pub(crate) renew_now: tokio::sync::Notify,
    /// The role the cluster gives this node, as the last session message said.
    pub(crate) wanted_role: Mutex<Option<mini_proto::v1::NodeRole>>,
}

/// `RUN/tasks/<id>` for a valid object id, `None` otherwise.
pub(crate) fn task_dir(run_dir: &std::path::Path, task_id: &str) -> Option<PathBuf> {
    mini_proto::is_object_id(task_id).then(|| run_dir.join("tasks").join(task_id))
}

impl Shared {
    /// The directory of task `task_id` (`RUN/tasks/<id>`), or `None` for an id that is not an
    /// object id ([`mini_proto::is_object_id`]): an id never becomes a path unchecked.
    pub(crate) fn task_dir(&self, task_id: &str) -> Option<PathBuf> {
        task_dir(&self.config.run_dir, task_id)
    }

    pub(crate) fn set_pid(&self, task_id: &str, pid: u32) {
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string(), pid);
    }

    pub(crate) fn clear_pid(&self, task_id: &str) {
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task_id);
    }

    pub(crate) fn pid(&self, task_id: &str) -> Option<u32> {
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_id)
            .copied()
    }
}

struct Agent {
    shared: Arc<Shared>,
    executor: Arc<Executor>,
    stop: watch::Sender<bool>,
    session: JoinHandle<()>,
    renewal: JoinHandle<()>,
}

/// The node's worker. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    config: WorkerConfig,
    agent: Arc<tokio::sync::Mutex<Option<Agent>>>,
}

impl Worker {
    /// A worker with no agent running yet.
    pub fn new(config: WorkerConfig) -> Worker {
        Worker {
            config,
            agent: Arc::new(tokio::sync::Mutex::new(None)),
        }
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
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            runtime: Runtime::new(self.config.self_exe.clone()),
            network: NodeNetwork::new(NetDriver::new(driver_config, kernel), node_id.clone()),
            reporter: Reporter::default(),
            node_id: node_id.clone(),
            vtep,
            gossip_port: u16::try_from(membership.gossip_port)
                .ok()
                .filter(|p| *p != 0)
                .unwrap_or(7946),
            gossip: tokio::sync::RwLock::new(None),
            dns: super::dns_link::NodeDns::default(),
            pids: Mutex::new(HashMap::new()),
            managers: Mutex::new(membership.managers.clone()),
            renew_now: tokio::sync::Notify::new(),
            wanted_role: Mutex::new(None),
        });
        // Start-up reconcile: whatever an earlier run left is removed until
        // the manager says what this node runs.
        super::leftovers::reap(&self.config.run_dir.join("tasks"));
        shared.network.converge().await?;
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
        agent.executor.stop_all().await;
        super::gossip_link::stop(&agent.shared).await;
        agent.shared.network.clear();
        if let Err(err) = agent.shared.network.converge().await {
            tracing::warn!(%err, "removing the node's networks failed");
        }
    }

    pub(crate) async fn shared(&self) -> Option<Arc<Shared>> {
        self.agent
            .lock()
            .await
            .as_ref()
            .map(|a| Arc::clone(&a.shared))
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
