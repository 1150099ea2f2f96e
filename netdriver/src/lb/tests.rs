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
    let s = set_entry_script(Flavour::Ingress, &k, &t);
    assert_eq!(
        s,
        "add chain ip mini_lb tcp_8080\n\
         flush chain ip mini_lb tcp_8080\n\
         add rule ip mini_lb tcp_8080 meta l4proto tcp dnat to numgen inc mod 1 map { 0 : 10.255.0.5 }:80\n\
         add element ip mini_lb ports { tcp . 8080 : goto tcp_8080 }\n"
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
    assert_eq!(t.chains["vip_10_0_1_101"], None);
    let no_base = LISTING.replace("\"hook\": \"output\", ", "");
    assert_eq!(parse_table(&no_base).unwrap().flavour, None);
}
