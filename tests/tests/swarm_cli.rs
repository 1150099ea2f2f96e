//! The one-manager cluster through the real CLI: init, networks, services,
//! bad input that changes nothing, and restarts (also after `kill -9`).
//! Each test runs its daemon in a host namespace of its own (root only).

use std::time::Duration;

use mini_tests::{Cluster, Host, wait_for};
use serde_json::Value;

type Daemon<'a> = Host<'a>;

fn init(daemon: &Daemon) {
    let addr = daemon.addr();
    let out = daemon.ok(&["swarm", "init", "--advertise-addr", &addr]);
    assert!(out.stdout.contains("is now a manager"), "{}", out.stdout);
}

fn networks(daemon: &Daemon) -> Vec<Value> {
    daemon
        .ok_listed(&["network", "ls", "--filter", "scope=swarm"], "network")
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn services(daemon: &Daemon) -> Vec<Value> {
    daemon
        .ok_listed(&["service", "ls"], "service")
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn tasks(daemon: &Daemon, service: &str) -> Vec<Value> {
    daemon
        .ok_listed(&["service", "ps", service], "task")
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The ids of `tasks`, sorted.
fn sorted_ids(tasks: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

fn names(values: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = values
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// The full state as a user sees it, to compare before and after a refused command.
fn everything(daemon: &Daemon) -> String {
    let mut all = vec![networks(daemon), services(daemon)];
    for s in services(daemon) {
        all.push(tasks(daemon, s["name"].as_str().unwrap()));
    }
    serde_json::to_string(&all).unwrap()
}

/// Waits until `service` has `n` tasks desired running, all ASSIGNED.
fn wait_running(daemon: &Daemon, service: &str, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} running tasks of {service}"),
        Duration::from_secs(20),
        || {
            let all = tasks(daemon, service);
            let live: Vec<Value> = all
                .iter()
                .filter(|t| t["desired_state"] == "Running")
                .cloned()
                .collect();
            if live.len() == n && live.iter().all(|t| t["current_state"] == "Running") {
                Ok(live)
            } else {
                Err(serde_json::to_string(&all).unwrap())
            }
        },
    )
}

#[test]
fn commands_before_init_say_what_to_do() {
    let cluster = Cluster::start(1);
    let daemon = cluster.host(1);
    let err = daemon.fails(&["network", "ls"]);
    assert!(err.contains("mini swarm init"), "{err}");
    let err = daemon.fails(&["swarm", "init", "--advertise-addr", "not-an-ip"]);
    assert!(err.contains("invalid --advertise-addr"), "{err}");
    init(&daemon);
    let err = daemon.fails(&["swarm", "init", "--advertise-addr", &daemon.addr()]);
    assert!(err.contains("already part of a swarm"), "{err}");
}

#[test]
fn join_infers_the_advertise_address_and_names_an_unreachable_manager() {
    let cluster = Cluster::start(2);
    cluster.init();
    let token = cluster
        .host(1)
        .ok(&["swarm", "join-token", "-q", "worker"])
        .stdout;
    // Nothing listens on that port: the daemon says which manager it could not reach, not that
    // the CLI could not reach its own daemon.
    let nowhere = format!("{}:2399", cluster.addr(1));
    let err = cluster
        .host(2)
        .fails(&["swarm", "join", "--token", token.trim(), &nowhere]);
    assert!(
        err.contains(&format!("cannot reach the manager at {nowhere}")),
        "{err}"
    );
    assert!(!err.contains("mini daemon"), "{err}");
    // No --advertise-addr (the harness's join): the address on the route to the manager.
    cluster.join(2, "worker");
    cluster.wait_nodes_ready(2);
    let h2 = cluster.host(1).ok(&["node", "inspect", "h2"]).json();
    assert_eq!(h2[0]["address"], cluster.addr(2), "{h2}");
}

#[test]
fn init_creates_ingress_and_first_network_gets_vni_4097() {
    let cluster = Cluster::start(1);
    let daemon = cluster.host(1);
    init(&daemon);
    let nets = networks(&daemon);
    assert_eq!(names(&nets), ["ingress"]);
    assert_eq!(nets[0]["subnet"], "10.255.0.0/16");
    assert_eq!(nets[0]["vni"], 4096);

    let id = daemon.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "192.168.200.0/24",
        "demonet",
    ]);
    assert_eq!(id.stdout.trim().len(), 25);
    let demonet = &daemon.ok(&["network", "inspect", "demonet"]).json()[0];
    assert_eq!(demonet["vni"], 4097);
    assert_eq!(demonet["subnet"], "192.168.200.0/24");
    assert_eq!(demonet["gateway"], "192.168.200.1");
    assert_eq!(demonet["driver"], "overlay");
    assert_eq!(demonet["id"], id.stdout.trim());

    // Next network without --subnet: the first free /24 of 10.0.0.0/8.
    // Without -d: an overlay network, and the CLI says so (Docker's default is a local bridge).
    let made = daemon.ok(&["network", "create", "--attachable", "backend"]);
    assert!(
        made.stderr.contains("backend: an overlay network"),
        "{}",
        made.stderr
    );
    let backend = &daemon.ok(&["network", "inspect", "backend"]).json()[0];
    assert_eq!(backend["subnet"], "10.0.0.0/24");
    assert_eq!(backend["vni"], 4098);
    assert_eq!(backend["attachable"], true);

    let table = daemon.ok(&["network", "ls"]).stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NETWORK ID") && header.contains("NAME") && header.contains("DRIVER"),
        "{table}"
    );
    // The header, ingress, demonet, backend and the node's local gateway bridge.
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(table.contains(" mini_gwbridge "), "{table}");

    daemon.ok(&["network", "rm", "backend"]);
    assert_eq!(names(&networks(&daemon)), ["demonet", "ingress"]);
}

#[test]
fn bad_network_input_is_refused_and_changes_nothing() {
    let cluster = Cluster::start(1);
    let daemon = cluster.host(1);
    init(&daemon);
    daemon.ok(&[
        "network",
        "create",
        "--subnet",
        "192.168.200.0/24",
        "demonet",
    ]);
    let before = everything(&daemon);
    let cases: &[(&[&str], &str)] = &[
        (
            &["network", "create", "--subnet", "192.168.300.0/24", "a"],
            "192.168.300.0/24",
        ),
        (
            &["network", "create", "--subnet", "192.168.200.128/25", "b"],
            "overlaps",
        ),
        (
            &["network", "create", "--subnet", "192.168.0.0/16", "c"],
            "overlaps",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.1.0.0/24",
                "--gateway",
                "10.2.0.1",
                "d",
            ],
            "outside",
        ),
        (&["network", "create", "-d", "bridge", "e"], "bridge"),
        (&["network", "create", "demonet"], "already exists"),
        (&["network", "inspect", "nope"], "no such network"),
        (&["network", "rm", "nope"], "no such network"),
    ];
    for (args, expected) in cases {
        let err = daemon.fails(args);
        assert!(
            err.contains(expected),
            "`mini {}`: expected {expected:?} in {err:?}",
            args.join(" ")
        );
    }
    assert_eq!(
        everything(&daemon),
        before,
        "a refused command changed the state"
    );
}

#[test]
fn services_get_tasks_vips_and_scale() {
    let cluster = Cluster::start(1);
    let daemon = cluster.host(1);
    init(&daemon);
    daemon.ok(&[
        "network",
        "create",
        "--subnet",
        "192.168.200.0/24",
        "demonet",
    ]);
    let out = daemon.ok(&[
        "service",
        "create",
        "--detach",
        "--replicas",
        "2",
        "--network",
        "demonet",
        "--name",
        "demoservice",
        "--env",
        "A=1",
        "host",
        "sh",
        "-c",
        "echo A=$A; exec sleep 10000",
        "-x",
    ]);
    assert_eq!(out.stdout.trim().len(), 25);

    let svc = &daemon.ok(&["service", "inspect", "demoservice"]).json()[0];
    assert_eq!(svc["replicas"], 2);
    assert_eq!(svc["image"], "host");
    assert_eq!(
        svc["args"],
        serde_json::json!(["sh", "-c", "echo A=$A; exec sleep 10000", "-x"]),
        "args after IMAGE are verbatim"
    );
    assert_eq!(svc["env"], serde_json::json!(["A=1"]));
    assert_eq!(svc["vips"][0]["network"], "demonet");
    let vip = svc["vips"][0]["addr"].as_str().unwrap().to_string();
    assert!(
        vip.starts_with("192.168.200.") && vip.ends_with("/24"),
        "{vip}"
    );

    let live = wait_running(&daemon, "demoservice", 2);
    let mut task_names = names(&live);
    task_names.dedup();
    assert_eq!(task_names, ["demoservice.1", "demoservice.2"]);
    let mut addrs: Vec<String> = live
        .iter()
        .map(|t| t["networks"][0]["addr"].as_str().unwrap().to_string())
        .collect();
    addrs.push(vip.clone());
    addrs.sort();
    addrs.dedup();
    assert_eq!(
        addrs.len(),
        3,
        "task addresses and VIP must differ: {addrs:?}"
    );
    for t in &live {
        assert_eq!(t["node"], "h1");
        let addr: std::net::Ipv4Addr = t["networks"][0]["addr"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let o = addr.octets();
        assert_eq!(
            t["networks"][0]["mac"],
            format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
        );
    }

    let table = daemon.ok(&["service", "ps", "demoservice"]).stdout;
    assert!(
        table.lines().next().unwrap().contains("DESIRED STATE"),
        "{table}"
    );
    assert!(
        table.contains("demoservice.1") && table.contains("Running"),
        "{table}"
    );

    daemon.ok(&["service", "scale", "--detach", "demoservice=4"]);
    wait_running(&daemon, "demoservice", 4);
    daemon.ok(&["service", "scale", "--detach", "demoservice=1"]);
    let live = wait_running(&daemon, "demoservice", 1);
    assert_eq!(live[0]["name"], "demoservice.1");
    let ls = services(&daemon);
    assert_eq!(ls[0]["replicas"], 1);

    daemon.ok(&["service", "rm", "demoservice"]);
    assert!(services(&daemon).is_empty());
    // Once its tasks are reaped the network can go too.
    wait_for(
        "network rm after service rm",
        Duration::from_secs(15),
        || {
            let out = daemon.mini(&["network", "rm", "demonet"]);
            if out.success { Ok(()) } else { Err(out.stderr) }
        },
    );
}

#[test]
fn bad_service_input_is_refused_and_changes_nothing() {
    let cluster = Cluster::start(1);
    let daemon = cluster.host(1);
    init(&daemon);
    daemon.ok(&[
        "network",
        "create",
        "--subnet",
        "192.168.200.0/24",
        "demonet",
    ]);
    daemon.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--network",
        "demonet",
        "host",
        "sleep",
        "1000",
    ]);
    wait_running(&daemon, "web", 1);
    let before = everything(&daemon);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "service",
                "create",
                "--detach",
                "--replicas",
                "-1",
                "host",
                "true",
            ],
            "negative",
        ),
        (
            &[
                "service", "create", "--detach", "--name", "web", "host", "true",
            ],
            "already exists",
        ),
        (
            &[
                "service",
                "create",
                "--detach",
                "--network",
                "nonet",
                "host",
                "true",
            ],
            "no such network",
        ),
        (
            &["service", "create", "--detach", "Alpine", "true"],
            "repository name must be lowercase",
        ),
        (
            &[
                "service",
                "create",
                "--detach",
                "--constraint",
                "node.color==red",
                "host",
                "true",
            ],
            "node.color",
        ),
        (&["service", "inspect", "nosvc"], "no such service"),
        (&["service", "rm", "nosvc"], "no such service"),
        (
            &["service", "scale", "--detach", "nosvc=2"],
            "no such service",
        ),
        (&["service", "scale", "--detach", "web=-3"], "negative"),
        (&["network", "rm", "demonet"], "in use by service web"),
    ];
    for (args, expected) in cases {
        let err = daemon.fails(args);
        assert!(
            err.contains(expected),
            "`mini {}`: expected {expected:?} in {err:?}",
            args.join(" ")
        );
    }
    let after = everything(&daemon);
    assert_eq!(after, before, "a refused command changed the state");
}

#[test]
fn kill_9_and_restart_keep_every_acknowledged_object() {
    let mut cluster = Cluster::start(1);
    init(&cluster.host(1));
    {
        let daemon = cluster.host(1);
        daemon.ok(&[
            "network",
            "create",
            "--subnet",
            "192.168.200.0/24",
            "demonet",
        ]);
        for i in 0..5 {
            daemon.ok(&["network", "create", &format!("net{i}")]);
        }
        daemon.ok(&[
            "service",
            "create",
            "--detach",
            "--replicas",
            "3",
            "--network",
            "demonet",
            "--name",
            "demoservice",
            "host",
            "sleep",
            "1000",
        ]);
        wait_running(&daemon, "demoservice", 3);
    }
    // What the user wrote and was told: object ids, names and allocations
    // (versions move on as the allocator keeps working).
    let acknowledged = |d: &Daemon| {
        let pick =
            |v: &Value, keys: &[&str]| keys.iter().map(|k| v[*k].clone()).collect::<Vec<_>>();
        let nets: Vec<_> = networks(d)
            .iter()
            .map(|n| pick(n, &["id", "name", "subnet", "gateway", "vni"]))
            .collect();
        let svcs: Vec<_> = services(d)
            .iter()
            .map(|s| pick(s, &["id", "name", "replicas", "vips", "args"]))
            .collect();
        serde_json::to_string(&(nets, svcs)).unwrap()
    };
    let before = acknowledged(&cluster.host(1));
    let tasks_before = sorted_ids(&wait_running(&cluster.host(1), "demoservice", 3));

    cluster.kill_host(1);
    cluster.start_host(1);
    {
        let daemon = cluster.host(1);
        assert_eq!(
            acknowledged(&daemon),
            before,
            "networks or services after kill -9 differ"
        );
        // The tasks outlived their daemon (live-restore, as Docker's): the restarted agent
        // adopts them, so the same tasks run and none is reported lost or replaced.
        let after = wait_running(&daemon, "demoservice", 3);
        assert_eq!(
            sorted_ids(&after),
            tasks_before,
            "tasks replaced after kill -9"
        );
        let history = tasks(&daemon, "demoservice");
        assert!(
            !history.iter().any(|t| t["error"]
                .as_str()
                .unwrap_or_default()
                .contains("task lost")),
            "{history:?}"
        );

        // The resumed manager keeps allocating after what it had.
        daemon.ok(&["network", "create", "after"]);
        let after = &daemon.ok(&["network", "inspect", "after"]).json()[0];
        assert_eq!(after["vni"], 4103);
    }

    cluster.stop_host(1);
    cluster.start_host(1);
    let daemon = cluster.host(1);
    assert_eq!(names(&networks(&daemon)).len(), 8);
    wait_running(&daemon, "demoservice", 3);
}

#[test]
fn snapshots_compact_the_log_and_restart_restores_from_them() {
    let mut cluster = Cluster::start_with(1, &["--snapshot-interval", "20"]);
    let daemon = cluster.host(1);
    init(&daemon);
    for i in 0..30 {
        daemon.ok(&["network", "create", &format!("net{i}")]);
    }
    let info = |d: &Daemon| d.ok(&["node", "inspect", "h1"]).json();
    assert_eq!(info(&daemon)[0]["manager_status"], "leader");
    let expected = names(&networks(&daemon));
    assert_eq!(expected.len(), 31);

    // The log was compacted: its first index moved past the first entries.
    let first = |d: &Daemon| {
        let out = d.ok(&["info", "--format", "json"]).json();
        (
            out["raft"]["first_log_index"].as_u64().unwrap(),
            out["raft"]["snapshot_index"].as_u64().unwrap(),
        )
    };
    let (first_index, snapshot_index) = first(&daemon);
    assert!(
        snapshot_index >= 20,
        "no snapshot taken: snapshot index {snapshot_index}"
    );
    assert!(
        first_index > 1,
        "log not compacted: first index {first_index}"
    );

    cluster.kill_host(1);
    cluster.start_host(1);
    let daemon = cluster.host(1);
    assert_eq!(names(&networks(&daemon)), expected);
    daemon.ok(&["network", "create", "one-more"]);
    assert_eq!(names(&networks(&daemon)).len(), 32);
}
