use super::*;

/// Captured from `nft -j list table ip mini_lb` (nftables 1.0.6) after [`replace_script`] and
/// an edit that left VIP 10.0.1.101's slots out of address order.
const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "mini_lb", "handle": 2}},
 {"map": {"family": "ip", "name": "vips", "table": "mini_lb", "type": "ipv4_addr", "handle": 3, "map": "verdict",
   "elem": [["10.0.1.100", {"goto": {"target": "vip_10_0_1_100"}}], ["10.0.1.101", {"goto": {"target": "vip_10_0_1_101"}}]]}},
 {"set": {"family": "ip", "name": "dead", "table": "mini_lb", "type": "ipv4_addr", "handle": 4, "elem": ["10.0.1.100"]}},
 {"map": {"family": "ip", "name": "vip_10_0_1_100", "table": "mini_lb", "type": "integer", "handle": 9, "map": "ipv4_addr"}},
 {"map": {"family": "ip", "name": "vip_10_0_1_101", "table": "mini_lb", "type": "integer", "handle": 11, "map": "ipv4_addr", "elem": [[0, "10.0.1.3"], [1, "10.0.1.2"]]}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_out", "handle": 1, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_reject", "handle": 2, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_10_0_1_100", "handle": 8}},
 {"chain": {"family": "ip", "table": "mini_lb", "name": "vip_10_0_1_101", "handle": 10}},
 {"rule": {"family": "ip", "table": "mini_lb", "chain": "vip_out", "handle": 5, "expr": [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@vips"}}]}},
 {"rule": {"family": "ip", "table": "mini_lb", "chain": "vip_10_0_1_101", "handle": 12, "expr": [{"dnat": {"addr": {"map": {"key": {"numgen": {"mode": "inc", "mod": 2, "offset": 0}}, "data": "@vip_10_0_1_101"}}}}]}}
]}"#;

fn ip(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, d)
}

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
fn listing_parses_to_the_entries_it_holds_in_slot_order() {
    let t = parse_table(LISTING).unwrap();
    let spec = LbSpec {
        flavour: Flavour::Vip,
        entries: [
            (LbKey::Vip(ip(100)), LbTarget::default()),
            (
                LbKey::Vip(ip(101)),
                LbTarget {
                    backends: vec![ip(2), ip(3)],
                    port: None,
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    let mut want = LbTable::from_spec(&spec);
    want.chains.insert(
        LbKey::Vip(ip(101)),
        Some(LbEntry::new(vec![ip(3), ip(2)], None)),
    );
    assert_eq!(t, want);
    // Sorted for planning, in slot order for editing.
    assert_eq!(
        t.target(&LbKey::Vip(ip(101))),
        spec.entries.get(&LbKey::Vip(ip(101)))
    );
}

#[test]
fn scripts_name_the_entry_and_only_it() {
    let k = LbKey::Port(Protocol::Tcp, 8080);
    let t = LbTarget {
        backends: vec![Ipv4Addr::new(10, 255, 0, 5)],
        port: Some(80),
    };
    let s = set_entry_script(Flavour::Ingress, &k, &t, &SlotChange::Fill, true);
    assert_eq!(
        s,
        "add chain ip mini_lb tcp_8080\n\
         flush chain ip mini_lb tcp_8080\n\
         add map ip mini_lb tcp_8080 { typeof numgen inc mod 65536 : ip daddr; }\n\
         flush map ip mini_lb tcp_8080\n\
         add element ip mini_lb tcp_8080 { 0 : 10.255.0.5 }\n\
         add rule ip mini_lb tcp_8080 meta l4proto tcp dnat to numgen inc mod 1 map @tcp_8080:80\n\
         add element ip mini_lb ports { tcp . 8080 : goto tcp_8080 }\n"
    );
    // A backend change of an entry whose map element exists edits its backend map in place.
    let two = LbTarget {
        backends: vec![Ipv4Addr::new(10, 255, 0, 5), Ipv4Addr::new(10, 255, 0, 6)],
        port: Some(80),
    };
    let edit = LbEntry::new(t.backends.clone(), t.port).change_to(&two);
    assert_eq!(
        set_entry_script(Flavour::Ingress, &k, &two, &edit, false),
        "flush chain ip mini_lb tcp_8080\n\
         add element ip mini_lb tcp_8080 { 1 : 10.255.0.6 }\n\
         add rule ip mini_lb tcp_8080 meta l4proto tcp dnat to numgen inc mod 2 map @tcp_8080:80\n"
    );
    let all = EntryParts {
        element: true,
        chain: true,
        map: true,
    };
    assert_eq!(
        del_entry_script(Flavour::Ingress, &k, all),
        "delete element ip mini_lb ports { tcp . 8080 }\n\
         delete chain ip mini_lb tcp_8080\n\
         delete map ip mini_lb tcp_8080\n"
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
    let key = LbKey::Vip(ip(101));
    let weird = LISTING.replace("\"inc\"", "\"random\"");
    let t = parse_table(&weird).unwrap();
    assert_eq!(t.chains[&key], None);
    assert!(!t.foreign, "unknown rule content is per entry, not foreign");
    // The rule's modulus and the map's slots disagree: not an entry we wrote.
    let short = LISTING.replace(
        "[[0, \"10.0.1.3\"], [1, \"10.0.1.2\"]]",
        "[[1, \"10.0.1.2\"]]",
    );
    assert_eq!(parse_table(&short).unwrap().chains[&key], None);
    // The rule looks up another entry's map.
    let other = LISTING.replace(
        "\"data\": \"@vip_10_0_1_101\"",
        "\"data\": \"@vip_10_0_1_100\"",
    );
    assert_eq!(parse_table(&other).unwrap().chains[&key], None);
    for (from, to, what) in [
        (
            "\"name\": \"vip_10_0_1_101\", \"handle\": 10",
            "\"name\": \"vip_10_0_01_101\", \"handle\": 10",
            "a chain named like no key",
        ),
        (
            "\"type\": \"integer\", \"handle\": 11",
            "\"type\": \"mark\", \"handle\": 11",
            "a backend map of another type",
        ),
    ] {
        assert!(LISTING.contains(from), "{what}: the listing changed");
        assert!(
            parse_table(&LISTING.replace(from, to)).unwrap().foreign,
            "{what}"
        );
    }
    let no_base = LISTING.replace("\"hook\": \"output\", ", "");
    assert_eq!(parse_table(&no_base).unwrap().flavour, None);
}

/// A small deterministic generator (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn an_edit_reaches_the_wanted_backends_and_costs_what_changed() {
    let mut rng = Lcg(7);
    let mut entry = LbEntry::new(Vec::new(), None);
    let mut want: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for step in 0..3000 {
        // Mostly one backend in or out (a task starting or stopping), sometimes a burst.
        let burst = if step % 100 == 99 { 20 } else { 1 };
        let before = want.clone();
        for _ in 0..burst {
            let b = Ipv4Addr::from(0x0a00_0000 + rng.next(400) as u32);
            if !want.remove(&b) {
                want.insert(b);
            }
        }
        let target = LbTarget {
            backends: want.iter().copied().collect(),
            port: None,
        };
        let change = entry.change_to(&target);
        let SlotChange::Edit {
            writes, from, to, ..
        } = &change
        else {
            panic!("an edit is planned in place");
        };
        let changed = before.symmetric_difference(&want).count();
        let deleted = SlotChange::deleted(*from, writes, *to).count();
        assert!(
            writes.len() <= changed && deleted <= 2 * changed,
            "step {step}: {changed} backends changed, {} writes and {deleted} deletes",
            writes.len()
        );
        assert!(entry.apply(&change, &target));
        assert_eq!(entry.target, target, "step {step}");
        let mut slots = entry.slots.clone();
        slots.sort_unstable();
        assert_eq!(
            slots, target.backends,
            "step {step}: slots hold the backends"
        );
    }
    // An edit planned for another slot count does not apply.
    let stale = SlotChange::Edit {
        from: entry.slots.len() as u32 + 1,
        writes: Vec::new(),
        to: 0,
        rule: true,
    };
    assert!(!entry.apply(&stale, &LbTarget::default()));
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
