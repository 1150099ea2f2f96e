//! Node certificate lifetime and root CA rotation, as a user would try them: `swarm update
//! --cert-expiry` is honoured by the next certificate, nodes renew by themselves and stay
//! Ready, a node whose certificate expired shows Down with the reason and must join again;
//! `swarm ca --rotate` with tasks running loses no task and no overlay connectivity, every
//! node ends with a certificate of the new root, a certificate of the old root is refused
//! after it, and a join token printed before it is refused. Root only.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use mini_proto::tls::pki;
use mini_tests::{Cluster, Host, cluster::exec_in_netns, wait_for};
use serde_json::Value;

const ATTACKER: &str = env!("CARGO_BIN_EXE_attacker");
const CA_MISMATCH: &str =
    "the manager's CA does not match the join token: wrong cluster, or someone in between";

/// The DER blocks of a PEM file.
fn pem_blocks(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pem::parse_many(text)
        .expect("PEM")
        .into_iter()
        .map(|b| b.into_contents())
        .collect()
}

/// Host `h`'s certificate (DER) and the roots it trusts.
fn node_cert(h: &Host) -> (Vec<u8>, Vec<Vec<u8>>) {
    let dir = h.state_dir().join("certificates");
    let chain = pem_blocks(&dir.join("swarm-node.crt"));
    (chain[0].clone(), pem_blocks(&dir.join("swarm-root-ca.crt")))
}

/// How long a certificate was issued for (its not-before is backdated by the clock skew).
fn lifetime(cert: &[u8]) -> Duration {
    let id = pki::identity_of(cert).unwrap();
    id.not_after
        .duration_since(id.not_before + pki::CLOCK_SKEW)
        .unwrap_or_default()
}

/// `node ls`: hostname → status.
fn statuses(h: &Host) -> BTreeMap<String, String> {
    h.ok_listed(&["node", "ls"], "node")
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("hostname"), s("status"))
        })
        .collect()
}

#[test]
fn cert_expiry_is_honoured_nodes_renew_by_themselves_and_an_expired_node_must_rejoin() {
    // The hidden knob lets a test use lifetimes of seconds; users get Docker's 1h minimum.
    let mut cluster = Cluster::start_with(2, &["--min-cert-expiry", "20s"]);
    cluster.init();
    let manager = cluster.host(1);
    let info = manager.ok(&["info"]).stdout;
    assert!(
        info.contains("CA Configuration:") && info.contains("Expiry Duration: 3 months"),
        "{info}"
    );

    // Bad input: clear errors, nothing changes.
    let err = manager.fails(&["swarm", "update", "--cert-expiry", "5s"]);
    assert!(
        err.contains("minimum certificate expiry time is 20s"),
        "{err}"
    );
    let err = manager.fails(&["swarm", "update", "--cert-expiry", "3months"]);
    assert!(err.contains("not a duration"), "{err}");
    assert!(
        manager
            .ok(&["info"])
            .stdout
            .contains("Expiry Duration: 3 months")
    );

    let out = manager.ok(&["swarm", "update", "--cert-expiry", "40s"]);
    assert!(out.stdout.contains("Swarm updated."), "{}", out.stdout);
    let info = manager.ok(&["info"]).stdout;
    assert!(info.contains("Expiry Duration: 40 seconds"), "{info}");

    // The next certificate issued (a join) has the new lifetime.
    cluster.join(2, "worker");
    cluster.wait_nodes_ready(2);
    let worker = cluster.host(2);
    let (first, _) = node_cert(&worker);
    let life = lifetime(&first);
    assert!(
        life > Duration::from_secs(35) && life <= Duration::from_secs(40),
        "the worker's certificate lives {life:?}, not 40s"
    );

    // It renews by itself (between 50 % and 80 % of its life) and stays Ready.
    let started = Instant::now();
    let mut seen = vec![first.clone()];
    wait_for(
        "two renewals of the worker's certificate",
        Duration::from_secs(120),
        || {
            let (cert, _) = node_cert(&worker);
            if !seen.contains(&cert) {
                let age = pki::identity_of(&cert).unwrap();
                assert!(
                    age.not_after > SystemTime::now(),
                    "a renewed certificate is valid"
                );
                seen.push(cert);
            }
            let status = statuses(&manager);
            assert_eq!(
                status.get("h2").map(String::as_str),
                Some("ready"),
                "the worker stays Ready while it renews: {status:?}"
            );
            if seen.len() >= 3 {
                Ok(())
            } else {
                Err(format!("{} certificates so far", seen.len()))
            }
        },
    );
    eprintln!("two renewals in {:?}", started.elapsed());
    for cert in &seen[1..] {
        let life = lifetime(cert);
        assert!(life > Duration::from_secs(35) && life <= Duration::from_secs(40));
    }

    // A node down for longer than its certificate lives: Down with the reason.
    cluster.stop_host(2);
    let manager = cluster.host(1);
    let node = wait_for(
        "the stopped worker's certificate to be reported expired",
        Duration::from_secs(90),
        || {
            let out = manager.ok(&["node", "inspect", "h2"]).stdout;
            if out.contains("node certificate expired at") {
                Ok(out)
            } else {
                Err(out)
            }
        },
    );
    assert!(node.contains("mini swarm leave --force"), "{node}");
    assert_eq!(statuses(&manager)["h2"], "down");
    cluster.start_host(2);
    let worker = cluster.host(2);
    wait_for(
        "the restarted worker to log that its certificate expired",
        Duration::from_secs(60),
        || {
            let log = worker.log();
            if log.contains("certificate expired at") && log.contains("mini swarm leave --force") {
                Ok(())
            } else {
                Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
            }
        },
    );
    let manager = cluster.host(1);
    assert_eq!(
        statuses(&manager)["h2"],
        "down",
        "an expired certificate cannot authenticate"
    );

    // Docker's way out: leave, and join again — as a new node (a new id; the old entry stays
    // Down until `node rm`, as in Docker).
    let old_id = worker.node_id();
    worker.ok(&["swarm", "leave", "--force"]);
    cluster.join(2, "worker");
    let new_id = worker.node_id();
    assert_ne!(
        new_id, old_id,
        "a node that left and joined again is a new node"
    );
    wait_for("the rejoined worker Ready", Duration::from_secs(60), || {
        let nodes = manager.ok_listed(&["node", "ls"], "node").json();
        let ready = nodes.as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == new_id.as_str() && n["status"] == "ready")
        });
        if ready {
            Ok(())
        } else {
            Err(nodes.to_string())
        }
    });
}

/// (task id, hostname, overlay IP) of the service's running tasks.
fn running(h: &Host, service: &str) -> Vec<(String, String, String)> {
    h.tasks(service)
        .iter()
        .filter(|t| t["current_state"] == "Running" && t["desired_state"] == "Running")
        .map(|t| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let ip = s(&t["networks"][0]["addr"])
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (s(&t["id"]), s(&t["node"]), ip)
        })
        .collect()
}

/// Pings from every task's sandbox to every other task once; the failed pairs.
fn ping_all(cluster: &Cluster, tasks: &[(String, String, String)]) -> Vec<String> {
    let mut failed = Vec::new();
    for (id, node, _) in tasks {
        let k: usize = node.trim_start_matches('h').parse().expect("host number");
        let sandbox = cluster.host(k).run_dir().join("netns").join(&id[..12]);
        for (_, other, ip) in tasks.iter().filter(|t| &t.0 != id) {
            let out = exec_in_netns(&sandbox, &["ping", "-c", "1", "-W", "2", ip]);
            if !out.success {
                failed.push(format!("{node} -> {other} ({ip})"));
            }
        }
    }
    failed
}

/// The attacker's outcome of a heartbeat to `target` with the certificates in `dir`.
fn heartbeat_with(cluster: &Cluster, from: usize, target: &str, dir: &str) -> String {
    let out = cluster.exec_in_host(from, &[ATTACKER, target, "cert", dir, ""]);
    assert!(out.success, "attacker failed: {}", out.stderr);
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(m, _)| *m == "/mini.v1.Dispatcher/Heartbeat")
        .map(|(_, o)| o.to_string())
        .unwrap_or_else(|| format!("no heartbeat outcome in {}", out.stdout))
}

#[test]
fn ca_rotation_keeps_tasks_and_connectivity_and_ends_the_old_root() {
    let cluster = Cluster::start(4);
    cluster.init();
    cluster.join(2, "manager");
    cluster.join(3, "worker");
    cluster.wait_nodes_ready(3);
    let manager = cluster.host(1);
    manager.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "192.168.210.0/24",
        "rotnet",
    ]);
    manager.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "pinger",
        "--mode",
        "global",
        "--network",
        "rotnet",
        "host",
        "sleep",
        "100000",
    ]);
    let tasks = wait_for("3 running tasks", Duration::from_secs(60), || {
        let t = running(&manager, "pinger");
        if t.len() == 3 {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    });
    wait_for(
        "every task reaches every other",
        Duration::from_secs(20),
        || {
            let failed = ping_all(&cluster, &tasks);
            if failed.is_empty() {
                Ok(())
            } else {
                Err(format!("{failed:?}"))
            }
        },
    );

    // Before: the root `swarm ca` prints is the one the nodes trust; a token; a copy of a
    // worker's certificate and key (accepted now).
    let old_root_pem = manager.ok(&["swarm", "ca"]).stdout;
    let old_root = pem::parse(&old_root_pem).unwrap().into_contents();
    assert_eq!(node_cert(&manager).1, vec![old_root.clone()]);
    let old_token = manager
        .ok(&["swarm", "join-token", "-q", "worker"])
        .stdout
        .trim()
        .to_string();
    let kept = std::env::temp_dir().join(format!("{}-h3-old-certs", cluster.prefix()));
    let _ = std::fs::remove_dir_all(&kept);
    std::fs::create_dir_all(&kept).unwrap();
    for f in ["swarm-root-ca.crt", "swarm-node.crt", "swarm-node.key"] {
        std::fs::copy(
            cluster.host(3).state_dir().join("certificates").join(f),
            kept.join(f),
        )
        .unwrap();
    }
    let kept_dir = kept.display().to_string();
    // (Not tried on a manager before the rotation: the attacker also calls Leave, which would
    // mark host 3 as gone.)
    let (kept_cert, _) = node_cert(&cluster.host(3));
    assert!(pki::issued_by(&kept_cert, &old_root));

    // Pings keep going across the overlay while the rotation runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let stop = stop.clone();
        let (a, b) = (tasks[0].clone(), tasks[1].clone());
        let k: usize = a.1.trim_start_matches('h').parse().unwrap();
        let sandbox = cluster.host(k).run_dir().join("netns").join(&a.0[..12]);
        std::thread::spawn(move || {
            let (mut sent, mut lost) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = exec_in_netns(&sandbox, &["ping", "-c", "1", "-W", "1", &b.2]);
                sent += 1;
                if !out.success {
                    lost += 1;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (sent, lost)
        })
    };
    let started = Instant::now();
    let out = manager.ok(&["swarm", "ca", "--rotate"]);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, lost) = pinger.join().unwrap();
    eprintln!(
        "rotation took {took:?}; pings during it: {sent} sent, {lost} lost\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("desired root digest: sha256:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Progress: 3 out of 3 nodes have rotated their certificates"),
        "{}",
        out.stdout
    );
    let new_root = pem::parse(&out.stdout[out.stdout.find("-----BEGIN").unwrap()..])
        .unwrap()
        .into_contents();
    assert_ne!(new_root, old_root);
    assert_eq!(
        manager.ok(&["swarm", "ca"]).stdout,
        pki::certificate_pem(&new_root)
    );
    assert!(
        sent > 0 && lost == 0,
        "{lost} of {sent} pings lost during the rotation"
    );
    assert!(
        manager
            .ok(&["info"])
            .stdout
            .contains("Root Rotation In Progress: false")
    );

    // Every node: a certificate of the new root, and only the new root trusted.
    for k in 1..=3 {
        let h = cluster.host(k);
        wait_for(
            &format!("host {k} to trust only the new root"),
            Duration::from_secs(20),
            || {
                let (cert, roots) = node_cert(&h);
                if pki::issued_by(&cert, &new_root) && roots == vec![new_root.clone()] {
                    Ok(())
                } else {
                    Err(format!("{} roots", roots.len()))
                }
            },
        );
    }
    // No task lost or replaced, and the overlay still works.
    let after = running(&manager, "pinger");
    let ids = |t: &[(String, String, String)]| {
        let mut v: Vec<String> = t.iter().map(|t| t.0.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&after), ids(&tasks), "the same tasks run");
    let failed = ping_all(&cluster, &after);
    assert!(failed.is_empty(), "after the rotation: {failed:?}");
    assert_eq!(
        statuses(&manager)
            .values()
            .filter(|s| *s == "ready")
            .count(),
        3
    );

    // A certificate of the old root is refused by both managers.
    for k in [1, 2] {
        let addr = format!("{}:2377", cluster.addr(k));
        wait_for(
            &format!("the old root's certificate refused by host {k}"),
            Duration::from_secs(10),
            || {
                let seen = heartbeat_with(&cluster, 3, &addr, &kept_dir);
                if seen == "Unauthenticated" || seen == "TRANSPORT" {
                    Ok(())
                } else {
                    Err(seen)
                }
            },
        );
    }
    let _ = std::fs::remove_dir_all(&kept);

    // The token printed before names the old root: refused; the new one works.
    let new_token = manager
        .ok(&["swarm", "join-token", "-q", "worker"])
        .stdout
        .trim()
        .to_string();
    assert_ne!(new_token, old_token, "tokens carry the new root's digest");
    let (old_parts, new_parts): (Vec<&str>, Vec<&str>) = (
        old_token.split('-').collect(),
        new_token.split('-').collect(),
    );
    assert_eq!(
        old_parts[3], new_parts[3],
        "the secret is unchanged, the digest is new"
    );
    let remote = format!("{}:2377", cluster.addr(1));
    let addr4 = cluster.addr(4);
    let joiner = cluster.host(4);
    let err = joiner.fails(&[
        "swarm",
        "join",
        "--token",
        &old_token,
        "--advertise-addr",
        &addr4,
        &remote,
    ]);
    assert!(err.contains(CA_MISMATCH), "{err}");
    joiner.ok(&[
        "swarm",
        "join",
        "--token",
        &new_token,
        "--advertise-addr",
        &addr4,
        &remote,
    ]);
    cluster.wait_nodes_ready(4);
    let (cert, roots) = node_cert(&joiner);
    assert!(pki::issued_by(&cert, &new_root));
    assert_eq!(roots, vec![new_root]);
}
