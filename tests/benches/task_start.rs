//! Task start rate and daemon memory on a 3-host cluster (root only).
//!
//! 1. Resident memory (VmRSS) of the idle manager (h1) and an idle worker
//!    (h2) daemon, two seconds after the cluster formed.
//! 2. Task start: `service create --replicas 30 host sleep 1000`; the time
//!    from the create command until every task reports RUNNING (the RUNNING
//!    timestamps the workers put in the task status, and the first poll of
//!    `service ps` that sees all 30 running).
//! 3. VmRSS of h2's daemon with 50 tasks on it (a service pinned to h2).
//!
//! Prints one JSON object. Uses `MINI_BIN` if set (point it at a release
//! build for release figures), else builds the debug binary.
//!
//! `sudo -E MINI_BIN=target/release/mini cargo bench -p mini-tests --bench task_start`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mini_tests::{Cluster, Host, wait_for};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Waits until `service` has `n` RUNNING tasks; returns them.
fn wait_running(h: &Host, service: &str, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} running tasks of {service}"),
        Duration::from_secs(120),
        || {
            let out = h.ok_listed(&["service", "ps", service], "task").json();
            let all = out.as_array().cloned().unwrap_or_default();
            let running: Vec<Value> = all
                .iter()
                .filter(|t| t["desired_state"] == "Running" && t["current_state"] == "Running")
                .cloned()
                .collect();
            if running.len() == n {
                Ok(running)
            } else {
                Err(format!("{} of {n} running", running.len()))
            }
        },
    )
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("task_start: needs root (namespaces, mounts); skipped");
        return;
    }
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    std::thread::sleep(Duration::from_secs(2));
    let manager_pid = cluster.daemon_pid(1).expect("h1 daemon");
    let worker_pid = cluster.daemon_pid(2).expect("h2 daemon");
    let idle_manager = rss_kib(manager_pid);
    let idle_worker = rss_kib(worker_pid);

    let m = cluster.host(1);
    const REPLICAS: usize = 30;
    let replicas = REPLICAS.to_string();
    let t0 = now_ms();
    let polled = Instant::now();
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "start",
        "--replicas",
        &replicas,
        "host",
        "sleep",
        "1000",
    ]);
    let running = wait_running(&m, "start", REPLICAS);
    let seen_all_ms = polled.elapsed().as_secs_f64() * 1000.0;
    let mut at: Vec<i64> = running
        .iter()
        .map(|t| t["since_ms"].as_i64().unwrap_or(0) - t0)
        .collect();
    at.sort();
    let last_ms = *at.last().unwrap_or(&0);
    let first_ms = *at.first().unwrap_or(&0);
    m.ok(&["service", "rm", "start"]);

    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "fifty",
        "--replicas",
        "50",
        "--constraint",
        "node.hostname==h2",
        "host",
        "sleep",
        "1000",
    ]);
    wait_running(&m, "fifty", 50);
    std::thread::sleep(Duration::from_secs(1));
    let worker_50 = rss_kib(worker_pid);
    let manager_busy = rss_kib(manager_pid);

    let report = json!({
        "bench": "task_start_and_memory",
        "hosts": 3,
        "binary": mini_tests::binary::mini_binary().display().to_string(),
        "task_start": {
            "replicas": REPLICAS,
            "first_running_ms": first_ms,
            "all_running_ms": last_ms,
            "all_running_seen_by_poll_ms": (seen_all_ms * 10.0).round() / 10.0,
            "tasks_per_second": (REPLICAS as f64 / (last_ms.max(1) as f64 / 1000.0) * 10.0).round() / 10.0,
        },
        "rss_mib": {
            "idle_manager": mib(idle_manager),
            "idle_worker": mib(idle_worker),
            "worker_with_50_tasks": mib(worker_50),
            "manager_with_50_tasks_in_cluster": mib(manager_busy),
        },
    });
    println!("{report}");
}
