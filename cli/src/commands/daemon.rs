//! `mini daemon`: serve the control API on a root-only unix socket (or root and one group's,
//! with `--group`), keeping the state dir private to root.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use mini_manager::control::{ControlApi, DaemonConfig};
use mini_manager::manager::Fatal;
use mini_proto::v1::control_server::ControlServer;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;

use crate::client::socket_path;
use crate::commands::member::NodeServices;
use crate::commands::private;
use mini_worker::agent::{Worker, WorkerConfig};

/// Flags of `mini daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where the node keeps its identity and, as a manager, the Raft log.
    #[arg(long, default_value = "/var/lib/mini")]
    state_dir: PathBuf,
    /// Where runtime files go (namespaces under RUN/netns).
    #[arg(long, default_value = "/run/mini")]
    run_dir: PathBuf,
    /// Hostname this node reports (default: the system's).
    #[arg(long)]
    hostname: Option<String>,
    /// Raft log entries between snapshots.
    #[arg(long, default_value_t = 1000)]
    snapshot_interval: u64,
    /// Heartbeat period of worker sessions, in milliseconds (a node is down
    /// after 3 missed heartbeats).
    #[arg(long, default_value_t = 500)]
    heartbeat_period_ms: u64,
    /// UDP port of the node's gossip (SWIM) socket, on its advertise address.
    #[arg(long, default_value_t = 7946)]
    gossip_port: u16,
    /// Seconds a stopping task gets between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 10)]
    stop_grace_period: u64,
    /// Log filter (tracing's env-filter syntax; RUST_LOG overrides).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Group that may use the control socket besides root (as Docker's `docker` group):
    /// the socket is then root:GROUP 0660 instead of root-only 0600.
    #[arg(long, short = 'G')]
    group: Option<String>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(host: &str, args: DaemonArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .context("invalid --log-level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    // Everything the daemon creates is private unless it says otherwise: the state dir holds
    // the join-token secrets and the Raft log.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let group = args.group.as_deref().map(socket_group).transpose()?;
    let socket = socket_path(host)?;
    private::make_private(&args.state_dir)?;
    // The run dir and the socket's directory stay searchable: the socket's own mode decides
    // who may connect, and `nsenter --net=RUN/netns/...` works as in Docker.
    for dir in [Some(args.run_dir.as_path()), socket.parent()]
        .into_iter()
        .flatten()
    {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
        }
    }
    let hostname = match args.hostname {
        Some(h) => h,
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let listener = bind(&socket, group.as_ref()).await?;

    let trust = mini_proto::tls::Trust::new(&args.state_dir);
    let worker = Worker::new(WorkerConfig {
        run_dir: args.run_dir.clone(),
        self_exe: std::env::current_exe().context("cannot find the mini binary")?,
        stop_grace: Duration::from_secs(args.stop_grace_period),
        trust: trust.clone(),
    });
    let fatal = Fatal::default();
    let api = ControlApi::open(
        DaemonConfig {
            state_dir: args.state_dir.clone(),
            hostname,
            snapshot_interval: args.snapshot_interval,
            heartbeat_period: Duration::from_millis(args.heartbeat_period_ms.max(50)),
            gossip_port: args.gossip_port,
            trust: trust.clone(),
            fatal: fatal.clone(),
        },
        Arc::new(NodeServices::new(worker, trust)),
    )
    .await?;
    tracing::info!(socket = %socket.display(), node_id = %api.node_id(), "mini daemon serving");

    let shutdown = async {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("shutting down"),
            _ = int.recv() => tracing::info!("shutting down"),
            reason = fatal.wait() => tracing::error!(%reason, "shutting down: the manager cannot go on"),
        }
    };
    let served = tonic::transport::Server::builder()
        .add_service(
            ControlServer::new(api.clone()).max_decoding_message_size(mini_proto::MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    if let Some(reason) = fatal.reason() {
        // The Raft loop is gone: a clean shutdown may wait on it, so it gets a deadline.
        let stopped = tokio::time::timeout(Duration::from_secs(15), api.shutdown()).await;
        let _ = std::fs::remove_file(&socket);
        if stopped.is_err() {
            tracing::warn!("shutdown did not finish within 15 s");
        }
        bail!("{reason}; the daemon exits so that its service manager (systemd) restarts it");
    }
    api.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    served.context("control API server failed")?;
    Ok(())
}

/// The group `--group` names, which must exist.
fn socket_group(name: &str) -> Result<nix::unistd::Group> {
    nix::unistd::Group::from_name(name)
        .with_context(|| format!("cannot look up group {name}"))?
        .with_context(|| {
            format!("group {name} does not exist: create it (groupadd {name}) or leave out --group")
        })
}

/// Binds the socket, removing a stale file left by a daemon that died, but
/// refusing to steal the socket of a daemon that is still serving.
async fn bind(
    socket: &std::path::Path,
    group: Option<&nix::unistd::Group>,
) -> Result<UnixListener> {
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            bail!(
                "another mini daemon is already serving on {}",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("cannot remove stale {}", socket.display()))?;
    }
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    // Made 0600 by the umask; opened to the group only once its owner is set.
    if let Some(group) = group {
        nix::unistd::chown(socket, Some(nix::unistd::Uid::from_raw(0)), Some(group.gid))
            .with_context(|| format!("cannot give {} to group {}", socket.display(), group.name))?;
    }
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", socket.display()))?;
    Ok(listener)
}
