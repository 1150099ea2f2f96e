//! Load balancing (VIPs, ingress, published ports) against the recording fake.

use std::net::Ipv4Addr;

use super::*;
use crate::fake::FakeKernel;
use crate::lb::{EntryParts, Flavour, LbEntry, LbKey, LbTable, LbTarget, SlotChange};
use crate::model::{Attachment, MacAddr, OverlayNetwork, Sandbox};
use crate::op::NsRef;
use crate::service::{Ingress, Protocol, PublishedPort, ServiceLb};

const NET: &str = "jv8c30bcmnza0000";
const INGRESS: &str = "ingress000000000";
const TASK: &str = "zazcrztrp8noilfyignita3tf";
const SB: &str = "zazcrztrp8no";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, last)
}

fn driver() -> NetDriver<FakeKernel> {
    let cfg = DriverConfig::new("/run/mini-test", Ipv4Addr::new(10, 99, 0, 1));
    NetDriver::new(cfg, FakeKernel::new())
}

fn net(id: &str, third: u8, vni: u32) -> OverlayNetwork {
    OverlayNetwork {
        id: id.into(),
        vni,
        subnet: format!("10.{third}.1.0/24").parse().unwrap(),
        gateway: Ipv4Addr::new(10, third, 1, 1),
        peers: vec![],
        pinned: false,
    }
}

fn desired() -> DesiredState {
    DesiredState {
        networks: vec![net(NET, 0, 4097), net(INGRESS, 255, 4096)],
        sandboxes: vec![Sandbox {
            id: TASK.into(),
            attachments: vec![Attachment {
                network_id: NET.into(),
                addr: ipnet::Ipv4Net::new(ip(2), 24).unwrap(),
                mac: MacAddr::for_ip(ip(2)),
            }],
        }],
        members: None,
    }
}

fn svc(id: &str, vip: u8, backends: &[u8]) -> ServiceLb {
    ServiceLb {
        service_id: id.into(),
        network_id: NET.into(),
        vip: ip(vip),
        backends: backends.iter().map(|b| ip(*b)).collect(),
    }
}

fn lb(services: Vec<ServiceLb>) -> LoadBalancing {
    LoadBalancing {
        services,
        ingress: None,
    }
}

fn port(published: u16, backends: &[u8]) -> PublishedPort {
    PublishedPort {
        protocol: Protocol::Tcp,
        published,
        backends: backends
            .iter()
            .map(|b| Ipv4Addr::new(10, 255, 1, *b))
            .collect(),
        target: 80,
    }
}

fn ingress(ports: Vec<PublishedPort>) -> Option<Ingress> {
    Some(Ingress {
        network_id: INGRESS.into(),
        addr: "10.255.1.2/24".parse().unwrap(),
        ports,
    })
}

fn table(d: &NetDriver<FakeKernel>, ns: &str) -> Option<LbTable> {
    let st = d.kernel().state();
    match ns {
        "" => st.host.lb,
        n => st.namespaces[n].as_ref().unwrap().lb.clone(),
    }
}

fn target(backends: &[u8]) -> Option<LbTarget> {
    Some(LbTarget {
        backends: backends.iter().map(|b| ip(*b)).collect(),
        port: None,
    })
}

#[tokio::test]
async fn vip_table_is_created_with_the_sandbox_and_reapply_writes_nothing() {
    let d = driver();
    let want = lb(vec![svc("web", 100, &[5, 3]), svc("db", 101, &[])]);
    let report = d.apply_with(&desired(), &want).await.unwrap();
    let last = report.ops.last().unwrap();
    assert!(
        matches!(last, Op::SetLbTable { ns: NsRef::Named(n), spec } if n == SB && spec.entries.len() == 2),
        "{last:?}"
    );
    let t = table(&d, SB).unwrap();
    assert_eq!(t.flavour, Some(Flavour::Vip));
    // Backends sorted; no backends: an entry that rejects.
    assert_eq!(t.target(&LbKey::Vip(ip(100))).cloned(), target(&[3, 5]));
    assert_eq!(t.target(&LbKey::Vip(ip(101))).cloned(), target(&[]));
    // No ingress: nothing in the host namespace.
    assert_eq!(table(&d, ""), None);

    let before = d.kernel().counters();
    assert!(
        d.apply_with(&desired(), &want)
            .await
            .unwrap()
            .ops
            .is_empty()
    );
    assert!(
        d.apply_with(&desired(), &want)
            .await
            .unwrap()
            .ops
            .is_empty()
    );
    assert_eq!((d.kernel().counters() - before).writes, 0);
    let restarted = NetDriver::new(d.config().clone(), d.kernel().fork());
    assert!(
        restarted
            .apply_with(&desired(), &want)
            .await
            .unwrap()
            .ops
            .is_empty()
    );
    // The plain `apply` means "no load balancing": the table goes.
    let report = d.apply(&desired()).await.unwrap();
    assert_eq!(
        report.ops,
        vec![Op::DeleteLbTable {
            ns: NsRef::Named(SB.into())
        }]
    );
}

#[tokio::test]
async fn a_backend_change_touches_only_that_entry_and_reads_nothing() {
    let d = driver();
    let others: Vec<ServiceLb> = (0..50)
        .map(|i| svc(&format!("s{i}"), 150 + i, &[7]))
        .collect();
    let with = |web: ServiceLb| {
        let mut s = others.clone();
        s.push(web);
        lb(s)
    };
    d.apply_with(&desired(), &with(svc("web", 100, &[3, 4])))
        .await
        .unwrap();
    d.apply_with(&desired(), &with(svc("web", 100, &[3, 4])))
        .await
        .unwrap();
    let before = d.kernel().counters();
    let added = d
        .apply_with(&desired(), &with(svc("web", 100, &[3, 4, 5])))
        .await
        .unwrap();
    let removed = d
        .apply_with(&desired(), &with(svc("web", 100, &[4, 5])))
        .await
        .unwrap();
    // The map element exists: only the entry's backend map and rule change, in place. A
    // new backend takes the next slot; a leaving one's slot is taken by the last backend.
    let edits = [
        (added, vec![3, 4, 5], (2, vec![(2, 5)], 3)),
        (removed, vec![4, 5], (3, vec![(0, 5)], 2)),
    ];
    for (report, backends, (from, writes, to)) in edits {
        let writes = writes.into_iter().map(|(i, b)| (i, ip(b))).collect();
        assert_eq!(
            report.ops,
            vec![Op::SetLbEntry {
                ns: NsRef::Named(SB.into()),
                flavour: Flavour::Vip,
                key: LbKey::Vip(ip(100)),
                target: target(&backends).unwrap(),
                change: SlotChange::Edit {
                    from,
                    writes,
                    to,
                    rule: true
                },
                element: false,
            }]
        );
        assert!(!report.observed_kernel);
    }
    let spent = d.kernel().counters() - before;
    assert_eq!((spent.writes, spent.reads), (2, 0));
    let t = table(&d, SB).unwrap();
    assert_eq!(t.target(&LbKey::Vip(ip(100))).cloned(), target(&[4, 5]));
    assert_eq!(
        t.chains[&LbKey::Vip(ip(100))].as_ref().unwrap().slots,
        [ip(5), ip(4)]
    );
    assert_eq!(table(&d, SB).unwrap().chains.len(), 51);
}

#[tokio::test]
async fn vip_removal_deletes_its_element_and_chain_then_the_table() {
    let d = driver();
    d.apply_with(
        &desired(),
        &lb(vec![svc("web", 100, &[3]), svc("db", 101, &[4])]),
    )
    .await
    .unwrap();
    let report = d
        .apply_with(&desired(), &lb(vec![svc("db", 101, &[4])]))
        .await
        .unwrap();
    assert_eq!(
        report.ops,
        vec![Op::DelLbEntry {
            ns: NsRef::Named(SB.into()),
            flavour: Flavour::Vip,
            key: LbKey::Vip(ip(100)),
            parts: EntryParts {
                element: true,
                chain: true,
                map: true
            },
        }]
    );
    let report = d.apply_with(&desired(), &lb(vec![])).await.unwrap();
    assert!(matches!(report.ops.as_slice(), [Op::DeleteLbTable { .. }]));
    assert_eq!(table(&d, SB), None);
    // A VIP on a network the sandbox is not on does not reach it.
    let mut other = svc("x", 100, &[3]);
    other.network_id = INGRESS.into();
    other.vip = Ipv4Addr::new(10, 255, 1, 100);
    other.backends = vec![Ipv4Addr::new(10, 255, 1, 9)];
    assert!(
        d.apply_with(&desired(), &lb(vec![other]))
            .await
            .unwrap()
            .ops
            .is_empty()
    );
}

#[tokio::test]
async fn ingress_builds_the_sandbox_and_both_tables_and_leaves_nothing() {
    let d = driver();
    let want = LoadBalancing {
        services: vec![],
        ingress: ingress(vec![port(8080, &[5, 6])]),
    };
    let report = d.apply_with(&desired(), &want).await.unwrap();
    let text: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    for want in [
        "create overlay 1-ingress000 (vni 4096)",
        "create sandbox ingress_sbox",
        "attach ingress_sbox:eth0 10.255.1.2/24 to 1-ingress000",
        "attach ingress_sbox:eth1 172.18.0.2/16 to mini_gwbridge",
        "set nft table ip mini_lb (Ingress, 1 entries) in netns ingress_sbox",
        "set nft table ip mini_lb (Publish, 1 entries) in host namespace",
    ] {
        assert!(
            text.contains(&want.to_string()),
            "{want:?} not in {text:#?}"
        );
    }
    let key = LbKey::Port(Protocol::Tcp, 8080);
    let host = table(&d, "").unwrap();
    assert_eq!(host.flavour, Some(Flavour::Publish));
    assert_eq!(
        host.target(&key),
        Some(&LbTarget {
            backends: vec![Ipv4Addr::new(172, 18, 0, 2)],
            port: None
        })
    );
    let sbox = table(&d, "ingress_sbox").unwrap();
    assert_eq!(
        sbox.target(&key),
        Some(&LbTarget {
            backends: vec![Ipv4Addr::new(10, 255, 1, 5), Ipv4Addr::new(10, 255, 1, 6)],
            port: Some(80)
        })
    );
    assert!(
        d.apply_with(&desired(), &want)
            .await
            .unwrap()
            .ops
            .is_empty()
    );
    assert!(
        d.apply_with(&desired(), &want)
            .await
            .unwrap()
            .ops
            .is_empty()
    );

    // A backend leaves: one entry in ingress_sbox. A port is added: one entry in each table.
    let fewer = LoadBalancing {
        services: vec![],
        ingress: ingress(vec![port(8080, &[6])]),
    };
    let report = d.apply_with(&desired(), &fewer).await.unwrap();
    assert!(
        matches!(report.ops.as_slice(), [Op::SetLbEntry { ns: NsRef::Named(n), .. }] if n == "ingress_sbox")
    );
    let more = LoadBalancing {
        services: vec![],
        ingress: ingress(vec![port(8080, &[6]), port(9090, &[])]),
    };
    let report = d.apply_with(&desired(), &more).await.unwrap();
    assert!(
        matches!(
            report.ops.as_slice(),
            [
                Op::SetLbEntry {
                    ns: NsRef::Named(_),
                    key: LbKey::Port(_, 9090),
                    ..
                },
                Op::SetLbEntry {
                    ns: NsRef::Host,
                    key: LbKey::Port(_, 9090),
                    ..
                },
            ]
        ),
        "{:?}",
        report.ops
    );

    // Ingress off: its namespace and the host table go, the task's sandbox stays.
    let report = d.apply_with(&desired(), &lb(vec![])).await.unwrap();
    let text: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert!(
        text.contains(&"delete namespace ingress_sbox".to_string()),
        "{text:?}"
    );
    assert!(text.contains(&"delete nft table ip mini_lb in host namespace".to_string()));
    assert_eq!(table(&d, ""), None);
    assert!(!d.kernel().state().namespaces.contains_key("ingress_sbox"));
    d.apply(&DesiredState::default()).await.unwrap();
    let st = d.kernel().state();
    assert!(st.namespaces.is_empty() && st.host.lb.is_none() && st.host.links.is_empty());
}

#[tokio::test]
async fn start_up_reconcile_removes_stray_entries_and_tables() {
    let d = driver();
    let want = lb(vec![svc("web", 100, &[3])]);
    d.apply_with(&desired(), &want).await.unwrap();
    // Behind the driver's back: a stray entry, a stale backend list, a stray host table.
    d.kernel().edit(|st| {
        let t = st
            .namespaces
            .get_mut(SB)
            .unwrap()
            .as_mut()
            .unwrap()
            .lb
            .as_mut()
            .unwrap();
        t.elements.insert(LbKey::Vip(ip(99)));
        t.chains
            .insert(LbKey::Vip(ip(99)), Some(LbEntry::new(vec![ip(9)], None)));
        t.maps.insert(LbKey::Vip(ip(99)));
        t.chains.insert(LbKey::Vip(ip(98)), None);
        t.chains.insert(
            LbKey::Vip(ip(100)),
            Some(LbEntry::new(vec![ip(9), ip(3)], None)),
        );
        // A backend map left without its chain.
        t.maps.insert(LbKey::Vip(ip(97)));
        st.host.lb = Some(LbTable::default());
    });
    let restarted = NetDriver::new(d.config().clone(), d.kernel().fork());
    let report = restarted.apply_with(&desired(), &want).await.unwrap();
    let text: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        text,
        [
            "delete VIP 10.0.1.97 in netns zazcrztrp8no",
            "delete VIP 10.0.1.98 in netns zazcrztrp8no",
            "delete VIP 10.0.1.99 in netns zazcrztrp8no",
            "set VIP 10.0.1.100 -> [10.0.1.3] in netns zazcrztrp8no",
            "delete nft table ip mini_lb in host namespace",
        ]
    );
    assert!(
        restarted
            .apply_with(&desired(), &want)
            .await
            .unwrap()
            .ops
            .is_empty()
    );
    // A table we did not write (unknown flavour) is replaced atomically.
    restarted.kernel().edit(|st| {
        let t = st.namespaces.get_mut(SB).unwrap().as_mut().unwrap();
        t.lb.as_mut().unwrap().flavour = None;
    });
    let again = NetDriver::new(d.config().clone(), restarted.kernel().fork());
    let report = again.apply_with(&desired(), &want).await.unwrap();
    assert!(matches!(report.ops.as_slice(), [Op::SetLbTable { .. }]));
}

#[tokio::test]
async fn invalid_load_balancing_is_rejected_with_reasons() {
    let d = driver();
    let mut unknown = svc("web", 100, &[3]);
    unknown.network_id = "nope".into();
    let mut outside = svc("web", 100, &[3]);
    outside.vip = Ipv4Addr::new(10, 9, 9, 9);
    let clash = ingress(vec![port(8080, &[3]), port(8080, &[4])]);
    let cases = [
        (lb(vec![unknown]), "unknown network nope"),
        (lb(vec![outside]), "outside 10.0.1.0/24"),
        (
            lb(vec![svc("a", 100, &[]), svc("b", 100, &[])]),
            "used by another service",
        ),
        (
            LoadBalancing {
                services: vec![],
                ingress: clash,
            },
            "port 8080/tcp is published twice",
        ),
    ];
    for (want, msg) in cases {
        let e = d
            .apply_with(&desired(), &want)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(msg), "{e:?} lacks {msg:?}");
    }
    assert_eq!(d.kernel().counters().writes, 0);
}

#[test]
fn lb_operations_on_distinct_namespaces_are_batched_together() {
    let set = |ns: &str| Op::DeleteLbTable {
        ns: NsRef::Named(ns.into()),
    };
    let other = Op::EnableForwarding;
    let ops = vec![
        other.clone(),
        set("a"),
        set("b"),
        set("a"),
        other.clone(),
        set("c"),
    ];
    let sizes: Vec<usize> = super::batches(&ops).iter().map(|b| b.len()).collect();
    assert_eq!(sizes, [1, 2, 1, 1, 1]);
    assert!(super::batches(&[]).is_empty());
}

#[test]
fn neighbour_and_fdb_operations_on_distinct_entries_are_batched_together() {
    let ns = "ov".to_string();
    let ip = |last: u8| std::net::Ipv4Addr::new(10, 0, 0, last);
    let mac = |last: u8| crate::model::MacAddr([2, 0, 0, 0, 0, last]);
    let neigh = |last: u8| Op::DelNeighbour {
        ns: ns.clone(),
        ip: ip(last),
    };
    let fdb = |last: u8| Op::DelFdb {
        ns: ns.clone(),
        mac: mac(last),
    };
    let set_neigh = |last: u8| Op::SetNeighbour {
        ns: ns.clone(),
        ip: ip(last),
        mac: mac(last),
    };
    let lb = Op::DeleteLbTable {
        ns: NsRef::Named("a".into()),
    };
    let ops = vec![
        neigh(1),
        fdb(1),
        neigh(2),
        fdb(2),
        // The same entry again: it waits for the batch before it.
        set_neigh(2),
        neigh(3),
        // Another kind: a batch of its own.
        lb.clone(),
        neigh(4),
        Op::EnableForwarding,
        fdb(5),
    ];
    let sizes: Vec<usize> = super::batches(&ops).iter().map(|b| b.len()).collect();
    assert_eq!(sizes, [4, 2, 1, 1, 1, 1]);
}
