//! Task status reported by workers: applied only when it moves a task of
//! that node forward.

use mini_proto::v1::{StoreAction, StoreBatch, TaskStatusUpdate, store_action::Action};

use crate::ids::now_ms;
use crate::store::{ApplyError, Proposer, Store, WriteError};

/// How often a batch is re-read and retried after a concurrent change.
const RETRIES: usize = 5;

/// Writes the forward-moving updates of `node_id`'s tasks; stale or foreign
/// ones are dropped (a task's state never moves backwards).
pub async fn apply_status_updates<P: Proposer>(
    store: &Store,
    proposer: &P,
    node_id: &str,
    updates: &[TaskStatusUpdate],
) -> Result<(), WriteError> {
    for attempt in 0..RETRIES {
        let actions: Vec<StoreAction> = store.view(|t| {
            updates
                .iter()
                .filter_map(|u| {
                    let task = t.tasks.get(&u.task_id)?;
                    let status = u.status.clone()?;
                    if task.node_id != node_id {
                        return None;
                    }
                    let current = task.status.as_ref().map_or(0, |s| s.state);
                    let same = task.status.as_ref() == Some(&status);
                    if status.state < current || same {
                        return None;
                    }
                    let mut next = task.clone();
                    if status.state() == mini_proto::v1::TaskState::Running
                        && next.running_since_ms == 0
                    {
                        // The start of a rolling update's monitor window.
                        next.running_since_ms = status.timestamp_ms;
                    }
                    next.status = Some(status);
                    Some(StoreAction {
                        action: Some(Action::PutTask(next)),
                        create: false,
                    })
                })
                .collect()
        });
        if actions.is_empty() {
            return Ok(());
        }
        match proposer
            .propose(StoreBatch {
                actions,
                proposed_at_ms: now_ms(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(WriteError::Rejected(ApplyError::Stale { .. })) if attempt + 1 < RETRIES => {
                continue;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
