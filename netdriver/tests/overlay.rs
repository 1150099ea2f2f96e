//! Privileged end-to-end tests of the driver on the real kernel (root required).
//!
//! Two "hosts" are namespaces joined by a veth underlay (10.99.0.1 ↔ 10.99.0.2); a third
//! namespace plays the internet behind host A (10.98.0.2). Each host runs its own driver with
//! `host_netns` set to its namespace and its own run directory.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;

use common::{Lab, mounts_under, sh, try_sh};
use mini_netdriver::{
    Attachment, DesiredState, DriverConfig, Kernel, LinuxKernel, MacAddr, NetDriver, Op,
    OverlayNetwork, Peer, Sandbox,
};

const NET: &str = "ovnet0000test";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, last)
}

fn config(run: &Path, host: &Path, vtep: Ipv4Addr) -> DriverConfig {
    let mut c = DriverConfig::new(run, vtep);
    c.host_netns = Some(host.to_path_buf());
    c
}

fn desired(task: &str, me: u8, peers: &[(u8, Ipv4Addr)]) -> DesiredState {
    DesiredState {
        networks: vec![OverlayNetwork {
            id: NET.into(),
            vni: 4097,
            subnet: "10.0.9.0/24".parse().unwrap(),
            gateway: ip(1),
            peers: peers
                .iter()
                .map(|(last, vtep)| Peer {
                    ip: ip(*last),
                    mac: MacAddr::for_ip(ip(*last)),
                    vtep: *vtep,
                })
                .collect(),
            pinned: false,
        }],
        sandboxes: vec![Sandbox {
            id: task.into(),
            attachments: vec![Attachment {
                network_id: NET.into(),
                addr: ipnet::Ipv4Net::new(ip(me), 24).unwrap(),
                mac: MacAddr::for_ip(ip(me)),
            }],
        }],
        members: None,
    }
}

/// A driver started afresh, which reads everything from the kernel, finds `want` applied.
async fn assert_fresh_driver_finds_nothing_to_do(cfg: &DriverConfig, want: &DesiredState) {
    let fresh = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
    let again = fresh.apply(want).await.unwrap();
    assert!(
        again.ops.is_empty(),
        "restart found differences: {:?}",
        again.ops
    );
}

struct TwoHosts {
    lab: Lab,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    x: std::path::PathBuf,
    vtep_a: Ipv4Addr,
    vtep_b: Ipv4Addr,
}

fn two_hosts() -> TwoHosts {
    let mut lab = Lab::new();
    let a = lab.host("a");
    let b = lab.host("b");
    let x = lab.host("x");
    lab.wire(&a, "u0", "10.99.0.1/24", &b, "u0", "10.99.0.2/24");
    lab.wire(&a, "wan0", "10.98.0.1/24", &x, "wan0", "10.98.0.2/24");
    TwoHosts {
        lab,
        a,
        b,
        x,
        vtep_a: Ipv4Addr::new(10, 99, 0, 1),
        vtep_b: Ipv4Addr::new(10, 99, 0, 2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_crosses_vxlan_egress_is_masqueraded_and_teardown_leaves_nothing() {
    let t = two_hosts();
    let cfg_a = config(&t.lab.run_dir("a"), &t.a, t.vtep_a);
    let cfg_b = config(&t.lab.run_dir("b"), &t.b, t.vtep_b);
    let da = NetDriver::new(cfg_a.clone(), LinuxKernel::new(cfg_a.clone()).unwrap());
    let db = NetDriver::new(cfg_b.clone(), LinuxKernel::new(cfg_b.clone()).unwrap());
    let task_a = "taskaaaaaaaaaaaaaaaaaaaaa";
    let task_b = "taskbbbbbbbbbbbbbbbbbbbbb";
    let want_a = desired(task_a, 2, &[(3, t.vtep_b)]);
    let want_b = desired(task_b, 3, &[(2, t.vtep_a)]);
    da.apply(&want_a).await.expect("apply on A");
    db.apply(&want_b).await.expect("apply on B");
    let sb_a = da.sandbox_netns_path(task_a);
    let ov_a = da.overlay_netns_path(NET);

    // A ping crosses the VXLAN. The first one may be lost while the new links come up on a
    // loaded machine: wait (with a deadline) for a first answer, then every ping must cross.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ok, out) = try_sh(&sb_a, "ping -c 1 -W 1 10.0.9.3");
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ping answered across the VXLAN within 10 s; last: {out}"
        );
    }
    let out = sh(&sb_a, "ping -c 2 -W 2 10.0.9.3");
    assert!(out.contains("2 received"), "{out}");
    // It really went through the underlay as VXLAN: the vxlan0 of B received packets.
    // (/sys shows the test process's namespace, so ask netlink.)
    let stats = sh(&db.overlay_netns_path(NET), "ip -s -j link show vxlan0");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let rx = stats[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0);
    assert!(rx >= 2, "vxlan0 of B received {rx} packets: {stats}");

    // Egress through mini_gwbridge: the "internet" has no route back to 172.18/16, so only
    // masquerade makes the reply come back.
    let out = sh(&sb_a, "ping -c 1 -W 2 10.98.0.2");
    assert!(out.contains("1 received"), "{out}");

    // Structure as in the walkthrough.
    let vx = sh(&ov_a, "ip -d link show vxlan0");
    for want in [
        "mtu 1450",
        "master br0",
        "vxlan id 4097",
        "local 10.99.0.1",
        "dstport 4789",
        "nolearning",
        "proxy l2miss l3miss",
    ] {
        assert!(vx.contains(want), "vxlan0 lacks {want:?}:\n{vx}");
    }
    let br = sh(&ov_a, "ip -d addr show br0");
    assert!(
        br.contains("mtu 1450") && br.contains("inet 10.0.9.1/24"),
        "{br}"
    );
    // vxlan0's UDP socket lives in the underlay (host A), not in the overlay namespace.
    let udp_host = sh(&t.a, "cat /proc/net/udp");
    assert!(
        udp_host.contains(":12B5"),
        "no UDP 4789 socket in host A:\n{udp_host}"
    );
    let udp_ov = sh(&ov_a, "cat /proc/net/udp");
    assert!(!udp_ov.contains(":12B5"), "{udp_ov}");
    let neigh = sh(&ov_a, "ip neigh show dev vxlan0");
    assert!(
        neigh.contains("10.0.9.3 lladdr 02:42:0a:00:09:03 PERMANENT"),
        "{neigh}"
    );
    let fdb = sh(&ov_a, "bridge fdb show dev vxlan0");
    assert!(
        fdb.lines()
            .any(|l| l.starts_with("02:42:0a:00:09:03 dst 10.99.0.2")
                && l.ends_with("self permanent")),
        "{fdb}"
    );
    let eth0 = sh(&sb_a, "ip -d link show eth0");
    assert!(
        eth0.contains("mtu 1450") && eth0.contains("link/ether 02:42:0a:00:09:02"),
        "{eth0}"
    );
    let eth1 = sh(&sb_a, "ip -d addr show eth1");
    assert!(
        eth1.contains("mtu 1500") && eth1.contains("inet 172.18.0.2/16"),
        "{eth1}"
    );
    assert!(eth1.contains("link/ether 02:42:ac:12:00:02"), "{eth1}");
    let route = sh(&sb_a, "ip route show default");
    assert!(route.contains("default via 172.18.0.1 dev eth1"), "{route}");
    let gw = sh(&t.a, "ip -d link show mini_gwbridge");
    assert!(gw.contains("mtu 1500"), "{gw}");
    let port = sh(&t.a, "ip -d link show mgwtaskaaaaaaaa");
    assert!(
        port.contains("master mini_gwbridge") && port.contains("isolated on"),
        "{port}"
    );
    let nft = sh(&t.a, "nft list table ip mini_gwbridge");
    assert!(nft.contains("masquerade"), "{nft}");

    // A second apply of the same state issues zero kernel writes, both from the same driver
    // and from a freshly started one that reads everything back from the kernel.
    let before = da.kernel().counters();
    let again = da.apply(&want_a).await.unwrap();
    assert!(again.ops.is_empty(), "{:?}", again.ops);
    assert_eq!((da.kernel().counters() - before).writes, 0);
    let fresh = NetDriver::new(cfg_a.clone(), LinuxKernel::new(cfg_a.clone()).unwrap());
    let again = fresh.apply(&want_a).await.unwrap();
    assert!(again.observed_kernel);
    assert!(
        again.ops.is_empty(),
        "restart found differences: {:?}",
        again.ops
    );
    assert_eq!(fresh.kernel().counters().writes, 0);
    drop(fresh);

    // A peer moving to another VTEP costs exactly one FDB write.
    let moved = desired(task_a, 2, &[(3, Ipv4Addr::new(10, 99, 0, 7))]);
    let before = da.kernel().counters();
    let report = da.apply(&moved).await.unwrap();
    assert!(
        matches!(report.ops.as_slice(), [Op::SetFdb { .. }]),
        "{:?}",
        report.ops
    );
    assert_eq!((da.kernel().counters() - before).writes, 1);
    let seen = da.observe().await.unwrap();
    assert_eq!(seen[0].state.peers()[0].vtep, Ipv4Addr::new(10, 99, 0, 7));
    da.apply(&want_a).await.unwrap();
    let out = sh(&sb_a, "ping -c 1 -W 2 10.0.9.3");
    assert!(out.contains("1 received"), "{out}");

    // A second sandbox on host A only adds a port to the overlay: the overlay is read back
    // without vxlan0's neighbour and FDB entries (one dump each, one entry per endpoint of the
    // network), and the picture kept from the ops is still the kernel's: nothing to do after,
    // from this driver or from one that reads everything again.
    let mut two = want_a.clone();
    let mut second = two.sandboxes[0].clone();
    second.id = "taskcccccccccccccccccccc".into();
    second.attachments[0].addr = ipnet::Ipv4Net::new(ip(4), 24).unwrap();
    second.attachments[0].mac = MacAddr::for_ip(ip(4));
    two.sandboxes.push(second);
    let report = da.apply(&two).await.unwrap();
    assert!(!report.observed_kernel);
    assert_eq!(report.reread.peers_kept.len(), 1, "{:?}", report.reread);
    let again = da.apply(&two).await.unwrap();
    assert!(again.ops.is_empty(), "{:?}", again.ops);
    assert_fresh_driver_finds_nothing_to_do(&cfg_a, &two).await;
    let out = sh(&sb_a, "ping -c 1 -W 2 10.0.9.3");
    assert!(out.contains("1 received"), "{out}");
    // And the port goes again the same way.
    let report = da.apply(&want_a).await.unwrap();
    assert_eq!(report.reread.peers_kept.len(), 1, "{:?}", report.reread);
    assert_fresh_driver_finds_nothing_to_do(&cfg_a, &want_a).await;

    // Teardown leaves no namespace file, mount, link or nft table.
    da.apply(&DesiredState::default()).await.unwrap();
    db.apply(&DesiredState::default()).await.unwrap();
    for (cfg, host) in [(&cfg_a, &t.a), (&cfg_b, &t.b)] {
        let left: Vec<_> = std::fs::read_dir(cfg.netns_dir()).unwrap().collect();
        assert!(left.is_empty(), "namespace files left: {left:?}");
        assert!(mounts_under(&cfg.run_dir).is_empty());
        let links = sh(host, "ip -br link");
        assert!(
            !links.contains("mini_gwbridge") && !links.contains("mgw"),
            "{links}"
        );
        assert!(!links.contains("vxlan"), "{links}");
        let (_, tables) = try_sh(host, "nft list tables");
        assert!(!tables.contains("mini_gwbridge"), "{tables}");
    }
    drop(t.x);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_cannot_talk_across_the_gateway_bridge_and_restart_cleans_strays() {
    let t = two_hosts();
    let cfg = config(&t.lab.run_dir("a"), &t.a, t.vtep_a);
    let d = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
    let mut want = desired("sandbox1xxxxxxxxx", 2, &[]);
    want.sandboxes
        .push(desired("sandbox2xxxxxxxxx", 3, &[]).sandboxes.remove(0));
    d.apply(&want).await.unwrap();
    let s1 = d.sandbox_netns_path("sandbox1xxxxxxxxx");
    // Same overlay: reachable. Across mini_gwbridge (172.18.0.3): isolated ports.
    assert!(sh(&s1, "ping -c 1 -W 2 10.0.9.3").contains("1 received"));
    let (ok, out) = try_sh(&s1, "ping -c 1 -W 1 172.18.0.3");
    assert!(
        !ok,
        "sandbox-to-sandbox traffic crossed mini_gwbridge:\n{out}"
    );
    // The bridge itself (the host) stays reachable.
    assert!(sh(&s1, "ping -c 1 -W 2 172.18.0.1").contains("1 received"));

    // A driver "killed halfway" leaves strays: a half-created namespace file and a stray
    // gateway port. A restarted driver with fewer sandboxes removes them and the extra sandbox.
    std::fs::write(cfg.netns_dir().join("halfcreated1"), b"").unwrap();
    sh(
        &t.a,
        "ip link add mgwstray0000000 type veth peer name straypeer",
    );
    let restarted = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
    let mut fewer = want.clone();
    fewer.sandboxes.pop();
    let report = restarted.apply(&fewer).await.unwrap();
    let text: Vec<String> = report.ops.iter().map(|o| o.to_string()).collect();
    assert!(
        text.contains(&"delete namespace halfcreated1".to_string()),
        "{text:?}"
    );
    assert!(
        text.contains(&"delete namespace sandbox2xxxx".to_string()),
        "{text:?}"
    );
    assert!(
        text.contains(&"delete link mgwstray0000000 in host namespace".to_string()),
        "{text:?}"
    );
    let names: Vec<String> = std::fs::read_dir(cfg.netns_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let links = sh(&t.a, "ip -br link");
    assert!(
        !links.contains("mgwstray") && !links.contains("mgwsandbox2"),
        "{links}"
    );
    // Planned from what the removals read back (only the namespaces they touched): it agrees
    // with the kernel.
    let again = restarted.apply(&fewer).await.unwrap();
    assert!(again.ops.is_empty(), "{:?}", again.ops);
    assert!(!again.observed_kernel);
    // The same after a sandbox is created again, and a fresh driver agrees.
    let report = restarted.apply(&want).await.unwrap();
    assert!(!report.observed_kernel && !report.ops.is_empty());
    let again = restarted.apply(&want).await.unwrap();
    assert!(again.ops.is_empty(), "{:?}", again.ops);
    let fresh = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
    let found = fresh.apply(&want).await.unwrap();
    assert!(found.ops.is_empty(), "{:?}", found.ops);
    drop(fresh);
    restarted.apply(&DesiredState::default()).await.unwrap();
    assert!(std::fs::read_dir(cfg.netns_dir()).unwrap().next().is_none());
}
