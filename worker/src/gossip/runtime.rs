//! foca's gateway to the world: the UDP send path (sealing, counters and the test drop hook)
//! and the timer queue.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use foca::{Notification, OwnedNotification, Timer};
use rand10::rngs::StdRng;
use rand10::{RngExt, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::identity::NodeIdentity;
use super::seal::Seal;

/// Bytes a packet adds to its payload: the sealed envelope (see [`super::seal`]).
pub(crate) const ENVELOPE_BYTES: usize = super::seal::OVERHEAD_BYTES;
/// Packet kind (inside the seal): a foca (SWIM) message.
pub(crate) const KIND_FOCA: u8 = 1;
/// Packet kind (inside the seal): an anti-entropy message.
pub(crate) const KIND_SYNC: u8 = 2;

/// Traffic counters of one agent (cumulative since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// UDP packets handed to the OS.
    pub packets_sent: u64,
    /// UDP payload bytes handed to the OS (add 28 per packet for IPv4 + UDP headers).
    pub bytes_sent: u64,
    /// UDP packets received.
    pub packets_received: u64,
    /// UDP payload bytes received.
    pub bytes_received: u64,
    /// Packets received and dropped because they could not be decoded or were too large (the
    /// two counts below included).
    pub packets_rejected: u64,
    /// Packets dropped because they did not open under the gossip key ring: forged, corrupted,
    /// from an outsider, or sealed with a retired key.
    pub packets_unauthenticated: u64,
    /// Authentic packets dropped as replays (seen before, or too old).
    pub packets_replayed: u64,
    /// Records refused because they were not signed by the node they name as owner.
    pub records_refused: u64,
    /// Packets dropped by [`test_drop_probability`](super::GossipConfig::test_drop_probability).
    pub packets_dropped_by_test_hook: u64,
    /// Times a member suspected this node (its probe failed) and this node refuted straight
    /// back to it.
    pub suspicions_refuted: u64,
    /// Packets the OS refused to send (the socket's send buffer was full): lost, as the network
    /// would lose them.
    pub packets_not_sent: u64,
    /// Periodic announces sent to members (one per `announce_period`).
    pub announces_sent: u64,
}

/// The live counters behind [`GossipStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    pub(crate) packets_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) packets_rejected: AtomicU64,
    pub(crate) packets_unauthenticated: AtomicU64,
    pub(crate) packets_replayed: AtomicU64,
    dropped_by_test_hook: AtomicU64,
    pub(crate) suspicions_refuted: AtomicU64,
    not_sent: AtomicU64,
    pub(crate) announces_sent: AtomicU64,
    /// Id of the sealing key (shown to users; not a traffic counter).
    pub(crate) key_id: std::sync::atomic::AtomicU32,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> GossipStats {
        let get = |c: &AtomicU64| c.load(AtomicOrdering::Relaxed);
        GossipStats {
            packets_sent: get(&self.packets_sent),
            bytes_sent: get(&self.bytes_sent),
            packets_received: get(&self.packets_received),
            bytes_received: get(&self.bytes_received),
            packets_rejected: get(&self.packets_rejected),
            packets_unauthenticated: get(&self.packets_unauthenticated),
            packets_replayed: get(&self.packets_replayed),
            records_refused: 0,
            packets_dropped_by_test_hook: get(&self.dropped_by_test_hook),
            suspicions_refuted: get(&self.suspicions_refuted),
            packets_not_sent: get(&self.not_sent),
            announces_sent: get(&self.announces_sent),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, AtomicOrdering::Relaxed);
    }
}

/// What the gossip socket asks for as its receive buffer (memberlist asks for the same). A
/// burst of records (every task of a removed service withdrawn at once: each tombstone pushed
/// to every member) can arrive faster than a busy agent reads, and the kernel's default
/// (`net.core.rmem_default`, 208 KiB: about 150 packets of 1 kB) dropped hundreds of packets
/// in a 50-host lab when 2,000 tasks went at once. The kernel doubles the value for its
/// bookkeeping.
pub(crate) const RECEIVE_BUFFER_BYTES: usize = 2 << 20;

/// Gives `socket` a receive buffer of [`RECEIVE_BUFFER_BYTES`]: with `SO_RCVBUFFORCE` when the
/// daemon may (`CAP_NET_ADMIN`, which it has to program the kernel anyway), past the machine's
/// `net.core.rmem_max`; otherwise with `SO_RCVBUF`, which that limit caps.
pub(crate) fn enlarge_receive_buffer(socket: &std::net::UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let size = libc::c_int::try_from(RECEIVE_BUFFER_BYTES).unwrap_or(libc::c_int::MAX);
    let set = |option: libc::c_int| {
        // SAFETY: `size` is a live c_int and its size is passed; the fd is `socket`'s, open
        // for the whole call.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    set(libc::SO_RCVBUFFORCE).or_else(|_| set(libc::SO_RCVBUF))
}

/// The UDP send path shared by foca and anti-entropy; it also holds the seal incoming packets
/// are opened with.
pub(crate) struct Transport {
    /// The agent's socket (a second descriptor of it), written with plain non-blocking
    /// `sendto` calls. tokio's `try_send_to` fails without trying while tokio has not yet seen
    /// the socket writable: on a new socket (every node's first announces to its bootstrap
    /// peers were dropped, and it joined a maintenance period later), and after any full
    /// buffer, for every send until the runtime next polls (a push to every member lost all
    /// but the first packets).
    socket: std::net::UdpSocket,
    pub(crate) seal: Seal,
    counters: Arc<Counters>,
    /// See [`GossipConfig::test_drop_probability`](super::GossipConfig::test_drop_probability).
    drop_probability: f64,
    /// Tests: drop every SWIM packet this node sends, as if its acks never arrived in time.
    #[cfg(test)]
    pub(crate) mute_swim: bool,
    rng: StdRng,
    buf: Vec<u8>,
}

impl Transport {
    /// The send path of `socket`.
    pub(crate) fn new(
        socket: &UdpSocket,
        seal: Seal,
        counters: Arc<Counters>,
        drop: f64,
    ) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let socket = std::net::UdpSocket::from(socket.as_fd().try_clone_to_owned()?);
        socket.set_nonblocking(true)?;
        Ok(Transport {
            socket,
            seal,
            counters,
            drop_probability: drop,
            #[cfg(test)]
            mute_swim: false,
            rng: rand10::make_rng(),
            buf: Vec::with_capacity(super::config::MAX_PACKET_BYTES),
        })
    }

    /// Tells the member at `to` that this node suspects it at `incarnation` (see
    /// [`TimerQueue::pop_notice_due`]).
    pub(crate) fn tell_suspected(&mut self, to: SocketAddr, incarnation: u16) {
        let notice = super::antientropy::encode_suspected(incarnation);
        self.send(KIND_SYNC, to, &notice);
    }

    /// Seals and sends one packet of `kind`. Never blocks: UDP is lossy anyway, so a full
    /// socket buffer drops the packet like the network would.
    pub(crate) fn send(&mut self, kind: u8, to: SocketAddr, payload: &[u8]) {
        #[cfg(test)]
        if self.mute_swim && kind == KIND_FOCA {
            Counters::add(&self.counters.dropped_by_test_hook, 1);
            return;
        }
        if self.drop_probability > 0.0 && self.rng.random_bool(self.drop_probability) {
            Counters::add(&self.counters.dropped_by_test_hook, 1);
            return;
        }
        self.seal.seal(kind, payload, to, &mut self.buf);
        match self.socket.send_to(&self.buf, to) {
            Ok(n) => {
                Counters::add(&self.counters.packets_sent, 1);
                Counters::add(&self.counters.bytes_sent, n as u64);
            }
            Err(e) => {
                Counters::add(&self.counters.not_sent, 1);
                tracing::debug!(%to, error = %e, "gossip packet not sent");
            }
        }
    }
}

/// The most the local health score rises to: probes and suspicion then take 9 times as long
/// (Lifeguard's awareness limit, 8).
pub(crate) const MAX_HEALTH_SCORE: u32 = 8;

/// A timer handled later than this after its deadline is a deadline this node missed.
pub(crate) const LATE: Duration = Duration::from_millis(100);

/// Lifeguard's local health awareness: a node that misses its own deadlines (its timers fire
/// late: the machine is saturated, the agent did not get the CPU) cannot tell a dead peer from
/// an ack it has not read yet. Each missed deadline raises the score by one; it falls by one for
/// every [`HEALTH_DECAY`] in which the timers ran on time. Probes, their timeouts and suspicions
/// take `1 + score` times as long, so an overloaded prober does not declare live nodes down.
///
/// The score falls with time, not per on-time probe: the score itself slows the probes, so
/// counting them kept a node probing at a third of its pace for 10 s after a burst of load, and
/// a node that died then was declared down 14 s after it did instead of ~3 s. Under sustained
/// load (more than one late timer per [`HEALTH_DECAY`]) the score stays up as before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LocalHealth {
    score: u32,
    /// When the score last changed (a missed deadline or a step down).
    since: Option<Instant>,
}

/// How long the timers must run on time for the local health score to fall by one: the probe
/// period, so the full score (8) is gone 4 s after an overload ends.
pub(crate) const HEALTH_DECAY: Duration = Duration::from_millis(500);

impl LocalHealth {
    /// How much longer probes and suspicions take now: `1 + score`.
    pub(crate) fn multiplier(&self) -> u32 {
        1 + self.score
    }

    /// A deadline was missed at `now`.
    fn missed(&mut self, now: Instant) {
        self.score = (self.score + 1).min(MAX_HEALTH_SCORE);
        self.since = Some(now);
    }

    /// A timer was handled on time at `now`.
    fn on_time(&mut self, now: Instant) {
        if self.score == 0 {
            return;
        }
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= HEALTH_DECAY {
            self.score -= 1;
            self.since = Some(now);
        }
    }
}

/// foca's timers, in one ordered queue (a min-heap by deadline, then foca's own timer order,
/// then submission order) so they fire in order — a task per timer can deliver them out of
/// order (foca issue #26).
///
/// The queue also applies [`LocalHealth`] (foca cannot change its probe period at run time, but
/// every probe and suspicion timer goes through here), jitters the periodic announces, and keeps
/// when to tell a suspect again that it is suspected (see [`TimerQueue::pop_notice_due`]).
#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<TimerEntry>>,
    seq: u64,
    health: LocalHealth,
    /// Suspects to tell again, halfway through their suspicion, if they have not refuted yet.
    notices: Vec<Notice>,
}

/// A suspicion notice to send again (see [`TimerQueue::pop_notice_due`]).
struct Notice {
    at: Instant,
    member: NodeIdentity,
    incarnation: u16,
}

struct TimerEntry {
    at: Instant,
    timer: Timer<NodeIdentity>,
    seq: u64,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, &self.timer, self.seq).cmp(&(other.at, &other.timer, other.seq))
    }
}

impl TimerQueue {
    pub(crate) fn push(&mut self, at: Instant, timer: Timer<NodeIdentity>) {
        self.seq += 1;
        self.heap.push(Reverse(TimerEntry {
            at,
            timer,
            seq: self.seq,
        }));
    }

    /// The earliest deadline: a timer's or a notice's.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let timer = self.heap.peek().map(|Reverse(e)| e.at);
        let notice = self.notices.iter().map(|n| n.at).min();
        match (timer, notice) {
            (Some(t), Some(n)) => Some(t.min(n)),
            (t, n) => t.or(n),
        }
    }

    /// Queues `timer` to fire `after` from now, stretched by the local health (probe timers and
    /// suspicion). A suspicion also queues its notice for halfway through it.
    ///
    /// Periodic announces to down members come ± 25 % of their period apart. foca repeats them
    /// exactly, so nodes that joined together (a lab, a cluster restarted at once) would
    /// announce together for good. (Announces to live members are the agent's own: see its
    /// `announce` schedule.)
    pub(crate) fn push_after(&mut self, now: Instant, after: Duration, timer: Timer<NodeIdentity>) {
        let health = self.health.multiplier();
        let after = match &timer {
            Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => after * health,
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } => {
                let after = after * health;
                self.notices.push(Notice {
                    at: now + after / 2,
                    member: member_id.clone(),
                    incarnation: *incarnation,
                });
                after
            }
            Timer::PeriodicAnnounceDown(_) => after.mul_f64(rand10::random_range(0.75..1.25)),
            _ => after,
        };
        self.push(now + after, timer);
    }

    /// A suspect due to be told again at `now` that it is suspected, with the incarnation it
    /// is suspected at. The prober tells a suspect at once (see [`IoRuntime`]); a live suspect
    /// refutes straight back. Telling it once more halfway through the suspicion, if it has not
    /// refuted by then, keeps one lost packet either way from getting a live node declared down.
    pub(crate) fn pop_notice_due(&mut self, now: Instant) -> Option<(NodeIdentity, u16)> {
        let due = self.notices.iter().position(|n| n.at <= now)?;
        let notice = self.notices.swap_remove(due);
        Some((notice.member, notice.incarnation))
    }

    /// The node's local health now.
    #[cfg(test)]
    pub(crate) fn health(&self) -> LocalHealth {
        self.health
    }

    /// The earliest timer if it is due at `now`. A timer handled more than [`LATE`] after its
    /// deadline counts as a missed deadline, any other as a deadline met.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer<NodeIdentity>> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        let Reverse(entry) = self.heap.pop()?;
        let before = self.health;
        if now.saturating_duration_since(entry.at) > LATE {
            self.health.missed(now);
        } else {
            self.health.on_time(now);
        }
        if before.multiplier() == 1 && self.health.multiplier() > 1 {
            tracing::warn!(
                late_ms = now.saturating_duration_since(entry.at).as_millis() as u64,
                "gossip timers run late: this node is overloaded; probing and suspecting slower"
            );
        } else if before.multiplier() > 1 && self.health.multiplier() == 1 {
            tracing::info!("gossip timers on time again: probing at the normal pace");
        }
        Some(entry.timer)
    }
}

/// The [`foca::Runtime`] of one step of the agent: sends go out at once, timers go to the
/// queue, notifications are collected for the agent to act on after foca returns.
pub(crate) struct IoRuntime<'a> {
    pub(crate) transport: &'a mut Transport,
    pub(crate) timers: &'a mut TimerQueue,
    pub(crate) notifications: &'a mut Vec<OwnedNotification<NodeIdentity>>,
}

impl foca::Runtime<NodeIdentity> for IoRuntime<'_> {
    fn notify(&mut self, notification: Notification<'_, NodeIdentity>) {
        self.notifications.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.transport.send(KIND_FOCA, to.addr, data);
    }

    fn submit_after(&mut self, event: Timer<NodeIdentity>, after: Duration) {
        // foca starts this timer only on the node whose probe of the member failed: tell the
        // member at once, so it refutes to this node before the timer fires (Lifeguard's buddy
        // system) instead of whenever the suspicion reaches it by gossip.
        if let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &event
        {
            self.transport.tell_suspected(member_id.addr, *incarnation);
        }
        self.timers.push_after(Instant::now(), after, event);
    }
}

/// A jittered duration: `base` ± 25%, so periodic exchanges of many nodes do not line up.
pub(crate) fn jitter(rng: &mut StdRng, base: Duration) -> Duration {
    base.mul_f64(rng.random_range(0.75..1.25))
}

/// A fresh random generator (for foca and the agent).
pub(crate) fn new_rng() -> StdRng {
    StdRng::from_rng(&mut rand10::rng())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeIdentity {
        NodeIdentity {
            node_id: n.to_string(),
            addr: "127.0.0.1:1".parse().unwrap(),
            incarnation: 1,
        }
    }

    fn suspect(n: u8) -> Timer<NodeIdentity> {
        Timer::ChangeSuspectToDown {
            member_id: id(n),
            incarnation: 1,
            token: 0,
        }
    }

    /// When `timer`, pushed `after` from `t0`, is due.
    fn due_after(
        q: &mut TimerQueue,
        t0: Instant,
        after: Duration,
        timer: Timer<NodeIdentity>,
    ) -> Duration {
        q.push_after(t0, after, timer);
        let at = q.heap.peek().unwrap().0.at;
        q.heap.clear();
        q.notices.clear();
        at - t0
    }

    #[test]
    fn a_suspicion_lasts_as_configured_whatever_the_cluster_size_and_is_noticed_again_halfway() {
        let t0 = Instant::now();
        let base = Duration::from_millis(700);
        let mut q = TimerQueue::default();
        q.push_after(t0, base, suspect(1));
        // The notice is due first, halfway, once; then the suspicion itself, unstretched.
        assert_eq!(q.next_deadline(), Some(t0 + base / 2));
        assert!(
            q.pop_due(t0 + base / 2).is_none(),
            "the timer is not due yet"
        );
        assert_eq!(
            q.pop_notice_due(t0 + base / 2 - Duration::from_millis(1)),
            None
        );
        assert_eq!(q.pop_notice_due(t0 + base / 2), Some((id(1), 1)));
        assert_eq!(q.pop_notice_due(t0 + base), None);
        assert_eq!(q.next_deadline(), Some(t0 + base));
        assert!(matches!(
            q.pop_due(t0 + base),
            Some(Timer::ChangeSuspectToDown { .. })
        ));
        assert_eq!(q.next_deadline(), None);
        // Other timers queue no notice.
        q.push_after(t0, base, Timer::ProbeRandomMember(0));
        assert_eq!(q.next_deadline(), Some(t0 + base));
        assert_eq!(q.pop_notice_due(t0 + base * 10), None);
    }

    #[test]
    fn periodic_announces_to_down_members_are_jittered_so_nodes_that_joined_together_drift_apart() {
        let t0 = Instant::now();
        let period = Duration::from_secs(5);
        let mut q = TimerQueue::default();
        let dues: Vec<Duration> = (0..50)
            .map(|_| due_after(&mut q, t0, period, Timer::PeriodicAnnounceDown(0)))
            .collect();
        for due in &dues {
            assert!(
                *due >= period.mul_f64(0.75) && *due <= period.mul_f64(1.25),
                "{due:?}"
            );
        }
        let (first, last) = (dues.iter().min().unwrap(), dues.iter().max().unwrap());
        assert!(
            *last - *first >= Duration::from_secs(1),
            "50 announces all within {:?} of each other",
            *last - *first
        );
        // Probes keep their period.
        assert_eq!(
            due_after(&mut q, t0, period, Timer::ProbeRandomMember(0)),
            period
        );
    }

    #[test]
    fn a_node_that_misses_its_deadlines_probes_and_suspects_slower() {
        let t0 = Instant::now();
        let period = Duration::from_millis(500);
        let mut q = TimerQueue::default();
        assert_eq!(q.health().multiplier(), 1);
        // Three probe timers handled 300 ms late: the agent did not get the CPU.
        let mut now = t0;
        for _ in 0..3 {
            q.push(now, Timer::ProbeRandomMember(0));
            now += Duration::from_millis(300);
            assert!(q.pop_due(now).is_some());
        }
        assert_eq!(q.health().multiplier(), 4);
        assert_eq!(
            due_after(&mut q, now, period, Timer::ProbeRandomMember(0)),
            period * 4
        );
        assert_eq!(
            due_after(
                &mut q,
                now,
                Duration::from_millis(200),
                Timer::SendIndirectProbe {
                    probed_id: id(2),
                    token: 0
                }
            ),
            Duration::from_millis(800)
        );
        assert_eq!(
            due_after(&mut q, now, Duration::from_millis(1500), suspect(2)),
            Duration::from_millis(6000)
        );
        // It never grows past the limit.
        for _ in 0..20 {
            q.push(now, Timer::PeriodicGossip(0));
            now += Duration::from_secs(1);
            assert!(q.pop_due(now).is_some());
        }
        assert_eq!(q.health().multiplier(), 1 + MAX_HEALTH_SCORE);
        // Timers on time again (the gossip timer, every 100 ms): one step down per
        // HEALTH_DECAY of them, without waiting for the slowed-down probes — the normal pace is
        // back 4 s after the overload, not after 8 slowed probes (~20 s).
        let calm = now;
        while q.health().multiplier() > 1 {
            now += Duration::from_millis(100);
            q.push(now, Timer::PeriodicGossip(0));
            assert!(q.pop_due(now).is_some());
            assert!(
                now - calm <= HEALTH_DECAY * (MAX_HEALTH_SCORE + 1),
                "{:?}",
                now - calm
            );
        }
        assert!(
            now - calm >= HEALTH_DECAY * (MAX_HEALTH_SCORE - 1),
            "{:?}",
            now - calm
        );
        assert_eq!(q.health().multiplier(), 1);
        assert_eq!(
            due_after(&mut q, now, period, Timer::ProbeRandomMember(0)),
            period
        );
    }

    /// One gossip timer every 100 ms for `secs`, every `late_every`-th of them handled 300 ms
    /// late; the multiplier after.
    fn after_pattern(late_every: usize, secs: u64) -> u32 {
        let mut q = TimerQueue::default();
        let mut now = Instant::now();
        for i in 0..(secs * 10) as usize {
            q.push(now, Timer::PeriodicGossip(0));
            let handled = if i % late_every == 0 {
                now + Duration::from_millis(300)
            } else {
                now
            };
            assert!(q.pop_due(handled).is_some());
            now += Duration::from_millis(100);
        }
        q.health().multiplier()
    }

    #[test]
    fn the_pace_slows_under_sustained_load_and_not_for_a_rare_late_timer() {
        // One late timer a second: the normal pace, give or take a step.
        assert!(after_pattern(10, 20) <= 2);
        // One in three late (3 a second): the node is overloaded, at the limit.
        assert_eq!(after_pattern(3, 20), 1 + MAX_HEALTH_SCORE);
    }

    #[test]
    fn timers_fire_in_deadline_then_foca_order() {
        let mut q = TimerQueue::default();
        let t0 = Instant::now();
        q.push(t0 + Duration::from_millis(10), Timer::RemoveDown(id(1)));
        q.push(t0, Timer::ProbeRandomMember(0));
        q.push(
            t0,
            Timer::SendIndirectProbe {
                probed_id: id(2),
                token: 0,
            },
        );
        assert_eq!(
            q.pop_due(t0),
            Some(Timer::SendIndirectProbe {
                probed_id: id(2),
                token: 0
            })
        );
        assert_eq!(q.pop_due(t0), Some(Timer::ProbeRandomMember(0)));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert!(q.pop_due(t0 + Duration::from_millis(10)).is_some());
    }
}
