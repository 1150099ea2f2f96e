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
use tracing::Instrument;

use crate::client::socket_path;
use crate::commands::member::NodeServices;
use crate::commands::private;
use mini_proto::v1::images_server::ImagesServer;
use mini_worker::agent::{Worker, WorkerConfig};
use mini_worker::image::service::{ImagePeers, ImagesService, PeerChannels};
use mini_worker::image::{ImageStore, RegistryOptions};

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
    /// Preferred Docker Hub mirror (`http://HOST:PORT` or `https://...`; repeatable).
    #[arg(long = "registry-mirror", value_name = "URL")]
    registry_mirrors: Vec<String>,
    /// Registry spoken to in plain HTTP (`HOST:PORT`; repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Time between two rotations of the cluster's gossip key while this node is the leading
    /// manager, e.g. `12h`, `30s`, `500ms` (tests; Docker rotates every 12 hours).
    #[arg(long, default_value = "12h", value_parser = parse_duration, hide = true)]
    gossip_key_rotation: Duration,
    /// Shortest node certificate lifetime `swarm update --cert-expiry` accepts while this node
    /// is a manager (tests; Docker's minimum is 1h).
    #[arg(long, default_value = "1h", value_parser = parse_duration, hide = true)]
    min_cert_expiry: Duration,
    /// Engine label KEY=VALUE or KEY (repeatable): reported to the managers, matched by
    /// `engine.labels.KEY` constraints.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    // Metrics and logs (issue #15).
    /// Serve Prometheus metrics over plain HTTP at http://ADDR/metrics (as dockerd's
    /// `--metrics-addr`, e.g. 127.0.0.1:9323). Off by default. Not authenticated (it holds no
    /// secrets): bind it to loopback or a trusted network.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Log level, as dockerd's. RUST_LOG, when set, takes precedence (tracing's env-filter
    /// syntax, e.g. `RUST_LOG=mini_manager=debug`).
    #[arg(long, short = 'l', value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Log format: `text` (human readable) or `json` (one JSON object per line, with the
    /// node, service and task ids of the span it comes from).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Group that may use the control socket besides root (as Docker's `docker` group):
    /// the socket is then root:GROUP 0660 instead of root-only 0600.
    #[arg(long, short = 'G')]
    group: Option<String>,
    /// Check what the node needs (kernel networking, overlayfs, runc), print one line per
    /// item, and exit: 0 when the daemon can run, 1 when something it cannot run without is
    /// missing. The same check runs at every start.
    #[arg(long)]
    check: bool,
}

/// `--log-level`: dockerd's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogLevel {
    /// Everything, debug details included.
    Debug,
    /// Normal operation (the default).
    Info,
    /// Only what may need attention.
    Warn,
    /// Only errors.
    Error,
    /// Only errors that stop the daemon (tracing has no fatal level: same as `error`).
    Fatal,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The tracing filter for a `--log-level`. At `debug`, the libraries underneath (HTTP/2, TLS,
/// the Raft log's store) stay at `info`: their debug output drowns the daemon's own.
fn level_filter(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => {
            "debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info,sled=info,reqwest=info"
        }
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Fatal => "error",
    }
}

/// Installs the log subscriber: RUST_LOG (when set and not empty) wins over `--log-level`.
fn init_logging(level: LogLevel, format: LogFormat) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&env)
            .with_context(|| format!("invalid RUST_LOG {env:?}"))?,
        _ => tracing_subscriber::EnvFilter::new(level_filter(level)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .with_writer(|| NodeIdWriter {
                inner: std::io::stderr(),
                first: true,
            })
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    Ok(())
}

/// This node's id, once the daemon knows it: every JSON log line carries it (work spawned on
/// other tasks does not inherit the daemon's root span, so a span alone would not say it).
static NODE_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Writes one JSON log line (the formatter writes each line in one `write_all` on a writer of
/// its own) with `"node_id":"…"` as its first field once [`NODE_ID`] is set.
struct NodeIdWriter<W> {
    inner: W,
    first: bool,
}

impl<W: std::io::Write> std::io::Write for NodeIdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let first = std::mem::replace(&mut self.first, false);
        match (first, NODE_ID.get(), buf.strip_prefix(b"{")) {
            (true, Some(id), Some(rest)) => {
                let mut line = Vec::with_capacity(buf.len() + id.len() + 16);
                line.extend_from_slice(b"{\"node_id\":");
                // An object id is [a-z0-9]: nothing to escape, but say it as JSON anyway.
                line.extend_from_slice(serde_json::to_string(id)?.as_bytes());
                if rest.first() != Some(&b'}') {
                    line.push(b',');
                }
                line.extend_from_slice(rest);
                self.inner.write_all(&line)?;
                Ok(buf.len())
            }
            _ => self.inner.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A duration such as `12h`, `90m`, `30s` or `500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 12h, 90m, 30s or 500ms");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d < Duration::from_millis(100) {
        return Err(format!("{text:?} is too short: at least 100ms"));
    }
    Ok(d)
}

/// How long the manager's shutdown (Raft loop stop, sled flush) may take before the daemon
/// exits without it.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(host: &str, args: DaemonArgs) -> Result<()> {
    use mini_worker::preflight::{Report, SystemProbe};
    if args.check {
        let report = tokio::task::spawn_blocking(|| Report::run(&SystemProbe)).await?;
        print!("{report}");
        if report.ok() {
            return Ok(());
        }
        std::process::exit(1);
    }
    init_logging(args.log_level, args.log_format)?;
    // What the node needs, checked before anything is changed: a missing kernel feature stops
    // the daemon with the line that names it; a missing runc or overlayfs only disables image
    // tasks.
    let report = tokio::task::spawn_blocking(|| Report::run(&SystemProbe)).await?;
    for line in report.missing() {
        tracing::warn!("{}", line.item.missing_line());
    }
    if !report.ok() {
        bail!(
            "this node lacks what the daemon needs (`mini daemon --check` shows all):\n{}",
            report.fatal_lines().join("\n")
        );
    }
    // The daemon's root span: its node id is recorded once known.
    let root = tracing::info_span!("daemon", node_id = tracing::field::Empty);
    serve(host, args).instrument(root).await
}

/// The daemon's work, in its root span.
async fn serve(host: &str, args: DaemonArgs) -> Result<()> {
    // Bound first: a taken port stops the daemon before it changes anything.
    let metrics = Arc::new(crate::metrics::NodeMetrics::new());
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };

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
        create_searchable(dir)?;
    }
    let hostname = match args.hostname.clone() {
        Some(h) => h,
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let listener = bind(&socket, group.as_ref()).await?;

    let images = ImageStore::open(
        args.state_dir.join("images"),
        RegistryOptions {
            mirrors: args.registry_mirrors.clone(),
            insecure_registries: args.insecure_registries.clone(),
        },
    )
    .context("cannot open the image store")?;
    let trust = mini_proto::tls::Trust::new(&args.state_dir);
    let worker = worker(&args, &trust, &metrics)?.with_images(images.clone());
    let fatal = Fatal::default();
    // The worker agent's own runtime (see `NodeServices::new`); shut down when `serve` ends.
    let agent_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("agent")
        .enable_all()
        .build()
        .context("cannot start the worker agent's runtime")?;
    let agent_handle = agent_runtime.handle().clone();
    let _agent_runtime = BackgroundRuntime(Some(agent_runtime));
    let api = ControlApi::open(
        DaemonConfig {
            state_dir: args.state_dir.clone(),
            hostname,
            snapshot_interval: args.snapshot_interval,
            heartbeat_period: Duration::from_millis(args.heartbeat_period_ms.max(50)),
            gossip_port: args.gossip_port,
            gossip_key_rotation: args.gossip_key_rotation,
            min_cert_expiry: args.min_cert_expiry,
            trust: trust.clone(),
            fatal: fatal.clone(),
            metrics: metrics.manager.clone(),
        },
        Arc::new(NodeServices::new(worker, trust.clone(), agent_handle)),
    )
    .await?;
    let _ = NODE_ID.set(api.node_id().to_string());
    tracing::Span::current().record("node_id", api.node_id());
    tracing::info!(socket = %socket.display(), node_id = %api.node_id(), "mini daemon serving");
    let metrics_server = metrics_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
        }
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()))
    });

    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let shutdown = stop_asked(fatal.clone(), stopping_tx);
    let server = tonic::transport::Server::builder()
        .add_service(
            ControlServer::new(api.clone()).max_decoding_message_size(mini_proto::MAX_MESSAGE),
        )
        .add_service(
            ImagesServer::new(ImagesService::new(
                images,
                Some(Arc::new(ClusterPeers(api.clone(), trust.clone()))),
            ))
            .max_decoding_message_size(mini_proto::MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown);
    // Calls in flight when the daemon stops (`service logs -f`, a waiting `service update`)
    // get a moment to end, then are cut: the daemon exits within 2 s of SIGTERM.
    let served = tokio::select! {
        served = server => served,
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(crate::commands::member::CALLS_PATIENCE).await;
        } => Ok(()),
    };
    let stopping_since = std::time::Instant::now();
    if let Some(server) = metrics_server {
        server.abort();
    }
    // The Raft loop flushes sled and ends within milliseconds; one that does not (gone after a
    // fatal error, or a bug) must not keep the daemon from exiting: what was acknowledged is
    // fsynced already.
    if tokio::time::timeout(SHUTDOWN_DEADLINE, api.shutdown())
        .await
        .is_err()
    {
        tracing::error!(
            deadline_s = SHUTDOWN_DEADLINE.as_secs(),
            "the manager did not stop within its deadline: exiting without it"
        );
    }
    let _ = std::fs::remove_file(&socket);
    if let Some(reason) = fatal.reason() {
        bail!("{reason}; the daemon exits so that its service manager (systemd) restarts it");
    }
    tracing::info!(
        took_ms = stopping_since.elapsed().as_millis() as u64,
        "daemon stopped"
    );
    served.context("control API server failed")?;
    Ok(())
}

/// The node's worker: its run and state dirs, its certificate, its labels.
fn worker(
    args: &DaemonArgs,
    trust: &mini_proto::tls::Trust,
    metrics: &crate::metrics::NodeMetrics,
) -> Result<Worker> {
    Ok(Worker::new(WorkerConfig {
        run_dir: args.run_dir.clone(),
        state_dir: args.state_dir.clone(),
        self_exe: std::env::current_exe().context("cannot find the mini binary")?,
        stop_grace: Duration::from_secs(args.stop_grace_period),
        node_key: Some(trust.key_path()),
        trust: trust.clone(),
        engine_labels: args.labels.iter().cloned().collect(),
        metrics: metrics.worker.clone(),
    }))
}

/// Creates `dir` and its missing parents, each 0755 (the daemon's umask says 0700).
fn create_searchable(dir: &std::path::Path) -> Result<()> {
    let missing: Vec<&std::path::Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for made in missing {
        std::fs::set_permissions(made, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", made.display()))?;
    }
    Ok(())
}

/// Returns on SIGTERM, SIGINT or a fatal manager error, after telling `stopping`.
async fn stop_asked(fatal: Fatal, stopping: tokio::sync::watch::Sender<bool>) {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("shutting down (tasks keep running)"),
        _ = int.recv() => tracing::info!("shutting down (tasks keep running)"),
        reason = fatal.wait() => tracing::error!(%reason, "shutting down: the manager cannot go on"),
    }
    let _ = stopping.send(true);
}

/// Owns a runtime and shuts it down without waiting for its tasks when dropped (dropping a
/// runtime inside another runtime's task would panic).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
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

/// The other nodes of the swarm, as this daemon's manager knows them
/// (`image load --all-nodes`).
struct ClusterPeers(ControlApi, mini_proto::tls::Trust);

impl ImagePeers for ClusterPeers {
    fn peers(&self) -> futures::future::BoxFuture<'_, Result<PeerChannels, String>> {
        Box::pin(async move {
            use mini_proto::v1::control_server::Control;
            let nodes = Control::list_nodes(
                &self.0,
                tonic::Request::new(mini_proto::v1::ListNodesRequest::default()),
            )
            .await
            .map_err(|s| format!("--all-nodes needs a swarm manager: {}", s.message()))?
            .into_inner()
            .nodes;
            let own = self.0.node_id().to_string();
            let mut out = Vec::new();
            for node in nodes.into_iter().filter(|n| n.id != own) {
                let name = if node.hostname.is_empty() {
                    node.id.clone()
                } else {
                    node.hostname.clone()
                };
                let channel = mini_manager::control::members::dial(
                    &self.1,
                    &node.agent_addr,
                    mini_proto::tls::Peer::Node(node.id.clone()),
                )
                .await
                .map_err(|e| e.to_string());
                out.push((name, channel));
            }
            Ok(out)
        })
    }
}

/// `--label KEY=VALUE` or `--label KEY` (empty value), as `dockerd --label`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("invalid label {s:?}: expected KEY=VALUE or KEY"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43200)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("12").unwrap_err().contains("not a duration"));
        assert!(parse_duration("h").is_err() && parse_duration("3d").is_err());
        assert!(parse_duration("10ms").unwrap_err().contains("too short"));
    }
}
