//! VIP programming latency on the real kernel (root required): the time one apply takes to
//! change one service's backends, with 10 and 1,000 services of 3 backends present, and with
//! one service of 2,000 backends (a large replicated service), with 1 and 4 local sandboxes on
//! the network. A plain bench binary: every iteration changes kernel state.
//!
//! Run: `cargo bench -p mini-netdriver --bench vip` (as root).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mini_netdriver::{
    Attachment, DesiredState, DriverConfig, Kernel, LinuxKernel, LoadBalancing, MacAddr, NetDriver,
    OverlayNetwork, Sandbox, ServiceLb, plan::plan_with,
};

const NET: &str = "vipbench00001";

fn ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)) + i)
}

fn desired(sandboxes: usize) -> DesiredState {
    DesiredState {
        networks: vec![OverlayNetwork {
            id: NET.into(),
            vni: 4097,
            subnet: "10.2.0.0/16".parse().unwrap(),
            gateway: ip(1),
            peers: vec![],
            pinned: true,
        }],
        sandboxes: (0..sandboxes)
            .map(|i| Sandbox {
                id: format!("c{i}vipclient000"),
                attachments: vec![Attachment {
                    network_id: NET.into(),
                    addr: ipnet::Ipv4Net::new(ip(10 + i as u32), 16).unwrap(),
                    mac: MacAddr::for_ip(ip(10 + i as u32)),
                }],
            })
            .collect(),
        members: None,
    }
}

/// `n` services, VIPs from 10.2.100.0, `b` backends each from 10.2.200.0.
fn services(n: usize, b: usize) -> Vec<ServiceLb> {
    let b = b as u32;
    (0..n as u32)
        .map(|i| ServiceLb {
            service_id: format!("svc{i}"),
            network_id: NET.into(),
            vip: ip(100 * 256 + i),
            backends: (0..b).map(|k| ip(200 * 256 + b * i + k)).collect(),
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    ms(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

async fn run(
    d: &NetDriver<LinuxKernel>,
    cfg: &DriverConfig,
    (n, backends): (usize, usize),
    sandboxes: usize,
) {
    let state = desired(sandboxes);
    let mut lb = LoadBalancing {
        services: services(n, backends),
        ingress: None,
    };
    let t = Instant::now();
    d.apply_with(&state, &lb).await.unwrap();
    let setup = t.elapsed();
    d.apply_with(&state, &lb).await.unwrap(); // settle: plan from memory from here on
    // A full observation (every table read back, as at start and at each resync): median of 5.
    let mut obs = Vec::new();
    for _ in 0..5 {
        d.resync().await;
        let t = Instant::now();
        let report = d.apply_with(&state, &lb).await.unwrap();
        obs.push(t.elapsed());
        assert!(report.ops.is_empty(), "{:?}", report.ops);
    }
    obs.sort();
    let rounds = 200;
    let mut lat = Vec::with_capacity(rounds);
    let before = d.kernel().counters();
    for r in 0..rounds {
        // A task of one service starts (one backend more) or one of its tasks stops, any
        // of them (back to the base count): one entry changes.
        let s = &mut lb.services[(r * 7919) % n];
        if s.backends.len() == backends {
            s.backends.push(ip(250 * 256 + (r % 250) as u32));
        } else {
            let len = s.backends.len();
            s.backends.remove((r * 7919) % len);
        }
        let t = Instant::now();
        let report = d.apply_with(&state, &lb).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(report.ops.len(), sandboxes, "{:?}", report.ops);
    }
    let calls = d.kernel().counters() - before;
    lat.sort();
    println!(
        "{n} services of {backends} backends, {sandboxes} local sandbox(es) on the network: setup {:.0} ms; observe \
         everything (resync + apply, no change) p50 {:.1} ms",
        ms(setup),
        pct(&obs, 0.5)
    );
    println!(
        "  setup {:.0} ms; one backend change p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms; per change {:.1} writes, {:.1} reads",
        ms(setup),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        ms(*lat.last().unwrap()),
        calls.writes as f64 / rounds as f64,
        calls.reads as f64 / rounds as f64
    );
    // Pure planning cost of one change against the full picture (no kernel).
    let fake = NetDriver::new(cfg.clone(), mini_netdriver::FakeKernel::new());
    fake.apply_with(&state, &lb).await.unwrap();
    let observed = fake.kernel().state();
    lb.services[0].backends.push(ip(251 * 256));
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            plan_with(cfg, &state, &lb, &observed).unwrap().len(),
            sandboxes
        );
    }
    println!(
        "  planning one change (pure): {:.3} ms",
        ms(t.elapsed()) / 20.0
    );
    d.apply(&DesiredState::default()).await.unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` discovery
    }
    let mut lab = common::Lab::new();
    let host = lab.host("vipbench");
    let mut cfg = DriverConfig::new(lab.run_dir("vipbench"), Ipv4Addr::new(10, 99, 0, 1));
    cfg.host_netns = Some(host.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = NetDriver::new(cfg.clone(), LinuxKernel::new(cfg.clone()).unwrap());
        let only: Option<String> = std::env::var("VIP_BENCH_ONLY").ok();
        for (shape, sandboxes) in [
            ((10, 3), 1),
            ((1000, 3), 1),
            ((10, 3), 4),
            ((1000, 3), 4),
            ((1, 2000), 1),
            ((1, 2000), 4),
        ] {
            // VIP_BENCH_ONLY=wide: only the shapes with one service of many backends.
            if only.as_deref() == Some("wide") && shape.0 != 1 {
                continue;
            }
            run(&d, &cfg, shape, sandboxes).await;
        }
    });
    drop(rt);
    drop(lab);
}
