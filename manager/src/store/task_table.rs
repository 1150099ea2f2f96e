//! The task table: tasks by id, and the ids of each node's tasks.
//!
//! Every session of a worker asks for its node's tasks on each store change; with an index
//! it visits those tasks only instead of every task of the cluster. The index cannot drift
//! from the tasks because the table is changed only through [`TaskTable::insert`] and
//! [`TaskTable::remove`] (and built with [`FromIterator`], which inserts): reads go through
//! [`Deref`] to the map, and there is no `DerefMut`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use mini_proto::v1::Task;

/// Tasks by id, with an index from node id to the ids of the tasks bound to that node.
///
/// A task whose `node_id` is empty (not scheduled yet) is not in the index. Reads of the map
/// (`get`, `values`, `tasks[&id]`, …) work as on a `BTreeMap` through [`Deref`].
#[derive(Debug, Clone, Default)]
pub struct TaskTable {
    /// Tasks by id.
    by_id: BTreeMap<String, Task>,
    /// Node id → ids of its tasks, in id order; a node with no task has no entry (so the
    /// index equals one rebuilt from `by_id`).
    by_node: BTreeMap<String, BTreeSet<String>>,
}

impl TaskTable {
    /// Stores `task` under `id`, replacing (and returning) the task stored there before; the
    /// index follows a change of node.
    pub fn insert(&mut self, id: String, task: Task) -> Option<Task> {
        let previous = self.by_id.get(&id);
        if previous.is_none_or(|p| p.node_id != task.node_id) {
            if let Some(p) = previous {
                unindex(&mut self.by_node, &p.node_id, &id);
            }
            if !task.node_id.is_empty() {
                self.by_node
                    .entry(task.node_id.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }
        self.by_id.insert(id, task)
    }

    /// Removes (and returns) the task stored under `id`.
    pub fn remove(&mut self, id: &str) -> Option<Task> {
        let removed = self.by_id.remove(id)?;
        unindex(&mut self.by_node, &removed.node_id, id);
        Some(removed)
    }

    /// The tasks bound to `node_id`, in id order (none for an empty `node_id`).
    pub fn on_node<'a>(&'a self, node_id: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }

    /// The index as it stands: node id → ids of its tasks.
    pub fn node_index(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.by_node
    }
}

/// Takes `id` out of `node_id`'s entry, dropping the entry when it is left empty.
fn unindex(by_node: &mut BTreeMap<String, BTreeSet<String>>, node_id: &str, id: &str) {
    if let Some(ids) = by_node.get_mut(node_id) {
        ids.remove(id);
        if ids.is_empty() {
            by_node.remove(node_id);
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
