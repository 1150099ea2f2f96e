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

/// The filters of a group of tasks sharing the same constraints and
/// reservations, and the nodes (indices into the spread's id-ordered list)
/// that pass them when empty.
struct Group {
    pipeline: Pipeline,
    fit: Vec<usize>,
    /// Whether the tasks reserve resources: then a node of `fit` must still
    /// have room for each of them.
    reserves: bool,
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
    let mut groups: HashMap<(&[String], i64, i64), Result<Group, String>> = HashMap::new();
    let mut decisions = Vec::with_capacity(pending.len());
    for task in pending {
        let r = reservations(task);
        let group = groups
            .entry((task.constraints.as_slice(), r.nano_cpus, r.memory_bytes))
            .or_insert_with(|| make_group(&task.constraints, r, &spread));
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
                        .check_reserved(spread.nodes()[i], spread.reserved(i)) =>
                {
                    Ok(i)
                }
                Some(i) => Err(group
                    .pipeline
                    .explain([(spread.nodes()[i], spread.reserved(i))])),
            },
            Ok(group) => {
                let picked = if group.reserves {
                    let room: Vec<usize> = group
                        .fit
                        .iter()
                        .copied()
                        .filter(|&i| {
                            group
                                .pipeline
                                .check_reserved(spread.nodes()[i], spread.reserved(i))
                        })
                        .collect();
                    spread.pick(&task.service_id, &room)
                } else {
                    spread.pick(&task.service_id, &group.fit)
                };
                picked.ok_or_else(|| group.pipeline.explain(spread.nodes_reserved()))
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
    spread: &Spread<'_>,
) -> Result<Group, String> {
    let constraints = parse_constraints(constraints).map_err(|e| e.to_string())?;
    let pipeline = Pipeline::with_reservations(&constraints, Some(reservations));
    let fit = (0..spread.nodes().len())
        .filter(|&i| pipeline.check(spread.nodes()[i]))
        .collect();
    Ok(Group {
        pipeline,
        fit,
        reserves: reservations.nano_cpus > 0 || reservations.memory_bytes > 0,
    })
}
