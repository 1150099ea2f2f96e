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
    if spec.name == mini_proto::GATEWAY_BRIDGE {
        return Err(ControlError::Conflict(format!(
            "network with name {} already exists (every node's gateway bridge)",
            spec.name
        )));
    }
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
                scope: String::new(),
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

/// The node's gateway bridge as a `local` network (Docker lists `docker_gwbridge` so): never in
/// the store, its id derived from the node's, so it stays the same on every call.
pub(super) fn gateway_bridge(node_id: &str) -> Network {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{node_id}/{}", mini_proto::GATEWAY_BRIDGE));
    let id: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let subnet: ipnet::Ipv4Net = mini_proto::GATEWAY_BRIDGE_SUBNET
        .parse()
        .expect("a valid literal");
    let gateway = std::net::Ipv4Addr::from(u32::from(subnet.network()) + 1);
    Network {
        id,
        meta: None,
        spec: Some(mini_proto::v1::NetworkSpec {
            name: mini_proto::GATEWAY_BRIDGE.to_string(),
            driver: "bridge".into(),
            ..Default::default()
        }),
        subnet: subnet.to_string(),
        gateway: gateway.to_string(),
        vni: 0,
        last_allocated: String::new(),
        scope: "local".into(),
    }
}

/// Whether `query` (a name, an id or an id prefix) names the gateway bridge `bridge`.
pub(super) fn names_gateway_bridge(bridge: &Network, query: &str) -> bool {
    query == mini_proto::GATEWAY_BRIDGE || (query.len() >= 3 && bridge.id.starts_with(query))
}

/// Removes a network no service uses and no task holds an address on.
pub(super) async fn remove(manager: &Manager, query: &str) -> Result<RemoveResponse, ControlError> {
    if query == mini_proto::GATEWAY_BRIDGE {
        return Err(ControlError::Invalid(format!(
            "{query} is a pre-defined network and cannot be removed"
        )));
    }
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
