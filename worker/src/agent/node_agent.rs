//! The gRPC service every node serves to managers: task logs and exec.

use std::pin::Pin;

use futures::Stream;
use mini_proto::v1::{
    ExecRequest, ExecResponse, GossipCounters, LogLine, NetworkPeersRequest, NetworkPeersResponse,
    PeerEntry, ServiceBackends, TaskLogsRequest, node_agent_server::NodeAgent,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Worker;
use crate::runtime::{LogFollower, read_logs};

type LogStream = Pin<Box<dyn Stream<Item = Result<LogLine, Status>> + Send>>;

/// The refusal of an id that is not an object id (it would become a path).
fn invalid_task_id(id: &str) -> Status {
    Status::invalid_argument(format!(
        "invalid task id {id:?}: task ids are lowercase letters and digits"
    ))
}

#[tonic::async_trait]
impl NodeAgent for Worker {
    type TaskLogsStream = LogStream;

    async fn task_logs(
        &self,
        request: Request<TaskLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let shared = self
            .shared()
            .await
            .ok_or_else(|| Status::unavailable("this node's agent is not running"))?;
        let req = request.into_inner();
        let dirs = req
            .task_ids
            .into_iter()
            .map(|id| match shared.task_dir(&id) {
                Some(dir) => Ok((id, dir)),
                None => Err(invalid_task_id(&id)),
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let (tx, rx) = mpsc::channel(256);
        let since = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(req.since_ms).unwrap_or(0));
        for (task_id, dir) in dirs {
            let tx = tx.clone();
            let (follow, tail) = (req.follow, req.tail);
            let span = tracing::info_span!("task_logs", task_id = %task_id, follow);
            let stream = async move {
                tracing::debug!("streaming the task's logs");
                let line = |l: crate::runtime::LogLine| LogLine {
                    task_id: task_id.clone(),
                    task_name: String::new(),
                    node: String::new(),
                    stream: l.stream.as_str().to_string(),
                    timestamp_ns: l
                        .time
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
                    line: l.text,
                };
                // What is written from now on, when following: its start is
                // taken before the past is read, so no line is lost (one
                // written in between may show twice).
                let mut follower = follow.then(|| LogFollower::from_end(&dir));
                let mut past: Vec<crate::runtime::LogLine> = read_logs(&dir)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|l| l.time >= since)
                    .collect();
                if let Some(n) = tail {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    past.drain(..past.len().saturating_sub(n));
                }
                for l in past {
                    if tx.send(Ok(line(l))).await.is_err() {
                        return;
                    }
                }
                if let Some(follower) = follower.as_mut() {
                    while let Ok(l) = follower.next_line().await {
                        if tx.send(Ok(line(l))).await.is_err() {
                            return;
                        }
                    }
                }
            };
            tokio::spawn(tracing::Instrument::instrument(stream, span));
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn network_peers(
        &self,
        request: Request<NetworkPeersRequest>,
    ) -> Result<Response<NetworkPeersResponse>, Status> {
        let shared = self
            .shared()
            .await
            .ok_or_else(|| Status::unavailable("this node's agent is not running"))?;
        let network_id = request.into_inner().network_id;
        let observed = shared
            .network
            .driver()
            .observe()
            .await
            .map_err(|e| Status::internal(format!("reading the kernel's peers failed: {e}")))?;
        let here = observed
            .iter()
            .find(|o| o.network_id.as_deref() == Some(network_id.as_str()));
        let kernel: Vec<PeerEntry> = here
            .map(|o| o.state.peers())
            .unwrap_or_default()
            .into_iter()
            .map(|p| PeerEntry {
                ip: p.ip.to_string(),
                mac: p.mac.to_string(),
                vtep: p.vtep.to_string(),
                programmed: true,
                ..Default::default()
            })
            .collect();
        let is_programmed = |ip: &str, mac: &str, vtep: &str| {
            kernel
                .iter()
                .any(|k| k.ip == ip && k.mac.eq_ignore_ascii_case(mac) && k.vtep == vtep)
        };
        let expected: Vec<PeerEntry> = if here.is_some() {
            shared
                .network
                .expected_peers(&network_id)
                .into_iter()
                .map(|p| {
                    let ip = p.ip.to_string();
                    let mac = mini_netdriver::MacAddr(p.mac).to_string();
                    let vtep = p.vtep.to_string();
                    PeerEntry {
                        programmed: is_programmed(&ip, &mac, &vtep),
                        ip,
                        mac,
                        vtep,
                        node_id: p.node_id,
                        task_id: p.endpoint_id,
                        service_name: p.service_name,
                        task_name: p.task_name,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let consistent = expected.iter().all(|e| e.programmed) && expected.len() == kernel.len();
        let services = if here.is_some() {
            shared
                .network
                .service_backends(&network_id)
                .into_iter()
                .map(|v| ServiceBackends {
                    service_id: v.service_id,
                    service_name: v.service_name,
                    vip: v.vip.to_string(),
                    backends: v.backends.iter().map(ToString::to_string).collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let gossip = shared.gossip.read().await.as_ref().map(|g| {
            let stats = g.stats();
            GossipCounters {
                packets_received: stats.packets_received,
                dropped_unauthenticated: stats.packets_unauthenticated,
                dropped_replayed: stats.packets_replayed,
                key_id: g.key_id(),
            }
        });
        Ok(Response::new(NetworkPeersResponse {
            present: here.is_some(),
            expected,
            kernel,
            consistent,
            services,
            gossip,
        }))
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let executor = self
            .executor()
            .await
            .ok_or_else(|| Status::unavailable("this node's agent is not running"))?;
        let req = request.into_inner();
        if !mini_proto::is_object_id(&req.task) {
            return Err(invalid_task_id(&req.task));
        }
        let output = executor
            .exec(&req.task, &req.args, &req.env)
            .await
            .ok_or_else(|| {
                Status::not_found(format!("task {} is not running on this node", req.task))
            })?
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(ExecResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit.exit_code(),
        }))
    }

    async fn image_load(
        &self,
        request: Request<tonic::Streaming<mini_proto::v1::ImageLoadChunk>>,
    ) -> Result<Response<mini_proto::v1::ImageLoadResponse>, Status> {
        let store = self
            .images()
            .ok_or_else(|| Status::failed_precondition("this node has no image store"))?;
        let (file, _) = crate::image::service::receive_archive(store, request.into_inner()).await?;
        let loaded = crate::image::service::load_file(store, file).await?;
        Ok(Response::new(mini_proto::v1::ImageLoadResponse {
            loaded: crate::image::service::loaded_lines(&loaded),
            nodes: Vec::new(),
        }))
    }
}
