//! The state the agent shares with foca's broadcast handler and with the [`Gossip`] handle, and
//! the rules for accepting records.
//!
//! [`Gossip`]: super::Gossip

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::identity::NodeIdentity;
use super::owner::RecordAuth;
use super::record::{EndpointRecord, VersionClock};
use super::table::{EndpointTable, is_expired_tombstone};

/// Versions further than this in the future (by the wall clock) are refused: a record with a
/// huge version could never be replaced. Clocks in a cluster are expected within minutes.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// State shared by the agent task, foca's broadcast handler (which foca owns, so it needs a
/// handle of its own) and the [`Gossip`](super::Gossip) handle (snapshots). The mutex is a std
/// one: it is never held across an await, and every critical section is a few map operations.
pub(crate) struct Shared {
    /// This node's id.
    pub(crate) local_node: String,
    /// See [`GossipTimings::tombstone_ttl`](super::GossipTimings::tombstone_ttl).
    pub(crate) tombstone_ttl: Duration,
    /// Binds records to their owners, if configured.
    pub(crate) auth: Option<RecordAuth>,
    /// Records refused because they were not signed by the node they name.
    pub(crate) refused: AtomicU64,
    inner: Mutex<State>,
}

/// See [`Shared`].
#[derive(Default)]
pub(crate) struct State {
    pub(crate) table: EndpointTable,
    pub(crate) clock: VersionClock,
    /// Nodes SWIM declared down (and not back since), with when: their records are refused so a
    /// late broadcast or a slower peer's anti-entropy cannot bring them back.
    pub(crate) down_nodes: HashMap<String, Instant>,
    /// Live members other than this node, as of the agent's last step.
    pub(crate) members: Vec<NodeIdentity>,
    /// Live records this node owns but does not know: leftovers of a previous life of this node,
    /// to be tombstoned by the agent.
    pub(crate) ghosts: Vec<EndpointRecord>,
    /// The table changed since the agent last told subscribers.
    pub(crate) changed: bool,
    /// News arrived from the network: the agent pushes pending broadcasts at once.
    pub(crate) forward: bool,
}

/// What happened to a record offered to the table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Merged and news: forward it.
    News,
    /// Already known, or an older version.
    Known,
    /// Refused (owner down, expired tombstone, version from the far future, or a ghost).
    Refused(&'static str),
}

impl Shared {
    pub(crate) fn new(
        local_node: String,
        tombstone_ttl: Duration,
        auth: Option<RecordAuth>,
    ) -> Self {
        Shared {
            local_node,
            tombstone_ttl,
            auth,
            refused: AtomicU64::new(0),
            inner: Mutex::new(State::default()),
        }
    }

    /// Whether a record from the network may be offered to the table: with a [`RecordAuth`],
    /// only if it is signed by the node it names as owner (counted when not).
    pub(crate) fn check_owner(&self, record: &EndpointRecord) -> Result<(), &'static str> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        auth.verify(record).inspect_err(|_| {
            self.refused.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// Locks the state. A poisoned lock (a panic while holding it) still holds a consistent
    /// table: every mutation is a single map operation.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Offers a record this node publishes (already versioned by the agent).
    pub(crate) fn accept_local(&mut self, record: EndpointRecord) -> Verdict {
        self.clock.observe(record.version);
        if self.table.merge(record) {
            self.changed = true;
            Verdict::News
        } else {
            Verdict::Known
        }
    }

    /// Offers a record from the network (already decoded and validated).
    pub(crate) fn accept_remote(
        &mut self,
        local_node: &str,
        record: EndpointRecord,
        now_micros: u64,
        tombstone_ttl: Duration,
    ) -> Verdict {
        if record.version > now_micros.saturating_add(MAX_CLOCK_SKEW.as_micros() as u64) {
            return Verdict::Refused("version too far in the future");
        }
        if is_expired_tombstone(&record, now_micros, tombstone_ttl) {
            return Verdict::Refused("expired tombstone");
        }
        if self.down_nodes.contains_key(&record.node_id) {
            return Verdict::Refused("owner is down");
        }
        self.clock.observe(record.version);
        if record.node_id == local_node && !record.deleted {
            let known = self.table.get(&record.network_id, &record.endpoint_id);
            if known.is_none_or(|k| record.supersedes(k)) {
                // Only this node makes versions of its records, so a newer one comes from a
                // previous life of this node: the endpoint is gone. The agent tombstones it.
                self.ghosts.push(record);
                return Verdict::Refused("record of a previous life of this node");
            }
            return Verdict::Known;
        }
        if self.table.merge(record) {
            self.changed = true;
            self.forward = true;
            Verdict::News
        } else {
            Verdict::Known
        }
    }

    /// Whether `record` could change nothing: the table holds a version of it that it does not
    /// supersede (the same record again, or an older one). Such a record needs no signature
    /// check (the held one was checked when it came): anti-entropy resends whole buckets of
    /// records every peer already has, and each check is an ECDSA verification.
    pub(crate) fn changes_nothing(&self, record: &EndpointRecord) -> bool {
        self.table
            .get(&record.network_id, &record.endpoint_id)
            .is_some_and(|known| !record.supersedes(known))
    }

    /// SWIM declared `node_id` down: drop its records now and refuse late ones.
    pub(crate) fn node_down(&mut self, node_id: &str, now: Instant) -> usize {
        self.down_nodes.insert(node_id.to_owned(), now);
        let purged = self.table.purge_node(node_id);
        if purged > 0 {
            self.changed = true;
        }
        purged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::record::sample;

    const TTL: Duration = Duration::from_secs(300);
    const NOW: u64 = 1_000_000_000_000;

    #[test]
    fn remote_news_is_merged_and_forwarded() {
        let mut s = State::default();
        assert_eq!(
            s.accept_remote("me", sample("n", "e", "b", NOW), NOW, TTL),
            Verdict::News
        );
        assert!(s.changed && s.forward);
        assert_eq!(
            s.accept_remote("me", sample("n", "e", "b", NOW), NOW, TTL),
            Verdict::Known
        );
        assert!(s.clock.tick(0) > NOW, "the clock follows versions seen");
    }

    #[test]
    fn only_a_record_that_supersedes_the_held_one_can_change_anything() {
        let mut s = State::default();
        let held = sample("n", "e", "b", NOW);
        assert!(!s.changes_nothing(&held), "nothing held yet");
        s.accept_remote("me", held.clone(), NOW, TTL);
        assert!(s.changes_nothing(&held), "the same record again");
        assert!(
            s.changes_nothing(&sample("n", "e", "b", NOW - 1)),
            "an older one"
        );
        let mut newer = sample("n", "e", "b", NOW + 1);
        assert!(!s.changes_nothing(&newer));
        // Same version, other content: the precedence order decides, so it may supersede.
        newer.version = NOW;
        newer.vtep = std::net::Ipv4Addr::new(10, 9, 9, 9);
        assert_eq!(
            s.changes_nothing(&newer),
            !newer.supersedes(s.table.get("n", "e").unwrap())
        );
        assert!(!s.changes_nothing(&sample("n", "other", "b", NOW)));
    }

    #[test]
    fn records_of_a_down_node_are_purged_and_late_ones_refused() {
        let mut s = State::default();
        s.accept_remote("me", sample("n", "e1", "b", NOW), NOW, TTL);
        s.accept_remote("me", sample("n", "e2", "c", NOW), NOW, TTL);
        assert_eq!(s.node_down("b", Instant::now()), 1);
        assert_eq!(s.table.len(), 1);
        assert!(matches!(
            s.accept_remote("me", sample("n", "e1", "b", NOW + 1), NOW, TTL),
            Verdict::Refused(_)
        ));
        s.down_nodes.remove("b");
        assert_eq!(
            s.accept_remote("me", sample("n", "e1", "b", NOW + 1), NOW, TTL),
            Verdict::News
        );
    }

    #[test]
    fn expired_tombstones_and_future_versions_are_refused() {
        let mut s = State::default();
        let mut old = sample("n", "e", "b", NOW - TTL.as_micros() as u64 - 1);
        old.deleted = true;
        assert!(matches!(
            s.accept_remote("me", old, NOW, TTL),
            Verdict::Refused(_)
        ));
        let future = sample("n", "e", "b", NOW + MAX_CLOCK_SKEW.as_micros() as u64 + 1);
        assert!(matches!(
            s.accept_remote("me", future, NOW, TTL),
            Verdict::Refused(_)
        ));
        assert!(s.table.is_empty());
    }

    #[test]
    fn own_records_from_a_previous_life_become_ghosts() {
        let mut s = State::default();
        assert!(matches!(
            s.accept_remote("me", sample("n", "e", "me", NOW), NOW, TTL),
            Verdict::Refused(_)
        ));
        assert_eq!(s.ghosts.len(), 1);
        assert!(s.table.is_empty());
        // A record the node knows at the same or a newer version is just known.
        s.accept_local(sample("n", "e2", "me", NOW + 5));
        assert_eq!(
            s.accept_remote("me", sample("n", "e2", "me", NOW), NOW, TTL),
            Verdict::Known
        );
        assert_eq!(s.ghosts.len(), 1);
    }
}
