//! The gossip plane: SWIM membership ([`foca`]) over UDP and the overlay endpoint table spread
//! with it (DESIGN.md, "Gossip plane").
//!
//! Every node runs one [`Gossip`] agent on its advertise address (port [`DEFAULT_PORT`]). A node
//! [publishes](Gossip::publish) an [`EndpointRecord`] for each task endpoint it runs and
//! [withdraws](Gossip::withdraw) it (a tombstone) when the task stops; the owner pushes a new
//! record to every member it knows (twice, 0.3 s apart), records also spread as foca custom
//! broadcasts, and a periodic digest exchange (anti-entropy) repairs what all that missed.
//! When SWIM declares a node down, every survivor drops that node's records at once. Consumers
//! [subscribe](Gossip::subscribe) to changes and read a [table](Gossip::table) snapshot.
//!
//! # Layout
//! - `record`: [`EndpointRecord`], its wire form, bounds and precedence; the version clock.
//! - `table`: [`EndpointTable`] (merge, queries, purge, tombstone reaping, digest).
//! - `config`: [`GossipConfig`] and [`GossipTimings`] (the chosen numbers and why).
//! - `identity`: [`NodeIdentity`], a member of the SWIM cluster.
//! - `state`: what the agent shares with foca's broadcast handler; the acceptance rules.
//! - `broadcast`: records as foca custom broadcasts.
//! - `antientropy`: the digest exchange and its messages.
//! - `owner`: records bound to their owner (signed with its node key), [`RecordAuth`].
//! - `seal`: sealed datagrams (ChaCha20-Poly1305 under the cluster's key ring, replay window).
//! - `runtime`: foca's runtime (UDP send path, timer min-heap) and [`GossipStats`].
//! - `announce`: when and to whom a node announces (every member answers about one per period).
//! - `agent`: [`Gossip`], the handle, and the task that owns foca.
//! - `error`: [`GossipError`].
//!
//! Every packet is sealed (encrypted and authenticated) under the cluster's gossip key ring,
//! which the managers keep in Raft and hand to nodes over their sessions; packets that do not
//! open, and replays, are dropped and counted ([`GossipStats`]). With a [`RecordAuth`], every
//! record is signed by its owner's node key and records not signed by the node they name are
//! refused, so even a member cannot speak for another node. Every input is still treated
//! as hostile: bounded sizes, validated records, never a panic.

mod agent;
mod announce;
mod antientropy;
mod broadcast;
mod config;
mod error;
mod identity;
pub mod owner;
mod record;
mod runtime;
pub mod seal;
mod state;
mod table;

#[cfg(test)]
mod tests;

pub use agent::{Gossip, GossipProbe};
pub use config::{DEFAULT_PORT, GossipConfig, GossipTimings, MAX_PACKET_BYTES};
pub use error::GossipError;
pub use identity::NodeIdentity;
pub use owner::{EcdsaSigner, NodeSigner, PeerKeyMap, PeerKeys, RecordAuth};
pub use record::{
    EndpointRecord, MAX_ALIASES, MAX_PORTS, MAX_RECORD_BYTES, MAX_STRING_BYTES, Protocol,
    PublishedPort, VersionClock, now_micros,
};
pub use runtime::GossipStats;
pub use seal::GossipKeys;
pub use table::{DIGEST_BUCKETS, Digest, EndpointTable};
