//! `mini swarm init | join-token | join | leave | update | ca | unlock-key | unlock`.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use mini_proto::tls::pki;
use mini_proto::v1::{
    InfoRequest, JoinTokenRequest, SwarmCaRequest, SwarmInitRequest, SwarmJoinRequest,
    SwarmLeaveRequest, SwarmUnlockKeyRequest, SwarmUnlockRequest, SwarmUpdateRequest,
};

use mini_proto::v1::control_client::ControlClient;
use tonic::transport::Channel;

use crate::client::connect;

/// Swarm subcommands.
#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Make this daemon the first manager of a new swarm.
    Init {
        /// Address other nodes reach this one at: an IPv4 address or an interface name
        /// (default: the host's only non-loopback IPv4 address).
        #[arg(long, default_value = "")]
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
        /// Address the node's listener binds (IP:PORT).
        #[arg(long, default_value = "0.0.0.0:2377")]
        listen_addr: String,
        /// Enable manager autolocking (requiring an unlock key to start a stopped manager).
        #[arg(long)]
        autolock: bool,
    },
    /// Print the token a node uses to join as a worker or a manager.
    JoinToken {
        /// worker or manager.
        #[arg(value_parser = ["worker", "manager"])]
        role: String,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
        /// Make a new token (the old one stops working).
        #[arg(long)]
        rotate: bool,
    },
    /// Join this node to a swarm.
    Join {
        /// Join token from `mini swarm join-token`.
        #[arg(long)]
        token: String,
        /// Address other nodes reach this one at: an IPv4 address or an interface name
        /// (default: this host's address on the route to the manager).
        #[arg(long, default_value = "")]
        advertise_addr: String,
        /// Address the node's listener binds (IP:PORT).
        #[arg(long, default_value = "0.0.0.0:2377")]
        listen_addr: String,
        /// A manager's address, IP:PORT (port 2377 when omitted).
        remote: String,
    },
    /// Leave the swarm.
    Leave {
        /// Leave even if this node is a manager.
        #[arg(short, long)]
        force: bool,
    },
    /// Update the swarm's settings.
    Update {
        /// Validity period for node certificates, e.g. 720h, 2160h (default 90 days; at least
        /// 1h).
        #[arg(long, value_parser = super::service_flags::parse_duration_ms)]
        cert_expiry: Option<u64>,
        /// Change manager autolocking setting (true|false).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        autolock: Option<bool>,
    },
    /// Manage the unlock key.
    UnlockKey {
        /// Only display the key.
        #[arg(short, long)]
        quiet: bool,
        /// Rotate the unlock key.
        #[arg(long)]
        rotate: bool,
    },
    /// Unlock a swarm manager (the key is read from standard input).
    Unlock,
    /// Display and rotate the root CA.
    Ca {
        /// Rotate the swarm CA: a new root, every node gets a certificate of it, then
        /// certificates of the old root are refused and join tokens change.
        #[arg(long)]
        rotate: bool,
        /// Exit immediately instead of waiting for the rotation to finish.
        #[arg(short, long)]
        detach: bool,
        /// Suppress progress output.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// The digest Docker prints for a root: `sha256:<hex>`.
fn root_digest(der: &[u8]) -> String {
    let hex: String = pki::ca_digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Docker's words around an unlock key.
fn print_unlock_key(key: &str) {
    println!("To unlock a swarm manager after it restarts, run the `mini swarm unlock`");
    println!("command and provide the following key:");
    println!();
    println!("    {key}");
    println!();
    println!("Please remember to store this key in a password manager, since without it you");
    println!("will not be able to restart the manager.");
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
            listen_addr,
            autolock,
        } => {
            init(
                &mut client,
                SwarmInitRequest {
                    advertise_addr,
                    default_addr_pool,
                    default_subnet_size: default_addr_pool_mask_length,
                    data_path_port,
                    hostname: String::new(),
                    listen_addr,
                    autolock,
                },
            )
            .await?;
        }
        SwarmCommand::JoinToken {
            role,
            quiet,
            rotate,
        } => {
            let token = client
                .join_token(JoinTokenRequest {
                    role: role.clone(),
                    rotate,
                })
                .await?
                .into_inner();
            if quiet {
                println!("{}", token.token);
            } else {
                println!("To add a {role} to this swarm, run the following command:");
                println!();
                println!(
                    "    mini swarm join --token {} {}",
                    token.token, token.manager_addr
                );
            }
        }
        SwarmCommand::Join {
            token,
            advertise_addr,
            listen_addr,
            remote,
        } => {
            let joined = client
                .swarm_join(SwarmJoinRequest {
                    token,
                    remote_addr: remote,
                    advertise_addr,
                    listen_addr,
                })
                .await?
                .into_inner();
            let role = match joined.role() {
                mini_proto::v1::NodeRole::Manager => "manager",
                _ => "worker",
            };
            println!("This node joined a swarm as a {role}.");
        }
        SwarmCommand::Leave { force } => {
            client.swarm_leave(SwarmLeaveRequest { force }).await?;
            println!("Node left the swarm.");
        }
        SwarmCommand::Update {
            cert_expiry,
            autolock,
        } => {
            if cert_expiry.is_none() && autolock.is_none() {
                anyhow::bail!(
                    "nothing to update: give a setting such as --cert-expiry 720h or --autolock=true"
                );
            }
            let before = client.info(InfoRequest {}).await?.into_inner();
            let was_locked = before.cluster.is_some_and(|c| c.autolock);
            client
                .swarm_update(SwarmUpdateRequest {
                    node_cert_expiry_ms: cert_expiry,
                    autolock,
                })
                .await?;
            println!("Swarm updated.");
            if autolock == Some(true) && !was_locked {
                let key = client
                    .swarm_unlock_key(SwarmUnlockKeyRequest { rotate: false })
                    .await?
                    .into_inner();
                print_unlock_key(&key.unlock_key);
            }
        }
        SwarmCommand::UnlockKey { quiet, rotate } => {
            let key = client
                .swarm_unlock_key(SwarmUnlockKeyRequest { rotate })
                .await?
                .into_inner();
            if key.unlock_key.is_empty() {
                anyhow::bail!("no unlock key is set");
            }
            if quiet {
                println!("{}", key.unlock_key);
            } else {
                if rotate {
                    println!("Successfully rotated manager unlock key.");
                    println!();
                }
                print_unlock_key(&key.unlock_key);
            }
        }
        SwarmCommand::Unlock => {
            use std::io::IsTerminal as _;
            if std::io::stdin().is_terminal() {
                eprint!("Please enter unlock key: ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            client
                .swarm_unlock(SwarmUnlockRequest {
                    unlock_key: line.trim().to_string(),
                })
                .await?;
        }
        SwarmCommand::Ca {
            rotate,
            detach,
            quiet,
        } => {
            ca(&mut client, rotate, detach, quiet).await?;
        }
    }
    Ok(())
}

/// `swarm init`: the first manager, then how to add workers and managers.
async fn init(client: &mut ControlClient<Channel>, request: SwarmInitRequest) -> Result<()> {
    let response = client.swarm_init(request).await?.into_inner();
    println!(
        "Swarm initialized: current node ({}) is now a manager.",
        response.node_id
    );
    let token = client
        .join_token(JoinTokenRequest {
            role: "worker".into(),
            rotate: false,
        })
        .await?
        .into_inner();
    println!();
    println!("To add a worker to this swarm, run the following command:");
    println!();
    println!(
        "    mini swarm join --token {} {}",
        token.token, token.manager_addr
    );
    println!();
    println!(
        "To add a manager to this swarm, run 'mini swarm join-token manager' and follow the instructions."
    );
    if !response.unlock_key.is_empty() {
        println!();
        print_unlock_key(&response.unlock_key);
    }
    Ok(())
}

/// `swarm ca`: prints the root CA; with `--rotate`, starts a rotation and follows it until
/// every node has rotated (unless `--detach`).
async fn ca(
    client: &mut ControlClient<Channel>,
    rotate: bool,
    detach: bool,
    quiet: bool,
) -> Result<()> {
    let first = client
        .swarm_ca(SwarmCaRequest { rotate })
        .await?
        .into_inner();
    if !rotate || detach {
        if !first.rotating_to.is_empty() && !quiet {
            eprintln!(
                "Root CA rotation in progress: {} out of {} nodes have rotated their certificates",
                first.rotated_nodes, first.total_nodes
            );
        }
        print!("{}", pki::certificate_pem(&first.root_ca));
        return Ok(());
    }
    // The root rotated to: done once it is the cluster's root.
    let target = if first.rotating_to.is_empty() {
        first.root_ca.clone()
    } else {
        first.rotating_to.clone()
    };
    if !quiet {
        println!("desired root digest: {}", root_digest(&target));
    }
    let mut last = None;
    let mut status = first;
    loop {
        let progress = (status.rotated_nodes, status.total_nodes);
        let done = status.root_ca == target && status.rotating_to.is_empty();
        if !quiet && (last != Some(progress) || done) {
            let (n, m) = if done {
                (progress.1, progress.1)
            } else {
                progress
            };
            println!("Progress: {n} out of {m} nodes have rotated their certificates");
            last = Some(progress);
        }
        if done {
            break;
        }
        if status.root_ca != target && status.rotating_to != target {
            anyhow::bail!(
                "the root CA rotation was replaced by another one (desired root digest {})",
                root_digest(&status.rotating_to)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        status = client
            .swarm_ca(SwarmCaRequest { rotate: false })
            .await?
            .into_inner();
    }
    print!("{}", pki::certificate_pem(&status.root_ca));
    Ok(())
}
