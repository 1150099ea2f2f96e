//! Certificate renewal: a new key and certificate at a random point between 50 % and 80 % of the
//! current certificate's life (as Docker's nodes do), or at once when the cluster gave the node
//! another role (until a certificate of that role arrives). Failures are logged and retried with
//! backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mini_proto::tls::pki::{self, CertIdentity};
use mini_proto::tls::{Credentials, error_chain};
use mini_proto::v1::IssueNodeCertificateRequest;
use mini_proto::v1::node_ca_client::NodeCaClient;
use rand10::RngExt;
use tokio::sync::watch;

use super::worker::Shared;
use mini_netdriver::Kernel;

/// Longest wait between two failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// When to renew a certificate: at a random point in the second half of its life (50-80 %).
/// Its life starts when it was issued: the not-before time is backdated by [`pki::CLOCK_SKEW`].
pub(crate) fn renewal_delay(id: &CertIdentity, now: SystemTime) -> Duration {
    let mut rng: rand10::rngs::StdRng = rand10::make_rng();
    renewal_at(id, rng.random_range(0.5..0.8))
        .duration_since(now)
        .unwrap_or_default()
}

fn renewal_at(id: &CertIdentity, fraction: f64) -> SystemTime {
    let issued = (id.not_before + pki::CLOCK_SKEW).min(id.not_after);
    let life = id.not_after.duration_since(issued).unwrap_or_default();
    issued + life.mul_f64(fraction)
}

/// What the node logs when its certificate expired: it cannot authenticate any more, and only
/// joining again gives it a new one (as in Docker).
fn expired_message(id: &CertIdentity) -> String {
    format!(
        "this node's certificate expired at {}: the managers refuse it and it cannot be renewed; \
         run `mini swarm leave --force` on this node, then `mini swarm join` with a join token",
        pki::format_utc(id.not_after)
    )
}

/// Renews the node's certificate when due, until `stop` turns true.
pub(crate) async fn run<K: Kernel + 'static>(
    shared: Arc<Shared<K>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let wait = match shared.config.trust.identity() {
            _ if failures > 0 => {
                (Duration::from_secs(1) * 2u32.saturating_pow(failures.min(9))).min(MAX_BACKOFF)
            }
            Some(id) => renewal_delay(&id, SystemTime::now()),
            None => Duration::from_secs(5),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.renew_now.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if shared.config.trust.identity().is_none() {
            continue;
        }
        let wanted = *shared.wanted_role.lock().unwrap_or_else(|e| e.into_inner());
        match renew(&shared).await {
            Ok(id) if wanted.is_some_and(|role| role != id.role) => {
                // A manager that had not seen the role change yet: ask again shortly.
                failures += 1;
                tracing::warn!(
                    got = pki::role_ou(id.role),
                    attempt = failures,
                    "renewed certificate has the old role; retrying"
                );
            }
            Ok(id) => {
                failures = 0;
                tracing::info!(
                    role = pki::role_ou(id.role),
                    not_after = ?id.not_after,
                    "node certificate renewed"
                );
            }
            Err(err) => {
                failures += 1;
                match shared.config.trust.identity() {
                    Some(id) if id.expired_at(SystemTime::now()) => {
                        tracing::error!(%err, attempt = failures, "{}", expired_message(&id));
                    }
                    _ => {
                        tracing::warn!(%err, attempt = failures, "node certificate renewal failed; retrying")
                    }
                }
            }
        }
    }
}

/// Asks a manager for a certificate for a new key; installs it.
async fn renew<K: Kernel>(shared: &Shared<K>) -> Result<CertIdentity, String> {
    let managers = shared
        .managers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (key_der, csr) = pki::new_node_key(&shared.node_id).map_err(|e| e.to_string())?;
    let mut last = "no manager address".to_string();
    for addr in &managers {
        let channel = match super::session::dial(&shared.config.trust, addr).await {
            Ok(c) => c,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let response = match NodeCaClient::new(channel)
            .issue_node_certificate(IssueNodeCertificateRequest { csr: csr.clone() })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                last = format!("{addr}: {}", status.message());
                continue;
            }
        };
        let id = pki::identity_of(&response.certificate).map_err(|e| e.to_string())?;
        let mut roots = response.trusted_roots.clone();
        if roots.is_empty() {
            roots.push(response.root_ca.clone());
        }
        let intermediates: Vec<&[u8]> = response.intermediates.iter().map(Vec::as_slice).collect();
        if id.node_id != shared.node_id
            || !pki::chains_to(&response.certificate, &intermediates, &roots)
        {
            return Err(format!(
                "{addr} issued a certificate that is not this node's"
            ));
        }
        shared
            .config
            .trust
            .install(Credentials {
                extra_roots: roots
                    .into_iter()
                    .filter(|r| *r != response.root_ca)
                    .collect(),
                ca_der: response.root_ca,
                cert_der: response.certificate,
                key_der,
                intermediates: response.intermediates,
            })
            .map_err(|e| error_chain(&e))?;
        return Ok(id);
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_proto::v1::NodeRole;

    #[test]
    fn renewal_falls_in_the_second_half_of_the_life_counted_from_issuance() {
        // Issued now with a 40 s life: not-before is backdated by the clock skew allowance.
        let issued = SystemTime::now();
        let id = CertIdentity {
            node_id: "n".into(),
            role: NodeRole::Worker,
            cluster_id: "c".into(),
            not_before: issued - pki::CLOCK_SKEW,
            not_after: issued + Duration::from_secs(40),
        };
        assert_eq!(renewal_at(&id, 0.5), issued + Duration::from_secs(20));
        assert_eq!(renewal_at(&id, 0.8), issued + Duration::from_secs(32));
        let delay = renewal_delay(&id, issued);
        assert!(
            delay >= Duration::from_secs(20) && delay <= Duration::from_secs(32),
            "{delay:?}"
        );
        // An expired certificate is due at once.
        assert_eq!(
            renewal_delay(&id, issued + Duration::from_secs(60)),
            Duration::ZERO
        );
        assert!(expired_message(&id).contains("mini swarm leave --force"));
    }
}
