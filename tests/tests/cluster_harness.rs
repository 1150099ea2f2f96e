//! The cluster harness itself (root only): hosts reach each other over the
//! cluster bridge, `swarm init` works in a host namespace, and dropping the
//! cluster leaves no namespace, mount or process behind — also when the test
//! using it panics.

use std::time::Duration;

use mini_tests::{Cluster, wait_for};

#[test]
fn two_hosts_ping_init_and_leave_nothing() {
    let cluster = Cluster::start(2);
    let out = cluster.init();
    assert!(out.stdout.contains("is now a manager"), "{}", out.stdout);

    // Host 2 reaches host 1 over the cluster bridge, from inside its namespace.
    let addr1 = cluster.addr(1);
    wait_for("host 2 to ping host 1", Duration::from_secs(10), || {
        let out = cluster.exec_in_host(2, &["ping", "-c", "1", "-W", "1", &addr1]);
        if out.success {
            Ok(())
        } else {
            Err(format!("{}{}", out.stdout, out.stderr))
        }
    });
    // Each host has exactly its own address on eth0.
    let addrs = cluster
        .host(2)
        .exec(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.stdout.contains(&format!("{}/24", cluster.addr(2))),
        "{}",
        addrs.stdout
    );

    // The manager answers as one.
    let info = cluster.host(1).ok(&["info", "--format", "json"]).json();
    assert_eq!(info["is_manager"], true, "{info}");
    let nodes = cluster.wait_nodes_ready(1);
    assert_eq!(nodes[0]["hostname"], "h1", "{nodes}");
    assert_eq!(nodes[0]["address"], addr1.as_str(), "{nodes}");

    let resources = cluster.resources();
    assert_eq!(resources.namespaces.len(), 3, "{resources:?}");
    assert_eq!(resources.pids.len(), 2, "{resources:?}");
    assert!(resources.leftovers().len() >= 3, "{resources:?}");
    drop(cluster);
    assert_eq!(resources.leftovers(), Vec::<String>::new());
}

#[test]
fn a_killed_host_is_cut_off_and_cleanup_still_works() {
    let mut cluster = Cluster::start(2);
    let addr1 = cluster.addr(1);
    cluster.kill_host(2);
    assert_eq!(cluster.daemon_pid(2), None);
    let out = cluster.exec_in_host(2, &["ping", "-c", "1", "-W", "1", &addr1]);
    assert!(!out.success, "host 2 should be cut off: {}", out.stdout);
    cluster.restart_host(2);
    wait_for(
        "host 2 to reach host 1 again",
        Duration::from_secs(10),
        || {
            let out = cluster.exec_in_host(2, &["ping", "-c", "1", "-W", "1", &addr1]);
            if out.success {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        },
    );
    let resources = cluster.resources();
    drop(cluster);
    assert_eq!(resources.leftovers(), Vec::<String>::new());
}

#[test]
fn a_panicking_test_still_cleans_up() {
    let captured = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let cluster = Cluster::start(1);
        *captured.lock().unwrap() = Some(cluster.resources());
        panic!("the test fails");
    });
    assert!(result.is_err());
    let resources = captured.into_inner().unwrap().expect("resources");
    assert_eq!(resources.leftovers(), Vec::<String>::new());
}
