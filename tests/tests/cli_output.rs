//! Docker's listing flags and output against a real one-node swarm (root only): `-q`,
//! `--filter`, `--format` templates and JSON lines, `node ls`'s `*`, `node ps`, `network ls`
//! listing `ingress`, `inspect --format`.

use mini_tests::Cluster;
use serde_json::Value;

/// Each line parsed as one JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[test]
fn listings_read_as_docker_prints_them() {
    let cluster = Cluster::start(1);
    let h = cluster.host(1);
    let addr = h.addr();
    h.ok(&["swarm", "init", "--advertise-addr", &addr]);
    h.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--publish",
        "8080:80",
        "--label",
        "tier=front",
        "host",
        "sleep",
        "100000",
    ]);
    h.ok(&[
        "service", "create", "--name", "worker", "--mode", "global", "host", "sleep", "100000",
    ]);
    h.wait_running("web", 2);
    h.wait_running("worker", 1);
    let node_id = h.node_id();

    // service ls: Docker's columns, PORTS as `*:8080->80/tcp`.
    let table = h.ok(&["service", "ls"]).stdout;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        "{table}"
    );
    let web = table
        .lines()
        .find(|l| l.contains(" web "))
        .unwrap_or_default();
    assert!(
        web.contains("2/2") && web.ends_with("*:8080->80/tcp"),
        "{table}"
    );

    // -q: the ids, 12 characters, as many as services.
    let ids = h.ok(&["service", "ls", "-q"]).stdout;
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|id| id.len() == 12), "{ids:?}");
    let full = h.ok(&["service", "ls", "-q", "--no-trunc"]).stdout;
    assert!(full.lines().all(|id| id.len() == 25), "{full}");

    // --filter: name prefix, label, mode; an unknown key is refused as Docker refuses it.
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["service", "ls", "--format", "{{.Name}}"];
        a.extend(args);
        h.ok(&a).stdout.lines().map(str::to_string).collect()
    };
    assert_eq!(names(&[]), ["web", "worker"]);
    assert_eq!(names(&["--filter", "name=we"]), ["web"]);
    assert_eq!(names(&["--filter", "name=w"]), ["web", "worker"]);
    assert_eq!(names(&["-f", "label=tier=front"]), ["web"]);
    assert_eq!(names(&["--filter", "mode=global"]), ["worker"]);
    let bad = h.mini(&["service", "ls", "--filter", "foo=bar"]);
    assert!(!bad.success, "{bad:?}");
    assert_eq!(
        bad.stderr.trim(),
        "Error response from daemon: Invalid filter 'foo'"
    );

    // --format json: one object per line with Docker's keys.
    let rows = json_lines(&h.ok(&["service", "ls", "--format", "json"]).stdout);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        keys(&rows[0]),
        ["ID", "Image", "Mode", "Name", "Ports", "Replicas"]
    );
    assert_eq!(rows[0]["Name"], "web");
    assert_eq!(rows[0]["Ports"], "*:8080->80/tcp");
    assert_eq!(rows[1]["Mode"], "global");
    let web_id = rows[0]["ID"].as_str().unwrap_or_default();
    assert_eq!(
        names(&["--filter", &format!("id={}", &web_id[..6])]),
        ["web"]
    );

    // A template error names the field.
    let bad = h.mini(&["service", "ls", "--format", "{{.Nme}}"]);
    assert!(!bad.success);
    assert!(
        bad.stderr.contains("can't evaluate field Nme"),
        "{}",
        bad.stderr
    );

    // service ps: Docker's columns and JSON keys; filters.
    let ps = h.ok(&["service", "ps", "web"]).stdout;
    let header = ps.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("DESIRED STATE") && header.ends_with("PORTS"),
        "{ps}"
    );
    assert!(ps.contains("Running") && ps.contains(" ago"), "{ps}");
    let tasks = json_lines(&h.ok(&["service", "ps", "web", "--format", "json"]).stdout);
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_eq!(
        keys(&tasks[0]),
        [
            "CurrentState",
            "DesiredState",
            "Error",
            "ID",
            "Image",
            "Name",
            "Node",
            "Ports"
        ]
    );
    let running = h
        .ok(&["service", "ps", "web", "-q", "-f", "desired-state=running"])
        .stdout;
    assert_eq!(running.lines().count(), 2, "{running}");
    let none = h
        .ok(&["service", "ps", "web", "-q", "-f", "desired-state=shutdown"])
        .stdout;
    assert_eq!(none, "");

    // node ls: the local node marked `*`, the engine version; -q the full id.
    let nodes = h.ok(&["node", "ls"]).stdout;
    let header: Vec<&str> = nodes
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "HOSTNAME",
            "STATUS",
            "AVAILABILITY",
            "MANAGER",
            "STATUS",
            "ENGINE",
            "VERSION"
        ],
        "{nodes}"
    );
    let me = nodes.lines().nth(1).unwrap_or_default();
    assert!(me.starts_with(&format!("{node_id} *")), "{nodes}");
    assert!(
        me.contains("Leader") && me.ends_with(env!("CARGO_PKG_VERSION")),
        "{nodes}"
    );
    assert_eq!(h.ok(&["node", "ls", "-q"]).stdout.trim(), node_id);
    let node = &json_lines(&h.ok(&["node", "ls", "--format", "json"]).stdout)[0];
    assert_eq!(node["Self"], true);
    assert_eq!(node["ManagerStatus"], "Leader");

    // node ps: the local node's tasks (both services').
    let on_node = h.ok(&["node", "ps", "--format", "{{.Name}}"]).stdout;
    let mut on_node: Vec<&str> = on_node.lines().collect();
    on_node.sort();
    assert_eq!(on_node, ["web.1", "web.2", &format!("worker.{node_id}")]);
    assert_eq!(
        h.ok(&["node", "ps", "self", "-q"]).stdout.lines().count(),
        3
    );

    // network ls: ingress as Docker lists it, 12-character ids.
    let nets = h.ok(&["network", "ls"]).stdout;
    let ingress: Vec<&str> = nets
        .lines()
        .find(|l| l.contains(" ingress "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(ingress.len(), 4, "{nets}");
    assert_eq!(
        (ingress[0].len(), ingress[2], ingress[3]),
        (12, "overlay", "swarm"),
        "{nets}"
    );
    let builtin = h.ok(&[
        "network",
        "ls",
        "--filter",
        "type=builtin",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(builtin.stdout, "ingress\n");
    // The node's gateway bridge, as Docker lists docker_gwbridge: a local bridge network that
    // can be inspected and not removed; its id stays the same.
    let local = h.ok(&[
        "network",
        "ls",
        "--filter",
        "scope=local",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}} {{.ID}}",
    ]);
    let fields: Vec<&str> = local.stdout.split_whitespace().collect();
    assert_eq!(
        fields[..3],
        ["mini_gwbridge", "bridge", "local"],
        "{}",
        local.stdout
    );
    let subnet = h.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Subnet}} {{.Id}}",
        "mini_gwbridge",
    ]);
    assert!(
        subnet.stdout.starts_with("172.18.0.0/16 ") && subnet.stdout.contains(fields[3]),
        "{}",
        subnet.stdout
    );
    let err = h.fails(&["network", "rm", "mini_gwbridge"]);
    assert!(
        err.contains("pre-defined network and cannot be removed"),
        "{err}"
    );
    let err = h.fails(&["network", "create", "-d", "overlay", "mini_gwbridge"]);
    assert!(err.contains("already exists"), "{err}");

    // inspect --format over the inspect view; `mini inspect` finds a task by its id.
    let name = h.ok(&[
        "service",
        "inspect",
        "--format",
        "{{.name}} {{.replicas}}",
        "web",
    ]);
    assert_eq!(name.stdout, "web 2\n");
    let task_id = h.ok(&["service", "ps", "web", "-q"]).stdout;
    let task_id = task_id.lines().next().unwrap_or_default();
    let state = h.ok(&["inspect", "--format", "{{.current_state}}", task_id]);
    assert_eq!(state.stdout, "Running\n");
}
