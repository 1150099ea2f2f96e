//! Tasks on a 3-host cluster, through the real CLI and daemons (root only):
//! spread, sandboxes (PID 1, hostname, overlay address), cross-host pings,
//! replacement of a killed task with history, restart policy `none`,
//! constraints and unplaceable tasks, logs, `service rm` cleanup, a refused
//! join token, drain and the loss of a node.
//!
//! Two tests, each on a cluster of its own, so they run in parallel; each
//! reuses its cluster for several checks, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mini_tests::check::{field, summary};
use mini_tests::cluster::{exec_in_netns, mounts_under};
use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

/// Long enough for a slow, loaded CI machine; a healthy run needs a fraction.
const DEADLINE: Duration = Duration::from_secs(30);

/// Tasks meant to run (not history).
fn live(all: &[Value]) -> Vec<Value> {
    all.iter()
        .filter(|t| field(t, "desired_state") == "Running")
        .cloned()
        .collect()
}

/// Waits until `service` has exactly `n` tasks meant to run, all RUNNING,
/// and none of them on `not_on` (hostnames); returns them.
fn wait_running(h: &Host, service: &str, n: usize, not_on: &[&str]) -> Vec<Value> {
    wait_for(
        &format!("{n} running tasks of {service}, none on {not_on:?}"),
        DEADLINE,
        || {
            let all = h.tasks(service);
            let live = live(&all);
            let ok = live.len() == n
                && live.iter().all(|t| {
                    field(t, "current_state") == "Running" && !not_on.contains(&field(t, "node"))
                });
            if ok { Ok(live) } else { Err(summary(&all)) }
        },
    )
}

/// How many of `tasks` each node runs, by hostname.
fn per_node(tasks: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in tasks {
        *counts.entry(field(t, "node").to_string()).or_default() += 1;
    }
    counts
}

/// The task's first overlay address without its prefix length.
fn overlay_ip(t: &Value) -> String {
    let addr = t["networks"][0]["addr"].as_str().unwrap_or_default();
    addr.split('/').next().unwrap_or_default().to_string()
}

/// The 1-based host number of hostname `hK`.
fn host_number(hostname: &str) -> usize {
    hostname
        .strip_prefix('h')
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("unexpected hostname {hostname:?}"))
}

/// PID the runtime recorded for task `id` on its host.
fn task_pid(cluster: &Cluster, t: &Value) -> i32 {
    let host = cluster.host(host_number(field(t, "node")));
    let path = host
        .run_dir()
        .join("tasks")
        .join(field(t, "id"))
        .join("pid");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad pid {text:?} in {}: {e}", path.display()))
}

fn process_exists(pid: i32) -> bool {
    // A zombie has no cmdline and is as good as gone for a task.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Sandbox namespace files (named by a task id prefix) still under `run`.
fn sandboxes_of(run: &Path, task_ids: &BTreeSet<String>) -> Vec<PathBuf> {
    let prefixes: BTreeSet<&str> = task_ids.iter().map(|id| &id[..12]).collect();
    std::fs::read_dir(run.join("netns"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| prefixes.contains(n))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn tasks_spread_run_in_sandboxes_talk_fail_and_clean_up() {
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    // A joined worker is in the swarm, not a manager (as `docker info` puts it).
    let info = cluster.host(2).ok(&["info", "--format", "json"]).json();
    assert_eq!(
        (info["swarm"].as_str(), info["is_manager"].as_bool()),
        (Some("active"), Some(false)),
        "{info}"
    );
    let m = cluster.host(1);
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.42.0.0/24",
        "appnet",
    ]);

    // 3 replicas: one per host, each in its own sandbox.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "3",
        "--network",
        "appnet",
        "host",
        "sleep",
        "1000",
    ]);
    let web = wait_running(&m, "web", 3, &[]);
    let spread = per_node(&web);
    assert_eq!(
        spread,
        BTreeMap::from([("h1".into(), 1), ("h2".into(), 1), ("h3".into(), 1)]),
        "{}",
        summary(&web)
    );
    for t in &web {
        let name = field(t, "name");
        let id = field(t, "id");
        let cmdline = m.ok(&["exec", name, "cat", "/proc/1/cmdline"]).stdout;
        assert_eq!(cmdline, "sleep\u{0}1000\u{0}", "PID 1 of {name}");
        let hostname = m
            .ok(&["exec", name, "cat", "/proc/sys/kernel/hostname"])
            .stdout;
        assert_eq!(
            hostname.trim(),
            format!("{name}.{id}"),
            "hostname of {name}"
        );
        let eth0 = m.ok(&[
            "exec", name, "ip", "-o", "-4", "addr", "show", "dev", "eth0",
        ]);
        let addr = t["networks"][0]["addr"].as_str().unwrap_or_default();
        assert!(
            addr.starts_with("10.42.0.") && eth0.stdout.contains(addr),
            "eth0 of {name} should have {addr}: {}",
            eth0.stdout
        );
        // The sandbox file is where the design says, under the host's run dir.
        let host = cluster.host(host_number(field(t, "node")));
        let sandbox = host.run_dir().join("netns").join(&id[..12]);
        let inside = exec_in_netns(&sandbox, &["ip", "-o", "-4", "addr"]);
        assert!(
            inside.stdout.contains(addr),
            "{}: {}",
            sandbox.display(),
            inside.stdout
        );
    }

    // A task pings the tasks on the other hosts over the overlay.
    let from = web
        .iter()
        .find(|t| field(t, "node") == "h1")
        .expect("task on h1");
    for to in web.iter().filter(|t| field(t, "node") != "h1") {
        let ip = overlay_ip(to);
        wait_for(
            &format!(
                "{} to ping {} ({ip})",
                field(from, "name"),
                field(to, "name")
            ),
            DEADLINE,
            || {
                let out = m.mini(&["exec", field(from, "name"), "ping", "-c1", "-W2", &ip]);
                if out.success {
                    Ok(())
                } else {
                    Err(format!("{}{}", out.stdout, out.stderr))
                }
            },
        );
    }

    // 6 replicas: two per host.
    m.ok(&["service", "scale", "--detach", "web=6"]);
    let web = wait_running(&m, "web", 6, &[]);
    let spread = per_node(&web);
    assert_eq!(
        spread,
        BTreeMap::from([("h1".into(), 2), ("h2".into(), 2), ("h3".into(), 2)]),
        "{}",
        summary(&web)
    );

    // Killing a task's process: FAILED, replaced, kept as a `\_` history row.
    let victim = web
        .iter()
        .find(|t| field(t, "node") == "h2")
        .expect("task on h2")
        .clone();
    let pid = task_pid(&cluster, &victim);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the task's process");
    let slot_name = field(&victim, "name").to_string();
    let replaced = wait_for(
        &format!("{slot_name} to be replaced after its process was killed"),
        DEADLINE,
        || {
            let all = m.tasks("web");
            let old = all.iter().find(|t| t["id"] == victim["id"]);
            let new = live(&all).into_iter().find(|t| {
                field(t, "name") == slot_name
                    && t["id"] != victim["id"]
                    && field(t, "current_state") == "Running"
            });
            match (old, new) {
                (Some(old), Some(new))
                    if field(old, "current_state") == "Failed"
                        && field(old, "desired_state") == "Shutdown" =>
                {
                    Ok(new)
                }
                _ => Err(summary(&all)),
            }
        },
    );
    assert_ne!(task_pid(&cluster, &replaced), pid);
    let table = m.ok(&["service", "ps", "web"]).stdout;
    let history = format!(" \\_ {slot_name}");
    assert!(
        table.contains(&history),
        "no history row {history:?}:\n{table}"
    );

    // Restart condition none: the task exits 3, ends FAILED and stays so.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "once",
        "--restart-condition",
        "none",
        "host",
        "sh",
        "-c",
        "exit 3",
    ]);
    let failed = wait_for("once.1 to fail with exit code 3", DEADLINE, || {
        let all = m.tasks("once");
        match all.as_slice() {
            [t] if field(t, "current_state") == "Failed" => Ok(t.clone()),
            _ => Err(summary(&all)),
        }
    });
    assert_eq!(failed["exit_code"], 3, "{failed}");
    // Not replaced: still the only task a while later (the orchestrator
    // reacts within milliseconds; this gives it well over that).
    std::thread::sleep(Duration::from_millis(1500));
    let all = m.tasks("once");
    assert_eq!(all.len(), 1, "once was replaced: {}", summary(&all));

    // Constraints: only on h2; unsatisfiable → pending, with the reason.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "pinned",
        "--replicas",
        "2",
        "--constraint",
        "node.hostname==h2",
        "host",
        "sleep",
        "1000",
    ]);
    let pinned = wait_running(&m, "pinned", 2, &["h1", "h3"]);
    assert_eq!(per_node(&pinned), BTreeMap::from([("h2".into(), 2)]));
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "nowhere",
        "--constraint",
        "node.labels.zone==mars",
        "host",
        "sleep",
        "1000",
    ]);
    let pending = wait_for("nowhere.1 to be pending with a reason", DEADLINE, || {
        let all = m.tasks("nowhere");
        match all.as_slice() {
            [t] if field(t, "current_state") == "Pending"
                && field(t, "message").contains("no suitable node") =>
            {
                Ok(t.clone())
            }
            _ => Err(summary(&all)),
        }
    });
    let table = m.ok(&["service", "ps", "nowhere"]).stdout;
    assert!(table.contains("no suitable node"), "{pending}\n{table}");

    // Logs: every task's output.
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "talk",
        "--replicas",
        "2",
        "host",
        "sh",
        "-c",
        "echo hello from $(cat /proc/sys/kernel/hostname); exec sleep 1000",
    ]);
    let talk = wait_running(&m, "talk", 2, &[]);
    wait_for(
        "the output of both talk tasks in service logs",
        DEADLINE,
        || {
            let out = m.mini(&["service", "logs", "talk"]);
            let all_there = talk.iter().all(|t| {
                let line = format!("hello from {}.{}", field(t, "name"), field(t, "id"));
                out.stdout.contains(&line)
            });
            if out.success && all_there {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        },
    );

    // service rm: no sandbox, mount or process left on any host.
    let mut ids = BTreeSet::new();
    let mut pids = Vec::new();
    for service in ["web", "once", "pinned", "nowhere", "talk"] {
        for t in m.tasks(service) {
            ids.insert(field(&t, "id").to_string());
            if field(&t, "current_state") == "Running" {
                pids.push(task_pid(&cluster, &t));
            }
        }
    }
    for service in ["web", "once", "pinned", "nowhere", "talk"] {
        m.ok(&["service", "rm", service]);
    }
    wait_for("no task left anywhere after service rm", DEADLINE, || {
        let mut seen = Vec::new();
        for k in 1..=3 {
            let run = cluster.host(k).run_dir();
            seen.extend(
                sandboxes_of(&run, &ids)
                    .iter()
                    .map(|p| p.display().to_string()),
            );
            let mounts = mounts_under(&run);
            seen.extend(
                mounts
                    .iter()
                    .filter(|p| {
                        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                        p.starts_with(run.join("tasks"))
                            || ids
                                .iter()
                                .any(|id| id.starts_with(name) && name.len() == 12)
                    })
                    .map(|p| format!("mount {}", p.display())),
            );
            if let Ok(dirs) = std::fs::read_dir(run.join("tasks")) {
                seen.extend(
                    dirs.flatten()
                        .map(|d| format!("task dir {}", d.path().display())),
                );
            }
        }
        seen.extend(
            pids.iter()
                .filter(|p| process_exists(**p))
                .map(|p| format!("pid {p}")),
        );
        let listed = m.ok_listed(&["service", "ls"], "service").json();
        if listed.as_array().is_some_and(|a| !a.is_empty()) {
            seen.push(format!("services {listed}"));
        }
        if seen.is_empty() {
            Ok(())
        } else {
            Err(seen.join(", "))
        }
    });
}

#[test]
fn wrong_token_refused_drain_and_node_loss_move_tasks() {
    let mut cluster = Cluster::start(3);
    cluster.init();

    // A wrong secret is refused, and says what would be right.
    let token = cluster
        .host(1)
        .ok(&["swarm", "join-token", "-q", "worker"])
        .stdout;
    let (digest, _) = token
        .trim()
        .rsplit_once('-')
        .expect("SWMTKN-1-<digest>-<secret>");
    let wrong = format!("{digest}-notthesecret");
    let manager = format!("{}:2377", cluster.addr(1));
    let addr2 = cluster.addr(2);
    let err = cluster.host(2).fails(&[
        "swarm",
        "join",
        "--token",
        &wrong,
        "--advertise-addr",
        &addr2,
        &manager,
    ]);
    assert!(
        err.contains("invalid join token") && err.contains("join-token"),
        "unclear refusal: {err}"
    );
    let nodes = cluster.host(1).ok_listed(&["node", "ls"], "node").json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    cluster.join_all();

    let m = cluster.host(1);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "app",
        "--replicas",
        "6",
        "host",
        "sleep",
        "1000",
    ]);
    let app = wait_running(&m, "app", 6, &[]);
    assert_eq!(
        per_node(&app),
        BTreeMap::from([("h1".into(), 2), ("h2".into(), 2), ("h3".into(), 2)]),
        "{}",
        summary(&app)
    );

    // Drain h2: its tasks go elsewhere and its processes stop.
    let on_h2: Vec<i32> = app
        .iter()
        .filter(|t| field(t, "node") == "h2")
        .map(|t| task_pid(&cluster, t))
        .collect();
    m.ok(&[
        "node",
        "update",
        "--detach",
        "--availability",
        "drain",
        "h2",
    ]);
    let app = wait_running(&m, "app", 6, &["h2"]);
    assert_eq!(
        per_node(&app),
        BTreeMap::from([("h1".into(), 3), ("h3".into(), 3)]),
        "{}",
        summary(&app)
    );
    wait_for("the drained tasks' processes to stop", DEADLINE, || {
        let left: Vec<&i32> = on_h2.iter().filter(|p| process_exists(**p)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    m.ok(&["node", "update", "--availability", "active", "h2"]);

    // SIGKILL h3's daemon and cut its link: down, and its tasks run elsewhere.
    cluster.kill_host(3);
    let m = cluster.host(1);
    wait_for("h3 to be down in node ls", DEADLINE, || {
        let nodes = m.ok_listed(&["node", "ls"], "node").json();
        let h3 = nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["hostname"] == "h3"))
            .cloned();
        match h3 {
            Some(n) if n["status"] == "down" => Ok(()),
            _ => Err(nodes.to_string()),
        }
    });
    let table = m.ok(&["node", "ls"]).stdout;
    assert!(
        table
            .lines()
            .any(|l| l.contains("h3") && l.contains("Down")),
        "node ls should show h3 Down:\n{table}"
    );
    let app = wait_running(&m, "app", 6, &["h3"]);
    assert_eq!(
        per_node(&app).values().sum::<usize>(),
        6,
        "{}",
        summary(&app)
    );
}
