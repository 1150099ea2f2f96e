//! The gossip agent: one task owns foca, the socket's receive side, the timer queue and the
//! anti-entropy schedule; [`Gossip`] is the handle the rest of the node uses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::{Foca, Member, OwnedNotification, PostcardCodec, State, Timer};
use rand10::rngs::StdRng;
use rand10::seq::IndexedRandom;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};

use super::announce::{self, AnnounceSchedule};
use super::antientropy::{self, SyncMessage};
use super::broadcast::RecordHandler;
use super::config::{GossipConfig, MAX_PACKET_BYTES};
use super::error::GossipError;
use super::identity::NodeIdentity;
use super::record::{EndpointRecord, now_micros};
use super::runtime::{
    Counters, GossipStats, IoRuntime, KIND_FOCA, KIND_SYNC, TimerQueue, Transport, jitter, new_rng,
};
use super::seal::{GossipKeys, OpenError, Seal};
use super::state::{Shared, Verdict};
use super::table::EndpointTable;

type FocaAgent = Foca<NodeIdentity, PostcardCodec, StdRng, RecordHandler>;

/// A running gossip agent: SWIM membership (foca over UDP) and the endpoint table spread with it.
///
/// Dropping the handle aborts the agent without telling the cluster (others detect the silence
/// as a failure); [`stop`](Gossip::stop) leaves gracefully.
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
    counters: Arc<Counters>,
    identity: NodeIdentity,
    task: Option<JoinHandle<()>>,
}

/// Reads a gossip agent's counters and members; see [`Gossip::probe`].
#[derive(Clone)]
pub struct GossipProbe {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for GossipProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipProbe").finish_non_exhaustive()
    }
}

impl GossipProbe {
    /// Traffic counters, as [`Gossip::stats`].
    pub fn stats(&self) -> GossipStats {
        GossipStats {
            records_refused: self
                .shared
                .refused
                .load(std::sync::atomic::Ordering::Relaxed),
            ..self.counters.snapshot()
        }
    }

    /// Number of live members other than this node.
    pub fn members(&self) -> usize {
        self.shared.lock().members.len()
    }
}

enum Command {
    Publish(
        Box<EndpointRecord>,
        oneshot::Sender<Result<EndpointRecord, GossipError>>,
    ),
    Withdraw(
        String,
        String,
        oneshot::Sender<Result<Option<EndpointRecord>, GossipError>>,
    ),
    SetKeys(GossipKeys),
    Reach(Vec<SocketAddr>),
    Stop(oneshot::Sender<()>),
    /// Tests: drop (or stop dropping) every SWIM packet this node sends.
    #[cfg(test)]
    MuteSwim(bool),
    /// Tests: ignore (or stop ignoring) the first suspicion notice of each prober and
    /// incarnation this node receives, as if that packet were lost.
    #[cfg(test)]
    LoseFirstNotices(bool),
    /// Tests: the agent's thread sleeps this long, as a node too busy to read its socket;
    /// the sender hears when it starts.
    #[cfg(test)]
    Stall(Duration, oneshot::Sender<()>),
}

impl Gossip {
    /// Binds the UDP socket, starts the agent and announces to the bootstrap peers.
    ///
    /// The agent runs on a thread of its own (a single-threaded tokio runtime named
    /// `gossip`), not on the caller's runtime: SWIM's probes, acks and suspicion timers must not
    /// wait behind the node's other work (task starts, kernel programming, a manager's
    /// sessions and allocator on a manager node). On a busy node a task on the shared runtime
    /// read acks late, its probes timed out and peers declared it down — whose endpoints every
    /// node then purged and re-added. A thread that sleeps until a packet or a timer is due is
    /// woken at once by the kernel's scheduler even when other threads are saturated.
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        config.validate()?;
        let bind = config.bind_addr;
        let socket = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| GossipError::Bind { addr: bind, source })?;
        if let Err(e) = super::runtime::enlarge_receive_buffer(&socket) {
            tracing::warn!(error = %e, "gossip: the socket keeps the kernel's default receive buffer");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(GossipError::Thread)?;
        let socket = {
            let _in_runtime = runtime.enter();
            UdpSocket::from_std(socket)
                .map_err(|source| GossipError::Bind { addr: bind, source })?
        };
        let local = socket
            .local_addr()
            .map_err(|source| GossipError::Bind { addr: bind, source })?;
        let advertise = config.advertise_addr.unwrap_or(local);
        let incarnation = now_micros() / 1000;
        let identity = NodeIdentity {
            node_id: config.node_id.clone(),
            addr: advertise,
            incarnation,
        };

        let shared = Arc::new(Shared::new(
            config.node_id.clone(),
            config.timings.tombstone_ttl,
            config.records.clone(),
        ));
        let counters = Arc::new(Counters::default());
        counters.key_id.store(
            config.keys.primary_id(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let socket = Arc::new(socket);
        let foca = Foca::with_custom_broadcast(
            identity.clone(),
            config.timings.foca_config(1),
            new_rng(),
            PostcardCodec,
            RecordHandler {
                shared: shared.clone(),
            },
        );
        let (commands_tx, commands) = mpsc::channel(256);
        let (changes_tx, changes) = watch::channel(0);
        let agent = Agent {
            foca,
            shared: shared.clone(),
            transport: Transport::new(
                &socket,
                Seal::new(config.keys.clone()),
                counters.clone(),
                config.test_drop_probability,
            )
            .map_err(|source| GossipError::Bind { addr: bind, source })?,
            counters: counters.clone(),
            timers: TimerQueue::default(),
            notifications: Vec::new(),
            self_addr: advertise,
            rng: new_rng(),
            changes: changes_tx,
            orphans: HashMap::new(),
            rejects: RejectLog::default(),
            unsent: Vec::new(),
            replies: Vec::new(),
            young: Vec::new(),
            resend_at: None,
            reannounce_at: Instant::now(),
            transmissions: config.timings.transmissions(1),
            announces: AnnounceSchedule::new(config.timings.announce_period),
            #[cfg(test)]
            lost_notices: None,
            config,
        };
        // The thread drives its runtime until the agent's task ends (returns, or is aborted
        // through the handle): the end drops `ended`.
        let (ended, agent_ended) = oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            agent.run(socket, commands).await;
            drop(ended);
        });
        std::thread::Builder::new()
            .name("gossip".into())
            .spawn(move || {
                raise_priority();
                let _ = runtime.block_on(agent_ended);
            })
            .map_err(GossipError::Thread)?;
        Ok(Gossip {
            commands: commands_tx,
            shared,
            changes,
            counters,
            identity,
            task: Some(task),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.identity.node_id
    }

    /// The gossip address other nodes use for this one (the bound address unless
    /// [`advertise_addr`](GossipConfig::advertise_addr) was set).
    pub fn local_addr(&self) -> SocketAddr {
        self.identity.addr
    }

    /// Announces to each of `addrs` that is not a member yet (this node's own address is
    /// skipped): nodes the members-only filter admitted just now, whose own announces to this
    /// node it may have dropped.
    pub async fn reach(&self, addrs: Vec<SocketAddr>) -> Result<(), GossipError> {
        if addrs.is_empty() {
            return Ok(());
        }
        self.send(Command::Reach(addrs)).await
    }

    /// Publishes a local change: an endpoint of a task running on this node appeared or
    /// changed. The agent sets `node_id` to this node (a different non-empty owner is an
    /// error), clears `deleted`, assigns a new version, merges it and broadcasts it. Returns the
    /// record as stored. Call it before reporting the task RUNNING.
    pub async fn publish(&self, record: EndpointRecord) -> Result<EndpointRecord, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Publish(Box::new(record), tx)).await?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Withdraws an endpoint this node owns (its task stopped): publishes its tombstone. Call it
    /// before tearing the task's interface down. Returns the tombstone, or `None` if the
    /// endpoint is unknown; withdrawing twice is harmless.
    pub async fn withdraw(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<EndpointRecord>, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Withdraw(network_id.into(), endpoint_id.into(), tx))
            .await?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// A receiver whose value (a change counter) moves every time the table changes: new or
    /// changed records, tombstones, purges of down nodes. Changes are coalesced: after
    /// `changed().await`, read [`table`](Gossip::table) and re-program from it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// A snapshot of the endpoint table (tombstones included; see
    /// [`EndpointTable::live_remote`]).
    pub fn table(&self) -> EndpointTable {
        self.shared.lock().table.clone()
    }

    /// The known version of one record (possibly a tombstone), without copying the table.
    pub fn get(&self, network_id: &str, endpoint_id: &str) -> Option<EndpointRecord> {
        self.shared
            .lock()
            .table
            .get(network_id, endpoint_id)
            .cloned()
    }

    /// The live members other than this node.
    pub fn members(&self) -> Vec<NodeIdentity> {
        self.shared.lock().members.clone()
    }

    /// Replaces the gossip key ring (the managers rotated it): packets are sealed with its
    /// first key from now on and opened with any of its keys.
    pub async fn set_keys(&self, keys: GossipKeys) -> Result<(), GossipError> {
        self.send(Command::SetKeys(keys)).await
    }

    /// Tests: drops every SWIM packet this node sends from now on (`true`), as a node whose
    /// acks never arrive in time, or stops dropping them.
    #[cfg(test)]
    pub(crate) async fn mute_swim(&self, mute: bool) -> Result<(), GossipError> {
        self.send(Command::MuteSwim(mute)).await
    }

    /// Tests: loses the first suspicion notice of each prober and incarnation this node
    /// receives from now on (`true`), or stops losing them.
    #[cfg(test)]
    pub(crate) async fn lose_first_notices(&self, lose: bool) -> Result<(), GossipError> {
        self.send(Command::LoseFirstNotices(lose)).await
    }

    /// Tests: stops the agent's thread for `d` (it reads no packet meanwhile); returns when the
    /// stall starts.
    #[cfg(test)]
    pub(crate) async fn stall(&self, d: Duration) -> Result<(), GossipError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stall(d, tx)).await?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// The id of the key packets are sealed with now.
    pub fn key_id(&self) -> u32 {
        self.counters
            .key_id
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A handle that reads this agent's counters and member count (for metrics), usable after
    /// the agent stopped (it then reads the last values).
    pub fn probe(&self) -> GossipProbe {
        GossipProbe {
            shared: self.shared.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Traffic counters.
    pub fn stats(&self) -> GossipStats {
        GossipStats {
            records_refused: self
                .shared
                .refused
                .load(std::sync::atomic::Ordering::Relaxed),
            ..self.counters.snapshot()
        }
    }

    /// Leaves the cluster gracefully (members learn at once that this node is down and drop
    /// its endpoints) and stops the agent.
    pub async fn stop(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the agent abruptly, telling no one, as a crash would, and waits until its socket is
    /// closed. For tests and benchmarks of failure detection.
    pub async fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn send(&self, command: Command) -> Result<(), GossipError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| GossipError::Stopped)
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The nice value of the agent's thread (when the process may raise it: root, or
/// CAP_SYS_NICE). Failure detection is the one job on a node that must not wait for the CPU: on
/// a saturated machine an ordinary thread can wait 600 ms for it, long enough for its peers'
/// suspicion to run out before it refutes. corosync runs its membership thread real-time for
/// the same reason; a raised nice value is enough here and cannot starve the rest of the node
/// (the thread sleeps but for a few packets and timers a second).
pub(crate) const GOSSIP_NICE: i32 = -10;

/// Gives the calling thread [`GOSSIP_NICE`]; without the privilege, it stays as it is.
fn raise_priority() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority on this thread's own id, with a plain integer value.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, GOSSIP_NICE) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "the gossip thread keeps its priority"
        );
    }
}

/// What woke the agent up.
enum Event {
    Command(Option<Command>),
    Packet(std::io::Result<(usize, SocketAddr)>),
    Timers,
    AntiEntropy,
    Maintenance,
    Resend,
}

/// The agent task's state. Only this task touches foca.
struct Agent {
    foca: FocaAgent,
    shared: Arc<Shared>,
    transport: Transport,
    counters: Arc<Counters>,
    timers: TimerQueue,
    /// foca's notifications of the current step, acted on after foca returns.
    notifications: Vec<OwnedNotification<NodeIdentity>>,
    self_addr: SocketAddr,
    rng: StdRng,
    changes: watch::Sender<u64>,
    /// Owners of records that are not members, since when (see `orphan_grace`).
    orphans: HashMap<String, Instant>,
    rejects: RejectLog,
    /// Own records published in this step, pushed to every member at its end (together: a
    /// burst of publishes or withdrawals shares packets).
    unsent: Vec<EndpointRecord>,
    /// Answers to publish and withdraw calls, sent once the step's records are out: a caller
    /// that then reports its task RUNNING knows the record is on its way to every member.
    replies: Vec<Reply>,
    /// Own records pushed to every member since the last resend, (network, endpoint).
    young: Vec<(String, String)>,
    /// When to push `young` to every member again.
    resend_at: Option<Instant>,
    /// When to announce again to bootstrap peers that are not members (see
    /// `announce_bootstrap`).
    reannounce_at: Instant,
    /// foca's `max_transmissions` now (it grows with the cluster).
    transmissions: std::num::NonZeroU8,
    /// When to announce to a member next (see `announce`).
    announces: AnnounceSchedule,
    /// Tests: the (prober, incarnation) of each suspicion notice lost on purpose; `None`: none
    /// is lost.
    #[cfg(test)]
    lost_notices: Option<HashSet<(SocketAddr, u16)>>,
    config: GossipConfig,
}

/// At most this many commands are handled in one step (then packets and timers get their
/// turn).
const COMMANDS_PER_STEP: usize = 256;

/// An answer to a publish or withdraw call, held until the step's records are sent.
enum Reply {
    Published(
        oneshot::Sender<Result<EndpointRecord, GossipError>>,
        Result<EndpointRecord, GossipError>,
    ),
    Withdrawn(
        oneshot::Sender<Result<Option<EndpointRecord>, GossipError>>,
        Result<Option<EndpointRecord>, GossipError>,
    ),
}

/// Borrows the parts of the agent foca's runtime needs, next to foca itself.
macro_rules! rt {
    ($agent:ident) => {
        &mut IoRuntime {
            transport: &mut $agent.transport,
            timers: &mut $agent.timers,
            notifications: &mut $agent.notifications,
        }
    };
}

impl Agent {
    async fn run(mut self, socket: Arc<UdpSocket>, mut commands: mpsc::Receiver<Command>) {
        tracing::info!(identity = ?self.foca.identity(), bootstrap = ?self.config.bootstrap, "gossip agent started");
        self.announce_bootstrap();
        self.after_step();
        let timings = self.config.timings.clone();
        // One byte more than the limit, to tell an oversized packet from a full one.
        let mut buf = vec![0u8; MAX_PACKET_BYTES + 1];
        let mut anti_entropy_at =
            Instant::now() + jitter(&mut self.rng, timings.anti_entropy_period);
        let mut maintenance = tokio::time::interval(timings.maintenance_period);
        maintenance.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.next_deadline();
            let resend_at = self.resend_at;
            // Biased: packets waiting (acks among them) are read before a timer that would
            // count them missing fires — on a loaded node both are ready at once.
            let event = tokio::select! {
                biased;
                command = commands.recv() => Event::Command(command),
                received = socket.recv_from(&mut buf) => Event::Packet(received),
                _ = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => Event::Timers,
                _ = sleep_until(anti_entropy_at) => Event::AntiEntropy,
                _ = maintenance.tick() => Event::Maintenance,
                _ = sleep_until(resend_at.unwrap_or_else(Instant::now)), if resend_at.is_some() => Event::Resend,
            };
            match event {
                Event::Command(None) => return,
                Event::Command(Some(Command::Stop(done))) => return self.leave(done),
                Event::Command(Some(command)) => {
                    self.handle_command(command);
                    // The commands queued meanwhile (every task of a removed service withdrawn
                    // at once) are handled in the same step: their records go out together.
                    for _ in 1..COMMANDS_PER_STEP {
                        match commands.try_recv() {
                            Ok(Command::Stop(done)) => {
                                self.after_step();
                                return self.leave(done);
                            }
                            Ok(command) => self.handle_command(command),
                            Err(_) => break,
                        }
                    }
                }
                Event::Packet(Ok((len, from))) => self.handle_packet(&mut buf[..len], from),
                Event::Packet(Err(e)) => tracing::debug!(error = %e, "gossip receive error"),
                Event::Timers => self.fire_timers(),
                Event::AntiEntropy => {
                    self.start_anti_entropy(false);
                    anti_entropy_at =
                        Instant::now() + jitter(&mut self.rng, timings.anti_entropy_period);
                }
                Event::Maintenance => self.maintenance(),
                Event::Resend => self.resend_young(),
            }
            self.after_step();
        }
    }

    /// Leaves the cluster (members hear it at once) and answers `done`.
    fn leave(&mut self, done: oneshot::Sender<()>) {
        if let Err(e) = self.foca.leave_cluster(rt!(self)) {
            tracing::debug!(error = %e, "leaving the gossip cluster");
        }
        tracing::info!("gossip agent stopped");
        let _ = done.send(());
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish(record, reply) => {
                let published = self.publish(*record);
                self.replies.push(Reply::Published(reply, published));
            }
            Command::Withdraw(network, endpoint, reply) => {
                let withdrawn = self.withdraw(&network, &endpoint);
                self.replies.push(Reply::Withdrawn(reply, withdrawn));
            }
            Command::SetKeys(keys) => {
                if self.transport.seal.keys() != &keys {
                    tracing::info!(?keys, "gossip key ring changed");
                    self.counters
                        .key_id
                        .store(keys.primary_id(), std::sync::atomic::Ordering::Relaxed);
                    self.transport.seal.set_keys(keys);
                }
            }
            Command::Reach(addrs) => self.announce_to(&addrs),
            Command::Stop(_) => {}
            #[cfg(test)]
            Command::MuteSwim(mute) => self.transport.mute_swim = mute,
            #[cfg(test)]
            Command::LoseFirstNotices(lose) => {
                self.lost_notices = lose.then(HashSet::new);
            }
            #[cfg(test)]
            Command::Stall(d, started) => {
                let _ = started.send(());
                std::thread::sleep(d);
            }
        }
    }

    fn publish(&mut self, mut record: EndpointRecord) -> Result<EndpointRecord, GossipError> {
        let local = self.shared.local_node.clone();
        if !record.node_id.is_empty() && record.node_id != local {
            return Err(GossipError::NotOwner {
                network_id: record.network_id,
                endpoint_id: record.endpoint_id,
                owner: record.node_id,
                local,
            });
        }
        record.node_id = local;
        record.deleted = false;
        record.validate()?;
        record.version = self.shared.lock().clock.tick(now_micros());
        self.broadcast(record)
    }

    fn withdraw(
        &mut self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<EndpointRecord>, GossipError> {
        let tombstone = {
            let mut state = self.shared.lock();
            let Some(known) = state.table.get(network_id, endpoint_id).cloned() else {
                return Ok(None);
            };
            if known.node_id != self.shared.local_node {
                return Err(GossipError::NotOwner {
                    network_id: network_id.into(),
                    endpoint_id: endpoint_id.into(),
                    owner: known.node_id,
                    local: self.shared.local_node.clone(),
                });
            }
            if known.deleted {
                return Ok(Some(known));
            }
            EndpointRecord {
                deleted: true,
                version: state.clock.tick(now_micros()),
                ..known
            }
        };
        self.broadcast(tombstone).map(Some)
    }

    /// Signs a record this node owns (with a [`RecordAuth`]), merges it (through foca's
    /// handler) and sends it out at the end of this step ([`send_unsent`](Self::send_unsent)):
    /// to every member directly, and as a foca broadcast (the epidemic also reaches members
    /// this node does not know yet). It goes to every member once more
    /// [`resend_after`](super::GossipTimings::resend_after) later. Returns the record as stored.
    fn broadcast(&mut self, record: EndpointRecord) -> Result<EndpointRecord, GossipError> {
        let record = match &self.shared.auth {
            Some(auth) => auth.sign(record)?,
            None => record,
        };
        self.foca
            .add_broadcast(&record.encode())
            .map_err(|e| GossipError::InvalidRecord {
                network_id: record.network_id.clone(),
                endpoint_id: record.endpoint_id.clone(),
                reason: e.to_string(),
            })?;
        self.unsent.push(record.clone());
        self.young
            .push((record.network_id.clone(), record.endpoint_id.clone()));
        if self.resend_at.is_none() {
            self.resend_at = Some(Instant::now() + self.config.timings.resend_after);
        }
        Ok(record)
    }

    /// Sends the records this step published, all together: to every member (as many records
    /// to a packet as fit) and as foca broadcasts; then answers their callers.
    fn send_unsent(&mut self) {
        if !self.unsent.is_empty() {
            let unsent = std::mem::take(&mut self.unsent);
            let refs: Vec<&EndpointRecord> = unsent.iter().collect();
            self.push_to_every_member(&refs);
            self.push_broadcasts();
        }
        for reply in self.replies.drain(..) {
            match reply {
                Reply::Published(tx, result) => {
                    let _ = tx.send(result);
                }
                Reply::Withdrawn(tx, result) => {
                    let _ = tx.send(result);
                }
            }
        }
    }

    /// Sends records to every live member, point to point (anti-entropy `Records` messages:
    /// merged by the receiver, not relayed). A new record thus reaches every member in one
    /// hop unless a packet is lost; the random epidemic alone misses a node now and then.
    fn push_to_every_member(&mut self, records: &[&EndpointRecord]) {
        if records.is_empty() {
            return;
        }
        let packets = antientropy::encode_records(records);
        let members: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for member in members {
            for packet in &packets {
                self.transport.send(KIND_SYNC, member, packet);
            }
        }
    }

    /// Pushes the current version of every record published since the last resend to every
    /// member again, batched: a lost first push is repaired after `resend_after`, not after the
    /// next anti-entropy round that happens to pick the node that missed it.
    fn resend_young(&mut self) {
        self.resend_at = None;
        let mut keys = std::mem::take(&mut self.young);
        keys.sort();
        keys.dedup();
        let records: Vec<EndpointRecord> = {
            let state = self.shared.lock();
            keys.iter()
                .filter_map(|(network, endpoint)| state.table.get(network, endpoint).cloned())
                .filter(|r| r.node_id == self.shared.local_node)
                .collect()
        };
        let refs: Vec<&EndpointRecord> = records.iter().collect();
        self.push_to_every_member(&refs);
    }

    /// Sends pending record broadcasts to a few members now instead of at the next gossip round.
    fn push_broadcasts(&mut self) {
        if self.foca.custom_broadcast_backlog() > 0
            && let Err(e) = self.foca.broadcast(rt!(self))
        {
            tracing::debug!(error = %e, "broadcasting records");
        }
    }

    fn handle_packet(&mut self, packet: &mut [u8], from: SocketAddr) {
        Counters::add(&self.counters.packets_received, 1);
        Counters::add(&self.counters.bytes_received, packet.len() as u64);
        if packet.len() > MAX_PACKET_BYTES {
            return self.reject(from, "packet above 1400 bytes");
        }
        let (kind, payload) = match self.transport.seal.open(packet, self.self_addr) {
            Ok((kind, payload)) => (kind, payload),
            Err(e) => {
                let counter = match e {
                    OpenError::Unauthenticated => &self.counters.packets_unauthenticated,
                    OpenError::Replayed => &self.counters.packets_replayed,
                };
                Counters::add(counter, 1);
                return self.reject(from, &e.to_string());
            }
        };
        match (kind, payload) {
            (KIND_FOCA, payload) => {
                if let Err(e) = self.foca.handle_data(payload, rt!(self)) {
                    match e {
                        foca::Error::Decode(_)
                        | foca::Error::MalformedPacket
                        | foca::Error::DataTooBig => self.reject(from, &e.to_string()),
                        other => tracing::trace!(%from, error = %other, "foca refused a packet"),
                    }
                }
                if std::mem::take(&mut self.shared.lock().forward) {
                    self.push_broadcasts();
                }
            }
            (KIND_SYNC, payload) => match antientropy::decode(payload) {
                Ok(message) => self.handle_sync(message, from),
                Err(e) => self.reject(from, &e.to_string()),
            },
            _ => self.reject(from, "unknown gossip packet kind"),
        }
    }

    fn reject(&mut self, from: SocketAddr, why: &str) {
        Counters::add(&self.counters.packets_rejected, 1);
        self.rejects.record(from, why);
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((member, incarnation)) = self.timers.pop_notice_due(now) {
            if self.still_suspect(&member, incarnation) {
                tracing::debug!(member = ?member, incarnation, "suspect has not refuted yet: telling it again");
                self.transport.tell_suspected(member.addr, incarnation);
            }
        }
        while let Some(timer) = self.timers.pop_due(now) {
            if let Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } = &timer
                && !self.still_suspect(member_id, *incarnation)
            {
                tracing::trace!(member = ?member_id, incarnation, "suspicion refuted in time");
                continue;
            }
            if let Err(e) = self.foca.handle_timer(timer, rt!(self)) {
                tracing::debug!(error = %e, "foca timer");
            }
        }
    }

    /// Whether `member` is still suspected at `incarnation`: what the suspicion timer would
    /// declare down. foca 2.0 checks this itself, but it sends the member "you are down"
    /// (`TurnUndead`) even when the check fails — when the member refuted in time — and the
    /// member then rejoins under a new identity, as if it had been declared down. Such a
    /// timer is not handed to foca.
    fn still_suspect(&self, member: &NodeIdentity, incarnation: u16) -> bool {
        self.foca.iter_membership_state().any(|m| {
            m.id() == member && m.incarnation() == incarnation && m.state() == State::Suspect
        })
    }

    /// Announces to the bootstrap peers that are not members (all of them until this node has
    /// joined). Repeated while members are missing: without it two groups can stay apart for
    /// good — a node whose first announce was lost (e.g. dropped by a peer whose members-only
    /// filter did not list it yet) but that joined through another peer never announces again,
    /// and the first node of a cluster has no bootstrap peers at all.
    fn announce_bootstrap(&mut self) {
        let bootstrap = self.config.bootstrap.clone();
        self.announce_to(&bootstrap);
    }

    /// Announces to each of `addrs` that is neither this node nor a member.
    fn announce_to(&mut self, addrs: &[SocketAddr]) {
        let members: HashSet<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for &addr in addrs {
            if addr != self.self_addr
                && !members.contains(&addr)
                && let Err(e) = self
                    .foca
                    .announce(NodeIdentity::placeholder(addr), rt!(self))
            {
                tracing::debug!(%addr, error = %e, "announcing to a peer");
            }
        }
    }

    /// Starts an anti-entropy round with a random member: the hash of the table, or on joining
    /// the whole digest, to a bootstrap peer by preference (it has certainly heard of us, since
    /// we announced to it).
    fn start_anti_entropy(&mut self, joining: bool) {
        let members: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        let bootstrap: Vec<SocketAddr> = members
            .iter()
            .copied()
            .filter(|a| self.config.bootstrap.contains(a))
            .collect();
        let pool = if joining && !bootstrap.is_empty() {
            &bootstrap
        } else {
            &members
        };
        let Some(&peer) = pool.choose(&mut self.rng) else {
            return;
        };
        let digest = self.shared.lock().table.digest();
        let message = if joining {
            antientropy::encode_digest(&digest, true)
        } else {
            antientropy::encode_summary(&digest)
        };
        self.transport.send(KIND_SYNC, peer, &message);
    }

    fn handle_sync(&mut self, message: SyncMessage, from: SocketAddr) {
        if !self.foca.iter_members().any(|m| m.id().addr == from) {
            tracing::debug!(%from, "anti-entropy from a non-member ignored");
            return;
        }
        match message {
            SyncMessage::Summary { root } => {
                let mine = self.shared.lock().table.digest();
                if mine.root() != root {
                    self.transport
                        .send(KIND_SYNC, from, &antientropy::encode_digest(&mine, true));
                }
            }
            SyncMessage::Digest { reply, buckets } => {
                let (packets, mine) = {
                    let state = self.shared.lock();
                    let mine = state.table.digest();
                    let differing = mine.differing(&antientropy::digest_of(&buckets));
                    let records = state.table.in_buckets(&differing);
                    (antientropy::encode_records(&records), mine)
                };
                for packet in packets {
                    self.transport.send(KIND_SYNC, from, &packet);
                }
                if reply {
                    self.transport
                        .send(KIND_SYNC, from, &antientropy::encode_digest(&mine, false));
                }
            }
            SyncMessage::Records { records } => {
                let now = now_micros();
                let shared = self.shared.clone();
                let mut state = shared.lock();
                for record in records {
                    if let Err(e) = record.validate() {
                        drop(state);
                        self.reject(from, &e.to_string());
                        return;
                    }
                    // Most of a differing bucket is known already: no signature check.
                    if state.changes_nothing(&record) {
                        continue;
                    }
                    if let Err(why) = shared.check_owner(&record) {
                        tracing::debug!(%from, why, "anti-entropy record refused");
                        continue;
                    }
                    let verdict =
                        state.accept_remote(&shared.local_node, record, now, shared.tombstone_ttl);
                    if let Verdict::Refused(why) = verdict {
                        tracing::trace!(%from, why, "anti-entropy record refused");
                    }
                }
                // Anti-entropy repairs point to point; no need to re-broadcast.
                state.forward = false;
            }
            SyncMessage::Suspected { incarnation } => {
                #[cfg(test)]
                if let Some(lost) = &mut self.lost_notices
                    && lost.insert((from, incarnation))
                {
                    return;
                }
                self.refute(incarnation, from)
            }
            SyncMessage::Alive {
                identity,
                incarnation,
            } => {
                // A member speaks only for itself.
                if identity.addr != from {
                    return self.reject(from, "a refutation for another member");
                }
                let alive = Member::new(identity, incarnation, State::Alive);
                if let Err(e) = self
                    .foca
                    .apply_many(std::iter::once(alive), true, rt!(self))
                {
                    tracing::debug!(%from, error = %e, "refutation not applied");
                }
            }
        }
    }

    /// A member (`from`) suspects this node at foca incarnation `incarnation`: refute at once,
    /// in foca (it raises its incarnation above the suspected one, and every message it sends
    /// carries it) and straight back to that member, whose timer is the one that would declare
    /// this node down. foca gossips the refutation too, but to random members, so it reached the
    /// prober too late now and then on a busy node: the node was declared down, every node
    /// purged and re-added its endpoints, and its tasks were started elsewhere.
    fn refute(&mut self, incarnation: u16, from: SocketAddr) {
        let me = self.foca.identity().clone();
        let suspect = Member::new(me.clone(), incarnation, State::Suspect);
        if let Err(e) = self
            .foca
            .apply_many(std::iter::once(suspect), true, rt!(self))
        {
            tracing::debug!(%from, error = %e, "refuting a suspicion");
            return;
        }
        // At the last incarnation foca rejoins under a new identity instead.
        if let Some(next) = incarnation.checked_add(1)
            && self.foca.identity() == &me
        {
            Counters::add(&self.counters.suspicions_refuted, 1);
            tracing::debug!(%from, incarnation = next, "suspected by a member: refuted");
            self.transport
                .send(KIND_SYNC, from, &antientropy::encode_alive(&me, next));
        }
    }

    fn maintenance(&mut self) {
        let timings = &self.config.timings;
        let now = Instant::now();
        let live: HashSet<String> = self
            .foca
            .iter_members()
            .map(|m| m.id().node_id.clone())
            .collect();
        let mut state = self.shared.lock();
        let reaped = state
            .table
            .reap_tombstones(now_micros(), timings.tombstone_ttl);
        if reaped > 0 {
            state.changed = true;
        }
        state
            .down_nodes
            .retain(|_, since| now.duration_since(*since) < timings.tombstone_ttl);
        // Records whose owner is not a member: wait a little (the membership update may lag),
        // then drop them — no entry may outlive its node.
        let owners: Vec<String> = state
            .table
            .owners()
            .into_iter()
            .filter(|o| *o != self.shared.local_node && !live.contains(*o))
            .map(str::to_owned)
            .collect();
        self.orphans.retain(|o, _| owners.contains(o));
        for owner in owners {
            let since = *self.orphans.entry(owner.clone()).or_insert(now);
            if now.duration_since(since) >= timings.orphan_grace {
                let purged = state.node_down(&owner, now);
                tracing::info!(node = %owner, purged, "dropped the endpoints of a node that is not a member");
                self.orphans.remove(&owner);
            }
        }
        drop(state);
        if self.foca.num_members() == 0 {
            self.announce_bootstrap();
        } else if now >= self.reannounce_at {
            self.reannounce_at = now + timings.anti_entropy_period;
            self.announce_bootstrap();
        }
        self.announce_scheduled();
    }

    /// This period's announce to a member, when it is due (see `announce`: in each period every
    /// member is announced to once, and answers with one member list).
    fn announce_scheduled(&mut self) {
        if self.foca.num_members() == 0 {
            return;
        }
        let since_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let Some(epoch) = self.announces.due(since_unix, &mut self.rng) else {
            return;
        };
        // Every node of the cluster, this one included, by address.
        let mut members: BTreeMap<SocketAddr, NodeIdentity> = self
            .foca
            .iter_members()
            .map(|m| (m.id().addr, m.id().clone()))
            .collect();
        let me = self.foca.identity().addr;
        members.insert(me, self.foca.identity().clone());
        let addrs: Vec<SocketAddr> = members.keys().copied().collect();
        let Some((to, dst)) =
            announce::target(&addrs, me, epoch).and_then(|to| members.remove_entry(&to))
        else {
            return;
        };
        match self.foca.announce(dst, rt!(self)) {
            Ok(()) => Counters::add(&self.counters.announces_sent, 1),
            Err(e) => tracing::debug!(%to, error = %e, "announcing to a member"),
        }
    }

    /// Acts on what the last step produced: foca's notifications, ghosts to tombstone, members
    /// and table changes to publish.
    fn after_step(&mut self) {
        let mut members_changed = false;
        for notification in std::mem::take(&mut self.notifications) {
            members_changed = true;
            match notification {
                OwnedNotification::MemberUp(id) => {
                    tracing::debug!(member = ?id, "member up");
                    self.shared.lock().down_nodes.remove(&id.node_id);
                }
                OwnedNotification::MemberDown(id) => self.member_down(&id),
                OwnedNotification::Rename(old, new) => {
                    tracing::debug!(?old, ?new, "member renamed");
                }
                OwnedNotification::Active => {
                    tracing::info!(
                        members = self.foca.num_members(),
                        "joined the gossip cluster"
                    );
                    self.start_anti_entropy(true);
                }
                OwnedNotification::Idle => {
                    tracing::info!("no gossip member left; retrying the bootstrap peers");
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::warn!(identity = ?id, "declared down by the cluster; rejoined");
                    self.republish_all();
                    self.start_anti_entropy(true);
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("declared down by the cluster and cannot rejoin");
                }
            }
        }
        let ghosts = std::mem::take(&mut self.shared.lock().ghosts);
        for ghost in ghosts {
            tracing::info!(network = %ghost.network_id, endpoint = %ghost.endpoint_id, "tombstoning an endpoint of a previous life of this node");
            let version = self.shared.lock().clock.tick(now_micros());
            let tombstone = EndpointRecord {
                deleted: true,
                version,
                ..ghost
            };
            if let Err(e) = self.broadcast(tombstone) {
                tracing::debug!(error = %e, "tombstoning a ghost");
            }
        }
        self.send_unsent();
        self.scale_transmissions();
        let mut state = self.shared.lock();
        if members_changed {
            state.members = self.foca.iter_members().map(|m| m.id().clone()).collect();
        }
        if std::mem::take(&mut state.changed) {
            drop(state);
            self.changes.send_modify(|generation| *generation += 1);
        }
    }

    /// Sends updates and broadcasts as many times as the cluster's size needs
    /// ([`GossipTimings::transmissions`](super::GossipTimings::transmissions)).
    fn scale_transmissions(&mut self) {
        let members = self.foca.num_members() + 1;
        let wanted = self.config.timings.transmissions(members);
        if wanted == self.transmissions {
            return;
        }
        match self
            .foca
            .set_config(self.config.timings.foca_config(members))
        {
            Ok(()) => {
                tracing::debug!(
                    members,
                    transmissions = wanted.get(),
                    "gossip transmissions rescaled"
                );
                self.transmissions = wanted;
            }
            Err(e) => tracing::warn!(error = %e, "gossip transmissions not rescaled"),
        }
    }

    fn member_down(&mut self, id: &NodeIdentity) {
        // The same node may be up under another identity (restarted on a new address).
        let still_up = self
            .foca
            .iter_members()
            .any(|m| m.id().node_id == id.node_id);
        if id.node_id == self.shared.local_node || still_up {
            tracing::debug!(member = ?id, still_up, "member down");
            return;
        }
        let purged = self.shared.lock().node_down(&id.node_id, Instant::now());
        tracing::info!(member = ?id, purged, "member down: dropped its endpoints");
    }

    /// After being declared down (everyone dropped our records), publish them all again.
    fn republish_all(&mut self) {
        let own: Vec<EndpointRecord> = {
            let state = self.shared.lock();
            state
                .table
                .owned_by(&self.shared.local_node)
                .filter(|r| !r.deleted)
                .cloned()
                .collect()
        };
        for record in own {
            let version = self.shared.lock().clock.tick(now_micros());
            if let Err(e) = self.broadcast(EndpointRecord { version, ..record }) {
                tracing::debug!(error = %e, "republishing a record");
            }
        }
    }
}

/// Logs dropped packets without letting a flood of garbage flood the log: every one at debug,
/// a summary at most every 10 s at warn.
#[derive(Default)]
struct RejectLog {
    since_last: u64,
    last_warn: Option<Instant>,
}

impl RejectLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn record(&mut self, from: SocketAddr, why: &str) {
        tracing::debug!(%from, why, "dropped a gossip packet");
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            tracing::warn!(%from, why, dropped = self.since_last, "dropped gossip packets (forged, replayed or undecodable)");
            self.since_last = 0;
            self.last_warn = Some(now);
        }
    }
}
