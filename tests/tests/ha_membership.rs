//! Manager membership changes end to end (issue #7; root only), on 4 hosts: h1 inits, h2–h4 join
//! as workers, a service runs one task on h3.
//!
//! - `node promote h2 h3`: both show Reachable in `node ls` and accept writes;
//! - `node demote h3` (run on h2): the Raft voters shrink to 2, h3's API answers "not a swarm
//!   manager" like a plain worker's, its task keeps running, `node ls` shows it as a Ready worker,
//!   and a restarted h3 comes back as a worker;
//! - `node promote h3` again: it rejoins with a new Raft id;
//! - demoting the leader: leadership moves, the old leader becomes a worker; promoted back;
//! - a follower's `node ls` shows a killed manager Unreachable; demoted while down, it comes
//!   back as a worker; promoted again, it shows Reachable;
//! - `swarm leave` on a manager is refused without --force, naming the quorum risk; with
//!   --force the other managers' configuration shrinks to 2 voters and writes still succeed;
//! - the last manager can neither be demoted nor leave without --force.

use std::collections::BTreeSet;
use std::time::Duration;

use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

/// How long a membership change may take to show everywhere.
const SETTLE: Duration = Duration::from_secs(30);

fn info(host: &Host) -> Result<Value, String> {
    host.info()
}

fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The Raft voters as host `k` sees them, once it has a leader and no learner.
fn voters(cluster: &Cluster, k: usize) -> Result<BTreeSet<u64>, String> {
    let i = info(&cluster.host(k))?;
    let leader = i["raft"]["leader_node_id"].as_str().unwrap_or_default();
    if !i["is_manager"].as_bool().unwrap_or(false) || leader.is_empty() {
        return Err(format!("h{k}: no manager or no leader: {i}"));
    }
    if !ids(&i["raft"]["learners"]).is_empty() {
        return Err(format!("h{k}: learners still catching up: {i}"));
    }
    Ok(ids(&i["raft"]["voters"]))
}

/// Waits until every host in `managers` sees `n` voters and the same leader; returns the voters.
fn wait_voters(cluster: &Cluster, managers: &[usize], n: usize) -> BTreeSet<u64> {
    wait_for(
        &format!("{n} voters seen by managers {managers:?}"),
        SETTLE,
        || {
            let seen: Vec<BTreeSet<u64>> = managers
                .iter()
                .map(|&k| voters(cluster, k))
                .collect::<Result<_, _>>()?;
            if seen.iter().all(|v| v.len() == n && *v == seen[0]) {
                Ok(seen[0].clone())
            } else {
                Err(format!("voters: {seen:?}"))
            }
        },
    )
}

/// The host whose node is the leader, as host `k` sees it.
fn leader_host(cluster: &Cluster, node_ids: &[String], k: usize) -> Result<usize, String> {
    let i = info(&cluster.host(k))?;
    let leader = i["raft"]["leader_node_id"].as_str().unwrap_or_default();
    node_ids
        .iter()
        .position(|id| id == leader)
        .map(|p| p + 1)
        .ok_or_else(|| format!("h{k} knows no leader: {i}"))
}

/// `node ls` on host `k`, by hostname: (role, status, manager status).
fn node_ls(cluster: &Cluster, k: usize) -> Result<Vec<(String, String, String, String)>, String> {
    let out = cluster.host(k).listed(&["node", "ls"], "node");
    if !out.success {
        return Err(out.stderr);
    }
    Ok(out
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let s = |f: &str| n[f].as_str().unwrap_or_default().to_string();
            (s("hostname"), s("role"), s("status"), s("manager_status"))
        })
        .collect())
}

/// Waits until host `k`'s `node ls` shows `hostname` with this role, status and manager status.
fn wait_node(cluster: &Cluster, k: usize, hostname: &str, role: &str, status: &str, ms: &str) {
    wait_for(
        &format!("h{k}'s node ls to show {hostname} as {role}/{status}/{ms:?}"),
        SETTLE,
        || {
            let nodes = node_ls(cluster, k)?;
            let row = nodes.iter().find(|n| n.0 == hostname);
            match row {
                Some((_, r, s, m)) if r == role && s == status && m == ms => Ok(()),
                _ => Err(format!("{nodes:?}")),
            }
        },
    );
}

/// The id of the one running task of `service`, as host `k` lists it.
fn running_task(cluster: &Cluster, k: usize, service: &str) -> Result<String, String> {
    let out = cluster.host(k).listed(&["service", "ps", service], "task");
    if !out.success {
        return Err(out.stderr);
    }
    let tasks = out.json().as_array().cloned().unwrap_or_default();
    match tasks.as_slice() {
        [t] if t["current_state"] == "Running" => {
            Ok(t["id"].as_str().unwrap_or_default().to_string())
        }
        _ => Err(out.stdout),
    }
}

/// Waits until host `k` answers manager calls with the worker's "not a swarm manager" message.
fn wait_not_manager(cluster: &Cluster, k: usize) -> String {
    wait_for(&format!("h{k} to answer as a worker"), SETTLE, || {
        let out = cluster.host(k).mini(&["network", "ls"]);
        if !out.success && out.stderr.contains("not a swarm manager") {
            Ok(out.stderr)
        } else {
            Err(format!(
                "success={} {}{}",
                out.success, out.stdout, out.stderr
            ))
        }
    })
}

#[test]
fn managers_are_promoted_demoted_and_leave() {
    let mut cluster = Cluster::start(4);
    cluster.init();
    cluster.join_all();
    let node_ids: Vec<String> = (1..=4).map(|k| cluster.host(k).node_id()).collect();
    cluster.host(1).ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "app",
        "--constraint",
        "node.hostname==h3",
        "host",
        "sleep",
        "100000",
    ]);
    let task = wait_for("the app task running on h3", SETTLE, || {
        running_task(&cluster, 1, "app")
    });

    // Promote two workers: they become voters, show Reachable, and accept writes.
    cluster.host(1).ok(&["node", "promote", "h2", "h3"]);
    let first_voters = wait_voters(&cluster, &[1, 2, 3], 3);
    for h in ["h2", "h3"] {
        wait_node(&cluster, 1, h, "manager", "ready", "reachable");
    }
    cluster
        .host(2)
        .ok(&["network", "create", "-d", "overlay", "via-h2"]);
    cluster
        .host(3)
        .ok(&["network", "create", "-d", "overlay", "via-h3"]);

    // A manager cannot be removed before it is demoted; nothing changes.
    let rm = cluster.host(1).fails(&["node", "rm", "h2"]);
    assert!(rm.contains("demote it first"), "{rm}");
    assert_eq!(voters(&cluster, 1).unwrap(), first_voters);

    // A plain worker's answer, for comparison.
    let worker_err = cluster.host(4).fails(&["network", "ls"]);
    assert!(
        worker_err.contains("not a swarm manager") && worker_err.contains("promote"),
        "{worker_err}"
    );

    // Demote h3 from another manager.
    assert_eq!(info(&cluster.host(3)).unwrap()["is_manager"], true);
    cluster.host(2).ok(&["node", "demote", "h3"]);
    let after_demote = wait_voters(&cluster, &[1, 2], 2);
    assert!(after_demote.is_subset(&first_voters), "{after_demote:?}");
    let err = wait_not_manager(&cluster, 3);
    assert!(
        err.contains("promote") && err.contains("run this command on a manager node"),
        "{err}"
    );
    assert_eq!(
        info(&cluster.host(3)).unwrap()["is_manager"],
        false,
        "h3 still reports a manager"
    );
    wait_node(&cluster, 1, "h3", "worker", "ready", "");
    wait_node(&cluster, 2, "h3", "worker", "ready", "");
    assert_eq!(
        running_task(&cluster, 2, "app").unwrap(),
        task,
        "the demotion replaced h3's task"
    );
    // Writes go on with 2 voters.
    cluster
        .host(1)
        .ok(&["network", "create", "-d", "overlay", "after-demote"]);

    // A restart comes back as a worker.
    cluster.stop_host(3);
    cluster.start_host(3);
    wait_not_manager(&cluster, 3);
    wait_node(&cluster, 1, "h3", "worker", "ready", "");
    assert_eq!(voters(&cluster, 1).unwrap(), after_demote);

    // Promote h3 again: a new Raft id, never a reused one.
    cluster.host(2).ok(&["node", "promote", "h3"]);
    let again = wait_voters(&cluster, &[1, 2, 3], 3);
    let new_ids: Vec<&u64> = again.difference(&after_demote).collect();
    assert_eq!(new_ids.len(), 1, "{again:?}");
    assert!(
        first_voters.iter().all(|old| old < new_ids[0]),
        "a Raft id was reused: before {first_voters:?}, now {again:?}"
    );
    wait_node(&cluster, 1, "h3", "manager", "ready", "reachable");
    cluster
        .host(3)
        .ok(&["network", "create", "-d", "overlay", "repromoted"]);

    // Demote the leader: leadership moves first.
    let leader = wait_for("a leader", SETTLE, || leader_host(&cluster, &node_ids, 2));
    let others: Vec<usize> = [1, 2, 3].into_iter().filter(|&k| k != leader).collect();
    cluster
        .host(leader)
        .ok(&["node", "demote", &format!("h{leader}")]);
    wait_voters(&cluster, &others, 2);
    let new_leader = wait_for("a new leader", SETTLE, || {
        leader_host(&cluster, &node_ids, others[0])
    });
    assert_ne!(new_leader, leader);
    wait_not_manager(&cluster, leader);
    wait_node(
        &cluster,
        others[0],
        &format!("h{leader}"),
        "worker",
        "ready",
        "",
    );
    cluster
        .host(others[1])
        .ok(&["network", "create", "-d", "overlay", "after-leader-demote"]);
    cluster
        .host(others[0])
        .ok(&["node", "promote", &format!("h{leader}")]);
    wait_voters(&cluster, &[1, 2, 3], 3);

    // A follower sees a killed manager as Unreachable (it asks the leader).
    let leader = wait_for("a leader", SETTLE, || leader_host(&cluster, &node_ids, 1));
    let followers: Vec<usize> = [1, 2, 3].into_iter().filter(|&k| k != leader).collect();
    let (victim, watcher) = (followers[0], followers[1]);
    cluster.kill_host(victim);
    wait_node(
        &cluster,
        watcher,
        &format!("h{victim}"),
        "manager",
        "down",
        "unreachable",
    );
    // Demoted while it is down: back up, it finds out from the others and becomes a worker.
    cluster
        .host(watcher)
        .ok(&["node", "demote", &format!("h{victim}")]);
    wait_voters(&cluster, &[leader, watcher], 2);
    cluster.start_host(victim);
    wait_not_manager(&cluster, victim);
    wait_node(
        &cluster,
        watcher,
        &format!("h{victim}"),
        "worker",
        "ready",
        "",
    );
    cluster
        .host(leader)
        .ok(&["node", "promote", &format!("h{victim}")]);
    wait_node(
        &cluster,
        watcher,
        &format!("h{victim}"),
        "manager",
        "ready",
        "reachable",
    );
    wait_voters(&cluster, &[1, 2, 3], 3);

    // `swarm leave` on a manager: refused without --force, and nothing changes.
    let leaver = followers[1];
    let err = cluster.host(leaver).fails(&["swarm", "leave"]);
    assert!(err.contains("--force") && err.contains("quorum"), "{err}");
    assert_eq!(voters(&cluster, leaver).unwrap().len(), 3);
    assert_eq!(info(&cluster.host(leaver)).unwrap()["is_manager"], true);

    // With --force it leaves the Raft group first: the others are 2 voters and keep writing.
    cluster.host(leaver).ok(&["swarm", "leave", "--force"]);
    let remaining: Vec<usize> = [1, 2, 3].into_iter().filter(|&k| k != leaver).collect();
    wait_voters(&cluster, &remaining, 2);
    for &k in &remaining {
        cluster.host(k).ok(&[
            "network",
            "create",
            "-d",
            "overlay",
            &format!("after-leave-{k}"),
        ]);
    }
    wait_node(
        &cluster,
        remaining[0],
        &format!("h{leaver}"),
        "worker",
        "down",
        "",
    );
    let gone = cluster.host(leaver).fails(&["network", "ls"]);
    assert!(gone.contains("not a swarm manager"), "{gone}");

    // Down to one manager: the last one can neither be demoted nor leave without --force.
    let (last, other) = (remaining[0], remaining[1]);
    cluster
        .host(last)
        .ok(&["node", "demote", &format!("h{other}")]);
    wait_voters(&cluster, &[last], 1);
    let err = cluster
        .host(last)
        .fails(&["node", "demote", &format!("h{last}")]);
    assert!(err.contains("last manager"), "{err}");
    let err = cluster.host(last).fails(&["swarm", "leave"]);
    assert!(
        err.contains("last manager") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(voters(&cluster, last).unwrap().len(), 1);
}
