//! `service update`: a new spec for an existing service. Its tasks made from the old spec are
//! then replaced by the orchestrator's rolling update (see `orchestrator::update`).

use mini_proto::v1::{Service, ServiceSpec, UpdateServiceRequest, service_spec::Mode};

use super::ControlError;
use super::services::{
    check_healthcheck, check_image, check_published_ports, service_actions, stored, with_vips,
};
use crate::manager::Manager;
use crate::store::Tables;

/// Validates the new spec against the service, reallocates its VIPs (an `ingress` VIP when
/// ports are published now, none in dnsrr mode) and stores it; nothing changes when anything
/// is refused.
pub(super) async fn update(
    manager: &Manager,
    request: UpdateServiceRequest,
) -> Result<Service, ControlError> {
    let spec = request
        .spec
        .ok_or_else(|| ControlError::Invalid("service spec missing".into()))?;
    check_image(&spec)?;
    check_healthcheck(&spec)?;
    super::placement::check(&spec)?;

    let id = manager.write(|t| {
        let mut spec = spec.clone();
        let old = t.service(&request.name_or_id)?.clone();
        let version = old.meta.map_or(0, |m| m.version);
        if request.version != 0 && request.version != version {
            return Err(ControlError::Conflict(format!(
                "service {} changed since it was read (version {} is now {version}): read it and update again",
                request.name_or_id, request.version
            )));
        }
        let old_spec = old.spec.clone().unwrap_or_default();
        check_unchanged(&old_spec, &spec)?;
        let ports = spec.endpoint.as_ref().map(|e| e.ports.clone()).unwrap_or_default();
        check_published_ports(t, &ports, Some(&old.id))?;
        spec.networks = networks_for(t, &old_spec, &spec, !ports.is_empty())?;
        // --with-registry-auth replaces the credentials; without it they stay.
        let registry_auth = request.registry_auth.clone().or(old.registry_auth.clone());
        let job_status = super::placement::updated_job_status(&old, &spec, crate::ids::now_ms());
        let service = Service {
            spec: Some(spec.clone()),
            registry_auth,
            job_status,
            ..old
        };
        let (service, networks) = with_vips(t, service)?;
        Ok((service_actions(&service, networks, false), service.id))
    })
    .await?;
    stored(manager, &id)
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

/// The service's networks after the update: the same user networks as before (changing them
/// is not supported), behind the `ingress` network when ports are published.
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
    let networks = user(old);
    if user(new) != networks {
        return Err(ControlError::Invalid(format!(
            "changing the networks of service {} is not supported: remove it and create it again",
            old.name
        )));
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
