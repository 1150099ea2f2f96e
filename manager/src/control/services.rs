//! `service create | ls | scale | rm` and `service ps`.

use mini_proto::v1::{
    CreateServiceRequest, ListServicesResponse, ListTasksResponse, Network, RemoveResponse,
    ScaleServiceRequest, Service, ServiceSpec, ServiceSummary, StoreAction, TaskState,
    service_spec::Mode, store_action::Action,
};

use super::ControlError;
use crate::allocator::AddressPools;
use crate::ids::{new_id, now_ms};
use crate::manager::Manager;
use crate::names::random_service_name;
use crate::store::{create_action, update_action};

/// The image of the built-in runtime (the node's own filesystem); every other
/// name is an image reference run by runc.
pub const HOST_IMAGE: &str = "host";

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 63
}

/// Validates a service, resolves its networks, allocates its VIPs and stores it.
pub(super) async fn create(
    manager: &Manager,
    request: CreateServiceRequest,
) -> Result<Service, ControlError> {
    let mut spec = request
        .spec
        .ok_or_else(|| ControlError::Invalid("service spec missing".into()))?;
    check_image(&spec)?;
    check_healthcheck(&spec)?;
    if spec.name.is_empty() {
        spec.name = random_service_name();
    }
    if !valid_name(&spec.name) {
        return Err(ControlError::Invalid(format!(
            "invalid service name {:?}: use letters, digits, '_', '.', '-', starting with a letter or digit (at most 63)",
            spec.name
        )));
    }
    super::placement::check(&spec)?;
    super::service_update::check_update_configs(&spec)?;
    if spec.mode.is_none() {
        spec.mode = Some(Mode::Replicas(1));
    }

    let id = manager.write(|t| {
        let mut spec = spec.clone();
        if let Some(existing) = t.services.values().find(|s| s.spec.as_ref().is_some_and(|x| x.name == spec.name)) {
            return Err(ControlError::Conflict(format!(
                "service with name {} already exists ({})",
                spec.name, existing.id
            )));
        }
        super::secrets::resolve_references(t, &mut spec)?;
        spec.networks.clear();
        for query in &request.networks {
            let network = t.network(query)?;
            if network.spec.as_ref().is_some_and(|s| s.ingress) {
                return Err(ControlError::Invalid(
                    "the ingress network is attached by publishing ports (--publish), not with --network".into(),
                ));
            }
            if spec.networks.contains(&network.id) {
                return Err(ControlError::Invalid(format!("network {query} is given twice")));
            }
            spec.networks.push(network.id.clone());
        }
        let ports = spec.endpoint.as_ref().map(|e| e.ports.clone()).unwrap_or_default();
        if !ports.is_empty() {
            check_published_ports(t, &ports, None)?;
            // Published ports reach the tasks through the ingress network (routing mesh).
            let ingress = t
                .networks
                .values()
                .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress))
                .ok_or_else(|| ControlError::Precondition("the ingress network is missing; ports cannot be published".into()))?;
            spec.networks.insert(0, ingress.id.clone());
        }
        let service = Service {
            id: new_id(),
            meta: None,
            spec: Some(spec.clone()),
            vips: Vec::new(),
            registry_auth: request.registry_auth.clone(),
            previous_spec: None,
            update_status: None,
            job_status: super::placement::new_job_status(&spec, now_ms()),
        };
        let (service, networks) = with_vips(t, service)?;
        Ok((service_actions(&service, networks, true), service.id))
    })
    .await?;
    stored(manager, &id)
}

/// The image must be `host` or a well-formed reference (Docker's grammar:
/// lowercase repository, optional tag and digest, no spaces).
pub(super) fn check_image(spec: &ServiceSpec) -> Result<(), ControlError> {
    let image = spec.container.as_ref().map_or("", |c| c.image.as_str());
    if image == HOST_IMAGE {
        return Ok(());
    }
    let invalid =
        |why: &str| ControlError::Invalid(format!("invalid reference format: {why}: {image:?}"));
    if image.is_empty() {
        return Err(invalid("no image given"));
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    };
    let path = match repo.split_once('/') {
        // A first component with a dot, a colon or `localhost` names a registry.
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => repo,
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("repository name must be lowercase"));
    }
    if !path.split('/').all(component_ok) {
        return Err(invalid("bad repository name"));
    }
    if let Some(tag) = tag {
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return Err(invalid("bad tag"));
        }
    }
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err(invalid("bad digest"));
        }
    }
    Ok(())
}

/// The shortest health check interval, timeout or start period (swarmkit's `minimumDuration`).
const MIN_HEALTH_DURATION_NS: u64 = 1_000_000;

/// A health check as swarmkit's `validateHealthCheck` checks it, with its wording: durations
/// of 0 (the image's or Docker's default) or at least 1ms, retries not negative, and a test
/// of `NONE`, `CMD …` or `CMD-SHELL …`.
pub(super) fn check_healthcheck(spec: &ServiceSpec) -> Result<(), ControlError> {
    let Some(hc) = spec.container.as_ref().and_then(|c| c.healthcheck.as_ref()) else {
        return Ok(());
    };
    for (what, ns) in [
        ("Interval", hc.interval_ns),
        ("Timeout", hc.timeout_ns),
        ("StartPeriod", hc.start_period_ns),
    ] {
        if ns != 0 && ns < MIN_HEALTH_DURATION_NS {
            return Err(ControlError::Invalid(format!(
                "ContainerSpec: {what} in HealthConfig cannot be less than 1ms"
            )));
        }
    }
    if hc.retries < 0 {
        return Err(ControlError::Invalid(
            "ContainerSpec: Retries in HealthConfig cannot be negative".into(),
        ));
    }
    match hc.test.first().map(String::as_str) {
        None | Some("NONE") => Ok(()),
        Some("CMD" | "CMD-SHELL") if hc.test.len() > 1 => Ok(()),
        Some(kind @ ("CMD" | "CMD-SHELL")) => Err(ControlError::Invalid(format!(
            "ContainerSpec: HealthConfig test {kind} has no command"
        ))),
        Some(other) => Err(ControlError::Invalid(format!(
            "ContainerSpec: unknown healthcheck type {other:?} (expected CMD, CMD-SHELL or NONE)"
        ))),
    }
}

/// `service` with VIPs on its spec's networks (kept where it has one, new ones allocated,
/// none in dnsrr mode), and the networks whose allocation cursor moved.
pub(super) fn with_vips(
    t: &crate::store::Tables,
    mut service: Service,
) -> Result<(Service, Vec<Network>), ControlError> {
    let networks: Vec<_> = t.networks.values().cloned().collect();
    let tasks: Vec<_> = t.tasks.values().cloned().collect();
    let services: Vec<_> = t.services.values().cloned().collect();
    let mut pools = AddressPools::new(&networks, &tasks, &services);
    pools.reserve_nodes(t.nodes.values());
    service.vips = pools.allocate_vips(&service)?;
    Ok((service, pools.changed_networks()))
}

/// The actions that write `service` (`create`: as a new one) with the networks whose
/// allocation cursor moved.
pub(super) fn service_actions(
    service: &Service,
    networks: Vec<Network>,
    create: bool,
) -> Vec<StoreAction> {
    let put = Action::PutService(service.clone());
    let mut actions = vec![if create {
        create_action(put)
    } else {
        update_action(put)
    }];
    actions.extend(
        networks
            .into_iter()
            .map(|n| update_action(Action::PutNetwork(n))),
    );
    actions
}

/// The service `id` as stored.
pub(super) fn stored(manager: &Manager, id: &str) -> Result<Service, ControlError> {
    Ok(manager.store().view(|t| t.service(id).cloned())?)
}

/// Every service with its running and desired task counts.
pub(super) fn list(manager: &Manager) -> ListServicesResponse {
    manager.store().view(|t| {
        let ready_nodes = t
            .nodes
            .values()
            .filter(|n| {
                n.status
                    .as_ref()
                    .is_some_and(|s| s.state() == mini_proto::v1::NodeState::Ready)
            })
            .count() as u64;
        let services = t
            .services
            .values()
            .map(|s| {
                let tasks: Vec<_> = t.tasks_of_service(&s.id).collect();
                let running = tasks
                    .iter()
                    .filter(|task| {
                        task.desired_state() == TaskState::Running
                            && task
                                .status
                                .as_ref()
                                .is_some_and(|st| st.state() == TaskState::Running)
                    })
                    .count() as u64;
                let (desired, completed) = match s.spec.as_ref().and_then(|spec| spec.mode) {
                    Some(Mode::Global(_)) => (ready_nodes, 0),
                    Some(Mode::Replicas(n)) => (n, 0),
                    Some(Mode::ReplicatedJob(_) | Mode::GlobalJob(_)) => {
                        super::placement::job_counts(s, tasks.iter().copied())
                    }
                    None => (1, 0),
                };
                ServiceSummary {
                    service: Some(s.clone()),
                    running,
                    desired,
                    completed,
                }
            })
            .collect();
        ListServicesResponse { services }
    })
}

/// Sets the replica count of a replicated service. Retried when the service changed between
/// read and write (the orchestrator records an update's progress in it).
pub(super) async fn scale(
    manager: &Manager,
    request: ScaleServiceRequest,
) -> Result<Service, ControlError> {
    let id = manager
        .write(|t| {
            let service = t.service(&request.name_or_id)?;
            let mut spec = service.spec.clone().unwrap_or_default();
            match &mut spec.mode {
                Some(Mode::Replicas(n)) => *n = request.replicas,
                None => spec.mode = Some(Mode::Replicas(request.replicas)),
                // As Docker: scaling a replicated job sets its total completions (and, as
                // every change of a job, runs it again).
                Some(Mode::ReplicatedJob(job)) => {
                    job.total_completions = request.replicas;
                    job.max_concurrent = job.max_concurrent.min(request.replicas.max(1));
                }
                Some(Mode::Global(_) | Mode::GlobalJob(_)) => {
                    return Err(ControlError::Invalid(format!(
                        "service {}: scale can only be used with replicated or replicated-job mode",
                        spec.name
                    )));
                }
            }
            let job_status = super::placement::updated_job_status(service, &spec, now_ms());
            let updated = Service {
                spec: Some(spec),
                job_status,
                ..service.clone()
            };
            Ok((
                vec![update_action(Action::PutService(updated))],
                service.id.clone(),
            ))
        })
        .await?;
    stored(manager, &id)
}

/// Removes a service; its tasks are told to go away (desired state REMOVE)
/// in the same write, and the task reaper deletes them once they are down.
/// Retried when a task changed between read and write (workers report task
/// status at any time).
pub(super) async fn remove(manager: &Manager, query: &str) -> Result<RemoveResponse, ControlError> {
    manager
        .write(|t| {
            let service = t.service(query)?;
            let mut actions = vec![update_action(Action::RemoveService(service.id.clone()))];
            actions.extend(
                t.tasks_of_service(&service.id)
                    .filter(|task| task.desired_state() < TaskState::Remove)
                    .map(|task| {
                        let mut task = task.clone();
                        task.desired_state = TaskState::Remove as i32;
                        update_action(Action::PutTask(task))
                    }),
            );
            Ok((
                actions,
                RemoveResponse {
                    id: service.id.clone(),
                },
            ))
        })
        .await
}

/// The tasks of one service (by name or id), or of all services.
pub(super) fn tasks(manager: &Manager, service: &str) -> Result<ListTasksResponse, ControlError> {
    manager.store().view(|t| {
        let tasks = if service.is_empty() {
            t.tasks.values().cloned().collect()
        } else {
            let id = t.service(service)?.id.clone();
            t.tasks_of_service(&id).cloned().collect()
        };
        Ok(ListTasksResponse { tasks })
    })
}

/// Refuses invalid published ports and ports another service already publishes.
pub(super) fn check_published_ports(
    tables: &crate::store::Tables,
    ports: &[mini_proto::v1::PortConfig],
    except_service: Option<&str>,
) -> Result<(), ControlError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in ports {
        if !matches!(p.protocol.as_str(), "tcp" | "udp") {
            return Err(ControlError::Invalid(format!(
                "invalid protocol {:?} for published port {}: expected tcp or udp",
                p.protocol, p.published_port
            )));
        }
        if !(1..=65535).contains(&p.published_port) || !(1..=65535).contains(&p.target_port) {
            return Err(ControlError::Invalid(format!(
                "invalid port mapping {}:{}: ports are 1-65535",
                p.published_port, p.target_port
            )));
        }
        if !seen.insert((p.protocol.clone(), p.published_port)) {
            return Err(ControlError::Invalid(format!(
                "port {}/{} is published twice",
                p.published_port, p.protocol
            )));
        }
        for other in tables
            .services
            .values()
            .filter(|s| Some(s.id.as_str()) != except_service)
        {
            let spec = other.spec.as_ref();
            let clash = spec.and_then(|s| s.endpoint.as_ref()).is_some_and(|e| {
                e.ports
                    .iter()
                    .any(|q| q.protocol == p.protocol && q.published_port == p.published_port)
            });
            if clash {
                return Err(ControlError::Conflict(format!(
                    "port {}/{} is already published by service {}",
                    p.published_port,
                    p.protocol,
                    spec.map_or("", |s| s.name.as_str())
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod image_tests {
    use super::*;
    use mini_proto::v1::ContainerSpec;

    fn check(image: &str) -> Result<(), String> {
        let spec = ServiceSpec {
            container: Some(ContainerSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        check_image(&spec).map_err(|e| e.to_string())
    }

    #[test]
    fn health_checks_are_checked_with_swarmkits_words() {
        use mini_proto::v1::HealthConfig;
        let check = |hc: HealthConfig| {
            let spec = ServiceSpec {
                container: Some(ContainerSpec {
                    image: "busybox".into(),
                    healthcheck: Some(hc),
                    ..Default::default()
                }),
                ..Default::default()
            };
            check_healthcheck(&spec).map_err(|e| e.to_string())
        };
        let cmd = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check(HealthConfig {
                test: cmd(&["CMD-SHELL", "true"]),
                interval_ns: 1_000_000,
                retries: 3,
                ..Default::default()
            }),
            Ok(())
        );
        assert_eq!(
            check(HealthConfig {
                test: cmd(&["NONE"]),
                ..Default::default()
            }),
            Ok(())
        );
        assert!(
            check(HealthConfig {
                interval_ns: 999_999,
                ..Default::default()
            })
            .unwrap_err()
            .contains("ContainerSpec: Interval in HealthConfig cannot be less than 1ms")
        );
        assert!(
            check(HealthConfig {
                timeout_ns: 1,
                ..Default::default()
            })
            .unwrap_err()
            .contains("Timeout in HealthConfig cannot be less than 1ms")
        );
        assert!(
            check(HealthConfig {
                retries: -1,
                ..Default::default()
            })
            .unwrap_err()
            .contains("ContainerSpec: Retries in HealthConfig cannot be negative")
        );
        assert!(
            check(HealthConfig {
                test: cmd(&["CMD"]),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn image_references_follow_dockers_grammar() {
        for ok in [
            "host",
            "alpine",
            "alpine:3.19",
            "library/alpine",
            "registry.local:5000/team/app:1.2",
            "localhost/app",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert!(
            check("Alpine")
                .unwrap_err()
                .contains("repository name must be lowercase")
        );
        for bad in [
            "",
            "alpine:",
            "alpine:bad tag",
            "a b",
            "-x",
            "alpine@sha256:zz",
            "a//b",
        ] {
            assert!(
                check(bad).unwrap_err().contains("invalid reference format"),
                "{bad}"
            );
        }
    }
}
