use mini_proto::v1::{
    ContainerSpec, EventFilter, Node, NodeSpec, NodeStatus, Service, ServiceSpec, Task, TaskStatus,
    service_spec::Mode,
};

use super::*;
use crate::store::{Change, ObjectKind, Tables};

fn service(id: &str, replicas: u64) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            mode: Some(Mode::Replicas(replicas)),
            container: Some(ContainerSpec {
                image: "host".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn task(id: &str, state: TaskState, node: &str) -> Task {
    Task {
        id: id.into(),
        service_id: "svc1".into(),
        service_name: "web".into(),
        slot: 1,
        node_id: node.into(),
        status: Some(TaskStatus {
            state: state as i32,
            ..Default::default()
        }),
        desired_state: TaskState::Running as i32,
        ..Default::default()
    }
}

fn node(id: &str, state: NodeState) -> Node {
    Node {
        id: id.into(),
        hostname: format!("host-{id}"),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            state: state as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

use mini_proto::v1::{NodeState, TaskState};

fn batch(changes: &[(ObjectKind, &str)]) -> StoreEvent {
    StoreEvent {
        index: 1,
        changes: changes
            .iter()
            .map(|(kind, id)| Change {
                kind: *kind,
                id: id.to_string(),
                removed: false,
            })
            .collect(),
        restored: false,
    }
}

/// `type action id k=v,...` of each event, attributes sorted.
fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let mut attrs: Vec<String> = e
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            attrs.sort();
            format!(
                "{} {} {} {}",
                e.r#type,
                e.action,
                e.actor_id,
                attrs.join(",")
            )
        })
        .collect()
}

#[test]
fn a_service_is_created_scaled_and_removed() {
    let mut tables = Tables::default();
    let mut d = Deriver::new(&tables, None);
    tables.services.insert("svc1".into(), service("svc1", 1));
    let created = d.batch(&tables, &batch(&[(ObjectKind::Service, "svc1")]), 1);
    assert_eq!(lines(&created), ["service create svc1 name=web"]);
    tables.services.insert("svc1".into(), service("svc1", 3));
    let scaled = d.batch(&tables, &batch(&[(ObjectKind::Service, "svc1")]), 2);
    assert_eq!(
        lines(&scaled),
        ["service update svc1 name=web,replicas.new=3,replicas.old=1"]
    );
    assert_eq!(scaled[0].scope, "swarm");
    assert_eq!(scaled[0].time_nano, 2);
    tables.services.clear();
    let removed = d.batch(&tables, &batch(&[(ObjectKind::Service, "svc1")]), 3);
    assert_eq!(lines(&removed), ["service remove svc1 name=web"]);
    // The cluster object has no events.
    assert!(
        d.batch(&tables, &batch(&[(ObjectKind::Cluster, "c")]), 4)
            .is_empty()
    );
}

#[test]
fn task_state_changes_are_events_and_other_task_writes_are_not() {
    let mut tables = Tables::default();
    let mut d = Deriver::new(&tables, None);
    tables
        .tasks
        .insert("t1".into(), task("t1", TaskState::Pending, ""));
    let created = d.batch(&tables, &batch(&[(ObjectKind::Task, "t1")]), 1);
    assert_eq!(
        lines(&created),
        ["task create t1 name=web.1,service.id=svc1,service.name=web,state.new=pending"]
    );
    tables
        .tasks
        .insert("t1".into(), task("t1", TaskState::Running, "n1"));
    let running = d.batch(&tables, &batch(&[(ObjectKind::Task, "t1")]), 2);
    assert_eq!(
        lines(&running),
        [
            "task update t1 name=web.1,node.id=n1,node.new=n1,service.id=svc1,service.name=web,\
             state.new=running,state.old=pending"
        ]
    );
    // The same state written again (e.g. an attachment added): nothing.
    let mut again = task("t1", TaskState::Running, "n1");
    again.networks.push(Default::default());
    tables.tasks.insert("t1".into(), again);
    assert!(
        d.batch(&tables, &batch(&[(ObjectKind::Task, "t1")]), 3)
            .is_empty()
    );
}

#[test]
fn a_node_going_down_and_a_new_leader_are_node_updates() {
    let mut tables = Tables::default();
    tables
        .nodes
        .insert("n1".into(), node("n1", NodeState::Ready));
    tables
        .nodes
        .insert("n2".into(), node("n2", NodeState::Ready));
    let mut d = Deriver::new(&tables, Some("n1".into()));
    tables
        .nodes
        .insert("n2".into(), node("n2", NodeState::Down));
    let down = d.batch(&tables, &batch(&[(ObjectKind::Node, "n2")]), 1);
    assert_eq!(
        lines(&down),
        ["node update n2 name=host-n2,state.new=down,state.old=ready"]
    );
    assert!(
        d.leader(Some("n1".into()), 2).is_empty(),
        "no change, no event"
    );
    let moved = d.leader(Some("n2".into()), 3);
    assert_eq!(
        lines(&moved),
        [
            "node update n1 leader.new=false,leader.old=true,name=host-n1",
            "node update n2 leader.new=true,leader.old=false,name=host-n2",
        ]
    );
    // A restored snapshot is compared object by object: only what differs is an event.
    tables.nodes.remove("n1");
    let restored = StoreEvent {
        index: 9,
        changes: Vec::new(),
        restored: true,
    };
    assert_eq!(
        lines(&d.batch(&tables, &restored, 4)),
        ["node remove n1 name=host-n1"]
    );
}

fn filters(pairs: &[(&str, &str)]) -> Result<Filters, FilterError> {
    Filters::parse(
        &pairs
            .iter()
            .map(|(k, v)| EventFilter {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect::<Vec<_>>(),
    )
}

#[test]
fn filters_follow_dockers_rules_and_name_a_bad_key() {
    let mut tables = Tables::default();
    let mut d = Deriver::new(&tables, None);
    tables.services.insert("svc1".into(), service("svc1", 1));
    tables
        .tasks
        .insert("t1".into(), task("t1", TaskState::Pending, ""));
    let events = d.batch(
        &tables,
        &batch(&[(ObjectKind::Service, "svc1"), (ObjectKind::Task, "t1")]),
        1,
    );
    let count = |f: &[(&str, &str)]| {
        let f = filters(f).unwrap();
        events.iter().filter(|e| f.matches(e)).count()
    };
    assert_eq!(count(&[]), 2);
    assert_eq!(count(&[("type", "service")]), 1);
    assert_eq!(count(&[("type", "service"), ("type", "task")]), 2, "ORed");
    assert_eq!(count(&[("type", "task"), ("event", "update")]), 0, "ANDed");
    assert_eq!(count(&[("service", "web")]), 2, "the service and its task");
    assert_eq!(count(&[("service", "svc1"), ("type", "service")]), 1);
    assert_eq!(count(&[("scope", "local")]), 0);
    let err = filters(&[("bogus", "x")]).unwrap_err().to_string();
    assert!(err.starts_with("invalid filter 'bogus'"), "{err}");
    let err = filters(&[("type", "container")]).unwrap_err().to_string();
    assert!(err.contains("type=container"), "{err}");
    let err = filters(&[("container", "x")]).unwrap_err().to_string();
    assert_eq!(
        err,
        "not supported by mini: --filter container (mini has no container events)"
    );
}

#[test]
fn the_history_keeps_the_last_events_and_subscribers_get_them_then_live_ones() {
    let hub = EventHub::new();
    let ev = |t: i64| Event {
        r#type: "service".into(),
        action: "update".into(),
        time_nano: t,
        ..Default::default()
    };
    hub.publish((1..=(HISTORY as i64 + 10)).map(ev).collect());
    let (past, mut rx) = hub.subscribe(1);
    assert_eq!(past.len(), HISTORY, "bounded");
    assert_eq!(past[0].time_nano, 11, "the oldest went first");
    let (recent, _) = hub.subscribe(HISTORY as i64 + 5);
    assert_eq!(recent.len(), 6);
    let (none, _) = hub.subscribe(0);
    assert!(none.is_empty(), "no --since: only new events");
    hub.publish(vec![ev(5000)]);
    assert_eq!(rx.try_recv().unwrap().time_nano, 5000);
}
