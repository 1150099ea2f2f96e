//! Unit tests of the allocator.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use mini_proto::v1::{
    Cluster, EndpointMode, EndpointSpec, Network, NetworkAttachment, NetworkSpec, Service,
    ServiceSpec, Task, TaskState, TaskStatus, VirtualIp,
};

use super::*;

fn spec(name: &str, subnet: &str, gateway: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.to_owned(),
        driver: "overlay".to_owned(),
        subnet: subnet.to_owned(),
        gateway: gateway.to_owned(),
        ..NetworkSpec::default()
    }
}

fn network(id: &str, name: &str, subnet: &str, vni: u32) -> Network {
    let net = subnet.parse::<ipnet::Ipv4Net>().unwrap();
    Network {
        id: id.to_owned(),
        spec: Some(spec(name, subnet, "")),
        subnet: subnet.to_owned(),
        gateway: subnet::usable_range(net).0.to_string(),
        vni,
        ..Network::default()
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn err(spec: &NetworkSpec, cluster: &Cluster, existing: &[Network]) -> String {
    allocate_network(spec, cluster, existing)
        .unwrap_err()
        .to_string()
}

#[test]
fn first_network_takes_first_pool_subnet_and_first_user_vni() {
    let a = allocate_network(&spec("foo", "", ""), &Cluster::default(), &[]).unwrap();
    assert_eq!(a.subnet.to_string(), "10.0.0.0/24");
    assert_eq!(a.gateway, ip("10.0.0.1"));
    assert_eq!(a.vni, 4097);
}

#[test]
fn pool_subnets_skip_taken_ones_and_use_cluster_settings() {
    let existing = [
        network("a", "a", "10.0.0.0/24", 4097),
        network("b", "b", "10.0.1.0/16", 4098), // odd but stored: blocks 10.0.0.0/16
    ];
    let mut existing = existing.to_vec();
    existing[1].subnet = "10.0.0.0/16".to_owned();
    let a = allocate_network(&spec("c", "", ""), &Cluster::default(), &existing).unwrap();
    assert_eq!(a.subnet.to_string(), "10.1.0.0/24");

    let cluster = Cluster {
        default_addr_pool: "172.30.0.0/16".to_owned(),
        default_subnet_size: 26,
        ..Cluster::default()
    };
    let existing = [
        network("a", "a", "172.30.0.0/26", 4097),
        network("i", "ingress", "10.255.0.0/16", 4096),
    ];
    let a = allocate_network(&spec("c", "", ""), &cluster, &existing).unwrap();
    assert_eq!(a.subnet.to_string(), "172.30.0.64/26");
    assert_eq!(a.gateway, ip("172.30.0.65"));
}

#[test]
fn a_gap_between_networks_is_reused() {
    let existing = [
        network("a", "a", "10.0.0.0/24", 4097),
        network("c", "c", "10.0.2.0/24", 4099),
    ];
    let a = allocate_network(&spec("b", "", ""), &Cluster::default(), &existing).unwrap();
    assert_eq!(a.subnet.to_string(), "10.0.1.0/24");
}

#[test]
fn pool_exhaustion_is_reported() {
    let cluster = Cluster {
        default_addr_pool: "10.9.0.0/23".to_owned(),
        ..Cluster::default()
    };
    let existing = [
        network("a", "a", "10.9.0.0/24", 4097),
        network("b", "b", "10.9.1.0/24", 4098),
    ];
    assert_eq!(
        err(&spec("c", "", ""), &cluster, &existing),
        "the default address pool 10.9.0.0/23 has no free /24 subnet left: remove unused networks or give --subnet"
    );
}

#[test]
fn bad_pool_settings_are_reported() {
    let cluster = Cluster {
        default_addr_pool: "10.0.0.0/16".to_owned(),
        default_subnet_size: 8,
        ..Cluster::default()
    };
    assert_eq!(
        err(&spec("c", "", ""), &cluster, &[]),
        "default subnet size /8 does not fit the address pool 10.0.0.0/16: use a prefix from /16 to /30"
    );
    let cluster = Cluster {
        default_addr_pool: "banana".to_owned(),
        ..Cluster::default()
    };
    assert!(
        err(&spec("c", "", ""), &cluster, &[])
            .starts_with("invalid default address pool \"banana\"")
    );
}

#[test]
fn given_subnet_and_gateway_are_used() {
    let a = allocate_network(
        &spec("demonet", "192.168.200.0/24", "192.168.200.254"),
        &Cluster::default(),
        &[],
    )
    .unwrap();
    assert_eq!(a.subnet.to_string(), "192.168.200.0/24");
    assert_eq!(a.gateway, ip("192.168.200.254"));
}

#[test]
fn invalid_subnets_are_refused_with_the_right_form() {
    let c = Cluster::default();
    assert_eq!(
        err(&spec("n", "10.0.0.0/33", ""), &c, &[]),
        "invalid subnet \"10.0.0.0/33\": expected an IPv4 CIDR such as 10.0.1.0/24"
    );
    assert_eq!(
        err(&spec("n", "10.0.0.0", ""), &c, &[]),
        "invalid subnet \"10.0.0.0\": expected an IPv4 CIDR such as 10.0.1.0/24"
    );
    assert_eq!(
        err(&spec("n", "10.0.0.5/24", ""), &c, &[]),
        "invalid subnet 10.0.0.5/24: host bits are set; did you mean 10.0.0.0/24?"
    );
    assert_eq!(
        err(&spec("n", "10.0.0.0/31", ""), &c, &[]),
        "subnet 10.0.0.0/31 is too small: use a prefix of /30 or shorter"
    );
}

#[test]
fn overlap_is_refused_in_both_directions() {
    let c = Cluster::default();
    let wide = [network("f", "foo", "10.0.0.0/16", 4097)];
    assert_eq!(
        err(&spec("n", "10.0.1.0/24", ""), &c, &wide),
        "subnet 10.0.1.0/24 overlaps network \"foo\" (10.0.0.0/16)"
    );
    let narrow = [network("b", "bar", "10.0.1.0/24", 4097)];
    assert_eq!(
        err(&spec("n", "10.0.0.0/16", ""), &c, &narrow),
        "subnet 10.0.0.0/16 overlaps network \"bar\" (10.0.1.0/24)"
    );
    assert_eq!(
        err(&spec("n", "10.0.1.0/24", ""), &c, &narrow),
        "subnet 10.0.1.0/24 overlaps network \"bar\" (10.0.1.0/24)"
    );
    // Adjacent is fine.
    assert!(allocate_network(&spec("n", "10.0.2.0/24", ""), &c, &narrow).is_ok());
}

#[test]
fn unusable_gateways_are_refused() {
    let c = Cluster::default();
    assert_eq!(
        err(&spec("n", "10.0.1.0/24", "10.0.2.1"), &c, &[]),
        "gateway 10.0.2.1 is outside 10.0.1.0/24: pick an address from 10.0.1.1 to 10.0.1.254"
    );
    assert_eq!(
        err(&spec("n", "10.0.1.0/24", "10.0.1.0"), &c, &[]),
        "gateway 10.0.1.0 is the network address of 10.0.1.0/24: pick an address from 10.0.1.1 to 10.0.1.254"
    );
    assert_eq!(
        err(&spec("n", "10.0.1.0/24", "10.0.1.255"), &c, &[]),
        "gateway 10.0.1.255 is the broadcast address of 10.0.1.0/24: pick an address from 10.0.1.1 to 10.0.1.254"
    );
    assert_eq!(
        err(&spec("n", "10.0.1.0/24", "gw"), &c, &[]),
        "invalid gateway \"gw\": expected an IPv4 address inside 10.0.1.0/24, such as 10.0.1.1"
    );
}

#[test]
fn vnis_ingress_then_4097_upwards_without_immediate_reuse() {
    let mut c = Cluster::default();
    let mut existing: Vec<Network> = Vec::new();
    let ingress = NetworkSpec {
        ingress: true,
        ..spec("ingress", "10.255.0.0/16", "")
    };
    let a = allocate_network(&ingress, &c, &existing).unwrap();
    assert_eq!(a.vni, 4096);
    existing.push(network("i", "ingress", "10.255.0.0/16", a.vni));
    let mut vnis = Vec::new();
    for name in ["a", "b", "c"] {
        let a = allocate_network(&spec(name, "", ""), &c, &existing).unwrap();
        c.next_vni = a.vni + 1;
        existing.push(network(name, name, &a.subnet.to_string(), a.vni));
        vnis.push(a.vni);
    }
    assert_eq!(vnis, [4097, 4098, 4099]);
    // Remove "a" (4097): the next network still gets 4100.
    existing.retain(|n| n.id != "a");
    assert_eq!(
        allocate_network(&spec("d", "", ""), &c, &existing)
            .unwrap()
            .vni,
        4100
    );
    // A second ingress network is refused.
    let second = NetworkSpec {
        ingress: true,
        ..spec("ingress2", "", "")
    };
    assert_eq!(
        err(&second, &c, &existing),
        "an ingress network already exists (\"ingress\"); a cluster has only one"
    );
}

#[test]
fn vni_skips_used_ones_and_wraps() {
    let existing = [
        network("a", "a", "10.0.0.0/24", 4097),
        network("b", "b", "10.0.1.0/24", 4098),
    ];
    assert_eq!(pick_vni(false, 0, &existing).unwrap(), 4099);
    assert_eq!(
        pick_vni(false, vni::MAX_VNI + 1, &existing).unwrap(),
        vni::MAX_VNI
    );
    let top = [network("z", "z", "10.0.0.0/24", vni::MAX_VNI)];
    assert_eq!(pick_vni(false, vni::MAX_VNI, &top).unwrap(), 4097);
}

#[test]
fn driver_and_name_are_validated() {
    let bad = NetworkSpec {
        driver: "bridge".to_owned(),
        ..spec("n", "", "")
    };
    assert_eq!(
        validate_network_spec(&bad).unwrap_err().to_string(),
        "unknown network driver \"bridge\": supported drivers are overlay"
    );
    let default_driver = NetworkSpec {
        driver: String::new(),
        ..spec("n", "", "")
    };
    assert!(validate_network_spec(&default_driver).is_ok());
    for good in ["demonet", "a", "my_net.1-x", "9net"] {
        assert!(validate_network_spec(&spec(good, "", "")).is_ok(), "{good}");
    }
    assert_eq!(
        validate_network_spec(&spec("", "", ""))
            .unwrap_err()
            .to_string(),
        "invalid network name \"\": the name is empty; use letters, digits, '_', '.' and '-', starting with a letter or digit"
    );
    for bad in ["-net", ".net", "my net", "net/1", "né"] {
        assert!(
            matches!(
                validate_network_spec(&spec(bad, "", "")),
                Err(AllocError::InvalidName { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn mac_is_02_42_and_the_ip() {
    assert_eq!(mac_for(ip("192.168.200.3")), "02:42:c0:a8:c8:03");
    assert_eq!(mac_for(ip("10.0.0.2")), "02:42:0a:00:00:02");
}

fn demonet() -> Network {
    network("n1", "demonet", "192.168.200.0/24", 4097)
}

#[test]
fn addresses_start_after_the_gateway_and_skip_taken_ones() {
    let mut net = demonet();
    let none = BTreeSet::new();
    assert_eq!(allocate_address(&net, &none).unwrap(), ip("192.168.200.2"));
    net.last_allocated = "192.168.200.2".to_owned();
    let used = BTreeSet::from([ip("192.168.200.3"), ip("192.168.200.4")]);
    assert_eq!(allocate_address(&net, &used).unwrap(), ip("192.168.200.5"));
}

#[test]
fn a_freed_address_is_not_handed_out_again_at_once() {
    let mut net = demonet();
    let mut in_use = BTreeSet::new();
    for _ in 0..3 {
        let a = allocate_address(&net, &in_use).unwrap();
        in_use.insert(a);
        net.last_allocated = a.to_string();
    }
    // .2 .3 .4 taken; free .3.
    in_use.remove(&ip("192.168.200.3"));
    assert_eq!(
        allocate_address(&net, &in_use).unwrap(),
        ip("192.168.200.5")
    );
}

#[test]
fn allocation_wraps_around_to_the_start() {
    let mut net = demonet();
    net.last_allocated = "192.168.200.254".to_owned();
    let in_use = BTreeSet::from([ip("192.168.200.2")]);
    assert_eq!(
        allocate_address(&net, &in_use).unwrap(),
        ip("192.168.200.3")
    );
    // A custom gateway in the middle is skipped too.
    net.gateway = "192.168.200.3".to_owned();
    assert_eq!(
        allocate_address(&net, &in_use).unwrap(),
        ip("192.168.200.1")
    );
}

#[test]
fn address_exhaustion_names_the_network() {
    let mut net = network("n", "tiny", "10.1.1.0/29", 4097); // .1 gateway, .2-.6 usable
    net.last_allocated = "10.1.1.4".to_owned();
    let in_use: BTreeSet<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 1, 1, i)).collect();
    assert_eq!(
        allocate_address(&net, &in_use).unwrap_err().to_string(),
        "network \"tiny\" (10.1.1.0/29) has no free address left (6 in use): remove unused services, or use a network with a larger subnet"
    );
    let unallocated = Network {
        id: "x".to_owned(),
        spec: Some(spec("pending", "", "")),
        ..Network::default()
    };
    assert!(matches!(
        allocate_address(&unallocated, &BTreeSet::new()),
        Err(AllocError::NetworkNotAllocated { .. })
    ));
}

fn task(id: &str, state: TaskState, desired: TaskState, attachments: &[(&str, &str)]) -> Task {
    let mut t = Task {
        id: id.to_owned(),
        status: Some(TaskStatus {
            state: state as i32,
            ..TaskStatus::default()
        }),
        networks: attachments
            .iter()
            .map(|(n, a)| NetworkAttachment {
                network_id: (*n).to_owned(),
                addr: (*a).to_owned(),
                mac: String::new(),
                vip: String::new(),
            })
            .collect(),
        ..Task::default()
    };
    t.set_desired_state(desired);
    t
}

fn service(name: &str, networks: &[&str], vips: &[(&str, &str)]) -> Service {
    Service {
        id: format!("svc-{name}"),
        spec: Some(ServiceSpec {
            name: name.to_owned(),
            networks: networks.iter().map(|s| (*s).to_owned()).collect(),
            ..ServiceSpec::default()
        }),
        vips: vips
            .iter()
            .map(|(n, a)| VirtualIp {
                network_id: (*n).to_owned(),
                addr: (*a).to_owned(),
            })
            .collect(),
        ..Service::default()
    }
}

#[test]
fn addresses_in_use_counts_live_tasks_and_vips_of_that_network() {
    use TaskState::*;
    let tasks = [
        task(
            "run",
            Running,
            Running,
            &[("n1", "192.168.200.3/24"), ("n2", "10.0.0.3/24")],
        ),
        task(
            "failed-not-acked",
            Failed,
            Running,
            &[("n1", "192.168.200.4/24")],
        ),
        task("stopping", Running, Shutdown, &[("n1", "192.168.200.5/24")]),
        task("history", Failed, Shutdown, &[("n1", "192.168.200.6/24")]),
    ];
    let services = [service(
        "web",
        &["n1"],
        &[("n1", "192.168.200.2/24"), ("n2", "10.0.0.2/24")],
    )];
    let in_use = addresses_in_use("n1", &tasks, &services);
    let expected: BTreeSet<Ipv4Addr> = [
        "192.168.200.2",
        "192.168.200.3",
        "192.168.200.4",
        "192.168.200.5",
    ]
    .into_iter()
    .map(ip)
    .collect();
    assert_eq!(in_use, expected);
}

#[test]
fn task_attachments_one_per_service_network_in_order() {
    let n1 = demonet();
    let n2 = network("n2", "other", "10.0.5.0/24", 4098);
    let svc = service("web", &["n2", "n1"], &[("n1", "192.168.200.2/24")]);
    let new = task("t1", TaskState::New, TaskState::Running, &[]);
    let out = allocate_task_attachments(
        &new,
        &svc,
        &[n1.clone(), n2.clone()],
        &[],
        std::slice::from_ref(&svc),
    )
    .unwrap();
    assert_eq!(
        out.attachments,
        vec![
            NetworkAttachment {
                network_id: "n2".to_owned(),
                addr: "10.0.5.2/24".to_owned(),
                mac: "02:42:0a:00:05:02".to_owned(),
                vip: String::new(),
            },
            NetworkAttachment {
                network_id: "n1".to_owned(),
                addr: "192.168.200.3/24".to_owned(),
                mac: "02:42:c0:a8:c8:03".to_owned(),
                // The service's VIP on n1 travels with the attachment.
                vip: "192.168.200.2/24".to_owned(),
            },
        ]
    );
    let last: Vec<(&str, &str)> = out
        .networks
        .iter()
        .map(|n| (n.id.as_str(), n.last_allocated.as_str()))
        .collect();
    assert_eq!(last, [("n1", "192.168.200.3"), ("n2", "10.0.5.2")]);
}

#[test]
fn task_allocation_is_all_or_nothing_and_keeps_existing_attachments() {
    let n1 = demonet();
    let full = network("full", "full", "10.1.1.0/30", 4098); // one usable address
    let svc = service("web", &["n1", "full"], &[]);
    let occupant = task(
        "o",
        TaskState::Running,
        TaskState::Running,
        &[("full", "10.1.1.2/30")],
    );
    let mut pools = AddressPools::new(&[n1, full], std::slice::from_ref(&occupant), &[]);
    let new = task("t1", TaskState::New, TaskState::Running, &[]);
    let e = pools.allocate_task(&new, &svc).unwrap_err();
    assert!(matches!(e, AllocError::AddressesExhausted { ref network, .. } if network == "full"));
    assert!(
        pools.changed_networks().is_empty(),
        "n1's address was given back"
    );

    // Free the occupant's address: the same pools now succeed, starting where
    // they were (nothing was consumed by the failed attempt).
    for (net, addr) in task_addresses(&occupant) {
        pools.release(&net, addr);
    }
    let partly = task(
        "t2",
        TaskState::New,
        TaskState::Running,
        &[("n1", "192.168.200.9/24")],
    );
    let got = pools.allocate_task(&partly, &svc).unwrap();
    assert_eq!(got[0].addr, "192.168.200.9/24");
    assert_eq!(got[1].addr, "10.1.1.2/30");
}

#[test]
fn many_tasks_from_one_pool_get_distinct_addresses() {
    let svc = service("web", &["n1"], &[("n1", "192.168.200.2/24")]);
    let mut pools = AddressPools::new(&[demonet()], &[], std::slice::from_ref(&svc));
    let new = task("t", TaskState::New, TaskState::Running, &[]);
    let addrs: BTreeSet<String> = (0..100)
        .map(|_| pools.allocate_task(&new, &svc).unwrap()[0].addr.clone())
        .collect();
    assert_eq!(addrs.len(), 100);
    assert!(!addrs.contains("192.168.200.2/24"), "the VIP is taken");
}

#[test]
fn vips_one_per_network_only_in_vip_mode() {
    let n1 = demonet();
    let n2 = network("n2", "other", "10.0.5.0/24", 4098);
    let svc = service("web", &["n1", "n2"], &[("n2", "10.0.5.7/24")]);
    let out = allocate_service_vips(&svc, &[n1.clone(), n2.clone()], &[], &[]).unwrap();
    assert_eq!(
        out.vips,
        vec![
            VirtualIp {
                network_id: "n1".to_owned(),
                addr: "192.168.200.2/24".to_owned(),
            },
            VirtualIp {
                network_id: "n2".to_owned(),
                addr: "10.0.5.7/24".to_owned(),
            },
        ]
    );
    assert_eq!(out.networks.len(), 1);

    let mut dnsrr = service("dns", &["n1"], &[]);
    dnsrr.spec.as_mut().unwrap().endpoint = Some(EndpointSpec {
        mode: EndpointMode::Dnsrr as i32,
        ports: Vec::new(),
    });
    let out = allocate_service_vips(&dnsrr, &[n1], &[], &[]).unwrap();
    assert!(out.vips.is_empty() && out.networks.is_empty());
}

#[test]
fn unknown_network_is_named() {
    let svc = service("web", &["nope"], &[]);
    assert_eq!(
        allocate_service_vips(&svc, &[demonet()], &[], &[])
            .unwrap_err()
            .to_string(),
        "service \"web\" uses network \"nope\", which does not exist"
    );
}
