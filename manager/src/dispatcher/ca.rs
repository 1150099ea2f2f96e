//! The cluster CA on a manager: signing node certificates with the root CA kept in the store.

use std::time::Duration;

use mini_proto::tls::pki::{self, PkiError, RootCa};
use mini_proto::v1::{Cluster, Node, NodeRole};

use crate::raft::RaftStatus;

use crate::control::ControlError;

/// The lifetime of node certificates `cluster` asks for (`swarm update --cert-expiry`).
pub fn cert_lifetime(cluster: &Cluster) -> Duration {
    match cluster.node_cert_expiry_ms {
        0 => pki::DEFAULT_CERT_EXPIRY,
        ms => Duration::from_millis(ms).max(pki::MIN_CERT_EXPIRY),
    }
}

/// The role a node's certificate must carry: its role in the store, except that a demoted
/// manager keeps the manager role while its Raft id is still in the configuration (`raft`).
/// Until the leader has removed it, the others need its votes and acknowledgements, which they
/// accept only from a manager's certificate — with two voters, the removal itself cannot
/// commit without them (swarmkit, too, changes the certificate's role only after the Raft
/// removal).
pub fn role_in_force(node: &Node, raft: &RaftStatus) -> NodeRole {
    if node.role() == NodeRole::Manager || (node.raft_id != 0 && raft.in_config(node.raft_id)) {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    }
}

/// Signs `csr` for `node_id` in `role` with `cluster`'s root CA.
pub fn issue_certificate(
    cluster: &Cluster,
    csr: &[u8],
    node_id: &str,
    role: NodeRole,
) -> Result<Vec<u8>, ControlError> {
    if cluster.ca_cert.is_empty() || cluster.ca_key.is_empty() {
        return Err(ControlError::Precondition(
            "this cluster has no root CA (made by a version without TLS)".into(),
        ));
    }
    let ca = RootCa {
        cert_der: cluster.ca_cert.clone(),
        key_der: cluster.ca_key.clone(),
    };
    pki::sign_node_csr(&ca, csr, node_id, role, &cluster.id, cert_lifetime(cluster)).map_err(|e| {
        match e {
            PkiError::Csr(_) => ControlError::Invalid(e.to_string()),
            other => ControlError::Internal(other.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raft_with(voters: Vec<u64>, learners: Vec<u64>) -> RaftStatus {
        RaftStatus::test_leader(10, &voters, &learners, &[])
    }

    fn node(role: NodeRole, raft_id: u64) -> Node {
        Node {
            id: "n".into(),
            role: role as i32,
            raft_id,
            ..Default::default()
        }
    }

    #[test]
    fn a_demoted_manager_keeps_its_role_until_its_raft_id_leaves_the_configuration() {
        let pending = raft_with(vec![1, 2, 3], vec![]);
        let removed = raft_with(vec![1, 2], vec![]);
        assert_eq!(
            role_in_force(&node(NodeRole::Worker, 3), &pending),
            NodeRole::Manager
        );
        assert_eq!(
            role_in_force(&node(NodeRole::Worker, 3), &removed),
            NodeRole::Worker
        );
        // A learner that was demoted before it became a voter.
        let learner = raft_with(vec![1, 2], vec![4]);
        assert_eq!(
            role_in_force(&node(NodeRole::Worker, 4), &learner),
            NodeRole::Manager
        );
        // Plain workers, and managers whatever the configuration says.
        assert_eq!(
            role_in_force(&node(NodeRole::Worker, 0), &pending),
            NodeRole::Worker
        );
        assert_eq!(
            role_in_force(&node(NodeRole::Manager, 5), &removed),
            NodeRole::Manager
        );
    }
}
