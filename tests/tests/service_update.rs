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
    let mut web = vec![
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
    ];
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
        "--detach",
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

/// The network ids of a task's attachments.
fn task_networks(t: &serde_json::Value) -> BTreeSet<String> {
    t["networks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["network"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `service update --network-add/--network-rm` replaces the tasks by ones on the new
/// networks; bad edits are refused and change nothing; labels are edited in place.
#[test]
fn networks_and_labels_change_by_update() {
    let cluster = Cluster::start(2);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.31.0.0/24",
        "front",
    ]);
    m.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.32.0.0/24",
        "back",
    ]);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "app",
        "--replicas",
        "2",
        "--network",
        "front",
        "--stop-grace-period",
        "1s",
        "host",
        "sleep",
        "1d",
    ]);
    m.wait_running("app", 2);

    // Refused, nothing changes: a network it is not on, one it is on, the ingress network.
    let version = m.ok(&["service", "inspect", "app"]).json()[0]["version"].clone();
    let err = m.fails(&["service", "update", "--network-rm", "back", "app"]);
    assert!(err.contains("not attached to network back"), "{err}");
    let err = m.fails(&["service", "update", "--network-add", "front", "app"]);
    assert!(err.contains("already attached to network front"), "{err}");
    let err = m.fails(&["service", "update", "--network-add", "ingress", "app"]);
    assert!(err.contains("ingress"), "{err}");
    let err = m.fails(&["service", "update", "--network-add", "nowhere", "app"]);
    assert!(err.contains("nowhere"), "{err}");
    assert_eq!(
        m.ok(&["service", "inspect", "app"]).json()[0]["version"],
        version
    );

    // Move from front to back: every running task ends up on back only, with a back address.
    m.ok(&[
        "service",
        "update",
        "--network-add",
        "back",
        "--network-rm",
        "front",
        "app",
    ]);
    let want: BTreeSet<String> = ["back".to_string()].into();
    wait_for("app's tasks on back only", Duration::from_secs(60), || {
        let running = m.running_tasks("app");
        let on: Vec<BTreeSet<String>> = running.iter().map(task_networks).collect();
        if running.len() == 2 && on.iter().all(|n| *n == want) {
            Ok(())
        } else {
            Err(format!("{on:?}"))
        }
    });
    for t in m.running_tasks("app") {
        let addr = t["networks"][0]["addr"].as_str().unwrap_or_default();
        assert!(addr.starts_with("10.32.0."), "{t}");
    }
    // front has no user left: it can be removed.
    wait_for("network rm front", Duration::from_secs(30), || {
        let out = m.mini(&["network", "rm", "front"]);
        if out.success { Ok(()) } else { Err(out.stderr) }
    });

    // Labels: service and container labels are edited.
    m.ok(&[
        "service",
        "update",
        "--label-add",
        "team=db",
        "--container-label-add",
        "log=json",
        "app",
    ]);
    let app = &m.ok(&["service", "inspect", "app"]).json()[0];
    assert_eq!(app["labels"]["team"], "db", "{app}");
    assert_eq!(app["container_labels"]["log"], "json", "{app}");
    m.ok(&["service", "update", "--label-rm", "team", "app"]);
    let app = &m.ok(&["service", "inspect", "app"]).json()[0];
    assert!(app["labels"].get("team").is_none(), "{app}");

    // The endpoint mode: dnsrr has no VIP; back to vip gets one on back.
    m.ok(&["service", "update", "--endpoint-mode", "dnsrr", "app"]);
    let app = &m.ok(&["service", "inspect", "app"]).json()[0];
    assert_eq!(app["endpoint_mode"], "dnsrr", "{app}");
    assert!(app["vips"].as_array().is_none_or(Vec::is_empty), "{app}");
    m.ok(&["service", "update", "--endpoint-mode", "vip", "app"]);
    let app = &m.ok(&["service", "inspect", "app"]).json()[0];
    let vip = app["vips"][0]["addr"].as_str().unwrap_or_default();
    assert!(vip.starts_with("10.32.0."), "{app}");
    m.wait_running("app", 2);
}

/// Issue #16: `service update`s of one service from many CLIs at once all succeed with no change
/// lost (each CLI reads the service, edits it and writes it with the version it read; when
/// another update landed first the manager answers "update out of sequence" and the CLI reads
/// and edits again, as Docker's does). A caller that pins a version that is no longer current
/// gets Docker's "update out of sequence", and nothing changes.
#[test]
fn concurrent_updates_of_one_service_all_land() {
    let cluster = Cluster::start(1);
    cluster.init();
    let m = cluster.host(1);
    m.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "conc",
        "--replicas",
        "0",
        "host",
        "sleep",
        "100000",
    ]);
    const WRITERS: usize = 8;
    let socket = m.socket();
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|i| {
                let socket = socket.clone();
                s.spawn(move || {
                    let label = format!("w{i}=v{i}");
                    let env = format!("E{i}=x");
                    mini_tests::cli::run_mini(
                        &socket,
                        &[
                            "service",
                            "update",
                            "--detach",
                            "--label-add",
                            &label,
                            "--env-add",
                            &env,
                            "conc",
                        ],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outs.iter().enumerate() {
        assert!(out.success, "writer {i} failed: {}", out.stderr);
    }
    let svc = m.ok(&["service", "inspect", "conc"]).json()[0].to_string();
    for i in 0..WRITERS {
        assert!(
            svc.contains(&format!("\"w{i}\"")) && svc.contains(&format!("E{i}=x")),
            "the change of writer {i} was lost: {svc}"
        );
    }

    // A pinned version that is no longer current: refused with Docker's words, nothing changed.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        use mini_proto::v1::{GetRequest, UpdateServiceRequest};
        let mut api = mini_tests::api::connect(&socket).await;
        let get = || GetRequest {
            name_or_id: "conc".into(),
        };
        let service = api.get_service(get()).await.unwrap().into_inner();
        let version = service.meta.unwrap().version;
        let mut spec = service.spec.clone().unwrap();
        spec.labels.insert("stale".into(), "yes".into());
        let refused = api
            .update_service(UpdateServiceRequest {
                name_or_id: "conc".into(),
                version: version - 1,
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Aborted, "{refused:?}");
        assert!(
            refused.message().starts_with("update out of sequence"),
            "{}",
            refused.message()
        );
        let after = api.get_service(get()).await.unwrap().into_inner();
        assert_eq!(after.meta.unwrap().version, version, "nothing changed");
        assert!(!after.spec.unwrap().labels.contains_key("stale"));
    });
}
