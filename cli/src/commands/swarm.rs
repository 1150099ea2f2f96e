//! `mini swarm init`.

use anyhow::Result;
use clap::Subcommand;
use mini_proto::v1::SwarmInitRequest;

use crate::client::connect;

/// Swarm subcommands.
#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Make this daemon the first manager of a new swarm.
    Init {
        /// Address other nodes reach this one at (an IPv4 address of this host).
        #[arg(long)]
        advertise_addr: String,
        /// Pool from which overlay subnets are taken.
        #[arg(long, default_value = "10.0.0.0/8")]
        default_addr_pool: String,
        /// Prefix length of the subnets taken from the pool.
        #[arg(long, default_value_t = 24)]
        default_addr_pool_mask_length: u32,
        /// UDP port of the VXLAN data path.
        #[arg(long, default_value_t = 4789)]
        data_path_port: u32,
    },
}

/// Runs a swarm subcommand against the daemon at `host`.
pub async fn run(host: &str, cmd: SwarmCommand) -> Result<()> {
    let mut client = connect(host).await?;
    match cmd {
        SwarmCommand::Init {
            advertise_addr,
            default_addr_pool,
            default_addr_pool_mask_length,
            data_path_port,
        } => {
            let response = client
                .swarm_init(SwarmInitRequest {
                    advertise_addr,
                    default_addr_pool,
                    default_subnet_size: default_addr_pool_mask_length,
                    data_path_port,
                    hostname: String::new(),
                })
                .await?
                .into_inner();
            println!(
                "Swarm initialized: current node ({}) is now a manager.",
                response.node_id
            );
        }
    }
    Ok(())
}
