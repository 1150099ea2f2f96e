//! `mini inspect [--type TYPE] NAME|ID...`: Docker's low-level inspect of any swarm object
//! by name or id — a service, network, node, secret, config, or a task (by id or unique id
//! prefix, as `mini service ps -q` prints them). Each object is shown as its own `inspect`
//! command shows it.

use anyhow::Result;
use clap::Args;
use mini_proto::v1::{GetRequest, InfoRequest, ListTasksRequest, control_client::ControlClient};
use serde_json::Value;
use tonic::transport::Channel;

use crate::client::connect;
use crate::format::{Verbatim, print_inspect};
use crate::views::{NetworkView, NodeView, ServiceView, TaskView};

/// The object types, in the order a name is looked up (as Docker tries them).
const TYPES: &[&str] = &["service", "network", "node", "secret", "config", "task"];

/// Flags of `mini inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a Go template ('{{.current_state}}'), or 'json'.
    #[arg(short, long)]
    format: Option<String>,
    /// Only objects of this type.
    #[arg(long = "type", value_parser = ["config", "network", "node", "secret", "service", "task"])]
    kind: Option<String>,
    /// Names or ids.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Runs `mini inspect` against the daemon at `host`.
pub async fn run(host: &str, args: InspectArgs) -> Result<()> {
    let mut client = connect(host).await?;
    let names = super::service::names(&mut client).await?;
    let mut views = Vec::new();
    let mut tasks = None;
    for name in &args.names {
        let mut found = None;
        for kind in TYPES {
            if args.kind.as_deref().is_some_and(|k| k != *kind) {
                continue;
            }
            found = lookup(&mut client, kind, name, &names, &mut tasks).await?;
            if found.is_some() {
                break;
            }
        }
        match found {
            Some(view) => views.push(view),
            None => return Err(Verbatim(format!("Error: No such object: {name}")).into()),
        }
    }
    print_inspect(&views, args.format.as_deref())
}

/// The view of the `kind` object named `name`, `None` when there is none. `tasks` caches
/// the task list for several task lookups.
async fn lookup(
    client: &mut ControlClient<Channel>,
    kind: &str,
    name: &str,
    names: &crate::views::Names,
    tasks: &mut Option<Vec<mini_proto::v1::Task>>,
) -> Result<Option<Value>> {
    let request = || GetRequest {
        name_or_id: name.to_string(),
    };
    let not_found = |s: &tonic::Status| {
        matches!(
            s.code(),
            tonic::Code::NotFound | tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
        )
    };
    macro_rules! get {
        ($call:expr, $view:expr) => {
            match $call.await {
                Ok(reply) => Some(serde_json::to_value($view(reply.into_inner()))?),
                Err(status) if not_found(&status) => None,
                Err(status) => return Err(status.into()),
            }
        };
    }
    Ok(match kind {
        "service" => get!(client.get_service(request()), |s| ServiceView::new(
            &s, None, names
        )),
        "network" => get!(client.get_network(request()), |n| NetworkView::from(&n)),
        "node" => {
            let info = client.info(InfoRequest {}).await?.into_inner();
            let leader = info.leader_node_id.clone();
            let unreachable = info.unreachable_managers.clone();
            let name_or_id = if name == "self" {
                info.node_id.clone()
            } else {
                name.to_string()
            };
            get!(
                client.get_node(GetRequest { name_or_id }),
                |n: mini_proto::v1::Node| {
                    NodeView::new(
                        &n,
                        info.is_manager && n.id == leader,
                        unreachable.contains(&n.id),
                    )
                }
            )
        }
        "secret" => get!(client.get_secret(request()), super::secret::secret_view),
        "config" => get!(client.get_config(request()), super::secret::config_view),
        _ => {
            if tasks.is_none() {
                *tasks = Some(
                    client
                        .list_tasks(ListTasksRequest {
                            service: String::new(),
                        })
                        .await?
                        .into_inner()
                        .tasks,
                );
            }
            let all = tasks.as_deref().unwrap_or_default();
            let prefixed: Vec<&mini_proto::v1::Task> =
                all.iter().filter(|t| t.id.starts_with(name)).collect();
            let exact = all.iter().find(|t| t.id == name);
            match exact.or(if prefixed.len() == 1 {
                Some(prefixed[0])
            } else {
                None
            }) {
                Some(t) => Some(serde_json::to_value(TaskView::new(t, names))?),
                None if prefixed.is_empty() => None,
                None => {
                    return Err(Verbatim(format!(
                        "Error response from daemon: task {name} is ambiguous ({} matches found)",
                        prefixed.len()
                    ))
                    .into());
                }
            }
        }
    })
}
