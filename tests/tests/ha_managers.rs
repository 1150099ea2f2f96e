//! Highly available managers (issue #7), end to end on 3 managers and 1 worker (root only):
//! managers join by token and become voters; a client keeps writing through a follower while the
//! leader is SIGKILLed with its link cut; afterwards every acknowledged write exists on the
//! survivors, writes resumed, the worker's tasks kept running; the old leader comes back and
//! catches up; with 2 of 3 managers down a write fails with "no quorum" within the bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mini_tests::cli::run_mini;
use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

const MANAGERS: [usize; 3] = [1, 2, 3];
const WORKER: usize = 4;

fn info(host: &Host) -> Result<Value, String> {
    host.info()
}

/// Host index of the node with id `node_id`.
fn host_of(cluster: &Cluster, node_id: &str) -> Option<usize> {
    (1..=cluster.len())
        .find(|&k| info(&cluster.host(k)).is_ok_and(|i| i["node_id"].as_str() == Some(node_id)))
}

/// The leader as host `k` sees it, once it sees 3 voters and no learner.
fn leader_seen_by(cluster: &Cluster, k: usize) -> Result<usize, String> {
    let i = info(&cluster.host(k))?;
    let voters = i["raft"]["voters"].as_array().map_or(0, Vec::len);
    let learners = i["raft"]["learners"].as_array().map_or(0, Vec::len);
    let leader = i["raft"]["leader_node_id"].as_str().unwrap_or_default();
    if voters != 3 || learners != 0 || leader.is_empty() {
        return Err(i.to_string());
    }
    host_of(cluster, leader).ok_or_else(|| format!("no host has node id {leader}"))
}

fn task_ids(host: &Host, service: &str) -> Result<Vec<String>, String> {
    let out = host.listed(&["service", "ps", service], "task");
    if !out.success {
        return Err(out.stderr);
    }
    let tasks: Vec<Value> = out.json().as_array().cloned().unwrap_or_default();
    let mut running: Vec<String> = tasks
        .iter()
        .filter(|t| t["current_state"] == "Running")
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect();
    running.sort();
    if running.len() == 2 && tasks.len() == 2 {
        Ok(running)
    } else {
        Err(out.stdout)
    }
}

fn networks(host: &Host) -> Result<Vec<String>, String> {
    let out = host.listed(&["network", "ls", "--filter", "scope=swarm"], "network");
    if !out.success {
        return Err(out.stderr);
    }
    Ok(out
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect())
}

/// What the writer saw: acknowledged names with when they were acknowledged, and failures.
struct Written {
    acked: Vec<(String, Instant)>,
    failures: Vec<(Instant, String)>,
}

/// Creates networks `w0, w1, …` through the daemon at `socket` until `stop`.
fn writer(socket: String, stop: Arc<AtomicBool>) -> Written {
    let mut written = Written {
        acked: Vec::new(),
        failures: Vec::new(),
    };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("w{n}");
        n += 1;
        let out = run_mini(&socket, &["network", "create", "-d", "overlay", &name]);
        if out.success {
            written.acked.push((name, Instant::now()));
        } else {
            written.failures.push((Instant::now(), out.stderr));
        }
    }
    written
}

#[test]
fn managers_fail_over_without_losing_a_write() {
    let mut cluster = Cluster::start(4);
    cluster.init();
    for k in [2, 3, WORKER] {
        cluster.join(k, if k == WORKER { "worker" } else { "manager" });
    }
    cluster.wait_nodes_ready(4);
    let leader = wait_for(
        "3 voters and a leader on every manager",
        Duration::from_secs(20),
        || {
            let seen: Vec<usize> = MANAGERS
                .iter()
                .map(|&k| leader_seen_by(&cluster, k))
                .collect::<Result<_, _>>()?;
            if seen.iter().all(|&l| l == seen[0]) {
                Ok(seen[0])
            } else {
                Err(format!("managers disagree on the leader: {seen:?}"))
            }
        },
    );
    let nodes = cluster
        .host(leader)
        .ok_listed(&["node", "ls"], "node")
        .json();
    let statuses: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["manager_status"].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, ["leader", "reachable", "reachable"], "{nodes}");

    // A write through a follower is forwarded; the follower reads it back at once.
    let follower = *MANAGERS.iter().find(|&&k| k != leader).unwrap();
    cluster
        .host(follower)
        .ok(&["network", "create", "-d", "overlay", "appnet"]);
    cluster.host(follower).ok(&[
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
        "node.hostname==h4",
        "host",
        "sleep",
        "100000",
    ]);
    let tasks_before = wait_for("2 app tasks running on h4", Duration::from_secs(30), || {
        task_ids(&cluster.host(follower), "app")
    });

    // Keep writing through the follower while the leader dies.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (socket, stop) = (cluster.host(follower).socket(), stop.clone());
        std::thread::spawn(move || writer(socket, stop))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    cluster.kill_host(leader);
    let survivors: Vec<usize> = MANAGERS.iter().copied().filter(|&k| k != leader).collect();
    let new_leader = wait_for("a new leader", Duration::from_secs(10), || {
        let i = info(&cluster.host(survivors[0]))?;
        let id = i["raft"]["leader_node_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match host_of(&cluster, &id) {
            Some(k) if k != leader => Ok(k),
            _ => Err(i.to_string()),
        }
    });
    // Let the writer go on for a while after the failover.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let written = writing.join().expect("writer thread");
    let before_kill = written.acked.iter().filter(|(_, t)| *t < killed_at).count();
    let first_after = written
        .acked
        .iter()
        .find(|(_, t)| *t > killed_at)
        .map(|(_, t)| t.duration_since(killed_at));
    eprintln!(
        "leader h{leader} killed; new leader h{new_leader}; {} writes acknowledged ({before_kill} before the kill), \
         first acknowledged write {first_after:?} after the kill; failures: {:?}",
        written.acked.len(),
        written
            .failures
            .iter()
            .map(|(t, e)| (t.saturating_duration_since(killed_at), e.trim()))
            .collect::<Vec<_>>()
    );
    assert!(before_kill > 0, "no write acknowledged before the kill");
    let first_after = first_after.expect("writes resumed after the failover");
    assert!(
        first_after < Duration::from_secs(5),
        "writes resumed only {first_after:?} after the kill"
    );

    // Every acknowledged write is on both survivors.
    for &k in &survivors {
        let names = wait_for(
            &format!("acknowledged networks on h{k}"),
            Duration::from_secs(10),
            || {
                let names = networks(&cluster.host(k))?;
                let missing: Vec<&String> = written
                    .acked
                    .iter()
                    .map(|(n, _)| n)
                    .filter(|n| !names.contains(n))
                    .collect();
                if missing.is_empty() {
                    Ok(names)
                } else {
                    Err(format!("missing {missing:?}"))
                }
            },
        );
        assert!(names.contains(&"appnet".to_string()));
    }
    // The worker's tasks kept running: same ids, still running.
    let tasks_after = wait_for(
        "app tasks after the failover",
        Duration::from_secs(30),
        || task_ids(&cluster.host(survivors[0]), "app"),
    );
    assert_eq!(
        tasks_before, tasks_after,
        "the failover replaced the worker's tasks"
    );

    // The old leader comes back and catches up.
    cluster.restart_host(leader);
    wait_for("the old leader catches up", Duration::from_secs(20), || {
        let names = networks(&cluster.host(leader))?;
        match written.acked.iter().find(|(n, _)| !names.contains(n)) {
            None => Ok(()),
            Some((n, _)) => Err(format!("{n} missing on h{leader}")),
        }
    });

    // With 2 of 3 managers down, a write fails with "no quorum" within the bound.
    let last = survivors[1];
    for k in [leader, survivors[0]] {
        cluster.kill_host(k);
    }
    let started = Instant::now();
    let err = cluster
        .host(last)
        .fails(&["network", "create", "-d", "overlay", "nq"]);
    let took = started.elapsed();
    assert!(err.contains("no quorum"), "{err}");
    assert!(
        took < Duration::from_secs(8),
        "the write failed only after {took:?}: {err}"
    );
    eprintln!("no quorum after {took:?}: {}", err.trim());
}
