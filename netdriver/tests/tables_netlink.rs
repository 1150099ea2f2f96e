//! Whole tables loaded as netlink batches leave exactly what the same table loaded with
//! `nft -f` leaves (root required): the same `nft list` output, and the driver's netlink reader
//! reads both back as the wanted table, whichever program wrote it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use common::{Lab, sh};
use mini_netdriver::filter::{self, MemberFilter};
use mini_netdriver::lb::{self, Flavour, LbKey, LbSpec, LbTable, LbTarget};
use mini_netdriver::nft_batch::{Batch, NftSocket};
use mini_netdriver::nft_read::{self, Depth, TableDump};
use mini_netdriver::{Protocol, nat, netns};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, last)
}

fn nft_script(ns: &Path, script: &str) {
    let path = ns.with_extension("nft");
    std::fs::write(&path, script).unwrap();
    sh(ns, &format!("nft -f {}", path.display()));
}

fn send(ns: &Path, batch: Batch) {
    netns::run_in(Some(ns), move || batch.send()).expect("netlink batch");
}

fn read(ns: &Path, table: &str) -> Option<TableDump> {
    let table = table.to_string();
    netns::run_in(Some(ns), move || {
        nft_read::read_table(&NftSocket::open()?, 2, &table, Depth::All)
    })
    .expect("read table")
}

fn spec(flavour: Flavour) -> LbSpec {
    let t = |b: &[u8], port: Option<u16>| LbTarget {
        backends: b.iter().map(|l| ip(*l)).collect(),
        port: port.filter(|_| !b.is_empty()),
    };
    let port = (flavour == Flavour::Ingress).then_some(80);
    let entries: BTreeMap<LbKey, LbTarget> = match flavour {
        Flavour::Vip => [
            (LbKey::Vip(ip(100)), t(&[10, 11, 12], None)),
            (LbKey::Vip(ip(101)), t(&[], None)),
            (LbKey::Vip(ip(102)), t(&[13], None)),
        ]
        .into(),
        _ => [
            (LbKey::Port(Protocol::Tcp, 8080), t(&[20, 21], port)),
            (LbKey::Port(Protocol::Udp, 5353), t(&[22], port)),
            (LbKey::Port(Protocol::Tcp, 9000), t(&[], port)),
        ]
        .into(),
    };
    LbSpec { flavour, entries }
}

#[test]
fn lb_tables_loaded_by_netlink_match_nft_and_read_back() {
    let mut lab = Lab::new();
    for flavour in [Flavour::Vip, Flavour::Ingress, Flavour::Publish] {
        let tag = format!("{flavour:?}").to_lowercase();
        let by_nft = lab.host(&format!("{tag}-nft"));
        let by_nl = lab.host(&format!("{tag}-nl"));
        let want = spec(flavour);
        // Over an existing, different table: the load replaces it.
        for ns in [&by_nft, &by_nl] {
            nft_script(ns, &lb::replace_script(&spec(Flavour::Vip)));
        }
        nft_script(&by_nft, &lb::replace_script(&want));
        send(&by_nl, lb::netlink::replace(&want));
        let a = sh(&by_nft, "nft list table ip mini_lb");
        let b = sh(&by_nl, "nft list table ip mini_lb");
        assert_eq!(a, b, "{flavour:?}: nft wrote\n{a}\nnetlink wrote\n{b}");
        for ns in [&by_nft, &by_nl] {
            let table = lb::from_dump(&read(ns, lb::TABLE).expect("table exists"));
            assert_eq!(
                table,
                LbTable::from_spec(&want),
                "{flavour:?} read back\n{b}"
            );
        }
        send(&by_nl, lb::netlink::delete());
        send(&by_nl, lb::netlink::delete());
        assert_eq!(
            read(&by_nl, lb::TABLE),
            None,
            "deleted twice: gone, no error"
        );
    }
}

#[test]
fn a_hand_edit_of_an_entry_reads_back_as_drift() {
    let mut lab = Lab::new();
    let ns = lab.host("edit");
    let want = spec(Flavour::Vip);
    send(&ns, lb::netlink::replace(&want));
    // The rule deleted by hand: its backend map holds slots no rule uses, not an entry we
    // write (the driver makes it again).
    sh(&ns, "nft flush chain ip mini_lb vip_10_0_9_100");
    let table = lb::from_dump(&read(&ns, lb::TABLE).unwrap());
    assert_eq!(table.chains[&LbKey::Vip(ip(100))], None);
    // Its map emptied too: an entry without backends.
    sh(&ns, "nft flush map ip mini_lb vip_10_0_9_100");
    let table = lb::from_dump(&read(&ns, lb::TABLE).unwrap());
    assert_eq!(
        table.target(&LbKey::Vip(ip(100))),
        Some(&LbTarget::default())
    );
    // A slot missing from the map (the rule's modulus no longer matches): not ours.
    let two = "vip_10_0_9_102";
    sh(
        &ns,
        &format!("nft delete element ip mini_lb {two} '{{ 0 }}'"),
    );
    let table = lb::from_dump(&read(&ns, lb::TABLE).unwrap());
    assert_eq!(table.chains[&LbKey::Vip(ip(102))], None);
    // Replaced by a rule of another shape: not one we write.
    sh(
        &ns,
        "nft add rule ip mini_lb vip_10_0_9_100 dnat to 10.0.9.10",
    );
    let table = lb::from_dump(&read(&ns, lb::TABLE).unwrap());
    assert_eq!(table.chains[&LbKey::Vip(ip(100))], None);
    // A map element jumping elsewhere and a chain that is no entry's: foreign.
    sh(
        &ns,
        "nft add chain ip mini_lb other && \
         nft add element ip mini_lb vips '{ 10.0.9.200 : goto other }'",
    );
    assert!(lb::from_dump(&read(&ns, lb::TABLE).unwrap()).foreign);
}

#[test]
fn a_backend_map_of_another_type_is_foreign() {
    let mut lab = Lab::new();
    let ns = lab.host("maptype");
    send(&ns, lb::netlink::replace(&spec(Flavour::Vip)));
    assert!(!lb::from_dump(&read(&ns, lb::TABLE).unwrap()).foreign);
    // Named like an entry, but a map of addresses to marks: the table is replaced whole.
    sh(
        &ns,
        "nft add map ip mini_lb vip_10_0_9_150 '{ type ipv4_addr : mark; }'",
    );
    assert!(lb::from_dump(&read(&ns, lb::TABLE).unwrap()).foreign);
}

#[test]
fn nat_and_filter_tables_loaded_by_netlink_match_nft() {
    let mut lab = Lab::new();
    let by_nft = lab.host("nat-nft");
    let by_nl = lab.host("nat-nl");
    let subnet = "172.18.0.0/16".parse().unwrap();
    nft_script(&by_nft, &nat::replace_script("mini_gwbridge", subnet));
    send(&by_nl, nat::replace_batch("mini_gwbridge", subnet));
    let a = sh(&by_nft, "nft list table ip mini_gwbridge");
    let b = sh(&by_nl, "nft list table ip mini_gwbridge");
    assert_eq!(a, b, "nat: nft wrote\n{a}\nnetlink wrote\n{b}");
    assert_eq!(
        read(&by_nl, "mini_gwbridge").unwrap().comment,
        Some(nat::comment("mini_gwbridge", subnet))
    );
    // A prefix that is not byte-aligned.
    let odd = "10.1.128.0/17".parse().unwrap();
    nft_script(&by_nft, &nat::replace_script("mini_gwbridge", odd));
    send(&by_nl, nat::replace_batch("mini_gwbridge", odd));
    assert_eq!(
        sh(&by_nft, "nft list table ip mini_gwbridge"),
        sh(&by_nl, "nft list table ip mini_gwbridge")
    );
    send(&by_nl, nat::delete_batch("mini_gwbridge"));
    assert_eq!(read(&by_nl, "mini_gwbridge"), None);

    let f = MemberFilter {
        ports: BTreeSet::from([4789, 7946]),
        members: [ip(1), ip(2)].into(),
    };
    nft_script(&by_nft, &filter::replace_script(&f));
    send(&by_nl, filter::replace_batch(&f));
    let a = sh(&by_nft, "nft list table ip mini_filter");
    let b = sh(&by_nl, "nft list table ip mini_filter");
    assert_eq!(a, b, "filter: nft wrote\n{a}\nnetlink wrote\n{b}");
    for ns in [&by_nft, &by_nl] {
        let t = filter::from_dump(&read(ns, filter::TABLE).unwrap());
        assert_eq!(t.comment, filter::comment(&f.ports));
        assert_eq!(t.members, f.members);
    }
    nft_script(&by_nft, &filter::members_script(&[ip(3)], &[ip(1)]));
    send(&by_nl, filter::members_batch(&[ip(3)], &[ip(1)]));
    let t = filter::from_dump(&read(&by_nl, filter::TABLE).unwrap());
    assert_eq!(t.members, [ip(2), ip(3)].into());
    assert_eq!(
        sh(&by_nft, "nft list table ip mini_filter"),
        sh(&by_nl, "nft list table ip mini_filter")
    );
    // Without members.
    let empty = MemberFilter {
        members: BTreeSet::new(),
        ..f
    };
    nft_script(&by_nft, &filter::replace_script(&empty));
    send(&by_nl, filter::replace_batch(&empty));
    assert_eq!(
        sh(&by_nft, "nft list table ip mini_filter"),
        sh(&by_nl, "nft list table ip mini_filter")
    );
    send(&by_nl, filter::delete_batch());
    assert_eq!(read(&by_nl, filter::TABLE), None);
}

#[test]
fn a_large_table_loads_in_one_batch() {
    let mut lab = Lab::new();
    let ns = lab.host("large");
    // 2,000 VIPs of 3 backends: a batch of several hundred KiB, over the default socket buffer.
    let entries = (0..2000u32)
        .map(|i| {
            let key = LbKey::Vip(Ipv4Addr::from(0x0a01_0000 + i));
            let t = LbTarget {
                backends: (1..=3)
                    .map(|b| Ipv4Addr::from(0x0a02_0000 + i * 4 + b))
                    .collect(),
                port: None,
            };
            (key, t)
        })
        .collect();
    let want = LbSpec {
        flavour: Flavour::Vip,
        entries,
    };
    send(&ns, lb::netlink::replace(&want));
    let table = lb::from_dump(&read(&ns, lb::TABLE).unwrap());
    assert_eq!(table, LbTable::from_spec(&want));
}
