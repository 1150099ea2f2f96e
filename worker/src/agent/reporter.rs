//! Batched task status reports to the manager.

use std::collections::BTreeMap;
use std::sync::Mutex;

use mini_proto::v1::{TaskStatus, TaskStatusUpdate};
use tokio::sync::Notify;

/// Statuses waiting to be sent: the latest one per task.
#[derive(Default)]
pub struct Reporter {
    pending: Mutex<BTreeMap<String, TaskStatus>>,
    wake: Notify,
    /// Tasks on this node by state (`mini_node_tasks`).
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Reporter {
    /// A reporter that also records each reported state into `metrics`.
    pub fn counting_into(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Reporter {
            metrics,
            ..Default::default()
        }
    }

    /// Queues `status` for `task_id` (replacing an unsent older one).
    pub fn report(&self, task_id: &str, status: TaskStatus) {
        self.metrics.task_state(task_id, status.state());
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string(), status);
        self.wake.notify_one();
    }

    /// Waits until something is queued, then takes all of it.
    pub async fn take(&self) -> Vec<TaskStatusUpdate> {
        loop {
            let batch = self.drain();
            if !batch.is_empty() {
                return batch;
            }
            self.wake.notified().await;
        }
    }

    /// Takes whatever is queued now, without waiting.
    #[cfg(test)]
    pub fn take_now(&self) -> Vec<TaskStatusUpdate> {
        self.drain()
    }

    fn drain(&self) -> Vec<TaskStatusUpdate> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|(task_id, status)| TaskStatusUpdate {
                task_id,
                status: Some(status),
            })
            .collect()
    }

    /// Puts back updates that could not be sent, unless newer ones came.
    pub fn requeue(&self, updates: Vec<TaskStatusUpdate>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for u in updates {
            if let Some(status) = u.status {
                pending.entry(u.task_id).or_insert(status);
            }
        }
    }
}
