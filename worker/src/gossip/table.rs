//! The endpoint table: every record a node knows, merged by version.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::record::EndpointRecord;

/// Number of buckets in a [`Digest`].
pub const DIGEST_BUCKETS: usize = 32;

/// A summary of a table for anti-entropy: records are spread over [`DIGEST_BUCKETS`] buckets by
/// a stable hash of their key, and each bucket holds the XOR of its records' hashes (key, owner,
/// version, tombstone). Two tables with equal buckets hold the same versions; a differing bucket
/// says which records to exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest(pub [u64; DIGEST_BUCKETS]);

impl Digest {
    /// Indexes of the buckets that differ between `self` and `other`.
    pub fn differing(&self, other: &Digest) -> Vec<usize> {
        (0..DIGEST_BUCKETS)
            .filter(|&i| self.0[i] != other.0[i])
            .collect()
    }

    /// One hash of the whole digest: equal roots mean equal tables (barring a 64-bit
    /// collision, which would only delay a repair until a record changes again).
    pub fn root(&self) -> u64 {
        let mut h = Fnv::new();
        for b in self.0 {
            h.write(&b.to_le_bytes());
        }
        h.finish()
    }
}

/// Every endpoint record a node knows, one per (network, endpoint), tombstones included.
///
/// Pure data: no clock, no I/O. The gossip agent decides what to merge (see its acceptance
/// rules); the table only keeps the winning version of each record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointTable {
    records: BTreeMap<(String, String), EndpointRecord>,
}

impl EndpointTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one version of a record; returns whether it was news (the table changed): the
    /// record was unknown or `record` [supersedes](EndpointRecord::supersedes) the known version.
    pub fn merge(&mut self, record: EndpointRecord) -> bool {
        let key = (record.network_id.clone(), record.endpoint_id.clone());
        match self.records.get_mut(&key) {
            Some(known) if !record.supersedes(known) => false,
            Some(known) => {
                *known = record;
                true
            }
            None => {
                self.records.insert(key, record);
                true
            }
        }
    }

    /// The known version of one record (possibly a tombstone).
    pub fn get(&self, network_id: &str, endpoint_id: &str) -> Option<&EndpointRecord> {
        self.records
            .get(&(network_id.to_owned(), endpoint_id.to_owned()))
    }

    /// Every record, tombstones included, ordered by (network, endpoint).
    pub fn iter(&self) -> impl Iterator<Item = &EndpointRecord> {
        self.records.values()
    }

    /// Number of records, tombstones included.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the table holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The networks that have at least one record.
    pub fn networks(&self) -> BTreeSet<&str> {
        self.records.keys().map(|(n, _)| n.as_str()).collect()
    }

    /// Every record of one network, tombstones included.
    pub fn network<'a>(
        &'a self,
        network_id: &'a str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        let start = (network_id.to_owned(), String::new());
        self.records
            .range(start..)
            .take_while(move |((n, _), _)| n == network_id)
            .map(|(_, r)| r)
    }

    /// The live (not deleted) endpoints of one network that other nodes own: the VXLAN peers
    /// node `local_node_id` must program for that network.
    pub fn live_remote<'a>(
        &'a self,
        network_id: &'a str,
        local_node_id: &'a str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        self.network(network_id)
            .filter(move |r| !r.deleted && r.node_id != local_node_id)
    }

    /// The live endpoints of every network, whatever their owner.
    pub fn live(&self) -> impl Iterator<Item = &EndpointRecord> {
        self.records.values().filter(|r| !r.deleted)
    }

    /// Every record (tombstones included) owned by one node.
    pub fn owned_by<'a>(&'a self, node_id: &'a str) -> impl Iterator<Item = &'a EndpointRecord> {
        self.records.values().filter(move |r| r.node_id == node_id)
    }

    /// The nodes that own at least one record.
    pub fn owners(&self) -> BTreeSet<&str> {
        self.records.values().map(|r| r.node_id.as_str()).collect()
    }

    /// Drops every record owned by `node_id` (SWIM declared it down: its endpoints are gone
    /// now, not after a tombstone round). Returns how many records were dropped.
    pub fn purge_node(&mut self, node_id: &str) -> usize {
        let before = self.records.len();
        self.records.retain(|_, r| r.node_id != node_id);
        before - self.records.len()
    }

    /// Reaps tombstones older than `ttl`, judged by their version (a hybrid-logical-clock time in
    /// microseconds, so every node reaps a tombstone at about the same moment). `ttl` must beat
    /// any late copy of an older version: broadcasts live a few seconds and anti-entropy repairs
    /// within one period, so minutes are plenty. Returns how many were reaped.
    pub fn reap_tombstones(&mut self, now_micros: u64, ttl: Duration) -> usize {
        let before = self.records.len();
        self.records
            .retain(|_, r| !is_expired_tombstone(r, now_micros, ttl));
        before - self.records.len()
    }

    /// The table's [`Digest`].
    pub fn digest(&self) -> Digest {
        let mut buckets = [0u64; DIGEST_BUCKETS];
        for r in self.records.values() {
            buckets[bucket_of(r)] ^= record_hash(r);
        }
        Digest(buckets)
    }

    /// The records (tombstones included) that fall in the given digest buckets.
    pub fn in_buckets(&self, buckets: &[usize]) -> Vec<&EndpointRecord> {
        let wanted: BTreeSet<usize> = buckets.iter().copied().collect();
        self.records
            .values()
            .filter(|r| wanted.contains(&bucket_of(r)))
            .collect()
    }
}

/// Whether `record` is a tombstone older than `ttl`.
pub fn is_expired_tombstone(record: &EndpointRecord, now_micros: u64, ttl: Duration) -> bool {
    record.deleted && now_micros.saturating_sub(record.version) > ttl.as_micros() as u64
}

fn bucket_of(r: &EndpointRecord) -> usize {
    let mut h = Fnv::new();
    h.write(r.network_id.as_bytes());
    h.write(&[0]);
    h.write(r.endpoint_id.as_bytes());
    (h.finish() % DIGEST_BUCKETS as u64) as usize
}

fn record_hash(r: &EndpointRecord) -> u64 {
    let mut h = Fnv::new();
    h.write(r.network_id.as_bytes());
    h.write(&[0]);
    h.write(r.endpoint_id.as_bytes());
    h.write(&[0]);
    h.write(r.node_id.as_bytes());
    h.write(&[0]);
    h.write(&r.version.to_le_bytes());
    h.write(&[u8::from(r.deleted)]);
    h.finish()
}

/// FNV-1a, 64 bits: stable across builds and machines, unlike std's hasher.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::record::sample;

    #[test]
    fn merge_keeps_the_winner() {
        let mut t = EndpointTable::new();
        assert!(t.merge(sample("n", "e", "a", 2)));
        assert!(
            !t.merge(sample("n", "e", "a", 2)),
            "same version is not news"
        );
        assert!(
            !t.merge(sample("n", "e", "a", 1)),
            "older version is not news"
        );
        assert_eq!(t.get("n", "e").unwrap().version, 2);
        assert!(t.merge(sample("n", "e", "a", 3)));
        let mut tomb = sample("n", "e", "a", 3);
        tomb.deleted = true;
        assert!(t.merge(tomb.clone()), "tombstone beats the same version");
        assert!(
            !t.merge(sample("n", "e", "a", 3)),
            "a late live copy does not resurrect it"
        );
        assert!(t.get("n", "e").unwrap().deleted);
        assert_eq!(t.len(), 1);
        assert_eq!(t.live().count(), 0);
    }

    #[test]
    fn merge_order_does_not_matter() {
        let versions = [
            sample("n", "e", "a", 5),
            sample("n", "e", "b", 5),
            sample("n", "e", "a", 4),
            {
                let mut t = sample("n", "e", "a", 5);
                t.deleted = true;
                t
            },
        ];
        let mut first: Option<EndpointTable> = None;
        for rotation in 0..versions.len() {
            let mut t = EndpointTable::new();
            for i in 0..versions.len() {
                t.merge(versions[(i + rotation) % versions.len()].clone());
            }
            for r in versions.iter().rev() {
                t.merge(r.clone());
            }
            match &first {
                None => first = Some(t),
                Some(f) => assert_eq!(f, &t),
            }
        }
        assert!(first.unwrap().get("n", "e").unwrap().deleted);
    }

    #[test]
    fn per_network_queries_and_remote_view() {
        let mut t = EndpointTable::new();
        t.merge(sample("n1", "e1", "a", 1));
        t.merge(sample("n1", "e2", "b", 1));
        t.merge(sample("n2", "e3", "b", 1));
        let mut dead = sample("n1", "e4", "b", 1);
        dead.deleted = true;
        t.merge(dead);
        t.merge(sample("n10", "e5", "b", 1));
        assert_eq!(t.network("n1").count(), 3);
        assert_eq!(t.network("n10").count(), 1);
        let remote: Vec<_> = t
            .live_remote("n1", "a")
            .map(|r| r.endpoint_id.clone())
            .collect();
        assert_eq!(remote, vec!["e2".to_string()]);
        assert_eq!(
            t.networks().into_iter().collect::<Vec<_>>(),
            vec!["n1", "n10", "n2"]
        );
        assert_eq!(t.owned_by("b").count(), 4);
        assert_eq!(t.owners().len(), 2);
    }

    #[test]
    fn purge_drops_every_record_of_a_node() {
        let mut t = EndpointTable::new();
        t.merge(sample("n1", "e1", "a", 1));
        t.merge(sample("n1", "e2", "b", 1));
        t.merge(sample("n2", "e3", "b", 1));
        assert_eq!(t.purge_node("b"), 2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.purge_node("b"), 0);
    }

    #[test]
    fn tombstones_are_reaped_after_the_ttl() {
        let ttl = Duration::from_secs(60);
        let mut t = EndpointTable::new();
        let mut tomb = sample("n", "old", "a", 1_000_000);
        tomb.deleted = true;
        t.merge(tomb);
        t.merge(sample("n", "live", "a", 1_000_000));
        assert_eq!(t.reap_tombstones(1_000_000 + 59_000_000, ttl), 0);
        assert_eq!(t.reap_tombstones(1_000_000 + 61_000_000, ttl), 1);
        assert_eq!(t.len(), 1, "live records are never reaped");
    }

    #[test]
    fn digests_find_the_differing_records() {
        let mut a = EndpointTable::new();
        let mut b = EndpointTable::new();
        for i in 0..50 {
            a.merge(sample("n", &format!("e{i}"), "a", 1));
            b.merge(sample("n", &format!("e{i}"), "a", 1));
        }
        assert!(a.digest().differing(&b.digest()).is_empty());
        b.merge(sample("n", "e7", "a", 2));
        let diff = a.digest().differing(&b.digest());
        assert_eq!(diff.len(), 1);
        let sent: Vec<_> = b.in_buckets(&diff).into_iter().cloned().collect();
        assert!(sent.len() < 50 && sent.iter().any(|r| r.endpoint_id == "e7"));
        for r in sent {
            a.merge(r);
        }
        assert_eq!(a.digest(), b.digest());
    }
}
