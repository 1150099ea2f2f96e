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
pub(crate) fn renewal_delay(id: &CertIdentity, now: SystemTime) -> Duration {
    let life = id
        .not_after
        .duration_since(id.not_before)
        .unwrap_or_default();
    let mut rng: rand10::rngs::StdRng = rand10::make_rng();
    let fraction = rng.random_range(0.5..0.8);
    let at = id.not_before + life.mul_f64(fraction);
    at.duration_since(now).unwrap_or_default()
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
                tracing::warn!(%err, attempt = failures, "node certificate renewal failed; retrying");
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
        if id.node_id != shared.node_id || !pki::issued_by(&response.certificate, &response.root_ca)
        {
            return Err(format!(
                "{addr} issued a certificate that is not this node's"
            ));
        }
        shared
            .config
            .trust
            .install(Credentials {
                ca_der: response.root_ca,
                cert_der: response.certificate,
                key_der,
            })
            .map_err(|e| error_chain(&e))?;
        return Ok(id);
    }
    Err(last)
}
