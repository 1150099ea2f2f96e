//! `mini service update` across 3 hosts (issue #6): publishing a port on a running service
//! and withdrawing it, by a rolling replacement of its tasks; a clashing port is refused with
//! nothing changed. Root only.

use std::collections::BTreeSet;
use std::time::Duration;

use mini_tests::web::{HOSTNAME_SERVER as WEB, http_get};
use mini_tests::{Cluster, Host, wait_for};

/// Ids of the tasks meant to run, and of all tasks, of `service`.
fn task_ids(host: &Host, service: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let all = host.tasks(service);
    let id = |t: &serde_json::Value| t["id"].as_str().unwrap_or_default().to_string();
    let running = all
        .iter()
        .filter(|t| t["desired_state"] == "Running" && t["current_state"] == "Running")
        .map(id)
        .collect();
    (running, all.iter().map(id).collect())
}

/// Waits until `port` answers from outside on every node with a web task's hostname.
fn wait_published(cluster: &Cluster, port: u16) {
    for k in 1..=3 {
        let get = http_get(&cluster.addr(k), port);
        wait_for(
            &format!("port {port} answering on h{k}"),
            Duration::from_secs(20),
            || {
                let out = cluster.exec_outside(&["sh", "-c", &get]);
                if out.success && out.stdout.trim().starts_with("web.") {
                    Ok(())
                } else {
                    Err(format!("{}{}", out.stdout, out.stderr))
                }
            },
        );
    }
}

#[test]
fn publishing_and_withdrawing_a_port_by_update() {
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    let mut web = vec!["service", "create", "--name", "web", "--replicas", "2"];
    web.extend_from_slice(WEB);
    m.ok(&web);
    m.wait_running("web", 2);
    let (before, _) = task_ids(&m, "web");

    // Publish: the command waits for the rollout, then the port answers on every node.
    let out = m.ok(&["service", "update", "--publish-add", "8081:80", "web"]);
    assert!(
        out.stdout.contains("verify: Service converged"),
        "{}",
        out.stdout
    );
    let svc = &m.ok(&["service", "inspect", "web"]).json()[0];
    assert!(
        svc.to_string().contains("8081"),
        "inspect shows no port: {svc}"
    );
    let (after, all) = task_ids(&m, "web");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.is_disjoint(&before),
        "tasks were not replaced: before {before:?} after {after:?}"
    );
    assert!(
        before.is_subset(&all),
        "replaced tasks are kept as history: {all:?}"
    );
    wait_published(&cluster, 8081);

    // Another service's port cannot be taken: refused, nothing changes.
    m.ok(&[
        "service",
        "create",
        "--name",
        "other",
        "--publish",
        "8082:80",
        "host",
        "sleep",
        "100000",
    ]);
    let version = |h: &Host| h.ok(&["service", "inspect", "web"]).json()[0]["version"].clone();
    let v = version(&m);
    let clash = m.fails(&["service", "update", "--publish-add", "8082:80", "web"]);
    assert!(
        clash.contains("8082/tcp") && clash.contains("other"),
        "clash error should name the port and the service: {clash}"
    );
    let not_there = m.fails(&["service", "update", "--publish-rm", "9999", "web"]);
    assert!(
        not_there.contains("does not publish port 9999/tcp"),
        "{not_there}"
    );
    assert_eq!(version(&m), v, "a refused update changed the service");
    assert_eq!(
        task_ids(&m, "web").0,
        after,
        "a refused update replaced tasks"
    );

    // Withdraw: the port stops answering everywhere and leaves no nft element behind.
    let out = m.ok(&["service", "update", "--publish-rm", "8081", "web"]);
    assert!(
        out.stdout.contains("verify: Service converged"),
        "{}",
        out.stdout
    );
    for k in 1..=3 {
        let get = http_get(&cluster.addr(k), 8081);
        wait_for(
            &format!("port 8081 withdrawn on h{k}"),
            Duration::from_secs(15),
            || {
                let out = cluster.exec_outside(&["sh", "-c", &get]);
                let rules = cluster.exec_in_host(k, &["nft", "list", "ruleset"]).stdout;
                if !out.stdout.contains("web.") && !rules.contains("8081") {
                    Ok(())
                } else {
                    Err(format!("answer {:?}; ruleset:\n{rules}", out.stdout))
                }
            },
        );
    }
    // The other service's port is untouched.
    let rules = cluster.exec_in_host(2, &["nft", "list", "ruleset"]).stdout;
    assert!(rules.contains("8082"), "{rules}");
}
