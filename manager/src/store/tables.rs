//! The in-memory tables and lookups by name or id.

use std::collections::BTreeMap;

use mini_proto::v1::{Cluster, Config, Network, Node, Secret, Service, StoreSnapshot, Task};

use super::{ObjectKind, TaskTable};

/// Every object of the cluster, keyed by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tables {
    /// Cluster settings; `None` before `swarm init` was applied.
    pub cluster: Option<Cluster>,
    /// Nodes by id.
    pub nodes: BTreeMap<String, Node>,
    /// Networks by id.
    pub networks: BTreeMap<String, Network>,
    /// Services by id.
    pub services: BTreeMap<String, Service>,
    /// Tasks by id (read like a `BTreeMap`), indexed by node: changed only through
    /// [`TaskTable::insert`] and [`TaskTable::remove`], which keep the index.
    pub tasks: TaskTable,
    /// Secrets by id.
    pub secrets: BTreeMap<String, Secret>,
    /// Configs by id.
    pub configs: BTreeMap<String, Config>,
}

/// A name or id that matches no object, or more than one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing matched.
    #[error("no such {kind}: {query}")]
    NotFound {
        /// Kind looked for.
        kind: ObjectKind,
        /// What the user gave.
        query: String,
    },
    /// An id prefix matched several objects.
    #[error("{kind} {query:?} is ambiguous: it matches {count} {kind}s; give more of the id")]
    Ambiguous {
        /// Kind looked for.
        kind: ObjectKind,
        /// What the user gave.
        query: String,
        /// How many matched.
        count: usize,
    },
    /// The store has no cluster object (the swarm is not initialised, or this manager has not
    /// caught up yet).
    #[error("the cluster object is missing: this manager has not caught up with the swarm yet")]
    NoCluster,
}

/// Finds one object by exact id, then exact name, then unique id prefix
/// (Docker's order).
fn lookup<'a, T>(
    kind: ObjectKind,
    map: &'a BTreeMap<String, T>,
    query: &str,
    name_of: impl Fn(&T) -> &str,
) -> Result<&'a T, LookupError> {
    if query.is_empty() {
        return Err(LookupError::NotFound {
            kind,
            query: query.to_string(),
        });
    }
    if let Some(obj) = map.get(query) {
        return Ok(obj);
    }
    if let Some(obj) = map.values().find(|o| name_of(o) == query) {
        return Ok(obj);
    }
    let matches: Vec<&T> = map
        .range(query.to_string()..)
        .take_while(|(id, _)| id.starts_with(query))
        .map(|(_, o)| o)
        .collect();
    match matches.len() {
        0 => Err(LookupError::NotFound {
            kind,
            query: query.to_string(),
        }),
        1 => Ok(matches[0]),
        count => Err(LookupError::Ambiguous {
            kind,
            query: query.to_string(),
            count,
        }),
    }
}

impl Tables {
    /// The cluster object.
    pub fn cluster(&self) -> Result<&Cluster, LookupError> {
        self.cluster.as_ref().ok_or(LookupError::NoCluster)
    }

    /// A network by id, name or unique id prefix.
    pub fn network(&self, query: &str) -> Result<&Network, LookupError> {
        lookup(ObjectKind::Network, &self.networks, query, |n| {
            n.spec.as_ref().map_or("", |s| s.name.as_str())
        })
    }

    /// A service by id, name or unique id prefix.
    pub fn service(&self, query: &str) -> Result<&Service, LookupError> {
        lookup(ObjectKind::Service, &self.services, query, |s| {
            s.spec.as_ref().map_or("", |s| s.name.as_str())
        })
    }

    /// A secret by id, name or unique id prefix.
    pub fn secret(&self, query: &str) -> Result<&Secret, LookupError> {
        lookup(ObjectKind::Secret, &self.secrets, query, |s| {
            s.spec.as_ref().map_or("", |s| s.name.as_str())
        })
    }

    /// A config by id, name or unique id prefix.
    pub fn config(&self, query: &str) -> Result<&Config, LookupError> {
        lookup(ObjectKind::Config, &self.configs, query, |c| {
            c.spec.as_ref().map_or("", |s| s.name.as_str())
        })
    }

    /// A node by id, hostname or unique id prefix.
    pub fn node(&self, query: &str) -> Result<&Node, LookupError> {
        lookup(ObjectKind::Node, &self.nodes, query, |n| {
            n.hostname.as_str()
        })
    }

    /// The tasks of one service, in id order (from the task table's index by service).
    pub fn tasks_of_service<'a>(
        &'a self,
        service_id: &'a str,
    ) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.of_service(service_id)
    }

    /// The whole store as a snapshot message.
    pub fn to_snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            cluster: self.cluster.clone(),
            nodes: self.nodes.values().cloned().collect(),
            networks: self.networks.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            tasks: self.tasks.values().cloned().collect(),
            secrets: self.secrets.values().cloned().collect(),
            configs: self.configs.values().cloned().collect(),
            proposals: Vec::new(),
        }
    }

    /// Tables holding exactly what a snapshot holds.
    pub fn from_snapshot(snapshot: StoreSnapshot) -> Self {
        Tables {
            cluster: snapshot.cluster,
            nodes: snapshot
                .nodes
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            networks: snapshot
                .networks
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            services: snapshot
                .services
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            tasks: snapshot
                .tasks
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            secrets: snapshot
                .secrets
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            configs: snapshot
                .configs
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
        }
    }
}
