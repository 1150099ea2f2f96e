use super::*;

/// Captured from `nft -j list table ip mini_lb` (nftables 1.0.6) after [`replace_script`].
const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "mini_lb", "handle": 1}},
 {"map": {"family": "ip", "name": "vips", "table": "mini_lb", "type": "ipv4_addr", "handle": 5, "map": "verdict",
   "elem": [["10.0.1.100", {"goto": {"target": "vip_10_0_1_100"}}], ["10.0.1.101", {"goto": {"target": "vip_10_0_1_101"}}]]}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_out", "handle": 1, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}},
 {"set": {"family": "ip", "name": "dead", "table": "mini_lb", "type": "ipv4_addr", "handle": 6, "elem": ["10.0.1.100"]}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_reject", "handle": 9, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_10_0_1_100", "handle": 2}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_10_0_1_101", "handle": 3}},
 {"rule": {"family": "ip", "table": "mini_lb", "chain": "vip_out", "handle": 6, "expr": [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@vips"}}]}},
 {"rule": {"family": "ip", "table": "mini_lb", "chain": "vip_10_0_1_101", "handle": 10, "expr": [{"dnat": {"addr": {"map": {"key": {"numgen": {"mode": "inc", "mod": 2, "offset": 0}}, "data": {"set": [[0, "10.0.1.2"], [1, "10.0.1.3"]]}}}}}]}}
]}"#;

#[test]
fn chain_names_round_trip() {
    for k in [
        LbKey::Vip(Ipv4Addr::new(10, 0, 1, 100)),
        LbKey::Port(Protocol::Tcp, 8080),
        LbKey::Port(Protocol::Udp, 53),
    ] {
        assert_eq!(LbKey::from_chain(&k.chain()), Some(k));
    }
    assert_eq!(LbKey::from_chain("vip_out"), None);
    assert_eq!(LbKey::from_chain("tcp_08080"), None);
    assert_eq!(LbKey::from_chain("vip_1_2_3"), None);
}

#[test]
fn listing_parses_to_the_spec_it_came_from() {
    let t = parse_table(LISTING).unwrap();
    let spec = LbSpec {
        flavour: Flavour::Vip,
        entries: [
            (
                LbKey::Vip(Ipv4Addr::new(10, 0, 1, 100)),
                LbTarget::default(),
            ),
            (
                LbKey::Vip(Ipv4Addr::new(10, 0, 1, 101)),
                LbTarget {
                    backends: vec![Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)],
                    port: None,
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(t, LbTable::from_spec(&spec));
}

#[test]
fn scripts_name_the_entry_and_only_it() {
    let k = LbKey::Port(Protocol::Tcp, 8080);
    let t = LbTarget {
        backends: vec![Ipv4Addr::new(10, 255, 0, 5)],
        port: Some(80),
    };
    let s = set_entry_script(Flavour::Ingress, &k, &t, true);
    assert_eq!(
        s,
        "add chain ip mini_lb tcp_8080\n\
         flush chain ip mini_lb tcp_8080\n\
         add rule ip mini_lb tcp_8080 meta l4proto tcp dnat to numgen inc mod 1 map { 0 : 10.255.0.5 }:80\n\
         add element ip mini_lb ports { tcp . 8080 : goto tcp_8080 }\n"
    );
    // A backend change of an entry whose map element exists leaves the map alone.
    assert!(
        !set_entry_script(Flavour::Ingress, &k, &t, false).contains("element"),
        "the map element was rewritten"
    );
    assert_eq!(
        del_entry_script(Flavour::Ingress, &k, true, true),
        "delete element ip mini_lb ports { tcp . 8080 }\ndelete chain ip mini_lb tcp_8080\n"
    );
    let full = replace_script(&LbSpec {
        flavour: Flavour::Publish,
        entries: [(k, t)].into_iter().collect(),
    });
    assert!(full.starts_with("add table ip mini_lb\ndelete table ip mini_lb\n"));
    assert!(full.contains("fib daddr type local"));
}

#[test]
fn foreign_content_is_not_recognised() {
    let weird = LISTING.replace("\"inc\"", "\"random\"");
    let t = parse_table(&weird).unwrap();
    assert_eq!(t.chains[&LbKey::Vip(Ipv4Addr::new(10, 0, 1, 101))], None);
    assert!(!t.foreign, "unknown rule content is per entry, not foreign");
    let stray = LISTING.replace("\"vip_10_0_1_101\"", "\"vip_10_0_01_101\"");
    assert!(
        parse_table(&stray).unwrap().foreign,
        "a chain named like no key"
    );
    let no_base = LISTING.replace("\"hook\": \"output\", ", "");
    assert_eq!(parse_table(&no_base).unwrap().flavour, None);
}

#[test]
fn chain_names_parse_back_only_when_written_by_us() {
    for key in [
        LbKey::Vip(Ipv4Addr::new(10, 0, 1, 5)),
        LbKey::Vip(Ipv4Addr::new(0, 0, 0, 0)),
        LbKey::Vip(Ipv4Addr::new(255, 255, 255, 255)),
        LbKey::Port(Protocol::Tcp, 8080),
        LbKey::Port(Protocol::Udp, 0),
        LbKey::Port(Protocol::Udp, 65535),
    ] {
        assert_eq!(
            LbKey::from_chain(&key.chain()),
            Some(key),
            "{}",
            key.chain()
        );
    }
    for name in [
        "vip_10_0_01_5",
        "vip_+10_0_1_5",
        "vip_10_0_1",
        "vip_10_0_1_5_6",
        "vip_256_0_1_5",
        "vip_10_0_1_",
        "tcp_08080",
        "tcp_65536",
        "sctp_80",
        "tcp_",
        "vip_out",
    ] {
        assert_eq!(LbKey::from_chain(name), None, "{name}");
    }
}

#[test]
fn keys_order_vips_by_address_then_ports_by_protocol_and_number() {
    let v = |a, d| LbKey::Vip(Ipv4Addr::new(a, 0, 0, d));
    let mut keys = vec![
        LbKey::Port(Protocol::Udp, 53),
        LbKey::Port(Protocol::Tcp, 8080),
        v(10, 2),
        LbKey::Port(Protocol::Tcp, 80),
        v(255, 1),
        v(10, 1),
        v(9, 255),
    ];
    keys.sort();
    assert_eq!(
        keys,
        vec![
            v(9, 255),
            v(10, 1),
            v(10, 2),
            v(255, 1),
            LbKey::Port(Protocol::Tcp, 80),
            LbKey::Port(Protocol::Tcp, 8080),
            LbKey::Port(Protocol::Udp, 53),
        ]
    );
}
