//! Cluster benchmark of service discovery and VIPs (issue #6). Root only.
//!
//! Starts a 3-host lab cluster with the test harness (real daemons, each host a network
//! namespace), an overlay network and a client task pinned to h1, then prints one JSON object:
//!
//! 1. `create_to_first_request_ms`: per sample, a new single-replica web service (busybox
//!    httpd answering with the task's hostname, kept off h1 by a constraint so it runs on
//!    another node than the client) is created with `mini service create`; the clock runs
//!    from just before that command to the first request that a loop inside the client task
//!    gets answered through the service's name: embedded DNS → VIP → nft map in the client's
//!    sandbox → VXLAN peer → the task. The loop retries every 10 ms with a 200 ms budget per
//!    request and prints its own wall clock on success (same machine, same clock).
//! 2. `scale_to_new_backend_ms`: the same service is scaled from 1 to 2 replicas; the clock
//!    runs from `mini service scale` until a request through the VIP is answered by the new
//!    task (slot 2): scheduling, task start, gossip, and the backend change in the client's
//!    sandbox.
//!
//! `sudo -E MINI_BIN=target/release/mini target/release/mesh_bench --samples 10`

use std::time::{SystemTime, UNIX_EPOCH};

use mini_tests::{Cluster, Host, wait_for};
use serde_json::{Value, json};

const NETWORK: &str = "meshnet";

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// p-th percentile (nearest rank) of `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn summary(v: &[f64]) -> Value {
    json!({
        "n": v.len(),
        "p50": round1(pct(v, 50.0)),
        "p90": round1(pct(v, 90.0)),
        "max": round1(v.iter().copied().fold(f64::NAN, f64::max)),
        "samples": v.iter().map(|x| round1(*x)).collect::<Vec<_>>(),
    })
}

fn samples_arg() -> usize {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.as_slice() {
        [] => 10,
        [flag, n] if flag == "--samples" => n
            .parse()
            .unwrap_or_else(|_| panic!("--samples wants a number, not {n:?}")),
        _ => {
            eprintln!("mesh_bench [--samples N]");
            std::process::exit(2);
        }
    }
}

/// A loop run inside the client task: GET `/` from `name:80` until the body starts with
/// `want`, then print the wall clock in ms. Gives up after 30 s (prints nothing).
fn until_answer(name: &str, want: &str) -> String {
    format!(
        "end=$(( $(date +%s) + 30 )); \
         while [ $(date +%s) -lt $end ]; do \
           body=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 0.2 busybox nc {name} 80 2>/dev/null | tail -n 1); \
           case \"$body\" in {want}*) date +%s%3N; exit 0;; esac; \
           sleep 0.01; \
         done; exit 1"
    )
}

fn web_args(name: &str) -> Vec<String> {
    [
        "service",
        "create",
        "--name",
        name,
        "--network",
        NETWORK,
        "--constraint",
        "node.hostname!=h1",
        "host",
        "sh",
        "-c",
        "mount -t tmpfs web /mnt && hostname > /mnt/index.html && exec busybox httpd -f -p 80 -h /mnt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn running_tasks(h: &Host, service: &str) -> Vec<Value> {
    let out = h.mini(&["service", "ps", service, "--format", "json"]);
    out.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["desired_state"] == "Running" && t["current_state"] == "Running")
        .collect()
}

fn main() {
    let samples = samples_arg();
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.202.0.0/16",
        NETWORK,
    ]);
    m.ok(&[
        "service",
        "create",
        "--name",
        "client",
        "--network",
        NETWORK,
        "--constraint",
        "node.hostname==h1",
        "host",
        "sleep",
        "1000000",
    ]);
    wait_for(
        "the client task running",
        std::time::Duration::from_secs(30),
        || {
            if running_tasks(&m, "client").len() == 1 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    );

    let mut create = Vec::new();
    let mut scale = Vec::new();
    for i in 0..samples {
        let name = format!("w{i}");
        let args = web_args(&name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t0 = wall_ms();
        m.ok(&args);
        let out = m.ok(&["exec", "client.1", "sh", "-c", &until_answer(&name, &name)]);
        let at: f64 =
            out.stdout.trim().parse().unwrap_or_else(|_| {
                panic!("{name}: no answer through the VIP within 30 s: {out:?}")
            });
        create.push(at - t0);

        let first = running_tasks(&m, &name);
        let old = first
            .first()
            .and_then(|t| t["name"].as_str())
            .unwrap_or_default()
            .to_string();
        let t0 = wall_ms();
        m.ok(&["service", "scale", &format!("{name}=2")]);
        // The new replica is slot 2: its hostname is `<name>.2.<task id>`.
        let out = m.ok(&[
            "exec",
            "client.1",
            "sh",
            "-c",
            &until_answer(&name, &format!("{name}.2.")),
        ]);
        let at: f64 = out.stdout.trim().parse().unwrap_or_else(|_| {
            panic!("{name}: the new replica got no request within 30 s (old {old}): {out:?}")
        });
        scale.push(at - t0);
        m.ok(&["service", "rm", &name]);
        eprintln!(
            "{name}: create → first answer {:.0} ms, scale → new backend answers {:.0} ms",
            create.last().unwrap(),
            scale.last().unwrap()
        );
    }
    let report = json!({
        "hosts": 3,
        "create_to_first_request_ms": summary(&create),
        "scale_to_new_backend_ms": summary(&scale),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
