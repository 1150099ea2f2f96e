//! Benchmark of the driver on the real kernel (root required): sandbox lifecycle rate and
//! programming 1,000 peers. A plain bench binary (not criterion): every iteration changes
//! kernel state, so it measures whole applies and reports the kernel calls they made.
//!
//! Run: `cargo bench -p mini-netdriver --bench netdriver` (as root).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mini_netdriver::{
    Attachment, DesiredState, DriverConfig, Kernel, LinuxKernel, MacAddr, NetDriver,
    OverlayNetwork, Peer, Sandbox, plan::plan,
};

const NET: &str = "benchnet000001";

fn network(peers: Vec<Peer>, pinned: bool) -> OverlayNetwork {
    OverlayNetwork {
        id: NET.into(),
        vni: 4097,
        subnet: "10.1.0.0/16".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        peers,
        pinned,
    }
}

fn sandbox(i: usize) -> Sandbox {
    let ip = Ipv4Addr::new(10, 1, 0, 10);
    Sandbox {
        id: format!("benchtask{i:07}"),
        attachments: vec![Attachment {
            network_id: NET.into(),
            addr: ipnet::Ipv4Net::new(ip, 16).unwrap(),
            mac: MacAddr::for_ip(ip),
        }],
    }
}

fn peers(n: usize, vtep_last: u8) -> Vec<Peer> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::new(10, 1, 100 + (i / 250) as u8, (i % 250) as u8 + 2);
            Peer {
                ip,
                mac: MacAddr::for_ip(ip),
                vtep: Ipv4Addr::new(10, 99, 0, vtep_last),
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    ms(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

async fn lifecycle(d: &NetDriver<LinuxKernel>, pinned: bool, rounds: usize) {
    let empty = DesiredState {
        networks: vec![network(vec![], pinned)],
        sandboxes: vec![],
        members: None,
    };
    d.apply(&empty).await.unwrap();
    let (mut create, mut destroy, mut cycle) = (Vec::new(), Vec::new(), Vec::new());
    let before = d.kernel().counters();
    let start = Instant::now();
    for i in 0..rounds {
        let want = DesiredState {
            networks: vec![network(vec![], pinned)],
            sandboxes: vec![sandbox(i)],
            members: None,
        };
        let t0 = Instant::now();
        d.apply(&want).await.unwrap();
        let t1 = Instant::now();
        d.apply(&empty).await.unwrap();
        let t2 = Instant::now();
        create.push(t1 - t0);
        destroy.push(t2 - t1);
        cycle.push(t2 - t0);
    }
    let total = start.elapsed();
    let calls = d.kernel().counters() - before;
    for v in [&mut create, &mut destroy, &mut cycle] {
        v.sort();
    }
    let what = if pinned {
        "sandbox on an existing overlay namespace"
    } else {
        "first sandbox of a network (overlay namespace created and deleted with it)"
    };
    println!("{what}, {rounds} rounds:");
    println!(
        "  create+attach  p50 {:.2} ms  p90 {:.2} ms",
        pct(&create, 0.5),
        pct(&create, 0.9)
    );
    println!(
        "  destroy        p50 {:.2} ms  p90 {:.2} ms",
        pct(&destroy, 0.5),
        pct(&destroy, 0.9)
    );
    println!(
        "  full cycle     p50 {:.2} ms  → {:.0} cycles/s; kernel calls per cycle: {:.1} writes, {:.1} reads",
        pct(&cycle, 0.5),
        rounds as f64 / total.as_secs_f64(),
        calls.writes as f64 / rounds as f64,
        calls.reads as f64 / rounds as f64
    );
}

async fn thousand_peers(d: &NetDriver<LinuxKernel>, cfg: &DriverConfig) {
    let base = |p: Vec<Peer>| DesiredState {
        networks: vec![network(p, true)],
        sandboxes: vec![],
        members: None,
    };
    d.apply(&base(vec![])).await.unwrap();
    d.apply(&base(vec![])).await.unwrap(); // settle: plan from memory from here on
    let c0 = d.kernel().counters();
    let t = Instant::now();
    let r = d.apply(&base(peers(1000, 2))).await.unwrap();
    let add = t.elapsed();
    let c1 = d.kernel().counters();
    println!(
        "1,000 peers added: {:.1} ms, {} ops, {} kernel writes, {} reads",
        ms(add),
        r.ops.len(),
        (c1 - c0).writes,
        (c1 - c0).reads
    );

    let mut one = peers(1000, 2);
    one[500].vtep = Ipv4Addr::new(10, 99, 0, 3);
    let t = Instant::now();
    let r = d.apply(&base(one)).await.unwrap();
    let c2 = d.kernel().counters();
    println!(
        "1 of 1,000 peers moved: {:.3} ms, {} ops, {} writes, {} reads",
        ms(t.elapsed()),
        r.ops.len(),
        (c2 - c1).writes,
        (c2 - c1).reads
    );

    let moved = peers(1000, 3);
    let t = Instant::now();
    let r = d.apply(&base(moved.clone())).await.unwrap();
    let c3 = d.kernel().counters();
    println!(
        "all 1,000 peers moved to another VTEP: {:.1} ms, {} ops, {} writes",
        ms(t.elapsed()),
        r.ops.len(),
        (c3 - c2).writes
    );

    let fresh = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
    let t = Instant::now();
    let seen = fresh.observe().await.unwrap();
    println!(
        "read back (fresh driver, full observe): {:.1} ms, {} peers, {} reads",
        ms(t.elapsed()),
        seen[0].state.peers().len(),
        fresh.kernel().counters().reads
    );
    let t = Instant::now();
    let r = fresh.apply(&base(moved)).await.unwrap();
    println!(
        "re-apply of the same 1,000 peers by the fresh driver: {:.1} ms, {} ops, {} writes",
        ms(t.elapsed()),
        r.ops.len(),
        fresh.kernel().counters().writes
    );
    drop(fresh);

    let c4 = d.kernel().counters();
    let t = Instant::now();
    let r = d.apply(&base(vec![])).await.unwrap();
    println!(
        "1,000 peers removed: {:.1} ms, {} ops, {} writes",
        ms(t.elapsed()),
        r.ops.len(),
        (d.kernel().counters() - c4).writes
    );

    // Pure planning cost (no kernel): 1,000 peers against an empty and a complete picture.
    let want = base(peers(1000, 2));
    let fake = NetDriver::new(cfg.clone(), mini_netdriver::FakeKernel::new());
    fake.apply(&want).await.unwrap();
    let observed = fake.kernel().state();
    let t = Instant::now();
    for _ in 0..100 {
        assert!(plan(cfg, &want, &observed).unwrap().is_empty());
    }
    println!(
        "planning 1,000 unchanged peers (pure): {:.3} ms",
        ms(t.elapsed()) / 100.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` discovery
    }
    let mut lab = common::Lab::new();
    let host = lab.host("bench");
    let mut cfg = DriverConfig::new(lab.run_dir("bench"), Ipv4Addr::new(10, 99, 0, 1));
    cfg.host_netns = Some(host.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
        lifecycle(&d, true, 200).await;
        lifecycle(&d, false, 100).await;
        thousand_peers(&d, &cfg).await;
        d.apply(&DesiredState::default()).await.unwrap();
    });
    drop(rt);
    drop(lab);
}
