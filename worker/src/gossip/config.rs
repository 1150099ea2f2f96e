//! Configuration of the gossip agent, and the timings chosen for `mini`'s goals.

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use super::error::GossipError;
use super::owner::RecordAuth;
use super::seal::GossipKeys;

/// The default gossip port, as Docker's (TCP/UDP 7946).
pub const DEFAULT_PORT: u16 = 7946;

/// Largest UDP payload the agent sends or accepts: below a 1500-byte MTU with room for IP and
/// UDP headers and a VXLAN encapsulation on the way.
pub const MAX_PACKET_BYTES: usize = 1400;

/// How a gossip agent starts.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// This node's id (the owner id in every record it publishes).
    pub node_id: String,
    /// Where to bind the UDP socket: the node's advertise address and port [`DEFAULT_PORT`].
    /// Port 0 picks a free port (tests).
    pub bind_addr: SocketAddr,
    /// The address other nodes reach this one at, if it differs from the bound address (NAT).
    /// `None`: the bound address (after binding, so port 0 works).
    pub advertise_addr: Option<SocketAddr>,
    /// The cluster's gossip key ring: every packet is sealed with it, and only packets that
    /// open under it are accepted.
    pub keys: GossipKeys,
    /// Binds records to their owners (signs this node's records, checks everyone else's);
    /// `None`: records are not signed and any member's record is accepted.
    pub records: Option<RecordAuth>,
    /// Gossip addresses to join through (the managers' advertise addresses, port 7946). This
    /// node's own address may be among them. Retried every [`GossipTimings::maintenance_period`]
    /// while the node knows no member.
    pub bootstrap: Vec<SocketAddr>,
    /// Protocol timings.
    pub timings: GossipTimings,
    /// FOR TESTS ONLY: probability (0.0..=1.0) of silently dropping each outgoing packet, to
    /// check that gossip converges over a lossy network. Must stay 0.0 in production.
    pub test_drop_probability: f64,
}

impl GossipConfig {
    /// A configuration with the default timings and no bootstrap peers.
    pub fn new(node_id: impl Into<String>, bind_addr: SocketAddr, keys: GossipKeys) -> Self {
        GossipConfig {
            node_id: node_id.into(),
            bind_addr,
            keys,
            records: None,
            advertise_addr: None,
            bootstrap: Vec::new(),
            timings: GossipTimings::default(),
            test_drop_probability: 0.0,
        }
    }

    /// Sets the bootstrap peers.
    pub fn with_bootstrap(mut self, peers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.bootstrap = peers.into_iter().collect();
        self
    }

    /// Checks the configuration, reporting every problem at once.
    pub fn validate(&self) -> Result<(), GossipError> {
        let mut problems = Vec::new();
        if self.node_id.is_empty() || self.node_id.len() > super::record::MAX_STRING_BYTES {
            problems.push("node_id must have 1 to 255 bytes".to_string());
        }
        if !(0.0..=1.0).contains(&self.test_drop_probability) {
            problems.push("test_drop_probability must be within 0.0..=1.0".to_string());
        }
        let t = &self.timings;
        if t.probe_rtt >= t.probe_period {
            problems.push("probe_rtt must be shorter than probe_period".to_string());
        }
        let zero = [
            ("probe_period", t.probe_period),
            ("probe_rtt", t.probe_rtt),
            ("suspect_to_down_after", t.suspect_to_down_after),
            ("gossip_period", t.gossip_period),
            ("anti_entropy_period", t.anti_entropy_period),
            ("maintenance_period", t.maintenance_period),
            ("resend_after", t.resend_after),
        ];
        for (name, d) in zero {
            if d.is_zero() {
                problems.push(format!("{name} must not be zero"));
            }
        }
        if t.tombstone_ttl < t.anti_entropy_period * 10 {
            problems.push("tombstone_ttl must be at least 10 anti-entropy periods".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GossipError::Config(problems.join("; ")))
        }
    }
}

/// Protocol timings. The defaults are chosen for `mini`'s goals — endpoint propagation p99
/// ≤ 0.5 s at 10 nodes, a dead node purged everywhere ≤ 4 s, idle traffic ≤ 50 kbit/s per node —
/// on a LAN, not memberlist's WAN-safe defaults (probe 1 s, suspicion 4 s+, NetworkDB's 30 s
/// anti-entropy):
///
/// - **Failure detection** (purge ≤ 4 s): the dead node's first probe, then a period for it to
///   fail (`probe_rtt` 200 ms leaves time for the indirect probes; foca counts the probe failed
///   when it starts the next one, +0.5 s), then `suspect_to_down_after` (0.7 s) for a live node to
///   hear it is suspected and refute, then a few gossip rounds for the *down* to spread
///   (0.2–0.3 s at 50 nodes): the purge ends ≈ 1.45 s after the first probe.
///   - The suspicion does not grow with the cluster (memberlist's log N). Only the prober's timer
///     declares a member down, and the prober tells the suspect at once and again halfway
///     through; the suspect refutes straight back to it (Lifeguard's buddy system; the agent's
///     `refute`). That round trip does not depend on how many nodes there are, so a longer
///     suspicion at 50 nodes only delayed every purge (by 0.5 s). It grows with the prober's
///     local health instead (below).
///   - The first probe is the random part. Each survivor probes one member per period (0.5 s)
///     in its own shuffled order, so the dead node is probed about twice a second, at random
///     moments: no one probes it for 2.5 s (what 4 s leaves) in about 1 death in 150 (e^-5).
///     Counted in a 50-host run: 3–5 probes of the dead node in its first 2 s.
///   - The agent has a thread of its own, so a busy node still refutes in time; one whose own
///     timers run late stretches its probes and suspicions (Lifeguard's local health, in
///     `runtime.rs`).
/// - **Propagation** (p99 ≤ 1 s at 50 nodes): the owner of a new record sends it at once to
///   **every** member it knows (one small packet each), and again, batched with its other young
///   records, `resend_after` (300 ms) later, for the packets the first push lost. The record also
///   goes out as a foca broadcast (to 3 members, relayed by receivers for which it is news,
///   `max_transmissions` (6, more from 10 members on: [`GossipTimings::transmissions`])
///   times per node). The epidemic alone misses a node now and then
///   (about 1 publish in 100 at 10 nodes: each transmission picks its members at random), and
///   that node then waited for anti-entropy — up to 2.5 s.
/// - **Repair** (`anti_entropy_period` 2 s, jittered ±25%): each node sends a random member the
///   hash of its whole table; only when they differ do the two exchange a 32-bucket digest and
///   the records of the differing buckets, so a lost broadcast or a late joiner converges within
///   about one period, and an idle cluster pays one ~90-byte packet per round.
/// - **Idle cost**: 2 pings + ~2 acks per second (146 bytes each on the wire, sealed), a table
///   hash every 2 s (73 bytes), an announce every 30 s (143 bytes), answered with a member list
///   that fills a packet (1 416 bytes at 50 members): ≈ 0.7 kB/s ≈ 5–6 kbit/s per node. The
///   member lists are what made one node's traffic over a few seconds uneven while announces
///   went to random members (a node that a few members happened to pick sent a few of them):
///   with announces every 15 s a 10 s window at 50 members read up to 10.2 kbit/s on one node,
///   with unjittered announces every 30 s (all nodes of a lab that joined together announcing
///   in the same second) up to 11.7, jittered up to 10.0. Now each member is announced to
///   once per period (the agent's `announce` schedule), so it sends one member list per 30 s.
///   Announces only heal membership views that gossip and the bootstrap re-announces
///   (`maintenance_period`) left apart; memberlist's full-state exchange runs every 30 s too.
#[derive(Clone, Debug)]
pub struct GossipTimings {
    /// SWIM probe period: each node pings one member per period.
    pub probe_period: Duration,
    /// How long to wait for an ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// How many members probe indirectly; also the fan-out of an immediate broadcast.
    pub indirect_probes: NonZeroUsize,
    /// How long a suspected member has to refute before it is declared down.
    pub suspect_to_down_after: Duration,
    /// How often pending updates and broadcasts are gossiped (only sent when there are some).
    pub gossip_period: Duration,
    /// How many members each gossip round goes to.
    pub gossip_fanout: NonZeroUsize,
    /// How many times each node sends each update or record broadcast, at least; more in a
    /// large cluster (see [`GossipTimings::transmissions`]).
    pub max_transmissions: NonZeroU8,
    /// How often each node announces to a member (heals divergent membership views); each
    /// member is announced to once per period (see the agent's `announce` schedule).
    pub announce_period: Duration,
    /// How often to announce to down members (heals partitions).
    pub announce_to_down_period: Duration,
    /// How long foca remembers a down member.
    pub remove_down_after: Duration,
    /// Period of the anti-entropy digest exchange with a random member.
    pub anti_entropy_period: Duration,
    /// How long a tombstone (and the memory of a down node, whose late records are refused)
    /// lives: long enough to outlast any late broadcast or anti-entropy round with an older copy.
    pub tombstone_ttl: Duration,
    /// How long records whose owner is not a member are kept (they may arrive just before the
    /// membership update announcing their owner); after that they are dropped.
    pub orphan_grace: Duration,
    /// Period of housekeeping: tombstone reaping, orphan sweep, bootstrap retries.
    pub maintenance_period: Duration,
    /// How long after pushing a new record of its own to every member a node pushes it (with
    /// the other records it published meanwhile) a second time, for lost packets.
    pub resend_after: Duration,
}

impl Default for GossipTimings {
    fn default() -> Self {
        GossipTimings {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            indirect_probes: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            suspect_to_down_after: Duration::from_millis(700),
            gossip_period: Duration::from_millis(100),
            gossip_fanout: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            max_transmissions: NonZeroU8::new(6).unwrap_or(NonZeroU8::MIN),
            announce_period: Duration::from_secs(30),
            announce_to_down_period: Duration::from_secs(5),
            remove_down_after: Duration::from_secs(600),
            anti_entropy_period: Duration::from_secs(2),
            tombstone_ttl: Duration::from_secs(300),
            orphan_grace: Duration::from_secs(10),
            maintenance_period: Duration::from_secs(1),
            resend_after: Duration::from_millis(300),
        }
    }
}

impl GossipTimings {
    /// How many times each node sends an update or broadcast in a cluster of `members`:
    /// [`max_transmissions`](Self::max_transmissions), or `5 × ⌈log10(members + 1)⌉` when that
    /// is more (memberlist scales its retransmissions the same way, with 4). Each of the `N`
    /// nodes that learns an update passes it on that many times to random members, so a node
    /// misses it with a probability of about `e^-transmissions`: with 6 at 50 nodes one node
    /// in ten kills did not hear of the death and found out by its own probes 18–30 s later;
    /// with 10, about one in 500.
    pub fn transmissions(&self, members: usize) -> NonZeroU8 {
        let scaled = 5.0 * ((members as f64) + 1.0).log10().ceil();
        let scaled = NonZeroU8::new(scaled.clamp(1.0, 255.0) as u8).unwrap_or(NonZeroU8::MIN);
        self.max_transmissions.max(scaled)
    }

    /// The foca configuration for these timings, in a cluster of `members`.
    pub(crate) fn foca_config(&self, members: usize) -> foca::Config {
        let two = NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN);
        foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: self.indirect_probes,
            max_transmissions: self.transmissions(members),
            suspect_to_down_after: self.suspect_to_down_after,
            remove_down_after: Some(self.remove_down_after),
            // foca's packets travel inside our sealed envelope.
            max_packet_size: NonZeroUsize::new(MAX_PACKET_BYTES - super::runtime::ENVELOPE_BYTES)
                .unwrap_or(NonZeroUsize::MIN),
            notify_down_members: true,
            // The agent announces to members itself, on a schedule that has each member answer
            // one announce per period (`announce`), instead of foca's random pick.
            periodic_announce: None,
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.announce_to_down_period,
                num_members: two,
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_period,
                num_members: self.gossip_fanout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_all_reported() {
        let ok = GossipConfig::new("n1", "127.0.0.1:0".parse().unwrap(), GossipKeys::random(1));
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.node_id.clear();
        bad.test_drop_probability = 2.0;
        bad.timings.probe_rtt = bad.timings.probe_period;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("node_id") && err.contains("test_drop") && err.contains("probe_rtt"));
    }

    #[test]
    fn transmissions_grow_with_the_cluster_and_never_below_the_setting() {
        let t = GossipTimings::default();
        let tx = |n| t.transmissions(n).get();
        assert_eq!((tx(1), tx(5), tx(9)), (6, 6, 6));
        assert_eq!((tx(10), tx(50), tx(99)), (10, 10, 10));
        assert_eq!((tx(100), tx(1000)), (15, 20));
        let mut many = t.clone();
        many.max_transmissions = NonZeroU8::new(12).unwrap();
        assert_eq!(many.transmissions(50).get(), 12);
    }
}
