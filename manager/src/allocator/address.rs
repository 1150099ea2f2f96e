//! Addresses inside a network: task IPs, VIPs and their MACs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use mini_proto::v1::{Network, Service, Task, TaskState};

use super::AllocError;
use super::subnet::usable_range;

/// The MAC of an overlay interface: `02:42:` followed by the IP's four bytes,
/// as Docker does (`192.168.200.3` → `02:42:c0:a8:c8:03`).
pub fn mac_for(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The allocated subnet of a network.
pub fn network_subnet(network: &Network) -> Result<Ipv4Net, AllocError> {
    network
        .subnet
        .parse::<Ipv4Net>()
        .map(|s| s.trunc())
        .map_err(|_| AllocError::NetworkNotAllocated {
            network: network_name(network),
            subnet: network.subnet.clone(),
        })
}

/// The user-facing name of a network, or its id when it has no spec.
pub(crate) fn network_name(network: &Network) -> String {
    match &network.spec {
        Some(spec) if !spec.name.is_empty() => spec.name.clone(),
        _ => network.id.clone(),
    }
}

/// The gateway of a network: the stored one, or the first usable address.
fn network_gateway(network: &Network, subnet: Ipv4Net) -> Ipv4Addr {
    network
        .gateway
        .parse()
        .unwrap_or_else(|_| usable_range(subnet).0)
}

/// Picks the next free address of `network`.
///
/// The search starts right AFTER `network.last_allocated` (at the start of the
/// subnet when it is empty or outside the subnet) and wraps around once,
/// skipping the network address, the broadcast address, the gateway and every
/// address in `in_use`. The caller stores the result in
/// `network.last_allocated`, so an address that was just freed is handed out
/// again only after the rest of the subnet has been used.
pub fn allocate_address(
    network: &Network,
    in_use: &BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Addr, AllocError> {
    let subnet = network_subnet(network)?;
    let gateway = network_gateway(network, subnet);
    let (first, last) = usable_range(subnet);
    let (first, last) = (u32::from(first), u32::from(last));
    let start = match network.last_allocated.parse::<Ipv4Addr>().map(u32::from) {
        Ok(prev) if prev >= first && prev < last => prev + 1,
        _ => first,
    };
    (start..=last)
        .chain(first..start)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != gateway && !in_use.contains(ip))
        .ok_or_else(|| AllocError::AddressesExhausted {
            network: network_name(network),
            subnet,
            in_use: in_use.iter().filter(|ip| subnet.contains(*ip)).count()
                + usize::from(!in_use.contains(&gateway)),
        })
}

/// Whether a task still holds its network addresses.
///
/// A task holds them until it has both ended (observed state past RUNNING)
/// and been told to stay down (desired state past RUNNING): then it is only
/// history and its sandbox is gone or going. A task that ended but may still
/// be restarted in place keeps them, as does every task still running.
pub fn holds_addresses(task: &Task) -> bool {
    let observed = task.status.as_ref().map_or(TaskState::New, |s| s.state());
    observed <= TaskState::Running || task.desired_state() <= TaskState::Running
}

/// The addresses of `network_id` that are taken: attachments of the tasks that
/// still hold them (see [`holds_addresses`]) and the services' VIPs. Pass every
/// task and service of the cluster. The gateway is not included;
/// [`allocate_address`] skips it by itself.
pub fn addresses_in_use<'t>(
    network_id: &str,
    tasks: impl IntoIterator<Item = &'t Task>,
    services: &[Service],
) -> BTreeSet<Ipv4Addr> {
    let task_addrs = tasks
        .into_iter()
        .filter(|t| holds_addresses(t))
        .flat_map(|t| &t.networks)
        .filter(|a| a.network_id == network_id)
        .map(|a| a.addr.as_str());
    let vips = services
        .iter()
        .flat_map(|s| &s.vips)
        .filter(|v| v.network_id == network_id)
        .map(|v| v.addr.as_str());
    task_addrs.chain(vips).filter_map(parse_host).collect()
}

/// The address part of "10.0.1.2/24" (or of a bare "10.0.1.2").
pub(crate) fn parse_host(addr: &str) -> Option<Ipv4Addr> {
    let host = addr.split_once('/').map_or(addr, |(host, _)| host);
    host.parse().ok()
}
