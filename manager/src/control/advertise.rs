//! The address a node advertises to the others: `--advertise-addr` as Docker reads it (an IPv4
//! address, `IP:PORT`, or an interface name), or, when it is left out, inferred as Docker does:
//! on `swarm join` the local address of the route to the manager, on `swarm init` the host's one
//! non-loopback IPv4 address.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use super::ControlError;

/// One IPv4 address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InterfaceAddr {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// The address.
    pub addr: Ipv4Addr,
}

/// The IPv4 addresses of this host's interfaces (the daemon's network namespace).
fn host_addresses() -> Result<Vec<InterfaceAddr>, ControlError> {
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| ControlError::Internal(format!("cannot list this host's addresses: {e}")))?;
    Ok(addrs
        .filter_map(|a| {
            let addr = a.address?.as_sockaddr_in()?.ip();
            Some(InterfaceAddr {
                name: a.interface_name,
                addr,
            })
        })
        .collect())
}

/// Whether other nodes could reach `addr`.
fn reachable_kind(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || addr.is_broadcast())
}

/// `--advertise-addr` as given: an IPv4 address (a `:PORT` is accepted and ignored: the
/// listener's port is advertised) or an interface name with one IPv4 address.
fn parse_given(value: &str, interfaces: &[InterfaceAddr]) -> Result<Ipv4Addr, ControlError> {
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => value,
    };
    let addr = match host.parse::<Ipv4Addr>() {
        Ok(addr) => addr,
        Err(_) => {
            let on: Vec<Ipv4Addr> = interfaces
                .iter()
                .filter(|i| i.name == host)
                .map(|i| i.addr)
                .collect();
            match on.as_slice() {
                [one] => *one,
                [] if host.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                    return Err(ControlError::Invalid(format!(
                        "invalid --advertise-addr {value:?}: expected an IPv4 address of this \
                         host (e.g. 192.168.10.6) or an interface name"
                    )));
                }
                [] => {
                    return Err(ControlError::Invalid(format!(
                        "invalid --advertise-addr {value:?}: not an IPv4 address, nor an \
                         interface with an IPv4 address on this host"
                    )));
                }
                many => {
                    return Err(ControlError::Invalid(format!(
                        "interface {host} has more than one IPv4 address ({}): give one of them \
                         as --advertise-addr",
                        join(many)
                    )));
                }
            }
        }
    };
    if !reachable_kind(addr) {
        return Err(ControlError::Invalid(format!(
            "invalid --advertise-addr {addr}: other nodes must be able to reach it; give a \
             unicast address of this host"
        )));
    }
    Ok(addr)
}

fn join(addrs: &[Ipv4Addr]) -> String {
    addrs
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The one address to advertise when `swarm init` names none, chosen among `interfaces` as
/// Docker chooses: the only non-loopback IPv4 address, else an error saying which ones compete.
fn choose_for_init(interfaces: &[InterfaceAddr]) -> Result<Ipv4Addr, ControlError> {
    let candidates: Vec<&InterfaceAddr> = interfaces
        .iter()
        .filter(|i| reachable_kind(i.addr) && !i.addr.is_link_local())
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.addr),
        [] => Err(ControlError::Invalid(
            "could not find an IPv4 address to advertise on this host: give --advertise-addr"
                .into(),
        )),
        [first, rest @ ..] if rest.iter().all(|i| i.name == first.name) => {
            Err(ControlError::Invalid(format!(
                "could not choose an IP address to advertise since this system has multiple \
                 addresses on interface {} ({}): give --advertise-addr",
                first.name,
                join(&candidates.iter().map(|i| i.addr).collect::<Vec<_>>())
            )))
        }
        _ => Err(ControlError::Invalid(format!(
            "could not choose an IP address to advertise since this system has multiple \
             addresses on different interfaces ({}): give --advertise-addr",
            candidates
                .iter()
                .map(|i| format!("{} on {}", i.addr, i.name))
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// The address for `swarm init`.
pub(super) fn for_init(value: &str) -> Result<Ipv4Addr, ControlError> {
    let interfaces = host_addresses()?;
    if value.is_empty() {
        choose_for_init(&interfaces)
    } else {
        parse_given(value, &interfaces)
    }
}

/// The address for `swarm join` to the manager at `remote`: the given one, or the local
/// address of this host's route to `remote` (a connected UDP socket: nothing is sent).
pub(super) fn for_join(value: &str, remote: SocketAddr) -> Result<Ipv4Addr, ControlError> {
    if !value.is_empty() {
        return parse_given(value, &host_addresses()?);
    }
    let no_route = |e: std::io::Error| {
        ControlError::Unreachable(format!(
            "could not find the address of this host on the route to the manager {remote}: {e}; \
             give --advertise-addr"
        ))
    };
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(no_route)?;
    socket.connect(remote).map_err(no_route)?;
    match socket.local_addr().map_err(no_route)? {
        SocketAddr::V4(local) if reachable_kind(*local.ip()) => Ok(*local.ip()),
        other => Err(ControlError::Invalid(format!(
            "the route to the manager {remote} leaves from {}, which other nodes cannot reach: \
             give --advertise-addr",
            other.ip()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: &str) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            addr: addr.parse().unwrap(),
        }
    }

    fn message(r: Result<Ipv4Addr, ControlError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn given_addresses_ports_and_interfaces() {
        let host = [
            iface("lo", "127.0.0.1"),
            iface("eth0", "10.77.0.1"),
            iface("eth1", "192.168.5.2"),
            iface("eth1", "192.168.6.2"),
        ];
        assert_eq!(
            parse_given("10.1.2.3", &host).unwrap(),
            Ipv4Addr::new(10, 1, 2, 3)
        );
        assert_eq!(
            parse_given("10.1.2.3:2377", &host).unwrap(),
            Ipv4Addr::new(10, 1, 2, 3)
        );
        assert_eq!(
            parse_given("eth0", &host).unwrap(),
            Ipv4Addr::new(10, 77, 0, 1)
        );
        assert_eq!(
            parse_given("eth0:2377", &host).unwrap(),
            Ipv4Addr::new(10, 77, 0, 1)
        );
        assert!(message(parse_given("eth1", &host)).contains("192.168.5.2 and 192.168.6.2"));
        assert!(message(parse_given("wlan9", &host)).contains("nor an interface"));
        assert!(message(parse_given("10.1.2", &host)).contains("expected an IPv4 address"));
        assert!(message(parse_given("127.0.0.1", &host)).contains("must be able to reach it"));
        assert!(message(parse_given("lo", &host)).contains("must be able to reach it"));
        assert!(message(parse_given("0.0.0.0", &host)).contains("must be able to reach it"));
    }

    #[test]
    fn init_takes_the_one_address_or_names_the_competitors() {
        let one = [iface("lo", "127.0.0.1"), iface("eth0", "10.77.0.1")];
        assert_eq!(choose_for_init(&one).unwrap(), Ipv4Addr::new(10, 77, 0, 1));
        let link_local_too = [iface("eth0", "10.77.0.1"), iface("eth0", "169.254.3.4")];
        assert_eq!(
            choose_for_init(&link_local_too).unwrap(),
            Ipv4Addr::new(10, 77, 0, 1)
        );
        let none = [iface("lo", "127.0.0.1")];
        assert!(message(choose_for_init(&none)).contains("give --advertise-addr"));
        let two_on_one = [iface("eth0", "10.0.0.1"), iface("eth0", "10.0.0.2")];
        assert!(
            message(choose_for_init(&two_on_one))
                .contains("multiple addresses on interface eth0 (10.0.0.1 and 10.0.0.2)")
        );
        let two = [iface("eth0", "10.0.0.1"), iface("eth1", "10.0.1.1")];
        assert!(
            message(choose_for_init(&two))
                .contains("on different interfaces (10.0.0.1 on eth0 and 10.0.1.1 on eth1)")
        );
    }

    #[test]
    fn join_takes_the_route_to_the_manager() {
        // Loopback's route leaves from loopback: not an address other nodes can reach.
        let err = for_join("", "127.0.0.1:2377".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("cannot reach"), "{err}");
        assert_eq!(
            for_join("10.9.8.7", "127.0.0.1:2377".parse().unwrap()).unwrap(),
            Ipv4Addr::new(10, 9, 8, 7)
        );
    }
}
