//! Deterministic application of a batch to the tables.
//!
//! Every action is checked and applied in order; if one fails, the actions
//! before it are undone, so a batch applies entirely or not at all. Versions
//! are the Raft index of the batch and timestamps come from the batch itself,
//! so every manager computes the same tables.

use std::collections::BTreeMap;

use mini_proto::v1::{
    Cluster, Config, Meta, Network, Node, Secret, Service, StoreBatch, Task, store_action::Action,
};

use super::{ApplyError, Change, ObjectKind, Tables};

/// The previous value of one object touched by a batch, to roll it back.
// Short-lived (one batch's apply); a service (with its previous spec) is the large one.
#[allow(clippy::large_enum_variant)]
enum Undo {
    Cluster(Option<Cluster>),
    Node(String, Option<Node>),
    Network(String, Option<Network>),
    Service(String, Option<Service>),
    Task(String, Option<Task>),
    Secret(String, Option<Secret>),
    Config(String, Option<Config>),
}

/// What the store needs to know of each kind of keyed object.
trait Object: Clone {
    const KIND: ObjectKind;
    fn id(&self) -> &str;
    fn meta(&mut self) -> &mut Meta;
    fn version(&self) -> u64;
    fn created_at(&self) -> i64;
    /// The name that must be unique among objects of this kind, if any.
    fn unique_name(&self) -> Option<&str> {
        None
    }
    /// The table of this kind, to read.
    fn table(tables: &Tables) -> &BTreeMap<String, Self>;
    /// Writes go through these two so the task table keeps its index by node.
    fn insert(tables: &mut Tables, id: String, object: Self) -> Option<Self>;
    fn remove(tables: &mut Tables, id: &str) -> Option<Self>;
    fn undo(id: String, previous: Option<Self>) -> Undo;
}

macro_rules! object {
    ($ty:ident, $kind:ident, $field:ident, $name:expr) => {
        impl Object for $ty {
            const KIND: ObjectKind = ObjectKind::$kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn meta(&mut self) -> &mut Meta {
                self.meta.get_or_insert_with(Meta::default)
            }
            fn version(&self) -> u64 {
                self.meta.as_ref().map_or(0, |m| m.version)
            }
            fn created_at(&self) -> i64 {
                self.meta.as_ref().map_or(0, |m| m.created_at_ms)
            }
            fn unique_name(&self) -> Option<&str> {
                let name: fn(&Self) -> Option<&str> = $name;
                name(self)
            }
            fn table(tables: &Tables) -> &BTreeMap<String, Self> {
                &tables.$field
            }
            fn insert(tables: &mut Tables, id: String, object: Self) -> Option<Self> {
                tables.$field.insert(id, object)
            }
            fn remove(tables: &mut Tables, id: &str) -> Option<Self> {
                tables.$field.remove(id)
            }
            fn undo(id: String, previous: Option<Self>) -> Undo {
                Undo::$kind(id, previous)
            }
        }
    };
}

object!(Node, Node, nodes, |_| None);
object!(Network, Network, networks, |n| n
    .spec
    .as_ref()
    .map(|s| s.name.as_str()));
object!(Service, Service, services, |s| s
    .spec
    .as_ref()
    .map(|s| s.name.as_str()));
object!(Task, Task, tasks, |_| None);
object!(Secret, Secret, secrets, |s| s
    .spec
    .as_ref()
    .map(|s| s.name.as_str()));
object!(Config, Config, configs, |c| c
    .spec
    .as_ref()
    .map(|s| s.name.as_str()));

/// Applies `batch` at Raft index `index`. On error the tables are unchanged.
pub(super) fn apply_batch(
    tables: &mut Tables,
    index: u64,
    batch: &StoreBatch,
) -> Result<Vec<Change>, ApplyError> {
    let mut undo = Vec::with_capacity(batch.actions.len());
    let mut changes = Vec::with_capacity(batch.actions.len());
    for action in &batch.actions {
        let step = match &action.action {
            None => Err(ApplyError::EmptyAction),
            Some(Action::PutCluster(c)) => put_cluster(
                tables,
                c,
                action.create,
                index,
                batch.proposed_at_ms,
                &mut undo,
            ),
            Some(Action::PutNode(o)) => put(
                tables,
                o,
                action.create,
                index,
                batch.proposed_at_ms,
                &mut undo,
            ),
            Some(Action::PutNetwork(o)) => put(
                tables,
                o,
                action.create,
                index,
                batch.proposed_at_ms,
                &mut undo,
            ),
            Some(Action::PutService(o)) => check_service(tables, o).and_then(|()| {
                put(
                    tables,
                    o,
                    action.create,
                    index,
                    batch.proposed_at_ms,
                    &mut undo,
                )
            }),
            Some(Action::PutTask(o)) => put(
                tables,
                o,
                action.create,
                index,
                batch.proposed_at_ms,
                &mut undo,
            ),
            Some(Action::PutSecret(o)) => put(
                tables,
                o,
                action.create,
                index,
                batch.proposed_at_ms,
                &mut undo,
            ),
            Some(Action::PutConfig(o)) => put(
                tables,
                o,
                action.create,
                index,
                batch.proposed_at_ms,
                &mut undo,
            ),
            Some(Action::RemoveSecret(id)) => check_unused(tables, ObjectKind::Secret, id)
                .and_then(|()| remove::<Secret>(tables, id, &mut undo)),
            Some(Action::RemoveConfig(id)) => check_unused(tables, ObjectKind::Config, id)
                .and_then(|()| remove::<Config>(tables, id, &mut undo)),
            Some(Action::RemoveNode(id)) => remove::<Node>(tables, id, &mut undo),
            Some(Action::RemoveNetwork(id)) => check_unused(tables, ObjectKind::Network, id)
                .and_then(|()| remove::<Network>(tables, id, &mut undo)),
            Some(Action::RemoveService(id)) => remove::<Service>(tables, id, &mut undo),
            Some(Action::RemoveTask(id)) => remove::<Task>(tables, id, &mut undo),
        };
        match step {
            Ok(change) => changes.push(change),
            Err(err) => {
                roll_back(tables, undo);
                return Err(err);
            }
        }
    }
    Ok(changes)
}

/// What a caller checked on its view but another writer may have changed since, checked again
/// on the tables the service is applied to: the networks, secrets and configs it refers to
/// exist, and no other service publishes one of its ports. Writers decide without a lock, so
/// two of them may decide from the same view; the second batch is refused here.
fn check_service(tables: &Tables, service: &Service) -> Result<(), ApplyError> {
    let Some(spec) = service.spec.as_ref() else {
        return Ok(());
    };
    for network in &spec.networks {
        if !tables.networks.contains_key(network) {
            return Err(ApplyError::Missing {
                kind: ObjectKind::Network,
                id: network.clone(),
            });
        }
    }
    if let Some(container) = spec.container.as_ref() {
        for r in &container.secrets {
            if !r.secret_id.is_empty() && !tables.secrets.contains_key(&r.secret_id) {
                return Err(ApplyError::Missing {
                    kind: ObjectKind::Secret,
                    id: r.secret_id.clone(),
                });
            }
        }
        for r in &container.configs {
            if !r.config_id.is_empty() && !tables.configs.contains_key(&r.config_id) {
                return Err(ApplyError::Missing {
                    kind: ObjectKind::Config,
                    id: r.config_id.clone(),
                });
            }
        }
    }
    let ports = spec.endpoint.as_ref().map_or(&[][..], |e| &e.ports[..]);
    for p in ports.iter().filter(|p| p.published_port != 0) {
        let holder = tables.services.values().find(|other| {
            other.id != service.id
                && other
                    .spec
                    .as_ref()
                    .and_then(|s| s.endpoint.as_ref())
                    .is_some_and(|e| {
                        e.ports.iter().any(|q| {
                            q.protocol == p.protocol && q.published_port == p.published_port
                        })
                    })
        });
        if let Some(holder) = holder {
            return Err(ApplyError::PortTaken {
                port: p.published_port,
                protocol: p.protocol.clone(),
                service: holder
                    .spec
                    .as_ref()
                    .map_or(holder.id.clone(), |s| s.name.clone()),
            });
        }
    }
    Ok(())
}

/// A network, secret or config may go only when no service refers to it (and, for a network,
/// no task still holds an address on it): checked again here because a service may have been
/// given it after the remover's view.
fn check_unused(tables: &Tables, kind: ObjectKind, id: &str) -> Result<(), ApplyError> {
    let refers = |s: &&Service| {
        let Some(spec) = s.spec.as_ref() else {
            return false;
        };
        let container = spec.container.as_ref();
        match kind {
            ObjectKind::Network => spec.networks.iter().any(|n| n == id),
            ObjectKind::Secret => {
                container.is_some_and(|c| c.secrets.iter().any(|r| r.secret_id == id))
            }
            ObjectKind::Config => {
                container.is_some_and(|c| c.configs.iter().any(|r| r.config_id == id))
            }
            _ => false,
        }
    };
    let users: Vec<&str> = tables
        .services
        .values()
        .filter(refers)
        .map(|s| s.spec.as_ref().map_or(s.id.as_str(), |s| s.name.as_str()))
        .collect();
    let name = |n: Option<&str>| n.map_or_else(|| id.to_string(), str::to_string);
    let object_name = match kind {
        ObjectKind::Network => name(
            tables
                .networks
                .get(id)
                .and_then(|n| n.spec.as_ref())
                .map(|s| s.name.as_str()),
        ),
        ObjectKind::Secret => name(
            tables
                .secrets
                .get(id)
                .and_then(|n| n.spec.as_ref())
                .map(|s| s.name.as_str()),
        ),
        ObjectKind::Config => name(
            tables
                .configs
                .get(id)
                .and_then(|n| n.spec.as_ref())
                .map(|s| s.name.as_str()),
        ),
        _ => id.to_string(),
    };
    if !users.is_empty() {
        return Err(ApplyError::InUse {
            kind,
            name: object_name,
            by: format!("service {}", users.join(", ")),
        });
    }
    if kind == ObjectKind::Network {
        let holders = tables
            .tasks
            .values()
            .filter(|task| {
                crate::allocator::holds_addresses(task)
                    && task.networks.iter().any(|a| a.network_id == id)
            })
            .count();
        if holders > 0 {
            return Err(ApplyError::InUse {
                kind,
                name: object_name,
                by: format!("{holders} task(s) still attached"),
            });
        }
    }
    Ok(())
}

fn put<T: Object>(
    tables: &mut Tables,
    object: &T,
    create: bool,
    index: u64,
    now_ms: i64,
    undo: &mut Vec<Undo>,
) -> Result<Change, ApplyError> {
    let id = object.id().to_string();
    let table = T::table(tables);
    let previous = table.get(&id).cloned();
    let mut next = object.clone();
    match (&previous, create) {
        (Some(_), true) => return Err(ApplyError::Exists { kind: T::KIND, id }),
        (None, false) => return Err(ApplyError::Missing { kind: T::KIND, id }),
        (Some(stored), false) if stored.version() != object.version() => {
            return Err(ApplyError::Stale {
                kind: T::KIND,
                id,
                given: object.version(),
                stored: stored.version(),
            });
        }
        _ => {}
    }
    if let Some(name) = next.unique_name()
        && let Some(holder) = table
            .values()
            .find(|o| o.id() != id && o.unique_name() == Some(name))
    {
        return Err(ApplyError::NameTaken {
            kind: T::KIND,
            name: name.to_string(),
            id: holder.id().to_string(),
        });
    }
    let created_at = previous.as_ref().map_or(now_ms, T::created_at);
    let meta = next.meta();
    meta.version = index;
    meta.created_at_ms = created_at;
    meta.updated_at_ms = now_ms;
    T::insert(tables, id.clone(), next);
    undo.push(T::undo(id.clone(), previous));
    Ok(Change {
        kind: T::KIND,
        id,
        removed: false,
    })
}

fn remove<T: Object>(
    tables: &mut Tables,
    id: &str,
    undo: &mut Vec<Undo>,
) -> Result<Change, ApplyError> {
    match T::remove(tables, id) {
        Some(previous) => {
            undo.push(T::undo(id.to_string(), Some(previous)));
            Ok(Change {
                kind: T::KIND,
                id: id.to_string(),
                removed: true,
            })
        }
        None => Err(ApplyError::Missing {
            kind: T::KIND,
            id: id.to_string(),
        }),
    }
}

fn put_cluster(
    tables: &mut Tables,
    cluster: &Cluster,
    create: bool,
    index: u64,
    now_ms: i64,
    undo: &mut Vec<Undo>,
) -> Result<Change, ApplyError> {
    let stored_version = tables
        .cluster
        .as_ref()
        .map(|c| c.meta.as_ref().map_or(0, |m| m.version));
    let given = cluster.meta.as_ref().map_or(0, |m| m.version);
    match (stored_version, create) {
        (Some(_), true) => {
            return Err(ApplyError::Exists {
                kind: ObjectKind::Cluster,
                id: cluster.id.clone(),
            });
        }
        (None, false) => {
            return Err(ApplyError::Missing {
                kind: ObjectKind::Cluster,
                id: cluster.id.clone(),
            });
        }
        (Some(stored), false) if stored != given => {
            return Err(ApplyError::Stale {
                kind: ObjectKind::Cluster,
                id: cluster.id.clone(),
                given,
                stored,
            });
        }
        _ => {}
    }
    let created_at = tables
        .cluster
        .as_ref()
        .and_then(|c| c.meta.as_ref())
        .map_or(now_ms, |m| m.created_at_ms);
    let mut next = cluster.clone();
    next.meta = Some(Meta {
        version: index,
        created_at_ms: created_at,
        updated_at_ms: now_ms,
    });
    undo.push(Undo::Cluster(tables.cluster.replace(next)));
    Ok(Change {
        kind: ObjectKind::Cluster,
        id: cluster.id.clone(),
        removed: false,
    })
}

fn roll_back(tables: &mut Tables, undo: Vec<Undo>) {
    fn restore<T: Object>(tables: &mut Tables, id: String, previous: Option<T>) {
        match previous {
            Some(p) => T::insert(tables, id, p),
            None => T::remove(tables, &id),
        };
    }
    for step in undo.into_iter().rev() {
        match step {
            Undo::Cluster(previous) => tables.cluster = previous,
            Undo::Node(id, p) => restore(tables, id, p),
            Undo::Network(id, p) => restore(tables, id, p),
            Undo::Service(id, p) => restore(tables, id, p),
            Undo::Task(id, p) => restore(tables, id, p),
            Undo::Secret(id, p) => restore(tables, id, p),
            Undo::Config(id, p) => restore(tables, id, p),
        }
    }
}
