//! The name a task is shown and looked up by.

use crate::v1::Task;

/// `service.slot` for a replicated task, `service.<node id>` for a global one
/// (as `docker service ps` names them).
pub fn task_name(t: &Task) -> String {
    if t.slot > 0 {
        format!("{}.{}", t.service_name, t.slot)
    } else {
        format!("{}.{}", t.service_name, t.node_id)
    }
}
