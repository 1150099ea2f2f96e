//! Assignment → running of image tasks (runc) with the image's layers on
//! disk, on a 3-host cluster (root only; needs runc and busybox-static).
//!
//! The worker logs, for every task, the time from the assignment reaching
//! its executor to the task being reported RUNNING (`task running ...
//! start_ms=`): image resolved, sandbox namespace and interfaces made,
//! embedded DNS up, overlayfs root mounted, OCI bundle written, `runc run`
//! started and the container's process created, endpoint published.
//!
//! 1. Sequential: 30 tasks started one at a time on h2 (`service scale`,
//!    waiting for each to run): uncontended latency, p50/p99.
//! 2. Burst: 30 tasks at once over 3 hosts: p50/p99 under load, and the wall
//!    time from `service create` until all run.
//!
//! 3. Dense: 50 image tasks on h2 — the daemon's resident memory (VmRSS) and
//!    the disk each extra task uses (its container dir: upper and work dirs,
//!    bundle, `config.json`; the image's layers are shared).
//!
//! 1 and 2 are measured for image `host` too, for comparison. Prints one JSON object.
//!
//! `sudo -E cargo bench -p mini-tests --bench image_task_start`

use std::time::{Duration, Instant};

use mini_tests::bench::summary;
use mini_tests::image::install_busybox;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::{Value, json};

/// `start_ms` of the `task running` lines of `runtime` in a daemon log.
fn start_times(log: &str, runtime: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("task running"))
        .filter(|l| {
            l.contains(&format!("runtime=\"{runtime}\""))
                || l.contains(&format!("runtime={runtime} "))
        })
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("start_ms="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

fn running(h: &Host, service: &str) -> usize {
    h.running_tasks(service).len()
}

fn wait_n(h: &Host, service: &str, n: usize) {
    wait_for(
        &format!("{n} running tasks of {service}"),
        Duration::from_secs(180),
        || {
            let r = running(h, service);
            if r == n {
                Ok(())
            } else {
                Err(format!("{r} running"))
            }
        },
    );
}

fn measure(cluster: &Cluster, image: &[&str], runtime: &str, tag: &str) -> Value {
    let m = cluster.host(1);
    let seq = format!("seq-{tag}");
    let mut create = vec![
        "service",
        "create",
        "--detach",
        "--name",
        &seq,
        "--replicas",
        "0",
        "--constraint",
        "node.hostname==h2",
    ];
    create.extend_from_slice(image);
    m.ok(&create);
    let before = start_times(&cluster.host(2).log(), runtime).len();
    for n in 1..=30usize {
        m.ok(&["service", "scale", "--detach", &format!("{seq}={n}")]);
        wait_n(&m, &seq, n);
    }
    let sequential: Vec<f64> = start_times(&cluster.host(2).log(), runtime)[before..].to_vec();
    m.ok(&["service", "rm", &seq]);
    std::thread::sleep(Duration::from_secs(2));

    let burst = format!("burst-{tag}");
    let logs_before: Vec<usize> = (1..=3)
        .map(|k| start_times(&cluster.host(k).log(), runtime).len())
        .collect();
    let mut create = vec![
        "service",
        "create",
        "--detach",
        "--name",
        &burst,
        "--replicas",
        "30",
    ];
    create.extend_from_slice(image);
    let t0 = Instant::now();
    m.ok(&create);
    wait_n(&m, &burst, 30);
    let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut burst_times = Vec::new();
    for k in 1..=3 {
        burst_times
            .extend_from_slice(&start_times(&cluster.host(k).log(), runtime)[logs_before[k - 1]..]);
    }
    m.ok(&["service", "rm", &burst]);
    std::thread::sleep(Duration::from_secs(2));
    json!({
        "sequential_assignment_to_running_ms": summary(&sequential),
        "burst_30_assignment_to_running_ms": summary(&burst_times),
        "burst_30_create_to_all_running_seen_ms": (wall_ms * 10.0).round() / 10.0,
    })
}

/// VmRSS of process `pid`, in MiB.
fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (kib / 1024.0 * 10.0).round() / 10.0
}

/// Disk used under `dir` in KiB (`du -skx`: the task rootfs mounts are not followed).
fn du_kib(dir: &std::path::Path) -> f64 {
    let out = std::process::Command::new("du")
        .arg("-skx")
        .arg(dir)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// 50 busybox tasks on h2: the worker daemon's VmRSS and the disk per task.
fn dense(cluster: &Cluster) -> Value {
    let m = cluster.host(1);
    let h2 = cluster.host(2);
    let pid = cluster.daemon_pid(2).expect("h2's daemon");
    let idle_rss = rss_mib(pid);
    let state = h2.state_dir();
    let state_before = du_kib(&state);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "dense",
        "--replicas",
        "50",
        "--constraint",
        "node.hostname==h2",
        "busybox",
        "sleep",
        "100000",
    ]);
    wait_n(&m, "dense", 50);
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_mib(pid);
    let manager_rss = cluster.daemon_pid(1).map(rss_mib);
    let containers = du_kib(&state.join("containers"));
    let state_after = du_kib(&state);
    m.ok(&["service", "rm", "dense"]);
    json!({
        "tasks": 50,
        "worker_vmrss_idle_mib": idle_rss,
        "worker_vmrss_with_50_mib": rss,
        "manager_vmrss_mib": manager_rss,
        "containers_dir_kib_per_task": (containers / 50.0 * 10.0).round() / 10.0,
        "state_dir_growth_kib_per_task": ((state_after - state_before) / 50.0 * 10.0).round() / 10.0,
    })
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("image_task_start: needs root (namespaces, mounts, runc); skipped");
        return;
    }
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    for k in 1..=3 {
        install_busybox(&cluster.host(k).state_dir());
    }
    let image = measure(&cluster, &["busybox", "sleep", "100000"], "runc", "img");
    let host = measure(&cluster, &["host", "sleep", "100000"], "host", "host");
    // Last: tearing down 50 containers would delay the starts measured above.
    let dense = dense(&cluster);
    println!(
        "{}",
        json!({
            "bench": "image_task_start",
            "hosts": 3,
            "binary": mini_tests::binary::mini_binary().display().to_string(),
            "runc": image,
            "host": host,
            "dense_image_tasks_on_h2": dense,
        })
    );
}
