//! `mini node ls | ps | inspect | update | promote | demote | rm`.

use anyhow::Result;
use clap::Subcommand;
use mini_proto::v1::{
    GetRequest, InfoRequest, ListNodesRequest, ListTasksRequest, RemoveNodeRequest,
    UpdateNodeRequest,
};

use crate::client::connect;
use crate::format::{ListArgs, print_inspect, print_rows};
use crate::views::NodeView;

/// Node subcommands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// List tasks running on one or more nodes, defaults to the current node.
    Ps {
        /// Node hostnames or ids (`self`: this node).
        #[arg(default_value = "self")]
        nodes: Vec<String>,
        /// `-q`, `--filter`, `--format`, `--no-trunc`.
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show nodes in detail (JSON).
    Inspect {
        /// Print the information in a human friendly format.
        #[arg(long)]
        pretty: bool,
        /// Format output using a Go template ('{{.hostname}}'), or 'json'.
        #[arg(short, long)]
        format: Option<String>,
        /// Node hostnames or ids.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's availability or labels.
    Update {
        /// active, pause or drain.
        #[arg(long, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        /// Add or change a node label, KEY=VALUE or KEY (repeatable).
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        /// Remove a label (repeatable).
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        /// With `--availability drain`: exit immediately instead of waiting until the node's
        /// tasks moved off it.
        #[arg(short, long)]
        detach: bool,
        /// Node hostname or id.
        node: String,
    },
    /// Make workers managers (they join the Raft group).
    Promote {
        /// Node hostnames or ids.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers (they leave the Raft group; the last manager cannot).
    Demote {
        /// Node hostnames or ids.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the swarm.
    #[command(alias = "remove")]
    Rm {
        /// Remove even if the node is not down.
        #[arg(short, long)]
        force: bool,
        /// Node hostnames or ids.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

/// Runs a node subcommand against the daemon at `host`.
pub async fn run(host: &str, cmd: NodeCommand) -> Result<()> {
    let mut client = connect(host).await?;
    let info = client.info(InfoRequest {}).await?.into_inner();
    let is_leader = |id: &str| info.is_manager && id == info.leader_node_id;
    let unreachable = |id: &str| info.unreachable_managers.iter().any(|u| u == id);
    match cmd {
        NodeCommand::Ls(list) => {
            let filters = crate::rows::node_filters(&list.filter)?;
            let nodes = client
                .list_nodes(ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            if info.reachability_local {
                eprintln!(
                    "warning: no Raft leader answered; MANAGER STATUS is this manager's own view"
                );
            }
            let leader = if info.is_manager {
                info.leader_node_id.as_str()
            } else {
                ""
            };
            let listing = crate::rows::node_listing(
                &nodes,
                &filters,
                &info.node_id,
                leader,
                &info.unreachable_managers,
            );
            print_rows(&listing, &list)?;
        }
        NodeCommand::Ps { nodes, list } => {
            let filters = crate::rows::task_filters(&list.filter)?;
            let mut ids = Vec::new();
            for name_or_id in nodes {
                let name_or_id = if name_or_id == "self" {
                    info.node_id.clone()
                } else {
                    name_or_id
                };
                ids.push(
                    client
                        .get_node(GetRequest { name_or_id })
                        .await?
                        .into_inner()
                        .id,
                );
            }
            let names = super::service::names(&mut client).await?;
            let tasks: Vec<_> = client
                .list_tasks(ListTasksRequest {
                    service: String::new(),
                })
                .await?
                .into_inner()
                .tasks
                .into_iter()
                .filter(|t| ids.contains(&t.node_id))
                .collect();
            super::service::print_tasks(&mut client, tasks, &names, &filters, &list).await?;
        }
        NodeCommand::Inspect {
            pretty,
            format,
            nodes,
        } => {
            let mut views = Vec::new();
            let mut texts = Vec::new();
            for name_or_id in nodes {
                let name_or_id = if name_or_id == "self" {
                    info.node_id.clone()
                } else {
                    name_or_id
                };
                let n = client
                    .get_node(GetRequest { name_or_id })
                    .await?
                    .into_inner();
                texts.push(pretty_node(&n, is_leader(&n.id), unreachable(&n.id)));
                views.push(NodeView::new(&n, is_leader(&n.id), unreachable(&n.id)));
            }
            if pretty && format.is_none() {
                print!("{}", texts.join("\n"));
            } else {
                print_inspect(&views, format.as_deref())?;
            }
        }
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            detach,
            node,
        } => {
            let mut labels = std::collections::HashMap::new();
            for kv in label_add {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                if k.is_empty() {
                    anyhow::bail!("invalid --label-add {kv:?}: expected KEY=VALUE");
                }
                labels.insert(k.to_string(), v.to_string());
            }
            let drain = availability.as_deref() == Some("drain");
            let updated = client
                .update_node(UpdateNodeRequest {
                    name_or_id: node.clone(),
                    availability: availability.unwrap_or_default(),
                    label_add: labels,
                    label_rm,
                    role: String::new(),
                    // The manager applies the changes to the node as it is when it writes
                    // (decided again when another writer got there first): no version pinned.
                    version: 0,
                })
                .await?
                .into_inner();
            println!("{node}");
            if drain && !detach {
                crate::progress::drain(&mut client, &updated.id).await?;
            }
        }
        NodeCommand::Promote { nodes } => set_role(&mut client, nodes, "manager").await?,
        NodeCommand::Demote { nodes } => set_role(&mut client, nodes, "worker").await?,
        NodeCommand::Rm { force, nodes } => {
            for name_or_id in nodes {
                client
                    .remove_node(RemoveNodeRequest {
                        name_or_id: name_or_id.clone(),
                        force,
                    })
                    .await?;
                println!("{name_or_id}");
            }
        }
    }
    Ok(())
}

/// `node inspect --pretty`: Docker's human-friendly layout.
fn pretty_node(n: &mini_proto::v1::Node, leader: bool, unreachable: bool) -> String {
    use std::fmt::Write;
    let view = serde_json::to_value(NodeView::new(n, leader, unreachable)).unwrap_or_default();
    let field = |k: &str| view[k].as_str().unwrap_or_default().to_string();
    let labels = |m: &serde_json::Value| -> Vec<String> {
        m.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| match v.as_str().unwrap_or_default() {
                        "" => format!(" - {k}"),
                        v => format!(" - {k}={v}"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    let _ = writeln!(out, "ID:\t\t\t{}", n.id);
    let node_labels = labels(&view["Spec"]["Labels"]);
    if !node_labels.is_empty() {
        let _ = writeln!(out, "Labels:\n{}", node_labels.join("\n"));
    }
    let _ = writeln!(out, "Hostname:\t\t{}", n.hostname);
    let _ = writeln!(out, "Status:");
    let _ = writeln!(
        out,
        " State:\t\t\t{}",
        crate::views::capitalize(&field("status"))
    );
    if !field("message").is_empty() {
        let _ = writeln!(out, " Message:\t\t{}", field("message"));
    }
    let _ = writeln!(
        out,
        " Availability:\t\t{}",
        crate::views::capitalize(&field("availability"))
    );
    if !field("address").is_empty() {
        let _ = writeln!(out, " Address:\t\t{}", field("address"));
    }
    if !field("manager_status").is_empty() {
        let _ = writeln!(out, "Manager Status:");
        let _ = writeln!(out, " Address:\t\t{}", n.agent_addr);
        let reach = if unreachable {
            "Unreachable"
        } else {
            "Reachable"
        };
        let _ = writeln!(out, " Raft Status:\t\t{reach}");
        let _ = writeln!(out, " Leader:\t\t{}", if leader { "Yes" } else { "No" });
    }
    let platform = &view["Description"]["Platform"];
    let _ = writeln!(out, "Platform:");
    let _ = writeln!(
        out,
        " Operating System:\t{}",
        platform["OS"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        " Architecture:\t\t{}",
        platform["Architecture"].as_str().unwrap_or_default()
    );
    let resources = n.resources.unwrap_or_default();
    let _ = writeln!(out, "Resources:");
    let _ = writeln!(out, " CPUs:\t\t\t{}", resources.nano_cpus as f64 / 1e9);
    let _ = writeln!(
        out,
        " Memory:\t\t{:.4} GiB",
        resources.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let engine_labels = labels(&view["Description"]["Engine"]["Labels"]);
    if !engine_labels.is_empty() {
        let _ = writeln!(out, "Engine Labels:\n{}", engine_labels.join("\n"));
    }
    if !field("certificate_expiry").is_empty() {
        let _ = writeln!(out, "TLS Info:");
        let _ = writeln!(out, " Certificate Expiry:\t{}", field("certificate_expiry"));
    }
    out
}

/// `node promote` / `node demote`: one role change per node, in order.
async fn set_role(
    client: &mut mini_proto::v1::control_client::ControlClient<tonic::transport::Channel>,
    nodes: Vec<String>,
    role: &str,
) -> Result<()> {
    for node in nodes {
        client
            .update_node(UpdateNodeRequest {
                name_or_id: node.clone(),
                role: role.to_string(),
                ..Default::default()
            })
            .await?;
        println!("Node {node} is now a {role}.");
    }
    Ok(())
}
