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
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, AtomicOrdering::Relaxed);
    }
}

/// The UDP send path shared by foca and anti-entropy; it also holds the seal incoming packets
/// are opened with.
pub(crate) struct Transport {
    socket: Arc<UdpSocket>,
    pub(crate) seal: Seal,
    counters: Arc<Counters>,
    /// See [`GossipConfig::test_drop_probability`](super::GossipConfig::test_drop_probability).
    drop_probability: f64,
    rng: StdRng,
    buf: Vec<u8>,
}

impl Transport {
    pub(crate) fn new(
        socket: Arc<UdpSocket>,
        seal: Seal,
        counters: Arc<Counters>,
        drop: f64,
    ) -> Self {
        Transport {
            socket,
            seal,
            counters,
            drop_probability: drop,
            rng: rand10::make_rng(),
            buf: Vec::with_capacity(super::config::MAX_PACKET_BYTES),
        }
    }

    /// Seals and sends one packet of `kind`. Never blocks: UDP is lossy anyway, so a full
    /// socket buffer drops the packet like the network would.
    pub(crate) fn send(&mut self, kind: u8, to: SocketAddr, payload: &[u8]) {
        if self.drop_probability > 0.0 && self.rng.random_bool(self.drop_probability) {
            Counters::add(&self.counters.dropped_by_test_hook, 1);
            return;
        }
        self.seal.seal(kind, payload, to, &mut self.buf);
        match self.socket.try_send_to(&self.buf, to) {
            Ok(n) => {
                Counters::add(&self.counters.packets_sent, 1);
                Counters::add(&self.counters.bytes_sent, n as u64);
            }
            Err(e) => tracing::debug!(%to, error = %e, "gossip packet not sent"),
        }
    }
}

/// foca's timers, in one ordered queue (a min-heap by deadline, then foca's own timer order,
/// then submission order) so they fire in order — a task per timer can deliver them out of
/// order (foca issue #26).
#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<TimerEntry>>,
    seq: u64,
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

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// The earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer<NodeIdentity>> {
        if self.next_deadline()? <= now {
            self.heap.pop().map(|Reverse(e)| e.timer)
        } else {
            None
        }
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
        self.timers.push(Instant::now() + after, event);
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
