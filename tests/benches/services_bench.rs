//! How Swarm operators' day-to-day commands perform on a 3-host cluster (root only), issue #14:
//!
//! 1. `stack deploy` of a 50-service compose file (`host` image, one replica each): seconds
//!    for the deploy command, then until all 50 tasks run, then a redeploy with no change.
//! 2. A rolling update of 30 tasks with `--update-parallelism 5` and a healthcheck: seconds
//!    from `service update` until `service inspect` says the update completed.
//! 3. Secret delivery: from `service create --secret` to the moment the task read the secret
//!    (the task prints its clock when `cat /run/secrets/...` succeeds), 10 services, against the
//!    same measure for a service without a secret.
//!
//! Prints one JSON object. Uses `MINI_BIN` if set (point it at a release build for release
//! figures), else builds the debug binary.
//!
//! `sudo -E MINI_BIN=target/release/mini cargo bench -p mini-tests --bench services_bench`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mini_tests::bench::{round1, summary};
use mini_tests::{Cluster, Host, wait_for};
use serde_json::json;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn secs(since: Instant) -> f64 {
    round1(since.elapsed().as_secs_f64())
}

/// Waits until the services whose names start with `prefix` have `n` running tasks in all.
fn wait_all_running(h: &Host, n: usize) {
    wait_for(
        &format!("{n} running tasks"),
        Duration::from_secs(300),
        || {
            // REPLICAS is `running/desired`.
            let out = h.ok(&["service", "ls", "--format", "{{.Replicas}}"]).stdout;
            let running: u64 = out
                .lines()
                .filter_map(|l| l.split('/').next()?.parse::<u64>().ok())
                .sum();
            if running as usize >= n {
                Ok(())
            } else {
                Err(format!("{running} of {n} running"))
            }
        },
    );
}

fn stack_deploy(cluster: &Cluster) -> serde_json::Value {
    let h = cluster.host(1);
    let mut compose = String::from("version: \"3.8\"\nservices:\n");
    for i in 0..50 {
        compose.push_str(&format!(
            "  s{i:02}:\n    image: host\n    command: [\"sleep\", \"1d\"]\n    deploy:\n      replicas: 1\n"
        ));
    }
    let file = cluster.dir().join("bench-stack.yml");
    std::fs::write(&file, compose).expect("write compose file");
    let file = file.display().to_string();
    let t = Instant::now();
    h.ok(&["stack", "deploy", "-c", &file, "bench"]);
    let deploy_s = secs(t);
    wait_all_running(&h, 50);
    let running_s = secs(t);
    let t = Instant::now();
    let out = h.ok(&["stack", "deploy", "-c", &file, "bench"]).stdout;
    let redeploy_s = secs(t);
    let updated = out
        .lines()
        .filter(|l| l.starts_with("Updating service"))
        .count();
    h.ok(&["stack", "rm", "bench"]);
    json!({
        "services": 50,
        "deploy_command_s": deploy_s,
        "all_running_s": running_s,
        "no_change_redeploy_s": redeploy_s,
        "services_updated_by_no_change_redeploy": updated,
    })
}

fn rolling_update(cluster: &Cluster) -> serde_json::Value {
    let h = cluster.host(1);
    h.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "roll",
        "--replicas",
        "30",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "--update-parallelism",
        "5",
        "host",
        "sleep",
        "1d",
    ]);
    wait_all_running(&h, 30);
    let t = Instant::now();
    h.ok(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "ROUND=2",
        "roll",
    ]);
    wait_for(
        "the rolling update to complete",
        Duration::from_secs(600),
        || {
            let inspect = h.ok(&["service", "inspect", "roll"]).json();
            let service = inspect
                .as_array()
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or(inspect);
            let state = service["UpdateStatus"]["State"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state == "completed" {
                Ok(())
            } else {
                Err(format!("update state {state:?}"))
            }
        },
    );
    let completed_s = secs(t);
    h.ok(&["service", "rm", "roll"]);
    json!({ "tasks": 30, "parallelism": 5, "healthcheck_interval": "1s", "completed_s": completed_s })
}

/// Milliseconds from `service create` to the task's first read of what it was given: the
/// task prints its clock (ns) once `cat` of `path` succeeds.
fn delivery_ms(h: &Host, name: &str, extra: &[&str], path: &str) -> f64 {
    let script = format!("cat {path} >/dev/null && date +%s%N; exec sleep 1d");
    let mut args = vec!["service", "create", "--detach", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["host", "sh", "-c", &script]);
    let t0 = now_ns();
    h.ok(&args);
    let read_ns: i128 = wait_for(
        "the task's clock in its logs",
        Duration::from_secs(60),
        || {
            let out = h.ok(&["service", "logs", name]).stdout;
            out.lines()
                .find_map(|l| l.split_whitespace().last()?.parse::<i128>().ok())
                .ok_or(out)
        },
    );
    h.ok(&["service", "rm", name]);
    ((read_ns - t0) as f64 / 1e6 * 10.0).round() / 10.0
}

fn secret_delivery(cluster: &Cluster) -> serde_json::Value {
    let h = cluster.host(1);
    let mut with_secret = Vec::new();
    let mut without = Vec::new();
    for i in 0..10 {
        let secret = format!("bench-secret-{i}");
        let out = h.mini_with_input(&["secret", "create", &secret, "-"], b"s3cr3t");
        assert!(out.success, "secret create: {out:?}");
        with_secret.push(delivery_ms(
            &h,
            &format!("sec{i}"),
            &["--secret", &secret],
            &format!("/run/secrets/{secret}"),
        ));
        without.push(delivery_ms(&h, &format!("plain{i}"), &[], "/etc/hostname"));
        h.ok(&["secret", "rm", &secret]);
    }
    json!({
        "runs": 10,
        "create_to_secret_readable_ms": summary(&with_secret),
        "create_to_task_reading_without_secret_ms": summary(&without),
    })
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("services_bench: needs root (namespaces, mounts); skipped");
        return;
    }
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    let report = json!({
        "bench": "services",
        "hosts": 3,
        "binary": mini_tests::binary::mini_binary().display().to_string(),
        "secret_delivery": secret_delivery(&cluster),
        "rolling_update": rolling_update(&cluster),
        "stack_deploy": stack_deploy(&cluster),
    });
    println!("{report}");
}
