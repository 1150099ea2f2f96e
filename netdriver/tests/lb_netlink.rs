//! The `mini_lb` entry changes sent as netlink batches leave exactly the table that the same
//! change through `nft -f` leaves (root required): the same `nft list` output, the same table
//! read back by the driver, and a refused batch changes nothing.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::{Lab, sh, try_sh};
use mini_netdriver::Protocol;
use mini_netdriver::lb::{self, Flavour, LbKey, LbSpec, LbTable, LbTarget, netlink};
use mini_netdriver::netns;
use mini_netdriver::nft_batch::Batch;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, last)
}

/// One namespace written with `nft -f`, one with netlink batches, same starting table.
struct Pair {
    by_nft: PathBuf,
    by_netlink: PathBuf,
}

impl Pair {
    fn new(lab: &mut Lab, tag: &str, flavour: Flavour) -> Pair {
        let pair = Pair {
            by_nft: lab.host(&format!("{tag}-nft")),
            by_netlink: lab.host(&format!("{tag}-nl")),
        };
        let empty = LbSpec {
            flavour,
            entries: BTreeMap::new(),
        };
        for ns in [&pair.by_nft, &pair.by_netlink] {
            nft_script(ns, &lb::replace_script(&empty));
        }
        pair
    }

    /// Sets an entry; its map element is added only when the entry is new (as the planner
    /// does).
    fn set(&self, flavour: Flavour, key: LbKey, t: &LbTarget, want: &LbSpec) {
        let element = !want.entries.contains_key(&key);
        nft_script(
            &self.by_nft,
            &lb::set_entry_script(flavour, &key, t, element),
        );
        let mut b = netlink::batch();
        netlink::set_entry(&mut b, flavour, &key, t, element);
        send(&self.by_netlink, b).unwrap();
    }

    fn del(&self, flavour: Flavour, key: LbKey, element: bool, chain: bool) {
        nft_script(
            &self.by_nft,
            &lb::del_entry_script(flavour, &key, element, chain),
        );
        let mut b = netlink::batch();
        netlink::del_entry(&mut b, flavour, &key, element, chain);
        send(&self.by_netlink, b).unwrap();
    }

    /// Both namespaces list the same table, and it reads back as `want`.
    fn assert_same(&self, want: &LbSpec, step: &str) {
        let a = listing(&self.by_nft);
        let b = listing(&self.by_netlink);
        assert_eq!(a, b, "{step}: nft wrote\n{a}\nnetlink wrote\n{b}");
        let json = sh(&self.by_netlink, "nft -j list table ip mini_lb");
        let table = lb::parse_table(&json).expect("parse nft -j output");
        assert_eq!(table, LbTable::from_spec(want), "{step}: read back\n{b}");
    }
}

fn nft_script(ns: &Path, script: &str) {
    let path = ns.with_extension("nft");
    std::fs::write(&path, script).unwrap();
    sh(ns, &format!("nft -f {}", path.display()));
}

fn send(ns: &Path, batch: Batch) -> std::io::Result<()> {
    netns::run_in(Some(ns), move || batch.send())
}

/// `nft list table` (anonymous maps are listed inline, so no kernel-chosen name shows).
fn listing(ns: &Path) -> String {
    sh(ns, "nft list table ip mini_lb")
}

/// As the planner builds targets: no port without backends (no rule holds it).
fn target(backends: &[u8], port: Option<u16>) -> LbTarget {
    LbTarget {
        backends: backends.iter().map(|b| ip(*b)).collect(),
        port: port.filter(|_| !backends.is_empty()),
    }
}

#[test]
fn vip_entries_written_by_netlink_match_nft() {
    let mut lab = Lab::new();
    let pair = Pair::new(&mut lab, "vip", Flavour::Vip);
    let mut want = LbSpec {
        flavour: Flavour::Vip,
        entries: BTreeMap::new(),
    };
    let a = LbKey::Vip(ip(100));
    let b = LbKey::Vip(ip(101));
    for (step, key, t) in [
        ("first VIP, 3 backends", a, target(&[10, 11, 12], None)),
        ("second VIP, no backend (dead)", b, target(&[], None)),
        ("a backend leaves", a, target(&[10, 12], None)),
        ("dead VIP gets a backend", b, target(&[13], None)),
        ("VIP loses its last backend", a, target(&[], None)),
    ] {
        pair.set(Flavour::Vip, key, &t, &want);
        want.entries.insert(key, t);
        pair.assert_same(&want, step);
    }
    pair.del(Flavour::Vip, a, true, true);
    want.entries.remove(&a);
    pair.assert_same(&want, "VIP removed");
    let dead = sh(&pair.by_netlink, "nft list set ip mini_lb dead");
    assert!(
        !dead.contains("10.0.9.100"),
        "removed VIP still dead:\n{dead}"
    );
}

#[test]
fn port_entries_written_by_netlink_match_nft() {
    let mut lab = Lab::new();
    for flavour in [Flavour::Ingress, Flavour::Publish] {
        let pair = Pair::new(&mut lab, &format!("{flavour:?}").to_lowercase(), flavour);
        let mut want = LbSpec {
            flavour,
            entries: BTreeMap::new(),
        };
        let port = (flavour == Flavour::Ingress).then_some(80);
        let tcp = LbKey::Port(Protocol::Tcp, 8080);
        let udp = LbKey::Port(Protocol::Udp, 5353);
        for (step, key, t) in [
            ("tcp port", tcp, target(&[20, 21], port)),
            ("udp port", udp, target(&[22], port)),
            ("tcp backends change", tcp, target(&[21, 23, 24], port)),
            ("udp loses its backend", udp, target(&[], port)),
        ] {
            pair.set(flavour, key, &t, &want);
            want.entries.insert(key, t);
            pair.assert_same(&want, &format!("{flavour:?}: {step}"));
        }
        pair.del(flavour, tcp, true, true);
        want.entries.remove(&tcp);
        pair.assert_same(&want, &format!("{flavour:?}: tcp removed"));
    }
}

#[test]
fn a_refused_batch_changes_nothing_and_names_the_message() {
    let mut lab = Lab::new();
    let pair = Pair::new(&mut lab, "refuse", Flavour::Vip);
    let a = LbKey::Vip(ip(100));
    pair.set(
        Flavour::Vip,
        a,
        &target(&[10], None),
        &LbSpec {
            flavour: Flavour::Vip,
            entries: BTreeMap::new(),
        },
    );
    let before = listing(&pair.by_netlink);
    // Set a second entry, then delete an element that does not exist: the whole transaction
    // must be refused, the new entry's chain and element included.
    let mut batch = netlink::batch();
    netlink::set_entry(
        &mut batch,
        Flavour::Vip,
        &LbKey::Vip(ip(101)),
        &target(&[11], None),
        true,
    );
    netlink::del_entry(&mut batch, Flavour::Vip, &LbKey::Vip(ip(102)), true, false);
    let msg = send(&pair.by_netlink, batch).unwrap_err().to_string();
    assert!(
        msg.contains("NFT_MSG_DELSETELEM"),
        "error should name the refused message: {msg}"
    );
    assert_eq!(
        listing(&pair.by_netlink),
        before,
        "a refused batch left changes"
    );
    // A namespace without the table: refused, nothing created.
    let bare = lab.host("bare");
    let mut batch = netlink::batch();
    netlink::set_entry(&mut batch, Flavour::Vip, &a, &target(&[10], None), true);
    let err = send(&bare, batch).unwrap_err().to_string();
    assert!(err.contains("NFT_MSG_NEWCHAIN"), "{err}");
    let (ok, out) = try_sh(&bare, "nft list ruleset");
    assert!(ok && out.trim().is_empty(), "ruleset after refusal:\n{out}");
}
