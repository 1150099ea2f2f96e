//! `mini network create | ls | inspect | rm`.

use anyhow::Result;
use clap::Subcommand;
use mini_proto::v1::{CreateNetworkRequest, GetRequest, ListNetworksRequest, NetworkSpec};

use crate::client::connect;
use crate::output::{Format, print_json, print_table};
use crate::views::{NetworkView, network_name, short};

/// Network subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        /// Driver to manage the network.
        #[arg(short = 'd', long = "driver", default_value = "overlay")]
        driver: String,
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
        /// Network name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show networks in detail (JSON).
    Inspect {
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Network names or ids.
        #[arg(required = true)]
        networks: Vec<String>,
    },
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
            name,
        } => {
            let spec = NetworkSpec {
                name,
                driver,
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
            println!("{}", network.id);
        }
        NetworkCommand::Ls { format } => {
            let mut networks = client
                .list_networks(ListNetworksRequest {})
                .await?
                .into_inner()
                .networks;
            networks.sort_by(|a, b| network_name(a).cmp(network_name(b)));
            match format {
                Format::Json => {
                    print_json(&networks.iter().map(NetworkView::from).collect::<Vec<_>>())?
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = networks
                        .iter()
                        .map(|n| {
                            let spec = n.spec.clone().unwrap_or_default();
                            vec![
                                short(&n.id).to_string(),
                                spec.name,
                                spec.driver,
                                "swarm".into(),
                                n.subnet.clone(),
                            ]
                        })
                        .collect();
                    print_table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"], &rows);
                }
            }
        }
        NetworkCommand::Inspect { networks } => {
            let mut views = Vec::new();
            for name_or_id in networks {
                let n = client
                    .get_network(GetRequest { name_or_id })
                    .await?
                    .into_inner();
                views.push(NetworkView::from(&n));
            }
            print_json(&views)?;
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
