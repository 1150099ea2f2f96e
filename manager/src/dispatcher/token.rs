//! Join tokens: `SWMTKN-1-<cluster CA digest>-<role secret>`, like Swarm's.

use mini_proto::v1::{Cluster, NodeRole};

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form SWMTKN-1-<digest>-<secret>.
    #[error(
        "invalid join token: expected SWMTKN-1-<digest>-<secret> as printed by `mini swarm join-token`"
    )]
    Malformed,
    /// The digest names another cluster.
    #[error("invalid join token: it belongs to another cluster (CA digest does not match)")]
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

/// The role a token admits into `cluster`.
pub fn verify(cluster: &Cluster, token: &str) -> Result<NodeRole, TokenError> {
    let rest = token
        .trim()
        .strip_prefix("SWMTKN-1-")
        .ok_or(TokenError::Malformed)?;
    let (digest, secret) = rest.split_once('-').ok_or(TokenError::Malformed)?;
    if digest.is_empty() || secret.is_empty() {
        return Err(TokenError::Malformed);
    }
    if !constant_time_eq(digest.as_bytes(), cluster.ca_digest.as_bytes()) {
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
        Cluster {
            ca_digest: "ab12".into(),
            worker_token_secret: "w0rk".into(),
            manager_token_secret: "m4n4".into(),
            ..Default::default()
        }
    }

    #[test]
    fn tokens_round_trip_and_wrong_ones_are_refused() {
        let c = cluster();
        assert_eq!(token_for(&c, NodeRole::Worker), "SWMTKN-1-ab12-w0rk");
        assert_eq!(
            verify(&c, &token_for(&c, NodeRole::Worker)),
            Ok(NodeRole::Worker)
        );
        assert_eq!(
            verify(&c, &token_for(&c, NodeRole::Manager)),
            Ok(NodeRole::Manager)
        );
        assert_eq!(
            verify(&c, "SWMTKN-1-ab12-nope"),
            Err(TokenError::WrongSecret)
        );
        assert_eq!(
            verify(&c, "SWMTKN-1-ffff-w0rk"),
            Err(TokenError::OtherCluster)
        );
        assert_eq!(verify(&c, "hello"), Err(TokenError::Malformed));
        assert_eq!(verify(&c, "SWMTKN-1-ab12"), Err(TokenError::Malformed));
    }
}
