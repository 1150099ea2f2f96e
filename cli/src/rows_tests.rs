//! Output snapshots of every `ls`/`ps` from fixed objects (no daemon): the table, `-q`, a
//! template and `--format json`; `--filter` semantics per key; Docker's task order.

use std::collections::{BTreeMap, HashMap};

use mini_proto::v1::{
    ContainerSpec, EndpointSpec, Meta, Network, NetworkSpec, Node, NodeDescription, NodeRole,
    NodeSpec, NodeState, NodeStatus, PortConfig, Service, ServiceSpec, ServiceSummary, Task,
    TaskState, TaskStatus, service_spec::Mode,
};

use super::*;
use crate::format::{Filters, ListArgs, Shape, render_rows, shape};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The text `mini ... ls` prints for `listing` with `-q` / `--format`.
fn out(listing: &Listing, quiet: bool, format: Option<&str>) -> String {
    let list = ListArgs {
        quiet,
        format: format.map(str::to_string),
        ..Default::default()
    };
    let s: Shape = shape(list.format.as_deref(), list.quiet, listing);
    render_rows(listing, &s).unwrap()
}

/// Each JSON line parsed, with its keys.
fn json_keys(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            v.as_object().unwrap().keys().cloned().collect()
        })
        .collect()
}

fn service(
    id: &str,
    name: &str,
    mode: Mode,
    labels: &[(&str, &str)],
    ports: &[(u32, u32)],
) -> ServiceSummary {
    ServiceSummary {
        service: Some(Service {
            id: id.into(),
            spec: Some(ServiceSpec {
                name: name.into(),
                mode: Some(mode),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                container: Some(ContainerSpec {
                    image: "busybox:latest".into(),
                    ..Default::default()
                }),
                endpoint: Some(EndpointSpec {
                    ports: ports
                        .iter()
                        .map(|(p, t)| PortConfig {
                            protocol: "tcp".into(),
                            published_port: *p,
                            target_port: *t,
                        })
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        running: 2,
        desired: 3,
        completed: 0,
    }
}

fn services() -> Vec<ServiceSummary> {
    vec![
        service(
            "vxk3n2b8f1q7g0y4w9m2c5d6a",
            "web",
            Mode::Replicas(3),
            &[("env", "prod")],
            &[(8080, 80)],
        ),
        service(
            "p2l9s8d7f6g5h4j3k2l1m0n9b",
            "db",
            Mode::Global(Default::default()),
            &[("env", "dev"), ("tier", "")],
            &[],
        ),
        service(
            "a1b2c3d4e5f6g7h8i9j0k1l2m",
            "web10",
            Mode::Replicas(3),
            &[],
            &[(9000, 90), (9001, 91), (53, 53)],
        ),
        service(
            "z9y8x7w6v5u4t3s2r1q0p9o8n",
            "web2",
            Mode::Replicas(3),
            &[],
            &[],
        ),
    ]
}

#[test]
fn service_ls_as_docker_prints_it() {
    let l = service_listing(&services(), &Filters::default(), false);
    assert_eq!(
        out(&l, false, None),
        "\
ID             NAME      MODE         REPLICAS   IMAGE            PORTS
p2l9s8d7f6g5   db        global       2/3        busybox:latest
vxk3n2b8f1q7   web       replicated   2/3        busybox:latest   *:8080->80/tcp
z9y8x7w6v5u4   web2      replicated   2/3        busybox:latest
a1b2c3d4e5f6   web10     replicated   2/3        busybox:latest   *:53->53/tcp, *:9000-9001->90-91/tcp
"
    );
    assert_eq!(
        out(&l, true, None),
        "p2l9s8d7f6g5\nvxk3n2b8f1q7\nz9y8x7w6v5u4\na1b2c3d4e5f6\n"
    );
    let full = service_listing(&services(), &Filters::default(), true);
    assert_eq!(
        out(&full, true, None).lines().next(),
        Some("p2l9s8d7f6g5h4j3k2l1m0n9b")
    );
    assert_eq!(out(&l, false, Some("{{.Name}}")), "db\nweb\nweb2\nweb10\n");
    assert_eq!(
        out(&l, false, Some("table {{.Name}}\\t{{.Mode}}"))
            .lines()
            .next(),
        Some("NAME      MODE")
    );
    let json = out(&l, false, Some("json"));
    assert_eq!(json.lines().count(), 4);
    assert_eq!(
        json_keys(&json)[0],
        ["ID", "Image", "Mode", "Name", "Ports", "Replicas"]
    );
    assert_eq!(
        json.lines().nth(1).unwrap(),
        r#"{"ID":"vxk3n2b8f1q7","Image":"busybox:latest","Mode":"replicated","Name":"web","Ports":"*:8080->80/tcp","Replicas":"2/3"}"#
    );
}

#[test]
fn service_filters_as_docker_defines_them() {
    let names = |f: &[&str]| -> Vec<String> {
        let f = service_filters(&args(f)).unwrap();
        service_listing(&services(), &f, false)
            .rows
            .iter()
            .map(|r| r["Name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["name=web"]), ["web", "web2", "web10"]);
    assert_eq!(names(&["name=web2", "name=db"]), ["db", "web2"]);
    assert_eq!(names(&["name=eb"]), Vec::<String>::new());
    assert_eq!(names(&["id=vxk3"]), ["web"]);
    assert_eq!(names(&["label=env"]), ["db", "web"]);
    assert_eq!(names(&["label=env=prod"]), ["web"]);
    assert_eq!(names(&["label=tier"]), ["db"]);
    assert_eq!(names(&["mode=global"]), ["db"]);
    assert_eq!(names(&["mode=replicated", "name=web1"]), ["web10"]);
    assert_eq!(
        service_filters(&args(&["foo=bar"])).unwrap_err().0,
        "Error response from daemon: Invalid filter 'foo'"
    );
    assert_eq!(
        service_filters(&args(&["mode=sideways"])).unwrap_err().0,
        "Error response from daemon: Invalid filter: 'mode'='sideways'"
    );
}

const NOW: i64 = 1_800_000_000_000;

fn task(
    id: &str,
    slot: u64,
    desired: TaskState,
    state: TaskState,
    created: i64,
    err: &str,
) -> Task {
    Task {
        id: id.into(),
        service_name: "web".into(),
        slot,
        node_id: "node1id".into(),
        desired_state: desired as i32,
        meta: Some(Meta {
            created_at_ms: created,
            ..Default::default()
        }),
        container: Some(ContainerSpec {
            image: "busybox:latest".into(),
            ..Default::default()
        }),
        status: Some(TaskStatus {
            state: state as i32,
            timestamp_ms: created + 1000,
            err: err.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tasks() -> Vec<Task> {
    use TaskState::*;
    vec![
        // Slot 1: drained away (the older task), then replaced. Listed older first on purpose.
        task(
            "t1old0000000000000000000a",
            1,
            Shutdown,
            Shutdown,
            NOW - 3_600_000,
            "",
        ),
        task(
            "t1new0000000000000000000b",
            1,
            Running,
            Running,
            NOW - 180_000,
            "",
        ),
        task(
            "t2run0000000000000000000c",
            2,
            Running,
            Running,
            NOW - 1_500,
            "",
        ),
        task(
            "t1mid0000000000000000000d",
            1,
            Shutdown,
            Failed,
            NOW - 600_000,
            "task: non-zero exit (1): the command failed",
        ),
    ]
}

fn names() -> Names {
    Names {
        nodes: HashMap::from([("node1id".to_string(), "host1".to_string())]),
        ..Default::default()
    }
}

#[test]
fn service_ps_orders_history_newest_first_with_docker_columns() {
    let mut ts = tasks();
    order_tasks(&mut ts);
    let l = task_listing(&ts, &names(), NOW, false);
    assert_eq!(
        out(&l, false, None),
        "\
ID             NAME        IMAGE            NODE      DESIRED STATE   CURRENT STATE                    ERROR                              PORTS
t1new0000000   web.1       busybox:latest   host1     Running         Running 2 minutes ago
t1mid0000000    \\_ web.1   busybox:latest   host1     Shutdown        Failed 9 minutes ago             \"task: non-zero exit (1): the …\"
t1old0000000    \\_ web.1   busybox:latest   host1     Shutdown        Shutdown 59 minutes ago
t2run0000000   web.2       busybox:latest   host1     Running         Running less than a second ago
"
    );
    assert_eq!(
        out(&l, true, None),
        "t1new0000000\nt1mid0000000\nt1old0000000\nt2run0000000\n"
    );
    assert_eq!(
        out(&l, false, Some("{{.Name}} {{.DesiredState}}")),
        "web.1 Running\n \\_ web.1 Shutdown\n \\_ web.1 Shutdown\nweb.2 Running\n"
    );
    let json = out(&l, false, Some("json"));
    assert_eq!(
        json_keys(&json)[0],
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
    let untrunc = task_listing(&ts, &names(), NOW, true);
    assert_eq!(untrunc.rows[0]["ID"], "t1new0000000000000000000b");
    assert_eq!(
        untrunc.rows[1]["Error"],
        "\"task: non-zero exit (1): the command failed\""
    );
}

#[test]
fn task_filters_as_docker_defines_them() {
    let ids = |f: &[&str]| -> Vec<String> {
        let f = task_filters(&args(f)).unwrap();
        let mut ts: Vec<Task> = tasks()
            .into_iter()
            .filter(|t| task_matches(&f, t, &names(), "node1id"))
            .collect();
        order_tasks(&mut ts);
        ts.iter().map(|t| t.id[..5].to_string()).collect()
    };
    assert_eq!(ids(&["desired-state=running"]), ["t1new", "t2run"]);
    assert_eq!(ids(&["desired-state=shutdown"]), ["t1mid", "t1old"]);
    assert_eq!(
        ids(&["desired-state=running", "desired-state=shutdown"]).len(),
        4
    );
    assert_eq!(ids(&["name=web.2"]), ["t2run"]);
    assert_eq!(ids(&["id=t1m"]), ["t1mid"]);
    assert_eq!(
        ids(&["node=host1", "desired-state=running"]),
        ["t1new", "t2run"]
    );
    assert_eq!(ids(&["node=node1"]).len(), 4);
    assert_eq!(ids(&["node=self"]).len(), 4);
    assert!(ids(&["node=host2"]).is_empty());
    assert_eq!(
        task_filters(&args(&["desired-state=dancing"]))
            .unwrap_err()
            .0,
        "Error response from daemon: Invalid filter: 'desired-state'='dancing'"
    );
    assert_eq!(
        task_filters(&args(&["mode=global"])).unwrap_err().0,
        "Error response from daemon: Invalid filter 'mode'"
    );
}

fn node(
    id: &str,
    host: &str,
    role: NodeRole,
    state: NodeState,
    labels: &[(&str, &str)],
    engine: &[(&str, &str)],
) -> Node {
    let map = |kv: &[(&str, &str)]| -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Node {
        id: id.into(),
        hostname: host.into(),
        role: role as i32,
        spec: Some(NodeSpec {
            labels: map(labels),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: state as i32,
            ..Default::default()
        }),
        description: Some(NodeDescription {
            engine_labels: map(engine),
            engine_version: "0.1.0".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn nodes() -> Vec<Node> {
    vec![
        node(
            "n2aaaaaaaaaaaaaaaaaaaaaaa",
            "host2",
            NodeRole::Worker,
            NodeState::Down,
            &[("zone", "b")],
            &[],
        ),
        node(
            "n1aaaaaaaaaaaaaaaaaaaaaaa",
            "host1",
            NodeRole::Manager,
            NodeState::Ready,
            &[("zone", "a")],
            &[("ssd", "true")],
        ),
        node(
            "n10aaaaaaaaaaaaaaaaaaaaaa",
            "host10",
            NodeRole::Manager,
            NodeState::Ready,
            &[],
            &[],
        ),
    ]
}

#[test]
fn node_ls_marks_the_local_node_and_shows_the_engine_version() {
    let unreachable = vec!["n10aaaaaaaaaaaaaaaaaaaaaa".to_string()];
    let l = node_listing(
        &nodes(),
        &Filters::default(),
        "n1aaaaaaaaaaaaaaaaaaaaaaa",
        "n1aaaaaaaaaaaaaaaaaaaaaaa",
        &unreachable,
    );
    assert_eq!(
        out(&l, false, None),
        "\
ID                            HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION
n1aaaaaaaaaaaaaaaaaaaaaaa *   host1      Ready     Active         Leader           0.1.0
n2aaaaaaaaaaaaaaaaaaaaaaa     host2      Down      Active                          0.1.0
n10aaaaaaaaaaaaaaaaaaaaaa     host10     Ready     Active         Unreachable      0.1.0
"
    );
    assert_eq!(
        out(&l, true, None),
        "n1aaaaaaaaaaaaaaaaaaaaaaa\nn2aaaaaaaaaaaaaaaaaaaaaaa\nn10aaaaaaaaaaaaaaaaaaaaaa\n"
    );
    assert_eq!(
        out(&l, false, Some("{{.Hostname}}{{if .Self}} (me){{end}}")),
        "host1 (me)\nhost2\nhost10\n"
    );
    let json = out(&l, false, Some("json"));
    assert_eq!(
        json_keys(&json)[0],
        [
            "Availability",
            "EngineVersion",
            "Hostname",
            "ID",
            "ManagerStatus",
            "Self",
            "Status"
        ]
    );
    assert!(json.lines().next().unwrap().contains(r#""Self":true"#));

    let hosts = |f: &[&str]| -> Vec<String> {
        let f = node_filters(&args(f)).unwrap();
        node_listing(&nodes(), &f, "", "", &[])
            .rows
            .iter()
            .map(|r| r["Hostname"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hosts(&["role=manager"]), ["host1", "host10"]);
    assert_eq!(hosts(&["role=worker"]), ["host2"]);
    assert_eq!(hosts(&["name=host1"]), ["host1", "host10"]);
    assert_eq!(hosts(&["id=n2"]), ["host2"]);
    assert_eq!(hosts(&["node.label=zone"]), ["host1", "host2"]);
    assert_eq!(hosts(&["node.label=zone=b"]), ["host2"]);
    assert_eq!(hosts(&["label=ssd=true"]), ["host1"]);
    assert_eq!(hosts(&["membership=accepted"]).len(), 3);
    assert!(hosts(&["membership=pending"]).is_empty());
    assert_eq!(
        node_filters(&args(&["role=boss"])).unwrap_err().0,
        "Error response from daemon: Invalid filter: 'role'='boss'"
    );
}

fn network(id: &str, name: &str, ingress: bool, labels: &[(&str, &str)]) -> Network {
    Network {
        id: id.into(),
        spec: Some(NetworkSpec {
            name: name.into(),
            driver: "overlay".into(),
            ingress,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        meta: Some(Meta {
            created_at_ms: 0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn network_ls_lists_ingress_with_docker_columns() {
    let nets = vec![
        network(
            "q1w2e3r4t5y6u7i8o9p0a1s2d",
            "demonet",
            false,
            &[("team", "a")],
        ),
        network("i9n8g7r6e5s4s3i2d1x0x0x0x", "ingress", true, &[]),
    ];
    let l = network_listing(&nets, &Filters::default(), false);
    assert_eq!(
        out(&l, false, None),
        "\
NETWORK ID     NAME      DRIVER    SCOPE
q1w2e3r4t5y6   demonet   overlay   swarm
i9n8g7r6e5s4   ingress   overlay   swarm
"
    );
    assert_eq!(out(&l, true, None), "q1w2e3r4t5y6\ni9n8g7r6e5s4\n");
    assert_eq!(
        out(
            &network_listing(&nets, &Filters::default(), true),
            true,
            None
        ),
        "q1w2e3r4t5y6u7i8o9p0a1s2d\ni9n8g7r6e5s4s3i2d1x0x0x0x\n"
    );
    assert_eq!(
        out(&l, false, Some("{{.Name}}:{{.Labels}}")),
        "demonet:team=a\ningress:\n"
    );
    let json = out(&l, false, Some("json"));
    assert_eq!(
        json_keys(&json)[0],
        [
            "CreatedAt",
            "Driver",
            "ID",
            "IPv6",
            "Internal",
            "Labels",
            "Name",
            "Scope"
        ]
    );
    assert!(
        json.contains(r#""CreatedAt":"1970-01-01 00:00:00.000 +0000 UTC""#),
        "{json}"
    );
    let named = |f: &[&str]| -> Vec<String> {
        let f = network_filters(&args(f)).unwrap();
        network_listing(&nets, &f, false)
            .rows
            .iter()
            .map(|r| r["Name"].as_str().unwrap().to_string())
            .collect()
    };
    // Docker matches name and id anywhere in them.
    assert_eq!(named(&["name=mon"]), ["demonet"]);
    assert_eq!(named(&["id=e5s4"]), ["ingress"]);
    assert_eq!(named(&["type=builtin"]), ["ingress"]);
    assert_eq!(named(&["type=custom"]), ["demonet"]);
    assert_eq!(named(&["driver=overlay"]).len(), 2);
    assert!(named(&["driver=bridge"]).is_empty());
    assert_eq!(named(&["scope=swarm"]).len(), 2);
    assert!(named(&["scope=local"]).is_empty());
    assert_eq!(named(&["label=team=a"]), ["demonet"]);
    assert_eq!(
        network_filters(&args(&["type=odd"])).unwrap_err().0,
        "Error response from daemon: Invalid filter: 'type'='odd'"
    );
}

#[test]
fn secret_and_config_ls() {
    let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    let none = BTreeMap::new();
    let objects = [
        ObjectRow {
            id: "s2id",
            name: "db_pass",
            labels: &labels,
            created_ms: NOW - 7_200_000,
            updated_ms: NOW - 60_000,
        },
        ObjectRow {
            id: "s1id",
            name: "api_key",
            labels: &none,
            created_ms: NOW - 3 * 86_400_000,
            updated_ms: NOW,
        },
    ];
    let secrets = object_listing(&objects, &Filters::default(), true, NOW);
    assert_eq!(
        out(&secrets, false, None),
        "\
ID        NAME      DRIVER    CREATED       UPDATED
s1id      api_key             3 days ago    Less than a second ago
s2id      db_pass             2 hours ago   About a minute ago
"
    );
    assert_eq!(out(&secrets, true, None), "s1id\ns2id\n");
    let configs = object_listing(&objects, &Filters::default(), false, NOW);
    assert_eq!(
        out(&configs, false, None).lines().next(),
        Some("ID        NAME      CREATED       UPDATED")
    );
    assert_eq!(
        out(&configs, false, Some("{{.Name}} {{.Labels}}")),
        "api_key \ndb_pass env=prod\n"
    );
    assert_eq!(
        json_keys(&out(&secrets, false, Some("json")))[0],
        ["CreatedAt", "Driver", "ID", "Labels", "Name", "UpdatedAt"]
    );
    let f = Filters::parse(&args(&["label=env", "name=db"]), OBJECT_FILTERS).unwrap();
    assert_eq!(object_listing(&objects, &f, true, NOW).rows.len(), 1);
    let f = Filters::parse(&args(&["id=s1"]), OBJECT_FILTERS).unwrap();
    assert_eq!(
        object_listing(&objects, &f, true, NOW).rows[0]["Name"],
        "api_key"
    );
    assert!(Filters::parse(&args(&["driver=x"]), OBJECT_FILTERS).is_err());
}

#[test]
fn stack_ls() {
    let stacks = BTreeMap::from([("app".to_string(), 3), ("db".to_string(), 1)]);
    let l = stack_listing(&stacks);
    assert_eq!(
        out(&l, false, None),
        "NAME      SERVICES\napp       3\ndb        1\n"
    );
    assert_eq!(out(&l, true, None), "app\ndb\n");
    assert_eq!(
        out(&l, false, Some("json")).lines().next(),
        Some(r#"{"Name":"app","Services":"3"}"#)
    );
}

#[test]
fn natural_order() {
    let mut v = vec!["web10", "web2", "db", "web1", "web"];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(v, ["db", "web", "web1", "web2", "web10"]);
}

#[test]
fn a_slot_that_moved_nodes_lists_its_newest_task_first() {
    use TaskState::{Running, Shutdown};
    let on = |node: &str, id: &str, slot: u64, desired: TaskState, created: i64| Task {
        node_id: node.into(),
        ..task(id, slot, desired, desired, created, "")
    };
    // After a drain, web.1's new task runs on node0; the old one (node1) is history.
    let mut ts = vec![
        on(
            "node1id",
            "t1old0000000000000000000a",
            1,
            Shutdown,
            NOW - 60_000,
        ),
        on(
            "node0id",
            "t1new0000000000000000000b",
            1,
            Running,
            NOW - 1_000,
        ),
    ];
    order_tasks(&mut ts);
    assert_eq!(ts[0].id, "t1new0000000000000000000b");
    // Global tasks (no slot) stay grouped by node.
    let mut ts = vec![
        on(
            "node2id",
            "gaaaa000000000000000000000",
            0,
            Running,
            NOW - 1_000,
        ),
        on(
            "node1id",
            "gbbbb000000000000000000000",
            0,
            Running,
            NOW - 9_000,
        ),
    ];
    order_tasks(&mut ts);
    assert_eq!(ts[0].node_id, "node1id");
}
