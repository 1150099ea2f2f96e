//! A manager restart does not disturb the tasks running on workers: their
//! sessions reconnect and the same tasks keep running (root only).

use std::time::Duration;

use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

fn running_tasks(host: &Host, service: &str) -> Result<Vec<Value>, String> {
    let out = host.listed(&["service", "ps", service], "task");
    if !out.success {
        return Err(out.stderr);
    }
    let tasks: Vec<Value> = out.json().as_array().cloned().unwrap_or_default();
    let running: Vec<Value> = tasks
        .iter()
        .filter(|t| t["current_state"] == "Running")
        .cloned()
        .collect();
    if running.len() == 2 && tasks.len() == 2 {
        Ok(running)
    } else {
        Err(out.stdout)
    }
}

#[test]
fn workers_keep_their_tasks_across_a_manager_restart() {
    let mut cluster = Cluster::start(2);
    cluster.init();
    cluster.join_all();
    let before = {
        let manager = cluster.host(1);
        manager.ok(&[
            "network",
            "create",
            "--subnet",
            "192.168.210.0/24",
            "appnet",
        ]);
        manager.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            "app",
            "--replicas",
            "2",
            "--network",
            "appnet",
            "--constraint",
            "node.hostname==h2",
            "host",
            "sleep",
            "100000",
        ]);
        wait_for("2 app tasks running on h2", Duration::from_secs(30), || {
            running_tasks(&manager, "app")
        })
    };
    let ids = |tasks: &[Value]| {
        let mut ids: Vec<String> = tasks
            .iter()
            .map(|t| t["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ids.sort();
        ids
    };
    let pids: Vec<i32> = ids(&before)
        .iter()
        .map(|id| {
            let file = cluster.host(2).run_dir().join("tasks").join(id).join("pid");
            std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
                .trim()
                .parse()
                .unwrap()
        })
        .collect();

    cluster.stop_host(1);
    cluster.start_host(1);

    let manager = cluster.host(1);
    // h2 reconnects and stays ready; its tasks were never replaced.
    wait_for(
        "h2 ready again after the manager restart",
        Duration::from_secs(20),
        || {
            let nodes = manager.listed(&["node", "ls"], "node");
            let ready = nodes.success
                && nodes.json().as_array().is_some_and(|n| {
                    n.iter()
                        .any(|n| n["hostname"] == "h2" && n["status"] == "ready")
                });
            if ready {
                Ok(())
            } else {
                Err(nodes.stdout + &nodes.stderr)
            }
        },
    );
    let after = wait_for(
        "the same 2 app tasks running",
        Duration::from_secs(10),
        || running_tasks(&manager, "app"),
    );
    assert_eq!(
        ids(&after),
        ids(&before),
        "tasks were replaced across the manager restart"
    );
    let before_ids = ids(&before);
    for pid in pids {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "task process {pid} is gone"
        );
    }
    // The session is live again: a new task on h2 gets started.
    manager.ok(&["service", "scale", "--detach", "app=3"]);
    wait_for(
        "a third app task running on h2",
        Duration::from_secs(20),
        || {
            let out = manager.listed(&["service", "ps", "app"], "task");
            let tasks = out.json().as_array().cloned().unwrap_or_default();
            let running = tasks
                .iter()
                .filter(|t| t["current_state"] == "Running" && t["node"] == "h2")
                .count();
            if running == 3 {
                Ok(())
            } else {
                Err(out.stdout)
            }
        },
    );
    // Asserting that something does NOT happen needs its window to pass: a
    // node without a session is marked down 3 heartbeats (3 x 500 ms) plus the
    // 3 s reconnect grace after the manager starts.
    std::thread::sleep(Duration::from_millis(3 * 500 + 3_000 + 1_000));
    let nodes = manager.ok_listed(&["node", "ls"], "node").json();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "ready"),
        "a node went down after the restart: {nodes}"
    );
    let tasks = manager.ok_listed(&["service", "ps", "app"], "task").json();
    for id in &before_ids {
        let task = tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str());
        assert!(
            task.is_some_and(|t| t["current_state"] == "Running" && t["desired_state"] == "Running"),
            "task {id} did not keep running: {tasks}"
        );
    }
}
