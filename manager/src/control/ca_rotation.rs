//! `swarm update` (cluster-wide settings) and `swarm ca` (the root CA and its rotation).

use std::time::Duration;

use mini_proto::v1::{
    Cluster, SwarmCaRequest, SwarmCaResponse, SwarmUpdateRequest, store_action::Action,
};

use super::ControlError;
use crate::dispatcher::ca;
use crate::manager::Manager;
use crate::store::update_action;

/// Changes the cluster object with `change` (which may refuse), writes it and returns it.
async fn change_cluster(
    manager: &Manager,
    mut change: impl FnMut(&mut Cluster) -> Result<(), ControlError>,
) -> Result<Cluster, ControlError> {
    manager
        .write(|t| {
            let mut cluster = t.cluster()?.clone();
            change(&mut cluster)?;
            Ok((
                vec![update_action(Action::PutCluster(cluster.clone()))],
                cluster,
            ))
        })
        .await
}

/// A duration as Go prints it (Docker's wording): `1h0m0s`, `2160h0m0s`, `30s`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let ms = d.subsec_millis();
    let frac = if ms == 0 {
        String::new()
    } else {
        format!(".{ms:03}").trim_end_matches('0').to_string()
    };
    match (h, m) {
        (0, 0) => format!("{s}{frac}s"),
        (0, _) => format!("{m}m{s}{frac}s"),
        _ => format!("{h}h{m}m{s}{frac}s"),
    }
}

/// Checks a `--cert-expiry` against the shortest lifetime the managers accept.
pub fn check_cert_expiry(ms: u64, minimum: Duration) -> Result<(), ControlError> {
    let asked = Duration::from_millis(ms);
    if asked < minimum {
        return Err(ControlError::Invalid(format!(
            "invalid --cert-expiry {}: the minimum certificate expiry time is {}",
            go_duration(asked),
            go_duration(minimum)
        )));
    }
    Ok(())
}

/// `swarm update`.
pub(super) async fn swarm_update(
    manager: &Manager,
    request: SwarmUpdateRequest,
    min_cert_expiry: Duration,
) -> Result<Cluster, ControlError> {
    if let Some(ms) = request.node_cert_expiry_ms {
        check_cert_expiry(ms, min_cert_expiry)?;
    }
    let cluster = change_cluster(manager, |cluster| {
        if let Some(ms) = request.node_cert_expiry_ms {
            cluster.node_cert_expiry_ms = ms;
        }
        if let Some(on) = request.autolock {
            super::autolock::set(cluster, on);
        }
        Ok(())
    })
    .await?;
    tracing::info!(
        cert_expiry = %go_duration(ca::cert_lifetime(&cluster)),
        "swarm updated"
    );
    Ok(super::cluster::without_secret_keys(cluster))
}

/// `swarm ca [--rotate]`.
pub(super) async fn swarm_ca(
    manager: &Manager,
    request: SwarmCaRequest,
) -> Result<SwarmCaResponse, ControlError> {
    if request.rotate {
        let started = manager
            .write(|t| {
                let cluster = t.cluster()?;
                Ok::<_, ControlError>(match ca::start_rotation(cluster)? {
                    Some(next) => (vec![update_action(Action::PutCluster(next))], true),
                    None => (Vec::new(), false),
                })
            })
            .await?;
        if started {
            tracing::info!(
                "root CA rotation started: every node gets a certificate of the new root"
            );
        }
    }
    let (cluster, (rotated_nodes, total_nodes)) = manager.store().view(|t| {
        let cluster = t.cluster()?.clone();
        let progress = ca::rotation_progress(&cluster, t.nodes.values());
        Ok::<_, ControlError>((cluster, progress))
    })?;
    Ok(SwarmCaResponse {
        root_ca: cluster.ca_cert.clone(),
        rotating_to: cluster
            .ca_rotation
            .as_ref()
            .map(|r| r.ca_cert.clone())
            .unwrap_or_default(),
        rotated_nodes,
        total_nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_docker_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(2160 * 3600)), "2160h0m0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(0)), "0s");
    }

    #[test]
    fn a_cert_expiry_below_the_minimum_is_refused_with_the_minimum() {
        let hour = Duration::from_secs(3600);
        assert!(check_cert_expiry(720 * 3600 * 1000, hour).is_ok());
        assert!(check_cert_expiry(3600 * 1000, hour).is_ok());
        let err = check_cert_expiry(30 * 60 * 1000, hour)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("30m0s") && err.contains("minimum certificate expiry time is 1h0m0s"),
            "{err}"
        );
        assert!(check_cert_expiry(0, hour).is_err());
    }
}
