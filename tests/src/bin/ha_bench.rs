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
//!   barrier) and forwards the write to it (a raft `MsgPropose`);
//! - `spread`: client i talks to manager i mod 3.
//!
//! The write (`--write`) is either
//! - `node-label` (the figures of #7): `UpdateNode` adding the label `bench<i>=<n>` to node
//!   h<(i mod 3) + 1>: one node record per Raft entry, state that does not grow; many clients
//!   write the same three records, so they conflict (optimistic versions: decided again);
//! - `secret` (#16, the default): client i creates the secret `bench<i>` and removes it again,
//!   one write per call: clients that do not conflict, state that does not grow;
//! - `read`: no write, `GetNode h1` with the read barrier of every consistent read: what a call
//!   costs without a Raft round, to read the write figures against.
//!
//! `--managers 1` runs one manager instead of three (no follower): a write then waits for the
//! leader's own fsync only, which separates the cost of the round to a follower.
//!
//! A call's latency is from the request to the answer, which comes once the entry is committed
//! on a majority, fsynced and applied on the daemon that answered. Only calls that start after
//! the warm-up and end before the deadline count. Before the rows, the disk's own rate of
//! single-thread synced small writes (`write` of 512 bytes + `fdatasync`, 2 s) is measured in
//! the first daemon's state directory, on the same filesystem the Raft log is on. Prints one
//! JSON object on stdout (with `/proc/loadavg` before and after each row).
//!
//! `sudo -E MINI_BIN=target/release/mini target/release/ha_bench --secs 10 --clients 1,64
//! --entries leader,follower --write secret`

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use mini_proto::v1::control_client::ControlClient;
use mini_proto::v1::{CreateSecretRequest, GetRequest, SecretSpec, UpdateNodeRequest};
use mini_tests::bench;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::{Value, json};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

const WARM_UP: Duration = Duration::from_secs(1);

struct Args {
    secs: u64,
    clients: Vec<usize>,
    entries: Vec<String>,
    write: Write,
    managers: usize,
}

/// What each call writes (see the module docs).
#[derive(Clone, Copy, PartialEq)]
enum Write {
    NodeLabel,
    Secret,
    /// No write: `GetNode h1`, with the read barrier every consistent read takes. What
    /// the call costs without Raft, to read the write figures against.
    Read,
}

fn parse_args() -> Args {
    let mut a = Args {
        secs: 10,
        clients: vec![1, 16, 64],
        entries: vec!["leader".into(), "follower".into(), "spread".into()],
        write: Write::Secret,
        managers: 3,
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
            "--entries" => a.entries = value.split(',').map(str::to_string).collect(),
            "--write" => {
                a.write = match value.as_str() {
                    "node-label" => Write::NodeLabel,
                    "secret" => Write::Secret,
                    "read" => Write::Read,
                    _ => panic!("--write wants node-label, secret or read, not {value:?}"),
                }
            }
            "--managers" => {
                a.managers = match value.as_str() {
                    "1" => 1,
                    "3" => 3,
                    _ => panic!("--managers wants 1 or 3, not {value:?}"),
                }
            }
            other => panic!(
                "unknown flag {other}: expected --secs N, --clients A,B,C, \
                 --entries leader,follower,spread, --write node-label|secret|read, \
                 --managers 1|3"
            ),
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

async fn client(i: usize, socket: PathBuf, write: Write, start: Instant, end: Instant) -> Seen {
    let mut api = connect(socket).await;
    let node = format!("h{}", i % 3 + 1);
    let secret = format!("bench{i}");
    // A secret left over from an earlier row (its removal not counted) is removed first.
    let _ = api
        .remove_secret(GetRequest {
            name_or_id: secret.clone(),
        })
        .await;
    let mut seen = Seen::default();
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let began = Instant::now();
        let answer = match write {
            Write::NodeLabel => {
                let request = UpdateNodeRequest {
                    name_or_id: node.clone(),
                    label_add: HashMap::from([(format!("bench{i}"), n.to_string())]),
                    ..Default::default()
                };
                api.update_node(request).await.map(drop)
            }
            Write::Secret if n % 2 == 1 => {
                let request = CreateSecretRequest {
                    spec: Some(SecretSpec {
                        name: secret.clone(),
                        data: b"x".to_vec(),
                        ..Default::default()
                    }),
                };
                api.create_secret(request).await.map(drop)
            }
            Write::Secret => api
                .remove_secret(GetRequest {
                    name_or_id: secret.clone(),
                })
                .await
                .map(drop),
            Write::Read => api
                .get_node(GetRequest {
                    name_or_id: "h1".into(),
                })
                .await
                .map(drop),
        };
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
async fn run(sockets: &[PathBuf], clients: usize, secs: u64, write: Write) -> Value {
    let start = Instant::now() + WARM_UP;
    let end = start + Duration::from_secs(secs);
    let load_before = loadavg();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(client(
                i,
                sockets[i % sockets.len()].clone(),
                write,
                start,
                end,
            ))
        })
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

/// Synced small writes per second of one thread in `dir` (`write` of 512 bytes then
/// `fdatasync`, for `secs`): the disk's own rate, to read the write figures against.
fn fsync_rate(dir: &std::path::Path, secs: f64) -> f64 {
    use std::io::Write as _;
    let path = dir.join("ha_bench.fsync");
    let mut file = std::fs::File::create(&path).expect("fsync probe file");
    let block = [0x5au8; 512];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate.round()
}

fn main() {
    let args = parse_args();
    let date = std::process::Command::new("date")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load_at_start = loadavg();
    let managers = args.managers;
    let cluster = Cluster::start(managers);
    cluster.init();
    for k in 2..=managers {
        cluster.join(k, "manager");
    }
    let node_ids: Vec<String> = (1..=managers).map(|k| cluster.host(k).node_id()).collect();
    let leader = wait_for(
        "every manager a voter, and one leader on every manager",
        Duration::from_secs(60),
        || {
            let mut leaders = Vec::new();
            for k in 1..=managers {
                let i = info(&cluster.host(k))?;
                let voters = i["raft"]["voters"].as_array().map_or(0, Vec::len);
                let learners = i["raft"]["learners"].as_array().map_or(0, Vec::len);
                let leader = i["raft"]["leader_node_id"].as_str().unwrap_or_default();
                if voters != managers || learners != 0 || leader.is_empty() {
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
    let follower = (1..=managers).find(|&k| k != leader);
    let fsync_load_before = loadavg();
    let fsync_per_s = fsync_rate(&cluster.host(1).state_dir(), 2.0);
    eprintln!("disk: {fsync_per_s} synced 512-byte writes/s (one thread)");
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
    let entries: Vec<(&str, Vec<PathBuf>)> = args
        .entries
        .iter()
        .map(|e| match e.as_str() {
            "leader" => ("leader", vec![socket(leader)]),
            "follower" => (
                "follower",
                vec![socket(
                    follower.expect("--entries follower needs --managers 3"),
                )],
            ),
            "spread" => ("spread", (1..=managers).map(socket).collect()),
            other => panic!("--entries: unknown entry point {other:?}"),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = serde_json::Map::new();
    for (name, sockets) in &entries {
        let mut rows = Vec::new();
        for &clients in &args.clients {
            let row = runtime.block_on(run(sockets, clients, args.secs, args.write));
            eprintln!("{name}: {row}");
            rows.push(row);
        }
        results.insert(name.to_string(), Value::Array(rows));
    }
    let out = json!({
        "date": date,
        "loadavg_at_start": load_at_start,
        "managers": managers,
        "leader": format!("h{leader}"),
        "follower": follower.map(|k| format!("h{k}")),
        "secs_per_run": args.secs,
        "write": match args.write {
            Write::NodeLabel => "UpdateNode label_add (one node record per entry)",
            Write::Secret => "CreateSecret bench<i> / RemoveSecret bench<i>, alternately",
            Write::Read => "GetNode h1 (a consistent read, no write)",
        },
        "disk_fsync_per_s": fsync_per_s,
        "disk_fsync_loadavg_before": fsync_load_before,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
