//! Turning the store's change feed into Docker's events: each applied batch names the objects
//! it touched; what changed in them is found by comparing with what was seen before.

use std::collections::{BTreeMap, HashMap};

use mini_proto::v1::{
    Event, Node, NodeAvailability, NodeRole, NodeState, Service, Task, TaskState, UpdateState,
    service_spec::Mode,
};

use crate::store::{Change, ObjectKind, StoreEvent, Tables};

/// What an event's attributes are made from, per object: only the fields Docker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Service {
        name: String,
        image: String,
        replicas: Option<u64>,
        update_state: Option<UpdateState>,
    },
    Node {
        name: String,
        availability: NodeAvailability,
        role: NodeRole,
        state: NodeState,
    },
    Named(String),
    Task {
        name: String,
        service_id: String,
        service_name: String,
        node_id: String,
        state: TaskState,
        desired_state: TaskState,
        err: String,
    },
}

/// The derivation's memory: what each object looked like in the last batch seen, and which
/// node led.
#[derive(Debug, Default)]
pub struct Deriver {
    seen: HashMap<(ObjectKindKey, String), Seen>,
    leader: Option<String>,
}

/// [`ObjectKind`] as a hashable key (the kinds that have events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ObjectKindKey {
    Service,
    Node,
    Network,
    Secret,
    Config,
    Task,
}

impl ObjectKindKey {
    fn of(kind: ObjectKind) -> Option<Self> {
        Some(match kind {
            ObjectKind::Service => Self::Service,
            ObjectKind::Node => Self::Node,
            ObjectKind::Network => Self::Network,
            ObjectKind::Secret => Self::Secret,
            ObjectKind::Config => Self::Config,
            ObjectKind::Task => Self::Task,
            ObjectKind::Cluster => return None,
        })
    }

    /// Docker's event type.
    fn name(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Node => "node",
            Self::Network => "network",
            Self::Secret => "secret",
            Self::Config => "config",
            Self::Task => "task",
        }
    }

    const ALL: [ObjectKindKey; 6] = [
        Self::Node,
        Self::Network,
        Self::Secret,
        Self::Config,
        Self::Service,
        Self::Task,
    ];
}

/// Docker's lower-case task state names (`running`, `pending`, ...).
pub fn task_state_name(state: TaskState) -> String {
    mini_proto::state_name(state).to_ascii_lowercase()
}

fn update_state_name(state: UpdateState) -> &'static str {
    match state {
        UpdateState::Unknown => "unknown",
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

fn node_state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

fn availability_name(a: NodeAvailability) -> &'static str {
    match a {
        NodeAvailability::Active => "active",
        NodeAvailability::Pause => "pause",
        NodeAvailability::Drain => "drain",
    }
}

fn role_name(r: NodeRole) -> &'static str {
    match r {
        NodeRole::Worker => "worker",
        NodeRole::Manager => "manager",
    }
}

fn seen_service(s: &Service) -> Seen {
    let spec = s.spec.clone().unwrap_or_default();
    Seen::Service {
        name: spec.name.clone(),
        image: spec.container.map(|c| c.image).unwrap_or_default(),
        replicas: match spec.mode {
            Some(Mode::Replicas(n)) => Some(n),
            _ => None,
        },
        update_state: s.update_status.as_ref().map(|u| u.state()),
    }
}

fn seen_node(n: &Node) -> Seen {
    Seen::Node {
        name: n.hostname.clone(),
        availability: n
            .spec
            .as_ref()
            .map_or(NodeAvailability::Active, |s| s.availability()),
        role: n.role(),
        state: n.status.as_ref().map_or(NodeState::Unknown, |s| s.state()),
    }
}

fn seen_task(t: &Task) -> Seen {
    let status = t.status.clone().unwrap_or_default();
    Seen::Task {
        name: mini_proto::task_name(t),
        service_id: t.service_id.clone(),
        service_name: t.service_name.clone(),
        node_id: t.node_id.clone(),
        state: status.state(),
        desired_state: t.desired_state(),
        err: status.err,
    }
}

fn lookup(tables: &Tables, kind: ObjectKindKey, id: &str) -> Option<Seen> {
    match kind {
        ObjectKindKey::Service => tables.services.get(id).map(seen_service),
        ObjectKindKey::Node => tables.nodes.get(id).map(seen_node),
        ObjectKindKey::Network => tables
            .networks
            .get(id)
            .map(|n| Seen::Named(n.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default())),
        ObjectKindKey::Secret => tables
            .secrets
            .get(id)
            .map(|s| Seen::Named(s.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default())),
        ObjectKindKey::Config => tables
            .configs
            .get(id)
            .map(|s| Seen::Named(s.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default())),
        ObjectKindKey::Task => tables.tasks.get(id).map(seen_task),
    }
}

fn ids(tables: &Tables, kind: ObjectKindKey) -> Vec<String> {
    fn keys<T>(m: &BTreeMap<String, T>) -> Vec<String> {
        m.keys().cloned().collect()
    }
    match kind {
        ObjectKindKey::Service => keys(&tables.services),
        ObjectKindKey::Node => keys(&tables.nodes),
        ObjectKindKey::Network => keys(&tables.networks),
        ObjectKindKey::Secret => keys(&tables.secrets),
        ObjectKindKey::Config => keys(&tables.configs),
        ObjectKindKey::Task => keys(&tables.tasks),
    }
}

/// `old`/`new` attribute pair when the value changed.
fn changed(attrs: &mut HashMap<String, String>, key: &str, old: &str, new: &str) {
    if old != new {
        attrs.insert(format!("{key}.old"), old.to_string());
        attrs.insert(format!("{key}.new"), new.to_string());
    }
}

/// The attributes of an event about `now` (`before`: the object as seen last, for an
/// update). `None`: an update that changed nothing Docker reports on this kind.
fn attributes(before: Option<&Seen>, now: &Seen) -> Option<HashMap<String, String>> {
    let mut attrs = HashMap::new();
    match now {
        Seen::Service {
            name,
            image,
            replicas,
            update_state,
        } => {
            attrs.insert("name".into(), name.clone());
            if let Some(Seen::Service {
                image: old_image,
                replicas: old_replicas,
                update_state: old_update,
                ..
            }) = before
            {
                changed(&mut attrs, "image", old_image, image);
                if let (Some(old), Some(new)) = (old_replicas, replicas) {
                    changed(&mut attrs, "replicas", &old.to_string(), &new.to_string());
                }
                match (old_update, update_state) {
                    (None, Some(new)) => {
                        attrs.insert("updatestate.new".into(), update_state_name(*new).into());
                    }
                    (Some(old), Some(new)) => {
                        changed(
                            &mut attrs,
                            "updatestate",
                            update_state_name(*old),
                            update_state_name(*new),
                        );
                    }
                    _ => {}
                }
            }
        }
        Seen::Node {
            name,
            availability,
            role,
            state,
        } => {
            attrs.insert("name".into(), name.clone());
            if let Some(Seen::Node {
                availability: old_availability,
                role: old_role,
                state: old_state,
                ..
            }) = before
            {
                changed(
                    &mut attrs,
                    "availability",
                    availability_name(*old_availability),
                    availability_name(*availability),
                );
                changed(&mut attrs, "role", role_name(*old_role), role_name(*role));
                changed(
                    &mut attrs,
                    "state",
                    node_state_name(*old_state),
                    node_state_name(*state),
                );
            }
        }
        Seen::Named(name) => {
            attrs.insert("name".into(), name.clone());
        }
        Seen::Task {
            name,
            service_id,
            service_name,
            node_id,
            state,
            desired_state,
            err,
        } => {
            attrs.insert("name".into(), name.clone());
            attrs.insert("service.id".into(), service_id.clone());
            attrs.insert("service.name".into(), service_name.clone());
            if !node_id.is_empty() {
                attrs.insert("node.id".into(), node_id.clone());
            }
            if !err.is_empty() {
                attrs.insert("error".into(), err.clone());
            }
            match before {
                Some(Seen::Task {
                    state: old_state,
                    desired_state: old_desired,
                    node_id: old_node,
                    ..
                }) => {
                    changed(
                        &mut attrs,
                        "state",
                        &task_state_name(*old_state),
                        &task_state_name(*state),
                    );
                    changed(
                        &mut attrs,
                        "desiredstate",
                        &task_state_name(*old_desired),
                        &task_state_name(*desired_state),
                    );
                    if old_node != node_id && old_node.is_empty() {
                        attrs.insert("node.new".into(), node_id.clone());
                    }
                    // A task is worth an event when its state, desired state or node
                    // changed; other writes (network attachments, ...) are not.
                    if old_state == state && old_desired == desired_state && old_node == node_id {
                        return None;
                    }
                }
                _ => {
                    attrs.insert("state.new".into(), task_state_name(*state));
                }
            }
        }
    }
    // An update that changed nothing reported is still an event for services, nodes,
    // networks, secrets and configs, as in Docker (every store update of them is one).
    Some(attrs)
}

fn event(
    kind: ObjectKindKey,
    action: &str,
    id: &str,
    attributes: HashMap<String, String>,
    now_ns: i64,
) -> Event {
    Event {
        r#type: kind.name().to_string(),
        action: action.to_string(),
        actor_id: id.to_string(),
        attributes,
        scope: "swarm".to_string(),
        time_nano: now_ns,
    }
}

impl Deriver {
    /// A deriver that knows `tables` as they are (no events for what exists already) and the
    /// node that leads (`None`: none known).
    pub fn new(tables: &Tables, leader: Option<String>) -> Self {
        let mut deriver = Deriver {
            seen: HashMap::new(),
            leader,
        };
        for kind in ObjectKindKey::ALL {
            for id in ids(tables, kind) {
                if let Some(seen) = lookup(tables, kind, &id) {
                    deriver.seen.insert((kind, id), seen);
                }
            }
        }
        deriver
    }

    /// The events of one applied batch: `tables` is the store right after it. A restored
    /// snapshot (or a feed that lagged: pass `restored`) is compared object by object.
    pub fn batch(&mut self, tables: &Tables, store_event: &StoreEvent, now_ns: i64) -> Vec<Event> {
        let changes: Vec<(ObjectKindKey, String)> = if store_event.restored {
            let mut all: Vec<(ObjectKindKey, String)> = self.seen.keys().cloned().collect();
            for kind in ObjectKindKey::ALL {
                all.extend(ids(tables, kind).into_iter().map(|id| (kind, id)));
            }
            all.sort_by_key(|(k, id)| (ObjectKindKey::ALL.iter().position(|x| x == k), id.clone()));
            all.dedup();
            all
        } else {
            store_event
                .changes
                .iter()
                .filter_map(|Change { kind, id, .. }| {
                    ObjectKindKey::of(*kind).map(|k| (k, id.clone()))
                })
                .collect()
        };
        let mut out = Vec::new();
        for (kind, id) in changes {
            let now = lookup(tables, kind, &id);
            let key = (kind, id);
            let before = self.seen.get(&key);
            match (before, now) {
                (None, None) => {}
                (Some(before), None) => {
                    if let Some(attrs) = attributes(None, before) {
                        // A removed object: its last attributes, without the state pair.
                        let mut attrs = attrs;
                        attrs.remove("state.new");
                        out.push(event(kind, "remove", &key.1, attrs, now_ns));
                    }
                    self.seen.remove(&key);
                }
                (None, Some(now)) => {
                    if let Some(attrs) = attributes(None, &now) {
                        out.push(event(kind, "create", &key.1, attrs, now_ns));
                    }
                    self.seen.insert(key, now);
                }
                (Some(before), Some(now)) => {
                    if before == &now && store_event.restored {
                        continue;
                    }
                    if let Some(attrs) = attributes(Some(before), &now) {
                        out.push(event(kind, "update", &key.1, attrs, now_ns));
                    }
                    self.seen.insert(key, now);
                }
            }
        }
        out
    }

    /// The events of a change of leader (`leader`: the node that leads now): Docker's node
    /// updates with `leader.old`/`leader.new` on the node that stopped leading and on the one
    /// that leads now.
    pub fn leader(&mut self, leader: Option<String>, now_ns: i64) -> Vec<Event> {
        if leader == self.leader {
            return Vec::new();
        }
        let before = std::mem::replace(&mut self.leader, leader.clone());
        let mut out = Vec::new();
        for (id, old, new) in [(before, "true", "false"), (leader, "false", "true")] {
            let Some(id) = id else { continue };
            let name = match self.seen.get(&(ObjectKindKey::Node, id.clone())) {
                Some(Seen::Node { name, .. }) => name.clone(),
                _ => String::new(),
            };
            let attrs = HashMap::from([
                ("name".to_string(), name),
                ("leader.old".to_string(), old.to_string()),
                ("leader.new".to_string(), new.to_string()),
            ]);
            out.push(event(ObjectKindKey::Node, "update", &id, attrs, now_ns));
        }
        out
    }
}
