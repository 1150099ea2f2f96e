//! The planner and the driver against the recording fake.

use std::net::Ipv4Addr;

use super::*;
use crate::fake::FakeKernel;
use crate::kernel::Counters;
use crate::model::{Attachment, MacAddr, OverlayNetwork, Peer, Sandbox};
use crate::observed::NsState;
use crate::op::NsRef;

const NET: &str = "jv8c30bcmnza0000";
const TASK: &str = "zazcrztrp8noilfyignita3tf";

fn config() -> DriverConfig {
    DriverConfig::new("/run/mini-test", Ipv4Addr::new(10, 99, 0, 1))
}

fn peer(last: u8, vtep_last: u8) -> Peer {
    let ip = Ipv4Addr::new(10, 0, 1, last);
    Peer {
        ip,
        mac: MacAddr::for_ip(ip),
        vtep: Ipv4Addr::new(10, 99, 0, vtep_last),
    }
}

fn network(peers: Vec<Peer>) -> OverlayNetwork {
    OverlayNetwork {
        id: NET.into(),
        vni: 4097,
        subnet: "10.0.1.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 0, 1, 1),
        peers,
        pinned: false,
    }
}

fn sandbox(id: &str, last: u8) -> Sandbox {
    let ip = Ipv4Addr::new(10, 0, 1, last);
    Sandbox {
        id: id.into(),
        attachments: vec![Attachment {
            network_id: NET.into(),
            addr: ipnet::Ipv4Net::new(ip, 24).unwrap(),
            mac: MacAddr::for_ip(ip),
        }],
    }
}

fn state(peers: Vec<Peer>, sandboxes: Vec<Sandbox>) -> DesiredState {
    DesiredState {
        networks: vec![network(peers)],
        sandboxes,
        members: None,
    }
}

fn driver() -> NetDriver<FakeKernel> {
    NetDriver::new(config(), FakeKernel::new())
}

fn overlay(d: &NetDriver<FakeKernel>) -> NsState {
    d.kernel().state().namespaces[&names::overlay_ns(NET)]
        .clone()
        .expect("live overlay")
}

#[tokio::test]
async fn create_builds_everything_in_order() {
    let d = driver();
    let desired = state(vec![peer(3, 2)], vec![sandbox(TASK, 2)]);
    let report = d.apply(&desired).await.unwrap();
    assert!(report.observed_kernel);
    let kinds: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "enable ip_forward in the host namespace",
            "create bridge mini_gwbridge 172.18.0.1/16",
            "set nft table ip mini_gwbridge for 172.18.0.0/16",
            "create overlay 1-jv8c30bcmn (vni 4097)",
            "neigh 10.0.1.3 lladdr 02:42:0a:00:01:03 in 1-jv8c30bcmn",
            "fdb 02:42:0a:00:01:03 dst 10.99.0.2 in 1-jv8c30bcmn",
            "create sandbox zazcrztrp8no",
            "attach zazcrztrp8no:eth0 10.0.1.2/24 to 1-jv8c30bcmn",
            "attach zazcrztrp8no:eth1 172.18.0.2/16 to mini_gwbridge",
        ]
    );
    let st = d.kernel().state();
    let sb = st.namespaces["zazcrztrp8no"].as_ref().unwrap();
    assert_eq!(sb.links["eth0"].mtu, 1450);
    assert_eq!(sb.links["eth1"].mtu, 1500);
    assert_eq!(sb.default_route.as_ref().unwrap().dev, "eth1");
    assert_eq!(
        d.sandbox_netns_path(TASK),
        std::path::Path::new("/run/mini-test/netns/zazcrztrp8no")
    );
}

#[tokio::test]
async fn reapply_is_a_no_op_from_memory_and_from_the_kernel() {
    let d = driver();
    let desired = state(vec![peer(3, 2)], vec![sandbox(TASK, 2)]);
    d.apply(&desired).await.unwrap();
    let before = d.kernel().counters();
    let again = d.apply(&desired).await.unwrap();
    assert!(again.ops.is_empty(), "{:?}", again.ops);
    // A structural apply read back what it touched: the next one plans from memory.
    assert!(!again.observed_kernel);
    assert_eq!((d.kernel().counters() - before).writes, 0);
    // A brand new driver over the same kernel (daemon restart) also has nothing to do.
    let restarted = NetDriver::new(config(), d.kernel().fork());
    assert!(restarted.apply(&desired).await.unwrap().ops.is_empty());
}

#[tokio::test]
async fn removing_everything_leaves_nothing() {
    let d = driver();
    d.apply(&state(vec![peer(3, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    let report = d.apply(&DesiredState::default()).await.unwrap();
    let kinds: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "delete namespace 1-jv8c30bcmn",
            "delete namespace zazcrztrp8no",
            "delete link mini_gwbridge in host namespace",
            "delete nft table ip mini_gwbridge",
        ]
    );
    let st = d.kernel().state();
    assert!(st.namespaces.is_empty());
    assert!(st.host.links.is_empty());
    assert!(st.nat.is_none());
}

#[tokio::test]
async fn network_without_local_sandbox_has_no_namespace_unless_pinned() {
    let d = driver();
    let mut desired = state(vec![peer(3, 2)], vec![]);
    assert!(d.apply(&desired).await.unwrap().ops.is_empty());
    desired.networks[0].pinned = true;
    let report = d.apply(&desired).await.unwrap();
    assert!(matches!(report.ops[0], Op::CreateOverlay { .. }));
    // No sandbox: no gateway bridge.
    assert!(d.kernel().state().host.links.is_empty());
}

#[tokio::test]
async fn peers_change_by_exact_differences() {
    let d = driver();
    d.apply(&state(vec![peer(3, 2), peer(4, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    d.apply(&state(vec![peer(3, 2), peer(4, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    let before = d.kernel().counters();
    // 10.0.1.4 moves to another VTEP, 10.0.1.3 leaves, 10.0.1.5 arrives.
    let report = d
        .apply(&state(vec![peer(4, 3), peer(5, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    let ns = names::overlay_ns(NET);
    let m = |l| MacAddr::for_ip(Ipv4Addr::new(10, 0, 1, l));
    assert_eq!(
        report.ops,
        vec![
            Op::DelNeighbour {
                ns: ns.clone(),
                ip: Ipv4Addr::new(10, 0, 1, 3)
            },
            Op::DelFdb {
                ns: ns.clone(),
                mac: m(3)
            },
            Op::SetNeighbour {
                ns: ns.clone(),
                ip: Ipv4Addr::new(10, 0, 1, 5),
                mac: m(5)
            },
            Op::SetFdb {
                ns: ns.clone(),
                mac: m(4),
                vtep: Ipv4Addr::new(10, 99, 0, 3)
            },
            Op::SetFdb {
                ns: ns.clone(),
                mac: m(5),
                vtep: Ipv4Addr::new(10, 99, 0, 2)
            },
        ]
    );
    assert!(!report.observed_kernel, "peer changes plan from memory");
    let after = d.kernel().counters() - before;
    assert_eq!(after.writes, 5);
    assert_eq!(after.reads, 0);
    let peers = overlay(&d).peers();
    assert_eq!(peers, vec![peer(4, 3), peer(5, 2)]);
    // The same IP with a new MAC (a replaced task) replaces the neighbour entry.
    let mut moved = peer(5, 2);
    moved.mac = MacAddr([2, 0x42, 9, 9, 9, 9]);
    let report = d
        .apply(&state(vec![peer(4, 3), moved], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    assert_eq!(report.ops.len(), 3, "{:?}", report.ops); // del old fdb, set neigh, set fdb
    assert_eq!(overlay(&d).peers(), vec![peer(4, 3), moved]);
}

/// A peer that went away leaves the kernel before this node's own sandboxes are torn down in
/// the same apply: removing a service tears down many sandboxes at once (each namespace's
/// deletion waits on the kernel), and the node must not go on sending to its peers' gone
/// tasks meanwhile.
#[tokio::test]
async fn gone_peers_leave_before_sandboxes_are_torn_down() {
    let d = driver();
    let other = "qqqqqqqqqqqqqqqqqqqqqqqqq";
    d.apply(&state(
        vec![peer(3, 2)],
        vec![sandbox(TASK, 2), sandbox(other, 4)],
    ))
    .await
    .unwrap();
    let report = d
        .apply(&state(vec![], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    let kinds: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    let first_teardown = kinds
        .iter()
        .position(|k| k.starts_with("delete "))
        .unwrap_or_else(|| panic!("no teardown in {kinds:?}"));
    let last_peer = kinds
        .iter()
        .rposition(|k| k.starts_with("neigh del") || k.starts_with("fdb del"))
        .unwrap_or_else(|| panic!("no peer removed in {kinds:?}"));
    assert!(last_peer < first_teardown, "{kinds:#?}");
    assert!(overlay(&d).peers().is_empty());
    assert!(
        !d.kernel().state().namespaces.contains_key(&other[..12]),
        "the other sandbox is gone"
    );
}

#[tokio::test]
async fn peers_given_before_the_namespace_are_programmed_with_it() {
    let d = driver();
    d.apply(&state(vec![peer(3, 2), peer(4, 2)], vec![]))
        .await
        .unwrap();
    assert!(d.kernel().state().namespaces.is_empty());
    d.apply(&state(vec![peer(3, 2), peer(4, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    assert_eq!(overlay(&d).peers(), vec![peer(3, 2), peer(4, 2)]);
}

#[tokio::test]
async fn own_vtep_entries_are_not_programmed() {
    let d = driver();
    d.apply(&state(vec![peer(3, 1), peer(4, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    assert_eq!(overlay(&d).peers(), vec![peer(4, 2)]);
}

#[tokio::test]
async fn start_up_reconcile_removes_strays_and_repairs() {
    let desired = state(
        vec![peer(3, 2)],
        vec![sandbox(TASK, 2), sandbox("othertask0001", 5)],
    );
    // A previous run left: a sandbox nobody wants, a half-created namespace file, a stray
    // gateway port, a peer entry no longer wanted, and a broken vxlan0 in the wanted overlay.
    let setup = driver();
    setup
        .apply(&state(
            vec![peer(3, 2), peer(9, 2)],
            vec![sandbox(TASK, 2), sandbox("oldtask000001", 7)],
        ))
        .await
        .unwrap();
    let d = NetDriver::new(config(), setup.kernel().fork());
    d.kernel().edit(|o| {
        o.namespaces.insert("crashedhalfw".into(), None);
        o.host.links.insert(
            "mgwghost000000".into(),
            o.host.links["mgwzazcrztrp8no"].clone(),
        );
    });
    let report = d.apply(&desired).await.unwrap();
    let text: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert!(
        text.contains(&"delete link mgwghost000000 in host namespace".to_string()),
        "{text:?}"
    );
    assert!(text.contains(&"delete namespace crashedhalfw".to_string()));
    assert!(text.contains(&"delete namespace oldtask00000".to_string()));
    assert!(text.contains(&"neigh del 10.0.1.9 in 1-jv8c30bcmn".to_string()));
    assert!(text.contains(&"create sandbox othertask000".to_string()));
    // The kept sandbox is untouched.
    assert!(!text.iter().any(|t| t.contains("zazcrztrp8no")), "{text:?}");
    let st = d.kernel().state();
    assert_eq!(
        st.namespaces.keys().cloned().collect::<Vec<_>>(),
        ["1-jv8c30bcmn", "othertask000", "zazcrztrp8no"]
    );
    // Gateway addresses: the kept sandbox keeps its .3, the new one gets the freed .2.
    let other = st.namespaces["othertask000"].as_ref().unwrap();
    assert!(
        other.links["eth1"]
            .addrs
            .contains(&"172.18.0.2/16".parse().unwrap()),
        "{:?}",
        other.links
    );
    let again = d.apply(&desired).await.unwrap().ops;
    assert!(again.is_empty(), "{again:?}");

    // A broken overlay (wrong VNI) is rebuilt and the sandboxes are re-attached to it.
    d.kernel().edit(|o| {
        let ov = o
            .namespaces
            .get_mut("1-jv8c30bcmn")
            .unwrap()
            .as_mut()
            .unwrap();
        if let crate::observed::LinkKind::Vxlan(v) = &mut ov.links.get_mut("vxlan0").unwrap().kind {
            v.vni = 1;
        }
    });
    d.resync().await;
    let report = d.apply(&desired).await.unwrap();
    let text: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert!(
        text.contains(&"delete namespace 1-jv8c30bcmn".to_string()),
        "{text:?}"
    );
    assert!(text.contains(&"create overlay 1-jv8c30bcmn (vni 4097)".to_string()));
    assert_eq!(
        text.iter()
            .filter(|t| t.contains("to 1-jv8c30bcmn"))
            .count(),
        2
    );
    assert!(d.apply(&desired).await.unwrap().ops.is_empty());
}

#[tokio::test]
async fn failure_forgets_memory_and_next_apply_converges() {
    let d = driver();
    let desired = state(vec![peer(3, 2)], vec![sandbox(TASK, 2)]);
    d.kernel()
        .fail_when(Some(Box::new(|op| matches!(op, Op::AttachGateway { .. }))));
    let err = d.apply(&desired).await.unwrap_err();
    assert!(
        err.to_string().contains("attach zazcrztrp8no:eth1"),
        "{err}"
    );
    d.kernel().fail_when(None);
    let report = d.apply(&desired).await.unwrap();
    assert!(report.observed_kernel);
    assert_eq!(report.ops.len(), 1, "{:?}", report.ops);
    assert!(d.apply(&desired).await.unwrap().ops.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_operation_the_kernel_never_answers_fails_the_apply_and_the_next_converges() {
    let d = driver();
    let desired = state(vec![peer(3, 2), peer(4, 2)], vec![sandbox(TASK, 2)]);
    d.kernel()
        .hang_when(Some(Box::new(|op| matches!(op, Op::SetNeighbour { .. }))));
    let started = tokio::time::Instant::now();
    let err = d.apply(&desired).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no answer from the kernel within 60s")
            && err.to_string().contains("neigh 10.0.1."),
        "{err}"
    );
    assert_eq!(started.elapsed(), OP_DEADLINE);
    d.kernel().hang_when(None);
    let report = d.apply(&desired).await.unwrap();
    assert!(
        report.observed_kernel,
        "the next apply reads the kernel again"
    );
    assert_eq!(overlay(&d).peers(), vec![peer(3, 2), peer(4, 2)]);
}

#[tokio::test]
async fn invalid_states_are_rejected_with_reasons() {
    let d = driver();
    let mut bad = state(vec![], vec![sandbox(TASK, 2)]);
    bad.sandboxes[0].attachments[0].network_id = "nope".into();
    let e = d.apply(&bad).await.unwrap_err().to_string();
    assert!(e.contains("unknown network nope"), "{e}");
    let bad = state(vec![], vec![sandbox("../../etc", 2)]);
    assert!(d.apply(&bad).await.is_err());
    let bad = state(vec![peer(3, 2), peer(3, 3)], vec![]);
    assert!(d.apply(&bad).await.is_err());
    assert_eq!(d.kernel().counters().writes, 0);
}

#[tokio::test]
async fn observe_reports_peers_by_network() {
    let d = driver();
    d.apply(&state(vec![peer(3, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    let obs = d.observe().await.unwrap();
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].network_id.as_deref(), Some(NET));
    assert_eq!(obs[0].state.peers(), vec![peer(3, 2)]);
    // Detach a sandbox from the overlay side only: the planner re-attaches.
    d.kernel().edit(|o| {
        let ov = o
            .namespaces
            .get_mut("1-jv8c30bcmn")
            .unwrap()
            .as_mut()
            .unwrap();
        ov.links.remove("vethzazcrztrp8n");
    });
    d.resync().await;
    let report = d
        .apply(&state(vec![peer(3, 2)], vec![sandbox(TASK, 2)]))
        .await
        .unwrap();
    assert_eq!(
        report.ops[0],
        Op::DeleteLink {
            ns: NsRef::Named("zazcrztrp8no".into()),
            name: "eth0".into()
        }
    );
}

#[tokio::test]
async fn the_members_filter_follows_membership_by_element() {
    use crate::filter::MemberFilter;
    use crate::op::Op;
    let d = driver();
    let ip = |last: u8| std::net::Ipv4Addr::new(10, 99, 0, last);
    let with = |members: &[u8]| DesiredState {
        members: Some(MemberFilter {
            ports: [4789, 7946].into(),
            members: members.iter().map(|&m| ip(m)).collect(),
        }),
        ..state(vec![], vec![])
    };
    let first = d.apply(&with(&[1, 2])).await.unwrap();
    assert!(
        matches!(first.ops.first(), Some(Op::SetFilter { filter }) if filter.members.len() == 2),
        "the filter comes first: {:?}",
        first.ops
    );
    assert_eq!(d.apply(&with(&[1, 2])).await.unwrap().ops, vec![]);
    // A node joins and another is removed: one element update, no kernel read.
    let change = d.apply(&with(&[1, 3])).await.unwrap();
    assert!(!change.observed_kernel);
    assert_eq!(
        change.ops,
        vec![Op::SetFilterMembers {
            add: vec![ip(3)],
            remove: vec![ip(2)],
        }]
    );
    let table = d.kernel().state().filter.expect("filter table");
    assert_eq!(table.members, [ip(1), ip(3)].into());
    // A restarted daemon (fresh driver, same kernel state) keeps the table as it is.
    d.resync().await;
    assert_eq!(d.apply(&with(&[1, 3])).await.unwrap().ops, vec![]);
    // Out of the swarm: the table goes.
    let leave = d.apply(&state(vec![], vec![])).await.unwrap();
    assert!(leave.ops.contains(&Op::DeleteFilter), "{:?}", leave.ops);
    assert_eq!(d.kernel().state().filter, None);
}

/// After every apply the driver's picture is the kernel's, whatever the apply created or
/// removed, and it was kept so by reading back only the namespaces the apply touched.
async fn assert_exact(d: &NetDriver<FakeKernel>) {
    assert_eq!(d.cached().await.as_ref(), Some(&d.kernel().state()));
}

#[tokio::test]
async fn sandbox_changes_read_back_only_what_they_touched() {
    const OTHER: &str = "qqqqqqqqqqqqzzzzzzzzzzzzz";
    const THIRD: &str = "rrrrrrrrrrrrzzzzzzzzzzzzz";
    let d = driver();
    let one = state(vec![peer(9, 2)], vec![sandbox(TASK, 2)]);
    assert!(d.apply(&one).await.unwrap().observed_kernel);
    assert_exact(&d).await;

    // A second sandbox: created, attached, read back (it, the overlay, the host), no full read.
    let two = state(vec![peer(9, 2)], vec![sandbox(TASK, 2), sandbox(OTHER, 3)]);
    let report = d.apply(&two).await.unwrap();
    assert!(!report.observed_kernel);
    assert!(report.reread.host);
    assert_eq!(
        report.reread.namespaces.iter().collect::<Vec<_>>(),
        ["1-jv8c30bcmn", "qqqqqqqqqqqq"]
    );
    // The overlay only gained a port: its vxlan0 entries are not read back, and the picture
    // keeps them (the fake reads touched namespaces without them, as the Linux kernel does).
    assert_eq!(
        report.reread.peers_kept.iter().collect::<Vec<_>>(),
        ["1-jv8c30bcmn"]
    );
    assert_exact(&d).await;

    // A third one and the first one gone in one apply: the first one's veth peers (gateway
    // port, overlay port) are read back with it.
    let swap = state(vec![peer(9, 2)], vec![sandbox(OTHER, 3), sandbox(THIRD, 4)]);
    let report = d.apply(&swap).await.unwrap();
    assert!(!report.observed_kernel);
    assert_eq!(
        report.reread.namespaces.iter().collect::<Vec<_>>(),
        ["1-jv8c30bcmn", "rrrrrrrrrrrr", "zazcrztrp8no"]
    );
    assert_eq!(
        report.reread.peers_kept.iter().collect::<Vec<_>>(),
        ["1-jv8c30bcmn"]
    );
    assert_exact(&d).await;
    let st = d.kernel().state();
    assert!(!st.namespaces.contains_key("zazcrztrp8no"));
    assert!(!st.host.links.contains_key("mgwzazcrztrp8no"));

    // Nothing changed: nothing to do, nothing read, nothing written.
    let before = d.kernel().counters();
    let again = d.apply(&swap).await.unwrap();
    assert!(again.ops.is_empty(), "{:?}", again.ops);
    assert!(!again.observed_kernel && again.reread.is_empty());
    assert_eq!(d.kernel().counters() - before, Counters::default());

    // A peer change after the structural ones: planned from memory, exact differences.
    let more = state(
        vec![peer(9, 2), peer(10, 3)],
        vec![sandbox(OTHER, 3), sandbox(THIRD, 4)],
    );
    let report = d.apply(&more).await.unwrap();
    assert!(!report.observed_kernel);
    assert_eq!(report.ops.len(), 2, "{:?}", report.ops);
    assert_exact(&d).await;

    // Removing the network with its sandboxes: the overlay and both sandboxes read as gone.
    let report = d.apply(&DesiredState::default()).await.unwrap();
    assert!(!report.observed_kernel);
    assert_exact(&d).await;
    assert!(d.kernel().state().namespaces.is_empty());
    let restarted = NetDriver::new(config(), d.kernel().fork());
    assert!(
        restarted
            .apply(&DesiredState::default())
            .await
            .unwrap()
            .ops
            .is_empty()
    );
}

#[tokio::test]
async fn a_failed_structural_apply_reads_everything_again() {
    const OTHER: &str = "qqqqqqqqqqqqzzzzzzzzzzzzz";
    let d = driver();
    let one = state(vec![peer(9, 2)], vec![sandbox(TASK, 2)]);
    d.apply(&one).await.unwrap();
    let two = state(vec![peer(9, 2)], vec![sandbox(TASK, 2), sandbox(OTHER, 3)]);
    d.kernel()
        .fail_when(Some(Box::new(|op| matches!(op, Op::AttachOverlay { .. }))));
    d.apply(&two).await.unwrap_err();
    assert_eq!(d.cached().await, None);
    d.kernel().fail_when(None);
    let report = d.apply(&two).await.unwrap();
    assert!(report.observed_kernel, "a failure forces a full read");
    let kinds: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "attach qqqqqqqqqqqq:eth0 10.0.1.3/24 to 1-jv8c30bcmn",
            "attach qqqqqqqqqqqq:eth1 172.18.0.3/16 to mini_gwbridge",
        ]
    );
    assert_exact(&d).await;
}

#[tokio::test]
async fn a_stray_port_removed_alone_reads_back_its_sandbox_side() {
    // A sandbox whose overlay port was deleted behind the driver's back: the planner deletes
    // the sandbox end and re-attaches; the read back covers both namespaces.
    let d = driver();
    let one = state(vec![], vec![sandbox(TASK, 2)]);
    d.apply(&one).await.unwrap();
    d.kernel().edit(|st| {
        st.namespaces
            .get_mut("1-jv8c30bcmn")
            .and_then(Option::as_mut)
            .unwrap()
            .links
            .remove("vethzazcrztrp8n");
    });
    d.resync().await;
    let report = d.apply(&one).await.unwrap();
    assert!(report.observed_kernel);
    assert!(
        report
            .ops
            .iter()
            .any(|o| matches!(o, Op::AttachOverlay { .. })),
        "{:?}",
        report.ops
    );
    assert_exact(&d).await;
    assert!(d.apply(&one).await.unwrap().ops.is_empty());
}
