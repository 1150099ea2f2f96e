//! `mini`: one binary with Docker's verbs. `mini daemon` runs a node; every
//! other command is a client of a daemon's control API on its unix socket.
//!
//! # Layout
//! - `commands/`: one module per verb group (daemon, swarm, network, service, node).
//! - `client`: dialing the daemon's socket.
//! - `views`: the JSON shapes and table cells of each object.
//! - `output`: tables, JSON and "x minutes ago".
//! - `format`, `template`, `rows`: Docker's `-q`, `--filter`, `--format` (Go templates) and
//!   `--no-trunc` of every `ls`/`ps`, over one row model per object kind.

mod client;
mod commands;
mod format;
mod metrics;
mod output;
mod progress;
mod rows;
mod template;
mod unsupported;
mod views;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// A Docker-Swarm-mode-style container orchestrator.
#[derive(Debug, Parser)]
#[command(name = "mini", version, about, propagate_version = true)]
struct Cli {
    /// Daemon socket to talk to (or serve on, for `mini daemon`) [env: MINI_HOST]
    /// [default: unix:///run/mini/mini.sock].
    // Read from the environment by hand: with clap's `env`, usage lines would list a `--host`
    // the user never typed.
    #[arg(long, global = true, value_name = "HOST")]
    host: Option<String>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// `--host`, else `MINI_HOST`, else the default socket.
    fn host(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("MINI_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| client::DEFAULT_HOST.to_string())
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: serve the control API, and become a manager after `swarm init`.
    Daemon(commands::daemon::DaemonArgs),
    /// Manage the swarm: init, join, join-token, leave, update, ca, unlock, unlock-key.
    #[command(subcommand)]
    Swarm(commands::swarm::SwarmCommand),
    /// Manage networks: create, ls, inspect, rm.
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// Manage services: create, ls, ps, inspect, logs, scale, update, rollback, rm.
    #[command(subcommand)]
    Service(commands::service::ServiceCommand),
    /// Manage stacks (services, networks, secrets and configs from compose files): deploy, ls,
    /// services, ps, rm.
    #[command(subcommand)]
    Stack(commands::stack::StackCommand),
    /// Manage nodes: ls, ps, inspect, update, promote, demote, rm.
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// Manage swarm secrets: create, ls, inspect, rm.
    #[command(subcommand)]
    Secret(commands::secret::ObjectCommand),
    /// Manage swarm configs: create, ls, inspect, rm.
    #[command(subcommand)]
    Config(commands::secret::ObjectCommand),
    /// Manage images: pull, ls, inspect, load, save, rm, prune.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Log in to a registry.
    Login(commands::image::LoginArgs),
    /// Log out from a registry.
    Logout(commands::image::LogoutArgs),
    /// Return low-level information on swarm objects (services, networks, nodes, secrets,
    /// configs, tasks).
    Inspect(commands::inspect::InspectArgs),
    /// Run a command inside a running task's namespaces.
    Exec(commands::exec::ExecArgs),
    /// Get real time events from the swarm (services, nodes, networks, secrets, configs,
    /// tasks).
    Events(commands::events::EventsArgs),
    /// Show what the daemon is: node id, cluster, Raft log position.
    Info {
        /// Format output: 'json', or a Go template over the JSON ('{{.node_id}}').
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Show the client's and the daemon's version.
    Version {
        /// Output format: `json` prints one JSON object.
        #[arg(short, long, value_parser = ["json"])]
        format: Option<String>,
    },
    /// Print a shell completion script (bash, zsh or fish).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: commands::docs::Shell,
    },
    /// Write the man pages (mini.1, mini-service-create.1, ...) into a directory.
    #[command(hide = true)]
    ManPages {
        /// Where to write them.
        dir: std::path::PathBuf,
    },
}

/// Parses the command line; a Docker flag `mini` does not implement is named as such.
fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            if err.kind() == clap::error::ErrorKind::UnknownArgument
                && let Some(clap::error::ContextValue::String(bad)) =
                    err.get(clap::error::ContextKind::InvalidArg)
            {
                let args: Vec<String> = std::env::args().skip(1).collect();
                if let Some(refusal) = unsupported::refusal(&Cli::command(), &args, bad) {
                    eprintln!("error: {refusal}");
                    std::process::exit(2);
                }
            }
            err.exit()
        }
    }
}

/// A client writing into a closed pipe (`mini service logs -f web | head -1`) ends quietly by
/// SIGPIPE, as other Unix tools (and Docker's CLI) do; Rust ignores SIGPIPE by default, which
/// turns every later `println!` into a panic. The daemon keeps ignoring it (its sockets report
/// EPIPE as an error).
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: restores the default disposition before any thread is started; no handler runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Two glibc malloc arenas for the daemon, instead of one per thread up to 8 per core: the
/// async runtime's, Raft's and the blocking pool's threads each kept an arena of their own
/// half empty. A 50-node manager after 2,000 tasks held 96–101 MiB, 84 MiB with two arenas, at
/// the same speed (BENCHMARKS.md, "#16 fifty hosts", session 12). A `MALLOC_ARENA_MAX` set in
/// the environment is left as it is.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before the daemon
        // starts any thread (the async runtime is built after this), with a valid option.
        unsafe {
            nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    // A task's first process: dispatched before clap and before any thread starts.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == mini_worker::runtime::INIT_SUBCOMMAND)
    {
        commands::task_init::run();
    }
    let cli = parse();
    if matches!(cli.command, Command::Daemon(_)) {
        limit_malloc_arenas();
    } else {
        default_sigpipe();
    }
    mini_manager::control::set_engine_version(commands::version::this_binary());
    let host = cli.host();
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
            Command::Daemon(args) => commands::daemon::run(&host, args).await,
            Command::Swarm(cmd) => commands::swarm::run(&host, cmd).await,
            Command::Network(cmd) => commands::network::run(&host, cmd).await,
            Command::Service(cmd) => commands::service::run(&host, cmd).await,
            Command::Stack(cmd) => commands::stack::run(&host, cmd).await,
            Command::Node(cmd) => commands::node::run(&host, cmd).await,
            Command::Secret(cmd) => {
                commands::secret::run(&host, commands::secret::Kind::Secret, cmd).await
            }
            Command::Config(cmd) => {
                commands::secret::run(&host, commands::secret::Kind::Config, cmd).await
            }
            Command::Image(cmd) => commands::image::run(&host, cmd).await,
            Command::Login(args) => commands::image::login(&host, args).await,
            Command::Logout(args) => commands::image::logout(args),
            Command::Inspect(args) => commands::inspect::run(&host, args).await,
            Command::Exec(args) => commands::exec::run(&host, args).await,
            Command::Events(args) => commands::events::run(&host, args).await,
            Command::Info { format } => commands::info::run(&host, format).await,
            Command::Version { format } => commands::version::run(&host, format.is_some()).await,
            Command::Completion { shell } => {
                commands::docs::completion(Cli::command(), shell);
                Ok(())
            }
            Command::ManPages { dir } => commands::docs::man_pages(Cli::command(), &dir).map(|n| {
                println!("{n} man pages written to {}", dir.display());
            }),
        }
    });
    // Work still running (a stuck task) gets a moment, then the process exits without it:
    // dropping the runtime would wait for it without end.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(verbatim) = err.downcast_ref::<format::Verbatim>() {
                // Docker's own wording ("Error response from daemon: Invalid filter 'x'").
                eprintln!("{verbatim}");
                return ExitCode::FAILURE;
            }
            eprintln!("error: {}", commands::describe(&err));
            ExitCode::FAILURE
        }
    }
}
