//! Address pools of many networks at once: task attachments and service VIPs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use mini_proto::v1::{EndpointMode, Network, NetworkAttachment, Node, Service, Task, VirtualIp};

use super::AllocError;
use super::address::{addresses_in_use, allocate_address, mac_for, network_subnet, parse_host};

/// The free and taken addresses of every network, for allocating many tasks
/// and VIPs in one pass (one store transaction) without rescanning all tasks
/// for each one.
///
/// Each allocation is all-or-nothing: when a task's second network is full,
/// the address taken on its first network is given back. Networks whose
/// `last_allocated` moved are returned by [`AddressPools::changed_networks`];
/// the caller writes them back with the tasks and services.
#[derive(Debug, Clone)]
pub struct AddressPools {
    /// Network id → the network (with its moving `last_allocated`) and the
    /// addresses taken on it.
    pools: BTreeMap<String, Pool>,
}

#[derive(Debug, Clone)]
struct Pool {
    network: Network,
    in_use: BTreeSet<Ipv4Addr>,
    changed: bool,
}

/// A task's attachments and the networks whose `last_allocated` moved.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskAttachments {
    /// One attachment per network of the service, in the service's order.
    pub attachments: Vec<NetworkAttachment>,
    /// The networks an address was taken from, with `last_allocated` updated.
    pub networks: Vec<Network>,
}

/// A service's VIPs and the networks whose `last_allocated` moved.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceVips {
    /// One VIP per network of the service (none in DNS round-robin mode).
    pub vips: Vec<VirtualIp>,
    /// The networks an address was taken from, with `last_allocated` updated.
    pub networks: Vec<Network>,
}

impl AddressPools {
    /// Builds the pools of `networks` from every task and service of the cluster.
    pub fn new<'t>(
        networks: &[Network],
        tasks: impl IntoIterator<Item = &'t Task> + Clone,
        services: &[Service],
    ) -> Self {
        let pools = networks
            .iter()
            .map(|n| {
                let pool = Pool {
                    network: n.clone(),
                    in_use: addresses_in_use(&n.id, tasks.clone(), services),
                    changed: false,
                };
                (n.id.clone(), pool)
            })
            .collect();
        Self { pools }
    }

    /// Marks the nodes' ingress sandbox addresses as taken.
    pub fn reserve_nodes<'n>(&mut self, nodes: impl IntoIterator<Item = &'n Node>) {
        for node in nodes {
            let Some(a) = node.ingress.as_ref() else {
                continue;
            };
            let ip = a
                .addr
                .split('/')
                .next()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            if let (Some(pool), Some(ip)) = (self.pools.get_mut(&a.network_id), ip) {
                pool.in_use.insert(ip);
            }
        }
    }

    /// Takes the next free address of one network.
    pub fn allocate(&mut self, network_id: &str) -> Option<Result<Ipv4Addr, AllocError>> {
        let pool = self.pools.get_mut(network_id)?;
        Some(allocate_address(&pool.network, &pool.in_use).inspect(|ip| {
            pool.in_use.insert(*ip);
            pool.network.last_allocated = ip.to_string();
            pool.changed = true;
        }))
    }

    /// Gives an address back (a task or VIP was removed). It is not handed
    /// out again before the rest of the subnet, see [`allocate_address`].
    pub fn release(&mut self, network_id: &str, ip: Ipv4Addr) {
        if let Some(pool) = self.pools.get_mut(network_id) {
            pool.in_use.remove(&ip);
        }
    }

    /// The attachments `task` needs: one per network of `service`, in order.
    /// Attachments the task already has are kept; the others get a new
    /// address and its MAC. All-or-nothing.
    pub fn allocate_task(
        &mut self,
        task: &Task,
        service: &Service,
    ) -> Result<Vec<NetworkAttachment>, AllocError> {
        let networks = service
            .spec
            .as_ref()
            .map(|s| s.networks.as_slice())
            .unwrap_or_default();
        self.transaction(|pools| {
            networks
                .iter()
                .map(
                    |id| match task.networks.iter().find(|a| &a.network_id == id) {
                        Some(existing) => Ok(existing.clone()),
                        None => {
                            let (ip, prefix) = pools.take(id, service)?;
                            let vip = service
                                .vips
                                .iter()
                                .find(|v| &v.network_id == id)
                                .map(|v| v.addr.clone())
                                .unwrap_or_default();
                            Ok(NetworkAttachment {
                                network_id: id.clone(),
                                addr: format!("{ip}/{prefix}"),
                                mac: mac_for(ip),
                                vip,
                            })
                        }
                    },
                )
                .collect()
        })
    }

    /// The VIPs `service` needs: in VIP endpoint mode (the default) one per
    /// network of the service, in order, keeping the ones it has; in DNS
    /// round-robin mode none. All-or-nothing.
    pub fn allocate_vips(&mut self, service: &Service) -> Result<Vec<VirtualIp>, AllocError> {
        let Some(spec) = &service.spec else {
            return Ok(Vec::new());
        };
        let mode = spec
            .endpoint
            .as_ref()
            .map_or(EndpointMode::Vip, |e| e.mode());
        if mode != EndpointMode::Vip {
            return Ok(Vec::new());
        }
        self.transaction(|pools| {
            spec.networks
                .iter()
                .map(
                    |id| match service.vips.iter().find(|v| &v.network_id == id) {
                        Some(existing) => Ok(existing.clone()),
                        None => {
                            let (ip, prefix) = pools.take(id, service)?;
                            Ok(VirtualIp {
                                network_id: id.clone(),
                                addr: format!("{ip}/{prefix}"),
                            })
                        }
                    },
                )
                .collect()
        })
    }

    /// The networks whose `last_allocated` moved since [`AddressPools::new`].
    pub fn changed_networks(&self) -> Vec<Network> {
        self.pools
            .values()
            .filter(|p| p.changed)
            .map(|p| p.network.clone())
            .collect()
    }

    /// Takes an address on `network_id` for `service`'s task or VIP.
    fn take(&mut self, network_id: &str, service: &Service) -> Result<(Ipv4Addr, u8), AllocError> {
        let unknown = || AllocError::UnknownNetwork {
            service: service
                .spec
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            network_id: network_id.to_owned(),
        };
        let prefix =
            network_subnet(&self.pools.get(network_id).ok_or_else(unknown)?.network)?.prefix_len();
        let ip = self.allocate(network_id).ok_or_else(unknown)??;
        Ok((ip, prefix))
    }

    /// Runs `f`; if it fails, restores the pools as they were.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, AllocError>,
    ) -> Result<T, AllocError> {
        let before = self.pools.clone();
        let result = f(self);
        if result.is_err() {
            self.pools = before;
        }
        result
    }
}

/// Allocates the attachments of one task: a shorthand for
/// [`AddressPools::allocate_task`] when only one task is at hand. `tasks` and
/// `services` are every task and service of the cluster.
pub fn allocate_task_attachments(
    task: &Task,
    service: &Service,
    networks: &[Network],
    tasks: &[Task],
    services: &[Service],
) -> Result<TaskAttachments, AllocError> {
    let mut pools = AddressPools::new(networks, tasks, services);
    let attachments = pools.allocate_task(task, service)?;
    Ok(TaskAttachments {
        attachments,
        networks: pools.changed_networks(),
    })
}

/// Allocates the VIPs of one service: a shorthand for
/// [`AddressPools::allocate_vips`]. `tasks` and `services` are every task and
/// service of the cluster.
pub fn allocate_service_vips(
    service: &Service,
    networks: &[Network],
    tasks: &[Task],
    services: &[Service],
) -> Result<ServiceVips, AllocError> {
    let mut pools = AddressPools::new(networks, tasks, services);
    let vips = pools.allocate_vips(service)?;
    Ok(ServiceVips {
        vips,
        networks: pools.changed_networks(),
    })
}

/// The addresses a task's attachments hold, by network id: what to
/// [`AddressPools::release`] when the task is removed.
pub fn task_addresses(task: &Task) -> Vec<(String, Ipv4Addr)> {
    task.networks
        .iter()
        .filter_map(|a| parse_host(&a.addr).map(|ip| (a.network_id.clone(), ip)))
        .collect()
}
