//! Placement and jobs (issue #14, items 4 and 5) on a 3-host cluster with `host` tasks
//! (root only). Each daemon runs with `--label rack=r<K>`. Checked as a Swarm user would:
//! engine labels in `node inspect` and in constraints; node labels from `node update` steering
//! tasks, an unsatisfiable constraint pending with Docker's words until a label makes it
//! placeable; `--placement-pref spread=node.labels.zone` splitting replicas evenly over zones;
//! `--replicas-max-per-node` leaving the task that does not fit pending with its reason; a
//! replicated job running to its completions and not again, a global job once per node, an
//! update running a job again, and what is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use mini_tests::check::{field, summary};
use mini_tests::cluster::HOST_INDEX;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// Running tasks of `service` per node hostname, once there are exactly `n` of them and no
/// other task of the service is meant to run.
fn wait_spread(h: &Host, service: &str, n: usize) -> BTreeMap<String, usize> {
    wait_for(&format!("{n} running tasks of {service}"), DEADLINE, || {
        let all = h.tasks(service);
        let live: Vec<&Value> = all
            .iter()
            .filter(|t| field(t, "desired_state") == "Running")
            .collect();
        let running = live
            .iter()
            .filter(|t| field(t, "current_state") == "Running")
            .count();
        if live.len() == n && running == n {
            let mut per_node = BTreeMap::new();
            for t in live {
                *per_node.entry(field(t, "node").to_owned()).or_insert(0) += 1;
            }
            Ok(per_node)
        } else {
            Err(summary(&all))
        }
    })
}

/// The line of `service ls` for `name`, split on runs of 2+ spaces.
fn ls_row(h: &Host, name: &str) -> Vec<String> {
    let table = h.ok(&["service", "ls"]).stdout;
    table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| panic!("{name} not in service ls:\n{table}"))
}

#[test]
fn labels_constraints_preferences_and_jobs_place_tasks_as_swarm_does() {
    let label = format!("rack=r{HOST_INDEX}");
    let cluster = Cluster::start_with(3, &["--label", &label]);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);

    // Engine labels and the platform, as the node reported them.
    let h2 = m.ok(&["node", "inspect", "h2"]).json();
    let description = &h2[0]["Description"];
    assert_eq!(description["Engine"]["Labels"]["rack"], "r2", "{h2}");
    assert_eq!(description["Platform"]["OS"], "linux", "{h2}");
    assert_eq!(
        description["Platform"]["Architecture"],
        std::env::consts::ARCH,
        "{h2}"
    );
    let pretty = m.ok(&["node", "inspect", "--pretty", "h2"]).stdout;
    assert!(
        pretty.contains("Engine Labels:\n - rack=r2") && pretty.contains("Hostname:\t\th2"),
        "{pretty}"
    );

    // An engine label in a constraint.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "racked",
        "--replicas",
        "2",
        "--constraint",
        "engine.labels.rack==r3",
        "host",
        "sleep",
        "100000",
    ]);
    assert_eq!(
        wait_spread(&m, "racked", 2),
        BTreeMap::from([("h3".to_owned(), 2)])
    );

    // A bad constraint is refused and creates nothing.
    let err = m.fails(&[
        "service",
        "create",
        "--detach",
        "--name",
        "bad",
        "--constraint",
        "node.zone==x",
        "host",
        "true",
    ]);
    assert!(err.contains("unknown key \"node.zone\""), "{err}");
    assert!(
        !m.ok(&["service", "ls"]).stdout.contains(" bad "),
        "a refused service must not exist"
    );

    // No node has zone=east yet: pending with swarmkit's words; a label later places it.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "zoned",
        "--constraint",
        "node.labels.zone==east",
        "host",
        "sleep",
        "100000",
    ]);
    let reason = "no suitable node (scheduling constraints not satisfied on 3 nodes)";
    wait_for(
        "zoned.1 pending with the constraint reason",
        DEADLINE,
        || {
            let all = m.tasks("zoned");
            match all.as_slice() {
                [t] if field(t, "current_state") == "Pending" && field(t, "message") == reason => {
                    Ok(())
                }
                _ => Err(summary(&all)),
            }
        },
    );
    // The table shows the ERROR column cut at 30 characters, as Docker does without
    // --no-trunc; with it, the whole reason.
    let table = m.ok(&["service", "ps", "zoned"]).stdout;
    assert!(
        table.contains("\"no suitable node (scheduling …\""),
        "{table}"
    );
    let table = m.ok(&["service", "ps", "--no-trunc", "zoned"]).stdout;
    assert!(
        table.contains("\"no suitable node (scheduling constraints not satisfied on"),
        "{table}"
    );
    m.ok(&["node", "update", "--label-add", "zone=east", "h2"]);
    let labels = m.ok(&["node", "inspect", "h2"]).json()[0]["Spec"]["Labels"].clone();
    assert_eq!(labels["zone"], "east", "{labels}");
    assert_eq!(
        wait_spread(&m, "zoned", 1),
        BTreeMap::from([("h2".to_owned(), 1)])
    );
    let err = m.fails(&["node", "update", "--label-rm", "nope", "h2"]);
    assert!(
        err.contains("key nope doesn't exist in node's labels"),
        "{err}"
    );

    // Spread over zones: h1 and h2 are east, h3 (already running the 2 racked tasks) is
    // west. Plain spread would put the 4th task on h1 (fewest tasks): 3 east, 1 west; the
    // preference puts 2 in each zone, so h3 takes 2.
    m.ok(&["node", "update", "--label-add", "zone=east", "h1"]);
    m.ok(&["node", "update", "--label-add", "zone=west", "h3"]);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "spread",
        "--replicas",
        "4",
        "--placement-pref",
        "spread=node.labels.zone",
        "host",
        "sleep",
        "100000",
    ]);
    let per_node = wait_spread(&m, "spread", 4);
    let west = per_node.get("h3").copied().unwrap_or(0);
    let east = per_node.get("h1").copied().unwrap_or(0) + per_node.get("h2").copied().unwrap_or(0);
    assert_eq!((east, west), (2, 2), "per node: {per_node:?}");
    let inspect = m.ok(&["service", "inspect", "spread"]).json();
    assert_eq!(
        inspect[0]["Placement"]["Preferences"][0]["Spread"]["SpreadDescriptor"], "node.labels.zone",
        "{inspect}"
    );

    // At most one per node: 3 run, the 4th waits with Docker's reason.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "capped",
        "--replicas",
        "4",
        "--replicas-max-per-node",
        "1",
        "host",
        "sleep",
        "100000",
    ]);
    let limit = "no suitable node (max replicas per node limit exceed)";
    wait_for(
        "3 capped tasks running, one per node, 1 pending",
        DEADLINE,
        || {
            let all = m.tasks("capped");
            let mut nodes: Vec<&str> = all
                .iter()
                .filter(|t| field(t, "current_state") == "Running")
                .map(|t| field(t, "node"))
                .collect();
            nodes.sort_unstable();
            let pending = all
                .iter()
                .filter(|t| field(t, "current_state") == "Pending" && field(t, "message") == limit)
                .count();
            if nodes == ["h1", "h2", "h3"] && pending == 1 {
                Ok(())
            } else {
                Err(summary(&all))
            }
        },
    );
    assert_eq!(ls_row(&m, "capped")[3], "3/4 (max 1 per node)");

    // A replicated job of 3 completions: every task Complete, none started again.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "batch",
        "--mode",
        "replicated-job",
        "--replicas",
        "3",
        "host",
        "true",
    ]);
    let complete = |service: &str, n: usize| {
        wait_for(
            &format!("{n} completed tasks of {service}"),
            DEADLINE,
            || {
                let all = m.tasks(service);
                let done = all
                    .iter()
                    .filter(|t| {
                        field(t, "current_state") == "Complete"
                            && field(t, "desired_state") == "Complete"
                    })
                    .count();
                if done == n && all.len() == n {
                    Ok(all)
                } else {
                    Err(summary(&all))
                }
            },
        )
    };
    complete("batch", 3);
    let row = ls_row(&m, "batch");
    assert_eq!(
        (row[2].as_str(), row[3].as_str()),
        ("replicated job", "0/3 (3/3 completed)")
    );
    let table = m.ok(&["service", "ps", "batch"]).stdout;
    assert!(table.contains("Complete"), "{table}");
    // Nothing restarts them: still exactly 3 tasks a while later.
    std::thread::sleep(Duration::from_secs(3));
    let all = m.tasks("batch");
    assert_eq!(all.len(), 3, "{}", summary(&all));

    // An update runs the job again (a new iteration): 3 more completions.
    m.ok(&["service", "update", "--env-add", "RUN=2", "batch"]);
    complete("batch", 6);

    // A global job: once on every node.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "sweep",
        "--mode",
        "global-job",
        "host",
        "true",
    ]);
    let all = complete("sweep", 3);
    let mut nodes: Vec<&str> = all.iter().map(|t| field(t, "node")).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["h1", "h2", "h3"]);
    let row = ls_row(&m, "sweep");
    assert_eq!(
        (row[2].as_str(), row[3].as_str()),
        ("global job", "0/0 (3/3 completed)")
    );

    // What Docker refuses.
    let err = m.fails(&["service", "scale", "--detach", "sweep=2"]);
    assert!(
        err.contains("scale can only be used with replicated or replicated-job mode"),
        "{err}"
    );
    let err = m.fails(&[
        "service",
        "create",
        "--detach",
        "--name",
        "nope",
        "--max-concurrent",
        "2",
        "host",
        "true",
    ]);
    assert!(
        err.contains("--max-concurrent can only be used with replicated-job mode"),
        "{err}"
    );
}
