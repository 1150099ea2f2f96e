//! `network create` and `network rm`.

use mini_proto::v1::{CreateNetworkRequest, Network, RemoveResponse, store_action::Action};

use super::ControlError;
use crate::allocator::{allocate_network, holds_addresses, validate_network_spec};
use crate::ids::new_id;
use crate::manager::Manager;
use crate::store::{create_action, update_action};

/// Validates, allocates (subnet, gateway, VNI) and stores a new network.
pub(super) async fn create(
    manager: &Manager,
    request: CreateNetworkRequest,
) -> Result<Network, ControlError> {
    let mut spec = request
        .spec
        .ok_or_else(|| ControlError::Invalid("network spec missing".into()))?;
    if spec.driver.is_empty() {
        spec.driver = "overlay".into();
    }
    if spec.ingress {
        return Err(ControlError::Invalid(
            "the ingress network is made by `swarm init`; a second one cannot be created".into(),
        ));
    }
    validate_network_spec(&spec)?;
    let network = manager
        .write(|t| {
            if let Ok(existing) = t.network(&spec.name)
                && existing.spec.as_ref().is_some_and(|s| s.name == spec.name)
            {
                return Err(ControlError::Conflict(format!(
                    "network with name {} already exists ({})",
                    spec.name, existing.id
                )));
            }
            let mut cluster = t.cluster()?.clone();
            let existing: Vec<Network> = t.networks.values().cloned().collect();
            let allocation = allocate_network(&spec, &cluster, &existing)?;
            cluster.next_vni = cluster.next_vni.max(allocation.vni + 1);
            let network = Network {
                id: new_id(),
                meta: None,
                spec: Some(spec.clone()),
                subnet: allocation.subnet.to_string(),
                gateway: allocation.gateway.to_string(),
                vni: allocation.vni,
                last_allocated: String::new(),
            };
            let actions = vec![
                create_action(Action::PutNetwork(network.clone())),
                update_action(Action::PutCluster(cluster)),
            ];
            Ok((actions, network))
        })
        .await?;
    Ok(manager
        .store()
        .view(|t| t.networks.get(&network.id).cloned())
        .unwrap_or(network))
}

/// Removes a network no service uses and no task holds an address on.
pub(super) async fn remove(manager: &Manager, query: &str) -> Result<RemoveResponse, ControlError> {
    manager.write(|t| {
        let network = t.network(query)?;
        let name = network.spec.as_ref().map_or("", |s| s.name.as_str());
        let users: Vec<&str> = t
            .services
            .values()
            .filter(|s| s.spec.as_ref().is_some_and(|spec| spec.networks.contains(&network.id)))
            .map(|s| s.spec.as_ref().map_or("", |spec| spec.name.as_str()))
            .collect();
        if !users.is_empty() {
            return Err(ControlError::Conflict(format!(
                "network {name} is in use by service {}: remove the service first",
                users.join(", ")
            )));
        }
        let holders = t
            .tasks
            .values()
            .filter(|task| holds_addresses(task) && task.networks.iter().any(|a| a.network_id == network.id))
            .count();
        if holders > 0 {
            return Err(ControlError::Conflict(format!(
                "network {name} still has {holders} task(s) attached that are shutting down; try again shortly"
            )));
        }
        let id = network.id.clone();
        Ok((vec![update_action(Action::RemoveNetwork(id.clone()))], RemoveResponse { id }))
    })
    .await
}
