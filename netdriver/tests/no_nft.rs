//! The driver needs no `nft` program (root required): with `nft` absent from `PATH` it loads,
//! reads back and repairs every nftables table it owns (a VIP's `mini_lb`, the members-only
//! filter, the gateway bridge's NAT). The test looks at the result with `nft` by its full path,
//! its own tool. The only test of this binary: it changes the process's `PATH`.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use common::{Lab, sh};
use mini_netdriver::{
    Attachment, DesiredState, DriverConfig, LinuxKernel, LoadBalancing, MacAddr, MemberFilter,
    NetDriver, Op, OverlayNetwork, Sandbox, ServiceLb,
};

const NET: &str = "nonft0000test";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 100);

fn net_ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, last)
}

/// The full path of a program found on the current `PATH`.
fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not found on PATH (the test needs it)"))
}

fn desired() -> DesiredState {
    DesiredState {
        networks: vec![OverlayNetwork {
            id: NET.into(),
            vni: 4097,
            subnet: "10.0.9.0/24".parse().unwrap(),
            gateway: net_ip(1),
            peers: Vec::new(),
            pinned: false,
        }],
        sandboxes: vec![Sandbox {
            id: "clientaaaaaaaaaa".into(),
            attachments: vec![Attachment {
                network_id: NET.into(),
                addr: ipnet::Ipv4Net::new(net_ip(10), 24).unwrap(),
                mac: MacAddr::for_ip(net_ip(10)),
            }],
        }],
        members: Some(MemberFilter {
            ports: [4789, 7946].into(),
            members: [Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 99, 0, 2)].into(),
        }),
    }
}

fn lb() -> LoadBalancing {
    LoadBalancing {
        services: vec![ServiceLb {
            service_id: "web".into(),
            network_id: NET.into(),
            vip: VIP,
            backends: vec![net_ip(2), net_ip(3)],
        }],
        ingress: None,
    }
}

fn nft(nft: &Path, ns: &Path, args: &str) -> String {
    sh(ns, &format!("{} {args}", nft.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_loads_reads_and_repairs_its_tables_without_nft() {
    let mut lab = Lab::new();
    let nft_bin = which("nft");
    let bin = lab.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["sh", "ip", "nsenter"] {
        std::os::unix::fs::symlink(which(tool), bin.join(tool)).unwrap();
    }
    // SAFETY: this binary's only test; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PATH", &bin) };
    assert!(
        std::process::Command::new("nft").output().is_err(),
        "nft must not be found"
    );

    let host = lab.host("h");
    let mut cfg = DriverConfig::new(lab.run_dir("h"), Ipv4Addr::new(10, 99, 0, 1));
    cfg.host_netns = Some(host.clone());
    let d = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
    d.apply_with(&desired(), &lb()).await.expect("first apply");
    let sandbox = d.sandbox_netns_path("clientaaaaaaaaaa");

    let table = nft(&nft_bin, &sandbox, "list table ip mini_lb");
    assert!(
        table.contains("ip daddr vmap @vips") && table.contains("numgen inc mod 2"),
        "{table}"
    );
    let filter = nft(&nft_bin, &host, "list table ip mini_filter");
    assert!(filter.contains("10.99.0.1, 10.99.0.2"), "{filter}");
    let tables = nft(&nft_bin, &host, "list tables");
    assert!(tables.contains("mini_gwbridge"), "{tables}");

    // Read back over netlink: nothing to do.
    d.resync().await;
    let again = d.apply_with(&desired(), &lb()).await.unwrap();
    assert!(again.observed_kernel);
    assert!(again.ops.is_empty(), "{:?}", again.ops);

    // Changed by hand: the drift is seen and repaired, still without nft.
    nft(&nft_bin, &sandbox, "flush chain ip mini_lb vip_10_0_9_100");
    nft(
        &nft_bin,
        &host,
        "delete element ip mini_filter members '{ 10.99.0.2 }'",
    );
    nft(&nft_bin, &host, "delete table ip mini_gwbridge");
    // (The worker's periodic resync: the next apply observes the kernel again.)
    d.resync().await;
    let repair = d.apply_with(&desired(), &lb()).await.unwrap();
    assert!(
        repair
            .ops
            .iter()
            .any(|op| matches!(op, Op::SetLbEntry { .. })),
        "{:?}",
        repair.ops
    );
    assert!(
        repair.ops.iter().any(|op| matches!(
            op,
            Op::SetFilterMembers { add, .. } if add == &[Ipv4Addr::new(10, 99, 0, 2)]
        )),
        "{:?}",
        repair.ops
    );
    assert!(
        repair.ops.iter().any(|op| matches!(op, Op::SetNat { .. })),
        "{:?}",
        repair.ops
    );
    let table = nft(&nft_bin, &sandbox, "list table ip mini_lb");
    assert!(table.contains("numgen inc mod 2"), "{table}");
    let again = d.apply_with(&desired(), &lb()).await.unwrap();
    assert!(again.ops.is_empty(), "{:?}", again.ops);

    // Teardown removes every table.
    d.apply_with(&DesiredState::default(), &LoadBalancing::default())
        .await
        .unwrap();
    let tables = nft(&nft_bin, &host, "list tables");
    assert!(tables.trim().is_empty(), "{tables}");
}
