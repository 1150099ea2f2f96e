//! The `mini_lb` entry changes sent as netlink batches leave exactly the table that the same
//! change through `nft -f` leaves (root required): the same `nft list` output, the same table
//! read back by the driver, and a refused batch changes nothing.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::{Lab, sh, try_sh};
use mini_netdriver::Protocol;
use mini_netdriver::lb::{
    self, EntryParts, Flavour, LbKey, LbSpec, LbTable, LbTarget, SlotChange, netlink,
};
use mini_netdriver::netns;
use mini_netdriver::nft_batch::{Batch, NftSocket};
use mini_netdriver::nft_read::{Depth, read_table};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, last)
}

/// One namespace written with `nft -f`, one with netlink batches, same starting table, and
/// the table both should hold (what the driver's model says a change leaves).
struct Pair {
    by_nft: PathBuf,
    by_netlink: PathBuf,
    model: RefCell<LbTable>,
}

impl Pair {
    fn new(lab: &mut Lab, tag: &str, flavour: Flavour) -> Pair {
        let empty = LbSpec {
            flavour,
            entries: BTreeMap::new(),
        };
        let pair = Pair {
            by_nft: lab.host(&format!("{tag}-nft")),
            by_netlink: lab.host(&format!("{tag}-nl")),
            model: RefCell::new(LbTable::from_spec(&empty)),
        };
        for ns in [&pair.by_nft, &pair.by_netlink] {
            nft_script(ns, &lb::replace_script(&empty));
        }
        pair
    }

    /// Sets an entry as the planner does: a new one is filled and gets its map element, an
    /// existing one is edited in place.
    fn set(&self, flavour: Flavour, key: LbKey, t: &LbTarget) -> SlotChange {
        let mut model = self.model.borrow_mut();
        let element = !model.elements.contains(&key);
        let change = match model.chains.get(&key) {
            Some(Some(e)) => e.change_to(t),
            _ => SlotChange::Fill,
        };
        nft_script(
            &self.by_nft,
            &lb::set_entry_script(flavour, &key, t, &change, element),
        );
        let mut b = netlink::batch();
        netlink::set_entry(&mut b, flavour, &key, t, &change, element);
        send(&self.by_netlink, b).unwrap();
        assert!(model.set_entry(key, t, &change, element));
        change
    }

    fn del(&self, flavour: Flavour, key: LbKey) {
        let all = EntryParts {
            element: true,
            chain: true,
            map: true,
        };
        nft_script(&self.by_nft, &lb::del_entry_script(flavour, &key, all));
        let mut b = netlink::batch();
        netlink::del_entry(&mut b, flavour, &key, all);
        send(&self.by_netlink, b).unwrap();
        self.model.borrow_mut().del_entry(&key);
    }

    /// Both namespaces list the same table; it reads back (from `nft -j` and from the
    /// netlink dump) as the model says, and balances over `want`'s backends.
    fn assert_same(&self, want: &LbSpec, step: &str) {
        let a = listing(&self.by_nft);
        let b = listing(&self.by_netlink);
        assert_eq!(a, b, "{step}: nft wrote\n{a}\nnetlink wrote\n{b}");
        let json = sh(&self.by_netlink, "nft -j list table ip mini_lb");
        let table = lb::parse_table(&json).expect("parse nft -j output");
        let model = self.model.borrow();
        assert_eq!(table, *model, "{step}: read back\n{b}");
        let dumped = netns::run_in(Some(&self.by_netlink), || {
            read_table(&NftSocket::open()?, 2, lb::TABLE, Depth::All)
        })
        .unwrap()
        .expect("table exists");
        assert_eq!(lb::from_dump(&dumped), *model, "{step}: dumped\n{b}");
        for (k, t) in &want.entries {
            assert_eq!(table.target(k), Some(t), "{step}: {k}");
        }
        assert_eq!(table.chains.len(), want.entries.len(), "{step}");
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
        (
            "a backend leaves from the middle",
            a,
            target(&[10, 12], None),
        ),
        ("one leaves, two arrive", a, target(&[12, 14, 15], None)),
        ("dead VIP gets a backend", b, target(&[13], None)),
        ("VIP loses its last backend", a, target(&[], None)),
        ("and gets two again", a, target(&[16, 17], None)),
    ] {
        pair.set(Flavour::Vip, key, &t);
        want.entries.insert(key, t);
        pair.assert_same(&want, step);
    }
    pair.del(Flavour::Vip, a);
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
            pair.set(flavour, key, &t);
            want.entries.insert(key, t);
            pair.assert_same(&want, &format!("{flavour:?}: {step}"));
        }
        pair.del(flavour, tcp);
        want.entries.remove(&tcp);
        pair.assert_same(&want, &format!("{flavour:?}: tcp removed"));
    }
}

#[test]
fn a_refused_batch_changes_nothing_and_names_the_message() {
    let mut lab = Lab::new();
    let pair = Pair::new(&mut lab, "refuse", Flavour::Vip);
    let a = LbKey::Vip(ip(100));
    pair.set(Flavour::Vip, a, &target(&[10], None));
    let before = listing(&pair.by_netlink);
    // Set a second entry, then delete an element that does not exist: the whole transaction
    // must be refused, the new entry's chain and element included.
    let mut batch = netlink::batch();
    netlink::set_entry(
        &mut batch,
        Flavour::Vip,
        &LbKey::Vip(ip(101)),
        &target(&[11], None),
        &SlotChange::Fill,
        true,
    );
    let element_only = EntryParts {
        element: true,
        chain: false,
        map: false,
    };
    netlink::del_entry(&mut batch, Flavour::Vip, &LbKey::Vip(ip(102)), element_only);
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
    let fill = SlotChange::Fill;
    netlink::set_entry(
        &mut batch,
        Flavour::Vip,
        &a,
        &target(&[10], None),
        &fill,
        true,
    );
    let err = send(&bare, batch).unwrap_err().to_string();
    assert!(err.contains("NFT_MSG_NEWCHAIN"), "{err}");
    let (ok, out) = try_sh(&bare, "nft list ruleset");
    assert!(ok && out.trim().is_empty(), "ruleset after refusal:\n{out}");
}
