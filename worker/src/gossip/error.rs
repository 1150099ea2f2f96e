//! Errors of the gossip plane.

use std::net::SocketAddr;

/// What can go wrong in the gossip plane.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The UDP socket could not be bound.
    #[error("cannot bind the gossip socket on {addr}: {source} (is another agent using the port?)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid gossip configuration: {0}")]
    Config(String),
    /// A record breaks a bound (sizes, counts, empty keys).
    #[error("endpoint record {network_id}/{endpoint_id} is invalid: {reason}")]
    InvalidRecord {
        /// The record's network (truncated).
        network_id: String,
        /// The record's endpoint (truncated).
        endpoint_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A node tried to publish or withdraw a record another node owns.
    #[error(
        "endpoint {network_id}/{endpoint_id} is owned by node {owner}; only the owner may change it, \
         not this node ({local})"
    )]
    NotOwner {
        /// The record's network.
        network_id: String,
        /// The record's endpoint.
        endpoint_id: String,
        /// The node that owns it.
        owner: String,
        /// This node.
        local: String,
    },
    /// A gossip key ring is unusable.
    #[error("invalid gossip key ring: {0}")]
    Keys(String),
    /// Bytes from the network could not be decoded.
    #[error("undecodable gossip payload: {0}")]
    Decode(String),
    /// The agent's thread could not be started.
    #[error("cannot start the gossip agent's thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The agent's task is gone (stopped, or it panicked).
    #[error("the gossip agent has stopped")]
    Stopped,
}
