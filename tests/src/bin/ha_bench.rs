//! Benchmark of the highly available control plane (issue #7): control-API writes per second
//! and their latency with 3 manager daemons talking Raft over gRPC between hosts. Root only.
//!
//! Starts 3 hosts with the test harness (network namespaces on a private bridge, one real
//! `mini daemon` each, sled with fsync before every acknowledgement), makes all three managers
//! (`swarm join` with the manager token) and waits for 3 voters. Then, for each entry point and
//! each client count, clients call the control API directly over gRPC (a tonic client per
//! client, each on its own connection to a daemon's unix socket; no CLI processes) for
//! `--secs` seconds after a 1 s warm-up, one call at a time per client:
//!
//! - `leader`: every client talks to the leader's daemon;
//! - `follower`: every client talks to a follower, which reads through the leader (read
//!   barrier) and forwards the write to it;
//! - `spread`: client i talks to manager i mod 3.
//!
//! The write is `UpdateNode` adding the label `bench<i>=<n>` to node h<(i mod 3) + 1>: one
//! node record per Raft entry, state that does not grow. A call's latency is from the request
//! to the answer, which comes once the entry is committed on a majority, fsynced and applied on
//! the daemon that answered. Only calls that start after the warm-up and end before the
//! deadline count. Prints one JSON object on stdout (with `/proc/loadavg` before and after).
//!
//! `sudo -E MINI_BIN=target/release/mini target/release/ha_bench --secs 10 --clients 1,16,64`

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use mini_proto::v1::UpdateNodeRequest;
use mini_proto::v1::control_client::ControlClient;
use mini_tests::bench;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::{Value, json};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

const WARM_UP: Duration = Duration::from_secs(1);

struct Args {
    secs: u64,
    clients: Vec<usize>,
}

fn parse_args() -> Args {
    let mut a = Args {
        secs: 10,
        clients: vec![1, 16, 64],
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--secs" => {
                a.secs = value
                    .parse()
                    .unwrap_or_else(|_| panic!("--secs wants a number, not {value:?}"))
            }
            "--clients" => {
                a.clients = value
                    .split(',')
                    .map(|c| {
                        c.parse().unwrap_or_else(|_| {
                            panic!("--clients wants e.g. 1,16,64, not {value:?}")
                        })
                    })
                    .collect()
            }
            other => panic!("unknown flag {other}: expected --secs N, --clients A,B,C"),
        }
    }
    a
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// p-th percentile (nearest rank) of `v`, in ms with one decimal.
fn pct(v: &[f64], p: f64) -> f64 {
    bench::round1(bench::pct(v, p))
}

fn info(host: &Host) -> Result<Value, String> {
    host.info()
}

/// A control client on its own connection to the daemon at `socket` (a path).
async fn connect(socket: PathBuf) -> ControlClient<Channel> {
    let channel = Endpoint::try_from("http://mini.sock")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("cannot connect to the daemon's socket");
    ControlClient::new(channel)
}

/// What one client saw: latencies (ms) of the calls inside the window, and errors.
#[derive(Default)]
struct Seen {
    latencies: Vec<f64>,
    errors: HashMap<String, usize>,
}

async fn client(i: usize, socket: PathBuf, start: Instant, end: Instant) -> Seen {
    let mut api = connect(socket).await;
    let node = format!("h{}", i % 3 + 1);
    let mut seen = Seen::default();
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let request = UpdateNodeRequest {
            name_or_id: node.clone(),
            label_add: HashMap::from([(format!("bench{i}"), n.to_string())]),
            ..Default::default()
        };
        let began = Instant::now();
        let answer = api.update_node(request).await;
        let done = Instant::now();
        if began < start || done > end {
            continue;
        }
        match answer {
            Ok(_) => seen
                .latencies
                .push(done.duration_since(began).as_secs_f64() * 1000.0),
            Err(status) => *seen.errors.entry(status.message().to_string()).or_default() += 1,
        }
    }
    seen
}

/// Runs `clients` clients, client i on `sockets[i % sockets.len()]`, for `secs` seconds.
async fn run(sockets: &[PathBuf], clients: usize, secs: u64) -> Value {
    let start = Instant::now() + WARM_UP;
    let end = start + Duration::from_secs(secs);
    let load_before = loadavg();
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(i, sockets[i % sockets.len()].clone(), start, end)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let seen = task.await.expect("client task");
        latencies.extend(seen.latencies);
        for (e, c) in seen.errors {
            *errors.entry(e).or_default() += c;
        }
    }
    json!({
        "clients": clients,
        "commits": latencies.len(),
        "commits_per_s": ((latencies.len() as f64 / secs as f64) * 10.0).round() / 10.0,
        "p50_ms": pct(&latencies, 50.0),
        "p99_ms": pct(&latencies, 99.0),
        "max_ms": pct(&latencies, 100.0),
        "errors": errors,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    })
}

fn main() {
    let args = parse_args();
    let date = std::process::Command::new("date")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load_at_start = loadavg();
    let cluster = Cluster::start(3);
    cluster.init();
    for k in [2, 3] {
        cluster.join(k, "manager");
    }
    let node_ids: Vec<String> = (1..=3).map(|k| cluster.host(k).node_id()).collect();
    let leader = wait_for(
        "3 voters and one leader on every manager",
        Duration::from_secs(60),
        || {
            let mut leaders = Vec::new();
            for k in 1..=3 {
                let i = info(&cluster.host(k))?;
                let voters = i["raft"]["voters"].as_array().map_or(0, Vec::len);
                let learners = i["raft"]["learners"].as_array().map_or(0, Vec::len);
                let leader = i["raft"]["leader_node_id"].as_str().unwrap_or_default();
                if voters != 3 || learners != 0 || leader.is_empty() {
                    return Err(i.to_string());
                }
                leaders.push(leader.to_string());
            }
            if leaders.iter().any(|l| *l != leaders[0]) {
                return Err(format!("leaders disagree: {leaders:?}"));
            }
            node_ids
                .iter()
                .position(|id| *id == leaders[0])
                .map(|p| p + 1)
                .ok_or_else(|| format!("unknown leader {}", leaders[0]))
        },
    );
    let follower = (1..=3).find(|&k| k != leader).unwrap();
    let socket = |k: usize| {
        PathBuf::from(
            cluster
                .host(k)
                .socket()
                .strip_prefix("unix://")
                .unwrap()
                .to_string(),
        )
    };
    let entries: [(&str, Vec<PathBuf>); 3] = [
        ("leader", vec![socket(leader)]),
        ("follower", vec![socket(follower)]),
        ("spread", (1..=3).map(socket).collect()),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = serde_json::Map::new();
    for (name, sockets) in &entries {
        let mut rows = Vec::new();
        for &clients in &args.clients {
            let row = runtime.block_on(run(sockets, clients, args.secs));
            eprintln!("{name}: {row}");
            rows.push(row);
        }
        results.insert(name.to_string(), Value::Array(rows));
    }
    let out = json!({
        "date": date,
        "loadavg_at_start": load_at_start,
        "managers": 3,
        "leader": format!("h{leader}"),
        "follower": format!("h{follower}"),
        "secs_per_run": args.secs,
        "write": "UpdateNode label_add (one node record per entry)",
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
