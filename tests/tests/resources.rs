//! `--reserve-cpu` / `--reserve-memory` (issue #13) on a 2-host cluster, with
//! `host` tasks (root only): nodes report their capacity in `node inspect`, a
//! reservation no node can hold leaves the task pending with Docker's reason,
//! `service update` to a smaller one lets it run, and reservations add up on a
//! node so a third task that does not fit stays pending.

use std::time::Duration;

use mini_tests::check::{field, summary};
use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// The tasks of `service` meant to run (not history).
fn live(h: &Host, service: &str) -> Vec<Value> {
    h.tasks(service)
        .into_iter()
        .filter(|t| field(t, "desired_state") == "Running")
        .collect()
}

#[test]
fn reservations_are_fitted_into_what_nodes_report() {
    let cluster = Cluster::start(2);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);

    // Every node reports its CPUs and memory, as Docker's Description.Resources.
    let nodes = m.ok(&["node", "inspect", "h1", "h2"]).json();
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let mut capacity = Vec::new();
    for n in &nodes {
        let r = &n["resources"];
        let (cpus, memory) = (r["NanoCPUs"].as_i64(), r["MemoryBytes"].as_i64());
        let (Some(cpus), Some(memory)) = (cpus, memory) else {
            panic!("node without resources: {n}");
        };
        assert!(cpus >= 1_000_000_000 && cpus % 1_000_000_000 == 0, "{n}");
        assert!(memory > 64 << 20, "{n}");
        capacity.push((cpus, memory));
    }
    let most_memory = capacity.iter().map(|c| c.1).max().unwrap_or_default();
    let fewest_cpus = capacity.iter().map(|c| c.0).min().unwrap_or_default();

    // More memory than any node has: pending, with swarmkit's words.
    let too_much = format!("{}", most_memory + (1 << 30));
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "greedy",
        "--reserve-memory",
        &too_much,
        "host",
        "sleep",
        "100000",
    ]);
    let pending = wait_for("greedy.1 pending for want of resources", DEADLINE, || {
        let all = m.tasks("greedy");
        match all.as_slice() {
            [t] if field(t, "current_state") == "Pending"
                && field(t, "message")
                    == "no suitable node (insufficient resources on 2 nodes)" =>
            {
                Ok(t.clone())
            }
            _ => Err(summary(&all)),
        }
    });
    let table = m.ok(&["service", "ps", "--no-trunc", "greedy"]).stdout;
    assert!(
        table.contains("insufficient resources on 2 nodes"),
        "{pending}\n{table}"
    );
    let inspect = m.ok(&["service", "inspect", "greedy"]).json();
    assert_eq!(
        inspect[0]["resources"]["Reservations"]["MemoryBytes"].as_i64(),
        Some(most_memory + (1 << 30)),
        "{inspect}"
    );

    // Smaller reservations, three replicas, each reserving more than half of
    // a node's CPUs: one per node runs, the third waits with the same reason
    // (`--detach`: the update never converges, as Docker's would not).
    let cpus = fewest_cpus / 4 * 3;
    let cpus_flag = format!("{}", cpus as f64 / 1e9);
    m.ok(&[
        "service",
        "update",
        "--detach",
        "--reserve-memory",
        "64MiB",
        "--reserve-cpu",
        &cpus_flag,
        "--replicas",
        "3",
        "greedy",
    ]);
    let inspect = m.ok(&["service", "inspect", "greedy"]).json();
    let reservations = &inspect[0]["resources"]["Reservations"];
    assert_eq!(
        (
            reservations["NanoCPUs"].as_i64(),
            reservations["MemoryBytes"].as_i64()
        ),
        (Some(cpus), Some(64 << 20)),
        "{inspect}"
    );
    let settled = wait_for(
        "two greedy tasks running on two nodes, the third pending",
        DEADLINE,
        || {
            let all = live(&m, "greedy");
            let running: Vec<&Value> = all
                .iter()
                .filter(|t| field(t, "current_state") == "Running")
                .collect();
            let waiting: Vec<&Value> = all
                .iter()
                .filter(|t| {
                    field(t, "current_state") == "Pending"
                        && field(t, "message")
                            == "no suitable node (insufficient resources on 2 nodes)"
                })
                .collect();
            let mut nodes: Vec<&str> = running.iter().map(|t| field(t, "node")).collect();
            nodes.sort_unstable();
            if running.len() == 2 && waiting.len() == 1 && nodes == ["h1", "h2"] {
                Ok(all.clone())
            } else {
                Err(summary(&m.tasks("greedy")))
            }
        },
    );
    // The pending task stays pending (nothing frees room).
    std::thread::sleep(Duration::from_secs(2));
    let again = live(&m, "greedy");
    assert_eq!(
        again
            .iter()
            .filter(|t| field(t, "current_state") == "Running")
            .count(),
        2,
        "{}\nbefore: {}",
        summary(&again),
        summary(&settled)
    );

    // Scaling down frees a node's reservation; no reservation places anywhere.
    m.ok(&["service", "scale", "--detach", "greedy=2"]);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "modest",
        "--replicas",
        "2",
        "host",
        "sleep",
        "100000",
    ]);
    wait_for("modest running beside greedy", DEADLINE, || {
        let all = live(&m, "modest");
        if all.len() == 2 && all.iter().all(|t| field(t, "current_state") == "Running") {
            Ok(())
        } else {
            Err(summary(&all))
        }
    });
    wait_for("greedy at two running, nothing pending", DEADLINE, || {
        let all = live(&m, "greedy");
        if all.len() == 2 && all.iter().all(|t| field(t, "current_state") == "Running") {
            Ok(())
        } else {
            Err(summary(&m.tasks("greedy")))
        }
    });
}
