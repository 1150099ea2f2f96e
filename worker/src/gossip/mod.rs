//! The gossip plane: SWIM membership ([`foca`]) over UDP and the overlay endpoint table spread
//! with it (DESIGN.md, "Gossip plane").
//!
//! Every node runs one [`Gossip`] agent on its advertise address (port [`DEFAULT_PORT`]). A node
//! [publishes](Gossip::publish) an [`EndpointRecord`] for each task endpoint it runs and
//! [withdraws](Gossip::withdraw) it (a tombstone) when the task stops; records spread as foca
//! custom broadcasts and a periodic digest exchange (anti-entropy) repairs what broadcasts miss.
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
//! - `runtime`: foca's runtime (UDP send path, timer min-heap) and [`GossipStats`].
//! - `agent`: [`Gossip`], the handle, and the task that owns foca.
//! - `error`: [`GossipError`].
//!
//! Gossip traffic is neither authenticated nor encrypted (foca has no transport security): it
//! belongs on the cluster's private network. Every input is still treated as hostile: bounded
//! sizes, validated records, undecodable packets dropped and counted, never a panic.

mod agent;
mod antientropy;
mod broadcast;
mod config;
mod error;
mod identity;
mod record;
mod runtime;
mod state;
mod table;

#[cfg(test)]
mod tests;

pub use agent::Gossip;
pub use config::{DEFAULT_PORT, GossipConfig, GossipTimings, MAX_PACKET_BYTES};
pub use error::GossipError;
pub use identity::NodeIdentity;
pub use record::{
    EndpointRecord, MAX_ALIASES, MAX_PORTS, MAX_RECORD_BYTES, MAX_STRING_BYTES, Protocol,
    PublishedPort, VersionClock, now_micros,
};
pub use runtime::GossipStats;
pub use table::{DIGEST_BUCKETS, Digest, EndpointTable};
