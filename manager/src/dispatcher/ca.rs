//! The cluster CA on a manager: signing node certificates with the root CA kept in the store.

use std::time::Duration;

use mini_proto::tls::pki::{self, PkiError, RootCa};
use mini_proto::v1::{Cluster, NodeRole};

use crate::control::ControlError;

/// The lifetime of node certificates `cluster` asks for (`swarm update --cert-expiry`).
pub fn cert_lifetime(cluster: &Cluster) -> Duration {
    match cluster.node_cert_expiry_ms {
        0 => pki::DEFAULT_CERT_EXPIRY,
        ms => Duration::from_millis(ms).max(pki::MIN_CERT_EXPIRY),
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
