//! The in-process part of the gossip cluster benchmark (issue #5): N gossip agents over
//! loopback UDP in one process, default timings, no packet loss.
//!
//! For 3 and 10 nodes it reports, as JSON on stdout:
//! - `propagation_ms`: publish on one node → the record is in every other node's table
//!   (p50/p99/max over `samples` publishes from rotating nodes);
//! - `purge_ms`: a node aborted (no goodbye) → every survivor has dropped its records and its
//!   membership (each trial kills a node, then brings it back);
//! - `idle_bytes_per_s_per_node`: UDP payload bytes sent per second per node with
//!   `endpoints` records in the table and nothing changing (and with 28 bytes of IPv4 + UDP
//!   headers per packet counted, `idle_wire_kbit_per_s_per_node`).
//!
//! Run: `cargo bench -p mini-worker --bench gossip_cluster` (`-- --quick` for fewer samples).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mini_worker::gossip::{
    EndpointRecord, Gossip, GossipConfig, GossipKeys, Protocol, PublishedPort,
};
use serde_json::json;
use tokio::time::Instant;

const ENDPOINTS: usize = 100;
const NETWORK: &str = "qbx4zbfhz4u7fy0q1mjd1u5vp";

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results: Vec<_> = [3usize, 10]
        .into_iter()
        .map(|n| runtime.block_on(bench_cluster(n, quick)))
        .collect();
    let report = json!({
        "benchmark": "gossip_cluster_in_process",
        "transport": "loopback UDP, one process",
        "goals": {"propagation_p99_ms_at_10": 500, "purge_ms": 4000, "idle_kbit_per_s_per_node": 50},
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

async fn start(node: &str, bind: SocketAddr, bootstrap: &[SocketAddr]) -> Gossip {
    static KEYS: std::sync::OnceLock<GossipKeys> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| GossipKeys::random(1)).clone();
    let config = GossipConfig::new(node, bind, keys).with_bootstrap(bootstrap.iter().copied());
    Gossip::start(config).await.expect("start gossip")
}

fn record(endpoint: &str, i: usize) -> EndpointRecord {
    let octets = [(i >> 8) as u8, i as u8];
    EndpointRecord {
        network_id: NETWORK.into(),
        endpoint_id: endpoint.into(),
        node_id: String::new(),
        vtep: Ipv4Addr::new(192, 168, 1, 10),
        ip: Ipv4Addr::new(10, 0, octets[0], octets[1]),
        prefix_len: 16,
        mac: [0x02, 0x42, 10, 0, octets[0], octets[1]],
        service_id: "kmv8x6ztgxbthl8xlsbg2ww0b".into(),
        service_name: "web".into(),
        task_name: format!("web.{i}.{endpoint}"),
        vip: Some(Ipv4Addr::new(10, 0, 0, 2)),
        aliases: vec![],
        ports: vec![PublishedPort {
            protocol: Protocol::Tcp,
            published: 8080,
            target: 80,
        }],
        version: 0,
        deleted: false,
        signature: Vec::new(),
    }
}

async fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < deadline,
            "{what}: not done after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

fn full_membership(nodes: &[Gossip]) -> bool {
    nodes.iter().all(|g| g.members().len() == nodes.len() - 1)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "samples": samples.len(),
        "p50": round(percentile(&samples, 50.0)),
        "p99": round(percentile(&samples, 99.0)),
        "max": round(*samples.last().unwrap()),
        "mean": round(samples.iter().sum::<f64>() / samples.len() as f64),
    })
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

async fn bench_cluster(n: usize, quick: bool) -> serde_json::Value {
    eprintln!("== {n} nodes");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let seed = start("node0", any, &[]).await;
    let seed_addr = seed.local_addr();
    let mut nodes = vec![seed];
    for i in 1..n {
        nodes.push(start(&format!("node{i}"), any, &[seed_addr]).await);
    }
    let joined = wait_until("membership", Duration::from_secs(20), || {
        full_membership(&nodes)
    })
    .await;
    eprintln!("full membership in {joined:?}");

    // The table: ENDPOINTS records spread over the nodes.
    for i in 0..ENDPOINTS {
        nodes[i % n]
            .publish(record(&format!("base{i:04}"), i))
            .await
            .unwrap();
    }
    wait_until("base table", Duration::from_secs(20), || {
        nodes.iter().all(|g| g.table().live().count() == ENDPOINTS)
    })
    .await;

    // Idle traffic: let broadcasts run out, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(if quick { 5 } else { 20 });
    let before: Vec<_> = nodes.iter().map(Gossip::stats).collect();
    tokio::time::sleep(window).await;
    let after: Vec<_> = nodes.iter().map(Gossip::stats).collect();
    let secs = window.as_secs_f64();
    let payload: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.bytes_sent - b.bytes_sent) as f64 / secs)
        .collect();
    let wire_kbit: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| {
            let bytes = (a.bytes_sent - b.bytes_sent) + 28 * (a.packets_sent - b.packets_sent);
            bytes as f64 * 8.0 / 1000.0 / secs
        })
        .collect();
    let packets: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.packets_sent - b.packets_sent) as f64 / secs)
        .collect();
    eprintln!("idle payload bytes/s per node: {payload:?}");

    // Propagation.
    let samples = if quick { 50 } else { 300 };
    let mut propagation = Vec::with_capacity(samples);
    for s in 0..samples {
        let from = s % n;
        let endpoint = format!("prop{s:05}");
        let started = Instant::now();
        nodes[from].publish(record(&endpoint, s)).await.unwrap();
        wait_until("propagation", Duration::from_secs(10), || {
            nodes.iter().all(|g| g.get(NETWORK, &endpoint).is_some())
        })
        .await;
        let took = started.elapsed();
        propagation.push(took.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("propagation done");

    // Node death.
    let trials = if quick { 2 } else { 5 };
    let mut purge = Vec::with_capacity(trials);
    for t in 0..trials {
        let victim = 1 + t % (n - 1);
        let victim_id = format!("node{victim}");
        let owned = nodes[0].table().owned_by(&victim_id).count();
        assert!(owned > 0);
        let dead = nodes.remove(victim);
        let addr = dead.local_addr();
        dead.abort().await;
        let took = wait_until("purge", Duration::from_secs(20), || {
            nodes.iter().all(|g| {
                g.table().owned_by(&victim_id).next().is_none()
                    && g.members().iter().all(|m| m.node_id != victim_id)
            })
        })
        .await;
        eprintln!("purge trial {t}: {took:?}");
        purge.push(took.as_secs_f64() * 1000.0);
        // Bring it back on the same address (a new incarnation) and republish its endpoints.
        nodes.insert(victim, start(&victim_id, addr, &[seed_addr]).await);
        for i in (0..ENDPOINTS).filter(|i| i % n == victim) {
            nodes[victim]
                .publish(record(&format!("base{i:04}"), i))
                .await
                .unwrap();
        }
        wait_until("rejoin", Duration::from_secs(20), || {
            full_membership(&nodes)
        })
        .await;
    }

    let result = json!({
        "nodes": n,
        "endpoints": ENDPOINTS,
        "join_full_membership_ms": round(joined.as_secs_f64() * 1000.0),
        "propagation_ms": summary(propagation),
        "purge_ms": summary(purge),
        "idle_window_s": secs,
        "idle_bytes_per_s_per_node": summary(payload),
        "idle_packets_per_s_per_node": summary(packets),
        "idle_wire_kbit_per_s_per_node": summary(wire_kbit),
    });
    for node in nodes {
        node.abort().await;
    }
    result
}
