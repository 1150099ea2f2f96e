//! Trust on TCP 2377, tried as an attacker would: from a namespace that never joined (the lab's
//! bridge), every RPC in plaintext and over TLS without a certificate is refused (except the CA
//! fetch), and nothing changes; a worker's certificate cannot call Raft or another node's agent
//! nor act as another node; a removed node's certificate is refused within 10 s; a tampered join
//! token is refused before anything is sent, and nothing is stored. Root only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mini_tests::{Cluster, Host, wait_for};

const ATTACKER: &str = env!("CARGO_BIN_EXE_attacker");
const CA_MISMATCH: &str =
    "the manager's CA does not match the join token: wrong cluster, or someone in between";

/// Runs the attacker inside `netns` (or the lab's bridge namespace) and returns method → outcome.
fn attack(cluster: &Cluster, from: Option<usize>, args: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = vec![ATTACKER];
    cmd.extend_from_slice(args);
    let out = match from {
        Some(k) => cluster.exec_in_host(k, &cmd),
        None => cluster.exec_outside(&cmd),
    };
    assert!(out.success, "attacker failed: {}", out.stderr);
    if !out.stderr.is_empty() {
        eprintln!("attacker {args:?}: {}", out.stderr);
    }
    let results: BTreeMap<String, String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(m, o)| (m.to_string(), o.to_string()))
        .collect();
    assert!(results.len() >= 13, "one outcome per RPC: {}", out.stdout);
    results
}

/// What a user sees of the cluster: nodes (id, role, status, hostname), services and tasks.
fn everything(h: &Host) -> String {
    let nodes = h.ok_listed(&["node", "ls"], "node").json();
    let services = h.ok_listed(&["service", "ls"], "service").json();
    let tasks = h.ok_listed(&["service", "ps", "web"], "task").json();
    serde_json::to_string(&(nodes, services, tasks)).unwrap()
}

fn cert_dir(h: &Host) -> String {
    h.state_dir().join("certificates").display().to_string()
}

#[test]
fn outsiders_and_workers_are_refused_and_change_nothing() {
    let cluster = Cluster::start(3);
    cluster.init();
    cluster.join_all();
    let manager = cluster.host(1);
    manager.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "host",
        "sleep",
        "3600",
    ]);
    let tasks = manager.wait_running("web", 2);
    let before = everything(&manager);
    let manager_addr = format!("{}:2377", cluster.addr(1));
    let worker_addr = format!("{}:2377", cluster.addr(2));
    let victim = cluster.host(3).node_id();

    // The certificate files, as Docker keeps them; the key private.
    let dir = manager.state_dir().join("certificates");
    for f in ["swarm-root-ca.crt", "swarm-node.crt", "swarm-node.key"] {
        assert!(dir.join(f).exists(), "{f} missing in {}", dir.display());
    }
    let mode = std::fs::metadata(dir.join("swarm-node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is private: mode {mode:o}");

    // A namespace that never joined: plaintext gets no gRPC exchange at all.
    for target in [&manager_addr, &worker_addr] {
        let plain = attack(&cluster, None, &[target, "plain"]);
        for (method, outcome) in &plain {
            assert_eq!(outcome, "TRANSPORT", "plaintext {method} on {target}");
        }
        // TLS without a certificate: only the CA fetch and the join call get through (the join
        // is then refused for its token).
        let tls = attack(&cluster, None, &[target, "tls", "-", &victim]);
        for (method, outcome) in &tls {
            let expected = match method.as_str() {
                "/mini.v1.NodeCA/GetRootCACertificate" if target == &manager_addr => "OK",
                // A worker is no manager: it has no CA to hand out or tokens to check.
                "/mini.v1.NodeCA/GetRootCACertificate" | "/mini.v1.Dispatcher/Join"
                    if target == &worker_addr =>
                {
                    "FailedPrecondition"
                }
                // The guessed token names another CA.
                "/mini.v1.Dispatcher/Join" => "PermissionDenied",
                _ => "Unauthenticated",
            };
            assert_eq!(
                outcome, expected,
                "TLS without a certificate: {method} on {target}"
            );
        }
    }

    // A worker's certificate: no Raft, no node agent, and only itself on the dispatcher.
    let worker_certs = cert_dir(&cluster.host(2));
    let as_worker = attack(
        &cluster,
        Some(2),
        &[&manager_addr, "cert", &worker_certs, &victim],
    );
    for (method, outcome) in &as_worker {
        let expected = if method.starts_with("/mini.v1.RaftTransport/")
            || method.starts_with("/mini.v1.NodeAgent/")
        {
            "PermissionDenied"
        } else if method == "/mini.v1.NodeCA/GetRootCACertificate" {
            "OK"
        } else if method == "/mini.v1.NodeCA/IssueNodeCertificate" {
            "InvalidArgument" // the junk CSR
        } else {
            // Join: the guessed token; the others: acting as host 3.
            "PermissionDenied"
        };
        assert_eq!(outcome, expected, "worker certificate: {method}");
    }
    assert_eq!(
        everything(&manager),
        before,
        "the refused calls changed something"
    );
    assert_eq!(manager.wait_running("web", 2).len(), tasks.len());

    // A node removed from the swarm: its certificate is refused within 10 s.
    let removed_certs = std::env::temp_dir().join(format!("{}-h3-certs", cluster.prefix()));
    let _ = std::fs::remove_dir_all(&removed_certs);
    std::fs::create_dir_all(&removed_certs).unwrap();
    for f in ["swarm-root-ca.crt", "swarm-node.crt", "swarm-node.key"] {
        std::fs::copy(
            cluster.host(3).state_dir().join("certificates").join(f),
            removed_certs.join(f),
        )
        .unwrap();
    }
    let removed_dir = removed_certs.display().to_string();
    let own = attack(
        &cluster,
        Some(3),
        &[&manager_addr, "cert", &removed_dir, ""],
    );
    assert_eq!(
        own["/mini.v1.Dispatcher/Heartbeat"], "NotFound",
        "before removal, host 3's certificate is accepted (its fake session id is not)"
    );
    manager.ok(&["node", "rm", "--force", &victim]);
    let started = std::time::Instant::now();
    wait_for(
        "host 3's certificate refused after `node rm`",
        Duration::from_secs(10),
        || {
            let r = attack(
                &cluster,
                Some(3),
                &[&manager_addr, "cert", &removed_dir, ""],
            );
            let seen = r["/mini.v1.Dispatcher/Heartbeat"].clone();
            if seen == "Unauthenticated" {
                Ok(())
            } else {
                Err(seen)
            }
        },
    );
    eprintln!("removed node refused after {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&removed_certs);

    // As in Docker, the removed node leaves and joins again: it comes back as a new node.
    cluster.host(3).ok(&["swarm", "leave"]);
    cluster.join(3, "worker");
    let rejoined = cluster.host(3).node_id();
    assert_ne!(rejoined, victim, "the node came back with its removed id");
    wait_for(
        "h3 back as a new Ready node",
        Duration::from_secs(30),
        || {
            let out = manager.listed(&["node", "ls"], "node");
            let ready = out.json().as_array().is_some_and(|nodes| {
                nodes
                    .iter()
                    .any(|n| n["id"] == rejoined.as_str() && n["status"] == "ready")
            });
            if ready { Ok(()) } else { Err(out.stdout) }
        },
    );
}

#[test]
fn a_tampered_or_rotated_token_is_refused_and_nothing_is_stored() {
    let cluster = Cluster::start(2);
    cluster.init();
    let manager = cluster.host(1);
    let token = manager
        .ok(&["swarm", "join-token", "-q", "worker"])
        .stdout
        .trim()
        .to_string();
    let parts: Vec<&str> = token.splitn(4, '-').collect();
    assert_eq!(parts.len(), 4, "{token}");
    assert_eq!(
        parts[2].len(),
        50,
        "the CA digest in base 36, as Docker: {token}"
    );
    // One digit of the digest changed: the manager's CA no longer matches.
    let mut digest = parts[2].as_bytes().to_vec();
    digest[10] = if digest[10] == b'a' { b'b' } else { b'a' };
    let tampered = format!(
        "SWMTKN-1-{}-{}",
        String::from_utf8(digest).unwrap(),
        parts[3]
    );
    let remote = format!("{}:2377", cluster.addr(1));
    let addr = cluster.addr(2);
    let joiner = cluster.host(2);
    let join = |token: &str| {
        joiner.fails(&[
            "swarm",
            "join",
            "--token",
            token,
            "--advertise-addr",
            &addr,
            &remote,
        ])
    };
    let err = join(&tampered);
    assert!(err.contains(CA_MISMATCH), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    let certs = joiner.state_dir().join("certificates");
    let stored: Vec<_> = std::fs::read_dir(&certs)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        stored.is_empty(),
        "nothing stored after a refused join: {stored:?}"
    );
    let leave = joiner.fails(&["swarm", "leave"]);
    assert!(
        leave.contains("not part of a swarm"),
        "the joiner is in no swarm: {leave}"
    );

    // The token rotated: the old one is refused at once, the new one works.
    let rotated = manager
        .ok(&["swarm", "join-token", "--rotate", "-q", "worker"])
        .stdout
        .trim()
        .to_string();
    assert_ne!(rotated, token);
    let err = join(&token);
    assert!(err.contains("secret is wrong or was rotated"), "{err}");
    joiner.ok(&[
        "swarm",
        "join",
        "--token",
        &rotated,
        "--advertise-addr",
        &addr,
        &remote,
    ]);
    cluster.wait_nodes_ready(2);
    let id = joiner.node_id();
    let node = manager.ok(&["node", "inspect", &id]).stdout;
    assert!(node.contains(&id), "the joined node is listed: {node}");
    // Its certificate is this node's, signed by the cluster CA, kept in the node's files.
    let certs = joiner.state_dir().join("certificates");
    for f in ["swarm-root-ca.crt", "swarm-node.crt", "swarm-node.key"] {
        assert!(certs.join(f).exists(), "{f} missing after the join");
    }
}
