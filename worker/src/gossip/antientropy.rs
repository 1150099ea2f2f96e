//! Anti-entropy: the periodic digest exchange that repairs lost broadcasts and brings late
//! joiners up to date.
//!
//! It runs over the gossip UDP socket rather than a TCP exchange: every message is
//! self-contained (a digest, or a chunk of whole records, each mergeable alone), so a lost packet
//! only delays the records it carried to the next round — no reassembly, no connection state, no
//! second listener, and the test drop hook covers it too. The exchange:
//!
//! 0. A sends B `Summary { root }`: one hash of A's whole table (~90 bytes sealed). When B's
//!    table hashes the same, B sends nothing: an idle cluster's round costs one small packet.
//!    Otherwise B starts the exchange below towards A.
//! 1. A sends B `Digest { reply: true, buckets }` (32 bucket hashes, ~300 bytes).
//! 2. B sends A its records in the buckets that differ (chunks under 1400 bytes), then its own
//!    digest with `reply: false`.
//! 3. A sends B its records in the buckets that differ from B's digest.
//!
//! A joining node starts at step 1 (it is certainly out of sync). Out of sync, only the
//! differing buckets travel. `Summary` came after the others (its variant index is the last):
//! a node of an older version drops it as undecodable and just does not answer.
//! A node answers only members it knows (no reflection towards arbitrary addresses).
//!
//! Two more messages ride on the same packets, for SWIM rather than records: `Suspected` (a
//! prober tells the member whose probe failed) and `Alive` (that member's refutation, straight
//! back to the prober); see the agent's `refute`. Like `Summary`, a node of an older version
//! drops them.

use serde::{Deserialize, Serialize};

use super::config::MAX_PACKET_BYTES;
use super::error::GossipError;
use super::identity::NodeIdentity;
use super::record::EndpointRecord;
use super::runtime::ENVELOPE_BYTES;
use super::table::{DIGEST_BUCKETS, Digest};

/// An anti-entropy message as received.
#[derive(Debug, Deserialize)]
pub(crate) enum SyncMessage {
    /// The sender's digest; `reply`: answer with yours.
    Digest { reply: bool, buckets: Vec<u64> },
    /// Records the receiver may lack.
    Records { records: Vec<EndpointRecord> },
    /// The hash of the sender's whole table ([`Digest::root`]); answer with a digest only when
    /// yours differs.
    Summary { root: u64 },
    /// "I suspect you at this (foca) incarnation": sent by a prober to the member whose probe
    /// failed, at once (Lifeguard's buddy system). The receiver refutes.
    Suspected { incarnation: u16 },
    /// "I am alive at this incarnation": a suspected member's refutation, sent straight back to
    /// the prober that suspects it (the one node whose timer would declare it down).
    Alive {
        identity: NodeIdentity,
        incarnation: u16,
    },
}

/// The same message, borrowed, for sending (same wire form: variants in the same order).
#[derive(Serialize)]
enum SyncMessageRef<'a> {
    Digest {
        reply: bool,
        buckets: &'a [u64],
    },
    Records {
        records: &'a [&'a EndpointRecord],
    },
    Summary {
        root: u64,
    },
    Suspected {
        incarnation: u16,
    },
    Alive {
        identity: &'a NodeIdentity,
        incarnation: u16,
    },
}

/// Room for records in one packet: the envelope, the variant tag and the vector length go first.
const RECORDS_BUDGET: usize = MAX_PACKET_BYTES - ENVELOPE_BYTES - 1 - 3;

/// Encodes a digest message.
pub(crate) fn encode_digest(digest: &Digest, reply: bool) -> Vec<u8> {
    postcard::to_allocvec(&SyncMessageRef::Digest {
        reply,
        buckets: &digest.0,
    })
    .unwrap_or_default()
}

/// Encodes a summary message (the hash of a whole table).
pub(crate) fn encode_summary(digest: &Digest) -> Vec<u8> {
    postcard::to_allocvec(&SyncMessageRef::Summary {
        root: digest.root(),
    })
    .unwrap_or_default()
}

/// Encodes a suspicion notice (see [`SyncMessage::Suspected`]).
pub(crate) fn encode_suspected(incarnation: u16) -> Vec<u8> {
    postcard::to_allocvec(&SyncMessageRef::Suspected { incarnation }).unwrap_or_default()
}

/// Encodes a refutation (see [`SyncMessage::Alive`]).
pub(crate) fn encode_alive(identity: &NodeIdentity, incarnation: u16) -> Vec<u8> {
    postcard::to_allocvec(&SyncMessageRef::Alive {
        identity,
        incarnation,
    })
    .unwrap_or_default()
}

/// Encodes records into as many packets as needed, each under the packet limit.
pub(crate) fn encode_records(records: &[&EndpointRecord]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut chunk: Vec<&EndpointRecord> = Vec::new();
    let mut size = 0;
    for r in records {
        let len = postcard::experimental::serialized_size(*r).unwrap_or(usize::MAX);
        if len > RECORDS_BUDGET {
            continue; // cannot happen for validated records
        }
        if size + len > RECORDS_BUDGET {
            packets.push(encode_chunk(&chunk));
            chunk.clear();
            size = 0;
        }
        chunk.push(r);
        size += len;
    }
    if !chunk.is_empty() {
        packets.push(encode_chunk(&chunk));
    }
    packets
}

fn encode_chunk(chunk: &[&EndpointRecord]) -> Vec<u8> {
    postcard::to_allocvec(&SyncMessageRef::Records { records: chunk }).unwrap_or_default()
}

/// Decodes an anti-entropy message from untrusted bytes (the envelope already removed).
/// Records are validated one by one later; the digest's size is checked here.
pub(crate) fn decode(bytes: &[u8]) -> Result<SyncMessage, GossipError> {
    let msg: SyncMessage =
        postcard::from_bytes(bytes).map_err(|e| GossipError::Decode(e.to_string()))?;
    if let SyncMessage::Digest { buckets, .. } = &msg
        && buckets.len() != DIGEST_BUCKETS
    {
        return Err(GossipError::Decode(format!(
            "digest of {} buckets, expected {DIGEST_BUCKETS}",
            buckets.len()
        )));
    }
    Ok(msg)
}

/// The digest carried by a decoded message.
pub(crate) fn digest_of(buckets: &[u64]) -> Digest {
    let mut d = [0u64; DIGEST_BUCKETS];
    d.copy_from_slice(&buckets[..DIGEST_BUCKETS]);
    Digest(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::record::sample;
    use crate::gossip::table::EndpointTable;

    #[test]
    fn records_are_chunked_under_the_packet_limit_and_roundtrip() {
        let records: Vec<_> = (0..100)
            .map(|i| sample("net", &format!("e{i}"), "a", i))
            .collect();
        let refs: Vec<_> = records.iter().collect();
        let packets = encode_records(&refs);
        assert!(packets.len() > 1);
        let mut back = Vec::new();
        for p in &packets {
            assert!(
                p.len() + ENVELOPE_BYTES <= MAX_PACKET_BYTES,
                "{} bytes",
                p.len()
            );
            match decode(p).unwrap() {
                SyncMessage::Records { records } => back.extend(records),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, records);
    }

    #[test]
    fn digests_roundtrip_and_bad_ones_are_refused() {
        let mut t = EndpointTable::new();
        t.merge(sample("n", "e", "a", 1));
        let bytes = encode_digest(&t.digest(), true);
        assert!(bytes.len() + ENVELOPE_BYTES < 400);
        match decode(&bytes).unwrap() {
            SyncMessage::Digest { reply, buckets } => {
                assert!(reply);
                assert_eq!(digest_of(&buckets), t.digest());
            }
            other => panic!("unexpected {other:?}"),
        }
        let short = postcard::to_allocvec(&SyncMessageRef::Digest {
            reply: false,
            buckets: &[1],
        })
        .unwrap();
        assert!(decode(&short).is_err());
        let summary = encode_summary(&t.digest());
        assert!(
            summary.len() + ENVELOPE_BYTES < 100,
            "{} bytes",
            summary.len()
        );
        match decode(&summary).unwrap() {
            SyncMessage::Summary { root } => assert_eq!(root, t.digest().root()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(decode(&[7, 7, 7]).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn suspicions_and_refutations_roundtrip() {
        match decode(&encode_suspected(7)).unwrap() {
            SyncMessage::Suspected { incarnation } => assert_eq!(incarnation, 7),
            other => panic!("unexpected {other:?}"),
        }
        let me = NodeIdentity {
            node_id: "n1".into(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            incarnation: 1_700_000_000_000,
        };
        let bytes = encode_alive(&me, 8);
        assert!(bytes.len() + ENVELOPE_BYTES < 100, "{} bytes", bytes.len());
        match decode(&bytes).unwrap() {
            SyncMessage::Alive {
                identity,
                incarnation,
            } => assert_eq!((identity, incarnation), (me, 8)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
