//! One overlay endpoint as gossiped between nodes, and the rules that decide which of two
//! versions of it wins.

use std::cmp::Ordering;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::error::GossipError;

/// Largest encoded size of one record, in bytes. A record travels as one foca custom broadcast,
/// which must fit a UDP packet (1400 bytes) together with foca's header and membership updates.
pub const MAX_RECORD_BYTES: usize = 1000;
/// Longest id or name a record may carry, in bytes.
pub const MAX_STRING_BYTES: usize = 255;
/// Most aliases a record may carry.
pub const MAX_ALIASES: usize = 16;
/// Most published ports a record may carry.
pub const MAX_PORTS: usize = 32;
/// Longest signature a record may carry (an ECDSA P-256 signature has 64 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 128;

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A port of the service published on every node (`--publish PUBLISHED:TARGET/proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on every node.
    pub published: u16,
    /// The port inside the task.
    pub target: u16,
}

/// Where one task's interface on one overlay network lives: the unit the gossip plane spreads.
///
/// There is one record per (`network_id`, `endpoint_id`), owned by `node_id`, the node running
/// the task; only the owner publishes new versions of it. Of two versions of a record, the one
/// that [`supersedes`](EndpointRecord::supersedes) the other wins everywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The overlay network.
    pub network_id: String,
    /// The endpoint: the task id.
    pub endpoint_id: String,
    /// The owner: the node running the task. Set by [`Gossip::publish`](super::Gossip::publish).
    pub node_id: String,
    /// The owner's data-path address, where VXLAN packets for this endpoint go.
    pub vtep: Ipv4Addr,
    /// The task's overlay address.
    pub ip: Ipv4Addr,
    /// Prefix length of the overlay subnet (`0..=32`); 32 when only the address is known.
    pub prefix_len: u8,
    /// The task interface's MAC address (`02:42:` + the IP's bytes by convention).
    pub mac: [u8; 6],
    /// The service the task belongs to.
    pub service_id: String,
    /// The service's name (a DNS name on the network).
    pub service_name: String,
    /// The task's name (`service.slot.taskid`), also a DNS name.
    pub task_name: String,
    /// The service's virtual IP on this network, if the service has one (endpoint mode `vip`).
    pub vip: Option<Ipv4Addr>,
    /// Extra DNS names of the task on this network.
    pub aliases: Vec<String>,
    /// The service's published ports.
    pub ports: Vec<PublishedPort>,
    /// Version: a hybrid logical clock (microseconds since the Unix epoch, never going back and
    /// always above any version the owner has seen), assigned by the owner on every change.
    pub version: u64,
    /// Tombstone: the endpoint is gone. Kept for a while so a late, older broadcast cannot bring
    /// the endpoint back, then reaped.
    pub deleted: bool,
    /// The owner's signature over the rest of the record (see `RecordAuth`); empty when the
    /// cluster does not bind records to their owners.
    pub signature: Vec<u8>,
}

impl EndpointRecord {
    /// The record's key: (network, endpoint).
    pub fn key(&self) -> (&str, &str) {
        (&self.network_id, &self.endpoint_id)
    }

    /// Whether `self` wins over `other`, another version of the same record.
    ///
    /// The higher version wins. On equal versions (only possible after a bug or between two
    /// lives of an owner) the tombstone wins, then the greater owner id, then the greater record
    /// by field order — so every node picks the same winner. A record never supersedes itself.
    pub fn supersedes(&self, other: &EndpointRecord) -> bool {
        self.precedence(other) == Ordering::Greater
    }

    fn precedence(&self, other: &EndpointRecord) -> Ordering {
        self.version
            .cmp(&other.version)
            .then(self.deleted.cmp(&other.deleted))
            .then_with(|| self.node_id.cmp(&other.node_id))
            .then_with(|| self.cmp(other))
    }

    /// The overlay address with its prefix, if the prefix length is valid.
    pub fn ip_net(&self) -> Option<ipnet::Ipv4Net> {
        ipnet::Ipv4Net::new(self.ip, self.prefix_len).ok()
    }

    /// The MAC address as `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }

    /// Checks the bounds every record must respect (they also apply to records from the
    /// network, which are untrusted).
    pub fn validate(&self) -> Result<(), GossipError> {
        let invalid = |reason: String| {
            Err(GossipError::InvalidRecord {
                network_id: truncate(&self.network_id),
                endpoint_id: truncate(&self.endpoint_id),
                reason,
            })
        };
        if self.network_id.is_empty() || self.endpoint_id.is_empty() {
            return invalid("network_id and endpoint_id must not be empty".into());
        }
        let strings = [
            ("network_id", &self.network_id),
            ("endpoint_id", &self.endpoint_id),
            ("node_id", &self.node_id),
            ("service_id", &self.service_id),
            ("service_name", &self.service_name),
            ("task_name", &self.task_name),
        ];
        for (field, value) in strings {
            if value.len() > MAX_STRING_BYTES {
                return invalid(format!("{field} is longer than {MAX_STRING_BYTES} bytes"));
            }
        }
        if self.aliases.len() > MAX_ALIASES {
            return invalid(format!("more than {MAX_ALIASES} aliases"));
        }
        if self.aliases.iter().any(|a| a.len() > MAX_STRING_BYTES) {
            return invalid(format!("an alias is longer than {MAX_STRING_BYTES} bytes"));
        }
        if self.ports.len() > MAX_PORTS {
            return invalid(format!("more than {MAX_PORTS} published ports"));
        }
        if self.signature.len() > MAX_SIGNATURE_BYTES {
            return invalid(format!("signature above {MAX_SIGNATURE_BYTES} bytes"));
        }
        if self.prefix_len > 32 {
            return invalid(format!("prefix length {} is above 32", self.prefix_len));
        }
        let size = self.encode().len();
        if size > MAX_RECORD_BYTES {
            return invalid(format!("encodes to {size} bytes, above {MAX_RECORD_BYTES}"));
        }
        Ok(())
    }

    /// The record's wire form (postcard).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and validates a record from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<EndpointRecord, GossipError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(GossipError::Decode(format!(
                "record of {} bytes, above {MAX_RECORD_BYTES}",
                bytes.len()
            )));
        }
        let record: EndpointRecord =
            postcard::from_bytes(bytes).map_err(|e| GossipError::Decode(e.to_string()))?;
        record.validate()?;
        Ok(record)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The owner's version clock: a hybrid logical clock in microseconds since the Unix epoch.
///
/// A new version is above the previous one, above every version seen from other nodes, and at
/// least the wall clock — so a restarted node's records beat those of its previous life, and a
/// version tells roughly when it was made (which is how tombstones expire at the same moment on
/// every node).
#[derive(Debug, Default, Clone)]
pub struct VersionClock {
    last: u64,
}

impl VersionClock {
    /// A new version, given the wall clock now.
    pub fn tick(&mut self, now_micros: u64) -> u64 {
        self.last = (self.last + 1).max(now_micros);
        self.last
    }

    /// Takes note of a version seen elsewhere.
    pub fn observe(&mut self, version: u64) {
        self.last = self.last.max(version);
    }
}

/// The wall clock in microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) fn sample(network: &str, endpoint: &str, node: &str, version: u64) -> EndpointRecord {
    EndpointRecord {
        network_id: network.into(),
        endpoint_id: endpoint.into(),
        node_id: node.into(),
        vtep: Ipv4Addr::new(192, 168, 0, 1),
        ip: Ipv4Addr::new(10, 0, 0, 2),
        prefix_len: 24,
        mac: [0x02, 0x42, 10, 0, 0, 2],
        service_id: "svc1".into(),
        service_name: "web".into(),
        task_name: "web.1.abc".into(),
        vip: Some(Ipv4Addr::new(10, 0, 0, 100)),
        aliases: vec!["www".into()],
        ports: vec![PublishedPort {
            protocol: Protocol::Tcp,
            published: 8080,
            target: 80,
        }],
        version,
        deleted: false,
        signature: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_version_wins_and_ties_are_deterministic() {
        let old = sample("n", "e", "a", 1);
        let new = sample("n", "e", "a", 2);
        assert!(new.supersedes(&old));
        assert!(!old.supersedes(&new));
        assert!(!old.supersedes(&old.clone()));

        let mut tomb = old.clone();
        tomb.deleted = true;
        assert!(tomb.supersedes(&old), "same version: the tombstone wins");
        assert!(!old.supersedes(&tomb));

        let other_owner = sample("n", "e", "b", 1);
        assert!(
            other_owner.supersedes(&old),
            "same version: the greater owner wins"
        );
        assert!(!old.supersedes(&other_owner));

        let mut other_ip = old.clone();
        other_ip.ip = Ipv4Addr::new(10, 0, 0, 3);
        assert!(other_ip.supersedes(&old) != old.supersedes(&other_ip));
    }

    #[test]
    fn encode_decode_roundtrip_and_bounds() {
        let r = sample("n", "e", "a", 7);
        assert_eq!(EndpointRecord::decode(&r.encode()).unwrap(), r);
        assert!(EndpointRecord::decode(&[0xff; 20]).is_err());
        assert!(EndpointRecord::decode(&[]).is_err());
        let mut big = r.clone();
        big.aliases = vec!["x".repeat(200); 10];
        assert!(big.validate().is_err());
        assert!(EndpointRecord::decode(&big.encode()).is_err());
        let mut bad = r;
        bad.prefix_len = 33;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn clock_is_monotonic_and_follows_what_it_sees() {
        let mut c = VersionClock::default();
        assert_eq!(c.tick(100), 100);
        assert_eq!(c.tick(50), 101);
        c.observe(500);
        assert_eq!(c.tick(200), 501);
        assert_eq!(c.tick(1000), 1000);
    }

    #[test]
    fn mac_and_net_helpers() {
        let r = sample("n", "e", "a", 1);
        assert_eq!(r.mac_string(), "02:42:0a:00:00:02");
        assert_eq!(r.ip_net().unwrap().to_string(), "10.0.0.2/24");
    }
}
