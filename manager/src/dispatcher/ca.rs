//! The cluster CA on a manager: signing node certificates with the root CA kept in the store.

use std::time::Duration;

use mini_proto::tls::pki::{self, PkiError, RootCa};
use mini_proto::v1::{Cluster, Node, NodeRole, NodeState};

use crate::raft::RaftStatus;

use crate::error::ControlError;

/// The lifetime of node certificates `cluster` asks for (`swarm update --cert-expiry`, checked
/// against the minimum when it was set).
pub fn cert_lifetime(cluster: &Cluster) -> Duration {
    match cluster.node_cert_expiry_ms {
        0 => pki::DEFAULT_CERT_EXPIRY,
        ms => Duration::from_millis(ms),
    }
}

/// The root that signs certificates now: the new root while a rotation is under way.
pub fn signing_ca(cluster: &Cluster) -> RootCa {
    match &cluster.ca_rotation {
        Some(r) => RootCa {
            cert_der: r.ca_cert.clone(),
            key_der: r.ca_key.clone(),
        },
        None => RootCa {
            cert_der: cluster.ca_cert.clone(),
            key_der: cluster.ca_key.clone(),
        },
    }
}

/// The certificate (DER) of the root that signs node certificates now ([`signing_ca`] without
/// copying its key).
pub fn signing_cert(cluster: &Cluster) -> &[u8] {
    match &cluster.ca_rotation {
        Some(r) => &r.ca_cert,
        None => &cluster.ca_cert,
    }
}

/// What a certificate of the signing root is presented with: the new root cross-signed by the
/// old one while a rotation is under way (nodes that trust only the old root accept it).
pub fn intermediates(cluster: &Cluster) -> Vec<Vec<u8>> {
    cluster
        .ca_rotation
        .iter()
        .map(|r| r.cross_signed_ca_cert.clone())
        .collect()
}

/// Every root nodes must trust: the cluster's, and the new one while a rotation is under way.
pub fn trusted_roots(cluster: &Cluster) -> Vec<Vec<u8>> {
    std::iter::once(cluster.ca_cert.clone())
        .chain(cluster.ca_rotation.iter().map(|r| r.ca_cert.clone()))
        .filter(|c| !c.is_empty())
        .collect()
}

/// How far a root rotation is: (nodes whose stored certificate the signing root issued, nodes
/// counted). Nodes that are down are not counted: they cannot renew, and once the rotation
/// ends their old certificate is refused (they join again, as in Docker).
pub fn rotation_progress<'a>(
    cluster: &Cluster,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> (u32, u32) {
    let signing = signing_ca(cluster).cert_der;
    let mut rotated = 0;
    let mut total = 0;
    for node in nodes {
        if node
            .status
            .as_ref()
            .is_some_and(|s| s.state() == NodeState::Down)
        {
            continue;
        }
        total += 1;
        if pki::issued_by(&node.certificate, &signing) {
            rotated += 1;
        }
    }
    (rotated, total)
}

/// The cluster once a root rotation is done — every node counted by [`rotation_progress`] has
/// a certificate of the new root — with the new root in force and the old one dropped (join
/// tokens then carry the new root's digest); `None` while there is no rotation or it is not
/// done.
pub fn finish_rotation<'a>(
    cluster: &Cluster,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> Option<Cluster> {
    let rotation = cluster.ca_rotation.as_ref()?;
    let (rotated, total) = rotation_progress(cluster, nodes);
    if rotated < total {
        return None;
    }
    Some(Cluster {
        ca_cert: rotation.ca_cert.clone(),
        ca_key: rotation.ca_key.clone(),
        ca_digest: pki::digest_base36(&pki::ca_digest(&rotation.ca_cert)),
        ca_rotation: None,
        ..cluster.clone()
    })
}

/// The cluster with a root rotation started (`swarm ca --rotate`): a new root, and its
/// certificate cross-signed by the current one. A rotation already under way is kept.
pub fn start_rotation(cluster: &Cluster) -> Result<Option<Cluster>, ControlError> {
    if cluster.ca_rotation.is_some() {
        return Ok(None);
    }
    if cluster.ca_key.is_empty() {
        return Err(ControlError::Precondition(
            "this cluster has no root CA key (made by a version without TLS)".into(),
        ));
    }
    let old = RootCa {
        cert_der: cluster.ca_cert.clone(),
        key_der: cluster.ca_key.clone(),
    };
    let (new, cross) =
        pki::new_rotation_root(&old).map_err(|e| ControlError::Internal(e.to_string()))?;
    Ok(Some(Cluster {
        ca_rotation: Some(mini_proto::v1::RootCaRotation {
            ca_cert: new.cert_der,
            ca_key: new.key_der,
            cross_signed_ca_cert: cross,
        }),
        ..cluster.clone()
    }))
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
    let ca = signing_ca(cluster);
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

    fn with_cert(id: &str, cert: Vec<u8>, state: NodeState) -> Node {
        Node {
            id: id.into(),
            certificate: cert,
            status: Some(mini_proto::v1::NodeStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A cluster with a new root CA, and that CA.
    fn cluster_with_ca() -> (Cluster, pki::RootCa) {
        let ca = pki::new_root_ca().unwrap();
        let cluster = Cluster {
            id: "c".into(),
            ca_cert: ca.cert_der.clone(),
            ca_key: ca.key_der.clone(),
            ca_digest: pki::digest_base36(&pki::ca_digest(&ca.cert_der)),
            ..Default::default()
        };
        (cluster, ca)
    }

    fn issue(cluster: &Cluster, id: &str) -> Vec<u8> {
        let (_key, csr) = pki::new_node_key(id).unwrap();
        issue_certificate(cluster, &csr, id, NodeRole::Worker).unwrap()
    }

    #[test]
    fn a_session_sees_its_certificate_stale_exactly_when_the_root_or_role_moved_on() {
        use crate::dispatcher::{CertVerdicts, trust_view};
        let (cluster, ca) = cluster_with_ca();
        let mut tables = crate::store::Tables {
            cluster: Some(cluster.clone()),
            ..Default::default()
        };
        let mut worker = with_cert("a", issue(&cluster, "a"), NodeState::Ready);
        worker.role = NodeRole::Worker as i32;
        tables.nodes.insert("a".into(), worker.clone());
        let raft = raft_with(vec![1], vec![]);
        // One session's verdicts, asked again as the store changes.
        let mut verdicts = CertVerdicts::default();
        let view = |t: &crate::store::Tables, v: &mut CertVerdicts| trust_view(t, "a", &raft, v);
        assert!(!view(&tables, &mut verdicts).stale_certificate);
        assert!(
            !view(&tables, &mut verdicts).stale_certificate,
            "asked again"
        );
        assert_eq!(view(&tables, &mut verdicts).signing_ca, ca.cert_der);

        // Promoted: the worker certificate is of another role.
        tables.nodes.get_mut("a").unwrap().role = NodeRole::Manager as i32;
        assert!(view(&tables, &mut verdicts).stale_certificate);
        tables.nodes.insert("a".into(), worker.clone());
        assert!(!view(&tables, &mut verdicts).stale_certificate, "back");

        // A root rotation: the old root's certificate is stale until renewed.
        let rotating = start_rotation(&cluster).unwrap().unwrap();
        tables.cluster = Some(rotating.clone());
        let view_now = view(&tables, &mut verdicts);
        assert!(view_now.stale_certificate);
        assert_eq!(view_now.signing_ca, signing_ca(&rotating).cert_der);
        tables.nodes.get_mut("a").unwrap().certificate = issue(&rotating, "a");
        assert!(!view(&tables, &mut verdicts).stale_certificate, "renewed");
    }

    #[test]
    fn a_rotation_ends_when_every_node_not_down_has_a_certificate_of_the_new_root() {
        let (cluster, ca) = cluster_with_ca();
        let old_a = issue(&cluster, "a");
        let old_b = issue(&cluster, "b");
        let old_down = issue(&cluster, "down");
        assert!(finish_rotation(&cluster, &[]).is_none(), "no rotation");
        assert_eq!(trusted_roots(&cluster), vec![ca.cert_der.clone()]);

        let rotating = start_rotation(&cluster).unwrap().unwrap();
        assert!(
            start_rotation(&rotating).unwrap().is_none(),
            "a rotation under way is kept"
        );
        let new_root = rotating.ca_rotation.as_ref().unwrap().ca_cert.clone();
        assert_eq!(
            trusted_roots(&rotating),
            vec![ca.cert_der.clone(), new_root.clone()]
        );
        assert_eq!(intermediates(&rotating).len(), 1);
        let new_a = issue(&rotating, "a");
        assert!(pki::issued_by(&new_a, &new_root), "the new root signs");
        let new_b = issue(&rotating, "b");

        let down = with_cert("down", old_down, NodeState::Down);
        let half = [
            with_cert("a", new_a.clone(), NodeState::Ready),
            with_cert("b", old_b, NodeState::Ready),
            down.clone(),
        ];
        assert_eq!(rotation_progress(&rotating, &half), (1, 2));
        assert!(finish_rotation(&rotating, &half).is_none());

        let all = [
            with_cert("a", new_a, NodeState::Ready),
            with_cert("b", new_b, NodeState::Ready),
            down,
        ];
        assert_eq!(rotation_progress(&rotating, &all), (2, 2));
        let done = finish_rotation(&rotating, &all).expect("done: the down node is not waited for");
        assert_eq!(done.ca_cert, new_root);
        assert!(done.ca_rotation.is_none());
        assert_ne!(
            done.ca_digest, cluster.ca_digest,
            "join tokens change digest"
        );
        assert_eq!(trusted_roots(&done), vec![new_root]);
        assert!(intermediates(&done).is_empty());
        let _ = old_a;
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
