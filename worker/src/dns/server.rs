//! [`DnsServer`]: UDP and TCP sockets opened inside a sandbox's network namespace, served on
//! tokio tasks of the daemon.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use super::error::DnsError;
use super::forward::{self, read_frame, write_frame};
use super::message::{self, Action, Context};
use super::names::Names;
use super::zone::Zone;

/// The address of the embedded server in every sandbox (Docker's).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);
/// How long one upstream gets to answer a forwarded query before the next one is asked.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded UDP queries in flight per server; beyond it queries get SERVFAIL at once.
const MAX_FORWARDS: usize = 128;
/// Open TCP connections per server; beyond it new connections are closed.
const MAX_TCP_CONNECTIONS: usize = 32;
/// A TCP connection idle (or stuck writing) this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Receive buffer: larger datagrams are cut and then fail to parse (FORMERR).
const MAX_QUERY_LEN: usize = 4096;
/// Pause after a failed `recv`/`accept`, so a persistent error cannot spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Where and how one sandbox's server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The sandbox's network namespace file (`RUN/netns/<task>`); `None`: the caller's own.
    pub netns: Option<PathBuf>,
    /// UDP and TCP address to listen on inside the namespace ([`DEFAULT_LISTEN`]; port 0 picks
    /// one, the same for both).
    pub listen: SocketAddr,
    /// The overlay networks the sandbox's task is attached to: only their names resolve.
    pub networks: Vec<String>,
    /// The node's resolvers (see [`HostResolvConf`](super::HostResolvConf)), asked in order,
    /// from the daemon's namespace, for names that are not the cluster's.
    pub upstream: Vec<SocketAddr>,
    /// The name rules (cluster domain, search domains).
    pub zone: Zone,
    /// Time each upstream gets ([`DEFAULT_FORWARD_TIMEOUT`]).
    pub forward_timeout: Duration,
    /// Where queries and answers are counted by type (`None`: nowhere).
    pub metrics: Option<Arc<crate::metrics::DnsMetrics>>,
}

impl DnsConfig {
    /// A server at `127.0.0.11:53` in `netns`, for a task on `networks`; no upstream yet.
    pub fn new(netns: impl Into<PathBuf>, networks: Vec<String>) -> Self {
        DnsConfig {
            netns: Some(netns.into()),
            listen: DEFAULT_LISTEN,
            networks,
            upstream: Vec::new(),
            zone: Zone::new(),
            forward_timeout: DEFAULT_FORWARD_TIMEOUT,
            metrics: None,
        }
    }

    /// Counts queries and answers into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::DnsMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the upstream resolvers.
    pub fn with_upstream(mut self, upstream: Vec<SocketAddr>) -> Self {
        self.upstream = upstream;
        self
    }

    /// Sets the name rules.
    pub fn with_zone(mut self, zone: Zone) -> Self {
        self.zone = zone;
        self
    }
}

/// Counters of one server, for tests and `inspect`-style output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Packets (UDP datagrams or TCP messages) received.
    pub received: u64,
    /// Replies sent from the table (answers, NXDOMAIN, FORMERR, NOTIMP).
    pub local: u64,
    /// Queries an upstream answered.
    pub forwarded: u64,
    /// Forwarded queries no upstream answered in time, or shed under load (SERVFAIL).
    pub failed: u64,
    /// Packets dropped unanswered (too short, or not a query).
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    local: AtomicU64,
    forwarded: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the serving tasks share with the handle.
struct Shared {
    /// Swapped whole by `set_names`/`set_networks`; a query clones the `Arc` and never holds
    /// the lock while answering.
    view: RwLock<Arc<View>>,
    zone: Zone,
    upstream: Vec<SocketAddr>,
    forward_timeout: Duration,
    rotate: AtomicUsize,
    counters: Counters,
    metrics: Option<Arc<crate::metrics::DnsMetrics>>,
}

struct View {
    names: Arc<dyn Names>,
    networks: Vec<String>,
}

impl Shared {
    fn view(&self) -> Arc<View> {
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&View) -> View) {
        let mut guard = self
            .view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Arc::new(f(&guard));
    }

    fn handle(&self, packet: &[u8], tcp: bool) -> Action {
        bump(&self.counters.received);
        let view = self.view();
        let ctx = Context {
            names: view.names.as_ref(),
            networks: &view.networks,
            zone: &self.zone,
            rotate: self.rotate.fetch_add(1, Ordering::Relaxed),
        };
        let action = message::handle(packet, &ctx, tcp);
        if let Some(metrics) = &self.metrics {
            metrics.query(packet);
            if let Action::Reply(reply) = &action {
                metrics.reply(reply);
            }
        }
        match action {
            Action::Reply(_) => bump(&self.counters.local),
            Action::Drop => bump(&self.counters.dropped),
            Action::Forward(_) => {}
        }
        action
    }

    /// Forwards, then returns the upstream's reply or SERVFAIL.
    async fn forward(&self, packet: &[u8], fwd: &message::Forward, tcp: bool) -> Option<Vec<u8>> {
        let reply = forward::forward(&self.upstream, packet, fwd, tcp, self.forward_timeout).await;
        match reply {
            Some(reply) => {
                bump(&self.counters.forwarded);
                if let Some(metrics) = &self.metrics {
                    metrics.reply(&reply);
                }
                Some(reply)
            }
            None => {
                bump(&self.counters.failed);
                message::servfail(fwd)
            }
        }
    }
}

/// The embedded DNS server of one sandbox. Stops when [stopped](DnsServer::stop) or dropped.
pub struct DnsServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// The UDP and TCP serving tasks; each owns its socket and the tasks it spawned, so
    /// aborting them closes everything.
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Opens UDP and TCP sockets on `config.listen` inside `config.netns` and serves them.
    ///
    /// The sockets are created on a short-lived OS thread that enters the namespace (never on
    /// a tokio worker); a socket stays in the namespace it was created in, so the daemon's
    /// tasks serve it from the node's namespace, and forwarded queries leave from there too.
    /// The namespace's `lo` must be up. Must be called within a tokio runtime.
    pub async fn start(config: DnsConfig, names: Arc<dyn Names>) -> Result<DnsServer, DnsError> {
        let listen = config.listen;
        let bind_error = |source| DnsError::Bind {
            addr: listen,
            netns: config
                .netns
                .as_ref()
                .map_or_else(|| "current".to_owned(), |p| p.display().to_string()),
            source,
        };
        let (udp, tcp) = mini_netdriver::netns::run_in_async(config.netns.clone(), move || {
            let udp = std::net::UdpSocket::bind(listen)?;
            udp.set_nonblocking(true)?;
            let tcp = std::net::TcpListener::bind(udp.local_addr()?)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })
        .await
        .map_err(bind_error)?;
        let local_addr = udp.local_addr().map_err(bind_error)?;
        let udp = UdpSocket::from_std(udp).map_err(bind_error)?;
        let tcp = TcpListener::from_std(tcp).map_err(bind_error)?;
        let shared = Arc::new(Shared {
            view: RwLock::new(Arc::new(View {
                names,
                networks: config.networks,
            })),
            zone: config.zone,
            upstream: config.upstream,
            forward_timeout: config.forward_timeout,
            rotate: AtomicUsize::new(0),
            counters: Counters::default(),
            metrics: config.metrics.clone(),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared.clone())),
        ];
        tracing::debug!(%local_addr, netns = ?config.netns, "dns: serving");
        Ok(DnsServer {
            shared,
            local_addr,
            tasks,
        })
    }

    /// The address served (in the sandbox's namespace).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the names served; queries after this call see the new ones.
    pub fn set_names(&self, names: Arc<dyn Names>) {
        self.shared.update(|v| View {
            names,
            networks: v.networks.clone(),
        });
    }

    /// Replaces the networks whose names the sandbox's task may resolve.
    pub fn set_networks(&self, networks: Vec<String>) {
        self.shared.update(|v| View {
            names: v.names.clone(),
            networks,
        });
    }

    /// The server's counters so far.
    pub fn stats(&self) -> DnsStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DnsStats {
            received: get(&c.received),
            local: get(&c.local),
            forwarded: get(&c.forwarded),
            failed: get(&c.failed),
            dropped: get(&c.dropped),
        }
    }

    /// Stops serving and waits until both sockets are closed.
    pub async fn stop(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_QUERY_LEN];
    let mut forwards = JoinSet::new();
    loop {
        while forwards.try_join_next().is_some() {}
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "dns: udp receive failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let packet = &buf[..n];
        match shared.handle(packet, false) {
            Action::Drop => {}
            Action::Reply(reply) => {
                let _ = socket.send_to(&reply, peer).await;
            }
            Action::Forward(fwd) if forwards.len() >= MAX_FORWARDS => {
                bump(&shared.counters.failed);
                if let Some(reply) = message::servfail(&fwd) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
            Action::Forward(fwd) => {
                let (socket, shared, packet) = (socket.clone(), shared.clone(), packet.to_vec());
                forwards.spawn(async move {
                    if let Some(reply) = shared.forward(&packet, &fwd, false).await {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "dns: tcp accept failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        if connections.len() >= MAX_TCP_CONNECTIONS {
            continue; // dropping the stream closes it
        }
        connections.spawn(serve_connection(stream, shared.clone()));
    }
}

/// Answers length-prefixed queries on one TCP connection, one after the other, until the
/// client closes it, sends something unanswerable, or stays idle for [`TCP_IDLE`].
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let Ok(Ok(packet)) = timeout(TCP_IDLE, read_frame(&mut stream)).await else {
            return;
        };
        let reply = match shared.handle(&packet, true) {
            Action::Drop => return,
            Action::Reply(reply) => reply,
            Action::Forward(fwd) => match shared.forward(&packet, &fwd, true).await {
                Some(reply) => reply,
                None => return,
            },
        };
        if !matches!(
            timeout(TCP_IDLE, write_frame(&mut stream, &reply)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
