//! Cluster benchmark of the gossip control plane and the overlay (issue #5). Root only.
//!
//! Starts a lab cluster with the test harness (N hosts as network namespaces, real daemons)
//! and prints one JSON object on stdout:
//!
//! 1. `propagation`: one task is added at a time (`service scale p-hA=+1` of a `host sleep`
//!    service pinned to host A, rotating A over the hosts) and the time is taken until the
//!    neighbour entry (IP → MAC on `vxlan0`) AND the FDB entry (MAC → A's VTEP) of the new
//!    endpoint exist in the overlay namespace of every other node. Two start points: A's
//!    RUNNING timestamp (A publishes the record to gossip just before it stamps RUNNING, same
//!    wall clock as this process: the gossip-visible moment), and the moment this process saw
//!    the task's sandbox namespace file appear under A's run dir (earlier: it also covers
//!    the sandbox set-up, the task's exec and the publish). The RUNNING stamp is in whole
//!    milliseconds, so a figure from it can come out slightly (< 1 ms) negative. Each poll
//!    (every `--poll-ms`, 5 ms by default) dumps the neighbours and the FDB of every node still
//!    waiting, so a node's time is known to within the poll interval plus one round of dumps.
//! 2. `purge`: `kill_host` (SIGKILL of the daemon, then its link down) → no surviving node holds
//!    a neighbour or FDB entry of the dead host's endpoints / VTEP. Each survivor has a thread
//!    of its own that follows the kernel's neighbour and FDB events there (a socket bound to
//!    RTNLGRP_NEIGH) from a dump taken before the kill, so its time does not wait on the
//!    others' and the measurement does not load the machine with dumps.
//!    Before each kill the lab settles (the previous victim Down, the bulk service's replicas
//!    all running again, the machine's CPU half idle: `settle`); `--no-settle` kills back to
//!    back.
//! 3. `idle`: with the endpoints running and nothing changing, per node over `--idle-secs`:
//!    bytes/s sent on the host's `eth0` (`/proc/<daemon pid>/net/dev`, i.e. everything: gossip,
//!    dispatcher sessions/heartbeats, Raft), the gossip part alone (an nft counter on
//!    `udp dport 7946` in the host namespace's output hook; a table of our own, in the host
//!    namespace only) and the daemon's CPU% (utime+stime from `/proc/<pid>/stat`). With
//!    `--idle-windows W`, W - 1 more windows back to back measure each node's gossip alone
//!    (its peaks need many windows to show).
//! 4. `rss`: VmRSS of every daemon with `--endpoints` endpoints in the network.
//! 6. `bulk` (with `--tasks` T > 0, issue #16): `service create --replicas T` of a `host sleep`
//!    service on the network (a VIP, so every new backend touches the VIP tables of every
//!    sandbox on every node) → all T running, the rate, the manager's VmRSS then, and where the
//!    CPU went meanwhile: the machine's user/system/softirq time (`/proc/stat`), the softirqs by
//!    kind (`/proc/softirqs`), every daemon's utime/stime, and the nf_tables tables and sets
//!    in one node's namespaces (host, overlay, sandboxes) at the end, and the UDP datagrams
//!    the daemons' namespaces dropped for want of receive buffer (`udp_rcvbuf_errors`).
//! 8. `removal` (with `--tasks`, after the purges): `service rm` of the bulk service → no live
//!    node's overlay holds a neighbour or FDB entry of its tasks (every task's tombstone at
//!    once), per node from its kernel's events as in the purge, with the UDP receive drops and
//!    the daemons' CPU meanwhile.
//! 5. `throughput` (with `--iperf-secs` > 0): iperf3 TCP task → task across two hosts over the
//!    overlay vs a VXLAN pair built by hand (two fresh namespaces on a fresh bridge namespace,
//!    the same underlay shape as the harness, static FDB/neighbour entries).
//!
//! The kernel is read in-process over rtnetlink: one NETLINK_ROUTE socket per overlay
//! namespace, opened from a thread that `setns`-ed into it (a netlink socket stays bound to
//! the namespace it was created in), so each poll is two small dumps per node, no fork.
//!
//! `sudo -E MINI_BIN=target/release/mini target/release/cluster_bench --hosts 10 --samples 20`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mini_tests::bench::{cpu_secs, round1, rss_kib, summary, wall_ms};
use mini_tests::cluster::exec_in_netns;
use mini_tests::vxlan_peers::{Endpoint, NeighChange, NlNs, Peers};
use mini_tests::{Cluster, Host, wait_for};
use serde_json::{Value, json};

const NETWORK: &str = "benchnet";
const SUBNET: &str = "10.201.0.0/16";

struct Args {
    hosts: usize,
    samples: usize,
    poll_ms: u64,
    endpoints: usize,
    idle_secs: u64,
    /// Further `--idle-secs` windows in which only each node's gossip is measured.
    idle_windows: usize,
    purge_trials: usize,
    iperf_secs: u64,
    tasks: usize,
    tasks_timeout_secs: u64,
    soak_secs: u64,
    /// Kill the next purge victim only once the lab has settled (see [`settle`]).
    settle: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        hosts: 3,
        samples: 20,
        poll_ms: 5,
        endpoints: 100,
        idle_secs: 10,
        idle_windows: 1,
        purge_trials: 3,
        iperf_secs: 5,
        tasks: 0,
        tasks_timeout_secs: 600,
        soak_secs: 0,
        settle: true,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let num = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag} wants a number, not {value:?}"))
        };
        match flag {
            "--hosts" => a.hosts = num() as usize,
            "--samples" => a.samples = num() as usize,
            "--poll-ms" => a.poll_ms = num().max(1),
            "--endpoints" => a.endpoints = num() as usize,
            "--idle-secs" => a.idle_secs = num().max(1),
            "--idle-windows" => a.idle_windows = num().max(1) as usize,
            "--purge-trials" => a.purge_trials = num() as usize,
            "--iperf-secs" => a.iperf_secs = num(),
            "--tasks" => a.tasks = num() as usize,
            "--tasks-timeout-secs" => a.tasks_timeout_secs = num().max(1),
            "--soak-secs" => a.soak_secs = num(),
            "--no-settle" => {
                a.settle = false;
                i += 1;
                continue;
            }
            "--help" | "-h" => {
                eprintln!(
                    "cluster_bench [--hosts N] [--samples S] [--poll-ms MS] [--endpoints E] \
                     [--idle-secs S] [--idle-windows W] [--purge-trials T] [--iperf-secs S (0: skip)] \
                     [--tasks T (0: skip)] [--tasks-timeout-secs S] [--soak-secs S (0: skip)] \
                     [--no-settle]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other} (see --help)"),
        }
        i += 2;
    }
    assert!(a.hosts >= 2, "--hosts must be at least 2");
    a
}

// ---------------------------------------------------------------------------------------------
// Cluster helpers.

fn vtep(cluster: &Cluster, k: usize) -> [u8; 4] {
    cluster
        .addr(k)
        .parse::<Ipv4Addr>()
        .expect("host address")
        .octets()
}

fn overlay_ns(cluster: &Cluster, k: usize, net_id: &str) -> PathBuf {
    cluster
        .host(k)
        .run_dir()
        .join("netns")
        .join(format!("1-{}", &net_id[..10]))
}

fn sandboxes(cluster: &Cluster, k: usize) -> BTreeSet<String> {
    std::fs::read_dir(cluster.host(k).run_dir().join("netns"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("1-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Running tasks of `service` as JSON.
fn running(h: &Host, service: &str) -> Vec<Value> {
    let out = h.ok_listed(&["service", "ps", service], "task").json();
    out.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["desired_state"] == "Running" && t["current_state"] == "Running")
        .collect()
}

/// Runs `mini ARGS` on `h`; retries (up to 10 times) when the manager refuses the write with an
/// optimistic-concurrency conflict ("changed meanwhile"), recording each conflict.
fn retry_conflict(h: &Host, conflicts: &mut Vec<String>, args: &[&str]) {
    for _ in 0..10 {
        let out = h.mini(args);
        if out.success {
            return;
        }
        if !out.stderr.contains("changed meanwhile") {
            break;
        }
        conflicts.push(format!("`mini {}`: {}", args.join(" "), out.stderr.trim()));
        std::thread::sleep(Duration::from_millis(100));
    }
    h.ok(args);
}

fn wait_running(h: &Host, service: &str, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} running tasks of {service}"),
        Duration::from_secs(180),
        || {
            let r = running(h, service);
            if r.len() == n {
                Ok(r)
            } else {
                Err(format!("{} of {n}", r.len()))
            }
        },
    )
}

fn task_ip(t: &Value) -> Option<[u8; 4]> {
    t["networks"][0]["addr"]
        .as_str()?
        .split('/')
        .next()?
        .parse::<Ipv4Addr>()
        .ok()
        .map(|a| a.octets())
}

fn fmt_ip(ip: [u8; 4]) -> String {
    Ipv4Addr::from(ip).to_string()
}

fn wait_check(h: &Host) {
    wait_for("`network check` to pass", Duration::from_secs(60), || {
        let out = h.mini(&["network", "check", NETWORK]);
        if out.success {
            Ok(())
        } else {
            Err(out.stdout + &out.stderr)
        }
    });
}

/// (tx bytes, tx packets) of eth0 in the namespace of `pid` (its /proc/PID/net is per-netns).
fn eth0_tx(pid: i32) -> (u64, u64) {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    dev.lines()
        .find_map(|l| l.trim_start().strip_prefix("eth0:"))
        .map(|r| {
            let f: Vec<u64> = r
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            (
                f.get(8).copied().unwrap_or(0),
                f.get(9).copied().unwrap_or(0),
            )
        })
        .unwrap_or((0, 0))
}

fn nft_in(ns: &Path, script: &str) -> Result<String, String> {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// (packets, bytes) of the named counters of `table inet minibench` in `ns`.
fn nft_counters(ns: &Path) -> HashMap<String, (u64, u64)> {
    let out = exec_in_netns(
        ns,
        &[
            "nft",
            "-j",
            "list",
            "counters",
            "table",
            "inet",
            "minibench",
        ],
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let mut m = HashMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let c = &item["counter"];
        if let Some(name) = c["name"].as_str() {
            m.insert(
                name.to_string(),
                (
                    c["packets"].as_u64().unwrap_or(0),
                    c["bytes"].as_u64().unwrap_or(0),
                ),
            );
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// The measurements.

/// Adds one task on host `a` and times its endpoint's arrival on every other node.
struct Sample {
    host: usize,
    from_running_ms: f64,
    from_sandbox_ms: f64,
    from_command_ms: f64,
    per_node_from_running_ms: Vec<f64>,
    stragglers: Option<Vec<Value>>,
}

fn propagate_one(
    cluster: &Cluster,
    socks: &mut [Option<NlNs>],
    a: usize,
    count: &mut [usize],
    poll: Duration,
    conflicts: &mut Vec<String>,
) -> Result<Sample, String> {
    let n = cluster.len();
    let va = vtep(cluster, a);
    let others: Vec<usize> = (1..=n).filter(|&k| k != a).collect();
    let base: HashMap<usize, BTreeSet<Endpoint>> = others
        .iter()
        .map(|&k| (k, socks[k - 1].as_mut().expect("socket").peers().at(va)))
        .collect();
    let sandboxes_before = sandboxes(cluster, a);
    count[a - 1] += 1;
    let service = format!("p-h{a}");
    let spec = format!("{service}={}", count[a - 1]);
    let t_cmd = wall_ms();
    retry_conflict(
        &cluster.host(1),
        conflicts,
        &["service", "scale", "--detach", &spec],
    );
    // The scale must show in the service's tasks: a write acknowledged but not applied, or a
    // task never scheduled or started, is reported with what was seen instead of waiting on.
    let want = count[a - 1];
    let mut t_sandbox = None;
    let mut diagnosis: Option<Vec<Value>> = None;
    let mut seen: HashMap<usize, (f64, Endpoint)> = HashMap::new();
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    while seen.len() < others.len() {
        if Instant::now() > deadline {
            return Err(format!(
                "`service scale {spec}`: the new endpoint on h{a} was not on every node after \
                 {PROPAGATION_DEADLINE:?}: seen on {:?}; {}",
                seen.keys().collect::<Vec<_>>(),
                service_view(&cluster.host(1), &service, want),
            ));
        }
        let now = wall_ms();
        if t_sandbox.is_none() && sandboxes(cluster, a).len() > sandboxes_before.len() {
            t_sandbox = Some(now);
        }
        for &k in &others {
            if seen.contains_key(&k) {
                continue;
            }
            let now = wall_ms();
            let new: Vec<_> = socks[k - 1]
                .as_mut()
                .expect("socket")
                .peers()
                .at(va)
                .difference(&base[&k])
                .copied()
                .collect();
            if let Some(ep) = new.first() {
                seen.insert(k, (now, *ep));
            }
        }
        // A straggler: 150 ms after the first node had it, ask every node's view once
        // (`network inspect --verbose`): is the endpoint in the straggler's gossip table
        // (then the kernel programming lags) or not yet (then the gossip does)?
        let first = seen.values().map(|(t, _)| *t).fold(f64::MAX, f64::min);
        if diagnosis.is_none() && !seen.is_empty() && wall_ms() - first > 150.0 {
            let ip = fmt_ip(seen.values().next().expect("seen").1.0);
            let views = cluster
                .host(1)
                .mini(&["network", "inspect", "--verbose", NETWORK]);
            let views = serde_json::from_str::<Value>(&views.stdout).unwrap_or(Value::Null);
            let has = |list: &Value| {
                list.as_array().into_iter().flatten().any(|p| {
                    p["ip"].as_str().and_then(|s| s.split('/').next()) == Some(ip.as_str())
                })
            };
            let at = round1(wall_ms() - first);
            diagnosis = Some(
                others
                    .iter()
                    .filter(|k| !seen.contains_key(k))
                    .map(|k| {
                        let node = format!("h{k}");
                        let view = views[0]["peers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|v| v["node"] == node.as_str())
                            .cloned()
                            .unwrap_or(Value::Null);
                        json!({
                            "node": node,
                            "ms_after_first_node": at,
                            "in_gossip_table": has(&view["expected"]),
                            "in_kernel": has(&view["kernel"]),
                        })
                    })
                    .collect(),
            );
        }
        std::thread::sleep(poll);
    }
    let eps: BTreeSet<_> = seen.values().map(|(_, e)| *e).collect();
    if eps.len() != 1 {
        return Err(format!("nodes saw different new endpoints: {eps:?}"));
    }
    let (ip, _) = *eps.iter().next().expect("one endpoint");
    // The endpoint usually reaches the other kernels before A's RUNNING report reaches the
    // manager (status reports are batched): wait for it, then read its timestamp.
    let deadline = Instant::now() + Duration::from_secs(20);
    let task = loop {
        if let Some(t) = running(&cluster.host(1), &service)
            .into_iter()
            .find(|t| task_ip(t) == Some(ip))
        {
            break t;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no running task of {service} with IP {}; {}",
                fmt_ip(ip),
                service_view(&cluster.host(1), &service, want),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let t_running = task["since_ms"].as_f64().unwrap_or(f64::NAN);
    let last = seen.values().map(|(t, _)| *t).fold(f64::MIN, f64::max);
    let t_sandbox = t_sandbox.unwrap_or(f64::NAN);
    Ok(Sample {
        host: a,
        from_running_ms: last - t_running,
        from_sandbox_ms: last - t_sandbox,
        from_command_ms: last - t_cmd,
        per_node_from_running_ms: others
            .iter()
            .map(|k| round1(seen[k].0 - t_running))
            .collect(),
        stragglers: diagnosis,
    })
}

/// How long one propagation sample may take before it is reported as failed.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(30);

/// After this many failed propagation samples in a row the phase stops (each one waited
/// [`PROPAGATION_DEADLINE`]): the errors say what was seen.
const MAX_FAILED_SAMPLES_IN_A_ROW: usize = 3;

/// What the manager says of `service` when a propagation sample failed: the replicas in
/// `service ls` and the states of its tasks (wanted: `want` running).
fn service_view(h: &Host, service: &str, want: usize) -> String {
    let query = mini_tests::bench::replicas_query(service);
    let ls = h.mini(&query.each_ref().map(String::as_str));
    let ps = h.listed(&["service", "ps", service], "task");
    let tasks: Vec<String> = serde_json::from_str::<Value>(&ps.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            format!(
                "{} {}→{} on {} {}",
                t["id"].as_str().unwrap_or("?"),
                t["current_state"].as_str().unwrap_or("?"),
                t["desired_state"].as_str().unwrap_or("?"),
                t["node"].as_str().unwrap_or("?"),
                t["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    format!(
        "wanted {want} running; `service ls`: {:?} {}; tasks: {tasks:?} {}",
        ls.stdout.trim(),
        ls.stderr.trim(),
        ps.stderr.trim()
    )
}

fn main() {
    let args = parse_args();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("cluster_bench: needs root (namespaces, mounts)");
        std::process::exit(1);
    }
    let n = args.hosts;
    let poll = Duration::from_millis(args.poll_ms);
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();

    let mut cluster = Cluster::start(n);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    m.ok(&[
        "network", "create", "-d", "overlay", "--subnet", SUBNET, NETWORK,
    ]);
    let net_id = m.ok(&["network", "inspect", NETWORK]).json()[0]["id"]
        .as_str()
        .expect("network id")
        .to_string();
    // One pinned service per host, one task each: every node has the network.
    let mut conflicts = Vec::new();
    for k in 1..=n {
        retry_conflict(
            &m,
            &mut conflicts,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                &format!("p-h{k}"),
                "--replicas",
                "1",
                "--network",
                NETWORK,
                "--constraint",
                &format!("node.hostname==h{k}"),
                "host",
                BULK_COMMAND[0],
                BULK_COMMAND[1],
            ],
        );
    }
    for k in 1..=n {
        wait_running(&m, &format!("p-h{k}"), 1);
    }
    wait_check(&m);
    let mut count = vec![1usize; n];
    let mut socks: Vec<Option<NlNs>> = (1..=n)
        .map(|k| Some(NlNs::open(&overlay_ns(&cluster, k, &net_id)).expect("overlay namespace")))
        .collect();

    // 1. Propagation.
    let propagation = measure_propagation(&cluster, &mut socks, &mut count, &args, &mut conflicts);
    eprintln!("propagation: {propagation}");

    let endpoints = fill_endpoints(&cluster, &mut count, args.endpoints, &mut conflicts);
    std::thread::sleep(Duration::from_secs(3));

    // 3. Idle traffic and CPU, 4. memory.
    let (idle, rss_json) = measure_idle(&cluster, &args, endpoints);
    eprintln!("idle: {idle}\nrss: {rss_json}");

    // 7. Idle soak: no live node may be declared down.
    let soak = if args.soak_secs > 0 {
        soak(&cluster, args.soak_secs)
    } else {
        Value::Null
    };
    eprintln!("soak: {soak}");

    // 5. Throughput (before any host dies).
    let throughput = if args.iperf_secs > 0 {
        throughput(&cluster, args.iperf_secs).unwrap_or_else(|e| json!({"error": e}))
    } else {
        Value::Null
    };
    eprintln!("throughput: {throughput}");

    // 6. Many tasks at once (before any host dies).
    let bulk = if args.tasks > 0 {
        bulk_tasks(&cluster, args.tasks, args.tasks_timeout_secs, &net_id)
    } else {
        Value::Null
    };
    eprintln!("bulk: {bulk}");

    // 2. Node death → purged everywhere. Victims h_n, h_(n-1), … (never h1, the manager).
    let mut purges = Vec::new();
    let trials = args.purge_trials.min(n - 1);
    for t in 0..trials {
        let victim = n - t;
        let settled = if args.settle {
            let previous = (t > 0).then(|| victim + 1);
            settle(&cluster.host(1), args.tasks, previous)
        } else {
            Value::Null
        };
        purges.push(purge_trial(
            &mut cluster,
            &mut socks,
            &net_id,
            victim,
            settled,
            poll,
        ));
    }
    let purge_all: Vec<f64> = purges
        .iter()
        .filter_map(|p| p["purged_everywhere_ms"].as_f64())
        .collect();
    let max = |v: &[f64]| round1(v.iter().copied().fold(f64::MIN, f64::max));

    // 8. The many tasks removed at once: `service rm` → no node has their entries left.
    let removal = if args.tasks > 0 {
        remove_bulk(&cluster, &mut socks, &net_id)
    } else {
        Value::Null
    };
    eprintln!("removal: {removal}");
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let report = json!({
        "bench": "cluster_gossip_overlay",
        "hosts": n,
        "binary": mini_tests::binary::mini_binary().display().to_string(),
        "network_subnet": SUBNET,
        "goals": {"propagation_p99_ms_at_10": 500, "purge_ms": 4000, "idle_gossip_kbit_per_s_per_node": 50, "overlay_vs_kernel_vxlan": 0.95},
        "propagation": propagation,
        "purge": {
            "trials": purges,
            "max_ms": if purge_all.is_empty() { Value::Null } else { json!(max(&purge_all)) },
            "summary_ms": summary(&purge_all),
            "failed": purges.len() - purge_all.len(),
        },
        "soak": soak,
        "idle": idle,
        "rss": rss_json,
        "throughput": throughput,
        "bulk": bulk,
        "removal": removal,
        "write_conflicts_retried": conflicts,
        "loadavg_before": load_before.trim(),
        "loadavg_after": load_after.trim(),
        "duration_s": round1(started.elapsed().as_secs_f64()),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}

/// Phase 1, propagation: `args.samples` new tasks, one host after another, each timed until
/// every other node's kernel has its neighbour and FDB entries.
fn measure_propagation(
    cluster: &Cluster,
    socks: &mut [Option<NlNs>],
    count: &mut [usize],
    args: &Args,
    conflicts: &mut Vec<String>,
) -> Value {
    let n = args.hosts;
    let poll = Duration::from_millis(args.poll_ms);
    let m = cluster.host(1);
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let (cpu0, wall0) = (cpu_secs(std::process::id() as i32), Instant::now());
    let mut failed_in_a_row = 0;
    for i in 0..args.samples {
        let a = i % n + 1;
        match propagate_one(cluster, socks, a, count, poll, conflicts) {
            Ok(s) => {
                samples.push(s);
                failed_in_a_row = 0;
            }
            Err(e) => {
                eprintln!("propagation sample {i} failed: {e}");
                errors.push(e);
                // Go on from what the manager has, not from what was asked.
                let service = format!("p-h{a}");
                count[a - 1] = running(&m, &service).len().max(1);
                failed_in_a_row += 1;
                if failed_in_a_row >= MAX_FAILED_SAMPLES_IN_A_ROW {
                    errors.push(format!(
                        "stopped after {failed_in_a_row} failed samples in a row"
                    ));
                    break;
                }
            }
        }
        // Let the previous task's RUNNING report and gossip settle.
        std::thread::sleep(Duration::from_millis(200));
    }
    // This process's own CPU (the `mini` CLI calls are children: not counted).
    let harness_cpu_pct =
        (cpu_secs(std::process::id() as i32) - cpu0) / wall0.elapsed().as_secs_f64() * 100.0;
    let from_running: Vec<f64> = samples.iter().map(|s| s.from_running_ms).collect();
    let from_sandbox: Vec<f64> = samples.iter().map(|s| s.from_sandbox_ms).collect();
    let from_command: Vec<f64> = samples.iter().map(|s| s.from_command_ms).collect();
    let propagation = json!({
        "samples": samples.len(),
        "poll_interval_ms": args.poll_ms,
        "harness_cpu_pct_while_polling": round1(harness_cpu_pct),
        "from_running_ms": summary(&from_running),
        "from_sandbox_file_ms": summary(&from_sandbox),
        "from_scale_command_ms": summary(&from_command),
        "each": samples.iter().map(|s| json!({
            "host": s.host,
            "from_running_ms": round1(s.from_running_ms),
            "from_sandbox_ms": round1(s.from_sandbox_ms),
            "per_node_from_running_ms": s.per_node_from_running_ms,
            "stragglers": s.stragglers,
        })).collect::<Vec<_>>(),
        "errors": errors,
    });
    propagation
}

/// Scales the pinned services up to `endpoints` endpoints in all, spread over the hosts;
/// returns how many there are.
fn fill_endpoints(
    cluster: &Cluster,
    count: &mut [usize],
    endpoints: usize,
    conflicts: &mut Vec<String>,
) -> usize {
    let n = count.len();
    let m = cluster.host(1);
    let total: usize = count.iter().sum();
    if endpoints > total {
        let per = endpoints.div_ceil(n);
        let mut specs = Vec::new();
        for (i, c) in count.iter_mut().enumerate() {
            let want = per.max(*c);
            *c = want;
            specs.push(format!("p-h{}={want}", i + 1));
        }
        let mut cmd = vec!["service", "scale", "--detach"];
        cmd.extend(specs.iter().map(String::as_str));
        retry_conflict(&m, conflicts, &cmd);
        for k in 1..=n {
            wait_running(&m, &format!("p-h{k}"), count[k - 1]);
        }
    }
    wait_check(&m);
    count.iter().sum()
}

/// Phases 3 and 4: idle traffic and CPU per node (nft counters in each host namespace, the
/// daemon's CPU), and every daemon's resident memory.
fn measure_idle(cluster: &Cluster, args: &Args, endpoints: usize) -> (Value, Value) {
    let n = args.hosts;
    let pids: Vec<i32> = (1..=n)
        .map(|k| cluster.daemon_pid(k).expect("daemon"))
        .collect();
    let rss: Vec<f64> = pids
        .iter()
        .map(|&p| round1(rss_kib(p) as f64 / 1024.0))
        .collect();
    let nft_script = "table inet minibench {\n\
        counter gossip_out {}\n\
        counter tcp_out {}\n\
        counter all_out {}\n\
        chain out {\n\
          type filter hook output priority 0; policy accept;\n\
          counter name all_out\n\
          udp dport 7946 counter name gossip_out\n\
          meta l4proto tcp counter name tcp_out\n\
        }\n\
      }\n";
    let mut nft_ok = true;
    for k in 1..=n {
        if let Err(e) = nft_in(&cluster.netns_path(k), nft_script) {
            eprintln!("nft counters in h{k}'s namespace: {e}");
            nft_ok = false;
        }
    }
    let before: Vec<_> = (1..=n)
        .map(|k| {
            (
                eth0_tx(pids[k - 1]),
                cpu_secs(pids[k - 1]),
                nft_counters(&cluster.netns_path(k)),
            )
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let elapsed = t0.elapsed().as_secs_f64();
    let mut idle_nodes = Vec::new();
    let (mut tx_kbit, mut gossip_kbit, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for k in 1..=n {
        let ((b0, p0), c0, n0) = &before[k - 1];
        let ((b1, p1), c1, n1) = (
            eth0_tx(pids[k - 1]),
            cpu_secs(pids[k - 1]),
            nft_counters(&cluster.netns_path(k)),
        );
        let rate = |name: &str| {
            let (p_a, b_a) = n0.get(name).copied().unwrap_or_default();
            let (p_b, b_b) = n1.get(name).copied().unwrap_or_default();
            ((b_b - b_a) as f64 / elapsed, (p_b - p_a) as f64 / elapsed)
        };
        let eth = (b1 - b0) as f64 / elapsed;
        let (g_b, g_p) = rate("gossip_out");
        let (t_b, t_p) = rate("tcp_out");
        let cpu_pct = (c1 - c0) / elapsed * 100.0;
        tx_kbit.push(eth * 8.0 / 1000.0);
        gossip_kbit.push(g_b * 8.0 / 1000.0);
        cpu.push(cpu_pct);
        idle_nodes.push(json!({
            "node": format!("h{k}"),
            "eth0_tx_bytes_per_s": round1(eth),
            "eth0_tx_packets_per_s": round1((p1 - p0) as f64 / elapsed),
            "gossip_udp7946_out_bytes_per_s": round1(g_b),
            "gossip_udp7946_out_packets_per_s": round1(g_p),
            "tcp_out_bytes_per_s": round1(t_b),
            "tcp_out_packets_per_s": round1(t_p),
            "daemon_cpu_pct": (cpu_pct * 100.0).round() / 100.0,
        }));
    }
    let mean = |v: &[f64]| round1(v.iter().sum::<f64>() / v.len().max(1) as f64);
    let max = |v: &[f64]| round1(v.iter().copied().fold(f64::MIN, f64::max));
    let windows = gossip_windows(cluster, args.idle_secs, args.idle_windows - 1);
    let idle = json!({
        "window_s": round1(elapsed),
        "endpoints": endpoints,
        "nft_counters": nft_ok,
        "eth0_tx_kbit_per_s": {"mean": mean(&tx_kbit), "max": max(&tx_kbit)},
        "gossip_out_kbit_per_s": {"mean": mean(&gossip_kbit), "max": max(&gossip_kbit)},
        "daemon_cpu_pct": {"mean": (mean(&cpu)), "max": max(&cpu)},
        "more_windows": windows,
        "per_node": idle_nodes,
    });
    let rss_json = json!({
        "endpoints": endpoints,
        "manager_h1_mib": rss[0],
        "workers_mean_mib": mean(&rss[1..]),
        "workers_max_mib": max(&rss[1..]),
        "per_node_mib": rss,
    });
    (idle, rss_json)
}

/// Phase 2, one node death: kills `victim` and times, per survivor, until its kernel holds no
/// entry of the victim's endpoints or VTEP.
fn purge_trial(
    cluster: &mut Cluster,
    socks: &mut [Option<NlNs>],
    net_id: &str,
    victim: usize,
    settled: Value,
    poll: Duration,
) -> Value {
    let n = socks.len();
    let dead = vtep(cluster, victim);
    let survivors: Vec<usize> = (1..=n).filter(|&k| k < victim).collect();
    let dead_eps: BTreeSet<_> = survivors
        .iter()
        .flat_map(|&k| socks[k - 1].as_mut().expect("socket").peers().at(dead))
        .collect();
    // One watcher per survivor, subscribed before the kill: its thread follows the kernel's
    // neighbour and FDB events from the state dumped here, and the survivor is clean when
    // they have removed the last entry of the dead node. Polling the survivors one after
    // another took a sweep of dumps (up to 4 s at load 70 with 2,000 endpoints) to see each
    // node again; a dump per event would cost the lab the CPU the purge needs.
    let mut watchers: HashMap<usize, NlNs> = survivors
        .iter()
        .map(|&k| {
            let w = NlNs::watch(&overlay_ns(cluster, k, net_id)).expect("watcher");
            (k, w)
        })
        .collect();
    let mut stale: HashMap<usize, Stale> = survivors
        .iter()
        .map(|&k| {
            let p = socks[k - 1].as_mut().expect("socket").peers();
            (k, Stale::of(&p, dead, &dead_eps))
        })
        .collect();
    let killed_at = wall_ms();
    let t0 = Instant::now();
    cluster.kill_host(victim);
    let killed_ms = t0.elapsed().as_secs_f64() * 1000.0;
    socks[victim - 1] = None;
    let deadline = t0 + Duration::from_secs(60);
    let clean_at: HashMap<usize, f64> = std::thread::scope(|scope| {
        let threads: Vec<_> = socks
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| Some((i + 1, s.as_mut()?)))
            .filter(|(k, _)| survivors.contains(k))
            .map(|(k, sock)| {
                let mut watcher = watchers.remove(&k).expect("watcher");
                let mut left = stale.remove(&k).expect("stale entries");
                let dead_eps = &dead_eps;
                scope.spawn(move || {
                    while Instant::now() < deadline {
                        if left.is_empty() {
                            let at = t0.elapsed().as_secs_f64() * 1000.0;
                            // What the events said, checked once against the tables.
                            left = Stale::of(&sock.peers(), dead, dead_eps);
                            if left.is_empty() {
                                return Some((k, at));
                            }
                        }
                        match watcher.wait_changes(Duration::from_millis(250).max(poll)) {
                            Some(changes) => {
                                for c in changes {
                                    left.apply(c, dead, dead_eps);
                                }
                            }
                            // Events were lost: start again from the tables.
                            None => left = Stale::of(&sock.peers(), dead, dead_eps),
                        }
                    }
                    None
                })
            })
            .collect();
        threads
            .into_iter()
            .filter_map(|t| t.join().expect("purge watcher"))
            .collect()
    });
    let all = clean_at.values().copied().fold(f64::MIN, f64::max);
    json!({
        "victim": format!("h{victim}"),
        "settled_before_kill": settled,
        "killed_at_unix_ms": killed_at.round(),
        "endpoints_of_victim": dead_eps.len(),
        "kill_and_link_down_ms": round1(killed_ms),
        "purged_everywhere_ms": if clean_at.len() == survivors.len() { json!(round1(all)) } else { json!(null) },
        "per_node_ms": survivors.iter().map(|k| json!({
            "node": format!("h{k}"),
            "ms": clean_at.get(k).map(|v| round1(*v)),
        })).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
/// `windows` more idle windows of `secs` each, back to back: each node's gossip sent (the nft
/// counter on UDP 7946 out) in kbit/s, the mean and the busiest node of each window, and the
/// busiest of all. One window shows a node's typical traffic; its peaks (a node answering
/// several announces in one window) need many.
fn gossip_windows(cluster: &Cluster, secs: u64, windows: usize) -> Value {
    let n = cluster.len();
    let read = || -> Vec<u64> {
        (1..=n)
            .map(|k| {
                nft_counters(&cluster.netns_path(k))
                    .get("gossip_out")
                    .map_or(0, |&(_, bytes)| bytes)
            })
            .collect()
    };
    let mut each = Vec::new();
    let mut busiest = (0.0f64, String::new());
    let mut before = read();
    let mut t0 = Instant::now();
    for _ in 0..windows {
        std::thread::sleep(Duration::from_secs(secs));
        let after = read();
        let elapsed = t0.elapsed().as_secs_f64();
        t0 = Instant::now();
        let kbit: Vec<f64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.saturating_sub(*b) as f64 * 8.0 / 1000.0 / elapsed)
            .collect();
        before = after;
        let (top, node) = kbit
            .iter()
            .enumerate()
            .fold((0.0f64, 0), |m, (i, &k)| if k > m.0 { (k, i) } else { m });
        if top > busiest.0 {
            busiest = (top, format!("h{}", node + 1));
        }
        each.push(json!({
            "mean": round1(kbit.iter().sum::<f64>() / kbit.len().max(1) as f64),
            "max": round1(top),
            "node": format!("h{}", node + 1),
        }));
    }
    json!({
        "window_s": secs,
        "gossip_out_kbit_per_s": each,
        "max": round1(busiest.0),
        "max_node": busiest.1,
    })
}

// Soak: an idle cluster for S seconds, and every sign of a live node declared down.

/// Log lines that say a live node was declared down: by the manager's heartbeat monitor, by
/// a gossip member (it dropped the node's endpoints), or by the node itself hearing it.
const DOWN_SIGNS: [&str; 3] = [
    "heartbeat failure",
    "member down: dropped its endpoints",
    "declared down by the cluster",
];

fn down_signs(cluster: &Cluster) -> Vec<[usize; 3]> {
    (1..=cluster.len())
        .map(|k| {
            let log = cluster.host(k).log();
            DOWN_SIGNS.map(|sign| log.matches(sign).count())
        })
        .collect()
}

/// Sits `secs` with nothing changing; every 10 s lists the nodes on h1 and notes any not
/// Ready. At the end counts, per daemon log, the lines of [`DOWN_SIGNS`] written meanwhile.
fn soak(cluster: &Cluster, secs: u64) -> Value {
    let n = cluster.len();
    let m = cluster.host(1);
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let signs0 = down_signs(cluster);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let (mut checks, mut not_ready) = (0, Vec::new());
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(10).min(end - Instant::now()));
        let out = m.listed(&["node", "ls"], "node");
        checks += 1;
        let nodes = serde_json::from_str::<Value>(&out.stdout).unwrap_or(Value::Null);
        let listed = nodes.as_array().map_or(0, Vec::len);
        let bad: Vec<String> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["status"] != "ready")
            .map(|v| format!("{} {}", v["hostname"], v["status"]))
            .collect();
        if !out.success || listed != n || !bad.is_empty() {
            not_ready.push(json!({
                "at_s": round1(t0.elapsed().as_secs_f64()),
                "listed": listed,
                "not_ready": bad,
                "error": out.stderr.trim(),
            }));
        }
    }
    let signs1 = down_signs(cluster);
    let per_node: Vec<Value> = (0..n)
        .filter_map(|i| {
            let d: Vec<usize> = (0..3).map(|j| signs1[i][j] - signs0[i][j]).collect();
            (d.iter().sum::<usize>() > 0).then(|| {
                json!({
                    "node": format!("h{}", i + 1),
                    "heartbeat_failure": d[0],
                    "gossip_member_down": d[1],
                    "declared_down_itself": d[2],
                })
            })
        })
        .collect();
    let total = |j: usize| (0..n).map(|i| signs1[i][j] - signs0[i][j]).sum::<usize>();
    json!({
        "secs": round1(t0.elapsed().as_secs_f64()),
        "node_ls_checks": checks,
        "checks_with_a_node_not_ready": not_ready,
        "heartbeat_failures": total(0),
        "gossip_member_down": total(1),
        "declared_down_itself": total(2),
        "per_node": per_node,
        "loadavg_before": load_before.trim(),
        "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

// ---------------------------------------------------------------------------------------------
// Bulk: T tasks from one `service create`.

/// Waits, before a purge trial, until the lab has settled: the manager shows the previous
/// victim (`previous`, if any) Down, the bulk service (with `tasks` > 0) has all its replicas
/// running again (that victim's tasks restarted elsewhere: until it is Down they still count
/// as running), then the machine's CPU is at least half idle over one second. On 50 hosts sharing two cores, the
/// next kill otherwise lands while every node is still re-programming the VIP tables of all its
/// sandboxes for the previous victim's replacements: a figure of the lab's density, not of a
/// node's death in a running cluster (each real host has CPUs of its own). Gives up after
/// [`SETTLE_DEADLINE`] each and says what it saw.
fn settle(m: &Host, tasks: usize, previous: Option<usize>) -> Value {
    let t0 = Instant::now();
    let mut down = None;
    if let Some(k) = previous {
        down = Some(false);
        while t0.elapsed() < SETTLE_DEADLINE {
            if node_down(m, k) {
                down = Some(true);
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut running = None;
    if tasks > 0 {
        while t0.elapsed() < SETTLE_DEADLINE {
            running = replicas_running(m, "bulk");
            if running.is_some_and(|r| r >= tasks) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let tasks_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut idle = 0.0;
    while t1.elapsed() < SETTLE_DEADLINE {
        let a = machine_cpu();
        std::thread::sleep(Duration::from_secs(1));
        let b = machine_cpu();
        let d: Vec<u64> = b
            .iter()
            .zip(&a)
            .map(|(b, a)| b.saturating_sub(*a))
            .collect();
        let total: u64 = d.iter().sum();
        idle = d.get(3).copied().unwrap_or(0) as f64 / total.max(1) as f64;
        if idle >= 0.5 {
            break;
        }
    }
    json!({
        "previous_victim_down": down,
        "bulk_running": running,
        "tasks_wait_s": round1(tasks_s),
        "idle_wait_s": round1(t1.elapsed().as_secs_f64()),
        "idle_fraction": (idle * 100.0).round() / 100.0,
    })
}

/// What a survivor still holds of a dead node: the neighbour entries (by IP) of its endpoints
/// and the FDB entries (by MAC) pointing at its VTEP.
struct Stale {
    neigh: BTreeSet<[u8; 4]>,
    fdb: BTreeSet<[u8; 6]>,
}

impl Stale {
    /// From a dump of the survivor's tables.
    fn of(p: &Peers, dead: [u8; 4], dead_eps: &BTreeSet<Endpoint>) -> Stale {
        Stale {
            neigh: p
                .neigh
                .iter()
                .filter(|e| dead_eps.contains(e))
                .map(|(ip, _)| *ip)
                .collect(),
            fdb: p
                .fdb
                .iter()
                .filter(|(_, vtep)| **vtep == dead)
                .map(|(mac, _)| *mac)
                .collect(),
        }
    }

    /// Follows one change the kernel reported.
    fn apply(&mut self, change: NeighChange, dead: [u8; 4], dead_eps: &BTreeSet<Endpoint>) {
        match change {
            NeighChange::Neighbour { ip, mac } => {
                if !mac.is_some_and(|mac| dead_eps.contains(&(ip, mac))) {
                    self.neigh.remove(&ip);
                }
            }
            NeighChange::Fdb { mac, vtep } => {
                if vtep != Some(dead) {
                    self.fdb.remove(&mac);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.neigh.is_empty() && self.fdb.is_empty()
    }

    /// How many entries are left.
    fn len(&self) -> usize {
        self.neigh.len() + self.fdb.len()
    }

    /// The entries of `eps` (removed endpoints) in a dump: their neighbour entries, and the
    /// FDB entries of their MACs wherever they point.
    fn of_endpoints(p: &Peers, eps: &BTreeSet<Endpoint>) -> Stale {
        let macs: BTreeSet<[u8; 6]> = eps.iter().map(|(_, mac)| *mac).collect();
        Stale {
            neigh: p
                .neigh
                .iter()
                .filter(|e| eps.contains(e))
                .map(|(ip, _)| *ip)
                .collect(),
            fdb: p
                .fdb
                .keys()
                .filter(|mac| macs.contains(*mac))
                .copied()
                .collect(),
        }
    }

    /// Follows one change the kernel reported, for removed endpoints: an entry is clean once it
    /// is gone or points elsewhere.
    fn apply_removed(&mut self, change: NeighChange, eps: &BTreeSet<Endpoint>) {
        match change {
            NeighChange::Neighbour { ip, mac } => {
                if !mac.is_some_and(|mac| eps.contains(&(ip, mac))) {
                    self.neigh.remove(&ip);
                }
            }
            NeighChange::Fdb { mac, vtep } => {
                if vtep.is_none() {
                    self.fdb.remove(&mac);
                }
            }
        }
    }
}

/// Whether `m`'s `node ls` shows host `k` Down.
fn node_down(m: &Host, k: usize) -> bool {
    let out = m.mini(&mini_tests::bench::NODE_STATUS_QUERY);
    mini_tests::bench::shows_down(&out.stdout, &format!("h{k}"))
}

/// How long [`settle`] waits for each of its conditions.
const SETTLE_DEADLINE: Duration = Duration::from_secs(120);

/// (user, nice, system, idle, iowait, irq, softirq) jiffies of the whole machine.
fn machine_cpu() -> Vec<u64> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Softirq counts by kind, summed over the CPUs.
fn softirqs() -> BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/softirqs")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let sum = rest
                .split_whitespace()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
            Some((name.trim().to_string(), sum))
        })
        .collect()
}

/// utime and stime of `pid` in seconds.
fn user_system_secs(pid: i32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / hz;
    (field(11), field(12))
}

/// nf_tables tables and sets in the namespace of `netns` (`nft list tables` / `list sets`).
fn nft_objects(netns: &Path) -> (usize, usize, usize) {
    let tables = exec_in_netns(netns, &["nft", "list", "tables"])
        .stdout
        .lines()
        .count();
    let sets = exec_in_netns(netns, &["nft", "list", "sets"])
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("set ") || l.trim_start().starts_with("map "))
        .count();
    let rules = exec_in_netns(netns, &["nft", "-a", "list", "ruleset"])
        .stdout
        .lines()
        .filter(|l| {
            l.contains("# handle")
                && !l.trim_start().starts_with("table")
                && !l.trim_start().starts_with("chain")
                && !l.trim_start().starts_with("set")
                && !l.trim_start().starts_with("map")
        })
        .count();
    (tables, sets, rules)
}

/// Running tasks of `service` as `service ls` counts them ("R/D").
fn replicas_running(h: &Host, service: &str) -> Option<usize> {
    let query = mini_tests::bench::replicas_query(service);
    let out = h.mini(&query.each_ref().map(String::as_str));
    mini_tests::bench::parse_replicas(&out.stdout, service).map(|(running, _)| running)
}

fn bulk_tasks(cluster: &Cluster, tasks: usize, timeout_secs: u64, net_id: &str) -> Value {
    let n = cluster.len();
    let m = cluster.host(1);
    let pids: Vec<i32> = (1..=n).filter_map(|k| cluster.daemon_pid(k)).collect();
    let cpu0 = machine_cpu();
    let soft0 = softirqs();
    let daemons0: Vec<(f64, f64)> = pids.iter().map(|&p| user_system_secs(p)).collect();
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let drops0 = udp_rcvbuf_errors(&pids);
    let t0 = Instant::now();
    let replicas = tasks.to_string();
    let out = m.mini(&[
        "service",
        "create",
        "--detach",
        "--name",
        "bulk",
        "--replicas",
        &replicas,
        "--network",
        NETWORK,
        "host",
        BULK_COMMAND[0],
        BULK_COMMAND[1],
    ]);
    if !out.success {
        return json!({"error": format!("service create: {}", out.stderr)});
    }
    let created_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let deadline = t0 + Duration::from_secs(timeout_secs);
    let mut progress = Vec::new();
    let mut last = 0;
    let mut first_all = None;
    let mut max_load = 0.0f64;
    while Instant::now() < deadline {
        let running = replicas_running(&m, "bulk").unwrap_or(last);
        let load: f64 = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        max_load = max_load.max(load);
        if running != last || progress.is_empty() {
            progress.push(json!([round1(t0.elapsed().as_secs_f64()), running]));
            eprintln!(
                "bulk: {running} of {tasks} running after {:.1} s (load {load})",
                t0.elapsed().as_secs_f64()
            );
        }
        last = running;
        if running >= tasks {
            first_all = Some(t0.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let wall = t0.elapsed().as_secs_f64();
    let drops = udp_rcvbuf_errors(&pids).saturating_sub(drops0);
    let cpu1 = machine_cpu();
    let soft1 = softirqs();
    let d = |i: usize| {
        cpu1.get(i)
            .unwrap_or(&0)
            .saturating_sub(*cpu0.get(i).unwrap_or(&0)) as f64
    };
    let total: f64 = (0..7).map(d).sum::<f64>().max(1.0);
    let pct = |i: usize| round1(d(i) / total * 100.0);
    let softirq_rates: BTreeMap<String, f64> = soft1
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                round1(v.saturating_sub(*soft0.get(k).unwrap_or(&0)) as f64 / wall),
            )
        })
        .collect();
    let daemons: Vec<(f64, f64)> = pids
        .iter()
        .zip(&daemons0)
        .map(|(&p, (u0, s0))| {
            let (u1, s1) = user_system_secs(p);
            (u1 - u0, s1 - s0)
        })
        .collect();
    let (du, ds): (f64, f64) = daemons
        .iter()
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    // nf_tables objects on the last node: host, overlay and every sandbox namespace.
    let k = n;
    let run = cluster.host(k).run_dir().join("netns");
    let mut sandboxes = 0;
    let (mut tables, mut sets, mut rules) = (0, 0, 0);
    let overlay = overlay_ns(cluster, k, net_id);
    for f in std::fs::read_dir(&run).into_iter().flatten().flatten() {
        let (t, s, r) = nft_objects(&f.path());
        let name = f.file_name().to_string_lossy().into_owned();
        if f.path() != overlay && !name.starts_with("1-") && !name.contains("ingress") {
            sandboxes += 1;
        }
        tables += t;
        sets += s;
        rules += r;
    }
    let (ht, hs, hr) = nft_objects(&cluster.netns_path(k));
    let manager_rss = round1(rss_kib(pids[0]) as f64 / 1024.0);
    let workers_rss: Vec<f64> = pids[1..]
        .iter()
        .map(|&p| round1(rss_kib(p) as f64 / 1024.0))
        .collect();
    json!({
        "tasks": tasks,
        "service_create_ms": round1(created_ms),
        "all_running_s": first_all.map(round1),
        "running_at_end": last,
        "tasks_per_s": round1(last as f64 / wall),
        "progress_s_running": progress,
        "loadavg_before": load0.trim(),
        "loadavg_max_1min": max_load,
        "machine_cpu_pct": {"user": pct(0), "nice": pct(1), "system": pct(2), "idle": pct(3), "iowait": pct(4), "irq": pct(5), "softirq": pct(6)},
        "softirqs_per_s": softirq_rates,
        "daemons_cpu_s": {"user": round1(du), "system": round1(ds), "manager_user": round1(daemons[0].0), "manager_system": round1(daemons[0].1)},
        "udp_rcvbuf_errors": drops,
        "manager_rss_mib": manager_rss,
        "workers_rss_mib_mean": round1(workers_rss.iter().sum::<f64>() / workers_rss.len().max(1) as f64),
        "workers_rss_mib_max": round1(workers_rss.iter().copied().fold(0.0, f64::max)),
        "nft_on_last_node": {
            "node": format!("h{k}"),
            "sandboxes": sandboxes,
            "namespaces_under_run_dir": {"tables": tables, "sets": sets, "rules": rules},
            "host_namespace": {"tables": ht, "sets": hs, "rules": hr},
        },
    })
}

/// UDP datagrams dropped on arrival for want of socket buffer space, summed over the daemons'
/// network namespaces (`Udp: RcvbufErrors` of `/proc/PID/net/snmp`, which shows the namespace
/// of that process): gossip packets lost before the agent read them.
fn udp_rcvbuf_errors(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).ok()?;
            let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
            let (names, values) = (udp.next()?, udp.next()?);
            let column = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
            values.split_whitespace().nth(column)?.parse::<u64>().ok()
        })
        .sum()
}

/// Removes the bulk service and times how long until no live node's overlay holds a neighbour
/// or FDB entry of its tasks: every task's tombstone at once. As in the purge, each node has a
/// thread that follows its kernel's neighbour and FDB events from a dump taken before the
/// removal, so a node's time does not wait on a sweep of the others.
fn remove_bulk(cluster: &Cluster, socks: &mut [Option<NlNs>], net_id: &str) -> Value {
    let m = cluster.host(1);
    let ips: BTreeSet<[u8; 4]> = running(&m, "bulk").iter().filter_map(task_ip).collect();
    let live: Vec<usize> = (1..=cluster.len())
        .filter(|&k| socks[k - 1].is_some())
        .collect();
    let pids: Vec<i32> = live.iter().filter_map(|&k| cluster.daemon_pid(k)).collect();
    let mut dumps: HashMap<usize, Peers> = live
        .iter()
        .map(|&k| (k, socks[k - 1].as_mut().expect("socket").peers()))
        .collect();
    // The tasks' (IP, MAC) as the nodes' tables hold them.
    let eps: BTreeSet<Endpoint> = dumps
        .values()
        .flat_map(|p| p.neigh.iter().filter(|(ip, _)| ips.contains(ip)).copied())
        .collect();
    let mut watchers: HashMap<usize, NlNs> = live
        .iter()
        .map(|&k| {
            let w = NlNs::watch(&overlay_ns(cluster, k, net_id)).expect("watcher");
            (k, w)
        })
        .collect();
    // Dumped again after subscribing, so no change falls between the dump and the watch.
    for &k in &live {
        dumps.insert(k, socks[k - 1].as_mut().expect("socket").peers());
    }
    // What each node holds of the tasks' entries when `service rm` is sent.
    let mut stale: BTreeMap<usize, Stale> = live
        .iter()
        .map(|&k| (k, Stale::of_endpoints(&dumps[&k], &eps)))
        .collect();
    let before = stale.values().filter(|s| !s.is_empty()).count();
    let drops0 = udp_rcvbuf_errors(&pids);
    let cpu0: Vec<(f64, f64)> = pids.iter().map(|&p| user_system_secs(p)).collect();
    // The bulk tasks and the pinned ones run the same command: the pinned ones are the rest.
    let sleep_cmdline = BULK_COMMAND.join("\0");
    let pinned = count_processes(&sleep_cmdline).saturating_sub(ips.len());
    let netns_files = || -> usize {
        live.iter()
            .filter_map(|&k| std::fs::read_dir(cluster.host(k).run_dir().join("netns")).ok())
            .map(Iterator::count)
            .sum()
    };
    // Every namespace but the bulk tasks' sandboxes.
    let other_netns = netns_files().saturating_sub(ips.len());
    let t0 = Instant::now();
    let out = m.mini(&["service", "rm", "bulk"]);
    if !out.success {
        return json!({"error": format!("service rm: {}", out.stderr)});
    }
    let rm_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let deadline = t0 + Duration::from_secs(120);
    let eps = &eps;
    // Entries each node still holds, as its watcher last counted them (for the timeline).
    let entries_left: BTreeMap<usize, AtomicUsize> = stale
        .iter()
        .map(|(&k, s)| (k, AtomicUsize::new(s.len())))
        .collect();
    let mut timeline = Vec::new();
    let clean_at: BTreeMap<usize, (f64, usize)> = std::thread::scope(|scope| {
        let threads: Vec<_> = socks
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| Some((i + 1, s.as_mut()?)))
            .filter(|(k, _)| live.contains(k))
            .map(|(k, sock)| {
                let mut watcher = watchers.remove(&k).expect("watcher");
                let mut left = stale.remove(&k).expect("stale entries");
                let counter = &entries_left[&k];
                scope.spawn(move || {
                    let mut redumps = 0;
                    let mut last_read = Instant::now();
                    while Instant::now() < deadline {
                        counter.store(left.len(), Ordering::Relaxed);
                        if left.is_empty() {
                            let at = t0.elapsed().as_secs_f64() * 1000.0;
                            left = Stale::of_endpoints(&sock.peers(), eps);
                            if left.is_empty() {
                                counter.store(0, Ordering::Relaxed);
                                return Some((k, at, redumps));
                            }
                        }
                        match watcher.wait_changes(Duration::from_millis(250)) {
                            // Quiet with entries left: read the tables again, at most once a
                            // second. The events of a 4,000-entry removal did not always
                            // account for every entry (nodes stayed "stale" for 120 s whose
                            // tables were clean).
                            Some(changes)
                                if changes.is_empty()
                                    && last_read.elapsed() >= Duration::from_secs(1) =>
                            {
                                redumps += 1;
                                last_read = Instant::now();
                                left = Stale::of_endpoints(&sock.peers(), eps);
                            }
                            Some(changes) => {
                                for c in changes {
                                    left.apply_removed(c, eps);
                                }
                            }
                            None => left = Stale::of_endpoints(&sock.peers(), eps),
                        }
                    }
                    None
                })
            })
            .collect();
        // Once a second: the task processes still alive and the entries still held, to tell
        // where the removal's time goes (the stops, or the tables after them).
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            let left: Vec<usize> = entries_left
                .values()
                .map(|c| c.load(Ordering::Relaxed))
                .collect();
            timeline.push(json!({
                "t_s": round1(t0.elapsed().as_secs_f64()),
                "task_processes": count_processes(&sleep_cmdline).saturating_sub(pinned),
                "task_sandboxes": netns_files().saturating_sub(other_netns),
                "entries_left": left.iter().sum::<usize>(),
                "nodes_clean": left.iter().filter(|&&l| l == 0).count(),
            }));
            std::thread::sleep(Duration::from_secs(1));
        }
        threads
            .into_iter()
            .filter_map(|t| t.join().expect("removal watcher"))
            .map(|(k, at, redumps)| (k, (at, redumps)))
            .collect()
    });
    let (user, system) = pids
        .iter()
        .zip(&cpu0)
        .map(|(&p, (u0, s0))| {
            let (u1, s1) = user_system_secs(p);
            (u1 - u0, s1 - s0)
        })
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let times: Vec<f64> = clean_at.values().map(|(at, _)| *at).collect();
    let redumped = clean_at.values().filter(|(_, r)| *r > 0).count();
    // What the nodes that never came clean still hold, from a dump now.
    let not_clean: Vec<Value> = live
        .iter()
        .filter(|k| !clean_at.contains_key(k))
        .map(|&k| {
            let p = socks[k - 1].as_mut().expect("socket").peers();
            let left = Stale::of_endpoints(&p, eps);
            let fdb: Vec<String> = left
                .fdb
                .iter()
                .take(3)
                .map(|mac| format!("{mac:02x?} -> {:?}", p.fdb.get(mac).map(|v| fmt_ip(*v))))
                .collect();
            json!({
                "node": format!("h{k}"),
                "neighbours": left.neigh.len(),
                "fdb": left.fdb.len(),
                "neighbour_examples": left.neigh.iter().take(3).map(|ip| fmt_ip(*ip)).collect::<Vec<_>>(),
                "fdb_examples": fdb,
            })
        })
        .collect();
    json!({
        "tasks": ips.len(),
        "endpoints_in_the_tables": eps.len(),
        "nodes_with_their_entries_before": before,
        "service_rm_ms": round1(rm_ms),
        "entries_gone_everywhere_ms": not_clean.is_empty().then(|| round1(times.iter().copied().fold(0.0, f64::max))),
        "entries_gone_per_node_ms": summary(&times),
        "nodes_not_clean_after_120_s": not_clean,
        "nodes_read_again_when_quiet": redumped,
        "udp_rcvbuf_errors": udp_rcvbuf_errors(&pids).saturating_sub(drops0),
        "daemons_cpu_s": {"user": round1(user), "system": round1(system)},
        "timeline": timeline,
    })
}

/// The command of the bulk service's tasks (and of the pinned services').
const BULK_COMMAND: [&str; 2] = ["sleep", "100000"];

/// Processes on this machine whose command line is `cmdline` (arguments joined by NUL).
fn count_processes(cmdline: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| c.strip_suffix(b"\0").unwrap_or(c) == cmdline.as_bytes())
        .count()
}

// ---------------------------------------------------------------------------------------------
// Throughput: overlay task → task vs hand-made VXLAN.

/// Namespaces made for the hand-built VXLAN pair; deleted on drop (also on panic).
struct OwnNamespaces(Vec<String>);

impl Drop for OwnNamespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Kills a spawned iperf3 server (by its PID) on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// iperf3 from `client_ns` to `server_ip` (server in `server_ns`); Gbit/s received.
fn iperf(server_ns: &Path, client_ns: &Path, server_ip: &str, secs: u64) -> Result<f64, String> {
    let server = Command::new("nsenter")
        .arg(format!("--net={}", server_ns.display()))
        .args(["iperf3", "-s", "-1", "-p", "5299"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let _server = Server(server);
    std::thread::sleep(Duration::from_millis(300));
    let t = secs.to_string();
    let out = exec_in_netns(
        client_ns,
        &["iperf3", "-c", server_ip, "-p", "5299", "-t", &t, "-J"],
    );
    let v: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("iperf3: {e}: {} {}", out.stdout, out.stderr))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("iperf3 said: {}", v["error"]))
}

fn throughput(cluster: &Cluster, secs: u64) -> Result<Value, String> {
    let m = cluster.host(1);
    let pick = |k: usize| -> Result<(PathBuf, String), String> {
        let t = running(&m, &format!("p-h{k}"))
            .into_iter()
            .next()
            .ok_or("no task")?;
        let id = t["id"].as_str().ok_or("no id")?.to_string();
        let ip = fmt_ip(task_ip(&t).ok_or("no ip")?);
        Ok((cluster.host(k).run_dir().join("netns").join(&id[..12]), ip))
    };
    let (srv_ns, srv_ip) = pick(1)?;
    let (cli_ns, _) = pick(2)?;
    let task_link = exec_in_netns(&cli_ns, &["ip", "-o", "link", "show", "eth0"]).stdout;

    // The same underlay shape as the harness: two host namespaces with eth0 on a bridge in a
    // third; VXLAN (VNI 4242, dstport 4789) with static FDB + neighbour entries, MTU 1450.
    let p = format!("cb{}", std::process::id() % 100000);
    let (br, ha, hb) = (format!("{p}-br"), format!("{p}-a"), format!("{p}-b"));
    let (sa, sb) = (format!("{p}-sa"), format!("{p}-sb"));
    let _own = OwnNamespaces(vec![
        sa.clone(),
        sb.clone(),
        br.clone(),
        ha.clone(),
        hb.clone(),
    ]);
    for ns in [&br, &ha, &hb, &sa, &sb] {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &br, "link", "set", "br0", "up"])?;
    let hosts = [
        (&ha, "va", "10.79.0.1", "10.80.0.1", "02:42:0a:50:00:01"),
        (&hb, "vb", "10.79.0.2", "10.80.0.2", "02:42:0a:50:00:02"),
    ];
    for (ns, veth, under, _, mac) in hosts {
        ip(&[
            "-n", &br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", &br, "link", "set", veth, "master", "br0", "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{under}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "4242",
            "dstport",
            "4789",
            "local",
            under,
            "nolearning",
        ])?;
        ip(&[
            "-n", ns, "link", "set", "vx0", "address", mac, "mtu", "1450", "up",
        ])?;
    }
    for (i, (ns, _, _, over, _)) in hosts.iter().enumerate() {
        let (_, _, peer_under, peer_over, peer_mac) = hosts[1 - i];
        ip(&["-n", ns, "addr", "add", &format!("{over}/24"), "dev", "vx0"])?;
        ip(&[
            "-n",
            ns,
            "neigh",
            "replace",
            peer_over,
            "lladdr",
            peer_mac,
            "dev",
            "vx0",
            "nud",
            "permanent",
        ])?;
        let out = Command::new("bridge")
            .args([
                "-n", ns, "fdb", "append", peer_mac, "dev", "vx0", "dst", peer_under,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    // A second hand-made path shaped like the overlay's: per side a "sandbox" namespace whose
    // eth0 (veth, MTU 1450) sits on a bridge with a VXLAN device (VNI 4343, `proxy`: ARP answered
    // from the static neighbour entries), static neighbour + FDB entries for the remote side.
    let sides = [
        (&ha, &sa, "10.79.0.1", "10.81.0.1", "02:42:0a:51:00:01"),
        (&hb, &sb, "10.79.0.2", "10.81.0.2", "02:42:0a:51:00:02"),
    ];
    for (host, sbox, under, _, mac) in sides {
        ip(&["-n", host, "link", "add", "brx", "type", "bridge"])?;
        ip(&["-n", host, "link", "set", "brx", "up"])?;
        ip(&[
            "-n",
            host,
            "link",
            "add",
            "vx1",
            "type",
            "vxlan",
            "id",
            "4343",
            "dstport",
            "4789",
            "local",
            under,
            "nolearning",
            "proxy",
        ])?;
        ip(&[
            "-n", host, "link", "set", "vx1", "mtu", "1450", "master", "brx", "up",
        ])?;
        ip(&[
            "-n", host, "link", "add", "vs", "mtu", "1450", "type", "veth", "peer", "name", "eth0",
            "netns", sbox,
        ])?;
        ip(&["-n", host, "link", "set", "vs", "master", "brx", "up"])?;
        ip(&["-n", sbox, "link", "set", "eth0", "address", mac, "up"])?;
    }
    for (i, (host, sbox, _, over, _)) in sides.iter().enumerate() {
        let (_, _, peer_under, peer_over, peer_mac) = sides[1 - i];
        ip(&[
            "-n",
            sbox,
            "addr",
            "add",
            &format!("{over}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n",
            host,
            "neigh",
            "replace",
            peer_over,
            "lladdr",
            peer_mac,
            "dev",
            "vx1",
            "nud",
            "permanent",
        ])?;
        let out = Command::new("bridge")
            .args([
                "-n", host, "fdb", "append", peer_mac, "dev", "vx1", "dst", peer_under,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    // Alternate the three paths (overlay, plain, bridged, overlay, …) and keep each one's
    // best run: the cores are shared with other work.
    let (mut overlay, mut kernel, mut bridged) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2 {
        bridged.push(iperf(
            &Path::new("/run/netns").join(&sa),
            &Path::new("/run/netns").join(&sb),
            "10.81.0.1",
            secs,
        )?);
        overlay.push(iperf(&srv_ns, &cli_ns, &srv_ip, secs)?);
        kernel.push(iperf(
            &Path::new("/run/netns").join(&ha),
            &Path::new("/run/netns").join(&hb),
            "10.80.0.1",
            secs,
        )?);
    }
    let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (overlay_best, kernel_best) = (best(&overlay), best(&kernel));
    let bridged_best = best(&bridged);
    Ok(json!({
        "tool": "iperf3 TCP, 1 stream",
        "seconds": secs,
        "overlay_task_h2_to_h1_gbit_per_s": overlay.iter().map(|v| r3(*v)).collect::<Vec<_>>(),
        "hand_vxlan_gbit_per_s": kernel.iter().map(|v| r3(*v)).collect::<Vec<_>>(),
        "ratio_of_best_runs": r3(overlay_best / kernel_best),
        "hand_vxlan_bridged_like_overlay_gbit_per_s": bridged.iter().map(|v| r3(*v)).collect::<Vec<_>>(),
        "ratio_to_bridged_best_runs": r3(overlay_best / bridged_best),
        "overlay_task_eth0": task_link.trim(),
    }))
}
