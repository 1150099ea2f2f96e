//! Placing a batch of pending tasks.

use std::collections::{HashMap, HashSet};

use mini_proto::v1::{Node, Resources, Task};

use super::constraint::parse_constraints;
use super::filter::Pipeline;
use super::spread::{Spread, reservations};

/// What the scheduler decided for one pending task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind the task to the node (state ASSIGNED).
    Assigned {
        /// The task.
        task_id: String,
        /// The node it goes to.
        node_id: String,
    },
    /// No node fits; the task stays PENDING and `service ps` shows `reason`.
    Unplaceable {
        /// The task.
        task_id: String,
        /// Why, e.g. "no suitable node (1 node not ready)".
        reason: String,
    },
}

/// The filters of a group of tasks sharing the same constraints,
/// reservations and replicas limit, and the nodes (indices into the spread's
/// id-ordered list) that pass them when empty.
struct Group {
    pipeline: Pipeline,
    fit: Vec<usize>,
    /// Whether the tasks reserve resources or limit their replicas per node:
    /// then a node of `fit` must still have room for each of them.
    load_dependent: bool,
}

/// Places `pending` tasks on `nodes`. `tasks` is every task of the cluster,
/// used to count what each node runs already (pending tasks in it are
/// ignored); the decisions of this batch are counted as they are made, so 10
/// tasks of one service on 3 empty nodes spread 4/3/3, and the reservations
/// of the tasks a node holds (or is given now) never exceed its capacity.
///
/// A task that already names a node (a global task) is only checked against
/// that node. Decisions come in the order of `pending`.
pub fn place<'t>(
    pending: &[Task],
    nodes: &[Node],
    tasks: impl IntoIterator<Item = &'t Task>,
) -> Vec<Decision> {
    let skip: HashSet<&str> = pending.iter().map(|t| t.id.as_str()).collect();
    let mut spread = Spread::new(nodes, tasks, &skip);
    type Key<'k> = (&'k [String], i64, i64, u64);
    let mut groups: HashMap<Key<'_>, Result<Group, String>> = HashMap::new();
    let mut decisions = Vec::with_capacity(pending.len());
    for task in pending {
        let r = reservations(task);
        let max = task.max_replicas_per_node;
        let group = groups
            .entry((
                task.constraints.as_slice(),
                r.nano_cpus,
                r.memory_bytes,
                max,
            ))
            .or_insert_with(|| make_group(&task.constraints, r, max, &spread));
        let service = task.service_id.as_str();
        let decision = match group {
            Err(reason) => Err(reason.clone()),
            Ok(group) if !task.node_id.is_empty() => match spread.index_of(&task.node_id) {
                None => Err(format!(
                    "no suitable node (node {:?} is not in the cluster)",
                    task.node_id
                )),
                Some(i)
                    if group
                        .pipeline
                        .check_load(spread.nodes()[i], &spread.load(service, i)) =>
                {
                    Ok(i)
                }
                Some(i) => Err(group
                    .pipeline
                    .explain_load([(spread.nodes()[i], spread.load(service, i))])),
            },
            Ok(group) => {
                let prefs = &task.placement_preferences;
                let picked = if group.load_dependent {
                    let room: Vec<usize> = group
                        .fit
                        .iter()
                        .copied()
                        .filter(|&i| {
                            group
                                .pipeline
                                .check_load(spread.nodes()[i], &spread.load(service, i))
                        })
                        .collect();
                    spread.pick_preferred(service, &room, prefs)
                } else {
                    spread.pick_preferred(service, &group.fit, prefs)
                };
                picked.ok_or_else(|| group.pipeline.explain_load(spread.nodes_load(service)))
            }
        };
        decisions.push(match decision {
            Ok(i) => {
                spread.add(task, i);
                Decision::Assigned {
                    task_id: task.id.clone(),
                    node_id: spread.nodes()[i].id.clone(),
                }
            }
            Err(reason) => Decision::Unplaceable {
                task_id: task.id.clone(),
                reason,
            },
        });
    }
    decisions
}

fn make_group(
    constraints: &[String],
    reservations: Resources,
    max_replicas_per_node: u64,
    spread: &Spread<'_>,
) -> Result<Group, String> {
    let constraints = parse_constraints(constraints).map_err(|e| e.to_string())?;
    let pipeline = Pipeline::for_task(&constraints, Some(reservations), max_replicas_per_node);
    let fit = (0..spread.nodes().len())
        .filter(|&i| pipeline.check(spread.nodes()[i]))
        .collect();
    Ok(Group {
        pipeline,
        fit,
        load_dependent: reservations.nano_cpus > 0
            || reservations.memory_bytes > 0
            || max_replicas_per_node > 0,
    })
}
