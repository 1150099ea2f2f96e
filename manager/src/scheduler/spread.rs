//! The spread strategy: among fit nodes, the one with the fewest tasks of the
//! service, then the fewest tasks overall, then the lowest node id. Placement
//! preferences (`--placement-pref spread=node.labels.zone`) first narrow the
//! fit nodes to the label value holding the fewest tasks of the service.

use std::collections::{BTreeMap, HashMap, HashSet};

use mini_proto::v1::{Node, PlacementPreference, Resources, Task, TaskState};

use super::filter::Load;

/// Whether a task occupies its node for spreading: bound to a node, not ended,
/// and not told to stop.
pub fn occupies_node(task: &Task) -> bool {
    let observed = task.status.as_ref().map_or(TaskState::New, |s| s.state());
    !task.node_id.is_empty()
        && observed <= TaskState::Running
        && task.desired_state() <= TaskState::Running
}

/// What a task reserves of its node (`--reserve-cpu`, `--reserve-memory`).
pub fn reservations(task: &Task) -> Resources {
    task.container
        .as_ref()
        .and_then(|c| c.reservations)
        .unwrap_or_default()
}

/// Task counts per node, overall and per service, and the resources the
/// node's tasks reserve. Nodes are kept in id order, so the index of a node
/// is its rank in the tie-break.
#[derive(Debug, Clone)]
pub struct Spread<'a> {
    nodes: Vec<&'a Node>,
    index: HashMap<&'a str, usize>,
    total: Vec<u32>,
    reserved: Vec<Resources>,
    per_service: HashMap<String, Vec<u32>>,
}

impl<'a> Spread<'a> {
    /// Counts the tasks of `tasks` that occupy one of `nodes` (and adds up
    /// their reservations), leaving out the tasks whose id is in `skip` (the
    /// ones being placed now).
    pub fn new<'t>(
        nodes: &'a [Node],
        tasks: impl IntoIterator<Item = &'t Task>,
        skip: &HashSet<&str>,
    ) -> Self {
        let mut sorted: Vec<&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let index = sorted
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut spread = Self {
            total: vec![0; sorted.len()],
            reserved: vec![Resources::default(); sorted.len()],
            nodes: sorted,
            index,
            per_service: HashMap::new(),
        };
        for task in tasks
            .into_iter()
            .filter(|t| occupies_node(t) && !skip.contains(t.id.as_str()))
        {
            if let Some(i) = spread.index_of(&task.node_id) {
                spread.add(task, i);
            }
        }
        spread
    }

    /// The nodes, in id order.
    pub fn nodes(&self) -> &[&'a Node] {
        &self.nodes
    }

    /// The index of a node id, if it is one of the nodes.
    pub fn index_of(&self, node_id: &str) -> Option<usize> {
        self.index.get(node_id).copied()
    }

    /// What the tasks on node `node` reserve.
    pub fn reserved(&self, node: usize) -> &Resources {
        &self.reserved[node]
    }

    /// Every node with what its tasks reserve, in id order.
    pub fn nodes_reserved(&self) -> impl Iterator<Item = (&'a Node, &Resources)> + '_ {
        self.nodes.iter().copied().zip(&self.reserved)
    }

    /// Active tasks of `service_id` on node `node`.
    pub fn service_tasks(&self, service_id: &str, node: usize) -> u32 {
        self.per_service.get(service_id).map_or(0, |p| p[node])
    }

    /// What node `node` holds when a task of `service_id` is placed.
    pub fn load(&self, service_id: &str, node: usize) -> Load {
        Load {
            reserved: self.reserved[node],
            service_tasks: self.service_tasks(service_id, node),
        }
    }

    /// Every node with its load for a task of `service_id`, in id order.
    pub fn nodes_load<'s>(
        &'s self,
        service_id: &'s str,
    ) -> impl Iterator<Item = (&'a Node, Load)> + 's {
        (0..self.nodes.len()).map(move |i| (self.nodes[i], self.load(service_id, i)))
    }

    /// Counts `task` (one more task of its service, and its reservations) on
    /// node `node`.
    pub fn add(&mut self, task: &Task, node: usize) {
        let service_id = task.service_id.as_str();
        let r = reservations(task);
        let reserved = &mut self.reserved[node];
        reserved.nano_cpus = reserved.nano_cpus.saturating_add(r.nano_cpus);
        reserved.memory_bytes = reserved.memory_bytes.saturating_add(r.memory_bytes);
        self.total[node] += 1;
        let per = match self.per_service.get_mut(service_id) {
            Some(per) => per,
            None => self
                .per_service
                .entry(service_id.to_owned())
                .or_insert_with(|| vec![0; self.nodes.len()]),
        };
        per[node] += 1;
    }

    /// The best of the `candidates` for a task of `service_id` with placement
    /// `preferences`: each preference in turn keeps the candidates whose value
    /// of the label (nodes without it form a group of their own, as in
    /// swarmkit) holds the fewest tasks of the service among the candidates
    /// (ties: the smallest value, no label last); then [`Spread::pick`].
    pub fn pick_preferred(
        &self,
        service_id: &str,
        candidates: &[usize],
        preferences: &[PlacementPreference],
    ) -> Option<usize> {
        if preferences.is_empty() {
            return self.pick(service_id, candidates);
        }
        let mut candidates = candidates.to_vec();
        for pref in preferences {
            // Keyed by (no label, value): labelled groups in value order, then the unlabelled;
            // each with the service's task count and its nodes.
            type Groups<'v> = BTreeMap<(bool, Option<&'v str>), (u64, Vec<usize>)>;
            let mut groups: Groups<'_> = BTreeMap::new();
            for &i in &candidates {
                let value = spread_value(self.nodes[i], &pref.spread);
                let group = groups.entry((value.is_none(), value)).or_default();
                group.0 += u64::from(self.service_tasks(service_id, i));
                group.1.push(i);
            }
            // `min_by_key` keeps the first of equal groups: the smallest value.
            match groups.into_values().min_by_key(|(count, _)| *count) {
                Some((_, members)) => candidates = members,
                None => return None,
            }
        }
        self.pick(service_id, &candidates)
    }

    /// The best of the `candidates` (node indices, in increasing order) for a
    /// task of `service_id`.
    pub fn pick(&self, service_id: &str, candidates: &[usize]) -> Option<usize> {
        let per = self.per_service.get(service_id);
        candidates
            .iter()
            .copied()
            .min_by_key(|&i| (per.map_or(0, |p| p[i]), self.total[i], i))
    }
}

/// The value a spread descriptor (`node.labels.<name>`, `engine.labels.<name>`)
/// takes on `node`; `None` when the node has no such label.
pub fn spread_value<'n>(node: &'n Node, descriptor: &str) -> Option<&'n str> {
    if let Some(name) = descriptor.strip_prefix("node.labels.") {
        node.spec
            .as_ref()
            .and_then(|s| s.labels.get(name))
            .map(String::as_str)
    } else if let Some(name) = descriptor.strip_prefix("engine.labels.") {
        node.description
            .as_ref()
            .and_then(|d| d.engine_labels.get(name))
            .map(String::as_str)
    } else {
        None
    }
}

/// Checks a spread descriptor as `service create --placement-pref` is given it.
pub fn check_spread_descriptor(descriptor: &str) -> Result<(), String> {
    let ok = ["node.labels.", "engine.labels."]
        .iter()
        .any(|p| descriptor.strip_prefix(p).is_some_and(|n| !n.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid placement preference spread={descriptor:?}: spread over node.labels.<name> or engine.labels.<name>"
        ))
    }
}
