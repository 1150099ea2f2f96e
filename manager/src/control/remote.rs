//! `exec` and `service logs`: forwarded to the node agents that run the tasks.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use mini_proto::task_name;
use mini_proto::v1::{
    ExecRequest, ExecResponse, LogLine, NetworkPeersReport, NetworkPeersRequest, NodeNetworkPeers,
    ServiceLogsRequest, Task, TaskLogsRequest, node_agent_client::NodeAgentClient,
};
use tonic::Status;

use super::ControlError;
use super::members::dial;
use crate::manager::Manager;
use crate::store::{LookupError, ObjectKind, Tables};
use mini_proto::tls::Peer;

/// A stream of log lines.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<LogLine, Status>> + Send>>;

/// A task by id, unique id prefix, or name (`service.slot`: the current one).
fn find_task<'a>(tables: &'a Tables, query: &str) -> Result<&'a Task, ControlError> {
    if let Some(t) = tables.tasks.get(query) {
        return Ok(t);
    }
    let by_name = tables
        .tasks
        .values()
        .filter(|t| {
            task_name(t) == query && t.desired_state <= mini_proto::v1::TaskState::Running as i32
        })
        .max_by_key(|t| t.meta.as_ref().map_or(0, |m| m.version));
    if let Some(t) = by_name {
        return Ok(t);
    }
    let matches: Vec<&Task> = tables
        .tasks
        .values()
        .filter(|t| t.id.starts_with(query))
        .collect();
    match matches.len() {
        1 => Ok(matches[0]),
        0 => Err(LookupError::NotFound {
            kind: ObjectKind::Task,
            query: query.into(),
        }
        .into()),
        count => Err(LookupError::Ambiguous {
            kind: ObjectKind::Task,
            query: query.into(),
            count,
        }
        .into()),
    }
}

/// Runs a command in a task's namespaces on the node that runs it.
pub(super) async fn exec(
    manager: &Manager,
    request: ExecRequest,
) -> Result<ExecResponse, ControlError> {
    if request.args.is_empty() {
        return Err(ControlError::Invalid("exec needs a command to run".into()));
    }
    let (task_id, addr) = manager.store().view(|t| {
        let task = find_task(t, &request.task)?;
        // A STARTING task with a health status runs its container while its check has not
        // passed yet: `docker exec` enters such a container too.
        let running = task.status.as_ref().is_some_and(|s| {
            s.state() == mini_proto::v1::TaskState::Running
                || (s.state() == mini_proto::v1::TaskState::Starting && !s.health.is_empty())
        });
        if !running {
            return Err(ControlError::Precondition(format!(
                "task {} is not running",
                task_name(task)
            )));
        }
        let addr = t
            .nodes
            .get(&task.node_id)
            .map(|n| n.agent_addr.clone())
            .unwrap_or_default();
        Ok((task.id.clone(), (addr, task.node_id.clone())))
    })?;
    let (addr, node_id) = addr;
    let mut client = NodeAgentClient::new(dial(manager.trust(), &addr, Peer::Node(node_id)).await?);
    let forwarded = ExecRequest {
        task: task_id,
        ..request
    };
    Ok(client
        .exec(forwarded)
        .await
        .map_err(|s| ControlError::Refused(s.message().to_string()))?
        .into_inner())
}

/// The output of a service's tasks, merged from every node that ran them.
pub(super) async fn service_logs(
    manager: &Manager,
    request: ServiceLogsRequest,
) -> Result<LogStream, ControlError> {
    let by_node = manager.store().view(|t| {
        let service = t.service(&request.service)?;
        let mut by_node: std::collections::BTreeMap<(String, String), Vec<String>> =
            Default::default();
        for task in t
            .tasks_of_service(&service.id)
            .filter(|t| !t.node_id.is_empty())
        {
            let addr = t
                .nodes
                .get(&task.node_id)
                .map(|n| n.agent_addr.clone())
                .unwrap_or_default();
            by_node
                .entry((addr, task.node_id.clone()))
                .or_default()
                .push(task.id.clone());
        }
        Ok::<_, ControlError>(by_node)
    })?;
    let mut streams: Vec<LogStream> = Vec::new();
    for ((addr, node_id), task_ids) in by_node {
        let channel = match dial(manager.trust(), &addr, Peer::Node(node_id)).await {
            Ok(c) => c,
            Err(err) if request.follow => return Err(err),
            Err(err) => {
                tracing::warn!(%addr, %err, "logs of a node cannot be read");
                continue;
            }
        };
        let mut client = NodeAgentClient::new(channel);
        let stream = client
            .task_logs(TaskLogsRequest {
                task_ids,
                follow: request.follow,
                since_ms: request.since_ms,
                tail: request.tail,
            })
            .await
            .map_err(|s| ControlError::Refused(s.message().to_string()))?
            .into_inner();
        streams.push(Box::pin(stream));
    }
    Ok(Box::pin(futures::stream::select_all(streams).map(|r| r)))
}

/// Asks every ready node for its view of a network's peers.
pub(super) async fn network_peers(
    manager: &Manager,
    query: &str,
) -> Result<NetworkPeersReport, ControlError> {
    let (network_id, nodes, tasks) = manager.store().view(|t| {
        let network = t.network(query)?;
        let nodes: Vec<_> = t
            .nodes
            .values()
            .filter(|n| {
                n.status
                    .as_ref()
                    .is_some_and(|s| s.state() == mini_proto::v1::NodeState::Ready)
            })
            .cloned()
            .collect();
        let tasks: std::collections::HashMap<String, Task> = t
            .tasks
            .iter()
            .map(|(id, task)| (id.clone(), task.clone()))
            .collect();
        Ok::<_, ControlError>((network.id.clone(), nodes, tasks))
    })?;
    let asks = nodes.into_iter().map(|node| {
        let network_id = network_id.clone();
        async move {
            let view = async {
                let channel = dial(
                    manager.trust(),
                    &node.agent_addr,
                    Peer::Node(node.id.clone()),
                )
                .await?;
                let mut client = NodeAgentClient::new(channel);
                let response = client
                    .network_peers(NetworkPeersRequest { network_id })
                    .await
                    .map_err(|s| ControlError::Refused(s.message().to_string()))?;
                Ok::<_, ControlError>(response.into_inner())
            }
            .await;
            let (view, error) = match view {
                Ok(v) => (Some(v), String::new()),
                Err(e) => (None, e.to_string()),
            };
            NodeNetworkPeers {
                node_id: node.id.clone(),
                hostname: node.hostname.clone(),
                error,
                view,
            }
        }
    });
    let mut nodes = futures::future::join_all(asks).await;
    for node in &mut nodes {
        if let Some(view) = node.view.as_mut() {
            for entry in view.expected.iter_mut() {
                if let Some(task) = tasks.get(&entry.task_id) {
                    entry.node_id = task.node_id.clone();
                    entry.service_name = task.service_name.clone();
                    entry.task_name = task_name(task);
                }
            }
        }
    }
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(NetworkPeersReport { network_id, nodes })
}
