//! Why a batch was refused by [`apply`](super::Store::apply).

use std::fmt;

/// The kinds of object the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The cluster settings (one object).
    Cluster,
    /// A node.
    Node,
    /// A network.
    Network,
    /// A service.
    Service,
    /// A task.
    Task,
    /// A secret.
    Secret,
    /// A config.
    Config,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Cluster => "cluster",
            ObjectKind::Node => "node",
            ObjectKind::Network => "network",
            ObjectKind::Service => "service",
            ObjectKind::Task => "task",
            ObjectKind::Secret => "secret",
            ObjectKind::Config => "config",
        })
    }
}

/// A batch that cannot apply. Nothing of a refused batch is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The entry's bytes are not a `StoreBatch`.
    #[error("log entry at index {index} is not a store batch: {reason}")]
    Decode {
        /// Raft index of the entry.
        index: u64,
        /// Decoder message.
        reason: String,
    },
    /// A create names an object that already exists.
    #[error("{kind} {id} already exists")]
    Exists {
        /// Kind of object.
        kind: ObjectKind,
        /// Its id.
        id: String,
    },
    /// A create uses a name another object of the same kind has.
    #[error("{kind} with name {name} already exists ({id})")]
    NameTaken {
        /// Kind of object.
        kind: ObjectKind,
        /// The name asked for.
        name: String,
        /// Id of the object holding it.
        id: String,
    },
    /// An update or remove names an object that does not exist.
    #[error("{kind} {id} does not exist")]
    Missing {
        /// Kind of object.
        kind: ObjectKind,
        /// Its id.
        id: String,
    },
    /// An update was based on an older version than the stored one.
    #[error(
        "{kind} {id} changed meanwhile (wrote from version {given}, stored version is {stored})"
    )]
    Stale {
        /// Kind of object.
        kind: ObjectKind,
        /// Its id.
        id: String,
        /// Version the writer read.
        given: u64,
        /// Version in the store.
        stored: u64,
    },
    /// A service publishes a port another service already publishes.
    #[error("port {port}/{protocol} is already published by service {service}")]
    PortTaken {
        /// The published port.
        port: u32,
        /// tcp or udp.
        protocol: String,
        /// Name of the service publishing it.
        service: String,
    },
    /// A network, secret or config cannot be removed while something uses it.
    #[error("{kind} {name} is in use by {by}")]
    InUse {
        /// Kind of object.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// Who uses it ("service web", "2 task(s) still attached").
        by: String,
    },
    /// An action with no content.
    #[error("empty store action")]
    EmptyAction,
}
