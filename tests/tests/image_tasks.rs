//! Image tasks run by runc (issue #13): a busybox image the test installs on
//! every host, replicas serving HTTP through the VIP and the routing mesh,
//! `mini exec` and logs, limits and failures worded as Docker words them, a
//! daemon restarted with containers running, and nothing left behind. Root
//! only; needs runc and busybox-static.

use std::collections::BTreeSet;
use std::time::Duration;

use mini_tests::image::{IMAGE_WEB, container_id, container_leftovers, install_busybox};
use mini_tests::web::http_get;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);

fn is_container_hostname(s: &str) -> bool {
    s.len() == 12 && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn install_everywhere(cluster: &Cluster) {
    for k in 1..=cluster.len() {
        install_busybox(&cluster.host(k).state_dir());
    }
}

/// The tasks of `service` (all states), from `service ps`.
fn tasks(host: &Host, service: &str) -> Vec<Value> {
    let out = host.listed(&["service", "ps", service], "task");
    if !out.success {
        return Vec::new();
    }
    out.json().as_array().cloned().unwrap_or_default()
}

/// Waits until a task of `service` reports an error; returns the error.
fn wait_error(host: &Host, service: &str) -> String {
    wait_for(&format!("an error for {service}"), PATIENCE, || {
        let all = tasks(host, service);
        match all
            .iter()
            .find(|t| t["error"].as_str().is_some_and(|e| !e.is_empty()))
        {
            Some(t) => Ok(t["error"].as_str().unwrap_or_default().to_string()),
            None => Err(format!("{all:?}")),
        }
    })
}

/// Waits until no host has anything left of runc containers.
fn wait_no_leftovers(cluster: &Cluster, ids: &[String]) {
    wait_for("containers removed everywhere", PATIENCE, || {
        let mut left = Vec::new();
        for k in 1..=cluster.len() {
            let h = cluster.host(k);
            left.extend(container_leftovers(&h.run_dir(), &h.state_dir()));
        }
        for id in ids {
            for controller in ["memory", "pids", "cpu"] {
                let cg = format!("/sys/fs/cgroup/{controller}/mini/{id}");
                if std::path::Path::new(&cg).exists() {
                    left.push(format!("cgroup {cg}"));
                }
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
}

fn exec(host: &Host, task: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", task];
    args.extend_from_slice(cmd);
    host.ok(&args).stdout.trim().to_string()
}

#[test]
fn image_replicas_answer_through_the_vip_and_the_mesh_and_leave_nothing() {
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    install_everywhere(&cluster);
    let m = cluster.host(1);
    m.ok(&[
        "network",
        "create",
        "--subnet",
        "192.168.230.0/24",
        "imgnet",
    ]);
    let mut web = vec![
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "3",
        "--network",
        "imgnet",
        "--publish",
        "8080:80",
    ];
    web.extend_from_slice(IMAGE_WEB);
    m.ok(&web);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "client",
        "--network",
        "imgnet",
        "--constraint",
        "node.hostname==h1",
        "--env",
        "GREETING=hi",
        "busybox",
        "sleep",
        "100000",
    ]);
    let web_tasks = wait_for("3 web tasks running", PATIENCE, || {
        let running = m.running_tasks("web");
        if running.len() == 3 {
            Ok(running)
        } else {
            Err(format!("{:?}", tasks(&m, "web")))
        }
    });
    let client = m.wait_running("client", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Inside the container: the image's root, Docker's hostname, env and DNS.
    let hostname = exec(&m, &client, &["hostname"]);
    assert!(is_container_hostname(&hostname), "hostname {hostname:?}");
    assert_eq!(hostname, container_id(&client)[..12]);
    assert_eq!(exec(&m, &client, &["cat", "/etc/hostname"]), hostname);
    assert!(exec(&m, &client, &["cat", "/etc/resolv.conf"]).contains("nameserver 127.0.0.11"));
    assert_eq!(exec(&m, &client, &["sh", "-c", "echo $GREETING"]), "hi");
    assert_eq!(exec(&m, &client, &["id", "-u"]), "0");
    // Docker's hardening: no new privileges, a seccomp filter, no mount even as root.
    let status = exec(&m, &client, &["cat", "/proc/self/status"]);
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "1"]),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
        "{status}"
    );
    let mount = m.mini(&["exec", &client, "mount", "-t", "tmpfs", "x", "/mnt"]);
    assert!(
        !mount.success,
        "mount inside a container must fail: {mount:?}"
    );
    assert_eq!(
        exec(&m, &client, &["readlink", "/bin/sh"]),
        "busybox",
        "the root filesystem is the image's"
    );

    // The VIP balances over the replicas, which answer with their container hostnames.
    let mut seen = BTreeSet::new();
    wait_for("the VIP answering from 2+ replicas", PATIENCE, || {
        let out = m.mini(&["exec", &client, "sh", "-c", &http_get("web", 80)]);
        let body = out.stdout.trim().to_string();
        if out.success && is_container_hostname(&body) {
            seen.insert(body);
        }
        if seen.len() >= 2 {
            Ok(())
        } else {
            // What the client's container sees, to tell a routing fault from a slow start.
            let net = m.mini(&["exec", &client, "sh", "-c", "ip -br addr; ip route"]);
            Err(format!(
                "{seen:?} {}\nclient's network: {}",
                out.stderr, net.stdout
            ))
        }
    });
    let expected: BTreeSet<String> = web_tasks
        .iter()
        .map(|t| container_id(t["id"].as_str().unwrap())[..12].to_string())
        .collect();
    assert!(seen.is_subset(&expected), "{seen:?} not among {expected:?}");

    // The routing mesh: the published port answers on every node.
    for k in 1..=3 {
        let get = http_get(&cluster.addr(k), 8080);
        wait_for(&format!("port 8080 on h{k}"), PATIENCE, || {
            let out = cluster.exec_outside(&["sh", "-c", &get]);
            let body = out.stdout.trim();
            if out.success && expected.contains(body) {
                Ok(())
            } else {
                Err(format!("{body:?} {}", out.stderr))
            }
        });
    }

    // Removal leaves no mount, bundle, writable layer, runc state or cgroup.
    let mut ids: Vec<String> = web_tasks
        .iter()
        .map(|t| container_id(t["id"].as_str().unwrap()))
        .collect();
    ids.push(container_id(&client));
    m.ok(&["service", "rm", "web", "client"]);
    wait_no_leftovers(&cluster, &ids);
}

#[test]
fn limits_exits_and_bad_input_are_reported_as_docker_words_them() {
    let cluster = Cluster::start(1);
    cluster.init();
    install_everywhere(&cluster);
    let m = cluster.host(1);
    let create = |args: &[&str]| {
        let mut all = vec![
            "service",
            "create",
            "--detach",
            "--restart-condition",
            "none",
        ];
        all.extend_from_slice(args);
        m.ok(&all);
    };
    create(&[
        "--name",
        "hog",
        "--limit-memory",
        "16M",
        "busybox",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    create(&["--name", "three", "busybox", "sh", "-c", "exit 3"]);
    create(&[
        "--name",
        "badbind",
        "--mount",
        "type=bind,source=/no/such/dir,target=/x",
        "busybox",
        "sleep",
        "100",
    ]);
    create(&["--name", "nocmd", "busybox", "no-such-command"]);
    create(&[
        "--name",
        "opts",
        "--user",
        "www-data",
        "--workdir",
        "/srv/app",
        "--read-only",
        "--mount",
        "type=tmpfs,target=/scratch",
        "--mount",
        "type=volume,source=vol1,target=/data",
        "--entrypoint",
        "sh -c",
        "busybox",
        "id -u; pwd; touch /ro 2>/dev/null || echo read-only; touch /scratch/x && echo tmpfs-ok; sleep 100000",
    ]);
    create(&[
        "--name",
        "tini",
        "--init",
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sleep",
        "100000",
    ]);
    create(&[
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; sleep 100000",
    ]);
    assert_eq!(wait_error(&m, "hog"), "OOM killed");
    assert_eq!(wait_error(&m, "three"), "task: non-zero exit (3)");
    let bind = wait_error(&m, "badbind");
    assert!(
        bind.contains(
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir"
        ),
        "{bind}"
    );
    let nocmd = wait_error(&m, "nocmd");
    assert!(nocmd.contains("no-such-command"), "{nocmd}");
    // Run options take effect; the log holds the output.
    wait_for("the opts task running", PATIENCE, || {
        let all = tasks(&m, "opts");
        if all.iter().any(|t| t["current_state"] == "Running") {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    });
    let logs = wait_for("the opts task's output", PATIENCE, || {
        let out = m.mini(&["service", "logs", "opts"]);
        if out.stdout.contains("tmpfs-ok") {
            Ok(out.stdout)
        } else {
            Err(out.stdout + &out.stderr)
        }
    });
    let lines: Vec<&str> = logs
        .lines()
        .map(|l| l.rsplit_once(' ').map_or(l, |(_, t)| t))
        .collect();
    assert_eq!(lines, ["33", "/srv/app", "read-only", "tmpfs-ok"], "{logs}");
    assert!(
        m.state_dir().join("volumes/vol1/_data").is_dir(),
        "the named volume was made"
    );
    // --init: tini is PID 1 and runs the command.
    let tini = wait_for("the tini task running", PATIENCE, || {
        let running = m.running_tasks("tini");
        match running.first() {
            Some(t) => Ok(t["id"].as_str().unwrap_or_default().to_string()),
            None => Err(format!("{:?}", tasks(&m, "tini"))),
        }
    });
    let pid1 = exec(&m, &tini, &["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]);
    assert_eq!(pid1, "/sbin/docker-init -- sleep 100000");
    // Logs rotate at max-size, keeping max-file files; the newest lines are kept.
    let chatty = wait_for("chatty's last line logged", PATIENCE, || {
        let out = m.mini(&["service", "logs", "chatty"]);
        if out.stdout.contains("line 199") {
            Ok(out.stdout)
        } else {
            Err(format!(
                "{} {} {:?}",
                out.stdout,
                out.stderr,
                tasks(&m, "chatty")
            ))
        }
    });
    let chatty_id = tasks(&m, "chatty")[0]["id"].as_str().unwrap().to_string();
    let task_dir = m.run_dir().join("tasks").join(&chatty_id);
    let live = task_dir.join("output.log");
    assert!(std::fs::metadata(&live).unwrap().len() <= 1024);
    assert!(
        std::fs::metadata(task_dir.join("output.log.1"))
            .unwrap()
            .len()
            <= 1024
    );
    assert!(
        !task_dir.join("output.log.2").exists(),
        "max-file=2 keeps two files"
    );
    assert!(
        !chatty.contains("line 0\n"),
        "the oldest lines were rotated away: {chatty}"
    );
    // A memory limit below Docker's minimum is refused before anything is made.
    let low = m.fails(&[
        "service",
        "create",
        "--detach",
        "--limit-memory",
        "4M",
        "busybox",
        "sleep",
        "1",
    ]);
    assert!(low.contains("Minimum memory limit allowed is 6MB"), "{low}");

    let ids: Vec<String> = ["hog", "three", "badbind", "nocmd", "opts", "tini", "chatty"]
        .iter()
        .flat_map(|s| tasks(&m, s))
        .map(|t| container_id(t["id"].as_str().unwrap()))
        .collect();
    m.ok(&[
        "service", "rm", "hog", "three", "badbind", "nocmd", "opts", "tini", "chatty",
    ]);
    wait_no_leftovers(&cluster, &ids);
}

#[test]
fn a_daemon_killed_with_containers_running_adopts_them_when_it_restarts() {
    let mut cluster = Cluster::start(1);
    cluster.init();
    install_everywhere(&cluster);
    let old: Vec<String> = {
        let m = cluster.host(1);
        m.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            "sleeper",
            "--replicas",
            "2",
            "busybox",
            "sleep",
            "100000",
        ]);
        let mut ids: Vec<String> = m
            .wait_running("sleeper", 2)
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    // The daemon dies (SIGKILL) with both containers running, then starts again: like Docker's
    // live-restore, it finds its containers and keeps them (same tasks, nothing restarted).
    cluster.restart_host(1);
    let m = cluster.host(1);
    wait_for("the 2 sleeper tasks adopted", PATIENCE, || {
        let all = tasks(&m, "sleeper");
        let mut running: Vec<String> = m
            .running_tasks("sleeper")
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        running.sort();
        if running == old && all.len() == 2 && adopted_both(&m, &old) {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    });
    for t in &old {
        let id = container_id(t);
        assert!(
            m.run_dir().join("runc").join(&id).exists(),
            "adopted container {id} has no runc state"
        );
    }
    let ids: Vec<String> = old.iter().map(|t| container_id(t)).collect();
    m.ok(&["service", "rm", "sleeper"]);
    wait_no_leftovers(&cluster, &ids);
}

/// Whether host `m`'s daemon log says it adopted each of `tasks`.
fn adopted_both(m: &Host, tasks: &[String]) -> bool {
    let log = m.log();
    tasks.iter().all(|t| {
        log.lines()
            .any(|l| l.contains("adopting a running container") && l.contains(t.as_str()))
    })
}
