//! Health checks (issue #13, item 5) on the namespace lab: a task is STARTING, out of DNS
//! and out of its VIP's backends, until its check passes; an unhealthy task is stopped,
//! reported failed with swarmkit's words and replaced. Root only; needs runc and
//! busybox-static.

use std::collections::BTreeSet;
use std::time::Duration;

use mini_tests::image::install_busybox;
use mini_tests::web::http_get;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(90);

/// Every task of `service` (all states), from `service ps`.
fn tasks(host: &Host, service: &str) -> Vec<Value> {
    let out = host.listed(&["service", "ps", service], "task");
    if !out.success {
        return Vec::new();
    }
    out.json().as_array().cloned().unwrap_or_default()
}

/// The task's address on its first network, without the prefix.
fn task_ip(task: &Value) -> String {
    task["networks"][0]["addr"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// The service's VIP on its network, without the prefix.
fn vip(host: &Host, service: &str) -> String {
    let inspect = host.ok(&["service", "inspect", service]).json();
    let view = if inspect.is_array() {
        inspect[0].clone()
    } else {
        inspect
    };
    view["vips"][0]["addr"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn unhealthy_tasks_stay_out_of_dns_and_the_vip_and_are_replaced() {
    let started = std::time::Instant::now();
    let mark = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    let cluster = Cluster::start(1);
    cluster.init();
    mark("cluster up");
    install_busybox(&cluster.host(1).state_dir());
    let m = cluster.host(1);
    m.ok(&[
        "network",
        "create",
        "--subnet",
        "192.168.231.0/24",
        "healthnet",
    ]);

    // Bad flags are refused with Docker's words and create nothing.
    let conflict = m.fails(&[
        "service",
        "create",
        "--detach",
        "--name",
        "conflict",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(
        conflict.contains("--no-healthcheck conflicts with --health-* options"),
        "{conflict}"
    );
    let tiny = m.fails(&[
        "service",
        "create",
        "--detach",
        "--name",
        "tiny",
        "--health-interval",
        "10us",
        "--health-cmd",
        "true",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(
        tiny.contains("Interval in HealthConfig cannot be less than 1ms"),
        "{tiny}"
    );
    let listed = m.ok_listed(&["service", "ls"], "service").stdout;
    assert!(
        !listed.contains("conflict") && !listed.contains("tiny"),
        "refused services must not exist: {listed}"
    );

    // A client (host runtime) to resolve names and reach VIPs from.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "client",
        "--network",
        "healthnet",
        "host",
        "sleep",
        "100000",
    ]);
    // `good` turns healthy once /tmp/ready exists, 2 s after its start.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "good",
        "--network",
        "healthnet",
        "--health-cmd",
        "test -e /tmp/ready",
        "--health-interval",
        "500ms",
        "--health-retries",
        "30",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && hostname > /www/index.html && sleep 2 && touch /tmp/ready && exec httpd -f -p 80 -h /www",
    ]);
    // `bad` serves HTTP but its check always fails.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "bad",
        "--network",
        "healthnet",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "500ms",
        "--health-retries",
        "2",
        "--stop-grace-period",
        "1s",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let inspect = m.ok(&["service", "inspect", "bad"]).stdout;
    for part in [
        "\"Test\"",
        "\"CMD-SHELL\"",
        "\"exit 1\"",
        "\"Interval\": 500000000",
        "\"Retries\": 2",
    ] {
        assert!(
            inspect.contains(part),
            "service inspect shows {part}: {inspect}"
        );
    }
    m.wait_running("client", 1);
    mark("client running");

    // `good` runs once healthy, and only then answers in DNS and behind its VIP.
    let good = wait_for("good running and healthy", PATIENCE, || {
        let all = tasks(&m, "good");
        match all.iter().find(|t| t["current_state"] == "Running") {
            Some(t) => Ok(t.clone()),
            None => Err(format!("{all:?}")),
        }
    });
    mark("good healthy");
    assert_eq!(good["health"], "healthy", "{good}");
    let good_ip = task_ip(&good);
    wait_for("tasks.good resolving to the healthy task", PATIENCE, || {
        let got = m.lookup("client.1", "tasks.good");
        if got == BTreeSet::from([good_ip.clone()]) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    let good_vip = vip(&m, "good");
    wait_for("good's VIP answering", PATIENCE, || {
        let out = m.mini(&["exec", "client.1", "sh", "-c", &http_get(&good_vip, 80)]);
        let body = out.stdout.trim().to_string();
        if out.success && body.len() == 12 {
            Ok(())
        } else {
            Err(format!("{body:?} {}", out.stderr))
        }
    });

    // `bad`: STARTING, then failed as unhealthy, then replaced by a new task.
    let failed = wait_for("a bad task failed as unhealthy", PATIENCE, || {
        let all = tasks(&m, "bad");
        match all.iter().find(|t| t["current_state"] == "Failed") {
            Some(t) => Ok(t.clone()),
            None => Err(format!("{all:?}")),
        }
    });
    mark("bad failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("task: non-zero exit (")
            && error.ends_with("): dockerexec: unhealthy container"),
        "Docker's wording for an unhealthy task: {failed}"
    );
    assert_eq!(failed["health"], "unhealthy", "{failed}");
    let failed_id = failed["id"].as_str().unwrap_or_default().to_string();
    let bad_vip = vip(&m, "bad");
    let mut bad_ips = BTreeSet::from([task_ip(&failed)]);
    let replacement = wait_for("a replacement bad task", PATIENCE, || {
        let all = tasks(&m, "bad");
        for t in &all {
            bad_ips.insert(task_ip(t));
        }
        // Never in DNS nor behind the VIP, whichever of its tasks is starting now.
        let names = m.lookup("client.1", "tasks.bad");
        assert!(
            names.is_empty(),
            "tasks.bad resolves to {names:?} though no task ever passed its check: {all:?}"
        );
        let out = m.mini(&["exec", "client.1", "sh", "-c", &http_get(&bad_vip, 80)]);
        assert!(
            out.stdout.trim().is_empty(),
            "bad's VIP answered {:?} though no task is healthy",
            out.stdout
        );
        match all
            .iter()
            .find(|t| t["id"] != failed_id.as_str() && t["desired_state"] == "Running")
        {
            Some(t) => Ok(t.clone()),
            None => Err(format!("{all:?}")),
        }
    });
    mark("bad replaced");
    assert_ne!(replacement["id"], failed["id"]);
    assert!(
        !bad_ips
            .iter()
            .any(|ip| m.lookup("client.1", "tasks.bad").contains(ip)),
        "no bad task ever resolves"
    );
    assert!(
        m.lookup("client.1", "tasks.good").contains(&good_ip),
        "the healthy task stays in DNS"
    );
    m.ok(&["service", "rm", "good", "bad", "client"]);
    mark("done");
}

#[test]
fn probes_past_their_timeout_are_killed() {
    let cluster = Cluster::start(1);
    cluster.init();
    install_busybox(&cluster.host(1).state_dir());
    let m = cluster.host(1);
    // Each probe hangs: it times out after 1 s, the next starts 200 ms later.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 4321",
        "--health-timeout",
        "1s",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1000",
        "busybox",
        "sleep",
        "100000",
    ]);
    let task = wait_for("slow starting", PATIENCE, || {
        let all = tasks(&m, "slow");
        let Some(t) = all.iter().find(|t| t["current_state"] == "Starting") else {
            return Err(format!("{all:?}"));
        };
        // STARTING is reported just before the container starts: wait until it runs.
        let id = t["id"].as_str().unwrap_or_default().to_string();
        let out = m.mini(&["exec", &id, "true"]);
        if out.success {
            Ok(id)
        } else {
            Err(format!("exec: {}", out.stderr))
        }
    });
    // Over several probe periods at most one probe runs at a time: a timed-out probe is
    // killed, not left behind in the container.
    let count = || {
        let out = m.mini(&["exec", &task, "ps", "-o", "args"]);
        assert!(out.success, "ps in the task: {out:?}");
        out.stdout
            .lines()
            .filter(|l| l.trim() == "sleep 4321")
            .count()
    };
    let window = std::time::Instant::now();
    let mut seen = Vec::new();
    while window.elapsed() < Duration::from_secs(6) {
        seen.push(count());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.iter().all(|n| *n <= 1),
        "timed-out probes pile up in the container: {seen:?}"
    );
    assert!(
        seen.contains(&1),
        "no probe was ever seen running: {seen:?}"
    );
    let all = tasks(&m, "slow");
    let t = all.iter().find(|t| t["id"] == task.as_str()).unwrap();
    assert_eq!(
        (&t["current_state"], &t["health"]),
        (&Value::from("Starting"), &Value::from("starting")),
        "a task whose probes time out never turns healthy: {t}"
    );
    m.ok(&["service", "rm", "slow"]);
}
