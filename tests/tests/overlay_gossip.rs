//! Cross-host overlay traffic with peers learned by gossip, and no stale
//! peers after a host dies (issue #5). Root only.

use std::time::Duration;

use mini_tests::{Cluster, Host, cluster::exec_in_netns, wait_for};
use serde_json::Value;

/// (task name, node hostname, overlay IP, task id) of the service's running tasks.
fn running(host: &Host, service: &str) -> Vec<(String, String, String, String)> {
    host.tasks(service)
        .iter()
        .filter(|t| t["current_state"] == "Running" && t["desired_state"] == "Running")
        .map(|t| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let ip = s(&t["networks"][0]["addr"])
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (s(&t["name"]), s(&t["node"]), ip, s(&t["id"]))
        })
        .collect()
}

fn wait_running(host: &Host, service: &str, n: usize) -> Vec<(String, String, String, String)> {
    wait_for(
        &format!("{n} running tasks of {service}"),
        Duration::from_secs(30),
        || {
            let tasks = running(host, service);
            if tasks.len() == n {
                Ok(tasks)
            } else {
                Err(format!("{tasks:?}"))
            }
        },
    )
}

/// Every task pings every other task's overlay address from its sandbox.
fn all_pairs_ping(cluster: &Cluster, tasks: &[(String, String, String, String)]) {
    for (name, node, _, id) in tasks {
        let k: usize = node.trim_start_matches('h').parse().expect("host number");
        let sandbox = cluster.host(k).run_dir().join("netns").join(&id[..12]);
        for (other, _, ip, _) in tasks.iter().filter(|t| &t.0 != name) {
            // The first packets may race the peer entry on a brand-new task: retry with a deadline.
            wait_for(
                &format!("{name} to ping {other} ({ip})"),
                Duration::from_secs(10),
                || {
                    let out = exec_in_netns(&sandbox, &["ping", "-c", "1", "-W", "1", ip]);
                    if out.success {
                        Ok(())
                    } else {
                        Err(out.stdout + &out.stderr)
                    }
                },
            );
        }
    }
}

/// `network check` says every node's kernel peers equal the live endpoints.
fn wait_consistent(host: &Host, network: &str) -> String {
    wait_for(
        &format!("`network check {network}` to pass"),
        Duration::from_secs(15),
        || {
            let out = host.mini(&["network", "check", network]);
            if out.success {
                Ok(out.stdout)
            } else {
                Err(out.stdout + &out.stderr)
            }
        },
    )
}

#[test]
fn overlay_spans_hosts_and_forgets_a_dead_host() {
    let mut cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    let manager = cluster.host(1);
    manager.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "192.168.200.0/24",
        "demonet",
    ]);
    manager.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "demo",
        "--replicas",
        "3",
        "--network",
        "demonet",
        "host",
        "sleep",
        "100000",
    ]);
    let tasks = wait_running(&manager, "demo", 3);
    let mut nodes: Vec<&str> = tasks.iter().map(|t| t.1.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["h1", "h2", "h3"], "one task per host");
    all_pairs_ping(&cluster, &tasks);
    wait_consistent(&manager, "demonet");

    // Scale up: the new tasks are reachable from every other task.
    manager.ok(&["service", "scale", "--detach", "demo=6"]);
    let tasks = wait_running(&manager, "demo", 6);
    all_pairs_ping(&cluster, &tasks);
    let report = wait_consistent(&manager, "demonet");
    assert!(
        report.lines().filter(|l| l.contains(" ok ")).count() == 3,
        "{report}"
    );

    // Host 3 dies with its link: the others drop its endpoints from their kernels,
    // their service VIP backends and their DNS answers.
    let dead_vtep = cluster.addr(3);
    let dead_ips: Vec<String> = tasks
        .iter()
        .filter(|t| t.1 == "h3")
        .map(|t| t.2.clone())
        .collect();
    assert!(!dead_ips.is_empty(), "no task on h3: {tasks:?}");
    let asker = tasks
        .iter()
        .find(|t| t.1 == "h1")
        .map(|t| t.0.clone())
        .expect("a task on h1");
    cluster.kill_host(3);
    let manager = cluster.host(1);
    wait_for(
        "h1 and h2 to hold no peer entry of h3",
        Duration::from_secs(10),
        || {
            let out = manager.mini(&["network", "inspect", "--verbose", "demonet"]);
            let views = out.json();
            let peers = views[0]["peers"].as_array().cloned().unwrap_or_default();
            let stale: Vec<&Value> = peers
                .iter()
                .filter(|n| n["node"] != "h3")
                .flat_map(|n| n["kernel"].as_array().into_iter().flatten())
                .filter(|p| p["vtep"] == dead_vtep.as_str())
                .collect();
            if stale.is_empty() && peers.iter().any(|n| n["node"] == "h1") {
                Ok(())
            } else {
                Err(format!("stale: {stale:?}"))
            }
        },
    );
    wait_for(
        "h3's tasks to leave the VIP backends and DNS",
        Duration::from_secs(10),
        || {
            let views = manager
                .ok(&["network", "inspect", "--verbose", "demonet"])
                .json();
            let backends: Vec<String> = views[0]["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["node"] == "h1")
                .flat_map(|n| n["services"].as_array().into_iter().flatten())
                .flat_map(|s| s["backends"].as_array().into_iter().flatten())
                .filter_map(|b| b.as_str().map(str::to_string))
                .collect();
            let dns = manager
                .mini(&[
                    "exec",
                    &asker,
                    "busybox",
                    "nslookup",
                    "tasks.demo",
                    "127.0.0.11",
                ])
                .stdout;
            let stale: Vec<&String> = dead_ips
                .iter()
                .filter(|ip| backends.contains(ip) || dns.contains(ip.as_str()))
                .collect();
            if stale.is_empty() && !backends.is_empty() {
                Ok(())
            } else {
                Err(format!("stale {stale:?}; backends {backends:?}; dns {dns}"))
            }
        },
    );
    // Its tasks are replaced on h1/h2 and reachable; every node's kernel matches.
    let tasks = wait_for(
        "6 running tasks, none on h3",
        Duration::from_secs(30),
        || {
            let tasks = running(&manager, "demo");
            if tasks.len() == 6 && tasks.iter().all(|t| t.1 != "h3") {
                Ok(tasks)
            } else {
                Err(format!("{tasks:?}"))
            }
        },
    );
    all_pairs_ping(&cluster, &tasks);
    wait_for(
        "network check on the survivors",
        Duration::from_secs(15),
        || {
            let out = manager.mini(&["network", "check", "demonet"]);
            // h3 is down, so it is not asked: the check covers the ready nodes.
            if out.success && !out.stdout.contains("h3") {
                Ok(())
            } else {
                Err(out.stdout + &out.stderr)
            }
        },
    );
}
