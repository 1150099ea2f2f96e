//! Join tokens: `SWMTKN-1-<cluster CA digest>-<role secret>`, like Swarm's. The digest is the
//! SHA-256 of the root CA certificate (DER), printed in base 36 as Docker prints it; base 36 or
//! hex are accepted.

use mini_proto::tls::pki;
use mini_proto::v1::{Cluster, NodeRole};

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form SWMTKN-1-<digest>-<secret>.
    #[error(
        "invalid join token: expected SWMTKN-1-<digest>-<secret> as printed by `mini swarm join-token`"
    )]
    Malformed,
    /// The digest names another cluster's CA.
    #[error(
        "invalid join token: it belongs to another cluster (its CA digest is not this cluster's)"
    )]
    OtherCluster,
    /// The secret is not the current worker or manager secret.
    #[error(
        "invalid join token: the secret is wrong or was rotated; ask a manager for `mini swarm join-token worker`"
    )]
    WrongSecret,
}

/// The token for `role` in `cluster`.
pub fn token_for(cluster: &Cluster, role: NodeRole) -> String {
    let secret = match role {
        NodeRole::Worker => &cluster.worker_token_secret,
        NodeRole::Manager => &cluster.manager_token_secret,
    };
    format!("SWMTKN-1-{}-{}", cluster.ca_digest, secret)
}

/// Splits a token into the CA digest it pins and its secret.
pub fn parse(token: &str) -> Result<([u8; 32], &str), TokenError> {
    let rest = token
        .trim()
        .strip_prefix("SWMTKN-1-")
        .ok_or(TokenError::Malformed)?;
    let (digest, secret) = rest.split_once('-').ok_or(TokenError::Malformed)?;
    if secret.is_empty() {
        return Err(TokenError::Malformed);
    }
    let digest = pki::parse_digest(digest).ok_or(TokenError::Malformed)?;
    Ok((digest, secret))
}

/// The role a token admits into `cluster`.
pub fn verify(cluster: &Cluster, token: &str) -> Result<NodeRole, TokenError> {
    let (digest, secret) = parse(token)?;
    if !constant_time_eq(&digest, &pki::ca_digest(&cluster.ca_cert)) {
        return Err(TokenError::OtherCluster);
    }
    if constant_time_eq(secret.as_bytes(), cluster.worker_token_secret.as_bytes()) {
        Ok(NodeRole::Worker)
    } else if constant_time_eq(secret.as_bytes(), cluster.manager_token_secret.as_bytes()) {
        Ok(NodeRole::Manager)
    } else {
        Err(TokenError::WrongSecret)
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let ca = pki::new_root_ca().unwrap();
        Cluster {
            ca_digest: pki::digest_base36(&pki::ca_digest(&ca.cert_der)),
            ca_cert: ca.cert_der,
            worker_token_secret: "w0rk".into(),
            manager_token_secret: "m4n4".into(),
            ..Default::default()
        }
    }

    #[test]
    fn tokens_round_trip_and_wrong_ones_are_refused() {
        let c = cluster();
        let worker = token_for(&c, NodeRole::Worker);
        assert_eq!(worker, format!("SWMTKN-1-{}-w0rk", c.ca_digest));
        assert_eq!(c.ca_digest.len(), 50, "base 36, as Docker prints it");
        assert_eq!(verify(&c, &worker), Ok(NodeRole::Worker));
        assert_eq!(
            verify(&c, &token_for(&c, NodeRole::Manager)),
            Ok(NodeRole::Manager)
        );
        let hex: String = pki::ca_digest(&c.ca_cert)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            verify(&c, &format!("SWMTKN-1-{hex}-m4n4")),
            Ok(NodeRole::Manager),
            "a hex digest is accepted too"
        );
        let digest = &c.ca_digest;
        assert_eq!(
            verify(&c, &format!("SWMTKN-1-{digest}-nope")),
            Err(TokenError::WrongSecret)
        );
        // One digit of the digest changed: another CA.
        let mut tampered = digest.clone().into_bytes();
        tampered[49] = if tampered[49] == b'1' { b'2' } else { b'1' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            verify(&c, &format!("SWMTKN-1-{tampered}-w0rk")),
            Err(TokenError::OtherCluster)
        );
        let other = cluster();
        assert_eq!(
            verify(&c, &token_for(&other, NodeRole::Worker)),
            Err(TokenError::OtherCluster)
        );
        assert_eq!(verify(&c, "hello"), Err(TokenError::Malformed));
        assert_eq!(
            verify(&c, &format!("SWMTKN-1-{digest}")),
            Err(TokenError::Malformed)
        );
        assert_eq!(verify(&c, "SWMTKN-1-!!-w0rk"), Err(TokenError::Malformed));
    }
}
