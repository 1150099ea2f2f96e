//! `service update`: a new spec for an existing service. Its tasks made from the old spec are
//! then replaced by the orchestrator's rolling update (see `orchestrator::update`).

use mini_proto::v1::{
    Service, ServiceSpec, UpdateFailureAction, UpdateServiceRequest, UpdateState, UpdateStatus,
    service_spec::Mode,
};

use super::ControlError;
use super::services::{
    check_healthcheck, check_image, check_published_ports, service_actions, stored, with_vips,
};
use crate::ids::now_ms;
use crate::manager::Manager;
use crate::store::Tables;

/// Validates the new spec against the service, reallocates its VIPs (an `ingress` VIP when
/// ports are published now, none in dnsrr mode) and stores it; nothing changes when anything
/// is refused.
///
/// With `request.rollback` (`service rollback`), the spec goes back to the previous one and
/// the current one becomes the previous (a second rollback goes forward again), as swarmkit
/// does; the update status says ROLLBACK_STARTED ("manually requested rollback"). Any other
/// update resets the update status: the orchestrator starts a new rollout (resuming a paused
/// one).
pub(super) async fn update(
    manager: &Manager,
    request: UpdateServiceRequest,
) -> Result<Service, ControlError> {
    let requested = if request.rollback {
        None
    } else {
        let spec = request
            .spec
            .clone()
            .ok_or_else(|| ControlError::Invalid("service spec missing".into()))?;
        check_spec(&spec)?;
        Some(spec)
    };

    let id = manager
        .write(|t| {
            let old = t.service(&request.name_or_id)?.clone();
            let version = old.meta.map_or(0, |m| m.version);
            if request.version != 0 && request.version != version {
                return Err(ControlError::OutOfSequence {
                    kind: "service",
                    name: request.name_or_id.clone(),
                    given: request.version,
                    current: version,
                });
            }
            let old_spec = old.spec.clone().unwrap_or_default();
            let (mut spec, previous_spec, update_status) = match requested.clone() {
                Some(mut spec) => {
                    super::secrets::resolve_references(t, &mut spec)?;
                    // An unchanged spec (`service update` resuming a paused update) keeps the
                    // previous spec to roll back to.
                    let previous = if spec == old_spec {
                        old.previous_spec.clone()
                    } else {
                        Some(old_spec.clone())
                    };
                    (spec, previous, None)
                }
                None => {
                    let previous = old.previous_spec.clone().ok_or_else(|| {
                        ControlError::Precondition(format!(
                            "service {} does not have a previous spec",
                            old_spec.name
                        ))
                    })?;
                    let status = UpdateStatus {
                        state: UpdateState::RollbackStarted as i32,
                        started_at_ms: now_ms(),
                        completed_at_ms: 0,
                        message: "manually requested rollback".into(),
                    };
                    (previous, Some(old_spec.clone()), Some(status))
                }
            };
            check_unchanged(&old_spec, &spec)?;
            let ports = spec
                .endpoint
                .as_ref()
                .map(|e| e.ports.clone())
                .unwrap_or_default();
            check_published_ports(t, &ports, Some(&old.id))?;
            spec.networks = networks_for(t, &old_spec, &spec, !ports.is_empty())?;
            // --with-registry-auth replaces the credentials; without it they stay.
            let registry_auth = request.registry_auth.clone().or(old.registry_auth.clone());
            let job_status =
                super::placement::updated_job_status(&old, &spec, crate::ids::now_ms());
            let service = Service {
                spec: Some(spec.clone()),
                registry_auth,
                previous_spec,
                update_status,
                job_status,
                ..old
            };
            let (service, networks) = with_vips(t, service)?;
            Ok((service_actions(&service, networks, false), service.id))
        })
        .await?;
    stored(manager, &id)
}

/// Refuses a spec the manager cannot run: image reference, health check, constraints, update
/// and rollback configs.
fn check_spec(spec: &ServiceSpec) -> Result<(), ControlError> {
    check_image(spec)?;
    check_healthcheck(spec)?;
    super::placement::check(spec)?;
    check_update_configs(spec)
}

/// Refuses update and rollback configs out of range (a failure ratio outside 0..=1, a rollback
/// whose failure action is rollback), with swarmkit's reasons.
pub(super) fn check_update_configs(spec: &ServiceSpec) -> Result<(), ControlError> {
    for (what, config) in [("update", spec.update), ("rollback", spec.rollback)] {
        let Some(c) = config else { continue };
        if !(0.0..=1.0).contains(&c.max_failure_ratio) {
            return Err(ControlError::Invalid(format!(
                "TaskSpec: {what} max failure ratio {} must be between 0 and 1",
                c.max_failure_ratio
            )));
        }
        if what == "rollback" && c.failure_action() == UpdateFailureAction::Rollback {
            return Err(ControlError::Invalid(
                "rollback failure action cannot be rollback: pause or continue".into(),
            ));
        }
    }
    Ok(())
}

/// What an update may not change: the name, the kind of mode.
fn check_unchanged(old: &ServiceSpec, new: &ServiceSpec) -> Result<(), ControlError> {
    if new.name != old.name {
        return Err(ControlError::Invalid(format!(
            "renaming a service is not supported ({} → {}): create a new service instead",
            old.name, new.name
        )));
    }
    let kind = |s: &ServiceSpec| match s.mode {
        Some(Mode::Global(_)) => "global",
        Some(Mode::ReplicatedJob(_)) => "replicated-job",
        Some(Mode::GlobalJob(_)) => "global-job",
        Some(Mode::Replicas(_)) | None => "replicated",
    };
    if kind(old) != kind(new) {
        return Err(ControlError::Invalid(format!(
            "service {} cannot change from {} to {} mode: remove it and create it again",
            old.name,
            kind(old),
            kind(new)
        )));
    }
    Ok(())
}

/// The service's networks after the update: the user networks the new spec names (checked),
/// behind the `ingress` network when ports are published.
fn networks_for(
    t: &Tables,
    old: &ServiceSpec,
    new: &ServiceSpec,
    publishes: bool,
) -> Result<Vec<String>, ControlError> {
    let ingress = t
        .networks
        .values()
        .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress))
        .map(|n| n.id.clone());
    let user = |s: &ServiceSpec| -> Vec<String> {
        s.networks
            .iter()
            .filter(|id| Some(*id) != ingress.as_ref())
            .cloned()
            .collect()
    };
    // `--network-add/--network-rm`: the new list may differ; each network must exist, be an
    // overlay network and not be the ingress network (attached by publishing ports).
    let networks = user(new);
    for (i, id) in networks.iter().enumerate() {
        let network = t
            .networks
            .get(id)
            .ok_or_else(|| ControlError::Invalid(format!("no such network: {id}")))?;
        let spec = network.spec.clone().unwrap_or_default();
        if spec.ingress {
            return Err(ControlError::Invalid(
                "the ingress network is attached by publishing ports (--publish-add), not with --network-add".into(),
            ));
        }
        if networks[..i].contains(id) {
            return Err(ControlError::Invalid(format!(
                "service {} is already attached to network {}",
                old.name, spec.name
            )));
        }
    }
    if !publishes {
        return Ok(networks);
    }
    let ingress = ingress.ok_or_else(|| {
        ControlError::Precondition(
            "the ingress network is missing; ports cannot be published".into(),
        )
    })?;
    Ok(std::iter::once(ingress).chain(networks).collect())
}
