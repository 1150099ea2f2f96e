//! Network specs: validation, subnets and gateways.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use mini_proto::v1::{Cluster, Network, NetworkSpec};

use super::AllocError;
use super::vni::pick_vni;

/// The network drivers `mini` implements.
pub const SUPPORTED_DRIVERS: &[&str] = &["overlay"];

/// The pool subnets come from when the cluster names none.
pub const DEFAULT_ADDR_POOL: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8) {
    Ok(net) => net,
    Err(_) => panic!("10.0.0.0/8 is a valid network"),
};

/// The prefix length of subnets taken from the pool when the cluster names none.
pub const DEFAULT_SUBNET_SIZE: u8 = 24;

/// The longest prefix accepted: a /30 holds a gateway and one task.
pub const MAX_PREFIX: u8 = 30;

/// What [`allocate_network`] decided for a new network. The caller writes these
/// into `Network.subnet`, `.gateway` and `.vni`, and stores `vni + 1` into
/// `Cluster.next_vni` so a VNI is not handed out again right after its network
/// is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkAllocation {
    /// The network's subnet.
    pub subnet: Ipv4Net,
    /// The address of the bridge in every overlay namespace.
    pub gateway: Ipv4Addr,
    /// The VXLAN network identifier.
    pub vni: u32,
}

/// Checks what a user can get wrong in a network spec before anything is
/// allocated: the driver (empty means "overlay") and the name.
pub fn validate_network_spec(spec: &NetworkSpec) -> Result<(), AllocError> {
    validate_name(&spec.name)?;
    if !spec.driver.is_empty() && !SUPPORTED_DRIVERS.contains(&spec.driver.as_str()) {
        return Err(AllocError::UnknownDriver {
            driver: spec.driver.clone(),
            supported: SUPPORTED_DRIVERS,
        });
    }
    Ok(())
}

/// Docker's rule for object names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn validate_name(name: &str) -> Result<(), AllocError> {
    let invalid = |reason| AllocError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(invalid("the name is empty")),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(invalid("the first character is not a letter or digit"));
        }
        Some(_) => {}
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(invalid("it contains a character that is not allowed"));
    }
    Ok(())
}

/// Decides the subnet, gateway and VNI of a new network.
///
/// `existing` is every other network of the cluster; networks whose `subnet`
/// is still empty (not allocated yet) are ignored, so it may include the
/// network being allocated. An empty `spec.subnet` takes the first free subnet
/// of `cluster.default_subnet_size` (24 when 0) from
/// `cluster.default_addr_pool` (10.0.0.0/8 when empty). See [`pick_vni`] for
/// the VNI.
pub fn allocate_network(
    spec: &NetworkSpec,
    cluster: &Cluster,
    existing: &[Network],
) -> Result<NetworkAllocation, AllocError> {
    validate_network_spec(spec)?;
    let taken: Vec<(Ipv4Net, &Network)> = existing
        .iter()
        .filter_map(|n| n.subnet.parse::<Ipv4Net>().ok().map(|s| (s, n)))
        .collect();
    let subnet = if spec.subnet.is_empty() {
        next_free_subnet(cluster, &taken)?
    } else {
        let subnet = parse_subnet(&spec.subnet)?;
        if let Some((other, network)) = taken.iter().find(|(s, _)| overlaps(*s, subnet)) {
            return Err(AllocError::Overlap {
                subnet,
                network: network
                    .spec
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                existing: *other,
            });
        }
        subnet
    };
    let gateway = gateway_for(subnet, &spec.gateway)?;
    let vni = pick_vni(spec.ingress, cluster.next_vni, existing)?;
    Ok(NetworkAllocation {
        subnet,
        gateway,
        vni,
    })
}

/// Parses a user's subnet: an IPv4 CIDR without host bits and with room for
/// a gateway and a task.
pub fn parse_subnet(input: &str) -> Result<Ipv4Net, AllocError> {
    let subnet: Ipv4Net = input
        .trim()
        .parse()
        .map_err(|_| AllocError::InvalidSubnet {
            input: input.to_owned(),
        })?;
    if subnet.trunc() != subnet {
        return Err(AllocError::HostBitsSet {
            input: input.to_owned(),
            suggested: subnet.trunc(),
        });
    }
    if subnet.prefix_len() > MAX_PREFIX {
        return Err(AllocError::SubnetTooSmall {
            subnet,
            max_prefix: MAX_PREFIX,
        });
    }
    Ok(subnet)
}

/// Whether two subnets share any address (either may contain the other).
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first and last addresses a task or gateway may have in `subnet`.
pub fn usable_range(subnet: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    (first.into(), last.into())
}

/// The gateway: the one given, if it is usable in `subnet`, or the first usable
/// address when `input` is empty.
fn gateway_for(subnet: Ipv4Net, input: &str) -> Result<Ipv4Addr, AllocError> {
    let (first, last) = usable_range(subnet);
    if input.is_empty() {
        return Ok(first);
    }
    let gateway: Ipv4Addr = input
        .trim()
        .parse()
        .map_err(|_| AllocError::InvalidGateway {
            input: input.to_owned(),
            subnet,
            example: first,
        })?;
    let problem = if !subnet.contains(&gateway) {
        "is outside"
    } else if gateway == subnet.network() {
        "is the network address of"
    } else if gateway == subnet.broadcast() {
        "is the broadcast address of"
    } else {
        return Ok(gateway);
    };
    Err(AllocError::GatewayNotUsable {
        gateway,
        subnet,
        problem,
        first,
        last,
    })
}

/// The first subnet of the pool's size that overlaps no taken subnet.
fn next_free_subnet(
    cluster: &Cluster,
    taken: &[(Ipv4Net, &Network)],
) -> Result<Ipv4Net, AllocError> {
    let pool = if cluster.default_addr_pool.is_empty() {
        DEFAULT_ADDR_POOL
    } else {
        let pool: Ipv4Net =
            cluster
                .default_addr_pool
                .parse()
                .map_err(|_| AllocError::InvalidPool {
                    input: cluster.default_addr_pool.clone(),
                })?;
        pool.trunc()
    };
    let size = match cluster.default_subnet_size {
        0 => DEFAULT_SUBNET_SIZE,
        n if n < u32::from(pool.prefix_len()) || n > u32::from(MAX_PREFIX) => {
            return Err(AllocError::InvalidSubnetSize {
                size: n,
                pool,
                max_prefix: MAX_PREFIX,
            });
        }
        n => n as u8,
    };
    let step = 1u64 << (32 - size);
    let end = u64::from(u32::from(pool.broadcast())) + 1;
    let mut start = u64::from(u32::from(pool.network()));
    while start + step <= end {
        let candidate =
            Ipv4Net::new(Ipv4Addr::from(start as u32), size).expect("prefix length checked above");
        // Skip past every taken subnet the candidate overlaps, rounded up to
        // the next candidate boundary, instead of trying each one in turn.
        let blocked_until = taken
            .iter()
            .filter(|(s, _)| overlaps(*s, candidate))
            .map(|(s, _)| u64::from(u32::from(s.broadcast())) + 1)
            .max();
        match blocked_until {
            None => return Ok(candidate),
            Some(next) => start = next.max(start + step).div_ceil(step) * step,
        }
    }
    Err(AllocError::PoolExhausted { pool, size })
}
