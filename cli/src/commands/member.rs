//! What a daemon runs while its node is in a cluster: the TCP listener
//! (dispatcher for managers, node agent for everyone) and the worker agent.

use std::net::SocketAddr;
use std::sync::Mutex;

use futures::future::BoxFuture;
use mini_manager::control::{ControlApi, MemberHooks};
use mini_proto::tls::{AuthzLayer, Trust};
use mini_proto::v1::Membership;
use mini_proto::v1::dispatcher_server::DispatcherServer;
use mini_proto::v1::node_agent_server::NodeAgentServer;
use mini_proto::v1::node_ca_server::NodeCaServer;
use mini_proto::v1::raft_transport_server::RaftTransportServer;
use mini_worker::agent::Worker;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The listener and worker of this node.
pub struct NodeServices {
    worker: Worker,
    trust: Trust,
    listener: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    /// Where the worker agent runs (its session, task starts and kernel programming).
    agent_runtime: tokio::runtime::Handle,
}

impl NodeServices {
    /// Services around `worker`, with this node's TLS identity `trust`; nothing runs until the
    /// node is in a cluster. The worker agent runs on `agent_runtime`: on a manager node, a
    /// runtime of its own keeps the agent's task starts from queueing behind the manager's
    /// work (50 worker sessions, the allocator, the control API) and the manager's behind
    /// the agent's.
    pub fn new(worker: Worker, trust: Trust, agent_runtime: tokio::runtime::Handle) -> Self {
        NodeServices {
            worker,
            trust,
            listener: Mutex::new(None),
            agent_runtime,
        }
    }

    /// Runs `work` on the agent's runtime (what it spawns stays there) and waits for it.
    async fn on_agent_runtime<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.agent_runtime.spawn(work).await.ok()
    }

    /// Stops the node listener: no new calls; calls in flight (worker
    /// sessions, Raft streams) get [`CALLS_PATIENCE`] to end, then are cut.
    async fn stop_listener(&self) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, mut server)) = listener {
            let _ = stop.send(());
            if tokio::time::timeout(CALLS_PATIENCE, &mut server)
                .await
                .is_err()
            {
                server.abort();
                let _ = server.await;
            }
        }
    }
}

/// How long a stopping listener lets the calls in flight end by themselves.
pub const CALLS_PATIENCE: std::time::Duration = std::time::Duration::from_millis(300);

impl MemberHooks for NodeServices {
    fn listen(
        &self,
        addr: SocketAddr,
        api: ControlApi,
    ) -> BoxFuture<'_, Result<SocketAddr, String>> {
        Box::pin(async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            let (stop, stopped) = oneshot::channel::<()>();
            let worker = self.worker.clone();
            let trust = self.trust.clone();
            let server = tokio::spawn(async move {
                // Mutual TLS on every connection; who may call what is decided by one table
                // (`mini_proto::tls::authz`) in front of every service.
                let incoming = trust.incoming(listener);
                // Every service refuses messages over MAX_MESSAGE from their length prefix;
                // larger Raft messages (snapshots) come in chunks.
                let limit = mini_proto::MAX_MESSAGE;
                let served = tonic::transport::Server::builder()
                    .layer(AuthzLayer::new(trust))
                    .add_service(NodeCaServer::new(api.clone()))
                    .add_service(
                        DispatcherServer::new(api.clone()).max_decoding_message_size(limit),
                    )
                    .add_service(RaftTransportServer::new(api).max_decoding_message_size(limit))
                    .add_service(NodeAgentServer::new(worker).max_decoding_message_size(limit))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(err) = served {
                    tracing::error!(%err, "node listener failed");
                }
            });
            let previous = self
                .listener
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace((stop, server));
            if let Some((stop, _)) = previous {
                let _ = stop.send(());
            }
            tracing::info!(%bound, "node listener serving");
            Ok(bound)
        })
    }

    fn start_agent(
        &self,
        node_id: String,
        membership: Membership,
    ) -> BoxFuture<'_, Result<(), String>> {
        let worker = self.worker.clone();
        Box::pin(async move {
            match self
                .on_agent_runtime(async move { worker.start_agent(node_id, membership).await })
                .await
            {
                Some(started) => started.map_err(|e| e.to_string()),
                None => Err("the worker's runtime stopped".into()),
            }
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        let worker = self.worker.clone();
        Box::pin(async move {
            self.on_agent_runtime(async move { worker.stop().await })
                .await;
            self.stop_listener().await;
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        let worker = self.worker.clone();
        Box::pin(async move {
            self.on_agent_runtime(async move { worker.detach().await })
                .await;
            self.stop_listener().await;
        })
    }
}
