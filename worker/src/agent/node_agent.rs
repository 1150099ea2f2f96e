//! The gRPC service every node serves to managers: task logs and exec.

use std::pin::Pin;

use futures::Stream;
use mini_proto::v1::{
    ExecRequest, ExecResponse, LogLine, TaskLogsRequest, node_agent_server::NodeAgent,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Worker;
use crate::runtime::{LogFollower, read_logs};

type LogStream = Pin<Box<dyn Stream<Item = Result<LogLine, Status>> + Send>>;

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
        let (tx, rx) = mpsc::channel(256);
        for task_id in req.task_ids {
            let dir = shared.task_dir(&task_id);
            let tx = tx.clone();
            let follow = req.follow;
            tokio::spawn(async move {
                let line = |l: crate::runtime::LogLine| LogLine {
                    task_id: task_id.clone(),
                    task_name: String::new(),
                    node: String::new(),
                    stream: l.stream.as_str().to_string(),
                    line: l.text,
                };
                if follow {
                    let mut follower = LogFollower::new(&dir);
                    while let Ok(l) = follower.next_line().await {
                        if tx.send(Ok(line(l))).await.is_err() {
                            return;
                        }
                    }
                } else if let Ok(lines) = read_logs(&dir).await {
                    for l in lines {
                        if tx.send(Ok(line(l))).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let shared = self
            .shared()
            .await
            .ok_or_else(|| Status::unavailable("this node's agent is not running"))?;
        let req = request.into_inner();
        let pid = shared.pid(&req.task).ok_or_else(|| {
            Status::not_found(format!("task {} is not running on this node", req.task))
        })?;
        let output = shared
            .runtime
            .exec(pid, &req.args, &req.env)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(ExecResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit.exit_code(),
        }))
    }
}
