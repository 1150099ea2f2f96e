//! Update and rollback policies on the namespace lab (issue #14 item 3): a failing update
//! rolled back automatically or paused, `service rollback` after a good update (and a second
//! one going forward again), an update whose new tasks stay unhealthy stopped at the first
//! batch, and start-first order. `host` image tasks; one host. Root only.

use std::collections::BTreeSet;
use std::time::Duration;

use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

/// Long enough for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn inspect(host: &Host, service: &str) -> Value {
    host.ok(&["service", "inspect", service]).json()[0].clone()
}

fn update_state(host: &Host, service: &str) -> String {
    inspect(host, service)["UpdateStatus"]["State"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn ids(tasks: &[Value]) -> BTreeSet<String> {
    tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn args_of(task: &Value) -> Vec<String> {
    task["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the service's update is in `state`; returns the inspect output.
fn wait_state(host: &Host, service: &str, state: &str) -> Value {
    wait_for(
        &format!("{service}'s update to be {state}"),
        PATIENCE,
        || {
            let svc = inspect(host, service);
            if svc["UpdateStatus"]["State"] == state {
                Ok(svc)
            } else {
                Err(format!("UpdateStatus {}", svc["UpdateStatus"]))
            }
        },
    )
}

#[test]
fn failing_updates_are_rolled_back_or_paused() {
    let cluster = Cluster::start(1);
    cluster.init();
    let m = cluster.host(1);

    // failure action rollback: the update to a command that exits at once goes back.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "back",
        "--replicas",
        "2",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "2s",
        "--rollback-monitor",
        "1s",
        "--restart-delay",
        "500ms",
        "host",
        "sleep",
        "100001",
    ]);
    m.wait_running("back", 2);
    let out = m.mini(&["service", "update", "--args", "false", "back"]);
    assert!(
        !out.success,
        "the rolled back update succeeded: {}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("rollback: update rolled back due to failure or early termination of task"),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stderr.contains("service rolled back"), "{}", out.stderr);
    let svc = wait_state(&m, "back", "rollback_completed");
    assert_eq!(svc["args"], serde_json::json!(["sleep", "100001"]), "{svc}");
    assert!(
        svc.get("PreviousSpec").is_none(),
        "the failed spec is not kept (as swarmkit): {svc}"
    );
    let running = m.wait_running("back", 2);
    for t in &running {
        assert_eq!(
            args_of(t),
            ["sleep", "100001"],
            "a task not on the old spec: {t}"
        );
    }

    // Default failure action pause: the first new task fails, the others stay as they were.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "hold",
        "--replicas",
        "3",
        "--update-monitor",
        "2s",
        // A batch goes once the previous one runs: the delay holds the second batch long
        // enough for the first task's exit to be seen (swarmkit's pacing too).
        "--update-delay",
        "3s",
        "--restart-delay",
        "500ms",
        "host",
        "sleep",
        "100002",
    ]);
    let before = ids(&m.wait_running("hold", 3));
    let err = m.fails(&["service", "update", "--args", "false", "hold"]);
    assert!(
        err.contains(
            "service update paused: update paused due to failure or early termination of task"
        ),
        "{err}"
    );
    let svc = inspect(&m, "hold");
    assert_eq!(svc["UpdateStatus"]["State"], "paused", "{svc}");
    // Still paused a moment later: the two untouched old tasks run on.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(update_state(&m, "hold"), "paused");
    let still = ids(&m.running_tasks("hold"));
    assert_eq!(
        still.intersection(&before).count(),
        2,
        "the remaining old tasks must be untouched: before {before:?}, running {still:?}"
    );
    // `service update` resumes it (here with a command that works).
    let out = m.ok(&["service", "update", "--args", "sleep 100003", "hold"]);
    assert!(
        out.stdout.contains("verify: Service converged"),
        "{}",
        out.stdout
    );
    assert_eq!(update_state(&m, "hold"), "completed");
    for t in m.wait_running("hold", 3) {
        assert_eq!(args_of(&t), ["sleep", "100003"], "{t}");
    }

    // New tasks that never become healthy do not pass the first batch.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "sick",
        "--replicas",
        "2",
        "--update-monitor",
        "2s",
        "host",
        "sleep",
        "100004",
    ]);
    let before = ids(&m.wait_running("sick", 2));
    let err = m.fails(&[
        "service",
        "update",
        "--health-cmd",
        "false",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        "sick",
    ]);
    assert!(err.contains("service update paused"), "{err}");
    let tasks = m.tasks("sick");
    let healthy_new: Vec<&Value> = tasks
        .iter()
        .filter(|t| !before.contains(t["id"].as_str().unwrap_or_default()))
        .filter(|t| t["current_state"] == "Running")
        .collect();
    assert!(healthy_new.is_empty(), "a new task ran: {healthy_new:?}");
    let still = ids(&m.running_tasks("sick"));
    assert_eq!(
        still.intersection(&before).count(),
        1,
        "only the first batch (one task) may be replaced: before {before:?}, running {still:?}"
    );
    let unhealthy = tasks.iter().any(|t| {
        t["health"] == "unhealthy" || t["error"].as_str().unwrap_or("").contains("unhealthy")
    });
    assert!(
        unhealthy,
        "no task shows the failed health check: {tasks:?}"
    );
}

#[test]
fn service_rollback_and_start_first() {
    let cluster = Cluster::start(1);
    cluster.init();
    let m = cluster.host(1);

    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "app",
        "--replicas",
        "2",
        "--update-monitor",
        "1s",
        "--rollback-monitor",
        "1s",
        "host",
        "sleep",
        "100005",
    ]);
    m.wait_running("app", 2);
    // No previous spec yet: refused, with Docker's words.
    let err = m.fails(&["service", "rollback", "app"]);
    assert!(err.contains("does not have a previous spec"), "{err}");

    let out = m.ok(&["service", "update", "--env-add", "COLOR=blue", "app"]);
    assert!(
        out.stdout.contains("verify: Service converged"),
        "{}",
        out.stdout
    );
    let svc = inspect(&m, "app");
    assert_eq!(svc["UpdateStatus"]["State"], "completed", "{svc}");
    assert_eq!(svc["UpdateStatus"]["Message"], "update completed");
    assert!(svc["UpdateStatus"]["CompletedAt"].is_string(), "{svc}");
    assert_eq!(svc["env"], serde_json::json!(["COLOR=blue"]));
    assert_eq!(svc["PreviousSpec"]["env"], serde_json::json!([]), "{svc}");

    let out = m.ok(&["service", "rollback", "app"]);
    assert!(
        out.stdout.contains("rollback: manually requested rollback")
            && out.stdout.contains("verify: Service converged"),
        "{}",
        out.stdout
    );
    let svc = inspect(&m, "app");
    assert_eq!(svc["UpdateStatus"]["State"], "rollback_completed", "{svc}");
    assert_eq!(svc["env"], serde_json::json!([]));
    assert_eq!(
        svc["PreviousSpec"]["env"],
        serde_json::json!(["COLOR=blue"])
    );
    // A second rollback goes forward again (`service update --rollback` is the same).
    m.ok(&["service", "update", "--rollback", "app"]);
    let svc = inspect(&m, "app");
    assert_eq!(svc["env"], serde_json::json!(["COLOR=blue"]), "{svc}");
    assert_eq!(svc["UpdateStatus"]["State"], "rollback_completed");
    let pretty = m.ok(&["service", "inspect", "--pretty", "app"]).stdout;
    for line in [
        "UpdateStatus:",
        "rollback_completed",
        "UpdateConfig:",
        "RollbackConfig:",
        "Monitoring Period: 1s",
    ] {
        assert!(pretty.contains(line), "--pretty lacks {line:?}:\n{pretty}");
    }

    // start-first: the new task runs before the old one is stopped.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "first",
        "--update-order",
        "start-first",
        "--update-monitor",
        "1s",
        "host",
        "sleep",
        "100006",
    ]);
    let old = m.wait_running("first", 1)[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    m.ok(&["service", "update", "--env-add", "X=1", "first"]);
    // The old task is told to stop once the new one runs; wait until it has stopped.
    let tasks = wait_for("first's old task to stop", PATIENCE, || {
        let tasks = m.tasks("first");
        let stopped = tasks
            .iter()
            .any(|t| t["id"] == old.as_str() && t["current_state"] == "Shutdown");
        if stopped {
            Ok(tasks)
        } else {
            Err(format!("{tasks:?}"))
        }
    });
    let find = |pred: &dyn Fn(&Value) -> bool| tasks.iter().find(|t| pred(t)).cloned();
    let old_task = find(&|t| t["id"] == old.as_str()).expect("old task kept as history");
    let new_task = find(&|t| t["id"] != old.as_str() && t["current_state"] == "Running")
        .unwrap_or_else(|| panic!("no new running task: {tasks:?}"));
    let stopped_at = old_task["since_ms"].as_i64().unwrap_or_default();
    let running_at = new_task["since_ms"].as_i64().unwrap_or_default();
    assert!(
        running_at <= stopped_at,
        "the old task stopped at {stopped_at}, before the new one ran at {running_at}"
    );
}
