//! The identity of a node in the SWIM cluster.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member of the gossip cluster: node id + gossip address + incarnation.
///
/// foca keys members by address ([`foca::Identity::addr`]), so a bootstrap peer can be announced
/// to knowing only its address. The incarnation starts at the wall clock in milliseconds when the
/// agent starts (a restarted node beats its previous life) and is bumped by
/// [`renew`](foca::Identity::renew) when the cluster declares this node down, so a node wrongly
/// declared down rejoins by itself. (foca keeps a separate, smaller incarnation per identity
/// for refuting suspicion; this one is ours.)
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node's id (the manager-assigned node id). Empty only in the placeholder used to
    /// announce to a bootstrap address.
    pub node_id: String,
    /// Where the node's gossip socket listens.
    pub addr: SocketAddr,
    /// This life of the node: higher wins over lower for the same address.
    pub incarnation: u64,
}

impl NodeIdentity {
    /// A placeholder for a peer known only by address (bootstrap): foca accepts an announce
    /// addressed to any identity with the receiver's address.
    pub(crate) fn placeholder(addr: SocketAddr) -> Self {
        NodeIdentity {
            node_id: String::new(),
            addr,
            incarnation: 0,
        }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.node_id, self.addr, self.incarnation)
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeIdentity {
            incarnation: self.incarnation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, &self.node_id) > (adversary.incarnation, &adversary.node_id)
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    #[test]
    fn renewed_identity_wins() {
        let id = NodeIdentity {
            node_id: "a".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            incarnation: 5,
        };
        let renewed = id.renew().unwrap();
        assert_eq!(renewed.incarnation, 6);
        assert_eq!(renewed.addr(), id.addr());
        assert!(renewed.win_addr_conflict(&id));
        assert!(!id.win_addr_conflict(&renewed));
    }
}
