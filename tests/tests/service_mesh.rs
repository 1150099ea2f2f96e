//! Service discovery and the routing mesh across 3 hosts (issue #6): names
//! from the embedded DNS, VIPs balanced with nftables on every node, published
//! ports answering on every node. Root only.

use std::collections::BTreeSet;
use std::time::Duration;

use mini_tests::web::{HOSTNAME_SERVER as WEB, http_get};
use mini_tests::{Cluster, Host, wait_for};

fn create(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["service", "create", "--detach"];
    all.extend_from_slice(args);
    host.ok(&all).stdout.trim().to_string()
}

/// Hostnames answering `addr:port` from the client task, over `tries` requests.
fn answers(host: &Host, client: &str, addr: &str, port: u16, tries: usize) -> Vec<String> {
    (0..tries)
        .filter_map(|_| {
            let out = host.mini(&["exec", client, "sh", "-c", &http_get(addr, port)]);
            let body = out.stdout.trim().to_string();
            (out.success && !body.is_empty()).then_some(body)
        })
        .collect()
}

#[test]
fn names_vips_and_published_ports_work_on_every_node() {
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    let m = cluster.host(1);
    m.ok(&[
        "network",
        "create",
        "--subnet",
        "192.168.220.0/24",
        "appnet",
    ]);
    let mut web = vec![
        "--name",
        "web",
        "--replicas",
        "3",
        "--network",
        "appnet",
        "--publish",
        "8080:80",
    ];
    web.extend_from_slice(WEB);
    create(&m, &web);
    create(
        &m,
        &[
            "--name",
            "client",
            "--network",
            "appnet",
            "--constraint",
            "node.hostname==h1",
            "host",
            "sleep",
            "100000",
        ],
    );
    m.wait_running("web", 3);
    m.wait_running("client", 1);

    // DNS: the service name is its VIP, tasks.<service> every task IP.
    let svc = &m.ok(&["service", "inspect", "web"]).json()[0];
    let vip = svc["vips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["network"] == "appnet")
        .and_then(|v| v["addr"].as_str())
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(svc["ports"][0]["published_port"], 8080);
    let task_ips: BTreeSet<String> = m
        .ok_listed(&["service", "ps", "web"], "task")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            t["networks"]
                .as_array()?
                .iter()
                .find(|a| a["network"] == "appnet")?["addr"]
                .as_str()
                .map(|a| a.split('/').next().unwrap().to_string())
        })
        .collect();
    assert_eq!(task_ips.len(), 3);
    wait_for("web to resolve to its VIP", Duration::from_secs(10), || {
        let got = m.lookup("client.1", "web");
        if got == BTreeSet::from([vip.clone()]) {
            Ok(())
        } else {
            Err(format!("{got:?} (VIP {vip})"))
        }
    });
    wait_for(
        "tasks.web to resolve to every task",
        Duration::from_secs(10),
        || {
            let got = m.lookup("client.1", "tasks.web");
            if got == task_ips {
                Ok(())
            } else {
                Err(format!("{got:?} vs {task_ips:?}"))
            }
        },
    );
    let unknown = m.mini(&[
        "exec",
        "client.1",
        "busybox",
        "nslookup",
        "nosuchservice.cluster.local",
        "127.0.0.11",
    ]);
    assert!(
        !unknown.success
            || unknown.stdout.contains("NXDOMAIN")
            || unknown.stderr.contains("NXDOMAIN"),
        "{unknown:?}"
    );

    // The VIP reaches every replica, on all three hosts.
    let seen = wait_for(
        "the VIP to reach all 3 replicas",
        Duration::from_secs(20),
        || {
            let seen: BTreeSet<String> =
                answers(&m, "client.1", "web", 80, 12).into_iter().collect();
            if seen.len() == 3 {
                Ok(seen)
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );
    assert!(seen.iter().all(|h| h.starts_with("web.")), "{seen:?}");

    // `network inspect --verbose` shows, per node, service -> VIP -> backends.
    let views = m.ok(&["network", "inspect", "--verbose", "appnet"]).json();
    for node in views[0]["peers"].as_array().unwrap() {
        let Some(web) = node["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["service"] == "web"))
        else {
            panic!("no web service on {}: {node}", node["node"]);
        };
        assert_eq!(web["vip"], vip.as_str(), "{node}");
        let backends: BTreeSet<String> = web["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap().to_string())
            .collect();
        assert_eq!(backends, task_ips, "{node}");
    }

    // The published port answers on every node from outside the cluster, balanced.
    let mut from_outside = BTreeSet::new();
    for k in 1..=3 {
        let get = http_get(&cluster.addr(k), 8080);
        wait_for(
            &format!("port 8080 on h{k}"),
            Duration::from_secs(15),
            || {
                let out = cluster.exec_outside(&["sh", "-c", &get]);
                if out.success && out.stdout.trim().starts_with("web.") {
                    from_outside.insert(out.stdout.trim().to_string());
                    Ok(())
                } else {
                    Err(out.stderr)
                }
            },
        );
    }
    wait_for(
        "published port balancing over replicas",
        Duration::from_secs(15),
        || {
            let out = cluster.exec_outside(&["sh", "-c", &http_get(&cluster.addr(2), 8080)]);
            if out.success && out.stdout.trim().starts_with("web.") {
                from_outside.insert(out.stdout.trim().to_string());
            }
            if from_outside.len() >= 2 {
                Ok(())
            } else {
                Err(format!("{from_outside:?}"))
            }
        },
    );

    // A second service cannot publish the same port.
    let clash = m.fails(&[
        "service",
        "create",
        "--detach",
        "--name",
        "other",
        "--publish",
        "8080:80",
        "host",
        "sleep",
        "1000",
    ]);
    assert!(
        clash.contains("8080") && clash.contains("already published"),
        "{clash}"
    );

    // Scale down: the removed replicas get no more requests.
    m.ok(&["service", "scale", "--detach", "web=1"]);
    m.wait_running("web", 1);
    let remaining: String = m
        .ok_listed(&["service", "ps", "web"], "task")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["current_state"] == "Running")
        .map(|t| t["name"].as_str().unwrap().to_string())
        .unwrap();
    wait_for(
        "the VIP to reach only the remaining replica",
        Duration::from_secs(15),
        || {
            let got = answers(&m, "client.1", "web", 80, 6);
            if got.len() == 6 && got.iter().all(|h| h.starts_with(&format!("{remaining}."))) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );

    // dnsrr: no VIP, the name resolves to the task IPs.
    create(
        &m,
        &[
            "--name",
            "rr",
            "--replicas",
            "2",
            "--network",
            "appnet",
            "--endpoint-mode",
            "dnsrr",
            "host",
            "sleep",
            "100000",
        ],
    );
    m.wait_running("rr", 2);
    let rr = &m.ok(&["service", "inspect", "rr"]).json()[0];
    assert!(rr["vips"].as_array().unwrap().is_empty(), "{rr}");
    wait_for(
        "rr to resolve to its 2 task IPs",
        Duration::from_secs(10),
        || {
            let got = m.lookup("client.1", "rr");
            if got.len() == 2 && !got.contains(&vip) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );

    // service rm leaves no VIP rule in the client's sandbox and no published port on the hosts.
    m.ok(&["service", "rm", "web"]);
    let client_task = m.ok_listed(&["service", "ps", "client"], "task").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sandbox = cluster
        .host(1)
        .run_dir()
        .join("netns")
        .join(&client_task[..12]);
    wait_for(
        "no trace of web's VIP or port 8080",
        Duration::from_secs(20),
        || {
            let rules =
                mini_tests::cluster::exec_in_netns(&sandbox, &["nft", "list", "ruleset"]).stdout;
            let host_rules: Vec<String> = (1..=3)
                .map(|k| cluster.exec_in_host(k, &["nft", "list", "ruleset"]).stdout)
                .collect();
            if !rules.contains(&vip) && host_rules.iter().all(|r| !r.contains("8080")) {
                Ok(())
            } else {
                Err(format!("sandbox: {rules}\nhosts: {host_rules:?}"))
            }
        },
    );
}
