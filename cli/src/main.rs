//! `mini`: one binary with Docker's verbs. `mini daemon` runs a node; every
//! other command is a client of a daemon's control API on its unix socket.
//!
//! # Layout
//! - `commands/`: one module per verb group (daemon, swarm, network, service, node).
//! - `client`: dialing the daemon's socket.
//! - `views`: the JSON shapes and table cells of each object.
//! - `output`: tables, JSON and "x minutes ago".

mod client;
mod commands;
mod metrics;
mod output;
mod views;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Docker-Swarm-mode-style container orchestrator.
#[derive(Debug, Parser)]
#[command(name = "mini", version, about, propagate_version = true)]
struct Cli {
    /// Daemon socket to talk to (or serve on, for `mini daemon`).
    #[arg(long, global = true, env = "MINI_HOST", default_value = client::DEFAULT_HOST)]
    host: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: serve the control API, and become a manager after `swarm init`.
    Daemon(commands::daemon::DaemonArgs),
    /// Manage the swarm (init).
    #[command(subcommand)]
    Swarm(commands::swarm::SwarmCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// Manage services.
    #[command(subcommand)]
    Service(commands::service::ServiceCommand),
    /// Manage stacks (services and networks from compose files).
    #[command(subcommand)]
    Stack(commands::stack::StackCommand),
    /// Manage nodes.
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// Manage swarm secrets.
    #[command(subcommand)]
    Secret(commands::secret::ObjectCommand),
    /// Manage swarm configs.
    #[command(subcommand)]
    Config(commands::secret::ObjectCommand),
    /// Manage images.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Log in to a registry.
    Login(commands::image::LoginArgs),
    /// Log out from a registry.
    Logout(commands::image::LogoutArgs),
    /// Run a command inside a running task's namespaces.
    Exec(commands::exec::ExecArgs),
    /// Show what the daemon is: node id, cluster, Raft log position.
    Info {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: output::Format,
    },
}

fn main() -> ExitCode {
    // A task's first process: dispatched before clap and before any thread starts.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == mini_worker::runtime::INIT_SUBCOMMAND)
    {
        commands::task_init::run();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Daemon(args) => commands::daemon::run(&cli.host, args).await,
            Command::Swarm(cmd) => commands::swarm::run(&cli.host, cmd).await,
            Command::Network(cmd) => commands::network::run(&cli.host, cmd).await,
            Command::Service(cmd) => commands::service::run(&cli.host, cmd).await,
            Command::Stack(cmd) => commands::stack::run(&cli.host, cmd).await,
            Command::Node(cmd) => commands::node::run(&cli.host, cmd).await,
            Command::Secret(cmd) => {
                commands::secret::run(&cli.host, commands::secret::Kind::Secret, cmd).await
            }
            Command::Config(cmd) => {
                commands::secret::run(&cli.host, commands::secret::Kind::Config, cmd).await
            }
            Command::Image(cmd) => commands::image::run(&cli.host, cmd).await,
            Command::Login(args) => commands::image::login(&cli.host, args).await,
            Command::Logout(args) => commands::image::logout(args),
            Command::Exec(args) => commands::exec::run(&cli.host, args).await,
            Command::Info { format } => commands::info::run(&cli.host, format).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", commands::describe(&err));
            ExitCode::FAILURE
        }
    }
}
