//! `mini network create | ls | inspect | rm`.

use anyhow::Result;
use clap::Subcommand;
use mini_proto::v1::{CreateNetworkRequest, GetRequest, ListNetworksRequest, NetworkSpec};

use crate::client::connect;
use crate::format::{ListArgs, print_inspect, print_rows};
use crate::output::print_table;
use crate::views::NetworkView;

/// Network subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        /// Driver to manage the network: overlay (swarm scope). Without it mini makes an
        /// overlay network and says so (Docker's default, bridge, is a local network mini does
        /// not make).
        #[arg(short = 'd', long = "driver")]
        driver: Option<String>,
        /// Subnet in CIDR form (default: the next free one from the cluster's pool).
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address (default: the first address of the subnet).
        #[arg(long)]
        gateway: Option<String>,
        /// Let standalone tasks attach.
        #[arg(long)]
        attachable: bool,
        /// No external connectivity.
        #[arg(long)]
        internal: bool,
        /// Driver options (Docker's `-o`); none is supported: `encrypted` needs IPsec, which
        /// this system lacks, and it is refused rather than ignored.
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opt: Vec<String>,
        /// Network name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show networks in detail (JSON).
    Inspect {
        /// Format output using a Go template ('{{.subnet}}'), or 'json'.
        #[arg(short, long)]
        format: Option<String>,
        /// Also show every node's peers table and what its kernel holds.
        #[arg(short, long)]
        verbose: bool,
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Check on every node that the kernel's VXLAN peers (neighbour and FDB
    /// entries) equal the network's live remote endpoints; exit 1 if not.
    Check {
        /// Network name or id.
        network: String,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

/// Why a driver option (`--opt`) is refused.
pub(super) fn refused_opt(opt: &str) -> String {
    let key = opt.split('=').next().unwrap_or(opt);
    if key == "encrypted" {
        "--opt encrypted is not supported: the overlay data path (VXLAN) cannot be encrypted \
         here (no IPsec in this kernel); traffic between nodes on TCP 2377 (mutual TLS) and \
         UDP 7946 (gossip) is encrypted regardless"
            .to_string()
    } else {
        format!("unknown network driver option {key:?}: the overlay driver takes no options")
    }
}

/// Runs a network subcommand against the daemon at `host`.
pub async fn run(host: &str, cmd: NetworkCommand) -> Result<()> {
    let mut client = connect(host).await?;
    match cmd {
        NetworkCommand::Create {
            driver,
            subnet,
            gateway,
            attachable,
            internal,
            opt,
            name,
        } => {
            if let Some(first) = opt.first() {
                anyhow::bail!("{}", refused_opt(first));
            }
            let named_driver = driver.is_some();
            let spec = NetworkSpec {
                name: name.clone(),
                driver: driver.unwrap_or_else(|| "overlay".into()),
                subnet: subnet.unwrap_or_default(),
                gateway: gateway.unwrap_or_default(),
                attachable,
                internal,
                ..Default::default()
            };
            let network = client
                .create_network(CreateNetworkRequest { spec: Some(spec) })
                .await?
                .into_inner();
            if !named_driver {
                eprintln!(
                    "{name}: an overlay network (scope swarm), mini's only driver; Docker's \
                     default without -d would be a local bridge. Say -d overlay to silence this."
                );
            }
            println!("{}", network.id);
        }
        NetworkCommand::Ls(list) => {
            let filters = crate::rows::network_filters(&list.filter)?;
            let networks = client
                .list_networks(ListNetworksRequest {})
                .await?
                .into_inner()
                .networks;
            print_rows(
                &crate::rows::network_listing(&networks, &filters, list.no_trunc),
                &list,
            )?;
        }
        NetworkCommand::Inspect {
            format,
            verbose,
            networks,
        } => {
            let mut views = Vec::new();
            for name_or_id in networks {
                let n = client
                    .get_network(GetRequest { name_or_id })
                    .await?
                    .into_inner();
                let mut view = serde_json::to_value(NetworkView::from(&n))?;
                if verbose {
                    let report = client
                        .network_peers(GetRequest {
                            name_or_id: n.id.clone(),
                        })
                        .await?
                        .into_inner();
                    view["peers"] = peers_json(&report);
                }
                views.push(view);
            }
            print_inspect(&views, format.as_deref())?;
        }
        NetworkCommand::Check { network } => {
            let report = client
                .network_peers(GetRequest {
                    name_or_id: network.clone(),
                })
                .await?
                .into_inner();
            let mut rows = Vec::new();
            let mut all_ok = true;
            for node in &report.nodes {
                let (state, expected, kernel) = match &node.view {
                    _ if !node.error.is_empty() => ("unreachable".to_string(), 0, 0),
                    Some(v) if !v.present => ("not here".to_string(), 0, 0),
                    Some(v) if v.consistent => ("ok".to_string(), v.expected.len(), v.kernel.len()),
                    Some(v) => ("MISMATCH".to_string(), v.expected.len(), v.kernel.len()),
                    None => ("unknown".to_string(), 0, 0),
                };
                all_ok &= matches!(state.as_str(), "ok" | "not here");
                let gossip = node.view.as_ref().and_then(|v| v.gossip);
                rows.push(vec![
                    node.hostname.clone(),
                    state,
                    expected.to_string(),
                    kernel.to_string(),
                    gossip.map_or("-".into(), |g| g.key_id.to_string()),
                    gossip.map_or("-".into(), |g| {
                        (g.dropped_unauthenticated + g.dropped_replayed).to_string()
                    }),
                    node.error.clone(),
                ]);
            }
            print_table(
                &[
                    "NODE",
                    "PEERS",
                    "EXPECTED",
                    "IN KERNEL",
                    "GOSSIP KEY",
                    "GOSSIP DROPPED",
                    "ERROR",
                ],
                &rows,
            );
            if !all_ok {
                anyhow::bail!(
                    "network {network}: the kernel's peers differ from the live endpoints on some node"
                );
            }
        }
        NetworkCommand::Rm { networks } => {
            for name_or_id in networks {
                client
                    .remove_network(GetRequest {
                        name_or_id: name_or_id.clone(),
                    })
                    .await?;
                println!("{name_or_id}");
            }
        }
    }
    Ok(())
}

/// Every node's view of a network's peers, as `inspect --verbose` shows it.
fn peers_json(report: &mini_proto::v1::NetworkPeersReport) -> serde_json::Value {
    let entry = |p: &mini_proto::v1::PeerEntry| {
        serde_json::json!({
            "ip": p.ip, "mac": p.mac, "vtep": p.vtep, "node_id": p.node_id, "task_id": p.task_id,
            "service": p.service_name, "task": p.task_name, "programmed": p.programmed,
        })
    };
    serde_json::Value::Array(
        report
            .nodes
            .iter()
            .map(|n| {
                let view = n.view.clone().unwrap_or_default();
                serde_json::json!({
                    "node_id": n.node_id,
                    "node": n.hostname,
                    "error": n.error,
                    "present": view.present,
                    "consistent": view.consistent,
                    "gossip": view.gossip.map(|g| serde_json::json!({
                        "key_id": g.key_id,
                        "packets_received": g.packets_received,
                        "dropped_unauthenticated": g.dropped_unauthenticated,
                        "dropped_replayed": g.dropped_replayed,
                    })),
                    "expected": view.expected.iter().map(entry).collect::<Vec<_>>(),
                    "kernel": view.kernel.iter().map(entry).collect::<Vec<_>>(),
                    "services": view
                        .services
                        .iter()
                        .map(|s| serde_json::json!({
                            "service_id": s.service_id,
                            "service": s.service_name,
                            "vip": s.vip,
                            "backends": s.backends,
                        }))
                        .collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod opt_tests {
    use super::refused_opt;

    #[test]
    fn encrypted_overlays_are_refused_with_the_reason() {
        assert!(refused_opt("encrypted").contains("no IPsec"));
        assert!(refused_opt("encrypted=true").contains("--opt encrypted is not supported"));
        assert!(refused_opt("com.docker.network.driver.mtu=1400").contains("unknown"));
    }
}
