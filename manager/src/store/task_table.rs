//! The task table: tasks by id, and the ids of each node's and each service's tasks.
//!
//! Every session of a worker asks for its node's tasks on each store change, and the
//! orchestrator, `service ls` and `service ps` ask for each service's tasks; with an index each
//! visits those tasks only instead of every task of the cluster. The indexes cannot drift from
//! the tasks because the table is changed only through [`TaskTable::insert`] and
//! [`TaskTable::remove`] (and built with [`FromIterator`], which inserts): reads go through
//! [`Deref`] to the map, and there is no `DerefMut`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use mini_proto::v1::Task;

/// Key → ids of the tasks with that key, in id order. An empty key is not indexed, and a key
/// with no task has no entry (so the index equals one rebuilt from the tasks).
pub type TaskIndex = BTreeMap<String, BTreeSet<String>>;

/// Tasks by id, with an index from node id and one from service id to the ids of their tasks.
///
/// A task whose `node_id` is empty (not scheduled yet) is not in the node index; one whose
/// `service_id` is empty is not in the service index. Reads of the map (`get`, `values`,
/// `tasks[&id]`, …) work as on a `BTreeMap` through [`Deref`].
#[derive(Debug, Clone, Default)]
pub struct TaskTable {
    /// Tasks by id.
    by_id: BTreeMap<String, Task>,
    /// Node id → ids of its tasks.
    by_node: TaskIndex,
    /// Service id → ids of its tasks.
    by_service: TaskIndex,
}

impl TaskTable {
    /// Stores `task` under `id`, replacing (and returning) the task stored there before; the
    /// indexes follow a change of node or service.
    pub fn insert(&mut self, id: String, task: Task) -> Option<Task> {
        let previous = self.by_id.get(&id);
        let (old_node, old_service) =
            previous.map_or(("", ""), |p| (p.node_id.as_str(), p.service_id.as_str()));
        // A new task counts as moving from "" (not indexed): nothing to do if it has no key.
        if old_node != task.node_id {
            reindex(&mut self.by_node, old_node, &task.node_id, &id);
        }
        if old_service != task.service_id {
            reindex(&mut self.by_service, old_service, &task.service_id, &id);
        }
        self.by_id.insert(id, task)
    }

    /// Removes (and returns) the task stored under `id`.
    pub fn remove(&mut self, id: &str) -> Option<Task> {
        let removed = self.by_id.remove(id)?;
        unindex(&mut self.by_node, &removed.node_id, id);
        unindex(&mut self.by_service, &removed.service_id, id);
        Some(removed)
    }

    /// The tasks bound to `node_id`, in id order (none for an empty `node_id`).
    pub fn on_node<'a>(&'a self, node_id: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.indexed(&self.by_node, node_id)
    }

    /// The tasks of `service_id`, in id order (none for an empty `service_id`).
    pub fn of_service<'a>(&'a self, service_id: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.indexed(&self.by_service, service_id)
    }

    /// The node index as it stands: node id → ids of its tasks.
    pub fn node_index(&self) -> &TaskIndex {
        &self.by_node
    }

    /// The service index as it stands: service id → ids of its tasks.
    pub fn service_index(&self) -> &TaskIndex {
        &self.by_service
    }

    fn indexed<'a>(
        &'a self,
        index: &'a TaskIndex,
        key: &str,
    ) -> impl Iterator<Item = &'a Task> + 'a {
        index
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }
}

/// Moves `id` from `old`'s entry to `new`'s (either may be empty: not indexed).
fn reindex(index: &mut TaskIndex, old: &str, new: &str, id: &str) {
    unindex(index, old, id);
    if !new.is_empty() {
        index
            .entry(new.to_string())
            .or_default()
            .insert(id.to_string());
    }
}

/// Takes `id` out of `key`'s entry, dropping the entry when it is left empty.
fn unindex(index: &mut TaskIndex, key: &str, id: &str) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

impl Deref for TaskTable {
    type Target = BTreeMap<String, Task>;

    fn deref(&self) -> &Self::Target {
        &self.by_id
    }
}

/// Two tables are equal when they hold the same tasks (the index follows from them).
impl PartialEq for TaskTable {
    fn eq(&self, other: &Self) -> bool {
        self.by_id == other.by_id
    }
}

impl FromIterator<(String, Task)> for TaskTable {
    fn from_iter<I: IntoIterator<Item = (String, Task)>>(iter: I) -> Self {
        let mut table = TaskTable::default();
        for (id, task) in iter {
            table.insert(id, task);
        }
        table
    }
}
