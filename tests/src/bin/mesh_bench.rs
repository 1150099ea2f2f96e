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

use mini_tests::Cluster;
use mini_tests::bench::{self, wall_ms};
use mini_tests::web::HOSTNAME_SERVER;
use serde_json::{Value, json};

const NETWORK: &str = "meshnet";

/// The bench's summary of `v`, with the samples themselves.
fn summary(v: &[f64]) -> Value {
    let mut out = bench::summary(v);
    out["samples"] = json!(v.iter().map(|x| bench::round1(*x)).collect::<Vec<_>>());
    out
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

fn web_args(name: &str) -> Vec<&str> {
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--network",
        NETWORK,
        "--constraint",
        "node.hostname!=h1",
    ];
    args.extend_from_slice(HOSTNAME_SERVER);
    args
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
        "--detach",
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
    m.wait_running("client", 1);

    let mut create = Vec::new();
    let mut scale = Vec::new();
    for i in 0..samples {
        let name = format!("w{i}");
        let args = web_args(&name);
        let t0 = wall_ms();
        m.ok(&args);
        let out = m.ok(&["exec", "client.1", "sh", "-c", &until_answer(&name, &name)]);
        let at: f64 =
            out.stdout.trim().parse().unwrap_or_else(|_| {
                panic!("{name}: no answer through the VIP within 30 s: {out:?}")
            });
        create.push(at - t0);

        let first = m.running_tasks(&name);
        let old = first
            .first()
            .and_then(|t| t["name"].as_str())
            .unwrap_or_default()
            .to_string();
        let t0 = wall_ms();
        m.ok(&["service", "scale", "--detach", &format!("{name}=2")]);
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
